#include "frame/csv.h"

#include <charconv>
#include <cstring>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "frame/csv_internal.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace takt::frame {

// ---------------------------------------------------------------------------
// Shared with the streaming reader (frame/csv_internal.h).

namespace csv_internal {

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    uint32_t min;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past Unicode's range.
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

std::string Shorten(std::string_view v) {
  constexpr size_t kMax = 64;
  if (v.size() <= kMax) return std::string(v);
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(v[cut]) & 0xC0) == 0x80) --cut;
  std::string out(v.substr(0, cut));
  out += "...";
  return out;
}

std::string Quote(std::string_view v) { return "'" + Shorten(v) + "'"; }

std::string Line(int64_t line) { return "line " + std::to_string(line) + ": "; }

std::string WithArticle(Type type) {
  return (type == Type::kInt64 ? "an " : "a ") + std::string(TypeName(type));
}

std::string RaggedRowMessage(int64_t line, size_t fields, size_t header) {
  return Line(line) + "has " + std::to_string(fields) + (fields == 1 ? " field" : " fields") +
         ", the header has " + std::to_string(header);
}

Status CheckDelimiter(char d) {
  if (d == '"' || d == '\n' || d == '\r' || static_cast<unsigned char>(d) >= 0x80) {
    return InvalidArgument("CSV delimiter " + Quote(std::string_view(&d, 1)) + " is not allowed");
  }
  return Ok();
}

void AppendNull(Column& col) {
  const size_t row = col.size();
  switch (col.field.type) {
    case Type::kString:
      col.strings.emplace_back();
      break;
    case Type::kFloat64:
      col.doubles.push_back(0.0);
      break;
    case Type::kInt64:
    case Type::kBool:
    case Type::kTimestamp:
      col.ints.push_back(0);
      break;
  }
  if (col.valid.empty()) col.valid.assign(row, 1);
  col.valid.push_back(0);
}

void PopValue(Column& col) {
  switch (col.field.type) {
    case Type::kString:
      col.strings.pop_back();
      break;
    case Type::kFloat64:
      col.doubles.pop_back();
      break;
    case Type::kInt64:
    case Type::kBool:
    case Type::kTimestamp:
      col.ints.pop_back();
      break;
  }
  if (!col.valid.empty()) col.valid.pop_back();
}

void Reserve(Column& col, size_t rows) {
  switch (col.field.type) {
    case Type::kString:
      col.strings.reserve(rows);
      break;
    case Type::kFloat64:
      col.doubles.reserve(rows);
      break;
    case Type::kInt64:
    case Type::kBool:
    case Type::kTimestamp:
      col.ints.reserve(rows);
      break;
  }
}

void TypeCandidates::Observe(std::string_view raw, bool padded) {
  if (raw.empty()) {
    any_empty_ = true;
    return;
  }
  any_value_ = true;
  if (!(can_bool_ || can_int_ || can_float_ || can_timestamp_)) return;  // a string already
  const std::string_view v = Trim(raw);
  int64_t i64;
  double f64, denominator;
  if (can_bool_ && !ParseBool(v, /*digits=*/false, &i64)) can_bool_ = false;
  if (can_int_ || can_float_) {
    switch (padded ? ParseIntPadded(v, &i64) : ParseInt(v, &i64)) {
      case IntParse::kOk:
        break;
      case IntParse::kNotInteger:
        can_int_ = false;
        // Only whether it parses matters here: ParseFloatParts skips the division.
        if (can_float_ && !(padded ? ParseFloatParts(v, &f64, &denominator) : ParseFloat(v, &f64))) {
          can_float_ = false;
        }
        break;
      case IntParse::kOutOfRange:  // keep every digit: a string, not a rounded float64
        can_int_ = can_float_ = can_timestamp_ = false;
        break;
    }
  }
  if (can_timestamp_ && !timestamps_.Parse(v, &i64)) can_timestamp_ = false;
}

Field TypeCandidates::ToField(std::string name) const {
  Field field{std::move(name), Type::kString, any_empty_ || !any_value_};
  if (!any_value_) return field;
  if (can_bool_) {
    field.type = Type::kBool;
  } else if (can_int_) {
    field.type = Type::kInt64;
  } else if (can_float_) {
    field.type = Type::kFloat64;
  } else if (can_timestamp_) {
    field.type = Type::kTimestamp;
  }
  return field;
}

