//! Exact k-nearest neighbours: blocked dot-product tiles (‖a−b‖² = ‖a‖² + ‖b‖² − 2aᵀb),
//! SIMD through `wide`, with a scalar twin. Results per query row are sorted ascending by
//! (distance, index), so ties (duplicates) always come out in index order.

use crate::error::{Error, Result, ensure, ensure_len};
use crate::matrix::MatRef;
use crate::observer::{Observer, Stage};
use crate::parallel::{Parallel, for_row_chunks2};
use crate::simd;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// ‖a − b‖²
    SqEuclidean,
    /// 1 − aᵀb / (‖a‖‖b‖); a zero vector is at distance 1 from everything.
    Cosine,
}

/// Which arithmetic to use; both give identical results (see `simd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Simd,
    Scalar,
}

/// Query rows per parallel task (fixed, so results never depend on threads).
const TASK_ROWS: usize = 64;
/// Query rows between observer calls.
const BATCH_ROWS: usize = 2048;
/// Most base rows per cache tile.
const TILE: usize = 256;
/// Bytes of base rows per tile: small enough to stay in a core's L2 cache while every query
/// group of a task streams over it.
const TILE_BYTES: usize = 128 * 1024;

/// Base rows per tile for `d` columns: even (pairs of rows never straddle tiles, so every
/// distance is computed the same way whatever the tile), at most TILE.
fn tile_rows(d: usize) -> usize {
    (TILE_BYTES / (4 * d.max(1))).clamp(16, TILE) & !1
}

/// Length of the `norms` scratch for `exact_knn` (self) on `n` points.
pub fn self_norms_len(n: usize) -> usize {
    n
}

/// Length of the `norms` scratch for `exact_knn_query`.
pub fn query_norms_len(n_base: usize, n_query: usize) -> usize {
    n_base + n_query
}

/// The k nearest neighbours of every row of `x` among the other rows.
/// Writes `idx` and `dist` (`n*k` each, row-major, ascending).
#[allow(clippy::too_many_arguments)]
pub fn exact_knn(
    x: MatRef,
    k: usize,
    metric: Metric,
    kernel: Kernel,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    norms: &mut [f32],
    idx: &mut [u32],
    dist: &mut [f32],
) -> Result<()> {
    let n = x.rows();
    if n < 2 {
        return Err(Error::TooFewPoints { n, min: 2 });
    }
    ensure(k >= 1 && k < n, "k", "must satisfy 1 <= k <= N - 1")?;
    ensure_len("norms", n, norms.len())?;
    fill_norms(x, metric, kernel, &mut norms[..n]);
    let norms = &norms[..n];
    search(
        x, norms, x, norms, true, k, metric, kernel, par, obs, idx, dist,
    )
}

/// The k nearest rows of `base` for every row of `queries`.
#[allow(clippy::too_many_arguments)]
pub fn exact_knn_query(
    base: MatRef,
    queries: MatRef,
    k: usize,
    metric: Metric,
    kernel: Kernel,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    norms: &mut [f32],
    idx: &mut [u32],
    dist: &mut [f32],
) -> Result<()> {
    let (nb, nq) = (base.rows(), queries.rows());
    ensure(
        base.cols() == queries.cols(),
        "queries",
        "column count differs from the base set",
    )?;
    ensure(
        k >= 1 && k <= nb,
        "k",
        "must satisfy 1 <= k <= number of base points",
    )?;
    ensure_len("norms", nb + nq, norms.len())?;
    let (nbase, nquery) = norms[..nb + nq].split_at_mut(nb);
    fill_norms(base, metric, kernel, nbase);
    fill_norms(queries, metric, kernel, nquery);
    search(
        base, nbase, queries, nquery, false, k, metric, kernel, par, obs, idx, dist,
    )
}

/// The per-row values the search needs for `x` under `metric` (`out`: one per row), so that
/// a fixed base set can be prepared once for many `exact_knn_query_prepared` calls.
pub fn row_norms(x: MatRef, metric: Metric, out: &mut [f32]) -> Result<()> {
    ensure_len("norms", x.rows(), out.len())?;
    fill_norms(x, metric, Kernel::Simd, out);
    Ok(())
}

