#include "ml/xgboost_model_check.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <exception>
#include <vector>

#include "core/json.h"
#include "ml/model_json.h"

namespace takt::ml::internal {
namespace {

constexpr int kMaxDepth = 64;  // XGBoost models nest about 6 deep
constexpr int64_t kMaxFeatures = 10'000'000;
constexpr int64_t kMaxNodesPerTree = 1 << 26;

// Builds the DOM like nlohmann's own parser, but refuses nesting deeper than
// kMaxDepth: its UBJSON reader recurses once per level.
class DepthLimitedDom {
 public:
  explicit DepthLimitedDom(Json& root) : dom_(root, /*allow_exceptions_=*/false) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(Json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(Json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(Json::number_float_t v, const Json::string_t& s) { return dom_.number_float(v, s); }
  bool string(Json::string_t& v) { return dom_.string(v); }
  bool binary(Json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return Enter() && dom_.start_object(n); }
  bool key(Json::string_t& k) { return dom_.key(k); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return Enter() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  template <typename Exception>
  bool parse_error(std::size_t position, const std::string&, const Exception&) {
    error_ = "malformed at byte " + std::to_string(position);
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  bool Enter() {
    if (++depth_ <= kMaxDepth) return true;
    error_ = "nested deeper than " + std::to_string(kMaxDepth) + " levels";
    return false;
  }

  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  int depth_ = 0;
  std::string error_;
};

Result<Json> Parse(std::string_view bytes, Json::input_format_t format) {
  const char* what = format == Json::input_format_t::json ? "JSON" : "UBJSON";
  Json doc;
  DepthLimitedDom sax(doc);
  try {
    if (!Json::sax_parse(bytes.begin(), bytes.end(), &sax, format, /*strict=*/true)) {
      return InvalidArgument(std::string(what) + " " + (sax.error().empty() ? "malformed" : sax.error()));
    }
  } catch (const std::exception& e) {  // nlohmann throws on absurd container sizes
    return InvalidArgument(std::string(what) + " malformed: " + e.what());
  }
  return doc;
}

// Integers of an array (any non-integer fails).
Result<std::vector<int64_t>> Ints(const Json& array, std::string_view what) {
  std::vector<int64_t> out;
  out.reserve(array.size());
  for (const Json& v : array) {
    if (v.is_number_integer()) {
      out.push_back(v.get<int64_t>());
    } else if (v.is_boolean()) {
      out.push_back(v.get<bool>() ? 1 : 0);
    } else {
      return InvalidArgument(std::string(what) + " holds a value that is not an integer");
    }
  }
  return out;
}

Status CheckTree(const Json& tree, size_t index, int64_t num_feature) {
  const std::string where = "tree " + std::to_string(index);
  if (!tree.is_object()) return InvalidArgument(where + " is not an object");
  const Json* param = Member(tree, "tree_param");
  if (param == nullptr) return InvalidArgument(where + " has no tree_param");
  TAKT_ASSIGN_OR_RETURN(int64_t n, IntParam(*param, "num_nodes", where + ".tree_param"));
  if (n < 1 || n > kMaxNodesPerTree) return InvalidArgument(where + " has " + std::to_string(n) + " nodes");
  TAKT_ASSIGN_OR_RETURN(int64_t leaf_vector, IntParam(*param, "size_leaf_vector", where + ".tree_param", 0));
  if (leaf_vector != 0) return InvalidArgument(where + " has leaf vectors, which are not supported");

  const size_t nodes = static_cast<size_t>(n);
  for (const char* key : {"left_children", "right_children", "parents", "split_indices", "split_conditions",
                          "default_left", "base_weights", "loss_changes", "sum_hessian"}) {
    TAKT_ASSIGN_OR_RETURN(const Json* a, Array(tree, key, where));
    if (a->size() != nodes) {
      return InvalidArgument(where + "." + key + " has " + std::to_string(a->size()) + " entries for " +
                             std::to_string(n) + " nodes");
    }
  }
  for (const char* key : {"split_conditions", "base_weights"}) {
    for (const Json& v : tree[key]) {
      if (!v.is_number()) return InvalidArgument(where + "." + key + " holds a value that is not a number");
    }
  }
  if (const Json* split_type = Member(tree, "split_type"); split_type != nullptr) {
    TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> types, Ints(*split_type, where + ".split_type"));
    if (std::any_of(types.begin(), types.end(), [](int64_t t) { return t != 0; })) {
      return InvalidArgument(where + " has categorical splits, which are not supported");
    }
  }
  for (const char* key : {"categories", "categories_nodes", "categories_segments", "categories_sizes"}) {
    const Json* v = Member(tree, key);
    if (v != nullptr && (!v->is_array() || !v->empty())) {
      return InvalidArgument(where + " has categorical splits, which are not supported");
    }
  }
  TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> left, Ints(tree["left_children"], where + ".left_children"));
  TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> right, Ints(tree["right_children"], where + ".right_children"));
  TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> split, Ints(tree["split_indices"], where + ".split_indices"));
  TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> parents, Ints(tree["parents"], where + ".parents"));
  TAKT_RETURN_IF_ERROR(Ints(tree["default_left"], where + ".default_left"));
  // XGBoost follows every node's parent when it loads a tree (the root's is unused).
  for (size_t i = 1; i < nodes; ++i) {
    if (parents[i] < 0 || parents[i] >= n) {
      return InvalidArgument(where + " node " + std::to_string(i) + " has parent " +
                             std::to_string(parents[i]) + ", outside 0.." + std::to_string(n - 1));
    }
  }

