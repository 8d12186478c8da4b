// File: pipeline/steps.h (internal to the pipeline module)
//
// The step kinds' implementations. The engine (runs.cc) resolves a step's
// inputs, builds a StepEnv and calls RunStep; a step returns its outputs
// (artifact blob ids and facts for later steps) and metrics, or an error
// with `env.failure` saying what kind of failure it was (for retry policies).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <string>

#include "blob/blob_store.h"
#include "catalog/catalog.h"
#include "core/json.h"
#include "core/result.h"
#include "ml/xgboost_model.h"
#include "pipeline/runs.h"
#include "pipeline/spec.h"
#include "registry/registry.h"
#include "store/database.h"

namespace takt::slurm {
class Client;
}

namespace takt::pipeline {

// What one finished step hands to the steps after it.
struct StepResult {
  Json outputs = Json::object();  // output name → blob id, plus facts ("feature_names", "label", ...)
  Json metrics = Json::object();
};

struct StepEnv {
  const Run* run = nullptr;
  const PipelineSpec* spec = nullptr;
  const StepSpec* step = nullptr;
  const std::map<std::string, StepResult>* upstream = nullptr;  // by step name (finished steps only)
  blob::BlobStore* blobs = nullptr;
  catalog::CatalogService* catalog = nullptr;
  registry::RegistryService* registry = nullptr;
  store::Database* db = nullptr;
  int attempt = 1;       // 1, 2, ... (also TAKT_ATTEMPT for command steps)
  std::string work_dir;  // scratch space of this attempt (command steps)
  const std::map<std::string, std::string>* files = nullptr;  // the run's code bundle
  std::function<void(const std::string&)> log;
  std::function<void(const std::string& metric, int round, double value)> curve;  // per-round points
  std::function<bool()> should_stop;         // cancelled or past the timeout
  std::function<std::string()> stop_reason;  // "timeout" or "cancelled" once should_stop() is true
  std::string failure = "error";  // set by a failing step: error, timeout, crash, memory, disk, cancelled
  // What the step read, for lineage and the cache key: dataset@version and access plan text.
  std::string read_dataset;
  int read_version = 0;
  // The Slurm executor (command steps with `executor: slurm`).
  const slurm::Client* slurm = nullptr;
  std::vector<std::string> step_exec;  // runs a sandbox spec on a node: {takt, internal, sandbox-exec}
  std::string slurm_job;               // set: reattach to this job of the same attempt (after a restart)
  std::function<void(const std::string& job_id)> on_job_submitted;  // records it for a reattach
  std::function<bool()> detaching;  // the server is stopping: leave the job running, do not cancel it
  // Removes a scratch folder later, off the step's critical path (unset: at once).
  std::function<void(const std::string& dir)> discard;
};

// The output `in` names, from the finished upstream step.
const Json& InputValue(const StepEnv& env, const InputRef& in);
const StepResult& InputStep(const StepEnv& env, const InputRef& in);

Result<StepResult> RunStep(StepEnv& env);

// Shared by train and tune: the training data, prepared once.
struct TrainingData {
  std::vector<std::string> features;
  std::string label;
  ml::Matrix x, xv;
  std::vector<float> y, yv;
  std::string validation_blob;  // the validation table, as an artifact
  Json facts;                   // what the input table carries (dataset, non_features, time)
};
Result<TrainingData> PrepareTraining(StepEnv& env);
ml::TrainOptions TrainOptionsOf(const Json& config);
// The step outputs of a trained model (train, and tune's best trial).
Result<StepResult> TrainedOutputs(StepEnv& env, const TrainingData& d, const ml::TrainOptions& opts,
                                  const ml::TrainResult& trained, double secs);

// The features step's dataset read plan, resolved before the step runs (for
// the cache key): "weld-telemetry@3 columns… masks… filter…".
Result<std::string> DescribeRead(const StepSpec& step, const std::string& project,
                                 catalog::CatalogService& catalog);

}  // namespace takt::pipeline