CsvSplitter::CsvSplitter(char delimiter) : delimiter_(delimiter) {
  std::memset(stops_, 0, sizeof(stops_));
  stops_[static_cast<unsigned char>(delimiter)] = 1;
  stops_[static_cast<unsigned char>('\n')] = 1;
  stops_[static_cast<unsigned char>('\r')] = 1;
}

bool CsvSplitter::NextPlain(std::vector<std::string_view>& fields, size_t base, SplitStatus* status) {
#if defined(__SSE2__)
  const char* p = text_.data();
  const size_t n = text_.size();
  const size_t start = pos_;
  if (p[start] == '"') return false;
  const __m128i delimiter = _mm_set1_epi8(delimiter_);
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i quote = _mm_set1_epi8('"');
  size_t field_start = start;
  int high = 0;  // bytes with bit 7 set (of the blocks scanned, so maybe past the record)
  for (size_t block = start; block + 16 <= n; block += 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + block));
    const auto delimiters = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, delimiter)));
    const auto quotes = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, quote)));
    unsigned stops = delimiters | static_cast<unsigned>(_mm_movemask_epi8(
                                      _mm_or_si128(_mm_cmpeq_epi8(bytes, lf), _mm_cmpeq_epi8(bytes, cr))));
    high |= _mm_movemask_epi8(bytes);
    while (stops != 0) {
      const unsigned bit = stops & (0u - stops);
      const size_t at = block + static_cast<size_t>(__builtin_ctz(stops));
      stops ^= bit;
      if ((delimiters & bit) != 0) {
        fields.emplace_back(p + field_start, at - field_start);
        field_start = at + 1;
        // A field that opens with a quote takes the general path.
        const unsigned next = (bit << 1) & 0xFFFF;
        if (next != 0) {
          if ((quotes & next) != 0) return false;
        } else if (field_start >= n || p[field_start] == '"') {
          return false;
        }
        continue;
      }
      size_t end;
      if (p[at] == '\n') {
        end = at + 1;
      } else {  // CR: a line end only in CRLF
        if (at + 1 >= n) return false;
        if (p[at + 1] != '\n') continue;
        end = at + 2;
      }
      fields.emplace_back(p + field_start, at - field_start);
      record_size_ = end - start;
      record_blank_ = fields.size() - base == 1 && fields[base].empty();
      pos_ = end;
      ++line_;
      *status = high != 0 && !IsValidUtf8(std::string_view(p + start, end - start))
                    ? SplitStatus::kInvalidUtf8
                    : SplitStatus::kRecord;
      return true;
    }
  }
#else
  (void)fields;
  (void)base;
  (void)status;
#endif
  return false;  // near the end of the text: the general path
}

