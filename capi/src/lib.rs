//! The C ABI of ember. Every export catches panics, checks pointers and lengths, and
//! returns an `ember_status`; results go to caller-provided buffers.
#![allow(non_camel_case_types)]

use ember_core::affinity::CsrRef;
use ember_core::contrastive::{self, Neighbourhood, Normalisation, Similarity, Targets};
use ember_core::knn::Metric;
use ember_core::ne::{NeGraph, NeLoss, NeParams, SgdSummary};
use ember_core::threads::Threads;
use ember_core::tsne::{Init, KnnMethod, Repulsion, TsneParams};
use ember_core::umap::{InitUsed, UmapInit, UmapParams};
use ember_core::{Control, Error, MatRef, Observer, Progress};
use std::cell::RefCell;
use std::ffi::{CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Result of every ember call. Values are stable and never reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ember_status {
    EMBER_OK = 0,
    /// A required pointer was NULL.
    EMBER_ERR_NULL_POINTER = 1,
    /// The data holds NaN or infinity.
    EMBER_ERR_NON_FINITE = 2,
    /// Shapes or strides are inconsistent (e.g. D = 0).
    EMBER_ERR_SHAPE = 3,
    /// A parameter is out of range.
    EMBER_ERR_INVALID_PARAMETER = 4,
    /// Perplexity must be at most N - 1.
    EMBER_ERR_PERPLEXITY_TOO_LARGE = 5,
    /// Fewer points than the method needs.
    EMBER_ERR_TOO_FEW_POINTS = 6,
    /// The progress callback asked to stop; the output holds the embedding so far.
    EMBER_CANCELLED = 7,
    /// Memory could not be allocated.
    EMBER_ERR_ALLOCATION = 8,
    /// The parameter struct's struct_size is not one this library knows.
    EMBER_ERR_STRUCT_SIZE = 9,
    /// An internal error (a bug in ember); no panic ever crosses this boundary.
    EMBER_ERR_INTERNAL = 10,
    /// A zero vector where cosine similarity needs a direction.
    EMBER_ERR_ZERO_VECTOR = 11,
    /// Bytes or a file that are not a valid ember model: corrupt, truncated, byte-swapped,
    /// or of another format version.
    EMBER_ERR_BAD_MODEL = 12,
    /// A file could not be opened, read or written.
    EMBER_ERR_IO = 13,
    /// Values so large (or so small) that squared distances overflow (or underflow) single
    /// precision; rescaling the data fixes it.
    EMBER_ERR_SCALE = 14,
}
use ember_status::*;

/// The version of this header; `ember_version()` gives the library's (a test checks that
/// both agree with Cargo.toml).
pub const EMBER_VERSION_MAJOR: u32 = 0;
pub const EMBER_VERSION_MINOR: u32 = 1;
pub const EMBER_VERSION_PATCH: u32 = 0;

pub const EMBER_METRIC_EUCLIDEAN: u32 = 0;
pub const EMBER_METRIC_COSINE: u32 = 1;
pub const EMBER_REPULSION_AUTO: u32 = 0;
pub const EMBER_REPULSION_EXACT: u32 = 1;
pub const EMBER_REPULSION_BARNES_HUT: u32 = 2;
pub const EMBER_REPULSION_FFT: u32 = 3;
pub const EMBER_KNN_AUTO: u32 = 0;
pub const EMBER_KNN_EXACT: u32 = 1;
pub const EMBER_KNN_APPROX: u32 = 2;
pub const EMBER_INIT_PCA: u32 = 0;
pub const EMBER_INIT_RANDOM: u32 = 1;
pub const EMBER_STAGE_KNN: u32 = 0;
pub const EMBER_STAGE_AFFINITIES: u32 = 1;
pub const EMBER_STAGE_INIT: u32 = 2;
pub const EMBER_STAGE_OPTIMIZE: u32 = 3;

/// t-SNE parameters. Fill with ember_tsne_params_default(), then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ember_tsne_params {
    /// sizeof(ember_tsne_params) as the caller compiled it; set by the default initialiser.
    pub struct_size: u32,
    /// Output dimensions (2).
    pub dims: u32,
    /// Perplexity (30); must be at most N - 1.
    pub perplexity: f32,
    /// Early-exaggeration iterations (250).
    pub early_iters: u32,
    /// Iterations after early exaggeration (500).
    pub iters: u32,
    /// Early exaggeration factor (12).
    pub exaggeration: f32,
    /// Learning rate; 0 = auto, max(N / exaggeration, 50).
    pub learning_rate: f32,
    /// Momentum (0.8).
    pub momentum: f32,
    /// Degrees of freedom of the output kernel (1 = Cauchy).
    pub dof: f32,
    /// Barnes-Hut opening angle (0.5).
    pub theta: f32,
    /// EMBER_METRIC_*.
    pub metric: u32,
    /// EMBER_REPULSION_*.
    pub repulsion: u32,
    /// EMBER_INIT_*.
    pub init: u32,
    /// Worker threads; 0 = all cores.
    pub threads: u32,
    /// EMBER_KNN_* (auto: exact up to 5000 points, else random-projection trees + NN-descent).
    pub knn: u32,
    /// Reduce the data to this many dominant dimensions first; 0 = off.
    pub pca: u32,
    /// Random seed (42).
    pub seed: u64,
}

/// Progress callback: stage is EMBER_STAGE_*, loss is KL(P||Q) or NaN when not computed at
/// this step. Return non-zero to cancel.
pub type ember_progress_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        stage: u32,
        done: usize,
        total: usize,
        loss: f64,
    ) -> i32,
>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn fail(status: ember_status, msg: &str) -> ember_status {
    set_last_error(msg);
    status
}

fn from_core(e: Error) -> ember_status {
    let s = match e {
        Error::NonFinite { .. } => EMBER_ERR_NON_FINITE,
        Error::TooFewPoints { .. } => EMBER_ERR_TOO_FEW_POINTS,
        Error::NoDimensions | Error::Shape { .. } => EMBER_ERR_SHAPE,
        Error::InvalidParameter { .. } => EMBER_ERR_INVALID_PARAMETER,
        Error::PerplexityTooLarge { .. } => EMBER_ERR_PERPLEXITY_TOO_LARGE,
        Error::BufferTooSmall { .. } => EMBER_ERR_INTERNAL,
        Error::Cancelled => EMBER_CANCELLED,
        Error::ZeroVector { .. } => EMBER_ERR_ZERO_VECTOR,
        Error::BadModel { .. } | Error::ModelVersion { .. } | Error::ModelLength { .. } => {
            EMBER_ERR_BAD_MODEL
        }
        Error::OutOfMemory { .. } => EMBER_ERR_ALLOCATION,
        Error::Scale { .. } => EMBER_ERR_SCALE,
    };
    fail(s, &e.to_string())
}

/// Runs `f` with a panic boundary.
fn guard(f: impl FnOnce() -> ember_status) -> ember_status {
    set_last_error("");
    set_warning("");
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        fail(
            EMBER_ERR_INTERNAL,
            "internal error (panic caught at the C boundary)",
        )
    })
}

/// The defaults users expect (openTSNE's recipe).
#[unsafe(no_mangle)]
pub extern "C" fn ember_tsne_params_default() -> ember_tsne_params {
    let d = TsneParams::default();
    ember_tsne_params {
        struct_size: size_of::<ember_tsne_params>() as u32,
        dims: d.dims as u32,
        perplexity: d.perplexity,
        early_iters: d.early_iters as u32,
        iters: d.iters as u32,
        exaggeration: d.exaggeration,
        learning_rate: d.learning_rate,
        momentum: d.momentum,
        dof: d.dof,
        theta: d.theta,
        metric: EMBER_METRIC_EUCLIDEAN,
        repulsion: EMBER_REPULSION_AUTO,
        init: EMBER_INIT_PCA,
        threads: 0,
        knn: EMBER_KNN_AUTO,
        pca: d.pca as u32,
        seed: d.seed,
    }
}

fn to_core(p: &ember_tsne_params) -> Result<TsneParams, ember_status> {
    let bad = |what: &str| fail(EMBER_ERR_INVALID_PARAMETER, what);
    Ok(TsneParams {
        dims: p.dims as usize,
        perplexity: p.perplexity,
        metric: match p.metric {
            EMBER_METRIC_EUCLIDEAN => Metric::SqEuclidean,
            EMBER_METRIC_COSINE => Metric::Cosine,
            _ => {
                return Err(bad(
                    "invalid metric: use EMBER_METRIC_EUCLIDEAN or EMBER_METRIC_COSINE",
                ));
            }
        },
        early_iters: p.early_iters as usize,
        iters: p.iters as usize,
        exaggeration: p.exaggeration,
        learning_rate: p.learning_rate,
        momentum: p.momentum,
        dof: p.dof,
        theta: p.theta,
        repulsion: match p.repulsion {
            EMBER_REPULSION_AUTO => Repulsion::Auto,
            EMBER_REPULSION_EXACT => Repulsion::Exact,
            EMBER_REPULSION_BARNES_HUT => Repulsion::BarnesHut,
            EMBER_REPULSION_FFT => Repulsion::Fft,
            _ => {
                return Err(bad(
                    "invalid repulsion: use EMBER_REPULSION_AUTO, _EXACT, _BARNES_HUT or _FFT",
                ));
            }
        },
        init: match p.init {
            EMBER_INIT_PCA => Init::Pca,
            EMBER_INIT_RANDOM => Init::Random,
            _ => return Err(bad("invalid init: use EMBER_INIT_PCA or EMBER_INIT_RANDOM")),
        },
        knn: match p.knn {
            EMBER_KNN_AUTO => KnnMethod::Auto,
            EMBER_KNN_EXACT => KnnMethod::Exact,
            EMBER_KNN_APPROX => KnnMethod::Approx,
            _ => return Err(bad("invalid knn: use EMBER_KNN_AUTO, _EXACT or _APPROX")),
        },
        pca: p.pca as usize,
        seed: p.seed,
        ..TsneParams::default()
    })
}

struct Callback {
    f: ember_progress_fn,
    user: *mut c_void,
}

