#!/usr/bin/env bash
# Benchmark: ember t-SNE against openTSNE 1.0.4, side by side in one run, on MNIST.
#   bench/compare.sh demo [RUNS]      the bundled test set, 10 000 × 784
#   bench/compare.sh mnist70k [RUNS]  train + test from ../shared/data/mnist, 70 000 × 784
# Writes bench/results/<dataset>.md (pasted into BENCHMARKS.md). RUNS defaults to 3.
# Needs python3; numpy and openTSNE go into a throwaway venv.
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:?dataset: demo or mnist70k}
runs=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p ember-cli
ember=$PWD/target/release/ember

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q numpy openTSNE==1.0.4
"$work/venv/bin/python" - "$dataset" "$work" <<'PY'
import gzip, sys, numpy as np
dataset, work = sys.argv[1], sys.argv[2]
def idx(path, off):
    return np.frombuffer(gzip.open(path).read()[off:], dtype=np.uint8)
if dataset == "demo":
    parts = [("data/t10k-images.idx3-ubyte.gz", "data/t10k-labels.idx1-ubyte.gz")]
else:
    d = "../shared/data/mnist/"
    parts = [(d + "train-images.idx3-ubyte.gz", d + "train-labels.idx1-ubyte.gz"),
             (d + "t10k-images.idx3-ubyte.gz", d + "t10k-labels.idx1-ubyte.gz")]
x = np.concatenate([idx(i, 16).reshape(-1, 784) for i, _ in parts])
y = np.concatenate([idx(l, 8) for _, l in parts])
np.save(f"{work}/x.npy", x)
np.savetxt(f"{work}/labels.txt", y, fmt="%d")
PY
cat > "$work/opentsne.py" <<'PY'
import sys, numpy as np, openTSNE
x = np.load(sys.argv[1]).astype(np.float32)
y = openTSNE.TSNE(n_jobs=2, random_state=42).fit(x)
np.save(sys.argv[2], np.asarray(y, dtype=np.float32))
PY

: > "$work/times"
measure() { # name, output, command...
  local name=$1 out=$2; shift 2
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2> "$work/$name.log"
    read -r wall kb < "$work/time"
    echo "$name $wall $kb" >> "$work/times"
  done
  "$ember" eval "$work/x.npy" "$out" --labels "$work/labels.txt" > "$work/$name.eval"
}
measure ember "$work/ember.npy" "$ember" tsne "$work/x.npy" -o "$work/ember.npy"
stages=$(grep '^stages:' "$work/ember.log" | sed 's/^stages: //')
measure openTSNE "$work/ot.npy" "$work/venv/bin/python" "$work/opentsne.py" "$work/x.npy" "$work/ot.npy"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v n="$1" -v c="$2" '$1==n {print $c}' "$work/times"; }
row() {
  printf '| %s | %s | %s| %.0f MB | %s | %s |\n' "$1" "$(col "$1" 2 | median)" "$(col "$1" 2 | tr '\n' ' ')" \
    "$(col "$1" 3 | median | awk '{print $1/1024}')" \
    "$(awk '/^recall@10/ {print $2}' "$work/$1.eval")" "$(awk '/^10-NN accuracy/ {print $3}' "$work/$1.eval")"
}
n=$(wc -l < "$work/labels.txt")
ew=$(col ember 2 | median)
ow=$(col openTSNE 2 | median)
mkdir -p bench/results
{
  echo "### MNIST $dataset: $n × 784 → 2-D, t-SNE defaults"
  echo
  echo "- Date: $(date -u +%Y-%m-%d). Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')."
  echo "- Command: \`bench/compare.sh $dataset $runs\`. ember: \`ember tsne x.npy\` with its defaults, 2 threads."
  echo "  openTSNE 1.0.4 from PyPI: \`TSNE(n_jobs=2, random_state=42).fit(x)\`."
  echo "- Wall time and peak RSS from \`/usr/bin/time\` (median of $runs runs; input loading included); quality by \`ember eval\` on the last run."
  echo "- ember's stages in its last run: $stages."
  echo
  echo "| run | median wall s | all runs s | peak RSS | recall@10 | 10-NN accuracy |"
  echo "|---|---|---|---|---|---|"
  row ember
  row openTSNE
  echo
  echo "openTSNE / ember wall-time ratio: $(awk -v a="$ow" -v b="$ew" 'BEGIN {printf "%.2f", a/b}')×."
} > "bench/results/$dataset.md"
cat "bench/results/$dataset.md"
