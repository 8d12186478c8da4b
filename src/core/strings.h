// File: core/strings.h
//
// Small string helpers over std::string_view. Views point into the input;
// keep it alive while they are used.
#pragma once

#include <string_view>
#include <vector>

namespace takt {

// The pieces of `s` between `sep`s, empty ones included: "a,,b" -> a, "", b;
// "" -> one empty piece.
std::vector<std::string_view> SplitView(std::string_view s, char sep);

}  // namespace takt
