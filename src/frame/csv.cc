#include "frame/csv.h"

#include <charconv>
#include <deque>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace takt::frame {
namespace {

// ---------------------------------------------------------------------------
// Text helpers.

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

std::string_view Trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
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

// true/false in any case; with `digits` also 1/0.
bool ParseBool(std::string_view v, bool digits, int64_t* out) {
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
std::string_view StripPlus(std::string_view v) {
  if (v.size() >= 2 && v[0] == '+' && v[1] != '-' && v[1] != '+') v.remove_prefix(1);
  return v;
}

enum class IntParse { kOk, kNotInteger, kOutOfRange };

IntParse ParseInt(std::string_view v, int64_t* out) {
  v = StripPlus(v);
  const char* end = v.data() + v.size();
  auto [ptr, ec] = std::from_chars(v.data(), end, *out);
  if (ptr != end || v.empty()) return IntParse::kNotInteger;
  if (ec == std::errc::result_out_of_range) return IntParse::kOutOfRange;
  return ec == std::errc() ? IntParse::kOk : IntParse::kNotInteger;
}

bool ParseFloat(std::string_view v, double* out) {
  v = StripPlus(v);
  const char* end = v.data() + v.size();
  auto [ptr, ec] = std::from_chars(v.data(), end, *out, std::chars_format::general);
  return ec == std::errc() && ptr == end && !v.empty();
}

// A value quoted for an error message, cut short (at a UTF-8 boundary) if long.
std::string Quote(std::string_view v) {
  constexpr size_t kMax = 64;
  std::string out = "'";
  if (v.size() <= kMax) {
    out += v;
  } else {
    size_t cut = kMax;
    while (cut > 0 && (static_cast<unsigned char>(v[cut]) & 0xC0) == 0x80) --cut;
    out += v.substr(0, cut);
    out += "...";
  }
  out += "'";
  return out;
}

std::string Line(int64_t line) { return "line " + std::to_string(line) + ": "; }

// ---------------------------------------------------------------------------
// Splitting: one pass over the bytes, yielding records as views into the text.

class CsvSplitter {
 public:
  CsvSplitter(std::string_view text, char delimiter) : text_(text), delimiter_(delimiter) {
    if (text_.starts_with("\xEF\xBB\xBF")) pos_ = 3;  // UTF-8 byte order mark
  }

  // Reads the next record into `fields`: views into the text, or into storage
  // this splitter owns for quoted fields with doubled quotes (valid until the
  // next call). False at the end of the text.
  Result<bool> Next(std::vector<std::string_view>& fields);

  // The physical line (1-based) where the last record started.
  int64_t record_line() const { return record_line_; }
  // Whether the last record was an empty line.
  bool record_blank() const { return record_blank_; }

 private:
  std::string_view text_;
  char delimiter_;
  size_t pos_ = 0;
  int64_t line_ = 1;
  int64_t record_line_ = 0;
  bool record_blank_ = false;
  // Unescaped quoted fields of the current record; a deque so that growing it
  // leaves earlier strings (and views of them) in place. Reused across records.
  std::deque<std::string> unescaped_;
  size_t unescaped_used_ = 0;
};

Result<bool> CsvSplitter::Next(std::vector<std::string_view>& fields) {
  fields.clear();
  unescaped_used_ = 0;
  const char* p = text_.data();
  const size_t n = text_.size();
  if (pos_ >= n) return false;
  record_line_ = line_;
  const size_t record_start = pos_;
  bool high_bytes = false;  // seen a non-ASCII byte: validate UTF-8 at the end
  bool any_quoted = false;
  while (true) {
    std::string_view field;
    bool quoted = pos_ < n && p[pos_] == '"';
    if (quoted) {
      any_quoted = true;
      const size_t start = ++pos_;
      bool doubled_quotes = false;
      while (true) {
        if (pos_ >= n) return InvalidArgument(Line(record_line_) + "unterminated quoted field");
        const char c = p[pos_];
        if (c == '"') {
          if (pos_ + 1 < n && p[pos_ + 1] == '"') {
            doubled_quotes = true;
            pos_ += 2;
            continue;
          }
          break;
        }
        if (c == '\n') ++line_;
        high_bytes |= static_cast<unsigned char>(c) >= 0x80;
        ++pos_;
      }
      field = text_.substr(start, pos_ - start);
      ++pos_;  // the closing quote
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
      const size_t start = pos_;
      while (pos_ < n) {
        const char c = p[pos_];
        if (c == delimiter_ || c == '\n') break;
        // A CR ends the record only as part of CRLF or at the end of the text.
        if (c == '\r' && (pos_ + 1 == n || p[pos_ + 1] == '\n')) break;
        high_bytes |= static_cast<unsigned char>(c) >= 0x80;
        ++pos_;
      }
      field = text_.substr(start, pos_ - start);
    }
    fields.push_back(field);

    if (pos_ >= n) break;
    const char c = p[pos_];
    if (c == delimiter_) {
      ++pos_;
      continue;  // another field follows, even at the end of the text
    }
    if (c == '\r' && (pos_ + 1 == n || p[pos_ + 1] == '\n')) ++pos_;
    if (pos_ < n && p[pos_] == '\n') {
      ++pos_;
      ++line_;
    } else if (pos_ < n) {
      return InvalidArgument(Line(record_line_) + "unexpected " + Quote(std::string_view(p + pos_, 1)) +
                             " after the closing quote of field " + std::to_string(fields.size()));
    }
    break;
  }
  if (high_bytes && !IsValidUtf8(text_.substr(record_start, pos_ - record_start))) {
    return InvalidArgument(Line(record_line_) + "invalid UTF-8");
  }
  record_blank_ = fields.size() == 1 && fields[0].empty() && !any_quoted;
  return true;
}

// ---------------------------------------------------------------------------
// Values.

// Appends the CSV value `raw` to `col`. False if it does not fit the column's
// type, or is empty (null) in a non-nullable column.
bool AppendValue(Column& col, std::string_view raw) {
  const Type type = col.field.type;
  if (raw.empty()) {
    if (!col.field.nullable) return false;
    const size_t row = col.size();
    switch (type) {
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
    return true;
  }
  switch (type) {
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

// What a column's values seen so far allow it to be.
class TypeCandidates {
 public:
  void Observe(std::string_view raw) {
    if (raw.empty()) {
      any_empty_ = true;
      return;
    }
    any_value_ = true;
    if (!(can_bool_ || can_int_ || can_float_ || can_timestamp_)) return;  // a string already
    const std::string_view v = Trim(raw);
    int64_t i64;
    double f64;
    if (can_bool_ && !ParseBool(v, /*digits=*/false, &i64)) can_bool_ = false;
    if (can_int_ || can_float_) {
      switch (ParseInt(v, &i64)) {
        case IntParse::kOk:
          break;
        case IntParse::kNotInteger:
          can_int_ = false;
          if (can_float_ && !ParseFloat(v, &f64)) can_float_ = false;
          break;
        case IntParse::kOutOfRange:  // keep every digit: a string, not a rounded float64
          can_int_ = can_float_ = can_timestamp_ = false;
          break;
      }
    }
    if (can_timestamp_ && !ParseTimestamp(v)) can_timestamp_ = false;
  }

  // The narrowest type that fits every non-empty value observed.
  Field ToField(std::string name) const {
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

 private:
  bool can_bool_ = true, can_int_ = true, can_float_ = true, can_timestamp_ = true;
  bool any_value_ = false, any_empty_ = false;
};

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

Status CheckOptions(const CsvOptions& options) {
  const char d = options.delimiter;
  if (d == '"' || d == '\n' || d == '\r' || static_cast<unsigned char>(d) >= 0x80) {
    return InvalidArgument("CSV delimiter " + Quote(std::string_view(&d, 1)) + " is not allowed");
  }
  return Ok();
}

std::string RaggedRow(int64_t line, size_t fields, size_t header) {
  return Line(line) + "has " + std::to_string(fields) + (fields == 1 ? " field" : " fields") +
         ", the header has " + std::to_string(header);
}

// Reads the next data row into `fields`. False at the end of the text. Skips
// blank lines when there is more than one column.
Result<bool> NextRow(CsvSplitter& sp, std::vector<std::string_view>& fields, size_t num_columns) {
  while (true) {
    TAKT_ASSIGN_OR_RETURN(bool more, sp.Next(fields));
    if (!more) return false;
    if (fields.size() == num_columns) return true;
    if (num_columns > 1 && sp.record_blank()) continue;
    return InvalidArgument(RaggedRow(sp.record_line(), fields.size(), num_columns));
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
  CsvSplitter sp(text, options.delimiter);
  std::vector<std::string_view> fields;
  TAKT_ASSIGN_OR_RETURN(bool has_header, sp.Next(fields));
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
  CsvSplitter second(text, options.delimiter);
  TAKT_ASSIGN_OR_RETURN(bool header_again, second.Next(fields));
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
  CsvSplitter sp(text, options.delimiter);
  std::vector<std::string_view> fields;
  TAKT_ASSIGN_OR_RETURN(bool has_header, sp.Next(fields));
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
