//! Shared by the examples (not an example itself: cargo only builds `examples/*.rs`).

/// FNV-1a over 32-bit words (e.g. output bits), to tell whether a change kept a result.
pub fn fnv1a(words: impl IntoIterator<Item = u32>) -> u64 {
    words.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, w| {
        (h ^ w as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
