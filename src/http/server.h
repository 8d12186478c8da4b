// File: http/server.h
//
// The HTTP/1.1 server: accepts on one address, reads each request (header
// first, then a body bounded by the matched route's max_body_bytes), runs the
// before hook (authentication + authorization), the route's handler and the
// after hook (audit, access log), and writes the response. Keep-alive, read
// and idle timeouts, JSON errors for 400/404/405/413/500.
//
// Threads: connections are spread over a few event loops (`loops`, one thread
// each, about one per core); all socket I/O of a connection, header parsing,
// routing and the before hook run on its loop, so a request costs no hand-off
// between threads. Plain handlers run on a separate pool (`threads`) and may
// block (a blocked handler holds one pool thread, never a loop); the after
// hook runs there too, except for an async handler's own response, whose
// after hook runs on the loop (it must be cheap there). Async handlers start
// on the loop and must not block. Hooks and handlers may run concurrently
// with each other. Exceptions thrown by handlers or hooks are caught and
// become 500 "internal error"; nothing escapes into a thread. Timeouts are
// checked by each loop every 100 ms: one fires up to that much late.
//
// Streaming (message.h, Route::stream_body): a stream_body handler and a
// Response::stream producer run on a thread of their own, one per streaming
// request and at most max_streams at a time (503 beyond), while the pool keeps
// doing the connection's socket I/O into a small bounded buffer between the
// two. A streamed upload or download therefore never holds a pool thread, and
// read_timeout / write_timeout bound progress (no byte for that long), not the
// whole transfer. For a streamed response the after hook runs on that thread
// once the stream has ended, with stream_failed set if it broke off.
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
  uint16_t port = 0;  // 0 = pick a free port
  int threads = 2;    // the handler pool
  int loops = 0;      // event loops; 0 = one per CPU of the affinity mask (at most 8)
  // The whole request must arrive within this; for a stream_body route, the
  // header, and then each piece of the body (no progress for this long).
  std::chrono::seconds read_timeout{30};
  std::chrono::seconds idle_timeout{60};  // keep-alive idle limit
  // The response must be taken within this; for a streamed one, each piece.
  std::chrono::seconds write_timeout{60};
  size_t max_header_bytes = 16 * 1024;
  // Concurrent stream_body requests and streamed responses (each holds a
  // thread and ~1 MiB of buffers); beyond it they are answered 503.
  int max_streams = 16;
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
// that matched no route (400, 404, 405). For a streamed response it runs after
// the stream ended, on the streaming thread: response.stream is empty then and
// response.stream_failed / stream_error say whether it all went out.
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
  // handlers that are running to return (a stream_body handler blocked in
  // BodyStream::Read gets Unavailable; a producer's pieces are refused).
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace takt::http
