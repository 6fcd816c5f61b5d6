#!/usr/bin/env bash
# Runs one fuzz target on one core at the lowest priority, from the seed
# corpus in SEEDS (see README.md for how it was made) and the regression
# corpus, writing new inputs to corpus/TARGET and the log to logs/TARGET.log.
#   fuzz/campaign.sh TARGET SECONDS [SEEDS]
set -euo pipefail
cd "$(dirname "$0")"
target=$1 seconds=$2 seeds=${3:-}
mkdir -p "corpus/$target" logs "regression/$target"
dirs=("corpus/$target" "regression/$target")
[ -n "$seeds" ] && dirs+=("$seeds")
exec nice -n 19 cargo +nightly fuzz run --debug-assertions "$target" "${dirs[@]}" -- \
    -dict="dict/$target.dict" -runs=10000000 -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"logs/$target.log" 2>&1
