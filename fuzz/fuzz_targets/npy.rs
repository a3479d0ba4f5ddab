//! The .npy reader on arbitrary bytes: never panics, never allocates what a header merely
//! claims (libFuzzer's -malloc_limit_mb catches that); on success the shape matches the values.
#![no_main]
use ember_cli::io::parse_npy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Most inputs get a valid magic so the fuzzer spends its time behind it.
    let mut bytes = Vec::with_capacity(data.len() + 8);
    if data.first().is_some_and(|b| b & 1 == 1) {
        bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
        bytes.extend_from_slice(&data[1..]);
    } else {
        bytes.extend_from_slice(data);
    }
    if let Ok(m) = parse_npy(&bytes, "fuzz") {
        assert_eq!(m.values.len(), m.rows * m.cols);
        assert!(m.values.len() * 4 <= bytes.len() * 4 + 64 || m.values.is_empty());
    }
});
