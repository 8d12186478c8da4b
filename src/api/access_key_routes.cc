// Access keys, for AWS SDKs that sign their requests (api/sigv4_auth.h):
//   POST   /api/v1/access-keys                 access-key:create  {"principal", "description"}
//   GET    /api/v1/access-keys[?principal=P]   access-key:list
//   DELETE /api/v1/access-keys/{id}            access-key:delete
//   POST   /api/v1/access-keys/{id}/deactivate access-key:update  (and /activate)
// Every persona holds these actions; a principal manages its own keys only,
// an admin anyone's. The secret is in the creation reply only: the after hook
// audits the creation without the reply body, and no route lists a secret.
#include <algorithm>

#include "api/internal.h"
#include "crypto/crypto.h"

namespace takt::api {
namespace {

using http::Request;
using http::Response;
using namespace internal;  // NOLINT

Json ToJson(const iam::AccessKey& k) {
  return {{"id", k.id},
          {"principal", k.principal},
          {"description", k.description},
          {"status", k.status},
          {"created_at", k.created_at},
          {"last_used_at", k.last_used_at.empty() ? Json(nullptr) : Json(k.last_used_at)}};
}

bool IsAdmin(const iam::Principal& p) {
  return std::find(p.personas.begin(), p.personas.end(), "admin") != p.personas.end();
}

// The caller may manage `owner`'s keys: it is `owner`, or an admin.
Status OwnOrAdmin(const iam::Principal& caller, const std::string& owner, std::string_view what) {
  if (caller.name == owner || IsAdmin(caller)) return Ok();
  return PermissionDenied(caller.name + " may not " + std::string(what) + " access keys of " + owner +
                          ": only the principal itself or an admin may");
}

Response SetStatus(Platform& p, Request& req, std::string_view status) {
  auto caller = p.iam->Get(req.principal_id);
  if (!caller) return http::ErrorResponse(caller.error());
  auto key = p.iam->GetAccessKey(req.path_params["id"]);
  if (!key) return http::ErrorResponse(key.error());
  if (auto s = OwnOrAdmin(*caller, key->principal, "change"); !s) return http::ErrorResponse(s.error());
  if (auto s = p.iam->SetAccessKeyStatus(key->id, status); !s) return http::ErrorResponse(s.error());
  return Render<iam::AccessKey>(p.iam->GetAccessKey(key->id), [](const auto& k) { return ToJson(k); });
}

}  // namespace

void AddAccessKeyRoutes(Platform& p, const AddRoute& add) {
  add("POST", "/api/v1/access-keys", "access-key:create", [&p](Request& req) {
    if (auto s = RequireJson(req); !s) return http::ErrorResponse(s.error());
    auto body = ParseJson(req.body.empty() ? std::string("{}") : req.body, "request body");
    if (!body) return http::ErrorResponse(body.error());
    if (!body->is_object())
      return http::ErrorResponse(InvalidArgument("request body: expected a JSON object"));
    auto caller = p.iam->Get(req.principal_id);
    if (!caller) return http::ErrorResponse(caller.error());
    std::string principal = caller->name, description;
    try {
      principal = body->value("principal", principal);
      description = body->value("description", "");
    } catch (const std::exception&) {
      return http::ErrorResponse(InvalidArgument("request body: principal and description must be strings"));
    }
    auto owner = p.iam->Get(principal);
    if (!owner) return http::ErrorResponse(owner.error());
    if (auto s = OwnOrAdmin(*caller, owner->name, "create"); !s) return http::ErrorResponse(s.error());
    auto created = p.iam->CreateAccessKey(owner->name, description);
    if (!created) return http::ErrorResponse(created.error());
    Json reply = {{"access_key", ToJson(created->first)}, {"secret_access_key", created->second}};
    crypto::SecureErase(created->second);
    Response r = JsonOk(reply, 201);
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
  });
  add("GET", "/api/v1/access-keys", "access-key:list", [&p](Request& req) {
    auto caller = p.iam->Get(req.principal_id);
    if (!caller) return http::ErrorResponse(caller.error());
    std::string principal = req.Query("principal").value_or(IsAdmin(*caller) ? "" : caller->name);
    if (!principal.empty()) {
      if (auto s = OwnOrAdmin(*caller, principal, "list"); !s) return http::ErrorResponse(s.error());
    }
    return Render<std::vector<iam::AccessKey>>(p.iam->ListAccessKeys(principal), [](const auto& v) {
      Json a = Json::array();
      for (const auto& k : v) a.push_back(ToJson(k));
      return a;
    });
  });
  add("DELETE", "/api/v1/access-keys/{id}", "access-key:delete", [&p](Request& req) {
    auto caller = p.iam->Get(req.principal_id);
    if (!caller) return http::ErrorResponse(caller.error());
    auto key = p.iam->GetAccessKey(req.path_params["id"]);
    if (!key) return http::ErrorResponse(key.error());
    if (auto s = OwnOrAdmin(*caller, key->principal, "delete"); !s) return http::ErrorResponse(s.error());
    if (auto s = p.iam->DeleteAccessKey(key->id); !s) return http::ErrorResponse(s.error());
    return JsonOk({{"deleted", key->id}});
  });
  add("POST", "/api/v1/access-keys/{id}/deactivate", "access-key:update",
      [&p](Request& req) { return SetStatus(p, req, "inactive"); });
  add("POST", "/api/v1/access-keys/{id}/activate", "access-key:update",
      [&p](Request& req) { return SetStatus(p, req, "active"); });
}

}  // namespace takt::api
