#include "frame/readers.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "frame/csv_internal.h"

namespace takt::frame {
namespace {

using csv_internal::AppendNull;
using csv_internal::CsvSplitter;
using csv_internal::Line;
using csv_internal::PopValue;
using csv_internal::Quote;
using csv_internal::Shorten;
using csv_internal::SplitStatus;
using csv_internal::WithArticle;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kChunkBytes = 4 * kMiB;
constexpr size_t kMaxRecordBytes = 64 * kMiB;
constexpr size_t kMaxReadAheadBytes = 64 * kMiB;
// Readable bytes kept after the text, so that simdjson may parse a line in place.
constexpr size_t kPadding = simdjson::SIMDJSON_PADDING;
// Batches reserve room for this many rows at most up front; more grow as needed.
constexpr size_t kMaxReserveRows = 65536;
constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";

std::string TooLong(int64_t line) { return Line(line) + "record longer than 64 MiB"; }

// ---------------------------------------------------------------------------
// The text taken from a source and not yet discarded: a window that refills at
// its end and drops what has been used at its front.

class TextBuffer {
 public:
  explicit TextBuffer(ByteSource& source) : source_(source) {}

  std::string_view text() const { return {data_.get(), size_}; }
  size_t size() const { return size_; }
  bool eof() const { return eof_; }
  uint64_t bytes_read() const { return bytes_read_; }
  // Bytes that may be read from `p` (inside the text) on: at least kPadding past the text.
  size_t room_from(const char* p) const {
    return static_cast<size_t>(data_.get() + capacity_ + kPadding - p);
  }

  // Reads until at least `want` more bytes are in (or the source ends), a
  // chunk at a time. Moves the text: views into it become invalid.
  Status Fill(size_t want) {
    if (eof_) return Ok();
    want = std::max<size_t>(want, 1);
    const size_t room = std::max(want, kChunkBytes);
    if (capacity_ - size_ < room) Reallocate(std::max(capacity_ + capacity_ / 2, size_ + room));
    size_t added = 0;
    while (added < want) {
      const size_t ask = std::min(capacity_ - size_, std::max(want - added, kChunkBytes));
      TAKT_ASSIGN_OR_RETURN(size_t got, source_.Read(data_.get() + size_, ask));
      if (got == 0) {
        eof_ = true;
        break;
      }
      if (got > ask) return Internal("the byte source returned more bytes than asked for");
      size_ += got;
      added += got;
      bytes_read_ += got;
    }
    return Ok();
  }

  // Drops the first `n` bytes. Moves the text.
  void Discard(size_t n) {
    std::memmove(data_.get(), data_.get() + n, size_ - n);
    size_ -= n;
    // Give back what the read-ahead (or a long record) needed once it is used.
    if (capacity_ > 4 * kChunkBytes && size_ < capacity_ / 4)
      Reallocate(std::max(2 * kChunkBytes, 2 * size_));
  }

 private:
  void Reallocate(size_t capacity) {
    auto data = std::make_unique_for_overwrite<char[]>(capacity + kPadding);
    if (size_ > 0) std::memcpy(data.get(), data_.get(), size_);
    std::memset(data.get() + size_, 0, capacity + kPadding - size_);
    data_ = std::move(data);
    capacity_ = capacity;
  }

  ByteSource& source_;
  std::unique_ptr<char[]> data_;
  size_t capacity_ = 0;
  size_t size_ = 0;
  bool eof_ = false;
  uint64_t bytes_read_ = 0;
};

// ---------------------------------------------------------------------------
// What the CSV and JSON Lines readers share: the schema, the report, the
// error policy and the batch loop.

class TextReader : public BatchReader {
 public:
  TextReader(ByteSource& source, const TextReadOptions& options) : buffer_(source), options_(options) {}

  const Schema& schema() const override { return schema_; }
  const ReaderReport& report() const override { return report_; }

  Result<std::optional<Table>> Next() final {
    if (error_) return std::unexpected(*error_);
    if (done_) return std::nullopt;
    Result<std::optional<Table>> batch = ReadBatch();
    report_.bytes_read = buffer_.bytes_read();
    if (!batch) {
      error_ = batch.error();
    } else if (*batch) {
      report_.rows_read += static_cast<int64_t>((*batch)->num_rows());
    } else {
      done_ = true;
    }
    return batch;
  }

 protected:
  // The next batch, or nullopt at the end.
  virtual Result<std::optional<Table>> ReadBatch() = 0;

  // Called once the schema is known.
  void SetSchema(std::vector<Field> fields) {
    schema_.fields = std::move(fields);
    declared_.assign(schema_.fields.size(), false);
    withheld_.assign(schema_.fields.size(), false);
    for (size_t c = 0; c < schema_.fields.size(); ++c) {
      declared_[c] =
          options_.types.contains(schema_.fields[c].name) || options_.hints.contains(schema_.fields[c].name);
      withheld_[c] = options_.withhold_values.contains(schema_.fields[c].name);
    }
    report_.bytes_read = buffer_.bytes_read();
  }

