// Release pipelines: configs, status, approvals, rollback and the history of
// what served each stage; and the per-stage access rule every endpoint route
// applies (StageAccess). The after hook audits every mutation.
#include "api/internal.h"
#include "core/time.h"

namespace takt::api {
namespace {

using http::Request;
using http::Response;
using namespace internal;  // NOLINT

Json ApprovalJson(const release::Approval& a) {
  return {{"stage", a.stage},
          {"principal", a.principal},
          {"decision", a.decision},
          {"comment", a.comment},
          {"time", a.time}};
}

Json ReleaseJson(const release::Release& r) {
  Json approvals = Json::array();
  for (const auto& a : r.approvals) approvals.push_back(ApprovalJson(a));
  Json log = Json::array();
  for (const auto& l : r.log) {
    log.push_back({{"seq", l.seq},
                   {"time", l.time},
                   {"stage", l.stage},
                   {"what", l.what},
                   {"principal", l.principal},
                   {"detail", l.detail}});
  }
  return {{"id", r.id},
          {"group", r.group},
          {"version", r.version},
          {"status", r.status},
          {"stage", r.stage},
          {"phase", r.phase},
          {"message", r.message},
          {"trigger", r.trigger},
          {"started_by", r.started_by},
          {"created_at", r.created_at},
          {"updated_at", r.updated_at},
          {"approvals", approvals},
          {"log", log}};
}

Json ServedJson(const release::Served& s) {
  return {{"stage", s.stage},
          {"version", s.version},
          {"release", s.release_id},
          {"from", s.from},
          {"to", s.to},
          {"how", s.how},
          {"by", s.by},
          {"approved_by", s.approved_by},
          {"run_id", s.run_id},
          {"dataset", s.dataset},
          {"dataset_version", s.dataset_version},
          {"ended_by", s.ended_by}};
}

Json StageJson(const release::StageConfig& s) {
  Json gates = Json::array();
  for (const auto& g : s.entry_gates) {
    if (g == "quality") {
      gates.push_back({{"quality",
                        {{"metric", s.quality->metric},
                         {"compare_to", s.quality->compare_to},
                         {"max_regression", s.quality->max_regression},
                         {"direction", s.quality->higher_is_better ? "max" : "min"}}}});
    } else if (g == "approval") {
      gates.push_back({{"approval",
                        {{"approvers", s.approval->approvers},
                         {"persona", s.approval->persona},
                         {"group", s.approval->group},
                         {"timeout_s", s.approval->timeout_seconds}}}});
    }
  }
  if (s.smoke_test) {
    gates.push_back(
        {{"smoke_test",
          {{"requests", s.smoke_test->requests}, {"max_p99_latency_ms", s.smoke_test->max_p99_latency_ms}}}});
  }
  Json j = Json::parse(release::EndpointSettingsJson(s));
  j["name"] = s.name;
  j["gates"] = gates;
  if (s.strategy != release::Strategy::kAllAtOnce) {
    j["strategy_settings"] = {
        {"percent", s.canary_percent},
        {"duration_s", s.duration_seconds},
        {"min_requests", s.min_requests},
        {"rollback_on", {{"error_rate", s.max_error_rate}, {"p99_latency_ms", s.max_p99_latency_ms}}}};
  }
  return j;
}

Result<Json> Body(const Request& req) {
  TAKT_RETURN_IF_ERROR(RequireJson(req));
  TAKT_ASSIGN_OR_RETURN(Json body,
                        ParseJson(req.body.empty() ? std::string("{}") : req.body, "request body"));
  if (!body.is_object()) return InvalidArgument("request body: expected a JSON object");
  return body;
}

Result<std::string> StringField(const Json& body, const char* name, bool required) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    if (required) return InvalidArgument(std::string("request body: ") + name + " is missing");
    return std::string();
  }
  if (!it->is_string()) return InvalidArgument(std::string("request body: ") + name + " must be a string");
  return it->get<std::string>();
}

// Members of the group's project (and admins) change its release pipeline. A
// group not registered yet belongs to the project of its name (as an import
// would create it).
Status RequireProjectAccess(Platform& p, const std::string& group, const std::string& principal) {
  std::string project = group;
  if (auto g = p.registry->GetGroup(group)) {
    project = g->project;
  } else if (g.error().code() != Code::kNotFound) {
    return std::unexpected(g.error());
  } else if (auto proj = p.iam->GetProject(group); !proj) {
    return NotFound("model group " + group + " does not exist, nor a project of that name to own it");
  }
  TAKT_ASSIGN_OR_RETURN(auto who, p.iam->Get(principal));
  if (std::find(who.personas.begin(), who.personas.end(), "admin") != who.personas.end()) return Ok();
  TAKT_ASSIGN_OR_RETURN(bool member, p.iam->IsProjectMember(project, principal));
  if (!member) {
    return PermissionDenied(principal + " is not a member of project " + project +
                            ", which owns model group " + group);
  }
  return Ok();
}

}  // namespace

