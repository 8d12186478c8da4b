#include "pipeline/spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <set>
#include <sstream>

#include "crypto/crypto.h"
#include "registry/registry.h"

namespace takt::pipeline {
namespace {

// How a key's value is checked.
enum class Kind {
  kString,
  kNumber,
  kFraction,  // a number strictly between 0 and 1
  kInt,
  kBool,
  kStringList,
  kIntList,
  kScalarMap,  // name: scalar
  kObject,     // any mapping (search spaces), kept as JSON
  kHoldout,
  kRef,      // "step" or "step.output"
  kRefMap,   // name: ref
  kTypeMap,  // name: table | files
  kCommand,  // a string or a list of strings
  kMetricsSpec,
  kChoice,  // one of Key::choices
};

struct Key {
  Kind kind;
  bool required = false;
  ArtifactType ref_type = ArtifactType::kTable;  // kRef: what the referenced output must be
  std::vector<std::string> choices = {};
};

using KeyTable = std::map<std::string, Key>;

const std::map<std::string, KeyTable>& StepKeys() {
  static const auto* m = new std::map<std::string, KeyTable>{
      {"features",
       {{"dataset", {Kind::kString, true}},
        {"entity", {Kind::kString}},
        {"time", {Kind::kString}},
        {"label", {Kind::kString}},
        {"columns", {Kind::kStringList}},
        {"windows", {Kind::kIntList}},
        {"keep", {Kind::kStringList}}}},
      {"split",
       {{"input", {Kind::kRef, true, ArtifactType::kTable}},
        {"by", {Kind::kChoice, false, ArtifactType::kTable, {"time", "random"}}},
        {"time_column", {Kind::kString}},
        {"fraction", {Kind::kFraction}},
        {"seed", {Kind::kInt}}}},
      {"train",
       {{"input", {Kind::kRef, true, ArtifactType::kTable}},
        {"validation", {Kind::kRef, false, ArtifactType::kTable}},
        {"label", {Kind::kString, true}},
        {"holdout", {Kind::kHoldout}},
        {"params", {Kind::kScalarMap}},
        {"rounds", {Kind::kInt}},
        {"early_stopping_rounds", {Kind::kInt}},
        {"exclude", {Kind::kStringList}}}},
      {"tune",
       {{"input", {Kind::kRef, true, ArtifactType::kTable}},
        {"validation", {Kind::kRef, false, ArtifactType::kTable}},
        {"label", {Kind::kString, true}},
        {"holdout", {Kind::kHoldout}},
        {"params", {Kind::kScalarMap}},
        {"space", {Kind::kObject, true}},
        {"rounds", {Kind::kInt}},
        {"exclude", {Kind::kStringList}},
        {"trials", {Kind::kInt}},
        {"parallel", {Kind::kInt}},
        {"sampler", {Kind::kChoice, false, ArtifactType::kTable, {"random", "tpe"}}},
        {"metric", {Kind::kString}},
        {"direction", {Kind::kChoice, false, ArtifactType::kTable, {"minimize", "maximize"}}},
        {"early_stopping", {Kind::kObject}},
        {"seed", {Kind::kInt}}}},
      {"evaluate",
       {{"model", {Kind::kRef, true, ArtifactType::kModel}},
        {"data", {Kind::kRef, false, ArtifactType::kTable}},
        {"label", {Kind::kString}},
        {"threshold", {Kind::kFraction}}}},
      {"condition",
       {{"metrics", {Kind::kRef, true, ArtifactType::kMetrics}}, {"expression", {Kind::kString, true}}}},
      {"register",
       {{"model", {Kind::kRef, true, ArtifactType::kModel}},
        {"metrics", {Kind::kRef, false, ArtifactType::kMetrics}},
        {"model_group", {Kind::kString, true}},
        {"card", {Kind::kObject}}}},
      {"fail", {{"message", {Kind::kString}}}},
      {"command",
       {{"command", {Kind::kCommand, true}},
        {"code", {Kind::kString}},
        {"inputs", {Kind::kRefMap}},
        {"hyperparameters", {Kind::kScalarMap}},
        {"outputs", {Kind::kTypeMap}},
        {"metrics", {Kind::kMetricsSpec}}}},
  };
  return *m;
}

const std::set<std::string>& CommonKeys() {
  static const auto* s =
      new std::set<std::string>{"name",      "kind",     "depends_on", "retry",      "timeout",
                                "resources", "executor", "cache",      "on_failure", "network"};
  return *s;
}

std::string Line(const YAML::Node& n) { return "line " + std::to_string(n.Mark().line + 1); }

std::string Join(const std::vector<std::string>& v, std::string_view sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : std::string(sep)) + s;
  return out;
}

template <typename Map>
std::string KeysOf(const Map& m) {
  std::vector<std::string> v;
  for (const auto& [k, _] : m) v.push_back(k);
  return Join(v);
}

bool ParseDouble(std::string_view s, double* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(*out);
}

bool ParseInt(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
          c == '-' || c == '_'))
      return false;
  }
  return std::islower(static_cast<unsigned char>(s[0]));
}

