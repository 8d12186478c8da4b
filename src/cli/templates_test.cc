#include "cli/templates.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "pipeline/spec.h"
#include "release/config.h"

namespace takt::cli {
namespace {

namespace fs = std::filesystem;

const TemplateFile* FileOf(const std::vector<TemplateFile>& files, const std::string& path) {
  for (const auto& f : files)
    if (f.path == path) return &f;
  return nullptr;
}

TEST(TemplatesTest, TabularClassificationIsEmbeddedWithItsFilesAndADescription) {
  auto t = FindTemplate("tabular-classification");
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_FALSE((*t)->description.empty());
  EXPECT_EQ((*t)->description.find('\n'), std::string::npos) << "one line";
  for (const char* path : {".gitignore", "README.md", "pipeline.yaml", "pipeline-script.yaml", "release.yaml",
                           "script/train.py"}) {
    const TemplateFile* f = FileOf((*t)->files, path);
    ASSERT_NE(f, nullptr) << path;
    EXPECT_FALSE(f->content.empty()) << path;
  }
  EXPECT_EQ(FileOf((*t)->files, "DESCRIPTION"), nullptr) << "the description is not a project file";
}

TEST(TemplatesTest, AnUnknownTemplateNamesTheAvailableOnes) {
  auto t = FindTemplate("tabular-regression");
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), Code::kInvalidArgument);
  EXPECT_NE(t.error().message().find("unknown template 'tabular-regression'"), std::string::npos);
  EXPECT_NE(t.error().message().find("tabular-classification"), std::string::npos);
}

// Every pipeline of every template validates once its placeholders are replaced.
TEST(TemplatesTest, EveryTemplatePipelineParses) {
  ASSERT_FALSE(Templates().empty());
  for (const auto& t : Templates()) {
    auto files = RenderTemplate(t, TemplateValues("weld-pm", "weld-telemetry"));
    ASSERT_TRUE(files.has_value()) << files.error().ToString();
    int pipelines = 0;
    for (const auto& f : *files) {
      EXPECT_EQ(f.content.find("{{"), std::string::npos)
          << t.name << "/" << f.path << ": a placeholder is left";
      if (!f.path.ends_with(".yaml") || f.path == "release.yaml") continue;
      ++pipelines;
      auto spec = pipeline::ParsePipeline(f.content);
      ASSERT_TRUE(spec.has_value()) << t.name << "/" << f.path << ": " << spec.error().ToString();
      EXPECT_EQ(spec->project, "weld-pm") << f.path;
      EXPECT_FALSE(spec->steps.empty());
    }
    EXPECT_GE(pipelines, 1) << t.name;
  }
}

TEST(TemplatesTest, TabularClassificationPipelinesHaveTheStandardSteps) {
  auto t = FindTemplate("tabular-classification");
  ASSERT_TRUE(t.has_value());
  auto files = RenderTemplate(**t, TemplateValues("paint-qa", "paint-telemetry"));
  ASSERT_TRUE(files.has_value());
  for (const char* path : {"pipeline.yaml", "pipeline-script.yaml"}) {
    auto spec = pipeline::ParsePipeline(FileOf(*files, path)->content);
    ASSERT_TRUE(spec.has_value()) << path << ": " << spec.error().ToString();
    std::vector<std::string> kinds;
    for (const auto& s : spec->steps) kinds.push_back(s.kind);
    const std::string train = std::string(path) == "pipeline.yaml" ? "train" : "command";
    EXPECT_EQ(kinds,
              (std::vector<std::string>{"features", "split", train, "evaluate", "condition", "register"}))
        << path;
    EXPECT_EQ(spec->Step("features")->config["dataset"], "paint-telemetry") << path;
    EXPECT_EQ(spec->Step("register")->config["model_group"], "paint-qa") << path;
    EXPECT_EQ(spec->Step("quality-gate")->config["expression"], "auc >= 0.85") << path;
    EXPECT_TRUE(spec->Step("train")->retry.Retries("lost")) << path;
    // A parameter override reaches the gate.
    auto strict = pipeline::ParsePipeline(FileOf(*files, path)->content, Json{{"min_auc", "0.9"}});
    ASSERT_TRUE(strict.has_value()) << strict.error().ToString();
    EXPECT_EQ(strict->Step("quality-gate")->config["expression"], "auc >= 0.9");
  }
  const TemplateFile* script = FileOf(*files, "pipeline-script.yaml");
  auto spec = pipeline::ParsePipeline(script->content);
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->Step("train")->config["code"], "script");
  EXPECT_NE(FileOf(*files, "script/train.py")->content.find("SM_CHANNEL_"), std::string::npos);
}

