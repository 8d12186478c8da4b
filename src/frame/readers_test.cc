#include "frame/readers.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "frame/csv.h"
#include "frame/csv_internal.h"
#include "frame/table_testing.h"

namespace takt::frame {
namespace {

using ::takt::frame::testing::ExpectTablesEqual;

// --- Test sources ---------------------------------------------------------------

// Hands out its text 1 to 7 bytes per Read (an irregular pattern), so that
// nearly every record of a test straddles a refill of the reader's buffer, as
// with a slow network body.
class TrickleSource final : public ByteSource {
 public:
  explicit TrickleSource(std::string text) : text_(std::move(text)) {}
  Result<size_t> Read(char* buf, size_t n) override {
    const size_t want = 1 + (step_++ * 5 + 3) % 7;
    const size_t count = std::min({n, want, text_.size() - pos_});
    std::memcpy(buf, text_.data() + pos_, count);
    pos_ += count;
    return count;
  }
  uint64_t size_hint() const override { return text_.size(); }

 private:
  std::string text_;
  size_t pos_ = 0;
  size_t step_ = 0;
};

// Gives `text`, then fails as a broken connection would.
class FailingSource final : public ByteSource {
 public:
  explicit FailingSource(std::string text) : text_(std::move(text)) {}
  Result<size_t> Read(char* buf, size_t n) override {
    if (pos_ == text_.size()) return Unavailable("connection reset");
    const size_t count = std::min(n, text_.size() - pos_);
    std::memcpy(buf, text_.data() + pos_, count);
    pos_ += count;
    return count;
  }

 private:
  std::string text_;
  size_t pos_ = 0;
};

// `prefix`, `repeat` copies of `fill`, then `suffix`, made up as they are
// read: a huge input without holding it in memory twice.
class RepeatSource final : public ByteSource {
 public:
  RepeatSource(std::string prefix, char fill, size_t repeat, std::string suffix)
      : prefix_(std::move(prefix)), fill_(fill), repeat_(repeat), suffix_(std::move(suffix)) {}
  Result<size_t> Read(char* buf, size_t n) override {
    const uint64_t total = prefix_.size() + repeat_ + suffix_.size();
    size_t done = 0;
    while (done < n && pos_ < total) {
      if (pos_ < prefix_.size()) {
        buf[done++] = prefix_[pos_++];
      } else if (pos_ < prefix_.size() + repeat_) {
        const size_t count = std::min<uint64_t>(n - done, prefix_.size() + repeat_ - pos_);
        std::memset(buf + done, fill_, count);
        done += count;
        pos_ += count;
      } else {
        buf[done++] = suffix_[pos_ - prefix_.size() - repeat_];
        ++pos_;
      }
    }
    return done;
  }

