#include "registry/registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <set>

#include "core/json.h"
#include "core/time.h"
#include "events/events.h"

namespace takt::registry {
namespace {

constexpr const char* kColumnNames[] = {
    "group_name",   "version",       "status",     "framework",       "blob_id",     "features_json",
    "metrics_json", "params_json",   "dataset",    "dataset_version", "run_id",      "created_by",
    "created_at",   "decided_by",    "decided_at", "comment",         "schema_json", "card_json",
    "sample_json",  "registered_by", "source",     "artifact_format"};
constexpr size_t kNumColumns = std::size(kColumnNames);

// "v.group_name, v.version, ..." (prefix "v.") or the bare names.
std::string Columns(std::string_view prefix = "") {
  std::string out;
  for (const char* c : kColumnNames) out += (out.empty() ? "" : ", ") + std::string(prefix) + c;
  return out;
}

std::string Placeholders(size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += i ? ", ?" : "?";
  return out;
}

std::string Ref(const std::string& group, int version) { return group + " v" + std::to_string(version); }

bool ValidGroupName(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

Status CheckTags(const std::map<std::string, std::string>& tags) {
  for (const auto& [k, v] : tags) {
    bool ok = !k.empty() && k.size() <= 64 && std::all_of(k.begin(), k.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/';
    });
    if (!ok) {
      return InvalidArgument("tag key '" + k + "' is invalid: use 1-64 letters, digits, '-', '_', '.', '/'");
    }
    if (v.size() > 256) return InvalidArgument("tag " + k + ": the value is longer than 256 characters");
  }
  return Ok();
}

Json SchemaToJson(const std::vector<Feature>& schema) {
  Json out = Json::array();
  for (const auto& f : schema) out.push_back({{"name", f.name}, {"type", f.type}});
  return out;
}

std::vector<Feature> SchemaFromJson(const std::string& text) {
  std::vector<Feature> out;
  auto j = Json::parse(text, nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& f : j) {
    if (f.is_object()) out.push_back({f.value("name", ""), f.value("type", "float")});
  }
  return out;
}

Json SampleToJson(const std::vector<std::vector<double>>& rows) {
  Json out = Json::array();
  for (const auto& row : rows) {
    Json r = Json::array();
    for (double v : row) r.push_back(std::isfinite(v) ? Json(v) : Json(nullptr));
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<std::vector<double>> SampleFromJson(const std::string& text) {
  std::vector<std::vector<double>> out;
  auto j = Json::parse(text, nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& r : j) {
    std::vector<double> row;
    for (const auto& v : r) row.push_back(v.is_number() ? v.get<double>() : std::nan(""));
    out.push_back(std::move(row));
  }
  return out;
}

Json TagsToJson(const std::map<std::string, std::string>& tags) { return Json(tags); }

std::map<std::string, std::string> TagsFromJson(const std::string& text) {
  std::map<std::string, std::string> out;
  auto j = Json::parse(text, nullptr, false);
  if (!j.is_object()) return out;
  for (const auto& [k, v] : j.items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

ModelVersion FromRow(const store::Row& r) {
  ModelVersion v;
  v.group = r.Text(0);
  v.version = static_cast<int>(r.Int(1));
  v.status = r.Text(2);
  v.framework = r.Text(3);
  v.blob_id = r.Text(4);
  auto features = Json::parse(r.Text(5), nullptr, false);
  if (features.is_array()) {
    for (const auto& f : features) {
      if (f.is_string()) v.feature_names.push_back(f.get<std::string>());
    }
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
  v.schema = SchemaFromJson(r.Text(16));
  if (v.schema.empty()) {  // a version registered before schemas existed: all float
    for (const auto& n : v.feature_names) v.schema.push_back({n, "float"});
  }
  if (!r.Text(17).empty() && r.Text(17) != "{}") {
    if (auto card = ParseCard(r.Text(17))) v.card = *card;
  }
  v.sample_rows = SampleFromJson(r.Text(18));
  v.registered_by = r.Text(19).empty() ? v.created_by : r.Text(19);
  v.source = r.Text(20).empty() ? kSourceRun : r.Text(20);
  v.artifact_format = r.Text(21).empty() ? "json" : r.Text(21);
  return v;
}

std::string EventData(const ModelVersion& v) {
  return Json{{"group", v.group},   {"version", v.version},      {"status", v.status},
              {"run_id", v.run_id}, {"dataset", v.dataset},      {"dataset_version", v.dataset_version},
              {"source", v.source}, {"decided_by", v.decided_by}}
      .dump();
}

Status AddHistory(store::Database& tx, const HistoryEntry& e) {
  TAKT_ASSIGN_OR_RETURN(auto seq, tx.QueryOne("SELECT COALESCE(MAX(seq), 0) FROM model_version_history "
                                              "WHERE group_name = ?",
                                              {e.group}, "history"));
  TAKT_RETURN_IF_ERROR(tx.Exec(
      "INSERT INTO model_version_history (group_name, version, status, principal, comment, time, event, "
      "detail, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      {e.group, int64_t{e.version}, e.status, e.principal, e.comment, e.time, e.event, e.detail,
       seq.Int(0) + 1}));
  return Ok();
}

Result<std::map<std::string, int>> LoadAliases(store::Database& db, const std::string& group) {
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db.Query("SELECT alias, version FROM model_aliases WHERE group_name = ?", {group}));
  std::map<std::string, int> out;
  for (const auto& r : rows) out[r.Text(0)] = static_cast<int>(r.Int(1));
  return out;
}

void FillAliases(ModelVersion& v, const std::map<std::string, int>& aliases) {
  v.aliases.clear();
  for (const auto& [a, n] : aliases) {
    if (n == v.version) v.aliases.push_back(a);
  }
}

Status RequireGroup(store::Database& db, const std::string& group) {
  TAKT_ASSIGN_OR_RETURN(auto g, db.Query("SELECT name FROM model_groups WHERE name = ?", {group}));
  if (g.empty()) return NotFound("model group " + group + " does not exist");
  return Ok();
}

Result<ModelVersion> ReadVersion(store::Database& db, const std::string& group, int version) {
  TAKT_RETURN_IF_ERROR(RequireGroup(db, group));
  TAKT_ASSIGN_OR_RETURN(
      auto r, db.QueryOne("SELECT " + Columns() + " FROM model_versions WHERE group_name = ? AND version = ?",
                          {group, int64_t{version}},
                          "model group " + group + " has no version " + std::to_string(version)));
  ModelVersion v = FromRow(r);
  TAKT_ASSIGN_OR_RETURN(auto aliases, LoadAliases(db, group));
  FillAliases(v, aliases);
  return v;
}

// The row of model_groups and its counts, without aliases.
constexpr const char* kGroupSelect =
    "SELECT g.name, g.project, g.description, g.tags_json, g.created_by, g.created_at, (SELECT "
    "COALESCE(MAX(version), 0) FROM model_versions v WHERE v.group_name = g.name), (SELECT COUNT(*) FROM "
    "model_versions v WHERE v.group_name = g.name AND v.status = 'Approved') FROM model_groups g";

ModelGroup GroupFromRow(const store::Row& r) {
  ModelGroup g;
  g.name = r.Text(0);
  g.project = r.Text(1);
  g.description = r.Text(2);
  g.tags = TagsFromJson(r.Text(3));
  g.created_by = r.Text(4);
  g.created_at = r.Text(5);
  g.latest_version = static_cast<int>(r.Int(6));
  g.approved_versions = static_cast<int>(r.Int(7));
  return g;
}

Result<ModelGroup> ReadGroup(store::Database& db, const std::string& name) {
  TAKT_ASSIGN_OR_RETURN(auto r, db.QueryOne(std::string(kGroupSelect) + " WHERE g.name = ?", {name},
                                            "model group " + name + " does not exist"));
  ModelGroup g = GroupFromRow(r);
  TAKT_ASSIGN_OR_RETURN(g.aliases, LoadAliases(db, name));
  return g;
}

Status CheckSampleRows(const std::vector<std::vector<double>>& rows, size_t features) {
  if (rows.size() > kMaxSampleRows) {
    return InvalidArgument("sample has " + std::to_string(rows.size()) + " rows; at most " +
                           std::to_string(kMaxSampleRows) + " are kept");
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].size() != features) {
      return InvalidArgument("sample row " + std::to_string(i + 1) + " has " +
                             std::to_string(rows[i].size()) + " values; the schema has " +
                             std::to_string(features) + " features");
    }
  }
  return Ok();
}

std::string DescribeUpdate(const GroupUpdate& u) {
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : "; ") + s; };
  if (u.description) add("description set");
  for (const auto& [k, v] : u.set_tags) add("tag " + k + "=" + v);
  for (const auto& k : u.remove_tags) add("tag " + k + " removed");
  return out;
}

}  // namespace

