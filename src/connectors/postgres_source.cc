// PostgreSQL query source over libpq.
//
// Sequence on one connection: connect (connect_timeout, client_encoding UTF8)
// → SET TimeZone/DateStyle/extra_float_digits; BEGIN READ ONLY → Parse the
// query as the unnamed statement (the extended protocol accepts exactly one
// statement) → Describe it (no row description: not a SELECT; else the column
// types, known before any row arrives) → Execute in single-row mode. The first
// result is awaited before Open returns, so an error raised at execution (a
// write refused by the read-only transaction) is an Open error. The
// connection is closed when the rows end, or cancelled and closed when the
// reader is destroyed early.
#include <libpq-fe.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "connectors/sql_source.h"
#include "connectors/sql_values.h"

namespace takt::connectors {
namespace {

struct ConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultClearer {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgConn = std::unique_ptr<PGconn, ConnCloser>;
using PgResult = std::unique_ptr<PGresult, ResultClearer>;

// How a column's text is read. Type OIDs are fixed in PostgreSQL's catalog
// (pg_type.dat) and the same in every version.
enum class Kind { kInt, kFloat, kBool, kTimestamp, kString };

Kind KindOf(Oid oid) {
  switch (oid) {
    case 20:  // int8
    case 21:  // int2
    case 23:  // int4
    case 26:  // oid
      return Kind::kInt;
    case 700:   // float4
    case 701:   // float8
    case 1700:  // numeric
      return Kind::kFloat;
    case 16:  // bool
      return Kind::kBool;
    case 1082:  // date
    case 1114:  // timestamp
    case 1184:  // timestamptz
      return Kind::kTimestamp;
    default:  // text, varchar, bpchar, name, uuid, json, jsonb, time, interval, arrays, ...
      return Kind::kString;
  }
}

frame::Type TypeOf(Kind kind) {
  switch (kind) {
    case Kind::kInt:
      return frame::Type::kInt64;
    case Kind::kFloat:
      return frame::Type::kFloat64;
    case Kind::kBool:
      return frame::Type::kBool;
    case Kind::kTimestamp:
      return frame::Type::kTimestamp;
    case Kind::kString:
      return frame::Type::kString;
  }
  return frame::Type::kString;
}

// libpq messages span lines ("...failed: Connection refused\n\tIs the server
// running..."); one line reads better inside ours.
std::string OneLine(std::string_view text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

// Canonical code for an error PostgreSQL reported, by SQLSTATE class.
Code CodeOf(std::string_view state, bool connection_lost) {
  if (connection_lost) return Code::kUnavailable;
  if (state == "08P01") return Code::kInvalidArgument;     // protocol violation: e.g. a $1 with no parameter
  if (state.starts_with("08")) return Code::kUnavailable;  // connection exception
  if (state.starts_with("57P") || state == "57014") return Code::kUnavailable;  // shutdown, cancelled
  if (state == "40001" || state == "40P01") return Code::kUnavailable;  // serialization, deadlock: retry
  if (state.starts_with("53")) return Code::kResourceExhausted;         // insufficient resources
  if (state.starts_with("28") || state == "42501") return Code::kPermissionDenied;
  return Code::kInvalidArgument;  // syntax, undefined object, read-only transaction, data exceptions
}

// Whether a connection failure is about credentials rather than reachability.
// libpq gives no SQLSTATE for a failed connection; the server's FATAL text is
// in English unless the server sets lc_messages otherwise (then Unavailable).
Code ConnectCode(std::string_view message) {
  for (std::string_view credentials :
       {"authentication failed", "no password supplied", "password is required", "no pg_hba.conf entry",
        "permission denied", "not permitted to log in"}) {
    if (message.find(credentials) != std::string_view::npos) return Code::kPermissionDenied;
  }
  if (message.find("does not exist") != std::string_view::npos) {
    // An unknown user is a credentials problem; an unknown database is not.
    return message.find("role \"") != std::string_view::npos ? Code::kPermissionDenied : Code::kNotFound;
  }
  return Code::kUnavailable;
}

class PostgresReader : public frame::BatchReader {
 public:
  PostgresReader(std::string source, std::vector<std::string> secrets, size_t batch_rows)
      : source_(std::move(source)),
        secrets_(std::move(secrets)),
        batch_rows_(batch_rows == 0 ? 1 : batch_rows) {}

  ~PostgresReader() override { Close(/*cancel=*/true); }

  Status Open(const std::string& conninfo, const std::string& query, int connect_timeout_seconds) {
    TAKT_RETURN_IF_ERROR(Connect(conninfo, connect_timeout_seconds));
    PgResult setup(PQexec(conn_.get(),
                          "SET TimeZone TO 'UTC'; SET DateStyle TO 'ISO, YMD'; SET extra_float_digits TO 3; "
                          "BEGIN READ ONLY"));
    if (PQresultStatus(setup.get()) != PGRES_COMMAND_OK)
      return ResultError(setup.get(), "starting a session on PostgreSQL source " + source_);

    PgResult prepared(PQprepare(conn_.get(), "", query.c_str(), 0, nullptr));
    if (PQresultStatus(prepared.get()) != PGRES_COMMAND_OK)
      return ResultError(prepared.get(), QueryContext());
    PgResult described(PQdescribePrepared(conn_.get(), ""));
    if (PQresultStatus(described.get()) != PGRES_COMMAND_OK)
      return ResultError(described.get(), QueryContext());
    const int columns = PQnfields(described.get());
    if (columns == 0) {
      return InvalidArgument(QueryContext() + ": the source query must be a SELECT (it returns no rows)");
    }
    std::vector<std::string> names;
    for (int c = 0; c < columns; ++c) {
      names.emplace_back(PQfname(described.get(), c));
      kinds_.push_back(KindOf(PQftype(described.get(), c)));
      schema_.fields.push_back({names.back(), TypeOf(kinds_.back()), /*nullable=*/true});
    }
    if (auto names_ok = CheckColumnNames(names); !names_ok) {
      return std::unexpected(names_ok.error().WithContext(QueryContext()));
    }

    if (PQsendQueryPrepared(conn_.get(), "", 0, nullptr, nullptr, nullptr, 0) != 1) {
      return ConnectionError("sending the query to PostgreSQL source " + source_);
    }
    query_active_ = true;
    if (PQsetSingleRowMode(conn_.get()) != 1) return Internal("libpq refused single-row mode");
    // Wait for the first row (or the error) so that execution errors are Open's.
    pending_.reset(PQgetResult(conn_.get()));
    const ExecStatusType status = PQresultStatus(pending_.get());
    if (status != PGRES_SINGLE_TUPLE && status != PGRES_TUPLES_OK) {
      query_active_ = false;  // the server ended the query
      return ResultError(pending_.get(), QueryContext());
    }
    return Ok();
  }

  const frame::Schema& schema() const override { return schema_; }
  const frame::ReaderReport& report() const override { return report_; }

  Result<std::optional<frame::Table>> Next() override {
    if (failure_) return std::unexpected(*failure_);
    if (!conn_) return std::nullopt;
    std::vector<ColumnBuilder> builders;
    builders.reserve(schema_.fields.size());
    for (const frame::Field& f : schema_.fields) builders.emplace_back(f);
    size_t rows = 0;
    while (rows < batch_rows_) {
      PgResult result = pending_ ? std::move(pending_) : PgResult(PQgetResult(conn_.get()));
      if (!result) {  // results ended without the end-of-rows marker: never a silent short read
        query_active_ = false;
        return Fail(
            Error(Code::kUnavailable, "reading rows from PostgreSQL source " + source_ +
                                          ": the result ended early: " + Scrub(PQerrorMessage(conn_.get()))));
      }
      const ExecStatusType status = PQresultStatus(result.get());
      if (status == PGRES_TUPLES_OK) {  // the end of the rows
        query_active_ = false;
        Close(/*cancel=*/false);
        break;
      }
      if (status != PGRES_SINGLE_TUPLE) {
        query_active_ = false;
        return Fail(ResultError(result.get(), "reading rows from PostgreSQL source " + source_).error());
      }
      if (auto appended = AppendRow(result.get(), builders); !appended) return Fail(appended.error());
      ++rows;
    }
    if (rows == 0) return std::nullopt;
    return FinishBatch(builders);
  }

 private:
  Status Connect(const std::string& conninfo, int connect_timeout_seconds) {
    // `dbname` first with expand_dbname: the caller's conninfo (URI or
    // keywords) is expanded there, and the keywords after it override it.
    const std::string timeout = std::to_string(connect_timeout_seconds > 0 ? connect_timeout_seconds : 0);
    const char* keys[] = {"dbname", "connect_timeout", "client_encoding", "fallback_application_name",
                          nullptr};
    const char* values[] = {conninfo.c_str(), timeout.c_str(), "UTF8", "takt-connectors", nullptr};
    conn_.reset(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
    if (!conn_)
      return ResourceExhausted("cannot connect to PostgreSQL source " + source_ + ": out of memory");
    if (PQstatus(conn_.get()) == CONNECTION_OK) {
      // Server notices (WARNINGs) would go to stderr; a source has no use for them.
      PQsetNoticeProcessor(
          conn_.get(), [](void*, const char*) {}, nullptr);
      return Ok();
    }
    const std::string message = Scrub(PQerrorMessage(conn_.get()));
    conn_.reset();
    return MakeError(ConnectCode(message), "cannot connect to PostgreSQL source " + source_ + ": " + message);
  }

  std::string Scrub(std::string_view libpq_message) const {
    return ScrubSecrets(OneLine(libpq_message), secrets_);
  }

  std::string QueryContext() const { return "query on PostgreSQL source " + source_; }

  std::unexpected<Error> ConnectionError(const std::string& context) const {
    return Unavailable(context + ": " + Scrub(PQerrorMessage(conn_.get())));
  }

  // "<context>: relation "t" does not exist (SQLSTATE 42P01)".
  std::unexpected<Error> ResultError(const PGresult* result, const std::string& context) const {
    if (result == nullptr) return ConnectionError(context);
    const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    const char* detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL);
    const char* hint = PQresultErrorField(result, PG_DIAG_MESSAGE_HINT);
    std::string text = primary != nullptr ? primary : PQresultErrorMessage(result);
    if (text.empty()) text = PQerrorMessage(conn_.get());
    if (detail != nullptr) text += " (" + std::string(detail) + ")";
    if (hint != nullptr) text += " (hint: " + std::string(hint) + ")";
    if (state != nullptr) text += " (SQLSTATE " + std::string(state) + ")";
    // libpq's own errors (the server went away) carry no SQLSTATE.
    const bool lost = state == nullptr && PQstatus(conn_.get()) != CONNECTION_OK;
    return MakeError(CodeOf(state != nullptr ? state : "", lost), context + ": " + Scrub(text));
  }

  Status AppendRow(const PGresult* row, std::vector<ColumnBuilder>& builders) {
    const int64_t row_number = report_.rows_read + 1;
    for (size_t c = 0; c < builders.size(); ++c) {
      const int ci = static_cast<int>(c);
      if (PQgetisnull(row, 0, ci)) {
        builders[c].AppendNull();
        continue;
      }
      const char* value = PQgetvalue(row, 0, ci);
      const size_t length = static_cast<size_t>(PQgetlength(row, 0, ci));
      report_.bytes_read += length;
      const std::string_view text(value, length);
      switch (kinds_[c]) {
        case Kind::kInt: {
          int64_t v = 0;
          auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
          if (ec != std::errc() || end != text.data() + text.size())
            return Misfit(row_number, c, text, "int64");
          builders[c].AppendInt(v);
          break;
        }
        case Kind::kFloat: {
          double v = 0;
          auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
          if (ec == std::errc::result_out_of_range) {
            // A numeric beyond double's range (numeric holds up to 131072
            // digits, never in exponent form): a nonzero integer part is an
            // overflow, anything else an underflow.
            const bool negative = text.starts_with('-');
            const bool overflow = text.find_first_not_of("-0") < text.find('.');
            v = overflow ? std::numeric_limits<double>::infinity() : 0.0;
            if (negative) v = -v;
          } else if (ec != std::errc() || end != text.data() + text.size()) {
            return Misfit(row_number, c, text, "float64");
          }
          builders[c].AppendDouble(v);
          break;
        }
        case Kind::kBool:
          if (text != "t" && text != "f") return Misfit(row_number, c, text, "bool");
          builders[c].AppendInt(text == "t" ? 1 : 0);
          break;
        case Kind::kTimestamp: {
          std::optional<int64_t> v = ParseSqlTimestamp(text);
          if (!v) return Misfit(row_number, c, text, "timestamp");
          builders[c].AppendInt(*v);
          break;
        }
        case Kind::kString:
          builders[c].AppendString(std::string(text));
          break;
      }
    }
    ++report_.rows_read;
    return Ok();
  }

  std::unexpected<Error> Misfit(int64_t row, size_t column, std::string_view text,
                                std::string_view type) const {
    return InvalidArgument("PostgreSQL source " + source_ + ": row " + std::to_string(row) + ", column " +
                           schema_.fields[column].name + ": '" + Excerpt(text) + "' is not a representable " +
                           std::string(type) + " value");
  }

  std::unexpected<Error> Fail(Error error) {
    failure_ = error;
    Close(/*cancel=*/true);
    return std::unexpected(std::move(error));
  }

  // Ends the connection. With `cancel`, an unfinished query is cancelled
  // first so the server stops producing rows nobody reads.
  void Close(bool cancel) {
    pending_.reset();
    if (!conn_) return;
    if (cancel && query_active_ && PQstatus(conn_.get()) == CONNECTION_OK) {
      if (PGcancel* handle = PQgetCancel(conn_.get())) {
        char ignored[256];
        PQcancel(handle, ignored, sizeof(ignored));
        PQfreeCancel(handle);
      }
    }
    conn_.reset();  // PQfinish: the read-only transaction ends with the session
  }

  std::string source_;                // redacted conninfo, for messages
  std::vector<std::string> secrets_;  // scrubbed from libpq's messages
  size_t batch_rows_;
  PgConn conn_;
  PgResult pending_;           // the first result, fetched by Open
  bool query_active_ = false;  // sent, and the server has not ended it (rows may be unread)
  std::vector<Kind> kinds_;
  frame::Schema schema_;
  frame::ReaderReport report_;
  std::optional<Error> failure_;
};

}  // namespace

Result<std::unique_ptr<frame::BatchReader>> OpenPostgresQuery(const std::string& conninfo,
                                                              const std::string& query,
                                                              const SqlSourceOptions& options) {
  const std::string source = RedactConninfo(conninfo);
  std::vector<std::string> secrets = ConninfoSecrets(conninfo);
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &parse_error);
  if (parsed == nullptr) {
    std::string message = parse_error != nullptr ? OneLine(parse_error) : "out of memory";
    PQfreemem(parse_error);
    return InvalidArgument("invalid PostgreSQL connection string " + source + ": " +
                           ScrubSecrets(message, secrets));
  }
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val != nullptr && *o->val != '\0') {
      secrets.insert(secrets.begin(), o->val);
    }
  }
  PQconninfoFree(parsed);

  auto reader = std::make_unique<PostgresReader>(source, std::move(secrets), options.batch_rows);
  TAKT_RETURN_IF_ERROR(reader->Open(conninfo, query, options.connect_timeout_seconds));
  return std::unique_ptr<frame::BatchReader>(std::move(reader));
}

}  // namespace takt::connectors
