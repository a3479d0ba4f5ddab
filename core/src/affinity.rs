//! t-SNE input affinities: perplexity calibration of conditional P, then symmetrisation into
//! a CSR matrix that sums to one (MATH §2).

use wide::f64x4;

use crate::error::{Error, Result, ensure, ensure_len};
use crate::parallel::{Parallel, SharedMut, chunk_count};

/// Largest number of calibration steps per row.
pub const MAX_STEPS: usize = 200;
/// Target accuracy of each row's entropy, in nats.
pub const ENTROPY_TOL: f64 = 1e-6;

const TASK_ROWS: usize = 256;

/// Neighbours per point that t-SNE uses for a perplexity: min(N - 1, ⌊3·perplexity⌋).
pub fn neighbours_for_perplexity(n: usize, perplexity: f32) -> usize {
    let k = libm::floorf(3.0 * perplexity) as usize;
    k.clamp(1, n.saturating_sub(1).max(1))
}

/// Validates a perplexity for `n` points.
pub fn check_perplexity(n: usize, perplexity: f32) -> Result<()> {
    ensure(
        perplexity.is_finite() && perplexity >= 1.0,
        "perplexity",
        "must be a finite number >= 1",
    )?;
    if n < 2 || perplexity > (n - 1) as f32 {
        return Err(Error::PerplexityTooLarge { perplexity, n });
    }
    Ok(())
}

/// Sparse row-major matrix.
#[derive(Clone, Copy, Debug)]
pub struct CsrRef<'a> {
    pub indptr: &'a [usize],
    pub indices: &'a [u32],
    pub values: &'a [f32],
}

impl CsrRef<'_> {
    /// Checks the structure before anything indexes through it: `indptr` starts at 0, never
    /// decreases and ends within `indices` and `values`, and every column is below `cols`.
    pub fn check(&self, cols: usize) -> Result<()> {
        let bad = |reason| {
            Err(Error::InvalidParameter {
                name: "sparse matrix",
                reason,
            })
        };
        let Some(&last) = self.indptr.last() else {
            return bad("indptr is empty (it needs rows + 1 entries)");
        };
        if self.indptr[0] != 0 || self.indptr.windows(2).any(|w| w[1] < w[0]) {
            return bad("indptr must start at 0 and never decrease");
        }
        if last > self.indices.len() || last > self.values.len() {
            return bad("indptr points past the end of indices or values");
        }
        if self.indices[..last].iter().any(|&j| j as usize >= cols) {
            return bad("a column index is out of range");
        }
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }
    pub fn nnz(&self) -> usize {
        self.indptr[self.rows()]
    }
    #[inline]
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (s, e) = (self.indptr[i], self.indptr[i + 1]);
        (&self.indices[s..e], &self.values[s..e])
    }
}

/// Turns each row of neighbour distances (`n*k`, any order) into conditional probabilities
/// p_{j|i} ∝ exp(−β_i d_ij) whose entropy is ln(perplexity), in place.
/// `betas` (optional, length n) receives β_i for the distances as given.
pub fn calibrate_perplexity(
    dist_to_p: &mut [f32],
    k: usize,
    perplexity: f32,
    par: &dyn Parallel,
    betas: Option<&mut [f32]>,
) -> Result<()> {
    ensure(k >= 1, "k", "must be at least 1")?;
    ensure(
        perplexity.is_finite() && perplexity > 0.0,
        "perplexity",
        "must be a finite positive number",
    )?;
    ensure(
        dist_to_p.len() % k == 0,
        "distances",
        "length is not a multiple of k",
    )?;
    if let Some(i) = dist_to_p.iter().position(|d| !d.is_finite() || *d < 0.0) {
        return Err(Error::NonFinite {
            row: i / k,
            col: i % k,
        });
    }
    let n = dist_to_p.len() / k;
    let target = libm::log(perplexity as f64);
    let mut none: [f32; 0] = [];
    let (betas, bw) = match betas {
        Some(b) => {
            ensure_len("betas", n, b.len())?;
            (&mut b[..n], 1)
        }
        None => (&mut none[..], 0),
    };
    crate::parallel::for_row_chunks2(
        par,
        n,
        TASK_ROWS,
        dist_to_p,
        k,
        betas,
        bw,
        &|_, _, rows, chunk, bchunk| {
            for r in 0..rows {
                let beta = calibrate_row(&mut chunk[r * k..(r + 1) * k], target);
                if bw == 1 {
                    bchunk[r] = beta as f32;
                }
            }
        },
    );
    Ok(())
}

