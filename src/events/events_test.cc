#include "events/events.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "core/json.h"
#include "crypto/keyring.h"
#include "events/pattern.h"

namespace takt::events {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A clock the test moves by hand: backoff is decided by it.
class ManualClock final : public Clock {
 public:
  int64_t NowMillis() const override { return now_; }
  void Advance(int64_t ms) { now_ += ms; }

 private:
  std::atomic<int64_t> now_{1'764'600'000'000};
};

constexpr const char* kDrift = "io.takt.monitor.drift";

class EventsTest : public ::testing::Test {
 protected:
  void SetUp() override { Open({}); }

  void Open(EventBusOptions options) {
    bus_.reset();
    db_ = std::move(*store::OpenSqlite(":memory:"));
    options.clock = &clock_;
    bus_ = std::make_unique<EventBus>(db_.get(), options);
    ASSERT_TRUE(bus_->Migrate());
    ASSERT_TRUE(db_->ExecScript("CREATE TABLE things (name TEXT PRIMARY KEY)"));
  }

  Event AppendEvent(const std::string& type, const Json& data = Json::object(),
                    const std::string& subject = "models/weld-pm/versions/1") {
    Event e{.type = type, .source = "/test", .subject = subject, .data_json = data.dump()};
    Event out;
    EXPECT_TRUE(db_->Transaction([&](store::Database& tx) -> Status {
      TAKT_ASSIGN_OR_RETURN(out, Append(tx, e));
      return Ok();
    }));
    return out;
  }

  // A target that records the events it got and fails while `fail` is > 0.
  void RegisterRecorder(const std::string& kind) {
    bus_->RegisterTarget(kind, [this](const Event& e, const Rule& r) -> Status {
      calls_.push_back(e.id + "/" + r.name);
      if (fail_ > 0) {
        --fail_;
        return Unavailable("endpoint host busy");
      }
      return Ok();
    });
  }

  Rule MakeRule(const std::string& name, const std::string& pattern, const std::string& target = "record") {
    return Rule{.name = name, .target = target, .pattern_json = pattern, .created_by = "mia"};
  }

  Delivery DeliveryOf(const std::string& event_id, const std::string& rule) {
    auto d = bus_->Deliveries({.rule = rule, .event_id = event_id});
    EXPECT_TRUE(d.has_value()) << d.error().ToString();
    if (!d || d->size() != 1) {
      ADD_FAILURE() << "no delivery of " << event_id << " to " << rule;
      return {};
    }
    return d->front();
  }

  std::string DeliveredAt(const std::string& event_id) {
    auto e = bus_->GetEvent(event_id);
    EXPECT_TRUE(e.has_value());
    return e ? e->delivered_at : "";
  }

