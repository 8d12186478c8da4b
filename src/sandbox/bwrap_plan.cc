#include "sandbox/bwrap_plan.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string_view>
#include <system_error>

namespace takt::sandbox::internal {
namespace {

namespace fs = std::filesystem;

constexpr const char* kBwrapCandidates[] = {"/usr/bin/bwrap", "/usr/local/bin/bwrap"};
constexpr std::string_view kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::string_view kHostname = "takt-step";

// Debian 12 has merged /usr: these are symlinks into /usr (shown as such); on
// a host where one is a real directory it is bound read-only instead.
constexpr std::string_view kTopLevelLinks[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};

// What of /etc programs need: the loader cache, Debian's alternatives, users
// and groups (getpwuid), the time zone, TLS certificates, name and service
// lookup, file types. Not shown: shadow files, machine-id, ssh keys, the
// rest. Entries named python3* (site configuration) are added as found.
constexpr std::string_view kEtcEntries[] = {
    "ld.so.cache",    "ld.so.conf",   "ld.so.conf.d",  "alternatives", "ssl",          "ca-certificates",
    "passwd",         "group",        "nsswitch.conf", "hosts",        "host.conf",    "gai.conf",
    "services",       "protocols",    "localtime",     "timezone",     "mime.types",   "os-release",
    "debian_version", "locale.alias", "magic",         "magic.mime",   "matplotlibrc", "fonts",
};

// Places a mount may not cover: the sandbox's own system directories.
constexpr std::string_view kReserved[] = {"/usr",  "/etc", "/proc",  "/dev",   "/bin",
                                          "/sbin", "/lib", "/lib32", "/lib64", "/libx32"};

constexpr const char* kThreadVars[] = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"};

using View = std::vector<std::pair<std::string, std::string>>;  // inside path -> host path

struct HostLayout {
  std::vector<std::string> args;    // binds and symlinks of /usr, /bin..., /etc entries
  std::vector<std::string> resolv;  // /etc/resolv.conf, shown only with network
  View view;
};

// Shows /etc/<name> when it exists: a symlink into /usr stays a symlink,
// anything else is bound read-only (a symlink elsewhere by its target).
void ShowEtcEntry(const std::string& name, std::vector<std::string>* args, View* view) {
  const std::string path = "/etc/" + name;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  std::error_code ec;
  const fs::path target = fs::canonical(path, ec);
  if (ec) return;  // a dangling symlink
  if (S_ISLNK(st.st_mode) && target.string().starts_with("/usr/")) {
    const fs::path text = fs::read_symlink(path, ec);
    if (ec) return;
    args->insert(args->end(), {"--symlink", text.string(), path});
  } else {
    args->insert(args->end(), {"--ro-bind", target.string(), path});
  }
  view->emplace_back(path, target.string());
}

HostLayout MakeHostLayout() {
  HostLayout host;
  host.args = {"--ro-bind", "/usr", "/usr"};
  host.view.emplace_back("/usr", "/usr");
  for (const std::string_view name : kTopLevelLinks) {
    const std::string path = "/" + std::string(name);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    std::error_code ec;
    if (S_ISLNK(st.st_mode)) {
      const fs::path text = fs::read_symlink(path, ec);
      const fs::path target = fs::canonical(path, ec);
      if (ec) continue;
      host.args.insert(host.args.end(), {"--symlink", text.string(), path});
      host.view.emplace_back(path, target.string());
    } else if (S_ISDIR(st.st_mode)) {
      host.args.insert(host.args.end(), {"--ro-bind", path, path});
      host.view.emplace_back(path, path);
    }
  }
  std::set<std::string> etc(std::begin(kEtcEntries), std::end(kEtcEntries));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/etc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("python3")) etc.insert(name);
  }
  for (const std::string& name : etc) ShowEtcEntry(name, &host.args, &host.view);
  View unused;
  ShowEtcEntry("resolv.conf", &host.resolv, &unused);
  return host;
}

