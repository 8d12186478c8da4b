#include "serving/serving.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>
#include "core/temp_dir.h"
#include "core/time.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "crypto/keyring.h"
#include "events/events.h"
#include "ml/xgboost_model.h"
#include "registry/registry.h"
#include "serving/runtime.h"

namespace takt::serving {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using ::takt::TempDir;

const std::vector<std::string> kFeatures = {"motor_temp_c", "weld_current_ka", "cycle_time_s"};

// Deterministic rows in [0, 1): a small LCG, no std:: distributions.
ml::Matrix MakeRows(size_t rows, uint64_t seed) {
  ml::Matrix m;
  m.rows = rows;
  m.cols = kFeatures.size();
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (size_t i = 0; i < rows * m.cols; ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    m.values.push_back(static_cast<float>((s >> 40) & 0xFFFF) / 65536.0f);
  }
  return m;
}

// A tiny binary classifier; `which` picks the feature that decides the label,
// so two models give visibly different predictions.
std::string TrainTinyModel(size_t which) {
  ml::Matrix x = MakeRows(300, 11);
  std::vector<float> y;
  for (size_t r = 0; r < x.rows; ++r) y.push_back(x.values[r * x.cols + which] > 0.5f ? 1.0f : 0.0f);
  ml::TrainOptions opts;
  opts.params = {
      {"objective", "binary:logistic"}, {"tree_method", "hist"}, {"max_depth", "3"}, {"seed", "7"}};
  opts.num_rounds = 10;
  opts.nthread = 1;
  auto trained = ml::Train(x, y, nullptr, nullptr, opts);
  EXPECT_TRUE(trained.has_value()) << trained.error().ToString();
  return trained ? trained->model_json : std::string();
}

// What an endpoint's model answers for `x`, through LoadedModel::Score (the tree engine).
Result<std::vector<float>> Served(const LoadedModel& m, const ml::Matrix& x) {
  std::vector<float> out(x.rows * m.num_outputs);
  TAKT_RETURN_IF_ERROR(m.Score(x.values.data(), x.rows, out.data()));
  return out;
}

std::vector<float> ReferencePredict(const std::string& model_json, const ml::Matrix& x) {
  auto model = ml::XgbModel::Load(model_json);
  EXPECT_TRUE(model.has_value()) << model.error().ToString();
  if (!model) return {};
  auto p = (*model)->Predict(x);
  EXPECT_TRUE(p.has_value()) << p.error().ToString();
  return p ? *p : std::vector<float>{};
}

class ServingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_a_ = new std::string(TrainTinyModel(0));
    model_b_ = new std::string(TrainTinyModel(1));
  }
  static void TearDownTestSuite() {
    delete model_a_;
    delete model_b_;
    model_a_ = model_b_ = nullptr;
  }

  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    ASSERT_FALSE(model_a_->empty());
    ASSERT_FALSE(model_b_->empty());
    keyring_ = std::make_unique<crypto::Keyring>(crypto::Keyring::FromBytesForTest(std::string(32, 's')));
    auto blobs = blob::BlobStore::Open(dir_.path() / "blobs", keyring_.get());
    ASSERT_TRUE(blobs.has_value()) << blobs.error().ToString();
    blobs_ = std::move(*blobs);
    auto db = store::OpenSqlite(DbPath());
    ASSERT_TRUE(db.has_value()) << db.error().ToString();
    db_ = std::move(*db);
    bus_ = std::make_unique<events::EventBus>(db_.get());
    ASSERT_TRUE(bus_->Migrate());
    registry_ = std::make_unique<registry::RegistryService>(db_.get());
    ASSERT_TRUE(registry_->Migrate());
    serving_ = std::make_unique<ServingService>(db_.get(), blobs_.get(), registry_.get());
    ASSERT_TRUE(serving_->Migrate());
  }

  std::string DbPath() const { return (dir_.path() / "takt.db").string(); }

  // Stores the model and registers it as the next version of `group`, started by "sam".
  int Register(const std::string& group, const std::string& model_json,
               std::vector<std::string> features = kFeatures) {
    auto blob_id = blobs_->Put(model_json);
    EXPECT_TRUE(blob_id.has_value()) << blob_id.error().ToString();
    int version = 0;
    Status s = db_->Transaction([&](store::Database& tx) -> Status {
      registry::ModelVersion v;
      v.group = group;
      v.blob_id = *blob_id;
      v.feature_names = features;
      v.dataset = "weld-telemetry";
      v.dataset_version = 1;
      v.run_id = "run-test";
      v.created_by = "sam";
      TAKT_ASSIGN_OR_RETURN(auto registered, registry_->Register(tx, v, "weld-pm"));
      version = registered.version;
      return Ok();
    });
    EXPECT_TRUE(s.has_value()) << s.error().ToString();
    return version;
  }

  // Registered by "sam", approved by "ada" (a different principal).
  int RegisterApproved(const std::string& group, const std::string& model_json) {
    int version = Register(group, model_json);
    auto approved = registry_->Approve(group, version, "ada", "holdout fine");
    EXPECT_TRUE(approved.has_value()) << approved.error().ToString();
    return version;
  }

  int64_t Count(const std::string& sql) {
    auto rows = db_->Query(sql);
    EXPECT_TRUE(rows.has_value()) << rows.error().ToString();
    return rows && !rows->empty() ? rows->front().Int(0) : -1;
  }

  static std::string* model_a_;
  static std::string* model_b_;

  TempDir dir_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<blob::BlobStore> blobs_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<events::EventBus> bus_;
  std::unique_ptr<registry::RegistryService> registry_;
  std::unique_ptr<ServingService> serving_;
};

