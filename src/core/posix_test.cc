#include "core/posix.h"

#include <pthread.h>
#include <sched.h>

#include <thread>

#include <gtest/gtest.h>

namespace takt {
namespace {

TEST(UsableCpuCountTest, FollowsTheAffinityMaskNotTheMachine) {
  const int all = UsableCpuCount();
  ASSERT_GE(all, 1);
  EXPECT_LE(all, static_cast<int>(std::thread::hardware_concurrency()));

  // A thread narrowed to one CPU (as `taskset -c 0` would) sees one.
  int narrowed = 0;
  int set_result = -1;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    ASSERT_EQ(::sched_getaffinity(0, sizeof(one), &one), 0);
    int first = 0;
    while (!CPU_ISSET(first, &one)) ++first;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    set_result = ::pthread_setaffinity_np(::pthread_self(), sizeof(one), &one);
    narrowed = UsableCpuCount();
  });
  t.join();
  ASSERT_EQ(set_result, 0);
  EXPECT_EQ(narrowed, 1);
  // The calling thread's own mask is unchanged.
  EXPECT_EQ(UsableCpuCount(), all);
}

}  // namespace
}  // namespace takt
