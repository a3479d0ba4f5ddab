//! t-SNE end to end: kNN → calibrated P → initialisation → gradient descent (MATH §2–3).
//!
//! The optimiser follows openTSNE's recipe: early exaggeration, momentum, delta-bar-delta
//! gains, per-point step clipping, and the "auto" learning rate max(N/ρ, 50). Like openTSNE
//! and FIt-SNE, the step is taken on ¼ of ∂KL/∂y, which is what that learning rate is tuned for.

use crate::affinity::{self, CsrRef};
use crate::error::{Error, Result, ensure, ensure_len};
use crate::fft_repulsion::FftParams;
use crate::gradient::{self, OutputKernel, RepulsionMethod};
use crate::init;
use crate::knn::Metric;
use crate::locality::{self, Towards};
use crate::matrix::MatRef;
use crate::neighbours;
use crate::nndescent::NnDescentParams;
use crate::observer::{Control, Observer, Progress, Stage, enter};
use crate::parallel::{Parallel, SharedMut, chunk_count, for_row_chunks_sum};
use crate::project;
use crate::scratch::{Scratch, ScratchSize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repulsion {
    Exact,
    BarnesHut,
    Fft,
    /// Like openTSNE: exact up to `AUTO_EXACT_MAX` points; FFT interpolation for 1-D output,
    /// and for 2-D from `AUTO_FFT_MIN` points; Barnes–Hut otherwise (2-D, 3-D); exact above 3-D.
    Auto,
}

/// Largest N for which `Repulsion::Auto` picks the exact O(N²) sum.
pub const AUTO_EXACT_MAX: usize = 1000;
/// Smallest N for which `Repulsion::Auto` picks FFT interpolation for 2-D output.
pub const AUTO_FFT_MIN: usize = 10_000;

pub use crate::neighbours::{AUTO_EXACT_KNN_MAX, KnnMethod};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    Pca,
    Random,
}

#[derive(Clone, Copy, Debug)]
pub struct TsneParams {
    /// Output dimensions.
    pub dims: usize,
    pub perplexity: f32,
    pub metric: Metric,
    pub knn: KnnMethod,
    /// Reduce the data to this many dimensions (its dominant subspace, by a randomised
    /// range finder) before everything else; 0 = use the data as given.
    pub pca: usize,
    /// Settings of the approximate search (its seed is `seed`).
    pub nn_descent: NnDescentParams,
    /// Iterations with exaggerated P.
    pub early_iters: usize,
    /// Iterations after early exaggeration.
    pub iters: usize,
    pub exaggeration: f32,
    /// Learning rate; 0 means "auto": max(N / exaggeration of the phase, 50).
    pub learning_rate: f32,
    pub momentum: f32,
    /// Degrees of freedom α of the output kernel (1 = Cauchy).
    pub dof: f32,
    /// Barnes–Hut opening angle.
    pub theta: f32,
    pub repulsion: Repulsion,
    pub init: Init,
    pub seed: u64,
    /// Largest step a point may take in one iteration (0 = no limit).
    pub max_step_norm: f32,
    /// Compute KL(P‖Q) every this many iterations (and at the last).
    pub kl_every: usize,
}

impl Default for TsneParams {
    fn default() -> Self {
        TsneParams {
            dims: 2,
            perplexity: 30.0,
            metric: Metric::SqEuclidean,
            knn: KnnMethod::Auto,
            pca: 0,
            nn_descent: NnDescentParams::default(),
            early_iters: 250,
            iters: 500,
            exaggeration: 12.0,
            learning_rate: 0.0,
            momentum: 0.8,
            dof: 1.0,
            theta: 0.5,
            repulsion: Repulsion::Auto,
            init: Init::Pca,
            seed: 42,
            max_step_norm: 5.0,
            kl_every: 50,
        }
    }
}