  Table NewBatch() const {
    Table batch;
    batch.columns.resize(schema_.fields.size());
    const size_t rows = std::min(options_.batch_rows, kMaxReserveRows);
    for (size_t c = 0; c < schema_.fields.size(); ++c) {
      batch.columns[c].field = schema_.fields[c];
      csv_internal::Reserve(batch.columns[c], rows);
    }
    return batch;
  }

  // A null arrived in column `c`, which had none in the read-ahead.
  void Widen(Column& col, size_t c) {
    col.field.nullable = true;
    schema_.fields[c].nullable = true;
  }

  // A row that cannot be read: the error with kFail; counted and noted with
  // kSkip. `message()` gives the text, made only if it is needed.
  template <typename MakeMessage>
  Status RowErrorWith(MakeMessage message) {
    if (options_.on_error == OnError::kFail) return InvalidArgument(message());
    ++report_.rows_skipped;
    if (report_.errors.size() < options_.max_error_messages) report_.errors.push_back(message());
    return Ok();
  }
  Status RowError(std::string message) {
    return RowErrorWith([&] { return std::move(message); });
  }

  // "line 17, column force: 'abc' is not a float64 (type inferred from ...)";
  // `shown` is the value as quoted for the format, `unit` what the read-ahead counts.
  std::string Mismatch(int64_t line, size_t c, std::string_view shown, std::string_view unit) const {
    const Field& field = schema_.fields[c];
    std::string message = "line " + std::to_string(line) + ", column " + field.name + ": ";
    if (withheld_[c]) {
      message += "value is not " + WithArticle(field.type) + " (value withheld)";
    } else {
      message += std::string(shown) + " is not " + WithArticle(field.type);
    }
    if (!declared_[c]) {
      message += " (type inferred from the first " + std::to_string(readahead_rows_) + " " +
                 std::string(readahead_rows_ == 1 ? unit.substr(0, unit.size() - 1) : unit) +
                 "; declare the column's type to read it differently)";
    }
    return message;
  }

  // The declared (or hinted) type of a column.
  Type DeclaredType(const std::string& name) const {
    auto it = options_.types.find(name);
    return it != options_.types.end() ? it->second : options_.hints.at(name);
  }

  // Declared types naming columns that are not there.
  Status CheckDeclared(std::string_view where) const {
    std::string unknown;
    for (const auto& [name, type] : options_.types) {
      if (schema_.IndexOf(name) < 0) unknown += (unknown.empty() ? "" : ", ") + Quote(name);
    }
    if (unknown.empty()) return Ok();
    return InvalidArgument("types declared for columns " + std::string(where) + ": " + unknown);
  }

  TextBuffer buffer_;
  const TextReadOptions options_;
  Schema schema_;
  ReaderReport report_;
  std::vector<bool> declared_;  // per column: its type was declared, not inferred
  std::vector<bool> withheld_;  // per column: its values stay out of messages
  size_t readahead_rows_ = 0;   // rows the inference saw
  std::optional<Error> error_;  // returned again by every later Next()
  bool done_ = false;
};

Status CheckCommonOptions(const TextReadOptions& options) {
  if (options.batch_rows == 0) return InvalidArgument("batch_rows must be at least 1");
  return Ok();
}

// ---------------------------------------------------------------------------
// CSV.

// Removes the values from `base` on whose `drop` entry (indexed from `base`)
// is non-zero.
template <typename T>
void DropRows(std::vector<T>& values, size_t base, const std::vector<uint8_t>& drop) {
  if (values.size() <= base) return;
  size_t out = base;
  for (size_t i = base; i < values.size(); ++i) {
    if (drop[i - base] != 0) continue;
    if (out != i) values[out] = std::move(values[i]);
    ++out;
  }
  values.resize(out);
}

void DropRows(Column& col, size_t base, const std::vector<uint8_t>& drop) {
  DropRows(col.ints, base, drop);
  DropRows(col.doubles, base, drop);
  DropRows(col.strings, base, drop);
  DropRows(col.valid, base, drop);
}

// Rows are split into blocks of views into the buffer, then converted column
// by column: a tight loop per column and type instead of a switch per field.
constexpr size_t kBlockRows = 1024;

class CsvReader final : public TextReader {
 public:
  CsvReader(ByteSource& source, const TextReadOptions& options)
      : TextReader(source, options), splitter_(options.delimiter) {}

  Status Open();

 private:
  Result<std::optional<Table>> ReadBatch() override;

  // After kNeedMore: more text, keeping the record start (with `discard`,
  // dropping everything before it, so no view into the buffer may be held).
  Status MoreText(bool discard) {
    size_t pos = splitter_.pos();
    const size_t partial = buffer_.size() - pos;
    if (partial > kMaxRecordBytes) return InvalidArgument(TooLong(splitter_.record_line()));
    if (discard) {
      buffer_.Discard(pos);
      pos = 0;
    }
    // Doubling what a long record has so far keeps rescanning it linear.
    TAKT_RETURN_IF_ERROR(buffer_.Fill(std::min(partial, kMaxRecordBytes + 1 - partial)));
    splitter_.SetText(buffer_.text(), pos, buffer_.eof());
    return Ok();
  }

