#include "frame/stats.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace takt::frame {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

Column IntCol(std::string name, std::vector<int64_t> v, std::vector<uint8_t> valid = {},
              Type type = Type::kInt64) {
  Column c;
  c.field = {std::move(name), type, !valid.empty()};
  c.ints = std::move(v);
  c.valid = std::move(valid);
  return c;
}

Column DoubleCol(std::string name, std::vector<double> v, std::vector<uint8_t> valid = {}) {
  Column c;
  c.field = {std::move(name), Type::kFloat64, !valid.empty()};
  c.doubles = std::move(v);
  c.valid = std::move(valid);
  return c;
}

Column StringCol(std::string name, std::vector<std::string> v, std::vector<uint8_t> valid = {}) {
  Column c;
  c.field = {std::move(name), Type::kString, !valid.empty()};
  c.strings = std::move(v);
  c.valid = std::move(valid);
  return c;
}

const ColumnStats& Named(const std::vector<ColumnStats>& stats, std::string_view name) {
  for (const auto& s : stats) {
    if (s.name == name) return s;
  }
  ADD_FAILURE() << "no column " << name;
  static const ColumnStats none;
  return none;
}

int64_t HistogramTotal(const ColumnStats& s) {
  int64_t total = 0;
  for (const auto& b : s.histogram) total += b.count;
  return total;
}

// Fraction of `sorted` at or below `v` (midpoint of ties).
double RankOf(const std::vector<double>& sorted, double v) {
  const auto lo = std::lower_bound(sorted.begin(), sorted.end(), v) - sorted.begin();
  const auto hi = std::upper_bound(sorted.begin(), sorted.end(), v) - sorted.begin();
  return (static_cast<double>(lo) + static_cast<double>(hi)) / 2.0 / static_cast<double>(sorted.size());
}

void ExpectQuantilesWithin(const ColumnStats& s, std::vector<double> data, double max_rank_error) {
  std::sort(data.begin(), data.end());
  ASSERT_EQ(s.quantiles.size(), 7u) << s.name;
  for (const auto& q : s.quantiles) {
    EXPECT_NEAR(RankOf(data, q.value), q.q, max_rank_error) << s.name << " q=" << q.q << " value=" << q.value;
  }
}

std::vector<Table> Batches(const Table& t, size_t batch_rows) {
  std::vector<Table> out;
  const size_t n = t.num_rows();
  for (size_t off = 0; off < n; off += batch_rows) {
    const size_t len = std::min(batch_rows, n - off);
    Table part;
    for (const Column& c : t.columns) {
      Column p;
      p.field = c.field;
      auto slice = [&](const auto& v) {
        return std::decay_t<decltype(v)>(v.begin() + off, v.begin() + off + len);
      };
      if (!c.ints.empty()) p.ints = slice(c.ints);
      if (!c.doubles.empty()) p.doubles = slice(c.doubles);
      if (!c.strings.empty()) p.strings = slice(c.strings);
      if (!c.valid.empty()) p.valid = slice(c.valid);
      part.columns.push_back(std::move(p));
    }
    out.push_back(std::move(part));
  }
  return out;
}

void AddInBatches(StatsBuilder& b, const Table& t, size_t batch_rows) {
  for (const Table& part : Batches(t, batch_rows)) b.Add(part);
}

// A mixed table: every type, nulls, NaNs, low- and high-cardinality strings.
Table MixedTable(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(50.0, 10.0);
  Column f = DoubleCol("force", {}, {});
  Column i = IntCol("cycles", {});
  Column small = IntCol("station", {});
  Column ts = IntCol("at", {}, {}, Type::kTimestamp);
  Column b = IntCol("ok", {}, {}, Type::kBool);
  Column s = StringCol("machine", {});
  Column id = StringCol("serial", {});
  for (size_t r = 0; r < n; ++r) {
    const double x = normal(rng);
    f.doubles.push_back(r % 97 == 5 ? kNaN : x);
    f.valid.push_back(r % 31 != 3);
    i.ints.push_back(static_cast<int64_t>(rng() % 100000) - 5000);
    small.ints.push_back(static_cast<int64_t>(rng() % 7));
    ts.ints.push_back(1767225600 + static_cast<int64_t>(r) * 10);
    b.ints.push_back(rng() % 3 == 0);
    b.valid.push_back(r % 11 != 0);
    s.strings.push_back("M-" + std::to_string(rng() % 40));
    s.valid.push_back(r % 13 != 1);
    id.strings.push_back("W-" + std::to_string(r * 7919 % 1000003));
  }
  f.field.nullable = b.field.nullable = s.field.nullable = true;
  Table t;
  t.columns = {f, i, small, ts, b, s, id};
  return t;
}

// ------------------------------------------------------------------ exact, by hand

