// File: cli/output.h
//
// How the CLI shows things: aligned tables for people, JSON for programs
// (`-o json`), and progress bars on stderr for long work.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace takt::cli {

// Prints rows under a header, columns padded to their widest cell.
void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

// A one-line progress bar on stderr: redrawn in place on a terminal, a line
// every 25 % otherwise (so logs of non-interactive runs stay short).
class Progress {
 public:
  explicit Progress(std::string label);
  void Update(uint64_t done, uint64_t total);
  void Finish(const std::string& summary);

 private:
  std::string label_;
  bool tty_;
  int last_quarter_ = -1;
  int last_percent_ = -1;
};

std::string HumanBytes(uint64_t bytes);

}  // namespace takt::cli
