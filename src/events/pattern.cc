// EventBridge-style event patterns: see pattern.h.
#include "events/pattern.h"

#include <cmath>

namespace takt::events {
namespace {

bool IsOperator(const Json& v) {
  if (!v.is_string()) return false;
  const std::string op = v.get<std::string>();
  return op == "=" || op == "<" || op == "<=" || op == ">" || op == ">=";
}

Status CheckNumeric(const Json& spec, const std::string& where) {
  if (!spec.is_array() || spec.empty() || spec.size() % 2 != 0 || spec.size() > 4) {
    return InvalidArgument(where +
                           ": numeric needs an operator and a number, e.g. [\">=\", 0.9] or "
                           "[\">\", 0, \"<=\", 5]");
  }
  for (size_t i = 0; i < spec.size(); i += 2) {
    if (!IsOperator(spec[i])) {
      return InvalidArgument(where + ": numeric operator " + spec[i].dump() + " is not one of = < <= > >=");
    }
    if (!spec[i + 1].is_number()) {
      return InvalidArgument(where + ": numeric bound " + spec[i + 1].dump() + " is not a number");
    }
  }
  return Ok();
}

Status CheckMatcher(const Json& m, const std::string& where) {
  if (m.is_primitive()) return Ok();  // an exact value (string, number, bool, null)
  if (!m.is_object() || m.size() != 1) {
    return InvalidArgument(where +
                           ": a matcher is a value or an object with one of prefix, anything-but, "
                           "numeric, exists");
  }
  const auto& [kind, arg] = *m.items().begin();
  if (kind == "prefix") {
    if (!arg.is_string()) return InvalidArgument(where + ": prefix must be a string");
    return Ok();
  }
  if (kind == "exists") {
    if (!arg.is_boolean()) return InvalidArgument(where + ": exists must be true or false");
    return Ok();
  }
  if (kind == "numeric") return CheckNumeric(arg, where);
  if (kind == "anything-but") {
    if (arg.is_primitive()) return Ok();
    if (arg.is_array()) {
      for (const auto& v : arg) {
        if (!v.is_primitive()) return InvalidArgument(where + ": anything-but lists values only");
      }
      return Ok();
    }
    if (arg.is_object() && arg.size() == 1 && arg.contains("prefix") && arg["prefix"].is_string())
      return Ok();
    return InvalidArgument(where + ": anything-but takes a value, a list of values or {\"prefix\": \"...\"}");
  }
  return InvalidArgument(where + ": unknown matcher '" + kind +
                         "' (known: prefix, anything-but, numeric, exists)");
}

Status Check(const Json& pattern, const std::string& where) {
  if (!pattern.is_object()) return InvalidArgument(where + " must be an object of fields");
  for (const auto& [key, value] : pattern.items()) {
    const std::string here = where + "." + key;
    if (value.is_object()) {
      if (value.empty()) return InvalidArgument(here + " is an empty object: it would match nothing useful");
      TAKT_RETURN_IF_ERROR(Check(value, here));
    } else if (value.is_array()) {
      if (value.empty()) return InvalidArgument(here + " is an empty list: it can never match");
      for (size_t i = 0; i < value.size(); ++i) {
        TAKT_RETURN_IF_ERROR(CheckMatcher(value[i], here + "[" + std::to_string(i) + "]"));
      }
    } else {
      return InvalidArgument(here + " must be a list of matchers (e.g. [" + value.dump() +
                             "]) or an object of fields");
    }
  }
  return Ok();
}

bool Compare(double v, const std::string& op, double bound) {
  if (op == "=") return v == bound;
  if (op == "<") return v < bound;
  if (op == "<=") return v <= bound;
  if (op == ">") return v > bound;
  return v >= bound;
}

bool SameValue(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
  return a == b;
}

// One matcher against one present scalar value.
bool MatchValue(const Json& m, const Json& v) {
  if (m.is_primitive()) return SameValue(m, v);
  const auto& [kind, arg] = *m.items().begin();
  if (kind == "prefix") return v.is_string() && v.get<std::string>().starts_with(arg.get<std::string>());
  if (kind == "exists") return arg.get<bool>() == !v.is_null();
  if (kind == "numeric") {
    if (!v.is_number()) return false;
    const double x = v.get<double>();
    if (std::isnan(x)) return false;
    for (size_t i = 0; i < arg.size(); i += 2) {
      if (!Compare(x, arg[i].get<std::string>(), arg[i + 1].get<double>())) return false;
    }
    return true;
  }
  // anything-but
  if (arg.is_object()) {
    return !(v.is_string() && v.get<std::string>().starts_with(arg["prefix"].get<std::string>()));
  }
  if (arg.is_array()) {
    for (const auto& x : arg) {
      if (SameValue(x, v)) return false;
    }
    return true;
  }
  return !SameValue(arg, v);
}

bool MatchField(const Json& matchers, const Json* value) {
  for (const auto& m : matchers) {
    const bool is_exists = m.is_object() && m.contains("exists");
    if (value == nullptr || value->is_null()) {
      if (is_exists && !m["exists"].get<bool>()) return true;
      continue;
    }
    if (value->is_array()) {
      if (is_exists) {
        if (m["exists"].get<bool>()) return true;
        continue;
      }
      for (const auto& element : *value) {
        if (MatchValue(m, element)) return true;
      }
      continue;
    }
    if (MatchValue(m, *value)) return true;
  }
  return false;
}

bool MatchObject(const Json& pattern, const Json& event) {
  for (const auto& [key, spec] : pattern.items()) {
    const Json* value = nullptr;
    if (event.is_object()) {
      auto it = event.find(key);
      if (it != event.end()) value = &*it;
    }
    if (spec.is_object()) {
      if (value == nullptr || !value->is_object() || !MatchObject(spec, *value)) return false;
    } else if (!MatchField(spec, value)) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<Pattern> Pattern::Parse(const Json& pattern) {
  TAKT_RETURN_IF_ERROR(Check(pattern, "pattern"));
  return Pattern(pattern);
}

Result<Pattern> Pattern::ParseText(std::string_view json_text) {
  Json j = Json::parse(json_text, nullptr, false);
  if (j.is_discarded()) return InvalidArgument("pattern is not valid JSON");
  return Parse(j);
}

bool Pattern::Matches(const Json& envelope) const { return MatchObject(json_, envelope); }

bool Pattern::Matches(const Event& event) const { return Matches(Envelope(event)); }

Json Envelope(const Event& event) {
  Json data = Json::parse(event.data_json, nullptr, false);
  if (data.is_discarded()) data = Json::object();
  return {{"specversion", "1.0"},
          {"id", event.id},
          {"source", event.source},
          {"type", event.type},
          {"subject", event.subject},
          {"time", event.time},
          {"datacontenttype", "application/json"},
          {"data", data}};
}

}  // namespace takt::events