TEST(StatsTest, ExactFieldsOnSmallTable) {
  Table t;
  t.columns.push_back(IntCol("n", {4, 1, 3, 99, 2, 5}, {1, 1, 1, 0, 1, 1}));
  t.columns.push_back(DoubleCol("x", {1.5, kNaN, -2.5, 4.0, 7.0, 0.0}, {1, 1, 1, 1, 0, 1}));
  t.columns.push_back(StringCol("s", {"bb", "a", "bb", "", "ccc", "bb"}, {1, 1, 1, 0, 1, 1}));
  t.columns.push_back(IntCol("b", {1, 0, 1, 1, 0, 1}, {}, Type::kBool));
  t.columns.push_back(IntCol("t", {1767225600, 1767225660, 1767225720, 1767225600, 1767225600, 1767225600},
                             {}, Type::kTimestamp));
  ASSERT_TRUE(t.Validate().has_value());

  StatsBuilder b(t.schema());
  b.Add(t);
  EXPECT_EQ(b.rows(), 6);
  const auto stats = b.Finish();
  ASSERT_EQ(stats.size(), 5u);

  const ColumnStats& n = stats[0];
  EXPECT_EQ(n.name, "n");
  EXPECT_EQ(n.type, Type::kInt64);
  EXPECT_EQ(n.count, 6);
  EXPECT_EQ(n.nulls, 1);
  EXPECT_EQ(n.nans, 0);
  EXPECT_EQ(n.distinct, 5);
  EXPECT_EQ(n.min, 1.0);
  EXPECT_EQ(n.max, 5.0);
  EXPECT_DOUBLE_EQ(*n.mean, 3.0);
  EXPECT_DOUBLE_EQ(*n.stddev, std::sqrt(2.0));  // population: (4+1+0+1+4)/5
  ASSERT_EQ(n.quantiles.size(), 7u);
  EXPECT_EQ(n.quantiles[3].q, 0.5);
  EXPECT_DOUBLE_EQ(n.quantiles[3].value, 3.0);
  EXPECT_DOUBLE_EQ(n.quantiles[2].value, 2.0);   // 0.25 * 4 = 1 -> second value
  EXPECT_DOUBLE_EQ(n.quantiles[0].value, 1.04);  // 0.01 * 4 = 0.04 between 1 and 2
  // Five integer values spanning 1..5: one bin per value.
  ASSERT_EQ(n.histogram.size(), 5u);
  for (int v = 1; v <= 5; ++v) {
    EXPECT_EQ(n.histogram[v - 1].lower, v);
    EXPECT_EQ(n.histogram[v - 1].upper, v + 1);
    EXPECT_EQ(n.histogram[v - 1].count, 1);
  }
  // int64 with <= 20 distinct values gets top values, ties by value.
  ASSERT_EQ(n.top.size(), 5u);
  EXPECT_EQ(n.top[0].value, "1");
  EXPECT_EQ(n.top[4].value, "5");
  EXPECT_TRUE(n.top_exact);
  EXPECT_FALSE(n.min_length.has_value());

  const ColumnStats& x = stats[1];
  EXPECT_EQ(x.nulls, 1);
  EXPECT_EQ(x.nans, 1);
  EXPECT_EQ(x.distinct, 4);  // 1.5, -2.5, 4, 0
  EXPECT_EQ(x.min, -2.5);
  EXPECT_EQ(x.max, 4.0);
  EXPECT_DOUBLE_EQ(*x.mean, 0.75);
  const double var = (0.75 * 0.75 + 3.25 * 3.25 + 3.25 * 3.25 + 0.75 * 0.75) / 4;
  EXPECT_DOUBLE_EQ(*x.stddev, std::sqrt(var));
  EXPECT_DOUBLE_EQ(x.quantiles[3].value, 0.75);  // between 0 and 1.5
  ASSERT_EQ(x.histogram.size(), 20u);
  EXPECT_EQ(x.histogram.front().lower, -2.5);
  EXPECT_EQ(x.histogram.back().upper, 4.0);
  EXPECT_EQ(x.histogram.front().count, 1);
  EXPECT_EQ(x.histogram.back().count, 1);  // the max sits in the last bin
  EXPECT_EQ(HistogramTotal(x), 4);
  EXPECT_TRUE(x.top.empty());

  const ColumnStats& s = stats[2];
  EXPECT_EQ(s.nulls, 1);
  EXPECT_EQ(s.distinct, 3);
  ASSERT_EQ(s.top.size(), 3u);
  EXPECT_EQ(s.top[0], (CategoryCount{"bb", 3}));
  EXPECT_EQ(s.top[1], (CategoryCount{"a", 1}));
  EXPECT_EQ(s.top[2], (CategoryCount{"ccc", 1}));
  EXPECT_TRUE(s.top_exact);
  EXPECT_EQ(s.min_length, 1);
  EXPECT_EQ(s.max_length, 3);
  EXPECT_FALSE(s.mean.has_value());
  EXPECT_TRUE(s.quantiles.empty());
  EXPECT_TRUE(s.histogram.empty());

  const ColumnStats& bo = stats[3];
  EXPECT_EQ(bo.nulls, 0);
  EXPECT_EQ(bo.distinct, 2);
  ASSERT_EQ(bo.top.size(), 2u);
  EXPECT_EQ(bo.top[0], (CategoryCount{"true", 4}));
  EXPECT_EQ(bo.top[1], (CategoryCount{"false", 2}));
  EXPECT_FALSE(bo.mean.has_value());

  const ColumnStats& ts = stats[4];
  EXPECT_EQ(ts.type, Type::kTimestamp);
  EXPECT_EQ(ts.distinct, 3);
  EXPECT_EQ(ts.min, 1767225600.0);
  EXPECT_EQ(ts.max, 1767225720.0);
  EXPECT_DOUBLE_EQ(*ts.mean, 1767225630.0);
  EXPECT_EQ(ts.quantiles[3].value, 1767225600.0);
  EXPECT_TRUE(ts.top.empty());  // timestamps get no top values
  EXPECT_EQ(HistogramTotal(ts), 6);
}

