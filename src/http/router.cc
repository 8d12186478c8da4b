#include "http/router.h"

#include <algorithm>
#include <optional>
#include <set>

#include "http/url.h"

namespace takt::http {
namespace {

// "/a/b" -> {"a", "b"}; "/" -> {""}. `text` starts with '/'.
void SplitSegments(std::string_view text, std::vector<std::string_view>& out) {
  out.clear();
  text.remove_prefix(1);
  while (true) {
    size_t slash = text.find('/');
    out.push_back(text.substr(0, slash));
    if (slash == std::string_view::npos) break;
    text.remove_prefix(slash + 1);
  }
}

std::vector<std::string_view> SplitSegments(std::string_view text) {
  std::vector<std::string_view> out;
  SplitSegments(text, out);
  return out;
}

// Find's working memory, per thread: its vectors keep their capacity, so a
// lookup allocates nothing once the thread has seen a path that long.
struct FindScratch {
  std::vector<std::string_view> raw;
  std::vector<std::string_view> decoded;  // into the path, or into `escaped`
  std::vector<std::string> escaped;       // the segments that had percent escapes, decoded
  std::vector<int> rank;
  std::vector<int> best_rank;
};

}  // namespace

Router::Pattern Router::Parse(std::string_view pattern) {
  Pattern parsed;
  if (pattern.empty() || pattern.front() != '/') {
    parsed.error = "must start with '/'";
    return parsed;
  }
  std::set<std::string, std::less<>> names;
  std::vector<std::string_view> parts = SplitSegments(pattern);
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string_view part = parts[i];
    bool opens = part.find('{') != std::string_view::npos;
    bool closes = part.find('}') != std::string_view::npos;
    if (!opens && !closes) {
      parsed.segments.push_back({Segment::kLiteral, std::string(part)});
      continue;
    }
    if (part.size() < 3 || part.front() != '{' || part.back() != '}' ||
        part.substr(1, part.size() - 2).find_first_of("{}") != std::string_view::npos) {
      parsed.error = "segment '" + std::string(part) + "': braces must enclose a whole segment";
      return parsed;
    }
    std::string_view name = part.substr(1, part.size() - 2);
    Segment::Kind kind = Segment::kParam;
    if (name.ends_with("...")) {
      name.remove_suffix(3);
      kind = Segment::kRest;
      if (i + 1 != parts.size()) {
        parsed.error = "'{" + std::string(name) + "...}' must be the last segment";
        return parsed;
      }
    }
    if (name.empty()) {
      parsed.error = "segment '" + std::string(part) + "': empty parameter name";
      return parsed;
    }
    if (!names.emplace(name).second) {
      parsed.error = "parameter '" + std::string(name) + "' appears twice";
      return parsed;
    }
    parsed.segments.push_back({kind, std::string(name)});
  }
  return parsed;
}

void Router::Add(Route route) {
  Pattern pattern = Parse(route.pattern);
  size_t index = routes_.size();
  if (!pattern.segments.empty() && pattern.segments.front().kind == Segment::kLiteral) {
    by_first_literal_[pattern.segments.front().text].push_back(index);
  } else {
    first_not_literal_.push_back(index);
  }
  patterns_.push_back(std::move(pattern));
  routes_.push_back(std::move(route));
}

