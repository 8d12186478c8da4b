#include "connectors/testing_postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pwd.h>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "connectors/sql_source.h"
#include "core/temp_dir.h"

extern char** environ;

namespace takt::connectors::testing {
namespace {

constexpr const char* kHelperEnv = "TAKT_PG_WATCHDOG_HELPER_OUT";

// When this binary is started with kHelperEnv set (by the watchdog test
// below), it only starts a server, writes "<port> <dir>" to the named file and
// waits to be killed; gtest never runs.
const bool kRanAsHelper = [] {
  const char* out = std::getenv(kHelperEnv);
  if (out == nullptr) return false;
  auto server = PostgresServer::Start();
  if (!server) _exit(3);
  {
    std::ofstream f(std::string(out) + ".tmp");
    f << (*server)->port() << " " << (*server)->dir().string() << "\n";
  }
  std::filesystem::rename(std::string(out) + ".tmp", out);
  std::this_thread::sleep_for(std::chrono::minutes(2));
  _exit(4);  // not reached: the test kills us
}();

// Whether something accepts TCP connections on 127.0.0.1:port.
bool Listening(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

TEST(PostgresServerTest, StartsStopsAndCleansUp) {
  ASSERT_FALSE(kRanAsHelper);
  std::filesystem::path dir;
  int port = 0;
  {
    const auto started = std::chrono::steady_clock::now();
    auto server = PostgresServer::Start();
    ASSERT_TRUE(server) << server.error().ToString();
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_LT(took, std::chrono::seconds(20));
    dir = (*server)->dir();
    port = (*server)->port();
    EXPECT_TRUE((*server)->running());
    EXPECT_TRUE(Listening(port));
    EXPECT_EQ((*server)->uri(), "postgresql://takt:" + (*server)->password() +
                                    "@127.0.0.1:" + std::to_string(port) + "/postgres");
    EXPECT_EQ((*server)->password().size(), 32u);

    // The URI works, and the server listens on loopback only.
    auto reader = OpenPostgresQuery((*server)->uri(), "SELECT current_setting('listen_addresses') AS a");
    ASSERT_TRUE(reader) << reader.error().ToString();
    auto batch = (*reader)->Next();
    ASSERT_TRUE(batch && batch->has_value());
    EXPECT_EQ((*batch)->columns[0].strings[0], "127.0.0.1");

    if (::geteuid() == 0) {  // run as the postgres OS user, which owns the cluster
      struct stat st {};
      ASSERT_EQ(::stat((dir / "data").c_str(), &st), 0);
      EXPECT_EQ(st.st_uid, ::getpwnam("postgres")->pw_uid);
    }

    EXPECT_TRUE((*server)->Exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)"));
    auto bad = (*server)->Exec("SELECT * FROM no_such_table");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
    EXPECT_NE(bad.error().message().find("no_such_table"), std::string::npos);

    (*server)->Stop();
    (*server)->Stop();  // idempotent
    EXPECT_FALSE((*server)->running());
    EXPECT_FALSE(Listening(port));
    EXPECT_TRUE(std::filesystem::exists(dir));
    auto stopped = (*server)->Exec("SELECT 1");
    ASSERT_FALSE(stopped);
    EXPECT_EQ(stopped.error().code(), Code::kUnavailable);
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(PostgresServerTest, DestructorStopsARunningServer) {
  std::filesystem::path dir;
  int port = 0;
  {
    auto server = PostgresServer::Start();
    ASSERT_TRUE(server) << server.error().ToString();
    dir = (*server)->dir();
    port = (*server)->port();
  }
  EXPECT_FALSE(Listening(port));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(PostgresServerTest, WatchdogRemovesTheServerOfAKilledTestProcess) {
  TempDir tmp("takt-pg-watchdog-test");
  const std::string out = (tmp.path() / "helper.out").string();
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(kHelperEnv) + "=" + out);
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  char self[] = "/proc/self/exe";
  char* argv[] = {self, nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t child = -1;
  ASSERT_EQ(::posix_spawn(&child, "/proc/self/exe", &actions, nullptr, argv, envp.data()), 0);
  posix_spawn_file_actions_destroy(&actions);

  const bool reported = WaitFor([&] { return std::filesystem::exists(out); }, std::chrono::seconds(60));
  if (!reported) ::kill(child, SIGKILL);
  ASSERT_TRUE(reported) << "the helper process did not start a server";
  int port = 0;
  std::string dir;
  std::ifstream(out) >> port >> dir;
  ASSERT_GT(port, 0);
  EXPECT_TRUE(Listening(port));
  ASSERT_TRUE(std::filesystem::exists(dir));

  ASSERT_EQ(::kill(child, SIGKILL), 0);  // no destructor runs
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status));

  EXPECT_TRUE(WaitFor([&] { return !Listening(port); }, std::chrono::seconds(20))) << "server still up";
  EXPECT_TRUE(WaitFor([&] { return !std::filesystem::exists(dir); }, std::chrono::seconds(20)))
      << dir << " still exists";
}

}  // namespace
}  // namespace takt::connectors::testing
