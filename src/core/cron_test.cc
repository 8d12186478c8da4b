#include "core/cron.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace takt {
namespace {

namespace chr = std::chrono;

// Seconds since the epoch of a UTC civil time.
int64_t Utc(int y, unsigned m, unsigned d, int hh = 0, int mm = 0, int ss = 0) {
  const chr::sys_days day{chr::year(y) / chr::month(m) / chr::day(d)};
  return day.time_since_epoch().count() * 86400 + hh * 3600 + mm * 60 + ss;
}

CronSchedule MustParse(std::string_view text) {
  auto s = CronSchedule::Parse(text);
  EXPECT_TRUE(s.has_value()) << text << ": " << s.error().ToString();
  return s.value_or(*CronSchedule::Parse("* * * * *"));
}

int64_t MustNext(const CronSchedule& s, int64_t after) {
  auto next = s.Next(after);
  EXPECT_TRUE(next.has_value()) << s.expression() << ": " << next.error().ToString();
  return next.value_or(-1);
}

// The next `n` matches after `after`.
std::vector<int64_t> Series(std::string_view text, int64_t after, int n) {
  CronSchedule s = MustParse(text);
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) {
    after = MustNext(s, after);
    out.push_back(after);
  }
  return out;
}

std::string ParseError(std::string_view text) {
  auto s = CronSchedule::Parse(text);
  EXPECT_FALSE(s.has_value()) << text;
  if (s) return "";
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
  return s.error().message();
}

TEST(CronTest, EveryMinuteIsStrictlyAfter) {
  CronSchedule s = MustParse("* * * * *");
  EXPECT_EQ(s.expression(), "* * * * *");
  const int64_t t = Utc(2026, 3, 1, 10, 7);
  EXPECT_EQ(MustNext(s, t), t + 60);
  EXPECT_EQ(MustNext(s, t + 1), t + 60);
  EXPECT_EQ(MustNext(s, t + 59), t + 60);
  EXPECT_EQ(MustNext(s, t - 1), t);
}

TEST(CronTest, NumbersListsRangesAndSteps) {
  const int64_t start = Utc(2026, 3, 2, 10, 7);  // a Monday
  EXPECT_EQ(Series("*/15 * * * *", start, 4),
            (std::vector<int64_t>{Utc(2026, 3, 2, 10, 15), Utc(2026, 3, 2, 10, 30), Utc(2026, 3, 2, 10, 45),
                                  Utc(2026, 3, 2, 11, 0)}));
  EXPECT_EQ(Series("30 2 * * *", start, 2),
            (std::vector<int64_t>{Utc(2026, 3, 3, 2, 30), Utc(2026, 3, 4, 2, 30)}));
  EXPECT_EQ(Series("0,30 8,20 * * *", start, 4),
            (std::vector<int64_t>{Utc(2026, 3, 2, 20, 0), Utc(2026, 3, 2, 20, 30), Utc(2026, 3, 3, 8, 0),
                                  Utc(2026, 3, 3, 8, 30)}));
  EXPECT_EQ(Series("10-50/20 * * * *", start, 4),
            (std::vector<int64_t>{Utc(2026, 3, 2, 10, 10), Utc(2026, 3, 2, 10, 30), Utc(2026, 3, 2, 10, 50),
                                  Utc(2026, 3, 2, 11, 10)}));
  EXPECT_EQ(Series("5/20 * * * *", start, 4),  // 5-59/20
            (std::vector<int64_t>{Utc(2026, 3, 2, 10, 25), Utc(2026, 3, 2, 10, 45), Utc(2026, 3, 2, 11, 5),
                                  Utc(2026, 3, 2, 11, 25)}));
  EXPECT_EQ(Series("0 9-17/4 * * MON-FRI", start, 4),
            (std::vector<int64_t>{Utc(2026, 3, 2, 13, 0), Utc(2026, 3, 2, 17, 0), Utc(2026, 3, 3, 9, 0),
                                  Utc(2026, 3, 3, 13, 0)}));
  EXPECT_EQ(Series("0 0 * * 1-5,0", Utc(2026, 3, 6, 1), 2),  // Fri -> Sun, Mon
            (std::vector<int64_t>{Utc(2026, 3, 8), Utc(2026, 3, 9)}));
  EXPECT_EQ(Series("0-5,58-59/1 0 1 1 *", Utc(2026, 1, 1), 3),
            (std::vector<int64_t>{Utc(2026, 1, 1, 0, 1), Utc(2026, 1, 1, 0, 2), Utc(2026, 1, 1, 0, 3)}));
  EXPECT_EQ(Series("59 23 * * *", Utc(2026, 1, 1), 1), (std::vector<int64_t>{Utc(2026, 1, 1, 23, 59)}));
}