/// exp(−β(d − d_min)) for four distances at a time (`wide`'s f64 exponential, within a few
/// ulp of libm's), with the offsets d − d_min; lanes past the row's end are 0.
#[inline(always)]
fn weights4(d: &[f32], dmin: f64, beta: f64) -> (f64x4, f64x4) {
    let mut dx = [0.0f64; 4];
    let mut live = [0.0f64; 4];
    for (l, &x) in d.iter().enumerate() {
        dx[l] = x as f64 - dmin;
        live[l] = 1.0;
    }
    let dx = f64x4::from(dx);
    ((f64x4::splat(-beta) * dx).exp() * f64x4::from(live), dx)
}

/// Entropy (nats) and normaliser of exp(−β(d − d_min)) over a row, in f64.
fn entropy(d: &[f32], dmin: f64, beta: f64) -> (f64, f64, f64) {
    let (mut s, mut sd, mut sdd) = (f64x4::ZERO, f64x4::ZERO, f64x4::ZERO);
    for four in d.chunks(4) {
        let (e, dx) = weights4(four, dmin, beta);
        s += e;
        sd += e * dx;
        sdd += e * dx * dx;
    }
    let total = |v: f64x4| v.to_array().iter().sum::<f64>();
    let (s, sd, sdd) = (total(s), total(sd), total(sdd));
    let mean = sd / s;
    let var = (sdd / s - mean * mean).max(0.0);
    (libm::log(s) + beta * mean, s, var)
}

/// Bracketed Newton on β for one row; writes probabilities over the distances. Returns β.
fn calibrate_row(d: &mut [f32], target: f64) -> f64 {
    let dmin = d.iter().fold(f32::INFINITY, |a, &b| a.min(b)) as f64;
    let spread = d.iter().map(|&x| x as f64 - dmin).sum::<f64>() / d.len() as f64;
    // Entropy falls as β grows; start at the scale of the distances.
    let mut beta = if spread > 0.0 { 1.0 / spread } else { 1.0 };
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    for _ in 0..MAX_STEPS {
        let (h, _, var) = entropy(d, dmin, beta);
        let diff = h - target;
        if diff.abs() < ENTROPY_TOL {
            break;
        }
        if diff > 0.0 {
            lo = beta
        } else {
            hi = beta
        }
        // dH/dβ = −β·Var(d); take the Newton step when it stays inside the bracket.
        let slope = -beta * var;
        let newton = if slope < 0.0 {
            beta - diff / slope
        } else {
            f64::NAN
        };
        let next = if newton > lo && newton < hi {
            newton
        } else if hi.is_finite() {
            0.5 * (lo + hi)
        } else {
            beta * 2.0
        };
        // An unreachable target (e.g. perplexity 1 with tied nearest neighbours) drives β
        // towards infinity; stop at the last finite β, which keeps every exp() finite.
        if !next.is_finite() || (hi.is_finite() && hi - lo <= 1e-15 * hi) {
            break;
        }
        beta = next;
    }
    let (_, s, _) = entropy(d, dmin, beta);
    let inv = f64x4::splat(1.0 / s);
    for four in d.chunks_mut(4) {
        let (e, _) = weights4(four, dmin, beta);
        for (x, p) in four.iter_mut().zip((e * inv).to_array()) {
            *x = p as f32;
        }
    }
    beta
}

/// Upper bound on the non-zeros of the symmetrised matrix: 2·n·k.
pub fn symmetric_nnz_bound(n: usize, k: usize) -> usize {
    2 * n * k
}

/// How `symmetrize_with` merges the weights of (i, j) and (j, i).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// (a + b) / (2n): t-SNE's joint P from conditionals.
    Mean,
    /// a + b − ab: UMAP's fuzzy union.
    FuzzyUnion,
    /// max(a, b): a symmetric graph from directed weights (binary kNN graphs).
    Max,
}

