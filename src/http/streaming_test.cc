// Streaming request bodies (Route::stream_body, BodyStream) and streamed
// responses (Response::stream) through the real server and client on loopback.

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "core/json.h"
#include "http/client.h"
#include "http/server.h"
#include "http/testing.h"

namespace takt::http {
namespace {

using namespace std::chrono_literals;
using testing::ClientFor;
using testing::RawConnection;
using testing::StartServer;

constexpr uint64_t kMiB = uint64_t{1} << 20;

Route StreamRoute(std::string method, std::string pattern, Handler handler,
                  size_t max_body = size_t{1} << 40) {
  Route route;
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.is_public = true;
  route.stream_body = true;
  route.max_body_bytes = max_body;
  route.handler = std::move(handler);
  return route;
}

Route PlainRoute(std::string method, std::string pattern, Handler handler) {
  Route route;
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.is_public = true;
  route.handler = std::move(handler);
  return route;
}

Json BodyJson(const ClientResponse& response) {
  auto json = ParseJson(response.body, "response body");
  return json ? *json : Json();
}

std::string ErrorCode(const ClientResponse& response) {
  Json json = BodyJson(response);
  if (!json.is_object() || !json.contains("error")) return "";
  return json["error"]["code"].get<std::string>();
}

uint8_t PatternByte(uint64_t i) { return static_cast<uint8_t>((i * 7 + i / 4099) & 0xff); }

uint64_t Fnv(uint64_t hash, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) hash = (hash ^ static_cast<uint8_t>(data[i])) * 1099511628211ull;
  return hash;
}
constexpr uint64_t kFnvStart = 14695981039346656037ull;

// `size` bytes of a pattern, handed out in pieces of at most `piece`; sent
// with Content-Length when `with_length`, else chunked.
struct PatternSource {
  uint64_t size;
  bool with_length;
  size_t piece = 300 * 1000;
  bool hash = false;
  uint64_t produced = 0;
  uint64_t fnv = kFnvStart;

  BodySource Source() {
    BodySource source;
    if (with_length) source.length = size;
    source.read = [this](char* buf, size_t n) -> Result<size_t> {
      size_t k = static_cast<size_t>(std::min<uint64_t>({n, piece, size - produced}));
      if (hash) {
        for (size_t i = 0; i < k; ++i) buf[i] = static_cast<char>(PatternByte(produced + i));
        fnv = Fnv(fnv, buf, k);
      } else {
        std::memset(buf, 'x', k);
      }
      produced += k;
      return k;
    };
    return source;
  }
};

// Reads the whole body; answers {"bytes", "length", "fnv"} or the read error.
Response CountBody(Request& request, bool hash) {
  std::vector<char> buf(200 * 1000);
  uint64_t total = 0;
  uint64_t fnv = kFnvStart;
  while (true) {
    auto n = request.body_stream->Read(buf.data(), buf.size());
    if (!n) return ErrorResponse(n.error());
    if (*n == 0) break;
    total += *n;
    if (hash) fnv = Fnv(fnv, buf.data(), *n);
  }
  auto length = request.body_stream->content_length();
  Json json = {{"bytes", total},
               {"bytes_read", request.body_stream->bytes_read()},
               {"length", length ? Json(*length) : Json(nullptr)},
               {"fnv", std::to_string(fnv)},
               {"body_empty", request.body.empty()}};
  return JsonResponse(200, json.dump());
}

// VmRSS / VmHWM of this process in bytes.
struct Memory {
  uint64_t rss = 0;
  uint64_t peak = 0;
};
Memory ReadMemory() {
  Memory memory;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    std::istringstream fields(line);
    std::string name;
    uint64_t kb = 0;
    fields >> name >> kb;
    if (name == "VmRSS:") memory.rss = kb * 1024;
    if (name == "VmHWM:") memory.peak = kb * 1024;
  }
  return memory;
}
// ASan holds freed memory in its quarantine (256 MiB by default), so RSS says
// nothing about the server's buffers there: the bound is checked in the other builds.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRssIsMeaningful = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kRssIsMeaningful = false;
#else
constexpr bool kRssIsMeaningful = true;
#endif
#else
constexpr bool kRssIsMeaningful = true;
#endif

// Starts a new peak (VmHWM := VmRSS); if the kernel refuses, VmHWM stays the
// lifetime peak, which only makes the bound stricter.
void ResetPeak() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
}

