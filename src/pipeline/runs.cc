#include "pipeline/runs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>

#include "core/json.h"
#include "core/posix.h"
#include "core/time.h"
#include "crypto/crypto.h"
#include "frame/codec.h"
#include "lineage/lineage.h"
#include "pipeline/spec.h"
#include "pipeline/steps.h"
#include "slurm/slurm.h"

namespace takt::pipeline {
namespace fs = std::filesystem;

namespace {

constexpr const char* kRunColumns =
    "id, pipeline, project, status, created_by, created_at, started_at, finished_at, error, spec_hash, "
    "params_json, git_commit, parent_run, kind, no_cache, trigger_key";
constexpr const char* kStepColumns =
    "name, kind, status, started_at, finished_at, error, outputs_json, metrics_json, attempt, failure, "
    "cached_from, executor, upstream_json, job_id";
// Bumped when a built-in step's behaviour changes, so old cache entries stop matching.
constexpr const char* kEngineVersion = "takt-steps-2";

Run RunFromRow(const store::Row& r) {
  Run run;
  run.id = r.Text(0);
  run.pipeline = r.Text(1);
  run.project = r.Text(2);
  run.status = r.Text(3);
  run.created_by = r.Text(4);
  run.created_at = r.Text(5);
  run.started_at = r.Text(6);
  run.finished_at = r.Text(7);
  run.error = r.Text(8);
  run.spec_hash = r.Text(9);
  run.params_json = r.Text(10);
  run.git_commit = r.Text(11);
  run.parent_run = r.Text(12);
  run.kind = r.Text(13);
  run.no_cache = r.Int(14) != 0;
  run.trigger = r.Text(15);
  return run;
}

StepRun StepFromRow(const store::Row& s) {
  StepRun st{s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4), s.Text(5), s.Text(6), s.Text(7)};
  st.attempt = static_cast<int>(s.Int(8));
  st.failure = s.Text(9);
  st.cached_from = s.Text(10);
  st.executor = s.Text(11);
  Json up = Json::parse(s.Text(12), nullptr, false);
  if (up.is_array()) st.upstream = up.get<std::vector<std::string>>();
  st.job_id = s.Text(13);
  return st;
}

bool Cacheable(const StepSpec& s) {
  return s.cache && s.kind != "register" && s.kind != "condition" && s.kind != "fail";
}

// The failure kind of an error a step returned without naming one.
std::string FailureOf(const StepEnv& env, const Error&) {
  return env.failure.empty() ? "error" : env.failure;
}

using Clock = std::chrono::steady_clock;

}  // namespace

// Shared by every run driver: the local executor's slots and the cancel flags.
struct RunService::Engine {
  std::mutex mu;
  std::condition_variable cv;
  int free_slots = 2;
  uint64_t generation = 0;  // bumped by every change a driver may wait for (guarded by mu)
  std::map<std::string, std::shared_ptr<std::atomic<bool>>> cancels;

  // A step ended, a slot came free, a run was cancelled: wake the drivers.
  void Signal() {
    {
      std::lock_guard lock(mu);
      ++generation;
    }
    cv.notify_all();
  }

  // Work folders of finished steps are removed here, off the steps' critical path.
  std::mutex janitor_mu;
  std::condition_variable janitor_cv;
  std::vector<std::string> to_remove;
  bool janitor_stop = false;
  std::thread janitor;

  void Discard(const std::string& dir) {
    {
      std::lock_guard lock(janitor_mu);
      if (!janitor.joinable()) janitor = std::thread([this] { Clean(); });
      to_remove.push_back(dir);
    }
    janitor_cv.notify_one();
  }
  void Clean() {
    std::unique_lock lock(janitor_mu);
    while (true) {
      janitor_cv.wait(lock, [this] { return janitor_stop || !to_remove.empty(); });
      std::vector<std::string> batch = std::move(to_remove);
      to_remove.clear();
      lock.unlock();
      for (const auto& d : batch) {
        std::error_code ec;
        fs::remove_all(d, ec);
      }
      lock.lock();
      if (janitor_stop && to_remove.empty()) return;
    }
  }
  ~Engine() {
    {
      std::lock_guard lock(janitor_mu);
      janitor_stop = true;
    }
    janitor_cv.notify_one();
    if (janitor.joinable()) janitor.join();
  }

  std::shared_ptr<std::atomic<bool>> CancelFlag(const std::string& run_id) {
    std::lock_guard lock(mu);
    auto& f = cancels[run_id];
    if (!f) f = std::make_shared<std::atomic<bool>>(false);
    return f;
  }
};

RunService::RunService(store::Database* db, blob::BlobStore* blobs, catalog::CatalogService* catalog,
                       registry::RegistryService* registry, iam::IamService* iam, RunServiceOptions options)
    : db_(db),
      blobs_(blobs),
      catalog_(catalog),
      registry_(registry),
      iam_(iam),
      options_(std::move(options)),
      engine_(std::make_unique<Engine>()) {
  engine_->free_slots = std::max(1, options_.step_slots);
  if (!options_.slurm_conf.empty()) {
    slurm_ = std::make_unique<slurm::Client>(
        slurm::Options{.slurm_conf = options_.slurm_conf, .partition = options_.slurm_partition});
  }
}

RunService::~RunService() { Stop(); }