impl TsneParams {
    /// Checks everything that does not depend on the data.
    pub fn validate(&self) -> Result<()> {
        ensure(self.dims >= 1, "dims", "must be at least 1")?;
        ensure(
            self.perplexity.is_finite() && self.perplexity >= 1.0,
            "perplexity",
            "must be a finite number >= 1",
        )?;
        ensure(
            self.exaggeration.is_finite() && self.exaggeration > 0.0,
            "exaggeration",
            "must be a finite number > 0",
        )?;
        ensure(
            self.learning_rate.is_finite() && self.learning_rate >= 0.0,
            "learning rate",
            "must be a finite number > 0 (or 0 for auto)",
        )?;
        ensure(
            self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum),
            "momentum",
            "must be in [0, 1)",
        )?;
        ensure(
            self.dof.is_finite() && self.dof > 0.0,
            "dof",
            "degrees of freedom must be a finite number > 0",
        )?;
        ensure(
            self.theta.is_finite() && self.theta >= 0.0,
            "theta",
            "must be a finite number >= 0",
        )?;
        ensure(
            self.max_step_norm.is_finite() && self.max_step_norm >= 0.0,
            "max step norm",
            "must be a finite number >= 0",
        )?;
        if self.repulsion == Repulsion::BarnesHut {
            ensure(
                self.dims == 2 || self.dims == 3,
                "repulsion",
                "Barnes-Hut needs 2-D or 3-D output",
            )?;
        }
        if self.init == Init::Pca {
            ensure(
                self.dims <= init::PCA_BLOCK,
                "init",
                "PCA initialisation supports at most 8 output dimensions; use random",
            )?;
        }
        Ok(())
    }

    /// Columns after the optional reduction of `d`-column data (None: no reduction).
    pub fn reduced_dims(&self, d: usize) -> Option<usize> {
        (self.pca > 0 && self.pca < d).then_some(self.pca)
    }

    /// The neighbour search used for `n` points.
    pub fn knn_method(&self, n: usize) -> KnnMethod {
        self.knn.resolve(n)
    }

    /// The repulsion method used for `n` points.
    pub fn repulsion_method(&self, n: usize) -> RepulsionMethod {
        let fft = RepulsionMethod::Fft(FftParams::default());
        let bh = RepulsionMethod::BarnesHut { theta: self.theta };
        match self.repulsion {
            Repulsion::Exact => RepulsionMethod::Exact,
            Repulsion::BarnesHut => bh,
            Repulsion::Fft => fft,
            Repulsion::Auto if n <= AUTO_EXACT_MAX || self.dims > 3 => RepulsionMethod::Exact,
            Repulsion::Auto if self.dims == 1 || (self.dims == 2 && n >= AUTO_FFT_MIN) => fft,
            Repulsion::Auto => bh,
        }
    }
}

/// What a run reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct TsneSummary {
    pub iterations: usize,
    /// KL(P‖Q) at the last evaluation.
    pub kl: f64,
    pub neighbours: usize,
    pub nnz: usize,
}

/// P, and the point order the optimiser works in (`locality`).
fn csr_scratch(n: usize, k: usize) -> ScratchSize {
    let nnz = affinity::symmetric_nnz_bound(n, k);
    ScratchSize::new()
        .plus::<usize>(n + 1)
        .plus::<u32>(nnz)
        .plus::<f32>(nnz)
        .plus::<u32>(n)
}

fn affinity_stage_scratch(n: usize, d: usize, k: usize, params: &TsneParams) -> ScratchSize {
    neighbours::stage_scratch(n, d, k, params.metric, params.knn, &params.nn_descent)
}

/// Points per parallel task of the update step.
const STEP_ROWS: usize = 4096;
/// Output dimensions kept centred (all but very wide embeddings).
const MEAN_DIMS: usize = 16;

/// Scratch for `optimize` on `n` points.
pub fn optimize_scratch(n: usize, nnz: usize, params: &TsneParams) -> ScratchSize {
    let dims = params.dims;
    let packed = if packs_p(params) {
        gradient::packed_p_scratch(n, nnz)
    } else {
        ScratchSize::new()
    };
    ScratchSize::new()
        .and(packed)
        .plus::<f32>(4 * n * dims) // attraction, repulsion, update, gains
        .plus::<f64>(gradient::partials_len(n))
        .plus::<f64>(MEAN_DIMS * chunk_count(n, STEP_ROWS)) // per-chunk coordinate sums
        .and(gradient::repulsion_scratch(
            params.repulsion_method(n),
            n,
            dims,
        ))
}

