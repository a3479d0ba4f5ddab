//! The contrastive kernels against the float64 reference (tests/reference/
//! contrastive_reference.py, fixtures in tests/fixtures/contrastive), against finite
//! differences, and the identities of the framework.

use ember_core::affinity::CsrRef;
use ember_core::contrastive::{self, Normalisation, Similarity, Targets};
use ember_core::threads::Threads;
use ember_core::{MatRef, Serial};
use ember_tests::root;
use std::collections::HashMap;

/// A fixture: parameters and named row-major arrays.
struct Fixture {
    params: HashMap<String, f64>,
    arrays: HashMap<String, (usize, usize, Vec<f64>)>,
}

fn fixture(name: &str) -> Fixture {
    let path = root().join(format!("tests/fixtures/contrastive/{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut params = HashMap::new();
    let mut arrays = HashMap::new();
    let mut tokens = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .peekable();
    while let Some(t) = tokens.next() {
        match t {
            "param" => {
                let k = tokens.next().unwrap().to_string();
                params.insert(k, tokens.next().unwrap().parse().unwrap());
            }
            "array" => {
                let k = tokens.next().unwrap().to_string();
                let r: usize = tokens.next().unwrap().parse().unwrap();
                let c: usize = tokens.next().unwrap().parse().unwrap();
                let v = (0..r * c)
                    .map(|_| tokens.next().unwrap().parse().unwrap())
                    .collect();
                arrays.insert(k, (r, c, v));
            }
            other => panic!("{name}: unexpected token {other}"),
        }
    }
    Fixture { params, arrays }
}

impl Fixture {
    fn f32s(&self, k: &str) -> (usize, usize, Vec<f32>) {
        let (r, c, v) = &self.arrays[k];
        (*r, *c, v.iter().map(|&x| x as f32).collect())
    }
    fn f64s(&self, k: &str) -> &[f64] {
        &self.arrays[k].2
    }
    fn loss(&self) -> f64 {
        self.arrays["loss"].2[0]
    }
    fn p(&self, k: &str) -> f32 {
        self.params[k] as f32
    }
}

/// Worst relative error over rows: ‖got − want‖ / ‖want‖ per row.
fn row_error(got: &[f32], want: &[f64], cols: usize) -> f64 {
    got.chunks(cols)
        .zip(want.chunks(cols))
        .map(|(g, w)| {
            let d: f64 = g.iter().zip(w).map(|(a, b)| (*a as f64 - b).powi(2)).sum();
            let n: f64 = w.iter().map(|b| b * b).sum();
            (d / n.max(1e-300)).sqrt()
        })
        .fold(0.0, f64::max)
}

fn check(name: &str, loss: f64, f: &Fixture, grads: &[(&[f32], &str, usize)]) {
    let rel = ((loss - f.loss()) / f.loss()).abs();
    eprintln!(
        "{name}: loss {loss:.8} reference {:.8} (relative {rel:.1e})",
        f.loss()
    );
    assert!(rel <= 1e-5, "{name}: loss {loss} vs {}", f.loss());
    for (g, key, cols) in grads {
        let e = row_error(g, f.f64s(key), *cols);
        eprintln!("{name}: {key} worst row relative error {e:.1e}");
        assert!(e <= 1e-4, "{name}: {key} relative error {e:e}");
    }
}

/// Dense p (m × n) as CSR.
fn csr(p: &[f64], m: usize, n: usize) -> (Vec<usize>, Vec<u32>, Vec<f32>) {
    let (mut indptr, mut idx, mut val) = (vec![0], vec![], vec![]);
    for i in 0..m {
        for j in 0..n {
            if p[i * n + j] != 0.0 {
                idx.push(j as u32);
                val.push(p[i * n + j] as f32);
            }
        }
        indptr.push(idx.len());
    }
    (indptr, idx, val)
}

fn scratch(m: usize, n: usize, k: usize) -> Vec<u8> {
    vec![0u8; contrastive::contrastive_scratch(m, n, k).bytes()]
}

#[test]
fn infonce_matches_the_float64_reference() {
    for (name, sim) in [
        ("infonce_cosine", Similarity::Cosine { tau: 0.1 }),
        (
            "infonce_cosine_cold_wide_norms",
            Similarity::Cosine { tau: 0.01 },
        ),
        ("infonce_cauchy", Similarity::StudentT { dof: 1.0 }),
    ] {
        let f = fixture(name);
        let (m, k, z) = f.f32s("z");
        let mut g = vec![0.0f32; m * k];
        let loss = contrastive::info_nce(
            MatRef::dense(&z, m, k).unwrap(),
            sim,
            &Serial,
            &mut scratch(m, m, k),
            &mut g,
        )
        .unwrap();
        check(name, loss, &f, &[(&g, "grad", k)]);
    }
}

#[test]
fn clip_and_supcon_match_the_float64_reference() {
    let f = fixture("clip");
    let (m, k, a) = f.f32s("a");
    let (_, _, b) = f.f32s("b");
    let (mut ga, mut gb) = (vec![0.0f32; m * k], vec![0.0f32; m * k]);
    let loss = contrastive::clip_loss(
        MatRef::dense(&a, m, k).unwrap(),
        MatRef::dense(&b, m, k).unwrap(),
        Similarity::Cosine { tau: f.p("tau") },
        &Serial,
        &mut scratch(m, m, k),
        &mut ga,
        &mut gb,
    )
    .unwrap();
    check("clip", loss, &f, &[(&ga, "grad_a", k), (&gb, "grad_b", k)]);

    let f = fixture("supcon");
    let (m, k, z) = f.f32s("z");
    let labels: Vec<u32> = f.f64s("labels").iter().map(|&l| l as u32).collect();
    let mut g = vec![0.0f32; m * k];
    let loss = contrastive::supcon(
        MatRef::dense(&z, m, k).unwrap(),
        &labels,
        Similarity::Cosine { tau: f.p("tau") },
        &Serial,
        &mut scratch(m, m, k),
        &mut g,
    )
    .unwrap();
    check("supcon", loss, &f, &[(&g, "grad", k)]);
}

#[test]
fn icon_matches_the_float64_reference() {
    for (name, sim, norm) in [
        (
            "icon_perplexity_studentt",
            Similarity::StudentT { dof: 1.0 },
            Normalisation::Row,
        ),
        (
            "icon_knn_gaussian_joint",
            Similarity::Gaussian { gamma: 0.5 },
            Normalisation::Joint,
        ),
    ] {
        let f = fixture(name);
        let (m, k, y) = f.f32s("z");
        let (indptr, idx, val) = csr(f.f64s("p"), m, m);
        let p = CsrRef {
            indptr: &indptr,
            indices: &idx,
            values: &val,
        };
        let alpha = f.params.get("alpha").copied().unwrap_or(0.0) as f32;
        let mut g = vec![0.0f32; m * k];
        let loss = contrastive::icon_loss(
            MatRef::dense(&y, m, k).unwrap(),
            Targets::Sparse(p),
            sim,
            norm,
            alpha,
            &Serial,
            &mut scratch(m, m, k),
            &mut g,
        )
        .unwrap();
        check(name, loss, &f, &[(&g, "grad", k)]);
    }
    let f = fixture("icon_pairs_cosine_debiased");
    let (m, k, z) = f.f32s("z");
    let mut g = vec![0.0f32; m * k];
    let loss = contrastive::icon_loss(
        MatRef::dense(&z, m, k).unwrap(),
        Targets::Pairs,
        Similarity::Cosine { tau: f.p("tau") },
        Normalisation::Row,
        f.p("alpha"),
        &Serial,
        &mut scratch(m, m, k),
        &mut g,
    )
    .unwrap();
    check("icon_pairs_cosine_debiased", loss, &f, &[(&g, "grad", k)]);
}

#[test]
fn knn_neighbourhood_builder_matches_the_reference_p() {
    let f = fixture("icon_knn_gaussian_joint");
    let (m, d, x) = f.f32s("x");
    let kind = contrastive::Neighbourhood::Knn(3);
    let bound = contrastive::neighbourhood_nnz_bound(m, kind);
    let (mut indptr, mut idx, mut val) = (vec![0; m + 1], vec![0u32; bound], vec![0.0f32; bound]);
    let mut s = vec![0u8; contrastive::neighbourhood_scratch(m, kind).bytes()];
    contrastive::neighbourhood(
        MatRef::dense(&x, m, d).unwrap(),
        kind,
        Normalisation::Joint,
        &Serial,
        &mut s,
        &mut indptr,
        &mut idx,
        &mut val,
    )
    .unwrap();
    let want = f.f64s("p");
    for i in 0..m {
        let mut dense = vec![0.0f64; m];
        for e in indptr[i]..indptr[i + 1] {
            dense[idx[e] as usize] = val[e] as f64;
        }
        for j in 0..m {
            assert!((dense[j] - want[i * m + j]).abs() < 1e-7, "p[{i}][{j}]");
        }
    }
}

/// 200 MNIST digits and a random 2-D embedding of them.
fn digits_and_embedding(m: usize) -> (Vec<f32>, Vec<f32>) {
    let (x, _) = ember_tests::mnist(m);
    let mut r = ember_core::Rng::new(5);
    let y = (0..m * 2).map(|_| (r.normal() * 3.0) as f32).collect();
    (x, y)
}

#[test]
fn icon_with_perplexity_p_and_student_t_q_is_the_tsne_kl() {
    let m = 200;
    let (x, y) = digits_and_embedding(m);
    let xm = MatRef::dense(&x, m, 784).unwrap();
    let kind = contrastive::Neighbourhood::Perplexity(10.0);
    let bound = contrastive::neighbourhood_nnz_bound(m, kind);
    let (mut indptr, mut idx, mut val) = (vec![0; m + 1], vec![0u32; bound], vec![0.0f32; bound]);
    let mut s = vec![0u8; contrastive::neighbourhood_scratch(m, kind).bytes()];
    let nnz = contrastive::neighbourhood(
        xm,
        kind,
        Normalisation::Joint,
        &Serial,
        &mut s,
        &mut indptr,
        &mut idx,
        &mut val,
    )
    .unwrap();
    let p = CsrRef {
        indptr: &indptr,
        indices: &idx[..nnz],
        values: &val[..nnz],
    };
    let mut g = vec![0.0f32; m * 2];
    let icon = contrastive::icon_loss(
        MatRef::dense(&y, m, 2).unwrap(),
        Targets::Sparse(p),
        Similarity::StudentT { dof: 1.0 },
        Normalisation::Joint,
        0.0,
        &Serial,
        &mut scratch(m, m, 2),
        &mut g,
    )
    .unwrap();
    let kl = ember_core::gradient::kl_divergence_exact(
        p,
        &y,
        2,
        ember_core::gradient::OutputKernel::new(1.0).unwrap(),
    );
    eprintln!("I-Con {icon:.9} t-SNE KL {kl:.9}");
    assert!(
        ((icon - kl) / kl).abs() < 1e-5,
        "I-Con {icon} vs t-SNE {kl}"
    );
    // And the gradients agree with t-SNE's 4 Σ_j (p_ij − q_ij) w_ij (y_i − y_j), in f64.
    let w = |i: usize, j: usize| {
        let d2 = (y[2 * i] as f64 - y[2 * j] as f64).powi(2)
            + (y[2 * i + 1] as f64 - y[2 * j + 1] as f64).powi(2);
        1.0 / (1.0 + d2)
    };
    let z: f64 = (0..m)
        .flat_map(|i| (0..m).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| w(i, j))
        .sum();
    let mut dense = vec![0.0f64; m * m];
    for i in 0..m {
        for e in indptr[i]..indptr[i + 1] {
            dense[i * m + idx[e] as usize] = val[e] as f64;
        }
    }
    let mut worst = 0.0f64;
    for i in 0..m {
        for c in 0..2 {
            let mut t = 0.0;
            for j in 0..m {
                if j != i {
                    let wij = w(i, j);
                    t += 4.0
                        * (dense[i * m + j] - wij / z)
                        * wij
                        * (y[2 * i + c] - y[2 * j + c]) as f64;
                }
            }
            worst = worst.max((g[2 * i + c] as f64 - t).abs() / (1e-3 + t.abs()));
        }
    }
    eprintln!("I-Con gradient vs t-SNE gradient: worst relative error {worst:.1e}");
    assert!(worst < 1e-3, "{worst}");
}

#[test]
fn infonce_against_one_hot_classes_is_softmax_cross_entropy() {
    // A: B feature vectors with c entries; classes: the c one-hot vectors. With cosine/τ the
    // logits of row i are a_i[k]/(‖a_i‖τ), so the loss is softmax cross-entropy of those
    // logits against the labels, and the most similar class is the largest entry.
    let (b, c) = (12usize, 5usize);
    let mut r = ember_core::Rng::new(11);
    let a: Vec<f32> = (0..b * c).map(|_| r.normal() as f32).collect();
    let labels: Vec<usize> = (0..b).map(|i| (i * 7) % c).collect();
    let classes: Vec<f32> = (0..c)
        .flat_map(|j| (0..c).map(move |k| if k == j { 1.0 } else { 0.0 }))
        .collect();
    let tau = 0.2f64;
    let mut ce = 0.0f64;
    for i in 0..b {
        let row = &a[i * c..(i + 1) * c];
        let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        let z: Vec<f64> = row.iter().map(|&v| v as f64 / norm / tau).collect();
        let mx = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        ce += mx + z.iter().map(|v| (v - mx).exp()).sum::<f64>().ln() - z[labels[i]];
    }
    ce /= b as f64;
    let (mut indptr, mut idx, mut val) = (vec![0usize], vec![], vec![]);
    for &l in &labels {
        idx.push(l as u32);
        val.push(1.0f32);
        indptr.push(idx.len());
    }
    let p = CsrRef {
        indptr: &indptr,
        indices: &idx,
        values: &val,
    };
    let (mut ga, mut gc) = (vec![0.0f32; b * c], vec![0.0f32; c * c]);
    let am = MatRef::dense(&a, b, c).unwrap();
    let cm = MatRef::dense(&classes, c, c).unwrap();
    let loss = contrastive::cross_entropy(
        am,
        cm,
        Targets::Sparse(p),
        Similarity::Cosine { tau: tau as f32 },
        &Serial,
        &mut scratch(b, c, c),
        &mut ga,
        &mut gc,
    )
    .unwrap();
    eprintln!("InfoNCE against one-hot classes {loss:.9}, softmax cross-entropy {ce:.9}");
    assert!(((loss - ce) / ce).abs() < 1e-5);
    // The argmax of the similarity is the argmax of the features.
    let mut sims = vec![0.0f32; b * c];
    ember_core::gemm::a_bt(am, cm, &Serial, &mut sims);
    for i in 0..b {
        let arg = |v: &[f32]| (0..c).max_by(|&p, &q| v[p].total_cmp(&v[q])).unwrap();
        assert_eq!(arg(&sims[i * c..(i + 1) * c]), arg(&a[i * c..(i + 1) * c]));
    }
}

#[test]
fn supcon_with_one_positive_per_item_is_infonce() {
    let m = 16;
    let mut r = ember_core::Rng::new(3);
    let z: Vec<f32> = (0..m * 8).map(|_| r.normal() as f32).collect();
    let labels: Vec<u32> = (0..m as u32).map(|i| i / 2).collect(); // pairs (2k, 2k+1)
    let zm = MatRef::dense(&z, m, 8).unwrap();
    let sim = Similarity::Cosine { tau: 0.3 };
    let (mut g1, mut g2) = (vec![0.0f32; m * 8], vec![0.0f32; m * 8]);
    let a = contrastive::info_nce(zm, sim, &Serial, &mut scratch(m, m, 8), &mut g1).unwrap();
    let b = contrastive::supcon(zm, &labels, sim, &Serial, &mut scratch(m, m, 8), &mut g2).unwrap();
    assert!(((a - b) / a).abs() < 1e-6, "{a} vs {b}");
    assert!(
        g1.iter()
            .zip(&g2)
            .all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + x.abs()))
    );
}

