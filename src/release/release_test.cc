#include "release/release.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "blob/blob_store.h"
#include "core/json.h"
#include "core/temp_dir.h"
#include "core/time.h"
#include "crypto/keyring.h"
#include "ml/xgboost_model.h"

namespace takt::release {
namespace {

using ::testing::HasSubstr;

const std::vector<std::string> kFeatures = {"motor_temp_c", "weld_current_ka", "cycle_time_s"};

std::string TrainTinyModel(size_t which) {
  ml::Matrix x;
  x.rows = 200;
  x.cols = kFeatures.size();
  uint64_t s = 42;
  for (size_t i = 0; i < x.rows * x.cols; ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x.values.push_back(static_cast<float>((s >> 40) & 0xFFFF) / 65536.0f);
  }
  std::vector<float> y;
  for (size_t r = 0; r < x.rows; ++r) y.push_back(x.values[r * x.cols + which] > 0.5f ? 1.0f : 0.0f);
  ml::TrainOptions opts;
  opts.params = {
      {"objective", "binary:logistic"}, {"tree_method", "hist"}, {"max_depth", "2"}, {"seed", "7"}};
  opts.num_rounds = 5;
  opts.nthread = 1;
  auto trained = ml::Train(x, y, nullptr, nullptr, opts);
  EXPECT_TRUE(trained.has_value()) << trained.error().ToString();
  return trained ? trained->model_json : std::string();
}

// dev all-at-once; int one approval; prod two approvers and a canary.
constexpr const char* kConfig = R"(model_group: weld-pm
stages:
  - name: dev
    gates:
      - smoke_test: {requests: 5, max_p99_latency: 5s}
  - name: int
    gates:
      - quality: {metric: auc, compare_to: prod, max_regression: 0.01}
      - approval: {approvers: 1}
      - smoke_test: true
  - name: prod
    replicas: {min: 2, max: 6}
    strategy: {type: canary, percent: 50, duration: 300ms, min_requests: 10,
               rollback_on: {error_rate: 0.05, p99_latency: 2s}}
    gates:
      - quality: {metric: auc, compare_to: prod, max_regression: 0.01}
      - approval: {approvers: 2, persona: approver}
      - smoke_test: true
)";

class ReleaseTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = new std::string(TrainTinyModel(0)); }
  static void TearDownTestSuite() { delete model_; }

  void SetUp() override {
    keyring_ = std::make_unique<crypto::Keyring>(crypto::Keyring::FromBytesForTest(std::string(32, 'r')));
    auto blobs = blob::BlobStore::Open(dir_.path() / "blobs", keyring_.get());
    ASSERT_TRUE(blobs.has_value()) << blobs.error().ToString();
    blobs_ = std::move(*blobs);
    auto db = store::OpenSqlite((dir_.path() / "takt.db").string());
    ASSERT_TRUE(db.has_value()) << db.error().ToString();
    db_ = std::move(*db);
    iam_ = std::make_unique<iam::IamService>(db_.get());
    ASSERT_TRUE(iam_->Migrate());
    bus_ = std::make_unique<events::EventBus>(db_.get());
    ASSERT_TRUE(bus_->Migrate());
    registry_ = std::make_unique<registry::RegistryService>(db_.get());
    ASSERT_TRUE(registry_->Migrate());
    serving_ = std::make_unique<serving::ServingService>(db_.get(), blobs_.get(), registry_.get());
    ASSERT_TRUE(serving_->Migrate());
    releases_ = std::make_unique<ReleaseService>(db_.get(), registry_.get(), serving_.get(), iam_.get());
    ASSERT_TRUE(releases_->Migrate());
    for (auto [name, persona] : std::vector<std::pair<std::string, std::string>>{
             {"sam", "data-scientist"}, {"ada", "approver"}, {"bob", "approver"}, {"eve", "ml-engineer"}}) {
      auto p = iam_->CreatePrincipal(name, "user", {persona}, {});
      ASSERT_TRUE(p.has_value()) << p.error().ToString();
    }
  }

  // Registered by sam (the author) with `auc`, approved by ada.
  int RegisterApproved(double auc) {
    auto blob_id = blobs_->Put(*model_);
    EXPECT_TRUE(blob_id.has_value());
    int version = 0;
    Status s = db_->Transaction([&](store::Database& tx) -> Status {
      registry::ModelVersion v;
      v.group = "weld-pm";
      v.blob_id = *blob_id;
      v.feature_names = kFeatures;
      v.metrics_json = Json{{"auc", auc}}.dump();
      v.run_id = "run-test";
      v.dataset = "weld-telemetry";
      v.dataset_version = 1;
      v.created_by = "sam";
      TAKT_ASSIGN_OR_RETURN(auto r, registry_->Register(tx, v, "weld-pm"));
      version = r.version;
      return Ok();
    });
    EXPECT_TRUE(s.has_value()) << s.error().ToString();
    EXPECT_TRUE(registry_->Approve("weld-pm", version, "ada", "ok"));
    return version;
  }

  // The approval event of `version` as the bus delivers it.
  events::Event ApprovedEvent(int version, const std::string& id) {
    return {.id = id,
            .type = events::kModelVersionApproved,
            .source = "/registry",
            .subject = "models/weld-pm/versions/" + std::to_string(version),
            .data_json = Json{{"group", "weld-pm"}, {"version", version}, {"decided_by", "ada"}}.dump()};
  }

  Release Latest() {
    auto list = releases_->List("weld-pm", 1);
    EXPECT_TRUE(list.has_value() && !list->empty());
    return list && !list->empty() ? list->front() : Release{};
  }

  void TickUntil(const std::function<bool()>& done, int max_ms = 5000) {
    for (int waited = 0; waited < max_ms; waited += 20) {
      ASSERT_TRUE(releases_->Tick());
      if (done()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "not settled; latest release: " << Latest().status << " at " << Latest().stage << " ("
           << Latest().phase << "): " << Latest().message;
  }

  std::vector<serving::Variant> Variants(const std::string& endpoint) {
    auto e = serving_->Get(endpoint);
    return e ? e->variants : std::vector<serving::Variant>{};
  }

  // Takes a version through dev, int and prod (both approvals) to Succeeded.
  void ReleaseToProd(int version, const std::string& event) {
    ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(version, event)));
    TickUntil([&] { return Latest().status == kWaiting && Latest().stage == "int"; });
    ASSERT_TRUE(releases_->Approve("weld-pm", "int", "bob", "int ok"));
    TickUntil([&] { return Latest().status == kWaiting && Latest().stage == "prod"; });
    ASSERT_TRUE(releases_->Approve("weld-pm", "prod", "ada", "prod ok"));
    ASSERT_TRUE(releases_->Approve("weld-pm", "prod", "bob", "prod ok too"));
    TickUntil([&] { return Latest().status != kInProgress; });
    ASSERT_EQ(Latest().status, kSucceeded) << Latest().message;
  }

  static std::string* model_;
  TempDir dir_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<blob::BlobStore> blobs_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<iam::IamService> iam_;
  std::unique_ptr<events::EventBus> bus_;
  std::unique_ptr<registry::RegistryService> registry_;
  std::unique_ptr<serving::ServingService> serving_;
  std::unique_ptr<ReleaseService> releases_;
};

