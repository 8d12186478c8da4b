// Boost 1.74 with GCC 12 in C++23 mode needs <utility> before any Asio header.
#include <utility>

#include "http/server.h"

#include <fcntl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/cpus.h"
#include "core/posix.h"
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
// Beast reads max(512, free capacity) bytes at a time: a body is read with
// this much room in the buffer (not 512-byte reads), given back afterwards.
constexpr size_t kBodyReadBuffer = 64 * 1024;
// How long Stop() waits for the pool to drain before it stops the io_context.
constexpr std::chrono::seconds kStopGrace{3};
// A streamed request body: the strand reads the socket kPipeChunk at a time and
// stops while kPipeCapacity bytes wait for the handler.
constexpr size_t kPipeChunk = 64 * 1024;
constexpr size_t kPipeCapacity = size_t{1} << 20;
// A streamed response: pieces made but not yet taken by the strand (besides
// the one being written and the one being made).
constexpr size_t kMaxQueuedPieces = 1;

std::string_view View(beast::string_view s) { return std::string_view(s.data(), s.size()); }

// ASCII case-insensitive equality; `lower` is lowercase.
bool IEquals(std::string_view text, std::string_view lower) {
  if (text.size() != lower.size()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (AsciiLower(text[i]) != lower[i]) return false;
  }
  return true;
}
beast::string_view BeastView(std::string_view s) { return beast::string_view(s.data(), s.size()); }

// Beast's HTTP/1 parser writing straight into a Request: method, target and
// headers (lowercase names, repeats joined with ", ") as they are parsed,
// without the basic_fields table of bhttp::parser in between. The body goes
// into Request::body, or, after UseBuffer, into the caller's buffer piece by
// piece (a stream_body route; error::need_buffer when it is full, as with
// bhttp::buffer_body). One parser per request.
class RequestParser final : public bhttp::basic_parser<true> {
 public:
  explicit RequestParser(Request& request) : request_(request) {}

  // From now on body bytes go to [data, data + size); nullptr: none wanted yet.
  void UseBuffer(char* data, size_t size) {
    buffered_ = true;
    data_ = data;
    size_ = size;
  }
  size_t buffer_left() const { return size_; }

 private:
  void on_request_impl(bhttp::verb, beast::string_view method, beast::string_view target, int,
                       beast::error_code&) override {
    request_.method.assign(method.data(), method.size());
    request_.target.assign(target.data(), target.size());
  }
  void on_response_impl(int, beast::string_view, int, beast::error_code&) override {}

  void on_field_impl(bhttp::field, beast::string_view name, beast::string_view value,
                     beast::error_code&) override {
    // Trailers of a chunked body come after authorization: they are not headers.
    if (is_header_done()) return;
    std::string key(name.data(), name.size());
    for (char& c : key) c = AsciiLower(c);
    auto [it, inserted] = request_.headers.try_emplace(std::move(key), value.data(), value.size());
    if (!inserted) {
      it->second += ", ";
      it->second.append(value.data(), value.size());
    }
  }
  void on_header_impl(beast::error_code&) override {}

  void on_body_init_impl(const boost::optional<std::uint64_t>& length, beast::error_code& ec) override {
    if (buffered_ || !length) return;
    if (*length > request_.body.max_size()) {
      ec = bhttp::error::buffer_overflow;
      return;
    }
    request_.body.reserve(static_cast<size_t>(*length));
  }
  size_t on_body_impl(beast::string_view body, beast::error_code& ec) override { return Put(body, ec); }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, beast::error_code& ec) override {
    return Put(body, ec);
  }
  void on_finish_impl(beast::error_code&) override {}

  size_t Put(beast::string_view body, beast::error_code& ec) {
    if (!buffered_) {
      request_.body.append(body.data(), body.size());
      return body.size();
    }
    if (data_ == nullptr) {
      ec = bhttp::error::need_buffer;
      return 0;
    }
    size_t n = std::min(size_, body.size());
    std::memcpy(data_, body.data(), n);
    data_ += n;
    size_ -= n;
    if (n < body.size()) ec = bhttp::error::need_buffer;
    return n;
  }

  Request& request_;
  bool buffered_ = false;
  char* data_ = nullptr;
  size_t size_ = 0;
};

// Request body bytes from the connection's strand (Push, Finish, Fail) to a
// stream_body handler on its stream thread (Read). When kPipeCapacity bytes
// wait, Push says so and the strand stops reading the socket until Read made
// room and called want_more (which posts the strand's next read). The pipe
// starts out "waiting": nothing is read (and no 100 Continue sent) before the
// handler first asks. Thread-safe.
class BodyPipe final : public BodyStream {
 public:
  BodyPipe(std::optional<uint64_t> length, bool has_body, std::function<void()> want_more)
      : length_(length), want_more_(std::move(want_more)), waiting_(has_body), finished_(!has_body) {}

  Result<size_t> Read(char* buf, size_t n) override {
    if (n == 0) return size_t{0};
    std::unique_lock lock(mu_);
    while (true) {
      if (cancelled_) return std::unexpected(*cancelled_);
      if (size_ > 0) {
        size_t taken = 0;
        while (taken < n && !chunks_.empty()) {
          const std::string& front = chunks_.front();
          size_t k = std::min(n - taken, front.size() - offset_);
          std::memcpy(buf + taken, front.data() + offset_, k);
          taken += k;
          offset_ += k;
          if (offset_ == front.size()) {
            chunks_.pop_front();
            offset_ = 0;
          }
        }
        size_ -= taken;
        bytes_read_ += taken;
        bool wake = waiting_ && size_ + kPipeChunk <= kPipeCapacity;
        if (wake) waiting_ = false;
        lock.unlock();
        if (wake) want_more_();
        return taken;
      }
      if (finished_) return size_t{0};
      if (error_) return std::unexpected(*error_);
      if (waiting_) {
        waiting_ = false;
        lock.unlock();
        want_more_();
        lock.lock();
        continue;
      }
      cv_.wait(lock);
    }
  }

  std::optional<uint64_t> content_length() const override { return length_; }
  uint64_t bytes_read() const override { return bytes_read_.load(); }

  // Strand: n more bytes of the body. False when the pipe is full: read no
  // more until want_more is called.
  bool Push(const char* data, size_t n) {
    std::lock_guard lock(mu_);
    chunks_.emplace_back(data, n);
    size_ += n;
    cv_.notify_all();
    if (size_ + kPipeChunk > kPipeCapacity) {
      waiting_ = true;
      return false;
    }
    return true;
  }
  // Strand: the whole body arrived; Read returns 0 once it was read.
  void Finish() {
    std::lock_guard lock(mu_);
    finished_ = true;
    cv_.notify_all();
  }
  // Strand: the body broke off; Read returns `error` once the bytes before it were read.
  void Fail(Error error) {
    std::lock_guard lock(mu_);
    if (!error_) error_.emplace(std::move(error));
    cv_.notify_all();
  }
  // Any thread (connection closed, Stop): Read returns `error` at once.
  void Cancel(const Error& error) {
    std::lock_guard lock(mu_);
    if (!cancelled_) cancelled_.emplace(error);
    cv_.notify_all();
  }

