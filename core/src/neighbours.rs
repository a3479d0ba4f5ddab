//! The neighbour-search stage shared by every method: exact tiles or RP trees + NN-descent,
//! chosen by N. Writes `k` neighbours per row, ascending by distance, never the row itself.

use crate::error::{Result, ensure_len};
use crate::knn::{self, Kernel, Metric};
use crate::locality::{self, Towards};
use crate::matrix::MatRef;
use crate::nndescent::{self, NnDescentParams};
use crate::observer::{Observer, Stage, enter};
use crate::parallel::Parallel;
use crate::parallel::{SharedMut, chunk_count};
use crate::project;
use crate::scratch::{Scratch, ScratchSize};
use crate::simd;

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
    match (method.resolve(n), nnd.projection.dims(d)) {
        (KnnMethod::Exact, _) => s,
        (_, Some(r)) => s.plus::<u8>(projected_scratch(n, d, k, r, nnd).bytes()),
        (_, None) => s.plus::<u8>(nndescent::nn_descent_scratch(n, d, k, metric, nnd).bytes()),
    }
}

/// Candidates per point the projected search keeps for `k` neighbours when `pool` is 0:
/// 2k + 4 up to k = 30, 1.5k (at least 64) above. Measured on MNIST-70k, two threads
/// (`knn_tune`): at UMAP's k = 14 a pool of 32 searched with 16 candidates per round
/// (`projected_params`) reaches recall@14 0.965 in 2.5–2.8 s, against 0.955 in 3.1–3.3 s
/// for a pool of 28 with 20, and a pool of 21 drops it to 0.905; at k = 10 a pool of 24 with
/// 12 gives 0.953 in 1.75 s against 0.948 in 2.1 s for 20 with 20. At t-SNE's k = 90 a pool
/// of 1.5k drops recall@90 from 0.938 (2k) to 0.914, but the map's recall@10 and 10-NN
/// accuracy stay within the seed-to-seed spread (0.3568 / 0.9720 and 0.3575 / 0.9716
/// against 0.3575 / 0.9711 and 0.3573 / 0.9714), since the far neighbours carry little of
/// P, and the search takes about 2 s less on two threads.
pub fn default_pool(k: usize) -> usize {
    if k <= 30 {
        2 * k + 4
    } else {
        (3 * k / 2).max(64)
    }
}

/// The NN-descent settings of the projected search: new (and old) candidates per point and
/// round at most half the pool. The local join costs about the square of that number, and
/// for small pools a larger list searched with fewer candidates finds more of the true
/// neighbours sooner (see `default_pool`).
fn projected_params(pool: usize, nnd: &NnDescentParams) -> NnDescentParams {
    NnDescentParams {
        max_candidates: nnd.max_candidates.min(pool / 2).max(1),
        ..*nnd
    }
}

fn pool_size(n: usize, k: usize, nnd: &NnDescentParams) -> usize {
    let p = if nnd.pool == 0 {
        default_pool(k)
    } else {
        nnd.pool
    };
    p.max(k).min(n.saturating_sub(1))
}

/// Points per leaf of the spatial order the projected search runs in.
const SPATIAL_LEAF: usize = 16;

/// Rows the projected search's subspace is estimated from, at most (evenly spaced): the
/// leading directions of a large sample are those of the whole set, at a fraction of the
/// passes over the data.
const SUBSPACE_ROWS: usize = 16_384;

/// The candidates' distances, then (dead once NN-descent ends) the `k` neighbours' indices and
/// distances: with a pool of 2k candidates exactly the same bytes, with fewer the lists'.
fn candidate_region(n: usize, k: usize, pool: usize) -> ScratchSize {
    let lists = ScratchSize::new().plus::<u32>(n * k).plus::<f32>(n * k);
    ScratchSize::new().plus::<f32>(n * pool).max(lists)
}

