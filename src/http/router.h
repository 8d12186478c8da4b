// File: http/router.h
//
// Maps method + path to a Route: the handler, the authorization action it
// needs and its body limit. Patterns are literal segments, "{name}" (one
// segment) and a last "{rest...}" (the remainder, slashes included, at least
// one character). When several patterns match, the most specific wins,
// segment by segment: literal before {name} before {rest...}.
//
// Thread-safety: Add every route before the server starts; after that the
// Router is read-only (the Server holds it as shared_ptr<const Router>) and
// Find may be called from any number of threads. Match::route points into the
// Router and stays valid as long as no route is added.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "http/message.h"

namespace takt::http {

using Handler = std::function<Response(Request&)>;
// Answers a request later, from any thread, exactly once. Calling it after the
// server stopped (or the connection closed) drops the response.
using Responder = std::function<void(Response)>;
// A handler that may answer after it returned (e.g. once a model replica has
// scored the request's batch): it must call `respond` exactly once. The
// request stays valid until then. It runs on a pool thread like Handler and
// must not block.
using AsyncHandler = std::function<void(Request&, Responder respond)>;

struct Route {
  std::string method;  // "GET"
  // "/api/v1/models/{group}/versions/{version}"; a last segment "{rest...}" matches the remainder.
  std::string pattern;
  // The authorization action, e.g. "model:approve"; "" only for public routes.
  std::string action;
  // Public routes (health, login) skip authentication; they still must set is_public explicitly.
  bool is_public = false;
  // The body limit (413 / PayloadTooLarge beyond it); for stream_body routes too.
  size_t max_body_bytes = 1 << 20;
  Handler handler;
  // Instead of `handler` (a route has one of the two): answers through the
  // responder, possibly later. Not for stream_body routes.
  AsyncHandler async_handler;
  // The handler runs as soon as the header passed the before hook, on a thread
  // of its own, and reads the body through request.body_stream while it
  // arrives (request.body stays empty). Memory stays bounded whatever the
  // body's size: the socket is read only as fast as the handler reads.
  bool stream_body = false;
};

struct Match {
  const Route* route = nullptr;     // set when method and path matched
  bool method_not_allowed = false;  // the path matched, but only for other methods (405)
  std::string allow;                // those methods, "GET, POST", when method_not_allowed
};

class Router {
 public:
  void Add(Route route);

  // Finds the route for method + path. `path` is the target's path as sent
  // (without the query, still percent-encoded): it is split into segments
  // first and each segment decoded, so "%2F" stays inside a parameter. On a
  // match, `params` (if not null) receives the decoded parameters. Neither
  // route nor method_not_allowed set means "no route" (404).
  Match Find(std::string_view method, std::string_view path,
             std::map<std::string, std::string>* params) const;

  const std::vector<Route>& routes() const { return routes_; }

  // Checks the table once, before serving: well-formed patterns, a handler on
  // every route, an action on every non-public route, no duplicate method +
  // pattern. Server::Start refuses to start with an invalid table.
  Status Validate() const;

 private:
  struct Segment {
    enum Kind { kLiteral, kParam, kRest } kind;
    std::string text;  // the literal, or the parameter name
  };
  struct Pattern {
    std::vector<Segment> segments;
    std::string error;  // why the pattern is malformed; "" if fine
  };
  static Pattern Parse(std::string_view pattern);

  std::vector<Route> routes_;
  std::vector<Pattern> patterns_;  // parallel to routes_
  // Candidates by the first segment: routes whose pattern starts with that
  // literal, and those starting with a parameter (tried for every path); both
  // in the order the routes were added.
  std::map<std::string, std::vector<size_t>, std::less<>> by_first_literal_;
  std::vector<size_t> first_not_literal_;
};

}  // namespace takt::http