Status RunService::Migrate() {
  TAKT_RETURN_IF_ERROR(lineage::Migrate(*db_));  // runs record lineage edges
  return store::Migrate(
      *db_, "pipeline",
      {{1, "runs-steps-logs",
        "CREATE TABLE runs (id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, project TEXT NOT NULL, status TEXT "
        "NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL, started_at TEXT NOT NULL, finished_at "
        "TEXT NOT NULL, error TEXT NOT NULL, spec_hash TEXT NOT NULL, spec TEXT NOT NULL);"
        "CREATE INDEX runs_status ON runs (status, created_at);"
        "CREATE TABLE run_steps (run_id TEXT NOT NULL REFERENCES runs(id), position INTEGER NOT NULL, name "
        "TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT "
        "NOT NULL, error TEXT NOT NULL, outputs_json TEXT NOT NULL, metrics_json TEXT NOT NULL, PRIMARY KEY "
        "(run_id, name));"
        "CREATE TABLE run_logs (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, time TEXT NOT NULL, step TEXT "
        "NOT NULL, line TEXT NOT NULL);"
        "CREATE INDEX run_logs_run ON run_logs (run_id, seq);"},
       {2, "dag-experiments-cache",
        "ALTER TABLE runs ADD COLUMN params_json TEXT NOT NULL DEFAULT '{}';"
        "ALTER TABLE runs ADD COLUMN git_commit TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE runs ADD COLUMN parent_run TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'pipeline';"
        "ALTER TABLE runs ADD COLUMN no_cache INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE runs ADD COLUMN files_blob TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE run_steps ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE run_steps ADD COLUMN failure TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE run_steps ADD COLUMN cached_from TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE run_steps ADD COLUMN cache_key TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE run_steps ADD COLUMN executor TEXT NOT NULL DEFAULT 'local';"
        "ALTER TABLE run_steps ADD COLUMN upstream_json TEXT NOT NULL DEFAULT '[]';"
        "CREATE TABLE run_metrics (run_id TEXT NOT NULL, step TEXT NOT NULL, name TEXT NOT NULL, round "
        "INTEGER "
        "NOT NULL, value DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, step, name, round));"
        "CREATE INDEX run_metrics_name ON run_metrics (name, round, value);"
        "CREATE TABLE step_cache (cache_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, step TEXT NOT NULL, "
        "outputs_json TEXT NOT NULL, metrics_json TEXT NOT NULL, created_at TEXT NOT NULL);"},
       {3, "triggers-slurm-jobs",
        // A trigger (schedule tick, event delivery) starts at most one run.
        "ALTER TABLE runs ADD COLUMN trigger_key TEXT NOT NULL DEFAULT '';"
        "CREATE UNIQUE INDEX runs_trigger ON runs (trigger_key) WHERE trigger_key <> '';"
        // The Slurm job of a step's current attempt, so a restarted server reattaches to it.
        "ALTER TABLE run_steps ADD COLUMN job_id TEXT NOT NULL DEFAULT '';"}});
}

Status RunService::CheckProjectAccess(const Run& run, const std::string& principal) const {
  TAKT_ASSIGN_OR_RETURN(bool member, iam_->IsProjectMember(run.project, principal));
  if (member) return Ok();
  TAKT_ASSIGN_OR_RETURN(iam::Principal p, iam_->Get(principal));
  if (iam::Authorize(p, "project:manage").allowed) return Ok();
  return PermissionDenied(principal + " is not a member of project " + run.project +
                          " (add them with `takt project add-member " + run.project + " " + principal + "`)");
}

Result<Run> RunService::Submit(std::string_view yaml, const std::string& principal) {
  SubmitRequest req;
  req.yaml = std::string(yaml);
  req.principal = principal;
  return Submit(req);
}

namespace {

// Every column a features step names must be in the dataset version and
// visible to the project.
Status CheckFeaturesStep(const StepSpec& step, const std::string& project, catalog::CatalogService& catalog) {
  const Json& config = step.config;
  auto ref = catalog::ParseDatasetRef(config["dataset"].get<std::string>());
  if (!ref) return std::unexpected(ref.error().WithContext("pipeline: line " + std::to_string(step.line)));
  const std::string reader = iam::ServicePrincipalName(project);
  std::string here = "pipeline: line " + std::to_string(step.line) + ": step '" + step.name + "'";
  auto v = catalog.GetVersion(ref->first, ref->second);
  if (!v) return std::unexpected(v.error().WithContext(here));
  auto plan = catalog.PlanAccess(reader, v->dataset, v->version);
  if (!plan)
    return std::unexpected(plan.error().WithContext(here + ": project " + project + " reads as " + reader));
  const frame::Schema visible = plan->OutputSchema();
  std::vector<std::string> named;
  for (const char* key : {"entity", "time", "label"}) {
    if (config.contains(key)) named.push_back(config[key].get<std::string>());
  }
  for (const char* key : {"columns", "keep"}) {
    if (config.contains(key)) {
      for (const auto& c : config[key]) named.push_back(c.get<std::string>());
    }
  }
  if (!config.contains("entity")) named.push_back("robot_serial");
  if (!config.contains("time")) named.push_back("timestamp");
  for (const auto& c : named) {
    if (v->schema.IndexOf(c) < 0) {
      return InvalidArgument(here + ": column '" + c + "' is not in dataset " + v->dataset + " v" +
                             std::to_string(v->version));
    }
    if (visible.IndexOf(c) < 0) {
      return PermissionDenied(here + ": column '" + c + "' of dataset " + v->dataset +
                              " is not granted to project " + project);
    }
  }
  return Ok();
}

// Steps that `from` depends on, directly or not (not including `from`).
std::set<std::string> Downstream(const PipelineSpec& spec, const std::string& from) {
  std::set<std::string> down = {from};
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& s : spec.steps) {
      if (down.contains(s.name)) continue;
      for (const auto& u : s.upstream()) {
        if (down.contains(u)) {
          down.insert(s.name);
          grew = true;
          break;
        }
      }
    }
  }
  return down;
}

}  // namespace

