#include "sandbox/sandbox.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/posix.h"
#include "core/temp_dir.h"

namespace takt::sandbox {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& p, const std::string& text,
               fs::perms perms = fs::perms::owner_read | fs::perms::owner_write) {
  std::ofstream(p, std::ios::binary) << text;
  fs::permissions(p, perms);
}

// Strictly valid UTF-8 with no control characters but tab: what every log line must be.
bool IsCleanUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t') || c == 0x7F) return false;
      ++i;
      continue;
    }
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (n == 0 || c > 0xF4 || i + n > s.size()) return false;
    uint32_t cp = c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x80 && cp < 0xA0))
      return false;
    i += n;
  }
  return true;
}

// Host processes whose command line contains `token`.
int ProcessesWith(const std::string& token) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::string cmdline = ReadFile(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(token) != std::string::npos) ++count;
  }
  return count;
}

// A number unique to this test run, for `sleep 600.<token>` processes we look for afterwards.
std::string UniqueToken() {
  std::random_device rd;
  return std::to_string(100000 + rd() % 900000);
}

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const Status available = Available();
    ASSERT_TRUE(available) << available.error().ToString();
    ASSERT_FALSE(dir_.path().empty());
    in_ = dir_.path() / "in";
    out_ = dir_.path() / "out";
    fs::create_directories(in_);
    fs::create_directories(out_);
  }

  // /bin/sh -c script, inputs at /in (read-only), outputs at /out, a 60 s safety limit.
  Spec Shell(const std::string& script) const {
    Spec spec;
    spec.argv = {"/bin/sh", "-c", script};
    spec.read_only = {{in_.string(), "/in"}};
    spec.writable = {{out_.string(), "/out"}};
    spec.limits.wall_seconds = 60;
    return spec;
  }

  RunResult MustRun(const Spec& spec, const std::atomic<bool>* cancel = nullptr) {
    lines_.clear();
    auto result = sandbox::Run(
        spec, [&](std::string_view stream, std::string_view line) { lines_.emplace_back(stream, line); },
        cancel);
    EXPECT_TRUE(result) << result.error().ToString();
    return result ? *result : RunResult{};
  }

  std::vector<std::string> Lines(std::string_view stream) const {
    std::vector<std::string> out;
    for (const auto& [s, line] : lines_) {
      if (s == stream) out.push_back(line);
    }
    return out;
  }
  std::string Text(std::string_view stream) const {
    std::string text;
    for (const std::string& line : Lines(stream)) text += line + "\n";
    return text;
  }

  TempDir dir_{"takt-sandbox"};
  fs::path in_, out_;
  std::vector<std::pair<std::string, std::string>> lines_;
};

TEST_F(SandboxTest, InputsAreReadOnlyOutputsReachTheHostAndTheRestIsHidden) {
  WriteFile(in_ / "data.txt", "weld,force\n1,2.5\n");
  const std::string host_dir = dir_.path().string();
  const RunResult r = MustRun(Shell(
      "cat /in/data.txt > /out/copy.txt\n"
      "if echo tampered > /in/data.txt 2>/dev/null; then echo input-writable; else echo input-read-only; fi\n"
      "if mount -o remount,rw,bind /in 2>/dev/null; then echo remounted; fi\n"
      "if touch /new-file-in-root 2>/dev/null; then echo root-writable; fi\n"
      "for p in /work /root /home /var/lib /etc/shadow /etc/ssh '" +
      host_dir +
      "'; do if [ -e \"$p\" ]; then echo \"sees $p\"; fi; done\n"
      "hostname; pwd; echo done"));
  EXPECT_TRUE(r.ok()) << r.reason << "\n" << Text("stderr");
  const std::string out = Text("stdout");
  EXPECT_NE(out.find("input-read-only"), std::string::npos) << out;
  EXPECT_EQ(out.find("input-writable"), std::string::npos) << out;
  EXPECT_EQ(out.find("remounted"), std::string::npos) << "capabilities were not dropped:\n" << out;
  EXPECT_EQ(out.find("root-writable"), std::string::npos) << out;
  EXPECT_EQ(out.find("sees"), std::string::npos) << out;
  EXPECT_NE(out.find("takt-step\n/out\ndone"), std::string::npos) << out;
  EXPECT_EQ(ReadFile(out_ / "copy.txt"), "weld,force\n1,2.5\n");
  EXPECT_EQ(ReadFile(in_ / "data.txt"), "weld,force\n1,2.5\n");
}

