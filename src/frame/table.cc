#include "frame/table.h"

#include <charconv>
#include <limits>
#include <unordered_set>

namespace takt::frame {

std::string_view TypeName(Type type) {
  switch (type) {
    case Type::kInt64:
      return "int64";
    case Type::kFloat64:
      return "float64";
    case Type::kString:
      return "string";
    case Type::kBool:
      return "bool";
    case Type::kTimestamp:
      return "timestamp";
  }
  return "unknown";
}

Result<Type> ParseType(std::string_view name) {
  for (Type t : {Type::kInt64, Type::kFloat64, Type::kString, Type::kBool, Type::kTimestamp}) {
    if (name == TypeName(t)) return t;
  }
  return InvalidArgument("unknown column type '" + std::string(name) +
                         "' (expected int64, float64, string, bool or timestamp)");
}

bool IsNumeric(Type type) { return type != Type::kString; }

int Schema::IndexOf(std::string_view name) const {
  for (size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

size_t Column::size() const {
  switch (field.type) {
    case Type::kFloat64:
      return doubles.size();
    case Type::kString:
      return strings.size();
    case Type::kInt64:
    case Type::kBool:
    case Type::kTimestamp:
      return ints.size();
  }
  return 0;
}

double Column::AsDouble(size_t row) const {
  if (IsNull(row)) return std::nan("");
  switch (field.type) {
    case Type::kFloat64:
      return doubles[row];
    case Type::kString:
      return std::nan("");
    case Type::kInt64:
    case Type::kBool:
    case Type::kTimestamp:
      return static_cast<double>(ints[row]);
  }
  return std::nan("");
}

std::string Column::AsText(size_t row) const {
  if (IsNull(row)) return "";
  switch (field.type) {
    case Type::kInt64:
      return std::to_string(ints[row]);
    case Type::kBool:
      return ints[row] != 0 ? "true" : "false";
    case Type::kTimestamp:
      return FormatTimestamp(ints[row]);
    case Type::kString:
      return strings[row];
    case Type::kFloat64: {
      // Shortest form that reads back to the same double (at most 17 digits).
      char buf[64];
      auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), doubles[row]);
      if (ec != std::errc()) return "";
      return std::string(buf, end);
    }
  }
  return "";
}

Schema Table::schema() const {
  Schema s;
  s.fields.reserve(columns.size());
  for (const Column& c : columns) s.fields.push_back(c.field);
  return s;
}

const Column* Table::Find(std::string_view name) const {
  for (const Column& c : columns) {
    if (c.field.name == name) return &c;
  }
  return nullptr;
}

Column* Table::Find(std::string_view name) {
  for (Column& c : columns) {
    if (c.field.name == name) return &c;
  }
  return nullptr;
}

Status Table::Validate() const {
  const size_t rows = num_rows();
  std::unordered_set<std::string_view> names;
  for (size_t i = 0; i < columns.size(); ++i) {
    const Column& c = columns[i];
    if (c.field.name.empty())
      return InvalidArgument("column " + std::to_string(i + 1) + " has an empty name");
    const std::string where = "column " + c.field.name + ": ";
    if (!names.insert(c.field.name).second) return InvalidArgument(where + "duplicate column name");
    if (c.size() != rows) {
      return InvalidArgument(where + "has " + std::to_string(c.size()) + " values, the table has " +
                             std::to_string(rows) + " rows");
    }
    const bool uses_ints =
        c.field.type == Type::kInt64 || c.field.type == Type::kBool || c.field.type == Type::kTimestamp;
    if ((!uses_ints && !c.ints.empty()) || (c.field.type != Type::kFloat64 && !c.doubles.empty()) ||
        (c.field.type != Type::kString && !c.strings.empty())) {
      return InvalidArgument(where + "holds values in a vector its type " +
                             std::string(TypeName(c.field.type)) + " does not use");
    }
    if (!c.valid.empty() && c.valid.size() != rows) {
      return InvalidArgument(where + "validity has " + std::to_string(c.valid.size()) +
                             " entries, the table has " + std::to_string(rows) + " rows");
    }
    if (!c.field.nullable) {
      for (uint8_t v : c.valid) {
        if (v == 0) return InvalidArgument(where + "null in a non-nullable column");
      }
    }
  }
  return Ok();
}

// ---------------------------------------------------------------------------
// Timestamps. Calendar arithmetic on the proleptic Gregorian calendar, done in
// 400-year eras (146097 days each) with years starting on March 1 so that the
// leap day is the last day of the year.

namespace {

constexpr int64_t kSecondsPerDay = 86400;
constexpr int64_t kDaysPerEra = 146097;
// Days from 0000-03-01 to 1970-01-01.
constexpr int64_t kEpochShift = 719468;

bool IsLeapYear(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

int DaysInMonth(int64_t y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeapYear(y) ? 29 : kDays[m - 1];
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Days since 1970-01-01 of the civil date y-m-d.
int64_t DaysFromCivil(int64_t y, int m, int d) {
  const int64_t year = m <= 2 ? y - 1 : y;  // the March-based year
  const int64_t era = FloorDiv(year, 400);
  const int64_t year_of_era = year - era * 400;                          // [0, 399]
  const int64_t month_from_march = m > 2 ? m - 3 : m + 9;                // [0, 11]
  const int64_t day_of_year = (153 * month_from_march + 2) / 5 + d - 1;  // [0, 365]
  const int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * kDaysPerEra + day_of_era - kEpochShift;
}

struct CivilDate {
  int64_t year;
  int month;
  int day;
};

CivilDate CivilFromDays(int64_t days) {
  const int64_t shifted = days + kEpochShift;
  const int64_t era = FloorDiv(shifted, kDaysPerEra);
  const int64_t day_of_era = shifted - era * kDaysPerEra;  // [0, 146096]
  const int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / (kDaysPerEra - 1)) / 365;
  const int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const int64_t month_from_march = (5 * day_of_year + 2) / 153;
  const int day = static_cast<int>(day_of_year - (153 * month_from_march + 2) / 5 + 1);
  const int month = static_cast<int>(month_from_march < 10 ? month_from_march + 3 : month_from_march - 9);
  const int64_t year = year_of_era + era * 400 + (month <= 2 ? 1 : 0);
  return {year, month, day};
}

// Reads exactly `n` ASCII digits at `pos`.
bool ReadDigits(std::string_view s, size_t pos, size_t n, int64_t* out) {
  if (pos + n > s.size()) return false;
  int64_t v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

// Appends `value` (non-negative, below 10^width) as exactly `width` digits.
void AppendDigits(std::string& out, int64_t value, int width) {
  char buf[4];
  for (int i = width - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  out.append(buf, width);
}

}  // namespace

std::optional<int64_t> ParseTimestamp(std::string_view text) {
  // Year: four digits, or (ISO 8601 expanded form) a sign and 4 to 9 digits.
  size_t pos = 0;
  bool negative = false;
  size_t year_digits = 4;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    negative = text[0] == '-';
    pos = 1;
    year_digits = 0;
    while (pos + year_digits < text.size() && year_digits < 10 && text[pos + year_digits] >= '0' &&
           text[pos + year_digits] <= '9') {
      ++year_digits;
    }
    if (year_digits < 4 || year_digits > 9) return std::nullopt;
  }
  int64_t year = 0, month = 0, day = 0;
  if (!ReadDigits(text, pos, year_digits, &year)) return std::nullopt;
  pos += year_digits;
  if (negative) year = -year;
  if (pos + 6 > text.size() || text[pos] != '-' || !ReadDigits(text, pos + 1, 2, &month) ||
      text[pos + 3] != '-' || !ReadDigits(text, pos + 4, 2, &day)) {
    return std::nullopt;
  }
  pos += 6;
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, static_cast<int>(month)))
    return std::nullopt;

