//! Placing new points into a fitted embedding without moving it (out-of-sample extension).
//!
//! Each new point is placed from its own nearest reference points, against the fixed
//! reference embedding: t-SNE as openTSNE does it (a small perplexity, initialisation at the
//! neighbours' weighted mean, then gradient descent on the point's own KL divergence), UMAP
//! as umap-learn does it (memberships with ρ = 0, the weighted mean, then SGD that moves only
//! the new point). New points never interact, and every per-point choice (its normaliser,
//! its random stream) comes from the point alone, so a point's result does not depend on the
//! batch it arrives in.

use crate::bh::{self, BhNode};
use crate::error::{Error, Result, ensure, ensure_len};
use crate::gradient::{OutputKernel, sq_dist};
use crate::knn::{self, Metric};
use crate::matrix::MatRef;
use crate::ne::{self, CLIP, Kernel, MAX_DIMS, MAX_NEGATIVES};
use crate::observer::{Observer, Stage, enter};
use crate::parallel::{Parallel, for_row_chunks};
use crate::project;
use crate::rng::Rng;
use crate::scratch::{Scratch, ScratchSize};
use crate::umap;

/// Largest neighbour count of a transform (per-point state lives on the stack).
pub const MAX_NEIGHBOURS: usize = 256;
/// New points per progress report (and cancellation check).
const BLOCK: usize = 2048;
/// New points per parallel task.
const TASK_POINTS: usize = 32;

/// What a fitted model holds for transform.
#[derive(Clone, Copy, Debug)]
pub struct Reference<'a> {
    /// The reference points as the neighbour search sees them (in the reduced coordinates
    /// when `basis` is set).
    pub data: MatRef<'a>,
    /// Their embedding, `n × dims`, row-major.
    pub embedding: &'a [f32],
    pub dims: usize,
    pub metric: Metric,
    /// An orthonormal basis (`r × input dims`, rows) the fit projected its data onto; new
    /// points are projected the same way. `data` then has `r` columns.
    pub basis: Option<&'a [f32]>,
}

impl Reference<'_> {
    pub fn rows(&self) -> usize {
        self.data.rows()
    }

    /// Columns of the new points: the data's, or the basis's before reduction.
    pub fn input_dims(&self) -> usize {
        match self.basis {
            Some(b) => b.len() / self.data.cols().max(1),
            None => self.data.cols(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let n = self.rows();
        ensure(n >= 1, "reference", "holds no points")?;
        ensure(
            (1..=MAX_DIMS).contains(&self.dims),
            "dims",
            "the embedding must have 1 to 16 dimensions",
        )?;
        ensure_len("reference embedding", n * self.dims, self.embedding.len())?;
        if let Some(i) = self.embedding.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                row: i / self.dims,
                col: i % self.dims,
            });
        }
        if let Some(b) = self.basis {
            let r = self.data.cols();
            ensure(
                !b.is_empty() && b.len() % r == 0 && b.len() / r > r,
                "basis",
                "must be r x D with D greater than the r reduced columns",
            )?;
        }
        Ok(())
    }
}

/// Lengths of the `prepare` outputs for `n` reference points in `dims` output dimensions:
/// (norms, tree nodes, tree permutation). The tree exists for 2-D and 3-D only.
pub fn prepared_lens(n: usize, dims: usize) -> (usize, usize, usize) {
    if dims == 2 || dims == 3 {
        (n, bh::nodes_len(n), n)
    } else {
        (n, 0, 0)
    }
}

/// Per-reference values computed once by `prepare` and shared by every transform call.
#[derive(Clone, Copy, Debug)]
pub struct Prepared<'a> {
    pub norms: &'a [f32],
    /// A Barnes–Hut tree over the embedding (empty unless dims is 2 or 3).
    pub nodes: &'a [BhNode],
    pub perm: &'a [u32],
    /// The approximate neighbour search's index (`build_search_index`); None searches
    /// exactly.
    pub search: Option<SearchIndex<'a>>,
}

/// Directions of the subspace the approximate neighbour search of new points runs in.
pub const SEARCH_DIMS: usize = 64;
/// Reference rows the search subspace is estimated from, at most (evenly spaced).
const SEARCH_SAMPLE_ROWS: usize = 16_384;
/// Fixed seed of the search subspace: the index is a function of the reference alone.
const SEARCH_SEED: u64 = 0x5ea_4c4;

/// The reference rows in a `SEARCH_DIMS`-dimensional dominant subspace: each new point's
/// `2k` nearest there (an exact search, 12× cheaper than in 784 dimensions) are ranked by
/// their full distances. Distances in a subspace never exceed the full ones, so the true
/// neighbours are rarely missed (recall is tested). Every new point is searched on its own,
/// so its neighbours still do not depend on its batch.
#[derive(Clone, Copy, Debug)]
pub struct SearchIndex<'a> {
    /// `SEARCH_DIMS × cols` orthonormal rows.
    pub basis: &'a [f32],
    /// `n × SEARCH_DIMS` coordinates (of unit-length rows for cosine).
    pub coords: &'a [f32],
    /// Their squared norms.
    pub norms: &'a [f32],
}