TEST(StatsTest, SingleValueColumnHasOneBin) {
  Table t;
  t.columns.push_back(DoubleCol("x", {2.5, 2.5, 2.5}));
  StatsBuilder b;
  b.Add(t);
  const auto s = b.Finish();
  ASSERT_EQ(s[0].histogram.size(), 1u);
  EXPECT_EQ(s[0].histogram[0], (HistogramBin{2.5, 2.5, 3}));
  EXPECT_EQ(*s[0].stddev, 0.0);
  EXPECT_EQ(s[0].distinct, 1);
}

TEST(StatsTest, MoreThanTwentyIntsGetNoTop) {
  std::vector<int64_t> v;
  for (int i = 0; i < 21; ++i) v.push_back(i * 3);
  Table t;
  t.columns.push_back(IntCol("n", v));
  StatsBuilder b;
  b.Add(t);
  const auto s = b.Finish();
  EXPECT_TRUE(s[0].top.empty());
  EXPECT_EQ(s[0].distinct, 21);
  EXPECT_EQ(s[0].histogram.size(), 20u);  // range 0..60: 20 equal-width bins
  EXPECT_EQ(HistogramTotal(s[0]), 21);
}

// ------------------------------------------------------------------ NaN and null

TEST(StatsTest, NanAndNullHandling) {
  Table t;
  t.columns.push_back(DoubleCol("all_nan", {kNaN, kNaN, kNaN}));
  t.columns.push_back(DoubleCol("all_null", {1, 2, 3}, {0, 0, 0}));
  t.columns.push_back(IntCol("int_null", {1, 2, 3}, {0, 0, 0}));
  t.columns.push_back(StringCol("str_null", {"a", "b", "c"}, {0, 0, 0}));
  t.columns.push_back(IntCol("bool_null", {1, 0, 1}, {0, 1, 0}, Type::kBool));
  t.columns.push_back(DoubleCol("mixed", {kNaN, 1.0, -0.0, 0.0}, {1, 0, 1, 1}));
  // Columns of unequal length are not valid tables, but must not crash either:
  StatsBuilder b;
  t.columns.back().doubles.pop_back();
  t.columns.back().doubles.push_back(0.0);
  for (auto& c : t.columns) {
    if (c.size() == 3) {
      if (!c.ints.empty()) c.ints.push_back(0);
      if (!c.doubles.empty()) c.doubles.push_back(kNaN);
      if (!c.strings.empty()) c.strings.push_back("");
      if (!c.valid.empty()) c.valid.push_back(0);
    }
  }
  ASSERT_TRUE(t.Validate().has_value()) << t.Validate().error().ToString();
  b.Add(t);
  const auto s = b.Finish();

  const ColumnStats& nan = Named(s, "all_nan");
  EXPECT_EQ(nan.count, 4);
  EXPECT_EQ(nan.nans, 4);
  EXPECT_EQ(nan.nulls, 0);
  EXPECT_EQ(nan.distinct, 0);
  EXPECT_FALSE(nan.min.has_value());
  EXPECT_FALSE(nan.mean.has_value());
  EXPECT_FALSE(nan.stddev.has_value());
  EXPECT_TRUE(nan.quantiles.empty());
  EXPECT_TRUE(nan.histogram.empty());

  const ColumnStats& null = Named(s, "all_null");
  EXPECT_EQ(null.nulls, 4);
  EXPECT_EQ(null.nans, 0);  // a null NaN is a null
  EXPECT_FALSE(null.max.has_value());

  EXPECT_EQ(Named(s, "int_null").nulls, 4);
  EXPECT_FALSE(Named(s, "int_null").min.has_value());
  EXPECT_TRUE(Named(s, "int_null").top.empty());

  const ColumnStats& str = Named(s, "str_null");
  EXPECT_EQ(str.nulls, 4);
  EXPECT_TRUE(str.top.empty());
  EXPECT_FALSE(str.min_length.has_value());
  EXPECT_EQ(str.distinct, 0);

  const ColumnStats& bo = Named(s, "bool_null");
  EXPECT_EQ(bo.nulls, 3);
  ASSERT_EQ(bo.top.size(), 1u);
  EXPECT_EQ(bo.top[0], (CategoryCount{"false", 1}));

  const ColumnStats& mixed = Named(s, "mixed");
  EXPECT_EQ(mixed.nans, 1);
  EXPECT_EQ(mixed.nulls, 1);
  EXPECT_EQ(mixed.distinct, 1);  // -0.0 and 0.0 are one value
  EXPECT_EQ(*mixed.min, 0.0);
  EXPECT_EQ(HistogramTotal(mixed), 2);
}

TEST(StatsTest, InfinitiesDoNotBreakAnything) {
  Table t;
  t.columns.push_back(DoubleCol("x", {1.0, std::numeric_limits<double>::infinity(), -3.0}));
  t.columns.push_back(DoubleCol("huge", {-1e308, 1e308, 0.0}));
  StatsBuilder b;
  b.Add(t);
  const auto s = b.Finish();
  EXPECT_EQ(s[0].max, std::numeric_limits<double>::infinity());
  EXPECT_EQ(s[0].min, -3.0);
  EXPECT_TRUE(s[0].histogram.empty());
  EXPECT_EQ(HistogramTotal(s[1]), 3);
  EXPECT_EQ(s[1].histogram.front().count, 1);
  EXPECT_EQ(s[1].histogram.back().count, 1);
  const std::string json = StatsToJson(s);
  auto back = StatsFromJson(json);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_FALSE((*back)[0].max.has_value());  // JSON has no infinity: null
  EXPECT_EQ((*back)[1].histogram, s[1].histogram);
  EXPECT_EQ((*back)[1].min, -1e308);
}

