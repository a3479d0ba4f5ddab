//! End-to-end tests of the `ember` command: the demo run's quality, and bad input failing
//! with one clear line, a non-zero exit, and no output file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ember(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
        .display()
        .to_string()
}

/// A little-endian f32 .npy file (C order).
fn npy_f32(rows: usize, cols: usize, v: &[f32]) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for x in v {
        out.extend(x.to_le_bytes());
    }
    out
}

/// Gaussian-ish blobs from a fixed LCG, as CSV text and row-major values.
fn blobs(n: usize, d: usize) -> Vec<f32> {
    let mut s: u64 = 12345;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    (0..n * d)
        .map(|i| next() + if (i % d) == (i / d) % 3 { 8.0 } else { 0.0 })
        .collect()
}

fn to_csv(v: &[f32], d: usize) -> String {
    v.chunks(d)
        .map(|r| {
            r.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect()
}

#[test]
fn demo_run_reaches_the_quality_floors() {
    let dir = tmpdir("demo");
    let out = ember(&dir, &["tsne", "-q"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("embedding.csv").exists() && dir.join("embedding.png").exists());
    let png = std::fs::read(dir.join("embedding.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let eval = ember(
        &dir,
        &[
            "eval",
            &data("t10k-images.idx3-ubyte.gz"),
            "embedding.csv",
            "--labels",
            &data("t10k-labels.idx1-ubyte.gz"),
        ],
    );
    let text = String::from_utf8_lossy(&eval.stdout).to_string();
    assert!(
        eval.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let figure = |key: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no '{key}' in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (recall, acc) = (figure("recall@10"), figure("10-NN accuracy"));
    println!("demo: recall@10 {recall}, 10-NN accuracy {acc}");
    // Floors from the issue; openTSNE reaches about 0.97 and 0.36 on this data.
    assert!(acc >= 0.95, "10-NN accuracy {acc}");
    assert!(recall >= 0.30, "recall@10 {recall}");
}

#[test]
fn formats_agree_and_threads_do_not_change_the_result() {
    let dir = tmpdir("formats");
    let (n, d) = (150, 6);
    let v = blobs(n, d);
    std::fs::write(dir.join("x.csv"), format!("a,b,c,d,e,f\n{}", to_csv(&v, d))).unwrap();
    std::fs::write(dir.join("x.tsv"), to_csv(&v, d).replace(',', "\t")).unwrap();
    std::fs::write(dir.join("x.npy"), npy_f32(n, d, &v)).unwrap();
    let mut outs = vec![];
    for (input, threads) in [("x.csv", "1"), ("x.tsv", "2"), ("x.npy", "4")] {
        let o = format!("{input}.out.npy");
        let r = ember(
            &dir,
            &[
                "tsne",
                input,
                "-o",
                &o,
                "--perplexity",
                "10",
                "--iters",
                "100",
                "--threads",
                threads,
                "-q",
            ],
        );
        assert!(
            r.status.success(),
            "{input}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        outs.push(std::fs::read(dir.join(&o)).unwrap());
    }
    assert!(
        outs.windows(2).all(|w| w[0] == w[1]),
        "CSV/TSV/npy with 1/2/4 threads must give identical bits"
    );
    // The approximate search and FFT repulsion are thread-count independent too.
    let mut fast = vec![];
    for threads in ["1", "2", "4"] {
        let o = format!("fast{threads}.npy");
        let args = [
            "tsne",
            "x.npy",
            "-o",
            &o,
            "--perplexity",
            "10",
            "--iters",
            "100",
            "--knn",
            "approx",
            "--repulsion",
            "fft",
            "--threads",
            threads,
            "-q",
        ];
        let r = ember(&dir, &args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        fast.push(std::fs::read(dir.join(&o)).unwrap());
    }
    assert!(
        fast.windows(2).all(|w| w[0] == w[1]),
        "approx kNN + FFT with 1/2/4 threads must give identical bits"
    );
    let r = ember(
        &dir,
        &[
            "tsne",
            "x.npy",
            "-o",
            "y.csv",
            "--perplexity",
            "10",
            "--iters",
            "50",
            "--dims",
            "3",
            "-q",
        ],
    );
    assert!(r.status.success());
    let csv = std::fs::read_to_string(dir.join("y.csv")).unwrap();
    assert_eq!(csv.lines().count(), n);
    assert!(csv.lines().all(|l| l.split(',').count() == 3));
}

/// Runs `ember tsne` expecting failure: one line on stderr containing `expect`, no output.
fn assert_fails(dir: &Path, args: &[&str], expect: &str) {
    assert_command_fails(dir, "tsne", args, expect)
}

/// Runs `ember <command>` expecting failure, as `assert_fails`.
fn assert_command_fails(dir: &Path, command: &str, args: &[&str], expect: &str) {
    let mut full = vec![command];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "out.csv", "--plot", "out.png", "-q"]);
    let r = ember(dir, &full);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{args:?} should fail");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(
        err.contains(expect),
        "{args:?}: '{err}' should mention '{expect}'"
    );
    assert!(
        !dir.join("out.csv").exists() && !dir.join("out.png").exists(),
        "{args:?} left an output file"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn bad_input_fails_cleanly_without_output() {
    let dir = tmpdir("bad");
    let (n, d) = (60, 4);
    let v = blobs(n, d);
    let w = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
    let mut nan = v.clone();
    nan[2 * d + 1] = f32::NAN;
    w("nan.npy", npy_f32(n, d, &nan));
    let mut inf = to_csv(&v, d);
    inf = inf.replacen("\n", ",\n", 0);
    w("inf.csv", format!("{}inf,1,2,3\n", inf).into_bytes());
    w("one.csv", b"1,2,3\n".to_vec());
    w("nocols.npy", npy_f32(n, 0, &[]));
    w("ok.npy", npy_f32(n, d, &v));
    let mut trunc = npy_f32(n, d, &v);
    trunc.truncate(trunc.len() - 10);
    w("trunc.npy", trunc);
    let mut cells = to_csv(&v, d);
    cells.push_str("1,2,oops,4\n");
    w("cell.csv", cells.into_bytes());
    w(
        "labels.txt",
        (0..n - 1)
            .map(|i| format!("{}\n", i % 3))
            .collect::<String>()
            .into_bytes(),
    );
    let mut idx = vec![0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28];
    idx.extend(vec![7u8; 100]);
    w("trunc.idx", idx);

    assert_fails(
        &dir,
        &["nan.npy"],
        "non-finite value (NaN or infinity) at row 2, column 1",
    );
    assert_fails(&dir, &["inf.csv", "--perplexity", "5"], "non-finite value");
    assert_fails(&dir, &["one.csv"], "too few points");
    assert_fails(&dir, &["nocols.npy"], "zero columns");
    assert_fails(
        &dir,
        &["ok.npy", "--perplexity", "60"],
        "perplexity 60 is too large for 60 points",
    );
    assert_fails(
        &dir,
        &["ok.npy", "--perplexity", "10", "--labels", "labels.txt"],
        "59 labels for 60 data rows",
    );
    assert_fails(&dir, &["trunc.npy"], "truncated");
    assert_fails(
        &dir,
        &["cell.csv"],
        "line 61, column 3: 'oops' is not a number",
    );
    assert_fails(&dir, &["trunc.idx"], "truncated IDX data");
    assert_fails(&dir, &["missing.csv"], "cannot read");
    assert_fails(
        &dir,
        &["ok.npy", "--perplexity", "10", "--learning-rate", "-3"],
        "--learning-rate",
    );
    assert_fails(
        &dir,
        &[
            "ok.npy",
            "--perplexity",
            "10",
            "--dims",
            "4",
            "--repulsion",
            "bh",
        ],
        "Barnes-Hut needs 2-D or 3-D",
    );
    assert_fails(&dir, &["ok.npy", "--perplexity", "10", "--dof", "0"], "dof");
}

#[test]
fn umap_and_the_spectrum_write_outputs_that_threads_do_not_change() {
    let dir = tmpdir("umap_ne");
    let (n, d) = (300, 6);
    std::fs::write(dir.join("x.npy"), npy_f32(n, d, &blobs(n, d))).unwrap();
    for (cmd, extra) in [
        ("umap", vec![]),
        ("ne", vec!["--loss", "infonce", "--s", "0.5"]),
    ] {
        let run = |threads: &str, out: &str| {
            let mut args = vec![cmd, "x.npy", "-q", "--threads", threads, "-o", out];
            args.extend(&extra);
            let r = ember(&dir, &args);
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            std::fs::read(dir.join(out)).unwrap()
        };
        let one = run("1", "one.csv");
        assert_eq!(String::from_utf8_lossy(&one).lines().count(), n);
        assert_eq!(
            one,
            run("2", "two.csv"),
            "{cmd}: 2 threads changed the output"
        );
        assert_eq!(
            one,
            run("4", "four.csv"),
            "{cmd}: 4 threads changed the output"
        );
    }
    let r = ember(
        &dir,
        &[
            "ne",
            "x.npy",
            "-q",
            "--spectrum",
            "0,0.5,1",
            "-o",
            "s.npy",
            "--plot",
            "s.png",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    for v in ["0", "0.5", "1"] {
        assert!(
            dir.join(format!("s_s{v}.npy")).exists(),
            "panel s = {v} missing"
        );
    }
    let png = std::fs::read(dir.join("s.png")).unwrap();
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    assert_eq!(width, 3 * 600, "one 600-pixel panel per spectrum value");
}

#[test]
fn bad_umap_and_ne_parameters_fail_cleanly() {
    let dir = tmpdir("bad_umap");
    let (n, d) = (60, 4);
    let v = blobs(n, d);
    std::fs::write(dir.join("ok.npy"), npy_f32(n, d, &v)).unwrap();
    let mut nan = v.clone();
    nan[7] = f32::INFINITY;
    std::fs::write(dir.join("inf.npy"), npy_f32(n, d, &nan)).unwrap();
    assert_command_fails(&dir, "umap", &["ok.npy", "--neighbors", "61"], "neighbors");
    assert_command_fails(&dir, "umap", &["ok.npy", "--min-dist", "2"], "min_dist");
    assert_command_fails(&dir, "umap", &["ok.npy", "--negatives", "60"], "negatives");
    assert_command_fails(&dir, "umap", &["inf.npy"], "non-finite value");
    assert_command_fails(&dir, "ne", &["ok.npy", "--neighbors", "60"], "neighbors");
    assert_command_fails(&dir, "ne", &["ok.npy", "--negatives", "2000"], "negatives");
    assert_command_fails(&dir, "ne", &["ok.npy", "--zbar", "-1"], "--zbar");
    assert_command_fails(&dir, "ne", &["ok.npy", "--dims", "17"], "dims");
    // I-Con's N × N tile for 150 000 points is 90 GB: refused before anything runs.
    let n = 150_000;
    let line: Vec<f32> = (0..n).map(|i| i as f32).collect();
    std::fs::write(dir.join("long.npy"), npy_f32(n, 1, &line)).unwrap();
    assert_command_fails(&dir, "icon", &["long.npy"], "GB of working memory");
}

/// The first `n` bundled MNIST digits as an f32 .npy file and a label file in `dir`.
fn digits(dir: &Path, n: usize) {
    use std::io::Read;
    let gunzip = |name: &str| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(data(name)).unwrap())
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    let img = gunzip("t10k-images.idx3-ubyte.gz");
    let lab = gunzip("t10k-labels.idx1-ubyte.gz");
    let x: Vec<f32> = img[16..16 + n * 784].iter().map(|&v| v as f32).collect();
    std::fs::write(dir.join("digits.npy"), npy_f32(n, 784, &x)).unwrap();
    let labels: String = lab[8..8 + n].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("digits.txt"), labels).unwrap();
}

#[test]
fn icon_embeds_digits_and_eval_judges_them() {
    let dir = tmpdir("icon");
    digits(&dir, 1500);
    let r = ember(
        &dir,
        &[
            "icon",
            "digits.npy",
            "--labels",
            "digits.txt",
            "-o",
            "icon.csv",
            "--plot",
            "icon.png",
            "-q",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let e = ember(
        &dir,
        &["eval", "digits.npy", "icon.csv", "--labels", "digits.txt"],
    );
    let out = String::from_utf8_lossy(&e.stdout);
    let acc: f64 = out
        .lines()
        .find(|l| l.starts_with("10-NN accuracy"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("ember icon on 1500 digits: {out}");
    // Measured 0.860 (2026-11-22).
    assert!(acc > 0.7, "{out}");
}

/// Digits `start .. start + n` of the bundled set as `<name>.npy` and `<name>.txt` in `dir`.
fn digit_range(dir: &Path, name: &str, start: usize, n: usize) {
    use std::io::Read;
    let gunzip = |file: &str| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(data(file)).unwrap())
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    let img = gunzip("t10k-images.idx3-ubyte.gz");
    let lab = gunzip("t10k-labels.idx1-ubyte.gz");
    let x: Vec<f32> = img[16 + start * 784..16 + (start + n) * 784]
        .iter()
        .map(|&v| v as f32)
        .collect();
    std::fs::write(dir.join(format!("{name}.npy")), npy_f32(n, 784, &x)).unwrap();
    let labels: String = lab[8 + start..8 + start + n]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join(format!("{name}.txt")), labels).unwrap();
}

#[test]
fn saved_models_place_new_digits() {
    let dir = tmpdir("transform");
    digit_range(&dir, "train", 0, 2000);
    digit_range(&dir, "test", 2000, 500);
    for (method, floor) in [("tsne", 0.75), ("umap", 0.75)] {
        let model = format!("{method}.ember");
        let r = ember(
            &dir,
            &[
                method,
                "train.npy",
                "-o",
                "fit.npy",
                "--save-model",
                &model,
                "-q",
            ],
        );
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let run = |threads: &str, out: &str| {
            let r = ember(
                &dir,
                &[
                    "transform",
                    &model,
                    "test.npy",
                    "-o",
                    out,
                    "--labels",
                    "test.txt",
                    "--reference-labels",
                    "train.txt",
                    "--threads",
                    threads,
                    "-q",
                ],
            );
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            String::from_utf8_lossy(&r.stdout).to_string()
        };
        let report = run("2", "placed2.npy");
        let acc: f64 = report
            .trim()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("no accuracy in '{report}'"));
        println!("{method}: {report}");
        assert!(acc >= floor, "{method}: transform accuracy {acc}");
        run("1", "placed1.npy");
        assert_eq!(
            std::fs::read(dir.join("placed1.npy")).unwrap(),
            std::fs::read(dir.join("placed2.npy")).unwrap(),
            "{method}: the thread count changed the result"
        );
    }

    // Damaged and mismatched inputs: one line, non-zero exit, no output.
    let good = std::fs::read(dir.join("tsne.ember")).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    std::fs::write(dir.join("flipped.ember"), flipped).unwrap();
    std::fs::write(dir.join("short.ember"), &good[..good.len() / 2]).unwrap();
    let mut swapped = good.clone();
    // Version and byte-order mark as a big-endian writer would put them.
    swapped[8..12].copy_from_slice(&1u32.to_be_bytes());
    swapped[12..16].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    std::fs::write(dir.join("swapped.ember"), swapped).unwrap();
    let mut future = good.clone();
    future[8] = 9;
    std::fs::write(dir.join("future.ember"), future).unwrap();
    std::fs::write(dir.join("narrow.npy"), npy_f32(60, 4, &blobs(60, 4))).unwrap();
    let t = |args: &[&str], expect: &str| assert_command_fails(&dir, "transform", args, expect);
    t(&["flipped.ember", "test.npy"], "checksum mismatch");
    t(&["short.ember", "test.npy"], "truncated");
    t(&["swapped.ember", "test.npy"], "byte-swapped");
    t(&["future.ember", "test.npy"], "version 9 is not supported");
    t(&["test.npy", "test.npy"], "not a valid ember model");
    t(&["missing.ember", "test.npy"], "cannot read");
    t(
        &["tsne.ember", "narrow.npy"],
        "4 columns, but the model was fitted on data with 784",
    );
    t(&["tsne.ember", "missing.npy"], "cannot read");
    assert_fails(
        &dir,
        &[
            "narrow.npy",
            "--perplexity",
            "5",
            "--save-model",
            "no/such/dir/m.ember",
        ],
        "does not exist",
    );
}
