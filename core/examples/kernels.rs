//! Per-kernel timings of the t-SNE pipeline, for `bench/kernels.sh`:
//! `cargo run --release -p ember-core --features std --example kernels -- SOURCE THREADS`
//! where SOURCE is `FILE.f32:DIM` (raw little-endian f32 rows) or `mixture:N:DIM` (a seeded
//! Gaussian mixture of 10 clusters). Prints one Markdown table row per kernel: the median
//! of several calls (one call for the neighbour search) and what each call processes.
use ember_core::affinity::{self, CsrRef};
use ember_core::fft_repulsion::FftParams;
use ember_core::gradient::{self, OutputKernel, RepulsionMethod};
use ember_core::knn::Metric;
use ember_core::neighbours::{KnnMethod, search, search_scratch};
use ember_core::threads::Threads;
use ember_core::tsne::TsneParams;
use ember_core::{MatRef, Rng, Silent};

#[path = "common/recall.rs"]
mod common;
#[path = "common/raw.rs"]
mod raw;
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let threads: usize = a.get(2).map_or(2, |v| v.parse().unwrap());
    let (x, n, d, name) = load(&a[1]);
    let par = Threads::new(threads);
    let m = MatRef::dense(&x, n, d).unwrap();
    let params = TsneParams::default();
    let k = affinity::neighbours_for_perplexity(n, params.perplexity);
    let row = |kernel: &str, what: String, ms: f64| {
        println!("| {name} | {n} × {d} | {kernel} | {what} | {ms:.1} |");
    };

    // Neighbours: the approximate search t-SNE uses, with its recall on 200 exact queries.
    let nnd = params.nn_descent;
    let method = KnnMethod::Approx;
    let metric = Metric::SqEuclidean;
    let mut sc = vec![0u8; search_scratch(n, d, k, metric, method, &nnd).bytes()];
    let (mut idx, mut dist) = (vec![0u32; n * k], vec![0f32; n * k]);
    let t = Instant::now();
    search(
        m,
        k,
        metric,
        method,
        &nnd,
        &par,
        &mut Silent,
        &mut sc,
        &mut idx,
        &mut dist,
    )
    .unwrap();
    let knn_ms = ms(t);
    drop(sc);
    let recall = common::recall(m, &idx, k, 200, &par);
    row(
        "kNN (approximate)",
        format!("k = {k}, recall@{k} {recall:.3}"),
        knn_ms,
    );

    // Affinities: perplexity calibration, then symmetrisation.
    let t = Instant::now();
    affinity::calibrate_perplexity(&mut dist, k, params.perplexity, &par, None).unwrap();
    row(
        "perplexity calibration",
        format!("{} rows of {k}", n),
        ms(t),
    );
    let bound = affinity::symmetric_nnz_bound(n, k);
    let (mut indptr, mut indices, mut values, mut cursor) = (
        vec![0usize; n + 1],
        vec![0u32; bound],
        vec![0f32; bound],
        vec![0usize; n],
    );
    let t = Instant::now();
    let nnz = affinity::symmetrize(
        &idx,
        &dist,
        k,
        &par,
        &mut indptr,
        &mut indices,
        &mut values,
        &mut cursor,
    )
    .unwrap();
    row("symmetrise P", format!("{nnz} non-zeros"), ms(t));
    drop((idx, dist, cursor));
    let p = CsrRef {
        indptr: &indptr,
        indices: &indices[..nnz],
        values: &values[..nnz],
    };

    // A map with the spread of a converged one: seeded clusters, standard deviation ≈ 25.
    let mut g = Rng::new(7);
    let centres: Vec<[f32; 2]> = (0..10)
        .map(|_| [(g.normal() * 25.0) as f32, (g.normal() * 25.0) as f32])
        .collect();
    let y: Vec<f32> = (0..n)
        .flat_map(|i| {
            let c = centres[i % 10];
            [
                c[0] + (g.normal() * 4.0) as f32,
                c[1] + (g.normal() * 4.0) as f32,
            ]
        })
        .collect();
    let kernel = OutputKernel::new(1.0).unwrap();
    let mut out = vec![0f32; 2 * n];
    let mut partials = vec![0f64; gradient::partials_len(n)];
    let reps = 10;
    let med = median_ms(reps, || {
        gradient::attraction(p, &y, 2, kernel, false, &par, &mut out, &mut partials).unwrap();
    });
    row(
        "attraction",
        format!("{nnz} non-zeros, {} MB of P streamed", nnz * 8 / 1_000_000),
        med,
    );
    for (label, method, reps) in [
        (
            "repulsion, FFT interpolation",
            RepulsionMethod::Fft(FftParams::default()),
            reps,
        ),
        (
            "repulsion, Barnes–Hut θ = 0.5",
            RepulsionMethod::BarnesHut { theta: 0.5 },
            3,
        ),
    ] {
        if matches!(method, RepulsionMethod::BarnesHut { .. }) && n > 100_000 {
            continue;
        }
        let mut sc = vec![0u8; gradient::repulsion_scratch(method, n, 2).bytes()];
        let med = median_ms(reps, || {
            gradient::repulsion(
                method,
                &y,
                n,
                2,
                kernel,
                &par,
                &mut sc,
                &mut out,
                &mut partials,
            )
            .unwrap();
        });
        row(label, "map spread ≈ ±60".into(), med);
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            ms(t)
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[reps / 2]
}

fn load(source: &str) -> (Vec<f32>, usize, usize, String) {
    let parts: Vec<&str> = source.split(':').collect();
    if parts[0] == "mixture" {
        let (n, d): (usize, usize) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
        let mut g = Rng::new(11);
        let centres: Vec<f32> = (0..10 * d).map(|_| (g.normal() * 5.0) as f32).collect();
        let x = (0..n)
            .flat_map(|i| {
                let c = i % 10;
                (0..d)
                    .map(|f| centres[c * d + f] + g.normal() as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        (x, n, d, "mixture".into())
    } else {
        let d: usize = parts[1].parse().unwrap();
        let x = raw::read_f32(parts[0]);
        let n = x.len() / d;
        let name = std::path::Path::new(parts[0])
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        (x, n, d, name)
    }
}
