// Boost 1.74 with GCC 12 in C++23 mode needs <utility> before any Asio header.
#include <utility>

#include "http/server.h"

#include <atomic>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "http/url.h"

namespace takt::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

// After a response that ends the connection, the server stops sending and
// reads (and discards) what the client still sends for a little while, so the
// client is not reset before it reads the response (a 413 sent while the body
// is still uploading). Bounded in time and bytes.
constexpr std::chrono::seconds kLingerTime{2};
constexpr size_t kLingerMaxBytes = size_t{64} << 20;
constexpr size_t kReadChunk = 16 * 1024;
// How long Stop() waits for the pool to drain before it stops the io_context.
constexpr std::chrono::seconds kStopGrace{3};

std::string_view View(beast::string_view s) { return std::string_view(s.data(), s.size()); }
beast::string_view BeastView(std::string_view s) { return beast::string_view(s.data(), s.size()); }

class Session;

struct ServerState {
  ServerOptions options;
  std::shared_ptr<const Router> router;
  BeforeHook before;
  AfterHook after;

  std::mutex mu;
  bool started = false;
  bool stopping = false;
  std::vector<std::weak_ptr<Session>> sessions;  // pruned of expired entries as it grows
  size_t prune_at = 64;
  int threads_running = 0;
  std::condition_variable threads_done;
  std::atomic<uint16_t> port{0};

  // Declared after the members above: destroyed first, so handlers destroyed
  // with the io_context never outlive the state they point to.
  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;  // on its own strand
  std::optional<net::steady_timer> accept_backoff;
  std::vector<std::thread> threads;

  explicit ServerState(int concurrency) : ioc(concurrency) {}
};

