#include "registry/registry.h"

#include "core/json.h"
#include "core/time.h"
#include "events/events.h"

namespace takt::registry {
namespace {

constexpr const char* kColumns =
    "group_name, version, status, framework, blob_id, features_json, metrics_json, params_json, dataset, "
    "dataset_version, run_id, created_by, created_at, decided_by, decided_at, comment";

ModelVersion FromRow(const store::Row& r) {
  ModelVersion v;
  v.group = r.Text(0);
  v.version = static_cast<int>(r.Int(1));
  v.status = r.Text(2);
  v.framework = r.Text(3);
  v.blob_id = r.Text(4);
  auto features = ParseJson(r.Text(5), "features");
  if (features && features->is_array()) {
    for (const auto& f : *features) v.feature_names.push_back(f.get<std::string>());
  }
  v.metrics_json = r.Text(6);
  v.params_json = r.Text(7);
  v.dataset = r.Text(8);
  v.dataset_version = static_cast<int>(r.Int(9));
  v.run_id = r.Text(10);
  v.created_by = r.Text(11);
  v.created_at = r.Text(12);
  v.decided_by = r.Text(13);
  v.decided_at = r.Text(14);
  v.comment = r.Text(15);
  return v;
}

std::string EventData(const ModelVersion& v) {
  return Json{{"group", v.group},          {"version", v.version}, {"status", v.status},
              {"run_id", v.run_id},        {"dataset", v.dataset}, {"dataset_version", v.dataset_version},
              {"decided_by", v.decided_by}}
      .dump();
}

}  // namespace

Status RegistryService::Migrate() {
  return store::Migrate(
      *db_, "registry",
      {{1, "model-groups-versions",
        "CREATE TABLE model_groups (name TEXT PRIMARY KEY, project TEXT NOT NULL, created_at TEXT NOT NULL);"
        "CREATE TABLE model_versions (group_name TEXT NOT NULL REFERENCES model_groups(name), version "
        "INTEGER NOT "
        "NULL, status TEXT NOT NULL, framework TEXT NOT NULL, blob_id TEXT NOT NULL, features_json TEXT NOT "
        "NULL, "
        "metrics_json TEXT NOT NULL, params_json TEXT NOT NULL, dataset TEXT NOT NULL, dataset_version "
        "INTEGER NOT "
        "NULL, run_id TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL, decided_by TEXT NOT "
        "NULL, "
        "decided_at TEXT NOT NULL, comment TEXT NOT NULL, PRIMARY KEY (group_name, version));"
        "CREATE TABLE model_version_history (group_name TEXT NOT NULL, version INTEGER NOT NULL, status TEXT "
        "NOT "
        "NULL, principal TEXT NOT NULL, comment TEXT NOT NULL, time TEXT NOT NULL);"}});
}

Result<ModelVersion> RegistryService::Register(store::Database& tx, ModelVersion v,
                                               const std::string& project) {
  if (v.group.empty()) return InvalidArgument("model group name is empty");
  TAKT_ASSIGN_OR_RETURN(auto g, tx.Query("SELECT name FROM model_groups WHERE name = ?", {v.group}));
  v.created_at = NowIso();
  if (g.empty()) {
    TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO model_groups (name, project, created_at) VALUES (?, ?, ?)",
                                 {v.group, project, v.created_at}));
  }
  TAKT_ASSIGN_OR_RETURN(
      auto m, tx.QueryOne("SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE group_name = ?",
                          {v.group}, "max"));
  v.version = static_cast<int>(m.Int(0)) + 1;
  v.status = kPending;
  Json features = v.feature_names;
  TAKT_RETURN_IF_ERROR(
      tx.Exec(std::string("INSERT INTO model_versions (") + kColumns +
                  ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              {v.group, int64_t{v.version}, v.status, v.framework, v.blob_id, features.dump(), v.metrics_json,
               v.params_json, v.dataset, int64_t{v.dataset_version}, v.run_id, v.created_by, v.created_at,
               std::string(), std::string(), std::string()}));
  TAKT_RETURN_IF_ERROR(tx.Exec(
      "INSERT INTO model_version_history VALUES (?, ?, ?, ?, ?, ?)",
      {v.group, int64_t{v.version}, v.status, v.created_by, std::string("registered"), v.created_at}));
  TAKT_RETURN_IF_ERROR(
      events::Append(tx, {.type = events::kModelVersionRegistered,
                          .source = "/registry",
                          .subject = "models/" + v.group + "/versions/" + std::to_string(v.version),
                          .data_json = EventData(v)}));
  return v;
}

