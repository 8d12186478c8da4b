#include "ml/tree_engine.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "core/json.h"
#include "ml/model_json.h"
#include "ml/xgboost_model_check.h"

namespace takt::ml {
namespace {

using Node = TreeEnsemble::Node;

constexpr int kMaxJsonDepth = 64;  // XGBoost models nest about 6 deep
constexpr int64_t kMaxFeatures = 1 << 24;
constexpr int64_t kMaxClasses = 1 << 16;
constexpr int64_t kMaxTrees = 1 << 22;
constexpr int64_t kMaxNodesPerTree = 1 << 24;
constexpr size_t kMaxTotalNodes = size_t{1} << 26;  // 1 GiB of nodes; indices fit int32
constexpr int kMaxTreeDepth = 128;                  // TreeSHAP recurses once per level
constexpr int64_t kMaxCategory = 1 << 24;           // XGBoost's own bound: exact as a float
constexpr size_t kMaxCategoryWords = size_t{1} << 24;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInfinity = std::numeric_limits<float>::infinity();

// Rows walked through a tree in lock step (kNarrowRows when no more than
// that many are left), and rows and trees per cache block.
constexpr size_t kBlockRows = 16;
constexpr size_t kNarrowRows = 8;
constexpr size_t kSuperRows = 128;
constexpr size_t kChunkTrees = 16;
constexpr size_t kRowTrees = 16;  // trees walked in lock step for one row

enum class Transform { kIdentity, kSigmoid, kExp, kSoftprob, kSoftmax };
enum class MarginOf { kIdentity, kLogit, kLog };

struct ObjectiveInfo {
  std::string_view name;
  Transform transform;
  MarginOf base_margin;  // how XGBoost turns base_score into a margin
  bool multi;
};

constexpr ObjectiveInfo kObjectives[] = {
    {"binary:logistic", Transform::kSigmoid, MarginOf::kLogit, false},
    {"binary:logitraw", Transform::kIdentity, MarginOf::kIdentity, false},  // base_score as is
    {"reg:logistic", Transform::kSigmoid, MarginOf::kLogit, false},
    {"reg:squarederror", Transform::kIdentity, MarginOf::kIdentity, false},
    {"reg:pseudohubererror", Transform::kIdentity, MarginOf::kIdentity, false},
    {"reg:absoluteerror", Transform::kIdentity, MarginOf::kIdentity, false},
    {"count:poisson", Transform::kExp, MarginOf::kLog, false},
    {"multi:softprob", Transform::kSoftprob, MarginOf::kIdentity, true},
    {"multi:softmax", Transform::kSoftmax, MarginOf::kIdentity, true},
};

const ObjectiveInfo* FindObjective(std::string_view name) {
  for (const ObjectiveInfo& o : kObjectives) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

// XGBoost writes NaN and Infinity as bare words, which JSON (and nlohmann)
// does not allow: turns them into null and 1e999 outside strings, and refuses
// nesting deeper than kMaxJsonDepth before nlohmann sees the text.
Result<std::string> NormalizeJson(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) {
        return InvalidArgument("JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
      }
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == 'N' && text.substr(i, 3) == "NaN") {
      out += "null";
      i += 2;
      continue;
    } else if (c == 'I' && text.substr(i, 8) == "Infinity") {
      out += "1e999";
      i += 7;
      continue;
    }
    out += c;
  }
  return out;
}

using internal::Array;
using internal::IntParam;
using internal::Member;

Result<float> FloatParam(const Json& obj, std::string_view key, std::string_view where) {
  const Json* v = Member(obj, key);
  if (v != nullptr && v->is_number()) return static_cast<float>(v->get<double>());
  if (v != nullptr && v->is_string()) {
    const std::string& s = v->get_ref<const std::string&>();
    float out = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec == std::errc() && ptr == s.data() + s.size()) return out;
  }
  return InvalidArgument(std::string(where) + "." + std::string(key) + " is missing or not a number");
}

// The integers of obj[key]; with `size`, it must have that many.
Result<std::vector<int64_t>> Ints(const Json& obj, std::string_view key, std::string_view where,
                                  std::optional<size_t> size) {
  TAKT_ASSIGN_OR_RETURN(const Json* a, Array(obj, key, where));
  const std::string what = std::string(where) + "." + std::string(key);
  if (size && a->size() != *size) {
    return InvalidArgument(what + " has " + std::to_string(a->size()) + " entries for " +
                           std::to_string(*size) + " nodes");
  }
  std::vector<int64_t> out;
  out.reserve(a->size());
  for (const Json& v : *a) {
    if (v.is_number_integer()) {
      out.push_back(v.get<int64_t>());
    } else if (v.is_boolean()) {
      out.push_back(v.get<bool>() ? 1 : 0);
    } else {
      return InvalidArgument(what + " holds a value that is not an integer");
    }
  }
  return out;
}

// The floats of obj[key], exactly `size` of them; null (NaN in XGBoost's text) is NaN.
Result<std::vector<float>> Floats(const Json& obj, std::string_view key, std::string_view where,
                                  size_t size) {
  TAKT_ASSIGN_OR_RETURN(const Json* a, Array(obj, key, where));
  const std::string what = std::string(where) + "." + std::string(key);
  if (a->size() != size) {
    return InvalidArgument(what + " has " + std::to_string(a->size()) + " entries for " +
                           std::to_string(size) + " nodes");
  }
  std::vector<float> out;
  out.reserve(size);
  for (const Json& v : *a) {
    if (v.is_number()) {
      out.push_back(static_cast<float>(v.get<double>()));
    } else if (v.is_null()) {
      out.push_back(kNaN);
    } else {
      return InvalidArgument(what + " holds a value that is not a number");
    }
  }
  return out;
}

