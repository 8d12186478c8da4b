// File: events/pattern.h
//
// Event patterns in the style of Amazon EventBridge, matched against an
// event's CloudEvents 1.0 envelope ({"id", "source", "specversion", "type",
// "subject", "time", "data": {...}}):
//
//   {"type": ["io.takt.model.version.approved"],
//    "data": {"group": [{"prefix": "weld-"}],
//             "metrics": {"auc": [{"numeric": [">=", 0.9]}]},
//             "stage": [{"anything-but": ["prod"]}],
//             "comment": [{"exists": false}]}}
//
// A pattern is an object. A key holding an object descends into the event's
// field of that name; a key holding an array lists matchers, any of which may
// match (OR); all keys must match (AND). Matchers:
//   "x", 3, true, null        the field equals it (same JSON type)
//   {"prefix": "weld-"}       a string starting with it
//   {"anything-but": v}       present and not v (a value, a list of values, or {"prefix": p})
//   {"numeric": [op, n, ...]} a number within one or two bounds; op is = < <= > >=
//   {"exists": true|false}    the field is present (not null) or absent
// When the event's field is an array, the matchers apply to its elements and
// one matching element suffices. A field that is absent matches only
// {"exists": false}.
//
// Parse checks the whole pattern up front; the errors name the path
// ("pattern.data.metrics.auc[0]: numeric needs an operator and a number"),
// so a bad rule is refused when it is written, not when an event arrives.
#pragma once

#include <string>
#include <string_view>

#include "core/json.h"
#include "core/result.h"
#include "events/events.h"

namespace takt::events {

class Pattern {
 public:
  static Result<Pattern> Parse(const Json& pattern);
  static Result<Pattern> ParseText(std::string_view json_text);

  bool Matches(const Json& envelope) const;
  bool Matches(const Event& event) const;

  const Json& json() const { return json_; }

 private:
  explicit Pattern(Json j) : json_(std::move(j)) {}
  Json json_;
};

// The CloudEvents 1.0 envelope of an outbox event (data parsed as JSON).
Json Envelope(const Event& event);

}  // namespace takt::events
