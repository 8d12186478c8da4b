#include "ml/tree_engine.h"

#include <gtest/gtest.h>
#include <xgboost/c_api.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/json.h"

namespace takt::ml {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- A corpus trained by XGBoost itself, at test time -----------------------

struct Data {
  std::vector<float> x;
  std::vector<float> y;
  size_t rows = 0;
  size_t cols = 0;
};

struct Case {
  std::string name;
  std::map<std::string, std::string> params;  // objective, max_depth, ...
  int rounds = 10;
  size_t features = 6;
  int num_class = 0;
  double train_missing = 0;  // fraction of missing values
  double test_missing = 0;
  size_t categorical = 0;  // the first `categorical` features are categorical
  int categories = 8;
  bool feature_names = false;
};

// Features uniform in [-2, 2] (categories in 0..categories-1), labels shaped
// for the objective; test data also holds unseen categories.
Data MakeData(const Case& c, size_t rows, uint32_t seed, double missing, bool test) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-2, 2);
  std::uniform_real_distribution<double> p(0, 1);
  std::normal_distribution<float> noise(0, 0.3f);
  const std::string objective = c.params.at("objective");
  Data d;
  d.rows = rows;
  d.cols = c.features;
  for (size_t i = 0; i < rows; ++i) {
    std::vector<float> v(c.features);
    for (size_t j = 0; j < c.features; ++j) {
      if (j < c.categorical) {
        const int extra = test ? 2 : 0;
        v[j] = static_cast<float>(std::uniform_int_distribution<int>(0, c.categories - 1 + extra)(gen));
      } else {
        v[j] = u(gen);
      }
    }
    float score =
        v[c.categorical] + 0.5f * v[c.features - 1] - v[c.categorical + 1] * v[c.categorical + 1] / 2;
    for (size_t j = 0; j < c.categorical; ++j) score += (static_cast<int>(v[j]) % 3 == 1) ? 1.5f : -0.5f;
    score += noise(gen);
    float label = score;
    if (objective.starts_with("binary:")) {
      label = score > 0 ? 1.0f : 0.0f;
    } else if (objective == "reg:logistic") {
      label = 1.0f / (1.0f + std::exp(-score));
    } else if (objective == "count:poisson") {
      label = std::floor(std::exp(0.5f * score) * 2);
    } else if (objective.starts_with("multi:")) {
      label = static_cast<float>(
          std::clamp(static_cast<int>(std::floor(score + c.num_class / 2.0f)), 0, c.num_class - 1));
    } else {
      label = 3 * score + 1;
    }
    for (float& f : v) {
      if (p(gen) < missing) f = kNaN;
    }
    d.x.insert(d.x.end(), v.begin(), v.end());
    d.y.push_back(label);
  }
  return d;
}

std::string XgbError() { return XGBGetLastError(); }

class XgbMatrix {
 public:
  XgbMatrix(const Data& d, const Case& c) {
    EXPECT_EQ(XGDMatrixCreateFromMat(d.x.data(), d.rows, d.cols, kNaN, &h_), 0) << XgbError();
    EXPECT_EQ(XGDMatrixSetFloatInfo(h_, "label", d.y.data(), d.y.size()), 0) << XgbError();
    if (c.categorical > 0) {
      std::vector<const char*> types;
      for (size_t j = 0; j < c.features; ++j) types.push_back(j < c.categorical ? "c" : "q");
      EXPECT_EQ(XGDMatrixSetStrFeatureInfo(h_, "feature_type", types.data(), types.size()), 0) << XgbError();
    }
  }
  ~XgbMatrix() { XGDMatrixFree(h_); }
  XgbMatrix(const XgbMatrix&) = delete;
  XgbMatrix& operator=(const XgbMatrix&) = delete;
  DMatrixHandle get() const { return h_; }

 private:
  DMatrixHandle h_ = nullptr;
};

