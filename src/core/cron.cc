#include "core/cron.h"

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstdio>
#include <vector>

namespace takt {
namespace {

namespace chr = std::chrono;

struct FieldSpec {
  std::string_view name;
  int min;
  int max;                                        // largest value accepted (7 for day-of-week, stored as 0)
  const std::array<std::string_view, 12>* names;  // names[i] is value i + name_base
  int name_base;
  int name_count;
};

constexpr std::array<std::string_view, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 12> kDayNames = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

const FieldSpec kFields[5] = {
    {"minute", 0, 59, nullptr, 0, 0},        {"hour", 0, 23, nullptr, 0, 0},
    {"day-of-month", 1, 31, nullptr, 0, 0},  {"month", 1, 12, &kMonthNames, 1, 12},
    {"day-of-week", 0, 7, &kDayNames, 0, 7},
};

char Upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Upper(a[i]) != Upper(b[i])) return false;
  }
  return true;
}

std::unexpected<Error> FieldError(const FieldSpec& f, const std::string& why) {
  return InvalidArgument("cron: " + std::string(f.name) + ": " + why);
}

// A number or (month, day-of-week) a name.
Result<int> ParseValue(const FieldSpec& f, std::string_view text) {
  if (text.empty()) return FieldError(f, "a value is missing");
  if (text[0] >= '0' && text[0] <= '9') {
    int v = 0;
    for (char c : text) {
      if (c < '0' || c > '9') return FieldError(f, "'" + std::string(text) + "' is not a number");
      v = v * 10 + (c - '0');
      if (v > 1000) break;
    }
    if (v < f.min || v > f.max) {
      return FieldError(
          f, std::string(text) + " is out of range " + std::to_string(f.min) + "-" + std::to_string(f.max));
    }
    return v;
  }
  if (f.names != nullptr) {
    for (int i = 0; i < f.name_count; ++i) {
      if (EqualsIgnoreCase(text, (*f.names)[i])) return i + f.name_base;
    }
    return FieldError(f, "unknown name '" + std::string(text) + "' (expected " + std::string((*f.names)[0]) +
                             "-" + std::string((*f.names)[f.name_count - 1]) + ")");
  }
  return FieldError(f, "'" + std::string(text) + "' is not a number");
}

// The bits of one field's values.
Result<uint64_t> ParseField(const FieldSpec& f, std::string_view text) {
  uint64_t bits = 0;
  // Day-of-week: `*` means 0-6 (7 is Sunday again).
  const int star_max = f.max == 7 ? 6 : f.max;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string_view item =
        text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    if (item.empty()) return FieldError(f, "empty item in the list '" + std::string(text) + "'");
    const size_t slash = item.find('/');
    const std::string_view base = item.substr(0, slash);
    int step = 1;
    if (slash != std::string_view::npos) {
      const std::string_view step_text = item.substr(slash + 1);
      int s = 0;
      bool ok = !step_text.empty();
      for (char c : step_text) {
        ok = ok && c >= '0' && c <= '9';
        if (ok) s = std::min(s * 10 + (c - '0'), 1000);
      }
      if (!ok || s == 0) {
        return FieldError(f, "step '" + std::string(step_text) + "' in '" + std::string(item) +
                                 "' must be a positive number");
      }
      step = s;
    }
    int lo = 0, hi = 0;
    if (base == "*") {
      lo = f.min;
      hi = star_max;
    } else {
      const size_t dash = base.find('-');
      TAKT_ASSIGN_OR_RETURN(lo, ParseValue(f, base.substr(0, dash)));
      if (dash != std::string_view::npos) {
        TAKT_ASSIGN_OR_RETURN(hi, ParseValue(f, base.substr(dash + 1)));
        if (hi < lo) {
          return FieldError(f, "range '" + std::string(base) + "' runs backwards");
        }
      } else {
        hi = slash != std::string_view::npos ? star_max : lo;  // "5/15" is 5-max/15
      }
    }
    for (int v = lo; v <= hi; v += step) bits |= uint64_t{1} << (f.max == 7 && v == 7 ? 0 : v);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return bits;
}

std::string_view ExpandMacro(std::string_view text) {
  struct Macro {
    std::string_view name, fields;
  };
  static constexpr Macro kMacros[] = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"},
  };
  for (const Macro& m : kMacros) {
    if (EqualsIgnoreCase(text, m.name)) return m.fields;
  }
  return {};
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string FormatTime(int64_t seconds) {
  const chr::sys_seconds t{chr::seconds(seconds)};
  const chr::sys_days day = chr::floor<chr::days>(t);
  const chr::year_month_day ymd(day);
  const int64_t s = (t - day).count();
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(s / 3600), static_cast<int>(s / 60 % 60), static_cast<int>(s % 60));
  return buf;
}

