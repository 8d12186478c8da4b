// File: tune/sampler.h
//
// Samplers propose the next hyperparameters of a `tune` step from the trials
// so far. The engine runs N trials (several at once), asks Propose before
// starting each, and records every trial's objective when it ends:
//
//   auto sampler = MakeTpeSampler(space, Direction::kMaximize, seed);
//   Json params = sampler->Propose(trials);   // {"eta": 0.04, "max_depth": 6, ...}
//   trials.push_back({id, params, std::nullopt});  // running; value set when it ends
//
// Every proposal is a point of the space (SearchSpace::Validate accepts it).
// Given the seed and the same sequence of histories, the proposals are the same
// on every platform. A sampler copies the space it is given.
//
// Thread safety: a Sampler is not thread-safe; the engine serialises calls.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/json.h"
#include "tune/direction.h"
#include "tune/search_space.h"

namespace takt::tune {

struct Trial {
  int id = 0;
  Json params;                  // a point of the space
  std::optional<double> value;  // the objective; none while the trial runs
  bool pruned = false;          // stopped early; `value` is what it had then, if any
};

class Sampler {
 public:
  virtual ~Sampler() = default;

  // The next point to try given every trial so far: finished ones have a
  // value, running ones do not. Pruned trials, and trials whose value is not
  // finite, count as bad observations. Trials whose params are not a point of
  // the space are ignored.
  virtual Json Propose(const std::vector<Trial>& history) = 0;
};

// Independent uniform draws (log-uniform for loguniform, every integer and
// every choice equally likely); the history is ignored.
std::unique_ptr<Sampler> MakeRandomSampler(const SearchSpace& space, uint64_t seed);

// Tree-structured Parzen estimator (Bergstra, Bardenet, Bengio, Kégl:
// "Algorithms for Hyper-Parameter Optimization", NIPS 2011), independent per
// dimension:
//
//  1. Until `startup_trials` trials have an outcome (a value, or pruned), or
//     while none has finished unpruned, proposals are those of
//     MakeRandomSampler(space, seed).
//  2. Finished trials are ranked by value (best first for `direction`); the
//     best ceil(gamma * n) of the n trials with an outcome, gamma = 0.1, at
//     least 1 and at most 25, form the good group (0.25 and a sqrt rule did
//     worse on the tests' functions at a budget of 40). The rest, the pruned
//     and non-finite ones, and the running ones form the bad group: running
//     trials get the "constant liar" value "worst", so trials proposed while
//     others run spread out instead of piling onto the same point.
//  3. For each dimension, l(x) is fitted to the good group and g(x) to the bad:
//     - numeric: a mixture of Gaussians truncated to the dimension, one per
//       observation plus a prior kernel (centre of the range, width the range,
//       weight 1). Kernels live in log space for loguniform and on
//       [low - 0.5, high + 0.5] for int. A kernel's width is the larger distance
//       to its neighbours among the sorted centres, clipped to
//       [range / min(100, n + 1), range]. An int's density is the mass of
//       [k - 0.5, k + 0.5]; its draws are rounded.
//     - choice: frequencies in the group plus one pseudo-count per value.
//  4. `candidates` values are drawn from l and the one with the largest
//     l(x) / g(x) is proposed, dimension by dimension.
//
// startup_trials below 1 counts as 1 and candidates below 1 as 1.
std::unique_ptr<Sampler> MakeTpeSampler(const SearchSpace& space, Direction direction, uint64_t seed,
                                        int startup_trials = 10, int candidates = 24);

}  // namespace takt::tune
