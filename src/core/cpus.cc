#include "core/cpus.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "core/strings.h"

namespace takt {
namespace cpus_internal {
namespace {

std::optional<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<long long> ParseInt(std::string_view s) {
  s = Trim(s);
  long long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

bool HasToken(std::string_view list, std::string_view token) {
  for (std::string_view t : SplitView(list, ',')) {
    if (t == token) return true;
  }
  return false;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

struct Mount {
  std::string root;
  std::string point;
};

// The mount of the v1 `cpu` controller (v2 = false) or of the v2 hierarchy.
std::optional<Mount> FindMount(std::string_view mountinfo, bool v2) {
  for (std::string_view line : SplitView(mountinfo, '\n')) {
    std::vector<std::string_view> f = SplitView(line, ' ');
    auto dash = std::find(f.begin(), f.end(), std::string_view("-"));
    if (dash - f.begin() < 6 || f.end() - dash < 4) continue;
    std::string_view fstype = dash[1];
    std::string_view super_options = dash[3];
    if (v2 ? fstype == "cgroup2" : (fstype == "cgroup" && HasToken(super_options, "cpu"))) {
      return Mount{Unescape(f[3]), Unescape(f[4])};
    }
  }
  return std::nullopt;
}

std::string Join(const Mount& m, std::string_view cgroup_path) {
  std::string rel(cgroup_path);
  // In a container the mount's root is often the container's own cgroup.
  if (m.root != "/" && rel.starts_with(m.root) &&
      (rel.size() == m.root.size() || rel[m.root.size()] == '/')) {
    rel.erase(0, m.root.size());
  }
  std::string dir = m.point;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!rel.empty() && rel != "/") dir += rel.front() == '/' ? rel : "/" + rel;
  return dir;
}

}  // namespace

std::optional<double> CpuMaxLimit(std::string_view cpu_max) {
  std::vector<std::string_view> parts = SplitView(Trim(cpu_max), ' ');
  if (parts.size() != 2) return std::nullopt;
  std::optional<long long> period = ParseInt(parts[1]);
  if (!period || *period <= 0 || parts[0] == "max") return std::nullopt;
  std::optional<long long> quota = ParseInt(parts[0]);
  if (!quota || *quota <= 0) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<double> CfsQuotaLimit(std::string_view quota, std::string_view period) {
  std::optional<long long> q = ParseInt(quota);
  std::optional<long long> p = ParseInt(period);
  if (!q || !p || *q <= 0 || *p <= 0) return std::nullopt;  // -1: no limit
  return static_cast<double>(*q) / static_cast<double>(*p);
}

std::optional<CgroupCpuDir> FindCgroupCpuDir(std::string_view cgroup, std::string_view mountinfo) {
  std::optional<std::string> v1_path;
  std::optional<std::string> v2_path;
  for (std::string_view line : SplitView(cgroup, '\n')) {
    // hierarchy-ID:controller-list:path (the path itself may hold ':').
    size_t a = line.find(':');
    if (a == std::string_view::npos) continue;
    size_t b = line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    std::string_view id = line.substr(0, a);
    std::string_view controllers = line.substr(a + 1, b - a - 1);
    std::string_view path = line.substr(b + 1);
    if (id == "0" && controllers.empty()) {
      v2_path = std::string(path);
    } else if (HasToken(controllers, "cpu")) {
      v1_path = std::string(path);
    }
  }
  if (v1_path) {
    if (std::optional<Mount> m = FindMount(mountinfo, false)) {
      return CgroupCpuDir{Join(*m, *v1_path), m->point, false};
    }
  }
  if (v2_path) {
    if (std::optional<Mount> m = FindMount(mountinfo, true)) {
      return CgroupCpuDir{Join(*m, *v2_path), m->point, true};
    }
  }
  return std::nullopt;
}

std::optional<double> CgroupCpuLimit(const CgroupCpuDir& where) {
  std::optional<double> tightest;
  std::string dir = where.dir;
  std::string top = where.mount;
  while (top.size() > 1 && top.back() == '/') top.pop_back();
  while (true) {
    std::optional<double> limit;
    if (where.v2) {
      if (std::optional<std::string> text = ReadSmallFile(dir + "/cpu.max")) limit = CpuMaxLimit(*text);
    } else {
      std::optional<std::string> quota = ReadSmallFile(dir + "/cpu.cfs_quota_us");
      std::optional<std::string> period = ReadSmallFile(dir + "/cpu.cfs_period_us");
      if (quota && period) limit = CfsQuotaLimit(*quota, *period);
    }
    if (limit && (!tightest || *limit < *tightest)) tightest = limit;
    if (dir.size() <= top.size() || !dir.starts_with(top)) break;
    size_t slash = dir.rfind('/');
    if (slash == std::string::npos || slash < top.size()) {
      dir = top;
    } else {
      dir.resize(slash);
    }
  }
  return tightest;
}

}  // namespace cpus_internal

int UsableCpuCount() {
  int n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  using namespace cpus_internal;
  std::optional<std::string> cgroup = ReadSmallFile("/proc/self/cgroup");
  std::optional<std::string> mountinfo = ReadSmallFile("/proc/self/mountinfo");
  if (cgroup && mountinfo) {
    if (std::optional<CgroupCpuDir> where = FindCgroupCpuDir(*cgroup, *mountinfo)) {
      if (std::optional<double> limit = CgroupCpuLimit(*where)) {
        n = std::min(n, std::max(1, static_cast<int>(std::ceil(*limit - 1e-9))));
      }
    }
  }
  return std::max(1, n);
}

}  // namespace takt
