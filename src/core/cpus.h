// File: core/cpus.h
//
// How many CPUs this process may really use, for sizing thread pools and
// event loops. std::thread::hardware_concurrency() reports the machine's
// online CPUs, which overstates what a process under `taskset`, a cpuset or
// a container CPU limit (docker --cpus, a Kubernetes limit) gets: threads
// beyond that only take turns on the same CPUs. Thread-safe; reads /proc and
// /sys on every call (call it at start-up, not per request).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace takt {

// min(CPUs of the affinity mask, the cgroup CPU bandwidth limit rounded up),
// at least 1. The limit is cgroup v2's cpu.max or v1's cpu.cfs_quota_us /
// cpu.cfs_period_us of the process's cgroup and every ancestor up to the
// mount (the tightest wins); no limit or unreadable files: the mask alone.
int UsableCpuCount();

namespace cpus_internal {

// CPUs a cgroup v2 `cpu.max` file allows ("150000 100000" -> 1.5); nullopt
// for "max" (no limit) or text that is not "<quota|max> <period>".
std::optional<double> CpuMaxLimit(std::string_view cpu_max);
// The same for cgroup v1's cpu.cfs_quota_us (-1: no limit) and cpu.cfs_period_us.
std::optional<double> CfsQuotaLimit(std::string_view quota, std::string_view period);

// Where the process's CPU controller lives: the directory of its cgroup
// (under the mount found in `mountinfo`, /proc/self/mountinfo's text) and
// the mount point, the top of the walk. `cgroup` is /proc/self/cgroup's
// text. A v1 `cpu` controller wins over v2 (on a hybrid host the v2
// hierarchy then has no cpu controller). nullopt if neither is mounted.
struct CgroupCpuDir {
  std::string dir;
  std::string mount;
  bool v2 = false;
};
std::optional<CgroupCpuDir> FindCgroupCpuDir(std::string_view cgroup, std::string_view mountinfo);

// The tightest limit along dir, its parent, ... up to and including mount;
// nullopt if no level sets one.
std::optional<double> CgroupCpuLimit(const CgroupCpuDir& where);

}  // namespace cpus_internal
}  // namespace takt
