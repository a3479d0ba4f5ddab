//! Gives the shared library its soname, so programs link against `libember.so.0` and the
//! ABI's major version is what the loader checks.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libember.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
