#include "connectors/testing_postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <system_error>

extern char** environ;

namespace takt::connectors::testing {
namespace {

constexpr const char* kBinDir = "/usr/lib/postgresql/15/bin";

// Runs in the watchdog: waits for "done" from the test process; if the
// socket closes without it, the test died, and the cluster goes with it.
constexpr const char* kWatchdogScript = R"sh(
trap '' HUP INT
read -r line
[ "$line" = done ] && exit 0
pidfile="$1/data/postmaster.pid"
if [ -f "$pidfile" ]; then
  pid=$(head -n 1 "$pidfile")
  if [ -n "$pid" ]; then
    kill -QUIT "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
  fi
fi
rm -rf "$1"
)sh";

std::string Tail(const std::filesystem::path& file, size_t max_bytes = 1500) {
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

// A port that was free on 127.0.0.1 a moment ago (the kernel's pick for port 0).
Result<int> FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Internal("socket: " + std::system_category().message(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    return Internal("binding a loopback port: " + std::system_category().message(err));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// posix_spawn with argv and file actions; returns the child's pid.
Result<pid_t> Spawn(const std::vector<std::string>& args, posix_spawn_file_actions_t* actions,
                    posix_spawnattr_t* attr) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], actions, attr, argv.data(), environ);
  if (rc != 0) return Internal("cannot run " + args[0] + ": " + std::system_category().message(rc));
  return pid;
}

Result<int> Wait(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Internal("waitpid: " + std::system_category().message(errno));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace

Result<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> server(new PostgresServer());
  TAKT_RETURN_IF_ERROR(server->Init());
  return server;
}

Status PostgresServer::Init() {
  const std::filesystem::path bin(kBinDir);
  for (const char* tool : {"initdb", "pg_ctl", "postgres"}) {
    if (::access((bin / tool).c_str(), X_OK) != 0) {
      return FailedPrecondition("PostgreSQL 15 is not installed (no " + (bin / tool).string() +
                                "): install postgresql-15 (scripts/install-deps.sh)");
    }
  }
  if (::geteuid() == 0) {
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) {
      return FailedPrecondition(
          "running as root, and PostgreSQL refuses to: there is no `postgres` OS user to run it as "
          "(installing postgresql-15 creates one; scripts/install-deps.sh)");
    }
    as_postgres_user_ = true;
    postgres_uid_ = pw->pw_uid;
    postgres_gid_ = pw->pw_gid;
  }

  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/takt-pg-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Internal("creating a temp dir " + tmpl + ": " + std::system_category().message(errno));
  }
  dir_ = tmpl;
  if (as_postgres_user_ && ::chown(dir_.c_str(), postgres_uid_, postgres_gid_) != 0) {
    return Internal("chown " + dir_.string() + " to postgres: " + std::system_category().message(errno));
  }
  TAKT_RETURN_IF_ERROR(StartWatchdog());

  const std::string data = (dir_ / "data").string();
  TAKT_RETURN_IF_ERROR(RunTool({(bin / "initdb").string(), "-D", data, "-U", "postgres", "-A", "trust", "-E",
                                "UTF8", "--locale=C", "--no-sync"},
                               "initdb.log"));
  {
    // Sockets only in the temp dir and on 127.0.0.1; durability off (a
    // throwaway cluster); the port comes per start attempt (-p).
    std::ofstream conf(dir_ / "data" / "postgresql.conf", std::ios::app);
    conf << "\n# takt test cluster\n"
         << "listen_addresses = '127.0.0.1'\n"
         << "unix_socket_directories = '" << dir_.string() << "'\n"
         << "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
         << "max_connections = 30\nshared_buffers = 32MB\n"
         << "max_wal_senders = 0\nwal_level = minimal\n";
    std::ofstream hba(dir_ / "data" / "pg_hba.conf", std::ios::trunc);
    hba << "local all all trust\n"
        << "host all all 127.0.0.1/32 scram-sha-256\n";
    if (!conf || !hba) return Internal("writing the configuration in " + data);
  }
  TAKT_RETURN_IF_ERROR(StartOnFreePort());
  password_ = RandomHex(16);
  return Exec("CREATE ROLE takt LOGIN SUPERUSER PASSWORD '" + password_ + "'");
}

