// File: sandbox/log_lines.h
//
// Internal to the sandbox module: turns the bytes a step writes to one stream
// into sanitized log lines, keeping memory bounded however long a line is
// (only the first kKeptLineBytes of each line are kept; the rest is counted).
// Not thread-safe: one LineSplitter per stream, used by one thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace takt::sandbox::internal {

inline constexpr size_t kMaxLineBytes = 4096;    // of a sanitized line, "…" included
inline constexpr size_t kKeptLineBytes = 16384;  // raw bytes kept of a line (after its last "\r")

// SanitizeLine for a line whose text after its last carriage return is `text`
// (no "\r" or "\n" in it), `text_cut` when that text was longer than what was
// kept, and `line_bytes` the raw length of the whole line (for the binary
// placeholder).
std::string SanitizeText(std::string_view text, bool text_cut, size_t line_bytes, bool* was_binary);

// Splits a byte stream at "\n". A "\r" followed by anything but "\n" starts
// the line over (terminal semantics), so progress bars do not pile up.
class LineSplitter {
 public:
  // emit(sanitized_line, was_binary) for each complete line.
  using Emit = std::function<void(std::string_view line, bool was_binary)>;

  void Feed(std::string_view data, const Emit& emit);
  // The last line if the stream did not end with "\n".
  void Finish(const Emit& emit);

 private:
  void EmitLine(const Emit& emit);

  std::string text_;         // kept bytes of the current line since its last "\r"
  size_t text_bytes_ = 0;    // all bytes since its last "\r"
  size_t line_bytes_ = 0;    // all bytes of the current line
  bool pending_cr_ = false;  // the last byte was "\r"
};

}  // namespace takt::sandbox::internal
