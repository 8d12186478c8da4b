// SQLite query source. The file is opened SQLITE_OPEN_READONLY with
// query_only on; the query must be one read-only statement that returns
// columns. Types come from the declared types of the result columns; columns
// without one (expressions) are typed from the first batch, which Open reads
// ahead.
#include <sqlite3.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "connectors/sql_source.h"
#include "connectors/sql_values.h"

namespace takt::connectors {
namespace {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using SqliteDb = std::unique_ptr<sqlite3, DbCloser>;
using SqliteStmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// One value as SQLite returned it, owned (the first batch is read ahead
// before the column types are known).
struct Cell {
  int storage = SQLITE_NULL;  // SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL
  int64_t integer = 0;
  double real = 0;
  std::string bytes;  // text or blob
};

Cell ReadCell(sqlite3_stmt* stmt, int column) {
  Cell cell;
  cell.storage = sqlite3_column_type(stmt, column);
  switch (cell.storage) {
    case SQLITE_INTEGER:
      cell.integer = sqlite3_column_int64(stmt, column);
      break;
    case SQLITE_FLOAT:
      cell.real = sqlite3_column_double(stmt, column);
      break;
    case SQLITE_TEXT: {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
      cell.bytes.assign(text != nullptr ? text : "", static_cast<size_t>(sqlite3_column_bytes(stmt, column)));
      break;
    }
    case SQLITE_BLOB: {
      const auto* blob = static_cast<const char*>(sqlite3_column_blob(stmt, column));
      const int size = sqlite3_column_bytes(stmt, column);
      if (blob != nullptr) cell.bytes.assign(blob, static_cast<size_t>(size));
      break;
    }
    default:
      break;
  }
  return cell;
}

uint64_t CellBytes(const Cell& cell) {
  switch (cell.storage) {
    case SQLITE_INTEGER:
    case SQLITE_FLOAT:
      return 8;
    case SQLITE_TEXT:
    case SQLITE_BLOB:
      return cell.bytes.size();
    default:
      return 0;
  }
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// The type of a declared column type, in SQLite's own affinity order (so
// "FLOATING POINT", which SQLite gives INTEGER affinity, is int64 here too).
frame::Type TypeOfDecltype(std::string_view decltype_text) {
  const std::string d = Upper(decltype_text);
  auto has = [&](std::string_view part) { return d.find(part) != std::string::npos; };
  if (has("INT")) return frame::Type::kInt64;
  if (has("BOOL")) return frame::Type::kBool;
  if (has("DATE") || has("TIME")) return frame::Type::kTimestamp;
  if (has("REAL") || has("FLOA") || has("DOUB") || has("NUMERIC") || has("DECIMAL"))
    return frame::Type::kFloat64;
  return frame::Type::kString;
}

// The type of an expression column from the values of the first batch.
frame::Type InferType(const std::vector<std::vector<Cell>>& rows, size_t column) {
  bool integer = false, real = false;
  for (const std::vector<Cell>& row : rows) {
    switch (row[column].storage) {
      case SQLITE_TEXT:
      case SQLITE_BLOB:
        return frame::Type::kString;
      case SQLITE_FLOAT:
        real = true;
        break;
      case SQLITE_INTEGER:
        integer = true;
        break;
      default:
        break;
    }
  }
  if (real) return frame::Type::kFloat64;
  if (integer) return frame::Type::kInt64;
  return frame::Type::kString;
}

// The shortest text that reads back to the same double ("0.1", "1e+300").
std::string RealText(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : std::string("?");
}

std::string Describe(const Cell& cell) {
  switch (cell.storage) {
    case SQLITE_INTEGER:
      return "integer " + std::to_string(cell.integer);
    case SQLITE_FLOAT:
      return "real " + RealText(cell.real);
    case SQLITE_TEXT:
      return "text '" + Excerpt(cell.bytes) + "'";
    case SQLITE_BLOB:
      return "a blob of " + std::to_string(cell.bytes.size()) + " bytes";
    default:
      return "null";
  }
}

// Canonical code for a SQLite result code.
Code CodeOf(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      return Code::kUnavailable;
    case SQLITE_NOMEM:
    case SQLITE_FULL:
      return Code::kResourceExhausted;
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return Code::kPermissionDenied;
    case SQLITE_INTERNAL:
    case SQLITE_MISUSE:
      return Code::kInternal;
    default:  // SQLITE_ERROR (syntax, no such table), SQLITE_READONLY, SQLITE_NOTADB, SQLITE_CORRUPT, ...
      return Code::kInvalidArgument;
  }
}

class SqliteReader : public frame::BatchReader {
 public:
  SqliteReader(std::string path, size_t batch_rows)
      : source_("SQLite source " + path),
        path_(std::move(path)),
        batch_rows_(batch_rows == 0 ? 1 : batch_rows) {}