class XgbBooster {
 public:
  XgbBooster(const Case& c, const XgbMatrix& train) {
    DMatrixHandle cache[] = {train.get()};
    EXPECT_EQ(XGBoosterCreate(cache, 1, &h_), 0) << XgbError();
    std::map<std::string, std::string> params = {{"nthread", "1"}, {"seed", "7"}, {"tree_method", "hist"}};
    if (c.num_class > 0) params["num_class"] = std::to_string(c.num_class);
    for (const auto& [k, v] : c.params) params[k] = v;
    for (const auto& [k, v] : params) EXPECT_EQ(XGBoosterSetParam(h_, k.c_str(), v.c_str()), 0) << XgbError();
    if (c.feature_names) {
      std::vector<std::string> names;
      for (size_t j = 0; j < c.features; ++j) names.push_back("sensor_" + std::to_string(j));
      std::vector<const char*> p;
      for (const auto& s : names) p.push_back(s.c_str());
      EXPECT_EQ(XGBoosterSetStrFeatureInfo(h_, "feature_name", p.data(), p.size()), 0) << XgbError();
    }
    for (int i = 0; i < c.rounds; ++i) EXPECT_EQ(XGBoosterUpdateOneIter(h_, i, train.get()), 0) << XgbError();
  }
  ~XgbBooster() { XGBoosterFree(h_); }
  XgbBooster(const XgbBooster&) = delete;
  XgbBooster& operator=(const XgbBooster&) = delete;

  std::string Save(const char* format) const {
    const std::string config = std::string(R"({"format":")") + format + "\"}";
    bst_ulong len = 0;
    const char* bytes = nullptr;
    EXPECT_EQ(XGBoosterSaveModelToBuffer(h_, config.c_str(), &len, &bytes), 0) << XgbError();
    return std::string(bytes, len);
  }
  std::string SaveLegacy() const {
    bst_ulong len = 0;
    const char* bytes = nullptr;
    EXPECT_EQ(XGBoosterGetModelRaw(h_, &len, &bytes), 0) << XgbError();
    return std::string(bytes, len);
  }
  // type 0: value, 1: margin, 2: contributions.
  std::vector<float> Predict(const XgbMatrix& m, int type) const {
    const std::string config =
        R"({"type":)" + std::to_string(type) +
        R"(,"training":false,"iteration_begin":0,"iteration_end":0,"strict_shape":false})";
    const bst_ulong* shape = nullptr;
    bst_ulong dim = 0;
    const float* out = nullptr;
    EXPECT_EQ(XGBoosterPredictFromDMatrix(h_, m.get(), config.c_str(), &shape, &dim, &out), 0) << XgbError();
    size_t total = 1;
    for (bst_ulong i = 0; i < dim; ++i) total *= shape[i];
    return std::vector<float>(out, out + total);
  }

 private:
  BoosterHandle h_ = nullptr;
};

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double max = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return std::numeric_limits<double>::infinity();
    max = std::max(max, std::abs(static_cast<double>(a[i]) - b[i]));
  }
  return max;
}

