//! The three dense products of the contrastive kernels, f32, SIMD through `wide`, parallel
//! over fixed blocks of output rows, each with a scalar twin that gives the same bits:
//!
//! - `a_bt`:  S = A·Bᵀ  (similarities; per entry the arithmetic of `simd::dot`),
//! - `g_b`:   O = G·B   (each output lane sums over j in order),
//! - `gt_a`:  O = Gᵀ·A  (each output lane sums over i in order).

use crate::matrix::MatRef;
use crate::parallel::{Parallel, for_row_chunks};
use crate::simd;
use wide::f32x8;

/// Output rows per parallel task.
const TASK_ROWS: usize = 64;

#[inline(always)]
fn load8(s: &[f32]) -> f32x8 {
    let a: [f32; 8] = s[..8].try_into().unwrap();
    f32x8::from(a)
}

/// `out[i * n + j] = a_i · b_j` for `a` (m × k) and `b` (n × k).
pub fn a_bt(a: MatRef, b: MatRef, par: &dyn Parallel, out: &mut [f32]) {
    let (m, n) = (a.rows(), b.rows());
    assert!(out.len() >= m * n && a.cols() == b.cols());
    for_row_chunks(par, m, TASK_ROWS, out, n, &|_, start, rows, o| {
        let mut r = 0;
        while r + 4 <= rows {
            let q = [
                a.row(start + r),
                a.row(start + r + 1),
                a.row(start + r + 2),
                a.row(start + r + 3),
            ];
            let mut j = 0;
            while j + 2 <= n {
                let t = simd::dot_4x2(q, [b.row(j), b.row(j + 1)]);
                for (x, tr) in t.iter().enumerate() {
                    o[(r + x) * n + j] = tr[0];
                    o[(r + x) * n + j + 1] = tr[1];
                }
                j += 2;
            }
            for j in j..n {
                for (x, qr) in q.iter().enumerate() {
                    o[(r + x) * n + j] = simd::dot(qr, b.row(j));
                }
            }
            r += 4;
        }
        for r in r..rows {
            for j in 0..n {
                o[r * n + j] = simd::dot(a.row(start + r), b.row(j));
            }
        }
    });
}

/// Scalar twin of [`a_bt`].
pub fn a_bt_scalar(a: MatRef, b: MatRef, out: &mut [f32]) {
    let n = b.rows();
    for i in 0..a.rows() {
        for j in 0..n {
            out[i * n + j] = simd::dot_scalar(a.row(i), b.row(j));
        }
    }
}

/// `out` (m × k, dense) = `g` (m × n, dense) · `b` (n × k).
pub fn g_b(g: &[f32], m: usize, b: MatRef, par: &dyn Parallel, out: &mut [f32]) {
    let (n, k) = (b.rows(), b.cols());
    assert!(g.len() >= m * n && out.len() >= m * k);
    for_row_chunks(par, m, TASK_ROWS, out, k, &|_, start, rows, o| {
        let body = k - k % 8;
        let mut r = 0;
        while r < rows {
            let h = (rows - r).min(4);
            let gr = |x: usize| &g[(start + r + x) * n..(start + r + x + 1) * n];
            let mut c = 0;
            while c < body {
                let mut acc = [f32x8::ZERO; 4];
                for j in 0..n {
                    let bv = load8(&b.row(j)[c..]);
                    for (x, a) in acc.iter_mut().enumerate().take(h) {
                        *a += f32x8::splat(gr(x)[j]) * bv;
                    }
                }
                for (x, a) in acc.iter().enumerate().take(h) {
                    o[(r + x) * k + c..(r + x) * k + c + 8].copy_from_slice(&a.to_array());
                }
                c += 8;
            }
            for x in 0..h {
                for c in body..k {
                    let mut s = 0.0f32;
                    for j in 0..n {
                        s += gr(x)[j] * b.row(j)[c];
                    }
                    o[(r + x) * k + c] = s;
                }
            }
            r += h;
        }
    });
}

