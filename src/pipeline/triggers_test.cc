#include "pipeline/triggers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "catalog/catalog.h"
#include "core/json.h"
#include "core/temp_dir.h"
#include "crypto/keyring.h"
#include "events/events.h"
#include "iam/iam.h"
#include "registry/registry.h"

namespace takt::pipeline {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A clock the test moves by hand, so schedules come due without waiting.
class SimulatedClock final : public Clock {
 public:
  explicit SimulatedClock(int64_t seconds) : millis_(seconds * 1000) {}
  int64_t NowMillis() const override { return millis_.load(); }
  void Set(int64_t seconds) { millis_ = seconds * 1000; }

 private:
  std::atomic<int64_t> millis_;
};

constexpr int64_t k0300 = 1772334000;  // 2026-03-01T03:00:00Z

// Typed parameters and one step that needs no data: a run of it can be
// submitted without a dataset (it fails when executed, which these tests do not do).
constexpr const char* kNightly = R"(name: nightly
project: weld-pm
description: retrains every night
parameters:
  rounds: {type: int, default: 5, min: 1, max: 100}
  drift: {type: number, default: 0.5}
  note: {type: string, default: none}
  fast: {type: bool, default: false}
steps:
  - name: report
    kind: fail
    message: "rounds ${params.rounds} drift ${params.drift} note ${params.note} fast ${params.fast}"
)";

class TriggerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    keyring_ = std::make_unique<crypto::Keyring>(crypto::Keyring::FromBytesForTest(std::string(32, 't')));
    auto db = store::OpenSqlite((dir_.path() / "takt.db").string());
    ASSERT_TRUE(db.has_value()) << db.error().ToString();
    db_ = std::move(*db);
    auto blobs = blob::BlobStore::Open(dir_.path() / "blobs", keyring_.get());
    ASSERT_TRUE(blobs.has_value()) << blobs.error().ToString();
    blobs_ = std::move(*blobs);
    iam_ = std::make_unique<iam::IamService>(db_.get());
    ASSERT_TRUE(iam_->Migrate());
    for (const char* who : {"sam", "eve"})
      ASSERT_TRUE(iam_->CreatePrincipal(who, "user", {"data-scientist"}, {}));
    ASSERT_TRUE(iam_->CreateProject("weld-pm", "", {"sam"}, "admin"));
    catalog_ = std::make_unique<catalog::CatalogService>(db_.get(), blobs_.get(), keyring_.get(), iam_.get());
    ASSERT_TRUE(catalog_->Migrate());
    bus_ = std::make_unique<events::EventBus>(db_.get());
    ASSERT_TRUE(bus_->Migrate());
    registry_ = std::make_unique<registry::RegistryService>(db_.get());
    ASSERT_TRUE(registry_->Migrate());
    runs_ =
        std::make_unique<RunService>(db_.get(), blobs_.get(), catalog_.get(), registry_.get(), iam_.get());
    ASSERT_TRUE(runs_->Migrate());
    triggers_ = NewTriggers();
  }

  // A new service over the same database: what a restarted server builds.
  std::unique_ptr<TriggerService> NewTriggers() {
    auto t = std::make_unique<TriggerService>(db_.get(), blobs_.get(), runs_.get(), iam_.get(), &clock_);
    EXPECT_TRUE(t->Migrate());
    return t;
  }

  Result<SavedPipeline> Save(const std::string& yaml, const std::string& who = "sam",
                             std::map<std::string, std::string> files = {}) {
    SaveRequest req;
    req.yaml = yaml;
    req.principal = who;
    req.files = std::move(files);
    return triggers_->Save(req);
  }

  Result<PipelineSchedule> Schedule(const std::string& cron, Json params = Json::object(),
                                    const std::string& who = "sam", const std::string& pipeline = "nightly") {
    ScheduleRequest req;
    req.pipeline = pipeline;
    req.cron = cron;
    req.params = std::move(params);
    req.principal = who;
    return triggers_->SetSchedule(req);
  }

  int64_t Count(const std::string& sql) {
    auto rows = db_->Query(sql);
    EXPECT_TRUE(rows.has_value()) << rows.error().ToString();
    return rows && !rows->empty() ? rows->front().Int(0) : -1;
  }

  std::vector<pipeline::Run> AllRuns() {
    auto runs = runs_->List(100);
    EXPECT_TRUE(runs.has_value()) << runs.error().ToString();
    return runs ? *runs : std::vector<pipeline::Run>{};
  }

  size_t BlobFiles() {
    size_t n = 0;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(dir_.path() / "blobs", ec))
      n += e.is_regular_file();
    return n;
  }

  TempDir dir_;
  SimulatedClock clock_{k0300 - 30};
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<blob::BlobStore> blobs_;
  std::unique_ptr<iam::IamService> iam_;
  std::unique_ptr<catalog::CatalogService> catalog_;
  std::unique_ptr<events::EventBus> bus_;
  std::unique_ptr<registry::RegistryService> registry_;
  std::unique_ptr<RunService> runs_;
  std::unique_ptr<TriggerService> triggers_;
};

