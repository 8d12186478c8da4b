// The one governed read path: segment by segment, decode only the columns
// needed, apply the grant's row filter, mask, apply the reader's own filter,
// and audit what was returned.
#include <algorithm>
#include <set>

#include "catalog/catalog.h"
#include "catalog/internal.h"
#include "core/json.h"
#include "frame/codec.h"
#include "iam/iam.h"

namespace takt::catalog {
namespace {

frame::Column NullColumn(const frame::Field& field, size_t rows) {
  frame::Column c;
  c.field = field;
  c.field.nullable = true;
  switch (field.type) {
    case frame::Type::kFloat64:
      c.doubles.assign(rows, 0.0);
      break;
    case frame::Type::kString:
      c.strings.assign(rows, "");
      break;
    default:
      c.ints.assign(rows, 0);
  }
  c.valid.assign(rows, 0);
  return c;
}

}  // namespace

class GovernedReadImpl : public GovernedRead {
 public:
  GovernedReadImpl(const CatalogService& catalog, ReadRequest request, AccessPlan plan,
                   DatasetVersion version)
      : catalog_(catalog),
        request_(std::move(request)),
        plan_(std::move(plan)),
        version_(std::move(version)) {}

  ~GovernedReadImpl() override { Finish(false); }

  Status Init() {
    // Output columns: those asked for (in the order asked), else every granted one.
    if (request_.columns.empty()) {
      for (const auto& c : plan_.columns) out_.push_back(&c);
    } else {
      std::set<std::string> seen;
      for (const auto& name : request_.columns) {
        const ColumnAccess* c = plan_.Find(name);
        if (c == nullptr) {
          if (version_.schema.IndexOf(name) < 0) {
            return InvalidArgument("dataset " + plan_.dataset + " v" + std::to_string(plan_.version) +
                                   " has no column '" + name + "'");
          }
          return PermissionDenied("column '" + name + "' of dataset " + plan_.dataset +
                                  " is not granted to " + plan_.principal);
        }
        if (!seen.insert(name).second) return InvalidArgument("column '" + name + "' is asked for twice");
        out_.push_back(c);
      }
    }
    for (const auto* c : out_) schema_.fields.push_back(c->output);
    // What to decode: output columns and the grant filter's columns.
    std::set<std::string> need;
    for (const auto* c : out_) need.insert(c->source.name);
    if (plan_.row_filter) {
      for (const auto& c : plan_.row_filter->Columns()) need.insert(c);
    }
    for (const auto& f : version_.schema.fields) {
      if (need.count(f.name)) decode_.push_back(f.name);
    }
    if (!request_.where.empty()) {
      TAKT_ASSIGN_OR_RETURN(policy::Predicate w, policy::Predicate::Parse(request_.where));
      // Over what the reader sees: masked values, granted columns only.
      auto bound = w.Bind(schema_);
      if (!bound) return std::unexpected(bound.error().WithContext("--where"));
      where_ = std::move(w);
    }
    bool any_hash = std::any_of(out_.begin(), out_.end(), [](const ColumnAccess* c) {
      return c->mask && c->mask->kind == policy::MaskKind::kHash;
    });
    if (any_hash) hash_key_ = catalog_.PseudonymKey(plan_.dataset);
    return Ok();
  }

  const frame::Schema& schema() const override { return schema_; }
  const AccessPlan& plan() const override { return plan_; }
  const DatasetVersion& version() const override { return version_; }
  int64_t rows_returned() const override { return rows_; }

  Result<std::optional<frame::Table>> Next() override {
    while (!finished_) {
      if (next_segment_ >= version_.segments.size() || (request_.limit >= 0 && rows_ >= request_.limit)) {
        Finish(true);
        break;
      }
      const Segment& seg = version_.segments[next_segment_++];
      auto table = ReadSegment(seg);
      if (!table) {
        Finish(false);
        return std::unexpected(table.error().WithContext("reading dataset " + plan_.dataset + " v" +
                                                         std::to_string(plan_.version)));
      }
      if (table->num_rows() == 0) continue;
      rows_ += static_cast<int64_t>(table->num_rows());
      if (request_.limit >= 0 && rows_ >= request_.limit) Finish(true);
      return std::optional<frame::Table>(std::move(*table));
    }
    return std::optional<frame::Table>();
  }

