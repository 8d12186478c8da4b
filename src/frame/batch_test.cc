#include "frame/batch.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "core/temp_dir.h"
#include "frame/table_testing.h"

namespace takt::frame {
namespace {

using ::takt::frame::testing::ExpectTablesEqual;

Column IntColumn(std::string name, std::vector<int64_t> values, std::vector<uint8_t> valid = {}) {
  Column c;
  c.field = {std::move(name), Type::kInt64, !valid.empty()};
  c.ints = std::move(values);
  c.valid = std::move(valid);
  return c;
}

Column StringColumn(std::string name, std::vector<std::string> values, std::vector<uint8_t> valid = {}) {
  Column c;
  c.field = {std::move(name), Type::kString, !valid.empty()};
  c.strings = std::move(values);
  c.valid = std::move(valid);
  return c;
}

Column FloatColumn(std::string name, std::vector<double> values) {
  Column c;
  c.field = {std::move(name), Type::kFloat64, false};
  c.doubles = std::move(values);
  return c;
}

std::string ReadEverything(ByteSource& source, size_t piece) {
  std::string out;
  std::string buf(piece, '\0');
  while (true) {
    Result<size_t> n = source.Read(buf.data(), buf.size());
    EXPECT_TRUE(n.has_value()) << n.error().ToString();
    if (!n.has_value() || *n == 0) break;
    out.append(buf.data(), *n);
  }
  return out;
}

// --- Sources ------------------------------------------------------------------

TEST(StringSourceTest, ReadsInPiecesAndKnowsItsSize) {
  const std::string data = "hello, streaming world";
  std::unique_ptr<ByteSource> source = StringSource(data);
  EXPECT_EQ(source->size_hint(), data.size());
  EXPECT_EQ(ReadEverything(*source, 5), data);
  char c;
  EXPECT_EQ(source->Read(&c, 1).value(), 0u);  // stays at the end
}

TEST(StringSourceTest, EmptyData) {
  std::unique_ptr<ByteSource> source = StringSource("");
  char buf[4];
  EXPECT_EQ(source->Read(buf, sizeof(buf)).value(), 0u);
  EXPECT_EQ(source->size_hint(), 0u);
}

TEST(FileSourceTest, ReadsTheFileAndKnowsItsSize) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::filesystem::path path = dir.path() / "data.csv";
  std::string data;
  for (int i = 0; i < 100000; ++i) data += std::to_string(i) + ",x\n";
  std::ofstream(path, std::ios::binary) << data;
  Result<std::unique_ptr<ByteSource>> source = FileSource(path);
  ASSERT_TRUE(source.has_value()) << source.error().ToString();
  EXPECT_EQ((*source)->size_hint(), data.size());
  EXPECT_EQ(ReadEverything(**source, 64 * 1024), data);
}

TEST(FileSourceTest, MissingFileIsNotFoundNamingThePath) {
  TempDir dir;
  const std::filesystem::path path = dir.path() / "nope.csv";
  Result<std::unique_ptr<ByteSource>> source = FileSource(path);
  ASSERT_FALSE(source.has_value());
  EXPECT_EQ(source.error().code(), Code::kNotFound);
  EXPECT_NE(source.error().message().find(path.string()), std::string::npos) << source.error().message();
}

TEST(FileSourceTest, DirectoryIsUnavailable) {
  TempDir dir;
  Result<std::unique_ptr<ByteSource>> source = FileSource(dir.path());
  ASSERT_FALSE(source.has_value());
  EXPECT_EQ(source.error().code(), Code::kUnavailable);
  EXPECT_NE(source.error().message().find(dir.path().string()), std::string::npos);
}

// --- AppendRows -----------------------------------------------------------------

TEST(AppendRowsTest, EmptyDestinationTakesTheRows) {
  Table src;
  src.columns = {IntColumn("a", {1, 2}), StringColumn("s", {"x", "y"})};
  Table dst;
  ASSERT_TRUE(AppendRows(dst, src).has_value());
  ExpectTablesEqual(src, dst);
}

TEST(AppendRowsTest, AppendsValuesAndMergesValidity) {
  Table dst;
  dst.columns = {IntColumn("a", {1, 2}), StringColumn("s", {"x", ""}, {1, 0}), FloatColumn("f", {0.5, 1.5})};
  Table src;
  src.columns = {IntColumn("a", {0, 4}, {0, 1}), StringColumn("s", {"z", "w"}), FloatColumn("f", {2.5, 3.5})};
  ASSERT_TRUE(AppendRows(dst, src).has_value());
  ASSERT_EQ(dst.num_rows(), 4u);
  EXPECT_EQ(dst.columns[0].ints, (std::vector<int64_t>{1, 2, 0, 4}));
  EXPECT_EQ(dst.columns[0].valid, (std::vector<uint8_t>{1, 1, 0, 1}));
  EXPECT_TRUE(dst.columns[0].field.nullable);
  EXPECT_EQ(dst.columns[1].strings, (std::vector<std::string>{"x", "", "z", "w"}));
  EXPECT_EQ(dst.columns[1].valid, (std::vector<uint8_t>{1, 0, 1, 1}));
  EXPECT_TRUE(dst.columns[1].field.nullable);
  EXPECT_EQ(dst.columns[2].doubles, (std::vector<double>{0.5, 1.5, 2.5, 3.5}));
  EXPECT_TRUE(dst.columns[2].valid.empty());
  EXPECT_FALSE(dst.columns[2].field.nullable);
  EXPECT_TRUE(dst.Validate().has_value());
}

TEST(AppendRowsTest, NullableWithoutNullsStaysNullable) {
  Table dst;
  dst.columns = {IntColumn("a", {1})};
  Table src;
  src.columns = {IntColumn("a", {2})};
  src.columns[0].field.nullable = true;
  ASSERT_TRUE(AppendRows(dst, src).has_value());
  EXPECT_TRUE(dst.columns[0].field.nullable);
  EXPECT_TRUE(dst.columns[0].valid.empty());
}

TEST(AppendRowsTest, MismatchedColumnsAreRejectedAndLeaveTheTableAlone) {
  Table dst;
  dst.columns = {IntColumn("a", {1}), StringColumn("s", {"x"})};
  const Table before = dst;

  Table other_name;
  other_name.columns = {IntColumn("a", {2}), StringColumn("t", {"y"})};
  Status s = AppendRows(dst, other_name);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);

