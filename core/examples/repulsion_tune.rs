//! Tuning aid for the FFT repulsion: `cargo run --release -p ember-core --features std
//! --example repulsion_tune -- EMBEDDING.npy [REPS]`. Reads an n × 2 (or n × 1) f32 `.npy`
//! embedding (as `ember tsne -o x.npy` writes), runs `repulsion_fft` with the default grid
//! REPS times (default 20) and prints the best and median times, Z, the grid's error
//! against exact repulsion on 2 000 sampled points, and a fingerprint (FNV-1a of the output
//! bits). THREADS=t uses t threads.
use ember_core::Rng;
use ember_core::fft_repulsion::{FftParams, fft_scratch, repulsion_fft};
use ember_core::gradient::{OutputKernel, partials_len};
use ember_core::threads::Threads;
use std::time::Instant;

#[path = "common/fingerprint.rs"]
mod fingerprint;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&a[1]).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"), "not a .npy file");
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let text = String::from_utf8_lossy(&bytes[10..10 + header]).to_string();
    assert!(text.contains("'<f4'"), "not f32: {text}");
    let y: Vec<f32> = bytes[10 + header..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let dims = if text.contains(", 1)") { 1 } else { 2 };
    let n = y.len() / dims;
    let reps: usize = a.get(2).map_or(20, |v| v.parse().unwrap());
    let threads = std::env::var("THREADS").map_or(2, |v| v.parse().unwrap());
    let par = Threads::new(threads);
    let params = FftParams::default();
    let kernel = OutputKernel::new(1.0).unwrap();
    let mut sc = vec![0u8; fft_scratch(n, dims, &params).bytes()];
    let (mut rep, mut part) = (vec![0f32; n * dims], vec![0f64; partials_len(n)]);
    let mut times = Vec::new();
    let mut z = 0.0;
    for _ in 0..reps {
        let t = Instant::now();
        z = repulsion_fft(
            &y, n, dims, kernel, &params, &par, &mut sc, &mut rep, &mut part,
        )
        .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    // Exact forces Σ_j K²_ij (y_i − y_j) at a sample of points, in f64.
    let mut r = Rng::new(1);
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for _ in 0..2000 {
        let i = (r.uniform() * n as f64) as usize % n;
        let mut f = [0.0f64; 2];
        for j in 0..n {
            let d: [f64; 2] = core::array::from_fn(|a| {
                if a < dims {
                    (y[i * dims + a] - y[j * dims + a]) as f64
                } else {
                    0.0
                }
            });
            let k = 1.0 / (1.0 + d.iter().map(|v| v * v).sum::<f64>());
            for a in 0..dims {
                f[a] += k * k * d[a];
            }
        }
        for a in 0..dims {
            err += (rep[i * dims + a] as f64 - f[a]).powi(2);
            norm += f[a] * f[a];
        }
    }
    let fingerprint = fingerprint::fnv1a(rep.iter().map(|v| v.to_bits()));
    println!(
        "n {n} dims {dims} threads {threads}: best {:.2} ms, median {:.2} ms; Z {z:.6e}; \
         force error {:.3e} (relative, 2 000 points); fingerprint {fingerprint:016x}",
        times[0],
        times[reps / 2],
        (err / norm).sqrt()
    );
}
