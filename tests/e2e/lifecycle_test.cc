// The foundation's lifecycle slice, driven through the real binary: simulate,
// ingest, run the pipeline, approve (and be refused), deploy by event, serve
// predictions equal to XGBoost's own, survive a restart, keep data encrypted.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include "core/json.h"
#include "e2e/testkit.h"
#include "frame/csv.h"
#include "http/client.h"

namespace takt::testkit {
namespace {

namespace fs = std::filesystem;

Json ParseOut(const CliResult& r) {
  auto j = Json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out << r.err;
  return j;
}

std::vector<double> ParseLines(const std::string& text) {
  std::vector<double> v;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) v.push_back(std::stod(line));
  return v;
}

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    dana_ = server_.CreatePrincipal("dana", {"data-engineer"});
    sam_ = server_.CreatePrincipal("sam", {"data-scientist", "approver"});
    ada_ = server_.CreatePrincipal("ada", {"approver"});
    ASSERT_FALSE(dana_.empty());
    ASSERT_FALSE(sam_.empty());
    ASSERT_FALSE(ada_.empty());
  }
  TaktServer server_;
  std::string dana_, sam_, ada_;
};

TEST_F(LifecycleTest, WeldRobotsFromTelemetryToPredictions) {
  const std::string dir = server_.dir();
  // a. Simulate.
  CliResult sim = RunTakt({"sim", "weld", "--robots", "80", "--plants", "3", "--days", "30", "--seed", "7",
                           "-o", dir + "/telemetry.csv"});
  ASSERT_EQ(sim.exit_code, 0) << sim.err;
  ASSERT_TRUE(fs::exists(dir + "/telemetry.csv"));

  // b. Ingest, as the data engineer.
  CliResult ingest =
      server_.Cli(dana_, {"dataset", "ingest", "weld-telemetry", dir + "/telemetry.csv", "-o", "json"});
  ASSERT_EQ(ingest.exit_code, 0) << ingest.err;
  Json v = ParseOut(ingest);
  EXPECT_EQ(v["version"], 1);
  EXPECT_EQ(v["rows"], 80 * 30 * 24);
  CliResult show = server_.Cli(dana_, {"dataset", "show", "weld-telemetry", "-o", "json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  Json schema = ParseOut(show)["versions"][0]["schema"];
  ASSERT_EQ(schema.size(), 11u);
  EXPECT_EQ(schema[0]["name"], "timestamp");
  EXPECT_EQ(schema[0]["type"], "timestamp");
  EXPECT_EQ(schema[3]["type"], "float64");

  // The project, and the data engineer's grant to it: robot_serial pseudonymised.
  ASSERT_EQ(server_.Cli(server_.admin_token(), {"project", "create", "weld-pm", "--member", "sam"}).exit_code,
            0);
  CliResult grant = server_.Cli(dana_, {"grant", "create", "--to", "project:weld-pm", "--dataset",
                                        "weld-telemetry", "--mask", "robot_serial=hash"});
  ASSERT_EQ(grant.exit_code, 0) << grant.err;

  // c. The pipeline, as the data scientist.
  CliResult run =
      server_.Cli(sam_, {"pipeline", "run", SourceDir() + "/examples/weld-pm/pipeline.yaml", "-o", "json"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  Json r = ParseOut(run);
  EXPECT_EQ(r["status"], "succeeded");
  ASSERT_EQ(r["steps"].size(), 5u);
  for (const auto& s : r["steps"]) EXPECT_EQ(s["status"], "succeeded") << s.dump();
  double auc = r["steps"][2]["metrics"]["auc"];
  EXPECT_GE(auc, 0.85);
  std::string run_id = r["id"];
  CliResult logs = server_.Cli(sam_, {"run", "logs", run_id});
  EXPECT_NE(logs.out.find("[train] training XGBoost"), std::string::npos) << logs.out;

  CliResult model = server_.Cli(sam_, {"model", "show", "weld-pm", "1", "-o", "json"});
  ASSERT_EQ(model.exit_code, 0) << model.err;
  Json mv = ParseOut(model);
  EXPECT_EQ(mv["status"], "PendingManualApproval");
  EXPECT_EQ(mv["lineage"]["run_id"], run_id);
  EXPECT_EQ(mv["lineage"]["dataset"], "weld-telemetry");
  EXPECT_EQ(mv["lineage"]["dataset_version"], 1);
  EXPECT_DOUBLE_EQ(mv["metrics"]["auc"].get<double>(), auc);

  // d. The author may not approve; a principal without the persona may not;
  // another approver may, and the event deploys to dev.
  CliResult own = server_.Cli(sam_, {"model", "approve", "weld-pm", "1"});
  EXPECT_EQ(own.exit_code, 3);
  EXPECT_NE(own.err.find("another approver must approve it"), std::string::npos) << own.err;
  CliResult no_persona = server_.Cli(dana_, {"model", "approve", "weld-pm", "1"});
  EXPECT_EQ(no_persona.exit_code, 3);
  EXPECT_NE(no_persona.err.find("PERMISSION_DENIED"), std::string::npos) << no_persona.err;
  CliResult approve = server_.Cli(ada_, {"model", "approve", "weld-pm", "1", "--comment", "fine"});
  ASSERT_EQ(approve.exit_code, 0) << approve.err;

  bool serving = false;
  for (int i = 0; i < 300 && !serving; ++i) {
    CliResult eps = server_.Cli(ada_, {"endpoint", "list", "-o", "json"});
    Json e = Json::parse(eps.out, nullptr, false);
    serving = e.is_array() && !e.empty() && e[0]["name"] == "weld-pm-dev" && e[0]["status"] == "InService";
    if (!serving) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(serving) << "weld-pm-dev never came up";
  CliResult events = server_.Cli(server_.admin_token(), {"event", "list", "-o", "json"});
  Json all = ParseOut(events);
  ASSERT_FALSE(all.empty());
  Json ev = Json::array();  // the approval, among the release's own events
  for (const auto& e : all)
    if (e["type"] == "io.takt.model.version.approved") ev.push_back(e);
  ASSERT_EQ(ev.size(), 1u) << all.dump();
  EXPECT_EQ(ev[0]["specversion"], "1.0");
  bool delivered = false;
  for (int i = 0; i < 50 && !delivered; ++i) {
    Json e = ParseOut(
        server_.Cli(server_.admin_token(), {"event", "show", ev[0]["id"].get<std::string>(), "-o", "json"}));
    delivered = !e.value("delivered_at", std::string()).empty();
    if (!delivered) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(delivered);

  // e. Predictions through both protocols equal XGBoost's own for the same rows.
  ASSERT_EQ(server_.Cli(sam_, {"run", "export", run_id, "features/latest", "--file", dir + "/latest.csv"})
                .exit_code,
            0);
  ASSERT_EQ(server_.Cli(sam_, {"model", "download", "weld-pm", "1", "--file", dir + "/model.json"}).exit_code,
            0);
  Json endpoint = ParseOut(server_.Cli(sam_, {"endpoint", "show", "weld-pm-dev", "-o", "json"}));
  auto features = endpoint["feature_names"].get<std::vector<std::string>>();
  ASSERT_EQ(endpoint["runtime"].size(), 1u) << endpoint.dump();
  EXPECT_EQ(endpoint["runtime"][0]["variant"], "weld-pm-v1");
  EXPECT_GE(endpoint["runtime"][0]["replicas"].get<int>(), 1);
  EXPECT_EQ(endpoint["runtime"][0]["model_loaded"], true) << "a serving endpoint holds its model";
  auto latest = frame::ReadCsv(ReadFileOrEmpty(dir + "/latest.csv"));
  ASSERT_TRUE(latest.has_value()) << latest.error().ToString();
  ASSERT_EQ(latest->num_rows(), 80u);
  std::string csv;
  Json oip_data = Json::array();
  char buf[64];
  for (size_t row = 0; row < latest->num_rows(); ++row) {
    for (size_t i = 0; i < features.size(); ++i) {
      // Both protocols and python get the same float32: nine digits name a
      // float exactly, whereas rounding the double to nine digits first and
      // then to float may land one ulp away, across a split threshold.
      const float x = static_cast<float>(latest->Find(features[i])->AsDouble(row));
      std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(x));
      csv += (i ? "," : "") + std::string(buf);
      oip_data.push_back(x);
    }
    csv += "\n";
  }
  WriteFile(dir + "/rows.csv", csv);
  auto client = http::Client::Create(server_.url());
  ASSERT_TRUE(client.has_value());
  client->SetHeader("Authorization", "Bearer " + sam_);
  auto sm = client->Send("POST", "/endpoints/weld-pm-dev/invocations", csv, "text/csv");
  ASSERT_TRUE(sm.has_value());
  ASSERT_EQ(sm->status, 200) << sm->body;
  EXPECT_EQ(sm->headers["x-amzn-invoked-production-variant"], "weld-pm-v1");
  std::vector<double> sagemaker = ParseLines(sm->body);
  Json req = {{"id", "e2e"},
              {"inputs", Json::array({{{"name", "input-0"},
                                       {"shape", {latest->num_rows(), features.size()}},
                                       {"datatype", "FP32"},
                                       {"data", oip_data}}})}};
  auto oip = client->Send("POST", "/v2/models/weld-pm-dev/infer", req.dump(), "application/json");
  ASSERT_TRUE(oip.has_value());
  ASSERT_EQ(oip->status, 200) << oip->body;
  auto oip_preds = Json::parse(oip->body)["outputs"][0]["data"].get<std::vector<double>>();

  std::string py =
      "/usr/bin/python3 -c \"import xgboost as xgb, numpy as np; b = xgb.Booster(); b.load_model('" + dir +
      "/model.json'); X = np.loadtxt('" + dir +
      "/rows.csv', delimiter=',', ndmin=2, dtype=np.float32); "
      "print('\\n'.join(repr(float(p)) for p in b.predict(xgb.DMatrix(X))))\" > " +
      dir + "/reference.txt";
  ASSERT_EQ(std::system(py.c_str()), 0) << "python3-xgboost reference failed";
  std::vector<double> reference = ParseLines(ReadFileOrEmpty(dir + "/reference.txt"));
  ASSERT_EQ(reference.size(), 80u);
  ASSERT_EQ(sagemaker.size(), 80u);
  ASSERT_EQ(oip_preds.size(), 80u);
  for (size_t i = 0; i < reference.size(); ++i) {
    EXPECT_NEAR(sagemaker[i], reference[i], 1e-6) << "SageMaker, row " << i;
    EXPECT_NEAR(oip_preds[i], reference[i], 1e-6) << "Open Inference, row " << i;
  }
  // The ranking the demo shows works through the CLI too.
  CliResult top = server_.Cli(sam_, {"endpoint", "invoke", "weld-pm-dev", "--file", dir + "/latest.csv",
                                     "--id-column", "robot_serial", "--top", "5", "-o", "json"});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  Json ranked = ParseOut(top)["predictions"];
  ASSERT_EQ(ranked.size(), 5u);
  EXPECT_GE(ranked[0]["score"].get<double>(), ranked[4]["score"].get<double>());

  // The audit log has the refused and the granted approval.
  Json audit = ParseOut(
      server_.Cli(server_.admin_token(), {"audit", "list", "--action", "model:approve", "-o", "json"}));
  int denied = 0, allowed = 0;
  for (const auto& a : audit) (a["allowed"].get<bool>() ? allowed : denied)++;
  EXPECT_EQ(allowed, 1);
  EXPECT_EQ(denied, 2);

  // A restart keeps everything: the endpoint serves again with the same answers.
  server_.Stop();
  std::string error;
  ASSERT_TRUE(server_.Start(&error)) << error;
  auto client2 = http::Client::Create(server_.url());
  client2->SetHeader("Authorization", "Bearer " + sam_);
  auto again = client2->Send("POST", "/endpoints/weld-pm-dev/invocations", csv, "text/csv");
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(again->status, 200) << again->body;
  EXPECT_EQ(ParseLines(again->body), sagemaker);
}

TEST_F(LifecycleTest, NoUserDataInPlaintextAnywhereInTheDataDirectory) {
  const std::string marker = "MARKER-3c1f9e2a-plant-secret";
  std::string csv = "timestamp,plant,robot_serial,motor_current_a\n";
  for (int i = 0; i < 50; ++i) {
    char ts[32];
    std::snprintf(ts, sizeof ts, "2026-01-%02dT%02d:00:00Z,", 1 + i / 24, i % 24);
    csv += ts;
    csv +=
        (i == 17 ? marker : "wolfsburg") + ",WG-" + std::to_string(i) + "," + std::to_string(10.5 + i) + "\n";
  }
  WriteFile(server_.dir() + "/secret.csv", csv);
  CliResult ingest =
      server_.Cli(dana_, {"dataset", "ingest", "plant-secrets", server_.dir() + "/secret.csv"});
  ASSERT_EQ(ingest.exit_code, 0) << ingest.err;
  ASSERT_EQ(server_.Cli(dana_, {"grant", "create", "--to", "principal:sam", "--dataset", "plant-secrets"})
                .exit_code,
            0);
  // The marker is really stored: it comes back through the governed read...
  CliResult head = server_.Cli(sam_, {"dataset", "head", "plant-secrets", "-n", "50", "-o", "json"});
  ASSERT_EQ(head.exit_code, 0) << head.err;
  EXPECT_NE(head.out.find(marker), std::string::npos);
  // ...but no file of the data directory holds it in plaintext.
  server_.Stop();
  size_t files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(server_.data_dir())) {
    if (!entry.is_regular_file()) continue;
    ++files;
    std::string bytes = ReadFileOrEmpty(entry.path().string());
    EXPECT_EQ(bytes.find(marker), std::string::npos) << "plaintext marker in " << entry.path();
    EXPECT_EQ(bytes.find("MARKER-3c1f9e2a"), std::string::npos) << "partial marker in " << entry.path();
  }
  EXPECT_GE(files, 3u);  // database, master key, at least one blob
  // The master key file is private.
  auto perms = fs::status(server_.data_dir() + "/master.key").permissions();
  EXPECT_EQ(perms & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
}

}  // namespace
}  // namespace takt::testkit
