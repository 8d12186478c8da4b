#include "policy/predicate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace takt::policy {
namespace {

using frame::Column;
using frame::Field;
using frame::Schema;
using frame::Table;
using frame::Type;

constexpr int64_t kNull = std::numeric_limits<int64_t>::min();  // marks a null in the helpers below

Column Ints(std::string name, std::vector<std::optional<int64_t>> values, Type type = Type::kInt64) {
  Column c;
  c.field = {std::move(name), type, true};
  for (const auto& v : values) {
    c.ints.push_back(v.value_or(0));
    c.valid.push_back(v.has_value());
  }
  return c;
}

Column Doubles(std::string name, std::vector<std::optional<double>> values) {
  Column c;
  c.field = {std::move(name), Type::kFloat64, true};
  for (const auto& v : values) {
    c.doubles.push_back(v.value_or(0));
    c.valid.push_back(v.has_value());
  }
  return c;
}

Column Strings(std::string name, std::vector<std::optional<std::string>> values) {
  Column c;
  c.field = {std::move(name), Type::kString, true};
  for (const auto& v : values) {
    c.strings.push_back(v.value_or(""));
    c.valid.push_back(v.has_value());
  }
  return c;
}

Column Timestamps(std::string name, std::vector<std::optional<std::string>> values) {
  Column c;
  c.field = {std::move(name), Type::kTimestamp, true};
  for (const auto& v : values) {
    c.ints.push_back(v ? *frame::ParseTimestamp(*v) : 0);
    c.valid.push_back(v.has_value());
  }
  return c;
}

// Six rows of telemetry with a null here and there.
Table Telemetry() {
  Table t;
  t.columns.push_back(Strings("plant", {"P1", "P1", "P2", std::nullopt, "P1", "P2"}));
  t.columns.push_back(Doubles("force_kn", {3.0, 4.0, 5.0, 2.0, std::nullopt, 3.5}));
  t.columns.push_back(Strings("robot_serial", {"WG-1", "WG-3", "WG-2", "WG-4", "WG-5", "WG-1"}));
  t.columns.push_back(Timestamps(
      "ts", {"2026-02-28", "2026-03-01", "2026-03-02T12:00:00Z", "2026-04-01", "2026-03-05", std::nullopt}));
  t.columns.push_back(Strings("note", {"ok", std::nullopt, "it's fine", "x", "y", std::nullopt}));
  t.columns.push_back(Ints("count", {1, 2, 3, std::nullopt, -5, 7}));
  t.columns.push_back(Ints("ok", {1, 0, 1, std::nullopt, 0, 1}, Type::kBool));
  EXPECT_TRUE(t.Validate().has_value());
  return t;
}

Predicate MustParse(std::string_view text) {
  auto p = Predicate::Parse(text);
  EXPECT_TRUE(p.has_value()) << text << ": " << p.error().ToString();
  return p.value_or(Predicate::And({}));
}

// The rows (indexes) of Telemetry() that pass `text`.
std::vector<int> Passing(std::string_view text, const Table& table = Telemetry()) {
  Predicate p = MustParse(text);
  auto bound = p.Bind(table.schema());
  EXPECT_TRUE(bound.has_value()) << text << ": " << bound.error().ToString();
  auto mask = p.Evaluate(table);
  EXPECT_TRUE(mask.has_value()) << text << ": " << mask.error().ToString();
  std::vector<int> rows;
  if (!mask) return rows;
  for (size_t i = 0; i < mask->size(); ++i) {
    EXPECT_LE((*mask)[i], 1);
    if ((*mask)[i]) rows.push_back(static_cast<int>(i));
  }
  return rows;
}

std::string ParseError(std::string_view text) {
  auto p = Predicate::Parse(text);
  EXPECT_FALSE(p.has_value()) << text;
  if (p) return "";
  EXPECT_EQ(p.error().code(), Code::kInvalidArgument);
  return p.error().message();
}

std::string BindError(std::string_view text) {
  Predicate p = MustParse(text);
  auto s = p.Bind(Telemetry().schema());
  EXPECT_FALSE(s.has_value()) << text;
  if (s) return "";
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
  return s.error().message();
}

// --- Parsing and canonical text ---------------------------------------------

TEST(PredicateParseTest, TheExampleFromTheGrantDocs) {
  Predicate p = MustParse(
      "plant = 'P1' AND (force_kn > 3.5 OR NOT robot_serial IN ('WG-1', 'WG-2')) AND ts >= '2026-03-01' "
      "AND note IS NOT NULL");
  EXPECT_EQ(p.ToString(),
            "plant = 'P1' AND (force_kn > 3.5 OR NOT robot_serial IN ('WG-1', 'WG-2')) AND ts >= "
            "'2026-03-01' AND note IS NOT NULL");
  EXPECT_EQ(p.Columns(), (std::vector<std::string>{"force_kn", "note", "plant", "robot_serial", "ts"}));
  EXPECT_FALSE(p.bound());
  EXPECT_EQ(Passing(p.ToString()), (std::vector<int>{4}));
}

TEST(PredicateParseTest, KeywordsAreCaseInsensitiveAndCanonicalisedToUppercase) {
  EXPECT_EQ(MustParse("a <> 1 and not b is not null or c not in (true, FaLsE)").ToString(),
            "a != 1 AND NOT b IS NOT NULL OR c NOT IN (TRUE, FALSE)");
}

TEST(PredicateParseTest, MinimalParentheses) {
  EXPECT_EQ(MustParse("((a = 1))").ToString(), "a = 1");
  EXPECT_EQ(MustParse("a = 1 OR (b = 2 AND c = 3)").ToString(), "a = 1 OR b = 2 AND c = 3");
  EXPECT_EQ(MustParse("(a = 1 OR b = 2) AND c = 3").ToString(), "(a = 1 OR b = 2) AND c = 3");
  EXPECT_EQ(MustParse("NOT (a = 1 AND b = 2)").ToString(), "NOT (a = 1 AND b = 2)");
  EXPECT_EQ(MustParse("(NOT a = 1) AND b = 2").ToString(), "NOT a = 1 AND b = 2");
  EXPECT_EQ(MustParse("a = 1 AND (b = 2 AND c = 3)").ToString(), "a = 1 AND b = 2 AND c = 3");
  EXPECT_EQ(MustParse("NOT NOT a = 1").ToString(), "NOT NOT a = 1");
  EXPECT_EQ(MustParse("a=1 or (b=2 or c=3) and d=4").ToString(), "a = 1 OR (b = 2 OR c = 3) AND d = 4");
}

TEST(PredicateParseTest, Literals) {
  EXPECT_EQ(MustParse("a = -12").ToString(), "a = -12");
  EXPECT_EQ(MustParse("a = 3.50").ToString(), "a = 3.5");
  EXPECT_EQ(MustParse("a = 1e3").ToString(), "a = 1000");
  EXPECT_EQ(MustParse("a = 1E-3").ToString(), "a = 0.001");
  EXPECT_EQ(MustParse("a = .5").ToString(), "a = 0.5");
  EXPECT_EQ(MustParse("a = -.5").ToString(), "a = -0.5");
  EXPECT_EQ(MustParse("a = 1e+20").ToString(), "a = 1e+20");
  EXPECT_EQ(MustParse("a = 9223372036854775807").ToString(), "a = 9223372036854775807");
  EXPECT_EQ(MustParse("a = 'it''s'").ToString(), "a = 'it''s'");
  EXPECT_EQ(MustParse("a = ''").ToString(), "a = ''");
  EXPECT_EQ(MustParse("a = true").ToString(), "a = TRUE");
  EXPECT_EQ(MustParse("a>-3").ToString(), "a > -3");
}

TEST(PredicateParseTest, QuotedColumnNames) {
  Predicate p = MustParse("\"force (kN)\" > 3 AND \"and\" = 1 AND \"say \"\"hi\"\"\" IS NULL AND \"x\" = 2");
  EXPECT_EQ(p.ToString(), "\"force (kN)\" > 3 AND \"and\" = 1 AND \"say \"\"hi\"\"\" IS NULL AND x = 2");
  EXPECT_EQ(p.Columns(), (std::vector<std::string>{"and", "force (kN)", "say \"hi\"", "x"}));
}

TEST(PredicateParseTest, BareTrueAndFalse) {
  EXPECT_EQ(MustParse("TRUE").ToString(), "TRUE");
  EXPECT_EQ(MustParse("false OR a = 1").ToString(), "FALSE OR a = 1");
  EXPECT_TRUE(MustParse("TRUE").Columns().empty());
}

TEST(PredicateParseTest, SyntaxErrorsNameThePosition) {
  EXPECT_EQ(ParseError("force_kn >"),
            "row filter: at 11: expected a literal after '>', found the end of the filter");
  EXPECT_EQ(ParseError("force_kn > AND"), "row filter: at 12: expected a literal after '>', found 'AND'");
  EXPECT_NE(ParseError("").find("at 1: expected a column name or '('"), std::string::npos);
  EXPECT_NE(ParseError("a = 1 AND").find("at 10: expected a column name"), std::string::npos);
  EXPECT_NE(ParseError("(a = 1").find("at 7: expected ')' to close the '(' at 1"), std::string::npos);
  EXPECT_NE(ParseError("a = 1)").find("at 6: unexpected ')'"), std::string::npos);
  EXPECT_NE(ParseError("a = 'open").find("at 5: string is not closed"), std::string::npos);
  EXPECT_NE(ParseError("\"open = 1").find("at 1: quoted column name is not closed"), std::string::npos);
  EXPECT_NE(ParseError("\"\" = 1").find("empty"), std::string::npos);
  EXPECT_NE(ParseError("a # 1").find("at 3: unexpected character '#'"), std::string::npos);
  EXPECT_NE(ParseError("a ! 1").find("'!='"), std::string::npos);
  EXPECT_NE(ParseError("a = NULL").find("IS NULL"), std::string::npos);
  EXPECT_NE(ParseError("a == 1").find("at 4: expected a literal after '='"), std::string::npos);
  EXPECT_NE(ParseError("a = 12abc").find("malformed number '12abc'"), std::string::npos);
  EXPECT_NE(ParseError("a = 1.2.3").find("malformed number"), std::string::npos);
  EXPECT_NE(ParseError("a = 1e").find("malformed number"), std::string::npos);
  EXPECT_NE(ParseError("a = 1e999").find("out of range"), std::string::npos);
  EXPECT_NE(ParseError("a").find("expected a comparison"), std::string::npos);
  EXPECT_NE(ParseError("a IN 1").find("expected '(' after IN"), std::string::npos);
  EXPECT_NE(ParseError("a IN ()").find("expected a literal in the IN list"), std::string::npos);
  EXPECT_NE(ParseError("a IN (1 2)").find("expected ',' or ')'"), std::string::npos);
  EXPECT_NE(ParseError("a NOT 1").find("expected IN after NOT"), std::string::npos);
  EXPECT_NE(ParseError("a IS 1").find("expected NULL after IS"), std::string::npos);
  EXPECT_NE(ParseError("null = 1").find("keyword 'null'"), std::string::npos);
  EXPECT_NE(ParseError("a = b").find("expected a literal"), std::string::npos);
  EXPECT_NE(ParseError("a = '\x01").find("not closed"), std::string::npos);
  EXPECT_NE(ParseError("a = 1 \xff").find("'\\xff'"), std::string::npos);
}

TEST(PredicateParseTest, NestingAndSizeLimits) {
  auto nested = [](int depth) { return std::string(depth, '(') + "a = 1" + std::string(depth, ')'); };
  EXPECT_TRUE(Predicate::Parse(nested(64)).has_value());
  EXPECT_NE(ParseError(nested(65)).find("nested deeper than 64"), std::string::npos);
  std::string nots;
  for (int i = 0; i < 64; ++i) nots += "NOT ";
  EXPECT_TRUE(Predicate::Parse(nots + "a = 1").has_value());
  EXPECT_NE(ParseError("NOT " + nots + "a = 1").find("nested deeper than 64"), std::string::npos);
  // Hostile: far deeper than the limit, but short enough to be read.
  EXPECT_NE(ParseError(std::string(10000, '(')).find("nested deeper"), std::string::npos);
  std::string mixed;
  for (int i = 0; i < 3000; ++i) mixed += "NOT (";
  EXPECT_NE(ParseError(mixed).find("nested deeper"), std::string::npos);
  // Over 16 KiB.
  std::string long_text = "a IN (1";
  while (long_text.size() <= Predicate::kMaxTextBytes) long_text += ", 1";
  long_text += ")";
  EXPECT_NE(ParseError(long_text).find("longer than the 16384 allowed"), std::string::npos);
  // Wide but shallow is fine.
  std::string wide = "a = 0";
  for (int i = 1; i < 1000; ++i) wide += " OR a = " + std::to_string(i);
  EXPECT_TRUE(Predicate::Parse(wide).has_value());
}

// --- Binding ----------------------------------------------------------------

TEST(PredicateBindTest, UnknownColumn) {
  EXPECT_EQ(BindError("forse > 3"), "row filter: column 'forse' is not in the dataset");
  EXPECT_EQ(BindError("Plant = 'P1'"),
            "row filter: column 'Plant' is not in the dataset (did you mean 'plant'?)");
}

TEST(PredicateBindTest, TypeErrorsNameTheProblem) {
  EXPECT_EQ(BindError("force_kn > 'abc'"),
            "row filter: force_kn > 'abc': force_kn is a float64 column and 'abc' is not a number");
  EXPECT_EQ(BindError("count = '3'"),
            "row filter: count = '3': count is a int64 column and '3' is not a number");
  EXPECT_NE(BindError("count = TRUE").find("TRUE is not a number"), std::string::npos);
  EXPECT_EQ(BindError("plant = 1"),
            "row filter: plant = 1: plant is a string column and 1 is not a string (write '1')");
  EXPECT_NE(BindError("plant IN ('P1', 2)").find("2 is not a string"), std::string::npos);
  EXPECT_NE(BindError("ok > FALSE").find("ok is a bool column: only = and != apply to it, not '>'"),
            std::string::npos);
  EXPECT_NE(BindError("ok = 1").find("compare it with TRUE or FALSE, not 1"), std::string::npos);
  EXPECT_NE(BindError("ts > 5").find("ts is a timestamp column: compare it with an ISO 8601 string"),
            std::string::npos);
  EXPECT_NE(BindError("ts > 'yesterday'").find("ts is a timestamp column and 'yesterday' is not an ISO 8601"),
            std::string::npos);
  EXPECT_NE(BindError("ts IN ('2026-01-01', '2026-13-01')").find("'2026-13-01' is not an ISO 8601"),
            std::string::npos);
}

TEST(PredicateBindTest, RebindsAgainstAnotherSchema) {
  Predicate p = MustParse("count > 2");
  ASSERT_TRUE(p.Bind(Telemetry().schema()).has_value());
  EXPECT_TRUE(p.bound());
  Schema other{{{"count", Type::kString, false}}};
  auto again = p.Bind(other);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(p.bound());  // the earlier binding is kept
  Schema as_double{{{"count", Type::kFloat64, false}}};
  ASSERT_TRUE(p.Bind(as_double).has_value());
  Table t;
  t.columns.push_back(Doubles("count", {2.5, 3.0}));
  auto mask = p.Evaluate(t);
  ASSERT_TRUE(mask.has_value());
  EXPECT_EQ(*mask, (std::vector<uint8_t>{1, 1}));
  // The old (int64) table no longer fits the binding.
  auto wrong = p.Evaluate(Telemetry());
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), Code::kInvalidArgument);
  EXPECT_NE(wrong.error().message().find("is int64 in the batch but was bound as float64"),
            std::string::npos);
}