/// Whether the optimiser streams a packed copy of P (the 2-D Cauchy case; see
/// `gradient::PackedP`).
fn packs_p(params: &TsneParams) -> bool {
    params.dims == 2 && params.dof == 1.0
}

/// Bytes of scratch `tsne` needs for `n` points of `d` columns.
pub fn tsne_scratch(n: usize, d: usize, params: &TsneParams) -> ScratchSize {
    let k = affinity::neighbours_for_perplexity(n, params.perplexity);
    let (reduced, dr) = match params.reduced_dims(d) {
        Some(r) => (ScratchSize::new().plus::<f32>(n * r).plus::<f32>(r * d), r),
        None => (ScratchSize::new(), d),
    };
    let reduce_stage = match params.reduced_dims(d) {
        Some(r) => project::subspace_scratch(n, d, r, 0),
        None => ScratchSize::new(),
    };
    let stage = reduce_stage
        .max(affinity_stage_scratch(n, dr, k, params))
        .max(init::pca_scratch(n, dr))
        .max(optimize_scratch(
            n,
            affinity::symmetric_nnz_bound(n, k),
            params,
        ));
    reduced.and(csr_scratch(n, k)).and(stage)
}

/// Runs t-SNE on the rows of `x`, writing the `n × dims` embedding into `y`.
/// On `Err(Cancelled)` during optimisation, `y` holds the embedding reached so far.
pub fn tsne(
    x: MatRef,
    params: &TsneParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    y: &mut [f32],
) -> Result<TsneSummary> {
    params.validate()?;
    let n = x.rows();
    if n < 2 {
        return Err(Error::TooFewPoints { n, min: 2 });
    }
    affinity::check_perplexity(n, params.perplexity)?;
    x.check_values()?;
    ensure_len("embedding", n * params.dims, y.len())?;
    ensure_len(
        "scratch",
        tsne_scratch(n, x.cols(), params).bytes(),
        scratch.len(),
    )?;
    let k = affinity::neighbours_for_perplexity(n, params.perplexity);

    let mut s = Scratch::new(scratch);
    // Optional reduction to the dominant subspace; everything downstream sees the reduced rows.
    let x = match params.reduced_dims(x.cols()) {
        Some(r) => {
            let reduced = s.take::<f32>(n * r, "reduced data")?;
            let basis = s.take::<f32>(r * x.cols(), "projection basis")?;
            {
                let mut tmp = Scratch::new(s.rest_mut());
                let sub = tmp.take::<u8>(
                    project::subspace_scratch(n, x.cols(), r, 0).bytes(),
                    "subspace scratch",
                )?;
                project::dominant_subspace(x, r, 0, params.seed, par, sub, basis)?;
            }
            project::project(x, basis, r, par, reduced)?;
            MatRef::dense(reduced, n, r)?
        }
        None => x,
    };
    let nnz_bound = affinity::symmetric_nnz_bound(n, k);
    let indptr = s.take::<usize>(n + 1, "P indptr")?;
    let indices = s.take::<u32>(nnz_bound, "P indices")?;
    let values = s.take::<f32>(nnz_bound, "P values")?;
    let order = s.take::<u32>(n, "point order")?;
    let mut rest = s;

    let nnz = {
        let (idx, dist, cursor) = neighbours::stage(
            x,
            k,
            params.metric,
            params.knn,
            &params.nn_descent,
            params.seed,
            par,
            obs,
            rest.rest_mut(),
        )?;
        affinity::calibrate_perplexity(dist, k, params.perplexity, par, None)?;
        // The optimiser works in a breadth-first order of the graph; P's buffers, unused
        // until `symmetrize`, hold the relabelling's temporaries.
        locality::relabel_breadth_first(idx, dist, k, order, indices, values)?;
        affinity::symmetrize(idx, dist, k, par, indptr, indices, values, cursor)?
    };
    let p = CsrRef {
        indptr,
        indices: &indices[..nnz],
        values: &values[..nnz],
    };

    enter(obs, Stage::Init, 1)?;
    match params.init {
        Init::Pca => {
            let r = init::pca_init(x, params.dims, params.seed, par, rest.rest_mut(), y);
            // Constant data has no principal direction; fall back to random.
            if matches!(
                r,
                Err(Error::InvalidParameter {
                    name: "initialisation",
                    ..
                })
            ) {
                init::random_init(n, params.dims, params.seed, y)?;
            } else {
                r?;
            }
        }
        Init::Random => init::random_init(n, params.dims, params.seed, y)?,
    }
    locality::move_rows(y, params.dims, order, Towards::Order, rest.rest_mut())?;
    let result = optimize(p, params, par, obs, rest.rest_mut(), y);
    // Back to the caller's order, also when cancelled (y is then the embedding so far).
    locality::move_rows(y, params.dims, order, Towards::Caller, rest.rest_mut())?;
    let mut summary = result?;
    summary.neighbours = k;
    Ok(summary)
}

