#include "tune/direction.h"

#include <gtest/gtest.h>

namespace takt::tune {
namespace {

TEST(DirectionTest, ParsesNamesAndShortForms) {
  EXPECT_EQ(ParseDirection("minimize").value(), Direction::kMinimize);
  EXPECT_EQ(ParseDirection("min").value(), Direction::kMinimize);
  EXPECT_EQ(ParseDirection("maximize").value(), Direction::kMaximize);
  EXPECT_EQ(ParseDirection("MAX").value(), Direction::kMaximize);
  EXPECT_EQ(DirectionName(Direction::kMinimize), "minimize");
  EXPECT_EQ(DirectionName(Direction::kMaximize), "maximize");
}

TEST(DirectionTest, RejectsAnythingElse) {
  for (std::string_view bad : {"", "minimise", "up", "maximize "}) {
    auto d = ParseDirection(bad);
    ASSERT_FALSE(d.has_value()) << bad;
    EXPECT_EQ(d.error().code(), Code::kInvalidArgument);
    EXPECT_NE(d.error().message().find("\"" + std::string(bad) + "\""), std::string::npos)
        << d.error().message();
  }
}

TEST(DirectionTest, KnowsMetricsWithPrefixesAndParameters) {
  for (std::string_view m :
       {"logloss", "rmse", "error", "mae", "mlogloss", "holdout_logloss", "validation-rmse",
        "validation_0-mlogloss", "train-error@0.7", "merror", "poisson-nloglik", "val_loss", "HOLDOUT_MAE"}) {
    EXPECT_EQ(DirectionOfMetric(m), Direction::kMinimize) << m;
  }
  for (std::string_view m : {"auc", "aucpr", "pr_auc", "accuracy", "f1", "map", "ndcg", "holdout_auc",
                             "validation-aucpr", "holdout_pr_auc", "eval-ndcg@10", "map@5", "test_f1"}) {
    EXPECT_EQ(DirectionOfMetric(m), Direction::kMaximize) << m;
  }
}

TEST(DirectionTest, UnknownMetricsHaveNoDirection) {
  // Names that merely end like a known metric do not count.
  for (std::string_view m : {"", "throughput", "latency", "xauc", "terror", "holdout_", "mapping"}) {
    EXPECT_EQ(DirectionOfMetric(m), std::nullopt) << m;
  }
}

}  // namespace
}  // namespace takt::tune
