#include "sim/weld.h"

#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <set>
#include <sstream>

#include "frame/csv.h"
#include "frame/table_testing.h"

namespace takt::sim {
namespace {

WeldOptions Small(uint64_t seed = 7) {
  WeldOptions o;
  o.robots = 6;
  o.plants = 2;
  o.days = 3;
  o.seed = seed;
  return o;
}

std::string Csv(const WeldOptions& o) {
  std::ostringstream out;
  auto s = WriteWeldCsv(o, out);
  EXPECT_TRUE(s.has_value()) << s.error().ToString();
  return out.str();
}

TEST(WeldTest, SameSeedGivesTheSameBytes) {
  const std::string a = Csv(Small(7));
  EXPECT_EQ(a, Csv(Small(7)));
  EXPECT_NE(a, Csv(Small(8)));
}

TEST(WeldTest, HeaderAndRowCount) {
  const WeldOptions o = Small();
  const std::string csv = Csv(o);
  std::istringstream in(csv);
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header,
            "timestamp,plant,robot_serial,motor_current_a,motor_temp_c,weld_current_ka,weld_voltage_v,"
            "electrode_force_kn,cycle_time_s,tip_dress_count,fails_within_24h");
  size_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  EXPECT_EQ(lines, static_cast<size_t>(o.robots * o.days * 24));
  std::istringstream again(csv);
  std::getline(again, header);
  std::string first;
  std::getline(again, first);
  EXPECT_EQ(first.substr(0, 31), "2026-01-01T00:00:00Z,wolfsburg,");
}

TEST(WeldTest, CsvAndTableHoldTheSameData) {
  const WeldOptions o = Small();
  auto table = GenerateWeld(o);
  ASSERT_TRUE(table.has_value()) << table.error().ToString();
  ASSERT_TRUE(table->Validate().has_value());
  ASSERT_EQ(table->num_rows(), static_cast<size_t>(o.robots * o.days * 24));
  ASSERT_EQ(table->num_columns(), kWeldColumns.size());
  for (size_t i = 0; i < kWeldColumns.size(); ++i) EXPECT_EQ(table->columns[i].field.name, kWeldColumns[i]);
  auto parsed = frame::ReadCsv(Csv(o));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
  frame::testing::ExpectTablesEqual(*table, *parsed);
}

TEST(WeldTest, PositiveRateIsInRangeAndWarningsPrecedeFailures) {
  WeldOptions o;
  o.robots = 60;
  o.plants = 2;
  o.days = 30;
  auto t = GenerateWeld(o);
  ASSERT_TRUE(t.has_value());
  const auto& label = t->Find("fails_within_24h")->ints;
  const auto& serial = t->Find("robot_serial")->strings;
  double positives = 0;
  for (int64_t v : label) positives += static_cast<double>(v);
  const double rate = positives / static_cast<double>(label.size());
  EXPECT_GE(rate, 0.03);
  EXPECT_LE(rate, 0.08);
  // Per robot (rows are time-major, robot-minor), a run of positives lasts at
  // most 24 hours, and every robot keeps reporting after its failures.
  size_t failures = 0;
  for (int r = 0; r < o.robots; ++r) {
    int run = 0;
    for (size_t row = static_cast<size_t>(r); row < label.size(); row += static_cast<size_t>(o.robots)) {
      ASSERT_EQ(serial[row], serial[static_cast<size_t>(r)]);
      if (label[row] == 1) {
        ++run;
        ASSERT_LE(run, 24);
      } else {
        if (run > 0) ++failures;
        run = 0;
      }
    }
  }
  EXPECT_GT(failures, static_cast<size_t>(o.robots / 2));
}

TEST(WeldTest, ValuesAreFiniteAndPlausible) {
  WeldOptions o;
  o.robots = 40;
  o.plants = 5;
  o.days = 20;
  o.seed = 3;
  auto t = GenerateWeld(o);
  ASSERT_TRUE(t.has_value());
  struct Range {
    const char* column;
    double lo, hi;
  };
  const Range ranges[] = {{"motor_current_a", 0.5, 40},   {"motor_temp_c", -20, 120},
                          {"weld_current_ka", 0.5, 25},   {"weld_voltage_v", 0.5, 20},
                          {"electrode_force_kn", 0.2, 8}, {"cycle_time_s", 10, 150}};
  for (const Range& r : ranges) {
    SCOPED_TRACE(r.column);
    const frame::Column* c = t->Find(r.column);
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(c->field.type, frame::Type::kFloat64);
    double sum = 0;
    for (double v : c->doubles) {
      ASSERT_TRUE(std::isfinite(v));
      ASSERT_GE(v, r.lo);
      ASSERT_LE(v, r.hi);
      sum += v;
    }
    const double mean = sum / static_cast<double>(c->doubles.size());
    EXPECT_GT(mean, r.lo * 1.5);
    EXPECT_LT(mean, r.hi / 1.5);
  }
  for (int64_t v : t->Find("tip_dress_count")->ints) {
    ASSERT_GE(v, 0);
    ASSERT_LT(v, 300);
  }
  for (int64_t v : t->Find("fails_within_24h")->ints) ASSERT_TRUE(v == 0 || v == 1);
  const auto& ts = t->Find("timestamp")->ints;
  EXPECT_EQ(ts.front(), o.start);
  EXPECT_EQ(ts.back(), o.start + (o.days * 24 - 1) * 3600);

  std::set<std::string> plants(t->Find("plant")->strings.begin(), t->Find("plant")->strings.end());
  EXPECT_EQ(plants, (std::set<std::string>{"wolfsburg", "zwickau", "emden", "chattanooga", "plant-5"}));
  const std::regex serial("WG-[0-9]{4}-[0-9A-F]{4}");
  std::set<std::string> serials;
  for (const std::string& s : t->Find("robot_serial")->strings) {
    ASSERT_TRUE(std::regex_match(s, serial)) << s;
    serials.insert(s);
  }
  EXPECT_EQ(serials.size(), static_cast<size_t>(o.robots));
}

TEST(WeldTest, AddingRobotsLeavesExistingRobotsAlone) {
  WeldOptions few = Small();
  WeldOptions more = few;
  more.robots = 10;
  auto a = GenerateWeld(few);
  auto b = GenerateWeld(more);
  ASSERT_TRUE(a.has_value() && b.has_value());
  // Robot 3 (index 2) is row 2 of every hour in both.
  for (size_t h = 0; h < static_cast<size_t>(few.days * 24); ++h) {
    const size_t ra = h * 6 + 2;
    const size_t rb = h * 10 + 2;
    ASSERT_EQ(a->Find("robot_serial")->strings[ra], b->Find("robot_serial")->strings[rb]);
    ASSERT_EQ(a->Find("motor_temp_c")->doubles[ra], b->Find("motor_temp_c")->doubles[rb]);
    ASSERT_EQ(a->Find("fails_within_24h")->ints[ra], b->Find("fails_within_24h")->ints[rb]);
  }
}

TEST(WeldTest, ReportsProgress) {
  WeldOptions o = Small();
  o.robots = 30;
  o.days = 30;  // 21,600 rows
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  std::ostringstream out;
  ASSERT_TRUE(WriteWeldCsv(o, out, [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); }));
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0], std::make_pair(uint64_t{10000}, uint64_t{21600}));
  EXPECT_EQ(calls[1], std::make_pair(uint64_t{20000}, uint64_t{21600}));
  EXPECT_EQ(calls[2], std::make_pair(uint64_t{21600}, uint64_t{21600}));
}

