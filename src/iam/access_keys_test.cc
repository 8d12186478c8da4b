// Access keys: issued once in plaintext, stored sealed under the keyring,
// found by id for signing, and refused once deactivated or deleted.
#include <gtest/gtest.h>

#include "crypto/crypto.h"
#include "iam/iam.h"

namespace takt::iam {
namespace {

class AccessKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::move(*store::OpenSqlite(":memory:"));
    keyring_ = std::make_unique<crypto::Keyring>(crypto::Keyring::FromBytesForTest(std::string(32, 'k')));
    iam_ = std::make_unique<IamService>(db_.get());
    iam_->SetKeyring(keyring_.get());
    ASSERT_TRUE(iam_->Migrate());
    ASSERT_TRUE(iam_->CreatePrincipal("plant-mes", "service", {"service"}, {}).has_value());
    ASSERT_TRUE(iam_->CreatePrincipal("alice", "user", {"data-scientist"}, {}).has_value());
  }
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<IamService> iam_;
};

TEST_F(AccessKeyTest, CreatedKeysAreSealedAtRestAndOpenForSigning) {
  auto created = iam_->CreateAccessKey("plant-mes", "line 4 MES");
  ASSERT_TRUE(created.has_value()) << created.error().ToString();
  const auto& [key, secret] = *created;
  EXPECT_EQ(key.id.size(), 20u);
  EXPECT_EQ(key.id.substr(0, 4), "TKIA");
  EXPECT_EQ(key.id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 4), std::string::npos) << key.id;
  EXPECT_EQ(secret.size(), 40u);
  EXPECT_EQ(key.principal, "plant-mes");
  EXPECT_EQ(key.status, "active");

  auto rows = db_->Query("SELECT secret_sealed, sealed_with FROM access_keys");
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].Text(0).find(secret), std::string::npos) << "the secret is stored sealed";
  EXPECT_EQ((*rows)[0].Text(1), keyring_->key_id());

  auto found = iam_->AccessKeySecret(key.id);
  ASSERT_TRUE(found.has_value()) << found.error().ToString();
  EXPECT_EQ(found->first.name, "plant-mes");
  EXPECT_EQ(found->second, secret);
  EXPECT_FALSE(iam_->GetAccessKey(key.id)->last_used_at.empty()) << "the use is recorded";
  EXPECT_EQ(iam_->AccessKeySecret(key.id)->second, secret) << "again, from the cache";

  auto other = iam_->CreateAccessKey("alice", "");
  ASSERT_TRUE(other.has_value());
  EXPECT_NE(other->first.id, key.id);
  EXPECT_EQ(iam_->ListAccessKeys("")->size(), 2u);
  auto mine = iam_->ListAccessKeys("plant-mes");
  ASSERT_EQ(mine->size(), 1u);
  EXPECT_EQ((*mine)[0].description, "line 4 MES");
  EXPECT_EQ(iam_->ListAccessKeys("nobody").error().code(), Code::kNotFound);
  EXPECT_EQ(iam_->CreateAccessKey("nobody", "").error().code(), Code::kNotFound);
}

TEST_F(AccessKeyTest, UnknownInactiveAndDeletedKeysAreRefused) {
  EXPECT_EQ(iam_->AccessKeySecret("TKIAAAAAAAAAAAAAAAAA").error().code(), Code::kUnauthenticated);
  EXPECT_EQ(iam_->AccessKeySecret("AKIAIOSFODNN7EXAMPLE").error().code(), Code::kUnauthenticated);
  auto created = iam_->CreateAccessKey("plant-mes", "");
  ASSERT_TRUE(created.has_value());
  const std::string id = created->first.id;
  ASSERT_TRUE(iam_->AccessKeySecret(id).has_value());

  ASSERT_TRUE(iam_->SetAccessKeyStatus(id, "inactive"));
  EXPECT_EQ(iam_->AccessKeySecret(id).error().code(), Code::kUnauthenticated);
  EXPECT_EQ(iam_->GetAccessKey(id)->status, "inactive");
  ASSERT_TRUE(iam_->SetAccessKeyStatus(id, "active"));
  EXPECT_EQ(iam_->AccessKeySecret(id)->second, created->second);
  EXPECT_EQ(iam_->SetAccessKeyStatus(id, "paused").error().code(), Code::kInvalidArgument);

  ASSERT_TRUE(iam_->DeleteAccessKey(id));
  EXPECT_EQ(iam_->AccessKeySecret(id).error().code(), Code::kUnauthenticated);
  EXPECT_EQ(iam_->DeleteAccessKey(id).error().code(), Code::kNotFound);
  EXPECT_EQ(iam_->GetAccessKey(id).error().code(), Code::kNotFound);
}

TEST_F(AccessKeyTest, ASecretSealedForOneKeyIdDoesNotOpenForAnother) {
  auto a = iam_->CreateAccessKey("plant-mes", "");
  auto b = iam_->CreateAccessKey("plant-mes", "");
  ASSERT_TRUE(a.has_value() && b.has_value());
  ASSERT_TRUE(
      db_->Exec("UPDATE access_keys SET secret_sealed = (SELECT secret_sealed FROM access_keys WHERE id = "
                "?) WHERE id = ?",
                {a->first.id, b->first.id}));
  auto moved = iam_->AccessKeySecret(b->first.id);
  ASSERT_FALSE(moved.has_value());
  EXPECT_EQ(moved.error().code(), Code::kFailedPrecondition);
}

TEST_F(AccessKeyTest, EveryPersonaMayManageAccessKeysAndTheActionsAreKnown) {
  for (const char* action :
       {"access-key:create", "access-key:list", "access-key:delete", "access-key:update"}) {
    const auto& known = KnownActions();
    EXPECT_NE(std::find(known.begin(), known.end(), action), known.end()) << action;
    for (const auto& persona : PersonaNames()) {
      EXPECT_TRUE(Authorize(Principal{"p", "x", "user", {persona}, {}, ""}, action).allowed)
          << persona << " " << action;
    }
    EXPECT_FALSE(Authorize(Principal{"p", "x", "user", {"service"}, {"access-key:*"}, ""}, action).allowed);
  }
}

TEST_F(AccessKeyTest, WithoutAKeyringNoKeyIsIssued) {
  IamService bare(db_.get());
  EXPECT_EQ(bare.CreateAccessKey("plant-mes", "").error().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace takt::iam