/// Whether a reference of `n` rows and `cols` columns should get a search index: wide rows
/// (the subspace search does at most half the arithmetic) and enough of them.
pub fn wants_search_index(n: usize, cols: usize) -> bool {
    cols >= 2 * SEARCH_DIMS && n >= 4 * MAX_NEIGHBOURS
}

/// Lengths of `build_search_index`'s outputs (basis, coordinates, norms).
pub fn search_index_lens(n: usize, cols: usize) -> (usize, usize, usize) {
    (SEARCH_DIMS * cols, n * SEARCH_DIMS, n)
}

/// Scratch for `build_search_index`.
pub fn search_index_scratch(n: usize, cols: usize) -> ScratchSize {
    project::subspace_scratch(n, cols, SEARCH_DIMS, SEARCH_SAMPLE_ROWS)
}

/// Fills a search index for `reference` (whose `prepared_norms` come from `prepare`).
pub fn build_search_index(
    reference: &Reference,
    prepared_norms: &[f32],
    par: &dyn Parallel,
    scratch: &mut [u8],
    basis: &mut [f32],
    coords: &mut [f32],
    norms: &mut [f32],
) -> Result<()> {
    let (n, cols) = (reference.rows(), reference.data.cols());
    let (lb, lc, ln) = search_index_lens(n, cols);
    ensure_len("search basis", lb, basis.len())?;
    ensure_len("search coordinates", lc, coords.len())?;
    ensure_len("search norms", ln, norms.len())?;
    ensure_len("norms", n, prepared_norms.len())?;
    ensure(
        cols > SEARCH_DIMS,
        "search index",
        "needs more columns than its subspace",
    )?;
    let r = SEARCH_DIMS;
    project::dominant_subspace(
        reference.data,
        r,
        SEARCH_SAMPLE_ROWS,
        SEARCH_SEED,
        par,
        scratch,
        basis,
    )?;
    project::project(reference.data, basis, r, par, coords)?;
    if reference.metric == Metric::Cosine {
        unit_rows(coords, r, prepared_norms);
    }
    for (o, z) in norms.iter_mut().zip(coords.chunks_exact(r)) {
        *o = crate::simd::dot(z, z);
    }
    Ok(())
}

/// Scales each r-wide row of `z` by 1 / its point's norm (0 stays 0).
fn unit_rows(z: &mut [f32], r: usize, norms: &[f32]) {
    for (zi, &nv) in z.chunks_exact_mut(r).zip(norms) {
        let inv = if nv > 0.0 { 1.0 / nv } else { 0.0 };
        zi.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Candidates per new point ranked by full distance.
fn search_pool(k: usize, n: usize) -> usize {
    (2 * k).max(k + 16).min(n)
}

/// Checks the reference and fills the prepared values (lengths from `prepared_lens`).
pub fn prepare(
    reference: &Reference,
    norms: &mut [f32],
    nodes: &mut [BhNode],
    perm: &mut [u32],
) -> Result<()> {
    reference.validate()?;
    reference.data.check_values()?;
    let n = reference.rows();
    let (ln, lt, lp) = prepared_lens(n, reference.dims);
    ensure_len("norms", ln, norms.len())?;
    ensure_len("tree nodes", lt, nodes.len())?;
    ensure_len("tree permutation", lp, perm.len())?;
    knn::row_norms(reference.data, reference.metric, norms)?;
    if lt > 0 {
        bh::build_tree(reference.embedding, n, reference.dims, nodes, perm)?;
    }
    Ok(())
}

/// t-SNE transform settings (openTSNE's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TsneTransformParams {
    /// Perplexity of each new point's neighbourhood (5).
    pub perplexity: f32,
    /// Reference neighbours per new point (25).
    pub neighbours: usize,
    /// Gradient-descent iterations (250).
    pub iters: usize,
    /// Learning rate (0.1).
    pub learning_rate: f32,
    /// Exaggeration of the attraction throughout (1.5).
    pub exaggeration: f32,
    pub momentum: f32,
    /// Each step's gradient is scaled down to at most this norm (0.25), so that a point
    /// that starts on top of reference points does not shoot off.
    pub max_grad_norm: f32,
    /// Degrees of freedom of the output kernel: the fit's.
    pub dof: f32,
    /// Barnes–Hut opening angle for the repulsion of the reference points (0.5).
    pub theta: f32,
}

impl Default for TsneTransformParams {
    fn default() -> Self {
        TsneTransformParams {
            perplexity: 5.0,
            neighbours: 25,
            iters: 250,
            learning_rate: 0.1,
            exaggeration: 1.5,
            momentum: 0.8,
            max_grad_norm: 0.25,
            dof: 1.0,
            theta: 0.5,
        }
    }
}

impl TsneTransformParams {
    pub fn validate(&self) -> Result<()> {
        let pos = |v: f32| v.is_finite() && v > 0.0;
        ensure(
            (1..=MAX_NEIGHBOURS).contains(&self.neighbours),
            "neighbours",
            "must be between 1 and 256",
        )?;
        ensure(
            pos(self.perplexity) && self.perplexity < self.neighbours as f32,
            "perplexity",
            "must be a positive number below the neighbour count",
        )?;
        ensure(
            pos(self.learning_rate),
            "learning rate",
            "must be a finite number > 0",
        )?;
        ensure(
            pos(self.exaggeration),
            "exaggeration",
            "must be a finite number > 0",
        )?;
        ensure(
            self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum),
            "momentum",
            "must be in [0, 1)",
        )?;
        ensure(
            pos(self.max_grad_norm),
            "max gradient norm",
            "must be a finite number > 0",
        )?;
        ensure(
            self.theta.is_finite() && self.theta >= 0.0,
            "theta",
            "must be a finite number >= 0",
        )?;
        OutputKernel::new(self.dof).map(|_| ())
    }
}

