//! Installs the C library with capi/install.sh into a temporary prefix, checks the soname,
//! and builds and runs a C program outside the source tree with `pkg-config`.

use ember_tests::built_lib_dir;
use std::path::PathBuf;
use std::process::Command;

const PROGRAM: &str = r#"
#include <ember.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", EMBER_VERSION_MAJOR, EMBER_VERSION_MINOR, EMBER_VERSION_PATCH);
    if (strcmp(want, ember_version()) != 0) {
        fprintf(stderr, "header %s, library %s\n", want, ember_version());
        return 1;
    }
    /* Two blobs of 100 points in 5-D: t-SNE must keep them apart. */
    size_t n = 200, d = 5;
    float *x = malloc(n * d * sizeof(float)), *y = malloc(n * 2 * sizeof(float));
    unsigned s = 1;
    for (size_t i = 0; i < n * d; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 16) & 0x7fff) / 32768.0f + (i / d < n / 2 ? 0.0f : 10.0f);
    }
    ember_tsne_params p = ember_tsne_params_default();
    p.perplexity = 20.0f;
    ember_status st = ember_tsne(x, n, d, d, 1, &p, y, NULL, NULL);
    if (st != EMBER_OK) { fprintf(stderr, "%s\n", ember_last_error_message()); return 1; }
    double c0 = 0, c1 = 0;
    for (size_t i = 0; i < n / 2; i++) { c0 += y[2 * i]; c1 += y[2 * (i + n / 2)]; }
    printf("ember %s: blob centres %.2f and %.2f\n", ember_version(), c0 / (n / 2), c1 / (n / 2));
    free(x); free(y);
    return 0;
}
"#;

#[test]
fn installed_library_builds_a_program_with_pkg_config() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("install");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let prefix = tmp.join("prefix");
    let root = ember_tests::root();
    let out = Command::new("bash")
        .arg(root.join("capi/install.sh"))
        .arg(&prefix)
        .env("EMBER_LIB_DIR", built_lib_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let version = env!("CARGO_PKG_VERSION");
    let so = prefix.join(format!("lib/libember.so.{version}"));
    let dynamic = Command::new("readelf").arg("-d").arg(&so).output().unwrap();
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic.contains("Library soname: [libember.so.0]"),
        "no soname libember.so.0:\n{dynamic}"
    );

    // A program outside the source tree, built only from what pkg-config says.
    let src = tmp.join("prog.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let pc = Command::new("pkg-config")
        .args(["--cflags", "--libs", "ember"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config must be installed");
    assert!(
        pc.status.success(),
        "{}",
        String::from_utf8_lossy(&pc.stderr)
    );
    let flags = String::from_utf8_lossy(&pc.stdout).to_string();
    let exe = tmp.join("prog");
    let cc = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(&src)
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&exe)
        .current_dir(&tmp)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = Command::new(&exe)
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains(&format!("ember {version}")), "{stdout}");
    // It loaded the installed library through its soname.
    let ldd = Command::new("ldd")
        .arg(&exe)
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .output()
        .unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    assert!(
        ldd.contains("libember.so.0 =>") && ldd.contains(prefix.to_str().unwrap()),
        "{ldd}"
    );
}