Status CheckGroupName(std::string_view name) {
  if (name.empty()) return InvalidArgument("model group name is empty");
  if (!ValidGroupName(name)) {
    return InvalidArgument(
        "model group name '" + std::string(name) +
        "' is invalid: use 1-63 letters, digits, '-', '_', '.', starting with a letter or digit");
  }
  return Ok();
}

Result<MetricFilter> ParseMetricFilter(std::string_view expr) {
  const std::string e(expr);
  size_t pos = e.find_first_of("<>=!");
  if (pos == std::string::npos || pos == 0) {
    return InvalidArgument("metric filter '" + e +
                           "' is not NAME OP NUMBER (e.g. auc>=0.9; OP one of >= <= > < == !=)");
  }
  MetricFilter f;
  f.metric = e.substr(0, pos);
  while (!f.metric.empty() && f.metric.back() == ' ') f.metric.pop_back();
  size_t end = pos;
  while (end < e.size() && std::string_view("<>=!").find(e[end]) != std::string_view::npos) ++end;
  f.op = e.substr(pos, end - pos);
  if (f.op == "=") f.op = "==";
  static const std::set<std::string> kOps = {">=", "<=", ">", "<", "==", "!="};
  if (!kOps.contains(f.op)) {
    return InvalidArgument("metric filter '" + e + "': operator '" + f.op +
                           "' is not one of >= <= > < == !=");
  }
  std::string num = e.substr(end);
  while (!num.empty() && num.front() == ' ') num.erase(num.begin());
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), f.value);
  if (num.empty() || ec != std::errc() || p != num.data() + num.size() || !std::isfinite(f.value)) {
    return InvalidArgument("metric filter '" + e + "': '" + num + "' is not a number");
  }
  for (char c : f.metric) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return InvalidArgument("metric filter '" + e + "': '" + f.metric + "' is not a metric name");
    }
  }
  return f;
}

