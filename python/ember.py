"""ember from Python through ctypes: no compiled extension, only libember.so.

    import ember
    y = ember.tsne(x)                       # x: rows of floats (numpy array, list of lists, ...)
    y = ember.umap(x, neighbors=15)
    ys = ember.ne_spectrum(x, [0, 0.5, 1])  # one embedding per spectrum value
    loss, grad = ember.infonce(z, tau=0.1)
    model = ember.Model.fit(x, "tsne")      # or "umap"; model.embedding is the fit's map
    model.save("map.ember"); model = ember.Model.load("map.ember")
    y_new = model.transform(x_new)          # place new points; the map does not move

Results are numpy arrays when numpy is installed, else lists of rows. The library is found
through EMBER_LIB (a path), else next to this file's repository build (target/release), else
the system's loader path. Errors raise ember.EmberError with the library's message.
"""
import ctypes
import ctypes.util
import os

try:
    import numpy as _np
except ImportError:  # pragma: no cover - exercised where numpy is absent
    _np = None


class EmberError(RuntimeError):
    """A call returned a status other than EMBER_OK."""


def _load():
    candidates = []
    if os.environ.get("EMBER_LIB"):
        candidates.append(os.environ["EMBER_LIB"])
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(here, "..", "target", "release", "libember.so"))
    found = ctypes.util.find_library("ember")
    if found:
        candidates.append(found)
    for c in candidates:
        if os.path.exists(c) or c == found:
            return ctypes.CDLL(c)
    raise OSError("libember not found: set EMBER_LIB or build with cargo build --release -p ember-capi")


_lib = _load()
_f32p = ctypes.POINTER(ctypes.c_float)
_progress = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_size_t,
                             ctypes.c_size_t, ctypes.c_double)


class TsneParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("dims", ctypes.c_uint32),
                ("perplexity", ctypes.c_float), ("early_iters", ctypes.c_uint32),
                ("iters", ctypes.c_uint32), ("exaggeration", ctypes.c_float),
                ("learning_rate", ctypes.c_float), ("momentum", ctypes.c_float),
                ("dof", ctypes.c_float), ("theta", ctypes.c_float), ("metric", ctypes.c_uint32),
                ("repulsion", ctypes.c_uint32), ("init", ctypes.c_uint32),
                ("threads", ctypes.c_uint32), ("knn", ctypes.c_uint32), ("pca", ctypes.c_uint32),
                ("seed", ctypes.c_uint64)]


class UmapParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("dims", ctypes.c_uint32),
                ("neighbors", ctypes.c_uint32), ("min_dist", ctypes.c_float),
                ("spread", ctypes.c_float), ("epochs", ctypes.c_uint32),
                ("negatives", ctypes.c_uint32), ("learning_rate", ctypes.c_float),
                ("metric", ctypes.c_uint32), ("knn", ctypes.c_uint32), ("init", ctypes.c_uint32),
                ("threads", ctypes.c_uint32), ("seed", ctypes.c_uint64)]


class NeParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("dims", ctypes.c_uint32),
                ("neighbors", ctypes.c_uint32), ("loss", ctypes.c_uint32),
                ("graph", ctypes.c_uint32), ("negatives", ctypes.c_uint32),
                ("s", ctypes.c_double), ("zbar", ctypes.c_double), ("epochs", ctypes.c_uint32),
                ("early_epochs", ctypes.c_int32), ("learning_rate", ctypes.c_float),
                ("min_dist", ctypes.c_float), ("spread", ctypes.c_float),
                ("metric", ctypes.c_uint32), ("knn", ctypes.c_uint32), ("init", ctypes.c_uint32),
                ("threads", ctypes.c_uint32), ("seed", ctypes.c_uint64)]


class Similarity(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint32), ("param", ctypes.c_float)]


_lib.ember_tsne_params_default.restype = TsneParams
_lib.ember_umap_params_default.restype = UmapParams
_lib.ember_ne_params_default.restype = NeParams
_lib.ember_last_error_message.restype = ctypes.c_char_p
_lib.ember_status_message.restype = ctypes.c_char_p
_lib.ember_version.restype = ctypes.c_char_p
_embed_args = [_f32p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t,
               ctypes.c_void_p, _f32p, _progress, ctypes.c_void_p]