const HostLayout& Host() {
  static const HostLayout host = MakeHostLayout();
  return host;
}

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// Absolute, no empty, "." or ".." components, no trailing slash (except "/").
bool IsCleanAbsolute(std::string_view p) {
  if (p.empty() || p[0] != '/' || HasNul(p)) return false;
  if (p == "/") return true;
  size_t start = 1;
  while (start <= p.size()) {
    const size_t end = std::min(p.find('/', start), p.size());
    const std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

bool IsUnder(std::string_view path, std::string_view dir) {
  return path == dir || (path.starts_with(dir) && path.size() > dir.size() && path[dir.size()] == '/');
}

Status CheckMount(const Mount& m, std::string_view kind, size_t index) {
  const std::string what =
      std::string(kind) + " mount #" + std::to_string(index + 1) + " (" + m.host + " -> " + m.inside + ")";
  if (m.host.empty() || m.host[0] != '/' || HasNul(m.host))
    return InvalidArgument(what + ": the host path must be absolute");
  if (!IsCleanAbsolute(m.inside))
    return InvalidArgument(what + ": the inside path must be absolute, without '.', '..' or '//'");
  if (m.inside == "/") return InvalidArgument(what + ": cannot mount over the sandbox's root");
  for (const std::string_view reserved : kReserved) {
    if (IsUnder(m.inside, reserved))
      return InvalidArgument(what + ": " + m.inside + " would cover the sandbox's own " +
                             std::string(reserved));
  }
  struct stat st;
  if (::stat(m.host.c_str(), &st) != 0)
    return InvalidArgument(what + ": the host path " + m.host + " does not exist");
  return Ok();
}

// The host path that `inside` shows, or "" when it is on the sandbox's empty
// root or its fresh /tmp (nothing there exists before the step starts).
std::string HostPathOf(std::string_view inside, const View& view) {
  const std::pair<std::string, std::string>* best = nullptr;
  for (const auto& entry : view) {
    if (IsUnder(inside, entry.first) && (best == nullptr || entry.first.size() > best->first.size()))
      best = &entry;
  }
  if (best == nullptr) return "";
  return best->second + std::string(inside.substr(best->first.size()));
}

// "" when `inside` is an executable file in the sandbox's view, else why not.
std::string ExecutableProblem(const std::string& inside, const View& view) {
  const std::string host = HostPathOf(inside, view);
  struct stat st;
  if (host.empty() || ::stat(host.c_str(), &st) != 0) return inside + " does not exist";
  if (S_ISDIR(st.st_mode)) return inside + " is a directory";
  if (!S_ISREG(st.st_mode) || (st.st_mode & 0111) == 0) return inside + " is not executable";
  return "";
}

std::string StartProblem(const std::string& program, const std::string& path_var, const std::string& cwd,
                         const View& view) {
  if (program.find('/') != std::string::npos) {
    const std::string inside = program[0] == '/' ? program : (cwd == "/" ? "" : cwd) + "/" + program;
    return ExecutableProblem(inside, view);
  }
  size_t start = 0;
  while (start <= path_var.size()) {
    const size_t end = std::min(path_var.find(':', start), path_var.size());
    const std::string dir = path_var.substr(start, end - start);
    start = end + 1;
    if (dir.empty() || dir[0] != '/') continue;
    if (ExecutableProblem(dir + "/" + program, view).empty()) return "";
  }
  return program + " was not found on PATH (" + path_var + ")";
}

// Picks `n` of the CPUs this thread may run on, rotating the start so that
// concurrent steps spread out; nullopt when n covers them all.
std::optional<cpu_set_t> PickCpus(int n) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return std::nullopt;
  std::vector<int> ids;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (CPU_ISSET(i, &allowed)) ids.push_back(i);
  }
  if (ids.empty() || static_cast<size_t>(n) >= ids.size()) return std::nullopt;
  static std::atomic<unsigned> next{0};
  const unsigned first = next.fetch_add(static_cast<unsigned>(n));
  cpu_set_t chosen;
  CPU_ZERO(&chosen);
  for (int k = 0; k < n; ++k) CPU_SET(ids[(first + static_cast<unsigned>(k)) % ids.size()], &chosen);
  return chosen;
}

Status CheckLimits(const Limits& l) {
  auto bad_seconds = [](double v) { return !std::isfinite(v) || v < 0; };
  if (bad_seconds(l.wall_seconds)) return InvalidArgument("limits.wall_seconds must be >= 0");
  if (bad_seconds(l.grace_seconds)) return InvalidArgument("limits.grace_seconds must be >= 0");
  if (bad_seconds(l.cpu_seconds)) return InvalidArgument("limits.cpu_seconds must be >= 0");
  if (l.memory_bytes < 0) return InvalidArgument("limits.memory_bytes must be >= 0");
  if (l.disk_bytes < 0) return InvalidArgument("limits.disk_bytes must be >= 0");
  if (l.tmp_bytes < 0) return InvalidArgument("limits.tmp_bytes must be >= 0");
  if (l.log_bytes < 0) return InvalidArgument("limits.log_bytes must be >= 0");
  if (l.cpus < 0) return InvalidArgument("limits.cpus must be >= 0");
  return Ok();
}

rlimit Both(rlim_t v) { return rlimit{v, v}; }

}  // namespace

const std::string& BwrapPath() {
  static const std::string path = [] {
    for (const char* candidate : kBwrapCandidates) {
      if (::access(candidate, X_OK) == 0) return std::string(candidate);
    }
    return std::string();
  }();
  return path;
}

