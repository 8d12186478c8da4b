#include "tune/search_space.h"

#include <cmath>
#include <string_view>

namespace takt::tune {
namespace {

// Integers beyond this are not exact as doubles.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

std::unexpected<Error> SpaceError(std::string_view name, const std::string& why) {
  return InvalidArgument("search space: " + std::string(name) + ": " + why);
}

std::unexpected<Error> PointError(std::string_view name, const std::string& why) {
  return InvalidArgument("point: " + std::string(name) + ": " + why);
}

std::string TypeOf(const Json& j) { return std::string(j.type_name()); }

// "0.01", "3", "\"gbtree\"": a value as it would appear in the spec.
std::string Show(const Json& j) { return j.dump(); }

std::string ShowNumber(double v) {
  Json j = v;
  if (std::floor(v) == v && std::abs(v) < kMaxExactInteger) j = static_cast<int64_t>(v);
  return j.dump();
}

bool IsIntegral(const Json& j) {
  if (j.is_number_integer()) return true;
  if (!j.is_number_float()) return false;
  const double v = j.get<double>();
  return std::isfinite(v) && std::floor(v) == v;
}

Result<double> Bound(const Json& spec, std::string_view name, const char* key) {
  auto it = spec.find(key);
  if (it == spec.end()) return SpaceError(name, std::string("missing \"") + key + "\"");
  if (!it->is_number()) {
    return SpaceError(name, std::string("\"") + key + "\" must be a number, got " + TypeOf(*it));
  }
  const double v = it->get<double>();
  if (!std::isfinite(v)) return SpaceError(name, std::string("\"") + key + "\" must be finite");
  return v;
}

Status CheckKeys(const Json& spec, std::string_view name, std::string_view type,
                 std::initializer_list<std::string_view> allowed) {
  for (auto it = spec.begin(); it != spec.end(); ++it) {
    bool known = false;
    for (std::string_view a : allowed) known = known || it.key() == a;
    if (known) continue;
    std::string list;
    for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    return SpaceError(
        name, "unknown key \"" + it.key() + "\" (a " + std::string(type) + " dimension takes " + list + ")");
  }
  return Ok();
}

Result<Dimension> ParseDimension(const std::string& name, const Json& spec) {
  if (name.empty()) return InvalidArgument("search space: a parameter name is empty");
  if (!spec.is_object()) {
    return SpaceError(
        name, "must be an object like {\"type\": \"uniform\", \"low\": 0, \"high\": 1}, got " + TypeOf(spec));
  }
  auto type_it = spec.find("type");
  if (type_it == spec.end()) return SpaceError(name, "missing \"type\" (uniform, loguniform, int or choice)");
  if (!type_it->is_string()) return SpaceError(name, "\"type\" must be a string, got " + TypeOf(*type_it));
  const std::string type = type_it->get<std::string>();

  Dimension d;
  d.name = name;
  if (type == "choice") {
    d.kind = Dimension::Kind::kChoice;
    TAKT_RETURN_IF_ERROR(CheckKeys(spec, name, type, {"type", "values"}));
    auto values = spec.find("values");
    if (values == spec.end()) return SpaceError(name, "choice needs \"values\", a non-empty array");
    if (!values->is_array()) return SpaceError(name, "\"values\" must be an array, got " + TypeOf(*values));
    if (values->empty()) return SpaceError(name, "choice has no values");
    for (size_t i = 0; i < values->size(); ++i) {
      const Json& v = (*values)[i];
      const std::string where = "values[" + std::to_string(i) + "]";
      if (!v.is_string() && !v.is_number() && !v.is_boolean()) {
        return SpaceError(name, where + " must be a string, number or bool, got " + TypeOf(v));
      }
      if (v.is_number_float() && !std::isfinite(v.get<double>())) {
        return SpaceError(name, where + " must be finite");
      }
      for (size_t j = 0; j < i; ++j) {
        if ((*values)[j] == v) {
          return SpaceError(name, where + " (" + Show(v) + ") repeats values[" + std::to_string(j) + "]");
        }
      }
      d.values.push_back(v);
    }
    return d;
  }

  if (type == "uniform") {
    d.kind = Dimension::Kind::kUniform;
  } else if (type == "loguniform") {
    d.kind = Dimension::Kind::kLogUniform;
  } else if (type == "int") {
    d.kind = Dimension::Kind::kInt;
  } else {
    return SpaceError(name, "unknown type \"" + type + "\" (expected uniform, loguniform, int or choice)");
  }
  TAKT_RETURN_IF_ERROR(CheckKeys(spec, name, type, {"type", "low", "high"}));
  TAKT_ASSIGN_OR_RETURN(d.low, Bound(spec, name, "low"));
  TAKT_ASSIGN_OR_RETURN(d.high, Bound(spec, name, "high"));
  if (d.kind == Dimension::Kind::kInt) {
    for (const char* key : {"low", "high"}) {
      const Json& v = spec[key];
      if (!IsIntegral(v))
        return SpaceError(name, std::string("int bounds must be integers, got ") + key + " = " + Show(v));
      if (std::abs(v.get<double>()) > kMaxExactInteger) {
        return SpaceError(name, std::string("int bound ") + key + " = " + Show(v) + " is beyond ±2^53");
      }
    }
  }
  if (d.low >= d.high) {
    return SpaceError(name,
                      "low (" + ShowNumber(d.low) + ") must be less than high (" + ShowNumber(d.high) + ")");
  }
  if (d.kind == Dimension::Kind::kLogUniform && d.low <= 0) {
    return SpaceError(name, "loguniform needs low > 0, got " + ShowNumber(d.low));
  }
  return d;
}

Status ValidateValue(const Dimension& d, const Json& v) {
  switch (d.kind) {
    case Dimension::Kind::kChoice: {
      for (const Json& option : d.values) {
        if (option == v) return Ok();
      }
      return PointError(d.name, Show(v) + " is not one of " + Json(d.values).dump());
    }
    case Dimension::Kind::kInt: {
      if (!v.is_number()) return PointError(d.name, "must be an integer, got " + TypeOf(v));
      if (!IsIntegral(v)) return PointError(d.name, "must be an integer, got " + Show(v));
      const double x = v.get<double>();
      if (x < d.low || x > d.high) {
        return PointError(d.name, Show(v) + " is outside " + ShowNumber(d.low) + ".." + ShowNumber(d.high));
      }
      return Ok();
    }
    case Dimension::Kind::kUniform:
    case Dimension::Kind::kLogUniform: {
      if (!v.is_number()) return PointError(d.name, "must be a number, got " + TypeOf(v));
      const double x = v.get<double>();
      if (!(x >= d.low && x <= d.high)) {  // also rejects NaN
        return PointError(d.name,
                          Show(v) + " is outside [" + ShowNumber(d.low) + ", " + ShowNumber(d.high) + "]");
      }
      return Ok();
    }
  }
  return Ok();
}

}  // namespace

std::string_view KindName(Dimension::Kind kind) {
  switch (kind) {
    case Dimension::Kind::kUniform:
      return "uniform";
    case Dimension::Kind::kLogUniform:
      return "loguniform";
    case Dimension::Kind::kInt:
      return "int";
    case Dimension::Kind::kChoice:
      return "choice";
  }
  return "?";
}

Result<SearchSpace> SearchSpace::FromJson(const Json& space) {
  if (!space.is_object()) {
    return InvalidArgument("search space: must be an object of parameter name to dimension, got " +
                           TypeOf(space));
  }
  if (space.empty()) return InvalidArgument("search space: has no parameters");
  SearchSpace out;
  for (auto it = space.begin(); it != space.end(); ++it) {
    TAKT_ASSIGN_OR_RETURN(Dimension d, ParseDimension(it.key(), it.value()));
    out.dimensions_.push_back(std::move(d));
  }
  return out;
}

Status SearchSpace::Validate(const Json& point) const {
  if (!point.is_object()) return InvalidArgument("point: must be an object, got " + TypeOf(point));
  for (const Dimension& d : dimensions_) {
    auto it = point.find(d.name);
    if (it == point.end()) return InvalidArgument("point: missing parameter " + d.name);
    TAKT_RETURN_IF_ERROR(ValidateValue(d, *it));
  }
  if (point.size() != dimensions_.size()) {
    for (auto it = point.begin(); it != point.end(); ++it) {
      bool known = false;
      for (const Dimension& d : dimensions_) known = known || d.name == it.key();
      if (!known) return InvalidArgument("point: unknown parameter " + it.key());
    }
  }
  return Ok();
}

}  // namespace takt::tune
