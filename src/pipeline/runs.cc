#include "pipeline/runs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "core/json.h"
#include "core/time.h"
#include "frame/codec.h"
#include "lineage/lineage.h"
#include "ml/features.h"
#include "ml/metrics.h"
#include "ml/xgboost_model.h"
#include "pipeline/spec.h"

namespace takt::pipeline {
namespace {

constexpr const char* kRunColumns =
    "id, pipeline, project, status, created_by, created_at, started_at, finished_at, error, spec_hash";

Run RunFromRow(const store::Row& r) {
  return {r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Text(5),
          r.Text(6), r.Text(7), r.Text(8), r.Text(9), {}};
}

// What one finished step hands to the steps after it.
struct StepResult {
  Json outputs = Json::object();  // name → blob id, plus step-specific facts
  Json metrics = Json::object();
};

// The context of one executing run.
struct RunContext {
  Run run;
  PipelineSpec spec;
  std::map<std::string, StepResult> results;
  std::function<void(const std::string&)> log;
};

double TimeValue(const frame::Column& c, size_t row) { return c.AsDouble(row); }

}  // namespace

RunService::~RunService() { Stop(); }

Status RunService::Migrate() {
  TAKT_RETURN_IF_ERROR(lineage::Migrate(*db_));  // runs record lineage edges
  return store::Migrate(
      *db_, "pipeline",
      {{1, "runs-steps-logs",
        "CREATE TABLE runs (id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, project TEXT NOT NULL, status TEXT "
        "NOT "
        "NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL, started_at TEXT NOT NULL, finished_at "
        "TEXT NOT "
        "NULL, error TEXT NOT NULL, spec_hash TEXT NOT NULL, spec TEXT NOT NULL);"
        "CREATE INDEX runs_status ON runs (status, created_at);"
        "CREATE TABLE run_steps (run_id TEXT NOT NULL REFERENCES runs(id), position INTEGER NOT NULL, name "
        "TEXT NOT "
        "NULL, kind TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT NOT "
        "NULL, error "
        "TEXT NOT NULL, outputs_json TEXT NOT NULL, metrics_json TEXT NOT NULL, PRIMARY KEY (run_id, name));"
        "CREATE TABLE run_logs (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, time TEXT NOT NULL, step TEXT "
        "NOT "
        "NULL, line TEXT NOT NULL);"
        "CREATE INDEX run_logs_run ON run_logs (run_id, seq);"}});
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
  TAKT_ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipeline(yaml));
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
    TAKT_RETURN_IF_ERROR(CheckProjectAccess(probe, principal));
  }
  const std::string reader = iam::ServicePrincipalName(spec.project);
  // Datasets named by features steps must exist now, not fail later, and the
  // project must be allowed to read the columns the steps name.
  for (const auto& step : spec.steps) {
    if (step.kind != "features") continue;
    Json config = Json::parse(step.config_json);
    auto ref = catalog::ParseDatasetRef(config["dataset"].get<std::string>());
    if (!ref) return std::unexpected(ref.error().WithContext("pipeline: line " + std::to_string(step.line)));
    std::string here = "pipeline: line " + std::to_string(step.line) + ": step '" + step.name + "'";
    auto v = catalog_->GetVersion(ref->first, ref->second);
    if (!v) return std::unexpected(v.error().WithContext(here));
    auto plan = catalog_->PlanAccess(reader, v->dataset, v->version);
    if (!plan) {
      return std::unexpected(
          plan.error().WithContext(here + ": project " + spec.project + " reads as " + reader));
    }
    const frame::Schema visible = plan->OutputSchema();
    // Every column the step names must be in that dataset version.
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
                                " is not granted to project " + spec.project);
      }
    }
  }
  Run run;
  run.id = NewId("run");
  run.pipeline = spec.name;
  run.project = spec.project;
  run.status = "queued";
  run.created_by = principal;
  run.created_at = NowIso();
  run.spec_hash = spec.hash;
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(tx.Exec(
        std::string("INSERT INTO runs (") + kRunColumns + ", spec) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {run.id, run.pipeline, run.project, run.status, run.created_by, run.created_at, std::string(),
         std::string(), std::string(), run.spec_hash, spec.source}));
    for (size_t i = 0; i < spec.steps.size(); ++i) {
      const auto& s = spec.steps[i];
      TAKT_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO run_steps VALUES (?, ?, ?, ?, 'queued', '', '', '', '{}', '{}')",
                  {run.id, static_cast<int64_t>(i), s.name, s.kind}));
      run.steps.push_back({s.name, s.kind, "queued", "", "", "", "{}", "{}"});
    }
    return Ok();
  }));
  cv_.notify_one();
  return run;
}

