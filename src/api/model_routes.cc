// The model registry's routes: groups (create, describe, update), versions
// (import, describe, history, artifact, approve/reject, card), aliases and the
// search across groups. Version routes take a number or an alias
// (`/versions/champion`). Registering into or updating a group needs
// membership of the group's project (or an admin).
#include <spdlog/spdlog.h>

#include "api/internal.h"
#include "crypto/crypto.h"
#include "registry/import.h"

namespace takt::api {
namespace internal {

using http::Request;
using http::Response;

Json ToJson(const registry::ModelVersion& v) {
  Json schema = Json::array();
  for (const auto& f : v.schema) schema.push_back({{"name", f.name}, {"type", f.type}});
  Json sample = Json::array();
  for (const auto& row : v.sample_rows) {
    Json r = Json::array();
    for (double x : row) r.push_back(std::isfinite(x) ? Json(x) : Json(nullptr));
    sample.push_back(std::move(r));
  }
  Json card = nullptr;
  if (v.card) card = Json::parse(registry::CardJson(*v.card), nullptr, false);
  return {{"group", v.group},
          {"version", v.version},
          {"status", v.status},
          {"framework", v.framework},
          {"artifact", v.blob_id},
          {"artifact_format", v.artifact_format},
          {"feature_names", v.feature_names},
          {"schema", schema},
          {"metrics", Json::parse(v.metrics_json, nullptr, false)},
          {"params", Json::parse(v.params_json, nullptr, false)},
          {"lineage", {{"dataset", v.dataset}, {"dataset_version", v.dataset_version}, {"run_id", v.run_id}}},
          {"source", v.source},
          {"card", card},
          {"sample_rows", sample},
          {"aliases", v.aliases},
          {"created_by", v.created_by},
          {"registered_by", v.registered_by},
          {"created_at", v.created_at},
          {"decided_by", v.decided_by},
          {"decided_at", v.decided_at},
          {"comment", v.comment}};
}

Json ToJson(const registry::ModelGroup& g) {
  return {{"name", g.name},
          {"project", g.project},
          {"description", g.description},
          {"tags", g.tags},
          {"aliases", g.aliases},
          {"created_by", g.created_by},
          {"created_at", g.created_at},
          {"latest_version", g.latest_version},
          {"approved_versions", g.approved_versions}};
}

Json ToJson(const registry::HistoryEntry& e) {
  return {{"group", e.group},         {"version", e.version}, {"event", e.event},   {"status", e.status},
          {"principal", e.principal}, {"comment", e.comment}, {"detail", e.detail}, {"time", e.time}};
}

}  // namespace internal

namespace {

using http::Request;
using http::Response;
using namespace internal;  // NOLINT: the shared helpers of the route files

// Import bodies carry the model base64-encoded: 64 MiB of model is ~86 MiB of text.
constexpr size_t kImportBodyLimit = size_t{96} << 20;

// Members of the owning project, and admins, may register into and update a group.
Status RequireProjectMember(Platform& p, const std::string& project, const std::string& group,
                            const std::string& principal) {
  TAKT_ASSIGN_OR_RETURN(bool member, p.iam->IsProjectMember(project, principal));
  if (member) return Ok();
  TAKT_ASSIGN_OR_RETURN(iam::Principal who, p.iam->Get(principal));
  if (iam::Authorize(who, "project:manage").allowed) return Ok();
  return PermissionDenied(principal + " is not a member of project " + project + ", which owns model group " +
                          group + " (add them with `takt project add-member " + project + " " + principal +
                          "`)");
}

// The group's project, for a membership check.
Status RequireGroupMember(Platform& p, const std::string& group, const std::string& principal) {
  TAKT_ASSIGN_OR_RETURN(registry::ModelGroup g, p.registry->GetGroup(group));
  return RequireProjectMember(p, g.project, group, principal);
}

Result<Json> JsonBody(const Request& req) {
  TAKT_RETURN_IF_ERROR(RequireJson(req));
  TAKT_ASSIGN_OR_RETURN(Json body,
                        ParseJson(req.body.empty() ? std::string("{}") : req.body, "request body"));
  if (!body.is_object()) return InvalidArgument("request body: expected a JSON object");
  return body;
}

Result<std::string> OptString(const Json& body, const char* key) {
  if (!body.contains(key) || body[key].is_null()) return std::string();
  if (!body[key].is_string())
    return InvalidArgument(std::string("request body: ") + key + " must be a string");
  return body[key].get<std::string>();
}

Result<std::map<std::string, std::string>> TagMap(const Json& body, const char* key) {
  std::map<std::string, std::string> out;
  if (!body.contains(key) || body[key].is_null()) return out;
  if (!body[key].is_object())
    return InvalidArgument(std::string("request body: ") + key + " must map keys to strings");
  for (const auto& [k, v] : body[key].items()) {
    if (!v.is_string())
      return InvalidArgument(std::string("request body: ") + key + "." + k + " must be a string");
    out[k] = v.get<std::string>();
  }
  return out;
}

// "k=v" or "k" (any value).
std::pair<std::string, std::string> SplitTag(const std::string& tag) {
  auto eq = tag.find('=');
  if (eq == std::string::npos) return {tag, ""};
  return {tag.substr(0, eq), tag.substr(eq + 1)};
}

Json VersionsJson(const std::vector<registry::ModelVersion>& v) {
  Json a = Json::array();
  for (const auto& x : v) a.push_back(ToJson(x));
  return a;
}

Result<registry::ImportRequest> ImportRequestOf(const Request& req, const std::string& group) {
  if (req.ContentType() != "application/json") {
    return UnsupportedMedia(
        "model import: expected Content-Type application/json ({framework, model_base64, "
        "schema, metrics, ...}), got '" +
        std::string(req.ContentType()) + "'");
  }
  TAKT_ASSIGN_OR_RETURN(Json body, ParseJson(req.body, "model import"));
  if (!body.is_object()) return InvalidArgument("model import: expected a JSON object");
  static const std::set<std::string> kKeys = {"framework", "model_base64", "project",    "schema",
                                              "features",  "metrics",      "params",     "card",
                                              "sample",    "sample_csv",   "description"};
  for (const auto& [k, _] : body.items()) {
    if (!kKeys.contains(k)) return InvalidArgument("model import: unknown field '" + k + "'");
  }
  registry::ImportRequest r;
  r.group = group;
  r.principal = req.principal_id;
  TAKT_ASSIGN_OR_RETURN(r.framework, OptString(body, "framework"));
  TAKT_ASSIGN_OR_RETURN(r.project, OptString(body, "project"));
  TAKT_ASSIGN_OR_RETURN(r.description, OptString(body, "description"));
  TAKT_ASSIGN_OR_RETURN(r.sample_csv, OptString(body, "sample_csv"));
  TAKT_ASSIGN_OR_RETURN(std::string model_b64, OptString(body, "model_base64"));
  if (model_b64.empty()) return InvalidArgument("model import: model_base64 (the model file) is required");
  auto bytes = crypto::Base64Decode(model_b64);
  if (!bytes) return std::unexpected(bytes.error().WithContext("model import: model_base64"));
  r.model_bytes = std::move(*bytes);
  if (body.contains("features") && !body["features"].is_null()) {
    if (!body["features"].is_array())
      return InvalidArgument("model import: features must be a list of names");
    for (const auto& f : body["features"]) {
      if (!f.is_string()) return InvalidArgument("model import: features must be a list of names");
      r.feature_names.push_back(f.get<std::string>());
    }
  }
  auto text = [&](const char* key) {
    return body.contains(key) && !body[key].is_null() ? body[key].dump() : std::string();
  };
  r.schema_json = text("schema");
  r.metrics_json = text("metrics");
  r.params_json = text("params");
  r.card_json = text("card");
  r.sample_json = text("sample");
  return r;
}

}  // namespace

void AddModelRoutes(Platform& p, const AddRoute& add) {
  // Groups.
  add("GET", "/api/v1/models", "model:list", [&p](Request& req) {
    auto [key, value] = SplitTag(req.Query("tag").value_or(""));
    return Render<std::vector<registry::ModelGroup>>(
        p.registry->ListGroups(req.Query("project").value_or(""), key, value), [](const auto& v) {
          Json a = Json::array();
          for (const auto& g : v) a.push_back(ToJson(g));
          return a;
        });
  });
  add("POST", "/api/v1/models", "model:register", [&p](Request& req) {
    auto body = JsonBody(req);
    if (!body) return http::ErrorResponse(body.error());
    auto name = OptString(*body, "name");
    if (!name) return http::ErrorResponse(name.error());
    auto project = OptString(*body, "project");
    if (!project) return http::ErrorResponse(project.error());
    auto description = OptString(*body, "description");
    if (!description) return http::ErrorResponse(description.error());
    auto tags = TagMap(*body, "tags");
    if (!tags) return http::ErrorResponse(tags.error());
    if (name->empty()) return http::ErrorResponse(InvalidArgument("request body: name is required"));
    const std::string owner = project->empty() ? *name : *project;
    if (auto s = RequireProjectMember(p, owner, *name, req.principal_id); !s)
      return http::ErrorResponse(s.error());
    return Render<registry::ModelGroup>(
        p.registry->CreateGroup(*name, owner, *description, *tags, req.principal_id),
        [](const auto& g) { return ToJson(g); }, 201);
  });
  add("GET", "/api/v1/models/{group}", "model:describe", [&p](Request& req) {
    const std::string group = req.path_params["group"];
    auto g = p.registry->GetGroup(group);
    if (!g) return http::ErrorResponse(g.error());
    auto versions = p.registry->ListVersions(group);
    if (!versions) return http::ErrorResponse(versions.error());
    Json j = ToJson(*g);
    j["versions"] = VersionsJson(*versions);
    return JsonOk(j);
  });
  add("PATCH", "/api/v1/models/{group}", "model:update", [&p](Request& req) {
    const std::string group = req.path_params["group"];
    auto body = JsonBody(req);
    if (!body) return http::ErrorResponse(body.error());
    if (auto s = RequireGroupMember(p, group, req.principal_id); !s) return http::ErrorResponse(s.error());
    registry::GroupUpdate u;
    for (const auto& [k, _] : body->items()) {
      if (k != "description" && k != "tags" && k != "remove_tags")
        return http::ErrorResponse(InvalidArgument("request body: unknown field '" + k +
                                                   "' (known: description, tags, remove_tags)"));
    }
    if (body->contains("description")) {
      if (!(*body)["description"].is_string())
        return http::ErrorResponse(InvalidArgument("request body: description must be a string"));
      u.description = (*body)["description"].get<std::string>();
    }
    auto tags = TagMap(*body, "tags");
    if (!tags) return http::ErrorResponse(tags.error());
    u.set_tags = *tags;
    if (body->contains("remove_tags")) {
      const Json& r = (*body)["remove_tags"];
      bool ok = r.is_array() && std::all_of(r.begin(), r.end(), [](const Json& x) { return x.is_string(); });
      if (!ok)
        return http::ErrorResponse(InvalidArgument("request body: remove_tags must be a list of tag keys"));
      u.remove_tags = r.get<std::vector<std::string>>();
    }
    return Render<registry::ModelGroup>(p.registry->UpdateGroup(group, u, req.principal_id),
                                        [](const auto& g) { return ToJson(g); });
  });
  add("GET", "/api/v1/models/{group}/history", "model:describe", [&p](Request& req) {
    return Render<std::vector<registry::HistoryEntry>>(p.registry->History(req.path_params["group"], 0),
                                                       [](const auto& v) {
                                                         Json a = Json::array();
                                                         for (const auto& e : v) a.push_back(ToJson(e));
                                                         return a;
                                                       });
  });

  // Import of a model trained elsewhere.
  add(
      "POST", "/api/v1/models/{group}/versions", "model:register",
      [&p](Request& req) {
        const std::string group = req.path_params["group"];
        auto r = ImportRequestOf(req, group);
        if (!r) return http::ErrorResponse(r.error());
        // The owner: the existing group's project, else the one given, else the group's name.
        if (auto g = p.registry->GetGroup(group)) {
          if (!r->project.empty() && r->project != g->project) {
            return http::ErrorResponse(InvalidArgument("model group " + group + " belongs to project " +
                                                       g->project + ", not " + r->project));
          }
          r->project = g->project;
        } else if (g.error().code() != Code::kNotFound) {
          return http::ErrorResponse(g.error());
        } else if (r->project.empty()) {
          r->project = group;
        }
        if (auto s = RequireProjectMember(p, r->project, group, req.principal_id); !s) {
          if (s.error().code() == Code::kNotFound) {
            return http::ErrorResponse(InvalidArgument(s.error().message() + ": model group " + group +
                                                       " is new; say which project owns it (--project)"));
          }
          return http::ErrorResponse(s.error());
        }
        auto v = registry::Import(*p.registry, *p.db, *r,
                                  [&p](std::string_view bytes) { return p.blobs->Put(bytes); });
        if (v) p.events->Notify();
        return Render<registry::ModelVersion>(
            v, [](const auto& x) { return ToJson(x); }, 201);
      },
      kImportBodyLimit);

  // One version, by number or alias.
  add("GET", "/api/v1/models/{group}/versions/{version}", "model:describe", [&p](Request& req) {
    const std::string group = req.path_params["group"];
    auto n = p.registry->Resolve(group, req.path_params["version"]);
    if (!n) return http::ErrorResponse(n.error());
    return Render<registry::ModelVersion>(p.registry->GetVersion(group, *n),
                                          [](const auto& x) { return ToJson(x); });
  });
  add("GET", "/api/v1/models/{group}/versions/{version}/history", "model:describe", [&p](Request& req) {
    const std::string group = req.path_params["group"];
    auto n = p.registry->Resolve(group, req.path_params["version"]);
    if (!n) return http::ErrorResponse(n.error());
    return Render<std::vector<registry::HistoryEntry>>(p.registry->History(group, *n), [](const auto& v) {
      Json a = Json::array();
      for (const auto& e : v) a.push_back(ToJson(e));
      return a;
    });
  });
  add("GET", "/api/v1/models/{group}/versions/{version}/artifact", "model:download", [&p](Request& req) {
    const std::string group = req.path_params["group"];
    auto n = p.registry->Resolve(group, req.path_params["version"]);
    if (!n) return http::ErrorResponse(n.error());
    auto v = p.registry->GetVersion(group, *n);
    if (!v) return http::ErrorResponse(v.error());
    auto bytes = p.blobs->Get(v->blob_id);
    if (!bytes) return http::ErrorResponse(bytes.error());
    const bool ubj = v->artifact_format == "ubj";
    Response r;
    r.content_type = ubj ? "application/ubjson" : "application/json";
    r.body = std::move(*bytes);
    r.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + v->group + "-v" +
                                                      std::to_string(v->version) + (ubj ? ".ubj" : ".json") +
                                                      "\"");
    r.headers.emplace_back("X-Takt-Model-Version", std::to_string(v->version));
    return r;
  });
  for (const char* verb : {"approve", "reject"}) {
    bool approve = std::string_view(verb) == "approve";
    add("POST", std::string("/api/v1/models/{group}/versions/{version}/") + verb,
        approve ? "model:approve" : "model:reject", [&p, approve](Request& req) {
          auto body = JsonBody(req);
          if (!body) return http::ErrorResponse(body.error());
          auto comment = OptString(*body, "comment");
          if (!comment) return http::ErrorResponse(comment.error());
          const std::string group = req.path_params["group"];
          auto n = p.registry->Resolve(group, req.path_params["version"]);
          if (!n) return http::ErrorResponse(n.error());
          auto r = approve ? p.registry->Approve(group, *n, req.principal_id, *comment)
                           : p.registry->Reject(group, *n, req.principal_id, *comment);
          if (r) p.events->Notify();
          return Render<registry::ModelVersion>(r, [](const auto& x) { return ToJson(x); });
        });
  }
  // The model card: PUT a card object, DELETE to remove it.
  for (const char* method : {"PUT", "DELETE"}) {
    const bool remove = std::string_view(method) == "DELETE";
    add(method, "/api/v1/models/{group}/versions/{version}/card", "model:update", [&p, remove](Request& req) {
      const std::string group = req.path_params["group"];
      std::optional<registry::ModelCard> card;
      if (!remove) {
        if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
        auto c = registry::ParseCard(req.body);
        if (!c) return http::ErrorResponse(c.error());
        card = *c;
      }
      if (auto s = RequireGroupMember(p, group, req.principal_id); !s) return http::ErrorResponse(s.error());
      auto n = p.registry->Resolve(group, req.path_params["version"]);
      if (!n) return http::ErrorResponse(n.error());
      return Render<registry::ModelVersion>(p.registry->SetCard(group, *n, card, req.principal_id),
                                            [](const auto& x) { return ToJson(x); });
    });
  }

