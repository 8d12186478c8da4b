// File: store/database.h
//
// The metadata store. `Database` is the one interface every module talks to;
// SQLite implements it now (WAL, foreign keys on) and PostgreSQL will later.
// SQL passed in must stay portable between the two: `?` placeholders (the
// PostgreSQL backend rewrites them to $n), TEXT/INTEGER/REAL/BLOB types, no
// SQLite-only functions; `RETURNING` works on both.
//
// Thread-safety: a Database may be shared by all threads. Each call is atomic.
// `Transaction` runs its function under an exclusive write transaction; inside
// it, use only the `Database&` it is given (the same object is fine).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.h"

namespace takt::store {

using Value = std::variant<std::monostate, int64_t, double, std::string>;

struct Row {
  std::vector<Value> values;

  bool IsNull(size_t i) const { return std::holds_alternative<std::monostate>(values.at(i)); }
  int64_t Int(size_t i) const;              // 0 for null
  double Real(size_t i) const;              // 0 for null
  const std::string& Text(size_t i) const;  // "" for null
};

class Database {
 public:
  virtual ~Database() = default;

  // Runs one statement and returns its rows (none for DDL/DML without RETURNING).
  virtual Result<std::vector<Row>> Query(std::string_view sql, const std::vector<Value>& params = {}) = 0;
  // Runs one statement; returns the number of rows it changed.
  virtual Result<int64_t> Exec(std::string_view sql, const std::vector<Value>& params = {}) = 0;
  // Runs several statements separated by ';' (migrations). No parameters.
  virtual Status ExecScript(std::string_view sql) = 0;
  // All-or-nothing: commits if `fn` returns Ok, rolls back otherwise (and on
  // any error from the commit itself). Nested calls join the outer one.
  virtual Status Transaction(const std::function<Status(Database&)>& fn) = 0;

  // "sqlite" or "postgres": for the rare place that must differ.
  virtual std::string_view dialect() const = 0;

  // Convenience: the first row, or NotFound(`what`).
  Result<Row> QueryOne(std::string_view sql, const std::vector<Value>& params, std::string_view what);
};

// Opens (creating if missing) a SQLite database file with WAL and foreign keys.
// ":memory:" gives a private in-memory database for tests.
Result<std::unique_ptr<Database>> OpenSqlite(const std::string& path);

// A numbered schema change. Versions are applied in order, each in its own
// transaction together with its row in `schema_migrations`.
struct Migration {
  int version;
  std::string name;
  std::string sql;
};

// Applies the migrations of `component` that are not applied yet. Each module
// owns its migrations (component "iam", "catalog", ...).
Status Migrate(Database& db, std::string_view component, const std::vector<Migration>& migrations);

}  // namespace takt::store
