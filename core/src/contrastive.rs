//! Batch contrastive losses and their gradients (MATH §6–7): InfoNCE / NT-Xent, CLIP,
//! SupCon, t-SimCNE-style Cauchy similarities, and the general I-Con loss
//! Σ_i KL(p(·|i) ‖ q(·|i)).
//!
//! All of them are one computation. Logits ℓ_ij between the rows of A and of B come from a
//! similarity (cosine/τ, log of a Student-t kernel, or −γ·d²); q is their softmax, per row
//! (`Normalisation::Row`) or over all pairs (`Joint`, as t-SNE); the loss is the cross-entropy
//! −Σ p log q against target distributions p, plus Σ p log p for I-Con so that it is a KL.
//! The gradient with respect to the logits is w·(Σp·q − p) per row, and flows back through
//! the similarity to the input vectors.
//!
//! Numerics: log-sum-exp with the row maximum, sums in f64, logits and products in f32 (the
//! three products are `gemm`'s, parallel over fixed row blocks, so any thread count gives the
//! same bits). Distance kernels work on the batch centred at its mean, which keeps
//! ‖a‖² + ‖b‖² − 2a·b accurate for vectors far from the origin. Cosine similarity of a zero
//! vector is undefined: it is an error (`Error::ZeroVector`), not an ε.

use crate::affinity::CsrRef;
use crate::error::{Error, Result, ensure, ensure_len};
use crate::gemm;
use crate::matrix::MatRef;
use crate::parallel::{Parallel, SharedMut, chunk_count, for_row_chunks};
use crate::scratch::{Scratch, ScratchSize};

/// Rows per parallel task of the row passes.
const TASK_ROWS: usize = 32;

/// How two vectors become a logit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Similarity {
    /// cos(a, b) / τ: SimCLR, CLIP, SupCon.
    Cosine { tau: f32 },
    /// log (1 + ‖a − b‖²/ν)^(−ν): ν = 1 is the Cauchy kernel (t-SimCNE, t-SNE).
    StudentT { dof: f32 },
    /// −γ·‖a − b‖²: SNE's Gaussian.
    Gaussian { gamma: f32 },
}

/// The target distribution of each row.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Row i's positive is column i ^ 1: two views (2k, 2k+1) of each item (SimCLR).
    Pairs,
    /// Row i's positive is column i (two sets, CLIP).
    Diagonal,
    /// Uniform over the other items with the same label (SupCon). Rows whose label occurs
    /// once have no target and are left out of the loss.
    SameLabel(&'a [u32]),
    /// Given distributions: with `Normalisation::Row` each non-empty row sums to 1; with
    /// `Joint` all entries sum to 1 (t-SNE's P).
    Sparse(CsrRef<'a>),
}

/// Over what q is normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalisation {
    /// q(·|i): softmax of row i; the loss is the mean over rows with a target.
    Row,
    /// q over all pairs i ≠ j (t-SNE); the loss is KL(P‖Q) of the one joint distribution.
    Joint,
}

struct Spec<'a> {
    sim: Similarity,
    targets: Targets<'a>,
    /// A and B are the same set: the diagonal is excluded from q.
    same: bool,
    norm: Normalisation,
    /// p̃ = (1 − α)p + α·uniform.
    debias: f32,
    /// Add Σ p log p (I-Con's KL rather than a cross-entropy).
    entropy: bool,
    /// Multiplies the loss and the gradient (CLIP's ½ per direction).
    scale: f64,
    /// Multiplies p's pull in the gradient (not the loss): early exaggeration for I-Con
    /// embeddings; 1 otherwise.
    exaggeration: f64,
}

impl<'a> Spec<'a> {
    /// A plain cross-entropy: per-row q, no debiasing, no entropy term, unscaled.
    fn cross_entropy(sim: Similarity, targets: Targets<'a>, same: bool) -> Self {
        Spec {
            sim,
            targets,
            same,
            norm: Normalisation::Row,
            debias: 0.0,
            entropy: false,
            scale: 1.0,
            exaggeration: 1.0,
        }
    }
}