  Status CheckRecordSize() const {
    if (splitter_.record_size() > kMaxRecordBytes) return InvalidArgument(TooLong(splitter_.record_line()));
    return Ok();
  }

  // The message of a splitter error; a byte of a withheld column is not shown.
  std::string SplitError(SplitStatus status) const {
    const size_t field = splitter_.bad_field();
    const bool withhold = status == SplitStatus::kTextAfterQuote && field >= 1 && field <= withheld_.size() &&
                          withheld_[field - 1];
    return csv_internal::SplitErrorMessage(splitter_, status, withhold);
  }

  // Fields of the last record that the splitter unescaped into its own
  // storage: copied (with padding) so that they outlive the next record.
  void KeepUnescaped(size_t base) {
    const std::string_view text = buffer_.text();
    for (size_t i = base; i < views_.size(); ++i) {
      std::string_view& v = views_[i];
      const std::less_equal<const char*> at_or_before;  // a total order, also across objects
      if (at_or_before(text.data(), v.data()) &&
          at_or_before(v.data() + v.size(), text.data() + text.size())) {
        continue;
      }
      std::string& copy = unescaped_.emplace_back(v);
      copy.append(8, '\0');  // for the 8-byte parsers
      v = std::string_view(copy.data(), v.size());
    }
  }

  // Converts the block (views_, lines_) into rows of `batch`: the number of
  // rows added. Rows with a value that does not fit are an error (kFail) or
  // dropped (kSkip).
  Result<size_t> ConvertBlock(Table& batch);

  // Every view is followed by at least 8 readable bytes (the buffer's padding,
  // or the copy's), so the 8-byte parsers may read past its end.
  void ConvertColumn(Column& col, size_t c);

