#include "catalog/catalog.h"

#include <algorithm>

#include "catalog/internal.h"
#include "connectors/sql_source.h"
#include "core/json.h"
#include "core/time.h"
#include "crypto/keyring.h"
#include "iam/iam.h"

namespace takt::catalog {
namespace {

bool ValidNameChars(std::string_view name, bool allow_underscore) {
  bool ok = !name.empty() && name.size() <= 63 && name[0] >= 'a' && name[0] <= 'z';
  for (char c : name)
    ok = ok &&
         ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (allow_underscore && c == '_'));
  return ok;
}

}  // namespace

Status ValidateDatasetName(std::string_view name) {
  if (!ValidNameChars(name, false)) {
    return InvalidArgument(
        "dataset name '" + std::string(name) +
        "' is invalid: use 1-63 lowercase letters, digits and '-', starting with a letter");
  }
  return Ok();
}

Status ValidateTag(std::string_view tag) {
  if (!ValidNameChars(tag, true)) {
    return InvalidArgument(
        "tag '" + std::string(tag) +
        "' is invalid: use 1-63 lowercase letters, digits, '-' and '_', starting with a letter");
  }
  return Ok();
}

Result<std::pair<std::string, int>> ParseDatasetRef(std::string_view ref) {
  auto at = ref.find('@');
  std::string name(ref.substr(0, at));
  TAKT_RETURN_IF_ERROR(ValidateDatasetName(name));
  if (at == std::string_view::npos) return std::make_pair(name, 0);
  std::string_view v = ref.substr(at + 1);
  int version = 0;
  for (char c : v) {
    if (c < '0' || c > '9' || version > 100000000) {
      return InvalidArgument("dataset reference '" + std::string(ref) +
                             "': version must be a positive number");
    }
    version = version * 10 + (c - '0');
  }
  if (version <= 0)
    return InvalidArgument("dataset reference '" + std::string(ref) + "': version must be positive");
  return std::make_pair(name, version);
}

std::string SchemaToJson(const frame::Schema& schema) {
  Json arr = Json::array();
  for (const auto& f : schema.fields) {
    arr.push_back(
        {{"name", f.name}, {"type", std::string(frame::TypeName(f.type))}, {"nullable", f.nullable}});
  }
  return arr.dump();
}

Result<frame::Schema> SchemaFromJson(std::string_view json) {
  TAKT_ASSIGN_OR_RETURN(Json arr, ParseJson(json, "schema"));
  if (!arr.is_array()) return InvalidArgument("schema: expected an array of fields");
  frame::Schema schema;
  for (const auto& f : arr) {
    TAKT_ASSIGN_OR_RETURN(std::string name, GetString(f, "name", "schema field"));
    TAKT_ASSIGN_OR_RETURN(std::string type, GetString(f, "type", "schema field " + name));
    TAKT_ASSIGN_OR_RETURN(frame::Type t, frame::ParseType(type));
    schema.fields.push_back({name, t, f.value("nullable", false)});
  }
  return schema;
}

// ------------------------------------------------------------------ schema evolution

bool SchemaDiff::breaking() const {
  return std::any_of(changes.begin(), changes.end(), [](const SchemaChange& c) { return c.breaking; });
}

std::string SchemaDiff::Summary() const {
  std::string out;
  for (const auto& c : changes) {
    if (!out.empty()) out += "; ";
    if (c.kind == "added") {
      out += "added " + c.column + " (" + c.to + ")";
    } else if (c.kind == "removed") {
      out += "removed " + c.column + " (" + c.from + ")";
    } else if (c.kind == "retyped") {
      out += "retyped " + c.column + ": " + c.from + " → " + c.to;
    } else {
      out += c.column + " became nullable";
    }
  }
  return out.empty() ? "no schema change" : out;
}

