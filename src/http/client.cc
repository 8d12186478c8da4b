// Boost 1.74 with GCC 12 in C++23 mode needs <utility> before any Asio header.
#include <utility>

#include "http/client.h"

#include <poll.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "http/message.h"

namespace takt::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

constexpr size_t kUploadChunk = size_t{1} << 20;
constexpr size_t kDownloadPiece = 256 * 1024;
constexpr size_t kReadBuffer = 64 * 1024;
constexpr uint32_t kMaxResponseHeader = 64 * 1024;

std::string_view View(beast::string_view s) { return std::string_view(s.data(), s.size()); }
beast::string_view BeastView(std::string_view s) { return beast::string_view(s.data(), s.size()); }

// Errors after which a request on a reused connection is retried once: the
// server closed the idle connection before it read anything of ours.
bool IsClosedByPeer(const beast::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe || ec == net::error::connection_aborted;
}

}  // namespace

struct Client::Impl {
  std::string base_url;     // "http://127.0.0.1:8080", no trailing '/'
  std::string host;         // "127.0.0.1"
  std::string port;         // "8080"
  std::string host_header;  // "127.0.0.1:8080"
  std::string prefix;       // "" or "/takt"
  std::map<std::string, std::pair<std::string, std::string>> headers;  // lowercase name -> (name, value)
  std::chrono::seconds timeout{60};

  net::io_context ioc{1};
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  // Runs the operation started by `start` (which takes a completion handler)
  // to completion on this thread; the stream's expiry bounds it.
  template <typename Start>
  beast::error_code Run(Start&& start) {
    beast::error_code result;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
  }

  void Disconnect() {
    stream.reset();
    buffer.clear();
  }

  Status Connect() {
    Disconnect();
    auto unreachable = [this](const std::string& why) {
      return Unavailable("cannot reach takt server at " + base_url + ": " + why +
                         "; is `takt server` running? (set TAKT_URL)");
    };
    beast::error_code ec;
    tcp::resolver resolver(ioc);
    auto endpoints = resolver.resolve(host, port, ec);
    if (ec) return unreachable(ec.message());
    stream.emplace(ioc);
    stream->expires_after(timeout);
    ec = Run([&](auto handler) { stream->async_connect(endpoints, std::move(handler)); });
    if (ec) {
      Disconnect();
      return unreachable(ec.message());
    }
    beast::error_code ignored;
    stream->socket().set_option(tcp::no_delay(true), ignored);
    return Ok();
  }

  // True when a kept-alive connection cannot be reused: the server closed it
  // (or sent something unasked) while it was idle.
  bool LooksClosed() {
    pollfd p{stream->socket().native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 0) != 0;
  }

  // True when the server has started to answer (while the body still uploads).
  bool ResponseWaiting() {
    beast::error_code ec;
    return stream->socket().available(ec) > 0 && !ec;
  }

  struct Outcome {
    Result<ClientResponse> result;
    bool retryable = false;     // nothing of the response arrived: the connection was dead
    bool body_touched = false;  // the BodySource was read from (it cannot be replayed)
  };

  // The request body: `fixed` when `source` is null.
  struct Upload {
    std::string_view fixed;
    const BodySource* source = nullptr;
  };

