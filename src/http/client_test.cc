#include "http/client.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "core/json.h"
#include "http/testing.h"

namespace takt::http {
namespace {

using namespace std::chrono_literals;
using testing::ClientFor;
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

Response Echo(Request& request) {
  Json json = {{"target", request.target},
               {"size", request.body.size()},
               {"remote", request.remote_address},
               {"authorization", request.Header("authorization")},
               {"content_type", request.Header("content-type")}};
  return JsonResponse(200, json.dump());
}

TEST(ClientTest, CreateRejectsHttpsAndMalformedUrls) {
  auto https = Client::Create("https://takt.example:8443");
  ASSERT_FALSE(https);
  EXPECT_EQ(https.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(https.error().message(), "https is not supported yet");

  for (std::string_view bad : {"127.0.0.1:8080", "ftp://x", "http://", "http://:8080", "http://host:0",
                               "http://host:99999", "http://host:80a", "http://[::1"}) {
    auto client = Client::Create(bad);
    ASSERT_FALSE(client) << bad;
    EXPECT_EQ(client.error().code(), Code::kInvalidArgument) << bad;
  }
  ASSERT_TRUE(Client::Create("http://localhost"));
  ASSERT_TRUE(Client::Create("HTTP://[::1]:8080/"));
  EXPECT_EQ(Client::Create("http://127.0.0.1:8080/")->base_url(), "http://127.0.0.1:8080");
}

TEST(ClientTest, ErrorNamesTheServerWhenNothingListens) {
  uint16_t port;
  {
    auto router = std::make_shared<Router>();
    router->Add(PublicRoute("GET", "/x", Echo));
    auto server = StartServer(router);
    ASSERT_NE(server, nullptr);
    port = server->port();
  }  // stopped: nothing listens on the port now
  std::string url = "http://127.0.0.1:" + std::to_string(port);
  auto client = Client::Create(url);
  ASSERT_TRUE(client);
  auto response = client->Send("GET", "/x");
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code(), Code::kUnavailable);
  EXPECT_EQ(response.error().message(), "cannot reach takt server at " + url +
                                            ": Connection refused; is `takt server` running? (set TAKT_URL)");
}

TEST(ClientTest, RejectsTargetsThatAreNotEncodedPaths) {
  auto client = Client::Create("http://127.0.0.1:1");
  ASSERT_TRUE(client);
  EXPECT_EQ(client->Send("GET", "x").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(client->Send("GET", "/a b").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(client->Send("GET", "/a\r\nX: y").error().code(), Code::kInvalidArgument);
}

class ClientServerTest : public ::testing::Test {
 protected:
  void Start(ServerOptions options = {}) {
    server_ = StartServer(router_, options);
    ASSERT_NE(server_, nullptr);
  }
  std::shared_ptr<Router> router_ = std::make_shared<Router>();
  std::unique_ptr<Server> server_;
};

TEST_F(ClientServerTest, NonSuccessStatusesAreResponsesNotErrors) {
  router_->Add(PublicRoute("GET", "/conflict", [](Request&) { return ErrorResponse(Conflict("taken")); }));
  Start();
  Client client = ClientFor(*server_);
  auto conflict = client.Send("GET", "/conflict");
  ASSERT_TRUE(conflict);
  EXPECT_EQ(conflict->status, 409);
  auto missing = client.Send("GET", "/missing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->content_type, "application/json");
}

TEST_F(ClientServerTest, HeadersAndContentTypeAreSentOnEveryRequest) {
  router_->Add(PublicRoute("POST", "/echo", Echo));
  Start();
  Client client = ClientFor(*server_);
  client.SetHeader("Authorization", "Bearer one");
  client.SetHeader("authorization", "Bearer two");  // replaces, whatever the case
  for (int i = 0; i < 2; ++i) {
    auto response = client.Send("POST", "/echo", "{}", "application/json");
    ASSERT_TRUE(response);
    auto json = *ParseJson(response->body, "body");
    EXPECT_EQ(json["authorization"], "Bearer two");
    EXPECT_EQ(json["content_type"], "application/json");
  }
}

TEST_F(ClientServerTest, BaseUrlPathIsPrependedToTargets) {
  router_->Add(PublicRoute("GET", "/takt/api/x", Echo));
  Start();
  auto client = Client::Create("http://127.0.0.1:" + std::to_string(server_->port()) + "/takt/");
  ASSERT_TRUE(client);
  auto response = client->Send("GET", "/api/x?a=1");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ((*ParseJson(response->body, "body"))["target"], "/takt/api/x?a=1");
}

TEST_F(ClientServerTest, ReconnectsOnceWhenTheServerClosedTheIdleConnection) {
  router_->Add(PublicRoute("GET", "/x", Echo));
  ServerOptions options;
  options.idle_timeout = 1s;
  Start(options);
  Client client = ClientFor(*server_);
  auto first = client.Send("GET", "/x");
  ASSERT_TRUE(first);
  std::this_thread::sleep_for(1500ms);  // the server closes the idle connection
  auto second = client.Send("GET", "/x");
  ASSERT_TRUE(second) << second.error().ToString();
  EXPECT_EQ(second->status, 200);
  auto remote = [](const ClientResponse& r) { return (*ParseJson(r.body, "body"))["remote"]; };
  EXPECT_NE(remote(*first), remote(*second));  // a new connection
}

TEST_F(ClientServerTest, UploadReportsProgressInChunks) {
  router_->Add(PublicRoute("PUT", "/blob", Echo, 8 << 20));
  Start();
  Client client = ClientFor(*server_);
  std::string body((3 << 20) + 1234, 'b');
  std::vector<std::pair<size_t, size_t>> calls;
  auto response = client.Send("PUT", "/blob", body, "application/octet-stream",
                              [&](size_t sent, size_t total) { calls.emplace_back(sent, total); });
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ((*ParseJson(response->body, "body"))["size"], body.size());
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[0], std::make_pair(size_t{1} << 20, body.size()));
  EXPECT_EQ(calls.back(), std::make_pair(body.size(), body.size()));
}

TEST_F(ClientServerTest, LargeUploadOverTheLimitGets413) {
  router_->Add(PublicRoute("PUT", "/blob", Echo, 1024));
  router_->Add(PublicRoute("GET", "/x", Echo));
  Start();
  Client client = ClientFor(*server_);
  auto response = client.Send("PUT", "/blob", std::string(3 << 20, 'b'), "application/octet-stream");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 413);
  auto next = client.Send("GET", "/x");
  ASSERT_TRUE(next) << next.error().ToString();
  EXPECT_EQ(next->status, 200);
}

TEST_F(ClientServerTest, TimeoutIsUnavailable) {
  router_->Add(PublicRoute("GET", "/slow", [](Request& request) {
    std::this_thread::sleep_for(2500ms);
    return Echo(request);
  }));
  Start();
  Client client = ClientFor(*server_);
  client.SetTimeout(1s);
  auto start = std::chrono::steady_clock::now();
  auto response = client.Send("GET", "/slow");
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code(), Code::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(ClientServerTest, ClientIsMovable) {
  router_->Add(PublicRoute("GET", "/x", Echo));
  Start();
  Client a = ClientFor(*server_);
  ASSERT_TRUE(a.Send("GET", "/x"));
  Client b = std::move(a);
  auto response = b.Send("GET", "/x");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

}  // namespace
}  // namespace takt::http