// Trains `c` with XGBoost, loads its JSON and UBJSON into TreeEnsemble and
// compares predictions, margins and contributions on held-out rows.
void CheckAgainstXgboost(const Case& c) {
  SCOPED_TRACE(c.name);
  const Data train = MakeData(c, 400, 1, c.train_missing, false);
  const Data test = MakeData(c, 300, 2, c.test_missing, true);
  XgbMatrix dtrain(train, c);
  XgbMatrix dtest(test, c);
  XgbBooster booster(c, dtrain);
  const std::vector<float> want_value = booster.Predict(dtest, 0);
  const std::vector<float> want_margin = booster.Predict(dtest, 1);
  const std::vector<float> want_contribs = booster.Predict(dtest, 2);
  const std::string objective = c.params.at("objective");
  // Regression margins are sums of order 1-10, where a float step is about
  // 1e-6: those compare to 1e-5. Everything else to 1e-6.
  const bool regression = objective.starts_with("reg:") || objective == "count:poisson";
  const double margin_tolerance = regression ? 1e-5 : 1e-6;
  const double value_tolerance =
      objective == "count:poisson" || (regression && objective != "reg:logistic") ? 1e-5 : 1e-6;

  for (const char* format : {"json", "ubj"}) {
    SCOPED_TRACE(format);
    auto loaded = TreeEnsemble::Load(booster.Save(format));
    ASSERT_TRUE(loaded) << loaded.error().ToString();
    const TreeEnsemble& e = **loaded;
    ASSERT_EQ(e.num_features(), c.features);
    EXPECT_EQ(e.objective(), objective);
    const size_t margins = c.num_class > 0 ? static_cast<size_t>(c.num_class) : 1;
    ASSERT_EQ(e.num_margins(), margins);
    ASSERT_EQ(e.num_outputs(), objective == "multi:softprob" ? margins : 1);
    if (c.feature_names) {
      ASSERT_EQ(e.feature_names().size(), c.features);
      EXPECT_EQ(e.feature_names()[2], "sensor_2");
    }

    std::vector<float> value(test.rows * e.num_outputs());
    e.Predict(test.x.data(), test.rows, value.data());
    EXPECT_LE(MaxAbsDiff(value, want_value), value_tolerance);
    std::vector<float> margin(test.rows * margins);
    e.PredictMargin(test.x.data(), test.rows, margin.data());
    EXPECT_LE(MaxAbsDiff(margin, want_margin), margin_tolerance);
    // The single-row path gives the same.
    std::vector<float> one(margins);
    std::vector<float> single;
    for (size_t r = 0; r < test.rows; ++r) {
      e.PredictMargin(test.x.data() + r * c.features, 1, one.data());
      single.insert(single.end(), one.begin(), one.end());
    }
    EXPECT_LE(MaxAbsDiff(single, margin), 0.0);

    const size_t width = c.features + 1;
    std::vector<float> contribs(test.rows * margins * width);
    e.Contributions(test.x.data(), test.rows, contribs.data());
    EXPECT_LE(MaxAbsDiff(contribs, want_contribs), 1e-5);
    double worst_sum = 0;
    for (size_t i = 0; i < test.rows * margins; ++i) {
      double sum = 0;
      for (size_t j = 0; j < width; ++j) sum += contribs[i * width + j];
      worst_sum = std::max(worst_sum, std::abs(sum - margin[i]));
    }
    EXPECT_LE(worst_sum, 1e-4) << "contributions do not sum to the margin";
    if (std::getenv("TAKT_TREE_ENGINE_VERBOSE") != nullptr) {
      std::printf("%-28s %s value %.3g margin %.3g contribs %.3g\n", c.name.c_str(), format,
                  MaxAbsDiff(value, want_value), MaxAbsDiff(margin, want_margin),
                  MaxAbsDiff(contribs, want_contribs));
    }
  }
}

std::map<std::string, std::string> Params(std::string objective, int depth,
                                          std::map<std::string, std::string> more = {}) {
  more["objective"] = std::move(objective);
  more["max_depth"] = std::to_string(depth);
  return more;
}

TEST(TreeEngineTest, LogisticAtEveryDepth) {
  for (int depth = 1; depth <= 8; ++depth) {
    Case c{.name = "logistic depth " + std::to_string(depth),
           .params = Params("binary:logistic", depth, {{"eta", "0.3"}}),
           .rounds = depth % 2 ? 3 : 40,
           .train_missing = depth >= 5 ? 0.1 : 0,
           .test_missing = depth >= 3 ? 0.1 : 0};
    CheckAgainstXgboost(c);
  }
}

TEST(TreeEngineTest, ManyTreesWithBaseScore) {
  CheckAgainstXgboost({.name = "logistic 200 trees",
                       .params = Params("binary:logistic", 6, {{"eta", "0.05"}, {"base_score", "0.3"}}),
                       .rounds = 200,
                       .features = 12,
                       .train_missing = 0.05,
                       .test_missing = 0.05});
}

TEST(TreeEngineTest, BinaryAndRegressionObjectives) {
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> objectives = {
      {"binary:logitraw", {{"base_score", "0.7"}}},
      {"reg:squarederror", {{"base_score", "2.5"}}},
      {"reg:logistic", {{"base_score", "0.4"}}},
      {"reg:pseudohubererror", {}},
      {"reg:absoluteerror", {}},
      {"count:poisson", {{"base_score", "1.5"}}},
  };
  for (const auto& [objective, more] : objectives) {
    CheckAgainstXgboost({.name = objective,
                         .params = Params(objective, 5, more),
                         .rounds = 30,
                         .train_missing = 0.1,
                         .test_missing = 0.1});
  }
}

TEST(TreeEngineTest, MultiClass) {
  CheckAgainstXgboost({.name = "softprob",
                       .params = Params("multi:softprob", 4),
                       .rounds = 15,
                       .num_class = 3,
                       .train_missing = 0.1,
                       .test_missing = 0.1});
  CheckAgainstXgboost({.name = "softmax",
                       .params = Params("multi:softmax", 3, {{"base_score", "0.2"}}),
                       .rounds = 10,
                       .num_class = 4,
                       .test_missing = 0.05});
}