Result<ModelCard> ParseCard(std::string_view json_text) {
  auto j = Json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgument(
        "model card: expected a JSON object of strings {intended_use, limitations, training_data, "
        "ethical_considerations?, notes?}");
  }
  ModelCard card;
  const std::map<std::string, std::string*> fields = {
      {"intended_use", &card.intended_use},
      {"limitations", &card.limitations},
      {"training_data", &card.training_data},
      {"ethical_considerations", &card.ethical_considerations},
      {"notes", &card.notes}};
  for (const auto& [k, v] : j.items()) {
    auto it = fields.find(k);
    if (it == fields.end()) {
      return InvalidArgument(
          "model card: unknown field '" + k +
          "' (known: intended_use, limitations, training_data, ethical_considerations, notes)");
    }
    if (!v.is_string()) return InvalidArgument("model card: " + k + " must be a string");
    *it->second = v.get<std::string>();
  }
  for (const char* required : {"intended_use", "limitations", "training_data"}) {
    if (fields.at(required)->empty())
      return InvalidArgument(std::string("model card: ") + required + " is required");
  }
  return card;
}

std::string CardJson(const ModelCard& card) {
  Json j = {{"intended_use", card.intended_use},
            {"limitations", card.limitations},
            {"training_data", card.training_data}};
  if (!card.ethical_considerations.empty()) j["ethical_considerations"] = card.ethical_considerations;
  if (!card.notes.empty()) j["notes"] = card.notes;
  return j.dump();
}

Status CheckSchema(const std::vector<Feature>& schema) {
  if (schema.empty()) return InvalidArgument("schema: a model needs at least one feature");
  static const std::set<std::string> kTypes = {"float", "int", "bool", "category"};
  std::set<std::string> seen;
  for (size_t i = 0; i < schema.size(); ++i) {
    const Feature& f = schema[i];
    if (f.name.empty())
      return InvalidArgument("schema: feature " + std::to_string(i + 1) + " has an empty name");
    if (!seen.insert(f.name).second) return InvalidArgument("schema: feature '" + f.name + "' appears twice");
    if (!kTypes.contains(f.type)) {
      return InvalidArgument("schema: feature '" + f.name + "' has type '" + f.type +
                             "'; use float, int, bool or category");
    }
  }
  return Ok();
}