TEST(StatsTest, TypeMismatchCountsAsNulls) {
  StatsBuilder b(Schema{{{"x", Type::kInt64, false}}});
  Table t;
  t.columns.push_back(DoubleCol("x", {1.0, 2.0}));
  b.Add(t);
  Table u;
  u.columns.push_back(IntCol("x", {7}));
  b.Add(u);
  const auto s = b.Finish();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].type, Type::kInt64);
  EXPECT_EQ(s[0].count, 3);
  EXPECT_EQ(s[0].nulls, 2);
  EXPECT_EQ(s[0].min, 7.0);
}

// ------------------------------------------------------------------ quantiles, histogram

TEST(StatsTest, QuantilesWithinOnePercentRankError) {
  const size_t n = 1000000;
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> uniform(-100.0, 100.0);
  std::lognormal_distribution<double> lognormal(0.0, 2.0);
  std::exponential_distribution<double> expo(0.01);
  Table t;
  t.columns.push_back(DoubleCol("uniform", {}));
  t.columns.push_back(DoubleCol("lognormal", {}));
  t.columns.push_back(IntCol("exp_int", {}));
  for (size_t i = 0; i < n; ++i) {
    t.columns[0].doubles.push_back(uniform(rng));
    t.columns[1].doubles.push_back(lognormal(rng));
    t.columns[2].ints.push_back(static_cast<int64_t>(expo(rng)));
  }
  StatsBuilder b;
  AddInBatches(b, t, 65536);
  const auto s = b.Finish();
  ExpectQuantilesWithin(s[0], t.columns[0].doubles, 0.01);
  ExpectQuantilesWithin(s[1], t.columns[1].doubles, 0.01);
  std::vector<double> ints(t.columns[2].ints.begin(), t.columns[2].ints.end());
  ExpectQuantilesWithin(s[2], ints, 0.01);
  for (const auto& c : s) {
    EXPECT_EQ(HistogramTotal(c), static_cast<int64_t>(n)) << c.name;
    EXPECT_EQ(c.histogram.size(), 20u);
  }
  // Each bin of the uniform column holds about 1/20 of the values.
  for (const auto& bin : s[0].histogram) EXPECT_NEAR(bin.count, n / 20, n / 200);
  // The lognormal's bins fall off steeply: the first holds most.
  EXPECT_GT(s[1].histogram[0].count, static_cast<int64_t>(n * 0.9));
}

TEST(StatsTest, HistogramSumsToNonNullNonNanCount) {
  const Table t = MixedTable(100000, 7);
  StatsBuilder b;
  AddInBatches(b, t, 8192);
  for (const auto& c : b.Finish()) {
    if (c.histogram.empty()) continue;
    EXPECT_EQ(HistogramTotal(c), c.count - c.nulls - c.nans) << c.name;
    for (size_t i = 1; i < c.histogram.size(); ++i) EXPECT_EQ(c.histogram[i].lower, c.histogram[i - 1].upper);
    EXPECT_EQ(c.histogram.front().lower, *c.min);
  }
}

// ------------------------------------------------------------------ distinct

TEST(StatsTest, DistinctExactWhileSmallEstimatedWithinThreePercent) {
  std::vector<int64_t> ints;
  std::vector<double> doubles;
  std::vector<std::string> strings;
  for (int64_t i = 0; i < 300000; ++i) {
    const int64_t k = (i * 48271) % 100000;  // 100000 distinct values, each three times
    ints.push_back(k * 1000003);
    doubles.push_back(static_cast<double>(k) * 0.001);
    strings.push_back("value-" + std::to_string(k));
  }
  Table t;
  t.columns.push_back(IntCol("i", ints));
  t.columns.push_back(DoubleCol("d", doubles));
  t.columns.push_back(StringCol("s", strings));
  StatsBuilder b;
  AddInBatches(b, t, 50000);
  for (const auto& c : b.Finish()) EXPECT_NEAR(c.distinct, 100000, 3000) << c.name;

  for (int64_t k : {1000, 2000}) {
    std::vector<int64_t> v;
    for (int64_t i = 0; i < 5 * k; ++i) v.push_back(i % k);
    Table small;
    small.columns.push_back(IntCol("i", v));
    StatsBuilder sb;
    sb.Add(small);
    EXPECT_EQ(sb.Finish()[0].distinct, k);
  }
}

// ------------------------------------------------------------------ top values

TEST(StatsTest, TopExactForLowCardinality) {
  std::vector<std::string> v;
  std::map<std::string, int64_t> truth;
  for (int64_t i = 0; i < 100000; ++i) {
    const std::string s = "m" + std::to_string((i * i) % 300);
    v.push_back(s);
    ++truth[s];
  }
  Table t;
  t.columns.push_back(StringCol("s", v));
  StatsBuilder b;
  AddInBatches(b, t, 7000);
  const auto s = b.Finish()[0];
  EXPECT_TRUE(s.top_exact);
  ASSERT_EQ(s.top.size(), 10u);
  std::vector<std::pair<int64_t, std::string>> sorted;
  for (const auto& [k, c] : truth) sorted.push_back({-c, k});
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(s.top[i].value, sorted[i].second);
    EXPECT_EQ(s.top[i].count, -sorted[i].first);
  }
  EXPECT_EQ(s.distinct, static_cast<int64_t>(truth.size()));
}

