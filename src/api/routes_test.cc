#include "api/routes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>
#include "core/temp_dir.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/json.h"
#include "http/client.h"
#include "http/server.h"

namespace takt::api {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using ::takt::TempDir;

Json BodyJson(const http::ClientResponse& r) {
  auto j = ParseJson(r.body, "response body");
  return j ? *j : Json();
}

std::string ErrorCode(const http::ClientResponse& r) {
  Json j = BodyJson(r);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_object()) return "";
  return j["error"].value("code", "");
}

std::string ErrorMessage(const http::ClientResponse& r) {
  Json j = BodyJson(r);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_object()) return "";
  return j["error"].value("message", "");
}

// Health, liveness and server metadata (OIP's GET /v2, SageMaker's GET /ping): no data.
const std::set<std::string> kHealthRoutes = {"/healthz", "/v2/health/live", "/v2/health/ready", "/v2",
                                             "/ping"};

class RoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    Config config;
    config.data_dir = (dir_.path() / "data").string();
    auto init = Initialize(config, "admin");
    ASSERT_TRUE(init.has_value()) << init.error().ToString();
    admin_token_ = init->admin_token;
    auto platform = Platform::Open(config);
    ASSERT_TRUE(platform.has_value()) << platform.error().ToString();
    platform_ = std::move(*platform);
    router_ = BuildRouter(*platform_);
  }

  void StartServer() {
    server_ = std::make_unique<http::Server>(
        http::ServerOptions{.address = "127.0.0.1", .port = 0, .threads = 2}, router_);
    InstallHooks(*server_, *platform_);
    auto s = server_->Start();
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
  }

  // One request with `token` as bearer token ("" sends none).
  http::ClientResponse Send(const std::string& token, std::string_view method, std::string_view target,
                            std::string_view body = {}, std::string_view content_type = {}) {
    auto client = http::Client::Create("http://127.0.0.1:" + std::to_string(server_->port()));
    EXPECT_TRUE(client.has_value());
    if (!token.empty()) client->SetHeader("Authorization", "Bearer " + token);
    auto r = client->Send(method, target, body, content_type);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    return r ? *r : http::ClientResponse{};
  }

  std::string CreatePrincipal(const std::string& name, const std::vector<std::string>& personas,
                              const std::vector<std::string>& denies = {}) {
    auto created = platform_->iam->CreatePrincipal(name, "user", personas, denies);
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    return created ? created->second : std::string();
  }

  std::vector<iam::AuditRecord> Audit() {
    auto records = platform_->iam->ListAudit({.limit = 1000});
    EXPECT_TRUE(records.has_value()) << records.error().ToString();
    return records ? *records : std::vector<iam::AuditRecord>{};
  }

  // The newest audit record, after checking that exactly `added` were written since `before`.
  iam::AuditRecord NewestAudit(size_t before, size_t added = 1) {
    auto records = Audit();
    EXPECT_EQ(records.size(), before + added);
    return records.empty() ? iam::AuditRecord{} : records.front();
  }

  size_t PrincipalCount() { return platform_->iam->List()->size(); }

  TempDir dir_;
  std::string admin_token_;
  std::unique_ptr<Platform> platform_;  // outlives the server, whose hooks use it
  std::shared_ptr<http::Router> router_;
  std::unique_ptr<http::Server> server_;
};

