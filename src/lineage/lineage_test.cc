#include "lineage/lineage.h"

#include <gtest/gtest.h>

namespace takt::lineage {
namespace {

class LineageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::move(*store::OpenSqlite(":memory:"));
    ASSERT_TRUE(Migrate(*db_));
    // dataset v1 → run → features, model artifact → model v1 → endpoint
    ASSERT_TRUE(Record(*db_, {"dataset:weld-telemetry@1", "run:r1", "read by", "features", "t1"}));
    ASSERT_TRUE(Record(*db_, {"run:r1", "artifact:aaa", "wrote", "features/features", "t2"}));
    ASSERT_TRUE(Record(*db_, {"run:r1", "artifact:bbb", "wrote", "train/model", "t3"}));
    ASSERT_TRUE(Record(*db_, {"artifact:bbb", "model:weld-pm@1", "registered as", "register", "t4"}));
    ASSERT_TRUE(Record(*db_, {"model:weld-pm@1", "endpoint:weld-pm-dev", "deployed to", "dev", "t5"}));
    ASSERT_TRUE(Record(*db_, {"dataset:weld-telemetry@2", "run:r2", "read by", "features", "t6"}));
  }
  std::unique_ptr<store::Database> db_;
};

bool Has(const Graph& g, const std::string& from, const std::string& to) {
  for (const auto& e : g.edges)
    if (e.from == from && e.to == to) return true;
  return false;
}

TEST_F(LineageTest, DownstreamOfADatasetVersionReachesTheEndpoint) {
  auto g = Walk(*db_, "dataset:weld-telemetry@1", Direction::kDown);
  ASSERT_TRUE(g.has_value());
  EXPECT_TRUE(Has(*g, "model:weld-pm@1", "endpoint:weld-pm-dev"));
  EXPECT_FALSE(Has(*g, "dataset:weld-telemetry@2", "run:r2"));
  EXPECT_EQ(g->edges.size(), 5u);
}

TEST_F(LineageTest, UpstreamOfAnEndpointReachesTheData) {
  auto g = Walk(*db_, "endpoint:weld-pm-dev", Direction::kUp);
  ASSERT_TRUE(g.has_value());
  EXPECT_TRUE(Has(*g, "dataset:weld-telemetry@1", "run:r1"));
  EXPECT_FALSE(Has(*g, "run:r1", "artifact:aaa"));  // a sibling, not an ancestor
}

TEST_F(LineageTest, AVersionlessDatasetStartsAtEveryVersion) {
  auto g = Walk(*db_, "dataset:weld-telemetry", Direction::kDown);
  ASSERT_TRUE(g.has_value());
  EXPECT_TRUE(Has(*g, "dataset:weld-telemetry@2", "run:r2"));
  EXPECT_TRUE(Has(*g, "model:weld-pm@1", "endpoint:weld-pm-dev"));
}

TEST_F(LineageTest, RecordingTwiceKeepsOneEdgeAndDepthIsBounded) {
  ASSERT_TRUE(Record(*db_, {"run:r1", "artifact:aaa", "wrote", "features/features", "later"}));
  auto rows = db_->Query("SELECT COUNT(*) FROM lineage_edges");
  EXPECT_EQ((*rows)[0].Int(0), 6);
  auto g = Walk(*db_, "dataset:weld-telemetry@1", Direction::kDown, 1);
  EXPECT_EQ(g->edges.size(), 1u);
}

TEST_F(LineageTest, NodeNamesAreNormalised) {
  EXPECT_EQ(*NormalizeNode("weld-telemetry@3"), "dataset:weld-telemetry@3");
  EXPECT_EQ(*NormalizeNode("endpoint:weld-pm-prod"), "endpoint:weld-pm-prod");
  EXPECT_EQ(NormalizeNode("bogus:x").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(NormalizeNode("").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(NormalizeNode("model:").error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace takt::lineage
