//! Exact and approximate kNN on arbitrary small matrices (NaN/Inf, duplicates and zero rows
//! included): never panics; every neighbour index is in range and never the row itself;
//! on finite data the exact distances ascend and approximate search succeeds too, and the
//! projected search's (full, ranked) distances ascend as well.
#![no_main]
use ember_core::knn::Metric;
use ember_core::neighbours::{KnnMethod, search, search_scratch};
use ember_core::nndescent::{NnDescentParams, Projection};
use ember_core::{MatRef, Serial, Silent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let d = 1 + data[0] as usize % 8;
    let metric = if data[1] & 1 == 0 { Metric::SqEuclidean } else { Metric::Cosine };
    let method = if data[1] & 2 == 0 { KnnMethod::Exact } else { KnnMethod::Approx };
    // Values: bytes as small integers (many duplicates and zero rows), or raw f32 bit patterns.
    let values: Vec<f32> = if data[2] & 1 == 0 {
        data[4..].iter().map(|&b| (b % 5) as f32 - 2.0).collect()
    } else {
        data[4..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    };
    let n = (values.len() / d).min(64);
    if n < 2 {
        return;
    }
    let k = 1 + data[3] as usize % (n - 1);
    let x = MatRef::dense(&values[..n * d], n, d).unwrap();
    let finite = values[..n * d].iter().all(|v| v.is_finite());
    // Sometimes the projected search: NN-descent in a subspace of up to d/2 dimensions.
    let r = (data[2] >> 1) as usize % (d / 2 + 1);
    let projection = if r == 0 { Projection::Off } else { Projection::Dims(r) };
    let nnd = NnDescentParams { seed: data[2] as u64, projection, ..Default::default() };
    let projected = method == KnnMethod::Approx && projection.dims(d).is_some();
    let mut scratch = vec![0u8; search_scratch(n, d, k, metric, method, &nnd).bytes()];
    let (mut idx, mut dist) = (vec![0u32; n * k], vec![0.0f32; n * k]);
    let r = search(x, k, metric, method, &nnd, &Serial, &mut Silent, &mut scratch, &mut idx, &mut dist);
    if finite {
        r.expect("finite data must search");
    }
    if r.is_ok() {
        for i in 0..n {
            let row = &idx[i * k..(i + 1) * k];
            assert!(row.iter().all(|&j| (j as usize) < n && j as usize != i), "row {i}: {row:?}");
            if finite && (method == KnnMethod::Exact || projected) {
                let dr = &dist[i * k..(i + 1) * k];
                assert!(dr.windows(2).all(|w| w[0] <= w[1]), "row {i} not ascending: {dr:?}");
            }
        }
    }
});