TEST_F(RoutesTest, EveryRouteNamesAKnownActionOrIsAHealthCheck) {
  const auto& known = iam::KnownActions();
  ASSERT_FALSE(router_->routes().empty());
  std::set<std::string> public_patterns;
  for (const auto& route : router_->routes()) {
    SCOPED_TRACE(route.method + " " + route.pattern);
    EXPECT_TRUE(static_cast<bool>(route.handler) || static_cast<bool>(route.async_handler));
    if (route.is_public) {
      EXPECT_TRUE(kHealthRoutes.contains(route.pattern)) << "only health checks may be public";
      EXPECT_EQ(route.method, "GET");
      EXPECT_TRUE(route.action.empty());
      public_patterns.insert(route.pattern);
    } else {
      EXPECT_FALSE(route.action.empty());
      EXPECT_NE(std::find(known.begin(), known.end(), route.action), known.end())
          << "action " << route.action << " is not in iam::KnownActions()";
    }
  }
  EXPECT_EQ(public_patterns, kHealthRoutes);
  auto valid = router_->Validate();
  EXPECT_TRUE(valid.has_value()) << valid.error().ToString();
}

TEST_F(RoutesTest, HealthChecksNeedNoToken) {
  StartServer();
  size_t before = Audit().size();
  for (const auto& path : kHealthRoutes) {
    auto r = Send("", "GET", path);
    EXPECT_EQ(r.status, 200) << path;
  }
  EXPECT_EQ(Audit().size(), before);
}

TEST_F(RoutesTest, MissingOrBadTokenIs401AndAudited) {
  StartServer();
  size_t before = Audit().size();
  auto none = Send("", "GET", "/api/v1/datasets");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.content_type, "application/json");
  EXPECT_EQ(ErrorCode(none), "UNAUTHENTICATED");
  EXPECT_THAT(ErrorMessage(none), HasSubstr("no token"));
  EXPECT_THAT(none.headers["www-authenticate"], HasSubstr("Bearer"));
  iam::AuditRecord a = NewestAudit(before);
  EXPECT_EQ(a.principal, "anonymous");
  EXPECT_EQ(a.action, "dataset:list");
  EXPECT_EQ(a.resource, "datasets");
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.status, 401);
  EXPECT_THAT(a.detail, HasSubstr("UNAUTHENTICATED"));

  auto bad = Send("takt_not-a-real-token", "GET", "/api/v1/datasets");
  EXPECT_EQ(bad.status, 401);
  EXPECT_EQ(ErrorCode(bad), "UNAUTHENTICATED");
  EXPECT_THAT(ErrorMessage(bad), HasSubstr("not valid"));
  EXPECT_EQ(NewestAudit(before, 2).status, 401);

  // Not a bearer credential at all.
  auto client = http::Client::Create("http://127.0.0.1:" + std::to_string(server_->port()));
  client->SetHeader("Authorization", "Basic YWRtaW46YWRtaW4=");
  auto basic = client->Send("GET", "/api/v1/datasets");
  ASSERT_TRUE(basic.has_value());
  EXPECT_EQ(basic->status, 401);
}

TEST_F(RoutesTest, PersonaWithoutTheActionIs403AndAdminIs200) {
  std::string dora = CreatePrincipal("dora", {"data-scientist"});
  StartServer();
  size_t before = Audit().size();
  auto denied = Send(dora, "GET", "/api/v1/audit");
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(ErrorCode(denied), "PERMISSION_DENIED");
  EXPECT_THAT(ErrorMessage(denied), HasSubstr("dora"));
  EXPECT_THAT(ErrorMessage(denied), HasSubstr("audit:list"));
  iam::AuditRecord a = NewestAudit(before);
  EXPECT_EQ(a.principal, "dora");
  EXPECT_EQ(a.action, "audit:list");
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.status, 403);

  // What the persona does allow goes through.
  EXPECT_EQ(Send(dora, "GET", "/api/v1/datasets").status, 200);

  auto admin = Send(admin_token_, "GET", "/api/v1/audit");
  EXPECT_EQ(admin.status, 200);
  Json records = BodyJson(admin);
  ASSERT_TRUE(records.is_array());
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records[0]["principal"], "dora");
  EXPECT_EQ(records[0]["status"], 403);
}

