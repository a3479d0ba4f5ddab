#!/usr/bin/env bash
# Transform benchmark: fit t-SNE and UMAP on the MNIST training set (60 000 × 784), place the
# 10 000 test digits into each map on 1 and 2 threads, and classify each placed digit by its
# 10 nearest training digits in the embedding. openTSNE 1.0.4 and umap-learn 0.5.12 (PyPI,
# throwaway venv) do the same, side by side in the same run.
#   bench/transform.sh [RUNS]     (RUNS of each ember transform, default 3)
# Writes bench/results/transform.md (pasted into BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p ember-cli
ember=$PWD/target/release/ember

venv=${BENCH_VENV:-$work/venv}
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q numpy openTSNE==1.0.4 umap-learn==0.5.12; }
"$venv/bin/python" - "$work" <<'PY'
import gzip, sys, numpy as np
work = sys.argv[1]
d = "../shared/data/mnist/"
def idx(name, off):
    return np.frombuffer(gzip.open(d + name).read()[off:], dtype=np.uint8)
for part, img, lab in [("train", "train-images.idx3-ubyte.gz", "train-labels.idx1-ubyte.gz"),
                       ("test", "t10k-images.idx3-ubyte.gz", "t10k-labels.idx1-ubyte.gz")]:
    np.save(f"{work}/{part}.npy", idx(img, 16).reshape(-1, 784))
    np.savetxt(f"{work}/{part}_labels.txt", idx(lab, 8), fmt="%d")
PY
cat > "$work/reference.py" <<'PY'
# Fit with 2 threads, then time the transform of the test set on 1 and on 2 threads.
import sys, time, numpy as np
method, work = sys.argv[1], sys.argv[2]
xtr = np.load(f"{work}/train.npy").astype(np.float32)
xte = np.load(f"{work}/test.npy").astype(np.float32)
ytr = np.loadtxt(f"{work}/train_labels.txt", dtype=int)
yte = np.loadtxt(f"{work}/test_labels.txt", dtype=int)
def accuracy(ref, new):
    votes = []
    for s in range(0, len(new), 500):
        d2 = ((new[s:s + 500, None, :] - ref[None, :, :]) ** 2).sum(-1)
        near = np.argsort(d2, axis=1, kind="stable")[:, :10]
        votes += [np.bincount(ytr[n], minlength=10).argmax() for n in near]
    return (np.array(votes) == yte).mean()
if method == "openTSNE":
    import openTSNE
    emb = openTSNE.TSNE(n_jobs=2, random_state=42).fit(xtr)
    def place(threads):
        # openTSNE's transform takes its thread count from the fitted embedding.
        emb.gradient_descent_params["n_jobs"] = threads
        emb.affinities.n_jobs = threads
        emb.affinities.knn_index.n_jobs = threads
        return np.asarray(emb.transform(xte))
    ref = np.asarray(emb)
else:
    import numba, umap
    model = umap.UMAP(n_jobs=2).fit(xtr)
    def place(threads):
        numba.set_num_threads(threads)
        return model.transform(xte)
    ref = model.embedding_
    place(2)  # compile the transform's numba code outside the timing
for threads in (1, 2):
    t0 = time.perf_counter()
    y = place(threads)
    secs = time.perf_counter() - t0
    print(f"{threads} {secs:.2f} {len(xte) / secs:.0f} {accuracy(ref, y):.4f}")
PY

{
  echo "### Transform: MNIST test set (10 000) into maps fitted on the training set (60 000)"
  echo
  echo "- Date: $(date -u +%Y-%m-%d). Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')."
  echo "- Command: \`bench/transform.sh $runs\`. ember: \`ember tsne|umap train.npy --save-model m.ember\`, then"
  echo "  \`ember transform m.ember test.npy --threads T\` ($runs runs each; median). Wall time includes"
  echo "  reading the model and the data and scoring the accuracy; points/s is ember's own count for"
  echo "  the transform alone."
  echo "  References: openTSNE 1.0.4 \`TSNE(n_jobs=2).fit(train).transform(test)\` with n_jobs set to T and"
  echo "  umap-learn 0.5.12 \`UMAP(n_jobs=2).fit(train).transform(test)\` with numba on T threads"
  echo "  (one timed run each, in-process, after a warm-up for umap-learn's JIT)."
  echo "- Accuracy: each placed test digit classified by majority of its 10 nearest training digits"
  echo "  in the embedding."
  echo
  echo "| method | implementation | threads | median wall s | transform points/s | 10-NN accuracy |"
  echo "|---|---|---|---|---|---|"
} > "$work/table"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for method in tsne umap; do
  t0=$(date +%s.%N)
  "$ember" "$method" "$work/train.npy" -o "$work/fit.npy" --save-model "$work/$method.ember" -q
  fit=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b-a}')
  echo "ember $method fit with model: ${fit} s, model $(du -m "$work/$method.ember" | cut -f1) MB" >> "$work/notes"
  for threads in 1 2; do
    : > "$work/walls"; : > "$work/rates"
    for _ in $(seq "$runs"); do
      /usr/bin/time -f "%e" -o "$work/time" "$ember" transform "$work/$method.ember" "$work/test.npy" \
        -o "$work/placed.npy" --threads "$threads" --labels "$work/test_labels.txt" \
        --reference-labels "$work/train_labels.txt" > "$work/acc" 2> "$work/log"
      cat "$work/time" >> "$work/walls"
      sed -n 's/.*s (\([0-9]*\) points\/s).*/\1/p' "$work/log" >> "$work/rates"
    done
    printf '| %s | ember | %s | %s | %s | %s |\n' "$method" "$threads" "$(median < "$work/walls")" \
      "$(median < "$work/rates")" "$(awk '{print $NF}' "$work/acc")" >> "$work/table"
  done
  ref=openTSNE; [ "$method" = umap ] && ref=umap-learn
  "$venv/bin/python" "$work/reference.py" "$ref" "$work" > "$work/ref.out" 2> "$work/ref.log" ||
    { cat "$work/ref.log" >&2; exit 1; }
  while read -r threads secs rate acc; do
      printf '| %s | %s | %s | %s | %s | %s |\n' "$method" "$ref" "$threads" "$secs" "$rate" "$acc"
  done < "$work/ref.out" >> "$work/table"
done
mkdir -p bench/results
{
  cat "$work/table"
  echo
  sed 's/^/- /' "$work/notes"
} > bench/results/transform.md
cat bench/results/transform.md