Result<std::vector<std::string>> Strings(const Json& learner, std::string_view key, int64_t num_feature) {
  std::vector<std::string> out;
  const Json* v = Member(learner, key);
  if (v == nullptr) return out;
  const std::string what = "learner." + std::string(key);
  if (!v->is_array()) return InvalidArgument(what + " is not an array");
  if (!v->empty() && static_cast<int64_t>(v->size()) != num_feature) {
    return InvalidArgument(what + " has " + std::to_string(v->size()) + " entries for " +
                           std::to_string(num_feature) + " features");
  }
  for (const Json& s : *v) {
    if (!s.is_string()) return InvalidArgument(what + " holds a value that is not a string");
    out.push_back(s.get<std::string>());
  }
  return out;
}

bool IsNaN(float x) { return x != x; }

// Whether a categorical node sends x (not missing) right: XGBoost 1.7 sends
// the categories in the node's set right and everything else, including
// negative and too large values, left. A value is truncated to its category.
[[gnu::always_inline]] inline bool CategoryRight(const Node& n, const uint32_t* bits, float x) {
  if (!(x >= 0.0f && x < static_cast<float>(kMaxCategory))) return false;
  const auto c = static_cast<uint32_t>(x);
  const uint32_t word = c >> 5;
  const uint32_t* set = bits + std::bit_cast<uint32_t>(n.threshold);  // size, then the words
  return word < set[0] && ((set[1 + word] >> (c & 31)) & 1u);
}

// One step down a tree: the child that the row goes to (a leaf stays where it
// is). Feature j of the row is at row[j * stride]. Without kMissing the row
// must have no NaN; without kCategorical the tree no categorical split.
template <bool kMissing, bool kCategorical>
[[gnu::always_inline]] inline int32_t Step(const Node* nodes, const uint32_t* bits, int32_t i,
                                           const float* row, size_t stride) {
  const Node& n = nodes[i];
  const float x = row[n.key * stride];
  // The flags of a split; a leaf's value is no flags (a leaf's left is below it).
  const uint32_t flags = std::bit_cast<uint32_t>(n.value);
  if constexpr (kCategorical) {
    if ((flags & TreeEnsemble::kCategorical) && n.left > i) [[unlikely]] {
      if (kMissing && IsNaN(x)) return n.left + ((flags & TreeEnsemble::kDefaultLeft) ? 0 : 1);
      return n.left + static_cast<int32_t>(CategoryRight(n, bits, x));
    }
  }
  if constexpr (kMissing) {
    // NaN fails x < threshold, so a missing value goes right unless default-left.
    auto right = static_cast<uint32_t>(!(x < n.threshold));
    const uint32_t missing_left = flags & TreeEnsemble::kDefaultLeft & static_cast<uint32_t>(IsNaN(x)) &
                                  static_cast<uint32_t>(n.left > i);
    right &= missing_left ^ 1u;
    return n.left + static_cast<int32_t>(right);
  } else {
    // The same for a number (thresholds are never NaN); compiles to compare and sbb.
    return n.left + static_cast<int32_t>(n.threshold <= x);
  }
}

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// XGBoost's softmax: float exponentials of the margins less their maximum,
// summed in double.
void Softmax(float* v, size_t n) {
  float max = v[0];
  for (size_t i = 1; i < n; ++i) max = std::fmax(v[i], max);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    v[i] = std::exp(v[i] - max);
    sum += v[i];
  }
  for (size_t i = 0; i < n; ++i) v[i] /= static_cast<float>(sum);
}

// ---- TreeSHAP ---------------------------------------------------------------
//
// The path-dependent algorithm of Lundberg, Erion and Lee ("Consistent
// individualized feature attribution for tree ensembles", Algorithm 2), in
// float like XGBoost. A path element is a feature on the way down from the
// root, the fraction of the cover that flows through it when the feature is
// unknown (zero) and whether the row itself flows through it (one), and the
// weight of the subsets of that size.

struct PathElement {
  int32_t feature;
  float zero;
  float one;
  float weight;
};

// Appends (feature, zero, one) at index `last` (the path has `last` elements).
void ExtendPath(PathElement* path, int last, float zero, float one, int32_t feature) {
  path[last] = {feature, zero, one, last == 0 ? 1.0f : 0.0f};
  const auto size = static_cast<float>(last + 1);
  for (int i = last - 1; i >= 0; --i) {
    path[i + 1].weight += one * path[i].weight * static_cast<float>(i + 1) / size;
    path[i].weight = zero * path[i].weight * static_cast<float>(last - i) / size;
  }
}

// Removes element `k` from a path whose last index is `last`.
void UnwindPath(PathElement* path, int last, int k) {
  const float one = path[k].one;
  const float zero = path[k].zero;
  const auto size = static_cast<float>(last + 1);
  float next = path[last].weight;
  for (int i = last - 1; i >= 0; --i) {
    if (one != 0) {
      const float w = path[i].weight;
      path[i].weight = next * size / (static_cast<float>(i + 1) * one);
      next = w - path[i].weight * zero * static_cast<float>(last - i) / size;
    } else {
      path[i].weight = path[i].weight * size / (zero * static_cast<float>(last - i));
    }
  }
  for (int i = k; i < last; ++i) {
    path[i].feature = path[i + 1].feature;
    path[i].zero = path[i + 1].zero;
    path[i].one = path[i + 1].one;
  }
}

