//! The IDX reader on arbitrary bytes (any element type, lying dimensions): never panics and
//! never allocates more than the data holds; on success the shape matches the values.
#![no_main]
use ember_cli::io::parse_idx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = Vec::with_capacity(data.len() + 2);
    if data.first().is_some_and(|b| b & 1 == 1) {
        bytes.extend_from_slice(&[0, 0]); // the IDX magic's leading zeros
        bytes.extend_from_slice(&data[1..]);
    } else {
        bytes.extend_from_slice(data);
    }
    if let Ok(m) = parse_idx(&bytes, "fuzz") {
        assert_eq!(m.values.len(), m.rows * m.cols);
        assert!(m.values.len() <= bytes.len(), "more values than bytes");
    }
});
