// The webhook target against a real receiver: takt's own HTTP server on a
// loopback port, answering what each test tells it to.
#include "events/webhook.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/json.h"
#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "events/pattern.h"
#include "http/router.h"
#include "http/server.h"

namespace takt::events {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kSecret = "weld-pm-webhook-secret";

class ManualClock final : public Clock {
 public:
  int64_t NowMillis() const override { return now_; }
  void Advance(int64_t ms) { now_ += ms; }

 private:
  std::atomic<int64_t> now_{RealClock().NowMillis()};
};

// What the receiver saw of one request.
struct Received {
  std::string content_type;
  std::map<std::string, std::string, std::less<>> headers;
  std::string body;
};

// A webhook receiver: records each POST /hooks/weld and answers with the
// next queued status (200 when the queue is empty).
class Receiver {
 public:
  // port 0: a free one.
  bool Start(uint16_t port = 0) {
    auto router = std::make_shared<http::Router>();
    http::Route route;
    route.method = "POST";
    route.pattern = "/hooks/weld";
    route.is_public = true;
    route.handler = [this](http::Request& req) {
      std::pair<int, std::string> answer{200, "{\"ok\":true}"};
      std::chrono::milliseconds delay{0};
      {
        std::lock_guard<std::mutex> lock(mu_);
        received_.push_back({std::string(req.ContentType()), req.headers, req.body});
        if (!answers_.empty()) {
          answer = answers_.front();
          answers_.pop_front();
        }
        delay = delay_;
      }
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
      return http::JsonResponse(answer.first, answer.second);
    };
    router->Add(std::move(route));
    server_ =
        std::make_unique<http::Server>(http::ServerOptions{.address = "127.0.0.1", .port = port}, router);
    server_->SetBeforeHook(
        [](const http::Route&, http::Request&) -> std::optional<http::Response> { return std::nullopt; });
    if (!server_->Start()) return false;
    port_ = server_->port();
    return true;
  }
  void Stop() {
    if (server_) server_->Stop();
    server_.reset();
  }

  void Answer(int status, std::string body = "{}") {
    std::lock_guard<std::mutex> lock(mu_);
    answers_.emplace_back(status, std::move(body));
  }
  void Delay(std::chrono::milliseconds d) {
    std::lock_guard<std::mutex> lock(mu_);
    delay_ = d;
  }
  std::vector<Received> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hooks/weld"; }