/// P = (P_cond + P_condᵀ) / (2n) as CSR with sorted columns. `idx`, `p_cond`: `n*k`.
/// `indptr`: n+1; `indices`, `values`: `symmetric_nnz_bound`; `cursor`: n scratch.
/// Returns the number of non-zeros.
#[allow(clippy::too_many_arguments)]
pub fn symmetrize(
    idx: &[u32],
    p_cond: &[f32],
    k: usize,
    par: &dyn Parallel,
    indptr: &mut [usize],
    indices: &mut [u32],
    values: &mut [f32],
    cursor: &mut [usize],
) -> Result<usize> {
    symmetrize_with(
        Combine::Mean,
        idx,
        p_cond,
        k,
        par,
        indptr,
        indices,
        values,
        cursor,
    )
}

/// Rows per parallel task when sorting and merging the symmetrised rows.
const MERGE_ROWS: usize = 512;

/// A symmetric CSR matrix from `k` directed weights per row, merged by `combine`.
/// Buffers as for `symmetrize`.
#[allow(clippy::too_many_arguments)]
pub fn symmetrize_with(
    combine: Combine,
    idx: &[u32],
    p_cond: &[f32],
    k: usize,
    par: &dyn Parallel,
    indptr: &mut [usize],
    indices: &mut [u32],
    values: &mut [f32],
    cursor: &mut [usize],
) -> Result<usize> {
    ensure(
        k >= 1 && idx.len() % k == 0,
        "k",
        "neighbour list length is not a multiple of k",
    )?;
    let n = idx.len() / k;
    ensure_len("conditional P", n * k, p_cond.len())?;
    ensure_len("indptr", n + 1, indptr.len())?;
    ensure_len("indices", 2 * n * k, indices.len())?;
    ensure_len("values", 2 * n * k, values.len())?;
    ensure_len("cursor", n, cursor.len())?;
    crate::locality::check_neighbour_indices(idx, n)?;
    // Row i holds its k own entries, then one per point that has i as a neighbour.
    indptr[..=n].fill(0);
    for &j in &idx[..n * k] {
        indptr[j as usize + 1] += 1;
    }
    for i in 0..n {
        indptr[i + 1] += indptr[i] + k;
    }
    for i in 0..n {
        let s = indptr[i];
        indices[s..s + k].copy_from_slice(&idx[i * k..(i + 1) * k]);
        values[s..s + k].copy_from_slice(&p_cond[i * k..(i + 1) * k]);
        cursor[i] = s + k;
    }
    for i in 0..n {
        for c in 0..k {
            let j = idx[i * k + c] as usize;
            let at = cursor[j];
            indices[at] = i as u32;
            values[at] = p_cond[i * k + c];
            cursor[j] += 1;
        }
    }
    // Sort each row by column, merge duplicates and scale, in place and in parallel (each
    // row's segment is its own); `cursor` takes each row's merged length.
    let scale = match combine {
        Combine::Mean => 1.0 / (2.0 * n as f64),
        _ => 1.0,
    };
    {
        let (si, sv, sc) = (
            SharedMut::new(&mut *indices),
            SharedMut::new(&mut *values),
            SharedMut::new(&mut *cursor),
        );
        let indptr = &*indptr;
        par.run(chunk_count(n, MERGE_ROWS), &|t| {
            for i in t * MERGE_ROWS..((t + 1) * MERGE_ROWS).min(n) {
                let (s, e) = (indptr[i], indptr[i + 1]);
                // SAFETY: row i alone owns entries [s, e) and slot i of `cursor`.
                let (cols, vals, len) =
                    unsafe { (si.range(s, e), sv.range(s, e), sc.range(i, i + 1)) };
                len[0] = merge_row(combine, scale, k, cols, vals);
            }
        });
    }
    // Then close the gaps, in row order.
    let mut out = 0;
    for i in 0..n {
        let (s, len) = (indptr[i], cursor[i]);
        indices.copy_within(s..s + len, out);
        values.copy_within(s..s + len, out);
        indptr[i] = out;
        out += len;
    }
    indptr[n] = out;
    Ok(out)
}

