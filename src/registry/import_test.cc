// Imports of models trained elsewhere, made at test time by the real XGBoost
// Python package (registry/testing_xgboost.h) and by takt's own trainer.
#include "registry/import.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/json.h"
#include "core/temp_dir.h"
#include "events/events.h"
#include "ml/xgboost_model.h"
#include "registry/testing_xgboost.h"

namespace takt::registry {
namespace {

using ::testing::HasSubstr;

class ImportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("takt-import");
    error_ = new std::string(testing::TrainNotebookModels(dir_->path().string()));
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete error_;
  }
  void SetUp() override {
    ASSERT_EQ(*error_, "");
    db_ = std::move(*store::OpenSqlite(":memory:"));
    bus_ = std::make_unique<events::EventBus>(db_.get());
    ASSERT_TRUE(bus_->Migrate());
    registry_ = std::make_unique<RegistryService>(db_.get());
    ASSERT_TRUE(registry_->Migrate());
  }
  static std::string File(const std::string& name) {
    return testing::ReadBytes((dir_->path() / name).string());
  }
  ImportRequest Request(const std::string& file = "weld.json") {
    return {.group = "weld-pm",
            .project = "weld-pm",
            .framework = "xgboost",
            .model_bytes = File(file),
            .principal = "sam"};
  }
  // Import with a blob "store" that counts what was put.
  Result<ModelVersion> Run(const ImportRequest& r) {
    return Import(*registry_, *db_, r, [&](std::string_view bytes) -> Result<std::string> {
      put_.emplace_back(bytes);
      return "blob-" + std::to_string(put_.size());
    });
  }
  void ExpectRefused(const ImportRequest& r, const std::string& message) {
    auto v = Run(r);
    ASSERT_FALSE(v.has_value()) << "imported, expected: " << message;
    EXPECT_EQ(v.error().code(), Code::kInvalidArgument) << v.error().ToString();
    EXPECT_THAT(v.error().message(), HasSubstr(message));
    EXPECT_TRUE(put_.empty()) << "a refused import stored its model";
    EXPECT_EQ(db_->Query("SELECT * FROM model_versions")->size(), 0u);
  }

  static TempDir* dir_;
  static std::string* error_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<events::EventBus> bus_;
  std::unique_ptr<RegistryService> registry_;
  std::vector<std::string> put_;
};
TempDir* ImportTest::dir_ = nullptr;
std::string* ImportTest::error_ = nullptr;

TEST_F(ImportTest, JsonModelWithFeatureNamesNeedsNoSchema) {
  ImportRequest r = Request();
  r.metrics_json = R"({"auc": 0.93, "rows": 300})";
  r.params_json = R"({"max_depth": 3})";
  r.card_json = R"({"intended_use": "rank robots", "limitations": "plant P1", "training_data": "notebook"})";
  r.sample_csv = File("sample.csv");
  r.description = "welding-gun failure within 24 h";
  auto v = Run(r);
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  EXPECT_EQ(v->version, 1);
  EXPECT_EQ(v->feature_names, (std::vector<std::string>{"force_kn", "current_ka", "temp_c"}));
  EXPECT_EQ(v->source, kSourceImport);
  EXPECT_EQ(v->created_by, "sam");
  EXPECT_EQ(v->registered_by, "sam");
  EXPECT_EQ(v->run_id, "");
  EXPECT_EQ(v->dataset, "");
  EXPECT_EQ(v->artifact_format, "json");
  ASSERT_EQ(put_.size(), 1u);
  EXPECT_EQ(put_[0], r.model_bytes);  // stored unchanged
  EXPECT_EQ(v->blob_id, "blob-1");
  ASSERT_EQ(v->sample_rows.size(), 5u);
  // The sample's columns came as temp_c,force_kn,current_ka; rows are in feature order.
  const std::string csv = File("sample.csv");
  const std::string first =
      csv.substr(csv.find('\n') + 1, csv.find('\n', csv.find('\n') + 1) - csv.find('\n') - 1);
  EXPECT_DOUBLE_EQ(v->sample_rows[0][2], std::stod(first.substr(0, first.find(','))));
  auto model = ml::XgbModel::Load(r.model_bytes);
  ASSERT_TRUE(model.has_value());
  ml::Matrix x{.rows = 1, .cols = 3};
  for (double d : v->sample_rows[0]) x.values.push_back(static_cast<float>(d));
  EXPECT_TRUE((*model)->Predict(x).has_value());
  auto got = registry_->GetVersion("weld-pm", 1);
  EXPECT_EQ(got->card->training_data, "notebook");
  EXPECT_EQ(Json::parse(got->metrics_json)["auc"], 0.93);
  EXPECT_EQ(registry_->GetGroup("weld-pm")->description, "welding-gun failure within 24 h");
  // The importer produced it, so they cannot approve it.
  EXPECT_EQ(registry_->Approve("weld-pm", 1, "sam", "").error().code(), Code::kPermissionDenied);
  EXPECT_THAT(registry_->Approve("weld-pm", 1, "sam", "").error().message(),
              HasSubstr("sam imported weld-pm v1"));
  EXPECT_TRUE(registry_->Approve("weld-pm", 1, "ada", "").has_value());
}

