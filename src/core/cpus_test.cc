#include "core/cpus.h"

#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace takt {
namespace {

using cpus_internal::CfsQuotaLimit;
using cpus_internal::CgroupCpuDir;
using cpus_internal::CgroupCpuLimit;
using cpus_internal::CpuMaxLimit;
using cpus_internal::FindCgroupCpuDir;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

TEST(UsableCpuCountTest, FollowsTheAffinityMaskNotTheMachine) {
  const int all = UsableCpuCount();
  ASSERT_GE(all, 1);
  EXPECT_LE(all, static_cast<int>(std::thread::hardware_concurrency()));

  // A thread narrowed to one CPU (as `taskset -c 0` would) sees one.
  int narrowed = 0;
  int set_result = -1;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    ASSERT_EQ(::sched_getaffinity(0, sizeof(one), &one), 0);
    int first = 0;
    while (!CPU_ISSET(first, &one)) ++first;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    set_result = ::pthread_setaffinity_np(::pthread_self(), sizeof(one), &one);
    narrowed = UsableCpuCount();
  });
  t.join();
  ASSERT_EQ(set_result, 0);
  EXPECT_EQ(narrowed, 1);
  // The calling thread's own mask is unchanged.
  EXPECT_EQ(UsableCpuCount(), all);
}

TEST(CgroupCpuTest, LimitFilesParse) {
  EXPECT_EQ(CpuMaxLimit("max 100000\n"), std::nullopt);
  EXPECT_EQ(CpuMaxLimit("150000 100000\n"), 1.5);
  EXPECT_EQ(CpuMaxLimit("50000 100000"), 0.5);
  EXPECT_EQ(CpuMaxLimit(""), std::nullopt);
  EXPECT_EQ(CpuMaxLimit("100000"), std::nullopt);
  EXPECT_EQ(CpuMaxLimit("abc 100000"), std::nullopt);
  EXPECT_EQ(CpuMaxLimit("100000 0"), std::nullopt);
  EXPECT_EQ(CfsQuotaLimit("-1\n", "100000\n"), std::nullopt);
  EXPECT_EQ(CfsQuotaLimit("200000\n", "100000\n"), 2.0);
  EXPECT_EQ(CfsQuotaLimit("x", "100000"), std::nullopt);
}

TEST(CgroupCpuTest, FindsTheCpuControllerOfV1V2AndHybridHosts) {
  const std::string v2_mounts =
      "24 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
      "25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n";
  std::optional<CgroupCpuDir> v2 = FindCgroupCpuDir("0::/system.slice/takt.service\n", v2_mounts);
  ASSERT_TRUE(v2.has_value());
  EXPECT_TRUE(v2->v2);
  EXPECT_EQ(v2->dir, "/sys/fs/cgroup/system.slice/takt.service");
  EXPECT_EQ(v2->mount, "/sys/fs/cgroup");

  // A container whose mount root is its own cgroup: the path is relative to it.
  std::optional<CgroupCpuDir> ns = FindCgroupCpuDir(
      "0::/kubepods/pod1/c1\n", "30 29 0:26 /kubepods/pod1/c1 /sys/fs/cgroup ro - cgroup2 cgroup rw\n");
  ASSERT_TRUE(ns.has_value());
  EXPECT_EQ(ns->dir, "/sys/fs/cgroup");
  std::optional<CgroupCpuDir> root = FindCgroupCpuDir("0::/\n", v2_mounts);
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->dir, "/sys/fs/cgroup");

  // Hybrid: v1 cpu controller (joined with cpuacct, an escaped space in the mount point) beside v2.
  const std::string hybrid =
      "31 24 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
      "32 24 0:28 / /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu,cpuacct\n"
      "33 24 0:29 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n";
  std::optional<CgroupCpuDir> v1 = FindCgroupCpuDir("4:cpuset:/\n3:cpu,cpuacct:/batch/job7\n0::/\n", hybrid);
  ASSERT_TRUE(v1.has_value());
  EXPECT_FALSE(v1->v2);
  EXPECT_EQ(v1->dir, "/sys/fs/cgroup/cpu x/batch/job7");
  EXPECT_EQ(v1->mount, "/sys/fs/cgroup/cpu x");

  // `cpuset` alone is not `cpu`; nothing mounted: no answer.
  EXPECT_FALSE(FindCgroupCpuDir("4:cpuset:/\n", hybrid).has_value());
  EXPECT_FALSE(FindCgroupCpuDir("0::/a\n", "25 1 8:1 / / rw - ext4 /dev/sda1 rw\n").has_value());
  EXPECT_FALSE(FindCgroupCpuDir("garbage", "garbage").has_value());
}

TEST(CgroupCpuTest, TheTightestLevelOfTheWalkWins) {
  char tmpl[] = "/tmp/takt-cgroup-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string top = tmpl;
  ASSERT_EQ(::mkdir((top + "/a").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((top + "/a/b").c_str(), 0700), 0);
  ASSERT_TRUE(WriteFile(top + "/cpu.max", "max 100000\n"));
  ASSERT_TRUE(WriteFile(top + "/a/cpu.max", "150000 100000\n"));
  ASSERT_TRUE(WriteFile(top + "/a/b/cpu.max", "max 100000\n"));
  EXPECT_EQ(CgroupCpuLimit({top + "/a/b", top, true}), 1.5);
  ASSERT_TRUE(WriteFile(top + "/cpu.max", "50000 100000\n"));
  EXPECT_EQ(CgroupCpuLimit({top + "/a/b", top, true}), 0.5);
  EXPECT_EQ(CgroupCpuLimit({top + "/a/b", top, false}), std::nullopt);  // no v1 files there
  for (const char* f : {"/a/b/cpu.max", "/a/cpu.max", "/cpu.max"}) ::unlink((top + f).c_str());
  EXPECT_EQ(CgroupCpuLimit({top + "/a/b", top, true}), std::nullopt);
  ::rmdir((top + "/a/b").c_str());
  ::rmdir((top + "/a").c_str());
  ::rmdir(top.c_str());
}

// A real cgroup with a one-CPU bandwidth limit, where the machine allows
// making one (root, a writable cgroup file system); skipped elsewhere.
TEST(CgroupCpuTest, AProcessInALimitedCgroupCountsItsLimit) {
  if (UsableCpuCount() < 2) GTEST_SKIP() << "one CPU already: a one-CPU limit would change nothing";
  std::optional<CgroupCpuDir> here =
      FindCgroupCpuDir(Slurp("/proc/self/cgroup"), Slurp("/proc/self/mountinfo"));
  if (!here) GTEST_SKIP() << "no cgroup cpu controller mounted";
  const std::string dir = here->dir + "/takt-cpus-test-" + std::to_string(::getpid());
  if (::mkdir(dir.c_str(), 0755) != 0) GTEST_SKIP() << "cannot make a cgroup here: " << std::strerror(errno);
  bool limited = here->v2 ? WriteFile(dir + "/cpu.max", "100000 100000")
                          : WriteFile(dir + "/cpu.cfs_period_us", "100000") &&
                                WriteFile(dir + "/cpu.cfs_quota_us", "100000");
  int status = -1;
  if (limited) {
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      if (!WriteFile(dir + "/cgroup.procs", std::to_string(::getpid()))) ::_exit(100);
      ::_exit(UsableCpuCount());
    }
    ASSERT_EQ(::waitpid(child, &status, 0), child);
  }
  ::rmdir(dir.c_str());
  if (!limited) GTEST_SKIP() << "cannot set a CPU limit on " << dir;
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_NE(WEXITSTATUS(status), 100) << "could not join " << dir;
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

}  // namespace
}  // namespace takt
