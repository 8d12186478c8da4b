// File: sim/random.h
//
// A small, portable pseudo-random generator for the simulators: xoshiro256**
// seeded through splitmix64, with uniform, normal (Box-Muller) and exponential
// draws. The std:: distributions are deliberately not used: their output
// differs between standard libraries, and a seed must give the same data on
// every machine. Not thread-safe; give each thread (or each simulated entity)
// its own stream with `Rng::ForStream`.
#pragma once

#include <cstdint>

namespace takt::sim {

class Rng {
 public:
  explicit Rng(uint64_t seed);
  // An independent stream for entity `stream` under `seed` (e.g. one per robot),
  // so that an entity's draws do not depend on how many others exist.
  static Rng ForStream(uint64_t seed, uint64_t stream);

  uint64_t Next();
  // Uniform in [0, 1), 53 random bits.
  double Uniform();
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Uniform integer in [lo, hi], both inclusive; requires lo <= hi.
  int64_t UniformInt(int64_t lo, int64_t hi);
  bool Bernoulli(double p) { return Uniform() < p; }
  // Standard normal (Box-Muller; the second value of each pair is cached).
  double Normal();
  double Normal(double mean, double sd) { return mean + sd * Normal(); }
  // Exponential with the given mean.
  double Exponential(double mean);

 private:
  uint64_t s_[4];
  double cached_normal_ = 0;
  bool has_cached_normal_ = false;
};

}  // namespace takt::sim
