// File: core/time.h
//
// Wall-clock time in the forms takt stores and shows, and short random ids.
// A Clock can be replaced in tests (schedules, timeouts) by a simulated one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace takt {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMillis() const = 0;  // since the Unix epoch
};
Clock& RealClock();

// "2026-11-24T18:30:00.123Z"
std::string FormatIsoMillis(int64_t millis);
std::string NowIso();

// prefix + "-" + 12 random lowercase hex chars, e.g. "run-3fa9c2e01b7d". Not a secret.
std::string NewId(std::string_view prefix);

}  // namespace takt
