// File: release/config.h
//
// A model group's release pipeline, as its project writes it (release.yaml):
// the stages a version travels (dev, int, prod, in order), per-stage endpoint
// settings and traffic strategy, and the gates a version passes in each:
//
//   model_group: weld-pm
//   stages:
//     - name: dev
//       replicas: {min: 1, max: 2}
//       autoscaling: {target_in_flight: 4, scale_to_zero: true}
//       capture: 100                  # percent of requests captured for monitoring
//       strategy: {type: all-at-once}
//       gates:
//         - smoke_test: {requests: 20, max_p99_latency: 250ms}
//     - name: int
//       gates:
//         - quality: {metric: auc, compare_to: prod, max_regression: 0.01}
//         - approval: {approvers: 1, persona: approver, timeout: 72h}
//         - smoke_test: true
//     - name: prod
//       strategy: {type: canary, percent: 10, duration: 15m, min_requests: 50,
//                  rollback_on: {error_rate: 0.01, p99_latency: 500ms}}
//       gates:
//         - quality: {metric: auc, compare_to: prod, max_regression: 0.01}
//         - approval: {approvers: 2, persona: approver, group: weld-pm-prod-approvers}
//         - smoke_test: true
//
// Gate order: quality and approval guard the entry to a stage (they run
// before anything is deployed there, in the order written); the smoke test
// runs on the newly deployed variant before it gets traffic. A stage without
// a smoke_test gate gets none.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace takt::release {

enum class Strategy { kAllAtOnce, kBlueGreen, kCanary };
std::string_view StrategyName(Strategy s);

struct SmokeTest {
  int requests = 20;                 // one row each, cycling through the version's sample rows
  double max_p99_latency_ms = 1000;  // a smoke test, not a benchmark: generous by default
};

struct QualityGate {
  std::string metric;            // a metric the versions registered, e.g. "auc"
  std::string compare_to;        // the stage whose live version is the baseline
  double max_regression = 0.0;   // how much worse than the baseline the candidate may be
  bool higher_is_better = true;  // `direction: max` (auc, accuracy) or `min` (rmse, logloss)
};

struct ApprovalGate {
  int approvers = 1;                 // distinct principals, none of them the version's author
  std::string persona = "approver";  // each must hold it
  std::string group;                 // and, when set, be a member of this group
  double timeout_seconds = 7 * 86400.0;
};

struct StageConfig {
  std::string name;
  int min_replicas = 1;
  int max_replicas = 1;
  double target_in_flight = 4;  // autoscaling: in-flight requests per replica
  bool scale_to_zero = false;
  double scale_out_cooldown_seconds = 10;
  double scale_in_cooldown_seconds = 60;
  double idle_to_zero_seconds = 300;  // with scale_to_zero: no request for this long → 0 replicas
  int max_batch_size = 32;            // dynamic batching: rows per scoring call
  double max_batch_wait_us = 0;       // how long a batch may wait to fill; 0 = never wait
  int queue_capacity = 128;           // waiting requests per replica; beyond → 429
  int capture_percent = 0;
  Strategy strategy = Strategy::kAllAtOnce;
  // canary: `percent` of traffic on the new version for `duration`, then all.
  // blue-green: traffic flips at once, the old version stays loaded for
  // `duration` (the bake) and comes back if an alarm fires.
  int canary_percent = 10;
  double duration_seconds = 0;
  int min_requests = 20;         // fewer requests than this in the window: no verdict yet
  double max_error_rate = 0.01;  // alarms during the canary or bake
  double max_p99_latency_ms = 500;
  std::optional<SmokeTest> smoke_test;
  std::optional<QualityGate> quality;
  std::optional<ApprovalGate> approval;
  std::vector<std::string> entry_gates;  // "quality", "approval" in the order written
};

struct ReleaseConfig {
  std::string model_group;
  std::vector<StageConfig> stages;
  std::string yaml;  // as written ("" for the default)

  const StageConfig* Stage(std::string_view name) const;
  std::string StageNames() const;  // "dev, int, prod"
};

// Parses and checks a release config. Errors name the place: "release.yaml:
// stages[1].gates[0].quality.compare_to: stage 'staging' is not one of the
// stages (dev, int, prod)".
Result<ReleaseConfig> ParseConfig(std::string_view yaml, std::string_view file = "release.yaml");

// What a group gets without a config of its own: dev (all-at-once, smoke
// test), int (quality against prod, one approval, smoke test), prod (quality,
// one approval, smoke test, all-at-once).
ReleaseConfig DefaultConfig(const std::string& model_group);

// The endpoint settings a stage's endpoint is created with (JSON text).
std::string EndpointSettingsJson(const StageConfig& stage);

}  // namespace takt::release
