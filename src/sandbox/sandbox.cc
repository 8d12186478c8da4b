#include "sandbox/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>
#include <utility>

#include "core/json.h"
#include "core/posix.h"
#include "sandbox/bwrap_plan.h"
#include "sandbox/log_lines.h"

namespace takt::sandbox {
namespace {

using Clock = std::chrono::steady_clock;
using internal::BwrapPlan;
using internal::kInfoFd;

constexpr int64_t kDefaultLogBytes = int64_t{64} << 20;
constexpr auto kPollInterval = std::chrono::milliseconds(100);
constexpr size_t kReadChunk = 64 * 1024;
constexpr int kMaxTreeDepth = 128;
constexpr int kReportFd = kInfoFd + 1;  // the monitor's report pipe, in the monitor

// Text on stderr that says an allocation failed (Python, numpy, C++, libc, the loader).
constexpr std::string_view kMemoryMarkers[] = {"MemoryError", "bad_alloc", "Cannot allocate memory",
                                               "out of memory", "failed to map segment"};
constexpr std::string_view kChildErrorPrefix = "takt sandbox: ";

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g s", s);
  return buf;
}

std::string FormatBytes(int64_t bytes) {
  static constexpr std::pair<int64_t, const char*> kUnits[] = {{int64_t{1} << 40, "TiB"},
                                                               {int64_t{1} << 30, "GiB"},
                                                               {int64_t{1} << 20, "MiB"},
                                                               {int64_t{1} << 10, "KiB"}};
  for (const auto& [size, name] : kUnits) {
    if (bytes < size) continue;
    char buf[48];
    if (bytes % size == 0) {
      std::snprintf(buf, sizeof(buf), "%lld %s", static_cast<long long>(bytes / size), name);
    } else {
      std::snprintf(buf, sizeof(buf), "%.1f %s", static_cast<double>(bytes) / static_cast<double>(size),
                    name);
    }
    return buf;
  }
  return std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
}

std::string SignalText(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return "signal " + std::to_string(sig) + (abbrev ? " (SIG" + std::string(abbrev) + ")" : "");
}

double Seconds(const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; }

// A pipe whose ends are close-on-exec and numbered above the descriptors the
// monitor sets up (0..kReportFd), so its dup2 calls never clobber one another.
Status MakePipe(int fds[2]) {
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoError(errno, "creating a pipe");
  for (int i = 0; i < 2; ++i) {
    if (fds[i] > kReportFd) continue;
    const int moved = ::fcntl(fds[i], F_DUPFD_CLOEXEC, kReportFd + 1);
    const int err = errno;
    ::close(fds[i]);
    fds[i] = moved;
    if (moved < 0) {
      if (i == 0) ::close(fds[1]);
      if (i == 1) ::close(fds[0]);
      return ErrnoError(err, "moving a pipe descriptor");
    }
  }
  return Ok();
}

// Total size of the regular files under `roots` (not following symlinks;
// hard links once; roots inside other roots once).
int64_t TreeBytes(const std::vector<std::string>& roots) {
  struct Walker {
    std::set<std::pair<dev_t, ino_t>> linked;
    int64_t total = 0;

    void Visit(int parent_fd, const char* name, const struct stat& st, int depth) {
      if (S_ISREG(st.st_mode)) {
        if (st.st_nlink > 1 && !linked.emplace(st.st_dev, st.st_ino).second) return;
        total += st.st_size;
        return;
      }
      if (!S_ISDIR(st.st_mode) || depth > kMaxTreeDepth) return;
      const int fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return;
      DIR* dir = ::fdopendir(fd);
      if (dir == nullptr) {
        ::close(fd);
        return;
      }
      while (const dirent* entry = ::readdir(dir)) {
        if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0) continue;
        struct stat child;
        if (::fstatat(::dirfd(dir), entry->d_name, &child, AT_SYMLINK_NOFOLLOW) != 0) continue;
        Visit(::dirfd(dir), entry->d_name, child, depth + 1);
      }
      ::closedir(dir);
    }
  } walker;
  std::vector<std::string> canonical;
  for (const std::string& root : roots) {
    std::error_code ec;
    canonical.push_back(std::filesystem::weakly_canonical(root, ec).string());
  }
  for (size_t i = 0; i < canonical.size(); ++i) {
    const std::string& root = canonical[i];
    const bool nested = std::any_of(canonical.begin(), canonical.end(), [&](const std::string& other) {
      return &other != &root && (other == root ? &other < &root : root.starts_with(other + "/"));
    });
    if (nested) continue;
    struct stat st;
    if (::lstat(root.c_str(), &st) == 0) walker.Visit(AT_FDCWD, root.c_str(), st, 0);
  }
  return walker.total;
}

