//! Tuning aid for the spectral initialisation: `cargo run --release -p ember-core --features
//! std --example spectral_tune -- FILE.f32 DIM [REPS]`. Builds UMAP's fuzzy graph of the raw
//! little-endian f32 rows once, then times `spectral_embedding` REPS times (default 5) and
//! prints the best and median times, the outcome, the eigenvalues, the worst residual
//! ‖L v − λ v‖ and the worst departure from orthonormality. THREADS=t uses t threads;
//! SEED=s starts the solver from seed s instead of the default.
use ember_core::MatRef;
use ember_core::spectral::{spectral_embedding, spectral_scratch};
use ember_core::threads::Threads;
use ember_core::umap::UmapParams;

#[path = "common/graph.rs"]
mod graph;
#[path = "common/raw.rs"]
mod raw;
fn main() {
    let (x, n, d, reps) = graph::rows_from_args();
    let m = MatRef::dense(&x, n, d).unwrap();
    let threads = std::env::var("THREADS").map_or(0, |v| v.parse().unwrap());
    let par = Threads::new(threads);
    let params = UmapParams::default();
    let seed = std::env::var("SEED").map_or(params.seed, |v| v.parse().unwrap());
    let built = graph::Graph::build(m, &params, &par);
    let graph = built.csr();
    let nnz = graph.nnz();
    let dims = params.dims;
    let mut sc = vec![0u8; spectral_scratch(n, dims).bytes()];
    let (mut vecs, mut vals) = (vec![0f64; n * dims], vec![0f64; dims]);
    let mut times = Vec::new();
    let mut outcome = None;
    for _ in 0..reps {
        let t = std::time::Instant::now();
        outcome = Some(
            spectral_embedding(graph, dims, seed, &par, &mut sc, &mut vecs, &mut vals).unwrap(),
        );
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    // Residuals against L = I − D^{-1/2} W D^{-1/2}, and orthonormality, in f64.
    let deg: Vec<f64> = (0..n)
        .map(|i| graph.row(i).1.iter().map(|&w| w as f64).sum())
        .collect();
    let mut worst_res = 0.0f64;
    let mut worst_orth = 0.0f64;
    for c in 0..dims {
        let v = &vecs[c * n..(c + 1) * n];
        let mut r2 = 0.0;
        for i in 0..n {
            let (cols, ws) = graph.row(i);
            let s: f64 = cols
                .iter()
                .zip(ws)
                .map(|(&j, &w)| w as f64 * v[j as usize] / deg[j as usize].sqrt())
                .sum();
            let lv = v[i] - s / deg[i].sqrt();
            r2 += (lv - vals[c] * v[i]).powi(2);
        }
        worst_res = worst_res.max(r2.sqrt());
        for e in 0..=c {
            let w = &vecs[e * n..(e + 1) * n];
            let dot: f64 = v.iter().zip(w).map(|(p, q)| p * q).sum();
            let want = if e == c { 1.0 } else { 0.0 };
            worst_orth = worst_orth.max((dot - want).abs());
        }
    }
    println!(
        "n {n} nnz {nnz}: best {:.3} s, median {:.3} s, {:?}, eigenvalues {:?}, residual {:.2e}, orthonormality {:.2e}",
        times[0],
        times[times.len() / 2],
        outcome.unwrap(),
        vals,
        worst_res,
        worst_orth
    );
}