for _name in ("ember_tsne", "ember_umap", "ember_ne"):
    getattr(_lib, _name).argtypes = _embed_args
    getattr(_lib, _name).restype = ctypes.c_int
_lib.ember_ne_spectrum.argtypes = [_f32p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t,
                                   ctypes.c_size_t, ctypes.c_void_p,
                                   ctypes.POINTER(ctypes.c_double), ctypes.c_size_t, _f32p,
                                   _progress, ctypes.c_void_p]
_lib.ember_ne_spectrum.restype = ctypes.c_int
_u32p = ctypes.POINTER(ctypes.c_uint32)
_lib.ember_knn.argtypes = [_f32p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t,
                           ctypes.c_size_t, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint32,
                           ctypes.c_uint32, ctypes.c_uint64, _u32p, _f32p, _progress,
                           ctypes.c_void_p]
_lib.ember_knn.restype = ctypes.c_int
_lib.ember_knn_accuracy.argtypes = [_f32p, ctypes.c_size_t, ctypes.c_size_t, _u32p,
                                    ctypes.c_size_t, ctypes.c_double, ctypes.c_uint64,
                                    ctypes.c_uint32, ctypes.POINTER(ctypes.c_double)]
_lib.ember_knn_accuracy.restype = ctypes.c_int
_lib.ember_infonce.argtypes = [_f32p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t,
                               Similarity, ctypes.c_uint32, ctypes.POINTER(ctypes.c_double), _f32p]
_lib.ember_infonce.restype = ctypes.c_int

LOSSES = {"neg": 0, "nce": 1, "infonce": 2, "umap": 3}
METRICS = {"euclidean": 0, "cosine": 1}
KNN_METHODS = {"auto": 0, "exact": 1, "approx": 2}


def version():
    return _lib.ember_version().decode()


def _matrix(x):
    """Rows of floats as a contiguous float32 buffer, with its shape."""
    if _np is not None:
        a = _np.ascontiguousarray(_np.asarray(x, dtype=_np.float32))
        if a.ndim != 2:
            raise ValueError(f"expected a 2-D array, got shape {a.shape}")
        return a, a.shape[0], a.shape[1]
    rows = [list(map(float, r)) for r in x]
    n, d = len(rows), (len(rows[0]) if rows else 0)
    if any(len(r) != d for r in rows):
        raise ValueError("rows of different lengths")
    buf = (ctypes.c_float * (n * d))(*[v for r in rows for v in r])
    return buf, n, d


def _ptr(buf):
    if _np is not None and isinstance(buf, _np.ndarray):
        return buf.ctypes.data_as(_f32p)
    return ctypes.cast(buf, _f32p)


def _out(n, d):
    if _np is not None:
        return _np.zeros((n, d), dtype=_np.float32)
    return (ctypes.c_float * (n * d))()


def _result(buf, n, d):
    if _np is not None:
        return buf
    return [list(buf[i * d:(i + 1) * d]) for i in range(n)]


def _check(status):
    if status != 0:
        detail = _lib.ember_last_error_message().decode()
        raise EmberError(f"{_lib.ember_status_message(status).decode()}: {detail}")


def _embed(fn, x, params, dims):
    buf, n, d = _matrix(x)
    y = _out(n, dims)
    _check(fn(_ptr(buf), n, d, d, 1, ctypes.byref(params), _ptr(y), _progress(0), None))
    return _result(y, n, dims)


def tsne(x, dims=2, perplexity=30.0, seed=42, threads=0, metric="euclidean", **fields):
    p = _lib.ember_tsne_params_default()
    p.dims, p.perplexity, p.seed, p.threads, p.metric = dims, perplexity, seed, threads, METRICS[metric]
    for k, v in fields.items():
        setattr(p, k, v)
    return _embed(_lib.ember_tsne, x, p, dims)


