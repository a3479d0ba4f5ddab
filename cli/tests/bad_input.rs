//! The bad-input table of ROBUSTNESS.md, run against the `ember` command. Each row is a
//! kind of bad input; each must give one line on stderr naming the problem, a non-zero exit,
//! no output file, and no panic. The observed message of every row must appear verbatim in
//! ROBUSTNESS.md, so the table there stays true (EMBER_PRINT_TABLE=1 prints the rows).

use std::path::{Path, PathBuf};
use std::process::Command;

fn npy(descr: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
    let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    npy_with_header(header, payload)
}

/// A .npy file with any header text, padded as numpy pads it.
fn npy_with_header(mut header: String, payload: &[u8]) -> Vec<u8> {
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(payload);
    out
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// 60 × 4 values in three blobs.
fn blobs() -> Vec<f32> {
    (0..240)
        .map(|i| ((i * 37 % 101) as f32) / 50.0 + if i % 4 == (i / 4) % 3 { 8.0 } else { 0.0 })
        .collect()
}

fn csv(v: &[f32]) -> String {
    v.chunks(4)
        .map(|r| {
            r.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect()
}

struct Case {
    name: &'static str,
    args: Vec<String>,
}

fn case(name: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad_input_table");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(d: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(d.join(name), bytes).unwrap();
}

#[test]
fn every_bad_input_gets_one_clear_line_and_no_output() {
    let d = dir();
    let v = blobs();
    let mut nan = v.clone();
    nan[9] = f32::NAN;
    write(&d, "nan.npy", npy("<f4", "(60, 4)", &f32s(&nan)));
    write(&d, "inf.csv", csv(&v) + "inf,1,2,3\n");
    write(&d, "neg_inf.csv", csv(&v) + "1,-inf,2,3\n");
    write(&d, "n0.npy", npy("<f4", "(0, 4)", &[]));
    write(&d, "n1.csv", "1,2,3,4\n");
    write(&d, "n2.csv", "1,2,3,4\n5,6,7,8\n");
    write(&d, "d0.npy", npy("<f4", "(60, 0)", &[]));
    write(&d, "ok.npy", npy("<f4", "(60, 4)", &f32s(&v)));
    write(
        &d,
        "big.npy",
        npy(
            "<f4",
            "(60, 4)",
            &f32s(&v.iter().map(|x| x * 1e30).collect::<Vec<_>>()),
        ),
    );
    write(
        &d,
        "tiny.npy",
        npy(
            "<f4",
            "(60, 4)",
            &f32s(&v.iter().map(|x| x * 1e-30).collect::<Vec<_>>()),
        ),
    );
    let mut trunc = npy("<f4", "(60, 4)", &f32s(&v));
    trunc.truncate(trunc.len() - 10);
    write(&d, "truncated.npy", trunc);
    write(&d, "lying.npy", npy("<f4", "(1000, 4)", &f32s(&v)));
    write(&d, "huge.npy", npy("<f4", "(1048576, 1048576)", &f32s(&v)));
    // Unclosed, deeply nested brackets: the shape of header that once hung the parser.
    let nested = format!("{{'descr': {}", "[{".repeat(40));
    write(&d, "nested.npy", npy_with_header(nested, &f32s(&v)));
    let mut idx = vec![0u8, 0, 0x08, 3];
    for dim in [1u32 << 20, 1 << 10, 1 << 10] {
        idx.extend(dim.to_be_bytes());
    }
    idx.extend([7u8; 64]);
    write(&d, "huge.idx", idx);
    write(&d, "latin1.csv", b"1,2,3,4\n5,6,\xe97,8\n");
    write(&d, "ragged.csv", "1,2,3,4\n5,6,7\n8,9,10,11\n");
    write(&d, "complex.npy", npy("<c8", "(60, 4)", &[0u8; 60 * 4 * 8]));
    write(
        &d,
        "strings.npy",
        npy("|S4", "(60, 4)", &[b'a'; 60 * 4 * 4]),
    );
    write(&d, "empty.csv", "");
    std::fs::create_dir_all(d.join("a_directory")).unwrap();
    write(
        &d,
        "model_from_data.ember",
        npy("<f4", "(60, 4)", &f32s(&v)),
    );

    let cases = [
        case("NaN in the data", &["tsne", "nan.npy"]),
        case(
            "+Inf in the data",
            &["tsne", "inf.csv", "--perplexity", "5"],
        ),
        case(
            "-Inf in the data",
            &["tsne", "neg_inf.csv", "--perplexity", "5"],
        ),
        case("N = 0", &["tsne", "n0.npy"]),
        case("N = 1", &["tsne", "n1.csv"]),
        case("N = 2 (perplexity 30)", &["tsne", "n2.csv"]),
        case("N = 2, UMAP", &["umap", "n2.csv"]),
        case("D = 0", &["tsne", "d0.npy"]),
        case("perplexity >= N", &["tsne", "ok.npy", "--perplexity", "60"]),
        case(
            "k >= N (UMAP neighbours)",
            &["umap", "ok.npy", "--neighbors", "61"],
        ),
        case(
            "k >= N (NE neighbours)",
            &["ne", "ok.npy", "--neighbors", "60"],
        ),
        case(
            "magnitudes of 1e30",
            &["tsne", "big.npy", "--perplexity", "5"],
        ),
        case(
            "magnitudes of 1e-30",
            &["tsne", "tiny.npy", "--perplexity", "5"],
        ),
        case("truncated file", &["tsne", "truncated.npy"]),
        case("header larger than the file", &["tsne", "lying.npy"]),
        case("header of 2^40 elements (.npy)", &["tsne", "huge.npy"]),
        case("header of 2^40 elements (IDX)", &["tsne", "huge.idx"]),
        case("header nested 80 deep (.npy)", &["tsne", "nested.npy"]),
        case("non-UTF-8 CSV", &["tsne", "latin1.csv"]),
        case("ragged CSV", &["tsne", "ragged.csv"]),
        case("wrong dtype (complex)", &["tsne", "complex.npy"]),
        case("wrong dtype (strings)", &["tsne", "strings.npy"]),
        case("empty file", &["tsne", "empty.csv"]),
        case("a directory as input", &["tsne", "a_directory"]),
        case("missing input", &["tsne", "missing.npy"]),
        case(
            "unwritable output path",
            &[
                "tsne",
                "ok.npy",
                "--perplexity",
                "5",
                "-o",
                "no/such/dir/out.csv",
            ],
        ),
        case(
            "output path under a file",
            &[
                "tsne",
                "ok.npy",
                "--perplexity",
                "5",
                "-o",
                "ok.npy/out.csv",
            ],
        ),
        case(
            "data file as a model",
            &["transform", "model_from_data.ember", "ok.npy"],
        ),
        case(
            "unknown output format",
            &["tsne", "ok.npy", "--perplexity", "5", "-o", "out.xlsx"],
        ),
    ];
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ROBUSTNESS.md"))
            .unwrap_or_default();
    let mut missing = Vec::new();
    for c in &cases {
        let before: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut args = c.args.clone();
        if !args.iter().any(|a| a == "-o") {
            args.extend(["-o".into(), "out.csv".into()]);
        }
        args.push("-q".into());
        let r = Command::new(env!("CARGO_BIN_EXE_ember"))
            .current_dir(&d)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr).trim_end().to_string();
        assert!(!r.status.success(), "{}: succeeded", c.name);
        assert_eq!(
            r.status.code(),
            Some(1),
            "{}: exit {:?}",
            c.name,
            r.status.code()
        );
        assert_eq!(
            err.lines().count(),
            1,
            "{}: one line expected:\n{err}",
            c.name
        );
        assert!(!err.contains("panicked"), "{}: {err}", c.name);
        let after: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(before, after, "{}: files appeared or vanished", c.name);
        let message = err.trim_start_matches("ember: error: ").to_string();
        let row = format!(
            "| {} | `ember {}` | {} |",
            c.name,
            c.args.join(" "),
            message
        );
        if std::env::var_os("EMBER_PRINT_TABLE").is_some() {
            println!("{row}");
        }
        if !doc.contains(&row) {
            missing.push(row);
        }
    }
    assert!(
        missing.is_empty(),
        "ROBUSTNESS.md lacks these rows (observed now):\n{}",
        missing.join("\n")
    );
}

/// Degenerate but valid data is embedded, not refused: identical points, constant columns,
/// and duplicated rows give a finite embedding with every method.
#[test]
fn degenerate_inputs_give_finite_embeddings() {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("degenerate_inputs");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let v = blobs();
    write(
        &d,
        "identical.npy",
        npy("<f4", "(60, 4)", &f32s(&[3.0f32; 240])),
    );
    let mut constant = v.clone();
    for r in 0..60 {
        constant[r * 4 + 1] = 7.0;
    }
    write(&d, "constant.npy", npy("<f4", "(60, 4)", &f32s(&constant)));
    let dup: Vec<f32> = v[..120].iter().chain(&v[..120]).copied().collect();
    write(&d, "duplicates.npy", npy("<f4", "(60, 4)", &f32s(&dup)));
    for file in ["identical.npy", "constant.npy", "duplicates.npy"] {
        for method in [&["tsne", "--perplexity", "5"][..], &["umap"], &["ne"]] {
            let mut args = vec![method[0], file];
            args.extend_from_slice(&method[1..]);
            args.extend_from_slice(&["-o", "out.csv", "-q"]);
            let r = Command::new(env!("CARGO_BIN_EXE_ember"))
                .current_dir(&d)
                .args(&args)
                .output()
                .unwrap();
            assert!(
                r.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            let out = std::fs::read_to_string(d.join("out.csv")).unwrap();
            assert_eq!(out.lines().count(), 60, "{args:?}");
            assert!(
                out.lines()
                    .flat_map(|l| l.split(','))
                    .all(|v| v.parse::<f32>().is_ok_and(f32::is_finite)),
                "{args:?}: non-finite output"
            );
        }
    }
}
