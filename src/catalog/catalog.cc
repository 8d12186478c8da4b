#include "catalog/catalog.h"

#include <optional>

#include "core/json.h"
#include "core/time.h"
#include "crypto/crypto.h"
#include "frame/codec.h"
#include "frame/csv.h"

namespace takt::catalog {
namespace {

constexpr const char* kVersionColumns =
    "dataset, version, blob_id, content_hash, rows, source_bytes, stored_bytes, schema_json, source, "
    "created_by, "
    "created_at";

Result<DatasetVersion> VersionFromRow(const store::Row& r) {
  DatasetVersion v;
  v.dataset = r.Text(0);
  v.version = static_cast<int>(r.Int(1));
  v.blob_id = r.Text(2);
  v.content_hash = r.Text(3);
  v.rows = r.Int(4);
  v.source_bytes = r.Int(5);
  v.stored_bytes = r.Int(6);
  TAKT_ASSIGN_OR_RETURN(v.schema, SchemaFromJson(r.Text(7)));
  v.source = r.Text(8);
  v.created_by = r.Text(9);
  v.created_at = r.Text(10);
  return v;
}

}  // namespace

Status ValidateDatasetName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && name[0] >= 'a' && name[0] <= 'z';
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  if (!ok) {
    return InvalidArgument(
        "dataset name '" + std::string(name) +
        "' is invalid: use 1-63 lowercase letters, digits and '-', starting with a letter");
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
        "created_at TEXT NOT NULL, PRIMARY KEY (dataset, version));"}});
}

Result<DatasetVersion> CatalogService::IngestCsv(const std::string& name, std::string_view csv,
                                                 const std::string& source, const std::string& principal,
                                                 const std::string& description) {
  TAKT_RETURN_IF_ERROR(ValidateDatasetName(name));
  // A new version of an existing dataset keeps its schema: values are checked
  // against it, so a non-numeric value in a numeric column is an error naming
  // line and column. (Schema evolution comes with the data-hub issue.)
  std::optional<frame::Schema> previous;
  if (auto latest = GetVersion(name, 0)) {
    previous = latest->schema;
  } else if (latest.error().code() != Code::kNotFound) {
    return std::unexpected(latest.error());
  }
  auto table = previous ? frame::ReadCsvWithSchema(csv, *previous) : frame::ReadCsv(csv);
  if (!table) return std::unexpected(table.error().WithContext("ingesting " + name + " from " + source));
  if (table->num_rows() == 0)
    return InvalidArgument("ingesting " + name + " from " + source + ": no data rows");
  std::string encoded = frame::EncodeTable(*table);
  // The blob is written first: if the metadata transaction fails, an
  // unreferenced blob remains, never a version without its data.
  TAKT_ASSIGN_OR_RETURN(std::string blob_id, blobs_->Put(encoded));

  DatasetVersion v;
  v.dataset = name;
  v.blob_id = blob_id;
  v.content_hash = crypto::Sha256Hex(csv);
  v.rows = static_cast<int64_t>(table->num_rows());
  v.source_bytes = static_cast<int64_t>(csv.size());
  v.stored_bytes = static_cast<int64_t>(encoded.size());
  v.schema = table->schema();
  v.source = source;
  v.created_by = principal;
  v.created_at = NowIso();
  Status s = db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(auto existing, tx.Query("SELECT name FROM datasets WHERE name = ?", {name}));
    if (existing.empty()) {
      TAKT_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO datasets (name, description, owner, created_at) VALUES (?, ?, ?, ?)",
                  {name, description, principal, v.created_at}));
    }
    TAKT_ASSIGN_OR_RETURN(auto row,
                          tx.QueryOne("SELECT COALESCE(MAX(version), 0) FROM dataset_versions WHERE "
                                      "dataset = ?",
                                      {name}, "max version"));
    v.version = static_cast<int>(row.Int(0)) + 1;
    TAKT_RETURN_IF_ERROR(
        tx.Exec(std::string("INSERT INTO dataset_versions (") + kVersionColumns +
                    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {v.dataset, int64_t{v.version}, v.blob_id, v.content_hash, v.rows, v.source_bytes,
                 v.stored_bytes, SchemaToJson(v.schema), v.source, v.created_by, v.created_at}));
    return Ok();
  });
  TAKT_RETURN_IF_ERROR(s);
  return v;
}

Result<std::vector<Dataset>> CatalogService::List() const {
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT d.name, d.description, d.owner, d.created_at, "
                                   "(SELECT COALESCE(MAX(version), 0) FROM dataset_versions v WHERE "
                                   "v.dataset = d.name) FROM datasets d ORDER BY d.name"));
  std::vector<Dataset> out;
  for (const auto& r : rows) {
    out.push_back({r.Text(0), r.Text(1), r.Text(2), r.Text(3), static_cast<int>(r.Int(4))});
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
  return Dataset{r.Text(0), r.Text(1), r.Text(2), r.Text(3), static_cast<int>(r.Int(4))};
}

Result<std::vector<DatasetVersion>> CatalogService::Versions(std::string_view name) const {
  TAKT_RETURN_IF_ERROR(Get(name));
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(std::string("SELECT ") + kVersionColumns +
                                                  " FROM dataset_versions WHERE dataset = ? ORDER BY version",
                                              {std::string(name)}));
  std::vector<DatasetVersion> out;
  for (const auto& r : rows) {
    TAKT_ASSIGN_OR_RETURN(auto v, VersionFromRow(r));
    out.push_back(std::move(v));
  }
  return out;
}

Result<DatasetVersion> CatalogService::GetVersion(std::string_view name, int version) const {
  TAKT_ASSIGN_OR_RETURN(Dataset d, Get(name));
  if (version == 0) version = d.latest_version;
  TAKT_ASSIGN_OR_RETURN(
      auto r, db_->QueryOne(std::string("SELECT ") + kVersionColumns +
                                " FROM dataset_versions WHERE dataset = ? AND version = ?",
                            {std::string(name), int64_t{version}},
                            "dataset " + std::string(name) + " has no version " + std::to_string(version) +
                                " (latest is " + std::to_string(d.latest_version) + ")"));
  return VersionFromRow(r);
}

Result<frame::Table> CatalogService::Read(std::string_view name, int version,
                                          const std::vector<std::string>* columns) const {
  TAKT_ASSIGN_OR_RETURN(DatasetVersion v, GetVersion(name, version));
  std::string where = "reading dataset " + v.dataset + " v" + std::to_string(v.version);
  auto bytes = blobs_->Get(v.blob_id);
  if (!bytes) return std::unexpected(bytes.error().WithContext(where));
  auto table = frame::DecodeTable(*bytes, columns);
  if (!table) return std::unexpected(table.error().WithContext(where));
  return table;
}

}  // namespace takt::catalog