// In the forked child: says what failed on its stderr (the step's stderr pipe).
[[noreturn]] void ChildFail(const char* what) {
  const std::string_view prefix = kChildErrorPrefix;
  ssize_t ignored = ::write(STDERR_FILENO, prefix.data(), prefix.size());
  ignored = ::write(STDERR_FILENO, what, std::strlen(what));
  ignored = ::write(STDERR_FILENO, "\n", 1);
  (void)ignored;
  ::_exit(126);
}

// What the monitor (below) tells Run over the report pipe: first bwrap's
// pid (also its process group), then, when every process of the step is
// gone, this.
struct MonitorReport {
  int bwrap_status = 0;
  int bwrap_reaped = 0;
  rusage usage{};  // RUSAGE_CHILDREN: every process of the step, reaped by the monitor or below it
};

void ResetSignals() {
  // Dispositions and the mask are inherited through exec: a server that
  // ignores SIGPIPE must not make the step ignore it.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

// The forked child of Run's thread: only async-signal-safe calls from here on.
//
// bwrap's outer process exits as soon as its namespace's init reports the
// step's exit, without reaping that init, so neither its exit nor its
// rusage covers the step. This monitor is a child subreaper: the init is
// reparented to it, and it exits only once it has reaped everything, with
// the rusage of all of it. It dies with Run's thread (PDEATHSIG), and bwrap
// (--die-with-parent) with it.
[[noreturn]] void RunMonitor(pid_t run_pid, const std::vector<char*>& argv, const std::vector<char*>& envp,
                             const BwrapPlan& plan, const int fds[5]) {
  ::setpgid(0, 0);  // not in the server's group: a Ctrl-C for the server is not for the step
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != run_pid) ::_exit(0);  // Run's thread is already gone
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  ResetSignals();
  for (int fd = 0; fd < 5; ++fd) {
    if (::dup2(fds[fd], fd) < 0) ::_exit(126);
  }
  ::fcntl(kReportFd, F_SETFD, FD_CLOEXEC);  // bwrap does not get it
  ::close_range(kReportFd + 1, ~0U, 0);     // nothing else of the server leaks into the sandbox
  const pid_t monitor_pid = ::getpid();
  const pid_t bwrap = ::_Fork();
  if (bwrap < 0) ChildFail("cannot fork");
  if (bwrap == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // until bwrap's own --die-with-parent takes over
    if (::getppid() != monitor_pid) ::_exit(126);
    for (const auto& [resource, limit] : plan.rlimits) {
      if (::setrlimit(resource, &limit) != 0) ChildFail("setting a resource limit failed");
    }
    if (plan.affinity && ::sched_setaffinity(0, sizeof(*plan.affinity), &*plan.affinity) != 0)
      ChildFail("setting the CPU affinity failed");
    ::execve(argv[0], argv.data(), envp.data());
    ChildFail("cannot execute bwrap");
  }
  for (int fd = 0; fd <= kInfoFd; ++fd) ::close(fd);  // the pipes end with the step, not with us
  ssize_t ignored = ::write(kReportFd, &bwrap, sizeof(bwrap));
  MonitorReport report;
  for (;;) {
    int status = 0;
    const pid_t pid = ::wait4(-1, &status, 0, nullptr);
    if (pid == bwrap) {
      report.bwrap_status = status;
      report.bwrap_reaped = 1;
    } else if (pid < 0 && errno != EINTR) {
      break;  // ECHILD: nothing left
    }
  }
  ::getrusage(RUSAGE_CHILDREN, &report.usage);
  ignored = ::write(kReportFd, &report, sizeof(report));
  (void)ignored;
  ::_exit(0);
}

