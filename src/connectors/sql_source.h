// File: connectors/sql_source.h
//
// Ingest from plant databases by SQL query. A source is a query against a
// PostgreSQL server (libpq) or a SQLite file; its rows stream out as batches
// through frame::BatchReader, so a result of any size holds about one batch
// (`batch_rows` rows) in memory at a time.
//
// The plant database is never modified: PostgreSQL queries run inside
// BEGIN READ ONLY as a single statement (the extended protocol refuses
// "SELECT ...; DELETE ..."), SQLite files are opened SQLITE_OPEN_READONLY with
// query_only on. A statement that returns no rows is refused up front.
//
// Credentials never leave this module: every message names the source by
// RedactConninfo(conninfo), and libpq's own messages are scrubbed of the
// password before they are returned.
//
// Thread safety: a reader is used by one thread at a time (like every
// BatchReader); different readers are independent. Ownership: a reader owns
// its connection and closes it when the rows end or when it is destroyed
// (an unfinished PostgreSQL query is cancelled first).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"
#include "frame/batch.h"

namespace takt::connectors {

struct SqlSourceOptions {
  size_t batch_rows = 65536;
  // PostgreSQL: libpq connect_timeout (<= 0 waits indefinitely).
  // SQLite: how long to wait for a lock held by a writer (busy timeout).
  int connect_timeout_seconds = 10;
};

// A PostgreSQL query. `conninfo` is a libpq URI
// ("postgresql://user:secret@127.0.0.1:5433/plant") or keyword string
// ("host=... port=... dbname=... user=... password=..."). Rows stream in
// single-row mode, so memory stays bounded whatever the result size.
//
// Column types come from the result's type OIDs: int2/int4/int8/oid → int64;
// float4/float8/numeric → float64; bool → bool; timestamp/timestamptz/date →
// timestamp (UTC epoch seconds, fractions truncated toward the past; the
// session TimeZone is UTC); everything else (text, varchar, bpchar, name,
// uuid, json, jsonb, time, interval, arrays, domains, ...) → string in
// PostgreSQL's text form. Every column is nullable.
//
// Errors: Unavailable when the server cannot be reached ("cannot connect to
// PostgreSQL source postgresql://user@127.0.0.1:5433/plant: ... Connection
// refused ..."); PermissionDenied when it refuses the credentials;
// InvalidArgument for a query PostgreSQL rejects (with its message), for a
// statement that returns no rows ("the source query must be a SELECT"), for a
// write refused by the read-only transaction, for two result columns with the
// same name, and for a value takt cannot represent (a timestamp of
// 'infinity'), naming the row and column.
[[nodiscard]] Result<std::unique_ptr<frame::BatchReader>> OpenPostgresQuery(
    const std::string& conninfo, const std::string& query, const SqlSourceOptions& options = {});

// A SQLite query, the database opened read-only (NotFound if the file does not
// exist). One statement, and it must return rows (InvalidArgument otherwise).
//
// Column types from the declared types of the result columns, in SQLite's
// affinity order: containing INT → int64; BOOL → bool; DATE or TIME →
// timestamp (ISO 8601 text, or epoch seconds as numbers); REAL, FLOA, DOUB,
// NUMERIC or DECIMAL → float64; anything else → string. A result column
// without a declared type (an expression) takes its type from the values in
// the first batch: any text or blob → string, else any real → float64, else
// integer → int64; all null (or no rows) → string. Every column is nullable.
//
// A value that does not fit its column's type (text 'abc' in an INTEGER
// column, which SQLite allows, or a real in a column inferred as int64) is
// InvalidArgument naming the row number (1-based, in the whole result) and the
// column.
[[nodiscard]] Result<std::unique_ptr<frame::BatchReader>> OpenSqliteQuery(
    const std::string& path, const std::string& query, const SqlSourceOptions& options = {});

// The conninfo with any password removed, for messages and records:
// "postgresql://user@host:5433/plant" (URI userinfo password dropped, a
// `password` query parameter shown as ***), "host=h dbname=d user=u
// password=***". A malformed keyword string has its unparseable tokens
// masked too, since one of them may be part of a password.
std::string RedactConninfo(std::string_view conninfo);

}  // namespace takt::connectors