/// Base rows per block of the blocked query search.
const QUERY_BLOCK_BASE: usize = 512;

/// Scratch (f32 values) for `exact_knn_query_prepared` with `nq` queries: their norms and one
/// similarity tile per task.
pub fn query_prepared_scratch_len(nq: usize) -> usize {
    nq + crate::parallel::chunk_count(nq, TASK_ROWS) * TASK_ROWS * QUERY_BLOCK_BASE
}

/// As `exact_knn_query`, for a fixed base set searched many times: the base's `row_norms` are
/// computed once beforehand, and the dot products come in tiles from the dense product
/// `gemm::a_bt` (fused multiply-add where the CPU has it). Each query row's result depends on
/// that row and the base set alone, never on the other queries. `scratch`:
/// `query_prepared_scratch_len(nq)` values.
#[allow(clippy::too_many_arguments)]
pub fn exact_knn_query_prepared(
    base: MatRef,
    base_norms: &[f32],
    queries: MatRef,
    k: usize,
    metric: Metric,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [f32],
    idx: &mut [u32],
    dist: &mut [f32],
) -> Result<()> {
    let (nb, nq) = (base.rows(), queries.rows());
    ensure(
        base.cols() == queries.cols(),
        "queries",
        "column count differs from the base set",
    )?;
    ensure(
        k >= 1 && k <= nb,
        "k",
        "must satisfy 1 <= k <= number of base points",
    )?;
    ensure(nb <= u32::MAX as usize, "N", "more than 2^32 - 1 points")?;
    ensure_len("base norms", nb, base_norms.len())?;
    ensure_len("scratch", query_prepared_scratch_len(nq), scratch.len())?;
    ensure_len("knn indices", nq * k, idx.len())?;
    ensure_len("knn distances", nq * k, dist.len())?;
    let (qnorms, tiles) = scratch.split_at_mut(nq);
    fill_norms(queries, metric, Kernel::Simd, qnorms);
    let qnorms = &*qnorms;
    let tiles = crate::parallel::SharedMut::new(tiles);
    let mut start = 0;
    while start < nq {
        let end = (start + BATCH_ROWS).min(nq);
        let (bi, bd) = (&mut idx[start * k..end * k], &mut dist[start * k..end * k]);
        for_row_chunks2(
            par,
            end - start,
            TASK_ROWS,
            bi,
            k,
            bd,
            k,
            &|_, first, count, ti, td| {
                let q0 = start + first;
                // Each task owns tile number (q0 / TASK_ROWS), disjoint from every other task's.
                let t = q0 / TASK_ROWS;
                let size = TASK_ROWS * QUERY_BLOCK_BASE;
                // SAFETY: tiles of different tasks do not overlap (see above).
                let tile = unsafe { tiles.range(t * size, (t + 1) * size) };
                let q = queries.slice_rows(q0, count);
                let mut lens = [0usize; TASK_ROWS];
                let mut b0 = 0;
                while b0 < nb {
                    let bn = QUERY_BLOCK_BASE.min(nb - b0);
                    let b = base.slice_rows(b0, bn);
                    crate::gemm::a_bt(q, b, &crate::parallel::Serial, &mut tile[..count * bn]);
                    for r in 0..count {
                        let (hi, hd) = (&mut ti[r * k..(r + 1) * k], &mut td[r * k..(r + 1) * k]);
                        for c in 0..bn {
                            let j = b0 + c;
                            let dd = to_distance(
                                metric,
                                tile[r * bn + c],
                                qnorms[q0 + r],
                                base_norms[j],
                            );
                            heap_push(hd, hi, &mut lens[r], dd, j as u32);
                        }
                    }
                    b0 += bn;
                }
                for r in 0..count {
                    heap_sort(&mut td[r * k..(r + 1) * k], &mut ti[r * k..(r + 1) * k]);
                }
            },
        );
        start = end;
        crate::observer::report(obs, Stage::Knn, end, nq)?;
    }
    Ok(())
}

