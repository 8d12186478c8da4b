#include "http/server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/json.h"
#include "http/testing.h"
#include "http/url.h"

namespace takt::http {
namespace {

using namespace std::chrono_literals;
using testing::ClientFor;
using testing::RawConnection;
using testing::StartServer;

Route PublicRoute(std::string method, std::string pattern, Handler handler, size_t max_body = 1 << 20) {
  Route route;
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.is_public = true;
  route.max_body_bytes = max_body;
  route.handler = std::move(handler);
  return route;
}

Route ProtectedRoute(std::string method, std::string pattern, std::string action, Handler handler) {
  Route route;
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.action = std::move(action);
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

// A handler that echoes what the server made of the request.
Response Echo(Request& request) {
  Json json = {{"method", request.method},
               {"path", request.path},
               {"target", request.target},
               {"params", request.path_params},
               {"body", request.body},
               {"remote", request.remote_address},
               {"principal", request.principal_id},
               {"content_type", request.ContentType()}};
  Json query = Json::array();
  for (const auto& [key, value] : request.query) query.push_back({key, value});
  json["query"] = query;
  return JsonResponse(200, json.dump());
}

class ServerTest : public ::testing::Test {
 protected:
  std::shared_ptr<Router> router_ = std::make_shared<Router>();
};

TEST_F(ServerTest, ServesRouteWithParamsAndSetsStandardHeaders) {
  router_->Add(PublicRoute("GET", "/api/v1/models/{group}/versions/{version}", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  EXPECT_NE(server->port(), 0);
  Client client = ClientFor(*server);

  auto response = client.Send("GET", "/api/v1/models/weld-pm/versions/7");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->content_type, "application/json");
  EXPECT_EQ(response->headers["server"], "takt");
  EXPECT_EQ(response->headers["content-length"], std::to_string(response->body.size()));
  Json json = BodyJson(*response);
  EXPECT_EQ(json["params"]["group"], "weld-pm");
  EXPECT_EQ(json["params"]["version"], "7");
  EXPECT_EQ(json["method"], "GET");
  EXPECT_EQ(json["principal"], "");
}

TEST_F(ServerTest, HandlerStatusContentTypeAndHeadersReachTheClient) {
  router_->Add(PublicRoute("POST", "/things", [](Request&) {
    Response response;
    response.status = 201;
    response.content_type = "text/plain";
    response.body = "made";
    response.headers = {{"Location", "/things/1"}, {"X-Bad", "a\r\nInjected: yes"}};
    return response;
  }));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);
  auto response = client.Send("POST", "/things", "x", "text/plain");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 201);
  EXPECT_EQ(response->content_type, "text/plain");
  EXPECT_EQ(response->body, "made");
  EXPECT_EQ(response->headers["location"], "/things/1");
  EXPECT_EQ(response->headers.count("x-bad"), 0u);  // a header with CR/LF is dropped
  EXPECT_EQ(response->headers.count("injected"), 0u);
}

TEST_F(ServerTest, UnknownPathIs404AndOtherMethodIs405WithAllow) {
  router_->Add(PublicRoute("GET", "/models/{group}", Echo));
  router_->Add(PublicRoute("DELETE", "/models/{group}", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);

  auto missing = client.Send("GET", "/x");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(ErrorCode(*missing), "NOT_FOUND");
  EXPECT_EQ(BodyJson(*missing)["error"]["message"], "no route for GET /x");

  auto other = client.Send("POST", "/models/weld", "{}", "application/json");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 405);
  EXPECT_EQ(ErrorCode(*other), "METHOD_NOT_ALLOWED");
  EXPECT_EQ(other->headers["allow"], "GET, DELETE");

  // The connection survives both (the 405 had a body the server did not read:
  // it closes that connection, and the client reconnects).
  auto ok = client.Send("GET", "/models/weld");
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->status, 200);
}

TEST_F(ServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  router_->Add(PublicRoute("GET", "/whoami", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);
  std::set<std::string> remotes;
  for (int i = 0; i < 5; ++i) {
    auto response = client.Send("GET", "/whoami");
    ASSERT_TRUE(response) << response.error().ToString();
    remotes.insert(BodyJson(*response)["remote"].get<std::string>());
  }
  EXPECT_EQ(remotes.size(), 1u) << "each request used a new connection";
  EXPECT_TRUE(remotes.begin()->starts_with("127.0.0.1:"));

  // Pipelined requests on a raw connection are answered in order.
  RawConnection raw(server->port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(
      raw.Send("GET /whoami?n=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /whoami?n=2 HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string received = raw.ReadUntil("n=2", 5s);
  size_t first = received.find("HTTP/1.1 200");
  ASSERT_NE(first, std::string::npos) << received;
  EXPECT_NE(received.find("HTTP/1.1 200", first + 1), std::string::npos) << received;
  EXPECT_LT(received.find("n=1"), received.find("n=2"));
}

TEST_F(ServerTest, ConnectionCloseIsHonored) {
  router_->Add(PublicRoute("GET", "/x", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  RawConnection raw(server->port());
  ASSERT_TRUE(raw.Send("GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_TRUE(raw.WaitForClose(5s));
  EXPECT_TRUE(raw.received().starts_with("HTTP/1.1 200")) << raw.received();
  EXPECT_NE(raw.received().find("Connection: close"), std::string::npos) << raw.received();
}

TEST_F(ServerTest, BodyWithinTheRouteLimitReachesTheHandler) {
  router_->Add(PublicRoute("POST", "/upload", Echo, 16));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);
  auto response = client.Send("POST", "/upload", "0123456789abcdef", "Application/JSON; charset=UTF-8");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(BodyJson(*response)["body"], "0123456789abcdef");
  EXPECT_EQ(BodyJson(*response)["content_type"], "application/json");
}

// Header names are lowercased and repeats joined; a chunked body reaches the
// handler whole, and its trailers (sent after the header was authorized) are
// not taken for headers.
TEST_F(ServerTest, ChunkedBodiesRepeatedHeadersAndTrailers) {
  router_->Add(PublicRoute(
      "POST", "/upload",
      [](Request& request) {
        Json headers = Json::object();
        for (const auto& [name, value] : request.headers) headers[name] = value;
        return JsonResponse(200, Json{{"body", request.body}, {"headers", headers}}.dump());
      },
      64));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  RawConnection raw(server->port());
  ASSERT_TRUE(
      raw.Send("POST /upload HTTP/1.1\r\nHost: x\r\nX-Tag: a\r\nx-TAG: b\r\nTransfer-Encoding: chunked\r\n"
               "Trailer: X-Late\r\nConnection: close\r\n\r\n"
               "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Late: 1\r\nAuthorization: Bearer sneaky\r\n\r\n"));
  ASSERT_TRUE(raw.WaitForClose(5s));
  const std::string& received = raw.received();
  ASSERT_TRUE(received.starts_with("HTTP/1.1 200")) << received;
  Json body = Json::parse(received.substr(received.find("\r\n\r\n") + 4));
  EXPECT_EQ(body["body"], "hello world");
  EXPECT_EQ(body["headers"]["x-tag"], "a, b");
  EXPECT_EQ(body["headers"]["host"], "x");
  EXPECT_FALSE(body["headers"].contains("x-late")) << body.dump();
  EXPECT_FALSE(body["headers"].contains("authorization")) << body.dump();

  // Over the route's limit in chunks: 413, the handler never sees it.
  RawConnection big(server->port());
  ASSERT_TRUE(big.Send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" +
                       std::string(64, 'a') + "\r\n1\r\nb\r\n0\r\n\r\n"));
  EXPECT_TRUE(big.ReadUntil("\r\n\r\n", 5s).starts_with("HTTP/1.1 413")) << big.received();
}

TEST_F(ServerTest, BodyOverTheRouteLimitIs413AndTheHandlerNeverRuns) {
  std::atomic<int> calls = 0;
  router_->Add(PublicRoute(
      "POST", "/upload",
      [&](Request& request) {
        ++calls;
        return Echo(request);
      },
      16));
  router_->Add(PublicRoute("GET", "/ping", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);

  auto response = client.Send("POST", "/upload", std::string(17, 'x'), "text/plain");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(ErrorCode(*response), "PAYLOAD_TOO_LARGE");
  EXPECT_NE(BodyJson(*response)["error"]["message"].get<std::string>().find("16 bytes"), std::string::npos);
  EXPECT_EQ(response->headers["connection"], "close");

  // A chunked body has no length up front: the limit applies as it arrives.
  RawConnection raw(server->port());
  ASSERT_TRUE(
      raw.Send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"));
  EXPECT_TRUE(raw.WaitForClose(5s));
  EXPECT_TRUE(raw.received().starts_with("HTTP/1.1 413")) << raw.received();
  EXPECT_EQ(calls.load(), 0);

  // The client reconnects after the server closed the connection.
  auto ping = client.Send("GET", "/ping");
  ASSERT_TRUE(ping) << ping.error().ToString();
  EXPECT_EQ(ping->status, 200);
}

TEST_F(ServerTest, ExpectContinueGetsInterimResponseThenTheBody) {
  router_->Add(PublicRoute("POST", "/upload", Echo, 64));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  RawConnection raw(server->port());
  ASSERT_TRUE(
      raw.Send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  EXPECT_TRUE(raw.ReadUntil("\r\n\r\n", 5s).starts_with("HTTP/1.1 100 Continue")) << raw.received();
  ASSERT_TRUE(raw.Send("hello"));
  EXPECT_NE(raw.ReadUntil("hello", 5s).find("HTTP/1.1 200"), std::string::npos) << raw.received();

  RawConnection big(server->port());
  ASSERT_TRUE(
      big.Send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\nExpect: 100-continue\r\n\r\n"));
  EXPECT_TRUE(big.WaitForClose(5s));
  EXPECT_TRUE(big.received().starts_with("HTTP/1.1 413")) << big.received();
}

TEST_F(ServerTest, WithoutHookNonPublicRoutesAreDenied) {
  std::atomic<int> calls = 0;
  router_->Add(ProtectedRoute("GET", "/models", "model:read", [&](Request& request) {
    ++calls;
    return Echo(request);
  }));
  router_->Add(PublicRoute("GET", "/health", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);

  auto denied = client.Send("GET", "/models");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403);
  EXPECT_EQ(ErrorCode(*denied), "PERMISSION_DENIED");
  EXPECT_EQ(calls.load(), 0);

  auto health = client.Send("GET", "/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST_F(ServerTest, BeforeHookShortCircuitsOrSetsThePrincipal) {
  std::atomic<int> calls = 0;
  router_->Add(ProtectedRoute("GET", "/models", "model:read", [&](Request& request) {
    ++calls;
    return Echo(request);
  }));
  std::vector<std::string> seen_actions;
  std::mutex mu;
  BeforeHook before = [&](const Route& route, Request& request) -> std::optional<Response> {
    {
      std::lock_guard lock(mu);
      seen_actions.push_back(route.action);
    }
    if (request.Header("authorization") != "Bearer good") {
      return ErrorResponse(Unauthenticated("missing or invalid token"));
    }
    request.principal_id = "user:alice";
    return std::nullopt;
  };
  auto server = StartServer(router_, {}, before);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);

  auto anonymous = client.Send("GET", "/models");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_EQ(ErrorCode(*anonymous), "UNAUTHENTICATED");
  EXPECT_EQ(calls.load(), 0);

  client.SetHeader("Authorization", "Bearer good");
  auto alice = client.Send("GET", "/models");
  ASSERT_TRUE(alice);
  EXPECT_EQ(alice->status, 200);
  EXPECT_EQ(BodyJson(*alice)["principal"], "user:alice");
  EXPECT_EQ(calls.load(), 1);

  // The hook decides on the header alone: a refused upload is never read.
  RawConnection raw(server->port());
  ASSERT_TRUE(
      raw.Send("GET /models HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"));
  EXPECT_TRUE(raw.WaitForClose(5s));
  EXPECT_TRUE(raw.received().starts_with("HTTP/1.1 401")) << raw.received();
  EXPECT_EQ(calls.load(), 1);
  std::lock_guard lock(mu);
  EXPECT_EQ(seen_actions, (std::vector<std::string>{"model:read", "model:read", "model:read"}));
}

TEST_F(ServerTest, AfterHookSeesTheFinalResponse) {
  router_->Add(ProtectedRoute("POST", "/models", "model:create",
                              [](Request&) { return JsonResponse(201, R"({"id":1})"); }));
  router_->Add(ProtectedRoute("GET", "/boom", "model:read",
                              [](Request&) -> Response { throw std::runtime_error("boom"); }));
  Route small = ProtectedRoute("POST", "/small", "model:create", Echo);
  small.max_body_bytes = 2;
  router_->Add(std::move(small));

  std::mutex mu;
  std::vector<std::pair<std::string, int>> seen;
  BeforeHook before = [](const Route&, Request& request) -> std::optional<Response> {
    if (request.Header("authorization").empty()) return ErrorResponse(Unauthenticated("no token"));
    request.principal_id = "user:bob";
    return std::nullopt;
  };
  AfterHook after = [&](const Route& route, const Request& request, const Response& response) {
    std::lock_guard lock(mu);
    seen.emplace_back(route.action + " " + request.principal_id, response.status);
  };
  auto server = StartServer(router_, {}, before, after);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);

  ASSERT_TRUE(client.Send("POST", "/models", "{}", "application/json"));
  client.SetHeader("Authorization", "Bearer t");
  ASSERT_TRUE(client.Send("POST", "/models", "{}", "application/json"));
  ASSERT_TRUE(client.Send("GET", "/boom"));
  ASSERT_TRUE(client.Send("POST", "/small", "abc", "text/plain"));
  ASSERT_TRUE(client.Send("GET", "/unknown"));  // no route: no after hook

  std::lock_guard lock(mu);
  std::vector<std::pair<std::string, int>> expected = {{"model:create ", 401},
                                                       {"model:create user:bob", 201},
                                                       {"model:read user:bob", 500},
                                                       {"model:create user:bob", 413}};
  EXPECT_EQ(seen, expected);
}

TEST_F(ServerTest, HandlerExceptionIs500WithoutItsTextAndTheServerKeepsServing) {
  router_->Add(PublicRoute("GET", "/throw",
                           [](Request&) -> Response { throw std::runtime_error("secret row 1042"); }));
  router_->Add(PublicRoute("GET", "/throw-int", [](Request&) -> Response { throw 42; }));
  router_->Add(PublicRoute("GET", "/ok", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);

  for (const char* target : {"/throw", "/throw-int"}) {
    auto failed = client.Send("GET", target);
    ASSERT_TRUE(failed) << failed.error().ToString();
    EXPECT_EQ(failed->status, 500);
    EXPECT_EQ(ErrorCode(*failed), "INTERNAL");
    EXPECT_EQ(BodyJson(*failed)["error"]["message"], "internal error");
    EXPECT_EQ(failed->body.find("secret"), std::string::npos);
  }
  auto ok = client.Send("GET", "/ok");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(ServerTest, MalformedRequestIs400AndCloses) {
  router_->Add(PublicRoute("GET", "/x", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);

  for (std::string_view request :
       {"GARBAGE\r\n\r\n", "GET /x HTTP/9.9\r\n\r\n", "GET /x HTTP/1.1\r\nNo colon\r\n\r\n",
        "GET http://host/x HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a/%zz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /x?a=%z HTTP/1.1\r\nHost: x\r\n\r\n", "GET /x/../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /x/%2e%2e/y HTTP/1.1\r\nHost: x\r\n\r\n"}) {
    RawConnection raw(server->port());
    ASSERT_TRUE(raw.Send(request));
    EXPECT_TRUE(raw.WaitForClose(5s)) << request;
    EXPECT_TRUE(raw.received().starts_with("HTTP/1.1 400")) << request << " -> " << raw.received();
    EXPECT_NE(raw.received().find("INVALID_ARGUMENT"), std::string::npos) << raw.received();
  }
}

TEST_F(ServerTest, OversizedHeaderIs400) {
  router_->Add(PublicRoute("GET", "/x", Echo));
  ServerOptions options;
  options.max_header_bytes = 1024;
  auto server = StartServer(router_, options);
  ASSERT_NE(server, nullptr);
  RawConnection raw(server->port());
  ASSERT_TRUE(raw.Send("GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n"));
  EXPECT_TRUE(raw.WaitForClose(5s));
  EXPECT_TRUE(raw.received().starts_with("HTTP/1.1 400")) << raw.received();
  EXPECT_NE(raw.received().find("1024 bytes"), std::string::npos) << raw.received();
}

TEST_F(ServerTest, QueryParametersAreDecoded) {
  router_->Add(PublicRoute("GET", "/search", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);
  auto response = client.Send("GET", "/search?plant=Werk%20A&tag=a&tag=b+c&empty=");
  ASSERT_TRUE(response);
  Json json = BodyJson(*response);
  EXPECT_EQ(json["path"], "/search");
  EXPECT_EQ(json["target"], "/search?plant=Werk%20A&tag=a&tag=b+c&empty=");
  Json expected = Json::array({{"empty", ""}, {"plant", "Werk A"}, {"tag", "a"}, {"tag", "b c"}});
  EXPECT_EQ(json["query"], expected);
}

TEST_F(ServerTest, PathsArePercentDecoded) {
  router_->Add(PublicRoute("GET", "/datasets/{name}/rows", Echo));
  router_->Add(PublicRoute("GET", "/blobs/{key...}", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);

  auto response = client.Send("GET", "/datasets/" + PercentEncode("weld telemetry/v3") + "/rows");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200);
  Json json = BodyJson(*response);
  EXPECT_EQ(json["params"]["name"], "weld telemetry/v3");
  EXPECT_EQ(json["path"], "/datasets/weld telemetry/v3/rows");

  auto blob = client.Send("GET", "/blobs/plant%20a/2024/01.csv");
  ASSERT_TRUE(blob);
  ASSERT_EQ(blob->status, 200);
  EXPECT_EQ(BodyJson(*blob)["params"]["key"], "plant a/2024/01.csv");
}

TEST_F(ServerTest, ConcurrentClients) {
  std::atomic<int> calls = 0;
  router_->Add(PublicRoute("POST", "/echo/{n}", [&](Request& request) {
    ++calls;
    return JsonResponse(200, Json({{"n", request.path_params.at("n")}, {"body", request.body}}).dump());
  }));
  ServerOptions options;
  options.threads = 4;
  auto server = StartServer(router_, options);
  ASSERT_NE(server, nullptr);

  constexpr int kThreads = 8;
  constexpr int kRequests = 50;
  std::atomic<int> good = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Client client = ClientFor(*server);
      for (int i = 0; i < kRequests; ++i) {
        std::string n = std::to_string(t * 1000 + i);
        auto response = client.Send("POST", "/echo/" + n, "body-" + n, "text/plain");
        if (!response || response->status != 200) continue;
        Json json = BodyJson(*response);
        if (json["n"] == n && json["body"] == "body-" + n) ++good;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(good.load(), kThreads * kRequests);
  EXPECT_EQ(calls.load(), kThreads * kRequests);
}

TEST_F(ServerTest, ReadTimeoutClosesASlowClient) {
  router_->Add(PublicRoute("GET", "/x", Echo));
  ServerOptions options;
  options.read_timeout = 1s;
  auto server = StartServer(router_, options);
  ASSERT_NE(server, nullptr);

  RawConnection raw(server->port());
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(raw.Send("GET /x HTTP/1.1\r\nHost: x\r\n"));  // never finishes the header
  EXPECT_TRUE(raw.WaitForClose(5s));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 900ms);
  EXPECT_LT(elapsed, 3s);

  // A slow body is bounded by the same limit.
  RawConnection slow_body(server->port());
  ASSERT_TRUE(slow_body.Send("GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"));
  EXPECT_TRUE(slow_body.WaitForClose(5s));
}

TEST_F(ServerTest, IdleKeepAliveConnectionIsClosed) {
  router_->Add(PublicRoute("GET", "/x", Echo));
  ServerOptions options;
  options.idle_timeout = 1s;
  auto server = StartServer(router_, options);
  ASSERT_NE(server, nullptr);
  RawConnection raw(server->port());
  ASSERT_TRUE(raw.Send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_NE(raw.ReadUntil("\"GET\"", 5s).find("HTTP/1.1 200"), std::string::npos);
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(raw.WaitForClose(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(ServerTest, StopWhileClientsAreConnectedReturnsPromptly) {
  router_->Add(PublicRoute("GET", "/x", Echo));
  auto server = StartServer(router_);
  ASSERT_NE(server, nullptr);
  Client client = ClientFor(*server);
  ASSERT_TRUE(client.Send("GET", "/x"));  // an idle keep-alive connection
  RawConnection idle(server->port());
  RawConnection half(server->port());
  ASSERT_TRUE(half.Send("GET /x HTTP/1.1\r\n"));  // mid-request
  std::this_thread::sleep_for(100ms);

  auto start = std::chrono::steady_clock::now();
  server->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(idle.WaitForClose(2s));
  EXPECT_TRUE(half.WaitForClose(2s));
  server->Stop();  // idempotent

  auto after = client.Send("GET", "/x");
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code(), Code::kUnavailable);
}

TEST_F(ServerTest, StartFailsWhenThePortIsInUse) {
  router_->Add(PublicRoute("GET", "/x", Echo));
  auto first = StartServer(router_);
  ASSERT_NE(first, nullptr);
  ServerOptions options;
  options.port = first->port();
  Server second(options, router_);
  auto status = second.Start();
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), Code::kUnavailable);
  EXPECT_TRUE(
      status.error().message().starts_with("cannot listen on 127.0.0.1:" + std::to_string(first->port())))
      << status.error().message();
  second.Stop();  // harmless on a server that never started
}

TEST_F(ServerTest, StartRejectsAnInvalidRouteTableAndASecondStart) {
  router_->Add(ProtectedRoute("GET", "/x", "", Echo));  // neither public nor an action
  Server server(ServerOptions{}, router_);
  auto status = server.Start();
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), Code::kInvalidArgument);

  auto good_router = std::make_shared<Router>();
  good_router->Add(PublicRoute("GET", "/x", Echo));
  Server good(ServerOptions{}, good_router);
  ASSERT_TRUE(good.Start());
  auto again = good.Start();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace takt::http
