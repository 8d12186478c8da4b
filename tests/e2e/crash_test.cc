// kill -9 of the real server while a step runs: after a restart over the same
// data directory no run stays `running`. The step that was running counts as
// a `lost` attempt: it runs again when its retry policy allows, otherwise it
// fails with a reason and what depends on it is skipped; what succeeded
// before the crash is kept, not run again. The killed server's sandboxed
// process (a `sleep` with an argument unique to the test) must not outlive it.
//
// The steps are `command` steps, so no dataset is needed: `prepare` writes a
// small table, `slow` sleeps, `after` waits for `slow`. There is no attempt
// number in a command step's environment, so the retried `slow` sleeps again
// (a few seconds); the test kills the server once the sleep is visible in
// /proc, i.e. during the first attempt's command itself.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "core/json.h"
#include "e2e/testkit.h"

namespace takt::testkit {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// One process as /proc shows it.
struct Proc {
  pid_t pid = 0;
  pid_t ppid = 0;
  char state = '?';
  unsigned long long start = 0;  // start time in clock ticks since boot: tells a reused pid apart
  std::string cmdline;           // arguments joined by spaces
};

std::optional<Proc> ReadProc(pid_t pid) {
  const std::string base = "/proc/" + std::to_string(pid);
  const std::string stat = ReadFileOrEmpty(base + "/stat");
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 > stat.size()) return std::nullopt;
  std::istringstream in(stat.substr(close + 2));
  std::vector<std::string> f;
  for (std::string field; in >> field;) f.push_back(field);
  if (f.size() < 20) return std::nullopt;
  Proc p;
  p.pid = pid;
  p.state = f[0][0];
  p.ppid = static_cast<pid_t>(std::stol(f[1]));
  p.start = std::stoull(f[19]);
  p.cmdline = ReadFileOrEmpty(base + "/cmdline");
  for (char& c : p.cmdline) c = c == '\0' ? ' ' : c;
  while (!p.cmdline.empty() && p.cmdline.back() == ' ') p.cmdline.pop_back();
  return p;
}

// Live processes whose argument vector is exactly `argv`.
std::vector<Proc> FindProcesses(const std::vector<std::string>& argv) {
  std::string want;
  for (const auto& a : argv) want += a + '\0';
  std::vector<Proc> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (ReadFileOrEmpty(entry.path().string() + "/cmdline") != want) continue;
    auto p = ReadProc(static_cast<pid_t>(std::stol(name)));
    if (p && p->state != 'Z' && p->state != 'X') found.push_back(*p);
  }
  return found;
}

// `p` and its ancestors up to (not including) `server`.
std::vector<Proc> ChainBelow(const Proc& p, pid_t server) {
  std::vector<Proc> chain = {p};
  for (int i = 0; i < 16 && chain.back().ppid > 1 && chain.back().ppid != server; ++i) {
    auto parent = ReadProc(chain.back().ppid);
    if (!parent) break;
    chain.push_back(*parent);
  }
  return chain;
}

bool StillRunning(const Proc& p) {
  auto now = ReadProc(p.pid);
  return now && now->start == p.start && now->state != 'Z' && now->state != 'X';
}

bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds deadline) {
  const auto until = Clock::now() + deadline;
  while (Clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

Json StepOf(const Json& run, const std::string& name) {
  if (run.is_object() && run.contains("steps")) {
    for (const auto& s : run["steps"])
      if (s.value("name", "") == name) return s;
  }
  return Json::object();
}

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    sam_ = server_.CreatePrincipal("sam", {"data-scientist"});
    ASSERT_FALSE(sam_.empty());
    CliResult project = server_.Cli(server_.admin_token(), {"project", "create", "crash", "--member", "sam"});
    ASSERT_EQ(project.exit_code, 0) << project.err;
    tag_ = std::to_string(::getpid());
  }

  // The run as `takt run show -o json` prints it; a discarded value when the
  // CLI fails (e.g. while the server is down).
  Json Show(const std::string& id) {
    CliResult r = server_.Cli(sam_, {"run", "show", id, "-o", "json"});
    if (r.exit_code != 0) return Json(Json::value_t::discarded);
    return Json::parse(r.out, nullptr, false);
  }

  // A pipeline of three command steps; `slow` runs `sleep_argv`.
  std::string Pipeline(const std::string& name, const std::vector<std::string>& sleep_argv,
                       const std::string& slow_extra) {
    std::string argv;
    for (const auto& a : sleep_argv) argv += (argv.empty() ? "" : ", ") + ("\"" + a + "\"");
    return "name: " + name +
           "\nproject: crash\nsteps:\n"
           "  - name: prepare\n    kind: command\n"
           // The marker value is put together by the step, so the spec (kept in takt.db) never holds it.
           "    command: [sh, -c, 'printf \"robot,reading\\n%s%s,1\\n\" CRASH MARKER-" +
           tag_ +
           " > \"$TAKT_OUTPUT_DIR/rows.csv\"']\n"
           "    outputs: {rows: table}\n"
           "  - name: slow\n    kind: command\n    command: [" +
           argv +
           "]\n"
           "    inputs: {rows: prepare.rows}\n" +
           slow_extra +
           "  - name: after\n    kind: command\n    command: [sh, -c, 'exit 0']\n"
           "    depends_on: [slow]\n";
  }

  struct Killed {
    std::string run_id;
    Json before;                // the run just before the kill
    std::vector<Proc> chain;    // the sleep of the killed attempt and its sandbox ancestors
    std::vector<Proc> orphans;  // those still running after the kill
  };

  // Submits `yaml`, waits until `slow` runs its sleep, kills the server
  // (SIGKILL), records what of the sandbox survived, and starts the server
  // again over the same data directory.
  void SubmitKillRestart(const std::string& yaml, const std::vector<std::string>& sleep_argv, Killed* k) {
    const std::string file = server_.dir() + "/pipeline-" + std::to_string(++pipelines_) + ".yaml";
    WriteFile(file, yaml);
    CliResult run = server_.Cli(sam_, {"pipeline", "run", file, "--no-wait", "-o", "json"});
    ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
    Json queued = Json::parse(run.out, nullptr, false);
    ASSERT_TRUE(queued.is_object()) << run.out;
    k->run_id = queued.value("id", "");
    ASSERT_FALSE(k->run_id.empty()) << run.out;

    // The step is running as the CLI sees it, and its command is a live process.
    Json last;
    const bool running = WaitUntil(
        [&] {
          last = Show(k->run_id);
          return StepOf(last, "slow").value("status", "") == "running";
        },
        std::chrono::seconds(120));
    ASSERT_TRUE(running) << "step slow never ran: " << last.dump();
    std::vector<Proc> sleeps;
    ASSERT_TRUE(WaitUntil(
        [&] {
          sleeps = FindProcesses(sleep_argv);
          return !sleeps.empty();
        },
        std::chrono::seconds(60)))
        << "no process runs the step's command; the run: " << Show(k->run_id).dump();
    ASSERT_EQ(sleeps.size(), 1u) << "more than one process with the test's marker argument";
    k->chain = ChainBelow(sleeps[0], server_.pid());
    // The sleep runs under the server: server → sandbox monitor (a fork of the server, so
    // it shows the server's command line) → bwrap → bwrap (the namespace's init) → sleep.
    ASSERT_EQ(k->chain.back().ppid, server_.pid()) << "not the server's:" << Describe(k->chain);
    ASSERT_GE(k->chain.size(), 2u) << Describe(k->chain);
    std::cout << "the killed attempt's processes:" << Describe(k->chain, 120) << std::endl;
    k->before = Show(k->run_id);
    ASSERT_EQ(StepOf(k->before, "slow").value("status", ""), "running") << k->before.dump();
    ASSERT_EQ(StepOf(k->before, "slow").value("attempt", 0), 1) << k->before.dump();
    ASSERT_EQ(k->before.value("status", ""), "running") << k->before.dump();

    server_.Kill();
    // The killed server's sandbox goes with it (PDEATHSIG, --die-with-parent).
    WaitUntil(
        [&] {
          for (const auto& p : k->chain)
            if (StillRunning(p)) return false;
          return true;
        },
        std::chrono::seconds(10));
    for (const auto& p : k->chain)
      if (StillRunning(p)) k->orphans.push_back(p);

    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
  }

  // Polls until the run is no longer queued or running.
  Json WaitForEnd(const std::string& id) {
    Json last;
    WaitUntil(
        [&] {
          last = Show(id);
          const std::string s = last.is_object() ? last.value("status", "") : "";
          return s == "succeeded" || s == "failed" || s == "cancelled";
        },
        std::chrono::seconds(180));
    return last;
  }

  // One line per process; command lines longer than `width` keep their start and end.
  static std::string Describe(const std::vector<Proc>& procs, size_t width = std::string::npos) {
    std::string s;
    for (const auto& p : procs) {
      std::string cmd = p.cmdline;
      if (cmd.size() > width) cmd = cmd.substr(0, width / 2) + " ... " + cmd.substr(cmd.size() - width / 2);
      s += "\n  pid " + std::to_string(p.pid) + " (parent " + std::to_string(p.ppid) + "): " + cmd;
    }
    return s;
  }

  TaktServer server_;
  std::string sam_, tag_;
  int pipelines_ = 0;
};