impl Observer for Callback {
    fn observe(&mut self, p: &Progress) -> Control {
        let Some(f) = self.f else {
            return Control::Continue;
        };
        // SAFETY: the caller promised a valid function pointer and user data.
        let r = unsafe {
            f(
                self.user,
                p.stage as u32,
                p.done,
                p.total,
                p.loss.unwrap_or(f64::NAN),
            )
        };
        if r != 0 {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

fn try_zeroed<T: Default + Clone>(len: usize) -> Result<Vec<T>, ember_status> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| fail(EMBER_ERR_ALLOCATION, "out of memory"))?;
    v.resize(len, T::default());
    Ok(v)
}

/// Embeds `n` points of `d` values with t-SNE.
///
/// Element (i, j) of the data is `x[i * row_stride + j * col_stride]` (strides in elements),
/// so row-major data passes `row_stride = d, col_stride = 1` and column-major (MATLAB, Julia)
/// passes `row_stride = 1, col_stride = n`. `y` receives `n * dims` floats, row-major.
/// `params` may be NULL for the defaults. `progress` may be NULL.
/// On EMBER_CANCELLED during optimisation, `y` holds the embedding reached so far.
///
/// # Safety
/// `x` must be valid for the elements the strides address, `y` for `n * dims` floats, and
/// `params` NULL or a valid parameter struct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_tsne(
    x: *const f32,
    n: usize,
    d: usize,
    row_stride: usize,
    col_stride: usize,
    params: *const ember_tsne_params,
    y: *mut f32,
    progress: ember_progress_fn,
    user: *mut c_void,
) -> ember_status {
    guard(|| {
        if x.is_null() || y.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "x and y must not be NULL");
        }
        let cp = if params.is_null() {
            ember_tsne_params_default()
        } else {
            // SAFETY: non-NULL, and the caller promised a valid struct; read struct_size first.
            let size = unsafe { (*params).struct_size };
            if size as usize != size_of::<ember_tsne_params>() {
                return fail(
                    EMBER_ERR_STRUCT_SIZE,
                    "struct_size does not match this library; initialise with ember_tsne_params_default()",
                );
            }
            // SAFETY: as above.
            unsafe { *params }
        };
        let tp = match to_core(&cp) {
            Ok(t) => t,
            Err(s) => return s,
        };
        if let Err(e) = tp.validate() {
            return from_core(e);
        }
        with_matrix(x, n, d, row_stride, col_stride, |xm| {
            run_tsne(xm, &tp, cp.threads as usize, y, progress, user)
        })
    })
}

/// Checks the shape and strides of the caller's data and hands `f` a row-major view:
/// the data itself when rows are contiguous, else a gathered copy.
fn with_matrix(
    x: *const f32,
    n: usize,
    d: usize,
    row_stride: usize,
    col_stride: usize,
    f: impl FnOnce(MatRef) -> ember_status,
) -> ember_status {
    if d == 0 {
        return from_core(Error::NoDimensions);
    }
    if n < 2 {
        return from_core(Error::TooFewPoints { n, min: 2 });
    }
    with_any_matrix(x, n, d, row_stride, col_stride, f)
}

/// As `with_matrix`, for any number of rows from one up.
fn with_any_matrix(
    x: *const f32,
    n: usize,
    d: usize,
    row_stride: usize,
    col_stride: usize,
    f: impl FnOnce(MatRef) -> ember_status,
) -> ember_status {
    if d == 0 {
        return from_core(Error::NoDimensions);
    }
    if n == 0 {
        return fail(EMBER_ERR_SHAPE, "need at least one row");
    }
    if row_stride == 0 || col_stride == 0 {
        return fail(EMBER_ERR_SHAPE, "strides must be positive");
    }
    let span = (n - 1).checked_mul(row_stride).and_then(|a| {
        (d - 1)
            .checked_mul(col_stride)
            .and_then(|b| a.checked_add(b + 1))
    });
    let Some(span) = span else {
        return fail(EMBER_ERR_SHAPE, "strides overflow");
    };
    // SAFETY: the caller promised `x` covers every element the strides address.
    let xs = unsafe { std::slice::from_raw_parts(x, span) };
    let dense: Vec<f32>;
    let contiguous = col_stride == 1 && row_stride >= d;
    let xm = if contiguous {
        MatRef::new(xs, n, d, row_stride)
    } else {
        // Other layouts are gathered once into a row-major copy.
        dense = match try_zeroed::<f32>(n * d) {
            Ok(mut v) => {
                for i in 0..n {
                    for j in 0..d {
                        v[i * d + j] = xs[i * row_stride + j * col_stride];
                    }
                }
                v
            }
            Err(s) => return s,
        };
        MatRef::dense(&dense, n, d)
    };
    match xm {
        Ok(xm) => f(xm),
        Err(e) => from_core(e),
    }
}

fn run_tsne(
    x: MatRef,
    tp: &TsneParams,
    threads: usize,
    y: *mut f32,
    progress: ember_progress_fn,
    user: *mut c_void,
) -> ember_status {
    let n = x.rows();
    let bytes = ember_core::tsne::tsne_scratch(n, x.cols(), tp).bytes();
    let mut scratch = match try_zeroed::<u8>(bytes) {
        Ok(v) => v,
        Err(s) => return s,
    };
    // SAFETY: the caller promised `y` holds n * dims floats.
    let ys = unsafe { std::slice::from_raw_parts_mut(y, n * tp.dims) };
    let mut obs = Callback { f: progress, user };
    match ember_core::tsne::tsne(x, tp, &Threads::new(threads), &mut obs, &mut scratch, ys) {
        Ok(_) => EMBER_OK,
        Err(e) => from_core(e),
    }
}

pub const EMBER_INIT_SPECTRAL: u32 = 2;
pub const EMBER_LOSS_NEG: u32 = 0;
pub const EMBER_LOSS_NCE: u32 = 1;
pub const EMBER_LOSS_INFONCE: u32 = 2;
pub const EMBER_LOSS_UMAP: u32 = 3;
pub const EMBER_GRAPH_FUZZY: u32 = 0;
pub const EMBER_GRAPH_BINARY: u32 = 1;

/// UMAP parameters. Fill with ember_umap_params_default(), then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ember_umap_params {
    /// sizeof(ember_umap_params) as the caller compiled it; set by the default initialiser.
    pub struct_size: u32,
    /// Output dimensions (2), at most 16.
    pub dims: u32,
    /// Neighbourhood size counting the point itself (15), as umap-learn's n_neighbors.
    pub neighbors: u32,
    /// Minimum distance of the output curve (0.1); at most spread.
    pub min_dist: f32,
    /// Spread of the output curve (1).
    pub spread: f32,
    /// SGD epochs; 0 = 500 up to 10 000 points, 200 above.
    pub epochs: u32,
    /// Negative samples per positive (5); fewer than N.
    pub negatives: u32,
    /// Initial learning rate (1), annealed linearly to 0.
    pub learning_rate: f32,
    /// EMBER_METRIC_*.
    pub metric: u32,
    /// EMBER_KNN_*.
    pub knn: u32,
    /// EMBER_INIT_SPECTRAL (default), EMBER_INIT_PCA or EMBER_INIT_RANDOM. Spectral falls back
    /// to PCA on a disconnected graph; ember_last_warning_message() then says so.
    pub init: u32,
    /// Worker threads; 0 = all cores. The result does not depend on it.
    pub threads: u32,
    /// Random seed (42).
    pub seed: u64,
}

/// The defaults users expect (umap-learn's).
#[unsafe(no_mangle)]
pub extern "C" fn ember_umap_params_default() -> ember_umap_params {
    let d = UmapParams::default();
    ember_umap_params {
        struct_size: size_of::<ember_umap_params>() as u32,
        dims: d.dims as u32,
        neighbors: d.neighbors as u32,
        min_dist: d.min_dist,
        spread: d.spread,
        epochs: d.epochs as u32,
        negatives: d.negatives as u32,
        learning_rate: d.learning_rate,
        metric: EMBER_METRIC_EUCLIDEAN,
        knn: EMBER_KNN_AUTO,
        init: EMBER_INIT_SPECTRAL,
        threads: 0,
        seed: d.seed,
    }
}

/// Contrastive neighbour-embedding parameters. Fill with ember_ne_params_default().
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ember_ne_params {
    /// sizeof(ember_ne_params) as the caller compiled it; set by the default initialiser.
    pub struct_size: u32,
    /// Output dimensions (2), at most 16.
    pub dims: u32,
    /// Neighbours per point, not counting the point itself (15).
    pub neighbors: u32,
    /// EMBER_LOSS_NEG (default), _NCE, _INFONCE or _UMAP.
    pub loss: u32,
    /// EMBER_GRAPH_FUZZY (default) or EMBER_GRAPH_BINARY.
    pub graph: u32,
    /// Negative samples per positive (5), at most 1024 and fewer than N.
    pub negatives: u32,
    /// Spectrum position (0): 0 t-SNE-like, 1 UMAP-like. Ignored by ember_ne_spectrum.
    pub s: f64,
    /// NEG's fixed normaliser Z-bar; 0 (default) = from s.
    pub zbar: f64,
    /// SGD epochs; 0 = 500 up to 10 000 points, 200 above.
    pub epochs: u32,
    /// Epochs first run at the UMAP end (s = 1), like early exaggeration; -1 (default) =
    /// auto: none up to 10 000 points, half of the epochs above.
    pub early_epochs: i32,
    /// Initial learning rate (1), annealed linearly to 0.
    pub learning_rate: f32,
    /// Output curve of the UMAP loss (0.1 and 1).
    pub min_dist: f32,
    pub spread: f32,
    /// EMBER_METRIC_*.
    pub metric: u32,
    /// EMBER_KNN_*.
    pub knn: u32,
    /// EMBER_INIT_PCA (default), EMBER_INIT_SPECTRAL or EMBER_INIT_RANDOM.
    pub init: u32,
    /// Worker threads; 0 = all cores. The result does not depend on it.
    pub threads: u32,
    /// Random seed (42).
    pub seed: u64,
}

/// The defaults: Neg-t-SNE at s = 0 on the fuzzy kNN graph, 5 negatives.
#[unsafe(no_mangle)]
pub extern "C" fn ember_ne_params_default() -> ember_ne_params {
    let d = NeParams::default();
    ember_ne_params {
        struct_size: size_of::<ember_ne_params>() as u32,
        dims: d.dims as u32,
        neighbors: d.neighbors as u32,
        loss: EMBER_LOSS_NEG,
        graph: EMBER_GRAPH_FUZZY,
        negatives: d.negatives as u32,
        s: d.s,
        zbar: d.zbar,
        epochs: d.epochs as u32,
        early_epochs: -1,
        learning_rate: d.learning_rate,
        min_dist: d.min_dist,
        spread: d.spread,
        metric: EMBER_METRIC_EUCLIDEAN,
        knn: EMBER_KNN_AUTO,
        init: EMBER_INIT_PCA,
        threads: 0,
        seed: d.seed,
    }
}