/// UMAP transform settings (umap-learn's, with a fixed epoch count).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UmapTransformParams {
    /// Reference neighbours per new point: the fit's `neighbors` (15).
    pub neighbours: usize,
    /// SGD epochs (100). umap-learn uses 30 for batches above 10 000 points; a fixed count
    /// keeps each point independent of its batch.
    pub epochs: usize,
    /// Initial learning rate, annealed linearly to 0 (0.25: a quarter of the fit's).
    pub learning_rate: f32,
    /// Negative samples per positive: the fit's (5).
    pub negatives: usize,
    /// The fit's output curve.
    pub a: f32,
    pub b: f32,
    pub seed: u64,
}

impl Default for UmapTransformParams {
    fn default() -> Self {
        UmapTransformParams {
            neighbours: 15,
            epochs: 100,
            learning_rate: 0.25,
            negatives: 5,
            a: 1.577,
            b: 0.895,
            seed: 42,
        }
    }
}

impl UmapTransformParams {
    pub fn validate(&self) -> Result<()> {
        ensure(
            (1..=MAX_NEIGHBOURS).contains(&self.neighbours),
            "neighbours",
            "must be between 1 and 256",
        )?;
        ensure(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "learning rate",
            "must be a finite number > 0",
        )?;
        ensure(self.negatives <= MAX_NEGATIVES, "negatives", "at most 1024")?;
        ensure(
            self.a.is_finite() && self.a > 0.0 && self.b.is_finite() && self.b > 0.0,
            "a, b",
            "the output curve needs finite a > 0 and b > 0",
        )
    }
}

/// Scratch for a transform of `nq` new points with `k` neighbours against `reference`
/// (enough for either search).
pub fn transform_scratch(nq: usize, k: usize, reference: &Reference) -> ScratchSize {
    let (n, cols) = (reference.rows(), reference.data.cols());
    let reduced = if reference.basis.is_some() {
        nq * cols
    } else {
        0
    };
    let approx = if wants_search_index(n, cols) {
        let pool = search_pool(k, n);
        ScratchSize::new()
            .plus::<f32>(nq * SEARCH_DIMS) // projected new points
            .plus::<f32>(nq) // their norms
            .plus::<u32>(nq * pool)
            .plus::<f32>(nq * pool)
    } else {
        ScratchSize::new()
    };
    ScratchSize::new()
        .plus::<f32>(reduced)
        .plus::<f32>(knn::query_prepared_scratch_len(nq))
        .plus::<u32>(nq * k)
        .plus::<f32>(nq * k)
        .plus::<u8>(approx.bytes())
}