// A YAML scalar as JSON: integers, numbers and booleans typed, else a string.
Json ScalarJson(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return Json(s);  // quoted: always a string
  int64_t i;
  double d;
  if (ParseInt(s, &i)) return Json(i);
  if (ParseDouble(s, &d)) return Json(d);
  if (s == "true" || s == "True") return Json(true);
  if (s == "false" || s == "False") return Json(false);
  return Json(s);
}

// Parameter substitution in one scalar. A value that is exactly
// ${params.NAME} takes the parameter's type; elsewhere it is spliced as text.
Result<Json> Substitute(const YAML::Node& n, const Json& params, const std::string& where) {
  const std::string& s = n.Scalar();
  if (s.find("${") == std::string::npos) return ScalarJson(n);
  std::string out;
  size_t pos = 0;
  Json whole;
  bool only_ref = false;
  while (pos < s.size()) {
    size_t start = s.find("${", pos);
    if (start == std::string::npos) {
      out += s.substr(pos);
      break;
    }
    out += s.substr(pos, start - pos);
    size_t end = s.find('}', start);
    if (end == std::string::npos) return InvalidArgument(where + ": unterminated '${' in '" + s + "'");
    std::string ref = s.substr(start + 2, end - start - 2);
    if (!ref.starts_with("params.")) {
      return InvalidArgument(where + ": '${" + ref +
                             "}' is not a parameter reference (write ${params.NAME})");
    }
    std::string name = ref.substr(7);
    auto it = params.find(name);
    if (it == params.end()) {
      return InvalidArgument(where + ": unknown parameter '" + name + "'" +
                             (params.empty() ? " (the pipeline declares no parameters)"
                                             : " (declared: " + KeysOf(params.items()) + ")"));
    }
    only_ref = start == 0 && end == s.size() - 1;
    whole = *it;
    out += it->is_string() ? it->get<std::string>() : it->dump();
    pos = end + 1;
  }
  if (only_ref) return whole;
  return Json(out);
}

// A YAML node as JSON with parameters substituted in every scalar.
Result<Json> Resolve(const YAML::Node& n, const Json& params, const std::string& where) {
  if (n.IsScalar()) return Substitute(n, params, where);
  if (n.IsNull()) return Json();
  if (n.IsSequence()) {
    Json arr = Json::array();
    for (const auto& x : n) {
      TAKT_ASSIGN_OR_RETURN(Json v, Resolve(x, params, where));
      arr.push_back(std::move(v));
    }
    return arr;
  }
  Json obj = Json::object();
  for (const auto& kv : n) {
    TAKT_ASSIGN_OR_RETURN(Json v, Resolve(kv.second, params, where + "." + kv.first.Scalar()));
    obj[kv.first.Scalar()] = std::move(v);
  }
  return obj;
}

bool IsScalarJson(const Json& v) { return v.is_string() || v.is_number() || v.is_boolean(); }

