// File: fuzz/gcc_coverage.cc
//
// Coverage feedback for libFuzzer from GCC-instrumented code (see run.sh).
// GCC's -fsanitize-coverage=trace-pc calls __sanitizer_cov_trace_pc at every
// edge; run.sh renames those calls to takt_fuzz_trace_pc, which bumps a counter
// (chosen by a hash of the caller's address) in the section libFuzzer reads as
// extra coverage counters. GCC's trace-cmp also emits float comparisons, which
// libFuzzer does not implement: they are no-ops here.
#include <cstdint>

extern "C" {

__attribute__((section("__libfuzzer_extra_counters"))) uint8_t takt_fuzz_counters[1 << 16];

void takt_fuzz_trace_pc() {
  const auto pc = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  takt_fuzz_counters[(static_cast<uint64_t>(pc) * 0x9E3779B97F4A7C15ull) >> 48]++;
}

void __sanitizer_cov_trace_cmpf(float, float) {}
void __sanitizer_cov_trace_cmpd(double, double) {}

}  // extern "C"
