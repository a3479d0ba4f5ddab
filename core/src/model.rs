//! Fitted models and their file format.
//!
//! A model is what transform needs: the reference points (projected, when the fit reduced
//! its data, together with the basis), their embedding, the metric, and the method's
//! settings. The file is little-endian whatever the machine, versioned, and ends in a CRC-32
//! of everything before it:
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic `EMBERMDL` |
//! | 8 | u32 format version (1) |
//! | 12 | u32 byte-order mark 0x01020304 (reads 0x04030201 when byte-swapped) |
//! | 16 | u32 method: 1 t-SNE, 2 UMAP |
//! | 20 | u32 metric: 0 Euclidean, 1 cosine |
//! | 24 | u64 reference points n |
//! | 32 | u64 input columns D |
//! | 40 | u64 reference columns r (r = D without a basis, r < D with one) |
//! | 48 | u64 output dimensions |
//! | 56 | u64 seed |
//! | 64 | 8 × f64 method settings (t-SNE: dof, perplexity; UMAP: a, b, neighbors, negatives, learning rate, min_dist, spread) |
//! | 128 | f32 basis r × D (only when r < D), reference n × r, embedding n × dims |
//! | end | u32 CRC-32 (IEEE) |
//!
//! Reading checks every field and the exact length before trusting any size, so a lying
//! header cannot make a reader allocate what the file does not hold.

use crate::error::{Error, Result, ensure, ensure_len};
use crate::knn::Metric;
use crate::ne::MAX_DIMS;

const MAGIC: &[u8; 8] = b"EMBERMDL";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const BYTE_ORDER_MARK: u32 = 0x0102_0304;
const HEADER_LEN: usize = 128;
const SETTINGS: usize = 8;

/// The method a model was fitted with, and the settings transform needs from the fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    Tsne {
        dof: f32,
        perplexity: f32,
    },
    Umap {
        a: f32,
        b: f32,
        /// Neighbourhood size as the fit counted it (with the point itself).
        neighbors: usize,
        negatives: usize,
        learning_rate: f32,
        min_dist: f32,
        spread: f32,
    },
}

/// Everything about a model but its arrays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Header {
    pub method: Method,
    pub metric: Metric,
    /// Reference points.
    pub n: usize,
    /// Columns of the fitted data (and of new points).
    pub input_dims: usize,
    /// Columns of the stored reference rows: `input_dims`, or fewer with a basis.
    pub ref_dims: usize,
    /// Output dimensions.
    pub dims: usize,
    pub seed: u64,
}

impl Header {
    pub fn has_basis(&self) -> bool {
        self.ref_dims < self.input_dims
    }
    pub fn basis_len(&self) -> usize {
        if self.has_basis() {
            self.ref_dims * self.input_dims
        } else {
            0
        }
    }
    pub fn reference_len(&self) -> usize {
        self.n * self.ref_dims
    }
    pub fn embedding_len(&self) -> usize {
        self.n * self.dims
    }

    /// Bytes of the encoded model, or None if the shape overflows.
    pub fn encoded_len(&self) -> Option<usize> {
        let basis = if self.has_basis() {
            self.ref_dims.checked_mul(self.input_dims)?
        } else {
            0
        };
        let floats = basis
            .checked_add(self.n.checked_mul(self.ref_dims)?)?
            .checked_add(self.n.checked_mul(self.dims)?)?;
        floats.checked_mul(4)?.checked_add(HEADER_LEN + 4)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |reason| Err(Error::BadModel { reason });
        if self.n == 0 {
            return bad("no reference points");
        }
        if self.input_dims == 0 || self.ref_dims == 0 || self.ref_dims > self.input_dims {
            return bad("column counts are inconsistent");
        }
        if !(1..=MAX_DIMS).contains(&self.dims) {
            return bad("output dimensions must be 1 to 16");
        }
        if self.encoded_len().is_none() {
            return bad("the declared shape overflows");
        }
        let pos = |v: f32| v.is_finite() && v > 0.0;
        match self.method {
            Method::Tsne { dof, perplexity } => {
                if !pos(dof) || !pos(perplexity) {
                    return bad("t-SNE settings out of range");
                }
            }
            Method::Umap {
                a,
                b,
                neighbors,
                negatives,
                learning_rate,
                min_dist,
                spread,
            } => {
                let ok = pos(a)
                    && pos(b)
                    && neighbors > 0
                    && negatives <= crate::ne::MAX_NEGATIVES
                    && pos(learning_rate)
                    && min_dist.is_finite()
                    && min_dist >= 0.0
                    && pos(spread);
                if !ok {
                    return bad("UMAP settings out of range");
                }
            }
        }
        Ok(())
    }

