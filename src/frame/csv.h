// File: frame/csv.h
//
// CSV in and out of Tables: how datasets arrive (uploads, files dropped by a
// line's data logger) and how tables are handed back to users.
//
// Reading follows RFC 4180: a header row, fields separated by the delimiter,
// fields in double quotes may hold delimiters, newlines and doubled quotes; rows
// end in LF or CRLF. A leading UTF-8 byte order mark is skipped. The text must
// be valid UTF-8. An empty field is null. When the header has more than one
// column, blank lines are skipped (they cannot be rows); with a single column a
// blank line is a null value. Errors are InvalidArgument and name the 1-based
// physical line where the offending row starts ("line 17: ...").
//
// All functions are pure: they read only their arguments and are safe to call
// from many threads at once.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/result.h"
#include "frame/table.h"

namespace takt::frame {

struct CsvOptions {
  char delimiter = ',';
  size_t max_rows = 0;  // data rows to read at most; 0 = no limit
};

// Parses CSV text with a header row and infers a schema: per column the
// narrowest of bool (true/false, any case) < int64 < float64 < timestamp
// (ParseTimestamp's forms) < string that fits every non-empty value. Numbers
// are matched after trimming spaces and tabs; strings are kept verbatim. An
// integer literal too large for int64 makes the column a string rather than
// lose digits as a float64. A column with an empty value is nullable; a column
// whose values are all empty is a nullable string.
Result<Table> ReadCsv(std::string_view text, const CsvOptions& options = {});

// Parses CSV against a known schema. Header columns are matched by name, in any
// order; the table comes back in schema order. A header column the schema does
// not know, or a schema field the header lacks, is an error naming them. A value
// that does not fit is "line 17, column force_kn: 'abc' is not a float64"; an
// empty value in a non-nullable column is "line 17, column x: empty value in a
// non-nullable column". bool columns also accept 1 and 0.
Result<Table> ReadCsvWithSchema(std::string_view text, const Schema& schema, const CsvOptions& options = {});

// Writes the table as CSV with a header row and LF line ends. Fields holding a
// comma, quote, CR or LF are quoted; nulls are empty fields; timestamps are ISO
// 8601 ("2026-03-01T14:00:00Z"); float64 values are written in their shortest
// round-trip form with ".0" added to integral values so they read back as
// float64. An empty string is an empty field too, so it reads back as null.
// ReadCsv infers the types again (a string column of digits comes back as
// int64); ReadCsvWithSchema(text, table.schema()) gives the table back exactly,
// empty strings aside.
// Expects a table that passes Table::Validate().
std::string WriteCsv(const Table& table);

}  // namespace takt::frame
