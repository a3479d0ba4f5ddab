//! The CSV/TSV reader on arbitrary bytes (non-UTF-8, ragged rows, odd numbers): never
//! panics; on success the shape matches the values (an empty text is zero rows, which the
//! caller refuses).
#![no_main]
use ember_cli::io::parse_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (delim, body) = match data.first() {
        Some(b) if b % 3 == 0 => (Some(b','), &data[1..]),
        Some(b) if b % 3 == 1 => (Some(b'\t'), &data[1..]),
        _ => (None, data),
    };
    if let Ok(m) = parse_text(body, "fuzz", delim) {
        assert_eq!(m.values.len(), m.rows * m.cols);
    }
});
