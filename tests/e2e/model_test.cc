// The model registry through the real binary: a model trained in a notebook
// (the real XGBoost Python package, at test time) is imported with `takt
// model register --file`, shown, searched, given aliases (which a data
// scientist may not move and an ML engineer may), approved by someone other
// than its importer, and downloaded byte for byte.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/json.h"
#include "e2e/testkit.h"
#include "registry/testing_xgboost.h"

namespace takt::testkit {
namespace {

Json ParseOut(const CliResult& r) {
  auto j = Json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out << r.err;
  return j;
}

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    sam_ = server_.CreatePrincipal("sam", {"data-scientist"});
    eve_ = server_.CreatePrincipal("eve", {"ml-engineer"});
    ada_ = server_.CreatePrincipal("ada", {"approver"});
    ASSERT_FALSE(sam_.empty() || eve_.empty() || ada_.empty());
    ASSERT_EQ(
        server_.Cli(server_.admin_token(), {"project", "create", "weld-pm", "--member", "sam"}).exit_code, 0);
    dir_ = server_.dir() + "/notebook";
    std::filesystem::create_directories(dir_);
    ASSERT_EQ(registry::testing::TrainNotebookModels(dir_), "");
    WriteFile(dir_ + "/metrics.json", R"({"auc": 0.94, "recall": 0.81})");
    WriteFile(dir_ + "/card.json",
              R"({"intended_use": "rank welding guns for maintenance", "limitations": "plant P1 only",
                  "training_data": "weld-telemetry exported 2026-03"})");
  }

  TaktServer server_;
  std::string sam_, eve_, ada_, dir_;
};