TEST_F(TriggerTest, SaveValidatesTheSpecAndTheSaverAndWritesNothingOnError) {
  // A bad line is named, and neither a row nor a blob is written.
  std::string bad = kNightly;
  bad.replace(bad.find("    kind: fail"), 14, "    kind: fail\n    colour: red");
  auto r = Save(bad, "sam", {{"script/train.py", "print('hi')\n"}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("line 12"));
  EXPECT_THAT(r.error().message(), HasSubstr("colour"));
  EXPECT_EQ(Count("SELECT COUNT(*) FROM saved_pipelines"), 0);
  EXPECT_EQ(BlobFiles(), 0u);

  // Not YAML at all.
  r = Save("name: [unclosed\n");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);

  // Only members of the project save its pipelines; the project must exist.
  r = Save(kNightly, "eve");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kPermissionDenied);
  std::string elsewhere = kNightly;
  elsewhere.replace(elsewhere.find("project: weld-pm"), 16, "project: paint-shop");
  r = Save(elsewhere);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM saved_pipelines"), 0);

  // Saved, then saved again: the version goes up, the owner stays.
  auto v1 = Save(kNightly);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  EXPECT_EQ(v1->name, "nightly");
  EXPECT_EQ(v1->project, "weld-pm");
  EXPECT_EQ(v1->version, 1);
  EXPECT_EQ(v1->owner, "sam");
  EXPECT_EQ(v1->description, "retrains every night");
  EXPECT_FALSE(v1->schedule.has_value());
  ASSERT_TRUE(iam_->AddMember("project", "weld-pm", "eve"));
  auto v2 = Save(kNightly, "eve");
  ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
  EXPECT_EQ(v2->version, 2);
  EXPECT_EQ(v2->owner, "sam");
  EXPECT_EQ(v2->updated_by, "eve");
  ASSERT_TRUE(iam_->RemoveMember("project", "weld-pm", "eve"));

  // Reading the YAML is for members.
  auto got = triggers_->Get("nightly", "sam");
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  EXPECT_EQ(got->yaml, kNightly);
  auto denied = triggers_->Get("nightly", "eve");
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error().code(), Code::kPermissionDenied);
  auto missing = triggers_->Get("daily", "sam");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  auto list = triggers_->List();
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_TRUE(list->front().yaml.empty()) << "the list carries no YAML";

  // Names are unique across projects.
  ASSERT_TRUE(iam_->CreateProject("paint-shop", "", {"sam"}, "admin"));
  auto clash = Save(elsewhere);
  ASSERT_FALSE(clash.has_value());
  EXPECT_EQ(clash.error().code(), Code::kConflict);
  EXPECT_THAT(clash.error().message(), HasSubstr("already saved in project weld-pm"));
}