 private:
  const std::optional<uint64_t> length_;
  const std::function<void()> want_more_;
  std::atomic<uint64_t> bytes_read_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> chunks_;
  size_t offset_ = 0;  // into chunks_.front()
  size_t size_ = 0;    // bytes in chunks_ not yet read
  bool waiting_;       // the strand waits for want_more
  bool finished_;
  std::optional<Error> error_;
  std::optional<Error> cancelled_;
};

// Response pieces from a producer on its stream thread (Push, Finish,
// WaitSent) to the connection's strand (Take, Close). Push blocks while
// kMaxQueuedPieces wait, so the producer runs at the socket's pace. When Take
// found nothing, the next Push or Finish calls `wake` (which posts the
// strand's next write). Thread-safe.
class PiecePipe {
 public:
  enum class Next { kPiece, kEnd, kAbort, kWait };

  explicit PiecePipe(std::function<void()> wake) : wake_(std::move(wake)) {}

  // Producer side. False once the strand gave up (the piece is dropped): stop producing.
  bool Push(std::string piece) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return closed_ || queue_.size() < kMaxQueuedPieces; });
    if (closed_) return false;
    queue_.push_back(std::move(piece));
    WakeStrand(lock);
    return true;
  }
  // Producer side: no more pieces; `failed`: the stream must not end cleanly.
  void Finish(bool failed) {
    std::unique_lock lock(mu_);
    if (closed_ || ended_) return;
    ended_ = true;
    failed_ = failed;
    WakeStrand(lock);
  }
  // Producer side: blocks until the strand sent the end (true) or gave up
  // (false, with `why`).
  bool WaitSent(std::string* why) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return closed_; });
    *why = why_;
    return sent_;
  }

  // Strand side: the next piece to write, the end, or kWait (wake follows).
  // After kEnd the strand writes the end at once and then calls Close, or
  // NotEnding if the socket did not take it all: a Cancel meanwhile waits for
  // that, because the client may already have the end.
  Next Take(std::string& piece) {
    std::lock_guard lock(mu_);
    if (closed_) return Next::kAbort;
    if (!queue_.empty()) {
      piece = std::move(queue_.front());
      queue_.pop_front();
      cv_.notify_all();
      return Next::kPiece;
    }
    if (ended_) {
      if (failed_) return Next::kAbort;
      ending_ = true;
      return Next::kEnd;
    }
    strand_waiting_ = true;
    return Next::kWait;
  }
  void NotEnding() {
    std::lock_guard lock(mu_);
    ending_ = false;
    if (cancelled_) CloseLocked(false, std::move(cancel_why_));
  }
  // Strand side: the stream is over, all of it sent or not (the first call counts).
  void Close(bool sent, std::string why) {
    std::lock_guard lock(mu_);
    ending_ = false;
    CloseLocked(sent, std::move(why));
  }
  // Any thread (Stop): the stream is over unless the strand is writing its end right now.
  void Cancel(std::string why) {
    std::lock_guard lock(mu_);
    if (!ending_) return CloseLocked(false, std::move(why));
    cancelled_ = true;
    cancel_why_ = std::move(why);
  }

 private:
  void WakeStrand(std::unique_lock<std::mutex>& lock) {
    if (!strand_waiting_) return;
    strand_waiting_ = false;
    lock.unlock();
    wake_();
  }

  const std::function<void()> wake_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool strand_waiting_ = false;
  bool ended_ = false;
  bool failed_ = false;
  bool closed_ = false;
  bool sent_ = false;
  std::string why_;
  bool ending_ = false;     // the strand is writing the end (after Take said kEnd)
  bool cancelled_ = false;  // a Cancel came meanwhile
  std::string cancel_why_;

  void CloseLocked(bool sent, std::string why) {
    if (closed_) return;
    closed_ = true;
    sent_ = sent;
    why_ = std::move(why);
    queue_.clear();
    cv_.notify_all();
  }
};

// One streaming exchange, shared by its session (strand) and its stream thread.
struct StreamJob {
  const Route* route = nullptr;
  Request request;  // moved out of the session: the stream thread owns it now
  // A stream_body route: the thread runs the handler first, reading `body`.
  bool run_handler = false;
  std::unique_ptr<BodyPipe> body;
  // Otherwise: the handler's response, whose producer the thread runs.
  Response response;
  std::unique_ptr<PiecePipe> pieces;

  void Cancel(const Error& why) {
    if (body) body->Cancel(why);
    pieces->Cancel(why.message());
  }
};

class Session;

// Lets responders of async handlers (running on any thread, possibly after
// Stop) post to the io_context only while it runs.
struct ResponderGate {
  std::shared_mutex mu;
  bool open = true;
};

using Clock = std::chrono::steady_clock;
constexpr Clock::time_point kNever = Clock::time_point::max();
// How often an event loop looks for connections past their deadline: a
// timeout fires up to this much late, never early.
constexpr std::chrono::milliseconds kSweepEvery{100};

using Executor = net::io_context::executor_type;
using Socket = net::basic_stream_socket<tcp, Executor>;
using Acceptor = net::basic_socket_acceptor<tcp, Executor>;

// One event loop: a thread running an io_context of its own. A connection
// lives on one loop for its whole life and all of its socket I/O runs there,
// so a connection needs no strand and loops share no lock on the hot path.
struct Loop {
  net::io_context ioc{1};
  std::optional<net::executor_work_guard<Executor>> work;
  std::optional<net::steady_timer> sweep;  // deadlines of this loop's connections
  bool sweeping = true;                    // loop thread only: false once Stop ended the sweeps
  std::mutex mu;                           // sessions (appended on accept, read by Stop)
  std::vector<std::weak_ptr<Session>> sessions;
  size_t prune_at = 64;
};

struct ServerState {
  ServerOptions options;
  std::shared_ptr<ResponderGate> gate = std::make_shared<ResponderGate>();
  std::shared_ptr<const Router> router;
  BeforeHook before;
  AfterHook after;

  std::mutex mu;
  bool started = false;
  bool stopping = false;
  int threads_running = 0;
  std::condition_variable threads_done;
  std::atomic<uint16_t> port{0};
  std::vector<std::shared_ptr<StreamJob>> streams;  // running on stream threads
  std::condition_variable streams_done;
  std::atomic<size_t> next_loop{0};

