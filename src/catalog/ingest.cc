// Ingest: batches from a reader become encrypted segments as they arrive; the
// version row, its partitions and segments are written in one transaction at
// the end, so a failed ingest leaves no version (at most unreferenced blobs).
#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "catalog/catalog.h"
#include "catalog/internal.h"
#include "connectors/sql_source.h"
#include "core/json.h"
#include "core/time.h"
#include "crypto/crypto.h"
#include "frame/codec.h"
#include "iam/iam.h"

namespace takt::catalog {
namespace fs = std::filesystem;

namespace internal {

Result<std::vector<Partition>> PartitionsOf(store::Database& db, const std::string& dataset, int version) {
  TAKT_ASSIGN_OR_RETURN(auto rows, db.Query("SELECT partition_key, rows, source_hash, stats_blob FROM "
                                            "dataset_partitions WHERE dataset = ? AND version = ? ORDER BY "
                                            "partition_key",
                                            {dataset, int64_t{version}}));
  std::vector<Partition> out;
  std::unordered_map<std::string, size_t> index;
  for (const auto& r : rows) {
    index[r.Text(0)] = out.size();
    out.push_back({r.Text(0), r.Int(1), r.Text(2), r.Text(3), {}});
  }
  TAKT_ASSIGN_OR_RETURN(auto segs, db.Query("SELECT partition_key, blob_id, rows, stored_bytes FROM "
                                            "dataset_segments WHERE dataset = ? AND version = ? ORDER BY seq",
                                            {dataset, int64_t{version}}));
  for (const auto& r : segs) {
    auto it = index.find(r.Text(0));
    if (it == index.end()) {  // versions of the first layout have segments but no partition rows
      index[r.Text(0)] = out.size();
      out.push_back({r.Text(0), 0, "", "", {}});
      it = index.find(r.Text(0));
    }
    Partition& p = out[it->second];
    p.segments.push_back({r.Text(0), r.Text(1), r.Int(2), r.Int(3)});
  }
  for (auto& p : out) {
    if (p.rows == 0)
      for (const auto& s : p.segments) p.rows += s.rows;
  }
  return out;
}

}  // namespace internal

namespace {

// Counts and hashes the bytes read through it: the content hash of the source.
class HashingSource : public frame::ByteSource {
 public:
  explicit HashingSource(frame::ByteSource& inner) : inner_(inner) {}
  Result<size_t> Read(char* buf, size_t n) override {
    TAKT_ASSIGN_OR_RETURN(size_t k, inner_.Read(buf, n));
    hash_.Update(std::string_view(buf, k));
    bytes_ += k;
    return k;
  }
  uint64_t size_hint() const override { return inner_.size_hint(); }
  std::string FinishHex() { return hash_.FinishHex(); }
  uint64_t bytes() const { return bytes_; }

 private:
  frame::ByteSource& inner_;
  crypto::Sha256 hash_;
  uint64_t bytes_ = 0;
};

struct PartitionSpec {
  std::string column;  // "" unpartitioned
  std::string unit;    // timestamps: hour, day, month, year
  bool by_file = false;
};

Result<PartitionSpec> ParsePartitionBy(std::string_view text) {
  PartitionSpec spec;
  if (text.empty()) return spec;
  if (text == "file") {
    spec.by_file = true;
    return spec;
  }
  auto colon = text.find(':');
  spec.column = std::string(text.substr(0, colon));
  if (colon != std::string_view::npos) {
    spec.unit = std::string(text.substr(colon + 1));
    if (spec.unit != "hour" && spec.unit != "day" && spec.unit != "month" && spec.unit != "year") {
      return InvalidArgument("partition by '" + std::string(text) +
                             "': the unit must be hour, day, month or year (e.g. timestamp:day)");
    }
  }
  if (spec.column.empty()) return InvalidArgument("partition by '" + std::string(text) + "': no column");
  return spec;
}

std::string TruncatedTimestamp(int64_t t, const std::string& unit) {
  std::string iso = frame::FormatTimestamp(t);  // 2026-03-01T14:00:00Z
  if (unit == "year") return iso.substr(0, 4);
  if (unit == "month") return iso.substr(0, 7);
  if (unit == "day") return iso.substr(0, 10);
  return iso.substr(0, 13);  // hour
}

// Adds `field` to `schema` or widens what is there. A type conflict is an error.
Status MergeField(frame::Schema& schema, const frame::Field& field, std::string_view where) {
  int i = schema.IndexOf(field.name);
  if (i < 0) {
    schema.fields.push_back(field);
    return Ok();
  }
  auto& f = schema.fields[i];
  if (f.type != field.type) {
    return InvalidArgument(std::string(where) + "column " + field.name + " is " +
                           std::string(frame::TypeName(field.type)) + " here but " +
                           std::string(frame::TypeName(f.type)) + " elsewhere in this ingest");
  }
  f.nullable = f.nullable || field.nullable;
  return Ok();
}

// Runs tasks in order on a thread of its own. At most kMaxQueued wait at a
// time, so what they hold stays bounded. After a task fails the rest are
// skipped, and Drain reports the first error.
class SerialWorker {
 public:
  static constexpr size_t kMaxQueued = 2;