Status PostgresServer::StartOnFreePort() {
  const std::filesystem::path bin(kBinDir);
  // The port is free when picked but may be taken before the server binds
  // it; then try another.
  for (int attempt = 1;; ++attempt) {
    TAKT_ASSIGN_OR_RETURN(port_, FreeLoopbackPort());
    std::error_code ec;
    std::filesystem::remove(dir_ / "postgres.log", ec);
    Status started = RunTool(
        {(bin / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-l", (dir_ / "postgres.log").string(),
         "-w", "-t", "60", "-s", "-o", "-p " + std::to_string(port_), "start"},
        "pg_ctl.log");
    if (started) {
      running_ = true;
      return Ok();
    }
    const std::string log = Tail(dir_ / "postgres.log", 4000);
    if (attempt >= 5 || log.find("could not bind") == std::string::npos) {
      return std::unexpected(started.error()
                                 .WithContext("starting PostgreSQL in " + dir_.string())
                                 .WithContext("server log: " + Tail(dir_ / "postgres.log")));
    }
  }
}

Status PostgresServer::StartWatchdog() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return Internal("socketpair: " + std::system_category().message(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], 0);  // dup2 clears close-on-exec
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own session: a Ctrl-C or hangup meant for the test does not reach it.
  short flags = POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  posix_spawnattr_setflags(&attr, flags);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  auto pid = Spawn({"/bin/sh", "-c", kWatchdogScript, "takt-pg-watchdog", dir_.string()}, &actions, &attr);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(fds[0]);
  if (!pid) {
    ::close(fds[1]);
    return std::unexpected(pid.error());
  }
  watchdog_pid_ = *pid;
  watchdog_fd_ = fds[1];
  return Ok();
}

Status PostgresServer::RunTool(const std::vector<std::string>& args, const std::string& log_name) {
  std::vector<std::string> argv;
  if (as_postgres_user_) {
    std::string runuser;
    for (const char* candidate : {"/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"}) {
      if (::access(candidate, X_OK) == 0) {
        runuser = candidate;
        break;
      }
    }
    if (runuser.empty())
      return FailedPrecondition("running as root needs runuser (util-linux) to start PostgreSQL");
    argv = {runuser, "-u", "postgres", "--"};
  }
  argv.insert(argv.end(), args.begin(), args.end());

  const std::filesystem::path log = dir_ / log_name;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addchdir_np(&actions, dir_.c_str());
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  auto pid = Spawn(argv, &actions, nullptr);
  posix_spawn_file_actions_destroy(&actions);
  if (!pid) return std::unexpected(pid.error());
  TAKT_ASSIGN_OR_RETURN(int exit_code, Wait(*pid));
  if (exit_code != 0) {
    const std::filesystem::path tool(args[0]);
    return Internal(tool.filename().string() + " exited with " + std::to_string(exit_code) + ": " +
                    Tail(log));
  }
  return Ok();
}

std::string PostgresServer::uri() const {
  return "postgresql://takt:" + password_ + "@127.0.0.1:" + std::to_string(port_) + "/postgres";
}

Status PostgresServer::Exec(const std::string& sql) {
  if (!running_) return Unavailable("the test PostgreSQL server is stopped");
  const std::string port = std::to_string(port_);
  const char* keys[] = {"host", "port", "dbname", "user", "connect_timeout", nullptr};
  const char* values[] = {dir_.c_str(), port.c_str(), "postgres", "postgres", "10", nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, 0);
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    return Unavailable("connecting to the test PostgreSQL server: " + message);
  }
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);  // "NOTICE: table does not exist, skipping"
  PGresult* result = PQexec(conn, sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  std::string message = PQresultErrorMessage(result);
  PQclear(result);
  PQfinish(conn);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    return InvalidArgument("test fixture SQL: " + message);
  return Ok();
}

void PostgresServer::Stop() {
  if (!running_) return;
  running_ = false;
  const std::filesystem::path bin(kBinDir);
  IgnoreError(RunTool({(bin / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-m", "immediate", "-w",
                       "-t", "60", "-s", "stop"},
                      "pg_ctl.log"));
}

PostgresServer::~PostgresServer() {
  Stop();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  if (watchdog_fd_ >= 0) {
    // Tell the watchdog all is cleaned up; MSG_NOSIGNAL in case it is gone.
    IgnoreError(::send(watchdog_fd_, "done\n", 5, MSG_NOSIGNAL));
    ::close(watchdog_fd_);
  }
  if (watchdog_pid_ > 0) IgnoreError(Wait(watchdog_pid_));
}

}  // namespace takt::connectors::testing