  // Walk from the root: every child in range and reached once, so prediction
  // cannot leave the node array or go round in circles.
  std::vector<uint8_t> seen(nodes, 0);
  std::vector<int64_t> stack = {0};
  seen[0] = 1;
  while (!stack.empty()) {
    const auto i = static_cast<size_t>(stack.back());
    stack.pop_back();
    const int64_t l = left[i];
    const int64_t r = right[i];
    if (l == -1) continue;  // a leaf
    const std::string node = where + " node " + std::to_string(i);
    if (l < 1 || l >= n || r < 1 || r >= n) {
      return InvalidArgument(node + " has children " + std::to_string(l) + " and " + std::to_string(r) +
                             ", outside 1.." + std::to_string(n - 1));
    }
    if (l == r || seen[static_cast<size_t>(l)] || seen[static_cast<size_t>(r)]) {
      return InvalidArgument(node + " leads back to a node already in the tree");
    }
    if (split[i] < 0 || split[i] >= num_feature) {
      return InvalidArgument(node + " splits on feature " + std::to_string(split[i]) + " of " +
                             std::to_string(num_feature));
    }
    seen[static_cast<size_t>(l)] = seen[static_cast<size_t>(r)] = 1;
    stack.push_back(l);
    stack.push_back(r);
  }
  return Ok();
}

Status CheckModel(const Json& doc) {
  const Json* learner = Member(doc, "learner");
  if (learner == nullptr || !learner->is_object()) return InvalidArgument("it has no learner");
  const Json* param = Member(*learner, "learner_model_param");
  if (param == nullptr) return InvalidArgument("it has no learner_model_param");
  TAKT_ASSIGN_OR_RETURN(int64_t num_feature, IntParam(*param, "num_feature", "learner_model_param"));
  if (num_feature < 1 || num_feature > kMaxFeatures) {
    return InvalidArgument("it has " + std::to_string(num_feature) + " features");
  }
  TAKT_ASSIGN_OR_RETURN(int64_t num_class, IntParam(*param, "num_class", "learner_model_param", 0));
  TAKT_ASSIGN_OR_RETURN(int64_t num_target, IntParam(*param, "num_target", "learner_model_param", 1));
  if (num_class < 0 || num_class > 100000 || num_target < 1 || num_target > 100000) {
    return InvalidArgument("it has " + std::to_string(num_class) + " classes and " +
                           std::to_string(num_target) + " targets");
  }
  const int64_t groups = std::max<int64_t>({1, num_class, num_target});

  const Json* booster = Member(*learner, "gradient_booster");
  const Json* name = booster ? Member(*booster, "name") : nullptr;
  if (name == nullptr || !name->is_string()) return InvalidArgument("it has no gradient_booster.name");
  const std::string& kind = name->get_ref<const std::string&>();
  if (kind == "gblinear") {
    const Json* model = Member(*booster, "model");
    if (model == nullptr) return InvalidArgument("gblinear has no model");
    TAKT_ASSIGN_OR_RETURN(const Json* weights, Array(*model, "weights", "gblinear.model"));
    if (static_cast<int64_t>(weights->size()) != (num_feature + 1) * groups) {
      return InvalidArgument("gblinear has " + std::to_string(weights->size()) + " weights");
    }
    return Ok();
  }
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
  TAKT_ASSIGN_OR_RETURN(const Json* tree_info, Array(*model, "tree_info", "model"));
  if (tree_info->size() != trees->size()) return InvalidArgument("tree_info does not match the trees");
  TAKT_ASSIGN_OR_RETURN(std::vector<int64_t> info, Ints(*tree_info, "tree_info"));
  for (int64_t group : info) {
    if (group < 0 || group >= groups)
      return InvalidArgument("tree_info names output " + std::to_string(group));
  }
  const Json* model_param = Member(*model, "gbtree_model_param");
  if (model_param == nullptr) return InvalidArgument("it has no gbtree_model_param");
  TAKT_ASSIGN_OR_RETURN(int64_t num_trees, IntParam(*model_param, "num_trees", "gbtree_model_param"));
  if (num_trees != static_cast<int64_t>(trees->size())) {
    return InvalidArgument("num_trees is " + std::to_string(num_trees) + " for " +
                           std::to_string(trees->size()) + " trees");
  }
  if (kind == "dart") {
    TAKT_ASSIGN_OR_RETURN(const Json* drop, Array(*booster, "weight_drop", "dart"));
    if (drop->size() != trees->size()) return InvalidArgument("dart weight_drop does not match the trees");
  }
  for (size_t i = 0; i < trees->size(); ++i) TAKT_RETURN_IF_ERROR(CheckTree((*trees)[i], i, num_feature));
  return Ok();
}

// A cursor over the fields of the legacy binary format (native, i.e. little
// endian, as dmlc streams write them).
class LegacyReader {
 public:
  explicit LegacyReader(std::string_view bytes) : bytes_(bytes) {}