Result<Run> RunService::Submit(const SubmitRequest& request) {
  if (!request.trigger.empty()) {
    // Redelivery of a trigger that already started a run returns that run (to those who may see it).
    TAKT_ASSIGN_OR_RETURN(auto rows,
                          db_->Query("SELECT id FROM runs WHERE trigger_key = ?", {request.trigger}));
    if (!rows.empty()) {
      TAKT_ASSIGN_OR_RETURN(Run existing, Get(rows[0].Text(0)));
      TAKT_RETURN_IF_ERROR(CheckProjectAccess(existing, request.principal));
      return existing;
    }
  }
  TAKT_ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipeline(request.yaml, request.params));
  {
    auto project = iam_->GetProject(spec.project);
    if (!project && project.error().code() == Code::kNotFound) {
      return NotFound("pipeline " + spec.name + ": project " + spec.project +
                      " does not exist (an admin creates it with `takt project create " + spec.project +
                      "`)");
    }
    if (!project) return std::unexpected(project.error());
    Run probe;
    probe.project = spec.project;
    TAKT_RETURN_IF_ERROR(CheckProjectAccess(probe, request.principal));
  }
  // Datasets named by features steps must exist now, not fail later, and the
  // project must be allowed to read the columns the steps name.
  for (const auto& step : spec.steps) {
    if (step.kind == "features") TAKT_RETURN_IF_ERROR(CheckFeaturesStep(step, spec.project, *catalog_));
    if (step.network) {
      TAKT_ASSIGN_OR_RETURN(iam::Principal who, iam_->Get(request.principal));
      if (!iam::Authorize(who, "pipeline:network").allowed) {
        return PermissionDenied("pipeline: line " + std::to_string(step.line) + ": step '" + step.name +
                                "' asks for network access, which needs the pipeline:network action (held by "
                                "admins); steps run without network by default");
      }
    }
    if (step.executor == "slurm" && step.kind != "command") {
      return InvalidArgument("pipeline: line " + std::to_string(step.line) + ": step '" + step.name +
                             "': executor slurm runs command steps; a built-in " + step.kind +
                             " step runs on the server (train on the cluster with a command step "
                             "running your training script)");
    }
    if (step.executor == "slurm" && !slurm_) {
      return FailedPrecondition("pipeline: line " + std::to_string(step.line) + ": step '" + step.name +
                                "' asks for the slurm executor, but this server has none configured "
                                "(set slurm-conf / TAKT_SLURM_CONF)");
    }
    if (step.kind == "command" && step.config.contains("code")) {
      const std::string code = step.config["code"];
      bool found = false;
      for (const auto& [path, _] : request.files) {
        if (path == code || path.starts_with(code + (code.ends_with("/") ? "" : "/"))) found = true;
      }
      if (!found) {
        return InvalidArgument("pipeline: line " + std::to_string(step.line) + ": step '" + step.name +
                               "': code '" + code +
                               "' was not sent with the pipeline (`takt pipeline run` sends the files that "
                               "command steps name, relative to the pipeline file)");
      }
    }
  }
  if (slurm_ && std::ranges::any_of(spec.steps, [](const StepSpec& s) { return s.executor == "slurm"; })) {
    if (auto up = slurm_->Ping(); !up) {
      return Unavailable("pipeline " + spec.name + " has steps for the slurm executor, but the cluster " +
                         "cannot take jobs now: " + up.error().message());
    }
  }
  for (const auto& [path, _] : request.files) {
    if (path.empty() || path.starts_with("/") || path.find("..") != std::string::npos) {
      return InvalidArgument("code file '" + path +
                             "': paths must be relative and stay below the pipeline's folder");
    }
  }
  // A rerun copies the outputs of the steps the chosen one does not lead to.
  std::map<std::string, StepRun> reused;
  if (!request.rerun_of.empty()) {
    TAKT_ASSIGN_OR_RETURN(Run old, Get(request.rerun_of));
    TAKT_RETURN_IF_ERROR(CheckProjectAccess(old, request.principal));
    if (!spec.Step(request.from_step)) {
      return InvalidArgument("rerun: run " + old.id + " has no step '" + request.from_step + "'");
    }
    const std::set<std::string> again = Downstream(spec, request.from_step);
    for (const auto& s : old.steps) {
      if (!again.contains(s.name) && s.status == "succeeded" && spec.Step(s.name)) reused[s.name] = s;
    }
  }
  std::string files_blob;
  if (!request.files.empty()) {
    Json bundle = Json::object();
    for (const auto& [path, content] : request.files) {
      TAKT_ASSIGN_OR_RETURN(bundle[path], blobs_->Put(content));
    }
    TAKT_ASSIGN_OR_RETURN(files_blob, blobs_->Put(bundle.dump()));
  }
  Run run;
  run.id = NewId("run");
  run.pipeline = spec.name;
  run.project = spec.project;
  run.status = "queued";
  run.created_by = request.principal;
  run.created_at = NowIso();
  run.spec_hash = spec.hash;
  run.params_json = spec.params.dump();
  run.git_commit = request.git_commit;
  run.parent_run = request.rerun_of;
  run.no_cache = request.no_cache;
  run.trigger = request.trigger;
  Status written = db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(tx.Exec(
        "INSERT INTO runs (id, pipeline, project, status, created_by, created_at, started_at, finished_at, "
        "error, spec_hash, spec, params_json, git_commit, parent_run, kind, no_cache, files_blob, "
        "trigger_key) "
        "VALUES (?, ?, ?, ?, ?, ?, '', '', '', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {run.id, run.pipeline, run.project, run.status, run.created_by, run.created_at, run.spec_hash,
         spec.source, run.params_json, run.git_commit, run.parent_run, run.kind,
         int64_t{run.no_cache ? 1 : 0}, files_blob, run.trigger}));
    for (size_t i = 0; i < spec.steps.size(); ++i) {
      const auto& s = spec.steps[i];
      StepRun st{s.name, s.kind, "queued", "", "", "", "{}", "{}"};
      st.executor = s.executor;
      st.upstream = s.upstream();
      if (auto it = reused.find(s.name); it != reused.end()) {
        st.status = "succeeded";
        st.outputs_json = it->second.outputs_json;
        st.metrics_json = it->second.metrics_json;
        st.cached_from = request.rerun_of + "/" + s.name;
      }
      TAKT_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO run_steps (run_id, position, name, kind, status, started_at, finished_at, "
                  "error, outputs_json, "
                  "metrics_json, attempt, failure, cached_from, executor, upstream_json) VALUES (?, ?, ?, ?, "
                  "?, '', '', '', "
                  "?, ?, 0, '', ?, ?, ?)",
                  {run.id, static_cast<int64_t>(i), s.name, s.kind, st.status, st.outputs_json,
                   st.metrics_json, st.cached_from, st.executor, Json(st.upstream).dump()}));
      run.steps.push_back(st);
    }
    return Ok();
  });
  if (!written && written.error().code() == Code::kAlreadyExists && !run.trigger.empty()) {
    // Another delivery of the same trigger won the race: its run is the one.
    TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT id FROM runs WHERE trigger_key = ?", {run.trigger}));
    if (!rows.empty()) return Get(rows[0].Text(0));
  }
  TAKT_RETURN_IF_ERROR(written);
  {
    std::lock_guard lock(mu_);
    queued_ = true;
  }
  cv_.notify_one();
  return run;
}