/// Scratch of `projected_search`, its `idx`/`dist` results included.
fn projected_scratch(n: usize, d: usize, k: usize, r: usize, nnd: &NnDescentParams) -> ScratchSize {
    let pool = pool_size(n, k, nnd);
    ScratchSize::new()
        .plus::<f32>(r * d) // basis
        .plus::<i16>(n * nndescent::quantised_stride(r)) // projected rows, quantised
        .plus::<u32>(n * pool)
        .plus::<u8>(candidate_region(n, k, pool).bytes())
        .plus::<u32>(n) // visiting order
        .plus::<u32>(n) // each point's place in it
        .plus::<u64>(n.div_ceil(64)) // rows moved, for the search's spatial order
        .plus::<f32>(2 * r)
        .plus::<u32>(2 * pool)
        .plus::<u8>(
            project::subspace_scratch(n, d, r, SUBSPACE_ROWS)
                // The f32 projected rows, and beside them the search if they cannot be
                // quantised (the quantised search needs no more).
                .max(
                    ScratchSize::new().plus::<f32>(n * r).plus::<u8>(
                        nndescent::nn_descent_scratch(
                            n,
                            r,
                            pool,
                            Metric::SqEuclidean,
                            &projected_params(pool, nnd),
                        )
                        .bytes(),
                    ),
                )
                .max(ScratchSize::new().plus::<u8>(n * d)) // 8-bit copy for the ranking
                .bytes(),
        )
}

/// Approximate search in the dominant `r`-dimensional subspace (where distances
/// are cheap, and never longer than the full ones), then the `pool` candidates of each point
/// ranked by their full distances under `metric`. For cosine, the projected rows are scaled
/// to the projections of unit vectors. Returns the `k` neighbours' indices and distances,
/// which it writes over the candidates' distances in `scratch` (`projected_scratch`): at
/// MNIST's size that spares 50 MB of the pipelines' peak memory.
#[allow(clippy::too_many_arguments)]
fn projected_search<'a>(
    x: MatRef,
    k: usize,
    r: usize,
    metric: Metric,
    nnd: &NnDescentParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    norms: &mut [f32],
    scratch: &'a mut [u8],
) -> Result<(&'a mut [u32], &'a mut [f32])> {
    let (n, d) = (x.rows(), x.cols());
    let pool = pool_size(n, k, nnd);
    let mut st = Scratch::new(scratch);
    let basis = st.take::<f32>(r * d, "projection basis")?;
    let zq = st.take::<i16>(n * nndescent::quantised_stride(r), "quantised rows")?;
    let pidx = st.take::<u32>(n * pool, "candidate indices")?;
    let region = st.take_as_is::<u8>(candidate_region(n, k, pool).bytes(), "candidates")?;
    let order = st.take::<u32>(n, "visiting order")?;
    let place = st.take::<u32>(n, "visiting places")?;
    let seen = st.take::<u64>(n.div_ceil(64), "moved rows")?;
    let row_f32 = st.take::<f32>(2 * r, "row buffer")?;
    let row_u32 = st.take::<u32>(2 * pool, "row buffer")?;
    let rest = st.into_rest();
    let nnd = &projected_params(pool, nnd);
    project::dominant_subspace(x, r, SUBSPACE_ROWS, nnd.seed, par, rest, basis)?;
    // The f32 projection lives in the free scratch: once quantised it is not needed.
    let mut zs = Scratch::new(rest);
    let z = zs.take::<f32>(n * r, "projected rows")?;
    project::project(x, basis, r, par, z)?;
    knn::fill_norms(x, metric, Kernel::Simd, norms);
    if metric == Metric::Cosine {
        for (zi, &nv) in z.chunks_exact_mut(r).zip(norms.iter()) {
            let inv = if nv > 0.0 { 1.0 / nv } else { 0.0 };
            zi.iter_mut().for_each(|v| *v *= inv);
        }
    }
    // The search runs with the points in a spatial order (a k-d tree's leaves), so that a
    // wave of consecutive points offers candidates to heaps near each other in memory.
    // `order` holds that order until the lists are renamed back.
    locality::spatial_order(z, n, r, SPATIAL_LEAF, order)?;
    locality::permute_rows(z, r, order, Towards::Order, seen, row_f32)?;
    // The search runs on the rows quantised to 16 bits unless that would blur them.
    {
        let pdist = Scratch::new(&mut *region).take::<f32>(n * pool, "candidate distances")?;
        match nndescent::quantise(z, n, r, zq).filter(|q| q.resolved()) {
            Some(q) => {
                nndescent::nn_descent_quantised(&q, n, pool, nnd, par, obs, rest, pidx, pdist)?
            }
            None => nndescent::nn_descent(
                MatRef::dense(z, n, r)?,
                pool,
                Metric::SqEuclidean,
                nnd,
                par,
                obs,
                zs.rest_mut(),
                pidx,
                pdist,
            )?,
        }
    }
    for j in pidx.iter_mut() {
        if let Some(&i) = order.get(*j as usize) {
            *j = i;
        }
    }
    locality::permute_rows(pidx, pool, order, Towards::Caller, seen, row_u32)?;
    // Consecutive points share most of their candidates, so ranking in this order finds
    // their rows in cache.
    locality::breadth_first_order(pidx, pool, order, place)?;
    let mut out = Scratch::new(region);
    let idx = out.take::<u32>(n * k, "knn indices")?;
    let dist = out.take::<f32>(n * k, "knn distances")?;
    // 8-bit data (whole numbers 0..=255, as in images) is ranked in integers: exact, and a
    // quarter of the memory traffic of the f32 rows, which bounds this step.
    let bytes = match rest.get_mut(..n * d) {
        Some(b) if d <= simd::MAX_BYTE_COLS => x.to_bytes(par, b).then_some(&*b),
        _ => None,
    };
    rank_candidates(
        x, bytes, metric, norms, pidx, pool, order, k, par, idx, dist,
    );
    Ok((idx, dist))
}