  SerialWorker() : thread_([this] { Loop(); }) {}
  ~SerialWorker() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  SerialWorker(const SerialWorker&) = delete;
  SerialWorker& operator=(const SerialWorker&) = delete;

  void Submit(std::function<Status()> task) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return queue_.size() < kMaxQueued; });
    queue_.push_back(std::move(task));
    cv_.notify_all();
  }

  // Waits until every queued task has run; the first error, if any.
  Status Drain() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
    if (error_) return std::unexpected(*error_);
    return Ok();
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;
      std::function<Status()> task = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      const bool skip = error_.has_value();
      lock.unlock();
      cv_.notify_all();
      Status done = skip ? Ok() : task();
      task = nullptr;  // drop what it holds before waiting again
      lock.lock();
      if (!done && !error_) error_ = done.error();
      busy_ = false;
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<Status()>> queue_;
  bool busy_ = false;
  bool closing_ = false;
  std::optional<Error> error_;
  std::thread thread_;  // last: starts after the members it uses
};

struct PartitionState {
  std::string key;
  frame::Table pending;
  frame::StatsBuilder stats;     // written by the statistics worker until drained
  std::deque<Segment> segments;  // a deque: the encoder fills slots while more are added
  int64_t rows = 0;
  std::string source_hash;
};

// Builds one version: routes rows into partitions, flushes segments, and
// commits everything at the end.
class VersionBuilder {
 public:
  VersionBuilder(CatalogService& catalog, std::string dataset, const IngestOptions& options,
                 std::optional<DatasetVersion> previous, PartitionSpec spec)
      : catalog_(catalog),
        dataset_(std::move(dataset)),
        options_(options),
        previous_(std::move(previous)),
        spec_(std::move(spec)) {}

  // Checks the columns a source brings against the previous version before any
  // row is read, so a breaking change fails fast.
  Status CheckColumns(const frame::Schema& incoming) const {
    if (!previous_) return Ok();
    for (const auto& f : incoming.fields) {
      int i = previous_->schema.IndexOf(f.name);
      if (i >= 0 && previous_->schema.fields[i].type != f.type) {
        if (options_.append) {
          return InvalidArgument("dataset " + dataset_ + ": column " + f.name + " is " +
                                 std::string(frame::TypeName(previous_->schema.fields[i].type)) + " in v" +
                                 std::to_string(previous_->version) + " and " +
                                 std::string(frame::TypeName(f.type)) +
                                 " here; an append cannot retype a column (re-ingest everything with "
                                 "--allow-breaking)");
        }
        if (!options_.allow_breaking) {
          return InvalidArgument("dataset " + dataset_ + ": column " + f.name + " would change from " +
                                 std::string(frame::TypeName(previous_->schema.fields[i].type)) + " (v" +
                                 std::to_string(previous_->version) + ") to " +
                                 std::string(frame::TypeName(f.type)) +
                                 ": a breaking change; pass --allow-breaking to accept it");
        }
      }
    }
    if (!options_.append && !options_.allow_breaking && spec_.by_file == false) {
      std::string removed;
      for (const auto& f : previous_->schema.fields) {
        if (incoming.IndexOf(f.name) < 0) removed += (removed.empty() ? "" : ", ") + f.name;
      }
      if (!removed.empty()) {
        return InvalidArgument(
            "dataset " + dataset_ + ": the source lacks column(s) " + removed + " of v" +
            std::to_string(previous_->version) +
            ": removing a column is a breaking change; pass --allow-breaking to accept it");
      }
    }
    return Ok();
  }