TEST(TreeEngineTest, RandomForests) {
  CheckAgainstXgboost(
      {.name = "forest",
       .params = Params(
           "binary:logistic", 6,
           {{"num_parallel_tree", "4"}, {"subsample", "0.8"}, {"colsample_bynode", "0.8"}, {"eta", "1"}}),
       .rounds = 3,
       .train_missing = 0.05,
       .test_missing = 0.1});
  CheckAgainstXgboost(
      {.name = "multi-class forest",
       .params = Params("multi:softprob", 4, {{"num_parallel_tree", "3"}, {"subsample", "0.7"}}),
       .rounds = 4,
       .num_class = 3,
       .test_missing = 0.1});
}

TEST(TreeEngineTest, CategoricalSplits) {
  // One-hot splits (few categories) and partition splits (max_cat_to_onehot 1).
  CheckAgainstXgboost({.name = "one-hot",
                       .params = Params("binary:logistic", 4, {{"max_cat_to_onehot", "64"}}),
                       .rounds = 20,
                       .test_missing = 0.1,
                       .categorical = 2,
                       .categories = 5});
  CheckAgainstXgboost({.name = "partition",
                       .params = Params("binary:logistic", 5, {{"max_cat_to_onehot", "1"}}),
                       .rounds = 20,
                       .features = 7,
                       .train_missing = 0.1,
                       .test_missing = 0.1,
                       .categorical = 2,
                       .categories = 40});
  CheckAgainstXgboost({.name = "partition softprob",
                       .params = Params("multi:softprob", 4, {{"max_cat_to_onehot", "1"}}),
                       .rounds = 8,
                       .num_class = 3,
                       .test_missing = 0.1,
                       .categorical = 1,
                       .categories = 12});
}

TEST(TreeEngineTest, FeatureNamesAndDart) {
  CheckAgainstXgboost({.name = "feature names",
                       .params = Params("reg:squarederror", 3),
                       .rounds = 10,
                       .feature_names = true});
  CheckAgainstXgboost({.name = "dart",
                       .params = Params("binary:logistic", 4,
                                        {{"booster", "dart"}, {"rate_drop", "0.3"}, {"skip_drop", "0"}}),
                       .rounds = 12,
                       .test_missing = 0.1});
}

// ---- Every batch size, every walk, the same bits ----------------------------

