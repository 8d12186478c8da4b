#include "iam/iam.h"

#include <gtest/gtest.h>

namespace takt::iam {
namespace {

class IamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::move(*store::OpenSqlite(":memory:"));
    iam_ = std::make_unique<IamService>(db_.get());
    ASSERT_TRUE(iam_->Migrate());
  }
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<IamService> iam_;
};

TEST_F(IamTest, TokensAuthenticateAndAreStoredOnlyHashed) {
  auto created = iam_->CreatePrincipal("alice", "user", {"data-scientist"}, {});
  ASSERT_TRUE(created.has_value()) << created.error().ToString();
  const std::string& token = created->second;
  EXPECT_EQ(token.rfind("takt_", 0), 0u);
  EXPECT_EQ(token.size(), 5u + 64u);
  auto p = iam_->Authenticate(token);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->name, "alice");
  auto rows = db_->Query("SELECT hash FROM tokens");
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_NE((*rows)[0].Text(0), token);
  EXPECT_EQ(iam_->Authenticate("takt_nope").error().code(), Code::kUnauthenticated);
  EXPECT_EQ(iam_->Authenticate("").error().code(), Code::kUnauthenticated);
}

TEST_F(IamTest, BadPrincipalsAreRejectedAndNothingIsWritten) {
  EXPECT_EQ(iam_->CreatePrincipal("bob", "user", {"wizard"}, {}).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(iam_->CreatePrincipal("", "user", {"admin"}, {}).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(iam_->CreatePrincipal("bob", "robot", {"admin"}, {}).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(iam_->CreatePrincipal("bob", "user", {"admin"}, {"dataset:frobnicate"}).error().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(iam_->List()->size(), 0u);
  ASSERT_TRUE(iam_->CreatePrincipal("bob", "user", {"admin"}, {}).has_value());
  EXPECT_EQ(iam_->CreatePrincipal("bob", "user", {"admin"}, {}).error().code(), Code::kAlreadyExists);
  EXPECT_EQ((*db_->Query("SELECT COUNT(*) FROM tokens"))[0].Int(0), 1);
}

TEST(AuthorizeTest, DefaultDenyPersonaAllowAndExplicitDenyWins) {
  Principal scientist{"p-1", "sam", "user", {"data-scientist"}, {}, ""};
  EXPECT_TRUE(Authorize(scientist, "dataset:read").allowed);
  EXPECT_TRUE(Authorize(scientist, "run:logs").allowed);
  EXPECT_FALSE(Authorize(scientist, "model:approve").allowed);
  EXPECT_FALSE(Authorize(scientist, "audit:list").allowed);
  Principal nobody{"p-2", "nobody", "user", {}, {}, ""};
  EXPECT_FALSE(Authorize(nobody, "dataset:list").allowed);
  Principal admin_denied{"p-3", "root", "user", {"admin"}, {"dataset:read"}, ""};
  EXPECT_TRUE(Authorize(admin_denied, "dataset:create").allowed);
  Decision d = Authorize(admin_denied, "dataset:read");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, "explicit deny dataset:read");
}

TEST(AuthorizeTest, EveryPersonaGrantNamesKnownActions) {
  for (const auto& persona : PersonaNames()) {
    Principal p{"p", "x", "user", {persona}, {}, ""};
    bool any = false;
    for (const auto& a : KnownActions()) any = any || Authorize(p, a).allowed;
    EXPECT_TRUE(any) << persona << " allows nothing";
  }
}

TEST_F(IamTest, AuditRecordsAreListedNewestFirstAndFiltered) {
  ASSERT_TRUE(iam_->Audit({0, "", "alice", "dataset:read", "datasets/weld-telemetry", true, 200, ""}));
  ASSERT_TRUE(
      iam_->Audit({0, "", "bob", "model:approve", "models/weld-pm/versions/1", false, 403, "denied"}));
  auto all = iam_->ListAudit({});
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].principal, "bob");
  auto alice = iam_->ListAudit({.principal = "alice"});
  ASSERT_EQ(alice->size(), 1u);
  EXPECT_EQ((*alice)[0].action, "dataset:read");
  auto models = iam_->ListAudit({.resource_prefix = "models/"});
  ASSERT_EQ(models->size(), 1u);
  EXPECT_FALSE((*models)[0].allowed);
}

}  // namespace
}  // namespace takt::iam