std::string* ServingTest::model_a_ = nullptr;
std::string* ServingTest::model_b_ = nullptr;

TEST(IsStageTest, KnowsTheThreeStages) {
  EXPECT_TRUE(IsStage("dev"));
  EXPECT_TRUE(IsStage("int"));
  EXPECT_TRUE(IsStage("prod"));
  EXPECT_FALSE(IsStage(""));
  EXPECT_FALSE(IsStage("Dev"));
  EXPECT_FALSE(IsStage("staging"));
}

TEST_F(ServingTest, DeployServesTheApprovedModelExactly) {
  ASSERT_EQ(RegisterApproved("weld-pm", *model_a_), 1);
  auto e = serving_->Deploy("weld-pm", 1, "dev", "ev-1");
  ASSERT_TRUE(e.has_value()) << e.error().ToString();
  EXPECT_EQ(e->name, "weld-pm-dev");
  EXPECT_EQ(e->stage, "dev");
  EXPECT_EQ(e->model_group, "weld-pm");
  EXPECT_EQ(e->model_version, 1);
  EXPECT_EQ(e->status, "InService");
  EXPECT_EQ(e->last_event_id, "ev-1");
  EXPECT_FALSE(e->created_at.empty());

  auto listed = serving_->List();
  ASSERT_TRUE(listed.has_value());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().name, "weld-pm-dev");

  auto found = serving_->Find("weld-pm-dev");
  ASSERT_TRUE(found.has_value()) << found.error().ToString();
  const LoadedModel& m = **found;
  EXPECT_EQ(m.endpoint, "weld-pm-dev");
  EXPECT_EQ(m.group, "weld-pm");
  EXPECT_EQ(m.version, 1);
  EXPECT_EQ(m.feature_names, kFeatures);
  auto scorer = m.Resident();  // held by the endpoint's replica
  ASSERT_NE(scorer, nullptr);
  ASSERT_NE(scorer->engine, nullptr);  // the compiled engine serves it

  ml::Matrix rows = MakeRows(64, 99);
  auto served = Served(m, rows);
  ASSERT_TRUE(served.has_value()) << served.error().ToString();
  std::vector<float> want = ReferencePredict(*model_a_, rows);
  ASSERT_EQ(served->size(), 64u);
  EXPECT_EQ(*served, want);  // bit-for-bit: the same model, the same rows
}

