//! The neighbour-search stage shared by every method: exact tiles or RP trees + NN-descent,
//! chosen by N. Writes `k` neighbours per row, ascending by distance, never the row itself.

use crate::error::Result;
use crate::knn::{self, Kernel, Metric};
use crate::matrix::MatRef;
use crate::nndescent::{self, NnDescentParams};
use crate::observer::Observer;
use crate::parallel::Parallel;
use crate::scratch::{Scratch, ScratchSize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnnMethod {
    Exact,
    /// Random-projection trees + NN-descent.
    Approx,
    /// Exact up to `AUTO_EXACT_KNN_MAX` points, approximate above.
    Auto,
}

/// Largest N for which `KnnMethod::Auto` searches exactly.
pub const AUTO_EXACT_KNN_MAX: usize = 5000;

impl KnnMethod {
    /// The search actually used for `n` points.
    pub fn resolve(self, n: usize) -> KnnMethod {
        match self {
            KnnMethod::Auto if n <= AUTO_EXACT_KNN_MAX => KnnMethod::Exact,
            KnnMethod::Auto => KnnMethod::Approx,
            m => m,
        }
    }
}

/// Scratch for `search` (besides its `idx`/`dist` outputs).
pub fn search_scratch(
    n: usize,
    d: usize,
    k: usize,
    metric: Metric,
    method: KnnMethod,
    nnd: &NnDescentParams,
) -> ScratchSize {
    let s = ScratchSize::new().plus::<f32>(knn::self_norms_len(n));
    match method.resolve(n) {
        KnnMethod::Exact => s,
        _ => s.plus::<u8>(nndescent::nn_descent_scratch(n, d, k, metric, nnd).bytes()),
    }
}

/// The `k` nearest neighbours of every row of `x` (`idx`, `dist`: `n*k`). Distances are those
/// of `metric` (squared for Euclidean). `nnd.seed` seeds the approximate search.
#[allow(clippy::too_many_arguments)]
pub fn search(
    x: MatRef,
    k: usize,
    metric: Metric,
    method: KnnMethod,
    nnd: &NnDescentParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    idx: &mut [u32],
    dist: &mut [f32],
) -> Result<()> {
    let n = x.rows();
    let mut st = Scratch::new(scratch);
    let norms = st.take::<f32>(knn::self_norms_len(n), "knn norms")?;
    match method.resolve(n) {
        KnnMethod::Exact => knn::exact_knn(x, k, metric, Kernel::Simd, par, obs, norms, idx, dist),
        _ => {
            let sc = st.take::<u8>(
                nndescent::nn_descent_scratch(n, x.cols(), k, metric, nnd).bytes(),
                "nn-descent",
            )?;
            nndescent::nn_descent(x, k, metric, nnd, par, obs, sc, idx, dist)
        }
    }
}
