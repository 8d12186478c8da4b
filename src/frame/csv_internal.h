// File: frame/csv_internal.h
//
// The pieces of CSV reading shared by ReadCsv (frame/csv.h, whole text in
// memory) and the streaming reader (frame/readers.h): the record splitter,
// value parsing, type inference and the error wording. Internal to the frame
// module: include it only from frame/*.cc.
//
// The splitter works on a window of text that may end mid-record: told the
// window is not final, it answers kNeedMore instead of guessing, and the caller
// refills and calls again from the same record start. Records without quotes
// take an SSE2 path.
//
// The hot parsers have fast paths that must give exactly what the plain ones
// give (readers_test.cc checks them against std::from_chars and
// ParseTimestamp): *Padded variants read 8 bytes at a time and so need 8
// readable bytes after the value, which the streaming reader's buffer has.
// Everything here is pure or per-instance state: no sharing between threads.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "core/result.h"
#include "frame/table.h"

namespace takt::frame::csv_internal {

// ---------------------------------------------------------------------------
// Text helpers.

bool IsValidUtf8(std::string_view s);

inline std::string_view Trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view lower);

// true/false in any case; with `digits` also 1/0.
inline bool ParseBool(std::string_view v, bool digits, int64_t* out) {
  if (EqualsIgnoreCase(v, "true") || (digits && v == "1")) {
    *out = 1;
    return true;
  }
  if (EqualsIgnoreCase(v, "false") || (digits && v == "0")) {
    *out = 0;
    return true;
  }
  return false;
}

// from_chars takes no leading '+'; CSV writers sometimes emit one.
inline std::string_view StripPlus(std::string_view v) {
  if (v.size() >= 2 && v[0] == '+' && v[1] != '-' && v[1] != '+') v.remove_prefix(1);
  return v;
}

enum class IntParse { kOk, kNotInteger, kOutOfRange };

// An integer, as std::from_chars reads it after StripPlus. Short plain
// numbers (the common case) take a fast path with the same result.
inline IntParse ParseInt(std::string_view v, int64_t* out) {
  const char* p = v.data();
  const char* const end = p + v.size();
  const bool negative = p < end && *p == '-';
  if (p < end && (*p == '-' || *p == '+')) ++p;
  const char* const digits = p;
  uint64_t value = 0;
  while (p < end && static_cast<unsigned char>(*p - '0') < 10 && p - digits < 18) {
    value = value * 10 + static_cast<unsigned char>(*p - '0');
    ++p;
  }
  if (p == end && p > digits) {  // at most 18 digits: no overflow
    *out = negative ? -static_cast<int64_t>(value) : static_cast<int64_t>(value);
    return IntParse::kOk;
  }
  v = StripPlus(v);
  const char* v_end = v.data() + v.size();
  auto [ptr, ec] = std::from_chars(v.data(), v_end, *out);
  if (ptr != v_end || v.empty()) return IntParse::kNotInteger;
  if (ec == std::errc::result_out_of_range) return IntParse::kOutOfRange;
  return ec == std::errc() ? IntParse::kOk : IntParse::kNotInteger;
}

// A float, as std::from_chars (general format) reads it after StripPlus.
// Plain decimals with up to 19 digits take Clinger's fast path: the digits as
// an exact integer below 2^53 divided by an exact power of ten is one
// correctly rounded operation, so the result is the same double.
inline bool ParseFloat(std::string_view v, double* out) {
  static constexpr double kPowersOf10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                           1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                           1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const char* p = v.data();
  const char* const end = p + v.size();
  const bool negative = p < end && *p == '-';
  if (p < end && (*p == '-' || *p == '+')) ++p;
  uint64_t mantissa = 0;
  int digits = 0;
  int fraction = 0;
  while (p < end && static_cast<unsigned char>(*p - '0') < 10 && digits < 20) {
    mantissa = mantissa * 10 + static_cast<unsigned char>(*p - '0');
    ++p;
    ++digits;
  }
  if (p < end && *p == '.') {
    ++p;
    while (p < end && static_cast<unsigned char>(*p - '0') < 10 && digits < 20) {
      mantissa = mantissa * 10 + static_cast<unsigned char>(*p - '0');
      ++p;
      ++digits;
      ++fraction;
    }
  }
  if (p == end && digits > 0 && digits <= 19 && mantissa <= (uint64_t{1} << 53)) {
    const double value = static_cast<double>(mantissa) / kPowersOf10[fraction];
    *out = negative ? -value : value;
    return true;
  }
  v = StripPlus(v);
  const char* v_end = v.data() + v.size();
  auto [ptr, ec] = std::from_chars(v.data(), v_end, *out, std::chars_format::general);
  return ec == std::errc() && ptr == v_end && !v.empty();
}