 private:
  std::string prefix_;
  char fill_;
  uint64_t repeat_;
  std::string suffix_;
  uint64_t pos_ = 0;
};

// --- Helpers --------------------------------------------------------------------

struct Read {
  Result<Table> table;
  ReaderReport report;
};

Read ReadStream(bool jsonl, ByteSource& source, const TextReadOptions& options) {
  Result<std::unique_ptr<BatchReader>> reader =
      jsonl ? OpenJsonlReader(source, options) : OpenCsvReader(source, options);
  if (!reader) return {std::unexpected(reader.error()), {}};
  Result<Table> table = ReadAll(**reader);
  if (table) {
    EXPECT_EQ(table->schema(), (*reader)->schema());
    Status valid = table->Validate();
    EXPECT_TRUE(valid.has_value()) << valid.error().ToString();
  }
  return {std::move(table), (*reader)->report()};
}

Read ReadCsvText(std::string_view text, const TextReadOptions& options = {}) {
  std::unique_ptr<ByteSource> source = StringSource(text);
  return ReadStream(false, *source, options);
}

Read ReadCsvTrickle(std::string_view text, const TextReadOptions& options = {}) {
  TrickleSource source{std::string(text)};
  return ReadStream(false, source, options);
}

Read ReadJsonlText(std::string_view text, const TextReadOptions& options = {}) {
  std::unique_ptr<ByteSource> source = StringSource(text);
  return ReadStream(true, *source, options);
}

Table Must(const Read& read) {
  EXPECT_TRUE(read.table.has_value()) << read.table.error().ToString();
  return read.table.has_value() ? *read.table : Table{};
}

void ExpectError(const Read& read, Code code, std::string_view message) {
  ASSERT_FALSE(read.table.has_value()) << "expected error: " << message;
  EXPECT_EQ(read.table.error().code(), code);
  EXPECT_EQ(read.table.error().message(), message);
}

TextReadOptions Options(size_t infer_rows, OnError on_error = OnError::kFail) {
  TextReadOptions options;
  options.infer_rows = infer_rows;
  options.on_error = on_error;
  return options;
}

// Every batch of the reader, checked against the contract in batch.h.
std::vector<Table> Batches(BatchReader& reader) {
  std::vector<Table> batches;
  while (true) {
    Result<std::optional<Table>> batch = reader.Next();
    EXPECT_TRUE(batch.has_value()) << batch.error().ToString();
    if (!batch.has_value() || !*batch) break;
    EXPECT_GT((*batch)->num_rows(), 0u);
    EXPECT_TRUE((*batch)->Validate().has_value());
    batches.push_back(std::move(**batch));
  }
  return batches;
}

// --- CSV: the same tables as ReadCsv ----------------------------------------------

const char* const kCsvExamples[] = {
    "b,i,f,ts,s\ntrue,1,1.5,2026-03-01T14:00:00Z,abc\nFALSE,-20,2,2026-03-01,12\nTrue,+3,-1e3,2026-03-01 "
    "15:00:00,x y\n",
    "bool_then_int,int_then_float,float_then_text,ts_then_text\ntrue,1,1.5,2026-03-01\n1,2.5,n/a,soon\n",
    "i,f,s\n 7 ,\t2.5 ,  pad  \n",
    "serial,ok\n123456789012345678901234,9223372036854775807\n",
    "f\n1e5\n.5\n-0.25\nnan\ninf\n-inf\n+3.5\n 7.25 \n1.7976931348623157e308\n0.1\n123456789012.125\n5.\n",
    "i\n+5\n-0\n 42 \n9223372036854775807\n-9223372036854775808\n00012\n12345678\n-1234567\n",
    "t\n2026-03-01\n2026-03-01 14:00:00\n2026-03-01T14:00:01Z\n+12026-03-01T00:00:00Z\n1999-12-31T23:59:59\n"
    "1999-12-31T23:59:59\n2000-01-01T00:00:00Z\n",
    "a,b,c\n1,,x\n,2.5,\n3,4,z\n",
    "a,b\n,1\n,2\n",
    "id,note\n1,\"a,b\"\n2,\"she said \"\"hi\"\"\"\n3,\"two\nlines\"\n4,\"\"\"\"\n5,plain\n",
    "x\n\"12\"\n\"13\"\n",
    "\"force, kN\",\"say \"\"x\"\"\"\n1,2\n",
    "a,b\r\n1,x\r\n2,\"y\r\nz\"\r\n3,w",
    "a,b\n1,",
    "\xEF\xBB\xBFname\nx\n",
    "a,b\n1,2\n\n3,4\n\n",
    "a\n1\n\n3\n",
    "stadt,wert\nM\xC3\xBCnchen,1\n\xE6\x9D\xB1\xE4\xBA\xAC,2\n",
    "a,b\n1,x\ry\n2,z\r",
    "a,b\n1,\"quoted\"\r\n2,\"\"\n",
    "a,b\n\"1\",\"2\"\n\"\",\"\"\n",
    "n\n1\n2\n3",
};

TEST(CsvReaderTest, GivesWhatReadCsvGives) {
  for (const char* text : kCsvExamples) {
    SCOPED_TRACE(text);
    Result<Table> expected = ReadCsv(text);
    ASSERT_TRUE(expected.has_value()) << expected.error().ToString();
    ExpectTablesEqual(*expected, Must(ReadCsvText(text)));
  }
}

TEST(CsvReaderTest, RecordsSpanningRefillsGiveTheSameTables) {
  TextReadOptions options;
  options.batch_rows = 2;
  for (const char* text : kCsvExamples) {
    SCOPED_TRACE(text);
    Result<Table> expected = ReadCsv(text);
    ASSERT_TRUE(expected.has_value());
    ExpectTablesEqual(*expected, Must(ReadCsvTrickle(text)));
    ExpectTablesEqual(*expected, Must(ReadCsvTrickle(text, options)));
  }
}

TEST(CsvReaderTest, QuotedNewlinesCrlfAndBomAcrossRefills) {
  const std::string text =
      "\xEF\xBB\xBF"
      "id,note,v\r\n"
      "1,\"first\r\nsecond\nthird\",1.5\r\n"
      "2,\"a \"\"quoted\"\" word, and a comma\",2.5\r\n"
      "3,plain,\r\n"
      "4,\"\",4.5";
  Table t = Must(ReadCsvTrickle(text));
  ASSERT_EQ(t.num_rows(), 4u);
  EXPECT_EQ(t.columns[0].field.name, "id");
  EXPECT_EQ(t.Find("note")->strings[0], "first\r\nsecond\nthird");
  EXPECT_EQ(t.Find("note")->strings[1], "a \"quoted\" word, and a comma");
  EXPECT_TRUE(t.Find("note")->IsNull(3));
  EXPECT_EQ(t.Find("v")->field.type, Type::kFloat64);
  EXPECT_TRUE(t.Find("v")->IsNull(2));
  ExpectTablesEqual(ReadCsv(text).value(), t);
}

TEST(CsvReaderTest, ManyChunksWithASmallReadAhead) {
  // More text than one chunk, and a read-ahead far shorter than the input: the
  // buffer refills and drops used text many times.
  std::string text = "id,force,ok,at,station,note\n";
  for (int r = 0; r < 120000; ++r) {
    text += std::to_string(r) + "," + std::to_string(r * 0.25) + "," + (r % 2 ? "true" : "false") + "," +
            FormatTimestamp(1772373600 + r * 7) + ",\"st " + std::to_string(r % 7) + "\",";
    if (r % 1000 == 0) text += "\"multi\nline, \"\"quoted\"\"\"";
    text += "\n";
  }
  ASSERT_GT(text.size(), size_t{5} << 20);
  TextReadOptions options = Options(500);
  options.batch_rows = 7000;
  Read read = ReadCsvText(text, options);
  Table expected = ReadCsv(text).value();
  ExpectTablesEqual(expected, Must(read));
  EXPECT_EQ(read.report.rows_read, 120000);
  EXPECT_EQ(read.report.bytes_read, text.size());
  EXPECT_EQ(read.report.rows_skipped, 0);
}

TEST(CsvReaderTest, BatchesHoldBatchRowsRows) {
  std::string text = "n,s\n";
  for (int i = 0; i < 10; ++i) text += std::to_string(i) + ",x" + std::to_string(i) + "\n";
  for (bool trickle : {false, true}) {
    TrickleSource trickle_source(text);
    std::unique_ptr<ByteSource> string_source = StringSource(text);
    ByteSource& source = trickle ? static_cast<ByteSource&>(trickle_source) : *string_source;
    TextReadOptions options;
    options.batch_rows = 3;
    Result<std::unique_ptr<BatchReader>> reader = OpenCsvReader(source, options);
    ASSERT_TRUE(reader.has_value()) << reader.error().ToString();
    std::vector<Table> batches = Batches(**reader);
    ASSERT_EQ(batches.size(), 4u);
    EXPECT_EQ(batches[0].num_rows(), 3u);
    EXPECT_EQ(batches[1].num_rows(), 3u);
    EXPECT_EQ(batches[2].num_rows(), 3u);
    EXPECT_EQ(batches[3].num_rows(), 1u);
    EXPECT_EQ(batches[1].columns[0].ints, (std::vector<int64_t>{3, 4, 5}));
    EXPECT_EQ(batches[3].columns[1].strings, (std::vector<std::string>{"x9"}));
    for (const Table& b : batches) EXPECT_EQ(b.schema(), (*reader)->schema());
    // The end stays the end.
    Result<std::optional<Table>> after = (*reader)->Next();
    ASSERT_TRUE(after.has_value());
    EXPECT_FALSE(after->has_value());
    EXPECT_EQ((*reader)->report().rows_read, 10);
    EXPECT_EQ((*reader)->report().bytes_read, text.size());
  }
}

TEST(CsvReaderTest, HeaderOnlyGivesNoBatchesAndNullableStrings) {
  for (const char* text : {"a,b\n", "a,b", "a,b\r\n\n\n"}) {
    std::unique_ptr<ByteSource> source = StringSource(text);
    Result<std::unique_ptr<BatchReader>> reader = OpenCsvReader(*source);
    ASSERT_TRUE(reader.has_value()) << reader.error().ToString();
    EXPECT_EQ((*reader)->schema(), ReadCsv("a,b\n").value().schema());
    EXPECT_EQ((*reader)->schema().fields[1], (Field{"b", Type::kString, true}));
    Result<std::optional<Table>> batch = (*reader)->Next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_FALSE(batch->has_value());
  }
}

TEST(CsvReaderTest, EmptySourceHasNoHeaderRow) {
  ExpectError(ReadCsvText(""), Code::kInvalidArgument, "no header row");
  ExpectError(ReadCsvText("\xEF\xBB\xBF"), Code::kInvalidArgument, "no header row");
  ExpectError(ReadCsvTrickle(""), Code::kInvalidArgument, "no header row");
}

TEST(CsvReaderTest, BadHeadersAreFatal) {
  TextReadOptions skip = Options(100, OnError::kSkip);
  ExpectError(ReadCsvText("\na,b\n", skip), Code::kInvalidArgument, "line 1: empty header");
  ExpectError(ReadCsvText("a,,c\n1,2,3\n", skip), Code::kInvalidArgument,
              "line 1: empty header name in column 2");
  ExpectError(ReadCsvText("force,x,force\n1,2,3\n", skip), Code::kInvalidArgument,
              "line 1: duplicate column name 'force'");
  ExpectError(ReadCsvText("a\xE2\x82\n1\n", skip), Code::kInvalidArgument, "line 1: invalid UTF-8");
}

TEST(CsvReaderTest, BadOptions) {
  TextReadOptions options;
  options.delimiter = '"';
  ExpectError(ReadCsvText("a\n1\n", options), Code::kInvalidArgument, "CSV delimiter '\"' is not allowed");
  options = {};
  options.batch_rows = 0;
  ExpectError(ReadCsvText("a\n1\n", options), Code::kInvalidArgument, "batch_rows must be at least 1");
}

TEST(CsvReaderTest, OtherDelimiter) {
  TextReadOptions options;
  options.delimiter = ';';
  Table t = Must(ReadCsvTrickle("a;b\n1,5;\"x;y\"\n", options));
  EXPECT_EQ(t.Find("a")->field.type, Type::kString);
  EXPECT_EQ(t.Find("b")->strings[0], "x;y");
}

// --- CSV: declared types and inference ------------------------------------------------

TEST(CsvReaderTest, DeclaredTypesAreKeptTheRestInferred) {
  TextReadOptions options;
  options.types = {{"id", Type::kString}, {"v", Type::kFloat64}};
  Table t = Must(ReadCsvText("id,v,n\n007,1,5\n008,2,\n", options));
  EXPECT_EQ(t.Find("id")->field, (Field{"id", Type::kString, false}));
  EXPECT_EQ(t.Find("id")->strings, (std::vector<std::string>{"007", "008"}));
  EXPECT_EQ(t.Find("v")->field, (Field{"v", Type::kFloat64, false}));
  EXPECT_EQ(t.Find("v")->doubles, (std::vector<double>{1.0, 2.0}));
  EXPECT_EQ(t.Find("n")->field, (Field{"n", Type::kInt64, true}));
}

TEST(CsvReaderTest, DeclaredTypeForAColumnTheHeaderLacks) {
  TextReadOptions options;
  options.types = {{"zeta", Type::kInt64}, {"a", Type::kInt64}, {"alpha", Type::kBool}};
  ExpectError(ReadCsvText("a,b\n1,2\n", options), Code::kInvalidArgument,
              "types declared for columns the header lacks: 'alpha', 'zeta'");
}

TEST(CsvReaderTest, DeclaredTypeMisfitHasNoInferenceHint) {
  TextReadOptions options;
  options.types = {{"v", Type::kInt64}};
  ExpectError(ReadCsvText("v\n1\n2.5\n", options), Code::kInvalidArgument,
              "line 3, column v: '2.5' is not an int64");
  options.types = {{"at", Type::kTimestamp}, {"ok", Type::kBool}};
  ExpectError(ReadCsvText("at,ok\n2026-02-28,1\n2026-02-30,0\n", options), Code::kInvalidArgument,
              "line 3, column at: '2026-02-30' is not a timestamp");
  ExpectError(ReadCsvText("at,ok\n2026-02-28,yes\n", options), Code::kInvalidArgument,
              "line 2, column ok: 'yes' is not a bool");
}

TEST(CsvReaderTest, MisfitAfterTheReadAheadNamesTheInferredType) {
  std::string text = "force\n";
  for (int i = 0; i < 123454; ++i) text += "1.5\n";
  text += "abc\n";
  ExpectError(ReadCsvText(text), Code::kInvalidArgument,
              "line 123456, column force: 'abc' is not a float64 (type inferred from the first 100000 rows; "
              "declare the column's type to read it differently)");
  ExpectError(ReadCsvText("n,s\n1,a\n2,b\n3.5,c\n", Options(2)), Code::kInvalidArgument,
              "line 4, column n: '3.5' is not an int64 (type inferred from the first 2 rows; declare the "
              "column's type to read it differently)");
  ExpectError(ReadCsvTrickle("n\n1\nx\n", Options(1)), Code::kInvalidArgument,
              "line 3, column n: 'x' is not an int64 (type inferred from the first 1 row; declare the "
              "column's type to read it differently)");
}

TEST(CsvReaderTest, MisfitsAreSkippedAndCounted) {
  TextReadOptions options = Options(2, OnError::kSkip);
  options.max_error_messages = 2;
  Read read = ReadCsvTrickle("n,s\n1,a\n2,b\nx,c\n4,d\ny,e\n6,f\nz,g\n", options);
  Table t = Must(read);
  EXPECT_EQ(t.Find("n")->ints, (std::vector<int64_t>{1, 2, 4, 6}));
  EXPECT_EQ(t.Find("s")->strings, (std::vector<std::string>{"a", "b", "d", "f"}));
  EXPECT_EQ(read.report.rows_read, 4);
  EXPECT_EQ(read.report.rows_skipped, 3);
  ASSERT_EQ(read.report.errors.size(), 2u);
  EXPECT_TRUE(read.report.errors[0].starts_with("line 4, column n: 'x' is not an int64 (type inferred"))
      << read.report.errors[0];
  EXPECT_TRUE(read.report.errors[1].starts_with("line 6, column n: 'y'")) << read.report.errors[1];
}

TEST(CsvReaderTest, SkippedRowLeavesNoValueInAnyColumn) {
  // The misfit is in the last column: the values before it in the row go too.
  TextReadOptions options = Options(1, OnError::kSkip);
  options.batch_rows = 2;
  Read read = ReadCsvText("s,f,n\na,1.5,1\nb,2.5,x\nc,,3\nd,4.5,\n", options);
  Table t = Must(read);
  EXPECT_EQ(t.Find("s")->strings, (std::vector<std::string>{"a", "c", "d"}));
  EXPECT_EQ(t.Find("f")->doubles.size(), 3u);
  EXPECT_EQ(t.Find("f")->valid, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(t.Find("n")->valid, (std::vector<uint8_t>{1, 1, 0}));
  EXPECT_EQ(read.report.rows_skipped, 1);
}

TEST(CsvReaderTest, NullsAfterTheReadAheadMakeTheColumnNullable) {
  std::unique_ptr<ByteSource> source = StringSource("a,b,c\n1,x,1.5\n2,y,2.5\n,z,3.5\n4,,4.5\n");
  Result<std::unique_ptr<BatchReader>> reader = OpenCsvReader(*source, Options(2));
  ASSERT_TRUE(reader.has_value());
  EXPECT_EQ((*reader)->schema().fields[0], (Field{"a", Type::kInt64, false}));
  EXPECT_EQ((*reader)->schema().fields[1], (Field{"b", Type::kString, false}));
  Result<Table> t = ReadAll(**reader);
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  const Schema& schema = (*reader)->schema();
  EXPECT_EQ(schema.fields[0], (Field{"a", Type::kInt64, true}));  // widened, type kept
  EXPECT_EQ(schema.fields[1], (Field{"b", Type::kString, true}));
  EXPECT_EQ(schema.fields[2], (Field{"c", Type::kFloat64, false}));
  EXPECT_EQ(t->schema(), schema);
  EXPECT_EQ(t->Find("a")->valid, (std::vector<uint8_t>{1, 1, 0, 1}));
  EXPECT_EQ(t->Find("b")->valid, (std::vector<uint8_t>{1, 1, 1, 0}));
  EXPECT_TRUE(t->Validate().has_value());
  EXPECT_EQ((*reader)->report().rows_skipped, 0);
}

TEST(CsvReaderTest, WithheldValuesNeverAppearInMessages) {
  TextReadOptions options = Options(2);
  options.withhold_values = {"robot_serial"};
  const std::string text = "robot_serial,x\n1,a\n2,b\nWG-0007-3F9A,c\n";
  Read read = ReadCsvText(text, options);
  ExpectError(read, Code::kInvalidArgument,
              "line 4, column robot_serial: value is not an int64 (value withheld) (type inferred from the "
              "first 2 rows; declare the column's type to read it differently)");
  EXPECT_EQ(read.table.error().message().find("WG-0007"), std::string::npos);

  options.on_error = OnError::kSkip;
  read = ReadCsvText(text, options);
  ASSERT_EQ(read.report.errors.size(), 1u);
  EXPECT_EQ(read.report.errors[0].find("WG-0007"), std::string::npos);
  EXPECT_NE(read.report.errors[0].find("(value withheld)"), std::string::npos);

  options.types = {{"robot_serial", Type::kInt64}};
  options.on_error = OnError::kFail;
  ExpectError(ReadCsvText(text, options), Code::kInvalidArgument,
              "line 4, column robot_serial: value is not an int64 (value withheld)");

  // Other columns are quoted as usual.
  options = Options(2);
  options.withhold_values = {"robot_serial"};
  ExpectError(ReadCsvText("robot_serial,n\nWG-1,1\nWG-2,2\nWG-3,zz\n", options), Code::kInvalidArgument,
              "line 4, column n: 'zz' is not an int64 (type inferred from the first 2 rows; declare the "
              "column's type to read it differently)");
}

TEST(CsvReaderTest, TextAfterAClosingQuoteIsFatalAndHonoursWithholding) {
  Read read = ReadCsvText("a,b\n1,2\n\"x\"y,2\n", Options(100, OnError::kSkip));
  ASSERT_FALSE(read.table.has_value());
  EXPECT_EQ(read.table.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(read.table.error().message(), "line 3: unexpected 'y' after the closing quote of field 1");
  TextReadOptions options = Options(1);
  options.withhold_values = {"a"};
  ExpectError(ReadCsvText("a,b\n1,2\n\"x\"y,2\n", options), Code::kInvalidArgument,
              "line 3: unexpected text after the closing quote of field 1 (value withheld)");
}

// --- CSV: malformed rows ----------------------------------------------------------------

TEST(CsvReaderTest, RaggedRowsFailOrAreSkipped) {
  ExpectError(ReadCsvText("a,b,c\n1,2,3\n4,5\n"), Code::kInvalidArgument,
              "line 3: has 2 fields, the header has 3");
  ExpectError(ReadCsvTrickle("a,b\n\"x\ny\",1\n2\n"), Code::kInvalidArgument,
              "line 4: has 1 field, the header has 2");
  Read read = ReadCsvTrickle("a,b\n1,2\n3\n4,5,6\n7,8\n", Options(100, OnError::kSkip));
  Table t = Must(read);
  EXPECT_EQ(t.Find("a")->ints, (std::vector<int64_t>{1, 7}));
  EXPECT_EQ(read.report.rows_skipped, 2);
  EXPECT_EQ(read.report.errors, (std::vector<std::string>{"line 3: has 1 field, the header has 2",
                                                          "line 4: has 3 fields, the header has 2"}));
}

TEST(CsvReaderTest, InvalidUtf8RowsFailOrAreSkipped) {
  ExpectError(ReadCsvText("a,b\n1,2\n3,4\n5,6\n7,\xC3\x28\n"), Code::kInvalidArgument,
              "line 5: invalid UTF-8");
  Read read = ReadCsvTrickle("a\n1\n\"\xFF\"\n3\n\xED\xA0\x80\n5\n", Options(100, OnError::kSkip));
  Table t = Must(read);
  EXPECT_EQ(t.Find("a")->ints, (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(read.report.errors, (std::vector<std::string>{"line 3: invalid UTF-8", "line 5: invalid UTF-8"}));
}

TEST(CsvReaderTest, ErrorsComeInLineOrder) {
  // Within one block of rows a misfit before a ragged row is reported first, and the other way round.
  ExpectError(
      ReadCsvText("a,b\n1,x\ny,x\n3\n", Options(1)), Code::kInvalidArgument,
      "line 3, column a: 'y' is not an int64 (type inferred from the first 1 row; declare the column's "
      "type to read it differently)");
  ExpectError(ReadCsvText("a,b\n1,x\n3\ny,x\n", Options(1)), Code::kInvalidArgument,
              "line 3: has 1 field, the header has 2");
  // Two misfits in one row: the first column's is reported.
  ExpectError(
      ReadCsvText("a,b\n1,2\nx,y\n", Options(1)), Code::kInvalidArgument,
      "line 3, column a: 'x' is not an int64 (type inferred from the first 1 row; declare the column's "
      "type to read it differently)");
  Read read = ReadCsvText("a,b\n1,2\n3,y\nx,4\n5\n", Options(1, OnError::kSkip));
  EXPECT_EQ(read.report.rows_skipped, 3);
  ASSERT_EQ(read.report.errors.size(), 3u);
  EXPECT_TRUE(read.report.errors[0].starts_with("line 3, column b: 'y'"));
  EXPECT_TRUE(read.report.errors[1].starts_with("line 4, column a: 'x'"));
  EXPECT_EQ(read.report.errors[2], "line 5: has 1 field, the header has 2");
}

TEST(CsvReaderTest, UnterminatedQuoteIsFatalEvenWhenSkipping) {
  ExpectError(ReadCsvText("a,b\n1,2\n3,\"open\n4,5\n", Options(100, OnError::kSkip)), Code::kInvalidArgument,
              "line 3: unterminated quoted field");
  ExpectError(ReadCsvTrickle("a,b\n1,2\n3,\"open\n4,5\n", Options(1, OnError::kSkip)), Code::kInvalidArgument,
              "line 3: unterminated quoted field");
}

TEST(CsvReaderTest, RecordOverTheLimitIsAnError) {
  const size_t kOver = (size_t{64} << 20) + 10;
  {  // in the read-ahead
    RepeatSource source("a,b\n1,", 'x', kOver, "\n2,y\n");
    Read read = ReadStream(false, source, {});
    ExpectError(read, Code::kInvalidArgument, "line 2: record longer than 64 MiB");
  }
  {  // after it, in a quoted field
    RepeatSource source("a,b\n1,x\n2,\"", 'x', kOver, "\"\n");
    Read read = ReadStream(false, source, Options(1));
    ExpectError(read, Code::kInvalidArgument, "line 3: record longer than 64 MiB");
  }
}

TEST(CsvReaderTest, SourceErrorsEndTheRead) {
  ExpectError(
      [] {
        FailingSource source("a,b\n1,2\n3,4\n");
        return ReadStream(false, source, {});
      }(),
      Code::kUnavailable, "connection reset");
  FailingSource source("a,b\n1,2\n3,4\n");
  Result<std::unique_ptr<BatchReader>> reader = OpenCsvReader(source, Options(1));
  ASSERT_TRUE(reader.has_value()) << reader.error().ToString();
  for (int i = 0; i < 2; ++i) {  // and again: the error sticks
    Result<std::optional<Table>> batch = (*reader)->Next();
    ASSERT_FALSE(batch.has_value());
    EXPECT_EQ(batch.error().code(), Code::kUnavailable);
  }
}

TEST(CsvReaderTest, ErrorsStick) {
  std::unique_ptr<ByteSource> source = StringSource("a\n1\nx\n2\n");
  Result<std::unique_ptr<BatchReader>> reader = OpenCsvReader(*source, Options(1));
  ASSERT_TRUE(reader.has_value());
  Result<std::optional<Table>> first = (*reader)->Next();
  ASSERT_FALSE(first.has_value());
  Result<std::optional<Table>> second = (*reader)->Next();
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(first.error().message(), second.error().message());
}

TEST(CsvReaderTest, ReportCountsRowsAndBytes) {
  const std::string text = "a,b\n1,2\n3\n5,6\n";
  std::unique_ptr<ByteSource> source = StringSource(text);
  Result<std::unique_ptr<BatchReader>> reader = OpenCsvReader(*source, Options(100, OnError::kSkip));
  ASSERT_TRUE(reader.has_value());
  EXPECT_EQ((*reader)->report().bytes_read, text.size());  // the read-ahead took it all
  EXPECT_EQ(source->size_hint(), text.size());
  std::vector<Table> batches = Batches(**reader);
  const ReaderReport& report = (*reader)->report();
  EXPECT_EQ(report.rows_read, 2);
  EXPECT_EQ(report.rows_skipped, 1);
  EXPECT_EQ(report.bytes_read, text.size());
  EXPECT_EQ(report.errors.size(), 1u);
}

// --- CSV: round trip on random tables ------------------------------------------------------

std::string RandomString(std::mt19937_64& rng) {
  static const std::vector<std::string> kPieces = {
      "a",  "Z", "0", "7", " ", ",", "\"", "\n", "\r\n", "\r", ";", "\xC3\xA9", "\xE6\x9D\xB1",
      "\t", "x", "-", ".", "e"};
  std::string s;
  const size_t n = rng() % 12;
  for (size_t i = 0; i < n; ++i) s += kPieces[rng() % kPieces.size()];
  return s;
}

Table RandomTable(std::mt19937_64& rng, size_t rows) {
  Table t;
  const size_t num_columns = 1 + rng() % 6;
  for (size_t c = 0; c < num_columns; ++c) {
    Column col;
    col.field.name = "c" + std::to_string(c);
    col.field.type = static_cast<Type>(rng() % 5);
    const bool nulls = rng() % 3 == 0;
    col.field.nullable = nulls;
    for (size_t r = 0; r < rows; ++r) {
      const bool null = nulls && rng() % 4 == 0;
      if (nulls) col.valid.push_back(null ? 0 : 1);
      switch (col.field.type) {
        case Type::kInt64:
          col.ints.push_back(null ? 0 : static_cast<int64_t>(rng()) >> (rng() % 64));
          break;
        case Type::kBool:
          col.ints.push_back(null ? 0 : static_cast<int64_t>(rng() % 2));
          break;
        case Type::kTimestamp:
          col.ints.push_back(null ? 0 : static_cast<int64_t>(rng() % 4000000000) - 1000000000);
          break;
        case Type::kFloat64: {
          double v;
          switch (rng() % 4) {
            case 0:
              v = static_cast<double>(static_cast<int64_t>(rng() % 2000000) - 1000000) / 1000.0;
              break;
            case 1:
              v = std::bit_cast<double>(rng());
              if (!std::isfinite(v)) v = 1.5;
              break;
            case 2:
              v = static_cast<double>(rng() % 100);
              break;
            default:
              v = static_cast<double>(rng()) / 3.0;
              break;
          }
          col.doubles.push_back(null ? 0.0 : v);
          break;
        }
        case Type::kString:
          col.strings.push_back(null ? "" : RandomString(rng));
          break;
      }
    }
    t.columns.push_back(std::move(col));
  }
  return t;
}

TEST(CsvReaderTest, RoundTripOfRandomTablesMatchesReadCsv) {
  std::mt19937_64 rng(20260301);
  for (int round = 0; round < 60; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::string text = WriteCsv(RandomTable(rng, rng() % 300));
    Result<Table> expected = ReadCsv(text);
    ASSERT_TRUE(expected.has_value()) << expected.error().ToString();
    TextReadOptions options;
    options.batch_rows = 1 + rng() % 50;
    ExpectTablesEqual(*expected, Must(ReadCsvText(text, options)));
    ExpectTablesEqual(*expected, Must(ReadCsvTrickle(text, options)));
  }
}

// --- The number parsers behind the reader ---------------------------------------------------

// What ReadCsv has always done: from_chars after dropping a leading '+'.
bool ReferenceFloat(std::string_view v, double* out) {
  v = csv_internal::StripPlus(v);
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), *out, std::chars_format::general);
  return ec == std::errc() && ptr == v.data() + v.size() && !v.empty();
}

csv_internal::IntParse ReferenceInt(std::string_view v, int64_t* out) {
  v = csv_internal::StripPlus(v);
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
  if (ptr != v.data() + v.size() || v.empty()) return csv_internal::IntParse::kNotInteger;
  if (ec == std::errc::result_out_of_range) return csv_internal::IntParse::kOutOfRange;
  return ec == std::errc() ? csv_internal::IntParse::kOk : csv_internal::IntParse::kNotInteger;
}

TEST(NumberParsingTest, FastPathsAgreeWithFromChars) {
  std::mt19937_64 rng(7);
  const std::string alphabets[] = {"0123456789", "0123456789.", "0123456789.-+",
                                   "0123456789000111+-.eE xinfa\xFA"};
  for (int i = 0; i < 400000; ++i) {
    const std::string& alphabet = alphabets[i % 4];
    std::string s;
    const size_t n = rng() % (i % 8 < 4 ? 10 : 24);
    for (size_t k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
    // What follows the value in memory: digits too, which must not be taken for part of it.
    std::string padded = s + std::string(1, "0123456789,\n"[rng() % 12]) + "98765432";
    const std::string_view v(padded.data(), s.size());
    SCOPED_TRACE("'" + s + "'");

    double expected = 0, plain = 0, fast = 0;
    const bool expected_ok = ReferenceFloat(v, &expected);
    ASSERT_EQ(csv_internal::ParseFloat(v, &plain), expected_ok);
    ASSERT_EQ(csv_internal::ParseFloatPadded(v, &fast), expected_ok);
    if (expected_ok) {
      ASSERT_EQ(std::bit_cast<uint64_t>(plain), std::bit_cast<uint64_t>(expected));
      ASSERT_EQ(std::bit_cast<uint64_t>(fast), std::bit_cast<uint64_t>(expected));
    }

    int64_t expected_int = 0, plain_int = 0, fast_int = 0;
    const csv_internal::IntParse expected_status = ReferenceInt(v, &expected_int);
    ASSERT_EQ(csv_internal::ParseInt(v, &plain_int), expected_status);
    ASSERT_EQ(csv_internal::ParseIntPadded(v, &fast_int), expected_status);
    if (expected_status == csv_internal::IntParse::kOk) {
      ASSERT_EQ(plain_int, expected_int);
      ASSERT_EQ(fast_int, expected_int);
    }
  }
}

TEST(NumberParsingTest, EdgeCases) {
  for (const char* s : {"0",
                        "-0",
                        "+0",
                        "-0.0",
                        ".5",
                        "5.",
                        ".",
                        "-",
                        "+",
                        "+-1",
                        "-+1",
                        "1e5",
                        "1.5e-3",
                        "9007199254740993",
                        "9007199254740992.5",
                        "0.30000000000000004",
                        "123456789012345678",
                        "1234567890123456789",
                        "12345678901234567890",
                        "99999999.9999999",
                        "1.00000001",
                        "00000000001.5",
                        "4.9e-324",
                        "1e400",
                        "nan",
                        "-inf",
                        "12abc",
                        "1.5.3",
                        "0x10"}) {
    SCOPED_TRACE(s);
    std::string padded = std::string(s) + "77777777";
    const std::string_view v(padded.data(), std::strlen(s));
    double expected = 0, fast = 0;
    const bool ok = ReferenceFloat(v, &expected);
    ASSERT_EQ(csv_internal::ParseFloatPadded(v, &fast), ok);
    if (ok && !std::isnan(expected)) {
      EXPECT_EQ(std::bit_cast<uint64_t>(fast), std::bit_cast<uint64_t>(expected));
    }
    int64_t expected_int = 0, fast_int = 0;
    const csv_internal::IntParse status = ReferenceInt(v, &expected_int);
    ASSERT_EQ(csv_internal::ParseIntPadded(v, &fast_int), status);
    if (status == csv_internal::IntParse::kOk) {
      EXPECT_EQ(fast_int, expected_int);
    }
  }
}

TEST(NumberParsingTest, TimestampParserAgreesWithParseTimestamp) {
  std::mt19937_64 rng(11);
  csv_internal::TimestampParser parser;  // one parser throughout: its remembered date must never leak
  auto two = [&](int limit) {
    const int v = static_cast<int>(rng() % limit);
    return std::string(1, static_cast<char>('0' + v / 10)) + static_cast<char>('0' + v % 10);
  };
  for (int i = 0; i < 200000; ++i) {
    std::string s = rng() % 20 == 0 ? "+12026" : std::to_string(1990 + rng() % 40);
    s += "-" + two(14) + "-" + two(33);
    if (rng() % 4 != 0) {
      s += "T ?"[rng() % 3];
      s += two(26) + ":" + two(62) + ":" + two(62);
      if (rng() % 2 == 0) s += "Zz"[rng() % 2];
    }
    if (rng() % 50 == 0) s.pop_back();
    if (rng() % 50 == 0) s[rng() % s.size()] = 'x';
    SCOPED_TRACE(s);
    const std::optional<int64_t> expected = ParseTimestamp(s);
    int64_t seconds = 0;
    ASSERT_EQ(parser.Parse(s, &seconds), expected.has_value());
    if (expected) {
      ASSERT_EQ(seconds, *expected);
    }
  }
}

// --- JSON Lines -----------------------------------------------------------------------------

TEST(JsonlReaderTest, InfersEachType) {
  Table t = Must(ReadJsonlText(
      R"({"b":true,"i":1,"f":1.5,"m":1,"ts":"2026-03-01T14:00:00Z","s":"x","n":{"k": [1, 2]},"mix":1.50})"
      "\n"
      R"({"b":false,"i":-2,"f":2e0,"m":2.5,"ts":"2026-03-02","s":"y\u00e9\"","n":[1, {"a": null}],"mix":"abc"})"
      "\n"));
  ASSERT_EQ(t.num_rows(), 2u);
  std::vector<std::string> names;
  for (const Column& c : t.columns) names.push_back(c.field.name);
  EXPECT_EQ(names, (std::vector<std::string>{"b", "i", "f", "m", "ts", "s", "n", "mix"}));
  EXPECT_EQ(t.Find("b")->field, (Field{"b", Type::kBool, false}));
  EXPECT_EQ(t.Find("b")->ints, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(t.Find("i")->field.type, Type::kInt64);
  EXPECT_EQ(t.Find("i")->ints, (std::vector<int64_t>{1, -2}));
  EXPECT_EQ(t.Find("f")->field.type, Type::kFloat64);
  EXPECT_EQ(t.Find("f")->doubles, (std::vector<double>{1.5, 2.0}));
  EXPECT_EQ(t.Find("m")->field.type, Type::kFloat64);
  EXPECT_EQ(t.Find("m")->doubles, (std::vector<double>{1.0, 2.5}));
  EXPECT_EQ(t.Find("ts")->field.type, Type::kTimestamp);
  EXPECT_EQ(t.Find("ts")->ints, (std::vector<int64_t>{1772373600, 1772409600}));
  EXPECT_EQ(t.Find("s")->field.type, Type::kString);
  EXPECT_EQ(t.Find("s")->strings, (std::vector<std::string>{"x", "y\xC3\xA9\""}));
  EXPECT_EQ(t.Find("n")->field.type, Type::kString);
  EXPECT_EQ(t.Find("n")->strings, (std::vector<std::string>{R"({"k":[1,2]})", R"([1,{"a":null}])"}));
  EXPECT_EQ(t.Find("mix")->field.type, Type::kString);
  EXPECT_EQ(t.Find("mix")->strings, (std::vector<std::string>{"1.50", "abc"}));
  for (const Column& c : t.columns) EXPECT_FALSE(c.field.nullable) << c.field.name;
}

TEST(JsonlReaderTest, NullsAndMissingKeys) {
  Table t = Must(ReadJsonlText("{\"a\":1,\"b\":\"x\"}\n{\"a\":null}\n{\"b\":\"z\",\"c\":true}\n"));
  ASSERT_EQ(t.num_columns(), 3u);
  EXPECT_EQ(t.columns[0].field, (Field{"a", Type::kInt64, true}));
  EXPECT_EQ(t.columns[0].valid, (std::vector<uint8_t>{1, 0, 0}));
  EXPECT_EQ(t.columns[1].field, (Field{"b", Type::kString, true}));
  EXPECT_EQ(t.columns[1].valid, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(t.columns[1].strings[2], "z");
  EXPECT_EQ(t.columns[2].field, (Field{"c", Type::kBool, true}));
  EXPECT_EQ(t.columns[2].valid, (std::vector<uint8_t>{0, 0, 1}));
  Table only_nulls = Must(ReadJsonlText("{\"a\":null}\n{\"a\":null}\n"));
  EXPECT_EQ(only_nulls.columns[0].field, (Field{"a", Type::kString, true}));
}

TEST(JsonlReaderTest, KindsThatDoNotMixMakeStrings) {
  Table t = Must(
      ReadJsonlText("{\"big\":123456789012345678901234,\"u\":18446744073709551615,\"ts_or_n\":\"2026-03-01\","
                    "\"bool_int\":true}\n"
                    "{\"big\":5,\"u\":1,\"ts_or_n\":7,\"bool_int\":0}\n"));
  EXPECT_EQ(t.Find("big")->field.type, Type::kString);
  EXPECT_EQ(t.Find("big")->strings, (std::vector<std::string>{"123456789012345678901234", "5"}));
  EXPECT_EQ(t.Find("u")->strings, (std::vector<std::string>{"18446744073709551615", "1"}));
  EXPECT_EQ(t.Find("ts_or_n")->strings, (std::vector<std::string>{"2026-03-01", "7"}));
  EXPECT_EQ(t.Find("bool_int")->strings, (std::vector<std::string>{"true", "0"}));
}

TEST(JsonlReaderTest, DeclaredTypesCoerce) {
  TextReadOptions options;
  options.types = {{"f", Type::kFloat64}, {"t", Type::kTimestamp}, {"s", Type::kString}};
  Table t =
      Must(ReadJsonlText("{\"f\":1,\"t\":1772373600,\"s\":5}\n{\"f\":2.5,\"t\":\"2026-03-01T14:00:00Z\","
                         "\"s\":{\"x\": [true]}}\n",
                         options));
  EXPECT_EQ(t.Find("f")->field, (Field{"f", Type::kFloat64, false}));
  EXPECT_EQ(t.Find("f")->doubles, (std::vector<double>{1.0, 2.5}));
  EXPECT_EQ(t.Find("t")->ints, (std::vector<int64_t>{1772373600, 1772373600}));
  EXPECT_EQ(t.Find("s")->strings, (std::vector<std::string>{"5", R"({"x":[true]})"}));

  options.types = {{"f", Type::kFloat64}};
  ExpectError(ReadJsonlText("{\"f\":1}\n{\"f\":\"abc\"}\n", options), Code::kInvalidArgument,
              "line 2, column f: \"abc\" is not a float64");
  options.types = {{"t", Type::kTimestamp}};
  ExpectError(ReadJsonlText("{\"t\":\"2026-03-01\"}\n{\"t\":1.5}\n", options), Code::kInvalidArgument,
              "line 2, column t: 1.5 is not a timestamp");
  options.types = {{"missing", Type::kInt64}};
  ExpectError(ReadJsonlText("{\"f\":1}\n", options), Code::kInvalidArgument,
              "types declared for columns that no line of the read-ahead has: 'missing'");
}

TEST(JsonlReaderTest, InferredMisfitNamesTheReadAhead) {
  ExpectError(ReadJsonlText("{\"f\":1.5}\n{\"f\":\"x\"}\n", Options(1)), Code::kInvalidArgument,
              "line 2, column f: \"x\" is not a float64 (type inferred from the first 1 line; declare the "
              "column's type to read it differently)");
  ExpectError(ReadJsonlText("{\"i\":1}\n{\"i\":2}\n{\"i\":2.5}\n", Options(2)), Code::kInvalidArgument,
              "line 3, column i: 2.5 is not an int64 (type inferred from the first 2 lines; declare the "
              "column's type to read it differently)");
}

TEST(JsonlReaderTest, KeysAfterTheReadAhead) {
  const std::string text = "{\"a\":1}\n{\"a\":2}\n{\"a\":3,\"x\":1}\n{\"a\":4}\n";
  ExpectError(ReadJsonlText(text, Options(2)), Code::kInvalidArgument,
              "line 3: key 'x' is not among the columns inferred from the first 2 lines");
  Read read = ReadJsonlText(text, Options(2, OnError::kSkip));
  EXPECT_EQ(Must(read).Find("a")->ints, (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(read.report.rows_skipped, 1);
  // Keys in another order than the columns are fine.
  Table t = Must(ReadJsonlText("{\"a\":1,\"b\":2}\n{\"b\":3,\"a\":4}\n"));
  EXPECT_EQ(t.Find("a")->ints, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(t.Find("b")->ints, (std::vector<int64_t>{2, 3}));
}

TEST(JsonlReaderTest, MalformedLinesFailOrAreSkipped) {
  const std::string text =
      "{\"a\":1}\n"
      "[1,2]\n"
      "{\"a\":\n"
      "{\"a\":\"\xC3\x28\"}\n"
      "{\"a\":5} {\"a\":6}\n"
      "{\"a\":7,\"a\":8}\n"
      "\"just a string\"\n"
      "{\"a\":nul}\n"
      "{\"a\":9}\n";
  ExpectError(ReadJsonlText(text), Code::kInvalidArgument, "line 2: not a JSON object");
  Read read = ReadJsonlText(text, Options(100, OnError::kSkip));
  Table t = Must(read);
  EXPECT_EQ(t.Find("a")->ints, (std::vector<int64_t>{1, 9}));
  EXPECT_EQ(read.report.rows_skipped, 7);
  ASSERT_EQ(read.report.errors.size(), 7u);
  EXPECT_EQ(read.report.errors[0], "line 2: not a JSON object");
  EXPECT_TRUE(read.report.errors[1].starts_with("line 3: not valid JSON")) << read.report.errors[1];
  EXPECT_EQ(read.report.errors[2], "line 4: invalid UTF-8");
  EXPECT_EQ(read.report.errors[3], "line 5: text after the JSON object");
  EXPECT_EQ(read.report.errors[4], "line 6: key 'a' appears twice");
  EXPECT_EQ(read.report.errors[5], "line 7: not a JSON object");
  EXPECT_TRUE(read.report.errors[6].starts_with("line 8, column a: not a valid JSON value"))
      << read.report.errors[6];
}

TEST(JsonlReaderTest, BlankLinesCrlfAndBom) {
  const std::string text = "\xEF\xBB\xBF{\"a\":1}\r\n\r\n  \t\n{\"a\":2}\r\n{\"a\":\"x\"}";
  ExpectError(
      ReadJsonlText(text, Options(1)), Code::kInvalidArgument,
      "line 5, column a: \"x\" is not an int64 (type inferred from the first 1 line; declare the column's "
      "type to read it differently)");
  Table t = Must(ReadJsonlText(text.substr(0, text.size() - 9)));
  EXPECT_EQ(t.Find("a")->ints, (std::vector<int64_t>{1, 2}));
}

TEST(JsonlReaderTest, TrickleGivesTheSameTable) {
  std::string text;
  for (int i = 0; i < 300; ++i) {
    text += "{\"id\":" + std::to_string(i) + ",\"v\":" + std::to_string(i * 0.5) + ",\"s\":\"row " +
            std::to_string(i) + "\\n\"" + (i % 3 ? ",\"opt\":true" : "") + ",\"nest\":{\"k\": [" +
            std::to_string(i) + "]}}\n";
  }
  TextReadOptions options;
  options.batch_rows = 17;
  Table expected = Must(ReadJsonlText(text));
  TrickleSource source(text);
  Read trickled = ReadStream(true, source, options);
  ExpectTablesEqual(expected, Must(trickled));
  EXPECT_EQ(expected.num_rows(), 300u);
  EXPECT_EQ(expected.Find("opt")->field, (Field{"opt", Type::kBool, true}));
  EXPECT_EQ(expected.Find("s")->strings[1], "row 1\n");
  EXPECT_EQ(expected.Find("nest")->strings[2], "{\"k\":[2]}");
  EXPECT_EQ(trickled.report.bytes_read, text.size());
  EXPECT_EQ(trickled.report.rows_read, 300);
}

TEST(JsonlReaderTest, NullsAfterTheReadAheadMakeTheColumnNullable) {
  std::unique_ptr<ByteSource> source =
      StringSource("{\"a\":1,\"b\":\"x\"}\n{\"a\":null,\"b\":\"y\"}\n{\"a\":3}\n");
  Result<std::unique_ptr<BatchReader>> reader = OpenJsonlReader(*source, Options(1));
  ASSERT_TRUE(reader.has_value()) << reader.error().ToString();
  EXPECT_FALSE((*reader)->schema().fields[0].nullable);
  EXPECT_FALSE((*reader)->schema().fields[1].nullable);
  Result<Table> t = ReadAll(**reader);
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_EQ((*reader)->schema().fields[0], (Field{"a", Type::kInt64, true}));
  EXPECT_EQ((*reader)->schema().fields[1], (Field{"b", Type::kString, true}));
  EXPECT_EQ(t->Find("a")->valid, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(t->Find("b")->valid, (std::vector<uint8_t>{1, 1, 0}));
  EXPECT_TRUE(t->Validate().has_value());
}

TEST(JsonlReaderTest, WithheldValuesNeverAppearInMessages) {
  TextReadOptions options = Options(1);
  options.withhold_values = {"robot_serial"};
  Read read = ReadJsonlText("{\"robot_serial\":1}\n{\"robot_serial\":\"WG-0007-3F9A\"}\n", options);
  ExpectError(
      read, Code::kInvalidArgument,
      "line 2, column robot_serial: value is not an int64 (value withheld) (type inferred from the first 1 "
      "line; declare the column's type to read it differently)");
  EXPECT_EQ(read.table.error().message().find("WG-0007"), std::string::npos);
}

TEST(JsonlReaderTest, BatchesHoldBatchRowsRows) {
  std::string text;
  for (int i = 0; i < 10; ++i) text += "{\"n\":" + std::to_string(i) + "}\n";
  std::unique_ptr<ByteSource> source = StringSource(text);
  TextReadOptions options;
  options.batch_rows = 4;
  Result<std::unique_ptr<BatchReader>> reader = OpenJsonlReader(*source, options);
  ASSERT_TRUE(reader.has_value());
  std::vector<Table> batches = Batches(**reader);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].num_rows(), 4u);
  EXPECT_EQ(batches[1].columns[0].ints, (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(batches[2].num_rows(), 2u);
}

TEST(JsonlReaderTest, NothingToReadIsAnError) {
  ExpectError(ReadJsonlText(""), Code::kInvalidArgument, "no JSON object with keys in the first 0 lines");
  ExpectError(ReadJsonlText("\n  \n"), Code::kInvalidArgument,
              "no JSON object with keys in the first 0 lines");
  ExpectError(ReadJsonlText("{}\n{}\n"), Code::kInvalidArgument,
              "no JSON object with keys in the first 2 lines");
  ExpectError(ReadJsonlText("[1]\n"), Code::kInvalidArgument,
              "line 1: not one JSON object with distinct, non-empty keys");
}

TEST(JsonlReaderTest, LineOverTheLimitIsAnError) {
  RepeatSource source("{\"a\":1}\n{\"a\":\"", 'x', (size_t{64} << 20) + 10, "\"}\n");
  ExpectError(ReadStream(true, source, Options(1)), Code::kInvalidArgument,
              "line 2: record longer than 64 MiB");
}

}  // namespace
}  // namespace takt::frame
