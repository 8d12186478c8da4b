// The registry's routes through the real server: imports of models made by
// the real XGBoost (JSON and UBJSON), refusals that store nothing, project
// membership, aliases and their action, search filters, downloads.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "api/routes.h"
#include "core/json.h"
#include "core/temp_dir.h"
#include "crypto/crypto.h"
#include "http/client.h"
#include "http/server.h"
#include "registry/testing_xgboost.h"

namespace takt::api {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

Json BodyJson(const http::ClientResponse& r) { return Json::parse(r.body, nullptr, false); }

std::string ErrorMessage(const http::ClientResponse& r) {
  Json j = BodyJson(r);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_object()) return "";
  return j["error"].value("message", "");
}

size_t BlobCount(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

class ModelRoutesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    models_ = new TempDir("takt-models");
    error_ = new std::string(registry::testing::TrainNotebookModels(models_->path().string()));
  }
  static void TearDownTestSuite() {
    delete models_;
    delete error_;
  }

  void SetUp() override {
    ASSERT_EQ(*error_, "");
    Config config;
    config.data_dir = (dir_.path() / "data").string();
    auto init = Initialize(config, "admin");
    ASSERT_TRUE(init.has_value()) << init.error().ToString();
    admin_ = init->admin_token;
    auto platform = Platform::Open(config);
    ASSERT_TRUE(platform.has_value()) << platform.error().ToString();
    platform_ = std::move(*platform);
    server_ = std::make_unique<http::Server>(
        http::ServerOptions{.address = "127.0.0.1", .port = 0, .threads = 2}, BuildRouter(*platform_));
    InstallHooks(*server_, *platform_);
    ASSERT_TRUE(server_->Start().has_value());
    sam_ = Principal("sam", {"data-scientist"});
    eve_ = Principal("eve", {"ml-engineer"});
    ada_ = Principal("ada", {"approver"});
    pat_ = Principal("pat", {"data-scientist"});
    ASSERT_TRUE(platform_->iam->CreateProject("weld-pm", "welding-gun maintenance", {"sam", "eve"}, "admin")
                    .has_value());
  }

  std::string Principal(const std::string& name, const std::vector<std::string>& personas) {
    auto created = platform_->iam->CreatePrincipal(name, "user", personas, {});
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    return created ? created->second : std::string();
  }

  http::ClientResponse Send(const std::string& token, std::string_view method, const std::string& target,
                            const std::string& body = {}, std::string_view content_type = {}) {
    auto client = http::Client::Create("http://127.0.0.1:" + std::to_string(server_->port()));
    EXPECT_TRUE(client.has_value());
    client->SetHeader("Authorization", "Bearer " + token);
    auto r = client->Send(method, target, body, content_type);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    return r ? *r : http::ClientResponse{};
  }

  static std::string Model(const std::string& name) {
    return registry::testing::ReadBytes((models_->path() / name).string());
  }

  http::ClientResponse Import(const std::string& token, Json body, const std::string& group = "weld-pm") {
    return Send(token, "POST", "/api/v1/models/" + group + "/versions", body.dump(), "application/json");
  }

  static Json Body(const std::string& file) {
    return {{"framework", "xgboost"}, {"model_base64", crypto::Base64Encode(Model(file))}};
  }

  size_t Blobs() { return BlobCount(platform_->blobs->dir()); }

  static TempDir* models_;
  static std::string* error_;
  TempDir dir_;
  std::string admin_, sam_, eve_, ada_, pat_;
  std::unique_ptr<Platform> platform_;
  std::unique_ptr<http::Server> server_;
};
TempDir* ModelRoutesTest::models_ = nullptr;
std::string* ModelRoutesTest::error_ = nullptr;