Result<BwrapPlan> MakePlan(const Spec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) return InvalidArgument("argv is empty: no program to run");
  for (size_t i = 0; i < spec.argv.size(); ++i) {
    if (HasNul(spec.argv[i])) return InvalidArgument("argv[" + std::to_string(i) + "] contains a NUL byte");
  }
  for (const auto& [name, value] : spec.env) {
    if (name.empty() || name.find('=') != std::string::npos || HasNul(name))
      return InvalidArgument("environment variable name \"" + name + "\" is empty or contains '=' or NUL");
    if (HasNul(value)) return InvalidArgument("environment variable " + name + " contains a NUL byte");
  }
  TAKT_RETURN_IF_ERROR(CheckLimits(spec.limits));

  std::vector<std::pair<const Mount*, bool>> mounts;  // (mount, writable)
  std::set<std::string> insides;
  for (size_t i = 0; i < spec.read_only.size(); ++i) {
    TAKT_RETURN_IF_ERROR(CheckMount(spec.read_only[i], "read-only", i));
    mounts.emplace_back(&spec.read_only[i], false);
  }
  for (size_t i = 0; i < spec.writable.size(); ++i) {
    TAKT_RETURN_IF_ERROR(CheckMount(spec.writable[i], "writable", i));
    mounts.emplace_back(&spec.writable[i], true);
  }
  for (const auto& [m, writable] : mounts) {
    if (!insides.insert(m->inside).second) return InvalidArgument("two mounts at " + m->inside);
  }
  // Parents before children ("/data" before "/data/in"), so no mount hides another.
  std::sort(mounts.begin(), mounts.end(),
            [](const auto& a, const auto& b) { return a.first->inside < b.first->inside; });

  BwrapPlan plan;
  if (!spec.cwd.empty()) {
    if (!IsCleanAbsolute(spec.cwd)) return InvalidArgument("cwd " + spec.cwd + " must be an absolute path");
    plan.cwd = spec.cwd;
  } else {
    plan.cwd = spec.writable.empty() ? "/" : spec.writable.front().inside;
  }

  std::map<std::string, std::string> env = spec.env;
  env.try_emplace("PATH", kDefaultPath);
  if (spec.limits.cpus > 0) {
    for (const char* var : kThreadVars) env.try_emplace(var, std::to_string(spec.limits.cpus));
  }
  for (const auto& [name, value] : env) plan.env.push_back(name + "=" + value);

  const HostLayout& host = Host();
  std::vector<std::string>& a = plan.args;
  a = {BwrapPath(), "--unshare-all"};
  if (spec.network) a.push_back("--share-net");
  a.insert(a.end(),
           {"--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", std::string(kHostname)});
  a.insert(a.end(), host.args.begin(), host.args.end());
  if (spec.network) a.insert(a.end(), host.resolv.begin(), host.resolv.end());
  a.insert(a.end(), {"--proc", "/proc", "--dev", "/dev"});
  const int64_t tmp_bytes = spec.limits.tmp_bytes > 0 ? spec.limits.tmp_bytes : spec.limits.memory_bytes;
  if (tmp_bytes > 0) a.insert(a.end(), {"--size", std::to_string(tmp_bytes)});
  a.insert(a.end(), {"--tmpfs", "/tmp"});
  View view = host.view;
  for (const auto& [m, writable] : mounts) {
    a.insert(a.end(), {writable ? "--bind" : "--ro-bind", m->host, m->inside});
    view.emplace_back(m->inside, m->host);
    if (writable) plan.writable_roots.push_back(m->host);
  }
  a.insert(a.end(), {"--remount-ro", "/", "--chdir", plan.cwd, "--info-fd", std::to_string(kInfoFd), "--"});
  a.insert(a.end(), spec.argv.begin(), spec.argv.end());

  const Limits& l = spec.limits;
  plan.rlimits.emplace_back(RLIMIT_CORE, Both(0));  // no core files in the output directories
  if (l.memory_bytes > 0) plan.rlimits.emplace_back(RLIMIT_AS, Both(static_cast<rlim_t>(l.memory_bytes)));
  if (l.cpu_seconds > 0) {
    // SIGXCPU at the soft limit; SIGKILL a second later for a program that ignores it.
    const auto soft = static_cast<rlim_t>(std::ceil(l.cpu_seconds));
    plan.rlimits.emplace_back(RLIMIT_CPU, rlimit{soft, soft + 1});
  }
  if (l.disk_bytes > 0) plan.rlimits.emplace_back(RLIMIT_FSIZE, Both(static_cast<rlim_t>(l.disk_bytes)));
  if (l.cpus > 0) plan.affinity = PickCpus(l.cpus);

  plan.start_problem = StartProblem(spec.argv[0], env["PATH"], plan.cwd, view);
  return plan;
}

}  // namespace takt::sandbox::internal