std::string AsText(const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

Result<ArtifactType> ParseArtifactType(const std::string& s, const std::string& where) {
  if (s == "table") return ArtifactType::kTable;
  if (s == "files") return ArtifactType::kFiles;
  return InvalidArgument(where + ": '" + s + "' is not an output type (table or files)");
}

// Checks `v` against `key` and returns the normalised value.
Result<Json> Check(const Json& v, const Key& key, const std::string& where) {
  switch (key.kind) {
    case Kind::kString:
    case Kind::kRef:
      if (!IsScalarJson(v) || AsText(v).empty())
        return InvalidArgument(where + " must be a non-empty string");
      return Json(AsText(v));
    case Kind::kChoice:
      if (!v.is_string() ||
          std::find(key.choices.begin(), key.choices.end(), v.get<std::string>()) == key.choices.end()) {
        return InvalidArgument(where + " must be one of " + Join(key.choices, ", "));
      }
      return v;
    case Kind::kNumber:
      if (!v.is_number()) return InvalidArgument(where + " must be a number");
      return Json(v.get<double>());
    case Kind::kFraction:
      if (!v.is_number() || v.get<double>() <= 0 || v.get<double>() >= 1)
        return InvalidArgument(where + " must be a number between 0 and 1");
      return Json(v.get<double>());
    case Kind::kInt:
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1000000)
        return InvalidArgument(where + " must be a whole number from 0 to 1000000");
      return v;
    case Kind::kBool:
      if (!v.is_boolean()) return InvalidArgument(where + " must be true or false");
      return v;
    case Kind::kStringList:
      if (!v.is_array()) return InvalidArgument(where + " must be a list of names");
      for (const auto& x : v) {
        if (!x.is_string() || x.get<std::string>().empty())
          return InvalidArgument(where + " must be a list of names");
      }
      return v;
    case Kind::kIntList:
      if (!v.is_array() || v.empty()) return InvalidArgument(where + " must be a non-empty list of numbers");
      for (const auto& x : v) {
        if (!x.is_number_integer() || x.get<int64_t>() < 1 || x.get<int64_t>() > 10000)
          return InvalidArgument(where + " must hold whole numbers from 1 to 10000");
      }
      return v;
    case Kind::kScalarMap:
      if (!v.is_object()) return InvalidArgument(where + " must be a mapping of name: value");
      for (const auto& [k, x] : v.items()) {
        if (!IsScalarJson(x)) return InvalidArgument(where + "." + k + " must be a single value");
      }
      return v;
    case Kind::kObject:
      if (!v.is_object()) return InvalidArgument(where + " must be a mapping");
      return v;
    case Kind::kHoldout: {
      if (!v.is_object()) return InvalidArgument(where + " must be a mapping with time_column and fraction");
      Json obj = {{"time_column", "timestamp"}, {"fraction", 0.2}};
      for (const auto& [k, x] : v.items()) {
        if (k == "time_column") {
          TAKT_ASSIGN_OR_RETURN(obj[k], Check(x, {Kind::kString}, where + ".time_column"));
        } else if (k == "fraction") {
          TAKT_ASSIGN_OR_RETURN(obj[k], Check(x, {Kind::kFraction}, where + ".fraction"));
        } else {
          return InvalidArgument(where + ": unknown key '" + k + "' (known: time_column, fraction)");
        }
      }
      return obj;
    }
    case Kind::kRefMap:
      if (!v.is_object() || v.empty())
        return InvalidArgument(where + " must be a mapping of name: step[.output]");
      for (const auto& [k, x] : v.items()) {
        if (!ValidName(k)) return InvalidArgument(where + ": '" + k + "' is not a valid input name");
        if (!x.is_string() || x.get<std::string>().empty())
          return InvalidArgument(where + "." + k + " must name a step or step.output");
      }
      return v;
    case Kind::kTypeMap:
      if (!v.is_object()) return InvalidArgument(where + " must be a mapping of name: table|files");
      for (const auto& [k, x] : v.items()) {
        if (!ValidName(k) || k == "model" || k == "metrics" || k == "output") {
          return InvalidArgument(where + ": '" + k +
                                 "' cannot be an output name (model, metrics and output are implicit)");
        }
        if (!x.is_string()) return InvalidArgument(where + "." + k + " must be table or files");
        TAKT_RETURN_IF_ERROR(ParseArtifactType(x.get<std::string>(), where + "." + k));
      }
      return v;
    case Kind::kCommand: {
      Json argv = Json::array();
      if (v.is_string()) {
        std::istringstream in(v.get<std::string>());
        for (std::string w; in >> w;) argv.push_back(w);
      } else if (v.is_array()) {
        for (const auto& x : v) {
          if (!IsScalarJson(x)) return InvalidArgument(where + " must be a list of words");
          argv.push_back(AsText(x));
        }
      }
      if (argv.empty() || argv[0].get<std::string>().empty())
        return InvalidArgument(where + " must be a command line or a list of words");
      return argv;
    }
    case Kind::kMetricsSpec: {
      if (!v.is_object()) return InvalidArgument(where + " must be a mapping with file and/or regex");
      for (const auto& [k, x] : v.items()) {
        if (k == "file") {
          if (!x.is_string() || x.get<std::string>().empty() ||
              x.get<std::string>().find("..") != std::string::npos)
            return InvalidArgument(where + ".file must be a relative file name");
        } else if (k == "regex") {
          if (!x.is_object()) return InvalidArgument(where + ".regex must be a mapping of metric: pattern");
          for (const auto& [name, pattern] : x.items()) {
            if (!pattern.is_string()) return InvalidArgument(where + ".regex." + name + " must be a pattern");
          }
        } else {
          return InvalidArgument(where + ": unknown key '" + k + "' (known: file, regex)");
        }
      }
      return v;
    }
  }
  return Internal("unreachable");
}

