// File: ml/features.h
//
// Feature engineering for time series of entities (robots, machines, lines):
// per-entity rolling windows over the current and past rows, and the latest
// row per entity for scoring "now". The `features` step of a pipeline and the
// batch and online scoring paths call the same code, so training and serving
// see the same features.
//
// Pure functions of their arguments: safe to call from many threads at once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "frame/table.h"

namespace takt::ml {

struct FeatureSpec {
  std::string entity_column = "robot_serial";
  std::string time_column = "timestamp";
  // Numeric columns to aggregate; empty = every numeric column (int64, float64,
  // bool) except the entity, time, label and keep columns.
  std::vector<std::string> columns;
  std::vector<int> windows = {6, 24};     // in rows (hourly data: hours)
  std::string label_column;               // kept as-is if non-empty
  std::vector<std::string> keep_columns;  // passed through (e.g. plant, robot_serial, timestamp)
};

// Per entity, ordered by time: for each column c, the current value `c`, then
// for each window w: c_mean_<w>, c_std_<w> (population), c_min_<w>, c_max_<w>,
// c_slope_<w> (least-squares slope per row over the window) and c_delta_<w>
// (current value minus the window mean).
//
// A window holds the current row and up to w-1 rows before it of the same
// entity; never a later row (no look-ahead). At an entity's start the window
// is shorter: with one value std and slope are 0. Null values are left out of
// a window's statistics (a null current value gives NaN for `c` and c_delta);
// a window without values gives NaN.
//
// Output rows are the input rows sorted by (entity, time), stable for equal
// keys; columns are keep_columns (any type, as given), then the label, then
// the float64 features in the order above. The time column may be timestamp,
// int64, float64 or ISO 8601 text.
//
// Errors (InvalidArgument) name the problem: a missing entity, time, label,
// keep or feature column, a non-numeric feature column, a null entity or time,
// a window < 1, or an output name used twice.
Result<frame::Table> ComputeRollingFeatures(const frame::Table& input, const FeatureSpec& spec);

// The latest row (largest time; on ties the last one) of each entity, ordered
// by entity: the rows to score "now". Every column is kept.
Result<frame::Table> LatestPerEntity(const frame::Table& features, std::string_view entity_column,
                                     std::string_view time_column);

}  // namespace takt::ml