// --- Evaluation ----------------------------------------------------------------

using Rows = std::vector<int>;

TEST(PredicateEvaluateTest, ComparisonsPerType) {
  EXPECT_EQ(Passing("plant = 'P1'"), (Rows{0, 1, 4}));
  EXPECT_EQ(Passing("plant != 'P1'"), (Rows{2, 5}));  // the null plant is unknown
  EXPECT_EQ(Passing("plant < 'P2'"), (Rows{0, 1, 4}));
  EXPECT_EQ(Passing("plant >= 'P2'"), (Rows{2, 5}));
  EXPECT_EQ(Passing("note = 'it''s fine'"), (Rows{2}));
  EXPECT_EQ(Passing("force_kn > 3.5"), (Rows{1, 2}));
  EXPECT_EQ(Passing("force_kn >= 3.5"), (Rows{1, 2, 5}));
  EXPECT_EQ(Passing("force_kn < 3"), (Rows{3}));
  EXPECT_EQ(Passing("force_kn <= 3"), (Rows{0, 3}));
  EXPECT_EQ(Passing("force_kn = 4"), (Rows{1}));
  EXPECT_EQ(Passing("force_kn <> 4"), (Rows{0, 2, 3, 5}));
  EXPECT_EQ(Passing("count > 2"), (Rows{2, 5}));
  EXPECT_EQ(Passing("count <= -5"), (Rows{4}));
  EXPECT_EQ(Passing("count = 1e0"), (Rows{0}));
  EXPECT_EQ(Passing("ts >= '2026-03-01'"), (Rows{1, 2, 3, 4}));
  EXPECT_EQ(Passing("ts < '2026-03-02T12:00:00'"), (Rows{0, 1}));
  EXPECT_EQ(Passing("ts = '2026-03-02 12:00:00Z'"), (Rows{2}));
  EXPECT_EQ(Passing("ok = TRUE"), (Rows{0, 2, 5}));
  EXPECT_EQ(Passing("ok = FALSE"), (Rows{1, 4}));
  EXPECT_EQ(Passing("ok != TRUE"), (Rows{1, 4}));
  EXPECT_EQ(Passing("ok != FALSE"), (Rows{0, 2, 5}));
}