TEST(StatsTest, TopApproximatelyRightForZipf) {
  const size_t n = 1000000, k = 20000;
  std::vector<double> cdf(k);
  double total = 0;
  for (size_t i = 0; i < k; ++i) cdf[i] = (total += 1.0 / std::pow(static_cast<double>(i + 1), 1.1));
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0.0, total);
  std::vector<std::string> v;
  std::vector<int64_t> truth(k, 0);
  for (size_t i = 0; i < n; ++i) {
    const size_t r = std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin();
    ++truth[std::min(r, k - 1)];
    v.push_back("item-" + std::to_string(std::min(r, k - 1)));
  }
  Table t;
  t.columns.push_back(StringCol("s", v));
  StatsBuilder b;
  AddInBatches(b, t, 65536);
  const auto s = b.Finish()[0];
  EXPECT_FALSE(s.top_exact);
  ASSERT_EQ(s.top.size(), 10u);
  // Rank r is item-r; each reported count is an upper bound, over by at most n / 256.
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(s.top[i].value, "item-" + std::to_string(i));
    EXPECT_GE(s.top[i].count, truth[i]);
    EXPECT_LE(s.top[i].count, truth[i] + static_cast<int64_t>(n / 256));
  }
  EXPECT_NEAR(s.distinct, std::count_if(truth.begin(), truth.end(), [](int64_t c) { return c > 0; }),
              0.03 * k);
}

TEST(StatsTest, LongValuesAreCutAtCharacterBoundary) {
  std::string long_value(300, 'x');
  long_value.replace(255, 2, "\xc3\xa9");  // 'é' across the 256-byte cut
  Table t;
  t.columns.push_back(StringCol("s", {long_value, long_value, "short"}));
  StatsBuilder b;
  b.Add(t);
  const auto s = b.Finish()[0];
  ASSERT_EQ(s.top.size(), 2u);
  EXPECT_EQ(s.top[0].count, 2);
  EXPECT_EQ(s.top[0].value, std::string(255, 'x'));
  EXPECT_EQ(s.max_length, 300);
}

// ------------------------------------------------------------------ merge

void ExpectExactFieldsEqual(const ColumnStats& a, const ColumnStats& b) {
  SCOPED_TRACE(a.name);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.count, b.count);
  EXPECT_EQ(a.nulls, b.nulls);
  EXPECT_EQ(a.nans, b.nans);
  EXPECT_EQ(a.min, b.min);
  EXPECT_EQ(a.max, b.max);
  EXPECT_EQ(a.mean.has_value(), b.mean.has_value());
  if (a.mean && b.mean) {
    EXPECT_NEAR(*a.mean, *b.mean, 1e-9 * std::abs(*a.mean) + 1e-12);
  }
  if (a.stddev && b.stddev) {
    EXPECT_NEAR(*a.stddev, *b.stddev, 1e-9 * *a.stddev + 1e-12);
  }
  EXPECT_EQ(a.min_length, b.min_length);
  EXPECT_EQ(a.max_length, b.max_length);
  EXPECT_EQ(HistogramTotal(a), HistogramTotal(b));
  EXPECT_EQ(a.top_exact, b.top_exact);
  if (a.top_exact) {
    EXPECT_EQ(a.top, b.top);
  }
}

TEST(StatsTest, MergeOfSplitHalvesEqualsOnePass) {
  const Table t = MixedTable(200000, 11);
  StatsBuilder whole;
  AddInBatches(whole, t, 10000);
  StatsBuilder first, second;
  // Split at a row that is not a batch boundary.
  const size_t cut = 123457;
  {
    Table part_a, part_b;
    for (const Column& c : t.columns) {
      Column x, y;
      x.field = y.field = c.field;
      auto split = [&](const auto& v, auto& l, auto& r) {
        if (v.empty()) return;
        l.assign(v.begin(), v.begin() + cut);
        r.assign(v.begin() + cut, v.end());
      };
      split(c.ints, x.ints, y.ints);
      split(c.doubles, x.doubles, y.doubles);
      split(c.strings, x.strings, y.strings);
      split(c.valid, x.valid, y.valid);
      part_a.columns.push_back(std::move(x));
      part_b.columns.push_back(std::move(y));
    }
    AddInBatches(first, part_a, 10000);
    AddInBatches(second, part_b, 10000);
  }
  StatsBuilder ab = first;
  ab.Merge(second);
  StatsBuilder ba = second;
  ba.Merge(first);
  EXPECT_EQ(ab.rows(), 200000);
  const auto w = whole.Finish(), x = ab.Finish(), y = ba.Finish();
  ASSERT_EQ(w.size(), x.size());
  ASSERT_EQ(w.size(), y.size());
  for (size_t i = 0; i < w.size(); ++i) {
    ExpectExactFieldsEqual(w[i], x[i]);
    ExpectExactFieldsEqual(w[i], y[i]);
    EXPECT_NEAR(x[i].distinct, w[i].distinct, 0.03 * w[i].distinct + 1) << w[i].name;
    if (w[i].top_exact) {
      EXPECT_EQ(w[i].distinct, x[i].distinct) << w[i].name;
    }
  }
  // Quantiles of the merged sample stay within 1% rank error of the data.
  std::vector<double> force;
  for (size_t r = 0; r < t.num_rows(); ++r) {
    if (!t.columns[0].IsNull(r) && !std::isnan(t.columns[0].doubles[r]))
      force.push_back(t.columns[0].doubles[r]);
  }
  ExpectQuantilesWithin(Named(x, "force"), force, 0.01);
  ExpectQuantilesWithin(Named(y, "force"), force, 0.01);
  // The serial column (all distinct) went to a summary on both sides.
  EXPECT_FALSE(Named(x, "serial").top_exact);
}

