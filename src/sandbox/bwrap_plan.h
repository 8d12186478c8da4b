// File: sandbox/bwrap_plan.h
//
// Internal to the sandbox module: checks a Spec and turns it into what the
// forked child needs to exec bwrap (argument vector, environment, rlimits, CPU
// affinity), so that the child itself only makes system calls. Also finds out,
// before starting anything, whether argv[0] exists in the sandbox's view of
// the file system. The host part of the layout (what of /usr and /etc is
// shown) is computed once per process; everything here is thread-safe.
#pragma once

#include <sched.h>
#include <sys/resource.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"
#include "sandbox/sandbox.h"

namespace takt::sandbox::internal {

inline constexpr int kInfoFd = 3;  // bwrap's --info-fd, as the child sets it up

struct BwrapPlan {
  std::vector<std::string> args;  // args[0] is bwrap
  std::vector<std::string> env;   // "NAME=value"
  std::vector<std::pair<int, rlimit>> rlimits;
  std::optional<cpu_set_t> affinity;
  std::vector<std::string> writable_roots;  // host paths whose size counts against disk_bytes
  std::string cwd;                          // inside
  // Why argv[0] cannot be started ("/usr/bin/nope does not exist"), or "" when it looks startable.
  std::string start_problem;
};

// The bwrap executable, or "" when it is not installed.
const std::string& BwrapPath();

// InvalidArgument naming the offending field for misuse.
Result<BwrapPlan> MakePlan(const Spec& spec);

}  // namespace takt::sandbox::internal