// A latch the test opens; waits are bounded so a broken server cannot hang the test.
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool Wait(std::chrono::milliseconds limit = 20s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Waits until `condition` holds (true) or `limit` passed (false).
template <typename Condition>
bool Eventually(Condition condition, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// A producer of `pieces` pieces of `piece_size` bytes ('y').
std::function<Result<bool>(std::string&)> Pieces(uint64_t pieces, size_t piece_size) {
  auto made = std::make_shared<uint64_t>(0);
  return [=](std::string& out) -> Result<bool> {
    out.assign(piece_size, 'y');
    return ++*made < pieces;
  };
}

Response StreamedResponse(std::function<Result<bool>(std::string&)> producer) {
  Response response;
  response.content_type = "application/octet-stream";
  response.headers.emplace_back("X-Takt-Export", "1");
  response.stream = std::move(producer);
  return response;
}

class StreamingTest : public ::testing::Test {
 protected:
  void Start(ServerOptions options = {}, BeforeHook before = {}, AfterHook after = {}) {
    server_ = StartServer(router_, options, std::move(before), std::move(after));
    ASSERT_NE(server_, nullptr);
  }
  std::shared_ptr<Router> router_ = std::make_shared<Router>();
  std::unique_ptr<Server> server_;
};

TEST_F(StreamingTest, Upload256MiBWithContentLengthInBoundedMemory) {
  router_->Add(StreamRoute("PUT", "/ingest", [](Request& request) { return CountBody(request, false); }));
  Start();
  Client client = ClientFor(*server_);

  ResetPeak();
  Memory before = ReadMemory();
  PatternSource pattern{256 * kMiB, true};
  BodySource source = pattern.Source();
  size_t progress_calls = 0;
  size_t last_sent = 0;
  size_t last_total = 0;
  auto response = client.SendStreaming("PUT", "/ingest", &source, "text/csv",
                                       [&](size_t sent, size_t total) {
                                         ++progress_calls;
                                         last_sent = sent;
                                         last_total = total;
                                       },
                                       {});
  Memory after = ReadMemory();

  ASSERT_TRUE(response) << response.error().ToString();
  ASSERT_EQ(response->status, 200) << response->body;
  Json json = BodyJson(*response);
  EXPECT_EQ(json["bytes"], 256 * kMiB);
  EXPECT_EQ(json["bytes_read"], 256 * kMiB);
  EXPECT_EQ(json["length"], 256 * kMiB);
  EXPECT_EQ(json["body_empty"], true);
  EXPECT_EQ(progress_calls, 256u);  // ~1 MiB pieces
  EXPECT_EQ(last_sent, 256 * kMiB);
  EXPECT_EQ(last_total, 256 * kMiB);
  uint64_t growth = std::max(after.peak, after.rss) - before.rss;
  if (kRssIsMeaningful) {
    EXPECT_LT(growth, 64 * kMiB) << "RSS before " << before.rss << ", peak after " << after.peak;
  }
}

TEST_F(StreamingTest, ChunkedUploadArrivesIntactAndTheConnectionIsReused) {
  router_->Add(StreamRoute("POST", "/ingest", [](Request& request) {
    Response response = CountBody(request, true);
    Json json = BodyJson(ClientResponse{200, "", response.body, {}});
    json["remote"] = request.remote_address;
    response.body = json.dump();
    return response;
  }));
  Start();
  Client client = ClientFor(*server_);

  std::vector<std::string> remotes;
  for (int i = 0; i < 2; ++i) {
    PatternSource pattern{5 * kMiB + 17, false, 77777, true};
    BodySource source = pattern.Source();
    std::vector<std::pair<size_t, size_t>> calls;
    auto response =
        client.SendStreaming("POST", "/ingest", &source, "text/csv",
                             [&](size_t sent, size_t total) { calls.emplace_back(sent, total); }, {});
    ASSERT_TRUE(response) << response.error().ToString();
    ASSERT_EQ(response->status, 200) << response->body;
    Json json = BodyJson(*response);
    EXPECT_EQ(json["bytes"], 5 * kMiB + 17);
    EXPECT_EQ(json["length"], nullptr);  // chunked: no length up front
    EXPECT_EQ(json["fnv"], std::to_string(pattern.fnv));
    ASSERT_EQ(calls.size(), 6u);
    EXPECT_EQ(calls[0], std::make_pair(size_t{1} << 20, size_t{0}));  // total unknown
    EXPECT_EQ(calls.back().first, 5 * kMiB + 17);
    remotes.push_back(json["remote"].get<std::string>());
  }
  EXPECT_EQ(remotes[0], remotes[1]) << "a fully read streamed body leaves the connection reusable";
}

TEST_F(StreamingTest, PlainSendAndSmallContentLengthBodiesWorkOnStreamRoutes) {
  router_->Add(StreamRoute("POST", "/ingest", [](Request& request) { return CountBody(request, true); }));
  Start();
  Client client = ClientFor(*server_);
  std::string body = "a,b\n1,2\n";
  auto response = client.Send("POST", "/ingest", body, "text/csv");
  ASSERT_TRUE(response) << response.error().ToString();
  ASSERT_EQ(response->status, 200);
  EXPECT_EQ(BodyJson(*response)["bytes"], body.size());
  EXPECT_EQ(BodyJson(*response)["length"], body.size());
  EXPECT_EQ(BodyJson(*response)["fnv"], std::to_string(Fnv(kFnvStart, body.data(), body.size())));

  auto empty = client.Send("POST", "/ingest", "", "text/csv");
  ASSERT_TRUE(empty) << empty.error().ToString();
  EXPECT_EQ(BodyJson(*empty)["bytes"], 0);

  // A raw chunked body with several chunks, then a request pipelined behind it.
  RawConnection raw(server_->port());
  ASSERT_TRUE(
      raw.Send("POST /ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
               "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"));
  std::string received = raw.ReadUntil("\"bytes\":2", 5s);
  EXPECT_NE(received.find("\"bytes\":7"), std::string::npos) << received;
  EXPECT_NE(received.find("\"bytes\":2"), std::string::npos) << received;
}

TEST_F(StreamingTest, HandlerThatAnswersAfterHalfTheBodyIsHeardByTheClient) {
  std::atomic<uint64_t> seen = 0;
  router_->Add(StreamRoute("PUT", "/ingest", [&](Request& request) {
    std::vector<char> buf(1 << 16);
    while (request.body_stream->bytes_read() < 8 * kMiB) {
      auto n = request.body_stream->Read(buf.data(), buf.size());
      if (!n || *n == 0) return ErrorResponse(Internal("unexpected end"));
    }
    seen = request.body_stream->bytes_read();
    return ErrorResponse(InvalidArgument("row 1042: column force: not a number"));
  }));
  router_->Add(PlainRoute("GET", "/ping", [](Request&) { return JsonResponse(200, "{}"); }));
  Start();
  Client client = ClientFor(*server_);

  PatternSource pattern{64 * kMiB, true};
  BodySource source = pattern.Source();
  auto response = client.SendStreaming("PUT", "/ingest", &source, "text/csv", {}, {});
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 400);
  EXPECT_EQ(ErrorCode(*response), "INVALID_ARGUMENT");
  EXPECT_EQ(response->headers["connection"], "close");
  EXPECT_GE(seen.load(), 8 * kMiB);
  EXPECT_LT(pattern.produced, 64 * kMiB) << "the upload should stop once the answer arrived";

  // The same with a chunked body, and the client reconnects afterwards.
  PatternSource chunked{64 * kMiB, false};
  BodySource chunked_source = chunked.Source();
  auto again = client.SendStreaming("PUT", "/ingest", &chunked_source, "text/csv", {}, {});
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->status, 400);
  auto ping = client.Send("GET", "/ping");
  ASSERT_TRUE(ping) << ping.error().ToString();
  EXPECT_EQ(ping->status, 200);
}