TEST_F(TriggerTest, CodeFilesAreKeptAndShippedWithEveryStart) {
  const std::string yaml =
      "name: scripted\nproject: weld-pm\nsteps:\n"
      "  - name: train\n    kind: command\n    command: /usr/bin/python3 train.py\n    code: script\n";
  auto missing = Save(yaml);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(missing.error().message(), HasSubstr("code 'script' was not sent"));
  auto escape = Save(yaml, "sam", {{"script/train.py", "x"}, {"../etc/passwd", "x"}});
  ASSERT_FALSE(escape.has_value());
  EXPECT_EQ(escape.error().code(), Code::kInvalidArgument);

  auto saved = Save(yaml, "sam", {{"script/train.py", "print('training')\n"}});
  ASSERT_TRUE(saved.has_value()) << saved.error().ToString();
  EXPECT_EQ(saved->files, std::vector<std::string>{"script/train.py"});
  // RunService::Submit refuses a command step whose code was not sent: this
  // start succeeds only because the saved files go with it.
  auto run = triggers_->Start({.pipeline = "scripted", .principal = "sam"});
  ASSERT_TRUE(run.has_value()) << run.error().ToString();
  EXPECT_EQ(run->status, "queued");
  EXPECT_EQ(run->created_by, "sam");
  EXPECT_TRUE(run->trigger.empty());
}

TEST_F(TriggerTest, StartByNameChecksMembershipAndParameters) {
  ASSERT_TRUE(Save(kNightly).has_value());
  auto run = triggers_->Start({.pipeline = "nightly", .params = {{"rounds", "9"}}, .principal = "sam"});
  ASSERT_TRUE(run.has_value()) << run.error().ToString();
  EXPECT_EQ(Json::parse(run->params_json)["rounds"], 9);
  EXPECT_EQ(run->pipeline, "nightly");

  auto outsider = triggers_->Start({.pipeline = "nightly", .principal = "eve"});
  ASSERT_FALSE(outsider.has_value());
  EXPECT_EQ(outsider.error().code(), Code::kPermissionDenied);
  auto bad = triggers_->Start({.pipeline = "nightly", .params = {{"rounds", "lots"}}, .principal = "sam"});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad.error().message(), HasSubstr("saved pipeline nightly v1"));
  auto unknown = triggers_->Start({.pipeline = "weekly", .principal = "sam"});
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
  EXPECT_EQ(AllRuns().size(), 1u);
}

TEST_F(TriggerTest, BadCronAndBadParametersAreRejectedNamingTheField) {
  ASSERT_TRUE(Save(kNightly).has_value());
  auto r = Schedule("0 25 * * *");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("cron: hour"));
  r = Schedule("every night");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("cron"));
  r = Schedule("0 0 30 2 *");  // February 30th never comes
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("cron"));
  r = Schedule("0 3 * * *", {{"rounds", 1000}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("rounds"));
  r = Schedule("0 3 * * *", {{"epochs", 3}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("epochs"));
  r = Schedule("0 3 * * *", Json::object(), "eve");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kPermissionDenied);
  r = Schedule("0 3 * * *", Json::object(), "sam", "weekly");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM pipeline_schedules"), 0);

  auto off = triggers_->DeleteSchedule("nightly", "sam");
  ASSERT_FALSE(off.has_value());
  EXPECT_EQ(off.error().code(), Code::kNotFound);
}