fn metric_of(m: u32) -> Result<Metric, ember_status> {
    match m {
        EMBER_METRIC_EUCLIDEAN => Ok(Metric::SqEuclidean),
        EMBER_METRIC_COSINE => Ok(Metric::Cosine),
        _ => Err(fail(
            EMBER_ERR_INVALID_PARAMETER,
            "invalid metric: use EMBER_METRIC_EUCLIDEAN or EMBER_METRIC_COSINE",
        )),
    }
}

fn knn_of(k: u32) -> Result<KnnMethod, ember_status> {
    match k {
        EMBER_KNN_AUTO => Ok(KnnMethod::Auto),
        EMBER_KNN_EXACT => Ok(KnnMethod::Exact),
        EMBER_KNN_APPROX => Ok(KnnMethod::Approx),
        _ => Err(fail(
            EMBER_ERR_INVALID_PARAMETER,
            "invalid knn: use EMBER_KNN_AUTO, _EXACT or _APPROX",
        )),
    }
}

fn sgd_init_of(i: u32) -> Result<UmapInit, ember_status> {
    match i {
        EMBER_INIT_SPECTRAL => Ok(UmapInit::Spectral),
        EMBER_INIT_PCA => Ok(UmapInit::Pca),
        EMBER_INIT_RANDOM => Ok(UmapInit::Random),
        _ => Err(fail(
            EMBER_ERR_INVALID_PARAMETER,
            "invalid init: use EMBER_INIT_SPECTRAL, _PCA or _RANDOM",
        )),
    }
}

/// Reads a caller's parameter struct after checking its struct_size; NULL gives `default`.
///
/// # Safety
/// `p` is NULL or points to a struct whose first field is a u32 struct_size.
unsafe fn read_params<T: Copy>(p: *const T, default: T, name: &str) -> Result<T, ember_status> {
    if p.is_null() {
        return Ok(default);
    }
    // SAFETY: non-NULL; every ember parameter struct starts with its u32 struct_size.
    let size = unsafe { *p.cast::<u32>() };
    if size as usize != size_of::<T>() {
        return Err(fail(
            EMBER_ERR_STRUCT_SIZE,
            &format!("struct_size does not match this library; initialise with {name}_default()"),
        ));
    }
    // SAFETY: the size matches the struct this library knows.
    Ok(unsafe { *p })
}

thread_local! {
    static LAST_WARNING: RefCell<CString> = RefCell::new(CString::default());
}

fn set_warning(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_WARNING.with(|e| *e.borrow_mut() = c);
}

fn note_init(init: InitUsed) {
    match init {
        InitUsed::PcaDisconnected { components } => set_warning(&format!(
            "the neighbour graph has {components} connected components; spectral initialisation was replaced by PCA"
        )),
        InitUsed::PcaNotConverged => {
            set_warning("the spectral eigensolver did not converge; initialisation used PCA")
        }
        _ => {}
    }
}

/// A warning from the last call on this thread that still succeeded (empty if none), such
/// as a spectral initialisation that fell back to PCA. Valid until the next ember call.
#[unsafe(no_mangle)]
pub extern "C" fn ember_last_warning_message() -> *const c_char {
    LAST_WARNING.with(|e| e.borrow().as_ptr())
}

/// Embeds `n` points of `d` values with UMAP. Data layout, `y`, `progress` and cancellation
/// as for ember_tsne. `params` may be NULL for the defaults.
///
/// # Safety
/// As for ember_tsne.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_umap(
    x: *const f32,
    n: usize,
    d: usize,
    row_stride: usize,
    col_stride: usize,
    params: *const ember_umap_params,
    y: *mut f32,
    progress: ember_progress_fn,
    user: *mut c_void,
) -> ember_status {
    guard(|| {
        if x.is_null() || y.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "x and y must not be NULL");
        }
        // SAFETY: the caller promised NULL or a valid struct.
        let cp = match unsafe {
            read_params(params, ember_umap_params_default(), "ember_umap_params")
        } {
            Ok(c) => c,
            Err(s) => return s,
        };
        let up = match umap_to_core(&cp) {
            Ok(u) => u,
            Err(s) => return s,
        };
        // Parameters that do not fit the data are refused before anything is sized for them.
        if let Err(e) = up.validate().and_then(|_| up.check_n(n)) {
            return from_core(e);
        }
        with_matrix(x, n, d, row_stride, col_stride, |xm| {
            let bytes = ember_core::umap::umap_scratch(n, xm.cols(), &up).bytes();
            let mut scratch = match try_zeroed::<u8>(bytes) {
                Ok(v) => v,
                Err(s) => return s,
            };
            // SAFETY: the caller promised `y` holds n * dims floats.
            let ys = unsafe { std::slice::from_raw_parts_mut(y, n * up.dims) };
            let mut obs = Callback { f: progress, user };
            let par = Threads::new(cp.threads as usize);
            match ember_core::umap::umap(xm, &up, &par, &mut obs, &mut scratch, ys) {
                Ok(summary) => {
                    note_init(summary.init);
                    EMBER_OK
                }
                Err(e) => from_core(e),
            }
        })
    })
}

fn umap_to_core(cp: &ember_umap_params) -> Result<UmapParams, ember_status> {
    let up = match (metric_of(cp.metric), knn_of(cp.knn), sgd_init_of(cp.init)) {
        (Ok(metric), Ok(knn), Ok(init)) => UmapParams {
            dims: cp.dims as usize,
            neighbors: cp.neighbors as usize,
            min_dist: cp.min_dist,
            spread: cp.spread,
            epochs: cp.epochs as usize,
            negatives: cp.negatives as usize,
            learning_rate: cp.learning_rate,
            metric,
            knn,
            init,
            seed: cp.seed,
            ..UmapParams::default()
        },
        (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return Err(s),
    };
    up.validate().map_err(from_core)?;
    Ok(up)
}

fn ne_to_core(cp: &ember_ne_params) -> Result<NeParams, ember_status> {
    let bad = |what: &str| fail(EMBER_ERR_INVALID_PARAMETER, what);
    Ok(NeParams {
        dims: cp.dims as usize,
        neighbors: cp.neighbors as usize,
        graph: match cp.graph {
            EMBER_GRAPH_FUZZY => NeGraph::Fuzzy,
            EMBER_GRAPH_BINARY => NeGraph::Binary,
            _ => {
                return Err(bad(
                    "invalid graph: use EMBER_GRAPH_FUZZY or EMBER_GRAPH_BINARY",
                ));
            }
        },
        loss: match cp.loss {
            EMBER_LOSS_NEG => NeLoss::Neg,
            EMBER_LOSS_NCE => NeLoss::Nce,
            EMBER_LOSS_INFONCE => NeLoss::InfoNce,
            EMBER_LOSS_UMAP => NeLoss::Umap,
            _ => {
                return Err(bad(
                    "invalid loss: use EMBER_LOSS_NEG, _NCE, _INFONCE or _UMAP",
                ));
            }
        },
        s: cp.s,
        zbar: cp.zbar,
        negatives: cp.negatives as usize,
        epochs: cp.epochs as usize,
        early_epochs: (cp.early_epochs >= 0).then_some(cp.early_epochs as usize),
        learning_rate: cp.learning_rate,
        min_dist: cp.min_dist,
        spread: cp.spread,
        metric: metric_of(cp.metric)?,
        knn: knn_of(cp.knn)?,
        init: sgd_init_of(cp.init)?,
        seed: cp.seed,
        ..NeParams::default()
    })
}

/// Embeds `n` points once per spectrum position in `s_values` (`count` of them), from one
/// kNN graph and one initialisation: panel p goes to `y + p * n * dims`. Data layout,
/// `progress` and cancellation as for ember_tsne. `params` may be NULL for the defaults.
///
/// # Safety
/// As for ember_tsne; `s_values` holds `count` doubles and `y` holds `count * n * dims` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_ne_spectrum(
    x: *const f32,
    n: usize,
    d: usize,
    row_stride: usize,
    col_stride: usize,
    params: *const ember_ne_params,
    s_values: *const f64,
    count: usize,
    y: *mut f32,
    progress: ember_progress_fn,
    user: *mut c_void,
) -> ember_status {
    guard(|| {
        if x.is_null() || y.is_null() || s_values.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "x, s_values and y must not be NULL");
        }
        if count == 0 {
            return fail(
                EMBER_ERR_INVALID_PARAMETER,
                "count: at least one spectrum value",
            );
        }
        // SAFETY: the caller promised NULL or a valid struct.
        let cp = match unsafe { read_params(params, ember_ne_params_default(), "ember_ne_params") }
        {
            Ok(c) => c,
            Err(s) => return s,
        };
        let np = match ne_to_core(&cp) {
            Ok(p) => p,
            Err(s) => return s,
        };
        if let Err(e) = np.validate().and_then(|_| np.check_n(n)) {
            return from_core(e);
        }
        // SAFETY: the caller promised `count` values.
        let sv = unsafe { std::slice::from_raw_parts(s_values, count) };
        with_matrix(x, n, d, row_stride, col_stride, |xm| {
            let bytes = ember_core::ne::ne_scratch(n, xm.cols(), &np).bytes();
            let mut scratch = match try_zeroed::<u8>(bytes) {
                Ok(v) => v,
                Err(s) => return s,
            };
            let Some(len) = count.checked_mul(n * np.dims) else {
                return fail(EMBER_ERR_SHAPE, "count * n * dims overflows");
            };
            // SAFETY: the caller promised `y` holds count * n * dims floats.
            let ys = unsafe { std::slice::from_raw_parts_mut(y, len) };
            let mut sums = vec![SgdSummary::default(); count];
            let mut obs = Callback { f: progress, user };
            let par = Threads::new(cp.threads as usize);
            match ember_core::ne::ne_spectrum(
                xm,
                &np,
                sv,
                &par,
                &mut obs,
                &mut scratch,
                ys,
                &mut sums,
            ) {
                Ok(init) => {
                    note_init(init);
                    EMBER_OK
                }
                Err(e) => from_core(e),
            }
        })
    })
}