  ManualClock clock_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<EventBus> bus_;
  std::vector<std::string> calls_;
  int fail_ = 0;
};

TEST_F(EventsTest, EventIsWrittenOnlyWithItsChange) {
  Status failed = db_->Transaction([](store::Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO things VALUES ('a')"));
    TAKT_RETURN_IF_ERROR(Append(tx, {.type = kModelVersionApproved, .subject = "models/x/versions/1"}));
    return Conflict("something later failed");
  });
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(bus_->List(10)->size(), 0u);
  ASSERT_TRUE(db_->Transaction([](store::Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO things VALUES ('a')"));
    TAKT_RETURN_IF_ERROR(Append(tx, {.type = kModelVersionApproved, .subject = "models/x/versions/1"}));
    return Ok();
  }));
  EXPECT_EQ(bus_->List(10)->size(), 1u);
}

TEST_F(EventsTest, TheSeededRuleSendsDecisionsToTheReleaseTargetAndRetriesWhileItIsMissing) {
  auto rules = bus_->Rules();
  ASSERT_TRUE(rules.has_value());
  ASSERT_EQ(rules->size(), 1u) << "deploy-approved-to-dev is replaced";
  const Rule& r = rules->front();
  EXPECT_EQ(r.name, "release-on-decision");
  EXPECT_EQ(r.target, "release");
  EXPECT_EQ(r.target_config_json, "{}");
  EXPECT_EQ(Json::parse(r.pattern_json),
            Json::parse(R"({"type": ["io.takt.model.version.approved", "io.takt.model.version.rejected"]})"));
  EXPECT_FALSE(r.created_at.empty());

  const Event approved = AppendEvent(kModelVersionApproved);
  const Event rejected = AppendEvent(kModelVersionRejected);
  const Event registered = AppendEvent(kModelVersionRegistered);
  ASSERT_TRUE(bus_->DeliverPending());
  for (const Event& e : {approved, rejected}) {
    Delivery d = DeliveryOf(e.id, "release-on-decision");
    EXPECT_EQ(d.status, kDeliveryFailed);
    EXPECT_EQ(d.attempts, 1);
    EXPECT_THAT(d.last_error, HasSubstr("no target of kind release"));
    EXPECT_LE(d.next_attempt_at, clock_.NowMillis() + 1000);
    EXPECT_GE(d.next_attempt_at, clock_.NowMillis() + 900) << "jitter shortens by at most 10%";
    EXPECT_TRUE(DeliveredAt(e.id).empty());
  }
  EXPECT_FALSE(DeliveredAt(registered.id).empty()) << "no rule matches it: nothing to wait for";
  EXPECT_TRUE(bus_->Deliveries({.event_id = registered.id})->empty());
}

TEST_F(EventsTest, RulesMatchByPatternOverTheEnvelope) {
  RegisterRecorder("record");
  ASSERT_TRUE(bus_->PutRule(MakeRule("weld-approvals",
                                     R"({"type": ["io.takt.model.version.approved"],
          "data": {"group": [{"prefix": "weld-"}], "metrics": {"auc": [{"numeric": [">=", 0.9]}]}}})")));
  const Event good = AppendEvent(kModelVersionApproved, {{"group", "weld-pm"}, {"metrics", {{"auc", 0.93}}}});
  AppendEvent(kModelVersionApproved, {{"group", "weld-pm"}, {"metrics", {{"auc", 0.71}}}});
  AppendEvent(kModelVersionApproved, {{"group", "paint-pm"}, {"metrics", {{"auc", 0.95}}}});
  AppendEvent(kModelVersionRegistered, {{"group", "weld-pm"}, {"metrics", {{"auc", 0.95}}}});
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_, std::vector<std::string>{good.id + "/weld-approvals"});
  EXPECT_EQ(DeliveryOf(good.id, "weld-approvals").status, kDeliveryDelivered);

  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_.size(), 1u) << "a delivered event is never delivered again";

  // A disabled rule matches nothing new.
  Rule off = MakeRule("weld-approvals", R"({"type": ["io.takt.model.version.approved"]})");
  off.enabled = false;
  ASSERT_TRUE(bus_->PutRule(off));
  AppendEvent(kModelVersionApproved, {{"group", "weld-pm"}});
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_.size(), 1u);
}

TEST_F(EventsTest, TheEventTypeShorthandStillMakesAPattern) {
  RegisterRecorder("record");
  auto put = bus_->PutRule({.name = "drift", .event_type = kDrift, .target = "record"});
  ASSERT_TRUE(put.has_value()) << put.error().ToString();
  EXPECT_EQ(Json::parse(put->pattern_json), Json::parse(R"({"type": ["io.takt.monitor.drift"]})"));
  EXPECT_EQ(put->event_type, kDrift);
  const Event e = AppendEvent(kDrift);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_, std::vector<std::string>{e.id + "/drift"});
}

