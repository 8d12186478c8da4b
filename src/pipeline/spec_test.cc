#include "pipeline/spec.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace takt::pipeline {
namespace {

std::string Example(const std::string& file = "pipeline.yaml") {
  std::ifstream in(std::string(std::getenv("TAKT_SOURCE_DIR") ? std::getenv("TAKT_SOURCE_DIR") : ".") +
                   "/examples/weld-pm/" + file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(SpecTest, TheWeldExampleParses) {
  auto spec = ParsePipeline(Example());
  ASSERT_TRUE(spec.has_value()) << spec.error().ToString();
  EXPECT_EQ(spec->name, "weld-pm");
  ASSERT_EQ(spec->steps.size(), 5u);
  EXPECT_EQ(spec->steps[1].kind, "train");
  EXPECT_EQ(spec->hash.size(), 64u);
}

TEST(SpecTest, TheScriptAndTuningExamplesParseWithTheirParameters) {
  auto script = ParsePipeline(Example("pipeline-script.yaml"), {{"executor", "slurm"}, {"eta", 0.2}});
  ASSERT_TRUE(script.has_value()) << script.error().ToString();
  ASSERT_NE(script->Step("train"), nullptr);
  EXPECT_EQ(script->Step("train")->kind, "command");
  EXPECT_EQ(script->Step("train")->executor, "slurm");
  EXPECT_EQ(script->Step("train")->config["hyperparameters"]["eta"], 0.2);
  auto tune = ParsePipeline(Example("pipeline-tune.yaml"), {{"trials", 4}});
  ASSERT_TRUE(tune.has_value()) << tune.error().ToString();
  EXPECT_EQ(tune->Step("tune")->config["trials"], 4);
  auto bad = ParsePipeline(Example("pipeline-script.yaml"), {{"executor", "cloud"}});
  ASSERT_FALSE(bad.has_value());
}

void ExpectError(const std::string& yaml, const std::string& fragment) {
  auto spec = ParsePipeline(yaml);
  ASSERT_FALSE(spec.has_value()) << "accepted:\n" << yaml;
  EXPECT_EQ(spec.error().code(), Code::kInvalidArgument);
  EXPECT_NE(spec.error().message().find(fragment), std::string::npos) << spec.error().message();
}

TEST(SpecTest, BadSpecsNameTheLine) {
  ExpectError("name: x\nsteps: [\n", "invalid YAML at line");
  ExpectError("- a\n- b\n", "expected a mapping");
  ExpectError("name: x\nstepz: []\n", "line 2: unknown key 'stepz'");
  ExpectError("name: x\nsteps:\n  - name: f\n    kind: feature\n    dataset: d\n", "unknown kind 'feature'");
  ExpectError("name: x\nsteps:\n  - name: f\n    kind: features\n    dataset: d\n    windowz: [1]\n",
              "line 6: step 'f': unknown key 'windowz'");
  ExpectError("name: x\nsteps:\n  - name: f\n    kind: features\n", "missing required key 'dataset'");
  ExpectError("name: x\nsteps:\n  - name: t\n    kind: train\n    input: features\n    label: y\n",
              "line 5: step 't': input 'features': there is no step 'features'");
  ExpectError(
      "name: x\nsteps:\n  - name: f\n    kind: features\n    dataset: d\n  - name: e\n    kind: evaluate\n   "
      " model: f\n",
      "model 'f' is a table (output 'features' of features step 'f'); a model is needed");
  ExpectError("name: x\nsteps:\n  - name: f\n    kind: features\n    dataset: d\n    windows: [six]\n",
              "windows must hold whole numbers");
  ExpectError(
      "name: x\nsteps:\n  - name: f\n    kind: features\n    dataset: d\n  - name: f\n    kind: features\n"
      "    dataset: d\n",
      "the name is used twice");
}

constexpr const char* kDag = R"(name: dag
parameters:
  rounds: {type: int, default: 50, min: 1, max: 500}
  eta: 0.1
  by: {type: string, default: time, choices: [time, random]}
steps:
  - name: features
    kind: features
    dataset: weld-telemetry
  - name: split
    kind: split
    input: features
    by: ${params.by}
  - name: train
    kind: train
    input: split
    label: y
    rounds: ${params.rounds}
    params: {eta: "${params.eta}", seed: 7}
    retry: {attempts: 3, backoff: 500ms, on: [error]}
    timeout: 10m
  - name: train-b
    kind: train
    input: split.train
    label: y
    resources: {cpus: 2, memory: 1Gi}
  - name: evaluate
    kind: evaluate
    model: train
  - name: report
    kind: fail
    message: "rounds were ${params.rounds}"
    depends_on: [evaluate, train-b]
    on_failure: continue
)";

TEST(SpecTest, ParametersDefaultsOverridesAndSubstitution) {
  auto spec = ParsePipeline(kDag);
  ASSERT_TRUE(spec.has_value()) << spec.error().ToString();
  EXPECT_EQ(spec->params["rounds"], 50);
  EXPECT_EQ(spec->Step("train")->config["rounds"], 50);  // typed: ${params.rounds} stays an int
  EXPECT_DOUBLE_EQ(spec->Step("train")->config["params"]["eta"].get<double>(), 0.1);
  EXPECT_EQ(spec->Step("report")->config["message"], "rounds were 50");
  auto over = ParsePipeline(kDag, Json{{"rounds", "300"}, {"by", "random"}});
  ASSERT_TRUE(over.has_value()) << over.error().ToString();
  EXPECT_EQ(over->Step("train")->config["rounds"], 300);
  EXPECT_EQ(over->Step("split")->config["by"], "random");
  auto bad = ParsePipeline(kDag, Json{{"rounds", "many"}});
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("'many' is not a whole number"), std::string::npos)
      << bad.error().message();
  bad = ParsePipeline(kDag, Json{{"rounds", 5000}});
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("outside the range"), std::string::npos) << bad.error().message();
  bad = ParsePipeline(kDag, Json{{"by", "alphabet"}});
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("is not one of time, random"), std::string::npos);
  bad = ParsePipeline(kDag, Json{{"depth", 3}});
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("parameter 'depth' is not declared"), std::string::npos);
}