/// One contrastive neighbour embedding at `params->s` (or `params->zbar`): ember_ne_spectrum
/// with one value.
///
/// # Safety
/// As for ember_tsne.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_ne(
    x: *const f32,
    n: usize,
    d: usize,
    row_stride: usize,
    col_stride: usize,
    params: *const ember_ne_params,
    y: *mut f32,
    progress: ember_progress_fn,
    user: *mut c_void,
) -> ember_status {
    let s = if params.is_null() {
        ember_ne_params_default().s
    } else {
        // SAFETY: the caller promised a valid struct; s is read only if its size matches.
        match unsafe { read_params(params, ember_ne_params_default(), "ember_ne_params") } {
            Ok(p) => p.s,
            Err(st) => return st,
        }
    };
    // SAFETY: forwarded with the caller's promises; one spectrum value.
    unsafe {
        ember_ne_spectrum(
            x, n, d, row_stride, col_stride, params, &s, 1, y, progress, user,
        )
    }
}

pub const EMBER_SIM_COSINE: u32 = 0;
pub const EMBER_SIM_STUDENT_T: u32 = 1;
pub const EMBER_SIM_GAUSSIAN: u32 = 2;
pub const EMBER_P_CSR: u32 = 0;
pub const EMBER_P_PAIRS: u32 = 1;
pub const EMBER_P_SAME_LABEL: u32 = 2;
pub const EMBER_NEIGHBOURHOOD_PERPLEXITY: u32 = 0;
pub const EMBER_NEIGHBOURHOOD_KNN: u32 = 1;

/// How two vectors become a logit: EMBER_SIM_COSINE (param = temperature τ, logit cos/τ),
/// EMBER_SIM_STUDENT_T (param = degrees of freedom ν, logit −ν·log(1 + d²/ν); ν = 1 is the
/// Cauchy kernel of t-SimCNE), EMBER_SIM_GAUSSIAN (param = γ, logit −γ·d²).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ember_similarity {
    pub kind: u32,
    pub param: f32,
}

fn similarity_of(s: ember_similarity) -> Result<Similarity, ember_status> {
    match s.kind {
        EMBER_SIM_COSINE => Ok(Similarity::Cosine { tau: s.param }),
        EMBER_SIM_STUDENT_T => Ok(Similarity::StudentT { dof: s.param }),
        EMBER_SIM_GAUSSIAN => Ok(Similarity::Gaussian { gamma: s.param }),
        _ => Err(fail(
            EMBER_ERR_INVALID_PARAMETER,
            "invalid similarity kind: use EMBER_SIM_COSINE, _STUDENT_T or _GAUSSIAN",
        )),
    }
}

/// Checks a row-strided matrix argument and views it.
fn rows_view<'a>(
    x: *const f32,
    n: usize,
    d: usize,
    stride: usize,
    what: &str,
) -> Result<MatRef<'a>, ember_status> {
    if x.is_null() {
        return Err(fail(
            EMBER_ERR_NULL_POINTER,
            &format!("{what} must not be NULL"),
        ));
    }
    if n == 0 || d == 0 || stride < d {
        return Err(fail(
            EMBER_ERR_SHAPE,
            &format!("{what}: need rows >= 1, d >= 1 and row_stride >= d"),
        ));
    }
    let Some(span) = (n - 1).checked_mul(stride).and_then(|v| v.checked_add(d)) else {
        return Err(fail(EMBER_ERR_SHAPE, "strides overflow"));
    };
    // SAFETY: the caller promised `x` holds the rows the stride addresses.
    let xs = unsafe { std::slice::from_raw_parts(x, span) };
    MatRef::new(xs, n, d, stride).map_err(from_core)
}

/// A caller's output buffer of `len` floats.
fn out_slice<'a>(p: *mut f32, len: usize, what: &str) -> Result<&'a mut [f32], ember_status> {
    if p.is_null() {
        return Err(fail(
            EMBER_ERR_NULL_POINTER,
            &format!("{what} must not be NULL"),
        ));
    }
    // SAFETY: the caller promised `len` writable floats.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

thread_local! {
    /// Scratch of the contrastive kernels, kept per calling thread: a training loop calls them
    /// with the same shapes every step, and fresh pages cost the kernel clearing them.
    static CONTRASTIVE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs a contrastive loss with scratch for `m` rows against `n` columns of dimension `d`.
fn with_contrastive_scratch(
    m: usize,
    n: usize,
    d: usize,
    loss: *mut f64,
    f: impl FnOnce(&mut [u8]) -> ember_core::Result<f64>,
) -> ember_status {
    if loss.is_null() {
        return fail(EMBER_ERR_NULL_POINTER, "loss must not be NULL");
    }
    let bytes = contrastive::contrastive_scratch(m, n, d).bytes();
    CONTRASTIVE_SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < bytes {
            let more = bytes - buf.len();
            if buf.try_reserve_exact(more).is_err() {
                return fail(EMBER_ERR_ALLOCATION, "out of memory");
            }
            buf.resize(bytes, 0);
        }
        match f(&mut buf[..bytes]) {
            Ok(l) => {
                // SAFETY: non-NULL, checked above.
                unsafe { *loss = l };
                EMBER_OK
            }
            Err(e) => from_core(e),
        }
    })
}

/// Frees the scratch the contrastive functions keep on the calling thread (they keep the
/// largest used so far, for reuse by the next call).
#[unsafe(no_mangle)]
pub extern "C" fn ember_release_scratch() {
    CONTRASTIVE_SCRATCH.with(|cell| *cell.borrow_mut() = Vec::new());
}

/// InfoNCE / NT-Xent over `rows` vectors (an even number: views 2k and 2k+1 of item k are
/// positives) of dimension `d`, row `i` at `z + i * row_stride`. Writes the mean loss to
/// `*loss` and ∂loss/∂z to `grad` (rows × d, dense). `threads` 0 = all cores.
///
/// # Safety
/// `z` holds the rows its stride addresses, `grad` rows × d floats, `loss` one double.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_infonce(
    z: *const f32,
    rows: usize,
    d: usize,
    row_stride: usize,
    sim: ember_similarity,
    threads: u32,
    loss: *mut f64,
    grad: *mut f32,
) -> ember_status {
    guard(|| {
        let (zm, sim, g) = match (
            rows_view(z, rows, d, row_stride, "z"),
            similarity_of(sim),
            out_slice(grad, rows * d, "grad"),
        ) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return s,
        };
        let par = Threads::new(threads as usize);
        with_contrastive_scratch(rows, rows, d, loss, |s| {
            contrastive::info_nce(zm, sim, &par, s, g)
        })
    })
}

/// CLIP's symmetric loss between `a` and `b` (`batch` rows each; row i of one matches row i
/// of the other). Gradients go to `grad_a` and `grad_b` (batch × d each, dense).
///
/// # Safety
/// As for ember_infonce, for both sets.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_clip_loss(
    a: *const f32,
    b: *const f32,
    batch: usize,
    d: usize,
    a_stride: usize,
    b_stride: usize,
    sim: ember_similarity,
    threads: u32,
    loss: *mut f64,
    grad_a: *mut f32,
    grad_b: *mut f32,
) -> ember_status {
    guard(|| {
        let (am, bm, sim) = match (
            rows_view(a, batch, d, a_stride, "a"),
            rows_view(b, batch, d, b_stride, "b"),
            similarity_of(sim),
        ) {
            (Ok(x), Ok(y), Ok(z)) => (x, y, z),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return s,
        };
        let (ga, gb) = match (
            out_slice(grad_a, batch * d, "grad_a"),
            out_slice(grad_b, batch * d, "grad_b"),
        ) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(s), _) | (_, Err(s)) => return s,
        };
        let par = Threads::new(threads as usize);
        with_contrastive_scratch(batch, batch, d, loss, |s| {
            contrastive::clip_loss(am, bm, sim, &par, s, ga, gb)
        })
    })
}

/// Supervised contrastive loss (SupCon): positives of row i are the other rows with its
/// label; rows whose label occurs once are left out of the mean.
///
/// # Safety
/// As for ember_infonce; `labels` holds `rows` values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_supcon(
    z: *const f32,
    labels: *const u32,
    rows: usize,
    d: usize,
    row_stride: usize,
    sim: ember_similarity,
    threads: u32,
    loss: *mut f64,
    grad: *mut f32,
) -> ember_status {
    guard(|| {
        if labels.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "labels must not be NULL");
        }
        let (zm, sim, g) = match (
            rows_view(z, rows, d, row_stride, "z"),
            similarity_of(sim),
            out_slice(grad, rows * d, "grad"),
        ) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return s,
        };
        // SAFETY: the caller promised `rows` labels.
        let l = unsafe { std::slice::from_raw_parts(labels, rows) };
        let par = Threads::new(threads as usize);
        with_contrastive_scratch(rows, rows, d, loss, |s| {
            contrastive::supcon(zm, l, sim, &par, s, g)
        })
    })
}

/// I-Con parameters. Fill with ember_icon_params_default().
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ember_icon_params {
    /// sizeof(ember_icon_params) as the caller compiled it.
    pub struct_size: u32,
    /// Where p comes from: EMBER_P_CSR (the p_* arrays), EMBER_P_PAIRS (rows 2k and 2k+1),
    /// EMBER_P_SAME_LABEL (uniform over the other rows with the same label).
    pub p_kind: u32,
    /// The embedding's similarity q (default Student-t, ν = 1).
    pub q: ember_similarity,
    /// Non-zero: q and p are joint distributions over all pairs (t-SNE); zero: per row.
    pub joint: u32,
    /// Debiasing α: p̃ = (1 − α)p + α·uniform (0).
    pub debias: f32,
    /// Worker threads; 0 = all cores.
    pub threads: u32,
}

#[unsafe(no_mangle)]
pub extern "C" fn ember_icon_params_default() -> ember_icon_params {
    ember_icon_params {
        struct_size: size_of::<ember_icon_params>() as u32,
        p_kind: EMBER_P_CSR,
        q: ember_similarity {
            kind: EMBER_SIM_STUDENT_T,
            param: 1.0,
        },
        joint: 0,
        debias: 0.0,
        threads: 0,
    }
}

