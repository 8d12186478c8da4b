// File: ml/tree_engine.h
//
// takt's own engine for XGBoost tree ensembles: online scoring without a call
// into XGBoost per request. Load() reads a model as XGBoost 1.7 saves it (JSON
// or UBJSON; gbtree or dart boosters; numeric and categorical splits), checks
// it completely (models are untrusted input: no node reached twice from its
// root, so no cycles; indices and category sets in range; sizes and depth
// bounded; unreachable nodes, as XGBoost's pruner leaves them, dropped) and
// compiles it into a flat node array, breadth first, children adjacent. Predict
// walks blocks of rows through one tree at a time in lock step, and a single
// row through several trees in lock step, so independent node loads overlap.
//
// Results follow XGBoost's own order of operations (a float margin starting
// at the base margin, plus each tree's leaf in tree order), so predictions
// match XGBoost's to the last bit or within a float rounding. Contributions is
// the exact path-dependent TreeSHAP of Lundberg et al. on node covers, as
// XGBoost's pred_contribs computes it.
//
// Supported objectives: binary:logistic, binary:logitraw, reg:squarederror,
// reg:logistic, reg:pseudohubererror, reg:absoluteerror, count:poisson,
// multi:softprob, multi:softmax. Not supported (InvalidArgument at Load):
// gblinear, multi-target trees and leaf vectors, the legacy binary format.
//
// Thread safety: a loaded TreeEnsemble is immutable; all its methods are const
// and may be called from many threads at once. Predict and PredictMargin of
// fewer than 4 rows allocate nothing (multi:softmax: up to 256 classes); larger
// batches allocate only for rows of more than 512 features. Contributions
// allocates its path buffers per call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace takt::ml {

class TreeEnsemble {
 public:
  // JSON or UBJSON as XGBoost 1.7 writes it. InvalidArgument naming the problem
  // for anything else (empty, truncated, corrupt, unsupported, legacy binary).
  static Result<std::unique_ptr<TreeEnsemble>> Load(std::string_view model_bytes);

  size_t num_features() const { return num_features_; }
  // Values per row from Predict: num_class for multi:softprob, else 1
  // (multi:softmax predicts the class index).
  size_t num_outputs() const { return num_outputs_; }
  // Margins per row from PredictMargin and Contributions: num_class for
  // multi:softprob and multi:softmax, else 1.
  size_t num_margins() const { return num_groups_; }
  size_t num_trees() const { return roots_.size(); }
  const std::string& objective() const { return objective_; }
  // learner.feature_names and feature_types ("q", "c", "int", ...); may be empty.
  const std::vector<std::string>& feature_names() const { return feature_names_; }
  const std::vector<std::string>& feature_types() const { return feature_types_; }

  // rows: n x num_features() row-major floats, NaN = missing.
  // out: n x num_outputs(), transformed like XGBoost's predict (probabilities
  // for binary:logistic, softmax for multi:softprob, class for multi:softmax).
  void Predict(const float* rows, size_t n, float* out) const;
  // out: n x num_margins(), the untransformed sums (XGBoost's output_margin).
  void PredictMargin(const float* rows, size_t n, float* out) const;
  // TreeSHAP feature contributions, like XGBoost's pred_contribs. out:
  // n x num_margins() x (num_features() + 1); the last entry of each output is
  // the bias (expected value plus base margin). Each row's contributions to an
  // output sum to its margin.
  void Contributions(const float* rows, size_t n, float* out) const;

  // The compiled node. A split goes left when x < threshold, or (categorical)
  // when x is not in its set; a leaf has threshold -inf, feature 0 and `left`
  // pointing at itself minus one, so a step from a leaf stays on it and every
  // tree can be walked a fixed number of steps without branches.
  struct Node {
    float threshold;  // categorical split: the offset of its set in cat_bits_ (bits)
    uint32_t key;     // the feature
    int32_t left;     // index of the left child in nodes_; the right child is left + 1
    float value;      // leaf: its value (times the dart weight); split: kDefaultLeft | kCategorical (bits)
  };
  static constexpr uint32_t kDefaultLeft = 1;
  static constexpr uint32_t kCategorical = 2;

  TreeEnsemble() = default;

 private:
  friend class TreeEnsembleBuilder;

  size_t num_features_ = 0;
  size_t num_outputs_ = 1;
  size_t num_groups_ = 1;
  std::string objective_;
  std::vector<std::string> feature_names_;
  std::vector<std::string> feature_types_;
  float base_margin_ = 0;
  uint8_t transform_ = 0;  // how Predict turns margins into outputs (see tree_engine.cc)
  bool has_categorical_ = false;

  std::vector<Node> nodes_;             // all trees, breadth first
  std::vector<int32_t> roots_;          // per tree: its root in nodes_
  std::vector<uint16_t> depths_;        // per tree: steps from the root to its deepest leaf
  std::vector<uint16_t> group_depths_;  // per 16 trees (walked together for one row): the largest depth
  std::vector<uint32_t> groups_;        // per tree: its output (tree_info)
  std::vector<uint8_t> categorical_;    // per tree: has categorical splits
  std::vector<uint32_t> cat_bits_;      // category sets: number of words, then 32 categories a word

  // For TreeSHAP, parallel to nodes_: node cover (sum_hessian) and the leaf
  // value before the dart weight; per tree: the dart weight, the expected value
  // and the features it splits on.
  std::vector<float> cover_;
  std::vector<float> raw_value_;
  std::vector<float> weights_;
  std::vector<float> tree_means_;
  std::vector<uint32_t> tree_feature_begin_;  // per tree + 1: into tree_features_
  std::vector<uint32_t> tree_features_;
  int max_depth_ = 0;
};

}  // namespace takt::ml