// Variants for text followed by at least 8 readable bytes (the streaming
// reader's buffer is padded): the digits are found and converted 8 bytes at a
// time. Same results as ParseInt and ParseFloat.

// How many of the 8 bytes at `p` are ASCII digits before the first that is not.
[[gnu::always_inline]] inline int LeadingDigits(const char* p) {
  uint64_t bytes;
  std::memcpy(&bytes, p, sizeof(bytes));  // little-endian: p[0] is the low byte
  // Per byte 0x33 exactly for '0'..'9'. A carry out of a byte >= 0xFA only
  // spoils the bytes after it, which no longer count.
  const uint64_t t =
      (bytes & 0xF0F0F0F0F0F0F0F0) | (((bytes + 0x0606060606060606) & 0xF0F0F0F0F0F0F0F0) >> 4);
  const uint64_t other = t ^ 0x3333333333333333;
  return other == 0 ? 8 : __builtin_ctzll(other) / 8;
}

// The value of the `count` (1 to 8) digits in the low bytes of `v`.
[[gnu::always_inline]] inline uint32_t DigitsValueOf(uint64_t v, int count) {
  v -= 0x3030303030303030;  // a borrow only moves towards the bytes shifted out below
  v <<= 8 * (8 - count);    // leading zero digits in place of the bytes after the digits
  v = (v * 10) + (v >> 8);  // pairs
  v = (((v & 0x000000FF000000FF) * (100 + (1000000ULL << 32))) +
       (((v >> 16) & 0x000000FF000000FF) * (1 + (10000ULL << 32)))) >>
      32;
  return static_cast<uint32_t>(v);
}

// The value of the `count` (1 to 8) digits at `p`.
[[gnu::always_inline]] inline uint32_t DigitsValue(const char* p, int count) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return DigitsValueOf(v, count);
}

[[gnu::always_inline]] inline IntParse ParseIntPadded(std::string_view v, int64_t* out) {
  const char* p = v.data();
  const char* const end = p + v.size();
  const bool negative = p < end && *p == '-';
  if (p < end && (*p == '-' || *p == '+')) ++p;
  const int digits = std::min<int>(LeadingDigits(p), static_cast<int>(end - p));
  if (digits == 0 || digits == 8) return ParseInt(v, out);
  if (p + digits != end) return IntParse::kNotInteger;  // from_chars would stop at the same byte
  const int64_t value = DigitsValue(p, digits);
  *out = negative ? -value : value;
  return IntParse::kOk;
}

