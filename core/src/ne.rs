//! Contrastive neighbour embeddings (MATH §5; Damrich, Böhm, Hamprecht & Kobak, ICLR 2023) and
//! the SGD engine they share with UMAP.
//!
//! **Losses.** Per positive pair (i, j) with `m` uniform negatives l, with d² = ‖y_i − y_j‖²:
//! - NEG (Neg-t-SNE): ξ = 1/(1 + c(1 + d²)), c = m·Z̄/N²; loss −log ξ_ij − Σ log(1 − ξ_il),
//!   log arguments clamped to [1e-4, 1] (no gradient where clamped).
//! - NCE: the same with Z̄ learned (its log updated once per epoch).
//! - InfoNC-t-SNE: φ = 1/(1 + d²); loss −log φ_ij + (1/ι)·log(φ_ij + Σ φ_il), ι = 4^s.
//! - UMAP: φ = 1/(1 + a d^{2b}); loss −log φ_ij − Σ log(1 − φ_il), umap-learn's gradients
//!   (ε = 0.001 in the repulsive denominator).
//!
//! Every term's gradient with respect to y_i is `2·coef·(y_i − y_other)`; `terms` gives the
//! coefficients and is checked against finite differences.
//!
//! **Determinism without races.** An epoch visits every point i (the "head") and the edges
//! of its row that are due, as umap-learn schedules them (edge e every max(w)/w_e epochs). Only
//! the head moves; the partner and the negatives are read from a snapshot of the embedding
//! taken at the start of the epoch. Rows are split into fixed chunks, each chunk is one task,
//! and negatives come from a generator seeded by (seed, epoch, head). So no task reads what
//! another writes, and the result is the same bits on any number of threads. Because the
//! graph is symmetric, the pull a point would get as the tail of (j, i) arrives as the head of
//! (i, j): attraction is applied twice, as umap-learn's `move_other` does.
//! Each term's gradient coordinates are clipped to [−4, 4] and the learning rate falls
//! linearly to 0.

use crate::affinity::CsrRef;
use crate::error::{Error, Result, ensure, ensure_len};
use crate::fastmath::{log2_fast_x8, pow_positive};
use crate::observer::{Control, Observer, Progress, Stage, enter};
use crate::parallel::{Parallel, SharedMut, chunk_count};
use crate::rng::Rng;
use crate::scratch::{Scratch, ScratchSize};

/// Largest output dimension of the SGD engine.
pub const MAX_DIMS: usize = 16;
/// Largest number of negatives per positive.
pub const MAX_NEGATIVES: usize = 1024;
/// Lower clamp of log arguments (Damrich et al.).
pub const CLAMP_LOW: f32 = 1e-4;
/// Gradient coordinates are clipped to ±CLIP (umap-learn, Damrich et al.).
pub const CLIP: f32 = 4.0;
/// umap-learn's ε in the repulsive gradient.
const UMAP_EPS: f32 = 0.001;
/// Rows per parallel task (fixed: results never depend on the thread count).
const TASK_ROWS: usize = 512;
/// Step of NCE's log Z per epoch, times the annealing factor, on the clipped mean gradient.
const NCE_LOG_Z_RATE: f64 = 0.1;

/// UMAP's per-sample terms as functions of d², tabulated on d²'s f32 bit pattern: 2^CURVE_STEP_BITS
/// nodes per octave from 2^-CURVE_LOW_OCTAVE over CURVE_OCTAVES octaves, linear between them
/// (so linear in d² within each node interval). Below the range the first node's value
/// is used (every term is flat there: ε and the clip dominate), above it the last's.
/// Replaces the power and three divisions per term of the exact curve, which took about
/// 40 % of UMAP's SGD; within `CURVE_TOLERANCE` of it (tested).
const CURVE_LOW_OCTAVE: u32 = 24;
const CURVE_OCTAVES: usize = 48;
const CURVE_STEP_BITS: u32 = 7;
const CURVE_SHIFT: u32 = 23 - CURVE_STEP_BITS;
const CURVE_NODES: usize = (CURVE_OCTAVES << CURVE_STEP_BITS) + 1;
const CURVE_FIRST_BITS: u32 = (127 - CURVE_LOW_OCTAVE) << 23;
const CURVE_LAST_OFFSET: u32 = ((CURVE_NODES - 1) as u32) << CURVE_SHIFT;
/// Entries per table: the nodes and a copy of the last.
const CURVE_LEN: usize = CURVE_NODES + 1;
/// Largest relative error of the tabulated coefficients against the exact curve (measured
/// 9.1e-5, at b = 0.6; 1.5e-5 for the positive's).
pub const CURVE_TOLERANCE: f32 = 1e-4;
/// Largest absolute error of the tabulated losses (measured 1.1e-3 where the clamp at 1e-4
/// bends the positive's loss inside one node interval, and 1.6e-4 for the negative's). The
/// losses are only reported, never differentiated.
pub const CURVE_LOSS_TOLERANCE: f32 = 2e-3;

/// The tables of `UmapCurve`, one after another in caller scratch, in this order.
const CURVE_TABLES: usize = 4;
const POSITIVE_COEF: usize = 0;
const NEGATIVE_COEF: usize = 1;
const POSITIVE_LOSS: usize = 2;
const NEGATIVE_LOSS: usize = 3;

/// UMAP's coefficients and losses at a = `a`, b = `b`, tabulated (see `CURVE_NODES`).
struct UmapCurve<'a> {
    a: f32,
    b: f32,
    /// `CURVE_TABLES` tables of `CURVE_LEN` entries.
    tables: &'a mut [f32],
}

impl UmapCurve<'_> {
    /// (Re)builds the tables for `a`, `b` unless they already are.
    fn set(&mut self, a: f32, b: f32) {
        if self.a.to_bits() == a.to_bits() && self.b.to_bits() == b.to_bits() {
            return;
        }
        (self.a, self.b) = (a, b);
        for i in 0..CURVE_NODES {
            let d2 = f32::from_bits(CURVE_FIRST_BITS + ((i as u32) << CURVE_SHIFT));
            for (t, v) in umap_terms_exact(a, b, d2).into_iter().enumerate() {
                self.tables[t * CURVE_LEN + i] = v;
                // The last node repeated: lookups beyond the range read it with weight 0.
                if i == CURVE_NODES - 1 {
                    self.tables[t * CURVE_LEN + i + 1] = v;
                }
            }
        }
    }

    /// Table `table` (`POSITIVE_COEF` … `NEGATIVE_LOSS`) at `d2` ≥ 0.
    #[inline(always)]
    fn at(&self, table: usize, d2: f32) -> f32 {
        let off = d2
            .to_bits()
            .saturating_sub(CURVE_FIRST_BITS)
            .min(CURVE_LAST_OFFSET);
        let i = (off >> CURVE_SHIFT) as usize;
        let f = (off & ((1 << CURVE_SHIFT) - 1)) as f32 * (1.0 / (1u32 << CURVE_SHIFT) as f32);
        let t = &self.tables[table * CURVE_LEN..(table + 1) * CURVE_LEN];
        let (lo, hi) = (t[i], t[i + 1]);
        lo + f * (hi - lo)
    }
}