TEST_F(CrashTest, AStepRunningAtAKillIsRetriedWhenItsPolicyRetriesLost) {
  const std::vector<std::string> sleep_argv = {"sleep", "4." + tag_ + "1"};
  Killed k;
  ASSERT_NO_FATAL_FAILURE(SubmitKillRestart(
      Pipeline("crash-retry", sleep_argv, "    retry: {attempts: 3, backoff: 1s, on: [lost]}\n"), sleep_argv,
      &k));
  EXPECT_TRUE(k.orphans.empty()) << "processes of the killed attempt survived the server:"
                                 << Describe(k.orphans);
  const Json before_prepare = StepOf(k.before, "prepare");
  EXPECT_EQ(before_prepare.value("status", ""), "succeeded") << k.before.dump();

  Json done = WaitForEnd(k.run_id);
  ASSERT_TRUE(done.is_object()) << "the run cannot be read after the restart";
  EXPECT_EQ(done.value("status", ""), "succeeded") << done.dump(2);
  // What succeeded before the crash is kept, not run again.
  const Json prepare = StepOf(done, "prepare");
  EXPECT_EQ(prepare.value("status", ""), "succeeded");
  EXPECT_EQ(prepare.value("attempt", 0), before_prepare.value("attempt", -1));
  EXPECT_EQ(prepare.value("finished_at", ""), before_prepare.value("finished_at", "x"));
  EXPECT_EQ(prepare["outputs"], before_prepare["outputs"]);
  // The lost attempt counts: the step ran a second time and succeeded.
  const Json slow = StepOf(done, "slow");
  EXPECT_EQ(slow.value("status", ""), "succeeded") << slow.dump();
  EXPECT_EQ(slow.value("attempt", 0), 2) << slow.dump();
  EXPECT_EQ(StepOf(done, "after").value("status", ""), "succeeded");
  EXPECT_EQ(StepOf(done, "after").value("attempt", 0), 1);

  CliResult logs = server_.Cli(sam_, {"run", "logs", k.run_id});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("the server stopped during attempt 1; the step runs again (retry policy: lost)"),
            std::string::npos)
      << logs.out;
  EXPECT_NE(logs.out.find("the server restarted while this run was running; resuming it"), std::string::npos)
      << logs.out;
  // prepare's command ran once, slow's twice.
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t pos = logs.out.find(needle); pos != std::string::npos; pos = logs.out.find(needle, pos + 1))
      ++n;
    return n;
  };
  EXPECT_EQ(count("[prepare] $ sh -c"), 1u) << logs.out;
  EXPECT_EQ(count("[slow] $ sleep"), 2u) << logs.out;
  // Nothing of the test's sleeps is left running.
  EXPECT_TRUE(FindProcesses(sleep_argv).empty()) << Describe(FindProcesses(sleep_argv));
}

