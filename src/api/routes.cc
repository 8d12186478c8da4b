#include "api/routes.h"

#include "crypto/crypto.h"

#include "api/internal.h"
#include "api/sigv4_auth.h"

#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <set>
#include <unordered_map>

#include "core/json.h"
#include "core/time.h"
#include "frame/csv.h"
#include "serving/capture.h"
#include "serving/protocols.h"
#include "serving/runtime.h"

namespace takt::api {
namespace internal {

using http::Request;
using http::Response;

Response JsonOk(const Json& j, int status) { return http::JsonResponse(status, j.dump()); }

Result<int> ParseInt(std::string_view s, std::string_view what) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    return InvalidArgument(std::string(what) + " '" + std::string(s) + "' is not a number");
  }
  return v;
}

Status RequireJson(const Request& req) {
  if (req.body.empty()) return Ok();
  if (req.ContentType() != "application/json") {
    return UnsupportedMedia("expected Content-Type application/json, got '" + std::string(req.ContentType()) +
                            "'");
  }
  return Ok();
}

Json ToJson(const iam::Principal& p) {
  return {{"id", p.id},         {"name", p.name},
          {"kind", p.kind},     {"personas", p.personas},
          {"denies", p.denies}, {"created_at", p.created_at}};
}

Json SchemaJson(const frame::Schema& schema) {
  Json out = Json::array();
  for (const auto& f : schema.fields) {
    out.push_back(
        {{"name", f.name}, {"type", std::string(frame::TypeName(f.type))}, {"nullable", f.nullable}});
  }
  return out;
}

Json ToJson(const catalog::DatasetVersion& v) {
  std::set<std::string> partitions;
  for (const auto& s : v.segments) partitions.insert(s.partition);
  return {{"dataset", v.dataset},
          {"version", v.version},
          {"rows", v.rows},
          {"rows_skipped", v.rows_skipped},
          {"source_bytes", v.source_bytes},
          {"stored_bytes", v.stored_bytes},
          {"content_hash", v.content_hash},
          {"data_hash", v.data_hash},
          {"partition_by", v.partition_by},
          {"segments", v.segments.size()},
          {"partitions", v.partition_by.empty() ? Json::array() : Json(partitions)},
          {"source", v.source},
          {"created_by", v.created_by},
          {"created_at", v.created_at},
          {"schema", SchemaJson(v.schema)}};
}

Json ToJson(const catalog::Dataset& d) {
  return {{"name", d.name},
          {"description", d.description},
          {"owner", d.owner},
          {"created_at", d.created_at},
          {"latest_version", d.latest_version},
          {"tags", d.tags},
          {"column_tags", d.column_tags}};
}

Json ToJson(const pipeline::Run& r) {
  Json steps = Json::array();
  for (const auto& s : r.steps) {
    steps.push_back({{"name", s.name},
                     {"kind", s.kind},
                     {"status", s.status},
                     {"started_at", s.started_at},
                     {"finished_at", s.finished_at},
                     {"error", s.error},
                     {"outputs", Json::parse(s.outputs_json, nullptr, false)},
                     {"metrics", Json::parse(s.metrics_json, nullptr, false)},
                     {"attempt", s.attempt},
                     {"failure", s.failure},
                     {"cached_from", s.cached_from},
                     {"executor", s.executor},
                     {"job_id", s.job_id},
                     {"upstream", s.upstream}});
  }
  return {{"id", r.id},
          {"pipeline", r.pipeline},
          {"project", r.project},
          {"status", r.status},
          {"created_by", r.created_by},
          {"created_at", r.created_at},
          {"started_at", r.started_at},
          {"finished_at", r.finished_at},
          {"error", r.error},
          {"spec_hash", r.spec_hash},
          {"params", Json::parse(r.params_json, nullptr, false)},
          {"git_commit", r.git_commit},
          {"trigger", r.trigger},
          {"parent_run", r.parent_run},
          {"kind", r.kind},
          {"no_cache", r.no_cache},
          {"steps", steps}};
}