TEST_F(SandboxTest, EnvironmentIsExactlyTheSpecs) {
  ASSERT_EQ(::setenv("TAKT_SANDBOX_TEST_HOST_SECRET", "must-not-leak", 1), 0);
  Spec spec;
  spec.argv = {"/usr/bin/env"};
  spec.env = {{"FOO", "bar baz"}, {"EMPTY", ""}, {"UNICODE", "Grüße"}};
  spec.writable = {{out_.string(), "/work-dir"}};
  const RunResult r = MustRun(spec);
  ::unsetenv("TAKT_SANDBOX_TEST_HOST_SECRET");
  ASSERT_TRUE(r.ok()) << r.reason << "\n" << Text("stderr");
  std::vector<std::string> env = Lines("stdout");
  std::sort(env.begin(), env.end());
  ASSERT_EQ(env.size(), 5u) << Text("stdout");
  EXPECT_EQ(env[0], "EMPTY=");
  EXPECT_EQ(env[1], "FOO=bar baz");
  EXPECT_TRUE(env[2].starts_with("PATH=") && env[2].find("/usr/bin") != std::string::npos) << env[2];
  EXPECT_EQ(env[3], "PWD=/work-dir");  // bwrap sets it; the rest is ours
  EXPECT_EQ(env[4], "UNICODE=Grüße");

  spec.env = {{"PATH", "/usr/bin"}, {"OMP_NUM_THREADS", "3"}};
  spec.limits.cpus = 1;
  spec.argv = {"sh", "-c",
               "echo $PATH $OMP_NUM_THREADS $OPENBLAS_NUM_THREADS $MKL_NUM_THREADS; "
               "grep Cpus_allowed_list /proc/self/status"};
  const RunResult pinned = MustRun(spec);
  ASSERT_TRUE(pinned.ok()) << pinned.reason << "\n" << Text("stderr");
  const std::vector<std::string> out = Lines("stdout");
  ASSERT_EQ(out.size(), 2u) << Text("stdout");
  EXPECT_EQ(out[0], "/usr/bin 3 1 1") << "the given OMP_NUM_THREADS wins, the others default to cpus";
  if (std::thread::hardware_concurrency() > 1) {
    const std::string cpus = out[1].substr(out[1].find(':') + 1);
    EXPECT_EQ(cpus.find_first_of(",-"), std::string::npos) << "not pinned to one CPU: " << out[1];
  }
}

// A TCP listener on the host's 127.0.0.1; connect() succeeds through the backlog without accept.
class LoopbackListener {
 public:
  LoopbackListener() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        ::listen(fd_.get(), 8) == 0 &&
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  int port() const { return port_; }

 private:
  UniqueFd fd_;
  int port_ = 0;
};

TEST_F(SandboxTest, NoNetworkUnlessAllowed) {
  LoopbackListener listener;
  ASSERT_GT(listener.port(), 0);
  const std::string script =
      "import socket, sys\n"
      "ifaces = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]\n"
      "print('interfaces', ' '.join(sorted(ifaces)))\n"
      "try:\n"
      "    socket.create_connection(('127.0.0.1', " +
      std::to_string(listener.port()) +
      "), timeout=5).close()\n"
      "    print('connected')\n"
      "except OSError as e:\n"
      "    print('failed:', e)\n"
      "    sys.exit(3)\n";
  WriteFile(in_ / "connect.py", script);
  Spec spec;
  spec.argv = {"/usr/bin/python3", "/in/connect.py"};
  spec.read_only = {{in_.string(), "/in"}};
  spec.limits.wall_seconds = 60;

  const RunResult isolated = MustRun(spec);
  EXPECT_EQ(isolated.outcome, Outcome::kExited) << isolated.reason << "\n" << Text("stderr");
  EXPECT_EQ(isolated.exit_code, 3) << Text("stdout");
  EXPECT_NE(Text("stdout").find("interfaces lo\nfailed:"), std::string::npos) << Text("stdout");

  spec.network = true;
  const RunResult shared = MustRun(spec);
  EXPECT_TRUE(shared.ok()) << shared.reason << "\n" << Text("stdout") << Text("stderr");
  EXPECT_NE(Text("stdout").find("connected"), std::string::npos) << Text("stdout");
}