Result<ModelVersion> RegistryService::Approve(const std::string& group, int version,
                                              const std::string& principal, const std::string& comment) {
  return Decide(group, version, principal, comment, true);
}

Result<ModelVersion> RegistryService::Reject(const std::string& group, int version,
                                             const std::string& principal, const std::string& comment) {
  return Decide(group, version, principal, comment, false);
}

Result<ModelVersion> RegistryService::Decide(const std::string& group, int version,
                                             const std::string& principal, const std::string& comment,
                                             bool approve) {
  ModelVersion out;
  Status s = db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(out, GetVersion(group, version));
    if (out.created_by == principal) {
      return PermissionDenied(principal + " started run " + out.run_id + " that produced " + group + " v" +
                              std::to_string(version) + "; another approver must " +
                              (approve ? "approve" : "reject") + " it");
    }
    const char* target = approve ? kApproved : kRejected;
    if (out.status == target) {
      return Conflict(group + " v" + std::to_string(version) + " is already " + out.status);
    }
    out.status = target;
    out.decided_by = principal;
    out.decided_at = NowIso();
    out.comment = comment;
    TAKT_RETURN_IF_ERROR(
        tx.Exec("UPDATE model_versions SET status = ?, decided_by = ?, decided_at = ?, comment = ? WHERE "
                "group_name = ? AND "
                "version = ?",
                {out.status, out.decided_by, out.decided_at, out.comment, group, int64_t{version}}));
    TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO model_version_history VALUES (?, ?, ?, ?, ?, ?)",
                                 {group, int64_t{version}, out.status, principal, comment, out.decided_at}));
    TAKT_RETURN_IF_ERROR(
        events::Append(tx, {.type = approve ? events::kModelVersionApproved : events::kModelVersionRejected,
                            .source = "/registry",
                            .subject = "models/" + group + "/versions/" + std::to_string(version),
                            .data_json = EventData(out)}));
    return Ok();
  });
  TAKT_RETURN_IF_ERROR(s);
  return out;
}

Result<std::vector<ModelGroup>> RegistryService::ListGroups() const {
  TAKT_ASSIGN_OR_RETURN(
      auto rows, db_->Query("SELECT g.name, g.project, g.created_at, (SELECT COALESCE(MAX(version), 0) FROM "
                            "model_versions v WHERE v.group_name = g.name), (SELECT COUNT(*) FROM "
                            "model_versions v WHERE v.group_name = g.name AND v.status = 'Approved') FROM "
                            "model_groups g ORDER BY g.name"));
  std::vector<ModelGroup> out;
  for (const auto& r : rows) {
    out.push_back({r.Text(0), r.Text(1), r.Text(2), static_cast<int>(r.Int(3)), static_cast<int>(r.Int(4))});
  }
  return out;
}

Result<std::vector<ModelVersion>> RegistryService::ListVersions(const std::string& group) const {
  TAKT_ASSIGN_OR_RETURN(auto g, db_->Query("SELECT name FROM model_groups WHERE name = ?", {group}));
  if (g.empty()) return NotFound("model group " + group + " does not exist");
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query(std::string("SELECT ") + kColumns +
                                       " FROM model_versions WHERE group_name = ? ORDER BY version",
                                   {group}));
  std::vector<ModelVersion> out;
  for (const auto& r : rows) out.push_back(FromRow(r));
  return out;
}

Result<ModelVersion> RegistryService::GetVersion(const std::string& group, int version) const {
  TAKT_ASSIGN_OR_RETURN(auto g, db_->Query("SELECT name FROM model_groups WHERE name = ?", {group}));
  if (g.empty()) return NotFound("model group " + group + " does not exist");
  TAKT_ASSIGN_OR_RETURN(
      auto r,
      db_->QueryOne(
          std::string("SELECT ") + kColumns + " FROM model_versions WHERE group_name = ? AND version = ?",
          {group, int64_t{version}}, "model group " + group + " has no version " + std::to_string(version)));
  return FromRow(r);
}

}  // namespace takt::registry
