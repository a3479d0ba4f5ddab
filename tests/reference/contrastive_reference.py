#!/usr/bin/env python3
"""Float64 reference for ember's contrastive kernels (core/src/contrastive.rs).

Writes the fixtures in tests/fixtures/contrastive/: inputs (as the exact float32 values both
sides use), the loss, and the gradients. Independent of the Rust code: dense numpy matrices,
and every analytic gradient is itself checked against central finite differences in float64
before a fixture is written. Run from the repository root:

    python3 tests/reference/contrastive_reference.py

Fixture format (text, whitespace separated): lines `param NAME VALUE`, and arrays as
`array NAME ROWS COLS` followed by ROWS*COLS values, row-major.
"""
import os
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "contrastive")


def logits(A, B, sim):
    kind, par = sim
    if kind == "cosine":
        An = A / np.linalg.norm(A, axis=1, keepdims=True)
        Bn = B / np.linalg.norm(B, axis=1, keepdims=True)
        return An @ Bn.T / par
    D2 = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
    if kind == "studentt":
        return -par * np.log1p(D2 / par)
    if kind == "gaussian":
        return -par * D2
    raise ValueError(kind)


def loss_fn(A, B, sim, P, same, joint, alpha, entropy, scale):
    """The loss of ember's engine, written directly on dense matrices."""
    m, n = P.shape
    L = logits(A, B, sim)
    cand = np.ones((m, n))
    if same:
        np.fill_diagonal(cand, 0.0)
    U = cand / cand.sum() if joint else cand / cand.sum(axis=1, keepdims=True)
    Pt = (1 - alpha) * P + alpha * U
    Lm = np.where(cand > 0, L, -np.inf)
    if joint:
        logZ = np.log(np.exp(Lm - Lm.max()).sum()) + Lm.max()
        logQ = Lm - logZ
        rows = np.ones(m, dtype=bool)
        w = scale
    else:
        mx = Lm.max(axis=1, keepdims=True)
        logQ = Lm - (np.log(np.exp(Lm - mx).sum(axis=1, keepdims=True)) + mx)
        rows = Pt.sum(axis=1) > 0
        w = scale / rows.sum()
    safe_logQ = np.where(cand > 0, logQ, 0.0)
    ce = -(Pt * safe_logQ).sum(axis=1)
    if entropy:
        ce += np.where(Pt > 0, Pt * np.log(np.where(Pt > 0, Pt, 1.0)), 0.0).sum(axis=1)
    if joint:
        return w * ce.sum()
    return w * ce[rows].sum()


def grads(A, B, sim, P, same, joint, alpha, entropy, scale):
    """Analytic gradient: dL/dlogit = w (sum(p) q - p), then through the similarity."""
    m, n = P.shape
    L = logits(A, B, sim)
    cand = np.ones((m, n))
    if same:
        np.fill_diagonal(cand, 0.0)
    U = cand / cand.sum() if joint else cand / cand.sum(axis=1, keepdims=True)
    Pt = (1 - alpha) * P + alpha * U
    Lm = np.where(cand > 0, L, -np.inf)
    if joint:
        Q = np.exp(Lm - Lm.max())
        Q /= Q.sum()
        G = scale * (Pt.sum() * Q - Pt)
    else:
        Q = np.exp(Lm - Lm.max(axis=1, keepdims=True))
        Q /= Q.sum(axis=1, keepdims=True)
        rows = Pt.sum(axis=1) > 0
        w = scale / rows.sum()
        G = w * (Pt.sum(axis=1, keepdims=True) * Q - Pt) * rows[:, None]
    kind, par = sim
    if kind == "cosine":
        na = np.linalg.norm(A, axis=1, keepdims=True)
        nb = np.linalg.norm(B, axis=1, keepdims=True)
        An, Bn = A / na, B / nb
        dAn, dBn = G @ Bn / par, G.T @ An / par
        gA = (dAn - (dAn * An).sum(1, keepdims=True) * An) / na
        gB = (dBn - (dBn * Bn).sum(1, keepdims=True) * Bn) / nb
    else:
        D2 = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
        dl = -1.0 / (1.0 + D2 / par) if kind == "studentt" else -par * np.ones_like(D2)
        H = G * dl
        gA = 2 * (A * H.sum(1, keepdims=True) - H @ B)
        gB = 2 * (B * H.sum(0)[:, None] - H.T @ A)
    return gA, gB


def check_fd(f, X, g, what):
    """Central differences with a step relative to each row's norm; error per row."""
    fd = np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        h = 1e-6 * np.linalg.norm(X[idx[0]])
        Xp, Xm = X.copy(), X.copy()
        Xp[idx] += h
        Xm[idx] -= h
        fd[idx] = (f(Xp) - f(Xm)) / (2 * h)
    scale = np.maximum(np.linalg.norm(g, axis=1), 1e-12 * np.abs(g).max())
    err = (np.linalg.norm(fd - g, axis=1) / scale).max()
    assert err < 1e-5, f"{what}: finite differences disagree, {err:e}"