TEST_F(StreamingTest, ClientThatStallsMidBodyGivesUnavailableAfterReadTimeout) {
  std::mutex mu;
  std::optional<Error> error;
  uint64_t read_before = 0;
  std::atomic<bool> done = false;
  router_->Add(StreamRoute("PUT", "/ingest", [&](Request& request) {
    char buf[4096];
    while (true) {
      auto n = request.body_stream->Read(buf, sizeof(buf));
      if (!n || *n == 0) {
        std::lock_guard lock(mu);
        if (!n) error.emplace(n.error());
        read_before = request.body_stream->bytes_read();
        done = true;
        return n ? JsonResponse(200, "{}") : ErrorResponse(n.error());
      }
    }
  }));
  ServerOptions options;
  options.read_timeout = 1s;
  Start(options);

  RawConnection raw(server_->port());
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(raw.Send("PUT /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789"));
  ASSERT_TRUE(Eventually([&] { return done.load(); }, 5s));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 900ms);
  EXPECT_LT(elapsed, 3s);
  std::lock_guard lock(mu);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), Code::kUnavailable);
  EXPECT_EQ(error->message(), "no request body data arrived for 1 s");
  EXPECT_EQ(read_before, 10u);  // what did arrive was handed out first
  EXPECT_TRUE(raw.WaitForClose(5s));
  server_->Stop();
}