Result<Run> RunService::Rerun(std::string_view id, const std::string& from_step, const std::string& principal,
                              bool no_cache) {
  TAKT_ASSIGN_OR_RETURN(auto row,
                        db_->QueryOne("SELECT spec, params_json, files_blob, git_commit, kind FROM runs "
                                      "WHERE id = ?",
                                      {std::string(id)}, "run " + std::string(id) + " does not exist"));
  if (row.Text(4) != "pipeline")
    return FailedPrecondition("run " + std::string(id) + " is a tuning trial; rerun its pipeline run");
  SubmitRequest req;
  req.yaml = row.Text(0);
  req.principal = principal;
  req.params = Json::parse(row.Text(1), nullptr, false);
  req.no_cache = no_cache;
  req.git_commit = row.Text(3);
  req.rerun_of = std::string(id);
  req.from_step = from_step;
  if (!row.Text(2).empty()) {
    TAKT_ASSIGN_OR_RETURN(std::string bundle_text, blobs_->Get(row.Text(2)));
    Json bundle = Json::parse(bundle_text, nullptr, false);
    for (const auto& [path, blob] : bundle.items()) {
      TAKT_ASSIGN_OR_RETURN(req.files[path], blobs_->Get(blob.get<std::string>()));
    }
  }
  return Submit(req);
}

Result<Run> RunService::Get(std::string_view id) const {
  TAKT_ASSIGN_OR_RETURN(auto row,
                        db_->QueryOne(std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?",
                                      {std::string(id)}, "run " + std::string(id) + " does not exist"));
  Run run = RunFromRow(row);
  TAKT_ASSIGN_OR_RETURN(auto steps, db_->Query(std::string("SELECT ") + kStepColumns +
                                                   " FROM run_steps WHERE run_id = ? ORDER BY position",
                                               {std::string(id)}));
  for (const auto& s : steps) run.steps.push_back(StepFromRow(s));
  return run;
}

Result<std::vector<Run>> RunService::List(int limit) const {
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(std::string("SELECT ") + kRunColumns +
                                                  " FROM runs ORDER BY created_at DESC, id LIMIT ?",
                                              {int64_t{std::clamp(limit, 1, 1000)}}));
  std::vector<Run> out;
  for (const auto& r : rows) out.push_back(RunFromRow(r));
  return out;
}

Result<std::vector<LogLine>> RunService::Logs(std::string_view id, int64_t after_seq) const {
  TAKT_RETURN_IF_ERROR(Get(id));
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT seq, time, step, line FROM run_logs WHERE run_id = ? AND seq > "
                                   "? ORDER BY seq LIMIT 10000",
                                   {std::string(id), after_seq}));
  std::vector<LogLine> out;
  for (const auto& r : rows) out.push_back({r.Int(0), r.Text(1), r.Text(2), r.Text(3)});
  return out;
}

Status RunService::Cancel(std::string_view id, const std::string& principal) {
  TAKT_ASSIGN_OR_RETURN(Run run, Get(id));
  TAKT_RETURN_IF_ERROR(CheckProjectAccess(run, principal));
  if (run.status != "queued" && run.status != "running") {
    return FailedPrecondition("run " + run.id + " already " + run.status);
  }
  const std::string now = NowIso();
  TAKT_ASSIGN_OR_RETURN(int64_t n,
                        db_->Exec("UPDATE runs SET status = 'cancelled', finished_at = ?, error = ? "
                                  "WHERE id = ? AND status = 'queued'",
                                  {now, "cancelled by " + principal, run.id}));
  if (n == 1) {
    IgnoreError(
        db_->Exec("UPDATE run_steps SET status = 'cancelled', failure = 'cancelled' WHERE run_id = ? AND "
                  "status = 'queued'",
                  {run.id}));
    Log(run.id, "", "cancelled by " + principal + " before it started");
    return Ok();
  }
  IgnoreError(db_->Exec("UPDATE runs SET cancel_requested = 1 WHERE id = ?", {run.id}));
  engine_->CancelFlag(run.id)->store(true);
  engine_->Signal();
  Log(run.id, "", "cancellation requested by " + principal);
  return Ok();
}

Result<frame::Table> RunService::OutputTable(std::string_view run_id, std::string_view step,
                                             std::string_view output, const std::string& principal) const {
  TAKT_ASSIGN_OR_RETURN(Run run, Get(run_id));
  TAKT_RETURN_IF_ERROR(CheckProjectAccess(run, principal));
  for (const auto& s : run.steps) {
    if (s.name != step) continue;
    Json outputs = Json::parse(s.outputs_json, nullptr, false);
    auto it = outputs.find(output);
    if (it == outputs.end() || !it->is_string() || !blob::BlobStore::IsValidId(it->get<std::string>())) {
      return NotFound("step " + std::string(step) + " of run " + std::string(run_id) +
                      " has no table output '" + std::string(output) + "'");
    }
    TAKT_ASSIGN_OR_RETURN(std::string bytes, blobs_->Get(it->get<std::string>()));
    return frame::DecodeTable(bytes);
  }
  return NotFound("run " + std::string(run_id) + " has no step " + std::string(step));
}

Result<std::vector<MetricPoint>> RunService::Metrics(const std::vector<std::string>& run_ids,
                                                     bool curves) const {
  std::vector<MetricPoint> out;
  for (const auto& id : run_ids) {
    TAKT_RETURN_IF_ERROR(Get(id));
    TAKT_ASSIGN_OR_RETURN(auto rows,
                          db_->Query(std::string("SELECT step, name, round, value FROM run_metrics WHERE "
                                                 "run_id = ?") +
                                         (curves ? "" : " AND round = -1") + " ORDER BY step, name, round",
                                     {id}));
    for (const auto& r : rows)
      out.push_back({id, r.Text(0), r.Text(1), static_cast<int>(r.Int(2)), r.Real(3)});
  }
  return out;
}

