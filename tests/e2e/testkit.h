// File: tests/e2e/testkit.h
//
// A shared kit for end-to-end tests: a fresh data directory, the real `takt
// server` process on a free loopback port, and the real `takt` CLI run as a
// subprocess with the environment a user would set.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace takt::testkit {

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string TaktBinary();
std::string SourceDir();
std::string MakeTempDir(const std::string& prefix);
std::string ReadFileOrEmpty(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);

// Runs `takt args...` with extra environment variables; captures output.
CliResult RunTakt(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {});

// A server over its own data directory. Start() runs `takt init` and `takt
// server --port 0`; the destructor stops it (SIGTERM, then SIGKILL).
class TaktServer {
 public:
  TaktServer();
  ~TaktServer();

  // Returns false (with the reason in `error`) if it did not come up.
  bool Start(std::string* error);
  void Stop();
  // Kills the process without letting it shut down (crash tests).
  void Kill();

  const std::string& url() const { return url_; }
  const std::string& dir() const { return dir_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& admin_token() const { return admin_token_; }
  int port() const { return port_; }
  // The server's process id while it runs, -1 otherwise (crash tests look at its children).
  pid_t pid() const { return pid_; }

  // Creates a principal with personas; returns its token ("" on failure).
  std::string CreatePrincipal(const std::string& name, const std::vector<std::string>& personas);
  // Runs the CLI against this server with `token`.
  CliResult Cli(const std::string& token, const std::vector<std::string>& args);

 private:
  std::string dir_, data_dir_, url_, admin_token_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace takt::testkit
