// File: tune/median_stopper.h
//
// The median stopping rule (Golovin et al., "Google Vizier", KDD 2017) for a
// `tune` step: each trial reports its metric once per boosting round, and a
// trial is stopped at round r if its best value so far is strictly worse than
// the median of the other trials' running averages at r (the mean of each one's
// values at rounds <= r). The rule applies only once r >= grace_rounds and at
// least min_trials other trials have reached r (reported r or a later round);
// trials that finished or were stopped keep their curves as references for the
// rounds they reached.
//
//   MedianStopper stopper(Direction::kMaximize, /*grace_rounds=*/10, /*min_trials=*/3);
//   if (stopper.Report(trial, round, auc)) { /* stop training this trial */ }
//   ...
//   stopper.Finish(trial);
//
// Rounds are the caller's numbers (0- or 1-based) and must increase per trial:
// a report for a round not after that trial's last one is ignored. Once a
// trial has been told to stop, its later reports are ignored and return true;
// reports after Finish are ignored and return false. A non-finite value (a
// diverged loss) counts as the worst possible value. A grace_rounds below 0
// counts as 0, a min_trials below 1 as 1.
//
// Thread safety: all methods may be called from several threads at once.
#pragma once

#include <map>
#include <mutex>
#include <vector>

#include "tune/direction.h"

namespace takt::tune {

class MedianStopper {
 public:
  explicit MedianStopper(Direction direction, int grace_rounds = 10, int min_trials = 3);

  // Records `value` for `trial` at `round`; true = stop this trial now.
  bool Report(int trial, int round, double value);

  // `trial` ended; its curve stays as a reference for the others.
  void Finish(int trial);

 private:
  struct Curve {
    std::vector<int> rounds;   // increasing
    std::vector<double> sums;  // sums[i] = values at rounds[0..i], added up
    double best = 0;
    bool stopped = false;
    bool finished = false;
  };

  bool Better(double a, double b) const;

  const Direction direction_;
  const int grace_rounds_;
  const int min_trials_;

  std::mutex mu_;
  std::map<int, Curve> curves_;  // guarded by mu_
};

}  // namespace takt::tune