std::string* ReleaseTest::model_ = nullptr;

TEST(ReleaseConfigTest, ParsesStagesGatesAndStrategies) {
  auto c = ParseConfig(kConfig);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->StageNames(), "dev, int, prod");
  const StageConfig* prod = c->Stage("prod");
  ASSERT_NE(prod, nullptr);
  EXPECT_EQ(prod->strategy, Strategy::kCanary);
  EXPECT_EQ(prod->canary_percent, 50);
  EXPECT_DOUBLE_EQ(prod->duration_seconds, 0.3);
  EXPECT_DOUBLE_EQ(prod->max_error_rate, 0.05);
  EXPECT_DOUBLE_EQ(prod->max_p99_latency_ms, 2000);
  EXPECT_EQ(prod->min_replicas, 2);
  EXPECT_EQ(prod->approval->approvers, 2);
  EXPECT_EQ(prod->entry_gates, (std::vector<std::string>{"quality", "approval"}));
  EXPECT_TRUE(prod->smoke_test.has_value());
  EXPECT_EQ(c->Stage("dev")->smoke_test->requests, 5);
  EXPECT_FALSE(c->Stage("dev")->approval.has_value());
  EXPECT_EQ(c->Stage("staging"), nullptr);
}

TEST(ReleaseConfigTest, BadConfigsNameThePlace) {
  struct Case {
    std::string yaml, want;
  };
  for (const auto& c : std::vector<Case>{
           {"model_group: g\nstages:\n  - name: qa\n", "stages[0].name: 'qa' is not a stage"},
           {"model_group: g\nstages:\n  - name: int\n  - name: dev\n",
            "stages[1].name: 'dev' is listed twice or out of order"},
           {"model_group: g\nstages:\n  - name: dev\n    gates:\n      - quality: {metric: auc, compare_to: "
            "prod}\n",
            "compare_to: stage 'prod' is not one of the stages (dev)"},
           {"model_group: g\nstages:\n  - name: dev\n    strategy: {type: rolling}\n",
            "stages[0].strategy.type: 'rolling' is not a strategy"},
           {"model_group: g\nstages:\n  - name: dev\n    gates:\n      - approval: {approvers: 9}\n",
            "stages[0].gates[0].approval.approvers: expected a whole number from 1 to 5"},
           {"model_group: g\nstages:\n  - name: dev\n    gates:\n      - approval: {timeout: soon}\n",
            "approval.timeout: 'soon' is not a duration"},
           {"model_group: g\nstages:\n  - name: dev\n    gates:\n      - deploy_on_friday: true\n",
            "unknown gate 'deploy_on_friday'"},
           {"model_group: g\nstages: []\n", "stages: needs a list of stages"},
           {"stages:\n  - name: dev\n", "needs model_group"},
           {"model_group: g\nstages: [\n", "not valid YAML"},
           {"model_group: g\nstages:\n  - name: dev\n    replicas: {min: 0}\n",
            "0 needs autoscaling.scale_to_zero"},
       }) {
    auto r = ParseConfig(c.yaml);
    ASSERT_FALSE(r.has_value()) << c.yaml;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.error().message(), HasSubstr(c.want)) << c.yaml;
  }
}