// One connection. Every member is touched only from the connection's strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ServerState& server, tcp::socket socket, std::string remote)
      : server_(server), stream_(std::move(socket)), remote_(std::move(remote)) {}

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->stream_.expires_after(self->server_.options.read_timeout);
      self->ReadHeader();
    });
  }

  // Posted by Server::Stop.
  void PostClose() {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->CloseNow(); });
  }

  void CloseNow() {
    closed_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  // Between keep-alive requests: wait up to idle_timeout for the next request
  // to begin, then give the whole request read_timeout.
  void WaitForRequest() {
    if (closed_) return;
    if (buffer_.size() > 0) {  // pipelined: the next request has begun
      stream_.expires_after(server_.options.read_timeout);
      ReadHeader();
      return;
    }
    stream_.expires_after(server_.options.idle_timeout);
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              if (ec) return self->CloseNow();
                              self->buffer_.commit(n);
                              self->stream_.expires_after(self->server_.options.read_timeout);
                              self->ReadHeader();
                            });
  }

  void ReadHeader() {
    if (closed_) return;
    header_parser_.emplace();
    size_t limit = std::min<size_t>(server_.options.max_header_bytes, std::numeric_limits<uint32_t>::max());
    header_parser_->header_limit(static_cast<uint32_t>(limit));
    // The route's limit applies once it is known. (Not boost::none: Beast 1.74 compares
    // the length against an empty optional as "over the limit".)
    header_parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    bhttp::async_read_header(
        stream_, buffer_, *header_parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  static bool IsHttpError(const beast::error_code& ec) {
    return ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category();
  }

  void OnHeader(beast::error_code ec) {
    if (ec) {
      if (ec == bhttp::error::header_limit) {
        return Reject(ErrorResponse(InvalidArgument(
            "request header is larger than " + std::to_string(server_.options.max_header_bytes) + " bytes")));
      }
      if (IsHttpError(ec) && ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
        return Reject(ErrorResponse(InvalidArgument("malformed HTTP request: " + ec.message())));
      }
      return CloseNow();  // end of stream, timeout, reset, Stop()
    }

    const auto& header = header_parser_->get();
    request_ = Request{};
    route_ = nullptr;
    close_after_ = false;
    keep_alive_ = header.keep_alive();
    request_.method = std::string(View(header.method_string()));
    request_.target = std::string(View(header.target()));
    request_.remote_address = remote_;
    for (const auto& field : header) {
      auto [it, inserted] = request_.headers.emplace(ToLower(View(field.name_string())), View(field.value()));
      if (!inserted) {
        it->second += ", ";
        it->second += View(field.value());
      }
    }
    if (auto it = request_.headers.find("content-type"); it != request_.headers.end()) {
      size_t semicolon = std::min(it->second.find(';'), it->second.size());
      it->second = ToLower(std::string_view(it->second).substr(0, semicolon)) + it->second.substr(semicolon);
    }
    bool has_body = !header_parser_->is_done();

    std::string_view target = request_.target;
    if (target.empty() || target.front() != '/') {
      return Reject(ErrorResponse(InvalidArgument("request target must be an absolute path")));
    }
    size_t question = target.find('?');
    std::string_view raw_path = target.substr(0, question);
    auto path = PercentDecode(raw_path);
    if (!path) return Reject(ErrorResponse(path.error().WithContext("request path")));
    request_.path = std::move(*path);
    if (HasDotSegment(raw_path)) {
      return Reject(ErrorResponse(InvalidArgument("request path must not contain '.' or '..' segments")));
    }
    if (question != std::string_view::npos) {
      auto query = ParseQuery(target.substr(question + 1));
      if (!query) return Reject(ErrorResponse(query.error()));
      request_.query = std::move(*query);
    }

    Match match = server_.router->Find(request_.method, raw_path, &request_.path_params);
    if (match.route == nullptr) {
      close_after_ = has_body;  // the body is not read: the connection cannot be reused
      if (match.method_not_allowed) {
        Response response = ErrorResponse(405, "METHOD_NOT_ALLOWED",
                                          "method " + request_.method + " is not allowed for " +
                                              request_.path + " (allowed: " + match.allow + ")");
        response.headers.emplace_back("Allow", match.allow);
        return Write(std::move(response));
      }
      return Write(ErrorResponse(NotFound("no route for " + request_.method + " " + request_.path)));
    }
    route_ = match.route;

    // Authentication and authorization need only the header: a client that is
    // turned away never gets to upload its body.
    if (std::optional<Response> denied = Authorize()) {
      close_after_ = has_body;
      RunAfterHook(*denied);
      return Write(std::move(*denied));
    }
    auto length = header_parser_->content_length();
    if (length && *length > route_->max_body_bytes) return TooLarge();
    if (!has_body) return Dispatch();

    body_parser_.emplace(std::move(*header_parser_));
    header_parser_.reset();
    body_parser_->body_limit(route_->max_body_bytes);
    if (ToLower(request_.Header("expect")) == "100-continue") {
      continue_.emplace(bhttp::status::continue_, 11);
      stream_.expires_after(server_.options.read_timeout);
      return bhttp::async_write(stream_, *continue_,
                                [self = shared_from_this()](beast::error_code ec, size_t) {
                                  self->continue_.reset();
                                  if (ec) return self->CloseNow();
                                  self->ReadBody();
                                });
    }
    ReadBody();
  }

  static bool HasDotSegment(std::string_view raw_path) {
    size_t start = 1;
    while (start <= raw_path.size()) {
      size_t end = std::min(raw_path.find('/', start), raw_path.size());
      auto segment = PercentDecode(raw_path.substr(start, end - start));
      if (segment && (*segment == "." || *segment == "..")) return true;
      start = end + 1;
    }
    return false;
  }

  void ReadBody() {
    bhttp::async_read(stream_, buffer_, *body_parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
  }

  void OnBody(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) return TooLarge();
    if (ec) {
      if (IsHttpError(ec) && ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
        return Reject(ErrorResponse(InvalidArgument("malformed HTTP request body: " + ec.message())));
      }
      return CloseNow();
    }
    request_.body = std::move(body_parser_->get().body());
    body_parser_.reset();
    Dispatch();
  }

  // The route matched but the body is over its limit: the handler never runs.
  void TooLarge() {
    close_after_ = true;
    Response response = ErrorResponse(PayloadTooLarge("request body exceeds the limit of " +
                                                      std::to_string(route_->max_body_bytes) + " bytes for " +
                                                      route_->method + " " + route_->pattern));
    RunAfterHook(response);
    Write(std::move(response));
  }

  // The before hook's verdict; without a hook, default deny for non-public routes.
  std::optional<Response> Authorize() {
    try {
      if (server_.before) return server_.before(*route_, request_);
    } catch (...) {
      return ErrorResponse(Internal("internal error"));
    }
    if (!route_->is_public)
      return ErrorResponse(PermissionDenied("access denied: no authorization is configured"));
    return std::nullopt;
  }

  void Dispatch() {
    Response response;
    try {
      response = route_->handler(request_);
    } catch (...) {
      // The exception text may quote data: it is not sent, and the hooks log.
      response = ErrorResponse(Internal("internal error"));
    }
    RunAfterHook(response);
    Write(std::move(response));
  }

  void RunAfterHook(const Response& response) {
    if (!server_.after) return;
    try {
      server_.after(*route_, request_, response);
    } catch (...) {
      // An audit or log failure must not take the connection down.
    }
  }

  // A request that cannot be understood: answer 400 and end the connection.
  void Reject(Response response) {
    close_after_ = true;
    Write(std::move(response));
  }

  static bool IsSafeHeader(std::string_view text) {
    return text.find_first_of("\r\n") == std::string_view::npos && !text.empty();
  }

  void Write(Response response) {
    if (closed_) return;
    try {
      if (response.status < 200 || response.status > 999)
        response = ErrorResponse(Internal("internal error"));
      auto& out = response_.emplace();
      out.version(11);
      out.result(static_cast<unsigned>(response.status));
      out.set(bhttp::field::server, "takt");
      if (!response.content_type.empty() && IsSafeHeader(response.content_type)) {
        out.set(bhttp::field::content_type, BeastView(response.content_type));
      }
      for (const auto& [name, value] : response.headers) {
        std::string lower = ToLower(name);
        if (lower == "content-length" || lower == "transfer-encoding" || lower == "connection" ||
            lower == "server" || !IsSafeHeader(name) || value.find_first_of("\r\n") != std::string::npos) {
          continue;
        }
        out.insert(BeastView(name), BeastView(value));
      }
      if (response.status == 204 || response.status == 304) response.body.clear();
      out.body() = std::move(response.body);
      out.keep_alive(keep_alive_ && !close_after_);
      out.prepare_payload();
    } catch (...) {
      return CloseNow();
    }
    stream_.expires_after(server_.options.write_timeout);
    bhttp::async_write(stream_, *response_,
                       [self = shared_from_this()](beast::error_code ec, size_t) { self->OnWrite(ec); });
  }

  void OnWrite(beast::error_code ec) {
    if (ec) return CloseNow();
    bool keep = response_->keep_alive();
    response_.reset();
    header_parser_.reset();
    body_parser_.reset();
    if (!keep) return Linger();
    WaitForRequest();
  }

  void Linger() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return CloseNow();
    buffer_.consume(buffer_.size());
    lingered_ = 0;
    stream_.expires_after(kLingerTime);
    Drain();
  }

  void Drain() {
    if (closed_) return;
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->lingered_ += n;
                              if (ec || self->lingered_ > kLingerMaxBytes) return self->CloseNow();
                              self->Drain();
                            });
  }

  ServerState& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::string remote_;
  bool closed_ = false;
  bool keep_alive_ = true;
  bool close_after_ = false;
  size_t lingered_ = 0;
  std::optional<bhttp::request_parser<bhttp::empty_body>> header_parser_;
  std::optional<bhttp::request_parser<bhttp::string_body>> body_parser_;
  std::optional<bhttp::response<bhttp::empty_body>> continue_;
  std::optional<bhttp::response<bhttp::string_body>> response_;
  Request request_;
  const Route* route_ = nullptr;
};

