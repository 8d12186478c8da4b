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

TEST(AuthorizeTest, AllowsAgreesWithAuthorizeForEveryPersonaAndAction) {
  std::vector<Principal> principals;
  for (const auto& persona : PersonaNames()) principals.push_back({"p", "x", "user", {persona}, {}, ""});
  principals.push_back({"p", "x", "user", {}, {}, ""});
  principals.push_back({"p", "x", "user", {"admin"}, {"dataset:*"}, ""});
  principals.push_back({"p", "x", "user", {"ml-engineer", "approver"}, {"endpoint:invoke"}, ""});
  for (const auto& p : principals) {
    for (const auto& a : KnownActions()) EXPECT_EQ(Allows(p, a), Authorize(p, a).allowed) << a;
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

TEST_F(IamTest, ProjectsHaveAServiceIdentityAndMembers) {
  ASSERT_TRUE(iam_->CreatePrincipal("sam", "user", {"data-scientist"}, {}));
  ASSERT_TRUE(iam_->CreatePrincipal("dana", "user", {"data-engineer"}, {}));
  auto p = iam_->CreateProject("weld-pm", "predictive maintenance", {"sam"}, "admin");
  ASSERT_TRUE(p.has_value()) << p.error().ToString();
  EXPECT_EQ(p->service_principal, "svc.weld-pm");
  EXPECT_EQ(p->members, std::vector<std::string>{"sam"});
  auto svc = iam_->Get("svc.weld-pm");
  ASSERT_TRUE(svc.has_value());
  EXPECT_EQ(svc->kind, "service");
  // The service identity has no token: it cannot log in from outside.
  auto tokens = db_->Query("SELECT COUNT(*) FROM tokens WHERE principal_id = ?", {svc->id});
  EXPECT_EQ((*tokens)[0].Int(0), 0);

  EXPECT_TRUE(*iam_->IsProjectMember("weld-pm", "sam"));
  EXPECT_TRUE(*iam_->IsProjectMember("weld-pm", "svc.weld-pm"));
  EXPECT_FALSE(*iam_->IsProjectMember("weld-pm", "dana"));
  ASSERT_TRUE(iam_->AddMember("project", "weld-pm", "dana"));
  ASSERT_TRUE(iam_->AddMember("project", "weld-pm", "dana"));  // again: a no-op
  EXPECT_TRUE(*iam_->IsProjectMember("weld-pm", "dana"));
  ASSERT_TRUE(iam_->RemoveMember("project", "weld-pm", "dana"));
  EXPECT_FALSE(*iam_->IsProjectMember("weld-pm", "dana"));

  EXPECT_EQ(iam_->CreateProject("weld-pm", "", {}, "admin").error().code(), Code::kAlreadyExists);
  EXPECT_EQ(iam_->CreateProject("Weld PM", "", {}, "admin").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(iam_->CreateProject("other", "", {"nobody"}, "admin").error().code(), Code::kNotFound);
  EXPECT_EQ(iam_->GetProject("other").error().code(), Code::kNotFound);  // nothing half-written
  EXPECT_EQ(iam_->Get("svc.other").error().code(), Code::kNotFound);
  EXPECT_EQ(iam_->AddMember("project", "nope", "sam").error().code(), Code::kNotFound);
  EXPECT_EQ(iam_->AddMember("team", "weld-pm", "sam").error().code(), Code::kInvalidArgument);
}

TEST_F(IamTest, SubjectsOfNameEveryGroupAndProject) {
  ASSERT_TRUE(iam_->CreatePrincipal("sam", "user", {"data-scientist"}, {}));
  ASSERT_TRUE(iam_->CreatePrincipal("eve", "user", {"data-scientist"}, {}));
  ASSERT_TRUE(iam_->CreateGroup("analysts", {"sam"}, "admin"));
  ASSERT_TRUE(iam_->CreateGroup("night-shift", {"sam", "eve"}, "admin"));
  ASSERT_TRUE(iam_->CreateProject("weld-pm", "", {"sam"}, "admin"));
  EXPECT_EQ(*iam_->SubjectsOf("sam"), (std::vector<std::string>{"principal:sam", "group:analysts",
                                                                "group:night-shift", "project:weld-pm"}));
  EXPECT_EQ(*iam_->SubjectsOf("eve"), (std::vector<std::string>{"principal:eve", "group:night-shift"}));
  // The project's service identity acts as the project, and nothing else.
  EXPECT_EQ(*iam_->SubjectsOf("svc.weld-pm"),
            (std::vector<std::string>{"principal:svc.weld-pm", "project:weld-pm"}));
  EXPECT_EQ(iam_->SubjectsOf("nobody").error().code(), Code::kNotFound);
  auto g = iam_->GetGroup("night-shift");
  EXPECT_EQ(g->members, (std::vector<std::string>{"eve", "sam"}));
  EXPECT_EQ(iam_->CreateGroup("analysts", {}, "admin").error().code(), Code::kAlreadyExists);
}

TEST_F(IamTest, AuditRecordsCarryDataAccessAndFilterByDataset) {
  ASSERT_TRUE(iam_->Audit({.principal = "sam",
                           .action = "dataset:read",
                           .resource = "datasets/weld-telemetry/versions/1",
                           .allowed = true,
                           .status = 200,
                           .detail = "",
                           .access_json = R"({"rows":3})"}));
  ASSERT_TRUE(iam_->Audit({.principal = "sam",
                           .action = "dataset:read",
                           .resource = "datasets/weld-telemetry-2",
                           .allowed = true,
                           .status = 200}));
  ASSERT_TRUE(iam_->Audit({.principal = "sam",
                           .action = "dataset:create",
                           .resource = "datasets/weld-telemetry",
                           .allowed = true,
                           .status = 201}));
  AuditQuery q;
  q.dataset = "weld-telemetry";
  auto r = iam_->ListAudit(q);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 2u);  // not weld-telemetry-2
  EXPECT_EQ((*r)[1].access_json, R"({"rows":3})");
}

}  // namespace
}  // namespace takt::iam