TEST_F(RoutesTest, ExplicitDenyWinsOverTheAdminPersona) {
  std::string eve = CreatePrincipal("eve", {"admin"}, {"dataset:list"});
  StartServer();
  size_t before = Audit().size();
  auto r = Send(eve, "GET", "/api/v1/datasets");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(ErrorCode(r), "PERMISSION_DENIED");
  EXPECT_THAT(ErrorMessage(r), HasSubstr("explicit deny dataset:list"));
  iam::AuditRecord a = NewestAudit(before);
  EXPECT_EQ(a.principal, "eve");
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.status, 403);

  // Everything else the admin persona allows still works.
  EXPECT_EQ(Send(eve, "GET", "/api/v1/models").status, 200);
  EXPECT_EQ(Send(eve, "GET", "/api/v1/whoami").status, 200);
}

TEST_F(RoutesTest, RefusalsMutationsAndDataReadsAreAuditedPlainReadsAreNot) {
  std::string dora = CreatePrincipal("dora", {"data-scientist"});
  StartServer();
  size_t n = Audit().size();

  // A mutation that succeeds.
  auto created = Send(admin_token_, "POST", "/api/v1/principals", R"({"name":"ada","personas":["approver"]})",
                      "application/json");
  EXPECT_EQ(created.status, 201) << created.body;
  iam::AuditRecord a = NewestAudit(n++);
  EXPECT_EQ(a.principal, "admin");
  EXPECT_EQ(a.action, "principal:create");
  EXPECT_EQ(a.resource, "principals");
  EXPECT_TRUE(a.allowed);
  EXPECT_EQ(a.status, 201);

  // A mutation that the handler refuses is still a mutation.
  auto dup = Send(admin_token_, "POST", "/api/v1/principals", R"({"name":"ada","personas":["approver"]})",
                  "application/json");
  EXPECT_EQ(dup.status, 409);
  a = NewestAudit(n++);
  EXPECT_EQ(a.status, 409);
  EXPECT_TRUE(a.allowed);
  EXPECT_THAT(a.detail, HasSubstr("ALREADY_EXISTS"));

  // A dataset upload.
  auto upload = Send(admin_token_, "POST", "/api/v1/datasets/weld-telemetry/versions?source=t.csv",
                     "robot,temp\nr1,40.5\nr2,41.0\n", "text/csv");
  EXPECT_EQ(upload.status, 201) << upload.body;
  a = NewestAudit(n++);
  EXPECT_EQ(a.action, "dataset:create");
  EXPECT_EQ(a.resource, "datasets/weld-telemetry/versions");
  EXPECT_EQ(a.status, 201);

  // Plain metadata reads are not audited ...
  EXPECT_EQ(Send(admin_token_, "GET", "/api/v1/datasets").status, 200);
  EXPECT_EQ(Send(dora, "GET", "/api/v1/datasets/weld-telemetry").status, 200);
  EXPECT_EQ(Audit().size(), n);

  // ... data reads are, by the governed read path itself: refused without a grant ...
  auto refused = Send(dora, "GET", "/api/v1/datasets/weld-telemetry/rows?limit=1");
  EXPECT_EQ(refused.status, 403) << refused.body;
  a = NewestAudit(n++);
  EXPECT_EQ(a.principal, "dora");
  EXPECT_EQ(a.action, "dataset:read");
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(Audit().size(), n);  // once, not again by the after hook
  auto grant = Send(admin_token_, "POST", "/api/v1/grants",
                    R"({"subject":"principal:dora","dataset":"weld-telemetry","masks":{"robot":"hash"}})",
                    "application/json");
  EXPECT_EQ(grant.status, 201) << grant.body;
  a = NewestAudit(n++);
  EXPECT_EQ(a.action, "grant:create");
  // ... and allowed with one, recording columns, masks and rows.
  auto rows = Send(dora, "GET", "/api/v1/datasets/weld-telemetry/rows?limit=1");
  EXPECT_EQ(rows.status, 200) << rows.body;
  ASSERT_EQ(BodyJson(rows)["rows"].size(), 1u);
  EXPECT_EQ(rows.body.find("r1"), std::string::npos) << rows.body;  // the masked value
  a = NewestAudit(n++);
  EXPECT_EQ(a.principal, "dora");
  EXPECT_EQ(a.action, "dataset:read");
  EXPECT_EQ(a.resource, "datasets/weld-telemetry/versions/1");
  EXPECT_TRUE(a.allowed);
  Json access = Json::parse(a.access_json);
  EXPECT_EQ(access["rows"], 1);
  EXPECT_EQ(access["masks"]["robot"], "hash");
  EXPECT_EQ(Audit().size(), n);

  // Refusals, of a read and of a mutation.
  EXPECT_EQ(Send("", "GET", "/api/v1/models").status, 401);
  a = NewestAudit(n++);
  EXPECT_EQ(a.action, "model:list");
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(
      Send(dora, "POST", "/api/v1/principals", R"({"name":"x","personas":["admin"]})", "application/json")
          .status,
      403);
  a = NewestAudit(n++);
  EXPECT_EQ(a.principal, "dora");
  EXPECT_EQ(a.action, "principal:create");
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.status, 403);
  EXPECT_FALSE(platform_->iam->Get("x").has_value());
}

