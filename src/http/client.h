// File: http/client.h
//
// A small synchronous HTTP/1.1 client for the CLI and tests. It keeps one
// keep-alive connection to one server and reconnects once, transparently, when
// the server closed it in between requests. Non-2xx statuses are responses,
// not errors; an Error means the exchange itself failed (Unavailable).
//
// SendStreaming uploads a body of any size from a BodySource and hands a 2xx
// response body to a sink piece by piece, in bounded memory (~1 MiB buffers).
//
// Not thread-safe: use one Client per thread. Movable, not copyable.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace takt::http {

struct ClientResponse {
  int status = 0;
  std::string content_type;
  std::string body;
  std::map<std::string, std::string> headers;  // lowercase names
};

// A request body read piece by piece (a file, a generator).
struct BodySource {
  std::function<Result<size_t>(char* buf, size_t n)> read;  // up to n bytes into buf; 0 at the end
  std::optional<uint64_t> length;                           // Content-Length if known, else chunked
};

class Client {
 public:
  // base_url like "http://127.0.0.1:8080" (http only; https is a later issue →
  // InvalidArgument "https is not supported yet"). A path after the authority
  // ("http://host:8080/takt") is prepended to every target. Does not connect.
  static Result<Client> Create(std::string_view base_url);

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  // Sent on every request (e.g. Authorization); setting a name again replaces it.
  void SetHeader(std::string name, std::string value);
  // Limit for connecting and for each read or write to make progress (default 60 s).
  void SetTimeout(std::chrono::seconds t);

  // `target` is the path and query ("/api/v1/models?limit=10"), already
  // percent-encoded (see url.h). progress(bytes_sent, total) is called while
  // the body uploads (in chunks of ~1 MiB) if set. Errors: Unavailable("cannot
  // reach takt server at http://127.0.0.1:8080: Connection refused; is `takt
  // server` running? (set TAKT_URL)") and Unavailable for an exchange that
  // broke off; InvalidArgument for a target that does not start with '/'.
  Result<ClientResponse> Send(std::string_view method, std::string_view target, std::string_view body = {},
                              std::string_view content_type = {},
                              const std::function<void(size_t, size_t)>& progress = {});

  // Like Send, but the request body comes from `body` (nullptr: none; streamed
  // in ~1 MiB pieces, progress(sent, total) called as it goes, total 0 when
  // unknown) and, for a 2xx status, the response body is handed to `sink`
  // piece by piece instead of being collected (ClientResponse::body stays
  // empty); for other statuses it is collected in body as usual (error JSON).
  // A sink or body.read error aborts the exchange and is returned; so is
  // InvalidArgument when `body` ends before (or runs past) its length. A
  // server that answers before it took the whole body (401, 413, 400
  // mid-upload) gives that response: the upload stops once it arrived. A
  // response body that breaks off (chunked without its end) is Unavailable,
  // never a clean truncated success. Retried on a fresh connection only if
  // nothing was read from `body` yet.
  Result<ClientResponse> SendStreaming(std::string_view method, std::string_view target,
                                       const BodySource* body, std::string_view content_type,
                                       const std::function<void(size_t, size_t)>& progress,
                                       const std::function<Status(std::string_view)>& sink);

  const std::string& base_url() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace takt::http