 private:
  std::mutex mu_;
  std::vector<Received> received_;
  std::deque<std::pair<int, std::string>> answers_;
  std::chrono::milliseconds delay_{0};
  std::unique_ptr<http::Server> server_;
  uint16_t port_ = 0;
};

class WebhookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(receiver_.Start());
    db_ = std::move(*store::OpenSqlite(":memory:"));
    bus_ = std::make_unique<EventBus>(
        db_.get(), EventBusOptions{.jitter = 0, .max_attempts = 4, .clock = &clock_, .keyring = &keyring_});
    ASSERT_TRUE(bus_->Migrate());
    ASSERT_TRUE(bus_->DeleteRule("release-on-decision"));  // its target is not registered here
    bus_->RegisterTarget(kWebhookKind, WebhookTarget());
  }

  Result<Rule> PutHook(const Json& config) {
    return bus_->PutRule({.name = "weld-hook",
                          .target = kWebhookKind,
                          .target_config_json = config.dump(),
                          .pattern_json = R"({"type": ["io.takt.model.version.approved"]})",
                          .created_by = "mia"});
  }

  Json Config(int timeout_s = 10) const {
    return {{"url", receiver_.url()},
            {"secret", kSecret},
            {"timeout_s", timeout_s},
            {"headers", {{"X-Plant", "P1"}}}};
  }

  Event Approve() {
    Event out;
    EXPECT_TRUE(db_->Transaction([&](store::Database& tx) -> Status {
      TAKT_ASSIGN_OR_RETURN(out, Append(tx, {.type = kModelVersionApproved,
                                             .source = "/registry",
                                             .subject = "models/weld-pm/versions/3",
                                             .data_json = R"({"group": "weld-pm", "version": 3})"}));
      return Ok();
    }));
    return out;
  }

  Delivery TheDelivery(const std::string& event_id) {
    auto d = bus_->Deliveries({.rule = "weld-hook", .event_id = event_id});
    EXPECT_TRUE(d.has_value() && d->size() == 1);
    return d && d->size() == 1 ? d->front() : Delivery{};
  }

  // Checks one request the way a receiver should: structured mode, the ids, and the signature.
  void ExpectSignedEnvelope(const Received& r, const Event& e, int attempt) {
    EXPECT_EQ(r.content_type, "application/cloudevents+json");
    Json body = Json::parse(r.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r.body;
    EXPECT_EQ(body["specversion"], "1.0");
    EXPECT_EQ(body["id"], e.id);
    EXPECT_EQ(body["type"], kModelVersionApproved);
    EXPECT_EQ(body["source"], "/registry");
    EXPECT_EQ(body["subject"], "models/weld-pm/versions/3");
    EXPECT_EQ(body["time"], e.time);
    EXPECT_EQ(body["data"]["group"], "weld-pm");
    EXPECT_EQ(body["data"]["version"], 3);
    EXPECT_EQ(r.headers.at("x-takt-event-id"), e.id);
    EXPECT_EQ(r.headers.at("x-takt-delivery-attempt"), std::to_string(attempt));
    EXPECT_EQ(r.headers.at("x-plant"), "P1") << "the rule's own headers ride along";

    // X-Takt-Signature: t=<seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
    const std::string sig = r.headers.at("x-takt-signature");
    ASSERT_TRUE(sig.starts_with("t=")) << sig;
    const size_t comma = sig.find(",v1=");
    ASSERT_NE(comma, std::string::npos) << sig;
    const std::string t = sig.substr(2, comma - 2);
    const std::string v1 = sig.substr(comma + 4);
    EXPECT_TRUE(crypto::ConstantTimeEquals(v1, crypto::HmacSha256Hex(kSecret, t + "." + r.body)));
    EXPECT_FALSE(
        crypto::ConstantTimeEquals(v1, crypto::HmacSha256Hex("another-secret-of-16", t + "." + r.body)));
    EXPECT_NEAR(std::stoll(t), RealClock().NowMillis() / 1000, 60) << "t is the signing time";
  }

  Receiver receiver_;
  ManualClock clock_;
  const crypto::Keyring keyring_ = crypto::Keyring::FromBytesForTest(std::string(32, 'm'));
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<EventBus> bus_;
};

TEST(WebhookSignatureTest, IsTheHexHmacOfTimeDotBody) {
  // printf '%s' '1764600000.{"id":"ev-1"}' | openssl dgst -sha256 -hmac 'weld-pm-webhook-secret'
  EXPECT_EQ(WebhookSignature(kSecret, 1764600000, R"({"id":"ev-1"})"),
            "t=1764600000,v1=e52dcdd1871d90e0ce67bcfb798305a7a432393865a206a9486e850cb85ad342");
}

