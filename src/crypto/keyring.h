// File: crypto/keyring.h
//
// The installation's master key and the envelope encryption built on it.
//
// The master key is 32 random bytes in a file of mode 0600 (created by
// `takt init`; its path comes from TAKT_MASTER_KEY_FILE or the data dir). It
// never encrypts data directly: each artifact gets a fresh data key, and the
// master key only wraps (encrypts) those data keys, binding each to an aad such
// as the artifact id. `key_id()` names the master key beside what it wrapped,
// so a store opened with the wrong key says so instead of "corrupt".
//
// Thread safety: a Keyring is immutable after Load; its const methods may be
// called from any number of threads. It is movable, not copyable, and wipes the
// key from memory when destroyed.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "core/result.h"

namespace takt::crypto {

class Keyring {
 public:
  static constexpr size_t kMasterKeySize = 32;

  // Creates the file with 32 fresh random bytes (O_CREAT|O_EXCL, mode 0600,
  // fsync of the file and its directory). AlreadyExists if it is present:
  // an existing master key is never overwritten.
  static Status CreateMasterKeyFile(const std::filesystem::path& path);

  // Loads it. NotFound if missing (the message says to run `takt init` or set
  // TAKT_MASTER_KEY_FILE); FailedPrecondition if it is not a regular file, its
  // size is wrong, or it is readable or writable by group/others (mode & 077).
  static Result<Keyring> Load(const std::filesystem::path& path);

  // A keyring over the given bytes, for tests. `key32` should be 32 bytes;
  // with any other size WrapKey/UnwrapKey return InvalidArgument.
  static Keyring FromBytesForTest(std::string key32);

  Keyring(Keyring&& other) noexcept;
  Keyring& operator=(Keyring&& other) noexcept;
  Keyring(const Keyring&) = delete;
  Keyring& operator=(const Keyring&) = delete;
  ~Keyring();

  // Envelope encryption: seals a per-artifact data key under the master key,
  // binding `aad`. UnwrapKey returns FailedPrecondition ("authentication
  // failed: ...") for another master key, another aad or corrupt bytes.
  Result<std::string> WrapKey(std::string_view data_key, std::string_view aad) const;
  Result<std::string> UnwrapKey(std::string_view wrapped, std::string_view aad) const;

  // A 32-byte subkey for a purpose: HMAC-SHA256(master, "takt:" + purpose).
  // Deterministic, so e.g. pseudonyms stay stable across restarts.
  std::string DeriveKey(std::string_view purpose) const;

  // A short public id of the master key: the first 16 hex characters of
  // SHA-256(HMAC-SHA256(master, "key-id")). Safe to store and log.
  const std::string& key_id() const;

 private:
  explicit Keyring(std::string master_key);

  std::string master_key_;
  std::string key_id_;
};

}  // namespace takt::crypto