TEST(PredicateEvaluateTest, Int64ComparedWithFractionsAndHugeNumbers) {
  // count: 1, 2, 3, null, -5, 7
  EXPECT_EQ(Passing("count > 2.5"), (Rows{2, 5}));
  EXPECT_EQ(Passing("count >= 2.5"), (Rows{2, 5}));
  EXPECT_EQ(Passing("count < 2.5"), (Rows{0, 1, 4}));
  EXPECT_EQ(Passing("count <= 2.5"), (Rows{0, 1, 4}));
  EXPECT_EQ(Passing("count < -4.5"), (Rows{4}));
  EXPECT_EQ(Passing("count > -5.5"), (Rows{0, 1, 2, 4, 5}));
  EXPECT_EQ(Passing("count = 2.5"), (Rows{}));
  EXPECT_EQ(Passing("count != 2.5"), (Rows{0, 1, 2, 4, 5}));
  EXPECT_EQ(Passing("count < 1e30"), (Rows{0, 1, 2, 4, 5}));
  EXPECT_EQ(Passing("count > 1e30"), (Rows{}));
  EXPECT_EQ(Passing("count > -1e30"), (Rows{0, 1, 2, 4, 5}));
  EXPECT_EQ(Passing("count < 99999999999999999999"), (Rows{0, 1, 2, 4, 5}));
  EXPECT_EQ(Passing("count IN (2.5, 3, 7.0, 1e30)"), (Rows{2, 5}));
  EXPECT_EQ(Passing("count IN (2.5)"), (Rows{}));
  EXPECT_EQ(Passing("count NOT IN (2.5)"), (Rows{0, 1, 2, 4, 5}));
  // Exact at the int64 extremes (a double would round these).
  Table t;
  t.columns.push_back(Ints("n", {9223372036854775807, 9223372036854775806, kNull + 1}));
  EXPECT_EQ(Passing("n = 9223372036854775807", t), (Rows{0}));
  EXPECT_EQ(Passing("n < 9223372036854775807", t), (Rows{1, 2}));
  EXPECT_EQ(Passing("n = -9223372036854775807", t), (Rows{2}));
}