TEST_F(EventsTest, MigrationTurnsOldRulesIntoPatterns) {
  // A database as version 1 left it: an old-style rule, the seeded one, and
  // an approval whose delivery to the seeded rule failed once.
  db_ = std::move(*store::OpenSqlite(":memory:"));
  ASSERT_TRUE(store::Migrate(
      *db_, "events",
      {{1, "outbox-rules-deliveries",
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, source "
        "TEXT NOT NULL, subject TEXT NOT NULL, time TEXT NOT NULL, data_json TEXT NOT NULL, delivered_at "
        "TEXT);"
        "CREATE TABLE rules (name TEXT PRIMARY KEY, event_type TEXT NOT NULL, target TEXT NOT NULL, "
        "target_config TEXT NOT NULL, enabled INTEGER NOT NULL);"
        "CREATE TABLE deliveries (event_id TEXT NOT NULL, rule TEXT NOT NULL, status TEXT NOT NULL, attempts "
        "INTEGER NOT NULL, last_error TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (event_id, rule));"
        "INSERT INTO rules VALUES ('deploy-approved-to-dev', 'io.takt.model.version.approved', 'deploy', "
        "'{\"stage\":\"dev\"}', 1);"}}));
  ASSERT_TRUE(db_->Exec("INSERT INTO rules VALUES ('retrain-on-drift', ?, 'run', ?, 1)",
                        {std::string(kDrift), std::string(R"({"pipeline":"weld-nightly"})")}));
  ASSERT_TRUE(
      db_->Exec("INSERT INTO rules VALUES ('odd', ?, 'run', '{}', 0)", {std::string(R"(say "hi" \ bye)")}));
  ASSERT_TRUE(
      db_->Exec("INSERT INTO outbox (id, type, source, subject, time, data_json) VALUES ('ev-old', ?, "
                "'/registry', 'models/weld-pm/versions/1', '2026-01-01T00:00:00.000Z', '{}')",
                {std::string(kModelVersionApproved)}));
  ASSERT_TRUE(
      db_->Exec("INSERT INTO deliveries VALUES ('ev-old', 'deploy-approved-to-dev', 'failed', 1, "
                "'UNAVAILABLE: busy', '2026-01-01T00:00:01.000Z')"));
  bus_ = std::make_unique<EventBus>(db_.get(), EventBusOptions{.clock = &clock_});
  ASSERT_TRUE(bus_->Migrate());
  ASSERT_TRUE(bus_->Migrate()) << "migrating twice changes nothing";

  auto rules = bus_->Rules();
  ASSERT_TRUE(rules.has_value()) << rules.error().ToString();
  std::map<std::string, Rule> by_name;
  for (const auto& r : *rules) by_name[r.name] = r;
  ASSERT_EQ(by_name.size(), 3u);
  EXPECT_FALSE(by_name.contains("deploy-approved-to-dev"));
  const Rule& drift = by_name["retrain-on-drift"];
  EXPECT_EQ(Json::parse(drift.pattern_json), Json::parse(R"({"type": ["io.takt.monitor.drift"]})"));
  EXPECT_EQ(drift.event_type, kDrift);
  EXPECT_EQ(drift.target, "run");
  EXPECT_EQ(Json::parse(drift.target_config_json)["pipeline"], "weld-nightly");
  EXPECT_TRUE(drift.enabled);
  EXPECT_FALSE(drift.created_at.empty());
  const Rule& odd = by_name["odd"];
  EXPECT_EQ(odd.event_type, R"(say "hi" \ bye)") << "quotes and backslashes survive: " << odd.pattern_json;
  EXPECT_TRUE(Pattern::ParseText(odd.pattern_json).has_value());
  EXPECT_FALSE(odd.enabled);
  EXPECT_EQ(by_name["release-on-decision"].target, "release");

  // The old seeded rule's waiting delivery is settled: dead, and the event done.
  Delivery old = DeliveryOf("ev-old", "deploy-approved-to-dev");
  EXPECT_EQ(old.status, kDeliveryDead);
  EXPECT_THAT(old.last_error, HasSubstr("replaced by release-on-decision"));
  EXPECT_FALSE(DeliveredAt("ev-old").empty());
}

TEST_F(EventsTest, BackoffDoublesFromTheBaseUpToTheCapWithJitterBelowIt) {
  EventBusOptions o;  // base 1 s, cap 5 min, jitter 10 %
  std::vector<int64_t> delays;
  for (int n = 1; n <= 11; ++n) delays.push_back(BackoffDelay(o, n, 0).count());
  EXPECT_EQ(delays, (std::vector<int64_t>{1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000,
                                          300000}));
  EXPECT_EQ(BackoffDelay(o, 200, 0).count(), 300000) << "no overflow far out";
  EXPECT_EQ(BackoffDelay(o, 3, 0.5).count(), 3800);
  EXPECT_EQ(BackoffDelay(o, 10, 0.999).count(), 270030);
  o.base_backoff = std::chrono::milliseconds(250);
  o.max_backoff = std::chrono::milliseconds(1500);
  EXPECT_EQ(BackoffDelay(o, 3, 0).count(), 1000);
  EXPECT_EQ(BackoffDelay(o, 4, 0).count(), 1500);
}