/// Scratch for any loss here with `m` rows against `n` columns of dimension `k`.
pub fn contrastive_scratch(m: usize, n: usize, k: usize) -> ScratchSize {
    ScratchSize::new()
        .plus::<f32>(m * n) // logits, then ∂L/∂ℓ times ∂ℓ/∂(similarity)
        .plus::<f32>((m + n) * k) // prepared rows of A and B
        .plus::<f32>((m + n) * k) // gradients with respect to them
        .plus::<f32>(m + n) // norms
        .plus::<f64>(m) // row log-sum-exp
        .plus::<f32>(m + n) // row and column sums of H
        .plus::<f64>(2 * chunk_count(m, TASK_ROWS))
        .plus::<f64>(k) // centre
}

fn check_similarity(sim: Similarity) -> Result<()> {
    match sim {
        Similarity::Cosine { tau } => ensure(
            tau.is_finite() && tau > 0.0,
            "tau",
            "the temperature must be a finite number > 0",
        ),
        Similarity::StudentT { dof } => ensure(
            dof.is_finite() && dof > 0.0,
            "dof",
            "degrees of freedom must be a finite number > 0",
        ),
        Similarity::Gaussian { gamma } => ensure(
            gamma.is_finite() && gamma > 0.0,
            "gamma",
            "the Gaussian scale must be a finite number > 0",
        ),
    }
}

/// InfoNCE / NT-Xent over `z` (2B × d, views (2k, 2k+1)): the mean over rows of
/// −log q(partner | i), q the softmax over all other rows. Writes ∂L/∂z into `grad` (2B × d).
pub fn info_nce(
    z: MatRef,
    sim: Similarity,
    par: &dyn Parallel,
    scratch: &mut [u8],
    grad: &mut [f32],
) -> Result<f64> {
    ensure(
        z.rows() >= 2 && z.rows() % 2 == 0,
        "batch",
        "InfoNCE needs an even number of rows (two views per item)",
    )?;
    let spec = Spec::cross_entropy(sim, Targets::Pairs, true);
    run(z, z, &spec, par, scratch, grad, None)
}

/// Supervised contrastive loss (SupCon, "L_out"): the mean over rows with at least one
/// same-label partner of −(1/|P_i|) Σ_{p∈P_i} log q(p | i). Writes ∂L/∂z into `grad`.
pub fn supcon(
    z: MatRef,
    labels: &[u32],
    sim: Similarity,
    par: &dyn Parallel,
    scratch: &mut [u8],
    grad: &mut [f32],
) -> Result<f64> {
    ensure_len("labels", z.rows(), labels.len())?;
    let spec = Spec::cross_entropy(sim, Targets::SameLabel(labels), true);
    run(z, z, &spec, par, scratch, grad, None)
}

/// CLIP's symmetric loss between `a` and `b` (B × d each, row i of one matches row i of the
/// other): ½·(mean CE of rows of A against B + mean CE of rows of B against A).
#[allow(clippy::too_many_arguments)]
pub fn clip_loss(
    a: MatRef,
    b: MatRef,
    sim: Similarity,
    par: &dyn Parallel,
    scratch: &mut [u8],
    grad_a: &mut [f32],
    grad_b: &mut [f32],
) -> Result<f64> {
    ensure(
        a.rows() == b.rows() && a.rows() >= 1,
        "batch",
        "CLIP needs the same number of rows in both sets",
    )?;
    let spec = Spec {
        scale: 0.5,
        ..Spec::cross_entropy(sim, Targets::Diagonal, false)
    };
    let l1 = run(a, b, &spec, par, scratch, grad_a, Some(grad_b))?;
    // The other direction adds its gradients onto the first's (`engine` adds, `run` zeroes).
    let l2 = engine(b, a, &spec, par, scratch, grad_b, Some(grad_a))?;
    Ok(l1 + l2)
}

/// The general two-set cross-entropy: the mean over rows of A (with a target) of
/// −Σ_j p(j|i) log q(j|i), q the softmax of row i's logits against all rows of B. Writes
/// ∂L/∂a and ∂L/∂b. With one-hot class vectors as B this is softmax cross-entropy.
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy(
    a: MatRef,
    b: MatRef,
    targets: Targets,
    sim: Similarity,
    par: &dyn Parallel,
    scratch: &mut [u8],
    grad_a: &mut [f32],
    grad_b: &mut [f32],
) -> Result<f64> {
    let spec = Spec::cross_entropy(sim, targets, false);
    run(a, b, &spec, par, scratch, grad_a, Some(grad_b))
}