std::string EndpointText(const tcp::endpoint& endpoint) {
  beast::error_code ec;
  std::string address = endpoint.address().to_string(ec);
  if (endpoint.address().is_v6()) address = "[" + address + "]";
  return address + ":" + std::to_string(endpoint.port());
}

void Accept(ServerState* state);

void OnAccept(ServerState* state, beast::error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted) return;  // the acceptor was closed
  if (!ec) {
    beast::error_code ignored;
    std::string remote = EndpointText(socket.remote_endpoint(ignored));
    auto session = std::make_shared<Session>(*state, std::move(socket), std::move(remote));
    {
      std::lock_guard lock(state->mu);
      if (state->stopping) return session->CloseNow();
      if (state->sessions.size() >= state->prune_at) {
        std::erase_if(state->sessions, [](const std::weak_ptr<Session>& s) { return s.expired(); });
        state->prune_at = std::max<size_t>(64, 2 * state->sessions.size());
      }
      state->sessions.push_back(session);
    }
    session->Start();
    return Accept(state);
  }
  // Out of descriptors and the like: retry shortly instead of spinning.
  state->accept_backoff->expires_after(std::chrono::milliseconds(50));
  state->accept_backoff->async_wait([state](beast::error_code wait_ec) {
    if (!wait_ec) Accept(state);
  });
}

void Accept(ServerState* state) {
  {
    std::lock_guard lock(state->mu);
    if (state->stopping) return;
  }
  state->acceptor->async_accept(
      net::make_strand(state->ioc),
      [state](beast::error_code ec, tcp::socket socket) { OnAccept(state, ec, std::move(socket)); });
}