  CsvSplitter splitter_;
  std::vector<std::string_view> fields_;  // header and read-ahead
  size_t num_columns_ = 0;
  std::vector<csv_internal::TimestampParser> dates_;  // per column
  // The block: num_columns_ views per row, each row's line, the values that
  // do not fit (row, column).
  std::vector<std::string_view> views_;
  std::vector<int64_t> lines_;
  std::deque<std::string> unescaped_;
  std::vector<std::pair<size_t, size_t>> misfits_;
  std::vector<uint8_t> nulls_;        // per row of the block, for the column being converted
  std::vector<double> denominators_;  // the same, for a float64 column
};

Status CsvReader::Open() {
  while (buffer_.size() < kByteOrderMark.size() && !buffer_.eof()) {
    TAKT_RETURN_IF_ERROR(buffer_.Fill(kByteOrderMark.size() - buffer_.size()));
  }
  splitter_.SetText(buffer_.text(), buffer_.text().starts_with(kByteOrderMark) ? kByteOrderMark.size() : 0,
                    buffer_.eof());
  splitter_.set_line(1);

  SplitStatus status;
  while ((status = splitter_.Next(fields_)) == SplitStatus::kNeedMore) TAKT_RETURN_IF_ERROR(MoreText(false));
  if (status == SplitStatus::kEnd) return InvalidArgument("no header row");
  if (status != SplitStatus::kRecord)
    return InvalidArgument(csv_internal::SplitErrorMessage(splitter_, status));
  TAKT_RETURN_IF_ERROR(CheckRecordSize());
  TAKT_ASSIGN_OR_RETURN(std::vector<std::string> names, csv_internal::HeaderNames(fields_, splitter_));
  num_columns_ = names.size();
  std::vector<Field> fields(num_columns_);
  for (size_t c = 0; c < num_columns_; ++c) fields[c].name = names[c];
  SetSchema(fields);
  TAKT_RETURN_IF_ERROR(CheckDeclared("the header lacks"));

  // The read-ahead: rows the splitter sees twice, once here for the types and
  // once in the first batches. The buffer keeps them until then.
  const size_t data_start = splitter_.pos();
  const int64_t data_line = splitter_.line();
  std::vector<csv_internal::TypeCandidates> candidates(num_columns_);
  while (readahead_rows_ < options_.infer_rows && splitter_.pos() - data_start < kMaxReadAheadBytes) {
    status = splitter_.Next(fields_);
    if (status == SplitStatus::kNeedMore) {
      TAKT_RETURN_IF_ERROR(MoreText(false));
      continue;
    }
    if (status == SplitStatus::kEnd) break;
    // A bad row stays out of the inference; the batches report it.
    if (status == SplitStatus::kInvalidUtf8) continue;
    if (status != SplitStatus::kRecord) return InvalidArgument(SplitError(status));
    TAKT_RETURN_IF_ERROR(CheckRecordSize());
    if (fields_.size() != num_columns_) continue;
    for (size_t c = 0; c < num_columns_; ++c) {
      if (declared_[c]) {
        candidates[c].ObservePresence(fields_[c]);
      } else {
        candidates[c].Observe(fields_[c], /*padded=*/splitter_.record_in_text());
      }
    }
    ++readahead_rows_;
  }
  for (size_t c = 0; c < num_columns_; ++c) {
    Field field = candidates[c].ToField(std::move(fields[c].name));
    if (declared_[c]) field.type = DeclaredType(field.name);
    schema_.fields[c] = std::move(field);
  }
  dates_.resize(num_columns_);
  views_.reserve(kBlockRows * num_columns_ + num_columns_ + 1);
  lines_.reserve(kBlockRows);
  splitter_.SetText(buffer_.text(), data_start, buffer_.eof());
  splitter_.set_line(data_line);
  report_.bytes_read = buffer_.bytes_read();
  return Ok();
}

void CsvReader::ConvertColumn(Column& col, size_t c) {
  const size_t rows = lines_.size();
  const size_t stride = num_columns_;
  const std::string_view* raw = views_.data() + c;
  const size_t base = col.size();
  nulls_.assign(rows, 0);
  bool any_null = false;
  // `parse(value, &out)` for each non-empty value, written in place.
  auto convert = [&](auto& values, auto parse) {
    values.resize(base + rows);
    auto* out = values.data() + base;
    for (size_t r = 0; r < rows; ++r, raw += stride) {
      if (raw->empty()) {
        nulls_[r] = 1;
        any_null = true;
      } else if (!parse(*raw, &out[r])) [[unlikely]] {
        misfits_.emplace_back(r, c);
      }
    }
  };
  using csv_internal::Trim;
  switch (col.field.type) {
    case Type::kFloat64: {
      // Numerators into the column, denominators aside, then one loop of
      // divisions that overlap instead of stalling the parsing one by one.
      col.doubles.resize(base + rows);
      double* const out = col.doubles.data() + base;
      denominators_.assign(rows, 1.0);
      double* const denominator = denominators_.data();
      for (size_t r = 0; r < rows; ++r, raw += stride) {
        if (raw->empty()) {
          nulls_[r] = 1;
          any_null = true;
        } else if (!csv_internal::ParseFloatParts(Trim(*raw), &out[r], &denominator[r])) [[unlikely]] {
          misfits_.emplace_back(r, c);
        }
      }
      for (size_t r = 0; r < rows; ++r) out[r] /= denominator[r];
      break;
    }
    case Type::kInt64:
      convert(col.ints, [](std::string_view v, int64_t* out) {
        return csv_internal::ParseIntPadded(Trim(v), out) == csv_internal::IntParse::kOk;
      });
      break;
    case Type::kTimestamp: {
      csv_internal::TimestampParser& dates = dates_[c];
      convert(col.ints, [&dates](std::string_view v, int64_t* out) { return dates.Parse(Trim(v), out); });
      break;
    }
    case Type::kBool:
      convert(col.ints, [](std::string_view v, int64_t* out) {
        return csv_internal::ParseBool(Trim(v), /*digits=*/true, out);
      });
      break;
    case Type::kString:
      for (size_t r = 0; r < rows; ++r, raw += stride) {
        if (raw->empty()) {
          nulls_[r] = 1;
          any_null = true;
        }
        col.strings.emplace_back(*raw);
      }
      break;
  }
  if (any_null) {
    if (!col.field.nullable) Widen(col, c);
    if (col.valid.empty()) col.valid.assign(base, 1);
  }
  if (any_null || !col.valid.empty()) {
    col.valid.resize(base + rows);
    for (size_t r = 0; r < rows; ++r) col.valid[base + r] = static_cast<uint8_t>(1 - nulls_[r]);
  }
}

Result<size_t> CsvReader::ConvertBlock(Table& batch) {
  const size_t rows = lines_.size();
  if (rows == 0) return 0;
  const size_t base = batch.num_rows();
  misfits_.clear();
  for (size_t c = 0; c < num_columns_; ++c) ConvertColumn(batch.columns[c], c);
  size_t added = rows;
  if (!misfits_.empty()) [[unlikely]] {
    std::sort(misfits_.begin(), misfits_.end());
    std::vector<uint8_t> drop(rows, 0);
    for (const auto& [r, c] : misfits_) {
      if (drop[r] != 0) continue;  // the row's first misfit is the one reported
      drop[r] = 1;
      --added;
      TAKT_RETURN_IF_ERROR(RowErrorWith(
          [&, r = r, c = c] { return Mismatch(lines_[r], c, Quote(views_[r * num_columns_ + c]), "rows"); }));
    }
    for (Column& col : batch.columns) DropRows(col, base, drop);
  }
  views_.clear();
  lines_.clear();
  unescaped_.clear();
  return added;
}

Result<std::optional<Table>> CsvReader::ReadBatch() {
  Table batch = NewBatch();
  size_t rows = 0;
  while (rows < options_.batch_rows) {
    // Split a block of rows, up to the first record that needs the block
    // converted before it is dealt with (so that errors come in line order).
    const size_t limit = std::min(kBlockRows, options_.batch_rows - rows);
    SplitStatus status = SplitStatus::kRecord;
    std::string row_error;  // a ragged row, or (fatal) an over-long one
    bool fatal = false;
    while (lines_.size() < limit) {
      const size_t base = views_.size();
      status = splitter_.NextAppend(views_);
      if (status != SplitStatus::kRecord) [[unlikely]] {
        views_.resize(base);
        break;
      }
      const size_t count = views_.size() - base;
      if (splitter_.record_size() > kMaxRecordBytes) [[unlikely]] {
        views_.resize(base);
        row_error = TooLong(splitter_.record_line());
        fatal = true;
        break;
      }
      if (count != num_columns_) [[unlikely]] {
        views_.resize(base);
        if (num_columns_ > 1 && splitter_.record_blank()) continue;
        row_error = csv_internal::RaggedRowMessage(splitter_.record_line(), count, num_columns_);
        break;
      }
      if (!splitter_.record_in_text()) KeepUnescaped(base);
      lines_.push_back(splitter_.record_line());
    }
    TAKT_ASSIGN_OR_RETURN(size_t added, ConvertBlock(batch));
    rows += added;
    if (fatal) return InvalidArgument(std::move(row_error));
    if (!row_error.empty()) {
      TAKT_RETURN_IF_ERROR(RowError(std::move(row_error)));
      continue;
    }
    switch (status) {
      case SplitStatus::kRecord:  // the block is full
        break;
      case SplitStatus::kInvalidUtf8:
        TAKT_RETURN_IF_ERROR(RowError(SplitError(status)));
        break;
      case SplitStatus::kNeedMore:
        TAKT_RETURN_IF_ERROR(MoreText(true));
        break;
      case SplitStatus::kEnd:
        if (rows == 0) return std::nullopt;
        return batch;
      case SplitStatus::kUnterminatedQuote:
      case SplitStatus::kTextAfterQuote:
        return InvalidArgument(SplitError(status));
    }
  }
  return batch;
}

// ---------------------------------------------------------------------------
// JSON Lines.

namespace ondemand = simdjson::ondemand;

// One JSON value as the reader sees it.
enum Kind : uint8_t {
  kNullKind = 0,
  kBoolKind = 1,
  kIntKind = 2,    // fits int64
  kFloatKind = 4,  // a fraction or an exponent
  kBigKind = 8,    // an integer too large for int64, or a number too large for a double
  kStringKind = 16,
  kNestedKind = 32,  // an object or an array
};

struct JsonValue {
  Kind kind = kNullKind;
  std::string_view token;  // the JSON text (whole for objects and arrays), trailing spaces cut
  std::string_view text;   // strings: unescaped
  int64_t i = 0;           // ints, bools
  double d = 0;            // floats, and big numbers when has_double
  bool has_double = false;
};

std::string_view TrimJsonSpace(std::string_view v) {
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\n' || v.back() == '\r')) {
    v.remove_suffix(1);
  }
  return v;
}

bool IsBlank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

// JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
bool IsJsonNumber(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > start;
  };
  if (i < s.size() && s[i] == '-') ++i;
  if (i < s.size() && s[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == s.size();
}

// Reads the value `v` (consuming it) into `out`.
simdjson::error_code ReadJsonValue(ondemand::value v, JsonValue* out) {
  ondemand::json_type type;
  if (auto e = v.type().get(type)) return e;
  out->token = TrimJsonSpace(v.raw_json_token());
  switch (type) {
    case ondemand::json_type::null: {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) return e;
      if (!is_null) return simdjson::INCORRECT_TYPE;
      out->kind = kNullKind;
      return simdjson::SUCCESS;
    }
    case ondemand::json_type::boolean: {
      bool b = false;
      if (auto e = v.get_bool().get(b)) return e;
      out->kind = kBoolKind;
      out->i = b ? 1 : 0;
      return simdjson::SUCCESS;
    }
    case ondemand::json_type::number: {
      ondemand::number number;
      if (v.get_number().get(number) != simdjson::SUCCESS) {
        // Valid JSON that simdjson cannot hold: beyond uint64 or beyond double.
        if (!IsJsonNumber(out->token)) return simdjson::NUMBER_ERROR;
        out->kind = kBigKind;
        const char* end = out->token.data() + out->token.size();
        auto [ptr, ec] = std::from_chars(out->token.data(), end, out->d);
        out->has_double = ec == std::errc() && ptr == end;
        return simdjson::SUCCESS;
      }
      switch (number.get_number_type()) {
        case ondemand::number_type::signed_integer:
          out->kind = kIntKind;
          out->i = number.get_int64();
          break;
        case ondemand::number_type::unsigned_integer:
          out->kind = kBigKind;
          out->d = number.as_double();
          out->has_double = true;
          break;
        case ondemand::number_type::floating_point_number:
          out->kind = kFloatKind;
          out->d = number.get_double();
          break;
      }
      return simdjson::SUCCESS;
    }
    case ondemand::json_type::string: {
      if (auto e = v.get_string().get(out->text)) return e;
      out->kind = kStringKind;
      return simdjson::SUCCESS;
    }
    case ondemand::json_type::object: {
      ondemand::object object;
      if (auto e = v.get_object().get(object)) return e;
      if (auto e = object.raw_json().get(out->token)) return e;
      out->token = TrimJsonSpace(out->token);
      out->kind = kNestedKind;
      return simdjson::SUCCESS;
    }
    case ondemand::json_type::array: {
      ondemand::array array;
      if (auto e = v.get_array().get(array)) return e;
      if (auto e = array.raw_json().get(out->token)) return e;
      out->token = TrimJsonSpace(out->token);
      out->kind = kNestedKind;
      return simdjson::SUCCESS;
    }
  }
  return simdjson::INCORRECT_TYPE;
}

// What the read-ahead saw of one key.
struct JsonCandidates {
  uint8_t kinds = 0;  // Kind bits, nulls aside
  bool any_null = false;
  bool all_timestamps = true;  // every string parses as a timestamp
  size_t present = 0;          // lines that have the key

