//! The Python ctypes binding (python/ember.py) on real digits, through python3 (stdlib only).

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn python_binding_embeds_digits() {
    let root = ember_tests::root();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python");
    std::fs::create_dir_all(&tmp).unwrap();
    let unzip = |name: &str, to: &str| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(root.join("data").join(name)).unwrap())
            .read_to_end(&mut out)
            .unwrap();
        std::fs::write(tmp.join(to), out).unwrap();
    };
    unzip("t10k-images.idx3-ubyte.gz", "images.idx");
    unzip("t10k-labels.idx1-ubyte.gz", "labels.idx");
    // The shared library this test run built (a dependency of this crate).
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let lib = [deps, deps.parent().unwrap()]
        .iter()
        .map(|d| d.join("libember.so"))
        .find(|p| p.exists())
        .expect("libember.so not built");
    let run = Command::new("python3")
        .arg(root.join("python/test_ember.py"))
        .arg(tmp.join("images.idx"))
        .arg(tmp.join("labels.idx"))
        .env("EMBER_LIB", &lib)
        .env("PYTHONPATH", root.join("python"))
        .output()
        .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("all checks passed"));
}