/// UMAP's terms at squared distance `d2` in f64 with libm, the tables' reference, in table
/// order (`POSITIVE_COEF` … `NEGATIVE_LOSS`), as `positive` and `negative` define them.
fn umap_terms_exact(a: f32, b: f32, d2: f32) -> [f32; CURVE_TABLES] {
    let (a, b, x) = (a as f64, b as f64, d2 as f64);
    let x2b = libm::pow(x, b);
    let w = 1.0 / (1.0 + a * x2b);
    let low = CLAMP_LOW as f64;
    [
        a * b * libm::pow(x, b - 1.0) * w,
        -b * w / (UMAP_EPS as f64 + x),
        -libm::log(w.max(low)),
        -libm::log((a * x2b * w).max(low)),
    ]
    .map(|v| v as f32)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Negative sampling with a fixed normaliser Z̄.
    Neg { zbar: f64 },
    /// Noise-contrastive estimation with Z learned from this start.
    Nce { z_init: f64 },
    /// InfoNC-t-SNE with the repulsion scaled by 1/ι.
    InfoNce { iota: f64 },
    /// UMAP's output curve 1/(1 + a d^{2b}).
    Umap { a: f32, b: f32 },
}

/// A loss with its constants resolved for one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kernel {
    /// NEG and NCE: c = m·Z̄/N².
    Neg {
        c: f32,
    },
    InfoNce {
        inv_iota: f32,
    },
    Umap {
        a: f32,
        b: f32,
    },
}

/// Coefficient, loss and ∂loss/∂log c of the positive term at squared distance `d2`.
#[inline(always)]
pub(crate) fn positive(k: Kernel, d2: f32, want_loss: bool) -> (f32, f32, f32) {
    match k {
        Kernel::Neg { c } => {
            let xi = 1.0 / (1.0 + c * (1.0 + d2));
            let loss = if want_loss {
                -libm::logf(xi.max(CLAMP_LOW))
            } else {
                0.0
            };
            if xi >= CLAMP_LOW {
                (c * xi, loss, 1.0 - xi)
            } else {
                (0.0, loss, 0.0)
            }
        }
        Kernel::Umap { a, b } => {
            if d2 <= 0.0 {
                return (0.0, 0.0, 0.0);
            }
            let d2b = pow_positive(d2, b);
            let w = 1.0 / (1.0 + a * d2b);
            let loss = if want_loss {
                -libm::logf(w.max(CLAMP_LOW))
            } else {
                0.0
            };
            (a * b * (d2b / d2) * w, loss, 0.0)
        }
        // InfoNCE is not pairwise; see `info_nce_terms`.
        Kernel::InfoNce { .. } => (0.0, 0.0, 0.0),
    }
}

/// Coefficient, loss and ∂loss/∂log c of one negative term at squared distance `d2`.
#[inline(always)]
pub(crate) fn negative(k: Kernel, d2: f32, want_loss: bool) -> (f32, f32, f32) {
    match k {
        Kernel::Neg { c } => {
            let phi = 1.0 / (1.0 + d2);
            let xi = 1.0 / (1.0 + c * (1.0 + d2));
            let one_minus = c * (1.0 + d2) * xi;
            let loss = if want_loss {
                -libm::logf(one_minus.max(CLAMP_LOW))
            } else {
                0.0
            };
            if one_minus >= CLAMP_LOW {
                (-phi * xi, loss, -xi)
            } else {
                (0.0, loss, 0.0)
            }
        }
        Kernel::Umap { a, b } => {
            let d2b = if d2 > 0.0 { pow_positive(d2, b) } else { 0.0 };
            let w = 1.0 / (1.0 + a * d2b);
            let loss = if want_loss {
                -libm::logf((a * d2b * w).max(CLAMP_LOW))
            } else {
                0.0
            };
            (-b * w / (UMAP_EPS + d2), loss, 0.0)
        }
        Kernel::InfoNce { .. } => (0.0, 0.0, 0.0),
    }
}

/// `negative(Neg { c }, d2, false).0` for every distance, eight at a time (same bits); with
/// `want_loss`, returns the negatives' loss, logarithms by `log2_fast` (within 1e-5 of the
/// scalar function's, tested).
fn neg_negative_coefs(c: f32, d2: &[f32], coef: &mut [f32], want_loss: bool) -> f32 {
    use wide::f32x8;
    let (vc, one) = (f32x8::splat(c), f32x8::ONE);
    let mut loss = 0.0;
    for (dc, cc) in d2.chunks(8).zip(coef.chunks_mut(8)) {
        let mut lanes = [0.0f32; 8];
        lanes[..dc.len()].copy_from_slice(dc);
        let x = f32x8::from(lanes);
        let phi = one / (one + x);
        let xi = one / (one + vc * (one + x));
        let one_minus = vc * (one + x) * xi;
        let keep = one_minus.simd_ge(f32x8::splat(CLAMP_LOW));
        let v = keep.select(-phi * xi, f32x8::ZERO).to_array();
        cc.copy_from_slice(&v[..dc.len()]);
        if want_loss {
            let arg = one_minus.fast_max(f32x8::splat(CLAMP_LOW));
            let nl = (-f32x8::splat(core::f32::consts::LN_2) * log2_fast_x8(arg)).to_array();
            loss += nl[..dc.len()].iter().sum::<f32>();
        }
    }
    loss
}

/// InfoNC-t-SNE: coefficients of the positive and of each negative (into `coef_neg`) and
/// the loss, from the squared distances.
fn info_nce_terms(inv_iota: f32, d2_pos: f32, d2_neg: &[f32], coef_neg: &mut [f32]) -> (f32, f32) {
    let phi_pos = 1.0 / (1.0 + d2_pos);
    let mut sum = phi_pos;
    for &d2 in d2_neg {
        sum += 1.0 / (1.0 + d2);
    }
    let scale = inv_iota / sum;
    for (c, &d2) in coef_neg.iter_mut().zip(d2_neg) {
        let phi = 1.0 / (1.0 + d2);
        *c = -phi * phi * scale;
    }
    let loss = -libm::logf(phi_pos) + inv_iota * libm::logf(sum);
    (phi_pos - phi_pos * phi_pos * scale, loss)
}

