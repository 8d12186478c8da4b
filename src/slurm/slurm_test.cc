#include "slurm/slurm.h"

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

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/temp_dir.h"
#include "slurm/command.h"
#include "slurm/testing_slurm.h"

extern char** environ;

namespace takt::slurm {
namespace {

using Clock = std::chrono::steady_clock;
using testing::Cluster;

constexpr const char* kHelperEnv = "TAKT_SLURM_WATCHDOG_HELPER_OUT";

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::filesystem::path WriteScript(const std::filesystem::path& dir, const std::string& name,
                                  const std::string& body) {
  const std::filesystem::path path = dir / (name + ".sh");
  std::ofstream(path) << "#!/bin/bash\n" << body << "\n";
  ::chmod(path.c_str(), 0755);
  return path;
}

JobSpec SpecFor(const std::filesystem::path& dir, const std::string& name, const std::string& body) {
  JobSpec spec;
  spec.name = name;
  spec.script_path = WriteScript(dir, name, body).string();
  spec.work_dir = dir.string();
  spec.stdout_path = (dir / (name + ".out")).string();
  spec.stderr_path = (dir / (name + ".err")).string();
  return spec;
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::seconds limit,
             std::chrono::milliseconds step = std::chrono::milliseconds(50)) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(step);
  }
  return pred();
}

// Polls until the job is in a state `done` accepts; returns the last status.
template <typename Pred>
JobStatus WaitUntil(const Client& client, const std::string& id, Pred done, std::chrono::seconds limit) {
  JobStatus last;
  WaitFor(
      [&] {
        auto status = client.Status(id);
        if (!status) {
          last.reason = status.error().ToString();
          return false;
        }
        last = *status;
        return done(last);
      },
      limit);
  return last;
}

JobStatus WaitFinished(const Client& client, const std::string& id,
                       std::chrono::seconds limit = std::chrono::seconds(60)) {
  return WaitUntil(
      client, id, [](const JobStatus& s) { return s.finished(); }, limit);
}

// Running and not a zombie.
bool ProcessAlive(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t paren = line.rfind(") ");
  return paren != std::string::npos && line.size() > paren + 2 && line[paren + 2] != 'Z';
}

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

// When this binary runs with kHelperEnv set (by the watchdog test), it only
// starts a cluster with a running job, writes "<dir> <port> <job pid>" to the
// named file and waits to be killed; gtest never runs.
const bool kRanAsHelper = [] {
  const char* out = std::getenv(kHelperEnv);
  if (out == nullptr) return false;
  auto cluster = Cluster::Start();
  if (!cluster) _exit(3);
  const std::filesystem::path work = std::filesystem::path(out).parent_path();
  Client client((*cluster)->options());
  JobSpec spec = SpecFor(work, "orphan", "echo $$ > " + (work / "orphan.pid").string() + "\nexec sleep 600");
  if (!client.Submit(spec)) _exit(4);
  if (!WaitFor([&] { return !ReadFile(work / "orphan.pid").empty(); }, std::chrono::seconds(60))) _exit(5);
  {
    std::ofstream f(std::string(out) + ".tmp");
    f << (*cluster)->dir().string() << " " << (*cluster)->slurmctld_port() << " "
      << ReadFile(work / "orphan.pid");
  }
  std::filesystem::rename(std::string(out) + ".tmp", out);
  std::this_thread::sleep_for(std::chrono::minutes(5));
  _exit(6);  // not reached: the test kills us
}();

class SlurmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto started = Clock::now();
    auto cluster = Cluster::Start();
    if (!cluster) {
      start_error_ = cluster.error().ToString();
      return;
    }
    cluster_ = std::move(*cluster);
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    std::printf("[ measured ] test cluster start: %.2f s (%d CPUs, %lld MB, node %s)\n", seconds,
                cluster_->cpus(), static_cast<long long>(cluster_->memory_mb()),
                cluster_->node_name().c_str());
  }
  static void TearDownTestSuite() { cluster_.reset(); }

  void SetUp() override {
    ASSERT_FALSE(kRanAsHelper);
    ASSERT_TRUE(cluster_) << start_error_;
    client_ = std::make_unique<Client>(cluster_->options());
  }

  static std::unique_ptr<Cluster> cluster_;
  static std::string start_error_;
  std::unique_ptr<Client> client_;
  TempDir tmp_{"takt-slurm-job"};
};

std::unique_ptr<Cluster> SlurmTest::cluster_;
std::string SlurmTest::start_error_;

TEST_F(SlurmTest, TheTestClusterAnswersAndIsPrivate) {
  EXPECT_TRUE(client_->Ping()) << client_->Ping().error().ToString();
  const std::string conf = ReadFile(cluster_->conf_path());
  EXPECT_NE(conf.find("AuthInfo=socket=" + cluster_->dir().string() + "/munge/munge.socket"),
            std::string::npos);
  EXPECT_NE(conf.find("SlurmctldPort=" + std::to_string(cluster_->slurmctld_port())), std::string::npos);
  EXPECT_TRUE(Listening(cluster_->slurmctld_port()));
  EXPECT_GT(cluster_->cpus(), 0);

  Options elsewhere = cluster_->options();
  elsewhere.partition = "nosuchpartition";
  auto ping = Client(elsewhere).Ping();
  ASSERT_FALSE(ping);
  EXPECT_EQ(ping.error().code(), Code::kUnavailable);
  EXPECT_NE(ping.error().message().find("nosuchpartition"), std::string::npos) << ping.error().message();
}

TEST_F(SlurmTest, PingSaysWhyNoNodeIsUsable) {
  auto scontrol = [&](const std::string& state) {
    auto out = RunCommand({"/usr/bin/scontrol", "update", "NodeName=" + cluster_->node_name(),
                           "State=" + state, "Reason=takt-maintenance"},
                          {"SLURM_CONF=" + cluster_->conf_path().string()}, 30);
    ASSERT_TRUE(out) << out.error().ToString();
    ASSERT_EQ(out->exit_code, 0) << out->err;
  };
  scontrol("DRAIN");
  auto drained = client_->Ping();
  scontrol("RESUME");
  ASSERT_FALSE(drained);
  EXPECT_EQ(drained.error().code(), Code::kUnavailable);
  EXPECT_NE(
      drained.error().message().find("no usable node in partition takt: " + cluster_->node_name() + " drain"),
      std::string::npos)
      << drained.error().message();
  EXPECT_NE(drained.error().message().find("takt-maintenance"), std::string::npos)
      << drained.error().message();
  EXPECT_TRUE(WaitFor([&] { return bool(client_->Ping()); }, std::chrono::seconds(30)));
}