TEST_F(ReleaseTest, ApprovalEventReleasesToDevOnceThenWaitsAtInt) {
  int v1 = RegisterApproved(0.90);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v1, "ev-1")));
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v1, "ev-1")));  // delivered twice
  TickUntil([&] { return Latest().status == kWaiting; });
  auto list = releases_->List("weld-pm", 10);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->size(), 1u) << "one event, one release";
  Release r = Latest();
  EXPECT_EQ(r.stage, "int");
  EXPECT_EQ(r.phase, "approval");
  auto found = serving_->Find("weld-pm-dev");
  ASSERT_TRUE(found.has_value()) << found.error().ToString();
  EXPECT_EQ((*found)->version, v1);
  EXPECT_FALSE(serving_->Get("weld-pm-int").has_value()) << "nothing reaches int before its approval";
  auto full = releases_->Get(r.id);
  ASSERT_TRUE(full.has_value());
  std::vector<std::string> steps;
  for (const auto& l : full->log) steps.push_back(l.what);
  EXPECT_THAT(steps, ::testing::ElementsAre("started", "deployed", "smoke.passed", "stage.succeeded",
                                            "gate.quality.passed", "approval.requested"));
  auto history = releases_->History("weld-pm", "", "dev");
  ASSERT_TRUE(history.has_value());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ(history->front().version, v1);
  EXPECT_EQ(history->front().run_id, "run-test");
  EXPECT_EQ(history->front().to, "");
}

