// File: serving/serving.h
//
// Endpoints: named online services in a stage (`weld-pm-dev`) that serve one
// approved model version. Deploying loads the model and swaps it in; requests
// already holding the old model finish on it (shared ownership), new requests
// see the new one.
//
// Thread-safe: Find/Predict may run on many threads while Deploy swaps.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "blob/blob_store.h"
#include "core/result.h"
#include "ml/xgboost_model.h"
#include "registry/registry.h"
#include "store/database.h"

namespace takt::serving {

struct Endpoint {
  std::string name;  // "<group>-<stage>"
  std::string stage;
  std::string model_group;
  int model_version = 0;
  std::string status;  // "InService", "Failed"
  std::string created_at;
  std::string updated_at;
  std::string last_event_id;
  std::string message;
};

struct LoadedModel {
  std::string endpoint;
  std::string group;
  int version = 0;
  std::vector<std::string> feature_names;
  std::unique_ptr<ml::XgbModel> model;
};

// Stages a model may be deployed to.
bool IsStage(std::string_view stage);

class ServingService {
 public:
  ServingService(store::Database* db, blob::BlobStore* blobs, registry::RegistryService* registry)
      : db_(db), blobs_(blobs), registry_(registry) {}

  Status Migrate();

  // Deploys an Approved version to `stage` as endpoint "<group>-<stage>".
  // Idempotent on event_id: an event delivered twice deploys once.
  // FailedPrecondition if the version is not Approved.
  Result<Endpoint> Deploy(const std::string& group, int version, const std::string& stage,
                          const std::string& event_id);
  // Loads every InService endpoint's model (at server start).
  Status LoadAll();

  Result<std::vector<Endpoint>> List() const;
  Result<Endpoint> Get(std::string_view name) const;
  // The model an endpoint serves now; NotFound if no such endpoint is serving.
  Result<std::shared_ptr<const LoadedModel>> Find(std::string_view name) const;

 private:
  Result<std::shared_ptr<const LoadedModel>> Load(const std::string& endpoint,
                                                  const registry::ModelVersion& v);

  store::Database* db_;
  blob::BlobStore* blobs_;
  registry::RegistryService* registry_;
  std::mutex deploy_mu_;  // serialises Deploy
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<const LoadedModel>, std::less<>> live_;
};

}  // namespace takt::serving