TEST_F(SlurmTest, RunsAScriptWithItsEnvironmentAndFiles) {
  ::setenv("TAKT_SLURM_TEST_PARENT_ONLY", "must-not-leak", 1);
  const std::string tricky =
      "two words; $(touch /tmp/takt-slurm-injected) 'single' \"double\" a=b\nsecond line";
  JobSpec spec = SpecFor(tmp_.path(), "env-job",
                         "echo \"cpus=$SLURM_CPUS_PER_TASK\"\n"
                         "echo \"greeting=$GREETING\"\n"
                         "printf 'tricky=%s\\n' \"$TRICKY\"\n"
                         "echo \"parent=${TAKT_SLURM_TEST_PARENT_ONLY-unset}\"\n"
                         "echo \"path=$PATH\"\n"
                         "echo \"pwd=$(pwd)\"\n"
                         "echo made > made.txt\n"
                         "echo to-stderr >&2");
  spec.cpus = std::min(2, cluster_->cpus());
  spec.memory_mb = 64;
  spec.time_limit_minutes = 5;
  spec.env = {{"GREETING", "hello"}, {"TRICKY", tricky}};
  auto id = client_->Submit(spec);
  ::unsetenv("TAKT_SLURM_TEST_PARENT_ONLY");
  ASSERT_TRUE(id) << id.error().ToString();
  EXPECT_TRUE(std::regex_match(*id, std::regex("[0-9]+"))) << *id;

  const JobStatus status = WaitFinished(*client_, *id);
  EXPECT_EQ(status.state, State::kCompleted) << status.raw_state << " " << status.reason;
  EXPECT_EQ(status.raw_state, "COMPLETED");
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_EQ(status.signal, 0);
  EXPECT_TRUE(status.finished());

  const std::string out = ReadFile(spec.stdout_path);
  EXPECT_NE(out.find("cpus=" + std::to_string(spec.cpus) + "\n"), std::string::npos) << out;
  EXPECT_NE(out.find("greeting=hello\n"), std::string::npos) << out;
  EXPECT_NE(out.find("tricky=" + tricky + "\n"), std::string::npos) << out;
  EXPECT_NE(out.find("parent=unset\n"), std::string::npos) << out;
  EXPECT_NE(out.find("path=/usr/local/sbin:"), std::string::npos) << out;
  EXPECT_NE(out.find("pwd=" + tmp_.path().string() + "\n"), std::string::npos) << out;
  EXPECT_EQ(ReadFile(tmp_.path() / "made.txt"), "made\n");
  EXPECT_EQ(ReadFile(spec.stderr_path), "to-stderr\n");
  EXPECT_FALSE(std::filesystem::exists("/tmp/takt-slurm-injected"));

  // Still visible after a while: finished jobs stay for MinJobAge.
  auto again = client_->Status(*id);
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->state, State::kCompleted);
}

TEST_F(SlurmTest, ANonZeroExitIsFailedWithItsCode) {
  JobSpec spec = SpecFor(tmp_.path(), "exit-3", "echo before\nexit 3");
  spec.stderr_path = "";  // into stdout
  auto id = client_->Submit(spec);
  ASSERT_TRUE(id) << id.error().ToString();
  const JobStatus status = WaitFinished(*client_, *id);
  EXPECT_EQ(status.state, State::kFailed) << status.raw_state << " " << status.reason;
  EXPECT_EQ(status.raw_state, "FAILED");
  EXPECT_EQ(status.exit_code, 3);
  EXPECT_EQ(status.signal, 0);
  EXPECT_NE(status.reason.find("exited with code 3"), std::string::npos) << status.reason;
  EXPECT_EQ(ReadFile(spec.stdout_path), "before\n");
}

TEST_F(SlurmTest, CancelStopsARunningJob) {
  const std::filesystem::path pid_file = tmp_.path() / "sleep.pid";
  JobSpec spec = SpecFor(tmp_.path(), "sleeper", "echo $$ > " + pid_file.string() + "\nsleep 600");
  auto id = client_->Submit(spec);
  ASSERT_TRUE(id) << id.error().ToString();
  const JobStatus running = WaitUntil(
      *client_, *id, [](const JobStatus& s) { return s.state != State::kPending; }, std::chrono::seconds(60));
  ASSERT_EQ(running.state, State::kRunning) << running.raw_state << " " << running.reason;
  EXPECT_FALSE(running.finished());
  EXPECT_EQ(running.exit_code, -1);
  ASSERT_TRUE(WaitFor([&] { return !ReadFile(pid_file).empty(); }, std::chrono::seconds(30)));
  const int pid = std::atoi(ReadFile(pid_file).c_str());
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(ProcessAlive(pid));

  ASSERT_TRUE(client_->Cancel(*id));
  const JobStatus status = WaitFinished(*client_, *id);
  EXPECT_EQ(status.state, State::kCancelled) << status.raw_state << " " << status.reason;
  EXPECT_EQ(status.raw_state, "CANCELLED");
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); }, std::chrono::seconds(30))) << "the script survived";

  auto again = client_->Cancel(*id);  // already finished: fine
  EXPECT_TRUE(again) << again.error().ToString();
}