bool ValidAliasName(std::string_view a) {
  if (a.empty() || a.size() > 32 || a[0] < 'a' || a[0] > 'z') return false;
  return std::all_of(a.begin(), a.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

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
        "NULL, principal TEXT NOT NULL, comment TEXT NOT NULL, time TEXT NOT NULL);"},
       {2, "group-metadata-schemas-cards-aliases",
        "ALTER TABLE model_groups ADD COLUMN description TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE model_groups ADD COLUMN tags_json TEXT NOT NULL DEFAULT '{}';"
        "ALTER TABLE model_groups ADD COLUMN created_by TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE model_versions ADD COLUMN schema_json TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE model_versions ADD COLUMN card_json TEXT NOT NULL DEFAULT '{}';"
        "ALTER TABLE model_versions ADD COLUMN sample_json TEXT NOT NULL DEFAULT '[]';"
        "ALTER TABLE model_versions ADD COLUMN registered_by TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE model_versions ADD COLUMN source TEXT NOT NULL DEFAULT 'run';"
        "ALTER TABLE model_versions ADD COLUMN artifact_format TEXT NOT NULL DEFAULT 'json';"
        "ALTER TABLE model_versions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
        "UPDATE model_versions SET registered_by = created_by;"
        "ALTER TABLE model_version_history ADD COLUMN event TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE model_version_history ADD COLUMN detail TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE model_version_history ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
        "UPDATE model_version_history SET event = CASE status WHEN 'Approved' THEN 'approved' WHEN "
        "'Rejected' THEN 'rejected' ELSE 'registered' END;"
        "UPDATE model_version_history SET comment = '' WHERE event = 'registered' AND comment = 'registered';"
        "CREATE TABLE model_aliases (group_name TEXT NOT NULL REFERENCES model_groups(name), alias TEXT NOT "
        "NULL, version INTEGER NOT NULL, updated_by TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY "
        "(group_name, alias));"}});
}

Result<ModelGroup> RegistryService::CreateGroup(const std::string& name, const std::string& project,
                                                const std::string& description,
                                                const std::map<std::string, std::string>& tags,
                                                const std::string& principal) {
  TAKT_RETURN_IF_ERROR(CheckGroupName(name));
  if (project.empty()) return InvalidArgument("model group " + name + ": the owning project is empty");
  TAKT_RETURN_IF_ERROR(CheckTags(tags));
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(auto g, tx.Query("SELECT project FROM model_groups WHERE name = ?", {name}));
    if (!g.empty()) {
      return AlreadyExists("model group " + name + " already exists (project " + g[0].Text(0) + ")");
    }
    const std::string now = NowIso();
    TAKT_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO model_groups (name, project, created_at, description, tags_json, "
                "created_by) VALUES (?, ?, ?, ?, ?, ?)",
                {name, project, now, description, TagsToJson(tags).dump(), principal}));
    return AddHistory(tx, {.group = name,
                           .version = 0,
                           .event = "metadata updated",
                           .principal = principal,
                           .detail = "group created in project " + project,
                           .time = now});
  }));
  return GetGroup(name);
}

Result<ModelGroup> RegistryService::UpdateGroup(const std::string& name, const GroupUpdate& update,
                                                const std::string& principal) {
  TAKT_RETURN_IF_ERROR(CheckTags(update.set_tags));
  for (const auto& k : update.remove_tags) {
    if (update.set_tags.contains(k)) return InvalidArgument("tag " + k + " is both set and removed");
  }
  if (!update.description && update.set_tags.empty() && update.remove_tags.empty()) {
    return InvalidArgument("nothing to update: give a description, tags to set or tags to remove");
  }
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(ModelGroup g, ReadGroup(tx, name));
    for (const auto& k : update.remove_tags) {
      if (!g.tags.contains(k)) return NotFound("model group " + name + " has no tag " + k);
      g.tags.erase(k);
    }
    for (const auto& [k, v] : update.set_tags) g.tags[k] = v;
    if (update.description) g.description = *update.description;
    TAKT_RETURN_IF_ERROR(tx.Exec("UPDATE model_groups SET description = ?, tags_json = ? WHERE name = ?",
                                 {g.description, TagsToJson(g.tags).dump(), name}));
    return AddHistory(tx, {.group = name,
                           .version = 0,
                           .event = "metadata updated",
                           .principal = principal,
                           .detail = DescribeUpdate(update),
                           .time = NowIso()});
  }));
  return GetGroup(name);
}

Result<ModelGroup> RegistryService::GetGroup(const std::string& name) const { return ReadGroup(*db_, name); }