  Outcome Exchange(std::string_view method, std::string_view target, const Upload& upload,
                   std::string_view content_type, const std::function<void(size_t, size_t)>& progress,
                   const std::function<Status(std::string_view)>& sink) {
    auto broken = [&](const beast::error_code& ec) {
      return Unavailable("request " + std::string(method) + " " + std::string(target) + " to " + base_url +
                         ": " + ec.message());
    };
    const BodySource* source = upload.source;
    bool chunked = source != nullptr && !source->length;
    const uint64_t total = source != nullptr ? source->length.value_or(0) : upload.fixed.size();

    bhttp::request<bhttp::empty_body> request;
    request.version(11);
    request.method_string(BeastView(method));
    std::string full_target = prefix + std::string(target);
    request.target(BeastView(full_target));
    request.set(bhttp::field::host, BeastView(host_header));
    request.set(bhttp::field::user_agent, "takt");
    for (const auto& [lower, header] : headers)
      request.set(BeastView(header.first), BeastView(header.second));
    if (!content_type.empty()) request.set(bhttp::field::content_type, BeastView(content_type));
    if (chunked) {
      request.chunked(true);
    } else if (total > 0 || source != nullptr || method == "POST" || method == "PUT" || method == "PATCH") {
      request.content_length(total);
    }
    request.keep_alive(true);

    bhttp::request_serializer<bhttp::empty_body> serializer(request);
    stream->expires_after(timeout);
    beast::error_code ec =
        Run([&](auto handler) { bhttp::async_write_header(*stream, serializer, std::move(handler)); });
    if (ec) return {broken(ec), IsClosedByPeer(ec)};

    // The body, ~1 MiB at a time. Stops early when the server has answered.
    Outcome outcome{ClientResponse{}};
    std::unique_ptr<char[]> chunk;
    uint64_t sent = 0;
    // The next piece of the body; empty at its end.
    auto next_piece = [&]() -> Result<std::string_view> {
      if (source == nullptr) {
        return upload.fixed.substr(sent, std::min<uint64_t>(kUploadChunk, upload.fixed.size() - sent));
      }
      size_t want = kUploadChunk;
      if (source->length) want = static_cast<size_t>(std::min<uint64_t>(want, *source->length - sent));
      if (want == 0) return std::string_view();
      if (!chunk) chunk = std::make_unique<char[]>(kUploadChunk);
      size_t filled = 0;
      while (filled < want) {
        outcome.body_touched = true;
        TAKT_ASSIGN_OR_RETURN(size_t n, source->read(chunk.get() + filled, want - filled));
        if (n == 0) break;
        filled += std::min(n, want - filled);
      }
      if (source->length && filled < want) {
        return InvalidArgument("the request body ended after " + std::to_string(sent + filled) + " of " +
                               std::to_string(*source->length) + " bytes");
      }
      return std::string_view(chunk.get(), filled);
    };
    beast::error_code write_ec;
    bool answered_early = false;
    while (true) {
      bool more = source != nullptr ? !source->length || sent < *source->length : sent < upload.fixed.size();
      if (more && ResponseWaiting()) {
        answered_early = true;
        break;
      }
      auto piece = next_piece();
      if (!piece) {
        Disconnect();  // the request is cut off: the connection cannot be reused
        outcome.result = std::unexpected(piece.error());
        return outcome;
      }
      stream->expires_after(timeout);
      if (piece->empty()) {
        if (chunked) {
          write_ec = Run(
              [&](auto handler) { net::async_write(*stream, bhttp::make_chunk_last(), std::move(handler)); });
        }
        break;
      }
      if (chunked) {
        write_ec = Run([&](auto handler) {
          net::async_write(*stream, bhttp::make_chunk(net::buffer(piece->data(), piece->size())),
                           std::move(handler));
        });
      } else {
        write_ec = Run([&](auto handler) {
          net::async_write(*stream, net::buffer(piece->data(), piece->size()), std::move(handler));
        });
      }
      if (write_ec) break;
      sent += piece->size();
      if (progress) progress(static_cast<size_t>(sent), static_cast<size_t>(total));
    }

    // Read the response even after a failed upload: the server may have
    // answered early (413) and closed.
    // Beast reads max(512, free capacity) bytes at a time.
    if (buffer.capacity() < kReadBuffer) buffer.reserve(kReadBuffer);
    std::optional<bhttp::response_parser<bhttp::buffer_body>> parser;
    auto read_some = [&] {
      stream->expires_after(timeout);
      beast::error_code read_ec =
          Run([&](auto handler) { bhttp::async_read_some(*stream, buffer, *parser, std::move(handler)); });
      return read_ec == bhttp::error::need_buffer ? beast::error_code() : read_ec;
    };
    while (true) {
      parser.emplace();
      parser->body_limit(std::numeric_limits<std::uint64_t>::max());  // not boost::none: see server.cc
      parser->header_limit(kMaxResponseHeader);
      if (method == "HEAD") parser->skip(true);  // a length, but no body
      parser->get().body().data = nullptr;       // the header first
      while (!parser->is_header_done()) {
        ec = read_some();
        if (ec) break;
      }
      if (ec) {
        bool nothing = !parser->got_some();
        const beast::error_code& cause = write_ec && nothing ? write_ec : ec;
        outcome.result = broken(cause);
        outcome.retryable = nothing && (IsClosedByPeer(ec) || IsClosedByPeer(write_ec));
        return outcome;
      }
      int status = parser->get().result_int();
      if (status >= 200 || status == 101) break;  // skip interim 1xx responses
    }
    int status = parser->get().result_int();
    bool to_sink = sink && status >= 200 && status < 300;
    std::string collected;
    std::unique_ptr<char[]> piece;
    while (!parser->is_done()) {
      if (!piece) piece = std::make_unique<char[]>(kDownloadPiece);
      auto& body = parser->get().body();
      body.data = piece.get();
      body.size = kDownloadPiece;
      ec = read_some();
      size_t got = kDownloadPiece - parser->get().body().size;
      if (got > 0) {
        if (to_sink) {
          Status accepted = sink(std::string_view(piece.get(), got));
          if (!accepted) {
            Disconnect();  // the rest of the response is not read
            outcome.result = std::unexpected(accepted.error());
            return outcome;
          }
        } else {
          collected.append(piece.get(), got);
        }
      }
      if (ec) {
        Disconnect();
        outcome.result = Unavailable("request " + std::string(method) + " " + std::string(target) + " to " +
                                     base_url + ": the response broke off: " + ec.message());
        return outcome;
      }
    }
    if (write_ec || answered_early) {
      // The server answered before taking the whole body: the connection is done.
      Disconnect();
    }

    auto& message = parser->get();
    ClientResponse& response = *outcome.result;
    response.status = message.result_int();
    for (const auto& field : message) {
      auto [it, inserted] = response.headers.emplace(ToLower(View(field.name_string())), View(field.value()));
      if (!inserted) {
        it->second += ", ";
        it->second += View(field.value());
      }
    }
    if (auto it = response.headers.find("content-type"); it != response.headers.end()) {
      response.content_type = it->second;
    }
    bool keep_alive = message.keep_alive();
    response.body = std::move(collected);
    if (!keep_alive) Disconnect();
    return outcome;
  }

