//! The three dense products of the contrastive kernels, f32, parallel over fixed blocks of
//! output rows, each with a scalar twin that gives the same bits:
//!
//! - `a_bt`:  S = A·Bᵀ  (similarities; per entry the arithmetic of `simd::dot`),
//! - `g_b`:   O = G·B   (each output lane sums over j in order),
//! - `gt_a`:  O = Gᵀ·A  (each output lane sums over i in order).
//!
//! Two arithmetics: portable SIMD through `wide` (SSE2 in the portable x86-64 build, no fused
//! multiply-add), and on x86-64 CPUs that have them, AVX2 with FMA, chosen at run time (the
//! portable build never executes an instruction the CPU lacks). Each has its scalar twin
//! (`*_scalar`, `*_scalar_fma`). The two arithmetics round differently, so results are the
//! same bits on any thread count of one machine, not across machines with and without FMA.

use crate::matrix::MatRef;
use crate::parallel::{Parallel, SharedMut, for_row_chunks};
use crate::simd;
use wide::f32x8;

/// Output rows per parallel task.
const TASK_ROWS: usize = 64;

#[inline(always)]
fn load8(s: &[f32]) -> f32x8 {
    let a: [f32; 8] = s[..8].try_into().unwrap();
    f32x8::from(a)
}

/// Whether the fused (AVX2 + FMA) kernels run on this CPU.
pub fn uses_fma() -> bool {
    crate::cpu::has_avx2_fma()
}

/// `out[i * n + j] = a_i · b_j` for `a` (m × k) and `b` (n × k).
pub fn a_bt(a: MatRef, b: MatRef, par: &dyn Parallel, out: &mut [f32]) {
    let (m, n) = (a.rows(), b.rows());
    assert!(out.len() >= m * n && a.cols() == b.cols());
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() {
        for_row_chunks(par, m, TASK_ROWS, out, n, &|_, start, rows, o| {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { fma::a_bt_rows(a, b, start, rows, o) }
        });
        return;
    }
    a_bt_portable(a, b, par, out)
}