Result<ModelVersion> RegistryService::Register(store::Database& tx, ModelVersion v,
                                               const std::string& project) {
  TAKT_RETURN_IF_ERROR(CheckGroupName(v.group));
  if (v.schema.empty()) {
    for (const auto& n : v.feature_names) v.schema.push_back({n, "float"});
  } else if (v.feature_names.empty()) {
    for (const auto& f : v.schema) v.feature_names.push_back(f.name);
  } else {
    std::vector<std::string> names;
    for (const auto& f : v.schema) names.push_back(f.name);
    if (names != v.feature_names) {
      return InvalidArgument("feature names (" + std::to_string(v.feature_names.size()) +
                             ") disagree with the schema's (" + std::to_string(names.size()) + ")");
    }
  }
  if (Status s = CheckSchema(v.schema); !s) {
    return std::unexpected(s.error().WithContext("registering into " + v.group));
  }
  TAKT_RETURN_IF_ERROR(CheckSampleRows(v.sample_rows, v.schema.size()));
  if (v.source != kSourceRun && v.source != kSourceImport) {
    return InvalidArgument("source '" + v.source + "' is not run or import");
  }
  if (v.registered_by.empty()) v.registered_by = v.created_by;
  TAKT_ASSIGN_OR_RETURN(auto g, tx.Query("SELECT project FROM model_groups WHERE name = ?", {v.group}));
  v.created_at = NowIso();
  if (g.empty()) {
    if (project.empty())
      return InvalidArgument("model group " + v.group + " is new: say which project owns it");
    TAKT_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO model_groups (name, project, created_at, created_by) VALUES (?, ?, "
                "?, ?)",
                {v.group, project, v.created_at, v.registered_by}));
  } else if (!project.empty() && g[0].Text(0) != project) {
    return PermissionDenied("model group " + v.group + " belongs to project " + g[0].Text(0) + ", not " +
                            project);
  }
  TAKT_ASSIGN_OR_RETURN(
      auto m, tx.QueryOne("SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE group_name = ?",
                          {v.group}, "max"));
  v.version = static_cast<int>(m.Int(0)) + 1;
  // The registry-wide order of registration (created_at may tie within a millisecond).
  TAKT_ASSIGN_OR_RETURN(auto seq, tx.QueryOne("SELECT COALESCE(MAX(seq), 0) FROM model_versions", {}, "seq"));
  v.status = kPending;
  v.decided_by.clear();
  v.decided_at.clear();
  v.comment.clear();
  v.aliases.clear();
  Json features = v.feature_names;
  TAKT_RETURN_IF_ERROR(
      tx.Exec("INSERT INTO model_versions (" + Columns() + ") VALUES (" + Placeholders(kNumColumns) + ")",
              {v.group,
               int64_t{v.version},
               v.status,
               v.framework,
               v.blob_id,
               features.dump(),
               v.metrics_json,
               v.params_json,
               v.dataset,
               int64_t{v.dataset_version},
               v.run_id,
               v.created_by,
               v.created_at,
               std::string(),
               std::string(),
               std::string(),
               SchemaToJson(v.schema).dump(),
               v.card ? CardJson(*v.card) : std::string("{}"),
               SampleToJson(v.sample_rows).dump(),
               v.registered_by,
               v.source,
               v.artifact_format}));
  TAKT_RETURN_IF_ERROR(tx.Exec("UPDATE model_versions SET seq = ? WHERE group_name = ? AND version = ?",
                               {seq.Int(0) + 1, v.group, int64_t{v.version}}));
  TAKT_RETURN_IF_ERROR(AddHistory(
      tx,
      {.group = v.group,
       .version = v.version,
       .event = "registered",
       .status = v.status,
       .principal = v.registered_by,
       .detail = v.source == kSourceImport ? "imported" : (v.run_id.empty() ? "" : "from run " + v.run_id),
       .time = v.created_at}));
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
    TAKT_ASSIGN_OR_RETURN(out, ReadVersion(tx, group, version));
    if (out.created_by == principal) {
      const std::string how = out.source == kSourceImport ? principal + " imported " + Ref(group, version)
                                                          : principal + " started run " + out.run_id +
                                                                " that produced " + Ref(group, version);
      return PermissionDenied(how + "; another approver must " + (approve ? "approve" : "reject") + " it");
    }
    const char* target = approve ? kApproved : kRejected;
    if (out.status == target) return Conflict(Ref(group, version) + " is already " + out.status);
    if (!approve && std::find(out.aliases.begin(), out.aliases.end(), kChampion) != out.aliases.end()) {
      return FailedPrecondition(Ref(group, version) +
                                " is the champion: point the champion alias at another version first");
    }
    out.status = target;
    out.decided_by = principal;
    out.decided_at = NowIso();
    out.comment = comment;
    TAKT_RETURN_IF_ERROR(
        tx.Exec("UPDATE model_versions SET status = ?, decided_by = ?, decided_at = ?, comment = ? WHERE "
                "group_name = ? AND version = ?",
                {out.status, out.decided_by, out.decided_at, out.comment, group, int64_t{version}}));
    TAKT_RETURN_IF_ERROR(AddHistory(tx, {.group = group,
                                         .version = version,
                                         .event = approve ? "approved" : "rejected",
                                         .status = out.status,
                                         .principal = principal,
                                         .comment = comment,
                                         .time = out.decided_at}));
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

