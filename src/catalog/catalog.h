// File: catalog/catalog.h
//
// The data hub: datasets, their immutable versions, tags, statistics and the
// grants that share them, down to single columns and rows, with masks.
//
// A version is a list of segments: encrypted, content-addressed blobs of
// compressed column chunks (frame/codec.h), each a slice of one partition.
// Ingest streams: batches from a BatchReader become segments as they come, so
// memory is bounded by a few segments whatever the source size. A version that
// appends or re-ingests partitions reuses the unchanged segments of the
// previous version. Statistics are computed per partition during ingest and
// merged per version.
//
// Every row that leaves the catalog goes through OpenRead (grants, row
// filters, masks, audit): the API, pipeline inputs, batch scoring and
// monitoring all read through it. There is no other read path.
//
// Thread-safe: the service keeps no mutable state outside the database, the
// blob store and the scheduler (which has its own lock).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "blob/blob_store.h"
#include "core/result.h"
#include "frame/batch.h"
#include "frame/readers.h"
#include "frame/stats.h"
#include "frame/table.h"
#include "policy/mask.h"
#include "policy/predicate.h"
#include "store/database.h"

namespace takt::crypto {
class Keyring;
}  // namespace takt::crypto
namespace takt::iam {
class IamService;
}  // namespace takt::iam

namespace takt::catalog {

struct ColumnTag {
  std::string column;  // "" for a tag on the dataset itself
  std::string tag;
};

struct Dataset {
  std::string name;
  std::string description;
  std::string owner;
  std::string created_at;
  int latest_version = 0;
  std::vector<std::string> tags;                                // on the dataset
  std::map<std::string, std::vector<std::string>> column_tags;  // column → tags
};

struct Segment {
  std::string partition;  // "" when unpartitioned, else "plant=P1", "file=day-03.csv"
  std::string blob_id;
  int64_t rows = 0;
  int64_t stored_bytes = 0;
};

struct DatasetVersion {
  std::string dataset;
  int version = 0;
  std::string content_hash;  // SHA-256 of the source bytes read (SQL sources: of the data)
  std::string data_hash;     // SHA-256 over the segment ids: equal data, equal hash
  int64_t rows = 0;
  int64_t source_bytes = 0;
  int64_t stored_bytes = 0;  // encoded (compressed) size
  frame::Schema schema;
  std::string partition_by;  // "" or the partition expression ("plant", "timestamp:day", "file")
  std::string source;        // e.g. "upload:telemetry.csv", "postgres:postgresql://etl@db:5432/plant"
  std::string created_by;
  std::string created_at;
  int64_t rows_skipped = 0;  // malformed rows dropped with --on-error skip
  std::string stats_blob;
  std::vector<Segment> segments;  // in read order
};

// Dataset names: 1-63 of [a-z0-9-], starting with a letter.
Status ValidateDatasetName(std::string_view name);
// "weld-telemetry" → (name, 0); "weld-telemetry@3" → (name, 3). 0 means latest.
Result<std::pair<std::string, int>> ParseDatasetRef(std::string_view ref);
// Tags: 1-63 of [a-z0-9-_].
Status ValidateTag(std::string_view tag);

std::string SchemaToJson(const frame::Schema& schema);
Result<frame::Schema> SchemaFromJson(std::string_view json);

// ------------------------------------------------------------------ schema evolution

struct SchemaChange {
  std::string column;
  std::string kind;  // "added", "removed", "retyped", "nullable"
  std::string from;  // old type ("" for added)
  std::string to;    // new type ("" for removed)
  bool breaking = false;
};
struct SchemaDiff {
  std::vector<SchemaChange> changes;
  bool breaking() const;
  std::string Summary() const;  // "removed force_kn (float64); retyped plant: string → int64"
};
// An added column is fine; a column that becomes nullable is fine; a removed
// or retyped column is breaking.
SchemaDiff DiffSchemas(const frame::Schema& from, const frame::Schema& to);

// ------------------------------------------------------------------ ingest

struct IngestOptions {
  std::string format = "csv";  // csv or jsonl, for byte sources
  frame::TextReadOptions text;
  // "" (unpartitioned), a column ("plant"), or a timestamp column truncated
  // ("timestamp:day", ":hour", ":month", ":year"). Directory sources are
  // partitioned by file.
  std::string partition_by;
  // Keep the previous version's partitions that the source does not bring
  // (unpartitioned: the new rows are added after the previous ones).
  bool append = false;
  bool allow_breaking = false;
  // No new version when the data equals the latest version's (schedules).
  bool only_if_changed = false;
  std::string description;        // sets the dataset's description when given
  std::vector<ColumnTag> tags;    // added in the same transaction as the version
  std::string source_label;       // recorded as DatasetVersion::source
  int64_t segment_rows = 131072;  // rows per segment at most
  // Called now and then with (bytes read, total bytes or 0, rows so far).
  std::function<void(uint64_t, uint64_t, int64_t)> progress;
};

struct IngestResult {
  DatasetVersion version;  // the new version, or the unchanged latest one
  bool created = true;     // false: only_if_changed and the data was the same
  SchemaDiff diff;         // against the previous version
  int64_t rows_skipped = 0;
  std::vector<std::string> errors;  // the first few problems of skipped rows
  std::vector<std::string> written_partitions;
  std::vector<std::string> reused_partitions;
};

// Where rows come from on the server side. Paths must lie under the
// catalog's landing root (symlinks resolved).
struct SourceSpec {
  std::string kind;              // "file", "dir", "sqlite", "postgres"
  std::string path;              // file, dir, sqlite
  std::string url;               // postgres conninfo (a secret: never logged or recorded)
  std::string query;             // sqlite, postgres
  std::string Describe() const;  // for records, without secrets
};

// ------------------------------------------------------------------ grants

// Who may read which columns and rows of which datasets, with which masks.
//   allow: read on `columns` (or all but `exclude`), rows matching
//          `row_filter` (or all), with `masks`.
//   deny:  no read of `columns`/all but `exclude` (neither: of anything).
//   mask:  only `masks`; grants no access by itself.
// Column lists and mask targets name columns or "tag:<tag>". `subject` is
// "principal:<name>", "group:<name>", "project:<name>", or "*" (everyone but
// the dataset's owner; mask rules only). `dataset` is a name, "tag:<tag>"
// (every dataset carrying the tag, now or later), or "*".
struct Grant {
  std::string id;  // "g-..."
  std::string effect;
  std::string subject;
  std::string dataset;
  std::vector<std::string> columns;
  std::vector<std::string> exclude;
  std::string row_filter;
  std::vector<std::pair<std::string, std::string>> masks;  // target → mask spec
  std::string note;
  std::string created_by;
  std::string created_at;
};

// One column as a reader sees it.
struct ColumnAccess {
  frame::Field source;  // as stored
  frame::Field output;  // as returned (masked columns change type)
  std::optional<policy::Mask> mask;
  std::string mask_grant;  // the grant whose mask applies
};

// The effective access of one principal to one dataset version: the result
// of evaluating every applicable grant. Default deny; a deny wins over any
// allow; allows union their columns and OR their row filters; a column masked
// by any applicable rule stays masked (the strongest mask wins).
struct AccessPlan {
  std::string principal;
  std::string dataset;
  int version = 0;
  bool owner = false;                           // the dataset's owner reads everything, unfiltered
  std::vector<ColumnAccess> columns;            // in schema order
  std::optional<policy::Predicate> row_filter;  // bound; nullopt: every row
  std::string row_filter_text;                  // with literals of masked columns withheld
  std::vector<std::string> grants;              // ids of the grants that apply
  std::vector<std::string> notes;               // grants skipped, and why