  // Declared after the members above: destroyed first, so handlers destroyed
  // with the io_contexts never outlive the state they point to.
  std::vector<std::unique_ptr<Loop>> loops;
  // The handler pool: handlers of plain routes and the hooks that may write
  // (audit) run here, so a slow handler never stalls a loop's connections.
  // Declared after the loops: handlers left in it (a Stop that timed out)
  // hold sessions whose sockets belong to a loop, so it goes first.
  net::io_context pool;
  std::optional<net::executor_work_guard<Executor>> pool_work;
  std::optional<Acceptor> acceptor;  // on loops[0]; declared after the loops, so destroyed first
  std::optional<net::steady_timer> accept_backoff;
  std::vector<std::thread> threads;

  ServerState(int pool_threads, int loop_count) : pool(pool_threads) {
    for (int i = 0; i < loop_count; ++i) loops.push_back(std::make_unique<Loop>());
  }
};

// Runs `work` for `job` on a new stream thread, unless the server is stopping
// or max_streams run already (false, and `work` is dropped).
bool LaunchStream(ServerState& state, const std::shared_ptr<StreamJob>& job, std::function<void()> work) {
  std::lock_guard lock(state.mu);
  if (state.stopping || state.streams.size() >= static_cast<size_t>(std::max(1, state.options.max_streams))) {
    return false;
  }
  state.streams.push_back(job);
  try {
    std::thread([state = &state, job = std::shared_ptr<StreamJob>(job), work = std::move(work)]() mutable {
      try {
        work();
      } catch (...) {
        // RunStream catches what handlers and hooks throw; this is allocation failure.
      }
      // Drop what refers to the session and the io_context before Stop() can see
      // this stream gone (and destroy them).
      work = nullptr;
      std::lock_guard done(state->mu);
      std::erase(state->streams, job);
      job.reset();
      state->streams_done.notify_all();
    }).detach();
  } catch (...) {  // no thread (std::system_error), no memory
    state.streams.pop_back();
    return false;
  }
  return true;
}

void RunAfterHook(const ServerState& state, const Route& route, const Request& request,
                  const Response& response) {
  if (!state.after) return;
  try {
    state.after(route, request, response);
  } catch (...) {
    // An audit or log failure must not take the connection down.
  }
}

// The response's status line and headers, without body or producer.
Response HeadOf(const Response& response) {
  Response head;
  head.status = response.status;
  head.content_type = response.content_type;
  head.headers = response.headers;
  return head;
}

// Whether `response` is to be streamed. A producer is dropped where no body
// may follow (HEAD, 204, 304); an invalid status becomes a plain 500.
bool PrepareStream(const Request& request, Response& response) {
  if (!response.stream) return false;
  if (response.status < 200 || response.status > 999) {
    response = ErrorResponse(Internal("internal error"));
    return false;
  }
  if (request.method == "HEAD" || response.status == 204 || response.status == 304) {
    response.stream = nullptr;
    return false;
  }
  return true;
}

