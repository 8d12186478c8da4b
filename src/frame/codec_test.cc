#include "frame/codec.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <cmath>
#include <limits>
#include <random>

#include "frame/table_testing.h"

namespace takt::frame {
namespace {

using ::takt::frame::testing::ExpectTablesEqual;

// Every type, with and without nulls, with awkward values.
Table AllTypesTable() {
  Table t;
  Column i;
  i.field = {"i", Type::kInt64, false};
  i.ints = {0, -1, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 42};
  Column ni;
  ni.field = {"ni", Type::kInt64, true};
  ni.ints = {7, 0, 9, 0, 11};
  ni.valid = {1, 0, 1, 0, 1};
  Column f;
  f.field = {"f", Type::kFloat64, true};
  f.doubles = {0.1, -0.0, std::numeric_limits<double>::infinity(), std::nan(""), 0.0};
  f.valid = {1, 1, 1, 1, 0};
  Column s;
  s.field = {"s", Type::kString, true};
  s.strings = {"", "weld", std::string("nul\0byte", 8), "", "Grüße"};
  s.valid = {1, 1, 1, 0, 1};
  Column b;
  b.field = {"b", Type::kBool, false};
  b.ints = {1, 0, 0, 1, 1};
  Column ts;
  ts.field = {"ts", Type::kTimestamp, true};
  ts.ints = {1772373600, -11670953104, 0, 0, 1};
  ts.valid = {1, 1, 0, 1, 1};
  t.columns = {i, ni, f, s, b, ts};
  return t;
}

// A small table for the exhaustive corruption tests.
Table SmallTable() {
  Table t;
  Column a;
  a.field = {"a", Type::kInt64, true};
  a.ints = {1, 2, 0};
  a.valid = {1, 1, 0};
  Column s;
  s.field = {"s", Type::kString, false};
  s.strings = {"x", "yy", "zzz"};
  Column f;
  f.field = {"f", Type::kFloat64, false};
  f.doubles = {1.5, 2.5, 3.5};
  t.columns = {a, s, f};
  return t;
}

// A table large enough that zstd compresses its chunks.
Table LargeTable(size_t rows) {
  Table t;
  Column id, at, force, station;
  id.field = {"id", Type::kInt64, false};
  at.field = {"at", Type::kTimestamp, false};
  force.field = {"force", Type::kFloat64, true};
  station.field = {"station", Type::kString, false};
  std::mt19937_64 rng(7);
  std::normal_distribution<double> noise(0, 0.1);
  for (size_t r = 0; r < rows; ++r) {
    id.ints.push_back(static_cast<int64_t>(r));
    at.ints.push_back(1772373600 + static_cast<int64_t>(r) * 10);
    force.doubles.push_back(3.0 + noise(rng));
    force.valid.push_back(r % 97 != 0);
    station.strings.push_back("station-" + std::to_string(r % 12));
  }
  t.columns = {id, at, force, station};
  return t;
}

void ExpectInvalid(const Result<Table>& t) {
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), Code::kInvalidArgument);
}

TEST(CodecTest, RoundTripsEveryTypeWithNulls) {
  Table t = AllTypesTable();
  ASSERT_TRUE(t.Validate().has_value());
  std::string bytes = EncodeTable(t);
  EXPECT_EQ(bytes.substr(0, 4), "TKF1");
  Result<Table> back = DecodeTable(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  ExpectTablesEqual(t, *back);
}

// Every small row count, each type with and without nulls: chunk sizes cross
// the string's inline capacity and growth steps at different points.
TEST(CodecTest, RoundTripsEverySmallRowCount) {
  for (size_t rows = 0; rows <= 40; ++rows) {
    for (bool nulls : {false, true}) {
      Table t;
      Column i, f, s, b, ts;
      i.field = {"i", Type::kInt64, nulls};
      f.field = {"f", Type::kFloat64, nulls};
      s.field = {"s", Type::kString, nulls};
      b.field = {"b", Type::kBool, nulls};
      ts.field = {"ts", Type::kTimestamp, nulls};
      for (size_t r = 0; r < rows; ++r) {
        i.ints.push_back(static_cast<int64_t>(r * 1000003) - 7);
        f.doubles.push_back(0.5 * static_cast<double>(r) - 3.25);
        s.strings.push_back(std::string(r % 5, 'x'));
        b.ints.push_back(static_cast<int64_t>(r % 2));
        ts.ints.push_back(1772373600 + static_cast<int64_t>(r) * 3600);
        if (nulls) {
          for (Column* c : {&i, &f, &s, &b, &ts}) c->valid.push_back(r % 3 != 1);
        }
      }
      t.columns = {i, f, s, b, ts};
      ASSERT_TRUE(t.Validate().has_value());
      Result<Table> back = DecodeTable(EncodeTable(t));
      ASSERT_TRUE(back.has_value()) << rows << " rows, nulls " << nulls << ": " << back.error().ToString();
      ExpectTablesEqual(t, *back);
    }
  }
}

TEST(CodecTest, RoundTripsLargeTableAndCompresses) {
  Table t = LargeTable(100000);
  std::string bytes = EncodeTable(t);
  Result<Table> back = DecodeTable(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  ExpectTablesEqual(t, *back);
  // id and at are regular; station repeats: far below the 8+8+8+~10 bytes a row of the raw data.
  EXPECT_LT(bytes.size(), 100000u * 12);
}

TEST(CodecTest, IsDeterministic) {
  EXPECT_EQ(EncodeTable(AllTypesTable()), EncodeTable(AllTypesTable()));
  EXPECT_EQ(EncodeTable(LargeTable(5000)), EncodeTable(LargeTable(5000)));
}

TEST(CodecTest, EmptyTablesRoundTrip) {
  Table no_columns;
  Result<Table> back = DecodeTable(EncodeTable(no_columns));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->num_columns(), 0u);

  Table no_rows = AllTypesTable();
  for (Column& c : no_rows.columns) {
    c.ints.clear();
    c.doubles.clear();
    c.strings.clear();
    c.valid.clear();
  }
  back = DecodeTable(EncodeTable(no_rows));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->num_rows(), 0u);
  ExpectTablesEqual(no_rows, *back);
}