Result<Run> RunService::Get(std::string_view id) const {
  TAKT_ASSIGN_OR_RETURN(auto row,
                        db_->QueryOne(std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?",
                                      {std::string(id)}, "run " + std::string(id) + " does not exist"));
  Run run = RunFromRow(row);
  TAKT_ASSIGN_OR_RETURN(auto steps,
                        db_->Query("SELECT name, kind, status, started_at, finished_at, error, "
                                   "outputs_json, metrics_json FROM run_steps WHERE run_id = ? ORDER BY "
                                   "position",
                                   {std::string(id)}));
  for (const auto& s : steps) {
    run.steps.push_back(
        {s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4), s.Text(5), s.Text(6), s.Text(7)});
  }
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

Result<frame::Table> RunService::OutputTable(std::string_view run_id, std::string_view step,
                                             std::string_view output, const std::string& principal) const {
  TAKT_ASSIGN_OR_RETURN(Run run, Get(run_id));
  TAKT_RETURN_IF_ERROR(CheckProjectAccess(run, principal));
  for (const auto& s : run.steps) {
    if (s.name != step) continue;
    Json outputs = Json::parse(s.outputs_json, nullptr, false);
    auto it = outputs.find(output);
    if (it == outputs.end() || !it->is_string()) {
      return NotFound("step " + std::string(step) + " of run " + std::string(run_id) +
                      " has no table output '" + std::string(output) + "'");
    }
    TAKT_ASSIGN_OR_RETURN(std::string bytes, blobs_->Get(it->get<std::string>()));
    return frame::DecodeTable(bytes);
  }
  return NotFound("run " + std::string(run_id) + " has no step " + std::string(step));
}

Status RunService::RecoverInterrupted() {
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    std::string now = NowIso();
    TAKT_RETURN_IF_ERROR(
        tx.Exec("UPDATE run_steps SET status = 'failed', finished_at = ?, error = 'the server "
                "stopped while this step ran' WHERE status = 'running'",
                {now}));
    TAKT_RETURN_IF_ERROR(
        tx.Exec("UPDATE run_steps SET status = 'skipped' WHERE status = 'queued' AND run_id IN "
                "(SELECT id FROM runs WHERE status = 'running')"));
    TAKT_RETURN_IF_ERROR(
        tx.Exec("UPDATE runs SET status = 'failed', finished_at = ?, error = 'the server stopped "
                "while this run was running; start it again' WHERE status = 'running'",
                {now}));
    return Ok();
  }));
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
    auto claimed =
        db_->Exec("UPDATE runs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'",
                  {NowIso(), id});
    if (!claimed || *claimed != 1) return true;
  }
  Status s = Execute(id);
  std::string now = NowIso();
  if (s) {
    IgnoreError(db_->Exec("UPDATE runs SET status = 'succeeded', finished_at = ? WHERE id = ?", {now, id}));
    spdlog::info("run {} succeeded", id);
  } else {
    IgnoreError(db_->Exec("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                          {now, s.error().message(), id}));
    IgnoreError(
        db_->Exec("UPDATE run_steps SET status = 'skipped' WHERE run_id = ? AND status = 'queued'", {id}));
    spdlog::info("run {} failed: {}", id, s.error().ToString());
  }
  if (on_finished_) on_finished_(id);
  return true;
}

void RunService::Start(int workers) {
  stop_ = false;
  for (int i = 0; i < workers; ++i) {
    workers_.emplace_back([this] {
      while (!stop_) {
        if (RunOnce()) continue;
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_.load(); });
      }
    });
  }
}

void RunService::Stop() {
  stop_ = true;
  cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
}