namespace internal {

Status StageAccess(Platform& p, const serving::Endpoint& e, std::string_view action,
                   const std::string& principal) {
  TAKT_ASSIGN_OR_RETURN(iam::Principal who, p.iam->Get(principal));
  auto has = [&](std::string_view persona) {
    return std::find(who.personas.begin(), who.personas.end(), persona) != who.personas.end();
  };
  const bool service = who.kind == "service";
  const bool invoke = action == "endpoint:invoke";
  const std::string what = invoke ? "invoke" : "read";
  if (e.stage == "dev") {
    if (has("admin")) return Ok();
    auto g = p.registry->GetGroup(e.model_group);
    std::string project = g ? g->project : "";
    TAKT_ASSIGN_OR_RETURN(bool member, p.iam->IsProjectMember(project, principal));
    if (member) return Ok();
    return PermissionDenied("dev endpoint " + e.name + " is open to members of project " + project + "; " +
                            principal + " is not one");
  }
  if (e.stage == "int") {
    if (service) return Ok();
    if (invoke) {
      return PermissionDenied("int is read-only for people: only service identities invoke " + e.name +
                              " (test it in dev, or through the release's smoke test)");
    }
    if (has("admin")) return Ok();
    auto g = p.registry->GetGroup(e.model_group);
    TAKT_ASSIGN_OR_RETURN(bool member, p.iam->IsProjectMember(g ? g->project : "", principal));
    if (member || has("approver") || has("auditor")) return Ok();
    return PermissionDenied(principal + " may not read int endpoint " + e.name +
                            ": it is open to the project's members, approvers and auditors");
  }
  // prod: service identities, and the approvers of the prod stage.
  if (service) return Ok();
  auto cfg = p.releases->Config(e.model_group);
  if (cfg) {
    if (const auto* st = cfg->Stage("prod"); st && st->approval && has(st->approval->persona)) {
      bool in_group = st->approval->group.empty();
      if (!in_group) {
        if (auto g = p.iam->GetGroup(st->approval->group)) {
          in_group = std::find(g->members.begin(), g->members.end(), principal) != g->members.end();
        }
      }
      if (in_group) return Ok();
    }
  }
  if (!invoke && has("admin")) return Ok();
  return PermissionDenied("prod endpoint " + e.name +
                          " is reachable only by service identities and the prod " + "approvers of " +
                          e.model_group + "; " + principal + " may not " + what + " it");
}

}  // namespace internal

