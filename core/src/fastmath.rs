//! Fast, smooth f32 approximations of log₂, 2^x and x^b for the inner loops (the scalar
//! UMAP terms' x^b; the KL and loss logarithms). Plain f32 arithmetic: deterministic, and the
//! error is measured against libm in the tests. The eight-lane log₂ does the same operations
//! lane by lane, so it matches the scalar one bit for bit (tested).

use wide::bytemuck::cast;
use wide::{f32x8, i32x8, u32x8};

/// Adding and subtracting 1.5·2²³ rounds an f32 below 2²² to the nearest integer (ties to
/// even): exact, branch-free, and the same in every lane.
const ROUNDER: f32 = 12_582_912.0;

/// x^b for x > 0 as 2^(b·log₂x), with smooth polynomial pieces (relative error below 1e-5,
/// well inside what SGD needs) instead of libm's exactly rounded `powf`, which dominated the
/// UMAP loop. Deterministic: plain f32 arithmetic.
#[inline(always)]
pub fn pow_positive(x: f32, b: f32) -> f32 {
    exp2_fast(b * log2_fast(x))
}

#[inline(always)]
pub fn log2_fast(x: f32) -> f32 {
    // x = m·2^e with m in [√½, √2); ln m = 2·atanh(t), t = (m − 1)/(m + 1), |t| ≤ 0.172;
    // the series stops at t⁵ (truncation below 2·t⁷/7 ≈ 1.3e-6).
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > core::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let ln_m = 2.0 * t * (1.0 + t2 * (1.0 / 3.0 + t2 * 0.2));
    e as f32 + ln_m * core::f32::consts::LOG2_E
}

#[inline(always)]
pub fn exp2_fast(y: f32) -> f32 {
    if y >= 128.0 {
        return f32::INFINITY;
    }
    if y < -126.0 {
        return 0.0;
    }
    // 2^y = 2^n · e^(f·ln 2), n = round(y), |f| ≤ ½: Taylor to degree 6 (relative
    // truncation below (ln 2 / 2)⁷/7! ≈ 1.2e-7).
    let n = (y + ROUNDER) - ROUNDER;
    let z = (y - n) * core::f32::consts::LN_2;
    let p = 1.0
        + z * (1.0
            + z * (0.5
                + z * (1.0 / 6.0 + z * (1.0 / 24.0 + z * (1.0 / 120.0 + z * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Eight lanes of `log2_fast`.
#[inline(always)]
pub fn log2_fast_x8(x: f32x8) -> f32x8 {
    // Bit fields in integer lanes (a reinterpretation, not a conversion).
    let bits: u32x8 = cast(x);
    let e = f32x8::from_i32x8(
        cast::<u32x8, i32x8>((bits >> 23) & u32x8::splat(0xff)) - i32x8::splat(127),
    );
    let m: f32x8 = cast((bits & u32x8::splat(0x007f_ffff)) | u32x8::splat(0x3f80_0000));
    let big = m.simd_gt(f32x8::splat(core::f32::consts::SQRT_2));
    let m = big.select(m * f32x8::splat(0.5), m);
    let e = big.select(e + f32x8::ONE, e);
    let one = f32x8::ONE;
    let t = (m - one) / (m + one);
    let t2 = t * t;
    let c = |v: f32| f32x8::splat(v);
    let ln_m = c(2.0) * t * (one + t2 * (c(1.0 / 3.0) + t2 * c(0.2)));
    e + ln_m * c(core::f32::consts::LOG2_E)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_lane_log2_matches_the_scalar_function_bit_for_bit() {
        let mut r = crate::Rng::new(5);
        let mut xs: Vec<f32> = (0..4096)
            .map(|_| libm::exp2f((r.uniform() * 120.0 - 60.0) as f32))
            .collect();
        let sqrt2 = core::f32::consts::SQRT_2;
        let above = f32::from_bits(sqrt2.to_bits() + 1);
        xs.extend([1e-38, 1.0, 2.0, sqrt2, above, 3e38, 0.5]);
        for chunk_x in xs.chunks_exact(8) {
            let vx = f32x8::from(<[f32; 8]>::try_from(chunk_x).unwrap());
            let lg = log2_fast_x8(vx).to_array();
            for l in 0..8 {
                assert_eq!(
                    lg[l].to_bits(),
                    log2_fast(chunk_x[l]).to_bits(),
                    "log2 {}",
                    chunk_x[l]
                );
            }
        }
    }

    #[test]
    fn fast_pow_agrees_with_libm() {
        let mut worst = 0.0f64;
        let mut x = 1e-30f32;
        while x < 1e30 {
            for b in [0.5f32, 0.895, 1.0, 1.7, 2.5] {
                let (got, want) = (pow_positive(x, b) as f64, libm::pow(x as f64, b as f64));
                if want > 1e-37 && want < 1e37 {
                    worst = worst.max(((got - want) / want).abs());
                }
            }
            x *= 1.37;
        }
        // Measured 6.6e-6: b·log₂x is an f32 of size up to ~250, which limits the exponent.
        eprintln!("fast pow worst relative error {worst:e}");
        assert!(worst < 1e-5, "worst relative error {worst:e}");
    }
}
