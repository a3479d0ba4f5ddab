#!/usr/bin/env python3
"""InfoNCE forward + backward, ember (through the C library, ctypes) against numpy float32
on the same shapes in the same run. Usage (from the repository root, after
`cargo build --release -p ember-capi`):

    python3 bench/infonce.py [B] [D] [RUNS]      # defaults 4096 128 7

Prints a Markdown section (also written to bench/results/infonce.md).
"""
import ctypes, os, platform, statistics, subprocess, sys, time
import numpy as np

B = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
D = int(sys.argv[2]) if len(sys.argv) > 2 else 128
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 7
TAU = 0.1
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
lib = ctypes.CDLL(os.path.join(root, "target", "release", "libember.so"))


class Similarity(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint32), ("param", ctypes.c_float)]


lib.ember_infonce.restype = ctypes.c_int
lib.ember_infonce.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_size_t,
                              ctypes.c_size_t, Similarity, ctypes.c_uint32,
                              ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_float)]


def numpy_infonce(z, tau):
    """The same loss and gradient in numpy float32: two matmuls for the similarities' use,
    one for the forward."""
    m = z.shape[0]
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    zn = z / norm
    s = (zn @ zn.T) / tau
    np.fill_diagonal(s, -np.inf)
    mx = s.max(axis=1, keepdims=True)
    e = np.exp(s - mx)
    sums = e.sum(axis=1, keepdims=True)
    lse = np.log(sums) + mx
    partner = np.arange(m) ^ 1
    loss = float((lse[:, 0] - s[np.arange(m), partner]).mean())
    g = e / sums
    g[np.arange(m), partner] -= 1.0
    g /= m
    dzn = (g @ zn + g.T @ zn) / tau
    grad = (dzn - (dzn * zn).sum(1, keepdims=True) * zn) / norm
    return loss, grad


def timed(f):
    times = []
    out = None
    for _ in range(RUNS):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, out


rng = np.random.default_rng(0)
z = rng.normal(size=(2 * (B // 2), D)).astype(np.float32)
m = z.shape[0]
grad = np.zeros_like(z)
loss = ctypes.c_double()
zp = z.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
gp = grad.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def ember():
    st = lib.ember_infonce(zp, m, D, D, Similarity(0, TAU), 0, ctypes.byref(loss), gp)
    assert st == 0, st
    return loss.value


t_np, all_np, (l_np, g_np) = timed(lambda: numpy_infonce(z, TAU))
t_em, all_em, l_em = timed(ember)
rel_loss = abs(l_em - l_np) / abs(l_np)
rel_grad = float(np.linalg.norm(grad - g_np) / np.linalg.norm(g_np))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
blas = "unknown"
try:
    cfg = np.show_config(mode="dicts")
    blas = cfg["Build Dependencies"]["blas"]["name"] + " " + str(cfg["Build Dependencies"]["blas"].get("version", ""))
except Exception:
    pass
text = f"""### InfoNCE forward + backward, {m} × {D}, τ = {TAU}

- Date: {time.strftime('%Y-%m-%d')}. Machine: {os.cpu_count()} cores, {cpu}.
- Command: `python3 bench/infonce.py {B} {D} {RUNS}` (ember through `libember.so` and ctypes,
  all cores; numpy {np.__version__} float32 with {blas}, its default threads). Median of {RUNS}.

| | median s | all runs s |
|---|---|---|
| ember `ember_infonce` | {t_em:.4f} | {' '.join(f'{t:.4f}' for t in all_em)} |
| numpy float32 | {t_np:.4f} | {' '.join(f'{t:.4f}' for t in all_np)} |

ember / numpy time ratio: {t_em / t_np:.2f}×. Agreement: loss {rel_loss:.1e} relative,
gradient {rel_grad:.1e} relative (norm); numpy's float32 is the less accurate of the two.
"""
print(text)
os.makedirs(os.path.join(root, "bench", "results"), exist_ok=True)
open(os.path.join(root, "bench", "results", "infonce.md"), "w").write(text)