Result<ParamSpec> ParseParam(const std::string& name, const YAML::Node& n) {
  const std::string where = "pipeline: " + Line(n) + ": parameter '" + name + "'";
  if (!ValidName(name)) return InvalidArgument(where + ": names are lowercase letters, digits, '-' or '_'");
  ParamSpec p;
  p.name = name;
  p.line = n.Mark().line + 1;
  if (n.IsScalar()) {  // shorthand: rounds: 150
    p.default_value = ScalarJson(n);
  } else if (n.IsMap()) {
    for (const auto& kv : n) {
      const std::string k = kv.first.Scalar();
      if (k == "type") {
        p.type = kv.second.Scalar();
      } else if (k == "default") {
        if (!kv.second.IsScalar()) return InvalidArgument(where + ": default must be a single value");
        p.default_value = ScalarJson(kv.second);
      } else if (k == "min" || k == "max") {
        double d;
        if (!kv.second.IsScalar() || !ParseDouble(kv.second.Scalar(), &d))
          return InvalidArgument(where + ": " + k + " must be a number");
        (k == "min" ? p.min : p.max) = d;
      } else if (k == "choices") {
        if (!kv.second.IsSequence() || kv.second.size() == 0)
          return InvalidArgument(where + ": choices must be a non-empty list");
        for (const auto& c : kv.second) p.choices.push_back(ScalarJson(c));
      } else if (k == "description") {
        p.description = kv.second.Scalar();
      } else {
        return InvalidArgument("pipeline: " + Line(kv.first) + ": parameter '" + name + "': unknown key '" +
                               k + "' (known: type, default, min, max, choices, description)");
      }
    }
  } else {
    return InvalidArgument(where + ": expected a default value or a mapping with type and default");
  }
  if (p.type.empty()) {
    p.type = p.default_value.is_boolean()          ? "bool"
             : p.default_value.is_number_integer() ? "int"
             : p.default_value.is_number()         ? "number"
                                                   : "string";
  }
  static const std::set<std::string> kTypes = {"int", "number", "string", "bool"};
  if (!kTypes.contains(p.type)) return InvalidArgument(where + ": type must be int, number, string or bool");
  if (p.default_value.is_null()) return InvalidArgument(where + ": a default is required");
  return p;
}

// `v` converted to `p`'s type and checked against its bounds.
Result<Json> CoerceParam(const ParamSpec& p, const Json& v, const std::string& where) {
  Json out;
  const std::string text = AsText(v);
  if (p.type == "int") {
    int64_t i;
    if (v.is_number_integer()) {
      out = v;
    } else if (v.is_string() && ParseInt(text, &i)) {
      out = i;
    } else {
      return InvalidArgument(where + ": '" + text + "' is not a whole number (parameter " + p.name +
                             " is an int)");
    }
  } else if (p.type == "number") {
    double d;
    if (v.is_number()) {
      out = v.get<double>();
    } else if (v.is_string() && ParseDouble(text, &d)) {
      out = d;
    } else {
      return InvalidArgument(where + ": '" + text + "' is not a number (parameter " + p.name +
                             " is a number)");
    }
  } else if (p.type == "bool") {
    if (v.is_boolean()) {
      out = v;
    } else if (text == "true" || text == "false") {
      out = text == "true";
    } else {
      return InvalidArgument(where + ": '" + text + "' is not true or false (parameter " + p.name +
                             " is a bool)");
    }
  } else {
    out = text;
  }
  if (out.is_number()) {
    const double d = out.get<double>();
    if ((p.min && d < *p.min) || (p.max && d > *p.max)) {
      std::ostringstream range;
      range << (p.min ? std::to_string(*p.min) : "-inf") << " .. "
            << (p.max ? std::to_string(*p.max) : "inf");
      return InvalidArgument(where + ": " + text + " is outside the range of parameter " + p.name + " (" +
                             range.str() + ")");
    }
  }
  if (!p.choices.empty() && std::find(p.choices.begin(), p.choices.end(), out) == p.choices.end()) {
    std::vector<std::string> cs;
    for (const auto& c : p.choices) cs.push_back(AsText(c));
    return InvalidArgument(where + ": '" + text + "' is not one of " + Join(cs) + " (parameter " + p.name +
                           ")");
  }
  return out;
}

