// Pipeline triggers through the real binary: save a pipeline, start it by
// name, schedule it (a bad cron refused), see the next run in the list, let
// the server's scheduler start it as the project's service identity, turn it
// off, and find every change in the audit log.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
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

constexpr const char* kPipeline = R"(# A small nightly retraining for the trigger test.
name: weld-nightly
project: weld-pm
description: retrain on the latest telemetry
parameters:
  rounds: {type: int, default: 20, min: 1, max: 500}
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
    rounds: ${params.rounds}
    params: {objective: "binary:logistic", tree_method: hist, max_depth: 3, seed: 7, nthread: 1}
  - name: evaluate
    kind: evaluate
    model: train
)";

class TriggerE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    dana_ = server_.CreatePrincipal("dana", {"data-engineer"});
    sam_ = server_.CreatePrincipal("sam", {"data-scientist"});
    eve_ = server_.CreatePrincipal("eve", {"data-scientist"});
    ASSERT_FALSE(dana_.empty());
    ASSERT_FALSE(sam_.empty());
    ASSERT_FALSE(eve_.empty());
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
    file_ = dir + "/nightly.yaml";
    WriteFile(file_, kPipeline);
  }

  // The saved pipeline as `takt pipeline list -o json` shows it.
  Json Listed(const std::string& name) {
    CliResult list = server_.Cli(sam_, {"pipeline", "list", "-o", "json"});
    EXPECT_EQ(list.exit_code, 0) << list.err;
    for (const auto& p : ParseOut(list))
      if (p.value("name", "") == name) return p;
    ADD_FAILURE() << name << " is not listed: " << list.out;
    return Json::object();
  }

  TaktServer server_;
  std::string dana_, sam_, eve_, file_;
};

TEST_F(TriggerE2eTest, SaveStartByNameScheduleAndLetTheSchedulerRunIt) {
  // Save: a bad spec is refused with its line; a non-member is refused.
  WriteFile(server_.dir() + "/bad.yaml", std::string(kPipeline) + "    colour: red\n");
  CliResult bad = server_.Cli(sam_, {"pipeline", "save", server_.dir() + "/bad.yaml"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("line 27"), std::string::npos) << bad.err;
  CliResult outsider = server_.Cli(eve_, {"pipeline", "save", file_});
  EXPECT_EQ(outsider.exit_code, 3) << outsider.err;
  CliResult saved = server_.Cli(sam_, {"pipeline", "save", file_, "-o", "json"});
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  Json s = ParseOut(saved);
  EXPECT_EQ(s["name"], "weld-nightly");
  EXPECT_EQ(s["project"], "weld-pm");
  EXPECT_EQ(s["version"], 1);
  CliResult again = server_.Cli(sam_, {"pipeline", "save", file_});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("Saved pipeline weld-nightly v2"), std::string::npos) << again.out;

  CliResult show = server_.Cli(sam_, {"pipeline", "show", "weld-nightly"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("schedule: none"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("kind: features"), std::string::npos) << show.out;
  EXPECT_EQ(server_.Cli(eve_, {"pipeline", "show", "weld-nightly"}).exit_code, 3);

  // Start it by name, with a parameter, and follow it to the end.
  CliResult run = server_.Cli(sam_, {"pipeline", "start", "weld-nightly", "-p", "rounds=10", "-o", "json"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  Json r = ParseOut(run);
  EXPECT_EQ(r["status"], "succeeded");
  EXPECT_EQ(r["pipeline"], "weld-nightly");
  EXPECT_EQ(r["created_by"], "sam");
  EXPECT_EQ(r["params"]["rounds"], 10);
  EXPECT_GT(r["steps"][2]["metrics"]["auc"].get<double>(), 0.5);
  EXPECT_EQ(server_.Cli(eve_, {"pipeline", "start", "weld-nightly"}).exit_code, 3);

  // Schedule it. A bad cron is a 400 naming the field.
  CliResult bad_cron = server_.Cli(sam_, {"pipeline", "schedule", "weld-nightly", "--cron", "0 25 * * *"});
  EXPECT_EQ(bad_cron.exit_code, 2) << bad_cron.err;
  EXPECT_NE(bad_cron.err.find("cron: hour"), std::string::npos) << bad_cron.err;
  CliResult sched =
      server_.Cli(sam_, {"pipeline", "schedule", "weld-nightly", "--cron", "0 3 * * *", "-p", "rounds=12"});
  ASSERT_EQ(sched.exit_code, 0) << sched.err;
  EXPECT_NE(sched.out.find("next run"), std::string::npos) << sched.out;
  Json listed = Listed("weld-nightly");
  ASSERT_TRUE(listed["schedule"].is_object()) << listed.dump();
  EXPECT_EQ(listed["schedule"]["cron"], "0 3 * * *");
  EXPECT_EQ(listed["schedule"]["params"]["rounds"], 12);
  const std::string next = listed["schedule"]["next_run"];
  EXPECT_NE(next.find("T03:00:00"), std::string::npos) << next;
  CliResult table = server_.Cli(sam_, {"pipeline", "list"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("NEXT RUN"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(next.substr(0, 19)), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("never run"), std::string::npos) << table.out;

  // Every minute: the server's own scheduler starts it, as svc.weld-pm.
  CliResult every = server_.Cli(sam_, {"pipeline", "schedule", "weld-nightly", "--cron", "* * * * *"});
  ASSERT_EQ(every.exit_code, 0) << every.err;
  Json scheduled;
  for (int i = 0; i < 100 && scheduled.is_null(); ++i) {
    CliResult runs = server_.Cli(sam_, {"run", "list", "-o", "json"});
    for (const auto& x : Json::parse(runs.out, nullptr, false)) {
      if (x.is_object() && x.value("created_by", "") == "svc.weld-pm") scheduled = x;
    }
    if (scheduled.is_null()) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  ASSERT_FALSE(scheduled.is_null()) << "no scheduled run within 100 s";
  EXPECT_EQ(scheduled["pipeline"], "weld-nightly");
  EXPECT_EQ(scheduled.value("trigger", "").rfind("schedule:weld-nightly@", 0), 0u) << scheduled.dump();
  // Off: the schedule is gone from the list.
  CliResult off = server_.Cli(sam_, {"pipeline", "schedule", "weld-nightly", "--off"});
  ASSERT_EQ(off.exit_code, 0) << off.err;
  listed = Listed("weld-nightly");
  EXPECT_TRUE(listed["schedule"].is_null()) << listed.dump();
  EXPECT_EQ(server_.Cli(sam_, {"pipeline", "schedule", "weld-nightly", "--off"}).exit_code, 4);

  // Every change is in the audit log, with who made it.
  CliResult audit =
      server_.Cli(server_.admin_token(), {"audit", "list", "--action", "pipeline:", "-o", "json"});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  int saves = 0, schedules = 0, starts = 0;
  for (const auto& a : ParseOut(audit)) {
    if (a.value("principal", "") != "sam" || !a.value("allowed", false)) continue;
    saves += a.value("action", "") == "pipeline:save" && a.value("status", 0) < 300;
    schedules += a.value("action", "") == "pipeline:schedule" && a.value("status", 0) < 300;
    starts += a.value("action", "") == "pipeline:run" && a.value("status", 0) < 300;
  }
  EXPECT_EQ(saves, 2);
  EXPECT_EQ(schedules, 3);  // 0 3 * * *, * * * * *, off
  EXPECT_EQ(starts, 1);
}

}  // namespace
}  // namespace takt::testkit
