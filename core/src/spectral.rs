//! Spectral layout: the leading nontrivial eigenvectors of the normalised graph Laplacian
//! `L = I − D^{-1/2} W D^{-1/2}` (the smallest eigenvalues after the trivial 0), by a restarted
//! block Krylov method with Rayleigh–Ritz, in f64 on caller scratch.
//!
//! We iterate on `B = (I + D^{-1/2} W D^{-1/2}) / 2`, whose spectrum lies in [0, 1] with the
//! wanted vectors at the top, and keep every basis vector orthogonal to the known trivial one,
//! `D^{1/2}·1`. A disconnected graph has several zero eigenvalues of L whose vectors are
//! component indicators, useless as a layout; we detect that first and report it.

use crate::affinity::CsrRef;
use crate::error::{Result, ensure, ensure_len};
use crate::parallel::{Parallel, SharedMut, chunk_count, for_row_chunks};
use crate::rng::Rng;
use crate::scratch::{Scratch, ScratchSize};
use wide::f64x4;

/// Extra block vectors beyond those wanted (none: see `DEPTH`).
const EXTRA: usize = 0;
/// Krylov blocks per restart (fewer when the block is wide, to stay within `MAX_BASIS`).
/// Measured on MNIST (2-D layouts): deep and narrow beats wide and shallow. Blocks of
/// dims + 4 to dims + 8 took 3–6 s against 2.3 s for dims + 1 (one thread); blocks of
/// dims, 32 deep, then took 0.50 s against 0.82 s for dims + 1, 20 deep (two threads,
/// MNIST-70k; 2 restarts instead of 4 in a shuffled order, 0.54 against 0.67 s).
const DEPTH: usize = 32;
/// Largest basis.
const MAX_BASIS: usize = 64;
/// Blocks of Ritz vectors kept at a restart (thick restart): the next basis starts from
/// them instead of rebuilding them from the wanted block alone.
const KEPT_BLOCKS: usize = 4;
/// Restarts before giving up.
const MAX_RESTARTS: usize = 400;
/// Converged when ‖B x − θ x‖ is below this for each wanted vector (L's residual is twice it).
/// 4e-5 (still under the tests' 1e-4 in L) saved a restart in 2 of 8 starts on MNIST-70k
/// with the blocks of `DEPTH`, and none in the rest: not worth the looser vectors.
const TOLERANCE: f64 = 1e-5;
/// Largest departure from orthonormality tolerated in the kept Ritz vectors before the
/// basis is built with full reorthogonalisation (with it they are within about 1e-13).
const ORTHOGONALITY: f64 = 1e-9;
/// Widest block (16 wanted vectors and any extra).
const MAX_BLOCK: usize = 16 + EXTRA;
/// Coefficients of one block against the basis.
const MAX_COEFS: usize = MAX_BLOCK * (MAX_BASIS + 1);
/// Below this fraction of its length left after projection, a vector is orthogonalised
/// again against the whole basis.
const MIN_KEPT: f64 = 0.1;
/// Rows per parallel task of the sparse products.
const TASK_ROWS: usize = 1024;
/// Rows per task of the dense vector work (and per partial sum of the reductions).
const REDUCE_ROWS: usize = 4096;
/// Rows per slice of the all-pairs passes over the basis.
const L2_ROWS: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SpectralOutcome {
    Converged {
        restarts: usize,
    },
    /// The graph has this many connected components (> 1); no vectors were written.
    Disconnected {
        components: usize,
    },
    /// The wanted vectors did not reach the tolerance; the best found are in the output.
    NotConverged,
}

/// (block, basis, kept): vectors per Krylov block, largest basis, Ritz vectors kept at a
/// restart.
fn sizes(n: usize, dims: usize) -> (usize, usize, usize) {
    let block = (dims + EXTRA).min(n.saturating_sub(1)).max(1);
    let depth = DEPTH.min(MAX_BASIS / block).max(2);
    let basis = (block * depth).min(n.saturating_sub(1)).max(block);
    let kept = (KEPT_BLOCKS * block)
        .min(basis.saturating_sub(block))
        .max(block);
    (block, basis, kept)
}