TEST(StatsTest, MergeOfSmallPartsIsExact) {
  // While a column has at most 16384 values the sample is all of them: merged
  // quantiles and histograms are exact too.
  const Table t = MixedTable(6000, 3);
  StatsBuilder whole, a, b, c;
  AddInBatches(whole, t, 6000);
  Table parts[3];
  for (int p = 0; p < 3; ++p) {
    for (const Column& col : t.columns) {
      Column x;
      x.field = col.field;
      auto take = [&](const auto& v, auto& out) {
        if (!v.empty()) out.assign(v.begin() + p * 2000, v.begin() + (p + 1) * 2000);
      };
      take(col.ints, x.ints);
      take(col.doubles, x.doubles);
      take(col.strings, x.strings);
      take(col.valid, x.valid);
      parts[p].columns.push_back(std::move(x));
    }
  }
  a.Add(parts[0]);
  b.Add(parts[1]);
  c.Add(parts[2]);
  b.Merge(c);
  a.Merge(b);
  const auto w = whole.Finish(), m = a.Finish();
  ASSERT_EQ(w.size(), m.size());
  for (size_t i = 0; i < w.size(); ++i) {
    ExpectExactFieldsEqual(w[i], m[i]);
    EXPECT_EQ(w[i].quantiles, m[i].quantiles) << w[i].name;
    EXPECT_EQ(w[i].histogram, m[i].histogram) << w[i].name;
    EXPECT_EQ(w[i].distinct, m[i].distinct) << w[i].name;
  }
}

TEST(StatsTest, MergeWithItselfDoublesCounts) {
  Table t;
  t.columns.push_back(IntCol("n", {1, 2, 3}));
  StatsBuilder b;
  b.Add(t);
  b.Merge(b);
  const auto s = b.Finish();
  EXPECT_EQ(s[0].count, 6);
  EXPECT_EQ(s[0].top[0].count, 2);
  EXPECT_EQ(s[0].distinct, 3);
}

// ------------------------------------------------------------------ schema changes

TEST(StatsTest, ColumnsMissingAndAddedBetweenBatches) {
  StatsBuilder b(Schema{{{"a", Type::kInt64, false}, {"never", Type::kString, true}}});
  Table t1;
  t1.columns.push_back(IntCol("a", {1, 2, 3}));
  b.Add(t1);
  Table t2;  // lacks a, brings b
  t2.columns.push_back(DoubleCol("b", {0.5, 1.5}));
  b.Add(t2);
  Table t3;
  t3.columns.push_back(DoubleCol("b", {2.5}));
  t3.columns.push_back(IntCol("a", {10}));
  b.Add(t3);
  EXPECT_EQ(b.rows(), 6);
  const auto s = b.Finish();
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].name, "a");
  EXPECT_EQ(s[1].name, "never");
  EXPECT_EQ(s[2].name, "b");
  for (const auto& c : s) EXPECT_EQ(c.count, 6) << c.name;
  EXPECT_EQ(s[0].nulls, 2);
  EXPECT_EQ(s[0].max, 10.0);
  EXPECT_DOUBLE_EQ(*s[0].mean, 4.0);
  EXPECT_EQ(s[1].nulls, 6);
  EXPECT_EQ(s[1].type, Type::kString);
  EXPECT_EQ(s[2].nulls, 3);
  EXPECT_EQ(s[2].type, Type::kFloat64);
  EXPECT_DOUBLE_EQ(*s[2].mean, 1.5);

  // Merging builders with different columns: each side's rows are nulls of the other's.
  StatsBuilder x, y;
  x.Add(t1);
  y.Add(t2);
  x.Merge(y);
  const auto m = x.Finish();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].count, 5);
  EXPECT_EQ(m[0].nulls, 2);
  EXPECT_EQ(m[1].name, "b");
  EXPECT_EQ(m[1].count, 5);
  EXPECT_EQ(m[1].nulls, 3);
}

// ------------------------------------------------------------------ determinism, serialization

TEST(StatsTest, DeterministicAndSurvivesSerializeMidStream) {
  const Table t = MixedTable(60000, 9);
  StatsBuilder a, b;
  AddInBatches(a, t, 4096);
  AddInBatches(b, t, 4096);
  EXPECT_EQ(a.Finish(), b.Finish());
  EXPECT_EQ(a.Serialize(), b.Serialize());

  // Serialize after the first half, restore, add the rest: same as never stopping.
  const Table first = MixedTable(30000, 9), second = MixedTable(30000, 10);
  StatsBuilder straight;
  straight.Add(first);
  straight.Add(second);
  StatsBuilder half;
  half.Add(first);
  auto restored = StatsBuilder::Deserialize(half.Serialize());
  ASSERT_TRUE(restored.has_value()) << restored.error().ToString();
  EXPECT_EQ(restored->Finish(), half.Finish());
  restored->Add(second);
  EXPECT_EQ(restored->Finish(), straight.Finish());
  EXPECT_EQ(restored->Serialize(), straight.Serialize());
}

