// The data hub's routes: datasets and their versions, ingest (streamed
// uploads and server-side sources), tags, statistics, governed reads and
// exports, grants, groups, projects, ingest schedules and lineage.
#include <algorithm>
#include <set>

#include "api/internal.h"
#include "frame/csv.h"
#include "lineage/lineage.h"

namespace takt::api {
namespace {

using http::Request;
using http::Response;
using namespace internal;  // NOLINT
using internal::ToJson;

bool IsAdmin(Platform& p, const std::string& principal) {
  auto who = p.iam->Get(principal);
  return who && std::find(who->personas.begin(), who->personas.end(), "admin") != who->personas.end();
}

// Adding versions, tags or grants to a dataset is for its owner (or an admin).
Status CheckOwnerOrAdmin(Platform& p, const std::string& dataset, const std::string& principal,
                         std::string_view what) {
  auto owner = p.catalog->OwnerOf(dataset);
  if (!owner) return std::unexpected(owner.error());
  if (*owner == principal || IsAdmin(p, principal)) return Ok();
  return PermissionDenied(principal + " may not " + std::string(what) + " dataset " + dataset +
                          ": its owner is " + *owner + " (or an admin)");
}

// A streamed request body as a ByteSource.
class BodySource : public frame::ByteSource {
 public:
  explicit BodySource(http::BodyStream* body) : body_(body) {}
  Result<size_t> Read(char* buf, size_t n) override { return body_->Read(buf, n); }
  uint64_t size_hint() const override { return body_->content_length().value_or(0); }

 private:
  http::BodyStream* body_;
};

Result<bool> BoolParam(const Request& req, std::string_view name) {
  auto v = req.Query(name);
  if (!v || *v == "false" || *v == "0") return false;
  if (v->empty() || *v == "true" || *v == "1") return true;
  return InvalidArgument(std::string(name) + " must be true or false, not '" + *v + "'");
}

// "force_kn:float64" → (force_kn, float64); "robot_serial:pii" → (robot_serial, pii); ":telemetry" → ("",
// telemetry).
Result<std::pair<std::string, std::string>> SplitPair(std::string_view text, std::string_view what) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size()) {
    return InvalidArgument(std::string(what) + " '" + std::string(text) + "' must be COLUMN:VALUE");
  }
  return std::make_pair(std::string(text.substr(0, colon)), std::string(text.substr(colon + 1)));
}

Result<catalog::IngestOptions> IngestOptionsFrom(const Request& req) {
  catalog::IngestOptions o;
  std::string_view ct = req.ContentType();
  o.format = req.Query("format").value_or(
      ct == "application/x-ndjson" || ct == "application/jsonl" || ct == "application/json-lines" ? "jsonl"
                                                                                                  : "csv");
  if (o.format != "csv" && o.format != "jsonl") {
    return InvalidArgument("format '" + o.format + "' is not csv or jsonl");
  }
  if (auto d = req.Query("delimiter")) {
    if (*d == "\\t" || *d == "tab") {
      o.text.delimiter = '\t';
    } else if (d->size() == 1) {
      o.text.delimiter = (*d)[0];
    } else {
      return InvalidArgument("delimiter must be one character (or 'tab'), not '" + *d + "'");
    }
  }
  for (auto [it, end] = req.query.equal_range("type"); it != end; ++it) {
    TAKT_ASSIGN_OR_RETURN(auto kv, SplitPair(it->second, "type"));
    TAKT_ASSIGN_OR_RETURN(frame::Type t, frame::ParseType(kv.second));
    o.text.types[kv.first] = t;
  }
  for (auto [it, end] = req.query.equal_range("tag"); it != end; ++it) {
    TAKT_ASSIGN_OR_RETURN(auto kv, SplitPair(it->second, "tag"));
    TAKT_RETURN_IF_ERROR(catalog::ValidateTag(kv.second));
    o.tags.push_back({kv.first, kv.second});
  }
  std::string on_error = req.Query("on_error").value_or("fail");
  if (on_error != "fail" && on_error != "skip") {
    return InvalidArgument("on_error must be fail or skip, not '" + on_error + "'");
  }
  o.text.on_error = on_error == "skip" ? frame::OnError::kSkip : frame::OnError::kFail;
  o.partition_by = req.Query("partition_by").value_or("");
  TAKT_ASSIGN_OR_RETURN(o.append, BoolParam(req, "append"));
  TAKT_ASSIGN_OR_RETURN(o.allow_breaking, BoolParam(req, "allow_breaking"));
  TAKT_ASSIGN_OR_RETURN(o.only_if_changed, BoolParam(req, "only_if_changed"));
  o.description = req.Query("description").value_or("");
  return o;
}