TEST_F(RoutesTest, MalformedJsonIs400AndCreatesNoPrincipal) {
  StartServer();
  size_t principals = PrincipalCount();
  size_t before = Audit().size();
  auto r = Send(admin_token_, "POST", "/api/v1/principals", R"({"name": "mallory", "personas": ["admin"])",
                "application/json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(ErrorCode(r), "INVALID_ARGUMENT");
  EXPECT_THAT(ErrorMessage(r), HasSubstr("invalid JSON"));
  EXPECT_EQ(PrincipalCount(), principals);
  EXPECT_EQ(platform_->iam->Get("mallory").error().code(), Code::kNotFound);
  iam::AuditRecord a = NewestAudit(before);
  EXPECT_EQ(a.status, 400);
  EXPECT_EQ(a.action, "principal:create");

  auto not_object = Send(admin_token_, "POST", "/api/v1/principals", "[1, 2]", "application/json");
  EXPECT_EQ(not_object.status, 400);
  auto no_name =
      Send(admin_token_, "POST", "/api/v1/principals", R"({"personas":["admin"]})", "application/json");
  EXPECT_EQ(no_name.status, 400);
  EXPECT_THAT(ErrorMessage(no_name), HasSubstr("'name'"));
  auto bad_personas = Send(admin_token_, "POST", "/api/v1/principals", R"({"name":"m","personas":"admin"})",
                           "application/json");
  EXPECT_EQ(bad_personas.status, 400);
  auto wrong_type =
      Send(admin_token_, "POST", "/api/v1/principals", R"({"name":"m","personas":["admin"]})", "text/plain");
  EXPECT_EQ(wrong_type.status, 415);
  EXPECT_EQ(PrincipalCount(), principals);
}

// Bug: a JSON body whose "kind" is not a string makes nlohmann's value()
// throw inside the handler; the server turns that into 500 "internal error"
// instead of a 400 naming the field. See the report.
TEST_F(RoutesTest, NonStringKindIs400NotInternalError) {
  StartServer();
  size_t principals = PrincipalCount();
  auto r = Send(admin_token_, "POST", "/api/v1/principals",
                R"({"name":"mallory","personas":["admin"],"kind":5})", "application/json");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(ErrorCode(r), "INVALID_ARGUMENT");
  EXPECT_EQ(PrincipalCount(), principals);
}

TEST_F(RoutesTest, DatasetUploadWithWrongContentTypeIs415AndStoresNothing) {
  StartServer();
  size_t before = Audit().size();
  auto r = Send(admin_token_, "POST", "/api/v1/datasets/weld-telemetry/versions", R"({"robot":"r1"})",
                "application/json");
  EXPECT_EQ(r.status, 415);
  EXPECT_EQ(ErrorCode(r), "UNSUPPORTED_MEDIA_TYPE");
  EXPECT_THAT(ErrorMessage(r), HasSubstr("text/csv"));
  EXPECT_TRUE(platform_->catalog->List()->empty());
  EXPECT_EQ(platform_->catalog->Get("weld-telemetry").error().code(), Code::kNotFound);
  EXPECT_EQ(NewestAudit(before).status, 415);

  // A bad CSV with the right type is a 400, and stores nothing either.
  auto ragged =
      Send(admin_token_, "POST", "/api/v1/datasets/weld-telemetry/versions", "a,b\n1\n", "text/csv");
  EXPECT_EQ(ragged.status, 400);
  EXPECT_THAT(ErrorMessage(ragged), HasSubstr("line 2"));
  EXPECT_TRUE(platform_->catalog->List()->empty());
}

TEST_F(RoutesTest, BodyOverTheRouteLimitIs413) {
  StartServer();
  size_t principals = PrincipalCount();
  size_t before = Audit().size();
  std::string big =
      R"({"name":"huge","personas":["admin"],"pad":")" + std::string((1 << 20) + 16, 'x') + "\"}";
  auto r = Send(admin_token_, "POST", "/api/v1/principals", big, "application/json");
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(ErrorCode(r), "PAYLOAD_TOO_LARGE");
  EXPECT_THAT(ErrorMessage(r), HasSubstr("1048576 bytes"));
  EXPECT_EQ(PrincipalCount(), principals);
  iam::AuditRecord a = NewestAudit(before);
  EXPECT_EQ(a.status, 413);
  EXPECT_EQ(a.principal, "admin");
  EXPECT_EQ(a.action, "principal:create");
}