pub(crate) fn fill_norms(x: MatRef, metric: Metric, kernel: Kernel, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        let r = x.row(i);
        let sq = match kernel {
            Kernel::Simd => simd::dot(r, r),
            Kernel::Scalar => simd::dot_scalar(r, r),
        };
        *o = match metric {
            Metric::SqEuclidean => sq,
            Metric::Cosine => libm::sqrtf(sq),
        };
    }
}

#[inline(always)]
pub(crate) fn to_distance(metric: Metric, dot: f32, nq: f32, nb: f32) -> f32 {
    let d = match metric {
        Metric::SqEuclidean => {
            let d = (nq + nb) - 2.0 * dot;
            if d > 0.0 { d } else { 0.0 }
        }
        Metric::Cosine => {
            let den = nq * nb;
            if den > 0.0 { 1.0 - dot / den } else { 1.0 }
        }
    };
    // Overflowing inputs can produce NaN; rank those last instead of corrupting the heap.
    if d.is_nan() { f32::INFINITY } else { d }
}

#[allow(clippy::too_many_arguments)]
fn search(
    base: MatRef,
    nbase: &[f32],
    queries: MatRef,
    nquery: &[f32],
    exclude_self: bool,
    k: usize,
    metric: Metric,
    kernel: Kernel,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    idx: &mut [u32],
    dist: &mut [f32],
) -> Result<()> {
    let nq = queries.rows();
    ensure_len("knn indices", nq * k, idx.len())?;
    ensure_len("knn distances", nq * k, dist.len())?;
    ensure(
        base.rows() <= u32::MAX as usize,
        "N",
        "more than 2^32 - 1 points",
    )?;
    let mut start = 0;
    while start < nq {
        let end = (start + BATCH_ROWS).min(nq);
        let rows = end - start;
        let (bi, bd) = (&mut idx[start * k..end * k], &mut dist[start * k..end * k]);
        for_row_chunks2(
            par,
            rows,
            TASK_ROWS,
            bi,
            k,
            bd,
            k,
            &|_, first, count, ti, td| {
                let q0 = start + first;
                search_rows(
                    base,
                    nbase,
                    queries,
                    nquery,
                    q0,
                    count,
                    exclude_self,
                    k,
                    metric,
                    kernel,
                    ti,
                    td,
                );
            },
        );
        start = end;
        crate::observer::report(obs, Stage::Knn, end, nq)?;
    }
    Ok(())
}

/// k-NN for query rows `q0 .. q0+count`, written into `idx`/`dist` (count*k each).
#[allow(clippy::too_many_arguments)]
fn search_rows(
    base: MatRef,
    nbase: &[f32],
    queries: MatRef,
    nquery: &[f32],
    q0: usize,
    count: usize,
    exclude_self: bool,
    k: usize,
    metric: Metric,
    kernel: Kernel,
    idx: &mut [u32],
    dist: &mut [f32],
) {
    let nb = base.rows();
    let mut lens = [0usize; TASK_ROWS];
    let mut tile = 0;
    while tile < nb {
        let tile_end = (tile + tile_rows(base.cols())).min(nb);
        for g in (0..count).step_by(4) {
            // Groups of four query rows; a short last group repeats its last row.
            let qi: [usize; 4] = core::array::from_fn(|r| q0 + (g + r).min(count - 1));
            let qrows = qi.map(|q| queries.row(q));
            let mut j = tile;
            while j < tile_end {
                let j1 = (j + 1).min(tile_end - 1);
                let d = match kernel {
                    Kernel::Simd => simd::dot_4x2(qrows, [base.row(j), base.row(j1)]),
                    Kernel::Scalar => core::array::from_fn(|r| {
                        [
                            simd::dot_scalar(qrows[r], base.row(j)),
                            simd::dot_scalar(qrows[r], base.row(j1)),
                        ]
                    }),
                };
                for r in 0..4.min(count - g) {
                    let local = g + r;
                    let q = qi[r];
                    let (hi, hd) = (
                        &mut idx[local * k..(local + 1) * k],
                        &mut dist[local * k..(local + 1) * k],
                    );
                    for (c, &jj) in [j, j1].iter().enumerate().take(if j1 > j { 2 } else { 1 }) {
                        if exclude_self && jj == q {
                            continue;
                        }
                        let dd = to_distance(metric, d[r][c], nquery[q], nbase[jj]);
                        heap_push(hd, hi, &mut lens[local], dd, jj as u32);
                    }
                }
                j += 2;
            }
        }
        tile = tile_end;
    }
    for local in 0..count {
        heap_sort(
            &mut dist[local * k..(local + 1) * k],
            &mut idx[local * k..(local + 1) * k],
        );
    }
}