  Status Open(const std::string& query, int busy_timeout_seconds) {
    std::error_code ec;
    if (!std::filesystem::exists(path_, ec)) return NotFound(source_ + " does not exist");
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK) {
      return MakeError(
          rc == SQLITE_NOMEM ? Code::kResourceExhausted : Code::kUnavailable,
          "cannot open " + source_ + ": " + (raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    }
    sqlite3_extended_result_codes(db_.get(), 1);
    sqlite3_busy_timeout(db_.get(), busy_timeout_seconds > 0 ? busy_timeout_seconds * 1000 : 0);
    // Belt and braces beside SQLITE_OPEN_READONLY: also refuses writes to ATTACHed files.
    if (int q = sqlite3_exec(db_.get(), "PRAGMA query_only = ON", nullptr, nullptr, nullptr);
        q != SQLITE_OK) {
      return SqliteError(q, "cannot open " + source_);
    }

    const char* tail = nullptr;
    sqlite3_stmt* stmt = nullptr;
    int prc = sqlite3_prepare_v2(db_.get(), query.c_str(), static_cast<int>(query.size()), &stmt, &tail);
    stmt_.reset(stmt);
    if (prc != SQLITE_OK) return SqliteError(prc, QueryContext());
    if (!stmt_) return InvalidArgument(QueryContext() + ": the source query is empty");
    if (tail != nullptr && *tail != '\0') {
      sqlite3_stmt* next = nullptr;
      const int nrc = sqlite3_prepare_v2(db_.get(), tail, -1, &next, nullptr);
      SqliteStmt second(next);
      if (nrc != SQLITE_OK || second) {
        return InvalidArgument(QueryContext() + ": the source query must be a single statement");
      }
    }
    const int columns = sqlite3_column_count(stmt_.get());
    if (columns == 0 || !sqlite3_stmt_readonly(stmt_.get())) {
      return InvalidArgument(QueryContext() + ": the source query must be a SELECT" +
                             (columns == 0 ? " (it returns no rows)" : " (it would modify the database)"));
    }

    std::vector<std::string> names;
    std::vector<bool> declared;
    for (int c = 0; c < columns; ++c) {
      const char* name = sqlite3_column_name(stmt_.get(), c);
      names.emplace_back(name != nullptr ? name : "");
      const char* decl = sqlite3_column_decltype(stmt_.get(), c);
      declared.push_back(decl != nullptr && *decl != '\0');
      origins_.push_back(declared.back() ? "declared " + std::string(decl) : "");
      schema_.fields.push_back(
          {names.back(), declared.back() ? TypeOfDecltype(decl) : frame::Type::kString, /*nullable=*/true});
    }
    if (auto names_ok = CheckColumnNames(names); !names_ok) {
      return std::unexpected(names_ok.error().WithContext(QueryContext()));
    }

    // Read the first batch ahead: expression columns are typed from it.
    std::vector<std::vector<Cell>> first;
    while (first.size() < batch_rows_) {
      TAKT_ASSIGN_OR_RETURN(bool row, Step());
      if (!row) break;
      std::vector<Cell>& cells = first.emplace_back();
      cells.reserve(columns);
      for (int c = 0; c < columns; ++c) cells.push_back(ReadCell(stmt_.get(), c));
    }
    for (size_t c = 0; c < schema_.fields.size(); ++c) {
      if (declared[c]) continue;
      schema_.fields[c].type = InferType(first, c);
      origins_[c] = "inferred from the first " + std::to_string(first.size()) + " rows";
    }
    if (!first.empty()) {
      std::vector<ColumnBuilder> builders = Builders();
      for (std::vector<Cell>& cells : first) TAKT_RETURN_IF_ERROR(AppendRow(cells, builders));
      pending_ = FinishBatch(builders);
    }
    return Ok();
  }

  const frame::Schema& schema() const override { return schema_; }
  const frame::ReaderReport& report() const override { return report_; }

  Result<std::optional<frame::Table>> Next() override {
    if (failure_) return std::unexpected(*failure_);
    if (pending_) {
      std::optional<frame::Table> batch = std::move(pending_);
      pending_.reset();
      return batch;
    }
    if (done_) return std::nullopt;
    std::vector<ColumnBuilder> builders = Builders();
    std::vector<Cell> cells(schema_.fields.size());
    size_t rows = 0;
    while (rows < batch_rows_) {
      auto row = Step();
      if (!row) return Fail(row.error());
      if (!*row) break;
      for (size_t c = 0; c < cells.size(); ++c) cells[c] = ReadCell(stmt_.get(), static_cast<int>(c));
      if (auto appended = AppendRow(cells, builders); !appended) return Fail(appended.error());
      ++rows;
    }
    if (rows == 0) return std::nullopt;
    return FinishBatch(builders);
  }

 private:
  std::string QueryContext() const { return "query on " + source_; }

  std::unexpected<Error> SqliteError(int rc, const std::string& context) const {
    return MakeError(CodeOf(rc), context + ": " + sqlite3_errmsg(db_.get()));
  }

  std::vector<ColumnBuilder> Builders() const {
    std::vector<ColumnBuilder> builders;
    builders.reserve(schema_.fields.size());
    for (const frame::Field& f : schema_.fields) builders.emplace_back(f);
    return builders;
  }

  // True for a row, false at the end (the statement and file are then closed).
  Result<bool> Step() {
    if (done_) return false;
    const int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return true;
    done_ = true;
    if (rc == SQLITE_DONE) {
      stmt_.reset();
      db_.reset();
      return false;
    }
    return SqliteError(rc, "reading rows from " + source_);
  }

  // Moves text out of `cells`.
  Status AppendRow(std::vector<Cell>& cells, std::vector<ColumnBuilder>& builders) {
    const int64_t row_number = report_.rows_read + 1;
    for (size_t c = 0; c < cells.size(); ++c) {
      Cell& cell = cells[c];
      ColumnBuilder& b = builders[c];
      report_.bytes_read += CellBytes(cell);
      if (cell.storage == SQLITE_NULL) {
        b.AppendNull();
        continue;
      }
      bool fits = true;
      switch (b.field().type) {
        case frame::Type::kInt64:
          if (cell.storage == SQLITE_INTEGER) {
            b.AppendInt(cell.integer);
          } else if (cell.storage == SQLITE_FLOAT && std::trunc(cell.real) == cell.real &&
                     std::fabs(cell.real) < 9.2e18) {
            b.AppendInt(static_cast<int64_t>(cell.real));  // 3.0 in an INTEGER column
          } else {
            fits = false;
          }
          break;
        case frame::Type::kFloat64:
          if (cell.storage == SQLITE_FLOAT) {
            b.AppendDouble(cell.real);
          } else if (cell.storage == SQLITE_INTEGER) {
            b.AppendDouble(static_cast<double>(cell.integer));
          } else {
            fits = false;
          }
          break;
        case frame::Type::kBool:
          if (auto v = BoolOf(cell)) {
            b.AppendInt(*v ? 1 : 0);
          } else {
            fits = false;
          }
          break;
        case frame::Type::kTimestamp:
          if (auto v = TimestampOf(cell)) {
            b.AppendInt(*v);
          } else {
            fits = false;
          }
          break;
        case frame::Type::kString:
          if (cell.storage == SQLITE_TEXT || cell.storage == SQLITE_BLOB) {
            b.AppendString(std::move(cell.bytes));
          } else if (cell.storage == SQLITE_INTEGER) {
            b.AppendString(std::to_string(cell.integer));
          } else {
            b.AppendString(RealText(cell.real));
          }
          break;
      }
      if (!fits) {
        return InvalidArgument(source_ + ": row " + std::to_string(row_number) + ", column " +
                               b.field().name + ": " + Describe(cell) + " does not fit its type " +
                               std::string(frame::TypeName(b.field().type)) + " (" + origins_[c] +
                               "); CAST it in the query");
      }
    }
    ++report_.rows_read;
    return Ok();
  }

  static std::optional<bool> BoolOf(const Cell& cell) {
    if (cell.storage == SQLITE_INTEGER && (cell.integer == 0 || cell.integer == 1)) return cell.integer == 1;
    if (cell.storage == SQLITE_FLOAT && (cell.real == 0.0 || cell.real == 1.0)) return cell.real == 1.0;
    if (cell.storage == SQLITE_TEXT) {
      const std::string t = Upper(cell.bytes);
      if (t == "TRUE" || t == "T" || t == "1") return true;
      if (t == "FALSE" || t == "F" || t == "0") return false;
    }
    return std::nullopt;
  }

  // ISO 8601 text, or epoch seconds as an integer or real (fraction dropped toward the past).
  static std::optional<int64_t> TimestampOf(const Cell& cell) {
    if (cell.storage == SQLITE_INTEGER) return cell.integer;
    if (cell.storage == SQLITE_FLOAT && std::isfinite(cell.real) && std::fabs(cell.real) < 9.2e18) {
      return static_cast<int64_t>(std::floor(cell.real));
    }
    if (cell.storage == SQLITE_TEXT) return ParseSqlTimestamp(cell.bytes);
    return std::nullopt;
  }

  std::unexpected<Error> Fail(Error error) {
    failure_ = error;
    stmt_.reset();
    db_.reset();
    return std::unexpected(std::move(error));
  }

  std::string source_;  // "SQLite source <path>"
  std::string path_;
  size_t batch_rows_;
  SqliteDb db_;  // declared before stmt_: the statement is finalized first
  SqliteStmt stmt_;
  frame::Schema schema_;
  std::vector<std::string> origins_;  // per column: "declared INTEGER" or "inferred from the first N rows"
  std::optional<frame::Table> pending_;
  bool done_ = false;
  frame::ReaderReport report_;
  std::optional<Error> failure_;
};

}  // namespace

Result<std::unique_ptr<frame::BatchReader>> OpenSqliteQuery(const std::string& path, const std::string& query,
                                                            const SqlSourceOptions& options) {
  auto reader = std::make_unique<SqliteReader>(path, options.batch_rows);
  TAKT_RETURN_IF_ERROR(reader->Open(query, options.connect_timeout_seconds));
  return std::unique_ptr<frame::BatchReader>(std::move(reader));
}

}  // namespace takt::connectors