  // Adds a batch. `key` names the partition for directory sources; otherwise
  // partition_by decides per row.
  Status Add(frame::Table batch, const std::string& file_key) {
    for (const auto& c : batch.columns) TAKT_RETURN_IF_ERROR(MergeField(schema_, c.field, ""));
    if (batch.num_rows() == 0) return Ok();
    if (spec_.by_file || spec_.column.empty()) return AddTo(spec_.by_file ? file_key : "", std::move(batch));
    const frame::Column* col = batch.Find(spec_.column);
    if (col == nullptr)
      return InvalidArgument("partition column '" + spec_.column + "' is not in the source");
    if (!spec_.unit.empty() && col->field.type != frame::Type::kTimestamp) {
      return InvalidArgument("partition by " + spec_.column + ":" + spec_.unit + ": " + spec_.column +
                             " is not a timestamp column");
    }
    const size_t n = batch.num_rows();
    std::vector<std::string> keys(n);
    std::string first;
    bool all_same = true;
    for (size_t r = 0; r < n; ++r) {
      std::string value;
      if (col->IsNull(r)) {
        value = "__null__";
      } else if (!spec_.unit.empty()) {
        value = TruncatedTimestamp(col->ints[r], spec_.unit);
      } else {
        value = col->AsText(r);
      }
      keys[r] = spec_.column + "=" + value;
      if (r == 0) first = keys[r];
      all_same = all_same && keys[r] == first;
    }
    if (all_same) return AddTo(first, std::move(batch));
    std::map<std::string, std::vector<uint8_t>> masks;
    for (size_t r = 0; r < n; ++r) {
      auto& m = masks[keys[r]];
      if (m.empty()) m.assign(n, 0);
      m[r] = 1;
    }
    if (masks.size() > 10000) {
      return InvalidArgument("partition by " + spec_.column +
                             " makes more than 10000 partitions in one batch: "
                             "choose a coarser partition column");
    }
    for (auto& [key, keep] : masks) TAKT_RETURN_IF_ERROR(AddTo(key, frame::SelectRows(batch, keep)));
    return Ok();
  }

  void SetSourceHash(const std::string& key, const std::string& hash) { State(key).source_hash = hash; }

  // A partition of the previous version, kept as it is.
  void Reuse(const internal::Partition& p) { reused_.push_back(p); }

  Status Flush() {
    for (auto& [key, st] : partitions_) TAKT_RETURN_IF_ERROR(FlushPartition(*st));
    Status stats_done = stats_worker_.Drain();
    for (auto& w : encode_workers_) TAKT_RETURN_IF_ERROR(w.Drain());
    return stats_done;
  }

  int64_t rows() const {
    int64_t n = 0;
    for (const auto& [k, st] : partitions_) n += st->rows;
    return n;
  }

