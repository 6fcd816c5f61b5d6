#!/usr/bin/env bash
# Benchmark kmodidx against Debian's depmod; see bench/README.md.
#   bench/run.sh            full run (1 warm-up + 5 measured runs), writes BENCHMARKS.md
#   bench/run.sh --quick    1 warm-up + 2 measured runs
#   bench/run.sh --help     all options
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "bench/run.sh: python3 is required" >&2; exit 2; }
exec python3 bench/bench.py "$@"