/// Own entries per row that `merge_row` sorts on the stack; longer lists are heap-sorted in place.
const SORTED_OWN: usize = 256;

/// Sorts one row by column and merges its duplicate columns by `combine` (then `scale`) into
/// the front of the row; returns how many entries remain. The row holds its `k` own entries,
/// then the transposed ones, which the scatter wrote in ascending column order already: only
/// the own entries need sorting (on the stack), then one merge of two sorted runs. A
/// column's value is the same either way, since at most two entries share it (one own, one
/// transposed) and combining two is symmetric.
fn merge_row(combine: Combine, scale: f64, k: usize, cols: &mut [u32], vals: &mut [f32]) -> usize {
    if k > SORTED_OWN || k > cols.len() || !cols[k..].is_sorted() {
        heap_sort_pairs(cols, vals);
        return merge_runs(combine, scale, &[], cols, vals, 0);
    }
    // (column, value bits) as one key: a plain integer sort.
    let mut own = [0u64; SORTED_OWN];
    for (o, (&c, &v)) in own.iter_mut().zip(cols.iter().zip(vals.iter())) {
        *o = ((c as u64) << 32) | v.to_bits() as u64;
    }
    let own = &mut own[..k];
    own.sort_unstable();
    merge_runs(combine, scale, own, cols, vals, k)
}

/// Merges the sorted `own` keys with the sorted entries from `tail` on, combining equal
/// columns, into the front of `cols`/`vals`. Writing never overtakes reading: the output slot
/// is at most (own taken) + (transposed taken), and unread transposed entries start at
/// `tail` + (transposed taken) with `own.len()` ≤ `tail`.
fn merge_runs(
    combine: Combine,
    scale: f64,
    own: &[u64],
    cols: &mut [u32],
    vals: &mut [f32],
    tail: usize,
) -> usize {
    let e = cols.len();
    let (mut q, mut t, mut out) = (0, tail, 0);
    let add = |v: f64, x: f32| {
        let x = x as f64;
        match combine {
            Combine::Mean => v + x,
            Combine::FuzzyUnion => v + x - v * x,
            Combine::Max => v.max(x),
        }
    };
    loop {
        let col = match (own.get(q), cols.get(t)) {
            (None, None) => break,
            (Some(&o), None) => (o >> 32) as u32,
            (None, Some(&c)) => c,
            (Some(&o), Some(&c)) => c.min((o >> 32) as u32),
        };
        let mut v = 0.0f64;
        while q < own.len() && (own[q] >> 32) as u32 == col {
            v = add(v, f32::from_bits(own[q] as u32));
            q += 1;
        }
        while t < e && cols[t] == col {
            v = add(v, vals[t]);
            t += 1;
        }
        cols[out] = col;
        vals[out] = (v * scale) as f32;
        out += 1;
    }
    out
}