TEST(TemplatesTest, ReleaseConfigIsOneTaktAcceptsWithThreeStagesAndTheirGates) {
  auto t = FindTemplate("tabular-classification");
  ASSERT_TRUE(t.has_value());
  auto files = RenderTemplate(**t, TemplateValues("weld-pm", "weld-telemetry"));
  ASSERT_TRUE(files.has_value());
  auto cfg = release::ParseConfig(FileOf(*files, "release.yaml")->content);
  ASSERT_TRUE(cfg.has_value()) << cfg.error().ToString();
  EXPECT_EQ(cfg->model_group, "weld-pm");
  EXPECT_EQ(cfg->StageNames(), "dev, int, prod");
  for (const auto& s : cfg->stages) {
    EXPECT_GE(s.max_replicas, s.min_replicas) << s.name;
    EXPECT_TRUE(s.smoke_test.has_value()) << s.name;
  }
  EXPECT_FALSE(cfg->Stage("dev")->approval.has_value());
  EXPECT_EQ(cfg->Stage("int")->approval->approvers, 1);
  EXPECT_EQ(cfg->Stage("prod")->approval->approvers, 2);
  EXPECT_EQ(cfg->Stage("prod")->strategy, release::Strategy::kCanary);
  EXPECT_EQ(cfg->Stage("int")->strategy, release::Strategy::kBlueGreen);
  EXPECT_EQ(cfg->Stage("prod")->quality->metric, "auc");
  EXPECT_DOUBLE_EQ(cfg->Stage("prod")->quality->max_regression, 0.01);
  // The weld-pm example is the same config with a short canary for the demo.
  std::ifstream in(std::string(TAKT_SOURCE_DIR) + "/examples/weld-pm/release.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  auto example = release::ParseConfig(ss.str(), "examples/weld-pm/release.yaml");
  ASSERT_TRUE(example.has_value()) << example.error().ToString();
  EXPECT_DOUBLE_EQ(example->Stage("prod")->duration_seconds, 60);
}

TEST(TemplatesTest, SubstituteReplacesKnownPlaceholdersAndRefusesOthers) {
  auto s = Substitute("name: {{project}}\ndataset: {{ dataset }}@1\n", TemplateValues("p", "d"));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(*s, "name: p\ndataset: d@1\n");
  auto unknown = Substitute("x: {{owner}}", TemplateValues("p", "d"));
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code(), Code::kInvalidArgument);
  EXPECT_NE(unknown.error().message().find("{{owner}}"), std::string::npos);
  EXPECT_FALSE(Substitute("x: {{project", TemplateValues("p", "d")).has_value());
  EXPECT_EQ(*Substitute("${params.x} { } }}", {}), "${params.x} { } }}");
}

TEST(TemplatesTest, OnlyANewOrEmptyDirectoryTakesAProject) {
  const fs::path root = fs::temp_directory_path() / ("takt-templates-" + std::to_string(::getpid()));
  fs::remove_all(root);
  EXPECT_TRUE(CheckProjectDirectory((root / "new").string()).has_value());
  fs::create_directories(root / "empty");
  EXPECT_TRUE(CheckProjectDirectory((root / "empty").string()).has_value());
  fs::create_directories(root / "full");
  std::ofstream(root / "full" / "notes.txt") << "mine";
  auto full = CheckProjectDirectory((root / "full").string());
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error().code(), Code::kAlreadyExists);
  EXPECT_NE(full.error().message().find("not empty"), std::string::npos);
  auto file = CheckProjectDirectory((root / "full" / "notes.txt").string());
  ASSERT_FALSE(file.has_value());
  EXPECT_EQ(file.error().code(), Code::kFailedPrecondition);

  auto written = WriteProjectFiles((root / "new").string(), {{"a.txt", "A"}, {"sub/dir/b.txt", "B"}});
  ASSERT_TRUE(written.has_value()) << written.error().ToString();
  EXPECT_EQ(written->size(), 2u);
  std::ifstream in(root / "new" / "sub" / "dir" / "b.txt");
  std::string b;
  in >> b;
  EXPECT_EQ(b, "B");
  fs::remove_all(root);
}

}  // namespace
}  // namespace takt::cli