TEST(StatsTest, SerializeRoundTripOfLargeState) {
  const Table t = MixedTable(200000, 21);
  StatsBuilder b;
  AddInBatches(b, t, 65536);
  const std::string bytes = b.Serialize();
  std::printf("[ stats  ] serialized state of %zu columns x 200000 rows: %zu bytes\n", t.num_columns(),
              bytes.size());
  auto back = StatsBuilder::Deserialize(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->rows(), 200000);
  EXPECT_EQ(back->Finish(), b.Finish());
  EXPECT_EQ(back->Serialize(), bytes);
  // A merge of restored states behaves like a merge of the originals.
  StatsBuilder m1 = b, m2 = *back;
  m1.Merge(b);
  m2.Merge(*back);
  EXPECT_EQ(m1.Finish(), m2.Finish());
  // A few truncations of the big state (every one of a small state below).
  for (size_t len : {size_t{0}, size_t{5}, size_t{13}, size_t{14}, bytes.size() / 2, bytes.size() - 1}) {
    auto r = StatsBuilder::Deserialize(std::string_view(bytes).substr(0, len));
    ASSERT_FALSE(r.has_value()) << len;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  }
}

TEST(StatsTest, DeserializeRejectsEveryTruncationAndGarbage) {
  // Small but with every kind of state: a summary (more than 512 distinct
  // strings), a sketch (more than 2048 distinct values), a full sample.
  Table t = MixedTable(700, 4);
  std::vector<double> many;
  for (int i = 0; i < 17000; ++i) many.push_back(i * 0.5);
  Table big;
  big.columns.push_back(DoubleCol("many", many));
  StatsBuilder b;
  b.Add(t);
  StatsBuilder c;
  c.Add(big);
  b.Merge(c);
  const std::string bytes = b.Serialize();
  ASSERT_TRUE(StatsBuilder::Deserialize(bytes).has_value());
  for (size_t len = 0; len < bytes.size(); ++len) {
    auto r = StatsBuilder::Deserialize(std::string_view(bytes).substr(0, len));
    ASSERT_FALSE(r.has_value()) << "truncated to " << len;
    ASSERT_EQ(r.error().code(), Code::kInvalidArgument);
  }
  // Trailing bytes, flipped bytes, random garbage, a future version.
  auto expect_invalid = [](std::string_view in, const std::string& what) {
    auto r = StatsBuilder::Deserialize(in);
    ASSERT_FALSE(r.has_value()) << what;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << what;
  };
  expect_invalid(bytes + "x", "trailing byte");
  // A flipped byte is rejected, or (in a few bits of the compressed stream that
  // carry no information) decodes to exactly the same state.
  int rejected = 0;
  for (size_t pos = 0; pos < bytes.size(); pos += 37) {
    std::string flipped = bytes;
    flipped[pos] ^= 0x20;
    auto r = StatsBuilder::Deserialize(flipped);
    if (r.has_value()) {
      EXPECT_EQ(r->Serialize(), bytes) << "flipped byte " << pos;
    } else {
      EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
      ++rejected;
    }
  }
  EXPECT_GT(rejected, static_cast<int>(bytes.size() / 37 * 9 / 10));
  std::string future = bytes;
  future[4] = 2;
  expect_invalid(future, "version 2");
  std::mt19937_64 rng(1);
  for (int i = 0; i < 200; ++i) {
    std::string garbage(rng() % 300, '\0');
    for (char& ch : garbage) ch = static_cast<char>(rng());
    if (i % 2 == 0 && garbage.size() >= 5) garbage.replace(0, 5, bytes.substr(0, 5));
    expect_invalid(garbage, "garbage " + std::to_string(i));
  }
  expect_invalid("", "empty");
  expect_invalid("[]", "JSON");
}

// ------------------------------------------------------------------ JSON

TEST(StatsTest, JsonRoundTrip) {
  const Table t = MixedTable(30000, 5);
  StatsBuilder b;
  AddInBatches(b, t, 5000);
  const auto stats = b.Finish();
  const std::string json = StatsToJson(stats);
  auto back = StatsFromJson(json);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(*back, stats);
  EXPECT_NE(json.find("\"name\":\"force\""), std::string::npos);
  EXPECT_NE(json.find("\"top_exact\":false"), std::string::npos);
  EXPECT_NE(json.find("\"min_length\":null"), std::string::npos);
  // Timestamps as numbers.
  EXPECT_NE(json.find("\"min\":1767225600.0"), std::string::npos) << json.substr(0, 2000);

  auto empty = StatsFromJson(StatsToJson({}));
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
}

TEST(StatsTest, JsonOfInvalidUtf8DoesNotThrow) {
  Table t;
  t.columns.push_back(StringCol("s\xff", {"\xfe\xff", "ok"}));
  StatsBuilder b;
  b.Add(t);
  const std::string json = StatsToJson(b.Finish());
  auto back = StatsFromJson(json);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ((*back)[0].top.size(), 2u);
}

