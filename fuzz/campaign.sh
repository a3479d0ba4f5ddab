#!/usr/bin/env bash
# A fuzzing campaign: every target for SECONDS each, JOBS targets at a time, with the
# limits CI uses. Prints one line per target (wall seconds, CPU seconds, executions, findings)
# for ROBUSTNESS.md. CPU seconds come from /usr/bin/time, so a busy machine is not overcounted.
#   fuzz/campaign.sh [SECONDS] [JOBS]        (defaults 360 and 2)
# Crash inputs land in fuzz/artifacts/TARGET/; the corpora grow in fuzz/corpus/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-360}
jobs=${2:-2}
cargo +nightly fuzz build >/dev/null
logs=$(mktemp -d)
run() {
  local t=$1
  /usr/bin/time -f "%U %S" -o "$logs/$t.time" \
    cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -print_final_stats=1 > "$logs/$t.log" 2>&1 || true
  local execs crashes cpu
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$logs/$t.log")
  # Crashes, out-of-memory and timeout inputs all count (slow-unit files are only notes).
  crashes=$(ls "artifacts/$t" 2>/dev/null | grep -cE '^(crash|oom|timeout|leak)-' || true)
  cpu=$(awk 'END {printf "%.0f", $1 + $2}' "$logs/$t.time")
  echo "| \`$t\` | $secs | $cpu | ${execs:-?} | $crashes |"
}
export -f run
export secs logs
cargo +nightly fuzz list | xargs -P "$jobs" -I{} bash -c 'run {}'