/// Gradient descent on KL(P‖Q) from the embedding in `y` (`n × dims`).
pub fn optimize(
    p: CsrRef,
    params: &TsneParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    y: &mut [f32],
) -> Result<TsneSummary> {
    params.validate()?;
    let n = p.rows();
    // Every kernel below indexes through P's rows unchecked.
    p.check(n)?;
    let dims = params.dims;
    ensure_len("embedding", n * dims, y.len())?;
    let kernel = OutputKernel::new(params.dof)?;
    let method = params.repulsion_method(n);
    if let RepulsionMethod::BarnesHut { .. } = method {
        ensure(
            dims == 2 || dims == 3,
            "repulsion",
            "Barnes-Hut needs 2-D or 3-D output",
        )?;
    }
    let mut s = Scratch::new(scratch);
    let packed = if packs_p(params) {
        let bytes = gradient::packed_p_scratch(n, p.nnz()).bytes();
        Some(gradient::pack_p(p, s.take::<u8>(bytes, "packed P")?)?)
    } else {
        None
    };
    let nd = n * dims;
    let attr = s.take::<f32>(nd, "attraction")?;
    let rep = s.take::<f32>(nd, "repulsion")?;
    let update = s.take::<f32>(nd, "update")?;
    let gains = s.take::<f32>(nd, "gains")?;
    let partials = s.take::<f64>(gradient::partials_len(n), "partial sums")?;
    let chunk_sums = s.take::<f64>(MEAN_DIMS * chunk_count(n, STEP_ROWS), "coordinate sums")?;
    let rep_scratch = s.take::<u8>(
        gradient::repulsion_scratch(method, n, dims).bytes(),
        "repulsion scratch",
    )?;
    gains.fill(1.0);

    // Σ p log p, the constant part of KL(P‖Q): by rows in parallel, summed in chunk order.
    let p_entropy = for_row_chunks_sum(
        par,
        n,
        gradient::TASK_ROWS,
        attr,
        0,
        partials,
        &|first, rows, _| {
            let (s, e) = (p.indptr[first], p.indptr[first + rows]);
            p.values[s..e]
                .iter()
                .filter(|&&v| v > 0.0)
                .map(|&v| v as f64 * libm::log(v as f64))
                .sum()
        },
    );
    let total = params.early_iters + params.iters;
    enter(obs, Stage::Optimize, total)?;
    let mut summary = TsneSummary {
        nnz: p.nnz(),
        ..Default::default()
    };
    for it in 0..total {
        let exaggeration = if it < params.early_iters {
            params.exaggeration
        } else {
            1.0
        };
        let lr = if params.learning_rate > 0.0 {
            params.learning_rate
        } else {
            (n as f32 / exaggeration).max(50.0)
        };
        let want_kl = params.kl_every > 0 && ((it + 1) % params.kl_every == 0 || it + 1 == total);
        // The packed P in the hot case; the KL's Σ p log w comes from the full-precision P.
        let sum_p_log_w = match &packed {
            Some(pp) if !want_kl => {
                gradient::attraction_packed(pp, y, par, attr, partials)?;
                0.0
            }
            _ => gradient::attraction(p, y, dims, kernel, want_kl, par, attr, partials)?,
        };
        let z = gradient::repulsion(method, y, n, dims, kernel, par, rep_scratch, rep, partials)?;
        let inv_z = (1.0 / z) as f32;

        let step = Step {
            exaggeration,
            lr,
            inv_z,
            momentum: params.momentum,
            max_step_norm: params.max_step_norm,
        };
        step.apply(par, dims, attr, rep, update, gains, y, chunk_sums)?;
        summary.iterations = it + 1;
        let loss = if want_kl {
            // KL = Σ p log p − Σ p log w + log Z, at the positions before this step.
            let kl = p_entropy - sum_p_log_w + libm::log(z);
            summary.kl = kl;
            Some(kl)
        } else {
            None
        };
        if obs.observe(&Progress {
            stage: Stage::Optimize,
            done: it + 1,
            total,
            loss,
        }) == Control::Stop
        {
            return Err(Error::Cancelled);
        }
    }
    Ok(summary)
}

