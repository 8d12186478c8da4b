#include "api/routes.h"

#include "crypto/crypto.h"

#include "api/internal.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <set>

#include "core/json.h"
#include "core/time.h"
#include "frame/csv.h"
#include "serving/protocols.h"

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

// The matrix of an inference request, by content type.
Result<ml::Matrix> InvocationRows(const Request& req, const serving::LoadedModel& m) {
  std::string_view ct = req.ContentType();
  if (req.body.empty()) return InvalidArgument("the request body is empty");
  if (ct == "text/csv") return serving::ParseCsvRows(req.body, m.feature_names.size());
  if (ct == "application/json") return serving::ParseJsonInstances(req.body, m.feature_names.size());
  return UnsupportedMedia("Content-Type '" + std::string(ct) +
                          "' is not supported: use text/csv or application/json");
}

// The model one inference request goes to: the endpoint must exist and let
// the principal in (StageAccess); a target-variant header picks the variant,
// else the traffic weights do.
Result<std::shared_ptr<const serving::LoadedModel>> ModelFor(Platform& p, const Request& req,
                                                             std::string_view action) {
  const std::string& name = req.path_params.at("name");
  TAKT_ASSIGN_OR_RETURN(serving::Endpoint e, p.serving->Get(name));
  TAKT_RETURN_IF_ERROR(StageAccess(p, e, action, req.principal_id));
  std::string target = req.Header("x-amzn-sagemaker-target-variant");
  if (target.empty()) target = req.Header("x-takt-target-variant");
  return target.empty() ? p.serving->Find(name) : p.serving->FindVariant(name, target);
}

// Times one served request and records its outcome for the variant (canary
// alarms, the endpoint's request log); names the variant in the reply.
class Served {
 public:
  Served(Platform& p, const serving::LoadedModel& m)
      : p_(p), m_(m), start_(std::chrono::steady_clock::now()) {}
  Response Done(Response r) {
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
    std::string error;
    if (r.status >= 400) {
      auto j = Json::parse(r.body, nullptr, false);
      if (j.is_object() && j.contains("error") && j["error"].is_object())
        error = j["error"].value("message", "");
    }
    p_.serving->Record(m_.endpoint, m_.variant, r.status, ms, error);
    r.headers.emplace_back("x-Amzn-Invoked-Production-Variant", m_.variant);
    return r;
  }

 private:
  Platform& p_;
  const serving::LoadedModel& m_;
  std::chrono::steady_clock::time_point start_;
};

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
  add_public("GET", "/v2/health/live", [](Request&) { return JsonOk({{"live", true}}); });
  add_public("GET", "/v2/health/ready", [](Request&) { return JsonOk({{"ready", true}}); });

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
    return JsonOk(j);
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

  // Inference: Open Inference Protocol v2.
  add("GET", "/v2/models/{name}", "endpoint:describe", [&p](Request& req) {
    auto m = ModelFor(p, req, "endpoint:describe");
    if (!m) return http::ErrorResponse(m.error());
    return http::JsonResponse(200,
                              serving::RenderOipMetadata((*m)->endpoint, (*m)->version, (*m)->feature_names));
  });
  add("GET", "/v2/models/{name}/ready", "endpoint:describe", [&p](Request& req) {
    auto m = ModelFor(p, req, "endpoint:describe");
    if (!m) return http::ErrorResponse(m.error());
    return JsonOk({{"name", (*m)->endpoint}, {"ready", true}});
  });
  add(
      "POST", "/v2/models/{name}/infer", "endpoint:invoke",
      [&p](Request& req) {
        auto m = ModelFor(p, req, "endpoint:invoke");
        if (!m) return http::ErrorResponse(m.error());
        Served served(p, **m);
        if (req.ContentType() != "application/json") {
          return served.Done(http::ErrorResponse(UnsupportedMedia(
              "expected Content-Type application/json, got '" + std::string(req.ContentType()) + "'")));
        }
        auto parsed = serving::ParseOipInfer(req.body, (*m)->feature_names);
        if (!parsed) return served.Done(http::ErrorResponse(parsed.error()));
        auto preds = (*m)->model->Predict(parsed->rows);
        if (!preds) return served.Done(http::ErrorResponse(preds.error()));
        return served.Done(http::JsonResponse(
            200, serving::RenderOipInfer((*m)->endpoint, (*m)->version, parsed->id, *preds)));
      },
      size_t{16} << 20);

  // Inference: SageMaker runtime.
  add(
      "POST", "/endpoints/{name}/invocations", "endpoint:invoke",
      [&p](Request& req) {
        auto m = ModelFor(p, req, "endpoint:invoke");
        if (!m) return http::ErrorResponse(m.error());
        Served served(p, **m);
        auto rows = InvocationRows(req, **m);
        if (!rows) return served.Done(http::ErrorResponse(rows.error()));
        auto preds = (*m)->model->Predict(*rows);
        if (!preds) return served.Done(http::ErrorResponse(preds.error()));
        Response r;
        std::string accept = req.Header("accept");
        bool csv = accept.find("text/csv") != std::string::npos ||
                   (accept.find("application/json") == std::string::npos && req.ContentType() == "text/csv");
        r.content_type = csv ? "text/csv" : "application/json";
        r.body = csv ? serving::RenderCsvPredictions(*preds) : serving::RenderJsonPredictions(*preds);
        return served.Done(std::move(r));
      },
      size_t{16} << 20);

  return router;
}

void InstallHooks(http::Server& server, Platform& p) {
  server.SetBeforeHook([&p](const http::Route& route, Request& req) -> std::optional<Response> {
    if (route.is_public) return std::nullopt;
    std::string auth = req.Header("authorization");
    std::string token;
    if (auth.rfind("Bearer ", 0) == 0) token = auth.substr(7);
    auto principal = p.iam->Authenticate(token);
    if (!principal) {
      req.principal_id = "anonymous";
      Response r = http::ErrorResponse(principal.error());
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"takt\"");
      return r;
    }
    req.principal_id = principal->name;
    iam::Decision d = iam::Authorize(*principal, route.action);
    if (!d.allowed) return http::ErrorResponse(PermissionDenied(d.reason));
    return std::nullopt;
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
                     route.action == "model:download";
    if (!refused && !mutation && !data_read) return;
    std::string resource = req.path;
    if (resource.rfind("/api/v1/", 0) == 0) resource = resource.substr(8);
    std::string detail;
    if (res.status >= 400) {
      auto j = Json::parse(res.body, nullptr, false);
      if (j.is_object() && j.contains("error") && j["error"].is_object()) {
        detail = j["error"].value("code", "") + ": " + j["error"].value("message", "");
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
