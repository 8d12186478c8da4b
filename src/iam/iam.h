// File: iam/iam.h
//
// Identity, authorization and audit. Principals (users and service
// identities) hold personas, named bundles of allowed actions, and may carry
// explicit denies, which win over any allow. Decisions are default deny.
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
};

struct AuditQuery {
  std::string principal;
  std::string action_prefix;
  std::string resource_prefix;
  int limit = 100;
};

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

  Status Audit(const AuditRecord& record);
  Result<std::vector<AuditRecord>> ListAudit(const AuditQuery& query) const;

 private:
  store::Database* db_;
};

}  // namespace takt::iam