Json ToJson(const serving::Endpoint& e) {
  return {{"name", e.name},
          {"stage", e.stage},
          {"model_group", e.model_group},
          {"model_version", e.model_version},
          {"status", e.status},
          {"created_at", e.created_at},
          {"updated_at", e.updated_at},
          {"last_event_id", e.last_event_id},
          {"message", e.message},
          {"variants",
           [&] {
             Json a = Json::array();
             for (const auto& v : e.variants)
               a.push_back({{"name", v.name}, {"version", v.model_version}, {"weight", v.weight}});
             return a;
           }()},
          {"settings", Json::parse(e.settings_json, nullptr, false)}};
}

Json TableToJson(const frame::Table& t) {
  Json cols = Json::array();
  for (const auto& c : t.columns)
    cols.push_back({{"name", c.field.name}, {"type", frame::TypeName(c.field.type)}});
  Json rows = Json::array();
  for (size_t r = 0; r < t.num_rows(); ++r) {
    Json row = Json::array();
    for (const auto& c : t.columns) {
      if (c.IsNull(r)) {
        row.push_back(nullptr);
      } else if (c.field.type == frame::Type::kString || c.field.type == frame::Type::kTimestamp) {
        row.push_back(c.AsText(r));
      } else if (c.field.type == frame::Type::kBool) {
        row.push_back(c.ints[r] != 0);
      } else if (c.field.type == frame::Type::kInt64) {
        row.push_back(c.ints[r]);
      } else {
        row.push_back(c.doubles[r]);
      }
    }
    rows.push_back(std::move(row));
  }
  return {{"columns", cols}, {"rows", rows}};
}

// Renders a table as CSV or JSON, as the client asked with ?format= or Accept.
Response TableResponse(const Request& req, const frame::Table& t) {
  std::string format = req.Query("format").value_or("");
  if (format.empty()) format = req.Header("accept").find("text/csv") != std::string::npos ? "csv" : "json";
  if (format == "csv") {
    Response r;
    r.content_type = "text/csv";
    r.body = frame::WriteCsv(t);
    return r;
  }
  if (format != "json")
    return http::ErrorResponse(InvalidArgument("format '" + format + "' is not csv or json"));
  return JsonOk(TableToJson(t));
}

}  // namespace internal

using namespace internal;  // NOLINT: the shared helpers of the route files

