//! Orthonormal projections onto a dominant subspace of the data (one step of a randomised
//! range finder), computed in f32 with the SIMD dot kernel. An orthogonal projection never
//! lengthens a difference vector, so distances after projection are lower bounds of the
//! true distances: the approximate kNN uses that to skip most full-length distances.

use crate::error::{Result, ensure, ensure_len};
use crate::matrix::MatRef;
use crate::parallel::{Parallel, for_row_chunks};
use crate::rng::Rng;
use crate::scratch::{Scratch, ScratchSize};
use crate::simd;

const TASK_ROWS: usize = 256;
/// Fixed row chunks for the Xᵀ·A reduction (results independent of the thread count).
const REDUCE_TASKS: usize = 8;

/// The step between the rows `dominant_subspace` reads when told to use at most
/// `max_rows` of `n` (0: all).
fn sample_step(n: usize, max_rows: usize) -> usize {
    if max_rows == 0 {
        1
    } else {
        n.div_ceil(max_rows).max(1)
    }
}

/// Scratch for `dominant_subspace` with `n` points of `d` columns, `r` directions and at
/// most `max_rows` rows read (0: all).
pub fn subspace_scratch(n: usize, d: usize, r: usize, max_rows: usize) -> ScratchSize {
    let n = n.div_ceil(sample_step(n, max_rows));
    ScratchSize::new()
        .plus::<f32>(d) // mean
        .plus::<f32>(r * d) // random test directions
        .plus::<f32>(n * r) // X Ω
        .plus::<f32>(REDUCE_TASKS * r * d) // partial Xᵀ (X Ω)
        .plus::<f64>(r * d) // basis for Gram–Schmidt
}

/// Writes `r` orthonormal directions (rows of `basis`, `r × d`) spanning approximately the
/// top-`r` principal subspace of `x`: V = orth(X_cᵀ X_c Ω) for a Gaussian Ω. With
/// `max_rows` > 0, from evenly spaced rows, at most that many (0: every row).
pub fn dominant_subspace(
    x: MatRef,
    r: usize,
    max_rows: usize,
    seed: u64,
    par: &dyn Parallel,
    scratch: &mut [u8],
    basis: &mut [f32],
) -> Result<()> {
    let x = x.every_nth_row(sample_step(x.rows(), max_rows));
    let (n, d) = (x.rows(), x.cols());
    ensure(
        r >= 1 && r <= d,
        "projection dims",
        "must be between 1 and the number of columns",
    )?;
    ensure_len("basis", r * d, basis.len())?;
    let mut s = Scratch::new(scratch);
    let mean = s.take::<f32>(d, "mean")?;
    let omega = s.take::<f32>(r * d, "test directions")?;
    let a = s.take::<f32>(n * r, "sketch")?;
    let partial = s.take::<f32>(REDUCE_TASKS * r * d, "partial sums")?;
    let v = s.take::<f64>(r * d, "basis")?;
    // The mean, accumulated row by row in f64 (v is free until the end).
    let sums = &mut v[..d];
    for i in 0..n {
        for (s, &xv) in sums.iter_mut().zip(x.row(i)) {
            *s += xv as f64;
        }
    }
    for (m, s) in mean.iter_mut().zip(sums.iter()) {
        *m = (*s / n.max(1) as f64) as f32;
    }
    let mut rng = Rng::stream(seed, 0x5b5);
    omega.iter_mut().for_each(|w| *w = rng.normal() as f32);
    // A = X_c Ω  (rows of Ω are directions).
    centred_products(x, mean, omega, r, par, a);
    // B = X_cᵀ A, summed over fixed row chunks.
    let chunk = n.div_ceil(REDUCE_TASKS).max(1);
    for_row_chunks(par, REDUCE_TASKS, 1, partial, r * d, &|t, _, _, out| {
        out.fill(0.0);
        for i in (t * chunk)..((t + 1) * chunk).min(n) {
            let xi = x.row(i);
            for c in 0..r {
                let w = a[i * r + c];
                let o = &mut out[c * d..(c + 1) * d];
                for f in 0..d {
                    o[f] += w * (xi[f] - mean[f]);
                }
            }
        }
    });
    v.fill(0.0);
    for t in 0..REDUCE_TASKS {
        for (vv, p) in v.iter_mut().zip(&partial[t * r * d..(t + 1) * r * d]) {
            *vv += *p as f64;
        }
    }
    // Modified Gram–Schmidt on the rows of B; a vanishing row becomes a unit axis vector.
    for c in 0..r {
        for attempt in 0..=d {
            for p in 0..c {
                let dot: f64 = (0..d).map(|f| v[c * d + f] * v[p * d + f]).sum();
                for f in 0..d {
                    v[c * d + f] -= dot * v[p * d + f];
                }
            }
            let norm = libm::sqrt((0..d).map(|f| v[c * d + f] * v[c * d + f]).sum::<f64>());
            if norm > 1e-9 {
                for f in 0..d {
                    v[c * d + f] /= norm;
                }
                break;
            }
            for f in 0..d {
                v[c * d + f] = if f == (c + attempt) % d { 1.0 } else { 0.0 };
            }
        }
    }
    for (b, vv) in basis.iter_mut().zip(v.iter()) {
        *b = *vv as f32;
    }
    Ok(())
}

