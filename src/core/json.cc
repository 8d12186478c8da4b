#include "core/json.h"

#include <string>

namespace takt {

Result<Json> ParseJson(std::string_view text, std::string_view what) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    return InvalidArgument(std::string(what) + ": invalid JSON at byte " + std::to_string(e.byte));
  } catch (const std::exception& e) {
    return InvalidArgument(std::string(what) + ": invalid JSON");
  }
}

Result<std::string> GetString(const Json& obj, std::string_view key, std::string_view what) {
  if (!obj.is_object()) return InvalidArgument(std::string(what) + ": expected a JSON object");
  auto it = obj.find(key);
  if (it == obj.end())
    return InvalidArgument(std::string(what) + ": missing field '" + std::string(key) + "'");
  if (!it->is_string())
    return InvalidArgument(std::string(what) + ": field '" + std::string(key) + "' must be a string");
  return it->get<std::string>();
}

Result<double> GetNumber(const Json& obj, std::string_view key, std::string_view what) {
  if (!obj.is_object()) return InvalidArgument(std::string(what) + ": expected a JSON object");
  auto it = obj.find(key);
  if (it == obj.end())
    return InvalidArgument(std::string(what) + ": missing field '" + std::string(key) + "'");
  if (!it->is_number())
    return InvalidArgument(std::string(what) + ": field '" + std::string(key) + "' must be a number");
  return it->get<double>();
}

}  // namespace takt