  Result<IngestResult> Commit(const std::string& principal, const std::string& content_hash,
                              uint64_t source_bytes, int64_t rows_skipped, std::vector<std::string> errors) {
    TAKT_RETURN_IF_ERROR(Flush());
    IngestResult result;
    result.rows_skipped = rows_skipped;
    result.errors = std::move(errors);

    // Partitions of the new version, and its segments in read order.
    std::vector<internal::Partition> parts;
    const bool merge_unpartitioned = options_.append && previous_ && spec_.column.empty() && !spec_.by_file;
    std::optional<frame::StatsBuilder> merged_prev;
    for (const auto& p : reused_) {
      // A partition the source brings again replaces the old one (unpartitioned: merged below).
      if (partitions_.count(p.key)) continue;
      parts.push_back(p);
      result.reused_partitions.push_back(p.key);
    }
    for (auto& [key, st] : partitions_) {
      internal::Partition p;
      p.key = key;
      p.rows = st->rows;
      p.source_hash = st->source_hash;
      frame::StatsBuilder stats = st->stats;
      if (merge_unpartitioned && key.empty()) {
        for (const auto& old : reused_) {
          if (!old.key.empty()) continue;
          TAKT_ASSIGN_OR_RETURN(frame::StatsBuilder prev_stats, LoadStats(old.stats_blob));
          prev_stats.Merge(stats);
          stats = std::move(prev_stats);
          p.rows += old.rows;
          p.segments = old.segments;
        }
      }
      for (const auto& s : st->segments) p.segments.push_back(s);
      TAKT_ASSIGN_OR_RETURN(p.stats_blob, catalog_.blobs()->Put(stats.Serialize()));
      parts.push_back(std::move(p));
      result.written_partitions.push_back(key);
    }
    if (parts.empty() || std::all_of(parts.begin(), parts.end(), [](const auto& p) { return p.rows == 0; })) {
      return InvalidArgument(
          "ingesting " + dataset_ + " from " + options_.source_label + ": no data rows" +
          (rows_skipped > 0 ? " (" + std::to_string(rows_skipped) + " rows skipped)" : ""));
    }

    // The version's schema: with reused partitions it is the union, and a
    // column that some partitions lack is nullable.
    frame::Schema schema = schema_;
    if (!reused_.empty() && previous_) {
      frame::Schema u = previous_->schema;
      for (const auto& f : schema_.fields) TAKT_RETURN_IF_ERROR(MergeField(u, f, ""));
      for (auto& f : u.fields) {
        if (schema_.IndexOf(f.name) < 0 || previous_->schema.IndexOf(f.name) < 0) f.nullable = true;
      }
      schema = std::move(u);
    }
    if (previous_) {
      result.diff = DiffSchemas(previous_->schema, schema);
      if (result.diff.breaking() && !options_.allow_breaking) {
        return InvalidArgument("dataset " + dataset_ + ": " + result.diff.Summary() + " against v" +
                               std::to_string(previous_->version) +
                               ": a breaking change; pass --allow-breaking to accept it");
      }
    }

    // Merged statistics of the whole version.
    frame::StatsBuilder version_stats(schema);
    for (const auto& p : parts) {
      TAKT_ASSIGN_OR_RETURN(frame::StatsBuilder s, LoadStats(p.stats_blob));
      version_stats.Merge(s);
    }

    DatasetVersion v;
    v.dataset = dataset_;
    v.schema = schema;
    v.partition_by = options_.partition_by;
    v.source = options_.source_label;
    v.created_by = principal;
    v.created_at = NowIso();
    v.rows_skipped = rows_skipped;
    v.source_bytes = static_cast<int64_t>(source_bytes);
    crypto::Sha256 data_hash;
    data_hash.Update(SchemaToJson(schema));
    for (const auto& p : parts) {
      for (const auto& s : p.segments) {
        v.segments.push_back(s);
        v.rows += s.rows;
        v.stored_bytes += s.stored_bytes;
        data_hash.Update(s.blob_id);
      }
    }
    v.data_hash = data_hash.FinishHex();
    v.content_hash = content_hash.empty() ? v.data_hash : content_hash;

    if (options_.only_if_changed && previous_ && previous_->data_hash == v.data_hash) {
      result.version = *previous_;
      result.created = false;
      return result;
    }
    TAKT_ASSIGN_OR_RETURN(v.stats_blob, catalog_.blobs()->Put(frame::StatsToJson(version_stats.Finish())));

    Status s = catalog_.db()->Transaction([&](store::Database& tx) -> Status {
      TAKT_ASSIGN_OR_RETURN(auto existing, tx.Query("SELECT name FROM datasets WHERE name = ?", {dataset_}));
      if (existing.empty()) {
        TAKT_RETURN_IF_ERROR(
            tx.Exec("INSERT INTO datasets (name, description, owner, created_at) VALUES (?, ?, ?, ?)",
                    {dataset_, options_.description, principal, v.created_at}));
      } else if (!options_.description.empty()) {
        TAKT_RETURN_IF_ERROR(
            tx.Exec("UPDATE datasets SET description = ? WHERE name = ?", {options_.description, dataset_}));
      }
      TAKT_ASSIGN_OR_RETURN(auto row,
                            tx.QueryOne("SELECT COALESCE(MAX(version), 0) FROM dataset_versions WHERE "
                                        "dataset = ?",
                                        {dataset_}, "max version"));
      v.version = static_cast<int>(row.Int(0)) + 1;
      if (previous_ && v.version != previous_->version + 1) {
        return Conflict("dataset " + dataset_ + " got version " + std::to_string(v.version - 1) +
                        " while this ingest ran: ingest again");
      }
      TAKT_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO dataset_versions (dataset, version, blob_id, content_hash, data_hash, rows, "
                  "source_bytes, "
                  "stored_bytes, schema_json, partition_by, source, created_by, created_at, rows_skipped, "
                  "stats_blob) "
                  "VALUES (?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  {v.dataset, int64_t{v.version}, v.content_hash, v.data_hash, v.rows, v.source_bytes,
                   v.stored_bytes, SchemaToJson(v.schema), v.partition_by, v.source, v.created_by,
                   v.created_at, v.rows_skipped, v.stats_blob}));
      int64_t seq = 0;
      for (const auto& p : parts) {
        TAKT_RETURN_IF_ERROR(
            tx.Exec("INSERT INTO dataset_partitions (dataset, version, partition_key, rows, source_hash, "
                    "stats_blob) VALUES (?, ?, ?, ?, ?, ?)",
                    {v.dataset, int64_t{v.version}, p.key, p.rows, p.source_hash, p.stats_blob}));
        for (const auto& seg : p.segments) {
          TAKT_RETURN_IF_ERROR(tx.Exec(
              "INSERT INTO dataset_segments (dataset, version, seq, partition_key, blob_id, rows, "
              "stored_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
              {v.dataset, int64_t{v.version}, seq++, p.key, seg.blob_id, seg.rows, seg.stored_bytes}));
        }
      }
      for (const auto& t : options_.tags) {
        if (!t.column.empty() && v.schema.IndexOf(t.column) < 0)
          return InvalidArgument("tag " + t.tag + ": dataset " + dataset_ + " has no column '" + t.column +
                                 "'");
      }
      TAKT_RETURN_IF_ERROR(internal::WriteTags(tx, dataset_, options_.tags, false));
      return Ok();
    });
    TAKT_RETURN_IF_ERROR(s);
    result.version = std::move(v);
    return result;
  }

 private:
  Result<frame::StatsBuilder> LoadStats(const std::string& blob) {
    if (blob.empty()) return frame::StatsBuilder();
    TAKT_ASSIGN_OR_RETURN(std::string bytes, catalog_.blobs()->Get(blob));
    return frame::StatsBuilder::Deserialize(bytes);
  }

  PartitionState& State(const std::string& key) {
    auto& st = partitions_[key];
    if (!st) {
      st = std::make_unique<PartitionState>();
      st->key = key;
    }
    return *st;
  }

  Status AddTo(const std::string& key, frame::Table rows) {
    PartitionState& st = State(key);
    st.rows += static_cast<int64_t>(rows.num_rows());
    if (st.pending.num_rows() == 0 && rows.num_rows() <= static_cast<size_t>(options_.segment_rows)) {
      // The common case: a batch becomes (the start of) a segment without a copy.
      pending_rows_ += rows.num_rows();
      st.pending = std::move(rows);
      if (st.pending.num_rows() >= static_cast<size_t>(options_.segment_rows))
        TAKT_RETURN_IF_ERROR(FlushPartition(st));
      return Ok();
    }
    size_t offset = 0;
    while (offset < rows.num_rows()) {
      size_t room = static_cast<size_t>(options_.segment_rows) - st.pending.num_rows();
      size_t take = std::min(room, rows.num_rows() - offset);
      frame::Table part =
          (offset == 0 && take == rows.num_rows()) ? rows : frame::SliceRows(rows, offset, take);
      if (st.pending.columns.empty()) {
        st.pending = std::move(part);
      } else {
        TAKT_RETURN_IF_ERROR(frame::AppendRows(st.pending, part));
      }
      pending_rows_ += take;
      offset += take;
      if (st.pending.num_rows() >= static_cast<size_t>(options_.segment_rows)) {
        TAKT_RETURN_IF_ERROR(FlushPartition(st));
      }
    }
    // Many partitions each holding a little: flush the largest to bound memory.
    while (pending_rows_ > 4 * static_cast<size_t>(options_.segment_rows)) {
      PartitionState* largest = nullptr;
      for (auto& [k, p] : partitions_) {
        if (largest == nullptr || p->pending.num_rows() > largest->pending.num_rows()) largest = p.get();
      }
      TAKT_RETURN_IF_ERROR(FlushPartition(*largest));
    }
    return Ok();
  }

  Status FlushPartition(PartitionState& st) {
    const size_t n = st.pending.num_rows();
    if (n == 0) return Ok();
    st.segments.push_back({st.key, "", static_cast<int64_t>(n), 0});
    pending_rows_ -= n;
    // Parsing (this thread), statistics (one worker, so they keep the order rows
    // arrived in) and encoding (two workers: the heaviest part) overlap.
    auto table = std::make_shared<const frame::Table>(std::move(st.pending));
    st.pending = frame::Table();
    stats_worker_.Submit([table, &st]() -> Status {
      st.stats.Add(*table);
      return Ok();
    });
    SerialWorker& encoder = encode_workers_[next_encoder_++ % encode_workers_.size()];
    encoder.Submit([table, slot = &st.segments.back(), blobs = catalog_.blobs()]() -> Status {
      std::string encoded = frame::EncodeTable(*table);
      TAKT_ASSIGN_OR_RETURN(slot->blob_id, blobs->Put(encoded));
      slot->stored_bytes = static_cast<int64_t>(encoded.size());
      return Ok();
    });
    return Ok();
  }

  CatalogService& catalog_;
  std::string dataset_;
  const IngestOptions& options_;
  std::optional<DatasetVersion> previous_;
  PartitionSpec spec_;
  frame::Schema schema_;
  std::map<std::string, std::unique_ptr<PartitionState>> partitions_;
  std::vector<internal::Partition> reused_;
  size_t pending_rows_ = 0;
  // Last: joined before the partitions they write into go.
  SerialWorker stats_worker_;
  std::array<SerialWorker, 2> encode_workers_;
  size_t next_encoder_ = 0;
};

