#include "serving/json_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

namespace takt::serving {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Length of the well-formed UTF-8 sequence at p (lead byte >= 0x80), or 0.
size_t Utf8SequenceLength(const unsigned char* p, const unsigned char* end) {
  unsigned char c = p[0];
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlong forms
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (static_cast<size_t>(end - p) < n) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
  }
  return n;
}

std::string Describe(const char* p, const char* end) {
  if (p >= end) return "end of input";
  unsigned char c = static_cast<unsigned char>(*p);
  if (c >= 0x20 && c < 0x7F) return std::string("'") + static_cast<char>(c) + "'";
  static const char kHex[] = "0123456789abcdef";
  return std::string("byte 0x") + kHex[c >> 4] + kHex[c & 15];
}

}  // namespace

JsonReader::JsonReader(std::string_view text, int max_depth)
    : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()), max_depth_(max_depth) {}

JsonReader JsonReader::At(size_t offset, int depth) const {
  JsonReader r(std::string_view(begin_, static_cast<size_t>(end_ - begin_)), max_depth_);
  r.p_ = begin_ + std::min(offset, static_cast<size_t>(end_ - begin_));
  r.depth_ = depth;
  return r;
}

std::unexpected<Error> JsonReader::SyntaxErrorAt(size_t offset, std::string_view what) const {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset && begin_ + i < end_; ++i) {
    if (begin_[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return InvalidArgument("invalid JSON at line " + std::to_string(line) + ", column " +
                         std::to_string(column) + ": " + std::string(what));
}

std::unexpected<Error> JsonReader::SyntaxError(std::string_view what) const {
  return SyntaxErrorAt(offset(), what);
}

Result<JsonReader::Type> JsonReader::Peek() {
  SkipWhitespace();
  if (p_ < end_) {
    switch (*p_) {
      case '{':
        return Type::kObject;
      case '[':
        return Type::kArray;
      case '"':
        return Type::kString;
      case 't':
      case 'f':
        return Type::kBool;
      case 'n':
        return Type::kNull;
      case '-':
      case '0':
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7':
      case '8':
      case '9':
        return Type::kNumber;
      default:
        break;
    }
  }
  return SyntaxError("expected a value, found " + Describe(p_, end_));
}

Status JsonReader::EnterContainer(char open) {
  SkipWhitespace();
  if (p_ >= end_ || *p_ != open) {
    return SyntaxError(std::string("expected '") + open + "', found " + Describe(p_, end_));
  }
  if (depth_ >= max_depth_) {
    return SyntaxError("nesting deeper than " + std::to_string(max_depth_) + " levels");
  }
  ++p_;
  ++depth_;
  first_ = true;
  return Ok();
}

Status JsonReader::EnterObject() { return EnterContainer('{'); }
Status JsonReader::EnterArray() { return EnterContainer('['); }

Result<bool> JsonReader::NextIn(char close, const char* expected) {
  SkipWhitespace();
  if (p_ < end_ && *p_ == close) {
    ++p_;
    --depth_;
    first_ = false;
    return false;
  }
  if (first_) {
    first_ = false;
    return true;
  }
  if (p_ < end_ && *p_ == ',') {
    ++p_;
    SkipWhitespace();
    if (p_ < end_ && *p_ == close) return SyntaxError("trailing comma");
    return true;
  }
  return SyntaxError(std::string(expected) + ", found " + Describe(p_, end_));
}

Result<bool> JsonReader::NextElement() { return NextIn(']', "expected ',' or ']'"); }

Result<bool> JsonReader::NextMember(std::string_view* key) {
  TAKT_ASSIGN_OR_RETURN(bool more, NextIn('}', "expected ',' or '}'"));
  if (!more) return false;
  SkipWhitespace();
  if (p_ >= end_ || *p_ != '"') return SyntaxError("expected a string key, found " + Describe(p_, end_));
  TAKT_RETURN_IF_ERROR(ScanString(&key_buf_, key));
  SkipWhitespace();
  if (p_ >= end_ || *p_ != ':') return SyntaxError("expected ':', found " + Describe(p_, end_));
  ++p_;
  return true;
}

// p_ is at the opening quote. Sets *view to the string's content: a view into
// the input when it holds no escapes, else into *out.
Status JsonReader::ScanString(std::string* out, std::string_view* view) {
  const char* start = ++p_;
  bool copying = false;
  while (true) {
    // Fast path: plain ASCII.
    const char* run = p_;
    while (p_ < end_) {
      unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
      ++p_;
    }
    if (copying) out->append(run, p_);
    if (p_ >= end_) return SyntaxErrorAt(static_cast<size_t>(start - 1 - begin_), "unterminated string");
    unsigned char c = static_cast<unsigned char>(*p_);
    if (c == '"') {
      *view = copying ? std::string_view(*out) : std::string_view(start, static_cast<size_t>(p_ - start));
      ++p_;
      return Ok();
    }
    if (c < 0x20) return SyntaxError("control character " + Describe(p_, end_) + " inside a string");
    if (c >= 0x80) {
      size_t n = Utf8SequenceLength(reinterpret_cast<const unsigned char*>(p_),
                                    reinterpret_cast<const unsigned char*>(end_));
      if (n == 0) return SyntaxError("invalid UTF-8 inside a string");
      if (copying) out->append(p_, n);
      p_ += n;
      continue;
    }
    // An escape.
    if (!copying) {
      out->assign(start, p_);
      copying = true;
    }
    if (end_ - p_ < 2) return SyntaxErrorAt(static_cast<size_t>(start - 1 - begin_), "unterminated string");
    char e = p_[1];
    const char* escape_at = p_;
    p_ += 2;
    switch (e) {
      case '"':
        *out += '"';
        break;
      case '\\':
        *out += '\\';
        break;
      case '/':
        *out += '/';
        break;
      case 'b':
        *out += '\b';
        break;
      case 'f':
        *out += '\f';
        break;
      case 'n':
        *out += '\n';
        break;
      case 'r':
        *out += '\r';
        break;
      case 't':
        *out += '\t';
        break;
      case 'u': {
        auto hex4 = [&](uint32_t* cp) -> bool {
          if (end_ - p_ < 4) return false;
          uint32_t v = 0;
          for (int i = 0; i < 4; ++i) {
            int h = HexValue(p_[i]);
            if (h < 0) return false;
            v = (v << 4) | static_cast<uint32_t>(h);
          }
          p_ += 4;
          *cp = v;
          return true;
        };
        uint32_t cp = 0;
        if (!hex4(&cp)) return SyntaxErrorAt(static_cast<size_t>(escape_at - begin_), "bad \\u escape");
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return SyntaxErrorAt(static_cast<size_t>(escape_at - begin_), "lone low surrogate in \\u escape");
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          uint32_t lo = 0;
          if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') {
            return SyntaxErrorAt(static_cast<size_t>(escape_at - begin_),
                                 "high surrogate in \\u escape not followed by a low one");
          }
          p_ += 2;
          if (!hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) {
            return SyntaxErrorAt(static_cast<size_t>(escape_at - begin_),
                                 "high surrogate in \\u escape not followed by a low one");
          }
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        AppendUtf8(*out, cp);
        break;
      }
      default:
        return SyntaxErrorAt(static_cast<size_t>(escape_at - begin_),
                             "invalid escape '\\" + std::string(1, e) + "' in a string");
    }
  }
}

Result<std::string_view> JsonReader::ReadString() {
  SkipWhitespace();
  if (p_ >= end_ || *p_ != '"') return SyntaxError("expected a string, found " + Describe(p_, end_));
  std::string_view view;
  TAKT_RETURN_IF_ERROR(ScanString(&value_buf_, &view));
  return view;
}

Result<std::string_view> JsonReader::ReadNumberText() {
  SkipWhitespace();
  const char* start = p_;
  if (p_ < end_ && *p_ == '-') ++p_;
  if (p_ >= end_ || !IsDigit(*p_)) return SyntaxError("expected a digit, found " + Describe(p_, end_));
  if (*p_ == '0') {
    ++p_;
  } else {
    while (p_ < end_ && IsDigit(*p_)) ++p_;
  }
  if (p_ < end_ && *p_ == '.') {
    ++p_;
    if (p_ >= end_ || !IsDigit(*p_)) {
      return SyntaxError("expected a digit after '.', found " + Describe(p_, end_));
    }
    while (p_ < end_ && IsDigit(*p_)) ++p_;
  }
  if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
    ++p_;
    if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
    if (p_ >= end_ || !IsDigit(*p_)) {
      return SyntaxError("expected a digit in the exponent, found " + Describe(p_, end_));
    }
    while (p_ < end_ && IsDigit(*p_)) ++p_;
  }
  if (p_ < end_ && IsDigit(*p_)) return SyntaxError("leading zeros are not allowed");
  return std::string_view(start, static_cast<size_t>(p_ - start));
}

