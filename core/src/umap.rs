//! UMAP (MATH §4): smooth-kNN memberships, the fuzzy union graph, the `a, b` fit of the
//! output curve, spectral initialisation, and SGD through the contrastive engine in `ne`.
//!
//! Conventions follow umap-learn so that its users get what they expect: `neighbors` counts
//! the point itself (15 means 14 other points), the memberships of a row sum to log₂(neighbors),
//! distances are Euclidean (not squared), and edges lighter than max/epochs are dropped.

use crate::affinity::{self, Combine, CsrRef};
use crate::error::{Error, Result, ensure, ensure_len};
use crate::init;
use crate::knn::Metric;
use crate::matrix::MatRef;
use crate::ne::{self, Loss, SgdParams, SgdSummary};
use crate::neighbours::{self, KnnMethod};
use crate::nndescent::NnDescentParams;
use crate::observer::{Observer, Stage, enter};
use crate::parallel::{Parallel, for_row_chunks};
use crate::scratch::{Scratch, ScratchSize};
use crate::spectral::{self, SpectralOutcome};

/// Most steps of the search for σ (umap-learn's bisection count).
const SIGMA_STEPS: usize = 64;
/// Relative floor of σ against the mean neighbour distance.
const MIN_SIGMA_SCALE: f64 = 1e-3;
/// Rows per parallel task of the membership computation.
const TASK_ROWS: usize = 256;

/// Turns each row of `k` ascending neighbour distances into directed memberships
/// `v_{j|i} = exp(−max(0, d_ij − ρ_i)/σ_i)` in place, with ρ_i the nearest non-zero distance and
/// σ_i found so the row sums to log₂(k + 1). Distances must be the metric itself
/// (Euclidean, not squared).
pub fn smooth_knn(dist: &mut [f32], k: usize, par: &dyn Parallel) -> Result<()> {
    ensure(
        k >= 1 && dist.len() % k == 0,
        "distances",
        "length is not a multiple of k",
    )?;
    if let Some(i) = dist.iter().position(|d| !d.is_finite() || *d < 0.0) {
        return Err(Error::NonFinite {
            row: i / k,
            col: i % k,
        });
    }
    let n = dist.len() / k;
    let target = libm::log2((k + 1) as f64);
    for_row_chunks(par, n, TASK_ROWS, dist, k, &|_, _, rows, chunk| {
        for r in 0..rows {
            memberships_row(&mut chunk[r * k..(r + 1) * k], target, true);
        }
    });
    Ok(())
}

/// Memberships of new points in a fitted graph, as umap-learn's transform computes them:
/// each row holds the `k` distances to the point's nearest reference points (the point is
/// not among them), ρ = 0 (the local connectivity lowered by one), and σ makes the row sum
/// to log₂(k). Rows are independent of each other.
pub fn transform_memberships(dist: &mut [f32], k: usize) -> Result<()> {
    ensure(
        k >= 1 && dist.len() % k == 0,
        "distances",
        "length is not a multiple of k",
    )?;
    if let Some(i) = dist.iter().position(|d| !d.is_finite() || *d < 0.0) {
        return Err(Error::NonFinite {
            row: i / k,
            col: i % k,
        });
    }
    let target = libm::log2(k as f64);
    for row in dist.chunks_exact_mut(k) {
        memberships_row(row, target, false);
    }
    Ok(())
}