TEST_F(StreamingTest, ReadTimeoutBoundsProgressNotTheWholeUpload) {
  router_->Add(StreamRoute("PUT", "/ingest", [](Request& request) { return CountBody(request, false); }));
  ServerOptions options;
  options.read_timeout = 1s;
  Start(options);

  RawConnection raw(server_->port());
  ASSERT_TRUE(raw.Send("PUT /ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
  for (int i = 0; i < 6; ++i) {  // 2.4 s in all, never 1 s without a byte
    std::this_thread::sleep_for(400ms);
    ASSERT_TRUE(raw.Send("5\r\nabcde\r\n"));
  }
  ASSERT_TRUE(raw.Send("0\r\n\r\n"));
  std::string received = raw.ReadUntil("}", 5s);
  EXPECT_TRUE(received.starts_with("HTTP/1.1 200")) << received;
  EXPECT_NE(received.find("\"bytes\":30"), std::string::npos) << received;
}

TEST_F(StreamingTest, BodyPastMaxBodyBytesIsPayloadTooLarge) {
  std::atomic<int> calls = 0;
  std::atomic<int> too_large = 0;
  std::atomic<uint64_t> read_before_error = 0;
  router_->Add(StreamRoute(
      "PUT", "/ingest",
      [&](Request& request) {
        ++calls;
        std::vector<char> buf(1 << 16);
        while (true) {
          auto n = request.body_stream->Read(buf.data(), buf.size());
          if (!n) {
            if (n.error().code() == Code::kPayloadTooLarge) ++too_large;
            read_before_error = request.body_stream->bytes_read();
            return ErrorResponse(n.error());
          }
          if (*n == 0) return JsonResponse(200, "{}");
        }
      },
      kMiB));
  Start();
  Client client = ClientFor(*server_);

  // Chunked: the limit applies as the body arrives.
  PatternSource chunked{4 * kMiB, false};
  BodySource source = chunked.Source();
  auto response = client.SendStreaming("PUT", "/ingest", &source, "text/csv", {}, {});
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(ErrorCode(*response), "PAYLOAD_TOO_LARGE");
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(too_large.load(), 1);
  EXPECT_LE(read_before_error.load(), kMiB);

  // A Content-Length over the limit is refused before the handler runs.
  PatternSource sized{4 * kMiB, true};
  BodySource sized_source = sized.Source();
  auto refused = client.SendStreaming("PUT", "/ingest", &sized_source, "text/csv", {}, {});
  ASSERT_TRUE(refused) << refused.error().ToString();
  EXPECT_EQ(refused->status, 413);
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(StreamingTest, RefusedByTheBeforeHookTheHandlerNeverRunsAndTheBodyIsNeverRead) {
  std::atomic<int> calls = 0;
  Route route = StreamRoute("PUT", "/ingest", [&](Request& request) {
    ++calls;
    return CountBody(request, false);
  });
  route.is_public = false;
  route.action = "dataset:ingest";
  router_->Add(std::move(route));
  std::mutex mu;
  std::vector<int> audited;
  BeforeHook before = [](const Route&, Request& request) -> std::optional<Response> {
    if (request.Header("authorization") != "Bearer good") return ErrorResponse(Unauthenticated("no token"));
    return std::nullopt;
  };
  AfterHook after = [&](const Route&, const Request&, const Response& response) {
    std::lock_guard lock(mu);
    audited.push_back(response.status);
  };
  Start({}, before, after);

  RawConnection raw(server_->port());
  ASSERT_TRUE(raw.Send(
      "PUT /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\nExpect: 100-continue\r\n\r\n"));
  EXPECT_TRUE(raw.WaitForClose(5s));
  EXPECT_TRUE(raw.received().starts_with("HTTP/1.1 401")) << raw.received();
  EXPECT_EQ(raw.received().find("100 Continue"), std::string::npos) << raw.received();

  Client client = ClientFor(*server_);
  PatternSource pattern{64 * kMiB, true};
  BodySource source = pattern.Source();
  auto response = client.SendStreaming("PUT", "/ingest", &source, "text/csv", {}, {});
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 401);
  EXPECT_LT(pattern.produced, 64 * kMiB);

  client.SetHeader("Authorization", "Bearer good");
  PatternSource small{1000, true};
  BodySource small_source = small.Source();
  auto ok = client.SendStreaming("PUT", "/ingest", &small_source, "text/csv", {}, {});
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(calls.load(), 1);
  server_->Stop();
  std::lock_guard lock(mu);
  EXPECT_EQ(audited, (std::vector<int>{401, 401, 200}));
}

TEST_F(StreamingTest, ExpectContinueIsAnsweredWhenTheHandlerFirstReads) {
  Gate reading;
  router_->Add(StreamRoute("PUT", "/ingest", [&](Request& request) {
    if (!reading.Wait()) return ErrorResponse(Internal("gate never opened"));
    return CountBody(request, false);
  }));
  Start();
  RawConnection raw(server_->port());
  ASSERT_TRUE(
      raw.Send("PUT /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  EXPECT_EQ(raw.ReadUntil("\r\n\r\n", 300ms), "") << "100 Continue before the handler asked for the body";
  reading.Open();
  EXPECT_TRUE(raw.ReadUntil("\r\n\r\n", 5s).starts_with("HTTP/1.1 100 Continue")) << raw.received();
  ASSERT_TRUE(raw.Send("hello"));
  std::string received = raw.ReadUntil("}", 5s);
  EXPECT_NE(received.find("HTTP/1.1 200"), std::string::npos) << received;
  EXPECT_NE(received.find("\"bytes\":5"), std::string::npos) << received;
}

TEST_F(StreamingTest, StreamedResponseOf256MiBReachesTheSinkInBoundedMemory) {
  std::mutex mu;
  std::vector<std::pair<int, bool>> audited;
  router_->Add(PlainRoute("GET", "/export", [](Request&) { return StreamedResponse(Pieces(256, kMiB)); }));
  AfterHook after = [&](const Route&, const Request&, const Response& response) {
    std::lock_guard lock(mu);
    audited.emplace_back(response.status, response.stream_failed);
  };
  Start({}, {}, after);
  Client client = ClientFor(*server_);

  ResetPeak();
  Memory before = ReadMemory();
  uint64_t received = 0;
  size_t pieces = 0;
  bool only_y = true;
  auto response =
      client.SendStreaming("GET", "/export", nullptr, {}, {}, [&](std::string_view piece) -> Status {
        received += piece.size();
        ++pieces;
        if (piece.find_first_not_of('y') != std::string_view::npos) only_y = false;
        return Ok();
      });
  Memory after_memory = ReadMemory();

  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "");
  EXPECT_EQ(response->content_type, "application/octet-stream");
  EXPECT_EQ(response->headers["transfer-encoding"], "chunked");
  EXPECT_EQ(response->headers["x-takt-export"], "1");
  EXPECT_EQ(received, 256 * kMiB);
  EXPECT_GT(pieces, 256u);
  EXPECT_TRUE(only_y);
  uint64_t growth = std::max(after_memory.peak, after_memory.rss) - before.rss;
  if (kRssIsMeaningful) {
    EXPECT_LT(growth, 64 * kMiB) << "RSS before " << before.rss << ", peak after " << after_memory.peak;
  }

  // The connection is kept alive after a complete stream.
  auto again = client.SendStreaming("GET", "/export", nullptr, {}, {}, [](std::string_view) { return Ok(); });
  ASSERT_TRUE(again) << again.error().ToString();
  // The after hook runs on the stream's thread once its last piece is written,
  // which may be just after the client has read it: wait for it (bounded)
  // rather than stop the server under a stream that is finishing.
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard lock(mu);
      if (audited.size() >= 2) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  server_->Stop();
  std::lock_guard lock(mu);
  EXPECT_EQ(audited, (std::vector<std::pair<int, bool>>{{200, false}, {200, false}}));
}

TEST_F(StreamingTest, ProducerFailingMidwayIsAnErrorForTheClientAndStreamFailedForTheAudit) {
  router_->Add(PlainRoute("GET", "/export", [](Request&) {
    auto made = std::make_shared<int>(0);
    return StreamedResponse([made](std::string& out) -> Result<bool> {
      if (++*made > 10) return Internal("decrypting block 11: authentication tag mismatch");
      out.assign(100000, 'y');
      return true;
    });
  }));
  std::mutex mu;
  std::vector<Response> audited;
  AfterHook after = [&](const Route&, const Request&, const Response& response) {
    std::lock_guard lock(mu);
    audited.push_back(response);
  };
  Start({}, {}, after);
  Client client = ClientFor(*server_);

  uint64_t received = 0;
  auto response = client.SendStreaming("GET", "/export", nullptr, {}, {}, [&](std::string_view piece) {
    received += piece.size();
    return Ok();
  });
  ASSERT_FALSE(response) << "status " << response->status;
  EXPECT_EQ(response.error().code(), Code::kUnavailable);
  EXPECT_NE(response.error().message().find("broke off"), std::string::npos) << response.error().message();
  EXPECT_LE(received, 1000000u);

  // Send collects the body: the same break is an error there too.
  auto plain = client.Send("GET", "/export");
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().code(), Code::kUnavailable);

  server_->Stop();  // waits for the stream threads, hence for their after hooks
  std::lock_guard lock(mu);
  ASSERT_EQ(audited.size(), 2u);
  for (const Response& audit : audited) {
    EXPECT_EQ(audit.status, 200);
    EXPECT_TRUE(audit.stream_failed);
    EXPECT_NE(audit.stream_error.find("authentication tag mismatch"), std::string::npos)
        << audit.stream_error;
  }
}

TEST_F(StreamingTest, SinkErrorAbortsTheDownloadAndNon2xxBodiesAreCollected) {
  router_->Add(PlainRoute("GET", "/export", [](Request&) { return StreamedResponse(Pieces(1000, kMiB)); }));
  router_->Add(
      PlainRoute("GET", "/missing", [](Request&) { return ErrorResponse(NotFound("no such dataset")); }));
  router_->Add(PlainRoute("GET", "/gone", [](Request&) {
    Response response = StreamedResponse(Pieces(3, 10));
    response.status = 410;
    response.content_type = "application/json";
    return response;
  }));
  std::mutex mu;
  std::vector<bool> failed;
  AfterHook after = [&](const Route& route, const Request&, const Response& response) {
    std::lock_guard lock(mu);
    if (route.pattern == "/export") failed.push_back(response.stream_failed);
  };
  Start({}, {}, after);
  Client client = ClientFor(*server_);

  size_t calls = 0;
  auto aborted = client.SendStreaming("GET", "/export", nullptr, {}, {}, [&](std::string_view) -> Status {
    if (++calls == 3) return FailedPrecondition("disk full writing export.csv");
    return Ok();
  });
  ASSERT_FALSE(aborted);
  EXPECT_EQ(aborted.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(aborted.error().message(), "disk full writing export.csv");
  EXPECT_EQ(calls, 3u);

  bool sink_called = false;
  auto missing = client.SendStreaming("GET", "/missing", nullptr, {}, {}, [&](std::string_view) {
    sink_called = true;
    return Ok();
  });
  ASSERT_TRUE(missing) << missing.error().ToString();
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(ErrorCode(*missing), "NOT_FOUND");
  EXPECT_FALSE(sink_called);

  auto gone = client.SendStreaming("GET", "/gone", nullptr, {}, {}, [&](std::string_view) {
    sink_called = true;
    return Ok();
  });
  ASSERT_TRUE(gone) << gone.error().ToString();
  EXPECT_EQ(gone->status, 410);
  EXPECT_EQ(gone->body, std::string(30, 'y'));
  EXPECT_FALSE(sink_called);

  server_->Stop();
  std::lock_guard lock(mu);
  EXPECT_EQ(failed, std::vector<bool>{true}) << "the client went away mid-stream";
}

TEST_F(StreamingTest, BodySourceErrorsAndShortBodiesAreReturned) {
  router_->Add(StreamRoute("PUT", "/ingest", [](Request& request) { return CountBody(request, false); }));
  Start();
  Client client = ClientFor(*server_);

  BodySource failing;
  failing.length = 10 * kMiB;
  uint64_t given = 0;
  failing.read = [&](char* buf, size_t n) -> Result<size_t> {
    if (given >= 3 * kMiB) return Unavailable("reading weld.csv: Input/output error");
    std::memset(buf, 'x', n);
    given += n;
    return n;
  };
  auto failed = client.SendStreaming("PUT", "/ingest", &failing, "text/csv", {}, {});
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), Code::kUnavailable);
  EXPECT_EQ(failed.error().message(), "reading weld.csv: Input/output error");

  PatternSource short_body{1000, false};
  BodySource lying = short_body.Source();
  lying.length = 5000;
  auto short_result = client.SendStreaming("PUT", "/ingest", &lying, "text/csv", {}, {});
  ASSERT_FALSE(short_result);
  EXPECT_EQ(short_result.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(short_result.error().message(), "the request body ended after 1000 of 5000 bytes");

  // The client is usable afterwards.
  PatternSource good{1234, true};
  BodySource good_source = good.Source();
  auto ok = client.SendStreaming("PUT", "/ingest", &good_source, "text/csv", {}, {});
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(BodyJson(*ok)["bytes"], 1234);
}

TEST_F(StreamingTest, StreamBodyHandlerMayStreamItsResponse) {
  router_->Add(StreamRoute("POST", "/transform", [](Request& request) {
    Response counted = CountBody(request, false);
    uint64_t bytes = BodyJson({200, "", counted.body, {}})["bytes"].get<uint64_t>();
    return StreamedResponse(Pieces(bytes / 1000, 1000));  // a thousandth as many pieces
  }));
  std::atomic<int> audited = 0;
  Start({}, {}, [&](const Route&, const Request&, const Response& r) {
    if (r.status == 200 && !r.stream_failed) ++audited;
  });
  Client client = ClientFor(*server_);
  PatternSource pattern{3 * kMiB, false};
  BodySource source = pattern.Source();
  uint64_t received = 0;
  auto response =
      client.SendStreaming("POST", "/transform", &source, "text/csv", {}, [&](std::string_view piece) {
        received += piece.size();
        return Ok();
      });
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(received, (3 * kMiB / 1000) * 1000);
  server_->Stop();
  EXPECT_EQ(audited.load(), 1);
}

TEST_F(StreamingTest, StopReturnsPromptlyWhileAHandlerIsBlockedInRead) {
  std::atomic<bool> reading = false;
  std::mutex mu;
  std::optional<Error> error;
  router_->Add(StreamRoute("PUT", "/ingest", [&](Request& request) {
    char buf[4096];
    while (true) {
      reading = true;
      auto n = request.body_stream->Read(buf, sizeof(buf));
      if (!n) {
        std::lock_guard lock(mu);
        error.emplace(n.error());
        return ErrorResponse(n.error());
      }
      if (*n == 0) return JsonResponse(200, "{}");
    }
  }));
  Start();  // read_timeout 30 s: only Stop ends the wait
  RawConnection raw(server_->port());
  ASSERT_TRUE(raw.Send("PUT /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc"));
  ASSERT_TRUE(Eventually([&] { return reading.load(); }));
  std::this_thread::sleep_for(100ms);

  auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(raw.WaitForClose(2s));
  std::lock_guard lock(mu);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), Code::kUnavailable);
}