  // Aliases.
  add("PUT", "/api/v1/models/{group}/aliases/{alias}", "model:alias", [&p](Request& req) {
    auto body = JsonBody(req);
    if (!body) return http::ErrorResponse(body.error());
    const std::string group = req.path_params["group"];
    if (!body->contains("version") ||
        !((*body)["version"].is_number_integer() || (*body)["version"].is_string())) {
      return http::ErrorResponse(
          InvalidArgument("request body: version (a version number, or an alias to copy) is required"));
    }
    const Json& ref = (*body)["version"];
    auto n = p.registry->Resolve(
        group, ref.is_string() ? ref.get<std::string>() : std::to_string(ref.get<int64_t>()));
    if (!n) return http::ErrorResponse(n.error());
    auto moved = p.registry->SetAlias(group, req.path_params["alias"], *n, req.principal_id);
    if (moved) p.events->Notify();
    return Render<registry::AliasMove>(moved, [](const auto& m) {
      return Json{{"group", m.group},
                  {"alias", m.alias},
                  {"version", m.version},
                  {"previous_version", m.previous_version ? Json(m.previous_version) : Json(nullptr)}};
    });
  });
  add("DELETE", "/api/v1/models/{group}/aliases/{alias}", "model:alias", [&p](Request& req) {
    auto moved =
        p.registry->DeleteAlias(req.path_params["group"], req.path_params["alias"], req.principal_id);
    if (moved) p.events->Notify();
    return Render<registry::AliasMove>(moved, [](const auto& m) {
      return Json{{"group", m.group},
                  {"alias", m.alias},
                  {"version", nullptr},
                  {"previous_version", m.previous_version}};
    });
  });

  // Search across groups.
  add("GET", "/api/v1/model-versions", "model:list", [&p](Request& req) {
    registry::VersionQuery q;
    q.group = req.Query("group").value_or("");
    q.project = req.Query("project").value_or("");
    q.status = req.Query("status").value_or("");
    q.alias = req.Query("alias").value_or("");
    q.sort = req.Query("sort").value_or("");
    std::tie(q.tag_key, q.tag_value) = SplitTag(req.Query("tag").value_or(""));
    if (auto m = req.Query("metric")) {
      // Several filters separated by commas: auc>=0.9,recall>=0.5
      std::string rest = *m;
      while (!rest.empty()) {
        size_t comma = rest.find(',');
        auto f = registry::ParseMetricFilter(rest.substr(0, comma));
        if (!f) return http::ErrorResponse(f.error());
        q.metrics.push_back(*f);
        rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
      }
    }
    if (auto l = req.Query("limit")) {
      auto n = ParseInt(*l, "limit");
      if (!n) return http::ErrorResponse(n.error());
      q.limit = *n;
    }
    return Render<std::vector<registry::ModelVersion>>(p.registry->Search(q), VersionsJson);
  });
}

}  // namespace takt::api