SplitStatus CsvSplitter::NextAppend(std::vector<std::string_view>& fields) {
  const size_t base = fields.size();
  unescaped_used_ = 0;
  const char* p = text_.data();
  const size_t n = text_.size();
  const size_t start = pos_;
  record_line_ = line_;
  if (start >= n) return final_ ? SplitStatus::kEnd : SplitStatus::kNeedMore;
  if (SplitStatus status; NextPlain(fields, base, &status)) return status;
  fields.resize(base);
  size_t pos = start;
  int64_t line = line_;
  unsigned high = 0;  // the OR of the record's bytes: bit 7 set means UTF-8 to validate
  bool any_quoted = false;
  while (true) {
    std::string_view field;
    if (pos < n && p[pos] == '"') {
      any_quoted = true;
      const size_t field_start = ++pos;
      bool doubled_quotes = false;
      while (true) {
        if (pos >= n) {
          record_size_ = pos - start;
          return final_ ? SplitStatus::kUnterminatedQuote : SplitStatus::kNeedMore;
        }
        const char c = p[pos];
        if (c == '"') {
          if (pos + 1 >= n) {
            if (!final_) return SplitStatus::kNeedMore;  // the next byte may double it
            break;
          }
          if (p[pos + 1] == '"') {
            doubled_quotes = true;
            pos += 2;
            continue;
          }
          break;
        }
        if (c == '\n') ++line;
        high |= static_cast<unsigned char>(c);
        ++pos;
      }
      field = std::string_view(p + field_start, pos - field_start);
      ++pos;  // the closing quote
      if (doubled_quotes) {
        if (unescaped_used_ == unescaped_.size()) unescaped_.emplace_back();
        std::string& s = unescaped_[unescaped_used_++];
        s.clear();
        for (size_t i = 0; i < field.size(); ++i) {
          s += field[i];
          if (field[i] == '"') ++i;  // the second of a doubled quote
        }
        field = s;
      }
    } else {
      const size_t field_start = pos;
      while (pos < n) {
        const auto c = static_cast<unsigned char>(p[pos]);
        if (stops_[c]) {
          if (c != '\r') break;
          // A CR ends the record only as part of CRLF or at the end of the text.
          if (pos + 1 < n) {
            if (p[pos + 1] == '\n') break;
          } else {
            if (!final_) return SplitStatus::kNeedMore;
            break;
          }
        }
        high |= c;
        ++pos;
      }
      field = std::string_view(p + field_start, pos - field_start);
    }
    fields.push_back(field);

    if (pos >= n) {
      if (!final_) return SplitStatus::kNeedMore;
      break;
    }
    const char c = p[pos];
    if (c == delimiter_) {
      ++pos;
      continue;  // another field follows, even at the end of the text
    }
    if (c == '\n') {
      ++pos;
      ++line;
      break;
    }
    if (c == '\r') {
      if (pos + 1 >= n) {
        if (!final_) return SplitStatus::kNeedMore;
        ++pos;
        break;
      }
      if (p[pos + 1] == '\n') {
        pos += 2;
        ++line;
        break;
      }
    }
    // Only a closing quote can be followed by anything else.
    bad_char_ = c;
    bad_field_ = fields.size() - base;
    record_size_ = pos - start;
    return SplitStatus::kTextAfterQuote;
  }
  record_size_ = pos - start;
  record_blank_ = fields.size() - base == 1 && fields[base].empty() && !any_quoted;
  pos_ = pos;
  line_ = line;
  if ((high & 0x80) != 0 && !IsValidUtf8(std::string_view(p + start, pos - start))) {
    return SplitStatus::kInvalidUtf8;
  }
  return SplitStatus::kRecord;
}

std::string SplitErrorMessage(const CsvSplitter& sp, SplitStatus status, bool withhold) {
  const std::string line = Line(sp.record_line());
  switch (status) {
    case SplitStatus::kInvalidUtf8:
      return line + "invalid UTF-8";
    case SplitStatus::kUnterminatedQuote:
      return line + "unterminated quoted field";
    case SplitStatus::kTextAfterQuote: {
      const char c = sp.bad_char();
      const std::string what = withhold ? "text" : Quote(std::string_view(&c, 1));
      return line + "unexpected " + what + " after the closing quote of field " +
             std::to_string(sp.bad_field()) + (withhold ? " (value withheld)" : "");
    }
    case SplitStatus::kRecord:
    case SplitStatus::kNeedMore:
    case SplitStatus::kEnd:
      break;
  }
  return line + "malformed record";
}

Result<std::vector<std::string>> HeaderNames(const std::vector<std::string_view>& fields,
                                             const CsvSplitter& sp) {
  const std::string line = Line(sp.record_line());
  if (sp.record_blank()) return InvalidArgument(line + "empty header");
  std::vector<std::string> names;
  names.reserve(fields.size());
  std::unordered_map<std::string_view, size_t> seen;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].empty()) {
      return InvalidArgument(line + "empty header name in column " + std::to_string(i + 1));
    }
    if (!seen.emplace(fields[i], i).second) {
      return InvalidArgument(line + "duplicate column name " + Quote(fields[i]));
    }
    names.emplace_back(fields[i]);
  }
  return names;
}

}  // namespace csv_internal