/// I-Con: KL between the target neighbourhoods `p` and the embedding's `q`, mean over rows
/// (`Row`) or of the joint distributions (`Joint`), with optional debiasing
/// p̃ = (1 − α)p + α·uniform over the other points. Writes ∂L/∂y into `grad`.
#[allow(clippy::too_many_arguments)]
pub fn icon_loss(
    y: MatRef,
    p: Targets,
    q: Similarity,
    norm: Normalisation,
    debias: f32,
    par: &dyn Parallel,
    scratch: &mut [u8],
    grad: &mut [f32],
) -> Result<f64> {
    icon_loss_exaggerated(y, p, q, norm, debias, 1.0, par, scratch, grad)
}

/// `icon_loss` with p's pull in the gradient multiplied by `exaggeration` (the loss itself is
/// not): the early-exaggeration phase of an I-Con embedding.
#[allow(clippy::too_many_arguments)]
pub fn icon_loss_exaggerated(
    y: MatRef,
    p: Targets,
    q: Similarity,
    norm: Normalisation,
    debias: f32,
    exaggeration: f64,
    par: &dyn Parallel,
    scratch: &mut [u8],
    grad: &mut [f32],
) -> Result<f64> {
    ensure(
        exaggeration.is_finite() && exaggeration > 0.0,
        "exaggeration",
        "must be a finite number > 0",
    )?;
    ensure(
        debias.is_finite() && (0.0..=1.0).contains(&debias),
        "debias",
        "alpha must be in [0, 1]",
    )?;
    ensure(
        !matches!(p, Targets::Diagonal),
        "p",
        "the diagonal target needs two sets; use Pairs, SameLabel or Sparse",
    )?;
    let spec = Spec {
        norm,
        debias,
        entropy: true,
        exaggeration,
        ..Spec::cross_entropy(q, p, true)
    };
    run(y, y, &spec, par, scratch, grad, None)
}

fn run(
    a: MatRef,
    b: MatRef,
    spec: &Spec,
    par: &dyn Parallel,
    scratch: &mut [u8],
    grad_a: &mut [f32],
    grad_b: Option<&mut [f32]>,
) -> Result<f64> {
    ensure_len("gradient", a.rows() * a.cols(), grad_a.len())?;
    grad_a.fill(0.0);
    if let Some(g) = grad_b {
        ensure_len("gradient of the second set", b.rows() * b.cols(), g.len())?;
        g.fill(0.0);
        engine(a, b, spec, par, scratch, grad_a, Some(g))
    } else {
        engine(a, b, spec, par, scratch, grad_a, None)
    }
}

/// The number of candidate columns of each row.
fn candidates(spec: &Spec, n: usize) -> usize {
    if spec.same { n - 1 } else { n }
}

/// Calls `f(j, p)` for the sparse target entries of row `i`; returns their sum.
#[inline]
fn for_targets(t: &Targets, i: usize, n: usize, mut f: impl FnMut(usize, f64)) -> f64 {
    match *t {
        Targets::Pairs => {
            f(i ^ 1, 1.0);
            1.0
        }
        Targets::Diagonal => {
            f(i, 1.0);
            1.0
        }
        Targets::SameLabel(labels) => {
            let count = (0..n).filter(|&j| j != i && labels[j] == labels[i]).count();
            if count == 0 {
                return 0.0;
            }
            let p = 1.0 / count as f64;
            for j in 0..n {
                if j != i && labels[j] == labels[i] {
                    f(j, p);
                }
            }
            1.0
        }
        Targets::Sparse(csr) => {
            let (cols, vals) = csr.row(i);
            let mut s = 0.0;
            for (&j, &v) in cols.iter().zip(vals) {
                f(j as usize, v as f64);
                s += v as f64;
            }
            s
        }
    }
}