Result<std::vector<std::pair<Run, double>>> RunService::Search(const std::string& metric,
                                                               std::optional<double> min,
                                                               std::optional<double> max,
                                                               const std::string& pipeline, int limit) const {
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT m.run_id, MAX(m.value) FROM run_metrics m JOIN runs r ON r.id = "
                                   "m.run_id WHERE m.name = ? AND m.round = -1 AND (? = '' OR r.pipeline = "
                                   "?) GROUP BY m.run_id",
                                   {metric, pipeline, pipeline}));
  std::vector<std::pair<Run, double>> out;
  for (const auto& r : rows) {
    const double v = r.Real(1);
    if ((min && v < *min) || (max && v > *max)) continue;
    TAKT_ASSIGN_OR_RETURN(
        auto run_row,
        db_->QueryOne(std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?", {r.Text(0)}, "run"));
    out.emplace_back(RunFromRow(run_row), v);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (out.size() > static_cast<size_t>(std::max(1, limit)))
    out.resize(static_cast<size_t>(std::max(1, limit)));
  return out;
}

Status RunService::RecoverInterrupted() {
  // Tuning trials are re-proposed by their tune step when it runs again.
  TAKT_RETURN_IF_ERROR(
      db_->Exec("UPDATE runs SET status = 'failed', finished_at = ?, error = 'the server stopped "
                "during this trial' WHERE kind = 'trial' AND status = 'running'",
                {NowIso()}));
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT id, spec, params_json FROM runs WHERE status = 'running' AND "
                                   "kind = 'pipeline'"));
  for (const auto& r : rows) {
    const std::string id = r.Text(0);
    auto spec = ParsePipeline(r.Text(1), Json::parse(r.Text(2), nullptr, false));
    TAKT_ASSIGN_OR_RETURN(
        auto steps,
        db_->Query("SELECT name, attempt, executor, job_id FROM run_steps WHERE run_id = ? AND status IN "
                   "('running', 'retrying')",
                   {id}));
    TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
      const std::string now = NowIso();
      for (const auto& s : steps) {
        const std::string name = s.Text(0);
        const int attempt = static_cast<int>(s.Int(1));
        const StepSpec* st = spec ? spec->Step(name) : nullptr;
        if (s.Text(2) == "slurm" && !s.Text(3).empty()) {
          // Its job runs on in the cluster: the driver reattaches to it.
          TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO run_logs (run_id, time, step, line) VALUES (?, ?, ?, ?)",
                                       {id, now, name,
                                        "the server stopped during attempt " + std::to_string(attempt) +
                                            "; reattaching to its Slurm job " + s.Text(3)}));
          continue;
        }
        if (st != nullptr && st->retry.Retries("lost") && attempt < st->retry.attempts) {
          TAKT_RETURN_IF_ERROR(
              tx.Exec("UPDATE run_steps SET status = 'queued', failure = 'lost' WHERE run_id = ? AND "
                      "name = ?",
                      {id, name}));
          TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO run_logs (run_id, time, step, line) VALUES (?, ?, ?, ?)",
                                       {id, now, name,
                                        "the server stopped during attempt " + std::to_string(attempt) +
                                            "; the step runs again (retry policy: lost)"}));
        } else {
          TAKT_RETURN_IF_ERROR(
              tx.Exec("UPDATE run_steps SET status = 'failed', failure = 'lost', finished_at = ?, "
                      "error = 'the server stopped while this step ran' WHERE run_id = ? AND name = ?",
                      {now, id, name}));
        }
      }
      // The run goes back to the queue: its driver keeps what succeeded and
      // settles the rest (a failed step skips what depends on it).
      TAKT_RETURN_IF_ERROR(tx.Exec("UPDATE runs SET status = 'queued' WHERE id = ?", {id}));
      TAKT_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO run_logs (run_id, time, step, line) VALUES (?, ?, '', ?)",
                  {id, now, "the server restarted while this run was running; resuming it"}));
      return Ok();
    }));
    spdlog::info("run {}: resumed after a restart", id);
  }
  return SweepWorkFolders();
}

Status RunService::SweepWorkFolders() {
  // Scratch folders hold decrypted step inputs. After a crash, only the
  // folder of a Slurm job the driver reattaches to is still needed.
  if (options_.work_root.empty() || !fs::is_directory(options_.work_root)) return Ok();
  TAKT_ASSIGN_OR_RETURN(auto keep_rows,
                        db_->Query("SELECT run_id, name, attempt FROM run_steps WHERE status = 'running' AND "
                                   "executor = 'slurm' AND job_id <> ''"));
  std::set<fs::path> keep;
  for (const auto& r : keep_rows) {
    keep.insert(fs::path(options_.work_root) / r.Text(0) / (r.Text(1) + "-" + std::to_string(r.Int(2))));
  }
  std::error_code ec;
  int removed = 0;
  for (const auto& run_dir : fs::directory_iterator(options_.work_root, ec)) {
    if (!run_dir.is_directory()) continue;
    bool kept_any = false;
    for (const auto& step_dir : fs::directory_iterator(run_dir.path(), ec)) {
      if (keep.contains(step_dir.path())) {
        kept_any = true;
        continue;
      }
      fs::remove_all(step_dir.path(), ec);
      ++removed;
    }
    if (!kept_any) fs::remove(run_dir.path(), ec);
  }
  if (removed > 0) spdlog::info("removed {} scratch folders of interrupted steps", removed);
  return Ok();
}

void RunService::Log(const std::string& run_id, const std::string& step, const std::string& line) {
  auto r = db_->Exec("INSERT INTO run_logs (run_id, time, step, line) VALUES (?, ?, ?, ?)",
                     {run_id, NowIso(), step, line});
  if (!r) spdlog::warn("run {}: cannot write log line: {}", run_id, r.error().ToString());
}