  Type ToType() const {
    switch (kinds) {
      case kBoolKind:
        return Type::kBool;
      case kIntKind:
        return Type::kInt64;
      case kFloatKind:
      case kIntKind | kFloatKind:
        return Type::kFloat64;
      case kStringKind:
        return all_timestamps ? Type::kTimestamp : Type::kString;
      default:  // nothing but nulls, nested values, big numbers, or a mix of kinds
        return Type::kString;
    }
  }
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class JsonlReader final : public TextReader {
 public:
  using TextReader::TextReader;

  Status Open();

 private:
  Result<std::optional<Table>> ReadBatch() override;

  // The next non-blank line, without its line end; nullopt at the end of the
  // text. Sets line_number_. With `discard`, drops used text when refilling.
  Result<std::optional<std::string_view>> NextLine(bool discard);

  // Starts parsing `line`: its root object, or the message saying why not.
  std::optional<std::string> Begin(std::string_view line, ondemand::document& doc, ondemand::object& object);
  std::string Invalid(simdjson::error_code e) const {
    if (e == simdjson::UTF8_ERROR) return Line(line_number_) + "invalid UTF-8";
    return Line(line_number_) + "not valid JSON (" + simdjson::error_message(e) + ")";
  }
  // Whether anything follows the root object.
  static bool TrailingText(ondemand::document& doc) {
    const char* location = nullptr;
    return doc.current_location().get(location) == simdjson::SUCCESS;
  }

  // Adds the line's keys and kinds to the inference; false if the line is
  // not one valid JSON object with distinct keys (the batches report it).
  bool ObserveLine(std::string_view line);
  // Appends the line as a row of `batch`; false (batch unchanged, row_error_
  // set) if it cannot be.
  bool AppendLine(std::string_view line, Table& batch);
  bool AppendJsonValue(Column& col, size_t c, const JsonValue& v);
  void Rollback(Table& batch);

  size_t pos_ = 0;           // where the next line starts in buffer_
  int64_t next_line_ = 1;    // its physical line number
  int64_t line_number_ = 0;  // that of the line last returned
  ondemand::parser parser_;
  std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> index_;  // key -> column
  std::vector<JsonCandidates> candidates_;
  std::vector<uint32_t> seen_;                        // per column: the row generation that has set it
  std::vector<csv_internal::TimestampParser> dates_;  // per column
  uint32_t generation_ = 0;
  std::string row_error_;
  std::vector<std::pair<std::string_view, JsonValue>> observed_;
  std::vector<std::string_view> keys_;
  std::string minified_;
};

Result<std::optional<std::string_view>> JsonlReader::NextLine(bool discard) {
  while (true) {
    const std::string_view text = buffer_.text();
    const size_t start = pos_;
    const auto* newline =
        static_cast<const char*>(std::memchr(text.data() + start, '\n', text.size() - start));
    size_t end;
    if (newline != nullptr) {
      end = static_cast<size_t>(newline - text.data());
    } else if (buffer_.eof()) {
      if (start >= text.size()) return std::nullopt;
      end = text.size();
    } else {
      const size_t partial = text.size() - start;
      if (partial > kMaxRecordBytes) return InvalidArgument(TooLong(next_line_));
      if (discard) {
        buffer_.Discard(start);
        pos_ = 0;
      }
      TAKT_RETURN_IF_ERROR(buffer_.Fill(std::min(partial, kMaxRecordBytes + 1 - partial)));
      continue;
    }
    line_number_ = next_line_++;
    if (end - start > kMaxRecordBytes) return InvalidArgument(TooLong(line_number_));
    pos_ = newline != nullptr ? end + 1 : end;
    std::string_view line = text.substr(start, end - start);
    if (IsBlank(line)) continue;
    if (line.back() == '\r') line.remove_suffix(1);
    return line;
  }
}

std::optional<std::string> JsonlReader::Begin(std::string_view line, ondemand::document& doc,
                                              ondemand::object& object) {
  const simdjson::padded_string_view json(line.data(), line.size(), buffer_.room_from(line.data()));
  if (auto e = parser_.iterate(json).get(doc)) return Invalid(e);
  if (auto e = doc.get_object().get(object)) {
    if (e == simdjson::INCORRECT_TYPE) return Line(line_number_) + "not a JSON object";
    return Invalid(e);
  }
  return std::nullopt;
}

bool JsonlReader::ObserveLine(std::string_view line) {
  ondemand::document doc;
  ondemand::object object;
  if (Begin(line, doc, object)) return false;
  observed_.clear();
  for (auto field_result : object) {
    ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key) || key.empty()) return false;
    JsonValue value;
    if (ReadJsonValue(field.value(), &value)) return false;
    observed_.emplace_back(key, value);
  }
  if (TrailingText(doc)) return false;
  keys_.clear();
  for (const auto& [key, value] : observed_) keys_.push_back(key);
  std::sort(keys_.begin(), keys_.end());
  if (std::adjacent_find(keys_.begin(), keys_.end()) != keys_.end()) return false;