TEST(StatsTest, JsonFromGarbageIsInvalidArgument) {
  for (const char* bad :
       {"", "{", "{}", "[1]", "[{}]", "[{\"name\":\"x\",\"type\":\"decimal\"}]",
        "[{\"name\":\"x\",\"type\":\"int64\",\"count\":\"3\"}]",
        "[{\"name\":\"x\",\"type\":\"int64\",\"count\":3,\"nulls\":0,\"nans\":0,\"distinct\":1,"
        "\"quantiles\":{},\"histogram\":[],\"top\":[],\"top_exact\":true}]",
        "[{\"name\":\"x\",\"type\":\"int64\",\"count\":3,\"nulls\":0,\"nans\":0,\"distinct\":1,"
        "\"quantiles\":[],\"histogram\":[{\"lower\":1}],\"top\":[],\"top_exact\":true}]",
        "[{\"name\":\"x\",\"type\":\"int64\",\"count\":1e30,\"nulls\":0}]"}) {
    auto r = StatsFromJson(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << bad;
  }
}

// ------------------------------------------------------------------ empty

TEST(StatsTest, EmptyBuilder) {
  StatsBuilder b;
  EXPECT_EQ(b.rows(), 0);
  EXPECT_TRUE(b.Finish().empty());
  auto back = StatsBuilder::Deserialize(b.Serialize());
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_TRUE(back->Finish().empty());
  EXPECT_EQ(StatsToJson(b.Finish()), "[]");
  b.Add(Table{});
  EXPECT_EQ(b.rows(), 0);

  StatsBuilder with_schema(Schema{{{"x", Type::kFloat64, true}, {"s", Type::kString, true}}});
  const auto s = with_schema.Finish();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].count, 0);
  EXPECT_EQ(s[0].distinct, 0);
  EXPECT_FALSE(s[0].mean.has_value());
  EXPECT_TRUE(s[1].top.empty());

  // Merging into or from an empty builder.
  Table t;
  t.columns.push_back(IntCol("n", {1, 2}));
  StatsBuilder one;
  one.Add(t);
  StatsBuilder e;
  e.Merge(one);
  EXPECT_EQ(e.Finish(), one.Finish());
  one.Merge(StatsBuilder());
  EXPECT_EQ(e.Finish(), one.Finish());

  StatsBuilder moved = std::move(one);
  EXPECT_EQ(moved.rows(), 2);
  EXPECT_EQ(one.rows(), 0);  // NOLINT(bugprone-use-after-move): moved-from is empty, not broken
  one.Add(t);
  EXPECT_EQ(one.rows(), 2);
}

// ------------------------------------------------------------------ throughput

TEST(StatsTest, AddThroughput) {
  const size_t n = 1000000;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(100.0, 15.0);
  Table t;
  for (int c = 0; c < 8; ++c) {
    Column col = DoubleCol("f" + std::to_string(c), {});
    col.doubles.resize(n);
    for (double& x : col.doubles) x = std::round(normal(rng) * 1000) / 1000;  // 3 decimals, like CSV
    t.columns.push_back(std::move(col));
  }
  for (int c = 0; c < 2; ++c) {
    Column col = IntCol("i" + std::to_string(c), {});
    col.ints.resize(n);
    for (auto& x : col.ints) x = static_cast<int64_t>(rng() % (c == 0 ? 8 : 1000000));
    t.columns.push_back(std::move(col));
  }
  Column ts = IntCol("t", {}, {}, Type::kTimestamp);
  for (size_t i = 0; i < n; ++i) ts.ints.push_back(1767225600 + static_cast<int64_t>(i));
  t.columns.push_back(std::move(ts));
  Column machine = StringCol("machine", {});
  Column serial = StringCol("serial", {});
  for (size_t i = 0; i < n; ++i) {
    machine.strings.push_back("WELD-CELL-" + std::to_string(rng() % 48));
    serial.strings.push_back("SN-2026-" + std::to_string(10000000 + rng() % 90000000));
  }
  t.columns.push_back(std::move(machine));
  t.columns.push_back(std::move(serial));
  ASSERT_TRUE(t.Validate().has_value());

  // Wall time and this thread's CPU time (the machine may be shared).
  auto time_it = [&](const char* what, size_t values, auto&& fn) {
    timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    const auto start = std::chrono::steady_clock::now();
    fn();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    const double cpu =
        static_cast<double>(c1.tv_sec - c0.tv_sec) + 1e-9 * static_cast<double>(c1.tv_nsec - c0.tv_nsec);
    std::printf("[ stats  ] %-44s %7.1f ms wall, %7.1f ms cpu, %5.2f M rows/s, %6.2f ns/value (cpu)\n", what,
                wall * 1e3, cpu * 1e3, static_cast<double>(n) / cpu / 1e6,
                cpu * 1e9 / static_cast<double>(values));
  };
  const size_t values = n * t.num_columns();
  StatsBuilder one;
  time_it("Add(1M rows x 13 columns), fresh builder", values, [&] { one.Add(t); });
  time_it("the same 1M rows again (sample warmed up)", values, [&] { one.Add(t); });
  const std::vector<Table> batches = Batches(t, 65536);
  StatsBuilder batched;
  time_it("Add in 64k-row batches, fresh builder", values, [&] {
    for (const Table& part : batches) batched.Add(part);
  });
  // Per column kind, fresh builders.
  for (const char* kind : {"float64", "int64", "timestamp", "string"}) {
    Table only;
    for (const Column& c : t.columns) {
      if (TypeName(c.field.type) == kind) only.columns.push_back(c);
    }
    StatsBuilder b;
    const std::string what = "  " + std::string(kind) + " x" + std::to_string(only.num_columns());
    time_it(what.c_str(), n * only.num_columns(), [&] { b.Add(only); });
  }
  const auto start = std::chrono::steady_clock::now();
  const auto stats = one.Finish();
  std::printf("[ stats  ] Finish: %.1f ms\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() * 1e3);
  EXPECT_EQ(stats.size(), 13u);
  EXPECT_EQ(stats[0].count, static_cast<int64_t>(2 * n));
}

}  // namespace
}  // namespace takt::frame
