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

/// The directory holding libember.so and libember.a from the profile this test was built
/// with (the tests crate depends on the C library, so cargo builds it first).
pub fn built_lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        if dir.join("libember.so").exists() && dir.join("libember.a").exists() {
            return dir.to_path_buf();
        }
    }
    panic!(
        "libember.so and libember.a not found near {}",
        exe.display()
    );
}

/// Writes the bundled MNIST test images and labels, uncompressed, as `<dir>/<stem>-images.idx`
/// and `<dir>/<stem>-labels.idx` (one pair per caller: tests run concurrently).
pub fn mnist_idx_files(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let images = dir.join(format!("{stem}-images.idx"));
    let labels = dir.join(format!("{stem}-labels.idx"));
    std::fs::write(
        &images,
        gunzip(&root().join("data/t10k-images.idx3-ubyte.gz")),
    )
    .unwrap();
    std::fs::write(
        &labels,
        gunzip(&root().join("data/t10k-labels.idx1-ubyte.gz")),
    )
    .unwrap();
    (images, labels)
}