/// out[i, c] = (x_i − mean) · dirs_c for `r` directions (rows of `dirs`, r × d).
fn centred_products(
    x: MatRef,
    mean: &[f32],
    dirs: &[f32],
    r: usize,
    par: &dyn Parallel,
    out: &mut [f32],
) {
    let d = x.cols();
    let offsets: heapless::Vec<f32, 256> = (0..r.min(256))
        .map(|c| simd::dot(mean, &dirs[c * d..(c + 1) * d]))
        .collect();
    for_row_chunks(par, x.rows(), TASK_ROWS, out, r, &|_, first, rows, o| {
        row_products(x, first, rows, dirs, r, o);
        for q in 0..rows {
            for c in 0..r {
                let off = if c < offsets.len() {
                    offsets[c]
                } else {
                    simd::dot(mean, &dirs[c * d..(c + 1) * d])
                };
                o[q * r + c] -= off;
            }
        }
    });
}

/// o[q, c] = x_{first+q} · dirs_c for `rows` rows and `r` directions: four rows against two
/// directions at a time (eight independent sums, each loaded block used twice or four
/// times), with the arithmetic of `simd::dot`, so the same bits.
fn row_products(x: MatRef, first: usize, rows: usize, dirs: &[f32], r: usize, o: &mut [f32]) {
    let d = x.cols();
    let dir = |c: usize| &dirs[c * d..(c + 1) * d];
    let (quads, pairs) = (rows - rows % 4, r - r % 2);
    for q in (0..quads).step_by(4) {
        let xs = [0, 1, 2, 3].map(|t| x.row(first + q + t));
        for c in (0..pairs).step_by(2) {
            let t = simd::dot_4x2(xs, [dir(c), dir(c + 1)]);
            for (u, tu) in t.iter().enumerate() {
                o[(q + u) * r + c] = tu[0];
                o[(q + u) * r + c + 1] = tu[1];
            }
        }
        for c in pairs..r {
            for (u, xu) in xs.iter().enumerate() {
                o[(q + u) * r + c] = simd::dot(xu, dir(c));
            }
        }
    }
    for q in quads..rows {
        let xi = x.row(first + q);
        for c in 0..r {
            o[q * r + c] = simd::dot(xi, dir(c));
        }
    }
}

/// Coordinates of every row of `x` in the orthonormal `basis` (r × d): `out` is n × r.
pub fn project(
    x: MatRef,
    basis: &[f32],
    r: usize,
    par: &dyn Parallel,
    out: &mut [f32],
) -> Result<()> {
    let (n, d) = (x.rows(), x.cols());
    ensure_len("basis", r * d, basis.len())?;
    ensure_len("projection", n * r, out.len())?;
    for_row_chunks(par, n, TASK_ROWS, out, r, &|_, first, rows, o| {
        row_products(x, first, rows, basis, r, o);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Serial;

    #[test]
    fn basis_is_orthonormal_and_projected_distances_are_lower_bounds() {
        let (n, d, r) = (400, 30, 6);
        let mut g = Rng::new(6);
        let x: Vec<f32> = (0..n * d)
            .map(|i| (g.normal() * if i % d < 4 { 10.0 } else { 1.0 }) as f32)
            .collect();
        let m = MatRef::dense(&x, n, d).unwrap();
        // Every row, and a third of them (every third row).
        for max_rows in [0, n / 3] {
            let mut sc = vec![0u8; subspace_scratch(n, d, r, max_rows).bytes()];
            let mut basis = vec![0.0; r * d];
            dominant_subspace(m, r, max_rows, 1, &Serial, &mut sc, &mut basis).unwrap();
            for a in 0..r {
                for b in 0..r {
                    let dot: f32 = (0..d).map(|f| basis[a * d + f] * basis[b * d + f]).sum();
                    assert!((dot - if a == b { 1.0 } else { 0.0 }).abs() < 1e-5);
                }
            }
            // The four high-variance axes lie (almost) inside the subspace.
            for f in 0..4 {
                let inside: f32 = (0..r).map(|c| basis[c * d + f].powi(2)).sum();
                assert!(inside > 0.95, "rows {max_rows}, axis {f}: {inside}");
            }
            let mut z = vec![0.0; n * r];
            project(m, &basis, r, &Serial, &mut z).unwrap();
            for (i, j) in [(0usize, 1usize), (5, 77), (100, 399)] {
                let full: f32 = (0..d).map(|f| (x[i * d + f] - x[j * d + f]).powi(2)).sum();
                let low: f32 = (0..r).map(|c| (z[i * r + c] - z[j * r + c]).powi(2)).sum();
                assert!(low <= full * (1.0 + 1e-5), "{low} > {full}");
            }
        }
    }
}
