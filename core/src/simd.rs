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
/// Same per-product arithmetic as [`dot`], so the same bits. Two rows at a time: the tile's
/// four eight-lane sums and its operands then fit the sixteen SSE registers, where all
/// eight sums at once spilled to the stack on every step (a third slower).
#[inline]
pub fn dot_4x2(q: [&[f32]; 4], b: [&[f32]; 2]) -> [[f32; 2]; 4] {
    let [r0, r1] = dot_2x2([q[0], q[1]], b);
    let [r2, r3] = dot_2x2([q[2], q[3]], b);
    [r0, r1, r2, r3]
}

/// Dot products of two rows `q` with two rows `b`, as [`dot_4x2`] (`q[0].len()` long).
#[inline(always)]
fn dot_2x2(q: [&[f32]; 2], b: [&[f32]; 2]) -> [[f32; 2]; 2] {
    let n = q[0].len();
    let body = n - n % LANES;
    let [q0s, q1s, b0s, b1s] = [q[0], q[1], b[0], b[1]].map(|s| s[..body].chunks_exact(LANES));
    let mut acc = [[f32x8::ZERO; 2]; 2];
    for (((q0, q1), b0), b1) in q0s.zip(q1s).zip(b0s).zip(b1s) {
        let (b0, b1) = (load(b0), load(b1));
        let q0 = load(q0);
        acc[0][0] += q0 * b0;
        acc[0][1] += q0 * b1;
        let q1 = load(q1);
        acc[1][0] += q1 * b0;
        acc[1][1] += q1 * b1;
    }
    let mut out = [[0.0; 2]; 2];
    for r in 0..2 {
        for c in 0..2 {
            out[r][c] = tail_dot(&q[r][body..n], &b[c][body..n], reduce(acc[r][c]));
        }
    }
    out
}

/// Dot products of `a` with four rows: `out[c] = a·b[c]`, each with [`dot`]'s arithmetic
/// (the same bits). Four independent streams of loads keep more cache misses in flight when
/// the rows come from scattered places.
#[inline]
pub fn dot_1x4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    dot_1xn(a, b)
}

