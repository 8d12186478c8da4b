#include "tune/median_stopper.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace takt::tune {

MedianStopper::MedianStopper(Direction direction, int grace_rounds, int min_trials)
    : direction_(direction), grace_rounds_(std::max(grace_rounds, 0)), min_trials_(std::max(min_trials, 1)) {}

bool MedianStopper::Better(double a, double b) const {
  return direction_ == Direction::kMinimize ? a < b : a > b;
}

bool MedianStopper::Report(int trial, int round, double value) {
  if (!std::isfinite(value)) {
    value = direction_ == Direction::kMinimize ? std::numeric_limits<double>::infinity()
                                               : -std::numeric_limits<double>::infinity();
  }
  std::lock_guard lock(mu_);
  Curve& c = curves_[trial];
  if (c.stopped) return true;
  if (c.finished || (!c.rounds.empty() && round <= c.rounds.back())) return false;

  c.best = c.rounds.empty() || Better(value, c.best) ? value : c.best;
  c.sums.push_back((c.sums.empty() ? 0.0 : c.sums.back()) + value);
  c.rounds.push_back(round);
  if (round < grace_rounds_) return false;

  std::vector<double> averages;
  for (const auto& [id, other] : curves_) {
    if (id == trial || other.rounds.empty() || other.rounds.back() < round) continue;
    // The last of the other's reports at or before `round`.
    const auto after = std::upper_bound(other.rounds.begin(), other.rounds.end(), round);
    const auto n = after - other.rounds.begin();
    if (n == 0) continue;  // it began reporting after `round`
    averages.push_back(other.sums[n - 1] / static_cast<double>(n));
  }
  if (averages.size() < static_cast<size_t>(min_trials_)) return false;

  const size_t mid = averages.size() / 2;
  std::nth_element(averages.begin(), averages.begin() + static_cast<ptrdiff_t>(mid), averages.end());
  double median = averages[mid];
  if (averages.size() % 2 == 0) {
    const double below = *std::max_element(averages.begin(), averages.begin() + static_cast<ptrdiff_t>(mid));
    median = 0.5 * (below + median);
  }
  c.stopped = Better(median, c.best);
  return c.stopped;
}

void MedianStopper::Finish(int trial) {
  std::lock_guard lock(mu_);
  curves_[trial].finished = true;
}

}  // namespace takt::tune
