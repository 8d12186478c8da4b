// Releases through the real binary: an approved weld-pm version travels dev →
// int → prod with its gates and two prod approvers, each stage admits only
// whom it should, history answers "what served prod then", and a bad version
// imported from a notebook is rolled back from its canary automatically.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "core/json.h"
#include "e2e/testkit.h"
#include "http/client.h"

namespace takt::testkit {
namespace {

Json ParseOut(const CliResult& r) {
  auto j = Json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out << r.err;
  return j;
}

constexpr const char* kReleaseYaml = R"(model_group: weld-pm
stages:
  - name: dev
    capture: 100
    gates:
      - smoke_test: {requests: 10, max_p99_latency: 2s}
  - name: int
    gates:
      - quality: {metric: auc, compare_to: prod, max_regression: 0.05}
      - approval: {approvers: 1, persona: approver}
      - smoke_test: true
  - name: prod
    replicas: {min: 2, max: 6}
    strategy: {type: canary, percent: 50, duration: 20s, min_requests: 10,
               rollback_on: {error_rate: 0.05, p99_latency: 2s}}
    gates:
      - approval: {approvers: 2, persona: approver}
      - smoke_test: true
)";

class ReleaseE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    dana_ = server_.CreatePrincipal("dana", {"data-engineer"});
    sam_ = server_.CreatePrincipal("sam", {"data-scientist"});
    ada_ = server_.CreatePrincipal("ada", {"approver"});
    bob_ = server_.CreatePrincipal("bob", {"approver"});
    eve_ = server_.CreatePrincipal("eve", {"ml-engineer"});
    CliResult app = server_.Cli(server_.admin_token(), {"principal", "create", "plant-mes", "--service",
                                                        "--persona", "service", "-o", "json"});
    ASSERT_EQ(app.exit_code, 0) << app.err;
    app_ = ParseOut(app).value("token", "");
    ASSERT_FALSE(app_.empty());
    const std::string csv = server_.dir() + "/telemetry.csv";
    CliResult sim =
        RunTakt({"sim", "weld", "--robots", "30", "--plants", "2", "--days", "20", "--seed", "3", "-o", csv});
    ASSERT_EQ(sim.exit_code, 0) << sim.err;
    ASSERT_EQ(server_.Cli(dana_, {"dataset", "ingest", "weld-telemetry", csv}).exit_code, 0);
    ASSERT_EQ(server_
                  .Cli(server_.admin_token(),
                       {"project", "create", "weld-pm", "--member", "sam", "--member", "eve"})
                  .exit_code,
              0);
    ASSERT_EQ(server_
                  .Cli(dana_, {"grant", "create", "--to", "project:weld-pm", "--dataset", "weld-telemetry",
                               "--mask", "robot_serial=hash"})
                  .exit_code,
              0);
  }

  // POSTs rows (CSV, no header) to an endpoint's SageMaker route as `token`.
  http::ClientResponse Invoke(const std::string& token, const std::string& endpoint,
                              const std::string& rows) {
    auto c = http::Client::Create(server_.url());
    EXPECT_TRUE(c.has_value());
    c->SetHeader("Authorization", "Bearer " + token);
    auto r = c->Send("POST", "/endpoints/" + endpoint + "/invocations", rows, "text/csv");
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    return r ? *r : http::ClientResponse{};
  }

  Json Wait(int version) {
    CliResult w = server_.Cli(eve_, {"release", "wait", "weld-pm", "--version", std::to_string(version),
                                     "--timeout", "120", "-o", "json"});
    EXPECT_EQ(w.exit_code, 0) << w.out << w.err;
    return ParseOut(w);
  }

  TaktServer server_;
  std::string dana_, sam_, ada_, bob_, eve_, app_;
};