namespace {

using namespace csv_internal;  // NOLINT(google-build-using-namespace): this file's own internals

constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";

// The whole of `text` to split, after a byte order mark.
CsvSplitter WholeTextSplitter(std::string_view text, char delimiter) {
  CsvSplitter sp(delimiter);
  sp.SetText(text, text.starts_with(kByteOrderMark) ? kByteOrderMark.size() : 0, /*final=*/true);
  return sp;
}

// The next record of the whole text: false at its end.
Result<bool> NextRecord(CsvSplitter& sp, std::vector<std::string_view>& fields) {
  const SplitStatus status = sp.Next(fields);
  switch (status) {
    case SplitStatus::kRecord:
      return true;
    case SplitStatus::kEnd:
    case SplitStatus::kNeedMore:  // not with final text
      return false;
    case SplitStatus::kInvalidUtf8:
    case SplitStatus::kUnterminatedQuote:
    case SplitStatus::kTextAfterQuote:
      break;
  }
  return InvalidArgument(SplitErrorMessage(sp, status));
}

Status CheckOptions(const CsvOptions& options) { return CheckDelimiter(options.delimiter); }

// Reads the next data row into `fields`. False at the end of the text. Skips
// blank lines when there is more than one column.
Result<bool> NextRow(CsvSplitter& sp, std::vector<std::string_view>& fields, size_t num_columns) {
  while (true) {
    TAKT_ASSIGN_OR_RETURN(bool more, NextRecord(sp, fields));
    if (!more) return false;
    if (fields.size() == num_columns) return true;
    if (num_columns > 1 && sp.record_blank()) continue;
    return InvalidArgument(RaggedRowMessage(sp.record_line(), fields.size(), num_columns));
  }
}

// Reads data rows (after the header) into `table`: field i of a row goes to
// column target[i]. Stops after `max_rows` rows unless it is 0.
Status ReadRows(CsvSplitter& sp, const std::vector<size_t>& target, size_t max_rows, Table& table) {
  std::vector<std::string_view> fields;
  size_t num_rows = 0;
  while (max_rows == 0 || num_rows < max_rows) {
    TAKT_ASSIGN_OR_RETURN(bool more, NextRow(sp, fields, target.size()));
    if (!more) break;
    for (size_t i = 0; i < fields.size(); ++i) {
      Column& col = table.columns[target[i]];
      if (!AppendValue(col, fields[i])) {
        const std::string where =
            "line " + std::to_string(sp.record_line()) + ", column " + col.field.name + ": ";
        if (fields[i].empty()) return InvalidArgument(where + "empty value in a non-nullable column");
        const Type type = col.field.type;
        const char* article = type == Type::kInt64 ? "an " : "a ";
        return InvalidArgument(where + Quote(fields[i]) + " is not " + article + std::string(TypeName(type)));
      }
    }
    ++num_rows;
  }
  return Ok();
}

// ---------------------------------------------------------------------------
// Writing.

void AppendCsvField(std::string& out, std::string_view v) {
  if (v.find_first_of(",\"\r\n") == std::string_view::npos) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

void AppendCsvValue(std::string& out, const Column& col, size_t row) {
  if (col.IsNull(row)) return;
  char buf[64];
  switch (col.field.type) {
    case Type::kString:
      AppendCsvField(out, col.strings[row]);
      return;
    case Type::kInt64: {
      auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), col.ints[row]);
      out.append(buf, ec == std::errc() ? end : buf);
      return;
    }
    case Type::kFloat64: {
      auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), col.doubles[row]);
      if (ec != std::errc()) return;
      const std::string_view text(buf, end - buf);
      out += text;
      // "3" would read back as an int64; "3.0" stays a float64. inf and nan have letters.
      if (text.find_first_not_of("-0123456789") == std::string_view::npos) out += ".0";
      return;
    }
    case Type::kBool:
      out += col.ints[row] != 0 ? "true" : "false";
      return;
    case Type::kTimestamp:
      out += FormatTimestamp(col.ints[row]);
      return;
  }
}

}  // namespace

