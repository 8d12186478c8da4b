#include "connectors/sql_values.h"

#include <gtest/gtest.h>

#include "connectors/sql_source.h"

namespace takt::connectors {
namespace {

TEST(ParseSqlTimestampTest, ReadsPostgresAndSqliteForms) {
  EXPECT_EQ(ParseSqlTimestamp("1970-01-01"), 0);
  EXPECT_EQ(ParseSqlTimestamp("2024-03-01"), 1709251200);
  EXPECT_EQ(ParseSqlTimestamp("2024-03-01 12:00:00"), 1709294400);
  EXPECT_EQ(ParseSqlTimestamp("2024-03-01T12:00:00Z"), 1709294400);
  EXPECT_EQ(ParseSqlTimestamp("2024-03-01 12:00"), 1709294400);
  EXPECT_EQ(ParseSqlTimestamp("2024-03-01 12:00:00.999999"), 1709294400);
  EXPECT_EQ(ParseSqlTimestamp("2024-03-01 12:00:00+00"), 1709294400);
  EXPECT_EQ(ParseSqlTimestamp("2024-03-01 17:30:00+05:30"), 1709294400);
  EXPECT_EQ(ParseSqlTimestamp("2024-03-01 17:30:00 +0530"), 1709294400);
  EXPECT_EQ(ParseSqlTimestamp("2024-03-01 07:00:00-05"), 1709294400);
  EXPECT_EQ(ParseSqlTimestamp("2024-02-29"), 1709164800);  // leap day
  EXPECT_EQ(ParseSqlTimestamp("2000-03-01"), 951868800);
  EXPECT_EQ(ParseSqlTimestamp("1900-01-01"), -2208988800);
}

TEST(ParseSqlTimestampTest, FractionsTruncateTowardThePast) {
  EXPECT_EQ(ParseSqlTimestamp("1969-12-31 23:59:59.5"), -1);
  EXPECT_EQ(ParseSqlTimestamp("1970-01-01 00:00:00.5"), 0);
}

TEST(ParseSqlTimestampTest, ReadsBcAndLongYears) {
  // 1 BC is proleptic year 0; 0001-01-01 is -62135596800.
  EXPECT_EQ(ParseSqlTimestamp("0001-01-01 00:00:00"), -62135596800);
  EXPECT_EQ(ParseSqlTimestamp("0001-12-31 BC"), -62135596800 - 86400);
  EXPECT_EQ(ParseSqlTimestamp("0001-01-01 00:00:00+00 BC"), -62135596800 - 366 * 86400);
  EXPECT_EQ(ParseSqlTimestamp("10000-01-01 00:00:00"), 253402300800);
}

TEST(ParseSqlTimestampTest, RefusesWhatIsNotATimestamp) {
  for (const char* bad : {"", "infinity", "-infinity", "2024-13-01", "2024-02-30", "2023-02-29",
                          "2024-03-01x", "2024-03-01 25:00:00", "2024-03-01 12", "12:00:00", "abc",
                          "2024-3-1", "0000-01-01 BC", "2024-03-01 12:00:00.", "2024-03-01 12:00:00+99"}) {
    EXPECT_FALSE(ParseSqlTimestamp(bad).has_value()) << bad;
  }
}

TEST(ColumnBuilderTest, KeepsValidityEmptyUntilANull) {
  ColumnBuilder b({"x", frame::Type::kInt64, true});
  b.AppendInt(1);
  b.AppendInt(2);
  frame::Column all_valid = b.Finish();
  EXPECT_EQ(all_valid.ints, (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(all_valid.valid.empty());

  b.AppendInt(3);
  b.AppendNull();
  b.AppendInt(5);
  frame::Column with_null = b.Finish();
  EXPECT_EQ(with_null.ints, (std::vector<int64_t>{3, 0, 5}));
  EXPECT_EQ(with_null.valid, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(with_null.field.name, "x");
  EXPECT_EQ(b.size(), 0u);
}

TEST(ColumnBuilderTest, BatchesPassTableValidation) {
  std::vector<ColumnBuilder> builders;
  builders.emplace_back(frame::Field{"s", frame::Type::kString, true});
  builders.emplace_back(frame::Field{"d", frame::Type::kFloat64, true});
  builders[0].AppendNull();
  builders[1].AppendDouble(1.5);
  builders[0].AppendString("a");
  builders[1].AppendNull();
  frame::Table t = FinishBatch(builders);
  EXPECT_TRUE(t.Validate()) << t.Validate().error().ToString();
  EXPECT_EQ(t.num_rows(), 2u);
  EXPECT_TRUE(t.columns[0].IsNull(0));
  EXPECT_TRUE(t.columns[1].IsNull(1));
}

TEST(CheckColumnNamesTest, RefusesDuplicateAndEmptyNames) {
  EXPECT_TRUE(CheckColumnNames({"a", "b"}));
  auto dup = CheckColumnNames({"id", "x", "id"});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), Code::kInvalidArgument);
  EXPECT_NE(dup.error().message().find("columns 1 and 3 are both named 'id'"), std::string::npos);
  auto empty = CheckColumnNames({"a", ""});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), Code::kInvalidArgument);
}

TEST(ConninfoSecretsTest, FindsPasswordsInBothForms) {
  EXPECT_EQ(ConninfoSecrets("postgresql://u:s%40cret@h/db"),
            (std::vector<std::string>{"s%40cret", "s@cret"}));
  EXPECT_EQ(ConninfoSecrets("host=h password='it\\'s'"), (std::vector<std::string>{"'it\\'s'", "it's"}));
  EXPECT_TRUE(ConninfoSecrets("host=h dbname=d").empty());
  EXPECT_EQ(ScrubSecrets("auth failed for s@cret", {"s@cret"}), "auth failed for ***");
}

}  // namespace
}  // namespace takt::connectors
