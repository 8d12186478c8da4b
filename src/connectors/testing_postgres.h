// File: connectors/testing_postgres.h
//
// Test kit: a real, throwaway PostgreSQL 15 cluster for test suites (this
// module's, and end-to-end suites that ingest from a "plant database").
//
//   static std::unique_ptr<PostgresServer> server;   // one per test suite
//   server = *PostgresServer::Start();                // ~1-3 s: initdb + start
//   ASSERT_TRUE(server->Exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)"));
//   auto reader = OpenPostgresQuery(server->uri(), "SELECT x FROM t");
//
// The cluster lives in a fresh temp dir (initdb), listens on a free port on
// 127.0.0.1 only and on a unix socket in that dir. Local (socket) connections
// are trusted; TCP connections need a password, and uri() carries the one of
// the superuser role `takt`, made fresh for each server. Binaries come from
// /usr/lib/postgresql/15/bin. PostgreSQL refuses to run as root: when the
// test runs as root, initdb and pg_ctl run as the `postgres` OS user
// (runuser -u postgres --) and the temp dir is handed to it.
//
// Lifetime: the destructor stops the server (pg_ctl stop -m immediate) and
// removes the dir. A watchdog process (/bin/sh, in its own session) holds a
// pipe from the test process: if the test dies without running the
// destructor (a crash, std::abort, even SIGKILL), the pipe closes and the
// watchdog sends the postmaster SIGQUIT (immediate shutdown) and removes the
// dir. Only if the watchdog itself is killed too (kill -9 of the whole
// process group from outside) does a temp dir /tmp/takt-pg-* stay behind.
//
// Thread safety: not thread-safe; use one server from one thread, or guard it.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"

namespace takt::connectors::testing {

class PostgresServer {
 public:
  // Initialises and starts a cluster. FailedPrecondition if PostgreSQL 15 is
  // not installed ("install postgresql-15 (scripts/install-deps.sh)") or, as
  // root, there is no postgres OS user; Internal with the tail of the tool's
  // output if initdb or pg_ctl fails.
  static Result<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  // postgresql://takt:<password>@127.0.0.1:<port>/postgres
  std::string uri() const;
  // The password in uri(), so tests can check it never appears in messages.
  const std::string& password() const { return password_; }
  // The temp dir holding the cluster (data/, the socket, postgres.log).
  const std::filesystem::path& dir() const { return dir_; }
  bool running() const { return running_; }

  // Runs SQL (several statements allowed) as the superuser `postgres` over
  // the unix socket. For test fixtures. Unavailable once stopped.
  Status Exec(const std::string& sql);
  // Stops the server now (pg_ctl stop -m immediate), e.g. to test "the
  // source database is down". The dir stays until destruction. Idempotent.
  void Stop();

 private:
  PostgresServer() = default;
  Status Init();
  Status StartOnFreePort();
  Status StartWatchdog();
  // Runs a PostgreSQL tool (as the postgres user when root), output to
  // `log` in the dir; Internal with the log's tail if it exits non-zero.
  Status RunTool(const std::vector<std::string>& args, const std::string& log_name);

  std::filesystem::path dir_;
  int port_ = 0;
  std::string password_;
  bool running_ = false;
  bool as_postgres_user_ = false;
  uid_t postgres_uid_ = 0;
  gid_t postgres_gid_ = 0;
  pid_t watchdog_pid_ = -1;
  int watchdog_fd_ = -1;  // write end of the watchdog's pipe
};

}  // namespace takt::connectors::testing