Result<Table> ReadCsv(std::string_view text, const CsvOptions& options) {
  TAKT_RETURN_IF_ERROR(CheckOptions(options));
  // Two passes over the text rather than a copy of every cell: the first checks
  // the shape and infers types, the second converts straight into columns.
  CsvSplitter sp = WholeTextSplitter(text, options.delimiter);
  std::vector<std::string_view> fields;
  TAKT_ASSIGN_OR_RETURN(bool has_header, NextRecord(sp, fields));
  if (!has_header) return InvalidArgument("no header row");
  TAKT_ASSIGN_OR_RETURN(std::vector<std::string> names, HeaderNames(fields, sp));
  const size_t num_columns = names.size();
  std::vector<TypeCandidates> candidates(num_columns);
  size_t num_rows = 0;
  while (options.max_rows == 0 || num_rows < options.max_rows) {
    TAKT_ASSIGN_OR_RETURN(bool more, NextRow(sp, fields, num_columns));
    if (!more) break;
    for (size_t c = 0; c < num_columns; ++c) candidates[c].Observe(fields[c]);
    ++num_rows;
  }

  Table table;
  table.columns.resize(num_columns);
  std::vector<size_t> target(num_columns);
  for (size_t c = 0; c < num_columns; ++c) {
    table.columns[c].field = candidates[c].ToField(std::move(names[c]));
    Reserve(table.columns[c], num_rows);
    target[c] = c;
  }
  CsvSplitter second = WholeTextSplitter(text, options.delimiter);
  TAKT_ASSIGN_OR_RETURN(bool header_again, NextRecord(second, fields));
  if (!header_again) return Internal("CSV text changed between passes");
  if (num_rows > 0) {
    Status read = ReadRows(second, target, num_rows, table);
    if (!read) return Internal("reading inferred columns: " + read.error().message());
  }
  return table;
}

Result<Table> ReadCsvWithSchema(std::string_view text, const Schema& schema, const CsvOptions& options) {
  TAKT_RETURN_IF_ERROR(CheckOptions(options));
  for (size_t i = 0; i < schema.fields.size(); ++i) {
    const std::string& name = schema.fields[i].name;
    if (name.empty()) return InvalidArgument("schema field " + std::to_string(i + 1) + " has an empty name");
    if (schema.IndexOf(name) != static_cast<int>(i)) {
      return InvalidArgument("schema names column " + Quote(name) + " twice");
    }
  }
  CsvSplitter sp = WholeTextSplitter(text, options.delimiter);
  std::vector<std::string_view> fields;
  TAKT_ASSIGN_OR_RETURN(bool has_header, NextRecord(sp, fields));
  if (!has_header) return InvalidArgument("no header row");
  TAKT_ASSIGN_OR_RETURN(std::vector<std::string> names, HeaderNames(fields, sp));

  // Header position -> schema field.
  std::vector<size_t> target(names.size());
  std::vector<bool> present(schema.fields.size(), false);
  std::string unknown;
  for (size_t i = 0; i < names.size(); ++i) {
    const int index = schema.IndexOf(names[i]);
    if (index < 0) {
      unknown += (unknown.empty() ? "" : ", ") + Quote(names[i]);
      continue;
    }
    target[i] = static_cast<size_t>(index);
    present[index] = true;
  }
  std::string missing;
  for (size_t i = 0; i < schema.fields.size(); ++i) {
    if (!present[i]) missing += (missing.empty() ? "" : ", ") + Quote(schema.fields[i].name);
  }
  const std::string header_line = Line(sp.record_line());
  if (!unknown.empty()) return InvalidArgument(header_line + "columns not in the schema: " + unknown);
  if (!missing.empty()) return InvalidArgument(header_line + "columns missing from the header: " + missing);

  Table table;
  table.columns.resize(schema.fields.size());
  for (size_t i = 0; i < schema.fields.size(); ++i) table.columns[i].field = schema.fields[i];
  TAKT_RETURN_IF_ERROR(ReadRows(sp, target, options.max_rows, table));
  return table;
}

std::string WriteCsv(const Table& table) {
  std::string out;
  if (table.columns.empty()) return out;
  for (size_t c = 0; c < table.columns.size(); ++c) {
    if (c > 0) out += ',';
    AppendCsvField(out, table.columns[c].field.name);
  }
  out += '\n';
  const size_t rows = table.num_rows();
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < table.columns.size(); ++c) {
      if (c > 0) out += ',';
      const Column& col = table.columns[c];
      if (r < col.size()) AppendCsvValue(out, col, r);
    }
    out += '\n';
  }
  return out;
}

}  // namespace takt::frame