void AddReleaseRoutes(Platform& p, const AddRoute& add) {
  add("GET", "/api/v1/releases", "release:describe", [&p](Request& req) {
    int limit = 50;
    if (auto l = req.Query("limit")) {
      auto n = ParseInt(*l, "limit");
      if (!n) return http::ErrorResponse(n.error());
      limit = *n;
    }
    return Render<std::vector<release::Release>>(p.releases->List(req.Query("group").value_or(""), limit),
                                                 [](const auto& v) {
                                                   Json a = Json::array();
                                                   for (const auto& r : v) a.push_back(ReleaseJson(r));
                                                   return a;
                                                 });
  });
  add("GET", "/api/v1/releases/{group}", "release:describe", [&p](Request& req) {
    return Render<release::GroupStatus>(p.releases->Describe(req.path_params["group"]), [](const auto& s) {
      Json stages = Json::array();
      for (const auto& st : s.stages) {
        Json variants = Json::array();
        for (const auto& v : st.variants)
          variants.push_back({{"name", v.name}, {"version", v.model_version}, {"weight", v.weight}});
        stages.push_back({{"stage", st.stage},
                          {"endpoint", st.endpoint},
                          {"live_version", st.live_version},
                          {"since", st.since},
                          {"variants", variants}});
      }
      Json active = Json::array(), recent = Json::array();
      for (const auto& r : s.active) active.push_back(ReleaseJson(r));
      for (const auto& r : s.recent) recent.push_back(ReleaseJson(r));
      return Json{{"group", s.group},
                  {"custom_config", s.custom_config},
                  {"stages", stages},
                  {"active", active},
                  {"recent", recent}};
    });
  });
  add("GET", "/api/v1/release-runs/{id}", "release:describe", [&p](Request& req) {
    return Render<release::Release>(p.releases->Get(req.path_params["id"]),
                                    [](const auto& r) { return ReleaseJson(r); });
  });
  add("GET", "/api/v1/releases/{group}/config", "release:describe", [&p](Request& req) {
    const std::string group = req.path_params["group"];
    if (!p.registry->GetGroup(group) && !p.releases->HasCustomConfig(group)) {
      return http::ErrorResponse(NotFound("model group " + group + " does not exist"));
    }
    return Render<release::ReleaseConfig>(p.releases->Config(group), [&](const auto& c) {
      Json stages = Json::array();
      for (const auto& s : c.stages) stages.push_back(StageJson(s));
      return Json{
          {"model_group", c.model_group}, {"custom", !c.yaml.empty()}, {"yaml", c.yaml}, {"stages", stages}};
    });
  });
  add("PUT", "/api/v1/releases/{group}/config", "release:configure", [&p](Request& req) {
    const std::string group = req.path_params["group"];
    if (auto s = RequireProjectAccess(p, group, req.principal_id); !s) return http::ErrorResponse(s.error());
    std::string yaml = req.body;
    if (req.ContentType() == "application/json") {
      auto body = Body(req);
      if (!body) return http::ErrorResponse(body.error());
      auto y = StringField(*body, "yaml", true);
      if (!y) return http::ErrorResponse(y.error());
      yaml = *y;
    } else if (req.ContentType() != "application/yaml" && req.ContentType() != "text/yaml" &&
               req.ContentType() != "text/plain") {
      return http::ErrorResponse(
          UnsupportedMedia("send the release config as application/yaml (or JSON {\"yaml\": ...})"));
    }
    return Render<release::ReleaseConfig>(
        p.releases->PutConfig(group, yaml, req.principal_id), [](const auto& c) {
          Json stages = Json::array();
          for (const auto& s : c.stages) stages.push_back(StageJson(s));
          return Json{{"model_group", c.model_group}, {"custom", true}, {"stages", stages}};
        });
  });
  add("POST", "/api/v1/releases/{group}/start", "release:start", [&p](Request& req) {
    const std::string group = req.path_params["group"];
    if (auto s = RequireProjectAccess(p, group, req.principal_id); !s) return http::ErrorResponse(s.error());
    auto body = Body(req);
    if (!body) return http::ErrorResponse(body.error());
    std::string ref = body->contains("version") && (*body)["version"].is_number_integer()
                          ? std::to_string((*body)["version"].get<int>())
                          : body->value("version", std::string());
    if (ref.empty()) return http::ErrorResponse(InvalidArgument("request body: version is missing"));
    auto version = p.registry->Resolve(group, ref);
    if (!version) return http::ErrorResponse(version.error());
    auto r = p.releases->Start(group, *version, "manual:" + req.principal_id + ":" + NewId("start"),
                               req.principal_id);
    return Render<release::Release>(
        r, [](const auto& x) { return ReleaseJson(x); }, 201);
  });
  for (const char* verb : {"approve", "reject"}) {
    const bool approve = std::string_view(verb) == "approve";
    add("POST", std::string("/api/v1/releases/{group}/") + verb,
        approve ? "release:approve" : "release:reject", [&p, approve](Request& req) {
          auto body = Body(req);
          if (!body) return http::ErrorResponse(body.error());
          auto stage = StringField(*body, "stage", true);
          if (!stage) return http::ErrorResponse(stage.error());
          auto comment = StringField(*body, "comment", false);
          if (!comment) return http::ErrorResponse(comment.error());
          auto r = approve ? p.releases->Approve(req.path_params["group"], *stage, req.principal_id, *comment)
                           : p.releases->Reject(req.path_params["group"], *stage, req.principal_id, *comment);
          return Render<release::Release>(r, [](const auto& x) { return ReleaseJson(x); });
        });
  }
  add("POST", "/api/v1/releases/{group}/rollback", "release:rollback", [&p](Request& req) {
    const std::string group = req.path_params["group"];
    if (auto s = RequireProjectAccess(p, group, req.principal_id); !s) return http::ErrorResponse(s.error());
    auto body = Body(req);
    if (!body) return http::ErrorResponse(body.error());
    auto stage = StringField(*body, "stage", true);
    if (!stage) return http::ErrorResponse(stage.error());
    auto comment = StringField(*body, "comment", false);
    if (!comment) return http::ErrorResponse(comment.error());
    int to = 0;
    if (body->contains("to") && !(*body)["to"].is_null()) {
      if (!(*body)["to"].is_number_integer() || (*body)["to"].get<int>() < 1) {
        return http::ErrorResponse(InvalidArgument("request body: to must be a version number"));
      }
      to = (*body)["to"].get<int>();
    }
    return Render<release::Served>(p.releases->Rollback(group, *stage, to, req.principal_id, *comment),
                                   [](const auto& s) { return ServedJson(s); });
  });
  add("GET", "/api/v1/releases/{group}/history", "release:describe", [&p](Request& req) {
    const std::string group = req.path_params["group"];
    if (auto g = p.registry->GetGroup(group); !g) return http::ErrorResponse(g.error());
    return Render<std::vector<release::Served>>(
        p.releases->History(group, req.Query("at").value_or(""), req.Query("stage").value_or("")),
        [](const auto& v) {
          Json a = Json::array();
          for (const auto& s : v) a.push_back(ServedJson(s));
          return a;
        });
  });
}

}  // namespace takt::api
