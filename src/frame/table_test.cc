#include "frame/table.h"

#include <gtest/gtest.h>

#include <cmath>
#include <ctime>
#include <limits>

namespace takt::frame {
namespace {

Column IntColumn(std::string name, std::vector<int64_t> values, Type type = Type::kInt64) {
  Column c;
  c.field = {std::move(name), type, false};
  c.ints = std::move(values);
  return c;
}

TEST(TypeTest, NamesRoundTrip) {
  for (Type t : {Type::kInt64, Type::kFloat64, Type::kString, Type::kBool, Type::kTimestamp}) {
    auto parsed = ParseType(TypeName(t));
    ASSERT_TRUE(parsed.has_value()) << TypeName(t);
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_EQ(TypeName(Type::kFloat64), "float64");
}

TEST(TypeTest, UnknownTypeIsInvalidArgument) {
  auto parsed = ParseType("decimal");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code(), Code::kInvalidArgument);
  EXPECT_NE(parsed.error().message().find("'decimal'"), std::string::npos);
}

TEST(TypeTest, IsNumeric) {
  EXPECT_TRUE(IsNumeric(Type::kInt64));
  EXPECT_TRUE(IsNumeric(Type::kFloat64));
  EXPECT_TRUE(IsNumeric(Type::kBool));
  EXPECT_TRUE(IsNumeric(Type::kTimestamp));
  EXPECT_FALSE(IsNumeric(Type::kString));
}

TEST(SchemaTest, IndexOf) {
  Schema s{{{"a", Type::kInt64, false}, {"b", Type::kString, true}}};
  EXPECT_EQ(s.IndexOf("a"), 0);
  EXPECT_EQ(s.IndexOf("b"), 1);
  EXPECT_EQ(s.IndexOf("c"), -1);
}

TEST(ColumnTest, SizeFollowsType) {
  Column c;
  c.field.type = Type::kFloat64;
  c.doubles = {1, 2, 3};
  EXPECT_EQ(c.size(), 3u);
  c.field.type = Type::kString;
  EXPECT_EQ(c.size(), 0u);
}

TEST(ColumnTest, AsTextPerType) {
  EXPECT_EQ(IntColumn("i", {-42}).AsText(0), "-42");
  EXPECT_EQ(IntColumn("b", {1, 0}, Type::kBool).AsText(0), "true");
  EXPECT_EQ(IntColumn("b", {1, 0}, Type::kBool).AsText(1), "false");
  EXPECT_EQ(IntColumn("t", {1772373600}, Type::kTimestamp).AsText(0), "2026-03-01T14:00:00Z");

  Column f;
  f.field = {"f", Type::kFloat64, false};
  f.doubles = {0.1, 1.0 / 3.0, 3.0, 1e21, 2.5e-8, -0.0};
  EXPECT_EQ(f.AsText(0), "0.1");
  EXPECT_EQ(f.AsText(1), "0.3333333333333333");
  EXPECT_EQ(f.AsText(2), "3");
  EXPECT_EQ(f.AsText(3), "1e+21");
  EXPECT_EQ(f.AsText(4), "2.5e-08");
  EXPECT_EQ(f.AsText(5), "-0");
  for (size_t r = 0; r < f.doubles.size(); ++r) {
    EXPECT_EQ(std::stod(f.AsText(r)), f.doubles[r]) << "row " << r << " does not round-trip";
  }

  Column s;
  s.field = {"s", Type::kString, false};
  s.strings = {"hello, world"};
  EXPECT_EQ(s.AsText(0), "hello, world");
}

TEST(ColumnTest, NullsRenderEmptyAndNaN) {
  Column c = IntColumn("i", {5, 6});
  c.field.nullable = true;
  c.valid = {1, 0};
  EXPECT_FALSE(c.IsNull(0));
  EXPECT_TRUE(c.IsNull(1));
  EXPECT_EQ(c.AsText(1), "");
  EXPECT_EQ(c.AsDouble(0), 5.0);
  EXPECT_TRUE(std::isnan(c.AsDouble(1)));
}

TEST(ColumnTest, AsDouble) {
  Column s;
  s.field = {"s", Type::kString, false};
  s.strings = {"12"};
  EXPECT_TRUE(std::isnan(s.AsDouble(0)));
  EXPECT_EQ(IntColumn("b", {1}, Type::kBool).AsDouble(0), 1.0);
  EXPECT_EQ(IntColumn("t", {-5}, Type::kTimestamp).AsDouble(0), -5.0);
}

TEST(TableTest, FindAndSchema) {
  Table t;
  t.columns.push_back(IntColumn("a", {1, 2}));
  t.columns.push_back(IntColumn("b", {3, 4}));
  EXPECT_EQ(t.num_rows(), 2u);
  EXPECT_EQ(t.num_columns(), 2u);
  ASSERT_NE(t.Find("b"), nullptr);
  EXPECT_EQ(t.Find("b")->ints[1], 4);
  EXPECT_EQ(t.Find("c"), nullptr);
  const Table& ct = t;
  EXPECT_EQ(ct.Find("a")->field.name, "a");
  Schema s = t.schema();
  ASSERT_EQ(s.fields.size(), 2u);
  EXPECT_EQ(s.fields[1].name, "b");
}

TEST(TableTest, EmptyTableHasNoRows) {
  Table t;
  EXPECT_EQ(t.num_rows(), 0u);
  EXPECT_TRUE(t.Validate().has_value());
}

TEST(TableTest, ValidateAcceptsConsistentTable) {
  Table t;
  t.columns.push_back(IntColumn("a", {1, 2}));
  Column s;
  s.field = {"s", Type::kString, true};
  s.strings = {"x", ""};
  s.valid = {1, 0};
  t.columns.push_back(s);
  EXPECT_TRUE(t.Validate().has_value());
}

TEST(TableTest, ValidateRejectsInconsistentTables) {
  auto expect_invalid = [](const Table& t, std::string_view fragment) {
    Status s = t.Validate();
    ASSERT_FALSE(s.has_value()) << fragment;
    EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
    EXPECT_NE(s.error().message().find(fragment), std::string::npos) << s.error().message();
  };
  Table ragged;
  ragged.columns.push_back(IntColumn("a", {1, 2}));
  ragged.columns.push_back(IntColumn("b", {1}));
  expect_invalid(ragged, "column b: has 1 values, the table has 2 rows");

  Table dup;
  dup.columns.push_back(IntColumn("a", {1}));
  dup.columns.push_back(IntColumn("a", {2}));
  expect_invalid(dup, "duplicate");

  Table unnamed;
  unnamed.columns.push_back(IntColumn("", {1}));
  expect_invalid(unnamed, "empty name");

  Table wrong_vector;
  wrong_vector.columns.push_back(IntColumn("a", {1}));
  wrong_vector.columns[0].doubles = {1.0};
  expect_invalid(wrong_vector, "does not use");

  Table short_validity;
  short_validity.columns.push_back(IntColumn("a", {1, 2}));
  short_validity.columns[0].field.nullable = true;
  short_validity.columns[0].valid = {1};
  expect_invalid(short_validity, "validity has 1 entries");

  Table null_in_required;
  null_in_required.columns.push_back(IntColumn("a", {1, 2}));
  null_in_required.columns[0].valid = {1, 0};
  expect_invalid(null_in_required, "null in a non-nullable column");
}

// --- Timestamps ------------------------------------------------------------

TEST(TimestampTest, ParsesEveryAcceptedForm) {
  EXPECT_EQ(ParseTimestamp("2026-03-01T14:00:00Z"), 1772373600);
  EXPECT_EQ(ParseTimestamp("2026-03-01T14:00:00"), 1772373600);
  EXPECT_EQ(ParseTimestamp("2026-03-01 14:00:00"), 1772373600);
  EXPECT_EQ(ParseTimestamp("2026-03-01"), 1772323200);
  EXPECT_EQ(ParseTimestamp("1970-01-01"), 0);
}

TEST(TimestampTest, KnownValues) {
  EXPECT_EQ(ParseTimestamp("2000-02-29"), 951782400);
  EXPECT_EQ(ParseTimestamp("1969-12-31T23:59:59Z"), -1);
  EXPECT_EQ(ParseTimestamp("1900-01-01"), -2208988800);
  EXPECT_EQ(ParseTimestamp("0001-01-01"), -62135596800);
  EXPECT_EQ(ParseTimestamp("1600-02-29T12:34:56Z"), -11670953104);
  EXPECT_EQ(FormatTimestamp(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatTimestamp(-1), "1969-12-31T23:59:59Z");
  EXPECT_EQ(FormatTimestamp(951782400), "2000-02-29T00:00:00Z");
  EXPECT_EQ(FormatTimestamp(-11670953104), "1600-02-29T12:34:56Z");
  EXPECT_EQ(FormatTimestamp(1772373600), "2026-03-01T14:00:00Z");
}

TEST(TimestampTest, RejectsMalformedAndImpossibleDates) {
  for (const char* bad : {"",
                          "2026",
                          "2026-3-01",
                          "2026-03-1",
                          "2026/03/01",
                          "2026-13-01",
                          "2026-00-10",
                          "2026-02-29",
                          "1900-02-29",
                          "2026-04-31",
                          "2026-03-01T24:00:00",
                          "2026-03-01T12:60:00",
                          "2026-03-01T12:00:60",
                          "2026-03-01T12:00",
                          "2026-03-01T12:00:00ZZ",
                          "2026-03-01Z",
                          "2026-03-01X12:00:00",
                          " 2026-03-01",
                          "20260301",
                          "12345",
                          "1.5",
                          "-5"}) {
    EXPECT_FALSE(ParseTimestamp(bad).has_value()) << bad;
  }
  EXPECT_TRUE(ParseTimestamp("2024-02-29").has_value());
  EXPECT_TRUE(ParseTimestamp("2000-02-29").has_value());
}

TEST(TimestampTest, EveryDayFrom1600To2400RoundTrips) {
  // Consecutive days must format as consecutive calendar dates, and parse back.
  const int64_t first = *ParseTimestamp("1600-01-01");
  const int64_t last = *ParseTimestamp("2400-12-31");
  int leap_days = 0;
  for (int64_t t = first; t <= last; t += 86400) {
    const std::string text = FormatTimestamp(t);
    ASSERT_EQ(ParseTimestamp(text), t) << text;
    if (text.substr(5, 5) == "02-29") ++leap_days;
  }
  // 1600..2400: 801 years, 195 leap years (1700, 1800, 1900, 2100, 2200, 2300 are not).
  EXPECT_EQ(leap_days, 195);
}

TEST(TimestampTest, AgreesWithTimegm) {
  for (int year : {1901, 1950, 1969, 1970, 1999, 2000, 2024, 2026, 2038, 2100}) {
    for (int month = 1; month <= 12; ++month) {
      std::tm tm{};
      tm.tm_year = year - 1900;
      tm.tm_mon = month - 1;
      tm.tm_mday = 28;
      tm.tm_hour = 7;
      tm.tm_min = 8;
      tm.tm_sec = 9;
      char text[32];
      std::snprintf(text, sizeof(text), "%04d-%02d-28T07:08:09Z", year, month);
      EXPECT_EQ(ParseTimestamp(text), static_cast<int64_t>(timegm(&tm))) << text;
    }
  }
}

TEST(TimestampTest, ExpandedYearsRoundTrip) {
  EXPECT_EQ(FormatTimestamp(-62167219200), "0000-01-01T00:00:00Z");
  EXPECT_EQ(FormatTimestamp(-62167219201), "-0001-12-31T23:59:59Z");
  EXPECT_EQ(ParseTimestamp("-0001-12-31T23:59:59Z"), -62167219201);
  EXPECT_EQ(FormatTimestamp(253402300800), "+10000-01-01T00:00:00Z");
  EXPECT_EQ(ParseTimestamp("+10000-01-01T00:00:00Z"), 253402300800);
  for (int64_t t : {int64_t{-1}, int64_t{-86399}, int64_t{-86400}, int64_t{-86401}, int64_t{4102444799}}) {
    EXPECT_EQ(ParseTimestamp(FormatTimestamp(t)), t) << t;
  }
}

TEST(TimestampTest, FormatsExtremesWithoutOverflow) {
  // Not parseable back (the year has more than 9 digits), but must not crash or overflow.
  EXPECT_FALSE(FormatTimestamp(std::numeric_limits<int64_t>::min()).empty());
  EXPECT_FALSE(FormatTimestamp(std::numeric_limits<int64_t>::max()).empty());
  EXPECT_EQ(FormatTimestamp(std::numeric_limits<int64_t>::max()).back(), 'Z');
}

}  // namespace
}  // namespace takt::frame