// ParseFloatPadded in two steps: the value is *numerator / *denominator,
// a division the caller may batch (divisions of a loop overlap, one at a time
// they stall it). The denominator is 1 where ParseFloat gave the value.
[[gnu::always_inline]] inline bool ParseFloatParts(std::string_view v, double* numerator,
                                                   double* denominator) {
  static constexpr double kPowersOf10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7};
  static constexpr uint64_t kIntPowersOf10[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000};
  *denominator = 1.0;
  const char* p = v.data();
  const char* const end = p + v.size();
  const bool negative = p < end && *p == '-';
  if (p < end && (*p == '-' || *p == '+')) ++p;
  const auto length = static_cast<size_t>(end - p);
  if (length - 1 < 8) {
    // Up to 8 bytes, the usual size: digits with at most one '.', all in one word.
    uint64_t word;
    std::memcpy(&word, p, sizeof(word));
    const uint64_t t =
        (word & 0xF0F0F0F0F0F0F0F0) | (((word + 0x0606060606060606) & 0xF0F0F0F0F0F0F0F0) >> 4);
    const uint64_t x = t ^ 0x3333333333333333;  // a non-zero byte for each non-digit
    const uint64_t in_value = length == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * length)) - 1;
    const uint64_t others =
        (((x & 0x7F7F7F7F7F7F7F7F) + 0x7F7F7F7F7F7F7F7F) | x) & 0x8080808080808080 & in_value;
    if (others == 0) {
      *numerator = static_cast<double>(DigitsValueOf(word, static_cast<int>(length)));
      if (negative) *numerator = -*numerator;
      return true;
    }
    if ((others & (others - 1)) == 0 && length > 1) {  // one byte that is not a digit
      const int dot = __builtin_ctzll(others) / 8;
      if (p[dot] == '.') {
        const uint64_t before = (uint64_t{1} << (8 * dot)) - 1;
        const uint64_t digits = (word & before) | ((word >> 8) & ~before);  // the '.' taken out
        const int fraction = static_cast<int>(length) - 1 - dot;
        const auto magnitude = static_cast<double>(DigitsValueOf(digits, static_cast<int>(length) - 1));
        *numerator = negative ? -magnitude : magnitude;
        *denominator = kPowersOf10[fraction];
        return true;
      }
    }
  }
  const int whole = std::min<int>(LeadingDigits(p), static_cast<int>(end - p));
  if (whole == 8) return ParseFloat(v, numerator);
  uint64_t mantissa = whole > 0 ? DigitsValue(p, whole) : 0;
  p += whole;
  int fraction = 0;
  if (p < end && *p == '.') {
    ++p;
    fraction = std::min<int>(LeadingDigits(p), static_cast<int>(end - p));
    if (fraction == 8) return ParseFloat(v, numerator);
    if (fraction > 0) mantissa = mantissa * kIntPowersOf10[fraction] + DigitsValue(p, fraction);
    p += fraction;
  }
  if (whole + fraction == 0) return ParseFloat(v, numerator);  // inf, nan, or nothing
  if (p != end) {
    // Only an exponent may follow the digits; from_chars would stop at anything else.
    if (*p != 'e' && *p != 'E') return false;
    return ParseFloat(v, numerator);
  }
  // At most 14 digits: exact, and so is the power of ten (see ParseFloat).
  // Rounding is symmetric, so the sign may go on the numerator.
  const auto magnitude = static_cast<double>(mantissa);
  *numerator = negative ? -magnitude : magnitude;
  *denominator = kPowersOf10[fraction];
  return true;
}

[[gnu::always_inline]] inline bool ParseFloatPadded(std::string_view v, double* out) {
  double numerator, denominator;
  if (!ParseFloatParts(v, &numerator, &denominator)) return false;
  *out = numerator / denominator;
  return true;
}

// A value quoted for an error message, cut short (at a UTF-8 boundary) if long.
std::string Quote(std::string_view v);
// `v` cut short like Quote, without the quotes (JSON tokens bring their own).
std::string Shorten(std::string_view v);

// "line 17: "
std::string Line(int64_t line);

// "an int64", "a float64", ...
std::string WithArticle(Type type);

std::string RaggedRowMessage(int64_t line, size_t fields, size_t header);

// InvalidArgument unless `delimiter` can separate CSV fields.
Status CheckDelimiter(char delimiter);

// ---------------------------------------------------------------------------
// Values.

// Appends a null to `col` (which must be nullable), starting `valid` if needed.
void AppendNull(Column& col);