  frame::Schema OutputSchema() const;
  const ColumnAccess* Find(std::string_view column) const;
};

// ------------------------------------------------------------------ reads

struct ReadRequest {
  std::string principal;  // who reads (a name; pipelines read as the project's service identity)
  std::string dataset;
  int version = 0;                   // 0: latest
  std::vector<std::string> columns;  // empty: every granted column
  std::string where;                 // the reader's own filter, over the returned (masked) values
  int64_t limit = -1;                // rows at most; -1: all
  std::string purpose;               // "dataset head", "run r-... step features"
};

// A stream of governed batches. The audit record (principal, version, columns,
// masks, row filter, rows returned, purpose) is written once, when the read
// ends: at the last batch, on Finish, or when destroyed.
class GovernedRead {
 public:
  virtual ~GovernedRead() = default;
  virtual const frame::Schema& schema() const = 0;  // output schema
  virtual const AccessPlan& plan() const = 0;
  virtual const DatasetVersion& version() const = 0;
  virtual Result<std::optional<frame::Table>> Next() = 0;
  virtual int64_t rows_returned() const = 0;
  // Ends the read early (e.g. the client went away) and writes the audit record.
  virtual void Finish(bool completed) = 0;
};

// The remaining batches of a read, as one table (with the read's schema).
Result<frame::Table> ReadRemaining(GovernedRead& read);

// Statistics as a reader may see them: non-granted columns are absent; masked
// columns keep only counts; with a row filter they are computed over the
// visible rows.
struct StatsView {
  std::string dataset;
  int version = 0;
  int64_t rows = 0;
  bool filtered = false;  // computed over the reader's rows, not the stored ones
  std::vector<frame::ColumnStats> columns;
  std::vector<std::string> masked;  // columns whose values are withheld
};

// ------------------------------------------------------------------ schedules

struct IngestSchedule {
  std::string id;  // "s-..."
  std::string dataset;
  std::string cron;
  SourceSpec source;      // secrets sealed at rest
  IngestOptions options;  // format, partitioning, append, types
  std::string owner;
  std::string created_at;
  int64_t next_run = 0;  // epoch seconds
  std::string last_run_at;
  std::string last_status;  // "created v4", "unchanged (v3)", "failed: ..."
};

struct CatalogOptions {
  std::string landing_root;  // server-side sources must lie under it
};

class CatalogService {
 public:
  CatalogService(store::Database* db, blob::BlobStore* blobs, const crypto::Keyring* keyring,
                 iam::IamService* iam, CatalogOptions options = {});
  ~CatalogService();

