"""Fit a map on a sample on one machine, then place the rest in parallel with Dask.

    python3 examples/dask_transform.py [--method umap|tsne] [--sample 3000] [--workers 2]
                                       [--check] [IMAGES.idx[.gz] LABELS.idx[.gz]]

The pattern cuML, spark-rapids-ml and openTSNE users know: the optimisation of the fitted
sample stays on one machine; the saved model (a few bytes per reference value) is shipped to
every worker once, and each worker places its partitions with `ember_model_transform`. Each
point's result depends on that point alone, so the partitioning changes nothing: with
--check the script compares the cluster's result with a single-process transform, bit for bit.

Uses only ctypes (through python/ember.py, which binds libember.so) and Dask. Without file
arguments it reads the bundled MNIST test set from data/.
"""
import argparse
import functools
import gzip
import os
import sys
import time

import dask
import dask.array as da
import numpy as np
from dask.distributed import Client, LocalCluster

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import ember  # noqa: E402  (ctypes binding of libember)


def read_idx(path):
    """An IDX file (optionally gzip) as a numpy array."""
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@functools.lru_cache(maxsize=4)
def _model(model_bytes):
    # One load per worker process and model, however many partitions it places.
    return ember.Model.from_bytes(model_bytes)


def read_rows(images, start, stop):
    """Runs on a worker: rows start..stop of the IDX file, read where they are placed."""
    return read_idx(images).reshape(-1, 28 * 28)[start:stop].astype(np.float32)


def place_block(block, model_bytes):
    """Runs on a worker: the partition's rows placed into the fitted map."""
    return np.asarray(_model(model_bytes).transform(block, threads=1), dtype=np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="IMAGES LABELS (IDX); default: the bundled set")
    ap.add_argument("--method", choices=["umap", "tsne"], default="umap")
    ap.add_argument("--sample", type=int, default=3000, help="points the map is fitted on")
    ap.add_argument("--chunk", type=int, default=1000, help="rows per Dask partition")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--check", action="store_true",
                    help="compare with a single-process transform (must be identical)")
    ap.add_argument("-o", "--output", help="write the full embedding (.npy)")
    args = ap.parse_args()
    if args.files:
        images, labels = args.files
    else:
        images = os.path.join(HERE, "..", "data", "t10k-images.idx3-ubyte.gz")
        labels = os.path.join(HERE, "..", "data", "t10k-labels.idx1-ubyte.gz")
    x = read_idx(images).reshape(-1, 28 * 28).astype(np.float32)
    y = read_idx(labels).astype(np.int64)
    sample, rest = x[:args.sample], x[args.sample:]

    # 1. Fit on the sample, on this machine.
    t0 = time.perf_counter()
    model = ember.Model.fit(sample, args.method, threads=0)
    model_bytes = model.to_bytes()
    print(f"fitted {args.method} on {len(sample)} points in {time.perf_counter() - t0:.1f} s; "
          f"model {len(model_bytes) / 1e6:.1f} MB")

    # 2. Ship the model to the workers once and place the partitions there.
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        shipped = client.scatter(model_bytes, broadcast=True)
        starts = range(args.sample, len(x), args.chunk)
        parts = da.concatenate([
            da.from_delayed(dask.delayed(read_rows)(images, s, min(s + args.chunk, len(x))),
                            shape=(min(s + args.chunk, len(x)) - s, x.shape[1]),
                            dtype=np.float32)
            for s in starts])
        placed = parts.map_blocks(place_block, shipped, dtype=np.float32,
                                  chunks=(parts.chunks[0], (2,)))
        t0 = time.perf_counter()
        result = placed.compute()
        secs = time.perf_counter() - t0
    print(f"placed {len(rest)} points on {args.workers} workers in {secs:.1f} s "
          f"({len(rest) / secs:.0f} points/s)")

    # 3. Quality: each placed point classified by its 10 nearest fitted points.
    ref = np.asarray(model.embedding)
    d2 = ((result[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
    near = np.argsort(d2, axis=1, kind="stable")[:, :10]
    votes = np.array([np.bincount(y[:args.sample][n], minlength=10).argmax() for n in near])
    print(f"10-NN accuracy of the placed points among the fitted ones: "
          f"{(votes == y[args.sample:]).mean():.4f}")

    if args.check:
        single = np.asarray(model.transform(rest, threads=0), dtype=np.float32)
        same = np.array_equal(single.view(np.uint32), result.view(np.uint32))
        print("identical to a single-process transform" if same
              else "DIFFERENT from a single-process transform")
        if not same:
            sys.exit(1)
    if args.output:
        np.save(args.output, np.concatenate([ref, result]))


if __name__ == "__main__":
    main()