Result<catalog::IngestOptions> IngestOptionsFrom(const Json& j) {
  catalog::IngestOptions o;
  if (!j.is_object()) return InvalidArgument("options: expected an object");
  o.format = j.value("format", "csv");
  std::string d = j.value("delimiter", ",");
  if (d.size() != 1) return InvalidArgument("options.delimiter must be one character");
  o.text.delimiter = d[0];
  if (j.contains("types")) {
    if (!j["types"].is_object()) return InvalidArgument("options.types: expected {column: type}");
    for (const auto& [k, v] : j["types"].items()) {
      if (!v.is_string()) return InvalidArgument("options.types." + k + ": expected a type name");
      TAKT_ASSIGN_OR_RETURN(frame::Type t, frame::ParseType(v.get<std::string>()));
      o.text.types[k] = t;
    }
  }
  std::string on_error = j.value("on_error", "fail");
  if (on_error != "fail" && on_error != "skip")
    return InvalidArgument("options.on_error must be fail or skip");
  o.text.on_error = on_error == "skip" ? frame::OnError::kSkip : frame::OnError::kFail;
  o.partition_by = j.value("partition_by", "");
  o.append = j.value("append", false);
  o.allow_breaking = j.value("allow_breaking", false);
  o.only_if_changed = j.value("only_if_changed", false);
  o.description = j.value("description", "");
  if (j.contains("tags")) {
    for (const auto& t : j["tags"]) {
      if (!t.is_string()) return InvalidArgument("options.tags: expected strings COLUMN:TAG");
      TAKT_ASSIGN_OR_RETURN(auto kv, SplitPair(t.get<std::string>(), "tag"));
      o.tags.push_back({kv.first, kv.second});
    }
  }
  return o;
}

Result<catalog::SourceSpec> SourceFrom(const Json& j) {
  if (!j.is_object()) return InvalidArgument("source: expected an object with kind");
  catalog::SourceSpec s;
  try {
    s.kind = j.value("kind", "");
    s.path = j.value("path", "");
    s.url = j.value("url", "");
    s.query = j.value("query", "");
  } catch (const std::exception&) {
    return InvalidArgument("source: kind, path, url and query must be strings");
  }
  if (s.kind.empty()) return InvalidArgument("source.kind is required: file, dir, sqlite or postgres");
  return s;
}

Json ToJson(const catalog::IngestResult& r) {
  Json j = ToJson(r.version);
  j["created"] = r.created;
  j["rows_skipped"] = r.rows_skipped;
  j["errors"] = r.errors;
  j["written_partitions"] = r.written_partitions;
  j["reused_partitions"] = r.reused_partitions;
  Json changes = Json::array();
  for (const auto& c : r.diff.changes) {
    changes.push_back(
        {{"column", c.column}, {"kind", c.kind}, {"from", c.from}, {"to", c.to}, {"breaking", c.breaking}});
  }
  j["schema_changes"] = changes;
  return j;
}

Json ToJson(const catalog::Grant& g) {
  Json masks = Json::object();
  for (const auto& [t, m] : g.masks) masks[t] = m;
  return {{"id", g.id},
          {"effect", g.effect},
          {"subject", g.subject},
          {"dataset", g.dataset},
          {"columns", g.columns},
          {"exclude", g.exclude},
          {"row_filter", g.row_filter},
          {"masks", masks},
          {"note", g.note},
          {"created_by", g.created_by},
          {"created_at", g.created_at}};
}

