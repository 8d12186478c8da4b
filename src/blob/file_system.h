// File: blob/file_system.h
//
// The file system seam under the blob store, like leveldb's Env: the real one
// is POSIX (DefaultFileSystem); tests wrap it to inject failures.
//
// Thread safety: implementations must be safe to call from many threads at
// once. DefaultFileSystem() is stateless and lives for the whole process.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "core/result.h"

namespace takt::blob {

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Writes `data` to `path` atomically: a temp file `.tmp-<random>` in the same
  // directory (mode 0600), write, fsync, rename over `path`, fsync the
  // directory. Readers see the old file or the complete new one, never a part.
  // On failure before the rename the temp file is removed and `path` is
  // untouched. The directory must exist.
  virtual Status WriteFileAtomic(const std::filesystem::path& path, std::string_view data) = 0;

  // The whole file. NotFound if it does not exist.
  virtual Result<std::string> ReadFile(const std::filesystem::path& path) = 0;

  virtual bool Exists(const std::filesystem::path& path) = 0;

  // Creates directory `path` and any missing parents, each with mode 0700, and
  // makes the new entries durable (fsync of the parent). OK if it already
  // exists as a directory; FailedPrecondition if it exists as something else.
  virtual Status CreateDir(const std::filesystem::path& path) = 0;
};

// Real POSIX files. Never null; not owned by the caller.
FileSystem* DefaultFileSystem();

// True for the names WriteFileAtomic gives its temp files.
bool IsTempFileName(std::string_view file_name);

}  // namespace takt::blob