TEST_F(ReleaseE2eTest, DevToProdWithApprovalsIsolationHistoryAndAnAutomaticCanaryRollback) {
  const std::string dir = server_.dir();
  WriteFile(dir + "/release.yaml", kReleaseYaml);
  CliResult put_by_sam = server_.Cli(sam_, {"release", "config", "put", dir + "/release.yaml"});
  EXPECT_NE(put_by_sam.exit_code, 0) << "a data scientist may not configure releases";
  CliResult put = server_.Cli(eve_, {"release", "config", "put", dir + "/release.yaml"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  EXPECT_NE(put.out.find("dev → int → prod"), std::string::npos) << put.out;
  WriteFile(dir + "/bad.yaml",
            "model_group: weld-pm\nstages:\n  - name: dev\n    gates:\n      - quality: {metric: auc}\n");
  CliResult bad = server_.Cli(eve_, {"release", "config", "put", dir + "/bad.yaml"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("compare_to: stage 'prod' is not one of the stages (dev)"), std::string::npos)
      << bad.err;

  CliResult run =
      server_.Cli(sam_, {"pipeline", "run", SourceDir() + "/examples/weld-pm/pipeline.yaml", "-o", "json"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  Json v1 = ParseOut(server_.Cli(sam_, {"model", "show", "weld-pm", "1", "-o", "json"}));
  std::vector<std::string> features = v1["feature_names"].get<std::vector<std::string>>();
  ASSERT_FALSE(features.empty());
  std::string row;
  for (size_t i = 0; i < features.size(); ++i) row += (i ? "," : "") + std::to_string(0.5 + 0.1 * i);
  const std::string rows = row + "\n" + row + "\n";

  // Approval starts the release: dev, then int waits for a person.
  ASSERT_EQ(server_.Cli(ada_, {"model", "approve", "weld-pm", "1", "--comment", "holdout fine"}).exit_code,
            0);
  Json r = Wait(1);
  ASSERT_EQ(r["status"], "WaitingForApproval") << r.dump();
  EXPECT_EQ(r["stage"], "int");
  // dev: project members invoke, others do not.
  EXPECT_EQ(Invoke(sam_, "weld-pm-dev", rows).status, 200);
  http::ClientResponse outsider = Invoke(ada_, "weld-pm-dev", rows);
  EXPECT_EQ(outsider.status, 403);
  EXPECT_NE(outsider.body.find("open to members of project weld-pm"), std::string::npos) << outsider.body;

  CliResult own = server_.Cli(sam_, {"release", "approve", "weld-pm", "--stage", "int"});
  EXPECT_NE(own.exit_code, 0) << "a data scientist holds no release:approve";
  CliResult early = server_.Cli(bob_, {"release", "approve", "weld-pm", "--stage", "prod"});
  EXPECT_NE(early.exit_code, 0);
  EXPECT_NE(early.err.find("not waiting for approval at prod"), std::string::npos) << early.err;
  CliResult unknown = server_.Cli(bob_, {"release", "approve", "weld-pm", "--stage", "staging"});
  EXPECT_NE(unknown.err.find("not in weld-pm's release pipeline (dev, int, prod)"), std::string::npos)
      << unknown.err;
  ASSERT_EQ(
      server_.Cli(bob_, {"release", "approve", "weld-pm", "--stage", "int", "--comment", "int ok"}).exit_code,
      0);
  r = Wait(1);
  ASSERT_EQ(r["stage"], "prod") << r.dump();
  // int: read-only for people, service identities invoke.
  http::ClientResponse people = Invoke(sam_, "weld-pm-int", rows);
  EXPECT_EQ(people.status, 403);
  EXPECT_NE(people.body.find("int is read-only for people"), std::string::npos) << people.body;
  EXPECT_EQ(Invoke(app_, "weld-pm-int", rows).status, 200);
  EXPECT_EQ(server_.Cli(sam_, {"endpoint", "show", "weld-pm-int"}).exit_code, 0);

  ASSERT_EQ(server_.Cli(ada_, {"release", "approve", "weld-pm", "--stage", "prod"}).exit_code, 0);
  CliResult twice = server_.Cli(ada_, {"release", "approve", "weld-pm", "--stage", "prod"});
  EXPECT_NE(twice.err.find("needs 2 distinct approvers"), std::string::npos) << twice.err;
  ASSERT_EQ(server_.Cli(bob_, {"release", "approve", "weld-pm", "--stage", "prod"}).exit_code, 0);
  r = Wait(1);
  ASSERT_EQ(r["status"], "Succeeded") << r.dump();
  // prod: service identities and prod approvers only.
  EXPECT_EQ(Invoke(app_, "weld-pm-prod", rows).status, 200);
  EXPECT_EQ(Invoke(sam_, "weld-pm-prod", rows).status, 403);
  EXPECT_NE(server_.Cli(sam_, {"endpoint", "show", "weld-pm-prod"}).exit_code, 0);
  EXPECT_EQ(server_.Cli(ada_, {"endpoint", "show", "weld-pm-prod"}).exit_code, 0);

  Json at = ParseOut(server_.Cli(
      sam_, {"release", "history", "weld-pm", "--stage", "prod", "--at",
             ParseOut(server_.Cli(sam_, {"release", "status", "weld-pm", "-o", "json"}))["stages"][2]["since"]
                 .get<std::string>(),
             "-o", "json"}));
  ASSERT_EQ(at.size(), 1u) << at.dump();
  EXPECT_EQ(at[0]["version"], 1);
  EXPECT_EQ(at[0]["approved_by"], Json::array({"ada", "bob"}));
  EXPECT_EQ(at[0]["run_id"], ParseOut(run)["id"]);
  EXPECT_EQ(at[0]["dataset"], "weld-telemetry");
  CliResult table = server_.Cli(sam_, {"release", "history", "weld-pm"});
  EXPECT_NE(table.out.find("APPROVED BY"), std::string::npos) << table.out;

  // A notebook model that expects one more feature than the plant's clients send.
  const std::string script = dir + "/train_bad.py";
  std::string names = "[";
  for (const auto& f : features) names += "'" + f + "',";
  names += "'wire_feed_rate']";
  WriteFile(script,
            "import numpy as np, xgboost as xgb\n"
            "names = " +
                names +
                "\n"
                "rng = np.random.default_rng(1)\n"
                "x = rng.random((300, len(names)))\n"
                "y = (x[:, -1] > 0.5).astype(int)\n"
                "d = xgb.DMatrix(x, label=y, feature_names=names)\n"
                "b = xgb.train({'objective': 'binary:logistic', 'max_depth': 3}, d, 10)\n"
                "b.save_model('" +
                dir + "/bad.json')\n");
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script).c_str()), 0);
  WriteFile(dir + "/metrics.json", "{\"auc\": 0.97}");
  CliResult imported =
      server_.Cli(eve_, {"model", "register", "--file", dir + "/bad.json", "--framework", "xgboost",
                         "--group", "weld-pm", "--metrics", dir + "/metrics.json", "-o", "json"});
  ASSERT_EQ(imported.exit_code, 0) << imported.out << imported.err;
  ASSERT_EQ(server_.Cli(ada_, {"model", "approve", "weld-pm", "2"}).exit_code, 0);
  r = Wait(2);
  ASSERT_EQ(r["stage"], "int") << r.dump();
  ASSERT_EQ(server_.Cli(bob_, {"release", "approve", "weld-pm", "--stage", "int"}).exit_code, 0);
  r = Wait(2);
  ASSERT_EQ(r["stage"], "prod") << r.dump();
  ASSERT_EQ(server_.Cli(ada_, {"release", "approve", "weld-pm", "--stage", "prod"}).exit_code, 0);
  ASSERT_EQ(server_.Cli(bob_, {"release", "approve", "weld-pm", "--stage", "prod"}).exit_code, 0);
  // The plant keeps calling prod with its usual rows while the canary runs.
  int v1_ok = 0, v2_failed = 0;
  for (int i = 0; i < 400; ++i) {
    http::ClientResponse resp = Invoke(app_, "weld-pm-prod", rows);
    std::string variant = resp.headers.count("x-amzn-invoked-production-variant")
                              ? resp.headers["x-amzn-invoked-production-variant"]
                              : "";
    if (variant == "weld-pm-v1" && resp.status == 200) ++v1_ok;
    if (variant == "weld-pm-v2" && resp.status == 400) ++v2_failed;
    Json s = ParseOut(server_.Cli(eve_, {"release", "list", "weld-pm", "--limit", "1", "-o", "json"}));
    if (s[0]["status"] != "InProgress" && s[0]["status"] != "WaitingForApproval") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r = Wait(2);
  EXPECT_EQ(r["status"], "RolledBack") << r.dump();
  EXPECT_NE(r["message"].get<std::string>().find("error rate"), std::string::npos) << r.dump();
  EXPECT_GT(v1_ok, 0);
  EXPECT_GT(v2_failed, 0);
  Json prod = ParseOut(server_.Cli(ada_, {"endpoint", "show", "weld-pm-prod", "-o", "json"}));
  ASSERT_EQ(prod["variants"].size(), 1u) << prod.dump();
  EXPECT_EQ(prod["variants"][0]["version"], 1);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Invoke(app_, "weld-pm-prod", rows).status, 200);

  // Rollback by command, and a registry rejection, put int and dev back on v1.
  CliResult rollback =
      server_.Cli(eve_, {"release", "rollback", "weld-pm", "--stage", "int", "--comment", "bad v2"});
  ASSERT_EQ(rollback.exit_code, 0) << rollback.err;
  ASSERT_EQ(server_.Cli(ada_, {"model", "reject", "weld-pm", "2", "--comment", "needs wire feed"}).exit_code,
            0);
  bool dev_back = false;
  for (int i = 0; i < 100 && !dev_back; ++i) {
    Json dev = ParseOut(server_.Cli(sam_, {"endpoint", "show", "weld-pm-dev", "-o", "json"}));
    dev_back = dev["variants"].size() == 1 && dev["variants"][0]["version"] == 1;
    if (!dev_back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(dev_back) << "rejecting v2 puts dev back on v1";
  Json status = ParseOut(server_.Cli(eve_, {"release", "status", "weld-pm", "-o", "json"}));
  for (const auto& st : status["stages"]) EXPECT_EQ(st["live_version"], 1) << status.dump();
}

}  // namespace
}  // namespace takt::testkit
