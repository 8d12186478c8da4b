// Experiments through the real binary: the script-mode example pipeline with
// parameter overrides, a second run to compare with, search by metric,
// curves drawn to PNG and SVG, a rerun from a step that reuses the rest, and
// a cancelled run; plus what bad input to these commands says.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "core/json.h"
#include "e2e/testkit.h"

namespace takt::testkit {
namespace {

namespace fs = std::filesystem;

Json ParseOut(const CliResult& r) {
  auto j = Json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out << r.err;
  return j;
}

const Json& StepOf(const Json& run, const std::string& name) {
  for (const auto& s : run["steps"])
    if (s["name"] == name) return s;
  ADD_FAILURE() << "no step " << name << " in " << run.dump();
  static const Json kNone = Json::object();
  return kNone;
}

class ExperimentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    dana_ = server_.CreatePrincipal("dana", {"data-engineer"});
    sam_ = server_.CreatePrincipal("sam", {"data-scientist"});
    ada_ = server_.CreatePrincipal("ada", {"approver"});
    ASSERT_FALSE(dana_.empty());
    ASSERT_FALSE(ada_.empty());
    ASSERT_FALSE(sam_.empty());
    const std::string csv = server_.dir() + "/telemetry.csv";
    CliResult sim =
        RunTakt({"sim", "weld", "--robots", "30", "--plants", "2", "--days", "20", "--seed", "3", "-o", csv});
    ASSERT_EQ(sim.exit_code, 0) << sim.err;
    ASSERT_EQ(server_.Cli(dana_, {"dataset", "ingest", "weld-telemetry", csv}).exit_code, 0);
    ASSERT_EQ(
        server_.Cli(server_.admin_token(), {"project", "create", "weld-pm", "--member", "sam"}).exit_code, 0);
    ASSERT_EQ(server_
                  .Cli(dana_, {"grant", "create", "--to", "project:weld-pm", "--dataset", "weld-telemetry",
                               "--mask", "robot_serial=hash"})
                  .exit_code,
              0);
  }

  Json RunPipeline(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"pipeline", "run",
                                     SourceDir() + "/examples/weld-pm/pipeline-script.yaml", "-o", "json"};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = server_.Cli(sam_, args);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return ParseOut(r);
  }

  TaktServer server_;
  std::string dana_, sam_, ada_;
};

