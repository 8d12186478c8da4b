// File: serving/serving.h
//
// Endpoints: named online services in a stage (`weld-pm-dev`) that serve one
// or more approved model versions, the variants, each with a share of the
// traffic (a canary: v4 at 10 %, v3 at 90 %; blue/green: the new one at 0 %
// until traffic flips). Changing variants loads every new model first, then
// swaps the whole set at once; requests already holding a model finish on it
// (shared ownership), new requests see the new set.
//
// Each served request's outcome (status, latency) is recorded per variant in
// a bounded window, for the release's canary alarms and the endpoint's
// request log.
//
// Thread-safe: Route/Predict/Record may run on many threads while variants
// change.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include <filesystem>

#include "blob/blob_store.h"
#include "core/result.h"
#include "crypto/keyring.h"
#include "ml/tree_engine.h"
#include "ml/xgboost_model.h"
#include "registry/registry.h"
#include "serving/metrics.h"
#include "store/database.h"

namespace takt::serving {

// One model version served by an endpoint, with its share of the traffic.
struct Variant {
  std::string name;  // "<group>-v<version>", the SageMaker production variant name
  int model_version = 0;
  int weight = 100;  // percent of requests without a target variant; weights sum to 100
};

struct Endpoint {
  std::string name;  // "<group>-<stage>"
  std::string stage;
  std::string model_group;
  int model_version = 0;  // the variant with the largest weight (the stable one)
  std::string status;     // "InService", "Failed"
  std::string created_at;
  std::string updated_at;
  std::string last_event_id;
  std::string message;
  std::vector<Variant> variants;
  std::string settings_json = "{}";  // replicas, autoscaling, capture: from the release config
};

// What scores a model version: the compiled tree engine (ml/tree_engine.h),
// or XGBoost itself for models the engine does not take (gblinear).
struct Scorer {
  std::unique_ptr<ml::TreeEnsemble> engine;
  std::unique_ptr<ml::XgbModel> model;
  size_t num_features = 0;
  size_t num_outputs = 1;

  // Scores n rows (n x num_features, NaN = missing) into out (n x
  // num_outputs). Thread-safe.
  Status Score(const float* rows, size_t n, float* out) const;
};

// Makes a Scorer from a model file's bytes (XGBoost JSON or UBJSON).
Result<std::shared_ptr<const Scorer>> MakeScorer(std::string_view bytes);

// One model version as an endpoint serves it: what requests need to know of
// it (features, outputs, names), and its Scorer. The scorer is in memory
// while somebody holds it: the variant's replicas, a smoke test, a warm-up.
// With `reload` set, the model keeps no reference of its own, so an endpoint
// scaled to zero frees the model's memory, and its next replica loads it
// again (a cold start). Without `reload` (tests), SetScorer pins it.
struct LoadedModel {
  std::string endpoint;
  std::string variant;  // "<group>-v<version>"
  std::string group;
  int version = 0;
  std::vector<std::string> feature_names;
  size_t num_outputs = 1;  // per row
  std::function<Result<std::shared_ptr<const Scorer>>()> reload;

  void SetScorer(std::shared_ptr<const Scorer> scorer) const;
  // The scorer, loaded again (through `reload`) if nobody held it. Thread-safe.
  Result<std::shared_ptr<const Scorer>> Acquire() const;
  // The scorer if it is in memory now, else null.
  std::shared_ptr<const Scorer> Resident() const;
  // Scores through Acquire(): for warm-ups and smoke tests; replicas hold
  // their scorer instead. Thread-safe.
  Status Score(const float* rows, size_t n, float* out) const;