TEST(CronTest, MonthAndDayNamesAreCaseInsensitive) {
  const int64_t start = Utc(2026, 3, 2);
  EXPECT_EQ(Series("0 0 1 jan,Jul *", start, 2), (std::vector<int64_t>{Utc(2026, 7, 1), Utc(2027, 1, 1)}));
  EXPECT_EQ(Series("0 0 1 MAR-may *", start, 2), (std::vector<int64_t>{Utc(2026, 4, 1), Utc(2026, 5, 1)}));
  EXPECT_EQ(Series("0 0 * * sat,Sun", start, 3),
            (std::vector<int64_t>{Utc(2026, 3, 7), Utc(2026, 3, 8), Utc(2026, 3, 14)}));
  EXPECT_EQ(Series("0 0 * * tue-THU/2", start, 2), (std::vector<int64_t>{Utc(2026, 3, 3), Utc(2026, 3, 5)}));
}

TEST(CronTest, SundayIsZeroOrSeven) {
  const int64_t start = Utc(2026, 3, 2);
  const auto sundays = Series("0 0 * * 0", start, 3);
  EXPECT_EQ(sundays, (std::vector<int64_t>{Utc(2026, 3, 8), Utc(2026, 3, 15), Utc(2026, 3, 22)}));
  EXPECT_EQ(Series("0 0 * * 7", start, 3), sundays);
  EXPECT_EQ(Series("0 0 * * SUN", start, 3), sundays);
  EXPECT_EQ(Series("0 0 * * 6-7", start, 2), (std::vector<int64_t>{Utc(2026, 3, 7), Utc(2026, 3, 8)}));
}

TEST(CronTest, DayOfMonthOrDayOfWeekWhenBothAreRestricted) {
  // The 13th or any Friday (2026-03-13 is both; 2026-04-13 is a Monday).
  EXPECT_EQ(Series("0 0 13 * FRI", Utc(2026, 3, 1), 7),
            (std::vector<int64_t>{Utc(2026, 3, 6), Utc(2026, 3, 13), Utc(2026, 3, 20), Utc(2026, 3, 27),
                                  Utc(2026, 4, 3), Utc(2026, 4, 10), Utc(2026, 4, 13)}));
  // Only one restricted: that one alone.
  EXPECT_EQ(Series("0 0 * * FRI", Utc(2026, 4, 10), 2),
            (std::vector<int64_t>{Utc(2026, 4, 17), Utc(2026, 4, 24)}));
  EXPECT_EQ(Series("0 0 13 * *", Utc(2026, 3, 1), 2),
            (std::vector<int64_t>{Utc(2026, 3, 13), Utc(2026, 4, 13)}));
  // A field starting with '*' counts as unrestricted, so both must match: a 13th that is Sun/Tue/Thu/Sat.
  EXPECT_EQ(Series("0 0 13 * */2", Utc(2026, 3, 1), 2),
            (std::vector<int64_t>{Utc(2026, 6, 13), Utc(2026, 8, 13)}));  // a Saturday and a Thursday
}

TEST(CronTest, AcrossMonthAndYearEnds) {
  EXPECT_EQ(MustNext(MustParse("0 0 1 1 *"), Utc(2026, 6, 1)), Utc(2027, 1, 1));
  EXPECT_EQ(MustNext(MustParse("59 23 31 12 *"), Utc(2026, 12, 31, 23, 59)), Utc(2027, 12, 31, 23, 59));
  EXPECT_EQ(MustNext(MustParse("0 0 31 * *"), Utc(2026, 4, 1)), Utc(2026, 5, 31));
  EXPECT_EQ(MustNext(MustParse("0 0 * * *"), Utc(2026, 12, 31, 12)), Utc(2027, 1, 1));
  EXPECT_EQ(MustNext(MustParse("*/10 * * * *"), Utc(2026, 12, 31, 23, 55)), Utc(2027, 1, 1));
  EXPECT_EQ(MustNext(MustParse("0 0 1 * *"), Utc(2026, 2, 15)), Utc(2026, 3, 1));
  // Before 1970.
  EXPECT_EQ(MustNext(MustParse("0 0 1 1 *"), Utc(1969, 6, 1)), 0);
  EXPECT_EQ(MustNext(MustParse("30 * * * *"), Utc(1969, 12, 31, 23, 45)), Utc(1970, 1, 1, 0, 30));
}

