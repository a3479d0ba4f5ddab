//! The C ABI of ember. Every export catches panics, checks pointers and lengths, and
//! returns an `ember_status`; results go to caller-provided buffers.
#![allow(non_camel_case_types)]

use ember_core::knn::Metric;
use ember_core::threads::Threads;
use ember_core::tsne::{Init, KnnMethod, Repulsion, TsneParams};
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
}
use ember_status::*;

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
    };
    fail(s, &e.to_string())
}

/// Runs `f` with a panic boundary.
fn guard(f: impl FnOnce() -> ember_status) -> ember_status {
    set_last_error("");
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
        if d == 0 {
            return from_core(Error::NoDimensions);
        }
        if n < 2 {
            return from_core(Error::TooFewPoints { n, min: 2 });
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
            Ok(xm) => run_tsne(xm, &tp, cp.threads as usize, y, progress, user),
            Err(e) => from_core(e),
        }
    })
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
