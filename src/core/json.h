// File: core/json.h
//
// nlohmann::json with Result-returning parsing. Heavy: include it only from .cc
// files, never from a module's public header.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "core/result.h"

namespace takt {

using Json = nlohmann::json;

// Parses `text` as JSON; a syntax error becomes InvalidArgument naming `what`
// and the byte offset ("request body: invalid JSON at byte 17: ...").
Result<Json> ParseJson(std::string_view text, std::string_view what);

// Typed member access with errors that name the member.
Result<std::string> GetString(const Json& obj, std::string_view key, std::string_view what);
Result<double> GetNumber(const Json& obj, std::string_view key, std::string_view what);

}  // namespace takt