TEST_F(CrashTest, AStepRunningAtAKillFailsAsLostWithoutRetryAndItsDependentsAreSkipped) {
  // Long enough that a surviving orphan would still be seen after the restart.
  const std::vector<std::string> sleep_argv = {"sleep", "30." + tag_ + "2"};
  Killed k;
  ASSERT_NO_FATAL_FAILURE(SubmitKillRestart(Pipeline("crash-noretry", sleep_argv, ""), sleep_argv, &k));
  EXPECT_TRUE(k.orphans.empty()) << "processes of the killed attempt survived the server:"
                                 << Describe(k.orphans);

  Json done = WaitForEnd(k.run_id);
  ASSERT_TRUE(done.is_object()) << "the run cannot be read after the restart";
  EXPECT_EQ(done.value("status", ""), "failed") << done.dump(2);
  EXPECT_NE(done.value("error", "").find("step slow"), std::string::npos) << done.dump();
  EXPECT_NE(done.value("error", "").find("the server stopped while this step ran"), std::string::npos)
      << done.dump();
  const Json prepare = StepOf(done, "prepare");
  EXPECT_EQ(prepare.value("status", ""), "succeeded");
  EXPECT_EQ(prepare.value("attempt", 0), 1);
  const Json slow = StepOf(done, "slow");
  EXPECT_EQ(slow.value("status", ""), "failed") << slow.dump();
  EXPECT_EQ(slow.value("failure", ""), "lost") << slow.dump();
  EXPECT_EQ(slow.value("attempt", 0), 1) << slow.dump();
  EXPECT_NE(slow.value("error", "").find("the server stopped while this step ran"), std::string::npos)
      << slow.dump();
  EXPECT_FALSE(slow.value("finished_at", "").empty());
  const Json after = StepOf(done, "after");
  EXPECT_EQ(after.value("status", ""), "skipped") << after.dump();
  EXPECT_EQ(after.value("failure", ""), "upstream") << after.dump();
  EXPECT_EQ(after.value("attempt", -1), 0) << after.dump();
  // No sandbox of the killed server still runs the lost attempt's command.
  EXPECT_TRUE(FindProcesses(sleep_argv).empty()) << Describe(FindProcesses(sleep_argv));
  // The server is still healthy and runs new work.
  CliResult list = server_.Cli(sam_, {"run", "list", "-o", "json"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
}

// A command step's table inputs are decrypted as CSV into its attempt's work
// folder, <data-dir>/work/<run>/<step>-<attempt>/input/data/<channel>/<channel>.csv.
// The attempt a kill -9 interrupted must not leave them behind: the restart
// sweeps scratch folders nobody needs, and a finished run removes its own.
TEST_F(CrashTest, ALostAttemptLeavesNoPlaintextInputsInTheDataDirectory) {
  const std::vector<std::string> sleep_argv = {"sleep", "4." + tag_ + "3"};
  Killed k;
  ASSERT_NO_FATAL_FAILURE(SubmitKillRestart(
      Pipeline("crash-plaintext", sleep_argv, "    retry: {attempts: 2, on: [lost]}\n"), sleep_argv, &k));
  Json done = WaitForEnd(k.run_id);
  ASSERT_EQ(done.value("status", ""), "succeeded") << done.dump(2);
  server_.Stop();
  const std::string marker = "CRASHMARKER-" + tag_;
  for (const auto& entry : fs::recursive_directory_iterator(server_.data_dir())) {
    if (!entry.is_regular_file()) continue;
    EXPECT_EQ(ReadFileOrEmpty(entry.path().string()).find(marker), std::string::npos)
        << "plaintext step input left in " << entry.path();
  }
}

}  // namespace
}  // namespace takt::testkit