/// The loss of one positive sample and the coefficients of its terms: with `d2_pos` the
/// squared distance to the positive partner and `d2_neg` those to the negatives,
/// ∂loss/∂y_i = 2·coef_pos·(y_i − y_j) + Σ_l 2·coef_neg[l]·(y_i − y_l).
/// Returns (coef_pos, loss, ∂loss/∂log c) — the last only for `Kernel::Neg`.
pub fn terms(k: Kernel, d2_pos: f32, d2_neg: &[f32], coef_neg: &mut [f32]) -> (f32, f32, f32) {
    if let Kernel::InfoNce { inv_iota } = k {
        let (c, l) = info_nce_terms(inv_iota, d2_pos, d2_neg, coef_neg);
        return (c, l, 0.0);
    }
    let (cp, mut loss, mut dz) = positive(k, d2_pos, true);
    for (c, &d2) in coef_neg.iter_mut().zip(d2_neg) {
        let (cn, ln, zn) = negative(k, d2, true);
        *c = cn;
        loss += ln;
        dz += zn;
    }
    (cp, loss, dz)
}

#[derive(Clone, Copy, Debug)]
pub struct SgdParams {
    pub loss: Loss,
    pub dims: usize,
    /// Epochs after the early phase.
    pub epochs: usize,
    /// Epochs run first with `early_loss` (0 = none), like early exaggeration in t-SNE.
    pub early_epochs: usize,
    pub early_loss: Loss,
    pub negatives: usize,
    /// Initial learning rate, annealed linearly to 0 over all epochs.
    pub learning_rate: f32,
    pub seed: u64,
    /// Evaluate and report the mean loss every this many epochs (and at the last).
    pub loss_every: usize,
    /// Weight of the negatives' repulsion on the head: 2 follows the gradient of the loss
    /// (each point is, on average, as often someone's negative as it draws negatives); 1 is
    /// umap-learn's convention, where negatives do not move.
    pub repulsion_weight: f32,
}

impl Default for SgdParams {
    fn default() -> Self {
        SgdParams {
            loss: Loss::Umap { a: 1.577, b: 0.895 },
            dims: 2,
            epochs: 200,
            early_epochs: 0,
            early_loss: Loss::Umap { a: 1.577, b: 0.895 },
            negatives: 5,
            learning_rate: 1.0,
            seed: 42,
            loss_every: 10,
            repulsion_weight: 2.0,
        }
    }
}

fn check_loss(loss: Loss) -> Result<()> {
    match loss {
        Loss::Neg { zbar } => ensure(
            zbar.is_finite() && zbar > 0.0,
            "zbar",
            "the normaliser Z̄ must be a finite number > 0",
        ),
        Loss::Nce { z_init } => ensure(
            z_init.is_finite() && z_init > 0.0,
            "z",
            "the starting Z must be a finite number > 0",
        ),
        Loss::InfoNce { iota } => ensure(
            iota.is_finite() && iota > 0.0,
            "iota",
            "the InfoNCE spectrum parameter must be a finite number > 0",
        ),
        Loss::Umap { a, b } => ensure(
            a.is_finite() && a > 0.0 && b.is_finite() && b > 0.0,
            "a, b",
            "the UMAP curve parameters must be finite numbers > 0",
        ),
    }
}

impl SgdParams {
    pub fn validate(&self, n: usize) -> Result<()> {
        ensure(
            (1..=MAX_DIMS).contains(&self.dims),
            "dims",
            "must be between 1 and 16",
        )?;
        ensure(
            (1..=MAX_NEGATIVES).contains(&self.negatives),
            "negatives",
            "must be between 1 and 1024",
        )?;
        ensure(self.negatives < n, "negatives", "must be smaller than N")?;
        ensure(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "learning rate",
            "must be a finite number > 0",
        )?;
        check_loss(self.loss)?;
        if self.early_epochs > 0 {
            check_loss(self.early_loss)?;
        }
        Ok(())
    }
}

/// What the optimiser reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct SgdSummary {
    pub epochs: usize,
    /// Mean loss per positive sample at the last evaluation.
    pub loss: f64,
    /// Z̄ in use at the end (learned for NCE).
    pub zbar: f64,
    /// Positive samples drawn over the run.
    pub samples: u64,
}

/// Scratch for `optimize` with `n` points, a graph of `nnz` entries and `dims` outputs.
pub fn sgd_scratch(n: usize, nnz: usize, dims: usize) -> ScratchSize {
    ScratchSize::new()
        .plus::<f32>(n * dims) // snapshot
        .plus::<f32>(2 * nnz) // epochs per sample, next sample
        .plus::<u32>(nnz) // columns in visiting order
        .plus::<f64>(3 * chunk_count(n, TASK_ROWS))
        .plus::<f32>(CURVE_TABLES * CURVE_LEN)
}

/// Resolves a loss to its kernel, given N, m and (for NCE) the current log Z.
fn kernel(loss: Loss, n: usize, m: usize, log_z: f64) -> Kernel {
    let c_of = |zbar: f64| (m as f64 * zbar / (n as f64 * n as f64)) as f32;
    match loss {
        Loss::Neg { zbar } => Kernel::Neg { c: c_of(zbar) },
        Loss::Nce { .. } => Kernel::Neg {
            c: c_of(libm::exp(log_z)),
        },
        Loss::InfoNce { iota } => Kernel::InfoNce {
            inv_iota: (1.0 / iota) as f32,
        },
        Loss::Umap { a, b } => Kernel::Umap { a, b },
    }
}

struct EpochInput<'a> {
    graph: CsrRef<'a>,
    /// Per edge, in each row's visiting order: the schedule and the column.
    epochs_per_sample: &'a [f32],
    cols: &'a [u32],
    snapshot: &'a [f32],
    dims: usize,
    negatives: usize,
    seed: u64,
    repulsion_weight: f32,
    /// NCE: the epoch needs each sample's ∂loss/∂log c (the scalar path).
    learns_z: bool,
    /// The UMAP loss's tables, set for this epoch's a and b.
    curve: &'a UmapCurve<'a>,
}

/// SGD on the symmetric weighted `graph` from the embedding in `y` (`n × dims`).
/// On `Err(Cancelled)`, `y` holds the embedding reached so far.
pub fn optimize(
    graph: CsrRef,
    params: &SgdParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    y: &mut [f32],
) -> Result<SgdSummary> {
    optimize_with(graph, params, Early::Run, par, obs, scratch, y)
}

/// The state of a run at the end of its early phase: the embedding, each edge's next
/// sampling epoch, log Z and the samples drawn. The early phase does not depend on the
/// final loss's spectrum position (its loss is the one at s = 1, and the schedule, seeds and
/// learning rates are the same), so the panels of a spectrum can share it.
pub(crate) struct EarlyState<'a> {
    pub(crate) y: &'a mut [f32],
    pub(crate) next: &'a mut [f32],
    pub(crate) log_z: f64,
    pub(crate) samples: u64,
}

