// File: blob/blob_store.h
//
// A content-addressed, encrypted artifact store: an artifact (dataset chunk,
// model, report, log) is stored once under its id = SHA-256 of its plaintext,
// and is immutable from then on.
//
// On disk: `<dir>/<first 2 hex of id>/<id>`, each file
//   "TKB1" | u8 n | key id (n bytes) | u32 big-endian m | wrapped data key (m bytes)
//          | Seal(data key, plaintext, aad = id)
// A fresh random 32-byte data key per artifact, wrapped by the master key
// (crypto::Keyring) with aad = id. Binding the id into both layers means a file
// copied to another id's path does not decrypt, and Get also re-checks the hash.
//
// Thread safety: Put, Get and Contains may be called concurrently from any
// number of threads and processes sharing the directory. Files are written to a
// temp file and renamed into place, so readers never see a partial artifact and
// two writers of the same id both leave a valid file.
//
// Ownership: the store does not own the keyring or the file system; both must
// outlive it.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "blob/file_system.h"
#include "core/result.h"

namespace takt::crypto {
class Keyring;
}  // namespace takt::crypto

namespace takt::blob {

class BlobStore {
 public:
  // `dir` (and missing parents) is created if missing, mode 0700.
  // fs == nullptr → DefaultFileSystem(). InvalidArgument if keyring is null.
  static Result<std::unique_ptr<BlobStore>> Open(const std::filesystem::path& dir,
                                                 const crypto::Keyring* keyring, FileSystem* fs = nullptr);

  BlobStore(const BlobStore&) = delete;
  BlobStore& operator=(const BlobStore&) = delete;

  // Stores `plaintext`; returns its id = Sha256Hex(plaintext). Idempotent: an
  // id already present is not rewritten (nor checked: a corrupt file stays
  // corrupt). On error no file exists for the id unless one existed before,
  // or only the final fsync of the directory failed (the file is then
  // complete and valid, but may not survive a crash).
  Result<std::string> Put(std::string_view plaintext);

  // Reads, decrypts, verifies the GCM tags and that SHA-256(plaintext) == id.
  // InvalidArgument for an id that is not 64 lowercase hex characters; NotFound
  // for an unknown id; FailedPrecondition ("artifact <id> is corrupt: ...") on a
  // tag or hash mismatch, or when the artifact was sealed under another master
  // key.
  Result<std::string> Get(std::string_view id) const;

  // True if a file for `id` exists (it is not decrypted). False for invalid ids.
  bool Contains(std::string_view id) const;

  const std::filesystem::path& dir() const;

  // True if `id` is 64 lowercase hex characters, the form of a SHA-256.
  static bool IsValidId(std::string_view id);

 private:
  BlobStore(std::filesystem::path dir, const crypto::Keyring* keyring, FileSystem* fs);
  std::filesystem::path PathFor(std::string_view id) const;

  const std::filesystem::path dir_;
  const crypto::Keyring* const keyring_;
  FileSystem* const fs_;
};

}  // namespace takt::blob