TEST(WebhookConfigTest, RefusesWhatCannotWorkNamingTheField) {
  auto expect_invalid = [](const Json& config, const std::string& text) {
    auto c = ParseWebhookConfig(config.dump());
    ASSERT_FALSE(c.has_value()) << config.dump();
    EXPECT_EQ(c.error().code(), Code::kInvalidArgument);
    EXPECT_THAT(c.error().message(), HasSubstr(text));
    EXPECT_THAT(c.error().message(), Not(HasSubstr("0123456789abcdef")));
  };
  const std::string s = "0123456789abcdef";
  expect_invalid({{"url", "https://hooks.example.com/x"}, {"secret", s}},
                 "config.url: https is not supported yet");
  expect_invalid({{"secret", s}}, "config.url is required");
  expect_invalid({{"url", "ftp://host/x"}, {"secret", s}}, "must start with http://");
  expect_invalid({{"url", "http://:80/x"}, {"secret", s}}, "config.url 'http://:80/x'");
  expect_invalid({{"url", "http://h:99999/x"}, {"secret", s}}, "invalid port");
  expect_invalid({{"url", "http://h/x#frag"}, {"secret", s}}, "#fragment");
  expect_invalid({{"url", "http://h/x"}}, "config.secret is required");
  expect_invalid({{"url", "http://h/x"}, {"secret", "0123456789abcde"}},
                 "config.secret is 15 characters long");
  expect_invalid({{"url", "http://h/x"}, {"secret", s}, {"timeout_s", 0}}, "config.timeout_s must be");
  expect_invalid({{"url", "http://h/x"}, {"secret", s}, {"timeout_s", 2.5}}, "config.timeout_s must be");
  expect_invalid({{"url", "http://h/x"}, {"secret", s}, {"headers", {{"Content-Type", "text/plain"}}}},
                 "config.headers.Content-Type: takt sets this header itself");
  expect_invalid({{"url", "http://h/x"}, {"secret", s}, {"headers", {{"X-Takt-Signature", "x"}}}},
                 "X-Takt-* are reserved");
  expect_invalid({{"url", "http://h/x"}, {"secret", s}, {"headers", {{"X-A", "a\r\nX-B: b"}}}},
                 "line breaks");
  expect_invalid({{"url", "http://h/x"}, {"secret", s}, {"headers", {{"Bad Name", "a"}}}},
                 "not a valid header");
  expect_invalid({{"url", "http://h/x"}, {"secret", s}, {"retries", 3}},
                 "config.retries is not a webhook setting");

  auto ok =
      ParseWebhookConfig(Json{{"url", "http://10.0.0.5:9000/takt/events?plant=P1"}, {"secret", s}}.dump());
  ASSERT_TRUE(ok.has_value()) << ok.error().ToString();
  EXPECT_EQ(ok->base, "http://10.0.0.5:9000");
  EXPECT_EQ(ok->target, "/takt/events?plant=P1");
  EXPECT_EQ(ok->timeout, std::chrono::seconds(10));
  EXPECT_EQ(ParseWebhookConfig(Json{{"url", "http://h:81"}, {"secret", s}}.dump())->target, "/");
}

TEST_F(WebhookTest, PutRuleRefusesHttpsAndShowsTheSecretOnlyAsSet) {
  Json https = Config();
  https["url"] = "https://127.0.0.1:" + std::to_string(receiver_.port()) + "/hooks/weld";
  auto refused = PutHook(https);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(refused.error().message(), HasSubstr("rule weld-hook: config.url: https is not supported yet"));
  EXPECT_TRUE(bus_->Rules()->empty()) << "nothing written";

  auto put = PutHook(Config());
  ASSERT_TRUE(put.has_value()) << put.error().ToString();
  EXPECT_EQ(Json::parse(put->target_config_json)["secret"], "set");
  auto rules = bus_->Rules();
  ASSERT_TRUE(rules.has_value());
  for (const auto& r : *rules) EXPECT_THAT(r.target_config_json, Not(HasSubstr(kSecret)));
  auto raw = db_->Query("SELECT target_config FROM rules WHERE name = 'weld-hook'");
  EXPECT_THAT(raw->front().Text(0), Not(HasSubstr(kSecret)));
}

TEST_F(WebhookTest, PostsASignedStructuredEventAndRetriesA500UntilItIsTaken) {
  ASSERT_TRUE(PutHook(Config()).has_value());
  receiver_.Answer(500, R"({"error": "database busy"})");
  const Event e = Approve();
  ASSERT_TRUE(bus_->DeliverPending());
  auto got = receiver_.received();
  ASSERT_EQ(got.size(), 1u);
  ExpectSignedEnvelope(got[0], e, 1);
  Delivery d = TheDelivery(e.id);
  EXPECT_EQ(d.status, kDeliveryFailed);
  EXPECT_EQ(d.attempts, 1);
  EXPECT_THAT(d.last_error, HasSubstr("webhook POST " + receiver_.url() + " answered 500"));
  EXPECT_THAT(d.last_error, HasSubstr("database busy"));
  EXPECT_EQ(d.next_attempt_at, clock_.NowMillis() + 1000);

  clock_.Advance(1000);
  ASSERT_TRUE(bus_->DeliverPending());
  got = receiver_.received();
  ASSERT_EQ(got.size(), 2u);
  ExpectSignedEnvelope(got[1], e, 2);
  d = TheDelivery(e.id);
  EXPECT_EQ(d.status, kDeliveryDelivered);
  EXPECT_EQ(d.attempts, 2);
  EXPECT_TRUE(d.last_error.empty());
  EXPECT_FALSE(bus_->GetEvent(e.id)->delivered_at.empty());
  EXPECT_THAT(d.last_error + TheDelivery(e.id).last_error, Not(HasSubstr(kSecret)));
}