TEST_F(ReleaseTest, ApprovalsAreCheckedAndProdNeedsTwoDistinctApprovers) {
  ASSERT_TRUE(releases_->PutConfig("weld-pm", kConfig, "eve"));
  int v1 = RegisterApproved(0.90);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v1, "ev-1")));
  TickUntil([&] { return Latest().status == kWaiting; });

  auto e = releases_->Approve("no-such-group", "int", "bob", "");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Code::kNotFound);
  e = releases_->Approve("weld-pm", "staging", "bob", "");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(e.error().message(), HasSubstr("(dev, int, prod)"));
  e = releases_->Approve("weld-pm", "prod", "bob", "");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(e.error().message(), HasSubstr("not waiting for approval at prod: it is at int"));
  e = releases_->Approve("weld-pm", "dev", "bob", "");
  ASSERT_FALSE(e.has_value());
  EXPECT_THAT(e.error().message(), HasSubstr("has no approval gate"));
  e = releases_->Approve("weld-pm", "int", "sam", "my own model");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Code::kPermissionDenied);
  EXPECT_THAT(e.error().message(), HasSubstr("sam is the author of weld-pm v1"));
  e = releases_->Approve("weld-pm", "int", "eve", "");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Code::kPermissionDenied);
  EXPECT_THAT(e.error().message(), HasSubstr("does not hold persona approver"));
  EXPECT_EQ(Latest().phase, "approval") << "refused approvals change nothing";

  ASSERT_TRUE(releases_->Approve("weld-pm", "int", "bob", "int ok"));
  TickUntil([&] { return Latest().status == kWaiting && Latest().stage == "prod"; });
  EXPECT_EQ((*serving_->Find("weld-pm-int"))->version, v1);
  ASSERT_TRUE(releases_->Approve("weld-pm", "prod", "ada", "first"));
  auto again = releases_->Approve("weld-pm", "prod", "ada", "second time");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), Code::kConflict);
  ASSERT_TRUE(releases_->Tick());
  EXPECT_EQ(Latest().phase, "approval") << "one approver is not enough for prod";
  EXPECT_FALSE(serving_->Get("weld-pm-prod").has_value());
  ASSERT_TRUE(releases_->Approve("weld-pm", "prod", "bob", "second"));
  TickUntil([&] { return Latest().status == kSucceeded; });
  EXPECT_EQ((*serving_->Find("weld-pm-prod"))->version, v1);

  auto served = releases_->History("weld-pm", NowIso(), "prod");
  ASSERT_TRUE(served.has_value());
  ASSERT_EQ(served->size(), 1u);
  EXPECT_EQ(served->front().approved_by, (std::vector<std::string>{"ada", "bob"}));
  auto before = releases_->History("weld-pm", "2020-01-01T00:00Z", "");
  ASSERT_TRUE(before.has_value());
  EXPECT_TRUE(before->empty());
  auto bad = releases_->History("weld-pm", "yesterday", "");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
}

TEST_F(ReleaseTest, QualityGateStopsAWorseVersionBeforeInt) {
  ASSERT_TRUE(releases_->PutConfig("weld-pm", kConfig, "eve"));
  ReleaseToProd(RegisterApproved(0.90), "ev-1");
  int v2 = RegisterApproved(0.85);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v2, "ev-2")));
  TickUntil([&] { return Latest().status != kInProgress; });
  EXPECT_EQ(Latest().status, kFailed);
  EXPECT_EQ(Latest().stage, "int");
  EXPECT_THAT(Latest().message, HasSubstr("auc 0.85 vs 0.9 for prod's v1"));
  EXPECT_EQ((*serving_->Find("weld-pm-dev"))->version, v2) << "dev has it";
  EXPECT_EQ((*serving_->Find("weld-pm-int"))->version, 1) << "int does not";
}

TEST_F(ReleaseTest, CanaryWithErrorsIsRolledBackAutomatically) {
  ASSERT_TRUE(releases_->PutConfig("weld-pm", kConfig, "eve"));
  ReleaseToProd(RegisterApproved(0.90), "ev-1");
  int v2 = RegisterApproved(0.91);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v2, "ev-2")));
  TickUntil([&] { return Latest().stage == "int" && Latest().status == kWaiting; });
  ASSERT_TRUE(releases_->Approve("weld-pm", "int", "bob", ""));
  TickUntil([&] { return Latest().stage == "prod" && Latest().status == kWaiting; });
  ASSERT_TRUE(releases_->Approve("weld-pm", "prod", "ada", ""));
  ASSERT_TRUE(releases_->Approve("weld-pm", "prod", "bob", ""));
  TickUntil([&] { return Latest().phase == "observe"; });
  auto during = Variants("weld-pm-prod");
  ASSERT_EQ(during.size(), 2u);
  EXPECT_EQ(during[0].model_version, 1);
  EXPECT_EQ(during[0].weight, 50);
  EXPECT_EQ(during[1].model_version, v2);
  // Clients the new version does not fit: 400s on the canary.
  for (int i = 0; i < 12; ++i)
    serving_->Record("weld-pm-prod", "weld-pm-v2", i % 3 ? 400 : 200, 1.0, "missing");
  TickUntil([&] { return Latest().status != kInProgress; });
  EXPECT_EQ(Latest().status, kRolledBack);
  EXPECT_THAT(Latest().message, HasSubstr("error rate 0.6667 > 0.05 over 12 requests"));
  auto after = Variants("weld-pm-prod");
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].model_version, 1);
  EXPECT_EQ(after[0].weight, 100);
  auto served = releases_->History("weld-pm", "", "prod");
  ASSERT_TRUE(served.has_value());
  EXPECT_EQ(served->front().version, 1) << "the rolled back canary never served prod in the history";
}