/// The shared first steps: checks, projection, and each new point's `k` nearest reference
/// points (indices and the fit's distances: squared Euclidean or cosine).
#[allow(clippy::too_many_arguments)]
fn neighbours<'s>(
    reference: &Reference,
    prepared: &Prepared,
    queries: MatRef,
    k: usize,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &'s mut [u8],
    out_len: usize,
) -> Result<(&'s mut [u32], &'s mut [f32])> {
    reference.validate()?;
    let (n, nq) = (reference.rows(), queries.rows());
    ensure(nq >= 1, "new points", "none given")?;
    ensure(
        queries.cols() == reference.input_dims(),
        "new points",
        "column count differs from the fitted data",
    )?;
    ensure(
        k <= n,
        "neighbours",
        "more than the model's reference points",
    )?;
    ensure_len("norms", n, prepared.norms.len())?;
    ensure_len("output", nq * reference.dims, out_len)?;
    queries.check_values()?;
    let needed = transform_scratch(nq, k, reference).bytes();
    ensure_len("scratch", needed, scratch.len())?;
    let mut s = Scratch::new(scratch);
    let projected;
    let q = match reference.basis {
        Some(basis) => {
            let r = reference.data.cols();
            let buf = s.take::<f32>(nq * r, "projected points")?;
            project::project(queries, basis, r, par, buf)?;
            projected = MatRef::dense(buf, nq, r)?;
            projected
        }
        None => queries,
    };
    let qnorms = s.take::<f32>(knn::query_prepared_scratch_len(nq), "search scratch")?;
    let idx = s.take::<u32>(nq * k, "neighbour indices")?;
    let dist = s.take::<f32>(nq * k, "neighbour distances")?;
    enter(obs, Stage::Knn, nq)?;
    let Some(index) = prepared.search else {
        knn::exact_knn_query_prepared(
            reference.data,
            prepared.norms,
            q,
            k,
            reference.metric,
            par,
            obs,
            qnorms,
            idx,
            dist,
        )?;
        return Ok((idx, dist));
    };
    // Approximate: the pool nearest in the search subspace, ranked by full distance.
    let r = SEARCH_DIMS;
    let cols = reference.data.cols();
    ensure_len("search basis", r * cols, index.basis.len())?;
    ensure_len("search coordinates", n * r, index.coords.len())?;
    ensure_len("search norms", n, index.norms.len())?;
    let pool = search_pool(k, n);
    let qz = s.take::<f32>(nq * r, "projected new points")?;
    let qfull = s.take::<f32>(nq, "new points' norms")?;
    let pidx = s.take::<u32>(nq * pool, "candidate indices")?;
    let pdist = s.take::<f32>(nq * pool, "candidate distances")?;
    project::project(q, index.basis, r, par, qz)?;
    knn::fill_norms(q, reference.metric, knn::Kernel::Simd, qfull);
    if reference.metric == Metric::Cosine {
        unit_rows(qz, r, qfull);
    }
    knn::exact_knn_query_prepared(
        MatRef::dense(index.coords, n, r)?,
        index.norms,
        MatRef::dense(qz, nq, r)?,
        pool,
        Metric::SqEuclidean,
        par,
        obs,
        qnorms,
        pidx,
        pdist,
    )?;
    let (pidx, qfull) = (&*pidx, &*qfull);
    let norms = prepared.norms;
    crate::parallel::for_row_chunks2(
        par,
        nq,
        TASK_POINTS,
        idx,
        k,
        dist,
        k,
        &|_, first, rows, ri, rd| {
            for t in 0..rows {
                let i = first + t;
                let (oi, od) = (&mut ri[t * k..(t + 1) * k], &mut rd[t * k..(t + 1) * k]);
                let mut len = 0;
                for &j in &pidx[i * pool..(i + 1) * pool] {
                    let dot = crate::simd::dot(q.row(i), reference.data.row(j as usize));
                    let dd = knn::to_distance(reference.metric, dot, qfull[i], norms[j as usize]);
                    knn::heap_push(od, oi, &mut len, dd, j);
                }
                knn::heap_sort(od, oi);
            }
        },
    );
    Ok((idx, dist))
}

/// Runs `place(point, out_row)` for every new point, in fixed blocks with progress reports.
fn place_all(
    nq: usize,
    dims: usize,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    out: &mut [f32],
    place: &(dyn Fn(usize, &mut [f32]) + Sync),
) -> Result<()> {
    enter(obs, Stage::Optimize, nq)?;
    let mut start = 0;
    while start < nq {
        let end = (start + BLOCK).min(nq);
        for_row_chunks(
            par,
            end - start,
            TASK_POINTS,
            &mut out[start * dims..end * dims],
            dims,
            &|_, first, rows, chunk| {
                for r in 0..rows {
                    place(start + first + r, &mut chunk[r * dims..(r + 1) * dims]);
                }
            },
        );
        start = end;
        crate::observer::report(obs, Stage::Optimize, end, nq)?;
    }
    Ok(())
}

/// Places `queries` (new points in the fitted data's columns) into a t-SNE embedding:
/// `out` receives `nq × dims`. On `Err(Cancelled)` the points not yet placed are 0.
#[allow(clippy::too_many_arguments)]
pub fn tsne_transform(
    reference: &Reference,
    prepared: &Prepared,
    queries: MatRef,
    params: &TsneTransformParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    out: &mut [f32],
) -> Result<()> {
    params.validate()?;
    let k = params.neighbours.min(reference.rows());
    ensure(
        params.perplexity < k as f32,
        "perplexity",
        "must be below the number of reference points",
    )?;
    let out_len = out.len();
    let (idx, p) = neighbours(reference, prepared, queries, k, par, obs, scratch, out_len)?;
    enter(obs, Stage::Affinities, queries.rows())?;
    crate::affinity::calibrate_perplexity(p, k, params.perplexity, par, None)?;
    let dims = reference.dims;
    let tree = dims == 2 || dims == 3;
    ensure(
        !tree || prepared.nodes.len() == bh::nodes_len(reference.rows()),
        "prepared tree",
        "missing: call prepare with prepared_lens",
    )?;
    let kernel = OutputKernel::new(params.dof)?;
    let (idx, p) = (&*idx, &*p);
    out.fill(0.0);
    place_all(queries.rows(), dims, par, obs, out, &|i, y| {
        let nb = &idx[i * k..(i + 1) * k];
        let pw = &p[i * k..(i + 1) * k];
        place_tsne(reference, prepared, params, kernel, tree, nb, pw, y);
    })
}

