#!/usr/bin/env bash
# Per-kernel timings of the t-SNE pipeline and how they scale with N, plus one end-to-end
# t-SNE of a 1 000 000 × 50 synthetic mixture.
#   bench/scaling.sh [THREADS]        (default 2)
# Sizes: the bundled MNIST test set (10 000 × 784), MNIST train + test from
# ../shared/data/mnist (70 000 × 784) and a seeded Gaussian mixture (1 000 000 × 50).
# Writes bench/results/scaling.md (pasted into BENCHMARKS.md). Needs python3 with numpy
# (installed into a throwaway venv).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p ember-cli
cargo build --release -q -p ember-core --features std --example kernels
ember=$PWD/target/release/ember
kernels=$PWD/target/release/examples/kernels

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q numpy
"$work/venv/bin/python" - "$work" <<'PY'
import gzip, sys, numpy as np
work = sys.argv[1]
def images(path):
    return np.frombuffer(gzip.open(path).read()[16:], dtype=np.uint8).reshape(-1, 784)
d = "../shared/data/mnist/"
test = images("data/t10k-images.idx3-ubyte.gz")
full = np.concatenate([images(d + "train-images.idx3-ubyte.gz"), images(d + "t10k-images.idx3-ubyte.gz")])
test.astype(np.float32).tofile(f"{work}/mnist10k.f32")
full.astype(np.float32).tofile(f"{work}/mnist70k.f32")
# Ten Gaussian clusters in 50-D, centres N(0, 5²), unit spread, seeded.
g = np.random.default_rng(11)
centres = g.normal(0, 5, (10, 50)).astype(np.float32)
x = centres[np.arange(1_000_000) % 10] + g.normal(0, 1, (1_000_000, 50)).astype(np.float32)
np.save(f"{work}/mixture1m.npy", x)
PY

rows=$work/rows
: > "$rows"
for src in "$work/mnist10k.f32:784" "$work/mnist70k.f32:784" "mixture:1000000:50"; do
  /usr/bin/time -f "%M" -o "$work/rss" "$kernels" "$src" "$threads" >> "$rows"
done
/usr/bin/time -f "%e %M" -o "$work/e2e" "$ember" tsne "$work/mixture1m.npy" -o "$work/y.npy" \
  --threads "$threads" 2> "$work/e2e.log"
read -r wall kb < "$work/e2e"
stages=$(grep '^stages:' "$work/e2e.log" | sed 's/^stages: //')

mkdir -p bench/results
out=bench/results/scaling.md
{
  echo "### Per-kernel timings and scaling with N"
  echo
  echo "- Date: $(date -u +%Y-%m-%d). Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $threads threads."
  echo "- Command: \`bench/scaling.sh $threads\` (\`core/examples/kernels.rs\`). One call for the"
  echo "  neighbour search (t-SNE's k = 90, recall on 200 exact queries) and the affinities; the"
  echo "  median of 10 calls for attraction and FFT repulsion and of 3 for Barnes–Hut, on a"
  echo "  seeded 2-D map with the spread of a converged one (ten clusters, ±60)."
  echo
  echo "| data | N × D | kernel | what one call does | ms |"
  echo "|---|---|---|---|---|"
  cat "$rows"
  echo
  echo "End to end: \`ember tsne mixture1m.npy\` (1 000 000 × 50, ten seeded Gaussian clusters,"
  echo "t-SNE defaults, $threads threads): **$wall s** wall, peak RSS $(awk -v k="$kb" 'BEGIN {printf "%.0f MB", k/1024}'); stages: $stages."
} > "$out"
cat "$out"