// Appends the non-empty CSV value `raw` to `col`. False if it does not fit the
// column's type (and then `col` is unchanged).
inline bool AppendParsed(Column& col, std::string_view raw) {
  switch (col.field.type) {
    case Type::kString:
      col.strings.emplace_back(raw);
      break;
    case Type::kInt64: {
      int64_t v;
      if (ParseInt(Trim(raw), &v) != IntParse::kOk) return false;
      col.ints.push_back(v);
      break;
    }
    case Type::kFloat64: {
      double v;
      if (!ParseFloat(Trim(raw), &v)) return false;
      col.doubles.push_back(v);
      break;
    }
    case Type::kBool: {
      int64_t v;
      if (!ParseBool(Trim(raw), /*digits=*/true, &v)) return false;
      col.ints.push_back(v);
      break;
    }
    case Type::kTimestamp: {
      std::optional<int64_t> v = ParseTimestamp(Trim(raw));
      if (!v) return false;
      col.ints.push_back(*v);
      break;
    }
  }
  if (!col.valid.empty()) col.valid.push_back(1);
  return true;
}

// Appends the CSV value `raw` to `col`. False if it does not fit the column's
// type, or is empty (null) in a non-nullable column.
inline bool AppendValue(Column& col, std::string_view raw) {
  if (raw.empty()) {
    if (!col.field.nullable) return false;
    AppendNull(col);
    return true;
  }
  return AppendParsed(col, raw);
}

// Removes the last row of `col` (its value and its validity entry).
void PopValue(Column& col);

void Reserve(Column& col, size_t rows);

// ParseTimestamp with the date of the last value remembered: timestamps in a
// file mostly share their date with the row before.
class TimestampParser {
 public:
  bool Parse(std::string_view v, int64_t* out) {
    // YYYY-MM-DD, optionally followed by [T ]HH:MM:SS and Z.
    const size_t n = v.size();
    if (!(n == 10 || n == 19 || (n == 20 && v[19] == 'Z')) || v[0] < '0' || v[0] > '9') return Slow(v, out);
    if (!has_date_ || std::memcmp(date_, v.data(), sizeof(date_)) != 0) {
      std::optional<int64_t> date = ParseTimestamp(v.substr(0, sizeof(date_)));
      if (!date) return Slow(v, out);
      std::memcpy(date_, v.data(), sizeof(date_));
      date_seconds_ = *date;
      has_date_ = true;
    }
    if (n == 10) {
      *out = date_seconds_;
      return true;
    }
    int hour, minute, second;
    if ((v[10] != 'T' && v[10] != ' ') || v[13] != ':' || v[16] != ':' || !Two(v, 11, &hour) ||
        !Two(v, 14, &minute) || !Two(v, 17, &second) || hour > 23 || minute > 59 || second > 59) {
      return Slow(v, out);
    }
    *out = date_seconds_ + hour * 3600 + minute * 60 + second;
    return true;
  }

 private:
  static bool Two(std::string_view v, size_t at, int* out) {
    const auto hi = static_cast<unsigned char>(v[at] - '0');
    const auto lo = static_cast<unsigned char>(v[at + 1] - '0');
    if (hi > 9 || lo > 9) return false;
    *out = hi * 10 + lo;
    return true;
  }
  static bool Slow(std::string_view v, int64_t* out) {
    std::optional<int64_t> seconds = ParseTimestamp(v);
    if (seconds) *out = *seconds;
    return seconds.has_value();
  }

  char date_[10];
  int64_t date_seconds_ = 0;
  bool has_date_ = false;
};

// What a column's values seen so far allow it to be.
class TypeCandidates {
 public:
  // With `padded`, 8 bytes after `raw` may be read (see ParseFloatPadded).
  void Observe(std::string_view raw, bool padded = false);
  // Notes only whether `raw` is empty: for a column whose type is declared.
  void ObservePresence(std::string_view raw) { (raw.empty() ? any_empty_ : any_value_) = true; }
  bool any_empty() const { return any_empty_; }
  bool any_value() const { return any_value_; }
  // The narrowest type that fits every non-empty value observed: bool < int64
  // < float64 < timestamp < string. Nullable if a value was empty or none was
  // seen (an all-empty column is a nullable string).
  Field ToField(std::string name) const;