  for (const auto& [key, value] : observed_) {
    auto it = index_.find(key);
    if (it == index_.end()) {
      it = index_.emplace(std::string(key), candidates_.size()).first;
      candidates_.emplace_back();
    }
    JsonCandidates& candidate = candidates_[it->second];
    ++candidate.present;
    if (value.kind == kNullKind) {
      candidate.any_null = true;
      continue;
    }
    candidate.kinds |= value.kind;
    if (value.kind == kStringKind && candidate.all_timestamps && !ParseTimestamp(value.text)) {
      candidate.all_timestamps = false;
    }
  }
  return true;
}

Status JsonlReader::Open() {
  while (buffer_.size() < kByteOrderMark.size() && !buffer_.eof()) {
    TAKT_RETURN_IF_ERROR(buffer_.Fill(kByteOrderMark.size() - buffer_.size()));
  }
  const size_t data_start = buffer_.text().starts_with(kByteOrderMark) ? kByteOrderMark.size() : 0;
  pos_ = data_start;
  size_t objects = 0;  // valid lines in the read-ahead
  std::optional<std::string> first_bad;
  while (readahead_rows_ < options_.infer_rows && pos_ - data_start < kMaxReadAheadBytes) {
    TAKT_ASSIGN_OR_RETURN(std::optional<std::string_view> line, NextLine(/*discard=*/false));
    if (!line) break;
    ++readahead_rows_;
    if (ObserveLine(*line)) {
      ++objects;
    } else if (!first_bad) {
      first_bad = Line(line_number_) + "not one JSON object with distinct, non-empty keys";
    }
  }

  std::vector<Field> fields(candidates_.size());
  for (const auto& [key, c] : index_) fields[c].name = key;
  SetSchema(std::move(fields));
  if (schema_.fields.empty()) {
    if (first_bad && options_.on_error == OnError::kFail) return InvalidArgument(*first_bad);
    return InvalidArgument("no JSON object with keys in the first " + std::to_string(readahead_rows_) +
                           " lines");
  }
  TAKT_RETURN_IF_ERROR(CheckDeclared("that no line of the read-ahead has"));
  for (size_t c = 0; c < schema_.fields.size(); ++c) {
    Field& field = schema_.fields[c];
    const JsonCandidates& candidate = candidates_[c];
    field.type = declared_[c] ? DeclaredType(field.name) : candidate.ToType();
    field.nullable = candidate.any_null || candidate.kinds == 0 || candidate.present < objects;
  }
  seen_.assign(schema_.fields.size(), 0);
  dates_.resize(schema_.fields.size());
  pos_ = data_start;
  next_line_ = 1;
  report_.bytes_read = buffer_.bytes_read();
  return Ok();
}