Result<std::optional<DatasetVersion>> Latest(const CatalogService& catalog, const std::string& name) {
  auto latest = catalog.GetVersion(name, 0);
  if (latest) return std::optional<DatasetVersion>(std::move(*latest));
  if (latest.error().code() == Code::kNotFound) return std::optional<DatasetVersion>();
  return std::unexpected(latest.error());
}

// Text options for a source: the previous version's types hint the columns
// the user did not type, so a re-ingest reads them the same way; pii-tagged
// columns never have their values quoted in errors.
IngestOptions Prepare(const CatalogService& catalog, const std::string& name, IngestOptions options,
                      const std::optional<DatasetVersion>& previous) {
  if (previous && !options.allow_breaking) {
    for (const auto& f : previous->schema.fields) {
      if (!options.text.types.count(f.name)) options.text.hints[f.name] = f.type;
    }
  }
  if (auto d = catalog.Get(name)) {
    for (const auto& [col, tags] : d->column_tags) {
      if (std::find(tags.begin(), tags.end(), "pii") != tags.end()) options.text.withhold_values.insert(col);
    }
  }
  for (const auto& t : options.tags) {
    if (t.tag == "pii" && !t.column.empty()) options.text.withhold_values.insert(t.column);
  }
  if (previous && options.partition_by.empty() && options.append)
    options.partition_by = previous->partition_by;
  return options;
}

