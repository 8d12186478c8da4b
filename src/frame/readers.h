// File: frame/readers.h
//
// Streaming text readers: CSV and JSON Lines from a ByteSource into batches
// (frame/batch.h), with bounded memory however large the input. This is how
// dataset uploads of many gigabytes are ingested.
//
// Both readers read the source in chunks of a few MiB. Opening one reads the
// header (CSV) and a read-ahead of `infer_rows` rows (at most 64 MiB of text)
// to infer the types of the columns whose type is not declared, and keeps that
// text for the first batches. Memory is then bounded by one batch, the
// read-ahead, one chunk and the longest record; a record over 64 MiB is an
// error ("line N: record longer than 64 MiB").
//
// CSV follows frame/csv.h exactly (RFC 4180, header row, BOM skipped, UTF-8
// validated, blank lines skipped with more than one column, empty field =
// null, inference bool < int64 < float64 < timestamp < string), so a file read
// here gives the same table ReadCsv gives when the read-ahead covers it all.
//
// JSON Lines: every non-blank line is one JSON object. The columns are the keys
// of the read-ahead in first-appearance order; a key a line lacks is null.
// Inferred types: true/false bool; integers that fit int64; numbers with a
// fraction or exponent (or a mix with integers) float64; strings timestamp if
// every one parses with frame::ParseTimestamp, else string; nested objects and
// arrays a string of their compact JSON; a column that mixes kinds (numbers and
// strings, say) a string holding each value's JSON text. Declared types coerce:
// integers to float64, ISO strings or integer epoch seconds to timestamp, any
// value to string.
//
// Types never change once a reader is open. A column that had no null in the
// read-ahead becomes nullable when a null arrives later (schema() follows). A
// later value that does not fit its column's type, a row with the wrong number
// of fields, a row that is not valid UTF-8 (or, in JSON Lines, not a valid
// object, or with a key the read-ahead did not have) is an InvalidArgument from
// Next() with OnError::kFail, and with OnError::kSkip a dropped row counted in
// report().rows_skipped. Errors name the 1-based physical line the row starts
// on: "line 123456, column force: 'abc' is not a float64 (type inferred from
// the first 100000 rows; declare the column's type to read it differently)".
// Always fatal: a bad header, an unterminated quoted field or text after a
// closing quote (the record boundaries are lost), an over-long record, and an
// error of the source. After an error Next() returns it again.
//
// Thread safety and ownership as in frame/batch.h: one thread at a time, and
// the source must outlive the reader.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "core/result.h"
#include "frame/batch.h"
#include "frame/table.h"

namespace takt::frame {

enum class OnError { kFail, kSkip };

struct TextReadOptions {
  char delimiter = ',';               // CSV only
  std::map<std::string, Type> types;  // declared types for these columns; the rest are inferred
  // Types to use for these columns when the source has them (a previous
  // version's schema); unlike `types`, a hint for an absent column is fine.
  std::map<std::string, Type> hints;
  size_t infer_rows = 100000;  // rows read ahead to infer types (also capped at 64 MiB of text)
  size_t batch_rows = 65536;   // rows per batch at most
  OnError on_error = OnError::kFail;
  size_t max_error_messages = 20;         // ReaderReport::errors keeps at most this many
  std::set<std::string> withhold_values;  // columns whose values never appear in an error message
};

// InvalidArgument for a bad delimiter, batch_rows of 0, a declared column the
// header lacks ("no header row" for an empty source), or a read-ahead error
// that is always fatal; the source's own error if reading fails.
Result<std::unique_ptr<BatchReader>> OpenCsvReader(ByteSource& source, const TextReadOptions& options = {});

// InvalidArgument for batch_rows of 0, a declared column that no line of the
// read-ahead has, or a read-ahead without any key (an empty source, say).
Result<std::unique_ptr<BatchReader>> OpenJsonlReader(ByteSource& source, const TextReadOptions& options = {});

}  // namespace takt::frame