TEST(SpecTest, DataEdgesDefaultsAndCommonKeys) {
  auto spec = ParsePipeline(kDag);
  ASSERT_TRUE(spec.has_value()) << spec.error().ToString();
  const StepSpec* train = spec->Step("train");
  ASSERT_NE(train->Input("input"), nullptr);
  EXPECT_EQ(train->Input("input")->output, "train");  // a split's default output
  ASSERT_NE(train->Input("validation"), nullptr);     // and its holdout validates
  EXPECT_EQ(train->Input("validation")->output, "holdout");
  EXPECT_EQ(train->retry.attempts, 3);
  EXPECT_DOUBLE_EQ(train->retry.backoff_seconds, 0.5);
  EXPECT_TRUE(train->retry.Retries("error"));
  EXPECT_FALSE(train->retry.Retries("timeout"));
  EXPECT_DOUBLE_EQ(train->timeout_seconds, 600);
  EXPECT_EQ(spec->Step("train-b")->resources.memory_bytes, int64_t{1} << 30);
  const StepSpec* evaluate = spec->Step("evaluate");
  ASSERT_NE(evaluate->Input("data"), nullptr);  // evaluated on the model's own validation table
  EXPECT_EQ(evaluate->Input("data")->output, "validation");
  EXPECT_EQ(spec->Step("report")->upstream(), (std::vector<std::string>{"evaluate", "train-b"}));
  EXPECT_EQ(spec->Step("report")->on_failure, "continue");
}

TEST(SpecTest, DagErrorsNameTheLine) {
  ExpectError(
      "name: x\nsteps:\n  - name: a\n    kind: fail\n    depends_on: [b]\n  - name: b\n    kind: fail\n"
      "    depends_on: [a]\n",
      "is part of a cycle: a → b → a");
  ExpectError("name: x\nsteps:\n  - name: a\n    kind: fail\n    depends_on: [nope]\n",
              "line 5: step 'a': depends_on 'nope' is not a step");
  ExpectError(
      "name: x\nsteps:\n  - name: f\n    kind: features\n    dataset: d\n  - name: t\n    kind: train\n"
      "    input: f.nope\n    label: y\n",
      "a features step has no output 'nope' (outputs: features, latest)");
  ExpectError("name: x\nsteps:\n  - name: a\n    kind: fail\n    timeout: soon\n",
              "'soon' is not a duration");
  ExpectError("name: x\nsteps:\n  - name: a\n    kind: fail\n    retry: {attempts: 0}\n",
              "attempts must be a whole number from 1 to 100");
  ExpectError("name: x\nsteps:\n  - name: a\n    kind: fail\n    retry: {on: [gremlins]}\n",
              "'gremlins' is not a failure kind");
  ExpectError("name: x\nsteps:\n  - name: a\n    kind: fail\n    network: true\n",
              "only command steps run programs");
  ExpectError("name: x\nsteps:\n  - name: a\n    kind: fail\n    message: ${params.nope}\n",
              "unknown parameter 'nope'");
  ExpectError("name: x\nsteps:\n  - name: a\n    kind: command\n    command: []\n",
              "must be a command line or a list of words");
  ExpectError(
      "name: x\nsteps:\n  - name: a\n    kind: command\n    command: python3 x.py\n    outputs: {model: "
      "table}\n",
      "cannot be an output name");
}

TEST(SpecTest, DurationsAndSizes) {
  EXPECT_DOUBLE_EQ(*ParseDuration("90s"), 90);
  EXPECT_DOUBLE_EQ(*ParseDuration("10m"), 600);
  EXPECT_DOUBLE_EQ(*ParseDuration("1.5h"), 5400);
  EXPECT_DOUBLE_EQ(*ParseDuration("250ms"), 0.25);
  EXPECT_DOUBLE_EQ(*ParseDuration("12"), 12);
  EXPECT_FALSE(ParseDuration("-1s").has_value());
  EXPECT_FALSE(ParseDuration("ten").has_value());
  EXPECT_EQ(*ParseBytes("512Mi"), int64_t{512} << 20);
  EXPECT_EQ(*ParseBytes("2G"), 2000000000);
  EXPECT_FALSE(ParseBytes("lots").has_value());
  EXPECT_FALSE(ParseBytes("0").has_value());
}

TEST(ConditionTest, ParsesConjunctionsAndRejectsGarbage) {
  auto c = ParseCondition("auc >= 0.85 and recall > 0.5");
  ASSERT_TRUE(c.has_value());
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ((*c)[1].metric, "recall");
  EXPECT_DOUBLE_EQ((*c)[0].value, 0.85);
  EXPECT_FALSE(ParseCondition("auc => 0.85").has_value());
  EXPECT_FALSE(ParseCondition("auc >= high").has_value());
  EXPECT_FALSE(ParseCondition("auc >= 0.8 or f1 > 0").has_value());
  EXPECT_FALSE(ParseCondition("auc >= 0.8 and").has_value());
  EXPECT_FALSE(ParseCondition("").has_value());
}

}  // namespace
}  // namespace takt::pipeline
