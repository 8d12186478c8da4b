#include "sim/random.h"

#include <gtest/gtest.h>

#include <cmath>

namespace takt::sim {
namespace {

// Known answers (checked against an independent xoshiro256** + splitmix64):
// a seed must give the same stream on every machine and standard library.
TEST(RngTest, KnownAnswers) {
  Rng r(7);
  EXPECT_EQ(r.Next(), 0xB358FAF74EF9765AULL);
  EXPECT_EQ(r.Next(), 0x475C3D964F482CD2ULL);
  EXPECT_EQ(r.Next(), 0xD6F1D349952C7996ULL);
  EXPECT_EQ(Rng::ForStream(7, 3).Next(), 0xC04C9FFCB8B44319ULL);
}

TEST(RngTest, StreamsDiffer) {
  EXPECT_NE(Rng::ForStream(7, 0).Next(), Rng::ForStream(7, 1).Next());
  EXPECT_NE(Rng::ForStream(7, 0).Next(), Rng::ForStream(8, 0).Next());
}

TEST(RngTest, DistributionsHaveTheirMoments) {
  Rng r(42);
  constexpr int kN = 200000;
  double sum = 0, sum_sq = 0, sum_exp = 0, sum_u = 0;
  for (int i = 0; i < kN; ++i) {
    const double z = r.Normal();
    sum += z;
    sum_sq += z * z;
    sum_exp += r.Exponential(3.0);
    const double u = r.Uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum_u += u;
    const int64_t k = r.UniformInt(-2, 2);
    ASSERT_GE(k, -2);
    ASSERT_LE(k, 2);
  }
  EXPECT_NEAR(sum / kN, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(sum_sq / kN), 1.0, 0.01);
  EXPECT_NEAR(sum_exp / kN, 3.0, 0.05);
  EXPECT_NEAR(sum_u / kN, 0.5, 0.005);
}

}  // namespace
}  // namespace takt::sim
