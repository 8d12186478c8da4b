// The event routes over HTTP against a real platform (started: its targets
// registered, its bus delivering) and a real loopback webhook receiver.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/routes.h"
#include "core/json.h"
#include "core/temp_dir.h"
#include "events/events.h"
#include "http/client.h"
#include "http/server.h"

namespace takt::api {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kSecret = "weld-pm-route-test-secret";

Json BodyJson(const http::ClientResponse& r) {
  auto j = ParseJson(r.body, "response body");
  return j ? *j : Json();
}

std::string ErrorMessage(const http::ClientResponse& r) {
  Json j = BodyJson(r);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_object()) return "";
  return j["error"].value("message", "");
}

class EventRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    Config config;
    config.data_dir = (dir_.path() / "data").string();
    auto init = Initialize(config, "admin");
    ASSERT_TRUE(init.has_value()) << init.error().ToString();
    admin_ = init->admin_token;
    auto platform = Platform::Open(config);
    ASSERT_TRUE(platform.has_value()) << platform.error().ToString();
    platform_ = std::move(*platform);
    platform_->Start();
    server_ = std::make_unique<http::Server>(
        http::ServerOptions{.address = "127.0.0.1", .port = 0, .threads = 2}, BuildRouter(*platform_));
    InstallHooks(*server_, *platform_);
    ASSERT_TRUE(server_->Start().has_value());

    auto router = std::make_shared<http::Router>();
    http::Route hook;
    hook.method = "POST";
    hook.pattern = "/hook";
    hook.is_public = true;
    hook.handler = [this](http::Request& req) {
      std::lock_guard<std::mutex> lock(mu_);
      received_.push_back(req.body);
      return http::JsonResponse(200, "{}");
    };
    router->Add(std::move(hook));
    receiver_ =
        std::make_unique<http::Server>(http::ServerOptions{.address = "127.0.0.1", .port = 0}, router);
    receiver_->SetBeforeHook(
        [](const http::Route&, http::Request&) -> std::optional<http::Response> { return std::nullopt; });
    ASSERT_TRUE(receiver_->Start().has_value());

    mia_ = Principal("mia", "ml-engineer");
    aud_ = Principal("aud", "auditor");
    sam_ = Principal("sam", "data-scientist");
  }
  void TearDown() override {
    if (server_) server_->Stop();
    if (receiver_) receiver_->Stop();
  }

  std::string Principal(const std::string& name, const std::string& persona) {
    auto created = platform_->iam->CreatePrincipal(name, "user", {persona}, {});
    EXPECT_TRUE(created.has_value());
    return created ? created->second : "";
  }

  http::ClientResponse Send(const std::string& token, std::string_view method, const std::string& target,
                            const Json& body = nullptr) {
    auto client = http::Client::Create("http://127.0.0.1:" + std::to_string(server_->port()));
    client->SetHeader("Authorization", "Bearer " + token);
    auto r = body.is_null() ? client->Send(method, target)
                            : client->Send(method, target, body.dump(), "application/json");
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    return r ? *r : http::ClientResponse{};
  }

  Json HookRule() const {
    return {
        {"pattern", {{"type", {"io.takt.monitor.drift"}}, {"data", {{"model", {{{"prefix", "weld-"}}}}}}}},
        {"target", "webhook"},
        {"config",
         {{"url", "http://127.0.0.1:" + std::to_string(receiver_->port()) + "/hook"}, {"secret", kSecret}}},
        {"description", "drift alerts to the plant"}};
  }

  events::Event Drift(const std::string& model) {
    events::Event out;
    EXPECT_TRUE(platform_->db->Transaction([&](store::Database& tx) -> Status {
      TAKT_ASSIGN_OR_RETURN(out, events::Append(tx, {.type = "io.takt.monitor.drift",
                                                     .source = "/monitors",
                                                     .subject = "endpoints/weld-pm-prod",
                                                     .data_json = Json{{"model", model}}.dump()}));
      return Ok();
    }));
    platform_->events->Notify();
    return out;
  }

  size_t Received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_.size();
  }
  bool WaitForReceived(size_t n) {
    for (int i = 0; i < 200 && Received() < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    return Received() >= n;
  }

  TempDir dir_;
  std::string admin_, mia_, aud_, sam_;
  std::unique_ptr<Platform> platform_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<http::Server> receiver_;
  std::mutex mu_;
  std::vector<std::string> received_;
};

