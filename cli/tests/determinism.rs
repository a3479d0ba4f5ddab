//! For every method, the same seed gives byte-identical output files with 1, 2 and 4 threads
//! and across two runs (on 800 real digits; the neighbour search forced to the approximate
//! path where a method has one, so NN-descent is covered too).

use std::path::{Path, PathBuf};
use std::process::Command;

fn ember(dir: &Path, args: &[&str]) {
    let r = Command::new(env!("CARGO_BIN_EXE_ember"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
}

/// An n × 784 u8 .npy file.
fn npy_u8(n: usize, pixels: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({n}, 784), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(pixels);
    out
}

/// The first `n` bundled digits as digits.npy and the next 200 as more.npy.
fn digits(dir: &Path, n: usize) {
    use std::io::Read;
    let mut img = Vec::new();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/t10k-images.idx3-ubyte.gz");
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut img)
        .unwrap();
    let px = &img[16..];
    std::fs::write(dir.join("digits.npy"), npy_u8(n, &px[..n * 784])).unwrap();
    std::fs::write(
        dir.join("more.npy"),
        npy_u8(200, &px[n * 784..(n + 200) * 784]),
    )
    .unwrap();
}

#[test]
fn every_method_gives_the_same_bytes_on_any_thread_count() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("determinism");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    digits(&dir, 800);
    ember(
        &dir,
        &[
            "tsne",
            "digits.npy",
            "--knn",
            "approx",
            "-o",
            "fit.npy",
            "--save-model",
            "t.ember",
            "-q",
        ],
    );
    ember(
        &dir,
        &[
            "umap",
            "digits.npy",
            "--knn",
            "approx",
            "-o",
            "fit.npy",
            "--save-model",
            "u.ember",
            "-q",
        ],
    );
    let methods: [&[&str]; 8] = [
        &["tsne", "digits.npy", "--knn", "approx"],
        &["tsne", "digits.npy", "--repulsion", "fft", "--pca", "20"],
        &["umap", "digits.npy", "--knn", "approx"],
        &["ne", "digits.npy", "--knn", "approx", "--loss", "nce"],
        &["ne", "digits.npy", "--loss", "infonce", "--s", "0.5"],
        &["icon", "digits.npy", "--iters", "60", "--early-iters", "20"],
        &["transform", "t.ember", "more.npy"],
        &["transform", "u.ember", "more.npy"],
    ];
    for m in methods {
        let run = |threads: &str, out: &str| {
            let mut args = m.to_vec();
            args.extend_from_slice(&["--threads", threads, "-o", out, "-q"]);
            ember(&dir, &args);
            std::fs::read(dir.join(out)).unwrap()
        };
        let one = run("1", "a.npy");
        assert!(one.len() > 128, "{m:?}: empty output");
        assert!(run("2", "b.npy") == one, "{m:?}: 2 threads differ from 1");
        assert!(run("4", "c.npy") == one, "{m:?}: 4 threads differ from 1");
        assert!(run("2", "d.npy") == one, "{m:?}: a second run differs");
    }
}