/// What `optimize_with` does with the early phase.
pub(crate) enum Early<'s, 'a> {
    /// Run it.
    Run,
    /// Run it and record the state at its end.
    RunAndSave(&'s mut EarlyState<'a>),
    /// Skip it: start from this state.
    ResumeFrom(&'s EarlyState<'a>),
}

pub(crate) fn optimize_with(
    graph: CsrRef,
    params: &SgdParams,
    mut early: Early,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    y: &mut [f32],
) -> Result<SgdSummary> {
    graph.check(graph.rows())?;
    let n = graph.rows();
    params.validate(n)?;
    let dims = params.dims;
    let nnz = graph.nnz();
    ensure_len("embedding", n * dims, y.len())?;
    ensure_len("scratch", sgd_scratch(n, nnz, dims).bytes(), scratch.len())?;
    if let Some(i) = y.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            row: i / dims,
            col: i % dims,
        });
    }
    if graph.values.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(Error::InvalidParameter {
            name: "graph",
            reason: "edge weights must be finite and >= 0",
        });
    }
    let mut s = Scratch::new(scratch);
    let snapshot = s.take::<f32>(n * dims, "embedding snapshot")?;
    let eps = s.take::<f32>(nnz, "epochs per sample")?;
    let next = s.take::<f32>(nnz, "next sample")?;
    let cols = s.take::<u32>(nnz, "columns in visiting order")?;
    let partials = s.take::<f64>(3 * chunk_count(n, TASK_ROWS), "epoch partials")?;
    let mut curve = UmapCurve {
        a: f32::NAN,
        b: f32::NAN,
        tables: s.take::<f32>(CURVE_TABLES * CURVE_LEN, "UMAP curve tables")?,
    };

    let total = params.early_epochs + params.epochs;
    // umap-learn's schedule: edge e every max(w)/w_e epochs; edges too light to be drawn
    // even once in the run are dropped.
    let max_w = graph.values.iter().copied().fold(0.0f32, f32::max);
    for i in 0..n {
        let (a, b) = (graph.indptr[i], graph.indptr[i + 1]);
        let mut rng = Rng::stream(params.seed ^ 0x0BD3_E5E7, i as u64);
        // Each head visits its edges in a seeded random order, not by column: its updates
        // are sequential, and in column order an input sorted along the map (a time series,
        // say) pulls every point towards the same side last. MNIST-70k sorted by its map's
        // first coordinate: 10-NN accuracy 0.934 in column order, 0.969 in this one.
        for e in a..b {
            // Inside-out shuffle: slot e takes slot t's edge, slot t the new one.
            let t = a + rng.below(e - a + 1);
            cols[e] = cols[t];
            eps[e] = eps[t];
            let w = graph.values[e];
            cols[t] = graph.indices[e];
            eps[t] = if max_w > 0.0 && w > 0.0 && w >= max_w / total.max(1) as f32 {
                max_w / w
            } else {
                f32::INFINITY
            };
        }
    }
    next.copy_from_slice(eps);
    let mut log_z = match params.loss {
        Loss::Nce { z_init } => libm::log(z_init),
        Loss::Neg { zbar } => libm::log(zbar),
        _ => 0.0,
    };
    let mut summary = SgdSummary {
        epochs: total,
        ..SgdSummary::default()
    };
    let mut first = 0;
    if let Early::ResumeFrom(state) = &early {
        ensure_len("early state", nnz, state.next.len())?;
        ensure_len("early state", y.len(), state.y.len())?;
        y.copy_from_slice(state.y);
        next.copy_from_slice(state.next);
        // Only NCE changes log Z, and its early loss is its own.
        if matches!(params.loss, Loss::Nce { .. }) {
            log_z = state.log_z;
        }
        summary.samples = state.samples;
        first = params.early_epochs;
    }
    enter(obs, Stage::Optimize, total)?;
    for epoch in first..total {
        if epoch == params.early_epochs
            && let Early::RunAndSave(state) = &mut early
        {
            state.y.copy_from_slice(y);
            state.next.copy_from_slice(next);
            state.log_z = log_z;
            state.samples = summary.samples;
        }
        let loss = if epoch < params.early_epochs {
            params.early_loss
        } else {
            params.loss
        };
        let k = kernel(loss, n, params.negatives, log_z);
        if let Kernel::Umap { a, b } = k {
            curve.set(a, b);
        }
        let anneal = 1.0 - epoch as f32 / total as f32;
        let alpha = params.learning_rate * anneal;
        let want_loss = (epoch + 1) % params.loss_every.max(1) == 0 || epoch + 1 == total;
        snapshot.copy_from_slice(y);
        let input = EpochInput {
            graph,
            epochs_per_sample: eps,
            cols,
            snapshot,
            dims,
            negatives: params.negatives,
            seed: params.seed,
            repulsion_weight: params.repulsion_weight,
            learns_z: matches!(loss, Loss::Nce { .. }),
            curve: &curve,
        };
        let tasks = chunk_count(n, TASK_ROWS);
        {
            let (sy, sn, sp) = (
                SharedMut::new(&mut *y),
                SharedMut::new(&mut *next),
                SharedMut::new(&mut partials[..3 * tasks]),
            );
            par.run(tasks, &|t| {
                let start = t * TASK_ROWS;
                let end = (start + TASK_ROWS).min(n);
                let (e0, e1) = (graph.indptr[start], graph.indptr[end]);
                // SAFETY: task t alone owns rows [start, end) of y, their edges' schedule,
                // and partial slots 3t..3t+3.
                let (rows, sched, out) = unsafe {
                    (
                        sy.range(start * dims, end * dims),
                        sn.range(e0, e1),
                        sp.range(3 * t, 3 * t + 3),
                    )
                };
                let r = if dims == 2 {
                    epoch_rows::<2>(&input, k, epoch, alpha, want_loss, start, end, rows, sched)
                } else {
                    epoch_rows::<0>(&input, k, epoch, alpha, want_loss, start, end, rows, sched)
                };
                out.copy_from_slice(&r);
            });
        }
        let (mut loss_sum, mut dz_sum, mut samples) = (0.0f64, 0.0f64, 0.0f64);
        for t in 0..tasks {
            loss_sum += partials[3 * t];
            dz_sum += partials[3 * t + 1];
            samples += partials[3 * t + 2];
        }
        summary.samples += samples as u64;
        if matches!(loss, Loss::Nce { .. }) && samples > 0.0 {
            let g = (dz_sum / samples).clamp(-(CLIP as f64), CLIP as f64);
            log_z -= NCE_LOG_Z_RATE * anneal as f64 * g;
        }
        let reported = if want_loss && samples > 0.0 {
            summary.loss = loss_sum / samples;
            Some(summary.loss)
        } else {
            None
        };
        if obs.observe(&Progress {
            stage: Stage::Optimize,
            done: epoch + 1,
            total,
            loss: reported,
        }) == Control::Stop
        {
            return Err(Error::Cancelled);
        }
    }
    summary.zbar = match params.loss {
        Loss::Nce { .. } | Loss::Neg { .. } => libm::exp(log_z),
        _ => 0.0,
    };
    Ok(summary)
}

