#include "sandbox/log_lines.h"

#include <algorithm>
#include <cstdint>

#include "sandbox/sandbox.h"

namespace takt::sandbox {
namespace internal {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::string_view kEllipsis = "\xE2\x80\xA6";     // U+2026

struct CodePoint {
  uint32_t value = 0;
  size_t length = 1;   // bytes consumed
  bool valid = false;  // a well-formed UTF-8 sequence (RFC 3629: no overlongs, surrogates, > U+10FFFF)
};

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

CodePoint Decode(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {b0, 1, true};
  size_t n = 0;
  uint32_t value = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
    value = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    value = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    value = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // > U+10FFFF
  } else {
    return {};
  }
  if (i + n > s.size()) return {};
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (k == 1 ? (b < lo || b > hi) : !IsContinuation(b)) return {};
    value = (value << 6) | (b & 0x3F);
  }
  return {value, n, true};
}

bool IsControl(uint32_t cp) { return (cp < 0x20 && cp != '\t') || cp == 0x7F || (cp >= 0x80 && cp < 0xA0); }

// The index just past the terminal escape sequence that starts with ESC at i.
size_t SkipEscape(std::string_view s, size_t i) {
  const size_t n = s.size();
  if (i + 1 >= n) return n;
  const auto c = static_cast<unsigned char>(s[i + 1]);
  if (c == '[') {  // CSI: parameters, intermediates, one final byte
    size_t j = i + 2;
    while (j < n && static_cast<unsigned char>(s[j]) >= 0x20 && static_cast<unsigned char>(s[j]) <= 0x3F) ++j;
    if (j < n && static_cast<unsigned char>(s[j]) >= 0x40 && static_cast<unsigned char>(s[j]) <= 0x7E) ++j;
    return j;
  }
  if (c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_') {  // OSC, DCS, ...: up to BEL or ESC '\'
    for (size_t j = i + 2; j < n; ++j) {
      if (s[j] == '\a') return j + 1;
      if (s[j] == '\x1b' && j + 1 < n && s[j + 1] == '\\') return j + 2;
    }
    return n;
  }
  size_t j = i + 1;  // ESC, intermediates 0x20-0x2F, one final byte 0x30-0x7E
  while (j < n && static_cast<unsigned char>(s[j]) >= 0x20 && static_cast<unsigned char>(s[j]) <= 0x2F) ++j;
  if (j < n && static_cast<unsigned char>(s[j]) >= 0x30 && static_cast<unsigned char>(s[j]) <= 0x7E) ++j;
  return j;
}

// Whether more than 30% of the (first kKeptLineBytes) bytes are invalid
// UTF-8 or control characters; ESC counts as text (colored output).
bool MostlyBinary(std::string_view s) {
  if (s.size() > kKeptLineBytes) s = s.substr(0, kKeptLineBytes);
  size_t bad = 0;
  for (size_t i = 0; i < s.size();) {
    const CodePoint cp = Decode(s, i);
    if (!cp.valid) {
      ++bad;
      ++i;
      continue;
    }
    if (IsControl(cp.value) && cp.value != 0x1B) bad += cp.length;
    i += cp.length;
  }
  return bad * 10 > s.size() * 3;
}

std::string BinaryPlaceholder(size_t bytes) {
  return "<binary output: " + std::to_string(bytes) + (bytes == 1 ? " byte>" : " bytes>");
}

}  // namespace

std::string SanitizeText(std::string_view text, bool text_cut, size_t line_bytes, bool* was_binary) {
  const bool binary = MostlyBinary(text);
  if (was_binary != nullptr) *was_binary = binary;
  if (binary) return BinaryPlaceholder(line_bytes);

  std::string out;
  out.reserve(std::min(text.size(), kMaxLineBytes + 4));
  bool cut = text_cut;
  for (size_t i = 0; i < text.size();) {
    if (out.size() > kMaxLineBytes) {
      cut = true;
      break;
    }
    const CodePoint cp = Decode(text, i);
    if (!cp.valid) {
      out += kReplacement;
      ++i;
      continue;
    }
    if (cp.value == 0x1B) {
      i = SkipEscape(text, i);
      continue;
    }
    if (!IsControl(cp.value)) out.append(text, i, cp.length);
    i += cp.length;
  }
  if (cut || out.size() > kMaxLineBytes) {
    size_t end = std::min(out.size(), kMaxLineBytes - kEllipsis.size());
    while (end > 0 && IsContinuation(static_cast<unsigned char>(out[end]))) --end;
    out.resize(end);
    out += kEllipsis;
  }
  return out;
}

void LineSplitter::Feed(std::string_view data, const Emit& emit) {
  for (const char c : data) {
    if (c == '\n') {
      EmitLine(emit);
      continue;
    }
    ++line_bytes_;
    if (c == '\r') {
      pending_cr_ = true;
      continue;
    }
    if (pending_cr_) {  // "\r" not followed by "\n": the line starts over
      text_.clear();
      text_bytes_ = 0;
      pending_cr_ = false;
    }
    if (text_.size() < kKeptLineBytes) text_.push_back(c);
    ++text_bytes_;
  }
}

void LineSplitter::Finish(const Emit& emit) {
  if (line_bytes_ > 0) EmitLine(emit);
}

void LineSplitter::EmitLine(const Emit& emit) {
  bool binary = false;
  const std::string line = SanitizeText(text_, text_bytes_ > text_.size(), line_bytes_, &binary);
  text_.clear();
  text_bytes_ = 0;
  line_bytes_ = 0;
  pending_cr_ = false;
  emit(line, binary);
}

}  // namespace internal

std::string SanitizeLine(std::string_view raw, bool* was_binary) {
  std::string_view text = raw;
  while (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  if (const size_t cr = text.rfind('\r'); cr != std::string_view::npos) text.remove_prefix(cr + 1);
  const bool cut = text.size() > internal::kKeptLineBytes;
  if (cut) text = text.substr(0, internal::kKeptLineBytes);
  return internal::SanitizeText(text, cut, raw.size(), was_binary);
}

}  // namespace takt::sandbox