// One connection. Every member is touched only from the connection's loop
// thread, except request_ while a plain handler runs in the pool (the loop
// leaves it alone until the answer is posted back) and the StreamJob a stream
// thread runs.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ServerState& server, Socket socket, std::string remote)
      : server_(server), socket_(std::move(socket)), remote_(std::move(remote)) {}

  void Start() {
    net::dispatch(socket_.get_executor(), [self = shared_from_this()] {
      self->request_deadline_ = Clock::now() + self->server_.options.read_timeout;
      self->ReadHeader();
    });
  }

  // Posted by Server::Stop.
  void PostClose() {
    net::post(socket_.get_executor(), [self = shared_from_this()] { self->CloseNow(); });
  }

  void CloseNow() {
    closed_ = true;
    deadline_ = kNever;
    if (job_) job_->Cancel(Error(Code::kUnavailable, "the connection closed"));
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    // A pending async answer no longer has anywhere to go; this may be the
    // last reference, so it goes last.
    auto hold = std::move(async_hold_);
  }

  // The loop's sweep: the pending operation ran out of time. Its completion
  // sees beast::error::timeout (as with beast::tcp_stream).
  void SweepDeadline(Clock::time_point now) {
    if (closed_ || deadline_ > now) return;
    timed_out_ = true;
    deadline_ = kNever;
    beast::error_code ec;
    socket_.close(ec);
  }

 private:
  // The completion of a socket operation: its deadline no longer applies, and
  // an operation the sweep cut short reports a timeout.
  template <typename F>
  auto Io(F f) {
    return [self = shared_from_this(), f = std::move(f)](beast::error_code ec, size_t n) mutable {
      self->deadline_ = kNever;
      if (ec && self->timed_out_) ec = beast::error::timeout;
      f(*self, ec, n);
    };
  }

  // Between keep-alive requests: wait up to idle_timeout for the next request
  // to begin, then give the whole request read_timeout.
  void WaitForRequest() {
    if (closed_) return;
    if (buffer_.size() > 0) {  // pipelined: the next request has begun
      request_deadline_ = Clock::now() + server_.options.read_timeout;
      ReadHeader();
      return;
    }
    deadline_ = Clock::now() + server_.options.idle_timeout;
    socket_.async_read_some(buffer_.prepare(kReadChunk), Io([](Session& s, beast::error_code ec, size_t n) {
                              if (ec) return s.CloseNow();
                              s.buffer_.commit(n);
                              s.request_deadline_ = Clock::now() + s.server_.options.read_timeout;
                              s.ReadHeader();
                            }));
  }

  void ReadHeader() {
    if (closed_) return;
    request_ = Request{};
    route_ = nullptr;
    parser_.emplace(request_);
    size_t limit = std::min<size_t>(server_.options.max_header_bytes, std::numeric_limits<uint32_t>::max());
    parser_->header_limit(static_cast<uint32_t>(limit));
    // The route's limit applies once it is known. (Not boost::none: Beast 1.74 compares
    // the length against an empty optional as "over the limit".)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    ParseHeader();
  }

  // Feeds what the buffer holds to the header parser; reads more while the
  // header is incomplete. The parser works on the buffer directly: a request
  // that arrived whole is parsed without another trip through the loop.
  void ParseHeader() {
    while (buffer_.size() > 0) {
      beast::error_code ec;
      size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == bhttp::error::need_more) break;
      if (ec) return OnHeader(ec);
      if (parser_->is_header_done()) return OnHeader({});
      if (used == 0) break;
    }
    deadline_ = request_deadline_;
    socket_.async_read_some(buffer_.prepare(kReadChunk), Io([](Session& s, beast::error_code ec, size_t n) {
                              if (ec)
                                return s.OnHeader(ec == net::error::eof && s.buffer_.size() == 0
                                                      ? bhttp::error::end_of_stream
                                                      : ec);
                              s.buffer_.commit(n);
                              s.ParseHeader();
                            }));
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

    // The parser filled in method, target and headers.
    close_after_ = false;
    keep_alive_ = parser_->keep_alive();
    request_.remote_address = remote_;
    if (auto it = request_.headers.find("content-type"); it != request_.headers.end()) {
      // The media type (before any parameters) in lowercase, in place.
      for (char& c : it->second) {
        if (c == ';') break;
        c = AsciiLower(c);
      }
    }
    bool has_body = !parser_->is_done();

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
      return HookThenWrite(std::move(*denied));
    }
    auto length = parser_->content_length();
    if (length && *length > route_->max_body_bytes) return TooLarge();
    if (route_->stream_body) return StartStreamingHandler(has_body);
    if (!has_body) {
      parser_.reset();
      return Dispatch();
    }

    parser_->body_limit(route_->max_body_bytes);
    parser_->eager(true);
    if (IEquals(request_.Header("expect"), "100-continue")) {
      continue_.emplace(bhttp::status::continue_, 11);
      deadline_ = request_deadline_;
      return bhttp::async_write(socket_, *continue_, Io([](Session& s, beast::error_code ec, size_t) {
                                  s.continue_.reset();
                                  if (ec) return s.CloseNow();
                                  s.ReadBody();
                                }));
    }
    ReadBody();
  }

  static bool HasDotSegment(std::string_view raw_path) {
    size_t start = 1;
    while (start <= raw_path.size()) {
      size_t end = std::min(raw_path.find('/', start), raw_path.size());
      std::string_view raw = raw_path.substr(start, end - start);
      start = end + 1;
      // Only a segment of at most six bytes with a '.' or an escape can decode to "." or "..".
      if (raw.empty() || raw.size() > 6 || raw.find_first_of(".%") == std::string_view::npos) continue;
      auto segment = PercentDecode(raw);
      if (segment && (*segment == "." || *segment == "..")) return true;
    }
    return false;
  }

  // Feeds the buffer to the body parser; reads more until the body is whole.
  void ReadBody() {
    while (!parser_->is_done() && buffer_.size() > 0) {
      beast::error_code ec;
      size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == bhttp::error::need_more) break;
      if (ec) return OnBody(ec);
      if (used == 0) break;
    }
    if (parser_->is_done()) return OnBody({});
    // A large body is read with room for kBodyReadBuffer at a time, not kReadChunk.
    auto length = parser_->content_length_remaining();
    size_t room = !length || *length > kReadChunk ? kBodyReadBuffer : kReadChunk;
    deadline_ = request_deadline_;
    socket_.async_read_some(buffer_.prepare(room), Io([](Session& s, beast::error_code ec, size_t n) {
                              if (ec) return s.OnBody(ec);
                              s.buffer_.commit(n);
                              s.ReadBody();
                            }));
  }

  void OnBody(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) return TooLarge();
    if (ec) {
      if (IsHttpError(ec) && ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
        return Reject(ErrorResponse(InvalidArgument("malformed HTTP request body: " + ec.message())));
      }
      return CloseNow();
    }
    parser_.reset();  // the body is in request_.body
    Dispatch();
  }

  // The route matched but the body is over its limit: the handler never runs.
  void TooLarge() {
    close_after_ = true;
    Response response = ErrorResponse(PayloadTooLarge("request body exceeds the limit of " +
                                                      std::to_string(route_->max_body_bytes) + " bytes for " +
                                                      route_->method + " " + route_->pattern));
    HookThenWrite(std::move(response));
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

  // A response that did not come from the handler (refused, too large, busy):
  // the after hook, which may write an audit record, runs in the pool, and the
  // response is sent from the loop once it returned.
  void HookThenWrite(Response response) {
    auto work = net::make_work_guard(socket_.get_executor());
    net::post(server_.pool,
              [self = shared_from_this(), work = std::move(work), response = std::move(response)]() mutable {
                self->RunAfterHook(response);
                Executor loop = work.get_executor();
                net::post(loop, [self = std::move(self), response = std::move(response)]() mutable {
                  self->Write(std::move(response));
                });
              });
  }

  void Dispatch() {
    if (std::optional<Response> refused = VerifyBody(request_)) return HookThenWrite(std::move(*refused));
    if (route_->async_handler) return DispatchAsync();
    // A plain handler may block (a database, a file): it runs in the pool, and
    // the loop goes on with its other connections meanwhile. Nothing of this
    // connection is pending, and the loop leaves request_ alone until the
    // answer is posted back.
    auto work = net::make_work_guard(socket_.get_executor());
    net::post(server_.pool, [self = shared_from_this(), work = std::move(work)]() mutable {
      Response response = RunHandler(*self->route_, self->request_);
      bool streamed = PrepareStream(self->request_, response);
      if (!streamed) self->RunAfterHook(response);
      Executor loop = work.get_executor();
      net::post(loop, [self = std::move(self), streamed, response = std::move(response)]() mutable {
        if (self->closed_) return;
        if (streamed) return self->StartStreamedResponse(std::move(response));
        self->Write(std::move(response));
      });
    });
  }

  // The handler answers through a responder, possibly from another thread:
  // the response comes back to this loop. The session (and request_) stay
  // alive until it does; a second call is ignored. It runs on the loop: an
  // async handler must not block.
  void DispatchAsync() {
    // Nothing of the socket is pending while the answer is computed: the
    // session keeps itself alive until FinishAsync (or a close) drops this.
    async_hold_ = shared_from_this();
    // What the Responder's copies share: the first answer wins.
    struct Reply {
      Reply(std::weak_ptr<Session> s, Executor e, std::shared_ptr<ResponderGate> g)
          : session(std::move(s)), executor(std::move(e)), gate(std::move(g)) {}
      std::atomic<bool> sent{false};
      std::weak_ptr<Session> session;
      Executor executor;
      std::shared_ptr<ResponderGate> gate;
      void Send(Response response) {
        if (sent.exchange(true)) return;
        std::shared_lock lock(gate->mu);
        if (!gate->open) return;
        net::post(executor, [weak = session, response = std::move(response)]() mutable {
          if (auto self = weak.lock()) self->FinishAsync(std::move(response));
        });
      }
    };
    auto reply = std::make_shared<Reply>(weak_from_this(), socket_.get_executor(), server_.gate);
    try {
      route_->async_handler(request_, [reply](Response response) { reply->Send(std::move(response)); });
    } catch (...) {
      reply->Send(ErrorResponse(Internal("internal error")));
    }
  }

  void FinishAsync(Response response) {
    auto hold = std::move(async_hold_);  // Write's pending operation keeps the session now
    if (closed_) return;
    RunAfterHook(response);
    Write(std::move(response));
  }

  // Runs the before hook's body verifier (Request::verify_body), once.
  static std::optional<Response> VerifyBody(Request& request) {
    if (!request.verify_body) return std::nullopt;
    auto verify = std::move(request.verify_body);
    request.verify_body = nullptr;
    try {
      return verify(request.body);
    } catch (...) {
      return ErrorResponse(Internal("internal error"));
    }
  }

  static Response RunHandler(const Route& route, Request& request) {
    try {
      if (std::optional<Response> refused = VerifyBody(request)) return std::move(*refused);
      return route.handler(request);
    } catch (...) {
      // The exception text may quote data: it is not sent, and the hooks log.
      return ErrorResponse(Internal("internal error"));
    }
  }

  void RunAfterHook(const Response& response) { http::RunAfterHook(server_, *route_, request_, response); }

  // ---- Streaming: a stream_body handler, a streamed response -------------

  std::shared_ptr<StreamJob> MakeJob() {
    auto job = std::make_shared<StreamJob>();
    job->route = route_;
    std::weak_ptr<Session> weak = weak_from_this();
    Executor executor = socket_.get_executor();
    job->pieces = std::make_unique<PiecePipe>([weak, executor] {
      net::post(executor, [weak] {
        if (auto self = weak.lock()) self->WriteNextPiece();
      });
    });
    return job;
  }

  bool Launch(const std::shared_ptr<StreamJob>& job) {
    auto self = shared_from_this();
    Executor executor = socket_.get_executor();
    ServerState* server = &server_;
    return LaunchStream(server_, job,
                        [server, self, job, executor] { RunStream(*server, self, *job, executor); });
  }

  // The stream thread's work, off the strand: the stream_body handler (if
  // any), then the producer (if any), then the after hook for a streamed
  // response. It touches only `job` and posts to the session's strand.
  template <typename Executor>
  static void RunStream(const ServerState& server, const std::shared_ptr<Session>& session, StreamJob& job,
                        const Executor& executor) {
    Response response;
    if (job.run_handler) {
      response = RunHandler(*job.route, job.request);
      job.request.body_stream = nullptr;
      bool streamed = PrepareStream(job.request, response);
      if (!streamed) {
        http::RunAfterHook(server, *job.route, job.request, response);
        net::post(executor, [session, response = std::move(response)]() mutable {
          session->OnStreamHandlerDone(std::move(response), false);
        });
        return;
      }
      net::post(executor, [session, head = HeadOf(response)]() mutable {
        session->OnStreamHandlerDone(std::move(head), true);
      });
    } else {
      response = std::move(job.response);
    }

    auto producer = std::move(response.stream);
    response.stream = nullptr;
    std::optional<Error> failure;
    while (true) {
      std::string piece;
      Result<bool> more = false;
      try {
        more = producer(piece);
      } catch (...) {
        more = Internal("internal error");
      }
      if (!more) {
        failure.emplace(more.error());
        break;
      }
      if (!piece.empty() && !job.pieces->Push(std::move(piece))) break;  // the connection is gone
      if (!*more) break;
    }
    job.pieces->Finish(failure.has_value());
    std::string why;
    bool sent = job.pieces->WaitSent(&why);
    producer = nullptr;  // may hold files and keys: released before the hook, on this thread
    response.stream_failed = failure.has_value() || !sent;
    if (failure) {
      response.stream_error = failure->ToString();
    } else if (!sent) {
      response.stream_error = why;
    }
    http::RunAfterHook(server, *job.route, job.request, response);
  }

  // Too many streams (or stopping): 503, the handler does not run.
  void Busy(bool body_unread) {
    close_after_ = close_after_ || body_unread;
    Response response = ErrorResponse(Unavailable("too many streaming requests in progress (at most " +
                                                  std::to_string(std::max(1, server_.options.max_streams)) +
                                                  "); retry later"));
    response.headers.emplace_back("Retry-After", "1");
    HookThenWrite(std::move(response));
  }

  // A stream_body route passed the before hook: run its handler on a stream
  // thread now; the body follows through the pipe as the handler reads it.
  void StartStreamingHandler(bool has_body) {
    auto job = MakeJob();
    job->run_handler = true;
    std::optional<uint64_t> length;
    if (!parser_->chunked()) {
      if (auto l = parser_->content_length()) length = *l;
    }
    std::weak_ptr<Session> weak = weak_from_this();
    Executor executor = socket_.get_executor();
    job->body = std::make_unique<BodyPipe>(length, has_body, [weak, executor] {
      net::post(executor, [weak] {
        if (auto self = weak.lock()) self->PumpBody();
      });
    });
    body_complete_ = !has_body;
    if (has_body) {
      parser_->UseBuffer(nullptr, 0);  // no body byte is taken before PumpBody's first read
      parser_->body_limit(route_->max_body_bytes);
      continue_pending_ = IEquals(request_.Header("expect"), "100-continue");
    }
    job->request = std::move(request_);
    job->request.body_stream = job->body.get();
    if (!Launch(job)) {
      request_ = std::move(job->request);
      request_.body_stream = nullptr;
      return Busy(has_body);
    }
    job_ = std::move(job);
  }

  // Reads the next piece of a streamed body into the pipe, unless the
  // handler is done or the pipe is full (PumpBody is posted again then).
  void PumpBody() {
    if (closed_ || !job_ || !job_->body || !parser_ || body_op_pending_ || body_complete_ || body_failed_ ||
        handler_done_) {
      return;
    }
    body_op_pending_ = true;
    if (continue_pending_) {
      continue_pending_ = false;
      continue_.emplace(bhttp::status::continue_, 11);
      deadline_ = Clock::now() + server_.options.read_timeout;
      return bhttp::async_write(
          socket_, *continue_, Io([](Session& s, beast::error_code ec, size_t) {
            s.body_op_pending_ = false;
            s.continue_.reset();
            if (s.handler_done_) return s.RespondToStream();
            if (ec) {
              s.body_failed_ = true;
              return s.job_->body->Fail(Error(Code::kUnavailable, "sending 100 Continue: " + ec.message()));
            }
            s.PumpBody();
          }));
    }
    if (!staging_) staging_ = std::make_unique<char[]>(kPipeChunk);
    ReserveBodyBuffer();
    parser_->UseBuffer(staging_.get(), kPipeChunk);
    deadline_ = Clock::now() + server_.options.read_timeout;  // progress, not the whole body
    bhttp::async_read_some(socket_, buffer_, *parser_,
                           Io([](Session& s, beast::error_code ec, size_t) { s.OnBodyPiece(ec); }));
  }

  void OnBodyPiece(beast::error_code ec) {
    body_op_pending_ = false;
    if (ec == bhttp::error::need_buffer) ec = {};
    if (!ec && parser_->is_done()) body_complete_ = true;
    if (handler_done_) return RespondToStream();  // the rest of the body is not wanted
    if (closed_) return;
    size_t got = kPipeChunk - parser_->buffer_left();
    bool room = got == 0 || job_->body->Push(staging_.get(), got);
    if (ec) {
      body_failed_ = true;
      return job_->body->Fail(BodyError(ec));
    }
    if (body_complete_) return job_->body->Finish();
    if (room) PumpBody();
  }

  Error BodyError(const beast::error_code& ec) const {
    if (ec == bhttp::error::body_limit) {
      return Error(Code::kPayloadTooLarge, "request body exceeds the limit of " +
                                               std::to_string(route_->max_body_bytes) + " bytes for " +
                                               route_->method + " " + route_->pattern);
    }
    if (ec == beast::error::timeout) {
      return Error(Code::kUnavailable, "no request body data arrived for " +
                                           std::to_string(server_.options.read_timeout.count()) + " s");
    }
    if (ec == bhttp::error::partial_message || ec == bhttp::error::end_of_stream || ec == net::error::eof) {
      return Error(Code::kUnavailable, "the client stopped sending the request body");
    }
    if (IsHttpError(ec)) return Error(Code::kInvalidArgument, "malformed HTTP request body: " + ec.message());
    return Error(Code::kUnavailable, "reading the request body: " + ec.message());
  }

  // Posted by the stream thread when the stream_body handler returned: its
  // response (after hook done) or, if `streamed`, the head of the stream.
  void OnStreamHandlerDone(Response response, bool streamed) {
    if (closed_ || !job_) return;
    handler_done_ = true;
    handler_response_.emplace(std::move(response));
    handler_streams_ = streamed;
    if (body_op_pending_) {
      // Its completion responds. A read is cut short; the 100 Continue (a few
      // bytes) is let finish, so the response never follows half of it.
      if (!continue_) {
        beast::error_code ignored;
        socket_.cancel(ignored);
      }
      return;
    }
    RespondToStream();
  }

  void RespondToStream() {
    if (closed_ || !handler_response_) return;
    // A body the handler did not read to its end is not read here either.
    close_after_ = close_after_ || !body_complete_;
    Response response = std::move(*handler_response_);
    handler_response_.reset();
    if (handler_streams_) return WriteStreamed(std::move(response));
    Write(std::move(response));
  }

  // A handler on the strand returned a producer: it runs on a stream thread.
  void StartStreamedResponse(Response response) {
    auto job = MakeJob();
    Response head = HeadOf(response);
    job->response = std::move(response);
    job->request = std::move(request_);
    if (!Launch(job)) {
      request_ = std::move(job->request);
      return Busy(false);
    }
    job_ = std::move(job);
    WriteStreamed(std::move(head));
  }

  // The header of a streamed response, then its pieces as chunks.
  void WriteStreamed(Response head) {
    if (closed_) return;
    try {
      auto& out = stream_head_.emplace();
      FillHeader(out, head);
      out.keep_alive(keep_alive_ && !close_after_);
      out.chunked(true);
      stream_serializer_.emplace(out);
    } catch (...) {
      return CloseNow();
    }
    deadline_ = Clock::now() + server_.options.write_timeout;
    bhttp::async_write_header(socket_, *stream_serializer_,
                              Io([](Session& s, beast::error_code ec, size_t) { s.OnPieceWritten(ec); }));
  }

  void OnPieceWritten(beast::error_code ec) {
    if (ec) {
      job_->pieces->Close(false, "sending the response: " + ec.message());
      return CloseNow();
    }
    WriteNextPiece();
  }

  // Also posted by the stream thread when a piece (or the end) arrived while the strand waited.
  void WriteNextPiece() {
    if (closed_ || !job_ || !stream_serializer_) return;
    switch (job_->pieces->Take(piece_)) {
      case PiecePipe::Next::kPiece:
        deadline_ = Clock::now() + server_.options.write_timeout;  // progress, not the whole body
        return net::async_write(socket_, bhttp::make_chunk(net::buffer(piece_)),
                                Io([](Session& s, beast::error_code ec, size_t) { s.OnPieceWritten(ec); }));
      case PiecePipe::Next::kEnd: {
        // The last chunk is five bytes: written right here when the socket
        // takes them (it nearly always does), so the stream counts as sent
        // before the client can see its end, and a Stop the client then
        // calls cannot mark a delivered stream as broken off.
        piece_ = "0\r\n\r\n";
        beast::error_code ec;
        socket_.non_blocking(true, ec);
        size_t n = ec ? 0 : socket_.write_some(net::buffer(piece_), ec);
        if (!ec && n == piece_.size()) {
          piece_ = std::string();
          return OnLastPiece({});
        }
        if (ec && ec != net::error::would_block && ec != net::error::try_again) return OnLastPiece(ec);
        job_->pieces->NotEnding();
        piece_.erase(0, ec ? 0 : n);
        deadline_ = Clock::now() + server_.options.write_timeout;
        return net::async_write(socket_, net::buffer(piece_),
                                Io([](Session& s, beast::error_code ec, size_t) { s.OnLastPiece(ec); }));
      }
      case PiecePipe::Next::kAbort:
        // The producer failed after the header went out: no clean end, the client must see a break.
        job_->pieces->Close(false, "the response stream failed");
        return CloseNow();
      case PiecePipe::Next::kWait:
        return;
    }
  }

  void OnLastPiece(beast::error_code ec) {
    if (ec) {
      job_->pieces->Close(false, "sending the response: " + ec.message());
      return CloseNow();
    }
    job_->pieces->Close(true, "");
    bool keep = stream_head_->keep_alive();
    EndExchange();
    if (!keep) return Linger();
    WaitForRequest();
  }

  void ReserveBodyBuffer() {
    try {
      if (buffer_.capacity() < kBodyReadBuffer) buffer_.reserve(kBodyReadBuffer);
    } catch (...) {
      // Smaller reads then.
    }
  }

  // Forgets the exchange that was answered.
  void EndExchange() {
    if (buffer_.capacity() > kReadChunk && buffer_.size() < kReadChunk) buffer_.shrink_to_fit();
    body_ = std::string();
    parser_.reset();
    stream_serializer_.reset();
    stream_head_.reset();
    staging_.reset();
    piece_ = std::string();
    job_.reset();
    handler_response_.reset();
    handler_done_ = false;
    handler_streams_ = false;
    body_op_pending_ = false;
    body_complete_ = false;
    body_failed_ = false;
    continue_pending_ = false;
  }

  // A request that cannot be understood: answer 400 and end the connection.
  void Reject(Response response) {
    close_after_ = true;
    Write(std::move(response));
  }

  static bool IsSafeHeader(std::string_view text) {
    return text.find_first_of("\r\n") == std::string_view::npos && !text.empty();
  }

  static void FillHeader(bhttp::response_header<>& out, const Response& response) {
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
  }

  // The status line and header of a plain response into out (which keeps its
  // capacity from one exchange to the next): what Beast's serializer writes
  // for FillHeader + prepare_payload, without building a field table first.
  static void SerializeHead(const Response& response, bool keep_alive, std::string& out) {
    out.clear();
    out += "HTTP/1.1 ";
    out += std::to_string(response.status);
    out += ' ';
    out += View(bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(response.status))));
    out += "\r\nServer: takt\r\n";
    if (!response.content_type.empty() && IsSafeHeader(response.content_type)) {
      out += "Content-Type: ";
      out += response.content_type;
      out += "\r\n";
    }
    for (const auto& [name, value] : response.headers) {
      if (!IsSafeHeader(name) || value.find_first_of("\r\n") != std::string::npos ||
          name.find(':') != std::string::npos) {
        continue;
      }
      if (IEquals(name, "content-length") || IEquals(name, "transfer-encoding") ||
          IEquals(name, "connection") || IEquals(name, "server")) {
        continue;
      }
      out += name;
      out += ": ";
      out += value;
      out += "\r\n";
    }
    if (response.status != 204 && response.status != 304) {
      out += "Content-Length: ";
      out += std::to_string(response.body.size());
      out += "\r\n";
    }
    if (!keep_alive) out += "Connection: close\r\n";
    out += "\r\n";
  }

  void Write(Response response) {
    if (closed_) return;
    try {
      if (response.status < 200 || response.status > 999)
        response = ErrorResponse(Internal("internal error"));
      if (response.status == 204 || response.status == 304) response.body.clear();
      write_keep_alive_ = keep_alive_ && !close_after_;
      SerializeHead(response, write_keep_alive_, head_);
      body_ = std::move(response.body);
    } catch (...) {
      return CloseNow();
    }
    deadline_ = Clock::now() + server_.options.write_timeout;
    // Head and body in one gathered write.
    std::array<net::const_buffer, 2> buffers{net::buffer(head_), net::buffer(body_)};
    net::async_write(socket_, buffers, Io([](Session& s, beast::error_code ec, size_t) { s.OnWrite(ec); }));
  }

  void OnWrite(beast::error_code ec) {
    if (ec) return CloseNow();
    bool keep = write_keep_alive_;
    EndExchange();
    if (!keep) return Linger();
    WaitForRequest();
  }

  void Linger() {
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return CloseNow();
    buffer_.consume(buffer_.size());
    lingered_ = 0;
    request_deadline_ = Clock::now() + kLingerTime;
    Drain();
  }

  void Drain() {
    if (closed_) return;
    deadline_ = request_deadline_;
    socket_.async_read_some(buffer_.prepare(kReadChunk), Io([](Session& s, beast::error_code ec, size_t n) {
                              s.lingered_ += n;
                              if (ec || s.lingered_ > kLingerMaxBytes) return s.CloseNow();
                              s.Drain();
                            }));
  }

  ServerState& server_;
  Socket socket_;
  // The pending socket operation must complete by deadline_ (kNever when
  // none is pending); request_deadline_ bounds the whole request being read.
  Clock::time_point deadline_ = kNever;
  Clock::time_point request_deadline_ = kNever;
  bool timed_out_ = false;
  beast::flat_buffer buffer_;
  std::string remote_;
  bool closed_ = false;
  bool keep_alive_ = true;
  bool close_after_ = false;
  size_t lingered_ = 0;
  // The request being read (request_ is filled in as it is parsed); for a
  // stream_body route, until its body was read.
  std::optional<RequestParser> parser_;
  std::optional<bhttp::response<bhttp::empty_body>> continue_;
  std::string head_;  // the plain response being written: its head, its body
  std::string body_;
  bool write_keep_alive_ = true;
  Request request_;
  const Route* route_ = nullptr;
  std::shared_ptr<Session> async_hold_;  // set while an async handler's answer is due

  // A streaming exchange (job_ set): a stream_body handler or a streamed response.
  std::shared_ptr<StreamJob> job_;
  std::unique_ptr<char[]> staging_;  // kPipeChunk: socket -> pipe
  bool continue_pending_ = false;    // 100 Continue is due before the first body read
  bool body_op_pending_ = false;     // a body read (or the 100 Continue) is in flight
  bool body_complete_ = false;       // the whole body was read off the socket
  bool body_failed_ = false;
  bool handler_done_ = false;  // the stream_body handler returned; handler_response_ waits
  bool handler_streams_ = false;
  std::optional<Response> handler_response_;
  std::optional<bhttp::response<bhttp::empty_body>> stream_head_;
  std::optional<bhttp::response_serializer<bhttp::empty_body>> stream_serializer_;
  std::string piece_;  // the chunk being written
};