/// I-Con: Σ_i KL(p(·|i) ‖ q(·|i)) averaged over rows (or KL(P‖Q) when joint) for the
/// embedding `y` (rows × d, row stride `row_stride`). p as CSR (`p_indptr`: rows + 1 entries,
/// `p_indices`/`p_values`: p_indptr[rows] entries; NULL unless p_kind is EMBER_P_CSR), or from
/// `labels` (NULL unless EMBER_P_SAME_LABEL). Writes the loss and ∂loss/∂y (rows × d, dense).
///
/// # Safety
/// Every non-NULL pointer holds what its description says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_icon_loss(
    y: *const f32,
    rows: usize,
    d: usize,
    row_stride: usize,
    params: *const ember_icon_params,
    p_indptr: *const usize,
    p_indices: *const u32,
    p_values: *const f32,
    labels: *const u32,
    loss: *mut f64,
    grad: *mut f32,
) -> ember_status {
    guard(|| {
        // SAFETY: the caller promised NULL or a valid struct.
        let cp = match unsafe {
            read_params(params, ember_icon_params_default(), "ember_icon_params")
        } {
            Ok(c) => c,
            Err(s) => return s,
        };
        let (ym, q, g) = match (
            rows_view(y, rows, d, row_stride, "y"),
            similarity_of(cp.q),
            out_slice(grad, rows * d, "grad"),
        ) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return s,
        };
        let csr_storage;
        let label_storage;
        let targets = match cp.p_kind {
            EMBER_P_CSR => {
                if p_indptr.is_null() || p_indices.is_null() || p_values.is_null() {
                    return fail(
                        EMBER_ERR_NULL_POINTER,
                        "p_indptr, p_indices and p_values must not be NULL",
                    );
                }
                // SAFETY: the caller promised rows + 1 offsets, then that many entries.
                let indptr = unsafe { std::slice::from_raw_parts(p_indptr, rows + 1) };
                if indptr.windows(2).any(|w| w[0] > w[1]) || indptr[0] != 0 {
                    return fail(
                        EMBER_ERR_INVALID_PARAMETER,
                        "p_indptr must start at 0 and never decrease",
                    );
                }
                let nnz = indptr[rows];
                // SAFETY: as above.
                let (idx, val) = unsafe {
                    (
                        std::slice::from_raw_parts(p_indices, nnz),
                        std::slice::from_raw_parts(p_values, nnz),
                    )
                };
                csr_storage = CsrRef {
                    indptr,
                    indices: idx,
                    values: val,
                };
                Targets::Sparse(csr_storage)
            }
            EMBER_P_PAIRS => Targets::Pairs,
            EMBER_P_SAME_LABEL => {
                if labels.is_null() {
                    return fail(
                        EMBER_ERR_NULL_POINTER,
                        "labels must not be NULL for EMBER_P_SAME_LABEL",
                    );
                }
                // SAFETY: the caller promised `rows` labels.
                label_storage = unsafe { std::slice::from_raw_parts(labels, rows) };
                Targets::SameLabel(label_storage)
            }
            _ => {
                return fail(
                    EMBER_ERR_INVALID_PARAMETER,
                    "invalid p_kind: use EMBER_P_CSR, _PAIRS or _SAME_LABEL",
                );
            }
        };
        let norm = if cp.joint != 0 {
            Normalisation::Joint
        } else {
            Normalisation::Row
        };
        let par = Threads::new(cp.threads as usize);
        with_contrastive_scratch(rows, rows, d, loss, |s| {
            contrastive::icon_loss(ym, targets, q, norm, cp.debias, &par, s, g)
        })
    })
}

/// Entries `ember_icon_neighbourhood` may write for `rows` points: the length its
/// `p_indices` and `p_values` need (`p_indptr` needs rows + 1). `kind` and `param` as there.
#[unsafe(no_mangle)]
pub extern "C" fn ember_icon_neighbourhood_bound(rows: usize, kind: u32, param: f32) -> usize {
    match neighbourhood_of(kind, param) {
        Ok(k) => contrastive::neighbourhood_nnz_bound(rows, k),
        Err(_) => 0,
    }
}

fn neighbourhood_of(kind: u32, param: f32) -> Result<Neighbourhood, ember_status> {
    match kind {
        EMBER_NEIGHBOURHOOD_PERPLEXITY => Ok(Neighbourhood::Perplexity(param)),
        EMBER_NEIGHBOURHOOD_KNN if param >= 1.0 && param.fract() == 0.0 => {
            Ok(Neighbourhood::Knn(param as usize))
        }
        EMBER_NEIGHBOURHOOD_KNN => Err(fail(
            EMBER_ERR_INVALID_PARAMETER,
            "k must be a whole number >= 1",
        )),
        _ => Err(fail(
            EMBER_ERR_INVALID_PARAMETER,
            "invalid neighbourhood: use EMBER_NEIGHBOURHOOD_PERPLEXITY or _KNN",
        )),
    }
}

/// Builds I-Con's p from data `x` (rows × d, row stride): Gaussian affinities calibrated to
/// a perplexity (`kind` EMBER_NEIGHBOURHOOD_PERPLEXITY, `param` the perplexity; exactly
/// t-SNE's), or uniform over the k nearest neighbours (EMBER_NEIGHBOURHOOD_KNN, `param` = k).
/// Conditional rows, or symmetrised joint when `joint` is non-zero. Writes CSR into the
/// buffers (sized by ember_icon_neighbourhood_bound) and the entry count to `*nnz`.
///
/// # Safety
/// `x` holds the rows its stride addresses; the outputs hold what the bound says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_icon_neighbourhood(
    x: *const f32,
    rows: usize,
    d: usize,
    row_stride: usize,
    kind: u32,
    param: f32,
    joint: u32,
    threads: u32,
    p_indptr: *mut usize,
    p_indices: *mut u32,
    p_values: *mut f32,
    nnz: *mut usize,
) -> ember_status {
    guard(|| {
        if p_indptr.is_null() || p_indices.is_null() || p_values.is_null() || nnz.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "output pointers must not be NULL");
        }
        let (xm, k) = match (
            rows_view(x, rows, d, row_stride, "x"),
            neighbourhood_of(kind, param),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(s), _) | (_, Err(s)) => return s,
        };
        let bound = contrastive::neighbourhood_nnz_bound(rows, k);
        // SAFETY: the caller sized the outputs by ember_icon_neighbourhood_bound.
        let (ip, ix, iv) = unsafe {
            (
                std::slice::from_raw_parts_mut(p_indptr, rows + 1),
                std::slice::from_raw_parts_mut(p_indices, bound),
                std::slice::from_raw_parts_mut(p_values, bound),
            )
        };
        let mut scratch =
            match try_zeroed::<u8>(contrastive::neighbourhood_scratch(rows, k).bytes()) {
                Ok(v) => v,
                Err(s) => return s,
            };
        let norm = if joint != 0 {
            Normalisation::Joint
        } else {
            Normalisation::Row
        };
        let par = Threads::new(threads as usize);
        match contrastive::neighbourhood(xm, k, norm, &par, &mut scratch, ip, ix, iv) {
            Ok(count) => {
                // SAFETY: non-NULL, checked above.
                unsafe { *nnz = count };
                EMBER_OK
            }
            Err(e) => from_core(e),
        }
    })
}

/// Converts the core's ranking distances to the metric's own: Euclidean (not squared) or
/// cosine distance 1 - cos.
fn metric_distances(metric: Metric, dist: &mut [f32]) {
    if metric == Metric::SqEuclidean {
        for v in dist {
            *v = v.sqrt();
        }
    }
}

/// The `k` nearest neighbours of every point among the other points (never the point
/// itself), ascending by distance. Data layout as for ember_tsne. `idx` receives `n * k`
/// zero-based indices, row-major; `dist` (may be NULL) the matching distances: Euclidean,
/// or 1 - cosine similarity. `method` is EMBER_KNN_* (approximate search is seeded by
/// `seed`); `threads` 0 = all cores.
///
/// # Safety
/// `x` as for ember_tsne; `idx` valid for `n * k` values and `dist` NULL or likewise.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_knn(
    x: *const f32,
    n: usize,
    d: usize,
    row_stride: usize,
    col_stride: usize,
    k: usize,
    metric: u32,
    method: u32,
    threads: u32,
    seed: u64,
    idx: *mut u32,
    dist: *mut f32,
    progress: ember_progress_fn,
    user: *mut c_void,
) -> ember_status {
    guard(|| {
        if x.is_null() || idx.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "x and idx must not be NULL");
        }
        let (metric, method) = match (metric_of(metric), knn_of(method)) {
            (Ok(m), Ok(k)) => (m, k),
            (Err(s), _) | (_, Err(s)) => return s,
        };
        if n >= 2 && (k == 0 || k >= n) {
            return fail(
                EMBER_ERR_INVALID_PARAMETER,
                &format!("k = {k} must satisfy 1 <= k <= N - 1 = {}", n - 1),
            );
        }
        with_matrix(x, n, d, row_stride, col_stride, |xm| {
            if let Err(e) = xm.check_values() {
                return from_core(e);
            }
            let Some(len) = n.checked_mul(k) else {
                return fail(EMBER_ERR_SHAPE, "n * k overflows");
            };
            let nnd = ember_core::nndescent::NnDescentParams {
                seed,
                ..Default::default()
            };
            let bytes =
                ember_core::neighbours::search_scratch(n, d, k, metric, method, &nnd).bytes();
            let (mut scratch, mut own_dist) = match (try_zeroed::<u8>(bytes), try_zeroed(len)) {
                (Ok(s), Ok(dv)) => (s, dv),
                (Err(s), _) | (_, Err(s)) => return s,
            };
            // SAFETY: the caller promised `idx` holds n * k values.
            let is = unsafe { std::slice::from_raw_parts_mut(idx, len) };
            let mut obs = Callback { f: progress, user };
            let par = Threads::new(threads as usize);
            if let Err(e) = ember_core::neighbours::search(
                xm,
                k,
                metric,
                method,
                &nnd,
                &par,
                &mut obs,
                &mut scratch,
                is,
                &mut own_dist,
            ) {
                return from_core(e);
            }
            if !dist.is_null() {
                metric_distances(metric, &mut own_dist);
                // SAFETY: non-NULL, and the caller promised n * k floats.
                unsafe { std::slice::from_raw_parts_mut(dist, len) }.copy_from_slice(&own_dist);
            }
            EMBER_OK
        })
    })
}