/// Ranks each point's `pool` candidates (`pidx`) by full distance under `metric` into its
/// `k` nearest (`idx`, `dist`), visiting points in `order`. `bytes`, the rows as bytes
/// (`MatRef::to_bytes`), gives exact integer distances.
#[allow(clippy::too_many_arguments)]
fn rank_candidates(
    x: MatRef,
    bytes: Option<&[u8]>,
    metric: Metric,
    norms: &[f32],
    pidx: &[u32],
    pool: usize,
    order: &[u32],
    k: usize,
    par: &dyn Parallel,
    idx: &mut [u32],
    dist: &mut [f32],
) {
    let d = x.cols();
    let n = x.rows();
    let one = |i: usize, j: usize| -> f32 {
        match (bytes, metric) {
            (Some(b), Metric::SqEuclidean) => {
                simd::sq_dist_u8(byte_row(b, d, i), byte_row(b, d, j)) as f32
            }
            (Some(b), Metric::Cosine) => {
                let dot = simd::dot_u8(byte_row(b, d, i), byte_row(b, d, j)) as f32;
                knn::to_distance(metric, dot, norms[i], norms[j])
            }
            (None, _) => {
                let dot = simd::dot(x.row(i), x.row(j));
                knn::to_distance(metric, dot, norms[i], norms[j])
            }
        }
    };
    // Four candidates at a time: independent streams of loads keep more cache misses in
    // flight. The same distances as `one`.
    let four = |i: usize, q: [usize; 4]| -> [f32; 4] {
        match (bytes, metric) {
            (Some(b), Metric::SqEuclidean) => {
                simd::sq_dist_u8_x4(byte_row(b, d, i), q.map(|j| byte_row(b, d, j)))
                    .map(|v| v as f32)
            }
            (None, _) => {
                let dots = simd::dot_1x4(x.row(i), q.map(|j| x.row(j)));
                core::array::from_fn(|c| knn::to_distance(metric, dots[c], norms[i], norms[q[c]]))
            }
            _ => q.map(|j| one(i, j)),
        }
    };
    let (si, sd) = (SharedMut::new(idx), SharedMut::new(dist));
    par.run(chunk_count(n, RERANK_ROWS), &|t| {
        for &i in &order[t * RERANK_ROWS..((t + 1) * RERANK_ROWS).min(n)] {
            let i = i as usize;
            // SAFETY: `order` is a permutation, so row i belongs to this task alone.
            let (ri, rd) = unsafe { (si.range(i * k, (i + 1) * k), sd.range(i * k, (i + 1) * k)) };
            let cands = &pidx[i * pool..(i + 1) * pool];
            if pool <= RANK_KEYS {
                // The k smallest of all the candidates' (distance, index) keys, then sorted:
                // the heap's result (same order, same ties), without its branches.
                let mut keys = [0u64; RANK_KEYS];
                let keys = &mut keys[..pool];
                let mut quads = cands.chunks_exact(4);
                let mut at = 0;
                for q in &mut quads {
                    let dd = four(i, [q[0], q[1], q[2], q[3]].map(|j| j as usize));
                    for (&j, dd) in q.iter().zip(dd) {
                        keys[at] = rank_key(dd, j);
                        at += 1;
                    }
                }
                for &j in quads.remainder() {
                    keys[at] = rank_key(one(i, j as usize), j);
                    at += 1;
                }
                if k < pool {
                    keys.select_nth_unstable(k);
                }
                let kept = &mut keys[..k];
                kept.sort_unstable();
                for ((r, d), &key) in ri.iter_mut().zip(rd.iter_mut()).zip(kept.iter()) {
                    (*d, *r) = from_rank_key(key);
                }
                continue;
            }
            let mut len = 0;
            let quads = cands.chunks_exact(4);
            let rest = quads.remainder();
            for q in quads {
                let dd = four(i, [q[0], q[1], q[2], q[3]].map(|j| j as usize));
                for (&j, dd) in q.iter().zip(dd) {
                    knn::heap_push(rd, ri, &mut len, dd, j);
                }
            }
            for &j in rest {
                knn::heap_push(rd, ri, &mut len, one(i, j as usize), j);
            }
            knn::heap_sort(rd, ri);
        }
    });
}