// glibc 2.36's <sys/pidfd.h> lacks extern "C" for C++; the system call is plain.
int PidFd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// One running sandbox: the monitor process (our child), bwrap (its child and
// process group leader; the namespace's init is in that group too), and what
// bwrap's --info-fd said about the pid namespace.
class Sandbox {
 public:
  explicit Sandbox(pid_t monitor) : monitor_(monitor), pidfd_(PidFd(monitor)) {}
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;
  // If Run is left early (on_line threw), nothing may outlive it.
  ~Sandbox() {
    if (reaped_) return;
    Kill();
    if (bwrap_ <= 0) ::kill(monitor_, SIGKILL);  // bwrap follows (PDEATHSIG)
    int status;
    while (::waitpid(monitor_, &status, 0) < 0 && errno == EINTR) {
    }
  }

  int pidfd() const { return pidfd_.get(); }
  bool reaped() const { return reaped_; }
  // Whether the monitor reported bwrap's exit (false if the monitor itself failed).
  bool has_report() const { return report_bytes_.size() == sizeof(pid_t) + sizeof(MonitorReport); }
  MonitorReport report() const {
    MonitorReport r;
    if (has_report()) std::memcpy(&r, report_bytes_.data() + sizeof(pid_t), sizeof(r));
    return r;
  }

  // Reaps the monitor if it has exited: then the whole tree is gone.
  void Poll() {
    if (reaped_) return;
    int status;
    const pid_t r = ::waitpid(monitor_, &status, WNOHANG);
    if (r == monitor_ || (r < 0 && errno == ECHILD)) reaped_ = true;
  }

  void AddReport(std::string_view bytes) {
    report_bytes_ += bytes;
    if (bwrap_ <= 0 && report_bytes_.size() >= sizeof(pid_t)) {
      std::memcpy(&bwrap_, report_bytes_.data(), sizeof(pid_t));
      if (kill_pending_) Kill();
    }
  }

  // The info JSON: {"child-pid": <pid of the namespace's init>, "pid-namespace": <inode>, ...}.
  void SetInfo(std::string_view text) {
    auto json = ParseJson(text, "bwrap info");
    if (!json || !json->is_object()) return;
    if (auto it = json->find("child-pid"); it != json->end() && it->is_number_integer())
      init_pid_ = it->get<pid_t>();
    if (auto it = json->find("pid-namespace"); it != json->end() && it->is_number_integer())
      pid_ns_ = "pid:[" + std::to_string(it->get<unsigned long long>()) + "]";
  }