TEST_F(ModelRoutesTest, ImportsJsonAndUbjsonFromRealXgboostAndDownloadsThemUnchanged) {
  Json body = Body("weld.json");
  body["metrics"] = {{"auc", 0.93}};
  body["card"] = {{"intended_use", "rank robots"}, {"limitations", "P1"}, {"training_data", "notebook"}};
  body["sample_csv"] = registry::testing::ReadBytes((models_->path() / "sample.csv").string());
  auto r = Import(sam_, body);
  ASSERT_EQ(r.status, 201) << r.body;
  Json v = BodyJson(r);
  EXPECT_EQ(v["version"], 1);
  EXPECT_EQ(v["source"], "import");
  EXPECT_EQ(v["created_by"], "sam");
  EXPECT_EQ(v["lineage"]["run_id"], "");
  EXPECT_EQ(v["feature_names"], Json({"force_kn", "current_ka", "temp_c"}));
  EXPECT_EQ(v["schema"][0], Json({{"name", "force_kn"}, {"type", "float"}}));
  EXPECT_EQ(v["sample_rows"].size(), 5u);
  EXPECT_EQ(v["card"]["training_data"], "notebook");

  auto ubj = Import(sam_, Body("weld.ubj"));
  ASSERT_EQ(ubj.status, 201) << ubj.body;
  EXPECT_EQ(BodyJson(ubj)["artifact_format"], "ubj");

  auto d1 = Send(sam_, "GET", "/api/v1/models/weld-pm/versions/1/artifact");
  ASSERT_EQ(d1.status, 200);
  EXPECT_EQ(d1.body, Model("weld.json"));
  EXPECT_EQ(d1.headers["content-disposition"], "attachment; filename=\"weld-pm-v1.json\"");
  auto d2 = Send(sam_, "GET", "/api/v1/models/weld-pm/versions/2/artifact");
  ASSERT_EQ(d2.status, 200);
  EXPECT_EQ(d2.body, Model("weld.ubj"));
  EXPECT_EQ(d2.content_type, "application/ubjson");
  EXPECT_EQ(d2.headers["content-disposition"], "attachment; filename=\"weld-pm-v2.ubj\"");

  // The importer may not approve their own import; another approver may.
  EXPECT_EQ(
      Send(admin_, "POST", "/api/v1/models/weld-pm/versions/1/approve", "{}", "application/json").status,
      200);
  auto group = BodyJson(Send(sam_, "GET", "/api/v1/models/weld-pm"));
  EXPECT_EQ(group["project"], "weld-pm");
  EXPECT_EQ(group["versions"].size(), 2u);
  auto history = BodyJson(Send(sam_, "GET", "/api/v1/models/weld-pm/versions/1/history"));
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0]["event"], "registered");
  EXPECT_EQ(history[0]["principal"], "sam");
  EXPECT_EQ(history[1]["event"], "approved");
  EXPECT_EQ(history[1]["principal"], "admin");
}

TEST_F(ModelRoutesTest, RefusedImportsAre400AndStoreNoBlob) {
  const size_t blobs = Blobs();
  struct Case {
    std::string name;
    Json body;
    std::string message;
  };
  Json sklearn = Body("weld.json");
  sklearn["framework"] = "sklearn";
  Json garbage = {{"framework", "xgboost"}, {"model_base64", crypto::Base64Encode("{\"learner\": {}}")}};
  Json count = Body("weld.json");
  count["features"] = {"a", "b"};
  Json dup = Body("weld.json");
  dup["schema"] = Json::parse(R"([{"name": "a"}, {"name": "a"}, {"name": "c"}])");
  Json type = Body("weld.json");
  type["schema"] =
      Json::parse(R"([{"name": "force_kn", "type": "decimal"}, {"name": "current_ka"}, {"name": "temp_c"}])");
  Json metrics = Body("weld.json");
  metrics["metrics"] = {{"auc", "high"}};
  Json sample = Body("weld.json");
  sample["sample_csv"] = "force_kn,voltage\n1,2\n";
  Json base64 = {{"framework", "xgboost"}, {"model_base64", "***"}};
  Json unknown = Body("weld.json");
  unknown["lineage"] = "run-1";
  for (const Case& c : std::vector<Case>{
           {"framework", sklearn, "framework 'sklearn' is not supported"},
           {"not a model", garbage, "model file"},
           {"feature count", count, "the schema has 2 features but the model file expects 3"},
           {"duplicate names", dup, "feature 'a' appears twice"},
           {"unknown type", type, "type 'decimal'"},
           {"metrics", metrics, "metrics: 'auc' is a string, not a number"},
           {"sample columns", sample, "voltage"},
           {"base64", base64, "model_base64"},
           {"unknown field", unknown, "unknown field 'lineage'"},
       }) {
    SCOPED_TRACE(c.name);
    auto r = Import(sam_, c.body);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_THAT(ErrorMessage(r), HasSubstr(c.message));
  }
  auto wrong_type =
      Send(sam_, "POST", "/api/v1/models/weld-pm/versions", Model("weld.json"), "application/octet-stream");
  EXPECT_EQ(wrong_type.status, 415);
  EXPECT_EQ(Blobs(), blobs);
  EXPECT_EQ(Send(sam_, "GET", "/api/v1/models/weld-pm").status, 404);  // no group either
}