SchemaDiff DiffSchemas(const frame::Schema& from, const frame::Schema& to) {
  SchemaDiff diff;
  for (const auto& f : from.fields) {
    int i = to.IndexOf(f.name);
    if (i < 0) {
      diff.changes.push_back({f.name, "removed", std::string(frame::TypeName(f.type)), "", true});
      continue;
    }
    const auto& g = to.fields[i];
    if (g.type != f.type) {
      diff.changes.push_back({f.name, "retyped", std::string(frame::TypeName(f.type)),
                              std::string(frame::TypeName(g.type)), true});
    } else if (g.nullable && !f.nullable) {
      diff.changes.push_back({f.name, "nullable", "non-nullable", "nullable", false});
    }
  }
  for (const auto& g : to.fields) {
    if (from.IndexOf(g.name) < 0) {
      diff.changes.push_back({g.name, "added", "", std::string(frame::TypeName(g.type)), false});
    }
  }
  return diff;
}

std::string SourceSpec::Describe() const {
  if (kind == "postgres") return "postgres:" + connectors::RedactConninfo(url);
  if (kind == "sqlite") return "sqlite:" + path;
  return kind + ":" + path;
}

// ------------------------------------------------------------------ the service

CatalogService::CatalogService(store::Database* db, blob::BlobStore* blobs, const crypto::Keyring* keyring,
                               iam::IamService* iam, CatalogOptions options)
    : db_(db), blobs_(blobs), keyring_(keyring), iam_(iam), options_(std::move(options)) {}

CatalogService::~CatalogService() { StopScheduler(); }

Status CatalogService::Migrate() {
  return store::Migrate(
      *db_, "catalog",
      {{1, "datasets",
        "CREATE TABLE datasets (name TEXT PRIMARY KEY, description TEXT NOT NULL, owner TEXT NOT NULL, "
        "created_at TEXT NOT NULL);"
        "CREATE TABLE dataset_versions (dataset TEXT NOT NULL REFERENCES datasets(name), version INTEGER NOT "
        "NULL, "
        "blob_id TEXT NOT NULL, content_hash TEXT NOT NULL, rows INTEGER NOT NULL, source_bytes INTEGER NOT "
        "NULL, "
        "stored_bytes INTEGER NOT NULL, schema_json TEXT NOT NULL, source TEXT NOT NULL, created_by TEXT NOT "
        "NULL, "
        "created_at TEXT NOT NULL, PRIMARY KEY (dataset, version));"},
       {2, "segments-partitions-tags-grants-schedules",
        "ALTER TABLE dataset_versions ADD COLUMN data_hash TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE dataset_versions ADD COLUMN partition_by TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE dataset_versions ADD COLUMN rows_skipped INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE dataset_versions ADD COLUMN stats_blob TEXT NOT NULL DEFAULT '';"
        "CREATE TABLE dataset_partitions (dataset TEXT NOT NULL, version INTEGER NOT NULL, partition_key "
        "TEXT "
        "NOT NULL, rows INTEGER NOT NULL, source_hash TEXT NOT NULL, stats_blob TEXT NOT NULL, PRIMARY KEY "
        "(dataset, version, partition_key), FOREIGN KEY (dataset, version) REFERENCES "
        "dataset_versions(dataset, version));"
        "CREATE TABLE dataset_segments (dataset TEXT NOT NULL, version INTEGER NOT NULL, seq INTEGER NOT "
        "NULL, "
        "partition_key TEXT NOT NULL, blob_id TEXT NOT NULL, rows INTEGER NOT NULL, stored_bytes INTEGER NOT "
        "NULL, PRIMARY KEY (dataset, version, seq), FOREIGN KEY (dataset, version) REFERENCES "
        "dataset_versions(dataset, version));"
        // Versions of the first layout were one blob each: one segment now.
        "INSERT INTO dataset_segments (dataset, version, seq, partition_key, blob_id, rows, stored_bytes) "
        "SELECT dataset, version, 0, '', blob_id, rows, stored_bytes FROM dataset_versions;"
        "CREATE TABLE dataset_tags (dataset TEXT NOT NULL REFERENCES datasets(name), column_name TEXT NOT "
        "NULL, "
        "tag TEXT NOT NULL, PRIMARY KEY (dataset, column_name, tag));"
        "CREATE INDEX dataset_tags_tag ON dataset_tags (tag);"
        "CREATE TABLE grants (id TEXT PRIMARY KEY, effect TEXT NOT NULL, subject TEXT NOT NULL, dataset TEXT "
        "NOT "
        "NULL, columns_json TEXT NOT NULL, exclude_json TEXT NOT NULL, row_filter TEXT NOT NULL, masks_json "
        "TEXT "
        "NOT NULL, note TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL);"
        "CREATE INDEX grants_subject ON grants (subject);"
        "CREATE TABLE ingest_schedules (id TEXT PRIMARY KEY, dataset TEXT NOT NULL, cron TEXT NOT NULL, "
        "source_sealed TEXT NOT NULL, options_json TEXT NOT NULL, owner TEXT NOT NULL, created_at TEXT NOT "
        "NULL, next_run INTEGER NOT NULL, last_run_at TEXT NOT NULL, last_status TEXT NOT NULL);"}});
}

