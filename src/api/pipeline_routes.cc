// Saved pipelines, their schedules, and starting them by name. The after
// hook audits every mutation (save, start, schedule set or removed).
#include "api/internal.h"
#include "core/time.h"
#include "crypto/crypto.h"

namespace takt::api {
namespace {

using http::Request;
using http::Response;
using namespace internal;  // NOLINT
using internal::ToJson;

Json ScheduleJson(const pipeline::PipelineSchedule& s) {
  return {{"pipeline", s.pipeline},
          {"cron", s.cron},
          {"params", Json::parse(s.params_json, nullptr, false)},
          {"enabled", s.enabled},
          {"next_run", s.next_run > 0 ? FormatIsoMillis(s.next_run * 1000) : ""},
          {"last_run_at", s.last_run_at},
          {"last_tick", s.last_tick},
          {"last_run_id", s.last_run_id},
          {"last_status", s.last_status},
          {"last_error", s.last_error},
          {"last_run_status", s.last_run_status},
          {"created_by", s.created_by},
          {"created_at", s.created_at},
          {"updated_by", s.updated_by},
          {"updated_at", s.updated_at}};
}

Json SavedJson(const pipeline::SavedPipeline& p) {
  Json j = {{"name", p.name},
            {"project", p.project},
            {"description", p.description},
            {"version", p.version},
            {"files", p.files},
            {"git_commit", p.git_commit},
            {"owner", p.owner},
            {"updated_by", p.updated_by},
            {"created_at", p.created_at},
            {"updated_at", p.updated_at},
            {"schedule", p.schedule ? ScheduleJson(*p.schedule) : Json(nullptr)}};
  if (!p.yaml.empty()) j["yaml"] = p.yaml;
  return j;
}

// The request body as a JSON object ({} when empty).
Result<Json> BodyObject(const Request& req, std::string_view what) {
  TAKT_RETURN_IF_ERROR(RequireJson(req));
  TAKT_ASSIGN_OR_RETURN(Json body, ParseJson(req.body.empty() ? std::string("{}") : req.body, what));
  if (!body.is_object()) return InvalidArgument(std::string(what) + ": expected a JSON object");
  return body;
}

Result<Json> ParamsOf(const Json& body, std::string_view what) {
  Json params = body.contains("params") ? body["params"] : Json::object();
  if (!params.is_object())
    return InvalidArgument(std::string(what) + ": params must be an object of parameter names and values");
  return params;
}

// {"yaml": "...", "files": {"path": "<base64>"}, "git_commit": "..."}, as POST /runs takes it.
Result<pipeline::SaveRequest> SaveRequestFrom(const Request& req) {
  TAKT_ASSIGN_OR_RETURN(Json body, BodyObject(req, "save request"));
  if (!body.contains("yaml") || !body["yaml"].is_string())
    return InvalidArgument("save request: 'yaml' (the pipeline as text) is required");
  pipeline::SaveRequest s;
  s.yaml = body["yaml"];
  s.principal = req.principal_id;
  if (body.contains("git_commit")) {
    if (!body["git_commit"].is_string()) return InvalidArgument("save request: git_commit must be a string");
    s.git_commit = body["git_commit"];
  }
  const Json files = body.contains("files") ? body["files"] : Json::object();
  if (!files.is_object()) return InvalidArgument("save request: files must map paths to base64 text");
  for (const auto& [path, content] : files.items()) {
    if (!content.is_string()) return InvalidArgument("save request: files." + path + " must be base64 text");
    auto bytes = crypto::Base64Decode(content.get<std::string>());
    if (!bytes) return std::unexpected(bytes.error().WithContext("save request: files." + path));
    s.files[path] = std::move(*bytes);
  }
  return s;
}

}  // namespace

void AddPipelineRoutes(Platform& p, const AddRoute& add) {
  // Code files ride along base64-encoded: the CLI caps them at 64 MiB.
  constexpr size_t kSaveBody = size_t{96} << 20;
  for (const char* method : {"POST", "PUT"}) {
    add(
        method, "/api/v1/pipelines", "pipeline:save",
        [&p](Request& req) {
          auto save = SaveRequestFrom(req);
          if (!save) return http::ErrorResponse(save.error());
          auto saved = p.triggers->Save(*save);
          if (!saved) return http::ErrorResponse(saved.error());
          return JsonOk(SavedJson(*saved), saved->version == 1 ? 201 : 200);
        },
        kSaveBody);
  }
  add("GET", "/api/v1/pipelines", "pipeline:list", [&p](Request&) {
    return Render<std::vector<pipeline::SavedPipeline>>(p.triggers->List(), [](const auto& v) {
      Json a = Json::array();
      for (const auto& x : v) a.push_back(SavedJson(x));
      return a;
    });
  });
  add("GET", "/api/v1/pipelines/{name}", "pipeline:describe", [&p](Request& req) {
    return Render<pipeline::SavedPipeline>(p.triggers->Get(req.path_params["name"], req.principal_id),
                                           [](const auto& x) { return SavedJson(x); });
  });
  add("POST", "/api/v1/pipelines/{name}/runs", "pipeline:run", [&p](Request& req) {
    // {"params": {...}, "no_cache": bool}
    auto body = BodyObject(req, "start request");
    if (!body) return http::ErrorResponse(body.error());
    auto params = ParamsOf(*body, "start request");
    if (!params) return http::ErrorResponse(params.error());
    pipeline::StartRequest start;
    start.pipeline = req.path_params["name"];
    start.params = *params;
    start.principal = req.principal_id;
    if (body->contains("no_cache") && !(*body)["no_cache"].is_boolean())
      return http::ErrorResponse(InvalidArgument("start request: no_cache must be true or false"));
    start.no_cache = body->value("no_cache", false);
    return Render<pipeline::Run>(
        p.triggers->Start(start), [](const auto& r) { return ToJson(r); }, 201);
  });
  add("PUT", "/api/v1/pipelines/{name}/schedule", "pipeline:schedule", [&p](Request& req) {
    // {"cron": "0 3 * * *", "params": {...}, "enabled": bool}
    auto body = BodyObject(req, "schedule");
    if (!body) return http::ErrorResponse(body.error());
    if (!body->contains("cron") || !(*body)["cron"].is_string()) {
      return http::ErrorResponse(
          InvalidArgument("schedule: cron is required, a cron expression such as \"0 3 * * *\" (UTC)"));
    }
    auto params = ParamsOf(*body, "schedule");
    if (!params) return http::ErrorResponse(params.error());
    if (body->contains("enabled") && !(*body)["enabled"].is_boolean())
      return http::ErrorResponse(InvalidArgument("schedule: enabled must be true or false"));
    pipeline::ScheduleRequest s;
    s.pipeline = req.path_params["name"];
    s.cron = (*body)["cron"];
    s.params = *params;
    s.enabled = body->value("enabled", true);
    s.principal = req.principal_id;
    return Render<pipeline::PipelineSchedule>(p.triggers->SetSchedule(s),
                                              [](const auto& x) { return ScheduleJson(x); });
  });
  add("DELETE", "/api/v1/pipelines/{name}/schedule", "pipeline:schedule", [&p](Request& req) {
    if (auto s = p.triggers->DeleteSchedule(req.path_params["name"], req.principal_id); !s)
      return http::ErrorResponse(s.error());
    return JsonOk({{"pipeline", req.path_params["name"]}, {"schedule", nullptr}});
  });
}

}  // namespace takt::api
