//! The model file reader on arbitrary bytes: never panics, never allocates what the header
//! merely claims; what it accepts writes back to the same bytes and can place a new point.
//! With the first byte odd, the rest gets a correct CRC-32 appended, so the fuzzer explores
//! the fields behind the checksum.
#![no_main]
use ember_core::fitted::{FittedModel, TransformOptions};
use ember_core::model::crc32;
use ember_core::{MatRef, Serial, Silent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if first & 1 == 1 {
        let crc = crc32(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
    }
    let Ok(model) = FittedModel::from_bytes(&bytes) else { return };
    assert_eq!(model.to_bytes().unwrap(), bytes, "round trip changed the bytes");
    let h = *model.header();
    if h.input_dims <= 4096 && h.n <= 4096 {
        let q = vec![0.5f32; h.input_dims];
        let mut out = vec![0.0f32; h.dims];
        let opts = TransformOptions { iters: Some(5), ..Default::default() };
        match model.transform(MatRef::dense(&q, 1, h.input_dims).unwrap(), &opts, &Serial, &mut Silent, &mut out) {
            Ok(()) => assert!(out.iter().all(|v| v.is_finite()), "placed point not finite"),
            Err(e) => {
                // Only settings the file cannot rule out (a perplexity above the reference size).
                let s = e.to_string();
                assert!(s.contains("perplexity") || s.contains("negatives") || s.contains("neighbours"), "{s}");
            }
        }
    }
});