TEST(CronTest, LeapDays) {
  CronSchedule leap = MustParse("0 12 29 2 *");
  EXPECT_EQ(MustNext(leap, Utc(2026, 3, 1)), Utc(2028, 2, 29, 12));
  EXPECT_EQ(MustNext(leap, Utc(2028, 2, 29, 12)), Utc(2032, 2, 29, 12));
  EXPECT_EQ(MustNext(leap, Utc(2099, 3, 1)), Utc(2104, 2, 29, 12));                 // 2100 is not a leap year
  EXPECT_EQ(MustNext(MustParse("0 0 29 2 *"), Utc(1999, 3, 1)), Utc(2000, 2, 29));  // 2000 is
  EXPECT_EQ(MustNext(MustParse("0 0 * 3 *"), Utc(2024, 2, 28, 1)), Utc(2024, 3, 1));
  EXPECT_EQ(MustNext(MustParse("0 0 * * *"), Utc(2024, 2, 28, 1)), Utc(2024, 2, 29));
}

TEST(CronTest, ImpossibleDatesNeverMatch) {
  for (std::string_view text : {"0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 *"}) {
    auto next = MustParse(text).Next(Utc(2026, 1, 1));
    ASSERT_FALSE(next.has_value()) << text;
    EXPECT_EQ(next.error().code(), Code::kFailedPrecondition);
    EXPECT_NE(next.error().message().find("matches no time in the 5 years after 2026-01-01T00:00:00Z"),
              std::string::npos)
        << next.error().message();
  }
  // Feb 30 with a weekday restricted matches on February's Mondays (either rule).
  EXPECT_EQ(MustNext(MustParse("0 0 30 2 MON"), Utc(2026, 3, 1)), Utc(2027, 2, 1));
}

TEST(CronTest, Macros) {
  const int64_t t = Utc(2026, 3, 4, 10, 7);  // a Wednesday
  EXPECT_EQ(MustNext(MustParse("@hourly"), t), Utc(2026, 3, 4, 11));
  EXPECT_EQ(MustNext(MustParse("@daily"), t), Utc(2026, 3, 5));
  EXPECT_EQ(MustNext(MustParse("@midnight"), t), Utc(2026, 3, 5));
  EXPECT_EQ(MustNext(MustParse("@weekly"), t), Utc(2026, 3, 8));
  EXPECT_EQ(MustNext(MustParse("@monthly"), t), Utc(2026, 4, 1));
  EXPECT_EQ(MustNext(MustParse("@yearly"), t), Utc(2027, 1, 1));
  EXPECT_EQ(MustNext(MustParse("@annually"), t), Utc(2027, 1, 1));
  EXPECT_EQ(MustNext(MustParse(" @DAILY "), t), Utc(2026, 3, 5));
  EXPECT_EQ(MustParse("@daily").expression(), "@daily");
  EXPECT_NE(ParseError("@reboot").find("unknown macro '@reboot'"), std::string::npos);
}

TEST(CronTest, WhitespaceBetweenFields) {
  EXPECT_EQ(MustNext(MustParse("  0\t12  *  * *\n"), Utc(2026, 3, 4)), Utc(2026, 3, 4, 12));
}

TEST(CronTest, ErrorsNameTheFieldAndWhy) {
  EXPECT_EQ(ParseError("* * * *"),
            "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 4 in '* * * *'");
  EXPECT_NE(ParseError("").find("got 0"), std::string::npos);
  EXPECT_NE(ParseError("* * * * * *").find("got 6"), std::string::npos);
  EXPECT_EQ(ParseError("60 * * * *"), "cron: minute: 60 is out of range 0-59");
  EXPECT_EQ(ParseError("* 24 * * *"), "cron: hour: 24 is out of range 0-23");
  EXPECT_EQ(ParseError("* * 0 * *"), "cron: day-of-month: 0 is out of range 1-31");
  EXPECT_EQ(ParseError("* * 32 * *"), "cron: day-of-month: 32 is out of range 1-31");
  EXPECT_EQ(ParseError("* * * 13 *"), "cron: month: 13 is out of range 1-12");
  EXPECT_EQ(ParseError("* * * * 8"), "cron: day-of-week: 8 is out of range 0-7");
  EXPECT_EQ(ParseError("99999999999 * * * *"), "cron: minute: 99999999999 is out of range 0-59");
  EXPECT_EQ(ParseError("5-3 * * * *"), "cron: minute: range '5-3' runs backwards");
  EXPECT_EQ(ParseError("* * * * FRI-MON"), "cron: day-of-week: range 'FRI-MON' runs backwards");
  EXPECT_NE(ParseError("*/0 * * * *").find("cron: minute: step '0' in '*/0' must be a positive number"),
            std::string::npos);
  EXPECT_NE(ParseError("*/x * * * *").find("step 'x'"), std::string::npos);
  EXPECT_NE(ParseError("*/ * * * *").find("step ''"), std::string::npos);
  EXPECT_NE(ParseError("1,,2 * * * *").find("cron: minute: empty item"), std::string::npos);
  EXPECT_NE(ParseError("1, * * * *").find("empty item"), std::string::npos);
  EXPECT_NE(ParseError("a * * * *").find("cron: minute: 'a' is not a number"), std::string::npos);
  EXPECT_NE(ParseError("JAN * * * *").find("cron: minute: 'JAN' is not a number"), std::string::npos);
  EXPECT_NE(ParseError("1x * * * *").find("'1x' is not a number"), std::string::npos);
  EXPECT_NE(ParseError("* * * FOO *").find("cron: month: unknown name 'FOO' (expected JAN-DEC)"),
            std::string::npos);
  EXPECT_NE(ParseError("* * * * MONDAY").find("cron: day-of-week: unknown name 'MONDAY' (expected SUN-SAT)"),
            std::string::npos);
  EXPECT_NE(ParseError("1- * * * *").find("cron: minute: a value is missing"), std::string::npos);
  EXPECT_NE(ParseError("-1 * * * *").find("a value is missing"), std::string::npos);
  EXPECT_NE(ParseError("* * * * 1-2-3").find("day-of-week"), std::string::npos);
  EXPECT_NE(ParseError("** * * * *").find("minute"), std::string::npos);
}