  // SIGTERM to every process in the sandbox's pid namespace (its init
  // ignores it; it ends when the step's main process does).
  void Terminate() {
    if (reaped_) return;
    if (init_pid_ <= 0 || pid_ns_.empty()) {  // not set up yet: nothing to be graceful with
      Kill();
      return;
    }
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) {
      Kill();
      return;
    }
    char link[64];
    while (const dirent* entry = ::readdir(proc)) {
      char* end = nullptr;
      const long pid = std::strtol(entry->d_name, &end, 10);
      if (end == entry->d_name || *end != '\0' || pid == init_pid_) continue;
      const std::string ns_path = "/proc/" + std::string(entry->d_name) + "/ns/pid";
      const ssize_t n = ::readlink(ns_path.c_str(), link, sizeof(link) - 1);
      if (n <= 0) continue;
      if (std::string_view(link, static_cast<size_t>(n)) == pid_ns_) ::kill(static_cast<pid_t>(pid), SIGTERM);
    }
    ::closedir(proc);
  }

  // SIGKILL to bwrap's process group: bwrap and the namespace's init, whose
  // death kills everything in the namespace. The monitor then reaps and exits.
  void Kill() {
    if (reaped_) return;
    if (bwrap_ > 0) {
      ::kill(-bwrap_, SIGKILL);
    } else {
      kill_pending_ = true;  // the monitor writes bwrap's pid right after forking it
    }
  }

 private:
  pid_t monitor_;
  UniqueFd pidfd_;  // -1 when pidfd_open is unavailable: then Poll runs every interval
  bool reaped_ = false;
  pid_t bwrap_ = 0;
  bool kill_pending_ = false;
  std::string report_bytes_;
  pid_t init_pid_ = 0;
  std::string pid_ns_;
};

// Splits, sanitizes, caps and watches the two output streams.
class Output {
 public:
  Output(const LineSink& sink, int64_t cap) : sink_(sink), cap_(cap) {}

  void Feed(int stream, std::string_view data) {
    splitters_[stream].Feed(data, [&](std::string_view line, bool binary) { Deliver(stream, line, binary); });
  }
  void Finish() {
    for (int stream = 0; stream < 2; ++stream)
      splitters_[stream].Finish([&](std::string_view line, bool binary) { Deliver(stream, line, binary); });
  }

  int64_t lines = 0, dropped = 0, binary = 0;
  bool memory_hint = false;                // stderr said an allocation failed
  bool file_too_large = false;             // stderr said EFBIG
  std::optional<std::string> setup_error;  // the first stderr line, when bwrap or our child wrote it

 private:
  void Deliver(int stream, std::string_view line, bool is_binary) {
    if (stream == 1) {
      if (!seen_stderr_) {
        seen_stderr_ = true;
        if (line.starts_with("bwrap: ")) setup_error = std::string(line.substr(7));
        if (line.starts_with(kChildErrorPrefix))
          setup_error = std::string(line.substr(kChildErrorPrefix.size()));
      }
      for (const std::string_view marker : kMemoryMarkers) {
        if (line.find(marker) != std::string_view::npos) memory_hint = true;
      }
      if (line.find("File too large") != std::string_view::npos) file_too_large = true;
    }
    const int64_t size = static_cast<int64_t>(line.size()) + 1;
    if (dropping_ || delivered_ + size > cap_) {
      dropping_ = true;
      ++dropped;
      return;
    }
    delivered_ += size;
    ++lines;
    if (is_binary) ++binary;
    if (sink_) sink_(stream == 0 ? "stdout" : "stderr", line);
  }

  const LineSink& sink_;
  int64_t cap_;
  int64_t delivered_ = 0;
  bool dropping_ = false;
  bool seen_stderr_ = false;
  internal::LineSplitter splitters_[2];
};

// Reads what is there now. False at end of file (or a read error).
bool ReadAvailable(int fd, std::string* buf) {
  buf->resize(kReadChunk);
  for (;;) {
    const ssize_t n = ::read(fd, buf->data(), buf->size());
    if (n > 0) {
      buf->resize(static_cast<size_t>(n));
      return true;
    }
    buf->clear();
    if (n < 0 && errno == EINTR) {
      buf->resize(kReadChunk);
      continue;
    }
    return n < 0 && errno == EAGAIN;
  }
}

std::string StartProblemText(const std::string& setup_error) {
  // bwrap: "execvp /code/x.sh: No such file or directory" -> "/code/x.sh: No such file or directory"
  if (setup_error.starts_with("execvp ")) return setup_error.substr(7);
  return setup_error;
}

