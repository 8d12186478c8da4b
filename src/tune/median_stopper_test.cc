#include "tune/median_stopper.h"

#include <gtest/gtest.h>

#include <barrier>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <thread>

namespace takt::tune {
namespace {

// A learning curve: a loss falling from level + 1 towards level.
double Loss(double level, int round) { return level + 1.0 / (round + 1); }

// Reports rounds 0..rounds-1 of every curve round-robin, as trials training
// side by side would; a stopped trial reports no further. Returns the round
// at which each trial was stopped, -1 if never.
std::map<int, int> RunRoundRobin(MedianStopper& stopper,
                                 const std::map<int, std::function<double(int)>>& curves, int rounds) {
  std::map<int, int> stopped_at;
  for (const auto& [id, curve] : curves) stopped_at[id] = -1;
  for (int r = 0; r < rounds; ++r) {
    for (const auto& [id, curve] : curves) {
      if (stopped_at[id] >= 0) continue;
      if (stopper.Report(id, r, curve(r))) stopped_at[id] = r;
    }
  }
  return stopped_at;
}

TEST(MedianStopperTest, StopsTheClearlyBadTrialsAfterTheGracePeriod) {
  MedianStopper stopper(Direction::kMinimize, /*grace_rounds=*/10, /*min_trials=*/3);
  const std::map<int, std::function<double(int)>> curves = {
      {1, [](int r) { return Loss(0.10, r); }},  // the best
      {2, [](int r) { return Loss(0.30, r); }}, {3, [](int r) { return Loss(0.35, r); }},
      {4, [](int r) { return Loss(2.00, r); }},  // clearly bad
      {5, [](int r) { return Loss(3.00, r); }},  // clearly bad
  };
  const std::map<int, int> stopped_at = RunRoundRobin(stopper, curves, 50);
  EXPECT_EQ(stopped_at.at(1), -1);
  EXPECT_EQ(stopped_at.at(2), -1);
  EXPECT_EQ(stopped_at.at(4), 10);  // the first round after the grace period
  EXPECT_EQ(stopped_at.at(5), 10);
}

TEST(MedianStopperTest, MaximizingStopsTheLowCurves) {
  MedianStopper stopper(Direction::kMaximize, /*grace_rounds=*/5, /*min_trials=*/3);
  auto auc = [](double level) { return [level](int r) { return level - 0.2 / (r + 1); }; };
  const std::map<int, std::function<double(int)>> curves = {
      {10, auc(0.95)}, {11, auc(0.90)}, {12, auc(0.89)}, {13, auc(0.60)}, {14, auc(0.55)}};
  const std::map<int, int> stopped_at = RunRoundRobin(stopper, curves, 30);
  EXPECT_EQ(stopped_at.at(10), -1);
  EXPECT_EQ(stopped_at.at(11), -1);
  EXPECT_EQ(stopped_at.at(13), 5);
  EXPECT_EQ(stopped_at.at(14), 5);
}

TEST(MedianStopperTest, NothingStopsBeforeMinTrialsOthersReachedTheRound) {
  MedianStopper stopper(Direction::kMinimize, /*grace_rounds=*/0, /*min_trials=*/3);
  for (int r = 0; r < 10; ++r) {
    EXPECT_FALSE(stopper.Report(1, r, Loss(0, r)));
    EXPECT_FALSE(stopper.Report(2, r, Loss(0, r)));
  }
  // A clearly bad trial with only two others to compare with goes on.
  for (int r = 0; r < 10; ++r) EXPECT_FALSE(stopper.Report(99, r, Loss(5, r))) << r;
  // A third good trial: it sees three others and beats their median.
  for (int r = 0; r < 10; ++r) EXPECT_FALSE(stopper.Report(3, r, Loss(0, r))) << r;
  // The bad trial runs ahead to round 10, which no other trial has reached.
  EXPECT_FALSE(stopper.Report(99, 10, Loss(5, 10)));
  // Two others reach 10 and 11, the third only 10: at 11 it is still two.
  for (int id : {1, 2}) {
    EXPECT_FALSE(stopper.Report(id, 10, Loss(0, 10)));
    EXPECT_FALSE(stopper.Report(id, 11, Loss(0, 11)));
  }
  EXPECT_FALSE(stopper.Report(3, 10, Loss(0, 10)));
  EXPECT_FALSE(stopper.Report(99, 11, Loss(5, 11)));
  // All three reach 12 before it does: now it is stopped.
  EXPECT_FALSE(stopper.Report(3, 11, Loss(0, 11)));
  for (int id : {1, 2, 3}) EXPECT_FALSE(stopper.Report(id, 12, Loss(0, 12)));
  EXPECT_TRUE(stopper.Report(99, 12, Loss(5, 12)));
  // Once stopped, a trial's later reports keep saying so.
  EXPECT_TRUE(stopper.Report(99, 13, Loss(0, 13)));
}

TEST(MedianStopperTest, NothingStopsDuringTheGracePeriod) {
  MedianStopper stopper(Direction::kMinimize, /*grace_rounds=*/20, /*min_trials=*/2);
  for (int r = 0; r < 40; ++r) {
    EXPECT_FALSE(stopper.Report(1, r, Loss(0, r)));
    EXPECT_FALSE(stopper.Report(2, r, Loss(0, r)));
    EXPECT_FALSE(stopper.Report(3, r, Loss(0, r)));
  }
  for (int r = 0; r < 20; ++r) EXPECT_FALSE(stopper.Report(4, r, Loss(100, r))) << r;
  EXPECT_TRUE(stopper.Report(4, 20, Loss(100, 20)));
}

TEST(MedianStopperTest, ComparesTheBestSoFarWithRunningAverages) {
  MedianStopper stopper(Direction::kMinimize, /*grace_rounds=*/5, /*min_trials=*/3);
  // Three references whose losses fall from 2 to 1 at round 5 and stay:
  // their running averages at round 10 are (5 * 2 + 6 * 1) / 11 ≈ 1.45.
  auto step = [](int r) { return r < 5 ? 2.0 : 1.0; };
  for (int r = 0; r <= 10; ++r) {
    for (int id : {1, 2, 3}) ASSERT_FALSE(stopper.Report(id, r, step(r)));
  }
  // A trial that touched 1.2 at round 3 and then got worse is not stopped:
  // its best so far beats the median running average.
  for (int r = 0; r <= 10; ++r) {
    EXPECT_FALSE(stopper.Report(4, r, r == 3 ? 1.2 : 1.6)) << r;
  }
  // One whose values sit at 1.5 throughout is, from round 5 on.
  for (int r = 0; r < 5; ++r) EXPECT_FALSE(stopper.Report(5, r, 1.5)) << r;
  // At round 5 the median average is (5 * 2 + 1) / 6 ≈ 1.83: 1.5 is better.
  for (int r = 5; r <= 7; ++r) EXPECT_FALSE(stopper.Report(5, r, 1.5)) << r;
  // Round 8: (10 + 4) / 9 ≈ 1.56; round 9: (10 + 5) / 10 = 1.5, not strictly worse;
  // round 10: (10 + 6) / 11 ≈ 1.45 < 1.5.
  EXPECT_FALSE(stopper.Report(5, 8, 1.5));
  EXPECT_FALSE(stopper.Report(5, 9, 1.5));
  EXPECT_TRUE(stopper.Report(5, 10, 1.5));
}

TEST(MedianStopperTest, FinishedCurvesStayAsReferences) {
  MedianStopper stopper(Direction::kMinimize, /*grace_rounds=*/3, /*min_trials=*/3);
  for (int id : {1, 2, 3}) {
    for (int r = 0; r < 20; ++r) ASSERT_FALSE(stopper.Report(id, r, Loss(0, r)));
    stopper.Finish(id);
  }
  // Reports after Finish are ignored.
  EXPECT_FALSE(stopper.Report(1, 20, 1000.0));
  // A later trial is judged against the finished ones, up to the rounds they reached.
  for (int r = 0; r < 3; ++r) EXPECT_FALSE(stopper.Report(7, r, Loss(1, r)));
  EXPECT_TRUE(stopper.Report(7, 3, Loss(1, 3)));
  MedianStopper late(Direction::kMinimize, 3, 3);
  for (int id : {1, 2, 3}) {
    for (int r = 0; r < 5; ++r) ASSERT_FALSE(late.Report(id, r, Loss(0, r)));
    late.Finish(id);
  }
  for (int r = 0; r < 10; ++r) EXPECT_FALSE(late.Report(7, r == 0 ? 0 : r + 5, Loss(1, r))) << r;
}

TEST(MedianStopperTest, OutOfOrderRoundsAreIgnoredAndNonFiniteValuesAreWorst) {
  MedianStopper stopper(Direction::kMinimize, /*grace_rounds=*/2, /*min_trials=*/2);
  for (int r = 0; r < 10; ++r) {
    for (int id : {1, 2}) ASSERT_FALSE(stopper.Report(id, r, Loss(0, r)));
  }
  EXPECT_FALSE(stopper.Report(3, 0, 0.5));
  EXPECT_FALSE(stopper.Report(3, 1, 0.5));
  EXPECT_FALSE(stopper.Report(3, 1, 99.0));  // a repeated round: ignored
  EXPECT_FALSE(stopper.Report(3, 0, 99.0));  // an earlier round: ignored
  EXPECT_FALSE(stopper.Report(3, 2, 0.5));   // best 0.5 beats the median average
  // A diverged trial: NaN is the worst possible loss.
  EXPECT_FALSE(stopper.Report(4, 0, std::numeric_limits<double>::quiet_NaN()));
  EXPECT_FALSE(stopper.Report(4, 1, std::numeric_limits<double>::infinity()));
  EXPECT_TRUE(stopper.Report(4, 2, std::numeric_limits<double>::quiet_NaN()));
  // Maximizing, NaN is the worst possible score.
  MedianStopper up(Direction::kMaximize, 0, 1);
  EXPECT_FALSE(up.Report(1, 0, 0.7));
  EXPECT_TRUE(up.Report(2, 0, std::numeric_limits<double>::quiet_NaN()));
}

TEST(MedianStopperTest, ClampsGraceAndMinTrials) {
  MedianStopper stopper(Direction::kMinimize, /*grace_rounds=*/-5, /*min_trials=*/0);
  EXPECT_FALSE(stopper.Report(1, 0, 1.0));  // nobody else: min_trials counts as 1
  EXPECT_TRUE(stopper.Report(2, 0, 2.0));   // round 0 is past a grace of 0
}

TEST(MedianStopperTest, FourThreadsReportingAtOnce) {
  MedianStopper stopper(Direction::kMinimize, /*grace_rounds=*/10, /*min_trials=*/3);
  constexpr int kThreads = 4;
  constexpr int kRounds = 60;
  std::vector<std::map<int, int>> per_thread(kThreads);  // trial -> round stopped, one map per thread

  // Phase 1: each thread trains four good trials, round by round, the threads
  // in step with a barrier so their reports interleave. A falling curve's
  // current value is below every running average of a like curve: none stops.
  std::barrier sync(kThreads);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int r = 0; r < kRounds; ++r) {
          for (int k = 0; k < 4; ++k) {
            const int id = t * 10 + k;
            if (stopper.Report(id, r, Loss(0.01 * k, r))) per_thread[t].emplace(id, r);
          }
          sync.arrive_and_wait();
        }
        for (int k = 0; k < 4; ++k) stopper.Finish(t * 10 + k);
      });
    }
  }
  for (const auto& m : per_thread)
    EXPECT_TRUE(m.empty()) << "a good trial was stopped at round " << m.begin()->second;

  // Phase 2: every thread trains two bad trials and one more good one at once,
  // without a barrier. The sixteen finished curves reach every round, so each
  // bad trial stops at the first round after the grace period, whatever the
  // interleaving, and the good ones never do.
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::map<int, int>& mine = per_thread[t];
        for (int r = 0; r < kRounds; ++r) {
          for (int id : {100 + t, 200 + t, 300 + t}) {
            if (mine.contains(id)) continue;
            const double level = id < 300 ? 5.0 : 0.0;
            if (stopper.Report(id, r, Loss(level, r))) mine.emplace(id, r);
          }
        }
        for (int id : {100 + t, 200 + t, 300 + t}) stopper.Finish(id);
      });
    }
  }
  std::map<int, int> stopped_at;
  for (const auto& m : per_thread) stopped_at.insert(m.begin(), m.end());
  EXPECT_EQ(stopped_at.size(), 2u * kThreads);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(stopped_at[100 + t], 10);
    EXPECT_EQ(stopped_at[200 + t], 10);
    EXPECT_FALSE(stopped_at.contains(300 + t));
  }
}

}  // namespace
}  // namespace takt::tune