TEST(CodecTest, DecodesAColumnSubsetInTheOrderGiven) {
  Table t = AllTypesTable();
  std::vector<std::string> wanted = {"ts", "s", "i"};
  Result<Table> back = DecodeTable(EncodeTable(t), &wanted);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  Table expected;
  expected.columns = {*t.Find("ts"), *t.Find("s"), *t.Find("i")};
  ExpectTablesEqual(expected, *back);

  std::vector<std::string> none;
  back = DecodeTable(EncodeTable(t), &none);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->num_columns(), 0u);
}

TEST(CodecTest, SubsetNeverTouchesOtherChunks) {
  // Corrupt the last column's chunk (the last byte of the file): the others still decode.
  Table t = SmallTable();
  std::string bytes = EncodeTable(t);
  bytes.back() = static_cast<char>(bytes.back() ^ 0x55);
  std::vector<std::string> wanted = {"s", "a"};
  Result<Table> back = DecodeTable(bytes, &wanted);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->Find("s")->strings, t.Find("s")->strings);
  std::vector<std::string> corrupt = {"f"};
  ExpectInvalid(DecodeTable(bytes, &corrupt));
  ExpectInvalid(DecodeTable(bytes));
}

TEST(CodecTest, UnknownOrRepeatedColumnIsInvalidArgument) {
  std::string bytes = EncodeTable(SmallTable());
  std::vector<std::string> unknown = {"a", "x"};
  Result<Table> back = DecodeTable(bytes, &unknown);
  ASSERT_FALSE(back.has_value());
  EXPECT_EQ(back.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(back.error().message(), "column 'x' is not in the table");
  std::vector<std::string> twice = {"a", "a"};
  ExpectInvalid(DecodeTable(bytes, &twice));
}

TEST(CodecTest, DecodeSchemaReadsOnlyTheHeader) {
  Table t = AllTypesTable();
  Result<Schema> schema = DecodeSchema(EncodeTable(t));
  ASSERT_TRUE(schema.has_value()) << schema.error().ToString();
  EXPECT_EQ(*schema, t.schema());
  EXPECT_FALSE(DecodeSchema("TKF0").has_value());
}

TEST(CodecTest, EveryTruncationIsAnError) {
  const std::string bytes = EncodeTable(SmallTable());
  for (size_t n = 0; n < bytes.size(); ++n) {
    SCOPED_TRACE("prefix of " + std::to_string(n) + " bytes");
    ExpectInvalid(DecodeTable(std::string_view(bytes).substr(0, n)));
    EXPECT_FALSE(DecodeSchema(std::string_view(bytes).substr(0, n)).has_value());
  }
  ExpectInvalid(DecodeTable(bytes + "x"));  // and so is a trailing byte
}

TEST(CodecTest, EveryByteCorruptionIsAnError) {
  for (const Table& t : {SmallTable(), LargeTable(300)}) {
    const std::string bytes = EncodeTable(t);
    for (size_t i = 0; i < bytes.size(); ++i) {
      for (uint8_t flip : {0x01, 0x80, 0xFF}) {
        std::string corrupt = bytes;
        corrupt[i] = static_cast<char>(corrupt[i] ^ flip);
        Result<Table> back = DecodeTable(corrupt);
        ASSERT_FALSE(back.has_value()) << "byte " << i << " ^ " << int{flip};
        EXPECT_EQ(back.error().code(), Code::kInvalidArgument);
      }
    }
  }
}

TEST(CodecTest, RandomGarbageIsAnError) {
  std::mt19937 rng(1);
  for (int round = 0; round < 2000; ++round) {
    std::string garbage(rng() % 64, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    if (round % 2 == 0 && garbage.size() >= 4) garbage.replace(0, 4, "TKF1");
    ExpectInvalid(DecodeTable(garbage));
  }
}

// --- Hand-built inputs with valid checksums: the decoder must not trust lengths.

uint32_t ReferenceCrc32(std::string_view data) {  // bitwise, independent of the codec's table
  uint32_t crc = 0xFFFFFFFFu;
  for (char ch : data) {
    crc ^= static_cast<uint8_t>(ch);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>(v >> (8 * i));
}

void PutVarint(std::string& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out += static_cast<char>((v & 0x7F) | 0x80);
  out += static_cast<char>(v);
}

// One column `x` of type code `type_code`, claiming `rows` rows, with chunk
// `stored` (compression 0 = raw, 1 = zstd) that expands to `raw_len` bytes.
std::string HandBuilt(uint64_t rows, uint8_t type_code, std::string_view stored, uint8_t compression,
                      uint64_t raw_len) {
  std::string header;
  PutVarint(header, rows);
  PutVarint(header, 1);
  PutVarint(header, 1);
  header += 'x';
  header += static_cast<char>(type_code);
  header += '\0';  // flags
  header += static_cast<char>(compression);
  PutVarint(header, 0);
  PutVarint(header, stored.size());
  PutVarint(header, raw_len);
  PutU32(header, ReferenceCrc32(stored));
  std::string out = "TKF1";
  PutU32(out, static_cast<uint32_t>(header.size()));
  out += header;
  PutU32(out, ReferenceCrc32(header));
  out += stored;
  return out;
}

TEST(CodecTest, HandBuiltFormatMatchesTheEncoder) {
  // One int64 column x = {5}: validity "all valid", zigzag delta 10.
  const std::string stored("\x00\x0a", 2);
  Table t;
  Column x;
  x.field = {"x", Type::kInt64, false};
  x.ints = {5};
  t.columns = {x};
  EXPECT_EQ(EncodeTable(t), HandBuilt(1, 1, stored, 0, 2));
  Result<Table> back = DecodeTable(HandBuilt(1, 1, stored, 0, 2));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->Find("x")->ints, (std::vector<int64_t>{5}));
}

TEST(CodecTest, HugeRowCountsAreRejectedBeforeAllocating) {
  const uint64_t huge = uint64_t{1} << 60;
  const std::string stored("\x00\x0a", 2);
  for (uint8_t type_code : {1, 2, 3, 4, 5}) {
    SCOPED_TRACE("type code " + std::to_string(type_code));
    ExpectInvalid(DecodeTable(HandBuilt(huge, type_code, stored, 0, 2)));
    ExpectInvalid(DecodeTable(HandBuilt(std::numeric_limits<uint64_t>::max(), type_code, stored, 0, 2)));
  }
  // A validity bitmap claiming 2^60 rows.
  ExpectInvalid(DecodeTable(HandBuilt(huge, 1, std::string("\x01\xff", 2), 0, 2)));
}

TEST(CodecTest, ChunkThatExpandsToLessThanItClaimsIsRejected) {
  // A real zstd frame of 1000 bytes, its header claiming 1 TiB: no 1 TiB buffer.
  std::string raw(1000, '\0');
  std::string frame(ZSTD_compressBound(raw.size()), '\0');
  frame.resize(ZSTD_compress(frame.data(), frame.size(), raw.data(), raw.size(), 3));
  ExpectInvalid(DecodeTable(HandBuilt(999, 1, frame, 1, uint64_t{1} << 40)));
  // ... and claiming less than it holds.
  ExpectInvalid(DecodeTable(HandBuilt(999, 1, frame, 1, 10)));
  // With the true length it decodes: 999 zeros.
  Result<Table> back = DecodeTable(HandBuilt(999, 1, frame, 1, 1000));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->Find("x")->ints, std::vector<int64_t>(999, 0));
}

TEST(CodecTest, StringLengthsMustMatchTheBytes) {
  // Two strings claiming lengths 3 and 2^62 over 3 bytes of text.
  std::string stored("\x00", 1);
  PutVarint(stored, 3);
  PutVarint(stored, uint64_t{1} << 62);
  stored += "abc";
  ExpectInvalid(DecodeTable(HandBuilt(2, 3, stored, 0, stored.size())));
  // Lengths that add up to less than the bytes present.
  std::string short_lengths(
      "\x00\x01\x01"
      "abc",
      6);
  ExpectInvalid(DecodeTable(HandBuilt(2, 3, short_lengths, 0, short_lengths.size())));
}

}  // namespace
}  // namespace takt::frame