// The total weight of the path with element `k` removed, without removing it.
float UnwoundPathSum(const PathElement* path, int last, int k) {
  const float one = path[k].one;
  const float zero = path[k].zero;
  const auto size = static_cast<float>(last + 1);
  float total = 0;
  if (one != 0) {
    float next = path[last].weight;
    for (int i = last - 1; i >= 0; --i) {
      const float w = next * size / (static_cast<float>(i + 1) * one);
      total += w;
      next = path[i].weight - w * zero * (static_cast<float>(last - i) / size);
    }
  } else {
    for (int i = last - 1; i >= 0; --i) {
      total += (path[i].weight / zero) / (static_cast<float>(last - i) / size);
    }
  }
  return total;
}

struct ShapTree {
  const Node* nodes;
  const float* cover;
  const float* value;  // leaf values before the dart weight
  const uint32_t* bits;
  const float* row;
  float* phi;
};

// `parent` holds `depth` elements; this node's path is written right after them.
void ShapRecurse(const ShapTree& t, int32_t i, PathElement* parent, int depth, float zero, float one,
                 int32_t feature) {
  PathElement* path = parent + depth;
  std::copy(parent, parent + depth, path);
  ExtendPath(path, depth, zero, one, feature);
  int last = depth;
  const Node& n = t.nodes[i];
  if (n.left < i) {  // a leaf
    const float v = t.value[i];
    for (int k = 1; k <= last; ++k) {
      const float w = UnwoundPathSum(path, last, k);
      t.phi[path[k].feature] += w * (path[k].one - path[k].zero) * v;
    }
    return;
  }
  const auto split = static_cast<int32_t>(n.key);
  const uint32_t flags = std::bit_cast<uint32_t>(n.value);
  const float x = t.row[split];
  int32_t hot;
  if (IsNaN(x)) {
    hot = (flags & TreeEnsemble::kDefaultLeft) ? n.left : n.left + 1;
  } else if (flags & TreeEnsemble::kCategorical) {
    hot = n.left + (CategoryRight(n, t.bits, x) ? 1 : 0);
  } else {
    hot = x < n.threshold ? n.left : n.left + 1;
  }
  const int32_t cold = hot == n.left ? n.left + 1 : n.left;
  const float cover = t.cover[i];
  const float hot_zero = t.cover[hot] / cover;
  const float cold_zero = t.cover[cold] / cover;
  float incoming_zero = 1;
  float incoming_one = 1;
  for (int k = 1; k <= last; ++k) {
    if (path[k].feature == split) {  // split on before: undo it and redo it here
      incoming_zero = path[k].zero;
      incoming_one = path[k].one;
      UnwindPath(path, last, k);
      --last;
      break;
    }
  }
  ShapRecurse(t, hot, path, last + 1, hot_zero * incoming_zero, incoming_one, split);
  ShapRecurse(t, cold, path, last + 1, cold_zero * incoming_zero, 0, split);
}

}  // namespace

// Builds a TreeEnsemble from a parsed model; a friend, so the checks and the
// layout live together here rather than in the header.
class TreeEnsembleBuilder {
 public:
  explicit TreeEnsembleBuilder(TreeEnsemble& e) : e_(e) {}

