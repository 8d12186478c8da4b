// Bad input always gets a clear 4xx error naming what is wrong, and changes
// nothing: no crash, no half-written record.
#include <gtest/gtest.h>

#include "core/json.h"
#include "e2e/testkit.h"
#include "http/client.h"

namespace takt::testkit {
namespace {

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    admin_ = server_.admin_token();
    sam_ = server_.CreatePrincipal("sam", {"data-scientist"});
    ASSERT_FALSE(sam_.empty());
    auto c = http::Client::Create(server_.url());
    ASSERT_TRUE(c.has_value());
    client_.emplace(std::move(*c));
    client_->SetHeader("Authorization", "Bearer " + admin_);
  }

  std::string File(const std::string& name, const std::string& text) {
    std::string path = server_.dir() + "/" + name;
    WriteFile(path, text);
    return path;
  }

  // The JSON list a read-only command prints, to compare before and after.
  std::string Snapshot() {
    std::string s;
    for (auto args : std::vector<std::vector<std::string>>{{"dataset", "list", "-o", "json"},
                                                           {"run", "list", "-o", "json"},
                                                           {"model", "list", "-o", "json"},
                                                           {"principal", "list", "-o", "json"}}) {
      CliResult r = server_.Cli(admin_, args);
      EXPECT_EQ(r.exit_code, 0) << r.err;
      s += r.out;
    }
    return s;
  }

