#include "slurm/command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <thread>

#include "core/posix.h"

namespace takt::slurm {
namespace {

constexpr size_t kMaxCaptured = 4 << 20;

using Clock = std::chrono::steady_clock;

std::string ErrnoText(int err) { return std::system_category().message(err); }

// Milliseconds left until `deadline`, at least 0, for poll().
int MillisLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 60'000));
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

void KillAndReap(pid_t pid) {
  ::kill(-pid, SIGKILL);  // the child leads its own process group
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                 double timeout_seconds, const std::string* fd3) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    return InvalidArgument("a command needs an absolute program path");
  }
  const std::string program = std::filesystem::path(argv[0]).filename().string();
  if (::access(argv[0].c_str(), X_OK) != 0) {
    return FailedPrecondition(argv[0] + " cannot be run: " + ErrnoText(errno));
  }

  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Internal("pipe: " + ErrnoText(errno));
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return Internal("pipe: " + ErrnoText(err));
  }
  UniqueFd out_read(out_pipe[0]);
  UniqueFd err_read(err_pipe[0]);
  UniqueFd out_write(out_pipe[1]);
  UniqueFd err_write(err_pipe[1]);

  UniqueFd fd3_file(fd3 != nullptr ? ::memfd_create("takt-slurm-fd3", MFD_CLOEXEC) : -1);
  if (fd3 != nullptr) {
    if (fd3_file.get() < 0) return Internal("memfd_create: " + ErrnoText(errno));
    TAKT_RETURN_IF_ERROR(WriteAll(fd3_file.get(), *fd3, "the data for fd 3"));
    if (::lseek(fd3_file.get(), 0, SEEK_SET) != 0) return Internal("lseek: " + ErrnoText(errno));
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);  // dup2 clears close-on-exec
  posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2);
  // Last, so that no source above is overwritten first (all are >= 3).
  if (fd3 != nullptr) posix_spawn_file_actions_adddup2(&actions, fd3_file.get(), 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none;
  sigset_t defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);

  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Internal("cannot run " + argv[0] + ": " + ErrnoText(rc));
  out_write.Close();
  err_write.Close();

  const double seconds = std::isfinite(timeout_seconds) && timeout_seconds > 0 ? timeout_seconds : 1;
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  char shown[32];
  std::snprintf(shown, sizeof(shown), "%g", seconds);
  const std::string timed_out = program + " did not finish within " + shown + " s";

  CommandOutput result;
  bool out_open = true;
  bool err_open = true;
  char buffer[16384];
  while (out_open || err_open) {
    pollfd fds[2];
    nfds_t n = 0;
    if (out_open) fds[n++] = {out_read.get(), POLLIN, 0};
    if (err_open) fds[n++] = {err_read.get(), POLLIN, 0};
    const int ready = ::poll(fds, n, MillisLeft(deadline));
    if (ready < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      KillAndReap(pid);
      return Internal("poll: " + ErrnoText(err));
    }
    if (ready == 0) {
      KillAndReap(pid);
      return Unavailable(timed_out);
    }
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      const bool is_out = fds[i].fd == out_read.get();
      std::string& sink = is_out ? result.out : result.err;
      const ssize_t got = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        (is_out ? out_open : err_open) = false;
        continue;
      }
      if (sink.size() < kMaxCaptured) {
        sink.append(buffer, std::min(static_cast<size_t>(got), kMaxCaptured - sink.size()));
      }
    }
  }

  // Both pipes are closed; the program is exiting (or has closed them and
  // lingers, which the deadline covers).
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      result.exit_code = DecodeWaitStatus(status);
      return result;
    }
    if (done < 0 && errno != EINTR) return Internal("waitpid: " + ErrnoText(errno));
    if (Clock::now() >= deadline) {
      KillAndReap(pid);
      return Unavailable(timed_out);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace takt::slurm
