// tree_engine_bench: takt's TreeEnsemble against XGBoost 1.7 in the same run.
//
// Trains a binary:logistic model of 500 trees, depth 6, on 32 random features
// (XGBoost C API, fixed seed), then measures single-row latency, single-thread
// batch throughput and TreeSHAP per row for both, each several times, and
// reports medians and ratios as a markdown table (printed, and written to
// --out, default bench/results/tree_engine.md).
//
//   takt_tree_engine_bench [--out FILE] [--trees N] [--rows N] [--repeats N] [--shap-rows N]
//                          [--model-cache FILE]
//
// --model-cache: load the trained model from FILE if it exists, else train and
// save it there (training takes a minute or two on a busy machine).
#include <xgboost/c_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ml/tree_engine.h"

namespace {

constexpr size_t kFeatures = 32;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

void Check(int rc, const char* what) {
  if (rc != 0) {
    std::fprintf(stderr, "%s: %s\n", what, XGBGetLastError());
    std::exit(1);
  }
}

std::vector<float> RandomRows(size_t rows, uint32_t seed, std::vector<float>* labels) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::normal_distribution<float> noise(0, 0.5f);
  std::vector<float> x(rows * kFeatures);
  for (size_t i = 0; i < rows; ++i) {
    float* r = &x[i * kFeatures];
    for (size_t j = 0; j < kFeatures; ++j) r[j] = u(gen);
    if (labels != nullptr) {
      const float s = r[0] + r[1] * r[2] - r[3] + 0.5f * std::sin(3 * r[4]) + r[5] * r[5] + noise(gen);
      labels->push_back(s > 0.3f ? 1.0f : 0.0f);
    }
  }
  return x;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median over `repeats` runs of fn(), which returns seconds per unit.
double Measure(int repeats, const std::function<double()>& fn) {
  std::vector<double> runs;
  for (int i = 0; i < repeats; ++i) runs.push_back(fn());
  return Median(runs);
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string ArrayInterface(const float* data, size_t rows) {
  char buf[256];
  std::snprintf(buf, sizeof buf, R"({"data":[%ju,true],"shape":[%zu,%zu],"typestr":"<f4","version":3})",
                static_cast<uintmax_t>(reinterpret_cast<uintptr_t>(data)), rows, kFeatures);
  return buf;
}

constexpr char kValueConfig[] =
    R"({"type":0,"training":false,"iteration_begin":0,"iteration_end":0,"strict_shape":false,"missing":NaN,"cache_id":0})";

const float* XgbPredictDense(BoosterHandle b, const float* rows, size_t n) {
  const std::string array = ArrayInterface(rows, n);
  const bst_ulong* shape = nullptr;
  bst_ulong dim = 0;
  const float* out = nullptr;
  Check(XGBoosterPredictFromDense(b, array.c_str(), kValueConfig, nullptr, &shape, &dim, &out),
        "XGBoosterPredictFromDense");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path = "bench/results/tree_engine.md";
  int trees = 500;
  size_t batch_rows = 100000;
  int repeats = 5;
  std::string model_cache;
  size_t shap_rows = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--out") {
      out_path = argv[i + 1];
    } else if (flag == "--trees") {
      trees = std::atoi(argv[i + 1]);
    } else if (flag == "--rows") {
      batch_rows = static_cast<size_t>(std::atol(argv[i + 1]));
    } else if (flag == "--shap-rows") {
      shap_rows = static_cast<size_t>(std::atol(argv[i + 1]));
    } else if (flag == "--model-cache") {
      model_cache = argv[i + 1];
    } else if (flag == "--repeats") {
      repeats = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }

  // Train.
  const size_t train_rows = 20000;
  std::vector<float> labels;
  const std::vector<float> train = RandomRows(train_rows, 42, &labels);
  DMatrixHandle dtrain = nullptr;
  Check(XGDMatrixCreateFromMat(train.data(), train_rows, kFeatures, kNaN, &dtrain), "XGDMatrixCreateFromMat");
  Check(XGDMatrixSetFloatInfo(dtrain, "label", labels.data(), labels.size()), "XGDMatrixSetFloatInfo");
  BoosterHandle booster = nullptr;
  Check(XGBoosterCreate(&dtrain, 1, &booster), "XGBoosterCreate");
  for (const auto& [k, v] : std::vector<std::pair<const char*, const char*>>{{"objective", "binary:logistic"},
                                                                             {"max_depth", "6"},
                                                                             {"eta", "0.1"},
                                                                             {"tree_method", "hist"},
                                                                             {"seed", "1"},
                                                                             {"nthread", "2"}}) {
    Check(XGBoosterSetParam(booster, k, v), "XGBoosterSetParam");
  }
  std::string cached;
  if (!model_cache.empty()) {
    std::ifstream in(model_cache, std::ios::binary);
    cached.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (!cached.empty()) {
    Check(XGBoosterLoadModelFromBuffer(booster, cached.data(), cached.size()),
          "XGBoosterLoadModelFromBuffer");
  } else {
    const auto train_start = std::chrono::steady_clock::now();
    for (int i = 0; i < trees; ++i)
      Check(XGBoosterUpdateOneIter(booster, i, dtrain), "XGBoosterUpdateOneIter");
    std::fprintf(stderr, "trained %d trees in %.1f s\n", trees, Seconds(train_start));
  }
  Check(XGBoosterSetParam(booster, "nthread", "1"), "XGBoosterSetParam");

  bst_ulong len = 0;
  const char* bytes = nullptr;
  Check(XGBoosterSaveModelToBuffer(booster, R"({"format":"ubj"})", &len, &bytes),
        "XGBoosterSaveModelToBuffer");
  const std::string model(bytes, len);
  if (!model_cache.empty() && cached.empty()) std::ofstream(model_cache, std::ios::binary) << model;
  const auto load_start = std::chrono::steady_clock::now();
  auto loaded = takt::ml::TreeEnsemble::Load(model);
  const double load_seconds = Seconds(load_start);
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().ToString().c_str());
    return 1;
  }
  const takt::ml::TreeEnsemble& engine = **loaded;