TEST_F(ReleaseTest, HealthyCanaryIsPromotedAfterItsDuration) {
  ASSERT_TRUE(releases_->PutConfig("weld-pm", kConfig, "eve"));
  ReleaseToProd(RegisterApproved(0.90), "ev-1");
  int v2 = RegisterApproved(0.92);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v2, "ev-2")));
  TickUntil([&] { return Latest().stage == "int" && Latest().status == kWaiting; });
  ASSERT_TRUE(releases_->Approve("weld-pm", "int", "bob", ""));
  TickUntil([&] { return Latest().stage == "prod" && Latest().status == kWaiting; });
  ASSERT_TRUE(releases_->Approve("weld-pm", "prod", "ada", ""));
  ASSERT_TRUE(releases_->Approve("weld-pm", "prod", "bob", ""));
  TickUntil([&] { return Latest().phase == "observe"; });
  for (int i = 0; i < 20; ++i) serving_->Record("weld-pm-prod", "weld-pm-v2", 200, 1.0);
  TickUntil([&] { return Latest().status != kInProgress; });
  EXPECT_EQ(Latest().status, kSucceeded) << Latest().message;
  auto after = Variants("weld-pm-prod");
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].model_version, v2);
  auto served = releases_->History("weld-pm", "", "prod");
  ASSERT_TRUE(served.has_value());
  ASSERT_EQ(served->size(), 2u);
  EXPECT_EQ(served->front().version, v2);
  EXPECT_FALSE(served->back().to.empty()) << "v1's time in prod has ended";
}

TEST_F(ReleaseTest, FailedSmokeTestPutsTheStageBack) {
  ASSERT_TRUE(releases_->PutConfig("weld-pm",
                                   "model_group: weld-pm\nstages:\n  - name: dev\n    gates:\n"
                                   "      - smoke_test: {requests: 3, max_p99_latency: 0ms}\n",
                                   "eve"));
  int v1 = RegisterApproved(0.9);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v1, "ev-1")));
  TickUntil([&] { return Latest().status != kInProgress; });
  EXPECT_EQ(Latest().status, kFailed);
  EXPECT_THAT(Latest().message, HasSubstr("smoke test of weld-pm-v1 at dev failed: 3 requests"));
  EXPECT_FALSE(serving_->Get("weld-pm-dev").has_value()) << "a first deploy that fails leaves no endpoint";
}

TEST_F(ReleaseTest, RejectingTheLiveVersionRollsBackAndReapprovalReleasesAgain) {
  int v1 = RegisterApproved(0.9);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v1, "ev-1")));
  TickUntil([&] { return Latest().status == kWaiting; });
  int v2 = RegisterApproved(0.91);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v2, "ev-2")));
  TickUntil([&] { return Latest().version == v2 && Latest().status == kWaiting; });
  EXPECT_EQ((*serving_->Find("weld-pm-dev"))->version, v2);
  auto superseded = releases_->List("weld-pm", 10);
  ASSERT_TRUE(superseded.has_value());
  EXPECT_EQ(superseded->back().status, kSuperseded);

  ASSERT_TRUE(registry_->Reject("weld-pm", v2, "ada", "drifts on plant 2"));
  ASSERT_TRUE(releases_->OnRejected("weld-pm", v2, "ada", "ev-3"));
  ASSERT_TRUE(releases_->OnRejected("weld-pm", v2, "ada", "ev-3"));  // redelivered
  EXPECT_EQ((*serving_->Find("weld-pm-dev"))->version, v1);
  EXPECT_EQ(Latest().status, kCancelled);
  auto h = releases_->History("weld-pm", "", "dev");
  ASSERT_TRUE(h.has_value());
  ASSERT_EQ(h->size(), 3u) << "v1, v2, v1 again: one rollback row";
  EXPECT_EQ(h->front().how, "rejection");

  ASSERT_TRUE(registry_->Approve("weld-pm", v2, "bob", "fixed upstream"));
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v2, "ev-4")));
  TickUntil([&] { return Latest().version == v2 && Latest().status == kWaiting; });
  EXPECT_EQ((*serving_->Find("weld-pm-dev"))->version, v2);
}

