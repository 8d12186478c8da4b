#include "store/database.h"

#include "core/time.h"

namespace takt::store {

int64_t Row::Int(size_t i) const {
  const Value& v = values.at(i);
  if (auto* p = std::get_if<int64_t>(&v)) return *p;
  if (auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
  return 0;
}

double Row::Real(size_t i) const {
  const Value& v = values.at(i);
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* p = std::get_if<int64_t>(&v)) return static_cast<double>(*p);
  return 0;
}

const std::string& Row::Text(size_t i) const {
  static const std::string kEmpty;
  const Value& v = values.at(i);
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  return kEmpty;
}

Result<Row> Database::QueryOne(std::string_view sql, const std::vector<Value>& params,
                               std::string_view what) {
  TAKT_ASSIGN_OR_RETURN(auto rows, Query(sql, params));
  if (rows.empty()) return NotFound(std::string(what));
  return std::move(rows.front());
}

Status Migrate(Database& db, std::string_view component, const std::vector<Migration>& migrations) {
  TAKT_RETURN_IF_ERROR(db.ExecScript(
      "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, "
      "name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (component, version))"));
  for (const auto& m : migrations) {
    Status s = db.Transaction([&](Database& tx) -> Status {
      TAKT_ASSIGN_OR_RETURN(auto rows,
                            tx.Query("SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?",
                                     {std::string(component), int64_t{m.version}}));
      if (!rows.empty()) return Ok();
      TAKT_RETURN_IF_ERROR(tx.ExecScript(m.sql));
      TAKT_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)",
                  {std::string(component), int64_t{m.version}, m.name, NowIso()}));
      return Ok();
    });
    if (!s)
      return std::unexpected(s.error().WithContext("migration " + std::string(component) + "/" + m.name));
  }
  return Ok();
}

}  // namespace takt::store