TEST_F(StreamingTest, StopReturnsPromptlyWhileAProducerIsMidStream) {
  std::atomic<int> made = 0;
  std::atomic<bool> failed_audit = false;
  router_->Add(PlainRoute("GET", "/export", [&](Request&) {
    return StreamedResponse([&](std::string& out) -> Result<bool> {
      ++made;
      out.assign(kMiB, 'y');
      return true;  // endless
    });
  }));
  Start({}, {}, [&](const Route&, const Request&, const Response& r) { failed_audit = r.stream_failed; });
  RawConnection raw(server_->port());  // asks, then never reads
  ASSERT_TRUE(raw.Send("GET /export HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(Eventually([&] { return made.load() >= 3; }));
  std::this_thread::sleep_for(200ms);
  int made_before = made.load();
  EXPECT_LT(made_before, 64) << "the producer is not held back by the socket";

  auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(failed_audit.load());
}

TEST_F(StreamingTest, SmallRequestsAreServedWhileStreamsAreInProgress) {
  Gate gate;
  std::atomic<bool> upload_waiting = false;
  std::atomic<bool> download_waiting = false;
  std::atomic<bool> upload_done = false;
  router_->Add(StreamRoute("PUT", "/ingest", [&](Request& request) {
    std::vector<char> buf(1 << 16);
    while (request.body_stream->bytes_read() < kMiB)
      IgnoreError(request.body_stream->Read(buf.data(), buf.size()));
    upload_waiting = true;
    if (!gate.Wait()) return ErrorResponse(Internal("gate never opened"));
    Response response = CountBody(request, false);
    upload_done = true;
    return response;
  }));
  router_->Add(PlainRoute("GET", "/export", [&](Request&) {
    auto made = std::make_shared<int>(0);
    return StreamedResponse([&, made](std::string& out) -> Result<bool> {
      if (++*made == 4) {
        download_waiting = true;
        if (!gate.Wait()) return Internal("gate never opened");
      }
      out.assign(kMiB, 'y');
      return *made < 16;
    });
  }));
  router_->Add(PlainRoute("POST", "/echo/{n}", [](Request& request) {
    return JsonResponse(200, Json({{"n", request.path_params.at("n")}, {"body", request.body}}).dump());
  }));
  ServerOptions options;
  options.threads = 1;  // one pool thread: a stream holding it would stall everything
  Start(options);

  std::atomic<uint64_t> uploaded_bytes = 0;
  std::thread upload([&] {
    Client client = ClientFor(*server_);
    PatternSource pattern{32 * kMiB, true};
    BodySource source = pattern.Source();
    auto response = client.SendStreaming("PUT", "/ingest", &source, "text/csv", {}, {});
    if (response && response->status == 200)
      uploaded_bytes = BodyJson(*response)["bytes_read"].get<uint64_t>();
  });
  std::atomic<uint64_t> downloaded = 0;
  std::atomic<bool> download_ok = false;
  std::thread download([&] {
    Client client = ClientFor(*server_);
    auto response = client.SendStreaming("GET", "/export", nullptr, {}, {}, [&](std::string_view piece) {
      downloaded += piece.size();
      return Ok();
    });
    download_ok = response && response->status == 200;
  });
  ASSERT_TRUE(Eventually([&] { return upload_waiting.load() && download_waiting.load(); }));

  constexpr int kThreads = 4;
  constexpr int kRequests = 25;
  std::atomic<int> good = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Client client = ClientFor(*server_);
      for (int i = 0; i < kRequests; ++i) {
        std::string n = std::to_string(t * 1000 + i);
        auto response = client.Send("POST", "/echo/" + n, "body-" + n, "text/plain");
        if (response && response->status == 200 && BodyJson(*response)["body"] == "body-" + n) ++good;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(good.load(), kThreads * kRequests);
  EXPECT_FALSE(upload_done.load()) << "the streams were still in progress";
  EXPECT_LT(downloaded.load(), 16 * kMiB);

  gate.Open();
  upload.join();
  download.join();
  EXPECT_EQ(uploaded_bytes.load(), 32 * kMiB);
  EXPECT_TRUE(download_ok.load());
  EXPECT_EQ(downloaded.load(), 16 * kMiB);
}

TEST_F(StreamingTest, StreamsBeyondMaxStreamsAre503) {
  Gate gate;
  std::atomic<bool> holding = false;
  router_->Add(StreamRoute("PUT", "/ingest", [&](Request& request) {
    holding = true;
    if (!gate.Wait()) return ErrorResponse(Internal("gate never opened"));
    return CountBody(request, false);
  }));
  router_->Add(PlainRoute("GET", "/export", [](Request&) { return StreamedResponse(Pieces(2, 10)); }));
  router_->Add(PlainRoute("GET", "/ping", [](Request&) { return JsonResponse(200, "{}"); }));
  std::mutex mu;
  std::vector<int> audited;
  ServerOptions options;
  options.max_streams = 1;
  Start(options, {}, [&](const Route&, const Request&, const Response& response) {
    std::lock_guard lock(mu);
    audited.push_back(response.status);
  });

  RawConnection first(server_->port());
  ASSERT_TRUE(first.Send("PUT /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"));
  ASSERT_TRUE(Eventually([&] { return holding.load(); }));

  Client client = ClientFor(*server_);
  PatternSource pattern{1000, true};
  BodySource source = pattern.Source();
  auto busy = client.SendStreaming("PUT", "/ingest", &source, "text/csv", {}, {});
  ASSERT_TRUE(busy) << busy.error().ToString();
  EXPECT_EQ(busy->status, 503);
  EXPECT_EQ(ErrorCode(*busy), "UNAVAILABLE");
  EXPECT_EQ(busy->headers["retry-after"], "1");
  auto busy_export =
      client.SendStreaming("GET", "/export", nullptr, {}, {}, [](std::string_view) { return Ok(); });
  ASSERT_TRUE(busy_export) << busy_export.error().ToString();
  EXPECT_EQ(busy_export->status, 503);
  auto ping = client.Send("GET", "/ping");  // plain requests are not limited
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->status, 200);

  gate.Open();
  EXPECT_NE(first.ReadUntil("}", 5s).find("\"bytes\":3"), std::string::npos) << first.received();
  // The slot is free again once the first stream has ended.
  ASSERT_TRUE(Eventually([&] {
    auto r = client.SendStreaming("GET", "/export", nullptr, {}, {}, [](std::string_view) { return Ok(); });
    return r && r->status == 200;
  }));
  server_->Stop();  // the last after hook may still run: before `audited` goes
  std::lock_guard lock(mu);
  EXPECT_EQ(audited.front(), 503);
}

TEST_F(StreamingTest, SlowProducerIsNotAWriteTimeout) {
  router_->Add(PlainRoute("GET", "/export", [](Request&) {
    auto made = std::make_shared<int>(0);
    return StreamedResponse([made](std::string& out) -> Result<bool> {
      std::this_thread::sleep_for(400ms);  // 2 s in all, never 1 s without a byte
      out = "piece" + std::to_string(*made) + "\n";
      return ++*made < 5;
    });
  }));
  ServerOptions options;
  options.write_timeout = 1s;
  Start(options);
  Client client = ClientFor(*server_);
  auto response = client.Send("GET", "/export");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "piece0\npiece1\npiece2\npiece3\npiece4\n");
}

TEST_F(StreamingTest, HeadAndNoContentResponsesDropTheProducer) {
  std::atomic<int> produced = 0;
  auto producer = [&](std::string& out) -> Result<bool> {
    ++produced;
    out = "x";
    return false;
  };
  router_->Add(PlainRoute("HEAD", "/export", [&](Request&) { return StreamedResponse(producer); }));
  router_->Add(PlainRoute("DELETE", "/export", [&](Request&) {
    Response response = StreamedResponse(producer);
    response.status = 204;
    return response;
  }));
  Start();
  Client client = ClientFor(*server_);
  auto head = client.Send("HEAD", "/export");
  ASSERT_TRUE(head) << head.error().ToString();
  EXPECT_EQ(head->status, 200);
  auto deleted = client.Send("DELETE", "/export");
  ASSERT_TRUE(deleted) << deleted.error().ToString();
  EXPECT_EQ(deleted->status, 204);
  EXPECT_EQ(produced.load(), 0);
}

}  // namespace
}  // namespace takt::http