Result<RunResult> RunPlanned(const Spec& spec, const BwrapPlan& plan, const LineSink& on_line,
                             const std::atomic<bool>* cancel) {
  RunResult result;
  if (!plan.start_problem.empty()) {
    result.outcome = Outcome::kStartFailed;
    result.reason = "could not start: " + plan.start_problem;
    return result;
  }
  const Limits& limits = spec.limits;

  std::vector<char*> argv, envp;
  for (const std::string& a : plan.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : plan.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  UniqueFd devnull(
      ::fcntl(UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)).get(), F_DUPFD_CLOEXEC, kReportFd + 1));
  if (devnull.get() < 0) return ErrnoError(errno, "opening /dev/null");
  int out[2], err[2], info[2], rep[2];
  TAKT_RETURN_IF_ERROR(MakePipe(out));
  UniqueFd out_r(out[0]), out_w(out[1]);
  TAKT_RETURN_IF_ERROR(MakePipe(err));
  UniqueFd err_r(err[0]), err_w(err[1]);
  TAKT_RETURN_IF_ERROR(MakePipe(info));
  UniqueFd info_r(info[0]), info_w(info[1]);
  TAKT_RETURN_IF_ERROR(MakePipe(rep));
  UniqueFd report_r(rep[0]), report_w(rep[1]);
  for (const int fd : {out_r.get(), err_r.get(), info_r.get(), report_r.get()})
    ::fcntl(fd, F_SETFL, O_NONBLOCK);

  const int child_fds[5] = {devnull.get(), out_w.get(), err_w.get(), info_w.get(), report_w.get()};
  const pid_t run_pid = ::getpid();
  const Clock::time_point start = Clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) RunMonitor(run_pid, argv, envp, plan, child_fds);
  ::setpgid(pid, pid);  // also done by the child; whichever runs first
  Sandbox sandbox(pid);
  out_w.Close();
  err_w.Close();
  info_w.Close();
  report_w.Close();

  Output output(on_line, limits.log_bytes > 0 ? limits.log_bytes : kDefaultLogBytes);
  std::string info_text, buf;
  bool out_open = true, err_open = true, info_open = true, report_open = true;

  constexpr Clock::time_point kNever = Clock::time_point::max();
  auto after = [&](double seconds) {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  };
  const Clock::time_point deadline = limits.wall_seconds > 0 ? after(limits.wall_seconds) : kNever;
  const bool watch_disk = limits.disk_bytes > 0 && !plan.writable_roots.empty();
  Clock::time_point next_disk_check = watch_disk ? start + kPollInterval : kNever;
  Clock::time_point kill_at = kNever;
  std::optional<Outcome> stopped;  // why Run stopped the step, if it did
  bool killed = false;

  auto stop = [&](Outcome why, bool graceful) {
    if (stopped) return;
    stopped = why;
    if (graceful && limits.grace_seconds > 0) {
      sandbox.Terminate();
      kill_at = after(limits.grace_seconds);
    } else {
      sandbox.Kill();
      killed = true;
    }
  };

  while (!sandbox.reaped()) {
    Clock::time_point now = Clock::now();
    if (cancel != nullptr && cancel->load()) stop(Outcome::kCancelled, true);
    if (now >= deadline) stop(Outcome::kTimedOut, true);
    if (now >= next_disk_check) {
      if (TreeBytes(plan.writable_roots) > limits.disk_bytes) stop(Outcome::kDiskQuota, false);
      const Clock::time_point done = Clock::now();
      next_disk_check =
          done + std::max<Clock::duration>(kPollInterval, 5 * (done - now));  // big trees: less often
      now = done;
    }
    if (stopped && !killed && now >= kill_at) {
      sandbox.Kill();
      killed = true;
    }

    Clock::time_point wake = std::min({now + kPollInterval, deadline, kill_at, next_disk_check});
    const auto wait_ms =
        std::chrono::ceil<std::chrono::milliseconds>(std::max(wake - now, Clock::duration(0)));
    pollfd fds[5];
    int n = 0, out_i = -1, err_i = -1, info_i = -1, report_i = -1;
    if (out_open) fds[out_i = n++] = {out_r.get(), POLLIN, 0};
    if (err_open) fds[err_i = n++] = {err_r.get(), POLLIN, 0};
    if (info_open) fds[info_i = n++] = {info_r.get(), POLLIN, 0};
    if (report_open) fds[report_i = n++] = {report_r.get(), POLLIN, 0};
    if (sandbox.pidfd() >= 0) fds[n++] = {sandbox.pidfd(), POLLIN, 0};
    if (::poll(fds, static_cast<nfds_t>(n), static_cast<int>(wait_ms.count())) < 0 && errno != EINTR) {
      return ErrnoError(errno, "poll");  // ~Sandbox kills and reaps
    }
    auto ready = [&](int i) { return i >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0; };
    if (ready(out_i)) {
      out_open = ReadAvailable(out_r.get(), &buf);
      output.Feed(0, buf);
    }
    if (ready(err_i)) {
      err_open = ReadAvailable(err_r.get(), &buf);
      output.Feed(1, buf);
    }
    if (ready(info_i)) {
      info_open = ReadAvailable(info_r.get(), &buf);
      info_text += buf;
      if (!info_open) sandbox.SetInfo(info_text);
    }
    if (ready(report_i)) {
      report_open = ReadAvailable(report_r.get(), &buf);
      sandbox.AddReport(buf);
    }
    sandbox.Poll();
  }
  while (report_open && ReadAvailable(report_r.get(), &buf) && !buf.empty()) sandbox.AddReport(buf);
  // Every process of the step is gone (the monitor reaped them all). What they wrote is in the pipes;
  // read it without waiting for an end of file that a leaked descriptor
  // could withhold.
  for (int stream = 0; stream < 2; ++stream) {
    const int fd = stream == 0 ? out_r.get() : err_r.get();
    for (bool open = stream == 0 ? out_open : err_open; open;) {
      open = ReadAvailable(fd, &buf);
      if (buf.empty()) break;
      output.Feed(stream, buf);
    }
  }
  output.Finish();

  const MonitorReport report = sandbox.report();
  const rusage& usage = report.usage;
  result.wall_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.cpu_seconds = Seconds(usage.ru_utime) + Seconds(usage.ru_stime);
  result.max_rss_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  result.log_lines = output.lines;
  result.dropped_log_lines = output.dropped;
  result.binary_lines = output.binary;

  if (!sandbox.has_report() || !report.bwrap_reaped) {
    // The monitor could not fork bwrap, or was killed from outside: bwrap's status is unknown.
    if (output.setup_error) {
      result.reason = "could not start: " + StartProblemText(*output.setup_error);
      return result;
    }
    return Internal("the sandbox's monitor process ended without reporting bwrap's exit status");
  }
  // bwrap exits with the step's exit code, or 128+N when the step was killed by signal N.
  const int status = report.bwrap_status;
  if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    if (code > 128 && code < 128 + NSIG) {
      result.signal = code - 128;
    } else {
      result.exit_code = code;
    }
  }
  const int sig = result.signal;
  const bool failed = !(result.exit_code == 0 && sig == 0);

  auto set = [&](Outcome o, std::string reason) {
    result.outcome = o;
    result.reason = std::move(reason);
  };
  const std::string cpu_text =
      "used more than its CPU time limit of " + FormatSeconds(std::ceil(limits.cpu_seconds));
  const std::string disk_text = "wrote more than its disk quota of " + FormatBytes(limits.disk_bytes);
  const std::string memory_text = "exceeded its memory limit of " + FormatBytes(limits.memory_bytes);
  if (stopped == Outcome::kCancelled) {
    set(Outcome::kCancelled, "was cancelled");
  } else if (stopped == Outcome::kTimedOut) {
    set(Outcome::kTimedOut, "was stopped after its time limit of " + FormatSeconds(limits.wall_seconds));
  } else if (stopped == Outcome::kDiskQuota) {
    set(Outcome::kDiskQuota, disk_text);
  } else if (output.setup_error && (result.exit_code == 1 || result.exit_code == 126)) {
    set(Outcome::kStartFailed, "could not start: " + StartProblemText(*output.setup_error));
  } else if (limits.cpu_seconds > 0 &&
             (sig == SIGXCPU || (sig == SIGKILL && result.cpu_seconds >= std::floor(limits.cpu_seconds)))) {
    set(Outcome::kCpuLimit, cpu_text);
  } else if (watch_disk && (sig == SIGXFSZ || (failed && output.file_too_large) ||
                            TreeBytes(plan.writable_roots) > limits.disk_bytes)) {
    set(Outcome::kDiskQuota, disk_text);
  } else if (limits.disk_bytes > 0 && sig == SIGXFSZ) {
    set(Outcome::kDiskQuota, disk_text);  // one file over RLIMIT_FSIZE, e.g. in /tmp
  } else if (limits.memory_bytes > 0 && failed &&
             (output.memory_hint || sig == SIGKILL || result.max_rss_bytes >= limits.memory_bytes / 10 * 9)) {
    set(Outcome::kMemoryLimit, memory_text);
  } else if (sig != 0) {
    set(Outcome::kSignaled, "was killed by " + SignalText(sig));
  } else {
    set(Outcome::kExited, "exited with code " + std::to_string(result.exit_code));
  }
  return result;
}

