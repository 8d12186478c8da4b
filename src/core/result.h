// File: core/result.h
//
// Errors are values. Every fallible function returns `Result<T>`: either a T
// or an `Error` that carries one of a dozen canonical codes (mapped one-to-one
// onto HTTP statuses) and a message a user can act on. No exception crosses a
// module boundary: adapters around throwing libraries catch and convert.
//
//   Result<Dataset> Load(std::string_view name) {
//     if (name.empty()) return InvalidArgument("dataset name is empty");
//     TAKT_ASSIGN_OR_RETURN(auto row, db.QueryOne(...));
//     ...
//   }
//
// Add context on the way up with `WithContext` ("reading dataset x: ...").
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace takt {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // 400
  kUnauthenticated,     // 401
  kPermissionDenied,    // 403
  kNotFound,            // 404
  kAlreadyExists,       // 409
  kConflict,            // 409
  kFailedPrecondition,  // 412
  kPayloadTooLarge,     // 413
  kUnsupportedMedia,    // 415
  kResourceExhausted,   // 429
  kUnavailable,         // 503
  kInternal,            // 500
};

// "NOT_FOUND", "INVALID_ARGUMENT", ...: the code as it appears in JSON errors.
std::string_view CodeName(Code code);
// 404, 400, ...
int HttpStatus(Code code);

class [[nodiscard]] Error {
 public:
  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message reads "<context>: <message>".
  Error WithContext(std::string_view context) const;
  // "NOT_FOUND: model group weld-pm has no version 7"
  std::string ToString() const;

 private:
  Code code_;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline Status Ok() { return {}; }

// Constructors that convert to any Result<T>: `return NotFound("...");`
inline std::unexpected<Error> MakeError(Code c, std::string m) {
  return std::unexpected<Error>(Error(c, std::move(m)));
}
inline std::unexpected<Error> InvalidArgument(std::string m) {
  return MakeError(Code::kInvalidArgument, std::move(m));
}
inline std::unexpected<Error> Unauthenticated(std::string m) {
  return MakeError(Code::kUnauthenticated, std::move(m));
}
inline std::unexpected<Error> PermissionDenied(std::string m) {
  return MakeError(Code::kPermissionDenied, std::move(m));
}
inline std::unexpected<Error> NotFound(std::string m) { return MakeError(Code::kNotFound, std::move(m)); }
inline std::unexpected<Error> AlreadyExists(std::string m) {
  return MakeError(Code::kAlreadyExists, std::move(m));
}
inline std::unexpected<Error> Conflict(std::string m) { return MakeError(Code::kConflict, std::move(m)); }
inline std::unexpected<Error> FailedPrecondition(std::string m) {
  return MakeError(Code::kFailedPrecondition, std::move(m));
}
inline std::unexpected<Error> PayloadTooLarge(std::string m) {
  return MakeError(Code::kPayloadTooLarge, std::move(m));
}
inline std::unexpected<Error> UnsupportedMedia(std::string m) {
  return MakeError(Code::kUnsupportedMedia, std::move(m));
}
inline std::unexpected<Error> ResourceExhausted(std::string m) {
  return MakeError(Code::kResourceExhausted, std::move(m));
}
inline std::unexpected<Error> Unavailable(std::string m) {
  return MakeError(Code::kUnavailable, std::move(m));
}
inline std::unexpected<Error> Internal(std::string m) { return MakeError(Code::kInternal, std::move(m)); }

// Deliberately ignoring a result is written out, and easy to grep.
template <typename R>
inline void IgnoreError(R&&) {}

}  // namespace takt

#define TAKT_CONCAT_INNER_(a, b) a##b
#define TAKT_CONCAT_(a, b) TAKT_CONCAT_INNER_(a, b)

// Returns the error of `expr` (a Result or Status) from the enclosing function.
#define TAKT_RETURN_IF_ERROR(expr)                                   \
  do {                                                               \
    auto&& takt_status_ = (expr);                                    \
    if (!takt_status_) return std::unexpected(takt_status_.error()); \
  } while (0)

// `TAKT_ASSIGN_OR_RETURN(auto x, Compute());` binds the value or returns the error.
#define TAKT_ASSIGN_OR_RETURN(lhs, expr) \
  TAKT_ASSIGN_OR_RETURN_IMPL_(TAKT_CONCAT_(takt_result_, __LINE__), lhs, expr)
#define TAKT_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp) return std::unexpected(tmp.error());    \
  lhs = std::move(*tmp)
