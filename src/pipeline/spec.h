// File: pipeline/spec.h
//
// A pipeline spec is YAML: a name, the project it belongs to, and an ordered
// list of built-in steps wired by name (`input: features`). Parsing validates
// everything a run would trip over later (unknown keys and kinds, references
// to missing steps, wrong types) and names the offending line.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace takt::pipeline {

struct StepSpec {
  std::string name;
  std::string kind;         // features, train, evaluate, condition, register
  int line = 0;             // 1-based line in the YAML
  std::string config_json;  // the step's keys as a JSON object (validated)
};

struct PipelineSpec {
  std::string name;
  std::string project;
  std::vector<StepSpec> steps;
  std::string source;  // the YAML as submitted
  std::string hash;    // SHA-256 of source (the code version of the run)
};

// The step kinds this version knows.
const std::vector<std::string>& StepKinds();

Result<PipelineSpec> ParsePipeline(std::string_view yaml);

// "auc >= 0.85 and recall > 0.5": a conjunction of metric comparisons.
struct Comparison {
  std::string metric;
  std::string op;  // >=, >, <=, <, ==, !=
  double value = 0;
};
Result<std::vector<Comparison>> ParseCondition(std::string_view expression);

}  // namespace takt::pipeline