TEST_F(TriggerTest, ADueScheduleStartsExactlyOneRunAsTheServiceIdentityEvenWhenTheTickIsProcessedTwice) {
  ASSERT_TRUE(Save(kNightly).has_value());
  auto s = Schedule("0 3 * * *", {{"rounds", "7"}});
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  EXPECT_EQ(s->next_run, k0300);
  EXPECT_EQ(Json::parse(s->params_json), (Json{{"rounds", 7}})) << "overrides are stored with their types";
  EXPECT_EQ(s->created_by, "sam");
  EXPECT_TRUE(s->last_status.empty());

  EXPECT_EQ(triggers_->RunDue(k0300 - 30), 0) << "not due yet";
  EXPECT_TRUE(AllRuns().empty());

  clock_.Set(k0300 + 10);
  EXPECT_EQ(triggers_->RunDue(k0300 + 10), 1);
  auto runs = AllRuns();
  ASSERT_EQ(runs.size(), 1u);
  const pipeline::Run run = runs.front();  // a copy: `runs` is reassigned below
  EXPECT_EQ(run.created_by, "svc.weld-pm") << "scheduled runs act as the project, not as who scheduled them";
  EXPECT_EQ(run.trigger, "schedule:nightly@2026-03-01T03:00:00Z");
  EXPECT_EQ(Json::parse(run.params_json)["rounds"], 7);
  auto saved = triggers_->Get("nightly", "sam");
  ASSERT_TRUE(saved.has_value());
  ASSERT_TRUE(saved->schedule.has_value());
  EXPECT_EQ(saved->schedule->last_status, "started");
  EXPECT_EQ(saved->schedule->last_run_id, run.id);
  EXPECT_EQ(saved->schedule->last_run_status, "queued");
  EXPECT_EQ(saved->schedule->last_tick, "2026-03-01T03:00:00Z");
  EXPECT_EQ(saved->schedule->next_run, k0300 + 86400);

  // The start is audited as the service identity, naming the tick.
  auto audit = iam_->ListAudit({.principal = "svc.weld-pm"});
  ASSERT_TRUE(audit.has_value());
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ(audit->front().action, "pipeline:run");
  EXPECT_EQ(audit->front().resource, "pipelines/nightly/runs");
  EXPECT_THAT(audit->front().detail, HasSubstr("tick 2026-03-01T03:00:00Z: run " + run.id));

  // The same minute again: nothing is due any more.
  EXPECT_EQ(triggers_->RunDue(k0300 + 20), 0);
  EXPECT_EQ(AllRuns().size(), 1u);

  // A restart that lost the record of the tick (killed between starting the
  // run and moving next_run): a new service over the same database processes
  // the same tick again, and the trigger key starts nothing new.
  ASSERT_TRUE(
      db_->Exec("UPDATE pipeline_schedules SET next_run = ?, last_run_id = '', last_status = ''", {k0300}));
  triggers_ = NewTriggers();
  EXPECT_EQ(triggers_->RunDue(k0300 + 40), 1);
  runs = AllRuns();
  ASSERT_EQ(runs.size(), 1u) << "the tick started a second run";
  saved = triggers_->Get("nightly", "sam");
  EXPECT_EQ(saved->schedule->last_run_id, run.id);
  EXPECT_EQ(saved->schedule->next_run, k0300 + 86400);

  // The next night is a new tick and a new run.
  clock_.Set(k0300 + 86400);
  EXPECT_EQ(triggers_->RunDue(k0300 + 86400), 1);
  EXPECT_EQ(AllRuns().size(), 2u);

  // Turned off: no more runs.
  ASSERT_TRUE(triggers_->DeleteSchedule("nightly", "sam"));
  EXPECT_EQ(triggers_->RunDue(k0300 + 3 * 86400), 0);
  EXPECT_EQ(AllRuns().size(), 2u);
}

TEST_F(TriggerTest, MissedTicksAreCaughtUpByOneRunAndPausedSchedulesWait) {
  ASSERT_TRUE(Save(kNightly).has_value());
  ASSERT_TRUE(Schedule("*/10 * * * *").has_value());
  // The server was down for two hours: twelve ticks missed, one run.
  const int64_t later = k0300 + 2 * 3600 + 5;
  clock_.Set(later);
  EXPECT_EQ(triggers_->RunDue(later), 1);
  auto runs = AllRuns();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs.front().trigger, "schedule:nightly@2026-03-01T03:00:00Z")
      << "keyed by the first missed tick";
  auto saved = triggers_->Get("nightly", "sam");
  EXPECT_EQ(saved->schedule->next_run, k0300 + 2 * 3600 + 600) << "the next tick after now";
  EXPECT_EQ(triggers_->RunDue(later + 1), 0);

  // Paused: due, but not started.
  ScheduleRequest pause{.pipeline = "nightly", .cron = "*/10 * * * *", .enabled = false, .principal = "sam"};
  ASSERT_TRUE(triggers_->SetSchedule(pause));
  EXPECT_EQ(triggers_->RunDue(later + 3600), 0);
  EXPECT_EQ(AllRuns().size(), 1u);
}

