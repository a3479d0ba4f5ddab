//! Property tests of kernel invariants (proptest), beside the fuzz targets: random inputs,
//! shrunk to a minimal case on failure.

use ember_core::affinity::{calibrate_perplexity, symmetric_nnz_bound, symmetrize};
use ember_core::contrastive::{Similarity, contrastive_scratch, info_nce};
use ember_core::fft::{FftPlan, plan_len};
use ember_core::knn::{Kernel, Metric, exact_knn};
use ember_core::model::{Header, Method, decode, encode, read_header};
use ember_core::{MatRef, Serial, Silent};
use proptest::prelude::*;

/// n × d values in [-10, 10], with n in `rows` and d in `cols`.
fn matrix(
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (rows, cols).prop_flat_map(|(n, d)| {
        prop::collection::vec(-10.0f32..10.0, n * d).prop_map(move |v| (n, d, v))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every calibrated row is a distribution whose entropy is ln(perplexity).
    #[test]
    fn calibrated_rows_have_the_target_entropy(
        k in 4usize..40,
        seed in prop::collection::vec(0.0f32..50.0, 40 * 6),
        frac in 0.1f32..0.9,
    ) {
        let rows = 6;
        let mut d: Vec<f32> = seed[..rows * k].to_vec();
        let perplexity = 1.0 + frac * (k as f32 - 1.0);
        calibrate_perplexity(&mut d, k, perplexity, &Serial, None).unwrap();
        for row in d.chunks(k) {
            let sum: f64 = row.iter().map(|&p| p as f64).sum();
            prop_assert!((sum - 1.0).abs() < 1e-5, "sum {sum}");
            let h: f64 = row.iter().filter(|&&p| p > 0.0).map(|&p| -(p as f64) * (p as f64).ln()).sum();
            // Rows with ties can reach ln(perplexity) only up to the bisection's step.
            prop_assert!((h - (perplexity as f64).ln()).abs() < 1e-3, "entropy {h} for {perplexity}");
        }
    }

    /// The symmetrised P is symmetric, sums to 1, and has no self-loops.
    #[test]
    fn symmetrised_p_is_a_symmetric_distribution((n, d, x) in matrix(6..40, 1..5), k in 1usize..5) {
        let k = k.min(n - 1);
        let xm = MatRef::dense(&x, n, d).unwrap();
        let (mut idx, mut p) = (vec![0u32; n * k], vec![0.0f32; n * k]);
        let mut norms = vec![0.0f32; n];
        exact_knn(xm, k, Metric::SqEuclidean, Kernel::Simd, &Serial, &mut Silent, &mut norms, &mut idx, &mut p).unwrap();
        calibrate_perplexity(&mut p, k, (k as f32).clamp(1.0, 3.0) * 0.9 + 0.05, &Serial, None).unwrap();
        let bound = symmetric_nnz_bound(n, k);
        let (mut indptr, mut ind, mut val, mut cur) = (vec![0usize; n + 1], vec![0u32; bound], vec![0.0f32; bound], vec![0usize; n]);
        let nnz = symmetrize(&idx, &p, k, &Serial, &mut indptr, &mut ind, &mut val, &mut cur).unwrap();
        let total: f64 = val[..nnz].iter().map(|&v| v as f64).sum();
        prop_assert!((total - 1.0).abs() < 1e-5);
        let get = |i: usize, j: usize| (indptr[i]..indptr[i + 1]).find(|&e| ind[e] as usize == j).map(|e| val[e]);
        for i in 0..n {
            for e in indptr[i]..indptr[i + 1] {
                let j = ind[e] as usize;
                prop_assert!(j != i && j < n);
                prop_assert_eq!(get(j, i), Some(val[e]));
            }
        }
    }

    /// The SIMD and scalar kNN kernels find neighbours at the same distances.
    #[test]
    fn simd_and_scalar_knn_agree((n, d, x) in matrix(3..60, 1..20), k in 1usize..8) {
        let k = k.min(n - 1);
        let xm = MatRef::dense(&x, n, d).unwrap();
        let run = |kernel| {
            let (mut idx, mut dist, mut norms) = (vec![0u32; n * k], vec![0.0f32; n * k], vec![0.0f32; n]);
            exact_knn(xm, k, Metric::SqEuclidean, kernel, &Serial, &mut Silent, &mut norms, &mut idx, &mut dist).unwrap();
            (idx, dist)
        };
        let ((ia, da), (_, db)) = (run(Kernel::Simd), run(Kernel::Scalar));
        for i in 0..n {
            for q in 0..k {
                let j = ia[i * k + q] as usize;
                prop_assert!(j != i && j < n);
                let (a, b) = (da[i * k + q], db[i * k + q]);
                prop_assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "row {i}: {a} vs {b}");
            }
        }
    }

    /// InfoNCE with cosine similarity: each row's gradient is orthogonal to the row (the loss
    /// depends on directions only), and the loss is at least 0.
    #[test]
    fn cosine_infonce_gradients_are_orthogonal_to_their_rows(
        (n, d, z) in matrix(1..12, 2..10).prop_map(|(n, d, v)| (2 * n, d, [v.clone(), v].concat())),
        tau in 0.05f32..2.0,
    ) {
        prop_assume!((0..n).all(|r| z[r * d..(r + 1) * d].iter().any(|&v| v.abs() > 1e-3)));
        let zm = MatRef::dense(&z[..n * d], n, d).unwrap();
        let mut scratch = vec![0u8; contrastive_scratch(n, n, d).bytes()];
        let mut g = vec![0.0f32; n * d];
        let loss = info_nce(zm, Similarity::Cosine { tau }, &Serial, &mut scratch, &mut g).unwrap();
        prop_assert!(loss >= -1e-6);
        for r in 0..n {
            let row = &z[r * d..(r + 1) * d];
            let gr = &g[r * d..(r + 1) * d];
            let dot: f64 = row.iter().zip(gr).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            let scale: f64 = row.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt()
                * gr.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            // g = (I − ẑẑᵀ) ∂L/∂ẑ / ‖z‖ in f32: what is left along z is rounding of the
            // unprojected ∂L/∂ẑ, whose size is at most about 2/τ, hence the absolute term.
            let floor = 8.0 * f32::EPSILON as f64 / tau as f64;
            prop_assert!(dot.abs() <= 1e-4 * scale + floor, "row {r}: z·g = {dot}");
        }
    }

    /// The FFT and its inverse give back the input.
    #[test]
    fn fft_round_trip(bits in 1u32..10, v in prop::collection::vec(-1e3f32..1e3, 1024)) {
        let m = 1usize << bits;
        let (mut twr, mut twi, mut rev) = (vec![0.0f32; plan_len(m)], vec![0.0f32; plan_len(m)], vec![0u32; plan_len(m)]);
        let plan = FftPlan::new(m, &mut twr, &mut twi, &mut rev).unwrap();
        let mut re = v[..m].to_vec();
        let mut im = vec![0.0f32; m];
        plan.run(&mut re, &mut im, false);
        plan.run(&mut re, &mut im, true);
        for (a, b) in re.iter().zip(&v[..m]) {
            prop_assert!((a / m as f32 - b).abs() <= 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    /// A model file round-trips exactly, and any single changed byte is refused.
    #[test]
    fn model_files_round_trip_and_detect_damage(
        (n, d, x) in matrix(1..20, 1..6),
        dims in 1usize..4,
        seed in any::<u64>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let h = Header {
            method: Method::Tsne { dof: 1.0, perplexity: 5.0 },
            metric: Metric::SqEuclidean,
            n,
            input_dims: d,
            ref_dims: d,
            dims,
            seed,
        };
        let emb: Vec<f32> = (0..n * dims).map(|i| i as f32 * 0.25).collect();
        let mut bytes = vec![0u8; h.encoded_len().unwrap()];
        encode(&h, &[], &x, &emb, &mut bytes).unwrap();
        let back = read_header(&bytes).unwrap();
        prop_assert_eq!(back, h);
        let (mut r2, mut e2) = (vec![0.0f32; n * d], vec![0.0f32; n * dims]);
        decode(&bytes, &back, &mut [], &mut r2, &mut e2).unwrap();
        prop_assert_eq!(&r2, &x);
        prop_assert_eq!(&e2, &emb);
        let at = flip.index(bytes.len());
        bytes[at] ^= 1 << bit;
        prop_assert!(read_header(&bytes).is_err(), "changed byte {at} accepted");
    }
}
