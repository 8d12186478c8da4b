// File: frame/batch.h
//
// Streaming: how data too large for memory moves through takt. A ByteSource
// yields raw bytes (a file, an HTTP request body, a string); a BatchReader
// turns a source into a sequence of Tables ("batches") that share one schema,
// so an ingest of many gigabytes holds only a batch or two at a time.
//
// Readers: frame/readers.h (CSV, JSON Lines), connectors/ (SQL queries).
//
// Thread safety: a ByteSource or BatchReader is used by one thread at a time.
// Ownership: a reader opened over a ByteSource does not own it; the source
// must outlive the reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "frame/table.h"

namespace takt::frame {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to `n` bytes into `buf`; returns how many, 0 only at the end.
  // An error (Unavailable for I/O, or whatever the underlying transport
  // reports) ends the stream.
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
  // Total bytes if known up front (for progress), else 0.
  virtual uint64_t size_hint() const { return 0; }
};

// Over memory that the caller keeps alive.
std::unique_ptr<ByteSource> StringSource(std::string_view data);
// Over a file, read sequentially. NotFound if it does not exist, Unavailable
// if it cannot be opened or read.
Result<std::unique_ptr<ByteSource>> FileSource(const std::filesystem::path& path);

// What a reader saw, for the ingest report.
struct ReaderReport {
  int64_t rows_read = 0;     // rows returned in batches
  int64_t rows_skipped = 0;  // malformed rows dropped (OnError::kSkip)
  uint64_t bytes_read = 0;   // bytes taken from the source
  // The first few problems, each naming line (and column where there is one):
  // "line 17, column force: 'abc' is not a float64".
  std::vector<std::string> errors;
};

class BatchReader {
 public:
  virtual ~BatchReader() = default;
  // The schema of the batches. Known once the reader is open (a text reader
  // reads ahead to infer types). Column types never change while reading; a
  // column's `nullable` may turn true later (a null seen after inference), so
  // the schema after the last batch is the one to record.
  virtual const Schema& schema() const = 0;
  // The next batch (at least one row), or std::nullopt at the end. Every batch
  // has schema().fields in order (a batch's own nullable flags may be narrower).
  virtual Result<std::optional<Table>> Next() = 0;
  virtual const ReaderReport& report() const = 0;
};

// Reads every batch into one table (small inputs, tests). The table carries
// the reader's final schema.
Result<Table> ReadAll(BatchReader& reader);

// Appends the rows of `src` to `dst`. Columns are matched by position and must
// have the same names and types (InvalidArgument otherwise); `dst` with no
// columns takes src's. Validity vectors are merged; a column becomes nullable
// if either side is.
Status AppendRows(Table& dst, const Table& src);

// The rows of `table` whose entry in `keep` is non-zero (keep.size() must equal
// num_rows()), in order.
Table SelectRows(const Table& table, const std::vector<uint8_t>& keep);

// Rows [offset, offset + count) of `table` (clamped to its size).
Table SliceRows(const Table& table, size_t offset, size_t count);

}  // namespace takt::frame