  Status Build(const Json& doc) {
    const Json* learner = Member(doc, "learner");
    if (learner == nullptr || !learner->is_object()) return InvalidArgument("the model has no learner");
    const Json* param = Member(*learner, "learner_model_param");
    if (param == nullptr) return InvalidArgument("the model has no learner_model_param");
    TAKT_ASSIGN_OR_RETURN(int64_t num_feature, IntParam(*param, "num_feature", "learner_model_param"));
    if (num_feature < 1 || num_feature > kMaxFeatures) {
      return InvalidArgument("the model has " + std::to_string(num_feature) + " features");
    }
    TAKT_ASSIGN_OR_RETURN(int64_t num_class, IntParam(*param, "num_class", "learner_model_param", 0));
    TAKT_ASSIGN_OR_RETURN(int64_t num_target, IntParam(*param, "num_target", "learner_model_param", 1));
    if (num_target != 1) return InvalidArgument("multi-target models are not supported");
    TAKT_ASSIGN_OR_RETURN(float base_score, FloatParam(*param, "base_score", "learner_model_param"));

    const Json* objective = Member(*learner, "objective");
    const Json* objective_name = objective ? Member(*objective, "name") : nullptr;
    if (objective_name == nullptr || !objective_name->is_string()) {
      return InvalidArgument("the model has no objective.name");
    }
    e_.objective_ = objective_name->get<std::string>();
    const ObjectiveInfo* info = FindObjective(e_.objective_);
    if (info == nullptr) return InvalidArgument("objective '" + e_.objective_ + "' is not supported");
    transform_ = info->transform;
    if (info->multi ? (num_class < 2 || num_class > kMaxClasses) : num_class > 1) {
      return InvalidArgument("objective " + e_.objective_ + " with num_class " + std::to_string(num_class));
    }
    e_.num_features_ = static_cast<size_t>(num_feature);
    e_.num_groups_ = info->multi ? static_cast<size_t>(num_class) : 1;
    e_.num_outputs_ = info->transform == Transform::kSoftprob ? e_.num_groups_ : 1;
    TAKT_RETURN_IF_ERROR(SetBaseMargin(*info, base_score));
    TAKT_ASSIGN_OR_RETURN(e_.feature_names_, Strings(*learner, "feature_names", num_feature));
    TAKT_ASSIGN_OR_RETURN(e_.feature_types_, Strings(*learner, "feature_types", num_feature));

    const Json* booster = Member(*learner, "gradient_booster");
    const Json* name = booster ? Member(*booster, "name") : nullptr;
    if (name == nullptr || !name->is_string())
      return InvalidArgument("the model has no gradient_booster.name");
    const std::string& kind = name->get_ref<const std::string&>();
    const Json* model = nullptr;
    if (kind == "gbtree") {
      model = Member(*booster, "model");
    } else if (kind == "dart") {
      const Json* gbtree = Member(*booster, "gbtree");
      model = gbtree ? Member(*gbtree, "model") : nullptr;
    } else {
      return InvalidArgument("booster '" + kind + "' is not supported");
    }
    if (model == nullptr) return InvalidArgument(kind + " has no model");
    TAKT_ASSIGN_OR_RETURN(const Json* trees, Array(*model, "trees", "model"));
    if (static_cast<int64_t>(trees->size()) > kMaxTrees) {
      return InvalidArgument("the model has " + std::to_string(trees->size()) + " trees");
    }
    const size_t num_trees = trees->size();
    TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> tree_info, Ints(*model, "tree_info", "model", std::nullopt));
    if (tree_info.size() != num_trees) {
      return InvalidArgument("model.tree_info has " + std::to_string(tree_info.size()) + " entries for " +
                             std::to_string(num_trees) + " trees");
    }
    const Json* model_param = Member(*model, "gbtree_model_param");
    if (model_param == nullptr) return InvalidArgument("the model has no gbtree_model_param");
    TAKT_ASSIGN_OR_RETURN(int64_t declared, IntParam(*model_param, "num_trees", "gbtree_model_param"));
    if (declared != static_cast<int64_t>(num_trees)) {
      return InvalidArgument("gbtree_model_param.num_trees is " + std::to_string(declared) + " for " +
                             std::to_string(num_trees) + " trees");
    }
    std::vector<float> weights(num_trees, 1.0f);
    if (kind == "dart") {
      TAKT_ASSIGN_OR_RETURN(weights, Floats(*booster, "weight_drop", "dart", num_trees));
      for (float w : weights) {
        if (!std::isfinite(w)) return InvalidArgument("dart.weight_drop holds a value that is not finite");
      }
    }
    for (size_t t = 0; t < num_trees; ++t) {
      if (tree_info[t] < 0 || tree_info[t] >= static_cast<int64_t>(e_.num_groups_)) {
        return InvalidArgument("model.tree_info assigns tree " + std::to_string(t) + " to output " +
                               std::to_string(tree_info[t]) + " of " + std::to_string(e_.num_groups_));
      }
      e_.groups_.push_back(static_cast<uint32_t>(tree_info[t]));
      e_.weights_.push_back(weights[t]);
      TAKT_RETURN_IF_ERROR(AddTree((*trees)[t], t, weights[t]));
    }
    for (size_t t = 0; t < num_trees; t += kRowTrees) {
      const size_t end = std::min(num_trees, t + kRowTrees);
      e_.group_depths_.push_back(*std::max_element(e_.depths_.begin() + t, e_.depths_.begin() + end));
    }
    return Ok();
  }

 private:
  Status SetBaseMargin(const ObjectiveInfo& info, float base_score) {
    if (!std::isfinite(base_score)) return InvalidArgument("base_score is not finite");
    switch (info.base_margin) {
      case MarginOf::kIdentity:
        e_.base_margin_ = base_score;
        break;
      case MarginOf::kLogit:
        if (!(base_score > 0.0f && base_score < 1.0f)) {
          return InvalidArgument("base_score " + std::to_string(base_score) + " is not in (0, 1)");
        }
        e_.base_margin_ = -std::log(1.0f / base_score - 1.0f);
        break;
      case MarginOf::kLog:
        if (!(base_score > 0.0f)) {
          return InvalidArgument("base_score " + std::to_string(base_score) + " is not positive");
        }
        e_.base_margin_ = std::log(base_score);
        break;
    }
    return Ok();
  }

  // Checks one tree and appends it, breadth first from its root.
  Status AddTree(const Json& tree, size_t index, float weight) {
    const std::string where = "tree " + std::to_string(index);
    if (!tree.is_object()) return InvalidArgument(where + " is not an object");
    const Json* param = Member(tree, "tree_param");
    if (param == nullptr) return InvalidArgument(where + " has no tree_param");
    TAKT_ASSIGN_OR_RETURN(int64_t num_nodes, IntParam(*param, "num_nodes", where + ".tree_param"));
    if (num_nodes < 1 || num_nodes > kMaxNodesPerTree) {
      return InvalidArgument(where + " has " + std::to_string(num_nodes) + " nodes");
    }
    TAKT_ASSIGN_OR_RETURN(int64_t leaf_vector,
                          IntParam(*param, "size_leaf_vector", where + ".tree_param", 0));
    if (leaf_vector != 0) return InvalidArgument(where + " has leaf vectors, which are not supported");
    const auto n = static_cast<size_t>(num_nodes);
    if (e_.nodes_.size() + n > kMaxTotalNodes) {
      return InvalidArgument("the model has more than " + std::to_string(kMaxTotalNodes) + " nodes");
    }
    TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> left, Ints(tree, "left_children", where, n));
    TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> right, Ints(tree, "right_children", where, n));
    TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> split, Ints(tree, "split_indices", where, n));
    TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> default_left, Ints(tree, "default_left", where, n));
    TAKT_ASSIGN_OR_RETURN(std::vector<float> condition, Floats(tree, "split_conditions", where, n));
    TAKT_ASSIGN_OR_RETURN(std::vector<float> hessian, Floats(tree, "sum_hessian", where, n));
    std::vector<int64_t> split_type(n, 0);
    if (Member(tree, "split_type") != nullptr) {
      TAKT_ASSIGN_OR_RETURN(split_type, Ints(tree, "split_type", where, n));
    }
    // Category sets: node k of categories_nodes holds categories[segment, segment + size).
    std::vector<int64_t> cat_nodes, cat_segments, cat_sizes, categories;
    if (Member(tree, "categories_nodes") != nullptr) {
      TAKT_ASSIGN_OR_RETURN(cat_nodes, Ints(tree, "categories_nodes", where, std::nullopt));
      TAKT_ASSIGN_OR_RETURN(cat_segments, Ints(tree, "categories_segments", where, std::nullopt));
      TAKT_ASSIGN_OR_RETURN(cat_sizes, Ints(tree, "categories_sizes", where, std::nullopt));
      TAKT_ASSIGN_OR_RETURN(categories, Ints(tree, "categories", where, std::nullopt));
      if (cat_segments.size() != cat_nodes.size() || cat_sizes.size() != cat_nodes.size()) {
        return InvalidArgument(where + " has " + std::to_string(cat_nodes.size()) + " categories_nodes, " +
                               std::to_string(cat_segments.size()) + " categories_segments and " +
                               std::to_string(cat_sizes.size()) + " categories_sizes");
      }
    }
    std::vector<int64_t> set_of(n, -1);  // node -> its entry in categories_nodes
    for (size_t k = 0; k < cat_nodes.size(); ++k) {
      const int64_t node = cat_nodes[k];
      if (node < 0 || node >= num_nodes || set_of[static_cast<size_t>(node)] != -1 ||
          split_type[static_cast<size_t>(node)] != 1) {
        return InvalidArgument(where + ".categories_nodes names node " + std::to_string(node) +
                               ", which is not a categorical split or is named twice");
      }
      const int64_t begin = cat_segments[k];
      const int64_t size = cat_sizes[k];
      if (begin < 0 || size < 0 || begin > static_cast<int64_t>(categories.size()) ||
          size > static_cast<int64_t>(categories.size()) - begin) {
        return InvalidArgument(where + " node " + std::to_string(node) + " has categories [" +
                               std::to_string(begin) + ", +" + std::to_string(size) + ") of " +
                               std::to_string(categories.size()));
      }
      set_of[static_cast<size_t>(node)] = static_cast<int64_t>(k);
    }

    // Walk from the root, breadth first: every child in range and reached
    // once, so a walk can neither leave the tree nor go round in circles.
    // Nodes never reached (deleted by XGBoost's pruner) are left out.
    const auto base = static_cast<int32_t>(e_.nodes_.size());
    std::vector<size_t> order = {0};  // old index of new node base + k
    std::vector<int> depth_of(n, 0);
    std::vector<uint8_t> seen(n, 0);
    seen[0] = 1;
    int depth = 0;
    bool categorical = false;
    for (size_t k = 0; k < order.size(); ++k) {
      const size_t i = order[k];
      const auto self = static_cast<int32_t>(base + static_cast<int32_t>(k));
      const int64_t l = left[i];
      const int64_t r = right[i];
      const std::string node = where + " node " + std::to_string(i);
      if (l == -1 && r == -1) {
        if (!std::isfinite(condition[i]))
          return InvalidArgument(node + " has a leaf value that is not finite");
        e_.nodes_.push_back({-kInfinity, 0, self - 1, condition[i] * weight});
        depth = std::max(depth, depth_of[i]);
      } else {
        if (l < 1 || l >= num_nodes || r < 1 || r >= num_nodes) {
          return InvalidArgument(node + " has children " + std::to_string(l) + " and " + std::to_string(r) +
                                 ", outside 1.." + std::to_string(num_nodes - 1));
        }
        const auto lu = static_cast<size_t>(l);
        const auto ru = static_cast<size_t>(r);
        if (l == r || seen[lu] || seen[ru]) {
          return InvalidArgument(node + " leads back to a node already in the tree (a cycle)");
        }
        if (split[i] < 0 || split[i] >= static_cast<int64_t>(e_.num_features_)) {
          return InvalidArgument(node + " splits on feature " + std::to_string(split[i]) + " of " +
                                 std::to_string(e_.num_features_));
        }
        if (default_left[i] != 0 && default_left[i] != 1) {
          return InvalidArgument(node + " has default_left " + std::to_string(default_left[i]));
        }
        if (depth_of[i] + 1 > kMaxTreeDepth) {
          return InvalidArgument(where + " is deeper than " + std::to_string(kMaxTreeDepth) + " levels");
        }
        seen[lu] = seen[ru] = 1;
        depth_of[lu] = depth_of[ru] = depth_of[i] + 1;
        const auto child = static_cast<int32_t>(base + static_cast<int32_t>(order.size()));
        order.push_back(lu);
        order.push_back(ru);
        const auto key = static_cast<uint32_t>(split[i]);
        const uint32_t flags = default_left[i] ? TreeEnsemble::kDefaultLeft : 0u;
        if (split_type[i] == 1) {
          if (set_of[i] < 0) return InvalidArgument(node + " is a categorical split without categories");
          TAKT_ASSIGN_OR_RETURN(Node cat, CategorySet(categories, cat_segments, cat_sizes,
                                                      static_cast<size_t>(set_of[i]), node));
          cat.key = key;
          cat.left = child;
          cat.value = std::bit_cast<float>(flags | TreeEnsemble::kCategorical);
          e_.nodes_.push_back(cat);
          categorical = true;
        } else if (split_type[i] == 0) {
          // XGBoost sends every number right of a NaN threshold, as of -infinity.
          const float threshold = IsNaN(condition[i]) ? -kInfinity : condition[i];
          e_.nodes_.push_back({threshold, key, child, std::bit_cast<float>(flags)});
        } else {
          return InvalidArgument(node + " has split_type " + std::to_string(split_type[i]));
        }
      }
      e_.cover_.push_back(hessian[i]);
      e_.raw_value_.push_back(condition[i]);
    }
    e_.roots_.push_back(base);
    e_.depths_.push_back(static_cast<uint16_t>(depth));
    e_.categorical_.push_back(categorical ? 1 : 0);
    e_.has_categorical_ = e_.has_categorical_ || categorical;
    e_.max_depth_ = std::max(e_.max_depth_, depth);

    // XGBoost's expected value of the tree: cover-weighted leaf means, in
    // float, bottom up (children follow their parents in breadth-first order).
    const size_t count = order.size();
    std::vector<float> mean(count);
    std::vector<uint32_t> features;
    for (size_t k = count; k-- > 0;) {
      const Node& node = e_.nodes_[static_cast<size_t>(base) + k];
      const auto self = static_cast<int32_t>(base + static_cast<int32_t>(k));
      if (node.left < self) {
        mean[k] = e_.raw_value_[static_cast<size_t>(self)];
      } else {
        const auto l = static_cast<size_t>(node.left);
        const size_t lk = l - static_cast<size_t>(base);
        float m = mean[lk] * e_.cover_[l];
        m += mean[lk + 1] * e_.cover_[l + 1];
        m /= e_.cover_[static_cast<size_t>(self)];
        mean[k] = m;
        features.push_back(node.key);
      }
    }
    e_.tree_means_.push_back(mean[0]);
    std::sort(features.begin(), features.end());
    features.erase(std::unique(features.begin(), features.end()), features.end());
    if (e_.tree_feature_begin_.empty()) e_.tree_feature_begin_.push_back(0);
    e_.tree_features_.insert(e_.tree_features_.end(), features.begin(), features.end());
    e_.tree_feature_begin_.push_back(static_cast<uint32_t>(e_.tree_features_.size()));
    return Ok();
  }

  // A categorical node (key, left and flags to be filled in) pointing at set k,
  // appended to cat_bits_ as its number of words and then the words.
  Result<Node> CategorySet(const std::vector<int64_t>& categories, const std::vector<int64_t>& segments,
                           const std::vector<int64_t>& sizes, size_t k, const std::string& node) {
    const auto begin = static_cast<size_t>(segments[k]);
    const auto end = begin + static_cast<size_t>(sizes[k]);
    int64_t max = -1;
    for (size_t j = begin; j < end; ++j) {
      if (categories[j] < 0 || categories[j] >= kMaxCategory) {
        return InvalidArgument(node + " has category " + std::to_string(categories[j]) + ", outside 0.." +
                               std::to_string(kMaxCategory - 1));
      }
      max = std::max(max, categories[j]);
    }
    const size_t words = max < 0 ? 0 : static_cast<size_t>(max / 32 + 1);
    const size_t offset = e_.cat_bits_.size();
    if (offset + 1 + words > kMaxCategoryWords) {
      return InvalidArgument("the model's category sets are larger than " +
                             std::to_string(kMaxCategoryWords * 4) + " bytes");
    }
    e_.cat_bits_.resize(offset + 1 + words, 0);
    e_.cat_bits_[offset] = static_cast<uint32_t>(words);
    for (size_t j = begin; j < end; ++j) {
      const auto c = static_cast<uint32_t>(categories[j]);
      e_.cat_bits_[offset + 1 + (c >> 5)] |= 1u << (c & 31);
    }
    return Node{std::bit_cast<float>(static_cast<uint32_t>(offset)), 0, 0, 0.0f};
  }

  TreeEnsemble& e_;

 public:
  Transform transform_ = Transform::kIdentity;
};

