#include "slurm/testing_slurm.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <system_error>
#include <thread>

#include "core/posix.h"
#include "slurm/command.h"

extern char** environ;

namespace takt::slurm::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kSbinDir = "/usr/sbin";
constexpr const char* kBinDir = "/usr/bin";
constexpr const char* kPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
constexpr const char* kPartition = "takt";
constexpr const char* kInstallHint = "install slurm-wlm and munge (scripts/install-deps.sh)";

// The watchdog: waits for a line from the test process ("stop", sent by the
// destructor) or for its socket to close (the test died), then cleans up.
// $1 is the cluster's dir, $2 the dir of the Slurm commands.
constexpr const char* kWatchdogScript = R"sh(
trap '' HUP INT TERM
read -r line
dir=$1
bin=$2
SLURM_CONF="$dir/etc/slurm.conf"
export SLURM_CONF
state_of() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f"$2"; }
alive() {
  [ -n "$1" ] || return 1
  s=$(state_of "$1" 1)
  [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}
pid_of() { cat "$dir/pids/$1" 2>/dev/null; }
stop() {
  pid=$(pid_of "$1")
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  i=0
  while alive "$pid" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$pid" 2>/dev/null
}
# Cancel the jobs first, so that their processes end with them.
if alive "$(pid_of slurmctld)" && alive "$(pid_of slurmd)"; then
  timeout 10 "$bin/scancel" --me >/dev/null 2>&1
  i=0
  while [ "$i" -lt 60 ] && jobs=$(timeout 5 "$bin/squeue" --noheader --format=%i 2>/dev/null) &&
    [ -n "$jobs" ]; do
    sleep 0.25
    i=$((i + 1))
  done
fi
stop slurmd
stop slurmctld
stop munged
# Whatever still holds a file in $dir open: job steps that outlived slurmd
# (they keep its log open; end their whole session, the job's processes with
# them) and helpers of a daemon that was killed.
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = "$$" ] || [ "$pid" = "$PPID" ] && continue
  ls -l "$p/fd/" 2>/dev/null | grep -qF "$dir/" || continue
  if [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ]; then
    sid=$(state_of "$pid" 4)
    for q in /proc/[0-9]*; do
      if [ -n "$sid" ] && [ "$(state_of "${q#/proc/}" 4)" = "$sid" ]; then kill -KILL "${q#/proc/}" 2>/dev/null; fi
    done
  fi
  kill -KILL "$pid" 2>/dev/null
done
rm -rf "$dir"
)sh";

std::string ErrnoText(int err) { return std::system_category().message(err); }

std::string Tail(const std::filesystem::path& file, size_t max_bytes = 1200) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() > max_bytes) text = "..." + text.substr(text.size() - max_bytes);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string RandomHex(size_t bytes) {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    const unsigned v = rd() & 0xff;
    out.push_back(kHex[v >> 4]);
    out.push_back(kHex[v & 0xf]);
  }
  return out;
}

// `count` distinct TCP ports that were free on every address a moment ago:
// Slurm's daemons listen on all of them.
Result<std::vector<int>> FreePorts(int count) {
  std::vector<int> ports;
  std::vector<std::unique_ptr<UniqueFd>> held;  // all open at once, so the ports differ
  for (int i = 0; i < count; ++i) {
    held.push_back(std::make_unique<UniqueFd>(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)));
    const int fd = held.back()->get();
    if (fd < 0) return Internal("socket: " + ErrnoText(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof(addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return Internal("binding a free port: " + ErrnoText(errno));
    }
    ports.push_back(ntohs(addr.sin_port));
  }
  return ports;
}

bool Listening(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

// Whether `pid` (our child) has exited; reaps it and sets *code if so.
bool Exited(pid_t pid, int* code) {
  if (pid <= 0) return false;  // waitpid(-1) would reap any child
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) != pid) return false;
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return true;
}

Status WriteFile(const std::filesystem::path& path, std::string_view data, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (fd.get() < 0) return ErrnoError(errno, "creating " + path.string());
  TAKT_RETURN_IF_ERROR(WriteAll(fd.get(), data, path.string()));
  if (fd.Close() != 0) return ErrnoError(errno, "closing " + path.string());
  return Ok();
}

std::string ShortHostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  std::string host(name);
  if (const size_t dot = host.find('.'); dot != std::string::npos) host.resize(dot);
  return host;
}

}  // namespace

