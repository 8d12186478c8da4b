#include "events/events.h"

#include <gtest/gtest.h>

namespace takt::events {
namespace {

class EventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::move(*store::OpenSqlite(":memory:"));
    bus_ = std::make_unique<EventBus>(db_.get());
    ASSERT_TRUE(bus_->Migrate());
    ASSERT_TRUE(db_->ExecScript("CREATE TABLE things (name TEXT PRIMARY KEY)"));
  }
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<EventBus> bus_;
};

TEST_F(EventsTest, EventIsWrittenOnlyWithItsChange) {
  Status failed = db_->Transaction([](store::Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO things VALUES ('a')"));
    TAKT_RETURN_IF_ERROR(Append(tx, {.type = kModelVersionApproved, .subject = "models/x/versions/1"}));
    return Conflict("something later failed");
  });
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(bus_->List(10)->size(), 0u);
  ASSERT_TRUE(db_->Transaction([](store::Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO things VALUES ('a')"));
    TAKT_RETURN_IF_ERROR(Append(tx, {.type = kModelVersionApproved, .subject = "models/x/versions/1"}));
    return Ok();
  }));
  EXPECT_EQ(bus_->List(10)->size(), 1u);
}

TEST_F(EventsTest, DeliversOncePerRuleAndRetriesFailures) {
  int calls = 0;
  int fail_first = 1;
  bus_->RegisterTarget("deploy", [&](const Event& e, const Rule& r) -> Status {
    EXPECT_EQ(e.type, kModelVersionApproved);
    EXPECT_EQ(r.name, "deploy-approved-to-dev");
    ++calls;
    if (fail_first-- > 0) return Unavailable("endpoint host busy");
    return Ok();
  });
  ASSERT_TRUE(db_->Transaction([](store::Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(Append(tx, {.type = kModelVersionApproved, .subject = "models/x/versions/1"}));
    TAKT_RETURN_IF_ERROR(Append(tx, {.type = kModelVersionRegistered, .subject = "models/x/versions/2"}));
    return Ok();
  }));
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls, 1);
  auto events = bus_->List(10);
  int undelivered = 0;
  for (const auto& e : *events) undelivered += e.delivered_at.empty();
  EXPECT_EQ(undelivered, 1) << "the failed one stays in the outbox";
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls, 2);
  ASSERT_TRUE(bus_->DeliverPending());
  EXPECT_EQ(calls, 2) << "a delivered event is never delivered again";
}

TEST_F(EventsTest, BackgroundDeliveryRunsOnNotify) {
  std::atomic<int> calls{0};
  bus_->RegisterTarget("deploy", [&](const Event&, const Rule&) -> Status {
    ++calls;
    return Ok();
  });
  bus_->Start(std::chrono::milliseconds(50));
  ASSERT_TRUE(db_->Transaction([](store::Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(Append(tx, {.type = kModelVersionApproved, .subject = "s"}));
    return Ok();
  }));
  bus_->Notify();
  for (int i = 0; i < 200 && calls == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  bus_->Stop();
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace takt::events
