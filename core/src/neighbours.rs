//! The neighbour-search stage shared by every method: exact tiles or RP trees + NN-descent,
//! chosen by N. Writes `k` neighbours per row, ascending by distance, never the row itself.

use crate::error::Result;
use crate::knn::{self, Kernel, Metric};
use crate::matrix::MatRef;
use crate::nndescent::{self, NnDescentParams};
use crate::observer::{Observer, Stage, enter};
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

/// Scratch for `stage`: its outputs and the search's own scratch.
pub fn stage_scratch(
    n: usize,
    d: usize,
    k: usize,
    metric: Metric,
    method: KnnMethod,
    nnd: &NnDescentParams,
) -> ScratchSize {
    ScratchSize::new()
        .plus::<u32>(n * k)
        .plus::<f32>(n * k)
        .plus::<usize>(n)
        .plus::<u8>(search_scratch(n, d, k, metric, method, nnd).bytes())
}

/// The neighbour stage of every pipeline: carves the neighbour lists (`n·k` indices and
/// distances) and an `n`-long cursor for the graph step from `scratch`, tells the observer the
/// kNN stage begins, searches (the approximate search seeded by `seed`), and tells it the
/// affinity stage begins.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn stage<'a>(
    x: MatRef,
    k: usize,
    metric: Metric,
    method: KnnMethod,
    nnd: &NnDescentParams,
    seed: u64,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &'a mut [u8],
) -> Result<(&'a mut [u32], &'a mut [f32], &'a mut [usize])> {
    let n = x.rows();
    let mut st = Scratch::new(scratch);
    let idx = st.take::<u32>(n * k, "knn indices")?;
    let dist = st.take::<f32>(n * k, "knn distances")?;
    let cursor = st.take::<usize>(n, "symmetrize cursor")?;
    enter(obs, Stage::Knn, n)?;
    let nd = NnDescentParams { seed, ..*nnd };
    search(
        x,
        k,
        metric,
        method,
        &nd,
        par,
        obs,
        st.rest_mut(),
        idx,
        dist,
    )?;
    enter(obs, Stage::Affinities, 1)?;
    Ok((idx, dist, cursor))
}