Result<std::unique_ptr<TreeEnsemble>> TreeEnsemble::Load(std::string_view model_bytes) {
  auto fail = [](const Error& e) { return std::unexpected(e.WithContext("loading a tree model")); };
  if (model_bytes.empty()) return fail(Error(Code::kInvalidArgument, "the model is empty"));
  Result<std::string> json = internal::ModelBytesToJson(model_bytes);
  if (!json) {
    if (json.error().code() != Code::kNotFound) return fail(json.error());
    return fail(Error(Code::kInvalidArgument,
                      "neither JSON nor UBJSON (XGBoost's legacy binary format is not supported: "
                      "save the model as JSON or UBJSON)"));
  }
  Result<std::string> text = NormalizeJson(*json);
  if (!text) return fail(text.error());
  Json doc = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail(Error(Code::kInvalidArgument, "malformed or truncated JSON"));
  auto e = std::make_unique<TreeEnsemble>();
  TreeEnsembleBuilder builder(*e);
  try {
    if (Status s = builder.Build(doc); !s) return fail(s.error());
  } catch (const std::exception& ex) {  // nlohmann on an unexpected type; bad_alloc
    return fail(Error(Code::kInvalidArgument, std::string("corrupt model: ") + ex.what()));
  }
  e->transform_ = static_cast<uint8_t>(builder.transform_);
  return e;
}