/// Dot products of `a` with `N` rows, as [`dot_1x4`]: each with [`dot`]'s arithmetic, `a`
/// loaded once for all of them.
#[inline]
pub fn dot_1xn<const N: usize>(a: &[f32], b: [&[f32]; N]) -> [f32; N] {
    let n = b.iter().fold(a.len(), |m, r| m.min(r.len()));
    let body = n - n % LANES;
    let mut acc = [f32x8::ZERO; N];
    let mut i = 0;
    while i < body {
        let av = load(&a[i..]);
        for (s, r) in acc.iter_mut().zip(b) {
            *s += av * load(&r[i..]);
        }
        i += LANES;
    }
    core::array::from_fn(|c| tail_dot(&a[body..n], &b[c][body..n], reduce(acc[c])))
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

/// Longest byte rows [`sq_dist_u8`] and [`dot_u8`] take: 32 768 × 255² stays below 2³¹, so
/// their 32-bit lanes cannot overflow.
pub const MAX_BYTE_COLS: usize = 32_768;

#[inline(always)]
fn load_u8(s: &[u8]) -> wide::u8x16 {
    wide::u8x16::from(<[u8; 16]>::try_from(&s[..16]).unwrap())
}

/// Squared Euclidean distance between rows of bytes (at most [`MAX_BYTE_COLS`]), exact:
/// |a − b| per byte, widened to 16 bits and squared and paired by `pmaddwd`.
#[inline]
pub fn sq_dist_u8(a: &[u8], b: &[u8]) -> u32 {
    use wide::{i16x8, i32x4};
    let n = a.len().min(b.len());
    let body = n - n % 16;
    let mut acc = i32x4::ZERO;
    for i in (0..body).step_by(16) {
        let (va, vb) = (load_u8(&a[i..]), load_u8(&b[i..]));
        let diff = va.saturating_sub(vb) | vb.saturating_sub(va);
        let (lo, hi) = (i16x8::from_u8x16_low(diff), i16x8::from_u8x16_high(diff));
        acc += lo.dot(lo) + hi.dot(hi);
    }
    let s: u32 = acc.to_array().iter().map(|&v| v as u32).sum();
    s + sq_dist_u8_scalar(&a[body..n], &b[body..n])
}

/// [`sq_dist_u8`] from `a` to four rows at once: four independent streams of loads keep
/// more cache misses in flight when the rows come from scattered places.
#[inline]
pub fn sq_dist_u8_x4(a: &[u8], b: [&[u8]; 4]) -> [u32; 4] {
    use wide::{i16x8, i32x4};
    let n = b.iter().fold(a.len(), |m, r| m.min(r.len()));
    let body = n - n % 16;
    let mut acc = [i32x4::ZERO; 4];
    for i in (0..body).step_by(16) {
        let va = load_u8(&a[i..]);
        for (s, r) in acc.iter_mut().zip(b) {
            let vb = load_u8(&r[i..]);
            let diff = va.saturating_sub(vb) | vb.saturating_sub(va);
            let (lo, hi) = (i16x8::from_u8x16_low(diff), i16x8::from_u8x16_high(diff));
            *s += lo.dot(lo) + hi.dot(hi);
        }
    }
    core::array::from_fn(|q| {
        let s: u32 = acc[q].to_array().iter().map(|&v| v as u32).sum();
        s + sq_dist_u8_scalar(&a[body..n], &b[q][body..n])
    })
}

#[inline(always)]
fn load_i16(s: &[i16]) -> wide::i16x8 {
    wide::i16x8::from(<[i16; 8]>::try_from(&s[..8]).unwrap())
}

/// Squared Euclidean distance between rows of 16-bit integers whose length is a multiple
/// of 8, exact when every difference fits in 16 bits and the whole sum in 31 (as
/// `nndescent::quantise` guarantees): differences squared and paired by `pmaddwd`.
#[inline]
pub fn sq_dist_i16(a: &[i16], b: &[i16]) -> u32 {
    let [d] = sq_dist_i16_xn(a, [b]);
    d
}

/// [`sq_dist_i16`] from `a` to two rows, `a` loaded once.
#[inline]
pub fn sq_dist_i16_x2(a: &[i16], b: [&[i16]; 2]) -> [u32; 2] {
    sq_dist_i16_xn(a, b)
}

/// [`sq_dist_i16`] from `a` to four rows, `a` loaded once.
#[inline(always)]
pub fn sq_dist_i16_x4(a: &[i16], b: [&[i16]; 4]) -> [u32; 4] {
    sq_dist_i16_xn(a, b)
}

#[inline(always)]
fn sq_dist_i16_xn<const N: usize>(a: &[i16], b: [&[i16]; N]) -> [u32; N] {
    use wide::i32x4;
    let n = b.iter().fold(a.len(), |m, r| m.min(r.len()));
    debug_assert_eq!(n % 8, 0);
    // Two sums per row: two chains of additions in flight.
    let mut acc = [[i32x4::ZERO; 2]; N];
    let mut i = 0;
    while i + 16 <= n {
        let (a0, a1) = (load_i16(&a[i..]), load_i16(&a[i + 8..]));
        for (s, r) in acc.iter_mut().zip(b) {
            let d0 = a0 - load_i16(&r[i..]);
            let d1 = a1 - load_i16(&r[i + 8..]);
            s[0] += d0.dot(d0);
            s[1] += d1.dot(d1);
        }
        i += 16;
    }
    if i + 8 <= n {
        let a0 = load_i16(&a[i..]);
        for (s, r) in acc.iter_mut().zip(b) {
            let d0 = a0 - load_i16(&r[i..]);
            s[0] += d0.dot(d0);
        }
    }
    core::array::from_fn(|q| {
        let t = (acc[q][0] + acc[q][1]).to_array();
        (t[0] as u32)
            .wrapping_add(t[1] as u32)
            .wrapping_add(t[2] as u32)
            .wrapping_add(t[3] as u32)
    })
}

/// Scalar twin of [`sq_dist_i16`].
pub fn sq_dist_i16_scalar(a: &[i16], b: &[i16]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| ((x as i32 - y as i32) * (x as i32 - y as i32)) as u32)
        .sum()
}

/// Scalar twin of [`sq_dist_u8`] (integers, so any order gives the same result).
pub fn sq_dist_u8_scalar(a: &[u8], b: &[u8]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x.abs_diff(y) as u32).pow(2))
        .sum()
}

/// Dot product of rows of bytes (at most [`MAX_BYTE_COLS`]), exact.
#[inline]
pub fn dot_u8(a: &[u8], b: &[u8]) -> u32 {
    use wide::{i16x8, i32x4};
    let n = a.len().min(b.len());
    let body = n - n % 16;
    let mut acc = i32x4::ZERO;
    for i in (0..body).step_by(16) {
        let (va, vb) = (load_u8(&a[i..]), load_u8(&b[i..]));
        let (al, ah) = (i16x8::from_u8x16_low(va), i16x8::from_u8x16_high(va));
        let (bl, bh) = (i16x8::from_u8x16_low(vb), i16x8::from_u8x16_high(vb));
        acc += al.dot(bl) + ah.dot(bh);
    }
    let s: u32 = acc.to_array().iter().map(|&v| v as u32).sum();
    s + dot_u8_scalar(&a[body..n], &b[body..n])
}

