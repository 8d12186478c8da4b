// File: tune/rng.h
//
// The samplers' source of randomness: xoshiro256** seeded through splitmix64,
// with its own transforms to uniform, bounded-integer and normal draws, so a
// seed gives the same proposals on every platform and standard library (the
// std::*_distribution classes differ between libstdc++ and libc++, and
// std::random_device is not reproducible at all).
//
// Thread safety: an Rng is a mutable value; one per thread or per sampler.
#pragma once

#include <array>
#include <cstdint>

namespace takt::tune {

// One step of splitmix64: advances `state` and returns the next output.
uint64_t SplitMix64(uint64_t& state);

class Rng {
 public:
  explicit Rng(uint64_t seed);

  // 64 random bits (xoshiro256**).
  uint64_t Next();
  // Uniform on [0, 1), 53 bits of precision.
  double Uniform();
  // Uniform on [0, n), unbiased; 0 if n is 0.
  uint64_t Below(uint64_t n);
  // Standard normal (Box-Muller; one draw per call).
  double Normal();

 private:
  std::array<uint64_t, 4> s_;
};

}  // namespace takt::tune