TEST_F(EventRoutesTest, RulesArePutListedAndDeletedByTheRightPersonas) {
  auto put = Send(mia_, "PUT", "/api/v1/event-rules/weld-drift", HookRule());
  ASSERT_EQ(put.status, 201) << put.body;
  Json rule = BodyJson(put);
  EXPECT_EQ(rule["config"]["secret"], "set");
  EXPECT_EQ(rule["created_by"], "mia");
  EXPECT_THAT(put.body, Not(HasSubstr(kSecret)));
  auto again = Send(mia_, "PUT", "/api/v1/event-rules/weld-drift", HookRule());
  EXPECT_EQ(again.status, 200) << "a replace";

  auto listed = Send(aud_, "GET", "/api/v1/event-rules");
  ASSERT_EQ(listed.status, 200);
  EXPECT_THAT(listed.body, Not(HasSubstr(kSecret)));
  std::vector<std::string> names;
  for (const auto& r : BodyJson(listed)) names.push_back(r["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"release-on-decision", "weld-drift"}));

  EXPECT_EQ(Send(aud_, "PUT", "/api/v1/event-rules/weld-drift", HookRule()).status, 403);
  EXPECT_EQ(Send(sam_, "GET", "/api/v1/event-rules").status, 403);
  EXPECT_EQ(Send(aud_, "DELETE", "/api/v1/event-rules/weld-drift").status, 403);

  // The mutations are audited as the principal, without the secret.
  auto audit = platform_->iam->ListAudit({.action_prefix = "event:rule-manage", .limit = 100});
  ASSERT_TRUE(audit.has_value());
  int by_mia = 0;
  for (const auto& a : *audit) {
    by_mia += a.principal == "mia" && a.resource == "event-rules/weld-drift" && a.allowed;
    EXPECT_THAT(a.detail, Not(HasSubstr(kSecret)));
  }
  EXPECT_EQ(by_mia, 2);

  ASSERT_EQ(Send(mia_, "DELETE", "/api/v1/event-rules/weld-drift").status, 200);
  auto gone = Send(mia_, "DELETE", "/api/v1/event-rules/weld-drift");
  EXPECT_EQ(gone.status, 404);
  EXPECT_THAT(ErrorMessage(gone), HasSubstr("rule weld-drift does not exist"));
}

TEST_F(EventRoutesTest, BadRulesAre400NamingWhatIsWrongAndWriteNothing) {
  auto expect_400 = [&](const Json& body, const std::string& text) {
    auto r = Send(mia_, "PUT", "/api/v1/event-rules/weld-drift", body);
    EXPECT_EQ(r.status, 400) << body.dump() << " " << r.body;
    EXPECT_THAT(ErrorMessage(r), HasSubstr(text));
    EXPECT_THAT(r.body, Not(HasSubstr(kSecret)));
  };
  Json https = HookRule();
  https["config"]["url"] = "https://127.0.0.1/hook";
  expect_400(https, "config.url: https is not supported yet");
  Json unknown = HookRule();
  unknown["target"] = "email";
  expect_400(unknown, "unknown target kind 'email' (known: deploy, ");
  expect_400(unknown, "webhook)");
  Json bad_pattern = HookRule();
  bad_pattern["pattern"] = {{"data", {{"score", {{{"numeric", {">", "high"}}}}}}}};
  expect_400(bad_pattern, "pattern.data.score[0]: numeric bound \"high\" is not a number");
  Json extra = HookRule();
  extra["retries"] = 3;
  expect_400(extra, "unknown field 'retries'");
  Json no_target = HookRule();
  no_target.erase("target");
  expect_400(no_target, "target is required");
  auto bad_name = Send(mia_, "PUT", "/api/v1/event-rules/Weld%20Drift", HookRule());
  EXPECT_EQ(bad_name.status, 400);
  auto not_json = Send(mia_, "PUT", "/api/v1/event-rules/weld-drift", Json("not an object"));
  EXPECT_EQ(not_json.status, 400);

  auto listed = Send(mia_, "GET", "/api/v1/event-rules");
  EXPECT_EQ(BodyJson(listed).size(), 1u) << "only the seeded rule";
}

TEST_F(EventRoutesTest, APatternCanBeTriedOnAnEnvelopeOrAStoredEvent) {
  const Json pattern = HookRule()["pattern"];
  auto yes = Send(aud_, "POST", "/api/v1/event-rules/test",
                  {{"pattern", pattern},
                   {"event", {{"type", "io.takt.monitor.drift"}, {"data", {{"model", "weld-pm@3"}}}}}});
  ASSERT_EQ(yes.status, 200) << yes.body;
  EXPECT_EQ(BodyJson(yes)["matches"], true);
  const events::Event stored = Drift("paint-pm@1");
  auto no = Send(aud_, "POST", "/api/v1/event-rules/test", {{"pattern", pattern}, {"event", stored.id}});
  ASSERT_EQ(no.status, 200) << no.body;
  EXPECT_EQ(BodyJson(no)["matches"], false);
  EXPECT_EQ(BodyJson(no)["event"]["id"], stored.id);
  auto bad = Send(aud_, "POST", "/api/v1/event-rules/test",
                  {{"pattern", {{"type", "x"}}}, {"event", Json::object()}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(ErrorMessage(bad), HasSubstr("pattern.type must be a list"));
  EXPECT_EQ(
      Send(aud_, "POST", "/api/v1/event-rules/test", {{"pattern", pattern}, {"event", "ev-nope"}}).status,
      404);
}

TEST_F(EventRoutesTest, EventsShowTheirDeliveriesAndADeliveredOneCanBeReplayed) {
  ASSERT_EQ(Send(mia_, "PUT", "/api/v1/event-rules/weld-drift", HookRule()).status, 201);
  const events::Event e = Drift("weld-pm@3");
  ASSERT_TRUE(WaitForReceived(1));
  Json delivery;
  for (int i = 0; i < 200; ++i) {
    auto d = Send(aud_, "GET", "/api/v1/event-deliveries?status=delivered&rule=weld-drift");
    ASSERT_EQ(d.status, 200) << d.body;
    if (!BodyJson(d).empty()) {
      delivery = BodyJson(d)[0];
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_TRUE(delivery.is_object());
  EXPECT_EQ(delivery["event_id"], e.id);
  EXPECT_EQ(delivery["attempts"], 1);
  EXPECT_EQ(delivery["event_type"], "io.takt.monitor.drift");

  auto listed =
      Send(aud_, "GET", "/api/v1/events?type=io.takt.monitor.drift&subject=endpoints/weld-pm-*&limit=5");
  ASSERT_EQ(listed.status, 200) << listed.body;
  ASSERT_EQ(BodyJson(listed).size(), 1u);
  EXPECT_EQ(BodyJson(listed)[0]["specversion"], "1.0");
  EXPECT_EQ(BodyJson(listed)[0]["data"]["model"], "weld-pm@3");
  EXPECT_EQ(Send(aud_, "GET", "/api/v1/events?limit=zero").status, 400);
  EXPECT_EQ(Send(aud_, "GET", "/api/v1/event-deliveries?status=stuck").status, 400);

  auto shown = Send(aud_, "GET", "/api/v1/events/" + e.id);
  ASSERT_EQ(shown.status, 200);
  Json ev = BodyJson(shown);
  EXPECT_EQ(ev["id"], e.id);
  ASSERT_EQ(ev["deliveries"].size(), 1u);
  EXPECT_EQ(ev["deliveries"][0]["status"], "delivered");
  EXPECT_EQ(Send(aud_, "GET", "/api/v1/events/ev-nope").status, 404);

  // Replay: the auditor may not; the ML engineer may, and it goes out again.
  EXPECT_EQ(Send(aud_, "POST", "/api/v1/events/" + e.id + "/replay", {{"rule", "weld-drift"}}).status, 403);
  auto nothing_dead = Send(mia_, "POST", "/api/v1/events/" + e.id + "/replay", Json::object());
  EXPECT_EQ(nothing_dead.status, 412) << nothing_dead.body;
  auto replay = Send(mia_, "POST", "/api/v1/events/" + e.id + "/replay", {{"rule", "weld-drift"}});
  ASSERT_EQ(replay.status, 200) << replay.body;
  EXPECT_EQ(BodyJson(replay)["replayed"][0]["rule"], "weld-drift");
  ASSERT_TRUE(WaitForReceived(2)) << "replayed";
  EXPECT_EQ(Send(mia_, "POST", "/api/v1/events/ev-nope/replay", {{"rule", "weld-drift"}}).status, 404);
  EXPECT_EQ(Send(mia_, "POST", "/api/v1/events/" + e.id + "/replay", {{"rule", 3}}).status, 400);
}

}  // namespace
}  // namespace takt::api