 private:
  bool can_bool_ = true, can_int_ = true, can_float_ = true, can_timestamp_ = true;
  bool any_value_ = false, any_empty_ = false;
  TimestampParser timestamps_;
};

// ---------------------------------------------------------------------------
// Splitting: one pass over the bytes, yielding records as views into the text.

enum class SplitStatus {
  kRecord,             // a record (fields filled in)
  kInvalidUtf8,        // a whole record, consumed, that is not valid UTF-8
  kNeedMore,           // the text ends inside a record that is not final: refill
  kEnd,                // the final text is used up
  kUnterminatedQuote,  // the final text ends inside a quoted field
  kTextAfterQuote,     // something other than a delimiter or line end after a closing quote
};

class CsvSplitter {
 public:
  explicit CsvSplitter(char delimiter);

  // The text to split from `pos` on, the physical line there being `line`.
  // `final`: no more text follows, so the end of the text ends a record.
  void SetText(std::string_view text, size_t pos, bool final) {
    text_ = text;
    pos_ = pos;
    final_ = final;
  }
  void set_line(int64_t line) { line_ = line; }

  // Splits the next record into `fields`: views into the text, or into storage
  // this splitter owns for quoted fields with doubled quotes (valid until the
  // next call). On anything but kRecord and kInvalidUtf8 the position stays at
  // the start of the record.
  SplitStatus Next(std::vector<std::string_view>& fields) {
    fields.clear();
    return NextAppend(fields);
  }
  // Next, appending the record's fields to those already in `fields`. On
  // anything but kRecord, `fields` may hold part of the record after them.
  SplitStatus NextAppend(std::vector<std::string_view>& fields);

  // Where the next record starts, and its physical line (1-based).
  size_t pos() const { return pos_; }
  int64_t line() const { return line_; }
  // The physical line where the last record started (also for kNeedMore and
  // the errors), and its length in bytes.
  int64_t record_line() const { return record_line_; }
  size_t record_size() const { return record_size_; }
  // Whether the last record was an empty line.
  bool record_blank() const { return record_blank_; }
  // Whether every field of the last record is a view into the text (none
  // needed unescaping into the splitter's own storage, which the next call reuses).
  bool record_in_text() const { return unescaped_used_ == 0; }
  // For kTextAfterQuote: the offending byte and the 1-based field it follows.
  char bad_char() const { return bad_char_; }
  size_t bad_field() const { return bad_field_; }

 private:
  char delimiter_;
  // The fast path for a record without quotes (SSE2): false to take the
  // general one, which starts over.
  bool NextPlain(std::vector<std::string_view>& fields, size_t base, SplitStatus* status);

  std::string_view text_;
  size_t pos_ = 0;
  bool final_ = true;
  int64_t line_ = 1;
  int64_t record_line_ = 0;
  size_t record_size_ = 0;
  bool record_blank_ = false;
  char bad_char_ = 0;
  size_t bad_field_ = 0;
  // 1 for the delimiter, LF and CR: the bytes that can end an unquoted field.
  uint8_t stops_[256];
  // Unescaped quoted fields of the current record; a deque so that growing it
  // leaves earlier strings (and views of them) in place. Reused across records.
  std::deque<std::string> unescaped_;
  size_t unescaped_used_ = 0;
};

// The "line N: ..." message for kInvalidUtf8, kUnterminatedQuote and
// kTextAfterQuote; with `withhold` the offending byte is not quoted.
std::string SplitErrorMessage(const CsvSplitter& splitter, SplitStatus status, bool withhold = false);

// The column names of a header record (copied), or the error naming its line.
Result<std::vector<std::string>> HeaderNames(const std::vector<std::string_view>& fields,
                                             const CsvSplitter& splitter);

}  // namespace takt::frame::csv_internal