 private:
  mutable std::mutex mu_;
  mutable std::weak_ptr<const Scorer> weak_;
  mutable std::shared_ptr<const Scorer> pinned_;  // without `reload`
};

class VariantRuntime;
struct RuntimeSettings;
class CaptureWriter;
class EndpointMetrics;

// An endpoint as it serves now: what a request needs without the database.
// Immutable once published; a change of variants or settings publishes a new
// one (requests holding the old one finish on it).
struct LiveEndpoint {
  std::string name;
  std::string stage;
  std::string group;
  std::vector<std::shared_ptr<VariantRuntime>> variants;
  std::vector<int> weights;
  std::string settings_json;
  EndpointMetrics* metrics = nullptr;      // rejections, capture counters
  std::shared_ptr<CaptureWriter> capture;  // set when the endpoint captures requests
  // The variant for a request: by `pick` in [0, 100) over the weights, or the
  // named one. nullptr if the name is unknown.
  VariantRuntime* Pick(double pick) const;
  VariantRuntime* Named(std::string_view variant) const;
  std::string VariantNames() const;  // "weld-pm-v3, weld-pm-v4"
};

// Stages a model may be deployed to.
bool IsStage(std::string_view stage);
std::string VariantName(std::string_view group, int version);

// Outcomes of an endpoint variant's requests in a window of time.
struct VariantStats {
  int64_t requests = 0;
  int64_t errors = 0;  // status >= 400 (a client the model does not fit counts too)
  double error_rate = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

// One served request, for the endpoint's request log.
struct RequestRecord {
  int64_t time_ms = 0;
  std::string variant;
  int status = 0;
  double latency_ms = 0;
  std::string error;  // the message of a failed request, "" otherwise
};

class ServingService {
 public:
  ServingService(store::Database* db, blob::BlobStore* blobs, registry::RegistryService* registry);

  Status Migrate();

  // Deploys an Approved version to `stage` as endpoint "<group>-<stage>".
  // Idempotent on event_id: an event delivered twice deploys once.
  // FailedPrecondition if the version is not Approved.
  Result<Endpoint> Deploy(const std::string& group, int version, const std::string& stage,
                          const std::string& event_id);
  // Sets the variants of endpoint "<group>-<stage>" (creating it), all at
  // once: every version must be Approved and load; weights are 0-100 and sum
  // to 100. `key`, when not empty, makes the call idempotent like Deploy's
  // event id. `settings_json` ("" keeps the current) is stored with the
  // endpoint. Nothing changes when any check or load fails.
  Result<Endpoint> SetVariants(const std::string& group, const std::string& stage,
                               std::vector<Variant> variants, const std::string& key,
                               const std::string& settings_json = "", const std::string& message = "");
  // Stops serving and deletes the endpoint; NotFound if there is none.
  Status Remove(const std::string& name, const std::string& message);
  // Loads every InService endpoint's model (at server start).
  Status LoadAll();
  // The autoscaler: a thread that ticks every variant's runtime (about every
  // 250 ms) and stops runtimes that were swapped out once idle. Stop() also
  // stops every runtime (queued requests are scored first).
  void Start();
  void Stop();
  ~ServingService();

  // Captures requests of endpoints whose settings ask for it into encrypted
  // segments under `root` (serving/capture.h). Without it nothing is captured.
  void EnableCapture(std::filesystem::path root, const crypto::Keyring* keyring);
  // Writes what an endpoint's capture holds in memory to a segment now (so a
  // reader sees the latest requests). Ok if the endpoint captures nothing.
  Status FlushCapture(std::string_view endpoint);
  const std::filesystem::path& capture_root() const { return capture_root_; }
  // Every endpoint's and variant's series, for /metrics.
  Metrics& metrics() { return *metrics_; }

  // The endpoint as it serves now, without locks or database reads (a
  // per-thread snapshot, refreshed when an endpoint changes). NotFound if it
  // is not serving.
  Result<std::shared_ptr<const LiveEndpoint>> Live(std::string_view name) const;
  // Every serving endpoint (metrics, readiness).
  std::vector<std::shared_ptr<const LiveEndpoint>> LiveEndpoints() const;

