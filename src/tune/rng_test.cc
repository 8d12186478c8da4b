#include "tune/rng.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace takt::tune {
namespace {

TEST(RngTest, SplitMix64MatchesTheReferenceOutputs) {
  // The first outputs of Vigna's splitmix64.c from state 0.
  uint64_t state = 0;
  EXPECT_EQ(SplitMix64(state), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(SplitMix64(state), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(SplitMix64(state), 0x06c45d188009454fULL);
}

TEST(RngTest, SameSeedSameStreamOtherSeedOtherStream) {
  Rng a(42), b(42), c(43);
  int differences = 0;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    differences += x != c.Next() ? 1 : 0;
  }
  EXPECT_EQ(differences, 100);
}

TEST(RngTest, UniformIsInUnitIntervalWithTheRightMoments) {
  Rng rng(7);
  const int n = 200000;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.Uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum_sq += u * u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.01);
  EXPECT_NEAR(sum_sq / n - (sum / n) * (sum / n), 1.0 / 12, 0.005);
}

TEST(RngTest, BelowCoversEveryValueEvenly) {
  Rng rng(11);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) {
    const uint64_t k = rng.Below(7);
    ASSERT_LT(k, 7u);
    ++counts[k];
  }
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
  EXPECT_EQ(rng.Below(0), 0u);
  EXPECT_EQ(rng.Below(1), 0u);
}

TEST(RngTest, NormalHasMeanZeroVarianceOneAndNormalTails) {
  Rng rng(3);
  const int n = 200000;
  double sum = 0, sum_sq = 0;
  int beyond_two = 0;
  for (int i = 0; i < n; ++i) {
    const double z = rng.Normal();
    ASSERT_TRUE(std::isfinite(z));
    sum += z;
    sum_sq += z * z;
    beyond_two += std::abs(z) > 2 ? 1 : 0;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.02);
  EXPECT_NEAR(sum_sq / n, 1.0, 0.02);
  EXPECT_NEAR(static_cast<double>(beyond_two) / n, 0.0455, 0.004);  // P(|Z| > 2)
}

}  // namespace
}  // namespace takt::tune