Match Router::Find(std::string_view method, std::string_view path,
                   std::map<std::string, std::string>* params) const {
  Match match;
  if (path.empty() || path.front() != '/') return match;
  thread_local FindScratch scratch;
  std::vector<std::string_view>& raw = scratch.raw;
  std::vector<std::string_view>& decoded = scratch.decoded;
  SplitSegments(path, raw);
  decoded.clear();
  // Views into `escaped` are taken only after it has all its strings.
  size_t escapes = 0;
  for (std::string_view segment : raw) escapes += segment.find('%') != std::string_view::npos;
  if (scratch.escaped.size() < escapes) scratch.escaped.resize(escapes);
  for (size_t i = 0, e = 0; i < raw.size(); ++i) {
    if (raw[i].find('%') == std::string_view::npos) {
      decoded.push_back(raw[i]);
      continue;
    }
    auto d = PercentDecode(raw[i]);
    if (!d) return match;
    scratch.escaped[e] = std::move(*d);
    decoded.push_back(scratch.escaped[e++]);
  }

  // Rank of a match, compared lexicographically: per segment 2 literal, 1 {name}, 0 {rest...}.
  // Patterns are compared without collecting parameters; only the best match's are.
  std::vector<int>& best_rank = scratch.best_rank;
  std::vector<int>& rank = scratch.rank;
  best_rank.clear();
  size_t best = routes_.size();
  std::vector<std::string> other_methods;
  // Only routes whose first segment can match: the literal's, and the ones
  // starting with a parameter, merged back into the order they were added.
  static const std::vector<size_t> kNone;
  auto literal = by_first_literal_.find(decoded.front());
  const std::vector<size_t>& a = literal == by_first_literal_.end() ? kNone : literal->second;
  const std::vector<size_t>& b = first_not_literal_;
  for (size_t ia = 0, ib = 0; ia < a.size() || ib < b.size();) {
    size_t r = ib == b.size() || (ia < a.size() && a[ia] < b[ib]) ? a[ia++] : b[ib++];
    const Pattern& pattern = patterns_[r];
    if (!pattern.error.empty()) continue;
    const auto& segments = pattern.segments;
    bool rest = !segments.empty() && segments.back().kind == Segment::kRest;
    if (rest ? raw.size() < segments.size() : raw.size() != segments.size()) continue;
    rank.clear();
    bool ok = true;
    for (size_t i = 0; i < segments.size() && ok; ++i) {
      const Segment& segment = segments[i];
      if (segment.kind == Segment::kRest) {
        rank.push_back(0);
      } else if (segment.kind == Segment::kLiteral) {
        ok = decoded[i] == segment.text;
        rank.push_back(2);
      } else {
        ok = !decoded[i].empty();
        rank.push_back(1);
      }
    }
    if (!ok) continue;
    if (rest) {
      // The remainder of the raw path from the rest segment on, decoded as a whole, must not be empty.
      size_t offset = static_cast<size_t>(raw[segments.size() - 1].data() - path.data());
      auto remainder = PercentDecode(path.substr(offset));
      if (!remainder || remainder->empty()) continue;
    }
    const Route& route = routes_[r];
    if (route.method != method) {
      if (std::find(other_methods.begin(), other_methods.end(), route.method) == other_methods.end()) {
        other_methods.push_back(route.method);
      }
      continue;
    }
    if (match.route == nullptr || rank > best_rank) {
      match.route = &route;
      best_rank = rank;
      best = r;
    }
  }
  if (match.route != nullptr) {
    if (params != nullptr) {
      params->clear();
      const auto& segments = patterns_[best].segments;
      for (size_t i = 0; i < segments.size(); ++i) {
        if (segments[i].kind == Segment::kParam) {
          (*params)[segments[i].text] = std::string(decoded[i]);
        } else if (segments[i].kind == Segment::kRest) {
          size_t offset = static_cast<size_t>(raw[i].data() - path.data());
          (*params)[segments[i].text] = *PercentDecode(path.substr(offset));
        }
      }
    }
    return match;
  }
  if (!other_methods.empty()) {
    match.method_not_allowed = true;
    for (const std::string& m : other_methods) {
      if (!match.allow.empty()) match.allow += ", ";
      match.allow += m;
    }
  }
  return match;
}

Status Router::Validate() const {
  std::set<std::pair<std::string, std::string>> seen;
  for (size_t r = 0; r < routes_.size(); ++r) {
    const Route& route = routes_[r];
    std::string name = route.method + " " + route.pattern;
    if (!patterns_[r].error.empty()) return InvalidArgument("route " + name + ": " + patterns_[r].error);
    if (route.method.empty()) return InvalidArgument("route " + name + ": no method");
    if (!route.handler && !route.async_handler) return InvalidArgument("route " + name + ": no handler");
    if (route.handler && route.async_handler)
      return InvalidArgument("route " + name + ": both a handler and an async handler");
    if (route.async_handler && route.stream_body)
      return InvalidArgument("route " + name + ": an async handler cannot stream its body");
    if (!route.is_public && route.action.empty()) {
      return InvalidArgument("route " + name + ": a non-public route must declare its authorization action");
    }
    // Two patterns that differ only in parameter names are the same route.
    std::string shape;
    for (const Segment& s : patterns_[r].segments) {
      shape += '/';
      shape += s.kind == Segment::kLiteral ? s.text : s.kind == Segment::kParam ? "{}" : "{...}";
    }
    if (!seen.emplace(route.method, shape).second)
      return InvalidArgument("route " + name + " is declared twice");
  }
  return Ok();
}

}  // namespace takt::http