  // Ends the read without a record of rows returned (the caller records the refusal).
  void Abandon() { finished_ = true; }

  void Finish(bool completed) override {
    if (finished_) return;
    finished_ = true;
    Json access = {{"dataset", plan_.dataset},
                   {"version", plan_.version},
                   {"columns", Json::array()},
                   {"masks", Json::object()},
                   {"rows", rows_},
                   {"purpose", request_.purpose},
                   {"grants", plan_.grants},
                   {"owner", plan_.owner},
                   {"completed", completed}};
    std::set<std::string> masked;
    for (const auto* c : out_) {
      access["columns"].push_back(c->source.name);
      if (c->mask) {
        access["masks"][c->source.name] = c->mask->ToString();
        masked.insert(c->source.name);
      }
    }
    if (plan_.row_filter) access["row_filter"] = plan_.row_filter_text;
    if (where_) access["where"] = where_->ToString(masked);
    if (request_.limit >= 0) access["limit"] = request_.limit;
    iam::AuditRecord record;
    record.principal = plan_.principal;
    record.action = "dataset:read";
    record.resource = "datasets/" + plan_.dataset + "/versions/" + std::to_string(plan_.version);
    record.allowed = true;
    record.status = 200;
    record.detail = std::to_string(rows_) + " rows, " + std::to_string(out_.size()) + " columns" +
                    (masked.empty() ? "" : ", " + std::to_string(masked.size()) + " masked") +
                    (plan_.row_filter ? ", row filter" : "") +
                    (request_.purpose.empty() ? "" : " (" + request_.purpose + ")") +
                    (completed ? "" : ", ended early");
    record.access_json = access.dump();
    IgnoreError(catalog_.iam()->Audit(record));
  }

 private:
  Result<frame::Table> ReadSegment(const Segment& seg) {
    TAKT_ASSIGN_OR_RETURN(std::string bytes, catalog_.blobs()->Get(seg.blob_id));
    TAKT_ASSIGN_OR_RETURN(frame::Schema stored, frame::DecodeSchema(bytes));
    std::vector<std::string> present;
    for (const auto& name : decode_) {
      if (stored.IndexOf(name) >= 0) present.push_back(name);
    }
    TAKT_ASSIGN_OR_RETURN(frame::Table raw, frame::DecodeTable(bytes, &present));
    const size_t rows = static_cast<size_t>(seg.rows);
    // Columns a segment lacks (added in a later version) read as nulls.
    frame::Table full;
    for (const auto& name : decode_) {
      if (frame::Column* c = raw.Find(name)) {
        full.columns.push_back(std::move(*c));
      } else {
        full.columns.push_back(NullColumn(version_.schema.fields[version_.schema.IndexOf(name)], rows));
      }
    }
    if (plan_.row_filter) {
      TAKT_ASSIGN_OR_RETURN(std::vector<uint8_t> keep, plan_.row_filter->Evaluate(full));
      full = frame::SelectRows(full, keep);
    }
    frame::Table out;
    out.columns.reserve(out_.size());
    for (const auto* c : out_) {
      const frame::Column* src = full.Find(c->source.name);
      if (c->mask) {
        TAKT_ASSIGN_OR_RETURN(frame::Column masked, policy::ApplyMask(*c->mask, *src, hash_key_));
        masked.field = c->output;
        out.columns.push_back(std::move(masked));
      } else {
        frame::Column copy = *src;
        copy.field = c->output;
        if (!copy.valid.empty()) copy.field.nullable = true;
        out.columns.push_back(std::move(copy));
      }
    }
    if (where_) {
      TAKT_ASSIGN_OR_RETURN(std::vector<uint8_t> keep, where_->Evaluate(out));
      out = frame::SelectRows(out, keep);
    }
    if (request_.limit >= 0 && rows_ + static_cast<int64_t>(out.num_rows()) > request_.limit) {
      out = frame::SliceRows(out, 0, static_cast<size_t>(request_.limit - rows_));
    }
    return out;
  }