/// `rho_nearest`: ρ is the nearest non-zero distance (the fit), else 0 (transform).
fn memberships_row(d: &mut [f32], target: f64, rho_nearest: bool) {
    let rho = if rho_nearest {
        d.iter().copied().find(|&v| v > 0.0).unwrap_or(0.0) as f64
    } else {
        0.0
    };
    // The row sum and its derivative in σ: Σ e^(−x/σ) and Σ e^(−x/σ)·x/σ² over the excesses
    // x > 0 (each x ≤ 0 adds 1).
    let sum_at = |sigma: f64| -> (f64, f64) {
        let (mut s, mut ds) = (0.0f64, 0.0f64);
        for &v in d.iter() {
            let excess = v as f64 - rho;
            if excess > 0.0 {
                let e = libm::exp(-excess / sigma);
                s += e;
                ds += e * excess;
            } else {
                s += 1.0;
            }
        }
        (s, ds / (sigma * sigma))
    };
    // umap-learn bisects from σ = 1 to |sum − target| < 1e-5. The same test ends a bracketed
    // Newton iteration here, from the scale of the excesses: a few steps instead of ~30.
    let positive = d.iter().map(|&v| v as f64 - rho).filter(|&x| x > 0.0);
    let (total, count) = positive.fold((0.0f64, 0usize), |(t, c), x| (t + x, c + 1));
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    let mut sigma = if count > 0 { total / count as f64 } else { 1.0 };
    for _ in 0..SIGMA_STEPS {
        let (s, slope) = sum_at(sigma);
        if (s - target).abs() < 1e-5 {
            break;
        }
        // The sum grows with σ.
        if s > target {
            hi = sigma;
        } else {
            lo = sigma;
        }
        let newton = if slope > 0.0 {
            sigma - (s - target) / slope
        } else {
            f64::NAN
        };
        sigma = if newton > lo && newton < hi {
            newton
        } else if hi.is_finite() {
            0.5 * (lo + hi)
        } else {
            sigma * 2.0
        };
    }
    let mean = d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64;
    sigma = sigma.max(MIN_SIGMA_SCALE * mean);
    for v in d.iter_mut() {
        let excess = *v as f64 - rho;
        *v = if excess <= 0.0 || sigma <= 0.0 {
            1.0
        } else {
            libm::exp(-excess / sigma) as f32
        };
    }
}

/// Fits `a, b` of `1 / (1 + a·x^{2b})` by least squares (Levenberg–Marquardt) to the curve that
/// is 1 up to `min_dist` and `exp(−(x − min_dist)/spread)` beyond, on 300 points in [0, 3·spread].
pub fn fit_ab(spread: f32, min_dist: f32) -> Result<(f32, f32)> {
    check_curve(spread, min_dist)?;
    const M: usize = 300;
    let (spread, min_dist) = (spread as f64, min_dist as f64);
    let xs = |i: usize| 3.0 * spread * i as f64 / (M - 1) as f64;
    let target = |x: f64| {
        if x < min_dist {
            1.0
        } else {
            libm::exp(-(x - min_dist) / spread)
        }
    };
    // Residuals r = f(x) − y, Jacobian columns ∂f/∂a, ∂f/∂b.
    let eval = |a: f64, b: f64| -> (f64, [f64; 3], [f64; 2]) {
        let (mut cost, mut jtj, mut jtr) = (0.0, [0.0f64; 3], [0.0f64; 2]);
        for i in 0..M {
            let x = xs(i);
            let (u, du_db) = if x > 0.0 {
                let u = libm::pow(x, 2.0 * b);
                (u, 2.0 * libm::log(x) * u)
            } else {
                (0.0, 0.0)
            };
            let f = 1.0 / (1.0 + a * u);
            let r = f - target(x);
            let (ja, jb) = (-u * f * f, -a * f * f * du_db);
            cost += r * r;
            jtj[0] += ja * ja;
            jtj[1] += ja * jb;
            jtj[2] += jb * jb;
            jtr[0] += ja * r;
            jtr[1] += jb * r;
        }
        (cost, jtj, jtr)
    };
    let (mut a, mut b, mut lambda) = (1.0f64, 1.0f64, 1e-3f64);
    let (mut cost, mut jtj, mut jtr) = eval(a, b);
    for _ in 0..500 {
        // Solve (JᵀJ + λ diag(JᵀJ)) δ = −Jᵀr.
        let (m00, m01, m11) = (jtj[0] * (1.0 + lambda), jtj[1], jtj[2] * (1.0 + lambda));
        let det = m00 * m11 - m01 * m01;
        if det.abs() < 1e-300 {
            break;
        }
        let da = -(m11 * jtr[0] - m01 * jtr[1]) / det;
        let db = -(m00 * jtr[1] - m01 * jtr[0]) / det;
        let (na, nb) = (a + da, b + db);
        if na > 0.0 && nb > 0.0 {
            let (c, jj, jr) = eval(na, nb);
            if c < cost {
                let done = (cost - c) <= 1e-15 * cost.max(1e-300);
                (a, b, cost, jtj, jtr) = (na, nb, c, jj, jr);
                lambda = (lambda * 0.3).max(1e-12);
                if done {
                    break;
                }
                continue;
            }
        }
        lambda *= 10.0;
        if lambda > 1e12 {
            break;
        }
    }
    Ok((a as f32, b as f32))
}

