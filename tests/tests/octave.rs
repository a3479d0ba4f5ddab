//! Builds the MEX gateways in matlab/ with Octave's `mkoctfile --mex` against this build's
//! libember.a and runs matlab/test_ember.m under `octave-cli` on real MNIST digits.
//!
//! Needs GNU Octave with its development files (Debian: octave, octave-dev); CI installs
//! them and sets EMBER_REQUIRE_OCTAVE=1 so that a missing Octave fails there. Elsewhere
//! the test says it was skipped.

use ember_tests::{built_lib_dir, mnist_idx_files, root};
use std::path::PathBuf;
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

#[test]
fn octave_gateway_embeds_real_digits() {
    if !(have("mkoctfile") && have("octave-cli")) {
        assert!(
            std::env::var_os("EMBER_REQUIRE_OCTAVE").is_none(),
            "EMBER_REQUIRE_OCTAVE is set but mkoctfile or octave-cli is missing"
        );
        eprintln!("SKIPPED: GNU Octave (octave, octave-dev) is not installed");
        return;
    }
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("octave");
    let mex = tmp.join("mex");
    let build = Command::new("bash")
        .arg(root().join("matlab/build_octave.sh"))
        .arg(&mex)
        .env("EMBER_LIB", built_lib_dir().join("libember.a"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "build_octave.sh failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let (images, labels) = mnist_idx_files(&tmp, "octave");
    let script = format!(
        "addpath('{}', '{}'); test_ember('{}', '{}')",
        mex.display(),
        root().join("matlab").display(),
        images.display(),
        labels.display()
    );
    let run = Command::new("octave-cli")
        .args(["--no-gui", "--norc", "--eval", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success() && stdout.contains("octave: ") && stdout.contains(" 0 failed"),
        "octave test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
