#include "crypto/keyring.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/posix.h"
#include "crypto/crypto.h"

namespace takt::crypto {
namespace {

// Domain separation: data sealed under the master key by WrapKey can never be
// confused with anything else sealed under it later.
constexpr std::string_view kWrapAadPrefix = "takt:wrap-key:";

std::string OctalMode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

Status WriteNewKeyFile(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return AlreadyExists("master key file " + path.string() + " already exists; refusing to overwrite it");
    }
    return ErrnoError(errno, "creating master key file " + path.string());
  }
  UniqueFd closer(fd);
  auto fail = [&](Error e) -> Status {
    ::unlink(path.c_str());  // never leave a half-written key behind
    return std::unexpected(std::move(e));
  };
  // The umask may have removed bits from 0600; the mode must be exactly 0600.
  if (::fchmod(fd, 0600) != 0) return fail(ErrnoError(errno, "chmod of " + path.string()).error());
  std::string key = RandomBytes(Keyring::kMasterKeySize);
  Status written = WriteAll(fd, key, path.string());
  SecureErase(key);
  if (!written) return fail(written.error());
  if (::fsync(fd) != 0) return fail(ErrnoError(errno, "fsync of " + path.string()).error());
  if (closer.Close() != 0) return fail(ErrnoError(errno, "closing " + path.string()).error());
  return Ok();
}

}  // namespace

Status Keyring::CreateMasterKeyFile(const std::filesystem::path& path) {
  TAKT_RETURN_IF_ERROR(WriteNewKeyFile(path));
  TAKT_RETURN_IF_ERROR(FsyncDir(path.parent_path()));
  return Ok();
}

Result<Keyring> Keyring::Load(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return NotFound("master key file " + path.string() +
                      " not found: run `takt init` to create one, or set TAKT_MASTER_KEY_FILE to its path");
    }
    return ErrnoError(errno, "opening master key file " + path.string());
  }
  UniqueFd closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, "stat of master key file " + path.string());
  if (!S_ISREG(st.st_mode)) {
    return FailedPrecondition("master key file " + path.string() + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    return FailedPrecondition("master key file " + path.string() + " has mode " + OctalMode(st.st_mode) +
                              "; it must not be accessible by group or others (chmod 600 " + path.string() +
                              ")");
  }
  if (st.st_size != static_cast<off_t>(kMasterKeySize)) {
    return FailedPrecondition("master key file " + path.string() + " is " + std::to_string(st.st_size) +
                              " bytes; a master key is exactly " + std::to_string(kMasterKeySize));
  }
  std::string key(kMasterKeySize, '\0');
  size_t got = 0;
  while (got < key.size()) {
    const ssize_t n = ::read(fd, key.data() + got, key.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      SecureErase(key);
      return ErrnoError(err, "reading master key file " + path.string());
    }
    if (n == 0) {
      SecureErase(key);
      return FailedPrecondition("master key file " + path.string() + " shrank while being read");
    }
    got += static_cast<size_t>(n);
  }
  return Keyring(std::move(key));
}

Keyring Keyring::FromBytesForTest(std::string key32) { return Keyring(std::move(key32)); }

Keyring::Keyring(std::string master_key)
    : master_key_(std::move(master_key)),
      key_id_(Sha256Hex(HmacSha256(master_key_, "key-id")).substr(0, 16)) {}

Keyring::Keyring(Keyring&& other) noexcept
    : master_key_(std::move(other.master_key_)), key_id_(std::move(other.key_id_)) {
  SecureErase(other.master_key_);
}

Keyring& Keyring::operator=(Keyring&& other) noexcept {
  if (this != &other) {
    SecureErase(master_key_);
    master_key_ = std::move(other.master_key_);
    key_id_ = std::move(other.key_id_);
    SecureErase(other.master_key_);
  }
  return *this;
}

Keyring::~Keyring() { SecureErase(master_key_); }

Result<std::string> Keyring::WrapKey(std::string_view data_key, std::string_view aad) const {
  if (data_key.empty()) return InvalidArgument("data key to wrap is empty");
  std::string full_aad(kWrapAadPrefix);
  full_aad += aad;
  return Seal(master_key_, data_key, full_aad);
}

Result<std::string> Keyring::UnwrapKey(std::string_view wrapped, std::string_view aad) const {
  std::string full_aad(kWrapAadPrefix);
  full_aad += aad;
  auto key = Open(master_key_, wrapped, full_aad);
  if (!key) return std::unexpected(key.error().WithContext("unwrapping data key with master key " + key_id_));
  return key;
}

std::string Keyring::DeriveKey(std::string_view purpose) const {
  std::string label = "takt:";
  label += purpose;
  return HmacSha256(master_key_, label);
}

const std::string& Keyring::key_id() const { return key_id_; }

}  // namespace takt::crypto
