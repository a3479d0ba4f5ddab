//! An owned fitted model for the frontends (std feature): the arrays of a model, the values
//! prepared once for transform, and conversions to and from the file format in `model`.

use crate::bh::BhNode;
use crate::error::{Error, Result};
use crate::knn::Metric;
use crate::matrix::MatRef;
use crate::model::{self, Header, Method};
use crate::observer::Observer;
use crate::parallel::Parallel;
use crate::project;
use crate::scratch::Pod;
use crate::transform::{
    self, Prepared, Reference, SearchIndex, TsneTransformParams, UmapTransformParams,
};
use std::sync::OnceLock;
use std::vec::Vec;

/// A zeroed vector, or `Error::OutOfMemory` instead of an abort.
pub fn try_zeroed<T: Pod + Default>(len: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::OutOfMemory {
        bytes: len.saturating_mul(size_of::<T>()),
    })?;
    v.resize(len, T::default());
    Ok(v)
}

/// Overrides of a method's transform defaults (None keeps the default).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TransformOptions {
    /// t-SNE only (default 5).
    pub perplexity: Option<f32>,
    /// Reference neighbours per new point (t-SNE 25; UMAP the fit's `neighbors`).
    pub neighbours: Option<usize>,
    /// t-SNE iterations (250) or UMAP epochs (100).
    pub iters: Option<usize>,
    /// t-SNE 0.1; UMAP a quarter of the fit's (0.25).
    pub learning_rate: Option<f32>,
    /// t-SNE only (1.5).
    pub exaggeration: Option<f32>,
}

/// A fitted model that owns its arrays.
#[derive(Debug)]
pub struct FittedModel {
    header: Header,
    basis: Vec<f32>,
    reference: Vec<f32>,
    embedding: Vec<f32>,
    norms: Vec<f32>,
    nodes: Vec<BhNode>,
    perm: Vec<u32>,
    /// The approximate search index, built by the first transform that needs it (with that
    /// call's threads; the index does not depend on them).
    search: OnceLock<Result<SearchIndexOwned>>,
}

/// The arrays of a `transform::SearchIndex`.
#[derive(Debug)]
struct SearchIndexOwned {
    basis: Vec<f32>,
    coords: Vec<f32>,
    norms: Vec<f32>,
}

impl FittedModel {
    /// The model of a finished fit of `x` (n × D) that produced `embedding` (n × dims). With
    /// `basis` (r × D rows, the subspace the fit reduced its data to), the reference keeps the
    /// projected rows.
    pub fn from_fit(
        method: Method,
        metric: Metric,
        x: MatRef,
        basis: Option<Vec<f32>>,
        embedding: Vec<f32>,
        dims: usize,
        seed: u64,
        par: &dyn Parallel,
    ) -> Result<Self> {
        let (n, d) = (x.rows(), x.cols());
        let (basis, reference, ref_dims) = match basis {
            Some(b) => {
                let r = b.len() / d.max(1);
                let mut reduced = try_zeroed::<f32>(n * r)?;
                project::project(x, &b, r, par, &mut reduced)?;
                (b, reduced, r)
            }
            None => {
                let mut rows = try_zeroed::<f32>(n * d)?;
                for i in 0..n {
                    rows[i * d..(i + 1) * d].copy_from_slice(x.row(i));
                }
                (Vec::new(), rows, d)
            }
        };
        let header = Header {
            method,
            metric,
            n,
            input_dims: d,
            ref_dims,
            dims,
            seed,
        };
        Self::from_parts(header, basis, reference, embedding)
    }

    fn from_parts(
        header: Header,
        basis: Vec<f32>,
        reference: Vec<f32>,
        embedding: Vec<f32>,
    ) -> Result<Self> {
        header.validate()?;
        let (ln, lt, lp) = transform::prepared_lens(header.n, header.dims);
        let mut m = FittedModel {
            header,
            basis,
            reference,
            embedding,
            norms: try_zeroed(ln)?,
            nodes: try_zeroed(lt)?,
            perm: try_zeroed(lp)?,
            search: OnceLock::new(),
        };
        let mut norms = core::mem::take(&mut m.norms);
        let mut nodes = core::mem::take(&mut m.nodes);
        let mut perm = core::mem::take(&mut m.perm);
        transform::prepare(&m.reference()?, &mut norms, &mut nodes, &mut perm)?;
        (m.norms, m.nodes, m.perm) = (norms, nodes, perm);
        Ok(m)
    }