def case(name, A, B, sim, P, same=True, joint=False, alpha=0.0, entropy=False, scale=1.0,
         extra=None, params=None, symmetric=False):
    """symmetric: the loss also runs from B's rows to A's (CLIP), each direction scaled."""
    A = A.astype(np.float32).astype(np.float64)
    B = A if same else B.astype(np.float32).astype(np.float64)
    args = (sim, P, same, joint, alpha, entropy, scale)
    base_loss, base_grads = loss_fn, grads
    if symmetric:
        def loss_fn_s(A, B, *a):
            return base_loss(A, B, *a) + base_loss(B, A, *a)

        def grads_s(A, B, *a):
            gA1, gB1 = base_grads(A, B, *a)
            gB2, gA2 = base_grads(B, A, *a)
            return gA1 + gA2, gB1 + gB2
        loss_f, grads_f = loss_fn_s, grads_s
    else:
        loss_f, grads_f = base_loss, base_grads
    loss = loss_f(A, B, *args)
    gA, gB = grads_f(A, B, *args)
    if same:
        g = gA + gB
        check_fd(lambda X: loss_f(X, X, *args), A, g, name)
        arrays = [("z", A), ("loss", np.array([[loss]])), ("grad", g)]
    else:
        check_fd(lambda X: loss_f(X, B, *args), A, gA, name + " (a)")
        check_fd(lambda X: loss_f(A, X, *args), B, gB, name + " (b)")
        arrays = [("a", A), ("b", B), ("loss", np.array([[loss]])), ("grad_a", gA),
                  ("grad_b", gB)]
    arrays += extra or []
    with open(os.path.join(OUT, name + ".txt"), "w") as f:
        f.write(f"# {name}: written by tests/reference/contrastive_reference.py\n")
        for k, v in (params or {}).items():
            f.write(f"param {k} {v!r}\n")
        for k, v in arrays:
            v = np.atleast_2d(v)
            f.write(f"array {k} {v.shape[0]} {v.shape[1]}\n")
            for row in v:
                f.write(" ".join(repr(float(x)) for x in row) + "\n")
    print(f"{name}: loss {loss:.6f}")


def pairs(m):
    P = np.zeros((m, m))
    for i in range(m):
        P[i, i ^ 1] = 1.0
    return P


def same_label(labels):
    m = len(labels)
    P = np.array([[1.0 if (i != j and labels[i] == labels[j]) else 0.0 for j in range(m)]
                  for i in range(m)])
    s = P.sum(1, keepdims=True)
    return np.divide(P, s, out=np.zeros_like(P), where=s > 0)


def perplexity_p(X, perplexity):
    """Conditional Gaussian affinities with the given perplexity, by bisection on beta."""
    m = len(X)
    D2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    P = np.zeros((m, m))
    target = np.log(perplexity)
    for i in range(m):
        d = np.delete(D2[i], i)
        d = d - d.min()
        lo, hi = 0.0, np.inf
        beta = 1.0
        for _ in range(200):
            p = np.exp(-beta * d)
            p /= p.sum()
            H = -(p * np.log(np.where(p > 0, p, 1.0))).sum()
            if abs(H - target) < 1e-12:
                break
            if H > target:
                lo = beta
                beta = beta * 2 if hi == np.inf else (lo + hi) / 2
            else:
                hi = beta
                beta = (lo + hi) / 2
        P[i, np.arange(m) != i] = p
    return P


def knn_uniform(X, k):
    m = len(X)
    D2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D2, np.inf)
    P = np.zeros((m, m))
    for i in range(m):
        P[i, np.argsort(D2[i], kind="stable")[:k]] = 1.0 / k
    return P


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(2026)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)

    z = rng.normal(size=(16, 8))
    case("infonce_cosine", z, None, ("cosine", 0.1), pairs(16), params={"tau": 0.1})

    z = rng.normal(size=(16, 8))
    z *= (10.0 ** rng.uniform(-6, 4, size=(16, 1)))
    case("infonce_cosine_cold_wide_norms", z, None, ("cosine", 0.01), pairs(16),
         params={"tau": 0.01})

    z = rng.normal(size=(16, 4)) * 2
    case("infonce_cauchy", z, None, ("studentt", 1.0), pairs(16), params={"dof": 1.0})

    a, b = rng.normal(size=(10, 6)), rng.normal(size=(10, 6))
    case("clip", a, b, ("cosine", 0.07), np.eye(10), same=False, scale=0.5, symmetric=True,
         params={"tau": 0.07})

    z = rng.normal(size=(20, 8))
    labels = np.array([0, 1, 2, 3] * 4 + [0, 1, 2, 9])  # label 9 occurs once: that row has no positive
    case("supcon", z, None, ("cosine", 0.1), same_label(labels), params={"tau": 0.1},
         extra=[("labels", labels[None, :].astype(np.float64))])

    x = f32(rng.normal(size=(24, 5)))
    y = rng.normal(size=(24, 2))
    P = perplexity_p(x, 5.0)
    case("icon_perplexity_studentt", y, None, ("studentt", 1.0), P, alpha=0.1, entropy=True,
         params={"dof": 1.0, "alpha": 0.1, "perplexity": 5.0},
         extra=[("x", x), ("p", P)])

    x = f32(rng.normal(size=(18, 4)))
    y = rng.normal(size=(18, 3))
    Pc = knn_uniform(x, 3)
    Pj = (Pc + Pc.T) / (2 * len(x))
    case("icon_knn_gaussian_joint", y, None, ("gaussian", 0.5), Pj, joint=True, entropy=True,
         params={"gamma": 0.5, "k": 3}, extra=[("x", x), ("p", Pj)])

    z = rng.normal(size=(12, 5))
    case("icon_pairs_cosine_debiased", z, None, ("cosine", 0.5), pairs(12), alpha=0.2,
         entropy=True, params={"tau": 0.5, "alpha": 0.2})


if __name__ == "__main__":
    main()
