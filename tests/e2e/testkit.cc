#include "e2e/testkit.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace takt::testkit {
namespace fs = std::filesystem;

std::string TaktBinary() {
  const char* b = std::getenv("TAKT_BINARY");
  return b ? b : TAKT_DEFAULT_BINARY;
}

std::string SourceDir() {
  const char* s = std::getenv("TAKT_SOURCE_DIR");
  return s ? s : TAKT_DEFAULT_SOURCE_DIR;
}

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  char* d = ::mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string();
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

CliResult RunTakt(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  std::string dir = MakeTempDir("takt-cli");
  std::string out_path = dir + "/out", err_path = dir + "/err";
  std::fflush(nullptr);  // or the child's freopen writes the test's buffered output a second time
  pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    FILE* o = std::freopen(out_path.c_str(), "w", stdout);
    FILE* e = std::freopen(err_path.c_str(), "w", stderr);
    (void)o;
    (void)e;
    std::string bin = TaktBinary();
    std::vector<char*> argv;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    std::_Exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFileOrEmpty(out_path);
  r.err = ReadFileOrEmpty(err_path);
  fs::remove_all(dir);
  return r;
}

TaktServer::TaktServer() {
  dir_ = MakeTempDir("takt-e2e");
  data_dir_ = dir_ + "/data";
}

TaktServer::~TaktServer() {
  Stop();
  if (!std::getenv("TAKT_KEEP_TEST_DIRS")) fs::remove_all(dir_);
}

bool TaktServer::Start(std::string* error) {
  if (admin_token_.empty()) {
    CliResult init = RunTakt({"init", "--data-dir", data_dir_, "-o", "json"},
                             {{"TAKT_CREDENTIALS_FILE", dir_ + "/credentials"}});
    if (init.exit_code != 0) {
      *error = "takt init failed: " + init.err;
      return false;
    }
    auto pos = init.out.find("\"token\": \"");
    if (pos == std::string::npos) {
      *error = "takt init printed no token: " + init.out;
      return false;
    }
    pos += 10;
    admin_token_ = init.out.substr(pos, init.out.find('"', pos) - pos);
  }
  std::string out_path = dir_ + "/server.out";
  std::string log_path = dir_ + "/server.log";
  std::remove(out_path.c_str());
  std::fflush(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    FILE* o = std::freopen(out_path.c_str(), "w", stdout);
    FILE* e = std::freopen(log_path.c_str(), "a", stderr);
    (void)o;
    (void)e;
    std::string bin = TaktBinary();
    std::vector<std::string> args = {bin,      "server", "--data-dir",  data_dir_,
                                     "--port", "0",      "--log-level", "info"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    std::_Exit(127);
  }
  for (int i = 0; i < 300; ++i) {
    std::string out = ReadFileOrEmpty(out_path);
    auto pos = out.find("listening on http://");
    if (pos != std::string::npos && out.find('\n', pos) != std::string::npos) {
      url_ = out.substr(pos + 13, out.find('\n', pos) - pos - 13);
      port_ = std::atoi(url_.substr(url_.rfind(':') + 1).c_str());
      return true;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      *error = "takt server exited: " + ReadFileOrEmpty(log_path);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  *error = "takt server did not report its port within 15 s";
  return false;
}

void TaktServer::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Kill();
}

void TaktServer::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

CliResult TaktServer::Cli(const std::string& token, const std::vector<std::string>& args) {
  return RunTakt(
      args, {{"TAKT_URL", url_}, {"TAKT_TOKEN", token}, {"TAKT_CREDENTIALS_FILE", dir_ + "/credentials"}});
}

std::string TaktServer::CreatePrincipal(const std::string& name, const std::vector<std::string>& personas) {
  std::vector<std::string> args = {"principal", "create", name, "-o", "json"};
  for (const auto& p : personas) {
    args.push_back("--persona");
    args.push_back(p);
  }
  CliResult r = Cli(admin_token_, args);
  auto pos = r.out.find("\"token\": \"");
  if (r.exit_code != 0 || pos == std::string::npos) return "";
  pos += 10;
  return r.out.substr(pos, r.out.find('"', pos) - pos);
}

}  // namespace takt::testkit
