#include "pipeline/spec.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace takt::pipeline {
namespace {

std::string Example() {
  std::ifstream in(std::string(std::getenv("TAKT_SOURCE_DIR") ? std::getenv("TAKT_SOURCE_DIR") : ".") +
                   "/examples/weld-pm/pipeline.yaml");
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
              "input 'features' is not an earlier step");
  ExpectError(
      "name: x\nsteps:\n  - name: f\n    kind: features\n    dataset: d\n  - name: e\n    kind: evaluate\n   "
      " model: f\n",
      "model 'f' is a features step; a train step is needed");
  ExpectError("name: x\nsteps:\n  - name: f\n    kind: features\n    dataset: d\n    windows: [six]\n",
              "windows must hold whole numbers");
  ExpectError(
      "name: x\nsteps:\n  - name: f\n    kind: features\n    dataset: d\n  - name: f\n    kind: features\n"
      "    dataset: d\n",
      "the name is used twice");
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