/// One epoch over heads `start..end`. `D` = 2 compiles the common case with a constant
/// dimension; `D` = 0 reads it from `input`. Returns (loss sum, ∂/∂log c sum, samples).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn epoch_rows<const D: usize>(
    input: &EpochInput,
    k: Kernel,
    epoch: usize,
    alpha: f32,
    want_loss: bool,
    start: usize,
    end: usize,
    y: &mut [f32],
    sched: &mut [f32],
) -> [f64; 3] {
    let dims = if D > 0 { D } else { input.dims };
    let n = input.graph.rows();
    let snap = input.snapshot;
    let e0 = input.graph.indptr[start];
    let now = epoch as f32;
    let epoch_seed = input.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let (mut loss_sum, mut dz_sum, mut samples) = (0.0f64, 0.0f64, 0.0f64);
    let mut d2_neg = [0.0f32; MAX_NEGATIVES];
    let mut coef_neg = [0.0f32; MAX_NEGATIVES];
    let mut neg_idx = [0u32; MAX_NEGATIVES];
    let m = input.negatives;
    let rep_w = input.repulsion_weight;
    for i in start..end {
        let yi = &mut y[(i - start) * dims..(i - start + 1) * dims];
        let mut rng: Option<Rng> = None;
        let (row_lo, row_hi) = (input.graph.indptr[i], input.graph.indptr[i + 1]);
        // Due edges by mask, 64 at a time, in the row's visiting order.
        for base in (row_lo..row_hi).step_by(64) {
            let top = (base + 64).min(row_hi);
            let mut due = due_mask(&sched[base - e0..top - e0], now);
            while due != 0 {
                let e = base + due.trailing_zeros() as usize;
                due &= due - 1;
                let slot = &mut sched[e - e0];
                *slot += input.epochs_per_sample[e];
                let rng = rng.get_or_insert_with(|| Rng::stream(epoch_seed, i as u64));
                let j = input.cols[e] as usize;
                let yj = &snap[j * dims..(j + 1) * dims];
                let d2_pos = sq_dist(yi, yj, dims);
                // Negatives: uniform over the other points (a draw of i itself is skipped).
                let mut used = 0;
                for _ in 0..m {
                    let l = rng.below(n);
                    if l == i {
                        continue;
                    }
                    neg_idx[used] = l as u32;
                    d2_neg[used] = sq_dist(yi, &snap[l * dims..(l + 1) * dims], dims);
                    used += 1;
                }
                let (cp, loss, dz) = match k {
                    Kernel::InfoNce { inv_iota } => {
                        let (c, l) = info_nce_terms(
                            inv_iota,
                            d2_pos,
                            &d2_neg[..used],
                            &mut coef_neg[..used],
                        );
                        (c, if want_loss { l } else { 0.0 }, 0.0)
                    }
                    // NEG's ∂/∂log c is needed only by NCE, which takes the scalar path.
                    Kernel::Neg { c } if !input.learns_z => {
                        let ln = neg_negative_coefs(
                            c,
                            &d2_neg[..used],
                            &mut coef_neg[..used],
                            want_loss,
                        );
                        let (cp, lp, _) = positive(k, d2_pos, want_loss);
                        (cp, lp + ln, 0.0)
                    }
                    Kernel::Umap { .. } => {
                        let c = input.curve;
                        let mut loss = 0.0;
                        for u in 0..used {
                            coef_neg[u] = c.at(NEGATIVE_COEF, d2_neg[u]);
                        }
                        if want_loss {
                            loss = c.at(POSITIVE_LOSS, d2_pos);
                            for &d in &d2_neg[..used] {
                                loss += c.at(NEGATIVE_LOSS, d);
                            }
                        }
                        (c.at(POSITIVE_COEF, d2_pos), loss, 0.0)
                    }
                    _ => {
                        let (cp, mut loss, mut dz) = positive(k, d2_pos, want_loss);
                        for u in 0..used {
                            let (cn, ln, zn) = negative(k, d2_neg[u], want_loss);
                            coef_neg[u] = cn;
                            loss += ln;
                            dz += zn;
                        }
                        (cp, loss, dz)
                    }
                };
                loss_sum += loss as f64;
                dz_sum += dz as f64;
                samples += 1.0;
                // Step on the sample's gradient, every term clipped; attraction twice (see above).
                let mut step = [0.0f32; MAX_DIMS];
                for d in 0..dims {
                    step[d] = 2.0 * clip(2.0 * cp * (yi[d] - yj[d]));
                }
                for u in 0..used {
                    let yl = &snap[neg_idx[u] as usize * dims..];
                    for d in 0..dims {
                        step[d] += rep_w * clip(2.0 * coef_neg[u] * (yi[d] - yl[d]));
                    }
                }
                for d in 0..dims {
                    yi[d] -= alpha * step[d];
                }
            }
        }
    }
    [loss_sum, dz_sum, samples]
}

/// Bit b set where `sched[b] <= now`, for at most 64 entries. About a third of the edges
/// are due in an epoch, in no pattern, so a test-and-branch per edge mispredicts often;
/// walking the mask's bits took about 20 % off UMAP's SGD (the same bits).
#[inline(always)]
fn due_mask(sched: &[f32], now: f32) -> u64 {
    use wide::f32x4;
    let vnow = f32x4::splat(now);
    let mut due = 0u64;
    let mut quads = sched.chunks_exact(4);
    for (q, c) in quads.by_ref().enumerate() {
        let v = f32x4::from([c[0], c[1], c[2], c[3]]);
        due |= (v.simd_le(vnow).to_bitmask() as u64) << (4 * q);
    }
    let done = sched.len() - quads.remainder().len();
    for (b, &t) in quads.remainder().iter().enumerate() {
        due |= ((t <= now) as u64) << (done + b);
    }
    due
}

/// Which member of the contrastive family `ne` optimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeLoss {
    Neg,
    Nce,
    InfoNce,
    Umap,
}

/// Which graph supplies the positive pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeGraph {
    /// UMAP's fuzzy union of smooth-kNN memberships; pairs drawn in proportion to weight.
    Fuzzy,
    /// The symmetrised binary kNN graph (Damrich et al.); every pair drawn every epoch.
    Binary,
}