/// One gradient-descent step: delta-bar-delta gains, momentum, the per-point step limit, then
/// re-centring. Fixed chunks of `STEP_ROWS` points, coordinate sums added in chunk order: the
/// same bits on any number of threads.
struct Step {
    exaggeration: f32,
    lr: f32,
    inv_z: f32,
    momentum: f32,
    max_step_norm: f32,
}

/// Moves a point by its step and adds its new coordinates to `sums` (the first `MEAN_DIMS`).
#[inline(always)]
fn move_point(update: &[f32], y: &mut [f32], sums: &mut [f64]) {
    for c in 0..y.len() {
        y[c] += update[c];
        if c < MEAN_DIMS {
            sums[c] += y[c] as f64;
        }
    }
}

impl Step {
    /// The step of one point: gains, momentum, the step-norm limit, the move, and its
    /// coordinates added to `sums` (the first `MEAN_DIMS`).
    #[inline(always)]
    fn one_point(
        &self,
        attr: &[f32],
        rep: &[f32],
        update: &mut [f32],
        gains: &mut [f32],
        y: &mut [f32],
        sums: &mut [f64],
    ) {
        let mut norm2 = 0.0f32;
        for c in 0..y.len() {
            let g = self.exaggeration * attr[c] - rep[c] * self.inv_z;
            let same_sign = (g > 0.0) == (update[c] > 0.0);
            gains[c] = if same_sign {
                gains[c] * 0.8
            } else {
                gains[c] + 0.2
            }
            .max(0.01);
            update[c] = self.momentum * update[c] - self.lr * gains[c] * g;
            norm2 += update[c] * update[c];
        }
        self.limit(norm2, update);
        move_point(update, y, sums);
    }

    /// Scales a point's step down to the norm limit if it is longer.
    #[inline(always)]
    fn limit(&self, norm2: f32, update: &mut [f32]) {
        let limit = self.max_step_norm;
        if limit > 0.0 && norm2 > limit * limit {
            let f = limit / libm::sqrtf(norm2);
            update.iter_mut().for_each(|v| *v *= f);
        }
    }

