// File: sim/weld.h
//
// The welding-gun robot simulator behind `takt sim weld`, the demo and the
// tests: hourly telemetry of robots in several plants, with two failure modes
// whose precursors show as drifts, and the label `fails_within_24h`.
//
// What the data looks like (so that a model has something real to learn):
// - every robot has its own baselines, every plant its own offsets, time zone
//   and weather; load follows the shifts (early, late, night, weekend);
// - motor current and temperature, weld current and voltage, electrode force
//   and cycle time carry sensor noise, a wearing electrode tip (reset at each
//   tip dress), part-program changes, a slow wander of each robot's baselines,
//   plant heat spells and rare single-hour spikes;
// - motor degradation makes motor current and temperature creep up and the
//   cycle lengthen over 2-5 days; a weld-circuit fault makes weld current drop,
//   voltage rise and both get noisier over 1-3 days; the drift accelerates
//   towards the failure, after which the robot is repaired and carries on;
// - some failures come almost without warning, and some drifts fade out
//   without a failure, so a good model is good but not perfect.
// A single reading is too noisy to tell; per-robot rolling windows reveal the
// drifts. Rows are hourly, ordered by time then robot; `fails_within_24h` is 1
// for the 24 hours before a failure (about 5 % of rows).
//
// Deterministic: the same options give the same bytes (own PRNG, no std::
// distributions, values rounded to 2-3 decimals, so a last-bit difference in
// another platform's libm could only very rarely show). Every robot draws
// from its own random stream, so adding robots does not change the existing
// robots' data. Free functions, no shared state: safe to call from several
// threads at once.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string_view>

#include "core/result.h"
#include "frame/table.h"

namespace takt::sim {

struct WeldOptions {
  int robots = 200;
  int plants = 3;
  int days = 30;
  uint64_t seed = 7;
  int64_t start = 1767225600;  // 2026-01-01T00:00:00Z, seconds since the epoch
};

// The columns, in order. `timestamp` is ISO 8601 UTC; `plant` and
// `robot_serial` (PII-like: "WG-0007-3F9A") are strings; `tip_dress_count`
// (parts welded since the last tip dress) and the label are integers; the rest
// are float64.
inline constexpr std::array<std::string_view, 11> kWeldColumns = {
    "timestamp",    "plant",           "robot_serial",    "motor_current_a",
    "motor_temp_c", "weld_current_ka", "weld_voltage_v",  "electrode_force_kn",
    "cycle_time_s", "tip_dress_count", "fails_within_24h"};
inline constexpr std::string_view kWeldLabel = "fails_within_24h";

// robots 1..100000, plants 1..robots, days 1..3650; InvalidArgument names the option.
Status ValidateWeldOptions(const WeldOptions& options);

// Streams the telemetry as CSV (header first) to `out`, calling
// progress(done_rows, total_rows) about every 10,000 rows and once at the end.
// A failing stream gives Internal.
Status WriteWeldCsv(const WeldOptions& options, std::ostream& out,
                    const std::function<void(uint64_t, uint64_t)>& progress = {});

// The same data as a Table (timestamp typed kTimestamp; values equal to what
// the CSV holds), for tests and small runs: at most 5,000,000 rows.
Result<frame::Table> GenerateWeld(const WeldOptions& options);

}  // namespace takt::sim