Result<std::vector<Dataset>> CatalogService::List() const {
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT name FROM datasets ORDER BY name"));
  std::vector<Dataset> out;
  for (const auto& r : rows) {
    TAKT_ASSIGN_OR_RETURN(Dataset d, Get(r.Text(0)));
    out.push_back(std::move(d));
  }
  return out;
}

Result<Dataset> CatalogService::Get(std::string_view name) const {
  TAKT_RETURN_IF_ERROR(ValidateDatasetName(name));
  TAKT_ASSIGN_OR_RETURN(
      auto r, db_->QueryOne("SELECT d.name, d.description, d.owner, d.created_at, "
                            "(SELECT COALESCE(MAX(version), 0) FROM dataset_versions v WHERE "
                            "v.dataset = d.name) FROM datasets d WHERE d.name = ?",
                            {std::string(name)}, "dataset " + std::string(name) + " does not exist"));
  Dataset d{r.Text(0), r.Text(1), r.Text(2), r.Text(3), static_cast<int>(r.Int(4)), {}, {}};
  TAKT_ASSIGN_OR_RETURN(auto tags, db_->Query("SELECT column_name, tag FROM dataset_tags WHERE dataset = ? "
                                              "ORDER BY column_name, tag",
                                              {d.name}));
  for (const auto& t : tags) {
    if (t.Text(0).empty()) {
      d.tags.push_back(t.Text(1));
    } else {
      d.column_tags[t.Text(0)].push_back(t.Text(1));
    }
  }
  return d;
}

Result<std::vector<DatasetVersion>> CatalogService::Versions(std::string_view name) const {
  TAKT_RETURN_IF_ERROR(Get(name));
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(std::string("SELECT ") + internal::kVersionColumns +
                                                  " FROM dataset_versions WHERE dataset = ? ORDER BY version",
                                              {std::string(name)}));
  std::vector<DatasetVersion> out;
  for (const auto& r : rows) {
    TAKT_ASSIGN_OR_RETURN(auto v, internal::VersionFromRow(r));
    out.push_back(std::move(v));
  }
  return out;
}

Result<DatasetVersion> CatalogService::GetVersion(std::string_view name, int version) const {
  TAKT_ASSIGN_OR_RETURN(Dataset d, Get(name));
  if (d.latest_version == 0) return NotFound("dataset " + d.name + " has no versions yet");
  if (version == 0) version = d.latest_version;
  TAKT_ASSIGN_OR_RETURN(
      auto r, db_->QueryOne(std::string("SELECT ") + internal::kVersionColumns +
                                " FROM dataset_versions WHERE dataset = ? AND version = ?",
                            {std::string(name), int64_t{version}},
                            "dataset " + std::string(name) + " has no version " + std::to_string(version) +
                                " (latest is " + std::to_string(d.latest_version) + ")"));
  TAKT_ASSIGN_OR_RETURN(DatasetVersion v, internal::VersionFromRow(r));
  TAKT_ASSIGN_OR_RETURN(v.segments, SegmentsOf(v.dataset, v.version));
  return v;
}

Result<std::vector<Segment>> CatalogService::SegmentsOf(std::string_view dataset, int version) const {
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT partition_key, blob_id, rows, stored_bytes FROM "
                                   "dataset_segments WHERE dataset = ? AND version = ? ORDER BY seq",
                                   {std::string(dataset), int64_t{version}}));
  std::vector<Segment> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back({r.Text(0), r.Text(1), r.Int(2), r.Int(3)});
  return out;
}

