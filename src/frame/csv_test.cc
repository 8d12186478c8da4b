#include "frame/csv.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "frame/table_testing.h"

namespace takt::frame {
namespace {

using ::takt::frame::testing::ExpectTablesEqual;

Table MustRead(std::string_view text, const CsvOptions& options = {}) {
  Result<Table> t = ReadCsv(text, options);
  EXPECT_TRUE(t.has_value()) << t.error().ToString();
  return t.has_value() ? std::move(*t) : Table{};
}

// Expects reading `text` to fail with InvalidArgument carrying exactly `message`.
void ExpectReadError(std::string_view text, std::string_view message) {
  Result<Table> t = ReadCsv(text);
  ASSERT_FALSE(t.has_value()) << "expected error: " << message;
  EXPECT_EQ(t.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(t.error().message(), message);
}

void ExpectSchemaReadError(std::string_view text, const Schema& schema, std::string_view message) {
  Result<Table> t = ReadCsvWithSchema(text, schema);
  ASSERT_FALSE(t.has_value()) << "expected error: " << message;
  EXPECT_EQ(t.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(t.error().message(), message);
}

Type TypeOf(const Table& t, std::string_view name) { return t.Find(name)->field.type; }

// --- Type inference ----------------------------------------------------------

TEST(ReadCsvTest, InfersEachType) {
  Table t = MustRead(
      "b,i,f,ts,s\n"
      "true,1,1.5,2026-03-01T14:00:00Z,abc\n"
      "FALSE,-20,2,2026-03-01,12\n"
      "True,+3,-1e3,2026-03-01 15:00:00,x y\n");
  ASSERT_EQ(t.num_columns(), 5u);
  ASSERT_EQ(t.num_rows(), 3u);
  EXPECT_EQ(TypeOf(t, "b"), Type::kBool);
  EXPECT_EQ(TypeOf(t, "i"), Type::kInt64);
  EXPECT_EQ(TypeOf(t, "f"), Type::kFloat64);
  EXPECT_EQ(TypeOf(t, "ts"), Type::kTimestamp);
  EXPECT_EQ(TypeOf(t, "s"), Type::kString);
  EXPECT_EQ(t.Find("b")->ints, (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(t.Find("i")->ints, (std::vector<int64_t>{1, -20, 3}));
  EXPECT_EQ(t.Find("f")->doubles, (std::vector<double>{1.5, 2.0, -1000.0}));
  EXPECT_EQ(t.Find("ts")->ints, (std::vector<int64_t>{1772373600, 1772323200, 1772377200}));
  EXPECT_EQ(t.Find("s")->strings, (std::vector<std::string>{"abc", "12", "x y"}));
  for (const Column& c : t.columns) {
    EXPECT_FALSE(c.field.nullable) << c.field.name;
    EXPECT_TRUE(c.valid.empty()) << c.field.name;
  }
  EXPECT_TRUE(t.Validate().has_value());
}

TEST(ReadCsvTest, PicksTheNarrowestTypeThatFitsEveryValue) {
  Table t = MustRead(
      "bool_then_int,int_then_float,float_then_text,ts_then_text,ts_then_number\n"
      "true,1,1.5,2026-03-01,2026-03-01\n"
      "1,2.5,n/a,soon,20260301\n");
  EXPECT_EQ(TypeOf(t, "bool_then_int"), Type::kString);  // "true" is no int, "1" no bool
  EXPECT_EQ(TypeOf(t, "int_then_float"), Type::kFloat64);
  EXPECT_EQ(TypeOf(t, "float_then_text"), Type::kString);
  EXPECT_EQ(TypeOf(t, "ts_then_text"), Type::kString);
  EXPECT_EQ(TypeOf(t, "ts_then_number"), Type::kString);  // numbers never become timestamps
  EXPECT_EQ(t.Find("int_then_float")->doubles, (std::vector<double>{1.0, 2.5}));
}

TEST(ReadCsvTest, NumbersAreTrimmedStringsAreNot) {
  Table t = MustRead("i,f,s\n 7 ,\t2.5 ,  pad  \n");
  EXPECT_EQ(TypeOf(t, "i"), Type::kInt64);
  EXPECT_EQ(t.Find("i")->ints[0], 7);
  EXPECT_EQ(TypeOf(t, "f"), Type::kFloat64);
  EXPECT_EQ(TypeOf(t, "s"), Type::kString);
  EXPECT_EQ(t.Find("s")->strings[0], "  pad  ");
}

TEST(ReadCsvTest, IntegerTooLargeForInt64StaysAString) {
  Table t = MustRead("serial,ok\n123456789012345678901234,9223372036854775807\n");
  EXPECT_EQ(TypeOf(t, "serial"), Type::kString);
  EXPECT_EQ(t.Find("serial")->strings[0], "123456789012345678901234");
  EXPECT_EQ(TypeOf(t, "ok"), Type::kInt64);
  EXPECT_EQ(t.Find("ok")->ints[0], std::numeric_limits<int64_t>::max());
}

TEST(ReadCsvTest, FloatSpellings) {
  Table t = MustRead("f\n1e5\n.5\n-0.25\nnan\ninf\n-inf\n");
  ASSERT_EQ(TypeOf(t, "f"), Type::kFloat64);
  const auto& d = t.Find("f")->doubles;
  EXPECT_EQ(d[0], 1e5);
  EXPECT_EQ(d[1], 0.5);
  EXPECT_EQ(d[2], -0.25);
  EXPECT_TRUE(std::isnan(d[3]));
  EXPECT_EQ(d[4], std::numeric_limits<double>::infinity());
  EXPECT_EQ(d[5], -std::numeric_limits<double>::infinity());
}

TEST(ReadCsvTest, EmptyFieldsAreNullsAndMakeTheColumnNullable) {
  Table t = MustRead("a,b,c\n1,,x\n,2.5,\n3,4,z\n");
  const Column& a = *t.Find("a");
  EXPECT_EQ(a.field.type, Type::kInt64);
  EXPECT_TRUE(a.field.nullable);
  EXPECT_EQ(a.valid, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_TRUE(a.IsNull(1));
  EXPECT_EQ(a.ints[0], 1);
  EXPECT_EQ(a.ints[2], 3);
  const Column& b = *t.Find("b");
  EXPECT_EQ(b.field.type, Type::kFloat64);
  EXPECT_TRUE(b.field.nullable);
  EXPECT_EQ(b.valid, (std::vector<uint8_t>{0, 1, 1}));
  const Column& c = *t.Find("c");
  EXPECT_EQ(c.field.type, Type::kString);
  EXPECT_EQ(c.valid, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_TRUE(t.Validate().has_value());
}

TEST(ReadCsvTest, AllEmptyColumnIsNullableString) {
  Table t = MustRead("a,b\n,1\n,2\n");
  const Column& a = *t.Find("a");
  EXPECT_EQ(a.field.type, Type::kString);
  EXPECT_TRUE(a.field.nullable);
  EXPECT_EQ(a.valid, (std::vector<uint8_t>{0, 0}));
  EXPECT_FALSE(t.Find("b")->field.nullable);
}

TEST(ReadCsvTest, HeaderOnlyGivesZeroRowsOfNullableStrings) {
  Table t = MustRead("a,b\n");
  EXPECT_EQ(t.num_columns(), 2u);
  EXPECT_EQ(t.num_rows(), 0u);
  EXPECT_EQ(t.columns[0].field, (Field{"a", Type::kString, true}));
}

// --- Quoting and line ends ----------------------------------------------------

TEST(ReadCsvTest, QuotedFieldsWithDelimitersQuotesAndNewlines) {
  Table t = MustRead(
      "id,note\n"
      "1,\"a,b\"\n"
      "2,\"she said \"\"hi\"\"\"\n"
      "3,\"two\nlines\"\n"
      "4,\"\"\"\"\n"
      "5,plain\n");
  ASSERT_EQ(t.num_rows(), 5u);
  EXPECT_EQ(t.Find("note")->strings,
            (std::vector<std::string>{"a,b", "she said \"hi\"", "two\nlines", "\"", "plain"}));
  EXPECT_EQ(TypeOf(t, "id"), Type::kInt64);
}

TEST(ReadCsvTest, QuotedNumbersAreStillNumbers) {
  Table t = MustRead("x\n\"12\"\n\"13\"\n");
  EXPECT_EQ(TypeOf(t, "x"), Type::kInt64);
  EXPECT_EQ(t.Find("x")->ints, (std::vector<int64_t>{12, 13}));
}

TEST(ReadCsvTest, QuotedHeaderNames) {
  Table t = MustRead("\"force, kN\",\"say \"\"x\"\"\"\n1,2\n");
  EXPECT_EQ(t.columns[0].field.name, "force, kN");
  EXPECT_EQ(t.columns[1].field.name, "say \"x\"");
}

TEST(ReadCsvTest, CrlfLineEnds) {
  Table t = MustRead("a,b\r\n1,x\r\n2,\"y\r\nz\"\r\n3,w");
  ASSERT_EQ(t.num_rows(), 3u);
  EXPECT_EQ(t.Find("a")->ints, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(t.Find("b")->strings, (std::vector<std::string>{"x", "y\r\nz", "w"}));
}

TEST(ReadCsvTest, MissingFinalNewlineAndTrailingEmptyField) {
  Table t = MustRead("a,b\n1,");
  ASSERT_EQ(t.num_rows(), 1u);
  EXPECT_TRUE(t.Find("b")->IsNull(0));
}

TEST(ReadCsvTest, SkipsByteOrderMark) {
  Table t = MustRead("\xEF\xBB\xBFname\nx\n");
  EXPECT_EQ(t.columns[0].field.name, "name");
}

TEST(ReadCsvTest, BlankLinesAreSkippedWithSeveralColumns) {
  Table t = MustRead("a,b\n1,2\n\n3,4\n\n");
  EXPECT_EQ(t.num_rows(), 2u);
}

TEST(ReadCsvTest, BlankLineIsANullWithOneColumn) {
  Table t = MustRead("a\n1\n\n3\n");
  ASSERT_EQ(t.num_rows(), 3u);
  EXPECT_TRUE(t.columns[0].IsNull(1));
  EXPECT_EQ(t.columns[0].field.type, Type::kInt64);
}

TEST(ReadCsvTest, OtherDelimiter) {
  CsvOptions options;
  options.delimiter = ';';
  Table t = MustRead("a;b\n1,5;\"x;y\"\n", options);
  EXPECT_EQ(TypeOf(t, "a"), Type::kString);  // "1,5" with a decimal comma is text
  EXPECT_EQ(t.Find("b")->strings[0], "x;y");
}

TEST(ReadCsvTest, MaxRowsStopsEarly) {
  CsvOptions options;
  options.max_rows = 2;
  Table t = MustRead("a\n1\n2\n3\nnot,even,ragged,rows,are,read\n", options);
  EXPECT_EQ(t.num_rows(), 2u);
}

TEST(ReadCsvTest, UnicodeIsKept) {
  Table t = MustRead("stadt,wert\nMünchen,1\n東京,2\n");
  EXPECT_EQ(t.Find("stadt")->strings, (std::vector<std::string>{"München", "東京"}));
}

// --- Errors -------------------------------------------------------------------

TEST(ReadCsvTest, RaggedRowNamesItsLine) {
  ExpectReadError("a,b,c\n1,2,3\n4,5\n", "line 3: has 2 fields, the header has 3");
  ExpectReadError("a,b\n1,2\n3,4,5\n", "line 3: has 3 fields, the header has 2");
  // A quoted newline makes the row start on a later physical line.
  ExpectReadError("a,b\n\"x\ny\",1\n2\n", "line 4: has 1 field, the header has 2");
}

TEST(ReadCsvTest, LineNumbersArePhysicalLinesOfTheRowStart) {
  ExpectReadError("a,b\r\n\"1\r\n2\r\n3\",4\r\n\r\n5,6,7\r\n", "line 6: has 3 fields, the header has 2");
}

TEST(ReadCsvTest, HeaderErrors) {
  ExpectReadError("", "no header row");
  ExpectReadError("\xEF\xBB\xBF", "no header row");
  ExpectReadError("\na,b\n", "line 1: empty header");
  ExpectReadError("a,,c\n1,2,3\n", "line 1: empty header name in column 2");
  ExpectReadError("force,x,force\n1,2,3\n", "line 1: duplicate column name 'force'");
}

TEST(ReadCsvTest, UnterminatedQuote) {
  ExpectReadError("a,b\n1,2\n3,\"open\n4,5\n", "line 3: unterminated quoted field");
}

TEST(ReadCsvTest, TextAfterClosingQuote) {
  Result<Table> t = ReadCsv("a,b\n\"x\"y,2\n");
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(t.error().message().starts_with("line 2: unexpected 'y' after the closing quote"))
      << t.error().message();
}

TEST(ReadCsvTest, InvalidUtf8NamesTheLine) {
  ExpectReadError("a,b\n1,2\n3,4\n5,6\n7,\xC3\x28\n", "line 5: invalid UTF-8");
  ExpectReadError("a\n\"\xFF\"\n", "line 2: invalid UTF-8");
  ExpectReadError("a\n\xED\xA0\x80\n", "line 2: invalid UTF-8");  // a UTF-16 surrogate
  ExpectReadError("a\n\xC0\x80\n", "line 2: invalid UTF-8");      // overlong NUL
  ExpectReadError("a\xE2\x82\n", "line 1: invalid UTF-8");        // truncated sequence
}

TEST(ReadCsvTest, BadDelimiterOption) {
  CsvOptions options;
  options.delimiter = '"';
  Result<Table> t = ReadCsv("a\n1\n", options);
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), Code::kInvalidArgument);
}

// --- ReadCsvWithSchema ----------------------------------------------------------

Schema WeldSchema() {
  return Schema{{{"spot_id", Type::kInt64, false},
                 {"electrode_force_kn", Type::kFloat64, false},
                 {"at", Type::kTimestamp, false},
                 {"ok", Type::kBool, true},
                 {"line", Type::kString, true}}};
}

TEST(ReadCsvWithSchemaTest, ReadsInSchemaOrder) {
  Result<Table> t = ReadCsvWithSchema(
      "line,ok,at,electrode_force_kn,spot_id\n"
      "L1,true,2026-03-01T14:00:00Z,3,17\n"
      ",1,2026-03-02,2.75,18\n"
      "L2,,2026-03-03 00:00:01,-1e-3,19\n",
      WeldSchema());
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_EQ(t->schema(), WeldSchema());
  EXPECT_EQ(t->num_rows(), 3u);
  EXPECT_EQ(t->Find("spot_id")->ints, (std::vector<int64_t>{17, 18, 19}));
  EXPECT_EQ(t->Find("electrode_force_kn")->doubles, (std::vector<double>{3.0, 2.75, -0.001}));
  EXPECT_EQ(t->Find("ok")->ints[1], 1);
  EXPECT_TRUE(t->Find("ok")->IsNull(2));
  EXPECT_TRUE(t->Find("line")->IsNull(1));
  EXPECT_TRUE(t->Find("spot_id")->valid.empty());
  EXPECT_TRUE(t->Validate().has_value());
}

TEST(ReadCsvWithSchemaTest, ValueThatDoesNotFitNamesLineAndColumn) {
  std::string csv = "spot_id,electrode_force_kn,at,ok,line\n";
  for (int i = 0; i < 15; ++i) csv += std::to_string(i) + ",1.5,2026-03-01,true,L\n";
  csv += "15,abc,2026-03-01,true,L\n";
  ExpectSchemaReadError(csv, WeldSchema(), "line 17, column electrode_force_kn: 'abc' is not a float64");
  ExpectSchemaReadError("spot_id,electrode_force_kn,at,ok,line\n1.5,1,2026-03-01,true,L\n", WeldSchema(),
                        "line 2, column spot_id: '1.5' is not an int64");
  ExpectSchemaReadError("spot_id,electrode_force_kn,at,ok,line\n1,1,yesterday,true,L\n", WeldSchema(),
                        "line 2, column at: 'yesterday' is not a timestamp");
  ExpectSchemaReadError("spot_id,electrode_force_kn,at,ok,line\n1,1,2026-03-01,yes,L\n", WeldSchema(),
                        "line 2, column ok: 'yes' is not a bool");
}

TEST(ReadCsvWithSchemaTest, EmptyValueInNonNullableColumn) {
  ExpectSchemaReadError("spot_id,electrode_force_kn,at,ok,line\n1,,2026-03-01,,\n", WeldSchema(),
                        "line 2, column electrode_force_kn: empty value in a non-nullable column");
}

TEST(ReadCsvWithSchemaTest, UnknownAndMissingColumnsAreNamed) {
  ExpectSchemaReadError("spot_id,electrode_force_kn,at,ok,line,extra,more\n", WeldSchema(),
                        "line 1: columns not in the schema: 'extra', 'more'");
  ExpectSchemaReadError("spot_id,at,ok\n", WeldSchema(),
                        "line 1: columns missing from the header: 'electrode_force_kn', 'line'");
}

TEST(ReadCsvWithSchemaTest, RaggedRowAndLongValues) {
  ExpectSchemaReadError("spot_id,electrode_force_kn,at,ok,line\n1,2\n", WeldSchema(),
                        "line 2: has 2 fields, the header has 5");
  std::string long_value(200, 'x');
  Result<Table> t = ReadCsvWithSchema(
      "spot_id,electrode_force_kn,at,ok,line\n" + long_value + ",1,2026-03-01,,\n", WeldSchema());
  ASSERT_FALSE(t.has_value());
  EXPECT_LT(t.error().message().size(), 150u);  // the value is cut short in the message
}

TEST(ReadCsvWithSchemaTest, InvalidSchemaIsRejected) {
  Schema dup{{{"a", Type::kInt64, false}, {"a", Type::kString, false}}};
  Result<Table> t = ReadCsvWithSchema("a\n1\n", dup);
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), Code::kInvalidArgument);
}

// --- WriteCsv ----------------------------------------------------------------

Table SampleTable() {
  Table t;
  Column i;
  i.field = {"i", Type::kInt64, true};
  i.ints = {1, 0, std::numeric_limits<int64_t>::min()};
  i.valid = {1, 0, 1};
  Column f;
  f.field = {"f", Type::kFloat64, false};
  f.doubles = {0.1, 3.0, -2.5e-300};
  Column s;
  s.field = {"s", Type::kString, true};
  s.strings = {"plain", "with, comma", "quote \" and\nnewline"};
  Column b;
  b.field = {"b", Type::kBool, false};
  b.ints = {1, 0, 1};
  Column ts;
  ts.field = {"ts", Type::kTimestamp, true};
  ts.ints = {1772373600, -1, 0};
  ts.valid = {1, 1, 0};
  t.columns = {i, f, s, b, ts};
  return t;
}

TEST(WriteCsvTest, WritesHeaderQuotesNullsAndTimestamps) {
  EXPECT_EQ(WriteCsv(SampleTable()),
            "i,f,s,b,ts\n"
            "1,0.1,plain,true,2026-03-01T14:00:00Z\n"
            ",3.0,\"with, comma\",false,1969-12-31T23:59:59Z\n"
            "-9223372036854775808,-2.5e-300,\"quote \"\" and\nnewline\",true,\n");
}

TEST(WriteCsvTest, RoundTripsThroughReadCsv) {
  Table original = SampleTable();
  // Inference makes a column nullable only if it has a null, and keeps `valid`
  // only then: align the expectation with that.
  original.columns[2].field.nullable = false;
  Table back = MustRead(WriteCsv(original));
  ExpectTablesEqual(original, back);
}

TEST(WriteCsvTest, RoundTripsThroughReadCsvWithSchema) {
  Table original = SampleTable();
  Result<Table> back = ReadCsvWithSchema(WriteCsv(original), original.schema());
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  ExpectTablesEqual(original, *back);
}

TEST(WriteCsvTest, IntegralFloatsStayFloat64) {
  Table t;
  Column f;
  f.field = {"f", Type::kFloat64, false};
  f.doubles = {1.0, -0.0, 1e20, 123456789.0};
  t.columns = {f};
  EXPECT_EQ(WriteCsv(t), "f\n1.0\n-0.0\n1e+20\n123456789.0\n");
  ExpectTablesEqual(t, MustRead(WriteCsv(t)));
}

TEST(WriteCsvTest, SingleColumnWithNullsRoundTrips) {
  Table t;
  Column c;
  c.field = {"x", Type::kInt64, true};
  c.ints = {1, 0, 3, 0};
  c.valid = {1, 0, 1, 0};
  t.columns = {c};
  Table back = MustRead(WriteCsv(t));
  ExpectTablesEqual(t, back);
}

TEST(WriteCsvTest, EmptyTables) {
  EXPECT_EQ(WriteCsv(Table{}), "");
  Table t;
  Column c;
  c.field = {"x", Type::kString, true};
  t.columns = {c};
  EXPECT_EQ(WriteCsv(t), "x\n");
  ExpectTablesEqual(t, MustRead(WriteCsv(t)));
}

// --- Scale ---------------------------------------------------------------------

TEST(ReadCsvTest, ManyRowsParseAndInfer) {
  // Not a timing test (benchmarks live in bench/): checks a large input is handled in one piece.
  std::string csv = "id,force,ok,at,station\n";
  const int kRows = 50000;
  for (int r = 0; r < kRows; ++r) {
    csv += std::to_string(r) + "," + std::to_string(r * 0.25) + "," + (r % 2 ? "true" : "false") + "," +
           FormatTimestamp(1772373600 + r) + ",\"st " + std::to_string(r % 7) + "\"\n";
  }
  Table t = MustRead(csv);
  ASSERT_EQ(t.num_rows(), static_cast<size_t>(kRows));
  EXPECT_EQ(TypeOf(t, "id"), Type::kInt64);
  EXPECT_EQ(TypeOf(t, "force"), Type::kFloat64);
  EXPECT_EQ(TypeOf(t, "ok"), Type::kBool);
  EXPECT_EQ(TypeOf(t, "at"), Type::kTimestamp);
  EXPECT_EQ(TypeOf(t, "station"), Type::kString);
  EXPECT_EQ(t.Find("at")->ints.back(), 1772373600 + kRows - 1);
}

}  // namespace
}  // namespace takt::frame