std::shared_ptr<http::Router> BuildRouter(Platform& p) {
  auto router = std::make_shared<http::Router>();
  auto add_route = [&](std::string method, std::string pattern, std::string action, http::Handler h,
                       size_t max_body, bool stream_body) {
    http::Route route;
    route.method = std::move(method);
    route.pattern = std::move(pattern);
    route.action = std::move(action);
    route.max_body_bytes = max_body;
    route.stream_body = stream_body;
    route.handler = std::move(h);
    router->Add(std::move(route));
  };
  AddRoute add(add_route);
  auto add_public = [&](std::string method, std::string pattern, http::Handler h) {
    http::Route route;
    route.method = std::move(method);
    route.pattern = std::move(pattern);
    route.is_public = true;
    route.max_body_bytes = 0;
    route.handler = std::move(h);
    router->Add(std::move(route));
  };

  // Health: public, no data.
  add_public("GET", "/healthz", [](Request&) { return JsonOk({{"status", "ok"}}); });

  // Identity.
  add("GET", "/api/v1/whoami", "principal:whoami", [&p](Request& req) {
    return Render<iam::Principal>(p.iam->Get(req.principal_id), [](const auto& x) { return ToJson(x); });
  });
  add("GET", "/api/v1/principals", "principal:list", [&p](Request&) {
    return Render<std::vector<iam::Principal>>(p.iam->List(), [](const auto& v) {
      Json a = Json::array();
      for (const auto& x : v) a.push_back(ToJson(x));
      return a;
    });
  });
  add("POST", "/api/v1/principals", "principal:create", [&p](Request& req) {
    if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
    auto body = ParseJson(req.body, "request body");
    if (!body) return http::ErrorResponse(body.error());
    auto name = GetString(*body, "name", "request body");
    if (!name) return http::ErrorResponse(name.error());
    std::vector<std::string> personas, denies;
    std::string kind;
    try {
      personas = body->value("personas", std::vector<std::string>{});
      denies = body->value("denies", std::vector<std::string>{});
      kind = body->value("kind", "user");
    } catch (const std::exception&) {
      return http::ErrorResponse(
          InvalidArgument("request body: kind must be a string; personas and denies lists of strings"));
    }
    auto created = p.iam->CreatePrincipal(*name, kind, personas, denies);
    if (!created) return http::ErrorResponse(created.error());
    return JsonOk({{"principal", ToJson(created->first)}, {"token", created->second}}, 201);
  });

  AddAccessKeyRoutes(p, add);  // key pairs for AWS SDKs (SigV4)

  // Datasets, grants, groups, projects, lineage: the data hub.
  AddDataRoutes(p, add);

  // Pipelines and runs.
  add(
      "POST", "/api/v1/runs", "pipeline:run",
      [&p](Request& req) {
        auto ct = req.ContentType();
        pipeline::SubmitRequest sub;
        sub.principal = req.principal_id;
        if (ct == "application/json") {
          // {"yaml": "...", "params": {...}, "no_cache": bool, "git_commit": "...", "files": {"path":
          // "<base64>"}}
          auto body = ParseJson(req.body, "run request");
          if (!body) return http::ErrorResponse(body.error());
          if (!body->is_object() || !body->contains("yaml") || !(*body)["yaml"].is_string()) {
            return http::ErrorResponse(
                InvalidArgument("run request: 'yaml' (the pipeline as text) is required"));
          }
          sub.yaml = (*body)["yaml"];
          sub.params = body->value("params", Json::object());
          sub.no_cache = body->value("no_cache", false);
          sub.git_commit = body->value("git_commit", "");
          const Json files = body->value("files", Json::object());  // not a temporary: items() refers into it
          if (!files.is_object())
            return http::ErrorResponse(InvalidArgument("run request: files must map paths to base64 text"));
          for (const auto& [path, content] : files.items()) {
            if (!content.is_string())
              return http::ErrorResponse(
                  InvalidArgument("run request: files." + path + " must be base64 text"));
            auto bytes = crypto::Base64Decode(content.get<std::string>());
            if (!bytes) return http::ErrorResponse(bytes.error().WithContext("run request: files." + path));
            sub.files[path] = std::move(*bytes);
          }
        } else if (ct == "application/yaml" || ct == "application/x-yaml" || ct == "text/yaml" ||
                   ct == "text/plain") {
          sub.yaml = req.body;
        } else {
          return http::ErrorResponse(
              UnsupportedMedia("pipeline: expected Content-Type application/yaml or application/json, got '" +
                               std::string(ct) + "'"));
        }
        return Render<pipeline::Run>(
            p.runs->Submit(sub), [](const auto& r) { return ToJson(r); }, 201);
      },
      size_t{96} << 20);      // code files ride along base64-encoded: the CLI caps them at 64 MiB
  AddPipelineRoutes(p, add);  // saved pipelines, schedules, starts by name
  AddReleaseRoutes(p, add);   // release pipelines dev → int → prod
  add("POST", "/api/v1/runs/{id}/cancel", "run:cancel", [&p](Request& req) {
    auto s = p.runs->Cancel(req.path_params["id"], req.principal_id);
    if (!s) return http::ErrorResponse(s.error());
    return Render<pipeline::Run>(
        p.runs->Get(req.path_params["id"]), [](const auto& r) { return ToJson(r); }, 202);
  });
  add("POST", "/api/v1/runs/{id}/rerun", "pipeline:run", [&p](Request& req) {
    auto body = ParseJson(req.body.empty() ? std::string("{}") : req.body, "rerun request");
    if (!body) return http::ErrorResponse(body.error());
    if (!body->contains("from_step") || !(*body)["from_step"].is_string()) {
      return http::ErrorResponse(
          InvalidArgument("rerun request: 'from_step' (the step to run again) is required"));
    }
    return Render<pipeline::Run>(
        p.runs->Rerun(req.path_params["id"], (*body)["from_step"], req.principal_id,
                      body->value("no_cache", false)),
        [](const auto& r) { return ToJson(r); }, 201);
  });
  add("GET", "/api/v1/runs/{id}/metrics", "run:describe", [&p](Request& req) {
    const bool curves = req.Query("curves").value_or("0") != "0";
    return Render<std::vector<pipeline::MetricPoint>>(
        p.runs->Metrics({req.path_params["id"]}, curves), [](const auto& v) {
          Json a = Json::array();
          for (const auto& m : v)
            a.push_back({{"step", m.step}, {"name", m.name}, {"round", m.round}, {"value", m.value}});
          return a;
        });
  });
  add("GET", "/api/v1/runs", "run:list", [&p](Request& req) {
    int limit = 50;
    if (auto l = req.Query("limit")) limit = ParseInt(*l, "limit").value_or(50);
    if (auto metric = req.Query("metric")) {
      // Search: runs whose final metric lies in [min, max], best first.
      std::optional<double> lo, hi;
      for (auto [key, bound] : {std::pair{"min", &lo}, std::pair{"max", &hi}}) {
        if (auto v = req.Query(key)) {
          try {
            *bound = std::stod(std::string(*v));
          } catch (const std::exception&) {
            return http::ErrorResponse(
                InvalidArgument(std::string(key) + ": '" + std::string(*v) + "' is not a number"));
          }
        }
      }
      auto found = p.runs->Search(std::string(*metric), lo, hi,
                                  std::string(req.Query("pipeline").value_or("")), limit);
      return Render<std::vector<std::pair<pipeline::Run, double>>>(found, [&](const auto& v) {
        Json a = Json::array();
        for (const auto& [r, value] : v) {
          Json j = ToJson(r);
          j["value"] = value;
          a.push_back(j);
        }
        return a;
      });
    }
    return Render<std::vector<pipeline::Run>>(p.runs->List(limit), [](const auto& v) {
      Json a = Json::array();
      for (const auto& x : v) a.push_back(ToJson(x));
      return a;
    });
  });
  add("GET", "/api/v1/runs/{id}", "run:describe", [&p](Request& req) {
    return Render<pipeline::Run>(p.runs->Get(req.path_params["id"]), [](const auto& r) { return ToJson(r); });
  });
  add("GET", "/api/v1/runs/{id}/logs", "run:logs", [&p](Request& req) {
    int64_t after = 0;
    if (auto a = req.Query("after")) after = ParseInt(*a, "after").value_or(0);
    return Render<std::vector<pipeline::LogLine>>(
        p.runs->Logs(req.path_params["id"], after), [](const auto& v) {
          Json a = Json::array();
          for (const auto& l : v)
            a.push_back({{"seq", l.seq}, {"time", l.time}, {"step", l.step}, {"line", l.line}});
          return a;
        });
  });
  add("GET", "/api/v1/runs/{id}/steps/{step}/outputs/{output}", "run:read-artifact", [&p](Request& req) {
    auto t = p.runs->OutputTable(req.path_params["id"], req.path_params["step"], req.path_params["output"],
                                 req.principal_id);
    if (!t) return http::ErrorResponse(t.error());
    return TableResponse(req, *t);
  });

  // Registry: groups, versions, imports, aliases, search.
  AddModelRoutes(p, add);

  // Endpoints (control plane).
  add("GET", "/api/v1/endpoints", "endpoint:list", [&p](Request&) {
    return Render<std::vector<serving::Endpoint>>(p.serving->List(), [](const auto& v) {
      Json a = Json::array();
      for (const auto& x : v) a.push_back(ToJson(x));
      return a;
    });
  });
  add("GET", "/api/v1/endpoints/{name}", "endpoint:describe", [&p](Request& req) {
    auto e = p.serving->Get(req.path_params["name"]);
    if (!e) return http::ErrorResponse(e.error());
    if (auto s = StageAccess(p, *e, "endpoint:describe", req.principal_id); !s)
      return http::ErrorResponse(s.error());
    Json j = ToJson(*e);
    if (auto m = p.serving->Find(e->name)) j["feature_names"] = (*m)->feature_names;
    Json stats = Json::array();
    const int64_t since = RealClock().NowMillis() - 15 * 60 * 1000;
    for (const auto& v : e->variants) {
      serving::VariantStats st = p.serving->Stats(e->name, v.name, since);
      stats.push_back({{"variant", v.name},
                       {"requests", st.requests},
                       {"errors", st.errors},
                       {"error_rate", st.error_rate},
                       {"p50_ms", st.p50_ms},
                       {"p99_ms", st.p99_ms}});
    }
    j["last_15m"] = stats;
    // How each variant runs now: replicas, the autoscaler's wish, queues, batching.
    Json runtime = Json::array();
    if (auto live = p.serving->Live(e->name)) {
      for (const auto& r : (*live)->variants) {
        serving::RuntimeStats st = r->Stats();
        const serving::RuntimeSettings& cfg = r->settings();
        runtime.push_back(
            {{"variant", r->model().variant},
             {"replicas", st.replicas},
             {"desired_replicas", st.desired},
             {"min_replicas", cfg.min_replicas},
             {"max_replicas", cfg.max_replicas},
             {"in_flight", st.in_flight},
             {"queued", st.queued},
             {"requests", st.jobs},
             {"rejected", st.rejected},
             {"batches", st.batches},
             {"mean_batch_rows",
              st.batches ? static_cast<double>(st.batched_rows) / static_cast<double>(st.batches) : 0.0},
             {"cold_starts", st.cold_starts},
             // Whether the model is in memory now (false at zero replicas once it was freed).
             {"model_loaded", r->model().Resident() != nullptr},
             {"max_batch_size", cfg.max_batch_size},
             {"max_batch_wait_us", cfg.max_batch_wait.count()},
             {"queue_capacity", cfg.queue_capacity}});
      }
    }
    j["runtime"] = runtime;
    return JsonOk(j);
  });
  // Captured requests (inputs and predictions) of the last `minutes` (60),
  // oldest first, at most `limit` (100): for monitoring and debugging. A data
  // read: audited.
  add("GET", "/api/v1/endpoints/{name}/capture", "endpoint:read-capture", [&p](Request& req) {
    auto e = p.serving->Get(req.path_params["name"]);
    if (!e) return http::ErrorResponse(e.error());
    if (auto s = StageAccess(p, *e, "endpoint:read-capture", req.principal_id); !s)
      return http::ErrorResponse(s.error());
    int minutes = 60, limit = 100;
    if (auto m = req.Query("minutes")) {
      auto n = ParseInt(*m, "minutes");
      if (!n || *n < 1)
        return http::ErrorResponse(InvalidArgument("minutes must be a positive whole number"));
      minutes = *n;
    }
    if (auto l = req.Query("limit")) {
      auto n = ParseInt(*l, "limit");
      if (!n || *n < 1 || *n > 10000)
        return http::ErrorResponse(InvalidArgument("limit must be a whole number from 1 to 10000"));
      limit = *n;
    }
    if (auto s = p.serving->FlushCapture(e->name); !s) return http::ErrorResponse(s.error());
    serving::CaptureReader reader(p.serving->capture_root(), *p.keyring);
    int64_t now = RealClock().NowMillis();
    auto segments = reader.ListSegments(e->name, now - int64_t{minutes} * 60000, now + 1000);
    if (!segments) return http::ErrorResponse(segments.error());
    std::vector<Json> records;
    for (const auto& info : *segments) {
      auto seg = reader.ReadSegment(info.path);
      if (!seg) return http::ErrorResponse(seg.error());
      for (const auto& r : seg->records) {
        Json input = Json::array();
        const auto schema = seg->schemas.find(r.variant);
        for (size_t row = 0; r.input_cols > 0 && row < r.input.size() / r.input_cols; ++row) {
          Json one = Json::object();
          for (size_t c = 0; c < r.input_cols; ++c) {
            float v = r.input[row * r.input_cols + c];
            std::string name = schema != seg->schemas.end() && c < schema->second.features.size()
                                   ? schema->second.features[c]
                                   : "f" + std::to_string(c);
            one[name] = std::isnan(v) ? Json(nullptr) : Json(v);
          }
          input.push_back(std::move(one));
        }
        records.push_back({{"time", FormatIsoMillis(r.time_ms)},
                           {"inference_id", r.inference_id},
                           {"variant", r.variant},
                           {"version", r.model_version},
                           {"latency_us", r.latency_us},
                           {"input", input},
                           {"output", r.output}});
      }
    }
    size_t skip =
        records.size() > static_cast<size_t>(limit) ? records.size() - static_cast<size_t>(limit) : 0;
    Json out = Json::array();
    for (size_t i = skip; i < records.size(); ++i) out.push_back(std::move(records[i]));
    return JsonOk({{"endpoint", e->name}, {"records", out}, {"segments", segments->size()}});
  });
  // The endpoint's recent requests (newest first): variant, status, latency, error.
  add("GET", "/api/v1/endpoints/{name}/logs", "endpoint:logs", [&p](Request& req) {
    auto e = p.serving->Get(req.path_params["name"]);
    if (!e) return http::ErrorResponse(e.error());
    if (auto s = StageAccess(p, *e, "endpoint:logs", req.principal_id); !s)
      return http::ErrorResponse(s.error());
    size_t limit = 100;
    if (auto l = req.Query("limit")) {
      auto n = ParseInt(*l, "limit");
      if (!n || *n < 1) return http::ErrorResponse(InvalidArgument("limit must be a positive whole number"));
      limit = static_cast<size_t>(*n);
    }
    Json a = Json::array();
    for (const auto& r : p.serving->RecentRequests(e->name, limit)) {
      a.push_back({{"time", FormatIsoMillis(r.time_ms)},
                   {"variant", r.variant},
                   {"status", r.status},
                   {"latency_ms", r.latency_ms},
                   {"error", r.error}});
    }
    return JsonOk(a);
  });

  // Events (rules, deliveries, replay) and audit.
  AddEventRoutes(p, add);
  add("GET", "/api/v1/audit", "audit:list", [&p](Request& req) {
    iam::AuditQuery q;
    q.principal = req.Query("principal").value_or("");
    q.action_prefix = req.Query("action").value_or("");
    q.resource_prefix = req.Query("resource").value_or("");
    q.dataset = req.Query("dataset").value_or("");
    if (auto l = req.Query("limit")) q.limit = ParseInt(*l, "limit").value_or(100);
    return Render<std::vector<iam::AuditRecord>>(p.iam->ListAudit(q), [](const auto& v) {
      Json a = Json::array();
      for (const auto& r : v) {
        a.push_back(
            {{"id", r.id},
             {"time", r.time},
             {"principal", r.principal},
             {"action", r.action},
             {"resource", r.resource},
             {"allowed", r.allowed},
             {"status", r.status},
             {"detail", r.detail},
             {"access", r.access_json.empty() ? Json(nullptr) : Json::parse(r.access_json, nullptr, false)}});
      }
      return a;
    });
  });

  // Inference itself: async handlers on the replicas (inference_routes.cc).
  AddInferenceRoutes(p, *router);

  return router;
}

