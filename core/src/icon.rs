//! I-Con as an embedding method: p from the data (uniform over kNN, or t-SNE's perplexity
//! affinities), q from the embedding (Student-t, Gaussian or cosine), and full-batch gradient
//! descent on Σ_i KL(p(·|i) ‖ q(·|i)) through `contrastive::icon_loss`.
//!
//! Every pair enters q exactly (an N × N tile in scratch: 4·N² bytes), so this is for data up
//! to some ten thousand points; the FFT t-SNE is the scalable member of this family. The
//! optimiser is t-SNE's: early exaggeration of p's pull, momentum, delta-bar-delta gains.

use crate::affinity::CsrRef;
use crate::contrastive::{self, Neighbourhood, Normalisation, Similarity, Targets};
use crate::error::{Error, Result, ensure, ensure_len};
use crate::init;
use crate::matrix::MatRef;
use crate::observer::enter;
use crate::observer::{Control, Observer, Progress, Stage};
use crate::parallel::Parallel;
use crate::scratch::{Scratch, ScratchSize};

#[derive(Clone, Copy, Debug)]
pub struct IconParams {
    pub dims: usize,
    pub p: Neighbourhood,
    pub q: Similarity,
    pub norm: Normalisation,
    /// Debiasing α: p̃ = (1 − α)p + α·uniform.
    pub debias: f32,
    pub early_iters: usize,
    pub iters: usize,
    pub exaggeration: f32,
    /// 0 = auto: N / exaggeration of the phase (at least 50).
    pub learning_rate: f32,
    pub momentum: f32,
    pub seed: u64,
    /// Report the loss every this many iterations (and at the last).
    pub loss_every: usize,
}

impl Default for IconParams {
    fn default() -> Self {
        IconParams {
            dims: 2,
            p: Neighbourhood::Knn(15),
            q: Similarity::StudentT { dof: 1.0 },
            norm: Normalisation::Row,
            debias: 0.0,
            early_iters: 100,
            iters: 300,
            exaggeration: 4.0,
            learning_rate: 0.0,
            momentum: 0.8,
            seed: 42,
            loss_every: 25,
        }
    }
}

impl IconParams {
    pub fn validate(&self) -> Result<()> {
        ensure(
            (1..=init::PCA_BLOCK).contains(&self.dims),
            "dims",
            "must be between 1 and 8",
        )?;
        ensure(
            self.debias.is_finite() && (0.0..=1.0).contains(&self.debias),
            "debias",
            "alpha must be in [0, 1]",
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
        )
    }
}

/// Scratch for `icon_embed` on `n` points of `d` columns.
pub fn icon_scratch(n: usize, d: usize, params: &IconParams) -> ScratchSize {
    let nnz = contrastive::neighbourhood_nnz_bound(n, params.p);
    ScratchSize::new()
        .plus::<usize>(n + 1)
        .plus::<u32>(nnz)
        .plus::<f32>(nnz)
        .plus::<f32>(3 * n * params.dims) // gradient, update, gains
        .and(
            contrastive::neighbourhood_scratch(n, params.p)
                .max(init::pca_scratch(n, d))
                .max(contrastive::contrastive_scratch(n, n, params.dims)),
        )
}

/// Embeds the rows of `x` into `y` (`n × dims`) by minimising the I-Con loss. Returns the
/// final loss. On `Err(Cancelled)`, `y` holds the embedding reached so far.
pub fn icon_embed(
    x: MatRef,
    params: &IconParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    y: &mut [f32],
) -> Result<f64> {
    params.validate()?;
    let n = x.rows();
    if n < 3 {
        return Err(Error::TooFewPoints { n, min: 3 });
    }
    x.check_values()?;
    let dims = params.dims;
    ensure_len("embedding", n * dims, y.len())?;
    ensure_len(
        "scratch",
        icon_scratch(n, x.cols(), params).bytes(),
        scratch.len(),
    )?;
    let nnz_bound = contrastive::neighbourhood_nnz_bound(n, params.p);
    let mut s = Scratch::new(scratch);
    let indptr = s.take::<usize>(n + 1, "p indptr")?;
    let indices = s.take::<u32>(nnz_bound, "p indices")?;
    let values = s.take::<f32>(nnz_bound, "p values")?;
    let grad = s.take::<f32>(n * dims, "gradient")?;
    let update = s.take::<f32>(n * dims, "update")?;
    let gains = s.take::<f32>(n * dims, "gains")?;
    enter(obs, Stage::Knn, n)?;
    let nnz = contrastive::neighbourhood(
        x,
        params.p,
        params.norm,
        par,
        s.rest_mut(),
        indptr,
        indices,
        values,
    )?;
    let p = CsrRef {
        indptr,
        indices: &indices[..nnz],
        values: &values[..nnz],
    };
    enter(obs, Stage::Init, 1)?;
    match init::pca_init(x, dims, params.seed, par, s.rest_mut(), y) {
        Err(Error::InvalidParameter {
            name: "initialisation",
            ..
        }) => init::random_init(n, dims, params.seed, y)?,
        r => r?,
    }
    gains.fill(1.0);
    let total = params.early_iters + params.iters;
    enter(obs, Stage::Optimize, total)?;
    let mut loss = 0.0;
    for it in 0..total {
        let early = it < params.early_iters;
        let ex = if early { params.exaggeration } else { 1.0 };
        let lr = if params.learning_rate > 0.0 {
            params.learning_rate
        } else {
            (n as f32 / ex).max(50.0)
        };
        loss = contrastive::icon_loss_exaggerated(
            MatRef::dense(y, n, dims)?,
            Targets::Sparse(p),
            params.q,
            params.norm,
            params.debias,
            ex as f64,
            par,
            s.rest_mut(),
            grad,
        )?;
        // Delta-bar-delta gains and momentum, as t-SNE's optimiser.
        for e in 0..n * dims {
            let g = grad[e];
            gains[e] = if (g > 0.0) != (update[e] > 0.0) {
                gains[e] + 0.2
            } else {
                (gains[e] * 0.8).max(0.01)
            };
            update[e] = params.momentum * update[e] - lr * gains[e] * g;
            y[e] += update[e];
        }
        // Keep the embedding centred (translation changes no loss).
        for c in 0..dims {
            let mean = (0..n).map(|i| y[i * dims + c] as f64).sum::<f64>() / n as f64;
            for i in 0..n {
                y[i * dims + c] -= mean as f32;
            }
        }
        let report = (it + 1) % params.loss_every.max(1) == 0 || it + 1 == total;
        if obs.observe(&Progress {
            stage: Stage::Optimize,
            done: it + 1,
            total,
            loss: report.then_some(loss),
        }) == Control::Stop
        {
            return Err(Error::Cancelled);
        }
    }
    Ok(loss)
}