TEST_F(ExperimentTest, ScriptRunsCompareSearchPlotAndRerun) {
  Json a = RunPipeline({"-p", "num_round=40", "-p", "eta=0.3"});
  ASSERT_EQ(a["status"], "succeeded") << a.dump();
  EXPECT_EQ(a["params"]["num_round"], 40);
  EXPECT_EQ(StepOf(a, "train")["kind"], "command");
  EXPECT_GT(StepOf(a, "evaluate")["metrics"]["auc"].get<double>(), 0.6);
  Json b = RunPipeline({"-p", "num_round=20", "-p", "eta=0.1"});
  ASSERT_EQ(b["status"], "succeeded") << b.dump();
  // The second run's features and split are the first's, from the cache.
  EXPECT_NE(StepOf(b, "features")["cached_from"].get<std::string>(), "");
  EXPECT_EQ(StepOf(b, "train")["cached_from"], "");
  const std::string ida = a["id"], idb = b["id"];

  // The script's model is served like a built-in one: approved, deployed to dev by the event, invoked.
  ASSERT_EQ(server_.Cli(ada_, {"model", "approve", "weld-pm-script", "1"}).exit_code, 0);
  bool serving = false;
  for (int i = 0; i < 300 && !serving; ++i) {
    Json e = ParseOut(server_.Cli(ada_, {"endpoint", "list", "-o", "json"}));
    for (const auto& ep : e) serving |= ep["name"] == "weld-pm-script-dev" && ep["status"] == "InService";
    if (!serving) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(serving);
  const std::string latest = server_.dir() + "/latest.csv";
  ASSERT_EQ(server_.Cli(sam_, {"run", "export", ida, "features/latest", "--file", latest}).exit_code, 0);
  CliResult scored = server_.Cli(sam_, {"endpoint", "invoke", "weld-pm-script-dev", "--file", latest,
                                        "--id-column", "robot_serial", "--top", "5", "-o", "json"});
  ASSERT_EQ(scored.exit_code, 0) << scored.out << scored.err;
  EXPECT_FALSE(ParseOut(scored).empty()) << scored.out;

  // The script's per-round metrics are curves; the run has its code version.
  CliResult logs = server_.Cli(sam_, {"run", "logs", ida});
  EXPECT_NE(logs.out.find("in a sandbox, no network"), std::string::npos) << logs.out;

  // compare: a table, JSON, and a chart.
  CliResult table = server_.Cli(sam_, {"run", "compare", ida, idb});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("* num_round"), std::string::npos) << table.out;  // differs between the runs
  EXPECT_NE(table.out.find("evaluate.auc"), std::string::npos) << table.out;
  CliResult cmp = server_.Cli(sam_, {"run", "compare", ida, idb, "-o", "json"});
  ASSERT_EQ(cmp.exit_code, 0) << cmp.err;
  Json c = ParseOut(cmp);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0]["id"], ida);
  EXPECT_FALSE(c[0]["metrics"].empty());
  const std::string svg = server_.dir() + "/compare.svg";
  ASSERT_EQ(server_.Cli(sam_, {"run", "compare", ida, idb, "--plot", svg}).exit_code, 0);
  EXPECT_NE(ReadFileOrEmpty(svg).find("<svg"), std::string::npos);

  // search: both runs have an AUC; a floor above both finds none.
  CliResult found = server_.Cli(sam_, {"run", "search", "--metric", "auc", "--min", "0.5", "-o", "json"});
  ASSERT_EQ(found.exit_code, 0) << found.err;
  EXPECT_EQ(ParseOut(found).size(), 2u);
  CliResult none = server_.Cli(sam_, {"run", "search", "--metric", "auc", "--min", "1.01", "-o", "json"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_TRUE(ParseOut(none).empty());

  // plot: the validation loss per round of the script, as a PNG.
  const std::string png = server_.dir() + "/curves.png";
  CliResult plot = server_.Cli(sam_, {"run", "plot", ida, "--out", png, "--metric", "logloss"});
  ASSERT_EQ(plot.exit_code, 0) << plot.err;
  EXPECT_EQ(ReadFileOrEmpty(png).substr(0, 4), "\x89PNG");
  CliResult bad_plot = server_.Cli(sam_, {"run", "plot", ida, "--out", server_.dir() + "/curves.bmp"});
  EXPECT_NE(bad_plot.exit_code, 0);
  EXPECT_NE(bad_plot.err.find(".png or .svg"), std::string::npos) << bad_plot.err;

  // rerun from evaluate: features, split and train are reused; evaluate's inputs did not change, so
  // it is a cache hit unless --no-cache, and then it runs again.
  CliResult cached = server_.Cli(sam_, {"run", "rerun", ida, "--from", "evaluate", "-o", "json"});
  ASSERT_EQ(cached.exit_code, 0) << cached.out << cached.err;
  EXPECT_EQ(StepOf(ParseOut(cached), "evaluate")["cached_from"], ida + "/evaluate");
  CliResult rerun =
      server_.Cli(sam_, {"run", "rerun", ida, "--from", "evaluate", "--no-cache", "-o", "json"});
  ASSERT_EQ(rerun.exit_code, 0) << rerun.out << rerun.err;
  Json r = ParseOut(rerun);
  EXPECT_EQ(r["status"], "succeeded");
  EXPECT_EQ(r["parent_run"], ida);
  EXPECT_EQ(StepOf(r, "train")["cached_from"], ida + "/train");
  EXPECT_EQ(StepOf(r, "evaluate")["cached_from"], "");
  CliResult bad_rerun = server_.Cli(sam_, {"run", "rerun", ida, "--from", "deploy"});
  EXPECT_NE(bad_rerun.exit_code, 0);
  EXPECT_NE(bad_rerun.err.find("no step 'deploy'"), std::string::npos) << bad_rerun.err;

  // A bad parameter changes nothing.
  CliResult bad_param = server_.Cli(
      sam_,
      {"pipeline", "run", SourceDir() + "/examples/weld-pm/pipeline-script.yaml", "-p", "executor=cloud"});
  EXPECT_NE(bad_param.exit_code, 0);
  EXPECT_NE(bad_param.err.find("executor"), std::string::npos) << bad_param.err;
  CliResult list = server_.Cli(sam_, {"run", "list", "-o", "json"});
  EXPECT_EQ(ParseOut(list).size(), 4u);
}

TEST_F(ExperimentTest, ACancelledRunStopsItsScriptAndSaysWho) {
  CliResult queued =
      server_.Cli(sam_, {"pipeline", "run", SourceDir() + "/examples/weld-pm/pipeline-script.yaml", "-p",
                         "num_round=5000", "-p", "eta=0.001", "--no-wait", "-o", "json"});
  ASSERT_EQ(queued.exit_code, 0) << queued.err;
  const std::string id = ParseOut(queued)["id"];
  bool training = false;
  for (int i = 0; i < 600 && !training; ++i) {
    Json run = ParseOut(server_.Cli(sam_, {"run", "show", id, "-o", "json"}));
    training = StepOf(run, "train")["status"] == "running";
    if (!training) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(training);
  CliResult cancel = server_.Cli(sam_, {"run", "cancel", id});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.err;
  Json run;
  for (int i = 0; i < 600; ++i) {
    run = ParseOut(server_.Cli(sam_, {"run", "show", id, "-o", "json"}));
    if (run["status"] != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(run["status"], "cancelled");
  EXPECT_EQ(StepOf(run, "train")["status"], "cancelled");
  EXPECT_EQ(StepOf(run, "register")["status"], "skipped");
  CliResult logs = server_.Cli(sam_, {"run", "logs", id});
  EXPECT_NE(logs.out.find("cancellation requested by sam"), std::string::npos) << logs.out;
  CliResult again = server_.Cli(sam_, {"run", "cancel", id});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("already cancelled"), std::string::npos) << again.err;
}

}  // namespace
}  // namespace takt::testkit
