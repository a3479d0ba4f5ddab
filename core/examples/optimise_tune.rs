//! Tuning aid for t-SNE's optimisation: `cargo run --release -p ember-core --features std
//! --example optimise_tune -- FILE.f32 DIM [REPS]`. Builds P and the PCA start of the raw
//! little-endian f32 rows as `tsne` does (breadth-first order included) and keeps them in
//! `FILE.f32.p` for later runs, then runs `tsne::optimize` REPS times (default 3) from that
//! start and prints each time and a fingerprint (FNV-1a of the output bits). It then times
//! the attraction (packed and full-precision P) and the repulsion on the final map, 50 calls
//! each. THREADS=t uses t threads; OUT=path writes the final map (in P's order, raw f32).
use ember_core::affinity::{self, CsrRef};
use ember_core::gradient::{self, OutputKernel};
use ember_core::locality::{self, Towards};
use ember_core::threads::Threads;
use ember_core::tsne::{TsneParams, optimize, optimize_scratch};
use ember_core::{MatRef, Silent, init, neighbours};
use std::time::Instant;

#[path = "common/fingerprint.rs"]
mod fingerprint;
#[path = "common/raw.rs"]
mod raw;

struct Problem {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
    y: Vec<f32>,
}

fn build(x: &[f32], n: usize, d: usize, params: &TsneParams, par: &Threads) -> Problem {
    let m = MatRef::dense(x, n, d).unwrap();
    let k = affinity::neighbours_for_perplexity(n, params.perplexity);
    let bound = affinity::symmetric_nnz_bound(n, k);
    let (mut indptr, mut indices, mut values) = (vec![0; n + 1], vec![0; bound], vec![0.0; bound]);
    let mut order = vec![0u32; n];
    let nnd = &params.nn_descent;
    let bytes = neighbours::stage_scratch(n, d, k, params.metric, params.knn, nnd).bytes();
    let mut sc = vec![0u8; bytes.max(init::pca_scratch(n, d).bytes())];
    let nnz = {
        let (idx, dist, cursor) = neighbours::stage(
            m,
            k,
            params.metric,
            params.knn,
            nnd,
            params.seed,
            par,
            &mut Silent,
            &mut sc,
        )
        .unwrap();
        affinity::calibrate_perplexity(dist, k, params.perplexity, par, None).unwrap();
        locality::relabel_breadth_first(idx, dist, k, &mut order, &mut indices, &mut values)
            .unwrap();
        affinity::symmetrize(
            idx,
            dist,
            k,
            par,
            &mut indptr,
            &mut indices,
            &mut values,
            cursor,
        )
        .unwrap()
    };
    indices.truncate(nnz);
    values.truncate(nnz);
    let mut y = vec![0f32; n * 2];
    init::pca_init(m, 2, params.seed, par, &mut sc, &mut y).unwrap();
    locality::move_rows(&mut y, 2, &order, Towards::Order, &mut sc).unwrap();
    Problem {
        indptr,
        indices,
        values,
        y,
    }
}

fn save(path: &str, p: &Problem) {
    let mut b = Vec::new();
    b.extend((p.indptr.len() as u64).to_le_bytes());
    b.extend((p.indices.len() as u64).to_le_bytes());
    p.indptr
        .iter()
        .for_each(|&v| b.extend((v as u64).to_le_bytes()));
    p.indices.iter().for_each(|&v| b.extend(v.to_le_bytes()));
    p.values.iter().for_each(|&v| b.extend(v.to_le_bytes()));
    p.y.iter().for_each(|&v| b.extend(v.to_le_bytes()));
    std::fs::write(path, b).unwrap();
}

fn load(path: &str) -> Option<Problem> {
    let b = std::fs::read(path).ok()?;
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let (rows, nnz) = (word(0), word(8));
    let mut at = 16;
    let mut take = |len: usize, size: usize| {
        let s = &b[at..at + len * size];
        at += len * size;
        s
    };
    let indptr = take(rows, 8)
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as usize)
        .collect();
    let u32s = |s: &[u8]| -> Vec<u32> {
        s.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let indices = u32s(take(nnz, 4));
    let values = u32s(take(nnz, 4)).into_iter().map(f32::from_bits).collect();
    let y = u32s(take(2 * (rows - 1), 4))
        .into_iter()
        .map(f32::from_bits)
        .collect();
    Some(Problem {
        indptr,
        indices,
        values,
        y,
    })
}

fn median_ms(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let d: usize = a[2].parse().unwrap();
    let reps: usize = a.get(3).map_or(3, |v| v.parse().unwrap());
    let threads = std::env::var("THREADS").map_or(2, |v| v.parse().unwrap());
    let par = Threads::new(threads);
    let params = TsneParams::default();
    let cache = format!("{}.p", a[1]);
    let prob = load(&cache).unwrap_or_else(|| {
        let x = raw::read_f32(&a[1]);
        let p = build(&x, x.len() / d, d, &params, &par);
        save(&cache, &p);
        p
    });
    let n = prob.indptr.len() - 1;
    let p = CsrRef {
        indptr: &prob.indptr,
        indices: &prob.indices,
        values: &prob.values,
    };
    let mut sc = vec![0u8; optimize_scratch(n, p.nnz(), &params).bytes()];
    let mut y = prob.y.clone();
    for _ in 0..reps {
        y.copy_from_slice(&prob.y);
        let t = Instant::now();
        optimize(p, &params, &par, &mut Silent, &mut sc, &mut y).unwrap();
        let fp = fingerprint::fnv1a(y.iter().map(|v| v.to_bits()));
        println!(
            "optimise: {:.3} s, fingerprint {fp:016x}",
            t.elapsed().as_secs_f64()
        );
    }

    if let Ok(path) = std::env::var("OUT") {
        // The final map in P's (breadth-first) order, raw little-endian f32.
        std::fs::write(
            path,
            y.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .unwrap();
    }
    let packed_bytes = gradient::packed_p_scratch(n, p.nnz()).bytes();
    let mut psc = vec![0u8; packed_bytes];
    let packed = gradient::pack_p(p, &mut psc).unwrap();
    let (mut out, mut partials) = (vec![0f32; 2 * n], vec![0f64; gradient::partials_len(n)]);
    let kernel = OutputKernel::new(1.0).unwrap();
    let ms = median_ms(|| {
        gradient::attraction_packed(&packed, &y, &par, &mut out, &mut partials).unwrap()
    });
    let fp = fingerprint::fnv1a(out.iter().map(|v| v.to_bits()));
    println!(
        "attraction, packed P ({} MB): {ms:.2} ms, fingerprint {fp:016x}",
        packed_bytes >> 20
    );
    let ms = median_ms(|| {
        gradient::attraction(p, &y, 2, kernel, false, &par, &mut out, &mut partials).unwrap();
    });
    println!("attraction, full P: {ms:.2} ms");
    let method = params.repulsion_method(n);
    let mut rsc = vec![0u8; gradient::repulsion_scratch(method, n, 2).bytes()];
    let ms = median_ms(|| {
        gradient::repulsion(
            method,
            &y,
            n,
            2,
            kernel,
            &par,
            &mut rsc,
            &mut out,
            &mut partials,
        )
        .unwrap();
    });
    println!("repulsion: {ms:.2} ms");
}
