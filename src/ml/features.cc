#include "ml/features.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <utility>

namespace takt::ml {
namespace {

using frame::Column;
using frame::Table;
using frame::Type;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool UsesInts(Type t) { return t == Type::kInt64 || t == Type::kBool || t == Type::kTimestamp; }

// Row order of a table sorted by (entity, time), stable, and where each
// entity's rows begin and end in that order.
struct EntityOrder {
  std::vector<size_t> rows;
  std::vector<std::pair<size_t, size_t>> segments;  // [begin, end) into `rows`
};

// A sort key column: integers, doubles or strings, never null or NaN.
struct Key {
  std::vector<int64_t> ints;
  std::vector<double> doubles;
  const std::vector<std::string>* strings = nullptr;
  enum { kInts, kDoubles, kStrings } kind = kInts;

  int Compare(size_t a, size_t b) const {
    switch (kind) {
      case kInts:
        return ints[a] < ints[b] ? -1 : (ints[b] < ints[a] ? 1 : 0);
      case kDoubles:
        return doubles[a] < doubles[b] ? -1 : (doubles[b] < doubles[a] ? 1 : 0);
      case kStrings: {
        const int c = (*strings)[a].compare((*strings)[b]);
        return c < 0 ? -1 : (c > 0 ? 1 : 0);
      }
    }
    return 0;
  }
};

Result<const Column*> FindColumn(const Table& t, std::string_view name, std::string_view role) {
  if (name.empty()) return InvalidArgument(std::string(role) + " column is not set");
  const Column* c = t.Find(name);
  if (c == nullptr) {
    return InvalidArgument(std::string(role) + " column '" + std::string(name) + "' is not in the table");
  }
  return c;
}

Status CheckNotNull(const Column& c, std::string_view role) {
  for (size_t i = 0; i < c.valid.size(); ++i) {
    if (c.valid[i] == 0) {
      return InvalidArgument(std::string(role) + " column '" + c.field.name + "' is null at row " +
                             std::to_string(i + 1));
    }
  }
  return Ok();
}

Result<Key> EntityKey(const Column& c) {
  TAKT_RETURN_IF_ERROR(CheckNotNull(c, "entity"));
  Key k;
  if (c.field.type == Type::kString) {
    k.kind = Key::kStrings;
    k.strings = &c.strings;
  } else if (UsesInts(c.field.type)) {
    k.kind = Key::kInts;
    k.ints = c.ints;
  } else {
    k.kind = Key::kDoubles;
    k.doubles = c.doubles;
    for (size_t i = 0; i < k.doubles.size(); ++i) {
      if (std::isnan(k.doubles[i])) {
        return InvalidArgument("entity column '" + c.field.name + "' is NaN at row " + std::to_string(i + 1));
      }
    }
  }
  return k;
}

Result<Key> TimeKey(const Column& c) {
  TAKT_RETURN_IF_ERROR(CheckNotNull(c, "time"));
  Key k;
  switch (c.field.type) {
    case Type::kTimestamp:
    case Type::kInt64:
      k.kind = Key::kInts;
      k.ints = c.ints;
      return k;
    case Type::kFloat64:
      k.kind = Key::kDoubles;
      k.doubles = c.doubles;
      for (size_t i = 0; i < k.doubles.size(); ++i) {
        if (std::isnan(k.doubles[i])) {
          return InvalidArgument("time column '" + c.field.name + "' is NaN at row " + std::to_string(i + 1));
        }
      }
      return k;
    case Type::kString:
      k.kind = Key::kInts;
      k.ints.reserve(c.strings.size());
      for (size_t i = 0; i < c.strings.size(); ++i) {
        auto t = frame::ParseTimestamp(c.strings[i]);
        if (!t) {
          return InvalidArgument("time column '" + c.field.name + "' at row " + std::to_string(i + 1) +
                                 ": '" + c.strings[i] + "' is not a timestamp");
        }
        k.ints.push_back(*t);
      }
      return k;
    case Type::kBool:
      break;
  }
  return InvalidArgument("time column '" + c.field.name + "' is " +
                         std::string(frame::TypeName(c.field.type)) + "; expected a timestamp or a number");
}

Result<EntityOrder> SortByEntityAndTime(const Table& t, std::string_view entity_column,
                                        std::string_view time_column) {
  TAKT_ASSIGN_OR_RETURN(const Column* entity_col, FindColumn(t, entity_column, "entity"));
  TAKT_ASSIGN_OR_RETURN(const Column* time_col, FindColumn(t, time_column, "time"));
  TAKT_ASSIGN_OR_RETURN(Key entity, EntityKey(*entity_col));
  TAKT_ASSIGN_OR_RETURN(Key time, TimeKey(*time_col));
  EntityOrder order;
  const size_t n = t.num_rows();
  order.rows.resize(n);
  for (size_t i = 0; i < n; ++i) order.rows[i] = i;
  std::stable_sort(order.rows.begin(), order.rows.end(), [&](size_t a, size_t b) {
    const int c = entity.Compare(a, b);
    return c != 0 ? c < 0 : time.Compare(a, b) < 0;
  });
  size_t begin = 0;
  for (size_t i = 1; i <= n; ++i) {
    if (i == n || entity.Compare(order.rows[i - 1], order.rows[i]) != 0) {
      order.segments.emplace_back(begin, i);
      begin = i;
    }
  }
  return order;
}

// The rows of `c` in the order given, keeping type and nullability.
Column Gather(const Column& c, const std::vector<size_t>& rows) {
  Column out;
  out.field = c.field;
  if (c.field.type == Type::kString) {
    out.strings.reserve(rows.size());
    for (size_t r : rows) out.strings.push_back(c.strings[r]);
  } else if (UsesInts(c.field.type)) {
    out.ints.reserve(rows.size());
    for (size_t r : rows) out.ints.push_back(c.ints[r]);
  } else {
    out.doubles.reserve(rows.size());
    for (size_t r : rows) out.doubles.push_back(c.doubles[r]);
  }
  if (!c.valid.empty()) {
    out.valid.reserve(rows.size());
    for (size_t r : rows) out.valid.push_back(c.valid[r]);
  }
  return out;
}

// The values of a numeric column in the order given; NaN for null.
std::vector<double> NumericValues(const Column& c, const std::vector<size_t>& rows) {
  std::vector<double> v(rows.size());
  const bool ints = UsesInts(c.field.type);
  for (size_t i = 0; i < rows.size(); ++i) {
    const size_t r = rows[i];
    if (c.IsNull(r)) {
      v[i] = kNaN;
    } else {
      v[i] = ints ? static_cast<double>(c.ints[r]) : c.doubles[r];
    }
  }
  return v;
}

Column FloatColumn(std::string name, size_t rows) {
  Column c;
  c.field.name = std::move(name);
  c.field.type = Type::kFloat64;
  c.doubles.resize(rows);
  return c;
}

struct WindowStats {
  double mean = kNaN, std = kNaN, min = kNaN, max = kNaN, slope = kNaN;
};

// Statistics of the non-NaN values of y[0..n), x being the position.
WindowStats Stats(const double* y, size_t n) {
  WindowStats s;
  size_t count = 0;
  double sum = 0, sum_x = 0;
  double lo = std::numeric_limits<double>::infinity();
  double hi = -lo;
  for (size_t j = 0; j < n; ++j) {
    if (std::isnan(y[j])) continue;
    ++count;
    sum += y[j];
    sum_x += static_cast<double>(j);
    lo = std::min(lo, y[j]);
    hi = std::max(hi, y[j]);
  }
  if (count == 0) return s;
  const double mean = sum / static_cast<double>(count);
  const double mean_x = sum_x / static_cast<double>(count);
  double sq = 0, sxy = 0, sxx = 0;
  for (size_t j = 0; j < n; ++j) {
    if (std::isnan(y[j])) continue;
    const double dy = y[j] - mean;
    const double dx = static_cast<double>(j) - mean_x;
    sq += dy * dy;
    sxy += dx * dy;
    sxx += dx * dx;
  }
  s.mean = mean;
  s.std = std::sqrt(sq / static_cast<double>(count));
  s.min = lo;
  s.max = hi;
  s.slope = sxx > 0 ? sxy / sxx : 0.0;
  return s;
}

}  // namespace

Result<Table> ComputeRollingFeatures(const Table& input, const FeatureSpec& spec) {
  TAKT_RETURN_IF_ERROR(input.Validate());
  // Resolve and check every column before doing any work.
  TAKT_RETURN_IF_ERROR(FindColumn(input, spec.entity_column, "entity"));
  TAKT_RETURN_IF_ERROR(FindColumn(input, spec.time_column, "time"));
  std::vector<const Column*> keep;
  for (const std::string& name : spec.keep_columns) {
    TAKT_ASSIGN_OR_RETURN(const Column* c, FindColumn(input, name, "keep"));
    keep.push_back(c);
  }
  const Column* label = nullptr;
  if (!spec.label_column.empty()) {
    TAKT_ASSIGN_OR_RETURN(label, FindColumn(input, spec.label_column, "label"));
  }
  std::vector<const Column*> features;
  if (spec.columns.empty()) {
    for (const Column& c : input.columns) {
      const std::string& name = c.field.name;
      if (name == spec.entity_column || name == spec.time_column || name == spec.label_column) continue;
      if (std::find(spec.keep_columns.begin(), spec.keep_columns.end(), name) != spec.keep_columns.end())
        continue;
      if (!frame::IsNumeric(c.field.type) || c.field.type == Type::kTimestamp) continue;
      features.push_back(&c);
    }
  } else {
    for (const std::string& name : spec.columns) {
      TAKT_ASSIGN_OR_RETURN(const Column* c, FindColumn(input, name, "feature"));
      if (!frame::IsNumeric(c->field.type)) {
        return InvalidArgument("feature column '" + name + "' is " +
                               std::string(frame::TypeName(c->field.type)) + ", not numeric");
      }
      features.push_back(c);
    }
  }
  for (int w : spec.windows) {
    if (w < 1) return InvalidArgument("window " + std::to_string(w) + " is not a positive number of rows");
  }
  static constexpr const char* kStatNames[] = {"mean", "std", "min", "max", "slope", "delta"};
  std::vector<std::string> names;
  for (const Column* c : keep) names.push_back(c->field.name);
  if (label != nullptr) names.push_back(label->field.name);
  for (const Column* c : features) {
    names.push_back(c->field.name);
    for (int w : spec.windows) {
      for (const char* stat : kStatNames)
        names.push_back(c->field.name + "_" + stat + "_" + std::to_string(w));
    }
  }
  std::set<std::string_view> seen;
  for (const std::string& name : names) {
    if (!seen.insert(name).second) {
      return InvalidArgument("output column '" + name +
                             "' would appear twice; a column is kept, labelled or aggregated at most once");
    }
  }

  TAKT_ASSIGN_OR_RETURN(EntityOrder order, SortByEntityAndTime(input, spec.entity_column, spec.time_column));
  const size_t n = order.rows.size();

  Table out;
  out.columns.reserve(names.size());
  for (const Column* c : keep) out.columns.push_back(Gather(*c, order.rows));
  if (label != nullptr) out.columns.push_back(Gather(*label, order.rows));
  for (const Column* c : features) {
    const std::vector<double> y = NumericValues(*c, order.rows);
    Column current = FloatColumn(c->field.name, n);
    current.doubles = y;
    out.columns.push_back(std::move(current));
    for (int w : spec.windows) {
      const size_t base = out.columns.size();
      for (const char* stat : kStatNames) {
        out.columns.push_back(FloatColumn(c->field.name + "_" + stat + "_" + std::to_string(w), n));
      }
      const auto window = static_cast<size_t>(w);
      for (const auto& [begin, end] : order.segments) {
        for (size_t i = begin; i < end; ++i) {
          const size_t first = i + 1 - begin > window ? i + 1 - window : begin;
          const WindowStats s = Stats(&y[first], i + 1 - first);
          out.columns[base + 0].doubles[i] = s.mean;
          out.columns[base + 1].doubles[i] = s.std;
          out.columns[base + 2].doubles[i] = s.min;
          out.columns[base + 3].doubles[i] = s.max;
          out.columns[base + 4].doubles[i] = s.slope;
          out.columns[base + 5].doubles[i] = y[i] - s.mean;  // NaN if either is
        }
      }
    }
  }
  return out;
}

Result<Table> LatestPerEntity(const Table& features, std::string_view entity_column,
                              std::string_view time_column) {
  TAKT_RETURN_IF_ERROR(features.Validate());
  TAKT_ASSIGN_OR_RETURN(EntityOrder order, SortByEntityAndTime(features, entity_column, time_column));
  std::vector<size_t> latest;
  latest.reserve(order.segments.size());
  for (const auto& [begin, end] : order.segments) latest.push_back(order.rows[end - 1]);
  Table out;
  out.columns.reserve(features.columns.size());
  for (const Column& c : features.columns) out.columns.push_back(Gather(c, latest));
  return out;
}

}  // namespace takt::ml