bool RunService::RunOnce() {
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto rows = db_->Query("SELECT id FROM runs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1");
    if (!rows || rows->empty()) return false;
    id = rows->front().Text(0);
    auto claimed = db_->Exec(
        "UPDATE runs SET status = 'running', started_at = CASE WHEN started_at = '' THEN ? ELSE "
        "started_at END WHERE id = ? AND status = 'queued'",
        {NowIso(), id});
    if (!claimed || *claimed != 1) return true;
  }
  Status s = Execute(id);
  if (!s) {
    // The driver could not even start (e.g. the spec no longer parses).
    IgnoreError(db_->Exec("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                          {NowIso(), s.error().message(), id}));
    IgnoreError(
        db_->Exec("UPDATE run_steps SET status = 'skipped' WHERE run_id = ? AND status = 'queued'", {id}));
    spdlog::info("run {} failed: {}", id, s.error().ToString());
  }
  {
    std::lock_guard lock(engine_->mu);
    engine_->cancels.erase(id);
  }
  if (on_finished_) on_finished_(id);
  return true;
}

void RunService::Start(int workers) {
  stop_ = false;
  for (int i = 0; i < workers; ++i) {
    workers_.emplace_back([this] {
      SetThreadName("takt-runs");
      while (!stop_) {
        if (RunOnce()) continue;
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_.load() || queued_; });
        queued_ = false;
      }
    });
  }
}

