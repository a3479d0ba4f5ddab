//! Perplexity calibration over arbitrary distances: never panics; on success every row is a
//! probability distribution; on failure the error names the bad input.
#![no_main]
use ember_core::affinity::calibrate_perplexity;
use ember_core::Serial;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let k = 1 + data[0] as usize % 40;
    let perplexity = 1.0 + data[1] as f32 / 4.0;
    let mut d: Vec<f32> = data[2..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    d.truncate(d.len() / k * k);
    let bad = d.iter().any(|v| !v.is_finite() || *v < 0.0);
    match calibrate_perplexity(&mut d, k, perplexity, &Serial, None) {
        Ok(()) => {
            assert!(!bad);
            for row in d.chunks(k) {
                let s: f64 = row.iter().map(|&v| v as f64).sum();
                assert!(row.iter().all(|v| v.is_finite() && *v >= 0.0));
                assert!((s - 1.0).abs() < 1e-4, "row sums to {s}");
            }
        }
        Err(_) => assert!(bad),
    }
});