/// One new point: the p-weighted mean of its neighbours, then gradient descent (momentum
/// and per-coordinate gains, openTSNE's optimiser) on KL(p_i ‖ q_i), where q_i is the
/// point's own normalised kernel over the reference points:
/// ∂/∂y = 2 [ρ Σ_j p_j w_j^{1/α} (y − e_j) − (1/Z_i) Σ_j w_j^{(α+1)/α} (y − e_j)].
#[allow(clippy::too_many_arguments)]
fn place_tsne(
    reference: &Reference,
    prepared: &Prepared,
    params: &TsneTransformParams,
    kernel: OutputKernel,
    tree: bool,
    nb: &[u32],
    pw: &[f32],
    y: &mut [f32],
) {
    let dims = reference.dims;
    weighted_mean(reference, nb, pw, y);
    let mut update = [0.0f32; MAX_DIMS];
    let mut gains = [1.0f32; MAX_DIMS];
    let mut grad = [0.0f32; MAX_DIMS];
    for _ in 0..params.iters {
        point_gradient(
            reference,
            prepared,
            params,
            kernel,
            tree,
            nb,
            pw,
            y,
            &mut grad[..dims],
        );
        let norm = libm::sqrtf(grad[..dims].iter().map(|g| g * g).sum::<f32>());
        let scale = if norm > params.max_grad_norm {
            params.max_grad_norm / norm
        } else {
            1.0
        };
        for a in 0..dims {
            let g = grad[a] * scale;
            gains[a] = if (g > 0.0) != (update[a] > 0.0) {
                gains[a] + 0.2
            } else {
                (gains[a] * 0.8).max(0.01)
            };
            update[a] = params.momentum * update[a] - params.learning_rate * gains[a] * g;
            y[a] += update[a];
        }
    }
}

/// `y` = the `w`-weighted mean of the neighbours' positions (the plain mean if every weight
/// is 0); `y` starts at zero.
fn weighted_mean(reference: &Reference, nb: &[u32], w: &[f32], y: &mut [f32]) {
    let dims = reference.dims;
    let total: f32 = w.iter().sum();
    for (&j, &wj) in nb.iter().zip(w) {
        let c = if total > 0.0 {
            wj / total
        } else {
            1.0 / nb.len() as f32
        };
        let e = &reference.embedding[j as usize * dims..(j as usize + 1) * dims];
        for (v, &ea) in y.iter_mut().zip(e) {
            *v += c * ea;
        }
    }
}

/// ∂KL(p_i ‖ q_i)/∂y at the new point's position `y`, with the attraction exaggerated.
#[allow(clippy::too_many_arguments)]
fn point_gradient(
    reference: &Reference,
    prepared: &Prepared,
    params: &TsneTransformParams,
    kernel: OutputKernel,
    tree: bool,
    nb: &[u32],
    pw: &[f32],
    y: &[f32],
    grad: &mut [f32],
) {
    let dims = reference.dims;
    let emb = reference.embedding;
    let row = |j: usize| &emb[j * dims..(j + 1) * dims];
    let mut attr = [0.0f32; MAX_DIMS];
    for (&j, &w) in nb.iter().zip(pw) {
        let ej = row(j as usize);
        let (_, b) = kernel.eval(sq_dist(y, ej));
        for a in 0..dims {
            attr[a] += w * b * (y[a] - ej[a]);
        }
    }
    let mut rep = [0.0f32; MAX_DIMS];
    let z = if tree {
        bh::tree_repulsion(
            emb,
            dims,
            prepared.nodes,
            prepared.perm,
            kernel,
            params.theta,
            y,
            &mut rep[..dims],
        )
    } else {
        let mut z = 0.0f32;
        for j in 0..reference.rows() {
            let ej = row(j);
            let (w, b) = kernel.eval(sq_dist(y, ej));
            z += w;
            for a in 0..dims {
                rep[a] += w * b * (y[a] - ej[a]);
            }
        }
        z
    };
    let inv_z = if z > 0.0 { 1.0 / z } else { 0.0 };
    for a in 0..dims {
        grad[a] = 2.0 * (params.exaggeration * attr[a] - inv_z * rep[a]);
    }
}

/// Places `queries` into a UMAP embedding: `out` receives `nq × dims`. On `Err(Cancelled)`
/// the points not yet placed are 0.
#[allow(clippy::too_many_arguments)]
pub fn umap_transform(
    reference: &Reference,
    prepared: &Prepared,
    queries: MatRef,
    params: &UmapTransformParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    out: &mut [f32],
) -> Result<()> {
    params.validate()?;
    let n = reference.rows();
    ensure(
        params.negatives < n.max(1) || params.negatives == 0,
        "negatives",
        "must be fewer than the model's reference points",
    )?;
    let k = params.neighbours.min(n);
    let out_len = out.len();
    let (idx, w) = neighbours(reference, prepared, queries, k, par, obs, scratch, out_len)?;
    enter(obs, Stage::Affinities, queries.rows())?;
    if reference.metric == Metric::SqEuclidean {
        w.iter_mut().for_each(|d| *d = libm::sqrtf(d.max(0.0)));
    }
    umap::transform_memberships(w, k)?;
    let (idx, w) = (&*idx, &*w);
    out.fill(0.0);
    place_all(queries.rows(), reference.dims, par, obs, out, &|i, y| {
        let stream = row_hash(queries.row(i));
        place_umap(
            reference,
            params,
            &idx[i * k..(i + 1) * k],
            &w[i * k..(i + 1) * k],
            Rng::stream(params.seed, stream),
            y,
        );
    })
}