fn check_targets(spec: &Spec, m: usize, n: usize) -> Result<()> {
    match spec.targets {
        Targets::Pairs => ensure(m == n && m % 2 == 0, "targets", "pairs need an even batch"),
        Targets::Diagonal => ensure(m <= n, "targets", "diagonal targets need m <= n"),
        Targets::SameLabel(l) => ensure_len("labels", m, l.len()),
        Targets::Sparse(csr) => {
            csr.check(n)?;
            ensure(csr.rows() == m, "p", "needs one row per point")?;
            ensure_len("p indptr", m + 1, csr.indptr.len())?;
            let mut total = 0.0f64;
            for i in 0..m {
                let (cols, vals) = csr.row(i);
                let mut row = 0.0f64;
                for (&j, &v) in cols.iter().zip(vals) {
                    ensure((j as usize) < n, "p", "column index out of range")?;
                    ensure(
                        !(spec.same && j as usize == i),
                        "p",
                        "p(i|i) must be absent",
                    )?;
                    ensure(
                        v.is_finite() && v >= 0.0,
                        "p",
                        "entries must be finite and >= 0",
                    )?;
                    row += v as f64;
                }
                if spec.norm == Normalisation::Row {
                    ensure(
                        row == 0.0 || (row - 1.0).abs() < 1e-3,
                        "p",
                        "each non-empty row must sum to 1",
                    )?;
                }
                total += row;
            }
            if spec.norm == Normalisation::Joint {
                ensure((total - 1.0).abs() < 1e-3, "p", "the entries must sum to 1")?;
            }
            Ok(())
        }
    }
}

/// Copies `x` into `out` (dense), normalised to unit rows (cosine) or centred at `centre`.
/// Writes each row's norm (cosine) or squared norm (distances) into `norms`.
/// Shortest vector cosine similarity accepts: shorter ones have no direction that single
/// precision can carry (their gradient, which scales as 1/‖x‖, would overflow).
pub const MIN_NORM: f64 = 1e-30;