Status ParseCommonKey(StepSpec& step, const std::string& key, const Json& v, const std::string& where) {
  if (key == "depends_on") {
    Json list = v.is_string() ? Json::array({v}) : v;
    TAKT_RETURN_IF_ERROR(Check(list, {Kind::kStringList}, where));
    step.depends_on = list.get<std::vector<std::string>>();
  } else if (key == "retry") {
    if (!v.is_object())
      return InvalidArgument(where + " must be a mapping (attempts, backoff, max_backoff, on)");
    for (const auto& [k, x] : v.items()) {
      if (k == "attempts") {
        if (!x.is_number_integer() || x.get<int>() < 1 || x.get<int>() > 100)
          return InvalidArgument(where + ".attempts must be a whole number from 1 to 100");
        step.retry.attempts = x.get<int>();
      } else if (k == "backoff" || k == "max_backoff") {
        TAKT_ASSIGN_OR_RETURN(double d, ParseDuration(AsText(x)));
        (k == "backoff" ? step.retry.backoff_seconds : step.retry.max_backoff_seconds) = d;
      } else if (k == "on") {
        static const std::set<std::string> kFailures = {"error",  "timeout", "crash",
                                                        "memory", "disk",    "lost"};
        Json list = x.is_string() ? Json::array({x}) : x;
        TAKT_RETURN_IF_ERROR(Check(list, {Kind::kStringList}, where + ".on"));
        step.retry.on.clear();
        for (const auto& f : list) {
          if (!kFailures.contains(f.get<std::string>())) {
            return InvalidArgument(where + ".on: '" + f.get<std::string>() +
                                   "' is not a failure kind (error, timeout, crash, memory, disk, lost)");
          }
          step.retry.on.push_back(f.get<std::string>());
        }
      } else {
        return InvalidArgument(where + ": unknown key '" + k +
                               "' (known: attempts, backoff, max_backoff, on)");
      }
    }
  } else if (key == "timeout") {
    TAKT_ASSIGN_OR_RETURN(step.timeout_seconds, ParseDuration(AsText(v)));
  } else if (key == "resources") {
    if (!v.is_object()) return InvalidArgument(where + " must be a mapping (cpus, memory, time, disk)");
    for (const auto& [k, x] : v.items()) {
      if (k == "cpus") {
        if (!x.is_number_integer() || x.get<int>() < 1 || x.get<int>() > 1024)
          return InvalidArgument(where + ".cpus must be a whole number from 1 to 1024");
        step.resources.cpus = x.get<int>();
      } else if (k == "memory") {
        TAKT_ASSIGN_OR_RETURN(step.resources.memory_bytes, ParseBytes(AsText(x)));
      } else if (k == "disk") {
        TAKT_ASSIGN_OR_RETURN(step.resources.disk_bytes, ParseBytes(AsText(x)));
      } else if (k == "time") {
        TAKT_ASSIGN_OR_RETURN(step.resources.time_seconds, ParseDuration(AsText(x)));
      } else {
        return InvalidArgument(where + ": unknown key '" + k + "' (known: cpus, memory, time, disk)");
      }
    }
  } else if (key == "executor") {
    if (v != "local" && v != "slurm") return InvalidArgument(where + " must be local or slurm");
    step.executor = v.get<std::string>();
  } else if (key == "cache" || key == "network") {
    if (!v.is_boolean()) return InvalidArgument(where + " must be true or false");
    (key == "cache" ? step.cache : step.network) = v.get<bool>();
  } else if (key == "on_failure") {
    if (v != "stop" && v != "continue") return InvalidArgument(where + " must be stop or continue");
    step.on_failure = v.get<std::string>();
  }
  return Ok();
}

// Resolves "step" / "step.output" against the other steps and checks the type.
Status BindRef(const PipelineSpec& spec, StepSpec& step, const std::string& input_name,
               const std::string& ref, std::optional<ArtifactType> want, int line) {
  const std::string where =
      "pipeline: line " + std::to_string(line) + ": step '" + step.name + "': " + input_name;
  std::string target = ref, output;
  if (auto dot = ref.find('.'); dot != std::string::npos) {
    target = ref.substr(0, dot);
    output = ref.substr(dot + 1);
  }
  if (target == step.name) return InvalidArgument(where + " '" + ref + "' refers to the step itself");
  const StepSpec* from = spec.Step(target);
  if (from == nullptr) {
    std::vector<std::string> names;
    for (const auto& s : spec.steps) names.push_back(s.name);
    return InvalidArgument(where + " '" + ref + "': there is no step '" + target +
                           "' (steps: " + Join(names) + ")");
  }
  auto outputs = OutputsOf(*from);
  if (output.empty()) output = DefaultOutput(*from);
  auto it = outputs.find(output);
  if (it == outputs.end()) {
    return InvalidArgument(
        where + " '" + ref + "': a " + from->kind + " step has no output '" + output + "'" +
        (outputs.empty() ? " (it has no outputs)" : " (outputs: " + KeysOf(outputs) + ")"));
  }
  if (want && it->second != *want) {
    return InvalidArgument(where + " '" + ref + "' is a " + std::string(ArtifactTypeName(it->second)) +
                           " (output '" + output + "' of " + from->kind + " step '" + target + "'); a " +
                           std::string(ArtifactTypeName(*want)) + " is needed");
  }
  step.inputs.push_back({input_name, target, output, it->second, line});
  return Ok();
}

Status CheckAcyclic(const PipelineSpec& spec) {
  std::map<std::string, int> state;  // 0 new, 1 on the stack, 2 done
  std::vector<std::string> stack;
  std::function<Status(const StepSpec&)> visit = [&](const StepSpec& s) -> Status {
    state[s.name] = 1;
    stack.push_back(s.name);
    for (const auto& up : s.upstream()) {
      const StepSpec* u = spec.Step(up);
      if (state[up] == 1) {
        auto start = std::find(stack.begin(), stack.end(), up);
        std::vector<std::string> cycle(start, stack.end());
        cycle.push_back(up);
        return InvalidArgument("pipeline: line " + std::to_string(u->line) + ": step '" + up +
                               "' is part of a cycle: " + Join(cycle, " → ") + " (each waits for the next)");
      }
      if (state[up] == 0) TAKT_RETURN_IF_ERROR(visit(*u));
    }
    stack.pop_back();
    state[s.name] = 2;
    return Ok();
  };
  for (const auto& s : spec.steps) {
    if (state[s.name] == 0) TAKT_RETURN_IF_ERROR(visit(s));
  }
  return Ok();
}

}  // namespace

