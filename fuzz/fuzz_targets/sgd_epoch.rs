//! UMAP / NEG / NCE / InfoNC-t-SNE SGD epochs on arbitrary small graphs and embeddings:
//! never panics; a malformed graph (indices out of range, a bad indptr) is an error; on
//! success the embedding stays finite.
#![no_main]
use ember_core::affinity::CsrRef;
use ember_core::ne::{Loss, SgdParams, optimize, sgd_scratch};
use ember_core::{Serial, Silent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let n = 3 + data[0] as usize % 40;
    let dims = 1 + data[1] as usize % 4;
    let loss = match data[2] % 4 {
        0 => Loss::Neg { zbar: [1.0, 100.0 * n as f64, 1e12][data[3] as usize % 3] },
        1 => Loss::Nce { z_init: 100.0 * n as f64 },
        2 => Loss::InfoNce { iota: [1.0, 1.7, 4.0][data[3] as usize % 3] },
        _ => Loss::Umap { a: 1.577, b: 0.895 },
    };
    let malformed = data[4] % 8 == 0;
    let body = &data[12..];
    let mut indptr = vec![0usize];
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    for i in 0..n {
        for t in 0..(data[5] as usize + i) % 4 {
            let b = *body.get(i * 4 + t).unwrap_or(&0) as usize;
            let j = if malformed { b } else { (i + 1 + b % (n - 1)) % n };
            indices.push(j as u32);
            values.push([1.0f32, 0.5, 1e-6, 0.0][(b + t) % 4]);
        }
        indptr.push(indices.len());
    }
    if malformed && data[6] & 1 == 1 {
        indptr[n / 2] = indices.len() + 3; // not monotone, past the end
    }
    let y0: Vec<f32> = (0..n * dims)
        .map(|i| (*body.get(100 + i).unwrap_or(&(i as u8)) as f32 - 128.0) / 16.0)
        .collect();
    let params = SgdParams {
        loss,
        dims,
        epochs: 1 + data[7] as usize % 3,
        early_epochs: 0,
        early_loss: loss,
        negatives: 1 + data[8] as usize % (n - 1).min(5),
        learning_rate: [1.0f32, 0.1, 10.0][data[9] as usize % 3],
        seed: data[10] as u64,
        loss_every: 1,
        repulsion_weight: 1.0 + (data[11] & 1) as f32,
    };
    let graph = CsrRef { indptr: &indptr, indices: &indices, values: &values };
    let mut y = y0.clone();
    let mut scratch = vec![0u8; sgd_scratch(n, indices.len(), dims).bytes()];
    match optimize(graph, &params, &Serial, &mut Silent, &mut scratch, &mut y) {
        Ok(_) => {
            assert!(!malformed || indices.iter().all(|&j| (j as usize) < n), "a malformed graph was accepted");
            assert!(y.iter().all(|v| v.is_finite()), "embedding not finite");
        }
        Err(e) => {
            assert!(malformed, "a valid graph was refused: {e}");
        }
    }
});
