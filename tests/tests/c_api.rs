//! Compiles the C programs in tests/c with gcc -Wall -Wextra -Werror against include/ember.h and
//! the static library cargo built for this test run, then runs it on real MNIST digits.

use ember_tests::{built_lib_dir, mnist_idx_files, root};
use std::path::PathBuf;
use std::process::Command;

/// Compiles tests/c/<name>.c under ASan + UBSan against the header and the static library,
/// runs it on the bundled digits, and returns its report.
fn compile_and_run(name: &str) -> String {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_api");
    let (images, labels) = mnist_idx_files(&tmp, name);
    compile_and_run_with(name, &[images, labels])
}

/// Compiles tests/c/<name>.c as `compile_and_run` does and runs it with `args`.
fn compile_and_run_with(name: &str, args: &[PathBuf]) -> String {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_api");
    std::fs::create_dir_all(&tmp).unwrap();
    let exe = tmp.join(name);
    let out = Command::new("gcc")
        .args([
            "-std=c11",
            "-O1",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsanitize=address,undefined",
        ])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join(format!("tests/c/{name}.c")))
        .arg(built_lib_dir().join("libember.a"))
        .args(["-pthread", "-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .output()
        .expect("gcc must be installed");
    assert!(
        out.status.success(),
        "gcc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe)
        .args(args)
        .env("ASAN_OPTIONS", "detect_leaks=1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    println!("{stdout}");
    assert!(
        run.status.success(),
        "C test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    stdout
}

#[test]
fn c_program_embeds_mnist_through_the_header() {
    compile_and_run("test_tsne");
}

#[test]
fn c_program_runs_umap_and_the_spectrum_through_the_header() {
    compile_and_run("test_umap_ne");
}

#[test]
fn c_program_checks_the_contrastive_kernels_against_the_fixtures() {
    let report = compile_and_run_with(
        "test_contrastive",
        &[root().join("tests/fixtures/contrastive")],
    );
    assert!(report.contains("icon with p from ember_icon_neighbourhood"));
}

#[test]
fn c_program_calls_from_many_threads_at_once() {
    let report = compile_and_run("test_threads");
    assert!(report.contains("results identical to one thread"));
}

#[test]
fn c_program_searches_neighbours_and_scores_embeddings() {
    let report = compile_and_run("test_knn_eval");
    assert!(report.contains("approximate kNN recall@15"));
}