/// Pools up to this many candidates are ranked through a selection on the stack.
const RANK_KEYS: usize = 512;

/// (distance, index) as one integer that orders like the pair: the distance's bits with the
/// sign bit flipped, all of them for negative values (cosine distances can round below 0).
fn rank_key(d: f32, j: u32) -> u64 {
    let b = d.to_bits();
    let ordered = if b >> 31 == 1 { !b } else { b | 1 << 31 };
    ((ordered as u64) << 32) | j as u64
}

fn from_rank_key(key: u64) -> (f32, u32) {
    let o = (key >> 32) as u32;
    let b = if o >> 31 == 1 { o & !(1 << 31) } else { !o };
    (f32::from_bits(b), key as u32)
}

/// Row `j` of a byte copy of a matrix with `d` columns.
fn byte_row(b: &[u8], d: usize, j: usize) -> &[u8] {
    &b[j * d..(j + 1) * d]
}

/// Points per parallel task when ranking candidates by full distances.
const RERANK_ROWS: usize = 32;

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
    match (method.resolve(n), nnd.projection.dims(x.cols())) {
        (KnnMethod::Exact, _) => {
            knn::exact_knn(x, k, metric, Kernel::Simd, par, obs, norms, idx, dist)
        }
        (_, Some(r)) => {
            ensure_len("knn indices", n * k, idx.len())?;
            ensure_len("knn distances", n * k, dist.len())?;
            let (i, d) = projected_search(x, k, r, metric, nnd, par, obs, norms, st.into_rest())?;
            idx[..n * k].copy_from_slice(i);
            dist[..n * k].copy_from_slice(d);
            Ok(())
        }
        (_, None) => {
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
    let cursor = ScratchSize::new().plus::<usize>(n);
    match projected_dims(n, d, method, nnd) {
        // The projected search leaves its results in its own scratch.
        Some(r) => cursor
            .plus::<f32>(knn::self_norms_len(n))
            .plus::<u8>(projected_scratch(n, d, k, r, nnd).bytes()),
        None => cursor
            .plus::<u32>(n * k)
            .plus::<f32>(n * k)
            .plus::<u8>(search_scratch(n, d, k, metric, method, nnd).bytes()),
    }
}

/// The subspace dimension when `search` takes the projected path.
fn projected_dims(n: usize, d: usize, method: KnnMethod, nnd: &NnDescentParams) -> Option<usize> {
    match (method.resolve(n), nnd.projection.dims(d)) {
        (KnnMethod::Exact, _) => None,
        (_, r) => r,
    }
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
    let cursor = st.take::<usize>(n, "symmetrize cursor")?;
    enter(obs, Stage::Knn, n)?;
    let nd = NnDescentParams { seed, ..*nnd };
    let (idx, dist) = match projected_dims(n, x.cols(), method, &nd) {
        Some(r) => {
            let norms = st.take::<f32>(knn::self_norms_len(n), "knn norms")?;
            projected_search(x, k, r, metric, &nd, par, obs, norms, st.into_rest())?
        }
        None => {
            let idx = st.take::<u32>(n * k, "knn indices")?;
            let dist = st.take::<f32>(n * k, "knn distances")?;
            search(
                x,
                k,
                metric,
                method,
                &nd,
                par,
                obs,
                st.into_rest(),
                idx,
                dist,
            )?;
            (idx, dist)
        }
    };
    enter(obs, Stage::Affinities, 1)?;
    Ok((idx, dist, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;
    use crate::Serial;
    use crate::threads::Threads;

    /// The projected search on clustered data, quantised, and with one far outlier that
    /// sends it to the f32 search: both find the true neighbours.
    #[test]
    fn projected_search_with_and_without_quantisation() {
        // Ten clusters in a 10-D subspace of 40-D, so a 16-D projection keeps the structure.
        let (n, d, k, inner) = (2000, 40, 10, 10);
        let mut r = Rng::new(9);
        let mix: Vec<f32> = (0..inner * d).map(|_| r.normal() as f32).collect();
        let mut x = vec![0.0f32; n * d];
        for i in 0..n {
            let u: Vec<f32> = (0..inner)
                .map(|c| if c == i % 10 { 8.0 } else { 0.0 } + r.normal() as f32)
                .collect();
            for f in 0..d {
                x[i * d + f] = (0..inner).map(|c| u[c] * mix[c * d + f]).sum();
            }
        }
        let nnd = NnDescentParams {
            projection: nndescent::Projection::Dims(16),
            ..Default::default()
        };
        for outlier in [false, true] {
            if outlier {
                x[..d].iter_mut().for_each(|v| *v = 1e5);
            }
            let m = MatRef::dense(&x, n, d).unwrap();
            let run = |method: KnnMethod| {
                let metric = Metric::SqEuclidean;
                let mut sc = vec![0u8; search_scratch(n, d, k, metric, method, &nnd).bytes()];
                let (mut idx, mut dist) = (vec![0u32; n * k], vec![0.0f32; n * k]);
                let (par, obs) = (Threads::new(2), &mut crate::Silent);
                search(
                    m, k, metric, method, &nnd, &par, obs, &mut sc, &mut idx, &mut dist,
                )
                .unwrap();
                idx
            };
            let (exact, approx) = (run(KnnMethod::Exact), run(KnnMethod::Approx));
            let hits: usize = (0..n)
                .map(|i| {
                    let e = &exact[i * k..(i + 1) * k];
                    approx[i * k..(i + 1) * k]
                        .iter()
                        .filter(|j| e.contains(j))
                        .count()
                })
                .sum();
            let recall = hits as f64 / (n * k) as f64;
            assert!(recall > 0.9, "outlier {outlier}: recall {recall}");
        }
    }

    /// On whole numbers small enough for f32 to hold every sum exactly, ranking by byte
    /// distances and by f32 distances must give the same lists and the same bits.
    #[test]
    fn byte_ranking_equals_float_ranking_on_exact_data() {
        let (n, d, pool, k) = (500, 37, 23, 10);
        let mut r = Rng::new(8);
        let x: Vec<f32> = (0..n * d).map(|_| r.below(64) as f32).collect();
        let m = MatRef::dense(&x, n, d).unwrap();
        let mut bytes = vec![0u8; n * d];
        assert!(m.to_bytes(&Threads::new(2), &mut bytes));
        let scaled: Vec<f32> = x.iter().map(|v| v + 0.5).collect();
        let mut no = vec![0u8; n * d];
        assert!(
            !MatRef::dense(&scaled, n, d)
                .unwrap()
                .to_bytes(&Serial, &mut no)
        );
        let pidx: Vec<u32> = (0..n)
            .flat_map(|i| {
                let mut c: Vec<u32> = Vec::new();
                while c.len() < pool {
                    let j = r.below(n) as u32;
                    if j as usize != i && !c.contains(&j) {
                        c.push(j);
                    }
                }
                c
            })
            .collect();
        let order: Vec<u32> = (0..n as u32).rev().collect();
        for metric in [Metric::SqEuclidean, Metric::Cosine] {
            let mut norms = vec![0.0f32; n];
            knn::fill_norms(m, metric, Kernel::Simd, &mut norms);
            let run = |b: Option<&[u8]>| {
                let (mut idx, mut dist) = (vec![0u32; n * k], vec![0.0f32; n * k]);
                rank_candidates(
                    m,
                    b,
                    metric,
                    &norms,
                    &pidx,
                    pool,
                    &order,
                    k,
                    &Threads::new(2),
                    &mut idx,
                    &mut dist,
                );
                (idx, dist.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            let (a, b) = (run(Some(&bytes)), run(None));
            assert_eq!(a, b, "{metric:?}");
            if metric == Metric::SqEuclidean {
                let row = |i: usize| &x[i * d..(i + 1) * d];
                let exact: f32 = row(0)
                    .iter()
                    .zip(row(a.0[0] as usize))
                    .map(|(p, q)| (p - q) * (p - q))
                    .sum();
                assert_eq!(f32::from_bits(a.1[0]), exact);
            }
        }
    }
}