TEST_F(SlurmTest, AJobWaitingForCpusIsPendingWithAReason) {
  JobSpec big = SpecFor(tmp_.path(), "whole-node", "sleep 600");
  big.cpus = cluster_->cpus();
  auto big_id = client_->Submit(big);
  ASSERT_TRUE(big_id) << big_id.error().ToString();
  const JobStatus running = WaitUntil(
      *client_, *big_id, [](const JobStatus& s) { return s.state != State::kPending; },
      std::chrono::seconds(60));
  ASSERT_EQ(running.state, State::kRunning) << running.raw_state;

  JobSpec small = SpecFor(tmp_.path(), "waiting", "true");
  auto small_id = client_->Submit(small);
  ASSERT_TRUE(small_id) << small_id.error().ToString();
  auto pending = client_->Status(*small_id);
  ASSERT_TRUE(pending) << pending.error().ToString();
  EXPECT_EQ(pending->state, State::kPending) << pending->raw_state;
  EXPECT_EQ(pending->raw_state, "PENDING");
  EXPECT_FALSE(pending->finished());
  // "Resources" (or "Priority" while the scheduler has not looked at it yet).
  EXPECT_TRUE(pending->reason == "Resources" || pending->reason == "Priority" || pending->reason == "None" ||
              pending->reason.empty())
      << pending->reason;
  const JobStatus with_reason = WaitUntil(
      *client_, *small_id, [](const JobStatus& s) { return !s.reason.empty(); }, std::chrono::seconds(30));
  EXPECT_EQ(with_reason.reason, "Resources");

  ASSERT_TRUE(client_->Cancel(*small_id));
  EXPECT_EQ(WaitFinished(*client_, *small_id).state, State::kCancelled);
  ASSERT_TRUE(client_->Cancel(*big_id));
  EXPECT_EQ(WaitFinished(*client_, *big_id).state, State::kCancelled);
}

TEST_F(SlurmTest, MoreCpusOrMemoryThanTheNodeHasIsRefused) {
  JobSpec spec = SpecFor(tmp_.path(), "too-big", "true");
  spec.cpus = cluster_->cpus() + 1;
  auto id = client_->Submit(spec);
  ASSERT_FALSE(id) << "submitted as " << *id;
  EXPECT_EQ(id.error().code(), Code::kInvalidArgument);
  // Slurm 22.05 says "More processors requested than permitted".
  EXPECT_NE(id.error().message().find("Batch job submission failed"), std::string::npos)
      << id.error().message();
  EXPECT_NE(id.error().message().find("too-big"), std::string::npos) << id.error().message();

  spec.cpus = 1;
  spec.memory_mb = cluster_->memory_mb() * 2;
  auto memory = client_->Submit(spec);
  ASSERT_FALSE(memory) << "submitted as " << *memory;
  EXPECT_EQ(memory.error().code(), Code::kInvalidArgument);
}

TEST_F(SlurmTest, ATimeLimitEndsInTimeout) {
  // --time has minute granularity: the job dies a little after one minute.
  JobSpec spec = SpecFor(tmp_.path(), "overtime", "sleep 300");
  spec.time_limit_minutes = 1;
  auto id = client_->Submit(spec);
  ASSERT_TRUE(id) << id.error().ToString();
  const JobStatus status = WaitFinished(*client_, *id, std::chrono::seconds(180));
  EXPECT_EQ(status.state, State::kTimeout) << status.raw_state << " " << status.reason;
  EXPECT_EQ(status.raw_state, "TIMEOUT");
  EXPECT_NE(status.reason.find("time limit"), std::string::npos) << status.reason;
  EXPECT_NE(ReadFile(spec.stderr_path).find("DUE TO TIME LIMIT"), std::string::npos);
}

