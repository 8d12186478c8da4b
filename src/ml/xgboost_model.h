// File: ml/xgboost_model.h
//
// XGBoost behind takt's types: training (the `train` step of a pipeline) and a
// loaded model for batch and online scoring. Wraps the XGBoost C API (Debian's
// libxgboost 1.7); every failing call becomes an Error carrying XGBoost's own
// message, and no XGBoost exception or handle escapes this module.
//
// Thread safety: Train and the table conversions are pure and may run
// concurrently. A loaded XgbModel is immutable; Predict may be called from many
// threads at once. It uses XGBoost's in-place prediction, which writes its
// result into a buffer that XGBoost keeps per thread and per booster (the
// learner's thread-local entry), and the one-off lazy configuration of the
// booster is done (under XGBoost's own lock, and here eagerly) inside Load.
// xgboost_model_test.cc predicts from several threads and compares the results.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"
#include "frame/table.h"

namespace takt::ml {

struct TrainOptions {
  // Passed to XGBoosterSetParam, e.g. {"max_depth","6"},{"eta","0.1"},{"objective","binary:logistic"}.
  std::map<std::string, std::string> params;
  int num_rounds = 200;
  // 0 = off; else stop when the last eval metric on the validation set has not
  // improved for this many rounds (needs a validation set).
  int early_stopping_rounds = 0;
  int nthread = 0;  // 0 = XGBoost default
  // Called after every round (with the train and validation metric when a
  // validation set is given, else NaN). Returning false stops training: the
  // model keeps the rounds so far and `stopped` says why in TrainResult.
  std::function<bool(int round, double train_metric, double valid_metric)> on_round;
};

struct TrainResult {
  // XGBoosterSaveModelToBuffer with {"format":"json"}. With early stopping the
  // model holds the rounds up to and including best_iteration only (and its
  // attributes best_iteration and best_score, as XGBoost's Python package sets).
  std::string model_json;
  // With early stopping, the round with the best validation metric; else the last round.
  int best_iteration = 0;
  // Per round (train metric, validation metric) when a validation set is
  // given, else empty. The metric is the last one XGBoost evaluates (the
  // objective's default unless params set eval_metric).
  std::vector<std::pair<double, double>> curve;
  std::string metric;    // the metric's name, e.g. "logloss"
  bool stopped = false;  // on_round asked to stop
};

// Features: row-major float matrix, NaN = missing.
struct Matrix {
  std::vector<float> values;
  size_t rows = 0;
  size_t cols = 0;
};

// Builds a Matrix from the named numeric (int64, float64, bool, timestamp)
// columns of a table, nulls as NaN; with `row_subset`, only those rows, in
// that order. Errors (InvalidArgument) name a missing or non-numeric column,
// or a row out of range.
Result<Matrix> ToMatrix(const frame::Table& table, const std::vector<std::string>& feature_names,
                        const std::vector<size_t>* row_subset = nullptr);
// The label column as floats; a missing, non-numeric, null or NaN label is InvalidArgument.
Result<std::vector<float>> ToLabels(const frame::Table& table, std::string_view label,
                                    const std::vector<size_t>* row_subset = nullptr);

// Trains a booster. Inconsistent shapes, bad options and parameters XGBoost
// rejects are InvalidArgument; other XGBoost failures Internal.
Result<TrainResult> Train(const Matrix& x, const std::vector<float>& y, const Matrix* x_valid,
                          const std::vector<float>* y_valid, const TrainOptions& options);

// A loaded model. Immutable: Predict is safe from many threads at once.
class XgbModel {
 public:
  // JSON, UBJSON or XGBoost's legacy binary format. Model bytes are untrusted:
  // they are parsed and checked (tree structure, feature and child indices,
  // length fields) before XGBoost sees them, since XGBoost's predictor trusts
  // them. Bytes that are not a sound XGBoost model are InvalidArgument "not an
  // XGBoost model: ..." or "not a valid XGBoost model: ..."; so is a model
  // with more than one output per row (multi-class), or with categorical splits.
  static Result<std::unique_ptr<XgbModel>> Load(std::string_view model_bytes);
  ~XgbModel();
  XgbModel(const XgbModel&) = delete;
  XgbModel& operator=(const XgbModel&) = delete;

  size_t num_features() const { return num_features_; }
  // One output per row (the probability for binary:logistic). A column count
  // other than num_features() is InvalidArgument naming expected and got.
  Result<std::vector<float>> Predict(const Matrix& x) const;

 private:
  XgbModel(void* booster, size_t num_features) : booster_(booster), num_features_(num_features) {}

  void* booster_;  // BoosterHandle
  size_t num_features_;
};

}  // namespace takt::ml