Result<ModelVersion> RegistryService::SetCard(const std::string& group, int version,
                                              const std::optional<ModelCard>& card,
                                              const std::string& principal) {
  if (card) TAKT_RETURN_IF_ERROR(ParseCard(CardJson(*card)));  // the same rules as a card given as JSON
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(ModelVersion v, ReadVersion(tx, group, version));
    TAKT_RETURN_IF_ERROR(
        tx.Exec("UPDATE model_versions SET card_json = ? WHERE group_name = ? AND version = ?",
                {card ? CardJson(*card) : std::string("{}"), group, int64_t{version}}));
    return AddHistory(
        tx, {.group = group,
             .version = version,
             .event = "metadata updated",
             .status = v.status,
             .principal = principal,
             .detail = card ? (v.card ? "model card replaced" : "model card added") : "model card removed",
             .time = NowIso()});
  }));
  return GetVersion(group, version);
}

Result<AliasMove> RegistryService::SetAlias(const std::string& group, const std::string& alias, int version,
                                            const std::string& principal) {
  if (!ValidAliasName(alias)) {
    return InvalidArgument("alias '" + alias + "' is invalid: use [a-z][a-z0-9-]{0,31}, e.g. champion");
  }
  AliasMove move{.group = group, .alias = alias, .version = version};
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(ModelVersion v, ReadVersion(tx, group, version));
    if (alias == kChampion && v.status != kApproved) {
      return FailedPrecondition("only an Approved version may be champion; " + Ref(group, version) + " is " +
                                v.status);
    }
    TAKT_ASSIGN_OR_RETURN(auto aliases, LoadAliases(tx, group));
    if (auto it = aliases.find(alias); it != aliases.end()) {
      move.previous_version = it->second;
      if (it->second == version)
        return Conflict("alias " + alias + " already points at " + Ref(group, version));
    }
    const std::string now = NowIso();
    TAKT_RETURN_IF_ERROR(
        tx.Exec("DELETE FROM model_aliases WHERE group_name = ? AND alias = ?", {group, alias}));
    TAKT_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO model_aliases (group_name, alias, version, updated_by, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                {group, alias, int64_t{version}, principal, now}));
    const std::string from = move.previous_version ? " (was v" + std::to_string(move.previous_version) + ")"
                                                   : std::string(" (new)");
    TAKT_RETURN_IF_ERROR(AddHistory(tx, {.group = group,
                                         .version = version,
                                         .event = "alias moved",
                                         .status = v.status,
                                         .principal = principal,
                                         .detail = "alias " + alias + " now points here" + from,
                                         .time = now}));
    if (move.previous_version) {
      TAKT_ASSIGN_OR_RETURN(ModelVersion prev, ReadVersion(tx, group, move.previous_version));
      TAKT_RETURN_IF_ERROR(
          AddHistory(tx, {.group = group,
                          .version = move.previous_version,
                          .event = "alias moved",
                          .status = prev.status,
                          .principal = principal,
                          .detail = "alias " + alias + " moved to v" + std::to_string(version),
                          .time = now}));
    }
    Json data = {{"group", group},
                 {"alias", alias},
                 {"version", version},
                 {"previous_version", move.previous_version ? Json(move.previous_version) : Json(nullptr)},
                 {"by", principal}};
    TAKT_RETURN_IF_ERROR(events::Append(tx, {.type = kModelAliasMoved,
                                             .source = "/registry",
                                             .subject = "models/" + group + "/aliases/" + alias,
                                             .data_json = data.dump()}));
    return Ok();
  }));
  return move;
}

Result<AliasMove> RegistryService::DeleteAlias(const std::string& group, const std::string& alias,
                                               const std::string& principal) {
  AliasMove move{.group = group, .alias = alias};
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(RequireGroup(tx, group));
    TAKT_ASSIGN_OR_RETURN(auto aliases, LoadAliases(tx, group));
    auto it = aliases.find(alias);
    if (it == aliases.end()) return NotFound("model group " + group + " has no alias " + alias);
    move.previous_version = it->second;
    TAKT_ASSIGN_OR_RETURN(ModelVersion prev, ReadVersion(tx, group, move.previous_version));
    TAKT_RETURN_IF_ERROR(
        tx.Exec("DELETE FROM model_aliases WHERE group_name = ? AND alias = ?", {group, alias}));
    TAKT_RETURN_IF_ERROR(AddHistory(tx, {.group = group,
                                         .version = move.previous_version,
                                         .event = "alias removed",
                                         .status = prev.status,
                                         .principal = principal,
                                         .detail = "alias " + alias + " removed",
                                         .time = NowIso()}));
    Json data = {{"group", group},
                 {"alias", alias},
                 {"version", nullptr},
                 {"previous_version", move.previous_version},
                 {"by", principal}};
    TAKT_RETURN_IF_ERROR(events::Append(tx, {.type = kModelAliasDeleted,
                                             .source = "/registry",
                                             .subject = "models/" + group + "/aliases/" + alias,
                                             .data_json = data.dump()}));
    return Ok();
  }));
  return move;
}