/// Exact search: the `k` nearest rows of `base` (`nb` rows) for each of the `nq` rows of
/// `queries`, both with `d` columns and their own strides (elements, as for ember_tsne).
/// `idx`/`dist` (dist may be NULL) receive `nq * k` values as for ember_knn.
///
/// # Safety
/// Each matrix valid for the elements its strides address; outputs as for ember_knn.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_knn_query(
    base: *const f32,
    nb: usize,
    base_row_stride: usize,
    base_col_stride: usize,
    queries: *const f32,
    nq: usize,
    query_row_stride: usize,
    query_col_stride: usize,
    d: usize,
    k: usize,
    metric: u32,
    threads: u32,
    idx: *mut u32,
    dist: *mut f32,
) -> ember_status {
    guard(|| {
        if base.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "base must not be NULL");
        }
        let metric = match metric_of(metric) {
            Ok(m) => m,
            Err(s) => return s,
        };
        with_any_matrix(base, nb, d, base_row_stride, base_col_stride, |bm| {
            if let Err(e) = bm.check_values() {
                return from_core(e);
            }
            let q = Queries {
                x: queries,
                n: nq,
                row_stride: query_row_stride,
                col_stride: query_col_stride,
            };
            query_base(bm, metric, &q, k, threads, idx, dist)
        })
    })
}

/// A caller's query matrix.
struct Queries {
    x: *const f32,
    n: usize,
    row_stride: usize,
    col_stride: usize,
}

/// Exact search of `q` against a checked base set; outputs as for ember_knn_query.
fn query_base(
    bm: MatRef,
    metric: Metric,
    q: &Queries,
    k: usize,
    threads: u32,
    idx: *mut u32,
    dist: *mut f32,
) -> ember_status {
    let nb = bm.rows();
    if q.x.is_null() || idx.is_null() {
        return fail(EMBER_ERR_NULL_POINTER, "queries and idx must not be NULL");
    }
    if k == 0 || k > nb {
        return fail(
            EMBER_ERR_INVALID_PARAMETER,
            &format!("k = {k} must satisfy 1 <= k <= number of base points = {nb}"),
        );
    }
    with_any_matrix(q.x, q.n, bm.cols(), q.row_stride, q.col_stride, |qm| {
        if let Err(e) = qm.check_values() {
            return from_core(e);
        }
        let Some(len) = q.n.checked_mul(k) else {
            return fail(EMBER_ERR_SHAPE, "nq * k overflows");
        };
        let norms_len = ember_core::knn::query_norms_len(nb, q.n);
        let (mut norms, mut own_dist) = match (try_zeroed(norms_len), try_zeroed(len)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(s), _) | (_, Err(s)) => return s,
        };
        // SAFETY: the caller promised `idx` holds nq * k values.
        let is = unsafe { std::slice::from_raw_parts_mut(idx, len) };
        let par = Threads::new(threads as usize);
        if let Err(e) = ember_core::knn::exact_knn_query(
            bm,
            qm,
            k,
            metric,
            ember_core::knn::Kernel::Simd,
            &par,
            &mut ember_core::Silent,
            &mut norms,
            is,
            &mut own_dist,
        ) {
            return from_core(e);
        }
        if !dist.is_null() {
            metric_distances(metric, &mut own_dist);
            // SAFETY: non-NULL, and the caller promised nq * k floats.
            unsafe { std::slice::from_raw_parts_mut(dist, len) }.copy_from_slice(&own_dist);
        }
        EMBER_OK
    })
}

/// A reference set kept for repeated neighbour queries (opaque; create with
/// ember_knn_index_new, release with ember_knn_index_free). Read-only once made, so any
/// number of threads may query one index at once.
pub struct ember_knn_index {
    rows: Vec<f32>,
    n: usize,
    d: usize,
    metric: Metric,
}

/// Copies `n` reference points (layout as for ember_tsne) into a new index for exact
/// queries under `metric`, and stores it in `*index` (NULL on failure).
///
/// # Safety
/// `x` as for ember_tsne; `index` valid for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_knn_index_new(
    x: *const f32,
    n: usize,
    d: usize,
    row_stride: usize,
    col_stride: usize,
    metric: u32,
    index: *mut *mut ember_knn_index,
) -> ember_status {
    guard(|| {
        if index.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "index must not be NULL");
        }
        // SAFETY: non-NULL, one pointer.
        unsafe { *index = std::ptr::null_mut() };
        if x.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "x must not be NULL");
        }
        let metric = match metric_of(metric) {
            Ok(m) => m,
            Err(s) => return s,
        };
        with_any_matrix(x, n, d, row_stride, col_stride, |xm| {
            if let Err(e) = xm.check_values() {
                return from_core(e);
            }
            let mut rows = match try_zeroed::<f32>(n * d) {
                Ok(v) => v,
                Err(s) => return s,
            };
            for i in 0..n {
                rows[i * d..(i + 1) * d].copy_from_slice(xm.row(i));
            }
            let boxed = Box::new(ember_knn_index { rows, n, d, metric });
            // SAFETY: non-NULL, one pointer.
            unsafe { *index = Box::into_raw(boxed) };
            EMBER_OK
        })
    })
}

/// The number of reference points and their dimension (either pointer may be NULL).
///
/// # Safety
/// `index` NULL or from ember_knn_index_new; `n`, `d` NULL or valid for one value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_knn_index_shape(
    index: *const ember_knn_index,
    n: *mut usize,
    d: *mut usize,
) -> ember_status {
    guard(|| {
        // SAFETY: the caller promised NULL or a live index.
        let Some(ix) = (unsafe { index.as_ref() }) else {
            return fail(EMBER_ERR_NULL_POINTER, "index must not be NULL");
        };
        // SAFETY: each is NULL or valid for one value.
        unsafe {
            if let Some(n) = n.as_mut() {
                *n = ix.n;
            }
            if let Some(d) = d.as_mut() {
                *d = ix.d;
            }
        }
        EMBER_OK
    })
}

/// The `k` nearest reference points of each of the `nq` query rows (with the index's
/// dimension and their own strides), exactly; outputs as for ember_knn_query.
///
/// # Safety
/// `index` NULL or from ember_knn_index_new; the rest as for ember_knn_query.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_knn_index_query(
    index: *const ember_knn_index,
    queries: *const f32,
    nq: usize,
    row_stride: usize,
    col_stride: usize,
    k: usize,
    threads: u32,
    idx: *mut u32,
    dist: *mut f32,
) -> ember_status {
    guard(|| {
        // SAFETY: the caller promised NULL or a live index.
        let Some(ix) = (unsafe { index.as_ref() }) else {
            return fail(EMBER_ERR_NULL_POINTER, "index must not be NULL");
        };
        let bm = match MatRef::dense(&ix.rows, ix.n, ix.d) {
            Ok(m) => m,
            Err(e) => return from_core(e),
        };
        let q = Queries {
            x: queries,
            n: nq,
            row_stride,
            col_stride,
        };
        query_base(bm, ix.metric, &q, k, threads, idx, dist)
    })
}

/// Frees the index `*index` and sets `*index` to NULL, so a second call is harmless;
/// `index` NULL or `*index` NULL does nothing.
///
/// # Safety
/// `index` NULL, or pointing to NULL or to an index from ember_knn_index_new that no other
/// thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_knn_index_free(index: *mut *mut ember_knn_index) {
    // SAFETY: the caller's promise above is `free_handle`'s.
    unsafe { free_handle(index) }
}

/// Frees the boxed handle `*handle` and sets it to NULL; NULL or `*handle` NULL does nothing.
///
/// # Safety
/// `handle` NULL, or pointing to NULL or to a pointer from `Box::into_raw` that no one else
/// uses or frees.
unsafe fn free_handle<T>(handle: *mut *mut T) {
    if handle.is_null() {
        return;
    }
    // SAFETY: the caller promised a pointer to NULL or to a live handle it owns.
    let p = unsafe { std::mem::replace(&mut *handle, std::ptr::null_mut()) };
    if !p.is_null() {
        // SAFETY: made by Box::into_raw and not yet freed (the caller's promise).
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Mean fraction of each point's `k` reference neighbours (say, in the data) found among
/// its `k` neighbours in `found` (say, in the embedding): recall@k. Both are `n * k`
/// row-major index lists, as ember_knn writes them. The result goes to `*out`.
///
/// # Safety
/// `reference` and `found` valid for `n * k` values, `out` for one double.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_knn_recall(
    reference: *const u32,
    found: *const u32,
    n: usize,
    k: usize,
    out: *mut f64,
) -> ember_status {
    guard(|| {
        if reference.is_null() || found.is_null() || out.is_null() {
            return fail(
                EMBER_ERR_NULL_POINTER,
                "reference, found and out must not be NULL",
            );
        }
        let Some(len) = n.checked_mul(k).filter(|&l| l > 0) else {
            return fail(EMBER_ERR_SHAPE, "need n >= 1 and k >= 1");
        };
        // SAFETY: the caller promised n * k values in each list.
        let (r, f) = unsafe {
            (
                std::slice::from_raw_parts(reference, len),
                std::slice::from_raw_parts(found, len),
            )
        };
        match ember_core::metrics::knn_recall(r, f, k) {
            Ok(v) => {
                // SAFETY: non-NULL, one double.
                unsafe { *out = v };
                EMBER_OK
            }
            Err(e) => from_core(e),
        }
    })
}

/// k-NN classification accuracy of an embedding `y` (`n` rows of `dims` floats, row-major):
/// a seeded random `test_fraction` of the points (0.1 is usual) is classified by majority
/// vote of its `k` nearest other points (10 is usual). The result goes to `*out`.
///
/// # Safety
/// `y` valid for `n * dims` floats, `labels` for `n` values, `out` for one double.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_knn_accuracy(
    y: *const f32,
    n: usize,
    dims: usize,
    labels: *const u32,
    k: usize,
    test_fraction: f64,
    seed: u64,
    threads: u32,
    out: *mut f64,
) -> ember_status {
    guard(|| {
        if labels.is_null() || out.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "labels and out must not be NULL");
        }
        let ym = match rows_view(y, n, dims, dims, "y") {
            Ok(m) => m,
            Err(s) => return s,
        };
        if let Err(e) = ym.check_values() {
            return from_core(e);
        }
        // SAFETY: the caller promised n labels.
        let ls = unsafe { std::slice::from_raw_parts(labels, n) };
        let bytes = ember_core::metrics::knn_accuracy_scratch(n, dims, k).bytes();
        let mut scratch = match try_zeroed::<u8>(bytes) {
            Ok(s) => s,
            Err(s) => return s,
        };
        let par = Threads::new(threads as usize);
        match ember_core::metrics::knn_accuracy(ym, ls, k, test_fraction, seed, &par, &mut scratch)
        {
            Ok(v) => {
                // SAFETY: non-NULL, one double.
                unsafe { *out = v };
                EMBER_OK
            }
            Err(e) => from_core(e),
        }
    })
}

