// End to end on simulated data, the way the showcase pipeline runs: simulate
// the welding robots, compute per-robot rolling features, hold out the last
// 20 % of the time range, train XGBoost, evaluate, and score "now".
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "ml/features.h"
#include "ml/metrics.h"
#include "ml/xgboost_model.h"
#include "sim/weld.h"

namespace takt::ml {
namespace {

class WeldQualityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim::WeldOptions o;
    o.robots = 60;
    o.plants = 2;
    o.days = 30;
    o.seed = 7;
    auto raw = sim::GenerateWeld(o);
    ASSERT_TRUE(raw.has_value()) << raw.error().ToString();
    FeatureSpec spec;
    spec.label_column = "fails_within_24h";
    spec.keep_columns = {"timestamp", "plant", "robot_serial"};
    auto features = ComputeRollingFeatures(*raw, spec);
    ASSERT_TRUE(features.has_value()) << features.error().ToString();
    features_ = new frame::Table(std::move(*features));
  }
  static void TearDownTestSuite() {
    delete features_;
    features_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(features_, nullptr); }

  // Rows before / from the cut at 80 % of the time range.
  static void Split(std::vector<size_t>* train, std::vector<size_t>* holdout) {
    const auto& ts = features_->Find("timestamp")->ints;
    const auto [lo, hi] = std::minmax_element(ts.begin(), ts.end());
    const int64_t cut = *lo + (*hi - *lo) * 8 / 10;
    for (size_t i = 0; i < ts.size(); ++i) (ts[i] < cut ? train : holdout)->push_back(i);
  }

  static std::vector<std::string> FeatureNames() {
    std::vector<std::string> names;
    for (size_t i = 4; i < features_->num_columns(); ++i) names.push_back(features_->columns[i].field.name);
    return names;
  }

  struct Evaluation {
    double auc = 0, pr_auc = 0;
    ThresholdMetrics at_half;
    std::unique_ptr<XgbModel> model;
  };

  static Evaluation TrainAndEvaluate(const std::vector<std::string>& names) {
    std::vector<size_t> train, holdout;
    Split(&train, &holdout);
    Evaluation e;
    auto x = ToMatrix(*features_, names, &train);
    auto y = ToLabels(*features_, "fails_within_24h", &train);
    auto x_test = ToMatrix(*features_, names, &holdout);
    auto y_test = ToLabels(*features_, "fails_within_24h", &holdout);
    EXPECT_TRUE(x && y && x_test && y_test);
    if (!x || !y || !x_test || !y_test) return e;
    TrainOptions options;
    options.params = {{"objective", "binary:logistic"},
                      {"max_depth", "5"},
                      {"eta", "0.1"},
                      {"subsample", "0.8"},
                      {"tree_method", "hist"}};
    options.num_rounds = 150;
    options.nthread = 1;  // the build machine is shared
    auto trained = Train(*x, *y, nullptr, nullptr, options);
    EXPECT_TRUE(trained.has_value()) << trained.error().ToString();
    if (!trained) return e;
    auto model = XgbModel::Load(trained->model_json);
    EXPECT_TRUE(model.has_value()) << model.error().ToString();
    if (!model) return e;
    auto scores = (*model)->Predict(*x_test);
    EXPECT_TRUE(scores.has_value());
    if (!scores) return e;
    e.auc = RocAuc(*scores, *y_test);
    e.pr_auc = PrAuc(*scores, *y_test);
    e.at_half = AtThreshold(*scores, *y_test, 0.5);
    e.model = std::move(*model);
    return e;
  }

  static frame::Table* features_;
};

frame::Table* WeldQualityTest::features_ = nullptr;

TEST_F(WeldQualityTest, RollingFeaturesPredictFailures) {
  const Evaluation with = TrainAndEvaluate(FeatureNames());
  const Evaluation raw =
      TrainAndEvaluate({"motor_current_a", "motor_temp_c", "weld_current_ka", "weld_voltage_v",
                        "electrode_force_kn", "cycle_time_s", "tip_dress_count"});
  std::printf(
      "holdout: rolling features AUC %.4f PR-AUC %.4f (at 0.5: precision %.3f recall %.3f); "
      "raw columns AUC %.4f PR-AUC %.4f\n",
      with.auc, with.pr_auc, with.at_half.precision, with.at_half.recall, raw.auc, raw.pr_auc);
  RecordProperty("auc", std::to_string(with.auc));
  RecordProperty("pr_auc", std::to_string(with.pr_auc));
  RecordProperty("raw_auc", std::to_string(raw.auc));
  EXPECT_GE(with.auc, 0.85);
  EXPECT_GE(with.auc, raw.auc + 0.05) << "rolling windows should beat single readings clearly";
  EXPECT_GT(with.pr_auc, raw.pr_auc);
  // Good, not perfect: the data has sudden failures and benign drifts.
  EXPECT_LT(with.at_half.precision, 1.0);
  EXPECT_LT(with.at_half.recall, 1.0);
  EXPECT_GT(with.at_half.tp, 0);

  // Scoring "now": the latest row per robot.
  ASSERT_NE(with.model, nullptr);
  auto latest = LatestPerEntity(*features_, "robot_serial", "timestamp");
  ASSERT_TRUE(latest.has_value()) << latest.error().ToString();
  ASSERT_EQ(latest->num_rows(), 60u);
  auto x = ToMatrix(*latest, FeatureNames());
  ASSERT_TRUE(x.has_value());
  auto risk = with.model->Predict(*x);
  ASSERT_TRUE(risk.has_value());
  EXPECT_EQ(risk->size(), 60u);
}

TEST_F(WeldQualityTest, ConstantPredictorScoresOneHalf) {
  std::vector<size_t> train, holdout;
  Split(&train, &holdout);
  auto y = ToLabels(*features_, "fails_within_24h", &holdout);
  ASSERT_TRUE(y.has_value());
  EXPECT_DOUBLE_EQ(RocAuc(std::vector<float>(y->size(), 0.1f), *y), 0.5);
}

}  // namespace
}  // namespace takt::ml