    fn settings(&self) -> [f64; SETTINGS] {
        let mut s = [0.0f64; SETTINGS];
        match self.method {
            Method::Tsne { dof, perplexity } => {
                s[0] = dof as f64;
                s[1] = perplexity as f64;
            }
            Method::Umap {
                a,
                b,
                neighbors,
                negatives,
                learning_rate,
                min_dist,
                spread,
            } => {
                s[..7].copy_from_slice(&[
                    a as f64,
                    b as f64,
                    neighbors as f64,
                    negatives as f64,
                    learning_rate as f64,
                    min_dist as f64,
                    spread as f64,
                ]);
            }
        }
        s
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib), one table lookup per byte.
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut b = 0;
            while b < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                b += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in bytes {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) {
    out[*at..*at + bytes.len()].copy_from_slice(bytes);
    *at += bytes.len();
}

/// Writes the model into `out` (exactly `header.encoded_len()` bytes).
pub fn encode(
    header: &Header,
    basis: &[f32],
    reference: &[f32],
    embedding: &[f32],
    out: &mut [u8],
) -> Result<()> {
    header.validate()?;
    ensure_len("basis", header.basis_len(), basis.len())?;
    ensure_len("reference", header.reference_len(), reference.len())?;
    ensure_len("embedding", header.embedding_len(), embedding.len())?;
    let total = header.encoded_len().unwrap_or(usize::MAX);
    ensure_len("model bytes", total, out.len())?;
    let mut at = 0;
    put(out, &mut at, MAGIC);
    put(out, &mut at, &FORMAT_VERSION.to_le_bytes());
    put(out, &mut at, &BYTE_ORDER_MARK.to_le_bytes());
    let method: u32 = match header.method {
        Method::Tsne { .. } => 1,
        Method::Umap { .. } => 2,
    };
    put(out, &mut at, &method.to_le_bytes());
    let metric: u32 = match header.metric {
        Metric::SqEuclidean => 0,
        Metric::Cosine => 1,
    };
    put(out, &mut at, &metric.to_le_bytes());
    for v in [header.n, header.input_dims, header.ref_dims, header.dims] {
        put(out, &mut at, &(v as u64).to_le_bytes());
    }
    put(out, &mut at, &header.seed.to_le_bytes());
    for v in header.settings() {
        put(out, &mut at, &v.to_le_bytes());
    }
    debug_assert_eq!(at, HEADER_LEN);
    for part in [basis, reference, embedding] {
        for v in part {
            put(out, &mut at, &v.to_le_bytes());
        }
    }
    let crc = crc32(&out[..at]);
    put(out, &mut at, &crc.to_le_bytes());
    Ok(())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn f64_at(b: &[u8], at: usize) -> f64 {
    f64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Reads and checks a model's header, its exact length and its checksum. Nothing is
/// allocated; the sizes it returns are backed by the bytes given.
pub fn read_header(bytes: &[u8]) -> Result<Header> {
    let bad = |reason| Err(Error::BadModel { reason });
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return bad("missing the EMBERMDL signature (not a model file, or empty)");
    }
    let bom = u32_at(bytes, 12);
    if bom == BYTE_ORDER_MARK.swap_bytes() {
        return bad("the file is byte-swapped (big-endian); ember models are little-endian");
    }
    if bom != BYTE_ORDER_MARK {
        return bad("byte-order mark is damaged");
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(Error::ModelVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes.len() < HEADER_LEN + 4 {
        return Err(Error::ModelLength {
            expected: HEADER_LEN + 4,
            got: bytes.len(),
        });
    }
    let metric = match u32_at(bytes, 20) {
        0 => Metric::SqEuclidean,
        1 => Metric::Cosine,
        _ => return bad("unknown metric"),
    };
    let size = |at: usize| usize::try_from(u64_at(bytes, at)).ok();
    let (Some(n), Some(input_dims), Some(ref_dims), Some(dims)) =
        (size(24), size(32), size(40), size(48))
    else {
        return bad("a declared size does not fit this machine");
    };
    let s: [f64; SETTINGS] = core::array::from_fn(|i| f64_at(bytes, 64 + 8 * i));
    let count = |v: f64| {
        if v.is_finite() && v >= 0.0 && v == libm::floor(v) && v < 1e12 {
            Some(v as usize)
        } else {
            None
        }
    };
    let method = match u32_at(bytes, 16) {
        1 => Method::Tsne {
            dof: s[0] as f32,
            perplexity: s[1] as f32,
        },
        2 => {
            let (Some(neighbors), Some(negatives)) = (count(s[2]), count(s[3])) else {
                return bad("UMAP settings out of range");
            };
            Method::Umap {
                a: s[0] as f32,
                b: s[1] as f32,
                neighbors,
                negatives,
                learning_rate: s[4] as f32,
                min_dist: s[5] as f32,
                spread: s[6] as f32,
            }
        }
        _ => return bad("unknown method"),
    };
    let header = Header {
        method,
        metric,
        n,
        input_dims,
        ref_dims,
        dims,
        seed: u64_at(bytes, 56),
    };
    header.validate()?;
    let total = header.encoded_len().unwrap_or(usize::MAX);
    if bytes.len() != total {
        return Err(Error::ModelLength {
            expected: total,
            got: bytes.len(),
        });
    }
    let stored = u32_at(bytes, total - 4);
    if crc32(&bytes[..total - 4]) != stored {
        return bad("checksum mismatch (the file is corrupt)");
    }
    Ok(header)
}

/// Copies a checked model's arrays out of `bytes` (from `read_header`).
pub fn decode(
    bytes: &[u8],
    header: &Header,
    basis: &mut [f32],
    reference: &mut [f32],
    embedding: &mut [f32],
) -> Result<()> {
    ensure(
        header.encoded_len() == Some(bytes.len()),
        "model bytes",
        "do not match the header",
    )?;
    ensure_len("basis", header.basis_len(), basis.len())?;
    ensure_len("reference", header.reference_len(), reference.len())?;
    ensure_len("embedding", header.embedding_len(), embedding.len())?;
    let mut at = HEADER_LEN;
    for part in [basis, reference, embedding] {
        for v in part.iter_mut() {
            *v = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
            at += 4;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn sample() -> (Header, Vec<f32>, Vec<f32>, Vec<f32>) {
        let h = Header {
            method: Method::Umap {
                a: 1.577,
                b: 0.895,
                neighbors: 15,
                negatives: 5,
                learning_rate: 1.0,
                min_dist: 0.1,
                spread: 1.0,
            },
            metric: Metric::Cosine,
            n: 5,
            input_dims: 4,
            ref_dims: 3,
            dims: 2,
            seed: 7,
        };
        let basis: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let reference: Vec<f32> = (0..15).map(|i| -(i as f32)).collect();
        let embedding: Vec<f32> = (0..10).map(|i| i as f32 / 3.0).collect();
        (h, basis, reference, embedding)
    }

    fn encoded() -> (Header, Vec<u8>) {
        let (h, b, r, e) = sample();
        let mut out = vec![0u8; h.encoded_len().unwrap()];
        encode(&h, &b, &r, &e, &mut out).unwrap();
        (h, out)
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32 check value of "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip_is_exact() {
        let (h, b, r, e) = sample();
        let (_, bytes) = encoded();
        let got = read_header(&bytes).unwrap();
        assert_eq!(got, h);
        let (mut b2, mut r2, mut e2) = (vec![0.0; 12], vec![0.0; 15], vec![0.0; 10]);
        decode(&bytes, &got, &mut b2, &mut r2, &mut e2).unwrap();
        assert_eq!((b2, r2, e2), (b, r, e));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let (_, bytes) = encoded();
        for len in 0..bytes.len() {
            assert!(read_header(&bytes[..len]).is_err(), "truncated to {len}");
        }
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            assert!(read_header(&b).is_err(), "flipped byte {at}");
        }
    }

    #[test]
    fn wrong_version_endianness_and_lying_sizes_are_named() {
        let (_, bytes) = encoded();
        let mut v = bytes.clone();
        v[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            read_header(&v),
            Err(Error::ModelVersion {
                found: 2,
                supported: 1
            })
        );
        let mut swapped = bytes.clone();
        swapped[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        swapped[12..16].copy_from_slice(&BYTE_ORDER_MARK.to_be_bytes());
        let e = read_header(&swapped).unwrap_err();
        assert!(std::format!("{e}").contains("byte-swapped"), "{e}");
        // A header claiming 2^40 points is refused by length, before anything is allocated.
        let mut lie = bytes.clone();
        lie[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let e = read_header(&lie).unwrap_err();
        assert!(std::format!("{e}").contains("truncated"), "{e}");
        let mut huge = bytes.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_header(&huge).is_err());
        assert!(read_header(b"not a model at all, just text....").is_err());
    }
}