Result<std::unique_ptr<Cluster>> Cluster::Start() {
  std::unique_ptr<Cluster> cluster(new Cluster());
  TAKT_RETURN_IF_ERROR(cluster->Init());
  return cluster;
}

Status Cluster::Init() {
  const std::filesystem::path sbin(kSbinDir);
  const std::filesystem::path bin(kBinDir);
  for (const std::filesystem::path& tool :
       {sbin / "munged", sbin / "slurmctld", sbin / "slurmd", sbin / "slurmstepd", bin / "sbatch",
        bin / "squeue", bin / "scancel", bin / "sinfo"}) {
    if (::access(tool.c_str(), X_OK) != 0) {
      return FailedPrecondition("no " + tool.string() + ": " + kInstallHint);
    }
  }
  if (::geteuid() != 0) {
    return FailedPrecondition("a test Slurm cluster needs root: slurmd runs jobs as their user");
  }

  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/takt-slurm-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return ErrnoError(errno, "creating a temp dir " + tmpl);
  dir_ = tmpl;
  // munged wants every directory above its socket searchable by all.
  if (::chmod(dir_.c_str(), 0755) != 0) return ErrnoError(errno, "chmod " + dir_.string());
  for (const auto& [sub, mode] : std::initializer_list<std::pair<const char*, mode_t>>{{"etc", 0755},
                                                                                       {"munge", 0755},
                                                                                       {"munge-key", 0700},
                                                                                       {"state", 0700},
                                                                                       {"spool", 0755},
                                                                                       {"log", 0755},
                                                                                       {"pids", 0755}}) {
    if (::mkdir((dir_ / sub).c_str(), mode) != 0) return ErrnoError(errno, "mkdir " + (dir_ / sub).string());
  }
  TAKT_RETURN_IF_ERROR(StartWatchdog());
  node_name_ = ShortHostname();
  TAKT_RETURN_IF_ERROR(ReadHardware());
  TAKT_RETURN_IF_ERROR(WriteFile(dir_ / "etc" / "plugstack.conf", "", 0644));
  TAKT_RETURN_IF_ERROR(StartMunge());
  for (int attempt = 0; attempt < 5; ++attempt) {
    TAKT_ASSIGN_OR_RETURN(bool started, TryStartSlurm());
    if (started) return Ok();
  }
  return Internal("the ports picked for slurmctld and slurmd were taken by others 5 times: " + LogTails());
}

Status Cluster::StartWatchdog() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return ErrnoError(errno, "socketpair for the watchdog");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], 0);  // dup2 clears close-on-exec
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own session: a Ctrl-C or hangup meant for the test does not reach it.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  sigset_t none;
  sigset_t defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGCHLD);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  std::string sh = "/bin/sh";
  std::string c = "-c";
  std::string script = kWatchdogScript;
  std::string name = "takt-slurm-watchdog";
  std::string dir = dir_.string();
  std::string bin = kBinDir;
  char* argv[] = {sh.data(), c.data(), script.data(), name.data(), dir.data(), bin.data(), nullptr};
  char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char* envp[] = {path_env, nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(fds[0]);
  if (rc != 0) {
    ::close(fds[1]);
    return Internal("starting the watchdog (/bin/sh): " + ErrnoText(rc));
  }
  watchdog_pid_ = pid;
  watchdog_fd_ = fds[1];
  return Ok();
}

Status Cluster::ReadHardware() {
  // "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
  auto out = RunCommand({std::string(kSbinDir) + "/slurmd", "-C"}, {kPath}, 30);
  if (!out) return std::unexpected(out.error().WithContext("slurmd -C"));
  if (out->exit_code != 0) {
    return Internal("slurmd -C exited with " + std::to_string(out->exit_code) + ": " + out->err);
  }
  std::istringstream first_line(out->out.substr(0, out->out.find('\n')));
  std::string token;
  node_line_ = "NodeName=" + node_name_ + " NodeAddr=127.0.0.1";
  while (first_line >> token) {
    const size_t eq = token.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = token.substr(0, eq);
    const std::string value = token.substr(eq + 1);
    if (key == "CPUs") cpus_ = std::atoi(value.c_str());
    if (key == "RealMemory") memory_mb_ = std::atoll(value.c_str());
    if (key == "CPUs" || key == "Boards" || key == "SocketsPerBoard" || key == "CoresPerSocket" ||
        key == "ThreadsPerCore" || key == "RealMemory") {
      node_line_ += " " + token;
    }
  }
  if (cpus_ <= 0 || memory_mb_ <= 0)
    return Internal("cannot read CPUs and RealMemory from slurmd -C: " + out->out);
  node_line_ += " State=UNKNOWN";
  return Ok();
}