/// Scratch for `spectral_embedding` on `n` points and `dims` vectors.
pub fn spectral_scratch(n: usize, dims: usize) -> ScratchSize {
    let (_, basis, kept) = sizes(n, dims);
    ScratchSize::new()
        .plus::<u32>(n) // component labels
        .plus::<f64>(2 * n) // D^{-1/2}, trivial vector
        .plus::<f64>(row_stride(dims + EXTRA) * n) // a block scaled by D^{-1/2}, row-major
        .plus::<f64>(2 * basis * n) // Q and BQ
        .plus::<f64>(2 * kept * n) // kept Ritz vectors and their images
        .plus::<f64>(3 * basis * basis) // T, its eigenvectors, work
        .plus::<f64>(basis)
        .plus::<f64>(chunk_count(n, REDUCE_ROWS) * basis * basis) // chunk partial sums
}

/// Number of connected components of the graph (`labels`: n scratch).
pub fn components(graph: CsrRef, labels: &mut [u32]) -> usize {
    let n = graph.rows();
    for (i, l) in labels[..n].iter_mut().enumerate() {
        *l = i as u32;
    }
    fn root(l: &mut [u32], mut i: u32) -> u32 {
        while l[i as usize] != i {
            let p = l[i as usize];
            l[i as usize] = l[p as usize];
            i = p;
        }
        i
    }
    for i in 0..n {
        let (cols, _) = graph.row(i);
        for &j in cols {
            let (a, b) = (root(labels, i as u32), root(labels, j));
            if a != b {
                labels[a.max(b) as usize] = a.min(b);
            }
        }
    }
    (0..n).filter(|&i| labels[i] == i as u32).count()
}

/// Writes the `dims` leading nontrivial eigenvectors of the normalised Laplacian of the
/// symmetric `graph` into `vectors` (`dims` vectors of length n, one after another, unit
/// length, mutually orthogonal) and their Laplacian eigenvalues (ascending) into `values`.
/// Each vector's sign makes its largest-magnitude entry positive.
pub fn spectral_embedding(
    graph: CsrRef,
    dims: usize,
    seed: u64,
    par: &dyn Parallel,
    scratch: &mut [u8],
    vectors: &mut [f64],
    values: &mut [f64],
) -> Result<SpectralOutcome> {
    embed(graph, dims, seed, par, scratch, vectors, values, false)
}

