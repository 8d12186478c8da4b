#include <sqlite3.h>

#include <mutex>
#include <thread>

#include "store/database.h"

namespace takt::store {
namespace {

class SqliteDatabase final : public Database {
 public:
  explicit SqliteDatabase(sqlite3* db) : db_(db) {}
  ~SqliteDatabase() override { sqlite3_close_v2(db_); }

  Result<std::vector<Row>> Query(std::string_view sql, const std::vector<Value>& params) override {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    return Run(sql, params, nullptr);
  }

  Result<int64_t> Exec(std::string_view sql, const std::vector<Value>& params) override {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    int64_t changed = 0;
    TAKT_RETURN_IF_ERROR(Run(sql, params, &changed));
    return changed;
  }

  Status ExecScript(std::string_view sql) override {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    char* err = nullptr;
    std::string s(sql);
    if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      return Internal("sqlite: " + msg);
    }
    return Ok();
  }

  Status Transaction(const std::function<Status(Database&)>& fn) override {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    if (depth_ > 0) {
      ++depth_;
      Status s = fn(*this);
      --depth_;
      return s;
    }
    TAKT_RETURN_IF_ERROR(ExecScript("BEGIN IMMEDIATE"));
    depth_ = 1;
    Status s;
    try {
      s = fn(*this);
    } catch (...) {
      s = Internal("exception inside a transaction");
    }
    depth_ = 0;
    if (!s) {
      IgnoreError(ExecScript("ROLLBACK"));
      return s;
    }
    Status c = ExecScript("COMMIT");
    if (!c) IgnoreError(ExecScript("ROLLBACK"));
    return c;
  }

  std::string_view dialect() const override { return "sqlite"; }

 private:
  Result<std::vector<Row>> Run(std::string_view sql, const std::vector<Value>& params, int64_t* changed) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) != SQLITE_OK) {
      return Internal("sqlite prepare: " + std::string(sqlite3_errmsg(db_)));
    }
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(stmt, sqlite3_finalize);
    for (size_t i = 0; i < params.size(); ++i) {
      int idx = static_cast<int>(i + 1);
      const Value& v = params[i];
      int rc = SQLITE_OK;
      if (std::holds_alternative<std::monostate>(v)) {
        rc = sqlite3_bind_null(stmt, idx);
      } else if (auto* iv = std::get_if<int64_t>(&v)) {
        rc = sqlite3_bind_int64(stmt, idx, *iv);
      } else if (auto* dv = std::get_if<double>(&v)) {
        rc = sqlite3_bind_double(stmt, idx, *dv);
      } else {
        const auto& sv = std::get<std::string>(v);
        rc = sqlite3_bind_text(stmt, idx, sv.data(), static_cast<int>(sv.size()), SQLITE_TRANSIENT);
      }
      if (rc != SQLITE_OK) return Internal("sqlite bind: " + std::string(sqlite3_errmsg(db_)));
    }
    std::vector<Row> rows;
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        int ext = sqlite3_extended_errcode(db_);
        std::string msg = sqlite3_errmsg(db_);
        if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY) {
          return AlreadyExists("already exists (" + msg + ")");
        }
        if (rc == SQLITE_CONSTRAINT) return FailedPrecondition("constraint failed: " + msg);
        if (rc == SQLITE_BUSY) return Unavailable("database is busy: " + msg);
        return Internal("sqlite: " + msg);
      }
      Row row;
      int n = sqlite3_column_count(stmt);
      row.values.reserve(n);
      for (int c = 0; c < n; ++c) {
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_NULL:
            row.values.emplace_back(std::monostate{});
            break;
          case SQLITE_INTEGER:
            row.values.emplace_back(static_cast<int64_t>(sqlite3_column_int64(stmt, c)));
            break;
          case SQLITE_FLOAT:
            row.values.emplace_back(sqlite3_column_double(stmt, c));
            break;
          default: {
            const auto* p = reinterpret_cast<const char*>(sqlite3_column_blob(stmt, c));
            int len = sqlite3_column_bytes(stmt, c);
            row.values.emplace_back(std::string(p ? p : "", len));
          }
        }
      }
      rows.push_back(std::move(row));
    }
    if (changed) *changed = sqlite3_changes(db_);
    return rows;
  }

  sqlite3* db_;
  std::recursive_mutex mu_;
  int depth_ = 0;
};

}  // namespace

Result<std::unique_ptr<Database>> OpenSqlite(const std::string& path) {
  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &raw, flags, nullptr) != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : "out of memory";
    sqlite3_close_v2(raw);
    return Unavailable("cannot open metadata database " + path + ": " + msg);
  }
  sqlite3_busy_timeout(raw, 5000);
  auto db = std::make_unique<SqliteDatabase>(raw);
  TAKT_RETURN_IF_ERROR(
      db->ExecScript("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;"));
  return std::unique_ptr<Database>(std::move(db));
}

}  // namespace takt::store