TEST_F(TriggerTest, AFailedStartIsRecordedAndTheScheduleKeepsGoing) {
  // Saving does not need the data to exist; starting does.
  const std::string yaml =
      "name: gone\nproject: weld-pm\nsteps:\n  - name: features\n    kind: features\n    dataset: "
      "weld-gone\n";
  ASSERT_TRUE(Save(yaml).has_value());
  ASSERT_TRUE(Schedule("0 3 * * *", Json::object(), "sam", "gone").has_value());
  clock_.Set(k0300 + 1);
  EXPECT_EQ(triggers_->RunDue(k0300 + 1), 1);
  EXPECT_TRUE(AllRuns().empty());
  auto saved = triggers_->Get("gone", "sam");
  ASSERT_TRUE(saved.has_value());
  ASSERT_TRUE(saved->schedule.has_value());
  EXPECT_EQ(saved->schedule->last_status, "error");
  EXPECT_THAT(saved->schedule->last_error, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(saved->schedule->last_error, HasSubstr("weld-gone"));
  EXPECT_TRUE(saved->schedule->last_run_id.empty());
  EXPECT_EQ(saved->schedule->next_run, k0300 + 86400) << "the next tick is still computed";
}

// An event as the monitoring issue will send it.
events::Event DriftEvent(store::Database& db, const std::string& data) {
  events::Event e;
  e.type = "io.takt.monitor.drift";
  e.source = "/monitors";
  e.subject = "endpoints/weld-pm-prod";
  e.data_json = data;
  auto appended = events::Append(db, e);
  EXPECT_TRUE(appended.has_value()) << appended.error().ToString();
  return appended ? *appended : e;
}

TEST_F(TriggerTest, TheRunTargetStartsOneRunPerEventAndRuleOnRedelivery) {
  ASSERT_TRUE(Save(kNightly).has_value());
  bus_->RegisterTarget("run", [this](const events::Event& e, const events::Rule& r) {
    return triggers_->StartForEvent(e, r);
  });
  events::Rule rule;
  rule.name = "retrain-on-drift";
  rule.event_type = "io.takt.monitor.drift";
  rule.target = "run";
  rule.target_config_json =
      Json{{"pipeline", "nightly"},
           {"params", {{"rounds", 3}, {"note", "static"}}},
           {"params_from", {{"drift", "data.drift.score"}, {"note", "data.model"}, {"fast", "data.urgent"}}}}
          .dump();
  ASSERT_TRUE(bus_->PutRule(rule));
  const events::Event e =
      DriftEvent(*db_, Json{{"drift", {{"score", 0.42}}}, {"model", "weld-pm@3"}, {"urgent", true}}.dump());
  ASSERT_TRUE(bus_->DeliverPending());

  auto runs = AllRuns();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs.front().created_by, "svc.weld-pm");
  EXPECT_EQ(runs.front().trigger, "event:" + e.id + "/retrain-on-drift");
  Json params = Json::parse(runs.front().params_json);
  EXPECT_EQ(params["rounds"], 3);
  EXPECT_DOUBLE_EQ(params["drift"].get<double>(), 0.42);
  EXPECT_EQ(params["note"], "weld-pm@3") << "params_from wins over params";
  EXPECT_EQ(params["fast"], true);

  // At-least-once: the same event delivered again (a crash before the
  // delivery was recorded) starts nothing new.
  ASSERT_TRUE(triggers_->StartForEvent(e, rule));
  ASSERT_TRUE(db_->Exec("DELETE FROM deliveries"));
  ASSERT_TRUE(db_->Exec("UPDATE outbox SET delivered_at = NULL"));
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(AllRuns().size(), 1u);

  // Another rule on the same event is another trigger.
  rule.name = "retrain-on-drift-too";
  ASSERT_TRUE(triggers_->StartForEvent(e, rule));
  EXPECT_EQ(AllRuns().size(), 2u);
}