def umap(x, dims=2, neighbors=15, min_dist=0.1, seed=42, threads=0, metric="euclidean", **fields):
    p = _lib.ember_umap_params_default()
    p.dims, p.neighbors, p.min_dist, p.seed, p.threads = dims, neighbors, min_dist, seed, threads
    p.metric = METRICS[metric]
    for k, v in fields.items():
        setattr(p, k, v)
    return _embed(_lib.ember_umap, x, p, dims)


def ne_spectrum(x, s_values, loss="neg", dims=2, seed=42, threads=0, **fields):
    p = _lib.ember_ne_params_default()
    p.dims, p.loss, p.seed, p.threads = dims, LOSSES[loss], seed, threads
    for k, v in fields.items():
        setattr(p, k, v)
    buf, n, d = _matrix(x)
    s = (ctypes.c_double * len(s_values))(*s_values)
    y = _out(len(s_values) * n, dims)
    _check(_lib.ember_ne_spectrum(_ptr(buf), n, d, d, 1, ctypes.byref(p), s, len(s_values),
                                  _ptr(y), _progress(0), None))
    if _np is not None:
        return [y[i * n:(i + 1) * n] for i in range(len(s_values))]
    flat = _result(y, len(s_values) * n, dims)
    return [flat[i * n:(i + 1) * n] for i in range(len(s_values))]


def infonce(z, tau=0.1, threads=0):
    """InfoNCE / NT-Xent over rows 2k, 2k+1 as positives: (loss, gradient)."""
    buf, n, d = _matrix(z)
    g = _out(n, d)
    loss = ctypes.c_double()
    _check(_lib.ember_infonce(_ptr(buf), n, d, d, Similarity(0, tau), threads,
                              ctypes.byref(loss), _ptr(g)))
    return loss.value, _result(g, n, d)


def knn(x, k, metric="euclidean", method="auto", threads=0, seed=42):
    """The k nearest neighbours of every row among the others: (indices, distances), n x k,
    0-based, ascending; distances are Euclidean or 1 - cosine similarity."""
    buf, n, d = _matrix(x)
    idx = (ctypes.c_uint32 * (n * k))()
    dist = (ctypes.c_float * (n * k))()
    _check(_lib.ember_knn(_ptr(buf), n, d, d, 1, k, METRICS[metric], KNN_METHODS[method],
                          threads, seed, idx, dist, _progress(0), None))
    if _np is not None:
        return (_np.frombuffer(idx, dtype=_np.uint32).reshape(n, k).copy(),
                _np.frombuffer(dist, dtype=_np.float32).reshape(n, k).copy())
    return ([list(idx[i * k:(i + 1) * k]) for i in range(n)],
            [list(dist[i * k:(i + 1) * k]) for i in range(n)])


def knn_accuracy(y, labels, k=10, test_fraction=0.1, seed=42, threads=0):
    """k-NN classification accuracy of an embedding: a seeded random test_fraction of the
    rows is classified by majority vote of its k nearest other rows."""
    buf, n, d = _matrix(y)
    lab = (ctypes.c_uint32 * n)(*[int(v) for v in labels])
    out = ctypes.c_double()
    _check(_lib.ember_knn_accuracy(_ptr(buf), n, d, lab, k, test_fraction, seed, threads,
                                   ctypes.byref(out)))
    return out.value


class TransformParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("perplexity", ctypes.c_float),
                ("neighbors", ctypes.c_uint32), ("iters", ctypes.c_uint32),
                ("learning_rate", ctypes.c_float), ("exaggeration", ctypes.c_float),
                ("threads", ctypes.c_uint32)]


_handle = ctypes.c_void_p
_lib.ember_transform_params_default.restype = TransformParams
_lib.ember_model_fit.argtypes = [_f32p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t,
                                 ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p, _progress,
                                 ctypes.c_void_p, ctypes.POINTER(_handle)]