void RunPool(ServerState* state) {
  while (true) {
    try {
      state->ioc.run();
      break;
    } catch (...) {
      // Handlers catch their own exceptions; keep the pool alive regardless.
    }
  }
  {
    std::lock_guard lock(state->mu);
    --state->threads_running;
  }
  state->threads_done.notify_all();
}

}  // namespace

struct Server::Impl : ServerState {
  using ServerState::ServerState;
};

Server::Server(ServerOptions options, std::shared_ptr<const Router> router)
    : impl_(std::make_unique<Impl>(std::max(1, options.threads))) {
  impl_->options = std::move(options);
  impl_->router = std::move(router);
}

Server::~Server() { Stop(); }

void Server::SetBeforeHook(BeforeHook h) { impl_->before = std::move(h); }
void Server::SetAfterHook(AfterHook h) { impl_->after = std::move(h); }
uint16_t Server::port() const { return impl_->port.load(); }

Status Server::Start() {
  namespace net = boost::asio;
  using tcp = net::ip::tcp;
  Impl& s = *impl_;
  std::lock_guard lock(s.mu);
  if (s.started || s.stopping) return FailedPrecondition("the server was already started");
  if (!s.router) return InvalidArgument("the server has no router");
  TAKT_RETURN_IF_ERROR(s.router->Validate());

  const std::string where = s.options.address + ":" + std::to_string(s.options.port);
  auto fail = [&](const boost::system::error_code& ec) {
    s.acceptor.reset();
    return Unavailable("cannot listen on " + where + ": " + ec.message());
  };
  try {
    boost::system::error_code ec;
    tcp::endpoint endpoint;
    auto address = net::ip::make_address(s.options.address, ec);
    if (!ec) {
      endpoint = tcp::endpoint(address, s.options.port);
    } else {
      tcp::resolver resolver(s.ioc);
      auto results = resolver.resolve(s.options.address, std::to_string(s.options.port), ec);
      if (ec) return fail(ec);
      if (results.empty()) return Unavailable("cannot listen on " + where + ": address not found");
      endpoint = results.begin()->endpoint();
    }
    s.acceptor.emplace(net::make_strand(s.ioc));
    if (s.acceptor->open(endpoint.protocol(), ec); ec) return fail(ec);
    if (s.acceptor->set_option(net::socket_base::reuse_address(true), ec); ec) return fail(ec);
    if (s.acceptor->bind(endpoint, ec); ec) return fail(ec);
    if (s.acceptor->listen(net::socket_base::max_listen_connections, ec); ec) return fail(ec);
    auto local = s.acceptor->local_endpoint(ec);
    if (ec) return fail(ec);
    s.port = local.port();
    s.accept_backoff.emplace(s.acceptor->get_executor());
    s.work.emplace(s.ioc.get_executor());
  } catch (const std::exception& e) {
    s.acceptor.reset();
    return Unavailable("cannot listen on " + where + ": " + e.what());
  }

  s.started = true;
  net::post(s.acceptor->get_executor(), [state = static_cast<ServerState*>(&s)] { Accept(state); });
  int threads = std::max(1, s.options.threads);
  try {
    for (int i = 0; i < threads; ++i) {
      s.threads.emplace_back(RunPool, &s);
      ++s.threads_running;
    }
  } catch (const std::system_error& e) {
    if (s.threads.empty()) {
      s.started = false;
      s.work.reset();
      s.acceptor.reset();
      return Unavailable(std::string("cannot start the server threads: ") + e.what());
    }
    // Fewer threads than asked for still serve.
  }
  return Ok();
}

void Server::Stop() {
  namespace net = boost::asio;
  Impl& s = *impl_;
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(s.mu);
    if (!s.started || s.stopping) return;
    s.stopping = true;
    for (const auto& weak : s.sessions) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
    s.sessions.clear();
  }
  net::post(s.acceptor->get_executor(), [&s] {
    boost::system::error_code ec;
    s.acceptor->close(ec);
    s.accept_backoff->cancel();
  });
  for (const auto& session : live) session->PostClose();
  live.clear();
  s.work.reset();
  {
    std::unique_lock lock(s.mu);
    // Connections close quickly; only a handler that blocks keeps a thread. Past
    // the grace period the io_context is stopped, so idle threads return now.
    if (!s.threads_done.wait_for(lock, kStopGrace, [&s] { return s.threads_running == 0; })) {
      s.ioc.stop();
    }
  }
  for (auto& thread : s.threads) thread.join();
  s.threads.clear();
  // No thread runs now: if the grace period ran out before the posted close, close here.
  boost::system::error_code ec;
  s.acceptor->close(ec);
}

}  // namespace takt::http
