#include "registry/registry.h"

#include <gtest/gtest.h>

#include "events/events.h"

namespace takt::registry {
namespace {

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::move(*store::OpenSqlite(":memory:"));
    bus_ = std::make_unique<events::EventBus>(db_.get());
    ASSERT_TRUE(bus_->Migrate());
    registry_ = std::make_unique<RegistryService>(db_.get());
    ASSERT_TRUE(registry_->Migrate());
  }
  ModelVersion RegisterOne(const std::string& author) {
    ModelVersion out;
    EXPECT_TRUE(db_->Transaction([&](store::Database& tx) -> Status {
      ModelVersion v{.group = "weld-pm",
                     .blob_id = "abc",
                     .feature_names = {"a", "b"},
                     .dataset = "weld-telemetry",
                     .dataset_version = 1,
                     .run_id = "run-1",
                     .created_by = author};
      TAKT_ASSIGN_OR_RETURN(out, registry_->Register(tx, v, "weld-pm"));
      return Ok();
    }));
    return out;
  }
  int CountEvents(const std::string& type) {
    int n = 0;
    auto events = bus_->List(100);
    for (const auto& e : *events) n += e.type == type;
    return n;
  }
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<events::EventBus> bus_;
  std::unique_ptr<RegistryService> registry_;
};

TEST_F(RegistryTest, VersionsAreNumberedAndStartPending) {
  EXPECT_EQ(RegisterOne("sam").version, 1);
  ModelVersion v2 = RegisterOne("sam");
  EXPECT_EQ(v2.version, 2);
  EXPECT_EQ(v2.status, kPending);
  auto got = registry_->GetVersion("weld-pm", 2);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->feature_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(got->run_id, "run-1");
  EXPECT_EQ(CountEvents(events::kModelVersionRegistered), 2);
}

TEST_F(RegistryTest, AuthorMayNotApproveAndNothingChanges) {
  RegisterOne("sam");
  auto r = registry_->Approve("weld-pm", 1, "sam", "lgtm");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kPermissionDenied);
  EXPECT_EQ(registry_->GetVersion("weld-pm", 1)->status, kPending);
  EXPECT_EQ(CountEvents(events::kModelVersionApproved), 0);
}

TEST_F(RegistryTest, ApprovalWritesTheEventInTheSameTransaction) {
  RegisterOne("sam");
  auto r = registry_->Approve("weld-pm", 1, "ada", "holdout AUC fine");
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->status, kApproved);
  EXPECT_EQ(r->decided_by, "ada");
  EXPECT_EQ(CountEvents(events::kModelVersionApproved), 1);
  auto again = registry_->Approve("weld-pm", 1, "ada", "");
  EXPECT_EQ(again.error().code(), Code::kConflict);
  EXPECT_EQ(CountEvents(events::kModelVersionApproved), 1);
}

TEST_F(RegistryTest, UnknownGroupOrVersionIsNotFound) {
  RegisterOne("sam");
  auto r = registry_->Approve("weld-pm", 7, "ada", "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_EQ(r.error().message(), "model group weld-pm has no version 7");
  EXPECT_EQ(registry_->Approve("paint-pm", 1, "ada", "").error().code(), Code::kNotFound);
}

TEST_F(RegistryTest, RejectThenApproveAgain) {
  RegisterOne("sam");
  ASSERT_TRUE(registry_->Reject("weld-pm", 1, "ada", "recall too low").has_value());
  EXPECT_EQ(registry_->GetVersion("weld-pm", 1)->status, kRejected);
  ASSERT_TRUE(registry_->Approve("weld-pm", 1, "ada", "re-checked").has_value());
  auto groups = registry_->ListGroups();
  ASSERT_EQ(groups->size(), 1u);
  EXPECT_EQ((*groups)[0].approved_versions, 1);
}

}  // namespace
}  // namespace takt::registry