/// A 64-bit hash of a row's bit patterns (FNV-1a), so that a point's random stream is its
/// own and does not depend on where it sits in a batch.
fn row_hash(row: &[f32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for v in row {
        for byte in v.to_bits().to_le_bytes() {
            h ^= byte as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// One new point: the membership-weighted mean of its neighbours, then umap-learn's SGD with
/// only the new point moving: each edge is sampled every 1/w epochs (w ≤ 1, so the heaviest
/// possible edge every epoch), with `negatives` uniform reference points per sample.
fn place_umap(
    reference: &Reference,
    params: &UmapTransformParams,
    nb: &[u32],
    w: &[f32],
    mut rng: Rng,
    y: &mut [f32],
) {
    let (n, dims) = (reference.rows(), reference.dims);
    let emb = reference.embedding;
    let row = |j: usize| &emb[j * dims..(j + 1) * dims];
    weighted_mean(reference, nb, w, y);
    let kernel = Kernel::Umap {
        a: params.a,
        b: params.b,
    };
    let clip = |v: f32| v.clamp(-CLIP, CLIP);
    let mut next = [0.0f32; MAX_NEIGHBOURS];
    for (s, &wj) in next.iter_mut().zip(w) {
        *s = if wj > 0.0 { 1.0 / wj } else { f32::INFINITY };
    }
    for epoch in 0..params.epochs {
        let now = epoch as f32;
        let alpha = params.learning_rate * (1.0 - now / params.epochs as f32);
        for (e, &j) in nb.iter().enumerate() {
            if next[e] > now {
                continue;
            }
            next[e] += 1.0 / w[e];
            let ej = row(j as usize);
            let (cp, _, _) = ne::positive(kernel, sq_dist(y, ej), false);
            for a in 0..dims {
                y[a] -= alpha * clip(2.0 * cp * (y[a] - ej[a]));
            }
            for _ in 0..params.negatives {
                let el = row(rng.below(n));
                let (cn, _, _) = ne::negative(kernel, sq_dist(y, el), false);
                for a in 0..dims {
                    y[a] -= alpha * clip(2.0 * cn * (y[a] - el[a]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Silent;
    use crate::parallel::Serial;
    use std::vec;
    use std::vec::Vec;

    struct Fixture {
        data: Vec<f32>,
        emb: Vec<f32>,
        n: usize,
        d: usize,
        dims: usize,
    }

    /// Three blobs in `d` columns with an embedding of three blobs in `dims`.
    fn fixture(n: usize, d: usize, dims: usize, seed: u64) -> Fixture {
        let mut r = Rng::new(seed);
        let mut data = vec![0.0f32; n * d];
        let mut emb = vec![0.0f32; n * dims];
        for i in 0..n {
            let c = (i % 3) as f64;
            for a in 0..d {
                data[i * d + a] = (r.normal() + if a == i % 3 { 6.0 } else { 0.0 }) as f32;
            }
            for a in 0..dims {
                emb[i * dims + a] = (r.normal() * 0.5 + c * 4.0 * (a as f64 + 1.0)) as f32;
            }
        }
        Fixture {
            data,
            emb,
            n,
            d,
            dims,
        }
    }

    fn prepared_for(reference: &Reference) -> (Vec<f32>, Vec<BhNode>, Vec<u32>) {
        let (ln, lt, lp) = prepared_lens(reference.rows(), reference.dims);
        let (mut a, mut b, mut c) = (vec![0.0; ln], vec![BhNode::default(); lt], vec![0; lp]);
        prepare(reference, &mut a, &mut b, &mut c).unwrap();
        (a, b, c)
    }

    /// KL(p ‖ q) of one new point at `y`, q_j = w_j / Σ_l w_l over every reference point,
    /// in f64 (p given over the neighbours `nb`).
    fn point_kl(emb: &[f32], dims: usize, dof: f64, nb: &[u32], pw: &[f32], y: &[f64]) -> f64 {
        let n = emb.len() / dims;
        let w = |j: usize| {
            let d2: f64 = (0..dims)
                .map(|a| (y[a] - emb[j * dims + a] as f64).powi(2))
                .sum();
            (1.0 + d2 / dof).powf(-dof)
        };
        let z: f64 = (0..n).map(w).sum();
        nb.iter()
            .zip(pw)
            .filter(|(_, p)| **p > 0.0)
            .map(|(&j, &p)| p as f64 * ((p as f64).ln() - (w(j as usize) / z).ln()))
            .sum()
    }

    #[test]
    fn point_gradient_matches_finite_differences() {
        for (dims, dof) in [(1, 1.0f32), (2, 1.0), (2, 0.6), (3, 3.0), (4, 1.0)] {
            let f = fixture(60, 3, dims, 5 + dims as u64);
            let reference = Reference {
                data: MatRef::dense(&f.data, f.n, f.d).unwrap(),
                embedding: &f.emb,
                dims,
                metric: Metric::SqEuclidean,
                basis: None,
            };
            let (norms, nodes, perm) = prepared_for(&reference);
            let prepared = Prepared {
                norms: &norms,
                nodes: &nodes,
                perm: &perm,
                search: None,
            };
            // θ = 0: the tree sums exactly, so the gradient is that of the exact objective.
            let params = TsneTransformParams {
                exaggeration: 1.0,
                theta: 0.0,
                dof,
                ..Default::default()
            };
            let kernel = OutputKernel::new(dof).unwrap();
            let nb: Vec<u32> = vec![0, 3, 7, 11, 20];
            let pw: Vec<f32> = vec![0.4, 0.25, 0.15, 0.12, 0.08];
            let y: Vec<f32> = (0..dims).map(|a| 1.3 + 0.7 * a as f32).collect();
            let mut g = vec![0.0f32; dims];
            point_gradient(
                &reference,
                &prepared,
                &params,
                kernel,
                dims == 2 || dims == 3,
                &nb,
                &pw,
                &y,
                &mut g,
            );
            let h = 1e-5;
            let mut num = 0.0f64;
            let mut den = 0.0f64;
            for a in 0..dims {
                let mut yp: Vec<f64> = y.iter().map(|&v| v as f64).collect();
                let mut ym = yp.clone();
                yp[a] += h;
                ym[a] -= h;
                let fd = (point_kl(&f.emb, dims, dof as f64, &nb, &pw, &yp)
                    - point_kl(&f.emb, dims, dof as f64, &nb, &pw, &ym))
                    / (2.0 * h);
                num += (fd - g[a] as f64).powi(2);
                den += fd * fd;
            }
            let rel = (num / den).sqrt();
            assert!(rel < 1e-4, "dims {dims}, dof {dof}: relative error {rel}");
        }
    }

    fn run(
        method: u8,
        f: &Fixture,
        queries: &[f32],
        nq: usize,
        batch: usize,
        par: &dyn Parallel,
    ) -> Vec<f32> {
        let reference = Reference {
            data: MatRef::dense(&f.data, f.n, f.d).unwrap(),
            embedding: &f.emb,
            dims: f.dims,
            metric: Metric::SqEuclidean,
            basis: None,
        };
        let (norms, nodes, perm) = prepared_for(&reference);
        let prepared = Prepared {
            norms: &norms,
            nodes: &nodes,
            perm: &perm,
            search: None,
        };
        let mut out = vec![0.0f32; nq * f.dims];
        for start in (0..nq).step_by(batch) {
            let end = (start + batch).min(nq);
            let q = MatRef::dense(&queries[start * f.d..end * f.d], end - start, f.d).unwrap();
            let k = 25;
            let mut scratch = vec![0u8; transform_scratch(end - start, k, &reference).bytes()];
            let o = &mut out[start * f.dims..end * f.dims];
            if method == 0 {
                let p = TsneTransformParams::default();
                tsne_transform(
                    &reference,
                    &prepared,
                    q,
                    &p,
                    par,
                    &mut Silent,
                    &mut scratch,
                    o,
                )
                .unwrap();
            } else {
                let p = UmapTransformParams {
                    neighbours: k,
                    ..Default::default()
                };
                umap_transform(
                    &reference,
                    &prepared,
                    q,
                    &p,
                    par,
                    &mut Silent,
                    &mut scratch,
                    o,
                )
                .unwrap();
            }
        }
        out
    }

    #[test]
    fn each_point_is_independent_of_its_batch_and_the_thread_count() {
        let f = fixture(300, 5, 2, 11);
        let q = fixture(70, 5, 2, 12);
        let threads = crate::threads::Threads::new(4);
        for method in [0, 1] {
            let all = run(method, &f, &q.data, 70, 70, &Serial);
            assert!(all.iter().all(|v| v.is_finite()));
            for batch in [1, 9] {
                let b = run(method, &f, &q.data, 70, batch, &Serial);
                assert!(all == b, "method {method}: batches of {batch} differ");
            }
            let t = run(method, &f, &q.data, 70, 70, &threads);
            assert!(all == t, "method {method}: four threads differ");
        }
    }

    /// Rows from a 90-dimensional structure (20 loose clusters) mixed into 160 columns, with
    /// noise: more directions than the search subspace keeps.
    fn wide_rows(n: usize, seed: u64) -> Vec<f32> {
        let (d, latent) = (160, 90);
        let mut r = Rng::new(77);
        let mix: Vec<f64> = (0..latent * d).map(|_| r.normal()).collect();
        let centres: Vec<f64> = (0..20 * latent).map(|_| r.normal()).collect();
        let mut r = Rng::new(seed);
        let mut x = vec![0.0f32; n * d];
        for i in 0..n {
            let c = r.below(20);
            let z: Vec<f64> = (0..latent)
                .map(|l| centres[c * latent + l] + r.normal())
                .collect();
            for a in 0..d {
                let v: f64 = (0..latent).map(|l| z[l] * mix[l * d + a]).sum();
                x[i * d + a] = (v + 2.0 * r.normal()) as f32;
            }
        }
        x
    }

    #[test]
    fn approximate_search_finds_the_exact_neighbours_and_ignores_the_batch() {
        let (n, nq, d) = (2048, 150, 160);
        let (data, qdata) = (wide_rows(n, 1), wide_rows(nq, 2));
        let emb = vec![0.0f32; n * 2];
        let threads = crate::threads::Threads::new(3);
        for metric in [Metric::SqEuclidean, Metric::Cosine] {
            let reference = Reference {
                data: MatRef::dense(&data, n, d).unwrap(),
                embedding: &emb,
                dims: 2,
                metric,
                basis: None,
            };
            assert!(wants_search_index(n, d));
            let (norms, nodes, perm) = prepared_for(&reference);
            let (lb, lc, ln) = search_index_lens(n, d);
            let (mut b, mut c, mut nn) = (vec![0.0; lb], vec![0.0; lc], vec![0.0; ln]);
            let mut sc = vec![0u8; search_index_scratch(n, d).bytes()];
            build_search_index(
                &reference, &norms, &Serial, &mut sc, &mut b, &mut c, &mut nn,
            )
            .unwrap();
            let exact = Prepared {
                norms: &norms,
                nodes: &nodes,
                perm: &perm,
                search: None,
            };
            let approx = Prepared {
                search: Some(SearchIndex {
                    basis: &b,
                    coords: &c,
                    norms: &nn,
                }),
                ..exact
            };
            for k in [15, 25] {
                let search = |prep: &Prepared, from: usize, to: usize, par: &dyn Parallel| {
                    let q = MatRef::dense(&qdata[from * d..to * d], to - from, d).unwrap();
                    let mut sc = vec![0u8; transform_scratch(to - from, k, &reference).bytes()];
                    let (i, dd) = neighbours(
                        &reference,
                        prep,
                        q,
                        k,
                        par,
                        &mut crate::Silent,
                        &mut sc,
                        (to - from) * 2,
                    )
                    .unwrap();
                    (i.to_vec(), dd.to_vec())
                };
                let (ei, _) = search(&exact, 0, nq, &Serial);
                let (ai, ad) = search(&approx, 0, nq, &Serial);
                let found: usize = (0..nq)
                    .map(|q| {
                        let truth = &ei[q * k..(q + 1) * k];
                        ai[q * k..(q + 1) * k]
                            .iter()
                            .filter(|j| truth.contains(j))
                            .count()
                    })
                    .sum();
                let recall = found as f64 / (nq * k) as f64;
                // Measured: 0.9987 to 1 (pool 2k).
                assert!(recall >= 0.95, "{metric:?} k {k}: recall {recall}");
                for q in 0..nq {
                    let row = &ad[q * k..(q + 1) * k];
                    assert!(row.windows(2).all(|w| w[0] <= w[1]), "distances ascending");
                }
                // Alone, in batches of 7, and on three threads: the same bits.
                let mut pieces = (vec![], vec![]);
                for from in (0..nq).step_by(7) {
                    let (i, dd) = search(&approx, from, (from + 7).min(nq), &Serial);
                    pieces.0.extend(i);
                    pieces.1.extend(dd);
                }
                assert!(
                    pieces == (ai.clone(), ad.clone()),
                    "{metric:?} k {k}: batches"
                );
                assert!(
                    search(&approx, 0, nq, &threads) == (ai, ad),
                    "{metric:?}: threads"
                );
            }
        }
    }

    #[test]
    fn new_points_land_in_the_cluster_of_their_neighbours() {
        let f = fixture(300, 5, 2, 13);
        let q = fixture(60, 5, 2, 14);
        for method in [0, 1] {
            let out = run(method, &f, &q.data, 60, 60, &Serial);
            for i in 0..60 {
                // Cluster c of the fixture sits near (4c, 8c) in the embedding.
                let c = (i % 3) as f32;
                let (dx, dy) = (out[2 * i] - 4.0 * c, out[2 * i + 1] - 8.0 * c);
                assert!(
                    dx * dx + dy * dy < 4.0,
                    "method {method}: point {i} of cluster {c} at {:?}",
                    &out[2 * i..2 * i + 2]
                );
            }
        }
    }

    #[test]
    fn bad_queries_are_refused() {
        let f = fixture(50, 4, 2, 15);
        let reference = Reference {
            data: MatRef::dense(&f.data, f.n, f.d).unwrap(),
            embedding: &f.emb,
            dims: 2,
            metric: Metric::SqEuclidean,
            basis: None,
        };
        let (norms, nodes, perm) = prepared_for(&reference);
        let prepared = Prepared {
            norms: &norms,
            nodes: &nodes,
            perm: &perm,
            search: None,
        };
        let p = TsneTransformParams::default();
        let mut scratch = vec![0u8; transform_scratch(2, 25, &reference).bytes()];
        let mut out = vec![0.0f32; 4];
        let wrong_cols = [0.0f32; 6];
        let q = MatRef::dense(&wrong_cols, 2, 3).unwrap();
        assert!(
            tsne_transform(
                &reference,
                &prepared,
                q,
                &p,
                &Serial,
                &mut Silent,
                &mut scratch,
                &mut out
            )
            .is_err()
        );
        let mut nan = [0.0f32; 8];
        nan[5] = f32::NAN;
        let q = MatRef::dense(&nan, 2, 4).unwrap();
        assert_eq!(
            tsne_transform(
                &reference,
                &prepared,
                q,
                &p,
                &Serial,
                &mut Silent,
                &mut scratch,
                &mut out
            ),
            Err(Error::NonFinite { row: 1, col: 1 })
        );
    }
}