// Trains `c` with one more feature, constant, after its own (no tree can split
// on it), then predicts the test rows in batches of many sizes (the single-row
// walk below 4 rows, blocks of 8 rows with partial blocks above) and, with the
// constant feature missing in every row or in some, through the walks for
// missing values. Every way must give the same margins to the bit, and
// XGBoost's to 1e-6 (or 1e-5 for regression).
void CheckEveryWalk(const Case& c) {
  SCOPED_TRACE(c.name);
  Case wide = c;
  wide.features = c.features + 1;
  auto widen = [&](Data d) {
    Data out;
    out.rows = d.rows;
    out.cols = wide.features;
    out.y = d.y;
    for (size_t r = 0; r < d.rows; ++r) {
      out.x.insert(out.x.end(), d.x.begin() + static_cast<ptrdiff_t>(r * c.features),
                   d.x.begin() + static_cast<ptrdiff_t>((r + 1) * c.features));
      out.x.push_back(0.5f);
    }
    return out;
  };
  const Data train = widen(MakeData(c, 400, 1, c.train_missing, false));
  const Data test = widen(MakeData(c, 130, 2, c.test_missing, true));
  XgbMatrix dtrain(train, wide);
  XgbMatrix dtest(test, wide);
  XgbBooster booster(wide, dtrain);
  const std::vector<float> want = booster.Predict(dtest, 1);

  std::string text = booster.Save("json");
  for (size_t i = text.find("NaN"); i != std::string::npos; i = text.find("NaN", i))
    text.replace(i, 3, "null");
  const Json doc = Json::parse(text);
  const Json& gbtree = doc["learner"]["gradient_booster"];
  const Json& model = gbtree.contains("gbtree") ? gbtree["gbtree"]["model"] : gbtree["model"];  // dart
  for (const Json& tree : model["trees"]) {
    for (size_t k = 0; k < tree["split_indices"].size(); ++k) {
      if (tree["left_children"][k].get<int64_t>() == -1) continue;
      ASSERT_NE(tree["split_indices"][k].get<size_t>(), c.features)
          << "a tree splits on the constant feature";
    }
  }

  auto loaded = TreeEnsemble::Load(booster.Save("ubj"));
  ASSERT_TRUE(loaded) << loaded.error().ToString();
  const TreeEnsemble& e = **loaded;
  const size_t margins = e.num_margins();
  const size_t nf = wide.features;
  std::vector<float> all(test.rows * margins);
  e.PredictMargin(test.x.data(), test.rows, all.data());
  const std::string objective = c.params.at("objective");
  const bool regression = objective.starts_with("reg:") || objective == "count:poisson";
  EXPECT_LE(MaxAbsDiff(all, want), regression ? 1e-5 : 1e-6);

  auto expect_same = [&](const std::vector<float>& got, const std::string& what) {
    ASSERT_EQ(got.size(), all.size()) << what;
    for (size_t i = 0; i < got.size(); ++i) {
      // Bits, not values: +0 and -0 or two NaN would compare wrong otherwise.
      ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(all[i]))
          << what << ": row " << i / margins << " margin " << i % margins << ": " << got[i] << " vs "
          << all[i];
    }
  };
  // The rows in batches of each size, one after the other.
  auto in_batches = [&](const std::vector<float>& x, size_t size) {
    std::vector<float> out(test.rows * margins);
    for (size_t r = 0; r < test.rows; r += size) {
      const size_t n = std::min(size, test.rows - r);
      e.PredictMargin(x.data() + r * nf, n, out.data() + r * margins);
    }
    return out;
  };
  for (size_t size : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100, 129}) {
    expect_same(in_batches(test.x, size), "batches of " + std::to_string(size));
  }
  // The constant feature missing: every row, then every third row (blocks of
  // both kinds), through the walks for missing values.
  for (size_t every : {1, 3}) {
    std::vector<float> x = test.x;
    for (size_t r = 0; r < test.rows; r += every) x[r * nf + c.features] = kNaN;
    for (size_t size : {1, 3, 4, 8, 9, 17, 130}) {
      expect_same(in_batches(x, size),
                  "missing in every " + std::to_string(every) + " rows, batches of " + std::to_string(size));
    }
  }
  // Predict applies the same transform whatever the batch size.
  std::vector<float> value(test.rows * e.num_outputs());
  e.Predict(test.x.data(), test.rows, value.data());
  std::vector<float> one(e.num_outputs());
  for (size_t r = 0; r < test.rows; ++r) {
    e.Predict(test.x.data() + r * nf, 1, one.data());
    ASSERT_EQ(std::memcmp(one.data(), value.data() + r * e.num_outputs(), one.size() * sizeof(float)), 0)
        << "row " << r;
  }
}

TEST(TreeEngineTest, EveryWalkGivesTheSameBits) {
  // No missing values: the walk without missing values, single rows and blocks.
  CheckEveryWalk({.name = "logistic, no missing",
                  .params = Params("binary:logistic", 6, {{"eta", "0.2"}}),
                  .rounds = 37,  // not a multiple of the 16 trees walked together
                  .features = 9});
  CheckEveryWalk({.name = "regression, no missing",
                  .params = Params("reg:squarederror", 8, {{"base_score", "1.5"}}),
                  .rounds = 20});
  CheckEveryWalk(
      {.name = "softprob, no missing", .params = Params("multi:softprob", 5), .rounds = 13, .num_class = 3});
  CheckEveryWalk({.name = "dart, no missing",
                  .params = Params("binary:logistic", 4,
                                   {{"booster", "dart"}, {"rate_drop", "0.3"}, {"skip_drop", "0"}}),
                  .rounds = 18});
  // Missing values in the rows themselves, and categorical splits.
  CheckEveryWalk({.name = "logistic, missing",
                  .params = Params("binary:logistic", 6),
                  .rounds = 33,
                  .train_missing = 0.1,
                  .test_missing = 0.1});
  CheckEveryWalk({.name = "categorical, no missing",
                  .params = Params("binary:logistic", 5, {{"max_cat_to_onehot", "1"}}),
                  .rounds = 20,
                  .features = 7,
                  .categorical = 2,
                  .categories = 20});
  CheckEveryWalk({.name = "categorical, missing",
                  .params = Params("multi:softmax", 4, {{"max_cat_to_onehot", "1"}}),
                  .rounds = 9,
                  .num_class = 3,
                  .test_missing = 0.1,
                  .categorical = 1,
                  .categories = 12});
}

