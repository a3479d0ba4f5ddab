//! Tuning aid for UMAP's SGD: `cargo run --release -p ember-core --features std --example
//! sgd_tune -- FILE.f32 DIM [REPS]`. Builds UMAP's fuzzy graph and spectral start of the raw
//! little-endian f32 rows once, then runs `ne::optimize` with UMAP's default settings REPS
//! times (default 5) from that start and prints the best and median times, the samples
//! drawn and a fingerprint (FNV-1a of the output bits) that tells whether a change kept the
//! same result. THREADS=t uses t threads; EPOCHS=e runs e epochs instead of the default.
use ember_core::ne::{optimize, sgd_scratch};
use ember_core::threads::Threads;
use ember_core::umap::{UmapParams, fit_ab, init_scratch, initialise};
use ember_core::{Control, MatRef, Progress};

#[path = "common/fingerprint.rs"]
mod fingerprint;
#[path = "common/graph.rs"]
mod graph;
#[path = "common/raw.rs"]
mod raw;
fn main() {
    let (x, n, d, reps) = graph::rows_from_args();
    let m = MatRef::dense(&x, n, d).unwrap();
    let par = Threads::new(env("THREADS"));
    let params = UmapParams {
        epochs: env("EPOCHS"),
        ..UmapParams::default()
    };
    let built = graph::Graph::build(m, &params, &par);
    let graph = built.csr();
    let nnz = graph.nnz();
    let mut quiet = |_: &Progress| Control::Continue;
    let dims = params.dims;
    let mut start = vec![0f32; n * dims];
    let mut sc = vec![0u8; init_scratch(n, d, dims).bytes()];
    let init = initialise(
        m,
        graph,
        params.init,
        dims,
        params.seed,
        &par,
        &mut sc,
        &mut start,
    )
    .unwrap();
    let (ca, cb) = fit_ab(params.spread, params.min_dist).unwrap();
    let sgd = params.sgd(n, ca, cb);
    let mut sc = vec![0u8; sgd_scratch(n, nnz, dims).bytes()];
    let mut y = start.clone();
    let mut times = Vec::new();
    let mut samples = 0;
    for _ in 0..reps {
        y.copy_from_slice(&start);
        let t = std::time::Instant::now();
        samples = optimize(graph, &sgd, &par, &mut quiet, &mut sc, &mut y)
            .unwrap()
            .samples;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let print = fingerprint::fnv1a(y.iter().map(|v| v.to_bits()));
    println!(
        "n {n} nnz {nnz} init {init:?} epochs {}: best {:.3} s, median {:.3} s, {samples} samples, fingerprint {print:016x}",
        sgd.epochs,
        times[0],
        times[times.len() / 2],
    );
}

fn env(name: &str) -> usize {
    std::env::var(name).map_or(0, |v| v.parse().unwrap())
}
