// File: http/message.h
//
// The plain request and response structs that route handlers see. No Boost
// here: handlers in api/ include this header only. A Request is built by the
// server for one exchange and handed to exactly one handler on one thread; a
// Response is returned by value.
#pragma once

#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace takt::http {

struct Request {
  std::string method;                              // "GET", "POST", ...
  std::string target;                              // raw target incl. query
  std::string path;                                // percent-decoded path without query
  std::multimap<std::string, std::string> query;   // decoded query params
  std::map<std::string, std::string> headers;      // lowercase names; repeated headers joined with ", "
  std::map<std::string, std::string> path_params;  // from the route pattern
  std::string body;
  std::string remote_address;  // "127.0.0.1:53412"
  // Set by the authentication hook, read by handlers (the principal acting).
  std::string principal_id;

  // "" if absent; `name` is case-insensitive.
  std::string Header(std::string_view name) const;
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
};

// {"error":{"code":"NOT_FOUND","message":"..."}} with the status HttpStatus(code).
Response ErrorResponse(const Error& error);
// So that `return ErrorResponse(NotFound("..."));` reads naturally.
inline Response ErrorResponse(const std::unexpected<Error>& error) { return ErrorResponse(error.error()); }
// The same JSON shape with an explicit status and code name, for statuses that
// have no canonical Code (405 "METHOD_NOT_ALLOWED").
Response ErrorResponse(int status, std::string_view code_name, std::string_view message);
Response JsonResponse(int status, std::string json_body);

// ASCII lowercase copy (header names, media types).
std::string ToLower(std::string_view text);

}  // namespace takt::http
