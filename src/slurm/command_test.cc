#include "slurm/command.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "core/temp_dir.h"

namespace takt::slurm {
namespace {

TEST(RunCommandTest, CapturesOutputAndExitCode) {
  auto out = RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 7"}, {}, 10);
  ASSERT_TRUE(out) << out.error().ToString();
  EXPECT_EQ(out->exit_code, 7);
  EXPECT_EQ(out->out, "out\n");
  EXPECT_EQ(out->err, "err\n");
}

TEST(RunCommandTest, ArgumentsAreNeverInterpreted) {
  TempDir tmp;
  const std::string marker = (tmp.path() / "touched").string();
  auto out = RunCommand({"/bin/echo", "$(touch " + marker + ")", "; touch " + marker, "*"}, {}, 10);
  ASSERT_TRUE(out) << out.error().ToString();
  EXPECT_EQ(out->out, "$(touch " + marker + ") ; touch " + marker + " *\n");
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(RunCommandTest, TheEnvironmentIsExactlyTheOneGiven) {
  ::setenv("TAKT_COMMAND_TEST_PARENT", "leaks", 1);
  auto out = RunCommand({"/usr/bin/env"}, {"A=1", "B=two words"}, 10);
  ::unsetenv("TAKT_COMMAND_TEST_PARENT");
  ASSERT_TRUE(out) << out.error().ToString();
  EXPECT_EQ(out->out, "A=1\nB=two words\n");
}

TEST(RunCommandTest, Fd3CarriesData) {
  const std::string data = std::string("A=1\0B=x\ny\0", 10);
  auto out = RunCommand({"/bin/cat", "/dev/fd/3"}, {}, 10, &data);
  ASSERT_TRUE(out) << out.error().ToString();
  EXPECT_EQ(out->exit_code, 0) << out->err;
  EXPECT_EQ(out->out, data);

  // Without data, fd 3 is closed.
  auto none = RunCommand({"/bin/sh", "-c", "cat <&3"}, {}, 10);
  ASSERT_TRUE(none) << none.error().ToString();
  EXPECT_NE(none->exit_code, 0);
}

TEST(RunCommandTest, ATimeoutKillsTheWholeProcessGroup) {
  TempDir tmp;
  const std::string pid_file = (tmp.path() / "pid").string();
  // The child leaves a grandchild that also holds stdout open.
  const auto started = std::chrono::steady_clock::now();
  auto out = RunCommand({"/bin/sh", "-c", "sleep 300 & echo $! > " + pid_file + "; wait"}, {}, 0.5);
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code(), Code::kUnavailable);
  EXPECT_NE(out.error().message().find("sh did not finish within 0.5 s"), std::string::npos)
      << out.error().message();
  EXPECT_LT(took, std::chrono::seconds(30));  // liveness bound, not a timing assertion
  int grandchild = 0;
  std::ifstream(pid_file) >> grandchild;
  ASSERT_GT(grandchild, 0);
  // Killed: gone, or a zombie waiting for init to reap it.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
    std::string pid, comm, state;
    gone = !(stat >> pid >> comm >> state) || state == "Z";
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(gone) << "sleep " << grandchild << " survived the timeout";
  if (!gone) ::kill(grandchild, SIGKILL);
}

TEST(RunCommandTest, AMissingProgramIsAFailedPrecondition) {
  auto out = RunCommand({"/nonexistent/sbatch"}, {}, 10);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(out.error().message().find("/nonexistent/sbatch"), std::string::npos);

  auto relative = RunCommand({"sbatch"}, {}, 10);
  ASSERT_FALSE(relative);
  EXPECT_EQ(relative.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace takt::slurm