Status JsonReader::ExpectLiteral(std::string_view word) {
  if (static_cast<size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word) {
    return SyntaxError("expected a value, found " + Describe(p_, end_));
  }
  p_ += word.size();
  return Ok();
}

Result<bool> JsonReader::ReadBool() {
  SkipWhitespace();
  if (p_ < end_ && *p_ == 't') {
    TAKT_RETURN_IF_ERROR(ExpectLiteral("true"));
    return true;
  }
  if (p_ < end_ && *p_ == 'f') {
    TAKT_RETURN_IF_ERROR(ExpectLiteral("false"));
    return false;
  }
  return SyntaxError("expected true or false, found " + Describe(p_, end_));
}

Status JsonReader::ReadNull() {
  SkipWhitespace();
  return ExpectLiteral("null");
}

Status JsonReader::Skip() {
  TAKT_ASSIGN_OR_RETURN(Type type, Peek());
  switch (type) {
    case Type::kObject: {
      TAKT_RETURN_IF_ERROR(EnterObject());
      std::string_view key;
      while (true) {
        TAKT_ASSIGN_OR_RETURN(bool more, NextMember(&key));
        if (!more) break;
        TAKT_RETURN_IF_ERROR(Skip());
      }
      return Ok();
    }
    case Type::kArray: {
      TAKT_RETURN_IF_ERROR(EnterArray());
      while (true) {
        TAKT_ASSIGN_OR_RETURN(bool more, NextElement());
        if (!more) break;
        TAKT_RETURN_IF_ERROR(Skip());
      }
      return Ok();
    }
    case Type::kString: {
      std::string_view ignored;
      return ScanString(&value_buf_, &ignored);
    }
    case Type::kNumber: {
      TAKT_ASSIGN_OR_RETURN(std::string_view ignored, ReadNumberText());
      (void)ignored;
      return Ok();
    }
    case Type::kBool: {
      TAKT_ASSIGN_OR_RETURN(bool ignored, ReadBool());
      (void)ignored;
      return Ok();
    }
    case Type::kNull:
      return ReadNull();
  }
  return Ok();
}

