// File: frame/stats.h
//
// Per-column statistics of a dataset version, computed while streaming: one
// pass over the batches of an ingest, in memory bounded per column, and
// mergeable (per-partition states stored beside each partition and merged into
// the version's). `takt dataset stats` shows them; model monitoring uses them
// as the training baseline that drift is measured against.
//
//   StatsBuilder stats(reader.schema());
//   while (...) stats.Add(batch);           // a few ns per numeric value
//   std::string state = stats.Serialize();  // beside the partition
//   std::vector<ColumnStats> result = stats.Finish();
//
// Exact: count, nulls, nans, min, max, mean, stddev (up to rounding), string
// lengths, distinct up to 2048 distinct values, top values of a column with up
// to 512 distinct values, quantiles and histogram while a column has at most
// 16384 values. Approximate beyond that: quantiles and histogram from a
// uniform 16384-value reservoir sample (Algorithm L; rank error about 0.4% at
// the median, one standard deviation; histogram counts scaled to sum exactly),
// distinct from a HyperLogLog sketch with 2^14 registers (about 0.8%), top
// values from a 256-counter Space-Saving summary (each count an upper bound,
// over by at most rows/256; `top_exact` is false).
//
// Cost: Add() is a few passes over each column in L1-sized blocks: moments,
// min/max, the sample's skip counter and one hash per value; strings also feed
// the top-values summary. Memory: at most ~200 KB a column.
//
// Thread safety: a StatsBuilder is used by one thread at a time; give each
// thread or partition its own builder and Merge them. The free functions are
// safe to call from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "frame/table.h"

namespace takt::frame {

struct QuantileValue {
  double q = 0;
  double value = 0;
  friend bool operator==(const QuantileValue&, const QuantileValue&) = default;
};

struct HistogramBin {  // [lower, upper); the last bin also holds `upper`
  double lower = 0;
  double upper = 0;
  int64_t count = 0;
  friend bool operator==(const HistogramBin&, const HistogramBin&) = default;
};

struct CategoryCount {
  std::string value;
  int64_t count = 0;
  friend bool operator==(const CategoryCount&, const CategoryCount&) = default;
};

struct ColumnStats {
  std::string name;
  Type type = Type::kString;
  int64_t count = 0;     // rows seen (nulls included)
  int64_t nulls = 0;     // includes rows of batches that lacked the column
  int64_t nans = 0;      // float64 NaN values (excluded from every other statistic)
  int64_t distinct = 0;  // of non-null, non-NaN values; exact up to 2048, else estimated
  // int64, float64, timestamp (as epoch seconds): over non-null, non-NaN
  // values; absent when there are none. stddev is the population one.
  std::optional<double> min, max, mean, stddev;
  std::vector<QuantileValue> quantiles;  // q = 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99 (interpolated)
  // Up to 20 equal-width bins from min to max (an int64 or timestamp column
  // spanning fewer than 20 values gets one bin per value: [v, v + 1)); the
  // counts sum to the number of non-null, non-NaN values.
  std::vector<HistogramBin> histogram;
  // string and bool (and int64 when distinct <= 20): the most frequent values
  // (bool as "true"/"false", int64 in decimal), up to 10, most frequent first,
  // ties by value. Exact unless `top_exact` is false (more than 512 distinct
  // strings: counts may be over by at most non-null rows / 256). Values longer
  // than 256 bytes are cut (at a UTF-8 character boundary).
  std::vector<CategoryCount> top;
  bool top_exact = true;
  std::optional<int64_t> min_length, max_length;  // string columns, in bytes

  friend bool operator==(const ColumnStats&, const ColumnStats&) = default;
};

// Accumulates statistics over batches. Columns are matched by name; a batch may
// lack a column the builder knows (its rows count as nulls of that column) or
// bring a new one (it is added after the known ones; earlier rows count as its
// nulls). A batch column whose type differs from the type the builder has for
// that name counts as nulls too (readers never change a column's type).
// Deterministic: the same batches in the same order give the same result
// (sampling is seeded by the column name), also across Serialize/Deserialize.
class StatsBuilder {
 public:
  StatsBuilder();
  explicit StatsBuilder(const Schema& schema);  // fixes column order and types
  StatsBuilder(const StatsBuilder& other);
  StatsBuilder& operator=(const StatsBuilder& other);
  StatsBuilder(StatsBuilder&& other) noexcept;
  StatsBuilder& operator=(StatsBuilder&& other) noexcept;
  ~StatsBuilder();

  void Add(const Table& batch);
  // Combines another builder's state as if its batches had been added after
  // this one's. The order of merging may change the approximate parts slightly,
  // never the exact ones (count, nulls, nans, min, max; mean within 1e-9
  // relative). Columns of `other` this builder lacks are added after its own.
  void Merge(const StatsBuilder& other);
  int64_t rows() const;
  std::vector<ColumnStats> Finish() const;

  // The mergeable state, to store beside each partition and merge later:
  // versioned binary (zstd-compressed, checksummed), typically 20-60 KB a
  // column, at most ~200 KB.
  std::string Serialize() const;
  // InvalidArgument for anything Serialize did not produce (garbage, truncated,
  // altered, a newer version); never a crash.
  static Result<StatsBuilder> Deserialize(std::string_view bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// For the API: a JSON array of objects with the field names of ColumnStats
// ("type" as TypeName; min, max, mean, stddev, min_length, max_length null when
// absent; timestamps' min/max/quantiles as epoch seconds, the type tells).
std::string StatsToJson(const std::vector<ColumnStats>& stats);
// Parses StatsToJson's output. InvalidArgument naming the first bad field.
Result<std::vector<ColumnStats>> StatsFromJson(std::string_view json);

}  // namespace takt::frame