TEST_F(SandboxTest, ReportsExitCodesAndSignals) {
  RunResult r = MustRun(Shell("echo to-stdout; echo to-stderr >&2; exit 3"));
  EXPECT_EQ(r.outcome, Outcome::kExited);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.reason, "exited with code 3");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(Lines("stdout"), std::vector<std::string>{"to-stdout"});
  EXPECT_EQ(Lines("stderr"), std::vector<std::string>{"to-stderr"});
  EXPECT_EQ(r.log_lines, 2);

  r = MustRun(Shell("kill -SEGV $$"));
  EXPECT_EQ(r.outcome, Outcome::kSignaled);
  EXPECT_EQ(r.signal, 11);
  EXPECT_EQ(r.reason, "was killed by signal 11 (SIGSEGV)");
  EXPECT_EQ(OutcomeName(r.outcome), "signaled");

  r = MustRun(Shell("true"));
  EXPECT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.reason, "exited with code 0");
}

TEST_F(SandboxTest, ProgramsThatCannotStart) {
  Spec spec = Shell("");
  spec.argv = {"/usr/bin/nope"};
  RunResult r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kStartFailed);
  EXPECT_EQ(r.reason, "could not start: /usr/bin/nope does not exist");
  EXPECT_EQ(OutcomeName(r.outcome), "start_failed");

  spec.argv = {"takt-no-such-tool"};
  r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kStartFailed);
  EXPECT_TRUE(r.reason.starts_with("could not start: takt-no-such-tool was not found on PATH (")) << r.reason;

  WriteFile(in_ / "notes.txt", "not a program\n");
  spec.argv = {"/in/notes.txt"};
  r = MustRun(spec);
  EXPECT_EQ(r.reason, "could not start: /in/notes.txt is not executable");

  spec.argv = {"/in"};
  r = MustRun(spec);
  EXPECT_EQ(r.reason, "could not start: /in is a directory");

  // Found, but its interpreter is not there: only bwrap's execvp can tell.
  WriteFile(in_ / "bad.sh", "#!/opt/nowhere/sh\necho hi\n", fs::perms::owner_all);
  spec.argv = {"/in/bad.sh"};
  r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kStartFailed) << r.reason;
  EXPECT_EQ(r.reason, "could not start: /in/bad.sh: No such file or directory");

  // A working directory that is not there.
  spec.argv = {"/bin/true"};
  spec.cwd = "/nowhere";
  r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kStartFailed) << r.reason;
  EXPECT_EQ(r.reason, "could not start: Can't chdir to /nowhere: No such file or directory");
  spec.cwd.clear();

  // Relative to the working directory, which defaults to the first writable mount.
  WriteFile(out_ / "step.sh", "#!/bin/sh\necho relative-ok\n", fs::perms::owner_all);
  spec.argv = {"./step.sh"};
  r = MustRun(spec);
  EXPECT_TRUE(r.ok()) << r.reason << Text("stderr");
  EXPECT_EQ(Lines("stdout"), std::vector<std::string>{"relative-ok"});
}

