// Event rules through the real binary: an ML engineer puts a webhook rule
// (bad ones refused), a pipeline registers a model and the receiver gets the
// signed event; with the receiver down an approval is retried, then dead
// after the server's max attempts; the receiver is back, the event replayed,
// delivered once more; and every rule change and replay is in the audit log.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/json.h"
#include "crypto/crypto.h"
#include "e2e/testkit.h"
#include "http/router.h"
#include "http/server.h"

namespace takt::testkit {
namespace {

Json ParseOut(const CliResult& r) {
  auto j = Json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out << r.err;
  return j;
}

constexpr const char* kSecret = "weld-pm-e2e-webhook-secret-0451";

constexpr const char* kPipeline = R"(# A small training that registers a model version.
name: weld-quick
project: weld-pm
steps:
  - name: features
    kind: features
    dataset: weld-telemetry
    entity: robot_serial
    time: timestamp
    label: fails_within_24h
    windows: [6, 24]
    keep: [plant]
  - name: train
    kind: train
    input: features
    label: fails_within_24h
    exclude: [tip_dress_count]
    holdout: {time_column: timestamp, fraction: 0.25}
    rounds: 10
    params: {objective: "binary:logistic", tree_method: hist, max_depth: 3, seed: 7, nthread: 1}
  - name: evaluate
    kind: evaluate
    model: train
  - name: register
    kind: register
    model: train
    metrics: evaluate
    model_group: weld-pm
)";

struct Received {
  std::map<std::string, std::string, std::less<>> headers;
  std::string content_type;
  std::string body;
};

// A webhook receiver on loopback: takt's own HTTP server, answering 200.
class Receiver {
 public:
  bool Start(uint16_t port) {
    auto router = std::make_shared<http::Router>();
    http::Route route;
    route.method = "POST";
    route.pattern = "/hooks/takt";
    route.is_public = true;
    route.handler = [this](http::Request& req) {
      std::lock_guard<std::mutex> lock(mu_);
      received_.push_back({req.headers, std::string(req.ContentType()), req.body});
      return http::JsonResponse(200, "{}");
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
  void Stop() { server_.reset(); }
  std::vector<Received> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  // Waits until `n` requests arrived.
  bool WaitFor(size_t n, std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (received().size() < n && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return received().size() >= n;
  }
  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hooks/takt"; }

 private:
  std::mutex mu_;
  std::vector<Received> received_;
  std::unique_ptr<http::Server> server_;
  uint16_t port_ = 0;
};

// The receiver's check of X-Takt-Signature: t=<s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.
void ExpectSigned(const Received& r) {
  EXPECT_EQ(r.content_type, "application/cloudevents+json");
  ASSERT_TRUE(r.headers.contains("x-takt-signature"));
  const std::string sig = r.headers.at("x-takt-signature");
  const size_t comma = sig.find(",v1=");
  ASSERT_TRUE(sig.starts_with("t=") && comma != std::string::npos) << sig;
  const std::string t = sig.substr(2, comma - 2);
  EXPECT_TRUE(
      crypto::ConstantTimeEquals(sig.substr(comma + 4), crypto::HmacSha256Hex(kSecret, t + "." + r.body)))
      << "signature does not verify";
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  EXPECT_NEAR(std::stoll(t), now, 120);
  Json body = Json::parse(r.body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << r.body;
  EXPECT_EQ(body["specversion"], "1.0");
  EXPECT_EQ(r.headers.at("x-takt-event-id"), body["id"]);
  EXPECT_EQ(r.headers.at("x-plant"), "P1");
}

class EventE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The server takes its delivery settings from the environment it starts in.
    ::setenv("TAKT_EVENT_MAX_ATTEMPTS", "3", 1);
    ::setenv("TAKT_EVENT_BASE_BACKOFF_MS", "600", 1);
    std::string error;
    const bool started = server_.Start(&error);
    ::unsetenv("TAKT_EVENT_MAX_ATTEMPTS");
    ::unsetenv("TAKT_EVENT_BASE_BACKOFF_MS");
    ASSERT_TRUE(started) << error;
    // After the server's fork: it must not inherit the receiver's listening socket (Asio does not set
    // close-on-exec), or connections to a stopped receiver would be accepted into a backlog nobody reads.
    ASSERT_TRUE(receiver_.Start(0));
    dana_ = server_.CreatePrincipal("dana", {"data-engineer"});
    sam_ = server_.CreatePrincipal("sam", {"data-scientist"});
    ada_ = server_.CreatePrincipal("ada", {"approver"});
    mia_ = server_.CreatePrincipal("mia", {"ml-engineer"});
    aud_ = server_.CreatePrincipal("aud", {"auditor"});
    for (const auto* t : {&dana_, &sam_, &ada_, &mia_, &aud_}) ASSERT_FALSE(t->empty());
    const std::string dir = server_.dir();
    CliResult sim = RunTakt({"sim", "weld", "--robots", "20", "--plants", "2", "--days", "10", "--seed", "7",
                             "-o", dir + "/telemetry.csv"});
    ASSERT_EQ(sim.exit_code, 0) << sim.err;
    CliResult ingest = server_.Cli(dana_, {"dataset", "ingest", "weld-telemetry", dir + "/telemetry.csv"});
    ASSERT_EQ(ingest.exit_code, 0) << ingest.err;
    ASSERT_EQ(
        server_.Cli(server_.admin_token(), {"project", "create", "weld-pm", "--member", "sam"}).exit_code, 0);
    CliResult grant = server_.Cli(dana_, {"grant", "create", "--to", "project:weld-pm", "--dataset",
                                          "weld-telemetry", "--mask", "robot_serial=hash"});
    ASSERT_EQ(grant.exit_code, 0) << grant.err;
  }

  // The deliveries of rule weld-hook, as `takt event deliveries -o json` lists them.
  Json Deliveries(const std::string& status = "") {
    std::vector<std::string> args = {"event", "deliveries", "--rule", "weld-hook", "-o", "json"};
    if (!status.empty()) args.insert(args.end(), {"--status", status});
    CliResult r = server_.Cli(mia_, args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return ParseOut(r);
  }

  // Polls until `pred` holds for the deliveries with `status`, up to `limit`.
  Json WaitForDelivery(const std::string& status, const std::function<bool(const Json&)>& pred,
                       std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      for (const auto& d : Deliveries(status))
        if (pred(d)) return d;
      std::this_thread::sleep_for(std::chrono::milliseconds(40));
    }
    return Json();
  }

  Receiver receiver_;
  TaktServer server_;
  std::string dana_, sam_, ada_, mia_, aud_;
};

TEST_F(EventE2eTest, AWebhookRuleDeliversSignedEventsRetriesGoesDeadAndIsReplayed) {
  const std::string dir = server_.dir();
  WriteFile(dir + "/pattern.json",
            R"({"type": ["io.takt.model.version.registered", "io.takt.model.version.approved"],
                "data": {"group": ["weld-pm"]}})");
  const Json config = {{"url", receiver_.url()}, {"secret", kSecret}, {"headers", {{"X-Plant", "P1"}}}};
  WriteFile(dir + "/config.json", config.dump());

  // Refused, with what is wrong: https, an unknown target, a bad pattern, a short secret, no persona.
  Json https = config;
  https["url"] = "https://127.0.0.1:" + std::to_string(receiver_.port()) + "/hooks/takt";
  CliResult bad_url =
      server_.Cli(mia_, {"event", "rule", "put", "weld-hook", "--pattern", dir + "/pattern.json", "--target",
                         "webhook", "--config", https.dump()});
  EXPECT_EQ(bad_url.exit_code, 2) << bad_url.err;
  EXPECT_NE(bad_url.err.find("config.url: https is not supported yet"), std::string::npos) << bad_url.err;
  CliResult bad_target = server_.Cli(
      mia_, {"event", "rule", "put", "weld-hook", "--pattern", dir + "/pattern.json", "--target", "webhok"});
  EXPECT_EQ(bad_target.exit_code, 2);
  EXPECT_NE(bad_target.err.find("unknown target kind 'webhok' (known: "), std::string::npos)
      << bad_target.err;
  EXPECT_NE(bad_target.err.find("webhook"), std::string::npos) << bad_target.err;
  CliResult bad_pattern = server_.Cli(mia_, {"event", "rule", "put", "weld-hook", "--pattern",
                                             R"({"data": {"metrics": {"auc": [{"numeric": [">>", 0.9]}]}}})",
                                             "--target", "webhook", "--config", dir + "/config.json"});
  EXPECT_EQ(bad_pattern.exit_code, 2);
  EXPECT_NE(bad_pattern.err.find("pattern.data.metrics.auc[0]"), std::string::npos) << bad_pattern.err;
  Json short_secret = config;
  short_secret["secret"] = "tooshort";
  CliResult bad_secret =
      server_.Cli(mia_, {"event", "rule", "put", "weld-hook", "--pattern", dir + "/pattern.json", "--target",
                         "webhook", "--config", short_secret.dump()});
  EXPECT_EQ(bad_secret.exit_code, 2);
  EXPECT_NE(bad_secret.err.find("config.secret is 8 characters long"), std::string::npos) << bad_secret.err;
  EXPECT_EQ(bad_secret.err.find("tooshort"), std::string::npos) << "the secret is never echoed";
  CliResult not_allowed =
      server_.Cli(aud_, {"event", "rule", "put", "weld-hook", "--pattern", dir + "/pattern.json", "--target",
                         "webhook", "--config", dir + "/config.json"});
  EXPECT_EQ(not_allowed.exit_code, 3) << not_allowed.err;
  CliResult none = server_.Cli(aud_, {"event", "rule", "list", "-o", "json"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(ParseOut(none).size(), 1u) << "only the seeded rule: nothing was written";

  // The rule, by the ML engineer; the secret comes back only as "set".
  CliResult put = server_.Cli(mia_, {"event", "rule", "put", "weld-hook", "--pattern", dir + "/pattern.json",
                                     "--target", "webhook", "--config", dir + "/config.json", "--description",
                                     "weld-pm model versions to the plant's maintenance system"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  EXPECT_NE(put.out.find("Rule weld-hook"), std::string::npos) << put.out;
  CliResult rules = server_.Cli(aud_, {"event", "rule", "list", "-o", "json"});
  ASSERT_EQ(rules.exit_code, 0) << rules.err;
  EXPECT_EQ(rules.out.find(kSecret), std::string::npos);
  bool listed = false;
  for (const auto& r : ParseOut(rules)) {
    if (r["name"] != "weld-hook") continue;
    listed = true;
    EXPECT_EQ(r["target"], "webhook");
    EXPECT_EQ(r["config"]["secret"], "set");
    EXPECT_EQ(r["config"]["url"], receiver_.url());
    EXPECT_EQ(r["created_by"], "mia");
  }
  EXPECT_TRUE(listed) << rules.out;
  CliResult table = server_.Cli(mia_, {"event", "rule", "list"});
  EXPECT_NE(table.out.find("weld-hook"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("release-on-decision"), std::string::npos) << table.out;

  CliResult test_yes =
      server_.Cli(mia_, {"event", "rule", "test", "--pattern", dir + "/pattern.json", "--event",
                         R"({"type": "io.takt.model.version.approved", "data": {"group": "weld-pm"}})"});
  ASSERT_EQ(test_yes.exit_code, 0) << test_yes.err;
  EXPECT_TRUE(test_yes.out.starts_with("matches")) << test_yes.out;
  CliResult test_no =
      server_.Cli(mia_, {"event", "rule", "test", "--pattern", dir + "/pattern.json", "--event",
                         R"({"type": "io.takt.model.version.approved", "data": {"group": "paint"}})"});
  ASSERT_EQ(test_no.exit_code, 0) << test_no.err;
  EXPECT_TRUE(test_no.out.starts_with("does not match")) << test_no.out;

  // A run registers weld-pm v1: the receiver gets the signed event.
  WriteFile(dir + "/quick.yaml", kPipeline);
  CliResult run = server_.Cli(sam_, {"pipeline", "run", dir + "/quick.yaml", "-o", "json"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  ASSERT_TRUE(receiver_.WaitFor(1, std::chrono::seconds(30))) << "the registered event never arrived";
  Received registered = receiver_.received()[0];
  ExpectSigned(registered);
  Json reg = Json::parse(registered.body);
  EXPECT_EQ(reg["type"], "io.takt.model.version.registered");
  EXPECT_EQ(reg["subject"], "models/weld-pm/versions/1");
  EXPECT_EQ(reg["data"]["group"], "weld-pm");
  EXPECT_EQ(registered.headers.at("x-takt-delivery-attempt"), "1");
  Json delivered = WaitForDelivery(
      "delivered", [&](const Json& d) { return d["event_id"] == reg["id"]; }, std::chrono::seconds(10));
  ASSERT_TRUE(delivered.is_object());
  EXPECT_EQ(delivered["attempts"], 1);

  // The receiver goes down; an approval is retried with backoff, then dead after 3 attempts.
  const uint16_t port = receiver_.port();
  receiver_.Stop();
  CliResult approve = server_.Cli(ada_, {"model", "approve", "weld-pm", "1", "--comment", "fine"});
  ASSERT_EQ(approve.exit_code, 0) << approve.err;
  CliResult approved_list =
      server_.Cli(mia_, {"event", "list", "--type", "io.takt.model.version.approved", "-o", "json"});
  ASSERT_EQ(approved_list.exit_code, 0) << approved_list.err;
  Json approved_events = ParseOut(approved_list);
  ASSERT_EQ(approved_events.size(), 1u) << approved_list.out;
  const std::string approved_id = approved_events[0]["id"];
  Json failed = WaitForDelivery(
      "failed", [&](const Json& d) { return d["event_id"] == approved_id; }, std::chrono::seconds(15));
  ASSERT_TRUE(failed.is_object()) << "no retry was recorded: " << Deliveries().dump();
  EXPECT_GE(failed["attempts"].get<int>(), 1);
  EXPECT_NE(failed["last_error"].get<std::string>().find("Connection refused"), std::string::npos) << failed;
  EXPECT_FALSE(failed["next_attempt_at"].get<std::string>().empty());
  Json dead = WaitForDelivery(
      "dead", [&](const Json& d) { return d["event_id"] == approved_id; }, std::chrono::seconds(20));
  ASSERT_TRUE(dead.is_object()) << "never dead: " << Deliveries().dump();
  EXPECT_EQ(dead["attempts"], 3) << "the server's --event-max-attempts (TAKT_EVENT_MAX_ATTEMPTS)";
  CliResult dead_table = server_.Cli(mia_, {"event", "deliveries", "--status", "dead"});
  EXPECT_NE(dead_table.out.find(approved_id), std::string::npos) << dead_table.out;
  EXPECT_NE(dead_table.err.find("takt event replay"), std::string::npos) << dead_table.err;
  CliResult show = server_.Cli(mia_, {"event", "show", approved_id, "-o", "json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  Json shown = ParseOut(show);
  EXPECT_EQ(shown["type"], "io.takt.model.version.approved");
  bool hook_dead = false;
  for (const auto& d : shown["deliveries"])
    hook_dead = hook_dead || (d["rule"] == "weld-hook" && d["status"] == "dead");
  EXPECT_TRUE(hook_dead) << shown.dump();

  // Back up on the same port: replay the dead delivery, delivered once more.
  ASSERT_TRUE(receiver_.Start(port));
  const size_t before = receiver_.received().size();
  CliResult denied = server_.Cli(aud_, {"event", "replay", approved_id, "--rule", "weld-hook"});
  EXPECT_EQ(denied.exit_code, 3) << denied.err;
  CliResult replay = server_.Cli(mia_, {"event", "replay", approved_id, "--rule", "weld-hook"});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  EXPECT_NE(replay.out.find("Replaying event " + approved_id + " to weld-hook"), std::string::npos)
      << replay.out;
  ASSERT_TRUE(receiver_.WaitFor(before + 1, std::chrono::seconds(15))) << "the replay never arrived";
  Received approved = receiver_.received()[before];
  ExpectSigned(approved);
  Json ap = Json::parse(approved.body);
  EXPECT_EQ(ap["id"], approved_id);
  EXPECT_EQ(ap["type"], "io.takt.model.version.approved");
  EXPECT_EQ(ap["data"]["decided_by"], "ada");
  EXPECT_EQ(approved.headers.at("x-takt-delivery-attempt"), "1") << "a replay counts its attempts afresh";
  Json redelivered = WaitForDelivery(
      "delivered", [&](const Json& d) { return d["event_id"] == approved_id; }, std::chrono::seconds(10));
  ASSERT_TRUE(redelivered.is_object()) << Deliveries().dump();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(receiver_.received().size(), before + 1) << "delivered once more, not twice";
  CliResult again = server_.Cli(mia_, {"event", "replay", approved_id});
  EXPECT_EQ(again.exit_code, 1) << "nothing dead left to replay: " << again.err;
  EXPECT_NE(again.err.find("no dead deliveries"), std::string::npos) << again.err;

  // Who changed rules and replayed, in the audit log.
  CliResult audit = server_.Cli(server_.admin_token(), {"audit", "list", "--action", "event:", "-o", "json"});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  int puts_by_mia = 0, replays_by_mia = 0, refused = 0;
  for (const auto& a : ParseOut(audit)) {
    if (a["action"] == "event:rule-manage" && a["principal"] == "mia" && a["allowed"] == true) ++puts_by_mia;
    if (a["action"] == "event:replay" && a["principal"] == "mia" && a["status"] == 200) ++replays_by_mia;
    if (a["allowed"] == false) ++refused;
  }
  EXPECT_GE(puts_by_mia, 5) << "the refused puts (400) and the one that worked";
  EXPECT_EQ(replays_by_mia, 1);
  EXPECT_EQ(refused, 2) << "the auditor's put and replay";
  EXPECT_EQ(audit.out.find(kSecret), std::string::npos);
}

}  // namespace
}  // namespace takt::testkit