/// A contrastive neighbour embedding: kNN graph → initialisation → SGD on one loss.
#[derive(Clone, Copy, Debug)]
pub struct NeParams {
    pub dims: usize,
    /// Neighbours per point, not counting the point itself.
    pub neighbors: usize,
    pub graph: NeGraph,
    pub loss: NeLoss,
    /// Spectrum position: 0 is t-SNE-like, 1 UMAP-like; other values extrapolate. For NEG,
    /// Z̄ = Z_tsne·(Z_umap/Z_tsne)^s with Z_tsne = 100·N and Z_umap = N²/m; for InfoNCE,
    /// ι = 4^s. NCE learns Z and the UMAP loss has none, so they ignore it.
    pub s: f64,
    /// NEG's Z̄ directly; 0 means "from s".
    pub zbar: f64,
    pub negatives: usize,
    /// 0 = 500 up to 10 000 points, 200 above (as UMAP).
    pub epochs: usize,
    /// Epochs run first at the UMAP end of the spectrum (s = 1), then `epochs` at `s`, like
    /// early exaggeration. None = auto: none up to 10 000 points, half of `epochs` above.
    pub early_epochs: Option<usize>,
    pub learning_rate: f32,
    /// The UMAP loss's curve.
    pub min_dist: f32,
    pub spread: f32,
    pub metric: crate::knn::Metric,
    pub knn: crate::neighbours::KnnMethod,
    pub nn_descent: crate::nndescent::NnDescentParams,
    pub init: crate::umap::UmapInit,
    pub seed: u64,
}

impl Default for NeParams {
    fn default() -> Self {
        NeParams {
            dims: 2,
            neighbors: 15,
            graph: NeGraph::Fuzzy,
            loss: NeLoss::Neg,
            s: 0.0,
            zbar: 0.0,
            negatives: 5,
            epochs: 0,
            early_epochs: None,
            learning_rate: 1.0,
            min_dist: 0.1,
            spread: 1.0,
            metric: crate::knn::Metric::SqEuclidean,
            knn: crate::neighbours::KnnMethod::Auto,
            nn_descent: crate::nndescent::NnDescentParams::default(),
            init: crate::umap::UmapInit::Pca,
            seed: 42,
        }
    }
}

/// Above this many points the automatic early phase runs (half the epochs).
pub const EARLY_AUTO_MIN: usize = 10_000;

/// Z̄ at spectrum position `s` for `n` points and `m` negatives.
pub fn zbar_at(s: f64, n: usize, m: usize) -> f64 {
    let z_tsne = 100.0 * n as f64;
    let z_umap = (n as f64) * (n as f64) / m as f64;
    z_tsne * libm::exp(s * (libm::log(z_umap) - libm::log(z_tsne)))
}

impl NeParams {
    pub fn validate(&self) -> Result<()> {
        ensure(
            (1..=MAX_DIMS).contains(&self.dims),
            "dims",
            "must be between 1 and 16",
        )?;
        ensure(self.neighbors >= 1, "neighbors", "must be at least 1")?;
        ensure(self.s.is_finite(), "s", "must be a finite number")?;
        ensure(
            self.zbar.is_finite() && self.zbar >= 0.0,
            "zbar",
            "must be a finite number > 0 (or 0 to use s)",
        )?;
        ensure(
            (1..=MAX_NEGATIVES).contains(&self.negatives),
            "negatives",
            "must be between 1 and 1024",
        )?;
        ensure(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "learning rate",
            "must be a finite number > 0",
        )?;
        if self.loss == NeLoss::Umap {
            crate::umap::fit_ab(self.spread, self.min_dist)?;
        }
        Ok(())
    }

    pub fn check_n(&self, n: usize) -> Result<()> {
        if n < 3 {
            return Err(Error::TooFewPoints { n, min: 3 });
        }
        ensure(
            self.neighbors < n,
            "neighbors",
            "must be smaller than N (the point itself does not count)",
        )?;
        ensure(self.negatives < n, "negatives", "must be smaller than N")
    }

    /// The loss at spectrum position `s` for `n` points.
    pub fn loss_at(&self, s: f64, n: usize) -> Result<Loss> {
        let m = self.negatives;
        Ok(match self.loss {
            NeLoss::Neg if self.zbar > 0.0 => Loss::Neg { zbar: self.zbar },
            NeLoss::Neg => Loss::Neg {
                zbar: zbar_at(s, n, m),
            },
            // Starts at the UMAP end (c = 1), like the early phase of NEG.
            NeLoss::Nce => Loss::Nce {
                z_init: zbar_at(1.0, n, m),
            },
            NeLoss::InfoNce => Loss::InfoNce {
                iota: libm::exp(s * libm::log(4.0)),
            },
            NeLoss::Umap => {
                let (a, b) = crate::umap::fit_ab(self.spread, self.min_dist)?;
                Loss::Umap { a, b }
            }
        })
    }

    /// The epochs of the main phase and of the early phase for `n` points.
    pub fn schedule(&self, n: usize) -> (usize, usize) {
        let epochs = if self.epochs == 0 {
            crate::umap::default_epochs(n)
        } else {
            self.epochs
        };
        // Measured on MNIST: at 70 000 points the t-SNE end does not unfold from PCA without
        // the early phase (10-NN accuracy 0.60, with it 0.94); at 10 000 it costs 0.005.
        let early = self
            .early_epochs
            .unwrap_or(if n > EARLY_AUTO_MIN { epochs / 2 } else { 0 });
        (epochs, early)
    }

    fn sgd(&self, s: f64, n: usize) -> Result<SgdParams> {
        let (epochs, early_epochs) = self.schedule(n);
        Ok(SgdParams {
            loss: self.loss_at(s, n)?,
            dims: self.dims,
            epochs,
            early_epochs,
            early_loss: self.loss_at(1.0, n)?,
            negatives: self.negatives,
            learning_rate: self.learning_rate,
            seed: self.seed,
            ..SgdParams::default()
        })
    }
}

/// Scratch for `ne_spectrum` on `n` points of `d` columns.
pub fn ne_scratch(n: usize, d: usize, params: &NeParams) -> ScratchSize {
    use crate::{affinity, neighbours};
    // A count the run refuses (`check_n`) must not make the caller allocate for it first.
    let k = params.neighbors.min(n.saturating_sub(1).max(1));
    let nnz = affinity::symmetric_nnz_bound(n, k);
    let graph = ScratchSize::new()
        .plus::<usize>(n + 1)
        .plus::<u32>(nnz)
        .plus::<f32>(nnz);
    let knn_stage =
        neighbours::stage_scratch(n, d, k, params.metric, params.knn, &params.nn_descent);
    let init_stage = crate::umap::init_scratch(n, d, params.dims);
    // The state at the end of the shared early phase sits beside the SGD's own scratch.
    let early = ScratchSize::new()
        .plus::<f32>(n * params.dims)
        .plus::<f32>(nnz);
    graph.and(
        knn_stage
            .max(init_stage)
            .max(early.and(sgd_scratch(n, nnz, params.dims))),
    )
}