TEST_F(SandboxTest, MisuseIsAnInvalidArgument) {
  auto expect_invalid = [&](const Spec& spec, std::string_view mentions) {
    auto r = sandbox::Run(spec, [](std::string_view, std::string_view) {});
    ASSERT_FALSE(r) << "expected an error mentioning " << mentions;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().ToString();
    EXPECT_NE(r.error().message().find(mentions), std::string::npos) << r.error().ToString();
  };
  Spec spec = Shell("true");
  spec.argv.clear();
  expect_invalid(spec, "argv is empty");

  spec = Shell("true");
  spec.read_only = {{"relative/dir", "/in"}};
  expect_invalid(spec, "host path must be absolute");

  spec = Shell("true");
  spec.writable = {{out_.string(), "out"}};
  expect_invalid(spec, "inside path must be absolute");

  spec = Shell("true");
  spec.read_only = {{(dir_.path() / "missing").string(), "/in"}};
  expect_invalid(spec, (dir_.path() / "missing").string() + " does not exist");

  spec = Shell("true");
  spec.writable = {{out_.string(), "/usr/local/out"}};
  expect_invalid(spec, "would cover the sandbox's own /usr");

  spec = Shell("true");
  spec.writable.push_back({out_.string(), "/in"});
  expect_invalid(spec, "two mounts at /in");

  spec = Shell("true");
  spec.env = {{"A=B", "c"}};
  expect_invalid(spec, "A=B");

  spec = Shell("true");
  spec.limits.wall_seconds = -1;
  expect_invalid(spec, "wall_seconds");
}

TEST_F(SandboxTest, WallLimitKillsTheWholeTree) {
  const std::string token = UniqueToken();
  Spec spec = Shell("sleep 600." + token + " & sleep 600." + token);
  spec.limits.wall_seconds = 1;
  spec.limits.grace_seconds = 1;
  RunResult r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kTimedOut) << r.reason;
  EXPECT_EQ(r.reason, "was stopped after its time limit of 1 s");
  EXPECT_EQ(OutcomeName(r.outcome), "timeout");
  EXPECT_LT(r.wall_seconds, 30);
  EXPECT_EQ(ProcessesWith("sleep 600." + token), 0) << "a sleep survived the sandbox";

  // Processes that ignore SIGTERM die at the end of the grace period.
  spec = Shell("trap '' TERM; sleep 600." + token + " & sleep 600." + token);
  spec.limits.wall_seconds = 0.5;
  spec.limits.grace_seconds = 0.5;
  r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kTimedOut) << r.reason;
  EXPECT_EQ(r.reason, "was stopped after its time limit of 0.5 s");
  EXPECT_EQ(ProcessesWith("sleep 600." + token), 0) << "a sleep survived the sandbox";

  // Closing stdout and stderr does not end the wait: the wall limit still applies.
  spec = Shell("exec >&- 2>&-; sleep 600." + token);
  spec.limits.wall_seconds = 1;
  r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kTimedOut) << r.reason;
}

TEST_F(SandboxTest, BackgroundProcessesEndWithTheMainOne) {
  // The grandchild holds stdout open; Run must return when the main process exits, not at the wall limit.
  const std::string token = UniqueToken();
  const RunResult r = MustRun(Shell("(sleep 600." + token + " &); echo main-done"));
  EXPECT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(Lines("stdout"), std::vector<std::string>{"main-done"});
  EXPECT_EQ(ProcessesWith("sleep 600." + token), 0);
}

TEST_F(SandboxTest, CancelFromAnotherThread) {
  std::atomic<bool> cancel{false};
  std::atomic<bool> started{false};
  std::thread canceller([&] {
    for (int i = 0; i < 600 && !started; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    cancel = true;
  });
  Spec spec = Shell("echo ready; sleep 600");
  lines_.clear();
  auto result = sandbox::Run(
      spec,
      [&](std::string_view, std::string_view line) {
        if (line == "ready") started = true;
      },
      &cancel);
  canceller.join();
  ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_TRUE(started.load());
  EXPECT_EQ(result->outcome, Outcome::kCancelled) << result->reason;
  EXPECT_EQ(result->reason, "was cancelled");
  EXPECT_EQ(OutcomeName(result->outcome), "cancelled");
}

TEST_F(SandboxTest, CpuLimitStopsABusyLoop) {
  Spec spec = Shell("while :; do :; done");
  spec.limits.cpu_seconds = 1;
  const RunResult r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kCpuLimit) << r.reason;
  EXPECT_EQ(r.reason, "used more than its CPU time limit of 1 s");
  EXPECT_EQ(OutcomeName(r.outcome), "cpu");
  EXPECT_GE(r.cpu_seconds, 0.9);
}

