// File: core/cron.h
//
// Cron expressions for scheduled work (ingest, retraining, monitors), in UTC.
//
//   minute hour day-of-month month day-of-week
//     0-59   0-23     1-31     1-12     0-7 (0 and 7 are Sunday)
//
// Each field is `*`, a number, a range `a-b`, a list `a,b,c`, or a step over
// `*`, a range or a start (`*/15`, `10-50/20`, `5/15` = 5-59/15). Months may be
// written JAN-DEC and days SUN-SAT (case-insensitive). When both
// day-of-month and day-of-week are restricted, a day matches if either does;
// a field that starts with `*` (including `*/2`) counts as unrestricted, as in
// Vixie cron. Macros: @hourly, @daily (@midnight), @weekly, @monthly, @yearly
// (@annually).
//
// Thread safety: a CronSchedule is an immutable value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace takt {

class CronSchedule {
 public:
  // InvalidArgument naming the field and why: "cron: day-of-month: 32 is out of range 1-31".
  static Result<CronSchedule> Parse(std::string_view expression);

  // The first time strictly after `after` (seconds since the Unix epoch, UTC)
  // that matches, at a whole minute. Searches about five years ahead, then
  // FailedPrecondition (e.g. "0 0 30 2 *" never matches). InvalidArgument if
  // `after` is outside the years 1 to 9999.
  Result<int64_t> Next(int64_t after) const;

  // As given to Parse.
  const std::string& expression() const { return expression_; }

 private:
  CronSchedule() = default;

  std::string expression_;
  uint64_t minutes_ = 0;   // bit m for minute m
  uint32_t hours_ = 0;     // bit h
  uint32_t days_ = 0;      // bit d for day-of-month d (1-31)
  uint32_t months_ = 0;    // bit m for month m (1-12)
  uint32_t weekdays_ = 0;  // bit w, 0 = Sunday
  bool any_day_of_month_ = false;
  bool any_day_of_week_ = false;
};

}  // namespace takt