_lib.ember_model_fit.restype = ctypes.c_int
_lib.ember_model_info.argtypes = [_handle, _u32p, ctypes.POINTER(ctypes.c_size_t),
                                  ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
_lib.ember_model_info.restype = ctypes.c_int
_lib.ember_model_embedding.argtypes = [_handle, _f32p]
_lib.ember_model_embedding.restype = ctypes.c_int
_lib.ember_model_transform.argtypes = [_handle, _f32p, ctypes.c_size_t, ctypes.c_size_t,
                                       ctypes.c_size_t, ctypes.POINTER(TransformParams), _f32p,
                                       _progress, ctypes.c_void_p]
_lib.ember_model_transform.restype = ctypes.c_int
_lib.ember_model_to_bytes.argtypes = [_handle, ctypes.c_char_p, ctypes.c_size_t,
                                      ctypes.POINTER(ctypes.c_size_t)]
_lib.ember_model_to_bytes.restype = ctypes.c_int
_lib.ember_model_from_bytes.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_handle)]
_lib.ember_model_from_bytes.restype = ctypes.c_int
_lib.ember_model_save.argtypes = [_handle, ctypes.c_char_p]
_lib.ember_model_save.restype = ctypes.c_int
_lib.ember_model_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(_handle)]
_lib.ember_model_load.restype = ctypes.c_int
_lib.ember_model_free.argtypes = [ctypes.POINTER(_handle)]
_lib.ember_model_free.restype = None

METHODS = {"tsne": 1, "umap": 2}


class Model:
    """A fitted t-SNE or UMAP map that places new points without moving (ember_model_*).
    One model may transform from many threads at once; pickling ships its bytes."""

    def __init__(self, handle):
        self._h = handle

    @classmethod
    def fit(cls, x, method="tsne", seed=42, threads=0, **fields):
        if method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        p = (_lib.ember_tsne_params_default if method == "tsne"
             else _lib.ember_umap_params_default)()
        p.seed, p.threads = seed, threads
        for k, v in fields.items():
            setattr(p, k, v)
        buf, n, d = _matrix(x)
        h = _handle()
        _check(_lib.ember_model_fit(_ptr(buf), n, d, d, 1, METHODS[method], ctypes.byref(p),
                                    _progress(0), None, ctypes.byref(h)))
        return cls(h)

    @classmethod
    def load(cls, path):
        h = _handle()
        _check(_lib.ember_model_load(os.fsencode(path), ctypes.byref(h)))
        return cls(h)

    @classmethod
    def from_bytes(cls, data):
        h = _handle()
        _check(_lib.ember_model_from_bytes(bytes(data), len(data), ctypes.byref(h)))
        return cls(h)

    def to_bytes(self):
        n = ctypes.c_size_t()
        _check(_lib.ember_model_to_bytes(self._h, None, 0, ctypes.byref(n)))
        buf = ctypes.create_string_buffer(n.value)
        _check(_lib.ember_model_to_bytes(self._h, buf, n.value, ctypes.byref(n)))
        return buf.raw[:n.value]

    def save(self, path):
        _check(_lib.ember_model_save(self._h, os.fsencode(path)))

    def info(self):
        """(method, reference points, input columns, output dimensions)."""
        m, n, d, k = ctypes.c_uint32(), ctypes.c_size_t(), ctypes.c_size_t(), ctypes.c_size_t()
        _check(_lib.ember_model_info(self._h, ctypes.byref(m), ctypes.byref(n), ctypes.byref(d),
                                     ctypes.byref(k)))
        name = {v: k for k, v in METHODS.items()}[m.value]
        return name, n.value, d.value, k.value

    @property
    def embedding(self):
        _, n, _, dims = self.info()
        y = _out(n, dims)
        _check(_lib.ember_model_embedding(self._h, _ptr(y)))
        return _result(y, n, dims)

    def transform(self, x, threads=0, **fields):
        """Places the rows of x; each row's result depends on that row alone."""
        p = _lib.ember_transform_params_default()
        p.threads = threads
        for k, v in fields.items():
            setattr(p, k, v)
        _, _, _, dims = self.info()
        buf, n, d = _matrix(x)
        y = _out(n, dims)
        _check(_lib.ember_model_transform(self._h, _ptr(buf), n, d, 1, ctypes.byref(p), _ptr(y),
                                          _progress(0), None))
        return _result(y, n, dims)

    def close(self):
        if self._h is not None:
            _lib.ember_model_free(ctypes.byref(self._h))
            self._h = None

    def __del__(self):
        self.close()

    def __reduce__(self):
        return (Model.from_bytes, (self.to_bytes(),))
