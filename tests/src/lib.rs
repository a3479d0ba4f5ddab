//! Helpers for the end-to-end tests: the bundled MNIST test set.

use std::io::Read;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The first `n` MNIST test digits as f32 rows of 784 pixel values (0–255), and their labels.
pub fn mnist(n: usize) -> (Vec<f32>, Vec<u32>) {
    let img = gunzip(&root().join("data/t10k-images.idx3-ubyte.gz"));
    let lab = gunzip(&root().join("data/t10k-labels.idx1-ubyte.gz"));
    let x = img[16..16 + n * 784].iter().map(|&v| v as f32).collect();
    let l = lab[8..8 + n].iter().map(|&v| v as u32).collect();
    (x, l)
}