Status CheckAvailable() {
  const std::string& bwrap = internal::BwrapPath();
  if (bwrap.empty()) {
    return FailedPrecondition(
        "bubblewrap is not installed (no /usr/bin/bwrap): install the Debian package bubblewrap "
        "(apt-get install bubblewrap)");
  }
  Spec probe;
  probe.argv = {"/usr/bin/true"};
  probe.limits.wall_seconds = 30;
  std::string said;
  auto plan = internal::MakePlan(probe);
  if (!plan) return std::unexpected(plan.error().WithContext("probing bubblewrap"));
  auto result = RunPlanned(
      probe, *plan,
      [&](std::string_view stream, std::string_view line) {
        if (stream == "stderr" && said.size() < 1000) said += (said.empty() ? "" : " ") + std::string(line);
      },
      nullptr);
  if (!result) return std::unexpected(result.error().WithContext("probing bubblewrap"));
  if (!result->ok()) {
    return FailedPrecondition("bubblewrap (" + bwrap + ") cannot create a sandbox here: /usr/bin/true " +
                              result->reason + (said.empty() ? "" : " (" + said + ")") +
                              "; it needs user, pid, mount and network namespaces (sysctl "
                              "user.max_user_namespaces > 0, and kernel.unprivileged_userns_clone = 1 when "
                              "not root), which some container runtimes forbid");
  }
  return Ok();
}

}  // namespace

std::string_view OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kExited:
      return "exited";
    case Outcome::kSignaled:
      return "signaled";
    case Outcome::kTimedOut:
      return "timeout";
    case Outcome::kCpuLimit:
      return "cpu";
    case Outcome::kMemoryLimit:
      return "memory";
    case Outcome::kDiskQuota:
      return "disk";
    case Outcome::kCancelled:
      return "cancelled";
    case Outcome::kStartFailed:
      return "start_failed";
  }
  return "unknown";
}

Status Available() {
  static const Status status = CheckAvailable();
  return status;
}

Result<RunResult> Run(const Spec& spec, const LineSink& on_line, const std::atomic<bool>* cancel) {
  TAKT_ASSIGN_OR_RETURN(const BwrapPlan plan, internal::MakePlan(spec));
  TAKT_RETURN_IF_ERROR(Available());
  return RunPlanned(spec, plan, on_line, cancel);
}

}  // namespace takt::sandbox