/// Embeds the rows of `x` once per spectrum position in `s_values`, from one kNN graph and
/// one initialisation. Panel p goes to `ys[p·n·dims ..]`, its report to `summaries[p]`.
#[allow(clippy::too_many_arguments)]
pub fn ne_spectrum(
    x: crate::matrix::MatRef,
    params: &NeParams,
    s_values: &[f64],
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    ys: &mut [f32],
    summaries: &mut [SgdSummary],
) -> Result<crate::umap::InitUsed> {
    use crate::affinity::{self, Combine};
    use crate::neighbours;
    params.validate()?;
    let n = x.rows();
    params.check_n(n)?;
    x.check_values()?;
    ensure(!s_values.is_empty(), "spectrum", "needs at least one value")?;
    if s_values.iter().any(|s| !s.is_finite()) {
        return Err(Error::InvalidParameter {
            name: "spectrum",
            reason: "values must be finite numbers",
        });
    }
    let dims = params.dims;
    let panels = s_values.len();
    ensure_len("embeddings", panels * n * dims, ys.len())?;
    ensure_len("summaries", panels, summaries.len())?;
    ensure_len(
        "scratch",
        ne_scratch(n, x.cols(), params).bytes(),
        scratch.len(),
    )?;
    let k = params.neighbors;
    let mut s = Scratch::new(scratch);
    let nnz_bound = affinity::symmetric_nnz_bound(n, k);
    let indptr = s.take::<usize>(n + 1, "graph indptr")?;
    let indices = s.take::<u32>(nnz_bound, "graph indices")?;
    let values = s.take::<f32>(nnz_bound, "graph weights")?;
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
            s.rest_mut(),
        )?;
        let combine = match params.graph {
            NeGraph::Fuzzy => {
                if params.metric == crate::knn::Metric::SqEuclidean {
                    dist.iter_mut().for_each(|d| *d = libm::sqrtf(d.max(0.0)));
                }
                crate::umap::smooth_knn(dist, k, par)?;
                Combine::FuzzyUnion
            }
            NeGraph::Binary => {
                dist.fill(1.0);
                Combine::Max
            }
        };
        affinity::symmetrize_with(combine, idx, dist, k, par, indptr, indices, values, cursor)?
    };
    let graph = CsrRef {
        indptr,
        indices: &indices[..nnz],
        values: &values[..nnz],
    };
    enter(obs, Stage::Init, 1)?;
    let (first, rest) = ys.split_at_mut(n * dims);
    let init = crate::umap::initialise(
        x,
        graph,
        params.init,
        dims,
        params.seed,
        par,
        s.rest_mut(),
        first,
    )?;
    for panel in rest.chunks_exact_mut(n * dims) {
        panel.copy_from_slice(first);
    }
    // The first panel runs the early phase and records its end; the others start there.
    let (epochs, early_epochs) = params.schedule(n);
    let shared = early_epochs > 0 && epochs > 0 && panels > 1;
    let mut state = EarlyState {
        y: s.take::<f32>(if shared { n * dims } else { 0 }, "early embedding")?,
        next: s.take::<f32>(if shared { nnz } else { 0 }, "early schedule")?,
        log_z: 0.0,
        samples: 0,
    };
    for (p, &sv) in s_values.iter().enumerate() {
        let y = &mut ys[p * n * dims..(p + 1) * n * dims];
        let early = match (shared, p) {
            (false, _) => Early::Run,
            (true, 0) => Early::RunAndSave(&mut state),
            (true, _) => Early::ResumeFrom(&state),
        };
        let sgd = params.sgd(sv, n)?;
        summaries[p] = optimize_with(graph, &sgd, early, par, obs, s.rest_mut(), y)?;
    }
    Ok(init)
}

#[inline(always)]
fn clip(v: f32) -> f32 {
    v.clamp(-CLIP, CLIP)
}