Status JsonReader::Finish() {
  SkipWhitespace();
  if (p_ != end_) return SyntaxError("trailing characters after the JSON value: " + Describe(p_, end_));
  return Ok();
}

void AppendJsonString(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

void AppendFloat(std::string& out, float v) {
  char buf[32];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec == std::errc()) out.append(buf, ptr);
}

void AppendJsonFloat(std::string& out, float v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  AppendFloat(out, v);
}

namespace {

// Clinger's fast path: a plain decimal of at most 7 digits ("-12.345") is
// m / 10^k with m < 2^24 and 10^k (k <= 7) both exact floats, so one float
// division gives the correctly rounded result, as from_chars would.
bool ParseShortDecimal(const char* p, const char* end, float* out) {
  static constexpr float kPow10[] = {1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f, 1e6f, 1e7f};
  bool negative = false;
  if (p < end && *p == '-') {
    negative = true;
    ++p;
  }
  uint32_t m = 0;
  int digits = 0, fraction = 0;
  const char* int_start = p;
  while (p < end && IsDigit(*p)) {
    m = m * 10 + static_cast<uint32_t>(*p++ - '0');
    if (++digits > 7) return false;
  }
  if (p == int_start) return false;
  if (p < end && *p == '.') {
    const char* frac_start = ++p;
    while (p < end && IsDigit(*p)) {
      m = m * 10 + static_cast<uint32_t>(*p++ - '0');
      if (++digits > 7) return false;
    }
    fraction = static_cast<int>(p - frac_start);
    if (fraction == 0) return false;
  }
  if (p != end) return false;
  float v = static_cast<float>(m) / kPow10[fraction];
  *out = negative ? -v : v;
  return true;
}

}  // namespace

FloatParse ParseFloat(std::string_view text, float* out) {
  const char* first = text.data();
  const char* last = first + text.size();
  if (ParseShortDecimal(first, last, out)) return FloatParse::kOk;
  auto [ptr, ec] = std::from_chars(first, last, *out);
  if (ec == std::errc::result_out_of_range) {
    // Overflow or underflow: tell them apart through double.
    double d = 0;
    auto [dptr, dec] = std::from_chars(first, last, d);
    if (dptr != last) return FloatParse::kNotANumber;
    if (dec == std::errc::result_out_of_range) {
      // Beyond double: an underflow if the exponent is negative.
      bool negative_exponent = false;
      for (const char* q = first; q < last; ++q) {
        if ((*q == 'e' || *q == 'E') && q + 1 < last && q[1] == '-') negative_exponent = true;
      }
      if (!negative_exponent) return FloatParse::kNotFinite;
      *out = (first < last && *first == '-') ? -0.0f : 0.0f;
      return FloatParse::kOk;
    }
    if (std::fabs(d) > static_cast<double>(std::numeric_limits<float>::max())) return FloatParse::kNotFinite;
    *out = static_cast<float>(d);
    return FloatParse::kOk;
  }
  if (ec != std::errc() || ptr != last) return FloatParse::kNotANumber;
  if (!std::isfinite(*out)) return FloatParse::kNotFinite;
  return FloatParse::kOk;
}

}  // namespace takt::serving