/// `spectral_embedding`, with full reorthogonalisation from the start if `full`.
#[allow(clippy::too_many_arguments)]
fn embed(
    graph: CsrRef,
    dims: usize,
    seed: u64,
    par: &dyn Parallel,
    scratch: &mut [u8],
    vectors: &mut [f64],
    values: &mut [f64],
    mut full: bool,
) -> Result<SpectralOutcome> {
    let n = graph.rows();
    ensure((1..=16).contains(&dims), "dims", "must be between 1 and 16")?;
    ensure_len("vectors", n * dims, vectors.len())?;
    ensure_len("values", dims, values.len())?;
    ensure_len("scratch", spectral_scratch(n, dims).bytes(), scratch.len())?;
    let (block, basis, keep) = sizes(n, dims);
    let mut s = Scratch::new(scratch);
    let labels = s.take::<u32>(n, "component labels")?;
    let comps = components(graph, labels);
    if comps > 1 {
        return Ok(SpectralOutcome::Disconnected { components: comps });
    }
    if dims > block || n < dims + 2 {
        return Ok(SpectralOutcome::NotConverged);
    }
    let isd = s.take::<f64>(n, "inverse root degrees")?;
    let trivial = s.take::<f64>(n, "trivial eigenvector")?;
    let scaled = s.take::<f64>(row_stride(dims + EXTRA) * n, "scaled block")?;
    let q = s.take::<f64>(basis * n, "krylov basis")?;
    let bq = s.take::<f64>(basis * n, "krylov images")?;
    let ritz = s.take::<f64>(keep * n, "ritz vectors")?;
    let bx = s.take::<f64>(keep * n, "ritz images")?;
    let t = s.take::<f64>(basis * basis, "projected matrix")?;
    let tv = s.take::<f64>(basis * basis, "projected eigenvectors")?;
    let work = s.take::<f64>(basis * basis, "eigen work")?;
    let theta = s.take::<f64>(basis, "ritz values")?;
    let partials = s.take::<f64>(chunk_count(n, REDUCE_ROWS) * basis * basis, "partial sums")?;

    for i in 0..n {
        let deg: f64 = graph.row(i).1.iter().map(|&w| w as f64).sum();
        isd[i] = if deg > 0.0 {
            1.0 / libm::sqrt(deg)
        } else {
            0.0
        };
        trivial[i] = libm::sqrt(deg);
    }
    normalise(trivial);
    // B applied to `width` vectors at once (one after another in `v`, images into `out`):
    // the block scaled by D^{-1/2} is stored row-major, so each edge costs one gather of
    // `width` neighbouring values rather than one per vector and one more for the degree.
    let mut apply = |v: &[f64], out: &mut [f64], width: usize| {
        let stride = row_stride(width);
        let u = SharedMut::new(&mut scaled[..stride * n]);
        par.run(chunk_count(n, TASK_ROWS), &|task| {
            let lo = task * TASK_ROWS;
            let hi = (lo + TASK_ROWS).min(n);
            // SAFETY: this task alone writes rows [lo, hi) of the scaled block.
            let u = unsafe { u.range(lo * stride, hi * stride) };
            u.fill(0.0);
            for c in 0..width {
                for i in lo..hi {
                    u[(i - lo) * stride + c] = isd[i] * v[c * n + i];
                }
            }
        });
        let u = &scaled[..stride * n];
        let o = SharedMut::new(out);
        par.run(chunk_count(n, TASK_ROWS), &|task| {
            let lo = task * TASK_ROWS;
            let hi = (lo + TASK_ROWS).min(n);
            // The usual widths (1-D to 3-D layouts) with their stride known to the compiler.
            match stride {
                2 => image_rows::<2>(graph, isd, v, u, width, &o, lo, hi),
                4 => image_rows::<4>(graph, isd, v, u, width, &o, lo, hi),
                _ => image_rows::<MAX_BLOCK>(graph, isd, v, u, width, &o, lo, hi),
            }
        });
    };

    // Starting block: random, orthonormal, orthogonal to the trivial vector.
    let mut rng = Rng::new(seed ^ 0x005E_C7A1_u64);
    for v in ritz.iter_mut() {
        *v = rng.normal();
    }
    let mut outcome = SpectralOutcome::NotConverged;
    let mut coef = [0.0f64; MAX_COEFS];
    // Ritz vectors carried into the next restart (with their images under B): none at first.
    let mut kept = 0;
    // Unless `full`, selective reorthogonalisation (see `project_out`) until the kept Ritz
    // vectors show a loss of orthogonality; then every block against the whole basis, from
    // a fresh start.
    for restart in 0..MAX_RESTARTS {
        // Basis: the kept Ritz vectors (or, at first, the random block), then Krylov blocks,
        // all orthonormalised. After a restart the first new block is B applied to the
        // leading Ritz vectors (their residual directions, once projected).
        q[..kept * n].copy_from_slice(&ritz[..kept * n]);
        bq[..kept * n].copy_from_slice(&bx[..kept * n]);
        let mut filled = kept;
        while filled + block <= basis {
            for c in 0..block {
                let col = filled + c;
                let src = if filled == 0 {
                    &ritz[c * n..(c + 1) * n]
                } else if filled == kept {
                    &bq[c * n..(c + 1) * n]
                } else {
                    &bq[(filled - block + c) * n..(filled - block + c + 1) * n]
                };
                q[col * n..(col + 1) * n].copy_from_slice(src);
            }
            {
                // The source block's neighbours: the block before it and itself, and all
                // kept Ritz vectors while the source is the first new block or one of them
                // (thick restart couples them to the first new block only).
                let local_from = if filled <= kept + block {
                    0
                } else {
                    filled - 2 * block
                };
                let (prev, cur) = q.split_at_mut(filled * n);
                project_out(
                    par,
                    &mut cur[..block * n],
                    trivial,
                    prev,
                    local_from,
                    if full { filled } else { kept },
                    partials,
                    &mut coef,
                );
            }
            for c in 0..block {
                let col = filled + c;
                let (prev, cur) = q.split_at_mut(col * n);
                let cur = &mut cur[..n];
                // Within the block; the earlier blocks were projected out above.
                let share = orthonormalise(
                    par,
                    cur,
                    trivial,
                    &prev[filled * n..],
                    c,
                    partials,
                    &mut coef,
                );
                if !matches!(share, Some(f) if f > MIN_KEPT) {
                    // Most of it cancelled (rounding may now matter), or all of it: against
                    // the whole basis, then from a fresh direction if nothing is left.
                    if orthonormalise(par, cur, trivial, prev, col, partials, &mut coef).is_none() {
                        for v in cur.iter_mut() {
                            *v = rng.normal();
                        }
                        if orthonormalise(par, cur, trivial, prev, col, partials, &mut coef)
                            .is_none()
                        {
                            return Ok(SpectralOutcome::NotConverged);
                        }
                    }
                }
            }
            apply(
                &q[filled * n..(filled + block) * n],
                &mut bq[filled * n..(filled + block) * n],
                block,
            );
            filled += block;
        }
        let k = filled;
        // T = Qᵀ B Q, symmetric as B is: its upper triangle, in one pass over the rows.
        // Rows in slices small enough that a slice of every basis vector stays in L2.
        reduce_rows(par, n, k * k, partials, work, &|lo, hi, out| {
            out[..k * k].fill(0.0);
            for (lo, hi) in slices(lo, hi) {
                for a in 0..k {
                    for b in a..k {
                        out[a * k + b] +=
                            dot(&q[a * n + lo..a * n + hi], &bq[b * n + lo..b * n + hi]);
                    }
                }
            }
        });
        for a in 0..k {
            for b in a..k {
                (t[a * k + b], t[b * k + a]) = (work[a * k + b], work[a * k + b]);
            }
        }
        symmetric_eigen(&mut t[..k * k], k, &mut tv[..k * k], &mut theta[..k], work);
        // The leading Ritz vectors X = Q S and their images B X = BQ S (kept for the next
        // restart), and the residuals ‖BQ S − θ Q S‖ of the wanted ones.
        kept = keep.min(k);
        {
            let (sx, sbx) = (SharedMut::new(&mut *ritz), SharedMut::new(&mut *bx));
            let tv = &*tv;
            par.run(chunk_count(n, REDUCE_ROWS), &|task| {
                let lo = task * REDUCE_ROWS;
                let hi = (lo + REDUCE_ROWS).min(n);
                for (lo, hi) in slices(lo, hi) {
                    for c in 0..kept {
                        // SAFETY: this task alone writes rows [lo, hi) of each kept vector.
                        let (x, y) = unsafe {
                            (
                                sx.range(c * n + lo, c * n + hi),
                                sbx.range(c * n + lo, c * n + hi),
                            )
                        };
                        x.fill(0.0);
                        y.fill(0.0);
                        for a in 0..k {
                            axpy(tv[a * k + c], &q[a * n + lo..a * n + hi], x);
                            axpy(tv[a * k + c], &bq[a * n + lo..a * n + hi], y);
                        }
                    }
                }
            });
        }
        if !full && lost_orthogonality(par, &ritz[..kept * n], n, partials, work) {
            full = true;
            kept = 0;
            for v in ritz.iter_mut() {
                *v = rng.normal();
            }
            continue;
        }
        let mut res = [0.0f64; 16];
        {
            let (ritz, tv, theta) = (&*ritz, &*tv, &*theta);
            reduce_rows(par, n, dims, partials, &mut res[..dims], &|lo, hi, out| {
                for c in 0..dims {
                    let mut r2 = 0.0;
                    for i in lo..hi {
                        let mut bx = 0.0;
                        for a in 0..k {
                            bx += tv[a * k + c] * bq[a * n + i];
                        }
                        let r = bx - theta[c] * ritz[c * n + i];
                        r2 += r * r;
                    }
                    out[c] = r2;
                }
            });
        }
        let worst = res[..dims]
            .iter()
            .fold(0.0f64, |m, &r| m.max(libm::sqrt(r)));
        if worst < TOLERANCE {
            outcome = SpectralOutcome::Converged { restarts: restart };
            break;
        }
    }
    for c in 0..dims {
        let x = &ritz[c * n..(c + 1) * n];
        let big = x
            .iter()
            .copied()
            .fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
        let sign = if big < 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            vectors[c * n + i] = sign * x[i];
        }
        values[c] = 2.0 * (1.0 - theta[c]);
    }
    Ok(outcome)
}