TEST(CronTest, NextRejectsTimesOutsideTheCalendarRange) {
  CronSchedule s = MustParse("* * * * *");
  EXPECT_EQ(s.Next(Utc(10000, 1, 1)).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(s.Next(Utc(0, 12, 31)).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(s.Next(INT64_MAX).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(MustNext(s, Utc(9999, 12, 31, 23, 58)), Utc(9999, 12, 31, 23, 59));
  auto last = s.Next(Utc(9999, 12, 31, 23, 59));
  ASSERT_FALSE(last.has_value());
  EXPECT_EQ(last.error().code(), Code::kFailedPrecondition);
}

// Random schedules built from explicit value sets agree with a minute-by-minute scan.
TEST(CronTest, AgreesWithABruteForceScan) {
  std::mt19937 rng(42);
  auto pick = [&](int lo, int hi, bool allow_star, std::set<int>& values) -> std::string {
    if (allow_star && rng() % 2 == 0) {
      for (int v = lo; v <= hi; ++v) values.insert(v);
      return "*";
    }
    const int n = 1 + static_cast<int>(rng() % 4);
    std::string text;
    for (int i = 0; i < n; ++i) {
      const int v = lo + static_cast<int>(rng() % (hi - lo + 1));
      values.insert(v);
      text += (text.empty() ? "" : ",") + std::to_string(v);
    }
    return text;
  };
  for (int iter = 0; iter < 150; ++iter) {
    std::set<int> minutes, hours, doms, months, dows;
    const std::string text = pick(0, 59, true, minutes) + " " + pick(0, 23, true, hours) + " " +
                             pick(1, 31, true, doms) + " " + pick(1, 12, true, months) + " " +
                             pick(0, 6, true, dows);
    std::vector<std::string> fields;
    for (size_t i = 0, j; i < text.size(); i = j + 1) {
      j = text.find(' ', i);
      if (j == std::string::npos) j = text.size();
      fields.push_back(text.substr(i, j - i));
    }
    const bool any_dom = fields[2] == "*", any_dow = fields[4] == "*";
    auto matches = [&](int64_t t) {
      const chr::sys_days day{chr::days(t / 86400)};
      const chr::year_month_day ymd(day);
      const int s = static_cast<int>(t % 86400);
      const bool dom = doms.contains(static_cast<int>(static_cast<unsigned>(ymd.day())));
      const bool dow = dows.contains(static_cast<int>(chr::weekday(day).c_encoding()));
      const bool day_ok = any_dom || any_dow ? dom && dow : dom || dow;
      return minutes.contains(s / 60 % 60) && hours.contains(s / 3600) &&
             months.contains(static_cast<int>(static_cast<unsigned>(ymd.month()))) && day_ok;
    };
    CronSchedule s = MustParse(text);
    const int64_t after = Utc(2026, 1, 1) + static_cast<int64_t>(rng() % (366 * 86400));
    int64_t expected = -1;
    for (int64_t t = (after / 60 + 1) * 60; t < after + 2 * 366 * 86400; t += 60) {
      if (matches(t)) {
        expected = t;
        break;
      }
    }
    if (expected < 0) continue;  // sparse schedule: beyond the scan
    EXPECT_EQ(MustNext(s, after), expected) << text << " after " << after;
  }
}

}  // namespace
}  // namespace takt
