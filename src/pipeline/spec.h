// File: pipeline/spec.h
//
// A pipeline spec is YAML: a name, the project it belongs to, typed
// parameters with defaults, and steps wired into a DAG by data (a step's input
// names another step's output) or by `depends_on`. Parsing validates
// everything a run would trip over later — unknown keys and kinds, references
// to missing steps or outputs, an output of the wrong type, cycles, parameter
// types — and names the offending line. Parameters are substituted where a
// value is exactly `${params.NAME}` (keeping the parameter's type) or inside
// a string ("model-${params.NAME}").
//
//   parameters:
//     rounds: {type: int, default: 150, min: 1, max: 5000}
//   steps:
//     - name: features
//       kind: features
//       dataset: weld-telemetry
//     - name: train
//       kind: train
//       input: features              # step (its default output) or step.output
//       rounds: ${params.rounds}
//       retry: {attempts: 3, backoff: 2s, on: [error, timeout]}
//       timeout: 10m
//
// A condition step gates every step written after it (they wait for it and
// are skipped when it is not met). Every step accepts the common keys: depends_on, retry, timeout, resources
// {cpus, memory, time, disk}, executor (local | slurm), cache (bool),
// on_failure (stop | continue) and network (bool; command steps only).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/result.h"

namespace takt::pipeline {

// What flows along an edge of the DAG.
enum class ArtifactType { kTable, kModel, kMetrics, kFiles };
std::string_view ArtifactTypeName(ArtifactType t);

struct ParamSpec {
  std::string name;
  std::string type;  // int, number, string, bool
  Json default_value;
  std::optional<double> min, max;  // int and number
  std::vector<Json> choices;       // optional: the allowed values
  std::string description;
  int line = 0;
};

// An input of a step: `name` (the key it is given under, e.g. "input" or
// "inputs.validation") bound to `step`'s output `output`.
struct InputRef {
  std::string name;
  std::string step;
  std::string output;
  ArtifactType type = ArtifactType::kTable;
  int line = 0;
};

struct RetryPolicy {
  int attempts = 1;            // total tries, 1 = no retry
  double backoff_seconds = 1;  // before the second try; doubles each time
  double max_backoff_seconds = 300;
  // Which failures are retried: error (the step failed), timeout, crash
  // (killed by a signal), memory, disk, lost (the server or node went away).
  std::vector<std::string> on = {"error", "timeout", "crash", "lost"};
  bool Retries(std::string_view failure) const;
};

struct Resources {
  int cpus = 1;
  int64_t memory_bytes = 0;  // 0 = no limit
  double time_seconds = 0;   // the Slurm time limit; defaults to the timeout
  int64_t disk_bytes = 0;    // quota for what a command step writes; 0 = default
};

struct StepSpec {
  std::string name;
  std::string kind;  // features, split, train, tune, evaluate, condition, register, fail, command
  int line = 0;
  Json config = Json::object();         // the kind's own keys, parameters substituted, validated
  std::vector<InputRef> inputs;         // data edges
  std::vector<std::string> depends_on;  // explicit ordering edges (without data)
  std::string executor = "local";       // local | slurm
  RetryPolicy retry;
  double timeout_seconds = 0;  // 0 = none
  Resources resources;
  bool cache = true;
  bool network = false;
  std::string on_failure =
      "stop";  // stop: cancel what has not started; continue: run what does not depend on it
  // Every step this one waits for: inputs' steps and depends_on, sorted, unique.
  std::vector<std::string> upstream() const;
  const InputRef* Input(std::string_view name) const;
};

struct PipelineSpec {
  std::string name;
  std::string project;
  std::string description;
  std::vector<ParamSpec> parameters;
  Json params = Json::object();  // the values used: defaults with overrides applied
  std::vector<StepSpec> steps;   // as written; a valid DAG
  std::string source;            // the YAML as submitted
  std::string hash;              // SHA-256 of source (the code version of the run)
  const StepSpec* Step(std::string_view name) const;
};

// The step kinds this version knows.
const std::vector<std::string>& StepKinds();

// The outputs a step of `kind` produces (for command steps, the declared
// ones plus `model` and `metrics`).
std::map<std::string, ArtifactType> OutputsOf(const StepSpec& step);
// The output an input names when it gives only a step: features → features,
// split → train, train/tune → model, evaluate → metrics, command → model if
// it declares none else its first declared output.
std::string DefaultOutput(const StepSpec& step);

// Parses and validates. `overrides` ({"rounds": 300} or {"rounds": "300"}:
// strings from the command line are converted to the parameter's type) must
// name declared parameters.
Result<PipelineSpec> ParsePipeline(std::string_view yaml, const Json& overrides = Json::object());

// "auc >= 0.85 and recall > 0.5": a conjunction of metric comparisons.
struct Comparison {
  std::string metric;
  std::string op;  // >=, >, <=, <, ==, !=
  double value = 0;
};
Result<std::vector<Comparison>> ParseCondition(std::string_view expression);

// "90s", "10m", "2h", "1.5", "500ms" → seconds; InvalidArgument otherwise.
Result<double> ParseDuration(std::string_view text);
// "512Mi", "2Gi", "1G", "1000000" → bytes; InvalidArgument otherwise.
Result<int64_t> ParseBytes(std::string_view text);

}  // namespace takt::pipeline
