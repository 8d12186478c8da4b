#include "pipeline/runs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "sandbox/sandbox.h"

#include <thread>

#include <stdlib.h>
#include "core/temp_dir.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/json.h"
#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "events/events.h"
#include "frame/table.h"
#include "iam/iam.h"
#include "ml/xgboost_model.h"
#include "slurm/slurm.h"
#include "slurm/testing_slurm.h"

namespace takt::pipeline {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

using ::takt::TempDir;

// Small welding-robot telemetry in the shape of `takt sim weld` (the pipeline
// test binary does not link takt_sim, so the test makes its own): hourly rows
// ordered by time then robot; before three of four failures the motor heats
// up and draws more current over two days; the label marks the 24 hours
// before a failure. Deterministic (splitmix64, no std:: distributions).
constexpr int kRobots = 20;
constexpr int kDays = 16;

class SplitMix {
 public:
  explicit SplitMix(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) / 9007199254740992.0; }
  double Noise() { return Uniform() + Uniform() + Uniform() - 1.5; }  // mean 0, sd 0.5
  int Between(int lo, int hi) { return lo + static_cast<int>(Next() % static_cast<uint64_t>(hi - lo + 1)); }

 private:
  uint64_t s_;
};

std::string WeldCsv() {
  const int hours = kDays * 24;
  struct Robot {
    std::string serial, plant;
    double current, temp, cycle;
    std::vector<int> failures;
    std::vector<bool> warned;
    SplitMix rng{0};
  };
  std::vector<Robot> robots;
  for (int i = 0; i < kRobots; ++i) {
    Robot r;
    r.rng = SplitMix(1000 + i);
    char serial[32];
    std::snprintf(serial, sizeof serial, "WG-%04d-%04X", i + 1, static_cast<unsigned>(r.rng.Next() & 0xFFFF));
    r.serial = serial;
    r.plant = "plant-" + std::to_string(i % 2 + 1);
    r.current = 18 + 4 * r.rng.Uniform();
    r.temp = 42 + 6 * r.rng.Uniform();
    r.cycle = 55 + 5 * r.rng.Uniform();
    for (int t = r.rng.Between(40, 120); t < hours + 24; t += r.rng.Between(70, 160)) {
      r.failures.push_back(t);
      r.warned.push_back(r.rng.Uniform() < 0.75);
    }
    robots.push_back(std::move(r));
  }
  std::string csv =
      "timestamp,plant,robot_serial,motor_current_a,motor_temp_c,cycle_time_s,tip_dress_count,fails_within_"
      "24h\n";
  const int64_t start = 1767225600;  // 2026-01-01T00:00:00Z
  char buf[256];
  for (int h = 0; h < hours; ++h) {
    for (auto& r : robots) {
      int label = 0;
      double drift = 0;
      for (size_t f = 0; f < r.failures.size(); ++f) {
        int ahead = r.failures[f] - h;
        if (ahead > 0 && ahead <= 24) label = 1;
        if (ahead > 0 && ahead <= 48 && r.warned[f]) drift = std::max(drift, 1.0 - ahead / 48.0);
      }
      double current = r.current + 3.0 * drift * drift + 0.6 * r.rng.Noise();
      double temp = r.temp + 9.0 * drift * drift + 1.2 * r.rng.Noise();
      double cycle = r.cycle + 2.0 * drift + 0.8 * r.rng.Noise();
      int tips = (h % 24) * 20 + r.rng.Between(0, 9);
      std::snprintf(buf, sizeof buf, "%s,%s,%s,%.3f,%.3f,%.3f,%d,%d\n",
                    frame::FormatTimestamp(start + int64_t{h} * 3600).c_str(), r.plant.c_str(),
                    r.serial.c_str(), current, temp, cycle, tips, label);
      csv += buf;
    }
  }
  return csv;
}

std::string Pipeline(const std::string& condition, const std::string& dataset = "weld-telemetry") {
  return "name: weld-pm\n"
         "project: weld-pm\n"
         "description: a small copy of examples/weld-pm for tests\n"
         "steps:\n"
         "  - name: features\n"
         "    kind: features\n"
         "    dataset: " +
         dataset +
         "\n"
         "    entity: robot_serial\n"
         "    time: timestamp\n"
         "    label: fails_within_24h\n"
         "    windows: [6, 24]\n"
         "    keep: [plant]\n"
         "  - name: train\n"
         "    kind: train\n"
         "    input: features\n"
         "    label: fails_within_24h\n"
         "    exclude: [tip_dress_count]\n"
         "    holdout: {time_column: timestamp, fraction: 0.25}\n"
         "    rounds: 30\n"
         "    params:\n"
         "      objective: binary:logistic\n"
         "      tree_method: hist\n"
         "      eval_metric: logloss\n"
         "      max_depth: 4\n"
         "      eta: 0.3\n"
         "      seed: 7\n"
         "      nthread: 1\n"
         "  - name: evaluate\n"
         "    kind: evaluate\n"
         "    model: train\n"
         "    threshold: 0.5\n"
         "  - name: quality-gate\n"
         "    kind: condition\n"
         "    metrics: evaluate\n"
         "    expression: " +
         condition +
         "\n"
         "  - name: register\n"
         "    kind: register\n"
         "    model: train\n"
         "    metrics: evaluate\n"
         "    model_group: weld-pm\n";
}

const std::vector<std::string> kStepNames = {"features", "train", "evaluate", "quality-gate", "register"};

// The step named `name`; a test failure (and an empty step) if there is none.
const StepRun& FindStep(const Run& run, const std::string& name) {
  for (const auto& s : run.steps)
    if (s.name == name) return s;
  ADD_FAILURE() << "run " << run.id << " has no step " << name;
  static const StepRun kMissing;
  return kMissing;
}

// The example's script-mode trainer in a pipeline: features, split, the script (with `train_extra`
// keys, e.g. an executor), evaluate, register.
SubmitRequest ScriptRequest(const char* source_dir, const std::string& train_extra, int rounds,
                            const std::string& memory) {
  std::ifstream in(std::string(source_dir) + "/examples/weld-pm/script/train.py");
  std::stringstream code;
  code << in.rdbuf();
  SubmitRequest req;
  req.principal = "sam";
  req.files = {{"script/train.py", code.str()}};
  req.yaml =
      "name: weld-script\nproject: weld-pm\nsteps:\n"
      "  - name: features\n    kind: features\n    dataset: weld-telemetry\n    label: fails_within_24h\n"
      "    windows: [6, 24]\n    keep: [plant]\n"
      "  - name: split\n    kind: split\n    input: features\n    fraction: 0.25\n"
      "  - name: train\n    kind: command\n" +
      train_extra +
      "    command: /usr/bin/python3 train.py\n    code: script\n"
      "    inputs: {train: split.train, validation: split.holdout}\n"
      "    hyperparameters: {num_round: " +
      std::to_string(rounds) + ", eta: 0.3}\n    timeout: 5m\n    resources: {cpus: 1, memory: " + memory +
      "}\n"
      "  - name: evaluate\n    kind: evaluate\n    model: train\n    data: split.holdout\n    label: "
      "fails_within_24h\n"
      "  - name: register\n    kind: register\n    model: train\n    metrics: evaluate\n    model_group: "
      "weld-script\n";
  return req;
}

class RunsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    keyring_ = std::make_unique<crypto::Keyring>(crypto::Keyring::FromBytesForTest(std::string(32, 'r')));
    auto db = store::OpenSqlite((dir_.path() / "takt.db").string());
    ASSERT_TRUE(db.has_value()) << db.error().ToString();
    db_ = std::move(*db);
    auto blobs = blob::BlobStore::Open(dir_.path() / "blobs", keyring_.get());
    ASSERT_TRUE(blobs.has_value()) << blobs.error().ToString();
    blobs_ = std::move(*blobs);
    iam_ = std::make_unique<iam::IamService>(db_.get());
    ASSERT_TRUE(iam_->Migrate());
    for (const char* who : {"dana", "sam", "eve"}) {
      ASSERT_TRUE(iam_->CreatePrincipal(who, "user", {"data-scientist"}, {}));
    }
    ASSERT_TRUE(iam_->CreateProject("weld-pm", "", {"sam"}, "admin"));
    catalog_ = std::make_unique<catalog::CatalogService>(db_.get(), blobs_.get(), keyring_.get(), iam_.get());
    ASSERT_TRUE(catalog_->Migrate());
    bus_ = std::make_unique<events::EventBus>(db_.get());  // the registry writes the outbox
    ASSERT_TRUE(bus_->Migrate());
    registry_ = std::make_unique<registry::RegistryService>(db_.get());
    ASSERT_TRUE(registry_->Migrate());
    runs_ =
        std::make_unique<RunService>(db_.get(), blobs_.get(), catalog_.get(), registry_.get(), iam_.get());
    ASSERT_TRUE(runs_->Migrate());
  }

  void IngestWeld() {
    auto v = catalog_->IngestCsv("weld-telemetry", WeldCsv(), "sim:weld", "dana");
    ASSERT_TRUE(v.has_value()) << v.error().ToString();
    ASSERT_EQ(v->rows, kRobots * kDays * 24);
    // The project reads it with the serials pseudonymised.
    catalog::Grant g;
    g.effect = "allow";
    g.subject = "project:weld-pm";
    g.dataset = "weld-telemetry";
    g.masks = {{"robot_serial", "hash"}};
    ASSERT_TRUE(catalog_->CreateGrant(g, "dana"));
  }

  int64_t Count(const std::string& sql) {
    auto rows = db_->Query(sql);
    EXPECT_TRUE(rows.has_value()) << rows.error().ToString();
    return rows && !rows->empty() ? rows->front().Int(0) : -1;
  }

  TempDir dir_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<blob::BlobStore> blobs_;
  std::unique_ptr<iam::IamService> iam_;
  std::unique_ptr<catalog::CatalogService> catalog_;
  std::unique_ptr<events::EventBus> bus_;
  std::unique_ptr<registry::RegistryService> registry_;
  std::unique_ptr<RunService> runs_;
};