TEST_F(SlurmTest, BadSpecsAreRefusedNamingTheField) {
  const JobSpec good = SpecFor(tmp_.path(), "good", "true");
  std::ofstream(tmp_.path() / "no-shebang.sh") << "echo hi\n";
  struct Case {
    std::string what;
    std::function<void(JobSpec&)> change;
    std::string mentions;
  };
  const std::vector<Case> cases = {
      {"relative script", [](JobSpec& s) { s.script_path = "good.sh"; },
       "script_path must be an absolute path"},
      {"missing script", [&](JobSpec& s) { s.script_path = (tmp_.path() / "nope.sh").string(); },
       "is not a file"},
      {"script without #!", [&](JobSpec& s) { s.script_path = (tmp_.path() / "no-shebang.sh").string(); },
       "#!"},
      {"script path with a newline", [&](JobSpec& s) { s.script_path += "\n"; },
       "script_path contains a newline"},
      {"name with a newline", [](JobSpec& s) { s.name = "train\n#SBATCH --uid=0"; }, "job name"},
      {"name with a space", [](JobSpec& s) { s.name = "two words"; }, "job name \"two words\""},
      {"empty name", [](JobSpec& s) { s.name = ""; }, "job name is empty"},
      {"relative work dir", [](JobSpec& s) { s.work_dir = "runs/1"; }, "work_dir must be an absolute path"},
      {"missing work dir", [](JobSpec& s) { s.work_dir = "/nonexistent/run"; }, "work_dir /nonexistent/run"},
      {"relative stdout", [](JobSpec& s) { s.stdout_path = "out.txt"; },
       "stdout_path must be an absolute path"},
      {"stdout pattern", [&](JobSpec& s) { s.stdout_path = (tmp_.path() / "%j.out").string(); }, "'%'"},
      {"stdout in a missing dir", [](JobSpec& s) { s.stdout_path = "/nonexistent/out.txt"; }, "no directory"},
      {"stderr with a newline", [&](JobSpec& s) { s.stderr_path += "\nx"; },
       "stderr_path contains a newline"},
      {"no cpus", [](JobSpec& s) { s.cpus = 0; }, "cpus must be between 1"},
      {"negative memory", [](JobSpec& s) { s.memory_mb = -1; }, "memory_mb"},
      {"negative time", [](JobSpec& s) { s.time_limit_minutes = -5; }, "time_limit_minutes"},
      {"bad env name",
       [](JobSpec& s) {
         s.env = {{"1X", "v"}};
       },
       "\"1X\" is not a variable name"},
      {"env name with a dash",
       [](JobSpec& s) {
         s.env = {{"A-B", "v"}};
       },
       "\"A-B\" is not a variable name"},
      {"Slurm's env names",
       [](JobSpec& s) {
         s.env = {{"SLURM_CPUS_PER_TASK", "64"}};
       },
       "belong to Slurm"},
      {"sbatch's env names",
       [](JobSpec& s) {
         s.env = {{"SBATCH_PARTITION", "x"}};
       },
       "belong to Slurm"},
      {"NUL in a value",
       [](JobSpec& s) {
         s.env = {{"A", std::string("x\0y", 3)}};
       },
       "NUL"},
  };
  for (const Case& c : cases) {
    JobSpec spec = good;
    c.change(spec);
    auto id = client_->Submit(spec);
    ASSERT_FALSE(id) << c.what << ": submitted as " << *id;
    EXPECT_EQ(id.error().code(), Code::kInvalidArgument) << c.what << ": " << id.error().ToString();
    EXPECT_NE(id.error().message().find(c.mentions), std::string::npos)
        << c.what << ": " << id.error().message();
  }
  // The good spec itself is fine.
  auto id = client_->Submit(good);
  ASSERT_TRUE(id) << id.error().ToString();
  EXPECT_EQ(WaitFinished(*client_, *id).state, State::kCompleted);
}