TEST_F(SandboxTest, MemoryLimit) {
  Spec spec = Shell("");
  spec.argv = {"/usr/bin/python3", "-c", "b = bytearray(2 * 1024**3); print('allocated', len(b))"};
  spec.limits.memory_bytes = int64_t{256} << 20;
  RunResult r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kMemoryLimit) << r.reason << "\n" << Text("stderr");
  EXPECT_EQ(r.reason, "exceeded its memory limit of 256 MiB");
  EXPECT_EQ(OutcomeName(r.outcome), "memory");
  EXPECT_NE(Text("stderr").find("MemoryError"), std::string::npos) << Text("stderr");

  // The same limit leaves room for a modest allocation.
  spec.argv = {"/usr/bin/python3", "-c", "b = bytearray(32 * 1024**2); print('allocated', len(b))"};
  r = MustRun(spec);
  EXPECT_TRUE(r.ok()) << r.reason << "\n" << Text("stderr");
  EXPECT_EQ(Lines("stdout"), std::vector<std::string>{"allocated 33554432"});
  EXPECT_GE(r.max_rss_bytes, int64_t{32} << 20);
}

TEST_F(SandboxTest, DiskQuotaForOneBigFile) {
  Spec spec = Shell("dd if=/dev/zero of=/out/big bs=1M count=64");
  spec.limits.disk_bytes = int64_t{8} << 20;
  const RunResult r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kDiskQuota) << r.reason << "\n" << Text("stderr");
  EXPECT_EQ(r.reason, "wrote more than its disk quota of 8 MiB");
  EXPECT_EQ(OutcomeName(r.outcome), "disk");
  EXPECT_LE(fs::file_size(out_ / "big"), uintmax_t{8} << 20);
}

TEST_F(SandboxTest, DiskQuotaForManyFiles) {
  // Each file is under RLIMIT_FSIZE; only the poll of the whole tree sees the total.
  Spec spec = Shell(
      "i=0; while [ $i -lt 40 ]; do head -c 1048576 /dev/zero > /out/part-$i; i=$((i+1)); done; "
      "echo wrote-all; sleep 600");
  spec.limits.disk_bytes = int64_t{8} << 20;
  const RunResult r = MustRun(spec);
  EXPECT_EQ(r.outcome, Outcome::kDiskQuota) << r.reason;

  // Under the quota nothing happens.
  spec = Shell("head -c 100000 /dev/zero > /out/small");
  spec.limits.disk_bytes = int64_t{8} << 20;
  fs::remove_all(out_);
  fs::create_directories(out_);
  const RunResult small = MustRun(spec);
  EXPECT_TRUE(small.ok()) << small.reason;
}

TEST_F(SandboxTest, BinaryGarbageBecomesPlaceholders) {
  const RunResult r = MustRun(Shell("head -c 100000 /dev/urandom"));
  EXPECT_TRUE(r.ok()) << r.reason;
  EXPECT_GT(r.binary_lines, 0);
  EXPECT_EQ(r.log_lines, static_cast<int64_t>(lines_.size()));
  int placeholders = 0;
  for (const auto& [stream, line] : lines_) {
    EXPECT_TRUE(IsCleanUtf8(line)) << "not clean UTF-8: " << line;
    EXPECT_LE(line.size(), 4096u);
    if (line.starts_with("<binary output: ")) ++placeholders;
  }
  EXPECT_EQ(placeholders, r.binary_lines);
}

TEST_F(SandboxTest, LongLinesAreCutAndTheLogIsCapped) {
  RunResult r = MustRun(Shell("head -c 1000000 /dev/zero | tr '\\0' x; echo; echo after"));
  EXPECT_TRUE(r.ok()) << r.reason;
  std::vector<std::string> out = Lines("stdout");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_LE(out[0].size(), 4096u);
  EXPECT_TRUE(out[0].starts_with("xxxxxxxx"));
  EXPECT_TRUE(out[0].ends_with("\xE2\x80\xA6")) << "a cut line ends with an ellipsis";
  EXPECT_EQ(out[1], "after");

  Spec spec =
      Shell("i=0; while [ $i -lt 1000 ]; do echo \"line $i of a chatty training loop\"; i=$((i+1)); done");
  spec.limits.log_bytes = 10000;
  r = MustRun(spec);
  EXPECT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.log_lines, static_cast<int64_t>(lines_.size()));
  EXPECT_GT(r.dropped_log_lines, 0);
  EXPECT_EQ(r.log_lines + r.dropped_log_lines, 1000);
  size_t bytes = 0;
  for (const auto& [stream, line] : lines_) bytes += line.size() + 1;
  EXPECT_LE(bytes, 10000u);
  EXPECT_EQ(lines_.front().second, "line 0 of a chatty training loop");
}

