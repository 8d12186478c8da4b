#include "policy/mask.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "crypto/crypto.h"

namespace takt::policy {
namespace {

using frame::Column;
using frame::Field;
using frame::Type;

const std::string kKey(32, 'k');
const std::string kOtherKey(32, 'o');

Mask MustParse(std::string_view spec) {
  auto m = Mask::Parse(spec);
  EXPECT_TRUE(m.has_value()) << spec << ": " << m.error().ToString();
  return m.value_or(Mask{});
}

Column Make(Type type, std::string name = "c") {
  Column c;
  c.field = {std::move(name), type, true};
  return c;
}

Column Ints(std::vector<std::optional<int64_t>> values, Type type = Type::kInt64) {
  Column c = Make(type);
  for (const auto& v : values) {
    c.ints.push_back(v.value_or(0));
    c.valid.push_back(v.has_value());
  }
  return c;
}

Column Doubles(std::vector<std::optional<double>> values) {
  Column c = Make(Type::kFloat64);
  for (const auto& v : values) {
    c.doubles.push_back(v.value_or(0));
    c.valid.push_back(v.has_value());
  }
  return c;
}

Column Strings(std::vector<std::optional<std::string>> values) {
  Column c = Make(Type::kString);
  for (const auto& v : values) {
    c.strings.push_back(v.value_or(""));
    c.valid.push_back(v.has_value());
  }
  return c;
}

int64_t Ts(std::string_view text) {
  auto t = frame::ParseTimestamp(text);
  EXPECT_TRUE(t.has_value()) << text;
  return t.value_or(0);
}

Column Timestamps(std::vector<std::optional<std::string>> values) {
  Column c = Make(Type::kTimestamp);
  for (const auto& v : values) {
    c.ints.push_back(v ? Ts(*v) : 0);
    c.valid.push_back(v.has_value());
  }
  return c;
}

// One column of every type, each with a null in row 1.
std::vector<Column> EveryType() {
  return {Ints({42, std::nullopt, -7}), Doubles({3.25, std::nullopt, -0.5}),
          Strings({"WG-00042", std::nullopt, "x"}), Ints({1, std::nullopt, 0}, Type::kBool),
          Timestamps({"2026-03-01T14:00:00Z", std::nullopt, "1969-12-31T23:59:59Z"})};
}

Column Apply(const Mask& mask, const Column& column, std::string_view key = kKey) {
  auto out = ApplyMask(mask, column, key);
  EXPECT_TRUE(out.has_value()) << mask.ToString() << " on " << frame::TypeName(column.field.type) << ": "
                               << out.error().ToString();
  if (!out) return Column{};
  EXPECT_EQ(out->field, mask.OutputField(column.field));
  EXPECT_EQ(out->size(), column.size());
  frame::Table t;
  t.columns.push_back(*out);
  EXPECT_TRUE(t.Validate().has_value()) << mask.ToString();
  return *out;
}

std::string ExpectedPseudonym(std::string_view key, std::string_view text) {
  return crypto::HmacSha256Hex(key, text).substr(0, 24);
}

// --- Spec parsing ---------------------------------------------------------------

TEST(MaskParseTest, EveryForm) {
  Mask hash = MustParse("hash");
  EXPECT_EQ(hash.kind, MaskKind::kHash);
  Mask redact = MustParse("redact");
  EXPECT_EQ(redact.kind, MaskKind::kRedact);
  EXPECT_EQ(redact.redact_text, "***");
  Mask custom = MustParse("redact:[withheld: pii]");
  EXPECT_EQ(custom.redact_text, "[withheld: pii]");
  EXPECT_EQ(MustParse("redact:").redact_text, "");
  EXPECT_EQ(MustParse("null").kind, MaskKind::kNull);
  Mask partial = MustParse("partial:6");
  EXPECT_EQ(partial.kind, MaskKind::kPartial);
  EXPECT_EQ(partial.keep_last, 6);
  EXPECT_EQ(MustParse("partial").keep_last, 4);
  EXPECT_EQ(MustParse("partial:0").keep_last, 0);
  Mask ten = MustParse("generalize:10");
  EXPECT_EQ(ten.kind, MaskKind::kGeneralize);
  EXPECT_EQ(ten.bucket, 10);
  EXPECT_TRUE(ten.unit.empty());
  EXPECT_EQ(MustParse("generalize:0.5").bucket, 0.5);
  EXPECT_EQ(MustParse("generalize:1e3").bucket, 1000);
  Mask day = MustParse("generalize:day");
  EXPECT_EQ(day.unit, "day");
  EXPECT_EQ(day.bucket, 0);
  EXPECT_EQ(MustParse("Generalize:MONTH").unit, "month");
  EXPECT_EQ(MustParse("HASH").kind, MaskKind::kHash);
}

TEST(MaskParseTest, ToStringRoundTrips) {
  for (std::string_view spec :
       {"hash", "redact", "redact:XXX", "redact:a:b", "redact:", "null", "partial:4", "partial:0",
        "generalize:10", "generalize:0.5", "generalize:0.1", "generalize:hour", "generalize:day",
        "generalize:month", "generalize:year", "generalize:1e+300"}) {
    Mask m = MustParse(spec);
    EXPECT_EQ(m.ToString(), spec);
    EXPECT_EQ(MustParse(m.ToString()), m) << spec;
  }
  EXPECT_EQ(MustParse("partial").ToString(), "partial:4");
  EXPECT_EQ(MustParse("redact:***").ToString(), "redact");
  EXPECT_EQ(MustParse("generalize:1e3").ToString(), "generalize:1000");
  EXPECT_EQ(MustParse("generalize:DAY").ToString(), "generalize:day");
  EXPECT_EQ(Mask{}.ToString(), "redact");
}

TEST(MaskParseTest, BadSpecsNameTheSpecAndTheForms) {
  for (std::string_view spec :
       {"", "bogus", "hash:1", "null:x", "partial:", "partial:-1", "partial:x", "partial:4.5",
        "partial:99999999", "generalize", "generalize:", "generalize:0", "generalize:-5", "generalize:week",
        "generalize:inf", "generalize:nan", "generalize:10x", "redacted", " hash"}) {
    auto m = Mask::Parse(spec);
    ASSERT_FALSE(m.has_value()) << spec;
    EXPECT_EQ(m.error().code(), Code::kInvalidArgument);
    EXPECT_NE(m.error().message().find("mask '" + std::string(spec) + "'"), std::string::npos)
        << m.error().message();
    EXPECT_NE(m.error().message().find("generalize:hour|day|month|year"), std::string::npos);
  }
}

// --- Strength, applicability, output fields ----------------------------------------

TEST(MaskStrengthTest, NullRedactHashPartialGeneralize) {
  EXPECT_GT(MustParse("null").strength(), MustParse("redact").strength());
  EXPECT_GT(MustParse("redact").strength(), MustParse("hash").strength());
  EXPECT_GT(MustParse("hash").strength(), MustParse("partial:4").strength());
  EXPECT_GT(MustParse("partial:4").strength(), MustParse("generalize:day").strength());
  Mask hash = MustParse("hash"), redact = MustParse("redact:X");
  EXPECT_EQ(&Strongest(hash, redact), &redact);
  EXPECT_EQ(&Strongest(redact, hash), &redact);
  // Ties: the first wins.
  Mask p2 = MustParse("partial:2"), p6 = MustParse("partial:6");
  EXPECT_EQ(&Strongest(p2, p6), &p2);
  EXPECT_EQ(&Strongest(p6, p2), &p6);
}

TEST(MaskCheckAppliesTest, GeneralizeNeedsTheRightType) {
  auto s = MustParse("generalize:day").CheckApplies({"force", Type::kFloat64, false});
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(s.error().message(), "mask generalize:day cannot apply to column force (float64)");

  Mask ten = MustParse("generalize:10");
  EXPECT_TRUE(ten.CheckApplies({"n", Type::kInt64, false}).has_value());
  EXPECT_TRUE(ten.CheckApplies({"x", Type::kFloat64, false}).has_value());
  for (Type t : {Type::kString, Type::kBool, Type::kTimestamp}) {
    auto e = ten.CheckApplies({"c", t, true});
    ASSERT_FALSE(e.has_value()) << frame::TypeName(t);
    EXPECT_EQ(e.error().message(),
              "mask generalize:10 cannot apply to column c (" + std::string(frame::TypeName(t)) + ")");
  }
  for (Type t : {Type::kString, Type::kBool, Type::kInt64, Type::kFloat64}) {
    EXPECT_FALSE(MustParse("generalize:month").CheckApplies({"c", t, true}).has_value());
  }
  EXPECT_TRUE(MustParse("generalize:year").CheckApplies({"ts", Type::kTimestamp, false}).has_value());
  // A fractional bucket cannot keep int64 values whole.
  auto frac = MustParse("generalize:2.5").CheckApplies({"n", Type::kInt64, false});
  ASSERT_FALSE(frac.has_value());
  EXPECT_NE(frac.error().message().find("whole-number bucket"), std::string::npos);
  EXPECT_TRUE(MustParse("generalize:2.5").CheckApplies({"x", Type::kFloat64, false}).has_value());
  // Hand-built masks with nonsense fields.
  Mask zero;
  zero.kind = MaskKind::kGeneralize;
  EXPECT_FALSE(zero.CheckApplies({"x", Type::kFloat64, false}).has_value());
  Mask week = zero;
  week.unit = "week";
  EXPECT_FALSE(week.CheckApplies({"ts", Type::kTimestamp, false}).has_value());
  Mask negative_keep;
  negative_keep.kind = MaskKind::kPartial;
  negative_keep.keep_last = -1;
  EXPECT_FALSE(negative_keep.CheckApplies({"s", Type::kString, false}).has_value());
}

TEST(MaskCheckAppliesTest, OtherKindsApplyToEveryType) {
  for (std::string_view spec : {"hash", "redact", "null", "partial:3"}) {
    for (Type t : {Type::kInt64, Type::kFloat64, Type::kString, Type::kBool, Type::kTimestamp}) {
      EXPECT_TRUE(MustParse(spec).CheckApplies({"c", t, false}).has_value()) << spec;
    }
  }
}

TEST(MaskOutputFieldTest, TypesAndNullability) {
  const Field f{"force", Type::kFloat64, false};
  for (std::string_view spec : {"hash", "redact", "partial:2"}) {
    EXPECT_EQ(MustParse(spec).OutputField(f), (Field{"force", Type::kString, false}));
    EXPECT_EQ(MustParse(spec).OutputField({"n", Type::kInt64, true}), (Field{"n", Type::kString, true}));
  }
  EXPECT_EQ(MustParse("null").OutputField(f), (Field{"force", Type::kFloat64, true}));
  EXPECT_EQ(MustParse("generalize:0.5").OutputField(f), f);
}

// --- Applying ------------------------------------------------------------------

TEST(ApplyMaskTest, NullOnEveryType) {
  for (const Column& c : EveryType()) {
    Column out = Apply(MustParse("null"), c);
    EXPECT_EQ(out.field.type, c.field.type);
    EXPECT_EQ(out.valid, std::vector<uint8_t>(3, 0));
  }
  // A non-nullable column becomes nullable.
  Column strict;
  strict.field = {"n", Type::kInt64, false};
  strict.ints = {1, 2};
  Column out = Apply(MustParse("null"), strict);
  EXPECT_TRUE(out.field.nullable);
  EXPECT_EQ(out.valid, (std::vector<uint8_t>{0, 0}));
  EXPECT_EQ(out.ints, (std::vector<int64_t>{0, 0}));
}

TEST(ApplyMaskTest, RedactOnEveryType) {
  for (const Column& c : EveryType()) {
    Column out = Apply(MustParse("redact"), c);
    EXPECT_EQ(out.strings, (std::vector<std::string>{"***", "", "***"}));
    EXPECT_EQ(out.valid, (std::vector<uint8_t>{1, 0, 1}));
  }
  Column out = Apply(MustParse("redact:[pii]"), Strings({"a", "b"}));
  EXPECT_EQ(out.strings, (std::vector<std::string>{"[pii]", "[pii]"}));
}

TEST(ApplyMaskTest, PartialOnEveryType) {
  const Mask keep4 = MustParse("partial:4");
  std::vector<Column> all = EveryType();
  EXPECT_EQ(Apply(keep4, all[0]).strings, (std::vector<std::string>{"**", "", "**"}));      // 42, -7
  EXPECT_EQ(Apply(keep4, all[1]).strings, (std::vector<std::string>{"****", "", "****"}));  // 3.25, -0.5
  EXPECT_EQ(Apply(keep4, all[2]).strings, (std::vector<std::string>{"****0042", "", "*"}));
  EXPECT_EQ(Apply(keep4, all[3]).strings, (std::vector<std::string>{"****", "", "*alse"}));  // true, false
  EXPECT_EQ(Apply(keep4, all[4]).strings,
            (std::vector<std::string>{"****************:00Z", "", "****************:59Z"}));
  for (const Column& c : all) EXPECT_EQ(Apply(keep4, c).valid, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(Apply(MustParse("partial:2"), Ints({123456})).strings, (std::vector<std::string>{"****56"}));
}

TEST(ApplyMaskTest, PartialCountsUtf8CodePoints) {
  const Column c = Strings({"Müller-Straße", "Åsa", "日本語テキスト", "", "abcd", "abcde"});
  EXPECT_EQ(Apply(MustParse("partial:4"), c).strings,
            (std::vector<std::string>{"*********raße", "***", "***テキスト", "", "****", "*bcde"}));
  EXPECT_EQ(Apply(MustParse("partial:0"), c).strings,
            (std::vector<std::string>{"*************", "***", "*******", "", "****", "*****"}));
  EXPECT_EQ(Apply(MustParse("partial:100"), c).strings[0], std::string(13, '*'));
}

TEST(ApplyMaskTest, HashIsTheTruncatedHmacOfTheCanonicalText) {
  const Mask hash = MustParse("hash");
  for (const Column& c : EveryType()) {
    Column out = Apply(hash, c);
    EXPECT_EQ(out.valid, (std::vector<uint8_t>{1, 0, 1}));
    EXPECT_EQ(out.strings[1], "");
    for (size_t i : {0u, 2u}) {
      EXPECT_EQ(out.strings[i], ExpectedPseudonym(kKey, c.AsText(i))) << c.AsText(i);
      EXPECT_EQ(out.strings[i].size(), 24u);
    }
  }
  // Keyed by the canonical text, so 42 and "42" join.
  EXPECT_EQ(Apply(hash, Ints({42})).strings, Apply(hash, Strings({"42"})).strings);
  // 0.0 and -0.0 render differently, so they are different values.
  Column zeros = Apply(hash, Doubles({0.0, -0.0}));
  EXPECT_NE(zeros.strings[0], zeros.strings[1]);
  // A bool stored as 2 is "true".
  Column bools = Apply(hash, Ints({2, 1}, Type::kBool));
  EXPECT_EQ(bools.strings[0], bools.strings[1]);
}

TEST(ApplyMaskTest, HashIsStableAndKeyDependent) {
  const Mask hash = MustParse("hash");
  const Column serials = Strings({"WG-00042", "WG-00043", "WG-00042", std::nullopt});
  Column a = Apply(hash, serials);
  Column b = Apply(hash, serials);
  EXPECT_EQ(a.strings, b.strings);
  EXPECT_EQ(a.strings[0], a.strings[2]);
  EXPECT_NE(a.strings[0], a.strings[1]);
  Column other = Apply(hash, serials, kOtherKey);
  EXPECT_NE(other.strings[0], a.strings[0]);
  EXPECT_EQ(other.strings[0], other.strings[2]);
  EXPECT_EQ(a.strings[0], ExpectedPseudonym(kKey, "WG-00042"));
}

TEST(ApplyMaskTest, HashBeyondTheCacheStillMatches) {
  Column c = Make(Type::kInt64);
  const int64_t n = 70000;  // more distinct values than the pseudonym cache holds
  for (int64_t i = 0; i < n; ++i) c.ints.push_back(i % 2 == 0 ? i : n - i);
  Column out = Apply(MustParse("hash"), c);
  for (size_t i : {size_t{0}, size_t{1}, size_t{65535}, size_t{65536}, size_t{69998}, size_t{69999}}) {
    EXPECT_EQ(out.strings[i], ExpectedPseudonym(kKey, std::to_string(c.ints[i]))) << i;
  }
}

TEST(ApplyMaskTest, HashNeedsA32ByteKey) {
  for (std::string_view key : {std::string_view(), std::string_view("short"), std::string_view(kKey + "x")}) {
    auto out = ApplyMask(MustParse("hash"), Strings({"a"}), key);
    ASSERT_FALSE(out.has_value());
    EXPECT_EQ(out.error().code(), Code::kInvalidArgument);
    EXPECT_NE(out.error().message().find("32 bytes"), std::string::npos);
  }
  // Other kinds ignore the key.
  EXPECT_TRUE(ApplyMask(MustParse("redact"), Strings({"a"}), "").has_value());
}

TEST(ApplyMaskTest, GeneralizeInt64FloorsTowardsNegativeInfinity) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  Column out = Apply(MustParse("generalize:10"), Ints({15, 10, 0, -1, -10, -11, std::nullopt, kMax, kMin}));
  EXPECT_EQ(out.field.type, Type::kInt64);
  EXPECT_EQ(out.ints[0], 10);
  EXPECT_EQ(out.ints[1], 10);
  EXPECT_EQ(out.ints[2], 0);
  EXPECT_EQ(out.ints[3], -10);
  EXPECT_EQ(out.ints[4], -10);
  EXPECT_EQ(out.ints[5], -20);
  EXPECT_EQ(out.valid[6], 0);
  EXPECT_EQ(out.ints[7], 9223372036854775800);
  EXPECT_EQ(out.ints[8], kMin);  // the bucket starts below the range: clamped
  Column huge = Apply(MustParse("generalize:1e19"), Ints({5, -5}));
  EXPECT_EQ(huge.ints, (std::vector<int64_t>{0, kMin}));
}

TEST(ApplyMaskTest, GeneralizeFloat64) {
  Column out = Apply(MustParse("generalize:0.5"), Doubles({2.7, 2.5, -0.1, -0.5, -0.6, std::nullopt}));
  EXPECT_EQ(out.doubles[0], 2.5);
  EXPECT_EQ(out.doubles[1], 2.5);
  EXPECT_EQ(out.doubles[2], -0.5);
  EXPECT_EQ(out.doubles[3], -0.5);
  EXPECT_EQ(out.doubles[4], -1.0);
  EXPECT_EQ(out.valid[5], 0);
  // Buckets that are not exact in binary still land where a reader expects.
  Column tenths = Apply(MustParse("generalize:0.1"), Doubles({0.3, 0.7, 0.29, -0.3}));
  EXPECT_EQ(tenths.doubles, (std::vector<double>{0.3, 0.7, 0.2, -0.3}));
  EXPECT_EQ(Apply(MustParse("generalize:0.01"), Doubles({0.57})).doubles[0], 0.57);
  EXPECT_EQ(Apply(MustParse("generalize:2.5"), Doubles({6, -1})).doubles, (std::vector<double>{5, -2.5}));
  EXPECT_EQ(Apply(MustParse("generalize:100"), Doubles({1234.5})).doubles[0], 1200);
  Column special = Apply(MustParse("generalize:10"),
                         Doubles({std::nan(""), std::numeric_limits<double>::infinity(), -1e300}));
  EXPECT_TRUE(std::isnan(special.doubles[0]));
  EXPECT_EQ(special.doubles[1], std::numeric_limits<double>::infinity());
  EXPECT_DOUBLE_EQ(special.doubles[2], -1e300);
}

TEST(ApplyMaskTest, GeneralizeTimestampsTruncateInUtc) {
  const Column c = Timestamps({"2026-03-17T14:35:59Z", "2024-02-29T23:59:59Z", "2000-02-29T00:00:01Z",
                               "1900-03-01T12:00:00Z", "1969-12-31T23:59:59Z", "1600-02-29T05:00:00Z",
                               "2023-12-31T23:59:59Z", std::nullopt});
  auto texts = [](const Column& col) {
    std::vector<std::string> out;
    for (size_t i = 0; i < col.size(); ++i) out.push_back(col.AsText(i));
    return out;
  };
  EXPECT_EQ(texts(Apply(MustParse("generalize:hour"), c)),
            (std::vector<std::string>{"2026-03-17T14:00:00Z", "2024-02-29T23:00:00Z", "2000-02-29T00:00:00Z",
                                      "1900-03-01T12:00:00Z", "1969-12-31T23:00:00Z", "1600-02-29T05:00:00Z",
                                      "2023-12-31T23:00:00Z", ""}));
  EXPECT_EQ(texts(Apply(MustParse("generalize:day"), c)),
            (std::vector<std::string>{"2026-03-17T00:00:00Z", "2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z",
                                      "1900-03-01T00:00:00Z", "1969-12-31T00:00:00Z", "1600-02-29T00:00:00Z",
                                      "2023-12-31T00:00:00Z", ""}));
  EXPECT_EQ(texts(Apply(MustParse("generalize:month"), c)),
            (std::vector<std::string>{"2026-03-01T00:00:00Z", "2024-02-01T00:00:00Z", "2000-02-01T00:00:00Z",
                                      "1900-03-01T00:00:00Z", "1969-12-01T00:00:00Z", "1600-02-01T00:00:00Z",
                                      "2023-12-01T00:00:00Z", ""}));
  EXPECT_EQ(texts(Apply(MustParse("generalize:year"), c)),
            (std::vector<std::string>{"2026-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2000-01-01T00:00:00Z",
                                      "1900-01-01T00:00:00Z", "1969-01-01T00:00:00Z", "1600-01-01T00:00:00Z",
                                      "2023-01-01T00:00:00Z", ""}));
}

// Month and year truncation agree with frame's own calendar over many random times.
TEST(ApplyMaskTest, GeneralizeTimestampsAgreeWithFrameCalendar) {
  std::mt19937_64 rng(5);
  Column c = Make(Type::kTimestamp);
  for (int i = 0; i < 20000; ++i) {
    c.ints.push_back(static_cast<int64_t>(rng() % (int64_t{400} * 366 * 86400)) - int64_t{200} * 366 * 86400);
  }
  c.ints.push_back(std::numeric_limits<int64_t>::max());
  c.ints.push_back(std::numeric_limits<int64_t>::min() + 86400LL * 366 * 2);
  Column month = Apply(MustParse("generalize:month"), c);
  Column year = Apply(MustParse("generalize:year"), c);
  for (size_t i = 0; i < c.size(); ++i) {
    const std::string text = c.AsText(i);
    const size_t dash = text.find('-', 1);  // after the year (which may carry a sign)
    EXPECT_EQ(month.AsText(i), text.substr(0, dash + 3) + "-01T00:00:00Z") << text;
    EXPECT_EQ(year.AsText(i), text.substr(0, dash) + "-01-01T00:00:00Z") << text;
  }
}

TEST(ApplyMaskTest, RejectsMasksThatDoNotApplyAndRaggedColumns) {
  auto wrong = ApplyMask(MustParse("generalize:day"), Doubles({1.0}), kKey);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(wrong.error().message(), "mask generalize:day cannot apply to column c (float64)");
  Column ragged = Strings({"a", "b"});
  ragged.valid.pop_back();
  auto r = ApplyMask(MustParse("hash"), ragged, kKey);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

TEST(ApplyMaskTest, EmptyColumns) {
  for (std::string_view spec : {"hash", "redact", "null", "partial:2"}) {
    EXPECT_EQ(Apply(MustParse(spec), Strings({})).size(), 0u);
  }
  EXPECT_EQ(Apply(MustParse("generalize:day"), Timestamps({})).size(), 0u);
}

// Not a test: prints hash-mask throughput. Run with
//   takt_policy_test --gtest_also_run_disabled_tests --gtest_filter='*Throughput*'
TEST(MaskThroughput, DISABLED_HashRowsPerSecond) {
  const size_t rows = 1000000;
  for (size_t distinct : {size_t{200}, rows}) {
    Column c = Make(Type::kString);
    c.valid.clear();
    c.field.nullable = false;
    for (size_t i = 0; i < rows; ++i) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "WG-%08zu", (i * 7919) % distinct);
      c.strings.emplace_back(buf);
    }
    // CPU time as well as wall time: on a shared machine the wall clock also counts other work.
    const auto start = std::chrono::steady_clock::now();
    const std::clock_t cpu_start = std::clock();
    auto out = ApplyMask(MustParse("hash"), c, kKey);
    const double cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(out.has_value());
    std::printf("hash mask: %zu rows, %zu distinct: %.3f s CPU (%.2f M rows/s), %.3f s wall\n", rows,
                distinct, cpu, rows / cpu / 1e6, wall);
  }
}

}  // namespace
}  // namespace takt::policy
