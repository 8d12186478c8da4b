// File: http/message.h
//
// The plain request and response structs that route handlers see. No Boost
// here: handlers in api/ include this header only. A Request is built by the
// server for one exchange and handed to exactly one handler on one thread; a
// Response is returned by value.
//
// Streaming: a route with `stream_body` (router.h) gets its body through
// Request::body_stream instead of Request::body, and any handler may return a
// Response with a `stream` producer instead of a body; both keep the server's
// memory bounded for multi-GB uploads and downloads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace takt::http {

// The body of a request to a `stream_body` route, read piece by piece while it
// arrives. Only the handler's thread may call Read; the server owns the stream
// and keeps it valid until the handler returns.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // Up to n (> 0) bytes of the body into buf; 0 at its end. Blocks until some
  // bytes arrived. Errors: Unavailable when the client stops sending or the
  // connection breaks or read_timeout passes without progress (or the server
  // is stopping); PayloadTooLarge past the route's max_body_bytes;
  // InvalidArgument for a malformed chunked encoding.
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
  virtual std::optional<uint64_t> content_length() const = 0;  // from the header, if sent (not chunked)
  virtual uint64_t bytes_read() const = 0;                     // handed out by Read so far
};

struct Response;

struct Request {
  std::string method;                             // "GET", "POST", ...
  std::string target;                             // raw target incl. query
  std::string path;                               // percent-decoded path without query
  std::multimap<std::string, std::string> query;  // decoded query params
  // Lowercase names; repeated headers joined with ", ". Looked up by
  // string_view without a copy (std::less<>).
  std::map<std::string, std::string, std::less<>> headers;
  std::map<std::string, std::string> path_params;  // from the route pattern
  std::string body;                                // empty for `stream_body` routes: read body_stream instead
  std::string remote_address;                      // "127.0.0.1:53412"
  // Set by the authentication hook, read by handlers (the principal acting).
  std::string principal_id;
  // Set only for `stream_body` routes (else nullptr); valid while the handler runs.
  BodyStream* body_stream = nullptr;
  // Set by the before hook when the credentials also cover the body (AWS
  // SigV4 signs the payload): the server calls it once, after the body has
  // been read and before the handler runs; a Response it returns is sent
  // instead of the handler's (the after hook still sees it).
  std::function<std::optional<Response>(std::string_view body)> verify_body;

  // "" if absent; `name` is case-insensitive. Points into `headers`: valid
  // while the Request lives and that header is not changed.
  std::string_view Header(std::string_view name) const;
  // The first value of query parameter `name`, if present.
  std::optional<std::string> Query(std::string_view name) const;
  // The media type without parameters ("application/json" for
  // "application/json; charset=utf-8"); "" if absent. The server lowercases the
  // media type when it builds the Request, so this is lowercase for every
  // request that came over the wire.
  std::string_view ContentType() const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra headers (e.g. "Location", "Allow"). Content-Length, Transfer-Encoding
  // and Connection are set by the server and ignored here.
  std::vector<std::pair<std::string, std::string>> headers;
  // If set, the body is produced piece by piece and sent with chunked transfer
  // encoding (body is ignored). Called repeatedly, on a server thread of its
  // own (it may block): append the next piece to `out` (which arrives empty)
  // and return true while there is more, false when done (`out` may hold a
  // last piece). An error after the header went out aborts the connection (the
  // client sees a truncated chunked body, never a clean end). The server sends
  // a piece or two at a time as the client takes them, and destroys the
  // producer once the stream ended.
  std::function<Result<bool>(std::string& out)> stream;
  // For the after hook of a streamed response (set by the server): the stream
  // broke off (producer error, client gone, write timeout, Stop) and why.
  bool stream_failed = false;
  std::string stream_error;
};

// {"error":{"code":"NOT_FOUND","message":"..."}} with the status HttpStatus(code).
Response ErrorResponse(const Error& error);
// So that `return ErrorResponse(NotFound("..."));` reads naturally.
inline Response ErrorResponse(const std::unexpected<Error>& error) { return ErrorResponse(error.error()); }
// The same JSON shape with an explicit status and code name, for statuses that
// have no canonical Code (405 "METHOD_NOT_ALLOWED").
Response ErrorResponse(int status, std::string_view code_name, std::string_view message);
Response JsonResponse(int status, std::string json_body);

// ASCII lowercase of one character, and a lowercase copy (header names, media types).
inline char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
std::string ToLower(std::string_view text);

}  // namespace takt::http