Status CheckAppend(const std::string& name, const IngestOptions& options,
                   const std::optional<DatasetVersion>& previous) {
  if (options.append && previous && previous->partition_by != options.partition_by) {
    return InvalidArgument("dataset " + name + ": an append must keep the partitioning of v" +
                           std::to_string(previous->version) + " ('" + previous->partition_by + "'), not '" +
                           options.partition_by + "'");
  }
  return Ok();
}

Result<std::unique_ptr<frame::BatchReader>> OpenTextReader(frame::ByteSource& source,
                                                           const IngestOptions& options) {
  if (options.format == "csv") return frame::OpenCsvReader(source, options.text);
  if (options.format == "jsonl" || options.format == "ndjson")
    return frame::OpenJsonlReader(source, options.text);
  return InvalidArgument("format '" + options.format + "' is not csv or jsonl");
}

// Reads every batch of `reader` into `builder` under partition `key`.
Status Drain(frame::BatchReader& reader, VersionBuilder& builder, const std::string& key,
             const std::function<void(int64_t)>& after_batch) {
  while (true) {
    TAKT_ASSIGN_OR_RETURN(auto batch, reader.Next());
    if (!batch) break;
    TAKT_RETURN_IF_ERROR(builder.Add(std::move(*batch), key));
    if (after_batch) after_batch(builder.rows());
  }
  // The final schema may have widened nullability: record it.
  frame::Table empty;
  for (const auto& f : reader.schema().fields) empty.columns.push_back(frame::Column{f, {}, {}, {}, {}});
  return builder.Add(empty, key);
}

}  // namespace

Result<IngestResult> CatalogService::Ingest(const std::string& name, frame::ByteSource& source,
                                            const IngestOptions& in, const std::string& principal) {
  TAKT_RETURN_IF_ERROR(ValidateDatasetName(name));
  TAKT_ASSIGN_OR_RETURN(auto previous, Latest(*this, name));
  IngestOptions options = Prepare(*this, name, in, previous);
  TAKT_RETURN_IF_ERROR(CheckAppend(name, options, previous));
  TAKT_ASSIGN_OR_RETURN(PartitionSpec spec, ParsePartitionBy(options.partition_by));
  if (spec.by_file) return InvalidArgument("partition by file applies to directory sources only");
  const std::string where = "ingesting " + name + " from " + options.source_label;
  HashingSource hashing(source);
  auto reader = OpenTextReader(hashing, options);
  if (!reader) return std::unexpected(reader.error().WithContext(where));
  VersionBuilder builder(*this, name, options, previous, spec);
  TAKT_RETURN_IF_ERROR(builder.CheckColumns((*reader)->schema()));
  if (options.append && previous) {
    TAKT_ASSIGN_OR_RETURN(auto parts, internal::PartitionsOf(*db_, name, previous->version));
    for (const auto& p : parts) builder.Reuse(p);
  }
  Status drained = Drain(**reader, builder, "", [&](int64_t rows) {
    if (options.progress) options.progress(hashing.bytes(), hashing.size_hint(), rows);
  });
  if (!drained) return std::unexpected(drained.error().WithContext(where));
  const auto& report = (*reader)->report();
  auto result =
      builder.Commit(principal, hashing.FinishHex(), hashing.bytes(), report.rows_skipped, report.errors);
  if (!result)
    return std::unexpected(
        result.error().code() == Code::kInvalidArgument ? result.error() : result.error().WithContext(where));
  return result;
}

