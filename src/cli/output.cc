#include "cli/output.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace takt::cli {
namespace {

// Display width of UTF-8 text (code points; good enough for tables).
size_t Width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s) w += (c & 0xC0) != 0x80;
  return w;
}

}  // namespace

void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size());
  for (size_t i = 0; i < header.size(); ++i) widths[i] = Width(header[i]);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < widths.size(); ++i) widths[i] = std::max(widths[i], Width(r[i]));
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < widths.size(); ++i) {
      std::string cell = i < cells.size() ? cells[i] : "";
      out += cell;
      if (i + 1 < widths.size()) out += std::string(widths[i] - Width(cell) + 2, ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
  if (rows.empty()) std::cout << "(none)\n";
}

Progress::Progress(std::string label) : label_(std::move(label)), tty_(::isatty(STDERR_FILENO) == 1) {}

void Progress::Update(uint64_t done, uint64_t total) {
  if (total == 0) return;
  int percent = static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total));
  percent = std::clamp(percent, 0, 100);
  if (tty_) {
    if (percent == last_percent_) return;
    last_percent_ = percent;
    int filled = percent * 30 / 100;
    std::fprintf(stderr, "\r%s [%s%s] %3d%%", label_.c_str(), std::string(filled, '#').c_str(),
                 std::string(30 - filled, '.').c_str(), percent);
    std::fflush(stderr);
  } else {
    int quarter = percent / 25;
    if (quarter == last_quarter_) return;
    last_quarter_ = quarter;
    std::fprintf(stderr, "%s %d%%\n", label_.c_str(), quarter * 25);
  }
}

void Progress::Finish(const std::string& summary) {
  if (tty_) std::fprintf(stderr, "\r\033[K");
  if (!summary.empty()) std::fprintf(stderr, "%s %s\n", label_.c_str(), summary.c_str());
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace takt::cli