TEST(PredicateEvaluateTest, ThreeValuedLogic) {
  // force_kn is null in row 4, plant in row 3.
  EXPECT_EQ(Passing("NOT force_kn > 3"), (Rows{0, 3}));  // NOT unknown is unknown
  EXPECT_EQ(Passing("NOT NOT force_kn > 3"), (Rows{1, 2, 5}));
  EXPECT_EQ(Passing("force_kn > 3 OR plant = 'P1'"), (Rows{0, 1, 2, 4, 5}));  // unknown OR TRUE
  EXPECT_EQ(Passing("NOT (force_kn > 3 OR plant = 'P2')"), (Rows{0}));        // row 4: NOT (unknown OR FALSE)
  EXPECT_EQ(Passing("NOT (force_kn > 100 AND plant = 'P1')"),
            (Rows{0, 1, 2, 3, 5}));  // row 4: NOT (unknown AND TRUE)
  EXPECT_EQ(Passing("NOT (force_kn < 100 AND plant = 'P1')"),
            (Rows{2, 5}));  // row 3: unknown; row 4: unknown
  EXPECT_EQ(Passing("force_kn > 3 OR TRUE"), (Rows{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(Passing("force_kn > 3 AND FALSE"), (Rows{}));
  EXPECT_EQ(Passing("NOT (force_kn > 3 AND FALSE)"), (Rows{0, 1, 2, 3, 4, 5}));
}

TEST(PredicateEvaluateTest, IsNullNeverUnknown) {
  EXPECT_EQ(Passing("note IS NULL"), (Rows{1, 5}));
  EXPECT_EQ(Passing("note IS NOT NULL"), (Rows{0, 2, 3, 4}));
  EXPECT_EQ(Passing("NOT note IS NULL"), (Rows{0, 2, 3, 4}));
  EXPECT_EQ(Passing("ts IS NULL OR ts < '2026-03-01'"), (Rows{0, 5}));
  EXPECT_EQ(Passing("robot_serial IS NULL"), (Rows{}));
}

TEST(PredicateEvaluateTest, InLists) {
  EXPECT_EQ(Passing("robot_serial IN ('WG-1', 'WG-2')"), (Rows{0, 2, 5}));
  EXPECT_EQ(Passing("robot_serial NOT IN ('WG-1', 'WG-2')"), (Rows{1, 3, 4}));
  EXPECT_EQ(Passing("NOT robot_serial IN ('WG-1', 'WG-2')"), (Rows{1, 3, 4}));
  EXPECT_EQ(Passing("plant NOT IN ('P2')"), (Rows{0, 1, 4}));  // null plant: unknown
  EXPECT_EQ(Passing("force_kn IN (3, 3.5, 99)"), (Rows{0, 5}));
  EXPECT_EQ(Passing("ts IN ('2026-04-01T00:00:00Z', '2026-02-28')"), (Rows{0, 3}));
  EXPECT_EQ(Passing("ok IN (TRUE)"), (Rows{0, 2, 5}));
  EXPECT_EQ(Passing("ok NOT IN (TRUE)"), (Rows{1, 4}));
  EXPECT_EQ(Passing("ok IN (FALSE)"), (Rows{1, 4}));
  EXPECT_EQ(Passing("ok NOT IN (FALSE)"), (Rows{0, 2, 5}));
  EXPECT_EQ(Passing("ok IN (TRUE, FALSE)"), (Rows{0, 1, 2, 4, 5}));
  EXPECT_EQ(Passing("ok NOT IN (TRUE, FALSE)"), (Rows{}));
  EXPECT_EQ(Passing("count IN (7, 7, 1)"), (Rows{0, 5}));
  // Long lists take the sorted-search path.
  std::string list = "robot_serial IN ('WG-2'";
  for (int i = 100; i < 120; ++i) list += ", 'WG-" + std::to_string(i) + "'";
  EXPECT_EQ(Passing(list + ", 'WG-5')"), (Rows{2, 4}));
  std::string ints = "count IN (-5";
  for (int i = 100; i < 120; ++i) ints += ", " + std::to_string(i);
  EXPECT_EQ(Passing(ints + ")"), (Rows{4}));
  EXPECT_EQ(Passing("force_kn IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)"), (Rows{0, 1, 2, 3}));
}

TEST(PredicateEvaluateTest, NanIsNeverInAList) {
  Table t;
  t.columns.push_back(Doubles("x", {std::nan(""), 1.0}));
  EXPECT_EQ(Passing("x IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)", t), (Rows{1}));
  EXPECT_EQ(Passing("x IN (1)", t), (Rows{1}));
}

TEST(PredicateEvaluateTest, ColumnsWithoutValidityAndExtraColumnsInAnyOrder) {
  Table t;
  Column extra = Strings("extra", {"a", "b", "c"});
  Column n;
  n.field = {"n", Type::kInt64, false};
  n.ints = {5, 6, 7};
  t.columns.push_back(extra);
  t.columns.push_back(n);
  EXPECT_EQ(Passing("n >= 6", t), (Rows{1, 2}));
  EXPECT_EQ(Passing("NOT n >= 6", t), (Rows{0}));
  EXPECT_EQ(Passing("n IS NULL", t), (Rows{}));
}

TEST(PredicateEvaluateTest, BatchErrors) {
  Predicate p = MustParse("count > 1 AND plant = 'P1'");
  auto unbound = p.Evaluate(Telemetry());
  ASSERT_FALSE(unbound.has_value());
  EXPECT_EQ(unbound.error().code(), Code::kFailedPrecondition);

  ASSERT_TRUE(p.Bind(Telemetry().schema()).has_value());
  Table missing;
  missing.columns.push_back(Ints("count", {1}));
  auto r = p.Evaluate(missing);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "row filter: the batch has no column 'plant'");

  Table ragged = Telemetry();
  ragged.Find("plant")->strings.pop_back();
  r = p.Evaluate(ragged);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);

  Table bad_valid = Telemetry();
  bad_valid.Find("count")->valid.pop_back();
  r = p.Evaluate(bad_valid);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

TEST(PredicateEvaluateTest, EmptyBatch) {
  Table t = Telemetry();
  for (Column& c : t.columns) {
    c.ints.clear();
    c.doubles.clear();
    c.strings.clear();
    c.valid.clear();
  }
  EXPECT_EQ(Passing("count > 1 OR note IS NULL", t), (Rows{}));
}

// Many rows across block boundaries agree with evaluating each row alone.
TEST(PredicateEvaluateTest, LargeBatchMatchesRowByRow) {
  std::mt19937_64 rng(7);
  const size_t rows = 10007;
  Table big;
  std::vector<std::optional<int64_t>> a;
  std::vector<std::optional<double>> b;
  std::vector<std::optional<std::string>> s;
  for (size_t i = 0; i < rows; ++i) {
    a.push_back(rng() % 10 == 0 ? std::nullopt
                                : std::optional<int64_t>(static_cast<int64_t>(rng() % 100) - 50));
    b.push_back(rng() % 7 == 0 ? std::nullopt : std::optional<double>((rng() % 1000) / 10.0));
    s.push_back(rng() % 5 == 0 ? std::nullopt : std::optional<std::string>("s" + std::to_string(rng() % 20)));
  }
  big.columns.push_back(Ints("a", a));
  big.columns.push_back(Doubles("b", b));
  big.columns.push_back(Strings("s", s));
  Predicate p = MustParse(
      "(a > 10 OR b <= 40.5) AND NOT s IN ('s1', 's2', 's3') OR s IS NULL AND a < 0 OR NOT (b > 90 OR a = "
      "7)");
  ASSERT_TRUE(p.Bind(big.schema()).has_value());
  auto all = p.Evaluate(big);
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->size(), rows);
  size_t passing = 0;
  for (size_t i = 0; i < rows; i += 13) {
    Table one;
    for (const Column& c : big.columns) {
      Column x;
      x.field = c.field;
      if (!c.ints.empty()) x.ints = {c.ints[i]};
      if (!c.doubles.empty()) x.doubles = {c.doubles[i]};
      if (!c.strings.empty()) x.strings = {c.strings[i]};
      x.valid = {c.valid[i]};
      one.columns.push_back(x);
    }
    auto single = p.Evaluate(one);
    ASSERT_TRUE(single.has_value());
    EXPECT_EQ((*single)[0], (*all)[i]) << "row " << i;
  }
  for (uint8_t v : *all) passing += v;
  EXPECT_GT(passing, 0u);
  EXPECT_LT(passing, rows);
}

// --- Composition and audit text --------------------------------------------------

TEST(PredicateComposeTest, OrAndOfParts) {
  Predicate p1 = MustParse("plant = 'P1'");
  Predicate p2 = MustParse("count > 5 OR note IS NULL");
  ASSERT_TRUE(p1.Bind(Telemetry().schema()).has_value());
  Predicate any = Predicate::Or({p1, p2});
  EXPECT_FALSE(any.bound());
  EXPECT_EQ(any.ToString(), "plant = 'P1' OR count > 5 OR note IS NULL");
  EXPECT_EQ(Passing(any.ToString()), (Rows{0, 1, 4, 5}));
  Predicate both = Predicate::And({p1, p2});
  EXPECT_EQ(both.ToString(), "plant = 'P1' AND (count > 5 OR note IS NULL)");
  EXPECT_EQ(Passing(both.ToString()), (Rows{1}));
  EXPECT_EQ(both.Columns(), (std::vector<std::string>{"count", "note", "plant"}));
  // A single part comes back as it is, unbound.
  Predicate one = Predicate::Or({p1});
  EXPECT_EQ(one.ToString(), "plant = 'P1'");
  EXPECT_FALSE(one.bound());
}

TEST(PredicateComposeTest, EmptyOrMatchesNothingEmptyAndMatchesEverything) {
  Predicate none = Predicate::Or({});
  Predicate all = Predicate::And({});
  EXPECT_EQ(none.ToString(), "FALSE");
  EXPECT_EQ(all.ToString(), "TRUE");
  EXPECT_TRUE(none.Columns().empty());
  EXPECT_EQ(Passing(none.ToString()), (Rows{}));
  EXPECT_EQ(Passing(all.ToString()), (Rows{0, 1, 2, 3, 4, 5}));
  ASSERT_TRUE(none.Bind(Telemetry().schema()).has_value());
  EXPECT_EQ(*none.Evaluate(Telemetry()), std::vector<uint8_t>(6, 0));
  ASSERT_TRUE(all.Bind(Schema{}).has_value());
  EXPECT_EQ(*all.Evaluate(Telemetry()), std::vector<uint8_t>(6, 1));
  // Identities drop out of combinations.
  Predicate p = MustParse("count > 1");
  EXPECT_EQ(Predicate::Or({none, p}).ToString(), "count > 1");
  EXPECT_EQ(Predicate::And({all, p, all}).ToString(), "count > 1");
  EXPECT_EQ(Predicate::Or({all, p}).ToString(), "TRUE OR count > 1");
}

TEST(PredicateComposeTest, WithheldLiteralsAreHidden) {
  Predicate p = MustParse(
      "plant = 'P1' AND (robot_serial IN ('WG-1', 'WG-2') OR robot_serial = 'WG-9') AND robot_serial IS NOT "
      "NULL");
  EXPECT_EQ(p.ToString({"robot_serial"}),
            "plant = 'P1' AND (robot_serial IN (?) OR robot_serial = ?) AND robot_serial IS NOT NULL");
  EXPECT_EQ(p.ToString({"robot_serial", "plant"}),
            "plant = ? AND (robot_serial IN (?) OR robot_serial = ?) AND robot_serial IS NOT NULL");
  EXPECT_EQ(p.ToString(std::set<std::string>{}), p.ToString());
}

TEST(PredicateComposeTest, CopiesShareTheTreeAndBindingIsPerCopy) {
  Predicate p = MustParse("count > 1");
  Predicate q = p;
  ASSERT_TRUE(p.Bind(Telemetry().schema()).has_value());
  EXPECT_TRUE(p.bound());
  EXPECT_FALSE(q.bound());
  EXPECT_EQ(q.ToString(), "count > 1");
}

// --- Fuzz-style robustness ---------------------------------------------------

// Parse, print, re-parse: the canonical text is a fixed point; bind and
// evaluate whatever parses; nothing may crash.
void Exercise(const std::string& text, const Table& table) {
  auto p = Predicate::Parse(text);
  if (!p) {
    EXPECT_EQ(p.error().code(), Code::kInvalidArgument);
    return;
  }
  const std::string canonical = p->ToString();
  auto again = Predicate::Parse(canonical);
  ASSERT_TRUE(again.has_value()) << text << " -> " << canonical << ": " << again.error().ToString();
  EXPECT_EQ(again->ToString(), canonical) << text;
  EXPECT_EQ(again->Columns(), p->Columns());
  (void)p->ToString({"a", "s"});
  if (!p->Bind(table.schema())) return;
  auto mask = p->Evaluate(table);
  ASSERT_TRUE(mask.has_value()) << canonical << ": " << mask.error().ToString();
  ASSERT_TRUE(again->Bind(table.schema()).has_value());
  EXPECT_EQ(*again->Evaluate(table), *mask) << canonical;
  // p and NOT p never both pass.
  Predicate negated = MustParse("NOT (" + canonical + ")");
  if (negated.Bind(table.schema())) {
    auto neg = negated.Evaluate(table);
    ASSERT_TRUE(neg.has_value());
    for (size_t i = 0; i < mask->size(); ++i)
      EXPECT_FALSE((*mask)[i] && (*neg)[i]) << canonical << " row " << i;
  }
}

TEST(PredicateFuzzTest, RandomBytes) {
  std::mt19937_64 rng(1234);
  Table t = Telemetry();
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text(rng() % 64, '\0');
    for (char& c : text) c = static_cast<char>(rng() % 256);
    Exercise(text, t);
  }
}