/// Row length of a block scaled by D^{-1/2}: two or four values, so a row never straddles
/// a cache line, else `MAX_BLOCK`.
fn row_stride(width: usize) -> usize {
    match width {
        0..=2 => 2,
        3 | 4 => 4,
        _ => MAX_BLOCK,
    }
}

/// Rows [lo, hi) of B applied to a block of `width` vectors: `v` the vectors one after
/// another, `u` them scaled by D^{-1/2}, row-major with `S` values per row (zeros past
/// `width`); the images go into `out`, laid out as `v`. Even and odd edges go to separate
/// sums, so two chains of additions run at once.
#[allow(clippy::too_many_arguments)]
fn image_rows<const S: usize>(
    graph: CsrRef,
    isd: &[f64],
    v: &[f64],
    u: &[f64],
    width: usize,
    out: &SharedMut<f64>,
    lo: usize,
    hi: usize,
) {
    let n = isd.len();
    let row = |j: u32| -> &[f64; S] { u[j as usize * S..][..S].try_into().unwrap() };
    for i in lo..hi {
        let (cols, ws) = graph.row(i);
        let (mut even, mut odd) = ([0.0f64; S], [0.0f64; S]);
        let (pairs, pair_ws) = (cols.chunks_exact(2), ws.chunks_exact(2));
        let (last, last_w) = (pairs.remainder(), pair_ws.remainder());
        for (j, w) in pairs.zip(pair_ws) {
            let (a, b) = (row(j[0]), row(j[1]));
            let (wa, wb) = (w[0] as f64, w[1] as f64);
            for c in 0..S {
                even[c] += wa * a[c];
                odd[c] += wb * b[c];
            }
        }
        if let (&[j], &[w]) = (last, last_w) {
            let a = row(j);
            for c in 0..S {
                even[c] += w as f64 * a[c];
            }
        }
        for c in 0..width {
            let acc = even[c] + odd[c];
            // SAFETY: this task alone writes row i of each image.
            unsafe { out.set(c * n + i, 0.5 * (v[c * n + i] + isd[i] * acc)) };
        }
    }
}