Result<IngestResult> CatalogService::IngestBatches(const std::string& name, frame::BatchReader& reader,
                                                   const IngestOptions& in, const std::string& principal,
                                                   const std::string& content_hash) {
  TAKT_RETURN_IF_ERROR(ValidateDatasetName(name));
  TAKT_ASSIGN_OR_RETURN(auto previous, Latest(*this, name));
  IngestOptions options = Prepare(*this, name, in, previous);
  TAKT_RETURN_IF_ERROR(CheckAppend(name, options, previous));
  TAKT_ASSIGN_OR_RETURN(PartitionSpec spec, ParsePartitionBy(options.partition_by));
  if (spec.by_file) return InvalidArgument("partition by file applies to directory sources only");
  VersionBuilder builder(*this, name, options, previous, spec);
  TAKT_RETURN_IF_ERROR(builder.CheckColumns(reader.schema()));
  if (options.append && previous) {
    TAKT_ASSIGN_OR_RETURN(auto parts, internal::PartitionsOf(*db_, name, previous->version));
    for (const auto& p : parts) builder.Reuse(p);
  }
  const std::string where = "ingesting " + name + " from " + options.source_label;
  Status drained = Drain(reader, builder, "", [&](int64_t rows) {
    if (options.progress) options.progress(reader.report().bytes_read, 0, rows);
  });
  if (!drained) return std::unexpected(drained.error().WithContext(where));
  return builder.Commit(principal, content_hash, reader.report().bytes_read, reader.report().rows_skipped,
                        reader.report().errors);
}

Result<std::string> CatalogService::ResolveLandingPath(const std::string& path) const {
  if (options_.landing_root.empty()) {
    return FailedPrecondition("server-side sources are disabled: no landing directory is configured");
  }
  std::error_code ec;
  fs::path root = fs::weakly_canonical(options_.landing_root, ec);
  if (ec) return Unavailable("landing directory " + options_.landing_root + ": " + ec.message());
  fs::path p = fs::path(path).is_absolute() ? fs::path(path) : root / path;
  if (!fs::exists(p, ec)) return NotFound("source " + path + " does not exist (under " + root.string() + ")");
  fs::path real = fs::canonical(p, ec);
  if (ec) return Unavailable("source " + path + ": " + ec.message());
  auto rel = real.lexically_relative(root);
  if (rel.empty() || *rel.begin() == "..") {
    return PermissionDenied("source " + path + " lies outside the landing directory " + root.string());
  }
  return real.string();
}

