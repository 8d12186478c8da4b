#include "iam/iam.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "core/time.h"
#include "crypto/crypto.h"

namespace takt::iam {
namespace {

const std::map<std::string, std::vector<std::string>>& TablePersonaActions() {
  static const auto* m = new std::map<std::string, std::vector<std::string>>{
      {"admin", {"*"}},
      {"data-engineer",
       {"dataset:*", "grant:*", "group:*", "project:list", "project:describe", "lineage:read", "run:list",
        "run:describe", "model:list", "model:describe", "endpoint:list", "endpoint:describe",
        "principal:whoami", "principal:list"}},
      {"data-scientist",
       {"dataset:list",
        "dataset:describe",
        "dataset:read",
        "grant:list",
        "project:list",
        "project:describe",
        "lineage:read",
        "pipeline:run",
        "pipeline:save",
        "pipeline:list",
        "pipeline:describe",
        "pipeline:schedule",
        "run:*",
        "model:list",
        "model:describe",
        "model:download",
        "endpoint:list",
        "endpoint:describe",
        "endpoint:invoke",
        "principal:whoami",
        "model:register",
        "model:update",
        "release:describe",
        "endpoint:logs",
        "endpoint:read-capture"}},
      {"ml-engineer",
       {"dataset:list",     "dataset:describe", "project:list",      "project:describe",  "lineage:read",
        "run:list",         "run:describe",     "run:logs",          "pipeline:list",     "model:list",
        "model:describe",   "model:download",   "model:register",    "model:update",      "model:alias",
        "endpoint:*",       "principal:whoami", "release:describe",  "release:configure", "release:start",
        "release:rollback", "event:list",       "event:rule-manage", "event:replay",      "metrics:read"}},
      {"approver",
       {"run:list", "run:describe", "run:logs", "model:list", "model:describe", "model:approve",
        "model:reject", "model:alias", "endpoint:list", "endpoint:describe", "project:describe",
        "lineage:read", "principal:whoami", "release:describe", "release:approve", "release:reject",
        "endpoint:invoke", "endpoint:logs"}},
      {"auditor",
       {"audit:list",        "event:list",     "dataset:list",     "dataset:describe", "grant:list",
        "group:list",        "project:list",   "project:describe", "lineage:read",     "run:list",
        "run:describe",      "pipeline:list",  "model:list",       "model:describe",   "endpoint:list",
        "endpoint:describe", "principal:list", "principal:whoami", "release:describe", "endpoint:logs",
        "metrics:read"}},
      // A metrics scraper (Prometheus): reads /metrics and nothing else.
      {"monitoring", {"metrics:read", "principal:whoami"}},
      {"service", {"endpoint:invoke", "endpoint:describe", "model:describe", "principal:whoami"}},
  };
  return *m;
}

// The table, and every persona but admin (which has "*") manages access keys:
// its own only, as the routes enforce ("own or admin").
const std::map<std::string, std::vector<std::string>>& PersonaActions() {
  static const auto* m = [] {
    auto* personas = new std::map<std::string, std::vector<std::string>>(TablePersonaActions());
    for (auto& [name, actions] : *personas) {
      if (name != "admin") actions.push_back("access-key:*");
    }
    return personas;
  }();
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

// Group and project names, like dataset names.
Status ValidateSubjectName(std::string_view kind, std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && name[0] >= 'a' && name[0] <= 'z';
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  if (!ok) {
    return InvalidArgument(
        std::string(kind) + " name '" + std::string(name) +
        "' is invalid: use 1-63 lowercase letters, digits and '-', starting with a letter");
  }
  return Ok();
}

Status CheckKind(std::string_view kind) {
  if (kind != "group" && kind != "project")
    return InvalidArgument("membership kind '" + std::string(kind) + "' is not group or project");
  return Ok();
}

// group_members / project_members, keyed by (name, principal).
std::string MemberTable(std::string_view kind) {
  return kind == "group" ? "group_members" : "project_members";
}
std::string OwnerColumn(std::string_view kind) { return kind == "group" ? "group_name" : "project"; }

Result<std::vector<std::string>> Members(const store::Database& db_const, std::string_view kind,
                                         std::string_view name) {
  auto& db = const_cast<store::Database&>(db_const);
  TAKT_ASSIGN_OR_RETURN(auto rows, db.Query("SELECT principal FROM " + MemberTable(kind) + " WHERE " +
                                                OwnerColumn(kind) + " = ? ORDER BY principal",
                                            {std::string(name)}));
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.Text(0));
  return out;
}

}  // namespace

const std::vector<std::string>& KnownActions() {
  static const auto* a = new std::vector<std::string>{
      "principal:create",  "principal:list",    "principal:whoami",  "token:create",
      "dataset:create",    "dataset:list",      "dataset:describe",  "dataset:read",
      "pipeline:run",      "run:list",          "run:describe",      "run:logs",
      "run:read-artifact", "model:list",        "model:describe",    "model:approve",
      "model:reject",      "endpoint:list",     "endpoint:describe", "endpoint:invoke",
      "audit:list",        "event:list",        "model:download",    "dataset:update",
      "dataset:schedule",  "grant:create",      "grant:list",        "grant:delete",
      "group:create",      "group:list",        "group:manage",      "project:create",
      "project:list",      "project:describe",  "project:manage",    "lineage:read",
      "run:cancel",        "pipeline:network",  "pipeline:save",     "pipeline:list",
      "pipeline:describe", "pipeline:schedule", "model:register",    "model:update",
      "model:alias",       "release:describe",  "release:configure", "release:start",
      "release:approve",   "release:reject",    "release:rollback",  "endpoint:logs",
      "event:rule-manage", "event:replay",      "access-key:create", "access-key:list",
      "access-key:delete", "access-key:update", "metrics:read",      "endpoint:read-capture",
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

bool Allows(const Principal& principal, std::string_view action) {
  for (const auto& deny : principal.denies) {
    if (ActionMatches(deny, action)) return false;
  }
  for (const auto& persona : principal.personas) {
    auto it = PersonaActions().find(persona);
    if (it == PersonaActions().end()) continue;
    for (const auto& allowed : it->second) {
      if (ActionMatches(allowed, action)) return true;
    }
  }
  return false;
}

std::string ServicePrincipalName(std::string_view project) { return "svc." + std::string(project); }

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
        "CREATE INDEX audit_log_principal ON audit_log (principal, id);"},
       {2, "groups-projects-access-audit",
        "CREATE TABLE groups_ (name TEXT PRIMARY KEY, created_by TEXT NOT NULL, created_at TEXT NOT NULL);"
        "CREATE TABLE group_members (group_name TEXT NOT NULL REFERENCES groups_(name), principal TEXT NOT "
        "NULL REFERENCES principals(name), PRIMARY KEY (group_name, principal));"
        "CREATE TABLE projects (name TEXT PRIMARY KEY, description TEXT NOT NULL, service_principal TEXT NOT "
        "NULL REFERENCES principals(name), created_by TEXT NOT NULL, created_at TEXT NOT NULL);"
        "CREATE TABLE project_members (project TEXT NOT NULL REFERENCES projects(name), principal TEXT NOT "
        "NULL REFERENCES principals(name), PRIMARY KEY (project, principal));"
        "CREATE INDEX group_members_principal ON group_members (principal);"
        "CREATE INDEX project_members_principal ON project_members (principal);"
        "ALTER TABLE audit_log ADD COLUMN access_json TEXT NOT NULL DEFAULT '';"},
       // secret_sealed: base64 of Keyring::WrapKey(secret, aad "access-key:<id>");
       // sealed_with: the keyring's key_id, so another master key is named as such.
       {3, "access-keys",
        "CREATE TABLE access_keys (id TEXT PRIMARY KEY, principal_id TEXT NOT NULL REFERENCES "
        "principals(id), "
        "description TEXT NOT NULL, secret_sealed TEXT NOT NULL, sealed_with TEXT NOT NULL, status TEXT NOT "
        "NULL, created_at TEXT NOT NULL, last_used_at TEXT);"
        "CREATE INDEX access_keys_principal ON access_keys (principal_id);"}});
}