/// In-place heapsort of (key, value) pairs by key.
fn heap_sort_pairs(keys: &mut [u32], vals: &mut [f32]) {
    let n = keys.len();
    let sift = |keys: &mut [u32], vals: &mut [f32], mut p: usize, len: usize| loop {
        let l = 2 * p + 1;
        if l >= len {
            break;
        }
        let c = if l + 1 < len && keys[l + 1] > keys[l] {
            l + 1
        } else {
            l
        };
        if keys[c] > keys[p] {
            keys.swap(c, p);
            vals.swap(c, p);
            p = c;
        } else {
            break;
        }
    };
    for p in (0..n / 2).rev() {
        sift(keys, vals, p, n);
    }
    for end in (1..n).rev() {
        keys.swap(0, end);
        vals.swap(0, end);
        sift(keys, vals, 0, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;
    use crate::Serial;

    /// Regression (fuzz target sgd_epoch): malformed CSR is refused before it is indexed.
    #[test]
    fn malformed_sparse_matrices_are_refused() {
        let ok = CsrRef {
            indptr: &[0, 1, 2],
            indices: &[1, 0],
            values: &[0.5, 0.5],
        };
        assert!(ok.check(2).is_ok());
        let out_of_range = CsrRef {
            indptr: &[0, 1, 2],
            indices: &[1, 7],
            values: &[0.5, 0.5],
        };
        assert!(out_of_range.check(2).is_err());
        let decreasing = CsrRef {
            indptr: &[0, 2, 1],
            indices: &[1, 0],
            values: &[0.5, 0.5],
        };
        assert!(decreasing.check(2).is_err());
        let past_end = CsrRef {
            indptr: &[0, 1, 5],
            indices: &[1, 0],
            values: &[0.5, 0.5],
        };
        assert!(past_end.check(2).is_err());
        let empty = CsrRef {
            indptr: &[],
            indices: &[],
            values: &[],
        };
        assert!(empty.check(2).is_err());
    }

    fn row_entropy(p: &[f32]) -> f64 {
        -p.iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| (v as f64) * (v as f64).ln())
            .sum::<f64>()
    }

    #[test]
    fn row_weights_match_libm_and_zero_the_lanes_past_the_end() {
        let mut r = Rng::new(9);
        for len in 1..=4 {
            for _ in 0..2000 {
                let d: Vec<f32> = (0..len).map(|_| (r.uniform() * 700.0) as f32).collect();
                let (dmin, beta) = (r.uniform() * 10.0, r.uniform() * 1.5);
                let (e, _) = weights4(&d, dmin, beta);
                for (l, &v) in e.to_array().iter().enumerate() {
                    if l >= len {
                        assert_eq!(v, 0.0);
                        continue;
                    }
                    let want = libm::exp(-beta * (d[l] as f64 - dmin));
                    // Relative, but for results below the normal range (libm keeps subnormals).
                    assert!((v - want).abs() <= 1e-14 * want + 1e-300, "{v} {want}");
                }
            }
        }
    }

    #[test]
    fn each_row_reaches_the_target_entropy() {
        let mut r = Rng::new(5);
        let (n, k) = (200, 90);
        for &perp in &[5.0f32, 30.0, 50.0] {
            // Squared distances on very different scales per row, as in raw MNIST.
            let mut d: Vec<f32> = (0..n * k)
                .map(|i| {
                    let scale = 10f64.powi((i / k % 7) as i32 - 2);
                    (r.uniform() * scale + scale * 0.1) as f32
                })
                .collect();
            calibrate_perplexity(&mut d, k, perp, &Serial, None).unwrap();
            for i in 0..n {
                let row = &d[i * k..(i + 1) * k];
                let sum: f64 = row.iter().map(|&v| v as f64).sum();
                assert!((sum - 1.0).abs() < 1e-5, "row {i} sums to {sum}");
                let h = row_entropy(row);
                // Floor from the issue: |H − ln(perplexity)| < 1e-5 nats.
                assert!(
                    (h - (perp as f64).ln()).abs() < 1e-5,
                    "row {i}: H = {h}, target {}",
                    (perp as f64).ln()
                );
            }
        }
    }

    #[test]
    fn equal_or_zero_distances_give_uniform_rows() {
        let mut d = vec![0.0f32; 10];
        calibrate_perplexity(&mut d, 10, 3.0, &Serial, None).unwrap();
        assert!(d.iter().all(|&v| (v - 0.1).abs() < 1e-7));
        let mut d = vec![4.0f32; 10];
        calibrate_perplexity(&mut d, 10, 3.0, &Serial, None).unwrap();
        assert!(d.iter().all(|&v| (v - 0.1).abs() < 1e-7));
    }

    #[test]
    fn symmetrised_p_is_symmetric_sums_to_one_and_is_the_same_on_any_thread_count() {
        // Rows in several parallel tasks; own lists sorted on the stack, and (k past
        // SORTED_OWN) heap-sorted with the rest of their row.
        symmetrised_p_checks(3 * MERGE_ROWS + 17, 12);
        symmetrised_p_checks(MERGE_ROWS + 100, SORTED_OWN + 1);
    }

    fn symmetrised_p_checks(n: usize, k: usize) {
        let mut r = Rng::new(9);
        let mut idx = vec![0u32; n * k];
        let mut p = vec![0.0f32; n * k];
        for i in 0..n {
            let mut chosen = Vec::new();
            while chosen.len() < k {
                let j = r.below(n) as u32;
                if j as usize != i && !chosen.contains(&j) {
                    chosen.push(j);
                }
            }
            idx[i * k..(i + 1) * k].copy_from_slice(&chosen);
            let w: Vec<f64> = (0..k).map(|_| r.uniform() + 0.01).collect();
            let s: f64 = w.iter().sum();
            for c in 0..k {
                p[i * k + c] = (w[c] / s) as f32;
            }
        }
        let mut indptr = vec![0; n + 1];
        let mut ind = vec![0u32; 2 * n * k];
        let mut val = vec![0.0f32; 2 * n * k];
        let mut cur = vec![0usize; n];
        let nnz = symmetrize(
            &idx,
            &p,
            k,
            &Serial,
            &mut indptr,
            &mut ind,
            &mut val,
            &mut cur,
        )
        .unwrap();
        for t in [2, 4] {
            let threads = crate::threads::Threads::new(t);
            let (mut ip2, mut ind2, mut val2) =
                (vec![0; n + 1], vec![0; 2 * n * k], vec![0.0; 2 * n * k]);
            let nnz2 = symmetrize(
                &idx, &p, k, &threads, &mut ip2, &mut ind2, &mut val2, &mut cur,
            )
            .unwrap();
            assert!(
                nnz2 == nnz && ip2 == indptr && ind2 == ind && val2 == val,
                "{t} threads"
            );
        }
        // Each entry is (p_j|i + p_i|j) / 2n.
        let cond = |i: usize, j: usize| -> f64 {
            (0..k)
                .find(|&c| idx[i * k + c] as usize == j)
                .map_or(0.0, |c| p[i * k + c] as f64)
        };
        let csr = CsrRef {
            indptr: &indptr,
            indices: &ind[..nnz],
            values: &val[..nnz],
        };
        let total: f64 = csr.values.iter().map(|&v| v as f64).sum();
        assert!((total - 1.0).abs() < 1e-5, "sum {total}");
        let get = |i: usize, j: usize| {
            let (c, v) = csr.row(i);
            c.binary_search(&(j as u32)).map(|a| v[a]).unwrap_or(0.0)
        };
        for i in 0..n {
            let (cols, vals) = csr.row(i);
            assert!(
                cols.windows(2).all(|w| w[0] < w[1]),
                "row {i} columns sorted and unique"
            );
            for (&j, &v) in cols.iter().zip(vals) {
                assert_ne!(j as usize, i);
                assert_eq!(v, get(j as usize, i), "P[{i},{j}] != P[{j},{i}]");
                let want = (cond(i, j as usize) + cond(j as usize, i)) / (2 * n) as f64;
                assert!(
                    (v as f64 - want).abs() <= 1e-6 * want,
                    "P[{i},{j}] = {v}, want {want}"
                );
            }
        }
    }

    #[test]
    fn unreachable_targets_stay_finite() {
        // Found by the fuzzer: perplexity 1 with tied minima and denormal distances.
        let mut d = vec![f32::from_bits(0x300), 0.0, 0.0, f32::from_bits(0xc800)];
        calibrate_perplexity(&mut d, 4, 1.0, &Serial, None).unwrap();
        assert!(d.iter().all(|v| v.is_finite()));
        assert!((d.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut d = vec![0.0, 0.0, 1e30, f32::MAX];
        calibrate_perplexity(&mut d, 4, 1.0, &Serial, None).unwrap();
        assert!(d.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn perplexity_limits() {
        assert!(check_perplexity(100, 30.0).is_ok());
        assert!(matches!(
            check_perplexity(30, 30.0),
            Err(Error::PerplexityTooLarge { .. })
        ));
        assert!(matches!(
            check_perplexity(30, 40.0),
            Err(Error::PerplexityTooLarge { .. })
        ));
        assert!(check_perplexity(30, f32::NAN).is_err());
        assert_eq!(neighbours_for_perplexity(10_000, 30.0), 90);
        assert_eq!(neighbours_for_perplexity(20, 10.0), 19);
    }
}