// ---- Predicting from many threads at once -----------------------------------

TEST(TreeEngineTest, ManyThreadsPredictTheSame) {
  const Case c{.name = "threads",
               .params = Params("multi:softprob", 5),
               .rounds = 20,
               .num_class = 3,
               .test_missing = 0.1};
  const Data train = MakeData(c, 400, 1, 0, false);
  const Data test = MakeData(c, 200, 3, c.test_missing, true);
  XgbMatrix dtrain(train, c);
  XgbBooster booster(c, dtrain);
  auto loaded = TreeEnsemble::Load(booster.Save("ubj"));
  ASSERT_TRUE(loaded) << loaded.error().ToString();
  const TreeEnsemble& e = **loaded;
  std::vector<float> want(test.rows * 3);
  e.Predict(test.x.data(), test.rows, want.data());
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<float> got(test.rows * 3);
      for (int round = 0; round < 20; ++round) {
        if ((round + t) % 2 == 0) {
          e.Predict(test.x.data(), test.rows, got.data());
        } else {
          for (size_t r = 0; r < test.rows; ++r)
            e.Predict(test.x.data() + r * c.features, 1, got.data() + r * 3);
        }
        if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0) ++mismatches[t];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// ---- Corrupt and unsupported models -----------------------------------------

class TreeEngineBadModelTest : public ::testing::Test {
 protected:
  static Json Model(bool categorical) {
    const Case c{.name = "small",
                 .params = Params("binary:logistic", 2, {{"max_cat_to_onehot", "1"}}),
                 .rounds = 2,
                 .features = 4,
                 .categorical = categorical ? 1u : 0u,
                 .categories = 10};
    const Data train = MakeData(c, 200, 1, 0, false);
    XgbMatrix dtrain(train, c);
    XgbBooster booster(c, dtrain);
    std::string text = booster.Save("json");
    // XGBoost writes NaN (categorical thresholds) as a bare word.
    for (size_t i = text.find("NaN"); i != std::string::npos; i = text.find("NaN", i))
      text.replace(i, 3, "null");
    return Json::parse(text);
  }
  static Json& Tree(Json& model, int t = 0) {
    return model["learner"]["gradient_booster"]["model"]["trees"][t];
  }
  static void ExpectInvalid(std::string_view bytes, std::string_view message) {
    auto loaded = TreeEnsemble::Load(bytes);
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.error().code(), Code::kInvalidArgument);
    EXPECT_NE(loaded.error().message().find(message), std::string::npos) << loaded.error().message();
  }
};

TEST_F(TreeEngineBadModelTest, EmptyTruncatedAndForeignBytes) {
  ExpectInvalid("", "empty");
  const std::string text = Model(false).dump();
  ExpectInvalid(text.substr(0, text.size() / 2), "truncated");
  ExpectInvalid("{}", "no learner");
  ExpectInvalid("not a model", "neither JSON nor UBJSON");
  ExpectInvalid(std::string(100, '[') + std::string(100, ']'), "neither JSON nor UBJSON");
  ExpectInvalid("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", "nested deeper");
}

TEST_F(TreeEngineBadModelTest, LegacyBinaryAndTruncatedUbjson) {
  const Case c{.name = "legacy", .params = Params("binary:logistic", 2), .rounds = 2};
  const Data train = MakeData(c, 100, 1, 0, false);
  XgbMatrix dtrain(train, c);
  XgbBooster booster(c, dtrain);
  ExpectInvalid(booster.SaveLegacy(), "legacy binary");
  const std::string ubj = booster.Save("ubj");
  ExpectInvalid(ubj.substr(0, ubj.size() - 10), "UBJSON");
}

TEST_F(TreeEngineBadModelTest, WrongNodeCount) {
  Json m = Model(false);
  Tree(m)["tree_param"]["num_nodes"] = "5";
  ExpectInvalid(m.dump(), "tree 0.left_children has 7 entries for 5 nodes");
}

TEST_F(TreeEngineBadModelTest, ChildOutOfRange) {
  Json m = Model(false);
  Tree(m, 1)["right_children"][0] = 99;
  ExpectInvalid(m.dump(), "tree 1 node 0 has children 1 and 99, outside 1..6");
}