TEST_F(RoutesTest, UnknownModelGroupOrVersionIs404) {
  ASSERT_TRUE(platform_->db->Transaction([&](store::Database& tx) -> Status {
    registry::ModelVersion v;
    v.group = "weld-pm";
    v.blob_id = std::string(64, 'a');
    v.feature_names = {"a"};
    v.run_id = "run-1";
    v.created_by = "sam";
    TAKT_RETURN_IF_ERROR(platform_->registry->Register(tx, v, "weld-pm"));
    return Ok();
  }));
  StartServer();

  auto no_group = Send(admin_token_, "GET", "/api/v1/models/nope/versions/7");
  EXPECT_EQ(no_group.status, 404);
  EXPECT_EQ(ErrorCode(no_group), "NOT_FOUND");
  EXPECT_EQ(ErrorMessage(no_group), "model group nope does not exist");

  auto found = Send(admin_token_, "GET", "/api/v1/models/weld-pm/versions/1");
  EXPECT_EQ(found.status, 200);
  EXPECT_EQ(BodyJson(found)["status"], registry::kPending);

  size_t before = Audit().size();
  auto approve = Send(admin_token_, "POST", "/api/v1/models/weld-pm/versions/7/approve",
                      R"({"comment":"ok"})", "application/json");
  EXPECT_EQ(approve.status, 404);
  EXPECT_EQ(ErrorCode(approve), "NOT_FOUND");
  EXPECT_EQ(ErrorMessage(approve), "model group weld-pm has no version 7");
  iam::AuditRecord a = NewestAudit(before);
  EXPECT_EQ(a.action, "model:approve");
  EXPECT_EQ(a.status, 404);
  EXPECT_EQ(platform_->registry->GetVersion("weld-pm", 1)->status, registry::kPending);

  auto not_a_number = Send(admin_token_, "GET", "/api/v1/models/weld-pm/versions/seven");
  EXPECT_EQ(not_a_number.status, 400);
  EXPECT_THAT(ErrorMessage(not_a_number), HasSubstr("'seven'"));
}

}  // namespace
}  // namespace takt::api