  Table other_type;
  other_type.columns = {FloatColumn("a", {2.0}), StringColumn("s", {"y"})};
  s = AppendRows(dst, other_type);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);

  Table fewer;
  fewer.columns = {IntColumn("a", {2})};
  s = AppendRows(dst, fewer);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);

  ExpectTablesEqual(before, dst);
}

// --- SelectRows and SliceRows -----------------------------------------------------

Table SampleTable() {
  Table t;
  t.columns = {IntColumn("a", {10, 0, 30, 40}, {1, 0, 1, 1}), StringColumn("s", {"w", "x", "y", "z"}),
               FloatColumn("f", {1.0, 2.0, 3.0, 4.0})};
  return t;
}

TEST(SelectRowsTest, KeepsTheMarkedRowsInOrder) {
  Table t = SelectRows(SampleTable(), {1, 1, 0, 1});
  ASSERT_EQ(t.num_rows(), 3u);
  EXPECT_EQ(t.columns[0].ints, (std::vector<int64_t>{10, 0, 40}));
  EXPECT_EQ(t.columns[0].valid, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(t.columns[1].strings, (std::vector<std::string>{"w", "x", "z"}));
  EXPECT_EQ(t.columns[2].doubles, (std::vector<double>{1.0, 2.0, 4.0}));
  EXPECT_EQ(t.schema(), SampleTable().schema());
  EXPECT_TRUE(t.Validate().has_value());
}

TEST(SelectRowsTest, WithoutNullsTheValidityIsDropped) {
  Table t = SelectRows(SampleTable(), {0, 0, 1, 1});
  EXPECT_TRUE(t.columns[0].valid.empty());
  EXPECT_TRUE(t.columns[0].field.nullable);  // the field keeps its schema
  EXPECT_EQ(t.columns[0].ints, (std::vector<int64_t>{30, 40}));
}

TEST(SelectRowsTest, NoneKept) {
  Table t = SelectRows(SampleTable(), {0, 0, 0, 0});
  EXPECT_EQ(t.num_columns(), 3u);
  EXPECT_EQ(t.num_rows(), 0u);
  EXPECT_TRUE(t.Validate().has_value());
}

TEST(SliceRowsTest, TakesARangeClampedToTheTable) {
  Table t = SliceRows(SampleTable(), 1, 2);
  ASSERT_EQ(t.num_rows(), 2u);
  EXPECT_EQ(t.columns[0].ints, (std::vector<int64_t>{0, 30}));
  EXPECT_EQ(t.columns[0].valid, (std::vector<uint8_t>{0, 1}));
  EXPECT_EQ(t.columns[1].strings, (std::vector<std::string>{"x", "y"}));

  t = SliceRows(SampleTable(), 2, 100);
  ASSERT_EQ(t.num_rows(), 2u);
  EXPECT_EQ(t.columns[2].doubles, (std::vector<double>{3.0, 4.0}));
  EXPECT_TRUE(t.columns[0].valid.empty());

  t = SliceRows(SampleTable(), 7, 3);
  EXPECT_EQ(t.num_columns(), 3u);
  EXPECT_EQ(t.num_rows(), 0u);
  EXPECT_TRUE(t.Validate().has_value());
}

// --- ReadAll ----------------------------------------------------------------------

// Returns the given batches; its schema is the last batch's, widened.
class ListReader final : public BatchReader {
 public:
  ListReader(Schema schema, std::vector<Table> batches)
      : schema_(std::move(schema)), batches_(std::move(batches)) {}
  const Schema& schema() const override { return schema_; }
  Result<std::optional<Table>> Next() override {
    if (next_ == batches_.size()) return std::nullopt;
    report_.rows_read += static_cast<int64_t>(batches_[next_].num_rows());
    return batches_[next_++];
  }
  const ReaderReport& report() const override { return report_; }

 private:
  Schema schema_;
  std::vector<Table> batches_;
  size_t next_ = 0;
  ReaderReport report_;
};

TEST(ReadAllTest, ConcatenatesBatchesUnderTheFinalSchema) {
  Table first;
  first.columns = {IntColumn("a", {1, 2})};
  Table second;
  second.columns = {IntColumn("a", {0, 4}, {0, 1})};
  Schema schema{{{"a", Type::kInt64, true}}};
  ListReader reader(schema, {first, second});
  Result<Table> t = ReadAll(reader);
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_EQ(t->schema(), schema);
  EXPECT_EQ(t->columns[0].ints, (std::vector<int64_t>{1, 2, 0, 4}));
  EXPECT_EQ(t->columns[0].valid, (std::vector<uint8_t>{1, 1, 0, 1}));
  EXPECT_TRUE(t->Validate().has_value());
}

TEST(ReadAllTest, NoBatchesGivesTheSchemaWithoutRows) {
  Schema schema{{{"a", Type::kInt64, false}, {"s", Type::kString, true}}};
  ListReader reader(schema, {});
  Result<Table> t = ReadAll(reader);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->schema(), schema);
  EXPECT_EQ(t->num_rows(), 0u);
}

}  // namespace
}  // namespace takt::frame
