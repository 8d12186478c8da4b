// File: frame/table.h
//
// Typed columnar tables: the in-memory form of datasets, feature tables and
// scoring inputs. A Table owns its columns; a Column holds exactly one value
// vector, chosen by its type. Not thread-safe for mutation; a const Table may be
// read from many threads.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace takt::frame {

enum class Type {
  kInt64,
  kFloat64,
  kString,
  kBool,       // stored in `ints` as 0/1
  kTimestamp,  // stored in `ints` as seconds since the Unix epoch, UTC
};

// "int64", "float64", "string", "bool", "timestamp".
std::string_view TypeName(Type type);
Result<Type> ParseType(std::string_view name);
bool IsNumeric(Type type);  // int64, float64, bool, timestamp

struct Field {
  std::string name;
  Type type = Type::kString;
  bool nullable = false;

  friend bool operator==(const Field&, const Field&) = default;
};

struct Schema {
  std::vector<Field> fields;
  // Index of the field named `name`, or -1.
  int IndexOf(std::string_view name) const;

  friend bool operator==(const Schema&, const Schema&) = default;
};

struct Column {
  Field field;
  std::vector<int64_t> ints;         // kInt64, kBool, kTimestamp
  std::vector<double> doubles;       // kFloat64
  std::vector<std::string> strings;  // kString
  std::vector<uint8_t> valid;        // empty: every row valid; else 1 = valid, 0 = null

  size_t size() const;
  bool IsNull(size_t row) const { return !valid.empty() && valid[row] == 0; }
  // The value as a double (NaN for null or for strings).
  double AsDouble(size_t row) const;
  // The value rendered as text ("" for null); timestamps as ISO 8601.
  std::string AsText(size_t row) const;
};

struct Table {
  std::vector<Column> columns;

  size_t num_rows() const { return columns.empty() ? 0 : columns.front().size(); }
  size_t num_columns() const { return columns.size(); }
  Schema schema() const;
  const Column* Find(std::string_view name) const;
  Column* Find(std::string_view name);

  // Checks the invariants the rest of takt relies on: column names are
  // non-empty and unique; every column holds num_rows() values in the vector
  // its type selects and nothing in the others; `valid` is empty or
  // num_rows() long; a column that is not nullable has no nulls.
  // InvalidArgument naming the first offending column otherwise.
  Status Validate() const;
};

// ISO 8601 UTC ("2026-03-01T14:00:00Z", also without the Z, with a space instead
// of the T, or a bare date) to seconds since the epoch.
std::optional<int64_t> ParseTimestamp(std::string_view text);
std::string FormatTimestamp(int64_t seconds);

}  // namespace takt::frame