bool JsonlReader::AppendJsonValue(Column& col, size_t c, const JsonValue& v) {
  switch (col.field.type) {
    case Type::kBool:
      if (v.kind != kBoolKind) return false;
      col.ints.push_back(v.i);
      break;
    case Type::kInt64:
      if (v.kind != kIntKind) return false;
      col.ints.push_back(v.i);
      break;
    case Type::kFloat64:
      if (v.kind == kIntKind) {
        col.doubles.push_back(static_cast<double>(v.i));
      } else if (v.kind == kFloatKind || (v.kind == kBigKind && v.has_double)) {
        col.doubles.push_back(v.d);
      } else {
        return false;
      }
      break;
    case Type::kTimestamp:
      if (v.kind == kIntKind) {
        col.ints.push_back(v.i);
      } else if (v.kind == kStringKind) {
        int64_t seconds;
        if (!dates_[c].Parse(v.text, &seconds)) return false;
        col.ints.push_back(seconds);
      } else {
        return false;
      }
      break;
    case Type::kString:
      if (v.kind == kStringKind) {
        col.strings.emplace_back(v.text);
      } else if (v.kind == kNestedKind) {
        minified_.resize(v.token.size() + kPadding);
        size_t length = 0;
        if (simdjson::minify(v.token.data(), v.token.size(), minified_.data(), length)) {
          col.strings.emplace_back(v.token);
        } else {
          col.strings.emplace_back(minified_.data(), length);
        }
      } else {
        col.strings.emplace_back(v.token);  // numbers and true/false as written
      }
      break;
  }
  if (!col.valid.empty()) col.valid.push_back(1);
  return true;
}