Result<Group> IamService::CreateGroup(const std::string& name, const std::vector<std::string>& members,
                                      const std::string& created_by) {
  TAKT_RETURN_IF_ERROR(ValidateSubjectName("group", name));
  for (const auto& m : members) TAKT_RETURN_IF_ERROR(Get(m));
  const std::string now = NowIso();
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    auto r = tx.Exec("INSERT INTO groups_ (name, created_by, created_at) VALUES (?, ?, ?)",
                     {name, created_by, now});
    if (!r && r.error().code() == Code::kAlreadyExists)
      return AlreadyExists("group " + name + " already exists");
    TAKT_RETURN_IF_ERROR(r);
    for (const auto& m : members) {
      TAKT_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO group_members (group_name, principal) VALUES (?, ?) ON CONFLICT DO NOTHING",
                  {name, m}));
    }
    return Ok();
  }));
  return GetGroup(name);
}

Result<Group> IamService::GetGroup(std::string_view name) const {
  TAKT_ASSIGN_OR_RETURN(auto row,
                        db_->QueryOne("SELECT name, created_by, created_at FROM groups_ WHERE name = ?",
                                      {std::string(name)}, "group " + std::string(name) + " does not exist"));
  Group g{row.Text(0), {}, row.Text(1), row.Text(2)};
  TAKT_ASSIGN_OR_RETURN(g.members, Members(*db_, "group", g.name));
  return g;
}