  Status Migrate();

  // --- ingest. Bad input: InvalidArgument naming line and column; nothing is
  // written (a failed ingest may leave unreferenced blobs, never a version).
  Result<IngestResult> Ingest(const std::string& name, frame::ByteSource& source,
                              const IngestOptions& options, const std::string& principal);
  Result<IngestResult> IngestBatches(const std::string& name, frame::BatchReader& reader,
                                     const IngestOptions& options, const std::string& principal,
                                     const std::string& content_hash);
  // file, dir, sqlite, postgres.
  Result<IngestResult> IngestFrom(const std::string& name, const SourceSpec& source,
                                  const IngestOptions& options, const std::string& principal);
  // Small uploads (tests): CSV text, options defaulted.
  Result<DatasetVersion> IngestCsv(const std::string& name, std::string_view csv, const std::string& source,
                                   const std::string& principal, const std::string& description = "");

  // --- metadata
  Result<std::vector<Dataset>> List() const;
  Result<Dataset> Get(std::string_view name) const;
  Result<std::vector<DatasetVersion>> Versions(std::string_view name) const;    // without segments
  Result<DatasetVersion> GetVersion(std::string_view name, int version) const;  // 0: latest
  // Owner or admin only (checked by the caller's persona for admin).
  Status Update(std::string_view name, const std::optional<std::string>& description,
                const std::optional<std::string>& owner);
  Status Tag(std::string_view name, const std::vector<ColumnTag>& tags, bool remove);
  Result<SchemaDiff> Diff(std::string_view name, int from, int to) const;

  // --- grants. Dataset-specific grants are checked against the latest
  // schema (columns, filter types, masks).
  Result<Grant> CreateGrant(Grant grant, const std::string& principal);
  Result<std::vector<Grant>> ListGrants(std::string_view dataset = "", std::string_view subject = "") const;
  Status DeleteGrant(std::string_view id);
  // The effective access. PermissionDenied (naming the reason) when none.
  Result<AccessPlan> PlanAccess(std::string_view principal, std::string_view dataset, int version) const;

  // --- the one governed read path.
  Result<std::unique_ptr<GovernedRead>> OpenRead(const ReadRequest& request) const;
  Result<frame::Table> ReadTable(const ReadRequest& request) const;
  Result<StatsView> Stats(std::string_view principal, std::string_view dataset, int version) const;

  // --- scheduled ingest
  Result<IngestSchedule> CreateSchedule(IngestSchedule schedule, const std::string& principal);
  Result<std::vector<IngestSchedule>> ListSchedules(std::string_view dataset = "") const;
  Status DeleteSchedule(std::string_view id);
  // Runs one schedule now; records its status. The ingest result or its error.
  Result<IngestResult> RunSchedule(std::string_view id);
  // Runs the schedules due at `now` (epoch seconds). For tests and the loop.
  void RunDue(int64_t now);
  // A thread that calls RunDue every `tick` seconds of the real clock.
  void StartScheduler(int tick_seconds = 15);
  void StopScheduler();

  // The 32-byte key of the hash mask for a dataset's pseudonyms.
  std::string PseudonymKey(std::string_view dataset) const;

  // Internal, used by the read and ingest paths.
  Result<std::string> OwnerOf(std::string_view dataset) const;
  store::Database* db() const { return db_; }
  blob::BlobStore* blobs() const { return blobs_; }
  iam::IamService* iam() const { return iam_; }

 private:
  Result<std::vector<Segment>> SegmentsOf(std::string_view dataset, int version) const;
  Result<std::string> ResolveLandingPath(const std::string& path) const;
  friend class GovernedReadImpl;

  store::Database* db_;
  blob::BlobStore* blobs_;
  const crypto::Keyring* keyring_;
  iam::IamService* iam_;
  CatalogOptions options_;

  std::mutex scheduler_mu_;
  std::condition_variable scheduler_cv_;
  bool scheduler_stop_ = false;
  std::thread scheduler_;
};

}  // namespace takt::catalog