  Result<std::vector<Endpoint>> List() const;
  Result<Endpoint> Get(std::string_view name) const;
  // The model an endpoint serves now; NotFound if no such endpoint is serving.
  // Picks a variant by weight with `pick` in [0, 100) (Find draws one).
  Result<std::shared_ptr<const LoadedModel>> Find(std::string_view name) const;
  Result<std::shared_ptr<const LoadedModel>> Route(std::string_view name, double pick) const;
  // The named variant ("weld-pm-v3"), whatever its weight (the target-variant
  // header; smoke tests of a variant at 0 %). NotFound names the variants.
  // Scores n rows (n x features) on the named variant's replicas, as a
  // request would (its queue, batching, a cold start), and waits for the
  // answer: the release's smoke test. `out` gets n x num_outputs values.
  // NotFound for an unknown endpoint or variant; the runtime's refusals
  // (ResourceExhausted when its queues are full, Unavailable when stopping).
  Status Invoke(std::string_view name, std::string_view variant, const std::vector<float>& rows, size_t n,
                std::vector<float>* out) const;
  Result<std::shared_ptr<const LoadedModel>> FindVariant(std::string_view name,
                                                         std::string_view variant) const;

  // Request outcomes, kept for the last kWindow requests per variant.
  static constexpr size_t kWindow = 4096;
  void Record(std::string_view endpoint, std::string_view variant, int status, double latency_ms,
              std::string_view error = {});
  VariantStats Stats(std::string_view endpoint, std::string_view variant, int64_t since_ms) const;
  // Newest first, at most `limit`.
  std::vector<RequestRecord> RecentRequests(std::string_view endpoint, size_t limit) const;

 private:
  using Snapshot = std::map<std::string, std::shared_ptr<const LiveEndpoint>, std::less<>>;
  struct Loaded {
    std::shared_ptr<const LoadedModel> model;
    std::shared_ptr<const Scorer> scorer;  // the model keeps only a weak reference
  };
  Result<Loaded> Load(const std::string& endpoint, const registry::ModelVersion& v);
  Result<std::shared_ptr<const LiveEndpoint>> LoadVariants(const std::string& endpoint,
                                                           const std::string& stage, const std::string& group,
                                                           const std::vector<Variant>& variants,
                                                           const std::string& settings_json);
  // Publishes `live` for its endpoint (nullptr removes it); runtimes no longer
  // served go to the retired list. Under deploy_mu_.
  void Publish(const std::string& name, std::shared_ptr<const LiveEndpoint> live);
  std::shared_ptr<const Snapshot> Current() const;
  void Autoscale();

  store::Database* db_;
  blob::BlobStore* blobs_;
  registry::RegistryService* registry_;
  std::unique_ptr<Metrics> metrics_;  // before the runtimes, which point into it
  std::mutex deploy_mu_;              // serialises Deploy
  // The published endpoints: replaced whole under publish_mu_, read through
  // per-thread copies that are refreshed when generation_ moves.
  mutable std::mutex publish_mu_;
  std::shared_ptr<const Snapshot> snapshot_ = std::make_shared<Snapshot>();
  std::atomic<uint64_t> generation_;
  struct Retired {
    std::shared_ptr<VariantRuntime> runtime;
    int64_t since_ms;
  };
  std::vector<Retired> retired_;  // under publish_mu_
  std::filesystem::path capture_root_;
  const crypto::Keyring* keyring_ = nullptr;
  std::map<std::string, std::shared_ptr<CaptureWriter>, std::less<>> captures_;  // under deploy_mu_
  std::thread autoscaler_;
  std::mutex autoscaler_mu_;
  std::condition_variable autoscaler_cv_;
  bool autoscaler_stop_ = false;
  mutable std::mutex stats_mu_;
  std::map<std::string, std::vector<RequestRecord>, std::less<>> requests_;  // ring per endpoint
  std::map<std::string, size_t, std::less<>> next_;                          // ring positions
};

}  // namespace takt::serving
