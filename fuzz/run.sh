#!/usr/bin/env bash
# File: fuzz/run.sh
#
# Builds fuzz/protocols_fuzz.cc with libFuzzer, ASan and UBSan, seeds a corpus
# from fuzz/corpus/ and runs it for SECONDS; exits non-zero on any crash or
# sanitizer report (the reproducer is left in OUT_DIR/artifacts/), 77 (CTest:
# skipped) when no libFuzzer is installed.
#
#   fuzz/run.sh SECONDS [OUT_DIR]      (OUT_DIR defaults to build-fuzz/)
#
# Compiler: clang++ -fsanitize=fuzzer when it can compile std::expected (clang
# 14 with libstdc++ 12 cannot: its <expected> needs P0848 concepts). Otherwise
# g++ builds the parsers with -fsanitize-coverage=trace-pc,trace-cmp and links
# clang's libFuzzer runtime; GCC's trace-pc callback is renamed to a shim
# (fuzz/gcc_coverage.cc) that feeds libFuzzer's extra-counters section, since
# libFuzzer no longer accepts trace-pc itself.
set -euo pipefail

SECONDS_TO_RUN=${1:-60}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${2:-$ROOT/build-fuzz}
mkdir -p "$OUT/obj" "$OUT/corpus" "$OUT/artifacts"

SOURCES=("$ROOT/src/serving/json_reader.cc" "$ROOT/src/serving/protocols.cc" "$ROOT/src/core/result.cc"
         "$ROOT/fuzz/protocols_fuzz.cc")

find_libfuzzer() {
  local lib
  if command -v clang++ >/dev/null; then
    lib=$(clang++ -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)
    if [[ -f "$lib" ]]; then echo "$lib"; return; fi
    lib=$(clang++ -print-resource-dir 2>/dev/null)/lib/linux/libclang_rt.fuzzer-x86_64.a
    if [[ -f "$lib" ]]; then echo "$lib"; return; fi
  fi
  for lib in /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a; do
    if [[ -f "$lib" ]]; then echo "$lib"; return; fi
  done
}

if ! command -v clang++ >/dev/null; then
  echo "fuzz/run.sh: clang++ not found: skipped" >&2
  exit 77
fi
LIBFUZZER=$(find_libfuzzer)
BIN="$OUT/protocols_fuzz"
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)

probe="$OUT/obj/probe.cc"
printf '#include <expected>\nstd::expected<int, int> f() { return 1; }\nint main() { return *f() - 1; }\n' >"$probe"
if clang++ -std=c++2b -fsyntax-only "$probe" 2>/dev/null; then
  echo "fuzz/run.sh: building with clang++ -fsanitize=fuzzer"
  clang++ -std=c++2b -O1 -g "${SAN[@]}" -fsanitize=fuzzer -I"$ROOT/src" "${SOURCES[@]}" -o "$BIN"
elif [[ -n "$LIBFUZZER" ]] && command -v g++ >/dev/null && command -v objcopy >/dev/null; then
  echo "fuzz/run.sh: clang++ lacks std::expected; building with g++ and $LIBFUZZER"
  objs=()
  for src in "${SOURCES[@]}"; do
    obj="$OUT/obj/$(basename "$src" .cc).o"
    g++ -std=c++23 -O1 -g "${SAN[@]}" -fsanitize-coverage=trace-pc,trace-cmp -I"$ROOT/src" -c "$src" -o "$obj"
    objcopy --redefine-sym __sanitizer_cov_trace_pc=takt_fuzz_trace_pc "$obj"
    objs+=("$obj")
  done
  g++ -std=c++23 -O2 -c "$ROOT/fuzz/gcc_coverage.cc" -o "$OUT/obj/gcc_coverage.o"
  g++ "${SAN[@]}" "${objs[@]}" "$OUT/obj/gcc_coverage.o" "$LIBFUZZER" -lpthread -ldl -o "$BIN"
else
  echo "fuzz/run.sh: no libFuzzer runtime usable: skipped" >&2
  exit 77
fi

# Seeds: the text files under fuzz/corpus/ (the first byte picks the parser),
# plus a binary-tensor request built here.
cp "$ROOT"/fuzz/corpus/* "$OUT/corpus/"
header='{"inputs":[{"name":"x","shape":[1,32],"datatype":"FP32","parameters":{"binary_data_size":128}}]}'
{
  printf '1'
  printf "\\x$(printf %02x $((${#header} & 255)))\\x$(printf %02x $((${#header} >> 8)))"
  printf '%s' "$header"
  head -c 128 /dev/zero
} >"$OUT/corpus/oip_binary.seed"

echo "fuzz/run.sh: fuzzing for ${SECONDS_TO_RUN}s"
# abort_on_error: a sanitizer report raises SIGABRT, which libFuzzer catches to
# write the reproducer (GCC's runtimes do not call libFuzzer's death callback).
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=1} \
  "$BIN" -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
  -use_value_profile=1 -dict="$ROOT/fuzz/protocols.dict" -print_final_stats=1 \
  -artifact_prefix="$OUT/artifacts/" "$OUT/corpus"