#[inline(always)]
fn less(da: f32, ia: u32, db: f32, ib: u32) -> bool {
    da < db || (da == db && ia < ib)
}

/// Bounded max-heap on (distance, index) in parallel slices of capacity `d.len()`.
#[inline]
pub(crate) fn heap_push(d: &mut [f32], ix: &mut [u32], len: &mut usize, dv: f32, iv: u32) {
    let cap = d.len();
    if *len < cap {
        let mut c = *len;
        *len += 1;
        while c > 0 {
            let p = (c - 1) / 2;
            if less(d[p], ix[p], dv, iv) {
                d[c] = d[p];
                ix[c] = ix[p];
                c = p;
            } else {
                break;
            }
        }
        d[c] = dv;
        ix[c] = iv;
    } else if less(dv, iv, d[0], ix[0]) {
        sift_down(d, ix, cap, dv, iv);
    }
}

#[inline]
fn sift_down(d: &mut [f32], ix: &mut [u32], len: usize, dv: f32, iv: u32) {
    let mut p = 0;
    loop {
        let l = 2 * p + 1;
        if l >= len {
            break;
        }
        let r = l + 1;
        let c = if r < len && less(d[l], ix[l], d[r], ix[r]) {
            r
        } else {
            l
        };
        if less(dv, iv, d[c], ix[c]) {
            d[p] = d[c];
            ix[p] = ix[c];
            p = c;
        } else {
            break;
        }
    }
    d[p] = dv;
    ix[p] = iv;
}

