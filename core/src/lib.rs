//! ember-core: the numerical core of ember.
//!
//! `#![no_std]` and allocation-free: every routine writes into caller-provided buffers, and
//! every routine that needs scratch space has a size query. Data flows one way:
//! `knn` → `affinity` → `init` → `tsne` (gradient + optimiser) → `metrics`.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod affinity;
pub mod bh;
pub mod contrastive;
pub mod cpu;
pub mod error;
pub mod fastmath;
pub mod fft;
pub mod fft_repulsion;
#[cfg(feature = "std")]
pub mod fitted;
pub mod gemm;
pub mod gradient;
pub mod icon;
pub mod init;
pub mod knn;
pub mod locality;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod ne;
pub mod neighbours;
pub mod nndescent;
pub mod observer;
pub mod parallel;
pub mod project;
pub mod rng;
pub mod scratch;
pub mod simd;
pub mod spectral;
#[cfg(any(test, feature = "std"))]
pub mod threads;
pub mod transform;
pub mod tsne;
pub mod umap;

pub use error::{Error, Result};
pub use matrix::{MatMut, MatRef};
pub use observer::{Control, Observer, Progress, Silent, Stage};
pub use parallel::{Parallel, Serial};
pub use rng::Rng;

/// The crate version, for frontends that report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