/// Rows [lo, hi) in slices of `L2_ROWS`: a slice of the whole basis and its images (64
/// vectors each) is 512 KB, so the all-pairs passes over it read L2 rather than L3.
fn slices(lo: usize, hi: usize) -> impl Iterator<Item = (usize, usize)> {
    (lo..hi)
        .step_by(L2_ROWS)
        .map(move |s| (s, (s + L2_ROWS).min(hi)))
}

fn normalise(v: &mut [f64]) -> f64 {
    let norm = libm::sqrt(dot(v, v));
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    norm
}

/// Makes the vectors of `block` (each `trivial.len()` long) orthogonal to `trivial` and to
/// the vectors in `prev`: classical Gram–Schmidt, twice, for the whole block at once, so each
/// pass reads the earlier basis once rather than once per vector. The first pass uses only
/// the vectors of `prev` from `local_from` on (with `trivial`): B is symmetric, so B applied
/// to a Krylov block is orthogonal to all but the blocks beside it, up to rounding. The
/// second pass adds the first `leading` vectors of `prev`, the Ritz vectors a thick restart
/// carried over: rounding makes a Lanczos basis lose orthogonality mostly towards converged
/// Ritz vectors (Paige), and those are the ones kept. Once the Ritz vectors show that this
/// was not enough, the caller passes `leading` = all of `prev`.
fn project_out(
    par: &dyn Parallel,
    block: &mut [f64],
    trivial: &[f64],
    prev: &[f64],
    local_from: usize,
    leading: usize,
    partials: &mut [f64],
    coef: &mut [f64],
) {
    let n = trivial.len();
    let (width, m) = (block.len() / n, prev.len() / n + 1);
    // Basis index p: 0 is `trivial`, p ≥ 1 is prev's vector p − 1.
    let used = |pass: usize, p: usize| p == 0 || p > local_from || (pass == 1 && p <= leading);
    let basis = |p: usize| -> &[f64] {
        if p == 0 {
            trivial
        } else {
            &prev[(p - 1) * n..p * n]
        }
    };
    for pass in 0..2 {
        {
            let block = &*block;
            reduce_rows(
                par,
                n,
                width * m,
                partials,
                &mut coef[..width * m],
                &|lo, hi, out| {
                    for p in (0..m).filter(|&p| used(pass, p)) {
                        let b = &basis(p)[lo..hi];
                        for c in 0..width {
                            out[c * m + p] = dot(&block[c * n + lo..c * n + hi], b);
                        }
                    }
                },
            );
        }
        let coef = &*coef;
        let shared = SharedMut::new(&mut *block);
        par.run(chunk_count(n, REDUCE_ROWS), &|task| {
            let lo = task * REDUCE_ROWS;
            let hi = (lo + REDUCE_ROWS).min(n);
            for p in (0..m).filter(|&p| used(pass, p)) {
                let b = &basis(p)[lo..hi];
                for c in 0..width {
                    // SAFETY: this task alone touches rows [lo, hi) of each block vector.
                    let x = unsafe { shared.range(c * n + lo, c * n + hi) };
                    axpy(-coef[c * m + p], b, x);
                }
            }
        });
    }
}

