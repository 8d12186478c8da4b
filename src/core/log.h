// File: core/log.h
//
// Structured logging on top of spdlog: human text or JSON lines (one object a
// line, message escaped). Call InitLogging once from main; afterwards use
// spdlog::info(...) and friends anywhere. Never log secrets or data values.
#pragma once

#include <string_view>

#include "core/result.h"

namespace takt {

// format: "text" or "json"; level: "debug", "info", "warn", "error".
Status InitLogging(std::string_view format, std::string_view level);

}  // namespace takt
