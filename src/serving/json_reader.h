// File: serving/json_reader.h
//
// A small strict pull reader for JSON (RFC 8259) on the inference hot path,
// plus the few writer helpers the renderers need. There is no DOM: the caller
// walks the document (EnterObject/NextMember, EnterArray/NextElement, Read*)
// and converts numbers straight from their text, so a one-row request costs
// no allocation beyond the caller's output buffers.
//
// Strictness: only the RFC grammar (no NaN/Infinity, comments, trailing
// commas, single quotes or leading zeros); strings must be valid UTF-8 with
// no raw control characters, and \u escapes must pair surrogates; nesting is
// limited (64 levels by default); Finish() rejects anything but whitespace
// after the value. Every error is InvalidArgument and names the position:
// "invalid JSON at line 1, column 18: expected ',' or ']'".
//
// Ownership: the reader views `text`, which must outlive it. Views returned by
// ReadString stay valid until the next ReadString; keys from NextMember until
// the next NextMember. Not thread-safe (one reader per request).
//
// Dependencies: the standard library and core/result.h only, so the fuzzer
// can build it alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace takt::serving {

class JsonReader {
 public:
  enum class Type { kObject, kArray, kString, kNumber, kBool, kNull };
  static constexpr int kDefaultMaxDepth = 64;

  explicit JsonReader(std::string_view text, int max_depth = kDefaultMaxDepth);

  // Skips whitespace and says which value starts here; a syntax error if none does.
  Result<Type> Peek();
  // Consumes '{' / '['. The first NextMember / NextElement call follows.
  Status EnterObject();
  Status EnterArray();
  // Moves to the next member of the object just entered: true with `*key`
  // set and the reader at the member's value (which the caller must read or
  // Skip), or false after consuming the closing '}'.
  Result<bool> NextMember(std::string_view* key);
  // The same for arrays: true at the next element, false after ']'.
  Result<bool> NextElement();

  Result<std::string_view> ReadString();
  // The text of a number, checked against the RFC grammar.
  Result<std::string_view> ReadNumberText();
  Result<bool> ReadBool();
  Status ReadNull();
  // Skips one value of any type (respecting the depth limit).
  Status Skip();
  // Succeeds if only whitespace remains.
  Status Finish();

  size_t offset() const { return static_cast<size_t>(p_ - begin_); }
  int depth() const { return depth_; }
  // A reader over the same text at `offset` (an earlier offset() of this one,
  // at a value) and container `depth`: to come back to a value skipped earlier.
  JsonReader At(size_t offset, int depth) const;
  // InvalidArgument "invalid JSON at line L, column C: <what>" for the current
  // position (or `offset`).
  std::unexpected<Error> SyntaxError(std::string_view what) const;
  std::unexpected<Error> SyntaxErrorAt(size_t offset, std::string_view what) const;

 private:
  void SkipWhitespace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  Status EnterContainer(char open);
  Result<bool> NextIn(char close, const char* expected);
  Status ScanString(std::string* out, std::string_view* view);
  Status ExpectLiteral(std::string_view word);

  const char* begin_;
  const char* p_;
  const char* end_;
  int depth_ = 0;
  int max_depth_;
  bool first_ = false;  // just entered a container: no comma before the next item
  std::string key_buf_;
  std::string value_buf_;
};

// Writers. JSON strings are quoted and escaped (control characters as \u00XX);
// floats are the shortest text that reads back as the same float (no
// locale), and NaN/infinity, which JSON cannot hold, are written as null.
void AppendJsonString(std::string& out, std::string_view s);
void AppendJsonFloat(std::string& out, float v);
// Shortest round-trip text of `v` (e.g. "0.1", "1e+30", "nan").
void AppendFloat(std::string& out, float v);

// Converts the text of a JSON number (from ReadNumberText) or of a CSV field to
// a float, which must consume all of `text`. kNotFinite: the value
// overflows float, or the text is nan/inf (which CSV writers emit); underflow
// rounds to 0 or a subnormal, as the nearest float.
enum class FloatParse { kOk, kNotANumber, kNotFinite };
FloatParse ParseFloat(std::string_view text, float* out);

}  // namespace takt::serving
