//! Fast, smooth f32 approximations of log₂, 2^x and x^b for the inner loops (UMAP's x^b).
//! Plain f32 arithmetic: deterministic, and the error is measured against libm in the tests.

/// x^b for x > 0 as 2^(b·log₂x), with smooth polynomial pieces (relative error about 1e-6,
/// well inside what SGD needs) instead of libm's exactly rounded `powf`, which dominated the
/// UMAP loop. Deterministic: plain f32 arithmetic.
#[inline(always)]
pub fn pow_positive(x: f32, b: f32) -> f32 {
    exp2_fast(b * log2_fast(x))
}

#[inline(always)]
pub fn log2_fast(x: f32) -> f32 {
    // x = m·2^e with m in [√½, √2); ln m = 2·atanh(t), t = (m − 1)/(m + 1), |t| ≤ 0.172.
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > core::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let ln_m =
        2.0 * t * (1.0 + t2 * (1.0 / 3.0 + t2 * (0.2 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0)))));
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
    // 2^y = 2^n · e^(f·ln 2), n = round(y), |f| ≤ ½: Taylor to degree 7.
    let n = libm::roundf(y);
    let z = (y - n) * core::f32::consts::LN_2;
    let p = 1.0
        + z * (1.0
            + z * (0.5
                + z * (1.0 / 6.0
                    + z * (1.0 / 24.0
                        + z * (1.0 / 120.0 + z * (1.0 / 720.0 + z * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

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
