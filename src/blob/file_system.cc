#include "blob/file_system.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/posix.h"
#include "crypto/crypto.h"

namespace takt::blob {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kTempPrefix = ".tmp-";

fs::path DirOf(const fs::path& path) {
  fs::path parent = path.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

// Write, fsync and close `tmp`, then rename it over `path`. Leaves `tmp`
// behind on failure: the caller removes it.
Status WriteAndRename(int raw_fd, const fs::path& tmp, const fs::path& path, std::string_view data) {
  UniqueFd fd(raw_fd);
  TAKT_RETURN_IF_ERROR(WriteAll(fd.get(), data, tmp.string()));
  if (::fsync(fd.get()) != 0) return ErrnoError(errno, "fsync of " + tmp.string());
  if (fd.Close() != 0) return ErrnoError(errno, "closing " + tmp.string());
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return ErrnoError(errno, "renaming " + tmp.string() + " to " + path.string());
  }
  return Ok();
}

class PosixFileSystem final : public FileSystem {
 public:
  Status WriteFileAtomic(const fs::path& path, std::string_view data) override {
    const fs::path dir = DirOf(path);
    fs::path tmp;
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
      tmp = dir / (std::string(kTempPrefix) + crypto::HexEncode(crypto::RandomBytes(8)));
      fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0 && (errno != EEXIST || attempt >= 3)) {
        return ErrnoError(errno, "creating temp file in " + dir.string());
      }
    }
    Status written = WriteAndRename(fd, tmp, path, data);
    if (!written) {
      ::unlink(tmp.c_str());
      return written;
    }
    // The file is complete and in place; only its durability across a crash is
    // in doubt if this fails.
    return FsyncDir(dir);
  }

  Result<std::string> ReadFile(const fs::path& path) override {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      if (errno == ENOENT) return NotFound("file " + path.string() + " not found");
      return ErrnoError(errno, "opening " + path.string());
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, "stat of " + path.string());
    if (!S_ISREG(st.st_mode)) return FailedPrecondition(path.string() + " is not a regular file");
    std::string out;
    out.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (true) {
      if (got == out.size()) out.resize(out.size() + 64 * 1024);  // the file grew, or probe for EOF
      const ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, "reading " + path.string());
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    out.resize(got);
    return out;
  }

  bool Exists(const fs::path& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }

  Status CreateDir(const fs::path& path) override {
    fs::path dir = path.lexically_normal();
    if (!dir.has_filename() && dir.has_relative_path()) dir = dir.parent_path();  // "a/b/" → "a/b"
    return CreateDirs(dir);
  }

 private:
  static Status CreateDirs(const fs::path& dir) {
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) return Ok();
      return FailedPrecondition(dir.string() + " exists and is not a directory");
    }
    if (errno != ENOENT) return ErrnoError(errno, "stat of " + dir.string());
    const fs::path parent = DirOf(dir);
    if (parent != dir) TAKT_RETURN_IF_ERROR(CreateDirs(parent));
    if (::mkdir(dir.c_str(), 0700) != 0) {
      if (errno == EEXIST && ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        return Ok();  // another thread or process created it first
      }
      return ErrnoError(errno, "creating directory " + dir.string());
    }
    // The umask may have removed bits from 0700.
    if (::chmod(dir.c_str(), 0700) != 0) return ErrnoError(errno, "chmod of " + dir.string());
    return FsyncDir(parent);
  }
};

}  // namespace

FileSystem* DefaultFileSystem() {
  static PosixFileSystem* const fs = new PosixFileSystem();  // never destroyed: usable during exit
  return fs;
}

bool IsTempFileName(std::string_view file_name) { return file_name.starts_with(kTempPrefix); }

}  // namespace takt::blob