Result<catalog::Grant> GrantFrom(const Json& j) {
  if (!j.is_object()) return InvalidArgument("request body: expected a grant object");
  catalog::Grant g;
  try {
    g.effect = j.value("effect", "allow");
    g.subject = j.value("subject", "");
    g.dataset = j.value("dataset", "");
    if (j.contains("columns")) g.columns = j["columns"].get<std::vector<std::string>>();
    if (j.contains("exclude")) g.exclude = j["exclude"].get<std::vector<std::string>>();
    g.row_filter = j.value("row_filter", "");
    g.note = j.value("note", "");
    if (j.contains("masks")) {
      if (!j["masks"].is_object()) return InvalidArgument("masks: expected {column or tag:<t>: mask}");
      for (const auto& [k, v] : j["masks"].items()) g.masks.emplace_back(k, v.get<std::string>());
    }
  } catch (const std::exception&) {
    return InvalidArgument(
        "request body: effect, subject, dataset, row_filter and note must be strings, columns and exclude "
        "lists "
        "of strings, masks an object of strings");
  }
  if (g.subject.empty())
    return InvalidArgument("a grant needs a subject (--to principal:NAME, group:NAME or project:NAME)");
  return g;
}

Json ToJson(const catalog::AccessPlan& plan) {
  Json cols = Json::array();
  for (const auto& c : plan.columns) {
    Json col = {{"name", c.source.name}, {"type", std::string(frame::TypeName(c.output.type))}};
    if (c.mask) {
      col["mask"] = c.mask->ToString();
      col["mask_grant"] = c.mask_grant;
    }
    cols.push_back(col);
  }
  return {{"principal", plan.principal},
          {"dataset", plan.dataset},
          {"version", plan.version},
          {"owner", plan.owner},
          {"columns", cols},
          {"row_filter", plan.row_filter ? Json(plan.row_filter_text) : Json(nullptr)},
          {"grants", plan.grants},
          {"notes", plan.notes}};
}

Json ToJson(const frame::ColumnStats& s) {
  Json j = Json::parse(frame::StatsToJson({s}), nullptr, false);
  return j.is_array() && !j.empty() ? j[0] : Json::object();
}

Json ToJson(const catalog::IngestSchedule& s) {
  return {{"id", s.id},
          {"dataset", s.dataset},
          {"cron", s.cron},
          {"source", s.source.Describe()},
          {"owner", s.owner},
          {"created_at", s.created_at},
          {"next_run", s.next_run},
          {"last_run_at", s.last_run_at},
          {"last_status", s.last_status}};
}

Result<int> IntParam(const Request& req, std::string_view name, int fallback) {
  auto v = req.Query(name);
  if (!v) return fallback;
  return ParseInt(*v, name);
}