TEST_F(WebhookTest, A429IsRetriedAndA400IsDeadAtOnce) {
  ASSERT_TRUE(PutHook(Config()).has_value());
  receiver_.Answer(429, R"({"error": "slow down"})");
  receiver_.Answer(400,
                   std::string(R"({"error": "unknown model group weld-pm)") + std::string(300, '!') + "\"}");
  const Event e = Approve();
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(TheDelivery(e.id).status, kDeliveryFailed);
  clock_.Advance(1000);
  ASSERT_TRUE(bus_->DeliverPending());
  Delivery d = TheDelivery(e.id);
  EXPECT_EQ(d.status, kDeliveryDead) << "a 400 is not retried";
  EXPECT_EQ(d.attempts, 2);
  EXPECT_THAT(d.last_error, HasSubstr("answered 400: {\"error\": \"unknown model group weld-pm!!!"));
  EXPECT_THAT(d.last_error, HasSubstr("...")) << "the body is cut at 200 bytes";
  EXPECT_THAT(d.last_error, Not(HasSubstr(std::string(250, '!'))));
  clock_.Advance(3'600'000);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(receiver_.received().size(), 2u);
}

TEST_F(WebhookTest, AReceiverThatIsDownIsRetriedUntilItIsBack) {
  ASSERT_TRUE(PutHook(Config()).has_value());
  const uint16_t port = receiver_.port();
  receiver_.Stop();
  const Event e = Approve();
  ASSERT_TRUE(bus_->DeliverPending());
  Delivery d = TheDelivery(e.id);
  EXPECT_EQ(d.status, kDeliveryFailed);
  EXPECT_EQ(d.attempts, 1);
  EXPECT_THAT(d.last_error, HasSubstr("webhook POST " + receiver_.url() + ": cannot reach"));
  EXPECT_THAT(d.last_error, HasSubstr("Connection refused"));
  EXPECT_THAT(d.last_error, Not(HasSubstr("takt server"))) << "not the CLI's hint";
  clock_.Advance(1000);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(TheDelivery(e.id).attempts, 2);

  ASSERT_TRUE(receiver_.Start(port)) << "the same port again";
  clock_.Advance(2000);
  ASSERT_TRUE(bus_->DeliverPending());
  d = TheDelivery(e.id);
  EXPECT_EQ(d.status, kDeliveryDelivered);
  EXPECT_EQ(d.attempts, 3);
  auto got = receiver_.received();
  ASSERT_EQ(got.size(), 1u);
  ExpectSignedEnvelope(got[0], e, 3);
}

TEST_F(WebhookTest, AReceiverSlowerThanTheTimeoutIsRetried) {
  ASSERT_TRUE(PutHook(Config(/*timeout_s=*/1)).has_value());
  receiver_.Delay(std::chrono::milliseconds(2500));
  const Event e = Approve();
  ASSERT_TRUE(bus_->DeliverPending());
  Delivery d = TheDelivery(e.id);
  EXPECT_EQ(d.status, kDeliveryFailed);
  EXPECT_THAT(d.last_error, HasSubstr("UNAVAILABLE: webhook POST " + receiver_.url()));
  receiver_.Delay(std::chrono::milliseconds(0));
  clock_.Advance(1000);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(TheDelivery(e.id).status, kDeliveryDelivered);
}

}  // namespace
}  // namespace takt::events