Result<int> RegistryService::Resolve(const std::string& group, std::string_view ref) const {
  if (ref.empty()) return InvalidArgument("model version: give a number or an alias");
  if (std::isdigit(static_cast<unsigned char>(ref[0]))) {
    int v = 0;
    auto [p, ec] = std::from_chars(ref.data(), ref.data() + ref.size(), v);
    if (ec != std::errc() || p != ref.data() + ref.size() || v <= 0) {
      return InvalidArgument("model version '" + std::string(ref) + "' is not a version number or an alias");
    }
    TAKT_RETURN_IF_ERROR(ReadVersion(*db_, group, v));
    return v;
  }
  if (!ValidAliasName(ref)) {
    return InvalidArgument("model version '" + std::string(ref) + "' is not a version number or an alias");
  }
  if (Status g = RequireGroup(*db_, group); !g) {
    if (g.error().code() != Code::kNotFound) return std::unexpected(g.error());
    return InvalidArgument("model version '" + std::string(ref) +
                           "' is neither a version number nor an alias: " + g.error().message());
  }
  TAKT_ASSIGN_OR_RETURN(auto aliases, LoadAliases(*db_, group));
  auto it = aliases.find(std::string(ref));
  if (it == aliases.end()) {
    // A reference that names nothing is the client's mistake (as "seven" was before aliases existed).
    std::string have;
    for (const auto& [a, n] : aliases) have += (have.empty() ? "" : ", ") + a + " = v" + std::to_string(n);
    return InvalidArgument("model version '" + std::string(ref) +
                           "' is neither a version number nor an alias of " + group +
                           " (aliases: " + (have.empty() ? "none" : have) + ")");
  }
  return it->second;
}

Result<std::vector<HistoryEntry>> RegistryService::History(const std::string& group, int version) const {
  TAKT_RETURN_IF_ERROR(RequireGroup(*db_, group));
  if (version != 0) TAKT_RETURN_IF_ERROR(ReadVersion(*db_, group, version));
  TAKT_ASSIGN_OR_RETURN(
      auto rows,
      db_->Query("SELECT group_name, version, event, status, principal, comment, detail, time FROM "
                 "model_version_history WHERE group_name = ? AND (? = 0 OR version = ?) ORDER BY seq, "
                 "time",
                 {group, int64_t{version}, int64_t{version}}));
  std::vector<HistoryEntry> out;
  for (const auto& r : rows) {
    out.push_back({.group = r.Text(0),
                   .version = static_cast<int>(r.Int(1)),
                   .event = r.Text(2),
                   .status = r.Text(3),
                   .principal = r.Text(4),
                   .comment = r.Text(5),
                   .detail = r.Text(6),
                   .time = r.Text(7)});
  }
  return out;
}

Result<std::vector<ModelGroup>> RegistryService::ListGroups(const std::string& project,
                                                            const std::string& tag_key,
                                                            const std::string& tag_value) const {
  TAKT_ASSIGN_OR_RETURN(
      auto rows, db_->Query(std::string(kGroupSelect) + " WHERE (? = '' OR g.project = ?) ORDER BY g.name",
                            {project, project}));
  std::vector<ModelGroup> out;
  for (const auto& r : rows) {
    ModelGroup g = GroupFromRow(r);
    if (!tag_key.empty()) {
      auto it = g.tags.find(tag_key);
      if (it == g.tags.end() || (!tag_value.empty() && it->second != tag_value)) continue;
    }
    TAKT_ASSIGN_OR_RETURN(g.aliases, LoadAliases(*db_, g.name));
    out.push_back(std::move(g));
  }
  return out;
}

Result<std::vector<ModelVersion>> RegistryService::ListVersions(const std::string& group) const {
  TAKT_RETURN_IF_ERROR(RequireGroup(*db_, group));
  TAKT_ASSIGN_OR_RETURN(
      auto rows,
      db_->Query("SELECT " + Columns() + " FROM model_versions WHERE group_name = ? ORDER BY version",
                 {group}));
  TAKT_ASSIGN_OR_RETURN(auto aliases, LoadAliases(*db_, group));
  std::vector<ModelVersion> out;
  for (const auto& r : rows) {
    out.push_back(FromRow(r));
    FillAliases(out.back(), aliases);
  }
  return out;
}