namespace {

// Bearer tokens seen in the last second, per thread (by their hash: no
// plaintext token is kept): an inference request then costs no database
// read. Principals cannot change personas or lose tokens without a restart
// today; when they can, such changes apply within the second.
Result<std::shared_ptr<const iam::Principal>> CachedAuthenticate(Platform& p, std::string_view token) {
  struct Entry {
    std::chrono::steady_clock::time_point until;
    std::shared_ptr<const iam::Principal> principal;
  };
  using Key = std::array<uint8_t, crypto::kSha256Size>;
  struct KeyHash {
    size_t operator()(const Key& k) const {  // a SHA-256 digest: any 8 of its bytes are a good hash
      size_t h;
      std::memcpy(&h, k.data(), sizeof h);
      return h;
    }
  };
  thread_local std::unordered_map<Key, Entry, KeyHash> cache;
  if (token.empty() || token.size() > 256) {
    TAKT_ASSIGN_OR_RETURN(iam::Principal principal, p.iam->Authenticate(token));
    return std::make_shared<const iam::Principal>(std::move(principal));
  }
  Key key = crypto::Sha256Digest(token);
  auto now = std::chrono::steady_clock::now();
  if (auto it = cache.find(key); it != cache.end() && it->second.until > now) return it->second.principal;
  TAKT_ASSIGN_OR_RETURN(iam::Principal principal, p.iam->Authenticate(token));
  if (cache.size() > 1024) cache.clear();
  auto shared = std::make_shared<const iam::Principal>(std::move(principal));
  cache[key] = Entry{now + std::chrono::seconds(1), shared};
  return shared;
}

}  // namespace

