#include "ml/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace takt::ml {
namespace {

TEST(MetricsTest, RocAucKnownValues) {
  const std::vector<float> labels = {0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(RocAuc({0.1f, 0.2f, 0.8f, 0.9f}, labels), 1.0);  // perfect
  EXPECT_DOUBLE_EQ(RocAuc({0.9f, 0.8f, 0.2f, 0.1f}, labels), 0.0);  // reversed
  EXPECT_DOUBLE_EQ(RocAuc({0.3f, 0.3f, 0.3f, 0.3f}, labels), 0.5);  // constant
  // Ties: pairs (pos, neg) = (0.4, 0.1) 1, (0.4, 0.4) 1/2, (0.8, 0.1) 1, (0.8, 0.4) 1.
  EXPECT_DOUBLE_EQ(RocAuc({0.1f, 0.4f, 0.4f, 0.8f}, labels), 3.5 / 4);
  // 2 positives x 3 negatives, one tie: (0.7 > all) 3 + (0.5 > 0.2, 0.3; = 0.5) 2.5.
  EXPECT_DOUBLE_EQ(RocAuc({0.2f, 0.5f, 0.3f, 0.7f, 0.5f}, {0, 1, 0, 1, 0}), 5.5 / 6);
}

TEST(MetricsTest, RocAucEdgeCases) {
  EXPECT_DOUBLE_EQ(RocAuc({0.1f, 0.9f}, {1, 1}), 0.5);  // one class missing
  EXPECT_DOUBLE_EQ(RocAuc({0.1f, 0.9f}, {0, 0}), 0.5);
  EXPECT_DOUBLE_EQ(RocAuc({}, {}), 0.5);
  EXPECT_TRUE(std::isnan(RocAuc({0.1f}, {0, 1})));
  // A NaN score ranks lowest.
  EXPECT_DOUBLE_EQ(RocAuc({NAN, 0.5f}, {0, 1}), 1.0);
}

TEST(MetricsTest, PrAucIsAveragePrecision) {
  // Ranked: 1 0 1 0 -> precision at the positives 1 and 2/3, each half the recall.
  EXPECT_NEAR(PrAuc({0.9f, 0.8f, 0.7f, 0.6f}, {1, 0, 1, 0}), 0.5 * 1 + 0.5 * 2.0 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(PrAuc({0.9f, 0.8f, 0.1f}, {1, 1, 0}), 1.0);
  // Tied scores form one threshold: at 0.5, recall 1/2 with precision 1/2;
  // at 0.2, recall 1 with precision 2/3.
  EXPECT_NEAR(PrAuc({0.5f, 0.5f, 0.2f}, {1, 0, 1}), 0.5 * 0.5 + 0.5 * 2.0 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(PrAuc({0.5f, 0.4f}, {0, 0}), 0.0);
  // A constant score gives the positive rate.
  EXPECT_DOUBLE_EQ(PrAuc({0.3f, 0.3f, 0.3f, 0.3f}, {1, 0, 0, 0}), 0.25);
}

TEST(MetricsTest, AtThresholdCounts) {
  const ThresholdMetrics m = AtThreshold({0.2f, 0.6f, 0.5f, 0.9f, 0.1f}, {0, 1, 0, 1, 1}, 0.5);
  EXPECT_EQ(m.tp, 2);
  EXPECT_EQ(m.fp, 1);  // 0.5 counts as positive
  EXPECT_EQ(m.tn, 1);
  EXPECT_EQ(m.fn, 1);
  EXPECT_DOUBLE_EQ(m.precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.f1, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.accuracy, 3.0 / 5);

  const ThresholdMetrics none = AtThreshold({0.1f, 0.2f}, {0, 0}, 0.5);
  EXPECT_EQ(none.tn, 2);
  EXPECT_EQ(none.precision, 0);
  EXPECT_EQ(none.recall, 0);
  EXPECT_EQ(none.f1, 0);
  EXPECT_EQ(none.accuracy, 1);
}

}  // namespace
}  // namespace takt::ml
