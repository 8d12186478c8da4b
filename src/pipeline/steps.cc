#include "pipeline/steps.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "frame/codec.h"
#include "lineage/lineage.h"
#include "ml/features.h"
#include "ml/metrics.h"
#include "ml/xgboost_model.h"

namespace takt::pipeline {

// Defined in command_step.cc.
Result<StepResult> RunCommand(StepEnv& env);

// Defined in tune_step.cc.
Result<StepResult> RunTune(StepEnv& env);

namespace {

frame::Table TakeRows(const frame::Table& t, const std::vector<size_t>& rows) {
  std::vector<uint8_t> keep(t.num_rows(), 0);
  for (size_t r : rows) keep[r] = 1;
  return frame::SelectRows(t, keep);
}

std::string Fixed(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

Result<frame::Table> LoadTable(const StepEnv& env, const InputRef& in) {
  const Json& id = InputValue(env, in);
  if (!id.is_string())
    return Internal("input " + in.name + " (" + in.step + "." + in.output + ") is not an artifact");
  TAKT_ASSIGN_OR_RETURN(std::string bytes, env.blobs->Get(id.get<std::string>()));
  return frame::DecodeTable(bytes);
}

// Facts a table carries from the step that made it (features, split).
Json Facts(const StepResult& from) {
  Json f = Json::object();
  for (const char* k : {"dataset", "dataset_version", "non_features", "entity", "time"}) {
    if (from.outputs.contains(k)) f[k] = from.outputs[k];
  }
  return f;
}

Result<StepResult> RunFeatures(StepEnv& env) {
  const Json& config = env.step->config;
  TAKT_ASSIGN_OR_RETURN(auto ref, catalog::ParseDatasetRef(config["dataset"].get<std::string>()));
  // The project's grants, through the one governed read path.
  catalog::ReadRequest req;
  req.principal = iam::ServicePrincipalName(env.run->project);
  req.dataset = ref.first;
  req.version = ref.second;
  req.purpose = "run " + env.run->id + " step " + env.step->name;
  TAKT_ASSIGN_OR_RETURN(auto read, env.catalog->OpenRead(req));
  const int version = read->version().version;
  const std::string dataset = read->version().dataset;
  std::string masked;
  for (const auto& c : read->plan().columns) {
    if (c.mask) masked += (masked.empty() ? "" : ", ") + c.source.name + " (" + c.mask->ToString() + ")";
  }
  TAKT_ASSIGN_OR_RETURN(frame::Table input, catalog::ReadRemaining(*read));
  env.read_dataset = dataset;
  env.read_version = version;
  env.log("read dataset " + dataset + " v" + std::to_string(version) + " as " + req.principal + ": " +
          std::to_string(input.num_rows()) + " rows, " + std::to_string(input.num_columns()) + " columns" +
          (masked.empty() ? "" : ", masked: " + masked) +
          (read->plan().row_filter ? ", row filter " + read->plan().row_filter_text : ""));
  if (env.should_stop()) return MakeError(Code::kUnavailable, "stopped");
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
  env.log("computed " + std::to_string(features.num_columns()) + " columns over windows of " +
          config.value("windows", Json::array({6, 24})).dump() + " rows per " + fs.entity_column);
  StepResult r;
  TAKT_ASSIGN_OR_RETURN(r.outputs["features"], env.blobs->Put(frame::EncodeTable(features)));
  TAKT_ASSIGN_OR_RETURN(r.outputs["latest"], env.blobs->Put(frame::EncodeTable(latest)));
  r.outputs["dataset"] = dataset;
  r.outputs["dataset_version"] = version;
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
  std::string description;
};

Result<Split> TimeSplit(const frame::Table& t, const std::string& time_column, double fraction) {
  const frame::Column* c = t.Find(time_column);
  if (!c) return InvalidArgument("split: column '" + time_column + "' is not in the table");
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < t.num_rows(); ++i) {
    double v = c->AsDouble(i);
    if (std::isnan(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (!(hi > lo)) return InvalidArgument("split: column '" + time_column + "' has no time range to split");
  Split s;
  const double cutoff = lo + (1.0 - fraction) * (hi - lo);
  for (size_t i = 0; i < t.num_rows(); ++i) (c->AsDouble(i) < cutoff ? s.train : s.holdout).push_back(i);
  if (s.train.empty() || s.holdout.empty()) return InvalidArgument("split: the split leaves one side empty");
  s.description = "time-based split: " + std::to_string(s.train.size()) + " rows before " +
                  frame::FormatTimestamp(static_cast<int64_t>(cutoff)) + " train, " +
                  std::to_string(s.holdout.size()) + " after it are held out";
  return s;
}

Result<Split> RandomSplit(const frame::Table& t, double fraction, uint64_t seed) {
  std::vector<size_t> idx(t.num_rows());
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[rng() % i]);
  const size_t n_holdout = static_cast<size_t>(std::llround(fraction * static_cast<double>(idx.size())));
  Split s;
  s.holdout.assign(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(n_holdout));
  s.train.assign(idx.begin() + static_cast<std::ptrdiff_t>(n_holdout), idx.end());
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.holdout.begin(), s.holdout.end());
  if (s.train.empty() || s.holdout.empty()) return InvalidArgument("split: the split leaves one side empty");
  s.description = "random split (seed " + std::to_string(seed) + "): " + std::to_string(s.train.size()) +
                  " rows train, " + std::to_string(s.holdout.size()) + " held out";
  return s;
}

Result<Split> SplitTable(const frame::Table& t, const Json& config, const Json& facts) {
  const double fraction = config.value("fraction", 0.2);
  if (config.value("by", "time") == "random") return RandomSplit(t, fraction, config.value("seed", 7));
  std::string time = config.value("time_column", facts.value("time", std::string("timestamp")));
  return TimeSplit(t, time, fraction);
}

Result<StepResult> RunSplit(StepEnv& env) {
  const InputRef& in = *env.step->Input("input");
  TAKT_ASSIGN_OR_RETURN(frame::Table t, LoadTable(env, in));
  const Json facts = Facts(InputStep(env, in));
  TAKT_ASSIGN_OR_RETURN(Split s, SplitTable(t, env.step->config, facts));
  env.log(s.description);
  StepResult r;
  r.outputs = facts;
  TAKT_ASSIGN_OR_RETURN(r.outputs["train"], env.blobs->Put(frame::EncodeTable(TakeRows(t, s.train))));
  TAKT_ASSIGN_OR_RETURN(r.outputs["holdout"], env.blobs->Put(frame::EncodeTable(TakeRows(t, s.holdout))));
  r.metrics["train_rows"] = s.train.size();
  r.metrics["holdout_rows"] = s.holdout.size();
  return r;
}

}  // namespace

Result<TrainingData> PrepareTraining(StepEnv& env) {
  const Json& config = env.step->config;
  const InputRef& in = *env.step->Input("input");
  TAKT_ASSIGN_OR_RETURN(frame::Table table, LoadTable(env, in));
  TrainingData d;
  d.facts = Facts(InputStep(env, in));
  d.label = config["label"];
  if (!table.Find(d.label))
    return InvalidArgument("label '" + d.label + "' is not a column of the training table");
  std::vector<std::string> exclude = d.facts.value("non_features", std::vector<std::string>{});
  exclude.push_back(d.label);
  if (config.contains("exclude")) {
    for (const auto& e : config["exclude"]) exclude.push_back(e.get<std::string>());
  }
  for (const auto& col : table.columns) {
    if (std::find(exclude.begin(), exclude.end(), col.field.name) != exclude.end()) continue;
    if (!frame::IsNumeric(col.field.type) || col.field.type == frame::Type::kTimestamp) continue;
    d.features.push_back(col.field.name);
  }
  if (d.features.empty()) return InvalidArgument("no numeric feature columns are left to train on");
  frame::Table valid;
  if (const InputRef* v = env.step->Input("validation")) {
    TAKT_ASSIGN_OR_RETURN(valid, LoadTable(env, *v));
    d.validation_blob = InputValue(env, *v).get<std::string>();
    env.log("training on " + std::to_string(table.num_rows()) + " rows, validating on " +
            std::to_string(valid.num_rows()) + " rows of " + v->step + "." + v->output);
  } else {
    Json holdout =
        config.value("holdout", Json{{"time_column", d.facts.value("time", "timestamp")}, {"fraction", 0.2}});
    Json split_config = {
        {"by", "time"}, {"time_column", holdout["time_column"]}, {"fraction", holdout["fraction"]}};
    TAKT_ASSIGN_OR_RETURN(Split s, SplitTable(table, split_config, d.facts));
    env.log(s.description);
    valid = TakeRows(table, s.holdout);
    table = TakeRows(table, s.train);
    TAKT_ASSIGN_OR_RETURN(d.validation_blob, env.blobs->Put(frame::EncodeTable(valid)));
  }
  TAKT_ASSIGN_OR_RETURN(d.x, ml::ToMatrix(table, d.features));
  TAKT_ASSIGN_OR_RETURN(d.y, ml::ToLabels(table, d.label));
  TAKT_ASSIGN_OR_RETURN(d.xv, ml::ToMatrix(valid, d.features));
  TAKT_ASSIGN_OR_RETURN(d.yv, ml::ToLabels(valid, d.label));
  return d;
}

ml::TrainOptions TrainOptionsOf(const Json& config) {
  ml::TrainOptions opts;
  opts.params = {{"objective", "binary:logistic"}, {"eval_metric", "logloss"}};
  if (config.contains("params")) {
    for (const auto& [k, v] : config["params"].items())
      opts.params[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  opts.num_rounds = config.value("rounds", 100);
  opts.early_stopping_rounds = config.value("early_stopping_rounds", 0);
  return opts;
}

Result<StepResult> TrainedOutputs(StepEnv& env, const TrainingData& d, const ml::TrainOptions& opts,
                                  const ml::TrainResult& trained, double secs) {
  StepResult r;
  r.outputs = d.facts;
  TAKT_ASSIGN_OR_RETURN(r.outputs["model"], env.blobs->Put(trained.model_json));
  r.outputs["validation"] = d.validation_blob;
  r.outputs["feature_names"] = d.features;
  r.outputs["label"] = d.label;
  r.outputs["params"] = opts.params;
  r.outputs["rounds"] = static_cast<int>(trained.curve.empty() ? opts.num_rounds : trained.curve.size());
  r.outputs["framework"] = "xgboost";
  const std::string metric = trained.metric.empty() ? opts.params.at("eval_metric") : trained.metric;
  if (!trained.curve.empty()) {
    r.metrics["train_" + metric] = trained.curve.back().first;
    r.metrics["holdout_" + metric] = trained.curve.back().second;
  }
  r.metrics["train_rows"] = d.y.size();
  r.metrics["train_seconds"] = secs;
  return r;
}

namespace {

Result<StepResult> RunTrain(StepEnv& env) {
  TAKT_ASSIGN_OR_RETURN(TrainingData d, PrepareTraining(env));
  ml::TrainOptions opts = TrainOptionsOf(env.step->config);
  env.log("training XGBoost on " + std::to_string(d.features.size()) + " features, " +
          std::to_string(opts.num_rounds) + " rounds");
  bool stopped = false;
  opts.on_round = [&](int round, double train, double valid) {
    const std::string metric = opts.params["eval_metric"];
    if (!std::isnan(train)) env.curve("train_" + metric, round, train);
    if (!std::isnan(valid)) env.curve("holdout_" + metric, round, valid);
    if ((round + 1) % 25 == 0 || round + 1 == opts.num_rounds) {
      env.log("round " + std::to_string(round + 1) + ": train-" + metric + "=" + Fixed(train) + " holdout-" +
              metric + "=" + Fixed(valid));
    }
    if (env.should_stop()) stopped = true;
    return !stopped;
  };
  auto t0 = std::chrono::steady_clock::now();
  TAKT_ASSIGN_OR_RETURN(ml::TrainResult trained, ml::Train(d.x, d.y, &d.xv, &d.yv, opts));
  if (stopped) {
    env.failure = env.stop_reason();
    return MakeError(Code::kUnavailable, env.failure == "timeout" ? "training was stopped at its time limit"
                                                                  : "training was cancelled");
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  env.log("trained in " + Fixed(secs, 1) + " s");
  return TrainedOutputs(env, d, opts, trained, secs);
}

Result<StepResult> RunEvaluate(StepEnv& env) {
  const InputRef& model_in = *env.step->Input("model");
  const StepResult& producer = InputStep(env, model_in);
  TAKT_ASSIGN_OR_RETURN(frame::Table table, LoadTable(env, *env.step->Input("data")));
  TAKT_ASSIGN_OR_RETURN(std::string model_bytes,
                        env.blobs->Get(InputValue(env, model_in).get<std::string>()));
  TAKT_ASSIGN_OR_RETURN(auto model, ml::XgbModel::Load(model_bytes));
  std::vector<std::string> names = producer.outputs.value("feature_names", std::vector<std::string>{});
  if (names.empty())
    return InvalidArgument("the model from step " + model_in.step + " does not list its features");
  const std::string label = env.step->config.value("label", producer.outputs.value("label", std::string()));
  if (label.empty()) return InvalidArgument("say which column is the label (label: ...)");
  TAKT_ASSIGN_OR_RETURN(ml::Matrix x, ml::ToMatrix(table, names));
  TAKT_ASSIGN_OR_RETURN(std::vector<float> y, ml::ToLabels(table, label));
  TAKT_ASSIGN_OR_RETURN(std::vector<float> p, model->Predict(x));
  double threshold = env.step->config.value("threshold", 0.5);
  ml::ThresholdMetrics m = ml::AtThreshold(p, y, threshold);
  StepResult r;
  r.metrics = {{"auc", ml::RocAuc(p, y)},
               {"pr_auc", ml::PrAuc(p, y)},
               {"precision", m.precision},
               {"recall", m.recall},
               {"f1", m.f1},
               {"accuracy", m.accuracy},
               {"threshold", threshold},
               {"holdout_rows", y.size()},
               {"holdout_positives", m.tp + m.fn}};
  env.log("holdout: auc=" + Fixed(r.metrics["auc"]) + " pr_auc=" + Fixed(r.metrics["pr_auc"]) +
          " precision@" + Fixed(threshold, 2) + "=" + Fixed(m.precision) + " recall@" + Fixed(threshold, 2) +
          "=" + Fixed(m.recall));
  return r;
}

Result<StepResult> RunCondition(StepEnv& env) {
  const InputRef& in = *env.step->Input("metrics");
  const Json& metrics = InputStep(env, in).metrics;
  std::string expr = env.step->config["expression"];
  TAKT_ASSIGN_OR_RETURN(auto comparisons, ParseCondition(expr));
  StepResult r;
  for (const auto& c : comparisons) {
    auto it = metrics.find(c.metric);
    if (it == metrics.end() || !it->is_number()) {
      std::string have;
      for (const auto& [k, v] : metrics.items()) {
        if (v.is_number()) have += (have.empty() ? "" : ", ") + k;
      }
      return InvalidArgument("condition '" + expr + "': metric '" + c.metric + "' was not computed by step " +
                             in.step + " (have: " + have + ")");
    }
    double v = it->get<double>();
    bool ok = c.op == ">="   ? v >= c.value
              : c.op == ">"  ? v > c.value
              : c.op == "<=" ? v <= c.value
              : c.op == "<"  ? v < c.value
              : c.op == "==" ? v == c.value
                             : v != c.value;
    env.log(c.metric + " = " + Fixed(v) + " " + c.op + " " + Fixed(c.value) + ": " +
            (ok ? "met" : "NOT met"));
    if (!ok) {
      return FailedPrecondition("condition '" + expr + "' is not met (" + c.metric + " = " + Fixed(v) +
                                "); the steps after it do not run");
    }
  }
  r.metrics["met"] = true;
  return r;
}

Result<StepResult> RunRegister(StepEnv& env) {
  const InputRef& model_in = *env.step->Input("model");
  const StepResult& tr = InputStep(env, model_in);
  Json metrics = Json::object();
  if (const InputRef* m = env.step->Input("metrics")) metrics = InputStep(env, *m).metrics;
  registry::ModelVersion v;
  v.group = env.step->config["model_group"];
  v.blob_id = InputValue(env, model_in).get<std::string>();
  v.feature_names = tr.outputs.value("feature_names", std::vector<std::string>{});
  v.metrics_json = metrics.dump();
  v.params_json =
      Json{{"params", tr.outputs.value("params", Json::object())}, {"rounds", tr.outputs.value("rounds", 0)}}
          .dump();
  v.dataset = tr.outputs.value("dataset", std::string());
  v.dataset_version = tr.outputs.value("dataset_version", 0);
  v.run_id = env.run->id;
  v.created_by = env.run->created_by;
  v.registered_by = env.run->created_by;
  v.source = registry::kSourceRun;
  if (env.step->config.contains("card")) {
    TAKT_ASSIGN_OR_RETURN(v.card, registry::ParseCard(env.step->config["card"].dump()));
  }
  // Sample rows for release smoke tests: the first rows of the validation table the model was trained
  // with (train and tune output it; a command step may not). Without one the version has no sample.
  const Json validation = tr.outputs.value("validation", Json());
  if (validation.is_string() && !v.feature_names.empty()) {
    auto sample = [&]() -> Result<ml::Matrix> {
      TAKT_ASSIGN_OR_RETURN(std::string bytes, env.blobs->Get(validation.get<std::string>()));
      TAKT_ASSIGN_OR_RETURN(frame::Table valid, frame::DecodeTable(bytes));
      std::vector<size_t> first(std::min(valid.num_rows(), registry::kMaxSampleRows));
      std::iota(first.begin(), first.end(), size_t{0});
      return ml::ToMatrix(valid, v.feature_names, &first);
    }();
    if (!sample) env.log("no sample rows: " + sample.error().message());
    for (size_t r = 0; sample && r < sample->rows; ++r) {
      v.sample_rows.emplace_back(
          sample->values.begin() + static_cast<std::ptrdiff_t>(r * sample->cols),
          sample->values.begin() + static_cast<std::ptrdiff_t>((r + 1) * sample->cols));
    }
  }
  registry::ModelVersion registered;
  TAKT_RETURN_IF_ERROR(env.db->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(registered, env.registry->Register(tx, v, env.run->project));
    return lineage::Record(
        tx, {"artifact:" + v.blob_id, "model:" + registered.group + "@" + std::to_string(registered.version),
             "registered as", env.step->name, ""});
  }));
  env.log("registered " + registered.group + " v" + std::to_string(registered.version) + " (" +
          registered.status + ")");
  StepResult r;
  r.outputs = {{"model_group", registered.group}, {"model_version", registered.version}};
  return r;
}

}  // namespace

const StepResult& InputStep(const StepEnv& env, const InputRef& in) { return env.upstream->at(in.step); }

const Json& InputValue(const StepEnv& env, const InputRef& in) {
  static const Json kNull;
  const StepResult& r = InputStep(env, in);
  if (in.type == ArtifactType::kMetrics) return r.metrics;
  auto it = r.outputs.find(in.output);
  return it == r.outputs.end() ? kNull : *it;
}

Result<std::string> DescribeRead(const StepSpec& step, const std::string& project,
                                 catalog::CatalogService& catalog) {
  TAKT_ASSIGN_OR_RETURN(auto ref, catalog::ParseDatasetRef(step.config["dataset"].get<std::string>()));
  TAKT_ASSIGN_OR_RETURN(catalog::DatasetVersion v, catalog.GetVersion(ref.first, ref.second));
  TAKT_ASSIGN_OR_RETURN(catalog::AccessPlan plan,
                        catalog.PlanAccess(iam::ServicePrincipalName(project), v.dataset, v.version));
  std::string out = v.dataset + "@" + std::to_string(v.version) + " data " + v.data_hash + " grants";
  for (const auto& g : plan.grants) out += " " + g;
  out += " columns";
  for (const auto& c : plan.columns) {
    out += " " + c.source.name + (c.mask ? "(" + c.mask->ToString() + ")" : "");
  }
  if (plan.row_filter) out += " where " + plan.row_filter_text;
  return out;
}

Result<StepResult> RunStep(StepEnv& env) {
  const std::string& kind = env.step->kind;
  if (kind == "features") return RunFeatures(env);
  if (kind == "split") return RunSplit(env);
  if (kind == "train") return RunTrain(env);
  if (kind == "tune") return RunTune(env);
  if (kind == "evaluate") return RunEvaluate(env);
  if (kind == "condition") return RunCondition(env);
  if (kind == "register") return RunRegister(env);

  if (kind == "command") return RunCommand(env);

  if (kind == "fail")
    return FailedPrecondition(env.step->config.value("message", std::string("a fail step ran")));
  return InvalidArgument("unknown step kind " + kind);
}

}  // namespace takt::pipeline
