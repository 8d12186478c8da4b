#include "pipeline/spec.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <map>
#include <set>
#include <sstream>

#include "core/json.h"
#include "crypto/crypto.h"

namespace takt::pipeline {
namespace {

enum class Kind { kString, kNumber, kInt, kStringList, kIntList, kMap, kHoldout };

struct Key {
  Kind kind;
  bool required;
};

const std::map<std::string, std::map<std::string, Key>>& StepKeys() {
  static const auto* m = new std::map<std::string, std::map<std::string, Key>>{
      {"features",
       {{"dataset", {Kind::kString, true}},
        {"entity", {Kind::kString, false}},
        {"time", {Kind::kString, false}},
        {"label", {Kind::kString, false}},
        {"columns", {Kind::kStringList, false}},
        {"windows", {Kind::kIntList, false}},
        {"keep", {Kind::kStringList, false}}}},
      {"train",
       {{"input", {Kind::kString, true}},
        {"label", {Kind::kString, true}},
        {"holdout", {Kind::kHoldout, false}},
        {"params", {Kind::kMap, false}},
        {"rounds", {Kind::kInt, false}},
        {"exclude", {Kind::kStringList, false}}}},
      {"evaluate", {{"model", {Kind::kString, true}}, {"threshold", {Kind::kNumber, false}}}},
      {"condition", {{"metrics", {Kind::kString, true}}, {"expression", {Kind::kString, true}}}},
      {"register",
       {{"model", {Kind::kString, true}},
        {"metrics", {Kind::kString, false}},
        {"model_group", {Kind::kString, true}}}},
  };
  return *m;
}

// Which keys hold references to other steps, and what kind those must be.
const std::map<std::string, std::map<std::string, std::string>>& References() {
  static const auto* m = new std::map<std::string, std::map<std::string, std::string>>{
      {"train", {{"input", "features"}}},
      {"evaluate", {{"model", "train"}}},
      {"condition", {{"metrics", "evaluate"}}},
      {"register", {{"model", "train"}, {"metrics", "evaluate"}}},
  };
  return *m;
}

std::string At(const YAML::Node& n) { return "line " + std::to_string(n.Mark().line + 1); }

bool IsNumber(const std::string& s, double* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

Result<Json> Convert(const YAML::Node& n, Kind kind, const std::string& where) {
  switch (kind) {
    case Kind::kString:
      if (!n.IsScalar() || n.Scalar().empty()) return InvalidArgument(where + " must be a non-empty string");
      return Json(n.Scalar());
    case Kind::kNumber: {
      double d;
      if (!n.IsScalar() || !IsNumber(n.Scalar(), &d)) return InvalidArgument(where + " must be a number");
      return Json(d);
    }
    case Kind::kInt: {
      double d;
      if (!n.IsScalar() || !IsNumber(n.Scalar(), &d) || d != static_cast<int64_t>(d) || d < 1 || d > 100000) {
        return InvalidArgument(where + " must be a whole number from 1 to 100000");
      }
      return Json(static_cast<int64_t>(d));
    }
    case Kind::kStringList: {
      if (!n.IsSequence()) return InvalidArgument(where + " must be a list of names");
      Json arr = Json::array();
      for (const auto& x : n) {
        if (!x.IsScalar() || x.Scalar().empty()) return InvalidArgument(where + " must be a list of names");
        arr.push_back(x.Scalar());
      }
      return arr;
    }
    case Kind::kIntList: {
      if (!n.IsSequence() || n.size() == 0)
        return InvalidArgument(where + " must be a non-empty list of numbers");
      Json arr = Json::array();
      for (const auto& x : n) {
        double d;
        if (!x.IsScalar() || !IsNumber(x.Scalar(), &d) || d < 1 || d > 10000 || d != static_cast<int>(d)) {
          return InvalidArgument(where + " must hold whole numbers from 1 to 10000");
        }
        arr.push_back(static_cast<int>(d));
      }
      return arr;
    }
    case Kind::kMap: {
      if (!n.IsMap()) return InvalidArgument(where + " must be a mapping of name: value");
      Json obj = Json::object();
      for (const auto& kv : n) {
        if (!kv.second.IsScalar())
          return InvalidArgument(where + "." + kv.first.Scalar() + " must be a single value");
        obj[kv.first.Scalar()] = kv.second.Scalar();
      }
      return obj;
    }
    case Kind::kHoldout: {
      if (!n.IsMap()) return InvalidArgument(where + " must be a mapping with time_column and fraction");
      Json obj = {{"time_column", "timestamp"}, {"fraction", 0.2}};
      for (const auto& kv : n) {
        std::string k = kv.first.Scalar();
        if (k == "time_column") {
          TAKT_ASSIGN_OR_RETURN(obj["time_column"],
                                Convert(kv.second, Kind::kString, where + ".time_column"));
        } else if (k == "fraction") {
          TAKT_ASSIGN_OR_RETURN(Json f, Convert(kv.second, Kind::kNumber, where + ".fraction"));
          if (f.get<double>() <= 0 || f.get<double>() >= 1) {
            return InvalidArgument(where + ".fraction must be between 0 and 1");
          }
          obj["fraction"] = f;
        } else {
          return InvalidArgument(where + ": unknown key '" + k + "' (known: time_column, fraction)");
        }
      }
      return obj;
    }
  }
  return Internal("unreachable");
}

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s)
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
          c == '-' || c == '_'))
      return false;
  return std::islower(static_cast<unsigned char>(s[0]));
}

}  // namespace

