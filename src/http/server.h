// File: http/server.h
//
// The HTTP/1.1 server: accepts on one address, reads each request (header
// first, then a body bounded by the matched route's max_body_bytes), runs the
// before hook (authentication + authorization), the route's handler and the
// after hook (audit, access log), and writes the response. Keep-alive, read
// and idle timeouts, JSON errors for 400/404/405/413/500.
//
// Threads: a fixed pool runs every connection; handlers and hooks run on pool
// threads, possibly concurrently with each other, and may block (a blocked
// handler holds one pool thread). Exceptions thrown by handlers or hooks are
// caught and become 500 "internal error"; nothing escapes into the pool.
//
// Ownership: the Server shares the (immutable) Router; hooks are copied in.
// Set hooks before Start(). Stop() (or the destructor) must not be called from
// a handler.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/result.h"
#include "http/message.h"
#include "http/router.h"

namespace takt::http {

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;                       // 0 = pick a free port
  int threads = 2;                         // fixed pool running the io_context
  std::chrono::seconds read_timeout{30};   // whole request must arrive within this
  std::chrono::seconds idle_timeout{60};   // keep-alive idle limit
  std::chrono::seconds write_timeout{60};  // the response must be taken within this
  size_t max_header_bytes = 16 * 1024;
};

// Runs for every matched route, public ones included, once the request header
// is read and before the body is read (request.body is still empty; headers,
// path, query and path_params are set): authentication + authorization. It may
// set request.principal_id. Returning a Response short-circuits (401/403): the
// body is never read and the handler does not run. Public routes must be let
// through (the hook may still attach an optional principal). If no hook is set,
// every non-public route is denied with 403 (default deny).
using BeforeHook = std::function<std::optional<Response>(const Route&, Request&)>;
// Runs after the handler (or after a short-circuit, or a 413 for the route)
// with the final response: for audit and access logs. Not called for requests
// that matched no route (400, 404, 405).
using AfterHook = std::function<void(const Route&, const Request&, const Response&)>;

class Server {
 public:
  Server(ServerOptions options, std::shared_ptr<const Router> router);
  ~Server();  // stops
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void SetBeforeHook(BeforeHook h);
  void SetAfterHook(AfterHook h);

  // Validates the router, binds and starts the thread pool. Unavailable("cannot
  // listen on 127.0.0.1:8080: Address already in use") on failure;
  // InvalidArgument for an invalid route table; FailedPrecondition if called twice.
  Status Start();
  uint16_t port() const;  // the bound port (0 before Start)
  // Stops accepting, closes connections, joins threads; idempotent. Waits for
  // handlers that are running to return.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace takt::http