/// Central differences of the f32 loss against the analytic gradient.
fn finite_differences(f: &dyn Fn(&[f32]) -> f64, z: &[f32], g: &[f32]) -> f64 {
    let mut worst = 0.0f64;
    for idx in 0..z.len() {
        let h = 1e-2f32 * (1.0 + z[idx].abs());
        let (mut zp, mut zm) = (z.to_vec(), z.to_vec());
        zp[idx] += h;
        zm[idx] -= h;
        let fd = (f(&zp) - f(&zm)) / (2.0 * h as f64);
        worst = worst.max((fd - g[idx] as f64).abs() / (1e-2 + g[idx].abs() as f64));
    }
    worst
}

#[test]
fn gradients_equal_finite_differences() {
    let (m, k) = (12, 5);
    let mut r = ember_core::Rng::new(8);
    let z: Vec<f32> = (0..m * k).map(|_| r.normal() as f32).collect();
    let labels: Vec<u32> = (0..m as u32).map(|i| i % 3).collect();
    type Loss<'a> = Box<dyn Fn(&[f32], &mut [f32]) -> f64 + 'a>;
    let losses: Vec<(&str, Loss)> = vec![
        (
            "infonce cosine",
            Box::new(|z, g| {
                contrastive::info_nce(
                    MatRef::dense(z, m, k).unwrap(),
                    Similarity::Cosine { tau: 0.5 },
                    &Serial,
                    &mut scratch(m, m, k),
                    g,
                )
                .unwrap()
            }),
        ),
        (
            "infonce cauchy",
            Box::new(|z, g| {
                contrastive::info_nce(
                    MatRef::dense(z, m, k).unwrap(),
                    Similarity::StudentT { dof: 1.0 },
                    &Serial,
                    &mut scratch(m, m, k),
                    g,
                )
                .unwrap()
            }),
        ),
        (
            "supcon",
            Box::new(|z, g| {
                contrastive::supcon(
                    MatRef::dense(z, m, k).unwrap(),
                    &labels,
                    Similarity::Cosine { tau: 0.5 },
                    &Serial,
                    &mut scratch(m, m, k),
                    g,
                )
                .unwrap()
            }),
        ),
        (
            "icon gaussian debiased",
            Box::new(|z, g| {
                contrastive::icon_loss(
                    MatRef::dense(z, m, k).unwrap(),
                    Targets::SameLabel(&labels),
                    Similarity::Gaussian { gamma: 0.3 },
                    Normalisation::Row,
                    0.2,
                    &Serial,
                    &mut scratch(m, m, k),
                    g,
                )
                .unwrap()
            }),
        ),
        (
            "icon student-t joint",
            Box::new(|z, g| {
                contrastive::icon_loss(
                    MatRef::dense(z, m, k).unwrap(),
                    Targets::Pairs,
                    Similarity::StudentT { dof: 0.7 },
                    Normalisation::Joint,
                    0.0,
                    &Serial,
                    &mut scratch(m, m, k),
                    g,
                )
                .unwrap()
            }),
        ),
    ];
    for (name, f) in &losses {
        let mut g = vec![0.0f32; m * k];
        f(&z, &mut g);
        let mut tmp = vec![0.0f32; m * k];
        let worst = finite_differences(&|zz| f(zz, &mut tmp.clone()), &z, &g);
        let _ = &mut tmp;
        eprintln!("{name}: worst finite-difference error {worst:.1e}");
        assert!(worst < 5e-3, "{name}: {worst}");
    }
}