TEST_F(SandboxTest, TrainsAnXgboostModelInside) {
  const fs::path code = dir_.path() / "code";
  const fs::path model = dir_.path() / "model";
  fs::create_directories(code);
  fs::create_directories(model);
  WriteFile(in_ / "train.csv", [] {
    std::string csv = "force,current,fail\n";
    for (int i = 0; i < 400; ++i) {
      const double force = (i * 37 % 100) / 10.0, current = (i * 53 % 100) / 10.0;
      csv += std::to_string(force) + "," + std::to_string(current) + "," +
             (force + current > 10 ? "1" : "0") + "\n";
    }
    return csv;
  }());
  WriteFile(code / "train.py",
            "import os, sys\n"
            "import numpy as np\n"
            "import xgboost as xgb\n"
            "from sklearn.metrics import roc_auc_score\n"
            "data = np.loadtxt('/in/train.csv', delimiter=',', skiprows=1)\n"
            "X, y = data[:, :2], data[:, 2]\n"
            "eta = float(sys.argv[sys.argv.index('--eta') + 1])\n"
            "booster = xgb.train({'objective': 'binary:logistic', 'eta': eta, 'max_depth': 3},\n"
            "                    xgb.DMatrix(X, label=y), num_boost_round=20)\n"
            "auc = roc_auc_score(y, booster.predict(xgb.DMatrix(X)))\n"
            "booster.save_model('/model/model.json')\n"
            "print(f'auc {auc:.3f} threads {os.environ[\"OMP_NUM_THREADS\"]} xgboost {xgb.__version__}')\n");
  Spec spec;
  spec.argv = {"/usr/bin/python3", "/code/train.py", "--eta", "0.3"};
  spec.read_only = {{in_.string(), "/in"}, {code.string(), "/code"}};
  spec.writable = {{model.string(), "/model"}};
  spec.limits.wall_seconds = 300;
  spec.limits.memory_bytes = int64_t{2} << 30;
  spec.limits.cpus = 1;
  const RunResult r = MustRun(spec);
  ASSERT_TRUE(r.ok()) << r.reason << "\n" << Text("stderr");
  const std::vector<std::string> out = Lines("stdout");
  ASSERT_FALSE(out.empty()) << Text("stderr");
  EXPECT_TRUE(out.back().starts_with("auc 0.9") || out.back().starts_with("auc 1.0")) << out.back();
  EXPECT_NE(out.back().find("threads 1"), std::string::npos) << out.back();
  const std::string saved = ReadFile(model / "model.json");
  EXPECT_NE(saved.find("\"learner\""), std::string::npos) << saved.substr(0, 200);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Not a test: prints the cost of the sandbox. Run with --gtest_also_run_disabled_tests.
TEST_F(SandboxTest, DISABLED_OverheadOfTrue) {
  constexpr int kRuns = 21;
  std::vector<double> plain, sandboxed;
  for (int i = 0; i < kRuns; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/true", "true", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status;
    ::waitpid(pid, &status, 0);
    plain.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  Spec spec;
  spec.argv = {"/bin/true"};
  for (int i = 0; i < kRuns; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const RunResult r = MustRun(spec);
    sandboxed.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_TRUE(r.ok()) << r.reason;
  }
  std::printf("median of %d runs: fork/exec /bin/true %.2f ms, sandboxed %.2f ms\n", kRuns, Median(plain),
              Median(sandboxed));
}

}  // namespace
}  // namespace takt::sandbox