/// Scalar twin of [`dot_u8`].
pub fn dot_u8_scalar(a: &[u8], b: &[u8]) -> u32 {
    a.iter().zip(b).map(|(&x, &y)| x as u32 * y as u32).sum()
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
            let two = dot_1xn(&a, [&b, &a]);
            assert_eq!(
                two[0].to_bits(),
                dot_scalar(&a, &b).to_bits(),
                "1x2, n = {n}"
            );
            assert_eq!(
                two[1].to_bits(),
                dot_scalar(&a, &a).to_bits(),
                "1x2, n = {n}"
            );
            let four = dot_1x4(&a, [&b, &a, &b, &a]);
            for (c, r) in [&b, &a, &b, &a].into_iter().enumerate() {
                assert_eq!(
                    four[c].to_bits(),
                    dot_scalar(&a, r).to_bits(),
                    "1x4, n = {n}"
                );
            }
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

    #[test]
    fn byte_kernels_equal_their_scalar_twins_and_exact_sums() {
        let mut r = Rng::new(4);
        for n in [0, 1, 15, 16, 17, 100, 784, MAX_BYTE_COLS] {
            for extreme in [false, true] {
                // Extreme rows: 0 against 255 everywhere, the largest sums allowed.
                let a: Vec<u8> = (0..n)
                    .map(|_| if extreme { 0 } else { r.below(256) as u8 })
                    .collect();
                let b: Vec<u8> = (0..n)
                    .map(|_| if extreme { 255 } else { r.below(256) as u8 })
                    .collect();
                let exact_sq: u64 = a
                    .iter()
                    .zip(&b)
                    .map(|(&x, &y)| (x as i64 - y as i64).pow(2) as u64)
                    .sum();
                let exact_dot: u64 = a.iter().zip(&b).map(|(&x, &y)| x as u64 * y as u64).sum();
                assert_eq!(sq_dist_u8(&a, &b) as u64, exact_sq, "n = {n}");
                assert_eq!(sq_dist_u8_scalar(&a, &b) as u64, exact_sq, "n = {n}");
                assert_eq!(
                    dot_u8(&b, &b) as u64,
                    b.iter().map(|&v| v as u64 * v as u64).sum::<u64>()
                );
                assert_eq!(dot_u8(&a, &b) as u64, exact_dot, "n = {n}");
                assert_eq!(dot_u8_scalar(&a, &b) as u64, exact_dot, "n = {n}");
            }
        }
    }

    #[test]
    fn i16_distances_equal_their_scalar_twin_and_exact_sums() {
        let mut r = Rng::new(5);
        for n in [0, 8, 16, 24, 64, 128, 1024] {
            // The largest values `nndescent::quantise` writes for this width.
            let limit = ((1u64 << 31) as f64 / n.max(1) as f64).sqrt() / 2.0 - 1.0;
            let limit = limit.floor() as i64;
            for extreme in [false, true] {
                let a: Vec<i16> = (0..n)
                    .map(|_| if extreme { -limit } else { r.below(2 * limit as usize + 1) as i64 - limit } as i16)
                    .collect();
                let b: Vec<i16> = (0..n)
                    .map(|_| if extreme { limit } else { r.below(2 * limit as usize + 1) as i64 - limit } as i16)
                    .collect();
                let exact: u64 = a
                    .iter()
                    .zip(&b)
                    .map(|(&x, &y)| (x as i64 - y as i64).pow(2) as u64)
                    .sum();
                assert!(exact < 1 << 31);
                assert_eq!(sq_dist_i16(&a, &b) as u64, exact, "n = {n}");
                assert_eq!(sq_dist_i16_scalar(&a, &b) as u64, exact, "n = {n}");
                assert_eq!(
                    sq_dist_i16_x2(&a, [&b, &a]).map(u64::from),
                    [exact, 0],
                    "n = {n}"
                );
                assert_eq!(
                    sq_dist_i16_x4(&a, [&b, &a, &b, &a]).map(u64::from),
                    [exact, 0, exact, 0],
                    "n = {n}"
                );
            }
        }
    }
}