Result<std::vector<Group>> IamService::ListGroups() const {
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT name FROM groups_ ORDER BY name"));
  std::vector<Group> out;
  for (const auto& r : rows) {
    TAKT_ASSIGN_OR_RETURN(Group g, GetGroup(r.Text(0)));
    out.push_back(std::move(g));
  }
  return out;
}

Result<Project> IamService::CreateProject(const std::string& name, const std::string& description,
                                          const std::vector<std::string>& members,
                                          const std::string& created_by) {
  TAKT_RETURN_IF_ERROR(ValidateSubjectName("project", name));
  for (const auto& m : members) TAKT_RETURN_IF_ERROR(Get(m));
  const std::string service = ServicePrincipalName(name);
  const std::string now = NowIso();
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(auto existing, tx.Query("SELECT name FROM projects WHERE name = ?", {name}));
    if (!existing.empty()) return AlreadyExists("project " + name + " already exists");
    auto p = tx.Exec(
        "INSERT INTO principals (id, name, kind, personas, denies, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        {NewId("p"), service, std::string("service"), std::string("service"), std::string(""), now});
    if (!p && p.error().code() == Code::kAlreadyExists) {
      return AlreadyExists("cannot create project " + name + ": a principal named " + service +
                           " already exists");
    }
    TAKT_RETURN_IF_ERROR(p);
    TAKT_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO projects (name, description, service_principal, created_by, created_at) VALUES "
                "(?, ?, ?, "
                "?, ?)",
                {name, description, service, created_by, now}));
    for (const auto& m : members) {
      TAKT_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO project_members (project, principal) VALUES (?, ?) ON CONFLICT DO NOTHING",
                  {name, m}));
    }
    return Ok();
  }));
  return GetProject(name);
}

Result<Project> IamService::GetProject(std::string_view name) const {
  TAKT_ASSIGN_OR_RETURN(
      auto row,
      db_->QueryOne("SELECT name, description, service_principal, created_by, created_at FROM projects "
                    "WHERE name = ?",
                    {std::string(name)}, "project " + std::string(name) + " does not exist"));
  Project p{row.Text(0), row.Text(1), row.Text(2), {}, row.Text(3), row.Text(4)};
  TAKT_ASSIGN_OR_RETURN(p.members, Members(*db_, "project", p.name));
  return p;
}

Result<std::vector<Project>> IamService::ListProjects() const {
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT name FROM projects ORDER BY name"));
  std::vector<Project> out;
  for (const auto& r : rows) {
    TAKT_ASSIGN_OR_RETURN(Project p, GetProject(r.Text(0)));
    out.push_back(std::move(p));
  }
  return out;
}