  Status CheckRequest(std::string_view method, std::string_view target) const {
    if (target.empty() || target.front() != '/') {
      return InvalidArgument("request target must start with '/' (got '" + std::string(target) + "')");
    }
    if (std::any_of(target.begin(), target.end(), [](char c) { return c <= ' ' || c == 0x7f; })) {
      return InvalidArgument("request target must be percent-encoded (see PercentEncode)");
    }
    if (method.empty() || method.find_first_of(" \r\n") != std::string_view::npos) {
      return InvalidArgument("invalid HTTP method '" + std::string(method) + "'");
    }
    return Ok();
  }

  // Connects if needed and runs the exchange, once more on a fresh connection
  // if a kept-alive one turned out dead before anything of it arrived.
  Result<ClientResponse> SendWithRetry(std::string_view method, std::string_view target, const Upload& upload,
                                       std::string_view content_type,
                                       const std::function<void(size_t, size_t)>& progress,
                                       const std::function<Status(std::string_view)>& sink) {
    try {
      for (int attempt = 0;; ++attempt) {
        if (stream && LooksClosed()) Disconnect();
        bool reused = stream.has_value();
        if (!reused) TAKT_RETURN_IF_ERROR(Connect());
        Outcome outcome = Exchange(method, target, upload, content_type, progress, sink);
        if (outcome.result) return std::move(outcome.result);
        Disconnect();
        bool replayable = upload.source == nullptr || !outcome.body_touched;
        if (!reused || !outcome.retryable || !replayable || attempt > 0) return std::move(outcome.result);
      }
    } catch (const std::exception& e) {
      Disconnect();
      return Internal(std::string("http client: ") + e.what());
    }
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Result<Client> Client::Create(std::string_view base_url) {
  std::string lower = ToLower(base_url);
  if (lower.starts_with("https://")) return InvalidArgument("https is not supported yet");
  if (!lower.starts_with("http://")) {
    return InvalidArgument("server URL must start with http:// (got '" + std::string(base_url) + "')");
  }
  std::string_view rest = base_url.substr(7);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view prefix = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  while (prefix.ends_with('/')) prefix.remove_suffix(1);

  std::string_view host;
  std::string_view port = "80";
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return InvalidArgument("server URL: unterminated '[' in host");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return InvalidArgument("server URL: unexpected text after ']'");
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (host.empty()) return InvalidArgument("server URL has no host: '" + std::string(base_url) + "'");
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(std::string(port)) == 0 || std::stoi(std::string(port)) > 65535) {
    return InvalidArgument("server URL has an invalid port: '" + std::string(base_url) + "'");
  }

  auto impl = std::make_unique<Impl>();
  impl->host = std::string(host);
  impl->port = std::string(port);
  impl->host_header = std::string(authority);
  impl->prefix = std::string(prefix);
  impl->base_url = "http://" + std::string(authority) + std::string(prefix);
  return Client(std::move(impl));
}

void Client::SetHeader(std::string name, std::string value) {
  std::string key = ToLower(name);
  impl_->headers[key] = {std::move(name), std::move(value)};
}

void Client::SetTimeout(std::chrono::seconds t) { impl_->timeout = t; }

const std::string& Client::base_url() const { return impl_->base_url; }

Result<ClientResponse> Client::Send(std::string_view method, std::string_view target, std::string_view body,
                                    std::string_view content_type,
                                    const std::function<void(size_t, size_t)>& progress) {
  TAKT_RETURN_IF_ERROR(impl_->CheckRequest(method, target));
  return impl_->SendWithRetry(method, target, Impl::Upload{body, nullptr}, content_type, progress, {});
}

Result<ClientResponse> Client::SendStreaming(std::string_view method, std::string_view target,
                                             const BodySource* body, std::string_view content_type,
                                             const std::function<void(size_t, size_t)>& progress,
                                             const std::function<Status(std::string_view)>& sink) {
  TAKT_RETURN_IF_ERROR(impl_->CheckRequest(method, target));
  if (body != nullptr && !body->read) return InvalidArgument("the request body source has no read function");
  return impl_->SendWithRetry(method, target, Impl::Upload{{}, body}, content_type, progress, sink);
}

}  // namespace takt::http
