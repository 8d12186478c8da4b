// File: ml/model_json.h
//
// Internal to ml: reading fields of an XGBoost model's JSON document, shared
// by the model check (xgboost_model_check.cc) and the tree engine's loader
// (tree_engine.cc). Every failure names the field ("<where>.<key> ...").
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/json.h"
#include "core/result.h"

namespace takt::ml::internal {

// obj[key], or nullptr when obj is not an object or has no such member.
inline const Json* Member(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// XGBoost writes most parameters as strings ("4"), some as numbers.
inline std::optional<int64_t> AsInt(const Json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    int64_t out = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec == std::errc() && ptr == s.data() + s.size()) return out;
  }
  return std::nullopt;
}

// obj[key] as an integer; `fallback` when it is absent (if given).
inline Result<int64_t> IntParam(const Json& obj, std::string_view key, std::string_view where,
                                std::optional<int64_t> fallback = std::nullopt) {
  const Json* v = Member(obj, key);
  if (v == nullptr && fallback) return *fallback;
  std::optional<int64_t> i = v ? AsInt(*v) : std::nullopt;
  if (!i) {
    return InvalidArgument(std::string(where) + "." + std::string(key) + " is missing or not an integer");
  }
  return *i;
}

inline Result<const Json*> Array(const Json& obj, std::string_view key, std::string_view where) {
  const Json* v = Member(obj, key);
  if (v == nullptr || !v->is_array()) {
    return InvalidArgument(std::string(where) + "." + std::string(key) + " is missing or not an array");
  }
  return v;
}

}  // namespace takt::ml::internal
