//! Shared by the examples (not an example itself: cargo only builds `examples/*.rs`).

/// The raw little-endian f32 values of the file at `path`.
pub fn read_f32(path: &str) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