Result<ModelVersion> RegistryService::GetVersion(const std::string& group, int version) const {
  return ReadVersion(*db_, group, version);
}

Result<std::vector<ModelVersion>> RegistryService::Search(const VersionQuery& q) const {
  if (!q.status.empty() && q.status != kPending && q.status != kApproved && q.status != kRejected) {
    return InvalidArgument("status '" + q.status +
                           "' is not one of PendingManualApproval, Approved, Rejected");
  }
  if (q.limit <= 0 || q.limit > 1000) {
    return InvalidArgument("limit " + std::to_string(q.limit) + " is not between 1 and 1000");
  }
  std::string sort_metric;
  bool ascending = false;
  if (q.sort.rfind("metric:", 0) == 0) {
    sort_metric = q.sort.substr(7);
    if (sort_metric.ends_with(":asc")) {
      ascending = true;
      sort_metric.resize(sort_metric.size() - 4);
    } else if (sort_metric.ends_with(":desc")) {
      sort_metric.resize(sort_metric.size() - 5);
    }
    if (sort_metric.empty())
      return InvalidArgument("sort '" + q.sort + "': name the metric, e.g. metric:auc");
  } else if (!q.sort.empty() && q.sort != "created" && q.sort != "version") {
    return InvalidArgument("sort '" + q.sort + "' is not version, created, metric:NAME or metric:NAME:asc");
  }
  if (!q.alias.empty() && !ValidAliasName(q.alias)) {
    return InvalidArgument("alias '" + q.alias + "' is invalid: use [a-z][a-z0-9-]{0,31}");
  }
  std::string sql =
      "SELECT " + Columns("v.") +
      ", g.tags_json FROM model_versions v JOIN model_groups g ON g.name = v.group_name WHERE (? = "
      "'' OR v.group_name = ?) AND (? = '' OR g.project = ?) AND (? = '' OR v.status = ?)";
  std::vector<store::Value> params = {q.group, q.group, q.project, q.project, q.status, q.status};
  if (!q.alias.empty()) {
    sql +=
        " AND EXISTS (SELECT 1 FROM model_aliases a WHERE a.group_name = v.group_name AND a.version = "
        "v.version AND a.alias = ?)";
    params.push_back(q.alias);
  }
  sql += " ORDER BY v.seq, v.created_at, v.group_name, v.version";
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  std::vector<std::pair<ModelVersion, double>> found;
  std::map<std::string, std::map<std::string, int>> aliases;
  for (const auto& r : rows) {
    if (!q.tag_key.empty()) {
      auto tags = TagsFromJson(r.Text(kNumColumns));
      auto it = tags.find(q.tag_key);
      if (it == tags.end() || (!q.tag_value.empty() && it->second != q.tag_value)) continue;
    }
    ModelVersion v = FromRow(r);
    auto metrics = Json::parse(v.metrics_json, nullptr, false);
    auto metric = [&](const std::string& name) -> std::optional<double> {
      if (!metrics.is_object() || !metrics.contains(name) || !metrics[name].is_number()) return std::nullopt;
      return metrics[name].get<double>();
    };
    bool keep = true;
    for (const auto& f : q.metrics) {
      auto m = metric(f.metric);
      keep = keep && m &&
             (f.op == ">="   ? *m >= f.value
              : f.op == "<=" ? *m <= f.value
              : f.op == ">"  ? *m > f.value
              : f.op == "<"  ? *m < f.value
              : f.op == "==" ? *m == f.value
                             : *m != f.value);
    }
    if (!keep) continue;
    double key = 0;
    if (!sort_metric.empty()) {
      auto m = metric(sort_metric);
      if (!m) continue;  // sorting by a metric lists only versions that have it
      key = *m;
    }
    if (!aliases.contains(v.group)) {
      TAKT_ASSIGN_OR_RETURN(aliases[v.group], LoadAliases(*db_, v.group));
    }
    FillAliases(v, aliases[v.group]);
    found.emplace_back(std::move(v), key);
  }
  if (!sort_metric.empty()) {
    std::stable_sort(found.begin(), found.end(), [&](const auto& a, const auto& b) {
      return ascending ? a.second < b.second : a.second > b.second;
    });
  } else if (q.sort != "created") {
    std::reverse(found.begin(), found.end());  // newest first
  }
  std::vector<ModelVersion> out;
  for (auto& [v, _] : found) {
    if (out.size() >= static_cast<size_t>(q.limit)) break;
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace takt::registry