Status IamService::AddMember(std::string_view kind, std::string_view name, std::string_view principal) {
  TAKT_RETURN_IF_ERROR(CheckKind(kind));
  if (kind == "group") {
    TAKT_RETURN_IF_ERROR(GetGroup(name));
  } else {
    TAKT_RETURN_IF_ERROR(GetProject(name));
  }
  TAKT_ASSIGN_OR_RETURN(Principal p, Get(principal));
  TAKT_RETURN_IF_ERROR(db_->Exec("INSERT INTO " + MemberTable(kind) + " (" + OwnerColumn(kind) +
                                     ", principal) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                 {std::string(name), p.name}));
  return Ok();
}

Status IamService::RemoveMember(std::string_view kind, std::string_view name, std::string_view principal) {
  TAKT_RETURN_IF_ERROR(CheckKind(kind));
  if (kind == "group") {
    TAKT_RETURN_IF_ERROR(GetGroup(name));
  } else {
    TAKT_RETURN_IF_ERROR(GetProject(name));
  }
  TAKT_ASSIGN_OR_RETURN(Principal p, Get(principal));
  TAKT_RETURN_IF_ERROR(
      db_->Exec("DELETE FROM " + MemberTable(kind) + " WHERE " + OwnerColumn(kind) + " = ? AND principal = ?",
                {std::string(name), p.name}));
  return Ok();
}

Result<std::vector<std::string>> IamService::SubjectsOf(std::string_view principal) const {
  TAKT_ASSIGN_OR_RETURN(Principal p, Get(principal));
  std::vector<std::string> out = {"principal:" + p.name};
  TAKT_ASSIGN_OR_RETURN(auto groups, db_->Query("SELECT group_name FROM group_members WHERE principal = ? "
                                                "ORDER BY group_name",
                                                {p.name}));
  for (const auto& r : groups) out.push_back("group:" + r.Text(0));
  TAKT_ASSIGN_OR_RETURN(
      auto projects, db_->Query("SELECT project FROM project_members WHERE principal = ? UNION SELECT name "
                                "FROM projects WHERE service_principal = ? ORDER BY 1",
                                {p.name, p.name}));
  for (const auto& r : projects) out.push_back("project:" + r.Text(0));
  return out;
}

Result<bool> IamService::IsProjectMember(std::string_view project, std::string_view principal) const {
  TAKT_ASSIGN_OR_RETURN(Project p, GetProject(project));
  if (p.service_principal == principal) return true;
  return std::find(p.members.begin(), p.members.end(), principal) != p.members.end();
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
      db_->Exec("INSERT INTO audit_log (time, principal, action, resource, allowed, status, detail, "
                "access_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                {r.time.empty() ? NowIso() : r.time, r.principal, r.action, r.resource,
                 int64_t{r.allowed ? 1 : 0}, int64_t{r.status}, r.detail, r.access_json}));
  return Ok();
}

Result<std::vector<AuditRecord>> IamService::ListAudit(const AuditQuery& q) const {
  std::string sql =
      "SELECT id, time, principal, action, resource, allowed, status, detail, access_json FROM audit_log "
      "WHERE 1=1";
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
  if (!q.dataset.empty()) {
    sql += " AND (resource = ? OR substr(resource, 1, ?) = ?)";
    const std::string base = "datasets/" + q.dataset;
    params.push_back(base);
    params.push_back(static_cast<int64_t>(base.size() + 1));
    params.push_back(base + "/");
  }
  sql += " ORDER BY id DESC LIMIT ?";
  params.push_back(static_cast<int64_t>(std::clamp(q.limit, 1, 10000)));
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  std::vector<AuditRecord> out;
  for (const auto& r : rows) {
    out.push_back({r.Int(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Int(5) != 0,
                   static_cast<int>(r.Int(6)), r.Text(7), r.Text(8)});
  }
  return out;
}

}  // namespace takt::iam
