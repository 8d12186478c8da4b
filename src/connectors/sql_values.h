// File: connectors/sql_values.h
//
// Internal to connectors: the pieces both SQL sources share. A ColumnBuilder
// accumulates one batch of one column; ParseSqlTimestamp reads the timestamp
// texts that PostgreSQL (DateStyle ISO) and SQLite produce. Not thread-safe;
// no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "frame/table.h"

namespace takt::connectors {

// Builds one column of a batch. Null rows hold a placeholder (0 or "") and a
// 0 in `valid`; `valid` stays empty while every row is valid.
class ColumnBuilder {
 public:
  explicit ColumnBuilder(frame::Field field);

  void AppendNull();
  void AppendInt(int64_t value);  // int64, bool (0/1), timestamp (epoch seconds)
  void AppendDouble(double value);
  void AppendString(std::string value);

  size_t size() const { return column_.size(); }
  const frame::Field& field() const { return column_.field; }
  // Hands over the column built so far and starts an empty one.
  frame::Column Finish();

 private:
  void MarkValid();

  frame::Column column_;
};

// One batch from the builders (each is reset).
frame::Table FinishBatch(std::vector<ColumnBuilder>& builders);

// "YYYY-MM-DD", optionally followed by 'T' or ' ' and "HH:MM[:SS[.fraction]]",
// optionally a zone ("Z", "+HH", "+HH:MM", "+HHMM", "+HH:MM:SS", also after a
// space) and PostgreSQL's " BC" suffix. Years may have more than four digits
// (PostgreSQL prints 10000-01-01). Returns epoch seconds UTC, the fraction
// truncated toward the past; nullopt if the text is not such a timestamp
// (including PostgreSQL's 'infinity').
std::optional<int64_t> ParseSqlTimestamp(std::string_view text);

// InvalidArgument if a result column has an empty name or two share one (a
// frame::Table needs distinct names): "... columns 1 and 3 are both named
// 'id'; give them distinct aliases (AS ...)".
Status CheckColumnNames(const std::vector<std::string>& names);

// The first `max_chars` bytes of `value`, with "..." if cut, for messages.
std::string Excerpt(std::string_view value, size_t max_chars = 40);

// The secrets in a conninfo string (password values, and in a malformed
// keyword string the tokens that could not be parsed), raw and
// percent-decoded, longest first. Used to scrub libpq messages.
std::vector<std::string> ConninfoSecrets(std::string_view conninfo);
// `message` with every occurrence of each secret replaced by "***".
std::string ScrubSecrets(std::string message, const std::vector<std::string>& secrets);

}  // namespace takt::connectors