TEST_F(RunsTest, RunTrainsAndRegistersAPendingVersionWithLineage) {
  IngestWeld();
  const std::string yaml = Pipeline("auc >= 0.6");
  auto submitted = runs_->Submit(yaml, "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  EXPECT_EQ(submitted->status, "queued");
  EXPECT_EQ(submitted->pipeline, "weld-pm");
  EXPECT_EQ(submitted->project, "weld-pm");
  EXPECT_EQ(submitted->created_by, "sam");
  EXPECT_EQ(submitted->spec_hash, crypto::Sha256Hex(yaml));
  ASSERT_EQ(submitted->steps.size(), kStepNames.size());
  for (size_t i = 0; i < kStepNames.size(); ++i) {
    EXPECT_EQ(submitted->steps[i].name, kStepNames[i]);
    EXPECT_EQ(submitted->steps[i].status, "queued");
  }

  ASSERT_TRUE(runs_->RunOnce());
  EXPECT_FALSE(runs_->RunOnce()) << "only one run was queued";

  auto run = runs_->Get(submitted->id);
  ASSERT_TRUE(run.has_value()) << run.error().ToString();
  ASSERT_EQ(run->status, "succeeded") << run->error;
  EXPECT_TRUE(run->error.empty());
  EXPECT_FALSE(run->started_at.empty());
  EXPECT_FALSE(run->finished_at.empty());
  ASSERT_EQ(run->steps.size(), kStepNames.size());
  for (const auto& s : run->steps) {
    EXPECT_EQ(s.status, "succeeded") << s.name << ": " << s.error;
    EXPECT_FALSE(s.finished_at.empty()) << s.name;
  }
  Json eval_metrics = Json::parse(FindStep(*run, "evaluate").metrics_json);
  ASSERT_TRUE(eval_metrics.contains("auc"));
  double auc = eval_metrics["auc"].get<double>();
  EXPECT_GE(auc, 0.6);
  EXPECT_LT(auc, 0.999) << "the test data must leave the model imperfect (see ConditionNotMet)";
  Json features_out = Json::parse(FindStep(*run, "features").outputs_json);
  EXPECT_EQ(features_out["dataset"], "weld-telemetry");
  EXPECT_EQ(features_out["dataset_version"], 1);
  EXPECT_FALSE(Json::parse(FindStep(*run, "train").outputs_json).contains("holdout_rows"));

  // The registered version: pending, with lineage and metrics.
  auto versions = registry_->ListVersions("weld-pm");
  ASSERT_TRUE(versions.has_value()) << versions.error().ToString();
  ASSERT_EQ(versions->size(), 1u);
  const registry::ModelVersion& v = versions->front();
  EXPECT_EQ(v.version, 1);
  EXPECT_EQ(v.status, registry::kPending);
  EXPECT_EQ(v.dataset, "weld-telemetry");
  EXPECT_EQ(v.dataset_version, 1);
  EXPECT_EQ(v.run_id, run->id);
  EXPECT_EQ(v.created_by, "sam");
  Json metrics = Json::parse(v.metrics_json);
  ASSERT_TRUE(metrics.contains("auc"));
  EXPECT_DOUBLE_EQ(metrics["auc"].get<double>(), auc);
  Json params = Json::parse(v.params_json);
  EXPECT_EQ(params["rounds"], 30);
  EXPECT_EQ(params["params"]["tree_method"], "hist");
  auto groups = registry_->ListGroups();
  ASSERT_EQ(groups->size(), 1u);
  EXPECT_EQ(groups->front().project, "weld-pm");

  // The features the model expects: no label, key, time, kept or excluded column.
  ASSERT_FALSE(v.feature_names.empty());
  std::set<std::string> names(v.feature_names.begin(), v.feature_names.end());
  for (const char* not_a_feature :
       {"fails_within_24h", "robot_serial", "timestamp", "plant", "tip_dress_count"}) {
    EXPECT_FALSE(names.contains(not_a_feature)) << not_a_feature;
  }
  EXPECT_TRUE(names.contains("motor_temp_c_mean_24"));
  auto model_bytes = blobs_->Get(v.blob_id);
  ASSERT_TRUE(model_bytes.has_value()) << model_bytes.error().ToString();
  auto model = ml::XgbModel::Load(*model_bytes);
  ASSERT_TRUE(model.has_value()) << model.error().ToString();
  EXPECT_EQ((*model)->num_features(), v.feature_names.size());

  // Registering wrote its event to the outbox.
  auto events = bus_->List(100);
  ASSERT_TRUE(events.has_value());
  int registered = 0;
  for (const auto& e : *events) registered += e.type == events::kModelVersionRegistered;
  EXPECT_EQ(registered, 1);

  // Every step logged something.
  auto logs = runs_->Logs(run->id, 0);
  ASSERT_TRUE(logs.has_value()) << logs.error().ToString();
  std::set<std::string> logged;
  int64_t last_seq = 0;
  for (const auto& l : *logs) {
    logged.insert(l.step);
    EXPECT_GT(l.seq, last_seq);
    last_seq = l.seq;
  }
  for (const auto& s : kStepNames) EXPECT_TRUE(logged.contains(s)) << "no log line for step " << s;
  auto later = runs_->Logs(run->id, last_seq);
  ASSERT_TRUE(later.has_value());
  EXPECT_TRUE(later->empty());

  // features/latest: one row per robot, the latest hour of each.
  auto latest = runs_->OutputTable(run->id, "features", "latest", "sam");
  ASSERT_TRUE(latest.has_value()) << latest.error().ToString();
  ASSERT_EQ(latest->num_rows(), static_cast<size_t>(kRobots));
  const frame::Column* serials = latest->Find("robot_serial");
  ASSERT_NE(serials, nullptr);
  EXPECT_EQ(std::set<std::string>(serials->strings.begin(), serials->strings.end()).size(),
            static_cast<size_t>(kRobots));
  const frame::Column* ts = latest->Find("timestamp");
  ASSERT_NE(ts, nullptr);
  for (size_t r = 0; r < latest->num_rows(); ++r) {
    EXPECT_EQ(ts->AsText(r), frame::FormatTimestamp(1767225600 + int64_t{kDays * 24 - 1} * 3600));
  }
  auto all = runs_->OutputTable(run->id, "features", "features", "sam");
  ASSERT_TRUE(all.has_value()) << all.error().ToString();
  EXPECT_EQ(all->num_rows(), static_cast<size_t>(kRobots * kDays * 24));

  auto no_output = runs_->OutputTable(run->id, "features", "nope", "sam");
  ASSERT_FALSE(no_output.has_value());
  EXPECT_EQ(no_output.error().code(), Code::kNotFound);
  EXPECT_THAT(no_output.error().message(), HasSubstr("'nope'"));
  EXPECT_EQ(runs_->OutputTable(run->id, "nope", "latest", "sam").error().code(), Code::kNotFound);
  EXPECT_EQ(runs_->OutputTable("run-000000000000", "features", "latest", "sam").error().code(),
            Code::kNotFound);
}

TEST_F(RunsTest, TheExamplePipelineRunsWithFewerRounds) {
  const char* root = std::getenv("TAKT_SOURCE_DIR");
  if (root == nullptr || *root == '\0') GTEST_SKIP() << "TAKT_SOURCE_DIR is not set (CTest sets it)";
  std::ifstream in(fs::path(root) / "examples/weld-pm/pipeline.yaml");
  ASSERT_TRUE(in.good()) << "cannot read examples/weld-pm/pipeline.yaml under " << root;
  std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The same pipeline, trained for fewer rounds so the test stays quick.
  auto rounds = yaml.find("rounds: 150");
  ASSERT_NE(rounds, std::string::npos) << "the example's rounds changed; update this test";
  yaml.replace(rounds, 11, "rounds: 30");
  auto seed = yaml.find("      seed: 7\n");
  ASSERT_NE(seed, std::string::npos) << "the example's params changed; update this test";
  yaml.insert(seed, "      nthread: 1\n");  // one thread: the machine running tests is shared

  IngestWeld();
  auto submitted = runs_->Submit(yaml, "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(runs_->RunOnce());
  auto run = runs_->Get(submitted->id);
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->status, "succeeded") << run->error;
  auto v = registry_->GetVersion("weld-pm", 1);
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  EXPECT_EQ(v->run_id, run->id);
}

TEST_F(RunsTest, ConditionNotMetFailsTheRunAndRegistersNothing) {
  IngestWeld();
  auto submitted = runs_->Submit(Pipeline("auc >= 0.999"), "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(runs_->RunOnce());

  auto run = runs_->Get(submitted->id);
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->status, "failed");
  EXPECT_THAT(run->error, HasSubstr("quality-gate"));
  EXPECT_THAT(run->error, HasSubstr("auc"));
  EXPECT_FALSE(run->finished_at.empty());

  for (const char* done : {"features", "train", "evaluate"})
    EXPECT_EQ(FindStep(*run, done).status, "succeeded");
  const StepRun& gate = FindStep(*run, "quality-gate");
  EXPECT_EQ(gate.status, "failed");
  EXPECT_THAT(gate.error, HasSubstr("auc"));
  EXPECT_THAT(gate.error, HasSubstr("not met"));
  const StepRun& reg = FindStep(*run, "register");
  EXPECT_EQ(reg.status, "skipped");
  EXPECT_TRUE(reg.started_at.empty());

  auto versions = registry_->ListVersions("weld-pm");
  ASSERT_FALSE(versions.has_value());
  EXPECT_EQ(versions.error().code(), Code::kNotFound);
  EXPECT_TRUE(registry_->ListGroups()->empty());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM model_versions"), 0);

  auto logs = runs_->Logs(run->id, 0);
  ASSERT_TRUE(logs.has_value());
  bool said_not_met = false;
  for (const auto& l : *logs)
    said_not_met = said_not_met || (l.step == "quality-gate" && l.line.find("NOT met") != std::string::npos);
  EXPECT_TRUE(said_not_met);
}

TEST_F(RunsTest, UnknownDatasetIsNotFoundAndNoRunIsRecorded) {
  auto r = runs_->Submit(Pipeline("auc >= 0.6", "no-such-data"), "sam");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_THAT(r.error().message(), HasSubstr("no-such-data"));
  EXPECT_THAT(r.error().message(), HasSubstr("line 5"));  // the features step
  EXPECT_EQ(Count("SELECT COUNT(*) FROM runs"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM run_steps"), 0);
  EXPECT_FALSE(runs_->RunOnce());

  IngestWeld();
  auto pinned = runs_->Submit(Pipeline("auc >= 0.6", "weld-telemetry@4"), "sam");
  ASSERT_FALSE(pinned.has_value());
  EXPECT_EQ(pinned.error().code(), Code::kNotFound);
  EXPECT_THAT(pinned.error().message(), HasSubstr("has no version 4 (latest is 1)"));
  EXPECT_EQ(Count("SELECT COUNT(*) FROM runs"), 0);

  auto bad_ref = runs_->Submit(Pipeline("auc >= 0.6", "weld-telemetry@0"), "sam");
  ASSERT_FALSE(bad_ref.has_value());
  EXPECT_EQ(bad_ref.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM runs"), 0);
}

TEST_F(RunsTest, InvalidSpecIsInvalidArgumentAndNoRunIsRecorded) {
  IngestWeld();
  const std::string not_yaml = "name: weld-pm\nsteps: [\n  - {name: features\n";
  auto r = runs_->Submit(not_yaml, "sam");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("line"));

  std::string unknown_key = Pipeline("auc >= 0.6");
  unknown_key.replace(unknown_key.find("    rounds: 30"), 14, "    roundz: 30");
  auto u = runs_->Submit(unknown_key, "sam");
  ASSERT_FALSE(u.has_value());
  EXPECT_EQ(u.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(u.error().message(), HasSubstr("unknown key 'roundz'"));
  EXPECT_THAT(u.error().message(), HasSubstr("line 19"));

  auto empty = runs_->Submit("", "sam");
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code(), Code::kInvalidArgument);

  EXPECT_EQ(Count("SELECT COUNT(*) FROM runs"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM run_steps"), 0);
  EXPECT_FALSE(runs_->RunOnce());
}

TEST_F(RunsTest, UnknownRunIsNotFound) {
  auto run = runs_->Get("run-000000000000");
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(run.error().code(), Code::kNotFound);
  EXPECT_EQ(run.error().message(), "run run-000000000000 does not exist");
  EXPECT_EQ(runs_->Logs("run-000000000000", 0).error().code(), Code::kNotFound);
  EXPECT_EQ(runs_->OutputTable("run-000000000000", "features", "latest", "sam").error().code(),
            Code::kNotFound);
  EXPECT_TRUE(runs_->List(10)->empty());
}

TEST_F(RunsTest, RecoverInterruptedResumesRunsAndFailsLostStepsByPolicy) {
  IngestWeld();
  auto interrupted = runs_->Submit(Pipeline("auc >= 0.6"), "sam");
  auto waiting = runs_->Submit(Pipeline("auc >= 0.6"), "sam");
  ASSERT_TRUE(interrupted.has_value() && waiting.has_value());
  // As if the server died while the run was in its train step (its first and only attempt).
  ASSERT_TRUE(
      db_->Exec("UPDATE runs SET status = 'running', started_at = 'then' WHERE id = ?", {interrupted->id}));
  ASSERT_TRUE(
      db_->Exec("UPDATE run_steps SET status = 'running', attempt = 1 WHERE run_id = ? AND name = 'train'",
                {interrupted->id}));
  ASSERT_TRUE(
      db_->Exec("UPDATE run_steps SET status = 'running', attempt = 1 WHERE run_id = ? AND name = 'features'",
                {interrupted->id}));

  auto s = runs_->RecoverInterrupted();
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  auto run = runs_->Get(interrupted->id);
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->status, "queued");                     // back in the queue, not stuck
  EXPECT_EQ(FindStep(*run, "train").status, "failed");  // attempts: 1, so the lost attempt was the last
  EXPECT_EQ(FindStep(*run, "train").failure, "lost");
  EXPECT_THAT(FindStep(*run, "train").error, HasSubstr("server stopped"));

  // Its driver settles it: what depends on the lost step is skipped.
  ASSERT_TRUE(runs_->RunOnce());
  run = runs_->Get(interrupted->id);
  EXPECT_EQ(run->status, "failed");
  EXPECT_THAT(run->error, HasSubstr("server stopped"));
  for (const char* later : {"evaluate", "quality-gate", "register"}) {
    EXPECT_EQ(FindStep(*run, later).status, "skipped") << later;
  }
  // A queued run is not touched: it still runs.
  auto other = runs_->Get(waiting->id);
  EXPECT_EQ(other->status, "queued");
  for (const auto& st : other->steps) EXPECT_EQ(st.status, "queued");
  ASSERT_TRUE(runs_->RecoverInterrupted());  // nothing left running: changes nothing
  EXPECT_EQ(runs_->Get(interrupted->id)->status, "failed");
}

TEST_F(RunsTest, ALostStepWithARetryPolicyRunsAgainAfterTheRestart) {
  IngestWeld();
  std::string yaml = Pipeline("auc >= 0.6");
  yaml.replace(yaml.find("    kind: train\n"), 16, "    kind: train\n    retry: {attempts: 2, on: [lost]}\n");
  auto interrupted = runs_->Submit(yaml, "sam");
  ASSERT_TRUE(interrupted.has_value()) << interrupted.error().ToString();
  ASSERT_TRUE(db_->Exec("UPDATE runs SET status = 'running' WHERE id = ?", {interrupted->id}));
  ASSERT_TRUE(
      db_->Exec("UPDATE run_steps SET status = 'running', attempt = 1 WHERE run_id = ? AND name = 'features'",
                {interrupted->id}));
  ASSERT_TRUE(runs_->RecoverInterrupted());
  ASSERT_TRUE(runs_->RunOnce());
  auto run = runs_->Get(interrupted->id);
  EXPECT_EQ(run->status, "failed");  // features had no retry for lost
  ASSERT_TRUE(db_->Exec("UPDATE runs SET status = 'running' WHERE id = ?", {interrupted->id}));
  ASSERT_TRUE(db_->Exec("UPDATE run_steps SET status = 'succeeded' WHERE run_id = ? AND name = 'features'",
                        {interrupted->id}));
  // The features outputs must exist for train to run: take them from a fresh run.
  auto fresh = runs_->Submit(Pipeline("auc >= 0.6"), "sam");
  ASSERT_TRUE(fresh.has_value());
  ASSERT_TRUE(runs_->RunOnce());  // the fresh run (the interrupted one is 'running', not queued)
  auto done = runs_->Get(fresh->id);
  ASSERT_EQ(done->status, "succeeded") << done->error;
  ASSERT_TRUE(db_->Exec("UPDATE run_steps SET outputs_json = ? WHERE run_id = ? AND name = 'features'",
                        {FindStep(*done, "features").outputs_json, interrupted->id}));
  ASSERT_TRUE(db_->Exec(
      "UPDATE run_steps SET status = 'running', attempt = 1, failure = '', error = '' WHERE run_id = "
      "? AND name = 'train'",
      {interrupted->id}));
  for (const char* later : {"evaluate", "quality-gate", "register"}) {
    ASSERT_TRUE(db_->Exec("UPDATE run_steps SET status = 'queued' WHERE run_id = ? AND name = ?",
                          {interrupted->id, later}));
  }
  ASSERT_TRUE(runs_->RecoverInterrupted());
  EXPECT_EQ(FindStep(*runs_->Get(interrupted->id), "train").status, "queued");
  ASSERT_TRUE(runs_->RunOnce());
  run = runs_->Get(interrupted->id);
  EXPECT_EQ(run->status, "succeeded") << run->error;
  EXPECT_EQ(FindStep(*run, "train").attempt, 2);
  auto logs = runs_->Logs(interrupted->id, 0);
  bool said = false;
  for (const auto& l : *logs) said |= l.line.find("the step runs again") != std::string::npos;
  EXPECT_TRUE(said);
}

TEST_F(RunsTest, WorkersRunQueuedRunsAndReportEachFinishedRun) {
  IngestWeld();
  std::promise<std::string> finished;
  auto done = finished.get_future();
  runs_->OnRunFinished([&finished](const std::string& id) { finished.set_value(id); });
  runs_->Start(1);
  auto submitted = runs_->Submit(Pipeline("auc >= 0.6"), "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  runs_->Stop();
  EXPECT_EQ(done.get(), submitted->id);
  EXPECT_EQ(runs_->Get(submitted->id)->status, "succeeded");

  auto list = runs_->List(10);
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().id, submitted->id);
  EXPECT_TRUE(list->front().steps.empty());
}

TEST_F(RunsTest, RetriesPerPolicyThenSkipsDependentsAndStopsTheRest) {
  const std::string yaml =
      "name: flaky\nproject: weld-pm\nsteps:\n"
      "  - name: boom\n    kind: fail\n    message: the plant database is down\n"
      "    retry: {attempts: 3, backoff: 10ms, on: [error]}\n"
      "  - name: after\n    kind: fail\n    depends_on: [boom]\n"
      "  - name: beside\n    kind: fail\n    message: never started\n    depends_on: [after]\n";
  auto submitted = runs_->Submit(yaml, "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(runs_->RunOnce());
  auto run = runs_->Get(submitted->id);
  EXPECT_EQ(run->status, "failed");
  EXPECT_THAT(run->error, HasSubstr("step boom: the plant database is down (after 3 attempts)"));
  EXPECT_EQ(FindStep(*run, "boom").attempt, 3);
  EXPECT_EQ(FindStep(*run, "boom").failure, "error");
  EXPECT_EQ(FindStep(*run, "after").status, "skipped");
  EXPECT_THAT(FindStep(*run, "after").error, HasSubstr("upstream step boom failed"));
  EXPECT_EQ(FindStep(*run, "beside").status, "skipped");
  int retries = 0;
  auto logs = runs_->Logs(run->id, 0);
  for (const auto& l : *logs) retries += l.line.find("retrying in") != std::string::npos;
  EXPECT_EQ(retries, 2);
}

TEST_F(RunsTest, OnFailureContinueRunsIndependentStepsAndStopCancelsThem) {
  IngestWeld();
  auto make = [](const std::string& policy) {
    return "name: branches\nproject: weld-pm\nsteps:\n"
           "  - name: boom\n    kind: fail\n    on_failure: " +
           policy +
           "\n"
           "  - name: features\n    kind: features\n    dataset: weld-telemetry\n    depends_on: [slow]\n"
           "  - name: slow\n    kind: features\n    dataset: weld-telemetry\n";
  };
  auto cont = runs_->Submit(make("continue"), "sam");
  ASSERT_TRUE(cont.has_value()) << cont.error().ToString();
  ASSERT_TRUE(runs_->RunOnce());
  auto run = runs_->Get(cont->id);
  EXPECT_EQ(run->status, "failed");
  EXPECT_EQ(FindStep(*run, "features").status, "succeeded");
  EXPECT_EQ(FindStep(*run, "slow").status, "succeeded");
}

TEST_F(RunsTest, IdenticalStepsHitTheCacheUnlessNoCacheAndParamsChangeTheKey) {
  IngestWeld();
  auto first = runs_->Submit(Pipeline("auc >= 0.6"), "sam");
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(runs_->RunOnce());
  ASSERT_EQ(runs_->Get(first->id)->status, "succeeded");
  auto second = runs_->Submit(Pipeline("auc >= 0.6"), "sam");
  ASSERT_TRUE(runs_->RunOnce());
  auto run = runs_->Get(second->id);
  ASSERT_EQ(run->status, "succeeded") << run->error;
  for (const char* cached : {"features", "train", "evaluate"}) {
    EXPECT_EQ(FindStep(*run, cached).cached_from, first->id + "/" + cached) << cached;
  }
  EXPECT_TRUE(FindStep(*run, "register").cached_from.empty());  // never cached: it has effects
  EXPECT_EQ(FindStep(*run, "features").outputs_json,
            FindStep(*runs_->Get(first->id), "features").outputs_json);

  SubmitRequest req;
  req.yaml = Pipeline("auc >= 0.6");
  req.principal = "sam";
  req.no_cache = true;
  auto third = runs_->Submit(req);
  ASSERT_TRUE(third.has_value());
  ASSERT_TRUE(runs_->RunOnce());
  EXPECT_TRUE(FindStep(*runs_->Get(third->id), "train").cached_from.empty());

  // A changed grant changes what features reads: no hit.
  catalog::Grant g;
  g.effect = "allow";
  g.subject = "project:weld-pm";
  g.dataset = "weld-telemetry";
  g.row_filter = "plant = 'P1'";
  ASSERT_TRUE(catalog_->CreateGrant(g, "dana"));
  auto fourth = runs_->Submit(Pipeline("auc >= 0.6"), "sam");
  ASSERT_TRUE(runs_->RunOnce());
  EXPECT_TRUE(FindStep(*runs_->Get(fourth->id), "features").cached_from.empty());
}

TEST_F(RunsTest, RerunFromAStepReusesWhatComesBeforeIt) {
  IngestWeld();
  auto first = runs_->Submit(Pipeline("auc >= 0.6"), "sam");
  ASSERT_TRUE(runs_->RunOnce());
  auto again = runs_->Rerun(first->id, "evaluate", "sam", true);
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_EQ(FindStep(*again, "features").status, "succeeded");
  EXPECT_EQ(FindStep(*again, "train").cached_from, first->id + "/train");
  EXPECT_EQ(FindStep(*again, "evaluate").status, "queued");
  ASSERT_TRUE(runs_->RunOnce());
  auto run = runs_->Get(again->id);
  EXPECT_EQ(run->status, "succeeded") << run->error;
  EXPECT_EQ(run->parent_run, first->id);
  EXPECT_EQ(runs_->Rerun(first->id, "nope", "sam", false).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(runs_->Rerun(first->id, "train", "eve", false).error().code(), Code::kPermissionDenied);
}

TEST_F(RunsTest, CurvesAndFinalMetricsAreRecordedAndSearchable) {
  IngestWeld();
  auto submitted = runs_->Submit(Pipeline("auc >= 0.6"), "sam");
  ASSERT_TRUE(runs_->RunOnce());
  auto curves = runs_->Metrics({submitted->id}, true);
  ASSERT_TRUE(curves.has_value()) << curves.error().ToString();
  int holdout_points = 0;
  for (const auto& m : *curves)
    holdout_points += m.step == "train" && m.name == "holdout_logloss" && m.round >= 0;
  EXPECT_EQ(holdout_points, 30);  // one per boosting round
  auto found = runs_->Search("auc", 0.6, std::nullopt, "", 10);
  ASSERT_TRUE(found.has_value()) << found.error().ToString();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(found->front().first.id, submitted->id);
  EXPECT_TRUE(runs_->Search("auc", 1.01, std::nullopt, "", 10)->empty());
}

TEST_F(RunsTest, CancelEndsAQueuedRunAndStopsARunningOne) {
  IngestWeld();
  auto queued = runs_->Submit(Pipeline("auc >= 0.6"), "sam");
  ASSERT_TRUE(runs_->Cancel(queued->id, "sam"));
  EXPECT_EQ(runs_->Get(queued->id)->status, "cancelled");
  EXPECT_EQ(runs_->Cancel(queued->id, "sam").error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(runs_->Cancel(queued->id, "eve").error().code(), Code::kPermissionDenied);
  EXPECT_FALSE(runs_->RunOnce());  // nothing left to run

  std::string yaml = Pipeline("auc >= 0.6");
  yaml.replace(yaml.find("rounds: 30"), 10, "rounds: 100000");
  auto long_run = runs_->Submit(yaml, "sam");
  ASSERT_TRUE(long_run.has_value()) << long_run.error().ToString();
  std::thread driver([&] { runs_->RunOnce(); });
  for (int i = 0; i < 600 && FindStep(*runs_->Get(long_run->id), "train").status != "running"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(runs_->Cancel(long_run->id, "sam"));
  driver.join();
  auto run = runs_->Get(long_run->id);
  EXPECT_EQ(run->status, "cancelled");
  EXPECT_EQ(FindStep(*run, "train").status, "cancelled");
  EXPECT_EQ(FindStep(*run, "register").status, "skipped");
}

TEST_F(RunsTest, ATimeoutStopsTrainingAndCountsAsATimeoutFailure) {
  IngestWeld();
  std::string yaml = Pipeline("auc >= 0.6");
  yaml.replace(yaml.find("rounds: 30"), 10, "rounds: 100000\n    timeout: 1s");
  auto submitted = runs_->Submit(yaml, "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(runs_->RunOnce());
  auto run = runs_->Get(submitted->id);
  EXPECT_EQ(run->status, "failed");
  EXPECT_EQ(FindStep(*run, "train").failure, "timeout");
  EXPECT_THAT(FindStep(*run, "train").error, HasSubstr("time limit"));
}

TEST_F(RunsTest, TuneRunsTrialsAsRunsAndPassesTheBestModelOn) {
  IngestWeld();
  const std::string yaml =
      "name: weld-tune\nproject: weld-pm\nsteps:\n"
      "  - name: features\n    kind: features\n    dataset: weld-telemetry\n    label: fails_within_24h\n"
      "    windows: [6, 24]\n    keep: [plant]\n"
      "  - name: split\n    kind: split\n    input: features\n    fraction: 0.25\n"
      "  - name: tune\n    kind: tune\n    input: split\n    label: fails_within_24h\n    rounds: 30\n"
      "    trials: 8\n    parallel: 2\n    sampler: tpe\n    exclude: [tip_dress_count]\n"
      "    params: {objective: 'binary:logistic', eval_metric: logloss, nthread: 1, seed: 7}\n"
      "    space:\n      eta: {type: loguniform, low: 0.02, high: 0.5}\n"
      "      max_depth: {type: int, low: 2, high: 6}\n"
      "    early_stopping: {grace_rounds: 5, min_trials: 2}\n"
      "  - name: evaluate\n    kind: evaluate\n    model: tune\n";
  auto submitted = runs_->Submit(yaml, "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(runs_->RunOnce());
  auto run = runs_->Get(submitted->id);
  ASSERT_EQ(run->status, "succeeded") << run->error;
  Json outputs = Json::parse(FindStep(*run, "tune").outputs_json);
  ASSERT_EQ(outputs["trial_runs"].size(), 8u);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM runs WHERE kind = 'trial' AND parent_run = '" + run->id + "'"), 8);
  Json metrics = Json::parse(FindStep(*run, "tune").metrics_json);
  EXPECT_EQ(metrics["trials"], 8);
  // The best trial's score is the best of the trials that finished.
  auto best = runs_->Get(outputs["best_trial"].get<std::string>());
  ASSERT_TRUE(best.has_value());
  EXPECT_EQ(best->kind, "trial");
  auto found = runs_->Search("holdout_logloss", std::nullopt, std::nullopt, "weld-tune/tune", 20);
  ASSERT_TRUE(found.has_value());
  EXPECT_GE(found->size(), 1u);
  EXPECT_GT(Json::parse(FindStep(*run, "evaluate").metrics_json)["auc"].get<double>(), 0.6);
}

TEST_F(RunsTest, AScriptModeTrainingScriptRunsInTheSandboxAndItsModelIsRegistered) {
  if (!sandbox::Available()) GTEST_FAIL() << sandbox::Available().error().ToString();
  const char* root = std::getenv("TAKT_SOURCE_DIR");
  if (root == nullptr || *root == '\0') GTEST_SKIP() << "TAKT_SOURCE_DIR is not set (CTest sets it)";
  IngestWeld();
  SubmitRequest req = ScriptRequest(root, "", 30, "4Gi");
  auto submitted = runs_->Submit(req);
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(runs_->RunOnce());
  auto run = runs_->Get(submitted->id);
  if (run->status != "succeeded") {
    auto logs = runs_->Logs(run->id, 0);
    for (const auto& l : *logs) std::cerr << "[" << l.step << "] " << l.line << "\n";
  }
  ASSERT_EQ(run->status, "succeeded") << run->error;
  Json metrics = Json::parse(FindStep(*run, "train").metrics_json);
  EXPECT_GT(metrics["validation_auc"].get<double>(), 0.6);
  EXPECT_GT(Json::parse(FindStep(*run, "evaluate").metrics_json)["auc"].get<double>(), 0.6);
  auto versions = registry_->ListVersions("weld-script");
  ASSERT_TRUE(versions.has_value()) << versions.error().ToString();
  ASSERT_EQ(versions->size(), 1u);
  EXPECT_FALSE(versions->front().feature_names.empty());
  auto curves = runs_->Metrics({run->id}, true);
  int points = 0;
  for (const auto& m : *curves) points += m.name == "validation_logloss_curve" && m.round >= 0;
  EXPECT_EQ(points, 30);

  // A script that writes no model fails with a clear reason.
  req.files = {{"script/train.py", "print('forgot to save')\n"}};
  auto none = runs_->Submit(req);
  ASSERT_TRUE(none.has_value());
  ASSERT_TRUE(runs_->RunOnce());
  run = runs_->Get(none->id);
  EXPECT_EQ(run->status, "failed");
  EXPECT_THAT(FindStep(*run, "train").error, HasSubstr("wrote no model"));
  // One that crashes names its exit and the end of its stderr.
  req.files = {
      {"script/train.py", "import sys\nsys.stderr.write('cannot open the welding log\\n')\nsys.exit(3)\n"}};
  auto crash = runs_->Submit(req);
  ASSERT_TRUE(runs_->RunOnce());
  run = runs_->Get(crash->id);
  EXPECT_THAT(FindStep(*run, "train").error, HasSubstr("exited with code 3"));
  EXPECT_THAT(FindStep(*run, "train").error, HasSubstr("cannot open the welding log"));
  // Network needs a permission the data scientist does not have.
  req.yaml.replace(req.yaml.find("    timeout: 5m"), 15, "    timeout: 5m\n    network: true");
  auto net = runs_->Submit(req);
  ASSERT_FALSE(net.has_value());
  EXPECT_EQ(net.error().code(), Code::kPermissionDenied);
}

TEST_F(RunsTest, CommandStepsThatMisbehaveFailCleanlyAndTheDagGoesOnPerPolicy) {
  if (!sandbox::Available()) GTEST_FAIL() << sandbox::Available().error().ToString();
  const std::string yaml =
      "name: misbehave\nproject: weld-pm\nsteps:\n"
      "  - name: fill\n    kind: command\n    on_failure: continue\n    resources: {disk: 1Mi}\n"
      "    command: [/bin/sh, -c, 'head -c 8000000 /dev/zero > $TAKT_OUTPUT_DIR/big.bin']\n"
      "  - name: after-fill\n    kind: command\n    depends_on: [fill]\n    command: [/bin/true]\n"
      "  - name: hang\n    kind: command\n    on_failure: continue\n    timeout: 1s\n"
      "    command: [/bin/sleep, '600']\n"
      "  - name: garbage\n    kind: command\n"
      "    command: [/bin/sh, -c, 'head -c 3000 /dev/urandom; echo; echo still-readable']\n"
      "  - name: crash\n    kind: command\n    on_failure: continue\n"
      "    command: [/bin/sh, -c, 'kill -SEGV $$']\n";
  auto submitted = runs_->Submit(yaml, "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(runs_->RunOnce());
  auto run = runs_->Get(submitted->id);
  EXPECT_EQ(run->status, "failed");
  EXPECT_EQ(FindStep(*run, "fill").failure, "disk");
  EXPECT_THAT(FindStep(*run, "fill").error, HasSubstr("disk quota"));
  EXPECT_EQ(FindStep(*run, "after-fill").status, "skipped");
  EXPECT_EQ(FindStep(*run, "hang").failure, "timeout");
  EXPECT_THAT(FindStep(*run, "hang").error, HasSubstr("time limit of 1 s"));
  EXPECT_EQ(FindStep(*run, "crash").failure, "crash");
  EXPECT_THAT(FindStep(*run, "crash").error, HasSubstr("SIGSEGV"));
  // Binary output is no failure: it is kept out of the log, which stays readable.
  EXPECT_EQ(FindStep(*run, "garbage").status, "succeeded");
  auto logs = runs_->Logs(run->id, 0);
  std::string text;
  for (const auto& l : *logs) text += l.line + "\n";
  EXPECT_THAT(text, HasSubstr("<binary output"));
  EXPECT_THAT(text, HasSubstr("still-readable"));
  EXPECT_THAT(text, HasSubstr("lines of binary output hidden"));
  for (unsigned char c : text) EXPECT_TRUE(c == '\n' || c == '\t' || c >= 0x20) << int(c);
}

// ---------------------------------------------------------------------------
// The Slurm executor, against a real single-node cluster started for the suite.

class SlurmRunsTest : public RunsTest {
 protected:
  static void SetUpTestSuite() {
    auto c = slurm::testing::Cluster::Start();
    if (c) {
      cluster_ = std::move(*c);
    } else {
      start_error_ = new std::string(c.error().ToString());
    }
  }
  static void TearDownTestSuite() { cluster_.reset(); }

  void SetUp() override {
    RunsTest::SetUp();
    if (!cluster_) GTEST_FAIL() << "the test Slurm cluster did not start: " << *start_error_;
    if (!sandbox::Available()) GTEST_FAIL() << sandbox::Available().error().ToString();
    slurm_runs_ = NewService();
  }

  std::unique_ptr<RunService> NewService() {
    RunServiceOptions o;
    o.step_slots = 2;
    o.work_root = (dir_.path() / "work").string();
    o.slurm_conf = cluster_->conf_path().string();
    o.slurm_partition = cluster_->options().partition;
    o.step_exec = {TAKT_BINARY, "internal", "sandbox-exec"};
    return std::make_unique<RunService>(db_.get(), blobs_.get(), catalog_.get(), registry_.get(), iam_.get(),
                                        o);
  }

  // Waits (up to 60 s) until `step` of `run_id` has a Slurm job, and returns it.
  std::string WaitForJob(const std::string& run_id, const std::string& step) {
    for (int i = 0; i < 600; ++i) {
      auto run = slurm_runs_->Get(run_id);
      if (run && !FindStep(*run, step).job_id.empty() && FindStep(*run, step).status == "running")
        return FindStep(*run, step).job_id;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "step " << step << " of " << run_id << " never got a Slurm job";
    return "";
  }

  std::string LogText(const std::string& run_id) {
    std::string text;
    auto logs = slurm_runs_->Logs(run_id, 0);
    if (logs)
      for (const auto& l : *logs) text += "[" + l.step + "] " + l.line + "\n";
    return text;
  }

  static std::unique_ptr<slurm::testing::Cluster> cluster_;
  static std::string* start_error_;
  std::unique_ptr<RunService> slurm_runs_;
};

std::unique_ptr<slurm::testing::Cluster> SlurmRunsTest::cluster_;
std::string* SlurmRunsTest::start_error_ = nullptr;

std::string SlurmStep(const std::string& command, const std::string& extra = "") {
  return "name: on-slurm\nproject: weld-pm\nsteps:\n"
         "  - name: prepare\n    kind: command\n    command: [/bin/sh, -c, 'echo ready > "
         "$TAKT_OUTPUT_DIR/ready.txt']\n    outputs: {}\n"
         "  - name: work\n    kind: command\n    executor: slurm\n    depends_on: [prepare]\n"
         "    command: [/bin/sh, -c, '" +
         command + "']\n" + extra;
}

TEST_F(SlurmRunsTest, AScriptModeTrainingScriptRunsAsASlurmJobAndItsModelIsRegistered) {
  const char* root = std::getenv("TAKT_SOURCE_DIR");
  if (root == nullptr || *root == '\0') GTEST_SKIP() << "TAKT_SOURCE_DIR is not set (CTest sets it)";
  IngestWeld();
  SubmitRequest req = ScriptRequest(root, "    executor: slurm\n", 20, "2Gi");
  auto submitted = slurm_runs_->Submit(req);
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(slurm_runs_->RunOnce());
  auto run = slurm_runs_->Get(submitted->id);
  ASSERT_EQ(run->status, "succeeded") << run->error << "\n" << LogText(run->id);
  const StepRun& train = FindStep(*run, "train");
  EXPECT_EQ(train.executor, "slurm");
  ASSERT_FALSE(train.job_id.empty());
  EXPECT_EQ(FindStep(*run, "features").executor, "local");
  // The job really ran in the cluster, and its output came back into the run's log.
  slurm::Client client(cluster_->options());
  auto st = client.Status(train.job_id);
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_EQ(st->state, slurm::State::kCompleted);
  const std::string logs = LogText(run->id);
  EXPECT_THAT(logs, HasSubstr("submitted to Slurm as job " + train.job_id + " (1 CPU, 2048 MiB, 6 min)"));
  EXPECT_THAT(logs, HasSubstr("model: xgboost-model"));
  EXPECT_GT(Json::parse(FindStep(*run, "evaluate").metrics_json)["auc"].get<double>(), 0.6);
  auto curves = slurm_runs_->Metrics({run->id}, true);
  int points = 0;
  for (const auto& m : *curves) points += m.name == "validation_logloss_curve" && m.round >= 0;
  EXPECT_EQ(points, 20);
  auto versions = registry_->ListVersions("weld-script");
  ASSERT_TRUE(versions.has_value());
  EXPECT_EQ(versions->size(), 1u);
}

TEST_F(SlurmRunsTest, AFailingJobNamesItsExitAndStderrAndTheSandboxHoldsOnTheNode) {
  // The step tries the network and the host's files from inside the job: the sandbox is the same.
  const fs::path secret = dir_.path() / "host-secret.txt";
  std::ofstream(secret) << "saw-the-host\n";
  auto submitted = slurm_runs_->Submit(
      SlurmStep("cat " + secret.string() + "; echo half-way; echo broken >&2; exit 4"), "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(slurm_runs_->RunOnce());
  auto run = slurm_runs_->Get(submitted->id);
  EXPECT_EQ(run->status, "failed");
  const StepRun& work = FindStep(*run, "work");
  EXPECT_EQ(work.failure, "error");
  EXPECT_THAT(work.error, HasSubstr("exited with code 4"));
  EXPECT_THAT(work.error, HasSubstr("broken"));
  const std::string logs = LogText(run->id);
  EXPECT_THAT(logs, HasSubstr("[work] half-way"));
  EXPECT_THAT(logs, Not(HasSubstr("saw-the-host")));
  EXPECT_THAT(logs, HasSubstr("No such file"));
}

TEST_F(SlurmRunsTest, CancellingTheRunCancelsItsJob) {
  auto submitted = slurm_runs_->Submit(SlurmStep("sleep 120"), "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  std::thread driver([&] { slurm_runs_->RunOnce(); });
  const std::string job = WaitForJob(submitted->id, "work");
  ASSERT_TRUE(slurm_runs_->Cancel(submitted->id, "sam"));
  driver.join();
  auto run = slurm_runs_->Get(submitted->id);
  EXPECT_EQ(run->status, "cancelled");
  EXPECT_EQ(FindStep(*run, "work").status, "cancelled");
  slurm::Client client(cluster_->options());
  auto st = client.Status(job);
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_TRUE(st->finished()) << slurm::StateName(st->state);
}

TEST_F(SlurmRunsTest, ATimeoutOnTheNodeIsATimeoutFailure) {
  auto submitted = slurm_runs_->Submit(SlurmStep("sleep 60", "    timeout: 2s\n"), "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(slurm_runs_->RunOnce());
  auto run = slurm_runs_->Get(submitted->id);
  EXPECT_EQ(run->status, "failed");
  EXPECT_EQ(FindStep(*run, "work").failure, "timeout");
  EXPECT_THAT(FindStep(*run, "work").error, HasSubstr("time limit"));
}

TEST_F(SlurmRunsTest, AServerRestartReattachesToTheRunningJob) {
  auto submitted =
      slurm_runs_->Submit(SlurmStep("echo before; sleep 4; echo after; echo done > $TAKT_OUTPUT_DIR/done.txt",
                                    "    retry: {attempts: 1}\n"),
                          "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  slurm_runs_->Start(1);
  const std::string job = WaitForJob(submitted->id, "work");
  slurm_runs_->Stop();  // the server stops; the job runs on
  slurm_runs_.reset();
  {
    slurm::Client client(cluster_->options());
    auto st = client.Status(job);
    ASSERT_TRUE(st.has_value());
    EXPECT_FALSE(st->finished()) << "stopping the server must not cancel the job: "
                                 << slurm::StateName(st->state);
  }
  slurm_runs_ = NewService();
  ASSERT_TRUE(slurm_runs_->RecoverInterrupted());
  ASSERT_TRUE(slurm_runs_->RunOnce());
  auto run = slurm_runs_->Get(submitted->id);
  ASSERT_EQ(run->status, "succeeded") << run->error << "\n" << LogText(run->id);
  const StepRun& work = FindStep(*run, "work");
  EXPECT_EQ(work.attempt, 1) << "the same attempt went on; nothing ran twice";
  EXPECT_EQ(work.job_id, job);
  const std::string logs = LogText(run->id);
  EXPECT_THAT(logs, HasSubstr("reattaching to its Slurm job " + job));
  EXPECT_THAT(logs, HasSubstr("[work] after"));
}

TEST_F(SlurmRunsTest, AJobThatFinishedWhileTheServerWasDownIsCollected) {
  auto submitted = slurm_runs_->Submit(
      SlurmStep("sleep 2; echo finished-alone; echo 0.93 > $TAKT_OUTPUT_DIR/score.txt", ""), "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  slurm_runs_->Start(1);
  const std::string job = WaitForJob(submitted->id, "work");
  slurm_runs_->Stop();
  slurm_runs_.reset();
  slurm::Client client(cluster_->options());
  for (int i = 0; i < 300; ++i) {
    auto st = client.Status(job);
    if (st && st->finished()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  slurm_runs_ = NewService();
  ASSERT_TRUE(slurm_runs_->RecoverInterrupted());
  ASSERT_TRUE(slurm_runs_->RunOnce());
  auto run = slurm_runs_->Get(submitted->id);
  ASSERT_EQ(run->status, "succeeded") << run->error << "\n" << LogText(run->id);
  EXPECT_EQ(FindStep(*run, "work").attempt, 1);
  EXPECT_THAT(LogText(run->id), HasSubstr("[work] finished-alone"));
}

TEST_F(SlurmRunsTest, AJobNoNodeCanHoldFailsWithSlurmsReason) {
  auto submitted = slurm_runs_->Submit(SlurmStep("true", "    resources: {memory: 64Ti}\n"), "sam");
  ASSERT_TRUE(submitted.has_value()) << submitted.error().ToString();
  ASSERT_TRUE(slurm_runs_->RunOnce());
  auto run = slurm_runs_->Get(submitted->id);
  EXPECT_EQ(run->status, "failed");
  EXPECT_THAT(FindStep(*run, "work").error, HasSubstr("submitting step work to Slurm"));
}

TEST_F(SlurmRunsTest, BuiltInStepsAndServersWithoutSlurmRefuseTheSlurmExecutor) {
  IngestWeld();
  std::string yaml = Pipeline("auc >= 0.6");
  yaml.replace(yaml.find("    kind: train\n"), 16, "    kind: train\n    executor: slurm\n");
  auto builtin = slurm_runs_->Submit(yaml, "sam");
  ASSERT_FALSE(builtin.has_value());
  EXPECT_EQ(builtin.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(builtin.error().message(), HasSubstr("executor slurm runs command steps"));
  auto no_slurm = runs_->Submit(SlurmStep("true"), "sam");
  ASSERT_FALSE(no_slurm.has_value());
  EXPECT_EQ(no_slurm.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM runs"), 0);
}

}  // namespace
}  // namespace takt::pipeline