TEST_F(TreeEngineBadModelTest, Cycle) {
  Json m = Model(false);
  Tree(m)["left_children"][2] = 1;  // node 2 points back at its sibling
  Tree(m)["right_children"][2] = 2;
  ExpectInvalid(m.dump(), "tree 0 node 2 leads back to a node already in the tree (a cycle)");
  Json self = Model(false);
  Tree(self)["left_children"][1] = 1;
  ExpectInvalid(self.dump(), "cycle");
}

TEST_F(TreeEngineBadModelTest, FeatureOutOfRange) {
  Json m = Model(false);
  Tree(m)["split_indices"][0] = 4;
  ExpectInvalid(m.dump(), "tree 0 node 0 splits on feature 4 of 4");
}

TEST_F(TreeEngineBadModelTest, BadCategoryArrays) {
  Json m = Model(true);
  Json& tree = Tree(m);
  ASSERT_FALSE(tree["categories_nodes"].empty()) << "the model has no categorical split";
  Json segments = m;
  Tree(segments)["categories_segments"][0] = 1000;
  ExpectInvalid(segments.dump(), "has categories [1000");
  Json sizes = m;
  Tree(sizes)["categories_sizes"].push_back(1);
  ExpectInvalid(sizes.dump(), "categories_sizes");
  Json node = m;
  Tree(node)["categories_nodes"][0] = 99;
  ExpectInvalid(node.dump(), "categories_nodes names node 99");
  Json value = m;
  Tree(value)["categories"][0] = -3;
  ExpectInvalid(value.dump(), "has category -3");
  Json missing = m;
  for (const char* key : {"categories", "categories_nodes", "categories_segments", "categories_sizes"}) {
    Tree(missing)[key] = Json::array();
  }
  ExpectInvalid(missing.dump(), "is a categorical split without categories");
}

// Random damage to the trees: every model either loads and predicts (all
// outputs computed, no crash, no endless walk) or is InvalidArgument.
TEST_F(TreeEngineBadModelTest, RandomDamageIsRejectedOrHarmless) {
  const Json model = Model(true);
  std::mt19937 gen(5);
  const char* keys[] = {"left_children", "right_children",      "split_indices",    "default_left",
                        "split_type",    "categories_segments", "categories_sizes", "categories_nodes",
                        "categories",    "split_conditions",    "sum_hessian"};
  std::vector<float> rows(16 * 4);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = i % 5 == 0 ? kNaN : static_cast<float>(i % 7) - 1;
  int loaded_count = 0;
  for (int round = 0; round < 300; ++round) {
    Json m = model;
    for (int k = std::uniform_int_distribution<int>(1, 3)(gen); k > 0; --k) {
      Json& tree = Tree(m, std::uniform_int_distribution<int>(0, 1)(gen));
      Json& array = tree[keys[std::uniform_int_distribution<size_t>(0, std::size(keys) - 1)(gen)]];
      if (array.empty()) continue;
      const size_t at = std::uniform_int_distribution<size_t>(0, array.size() - 1)(gen);
      array[at] = std::uniform_int_distribution<int>(-2, 12)(gen);
    }
    auto loaded = TreeEnsemble::Load(m.dump());
    if (!loaded) {
      EXPECT_EQ(loaded.error().code(), Code::kInvalidArgument) << loaded.error().ToString();
      continue;
    }
    ++loaded_count;
    const TreeEnsemble& e = **loaded;
    std::vector<float> out(16 * e.num_outputs());
    e.Predict(rows.data(), 16, out.data());
    e.Predict(rows.data(), 1, out.data());
    std::vector<float> contribs(16 * e.num_margins() * (e.num_features() + 1));
    e.Contributions(rows.data(), 16, contribs.data());
  }
  EXPECT_GT(loaded_count, 0);  // some damage is harmless (a threshold, a cover)
}

TEST_F(TreeEngineBadModelTest, UnsupportedModels) {
  Json m = Model(false);
  m["learner"]["objective"]["name"] = "rank:pairwise";
  ExpectInvalid(m.dump(), "objective 'rank:pairwise' is not supported");
  Json linear = Model(false);
  linear["learner"]["gradient_booster"]["name"] = "gblinear";
  ExpectInvalid(linear.dump(), "booster 'gblinear' is not supported");
  Json info = Model(false);
  info["learner"]["gradient_booster"]["model"]["tree_info"][1] = 3;
  ExpectInvalid(info.dump(), "tree_info assigns tree 1 to output 3 of 1");
}

}  // namespace
}  // namespace takt::ml