void InstallHooks(http::Server& server, Platform& p) {
  server.SetBeforeHook([&p](const http::Route& route, Request& req) -> std::optional<Response> {
    if (route.is_public) return std::nullopt;
    if (IsSigV4Request(req)) return AuthenticateSigV4(p, route, req);  // AWS SDKs, on /endpoints/ only
    std::string_view auth = req.Header("authorization");
    std::string_view token;
    if (auth.starts_with("Bearer ")) token = auth.substr(7);
    auto principal = CachedAuthenticate(p, token);
    // OIP clients expect {"error": "<message>"}; the code rides along.
    auto refuse = [&route](const Error& e) {
      if (route.pattern.rfind("/v2/", 0) != 0) return http::ErrorResponse(e);
      return http::JsonResponse(
          HttpStatus(e.code()),
          Json{{"error", e.message()}, {"code", std::string(CodeName(e.code()))}}.dump());
    };
    if (!principal) {
      req.principal_id = "anonymous";
      Response r = refuse(principal.error());
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"takt\"");
      return r;
    }
    req.principal_id = (*principal)->name;
    if (iam::Allows(**principal, route.action)) return std::nullopt;
    return refuse(Error(Code::kPermissionDenied, iam::Authorize(**principal, route.action).reason));
  });
  server.SetAfterHook([&p](const http::Route& route, const Request& req, const Response& res) {
    spdlog::debug("{} {} {} {} {}", req.principal_id.empty() ? "-" : req.principal_id, req.method, req.path,
                  res.status, route.action);
    if (route.is_public) return;
    // The governed read path audits its own reads, allowed or denied.
    for (const auto& [name, value] : res.headers) {
      if (name == kAuditedHeader) return;
    }
    bool refused = res.status == 401 || res.status == 403;
    bool mutation = req.method != "GET" && route.action != "endpoint:invoke";
    bool data_read = route.action == "dataset:read" || route.action == "run:read-artifact" ||
                     route.action == "model:download" || route.action == "endpoint:read-capture";
    if (!refused && !mutation && !data_read) return;
    std::string resource = req.path;
    if (resource.rfind("/api/v1/", 0) == 0) resource = resource.substr(8);
    std::string detail;
    if (res.status >= 400) {
      auto j = Json::parse(res.body, nullptr, false);
      if (j.is_object() && j.contains("error") && j["error"].is_object()) {
        detail = j["error"].value("code", "") + ": " + j["error"].value("message", "");
      } else if (j.is_object() && j.contains("error") && j["error"].is_string()) {
        detail = j.value("code", "") + ": " + j["error"].get<std::string>();  // OIP
      }
    }
    auto s = p.iam->Audit({.principal = req.principal_id.empty() ? "anonymous" : req.principal_id,
                           .action = route.action,
                           .resource = resource,
                           .allowed = !refused,
                           .status = res.status,
                           .detail = detail});
    if (!s) spdlog::error("audit write failed: {}", s.error().ToString());
  });
}

}  // namespace takt::api