TEST_F(ReleaseTest, RollbackPutsThePreviousGoodVersionBack) {
  int v1 = RegisterApproved(0.9);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v1, "ev-1")));
  TickUntil([&] { return Latest().status == kWaiting; });
  auto none = releases_->Rollback("weld-pm", "dev", 0, "eve", "");
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(none.error().message(), HasSubstr("no earlier approved version"));
  auto nothing = releases_->Rollback("weld-pm", "prod", 0, "eve", "");
  ASSERT_FALSE(nothing.has_value());
  EXPECT_EQ(nothing.error().code(), Code::kNotFound);

  int v2 = RegisterApproved(0.91);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v2, "ev-2")));
  TickUntil([&] { return Latest().version == v2 && Latest().status == kWaiting; });
  auto back = releases_->Rollback("weld-pm", "dev", 0, "eve", "alarms on line 4");
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->version, v1);
  EXPECT_EQ(back->how, "rollback");
  EXPECT_EQ(back->by, "eve");
  EXPECT_EQ((*serving_->Find("weld-pm-dev"))->version, v1);
}

TEST_F(ReleaseTest, AnApprovalNobodyGivesTimesOut) {
  ASSERT_TRUE(releases_->PutConfig("weld-pm",
                                   "model_group: weld-pm\nstages:\n  - name: dev\n  - name: int\n    gates:\n"
                                   "      - approval: {timeout: 100ms}\n",
                                   "eve"));
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(RegisterApproved(0.9), "ev-1")));
  TickUntil([&] { return Latest().status != kInProgress && Latest().status != kWaiting; });
  EXPECT_EQ(Latest().status, kFailed);
  EXPECT_THAT(Latest().message, HasSubstr("approval at int timed out"));
  auto late = releases_->Approve("weld-pm", "int", "bob", "");
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code(), Code::kNotFound);
}

TEST_F(ReleaseTest, PutConfigRefusesAMismatchedGroupOrUnknownApproverGroup) {
  auto wrong = releases_->PutConfig("other", kConfig, "eve");
  ASSERT_FALSE(wrong.has_value());
  EXPECT_THAT(wrong.error().message(), HasSubstr("model_group is 'weld-pm'"));
  auto group = releases_->PutConfig(
      "weld-pm",
      "model_group: weld-pm\nstages:\n  - name: prod\n    gates:\n      - approval: {group: nobody}\n",
      "eve");
  ASSERT_FALSE(group.has_value());
  EXPECT_THAT(group.error().message(), HasSubstr("approval group 'nobody' does not exist"));
  EXPECT_FALSE(releases_->HasCustomConfig("weld-pm")) << "nothing stored";
}

TEST_F(ReleaseTest, AFreshServiceResumesAWaitingRelease) {
  int v1 = RegisterApproved(0.9);
  ASSERT_TRUE(releases_->OnEvent(ApprovedEvent(v1, "ev-1")));
  TickUntil([&] { return Latest().status == kWaiting; });
  releases_ = std::make_unique<ReleaseService>(db_.get(), registry_.get(), serving_.get(), iam_.get());
  ASSERT_TRUE(releases_->Approve("weld-pm", "int", "bob", "after a restart"));
  TickUntil([&] { return Latest().stage == "prod" && Latest().status == kWaiting; });
  EXPECT_EQ((*serving_->Find("weld-pm-int"))->version, v1);
}

}  // namespace
}  // namespace takt::release
