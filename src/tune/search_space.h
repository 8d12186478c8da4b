// File: tune/search_space.h
//
// The hyperparameters a `tune` step searches over, from the spec's JSON:
//
//   {"eta":       {"type": "loguniform", "low": 0.01, "high": 0.3},
//    "max_depth": {"type": "int", "low": 3, "high": 10},          // inclusive
//    "subsample": {"type": "uniform", "low": 0.5, "high": 1.0},
//    "booster":   {"type": "choice", "values": ["gbtree", "dart"]}}
//
// uniform and loguniform are real intervals [low, high] (loguniform is uniform
// in log space and needs low > 0); int is the integers low..high; choice picks
// one of `values` (strings, numbers or bools, no repeats). A point in the space
// is a JSON object {name: value}: ints as JSON integers, reals as numbers,
// choices as the value itself.
//
// Errors: FromJson and Validate return InvalidArgument naming the parameter and
// what is wrong ("search space: eta: loguniform needs low > 0, got 0").
//
// Thread safety: a SearchSpace is an immutable value.
#pragma once

#include <string>
#include <vector>

#include "core/json.h"
#include "core/result.h"

namespace takt::tune {

struct Dimension {
  enum class Kind { kUniform, kLogUniform, kInt, kChoice };

  std::string name;
  Kind kind = Kind::kUniform;
  double low = 0;            // uniform, loguniform, int (an integral value)
  double high = 0;           // likewise; low < high
  std::vector<Json> values;  // choice only; non-empty, distinct
};

class SearchSpace {
 public:
  // Dimensions come out ordered by name. An empty object, a dimension that is
  // not an object, an unknown type or key, missing or non-finite bounds,
  // low >= high, loguniform with low <= 0, non-integral int bounds (or beyond
  // ±2^53), an empty, repeated or non-scalar choice are all InvalidArgument.
  static Result<SearchSpace> FromJson(const Json& space);

  const std::vector<Dimension>& dimensions() const { return dimensions_; }

  // OK if `point` is an object holding exactly the space's parameters, each
  // inside its dimension (a real within [low, high], an integer within the int
  // range, one of the choice values); otherwise InvalidArgument naming the
  // parameter ("point: max_depth: 11 is outside 3..10").
  Status Validate(const Json& point) const;

 private:
  SearchSpace() = default;

  std::vector<Dimension> dimensions_;
};

// "uniform", "loguniform", "int", "choice".
std::string_view KindName(Dimension::Kind kind);

}  // namespace takt::tune