int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// The lowest set bit at or above `from`, or -1.
int NextBit(uint64_t bits, int from) {
  if (from >= 64) return -1;
  const uint64_t rest = bits & (~uint64_t{0} << from);
  return rest == 0 ? -1 : std::countr_zero(rest);
}

}  // namespace

Result<CronSchedule> CronSchedule::Parse(std::string_view expression) {
  std::string_view text = expression;
  while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
  if (!text.empty() && text.front() == '@') {
    const std::string_view expanded = ExpandMacro(text);
    if (expanded.empty()) {
      return InvalidArgument("cron: unknown macro '" + std::string(text) +
                             "' (expected @hourly, @daily, @weekly, @monthly or @yearly)");
    }
    text = expanded;
  }
  std::vector<std::string_view> fields;
  for (size_t i = 0; i < text.size();) {
    if (IsSpace(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && !IsSpace(text[j])) ++j;
    fields.push_back(text.substr(i, j - i));
    i = j;
  }
  if (fields.size() != 5) {
    return InvalidArgument("cron: expected 5 fields (minute hour day-of-month month day-of-week), got " +
                           std::to_string(fields.size()) + " in '" + std::string(expression) + "'");
  }
  CronSchedule s;
  s.expression_ = std::string(expression);
  uint64_t bits[5];
  for (int i = 0; i < 5; ++i) {
    TAKT_ASSIGN_OR_RETURN(bits[i], ParseField(kFields[i], fields[i]));
  }
  s.minutes_ = bits[0];
  s.hours_ = static_cast<uint32_t>(bits[1]);
  s.days_ = static_cast<uint32_t>(bits[2]);
  s.months_ = static_cast<uint32_t>(bits[3]);
  s.weekdays_ = static_cast<uint32_t>(bits[4]);
  s.any_day_of_month_ = fields[2].front() == '*';
  s.any_day_of_week_ = fields[4].front() == '*';
  return s;
}

Result<int64_t> CronSchedule::Next(int64_t after) const {
  // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
  constexpr int64_t kMin = -62135596800;
  constexpr int64_t kMax = 253402300799;
  if (after < kMin || after > kMax) {
    return InvalidArgument("cron: time " + std::to_string(after) + " is outside the years 1 to 9999");
  }
  constexpr int64_t kDay = 86400;
  const int64_t limit = after + 5 * 366 * kDay;
  int64_t t = (FloorDiv(after, 60) + 1) * 60;
  while (t <= limit && t <= kMax) {
    const int64_t day_number = FloorDiv(t, kDay);
    const chr::sys_days day{chr::days(day_number)};
    const chr::year_month_day ymd(day);
    const unsigned month = static_cast<unsigned>(ymd.month());
    if ((months_ >> month & 1) == 0) {
      const chr::year_month_day next_month =
          chr::year_month_day(ymd.year() / ymd.month() / 1) + chr::months(1);
      t = chr::sys_days(next_month).time_since_epoch().count() * kDay;
      continue;
    }
    const bool dom = (days_ >> static_cast<unsigned>(ymd.day()) & 1) != 0;
    const bool dow = (weekdays_ >> chr::weekday(day).c_encoding() & 1) != 0;
    const bool day_matches = any_day_of_month_ || any_day_of_week_ ? dom && dow : dom || dow;
    if (!day_matches) {
      t = (day_number + 1) * kDay;
      continue;
    }
    const int64_t second_of_day = t - day_number * kDay;
    const int hour = static_cast<int>(second_of_day / 3600);
    const int minute = static_cast<int>(second_of_day / 60 % 60);
    if ((hours_ >> hour & 1) == 0) {
      const int next_hour = NextBit(hours_, hour + 1);
      t = next_hour < 0 ? (day_number + 1) * kDay : day_number * kDay + next_hour * 3600;
      continue;
    }
    if ((minutes_ >> minute & 1) == 0) {
      const int next_minute = NextBit(minutes_, minute + 1);
      t = next_minute < 0 ? day_number * kDay + (hour + 1) * 3600
                          : day_number * kDay + hour * 3600 + next_minute * 60;
      continue;
    }
    return t;
  }
  return FailedPrecondition("cron: '" + expression_ + "' matches no time in the 5 years after " +
                            FormatTime(after));
}

}  // namespace takt