Status CatalogService::Update(std::string_view name, const std::optional<std::string>& description,
                              const std::optional<std::string>& owner) {
  TAKT_ASSIGN_OR_RETURN(Dataset d, Get(name));
  if (owner) TAKT_RETURN_IF_ERROR(iam_->Get(*owner));
  return db_->Transaction([&](store::Database& tx) -> Status {
    if (description) {
      TAKT_RETURN_IF_ERROR(
          tx.Exec("UPDATE datasets SET description = ? WHERE name = ?", {*description, d.name}));
    }
    if (owner)
      TAKT_RETURN_IF_ERROR(tx.Exec("UPDATE datasets SET owner = ? WHERE name = ?", {*owner, d.name}));
    return Ok();
  });
}

Status CatalogService::Tag(std::string_view name, const std::vector<ColumnTag>& tags, bool remove) {
  TAKT_ASSIGN_OR_RETURN(Dataset d, Get(name));
  std::optional<frame::Schema> schema;
  if (d.latest_version > 0) {
    TAKT_ASSIGN_OR_RETURN(auto v, GetVersion(d.name, 0));
    schema = v.schema;
  }
  for (const auto& t : tags) {
    TAKT_RETURN_IF_ERROR(ValidateTag(t.tag));
    if (!t.column.empty() && schema && schema->IndexOf(t.column) < 0) {
      return InvalidArgument("dataset " + d.name + " has no column '" + t.column + "'");
    }
  }
  return db_->Transaction(
      [&](store::Database& tx) -> Status { return internal::WriteTags(tx, d.name, tags, remove); });
}

Result<SchemaDiff> CatalogService::Diff(std::string_view name, int from, int to) const {
  TAKT_ASSIGN_OR_RETURN(Dataset d, Get(name));
  if (to == 0) to = d.latest_version;
  if (from == 0) from = to - 1;
  if (from < 1)
    return InvalidArgument("dataset " + d.name + " v" + std::to_string(to) + " has no predecessor");
  TAKT_ASSIGN_OR_RETURN(auto a, GetVersion(d.name, from));
  TAKT_ASSIGN_OR_RETURN(auto b, GetVersion(d.name, to));
  return DiffSchemas(a.schema, b.schema);
}

Result<std::string> CatalogService::OwnerOf(std::string_view dataset) const {
  TAKT_ASSIGN_OR_RETURN(auto r,
                        db_->QueryOne("SELECT owner FROM datasets WHERE name = ?", {std::string(dataset)},
                                      "dataset " + std::string(dataset) + " does not exist"));
  return r.Text(0);
}

std::string CatalogService::PseudonymKey(std::string_view dataset) const {
  return keyring_->DeriveKey("catalog:pseudonym:" + std::string(dataset));
}

// ------------------------------------------------------------------ internal helpers

namespace internal {

const char* const kVersionColumns =
    "dataset, version, content_hash, data_hash, rows, source_bytes, stored_bytes, schema_json, partition_by, "
    "source, created_by, created_at, rows_skipped, stats_blob";

Result<DatasetVersion> VersionFromRow(const store::Row& r) {
  DatasetVersion v;
  v.dataset = r.Text(0);
  v.version = static_cast<int>(r.Int(1));
  v.content_hash = r.Text(2);
  v.data_hash = r.Text(3);
  v.rows = r.Int(4);
  v.source_bytes = r.Int(5);
  v.stored_bytes = r.Int(6);
  TAKT_ASSIGN_OR_RETURN(v.schema, SchemaFromJson(r.Text(7)));
  v.partition_by = r.Text(8);
  v.source = r.Text(9);
  v.created_by = r.Text(10);
  v.created_at = r.Text(11);
  v.rows_skipped = r.Int(12);
  v.stats_blob = r.Text(13);
  return v;
}

Status WriteTags(store::Database& tx, const std::string& dataset, const std::vector<ColumnTag>& tags,
                 bool remove) {
  for (const auto& t : tags) {
    if (remove) {
      TAKT_RETURN_IF_ERROR(
          tx.Exec("DELETE FROM dataset_tags WHERE dataset = ? AND column_name = ? AND tag = ?",
                  {dataset, t.column, t.tag}));
    } else {
      TAKT_RETURN_IF_ERROR(tx.Exec(
          "INSERT INTO dataset_tags (dataset, column_name, tag) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
          {dataset, t.column, t.tag}));
    }
  }
  return Ok();
}

}  // namespace internal

}  // namespace takt::catalog
