// IamService's access keys (declared in iam/iam.h): AWS-style key pairs for
// request signing (iam/sigv4.h). The secret is sealed under the master keyring
// with the aad "access-key:<id>", so a sealed secret cannot be moved to another
// key id; opened secrets are cached in memory until the key is deleted or
// deactivated.
#include <utility>

#include "core/time.h"
#include "crypto/crypto.h"
#include "iam/iam.h"

namespace takt::iam {
namespace {

constexpr const char* kKeyColumns =
    "k.id, p.name, k.description, k.status, k.created_at, k.last_used_at FROM access_keys k JOIN principals "
    "p "
    "ON p.id = k.principal_id";
// A key's use is written to the database at most this often.
constexpr int64_t kTouchIntervalMs = 60 * 1000;

AccessKey KeyFromRow(const store::Row& r) {
  return AccessKey{r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Text(5)};
}

std::string Aad(std::string_view id) { return "access-key:" + std::string(id); }

// "TKIA" + 16 characters of RFC 4648 base32 (A-Z, 2-7): 80 random bits.
std::string NewAccessKeyId() {
  static constexpr char kBase32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const std::string bytes = crypto::RandomBytes(10);
  std::string id = "TKIA";
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char b : bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      id += kBase32[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return id;
}

// 40 characters, like an AWS secret access key: base64 of 30 random bytes.
std::string NewSecret() { return crypto::Base64Encode(crypto::RandomBytes(30)); }

bool ValidKeyId(std::string_view id) {
  if (id.size() != 20 || id.substr(0, 4) != "TKIA") return false;
  for (char c : id.substr(4)) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7'))) return false;
  }
  return true;
}

}  // namespace

IamService::~IamService() {
  std::lock_guard lock(secrets_mu_);
  for (auto& [id, secret] : secrets_) crypto::SecureErase(secret);
}

void IamService::ForgetSecret(std::string_view id) const {
  std::lock_guard lock(secrets_mu_);
  if (auto it = secrets_.find(id); it != secrets_.end()) {
    crypto::SecureErase(it->second);
    secrets_.erase(it);
  }
  if (auto it = last_touch_ms_.find(id); it != last_touch_ms_.end()) last_touch_ms_.erase(it);
}

Result<std::pair<AccessKey, std::string>> IamService::CreateAccessKey(std::string_view principal,
                                                                      const std::string& description) {
  if (keyring_ == nullptr)
    return FailedPrecondition("access keys need the master keyring, which is not loaded");
  if (description.size() > 256)
    return InvalidArgument("an access key's description is at most 256 characters");
  TAKT_ASSIGN_OR_RETURN(Principal p, Get(principal));
  AccessKey key{NewAccessKeyId(), p.name, description, "active", NowIso(), ""};
  std::string secret = NewSecret();
  auto sealed = keyring_->WrapKey(secret, Aad(key.id));
  if (!sealed) {
    crypto::SecureErase(secret);
    return std::unexpected(sealed.error().WithContext("sealing the access key's secret"));
  }
  auto inserted = db_->Exec(
      "INSERT INTO access_keys (id, principal_id, description, secret_sealed, sealed_with, status, "
      "created_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?)",
      {key.id, p.id, key.description, crypto::Base64Encode(*sealed), keyring_->key_id(), key.status,
       key.created_at});
  if (!inserted) {
    crypto::SecureErase(secret);
    return std::unexpected(inserted.error().WithContext("storing access key " + key.id));
  }
  return std::make_pair(std::move(key), std::move(secret));
}

Result<AccessKey> IamService::GetAccessKey(std::string_view id) const {
  TAKT_ASSIGN_OR_RETURN(
      auto row, db_->QueryOne(std::string("SELECT ") + kKeyColumns + " WHERE k.id = ?", {std::string(id)},
                              "access key " + std::string(id) + " does not exist"));
  return KeyFromRow(row);
}

Result<std::vector<AccessKey>> IamService::ListAccessKeys(std::string_view principal) const {
  std::string sql = std::string("SELECT ") + kKeyColumns;
  std::vector<store::Value> params;
  if (!principal.empty()) {
    TAKT_ASSIGN_OR_RETURN(Principal p, Get(principal));
    sql += " WHERE k.principal_id = ?";
    params.push_back(p.id);
  }
  sql += " ORDER BY p.name, k.created_at, k.id";
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  std::vector<AccessKey> out;
  for (const auto& r : rows) out.push_back(KeyFromRow(r));
  return out;
}

Status IamService::DeleteAccessKey(std::string_view id) {
  TAKT_ASSIGN_OR_RETURN(int64_t n, db_->Exec("DELETE FROM access_keys WHERE id = ?", {std::string(id)}));
  // A lookup reads the key's row before the cache, so a secret cached by a
  // lookup racing this delete is never used again.
  ForgetSecret(id);
  if (n == 0) return NotFound("access key " + std::string(id) + " does not exist");
  return Ok();
}

Status IamService::SetAccessKeyStatus(std::string_view id, std::string_view status) {
  if (status != "active" && status != "inactive")
    return InvalidArgument("access key status '" + std::string(status) + "' is not active or inactive");
  TAKT_ASSIGN_OR_RETURN(int64_t n, db_->Exec("UPDATE access_keys SET status = ? WHERE id = ?",
                                             {std::string(status), std::string(id)}));
  ForgetSecret(id);
  if (n == 0) return NotFound("access key " + std::string(id) + " does not exist");
  return Ok();
}

Result<std::pair<Principal, std::string>> IamService::AccessKeySecret(std::string_view id) const {
  if (!ValidKeyId(id)) return Unauthenticated("The security token included in the request is invalid");
  if (keyring_ == nullptr)
    return FailedPrecondition("access keys need the master keyring, which is not loaded");
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT principal_id, secret_sealed, sealed_with, status FROM "
                                              "access_keys WHERE id = ?",
                                              {std::string(id)}));
  // Unknown and inactive keys read alike to the caller.
  if (rows.empty() || rows.front().Text(3) != "active")
    return Unauthenticated("The security token included in the request is invalid");
  const store::Row& row = rows.front();
  TAKT_ASSIGN_OR_RETURN(Principal p, Get(row.Text(0)));

  const int64_t now = RealClock().NowMillis();
  bool touch = false;
  std::string secret;
  {
    std::lock_guard lock(secrets_mu_);
    if (auto it = secrets_.find(id); it != secrets_.end()) secret = it->second;
    auto& last = last_touch_ms_[std::string(id)];
    if (now - last >= kTouchIntervalMs) {
      last = now;
      touch = true;
    }
  }
  if (secret.empty()) {
    if (row.Text(2) != keyring_->key_id()) {
      return FailedPrecondition("access key " + std::string(id) + " was sealed with master key " +
                                row.Text(2) + ", not the loaded " + keyring_->key_id());
    }
    TAKT_ASSIGN_OR_RETURN(std::string sealed, crypto::Base64Decode(row.Text(1)));
    auto opened = keyring_->UnwrapKey(sealed, Aad(id));
    if (!opened) return std::unexpected(opened.error().WithContext("opening access key " + std::string(id)));
    secret = std::move(*opened);
    std::lock_guard lock(secrets_mu_);
    secrets_[std::string(id)] = secret;
  }
  if (touch) {
    IgnoreError(db_->Exec("UPDATE access_keys SET last_used_at = ? WHERE id = ?",
                          {FormatIsoMillis(now), std::string(id)}));
  }
  return std::make_pair(std::move(p), std::move(secret));
}

}  // namespace takt::iam