TEST_F(ServingTest, InvokeScoresOnTheVariantsReplicasAndRefusesBadCalls) {
  ASSERT_EQ(RegisterApproved("weld-pm", *model_a_), 1);
  ASSERT_TRUE(serving_->Deploy("weld-pm", 1, "dev", "ev-1").has_value());
  ml::Matrix rows = MakeRows(5, 7);
  std::vector<float> out;
  Status ok = serving_->Invoke("weld-pm-dev", "weld-pm-v1", rows.values, rows.rows, &out);
  ASSERT_TRUE(ok.has_value()) << ok.error().ToString();
  EXPECT_EQ(out, ReferencePredict(*model_a_, rows));

  Status unknown_variant = serving_->Invoke("weld-pm-dev", "weld-pm-v9", rows.values, rows.rows, &out);
  ASSERT_FALSE(unknown_variant.has_value());
  EXPECT_EQ(unknown_variant.error().code(), Code::kNotFound);
  EXPECT_THAT(unknown_variant.error().message(), HasSubstr("weld-pm-v1"));  // names what it serves
  Status unknown_endpoint = serving_->Invoke("weld-pm-prod", "weld-pm-v1", rows.values, rows.rows, &out);
  ASSERT_FALSE(unknown_endpoint.has_value());
  EXPECT_EQ(unknown_endpoint.error().code(), Code::kNotFound);
  Status short_rows = serving_->Invoke("weld-pm-dev", "weld-pm-v1", rows.values, rows.rows + 1, &out);
  ASSERT_FALSE(short_rows.has_value());
  EXPECT_EQ(short_rows.error().code(), Code::kInvalidArgument);
}

TEST_F(ServingTest, UnknownEndpointIsNotFound) {
  auto found = serving_->Find("weld-pm-dev");
  ASSERT_FALSE(found.has_value());
  EXPECT_EQ(found.error().code(), Code::kNotFound);
  EXPECT_THAT(found.error().message(), HasSubstr("weld-pm-dev"));
  auto got = serving_->Get("weld-pm-dev");
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code(), Code::kNotFound);
  EXPECT_EQ(got.error().message(), "endpoint weld-pm-dev does not exist");
}

TEST_F(ServingTest, SameEventTwiceDeploysOnce) {
  RegisterApproved("weld-pm", *model_a_);
  auto first = serving_->Deploy("weld-pm", 1, "dev", "ev-1");
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  auto second = serving_->Deploy("weld-pm", 1, "dev", "ev-1");
  ASSERT_TRUE(second.has_value()) << second.error().ToString();
  EXPECT_EQ(second->model_version, 1);
  EXPECT_EQ(second->updated_at, first->updated_at);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM deployments WHERE event_id = 'ev-1'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM deployments"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM endpoints"), 1);
}

// Bug (serving.cc, Deploy): the event-id check runs before, and outside, the
// transaction that inserts into `deployments`, so two concurrent deliveries of
// one event both pass it and the second fails with ALREADY_EXISTS ("UNIQUE
// constraint failed: deployments.event_id") instead of being a no-op. The bus
// serialises deliveries inside one process, so this needs two deliverers (two
// servers over one database); the retry then succeeds. See the report.
TEST_F(ServingTest, SameEventDeliveredConcurrentlyDeploysOnceWithoutError) {
  RegisterApproved("weld-pm", *model_a_);
  // Repeat to give the race a chance; each round uses a fresh event id.
  for (int round = 0; round < 10; ++round) {
    const std::string event = "ev-race-" + std::to_string(round);
    Result<Endpoint> results[2] = {NotFound("not run"), NotFound("not run")};
    std::thread t0([&] { results[0] = serving_->Deploy("weld-pm", 1, "dev", event); });
    std::thread t1([&] { results[1] = serving_->Deploy("weld-pm", 1, "dev", event); });
    t0.join();
    t1.join();
    for (const auto& r : results)
      EXPECT_TRUE(r.has_value()) << "round " << round << ": " << r.error().ToString();
    EXPECT_EQ(Count("SELECT COUNT(*) FROM deployments WHERE event_id = '" + event + "'"), 1);
  }
}

