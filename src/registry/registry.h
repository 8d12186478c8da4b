// File: registry/registry.h
//
// The model registry: model groups (one per use case, owned by a project, with
// a description and key=value tags) and their numbered versions with the
// artifact, the input schema the model expects, metrics, parameters, lineage
// (dataset version and run, or none for an imported model), a model card,
// sample rows for smoke tests and an approval status. Every change to a
// version (registered, approved, rejected, alias moved, metadata updated) is a
// row of its history. Aliases (`champion`, `challenger`, ...) name versions;
// `Resolve` turns a number or an alias into a version. Changes that others
// react to (registered, approved, rejected, alias moved) write an event to the
// outbox in the same transaction; the approval event starts the release.
//
// Who may do what is the caller's business (routes check actions and project
// membership); the registry itself enforces what holds for every caller: the
// principal that produced a version never decides it, only an Approved version
// is champion, a group belongs to one project.
//
// Thread-safe: no state outside the database.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "store/database.h"

namespace takt::registry {

inline constexpr const char* kPending = "PendingManualApproval";
inline constexpr const char* kApproved = "Approved";
inline constexpr const char* kRejected = "Rejected";

// Where a version came from.
inline constexpr const char* kSourceRun = "run";        // the register step of a pipeline run
inline constexpr const char* kSourceImport = "import";  // a file trained elsewhere (takt model register)

// Outbox event types of the registry besides events::kModelVersion*.
inline constexpr const char* kModelAliasMoved = "io.takt.model.alias.moved";
inline constexpr const char* kModelAliasDeleted = "io.takt.model.alias.deleted";

// The alias that release pipelines deploy; it may name only an Approved version.
inline constexpr const char* kChampion = "champion";

// Sample rows kept per version, at most.
inline constexpr size_t kMaxSampleRows = 20;

// One input of a model. type: float, int, bool or category.
struct Feature {
  std::string name;
  std::string type = "float";
  bool operator==(const Feature&) const = default;
};

// A model card, stored and exchanged as a JSON object of strings:
// {"intended_use": ..., "limitations": ..., "training_data": ...,
//  "ethical_considerations": ..., "notes": ...}; the first three are required
// (non-empty) in a card that is given at all, the last two optional.
struct ModelCard {
  std::string intended_use;
  std::string limitations;
  std::string training_data;
  std::string ethical_considerations;
  std::string notes;
  bool operator==(const ModelCard&) const = default;
};

struct ModelVersion {
  std::string group;
  int version = 0;
  std::string status = kPending;
  std::string framework = "xgboost";
  std::string blob_id;                     // the model file, encrypted, bytes as registered
  std::string artifact_format = "json";    // "json" or "ubj": how the model file is encoded
  std::vector<std::string> feature_names;  // the input the model expects, in order (= schema's names)
  std::vector<Feature> schema;             // the same input with types
  std::string metrics_json = "{}";
  std::string params_json = "{}";
  std::string dataset;  // lineage; empty for an imported model
  int dataset_version = 0;
  std::string run_id;
  std::string created_by;     // who produced it: the principal that started the run, or the importer
  std::string registered_by;  // who registered it (the run's launcher for the register step)
  std::string source = kSourceRun;
  std::string created_at;
  std::string decided_by;  // who approved or rejected it
  std::string decided_at;
  std::string comment;
  std::optional<ModelCard> card;
  // Up to kMaxSampleRows rows of the features, in feature order, NaN = missing.
  std::vector<std::vector<double>> sample_rows;
  std::vector<std::string> aliases;  // filled when read: the aliases naming this version
};

struct ModelGroup {
  std::string name;
  std::string project;
  std::string description;
  std::map<std::string, std::string> tags;
  std::string created_by;
  std::string created_at;
  int latest_version = 0;
  int approved_versions = 0;
  std::map<std::string, int> aliases;  // alias → version
};

// Changes to a group's metadata; what is not given stays as it is.
struct GroupUpdate {
  std::optional<std::string> description;
  std::map<std::string, std::string> set_tags;
  std::vector<std::string> remove_tags;
};

// One change of a version (or of the group's metadata: version 0).
struct HistoryEntry {
  std::string group;
  int version = 0;
  std::string event;   // registered, approved, rejected, alias moved, alias removed, metadata updated
  std::string status;  // the version's status after the change
  std::string principal;
  std::string comment;  // the principal's words (approve/reject)
  std::string detail;   // what changed, for events other than approve/reject
  std::string time;
};

// The outcome of SetAlias / DeleteAlias.
struct AliasMove {
  std::string group;
  std::string alias;
  int version = 0;           // 0 after DeleteAlias
  int previous_version = 0;  // 0 when the alias is new
};

// A filter on a metric: "auc>=0.9" (ops >=, <=, >, <, ==, !=).
struct MetricFilter {
  std::string metric;
  std::string op;
  double value = 0;
};

struct VersionQuery {
  std::string group;
  std::string project;
  std::string status;              // one of the three statuses, or "" for any
  std::string tag_key, tag_value;  // the group carries this tag (any value if tag_value is empty)
  std::string alias;               // the version holds this alias
  std::vector<MetricFilter> metrics;
  // "" (newest first), "metric:NAME" (highest first), "metric:NAME:asc", "created" (oldest first).
  std::string sort;
  int limit = 50;
};

// "auc>=0.9" → {auc, >=, 0.9}; InvalidArgument naming the expression otherwise.
Result<MetricFilter> ParseMetricFilter(std::string_view expr);
// A card from its JSON text (an object of strings); InvalidArgument naming the
// missing, empty, unknown or non-string field. The JSON text of a card.
Result<ModelCard> ParseCard(std::string_view json_text);
std::string CardJson(const ModelCard& card);
// Checks an input schema: non-empty, names non-empty and unique, known types.
Status CheckSchema(const std::vector<Feature>& schema);
// Group names: 1-63 letters, digits, '-', '_', '.', starting with a letter or digit.
Status CheckGroupName(std::string_view name);
// Alias names: [a-z][a-z0-9-]{0,31}.
bool ValidAliasName(std::string_view alias);

class RegistryService {
 public:
  explicit RegistryService(store::Database* db) : db_(db) {}