TEST_F(ModelTest, ImportShowSearchAliasApproveDownload) {
  // A framework other than xgboost, or a file that is not a model: refused, nothing registered.
  CliResult sklearn = server_.Cli(sam_, {"model", "register", "--file", dir_ + "/weld.ubj", "--framework",
                                         "sklearn", "--group", "weld-pm"});
  EXPECT_EQ(sklearn.exit_code, 2) << sklearn.err;
  EXPECT_NE(sklearn.err.find("framework 'sklearn' is not supported"), std::string::npos) << sklearn.err;
  CliResult garbage = server_.Cli(sam_, {"model", "register", "--file", dir_ + "/metrics.json", "--group",
                                         "weld-pm", "--framework", "xgboost"});
  EXPECT_EQ(garbage.exit_code, 2) << garbage.err;
  EXPECT_NE(garbage.err.find("model file"), std::string::npos) << garbage.err;
  CliResult mismatch = server_.Cli(sam_, {"model", "register", "--file", dir_ + "/weld.ubj", "--group",
                                          "weld-pm", "--features", "force_kn,temp_c"});
  EXPECT_EQ(mismatch.exit_code, 2);
  EXPECT_NE(mismatch.err.find("the schema has 2 features but the model file expects 3"), std::string::npos)
      << mismatch.err;
  EXPECT_EQ(server_.Cli(sam_, {"model", "list", "-o", "json"}).out.find("weld-pm"), std::string::npos);

  // The import.
  CliResult reg = server_.Cli(sam_, {"model",
                                     "register",
                                     "--file",
                                     dir_ + "/weld.ubj",
                                     "--framework",
                                     "xgboost",
                                     "--group",
                                     "weld-pm",
                                     "--project",
                                     "weld-pm",
                                     "--metrics",
                                     dir_ + "/metrics.json",
                                     "--card",
                                     dir_ + "/card.json",
                                     "--sample",
                                     dir_ + "/sample.csv",
                                     "--description",
                                     "welding-gun failure within 24 h",
                                     "-o",
                                     "json"});
  ASSERT_EQ(reg.exit_code, 0) << reg.err;
  Json v = ParseOut(reg);
  EXPECT_EQ(v["version"], 1);
  EXPECT_EQ(v["source"], "import");
  EXPECT_EQ(v["artifact_format"], "ubj");
  EXPECT_EQ(v["feature_names"], Json({"force_kn", "current_ka", "temp_c"}));
  EXPECT_EQ(v["sample_rows"].size(), 5u);

  // show: schema, metrics, lineage, card, aliases, history.
  CliResult show = server_.Cli(sam_, {"model", "show", "weld-pm", "1"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  for (const char* part :
       {"weld-pm v1: PendingManualApproval", "UBJSON", "auc=0.9400", "imported by sam", "Input schema",
        "current_ka", "Model card", "plant P1 only", "History", "registered"}) {
    EXPECT_NE(show.out.find(part), std::string::npos) << part << " missing from:\n" << show.out;
  }
  CliResult list = server_.Cli(sam_, {"model", "list"});
  EXPECT_NE(list.out.find("welding-gun failure within 24 h"), std::string::npos) << list.out;

  // search.
  Json found =
      ParseOut(server_.Cli(sam_, {"model", "search", "--metric", "auc>=0.9", "--sort", "auc", "-o", "json"}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0]["group"], "weld-pm");
  EXPECT_TRUE(
      ParseOut(server_.Cli(sam_, {"model", "search", "--metric", "auc>=0.99", "-o", "json"})).empty());
  CliResult bad = server_.Cli(sam_, {"model", "search", "--status", "approved"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("status 'approved'"), std::string::npos) << bad.err;
  CliResult bad_metric = server_.Cli(sam_, {"model", "search", "--metric", "auc>>0.9"});
  EXPECT_EQ(bad_metric.exit_code, 2);
  EXPECT_NE(bad_metric.err.find("operator '>>'"), std::string::npos) << bad_metric.err;

  // Aliases: a data scientist may not move them, an ML engineer may; champion waits for approval.
  CliResult ds = server_.Cli(sam_, {"model", "alias", "set", "weld-pm", "challenger", "1"});
  EXPECT_EQ(ds.exit_code, 3) << ds.err;
  EXPECT_NE(ds.err.find("PERMISSION_DENIED"), std::string::npos) << ds.err;
  CliResult challenger = server_.Cli(eve_, {"model", "alias", "set", "weld-pm", "challenger", "1"});
  EXPECT_EQ(challenger.exit_code, 0) << challenger.err;
  CliResult early = server_.Cli(eve_, {"model", "alias", "set", "weld-pm", "champion", "1"});
  EXPECT_NE(early.exit_code, 0);
  EXPECT_NE(early.err.find("only an Approved version may be champion"), std::string::npos) << early.err;

  // Approval: not by the importer, by another approver.
  CliResult own = server_.Cli(sam_, {"model", "approve", "weld-pm", "1"});
  EXPECT_EQ(own.exit_code, 3);
  CliResult approve =
      server_.Cli(ada_, {"model", "approve", "weld-pm", "challenger", "--comment", "holdout ok"});
  ASSERT_EQ(approve.exit_code, 0) << approve.err;
  CliResult champion = server_.Cli(eve_, {"model", "alias", "set", "weld-pm", "champion", "1", "-o", "json"});
  ASSERT_EQ(champion.exit_code, 0) << champion.err;
  EXPECT_EQ(ParseOut(champion)["version"], 1);

  Json history = ParseOut(server_.Cli(sam_, {"model", "history", "weld-pm", "champion", "-o", "json"}));
  std::vector<std::string> events;
  for (const auto& e : history) events.push_back(e["event"]);
  EXPECT_EQ(events, (std::vector<std::string>{"registered", "alias moved", "approved", "alias moved"}));
  EXPECT_EQ(history[2]["principal"], "ada");
  EXPECT_EQ(history[3]["principal"], "eve");

  // Download by alias: the bytes the notebook wrote.
  const std::string out = server_.dir() + "/champion.ubj";
  CliResult dl = server_.Cli(sam_, {"model", "download", "weld-pm", "champion", "-o", out});
  ASSERT_EQ(dl.exit_code, 0) << dl.err;
  EXPECT_NE(dl.err.find("UBJSON"), std::string::npos) << dl.err;
  EXPECT_EQ(ReadFileOrEmpty(out), ReadFileOrEmpty(dir_ + "/weld.ubj"));
  CliResult nope = server_.Cli(sam_, {"model", "download", "weld-pm", "shadow", "-o", out});
  EXPECT_EQ(nope.exit_code, 2);
}

}  // namespace
}  // namespace takt::testkit