TEST_F(ModelRoutesTest, OnlyProjectMembersRegisterIntoAndUpdateAGroup) {
  const size_t blobs = Blobs();
  auto outsider = Import(pat_, Body("weld.json"));
  EXPECT_EQ(outsider.status, 403) << outsider.body;
  EXPECT_THAT(ErrorMessage(outsider), HasSubstr("pat is not a member of project weld-pm"));
  EXPECT_EQ(Blobs(), blobs);
  auto no_project = Import(sam_, Body("weld.json"), "paint-pm");
  EXPECT_EQ(no_project.status, 400);
  EXPECT_THAT(ErrorMessage(no_project), HasSubstr("say which project owns it"));

  ASSERT_EQ(Import(sam_, Body("weld.json")).status, 201);
  Json other = Body("weld.json");
  other["project"] = "paint";
  auto mismatch = Import(sam_, other);
  EXPECT_EQ(mismatch.status, 400);
  EXPECT_THAT(ErrorMessage(mismatch), HasSubstr("belongs to project weld-pm, not paint"));

  const std::string patch = R"({"description": "failure within 24 h", "tags": {"line": "A"}})";
  EXPECT_EQ(Send(pat_, "PATCH", "/api/v1/models/weld-pm", patch, "application/json").status, 403);
  auto updated = Send(sam_, "PATCH", "/api/v1/models/weld-pm", patch, "application/json");
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(BodyJson(updated)["tags"]["line"], "A");
  EXPECT_EQ(Send(sam_, "PATCH", "/api/v1/models/weld-pm", R"({"owner": "x"})", "application/json").status,
            400);
  EXPECT_EQ(
      Send(admin_, "PATCH", "/api/v1/models/weld-pm", R"({"remove_tags": ["line"]})", "application/json")
          .status,
      200);

  auto created = Send(sam_, "POST", "/api/v1/models", R"({"name": "weld-pm-shadow", "project": "weld-pm"})",
                      "application/json");
  EXPECT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(Send(pat_, "POST", "/api/v1/models", R"({"name": "x", "project": "weld-pm"})", "application/json")
                .status,
            403);
}

TEST_F(ModelRoutesTest, AliasesNeedTheirOwnActionAndChampionNeedsApproval) {
  ASSERT_EQ(Import(sam_, Body("weld.json")).status, 201);
  ASSERT_EQ(Import(sam_, Body("weld.ubj")).status, 201);
  const std::string put = "/api/v1/models/weld-pm/aliases/";
  auto ds = Send(sam_, "PUT", put + "challenger", R"({"version": 2})", "application/json");
  EXPECT_EQ(ds.status, 403) << "a data scientist does not hold model:alias";
  auto pending = Send(eve_, "PUT", put + "champion", R"({"version": 1})", "application/json");
  EXPECT_EQ(pending.status, 412) << pending.body;
  EXPECT_THAT(ErrorMessage(pending), HasSubstr("only an Approved version may be champion"));
  EXPECT_EQ(Send(eve_, "PUT", put + "challenger", R"({"version": 2})", "application/json").status, 200);
  EXPECT_EQ(Send(eve_, "PUT", put + "Bad_Name", R"({"version": 2})", "application/json").status, 400);
  EXPECT_EQ(Send(eve_, "PUT", put + "shadow", R"({})", "application/json").status, 400);

  ASSERT_EQ(Send(ada_, "POST", "/api/v1/models/weld-pm/versions/1/approve", "{}", "application/json").status,
            200);
  auto champion = Send(ada_, "PUT", put + "champion", R"({"version": 1})", "application/json");
  ASSERT_EQ(champion.status, 200) << champion.body;
  EXPECT_TRUE(BodyJson(champion)["previous_version"].is_null());

  // Version routes take an alias where a number goes.
  auto v = Send(sam_, "GET", "/api/v1/models/weld-pm/versions/champion");
  ASSERT_EQ(v.status, 200);
  EXPECT_EQ(BodyJson(v)["version"], 1);
  auto art = Send(sam_, "GET", "/api/v1/models/weld-pm/versions/challenger/artifact");
  EXPECT_EQ(art.body, Model("weld.ubj"));
  auto unknown = Send(sam_, "GET", "/api/v1/models/weld-pm/versions/shadow");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_THAT(ErrorMessage(unknown), HasSubstr("neither a version number nor an alias"));
  auto group = BodyJson(Send(sam_, "GET", "/api/v1/models/weld-pm"));
  EXPECT_EQ(group["aliases"], Json({{"challenger", 2}, {"champion", 1}}));

  bool event = false;
  auto all = platform_->events->List(100);
  for (const auto& e : *all) event = event || e.type == "io.takt.model.alias.moved";
  EXPECT_TRUE(event);
  EXPECT_EQ(Send(sam_, "DELETE", put + "challenger").status, 403);
  EXPECT_EQ(Send(eve_, "DELETE", put + "challenger").status, 200);
  EXPECT_EQ(Send(eve_, "DELETE", put + "challenger").status, 404);
  // Moving aliases is a mutation: audited with its action.
  bool audited = false;
  auto audit = platform_->iam->ListAudit({.action_prefix = "model:alias"});
  for (const auto& a : *audit) {
    audited = audited || (a.principal == "sam" && a.status == 403);
  }
  EXPECT_TRUE(audited);
}