TEST_F(EventsTest, RetriesFollowTheScheduleAndTheDeliveryIsDeadAfterMaxAttempts) {
  Open({.jitter = 0, .max_attempts = 4});
  RegisterRecorder("record");
  fail_ = 100;
  ASSERT_TRUE(bus_->PutRule(MakeRule("drift", R"({"type": ["io.takt.monitor.drift"]})")));
  const Event e = AppendEvent(kDrift);
  const int64_t t0 = clock_.NowMillis();
  ASSERT_TRUE(bus_->DeliverPending());
  ASSERT_EQ(calls_.size(), 1u);
  Delivery d = DeliveryOf(e.id, "drift");
  EXPECT_EQ(d.status, kDeliveryFailed);
  EXPECT_EQ(d.attempts, 1);
  EXPECT_EQ(d.next_attempt_at, t0 + 1000);
  EXPECT_THAT(d.last_error, HasSubstr("UNAVAILABLE: endpoint host busy"));

  // Not due yet: nothing happens, however often the bus passes.
  clock_.Advance(999);
  ASSERT_TRUE(bus_->DeliverPending());
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_.size(), 1u);
  clock_.Advance(1);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_.size(), 2u);
  d = DeliveryOf(e.id, "drift");
  EXPECT_EQ(d.attempts, 2);
  EXPECT_EQ(d.next_attempt_at, clock_.NowMillis() + 2000);
  clock_.Advance(2000);
  ASSERT_TRUE(bus_->DeliverPending());
  d = DeliveryOf(e.id, "drift");
  EXPECT_EQ(d.attempts, 3);
  EXPECT_EQ(d.next_attempt_at, clock_.NowMillis() + 4000);
  EXPECT_TRUE(DeliveredAt(e.id).empty());

  clock_.Advance(4000);
  ASSERT_TRUE(bus_->DeliverPending());
  d = DeliveryOf(e.id, "drift");
  EXPECT_EQ(d.status, kDeliveryDead);
  EXPECT_EQ(d.attempts, 4);
  EXPECT_FALSE(DeliveredAt(e.id).empty()) << "dead counts as done for the outbox";
  auto dead = bus_->Deliveries({.status = kDeliveryDead});
  ASSERT_TRUE(dead.has_value());
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ(dead->front().event_id, e.id);
  EXPECT_EQ(dead->front().event_type, kDrift);

  clock_.Advance(3'600'000);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_.size(), 4u) << "a dead delivery is not retried";
}

TEST_F(EventsTest, APermanentFailureIsDeadAtOnce) {
  int calls = 0;
  bus_->RegisterTarget(
      "strict", TargetSpec{.deliver = [&](const Event&, const Rule&, int attempt) -> Outcome {
        ++calls;
        EXPECT_EQ(attempt, 1);
        return std::unexpected(Failure{Error(Code::kInvalidArgument, "the receiver said 400"), true});
      }});
  ASSERT_TRUE(bus_->PutRule(MakeRule("strict", R"({"type": ["io.takt.monitor.drift"]})", "strict")));
  const Event e = AppendEvent(kDrift);
  ASSERT_TRUE(bus_->DeliverPending());
  Delivery d = DeliveryOf(e.id, "strict");
  EXPECT_EQ(d.status, kDeliveryDead);
  EXPECT_EQ(d.attempts, 1);
  EXPECT_THAT(d.last_error, HasSubstr("the receiver said 400"));
  clock_.Advance(3'600'000);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls, 1);
}