TEST(PredicateFuzzTest, RandomTokenSoups) {
  static const std::vector<std::string> kTokens = {"(",
                                                   ")",
                                                   "(",
                                                   ")",
                                                   ",",
                                                   "AND",
                                                   "OR",
                                                   "NOT",
                                                   "IN",
                                                   "IS",
                                                   "NULL",
                                                   "TRUE",
                                                   "FALSE",
                                                   "=",
                                                   "!=",
                                                   "<>",
                                                   "<",
                                                   "<=",
                                                   ">",
                                                   ">=",
                                                   "a",
                                                   "b",
                                                   "s",
                                                   "ts",
                                                   "ok",
                                                   "nope",
                                                   "\"a\"",
                                                   "\"sp ace\"",
                                                   "1",
                                                   "-2",
                                                   "3.5",
                                                   "1e3",
                                                   "0",
                                                   "-0.0",
                                                   "'x'",
                                                   "'s1'",
                                                   "'2026-01-01'",
                                                   "'it''s'",
                                                   "''",
                                                   "9223372036854775807",
                                                   "1e400",
                                                   "'",
                                                   "\"",
                                                   "!",
                                                   "#"};
  Table t;
  t.columns.push_back(Ints("a", {1, 2, std::nullopt, -3}));
  t.columns.push_back(Doubles("b", {0.5, std::nullopt, 3.5, 1000}));
  t.columns.push_back(Strings("s", {"s1", "x", std::nullopt, "it's"}));
  t.columns.push_back(Timestamps("ts", {"2026-01-01", std::nullopt, "2025-12-31", "2030-01-01"}));
  t.columns.push_back(Ints("ok", {1, 0, std::nullopt, 1}, Type::kBool));
  Column sp = Strings("sp ace", {"x", "y", "z", "w"});
  t.columns.push_back(sp);
  std::mt19937_64 rng(99);
  int parsed = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string text;
    const size_t n = 1 + rng() % 14;
    for (size_t i = 0; i < n; ++i) {
      text += kTokens[rng() % kTokens.size()];
      text += rng() % 4 == 0 ? "" : " ";
    }
    parsed += Predicate::Parse(text).has_value();
    Exercise(text, t);
  }
  // Structured generation: well-formed filters of random shape, so the
  // evaluator sees many of them.
  const std::vector<std::string> leaves = {
      "a > 1",     "a <= 2.5",    "a IN (1, -3)",        "b != 0.5",
      "b IS NULL", "s = 's1'",    "s NOT IN ('x', 'y')", "ts >= '2026-01-01'",
      "ok = TRUE", "ok != FALSE", "s IS NOT NULL",       "\"sp ace\" < 'y'",
      "TRUE",      "FALSE"};
  std::function<std::string(int)> gen = [&](int depth) -> std::string {
    const int choice = depth > 4 ? 0 : static_cast<int>(rng() % 4);
    switch (choice) {
      case 1:
        return "NOT " + gen(depth + 1);
      case 2:
        return "(" + gen(depth + 1) + " AND " + gen(depth + 1) + ")";
      case 3:
        return "(" + gen(depth + 1) + " OR " + gen(depth + 1) + ")";
      default:
        return leaves[rng() % leaves.size()];
    }
  };
  for (int iter = 0; iter < 2000; ++iter) {
    const std::string text = gen(0);
    ASSERT_TRUE(Predicate::Parse(text).has_value()) << text;
    Exercise(text, t);
  }
  EXPECT_GT(parsed, 0);
}