void RunService::Stop() {
  stop_ = true;
  cv_.notify_all();
  engine_->Signal();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

// ---------------------------------------------------------------------------
// The run driver.

namespace {

// One attempt of one step, on a thread of its own.
struct Attempt {
  std::thread thread;
  std::atomic<bool> done{false};
  std::atomic<bool> stop{false};
  std::atomic<bool> detach{false};  // the server is stopping: leave external work (Slurm jobs) running
  Result<StepResult> result = Internal("not run");
  std::string failure;
  std::string cached_from;
  std::string cache_key;
  std::vector<MetricPoint> curve;
  std::map<std::string, StepResult> upstream;  // a copy: the driver adds results while steps run
  std::string read_dataset;
  int read_version = 0;
};

struct StepState {
  const StepSpec* spec = nullptr;
  std::string status;  // queued, running, retrying, succeeded, failed, skipped, cancelled
  int attempt = 0;
  Clock::time_point not_before{};
  std::string reattach_job;  // a Slurm job of the last attempt, still running after a restart
  std::unique_ptr<Attempt> live;
};

}  // namespace

Status RunService::Execute(const std::string& run_id) {
  TAKT_ASSIGN_OR_RETURN(auto row,
                        db_->QueryOne("SELECT spec, params_json, files_blob, cancel_requested FROM runs "
                                      "WHERE id = ?",
                                      {run_id}, "run"));
  TAKT_ASSIGN_OR_RETURN(Run run, Get(run_id));
  TAKT_ASSIGN_OR_RETURN(const PipelineSpec spec,
                        ParsePipeline(row.Text(0), Json::parse(row.Text(1), nullptr, false)));
  std::map<std::string, std::string> files;
  if (!row.Text(2).empty()) {
    TAKT_ASSIGN_OR_RETURN(std::string bundle_text, blobs_->Get(row.Text(2)));
    Json bundle = Json::parse(bundle_text, nullptr, false);
    for (const auto& [path, id] : bundle.items()) {
      TAKT_ASSIGN_OR_RETURN(files[path], blobs_->Get(id.get<std::string>()));
    }
  }
  auto cancel = engine_->CancelFlag(run_id);
  if (row.Int(3) != 0) cancel->store(true);

  std::map<std::string, StepState> steps;
  std::map<std::string, StepResult> results;
  for (const auto& s : run.steps) {
    const StepSpec* sp = spec.Step(s.name);
    if (sp == nullptr) return Internal("run " + run_id + ": step " + s.name + " is not in its spec");
    StepState& st = steps[s.name];
    st.spec = sp;
    st.status = s.status == "retrying" ? "queued" : s.status;
    st.attempt = s.attempt;
    if (s.status == "running" && s.executor == "slurm" && !s.job_id.empty()) {
      // Left running by a previous server: the same attempt goes on, following its job.
      st.status = "queued";
      st.attempt = s.attempt - 1;
      st.reattach_job = s.job_id;
    }
    if (s.status == "succeeded") {
      results[s.name] = {Json::parse(s.outputs_json, nullptr, false),
                         Json::parse(s.metrics_json, nullptr, false)};
    }
  }

  auto update_step = [&](const std::string& name, const std::string& sql, std::vector<store::Value> args) {
    args.push_back(run_id);
    args.push_back(name);
    IgnoreError(db_->Exec("UPDATE run_steps SET " + sql + " WHERE run_id = ? AND name = ?", std::move(args)));
  };
  std::string stop_cause;  // why no new steps start: a failed step (on_failure: stop) or a cancel
  auto settle = [&](const std::string& name, const std::string& status, const std::string& failure,
                    const std::string& why) {
    steps[name].status = status;
    update_step(name, "status = ?, failure = ?, error = ?, finished_at = ?",
                {status, failure, why, NowIso()});
    Log(run_id, name, status + ": " + why);
  };

  while (true) {
    uint64_t seen;  // changes after this point wake the wait below at once
    {
      std::lock_guard lock(engine_->mu);
      seen = engine_->generation;
    }
    if (cancel->load() && stop_cause.empty()) stop_cause = "cancelled";
    if (stop_.load() && stop_cause.empty()) stop_cause = "server stopping";
    // Finished attempts: record, retry or settle.
    for (auto& [name, st] : steps) {
      if (!st.live || !st.live->done.load()) continue;
      st.live->thread.join();
      std::unique_ptr<Attempt> a = std::move(st.live);
      {
        std::lock_guard lock(engine_->mu);
        ++engine_->free_slots;
      }
      engine_->Signal();
      if (stop_cause == "server stopping") {
        // Leave it running in the record: the next start resumes it (lost).
        st.status = "running";
        continue;
      }
      if (a->result) {
        StepResult& r = *a->result;
        Json shown = r.outputs;
        IgnoreError(db_->Transaction([&](store::Database& tx) -> Status {
          const std::string run_node = "run:" + run_id;
          if (!a->read_dataset.empty()) {
            TAKT_RETURN_IF_ERROR(
                lineage::Record(tx, {"dataset:" + a->read_dataset + "@" + std::to_string(a->read_version),
                                     run_node, "read by", name, ""}));
          }
          for (const auto& [out, type] : OutputsOf(*st.spec)) {
            if (type == ArtifactType::kMetrics) continue;
            if (!shown.contains(out) || !shown[out].is_string()) continue;
            const std::string id = shown[out].get<std::string>();
            if (!blob::BlobStore::IsValidId(id)) continue;
            bool passed_through = false;  // e.g. train's validation table came from a split
            for (const auto& in : st.spec->inputs) {
              if (InputValue(StepEnv{.upstream = &results}, in) == shown[out]) passed_through = true;
            }
            if (passed_through) continue;
            TAKT_RETURN_IF_ERROR(
                lineage::Record(tx, {run_node, "artifact:" + id, "wrote", name + "/" + out, ""}));
          }
          for (const auto& [metric, value] : r.metrics.items()) {
            if (!value.is_number()) continue;
            TAKT_RETURN_IF_ERROR(
                tx.Exec("INSERT INTO run_metrics (run_id, step, name, round, value) VALUES (?, ?, ?, "
                        "-1, ?) ON CONFLICT DO NOTHING",
                        {run_id, name, metric, value.get<double>()}));
          }
          for (const auto& p : a->curve) {
            TAKT_RETURN_IF_ERROR(
                tx.Exec("INSERT INTO run_metrics (run_id, step, name, round, value) VALUES (?, ?, ?, "
                        "?, ?) ON CONFLICT DO NOTHING",
                        {run_id, name, p.name, int64_t{p.round}, p.value}));
          }
          TAKT_RETURN_IF_ERROR(tx.Exec(
              "UPDATE run_steps SET status = 'succeeded', finished_at = ?, outputs_json = ?, "
              "metrics_json = ?, cached_from = ?, cache_key = ?, failure = '', error = '' "
              "WHERE run_id = ? AND name = ?",
              {NowIso(), shown.dump(), r.metrics.dump(), a->cached_from, a->cache_key, run_id, name}));
          if (Cacheable(*st.spec) && a->cached_from.empty() && !a->cache_key.empty()) {
            TAKT_RETURN_IF_ERROR(
                tx.Exec("INSERT INTO step_cache (cache_key, run_id, step, outputs_json, metrics_json, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        {a->cache_key, run_id, name, shown.dump(), r.metrics.dump(), NowIso()}));
          }
          return Ok();
        }));
        st.status = "succeeded";
        results[name] = std::move(r);
        continue;
      }
      const Error& e = a->result.error();
      const std::string failure = a->failure;
      if (failure != "cancelled" && st.spec->retry.Retries(failure) && st.attempt < st.spec->retry.attempts &&
          stop_cause.empty()) {
        const double backoff = std::min(st.spec->retry.max_backoff_seconds,
                                        st.spec->retry.backoff_seconds * std::pow(2.0, st.attempt - 1));
        st.status = "retrying";
        st.not_before = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(backoff * 1000));
        update_step(name, "status = 'retrying', failure = ?, error = ?", {failure, e.message()});
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1f", backoff);
        Log(run_id, name,
            "attempt " + std::to_string(st.attempt) + " failed (" + failure + "): " + e.message() +
                "; retrying in " + buf + " s (attempt " + std::to_string(st.attempt + 1) + " of " +
                std::to_string(st.spec->retry.attempts) + ")");
        continue;
      }
      if (failure == "cancelled") {
        settle(name, "cancelled", "cancelled", "stopped: " + (stop_cause.empty() ? "cancelled" : stop_cause));
        continue;
      }
      settle(name, "failed", failure,
             e.message() + (st.attempt > 1 ? " (after " + std::to_string(st.attempt) + " attempts)" : ""));
      if (st.spec->on_failure == "stop" && stop_cause.empty()) stop_cause = "step " + name + " failed";
    }

    // What can start, what can never start.
    bool active = false;
    for (auto& [name, st] : steps) {
      if (st.live) {
        active = true;
        if (!stop_cause.empty() && stop_cause != "server stopping") st.live->stop = true;
        if (stop_cause == "server stopping") {
          st.live->detach = true;
          st.live->stop = true;
        }
        continue;
      }
      if (st.status != "queued" && st.status != "retrying") continue;
      std::string blocked_by;
      bool waiting = false;
      for (const auto& up : st.spec->upstream()) {
        const std::string& us = steps[up].status;
        if (us == "succeeded") continue;
        if (us == "failed" || us == "skipped" || us == "cancelled") {
          blocked_by = up + " " + us;
        } else {
          waiting = true;
        }
      }
      if (!blocked_by.empty()) {
        settle(name, "skipped", "upstream", "not run: upstream step " + blocked_by);
        continue;
      }
      if (!stop_cause.empty()) {
        if (stop_cause == "server stopping") continue;
        settle(name, "cancelled", "cancelled", "not started: " + stop_cause);
        continue;
      }
      active = true;
      if (waiting) continue;
      if (st.status == "retrying" && Clock::now() < st.not_before) continue;
      {
        std::lock_guard lock(engine_->mu);
        if (engine_->free_slots == 0) continue;
        --engine_->free_slots;
      }
      // Launch an attempt.
      ++st.attempt;
      st.status = "running";
      const std::string reattach_job = std::exchange(st.reattach_job, "");
      update_step(
          name,
          "status = 'running', attempt = ?, job_id = ?, started_at = CASE WHEN started_at = '' THEN ? ELSE "
          "started_at END",
          {int64_t{st.attempt}, reattach_job, NowIso()});
      auto a = std::make_unique<Attempt>();
      Attempt* ap = a.get();
      for (const auto& up : st.spec->upstream()) ap->upstream[up] = results.at(up);
      const StepSpec* sp = st.spec;
      const int attempt_no = st.attempt;
      const bool no_cache = run.no_cache;
      ap->thread = std::thread([this, ap, sp, attempt_no, no_cache, reattach_job, &run, &spec, &files, cancel,
                                run_id] {
        StepEnv env;
        env.run = &run;
        env.spec = &spec;
        env.step = sp;
        env.upstream = &ap->upstream;
        env.blobs = blobs_;
        env.catalog = catalog_;
        env.registry = registry_;
        env.db = db_;
        env.files = &files;
        env.attempt = attempt_no;
        env.work_dir =
            (fs::path(options_.work_root.empty() ? fs::temp_directory_path() : fs::path(options_.work_root)) /
             run_id / (sp->name + "-" + std::to_string(attempt_no)))
                .string();
        env.log = [this, run_id, name = sp->name](const std::string& line) { Log(run_id, name, line); };
        env.slurm = slurm_.get();
        env.step_exec = options_.step_exec;
        env.slurm_job = reattach_job;
        env.on_job_submitted = [this, run_id, name = sp->name](const std::string& job) {
          IgnoreError(db_->Exec("UPDATE run_steps SET job_id = ? WHERE run_id = ? AND name = ?",
                                {job, run_id, name}));
        };
        env.detaching = [ap] { return ap->detach.load(); };
        env.discard = [this](const std::string& dir) { engine_->Discard(dir); };
        env.curve = [ap, name = sp->name](const std::string& metric, int round, double value) {
          ap->curve.push_back({"", name, metric, round, value});
        };
        const auto deadline =
            sp->timeout_seconds > 0
                ? Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(sp->timeout_seconds * 1000))
                : Clock::time_point::max();
        env.should_stop = [ap, cancel, deadline] {
          return ap->stop.load() || cancel->load() || Clock::now() > deadline;
        };
        env.stop_reason = [ap, cancel, deadline]() -> std::string {
          return Clock::now() > deadline && !cancel->load() && !ap->stop.load() ? "timeout" : "cancelled";
        };
        // The cache key: what the step does and exactly what it reads.
        if (Cacheable(*sp)) {
          Json key = {{"engine", kEngineVersion}, {"kind", sp->kind}, {"config", sp->config}};
          Json ins = Json::object();
          for (const auto& in : sp->inputs) {
            ins[in.name] = {{"value", InputValue(env, in)}, {"facts", InputStep(env, in).outputs}};
          }
          key["inputs"] = ins;
          if (sp->kind == "features") {
            auto read = DescribeRead(*sp, run.project, *catalog_);
            key["read"] = read ? *read : "unavailable";
          }
          if (sp->kind == "command") {
            Json code = Json::object();
            for (const auto& [path, content] : files) code[path] = crypto::Sha256Hex(content);
            key["code"] = code;
          }
          ap->cache_key = crypto::Sha256Hex(key.dump());
          if (!no_cache && reattach_job.empty()) {
            auto hit = db_->Query(
                "SELECT run_id, step, outputs_json, metrics_json FROM step_cache WHERE cache_key = ?",
                {ap->cache_key});
            if (hit && !hit->empty()) {
              const auto& h = hit->front();
              ap->cached_from = h.Text(0) + "/" + h.Text(1);
              env.log("cache hit: reusing the outputs of run " + h.Text(0) + " step " + h.Text(1) + " (key " +
                      ap->cache_key.substr(0, 12) + "; launch with --no-cache to run it again)");
              ap->result =
                  StepResult{Json::parse(h.Text(2), nullptr, false), Json::parse(h.Text(3), nullptr, false)};
              ap->done = true;
              engine_->Signal();
              return;
            }
          }
        }
        if (attempt_no > 1)
          env.log("attempt " + std::to_string(attempt_no) + " of " + std::to_string(sp->retry.attempts));
        try {
          ap->result = RunStep(env);
        } catch (const std::exception& e) {
          ap->result = Internal(std::string("step ") + sp->name + " failed unexpectedly: " + e.what());
        }
        if (!ap->result) {
          ap->failure = env.should_stop() ? env.stop_reason() : FailureOf(env, ap->result.error());
          if (env.failure != "error") ap->failure = env.failure;
        }
        // The attempt's scratch folder holds decrypted inputs: it goes, whatever the outcome, unless
        // a Slurm job still works in it (the server is stopping and reattaches later).
        if (!(sp->executor == "slurm" && env.detaching())) engine_->Discard(env.work_dir);
        ap->read_dataset = env.read_dataset;
        ap->read_version = env.read_version;
        ap->done = true;
        engine_->Signal();
      });
      st.live = std::move(a);
    }
    if (!active) break;
    std::unique_lock lock(engine_->mu);
    // The timeout covers what nobody signals: retry backoffs and step deadlines.
    engine_->cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return engine_->generation != seen; });
  }

  if (stop_cause == "server stopping") return Ok();  // resumed by the next start
  if (!options_.work_root.empty()) {
    std::error_code ec;  // every attempt's scratch folder, at once (the janitor may still be on some)
    fs::remove_all(fs::path(options_.work_root) / run_id, ec);
  }
  std::string failed, status = "succeeded", error;
  for (const auto& s : run.steps) {
    const StepState& st = steps[s.name];
    if (st.status == "failed" && failed.empty()) failed = s.name;
  }
  if (cancel->load()) {
    status = "cancelled";
    error = "cancelled";
  } else if (!failed.empty()) {
    status = "failed";
    auto row2 =
        db_->QueryOne("SELECT error FROM run_steps WHERE run_id = ? AND name = ?", {run_id, failed}, "step");
    error = "step " + failed + ": " + (row2 ? row2->Text(0) : std::string("failed"));
  }
  IgnoreError(db_->Exec("UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                        {status, NowIso(), error, run_id}));
  Log(run_id, "", "run " + status + (error.empty() ? "" : ": " + error));
  spdlog::info("run {} {}", run_id, status + (error.empty() ? "" : ": " + error));
  return Ok();
}

}  // namespace takt::pipeline