pub const EMBER_METHOD_TSNE: u32 = 1;
pub const EMBER_METHOD_UMAP: u32 = 2;

/// A fitted t-SNE or UMAP model (opaque): the reference data, its embedding and the
/// settings, for placing new points with ember_model_transform. Read-only once made, so any
/// number of threads may transform through one model at once.
pub struct ember_model {
    inner: ember_core::fitted::FittedModel,
}

/// Transform settings. Fill with ember_transform_params_default(); 0 keeps a default.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ember_transform_params {
    /// sizeof(ember_transform_params) as the caller compiled it.
    pub struct_size: u32,
    /// t-SNE: perplexity of each new point's neighbourhood (0 = 5).
    pub perplexity: f32,
    /// Reference neighbours per new point (0 = t-SNE 25, UMAP the fit's).
    pub neighbors: u32,
    /// t-SNE iterations (0 = 250) or UMAP epochs (0 = 100).
    pub iters: u32,
    /// Learning rate (0 = t-SNE 0.1, UMAP a quarter of the fit's).
    pub learning_rate: f32,
    /// t-SNE: exaggeration of the attraction (0 = 1.5).
    pub exaggeration: f32,
    /// Worker threads; 0 = all cores. The result does not depend on it.
    pub threads: u32,
}

/// Every field 0: the method's defaults, all cores.
#[unsafe(no_mangle)]
pub extern "C" fn ember_transform_params_default() -> ember_transform_params {
    ember_transform_params {
        struct_size: size_of::<ember_transform_params>() as u32,
        perplexity: 0.0,
        neighbors: 0,
        iters: 0,
        learning_rate: 0.0,
        exaggeration: 0.0,
        threads: 0,
    }
}

fn store_model(out: *mut *mut ember_model, m: ember_core::fitted::FittedModel) {
    // SAFETY: the callers checked `out` is non-NULL.
    unsafe { *out = Box::into_raw(Box::new(ember_model { inner: m })) };
}

/// Fits a model: t-SNE (`method` EMBER_METHOD_TSNE, `params` NULL or an ember_tsne_params)
/// or UMAP (EMBER_METHOD_UMAP, NULL or an ember_umap_params) of `n` points laid out as for
/// ember_tsne, and stores it in `*model` (NULL on failure). The struct_size of `params` must
/// be that of the method's struct. `ember_model_embedding` gives the fit's embedding.
///
/// # Safety
/// As for ember_tsne; `params` NULL or the method's parameter struct; `model` valid for one
/// pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_model_fit(
    x: *const f32,
    n: usize,
    d: usize,
    row_stride: usize,
    col_stride: usize,
    method: u32,
    params: *const c_void,
    progress: ember_progress_fn,
    user: *mut c_void,
    model: *mut *mut ember_model,
) -> ember_status {
    guard(|| {
        if model.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "model must not be NULL");
        }
        // SAFETY: non-NULL, one pointer.
        unsafe { *model = std::ptr::null_mut() };
        if x.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "x must not be NULL");
        }
        let mut obs = Callback { f: progress, user };
        match method {
            EMBER_METHOD_TSNE => {
                // SAFETY: the caller promised NULL or an ember_tsne_params.
                let cp = match unsafe {
                    read_params(
                        params.cast::<ember_tsne_params>(),
                        ember_tsne_params_default(),
                        "ember_tsne_params",
                    )
                } {
                    Ok(c) => c,
                    Err(s) => return s,
                };
                let tp = match to_core(&cp) {
                    Ok(t) => t,
                    Err(s) => return s,
                };
                if let Err(e) = tp.validate() {
                    return from_core(e);
                }
                with_matrix(x, n, d, row_stride, col_stride, |xm| {
                    let par = Threads::new(cp.threads as usize);
                    let bytes = ember_core::tsne::tsne_scratch(n, d, &tp).bytes();
                    let (mut scratch, mut y) =
                        match (try_zeroed::<u8>(bytes), try_zeroed::<f32>(n * tp.dims)) {
                            (Ok(a), Ok(b)) => (a, b),
                            (Err(s), _) | (_, Err(s)) => return s,
                        };
                    if let Err(e) =
                        ember_core::tsne::tsne(xm, &tp, &par, &mut obs, &mut scratch, &mut y)
                    {
                        return from_core(e);
                    }
                    drop(scratch);
                    let basis = match tp
                        .reduced_dims(d)
                        .map(|r| ember_core::fitted::pca_basis(xm, r, tp.seed, &par))
                        .transpose()
                    {
                        Ok(b) => b,
                        Err(e) => return from_core(e),
                    };
                    let m = ember_core::model::Method::Tsne {
                        dof: tp.dof,
                        perplexity: tp.perplexity,
                    };
                    match ember_core::fitted::FittedModel::from_fit(
                        m, tp.metric, xm, basis, y, tp.dims, tp.seed, &par,
                    ) {
                        Ok(fitted) => {
                            store_model(model, fitted);
                            EMBER_OK
                        }
                        Err(e) => from_core(e),
                    }
                })
            }
            EMBER_METHOD_UMAP => {
                // SAFETY: the caller promised NULL or an ember_umap_params.
                let cp = match unsafe {
                    read_params(
                        params.cast::<ember_umap_params>(),
                        ember_umap_params_default(),
                        "ember_umap_params",
                    )
                } {
                    Ok(c) => c,
                    Err(s) => return s,
                };
                let up = match umap_to_core(&cp) {
                    Ok(u) => u,
                    Err(s) => return s,
                };
                with_matrix(x, n, d, row_stride, col_stride, |xm| {
                    let par = Threads::new(cp.threads as usize);
                    let bytes = ember_core::umap::umap_scratch(n, d, &up).bytes();
                    let (mut scratch, mut y) =
                        match (try_zeroed::<u8>(bytes), try_zeroed::<f32>(n * up.dims)) {
                            (Ok(a), Ok(b)) => (a, b),
                            (Err(s), _) | (_, Err(s)) => return s,
                        };
                    let summary =
                        match ember_core::umap::umap(xm, &up, &par, &mut obs, &mut scratch, &mut y)
                        {
                            Ok(s) => s,
                            Err(e) => return from_core(e),
                        };
                    note_init(summary.init);
                    drop(scratch);
                    let m = ember_core::model::Method::Umap {
                        a: summary.a,
                        b: summary.b,
                        neighbors: up.neighbors,
                        negatives: up.negatives,
                        learning_rate: up.learning_rate,
                        min_dist: up.min_dist,
                        spread: up.spread,
                    };
                    match ember_core::fitted::FittedModel::from_fit(
                        m, up.metric, xm, None, y, up.dims, up.seed, &par,
                    ) {
                        Ok(fitted) => {
                            store_model(model, fitted);
                            EMBER_OK
                        }
                        Err(e) => from_core(e),
                    }
                })
            }
            _ => fail(
                EMBER_ERR_INVALID_PARAMETER,
                "invalid method: use EMBER_METHOD_TSNE or EMBER_METHOD_UMAP",
            ),
        }
    })
}

/// The model's method (EMBER_METHOD_*), reference points, input columns and output
/// dimensions; any output pointer may be NULL.
///
/// # Safety
/// `model` NULL or from ember_model_fit/_load/_from_bytes; outputs NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_model_info(
    model: *const ember_model,
    method: *mut u32,
    n: *mut usize,
    input_dims: *mut usize,
    dims: *mut usize,
) -> ember_status {
    guard(|| {
        // SAFETY: the caller promised NULL or a live model.
        let Some(m) = (unsafe { model.as_ref() }) else {
            return fail(EMBER_ERR_NULL_POINTER, "model must not be NULL");
        };
        let h = m.inner.header();
        let kind = match h.method {
            ember_core::model::Method::Tsne { .. } => EMBER_METHOD_TSNE,
            ember_core::model::Method::Umap { .. } => EMBER_METHOD_UMAP,
        };
        // SAFETY: each is NULL or valid for one value.
        unsafe {
            if let Some(p) = method.as_mut() {
                *p = kind;
            }
            if let Some(p) = n.as_mut() {
                *p = h.n;
            }
            if let Some(p) = input_dims.as_mut() {
                *p = h.input_dims;
            }
            if let Some(p) = dims.as_mut() {
                *p = h.dims;
            }
        }
        EMBER_OK
    })
}

/// Copies the fit's embedding (n × dims floats, row-major) into `y`.
///
/// # Safety
/// `model` NULL or live; `y` valid for n × dims floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_model_embedding(
    model: *const ember_model,
    y: *mut f32,
) -> ember_status {
    guard(|| {
        // SAFETY: the caller promised NULL or a live model.
        let Some(m) = (unsafe { model.as_ref() }) else {
            return fail(EMBER_ERR_NULL_POINTER, "model must not be NULL");
        };
        let e = m.inner.embedding();
        match out_slice(y, e.len(), "y") {
            Ok(out) => {
                out.copy_from_slice(e);
                EMBER_OK
            }
            Err(s) => s,
        }
    })
}

/// Places `nq` new points (with the fitted data's columns, laid out by the strides as for
/// ember_tsne) into the model's embedding without moving it: `y` receives nq × dims floats.
/// Each point's result depends on that point alone, not on the others in the call, and not
/// on the thread count. `params` may be NULL for the defaults; `progress` as for ember_tsne.
///
/// # Safety
/// `model` NULL or live; `queries` as for ember_tsne; `y` valid for nq × dims floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_model_transform(
    model: *const ember_model,
    queries: *const f32,
    nq: usize,
    row_stride: usize,
    col_stride: usize,
    params: *const ember_transform_params,
    y: *mut f32,
    progress: ember_progress_fn,
    user: *mut c_void,
) -> ember_status {
    guard(|| {
        // SAFETY: the caller promised NULL or a live model.
        let Some(m) = (unsafe { model.as_ref() }) else {
            return fail(EMBER_ERR_NULL_POINTER, "model must not be NULL");
        };
        if queries.is_null() || y.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "queries and y must not be NULL");
        }
        // SAFETY: the caller promised NULL or a valid struct.
        let tp = match unsafe {
            read_params(
                params,
                ember_transform_params_default(),
                "ember_transform_params",
            )
        } {
            Ok(p) => p,
            Err(s) => return s,
        };
        let nonzero_f = |v: f32| (v != 0.0).then_some(v);
        let nonzero_u = |v: u32| (v != 0).then_some(v as usize);
        let opts = ember_core::fitted::TransformOptions {
            perplexity: nonzero_f(tp.perplexity),
            neighbours: nonzero_u(tp.neighbors),
            iters: nonzero_u(tp.iters),
            learning_rate: nonzero_f(tp.learning_rate),
            exaggeration: nonzero_f(tp.exaggeration),
        };
        let h = *m.inner.header();
        if nq == 0 {
            return fail(EMBER_ERR_SHAPE, "nq must be at least 1");
        }
        with_any_matrix(queries, nq, h.input_dims, row_stride, col_stride, |qm| {
            let Some(len) = nq.checked_mul(h.dims) else {
                return fail(EMBER_ERR_SHAPE, "nq * dims overflows");
            };
            let out = match out_slice(y, len, "y") {
                Ok(o) => o,
                Err(s) => return s,
            };
            let mut obs = Callback { f: progress, user };
            let par = Threads::new(tp.threads as usize);
            match m.inner.transform(qm, &opts, &par, &mut obs, out) {
                Ok(()) => EMBER_OK,
                Err(e) => from_core(e),
            }
        })
    })
}