std::vector<std::string> ListParam(const Request& req, std::string_view name) {
  std::vector<std::string> out;
  auto v = req.Query(name);
  if (!v) return out;
  size_t pos = 0;
  while (pos <= v->size()) {
    size_t comma = v->find(',', pos);
    if (comma == std::string::npos) comma = v->size();
    if (comma > pos) out.push_back(v->substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

Result<catalog::ReadRequest> ReadRequestFrom(const Request& req, const std::string& purpose) {
  catalog::ReadRequest r;
  r.principal = req.principal_id;
  r.dataset = req.path_params.at("name");
  TAKT_ASSIGN_OR_RETURN(r.version, IntParam(req, "version", 0));
  if (r.version < 0) return InvalidArgument("version must be positive");
  r.columns = ListParam(req, "columns");
  r.where = req.Query("where").value_or("");
  r.purpose = purpose;
  return r;
}

Response Audited(Response r) {
  r.headers.emplace_back(kAuditedHeader, "data-read");
  return r;
}

// One row of a table as a JSON Lines object.
void AppendJsonLine(std::string& out, const frame::Table& t, size_t r) {
  Json row = Json::object();
  for (const auto& c : t.columns) {
    if (c.IsNull(r)) {
      row[c.field.name] = nullptr;
    } else if (c.field.type == frame::Type::kString || c.field.type == frame::Type::kTimestamp) {
      row[c.field.name] = c.AsText(r);
    } else if (c.field.type == frame::Type::kBool) {
      row[c.field.name] = c.ints[r] != 0;
    } else if (c.field.type == frame::Type::kInt64) {
      row[c.field.name] = c.ints[r];
    } else {
      row[c.field.name] = c.doubles[r];
    }
  }
  out += row.dump();
  out += '\n';
}

}  // namespace

void AddDataRoutes(Platform& p, const AddRoute& add) {
  // ---------------------------------------------------------------- datasets
  add(
      "POST", "/api/v1/datasets/{name}/versions", "dataset:create",
      [&p](Request& req) {
        const std::string name = req.path_params["name"];
        std::string_view ct = req.ContentType();
        if (ct != "text/csv" && ct != "application/x-ndjson" && ct != "application/jsonl" &&
            ct != "application/json-lines" && ct != "application/octet-stream") {
          return http::ErrorResponse(UnsupportedMedia(
              "dataset upload: expected Content-Type text/csv or application/x-ndjson, got '" +
              std::string(ct) + "'"));
        }
        if (auto exists = p.catalog->Get(name)) {
          if (auto s = CheckOwnerOrAdmin(p, name, req.principal_id, "add versions to"); !s)
            return http::ErrorResponse(s.error());
        }
        auto options = IngestOptionsFrom(req);
        if (!options) return http::ErrorResponse(options.error());
        options->source_label = "upload:" + req.Query("source").value_or("request");
        std::unique_ptr<frame::ByteSource> source;
        if (req.body_stream != nullptr) {
          source = std::make_unique<BodySource>(req.body_stream);
        } else {
          source = frame::StringSource(req.body);
        }
        auto r = p.catalog->Ingest(name, *source, *options, req.principal_id);
        return Render<catalog::IngestResult>(
            r, [](const auto& x) { return ToJson(x); }, 201);
      },
      size_t{1} << 40, /*stream_body=*/true);
  add("POST", "/api/v1/datasets/{name}/ingest", "dataset:create", [&p](Request& req) {
    if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
    const std::string name = req.path_params["name"];
    auto body = ParseJson(req.body, "request body");
    if (!body) return http::ErrorResponse(body.error());
    if (!body->is_object())
      return http::ErrorResponse(InvalidArgument("request body: expected {source, options}"));
    auto source = SourceFrom(body->value("source", Json()));
    if (!source) return http::ErrorResponse(source.error());
    auto options = IngestOptionsFrom(body->value("options", Json::object()));
    if (!options) return http::ErrorResponse(options.error());
    if (auto exists = p.catalog->Get(name)) {
      if (auto s = CheckOwnerOrAdmin(p, name, req.principal_id, "add versions to"); !s)
        return http::ErrorResponse(s.error());
    }
    auto r = p.catalog->IngestFrom(name, *source, *options, req.principal_id);
    return Render<catalog::IngestResult>(
        r, [](const auto& x) { return ToJson(x); }, r && r->created ? 201 : 200);
  });
  add("GET", "/api/v1/datasets", "dataset:list", [&p](Request&) {
    return Render<std::vector<catalog::Dataset>>(p.catalog->List(), [](const auto& v) {
      Json a = Json::array();
      for (const auto& x : v) a.push_back(ToJson(x));
      return a;
    });
  });
  add("GET", "/api/v1/datasets/{name}", "dataset:describe", [&p](Request& req) {
    auto d = p.catalog->Get(req.path_params["name"]);
    if (!d) return http::ErrorResponse(d.error());
    auto versions = p.catalog->Versions(d->name);
    if (!versions) return http::ErrorResponse(versions.error());
    Json j = ToJson(*d);
    j["versions"] = Json::array();
    for (const auto& v : *versions) j["versions"].push_back(ToJson(v));
    if (d->latest_version > 0) {
      if (auto latest = p.catalog->GetVersion(d->name, 0)) j["versions"].back() = ToJson(*latest);
    }
    return JsonOk(j);
  });
  add("PATCH", "/api/v1/datasets/{name}", "dataset:update", [&p](Request& req) {
    if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
    const std::string name = req.path_params["name"];
    if (auto s = CheckOwnerOrAdmin(p, name, req.principal_id, "update"); !s)
      return http::ErrorResponse(s.error());
    auto body = ParseJson(req.body, "request body");
    if (!body) return http::ErrorResponse(body.error());
    std::optional<std::string> description, owner;
    if (body->contains("description")) {
      if (!(*body)["description"].is_string())
        return http::ErrorResponse(InvalidArgument("description must be a string"));
      description = (*body)["description"].get<std::string>();
    }
    if (body->contains("owner")) {
      if (!(*body)["owner"].is_string())
        return http::ErrorResponse(InvalidArgument("owner must be a string"));
      owner = (*body)["owner"].get<std::string>();
    }
    if (auto s = p.catalog->Update(name, description, owner); !s) return http::ErrorResponse(s.error());
    return Render<catalog::Dataset>(p.catalog->Get(name), [](const auto& x) { return ToJson(x); });
  });
  add("POST", "/api/v1/datasets/{name}/tags", "dataset:update", [&p](Request& req) {
    if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
    const std::string name = req.path_params["name"];
    if (auto s = CheckOwnerOrAdmin(p, name, req.principal_id, "tag"); !s)
      return http::ErrorResponse(s.error());
    auto body = ParseJson(req.body, "request body");
    if (!body) return http::ErrorResponse(body.error());
    std::vector<catalog::ColumnTag> tags;
    bool remove = false;
    try {
      remove = body->value("remove", false);
      for (const auto& t : body->value("tags", Json::array())) {
        tags.push_back({t.value("column", ""), t.at("tag").get<std::string>()});
      }
    } catch (const std::exception&) {
      return http::ErrorResponse(InvalidArgument("request body: expected {tags: [{column, tag}], remove}"));
    }
    if (tags.empty()) return http::ErrorResponse(InvalidArgument("no tags given"));
    if (auto s = p.catalog->Tag(name, tags, remove); !s) return http::ErrorResponse(s.error());
    return Render<catalog::Dataset>(p.catalog->Get(name), [](const auto& x) { return ToJson(x); });
  });
  add("GET", "/api/v1/datasets/{name}/diff", "dataset:describe", [&p](Request& req) {
    auto from = IntParam(req, "from", 0);
    auto to = IntParam(req, "to", 0);
    if (!from) return http::ErrorResponse(from.error());
    if (!to) return http::ErrorResponse(to.error());
    auto d = p.catalog->Diff(req.path_params["name"], *from, *to);
    if (!d) return http::ErrorResponse(d.error());
    Json changes = Json::array();
    for (const auto& c : d->changes) {
      changes.push_back(
          {{"column", c.column}, {"kind", c.kind}, {"from", c.from}, {"to", c.to}, {"breaking", c.breaking}});
    }
    return JsonOk({{"changes", changes}, {"breaking", d->breaking()}, {"summary", d->Summary()}});
  });
  add("GET", "/api/v1/datasets/{name}/stats", "dataset:read", [&p](Request& req) {
    auto version = IntParam(req, "version", 0);
    if (!version) return http::ErrorResponse(version.error());
    auto v = p.catalog->Stats(req.principal_id, req.path_params["name"], *version);
    if (!v) return Audited(http::ErrorResponse(v.error()));
    Json cols = Json::array();
    for (const auto& c : v->columns) cols.push_back(ToJson(c));
    return Audited(JsonOk({{"dataset", v->dataset},
                           {"version", v->version},
                           {"rows", v->rows},
                           {"filtered", v->filtered},
                           {"masked", v->masked},
                           {"columns", cols}}));
  });
  add("GET", "/api/v1/datasets/{name}/access", "dataset:describe", [&p](Request& req) {
    std::string who = req.Query("principal").value_or(req.principal_id);
    if (who != req.principal_id) {
      auto me = p.iam->Get(req.principal_id);
      if (!me || !iam::Authorize(*me, "grant:list").allowed) {
        return http::ErrorResponse(
            PermissionDenied("explaining another principal's access needs grant:list"));
      }
    }
    auto version = IntParam(req, "version", 0);
    if (!version) return http::ErrorResponse(version.error());
    return Render<catalog::AccessPlan>(p.catalog->PlanAccess(who, req.path_params["name"], *version),
                                       [](const auto& x) { return ToJson(x); });
  });
  add("GET", "/api/v1/datasets/{name}/rows", "dataset:read", [&p](Request& req) {
    auto r = ReadRequestFrom(req, "dataset head");
    if (!r) return http::ErrorResponse(r.error());
    auto limit = IntParam(req, "limit", 20);
    if (!limit) return http::ErrorResponse(limit.error());
    if (*limit < 1 || *limit > 100000) {
      return http::ErrorResponse(InvalidArgument("limit must be between 1 and 100000 (use export for more)"));
    }
    r->limit = *limit;
    auto t = p.catalog->ReadTable(*r);
    if (!t) return Audited(http::ErrorResponse(t.error()));
    return Audited(TableResponse(req, *t));
  });
  add("GET", "/api/v1/datasets/{name}/export", "dataset:read", [&p](Request& req) {
    auto r = ReadRequestFrom(req, "dataset export");
    if (!r) return http::ErrorResponse(r.error());
    std::string format = req.Query("format").value_or("csv");
    if (format != "csv" && format != "jsonl") {
      return http::ErrorResponse(InvalidArgument("format '" + format + "' is not csv or jsonl"));
    }
    auto read = p.catalog->OpenRead(*r);
    if (!read) return Audited(http::ErrorResponse(read.error()));
    Response res;
    res.content_type = format == "csv" ? "text/csv" : "application/x-ndjson";
    res.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + r->dataset + "-v" +
                                                        std::to_string((*read)->version().version) + "." +
                                                        format + "\"");
    std::shared_ptr<catalog::GovernedRead> stream(std::move(*read));
    auto header_sent = std::make_shared<bool>(false);
    res.stream = [stream, header_sent, format](std::string& out) -> Result<bool> {
      TAKT_ASSIGN_OR_RETURN(auto batch, stream->Next());
      if (!batch) {
        if (!*header_sent && format == "csv") {
          frame::Table empty;
          for (const auto& f : stream->schema().fields)
            empty.columns.push_back(frame::Column{f, {}, {}, {}, {}});
          out = frame::WriteCsv(empty);
        }
        return false;
      }
      if (format == "csv") {
        out = frame::WriteCsv(*batch);
        if (*header_sent) out.erase(0, out.find('\n') + 1);
      } else {
        for (size_t i = 0; i < batch->num_rows(); ++i) AppendJsonLine(out, *batch, i);
      }
      *header_sent = true;
      return true;
    };
    return Audited(std::move(res));
  });

  // ---------------------------------------------------------------- schedules
  add("POST", "/api/v1/datasets/{name}/schedules", "dataset:schedule", [&p](Request& req) {
    if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
    const std::string name = req.path_params["name"];
    if (auto exists = p.catalog->Get(name)) {
      if (auto s = CheckOwnerOrAdmin(p, name, req.principal_id, "schedule ingests into"); !s)
        return http::ErrorResponse(s.error());
    }
    auto body = ParseJson(req.body, "request body");
    if (!body) return http::ErrorResponse(body.error());
    if (!body->is_object())
      return http::ErrorResponse(InvalidArgument("request body: expected {cron, source, options}"));
    catalog::IngestSchedule s;
    s.dataset = name;
    if (!body->contains("cron") || !(*body)["cron"].is_string())
      return http::ErrorResponse(InvalidArgument("cron is required, e.g. \"0 * * * *\""));
    s.cron = (*body)["cron"].get<std::string>();
    auto source = SourceFrom(body->value("source", Json()));
    if (!source) return http::ErrorResponse(source.error());
    s.source = *source;
    auto options = IngestOptionsFrom(body->value("options", Json::object()));
    if (!options) return http::ErrorResponse(options.error());
    s.options = *options;
    return Render<catalog::IngestSchedule>(
        p.catalog->CreateSchedule(s, req.principal_id), [](const auto& x) { return ToJson(x); }, 201);
  });
  add("GET", "/api/v1/schedules", "dataset:list", [&p](Request& req) {
    return Render<std::vector<catalog::IngestSchedule>>(
        p.catalog->ListSchedules(req.Query("dataset").value_or("")), [](const auto& v) {
          Json a = Json::array();
          for (const auto& x : v) a.push_back(ToJson(x));
          return a;
        });
  });
  add("POST", "/api/v1/schedules/{id}/run", "dataset:schedule", [&p](Request& req) {
    return Render<catalog::IngestResult>(p.catalog->RunSchedule(req.path_params["id"]),
                                         [](const auto& x) { return ToJson(x); });
  });
  add("DELETE", "/api/v1/schedules/{id}", "dataset:schedule", [&p](Request& req) {
    if (auto s = p.catalog->DeleteSchedule(req.path_params["id"]); !s) return http::ErrorResponse(s.error());
    return JsonOk({{"deleted", req.path_params["id"]}});
  });

  // ---------------------------------------------------------------- grants
  add("POST", "/api/v1/grants", "grant:create", [&p](Request& req) {
    if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
    auto body = ParseJson(req.body, "request body");
    if (!body) return http::ErrorResponse(body.error());
    auto g = GrantFrom(*body);
    if (!g) return http::ErrorResponse(g.error());
    if (g->dataset.rfind("tag:", 0) != 0 && g->dataset != "*" && !g->dataset.empty()) {
      if (auto s = CheckOwnerOrAdmin(p, g->dataset, req.principal_id, "grant access to"); !s)
        return http::ErrorResponse(s.error());
    }
    return Render<catalog::Grant>(
        p.catalog->CreateGrant(*g, req.principal_id), [](const auto& x) { return ToJson(x); }, 201);
  });
  add("GET", "/api/v1/grants", "grant:list", [&p](Request& req) {
    return Render<std::vector<catalog::Grant>>(
        p.catalog->ListGrants(req.Query("dataset").value_or(""), req.Query("subject").value_or("")),
        [](const auto& v) {
          Json a = Json::array();
          for (const auto& x : v) a.push_back(ToJson(x));
          return a;
        });
  });
  add("DELETE", "/api/v1/grants/{id}", "grant:delete", [&p](Request& req) {
    const std::string id = req.path_params["id"];
    auto all = p.catalog->ListGrants();
    if (!all) return http::ErrorResponse(all.error());
    auto it = std::find_if(all->begin(), all->end(), [&](const auto& g) { return g.id == id; });
    if (it == all->end()) return http::ErrorResponse(NotFound("grant " + id + " does not exist"));
    if (it->created_by != req.principal_id && !IsAdmin(p, req.principal_id)) {
      bool owner = false;
      if (auto o = p.catalog->OwnerOf(it->dataset)) owner = *o == req.principal_id;
      if (!owner) {
        return http::ErrorResponse(
            PermissionDenied("grant " + id + " was made by " + it->created_by +
                             ": only they, the dataset's owner or an admin may revoke it"));
      }
    }
    if (auto s = p.catalog->DeleteGrant(id); !s) return http::ErrorResponse(s.error());
    return JsonOk({{"deleted", id}});
  });

  // ---------------------------------------------------------------- groups and projects
  auto members_of = [](const Json& body) -> Result<std::vector<std::string>> {
    std::vector<std::string> members;
    if (!body.contains("members")) return members;
    if (!body["members"].is_array()) return InvalidArgument("members must be a list of principal names");
    for (const auto& m : body["members"]) {
      if (!m.is_string()) return InvalidArgument("members must be a list of principal names");
      members.push_back(m.get<std::string>());
    }
    return members;
  };
  auto group_json = [](const iam::Group& g) {
    return Json{
        {"name", g.name}, {"members", g.members}, {"created_by", g.created_by}, {"created_at", g.created_at}};
  };
  auto project_json = [](const iam::Project& x) {
    return Json{
        {"name", x.name},       {"description", x.description}, {"service_principal", x.service_principal},
        {"members", x.members}, {"created_by", x.created_by},   {"created_at", x.created_at}};
  };
  add("POST", "/api/v1/groups", "group:create", [&p, members_of, group_json](Request& req) {
    if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
    auto body = ParseJson(req.body, "request body");
    if (!body) return http::ErrorResponse(body.error());
    if (!body->is_object() || !body->contains("name") || !(*body)["name"].is_string())
      return http::ErrorResponse(InvalidArgument("request body: name is required"));
    auto members = members_of(*body);
    if (!members) return http::ErrorResponse(members.error());
    return Render<iam::Group>(
        p.iam->CreateGroup((*body)["name"].get<std::string>(), *members, req.principal_id), group_json, 201);
  });
  add("GET", "/api/v1/groups", "group:list", [&p, group_json](Request&) {
    return Render<std::vector<iam::Group>>(p.iam->ListGroups(), [&](const auto& v) {
      Json a = Json::array();
      for (const auto& x : v) a.push_back(group_json(x));
      return a;
    });
  });
  add("POST", "/api/v1/projects", "project:create", [&p, members_of, project_json](Request& req) {
    if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
    auto body = ParseJson(req.body, "request body");
    if (!body) return http::ErrorResponse(body.error());
    if (!body->is_object() || !body->contains("name") || !(*body)["name"].is_string())
      return http::ErrorResponse(InvalidArgument("request body: name is required"));
    auto members = members_of(*body);
    if (!members) return http::ErrorResponse(members.error());
    std::string description = body->contains("description") && (*body)["description"].is_string()
                                  ? (*body)["description"].get<std::string>()
                                  : "";
    return Render<iam::Project>(
        p.iam->CreateProject((*body)["name"].get<std::string>(), description, *members, req.principal_id),
        project_json, 201);
  });
  add("GET", "/api/v1/projects", "project:list", [&p, project_json](Request&) {
    return Render<std::vector<iam::Project>>(p.iam->ListProjects(), [&](const auto& v) {
      Json a = Json::array();
      for (const auto& x : v) a.push_back(project_json(x));
      return a;
    });
  });
  add("GET", "/api/v1/projects/{name}", "project:describe", [&p, project_json](Request& req) {
    return Render<iam::Project>(p.iam->GetProject(req.path_params["name"]), project_json);
  });
  for (const char* kind : {"group", "project"}) {
    const std::string k = kind;
    add("POST", "/api/v1/" + k + "s/{name}/members", k + ":manage", [&p, k](Request& req) {
      if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
      auto body = ParseJson(req.body, "request body");
      if (!body) return http::ErrorResponse(body.error());
      if (!body->is_object() || !body->contains("principal") || !(*body)["principal"].is_string())
        return http::ErrorResponse(InvalidArgument("request body: principal is required"));
      const std::string who = (*body)["principal"].get<std::string>();
      const bool remove =
          body->contains("remove") && (*body)["remove"].is_boolean() && (*body)["remove"].get<bool>();
      Status s = remove ? p.iam->RemoveMember(k, req.path_params["name"], who)
                        : p.iam->AddMember(k, req.path_params["name"], who);
      if (!s) return http::ErrorResponse(s.error());
      return JsonOk({{k, req.path_params["name"]}, {"principal", who}, {"member", !remove}});
    });
  }

  // ---------------------------------------------------------------- lineage
  add("GET", "/api/v1/lineage", "lineage:read", [&p](Request& req) {
    auto node = lineage::NormalizeNode(req.Query("node").value_or(""));
    if (!node) return http::ErrorResponse(node.error());
    std::string dir = req.Query("direction").value_or("both");
    lineage::Direction d = lineage::Direction::kBoth;
    if (dir == "up") {
      d = lineage::Direction::kUp;
    } else if (dir == "down") {
      d = lineage::Direction::kDown;
    } else if (dir != "both") {
      return http::ErrorResponse(InvalidArgument("direction must be up, down or both"));
    }
    auto g = lineage::Walk(*p.db, *node, d);
    if (!g) return http::ErrorResponse(g.error());
    Json edges = Json::array();
    for (const auto& e : g->edges) {
      edges.push_back(
          {{"from", e.from}, {"to", e.to}, {"relation", e.relation}, {"label", e.label}, {"time", e.time}});
    }
    return JsonOk({{"node", *node}, {"direction", dir}, {"edges", edges}});
  });
}

}  // namespace takt::api