  int64_t hour = 0, minute = 0, second = 0;
  if (pos < text.size()) {
    if (text[pos] != 'T' && text[pos] != ' ') return std::nullopt;
    if (pos + 9 > text.size() || !ReadDigits(text, pos + 1, 2, &hour) || text[pos + 3] != ':' ||
        !ReadDigits(text, pos + 4, 2, &minute) || text[pos + 6] != ':' ||
        !ReadDigits(text, pos + 7, 2, &second)) {
      return std::nullopt;
    }
    pos += 9;
    if (hour > 23 || minute > 59 || second > 59) return std::nullopt;
    if (pos < text.size() && text[pos] == 'Z') ++pos;
    if (pos != text.size()) return std::nullopt;
  }
  return DaysFromCivil(year, static_cast<int>(month), static_cast<int>(day)) * kSecondsPerDay + hour * 3600 +
         minute * 60 + second;
}

std::string FormatTimestamp(int64_t seconds) {
  const int64_t days = FloorDiv(seconds, kSecondsPerDay);
  const int64_t remainder =
      seconds % kSecondsPerDay;  // not seconds - days * 86400: that overflows at the extremes
  const auto second_of_day = static_cast<int>(remainder < 0 ? remainder + kSecondsPerDay : remainder);
  const CivilDate date = CivilFromDays(days);
  std::string out;
  out.reserve(20);
  if (date.year >= 0 && date.year <= 9999) {
    AppendDigits(out, date.year, 4);
  } else {
    // ISO 8601 expanded form: a sign and at least four digits.
    out += date.year < 0 ? '-' : '+';
    const std::string digits = std::to_string(date.year < 0 ? -date.year : date.year);
    if (digits.size() < 4) out.append(4 - digits.size(), '0');
    out += digits;
  }
  out += '-';
  AppendDigits(out, date.month, 2);
  out += '-';
  AppendDigits(out, date.day, 2);
  out += 'T';
  AppendDigits(out, second_of_day / 3600, 2);
  out += ':';
  AppendDigits(out, second_of_day / 60 % 60, 2);
  out += ':';
  AppendDigits(out, second_of_day % 60, 2);
  out += 'Z';
  return out;
}

}  // namespace takt::frame