TEST_F(SlurmTest, OneClientServesManyThreads) {
  std::vector<std::thread> threads;
  std::vector<JobStatus> results(4);
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      const JobSpec spec = SpecFor(tmp_.path(), "thread-" + std::to_string(i), "echo " + std::to_string(i));
      auto id = client_->Submit(spec);
      if (!id) {
        results[i].reason = id.error().ToString();
        return;
      }
      results[i] = WaitFinished(*client_, *id);
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].state, State::kCompleted) << i << ": " << results[i].reason;
    EXPECT_EQ(ReadFile(tmp_.path() / ("thread-" + std::to_string(i) + ".out")), std::to_string(i) + "\n");
  }
}

TEST_F(SlurmTest, UnknownAndMalformedJobIds) {
  auto status = client_->Status("987654");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), Code::kNotFound) << status.error().ToString();
  auto cancel = client_->Cancel("987654");
  ASSERT_FALSE(cancel);
  EXPECT_EQ(cancel.error().code(), Code::kNotFound) << cancel.error().ToString();

  for (const std::string bad : {"", "abc", "12;rm -rf /", "-1", "12\n13", "1_", "_1"}) {
    auto s = client_->Status(bad);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code(), Code::kInvalidArgument) << bad;
    auto c = client_->Cancel(bad);
    ASSERT_FALSE(c) << bad;
    EXPECT_EQ(c.error().code(), Code::kInvalidArgument) << bad;
  }
}

TEST_F(SlurmTest, ADeadControllerIsUnavailableWithinTheCommandTimeout) {
  // The same cluster's conf, but a controller port nobody listens on.
  const int sock = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int dead_port = ntohs(addr.sin_port);
  ::close(sock);
  std::string conf = ReadFile(cluster_->conf_path());
  conf = std::regex_replace(conf, std::regex("SlurmctldPort=[0-9]+"),
                            "SlurmctldPort=" + std::to_string(dead_port));
  const std::filesystem::path dead_conf = tmp_.path() / "dead.conf";
  std::ofstream(dead_conf) << conf;

  Options options = cluster_->options();
  options.slurm_conf = dead_conf.string();
  options.command_timeout_seconds = 3;
  const Client dead(options);
  const JobSpec spec = SpecFor(tmp_.path(), "never", "true");
  auto check = [&](const char* what, auto call) {
    const auto started = Clock::now();
    auto result = call();
    const auto took = Clock::now() - started;
    ASSERT_FALSE(result) << what;
    EXPECT_EQ(result.error().code(), Code::kUnavailable) << what << ": " << result.error().ToString();
    // The command timeout, plus slack for a loaded machine (sacct may follow squeue).
    EXPECT_LT(took, std::chrono::seconds(3 * 2 + 10)) << what;
  };
  check("Ping", [&] { return dead.Ping(); });
  check("Submit", [&] { return dead.Submit(spec); });
  check("Status", [&] { return dead.Status("1"); });
  check("Cancel", [&] { return dead.Cancel("1"); });

  // A conf that does not exist, and commands that do not.
  options.slurm_conf = (tmp_.path() / "missing.conf").string();
  auto missing = Client(options).Ping();
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(missing.error().message().find("missing.conf"), std::string::npos);
  Options no_bin = cluster_->options();
  no_bin.bin_dir = tmp_.path().string();
  auto no_sbatch = Client(no_bin).Submit(spec);
  ASSERT_FALSE(no_sbatch);
  EXPECT_EQ(no_sbatch.error().code(), Code::kFailedPrecondition) << no_sbatch.error().ToString();
}