TEST_F(ServingTest, RedeliveredOldEventDoesNotRollBackANewerDeployment) {
  RegisterApproved("weld-pm", *model_a_);
  RegisterApproved("weld-pm", *model_b_);
  ASSERT_TRUE(serving_->Deploy("weld-pm", 1, "dev", "ev-1"));
  ASSERT_TRUE(serving_->Deploy("weld-pm", 2, "dev", "ev-2"));
  auto again = serving_->Deploy("weld-pm", 1, "dev", "ev-1");
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_EQ(again->model_version, 2);
  EXPECT_EQ((*serving_->Find("weld-pm-dev"))->version, 2);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM deployments"), 2);
}

TEST_F(ServingTest, PendingOrRejectedVersionIsNotDeployedAndNothingIsRecorded) {
  ASSERT_EQ(Register("weld-pm", *model_a_), 1);
  auto e = serving_->Deploy("weld-pm", 1, "dev", "ev-1");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(e.error().message(), HasSubstr(registry::kPending));
  EXPECT_THAT(e.error().message(), HasSubstr("only Approved versions"));

  ASSERT_TRUE(registry_->Reject("weld-pm", 1, "ada", "drifts"));
  auto rejected = serving_->Deploy("weld-pm", 1, "dev", "ev-2");
  ASSERT_FALSE(rejected.has_value());
  EXPECT_EQ(rejected.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(rejected.error().message(), HasSubstr(registry::kRejected));

  EXPECT_EQ(Count("SELECT COUNT(*) FROM endpoints"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM deployments"), 0);
  EXPECT_EQ(serving_->Find("weld-pm-dev").error().code(), Code::kNotFound);
}

TEST_F(ServingTest, BadStageIsInvalidArgument) {
  RegisterApproved("weld-pm", *model_a_);
  auto e = serving_->Deploy("weld-pm", 1, "staging", "ev-1");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(e.error().message(), HasSubstr("'staging'"));
  EXPECT_EQ(Count("SELECT COUNT(*) FROM endpoints"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM deployments"), 0);
}

TEST_F(ServingTest, UnknownGroupOrVersionIsNotFound) {
  RegisterApproved("weld-pm", *model_a_);
  auto no_version = serving_->Deploy("weld-pm", 7, "dev", "ev-1");
  ASSERT_FALSE(no_version.has_value());
  EXPECT_EQ(no_version.error().code(), Code::kNotFound);
  EXPECT_EQ(no_version.error().message(), "model group weld-pm has no version 7");
  auto no_group = serving_->Deploy("paint-pm", 1, "dev", "ev-2");
  ASSERT_FALSE(no_group.has_value());
  EXPECT_EQ(no_group.error().code(), Code::kNotFound);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM deployments"), 0);
}

TEST_F(ServingTest, ModelThatDoesNotMatchItsFeatureListIsRefusedBeforeAnythingIsRecorded) {
  int v = Register("weld-pm", *model_a_, {"only_one_feature"});
  ASSERT_TRUE(registry_->Approve("weld-pm", v, "ada", ""));
  auto e = serving_->Deploy("weld-pm", v, "dev", "ev-1");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(e.error().message(), HasSubstr("expects 3 features but the registry lists 1"));
  EXPECT_EQ(Count("SELECT COUNT(*) FROM endpoints"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM deployments"), 0);
  EXPECT_EQ(serving_->Find("weld-pm-dev").error().code(), Code::kNotFound);
}

TEST_F(ServingTest, DeployingANewVersionSwapsWhileHoldersKeepTheOldModel) {
  RegisterApproved("weld-pm", *model_a_);
  RegisterApproved("weld-pm", *model_b_);
  ml::Matrix rows = MakeRows(64, 5);
  std::vector<float> want_a = ReferencePredict(*model_a_, rows);
  std::vector<float> want_b = ReferencePredict(*model_b_, rows);
  ASSERT_NE(want_a, want_b) << "the two test models must differ";

  ASSERT_TRUE(serving_->Deploy("weld-pm", 1, "dev", "ev-1"));
  auto held = serving_->Find("weld-pm-dev");
  ASSERT_TRUE(held.has_value());
  std::shared_ptr<const LoadedModel> old = *held;

  auto e = serving_->Deploy("weld-pm", 2, "dev", "ev-2");
  ASSERT_TRUE(e.has_value()) << e.error().ToString();
  EXPECT_EQ(e->name, "weld-pm-dev");
  EXPECT_EQ(e->model_version, 2);
  EXPECT_EQ(e->last_event_id, "ev-2");
  EXPECT_EQ(Count("SELECT COUNT(*) FROM endpoints"), 1);

  auto now = serving_->Find("weld-pm-dev");
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ((*now)->version, 2);
  EXPECT_EQ(*Served(**now, rows), want_b);

  // The request that took the model before the swap finishes on it.
  EXPECT_EQ(old->version, 1);
  EXPECT_EQ(*Served(*old, rows), want_a);
}

TEST_F(ServingTest, StagesAreSeparateEndpoints) {
  RegisterApproved("weld-pm", *model_a_);
  RegisterApproved("weld-pm", *model_b_);
  ASSERT_TRUE(serving_->Deploy("weld-pm", 1, "prod", "ev-1"));
  ASSERT_TRUE(serving_->Deploy("weld-pm", 2, "dev", "ev-2"));
  EXPECT_EQ((*serving_->Find("weld-pm-prod"))->version, 1);
  EXPECT_EQ((*serving_->Find("weld-pm-dev"))->version, 2);
  EXPECT_EQ(serving_->List()->size(), 2u);
}

TEST_F(ServingTest, LoadAllInAFreshServiceRestoresTheEndpoint) {
  RegisterApproved("weld-pm", *model_a_);
  ASSERT_TRUE(serving_->Deploy("weld-pm", 1, "dev", "ev-1"));
  ml::Matrix rows = MakeRows(32, 3);
  std::vector<float> want = ReferencePredict(*model_a_, rows);

  // A restart: a new connection to the same file, new services over it.
  auto db2 = store::OpenSqlite(DbPath());
  ASSERT_TRUE(db2.has_value()) << db2.error().ToString();
  registry::RegistryService registry2(db2->get());
  ServingService serving2(db2->get(), blobs_.get(), &registry2);
  ASSERT_TRUE(serving2.Migrate());
  EXPECT_EQ(serving2.Find("weld-pm-dev").error().code(), Code::kNotFound);

  auto loaded = serving2.LoadAll();
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  auto found = serving2.Find("weld-pm-dev");
  ASSERT_TRUE(found.has_value()) << found.error().ToString();
  EXPECT_EQ((*found)->version, 1);
  EXPECT_EQ((*found)->feature_names, kFeatures);
  EXPECT_EQ(*Served(**found, rows), want);
  EXPECT_EQ(serving2.Get("weld-pm-dev")->last_event_id, "ev-1");
}

TEST_F(ServingTest, ConcurrentReadersAlwaysSeeAConsistentModelWhileDeploySwaps) {
  RegisterApproved("weld-pm", *model_a_);
  RegisterApproved("weld-pm", *model_b_);
  ml::Matrix rows = MakeRows(16, 21);
  const std::vector<float> want[] = {ReferencePredict(*model_a_, rows), ReferencePredict(*model_b_, rows)};
  ASSERT_TRUE(serving_->Deploy("weld-pm", 1, "dev", "ev-0"));

  std::atomic<bool> stop{false};
  std::atomic<int> mismatches{0}, predictions{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!stop) {
        auto m = serving_->Find("weld-pm-dev");
        if (!m) {
          ++mismatches;
          continue;
        }
        auto p = Served(**m, rows);
        if (!p || *p != want[(*m)->version - 1]) ++mismatches;
        ++predictions;
      }
    });
  }
  for (int i = 1; i <= 20; ++i) {
    auto e = serving_->Deploy("weld-pm", 1 + i % 2, "dev", "ev-" + std::to_string(i));
    EXPECT_TRUE(e.has_value()) << e.error().ToString();
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_GT(predictions.load(), 0);
  EXPECT_EQ((*serving_->Find("weld-pm-dev"))->version, 1);  // ev-20 deployed v1
}

}  // namespace
}  // namespace takt::serving

namespace takt::serving {
namespace {

TEST_F(ServingTest, VariantsSplitTrafficByWeightAndCanBeTargeted) {
  RegisterApproved("weld-pm", *model_a_);
  RegisterApproved("weld-pm", *model_b_);
  auto e =
      serving_->SetVariants("weld-pm", "prod", {{"", 1, 90}, {"", 2, 10}}, "", "{\"capture_percent\":5}");
  ASSERT_TRUE(e.has_value()) << e.error().ToString();
  ASSERT_EQ(e->variants.size(), 2u);
  EXPECT_EQ(e->variants[1].name, "weld-pm-v2");
  EXPECT_EQ(e->model_version, 1) << "the stable version is the one with most traffic";
  EXPECT_EQ(e->settings_json, "{\"capture_percent\":5}");
  EXPECT_EQ((*serving_->Route("weld-pm-prod", 0))->version, 1);
  EXPECT_EQ((*serving_->Route("weld-pm-prod", 89.9))->version, 1);
  EXPECT_EQ((*serving_->Route("weld-pm-prod", 90.0))->version, 2);
  EXPECT_EQ((*serving_->Route("weld-pm-prod", 99.99))->version, 2);
  int v2 = 0;
  for (int i = 0; i < 2000; ++i) v2 += (*serving_->Find("weld-pm-prod"))->version == 2;
  EXPECT_GT(v2, 100);  // ~200 expected; far from both 0 and 2000
  EXPECT_LT(v2, 320);
  EXPECT_EQ((*serving_->FindVariant("weld-pm-prod", "weld-pm-v2"))->version, 2);
  auto unknown = serving_->FindVariant("weld-pm-prod", "weld-pm-v9");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_THAT(unknown.error().message(), HasSubstr("it serves weld-pm-v1, weld-pm-v2"));

  // A variant at 0 % gets no traffic but can be targeted (blue/green before the flip).
  ASSERT_TRUE(serving_->SetVariants("weld-pm", "prod", {{"", 1, 100}, {"", 2, 0}}, ""));
  for (int i = 0; i < 200; ++i) ASSERT_EQ((*serving_->Find("weld-pm-prod"))->version, 1);
  EXPECT_EQ((*serving_->FindVariant("weld-pm-prod", "weld-pm-v2"))->version, 2);
  EXPECT_EQ(serving_->Get("weld-pm-prod")->settings_json, "{\"capture_percent\":5}") << "kept when not given";

  // After a restart the same variants and weights come back.
  ServingService fresh(db_.get(), blobs_.get(), registry_.get());
  ASSERT_TRUE(fresh.LoadAll());
  EXPECT_EQ((*fresh.FindVariant("weld-pm-prod", "weld-pm-v2"))->version, 2);
  EXPECT_EQ((*fresh.Route("weld-pm-prod", 50))->version, 1);
}

TEST_F(ServingTest, BadVariantSetsChangeNothing) {
  RegisterApproved("weld-pm", *model_a_);
  Register("weld-pm", *model_b_);  // pending
  ASSERT_TRUE(serving_->Deploy("weld-pm", 1, "dev", "ev-1"));
  struct Case {
    std::vector<Variant> variants;
    std::string want;
  };
  for (const auto& c : std::vector<Case>{{{}, "at least one variant"},
                                         {{{"", 1, 60}, {"", 1, 40}}, "listed twice"},
                                         {{{"", 1, 50}}, "sum to 50, not 100"},
                                         {{{"", 1, 150}, {"", 2, -50}}, "not between 0 and 100"},
                                         {{{"", 1, 90}, {"", 2, 10}}, "only Approved versions"},
                                         {{{"", 1, 90}, {"", 7, 10}}, "no version 7"}}) {
    auto r = serving_->SetVariants("weld-pm", "dev", c.variants, "");
    ASSERT_FALSE(r.has_value()) << c.want;
    EXPECT_THAT(r.error().message(), HasSubstr(c.want));
  }
  auto bad_settings = serving_->SetVariants("weld-pm", "dev", {{"", 1, 100}}, "", "{not json");
  ASSERT_FALSE(bad_settings.has_value());
  auto e = serving_->Get("weld-pm-dev");
  ASSERT_TRUE(e.has_value());
  ASSERT_EQ(e->variants.size(), 1u);
  EXPECT_EQ(e->variants[0].model_version, 1);
  EXPECT_EQ((*serving_->Find("weld-pm-dev"))->version, 1);
}

TEST_F(ServingTest, RequestOutcomesAreCountedPerVariantInAWindow) {
  RegisterApproved("weld-pm", *model_a_);
  ASSERT_TRUE(serving_->Deploy("weld-pm", 1, "dev", "ev-1"));
  for (int i = 1; i <= 100; ++i)
    serving_->Record("weld-pm-dev", "weld-pm-v1", i % 10 == 0 ? 500 : 200, i, "x");
  serving_->Record("weld-pm-dev", "weld-pm-v2", 200, 1000);
  VariantStats s = serving_->Stats("weld-pm-dev", "weld-pm-v1", 0);
  EXPECT_EQ(s.requests, 100);
  EXPECT_EQ(s.errors, 10);
  EXPECT_DOUBLE_EQ(s.error_rate, 0.1);
  EXPECT_DOUBLE_EQ(s.p50_ms, 50);
  EXPECT_DOUBLE_EQ(s.p99_ms, 99);
  EXPECT_EQ(serving_->Stats("weld-pm-dev", "weld-pm-v1", RealClock().NowMillis() + 1000).requests, 0);
  auto recent = serving_->RecentRequests("weld-pm-dev", 3);
  ASSERT_EQ(recent.size(), 3u);
  EXPECT_EQ(recent[0].variant, "weld-pm-v2") << "newest first";
  EXPECT_EQ(recent[1].latency_ms, 100);
  // The window is bounded.
  for (size_t i = 0; i < ServingService::kWindow + 10; ++i)
    serving_->Record("weld-pm-dev", "weld-pm-v1", 200, 1);
  EXPECT_EQ(serving_->Stats("weld-pm-dev", "weld-pm-v1", 0).requests,
            static_cast<int64_t>(ServingService::kWindow));
  ASSERT_TRUE(serving_->Remove("weld-pm-dev", "test"));
  EXPECT_FALSE(serving_->Find("weld-pm-dev").has_value());
  EXPECT_EQ(serving_->Remove("weld-pm-dev", "again").error().code(), Code::kNotFound);
}

}  // namespace
}  // namespace takt::serving

namespace takt::serving {
namespace {

// Submits one row to whatever the endpoint serves now and waits for the answer.
struct OneCall {
  std::vector<float> row;
  float out = -1;
  Job job;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status = Ok();
  explicit OneCall(const ml::Matrix& rows, size_t r)
      : row(rows.values.begin() + static_cast<std::ptrdiff_t>(r * rows.cols),
            rows.values.begin() + static_cast<std::ptrdiff_t>((r + 1) * rows.cols)) {
    job.rows = row.data();
    job.n = 1;
    job.out = &out;
    job.done = [this](Status s, size_t) {
      std::lock_guard lock(mu);
      status = std::move(s);
      done = true;
      cv.notify_all();
    };
  }
  bool Wait() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; });
  }
};

TEST_F(ServingTest, SwapsUnderLoadLoseNoRequestAndEveryAnswerComesFromOneOfTheModels) {
  ASSERT_EQ(RegisterApproved("weld-pm", *model_a_), 1);
  ASSERT_EQ(RegisterApproved("weld-pm", *model_b_), 2);
  const std::string batching =
      R"({"replicas":{"min":2,"max":2},"batching":{"max_batch_size":8,"max_wait_us":200}})";
  ASSERT_TRUE(serving_->SetVariants("weld-pm", "dev", {{"", 1, 100}}, "", batching).has_value());
  serving_->Start();
  ml::Matrix rows = MakeRows(32, 5);
  std::vector<float> want_a = ReferencePredict(*model_a_, rows);
  std::vector<float> want_b = ReferencePredict(*model_b_, rows);
  std::atomic<bool> stop{false};
  std::atomic<int> served{0}, wrong{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); !stop; i = (i + 1) % rows.rows) {
        auto live = serving_->Live("weld-pm-dev");
        if (!live) {
          ++failed;
          continue;
        }
        VariantRuntime* rt = (*live)->Pick(50);
        OneCall call(rows, i);
        if (!rt->Submit(&call.job) || !call.Wait() || !call.status) {
          ++failed;
          continue;
        }
        float want = rt->model().version == 1 ? want_a[i] : want_b[i];
        if (call.out != want) ++wrong;
        ++served;
      }
    });
  }
  for (int k = 0; k < 10; ++k) {
    int v = k % 2 == 0 ? 2 : 1;
    ASSERT_TRUE(serving_->SetVariants("weld-pm", "dev", {{"", v, 100}}, "", batching).has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_GT(served.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(ServingTest, EndpointSettingsShapeTheRuntimeAndBadSettingsChangeNothing) {
  ASSERT_EQ(RegisterApproved("weld-pm", *model_a_), 1);
  ASSERT_TRUE(serving_
                  ->SetVariants("weld-pm", "prod", {{"", 1, 100}}, "",
                                R"({"replicas":{"min":3,"max":6},"autoscaling":{"target_in_flight":2},)"
                                R"("queue":{"capacity":7}})")
                  .has_value());
  auto live = serving_->Live("weld-pm-prod");
  ASSERT_TRUE(live.has_value());
  const VariantRuntime& rt = *(*live)->variants.front();
  EXPECT_EQ(rt.Stats().replicas, 3);
  EXPECT_EQ(rt.settings().max_replicas, 6);
  EXPECT_EQ(rt.settings().queue_capacity, 7);
  auto bad = serving_->SetVariants("weld-pm", "prod", {{"", 1, 100}}, "", R"({"queue":{"capacity":-1}})");
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message(), HasSubstr("queue.capacity"));
  auto after = serving_->Live("weld-pm-prod");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->get(), live->get());  // nothing was published
  auto stored = serving_->Get("weld-pm-prod");
  ASSERT_TRUE(stored.has_value());
  EXPECT_THAT(stored->settings_json, HasSubstr("\"min\":3"));
}

TEST_F(ServingTest, SwappedOutRuntimesAreStoppedOnceIdle) {
  ASSERT_EQ(RegisterApproved("weld-pm", *model_a_), 1);
  ASSERT_EQ(RegisterApproved("weld-pm", *model_b_), 2);
  ASSERT_TRUE(serving_->Deploy("weld-pm", 1, "dev", "").has_value());
  auto old = serving_->Live("weld-pm-dev");
  ASSERT_TRUE(old.has_value());
  std::shared_ptr<VariantRuntime> v1 = (*old)->variants.front();
  old->reset();
  serving_->Start();
  ASSERT_TRUE(serving_->Deploy("weld-pm", 2, "dev", "").has_value());
  EXPECT_EQ(v1->Stats().replicas, 1);  // still up for requests that picked it
  for (int i = 0; i < 100 && v1->Stats().replicas > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(v1->Stats().replicas, 0);
  OneCall late(MakeRows(1, 1), 0);
  auto refused = v1->Submit(&late.job);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Code::kUnavailable);
}

}  // namespace
}  // namespace takt::serving
