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
    let exe = compile(name, true);
    let mut cmd = Command::new(&exe);
    cmd.args(args).env("ASAN_OPTIONS", "detect_leaks=1");
    run(cmd)
}

/// Compiles tests/c/<name>.c with -Wall -Wextra -Werror against the header and the static
/// library, under ASan + UBSan when `sanitize` (valgrind needs a plain build).
fn compile(name: &str, sanitize: bool) -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_api");
    std::fs::create_dir_all(&tmp).unwrap();
    let exe = tmp.join(if sanitize {
        name.to_string()
    } else {
        format!("{name}-plain")
    });
    let mut gcc = Command::new("gcc");
    gcc.args([
        "-std=c11",
        "-O1",
        "-g",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
    ]);
    if sanitize {
        gcc.arg("-fsanitize=address,undefined");
    }
    let out = gcc
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
    exe
}

/// Runs a C test and returns its report, which must end "0 failed".
fn run(mut cmd: Command) -> String {
    let run = cmd.output().unwrap();
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

#[test]
fn c_program_exercises_handles_and_edges_under_sanitizers() {
    compile_and_run("test_lifecycle");
}

/// The same program under valgrind's memcheck: no invalid access, no uninitialised value
/// used, nothing definitely or indirectly lost. Needs valgrind (CI installs it; elsewhere
/// the test says it was skipped unless EMBER_REQUIRE_VALGRIND is set).
#[test]
fn c_program_is_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("EMBER_REQUIRE_VALGRIND").is_none(),
            "EMBER_REQUIRE_VALGRIND is set but valgrind is missing"
        );
        eprintln!("SKIPPED: valgrind is not installed");
        return;
    }
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_api");
    let (images, labels) = mnist_idx_files(&tmp, "valgrind");
    let exe = compile("test_lifecycle", false);
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect",
        "--show-leak-kinds=definite,indirect",
        "--quiet",
    ])
    .arg(exe)
    .args([images, labels]);
    run(cmd);
}

/// docs/C_API.md names every function the header declares.
#[test]
fn c_api_reference_covers_every_function() {
    let header = std::fs::read_to_string(root().join("include/ember.h")).unwrap();
    let doc = std::fs::read_to_string(root().join("docs/C_API.md")).unwrap();
    let missing: Vec<&str> = header
        .lines()
        .filter(|l| !l.starts_with("//") && !l.starts_with(' ') && l.contains('('))
        .filter_map(|l| {
            let head = &l[..l.find('(').unwrap()];
            head.rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .filter(|name| name.starts_with("ember_"))
        })
        .filter(|name| !doc.contains(&format!("`{name}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/C_API.md does not document: {missing:?}"
    );
}

#[test]
fn c_program_fits_saves_loads_and_transforms_models() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_api");
    let (images, labels) = mnist_idx_files(&tmp, "test_model");
    let dir = tmp.join("models");
    std::fs::create_dir_all(&dir).unwrap();
    let report = compile_and_run_with("test_model", &[images, labels, dir]);
    assert!(report.contains("t-SNE: 10-NN accuracy") && report.contains("UMAP: 10-NN accuracy"));
}

/// ROBUSTNESS.md's C rows: every bad input gets its status and message, and the table there
/// shows exactly what the library says (EMBER_PRINT_TABLE=1 prints the rows).
#[test]
fn c_bad_input_table_matches_robustness_md() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_api/bad_input");
    std::fs::create_dir_all(&dir).unwrap();
    let report = compile_and_run_with("test_bad_input", &[dir]);
    let doc = std::fs::read_to_string(root().join("ROBUSTNESS.md")).unwrap_or_default();
    let rows: Vec<&str> = report.lines().filter(|l| l.starts_with("| ")).collect();
    assert!(rows.len() >= 20, "{report}");
    let missing: Vec<&str> = rows.iter().copied().filter(|r| !doc.contains(r)).collect();
    assert!(
        missing.is_empty(),
        "ROBUSTNESS.md lacks these rows (observed now):\n{}",
        missing.join("\n")
    );
}