  const std::vector<float> rows = RandomRows(batch_rows, 7, nullptr);

  // Agreement on the batch, first.
  std::vector<float> mine(batch_rows);
  engine.Predict(rows.data(), batch_rows, mine.data());
  const float* theirs = XgbPredictDense(booster, rows.data(), batch_rows);
  double max_diff = 0;
  for (size_t i = 0; i < batch_rows; ++i)
    max_diff = std::max(max_diff, std::abs(double{mine[i]} - theirs[i]));

  // Single row: each call predicts the next of `single` rows.
  const size_t single = 2000;
  volatile float sink = 0;
  const double xgb_row = Measure(repeats, [&] {
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < single; ++i) sink = *XgbPredictDense(booster, rows.data() + i * kFeatures, 1);
    return Seconds(start) / single;
  });
  const size_t engine_single = 20000;
  const double engine_row = Measure(repeats, [&] {
    float out = 0;
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < engine_single; ++i) {
      engine.Predict(rows.data() + i * kFeatures, 1, &out);
      sink = out;
    }
    return Seconds(start) / engine_single;
  });

  // Batch, one thread.
  const double xgb_batch = Measure(repeats, [&] {
    const auto start = std::chrono::steady_clock::now();
    sink = *XgbPredictDense(booster, rows.data(), batch_rows);
    return Seconds(start) / batch_rows;
  });
  const double engine_batch = Measure(repeats, [&] {
    const auto start = std::chrono::steady_clock::now();
    engine.Predict(rows.data(), batch_rows, mine.data());
    return Seconds(start) / batch_rows;
  });

  // TreeSHAP.
  DMatrixHandle dshap = nullptr;
  Check(XGDMatrixCreateFromMat(rows.data(), shap_rows, kFeatures, kNaN, &dshap), "XGDMatrixCreateFromMat");
  const double xgb_shap = Measure(repeats, [&] {
    const bst_ulong* shape = nullptr;
    bst_ulong dim = 0;
    const float* out = nullptr;
    const auto start = std::chrono::steady_clock::now();
    Check(XGBoosterPredictFromDMatrix(
              booster, dshap,
              R"({"type":2,"training":false,"iteration_begin":0,"iteration_end":0,"strict_shape":false})",
              &shape, &dim, &out),
          "XGBoosterPredictFromDMatrix");
    return Seconds(start) / shap_rows;
  });
  std::vector<float> contribs(shap_rows * (kFeatures + 1));
  const double engine_shap = Measure(repeats, [&] {
    const auto start = std::chrono::steady_clock::now();
    engine.Contributions(rows.data(), shap_rows, contribs.data());
    return Seconds(start) / shap_rows;
  });
  {
    const bst_ulong* shape = nullptr;
    bst_ulong dim = 0;
    const float* out = nullptr;
    Check(XGBoosterPredictFromDMatrix(
              booster, dshap,
              R"({"type":2,"training":false,"iteration_begin":0,"iteration_end":0,"strict_shape":false})",
              &shape, &dim, &out),
          "XGBoosterPredictFromDMatrix");
    for (size_t i = 0; i < contribs.size(); ++i) {
      max_diff = std::max(max_diff, std::abs(double{contribs[i]} - out[i]));
    }
  }

  std::ostringstream md;
  char line[1024];
  md << "# TreeEnsemble vs XGBoost 1.7 (one thread)\n\n";
  std::snprintf(
      line, sizeof line,
      "Model: binary:logistic, %d trees, max_depth 6, %zu features, hist, trained on %zu random rows; "
      "%zu test rows without missing values. Median of %d runs. Loading the UBJSON model took %.0f "
      "ms; largest difference from XGBoost (probabilities and contributions): %.3g.\n\n",
      trees, kFeatures, train_rows, batch_rows, repeats, load_seconds * 1e3, max_diff);
  md << line;
  md << "| measurement | XGBoost | TreeEnsemble | speed-up |\n|---|---|---|---|\n";
  auto row = [&](const char* what, double xgb, double mine_s, bool throughput) {
    if (throughput) {
      std::snprintf(line, sizeof line, "| %s | %.0f rows/s | %.0f rows/s | %.1fx |\n", what, 1 / xgb,
                    1 / mine_s, xgb / mine_s);
    } else {
      std::snprintf(line, sizeof line, "| %s | %.2f us | %.2f us | %.1fx |\n", what, xgb * 1e6, mine_s * 1e6,
                    xgb / mine_s);
    }
    md << line;
  };
  row("single-row Predict latency", xgb_row, engine_row, false);
  row("batch Predict throughput", xgb_batch, engine_batch, true);
  row("TreeSHAP per row", xgb_shap, engine_shap, false);
  {
    std::ifstream load("/proc/loadavg");
    std::string one, five;
    load >> one >> five;
    md << "\nLoad average during the run (shared machine): " << one << " / " << five
       << " (1 / 5 min); both engines are measured in the same run, so the ratios hold better than the "
          "absolute numbers.\n";
  }
  md << "\nXGBoost: `XGBoosterPredictFromDense` (nthread=1) for predictions, `XGBoosterPredictFromDMatrix` "
        "type 2 for contributions. Goals: single row <= 1/10 of XGBoost's latency, batch >= 3x its "
        "throughput.\n";
  std::cout << md.str();
  std::ofstream file(out_path);
  file << md.str();
  if (!file) {
    std::fprintf(stderr, "cannot write %s\n", out_path.c_str());
    return 1;
  }
  XGDMatrixFree(dshap);
  XGDMatrixFree(dtrain);
  XGBoosterFree(booster);
  return 0;
}