void JsonlReader::Rollback(Table& batch) {
  for (size_t c = 0; c < seen_.size(); ++c) {
    if (seen_[c] == generation_) PopValue(batch.columns[c]);
  }
}

bool JsonlReader::AppendLine(std::string_view line, Table& batch) {
  if (++generation_ == 0) {  // wrapped around: forget every old mark
    std::fill(seen_.begin(), seen_.end(), 0);
    generation_ = 1;
  }
  auto fail = [&](std::string message) {
    Rollback(batch);
    row_error_ = std::move(message);
    return false;
  };
  ondemand::document doc;
  ondemand::object object;
  if (std::optional<std::string> error = Begin(line, doc, object)) return fail(std::move(*error));
  const size_t num_columns = schema_.fields.size();
  size_t expected = 0;  // keys usually come in column order
  for (auto field_result : object) {
    ondemand::field field;
    std::string_view key;
    if (auto e = std::move(field_result).get(field)) return fail(Invalid(e));
    if (auto e = field.unescaped_key().get(key)) return fail(Invalid(e));
    size_t c;
    if (expected < num_columns && schema_.fields[expected].name == key) {
      c = expected;
    } else {
      auto it = index_.find(key);
      if (it == index_.end()) {
        return fail(Line(line_number_) + "key " + Quote(key) +
                    " is not among the columns inferred from the first " + std::to_string(readahead_rows_) +
                    (readahead_rows_ == 1 ? " line" : " lines"));
      }
      c = it->second;
    }
    expected = c + 1;
    if (seen_[c] == generation_) return fail(Line(line_number_) + "key " + Quote(key) + " appears twice");
    JsonValue value;
    if (auto e = ReadJsonValue(field.value(), &value)) {
      return fail("line " + std::to_string(line_number_) + ", column " + schema_.fields[c].name +
                  ": not a valid JSON value (" + simdjson::error_message(e) + ")");
    }
    Column& col = batch.columns[c];
    if (value.kind == kNullKind) {
      if (!col.field.nullable) Widen(col, c);
      AppendNull(col);
    } else if (!AppendJsonValue(col, c, value)) {
      return fail(Mismatch(line_number_, c, Shorten(value.token), "lines"));
    }
    seen_[c] = generation_;
  }
  if (TrailingText(doc)) return fail(Line(line_number_) + "text after the JSON object");
  for (size_t c = 0; c < num_columns; ++c) {
    if (seen_[c] == generation_) continue;
    Column& col = batch.columns[c];
    if (!col.field.nullable) Widen(col, c);
    AppendNull(col);
  }
  return true;
}

Result<std::optional<Table>> JsonlReader::ReadBatch() {
  Table batch = NewBatch();
  size_t rows = 0;
  while (rows < options_.batch_rows) {
    TAKT_ASSIGN_OR_RETURN(std::optional<std::string_view> line, NextLine(/*discard=*/true));
    if (!line) break;
    if (AppendLine(*line, batch)) {
      ++rows;
    } else {
      TAKT_RETURN_IF_ERROR(RowError(std::move(row_error_)));
    }
  }
  if (rows == 0) return std::nullopt;
  return batch;
}

}  // namespace

Result<std::unique_ptr<BatchReader>> OpenCsvReader(ByteSource& source, const TextReadOptions& options) {
  TAKT_RETURN_IF_ERROR(csv_internal::CheckDelimiter(options.delimiter));
  TAKT_RETURN_IF_ERROR(CheckCommonOptions(options));
  auto reader = std::make_unique<CsvReader>(source, options);
  TAKT_RETURN_IF_ERROR(reader->Open());
  return std::unique_ptr<BatchReader>(std::move(reader));
}

Result<std::unique_ptr<BatchReader>> OpenJsonlReader(ByteSource& source, const TextReadOptions& options) {
  TAKT_RETURN_IF_ERROR(CheckCommonOptions(options));
  auto reader = std::make_unique<JsonlReader>(source, options);
  TAKT_RETURN_IF_ERROR(reader->Open());
  return std::unique_ptr<BatchReader>(std::move(reader));
}

}  // namespace takt::frame