  size_t remaining() const { return bytes_.size() - pos_; }
  bool Skip(uint64_t n) {
    if (n > remaining()) return false;
    pos_ += static_cast<size_t>(n);
    return true;
  }
  // The int32 `offset` bytes ahead; the caller checked remaining().
  int32_t PeekI32(size_t offset) const {
    int32_t v = 0;
    std::memcpy(&v, bytes_.data() + pos_ + offset, sizeof v);
    return v;
  }
  bool U64(uint64_t* v) {
    if (remaining() < sizeof *v) return false;
    std::memcpy(v, bytes_.data() + pos_, sizeof *v);
    pos_ += sizeof *v;
    return true;
  }
  // A string: its uint64 length, then its bytes.
  bool String(std::string* s, uint64_t max_length) {
    uint64_t n = 0;
    if (!U64(&n) || n > max_length || n > remaining()) return false;
    s->assign(bytes_.substr(pos_, static_cast<size_t>(n)));
    pos_ += static_cast<size_t>(n);
    return true;
  }
  // A vector of `element` sized items: its uint64 count, then the items.
  bool SkipVector(uint64_t element) {
    uint64_t n = 0;
    return U64(&n) && n <= remaining() / element && Skip(n * element);
  }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

}  // namespace

Status CheckLegacyBinary(std::string_view bytes) {
  auto corrupt = [](const std::string& what) { return InvalidArgument("legacy binary model: " + what); };
  // Sizes of the fixed structs as XGBoost 1.x writes them.
  constexpr size_t kLearnerParam = 136;  // LearnerModelParamLegacy
  constexpr size_t kModelParam = 160;    // GBTreeModelParam
  constexpr size_t kTreeParam = 148;     // TreeParam
  constexpr size_t kNode = 20 + 16;      // Node and RTreeNodeStat
  LegacyReader r(bytes);
  if (bytes.starts_with("binf")) r.Skip(4);
  if (r.remaining() < kLearnerParam) return corrupt("shorter than its header");
  const int32_t extra_attributes = r.PeekI32(12);
  const int32_t eval_metrics = r.PeekI32(16);
  r.Skip(kLearnerParam);
  std::string objective, booster;
  if (!r.String(&objective, 256) || !r.String(&booster, 256)) return corrupt("bad objective or booster name");
  if (booster != "gbtree" && booster != "dart") {
    return corrupt("booster '" + booster + "' is not supported in this format; save the model as JSON");
  }
  if (r.remaining() < kModelParam) return corrupt("truncated");
  const int32_t num_trees = r.PeekI32(0);
  r.Skip(kModelParam);
  if (num_trees < 0 || static_cast<size_t>(num_trees) > r.remaining() / kTreeParam) {
    return corrupt("bad tree count " + std::to_string(num_trees));
  }
  for (int32_t t = 0; t < num_trees; ++t) {
    if (r.remaining() < kTreeParam) return corrupt("truncated");
    const int32_t nodes = r.PeekI32(4);
    const int32_t leaf_vector = r.PeekI32(20);
    r.Skip(kTreeParam);
    if (nodes < 1 || static_cast<size_t>(nodes) > r.remaining() / kNode) {
      return corrupt("tree " + std::to_string(t) + " has a bad node count " + std::to_string(nodes));
    }
    if (leaf_vector != 0)
      return corrupt("tree " + std::to_string(t) + " has leaf vectors, which are not supported");
    r.Skip(static_cast<uint64_t>(nodes) * kNode);
  }
  if (!r.Skip(static_cast<uint64_t>(num_trees) * 4)) return corrupt("truncated tree groups");
  if (booster == "dart" && !r.SkipVector(sizeof(float))) return corrupt("bad dart weights");
  std::string text;
  if (extra_attributes != 0) {
    uint64_t n = 0;
    if (!r.U64(&n) || n > r.remaining() / 16) return corrupt("bad attribute count");
    for (uint64_t i = 0; i < n; ++i) {
      if (!r.String(&text, r.remaining()) || !r.String(&text, r.remaining())) return corrupt("bad attribute");
    }
  }
  if (objective == "count:poisson" && !r.String(&text, r.remaining())) return corrupt("bad max_delta_step");
  if (eval_metrics != 0) {
    uint64_t n = 0;
    if (!r.U64(&n) || n > r.remaining() / 8) return corrupt("bad metric count");
    for (uint64_t i = 0; i < n; ++i) {
      if (!r.String(&text, r.remaining())) return corrupt("bad metric name");
    }
  }
  return Ok();
}

Result<std::string> ModelBytesToJson(std::string_view bytes) {
  // XGBoost's own dispatch: JSON text starts '{"', UBJSON '{' and a type marker.
  if (bytes.size() >= 2 && bytes[0] == '{' && std::isalpha(static_cast<unsigned char>(bytes[1]))) {
    TAKT_ASSIGN_OR_RETURN(Json doc, Parse(bytes, Json::input_format_t::ubjson));
    try {
      return doc.dump();
    } catch (const std::exception& e) {  // invalid UTF-8 in a string
      return InvalidArgument(std::string("UBJSON holds text that is not UTF-8: ") + e.what());
    }
  }
  const size_t first = bytes.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && bytes[first] == '{') return std::string(bytes);
  return NotFound("neither JSON nor UBJSON");
}

Result<std::string> CheckModelJson(std::string_view json_text) {
  TAKT_ASSIGN_OR_RETURN(Json doc, Parse(json_text, Json::input_format_t::json));
  TAKT_RETURN_IF_ERROR(CheckModel(doc));
  try {
    return doc.dump();
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("the model holds text that is not UTF-8: ") + e.what());
  }
}

}  // namespace takt::ml::internal
