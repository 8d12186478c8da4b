// File: http/url.h
//
// Percent-encoding (RFC 3986) of path segments and query strings. Pure
// functions, thread-safe, no Boost: usable from any module (the CLI builds
// targets with them, the server decodes with them).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/result.h"

namespace takt::http {

// Encodes every byte except the unreserved ones (A-Z a-z 0-9 - . _ ~), so the
// result is safe as one path segment or one query key or value:
// PercentEncode("weld pm/v1") == "weld%20pm%2Fv1".
std::string PercentEncode(std::string_view text);

// Decodes %XX escapes; with `plus_as_space` (query strings) '+' becomes ' '.
// A truncated or non-hex escape, or an escaped NUL byte, is InvalidArgument.
Result<std::string> PercentDecode(std::string_view text, bool plus_as_space = false);

// Parses "a=1&b=x%20y&b=z" into decoded pairs (repeated keys kept in order; a
// key without '=' maps to ""). Malformed escapes are InvalidArgument.
Result<std::multimap<std::string, std::string>> ParseQuery(std::string_view query);

// The inverse of ParseQuery: "a=1&b=x%20y" (keys in map order).
std::string BuildQuery(const std::multimap<std::string, std::string>& params);

}  // namespace takt::http