/// Whether the `x.len() / n` vectors of `x` (meant orthonormal) are off by more than
/// `ORTHOGONALITY` in any inner product. `work` holds their Gram matrix.
fn lost_orthogonality(
    par: &dyn Parallel,
    x: &[f64],
    n: usize,
    partials: &mut [f64],
    work: &mut [f64],
) -> bool {
    let k = x.len() / n;
    reduce_rows(par, n, k * k, partials, work, &|lo, hi, out| {
        out[..k * k].fill(0.0);
        for a in 0..k {
            for b in a..k {
                out[a * k + b] = dot(&x[a * n + lo..a * n + hi], &x[b * n + lo..b * n + hi]);
            }
        }
    });
    (0..k).any(|a| {
        (a..k).any(|b| {
            let want = if a == b { 1.0 } else { 0.0 };
            let off = (work[a * k + b] - want).abs();
            off > ORTHOGONALITY || off.is_nan()
        })
    })
}

/// Makes `v` orthogonal to `trivial` and to the `count` vectors in `prev` (classical
/// Gram–Schmidt, twice: as stable as modified Gram–Schmidt, and one pass over the rows per
/// sweep), then unit length. Returns the fraction of its length that was left, or None if
/// nothing independent was.
fn orthonormalise(
    par: &dyn Parallel,
    v: &mut [f64],
    trivial: &[f64],
    prev: &[f64],
    count: usize,
    partials: &mut [f64],
    coef: &mut [f64],
) -> Option<f64> {
    let n = v.len();
    let basis = |p: usize| -> &[f64] {
        if p == 0 {
            trivial
        } else {
            &prev[(p - 1) * n..p * n]
        }
    };
    let mut norm = [0.0f64];
    reduce_rows(par, n, 1, partials, &mut norm, &|lo, hi, out| {
        out[0] = dot(&v[lo..hi], &v[lo..hi]);
    });
    let start = libm::sqrt(norm[0]);
    if start == 0.0 {
        return None;
    }
    for _ in 0..2 {
        {
            let v = &*v;
            reduce_rows(
                par,
                n,
                count + 1,
                partials,
                &mut coef[..count + 1],
                &|lo, hi, out| {
                    for (p, o) in out.iter_mut().enumerate() {
                        *o = dot(&v[lo..hi], &basis(p)[lo..hi]);
                    }
                },
            );
        }
        let coef = &*coef;
        for_row_chunks(par, n, REDUCE_ROWS, v, 1, &|_, lo, rows, out| {
            for p in 0..=count {
                axpy(-coef[p], &basis(p)[lo..lo + rows], out);
            }
        });
    }
    reduce_rows(par, n, 1, partials, &mut norm, &|lo, hi, out| {
        out[0] = dot(&v[lo..hi], &v[lo..hi]);
    });
    let norm = libm::sqrt(norm[0]);
    if norm <= 1e-10 * start {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(norm / start)
}

/// Sums of `width` numbers over fixed row chunks: `f(lo, hi, out)` fills a chunk's sums, and
/// the chunks are added in order, so the result does not depend on the thread count.
fn reduce_rows(
    par: &dyn Parallel,
    n: usize,
    width: usize,
    partials: &mut [f64],
    out: &mut [f64],
    f: &(dyn Fn(usize, usize, &mut [f64]) + Sync),
) {
    let tasks = chunk_count(n, REDUCE_ROWS);
    for_row_chunks(
        par,
        tasks,
        1,
        &mut partials[..tasks * width],
        width,
        &|t, _, _, slot| {
            let lo = t * REDUCE_ROWS;
            f(lo, (lo + REDUCE_ROWS).min(n), slot);
        },
    );
    out[..width].fill(0.0);
    for t in 0..tasks {
        for (o, p) in out[..width]
            .iter_mut()
            .zip(&partials[t * width..(t + 1) * width])
        {
            *o += p;
        }
    }
}

/// Dot product in four SIMD lanes (fixed order, so the same bits everywhere).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = f64x4::ZERO;
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        acc += f64x4::new([x[0], x[1], x[2], x[3]]) * f64x4::new([y[0], y[1], y[2], y[3]]);
    }
    let l = acc.to_array();
    let mut s = (l[0] + l[1]) + (l[2] + l[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// y += w·x.
fn axpy(w: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += w * xi;
    }
}

/// Eigen-decomposition of the symmetric `k × k` matrix `a` (destroyed) by cyclic Jacobi
/// rotations. Eigenvalues into `vals`, descending; eigenvectors into the columns of `vecs`.
/// `work`: k × k scratch.
pub fn symmetric_eigen(
    a: &mut [f64],
    k: usize,
    vecs: &mut [f64],
    vals: &mut [f64],
    work: &mut [f64],
) {
    let v = &mut work[..k * k];
    v.fill(0.0);
    for i in 0..k {
        v[i * k + i] = 1.0;
    }
    let norm: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let mut off = 0.0;
        for p in 0..k {
            for q in p + 1..k {
                off += a[p * k + q] * a[p * k + q];
            }
        }
        if off <= 1e-30 * norm || off == 0.0 {
            break;
        }
        for p in 0..k {
            for q in p + 1..k {
                let apq = a[p * k + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (a[p * k + p], a[q * k + q]);
                let tau = (aqq - app) / (2.0 * apq);
                let t = if tau >= 0.0 {
                    1.0 / (tau + libm::sqrt(1.0 + tau * tau))
                } else {
                    -1.0 / (-tau + libm::sqrt(1.0 + tau * tau))
                };
                let c = 1.0 / libm::sqrt(1.0 + t * t);
                let s = t * c;
                for r in 0..k {
                    let (arp, arq) = (a[r * k + p], a[r * k + q]);
                    a[r * k + p] = c * arp - s * arq;
                    a[r * k + q] = s * arp + c * arq;
                }
                for r in 0..k {
                    let (apr, aqr) = (a[p * k + r], a[q * k + r]);
                    a[p * k + r] = c * apr - s * aqr;
                    a[q * k + r] = s * apr + c * aqr;
                }
                for r in 0..k {
                    let (vrp, vrq) = (v[r * k + p], v[r * k + q]);
                    v[r * k + p] = c * vrp - s * vrq;
                    v[r * k + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    // Order descending by eigenvalue (selection sort; k is small).
    let mut order = [0usize; MAX_BASIS];
    for (i, o) in order[..k].iter_mut().enumerate() {
        *o = i;
    }
    for i in 0..k {
        let mut best = i;
        for j in i + 1..k {
            if a[order[j] * k + order[j]] > a[order[best] * k + order[best]] {
                best = j;
            }
        }
        order.swap(i, best);
    }
    for (c, &src) in order[..k].iter().enumerate() {
        vals[c] = a[src * k + src];
        for r in 0..k {
            vecs[r * k + c] = v[r * k + src];
        }
    }
}

/// Maps each of the `dims` vectors (one after another, length n) linearly onto [0, `size`]
/// and writes them as the columns of the row-major `y` (`n × dims`).
pub fn scale_to_box(vectors: &[f64], n: usize, dims: usize, size: f64, y: &mut [f32]) {
    for c in 0..dims {
        let v = &vectors[c * n..(c + 1) * n];
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let span = hi - lo;
        for i in 0..n {
            y[i * dims + c] = if span > 0.0 {
                (size * (v[i] - lo) / span) as f32
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_matches_a_known_spectrum() {
        // Q diag(5, 3, 1, -2) Qᵀ for an orthogonal Q built from a Householder reflection.
        let u = [0.5f64, -0.5, 0.5, 0.5];
        let d = [5.0, 3.0, 1.0, -2.0];
        let mut a = [0.0f64; 16];
        for i in 0..4 {
            for j in 0..4 {
                let mut s = 0.0;
                for m in 0..4 {
                    let qi = if i == m { 1.0 } else { 0.0 } - 2.0 * u[i] * u[m];
                    let qj = if j == m { 1.0 } else { 0.0 } - 2.0 * u[j] * u[m];
                    s += qi * d[m] * qj;
                }
                a[i * 4 + j] = s;
            }
        }
        let (mut v, mut vals, mut w) = ([0.0; 16], [0.0; 4], [0.0; 16]);
        symmetric_eigen(&mut a.clone(), 4, &mut v, &mut vals, &mut w);
        for (got, want) in vals.iter().zip(d) {
            assert!((got - want).abs() < 1e-12, "{vals:?}");
        }
        let _ = &mut a;
    }

    /// A kNN graph (k = 8, weights exp(−d)) of 1 500 points in five 2-D Gaussian blobs, CSR.
    fn blobs_graph() -> (Vec<usize>, Vec<u32>, Vec<f32>) {
        let (n, k) = (1500, 8);
        let mut rng = Rng::new(3);
        let pts: Vec<[f64; 2]> = (0..n)
            .map(|i| {
                let c = (i % 5) as f64 * 1.3;
                [c + 0.5 * rng.normal(), (c * 0.7).sin() + 0.5 * rng.normal()]
            })
            .collect();
        let mut edges = Vec::new();
        for i in 0..n {
            let mut d: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let (dx, dy) = (pts[i][0] - pts[j][0], pts[i][1] - pts[j][1]);
                    (libm::sqrt(dx * dx + dy * dy), j)
                })
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            for &(dist, j) in &d[..k] {
                let w = libm::exp(-dist) as f32;
                edges.push((i, j as u32, w));
                edges.push((j, i as u32, w));
            }
        }
        edges.sort_by_key(|e| (e.0, e.1));
        edges.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
        let mut indptr = vec![0usize; n + 1];
        for e in &edges {
            indptr[e.0 + 1] += 1;
        }
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        let indices = edges.iter().map(|e| e.1).collect();
        let values = edges.iter().map(|e| e.2).collect();
        (indptr, indices, values)
    }

    #[test]
    fn selective_and_full_reorthogonalisation_find_the_same_vectors() {
        let (indptr, indices, values) = blobs_graph();
        let g = CsrRef {
            indptr: &indptr,
            indices: &indices,
            values: &values,
        };
        let (n, dims) = (g.rows(), 3);
        let mut scratch = vec![0u8; spectral_scratch(n, dims).bytes()];
        let mut out = [
            (vec![0.0; n * dims], [0.0; 3]),
            (vec![0.0; n * dims], [0.0; 3]),
        ];
        for (full, (v, l)) in out.iter_mut().enumerate() {
            let r = embed(g, dims, 1, &crate::Serial, &mut scratch, v, l, full == 1).unwrap();
            assert!(matches!(r, SpectralOutcome::Converged { .. }), "{r:?}");
        }
        for c in 0..dims {
            assert!(
                (out[0].1[c] - out[1].1[c]).abs() < 1e-9,
                "{:?} {:?}",
                out[0].1,
                out[1].1
            );
            let d = dot(&out[0].0[c * n..(c + 1) * n], &out[1].0[c * n..(c + 1) * n]);
            assert!((d.abs() - 1.0).abs() < 1e-8, "vector {c}: |cos| = {d}");
        }
    }

    #[test]
    fn lost_orthogonality_tells_orthonormal_from_nearly_so() {
        let n = 5000;
        let mut x = vec![0.0f64; 3 * n];
        let mut rng = Rng::new(9);
        for v in x.iter_mut() {
            *v = rng.normal();
        }
        let trivial = vec![0.0f64; n];
        let (mut partials, mut coef) = (vec![0.0; 64 * 64], [0.0; MAX_COEFS]);
        for c in 0..3 {
            let (prev, cur) = x.split_at_mut(c * n);
            orthonormalise(
                &crate::Serial,
                &mut cur[..n],
                &trivial,
                prev,
                c,
                &mut partials,
                &mut coef,
            )
            .unwrap();
        }
        let mut work = vec![0.0; 9];
        assert!(!lost_orthogonality(
            &crate::Serial,
            &x,
            n,
            &mut partials,
            &mut work
        ));
        x[2 * n] += 1e-7 * x[0];
        x[2 * n + 1] += 1e-4;
        assert!(lost_orthogonality(
            &crate::Serial,
            &x,
            n,
            &mut partials,
            &mut work
        ));
        x[2 * n] = f64::NAN;
        assert!(lost_orthogonality(
            &crate::Serial,
            &x,
            n,
            &mut partials,
            &mut work
        ));
    }
}