/// The model file's bytes: with `bytes` NULL (or `capacity` too small) only `*len` is set to
/// the size needed (and EMBER_ERR_SHAPE returned when `bytes` is non-NULL but too small).
///
/// # Safety
/// `model` NULL or live; `bytes` NULL or valid for `capacity` bytes; `len` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_model_to_bytes(
    model: *const ember_model,
    bytes: *mut u8,
    capacity: usize,
    len: *mut usize,
) -> ember_status {
    guard(|| {
        // SAFETY: the caller promised NULL or a live model.
        let Some(m) = (unsafe { model.as_ref() }) else {
            return fail(EMBER_ERR_NULL_POINTER, "model must not be NULL");
        };
        if len.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "len must not be NULL");
        }
        let Some(needed) = m.inner.header().encoded_len() else {
            return fail(EMBER_ERR_INTERNAL, "model size overflows");
        };
        // SAFETY: non-NULL, one value.
        unsafe { *len = needed };
        if bytes.is_null() {
            return EMBER_OK;
        }
        if capacity < needed {
            return fail(
                EMBER_ERR_SHAPE,
                &format!("capacity {capacity} is below the {needed} bytes needed"),
            );
        }
        match m.inner.to_bytes() {
            Ok(v) => {
                // SAFETY: the caller promised `capacity` >= needed bytes at `bytes`.
                unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), bytes, v.len()) };
                EMBER_OK
            }
            Err(e) => from_core(e),
        }
    })
}

/// A model from the bytes of a model file (checked: version, byte order, length, checksum),
/// stored in `*model` (NULL on failure).
///
/// # Safety
/// `bytes` valid for `len` bytes; `model` valid for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_model_from_bytes(
    bytes: *const u8,
    len: usize,
    model: *mut *mut ember_model,
) -> ember_status {
    guard(|| {
        if model.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "model must not be NULL");
        }
        // SAFETY: non-NULL, one pointer.
        unsafe { *model = std::ptr::null_mut() };
        if bytes.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "bytes must not be NULL");
        }
        // SAFETY: the caller promised `len` readable bytes.
        let b = unsafe { std::slice::from_raw_parts(bytes, len) };
        match ember_core::fitted::FittedModel::from_bytes(b) {
            Ok(m) => {
                store_model(model, m);
                EMBER_OK
            }
            Err(e) => from_core(e),
        }
    })
}

fn path_of<'a>(path: *const c_char) -> Result<&'a std::path::Path, ember_status> {
    if path.is_null() {
        return Err(fail(EMBER_ERR_NULL_POINTER, "path must not be NULL"));
    }
    // SAFETY: the caller promised a NUL-terminated string.
    let c = unsafe { std::ffi::CStr::from_ptr(path) };
    c.to_str()
        .map(std::path::Path::new)
        .map_err(|_| fail(EMBER_ERR_INVALID_PARAMETER, "path is not UTF-8"))
}

/// Saves the model to the file `path`, through a temporary file renamed into place, so a
/// failure leaves no partial file.
///
/// # Safety
/// `model` NULL or live; `path` NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_model_save(
    model: *const ember_model,
    path: *const c_char,
) -> ember_status {
    guard(|| {
        // SAFETY: the caller promised NULL or a live model.
        let Some(m) = (unsafe { model.as_ref() }) else {
            return fail(EMBER_ERR_NULL_POINTER, "model must not be NULL");
        };
        let path = match path_of(path) {
            Ok(p) => p,
            Err(s) => return s,
        };
        let bytes = match m.inner.to_bytes() {
            Ok(b) => b,
            Err(e) => return from_core(e),
        };
        let name = path.file_name().map(|f| f.to_string_lossy().into_owned());
        let Some(name) = name else {
            return fail(
                EMBER_ERR_IO,
                &format!("{}: not a file path", path.display()),
            );
        };
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, path));
        match written {
            Ok(()) => EMBER_OK,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                fail(
                    EMBER_ERR_IO,
                    &format!("{}: cannot write: {e}", path.display()),
                )
            }
        }
    })
}

/// Loads a model saved by ember_model_save (or `ember ... --save-model`) into `*model`
/// (NULL on failure).
///
/// # Safety
/// `path` NULL or a NUL-terminated string; `model` valid for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_model_load(
    path: *const c_char,
    model: *mut *mut ember_model,
) -> ember_status {
    guard(|| {
        if model.is_null() {
            return fail(EMBER_ERR_NULL_POINTER, "model must not be NULL");
        }
        // SAFETY: non-NULL, one pointer.
        unsafe { *model = std::ptr::null_mut() };
        let path = match path_of(path) {
            Ok(p) => p,
            Err(s) => return s,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                return fail(
                    EMBER_ERR_IO,
                    &format!("{}: cannot read: {e}", path.display()),
                );
            }
        };
        match ember_core::fitted::FittedModel::from_bytes(&bytes) {
            Ok(m) => {
                store_model(model, m);
                EMBER_OK
            }
            Err(e) => {
                let status = from_core(e);
                set_last_error(&format!("{}: {e}", path.display()));
                status
            }
        }
    })
}

/// Frees the model `*model` and sets `*model` to NULL, so a second call is harmless;
/// `model` NULL or `*model` NULL does nothing.
///
/// # Safety
/// `model` NULL, or pointing to NULL or to a model no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_model_free(model: *mut *mut ember_model) {
    // SAFETY: the caller's promise above is `free_handle`'s.
    unsafe { free_handle(model) }
}

/// A static, human-readable description of a status code.
#[unsafe(no_mangle)]
pub extern "C" fn ember_status_message(status: i32) -> *const c_char {
    let s: &'static [u8] = match status {
        0 => b"ok\0",
        1 => b"a required pointer was NULL\0",
        2 => b"the data holds NaN or infinity\0",
        3 => b"inconsistent shape or strides\0",
        4 => b"a parameter is out of range\0",
        5 => b"perplexity too large: it must be at most N - 1\0",
        6 => b"too few points\0",
        7 => b"cancelled by the progress callback\0",
        8 => b"out of memory\0",
        9 => b"struct_size does not match this library\0",
        10 => b"internal error\0",
        11 => b"a zero vector has no cosine similarity\0",
        12 => b"not a valid ember model (corrupt, truncated, byte-swapped or another version)\0",
        13 => b"a file could not be opened, read or written\0",
        14 => b"values too large or too small: squared distances leave single precision\0",
        _ => b"unknown status code\0",
    };
    s.as_ptr().cast()
}

/// Details of the last error on this thread (empty after a success). Valid until the next
/// ember call on the same thread.
#[unsafe(no_mangle)]
pub extern "C" fn ember_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library version, e.g. "0.1.0".
#[unsafe(no_mangle)]
pub extern "C" fn ember_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `capi` fuzz target: a neighbour count far above N made the size query
    /// ask for gigabytes (UMAP, 9.9 M neighbours of 28 points) or terabytes (NE, 2³² − 1 of
    /// 17) before the run could refuse it. Now it is refused first, naming the parameter.
    #[test]
    fn neighbour_counts_beyond_n_are_refused_before_any_allocation() {
        let n = 28;
        let x: Vec<f32> = (0..n * 2).map(|i| (i % 7) as f32).collect();
        let mut y = vec![0.0f32; n * 2];
        // Each call must refuse with a message naming the parameter.
        let refuses = |status: ember_status| {
            let message = unsafe { std::ffi::CStr::from_ptr(ember_last_error_message()) };
            assert_eq!(status, ember_status::EMBER_ERR_INVALID_PARAMETER);
            assert!(
                message.to_string_lossy().contains("neighbors"),
                "{message:?}"
            );
        };
        let (xp, yp, none) = (x.as_ptr(), y.as_mut_ptr(), std::ptr::null_mut());
        let mut up = ember_umap_params_default();
        up.neighbors = 9_903_000;
        refuses(unsafe { ember_umap(xp, n, 2, 2, 1, &up, yp, None, none) });
        let mut np = ember_ne_params_default();
        np.neighbors = u32::MAX;
        refuses(unsafe { ember_ne(xp, n, 2, 2, 1, &np, yp, None, none) });
        // The size queries themselves stay bounded by the data.
        let core_umap = ember_core::umap::UmapParams {
            neighbors: 9_903_000,
            ..Default::default()
        };
        assert!(ember_core::umap::umap_scratch(n, 2, &core_umap).bytes() < 1 << 20);
        let core_ne = ember_core::ne::NeParams {
            neighbors: u32::MAX as usize,
            ..Default::default()
        };
        assert!(ember_core::ne::ne_scratch(n, 2, &core_ne).bytes() < 1 << 20);
    }

    #[test]
    fn version_constants_match_the_package() {
        let want = [
            env!("CARGO_PKG_VERSION_MAJOR"),
            env!("CARGO_PKG_VERSION_MINOR"),
            env!("CARGO_PKG_VERSION_PATCH"),
        ];
        let got = [
            super::EMBER_VERSION_MAJOR,
            super::EMBER_VERSION_MINOR,
            super::EMBER_VERSION_PATCH,
        ];
        for (w, g) in want.iter().zip(got) {
            assert_eq!(w.parse::<u32>().unwrap(), g);
        }
    }
}
