//! Fitted models and transform on real MNIST digits: fit on 8000 digits, place the other
//! 2000, and classify each placed digit by its 10 nearest fitted digits in the embedding.
//! Also: a point's result does not depend on its batch or the thread count, and a saved
//! model transforms exactly as the one in memory.

use ember_core::fitted::{FittedModel, TransformOptions};
use ember_core::knn::Metric;
use ember_core::metrics::{knn_accuracy_against, knn_accuracy_against_scratch};
use ember_core::model::Method;
use ember_core::threads::Threads;
use ember_core::tsne::{TsneParams, tsne, tsne_scratch};
use ember_core::umap::{UmapParams, umap, umap_scratch};
use ember_core::{MatRef, Silent};
use ember_tests::mnist;

const TRAIN: usize = 8000;
const TEST: usize = 2000;

fn fit_tsne(x: MatRef, par: &Threads) -> FittedModel {
    let p = TsneParams::default();
    let mut scratch = vec![0u8; tsne_scratch(x.rows(), x.cols(), &p).bytes()];
    let mut y = vec![0.0f32; x.rows() * 2];
    tsne(x, &p, par, &mut Silent, &mut scratch, &mut y).unwrap();
    let method = Method::Tsne {
        dof: p.dof,
        perplexity: p.perplexity,
    };
    FittedModel::from_fit(method, Metric::SqEuclidean, x, None, y, 2, p.seed, par).unwrap()
}

fn fit_umap(x: MatRef, par: &Threads) -> FittedModel {
    let p = UmapParams::default();
    let mut scratch = vec![0u8; umap_scratch(x.rows(), x.cols(), &p).bytes()];
    let mut y = vec![0.0f32; x.rows() * 2];
    let s = umap(x, &p, par, &mut Silent, &mut scratch, &mut y).unwrap();
    let method = Method::Umap {
        a: s.a,
        b: s.b,
        neighbors: p.neighbors,
        negatives: p.negatives,
        learning_rate: p.learning_rate,
        min_dist: p.min_dist,
        spread: p.spread,
    };
    FittedModel::from_fit(method, Metric::SqEuclidean, x, None, y, 2, p.seed, par).unwrap()
}

fn place(model: &FittedModel, q: MatRef, par: &Threads) -> Vec<f32> {
    let mut out = vec![0.0f32; q.rows() * 2];
    model
        .transform(q, &TransformOptions::default(), par, &mut Silent, &mut out)
        .unwrap();
    out
}

fn accuracy(model: &FittedModel, placed: &[f32], train_labels: &[u32], test_labels: &[u32]) -> f64 {
    let n = model.header().n;
    let train = MatRef::dense(model.embedding(), n, 2).unwrap();
    let test = MatRef::dense(placed, test_labels.len(), 2).unwrap();
    let mut s = vec![0u8; knn_accuracy_against_scratch(n, test_labels.len(), 10).bytes()];
    knn_accuracy_against(
        train,
        train_labels,
        test,
        test_labels,
        10,
        &Threads::new(2),
        &mut s,
    )
    .unwrap()
}

fn check(name: &str, model: FittedModel, floor: f64) {
    let (x, labels) = mnist(TRAIN + TEST);
    let q = MatRef::dense(&x[TRAIN * 784..], TEST, 784).unwrap();
    let two = Threads::new(2);
    let placed = place(&model, q, &two);
    let acc = accuracy(&model, &placed, &labels[..TRAIN], &labels[TRAIN..]);
    println!("{name}: 10-NN accuracy of {TEST} placed digits among {TRAIN} fitted: {acc:.4}");
    assert!(acc >= floor, "{name}: accuracy {acc:.4} below {floor}");

    // Batches of 1 (the first 40 points), of 100, and one thread give the same bits.
    for i in 0..40 {
        let one = MatRef::dense(&x[(TRAIN + i) * 784..(TRAIN + i + 1) * 784], 1, 784).unwrap();
        assert_eq!(
            place(&model, one, &two),
            placed[i * 2..i * 2 + 2],
            "{name}: point {i} alone differs"
        );
    }
    let mut batched = Vec::new();
    for b in 0..TEST / 100 {
        let rows = &x[(TRAIN + b * 100) * 784..(TRAIN + (b + 1) * 100) * 784];
        batched.extend(place(&model, MatRef::dense(rows, 100, 784).unwrap(), &two));
    }
    assert!(batched == placed, "{name}: batches of 100 differ");
    assert!(
        place(&model, q, &Threads::new(1)) == placed,
        "{name}: one thread differs"
    );

    // Saved and loaded, the model places the same points.
    let bytes = model.to_bytes().unwrap();
    let loaded = FittedModel::from_bytes(&bytes).unwrap();
    assert_eq!(loaded.header(), model.header());
    assert!(
        place(&loaded, q, &two) == placed,
        "{name}: the loaded model differs"
    );
    let e = FittedModel::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn tsne_transform_places_held_out_digits() {
    let (x, _) = mnist(TRAIN);
    let xm = MatRef::dense(&x, TRAIN, 784).unwrap();
    check("t-SNE", fit_tsne(xm, &Threads::new(2)), 0.94);
}

#[test]
fn umap_transform_places_held_out_digits() {
    let (x, _) = mnist(TRAIN);
    let xm = MatRef::dense(&x, TRAIN, 784).unwrap();
    check("UMAP", fit_umap(xm, &Threads::new(2)), 0.93);
}
