// The tune step: `trials` XGBoost trainings over a search space, `parallel`
// at a time, proposed by random search or TPE (tune/), weak trials stopped by
// the median rule on their per-round validation metric. Every trial is a run
// of its own (kind "trial", parent = the pipeline's run) with its parameters,
// curves and final metric, so trials compare like any other run. The best
// trial's model is the step's `model` output.
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "core/time.h"
#include "ml/xgboost_model.h"
#include "pipeline/steps.h"
#include "tune/direction.h"
#include "tune/median_stopper.h"
#include "tune/sampler.h"
#include "tune/search_space.h"

namespace takt::pipeline {

namespace {

std::string Fixed(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string ParamText(const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

struct TrialOutcome {
  std::optional<ml::TrainResult> trained;
  double seconds = 0;
  std::string error;
};

}  // namespace

Result<StepResult> RunTune(StepEnv& env) {
  const Json& config = env.step->config;
  auto space = tune::SearchSpace::FromJson(config["space"]);
  if (!space) return std::unexpected(space.error().WithContext("step " + env.step->name + ": space"));
  TAKT_ASSIGN_OR_RETURN(TrainingData d, PrepareTraining(env));
  const ml::TrainOptions base = TrainOptionsOf(config);
  const std::string eval_metric = base.params.at("eval_metric");
  const std::string metric = config.value("metric", "holdout_" + eval_metric);
  if (metric != "holdout_" + eval_metric) {
    return InvalidArgument("step " + env.step->name + ": metric '" + metric +
                           "' is not tracked per round; trials are " + "scored on holdout_" + eval_metric +
                           " (set params.eval_metric to change it)");
  }
  tune::Direction direction = tune::Direction::kMinimize;
  if (config.contains("direction")) {
    TAKT_ASSIGN_OR_RETURN(direction, tune::ParseDirection(config["direction"].get<std::string>()));
  } else if (auto dm = tune::DirectionOfMetric(eval_metric)) {
    direction = *dm;
  }
  const int n_trials = std::max(1, config.value("trials", 20));
  const int parallel = std::clamp(config.value("parallel", 2), 1, n_trials);
  const uint64_t seed = config.value("seed", 7);
  std::unique_ptr<tune::Sampler> sampler = config.value("sampler", "tpe") == "random"
                                               ? tune::MakeRandomSampler(*space, seed)
                                               : tune::MakeTpeSampler(*space, direction, seed);
  const Json stopping = config.value("early_stopping", Json::object());
  const bool stop_weak = stopping.value("enabled", true);
  tune::MedianStopper stopper(direction, stopping.value("grace_rounds", 10), stopping.value("min_trials", 3));
  env.log("tuning: " + std::to_string(n_trials) + " trials, " + std::to_string(parallel) + " at a time, " +
          config.value("sampler", "tpe") + " sampler, " + std::string(tune::DirectionName(direction)) + " " +
          metric + (stop_weak ? ", median-rule early stopping" : ""));

  std::mutex mu;  // sampler, history, outcomes, next
  std::vector<tune::Trial> history;
  std::vector<TrialOutcome> outcomes(static_cast<size_t>(n_trials));
  std::vector<std::string> trial_runs(static_cast<size_t>(n_trials));
  int next = 0;
  auto worker = [&] {
    while (true) {
      int id;
      Json point;
      {
        std::lock_guard lock(mu);
        if (next >= n_trials || env.should_stop()) return;
        id = next++;
        point = sampler->Propose(history);
        history.push_back({id, point, std::nullopt, false});
      }
      // The trial's own run record.
      const std::string trial_run = NewId("run");
      trial_runs[static_cast<size_t>(id)] = trial_run;
      Json params = base.params;
      for (const auto& [k, v] : point.items()) params[k] = ParamText(v);
      IgnoreError(env.db->Transaction([&](store::Database& tx) -> Status {
        const std::string now = NowIso();
        TAKT_RETURN_IF_ERROR(tx.Exec(
            "INSERT INTO runs (id, pipeline, project, status, created_by, created_at, started_at, "
            "finished_at, error, "
            "spec_hash, spec, params_json, git_commit, parent_run, kind, no_cache, files_blob) VALUES (?, ?, "
            "?, "
            "'running', ?, ?, ?, '', '', ?, '', ?, ?, ?, 'trial', 0, '')",
            {trial_run, env.run->pipeline + "/" + env.step->name, env.run->project, env.run->created_by, now,
             now, env.run->spec_hash, point.dump(), env.run->git_commit, env.run->id}));
        TAKT_RETURN_IF_ERROR(
            tx.Exec("INSERT INTO run_steps (run_id, position, name, kind, status, started_at, finished_at, "
                    "error, outputs_json, metrics_json, attempt, executor) VALUES (?, 0, 'train', "
                    "'train', 'running', ?, '', '', '{}', '{}', 1, 'local')",
                    {trial_run, now}));
        return Ok();
      }));
      ml::TrainOptions opts = base;
      for (const auto& [k, v] : point.items()) opts.params[k] = ParamText(v);
      if (parallel > 1) opts.nthread = 1;
      bool pruned = false;
      int pruned_at = -1;
      std::vector<std::tuple<std::string, int, double>> curve;
      opts.on_round = [&](int round, double train, double valid) {
        if (!std::isnan(train)) curve.emplace_back("train_" + eval_metric, round, train);
        if (!std::isnan(valid)) curve.emplace_back("holdout_" + eval_metric, round, valid);
        if (env.should_stop()) return false;
        if (stop_weak && !std::isnan(valid) && stopper.Report(id, round, valid)) {
          pruned = true;
          pruned_at = round;
          return false;
        }
        return true;
      };
      auto t0 = std::chrono::steady_clock::now();
      auto trained = ml::Train(d.x, d.y, &d.xv, &d.yv, opts);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      stopper.Finish(id);
      std::optional<double> value;
      if (trained && !trained->curve.empty()) value = trained->curve.back().second;
      std::string status = trained ? (pruned ? "pruned" : "succeeded") : "failed";
      if (trained && !pruned && env.should_stop()) status = "cancelled";
      std::string line =
          "trial " + std::to_string(id + 1) + "/" + std::to_string(n_trials) + ": " + point.dump();
      if (trained) {
        line += " → " + metric + "=" + (value ? Fixed(*value) : "n/a") +
                (pruned ? " (stopped at round " + std::to_string(pruned_at + 1) + ": worse than the median)"
                        : "");
      } else {
        line += " failed: " + trained.error().message();
      }
      env.log(line);
      IgnoreError(env.db->Transaction([&](store::Database& tx) -> Status {
        const std::string now = NowIso();
        for (const auto& [name, round, v] : curve) {
          TAKT_RETURN_IF_ERROR(
              tx.Exec("INSERT INTO run_metrics (run_id, step, name, round, value) VALUES (?, 'train', ?, "
                      "?, ?) ON CONFLICT DO NOTHING",
                      {trial_run, name, int64_t{round}, v}));
        }
        Json metrics = Json::object();
        if (value) {
          metrics[metric] = *value;
          TAKT_RETURN_IF_ERROR(
              tx.Exec("INSERT INTO run_metrics (run_id, step, name, round, value) VALUES (?, 'train', ?, "
                      "-1, ?) ON CONFLICT DO NOTHING",
                      {trial_run, metric, *value}));
        }
        const std::string run_status = status == "pruned" ? "succeeded" : status;
        TAKT_RETURN_IF_ERROR(
            tx.Exec("UPDATE run_steps SET status = ?, finished_at = ?, metrics_json = ?, error = ? "
                    "WHERE run_id = ? AND name = 'train'",
                    {run_status, now, metrics.dump(), status == "pruned" ? "pruned by the median rule" : "",
                     trial_run}));
        TAKT_RETURN_IF_ERROR(
            tx.Exec("UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                    {run_status, now,
                     status == "pruned" ? "stopped early: worse than the median of the other trials"
                     : trained          ? ""
                                        : trained.error().message(),
                     trial_run}));
        return Ok();
      }));
      std::lock_guard lock(mu);
      for (auto& t : history) {
        if (t.id == id) {
          t.value = value;
          t.pruned = pruned;
        }
      }
      auto& o = outcomes[static_cast<size_t>(id)];
      o.seconds = secs;
      if (trained) {
        if (!pruned) o.trained = std::move(*trained);
      } else {
        o.error = trained.error().message();
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < parallel; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (env.should_stop()) {
    env.failure = env.stop_reason();
    return MakeError(
        Code::kUnavailable,
        "tuning was " + std::string(env.failure == "timeout" ? "stopped at its time limit" : "cancelled"));
  }

  int best = -1;
  int pruned = 0, failed = 0;
  for (int i = 0; i < n_trials; ++i) {
    const auto& o = outcomes[static_cast<size_t>(i)];
    if (!o.error.empty()) ++failed;
    if (!o.trained) {
      if (o.error.empty()) ++pruned;
      continue;
    }
    const double v = o.trained->curve.empty() ? NAN : o.trained->curve.back().second;
    if (std::isnan(v)) continue;
    if (best < 0) {
      best = i;
      continue;
    }
    const double bv = outcomes[static_cast<size_t>(best)].trained->curve.back().second;
    if (direction == tune::Direction::kMinimize ? v < bv : v > bv) best = i;
  }
  if (best < 0) {
    std::string why;
    for (const auto& o : outcomes) {
      if (!o.error.empty()) {
        why = o.error;
        break;
      }
    }
    return FailedPrecondition("no trial finished with a score" + (why.empty() ? "" : " (e.g. " + why + ")"));
  }
  Json best_point;
  for (const auto& t : history) {
    if (t.id == best) best_point = t.params;
  }
  ml::TrainOptions best_opts = base;
  for (const auto& [k, v] : best_point.items()) best_opts.params[k] = ParamText(v);
  const auto& bo = outcomes[static_cast<size_t>(best)];
  TAKT_ASSIGN_OR_RETURN(StepResult r, TrainedOutputs(env, d, best_opts, *bo.trained, bo.seconds));
  r.outputs["best_trial"] = trial_runs[static_cast<size_t>(best)];
  r.outputs["best_params"] = best_point;
  r.outputs["trial_runs"] = trial_runs;
  r.metrics["best_" + metric] = bo.trained->curve.back().second;
  r.metrics["trials"] = n_trials;
  r.metrics["trials_pruned"] = pruned;
  r.metrics["trials_failed"] = failed;
  env.log("best: trial " + std::to_string(best + 1) + " (" + trial_runs[static_cast<size_t>(best)] + ") " +
          best_point.dump() + " " + metric + "=" + Fixed(bo.trained->curve.back().second) + "; " +
          std::to_string(pruned) + " of " + std::to_string(n_trials) + " trials stopped early");
  return r;
}

}  // namespace takt::pipeline
