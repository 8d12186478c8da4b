#!/usr/bin/env bash
# Installs every system dependency of takt from Debian packages.
# Idempotent and non-interactive: packages already present are skipped, so a
# second run costs a dpkg query and nothing else.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang-format git
  # libraries
  libboost-dev libboost-system-dev nlohmann-json3-dev libsqlite3-dev libssl-dev
  libxgboost-dev libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev libzstd-dev
  libsimdjson-dev libpq-dev zlib1g-dev
  # data sources the connectors are tested against (a throwaway cluster per test run)
  postgresql sqlite3
  # pipelines: sandboxed script steps, the Slurm executor (a single-node cluster in tests), plots
  bubblewrap slurm-wlm munge libcairo2-dev python3-sklearn
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # reference implementation for prediction-equality tests (Debian's python)
  python3-xgboost python3-numpy curl
  # serving: a real Prometheus scrapes /metrics in a test; boto3's sagemaker-runtime client calls takt;
  # libFuzzer (clang's runtime) for the request-parser fuzz test (fuzz/run.sh)
  prometheus python3-boto3 clang libclang-rt-14-dev
  # peers the benchmarks compare with (bench/; bench/serving: wrk against Flask+gunicorn and nginx)
  python3-pandas wrk nginx gunicorn python3-flask
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
