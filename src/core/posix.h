// File: core/posix.h
//
// Small helpers for code that talks to POSIX files directly (the master key,
// the blob store): errno as a takt Error, an owning file descriptor, full
// writes and directory fsync. Thread-safe; no shared state.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include "core/result.h"

namespace takt {

// "<what>: <strerror>" with a code by errno: ENOENT NotFound, EACCES/EPERM
// PermissionDenied, ENOSPC/EDQUOT ResourceExhausted, anything else Internal.
std::unexpected<Error> ErrnoError(int err, const std::string& what);

// Owns a file descriptor; closes it on scope exit.
class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  // Closes now and returns close()'s result: close can report a deferred write error.
  int Close();

 private:
  int fd_;
};

// Writes all of `data`, retrying on EINTR; errors name `what`.
Status WriteAll(int fd, std::string_view data, const std::string& what);
// fsync of a directory, so that entries created or renamed in it survive a crash.
Status FsyncDir(const std::filesystem::path& dir);

// Names the calling thread for top -H, perf and gdb ("takt-http-0"); Linux
// keeps 15 bytes, the rest is cut. Best effort: a failure is ignored.
void SetThreadName(std::string_view name);

}  // namespace takt