// ---- Prediction -------------------------------------------------------------

namespace {

// The arrays a walk needs, taken out of the ensemble once per call.
struct Forest {
  const Node* nodes;
  const uint32_t* bits;
  const int32_t* roots;
  const uint16_t* depths;
  const uint16_t* group_depths;
  const uint32_t* groups;
  const uint8_t* categorical;
  size_t num_trees;
  size_t num_groups;
  size_t num_features;
  float base_margin;
};

bool AnyMissing(const float* v, size_t n) {
  bool any = false;
  for (size_t i = 0; i < n; ++i) any |= IsNaN(v[i]);
  return any;
}

// One row, kRowTrees trees in lock step (the walks are independent, so their
// loads overlap), leaves added in tree order.
template <bool kMissing, bool kCategorical>
void MarginRow(const Forest& f, const float* row, float* out) {
  for (size_t g = 0; g < f.num_groups; ++g) out[g] = f.base_margin;
  float sum = f.base_margin;  // one output: kept in a register
  const bool single = f.num_groups == 1;
  size_t t = 0;
  for (; t + kRowTrees <= f.num_trees; t += kRowTrees) {
    int32_t idx[kRowTrees];
#pragma GCC unroll 16
    for (size_t k = 0; k < kRowTrees; ++k) idx[k] = f.roots[t + k];
    const int depth = f.group_depths[t / kRowTrees];
    for (int d = 0; d < depth; ++d) {
#pragma GCC unroll 16
      for (size_t k = 0; k < kRowTrees; ++k) {
        idx[k] = Step<kMissing, kCategorical>(f.nodes, f.bits, idx[k], row, 1);
      }
    }
    if (single) {
#pragma GCC unroll 16
      for (size_t k = 0; k < kRowTrees; ++k) sum += f.nodes[idx[k]].value;
    } else {
      for (size_t k = 0; k < kRowTrees; ++k) out[f.groups[t + k]] += f.nodes[idx[k]].value;
    }
  }
  for (; t < f.num_trees; ++t) {
    int32_t i = f.roots[t];
    for (int d = 0; d < f.depths[t]; ++d) i = Step<kMissing, kCategorical>(f.nodes, f.bits, i, row, 1);
    if (single) {
      sum += f.nodes[i].value;
    } else {
      out[f.groups[t]] += f.nodes[i].value;
    }
  }
  if (single) out[0] = sum;
}

// kLanes rows, transposed (feature j of lane r at block[j * kLanes + r]),
// through trees [begin, end) in lock step; leaves added to acc[r][group] for
// the first m rows.
template <bool kMissing, size_t kLanes>
void WalkBlock(const Forest& f, size_t begin, size_t end, const float* block, size_t m, float* acc) {
  // The leaves of a tree are added after the next tree's walk, so that their
  // loads overlap it.
  float pending[kLanes];
  uint32_t pending_group = 0;
  bool have_pending = false;
  for (size_t t = begin; t < end; ++t) {
    int32_t idx[kLanes];
#pragma GCC unroll 16
    for (size_t r = 0; r < kLanes; ++r) idx[r] = f.roots[t];
    const int depth = f.depths[t];
    if (f.categorical[t]) {
      for (int d = 0; d < depth; ++d) {
#pragma GCC unroll 16
        for (size_t r = 0; r < kLanes; ++r) {
          idx[r] = Step<kMissing, true>(f.nodes, f.bits, idx[r], block + r, kLanes);
        }
      }
    } else {
      for (int d = 0; d < depth; ++d) {
#pragma GCC unroll 16
        for (size_t r = 0; r < kLanes; ++r) {
          idx[r] = Step<kMissing, false>(f.nodes, f.bits, idx[r], block + r, kLanes);
        }
      }
    }
    if (have_pending) {
      for (size_t r = 0; r < m; ++r) acc[r * f.num_groups + pending_group] += pending[r];
    }
#pragma GCC unroll 16
    for (size_t r = 0; r < kLanes; ++r) pending[r] = f.nodes[idx[r]].value;
    pending_group = f.groups[t];
    have_pending = true;
  }
  if (have_pending) {
    for (size_t r = 0; r < m; ++r) acc[r * f.num_groups + pending_group] += pending[r];
  }
}

// Rows in super blocks that stay in cache, walked against chunks of
// kChunkTrees trees (whose nodes stay in cache too), kBlockRows at a time.
void MarginRows(const Forest& f, const float* rows, size_t n, float* out) {
  constexpr size_t kStackFloats = 4096;
  float stack[kStackFloats];
  std::vector<float> heap;
  const size_t nf = f.num_features;
  size_t super = kSuperRows;
  while (super > kBlockRows && super * nf > kStackFloats) super /= 2;
  float* buffer = stack;
  if (super * nf > kStackFloats) {  // a block of very wide rows
    heap.resize(super * nf);
    buffer = heap.data();
  }
  std::fill(out, out + n * f.num_groups, f.base_margin);
  for (size_t s0 = 0; s0 < n; s0 += super) {
    const size_t s_rows = std::min(super, n - s0);
    // Wide blocks, the last one narrow when no more than kNarrowRows rows
    // are left for it (a lane past the rows repeats the last row).
    struct Block {
      const float* data;
      size_t first;  // row
      size_t lanes;
      size_t m;  // rows
      bool missing;
    };
    Block blocks[kSuperRows / kNarrowRows];
    size_t count = 0;
    float* data = buffer;
    for (size_t r0 = 0; r0 < s_rows;) {
      const size_t lanes = s_rows - r0 > kNarrowRows ? kBlockRows : kNarrowRows;
      const size_t m = std::min(lanes, s_rows - r0);
      for (size_t r = 0; r < lanes; ++r) {
        const float* row = rows + (s0 + r0 + std::min(r, m - 1)) * nf;
        for (size_t j = 0; j < nf; ++j) data[j * lanes + r] = row[j];
      }
      blocks[count++] = {data, s0 + r0, lanes, m, AnyMissing(data, lanes * nf)};
      data += lanes * nf;
      r0 += m;
    }
    for (size_t chunk = 0; chunk < f.num_trees; chunk += kChunkTrees) {
      const size_t chunk_end = std::min(f.num_trees, chunk + kChunkTrees);
      for (size_t b = 0; b < count; ++b) {
        const Block& k = blocks[b];
        float* acc = out + k.first * f.num_groups;
        if (k.lanes == kBlockRows) {
          k.missing ? WalkBlock<true, kBlockRows>(f, chunk, chunk_end, k.data, k.m, acc)
                    : WalkBlock<false, kBlockRows>(f, chunk, chunk_end, k.data, k.m, acc);
        } else {
          k.missing ? WalkBlock<true, kNarrowRows>(f, chunk, chunk_end, k.data, k.m, acc)
                    : WalkBlock<false, kNarrowRows>(f, chunk, chunk_end, k.data, k.m, acc);
        }
      }
    }
  }
}

}  // namespace