  const CatalogService& catalog_;
  ReadRequest request_;
  AccessPlan plan_;
  DatasetVersion version_;
  std::vector<const ColumnAccess*> out_;
  std::vector<std::string> decode_;
  frame::Schema schema_;
  std::optional<policy::Predicate> where_;
  std::string hash_key_;
  size_t next_segment_ = 0;
  int64_t rows_ = 0;
  bool finished_ = false;
};

Result<std::unique_ptr<GovernedRead>> CatalogService::OpenRead(const ReadRequest& request) const {
  auto plan = PlanAccess(request.principal, request.dataset, request.version);
  const std::string resource = "datasets/" + request.dataset +
                               (request.version > 0 ? "/versions/" + std::to_string(request.version) : "");
  if (!plan) {
    if (plan.error().code() == Code::kPermissionDenied) {
      iam::AuditRecord record;
      record.principal = request.principal;
      record.action = "dataset:read";
      record.resource = resource;
      record.allowed = false;
      record.status = 403;
      record.detail = "PERMISSION_DENIED: " + plan.error().message() +
                      (request.purpose.empty() ? "" : " (" + request.purpose + ")");
      IgnoreError(iam_->Audit(record));
    }
    return std::unexpected(plan.error());
  }
  TAKT_ASSIGN_OR_RETURN(DatasetVersion v, GetVersion(request.dataset, plan->version));
  auto read = std::make_unique<GovernedReadImpl>(*this, request, std::move(*plan), std::move(v));
  if (auto s = read->Init(); !s) {
    // Nothing was returned: record the refusal (a column not granted) or the bad request.
    read->Abandon();
    iam::AuditRecord record;
    record.principal = request.principal;
    record.action = "dataset:read";
    record.resource = resource;
    record.allowed = s.error().code() != Code::kPermissionDenied;
    record.status = HttpStatus(s.error().code());
    record.detail = std::string(CodeName(s.error().code())) + ": " + s.error().message();
    IgnoreError(iam_->Audit(record));
    return std::unexpected(s.error());
  }
  return std::unique_ptr<GovernedRead>(std::move(read));
}

Result<frame::Table> ReadRemaining(GovernedRead& read) {
  frame::Table out;
  for (const auto& f : read.schema().fields) out.columns.push_back(frame::Column{f, {}, {}, {}, {}});
  while (true) {
    TAKT_ASSIGN_OR_RETURN(auto batch, read.Next());
    if (!batch) break;
    TAKT_RETURN_IF_ERROR(frame::AppendRows(out, *batch));
  }
  return out;
}

Result<frame::Table> CatalogService::ReadTable(const ReadRequest& request) const {
  TAKT_ASSIGN_OR_RETURN(auto read, OpenRead(request));
  return ReadRemaining(*read);
}

Result<StatsView> CatalogService::Stats(std::string_view principal, std::string_view dataset,
                                        int version) const {
  ReadRequest req;
  req.principal = std::string(principal);
  req.dataset = std::string(dataset);
  req.version = version;
  req.purpose = "statistics";
  TAKT_ASSIGN_OR_RETURN(auto read, OpenRead(req));
  const AccessPlan& plan = read->plan();
  StatsView view;
  view.dataset = plan.dataset;
  view.version = plan.version;
  std::vector<frame::ColumnStats> stats;
  if (plan.row_filter) {
    // Over the rows this reader may see: computed now, through the read.
    frame::StatsBuilder b(read->schema());
    while (true) {
      TAKT_ASSIGN_OR_RETURN(auto batch, read->Next());
      if (!batch) break;
      b.Add(*batch);
    }
    stats = b.Finish();
    view.rows = b.rows();
    view.filtered = true;
  } else {
    const DatasetVersion& v = read->version();
    view.rows = v.rows;
    if (!v.stats_blob.empty()) {
      TAKT_ASSIGN_OR_RETURN(std::string json, blobs_->Get(v.stats_blob));
      TAKT_ASSIGN_OR_RETURN(stats, frame::StatsFromJson(json));
    }
    // Only the counts are read, not the rows: record it as a read of none.
    read->Finish(true);
  }
  for (auto& s : stats) {
    const ColumnAccess* c = plan.Find(s.name);
    if (c == nullptr) continue;
    if (c->mask) {
      // Values of a masked column stay hidden: counts only.
      frame::ColumnStats counts;
      counts.name = s.name;
      counts.type = c->output.type;
      counts.count = s.count;
      counts.nulls = s.nulls;
      counts.distinct = s.distinct;
      view.masked.push_back(s.name);
      view.columns.push_back(std::move(counts));
    } else {
      view.columns.push_back(std::move(s));
    }
  }
  return view;
}

}  // namespace takt::catalog
