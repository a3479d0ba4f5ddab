//! The t-SNE gradient with exact, Barnes–Hut and FFT repulsion on arbitrary small
//! embeddings and affinities: never panics; a gradient of the right length; finite for finite
//! moderate input; Barnes–Hut at θ = 0 equals the exact sums (within 1e-3, norm).
#![no_main]
use ember_core::affinity::CsrRef;
use ember_core::fft_repulsion::FftParams;
use ember_core::gradient::{
    GradientScratch, OutputKernel, RepulsionMethod, kl_gradient, partials_len, repulsion_scratch,
};
use ember_core::Serial;
use libfuzzer_sys::fuzz_target;

fn gradient(p: CsrRef, y: &[f32], dims: usize, method: RepulsionMethod, dof: f32) -> Option<Vec<f32>> {
    let n = p.rows();
    let kernel = OutputKernel::new(dof).ok()?;
    let mut attr = vec![0.0f32; n * dims];
    let mut rep = vec![0.0f32; n * dims];
    let mut partials = vec![0.0f64; partials_len(n)];
    let mut rs = vec![0u8; repulsion_scratch(method, n, dims).bytes()];
    let s = GradientScratch { attr: &mut attr, rep: &mut rep, partials: &mut partials, repulsion: &mut rs };
    let mut g = vec![0.0f32; n * dims];
    kl_gradient(p, y, dims, kernel, 1.0, method, &Serial, s, &mut g).ok()?;
    Some(g)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let dims = 1 + data[0] as usize % 3;
    let n = 2 + data[1] as usize % 40;
    let dof = [1.0f32, 0.5, 3.0][data[2] as usize % 3];
    let raw = data[3] & 1 == 1;
    let body = &data[8..];
    let y: Vec<f32> = (0..n * dims)
        .map(|i| {
            if raw && body.len() >= 4 * (i + 1) {
                f32::from_le_bytes(body[4 * i..4 * i + 4].try_into().unwrap())
            } else {
                let b = *body.get(i).unwrap_or(&(i as u8));
                (b as f32 - 128.0) / 8.0
            }
        })
        .collect();
    // A symmetric-looking sparse P: each row links to a few others, weights from the bytes.
    let mut indptr = vec![0usize];
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    for i in 0..n {
        for t in 0..1 + (data[4] as usize + i) % 3 {
            let j = (i + 1 + (data[5] as usize + t * 7) % (n - 1)) % n;
            indices.push(j as u32);
            values.push(1.0 / (n as f32 * 3.0) * (1 + (data[6] as usize + t) % 4) as f32);
        }
        indptr.push(indices.len());
    }
    let p = CsrRef { indptr: &indptr, indices: &indices, values: &values };
    let moderate = y.iter().all(|v| v.is_finite() && v.abs() <= 100.0);
    let exact = gradient(p, &y, dims, RepulsionMethod::Exact, dof);
    if moderate {
        let g = exact.as_ref().expect("exact gradient on moderate input");
        assert_eq!(g.len(), n * dims);
        assert!(g.iter().all(|v| v.is_finite()), "exact gradient not finite");
    }
    if dims >= 2 {
        let bh = gradient(p, &y, dims, RepulsionMethod::BarnesHut { theta: 0.0 }, dof);
        if let (true, Some(e), Some(b)) = (moderate, &exact, &bh) {
            let num: f64 = e.iter().zip(b).map(|(a, c)| ((a - c) as f64).powi(2)).sum();
            let den: f64 = e.iter().map(|a| (*a as f64).powi(2)).sum();
            assert!(num <= 1e-6 * den + 1e-12, "BH(θ=0) differs from exact: {num} vs {den}");
        }
        let _ = gradient(p, &y, dims, RepulsionMethod::BarnesHut { theta: 0.5 }, dof);
    }
    if dims <= 2 {
        let fft = FftParams { max_fft_2d: 64, max_fft_1d: 1 << 10, ..Default::default() };
        let f = gradient(p, &y, dims, RepulsionMethod::Fft(fft), dof);
        if moderate {
            let g = f.expect("FFT gradient on moderate input");
            assert!(g.iter().all(|v| v.is_finite()), "FFT gradient not finite");
        }
    }
});