TEST(WeldTest, RejectsBadOptions) {
  struct Case {
    WeldOptions options;
    const char* names;
  };
  auto with = [](auto change) {
    WeldOptions o;
    change(o);
    return o;
  };
  const Case cases[] = {
      {with([](WeldOptions& o) { o.robots = 0; }), "robots"},
      {with([](WeldOptions& o) { o.robots = 100001; }), "robots"},
      {with([](WeldOptions& o) { o.plants = 0; }), "plants"},
      {with([](WeldOptions& o) { o.robots = 2; }), "plants"},  // 3 plants > 2 robots
      {with([](WeldOptions& o) { o.days = 0; }), "days"},
      {with([](WeldOptions& o) { o.days = 3651; }), "days"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.names);
    auto s = ValidateWeldOptions(c.options);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
    EXPECT_EQ(s.error().message().rfind(c.names, 0), 0u) << s.error().message();
    std::ostringstream out;
    auto w = WriteWeldCsv(c.options, out);
    ASSERT_FALSE(w.has_value());
    EXPECT_EQ(w.error().code(), Code::kInvalidArgument);
    EXPECT_TRUE(out.str().empty());
    auto g = GenerateWeld(c.options);
    ASSERT_FALSE(g.has_value());
    EXPECT_EQ(g.error().code(), Code::kInvalidArgument);
  }
  EXPECT_TRUE(ValidateWeldOptions(WeldOptions{}).has_value());
}

TEST(WeldTest, TooLargeForATable) {
  WeldOptions o;
  o.robots = 100000;
  o.days = 3;  // 7.2 million rows
  auto t = GenerateWeld(o);
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), Code::kInvalidArgument);
}

TEST(WeldTest, FailingStreamIsInternal) {
  std::ostringstream out;
  out.setstate(std::ios::badbit);
  auto s = WriteWeldCsv(Small(), out);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kInternal);
}

}  // namespace
}  // namespace takt::sim