/// `a_bt` in portable SIMD (what CPUs without AVX2 + FMA run).
pub fn a_bt_portable(a: MatRef, b: MatRef, par: &dyn Parallel, out: &mut [f32]) {
    let (m, n) = (a.rows(), b.rows());
    assert!(out.len() >= m * n && a.cols() == b.cols());
    let k = a.cols();
    for_row_chunks(par, m, TASK_ROWS, out, n, &|_, start, rows, o| {
        if k < 8 {
            // Low dimension (embeddings): `simd::dot` is its tail alone, from a zero sum.
            for r in 0..rows {
                let x = a.row(start + r);
                for j in 0..n {
                    let y = b.row(j);
                    let mut s = 0.0f32;
                    for c in 0..k {
                        s += x[c] * y[c];
                    }
                    o[r * n + j] = s;
                }
            }
            return;
        }
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
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() {
        for_row_chunks(par, m, TASK_ROWS, out, k, &|_, start, rows, o| {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { fma::g_b_rows(g, b, start, rows, o) }
        });
        return;
    }
    g_b_portable(g, m, b, par, out)
}

/// `g_b` in portable SIMD.
pub fn g_b_portable(g: &[f32], m: usize, b: MatRef, par: &dyn Parallel, out: &mut [f32]) {
    let (n, k) = (b.rows(), b.cols());
    assert!(g.len() >= m * n && out.len() >= m * k);
    for_row_chunks(par, m, TASK_ROWS, out, k, &|_, start, rows, o| {
        if k <= 4 {
            // Low dimension: four output rows at a time in registers, sums in j order.
            let mut r = 0;
            while r < rows {
                let h = (rows - r).min(4);
                let mut acc = [[0.0f32; 4]; 4];
                for j in 0..n {
                    let bj = b.row(j);
                    for (x, ax) in acc.iter_mut().enumerate().take(h) {
                        let gv = g[(start + r + x) * n + j];
                        for c in 0..k {
                            ax[c] += gv * bj[c];
                        }
                    }
                }
                for (x, ax) in acc.iter().enumerate().take(h) {
                    o[(r + x) * k..(r + x + 1) * k].copy_from_slice(&ax[..k]);
                }
                r += h;
            }
            return;
        }
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
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() {
        for_row_chunks(par, n, TASK_ROWS, out, k, &|_, start, rows, o| {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { fma::gt_a_rows(g, n, a, start, rows, o) }
        });
        return;
    }
    gt_a_portable(g, n, a, par, out)
}

/// `gt_a` in portable SIMD.
pub fn gt_a_portable(g: &[f32], n: usize, a: MatRef, par: &dyn Parallel, out: &mut [f32]) {
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

/// h ← h + hᵀ for the `n × n` matrix `h`, in 64 × 64 blocks; task b owns the block row b
/// from the diagonal rightwards and the matching block column, so every element is written by
/// exactly one task and the result does not depend on the thread count.
pub fn add_transpose(h: &mut [f32], n: usize, par: &dyn Parallel) {
    const T: usize = 64;
    assert!(h.len() >= n * n);
    let shared = SharedMut::new(&mut h[..n * n]);
    par.run(n.div_ceil(T), &|b| {
        let (i0, i1) = (b * T, ((b + 1) * T).min(n));
        // SAFETY (all accesses below): block row b from the diagonal rightwards and block
        // column b below the diagonal belong to this task alone; indices are below n·n.
        for a in i0..i1 {
            unsafe {
                let d = a * n + a;
                shared.set(d, 2.0 * shared.get(d));
                for c in a + 1..i1 {
                    let (x, y) = (a * n + c, c * n + a);
                    let s = shared.get(x) + shared.get(y);
                    shared.set(x, s);
                    shared.set(y, s);
                }
            }
        }
        // Off-diagonal blocks: the mirror block goes through a small buffer so that both are
        // read and written row by row.
        let mut mirror = [[0.0f32; T]; T];
        for j0 in (i1..n).step_by(T) {
            let j1 = (j0 + T).min(n);
            for c in j0..j1 {
                for a in i0..i1 {
                    mirror[c - j0][a - i0] = unsafe { shared.get(c * n + a) };
                }
            }
            for a in i0..i1 {
                for c in j0..j1 {
                    let x = a * n + c;
                    let s = unsafe { shared.get(x) } + mirror[c - j0][a - i0];
                    unsafe { shared.set(x, s) };
                    mirror[c - j0][a - i0] = s;
                }
            }
            for c in j0..j1 {
                for a in i0..i1 {
                    unsafe { shared.set(c * n + a, mirror[c - j0][a - i0]) };
                }
            }
        }
    });
}

/// Scalar twin of the fused `a_bt`: eight lane accumulators of fused multiply-adds over
/// blocks of eight, lanes reduced left to right, then the tail fused into the sum.
pub fn a_bt_scalar_fma(a: MatRef, b: MatRef, out: &mut [f32]) {
    let (n, k) = (b.rows(), a.cols());
    let body = k - k % 8;
    for i in 0..a.rows() {
        for j in 0..n {
            let (x, y) = (a.row(i), b.row(j));
            let mut acc = [0.0f32; 8];
            for c in (0..body).step_by(8) {
                for l in 0..8 {
                    acc[l] = libm::fmaf(x[c + l], y[c + l], acc[l]);
                }
            }
            let mut s = acc[0];
            for v in &acc[1..] {
                s += v;
            }
            for c in body..k {
                s = libm::fmaf(x[c], y[c], s);
            }
            out[i * n + j] = s;
        }
    }
}

/// Scalar twin of the fused `g_b`.
pub fn g_b_scalar_fma(g: &[f32], m: usize, b: MatRef, out: &mut [f32]) {
    let (n, k) = (b.rows(), b.cols());
    for i in 0..m {
        for c in 0..k {
            let mut s = 0.0f32;
            for j in 0..n {
                s = libm::fmaf(g[i * n + j], b.row(j)[c], s);
            }
            out[i * k + c] = s;
        }
    }
}

/// Scalar twin of the fused `gt_a`.
pub fn gt_a_scalar_fma(g: &[f32], n: usize, a: MatRef, out: &mut [f32]) {
    let (m, k) = (a.rows(), a.cols());
    for j in 0..n {
        for c in 0..k {
            let mut s = 0.0f32;
            for i in 0..m {
                s = libm::fmaf(g[i * n + j], a.row(i)[c], s);
            }
            out[j * k + c] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod fma {
    use crate::matrix::MatRef;
    use core::arch::x86_64::*;

    /// a·b + c with one rounding (the scalar twin uses `libm::fmaf`, equally exact).
    #[inline(always)]
    unsafe fn fmadd(a: f32, b: f32, c: f32) -> f32 {
        // SAFETY: the callers run with FMA enabled.
        unsafe { _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c))) }
    }

    #[inline(always)]
    unsafe fn load(s: &[f32]) -> __m256 {
        debug_assert!(s.len() >= 8);
        // SAFETY: the caller passes at least eight floats.
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }

    #[inline(always)]
    unsafe fn reduce(v: __m256) -> f32 {
        let mut a = [0.0f32; 8];
        // SAFETY: eight floats of storage.
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), v) };
        let mut s = a[0];
        for x in &a[1..] {
            s += x;
        }
        s
    }

    /// One entry with the arithmetic of `a_bt_scalar_fma`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot(x: &[f32], y: &[f32]) -> f32 {
        let k = x.len();
        let body = k - k % 8;
        let mut acc = _mm256_setzero_ps();
        let mut c = 0;
        while c < body {
            // SAFETY: c + 8 <= body <= len.
            acc = unsafe { _mm256_fmadd_ps(load(&x[c..]), load(&y[c..]), acc) };
            c += 8;
        }
        // SAFETY: plain register work.
        let mut s = unsafe { reduce(acc) };
        for c in body..k {
            s = unsafe { fmadd(x[c], y[c], s) };
        }
        s
    }

    /// Rows `start..start + rows` of A·Bᵀ into `o`, four rows by two columns at a time.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn a_bt_rows(a: MatRef, b: MatRef, start: usize, rows: usize, o: &mut [f32]) {
        let (n, k) = (b.rows(), a.cols());
        let body = k - k % 8;
        if body == 0 {
            // Low dimension (embeddings): the tail alone, from a zero sum as the twin's.
            for r in 0..rows {
                let x = a.row(start + r);
                for j in 0..n {
                    let y = b.row(j);
                    let mut s = 0.0f32;
                    for c in 0..k {
                        // SAFETY: the caller checked the CPU.
                        s = unsafe { fmadd(x[c], y[c], s) };
                    }
                    o[r * n + j] = s;
                }
            }
            return;
        }
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
                let (b0, b1) = (b.row(j), b.row(j + 1));
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                let mut c = 0;
                while c < body {
                    // SAFETY: c + 8 <= body <= every row's length.
                    unsafe {
                        let (v0, v1) = (load(&b0[c..]), load(&b1[c..]));
                        for x in 0..4 {
                            let qv = load(&q[x][c..]);
                            acc[x][0] = _mm256_fmadd_ps(qv, v0, acc[x][0]);
                            acc[x][1] = _mm256_fmadd_ps(qv, v1, acc[x][1]);
                        }
                    }
                    c += 8;
                }
                for x in 0..4 {
                    for (y, bv) in [b0, b1].iter().enumerate() {
                        // SAFETY: plain register work.
                        let mut s = unsafe { reduce(acc[x][y]) };
                        for c in body..k {
                            s = unsafe { fmadd(q[x][c], bv[c], s) };
                        }
                        o[(r + x) * n + j + y] = s;
                    }
                }
                j += 2;
            }
            for j in j..n {
                for x in 0..4 {
                    // SAFETY: the caller checked the CPU.
                    o[(r + x) * n + j] = unsafe { dot(q[x], b.row(j)) };
                }
            }
            r += 4;
        }
        for r in r..rows {
            for j in 0..n {
                // SAFETY: the caller checked the CPU.
                o[r * n + j] = unsafe { dot(a.row(start + r), b.row(j)) };
            }
        }
    }

    /// Rows `start..start + rows` of G·B into `o` (rows × k), four rows by sixteen columns.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn g_b_rows(g: &[f32], b: MatRef, start: usize, rows: usize, o: &mut [f32]) {
        let (n, k) = (b.rows(), b.cols());
        if k <= 4 {
            // Low dimension: four output rows at a time, sums over j in the twin's order,
            // in registers (4·k independent chains hide the FMA latency).
            let mut r = 0;
            while r < rows {
                let h = (rows - r).min(4);
                let mut acc = [[0.0f32; 4]; 4];
                for j in 0..n {
                    let bj = b.row(j);
                    for (x, ax) in acc.iter_mut().enumerate().take(h) {
                        let gv = g[(start + r + x) * n + j];
                        for c in 0..k {
                            // SAFETY: the caller checked the CPU.
                            ax[c] = unsafe { fmadd(gv, bj[c], ax[c]) };
                        }
                    }
                }
                for (x, ax) in acc.iter().enumerate().take(h) {
                    o[(r + x) * k..(r + x + 1) * k].copy_from_slice(&ax[..k]);
                }
                r += h;
            }
            return;
        }
        let mut r = 0;
        while r < rows {
            let h = (rows - r).min(4);
            let gr = |x: usize| &g[(start + r + x) * n..(start + r + x + 1) * n];
            let mut c = 0;
            while c + 16 <= k {
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                for j in 0..n {
                    let bj = b.row(j);
                    // SAFETY: c + 16 <= k.
                    unsafe {
                        let (v0, v1) = (load(&bj[c..]), load(&bj[c + 8..]));
                        for (x, a) in acc.iter_mut().enumerate().take(h) {
                            let s = _mm256_set1_ps(gr(x)[j]);
                            a[0] = _mm256_fmadd_ps(s, v0, a[0]);
                            a[1] = _mm256_fmadd_ps(s, v1, a[1]);
                        }
                    }
                }
                for (x, a) in acc.iter().enumerate().take(h) {
                    let at = (r + x) * k + c;
                    // SAFETY: sixteen floats of output row r + x from column c.
                    unsafe {
                        _mm256_storeu_ps(o[at..].as_mut_ptr(), a[0]);
                        _mm256_storeu_ps(o[at + 8..].as_mut_ptr(), a[1]);
                    }
                }
                c += 16;
            }
            for x in 0..h {
                for c in c..k {
                    let mut s = 0.0f32;
                    for j in 0..n {
                        s = unsafe { fmadd(gr(x)[j], b.row(j)[c], s) };
                    }
                    o[(r + x) * k + c] = s;
                }
            }
            r += h;
        }
    }

    /// Rows `start..start + rows` of Gᵀ·A (g is m × n) into `o`, four rows by sixteen columns.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gt_a_rows(
        g: &[f32],
        n: usize,
        a: MatRef,
        start: usize,
        rows: usize,
        o: &mut [f32],
    ) {
        let (m, k) = (a.rows(), a.cols());
        let mut r = 0;
        while r < rows {
            let h = (rows - r).min(4);
            let j0 = start + r;
            let mut c = 0;
            while c + 16 <= k {
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                for i in 0..m {
                    let ai = a.row(i);
                    let gi = &g[i * n + j0..i * n + j0 + h];
                    // SAFETY: c + 16 <= k.
                    unsafe {
                        let (v0, v1) = (load(&ai[c..]), load(&ai[c + 8..]));
                        for (x, acc) in acc.iter_mut().enumerate().take(h) {
                            let s = _mm256_set1_ps(gi[x]);
                            acc[0] = _mm256_fmadd_ps(s, v0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(s, v1, acc[1]);
                        }
                    }
                }
                for (x, acc) in acc.iter().enumerate().take(h) {
                    let at = (r + x) * k + c;
                    // SAFETY: sixteen floats of output row r + x from column c.
                    unsafe {
                        _mm256_storeu_ps(o[at..].as_mut_ptr(), acc[0]);
                        _mm256_storeu_ps(o[at + 8..].as_mut_ptr(), acc[1]);
                    }
                }
                c += 16;
            }
            for x in 0..h {
                for c in c..k {
                    let mut s = 0.0f32;
                    for i in 0..m {
                        s = unsafe { fmadd(g[i * n + j0 + x], a.row(i)[c], s) };
                    }
                    o[(r + x) * k + c] = s;
                }
            }
            r += h;
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
            // The portable kernels against their twins, always.
            let (mut s1, mut s2) = (vec![0.0; m * n], vec![0.0; m * n]);
            a_bt_portable(am, bm, &Serial, &mut s1);
            a_bt_scalar(am, bm, &mut s2);
            assert!(s1.iter().zip(&s2).all(|(x, y)| x.to_bits() == y.to_bits()));
            let (mut o1, mut o2) = (vec![0.0; m * k], vec![0.0; m * k]);
            g_b_portable(&g, m, bm, &Serial, &mut o1);
            g_b_scalar(&g, m, bm, &mut o2);
            assert!(o1.iter().zip(&o2).all(|(x, y)| x.to_bits() == y.to_bits()));
            let (mut t1, mut t2) = (vec![0.0; n * k], vec![0.0; n * k]);
            gt_a_portable(&g, n, am, &Serial, &mut t1);
            gt_a_scalar(&g, n, am, &mut t2);
            assert!(t1.iter().zip(&t2).all(|(x, y)| x.to_bits() == y.to_bits()));
            // The dispatched kernels: fused ones against the fused twins where the CPU has them.
            let (mut f1, mut f2) = (vec![0.0; m * n], vec![0.0; m * n]);
            a_bt(am, bm, &Serial, &mut f1);
            let (mut h1, mut h2) = (vec![0.0; m * k], vec![0.0; m * k]);
            g_b(&g, m, bm, &Serial, &mut h1);
            let (mut u1, mut u2) = (vec![0.0; n * k], vec![0.0; n * k]);
            gt_a(&g, n, am, &Serial, &mut u1);
            if uses_fma() {
                a_bt_scalar_fma(am, bm, &mut f2);
                g_b_scalar_fma(&g, m, bm, &mut h2);
                gt_a_scalar_fma(&g, n, am, &mut u2);
            } else {
                (f2, h2, u2) = (s1.clone(), o1.clone(), t1.clone());
            }
            assert!(f1.iter().zip(&f2).all(|(x, y)| x.to_bits() == y.to_bits()));
            assert!(h1.iter().zip(&h2).all(|(x, y)| x.to_bits() == y.to_bits()));
            assert!(u1.iter().zip(&u2).all(|(x, y)| x.to_bits() == y.to_bits()));
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
