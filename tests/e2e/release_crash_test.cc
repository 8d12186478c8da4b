// kill -9 around the hand-off from an approval to its release, through the
// real server: each round imports a weld-pm version, approves it, kills the
// server after a random 0-40 ms, notes where the kill landed (from the outbox,
// read with sqlite3 while the server is down), restarts it and waits for the
// version's release. The approval's outbox row is written in the approval's
// own transaction, so an approval that was acknowledged is never lost; the
// release is keyed by the event id, so redelivery after the restart never
// starts a second one. TAKT_CRASH_ROUNDS sets the rounds (default 8; the
// stress figure in the notes uses 50). Kill points are printed, not asserted.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <thread>

#include "core/json.h"
#include "e2e/testkit.h"

namespace takt::testkit {
namespace {

Json ParseOut(const CliResult& r) {
  auto j = Json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out << r.err;
  return j;
}

std::string Sql(const std::string& db, const std::string& query) {
  std::string out;
  std::string cmd = "sqlite3 -readonly '" + db + "' \"" + query + "\" 2>/dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return "";
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  ::pclose(f);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

TEST(ReleaseCrashTest, KilledAroundTheApprovalEveryApprovalReleasesExactlyOnce) {
  int rounds = 8;
  if (const char* r = std::getenv("TAKT_CRASH_ROUNDS")) rounds = std::max(1, std::atoi(r));
  TaktServer server;
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  const std::string eve = server.CreatePrincipal("eve", {"ml-engineer"});
  const std::string ada = server.CreatePrincipal("ada", {"approver"});
  ASSERT_EQ(server.Cli(server.admin_token(), {"project", "create", "weld-pm", "--member", "eve"}).exit_code,
            0);
  const std::string dir = server.dir();
  WriteFile(dir + "/train.py",
            "import numpy as np, xgboost as xgb\n"
            "x = np.random.default_rng(2).random((200, 3))\n"
            "d = xgb.DMatrix(x, label=(x[:, 0] > 0.5).astype(int), "
            "feature_names=['motor_temp_c', 'weld_current_ka', 'cycle_time_s'])\n"
            "xgb.train({'objective': 'binary:logistic', 'max_depth': 2}, d, 5).save_model('" +
                dir + "/m.json')\n");
  ASSERT_EQ(std::system(("/usr/bin/python3 " + dir + "/train.py").c_str()), 0);
  WriteFile(dir + "/metrics.json", "{\"auc\": 0.9}");
  const std::string db = server.data_dir() + "/takt.db";

  std::mt19937 rng(12345);
  std::map<std::string, int> landed;
  for (int round = 1; round <= rounds; ++round) {
    CliResult reg = server.Cli(eve, {"model", "register", "--file", dir + "/m.json", "--group", "weld-pm",
                                     "--metrics", dir + "/metrics.json", "-o", "json"});
    ASSERT_EQ(reg.exit_code, 0) << reg.out << reg.err;
    const int version = ParseOut(reg).value("version", 0);
    ASSERT_EQ(version, round);
    // The approval and the kill race: the kill lands before the approval commits, between the commit
    // (outbox row written) and the delivery, or later.
    CliResult approve;
    std::thread approver([&] {
      approve = server.Cli(ada, {"model", "approve", "weld-pm", std::to_string(version)});
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(5, 70)(rng)));
    server.Kill();
    approver.join();
    const std::string v = std::to_string(version);
    const std::string event = Sql(db,
                                  "SELECT COALESCE(delivered_at, '') || '|' || id FROM outbox WHERE type = "
                                  "'io.takt.model.version.approved' AND subject = 'models/weld-pm/versions/" +
                                      v + "'");
    const std::string releases = Sql(db, "SELECT COUNT(*) FROM releases WHERE version = " + v);
    const std::string where = Sql(db, "SELECT stage || '/' || phase FROM releases WHERE version = " + v);
    bool committed = !event.empty();
    landed[!committed                    ? "before the approval committed (approval refused by the kill)"
           : releases == "0"             ? "after the outbox write, before the delivery"
           : event.front() == '|'        ? "delivery under way (release started, delivery not recorded)"
           : where.rfind("dev/", 0) == 0 ? "delivered, release inside dev"
                                         : "delivered, release past dev"]++;
    ASSERT_TRUE(server.Start(&error)) << "round " << round << ": " << error;
    if (!committed) {
      EXPECT_NE(approve.exit_code, 0) << "an approval the client saw succeed must be in the outbox";
      CliResult again = server.Cli(ada, {"model", "approve", "weld-pm", v});
      ASSERT_EQ(again.exit_code, 0) << again.err;
    }
    // The release of this version exists once it has been delivered.
    bool seen = false;
    for (int i = 0; i < 200 && !seen; ++i) {
      Json list = ParseOut(server.Cli(eve, {"release", "list", "weld-pm", "--limit", "500", "-o", "json"}));
      for (const auto& r : list) seen = seen || r.value("version", 0) == version;
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(seen) << "round " << round << ": the approval of v" << version << " started no release";
  }
  // Let the last release reach dev, then check the whole history.
  CliResult wait =
      server.Cli(eve, {"release", "wait", "weld-pm", "--version", std::to_string(rounds), "-o", "json"});
  ASSERT_EQ(wait.exit_code, 0) << wait.err;
  Json list = ParseOut(server.Cli(eve, {"release", "list", "weld-pm", "--limit", "500", "-o", "json"}));
  std::map<int, int> per_version;
  for (const auto& r : list) per_version[r.value("version", 0)]++;
  ASSERT_EQ(per_version.size(), static_cast<size_t>(rounds)) << list.dump();
  for (const auto& [v, n] : per_version) EXPECT_EQ(n, 1) << "v" << v << " was released " << n << " times";
  EXPECT_EQ(Sql(db, "SELECT COUNT(*) FROM outbox WHERE type = 'io.takt.model.version.approved'"),
            std::to_string(rounds));
  // Every approval event is delivered in the end: nothing lost.
  bool all_delivered = false;
  for (int i = 0; i < 100 && !all_delivered; ++i) {
    all_delivered = Sql(db,
                        "SELECT COUNT(*) FROM outbox WHERE type = 'io.takt.model.version.approved' AND "
                        "delivered_at IS NULL") == "0";
    if (!all_delivered) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(all_delivered);
  Json dev = ParseOut(server.Cli(eve, {"endpoint", "show", "weld-pm-dev", "-o", "json"}));
  EXPECT_EQ(dev.value("model_version", 0), rounds) << "dev serves the last approved version";
  std::cout << "[ kill -9 ] " << rounds << " rounds, duplicates 0, losses 0; kills landed:\n";
  for (const auto& [where, n] : landed) std::cout << "  " << n << "  " << where << "\n";
}

// The exact window of the issue: the approval's outbox row is written, the
// delivery has not happened (held by the fault-injection seam
// TAKT_FAULT_RELEASE_DELAY_MS), and the server is killed. After the restart
// the event is delivered and the release happens once; another crash and
// restart later do not start it again.
TEST(ReleaseCrashTest, KilledBetweenTheOutboxWriteAndTheDeliveryTheReleaseHappensOnce) {
  ::setenv("TAKT_FAULT_RELEASE_DELAY_MS", "60000", 1);
  TaktServer server;
  std::string error;
  bool started = server.Start(&error);
  ::unsetenv("TAKT_FAULT_RELEASE_DELAY_MS");
  ASSERT_TRUE(started) << error;
  const std::string eve = server.CreatePrincipal("eve", {"ml-engineer"});
  const std::string ada = server.CreatePrincipal("ada", {"approver"});
  ASSERT_EQ(server.Cli(server.admin_token(), {"project", "create", "weld-pm", "--member", "eve"}).exit_code,
            0);
  const std::string dir = server.dir();
  WriteFile(dir + "/train.py",
            "import numpy as np, xgboost as xgb\n"
            "x = np.random.default_rng(2).random((200, 3))\n"
            "d = xgb.DMatrix(x, label=(x[:, 0] > 0.5).astype(int))\n"
            "xgb.train({'objective': 'binary:logistic', 'max_depth': 2}, d, 5).save_model('" +
                dir + "/m.json')\n");
  ASSERT_EQ(std::system(("/usr/bin/python3 " + dir + "/train.py").c_str()), 0);
  WriteFile(dir + "/metrics.json", "{\"auc\": 0.9}");
  ASSERT_EQ(server
                .Cli(eve, {"model", "register", "--file", dir + "/m.json", "--group", "weld-pm", "--features",
                           "motor_temp_c,weld_current_ka,cycle_time_s", "--metrics", dir + "/metrics.json"})
                .exit_code,
            0);
  ASSERT_EQ(server.Cli(ada, {"model", "approve", "weld-pm", "1"}).exit_code, 0);
  const std::string db = server.data_dir() + "/takt.db";
  // Wait until the bus holds the delivery (its log line), then kill.
  for (int i = 0; i < 100; ++i) {
    if (ReadFileOrEmpty(server.dir() + "/server.log").find("holding event") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NE(ReadFileOrEmpty(server.dir() + "/server.log").find("holding event"), std::string::npos);
  server.Kill();
  EXPECT_EQ(Sql(db,
                "SELECT COUNT(*) FROM outbox WHERE type = 'io.takt.model.version.approved' AND delivered_at "
                "IS NULL"),
            "1")
      << "the approval is in the outbox, undelivered";
  EXPECT_EQ(Sql(db, "SELECT COUNT(*) FROM releases"), "0") << "no release has started";

  ASSERT_TRUE(server.Start(&error)) << error;
  CliResult wait = server.Cli(eve, {"release", "wait", "weld-pm", "--version", "1", "-o", "json"});
  ASSERT_EQ(wait.exit_code, 0) << wait.err;
  EXPECT_EQ(ParseOut(wait).value("status", ""), "WaitingForApproval") << wait.out;
  Json dev = ParseOut(server.Cli(eve, {"endpoint", "show", "weld-pm-dev", "-o", "json"}));
  EXPECT_EQ(dev.value("model_version", 0), 1);
  server.Kill();
  ASSERT_TRUE(server.Start(&error)) << error;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(Sql(db, "SELECT COUNT(*) FROM releases"), "1") << "one event, one release, whatever the crashes";
  EXPECT_EQ(Sql(db, "SELECT COUNT(*) FROM stage_history WHERE stage = 'dev'"), "1");
}

}  // namespace
}  // namespace takt::testkit