// Not a test: prints evaluation throughput. Run with
//   takt_policy_test --gtest_also_run_disabled_tests --gtest_filter='*Throughput*'
TEST(PredicateThroughput, DISABLED_RowsPerSecond) {
  const size_t rows = 1000000;
  std::mt19937_64 rng(3);
  Table t;
  std::vector<std::optional<std::string>> plant, serial, note, ts;
  std::vector<std::optional<double>> force;
  for (size_t i = 0; i < rows; ++i) {
    plant.push_back(rng() % 2 ? "P1" : "P2");
    serial.push_back("WG-" + std::to_string(rng() % 200));
    note.push_back(rng() % 10 == 0 ? std::nullopt : std::optional<std::string>("n"));
    force.push_back(rng() % 50 == 0 ? std::nullopt : std::optional<double>((rng() % 800) / 100.0));
    ts.push_back(rng() % 2 ? "2026-02-15" : "2026-03-15");
  }
  t.columns = {Strings("plant", plant), Doubles("force_kn", force), Strings("robot_serial", serial),
               Timestamps("ts", ts), Strings("note", note)};
  Predicate p = MustParse(
      "plant = 'P1' AND (force_kn > 3.5 OR NOT robot_serial IN ('WG-1', 'WG-2')) AND ts >= '2026-03-01' "
      "AND note IS NOT NULL");
  ASSERT_TRUE(p.Bind(t.schema()).has_value());
  const std::clock_t start = std::clock();
  auto mask = p.Evaluate(t);
  const double cpu = static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC;
  ASSERT_TRUE(mask.has_value());
  size_t passing = 0;
  for (uint8_t v : *mask) passing += v;
  std::printf("row filter: %zu rows (%zu pass): %.3f s CPU, %.1f M rows/s\n", rows, passing, cpu,
              rows / cpu / 1e6);
}

}  // namespace
}  // namespace takt::policy