  Status Migrate();

  // Creates an empty group owned by `project`. AlreadyExists if it exists;
  // InvalidArgument for a bad name or tag.
  Result<ModelGroup> CreateGroup(const std::string& name, const std::string& project,
                                 const std::string& description,
                                 const std::map<std::string, std::string>& tags,
                                 const std::string& principal);
  // Description and tags; recorded in the group's history (version 0).
  Result<ModelGroup> UpdateGroup(const std::string& name, const GroupUpdate& update,
                                 const std::string& principal);
  Result<ModelGroup> GetGroup(const std::string& name) const;

  // Registers a new version (numbered max+1) in `tx`, creating the group on
  // first use (owned by `project`; a group owned by another project is
  // PermissionDenied). Fills version, created_at, the schema from
  // feature_names (all float) or feature_names from the schema, and
  // registered_by (= created_by unless set). InvalidArgument for a bad schema,
  // card or sample rows, or feature_names that disagree with the schema.
  // Emits io.takt.model.version.registered.
  Result<ModelVersion> Register(store::Database& tx, ModelVersion v, const std::string& project);

  // PendingManualApproval or Rejected → Approved. PermissionDenied when the
  // approver produced the version (started its run or imported it); Conflict
  // when it is already approved; NotFound for an unknown group or version.
  Result<ModelVersion> Approve(const std::string& group, int version, const std::string& principal,
                               const std::string& comment);
  // As Approve; also FailedPrecondition while the version is the champion.
  Result<ModelVersion> Reject(const std::string& group, int version, const std::string& principal,
                              const std::string& comment);

  // Replaces a version's card (nullopt removes it); recorded in its history.
  Result<ModelVersion> SetCard(const std::string& group, int version, const std::optional<ModelCard>& card,
                               const std::string& principal);

  // Points `alias` at `version`. InvalidArgument for a bad alias name,
  // FailedPrecondition for champion on a version that is not Approved, Conflict
  // when it already points there. History on both versions and
  // io.takt.model.alias.moved {group, alias, version, previous_version, by}.
  Result<AliasMove> SetAlias(const std::string& group, const std::string& alias, int version,
                             const std::string& principal);
  // NotFound if the group has no such alias. Emits io.takt.model.alias.deleted.
  Result<AliasMove> DeleteAlias(const std::string& group, const std::string& alias,
                                const std::string& principal);
  // A version number ("3") or an alias ("champion") → the version number.
  // NotFound for an unknown group or version number; InvalidArgument for a
  // reference that is neither a number nor one of the group's aliases (also
  // when the group does not exist: the reference is what is wrong first).
  Result<int> Resolve(const std::string& group, std::string_view ref) const;

  // Oldest first. version 0: the whole group's history (every version and the group's own changes).
  Result<std::vector<HistoryEntry>> History(const std::string& group, int version) const;

  // Groups, optionally only those of `project` or carrying tag key[=value].
  Result<std::vector<ModelGroup>> ListGroups(const std::string& project = "", const std::string& tag_key = "",
                                             const std::string& tag_value = "") const;
  Result<std::vector<ModelVersion>> ListVersions(const std::string& group) const;
  Result<ModelVersion> GetVersion(const std::string& group, int version) const;
  // Versions across groups. InvalidArgument naming a bad status, sort or limit.
  Result<std::vector<ModelVersion>> Search(const VersionQuery& query) const;

 private:
  Result<ModelVersion> Decide(const std::string& group, int version, const std::string& principal,
                              const std::string& comment, bool approve);
  store::Database* db_;
};

}  // namespace takt::registry