Result<IngestResult> CatalogService::IngestFrom(const std::string& name, const SourceSpec& source,
                                                const IngestOptions& in, const std::string& principal) {
  IngestOptions options = in;
  if (options.source_label.empty()) options.source_label = source.Describe();
  if (source.kind == "postgres" || source.kind == "sqlite") {
    if (source.query.empty()) return InvalidArgument(source.kind + " source: a query is required");
    connectors::SqlSourceOptions sql;
    sql.batch_rows = options.text.batch_rows;
    Result<std::unique_ptr<frame::BatchReader>> reader = InvalidArgument("unreachable");
    if (source.kind == "postgres") {
      if (source.url.empty()) return InvalidArgument("postgres source: a connection URL is required");
      reader = connectors::OpenPostgresQuery(source.url, source.query, sql);
    } else {
      TAKT_ASSIGN_OR_RETURN(std::string path, ResolveLandingPath(source.path));
      reader = connectors::OpenSqliteQuery(path, source.query, sql);
    }
    if (!reader)
      return std::unexpected(
          reader.error().WithContext("ingesting " + name + " from " + options.source_label));
    return IngestBatches(name, **reader, options, principal, "");
  }
  if (source.kind == "file") {
    TAKT_ASSIGN_OR_RETURN(std::string path, ResolveLandingPath(source.path));
    if (options.format.empty() ||
        (in.format == "csv" && (path.ends_with(".jsonl") || path.ends_with(".ndjson")))) {
      options.format = "jsonl";
    }
    TAKT_ASSIGN_OR_RETURN(auto file, frame::FileSource(path));
    return Ingest(name, *file, options, principal);
  }
  if (source.kind != "dir") {
    return InvalidArgument("source kind '" + source.kind + "' is not file, dir, sqlite or postgres");
  }

  // A directory: one partition per file, sorted by name. Files whose bytes
  // equal those of the previous version's partition are reused unread.
  TAKT_RETURN_IF_ERROR(ValidateDatasetName(name));
  TAKT_ASSIGN_OR_RETURN(std::string dir, ResolveLandingPath(source.path));
  if (!fs::is_directory(dir)) return InvalidArgument("source " + source.path + " is not a directory");
  TAKT_ASSIGN_OR_RETURN(auto previous, Latest(*this, name));
  options.partition_by = "file";
  options = Prepare(*this, name, options, previous);
  TAKT_RETURN_IF_ERROR(CheckAppend(name, options, previous));
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".csv" || ext == ".jsonl" || ext == ".ndjson"))
      files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) return InvalidArgument("source " + source.path + " holds no .csv or .jsonl files");
  std::map<std::string, internal::Partition> old;
  if (previous && previous->partition_by == "file") {
    TAKT_ASSIGN_OR_RETURN(auto parts, internal::PartitionsOf(*db_, name, previous->version));
    for (auto& p : parts) old[p.key] = std::move(p);
  }
  VersionBuilder builder(*this, name, options, previous, PartitionSpec{"", "", true});
  crypto::Sha256 all;
  uint64_t bytes = 0;
  int64_t skipped = 0;
  std::vector<std::string> errors;
  std::set<std::string> seen;
  for (const auto& path : files) {
    const std::string key = "file=" + path.filename().string();
    seen.insert(key);
    TAKT_ASSIGN_OR_RETURN(auto file, frame::FileSource(path));
    // Hash first: an unchanged file is not parsed again.
    crypto::Sha256 h;
    std::string buf(1 << 20, '\0');
    while (true) {
      TAKT_ASSIGN_OR_RETURN(size_t n, file->Read(buf.data(), buf.size()));
      if (n == 0) break;
      h.Update(std::string_view(buf.data(), n));
      bytes += n;
    }
    const std::string file_hash = h.FinishHex();
    all.Update(key + ":" + file_hash + "\n");
    auto it = old.find(key);
    if (it != old.end() && it->second.source_hash == file_hash) {
      builder.Reuse(it->second);
      continue;
    }
    IngestOptions file_options = options;
    const std::string ext = path.extension().string();
    file_options.format = ext == ".csv" ? "csv" : "jsonl";
    TAKT_ASSIGN_OR_RETURN(auto again, frame::FileSource(path));
    const std::string where = "ingesting " + name + " from " + path.filename().string();
    auto reader = OpenTextReader(*again, file_options);
    if (!reader) return std::unexpected(reader.error().WithContext(where));
    TAKT_RETURN_IF_ERROR(builder.CheckColumns((*reader)->schema()));
    builder.SetSourceHash(key, file_hash);
    Status drained = Drain(**reader, builder, key, [&](int64_t rows) {
      if (options.progress) options.progress(bytes, 0, rows);
    });
    if (!drained) return std::unexpected(drained.error().WithContext(where));
    skipped += (*reader)->report().rows_skipped;
    for (const auto& e : (*reader)->report().errors) {
      if (errors.size() < 20) errors.push_back(path.filename().string() + ": " + e);
    }
  }
  if (options.append) {
    for (const auto& [key, p] : old) {
      if (!seen.count(key)) builder.Reuse(p);
    }
  }
  return builder.Commit(principal, all.FinishHex(), bytes, skipped, std::move(errors));
}

Result<DatasetVersion> CatalogService::IngestCsv(const std::string& name, std::string_view csv,
                                                 const std::string& source, const std::string& principal,
                                                 const std::string& description) {
  auto src = frame::StringSource(csv);
  IngestOptions options;
  options.source_label = source;
  options.description = description;
  TAKT_ASSIGN_OR_RETURN(IngestResult r, Ingest(name, *src, options, principal));
  return r.version;
}

}  // namespace takt::catalog