TEST_F(ModelRoutesTest, SearchFiltersByStatusTagAliasAndMetric) {
  for (double auc : {0.81, 0.95, 0.9}) {
    Json b = Body("weld.json");
    b["metrics"] = {{"auc", auc}};
    ASSERT_EQ(Import(sam_, b).status, 201);
  }
  ASSERT_EQ(Send(ada_, "POST", "/api/v1/models/weld-pm/versions/2/approve", "{}", "application/json").status,
            200);
  ASSERT_EQ(
      Send(eve_, "PUT", "/api/v1/models/weld-pm/aliases/champion", R"({"version": 2})", "application/json")
          .status,
      200);
  ASSERT_EQ(
      Send(sam_, "PATCH", "/api/v1/models/weld-pm", R"({"tags": {"line": "A"}})", "application/json").status,
      200);
  auto versions = [&](const std::string& query) {
    auto r = Send(sam_, "GET", "/api/v1/model-versions?" + query);
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    std::vector<int> out;
    for (const auto& v : BodyJson(r)) out.push_back(v["version"]);
    return out;
  };
  using V = std::vector<int>;
  EXPECT_EQ(versions(""), (V{3, 2, 1}));
  EXPECT_EQ(versions("metric=auc%3E%3D0.9&sort=metric:auc"), (V{2, 3}));
  EXPECT_EQ(versions("sort=metric:auc:asc&limit=1"), (V{1}));
  EXPECT_EQ(versions("status=Approved"), (V{2}));
  EXPECT_EQ(versions("alias=champion"), (V{2}));
  EXPECT_EQ(versions("tag=line%3DA&project=weld-pm"), (V{3, 2, 1}));
  EXPECT_EQ(versions("tag=line%3DB"), V{});
  EXPECT_EQ(versions("group=paint-pm"), V{});

  auto bad_status = Send(sam_, "GET", "/api/v1/model-versions?status=approved");
  EXPECT_EQ(bad_status.status, 400);
  EXPECT_THAT(ErrorMessage(bad_status), HasSubstr("status 'approved'"));
  auto bad_metric = Send(sam_, "GET", "/api/v1/model-versions?metric=auc%3D%3E0.9");
  EXPECT_EQ(bad_metric.status, 400);
  EXPECT_THAT(ErrorMessage(bad_metric), HasSubstr("metric filter 'auc=>0.9'"));
  auto bad_limit = Send(sam_, "GET", "/api/v1/model-versions?limit=many");
  EXPECT_EQ(bad_limit.status, 400);
  EXPECT_THAT(ErrorMessage(bad_limit), HasSubstr("limit"));

  auto groups = BodyJson(Send(sam_, "GET", "/api/v1/models?tag=line%3DA"));
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0]["aliases"]["champion"], 2);
  EXPECT_TRUE(BodyJson(Send(sam_, "GET", "/api/v1/models?project=paint")).empty());
}

}  // namespace
}  // namespace takt::api