Status Cluster::StartMunge() {
  std::random_device rd;
  std::string key;
  for (int i = 0; i < 1024; ++i) key.push_back(static_cast<char>(rd() & 0xff));
  const std::filesystem::path key_file = dir_ / "munge-key" / "munge.key";
  TAKT_RETURN_IF_ERROR(WriteFile(key_file, key, 0600));
  const std::filesystem::path socket = dir_ / "munge" / "munge.socket";
  TAKT_ASSIGN_OR_RETURN(
      munged_pid_, SpawnDaemon("munged", {std::string(kSbinDir) + "/munged", "--foreground",
                                          "--socket=" + socket.string(), "--key-file=" + key_file.string(),
                                          "--pid-file=" + (dir_ / "munge" / "munged.pid").string(),
                                          "--seed-file=" + (dir_ / "munge-key" / "munged.seed").string(),
                                          "--log-file=" + (dir_ / "log" / "munged.log").string()}));
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  for (;;) {
    struct stat st {};
    if (::stat(socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return Ok();
    int code = 0;
    if (Exited(munged_pid_, &code)) {
      munged_pid_ = -1;
      return Internal("munged exited with " + std::to_string(code) + ": " +
                      Tail(dir_ / "log" / "munged.out"));
    }
    if (Clock::now() > deadline) {
      return Internal("munged made no socket within 20 s: " + Tail(dir_ / "log" / "munged.out"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Status Cluster::WriteConf() {
  const std::string d = dir_.string();
  std::ostringstream conf;
  conf << "# A throwaway test cluster (src/slurm/testing_slurm.cc); everything in " << d << "\n"
       << "ClusterName=takt" << RandomHex(4) << "\n"
       << "SlurmctldHost=" << node_name_ << "\n"
       << "SlurmctldPort=" << slurmctld_port_ << "\n"
       << "SlurmdPort=" << slurmd_port_ << "\n"
       << "SlurmUser=root\nSlurmdUser=root\n"
       << "AuthType=auth/munge\nCredType=cred/munge\n"
       << "AuthInfo=socket=" << d << "/munge/munge.socket\n"
       << "StateSaveLocation=" << d << "/state\n"
       << "SlurmdSpoolDir=" << d << "/spool\n"
       << "SlurmctldPidFile=" << d << "/state/slurmctld.pid\n"
       << "SlurmdPidFile=" << d << "/spool/slurmd.pid\n"
       << "SlurmctldLogFile=" << d << "/log/slurmctld.log\n"
       << "SlurmdLogFile=" << d << "/log/slurmd.log\n"
       << "SlurmctldDebug=info\nSlurmdDebug=info\n"
       << "PlugStackConfig=" << d << "/etc/plugstack.conf\n"
       << "MailProg=/bin/true\n"
       << "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
       << "JobAcctGatherType=jobacct_gather/none\n"
       << "AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\n"
       << "SwitchType=switch/none\nMpiDefault=none\n"
       << "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
       << "EnforcePartLimits=ALL\n"
       << "SlurmdParameters=config_overrides\n"
       << "ReturnToService=2\n"
       << "DefMemPerCPU=256\n"  // without it a job that asks for no memory gets the whole node
       << "MinJobAge=3600\nKillWait=2\nOverTimeLimit=0\nInactiveLimit=0\n"
       << "SchedulerType=sched/backfill\nSchedulerParameters=batch_sched_delay=0,bf_interval=1\n"
       << node_line_ << "\n"
       << "PartitionName=" << kPartition << " Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n";
  return WriteFile(conf_path(), conf.str(), 0644);
}

Result<pid_t> Cluster::SpawnDaemon(const std::string& name, const std::vector<std::string>& args) {
  const std::string out = (dir_ / "log" / (name + ".out")).string();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addchdir_np(&actions, dir_.c_str());
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  sigset_t none;
  sigset_t defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::string path = kPath;
  std::string conf = "SLURM_CONF=" + conf_path().string();
  char* envp[] = {path.data(), conf.data(), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, args[0].c_str(), &actions, &attr, argv.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Internal("starting " + args[0] + ": " + ErrnoText(rc));
  TAKT_RETURN_IF_ERROR(WriteFile(dir_ / "pids" / name, std::to_string(pid) + "\n", 0644));
  return pid;
}

Status Cluster::WaitListening(const std::string& name, pid_t& pid, int port) {
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    if (Listening(port)) return Ok();
    int code = 0;
    if (Exited(pid, &code)) {
      pid = -1;
      return Internal(name + " exited with " + std::to_string(code) + ": " + LogTails());
    }
    if (Clock::now() > deadline) {
      return Internal(name + " did not listen on port " + std::to_string(port) +
                      " within 60 s: " + LogTails());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Status Cluster::WaitIdle() {
  Options fast = options();
  fast.command_timeout_seconds = 10;
  const Client client(fast);
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    const takt::Status ping = client.Ping();
    if (ping) return Ok();
    for (auto [name, pid] : {std::pair{"slurmctld", &slurmctld_pid_}, std::pair{"slurmd", &slurmd_pid_}}) {
      int code = 0;
      if (Exited(*pid, &code)) {
        *pid = -1;
        return Internal(std::string(name) + " exited with " + std::to_string(code) + ": " + LogTails());
      }
    }
    if (Clock::now() > deadline) {
      return Internal("the node did not become idle within 60 s (" + ping.error().message() +
                      "): " + LogTails());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<bool> Cluster::TryStartSlurm() {
  TAKT_ASSIGN_OR_RETURN(std::vector<int> ports, FreePorts(2));
  slurmctld_port_ = ports[0];
  slurmd_port_ = ports[1];
  TAKT_RETURN_IF_ERROR(WriteConf());
  for (const char* log : {"slurmctld.log", "slurmctld.out", "slurmd.log", "slurmd.out"}) {
    std::error_code ec;
    std::filesystem::remove(dir_ / "log" / log, ec);
  }
  auto port_clash = [&] {
    for (const char* log : {"slurmctld.log", "slurmctld.out", "slurmd.log", "slurmd.out"}) {
      if (Tail(dir_ / "log" / log, 1 << 20).find("Address already in use") != std::string::npos) return true;
    }
    return false;
  };
  const std::string sbin = kSbinDir;
  TAKT_ASSIGN_OR_RETURN(slurmctld_pid_, SpawnDaemon("slurmctld", {sbin + "/slurmctld", "-D"}));
  takt::Status up = WaitListening("slurmctld", slurmctld_pid_, slurmctld_port_);
  if (up) {
    TAKT_ASSIGN_OR_RETURN(slurmd_pid_, SpawnDaemon("slurmd", {sbin + "/slurmd", "-D"}));
    up = WaitListening("slurmd", slurmd_pid_, slurmd_port_);
  }
  if (up) up = WaitIdle();
  if (up) return true;
  const bool clash = port_clash();
  StopSlurmDaemons();
  if (clash) return false;
  return std::unexpected(up.error().WithContext("starting a test Slurm cluster in " + dir_.string()));
}

void Cluster::StopSlurmDaemons() {
  for (pid_t* pid : {&slurmd_pid_, &slurmctld_pid_}) {
    if (*pid > 0) ::kill(*pid, SIGTERM);
    Reap(*pid);
  }
}

void Cluster::Reap(pid_t& pid) {
  if (pid <= 0) return;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  int code = 0;
  while (!Exited(pid, &code)) {
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid = -1;
}

std::string Cluster::LogTails() const {
  std::string tails;
  for (const char* log : {"munged.out", "slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log"}) {
    const std::string tail = Tail(dir_ / "log" / log, 800);
    if (tail.empty()) continue;
    tails += std::string(tails.empty() ? "" : "\n") + log + ": " + tail;
  }
  return tails.empty() ? "(no daemon logs)" : tails;
}

Options Cluster::options() const {
  Options options;
  options.bin_dir = kBinDir;
  options.slurm_conf = conf_path().string();
  options.partition = kPartition;
  return options;
}

Cluster::~Cluster() {
  if (watchdog_fd_ >= 0) {
    // The watchdog does the cleanup; MSG_NOSIGNAL in case it is gone.
    IgnoreError(::send(watchdog_fd_, "stop\n", 5, MSG_NOSIGNAL));
    ::close(watchdog_fd_);
  }
  if (watchdog_pid_ > 0) {
    int status = 0;
    while (::waitpid(watchdog_pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  // The daemons are our children: reap them (the watchdog has stopped them).
  Reap(slurmd_pid_);
  Reap(slurmctld_pid_);
  Reap(munged_pid_);
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

}  // namespace takt::slurm::testing
