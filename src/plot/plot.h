// File: plot/plot.h
//
// Charts for reports: line charts (training curves, e.g. train and holdout
// logloss per boosting round) and grouped bar charts (run comparisons, e.g.
// auc and pr_auc of three runs), encoded as PNG or SVG from the same drawing
// code.
//
//   plot::LineChart chart{.title = "logloss", .x_label = "round", .y_label = "logloss"};
//   chart.series.push_back({"train", rounds, train_loss});
//   chart.series.push_back({"holdout", rounds, holdout_loss});
//   TAKT_ASSIGN_OR_RETURN(auto format, plot::FormatOf(path));
//   TAKT_ASSIGN_OR_RETURN(std::string image, plot::Render(chart, format));
//
// What a chart shows: the title, axis labels, "nice" ticks (1, 2, 5 x 10^k
// steps; powers of ten and their 2 and 5 multiples on a log axis) with light
// grid lines, and a legend when there is more than one series (more than one
// bar per group) placed in a corner free of data, or beside the plot when no
// corner is free. Colours come from a fixed colour-blind-safe palette
// (Okabe-Ito), in order, repeating after seven. NaN and infinite points are
// skipped and break the line; a point with no neighbour is drawn as a dot. A
// chart without a single finite value says "no data". Text that does not fit
// is cut with an ellipsis.
//
// Errors: InvalidArgument for bad input (naming the series, point, group or
// field), Internal if cairo fails. Thread safety: every function is pure;
// Render may run on several threads at once (each call has its own surface).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace takt::plot {

// One line: the points (x[i], y[i]) joined in the order given.
struct Series {
  std::string name;  // the legend entry; "series N" if empty
  std::vector<double> x, y;
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  bool log_y = false;
  int width = 800, height = 480;  // pixels (PNG) / points (SVG), each 100..8000
};

struct BarChart {
  std::string title, y_label;
  std::vector<std::string> groups;          // e.g. run ids (x axis)
  std::vector<std::string> bars;            // e.g. metric names (legend)
  std::vector<std::vector<double>> values;  // values[group][bar]; NaN = missing
  int width = 800, height = 480;
};

enum class Format { kPng, kSvg };

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

// From a file name (".png"/".svg", case-insensitive); InvalidArgument naming the file otherwise.
Result<Format> FormatOf(std::string_view path);

// The encoded image. InvalidArgument for x/y size mismatch, width/height
// outside 100..8000, values shape not matching groups x bars, log_y with a
// non-positive value (naming the series and point), text that is not UTF-8;
// Internal if cairo fails.
Result<std::string> Render(const LineChart& chart, Format format);
Result<std::string> Render(const BarChart& chart, Format format);

// "Nice" axis ticks covering [lo, hi] (first <= lo, last >= hi) with about
// `target` ticks (clamped to 2..50) in steps of 1, 2 or 5 x 10^k, ascending.
// lo == hi is widened around the value; lo > hi is swapped; empty if either
// is not finite. Exposed for tests.
std::vector<double> NiceTicks(double lo, double hi, int target = 6);

// A tick label with as many decimals as `step` needs: "0.3", "1e-05", "2000".
// Scientific notation when step < 1e-4 or step >= 1e5; "0" for values within
// a millionth of a step of zero.
std::string FormatTick(double value, double step);

// The colour of series (or bar) `index`.
Rgb SeriesColor(size_t index);

}  // namespace takt::plot