std::string EndpointText(const tcp::endpoint& endpoint) {
  beast::error_code ec;
  std::string address = endpoint.address().to_string(ec);
  if (endpoint.address().is_v6()) address = "[" + address + "]";
  return address + ":" + std::to_string(endpoint.port());
}

void Accept(ServerState* state);

// Sockets the server opens are not inherited by the processes it starts
// (training steps, sandboxes): Asio's accept does not set close-on-exec.
void CloseOnExec(int fd) {
  int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

void OnAccept(ServerState* state, Loop* loop, beast::error_code ec, Socket socket) {
  if (ec == net::error::operation_aborted) return;  // the acceptor was closed
  if (!ec) {
    CloseOnExec(socket.native_handle());
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // a response is one write; never wait for an ACK
    std::string remote = EndpointText(socket.remote_endpoint(ignored));
    auto session = std::make_shared<Session>(*state, std::move(socket), std::move(remote));
    {
      std::lock_guard lock(state->mu);
      if (state->stopping) return session->CloseNow();
    }
    {
      std::lock_guard lock(loop->mu);
      if (loop->sessions.size() >= loop->prune_at) {
        std::erase_if(loop->sessions, [](const std::weak_ptr<Session>& s) { return s.expired(); });
        loop->prune_at = std::max<size_t>(64, 2 * loop->sessions.size());
      }
      loop->sessions.push_back(session);
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

// New connections go to the loops in turn.
void Accept(ServerState* state) {
  {
    std::lock_guard lock(state->mu);
    if (state->stopping) return;
  }
  Loop* loop = state->loops[state->next_loop++ % state->loops.size()].get();
  state->acceptor->async_accept(loop->ioc, [state, loop](beast::error_code ec, Socket socket) {
    OnAccept(state, loop, ec, std::move(socket));
  });
}

// Every kSweepEvery, on the loop's thread: connections whose pending
// operation is past its deadline are closed.
void Sweep(Loop* loop) {
  if (!loop->sweeping) return;
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(loop->mu);
    live.reserve(loop->sessions.size());
    for (const auto& weak : loop->sessions) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
  }
  auto now = Clock::now();
  for (const auto& session : live) session->SweepDeadline(now);
  live.clear();
  loop->sweep->expires_after(kSweepEvery);
  loop->sweep->async_wait([loop](beast::error_code ec) {
    if (!ec) Sweep(loop);
  });
}

void RunContext(ServerState* state, net::io_context* ioc, std::string name) {
  SetThreadName(name);
  while (true) {
    try {
      ioc->run();
      break;
    } catch (...) {
      // Handlers catch their own exceptions; keep the thread alive regardless.
    }
  }
  {
    std::lock_guard lock(state->mu);
    --state->threads_running;
  }
  state->threads_done.notify_all();
}

int LoopCount(const ServerOptions& options) {
  if (options.loops > 0) return std::min(options.loops, 64);
  // One loop per CPU we may run on (taskset or a cpuset narrows it), at most 8.
  return std::clamp(UsableCpuCount(), 1, 8);
}

}  // namespace

struct Server::Impl : ServerState {
  using ServerState::ServerState;
};

Server::Server(ServerOptions options, std::shared_ptr<const Router> router)
    : impl_(std::make_unique<Impl>(std::max(1, options.threads), LoopCount(options))) {
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
      tcp::resolver resolver(s.pool);
      auto results = resolver.resolve(s.options.address, std::to_string(s.options.port), ec);
      if (ec) return fail(ec);
      if (results.empty()) return Unavailable("cannot listen on " + where + ": address not found");
      endpoint = results.begin()->endpoint();
    }
    s.acceptor.emplace(s.loops[0]->ioc.get_executor());
    if (s.acceptor->open(endpoint.protocol(), ec); ec) return fail(ec);
    CloseOnExec(s.acceptor->native_handle());
    if (s.acceptor->set_option(net::socket_base::reuse_address(true), ec); ec) return fail(ec);
    if (s.acceptor->bind(endpoint, ec); ec) return fail(ec);
    if (s.acceptor->listen(net::socket_base::max_listen_connections, ec); ec) return fail(ec);
    auto local = s.acceptor->local_endpoint(ec);
    if (ec) return fail(ec);
    s.port = local.port();
    s.accept_backoff.emplace(s.acceptor->get_executor());
    s.pool_work.emplace(s.pool.get_executor());
    for (auto& loop : s.loops) {
      loop->work.emplace(loop->ioc.get_executor());
      loop->sweep.emplace(loop->ioc.get_executor());
    }
  } catch (const std::exception& e) {
    s.acceptor.reset();
    return Unavailable("cannot listen on " + where + ": " + e.what());
  }

  s.started = true;
  ServerState* state = &s;
  net::post(s.acceptor->get_executor(), [state] { Accept(state); });
  for (auto& loop : s.loops) {
    net::post(loop->ioc, [loop = loop.get()] { Sweep(loop); });
  }
  // Every loop needs its thread (or its connections would hang) and the pool
  // at least one; fewer pool threads than asked for still serve.
  auto undo = [&](const std::system_error& e) {
    s.pool.stop();
    for (auto& loop : s.loops) loop->ioc.stop();
    for (auto& thread : s.threads) thread.join();
    s.threads.clear();
    s.threads_running = 0;
    s.started = false;
    s.pool_work.reset();
    for (auto& loop : s.loops) loop->work.reset();
    s.acceptor.reset();
    return Unavailable(std::string("cannot start the server threads: ") + e.what());
  };
  try {
    for (auto& loop : s.loops) {
      s.threads.emplace_back(RunContext, state, &loop->ioc, "takt-http-" + std::to_string(s.threads.size()));
      ++s.threads_running;
    }
  } catch (const std::system_error& e) {
    return undo(e);
  }
  int threads = std::max(1, s.options.threads);
  for (int i = 0; i < threads; ++i) {
    try {
      s.threads.emplace_back(RunContext, state, &s.pool, "takt-pool-" + std::to_string(i));
      ++s.threads_running;
    } catch (const std::system_error& e) {
      if (i == 0) return undo(e);
      break;
    }
  }
  return Ok();
}

