//! SIMD kernels (via `wide`) and their scalar twins.
//!
//! Each SIMD kernel and its twin do the same arithmetic in the same order: eight lane
//! accumulators over blocks of eight, a fixed left-to-right lane reduction, then the tail.
//! Without fused multiply-add the two therefore agree bit for bit; the tests assert that.

use wide::f32x8;

const LANES: usize = 8;

#[inline(always)]
fn load(s: &[f32]) -> f32x8 {
    let a: [f32; LANES] = s[..LANES].try_into().unwrap();
    f32x8::from(a)
}

#[inline(always)]
fn reduce(acc: f32x8) -> f32 {
    let a = acc.to_array();
    let mut s = a[0];
    for v in &a[1..] {
        s += *v;
    }
    s
}

#[inline(always)]
fn tail_dot(a: &[f32], b: &[f32], mut s: f32) -> f32 {
    for (x, y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

/// Dot product, SIMD.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let body = n - n % LANES;
    let mut acc = f32x8::ZERO;
    let mut i = 0;
    while i < body {
        acc += load(&a[i..]) * load(&b[i..]);
        i += LANES;
    }
    tail_dot(&a[body..n], &b[body..n], reduce(acc))
}

/// Dot product, scalar twin of [`dot`].
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let body = n - n % LANES;
    let mut acc = [0.0f32; LANES];
    for c in (0..body).step_by(LANES) {
        for l in 0..LANES {
            acc[l] += a[c + l] * b[c + l];
        }
    }
    let mut s = acc[0];
    for v in &acc[1..] {
        s += *v;
    }
    tail_dot(&a[body..n], &b[body..n], s)
}

/// Dot products of four rows `q` with two rows `b`: `out[r][c] = q[r]·b[c]`.
/// Same per-product arithmetic as [`dot`], with each loaded block reused across the tile.
#[inline]
pub fn dot_4x2(q: [&[f32]; 4], b: [&[f32]; 2]) -> [[f32; 2]; 4] {
    let n = q[0].len();
    let body = n - n % LANES;
    let mut acc = [[f32x8::ZERO; 2]; 4];
    let mut i = 0;
    while i < body {
        let b0 = load(&b[0][i..]);
        let b1 = load(&b[1][i..]);
        for r in 0..4 {
            let qv = load(&q[r][i..]);
            acc[r][0] += qv * b0;
            acc[r][1] += qv * b1;
        }
        i += LANES;
    }
    let mut out = [[0.0; 2]; 4];
    for r in 0..4 {
        for c in 0..2 {
            out[r][c] = tail_dot(&q[r][body..n], &b[c][body..n], reduce(acc[r][c]));
        }
    }
    out
}

/// Dot product with four independent accumulators over blocks of 32: for the scattered,
/// one-off products of the neighbour search, where a single accumulator's add latency
/// would bound the speed. Sums in a different order from [`dot`].
#[inline]
pub fn dot_unrolled(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let wide_body = n - n % (4 * LANES);
    let mut acc = [f32x8::ZERO; 4];
    let mut i = 0;
    while i < wide_body {
        for (u, s) in acc.iter_mut().enumerate() {
            let o = i + u * LANES;
            *s += load(&a[o..]) * load(&b[o..]);
        }
        i += 4 * LANES;
    }
    let body = n - n % LANES;
    while i < body {
        acc[0] += load(&a[i..]) * load(&b[i..]);
        i += LANES;
    }
    let total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    tail_dot(&a[body..], &b[body..], reduce(total))
}

/// Scalar twin of [`dot_unrolled`].
pub fn dot_unrolled_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let wide_body = n - n % (4 * LANES);
    let mut acc = [[0.0f32; LANES]; 4];
    let mut i = 0;
    while i < wide_body {
        for (u, s) in acc.iter_mut().enumerate() {
            for l in 0..LANES {
                s[l] += a[i + u * LANES + l] * b[i + u * LANES + l];
            }
        }
        i += 4 * LANES;
    }
    let body = n - n % LANES;
    while i < body {
        for l in 0..LANES {
            acc[0][l] += a[i + l] * b[i + l];
        }
        i += LANES;
    }
    let total: [f32; LANES] =
        core::array::from_fn(|l| (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]));
    let mut s = total[0];
    for v in &total[1..] {
        s += *v;
    }
    tail_dot(&a[body..], &b[body..], s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    #[test]
    fn simd_dot_equals_scalar_twin_bitwise() {
        let mut r = Rng::new(3);
        for n in [0, 1, 7, 8, 9, 31, 64, 784, 1001] {
            let a: Vec<f32> = (0..n).map(|_| r.normal() as f32 * 100.0).collect();
            let b: Vec<f32> = (0..n).map(|_| r.normal() as f32).collect();
            assert_eq!(
                dot(&a, &b).to_bits(),
                dot_scalar(&a, &b).to_bits(),
                "n = {n}"
            );
            assert_eq!(
                dot_unrolled(&a, &b).to_bits(),
                dot_unrolled_scalar(&a, &b).to_bits(),
                "unrolled, n = {n}"
            );
            let rows: Vec<Vec<f32>> = (0..6)
                .map(|_| (0..n).map(|_| r.normal() as f32).collect())
                .collect();
            let t = dot_4x2(
                [&rows[0], &rows[1], &rows[2], &rows[3]],
                [&rows[4], &rows[5]],
            );
            for i in 0..4 {
                for j in 0..2 {
                    assert_eq!(
                        t[i][j].to_bits(),
                        dot_scalar(&rows[i], &rows[4 + j]).to_bits()
                    );
                }
            }
        }
    }
}