fn prepare(
    x: MatRef,
    sim: Similarity,
    centre: &[f64],
    out: &mut [f32],
    norms: &mut [f32],
) -> Result<()> {
    let k = x.cols();
    for i in 0..x.rows() {
        let row = x.row(i);
        let o = &mut out[i * k..(i + 1) * k];
        match sim {
            Similarity::Cosine { .. } => {
                let n2: f64 = row.iter().map(|&v| v as f64 * v as f64).sum();
                let norm = libm::sqrt(n2);
                // Below MIN_NORM, 1/‖x‖ in the gradient overflows single precision.
                if !(norm.is_finite() && norm >= MIN_NORM) {
                    return Err(Error::ZeroVector { row: i });
                }
                for (oc, &v) in o.iter_mut().zip(row) {
                    *oc = (v as f64 / norm) as f32;
                }
                norms[i] = norm as f32;
            }
            _ => {
                let mut n2 = 0.0f64;
                for c in 0..k {
                    let v = row[c] as f64 - centre[c];
                    o[c] = v as f32;
                    n2 += (o[c] as f64) * (o[c] as f64);
                }
                norms[i] = n2 as f32;
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn engine(
    a: MatRef,
    b: MatRef,
    spec: &Spec,
    par: &dyn Parallel,
    scratch: &mut [u8],
    grad_a: &mut [f32],
    grad_b: Option<&mut [f32]>,
) -> Result<f64> {
    let (m, n, k) = (a.rows(), b.rows(), a.cols());
    check_similarity(spec.sim)?;
    ensure(k >= 1, "vectors", "need at least one dimension")?;
    ensure(
        b.cols() == k,
        "vectors",
        "both sets need the same dimension",
    )?;
    ensure(m >= 1 && n >= 1, "batch", "needs at least one row")?;
    ensure(!spec.same || m >= 2, "batch", "needs at least two rows")?;
    a.check_values()?;
    b.check_values()?;
    check_targets(spec, m, n)?;
    ensure_len(
        "scratch",
        contrastive_scratch(m, n, k).bytes(),
        scratch.len(),
    )?;
    let mut s = Scratch::new(scratch);
    let h = s.take_as_is::<f32>(m * n, "logits")?;
    let ap = s.take_as_is::<f32>(m * k, "prepared rows")?;
    let bp = s.take_as_is::<f32>(n * k, "prepared columns")?;
    let ga = s.take_as_is::<f32>(m * k, "row gradients")?;
    let gb = s.take_as_is::<f32>(n * k, "column gradients")?;
    let na = s.take::<f32>(m, "row norms")?;
    let nb = s.take::<f32>(n, "column norms")?;
    let lse = s.take::<f64>(m, "row log-sum-exp")?;
    let sums = s.take::<f32>(m + n, "row and column sums")?;
    let partials = s.take::<f64>(2 * chunk_count(m, TASK_ROWS), "partial sums")?;
    let centre = s.take::<f64>(k, "centre")?;

    // Distance kernels work relative to the mean of A (a shift changes no distance).
    if !matches!(spec.sim, Similarity::Cosine { .. }) {
        for i in 0..m {
            for (c, &v) in a.row(i).iter().enumerate() {
                centre[c] += v as f64;
            }
        }
        centre.iter_mut().for_each(|c| *c /= m as f64);
    }
    prepare(a, spec.sim, centre, ap, na)?;
    if spec.same {
        bp.copy_from_slice(ap);
        nb.copy_from_slice(na);
    } else {
        prepare(b, spec.sim, centre, bp, nb)?;
    }
    let (am, bm) = (MatRef::dense(ap, m, k)?, MatRef::dense(bp, n, k)?);
    gemm::a_bt(am, bm, par, h);

    // Each entry's stored value (the logit, or for Student-t the base 1/(1 + d²/ν), which
    // spares a log and an exp per entry), and each row's log-sum-exp.
    let (sim, same) = (spec.sim, spec.same);
    let (na, nb) = (&*na, &*nb);
    crate::parallel::for_row_chunks2(
        par,
        m,
        TASK_ROWS,
        h,
        n,
        lse,
        1,
        &|_, start, rows, hr, lr| {
            for r in 0..rows {
                let i = start + r;
                let row = &mut hr[r * n..(r + 1) * n];
                for j in 0..n {
                    row[j] = stored(sim, row[j], na[i], nb[j]);
                }
                if same {
                    row[i] = f32::NAN; // never read: the diagonal is skipped below
                }
                let row = &*row;
                let (a, b) = if same { (i, i + 1) } else { (n, n) };
                let others = || row[..a].iter().chain(&row[b..]).copied();
                lr[r] = match sim {
                    Similarity::StudentT { dof } => {
                        libm::log(others().map(|t| pow_dof(t, dof)).sum::<f64>())
                    }
                    _ => {
                        let max = others().fold(f32::NEG_INFINITY, f32::max);
                        let sum: f64 = others().map(|l| libm::expf(l - max) as f64).sum();
                        max as f64 + libm::log(sum)
                    }
                };
            }
        },
    );

    let alpha = spec.debias as f64;
    let cands = candidates(spec, n);
    // One pass over the targets: rows that have any, and the total mass of p̃.
    let (rows_with_targets, sparse_mass) = (0..m).fold((0usize, 0.0f64), |(rows, mass), i| {
        let p = for_targets(&spec.targets, i, n, |_, _| {});
        (rows + (alpha > 0.0 || p > 0.0) as usize, mass + p)
    });
    if rows_with_targets == 0 {
        return Err(Error::InvalidParameter {
            name: "targets",
            reason: "no row has a positive (every label occurs once?)",
        });
    }
    let joint_norm = match spec.norm {
        Normalisation::Row => None,
        Normalisation::Joint => {
            let max = lse.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = lse.iter().map(|&l| libm::exp(l - max)).sum();
            Some(max + libm::log(s))
        }
    };
    // Joint q: every row's gradient carries the total mass of p̃ (1 for a distribution).
    let total_p = sparse_mass * (1.0 - alpha) + alpha;
    let (weight, uniform) = match spec.norm {
        Normalisation::Row => (spec.scale / rows_with_targets as f64, 1.0 / cands as f64),
        Normalisation::Joint => (spec.scale, 1.0 / (m * cands) as f64),
    };

    // H = ∂L/∂ℓ · ∂ℓ/∂x in place (x the cosine or d²), row sums of H, and the loss per chunk.
    let tasks = chunk_count(m, TASK_ROWS);
    {
        let (sh, sp, ss) = (
            SharedMut::new(&mut *h),
            SharedMut::new(&mut partials[..tasks]),
            SharedMut::new(&mut sums[..m]),
        );
        let (lse, ap, bp) = (&*lse, &*ap, &*bp);
        par.run(tasks, &|t| {
            let start = t * TASK_ROWS;
            let end = (start + TASK_ROWS).min(m);
            // SAFETY: task t alone owns rows [start, end) of h and of the row sums, and slot t.
            let (hr, slot, rs) = unsafe {
                (
                    sh.range(start * n, end * n),
                    sp.range(t, t + 1),
                    ss.range(start, end),
                )
            };
            let mut loss = 0.0f64;
            for i in start..end {
                let row = &mut hr[(i - start) * n..(i - start + 1) * n];
                // The sparse part of p against the logits (still intact).
                let (mut sparse_pl, mut entropy, mut nnz) = (0.0f64, 0.0f64, 0usize);
                let p_sum = for_targets(&spec.targets, i, n, |j, p| {
                    sparse_pl += p * logit_of(sim, row[j]);
                    nnz += 1;
                    let pt = (1.0 - alpha) * p + alpha * uniform;
                    if pt > 0.0 {
                        entropy += pt * libm::log(pt);
                    }
                });
                let has_target = p_sum > 0.0 || alpha > 0.0 || joint_norm.is_some();
                let w = if has_target { weight } else { 0.0 };
                let s_i = (1.0 - alpha) * p_sum + alpha * uniform * cands as f64;
                let s_q = if joint_norm.is_some() { total_p } else { s_i };
                let norm = joint_norm.unwrap_or(lse[i]);
                // Dense part: H = w(s·q − α·u)·∂ℓ/∂x.
                let mut logit_sum = 0.0f64;
                let (a_f, b_f) = ((w * s_q) as f32, (w * alpha * uniform) as f32);
                let inv_z = libm::exp(-norm);
                for j in 0..n {
                    if same && j == i {
                        row[j] = 0.0;
                        continue;
                    }
                    let v = row[j];
                    if alpha > 0.0 {
                        logit_sum += logit_of(sim, v);
                    }
                    let q = match sim {
                        Similarity::StudentT { dof } => (pow_dof(v, dof) * inv_z) as f32,
                        _ => libm::expf((v as f64 - norm) as f32),
                    };
                    row[j] = (a_f * q - b_f) * chain_of(sim, v);
                }
                // Sparse part: −w(1 − α)p·∂ℓ/∂x, the stored value recomputed where needed.
                if w != 0.0 {
                    for_targets(&spec.targets, i, n, |j, p| {
                        let v = match sim {
                            Similarity::StudentT { .. } => stored(
                                sim,
                                crate::simd::dot(&ap[i * k..(i + 1) * k], &bp[j * k..(j + 1) * k]),
                                na[i],
                                nb[j],
                            ),
                            _ => 0.0,
                        };
                        row[j] -=
                            (w * (1.0 - alpha) * p * spec.exaggeration) as f32 * chain_of(sim, v);
                    });
                    let mut row_loss =
                        s_i * norm - (1.0 - alpha) * sparse_pl - alpha * uniform * logit_sum;
                    if spec.entropy {
                        let rest = cands - nnz;
                        if alpha > 0.0 && rest > 0 {
                            let pu = alpha * uniform;
                            entropy += rest as f64 * pu * libm::log(pu);
                        }
                        row_loss += entropy;
                    }
                    loss += w * row_loss;
                }
                rs[i - start] = row.iter().sum();
            }
            slot[0] = loss;
        });
    }
    let loss: f64 = partials[..tasks].iter().sum();

    let (row_sums, col_sums) = sums.split_at_mut(m);
    if same {
        // One set: the gradient is (H + Hᵀ)·X, one product instead of two.
        gemm::add_transpose(h, m, par);
        gemm::g_b(h, m, am, par, ga);
        if !matches!(sim, Similarity::Cosine { .. }) {
            let hh = &*h;
            for_row_chunks(par, m, 256, row_sums, 1, &|_, start, rows, out| {
                for (r, o) in out.iter_mut().enumerate().take(rows) {
                    *o = hh[(start + r) * m..(start + r + 1) * m].iter().sum();
                }
            });
        }
        finish(sim, ap, na, ga, row_sums, k, grad_a);
        return Ok(loss);
    }
    // Back to the vectors: ga = H·B, gb = Hᵀ·A.
    gemm::g_b(h, m, bm, par, ga);
    gemm::gt_a(h, n, am, par, gb);
    if !matches!(sim, Similarity::Cosine { .. }) {
        // Column sums of H over fixed column chunks, rows in order.
        let hh = &*h;
        for_row_chunks(par, n, 256, col_sums, 1, &|_, start, cols, out| {
            out.fill(0.0);
            for i in 0..m {
                let r = &hh[i * n + start..i * n + start + cols];
                for (o, v) in out.iter_mut().zip(r) {
                    *o += v;
                }
            }
        });
    }
    finish(sim, ap, na, ga, row_sums, k, grad_a);
    match grad_b {
        Some(g) => finish(sim, bp, nb, gb, col_sums, k, g),
        None => finish(sim, bp, nb, gb, col_sums, k, grad_a),
    }
    Ok(loss)
}

/// The value kept per entry: the logit, or for Student-t the base t = 1/(1 + d²/ν) of the
/// kernel t^ν (so the logit is ν·ln t).
#[inline(always)]
fn stored(sim: Similarity, dot: f32, na: f32, nb: f32) -> f32 {
    match sim {
        Similarity::Cosine { tau } => dot / tau,
        Similarity::StudentT { dof } => 1.0 / (1.0 + (na + nb - 2.0 * dot).max(0.0) / dof),
        Similarity::Gaussian { gamma } => -gamma * (na + nb - 2.0 * dot).max(0.0),
    }
}

/// The logit of a stored value.
#[inline(always)]
fn logit_of(sim: Similarity, v: f32) -> f64 {
    match sim {
        Similarity::StudentT { dof } => dof as f64 * libm::log(v as f64),
        _ => v as f64,
    }
}

/// ∂ℓ/∂x for the similarity's variable x (the cosine, or d²), from the stored value:
/// for Student-t, ℓ = −ν·ln(1 + d²/ν) gives −1/(1 + d²/ν) = −t.
#[inline(always)]
fn chain_of(sim: Similarity, v: f32) -> f32 {
    match sim {
        Similarity::Cosine { tau } => 1.0 / tau,
        Similarity::StudentT { .. } => -v,
        Similarity::Gaussian { gamma } => -gamma,
    }
}

/// t^ν in f64 (exact and cheap for the Cauchy kernel, ν = 1).
#[inline(always)]
fn pow_dof(t: f32, dof: f32) -> f64 {
    if dof == 1.0 {
        t as f64
    } else {
        libm::pow(t as f64, dof as f64)
    }
}

/// Adds the gradient with respect to the original vectors onto `grad`, from g = H·(other
/// side) for the prepared vectors `x` with norms `norms` and H's sums along this side.
fn finish(
    sim: Similarity,
    x: &[f32],
    norms: &[f32],
    g: &[f32],
    h_sums: &[f32],
    k: usize,
    grad: &mut [f32],
) {
    for i in 0..norms.len() {
        let (xi, gi, out) = (
            &x[i * k..(i + 1) * k],
            &g[i * k..(i + 1) * k],
            &mut grad[i * k..(i + 1) * k],
        );
        match sim {
            Similarity::Cosine { .. } => {
                // Through x̂ = x/‖x‖: (g − (g·x̂)x̂)/‖x‖.
                let proj = crate::simd::dot(gi, xi);
                let inv = 1.0 / norms[i];
                for c in 0..k {
                    out[c] += (gi[c] - proj * xi[c]) * inv;
                }
            }
            _ => {
                // Σ_j H_ij·2(x_i − y_j) = 2(x_i·Σ_j H_ij − (H·Y)_i).
                for c in 0..k {
                    out[c] += 2.0 * (xi[c] * h_sums[i] - gi[c]);
                }
            }
        }
    }
}

/// How I-Con's p is built from input data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Neighbourhood {
    /// Gaussian over the min(N − 1, 3·perplexity) nearest neighbours, calibrated to the
    /// perplexity (exactly t-SNE's affinities).
    Perplexity(f32),
    /// Uniform over the k nearest neighbours.
    Knn(usize),
}

fn neighbourhood_k(m: usize, kind: Neighbourhood) -> usize {
    match kind {
        Neighbourhood::Perplexity(p) => crate::affinity::neighbours_for_perplexity(m, p),
        Neighbourhood::Knn(k) => k,
    }
}

/// Length of the `indices`/`values` buffers of `neighbourhood` (`indptr` needs m + 1).
pub fn neighbourhood_nnz_bound(m: usize, kind: Neighbourhood) -> usize {
    crate::affinity::symmetric_nnz_bound(m, neighbourhood_k(m, kind).max(1))
}

/// Scratch for `neighbourhood` on `m` points of `d` columns.
pub fn neighbourhood_scratch(m: usize, kind: Neighbourhood) -> ScratchSize {
    let k = neighbourhood_k(m, kind).max(1);
    ScratchSize::new()
        .plus::<f32>(crate::knn::self_norms_len(m))
        .plus::<u32>(m * k)
        .plus::<f32>(m * k)
        .plus::<usize>(m)
}

/// I-Con's p from the rows of `x` (exact neighbours, squared Euclidean), as CSR: conditional
/// rows p(·|i) for `Row`, or the symmetrised joint (p(j|i) + p(i|j))/2N for `Joint`.
/// Returns the number of entries.
#[allow(clippy::too_many_arguments)]
pub fn neighbourhood(
    x: MatRef,
    kind: Neighbourhood,
    norm: Normalisation,
    par: &dyn Parallel,
    scratch: &mut [u8],
    indptr: &mut [usize],
    indices: &mut [u32],
    values: &mut [f32],
) -> Result<usize> {
    let m = x.rows();
    if m < 2 {
        return Err(Error::TooFewPoints { n: m, min: 2 });
    }
    x.check_values()?;
    match kind {
        Neighbourhood::Perplexity(p) => crate::affinity::check_perplexity(m, p)?,
        Neighbourhood::Knn(k) => ensure(k >= 1 && k < m, "k", "must satisfy 1 <= k <= N - 1")?,
    }
    let k = neighbourhood_k(m, kind);
    ensure_len(
        "scratch",
        neighbourhood_scratch(m, kind).bytes(),
        scratch.len(),
    )?;
    let bound = neighbourhood_nnz_bound(m, kind);
    ensure_len("indptr", m + 1, indptr.len())?;
    ensure_len("indices", bound, indices.len())?;
    ensure_len("values", bound, values.len())?;
    let mut s = Scratch::new(scratch);
    let norms = s.take::<f32>(m, "norms")?;
    let idx = s.take::<u32>(m * k, "neighbours")?;
    let dist = s.take::<f32>(m * k, "distances")?;
    let cursor = s.take::<usize>(m, "cursor")?;
    crate::knn::exact_knn(
        x,
        k,
        crate::knn::Metric::SqEuclidean,
        crate::knn::Kernel::Simd,
        par,
        &mut crate::observer::Silent,
        norms,
        idx,
        dist,
    )?;
    match kind {
        Neighbourhood::Perplexity(p) => {
            crate::affinity::calibrate_perplexity(dist, k, p, par, None)?
        }
        Neighbourhood::Knn(k) => dist.fill(1.0 / k as f32),
    }
    match norm {
        Normalisation::Joint => {
            crate::affinity::symmetrize(idx, dist, k, par, indptr, indices, values, cursor)
        }
        Normalisation::Row => {
            for i in 0..=m {
                indptr[i] = i * k;
            }
            indices[..m * k].copy_from_slice(idx);
            values[..m * k].copy_from_slice(dist);
            Ok(m * k)
        }
    }
}