void TreeEnsemble::PredictMargin(const float* rows, size_t n, float* out) const {
  const Forest f{nodes_.data(),        cat_bits_.data(), roots_.data(),       depths_.data(),
                 group_depths_.data(), groups_.data(),   categorical_.data(), roots_.size(),
                 num_groups_,          num_features_,    base_margin_};
  if (n >= kNarrowRows / 2) {
    MarginRows(f, rows, n, out);
    return;
  }
  for (size_t r = 0; r < n; ++r) {
    const float* row = rows + r * num_features_;
    float* o = out + r * num_groups_;
    const bool missing = AnyMissing(row, num_features_);
    if (has_categorical_) {
      missing ? MarginRow<true, true>(f, row, o) : MarginRow<false, true>(f, row, o);
    } else {
      missing ? MarginRow<true, false>(f, row, o) : MarginRow<false, false>(f, row, o);
    }
  }
}

void TreeEnsemble::Predict(const float* rows, size_t n, float* out) const {
  const auto transform = static_cast<Transform>(transform_);
  if (transform == Transform::kSoftmax) {
    // Margins of a few rows at a time on the stack, then the class of each.
    constexpr size_t kStack = 256;
    float stack[kStack];
    std::vector<float> heap;
    float* margins = stack;
    size_t per_pass = kStack / num_groups_;
    if (per_pass == 0) {
      heap.resize(num_groups_);
      margins = heap.data();
      per_pass = 1;
    }
    for (size_t r = 0; r < n; r += per_pass) {
      const size_t m = std::min(per_pass, n - r);
      PredictMargin(rows + r * num_features_, m, margins);
      for (size_t i = 0; i < m; ++i) {
        const float* v = margins + i * num_groups_;
        out[r + i] = static_cast<float>(std::max_element(v, v + num_groups_) - v);
      }
    }
    return;
  }
  PredictMargin(rows, n, out);
  switch (transform) {
    case Transform::kSigmoid:
      for (size_t i = 0; i < n; ++i) out[i] = Sigmoid(out[i]);
      break;
    case Transform::kExp:
      for (size_t i = 0; i < n; ++i) out[i] = std::exp(out[i]);
      break;
    case Transform::kSoftprob:
      for (size_t i = 0; i < n; ++i) Softmax(out + i * num_groups_, num_groups_);
      break;
    case Transform::kIdentity:
    case Transform::kSoftmax:
      break;
  }
}

