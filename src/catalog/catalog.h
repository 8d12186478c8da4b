// File: catalog/catalog.h
//
// The data hub: datasets and their immutable versions. Every ingest parses the
// source, infers a schema, encodes the table as compressed column chunks and
// stores it encrypted in the blob store; the catalog row points at the blob.
// `Read` is the one path through which dataset rows leave the catalog (grants,
// row filters and masks hook in here in the data-hub issue).
//
// Thread-safe: the service keeps no state outside the database and blob store.
#pragma once

#include <string>
#include <vector>

#include "blob/blob_store.h"
#include "core/result.h"
#include "frame/table.h"
#include "store/database.h"

namespace takt::catalog {

struct Dataset {
  std::string name;
  std::string description;
  std::string owner;
  std::string created_at;
  int latest_version = 0;
};

struct DatasetVersion {
  std::string dataset;
  int version = 0;
  std::string blob_id;       // the encoded, encrypted table
  std::string content_hash;  // SHA-256 of the source bytes as ingested
  int64_t rows = 0;
  int64_t source_bytes = 0;
  int64_t stored_bytes = 0;  // encoded (compressed) size
  frame::Schema schema;
  std::string source;  // e.g. "upload:telemetry.csv"
  std::string created_by;
  std::string created_at;
};

// Dataset names: 1-63 of [a-z0-9-], starting with a letter.
Status ValidateDatasetName(std::string_view name);
// "weld-telemetry" → (name, 0); "weld-telemetry@3" → (name, 3). 0 means latest.
Result<std::pair<std::string, int>> ParseDatasetRef(std::string_view ref);

class CatalogService {
 public:
  CatalogService(store::Database* db, blob::BlobStore* blobs) : db_(db), blobs_(blobs) {}

  Status Migrate();

  // Parses `csv` (header row required), stores a new version. The dataset is
  // created on first ingest. Bad CSV: InvalidArgument naming line and column;
  // nothing is written.
  Result<DatasetVersion> IngestCsv(const std::string& name, std::string_view csv, const std::string& source,
                                   const std::string& principal, const std::string& description = "");

  Result<std::vector<Dataset>> List() const;
  Result<Dataset> Get(std::string_view name) const;
  Result<std::vector<DatasetVersion>> Versions(std::string_view name) const;
  // version 0: the latest.
  Result<DatasetVersion> GetVersion(std::string_view name, int version) const;
  // The governed read: decodes only `columns` when given.
  Result<frame::Table> Read(std::string_view name, int version,
                            const std::vector<std::string>* columns = nullptr) const;

 private:
  store::Database* db_;
  blob::BlobStore* blobs_;
};

std::string SchemaToJson(const frame::Schema& schema);
Result<frame::Schema> SchemaFromJson(std::string_view json);

}  // namespace takt::catalog
