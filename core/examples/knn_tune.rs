//! Tuning aid for the approximate kNN: `cargo run --release -p ember-core --features std
//! --example knn_tune -- FILE.f32 DIM K TREES MAX_CANDIDATES [LEAF]`. Reads raw little-endian
//! f32 rows, times NN-descent, and estimates recall@K on 1000 query points by exact search.
//! PROJ=r and POOL=p in the environment search in an r-dimensional projection with p
//! candidates per point (`neighbours::search`); THREADS=t uses t threads (default: all).
//! The fingerprint printed (FNV-1a of the indices and distance bits) tells whether a change
//! kept the result bit for bit.
use ember_core::MatRef;
use ember_core::knn::Metric;
use ember_core::neighbours::{KnnMethod, search, search_scratch};
use ember_core::nndescent::{NnDescentParams, Projection};
use ember_core::threads::Threads;

#[path = "common/recall.rs"]
mod common;
#[path = "common/fingerprint.rs"]
mod fingerprint;
#[path = "common/raw.rs"]
mod raw;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let x = raw::read_f32(&a[1]);
    let d: usize = a[2].parse().unwrap();
    let k: usize = a[3].parse().unwrap();
    let n = x.len() / d;
    let m = MatRef::dense(&x, n, d).unwrap();
    let p = NnDescentParams {
        trees: a[4].parse().unwrap(),
        max_candidates: a[5].parse().unwrap(),
        leaf_size: a.get(6).map(|v| v.parse().unwrap()).unwrap_or(0),
        max_rounds: a.get(7).map(|v| v.parse().unwrap()).unwrap_or(12),
        projection: match env("PROJ") {
            0 => Projection::Off,
            r => Projection::Dims(r),
        },
        pool: env("POOL"),
        ..Default::default()
    };
    let par = Threads::new(env("THREADS"));
    let (metric, method) = (Metric::SqEuclidean, KnnMethod::Approx);
    let mut sc = vec![0u8; search_scratch(n, d, k, metric, method, &p).bytes()];
    let (mut idx, mut dist) = (vec![0u32; n * k], vec![0.0; n * k]);
    let t = std::time::Instant::now();
    let t0 = std::time::Instant::now();
    let mut obs = |pr: &ember_core::Progress| {
        eprintln!("  round {} at {:.2} s", pr.done, t0.elapsed().as_secs_f64());
        ember_core::Control::Continue
    };
    search(
        m, k, metric, method, &p, &par, &mut obs, &mut sc, &mut idx, &mut dist,
    )
    .unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "n {n} d {d} k {k} trees {} mc {} leaf {}: {secs:.2} s, recall@{k} ≈ {:.4}, fingerprint {:016x}",
        p.trees,
        p.max_candidates,
        p.leaf_size,
        common::recall(m, &idx, k, 1000, &par),
        fingerprint(&idx, &dist)
    );
}

fn fingerprint(idx: &[u32], dist: &[f32]) -> u64 {
    fingerprint::fnv1a(idx.iter().copied().chain(dist.iter().map(|v| v.to_bits())))
}

fn env(name: &str) -> usize {
    std::env::var(name).map_or(0, |v| v.parse().unwrap())
}