void TreeEnsemble::Contributions(const float* rows, size_t n, float* out) const {
  const size_t width = num_features_ + 1;
  const auto levels = static_cast<size_t>(max_depth_) + 2;
  std::vector<PathElement> paths(levels * (levels + 1) / 2);
  std::vector<float> phi(width, 0.0f);
  for (size_t r = 0; r < n; ++r) {
    const float* row = rows + r * num_features_;
    float* o = out + r * num_groups_ * width;
    std::fill(o, o + num_groups_ * width, 0.0f);
    ShapTree tree{nodes_.data(), cover_.data(), raw_value_.data(), cat_bits_.data(), row, phi.data()};
    for (size_t t = 0; t < roots_.size(); ++t) {
      // Each tree's contributions first on their own, then weighted into the
      // row's, as XGBoost adds them.
      float* og = o + groups_[t] * width;
      phi[num_features_] = tree_means_[t];
      ShapRecurse(tree, roots_[t], paths.data(), 0, 1.0f, 1.0f, -1);
      const float w = weights_[t];
      for (uint32_t k = tree_feature_begin_[t]; k < tree_feature_begin_[t + 1]; ++k) {
        const uint32_t feature = tree_features_[k];
        og[feature] += phi[feature] * w;
        phi[feature] = 0.0f;
      }
      og[num_features_] += phi[num_features_] * w;
    }
    for (size_t g = 0; g < num_groups_; ++g) o[g * width + num_features_] += base_margin_;
  }
}

}  // namespace takt::ml