#[inline(always)]
fn sq_dist(a: &[f32], b: &[f32], dims: usize) -> f32 {
    let mut s = 0.0;
    for d in 0..dims {
        let t = a[d] - b[d];
        s += t * t;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (fuzz target sgd_epoch): an edge to a point that does not exist was an
    /// index out of bounds inside the epoch; now the graph is refused up front.
    #[test]
    fn a_graph_with_an_out_of_range_edge_is_refused() {
        let graph = CsrRef {
            indptr: &[0, 1, 2, 3],
            indices: &[1, 2, 200],
            values: &[1.0, 1.0, 1.0],
        };
        let params = SgdParams {
            negatives: 1,
            epochs: 2,
            ..SgdParams::default()
        };
        let mut y = [0.0f32, 1.0, 2.0, 0.5, 1.0, 1.5];
        let mut scratch = std::vec![0u8; sgd_scratch(3, 3, 2).bytes()];
        let r = optimize(
            graph,
            &params,
            &crate::Serial,
            &mut crate::Silent,
            &mut scratch,
            &mut y,
        );
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
    }

    /// The loss of one sample as a function of the positions (f64 finite differences).
    fn sample_loss(k: Kernel, pts: &[[f32; 2]]) -> f32 {
        let d2 = |a: [f32; 2], b: [f32; 2]| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2);
        let negs: Vec<f32> = pts[2..].iter().map(|&p| d2(pts[0], p)).collect();
        let mut c = vec![0.0; negs.len()];
        terms(k, d2(pts[0], pts[1]), &negs, &mut c).1
    }

    fn check_gradient(k: Kernel) {
        let pts: Vec<[f32; 2]> = vec![
            [0.3, -0.2],
            [1.1, 0.4],
            [-0.7, 0.9],
            [2.0, -1.5],
            [0.9, 0.8],
        ];
        let d2 = |a: [f32; 2], b: [f32; 2]| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2);
        let negs: Vec<f32> = pts[2..].iter().map(|&p| d2(pts[0], p)).collect();
        let mut cn = vec![0.0; negs.len()];
        let (cp, _, _) = terms(k, d2(pts[0], pts[1]), &negs, &mut cn);
        // Analytic gradient with respect to every point.
        let mut grad = vec![[0.0f32; 2]; pts.len()];
        for d in 0..2 {
            let g = 2.0 * cp * (pts[0][d] - pts[1][d]);
            grad[0][d] += g;
            grad[1][d] -= g;
            for (u, c) in cn.iter().enumerate() {
                let g = 2.0 * c * (pts[0][d] - pts[2 + u][d]);
                grad[0][d] += g;
                grad[2 + u][d] -= g;
            }
        }
        let h = 1e-3f32;
        for p in 0..pts.len() {
            for d in 0..2 {
                let (mut a, mut b) = (pts.clone(), pts.clone());
                a[p][d] += h;
                b[p][d] -= h;
                let fd = (sample_loss(k, &a) - sample_loss(k, &b)) / (2.0 * h);
                let tol = 2e-3 * (1.0 + fd.abs());
                assert!(
                    (fd - grad[p][d]).abs() < tol,
                    "{k:?} point {p} dim {d}: fd {fd} analytic {}",
                    grad[p][d]
                );
            }
        }
    }

    #[test]
    fn neg_gradient_matches_finite_differences() {
        for c in [1e-3f32, 0.05, 1.0, 20.0] {
            check_gradient(Kernel::Neg { c });
        }
    }

    #[test]
    fn info_nce_gradient_matches_finite_differences() {
        for inv_iota in [1.0f32, 0.25, 0.6] {
            check_gradient(Kernel::InfoNce { inv_iota });
        }
    }

    #[test]
    fn umap_loss_gradient_matches_finite_differences_away_from_its_epsilon() {
        // umap-learn's repulsive gradient has ε = 0.001 in its denominator, so it equals the
        // derivative of its loss up to a relative 0.001/d²: tested where that is negligible.
        check_gradient(Kernel::Umap { a: 1.577, b: 0.895 });
        check_gradient(Kernel::Umap { a: 1.0, b: 1.0 });
    }

    #[test]
    fn nce_log_z_derivative_matches_finite_differences() {
        let (dp, dn) = (0.8f32, [0.3f32, 2.5, 7.0]);
        let f = |logc: f64| {
            let mut c = [0.0; 3];
            terms(
                Kernel::Neg {
                    c: libm::exp(logc) as f32,
                },
                dp,
                &dn,
                &mut c,
            )
            .1 as f64
        };
        let logc = libm::log(0.2);
        let mut c = [0.0; 3];
        let (_, _, dz) = terms(Kernel::Neg { c: 0.2 }, dp, &dn, &mut c);
        let h = 1e-3;
        let fd = (f(logc + h) - f(logc - h)) / (2.0 * h);
        assert!((fd - dz as f64).abs() < 1e-3, "fd {fd} analytic {dz}");
    }

    #[test]
    fn neg_negatives_in_eight_lanes_match_the_scalar_twin() {
        let mut r = crate::Rng::new(3);
        let d2: Vec<f32> = (0..203)
            .map(|i| {
                if i % 17 == 0 {
                    0.0
                } else {
                    (r.uniform() * 50.0) as f32
                }
            })
            .collect();
        let mut got = vec![0.0f32; d2.len()];
        for c in [1e-9f32, 1e-3, 0.5, 30.0] {
            let loss = neg_negative_coefs(c, &d2, &mut got, true);
            for (g, &d) in got.iter().zip(&d2) {
                let want = negative(Kernel::Neg { c }, d, false).0;
                assert_eq!(g.to_bits(), want.to_bits(), "c {c} d2 {d}");
            }
            let want: f32 = d2
                .iter()
                .map(|&d| negative(Kernel::Neg { c }, d, true).1)
                .sum();
            assert!(
                (loss - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "c {c}: loss {loss} vs {want}"
            );
        }
    }

    #[test]
    fn umap_curve_tables_match_the_exact_terms() {
        let mut tables = vec![0.0f32; CURVE_TABLES * CURVE_LEN];
        let mut curve = UmapCurve {
            a: f32::NAN,
            b: f32::NAN,
            tables: &mut tables,
        };
        let mut worst = [0.0f64; CURVE_TABLES];
        // umap-learn's default curve and others that min_dist and spread give.
        for (a, b) in [
            (1.577f32, 0.895f32),
            (1.929, 0.7915),
            (0.583, 1.334),
            (0.1, 2.0),
            (10.0, 0.6),
        ] {
            curve.set(a, b);
            let mut d2 = 1e-6f32;
            while d2 < 1e6 {
                let want = umap_terms_exact(a, b, d2);
                for t in 0..CURVE_TABLES {
                    let (got, want) = (curve.at(t, d2) as f64, want[t] as f64);
                    // Coefficients relative, losses absolute.
                    let err = if t < POSITIVE_LOSS {
                        ((got - want) / want).abs()
                    } else {
                        (got - want).abs()
                    };
                    worst[t] = worst[t].max(err);
                }
                d2 *= 1.0123;
            }
            // The exact terms where the tables are not: at 0 and beyond the last node.
            let (lo, hi) = (2f32.powi(-24), 2f32.powi(24));
            assert_eq!(
                curve.at(NEGATIVE_COEF, 0.0),
                umap_terms_exact(a, b, lo)[NEGATIVE_COEF]
            );
            assert_eq!(
                curve.at(NEGATIVE_COEF, 1e30),
                umap_terms_exact(a, b, hi)[NEGATIVE_COEF]
            );
        }
        eprintln!("UMAP curve tables: worst errors {worst:?}");
        for (t, w) in worst.iter().enumerate() {
            let tol = if t < POSITIVE_LOSS {
                CURVE_TOLERANCE
            } else {
                CURVE_LOSS_TOLERANCE
            };
            assert!(*w < tol as f64, "table {t}: {w:e}");
        }
        // The scalar functions that the gradient tests check agree with the reference.
        let umap = Kernel::Umap { a: 1.577, b: 0.895 };
        for d2 in [1e-3f32, 0.1, 1.0, 7.0, 300.0] {
            let want = umap_terms_exact(1.577, 0.895, d2);
            let (p, n) = (positive(umap, d2, true), negative(umap, d2, true));
            for (got, want) in [(p.0, want[0]), (n.0, want[1])] {
                assert!(((got - want) / want).abs() < 1e-4, "d2 {d2}: {got} {want}");
            }
            assert!((p.1 - want[2]).abs() < 1e-4 && (n.1 - want[3]).abs() < 1e-4);
        }
    }

    #[test]
    fn clamped_terms_have_no_gradient() {
        // c so large that ξ < 1e-4 for the positive, and c so small that 1 − ξ < 1e-4.
        let mut c = [0.0f32; 1];
        let (cp, _, _) = terms(Kernel::Neg { c: 1e6 }, 1.0, &[1.0], &mut c);
        assert_eq!(cp, 0.0);
        let (_, _, _) = terms(Kernel::Neg { c: 1e-7 }, 1.0, &[1.0], &mut c);
        assert_eq!(c[0], 0.0);
    }
}