const std::vector<std::string>& StepKinds() {
  static const auto* kinds = [] {
    auto* v = new std::vector<std::string>();
    for (const auto& [k, _] : StepKeys()) v->push_back(k);
    return v;
  }();
  return *kinds;
}

Result<PipelineSpec> ParsePipeline(std::string_view yaml) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return InvalidArgument("pipeline: invalid YAML at line " + std::to_string(e.mark.line + 1) + ": " +
                           e.msg);
  }
  if (!root.IsMap()) return InvalidArgument("pipeline: expected a mapping with name, project and steps");
  PipelineSpec spec;
  spec.source = std::string(yaml);
  spec.hash = crypto::Sha256Hex(yaml);
  try {
    for (const auto& kv : root) {
      std::string key = kv.first.Scalar();
      if (key != "name" && key != "project" && key != "steps" && key != "description") {
        return InvalidArgument("pipeline: " + At(kv.first) + ": unknown key '" + key +
                               "' (known: name, project, description, steps)");
      }
    }
    if (!root["name"] || !root["name"].IsScalar() || !ValidName(root["name"].Scalar())) {
      return InvalidArgument("pipeline: 'name' is required: lowercase letters, digits, '-' or '_'");
    }
    spec.name = root["name"].Scalar();
    spec.project = root["project"] && root["project"].IsScalar() ? root["project"].Scalar() : spec.name;
    if (!ValidName(spec.project)) return InvalidArgument("pipeline: 'project' must be a lowercase name");
    const YAML::Node steps = root["steps"];
    if (!steps || !steps.IsSequence() || steps.size() == 0) {
      return InvalidArgument("pipeline: 'steps' must be a non-empty list");
    }
    std::map<std::string, std::string> kinds_by_name;
    for (const auto& s : steps) {
      if (!s.IsMap()) return InvalidArgument("pipeline: " + At(s) + ": a step must be a mapping");
      StepSpec step;
      step.line = s.Mark().line + 1;
      std::string here = "pipeline: line " + std::to_string(step.line);
      if (!s["name"] || !s["name"].IsScalar() || !ValidName(s["name"].Scalar())) {
        return InvalidArgument(here + ": every step needs a 'name' (lowercase letters, digits, '-', '_')");
      }
      step.name = s["name"].Scalar();
      here += ": step '" + step.name + "'";
      if (kinds_by_name.contains(step.name)) return InvalidArgument(here + ": the name is used twice");
      if (!s["kind"] || !s["kind"].IsScalar()) return InvalidArgument(here + ": missing 'kind'");
      step.kind = s["kind"].Scalar();
      auto keys = StepKeys().find(step.kind);
      if (keys == StepKeys().end()) {
        std::string known;
        for (const auto& k : StepKinds()) known += (known.empty() ? "" : ", ") + k;
        return InvalidArgument(here + ": unknown kind '" + step.kind + "' (known: " + known + ")");
      }
      Json config = Json::object();
      std::set<std::string> given;
      for (const auto& kv : s) {
        std::string key = kv.first.Scalar();
        if (key == "name" || key == "kind") continue;
        auto k = keys->second.find(key);
        if (k == keys->second.end()) {
          std::string known;
          for (const auto& [n, _] : keys->second) known += (known.empty() ? "" : ", ") + n;
          return InvalidArgument("pipeline: " + At(kv.first) + ": step '" + step.name + "': unknown key '" +
                                 key + "' for a " + step.kind + " step (known: " + known + ")");
        }
        TAKT_ASSIGN_OR_RETURN(config[key],
                              Convert(kv.second, k->second.kind,
                                      "pipeline: " + At(kv.first) + ": step '" + step.name + "': " + key));
        given.insert(key);
      }
      for (const auto& [key, k] : keys->second) {
        if (k.required && !given.contains(key))
          return InvalidArgument(here + ": missing required key '" + key + "'");
      }
      auto refs = References().find(step.kind);
      if (refs != References().end()) {
        for (const auto& [key, want] : refs->second) {
          if (!config.contains(key)) continue;
          std::string target = config[key].get<std::string>();
          auto found = kinds_by_name.find(target);
          if (found == kinds_by_name.end()) {
            return InvalidArgument(
                here + ": " + key + " '" + target +
                "' is not an earlier step of this pipeline (steps run in the order written)");
          }
          if (found->second != want) {
            return InvalidArgument(here + ": " + key + " '" + target + "' is a " + found->second +
                                   " step; a " + want + " step is needed");
          }
        }
      }
      if (step.kind == "condition") {
        auto c = ParseCondition(config["expression"].get<std::string>());
        if (!c) return std::unexpected(c.error().WithContext(here));
      }
      kinds_by_name[step.name] = step.kind;
      step.config_json = config.dump();
      spec.steps.push_back(std::move(step));
    }
  } catch (const YAML::Exception& e) {
    return InvalidArgument("pipeline: line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return spec;
}

Result<std::vector<Comparison>> ParseCondition(std::string_view expression) {
  std::vector<Comparison> out;
  std::istringstream in{std::string(expression)};
  std::vector<std::string> tokens;
  for (std::string t; in >> t;) tokens.push_back(t);
  size_t i = 0;
  while (i < tokens.size()) {
    if (i + 3 > tokens.size()) {
      return InvalidArgument("condition '" + std::string(expression) + "': expected <metric> <op> <number>");
    }
    Comparison c{tokens[i], tokens[i + 1], 0};
    static const std::set<std::string> kOps = {">=", ">", "<=", "<", "==", "!="};
    if (!kOps.contains(c.op)) {
      return InvalidArgument("condition '" + std::string(expression) + "': '" + c.op +
                             "' is not a comparison (>=, >, <=, <, ==, !=)");
    }
    if (!IsNumber(tokens[i + 2], &c.value)) {
      return InvalidArgument("condition '" + std::string(expression) + "': '" + tokens[i + 2] +
                             "' is not a number");
    }
    out.push_back(c);
    i += 3;
    if (i < tokens.size()) {
      if (tokens[i] != "and") {
        return InvalidArgument("condition '" + std::string(expression) + "': expected 'and', found '" +
                               tokens[i] + "'");
      }
      ++i;
      if (i == tokens.size())
        return InvalidArgument("condition '" + std::string(expression) + "' ends with 'and'");
    }
  }
  if (out.empty()) return InvalidArgument("condition is empty");
  return out;
}

}  // namespace takt::pipeline
