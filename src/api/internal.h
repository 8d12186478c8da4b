// File: api/internal.h
//
// Shared by the route files of api/ only: rendering helpers and the way
// routes are added.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "api/platform.h"
#include "core/json.h"
#include "http/message.h"
#include "http/router.h"

namespace takt::api {

// A response header set by handlers whose service wrote the audit record
// itself (the governed read path): the after hook then writes none.
inline constexpr const char* kAuditedHeader = "X-Takt-Audited";

// Adds a route: method, pattern, action, handler, body limit, streamed body.
class AddRoute {
 public:
  using Fn = std::function<void(std::string, std::string, std::string, http::Handler, size_t, bool)>;
  explicit AddRoute(Fn fn) : fn_(std::move(fn)) {}
  void operator()(std::string method, std::string pattern, std::string action, http::Handler handler,
                  size_t max_body = size_t{1} << 20, bool stream_body = false) const {
    fn_(std::move(method), std::move(pattern), std::move(action), std::move(handler), max_body, stream_body);
  }

 private:
  Fn fn_;
};

// The data hub's routes (datasets, grants, groups, projects, schedules, lineage).
void AddDataRoutes(Platform& p, const AddRoute& add);
// Saved pipelines, their schedules, and starts by name (pipeline_routes.cc).
void AddPipelineRoutes(Platform& p, const AddRoute& add);
// Events, rules, deliveries and replay (event_routes.cc).
void AddEventRoutes(Platform& p, const AddRoute& add);
// The model registry: groups, versions, imports, aliases, search (model_routes.cc).
void AddModelRoutes(Platform& p, const AddRoute& add);
// Release configs, status, approvals, rollback, stage history (release_routes.cc).
void AddReleaseRoutes(Platform& p, const AddRoute& add);
// Access keys for SigV4-signing AWS SDKs (access_key_routes.cc).
void AddAccessKeyRoutes(Platform& p, const AddRoute& add);

// Inference: OIP v2 infer, SageMaker invocations (async, inference_routes.cc).
void AddInferenceRoutes(Platform& p, http::Router& router);

namespace internal {

// Who may use an endpoint, by its stage (on top of the route's action):
// dev: the owning project's members and admins; int: service identities
// invoke, people only read; prod: service identities and the prod approvers
// of the group's release pipeline (admins may read). PermissionDenied says why.
Status StageAccess(Platform& p, const serving::Endpoint& e, std::string_view action,
                   const std::string& principal);

http::Response JsonOk(const Json& j, int status = 200);

template <typename T>
http::Response Render(const Result<T>& r, const std::function<Json(const T&)>& fn, int status = 200) {
  if (!r) return http::ErrorResponse(r.error());
  return JsonOk(fn(*r), status);
}

Result<int> ParseInt(std::string_view s, std::string_view what);
Status RequireJson(const http::Request& req);
Json SchemaJson(const frame::Schema& schema);
Json ToJson(const catalog::DatasetVersion& v);
Json ToJson(const catalog::Dataset& d);
Json ToJson(const pipeline::Run& r);
Json ToJson(const registry::ModelVersion& v);  // model_routes.cc
Json ToJson(const registry::ModelGroup& g);
Json ToJson(const registry::HistoryEntry& e);
Json TableToJson(const frame::Table& t);
// As the client asked with ?format=csv|json or Accept.
http::Response TableResponse(const http::Request& req, const frame::Table& t);

}  // namespace internal
}  // namespace takt::api