std::string_view ArtifactTypeName(ArtifactType t) {
  switch (t) {
    case ArtifactType::kTable:
      return "table";
    case ArtifactType::kModel:
      return "model";
    case ArtifactType::kMetrics:
      return "metrics";
    case ArtifactType::kFiles:
      return "files";
  }
  return "?";
}

bool RetryPolicy::Retries(std::string_view failure) const {
  return std::find(on.begin(), on.end(), failure) != on.end();
}

std::vector<std::string> StepSpec::upstream() const {
  std::set<std::string> s(depends_on.begin(), depends_on.end());
  for (const auto& in : inputs) s.insert(in.step);
  return {s.begin(), s.end()};
}

const InputRef* StepSpec::Input(std::string_view name) const {
  for (const auto& in : inputs) {
    if (in.name == name) return &in;
  }
  return nullptr;
}

const StepSpec* PipelineSpec::Step(std::string_view name) const {
  for (const auto& s : steps) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const std::vector<std::string>& StepKinds() {
  static const auto* kinds = [] {
    auto* v = new std::vector<std::string>();
    for (const auto& [k, _] : StepKeys()) v->push_back(k);
    return v;
  }();
  return *kinds;
}

std::map<std::string, ArtifactType> OutputsOf(const StepSpec& step) {
  const std::string& k = step.kind;
  if (k == "features") return {{"features", ArtifactType::kTable}, {"latest", ArtifactType::kTable}};
  if (k == "split") return {{"train", ArtifactType::kTable}, {"holdout", ArtifactType::kTable}};
  if (k == "train" || k == "tune") {
    return {{"model", ArtifactType::kModel},
            {"metrics", ArtifactType::kMetrics},
            {"validation", ArtifactType::kTable}};
  }
  if (k == "evaluate") return {{"metrics", ArtifactType::kMetrics}};
  if (k == "command") {
    std::map<std::string, ArtifactType> out = {{"model", ArtifactType::kModel},
                                               {"metrics", ArtifactType::kMetrics},
                                               {"output", ArtifactType::kFiles}};
    if (step.config.contains("outputs")) {
      for (const auto& [name, type] : step.config["outputs"].items()) {
        out[name] = type == "table" ? ArtifactType::kTable : ArtifactType::kFiles;
      }
    }
    return out;
  }
  return {};
}

std::string DefaultOutput(const StepSpec& step) {
  const std::string& k = step.kind;
  if (k == "features") return "features";
  if (k == "split") return "train";
  if (k == "train" || k == "tune" || k == "command") return "model";
  if (k == "evaluate") return "metrics";
  return "";
}

Result<double> ParseDuration(std::string_view text) {
  std::string s(text);
  double factor = 1;
  std::string num = s;
  if (s.ends_with("ms")) {
    factor = 0.001, num = s.substr(0, s.size() - 2);
  } else if (!s.empty() && (s.back() == 's' || s.back() == 'm' || s.back() == 'h' || s.back() == 'd')) {
    factor = s.back() == 's' ? 1 : s.back() == 'm' ? 60 : s.back() == 'h' ? 3600 : 86400;
    num = s.substr(0, s.size() - 1);
  }
  double d;
  if (!ParseDouble(num, &d) || d < 0 || d * factor > 30 * 86400.0) {
    return InvalidArgument("'" + s + "' is not a duration (e.g. 500ms, 90s, 10m, 2h; at most 30d)");
  }
  return d * factor;
}

Result<int64_t> ParseBytes(std::string_view text) {
  std::string s(text);
  static const std::vector<std::pair<std::string, double>> kUnits = {{"Ki", 1024.0},
                                                                     {"Mi", 1024.0 * 1024},
                                                                     {"Gi", 1024.0 * 1024 * 1024},
                                                                     {"Ti", 1024.0 * 1024 * 1024 * 1024},
                                                                     {"K", 1e3},
                                                                     {"M", 1e6},
                                                                     {"G", 1e9},
                                                                     {"T", 1e12}};
  double factor = 1;
  std::string num = s;
  for (const auto& [suffix, f] : kUnits) {
    if (s.ends_with(suffix)) {
      factor = f;
      num = s.substr(0, s.size() - suffix.size());
      break;
    }
  }
  double d;
  if (!ParseDouble(num, &d) || d <= 0 || d * factor > 9e18) {
    return InvalidArgument("'" + s + "' is not a size (e.g. 512Mi, 2Gi, 1G, 1000000)");
  }
  return static_cast<int64_t>(d * factor);
}

Result<PipelineSpec> ParsePipeline(std::string_view yaml, const Json& overrides) {
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
      static const std::set<std::string> kTop = {"name",       "project",  "description",
                                                 "parameters", "defaults", "steps"};
      std::string key = kv.first.Scalar();
      if (!kTop.contains(key)) {
        return InvalidArgument("pipeline: " + Line(kv.first) + ": unknown key '" + key +
                               "' (known: name, project, description, parameters, defaults, steps)");
      }
    }
    if (!root["name"] || !root["name"].IsScalar() || !ValidName(root["name"].Scalar())) {
      return InvalidArgument("pipeline: 'name' is required: lowercase letters, digits, '-' or '_'");
    }
    spec.name = root["name"].Scalar();
    spec.project = root["project"] && root["project"].IsScalar() ? root["project"].Scalar() : spec.name;
    if (!ValidName(spec.project)) return InvalidArgument("pipeline: 'project' must be a lowercase name");
    if (root["description"] && root["description"].IsScalar())
      spec.description = root["description"].Scalar();

    // Parameters: declared types and defaults, then the launch's overrides.
    if (const YAML::Node ps = root["parameters"]) {
      if (!ps.IsMap()) return InvalidArgument("pipeline: " + Line(ps) + ": parameters must be a mapping");
      for (const auto& kv : ps) {
        TAKT_ASSIGN_OR_RETURN(ParamSpec p, ParseParam(kv.first.Scalar(), kv.second));
        TAKT_ASSIGN_OR_RETURN(
            spec.params[p.name],
            CoerceParam(p, p.default_value, "pipeline: line " + std::to_string(p.line) + ": default"));
        spec.parameters.push_back(std::move(p));
      }
    }
    if (!overrides.is_object()) return InvalidArgument("parameters: overrides must be name=value pairs");
    for (const auto& [name, value] : overrides.items()) {
      auto p = std::find_if(spec.parameters.begin(), spec.parameters.end(),
                            [&](const ParamSpec& x) { return x.name == name; });
      if (p == spec.parameters.end()) {
        std::vector<std::string> names;
        for (const auto& x : spec.parameters) names.push_back(x.name);
        return InvalidArgument("parameter '" + name + "' is not declared by pipeline " + spec.name +
                               (names.empty() ? " (it declares none)" : " (declared: " + Join(names) + ")"));
      }
      TAKT_ASSIGN_OR_RETURN(spec.params[name], CoerceParam(*p, value, "parameter " + name));
    }

    const YAML::Node defaults = root["defaults"];
    if (defaults && !defaults.IsMap())
      return InvalidArgument("pipeline: " + Line(defaults) + ": defaults must be a mapping");
    const YAML::Node steps = root["steps"];
    if (!steps || !steps.IsSequence() || steps.size() == 0) {
      return InvalidArgument("pipeline: 'steps' must be a non-empty list");
    }

    // Pass 1: each step's own keys.
    std::vector<YAML::Node> nodes;
    for (const auto& s : steps) {
      if (!s.IsMap()) return InvalidArgument("pipeline: " + Line(s) + ": a step must be a mapping");
      StepSpec step;
      step.line = s.Mark().line + 1;
      std::string here = "pipeline: line " + std::to_string(step.line);
      if (!s["name"] || !s["name"].IsScalar() || !ValidName(s["name"].Scalar())) {
        return InvalidArgument(here + ": every step needs a 'name' (lowercase letters, digits, '-', '_')");
      }
      step.name = s["name"].Scalar();
      here += ": step '" + step.name + "'";
      if (spec.Step(step.name)) return InvalidArgument(here + ": the name is used twice");
      if (!s["kind"] || !s["kind"].IsScalar()) return InvalidArgument(here + ": missing 'kind'");
      step.kind = s["kind"].Scalar();
      auto keys = StepKeys().find(step.kind);
      if (keys == StepKeys().end()) {
        return InvalidArgument(here + ": unknown kind '" + step.kind + "' (known: " + Join(StepKinds()) +
                               ")");
      }
      auto apply_common = [&](const YAML::Node& map, bool from_defaults) -> Status {
        for (const auto& kv : map) {
          const std::string key = kv.first.Scalar();
          if (!CommonKeys().contains(key) || key == "name" || key == "kind") continue;
          if (from_defaults && key == "depends_on") continue;
          const std::string where = "pipeline: " + Line(kv.first) + ": step '" + step.name + "': " + key;
          if (key == "network" && step.kind != "command" && !from_defaults) {
            return InvalidArgument(where + ": only command steps run programs that could use the network");
          }
          TAKT_ASSIGN_OR_RETURN(Json v, Resolve(kv.second, spec.params, where));
          TAKT_RETURN_IF_ERROR(ParseCommonKey(step, key, v, where));
        }
        return Ok();
      };
      if (defaults) {
        for (const auto& kv : defaults) {
          const std::string key = kv.first.Scalar();
          if (!CommonKeys().contains(key) || key == "name" || key == "kind" || key == "depends_on") {
            return InvalidArgument(
                "pipeline: " + Line(kv.first) + ": defaults: '" + key +
                "' cannot be a default (known: retry, timeout, resources, executor, cache, "
                "on_failure, network)");
          }
        }
        TAKT_RETURN_IF_ERROR(apply_common(defaults, true));
        if (step.kind != "command") step.network = false;
      }
      TAKT_RETURN_IF_ERROR(apply_common(s, false));
      std::set<std::string> given;
      for (const auto& kv : s) {
        const std::string key = kv.first.Scalar();
        if (CommonKeys().contains(key)) continue;
        auto k = keys->second.find(key);
        const std::string where = "pipeline: " + Line(kv.first) + ": step '" + step.name + "': " + key;
        if (k == keys->second.end()) {
          return InvalidArgument(
              "pipeline: " + Line(kv.first) + ": step '" + step.name + "': unknown key '" + key + "' for a " +
              step.kind + " step (known: " + KeysOf(keys->second) +
              "; and for every step: depends_on, retry, timeout, resources, executor, cache, "
              "on_failure)");
        }
        TAKT_ASSIGN_OR_RETURN(Json v, Resolve(kv.second, spec.params, where));
        TAKT_ASSIGN_OR_RETURN(step.config[key], Check(v, k->second, where));
        given.insert(key);
      }
      for (const auto& [key, k] : keys->second) {
        if (k.required && !given.contains(key))
          return InvalidArgument(here + ": missing required key '" + key + "'");
      }
      if (step.kind == "condition") {
        auto c = ParseCondition(step.config["expression"].get<std::string>());
        if (!c) return std::unexpected(c.error().WithContext(here));
      }
      if (step.kind == "register" && step.config.contains("card")) {
        auto card = registry::ParseCard(step.config["card"].dump());
        if (!card) return std::unexpected(card.error().WithContext(here));
      }
      if ((step.kind == "train" || step.kind == "tune") && step.config.contains("validation") &&
          step.config.contains("holdout")) {
        return InvalidArgument(
            here + ": give either validation (a table) or holdout (a split of the input), not both");
      }
      if (step.resources.time_seconds == 0) step.resources.time_seconds = step.timeout_seconds;
      nodes.push_back(s);
      spec.steps.push_back(std::move(step));
    }

    // Pass 2: data references and depends_on, now that every step is known.
    for (size_t i = 0; i < spec.steps.size(); ++i) {
      StepSpec& step = spec.steps[i];
      const YAML::Node& s = nodes[i];
      const auto& keys = StepKeys().at(step.kind);
      for (const auto& [key, k] : keys) {
        if (!step.config.contains(key)) continue;
        const int line = s[key].Mark().line + 1;
        if (k.kind == Kind::kRef) {
          TAKT_RETURN_IF_ERROR(
              BindRef(spec, step, key, step.config[key].get<std::string>(), k.ref_type, line));
        } else if (k.kind == Kind::kRefMap) {
          for (const auto& [name, ref] : step.config[key].items()) {
            TAKT_RETURN_IF_ERROR(
                BindRef(spec, step, key + "." + name, ref.get<std::string>(), std::nullopt, line));
          }
        }
      }
      // A split's holdout validates what trains on its train side; a trained
      // model is evaluated on its own validation table.
      if (step.kind == "train" || step.kind == "tune") {
        const InputRef* in = step.Input("input");
        if (!step.Input("validation") && in != nullptr && spec.Step(in->step)->kind == "split" &&
            in->output == "train" && !step.config.contains("holdout")) {
          step.inputs.push_back({"validation", in->step, "holdout", ArtifactType::kTable, in->line});
        }
      }
      if (step.kind == "evaluate" && !step.Input("data")) {
        const InputRef* model = step.Input("model");
        const StepSpec* producer = spec.Step(model->step);
        if (producer->kind == "train" || producer->kind == "tune") {
          step.inputs.push_back({"data", model->step, "validation", ArtifactType::kTable, model->line});
        } else {
          return InvalidArgument("pipeline: line " + std::to_string(step.line) + ": step '" + step.name +
                                 "': the model comes from a " + producer->kind +
                                 " step: say which table to evaluate it on with data: step.output");
        }
      }
      // A condition step gates every step written after it.
      for (size_t j = 0; j < i; ++j) {
        const StepSpec& gate = spec.steps[j];
        if (gate.kind == "condition" &&
            std::find(step.depends_on.begin(), step.depends_on.end(), gate.name) == step.depends_on.end()) {
          step.depends_on.push_back(gate.name);
        }
      }
      for (const auto& dep : step.depends_on) {
        if (dep == step.name || spec.Step(dep) == nullptr) {
          return InvalidArgument(
              "pipeline: " + Line(s["depends_on"]) + ": step '" + step.name + "': depends_on '" + dep + "' " +
              (dep == step.name ? "is the step itself" : "is not a step of this pipeline"));
        }
      }
    }
    TAKT_RETURN_IF_ERROR(CheckAcyclic(spec));
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
    if (!ParseDouble(tokens[i + 2], &c.value)) {
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