/// Turns a full max-heap into ascending order.
pub(crate) fn heap_sort(d: &mut [f32], ix: &mut [u32]) {
    for end in (1..d.len()).rev() {
        let (dv, iv) = (d[end], ix[end]);
        d[end] = d[0];
        ix[end] = ix[0];
        sift_down(d, ix, end, dv, iv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rng, Serial, Silent};

    fn brute(x: &[f32], n: usize, dim: usize, k: usize, metric: Metric) -> (Vec<u32>, Vec<f32>) {
        let mut out_i = vec![];
        let mut out_d = vec![];
        for i in 0..n {
            let mut c: Vec<(f64, u32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let (a, b) = (&x[i * dim..(i + 1) * dim], &x[j * dim..(j + 1) * dim]);
                    let d = match metric {
                        Metric::SqEuclidean => {
                            a.iter().zip(b).map(|(p, q)| ((p - q) as f64).powi(2)).sum()
                        }
                        Metric::Cosine => {
                            let ab: f64 = a
                                .iter()
                                .zip(b)
                                .map(|(p, q)| (*p as f64) * (*q as f64))
                                .sum();
                            let na: f64 = a.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
                            let nb: f64 = b.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
                            1.0 - ab / (na * nb)
                        }
                    };
                    (d, j as u32)
                })
                .collect();
            c.sort_by(|a, b| a.partial_cmp(b).unwrap());
            out_i.extend(c[..k].iter().map(|p| p.1));
            out_d.extend(c[..k].iter().map(|p| p.0 as f32));
        }
        (out_i, out_d)
    }

    fn run(
        x: &[f32],
        n: usize,
        dim: usize,
        k: usize,
        metric: Metric,
        kernel: Kernel,
    ) -> (Vec<u32>, Vec<f32>) {
        let m = MatRef::dense(x, n, dim).unwrap();
        let (mut norms, mut idx, mut dist) = (vec![0.0; n], vec![0u32; n * k], vec![0.0; n * k]);
        exact_knn(
            m,
            k,
            metric,
            kernel,
            &Serial,
            &mut Silent,
            &mut norms,
            &mut idx,
            &mut dist,
        )
        .unwrap();
        (idx, dist)
    }

    #[test]
    fn simd_matches_scalar_twin_and_brute_force() {
        let mut r = Rng::new(11);
        for &(n, dim) in &[(2usize, 1usize), (37, 5), (300, 17), (513, 64)] {
            let x: Vec<f32> = (0..n * dim).map(|_| r.normal() as f32).collect();
            for metric in [Metric::SqEuclidean, Metric::Cosine] {
                let k = (n - 1).min(10);
                let (si, sd) = run(&x, n, dim, k, metric, Kernel::Simd);
                let (ci, cd) = run(&x, n, dim, k, metric, Kernel::Scalar);
                assert_eq!(si, ci, "SIMD vs scalar indices, n={n} dim={dim} {metric:?}");
                assert_eq!(
                    sd, cd,
                    "SIMD vs scalar distances (bitwise), n={n} dim={dim}"
                );
                let (bi, bd) = brute(&x, n, dim, k, metric);
                // Random Gaussian data has no near-ties, so the rankings agree exactly;
                // distances agree to f32 rounding of the norm identity (1e-4 relative + 1e-4 absolute).
                assert_eq!(si, bi, "vs brute force, n={n} dim={dim} {metric:?}");
                for (a, b) in sd.iter().zip(&bd) {
                    assert!((a - b).abs() <= 1e-4 * b.abs() + 1e-4, "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn duplicates_break_ties_by_index_and_self_is_excluded() {
        // Five copies of one point and two others.
        let x = [
            1.0f32, 2.0, 1.0, 2.0, 5.0, 5.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 9.0, 9.0,
        ];
        let (idx, dist) = run(&x, 7, 2, 4, Metric::SqEuclidean, Kernel::Simd);
        assert_eq!(&idx[0..4], &[1, 3, 4, 5]);
        assert_eq!(&dist[0..4], &[0.0; 4]);
        assert_eq!(&idx[4..8], &[0, 3, 4, 5]);
        for i in 0..7 {
            assert!(!idx[i * 4..(i + 1) * 4].contains(&(i as u32)));
        }
    }

    #[test]
    fn query_search_and_bad_k() {
        let base = [0.0f32, 1.0, 2.0, 3.0];
        let q = [2.9f32, 0.2];
        let (b, qm) = (
            MatRef::dense(&base, 4, 1).unwrap(),
            MatRef::dense(&q, 2, 1).unwrap(),
        );
        let (mut norms, mut idx, mut dist) = (vec![0.0; 6], vec![0u32; 4], vec![0.0; 4]);
        exact_knn_query(
            b,
            qm,
            2,
            Metric::SqEuclidean,
            Kernel::Simd,
            &Serial,
            &mut Silent,
            &mut norms,
            &mut idx,
            &mut dist,
        )
        .unwrap();
        assert_eq!(idx, [3, 2, 0, 1]);
        let one = MatRef::dense(&base[..1], 1, 1).unwrap();
        let r = exact_knn(
            one,
            1,
            Metric::SqEuclidean,
            Kernel::Simd,
            &Serial,
            &mut Silent,
            &mut norms,
            &mut idx,
            &mut dist,
        );
        assert!(matches!(r, Err(Error::TooFewPoints { .. })));
        let r = exact_knn(
            b,
            4,
            Metric::SqEuclidean,
            Kernel::Simd,
            &Serial,
            &mut Silent,
            &mut norms,
            &mut idx,
            &mut dist,
        );
        assert!(matches!(r, Err(Error::InvalidParameter { name: "k", .. })));
    }
}
