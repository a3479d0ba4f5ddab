//! Runs examples/dask_transform.py on the bundled digits: fit on a sample, transform the rest
//! on a Dask LocalCluster of two worker processes, and check that the result is identical to
//! a single-process transform. Dask and numpy come from PyPI into a throwaway venv under the
//! target directory. CI sets EMBER_REQUIRE_DASK=1 so that a failed install fails there;
//! elsewhere (no network) the test says it was skipped.

use ember_tests::{built_lib_dir, root};
use std::path::PathBuf;
use std::process::Command;

fn skip(why: &str) {
    assert!(
        std::env::var_os("EMBER_REQUIRE_DASK").is_none(),
        "EMBER_REQUIRE_DASK is set but {why}"
    );
    eprintln!("SKIPPED: {why}");
}

#[test]
fn dask_transform_equals_a_single_process_transform() {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dask-venv");
    let python = venv.join("bin/python");
    let ready = |p: &PathBuf| {
        Command::new(p)
            .args(["-c", "import dask.distributed, dask.array, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            return skip("python3 -m venv failed");
        }
        let installed = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "dask[array,distributed]",
                "numpy",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !installed || !ready(&python) {
            return skip("dask could not be installed from PyPI");
        }
    }
    let run = Command::new(&python)
        .arg(root().join("examples/dask_transform.py"))
        .args(["--check", "--sample", "2000", "--chunk", "700"])
        .env("EMBER_LIB", built_lib_dir().join("libember.so"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success() && stdout.contains("identical to a single-process transform"),
        "dask example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let acc: f64 = stdout
        .lines()
        .find(|l| l.starts_with("10-NN accuracy"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("accuracy line");
    assert!(acc >= 0.8, "accuracy {acc}");
}
