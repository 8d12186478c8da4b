#include "ml/xgboost_model.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <xgboost/c_api.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "core/json.h"
#include "ml/metrics.h"

namespace takt::ml {
namespace {

namespace fs = std::filesystem;

// A small problem: y = 1 when x0 + 0.5 x1 - x2 > 0 (plus label noise); x3 is
// noise; about 5 % of the values are missing.
struct Problem {
  Matrix x;
  std::vector<float> y;
};

Problem MakeProblem(size_t rows, uint32_t seed, bool random_labels = false) {
  std::mt19937 gen(seed);
  auto uniform = [&] { return static_cast<float>(gen() >> 8) / static_cast<float>(1 << 24); };
  Problem p;
  p.x.rows = rows;
  p.x.cols = 4;
  for (size_t i = 0; i < rows; ++i) {
    float v[4];
    for (float& f : v) f = uniform() * 2 - 1;
    const float score = v[0] + 0.5f * v[1] - v[2];
    float label = score > 0 ? 1.0f : 0.0f;
    if (uniform() < 0.05f) label = 1 - label;
    if (random_labels) label = uniform() < 0.5f ? 1.0f : 0.0f;
    for (float& f : v) {
      if (uniform() < 0.05f) f = std::nanf("");
    }
    p.x.values.insert(p.x.values.end(), v, v + 4);
    p.y.push_back(label);
  }
  return p;
}

TrainOptions SmallOptions(int rounds = 20) {
  TrainOptions o;
  o.params = {{"objective", "binary:logistic"}, {"max_depth", "3"}, {"eta", "0.3"}, {"tree_method", "hist"}};
  o.num_rounds = rounds;
  o.nthread = 1;
  return o;
}

class XgboostModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Problem train = MakeProblem(600, 1);
    auto r = Train(train.x, train.y, nullptr, nullptr, SmallOptions());
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    model_json_ = new std::string(r->model_json);
  }
  static void TearDownTestSuite() {
    delete model_json_;
    model_json_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(model_json_, nullptr) << "training the shared model failed";
    dir_ = fs::temp_directory_path() / ("takt-xgb-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteFile(const std::string& name, std::string_view bytes) {
    std::ofstream(dir_ / name, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  std::string ReadFile(const std::string& name) {
    std::ifstream in(dir_ / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::vector<float> ReadFloats(const std::string& name) {
    const std::string bytes = ReadFile(name);
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
  }

  static std::string* model_json_;
  fs::path dir_;
};

std::string* XgboostModelTest::model_json_ = nullptr;

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

TEST_F(XgboostModelTest, TrainsAndPredicts) {
  auto model = XgbModel::Load(*model_json_);
  ASSERT_TRUE(model.has_value()) << model.error().ToString();
  EXPECT_EQ((*model)->num_features(), 4u);
  Problem test = MakeProblem(400, 2);
  auto p = (*model)->Predict(test.x);
  ASSERT_TRUE(p.has_value()) << p.error().ToString();
  ASSERT_EQ(p->size(), 400u);
  for (float v : *p) {
    ASSERT_GE(v, 0.0f);
    ASSERT_LE(v, 1.0f);
  }
  EXPECT_GT(RocAuc(*p, test.y), 0.9);
  Matrix empty;
  empty.cols = 4;
  auto none = (*model)->Predict(empty);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
}

// The same model and rows through Debian's python3-xgboost: in-place and
// DMatrix prediction must agree with ours; python also saves the model as
// UBJSON and in the legacy binary format, which Load must read to the same model.
TEST_F(XgboostModelTest, PredictionsMatchPythonXgboost) {
  if (std::system("/usr/bin/python3 -c 'import numpy, xgboost' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "Debian's python3-xgboost is not installed at /usr/bin/python3";
  }
  Problem test = MakeProblem(300, 3);
  WriteFile("model.json", *model_json_);
  WriteFile("x.f32", std::string_view(reinterpret_cast<const char*>(test.x.values.data()),
                                      test.x.values.size() * sizeof(float)));
  WriteFile("check.py", R"(import sys, warnings
import numpy as np, xgboost as xgb
warnings.simplefilter("ignore")
d, rows, cols = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x = np.fromfile(d + "/x.f32", dtype="<f4").reshape(rows, cols)
bst = xgb.Booster(model_file=d + "/model.json")
bst.inplace_predict(x).astype("<f4").tofile(d + "/inplace.f32")
bst.predict(xgb.DMatrix(x, missing=np.nan)).astype("<f4").tofile(d + "/dmatrix.f32")
bst.save_model(d + "/model.ubj")
bst.save_model(d + "/model.bin")
)");
  const std::string cmd = "/usr/bin/python3 " + (dir_ / "check.py").string() + " " + dir_.string() + " " +
                          std::to_string(test.x.rows) + " " + std::to_string(test.x.cols) + " 2>" +
                          (dir_ / "stderr.txt").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << ReadFile("stderr.txt");

  auto model = XgbModel::Load(*model_json_);
  ASSERT_TRUE(model.has_value());
  auto ours = (*model)->Predict(test.x);
  ASSERT_TRUE(ours.has_value());
  EXPECT_LE(MaxAbsDiff(*ours, ReadFloats("inplace.f32")), 1e-6f);
  EXPECT_LE(MaxAbsDiff(*ours, ReadFloats("dmatrix.f32")), 1e-6f);

  for (const char* file : {"model.ubj", "model.bin"}) {
    SCOPED_TRACE(file);
    const std::string bytes = ReadFile(file);
    ASSERT_FALSE(bytes.empty());
    auto other = XgbModel::Load(bytes);
    ASSERT_TRUE(other.has_value()) << other.error().ToString();
    auto p = (*other)->Predict(test.x);
    ASSERT_TRUE(p.has_value());
    EXPECT_LE(MaxAbsDiff(*ours, *p), 1e-6f);
  }
}

TEST_F(XgboostModelTest, ConcurrentPredictGivesTheSameResults) {
  auto loaded = XgbModel::Load(*model_json_);
  ASSERT_TRUE(loaded.has_value());
  const XgbModel& model = **loaded;
  std::vector<Problem> inputs;
  std::vector<std::vector<float>> expected;
  for (uint32_t t = 0; t < 4; ++t) {
    inputs.push_back(MakeProblem(200 + 50 * t, 10 + t));  // different sizes per thread
    expected.push_back(*model.Predict(inputs.back().x));
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 30; ++i) {
        auto p = model.Predict(inputs[t].x);
        if (!p || *p != expected[t]) ++mismatches[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, (std::vector<int>{0, 0, 0, 0}));
}

TEST_F(XgboostModelTest, WrongColumnCountIsInvalidArgument) {
  auto model = XgbModel::Load(*model_json_);
  ASSERT_TRUE(model.has_value());
  Matrix x;
  x.rows = 2;
  x.cols = 3;
  x.values.assign(6, 0.5f);
  auto p = (*model)->Predict(x);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code(), Code::kInvalidArgument);
  EXPECT_NE(p.error().message().find("expects 4 features, got 3"), std::string::npos) << p.error().message();

  x.cols = 4;  // 6 values are not 2 x 4
  p = (*model)->Predict(x);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code(), Code::kInvalidArgument);
}

TEST_F(XgboostModelTest, GarbageIsNotAModel) {
  std::string random_bytes(4096, '\0');
  std::mt19937 gen(5);
  for (char& c : random_bytes) c = static_cast<char>(gen());
  const std::string inputs[] = {
      "",
      "hello, world",
      "{}",
      R"({"learner": {}})",
      R"({"learner": 1, "version": [1, 7, 4]})",
      model_json_->substr(0, model_json_->size() / 2),
      random_bytes,
      std::string("binf") + random_bytes,
  };
  for (const std::string& bytes : inputs) {
    SCOPED_TRACE(bytes.substr(0, 40));
    auto model = XgbModel::Load(bytes);
    ASSERT_FALSE(model.has_value());
    EXPECT_EQ(model.error().code(), Code::kInvalidArgument);
    EXPECT_EQ(model.error().message().find("not "), 0u) << model.error().message();
    EXPECT_NE(model.error().message().find("XGBoost model"), std::string::npos) << model.error().message();
  }
}

// Corrupt trees must be refused before XGBoost follows them: its predictor
// trusts child and feature indices (a cycle would loop forever).
TEST_F(XgboostModelTest, CorruptTreesAreRefused) {
  auto parsed = ParseJson(*model_json_, "model");
  ASSERT_TRUE(parsed.has_value());
  const Json& tree = (*parsed)["learner"]["gradient_booster"]["model"]["trees"][0];
  const size_t nodes = tree["left_children"].size();
  ASSERT_GT(nodes, 2u);
  struct Case {
    const char* field;
    size_t index;
    int64_t value;
    const char* mentions;
  };
  const Case cases[] = {
      {"left_children", 0, 0, "outside"},  // the root's child is the root
      {"right_children", 0, tree["left_children"][0].get<int64_t>(), "back to a node"},
      {"right_children", 0, static_cast<int64_t>(nodes) + 5, "outside"},
      {"split_indices", 0, 4, "splits on feature 4 of 4"},
      {"parents", 1, 1 << 30, "parent"},
      {"split_type", 0, 1, "categorical"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    Json model = *parsed;
    model["learner"]["gradient_booster"]["model"]["trees"][0][c.field][c.index] = c.value;
    auto loaded = XgbModel::Load(model.dump());
    ASSERT_FALSE(loaded.has_value());
    EXPECT_EQ(loaded.error().code(), Code::kInvalidArgument);
    EXPECT_NE(loaded.error().message().find("tree 0"), std::string::npos) << loaded.error().message();
    EXPECT_NE(loaded.error().message().find(c.mentions), std::string::npos) << loaded.error().message();
  }
  Json model = *parsed;
  model["learner"]["gradient_booster"]["model"]["tree_info"][3] = 1;  // a binary model has one output
  auto loaded = XgbModel::Load(model.dump());
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error().code(), Code::kInvalidArgument);
}

// The legacy binary format: read, and its length fields checked before
// XGBoost allocates what they claim.
TEST_F(XgboostModelTest, LegacyBinaryFormat) {
  BoosterHandle h = nullptr;
  ASSERT_EQ(XGBoosterCreate(nullptr, 0, &h), 0);
  ASSERT_EQ(XGBoosterLoadModelFromBuffer(h, model_json_->data(), model_json_->size()), 0);
  bst_ulong len = 0;
  const char* bytes = nullptr;
  ASSERT_EQ(XGBoosterSaveModelToBuffer(h, R"({"format":"deprecated"})", &len, &bytes), 0);
  const std::string legacy(bytes, len);
  ASSERT_EQ(XGBoosterFree(h), 0);
  ASSERT_EQ(legacy.substr(0, 4), "binf");

  Problem test = MakeProblem(100, 9);
  auto json_model = XgbModel::Load(*model_json_);
  auto binary_model = XgbModel::Load(legacy);
  ASSERT_TRUE(json_model.has_value() && binary_model.has_value());
  EXPECT_EQ(*(*json_model)->Predict(test.x), *(*binary_model)->Predict(test.x));

  auto patched = [&](size_t offset, auto value) {
    std::string b = legacy;
    std::memcpy(b.data() + offset, &value, sizeof value);
    return b;
  };
  const size_t objective = 4 + 136;  // "binf", the learner's parameters
  const std::string corrupt[] = {
      patched(objective, uint64_t{1} << 40),             // the objective name's length
      patched(objective + 8 + 15 + 8 + 6, int32_t{-1}),  // num_trees ("binary:logistic", "gbtree")
      patched(objective + 8 + 15 + 8 + 6 + 160 + 4, int32_t{1} << 30),  // tree 0's node count
      legacy.substr(0, legacy.size() / 2),
  };
  for (const std::string& b : corrupt) {
    auto m = XgbModel::Load(b);
    ASSERT_FALSE(m.has_value());
    EXPECT_EQ(m.error().code(), Code::kInvalidArgument);
    EXPECT_NE(m.error().message().find("not an XGBoost model"), std::string::npos) << m.error().message();
  }
}

TEST_F(XgboostModelTest, MultiOutputModelsAreRefused) {
  Problem train = MakeProblem(200, 4);
  for (size_t i = 0; i < train.y.size(); ++i) train.y[i] = static_cast<float>(i % 3);
  TrainOptions o = SmallOptions(3);
  o.params["objective"] = "multi:softprob";
  o.params["num_class"] = "3";
  auto r = Train(train.x, train.y, nullptr, nullptr, o);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  auto model = XgbModel::Load(r->model_json);
  ASSERT_FALSE(model.has_value());
  EXPECT_EQ(model.error().code(), Code::kInvalidArgument);
  EXPECT_NE(model.error().message().find("3 outputs per row"), std::string::npos) << model.error().message();
}

TEST_F(XgboostModelTest, ValidationCurveAndEarlyStopping) {
  Problem train = MakeProblem(600, 1);
  Problem valid = MakeProblem(300, 6);
  TrainOptions o = SmallOptions(15);
  auto r = Train(train.x, train.y, &valid.x, &valid.y, o);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_EQ(r->curve.size(), 15u);
  EXPECT_EQ(r->best_iteration, 14);
  EXPECT_LT(r->curve.back().first, r->curve.front().first);  // train logloss falls
  EXPECT_LT(r->curve.back().second, r->curve.front().second);

  // Validation labels that are pure noise: the validation logloss soon stops improving.
  Problem noise = MakeProblem(300, 7, /*random_labels=*/true);
  o.num_rounds = 200;
  o.early_stopping_rounds = 5;
  r = Train(train.x, train.y, &noise.x, &noise.y, o);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_LT(r->best_iteration, 100);
  ASSERT_EQ(r->curve.size(), static_cast<size_t>(r->best_iteration + 1 + 5));
  for (size_t i = 0; i < r->curve.size(); ++i) {
    EXPECT_GE(r->curve[i].second, r->curve[static_cast<size_t>(r->best_iteration)].second);
  }
  // The saved model stops at the best iteration and says so.
  auto json = ParseJson(r->model_json, "model");
  ASSERT_TRUE(json.has_value());
  const Json& learner = (*json)["learner"];
  EXPECT_EQ(learner["gradient_booster"]["model"]["gbtree_model_param"]["num_trees"].get<std::string>(),
            std::to_string(r->best_iteration + 1));
  EXPECT_EQ(learner["attributes"]["best_iteration"].get<std::string>(), std::to_string(r->best_iteration));

  // With AUC as the metric, larger is better.
  o.params["eval_metric"] = "auc";
  r = Train(train.x, train.y, &valid.x, &valid.y, o);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  const double best_auc = r->curve[static_cast<size_t>(r->best_iteration)].second;
  EXPECT_GT(best_auc, 0.9);
  for (const auto& [train_auc, valid_auc] : r->curve) EXPECT_LE(valid_auc, best_auc);
}

TEST_F(XgboostModelTest, TrainRejectsBadInput) {
  Problem p = MakeProblem(50, 8);
  std::vector<float> short_y(p.y.begin(), p.y.end() - 1);
  auto r = Train(p.x, short_y, nullptr, nullptr, SmallOptions());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);

  TrainOptions o = SmallOptions();
  o.early_stopping_rounds = 3;
  r = Train(p.x, p.y, nullptr, nullptr, o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);

  o = SmallOptions();
  o.params["objective"] = "binary:nonsense";
  r = Train(p.x, p.y, nullptr, nullptr, o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().message().find("nonsense"), std::string::npos) << r.error().message();

  o = SmallOptions();
  o.params["max_depth"] = "deep";
  r = Train(p.x, p.y, nullptr, nullptr, o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);

  Matrix narrow = p.x;
  narrow.cols = 3;
  narrow.values.resize(narrow.rows * 3);
  r = Train(p.x, p.y, &narrow, &p.y, SmallOptions());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

frame::Table MixedTable() {
  using frame::Column;
  using frame::Type;
  frame::Table t;
  Column i{{"count", Type::kInt64, false}, {1, 2, 3}, {}, {}, {}};
  Column d{{"force", Type::kFloat64, true}, {}, {0.5, 0.0, 2.5}, {}, {1, 0, 1}};
  Column b{{"ok", Type::kBool, false}, {1, 0, 1}, {}, {}, {}};
  Column s{{"plant", Type::kString, false}, {}, {}, {"a", "b", "c"}, {}};
  Column y{{"label", Type::kInt64, true}, {0, 1, 0}, {}, {}, {1, 1, 0}};
  t.columns = {i, d, b, s, y};
  return t;
}

TEST(ToMatrixTest, BuildsRowMajorFloatsWithNaNForNull) {
  const frame::Table t = MixedTable();
  auto m = ToMatrix(t, {"force", "count", "ok"});
  ASSERT_TRUE(m.has_value()) << m.error().ToString();
  EXPECT_EQ(m->rows, 3u);
  EXPECT_EQ(m->cols, 3u);
  EXPECT_EQ(m->values[0], 0.5f);
  EXPECT_EQ(m->values[1], 1.0f);
  EXPECT_EQ(m->values[2], 1.0f);
  EXPECT_TRUE(std::isnan(m->values[3]));
  EXPECT_EQ(m->values[8], 1.0f);

  const std::vector<size_t> rows = {2, 0};
  m = ToMatrix(t, {"count"}, &rows);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->values, (std::vector<float>{3, 1}));
  auto y = ToLabels(t, "label", &rows);
  ASSERT_FALSE(y.has_value());  // row 2's label is null
  EXPECT_EQ(y.error().code(), Code::kInvalidArgument);
  const std::vector<size_t> labelled = {1, 0};
  y = ToLabels(t, "label", &labelled);
  ASSERT_TRUE(y.has_value());
  EXPECT_EQ(*y, (std::vector<float>{1, 0}));
}

TEST(ToMatrixTest, ErrorsNameTheColumn) {
  const frame::Table t = MixedTable();
  auto m = ToMatrix(t, {"count", "speed"});
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code(), Code::kInvalidArgument);
  EXPECT_NE(m.error().message().find("'speed'"), std::string::npos);
  m = ToMatrix(t, {"plant"});
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code(), Code::kInvalidArgument);
  EXPECT_NE(m.error().message().find("'plant' is string"), std::string::npos) << m.error().message();
  const std::vector<size_t> rows = {0, 3};
  m = ToMatrix(t, {"count"}, &rows);
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code(), Code::kInvalidArgument);
  auto y = ToLabels(t, "fails");
  ASSERT_FALSE(y.has_value());
  EXPECT_NE(y.error().message().find("'fails'"), std::string::npos);
}

}  // namespace
}  // namespace takt::ml
