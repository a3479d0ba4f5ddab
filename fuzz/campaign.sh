#!/usr/bin/env bash
# A fuzzing campaign: each target for SECONDS of wall time, JOBS targets at a time, with the
# limits CI uses. Prints one line per target (wall seconds, CPU seconds, executions, findings
# of this run) for ROBUSTNESS.md. CPU seconds come from /usr/bin/time, so a busy machine is
# not overcounted.
#   fuzz/campaign.sh [SECONDS] [JOBS] [TARGET[:SECONDS] ...]   (defaults 360, 2, every target)
# Crash inputs land in fuzz/artifacts/TARGET/; the corpora grow in fuzz/corpus/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-360}
jobs=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
cargo +nightly fuzz build >/dev/null
logs=$(mktemp -d)
touch "$logs/start"
run() {
  local t=${1%%:*} s=$secs
  [[ $1 == *:* ]] && s=${1#*:}
  /usr/bin/time -f "%U %S" -o "$logs/$t.time" \
    cargo +nightly fuzz run "$t" -- -max_total_time="$s" -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -print_final_stats=1 > "$logs/$t.log" 2>&1 || true
  local execs findings cpu
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$logs/$t.log")
  # Crashes, out-of-memory and timeout inputs of this run count (slow-unit files are notes).
  findings=$(find "artifacts/$t" -newer "$logs/start" -type f 2>/dev/null \
    | grep -cE '/(crash|oom|timeout|leak)-' || true)
  cpu=$(awk 'END {printf "%.0f", $1 + $2}' "$logs/$t.time")
  echo "| \`$t\` | $s | $cpu | ${execs:-?} | $findings |"
}
export -f run
export secs logs
if (( $# )); then printf '%s\n' "$@"; else cargo +nightly fuzz list; fi \
  | xargs -P "$jobs" -I{} bash -c 'run {}'