TEST_F(EventsTest, ReplayPutsADeadOrDeliveredDeliveryBackAndRetriesItNow) {
  Open({.jitter = 0, .max_attempts = 2});
  RegisterRecorder("record");
  fail_ = 2;
  ASSERT_TRUE(bus_->PutRule(MakeRule("drift", R"({"type": ["io.takt.monitor.drift"]})")));
  const Event e = AppendEvent(kDrift);
  ASSERT_TRUE(bus_->DeliverPending());

  // Still waiting for its retry: nothing to replay yet.
  auto waiting = bus_->Replay(e.id, "drift");
  ASSERT_FALSE(waiting.has_value());
  EXPECT_EQ(waiting.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(waiting.error().message(), HasSubstr("still failed"));
  auto none = bus_->Replay(e.id);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code(), Code::kFailedPrecondition);

  clock_.Advance(1000);
  ASSERT_TRUE(bus_->DeliverPending());
  ASSERT_EQ(DeliveryOf(e.id, "drift").status, kDeliveryDead);
  ASSERT_EQ(calls_.size(), 2u);

  // The receiver is fixed: replay every dead delivery of the event.
  auto replayed = bus_->Replay(e.id);
  ASSERT_TRUE(replayed.has_value()) << replayed.error().ToString();
  ASSERT_EQ(replayed->size(), 1u);
  EXPECT_EQ(replayed->front().status, kDeliveryPending);
  EXPECT_EQ(replayed->front().attempts, 0);
  EXPECT_TRUE(DeliveredAt(e.id).empty()) << "replay clears delivered_at";
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_.size(), 3u) << "due now, no backoff";
  Delivery d = DeliveryOf(e.id, "drift");
  EXPECT_EQ(d.status, kDeliveryDelivered);
  EXPECT_EQ(d.attempts, 1);
  EXPECT_FALSE(DeliveredAt(e.id).empty());

  // A delivered one may be replayed by naming its rule, and goes out once more.
  ASSERT_TRUE(bus_->Replay(e.id, "drift").has_value());
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_.size(), 4u);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_.size(), 4u);

  // A rule written after the event may be replayed to, if it matches.
  ASSERT_TRUE(bus_->PutRule(MakeRule("late", R"({"source": ["/test"]})")));
  ASSERT_TRUE(bus_->PutRule(MakeRule("elsewhere", R"({"source": ["/registry"]})")));
  ASSERT_TRUE(bus_->Replay(e.id, "late").has_value());
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls_.back(), e.id + "/late");
  auto unmatched = bus_->Replay(e.id, "elsewhere");
  ASSERT_FALSE(unmatched.has_value());
  EXPECT_EQ(unmatched.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(unmatched.error().message(), HasSubstr("does not match"));

  auto no_event = bus_->Replay("ev-nope", "drift");
  ASSERT_FALSE(no_event.has_value());
  EXPECT_EQ(no_event.error().code(), Code::kNotFound);
  auto no_rule = bus_->Replay(e.id, "nope");
  ASSERT_FALSE(no_rule.has_value());
  EXPECT_EQ(no_rule.error().code(), Code::kNotFound);
}

TEST_F(EventsTest, ANotYetDueRetryDoesNotStarveNewEvents) {
  Open({.batch_size = 3});
  int slow_calls = 0, fast_calls = 0;
  bus_->RegisterTarget("down", [&](const Event&, const Rule&) -> Status {
    ++slow_calls;
    return Unavailable("receiver down");
  });
  bus_->RegisterTarget("up", [&](const Event&, const Rule&) -> Status {
    ++fast_calls;
    return Ok();
  });
  ASSERT_TRUE(bus_->PutRule(MakeRule("to-down", R"({"type": ["io.takt.monitor.drift"]})", "down")));
  ASSERT_TRUE(bus_->PutRule(MakeRule("to-up", R"({"type": ["io.takt.model.version.registered"]})", "up")));
  for (int i = 0; i < 10; ++i) AppendEvent(kDrift);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(slow_calls, 10) << "batches continue until nothing is due";
  EXPECT_EQ(bus_->Deliveries({.status = kDeliveryFailed})->size(), 10u);

  // Ten older events wait for their retries; a new one goes out at once.
  const Event fresh = AppendEvent(kModelVersionRegistered);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(fast_calls, 1);
  EXPECT_EQ(slow_calls, 10);
  EXPECT_EQ(DeliveryOf(fresh.id, "to-up").status, kDeliveryDelivered);
  EXPECT_FALSE(DeliveredAt(fresh.id).empty());
}

