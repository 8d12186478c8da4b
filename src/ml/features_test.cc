#include "ml/features.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

namespace takt::ml {
namespace {

using frame::Column;
using frame::Table;
using frame::Type;

Column Strings(std::string name, std::vector<std::string> v) {
  Column c;
  c.field = {std::move(name), Type::kString, false};
  c.strings = std::move(v);
  return c;
}
Column Ints(std::string name, std::vector<int64_t> v, Type type = Type::kInt64) {
  Column c;
  c.field = {std::move(name), type, false};
  c.ints = std::move(v);
  return c;
}
Column Doubles(std::string name, std::vector<double> v) {
  Column c;
  c.field = {std::move(name), Type::kFloat64, false};
  c.doubles = std::move(v);
  return c;
}

std::vector<double> Values(const Table& t, std::string_view name) {
  const Column* c = t.Find(name);
  EXPECT_NE(c, nullptr) << name;
  return c == nullptr ? std::vector<double>{} : c->doubles;
}

// One robot, four hours: x = 1, 2, 4, 8.
Table OneRobot() {
  Table t;
  t.columns.push_back(Strings("robot", {"r1", "r1", "r1", "r1"}));
  t.columns.push_back(Ints("t", {0, 3600, 7200, 10800}, Type::kTimestamp));
  t.columns.push_back(Doubles("x", {1, 2, 4, 8}));
  t.columns.push_back(Ints("y", {0, 0, 1, 1}));
  return t;
}

FeatureSpec Spec(std::vector<int> windows) {
  FeatureSpec s;
  s.entity_column = "robot";
  s.time_column = "t";
  s.columns = {"x"};
  s.windows = std::move(windows);
  return s;
}

TEST(FeaturesTest, HandComputedWindows) {
  FeatureSpec spec = Spec({3});
  spec.label_column = "y";
  spec.keep_columns = {"robot", "t"};
  auto f = ComputeRollingFeatures(OneRobot(), spec);
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  ASSERT_TRUE(f->Validate().has_value());
  std::vector<std::string> names;
  for (const Column& c : f->columns) names.push_back(c.field.name);
  EXPECT_EQ(names, (std::vector<std::string>{"robot", "t", "y", "x", "x_mean_3", "x_std_3", "x_min_3",
                                             "x_max_3", "x_slope_3", "x_delta_3"}));
  EXPECT_EQ(f->Find("t")->field.type, Type::kTimestamp);
  EXPECT_EQ(f->Find("y")->ints, (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(Values(*f, "x"), (std::vector<double>{1, 2, 4, 8}));

  // Windows: {1}, {1,2}, {1,2,4}, {2,4,8}.
  const auto mean = Values(*f, "x_mean_3");
  EXPECT_DOUBLE_EQ(mean[0], 1);
  EXPECT_DOUBLE_EQ(mean[1], 1.5);
  EXPECT_DOUBLE_EQ(mean[2], 7.0 / 3);
  EXPECT_DOUBLE_EQ(mean[3], 14.0 / 3);
  const auto sd = Values(*f, "x_std_3");  // population standard deviation
  EXPECT_DOUBLE_EQ(sd[0], 0);
  EXPECT_DOUBLE_EQ(sd[1], 0.5);
  EXPECT_NEAR(sd[2], std::sqrt(14.0 / 9), 1e-12);  // ((4/3)^2 + (1/3)^2 + (5/3)^2) / 3
  EXPECT_NEAR(sd[3], std::sqrt(56.0 / 9), 1e-12);  // ((8/3)^2 + (2/3)^2 + (10/3)^2) / 3
  EXPECT_EQ(Values(*f, "x_min_3"), (std::vector<double>{1, 1, 1, 2}));
  EXPECT_EQ(Values(*f, "x_max_3"), (std::vector<double>{1, 2, 4, 8}));
  const auto slope = Values(*f, "x_slope_3");  // least squares over positions 0, 1, 2
  EXPECT_DOUBLE_EQ(slope[0], 0);
  EXPECT_DOUBLE_EQ(slope[1], 1);
  EXPECT_DOUBLE_EQ(slope[2], 1.5);  // (1, 2, 4): ((-1)(-4/3) + (1)(5/3)) / 2
  EXPECT_DOUBLE_EQ(slope[3], 3);    // (2, 4, 8): ((-1)(-8/3) + (1)(10/3)) / 2
  const auto delta = Values(*f, "x_delta_3");
  EXPECT_DOUBLE_EQ(delta[0], 0);
  EXPECT_DOUBLE_EQ(delta[1], 0.5);
  EXPECT_DOUBLE_EQ(delta[2], 4 - 7.0 / 3);
  EXPECT_DOUBLE_EQ(delta[3], 8 - 14.0 / 3);
}

TEST(FeaturesTest, SeveralWindowsAndIntegerColumns) {
  Table t = OneRobot();
  t.columns[2] = Ints("x", {1, 2, 4, 8});
  auto f = ComputeRollingFeatures(t, Spec({1, 2}));
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  ASSERT_EQ(f->num_columns(), 13u);  // x + 2 windows x 6 statistics
  EXPECT_EQ(f->Find("x")->field.type, Type::kFloat64);
  EXPECT_EQ(Values(*f, "x_mean_1"), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_EQ(Values(*f, "x_std_1"), (std::vector<double>{0, 0, 0, 0}));
  EXPECT_EQ(Values(*f, "x_mean_2"), (std::vector<double>{1, 1.5, 3, 6}));
  EXPECT_EQ(Values(*f, "x_slope_2"), (std::vector<double>{0, 1, 2, 4}));
  EXPECT_EQ(Values(*f, "x_min_2"), (std::vector<double>{1, 1, 2, 4}));
}

TEST(FeaturesTest, NullsAreLeftOutOfWindows) {
  Table t = OneRobot();
  t.columns[2].field.nullable = true;
  t.columns[2].valid = {1, 0, 1, 1};
  auto f = ComputeRollingFeatures(t, Spec({3}));
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  EXPECT_TRUE(std::isnan(Values(*f, "x")[1]));
  EXPECT_TRUE(std::isnan(Values(*f, "x_delta_3")[1]));
  EXPECT_DOUBLE_EQ(Values(*f, "x_mean_3")[1], 1);
  EXPECT_DOUBLE_EQ(Values(*f, "x_mean_3")[2], 2.5);   // {1, -, 4}
  EXPECT_DOUBLE_EQ(Values(*f, "x_slope_3")[2], 1.5);  // (0, 1) and (2, 4)
  EXPECT_DOUBLE_EQ(Values(*f, "x_mean_3")[3], 6);     // {-, 4, 8}
  EXPECT_DOUBLE_EQ(Values(*f, "x_slope_3")[3], 4);    // (1, 4) and (2, 8)

  t.columns[2].valid = {0, 1, 1, 1};
  f = ComputeRollingFeatures(t, Spec({1}));
  ASSERT_TRUE(f.has_value());
  EXPECT_TRUE(std::isnan(Values(*f, "x_mean_1")[0]));  // a window without values
  EXPECT_TRUE(std::isnan(Values(*f, "x_std_1")[0]));
}

// Two robots, rows shuffled and interleaved: the output is sorted by (entity,
// time) and each robot's features are those it has on its own.
TEST(FeaturesTest, InterleavedUnsortedEntities) {
  Table t;
  t.columns.push_back(Strings("robot", {"b", "a", "b", "a", "a", "b", "a"}));
  t.columns.push_back(Ints("t", {20, 30, 10, 10, 20, 30, 40}));
  t.columns.push_back(Doubles("x", {200, 3, 100, 1, 2, 300, 5}));
  FeatureSpec spec = Spec({2});
  spec.keep_columns = {"robot", "t"};
  auto f = ComputeRollingFeatures(t, spec);
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  EXPECT_EQ(f->Find("robot")->strings, (std::vector<std::string>{"a", "a", "a", "a", "b", "b", "b"}));
  EXPECT_EQ(f->Find("t")->ints, (std::vector<int64_t>{10, 20, 30, 40, 10, 20, 30}));
  EXPECT_EQ(Values(*f, "x"), (std::vector<double>{1, 2, 3, 5, 100, 200, 300}));
  EXPECT_EQ(Values(*f, "x_mean_2"), (std::vector<double>{1, 1.5, 2.5, 4, 100, 150, 250}));
  EXPECT_EQ(Values(*f, "x_slope_2"), (std::vector<double>{0, 1, 1, 2, 0, 100, 100}));
}

TEST(FeaturesTest, NoLookAhead) {
  // Three robots, 30 hours each, time-major like the simulator's output.
  Table t;
  t.columns.push_back(Strings("robot", {}));
  t.columns.push_back(Ints("t", {}, Type::kTimestamp));
  t.columns.push_back(Doubles("x", {}));
  for (int h = 0; h < 30; ++h) {
    for (int r = 0; r < 3; ++r) {
      t.columns[0].strings.push_back("r" + std::to_string(r));
      t.columns[1].ints.push_back(h * 3600);
      t.columns[2].doubles.push_back(std::sin(h * 0.7 + r) * 10 + r);
    }
  }
  FeatureSpec spec = Spec({6, 24});
  auto before = ComputeRollingFeatures(t, spec);
  ASSERT_TRUE(before.has_value());
  // Change robot r1 at hour 20: sorted, its rows are 30..59, hour 20 is row 50.
  t.columns[2].doubles[20 * 3 + 1] += 1000;
  auto after = ComputeRollingFeatures(t, spec);
  ASSERT_TRUE(after.has_value());
  for (size_t c = 0; c < before->num_columns(); ++c) {
    SCOPED_TRACE(before->columns[c].field.name);
    for (size_t row = 0; row < 90; ++row) {
      const double a = before->columns[c].doubles[row];
      const double b = after->columns[c].doubles[row];
      if (row >= 50 && row < 60) continue;  // r1 from hour 20 on may change
      ASSERT_EQ(a, b) << "row " << row;
    }
    if (before->columns[c].field.name.find("_min_") == std::string::npos) {
      EXPECT_NE(before->columns[c].doubles[50], after->columns[c].doubles[50]);
    }
  }
}

TEST(FeaturesTest, EveryNumericColumnByDefault) {
  Table t = OneRobot();
  t.columns.push_back(Strings("plant", {"p", "p", "p", "p"}));
  t.columns.push_back(Ints("ok", {1, 0, 1, 1}, Type::kBool));
  t.columns.push_back(Ints("seen_at", {1, 2, 3, 4}, Type::kTimestamp));
  t.columns.push_back(Ints("line", {7, 7, 7, 7}));
  FeatureSpec spec;
  spec.entity_column = "robot";
  spec.time_column = "t";
  spec.windows = {};
  spec.label_column = "y";
  spec.keep_columns = {"plant", "line"};
  auto f = ComputeRollingFeatures(t, spec);
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  std::vector<std::string> names;
  for (const Column& c : f->columns) names.push_back(c.field.name);
  EXPECT_EQ(names, (std::vector<std::string>{"plant", "line", "y", "x", "ok"}));
}

TEST(FeaturesTest, TimeAsIsoText) {
  Table t;
  t.columns.push_back(Ints("robot", {2, 1, 1}));
  t.columns.push_back(Strings("t", {"2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", "2026-01-01T00:00:00Z"}));
  t.columns.push_back(Doubles("x", {9, 2, 1}));
  auto f = ComputeRollingFeatures(t, Spec({2}));
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  EXPECT_EQ(Values(*f, "x"), (std::vector<double>{1, 2, 9}));

  t.columns[1].strings[0] = "yesterday";
  auto bad = ComputeRollingFeatures(t, Spec({2}));
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.error().message().find("yesterday"), std::string::npos);
}

TEST(FeaturesTest, ErrorsNameTheProblem) {
  struct Case {
    const char* what;
    FeatureSpec spec;
    const char* mentions;
  };
  auto spec = [](auto change) {
    FeatureSpec s = Spec({3});
    change(s);
    return s;
  };
  Table t = OneRobot();
  t.columns.push_back(Strings("plant", {"p", "p", "p", "p"}));
  const Case cases[] = {
      {"unknown column", spec([](FeatureSpec& s) {
         s.columns = {"x", "nope"};
       }),
       "nope"},
      {"non-numeric column", spec([](FeatureSpec& s) { s.columns = {"plant"}; }), "plant"},
      {"missing entity", spec([](FeatureSpec& s) { s.entity_column = "serial"; }), "serial"},
      {"missing time", spec([](FeatureSpec& s) { s.time_column = "when"; }), "when"},
      {"no time", spec([](FeatureSpec& s) { s.time_column = ""; }), "time"},
      {"missing label", spec([](FeatureSpec& s) { s.label_column = "fails"; }), "fails"},
      {"missing keep", spec([](FeatureSpec& s) { s.keep_columns = {"site"}; }), "site"},
      {"bad window", spec([](FeatureSpec& s) { s.windows = {0}; }), "window"},
      {"twice", spec([](FeatureSpec& s) { s.keep_columns = {"x"}; }), "'x'"},
      {"string time", spec([](FeatureSpec& s) { s.time_column = "plant"; }), "'p'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto f = ComputeRollingFeatures(t, c.spec);
    ASSERT_FALSE(f.has_value());
    EXPECT_EQ(f.error().code(), Code::kInvalidArgument);
    EXPECT_NE(f.error().message().find(c.mentions), std::string::npos) << f.error().message();
  }

  Table nulls = OneRobot();
  nulls.columns[0].field.nullable = true;
  nulls.columns[0].valid = {1, 1, 0, 1};
  auto f = ComputeRollingFeatures(nulls, Spec({3}));
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.error().code(), Code::kInvalidArgument);
  EXPECT_NE(f.error().message().find("null at row 3"), std::string::npos) << f.error().message();

  Table ragged = OneRobot();
  ragged.columns[2].doubles.pop_back();
  f = ComputeRollingFeatures(ragged, Spec({3}));
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.error().code(), Code::kInvalidArgument);
}

TEST(FeaturesTest, LatestPerEntity) {
  Table t;
  t.columns.push_back(Strings("robot", {"b", "a", "b", "a", "c"}));
  t.columns.push_back(Ints("t", {20, 30, 10, 40, 5}, Type::kTimestamp));
  t.columns.push_back(Doubles("x", {2, 3, 1, 4, 9}));
  auto latest = LatestPerEntity(t, "robot", "t");
  ASSERT_TRUE(latest.has_value()) << latest.error().ToString();
  ASSERT_TRUE(latest->Validate().has_value());
  EXPECT_EQ(latest->Find("robot")->strings, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(latest->Find("t")->ints, (std::vector<int64_t>{40, 20, 5}));
  EXPECT_EQ(latest->Find("x")->doubles, (std::vector<double>{4, 2, 9}));
  EXPECT_EQ(latest->Find("t")->field.type, Type::kTimestamp);

  auto missing = LatestPerEntity(t, "serial", "t");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kInvalidArgument);
  EXPECT_NE(missing.error().message().find("serial"), std::string::npos);
}

}  // namespace
}  // namespace takt::ml