fn check_curve(spread: f32, min_dist: f32) -> Result<()> {
    ensure(
        spread.is_finite() && spread > 0.0,
        "spread",
        "must be a finite number > 0",
    )?;
    ensure(
        min_dist.is_finite() && min_dist >= 0.0,
        "min_dist",
        "must be a finite number >= 0",
    )?;
    ensure(
        min_dist <= spread,
        "min_dist",
        "must not exceed spread (the curve would have no decay to fit)",
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UmapInit {
    /// Leading nontrivial eigenvectors of the normalised graph Laplacian; falls back to PCA
    /// (and says so in the summary) when the graph is disconnected or the solver stalls.
    Spectral,
    Pca,
    Random,
}

#[derive(Clone, Copy, Debug)]
pub struct UmapParams {
    pub dims: usize,
    /// Neighbourhood size, counting the point itself (umap-learn's `n_neighbors`).
    pub neighbors: usize,
    pub min_dist: f32,
    pub spread: f32,
    /// 0 = 500 up to 10 000 points, 200 above.
    pub epochs: usize,
    pub negatives: usize,
    pub learning_rate: f32,
    pub metric: Metric,
    pub knn: KnnMethod,
    pub nn_descent: NnDescentParams,
    pub init: UmapInit,
    pub seed: u64,
}

impl Default for UmapParams {
    fn default() -> Self {
        UmapParams {
            dims: 2,
            neighbors: 15,
            min_dist: 0.1,
            spread: 1.0,
            epochs: 0,
            negatives: 5,
            learning_rate: 1.0,
            metric: Metric::SqEuclidean,
            knn: KnnMethod::Auto,
            nn_descent: NnDescentParams::default(),
            init: UmapInit::Spectral,
            seed: 42,
        }
    }
}

/// Epochs used when `epochs == 0`: umap-learn's rule.
pub fn default_epochs(n: usize) -> usize {
    if n > 10_000 { 200 } else { 500 }
}

impl UmapParams {
    pub fn validate(&self) -> Result<()> {
        ensure(
            (1..=ne::MAX_DIMS).contains(&self.dims),
            "dims",
            "must be between 1 and 16",
        )?;
        ensure(
            self.neighbors >= 2,
            "neighbors",
            "must be at least 2 (it counts the point itself)",
        )?;
        check_curve(self.spread, self.min_dist)?;
        ensure(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "learning rate",
            "must be a finite number > 0",
        )?;
        ensure(
            self.negatives >= 1 && self.negatives <= ne::MAX_NEGATIVES,
            "negatives",
            "must be between 1 and 1024",
        )
    }

    /// These settings with `neighbors` at most `n`, for the size queries: a count the run
    /// refuses (`check_n`) must not make the caller allocate for it first.
    fn bounded_by(&self, n: usize) -> UmapParams {
        UmapParams {
            neighbors: self.neighbors.min(n.max(1)),
            ..*self
        }
    }

    /// Checks against the number of points.
    pub fn check_n(&self, n: usize) -> Result<()> {
        if n < 3 {
            return Err(Error::TooFewPoints { n, min: 3 });
        }
        ensure(
            self.neighbors <= n,
            "neighbors",
            "must not exceed N (it counts the point itself)",
        )?;
        ensure(self.negatives < n, "negatives", "must be smaller than N")
    }

    /// The SGD settings a run uses, with the curve's `a` and `b`.
    pub fn sgd(&self, n: usize, a: f32, b: f32) -> SgdParams {
        SgdParams {
            loss: Loss::Umap { a, b },
            dims: self.dims,
            epochs: if self.epochs == 0 {
                default_epochs(n)
            } else {
                self.epochs
            },
            negatives: self.negatives,
            learning_rate: self.learning_rate,
            seed: self.seed,
            // umap-learn moves only the head for negatives.
            repulsion_weight: 1.0,
            ..SgdParams::default()
        }
    }
}

/// What a UMAP run reports.
#[derive(Clone, Copy, Debug)]
pub struct UmapSummary {
    pub a: f32,
    pub b: f32,
    pub edges: usize,
    /// How the embedding was initialised (spectral, or why it fell back).
    pub init: InitUsed,
    pub sgd: SgdSummary,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitUsed {
    Spectral,
    Pca,
    Random,
    /// Spectral was asked for; the graph has this many connected components, so PCA was used.
    PcaDisconnected {
        components: usize,
    },
    /// Spectral was asked for; the eigensolver did not converge, so PCA was used.
    PcaNotConverged,
}

/// Scratch for the fuzzy graph of `n` points and `k` neighbours (excluding self).
fn graph_scratch(n: usize, k: usize) -> ScratchSize {
    let nnz = affinity::symmetric_nnz_bound(n, k);
    ScratchSize::new()
        .plus::<usize>(n + 1)
        .plus::<u32>(nnz)
        .plus::<f32>(nnz)
}

/// Scratch for `umap` on `n` points of `d` columns.
pub fn umap_scratch(n: usize, d: usize, params: &UmapParams) -> ScratchSize {
    let params = &params.bounded_by(n);
    let k = params.neighbors.saturating_sub(1).max(1);
    let nnz = affinity::symmetric_nnz_bound(n, k);
    let knn_stage = fuzzy_graph_scratch(n, d, params);
    let init_stage = init_scratch(n, d, params.dims);
    let stage = knn_stage
        .max(init_stage)
        .max(ne::sgd_scratch(n, nnz, params.dims));
    graph_scratch(n, k).and(stage)
}

/// Runs UMAP on the rows of `x`, writing the `n × dims` embedding into `y`.
pub fn umap(
    x: MatRef,
    params: &UmapParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    y: &mut [f32],
) -> Result<UmapSummary> {
    params.validate()?;
    let n = x.rows();
    params.check_n(n)?;
    x.check_values()?;
    ensure_len("embedding", n * params.dims, y.len())?;
    ensure_len(
        "scratch",
        umap_scratch(n, x.cols(), params).bytes(),
        scratch.len(),
    )?;
    let (a, b) = fit_ab(params.spread, params.min_dist)?;
    let k = params.neighbors - 1;
    let mut s = Scratch::new(scratch);
    let nnz_bound = affinity::symmetric_nnz_bound(n, k);
    let indptr = s.take::<usize>(n + 1, "graph indptr")?;
    let indices = s.take::<u32>(nnz_bound, "graph indices")?;
    let values = s.take::<f32>(nnz_bound, "graph weights")?;
    let nnz = fuzzy_graph(x, params, par, obs, s.rest_mut(), indptr, indices, values)?;
    let graph = CsrRef {
        indptr,
        indices: &indices[..nnz],
        values: &values[..nnz],
    };
    enter(obs, Stage::Init, 1)?;
    let init = initialise(
        x,
        graph,
        params.init,
        params.dims,
        params.seed,
        par,
        s.rest_mut(),
        y,
    )?;
    let sgd = ne::optimize(graph, &params.sgd(n, a, b), par, obs, s.rest_mut(), y)?;
    Ok(UmapSummary {
        a,
        b,
        edges: nnz,
        init,
        sgd,
    })
}

/// Scratch for `fuzzy_graph` besides its outputs.
pub fn fuzzy_graph_scratch(n: usize, d: usize, params: &UmapParams) -> ScratchSize {
    let k = params.bounded_by(n).neighbors.saturating_sub(1).max(1);
    neighbours::stage_scratch(n, d, k, params.metric, params.knn, &params.nn_descent)
}

/// UMAP's graph: kNN, smooth-kNN memberships, fuzzy union, as CSR with sorted columns into
/// `indptr` (n+1), `indices` and `values` (each `2·n·(neighbors−1)`). Returns the non-zeros.
#[allow(clippy::too_many_arguments)]
pub fn fuzzy_graph(
    x: MatRef,
    params: &UmapParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    indptr: &mut [usize],
    indices: &mut [u32],
    values: &mut [f32],
) -> Result<usize> {
    params.validate()?;
    let n = x.rows();
    params.check_n(n)?;
    ensure_len(
        "scratch",
        fuzzy_graph_scratch(n, x.cols(), params).bytes(),
        scratch.len(),
    )?;
    let k = params.neighbors - 1;
    let (idx, dist, cursor) = neighbours::stage(
        x,
        k,
        params.metric,
        params.knn,
        &params.nn_descent,
        params.seed,
        par,
        obs,
        scratch,
    )?;
    if params.metric == Metric::SqEuclidean {
        dist.iter_mut().for_each(|d| *d = libm::sqrtf(d.max(0.0)));
    }
    smooth_knn(dist, k, par)?;
    affinity::symmetrize_with(
        Combine::FuzzyUnion,
        idx,
        dist,
        k,
        par,
        indptr,
        indices,
        values,
        cursor,
    )
}

/// Scratch for `initialise` (any method, including the fallback).
pub fn init_scratch(n: usize, d: usize, dims: usize) -> ScratchSize {
    ScratchSize::new()
        .plus::<f64>(n * dims)
        .and(spectral::spectral_scratch(n, dims).max(init::pca_scratch(n, d)))
}

/// Writes the initial embedding: spectral (scaled to [0, 10] per coordinate, as umap-learn),
/// PCA or random (both scaled so the first coordinate has standard deviation 1).
#[allow(clippy::too_many_arguments)]
pub fn initialise(
    x: MatRef,
    graph: CsrRef,
    how: UmapInit,
    dims: usize,
    seed: u64,
    par: &dyn Parallel,
    scratch: &mut [u8],
    y: &mut [f32],
) -> Result<InitUsed> {
    let n = x.rows();
    let fallback = |used: InitUsed, scratch: &mut [u8], y: &mut [f32]| -> Result<InitUsed> {
        let pca_ok = dims <= init::PCA_BLOCK && dims <= x.cols();
        let r = if pca_ok {
            init::pca_init(x, dims, seed, par, scratch, y)
        } else {
            Err(Error::InvalidParameter {
                name: "initialisation",
                reason: "",
            })
        };
        match r {
            Ok(()) => {
                init::scale_first_std(y, n, dims, 1.0)?;
                Ok(used)
            }
            // Constant data, or more output dimensions than PCA offers: random.
            Err(Error::InvalidParameter { .. }) => {
                init::random_init(n, dims, seed, y)?;
                init::scale_first_std(y, n, dims, 1.0)?;
                Ok(if used == InitUsed::Pca {
                    InitUsed::Random
                } else {
                    used
                })
            }
            Err(e) => Err(e),
        }
    };
    match how {
        UmapInit::Pca => fallback(InitUsed::Pca, scratch, y),
        UmapInit::Random => {
            init::random_init(n, dims, seed, y)?;
            init::scale_first_std(y, n, dims, 1.0)?;
            Ok(InitUsed::Random)
        }
        UmapInit::Spectral => {
            let mut s = Scratch::new(scratch);
            let vecs = s.take::<f64>(n * dims, "spectral vectors")?;
            let mut vals = [0.0f64; ne::MAX_DIMS];
            let outcome = spectral::spectral_embedding(
                graph,
                dims,
                seed,
                par,
                s.rest_mut(),
                vecs,
                &mut vals[..dims],
            )?;
            match outcome {
                SpectralOutcome::Converged { .. } => {
                    spectral::scale_to_box(vecs, n, dims, 10.0, y);
                    Ok(InitUsed::Spectral)
                }
                SpectralOutcome::Disconnected { components } => {
                    fallback(InitUsed::PcaDisconnected { components }, s.rest_mut(), y)
                }
                SpectralOutcome::NotConverged => {
                    fallback(InitUsed::PcaNotConverged, s.rest_mut(), y)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Serial;

    #[test]
    fn default_curve_fit_matches_umap_learn() {
        let (a, b) = fit_ab(1.0, 0.1).unwrap();
        assert!(
            (a - 1.577).abs() < 1e-2 && (b - 0.895).abs() < 1e-2,
            "{a} {b}"
        );
    }

    #[test]
    fn bad_curves_are_refused() {
        assert!(fit_ab(1.0, 2.0).is_err());
        assert!(fit_ab(0.0, 0.1).is_err());
        assert!(fit_ab(1.0, f32::NAN).is_err());
    }

    #[test]
    fn newton_memberships_match_umap_learns_bisection() {
        // umap-learn's search: bisection from σ = 1 until the sum is within 1e-5.
        fn bisected(d: &[f32], target: f64) -> Vec<f32> {
            let rho = d.iter().copied().find(|&v| v > 0.0).unwrap_or(0.0) as f64;
            let sum = |s: f64| -> f64 {
                d.iter()
                    .map(|&v| (-(v as f64 - rho).max(0.0) / s).exp())
                    .sum()
            };
            let (mut lo, mut hi, mut s) = (0.0f64, f64::INFINITY, 1.0f64);
            for _ in 0..64 {
                let v = sum(s);
                if (v - target).abs() < 1e-5 {
                    break;
                }
                if v > target {
                    hi = s;
                    s = 0.5 * (lo + hi);
                } else {
                    lo = s;
                    s = if hi.is_finite() {
                        0.5 * (lo + hi)
                    } else {
                        s * 2.0
                    };
                }
            }
            let mean = d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64;
            let s = s.max(MIN_SIGMA_SCALE * mean);
            d.iter()
                .map(|&v| (-(v as f64 - rho).max(0.0) / s).exp() as f32)
                .collect()
        }
        let mut r = crate::Rng::new(3);
        for k in [1usize, 2, 5, 14, 30] {
            for scale in [1e-3f64, 1.0, 1e3, 1e5] {
                for ties in [0usize, 1, 3] {
                    let mut d: Vec<f32> = (0..k).map(|_| (r.uniform() * scale) as f32).collect();
                    d.sort_by(f32::total_cmp);
                    // Duplicates of the point (distance 0) and ties at the nearest distance.
                    for v in d.iter_mut().take(ties.min(k)) {
                        *v = 0.0;
                    }
                    let want = bisected(&d, libm::log2((k + 1) as f64));
                    let mut got = d.clone();
                    smooth_knn(&mut got, k, &Serial).unwrap();
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() < 1e-4,
                            "k {k} scale {scale} ties {ties}: {got:?} {want:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn memberships_sum_to_log2_k() {
        let k = 14;
        let mut d: Vec<f32> = (0..3 * k).map(|i| 0.5 + (i % k) as f32 * 0.1).collect();
        smooth_knn(&mut d, k, &Serial).unwrap();
        for r in 0..3 {
            let s: f32 = d[r * k..(r + 1) * k].iter().sum();
            assert!((s - libm::log2f((k + 1) as f32)).abs() < 1e-3, "{s}");
            assert_eq!(d[r * k], 1.0, "nearest neighbour has membership 1");
        }
    }
}
