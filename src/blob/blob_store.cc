#include "blob/blob_store.h"

#include <cstdint>
#include <utility>

#include "crypto/crypto.h"
#include "crypto/keyring.h"

namespace takt::blob {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMagic = "TKB1";
constexpr size_t kIdSize = 64;
constexpr size_t kDataKeySize = 32;

void AppendU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// An id from the caller, safe to quote in a message: short and printable, or described.
std::string DescribeId(std::string_view id) {
  bool printable = id.size() <= 80;
  for (char c : id) printable = printable && c >= 0x20 && c < 0x7f;
  if (printable) return "\"" + std::string(id) + "\"";
  return "of " + std::to_string(id.size()) + " bytes";
}

// The parsed header of a blob file; views into the file's bytes.
struct BlobFile {
  std::string_view key_id;
  std::string_view wrapped_key;
  std::string_view sealed;
};

// Parses the layout described in blob_store.h. The error is the reason only.
Result<BlobFile> ParseBlobFile(std::string_view bytes) {
  if (!bytes.starts_with(kMagic)) return FailedPrecondition("bad magic (not a TKB1 artifact file)");
  bytes.remove_prefix(kMagic.size());
  if (bytes.empty()) return FailedPrecondition("truncated header");
  const size_t key_id_size = static_cast<unsigned char>(bytes[0]);
  bytes.remove_prefix(1);
  if (bytes.size() < key_id_size + 4) return FailedPrecondition("truncated header");
  BlobFile file;
  file.key_id = bytes.substr(0, key_id_size);
  if (file.key_id.empty() || !IsLowerHex(file.key_id)) return FailedPrecondition("malformed master key id");
  bytes.remove_prefix(key_id_size);
  uint32_t wrapped_size = 0;
  for (int i = 0; i < 4; ++i) wrapped_size = (wrapped_size << 8) | static_cast<unsigned char>(bytes[i]);
  bytes.remove_prefix(4);
  if (bytes.size() < wrapped_size) return FailedPrecondition("truncated wrapped data key");
  file.wrapped_key = bytes.substr(0, wrapped_size);
  file.sealed = bytes.substr(wrapped_size);
  return file;
}

// Wipes a data key when it goes out of scope, on every path.
class KeyWiper {
 public:
  explicit KeyWiper(std::string& key) : key_(key) {}
  ~KeyWiper() { crypto::SecureErase(key_); }
  KeyWiper(const KeyWiper&) = delete;
  KeyWiper& operator=(const KeyWiper&) = delete;

 private:
  std::string& key_;
};

// Authentication failures mean a corrupt artifact; anything else (an OpenSSL
// failure) keeps its code.
Error Corrupt(const Error& e, std::string_view id) {
  if (e.code() == Code::kFailedPrecondition) {
    return e.WithContext("artifact " + std::string(id) + " is corrupt");
  }
  return e.WithContext("reading artifact " + std::string(id));
}

}  // namespace

Result<std::unique_ptr<BlobStore>> BlobStore::Open(const fs::path& dir, const crypto::Keyring* keyring,
                                                   FileSystem* fs) {
  if (keyring == nullptr) return InvalidArgument("blob store needs a keyring");
  if (dir.empty()) return InvalidArgument("blob store directory is empty");
  if (fs == nullptr) fs = DefaultFileSystem();
  auto created = fs->CreateDir(dir);
  if (!created) return std::unexpected(created.error().WithContext("opening blob store"));
  return std::unique_ptr<BlobStore>(new BlobStore(dir, keyring, fs));
}

BlobStore::BlobStore(fs::path dir, const crypto::Keyring* keyring, FileSystem* fs)
    : dir_(std::move(dir)), keyring_(keyring), fs_(fs) {}

bool BlobStore::IsValidId(std::string_view id) { return id.size() == kIdSize && IsLowerHex(id); }

fs::path BlobStore::PathFor(std::string_view id) const {
  return dir_ / std::string(id.substr(0, 2)) / std::string(id);
}

const fs::path& BlobStore::dir() const { return dir_; }

Result<std::string> BlobStore::Put(std::string_view plaintext) {
  std::string id = crypto::Sha256Hex(plaintext);
  const fs::path path = PathFor(id);
  if (fs_->Exists(path)) return id;  // content-addressed: the same bytes are already there

  const std::string& key_id = keyring_->key_id();
  if (key_id.empty() || key_id.size() > 255) return Internal("master key id has unusable length");
  const std::string context = "storing artifact " + id;
  std::string wrapped;
  std::string sealed;
  {
    std::string data_key = crypto::RandomBytes(kDataKeySize);
    KeyWiper wiper(data_key);
    auto wrapped_or = keyring_->WrapKey(data_key, id);
    if (!wrapped_or) return std::unexpected(wrapped_or.error().WithContext(context));
    wrapped = std::move(*wrapped_or);
    auto sealed_or = crypto::Seal(data_key, plaintext, id);
    if (!sealed_or) return std::unexpected(sealed_or.error().WithContext(context));
    sealed = std::move(*sealed_or);
  }

  std::string content;
  content.reserve(kMagic.size() + 1 + key_id.size() + 4 + wrapped.size() + sealed.size());
  content += kMagic;
  content += static_cast<char>(key_id.size());
  content += key_id;
  AppendU32(content, static_cast<uint32_t>(wrapped.size()));
  content += wrapped;
  content += sealed;
  std::string().swap(sealed);  // don't hold two copies of a large artifact

  auto dir_created = fs_->CreateDir(path.parent_path());
  if (!dir_created) return std::unexpected(dir_created.error().WithContext(context));
  auto written = fs_->WriteFileAtomic(path, content);
  if (!written) return std::unexpected(written.error().WithContext(context));
  return id;
}

Result<std::string> BlobStore::Get(std::string_view id) const {
  if (!IsValidId(id)) {
    return InvalidArgument("artifact id " + DescribeId(id) +
                           " is not 64 lowercase hex characters (a SHA-256)");
  }
  auto bytes = fs_->ReadFile(PathFor(id));
  if (!bytes) {
    if (bytes.error().code() == Code::kNotFound) {
      return NotFound("artifact " + std::string(id) + " not found");
    }
    return std::unexpected(bytes.error().WithContext("reading artifact " + std::string(id)));
  }
  auto file = ParseBlobFile(*bytes);
  if (!file) return std::unexpected(Corrupt(file.error(), id));
  if (file->key_id != keyring_->key_id()) {
    return FailedPrecondition("artifact " + std::string(id) +
                              " is corrupt or was sealed under another master key: its header names key " +
                              std::string(file->key_id) + ", the loaded master key is " + keyring_->key_id());
  }
  auto data_key = keyring_->UnwrapKey(file->wrapped_key, id);
  if (!data_key) return std::unexpected(Corrupt(data_key.error(), id));
  KeyWiper wiper(*data_key);
  auto plaintext = crypto::Open(*data_key, file->sealed, id);
  if (!plaintext) return std::unexpected(Corrupt(plaintext.error().WithContext("content"), id));
  const std::string actual = crypto::Sha256Hex(*plaintext);
  if (actual != id) {
    return FailedPrecondition("artifact " + std::string(id) + " is corrupt: its content hashes to " + actual);
  }
  return plaintext;
}

bool BlobStore::Contains(std::string_view id) const { return IsValidId(id) && fs_->Exists(PathFor(id)); }

}  // namespace takt::blob