TEST_F(ImportTest, UbjsonIsDetectedByContentAndKeptAsIs) {
  ImportRequest r = Request("weld.ubj");
  r.schema_json = R"([{"name": "force_kn", "type": "float"}, {"name": "current_ka", "type": "float"},
                      {"name": "temp_c", "type": "int"}])";
  auto v = Run(r);
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  EXPECT_EQ(v->artifact_format, "ubj");
  EXPECT_EQ(v->schema[2], (Feature{"temp_c", "int"}));
  ASSERT_EQ(put_.size(), 1u);
  EXPECT_EQ(put_[0], File("weld.ubj"));
}

TEST_F(ImportTest, UnnamedModelsTakeFeatureNamesOrASchema) {
  ExpectRefused(Request("unnamed.json"), "the model file names no features: give a schema");
  ImportRequest r = Request("unnamed.json");
  r.feature_names = {"a", "b", "c", "d"};
  auto v = Run(r);
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  EXPECT_EQ(v->schema.size(), 4u);
}

TEST_F(ImportTest, TakesModelsFromTaktsOwnTrainer) {
  ml::Matrix x{.rows = 40, .cols = 2};
  std::vector<float> y;
  for (size_t i = 0; i < 40; ++i) {
    x.values.push_back(static_cast<float>(i));
    x.values.push_back(static_cast<float>(i % 7));
    y.push_back(i > 20 ? 1.f : 0.f);
  }
  auto trained =
      ml::Train(x, y, nullptr, nullptr, {.params = {{"objective", "binary:logistic"}}, .num_rounds = 3});
  ASSERT_TRUE(trained.has_value()) << trained.error().ToString();
  ImportRequest r = Request();
  r.model_bytes = trained->model_json;
  r.feature_names = {"force_kn", "temp_c"};
  auto v = Run(r);
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  r.feature_names = {"force_kn"};
  put_.clear();
  auto wrong = Run(r);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().message(), "the schema has 1 features but the model file expects 2");
  EXPECT_TRUE(put_.empty());
}

TEST_F(ImportTest, BadImportsSayWhatIsWrongAndStoreNothing) {
  ImportRequest r = Request();
  r.framework = "sklearn";
  ExpectRefused(r, "framework 'sklearn' is not supported: only xgboost");

  r = Request();
  r.model_bytes = "{\"learner\": 1}";
  ExpectRefused(r, "model file");
  r.model_bytes = "not a model at all";
  ExpectRefused(r, "model file");
  r.model_bytes = "";
  ExpectRefused(r, "model file is empty");
  r.model_bytes = File("weld.json").substr(0, 500);  // truncated
  ExpectRefused(r, "model file");

  r = Request();
  r.feature_names = {"force_kn", "current_ka"};
  ExpectRefused(r, "the schema has 2 features but the model file expects 3");
  r.feature_names = {"force_kn", "temp_c", "current_ka"};
  ExpectRefused(r, "feature 2 is 'temp_c' in the schema but 'current_ka' in the model file");

  r = Request();
  r.schema_json = R"([{"name": "force_kn"}, {"name": "force_kn"}, {"name": "temp_c"}])";
  ExpectRefused(r, "feature 'force_kn' appears twice");
  r.schema_json = R"([{"name": "force_kn"}, {"name": ""}, {"name": "temp_c"}])";
  ExpectRefused(r, "feature 2 has an empty name");
  r.schema_json = R"([{"name": "force_kn", "type": "double"}, {"name": "current_ka"}, {"name": "temp_c"}])";
  ExpectRefused(r, "has type 'double'");
  r.schema_json = R"({"name": "force_kn"})";
  ExpectRefused(r, "schema: expected a JSON array");
  r.schema_json = R"([{"name": "force_kn", "unit": "kN"}, {"name": "current_ka"}, {"name": "temp_c"}])";
  ExpectRefused(r, "schema: feature 1: unknown field 'unit'");

  r = Request();
  r.metrics_json = R"({"auc": "0.9"})";
  ExpectRefused(r, "metrics: 'auc' is a string, not a number");
  r.metrics_json = R"([0.9])";
  ExpectRefused(r, "metrics: expected a JSON object of numbers");
  r.metrics_json = R"({"auc": {"holdout": 0.9}})";
  ExpectRefused(r, "metrics: 'auc' is {\"holdout\":0.9}, not a number");

  r = Request();
  r.params_json = "[1]";
  ExpectRefused(r, "params: expected a JSON object");

  r = Request();
  r.card_json = R"({"intended_use": "x"})";
  ExpectRefused(r, "model card: limitations is required");

  r = Request();
  r.sample_csv = "force_kn,current_ka\n1,2\n";
  ExpectRefused(r, "sample");
  r.sample_csv = "force_kn,current_ka,temp_c,extra\n1,2,3,4\n";
  ExpectRefused(r, "extra");
  r.sample_csv = "force_kn,current_ka,temp_c\n1,abc,3\n";
  ExpectRefused(r, "abc");
  r.sample_csv = "force_kn,current_ka,temp_c\n";
  for (int i = 0; i < 21; ++i) r.sample_csv += "1,2,3\n";
  ExpectRefused(r, "sample: more than 20 rows");
  r.sample_csv.clear();
  r.sample_json = "[[1, 2]]";
  ExpectRefused(r, "sample row 1 has 2 values; the schema has 3 features");
  r.sample_json = R"([[1, "x", 3]])";
  ExpectRefused(r, "sample row 1: \"x\" is not a number");

  r = Request();
  r.group = "weld pm";
  ExpectRefused(r, "model group name 'weld pm' is invalid");
  EXPECT_EQ(bus_->List(100)->size(), 0u);
}

}  // namespace
}  // namespace takt::registry