/// Scalar twin of [`g_b`].
pub fn g_b_scalar(g: &[f32], m: usize, b: MatRef, out: &mut [f32]) {
    let (n, k) = (b.rows(), b.cols());
    for i in 0..m {
        for c in 0..k {
            let mut s = 0.0f32;
            for j in 0..n {
                s += g[i * n + j] * b.row(j)[c];
            }
            out[i * k + c] = s;
        }
    }
}

/// `out` (n × k, dense) = `g`ᵀ (g is m × n, dense) · `a` (m × k).
pub fn gt_a(g: &[f32], n: usize, a: MatRef, par: &dyn Parallel, out: &mut [f32]) {
    let (m, k) = (a.rows(), a.cols());
    assert!(g.len() >= m * n && out.len() >= n * k);
    for_row_chunks(par, n, TASK_ROWS, out, k, &|_, start, rows, o| {
        let body = k - k % 8;
        let mut r = 0;
        while r < rows {
            let h = (rows - r).min(4);
            let j0 = start + r;
            let mut c = 0;
            while c < body {
                let mut acc = [f32x8::ZERO; 4];
                for i in 0..m {
                    let av = load8(&a.row(i)[c..]);
                    let gi = &g[i * n + j0..i * n + j0 + h];
                    for (x, acc) in acc.iter_mut().enumerate().take(h) {
                        *acc += f32x8::splat(gi[x]) * av;
                    }
                }
                for (x, acc) in acc.iter().enumerate().take(h) {
                    o[(r + x) * k + c..(r + x) * k + c + 8].copy_from_slice(&acc.to_array());
                }
                c += 8;
            }
            for x in 0..h {
                for c in body..k {
                    let mut s = 0.0f32;
                    for i in 0..m {
                        s += g[i * n + j0 + x] * a.row(i)[c];
                    }
                    o[(r + x) * k + c] = s;
                }
            }
            r += h;
        }
    });
}

/// Scalar twin of [`gt_a`].
pub fn gt_a_scalar(g: &[f32], n: usize, a: MatRef, out: &mut [f32]) {
    let (m, k) = (a.rows(), a.cols());
    for j in 0..n {
        for c in 0..k {
            let mut s = 0.0f32;
            for i in 0..m {
                s += g[i * n + j] * a.row(i)[c];
            }
            out[j * k + c] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rng, Serial};

    #[test]
    fn simd_products_equal_their_scalar_twins_bitwise() {
        let mut r = Rng::new(9);
        for (m, n, k) in [
            (1, 1, 1),
            (5, 7, 3),
            (9, 13, 17),
            (33, 20, 128),
            (64, 65, 24),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| r.normal() as f32).collect();
            let b: Vec<f32> = (0..n * k).map(|_| r.normal() as f32 * 10.0).collect();
            let g: Vec<f32> = (0..m * n).map(|_| r.normal() as f32).collect();
            let (am, bm) = (
                MatRef::dense(&a, m, k).unwrap(),
                MatRef::dense(&b, n, k).unwrap(),
            );
            let (mut s1, mut s2) = (vec![0.0; m * n], vec![0.0; m * n]);
            a_bt(am, bm, &Serial, &mut s1);
            a_bt_scalar(am, bm, &mut s2);
            assert!(s1.iter().zip(&s2).all(|(x, y)| x.to_bits() == y.to_bits()));
            let (mut o1, mut o2) = (vec![0.0; m * k], vec![0.0; m * k]);
            g_b(&g, m, bm, &Serial, &mut o1);
            g_b_scalar(&g, m, bm, &mut o2);
            assert!(o1.iter().zip(&o2).all(|(x, y)| x.to_bits() == y.to_bits()));
            let (mut t1, mut t2) = (vec![0.0; n * k], vec![0.0; n * k]);
            gt_a(&g, n, am, &Serial, &mut t1);
            gt_a_scalar(&g, n, am, &mut t2);
            assert!(t1.iter().zip(&t2).all(|(x, y)| x.to_bits() == y.to_bits()));
            // And against f64 arithmetic.
            for j in 0..n {
                for c in 0..k {
                    let want: f64 = (0..m)
                        .map(|i| g[i * n + j] as f64 * a[i * k + c] as f64)
                        .sum();
                    assert!((t1[j * k + c] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()));
                }
            }
        }
    }
}
