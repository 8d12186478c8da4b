#include "iam/iam.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "core/time.h"
#include "crypto/crypto.h"

namespace takt::iam {
namespace {

const std::map<std::string, std::vector<std::string>>& PersonaActions() {
  static const auto* m = new std::map<std::string, std::vector<std::string>>{
      {"admin", {"*"}},
      {"data-engineer",
       {"dataset:*", "run:list", "run:describe", "model:list", "model:describe", "endpoint:list",
        "endpoint:describe", "principal:whoami"}},
      {"data-scientist",
       {"dataset:list", "dataset:describe", "dataset:read", "pipeline:run", "run:*", "model:list",
        "model:describe", "model:download", "endpoint:list", "endpoint:describe", "endpoint:invoke",
        "principal:whoami"}},
      {"ml-engineer",
       {"dataset:list", "dataset:describe", "run:list", "run:describe", "run:logs", "model:list",
        "model:describe", "model:download", "endpoint:*", "principal:whoami"}},
      {"approver",
       {"run:list", "run:describe", "run:logs", "model:list", "model:describe", "model:approve",
        "model:reject", "endpoint:list", "endpoint:describe", "principal:whoami"}},
      {"auditor",
       {"audit:list", "event:list", "dataset:list", "dataset:describe", "run:list", "run:describe",
        "model:list", "model:describe", "endpoint:list", "endpoint:describe", "principal:list",
        "principal:whoami"}},
      {"service", {"endpoint:invoke", "endpoint:describe", "model:describe", "principal:whoami"}},
  };
  return *m;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) {
    if (!s.empty()) s += ',';
    s += x;
  }
  return s;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '@'))
      return false;
  }
  return std::isalnum(static_cast<unsigned char>(name[0]));
}

Principal FromRow(const store::Row& r) {
  return Principal{r.Text(0), r.Text(1), r.Text(2), Split(r.Text(3)), Split(r.Text(4)), r.Text(5)};
}

constexpr const char* kPrincipalColumns = "id, name, kind, personas, denies, created_at";

}  // namespace

const std::vector<std::string>& KnownActions() {
  static const auto* a = new std::vector<std::string>{
      "principal:create", "principal:list",   "principal:whoami",  "token:create",      "dataset:create",
      "dataset:list",     "dataset:describe", "dataset:read",      "pipeline:run",      "run:list",
      "run:describe",     "run:logs",         "run:read-artifact", "model:list",        "model:describe",
      "model:approve",    "model:reject",     "endpoint:list",     "endpoint:describe", "endpoint:invoke",
      "audit:list",       "event:list",       "model:download",
  };
  return *a;
}

const std::vector<std::string>& PersonaNames() {
  static const auto* names = [] {
    auto* v = new std::vector<std::string>();
    for (const auto& [k, _] : PersonaActions()) v->push_back(k);
    return v;
  }();
  return *names;
}

bool ActionMatches(std::string_view pattern, std::string_view action) {
  if (pattern == "*") return true;
  if (pattern.size() >= 2 && pattern.substr(pattern.size() - 2) == ":*") {
    return action.substr(0, pattern.size() - 1) == pattern.substr(0, pattern.size() - 1);
  }
  return pattern == action;
}

Decision Authorize(const Principal& principal, std::string_view action) {
  for (const auto& deny : principal.denies) {
    if (ActionMatches(deny, action)) return {false, "explicit deny " + deny};
  }
  for (const auto& persona : principal.personas) {
    auto it = PersonaActions().find(persona);
    if (it == PersonaActions().end()) continue;
    for (const auto& allowed : it->second) {
      if (ActionMatches(allowed, action))
        return {true, "persona " + persona + " allows " + std::string(action)};
    }
  }
  std::string personas = principal.personas.empty() ? "no persona" : "personas " + Join(principal.personas);
  return {false, principal.name + " (" + personas + ") may not " + std::string(action)};
}

Status IamService::Migrate() {
  return store::Migrate(
      *db_, "iam",
      {{1, "principals-tokens-audit",
        "CREATE TABLE principals (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT "
        "NULL, personas TEXT NOT NULL, denies TEXT NOT NULL, created_at TEXT NOT NULL);"
        "CREATE TABLE tokens (hash TEXT PRIMARY KEY, principal_id TEXT NOT NULL REFERENCES "
        "principals(id), description TEXT NOT NULL, created_at TEXT NOT NULL);"
        "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, time TEXT NOT NULL, principal TEXT NOT "
        "NULL, action TEXT NOT NULL, resource TEXT NOT NULL, allowed INTEGER NOT NULL, status "
        "INTEGER NOT NULL, detail TEXT NOT NULL);"
        "CREATE INDEX audit_log_principal ON audit_log (principal, id);"}});
}

