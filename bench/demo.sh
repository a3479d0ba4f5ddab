#!/usr/bin/env bash
# Benchmark: the demo (MNIST test set, 10 000 × 784 → 2-D) with ember and openTSNE 1.0.4,
# side by side in one run. Writes bench/results/demo.md (included in BENCHMARKS.md).
# Usage: bench/demo.sh [RUNS]   (default 3). Needs python3; openTSNE goes in a throwaway venv.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p ember-cli
ember=target/release/ember

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q numpy openTSNE==1.0.4
cat > "$work/opentsne.py" <<'PY'
import gzip, sys, numpy as np, openTSNE
x = np.frombuffer(gzip.open("data/t10k-images.idx3-ubyte.gz").read()[16:], dtype=np.uint8).reshape(-1, 784).astype(np.float32)
y = openTSNE.TSNE(n_jobs=2, random_state=42).fit(x)
np.savetxt(sys.argv[1], np.asarray(y), delimiter=",")
PY

measure() { # name, output csv, command...
  local name=$1 out=$2; shift 2
  for r in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>&1
    read -r wall kb < "$work/time"
    echo "$name $wall $kb" >> "$work/times"
  done
  "$ember" eval data/t10k-images.idx3-ubyte.gz "$out" --labels data/t10k-labels.idx1-ubyte.gz > "$work/$name.eval"
}
measure ember "$work/ember.csv" "$ember" tsne -q -o "$work/ember.csv" --plot "$work/ember.png"
measure openTSNE "$work/ot.csv" "$work/venv/bin/python" "$work/opentsne.py" "$work/ot.csv"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
row() {
  local name=$1
  local wall rss recall acc
  wall=$(awk -v n="$name" '$1==n {print $2}' "$work/times" | median)
  rss=$(awk -v n="$name" '$1==n {print $3}' "$work/times" | median)
  recall=$(awk '/^recall@10/ {print $2}' "$work/$name.eval")
  acc=$(awk '/^10-NN accuracy/ {print $3}' "$work/$name.eval")
  printf '| %s | %s | %s | %.0f MB | %s | %s |\n' "$name" "$wall" \
    "$(awk -v n="$name" '$1==n {printf "%s ", $2}' "$work/times")" "$(echo "$rss / 1024" | bc -l)" "$recall" "$acc"
}
ew=$(awk '$1=="ember" {print $2}' "$work/times" | median)
ow=$(awk '$1=="openTSNE" {print $2}' "$work/times" | median)
{
  echo "### Demo: MNIST test set, 10 000 × 784 → 2-D, t-SNE defaults"
  echo
  echo "- Date: $(date -u +%Y-%m-%d). Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')."
  echo "- Command: \`bench/demo.sh $runs\`. ember: \`ember tsne\` (exact kNN, Barnes–Hut θ 0.5, 750 iterations, 2 threads)."
  echo "  openTSNE 1.0.4 from PyPI: \`TSNE(n_jobs=2, random_state=42).fit(x)\` (its defaults: Annoy kNN, FFT repulsion for N ≥ 10 000)."
  echo "- Wall time and peak RSS from \`/usr/bin/time\`, median of $runs runs; quality by \`ember eval\` on the last run."
  echo
  echo "| run | median wall s | all runs s | peak RSS | recall@10 | 10-NN accuracy |"
  echo "|---|---|---|---|---|---|"
  row ember
  row openTSNE
  echo
  echo "Ratio openTSNE / ember wall time: $(echo "$ow / $ew" | bc -l | xargs printf '%.2f')×."
} > bench/results/demo.md
cat bench/results/demo.md
