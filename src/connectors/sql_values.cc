#include "connectors/sql_values.h"

#include <unordered_map>
#include <utility>

namespace takt::connectors {

ColumnBuilder::ColumnBuilder(frame::Field field) { column_.field = std::move(field); }

void ColumnBuilder::MarkValid() {
  if (!column_.valid.empty()) column_.valid.push_back(1);
}

void ColumnBuilder::AppendNull() {
  const size_t before = column_.size();
  switch (column_.field.type) {
    case frame::Type::kFloat64:
      column_.doubles.push_back(0.0);
      break;
    case frame::Type::kString:
      column_.strings.emplace_back();
      break;
    case frame::Type::kInt64:
    case frame::Type::kBool:
    case frame::Type::kTimestamp:
      column_.ints.push_back(0);
      break;
  }
  if (column_.valid.empty()) column_.valid.assign(before, 1);
  column_.valid.push_back(0);
}

void ColumnBuilder::AppendInt(int64_t value) {
  column_.ints.push_back(value);
  MarkValid();
}

void ColumnBuilder::AppendDouble(double value) {
  column_.doubles.push_back(value);
  MarkValid();
}

void ColumnBuilder::AppendString(std::string value) {
  column_.strings.push_back(std::move(value));
  MarkValid();
}

frame::Column ColumnBuilder::Finish() {
  frame::Column out = std::move(column_);
  column_ = frame::Column{};
  column_.field = out.field;
  return out;
}

frame::Table FinishBatch(std::vector<ColumnBuilder>& builders) {
  frame::Table table;
  table.columns.reserve(builders.size());
  for (ColumnBuilder& b : builders) table.columns.push_back(b.Finish());
  return table;
}

// ---------------------------------------------------------------------------
// Timestamps.

namespace {

// Days from 1970-01-01 to year-month-day of the proleptic Gregorian calendar.
// The year is counted from March, so February's leap day ends it; then whole
// 400-year cycles of 146097 days.
int64_t DaysSinceEpoch(int64_t year, int64_t month, int64_t day) {
  const int64_t y = month <= 2 ? year - 1 : year;
  const int64_t cycle = (y >= 0 ? y : y - 399) / 400;
  const int64_t year_of_cycle = y - cycle * 400;                             // [0, 399]
  const int64_t day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;  // [0, 365], from March 1
  const int64_t day_of_cycle = year_of_cycle * 365 + year_of_cycle / 4 - year_of_cycle / 100 + day_of_year;
  return cycle * 146097 + day_of_cycle - 719468;  // 719468: days from 0000-03-01 to 1970-01-01
}

bool IsLeap(int64_t year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int64_t DaysIn(int64_t year, int64_t month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeap(year) ? 29 : kDays[month - 1];
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads exactly `n` digits at `pos`.
bool Digits(std::string_view s, size_t& pos, size_t n, int64_t* out) {
  if (pos + n > s.size()) return false;
  int64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!IsDigit(s[pos + i])) return false;
    v = v * 10 + (s[pos + i] - '0');
  }
  pos += n;
  *out = v;
  return true;
}

// "Z", "+HH", "+HHMM", "+HH:MM", "+HH:MM:SS"; seconds east of UTC.
bool ZoneOffset(std::string_view s, size_t& pos, int64_t* offset) {
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
    *offset = 0;
    return true;
  }
  if (s[pos] != '+' && s[pos] != '-') return false;
  const int64_t sign = s[pos] == '-' ? -1 : 1;
  ++pos;
  int64_t h = 0, m = 0, sec = 0;
  if (!Digits(s, pos, 2, &h)) return false;
  if (pos < s.size() && s[pos] == ':') ++pos;
  if (pos < s.size() && IsDigit(s[pos])) {
    if (!Digits(s, pos, 2, &m)) return false;
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      if (!Digits(s, pos, 2, &sec)) return false;
    }
  }
  if (h > 15 || m > 59 || sec > 59) return false;
  *offset = sign * (h * 3600 + m * 60 + sec);
  return true;
}

}  // namespace

std::optional<int64_t> ParseSqlTimestamp(std::string_view s) {
  bool bc = false;
  if (s.ends_with(" BC")) {
    bc = true;
    s.remove_suffix(3);
  }
  size_t pos = 0;
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    ++pos;
  }
  size_t year_digits = 0;
  while (pos + year_digits < s.size() && IsDigit(s[pos + year_digits])) ++year_digits;
  if (year_digits < 4 || year_digits > 9) return std::nullopt;
  int64_t year = 0, month = 0, day = 0;
  if (!Digits(s, pos, year_digits, &year)) return std::nullopt;
  if (negative) year = -year;
  if (bc) {
    if (negative || year == 0) return std::nullopt;
    year = 1 - year;  // 1 BC is year 0 of the proleptic calendar
  }
  if (pos >= s.size() || s[pos++] != '-' || !Digits(s, pos, 2, &month)) return std::nullopt;
  if (pos >= s.size() || s[pos++] != '-' || !Digits(s, pos, 2, &day)) return std::nullopt;
  if (month < 1 || month > 12 || day < 1 || day > DaysIn(year, month)) return std::nullopt;

  int64_t hour = 0, minute = 0, second = 0, offset = 0;
  if (pos < s.size()) {
    if (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ') return std::nullopt;
    ++pos;
    if (!Digits(s, pos, 2, &hour) || pos >= s.size() || s[pos++] != ':' || !Digits(s, pos, 2, &minute)) {
      return std::nullopt;
    }
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      if (!Digits(s, pos, 2, &second)) return std::nullopt;
      if (pos < s.size() && s[pos] == '.') {
        ++pos;
        const size_t begin = pos;
        while (pos < s.size() && IsDigit(s[pos])) ++pos;
        if (pos == begin) return std::nullopt;
      }
    }
    if (hour > 23 || minute > 59 || second > 59) return std::nullopt;
    if (pos < s.size() && s[pos] == ' ') ++pos;
    if (pos < s.size() && !ZoneOffset(s, pos, &offset)) return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  return DaysSinceEpoch(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
}

Status CheckColumnNames(const std::vector<std::string>& names) {
  std::unordered_map<std::string_view, size_t> seen;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) {
      return InvalidArgument("result column " + std::to_string(i + 1) +
                             " has an empty name; give it an alias (AS ...)");
    }
    auto [it, inserted] = seen.emplace(names[i], i);
    if (!inserted) {
      return InvalidArgument("result columns " + std::to_string(it->second + 1) + " and " +
                             std::to_string(i + 1) + " are both named '" + names[i] +
                             "'; give them distinct aliases (AS ...)");
    }
  }
  return Ok();
}

std::string Excerpt(std::string_view value, size_t max_chars) {
  if (value.size() <= max_chars) return std::string(value);
  return std::string(value.substr(0, max_chars)) + "...";
}

}  // namespace takt::connectors