void Server::Stop() {
  namespace net = boost::asio;
  Impl& s = *impl_;
  std::vector<std::shared_ptr<Session>> live;
  std::vector<std::shared_ptr<StreamJob>> streams;
  {
    std::lock_guard lock(s.mu);
    if (!s.started || s.stopping) return;
    s.stopping = true;
    streams = s.streams;
  }
  for (auto& loop : s.loops) {
    std::lock_guard lock(loop->mu);
    for (const auto& weak : loop->sessions) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
    loop->sessions.clear();
  }
  {
    // Async responses from now on are dropped: their connections are closing.
    std::unique_lock gate_lock(s.gate->mu);
    s.gate->open = false;
  }
  // A handler blocked in BodyStream::Read or a producer waiting to hand over a
  // piece returns now; no new stream starts (LaunchStream sees `stopping`).
  for (const auto& job : streams) job->Cancel(Error(Code::kUnavailable, "the server is stopping"));
  streams.clear();
  net::post(s.acceptor->get_executor(), [&s] {
    boost::system::error_code ec;
    s.acceptor->close(ec);
    s.accept_backoff->cancel();
  });
  for (auto& loop : s.loops) {
    net::post(loop->ioc, [loop = loop.get()] {
      loop->sweeping = false;
      loop->sweep->cancel();
    });
  }
  for (const auto& session : live) session->PostClose();
  live.clear();
  s.pool_work.reset();
  for (auto& loop : s.loops) loop->work.reset();
  {
    std::unique_lock lock(s.mu);
    // Connections close quickly; only a handler that blocks keeps a thread
    // (and the loop its answer goes back to). Past the grace period the
    // io_contexts are stopped, so idle threads return now.
    if (!s.threads_done.wait_for(lock, kStopGrace, [&s] { return s.threads_running == 0; })) {
      s.pool.stop();
      for (auto& loop : s.loops) loop->ioc.stop();
    }
  }
  for (auto& thread : s.threads) thread.join();
  s.threads.clear();
  {
    // Stream threads hold sessions and post to the io_contexts: they end before they do.
    std::unique_lock lock(s.mu);
    s.streams_done.wait(lock, [&s] { return s.streams.empty(); });
  }
  // No thread runs now: if the grace period ran out before the posted close, close here.
  boost::system::error_code ec;
  s.acceptor->close(ec);
}

}  // namespace takt::http