#[test]
fn threads_do_not_change_bits_and_zero_vectors_are_refused() {
    let (m, k) = (300, 64);
    let mut r = ember_core::Rng::new(1);
    let mut z: Vec<f32> = (0..m * k).map(|_| r.normal() as f32).collect();
    let run = |z: &[f32], threads: usize| {
        let mut g = vec![0.0f32; m * k];
        let l = contrastive::info_nce(
            MatRef::dense(z, m, k).unwrap(),
            Similarity::Cosine { tau: 0.1 },
            &Threads::new(threads),
            &mut scratch(m, m, k),
            &mut g,
        );
        (l, g)
    };
    let (l1, g1) = run(&z, 1);
    for t in [2, 4] {
        let (lt, gt) = run(&z, t);
        assert_eq!(l1.unwrap().to_bits(), lt.unwrap().to_bits());
        assert!(g1.iter().zip(&gt).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    z[7 * k..8 * k].fill(0.0);
    let (l, _) = run(&z, 2);
    assert_eq!(l.unwrap_err(), ember_core::Error::ZeroVector { row: 7 });
    // Regression (fuzz target contrastive): a row of subnormal length passed as non-zero and
    // its gradient, which scales as 1/‖x‖, overflowed to infinity. It is refused now.
    z[7 * k..8 * k].fill(0.0);
    z[7 * k] = 9.24e-41;
    let (l, _) = run(&z, 2);
    assert_eq!(l.unwrap_err(), ember_core::Error::ZeroVector { row: 7 });
    z[7 * k] = 1e-20;
    let (l, g) = run(&z, 2);
    assert!(l.unwrap().is_finite() && g.iter().all(|v| v.is_finite()));
}