namespace {

Result<frame::Table> LoadTable(blob::BlobStore& blobs, const Json& outputs, const std::string& name) {
  TAKT_ASSIGN_OR_RETURN(std::string bytes, blobs.Get(outputs.at(name).get<std::string>()));
  return frame::DecodeTable(bytes);
}

std::string Fixed(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

Result<StepResult> RunFeatures(RunContext& ctx, const std::string& step, const Json& config,
                               catalog::CatalogService& catalog, blob::BlobStore& blobs) {
  TAKT_ASSIGN_OR_RETURN(auto ref, catalog::ParseDatasetRef(config["dataset"].get<std::string>()));
  // The project's grants, through the one governed read path.
  catalog::ReadRequest req;
  req.principal = iam::ServicePrincipalName(ctx.run.project);
  req.dataset = ref.first;
  req.version = ref.second;
  req.purpose = "run " + ctx.run.id + " step " + step;
  TAKT_ASSIGN_OR_RETURN(auto read, catalog.OpenRead(req));
  const int version = read->version().version;
  const std::string dataset = read->version().dataset;
  std::string masked;
  for (const auto& c : read->plan().columns) {
    if (c.mask) masked += (masked.empty() ? "" : ", ") + c.source.name + " (" + c.mask->ToString() + ")";
  }
  TAKT_ASSIGN_OR_RETURN(frame::Table input, catalog::ReadRemaining(*read));
  catalog::DatasetVersion dv;
  dv.dataset = dataset;
  dv.version = version;
  ctx.log("read dataset " + dv.dataset + " v" + std::to_string(dv.version) + " as " + req.principal + ": " +
          std::to_string(input.num_rows()) + " rows, " + std::to_string(input.num_columns()) + " columns" +
          (masked.empty() ? "" : ", masked: " + masked) +
          (read->plan().row_filter ? ", row filter " + read->plan().row_filter_text : ""));
  ml::FeatureSpec fs;
  if (config.contains("entity")) fs.entity_column = config["entity"];
  if (config.contains("time")) fs.time_column = config["time"];
  if (config.contains("label")) fs.label_column = config["label"];
  if (config.contains("columns")) fs.columns = config["columns"].get<std::vector<std::string>>();
  if (config.contains("windows")) fs.windows = config["windows"].get<std::vector<int>>();
  fs.keep_columns = {fs.entity_column, fs.time_column};
  if (config.contains("keep")) {
    for (const auto& k : config["keep"]) fs.keep_columns.push_back(k.get<std::string>());
  }
  TAKT_ASSIGN_OR_RETURN(frame::Table features, ml::ComputeRollingFeatures(input, fs));
  TAKT_ASSIGN_OR_RETURN(frame::Table latest, ml::LatestPerEntity(features, fs.entity_column, fs.time_column));
  ctx.log("computed " + std::to_string(features.num_columns()) + " columns over windows of " +
          config.value("windows", Json::array({6, 24})).dump() + " rows per " + fs.entity_column);
  StepResult r;
  TAKT_ASSIGN_OR_RETURN(r.outputs["features"], blobs.Put(frame::EncodeTable(features)));
  TAKT_ASSIGN_OR_RETURN(r.outputs["latest"], blobs.Put(frame::EncodeTable(latest)));
  r.outputs["dataset"] = dv.dataset;
  r.outputs["dataset_version"] = dv.version;
  std::vector<std::string> meta = fs.keep_columns;
  if (!fs.label_column.empty()) meta.push_back(fs.label_column);
  r.outputs["non_features"] = meta;
  r.outputs["entity"] = fs.entity_column;
  r.outputs["time"] = fs.time_column;
  r.metrics["rows"] = features.num_rows();
  r.metrics["entities"] = latest.num_rows();
  return r;
}

struct Split {
  std::vector<size_t> train, holdout;
  double cutoff = 0;
};

Result<Split> TimeSplit(const frame::Table& t, const std::string& time_column, double fraction) {
  const frame::Column* c = t.Find(time_column);
  if (!c) return InvalidArgument("holdout: column '" + time_column + "' is not in the feature table");
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < t.num_rows(); ++i) {
    double v = TimeValue(*c, i);
    if (std::isnan(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (!(hi > lo)) return InvalidArgument("holdout: column '" + time_column + "' has no time range to split");
  Split s;
  s.cutoff = lo + (1.0 - fraction) * (hi - lo);
  for (size_t i = 0; i < t.num_rows(); ++i) (TimeValue(*c, i) < s.cutoff ? s.train : s.holdout).push_back(i);
  if (s.train.empty() || s.holdout.empty())
    return InvalidArgument("holdout: the split leaves one side empty");
  return s;
}

Result<StepResult> RunTrain(RunContext& ctx, const Json& config, blob::BlobStore& blobs) {
  const StepResult& in = ctx.results.at(config["input"].get<std::string>());
  TAKT_ASSIGN_OR_RETURN(frame::Table table, LoadTable(blobs, in.outputs, "features"));
  std::string label = config["label"];
  if (!table.Find(label))
    return InvalidArgument("label '" + label + "' is not a column of the feature table");
  std::vector<std::string> exclude = in.outputs["non_features"].get<std::vector<std::string>>();
  exclude.push_back(label);
  if (config.contains("exclude")) {
    for (const auto& e : config["exclude"]) exclude.push_back(e.get<std::string>());
  }
  std::vector<std::string> features;
  for (const auto& col : table.columns) {
    if (std::find(exclude.begin(), exclude.end(), col.field.name) != exclude.end()) continue;
    if (!frame::IsNumeric(col.field.type) || col.field.type == frame::Type::kTimestamp) continue;
    features.push_back(col.field.name);
  }
  if (features.empty()) return InvalidArgument("no numeric feature columns are left to train on");
  Json holdout = config.value("holdout", Json{{"time_column", in.outputs["time"]}, {"fraction", 0.2}});
  TAKT_ASSIGN_OR_RETURN(Split split, TimeSplit(table, holdout["time_column"], holdout["fraction"]));
  ctx.log("time-based holdout: " + std::to_string(split.train.size()) + " rows before " +
          frame::FormatTimestamp(static_cast<int64_t>(split.cutoff)) + " train, " +
          std::to_string(split.holdout.size()) + " after it are held out");
  TAKT_ASSIGN_OR_RETURN(ml::Matrix x, ml::ToMatrix(table, features, &split.train));
  TAKT_ASSIGN_OR_RETURN(std::vector<float> y, ml::ToLabels(table, label, &split.train));
  TAKT_ASSIGN_OR_RETURN(ml::Matrix xv, ml::ToMatrix(table, features, &split.holdout));
  TAKT_ASSIGN_OR_RETURN(std::vector<float> yv, ml::ToLabels(table, label, &split.holdout));
  ml::TrainOptions opts;
  opts.params = {{"objective", "binary:logistic"}, {"eval_metric", "logloss"}};
  if (config.contains("params")) {
    for (const auto& [k, v] : config["params"].items()) opts.params[k] = v.get<std::string>();
  }
  opts.num_rounds = config.value("rounds", 100);
  ctx.log("training XGBoost on " + std::to_string(features.size()) + " features, " +
          std::to_string(opts.num_rounds) + " rounds");
  auto t0 = std::chrono::steady_clock::now();
  TAKT_ASSIGN_OR_RETURN(ml::TrainResult trained, ml::Train(x, y, &xv, &yv, opts));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (size_t i = 0; i < trained.curve.size(); ++i) {
    if ((i + 1) % 25 == 0 || i + 1 == trained.curve.size()) {
      ctx.log("round " + std::to_string(i + 1) + ": train-" + opts.params["eval_metric"] + "=" +
              Fixed(trained.curve[i].first) + " holdout-" + opts.params["eval_metric"] + "=" +
              Fixed(trained.curve[i].second));
    }
  }
  ctx.log("trained in " + Fixed(secs, 1) + " s");
  StepResult r;
  TAKT_ASSIGN_OR_RETURN(r.outputs["model"], blobs.Put(trained.model_json));
  r.outputs["features"] = in.outputs["features"];
  r.outputs["feature_names"] = features;
  r.outputs["label"] = label;
  r.outputs["holdout_rows"] = split.holdout;
  r.outputs["params"] = opts.params;
  r.outputs["rounds"] = opts.num_rounds;
  r.outputs["dataset"] = in.outputs["dataset"];
  r.outputs["dataset_version"] = in.outputs["dataset_version"];
  if (!trained.curve.empty()) {
    r.metrics["train_" + opts.params["eval_metric"]] = trained.curve.back().first;
    r.metrics["holdout_" + opts.params["eval_metric"]] = trained.curve.back().second;
  }
  r.metrics["train_rows"] = split.train.size();
  r.metrics["train_seconds"] = secs;
  return r;
}

Result<StepResult> RunEvaluate(RunContext& ctx, const Json& config, blob::BlobStore& blobs) {
  const StepResult& tr = ctx.results.at(config["model"].get<std::string>());
  TAKT_ASSIGN_OR_RETURN(frame::Table table, LoadTable(blobs, tr.outputs, "features"));
  TAKT_ASSIGN_OR_RETURN(std::string model_bytes, blobs.Get(tr.outputs["model"].get<std::string>()));
  TAKT_ASSIGN_OR_RETURN(auto model, ml::XgbModel::Load(model_bytes));
  auto rows = tr.outputs["holdout_rows"].get<std::vector<size_t>>();
  auto names = tr.outputs["feature_names"].get<std::vector<std::string>>();
  TAKT_ASSIGN_OR_RETURN(ml::Matrix x, ml::ToMatrix(table, names, &rows));
  TAKT_ASSIGN_OR_RETURN(std::vector<float> y,
                        ml::ToLabels(table, tr.outputs["label"].get<std::string>(), &rows));
  TAKT_ASSIGN_OR_RETURN(std::vector<float> p, model->Predict(x));
  double threshold = config.value("threshold", 0.5);
  ml::ThresholdMetrics m = ml::AtThreshold(p, y, threshold);
  StepResult r;
  r.metrics = {{"auc", ml::RocAuc(p, y)},
               {"pr_auc", ml::PrAuc(p, y)},
               {"precision", m.precision},
               {"recall", m.recall},
               {"f1", m.f1},
               {"accuracy", m.accuracy},
               {"threshold", threshold},
               {"holdout_rows", rows.size()},
               {"holdout_positives", m.tp + m.fn}};
  ctx.log("holdout: auc=" + Fixed(r.metrics["auc"]) + " pr_auc=" + Fixed(r.metrics["pr_auc"]) +
          " precision@" + Fixed(threshold, 2) + "=" + Fixed(m.precision) + " recall@" + Fixed(threshold, 2) +
          "=" + Fixed(m.recall));
  return r;
}

Result<StepResult> RunCondition(RunContext& ctx, const Json& config) {
  const StepResult& ev = ctx.results.at(config["metrics"].get<std::string>());
  std::string expr = config["expression"];
  TAKT_ASSIGN_OR_RETURN(auto comparisons, ParseCondition(expr));
  StepResult r;
  for (const auto& c : comparisons) {
    auto it = ev.metrics.find(c.metric);
    if (it == ev.metrics.end() || !it->is_number()) {
      return InvalidArgument("condition '" + expr + "': metric '" + c.metric +
                             "' was not computed (have: auc, " + "pr_auc, precision, recall, f1, accuracy)");
    }
    double v = it->get<double>();
    bool ok = c.op == ">="   ? v >= c.value
              : c.op == ">"  ? v > c.value
              : c.op == "<=" ? v <= c.value
              : c.op == "<"  ? v < c.value
              : c.op == "==" ? v == c.value
                             : v != c.value;
    ctx.log(c.metric + " = " + Fixed(v) + " " + c.op + " " + Fixed(c.value) + ": " +
            (ok ? "met" : "NOT met"));
    if (!ok) {
      return FailedPrecondition("condition '" + expr + "' is not met (" + c.metric + " = " + Fixed(v) +
                                "); the model is not registered");
    }
  }
  r.metrics["met"] = true;
  return r;
}

}  // namespace

Status RunService::Execute(const std::string& run_id) {
  TAKT_ASSIGN_OR_RETURN(auto row, db_->QueryOne("SELECT spec FROM runs WHERE id = ?", {run_id}, "run"));
  RunContext ctx;
  TAKT_ASSIGN_OR_RETURN(ctx.run, Get(run_id));
  TAKT_ASSIGN_OR_RETURN(ctx.spec, ParsePipeline(row.Text(0)));
  for (const auto& step : ctx.spec.steps) {
    ctx.log = [&, name = step.name](const std::string& line) { Log(run_id, name, line); };
    IgnoreError(
        db_->Exec("UPDATE run_steps SET status = 'running', started_at = ? WHERE run_id = ? AND name = ?",
                  {NowIso(), run_id, step.name}));
    Json config = Json::parse(step.config_json);
    Result<StepResult> result = InvalidArgument("unknown step kind " + step.kind);
    try {
      if (step.kind == "features") {
        result = RunFeatures(ctx, step.name, config, *catalog_, *blobs_);
      } else if (step.kind == "train") {
        result = RunTrain(ctx, config, *blobs_);
      } else if (step.kind == "evaluate") {
        result = RunEvaluate(ctx, config, *blobs_);
      } else if (step.kind == "condition") {
        result = RunCondition(ctx, config);
      } else if (step.kind == "register") {
        const StepResult& tr = ctx.results.at(config["model"].get<std::string>());
        Json metrics = config.contains("metrics")
                           ? ctx.results.at(config["metrics"].get<std::string>()).metrics
                           : Json::object();
        registry::ModelVersion v;
        v.group = config["model_group"];
        v.blob_id = tr.outputs["model"];
        v.feature_names = tr.outputs["feature_names"].get<std::vector<std::string>>();
        v.metrics_json = metrics.dump();
        v.params_json = Json{{"params", tr.outputs["params"]}, {"rounds", tr.outputs["rounds"]}}.dump();
        v.dataset = tr.outputs["dataset"];
        v.dataset_version = tr.outputs["dataset_version"];
        v.run_id = run_id;
        v.created_by = ctx.run.created_by;
        registry::ModelVersion registered;
        Status s = db_->Transaction([&](store::Database& tx) -> Status {
          TAKT_ASSIGN_OR_RETURN(registered, registry_->Register(tx, v, ctx.run.project));
          return lineage::Record(tx, {"artifact:" + v.blob_id,
                                      "model:" + registered.group + "@" + std::to_string(registered.version),
                                      "registered as", step.name, ""});
        });
        if (s) {
          ctx.log("registered " + registered.group + " v" + std::to_string(registered.version) + " (" +
                  registered.status + ")");
          StepResult r;
          r.outputs = {{"model_group", registered.group}, {"model_version", registered.version}};
          result = r;
        } else {
          result = std::unexpected(s.error());
        }
      }
    } catch (const std::exception& e) {
      result = Internal(std::string("step ") + step.name + " failed unexpectedly: " + e.what());
    }
    if (!result) {
      Log(run_id, step.name, "failed: " + result.error().message());
      IgnoreError(db_->Exec(
          "UPDATE run_steps SET status = 'failed', finished_at = ?, error = ? WHERE run_id = ? AND name = ?",
          {NowIso(), result.error().message(), run_id, step.name}));
      return std::unexpected(result.error().WithContext("step " + step.name));
    }
    // Row lists are internal plumbing between steps: keep them out of the record.
    Json shown = result->outputs;
    shown.erase("holdout_rows");
    // Lineage: what the step read and wrote.
    IgnoreError(db_->Transaction([&](store::Database& tx) -> Status {
      const std::string run_node = "run:" + run_id;
      if (step.kind == "features") {
        TAKT_RETURN_IF_ERROR(lineage::Record(tx, {"dataset:" + shown["dataset"].get<std::string>() + "@" +
                                                      std::to_string(shown["dataset_version"].get<int>()),
                                                  run_node, "read by", step.name, ""}));
      }
      for (const char* out : {"features", "latest", "model"}) {
        if (step.kind == "train" && std::string_view(out) == "features") continue;  // passed through
        if (shown.contains(out) && shown[out].is_string() &&
            blob::BlobStore::IsValidId(shown[out].get<std::string>())) {
          TAKT_RETURN_IF_ERROR(lineage::Record(tx, {run_node, "artifact:" + shown[out].get<std::string>(),
                                                    "wrote", step.name + "/" + out, ""}));
        }
      }
      return Ok();
    }));
    IgnoreError(
        db_->Exec("UPDATE run_steps SET status = 'succeeded', finished_at = ?, outputs_json = ?, "
                  "metrics_json = ? WHERE run_id = ? AND name = ?",
                  {NowIso(), shown.dump(), result->metrics.dump(), run_id, step.name}));
    ctx.results[step.name] = std::move(*result);
  }
  return Ok();
}

}  // namespace takt::pipeline
