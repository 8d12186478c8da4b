// Project templates through the real binary: `takt project create NAME
// --template T` creates the project on the server and lays out its files;
// the generated pipelines run as they are against the weld telemetry; bad
// input (an unknown template, a directory in use) creates nothing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "core/json.h"
#include "e2e/testkit.h"

namespace takt::testkit {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kTemplateFiles = {".gitignore",    "README.md",    "pipeline-script.yaml",
                                                 "pipeline.yaml", "release.yaml", "script/train.py"};

Json ParseOut(const CliResult& r) {
  auto j = Json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out << r.err;
  return j;
}

class TemplateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    admin_ = server_.admin_token();
    dana_ = server_.CreatePrincipal("dana", {"data-engineer"});
    sam_ = server_.CreatePrincipal("sam", {"data-scientist"});
    ASSERT_FALSE(dana_.empty());
    ASSERT_FALSE(sam_.empty());
  }

  std::string Projects() {
    CliResult r = server_.Cli(admin_, {"project", "list", "-o", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  // The weld telemetry as lifecycle_test ingests it, and the template's project granted to read it.
  void IngestWeldAndCreateProject(const std::string& project_dir) {
    const std::string csv = server_.dir() + "/telemetry.csv";
    CliResult sim =
        RunTakt({"sim", "weld", "--robots", "80", "--plants", "3", "--days", "30", "--seed", "7", "-o", csv});
    ASSERT_EQ(sim.exit_code, 0) << sim.err;
    CliResult ingest = server_.Cli(dana_, {"dataset", "ingest", "weld-telemetry", csv});
    ASSERT_EQ(ingest.exit_code, 0) << ingest.err;
    CliResult create =
        server_.Cli(admin_, {"project", "create", "weld-pm", "--template", "tabular-classification", "--dir",
                             project_dir, "--member", "sam"});
    ASSERT_EQ(create.exit_code, 0) << create.out << create.err;
    CliResult grant = server_.Cli(dana_, {"grant", "create", "--to", "project:weld-pm", "--dataset",
                                          "weld-telemetry", "--mask", "robot_serial=hash"});
    ASSERT_EQ(grant.exit_code, 0) << grant.err;
  }

  // Runs a generated pipeline as sam and checks every step succeeded.
  Json RunPipeline(const std::string& file) {
    CliResult run = server_.Cli(sam_, {"pipeline", "run", file, "-o", "json"});
    EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
    Json r = ParseOut(run);
    EXPECT_EQ(r.value("status", ""), "succeeded") << r.dump(2);
    std::vector<std::string> names;
    for (const auto& s : r["steps"]) {
      names.push_back(s.value("name", ""));
      EXPECT_EQ(s.value("status", ""), "succeeded") << s.dump();
    }
    if (r["steps"].size() > 3)
      std::cout << fs::path(file).filename().string() << ": holdout " << r["steps"][3]["metrics"].dump()
                << std::endl;
    EXPECT_EQ(names, (std::vector<std::string>{"features", "split", "train", "evaluate", "quality-gate",
                                               "register"}));
    return r;
  }

  TaktServer server_;
  std::string admin_, dana_, sam_;
};

TEST_F(TemplateTest, ProjectTemplatesListsTheEmbeddedTemplates) {
  CliResult text = server_.Cli(sam_, {"project", "templates"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("tabular-classification"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("XGBoost"), std::string::npos) << text.out;
  CliResult json = server_.Cli(sam_, {"project", "templates", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  Json list = ParseOut(json);
  ASSERT_TRUE(list.is_array());
  bool found = false;
  for (const auto& t : list) {
    if (t["name"] != "tabular-classification") continue;
    found = true;
    EXPECT_FALSE(t["description"].get<std::string>().empty());
    EXPECT_EQ(t["files"].get<std::vector<std::string>>(), kTemplateFiles);
  }
  EXPECT_TRUE(found) << list.dump();
  // The list is the binary's own: it needs neither a server nor a source tree.
  CliResult offline = RunTakt({"project", "templates"}, {{"TAKT_URL", "http://127.0.0.1:1"}});
  EXPECT_EQ(offline.exit_code, 0) << offline.err;
  EXPECT_NE(offline.out.find("tabular-classification"), std::string::npos);
}

TEST_F(TemplateTest, CreateWithATemplateMakesTheProjectAndLaysOutItsFiles) {
  const std::string dir = server_.dir() + "/weld-pm";
  CliResult create =
      server_.Cli(admin_, {"project", "create", "weld-pm", "--template", "tabular-classification", "--dir",
                           dir, "--member", "sam", "-o", "json"});
  ASSERT_EQ(create.exit_code, 0) << create.out << create.err;
  Json r = ParseOut(create);
  EXPECT_EQ(r["name"], "weld-pm");
  EXPECT_EQ(r["service_principal"], "svc.weld-pm");
  EXPECT_EQ(r["template"]["name"], "tabular-classification");
  EXPECT_EQ(r["template"]["files"].size(), kTemplateFiles.size());

  // On the server: the project with its member.
  Json projects = Json::parse(Projects());
  ASSERT_EQ(projects.size(), 1u) << projects.dump();
  EXPECT_EQ(projects[0]["name"], "weld-pm");
  EXPECT_EQ(projects[0]["members"], Json::array({"sam"}));

  // On disk: every file, placeholders replaced.
  for (const auto& f : kTemplateFiles) {
    const std::string text = ReadFileOrEmpty(dir + "/" + f);
    EXPECT_FALSE(text.empty()) << f;
    EXPECT_EQ(text.find("{{"), std::string::npos) << f << " keeps a placeholder";
  }
  const std::string pipeline = ReadFileOrEmpty(dir + "/pipeline.yaml");
  EXPECT_NE(pipeline.find("\nproject: weld-pm\n"), std::string::npos) << pipeline;
  EXPECT_NE(pipeline.find("dataset: weld-telemetry"), std::string::npos);
  EXPECT_NE(pipeline.find("model_group: weld-pm"), std::string::npos);
  const std::string readme = ReadFileOrEmpty(dir + "/README.md");
  EXPECT_NE(readme.find("takt grant create --to project:weld-pm --dataset weld-telemetry"),
            std::string::npos);
  EXPECT_NE(readme.find("takt pipeline run pipeline.yaml"), std::string::npos);
  EXPECT_NE(ReadFileOrEmpty(dir + "/release.yaml").find("approvers: 2"), std::string::npos);

  // Without --dir the directory is ./NAME; --dataset names the table the pipelines read.
  const std::string cwd = server_.dir() + "/workspace";
  fs::create_directories(cwd);
  const std::string cmd = "cd '" + cwd + "' && TAKT_URL='" + server_.url() + "' TAKT_TOKEN='" + admin_ +
                          "' TAKT_CREDENTIALS_FILE='" + server_.dir() + "/credentials' '" + TaktBinary() +
                          "' project create paint-qa --template tabular-classification --dataset "
                          "paint-telemetry > '" +
                          cwd + "/../create.out' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << ReadFileOrEmpty(server_.dir() + "/create.out");
  const std::string out = ReadFileOrEmpty(server_.dir() + "/create.out");
  EXPECT_NE(out.find("Created project paint-qa"), std::string::npos) << out;
  EXPECT_NE(out.find("pipeline.yaml"), std::string::npos) << out;
  const std::string paint = ReadFileOrEmpty(cwd + "/paint-qa/pipeline.yaml");
  EXPECT_NE(paint.find("dataset: paint-telemetry"), std::string::npos) << paint;
  EXPECT_NE(paint.find("project: paint-qa"), std::string::npos);
  EXPECT_TRUE(fs::exists(cwd + "/paint-qa/script/train.py"));
}

TEST_F(TemplateTest, TheGeneratedPipelineRunsAndRegistersAModel) {
  const std::string dir = server_.dir() + "/weld-pm";
  ASSERT_NO_FATAL_FAILURE(IngestWeldAndCreateProject(dir));
  Json r = RunPipeline(dir + "/pipeline.yaml");
  ASSERT_EQ(r.value("status", ""), "succeeded");
  EXPECT_EQ(r["project"], "weld-pm");
  EXPECT_GE(r["steps"][3]["metrics"]["auc"].get<double>(), 0.85);
  CliResult model = server_.Cli(sam_, {"model", "show", "weld-pm", "1", "-o", "json"});
  ASSERT_EQ(model.exit_code, 0) << model.err;
  Json mv = ParseOut(model);
  EXPECT_EQ(mv["status"], "PendingManualApproval");
  EXPECT_EQ(mv["lineage"]["run_id"], r["id"]);
  EXPECT_EQ(mv["lineage"]["dataset"], "weld-telemetry");
}

TEST_F(TemplateTest, TheGeneratedScriptModePipelineRunsInTheSandbox) {
  const std::string dir = server_.dir() + "/weld-pm";
  ASSERT_NO_FATAL_FAILURE(IngestWeldAndCreateProject(dir));
  Json r = RunPipeline(dir + "/pipeline-script.yaml");
  ASSERT_EQ(r.value("status", ""), "succeeded");
  EXPECT_EQ(r["steps"][2]["kind"], "command");
  EXPECT_GT(r["steps"][2]["metrics"]["validation_auc"].get<double>(), 0.5);
  EXPECT_GE(r["steps"][3]["metrics"]["auc"].get<double>(), 0.85);
  CliResult logs = server_.Cli(sam_, {"run", "logs", r["id"]});
  EXPECT_NE(logs.out.find("saved the model"), std::string::npos) << logs.out;
  CliResult model = server_.Cli(sam_, {"model", "show", "weld-pm", "1", "-o", "json"});
  ASSERT_EQ(model.exit_code, 0) << model.err;
  EXPECT_EQ(ParseOut(model)["lineage"]["run_id"], r["id"]);
}

TEST_F(TemplateTest, AnUnknownTemplateOrADirectoryInUseCreatesNothing) {
  const std::string before = Projects();
  const std::string dir = server_.dir() + "/weld-pm";

  CliResult unknown =
      server_.Cli(admin_, {"project", "create", "weld-pm", "--template", "tabular-regression", "--dir", dir});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.out << unknown.err;
  EXPECT_NE(unknown.err.find("INVALID_ARGUMENT"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("unknown template 'tabular-regression'"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("tabular-classification"), std::string::npos) << unknown.err;
  EXPECT_FALSE(fs::exists(dir));

  fs::create_directories(dir);
  WriteFile(dir + "/notes.md", "my notes");
  CliResult in_use = server_.Cli(
      admin_, {"project", "create", "weld-pm", "--template", "tabular-classification", "--dir", dir});
  EXPECT_NE(in_use.exit_code, 0) << in_use.out;
  EXPECT_NE(in_use.err.find("ALREADY_EXISTS"), std::string::npos) << in_use.err;
  EXPECT_NE(in_use.err.find("directory " + dir + " exists and is not empty"), std::string::npos)
      << in_use.err;
  EXPECT_EQ(ReadFileOrEmpty(dir + "/notes.md"), "my notes");
  EXPECT_FALSE(fs::exists(dir + "/pipeline.yaml"));

  // A file where the directory should be.
  CliResult file = server_.Cli(admin_, {"project", "create", "weld-pm", "--template",
                                        "tabular-classification", "--dir", dir + "/notes.md"});
  EXPECT_NE(file.exit_code, 0);
  EXPECT_NE(file.err.find("is not a directory"), std::string::npos) << file.err;

  // --dir means nothing without --template.
  CliResult stray = server_.Cli(admin_, {"project", "create", "weld-pm", "--dir", server_.dir() + "/other"});
  EXPECT_NE(stray.exit_code, 0);
  EXPECT_NE((stray.out + stray.err).find("--template"), std::string::npos) << stray.out << stray.err;

  EXPECT_EQ(Projects(), before);
  EXPECT_FALSE(fs::exists(server_.dir() + "/other"));
  // The same command with an empty directory then works.
  fs::remove(dir + "/notes.md");
  CliResult ok = server_.Cli(
      admin_, {"project", "create", "weld-pm", "--template", "tabular-classification", "--dir", dir});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_TRUE(fs::exists(dir + "/pipeline.yaml"));
  // The server refusing the project (it exists now) leaves no files either.
  CliResult again = server_.Cli(
      admin_, {"project", "create", "weld-pm", "--template", "tabular-classification", "--dir", dir + "-2"});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("weld-pm"), std::string::npos) << again.err;
  EXPECT_FALSE(fs::exists(dir + "-2"));
}

}  // namespace
}  // namespace takt::testkit