TEST_F(SlurmTest, TwoClustersRunSideBySide) {
  auto second = Cluster::Start();
  ASSERT_TRUE(second) << second.error().ToString();
  EXPECT_NE((*second)->dir(), cluster_->dir());
  EXPECT_NE((*second)->slurmctld_port(), cluster_->slurmctld_port());
  const Client other((*second)->options());
  const JobSpec spec = SpecFor(tmp_.path(), "elsewhere", "echo on-the-second");
  auto id = other.Submit(spec);
  ASSERT_TRUE(id) << id.error().ToString();
  EXPECT_EQ(*id, "1");  // a cluster of its own: its first job
  EXPECT_EQ(WaitFinished(other, *id).state, State::kCompleted);
  EXPECT_EQ(ReadFile(spec.stdout_path), "on-the-second\n");

  const std::filesystem::path dir = (*second)->dir();
  const int port = (*second)->slurmctld_port();
  second->reset();
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_FALSE(Listening(port));
  EXPECT_TRUE(client_->Ping()) << "the first cluster went down with the second";
}

// Not a timed test: it asserts only that the jobs run, and prints figures
// for the pipeline benchmark to compare its per-step overhead with.
TEST_F(SlurmTest, MeasuresSubmitToStartLatency) {
  // Chained: each job submitted as soon as the previous one is seen finished,
  // as a pipeline runs its steps; staggered: submitted at varied moments.
  for (const bool chained : {true, false}) {
    std::vector<double> latencies;
    for (int i = 0; i < 10; ++i) {
      if (!chained) std::this_thread::sleep_for(std::chrono::milliseconds((i * 370) % 1000));
      const JobSpec spec = SpecFor(
          tmp_.path(), "trivial-" + std::to_string(chained) + "-" + std::to_string(i), "echo started");
      auto id = client_->Submit(spec);
      ASSERT_TRUE(id) << id.error().ToString();
      const auto submitted = Clock::now();
      // Slurm creates the output file as the job starts.
      ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(spec.stdout_path); }, std::chrono::seconds(60),
                          std::chrono::milliseconds(2)));
      latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - submitted).count());
      EXPECT_EQ(WaitFinished(*client_, *id).state, State::kCompleted);
    }
    std::sort(latencies.begin(), latencies.end());
    std::printf(
        "[ measured ] submit-to-start of a trivial job, %s: median %.0f ms (min %.0f, max %.0f, n=%zu)\n",
        chained ? "chained" : "staggered", (latencies[4] + latencies[5]) / 2, latencies.front(),
        latencies.back(), latencies.size());
  }
}

TEST(SlurmClusterTest, TheWatchdogCleansUpAfterAKilledTestProcess) {
  ASSERT_FALSE(kRanAsHelper);
  TempDir tmp("takt-slurm-watchdog-test");
  ::chmod(tmp.path().c_str(), 0755);
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

  const bool reported = WaitFor([&] { return std::filesystem::exists(out); }, std::chrono::seconds(120));
  if (!reported) ::kill(child, SIGKILL);
  ASSERT_TRUE(reported) << "the helper process did not start a cluster with a job";
  std::string dir;
  int port = 0;
  int job_pid = 0;
  std::ifstream(out) >> dir >> port >> job_pid;
  ASSERT_TRUE(std::filesystem::exists(dir));
  ASSERT_GT(port, 0);
  ASSERT_GT(job_pid, 0);
  EXPECT_TRUE(Listening(port));
  EXPECT_TRUE(ProcessAlive(job_pid));

  ASSERT_EQ(::kill(child, SIGKILL), 0);  // no destructor runs
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status));

  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(job_pid); }, std::chrono::seconds(60)))
      << "the job survived";
  EXPECT_TRUE(WaitFor([&] { return !Listening(port); }, std::chrono::seconds(60))) << "slurmctld still up";
  EXPECT_TRUE(WaitFor([&] { return !std::filesystem::exists(dir); }, std::chrono::seconds(60)))
      << dir << " still exists";
}

}  // namespace
}  // namespace takt::slurm
