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
// Access keys (AWS-style pairs "TKIA..." + a 40-character secret) let AWS SDKs
// sign requests (iam/sigv4.h). The secret must be recoverable to verify HMACs,
// so it is stored sealed under the master keyring (AES-256-GCM, the key id as
// aad) and shown in plaintext once, at creation.
//
// Thread-safe: IamService may be shared. Its only state outside the database
// is a mutex-guarded cache of opened access-key secrets (dropped when a key is
// deleted or deactivated, wiped on destruction).
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "crypto/keyring.h"
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

struct AccessKey {
  std::string id;         // "TKIA" + 16 base32 characters
  std::string principal;  // name
  std::string description;
  std::string status;  // "active" or "inactive"
  std::string created_at;
  std::string last_used_at;  // "" if never used
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
// Authorize(principal, action).allowed, without composing the reason: for the
// request path; ask Authorize for the reason of a refusal.
bool Allows(const Principal& principal, std::string_view action);

class IamService {
 public:
  explicit IamService(store::Database* db) : db_(db) {}
  ~IamService();
  // The keyring that seals access-key secrets (not owned; must outlive this).
  // Without one, the access-key operations return FailedPrecondition.
  void SetKeyring(const crypto::Keyring* keyring) { keyring_ = keyring; }

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

  // Access keys. Create returns the secret in plaintext, once; NotFound for
  // an unknown principal. List: every key, or those of `principal` (a name),
  // never a secret. Delete removes the key; SetAccessKeyStatus turns it
  // "active" or "inactive". NotFound for an unknown key id.
  Result<std::pair<AccessKey, std::string>> CreateAccessKey(std::string_view principal,
                                                            const std::string& description);
  Result<AccessKey> GetAccessKey(std::string_view id) const;
  Result<std::vector<AccessKey>> ListAccessKeys(std::string_view principal) const;
  Status DeleteAccessKey(std::string_view id);
  Status SetAccessKeyStatus(std::string_view id, std::string_view status);
  // For request signing: the principal of an active key and its secret.
  // Unauthenticated for an unknown or inactive key. Records the use
  // (last_used_at, at most once a minute per key).
  Result<std::pair<Principal, std::string>> AccessKeySecret(std::string_view id) const;

  Status Audit(const AuditRecord& record);
  Result<std::vector<AuditRecord>> ListAudit(const AuditQuery& query) const;

 private:
  void ForgetSecret(std::string_view id) const;

  store::Database* db_;
  const crypto::Keyring* keyring_ = nullptr;
  mutable std::mutex secrets_mu_;
  // Opened secrets by key id, and when each key's use was last written.
  mutable std::map<std::string, std::string, std::less<>> secrets_;
  mutable std::map<std::string, int64_t, std::less<>> last_touch_ms_;
};

}  // namespace takt::iam