TEST_F(EventsTest, AnUnknownTargetKindIsRefusedListingTheKnownOnes) {
  RegisterRecorder("record");
  bus_->RegisterTarget("deploy", [](const Event&, const Rule&) -> Status { return Ok(); });
  auto put = bus_->PutRule(MakeRule("r", R"({"type": ["x"]})", "webhok"));
  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(put.error().message(), HasSubstr("unknown target kind 'webhok' (known: deploy, record)"));
  EXPECT_EQ(bus_->Rules()->size(), 1u) << "nothing written";
}

TEST_F(EventsTest, AMalformedPatternIsRefusedNamingItsPath) {
  RegisterRecorder("record");
  auto expect_invalid = [&](const Rule& rule, const std::string& text) {
    auto put = bus_->PutRule(rule);
    ASSERT_FALSE(put.has_value()) << text;
    EXPECT_EQ(put.error().code(), Code::kInvalidArgument);
    EXPECT_THAT(put.error().message(), HasSubstr(text));
  };
  expect_invalid(MakeRule("r", R"({"data": {"metrics": {"auc": [{"numeric": [">=", "high"]}]}}})"),
                 "rule r: pattern.data.metrics.auc[0]: numeric bound \"high\" is not a number");
  expect_invalid(MakeRule("r", R"({"type": "io.takt.model.version.approved"})"),
                 "pattern.type must be a list of matchers");
  expect_invalid(MakeRule("r", R"({"type": [)"), "pattern is not valid JSON");
  expect_invalid(MakeRule("r", ""), "a pattern is required");
  expect_invalid(MakeRule("Bad Name", R"({"type": ["x"]})"), "rule name 'Bad Name' is invalid");
  Rule bad_config = MakeRule("r", R"({"type": ["x"]})");
  bad_config.target_config_json = "[1]";
  expect_invalid(bad_config, "config must be a JSON object");
  EXPECT_EQ(bus_->Rules()->size(), 1u) << "nothing written";
}

TEST_F(EventsTest, SecretsAreSealedAtRestAndListedAsSet) {
  const crypto::Keyring keyring = crypto::Keyring::FromBytesForTest(std::string(32, 'k'));
  Open({.keyring = &keyring});
  std::vector<std::string> seen;
  bus_->RegisterTarget("signed",
                       TargetSpec{.deliver = [&](const Event&, const Rule& r, int) -> Outcome {
                                    seen.push_back(Json::parse(r.target_config_json).value("secret", ""));
                                    return {};
                                  },
                                  .check = [](const Rule& r) -> Status {
                                    if (Json::parse(r.target_config_json).value("secret", "").size() < 16)
                                      return InvalidArgument("config.secret is too short");
                                    return Ok();
                                  },
                                  .secret_fields = {"secret"}});
  const std::string secret = "weld-pm-webhook-secret";
  Rule rule = MakeRule("hook", R"({"type": ["io.takt.monitor.drift"]})", "signed");
  rule.target_config_json = Json{{"secret", secret}, {"note", "plain"}}.dump();
  auto put = bus_->PutRule(rule);
  ASSERT_TRUE(put.has_value()) << put.error().ToString();
  EXPECT_EQ(Json::parse(put->target_config_json)["secret"], "set");
  auto listed = bus_->Rules();
  ASSERT_TRUE(listed.has_value());
  for (const auto& r : *listed) EXPECT_THAT(r.target_config_json, Not(HasSubstr(secret)));
  auto raw = db_->Query("SELECT target_config FROM rules WHERE name = 'hook'");
  ASSERT_TRUE(raw.has_value());
  EXPECT_THAT(raw->front().Text(0), Not(HasSubstr(secret)));
  EXPECT_THAT(raw->front().Text(0), HasSubstr("$sealed"));
  EXPECT_THAT(raw->front().Text(0), HasSubstr("plain")) << "only the secret fields are sealed";

  AppendEvent(kDrift);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(seen, std::vector<std::string>{secret}) << "the target sees the plaintext";

  // A replace that leaves the secret out keeps it (a listing only shows "set").
  rule.target_config_json = R"({"note": "changed"})";
  rule.description = "signed drift alerts";
  ASSERT_TRUE(bus_->PutRule(rule).has_value());
  AppendEvent(kDrift);
  ASSERT_TRUE(bus_->DeliverPending());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], secret);

  // The target's check runs on what is stored: a short secret is refused.
  rule.target_config_json = R"({"secret": "short"})";
  auto refused = bus_->PutRule(rule);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Code::kInvalidArgument);

  // Without a keyring there is nowhere to seal it.
  Open({});
  bus_->RegisterTarget("signed",
                       TargetSpec{.deliver = [](const Event&, const Rule&, int) -> Outcome { return {}; },
                                  .secret_fields = {"secret"}});
  rule.target_config_json = Json{{"secret", secret}}.dump();
  auto no_keyring = bus_->PutRule(rule);
  ASSERT_FALSE(no_keyring.has_value());
  EXPECT_EQ(no_keyring.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(no_keyring.error().message(), Not(HasSubstr(secret)));
}

