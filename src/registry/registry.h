// File: registry/registry.h
//
// The model registry: model groups (one per use case) and their numbered
// versions with the artifact, the features the model expects, metrics,
// parameters, lineage (dataset version and run) and an approval status.
// Approving or rejecting a version writes an event to the outbox in the same
// transaction, which starts the release (the `deploy` target).
//
// Thread-safe: no state outside the database and blob store.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"
#include "store/database.h"

namespace takt::registry {

inline constexpr const char* kPending = "PendingManualApproval";
inline constexpr const char* kApproved = "Approved";
inline constexpr const char* kRejected = "Rejected";

struct ModelVersion {
  std::string group;
  int version = 0;
  std::string status = kPending;
  std::string framework = "xgboost";
  std::string blob_id;                     // the model file (XGBoost JSON), encrypted
  std::vector<std::string> feature_names;  // the input the model expects, in order
  std::string metrics_json = "{}";
  std::string params_json = "{}";
  std::string dataset;  // lineage
  int dataset_version = 0;
  std::string run_id;
  std::string created_by;  // the principal that started the run
  std::string created_at;
  std::string decided_by;  // who approved or rejected it
  std::string decided_at;
  std::string comment;
};

struct ModelGroup {
  std::string name;
  std::string project;
  std::string created_at;
  int latest_version = 0;
  int approved_versions = 0;
};

class RegistryService {
 public:
  explicit RegistryService(store::Database* db) : db_(db) {}

  Status Migrate();

  // Registers a new version (numbered max+1) in `tx`, creating the group on
  // first use. Fills version and created_at. Emits io.takt.model.version.registered.
  Result<ModelVersion> Register(store::Database& tx, ModelVersion v, const std::string& project);

  // PendingManualApproval or Rejected → Approved. PermissionDenied when the
  // approver started the run that produced the version; Conflict when it is
  // already approved; NotFound for an unknown group or version.
  Result<ModelVersion> Approve(const std::string& group, int version, const std::string& principal,
                               const std::string& comment);
  Result<ModelVersion> Reject(const std::string& group, int version, const std::string& principal,
                              const std::string& comment);

  Result<std::vector<ModelGroup>> ListGroups() const;
  Result<std::vector<ModelVersion>> ListVersions(const std::string& group) const;
  Result<ModelVersion> GetVersion(const std::string& group, int version) const;

 private:
  Result<ModelVersion> Decide(const std::string& group, int version, const std::string& principal,
                              const std::string& comment, bool approve);
  store::Database* db_;
};

}  // namespace takt::registry
