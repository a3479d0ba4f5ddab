//! Shared by the examples (not an example itself: cargo only builds `examples/*.rs`).
use ember_core::affinity::CsrRef;
use ember_core::threads::Threads;
use ember_core::umap::{UmapParams, fuzzy_graph, fuzzy_graph_scratch};
use ember_core::{Control, MatRef, Progress};

/// The arguments FILE.f32 DIM [REPS] of the graph examples: the raw rows, their count and
/// width, and the repetitions (default 5).
pub fn rows_from_args() -> (Vec<f32>, usize, usize, usize) {
    let a: Vec<String> = std::env::args().collect();
    let x = crate::raw::read_f32(&a[1]);
    let d: usize = a[2].parse().unwrap();
    let reps = a.get(3).map_or(5, |v| v.parse().unwrap());
    let n = x.len() / d;
    (x, n, d, reps)
}

/// UMAP's fuzzy graph of the rows of `m` as CSR arrays.
pub struct Graph {
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Graph {
    pub fn build(m: MatRef, params: &UmapParams, par: &Threads) -> Graph {
        let n = m.rows();
        let cap = 2 * n * (params.neighbors - 1);
        let (mut indptr, mut indices, mut values) =
            (vec![0usize; n + 1], vec![0u32; cap], vec![0f32; cap]);
        let mut sc = vec![0u8; fuzzy_graph_scratch(n, m.cols(), params).bytes()];
        let mut quiet = |_: &Progress| Control::Continue;
        let nnz = fuzzy_graph(
            m,
            params,
            par,
            &mut quiet,
            &mut sc,
            &mut indptr,
            &mut indices,
            &mut values,
        )
        .unwrap();
        indices.truncate(nnz);
        values.truncate(nnz);
        Graph {
            indptr,
            indices,
            values,
        }
    }

    pub fn csr(&self) -> CsrRef<'_> {
        CsrRef {
            indptr: &self.indptr,
            indices: &self.indices,
            values: &self.values,
        }
    }
}
