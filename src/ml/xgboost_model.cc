#include "ml/xgboost_model.h"

#include <xgboost/c_api.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

#include "ml/xgboost_model_check.h"

namespace takt::ml {
namespace {

using frame::Column;
using frame::Table;
using frame::Type;

// XGBoost's last error on this thread: its first line, without the
// "[18:53:03] ./src/learner.cc:1017: " prefix.
std::string LastError() {
  std::string_view e = XGBGetLastError();
  e = e.substr(0, e.find('\n'));
  if (e.starts_with('[')) {
    if (auto pos = e.find("] "); pos != std::string_view::npos) e.remove_prefix(pos + 2);
  }
  if (auto pos = e.find(": ");
      pos != std::string_view::npos && e.substr(0, pos).find(".cc:") != std::string_view::npos) {
    e.remove_prefix(pos + 2);
  }
  return std::string(e);
}

std::unexpected<Error> XgbError(Code code, std::string_view what) {
  return MakeError(code, std::string(what) + ": " + LastError());
}

struct DMatrixFree {
  void operator()(void* h) const { IgnoreError(XGDMatrixFree(h)); }
};
struct BoosterFree {
  void operator()(void* h) const { IgnoreError(XGBoosterFree(h)); }
};
using DMatrixPtr = std::unique_ptr<void, DMatrixFree>;
using BoosterPtr = std::unique_ptr<void, BoosterFree>;

bool UsesInts(Type t) { return t == Type::kInt64 || t == Type::kBool || t == Type::kTimestamp; }

Result<const Column*> NumericColumn(const Table& t, std::string_view name, std::string_view role) {
  const Column* c = t.Find(name);
  if (c == nullptr)
    return InvalidArgument(std::string(role) + " column '" + std::string(name) + "' is not in the table");
  if (!frame::IsNumeric(c->field.type)) {
    return InvalidArgument(std::string(role) + " column '" + std::string(name) + "' is " +
                           std::string(frame::TypeName(c->field.type)) + ", not numeric");
  }
  return c;
}

Result<std::vector<size_t>> Rows(const Table& t, const std::vector<size_t>* subset) {
  const size_t n = t.num_rows();
  std::vector<size_t> rows;
  if (subset == nullptr) {
    rows.resize(n);
    for (size_t i = 0; i < n; ++i) rows[i] = i;
    return rows;
  }
  for (size_t r : *subset) {
    if (r >= n) {
      return InvalidArgument("row index " + std::to_string(r) + " is out of range: the table has " +
                             std::to_string(n) + " rows");
    }
  }
  return *subset;
}

double Value(const Column& c, size_t row) {
  if (c.IsNull(row)) return std::numeric_limits<double>::quiet_NaN();
  return UsesInts(c.field.type) ? static_cast<double>(c.ints[row]) : c.doubles[row];
}

Status CheckShape(const Matrix& m, std::string_view what) {
  if (m.values.size() != m.rows * m.cols) {
    return InvalidArgument(std::string(what) + " has " + std::to_string(m.values.size()) +
                           " values, not rows x cols = " + std::to_string(m.rows) + " x " +
                           std::to_string(m.cols));
  }
  return Ok();
}

Result<DMatrixPtr> MakeDMatrix(const Matrix& x, const std::vector<float>& y, std::string_view what) {
  DMatrixHandle h = nullptr;
  if (XGDMatrixCreateFromMat(x.values.data(), x.rows, x.cols, std::numeric_limits<float>::quiet_NaN(), &h) !=
      0) {
    return XgbError(Code::kInternal, std::string("creating the ") + std::string(what) + " matrix");
  }
  DMatrixPtr m(h);
  if (XGDMatrixSetFloatInfo(h, "label", y.data(), y.size()) != 0) {
    return XgbError(Code::kInternal, std::string("setting the ") + std::string(what) + " labels");
  }
  return m;
}

struct EvalLine {
  double train = std::numeric_limits<double>::quiet_NaN();
  double valid = std::numeric_limits<double>::quiet_NaN();
  std::string metric;  // of the validation set
};

// "[3]\ttrain-logloss:0.45\tvalid-logloss:0.50": the last metric of each set.
EvalLine ParseEval(std::string_view line) {
  EvalLine out;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t end = line.find('\t', pos);
    if (end == std::string_view::npos) end = line.size();
    const std::string_view token = line.substr(pos, end - pos);
    pos = end + 1;
    const size_t dash = token.find('-');
    const size_t colon = token.rfind(':');
    if (dash == std::string_view::npos || colon == std::string_view::npos || colon < dash) continue;
    const std::string_view set = token.substr(0, dash);
    const std::string_view metric = token.substr(dash + 1, colon - dash - 1);
    double value = std::numeric_limits<double>::quiet_NaN();
    const std::string_view number = token.substr(colon + 1);
    std::from_chars(number.data(), number.data() + number.size(), value);
    if (set == "train") {
      out.train = value;
    } else if (set == "valid") {
      out.valid = value;
      out.metric = std::string(metric);
    }
  }
  return out;
}

// Metrics where larger is better (as XGBoost's Python package decides).
bool Maximize(std::string_view metric) {
  const std::string_view base = metric.substr(0, metric.find('@'));
  return base == "auc" || base == "aucpr" || base == "pre" || base == "map" || base == "ndcg" ||
         base == "interval-regression-accuracy";
}

std::string FormatDouble(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

}  // namespace

Result<Matrix> ToMatrix(const Table& table, const std::vector<std::string>& feature_names,
                        const std::vector<size_t>* row_subset) {
  TAKT_RETURN_IF_ERROR(table.Validate());
  std::vector<const Column*> cols;
  cols.reserve(feature_names.size());
  for (const std::string& name : feature_names) {
    TAKT_ASSIGN_OR_RETURN(const Column* c, NumericColumn(table, name, "feature"));
    cols.push_back(c);
  }
  TAKT_ASSIGN_OR_RETURN(std::vector<size_t> rows, Rows(table, row_subset));
  Matrix m;
  m.rows = rows.size();
  m.cols = cols.size();
  m.values.resize(m.rows * m.cols);
  for (size_t i = 0; i < m.rows; ++i) {
    float* out = &m.values[i * m.cols];
    for (size_t j = 0; j < m.cols; ++j) out[j] = static_cast<float>(Value(*cols[j], rows[i]));
  }
  return m;
}

Result<std::vector<float>> ToLabels(const Table& table, std::string_view label,
                                    const std::vector<size_t>* row_subset) {
  TAKT_RETURN_IF_ERROR(table.Validate());
  TAKT_ASSIGN_OR_RETURN(const Column* c, NumericColumn(table, label, "label"));
  TAKT_ASSIGN_OR_RETURN(std::vector<size_t> rows, Rows(table, row_subset));
  std::vector<float> y;
  y.reserve(rows.size());
  for (size_t r : rows) {
    const double v = Value(*c, r);
    if (std::isnan(v)) {
      return InvalidArgument("label column '" + std::string(label) + "' is null or NaN at row " +
                             std::to_string(r + 1));
    }
    y.push_back(static_cast<float>(v));
  }
  return y;
}

Result<TrainResult> Train(const Matrix& x, const std::vector<float>& y, const Matrix* x_valid,
                          const std::vector<float>* y_valid, const TrainOptions& options) {
  TAKT_RETURN_IF_ERROR(CheckShape(x, "the training matrix"));
  if (x.rows == 0 || x.cols == 0) return InvalidArgument("the training matrix is empty");
  if (y.size() != x.rows) {
    return InvalidArgument("the training matrix has " + std::to_string(x.rows) + " rows but there are " +
                           std::to_string(y.size()) + " labels");
  }
  if ((x_valid == nullptr) != (y_valid == nullptr)) {
    return InvalidArgument("a validation set needs both its matrix and its labels");
  }
  if (x_valid != nullptr) {
    TAKT_RETURN_IF_ERROR(CheckShape(*x_valid, "the validation matrix"));
    if (x_valid->rows == 0) return InvalidArgument("the validation matrix is empty");
    if (x_valid->cols != x.cols) {
      return InvalidArgument("the validation matrix has " + std::to_string(x_valid->cols) +
                             " columns, the training matrix " + std::to_string(x.cols));
    }
    if (y_valid->size() != x_valid->rows) {
      return InvalidArgument("the validation matrix has " + std::to_string(x_valid->rows) +
                             " rows but there are " + std::to_string(y_valid->size()) + " labels");
    }
  }
  if (options.num_rounds < 1) return InvalidArgument("num_rounds must be at least 1");
  if (options.early_stopping_rounds < 0) return InvalidArgument("early_stopping_rounds must not be negative");
  if (options.early_stopping_rounds > 0 && x_valid == nullptr) {
    return InvalidArgument("early stopping needs a validation set");
  }
  if (options.nthread < 0) return InvalidArgument("nthread must not be negative");
  for (float v : y) {
    if (!std::isfinite(v)) return InvalidArgument("a training label is not a finite number");
  }
  if (y_valid != nullptr) {
    for (float v : *y_valid) {
      if (!std::isfinite(v)) return InvalidArgument("a validation label is not a finite number");
    }
  }

  TAKT_ASSIGN_OR_RETURN(DMatrixPtr train, MakeDMatrix(x, y, "training"));
  DMatrixPtr valid;
  if (x_valid != nullptr) {
    TAKT_ASSIGN_OR_RETURN(valid, MakeDMatrix(*x_valid, *y_valid, "validation"));
  }
  DMatrixHandle cache[2] = {train.get(), valid.get()};
  BoosterHandle b = nullptr;
  if (XGBoosterCreate(cache, valid ? 2 : 1, &b) != 0)
    return XgbError(Code::kInternal, "creating the booster");
  BoosterPtr booster(b);
  if (options.nthread > 0) {
    if (XGBoosterSetParam(b, "nthread", std::to_string(options.nthread).c_str()) != 0) {
      return XgbError(Code::kInvalidArgument, "setting nthread");
    }
  }
  for (const auto& [key, value] : options.params) {
    if (XGBoosterSetParam(b, key.c_str(), value.c_str()) != 0) {
      return XgbError(Code::kInvalidArgument, "setting parameter " + key + "=" + value);
    }
  }

  TrainResult result;
  double best_score = std::numeric_limits<double>::quiet_NaN();
  int rounds = 0;
  const char* names[2] = {"train", "valid"};
  for (int iter = 0; iter < options.num_rounds; ++iter) {
    if (XGBoosterUpdateOneIter(b, iter, train.get()) != 0) {
      // The first round is where XGBoost checks the parameters.
      return XgbError(iter == 0 ? Code::kInvalidArgument : Code::kInternal,
                      "training round " + std::to_string(iter));
    }
    rounds = iter + 1;
    result.best_iteration = iter;
    if (!valid) {
      if (options.on_round && !options.on_round(iter, NAN, NAN)) {
        result.stopped = true;
        break;
      }
      continue;
    }
    const char* eval = nullptr;
    if (XGBoosterEvalOneIter(b, iter, cache, names, 2, &eval) != 0) {
      return XgbError(iter == 0 ? Code::kInvalidArgument : Code::kInternal,
                      "evaluating round " + std::to_string(iter));
    }
    const EvalLine line = ParseEval(eval);
    result.curve.emplace_back(line.train, line.valid);
    result.metric = line.metric;
    if (options.on_round && !options.on_round(iter, line.train, line.valid)) {
      result.stopped = true;
      break;
    }
    if (options.early_stopping_rounds == 0) continue;
    const bool maximize = Maximize(line.metric);
    const auto& history = result.curve;
    int best = 0;
    for (int i = 1; i < static_cast<int>(history.size()); ++i) {
      const double v = history[static_cast<size_t>(i)].second;
      const double bv = history[static_cast<size_t>(best)].second;
      if (maximize ? v > bv : v < bv) best = i;
    }
    result.best_iteration = best;
    best_score = history[static_cast<size_t>(best)].second;
    if (iter - best >= options.early_stopping_rounds) break;
  }

  BoosterPtr sliced;
  BoosterHandle out = b;
  if (options.early_stopping_rounds > 0) {
    if (result.best_iteration + 1 < rounds) {
      BoosterHandle s = nullptr;
      if (XGBoosterSlice(b, 0, result.best_iteration + 1, 1, &s) != 0) {
        return XgbError(Code::kInternal, "keeping the rounds up to the best iteration");
      }
      sliced.reset(s);
      out = s;
    }
    if (XGBoosterSetAttr(out, "best_iteration", std::to_string(result.best_iteration).c_str()) != 0 ||
        XGBoosterSetAttr(out, "best_score", FormatDouble(best_score).c_str()) != 0) {
      return XgbError(Code::kInternal, "recording the best iteration");
    }
  }
  bst_ulong len = 0;
  const char* bytes = nullptr;
  if (XGBoosterSaveModelToBuffer(out, R"({"format":"json"})", &len, &bytes) != 0) {
    return XgbError(Code::kInternal, "saving the model");
  }
  result.model_json.assign(bytes, len);
  return result;
}

Result<std::unique_ptr<XgbModel>> XgbModel::Load(std::string_view model_bytes) {
  if (model_bytes.empty()) return InvalidArgument("not an XGBoost model: no bytes");
  // XGBoost only ever parses JSON text that xgboost_model_check.h has checked.
  std::string json;
  auto converted = internal::ModelBytesToJson(model_bytes);
  if (converted) {
    json = std::move(*converted);
  } else if (converted.error().code() == Code::kNotFound) {
    // Perhaps the legacy binary format, which only XGBoost reads: check its
    // lengths, load it (loading does not follow the trees), export it as
    // JSON, and check that.
    if (auto legacy = internal::CheckLegacyBinary(model_bytes); !legacy) {
      return InvalidArgument("not an XGBoost model: " + legacy.error().message());
    }
    BoosterHandle legacy = nullptr;
    if (XGBoosterCreate(nullptr, 0, &legacy) != 0) return XgbError(Code::kInternal, "creating a booster");
    BoosterPtr legacy_booster(legacy);
    if (XGBoosterLoadModelFromBuffer(legacy, model_bytes.data(), model_bytes.size()) != 0) {
      return XgbError(Code::kInvalidArgument, "not an XGBoost model");
    }
    bst_ulong len = 0;
    const char* bytes = nullptr;
    if (XGBoosterSaveModelToBuffer(legacy, R"({"format":"json"})", &len, &bytes) != 0) {
      return XgbError(Code::kInvalidArgument, "not an XGBoost model");
    }
    json.assign(bytes, len);
  } else {
    return InvalidArgument("not an XGBoost model: " + converted.error().message());
  }
  auto checked = internal::CheckModelJson(json);
  if (!checked) return InvalidArgument("not a valid XGBoost model: " + checked.error().message());

  BoosterHandle b = nullptr;
  if (XGBoosterCreate(nullptr, 0, &b) != 0) return XgbError(Code::kInternal, "creating a booster");
  BoosterPtr booster(b);
  if (XGBoosterLoadModelFromBuffer(b, checked->data(), checked->size()) != 0) {
    return XgbError(Code::kInvalidArgument, "not an XGBoost model");
  }
  bst_ulong features = 0;
  if (XGBoosterGetNumFeature(b, &features) != 0)
    return XgbError(Code::kInvalidArgument, "not an XGBoost model");
  if (features == 0) return InvalidArgument("not an XGBoost model: it has no features");
  std::unique_ptr<XgbModel> model(new XgbModel(booster.release(), features));
  // One prediction now: XGBoost configures a loaded booster lazily on first
  // use; doing it here keeps Predict free of first-call work, and checks the
  // model is usable and has one output per row.
  Matrix probe;
  probe.rows = 1;
  probe.cols = features;
  probe.values.assign(features, std::numeric_limits<float>::quiet_NaN());
  auto out = model->Predict(probe);
  if (!out) return InvalidArgument("not a usable XGBoost model: " + out.error().message());
  return model;
}

XgbModel::~XgbModel() { IgnoreError(XGBoosterFree(booster_)); }

Result<std::vector<float>> XgbModel::Predict(const Matrix& x) const {
  if (x.cols != num_features_) {
    return InvalidArgument("the model expects " + std::to_string(num_features_) + " features, got " +
                           std::to_string(x.cols));
  }
  TAKT_RETURN_IF_ERROR(CheckShape(x, "the feature matrix"));
  if (x.rows == 0) return std::vector<float>{};
  char array[256];
  std::snprintf(array, sizeof array, R"({"data":[%ju,true],"shape":[%zu,%zu],"typestr":"<f4","version":3})",
                static_cast<uintmax_t>(reinterpret_cast<uintptr_t>(x.values.data())), x.rows, x.cols);
  static constexpr char kConfig[] =
      R"({"type":0,"training":false,"iteration_begin":0,"iteration_end":0,"strict_shape":false,"missing":NaN,"cache_id":0})";
  const bst_ulong* shape = nullptr;
  bst_ulong dim = 0;
  const float* result = nullptr;
  if (XGBoosterPredictFromDense(booster_, array, kConfig, nullptr, &shape, &dim, &result) != 0) {
    return XgbError(Code::kInternal, "predicting");
  }
  size_t total = 1;
  for (bst_ulong i = 0; i < dim; ++i) total *= shape[i];
  if (total != x.rows) {
    return InvalidArgument("the model gives " + std::to_string(total / x.rows) +
                           " outputs per row; only single-output models are supported");
  }
  return std::vector<float>(result, result + total);
}

}  // namespace takt::ml