TEST_F(EventsTest, PuttingARuleAgainKeepsItsAuthorAndDeletingItSettlesItsDeliveries) {
  RegisterRecorder("record");
  fail_ = 100;
  Rule rule = MakeRule("drift", R"({"type": ["io.takt.monitor.drift"]})");
  auto first = bus_->PutRule(rule);
  ASSERT_TRUE(first.has_value());
  clock_.Advance(5000);
  rule.created_by = "ana";
  rule.description = "retrain the weld model on drift";
  auto second = bus_->PutRule(rule);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->created_by, "mia");
  EXPECT_EQ(second->created_at, first->created_at);
  EXPECT_EQ(second->updated_by, "ana");
  EXPECT_NE(second->updated_at, first->updated_at);
  EXPECT_EQ(second->description, "retrain the weld model on drift");

  const Event e = AppendEvent(kDrift);
  ASSERT_TRUE(bus_->DeliverPending());
  ASSERT_EQ(DeliveryOf(e.id, "drift").status, kDeliveryFailed);
  ASSERT_TRUE(bus_->DeleteRule("drift"));
  Delivery d = DeliveryOf(e.id, "drift");
  EXPECT_EQ(d.status, kDeliveryDead);
  EXPECT_THAT(d.last_error, HasSubstr("rule drift was deleted"));
  EXPECT_FALSE(DeliveredAt(e.id).empty());
  auto again = bus_->DeleteRule("drift");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), Code::kNotFound);
}

TEST_F(EventsTest, ListingsFilterAndCheckTheirArguments) {
  AppendEvent(kModelVersionRegistered, {}, "models/weld-pm/versions/1");
  AppendEvent(kModelVersionApproved, {}, "models/weld-pm/versions/1");
  AppendEvent(kModelVersionApproved, {}, "models/paint-pm/versions/4");
  EXPECT_EQ(bus_->List({.type = kModelVersionApproved})->size(), 2u);
  EXPECT_EQ(bus_->List({.subject = "models/weld-pm/*"})->size(), 2u);
  EXPECT_EQ(bus_->List({.subject = "models/weld-pm"})->size(), 0u) << "exact without the *";
  auto limited = bus_->List({.limit = 1});
  ASSERT_EQ(limited->size(), 1u);
  EXPECT_EQ(limited->front().subject, "models/paint-pm/versions/4") << "newest first";
  EXPECT_EQ(bus_->List({.limit = 0}).error().code(), Code::kInvalidArgument);
  auto bad = bus_->Deliveries({.status = "stuck"});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad.error().message(), HasSubstr("not one of pending, failed, delivered, dead"));
  EXPECT_EQ(bus_->GetEvent("ev-nope").error().code(), Code::kNotFound);
}

TEST_F(EventsTest, BackgroundDeliveryRunsOnNotify) {
  std::atomic<int> calls{0};
  bus_->RegisterTarget("record", [&](const Event&, const Rule&) -> Status {
    ++calls;
    return Ok();
  });
  ASSERT_TRUE(bus_->PutRule(MakeRule("drift", R"({"type": ["io.takt.monitor.drift"]})")));
  bus_->Start(std::chrono::milliseconds(50));
  AppendEvent(kDrift);
  bus_->Notify();
  for (int i = 0; i < 200 && calls == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  bus_->Stop();
  EXPECT_EQ(calls, 1);
  // After Stop, a pass on the caller's thread still works.
  AppendEvent(kDrift);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace takt::events
