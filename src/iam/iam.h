// File: iam/iam.h
//
// Identity, authorization and audit. Principals (users and service
// identities) hold personas, named bundles of allowed actions, and may carry
// explicit denies, which win over any allow. Decisions are default deny.
// Groups collect principals; a project is one ML use case with members and a
// service identity of its own (`svc.<project>`), under which its pipelines,
// batch jobs and monitors act. Groups and projects are subjects of data grants
// (catalog): SubjectsOf names every subject a principal acts as.
// Tokens are 256-bit random strings shown once and stored only as SHA-256.
// Every mutation, every data read and every denied request leaves an audit
// record.
//
// Thread-safe: IamService may be shared; it keeps no state outside the
// database.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "store/database.h"

namespace takt::iam {

struct Principal {
  std::string id;    // "p-3fa9c2e01b7d"
  std::string name;  // "alice", "weld-pm-pipeline"
  std::string kind;  // "user" or "service"
  std::vector<std::string> personas;
  std::vector<std::string> denies;  // action patterns, e.g. "dataset:read", "model:*"
  std::string created_at;
};

struct Decision {
  bool allowed = false;
  std::string reason;  // "persona data-scientist allows dataset:read", "explicit deny model:*"
};

struct AuditRecord {
  int64_t id = 0;
  std::string time;
  std::string principal;  // name, or "anonymous"
  std::string action;
  std::string resource;  // "datasets/weld-telemetry/versions/1"
  bool allowed = false;
  int status = 0;  // the HTTP status the request got
  std::string detail;
  // For data reads: {"dataset":..,"version":..,"columns":[..],"masks":{..},
  // "row_filter":..,"rows":..}; "" otherwise.
  std::string access_json;
};

struct AuditQuery {
  std::string principal;
  std::string dataset;  // records of this dataset (resource datasets/<name> or datasets/<name>/...)
  std::string action_prefix;
  std::string resource_prefix;
  int limit = 100;
};

struct Group {
  std::string name;
  std::vector<std::string> members;  // principal names, sorted
  std::string created_by;
  std::string created_at;
};

struct Project {
  std::string name;
  std::string description;
  std::string service_principal;     // "svc.weld-pm"
  std::vector<std::string> members;  // principal names, sorted
  std::string created_by;
  std::string created_at;
};

// The service identity of a project: "svc." + project.
std::string ServicePrincipalName(std::string_view project);

// Every action takt knows; a route naming another is a programming error (tested).
const std::vector<std::string>& KnownActions();
// admin, data-engineer, data-scientist, ml-engineer, approver, auditor, service.
const std::vector<std::string>& PersonaNames();
// "dataset:*" matches "dataset:read"; "*" matches everything.
bool ActionMatches(std::string_view pattern, std::string_view action);
// The decision for a principal and an action, from its personas and denies.
Decision Authorize(const Principal& principal, std::string_view action);

class IamService {
 public:
  explicit IamService(store::Database* db) : db_(db) {}

  Status Migrate();

  // Creates a principal and its first token (returned in plaintext, once).
  // InvalidArgument for a bad name, unknown persona or unknown deny action;
  // AlreadyExists for a taken name.
  Result<std::pair<Principal, std::string>> CreatePrincipal(const std::string& name, const std::string& kind,
                                                            const std::vector<std::string>& personas,
                                                            const std::vector<std::string>& denies);
  // A new token for an existing principal.
  Result<std::string> IssueToken(const std::string& principal_id, const std::string& description);
  // Unauthenticated for a missing, malformed or unknown token.
  Result<Principal> Authenticate(std::string_view token) const;
  // By id or by name.
  Result<Principal> Get(std::string_view id_or_name) const;
  Result<std::vector<Principal>> List() const;

  // Groups. Names: 1-63 of [a-z0-9-], starting with a letter.
  Result<Group> CreateGroup(const std::string& name, const std::vector<std::string>& members,
                            const std::string& created_by);
  Result<Group> GetGroup(std::string_view name) const;
  Result<std::vector<Group>> ListGroups() const;

  // Projects: creates the project and its service principal (persona
  // "service") in one transaction. The service principal gets no token: it
  // acts only inside the server.
  Result<Project> CreateProject(const std::string& name, const std::string& description,
                                const std::vector<std::string>& members, const std::string& created_by);
  Result<Project> GetProject(std::string_view name) const;
  Result<std::vector<Project>> ListProjects() const;

  // kind "group" or "project". NotFound for an unknown group, project or
  // principal; adding a present member or removing an absent one is a no-op.
  Status AddMember(std::string_view kind, std::string_view name, std::string_view principal);
  Status RemoveMember(std::string_view kind, std::string_view name, std::string_view principal);

  // Every subject `principal` (a name) acts as, for grants:
  // "principal:<name>", "group:<g>" for its groups, "project:<p>" for projects
  // it is a member of or the service identity of.
  Result<std::vector<std::string>> SubjectsOf(std::string_view principal) const;
  // True if `principal` is a member of `project` or its service identity.
  Result<bool> IsProjectMember(std::string_view project, std::string_view principal) const;

  Status Audit(const AuditRecord& record);
  Result<std::vector<AuditRecord>> ListAudit(const AuditQuery& query) const;

 private:
  store::Database* db_;
};

}  // namespace takt::iam