    /// `one_point` for two consecutive points of a 2-D map at once, in four lanes (the same
    /// operations lane by lane, so the same bits).
    #[inline(always)]
    fn two_points_2d(
        &self,
        attr: &[f32],
        rep: &[f32],
        update: &mut [f32],
        gains: &mut [f32],
        y: &mut [f32],
        sums: &mut [f64],
    ) {
        use wide::f32x4;
        let load = |v: &[f32]| f32x4::from(<[f32; 4]>::try_from(v).unwrap());
        let (u0, g0) = (load(update), load(gains));
        let g = f32x4::splat(self.exaggeration) * load(attr) - load(rep) * f32x4::splat(self.inv_z);
        let zero = f32x4::ZERO;
        // Lanes where the gradient and the last step have different signs.
        let flipped = g.simd_gt(zero) ^ u0.simd_gt(zero);
        let grown = flipped.select(g0 + f32x4::splat(0.2), g0 * f32x4::splat(0.8));
        // maxps: the bound where `grown` is NaN, as f32::max gives.
        let gn = grown.fast_max(f32x4::splat(0.01));
        let un = f32x4::splat(self.momentum) * u0 - f32x4::splat(self.lr) * gn * g;
        gains.copy_from_slice(&gn.to_array());
        update.copy_from_slice(&un.to_array());
        let sq = (un * un).to_array();
        for (k, norm2) in [sq[0] + sq[1], sq[2] + sq[3]].into_iter().enumerate() {
            self.limit(norm2, &mut update[2 * k..2 * k + 2]);
        }
        for k in 0..2 {
            move_point(&update[2 * k..2 * k + 2], &mut y[2 * k..2 * k + 2], sums);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        par: &dyn Parallel,
        dims: usize,
        attr: &[f32],
        rep: &[f32],
        update: &mut [f32],
        gains: &mut [f32],
        y: &mut [f32],
        chunk_sums: &mut [f64],
    ) -> Result<()> {
        let n = y.len() / dims;
        let tasks = chunk_count(n, STEP_ROWS);
        let md = dims.min(MEAN_DIMS);
        {
            let (su, sg, sy, ss) = (
                SharedMut::new(update),
                SharedMut::new(gains),
                SharedMut::new(&mut *y),
                SharedMut::new(&mut chunk_sums[..]),
            );
            par.run(tasks, &|t| {
                let (lo, hi) = (t * STEP_ROWS, ((t + 1) * STEP_ROWS).min(n));
                // SAFETY: task t alone owns points [lo, hi) and its slots of the sums.
                let (update, gains, y, sums) = unsafe {
                    (
                        su.range(lo * dims, hi * dims),
                        sg.range(lo * dims, hi * dims),
                        sy.range(lo * dims, hi * dims),
                        ss.range(t * MEAN_DIMS, (t + 1) * MEAN_DIMS),
                    )
                };
                sums.fill(0.0);
                let (attr, rep) = (&attr[lo * dims..hi * dims], &rep[lo * dims..hi * dims]);
                let pairs = if dims == 2 { (hi - lo) / 2 } else { 0 };
                for q in 0..pairs {
                    let at = 4 * q..4 * q + 4;
                    let (u, g, p) = (
                        &mut update[at.clone()],
                        &mut gains[at.clone()],
                        &mut y[at.clone()],
                    );
                    self.two_points_2d(&attr[at.clone()], &rep[at], u, g, p, sums);
                }
                for r in 2 * pairs..hi - lo {
                    let at = r * dims..(r + 1) * dims;
                    let (u, g, p) = (
                        &mut update[at.clone()],
                        &mut gains[at.clone()],
                        &mut y[at.clone()],
                    );
                    self.one_point(&attr[at.clone()], &rep[at], u, g, p, sums);
                }
            });
        }
        // Keep the embedding centred (KL is translation invariant; trees like it centred).
        let mut mean = [0.0f32; MEAN_DIMS];
        for c in 0..md {
            let total: f64 = (0..tasks).map(|t| chunk_sums[t * MEAN_DIMS + c]).sum();
            mean[c] = (total / n as f64) as f32;
        }
        // Centre, each chunk noting its first non-finite value (in the slot its sums used).
        let (sy, ss) = (SharedMut::new(&mut *y), SharedMut::new(&mut chunk_sums[..]));
        par.run(tasks, &|t| {
            let (lo, hi) = (t * STEP_ROWS, ((t + 1) * STEP_ROWS).min(n));
            // SAFETY: task t alone owns points [lo, hi) and its first slot of the sums.
            let (y, bad) = unsafe {
                (
                    sy.range(lo * dims, hi * dims),
                    ss.range(t * MEAN_DIMS, t * MEAN_DIMS + 1),
                )
            };
            for p in y.chunks_exact_mut(dims) {
                for c in 0..md {
                    p[c] -= mean[c];
                }
            }
            bad[0] = y
                .iter()
                .position(|v| !v.is_finite())
                .map_or(-1.0, |c| (lo * dims + c) as f64);
        });
        if let Some(c) = (0..tasks)
            .map(|t| chunk_sums[t * MEAN_DIMS])
            .find(|&c| c >= 0.0)
        {
            let c = c as usize;
            return Err(Error::NonFinite {
                row: c / dims,
                col: c % dims,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rng, Serial, Silent};

    #[test]
    fn update_step_is_the_same_on_any_number_of_threads_and_matches_the_plain_loop() {
        let mut r = Rng::new(31);
        for dims in [2, 3] {
            let n = 2 * STEP_ROWS + 123;
            let nd = n * dims;
            let mut v = |s: f64| -> Vec<f32> { (0..nd).map(|_| (r.normal() * s) as f32).collect() };
            let (attr, rep, update0, y0) = (v(1.0), v(1.0), v(0.5), v(10.0));
            let gains0: Vec<f32> = (0..nd).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
            let step = Step {
                exaggeration: 12.0,
                lr: 200.0,
                inv_z: 0.01,
                momentum: 0.5,
                max_step_norm: 5.0,
            };
            let run = |par: &dyn Parallel| {
                let (mut u, mut g, mut y) = (update0.clone(), gains0.clone(), y0.clone());
                let mut sums = vec![0.0; MEAN_DIMS * chunk_count(n, STEP_ROWS)];
                step.apply(par, dims, &attr, &rep, &mut u, &mut g, &mut y, &mut sums)
                    .unwrap();
                (u, g, y)
            };
            let one = run(&Serial);
            for t in [2, 4] {
                assert!(one == run(&crate::threads::Threads::new(t)), "{t} threads");
            }
            // A non-finite force in the last chunk is reported, alike on any thread count.
            let mut bad_attr = attr.clone();
            bad_attr[nd - dims] = f32::NAN;
            let failing = |par: &dyn Parallel| {
                let (mut u, mut g, mut y) = (update0.clone(), gains0.clone(), y0.clone());
                let mut sums = vec![0.0; MEAN_DIMS * chunk_count(n, STEP_ROWS)];
                step.apply(
                    par, dims, &bad_attr, &rep, &mut u, &mut g, &mut y, &mut sums,
                )
                .unwrap_err()
            };
            let err = failing(&Serial);
            assert!(matches!(err, Error::NonFinite { .. }), "{err:?}");
            assert_eq!(err, failing(&crate::threads::Threads::new(3)));
            // The plain serial loop, centred with a mean summed point by point.
            let (mut u, mut g, mut y) = (update0.clone(), gains0.clone(), y0.clone());
            for i in 0..n {
                let mut norm2 = 0.0f32;
                for c in i * dims..(i + 1) * dims {
                    let grad = 12.0 * attr[c] - rep[c] * 0.01;
                    let same = (grad > 0.0) == (u[c] > 0.0);
                    g[c] = if same { g[c] * 0.8 } else { g[c] + 0.2 }.max(0.01);
                    u[c] = 0.5 * u[c] - 200.0 * g[c] * grad;
                    norm2 += u[c] * u[c];
                }
                if norm2 > 25.0 {
                    let f = 5.0 / norm2.sqrt();
                    u[i * dims..(i + 1) * dims].iter_mut().for_each(|v| *v *= f);
                }
            }
            for c in 0..nd {
                y[c] += u[c];
            }
            for c in 0..dims {
                let mean = (0..n).map(|i| y[i * dims + c] as f64).sum::<f64>() / n as f64;
                (0..n).for_each(|i| y[i * dims + c] -= mean as f32);
            }
            assert!(
                one.0 == u && one.1 == g,
                "updates and gains are elementwise, so exact"
            );
            // Only the mean's summation order differs: 1e-5 absolute on coordinates of ~10.
            for (a, b) in one.2.iter().zip(&y) {
                assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
            }
        }
    }

    /// Three well-separated Gaussian blobs in 10-D.
    fn blobs(n: usize) -> (Vec<f32>, Vec<u32>) {
        let mut r = Rng::new(2);
        let d = 10;
        let mut x = vec![0.0; n * d];
        let mut labels = vec![0; n];
        for i in 0..n {
            let c = i % 3;
            labels[i] = c as u32;
            for f in 0..d {
                x[i * d + f] = (r.normal() + if f == c { 20.0 } else { 0.0 }) as f32;
            }
        }
        (x, labels)
    }

    fn run(
        x: &[f32],
        n: usize,
        params: &TsneParams,
        obs: &mut dyn Observer,
    ) -> (Result<TsneSummary>, Vec<f32>) {
        let m = MatRef::dense(x, n, 10).unwrap();
        let mut scratch = vec![0u8; tsne_scratch(n, 10, params).bytes()];
        let mut y = vec![0.0; n * params.dims];
        let r = tsne(m, params, &Serial, obs, &mut scratch, &mut y);
        (r, y)
    }

    #[test]
    fn separates_blobs_lowers_kl_and_is_deterministic() {
        let n = 300;
        let (x, labels) = blobs(n);
        for repulsion in [Repulsion::Exact, Repulsion::BarnesHut] {
            let params = TsneParams {
                perplexity: 20.0,
                iters: 300,
                repulsion,
                ..Default::default()
            };
            let mut kls = vec![];
            let mut obs = |p: &Progress| {
                if let Some(l) = p.loss {
                    kls.push(l);
                }
                Control::Continue
            };
            let (r, y) = run(&x, n, &params, &mut obs);
            let s = r.unwrap();
            assert_eq!(s.iterations, 550);
            assert!(
                kls.last().unwrap() < &kls[5],
                "KL after exaggeration must fall: {kls:?}"
            );
            let m = MatRef::dense(&y, n, 2).unwrap();
            let mut sc = vec![0u8; crate::metrics::knn_accuracy_scratch(n, 2, 10).bytes()];
            let acc =
                crate::metrics::knn_accuracy(m, &labels, 10, 0.1, 1, &Serial, &mut sc).unwrap();
            assert_eq!(acc, 1.0, "{repulsion:?}");
            let (_, y2) = run(&x, n, &params, &mut Silent);
            assert_eq!(y, y2, "same seed, same bits");
        }
    }

    #[test]
    fn observer_can_cancel_and_keeps_the_embedding() {
        let n = 120;
        let (x, _) = blobs(n);
        let params = TsneParams {
            perplexity: 10.0,
            ..Default::default()
        };
        let mut obs = |p: &Progress| {
            if p.stage == Stage::Optimize && p.done == 10 {
                Control::Stop
            } else {
                Control::Continue
            }
        };
        let (r, y) = run(&x, n, &params, &mut obs);
        assert!(matches!(r, Err(Error::Cancelled)));
        assert!(y.iter().all(|v| v.is_finite()) && y.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn rejects_bad_input() {
        let (mut x, _) = blobs(30);
        let p = TsneParams::default();
        let (r, _) = run(&x, 30, &p, &mut Silent);
        assert!(matches!(r, Err(Error::PerplexityTooLarge { .. })));
        x[17] = f32::NAN;
        let (r, _) = run(
            &x,
            30,
            &TsneParams {
                perplexity: 5.0,
                ..p
            },
            &mut Silent,
        );
        assert_eq!(r.unwrap_err(), Error::NonFinite { row: 1, col: 7 });
        let (r, _) = run(&x[..10], 1, &p, &mut Silent);
        assert!(matches!(r, Err(Error::TooFewPoints { .. })));
        let bad = TsneParams {
            dims: 4,
            repulsion: Repulsion::BarnesHut,
            ..p
        };
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidParameter {
                name: "repulsion",
                ..
            })
        ));
    }
}

#[cfg(test)]
mod p_check_tests {
    use super::*;
    use crate::Silent;

    /// A malformed P is refused by name on every path, not only the packed 2-D one.
    #[test]
    fn malformed_p_is_refused_before_optimising_in_3_d() {
        let bad = CsrRef {
            indptr: &[0, 1, 2],
            indices: &[1, 7],
            values: &[0.5, 0.5],
        };
        let params = TsneParams {
            dims: 3,
            ..Default::default()
        };
        let mut y = vec![0.0f32; 2 * 3];
        let before = y.clone();
        let mut sc = vec![0u8; optimize_scratch(2, 2, &params).bytes()];
        let r = optimize(bad, &params, &crate::Serial, &mut Silent, &mut sc, &mut y);
        assert!(
            matches!(
                r,
                Err(Error::InvalidParameter {
                    name: "sparse matrix",
                    ..
                })
            ),
            "{r:?}"
        );
        assert_eq!(y, before, "the embedding is left as it was");
    }
}
