#!/usr/bin/env bash
# Benchmark ember against the reference implementation, side by side in one run, on MNIST.
#   bench/compare.sh DATASET [RUNS] [METHOD]
#   DATASET: demo      the bundled test set, 10 000 × 784
#            mnist70k  train + test from ../shared/data/mnist, 70 000 × 784
#   METHOD:  tsne      ember tsne      vs openTSNE 1.0.4 (default)
#            umap      ember umap      vs umap-learn 0.5.12
#            spectrum  ember ne --spectrum 0,0.25,0.5,0.75,1 (five Neg-t-SNE embeddings
#                      from one kNN graph) vs umap-learn once, for scale
# Writes bench/results/<dataset>[-<method>].md (pasted into BENCHMARKS.md). RUNS defaults to 3.
# Needs python3; numpy, openTSNE and umap-learn go into a throwaway venv.
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:?dataset: demo or mnist70k}
runs=${2:-3}
method=${3:-tsne}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p ember-cli
ember=$PWD/target/release/ember

python3 -m venv "$work/venv"
case $method in
  tsne) "$work/venv/bin/pip" install -q numpy openTSNE==1.0.4 ;;
  umap|spectrum) "$work/venv/bin/pip" install -q numpy umap-learn==0.5.12 ;;
  *) echo "unknown method $method" >&2; exit 2 ;;
esac
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
cat > "$work/umap_learn.py" <<'PY'
import sys, numpy as np, umap
x = np.load(sys.argv[1]).astype(np.float32)
# No random_state: umap-learn only runs its SGD in parallel without one.
y = umap.UMAP(n_jobs=2).fit_transform(x)
np.save(sys.argv[2], np.asarray(y, dtype=np.float32))
PY

: > "$work/times"
once() { # name, command...: one timed run
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2> "$work/$name.log"
  read -r wall kb < "$work/time"
  echo "$name $wall $kb" >> "$work/times"
}
# The two tools take turns, run by run, so that both meet the same hours of this shared
# machine; the setup's writes (the venv, x.npy) are flushed first so that neither meets them.
measure() { # name, output, command... (ember's run); the reference's comes from $ref_run
  local name=$1 out=$2; shift 2
  sync
  for _ in $(seq "$runs"); do
    once "$name" "$@"
    once "$ref" "${ref_run[@]}"
  done
  "$ember" eval "$work/x.npy" "$out" --labels "$work/labels.txt" > "$work/$name.eval"
  "$ember" eval "$work/x.npy" "$ref_out" --labels "$work/labels.txt" > "$work/$ref.eval"
}
case $method in
  tsne)
    ref=openTSNE ref_out="$work/ot.npy"
    ref_run=("$work/venv/bin/python" "$work/opentsne.py" "$work/x.npy" "$work/ot.npy")
    measure ember "$work/ember.npy" "$ember" tsne "$work/x.npy" -o "$work/ember.npy"
    what="t-SNE defaults"
    ember_cmd='`ember tsne x.npy` with its defaults, 2 threads'
    ref_cmd='openTSNE 1.0.4 from PyPI: `TSNE(n_jobs=2, random_state=42).fit(x)`' ;;
  umap)
    ref=umap-learn ref_out="$work/ul.npy"
    ref_run=("$work/venv/bin/python" "$work/umap_learn.py" "$work/x.npy" "$work/ul.npy")
    measure ember "$work/ember.npy" "$ember" umap "$work/x.npy" -o "$work/ember.npy"
    what="UMAP defaults"
    ember_cmd='`ember umap x.npy` with its defaults, 2 threads'
    ref_cmd='umap-learn 0.5.12 from PyPI: `UMAP(n_jobs=2).fit_transform(x)` (JIT compilation included)' ;;
  spectrum)
    # Quality is reported for the s = 0 panel (t-SNE-like end).
    ref=umap-learn ref_out="$work/ul.npy"
    ref_run=("$work/venv/bin/python" "$work/umap_learn.py" "$work/x.npy" "$work/ul.npy")
    measure ember "$work/sp_s0.npy" "$ember" ne "$work/x.npy" --spectrum 0,0.25,0.5,0.75,1 -o "$work/sp.npy"
    what="five-point Neg-t-SNE spectrum (one kNN graph)"
    ember_cmd='`ember ne x.npy --spectrum 0,0.25,0.5,0.75,1`, 2 threads; quality of the s = 0 panel'
    ref_cmd='umap-learn 0.5.12, one embedding, for scale: `UMAP(n_jobs=2).fit_transform(x)`' ;;
esac
stages=$(grep '^stages:' "$work/ember.log" | sed 's/^stages: //')

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v n="$1" -v c="$2" '$1==n {print $c}' "$work/times"; }
row() {
  printf '| %s | %s | %s| %.0f MiB | %s | %s |\n' "$1" "$(col "$1" 2 | median)" "$(col "$1" 2 | tr '\n' ' ')" \
    "$(col "$1" 3 | median | awk '{print $1/1024}')" \
    "$(awk '/^recall@10/ {print $2}' "$work/$1.eval")" "$(awk '/^10-NN accuracy/ {print $3}' "$work/$1.eval")"
}
n=$(wc -l < "$work/labels.txt")
ew=$(col ember 2 | median)
ow=$(col "$ref" 2 | median)
mkdir -p bench/results
out=bench/results/$dataset.md
[ "$method" = tsne ] || out=bench/results/$dataset-$method.md
{
  echo "### MNIST $dataset: $n × 784 → 2-D, $what"
  echo
  echo "- Date: $(date -u +%Y-%m-%d). Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')."
  echo "- Command: \`bench/compare.sh $dataset $runs $method\`. ember: $ember_cmd."
  echo "  $ref_cmd."
  echo "- Wall time and peak RSS from \`/usr/bin/time\` (median of $runs runs, the two tools taking turns; input loading included); quality by \`ember eval\` on the last run."
  echo "- ember's stages in its last run: $stages."
  echo
  echo "| run | median wall s | all runs s | peak RSS | recall@10 | 10-NN accuracy |"
  echo "|---|---|---|---|---|---|"
  row ember
  row "$ref"
  echo
  echo "$ref / ember wall-time ratio: $(awk -v a="$ow" -v b="$ew" 'BEGIN {printf "%.2f", a/b}')×."
} > "$out"
cat "$out"