Result<std::pair<Principal, std::string>> IamService::CreatePrincipal(
    const std::string& name, const std::string& kind, const std::vector<std::string>& personas,
    const std::vector<std::string>& denies) {
  if (!ValidName(name)) {
    return InvalidArgument(
        "principal name '" + name +
        "' is invalid: use 1-64 letters, digits, '-', '_', '.', '@', starting with a letter or "
        "digit");
  }
  if (kind != "user" && kind != "service")
    return InvalidArgument("principal kind '" + kind + "' is not user or service");
  if (personas.empty()) return InvalidArgument("a principal needs at least one persona (--persona)");
  for (const auto& p : personas) {
    if (!PersonaActions().contains(p)) {
      std::string known;
      for (const auto& n : PersonaNames()) known += (known.empty() ? "" : ", ") + n;
      return InvalidArgument("unknown persona '" + p + "' (known: " + known + ")");
    }
  }
  for (const auto& d : denies) {
    bool ok = d == "*";
    for (const auto& a : KnownActions()) ok = ok || ActionMatches(d, a);
    if (!ok) return InvalidArgument("deny '" + d + "' matches no known action");
  }
  Principal p{NewId("p"), name, kind, personas, denies, NowIso()};
  std::string token = crypto::NewToken("takt");
  Status s = db_->Transaction([&](store::Database& tx) -> Status {
    auto r = tx.Exec(
        "INSERT INTO principals (id, name, kind, personas, denies, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        {p.id, p.name, p.kind, Join(p.personas), Join(p.denies), p.created_at});
    if (!r && r.error().code() == Code::kAlreadyExists)
      return AlreadyExists("principal " + name + " already exists");
    TAKT_RETURN_IF_ERROR(r);
    TAKT_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO tokens (hash, principal_id, description, created_at) VALUES (?, ?, ?, ?)",
                {crypto::Sha256Hex(token), p.id, std::string("initial"), p.created_at}));
    return Ok();
  });
  TAKT_RETURN_IF_ERROR(s);
  return std::make_pair(std::move(p), std::move(token));
}

Result<std::string> IamService::IssueToken(const std::string& principal_id, const std::string& description) {
  TAKT_ASSIGN_OR_RETURN(Principal p, Get(principal_id));
  std::string token = crypto::NewToken("takt");
  TAKT_RETURN_IF_ERROR(
      db_->Exec("INSERT INTO tokens (hash, principal_id, description, created_at) VALUES (?, ?, ?, ?)",
                {crypto::Sha256Hex(token), p.id, description, NowIso()}));
  return token;
}

Result<Principal> IamService::Authenticate(std::string_view token) const {
  if (token.empty())
    return Unauthenticated("no token: send 'Authorization: Bearer <token>' (see `takt login`)");
  if (token.size() > 256) return Unauthenticated("the token is malformed");
  auto rows = db_->Query(std::string("SELECT ") + kPrincipalColumns +
                             " FROM principals WHERE id = (SELECT principal_id FROM tokens WHERE hash = ?)",
                         {crypto::Sha256Hex(token)});
  TAKT_RETURN_IF_ERROR(rows);
  if (rows->empty()) return Unauthenticated("the token is not valid (unknown or revoked)");
  return FromRow(rows->front());
}

Result<Principal> IamService::Get(std::string_view id_or_name) const {
  TAKT_ASSIGN_OR_RETURN(auto row, db_->QueryOne(std::string("SELECT ") + kPrincipalColumns +
                                                    " FROM principals WHERE id = ? OR name = ?",
                                                {std::string(id_or_name), std::string(id_or_name)},
                                                "principal " + std::string(id_or_name) + " does not exist"));
  return FromRow(row);
}

Result<std::vector<Principal>> IamService::List() const {
  TAKT_ASSIGN_OR_RETURN(
      auto rows, db_->Query(std::string("SELECT ") + kPrincipalColumns + " FROM principals ORDER BY name"));
  std::vector<Principal> out;
  for (const auto& r : rows) out.push_back(FromRow(r));
  return out;
}

Status IamService::Audit(const AuditRecord& r) {
  TAKT_RETURN_IF_ERROR(
      db_->Exec("INSERT INTO audit_log (time, principal, action, resource, allowed, status, detail) VALUES "
                "(?, ?, ?, ?, ?, ?, ?)",
                {r.time.empty() ? NowIso() : r.time, r.principal, r.action, r.resource,
                 int64_t{r.allowed ? 1 : 0}, int64_t{r.status}, r.detail}));
  return Ok();
}

Result<std::vector<AuditRecord>> IamService::ListAudit(const AuditQuery& q) const {
  std::string sql =
      "SELECT id, time, principal, action, resource, allowed, status, detail FROM audit_log WHERE 1=1";
  std::vector<store::Value> params;
  if (!q.principal.empty()) {
    sql += " AND principal = ?";
    params.push_back(q.principal);
  }
  if (!q.action_prefix.empty()) {
    sql += " AND substr(action, 1, ?) = ?";
    params.push_back(static_cast<int64_t>(q.action_prefix.size()));
    params.push_back(q.action_prefix);
  }
  if (!q.resource_prefix.empty()) {
    sql += " AND substr(resource, 1, ?) = ?";
    params.push_back(static_cast<int64_t>(q.resource_prefix.size()));
    params.push_back(q.resource_prefix);
  }
  sql += " ORDER BY id DESC LIMIT ?";
  params.push_back(static_cast<int64_t>(std::clamp(q.limit, 1, 10000)));
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  std::vector<AuditRecord> out;
  for (const auto& r : rows) {
    out.push_back({r.Int(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Int(5) != 0,
                   static_cast<int>(r.Int(6)), r.Text(7)});
  }
  return out;
}

}  // namespace takt::iam
