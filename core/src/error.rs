//! The one error type of the core. Every mistake a caller can make is a value, never a panic.

use core::fmt;

pub type Result<T> = core::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Error {
    /// A NaN or infinity in the input, at this row and column.
    NonFinite { row: usize, col: usize },
    /// Fewer points than the method needs.
    TooFewPoints { n: usize, min: usize },
    /// The input has zero columns.
    NoDimensions,
    /// A buffer's length does not match the shape it is said to hold.
    Shape {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A parameter outside its valid range.
    InvalidParameter {
        name: &'static str,
        reason: &'static str,
    },
    /// Perplexity must be below the number of points minus one.
    PerplexityTooLarge { perplexity: f32, n: usize },
    /// A caller-provided buffer is too short.
    BufferTooSmall {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    /// The observer asked to stop; outputs hold the state reached so far.
    Cancelled,
    /// A vector of zero length where a direction is needed (cosine similarity).
    ZeroVector { row: usize },
    /// Data whose squared distances overflow (`largest` above `limit`) or underflow single
    /// precision.
    Scale { largest: f32, limit: f32 },
    /// Bytes that are not a valid ember model file.
    BadModel { reason: &'static str },
    /// A model file whose length is not what its header declares.
    ModelLength { expected: usize, got: usize },
    /// A model file of a format version this build does not read.
    ModelVersion { found: u32, supported: u32 },
    /// Memory for this many bytes could not be had (std helpers only; the core allocates
    /// nothing).
    OutOfMemory { bytes: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NonFinite { row, col } => {
                write!(
                    f,
                    "non-finite value (NaN or infinity) at row {row}, column {col}"
                )
            }
            Error::TooFewPoints { n, min } => {
                write!(f, "too few points: got {n}, need at least {min}")
            }
            Error::NoDimensions => write!(f, "the data has zero columns"),
            Error::Shape {
                what,
                expected,
                got,
            } => {
                write!(f, "{what}: expected length {expected}, got {got}")
            }
            Error::InvalidParameter { name, reason } => write!(f, "invalid {name}: {reason}"),
            Error::PerplexityTooLarge { perplexity, n } => write!(
                f,
                "perplexity {perplexity} is too large for {n} points (it must be at most N - 1 = {})",
                n.saturating_sub(1)
            ),
            Error::BufferTooSmall { what, needed, got } => {
                write!(f, "buffer '{what}' too small: need {needed}, got {got}")
            }
            Error::Cancelled => write!(f, "cancelled by the progress observer"),
            Error::ZeroVector { row } => write!(
                f,
                "row {row} is a zero vector (or shorter than 1e-30): its cosine similarity is undefined"
            ),
            Error::Scale { largest, limit } if largest > limit => write!(
                f,
                "values reach {largest:e}, above {limit:e}: their squared distances overflow single precision; rescale the data (neighbour embeddings do not depend on its scale)"
            ),
            Error::Scale { largest, .. } => write!(
                f,
                "the largest value is {largest:e}: squared distances underflow single precision; rescale the data (neighbour embeddings do not depend on its scale)"
            ),
            Error::OutOfMemory { bytes } => {
                write!(f, "out of memory: could not allocate {bytes} bytes")
            }
            Error::ModelLength { expected, got } if got < expected => write!(
                f,
                "not a valid ember model: truncated: the header declares {expected} bytes, the file has {got}"
            ),
            Error::ModelLength { expected, got } => write!(
                f,
                "not a valid ember model: {got} bytes where the header declares {expected} (trailing bytes)"
            ),
            Error::BadModel { reason } => write!(f, "not a valid ember model: {reason}"),
            Error::ModelVersion { found, supported } => write!(
                f,
                "ember model format version {found} is not supported (this build reads version {supported})"
            ),
        }
    }
}

#[cfg(any(test, feature = "std"))]
impl std::error::Error for Error {}

/// Returns `InvalidParameter` unless `ok`.
pub(crate) fn ensure(ok: bool, name: &'static str, reason: &'static str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParameter { name, reason })
    }
}

/// Returns `BufferTooSmall` unless `got >= needed`.
pub(crate) fn ensure_len(what: &'static str, needed: usize, got: usize) -> Result<()> {
    if got >= needed {
        Ok(())
    } else {
        Err(Error::BufferTooSmall { what, needed, got })
    }
}