    /// A model from the bytes of a model file; every field and the checksum are checked first.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let header = model::read_header(bytes)?;
        let mut basis = try_zeroed(header.basis_len())?;
        let mut reference = try_zeroed(header.reference_len())?;
        let mut embedding = try_zeroed(header.embedding_len())?;
        model::decode(bytes, &header, &mut basis, &mut reference, &mut embedding)?;
        Self::from_parts(header, basis, reference, embedding)
    }

    /// The model file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let len = self.header.encoded_len().ok_or(Error::BadModel {
            reason: "shape overflows",
        })?;
        let mut out = try_zeroed::<u8>(len)?;
        model::encode(
            &self.header,
            &self.basis,
            &self.reference,
            &self.embedding,
            &mut out,
        )?;
        Ok(out)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The reference embedding, n × dims.
    pub fn embedding(&self) -> &[f32] {
        &self.embedding
    }

    pub fn reference(&self) -> Result<Reference<'_>> {
        let h = &self.header;
        Ok(Reference {
            data: MatRef::dense(&self.reference, h.n, h.ref_dims)?,
            embedding: &self.embedding,
            dims: h.dims,
            metric: h.metric,
            basis: h.has_basis().then_some(&self.basis[..]),
        })
    }

    /// The prepared values, with the search index when the reference is wide and large
    /// enough for it (built on first use).
    fn prepared(&self, par: &dyn Parallel) -> Result<Prepared<'_>> {
        let (n, cols) = (self.header.n, self.header.ref_dims);
        let search = if transform::wants_search_index(n, cols) {
            let built = self.search.get_or_init(|| {
                let (lb, lc, ln) = transform::search_index_lens(n, cols);
                let mut index = SearchIndexOwned {
                    basis: try_zeroed(lb)?,
                    coords: try_zeroed(lc)?,
                    norms: try_zeroed(ln)?,
                };
                let mut scratch =
                    try_zeroed::<u8>(transform::search_index_scratch(n, cols).bytes())?;
                transform::build_search_index(
                    &self.reference()?,
                    &self.norms,
                    par,
                    &mut scratch,
                    &mut index.basis,
                    &mut index.coords,
                    &mut index.norms,
                )?;
                Ok(index)
            });
            let index = built.as_ref().map_err(|e| *e)?;
            Some(SearchIndex {
                basis: &index.basis,
                coords: &index.coords,
                norms: &index.norms,
            })
        } else {
            None
        };
        Ok(Prepared {
            norms: &self.norms,
            nodes: &self.nodes,
            perm: &self.perm,
            search,
        })
    }

    /// The t-SNE transform settings of this model with `opts` applied.
    pub fn tsne_params(&self, opts: &TransformOptions) -> Option<TsneTransformParams> {
        let Method::Tsne { dof, .. } = self.header.method else {
            return None;
        };
        let d = TsneTransformParams::default();
        Some(TsneTransformParams {
            perplexity: opts.perplexity.unwrap_or(d.perplexity),
            neighbours: opts.neighbours.unwrap_or(d.neighbours),
            iters: opts.iters.unwrap_or(d.iters),
            learning_rate: opts.learning_rate.unwrap_or(d.learning_rate),
            exaggeration: opts.exaggeration.unwrap_or(d.exaggeration),
            dof,
            ..d
        })
    }

    /// The UMAP transform settings of this model with `opts` applied.
    pub fn umap_params(&self, opts: &TransformOptions) -> Option<UmapTransformParams> {
        let Method::Umap {
            a,
            b,
            neighbors,
            negatives,
            learning_rate,
            ..
        } = self.header.method
        else {
            return None;
        };
        let d = UmapTransformParams::default();
        Some(UmapTransformParams {
            neighbours: opts.neighbours.unwrap_or(neighbors),
            epochs: opts.iters.unwrap_or(d.epochs),
            learning_rate: opts.learning_rate.unwrap_or(learning_rate / 4.0),
            negatives,
            a,
            b,
            seed: self.header.seed,
        })
    }

    /// Neighbours per new point under `opts`.
    fn neighbours(&self, opts: &TransformOptions) -> usize {
        let k = match (self.tsne_params(opts), self.umap_params(opts)) {
            (Some(p), _) => p.neighbours,
            (_, Some(p)) => p.neighbours,
            _ => 1,
        };
        k.min(self.header.n)
    }

    /// Scratch bytes a transform of `nq` points needs.
    pub fn transform_scratch_bytes(&self, nq: usize, opts: &TransformOptions) -> Result<usize> {
        Ok(transform::transform_scratch(nq, self.neighbours(opts), &self.reference()?).bytes())
    }

    /// Places `queries` (n_new × D) into the embedding: `out` receives n_new × dims. Safe to
    /// call from many threads at once on one model.
    pub fn transform(
        &self,
        queries: MatRef,
        opts: &TransformOptions,
        par: &dyn Parallel,
        obs: &mut dyn Observer,
        out: &mut [f32],
    ) -> Result<()> {
        let reference = self.reference()?;
        let mut scratch = try_zeroed::<u8>(self.transform_scratch_bytes(queries.rows(), opts)?)?;
        let prepared = self.prepared(par)?;
        match (self.tsne_params(opts), self.umap_params(opts)) {
            (Some(p), _) => transform::tsne_transform(
                &reference,
                &prepared,
                queries,
                &p,
                par,
                obs,
                &mut scratch,
                out,
            ),
            (_, Some(p)) => transform::umap_transform(
                &reference,
                &prepared,
                queries,
                &p,
                par,
                obs,
                &mut scratch,
                out,
            ),
            _ => unreachable!("a model is t-SNE or UMAP"),
        }
    }
}

/// The subspace t-SNE's `pca` option reduces `x` to (`r × D` rows), exactly as the fit
/// computed it with the same seed.
pub fn pca_basis(x: MatRef, r: usize, seed: u64, par: &dyn Parallel) -> Result<Vec<f32>> {
    let mut scratch =
        try_zeroed::<u8>(project::subspace_scratch(x.rows(), x.cols(), r, 0).bytes())?;
    let mut basis = try_zeroed::<f32>(r * x.cols())?;
    project::dominant_subspace(x, r, 0, seed, par, &mut scratch, &mut basis)?;
    Ok(basis)
}