  void ExpectError(const CliResult& r, int exit_code, const std::string& code, const std::string& fragment) {
    EXPECT_EQ(r.exit_code, exit_code) << r.out << r.err;
    EXPECT_NE(r.err.find(code), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
  }

  void ExpectHttpError(const Result<http::ClientResponse>& r, int status, const std::string& code) {
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(r->status, status) << r->body;
    auto j = Json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
    EXPECT_EQ(j["error"]["code"], code) << r->body;
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
  }

  TaktServer server_;
  std::string admin_, sam_;
  std::optional<http::Client> client_;
};

TEST_F(BadInputTest, BadCsvIsRefusedAndNoDatasetAppears) {
  std::string before = Snapshot();
  ExpectError(server_.Cli(admin_, {"dataset", "ingest", "weld", File("ragged.csv", "a,b,c\n1,2,3\n4,5\n")}),
              2, "INVALID_ARGUMENT", "line 3");
  ExpectError(server_.Cli(admin_, {"dataset", "ingest", "weld", File("header.csv", "a,b,c\n")}), 2,
              "INVALID_ARGUMENT", "no data rows");
  ExpectError(server_.Cli(admin_, {"dataset", "ingest", "weld", File("quote.csv", "a,b\n1,\"open\n")}), 2,
              "INVALID_ARGUMENT", "unterminated");
  ExpectError(server_.Cli(admin_, {"dataset", "ingest", "Bad_Name", File("ok.csv", "a\n1\n")}), 2,
              "INVALID_ARGUMENT", "dataset name 'Bad_Name' is invalid");
  ExpectError(server_.Cli(admin_, {"dataset", "ingest", "weld", server_.dir() + "/missing.csv"}), 4,
              "NOT_FOUND", "missing.csv");
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(BadInputTest, NonNumericValueInANumericColumnNamesLineAndColumn) {
  ASSERT_EQ(
      server_.Cli(admin_, {"dataset", "ingest", "weld", File("v1.csv", "robot,force\nr1,1.5\nr2,2.5\n")})
          .exit_code,
      0);
  std::string before = Snapshot();
  ExpectError(
      server_.Cli(admin_, {"dataset", "ingest", "weld", File("v2.csv", "robot,force\nr1,1.5\nr2,abc\n")}), 2,
      "INVALID_ARGUMENT", "line 3, column force: 'abc' is not a float64");
  EXPECT_EQ(Snapshot(), before);
  CliResult show = server_.Cli(admin_, {"dataset", "show", "weld", "-o", "json"});
  EXPECT_EQ(Json::parse(show.out)["versions"].size(), 1u);
}

TEST_F(BadInputTest, BadPipelinesAreRejectedAtSubmitWithTheLine) {
  ASSERT_EQ(server_
                .Cli(admin_, {"dataset", "ingest", "weld-telemetry",
                              File("d.csv",
                                   "timestamp,robot_serial,x,fails_within_24h\n2026-01-01T00:00:00Z,r1,1,0\n"
                                   "2026-01-01T01:00:00Z,r1,2,1\n")})
                .exit_code,
            0);
  // Project p, with sam as a member and read access to the dataset.
  ASSERT_EQ(server_.Cli(admin_, {"project", "create", "p", "--member", "sam"}).exit_code, 0);
  ASSERT_EQ(
      server_.Cli(admin_, {"grant", "create", "--to", "project:p", "--dataset", "weld-telemetry"}).exit_code,
      0);
  std::string before = Snapshot();
  const std::string head = "name: p\nsteps:\n";
  const std::string features = "  - name: features\n    kind: features\n    dataset: weld-telemetry\n";
  ExpectError(server_.Cli(sam_, {"pipeline", "run", File("a.yaml", head + "  - name: [oops\n")}), 2,
              "INVALID_ARGUMENT", "invalid YAML at line");
  ExpectError(
      server_.Cli(sam_, {"pipeline", "run", File("b.yaml", head + features + "    columns: [force]\n")}), 2,
      "INVALID_ARGUMENT", "column 'force' is not in dataset weld-telemetry v1");
  ExpectError(server_.Cli(sam_, {"pipeline", "run",
                                 File("c.yaml", head + features +
                                                    "  - name: train\n    kind: train\n    input: featurez\n"
                                                    "    label: fails_within_24h\n")}),
              2, "INVALID_ARGUMENT", "input 'featurez': there is no step 'featurez'");
  ExpectError(server_.Cli(sam_, {"pipeline", "run", File("d.yaml", head + features + "    windowz: [6]\n")}),
              2, "INVALID_ARGUMENT", "line 6: step 'features': unknown key 'windowz'");
  ExpectError(server_.Cli(sam_, {"pipeline", "run", File("e.yaml", head + "  - name: s\n    kind: spark\n")}),
              2, "INVALID_ARGUMENT", "unknown kind 'spark'");
  ExpectError(server_.Cli(sam_, {"pipeline", "run",
                                 File("f.yaml",
                                      "name: p\nsteps:\n  - name: features\n    kind: features\n"
                                      "    dataset: paint-telemetry\n")}),
              4, "NOT_FOUND", "dataset paint-telemetry does not exist");
  ExpectError(
      server_.Cli(sam_, {"pipeline", "run", File("g.yaml", "name: q\nproject: q\nsteps:\n" + features)}), 4,
      "NOT_FOUND", "project q does not exist");
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(BadInputTest, UnknownModelsAndVersionsAreNotFound) {
  ExpectError(server_.Cli(admin_, {"model", "show", "weld-pm"}), 4, "NOT_FOUND",
              "model group weld-pm does not exist");
  ExpectError(server_.Cli(admin_, {"model", "approve", "weld-pm", "7"}), 4, "NOT_FOUND",
              "model group weld-pm does not exist");
  ExpectHttpError(client_->Send("GET", "/api/v1/models/weld-pm/versions/seven"), 400, "INVALID_ARGUMENT");
  ExpectHttpError(client_->Send("GET", "/api/v1/runs/run-nope"), 404, "NOT_FOUND");
  ExpectHttpError(client_->Send("GET", "/api/v1/endpoints/weld-pm-prod"), 404, "NOT_FOUND");
  // OIP errors are {"error": "<message>"} (with takt's code beside it).
  auto oip = client_->Send("POST", "/v2/models/weld-pm-dev/infer", "{}", "application/json");
  ASSERT_TRUE(oip.has_value());
  EXPECT_EQ(oip->status, 404) << oip->body;
  auto j = Json::parse(oip->body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j["error"].is_string()) << oip->body;
  EXPECT_NE(j["error"].get<std::string>().find("weld-pm-dev"), std::string::npos) << oip->body;
  EXPECT_EQ(j["code"], "NOT_FOUND");
}

TEST_F(BadInputTest, MalformedOversizeAndMistypedRequestsChangeNothing) {
  std::string before = Snapshot();
  ExpectHttpError(client_->Send("POST", "/api/v1/principals", "{\"name\": \"eve\", ", "application/json"),
                  400, "INVALID_ARGUMENT");
  ExpectHttpError(client_->Send("POST", "/api/v1/principals", "[1,2]", "application/json"), 400,
                  "INVALID_ARGUMENT");
  ExpectHttpError(client_->Send("POST", "/api/v1/principals", R"({"name":"eve","personas":["wizard"]})",
                                "application/json"),
                  400, "INVALID_ARGUMENT");
  ExpectHttpError(
      client_->Send("POST", "/api/v1/principals", R"({"name":"eve","personas":"admin"})", "application/json"),
      400, "INVALID_ARGUMENT");
  ExpectHttpError(client_->Send("POST", "/api/v1/principals", std::string(2 << 20, 'x'), "application/json"),
                  413, "PAYLOAD_TOO_LARGE");
  ExpectHttpError(client_->Send("POST", "/api/v1/principals", R"({"name":"eve"})", "text/plain"), 415,
                  "UNSUPPORTED_MEDIA_TYPE");
  ExpectHttpError(client_->Send("POST", "/api/v1/datasets/weld/versions", R"({"a":1})", "application/json"),
                  415, "UNSUPPORTED_MEDIA_TYPE");
  // Runs take YAML, or JSON carrying the YAML (with parameters and code files).
  ExpectHttpError(client_->Send("POST", "/api/v1/runs", "name: p", "image/png"), 415,
                  "UNSUPPORTED_MEDIA_TYPE");
  ExpectHttpError(client_->Send("POST", "/api/v1/runs", R"({"name":"p"})", "application/json"), 400,
                  "INVALID_ARGUMENT");
  ExpectHttpError(client_->Send("POST", "/api/v1/models/weld-pm/versions/1/approve", "{", "application/json"),
                  400, "INVALID_ARGUMENT");
  ExpectHttpError(client_->Send("GET", "/api/v1/nothing-here"), 404, "NOT_FOUND");
  ExpectHttpError(client_->Send("DELETE", "/api/v1/datasets"), 405, "METHOD_NOT_ALLOWED");
  EXPECT_EQ(Snapshot(), before);
  // The server is still healthy.
  auto health = client_->Send("GET", "/healthz");
  ASSERT_TRUE(health.has_value());
  EXPECT_EQ(health->status, 200);
}

TEST_F(BadInputTest, MissingOrWrongTokensAre401AndDeniedActions403) {
  auto anon = http::Client::Create(server_.url());
  ExpectHttpError(anon->Send("GET", "/api/v1/datasets"), 401, "UNAUTHENTICATED");
  anon->SetHeader("Authorization", "Bearer takt_0000");
  ExpectHttpError(anon->Send("GET", "/api/v1/datasets"), 401, "UNAUTHENTICATED");
  ExpectError(server_.Cli("", {"dataset", "list"}), 3, "UNAUTHENTICATED", "takt login");
  ExpectError(server_.Cli(sam_, {"audit", "list"}), 3, "PERMISSION_DENIED", "may not audit:list");
  ExpectError(server_.Cli(sam_, {"principal", "create", "mallory", "--persona", "admin"}), 3,
              "PERMISSION_DENIED", "principal:create");
  // Refusals are audited.
  CliResult audit = server_.Cli(admin_, {"audit", "list", "-o", "json"});
  Json records = Json::parse(audit.out);
  int refused = 0;
  for (const auto& r : records) refused += !r["allowed"].get<bool>();
  EXPECT_GE(refused, 4);
}

}  // namespace
}  // namespace takt::testkit