TEST_F(TriggerTest, ParamsFromChecksFieldsAndTypes) {
  ASSERT_TRUE(Save(kNightly).has_value());
  auto start = [&](const Json& params_from, const Json& data) {
    events::Rule rule{.name = "r", .event_type = "io.takt.monitor.drift", .target = "run"};
    rule.target_config_json = Json{{"pipeline", "nightly"}, {"params_from", params_from}}.dump();
    events::Event e{.id = "ev-" + std::to_string(AllRuns().size()) + params_from.dump().substr(0, 8),
                    .type = "io.takt.monitor.drift",
                    .data_json = data.dump()};
    return triggers_->StartForEvent(e, rule);
  };
  auto expect_invalid = [](const Status& s, const std::string& text) {
    ASSERT_FALSE(s.has_value()) << text;
    EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
    EXPECT_THAT(s.error().message(), HasSubstr(text));
  };
  expect_invalid(start({{"drift", "data.score"}}, {{"score", "high"}}),
                 "is string \"high\" but parameter drift is a number");
  expect_invalid(start({{"rounds", "data.n"}}, {{"n", 2.5}}), "parameter rounds is an int");
  expect_invalid(start({{"fast", "data.urgent"}}, {{"urgent", "yes"}}), "parameter fast is a bool");
  expect_invalid(start({{"note", "data.model"}}, {{"model", 3}}), "parameter note is a string");
  expect_invalid(start({{"drift", "data.drift.score"}}, {{"drift", 0.3}}), "has no data.drift.score");
  expect_invalid(start({{"drift", "data.missing"}}, Json::object()), "has no data.missing");
  expect_invalid(start({{"epochs", "data.n"}}, {{"n", 3}}), "declares no parameter 'epochs'");
  expect_invalid(start({{"drift", "score"}}, {{"score", 0.3}}), "expected \"data.<field>\"");
  expect_invalid(start(Json::array(), Json::object()), "params_from must map");
  // Range checks still apply to a value of the right type.
  auto range = start({{"rounds", "data.n"}}, {{"n", 1000}});
  ASSERT_FALSE(range.has_value());
  EXPECT_EQ(range.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(range.error().message(), HasSubstr("outside the range"));
  // A rule without a pipeline, or naming one never saved.
  events::Event e{.id = "ev-x", .type = "t", .data_json = "{}"};
  expect_invalid(triggers_->StartForEvent(e, {.name = "r", .target_config_json = "{}"}),
                 "needs \"pipeline\"");
  auto unknown =
      triggers_->StartForEvent(e, {.name = "r", .target_config_json = R"({"pipeline": "weekly"})"});
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
  EXPECT_TRUE(AllRuns().empty());

  // And one that fits: an int event field for a number parameter is fine.
  ASSERT_TRUE(start({{"drift", "data.score"}, {"rounds", "data.n"}}, {{"score", 1}, {"n", 12}}));
  auto runs = AllRuns();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(Json::parse(runs.front().params_json)["rounds"], 12);
}

TEST_F(TriggerTest, TheSchedulerThreadStartsDueSchedulesOnItsOwn) {
  ASSERT_TRUE(Save(kNightly).has_value());
  ASSERT_TRUE(Schedule("0 3 * * *").has_value());
  clock_.Set(k0300 + 5);
  triggers_->StartScheduler(std::chrono::milliseconds(10));
  for (int i = 0; i < 500 && AllRuns().empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  triggers_->StopScheduler();
  auto runs = AllRuns();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs.front().created_by, "svc.weld-pm");
}

}  // namespace
}  // namespace takt::pipeline
