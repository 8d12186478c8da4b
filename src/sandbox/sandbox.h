// File: sandbox/sandbox.h
//
// Runs one pipeline `command` step (any executable: `/usr/bin/python3
// train.py --eta 0.1`) inside a bubblewrap sandbox, and turns everything it
// prints into log lines.
//
// What the step sees: read-only /usr (with Debian's merged-/usr symlinks /bin,
// /lib, /lib64, /sbin), the parts of /etc that programs need (loader cache,
// alternatives, passwd/group, time zone, TLS certificates, name resolution,
// Python's site configuration), a private /proc, a minimal /dev, an empty
// private /tmp, and the mounts of its Spec; nothing else of the host (not
// /work, /root, /home, the data directory, other runs). The root is read-only.
// It runs in its own user, pid, mount, IPC, UTS (hostname `takt-step`) and
// network namespace (only a loopback of its own, unless `network`), in its own
// session, with every capability dropped (so it cannot remount a read-only
// input writable), and with exactly the environment of the Spec (bwrap adds
// PWD).
//
// Limits are rlimits set before bwrap starts (inherited by every process of
// the step): RLIMIT_AS for memory (virtual address space: allocation fails,
// Python raises MemoryError), RLIMIT_CPU per process (SIGXCPU), RLIMIT_FSIZE per
// file (SIGXFSZ, or EFBIG where the program ignores it, as Python does), no
// core files. The wall clock, the total size of the writable trees and
// cancellation are watched by Run itself. When the step's main process ends,
// the rest of its processes are killed with it (the pid namespace ends), so
// Run never waits for stray background processes.
//
// Exit statuses come through bwrap, which reports "killed by signal N" as
// exit code 128+N (like a shell): a program that itself exits with 129..192
// is reported as killed by that signal.
//
// Thread safety: Run may be called from several threads at once; each call
// owns its processes. It calls `on_line` on the calling thread only, never
// concurrently, and blocks until every process of the step is gone. The
// calling thread must stay alive meanwhile (bwrap's --die-with-parent is
// tied to it: if the thread or the process dies, the sandbox is killed).
// The process must not ignore SIGCHLD or reap children it did not start.
//
// Errors: Run returns an Error (InvalidArgument) only for misuse — empty argv,
// relative or reserved mount paths, a host mount path that does not exist, an
// environment variable name with '=' —, FailedPrecondition when bwrap is not
// usable here (see Available), and Internal when the machine fails us (no
// pipes, no fork). Everything the program does, including not starting, is a
// RunResult.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace takt::sandbox {

// A host directory or file shown inside the sandbox at `inside`. Both absolute.
struct Mount {
  std::string host;
  std::string inside;
};

struct Limits {
  double wall_seconds = 0;   // 0 = none. On expiry: SIGTERM to every process, SIGKILL after grace_seconds.
  double grace_seconds = 2;  // also used for cancellation
  double cpu_seconds = 0;    // RLIMIT_CPU, per process, rounded up to whole seconds (0 = none)
  int64_t memory_bytes = 0;  // RLIMIT_AS, virtual address space per process (0 = none)
  // Total bytes (file sizes, hard links once) under the writable mounts, polled about every 100 ms
  // (less often for large trees) and checked once more at the end; plus RLIMIT_FSIZE per file. Going
  // over kills the step at once (SIGKILL, no grace). 0 = none.
  int64_t disk_bytes = 0;
  int64_t tmp_bytes =
      0;  // size of the private /tmp (RAM): 0 = memory_bytes if set, else the kernel's default
  int64_t log_bytes = 0;  // stdout+stderr bytes delivered (0 = 64 MiB); later lines are dropped and counted
  int cpus = 0;  // >0: OMP/OPENBLAS/MKL_NUM_THREADS default to it, and the step is pinned to that many CPUs
};

struct Spec {
  std::vector<std::string> argv;           // argv[0] absolute, or a name found on the sandbox PATH
  std::map<std::string, std::string> env;  // the complete environment; PATH defaulted if absent
  std::vector<Mount> read_only;            // inputs, the step's code dir
  std::vector<Mount> writable;             // output dir, model dir
  std::string cwd;                         // inside the sandbox ("" = first writable mount, else "/")
  bool network = false;                    // false: a network namespace with only its own loopback
  Limits limits;
};

enum class Outcome {
  kExited,    // the program ended by itself (exit_code; 0 = success)
  kSignaled,  // killed by a signal not explained by a limit
  kTimedOut,  // wall_seconds passed
  kCpuLimit,  // cpu_seconds used up (SIGXCPU, or SIGKILL at the hard limit)
  // Failed while memory_bytes was set, and the failure points at memory: stderr says MemoryError,
  // bad_alloc, "Cannot allocate memory", "out of memory" or "failed to map segment"; or a SIGKILL
  // (the OOM killer); or a peak RSS of 90% of the limit.
  kMemoryLimit,
  kDiskQuota,    // the writable trees grew over disk_bytes, or one file hit RLIMIT_FSIZE
  kCancelled,    // `cancel` became true
  kStartFailed,  // the program could not be started (not found, not executable, bad interpreter)
};

// "exited", "signaled", "timeout", "cpu", "memory", "disk", "cancelled", "start_failed".
std::string_view OutcomeName(Outcome o);

struct RunResult {
  Outcome outcome = Outcome::kStartFailed;
  int exit_code = -1;  // when the program exited (also under a limit outcome)
  int signal = 0;      // when the program was killed by a signal
  double wall_seconds = 0;
  double cpu_seconds = 0;     // user + system of every process of the step
  int64_t max_rss_bytes = 0;  // largest resident set of any one process
  int64_t log_lines = 0;      // lines delivered to on_line
  int64_t dropped_log_lines = 0;
  int64_t binary_lines = 0;  // delivered lines that were replaced by "<binary output: N bytes>"
  // One sentence, subject omitted: "exited with code 3", "was killed by signal 11 (SIGSEGV)",
  // "was stopped after its time limit of 5 s", "exceeded its memory limit of 512 MiB",
  // "wrote more than its disk quota of 1 GiB", "used more than its CPU time limit of 10 s",
  // "was cancelled", "could not start: /usr/bin/nope does not exist".
  std::string reason;

  bool ok() const { return outcome == Outcome::kExited && exit_code == 0; }
};

using LineSink = std::function<void(std::string_view stream, std::string_view line)>;

// Runs `spec` under bwrap and blocks until its whole process tree is gone.
// `on_line(stream, line)` gets every line of "stdout" and "stderr" (on the
// calling thread), sanitized by SanitizeLine. `cancel` (may be null) is polled
// about every 100 ms; when it becomes true the step is terminated (SIGTERM,
// SIGKILL after grace_seconds) and the outcome is kCancelled.
Result<RunResult> Run(const Spec& spec, const LineSink& on_line, const std::atomic<bool>* cancel = nullptr);

// Ok when bwrap is installed and can create a sandbox here (checked once,
// cached); otherwise FailedPrecondition saying why and what to install.
Status Available();

// One line of output as a log line: valid UTF-8 (invalid bytes become U+FFFD),
// no control characters but tab (terminal escape sequences are removed; a
// carriage return starts the line over, as on a terminal, so a progress bar
// keeps its last state; a trailing "\r" is dropped), at most 4096 bytes
// (longer lines are cut and end with "…"). A line that is mostly binary
// (over 30% of its bytes invalid UTF-8 or control characters) becomes
// "<binary output: N bytes>" and sets *was_binary.
std::string SanitizeLine(std::string_view raw, bool* was_binary = nullptr);

}  // namespace takt::sandbox
