//! File formats: reading matrices and labels (.npy, CSV/TSV, IDX, each optionally gzipped)
//! and writing embeddings without ever leaving a half-written file behind.

use std::io::{Read, Write};
use std::path::Path;

type Res<T> = Result<T, String>;

/// A dense row-major matrix read from a file.
pub struct Matrix {
    pub values: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

/// Class labels mapped to 0..C in sorted order of the original values.
pub struct Labels {
    pub ids: Vec<u32>,
}

impl Labels {
    pub fn check_count(&self, rows: usize) -> Res<()> {
        if self.ids.len() == rows {
            Ok(())
        } else {
            Err(format!(
                "labels: {} labels for {} data rows",
                self.ids.len(),
                rows
            ))
        }
    }
}

pub fn read_file(path: &Path) -> Res<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn gunzip(bytes: &[u8], name: &str) -> Res<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format!("{name}: corrupt or truncated gzip data: {e}"))?;
    Ok(out)
}

fn maybe_gunzip(bytes: Vec<u8>, name: &str) -> Res<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        gunzip(&bytes, name)
    } else {
        Ok(bytes)
    }
}

fn is_idx(b: &[u8]) -> bool {
    b.len() >= 4
        && b[0] == 0
        && b[1] == 0
        && matches!(b[2], 0x08 | 0x09 | 0x0B | 0x0C | 0x0D | 0x0E)
        && (1..=8).contains(&b[3])
}

pub fn read_matrix(path: &Path) -> Res<Matrix> {
    let bytes = read_file(path)?;
    parse_matrix_named(bytes, &path.display().to_string(), text_delimiter(path))
}

/// Parses bytes whose format is recognised by content (npy magic, IDX magic, else text).
pub fn parse_matrix(bytes: &[u8], name: &str) -> Res<Matrix> {
    parse_matrix_named(bytes.to_vec(), name, None)
}

fn text_delimiter(path: &Path) -> Option<u8> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".tsv") || name.ends_with(".tab") {
        Some(b'\t')
    } else if name.ends_with(".csv") {
        Some(b',')
    } else {
        None
    }
}

fn parse_matrix_named(bytes: Vec<u8>, name: &str, delim: Option<u8>) -> Res<Matrix> {
    let bytes = maybe_gunzip(bytes, name)?;
    let m = if bytes.starts_with(b"\x93NUMPY") {
        parse_npy(&bytes, name)?
    } else if is_idx(&bytes) {
        parse_idx(&bytes, name)?
    } else {
        parse_text(&bytes, name, delim)?
    };
    if m.rows == 0 {
        return Err(format!("{name}: no data rows"));
    }
    if m.cols == 0 {
        return Err(format!("{name}: zero columns (D = 0)"));
    }
    Ok(m)
}

fn shape_2d(shape: &[u64], name: &str) -> Res<(usize, usize)> {
    match *shape {
        [n] => Ok((n as usize, 1)),
        [n, d] => Ok((n as usize, d as usize)),
        [n, ref rest @ ..] => rest
            .iter()
            .try_fold(1u64, |a, &b| a.checked_mul(b))
            .map(|c| (n as usize, c as usize))
            .ok_or_else(|| format!("{name}: the declared shape overflows")),
        [] => Err(format!(
            "{name}: a 0-dimensional array is not a data matrix"
        )),
    }
}

/// Deepest bracket nesting accepted in a .npy header. A plain array's header is a dict
/// holding a shape tuple (depth 2); the literal parser behind `npyz` backtracks
/// exponentially on deep unclosed nesting (found by fuzzing: 13 levels in a 21-byte file
/// took seconds), so deeper headers are refused before it sees them.
const NPY_MAX_NESTING: usize = 4;

/// The bracket nesting depth of a .npy header, if the header can be located.
fn npy_header_depth(bytes: &[u8]) -> Option<usize> {
    let (len_at, width) = match *bytes.get(6)? {
        1 => (8, 2),
        _ => (8, 4),
    };
    let raw = bytes.get(len_at..len_at + width)?;
    let len = raw.iter().rev().fold(0usize, |a, &b| a << 8 | b as usize);
    let start = len_at + width;
    let header = bytes.get(start..start.saturating_add(len).min(bytes.len()))?;
    let (mut depth, mut deepest) = (0usize, 0usize);
    for &c in header {
        match c {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Some(deepest)
}

/// Threads the loader may use (0 = all cores), as `--threads` says.
static LOAD_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets the threads the loader may use (0 = all cores).
pub fn use_threads(threads: usize) {
    LOAD_THREADS.store(threads, std::sync::atomic::Ordering::Relaxed);
}

/// The values of `raw`, `W` bytes each, converted by `f`, on the threads `use_threads` allows:
/// writing a large matrix's f32 copy is mostly the kernel faulting in fresh pages, which one
/// thread alone does at about half the speed of two.
fn values_from<const W: usize>(raw: &[u8], f: impl Fn([u8; W]) -> f32 + Sync) -> Vec<f32> {
    let len = raw.len() / W;
    let mut out = Vec::with_capacity(len);
    let threads = match LOAD_THREADS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |t| t.get()),
        t => t,
    };
    // Small inputs are not worth a thread.
    let chunk = len.div_ceil(threads).max(1 << 20);
    let convert = |o: &mut [std::mem::MaybeUninit<f32>], r: &[u8]| {
        for (o, c) in o.iter_mut().zip(r.chunks_exact(W)) {
            o.write(f(c.try_into().unwrap()));
        }
    };
    std::thread::scope(|s| {
        let mut parts = out.spare_capacity_mut()[..len]
            .chunks_mut(chunk)
            .zip(raw.chunks(chunk * W));
        // The first part on this thread (for small inputs the only one), the rest beside it.
        let first = parts.next();
        for (o, r) in parts {
            s.spawn(|| convert(o, r));
        }
        if let Some((o, r)) = first {
            convert(o, r);
        }
    });
    // SAFETY: the chunks cover the first `len` slots and every one was written.
    unsafe { out.set_len(len) };
    out
}

pub fn parse_npy(bytes: &[u8], name: &str) -> Res<Matrix> {
    if npy_header_depth(bytes).is_some_and(|d| d > NPY_MAX_NESTING) {
        return Err(format!(
            "{name}: malformed .npy header: brackets nested deeper than {NPY_MAX_NESTING}"
        ));
    }
    let npy =
        npyz::NpyFile::new(bytes).map_err(|e| format!("{name}: malformed .npy header: {e}"))?;
    let (rows, cols) = shape_2d(npy.shape(), name)?;
    let fortran = npy.order() == npyz::Order::Fortran;
    let ty = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => {
            return Err(format!(
                "{name}: unsupported .npy dtype {other:?} (use f32, f64 or integers)"
            ));
        }
    };
    // Check the declared size against the bytes present before anything is read or allocated.
    let data_start = match bytes.get(6) {
        Some(1) => bytes
            .get(8..10)
            .map(|h| 10 + u16::from_le_bytes([h[0], h[1]]) as usize),
        _ => bytes
            .get(8..12)
            .map(|h| 12 + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize),
    };
    let item: Option<usize> = ty.get(2..).and_then(|n| n.parse().ok());
    let declared = rows
        .checked_mul(cols)
        .and_then(|c| c.checked_mul(item.unwrap_or(1)));
    let present = data_start.map_or(0, |d| bytes.len().saturating_sub(d));
    if declared.is_none_or(|b| b > present) {
        return Err(format!(
            "{name}: truncated .npy data: the header declares {rows} × {cols} {ty} ({} bytes), the file holds {present}",
            declared.map_or("more than 2^64".to_string(), |b| b.to_string())
        ));
    }
    let trunc = |e: std::io::Error| {
        format!("{name}: truncated or malformed .npy data ({rows} × {cols} {ty} expected): {e}")
    };
    // The common layouts straight from the bytes (the generic reader goes value by value).
    let raw = data_start.and_then(|d| bytes.get(d..d + declared?));
    let values: Vec<f32> = match (ty.as_str(), raw) {
        ("|u1", Some(raw)) => values_from(raw, |[b]| f32::from(b)),
        ("<f4", Some(raw)) => values_from(raw, f32::from_le_bytes),
        _ => parse_npy_values(npy, &ty, name, trunc)?,
    };
    if values.len() != rows * cols {
        return Err(format!(
            "{name}: truncated .npy data: expected {} values, found {}",
            rows * cols,
            values.len()
        ));
    }
    // (With no rows there is nothing to reorder; a declared (0, 2^62) must not loop 2^62 times.)
    let values = if fortran && cols > 1 && rows > 0 {
        transpose(&values, cols, rows)
    } else {
        values
    };
    Ok(Matrix { values, rows, cols })
}

/// Any supported dtype and byte order, value by value through `npyz`.
fn parse_npy_values(
    npy: npyz::NpyFile<&[u8]>,
    ty: &str,
    name: &str,
    trunc: impl Fn(std::io::Error) -> String + Copy,
) -> Res<Vec<f32>> {
    Ok(match &ty[1..] {
        "f4" => npy.into_vec::<f32>().map_err(trunc)?,
        "f8" => npy
            .into_vec::<f64>()
            .map_err(trunc)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        "u1" => npy
            .into_vec::<u8>()
            .map_err(trunc)?
            .into_iter()
            .map(f32::from)
            .collect(),
        "i1" => npy
            .into_vec::<i8>()
            .map_err(trunc)?
            .into_iter()
            .map(f32::from)
            .collect(),
        "u2" => npy
            .into_vec::<u16>()
            .map_err(trunc)?
            .into_iter()
            .map(f32::from)
            .collect(),
        "i2" => npy
            .into_vec::<i16>()
            .map_err(trunc)?
            .into_iter()
            .map(f32::from)
            .collect(),
        "i4" => npy
            .into_vec::<i32>()
            .map_err(trunc)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        "i8" => npy
            .into_vec::<i64>()
            .map_err(trunc)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        _ => {
            return Err(format!(
                "{name}: unsupported .npy dtype '{ty}' (use f32, f64, u8 or integers)"
            ));
        }
    })
}

/// Column-major (rows × cols) to row-major: the input is `cols` runs of `rows` values.
fn transpose(v: &[f32], cols: usize, rows: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for c in 0..cols {
        for r in 0..rows {
            out[r * cols + c] = v[c * rows + r];
        }
    }
    out
}

pub fn parse_idx(b: &[u8], name: &str) -> Res<Matrix> {
    if b.len() < 4 {
        return Err(format!("{name}: truncated IDX header"));
    }
    let nd = b[3] as usize;
    let header = 4 + 4 * nd;
    if b.len() < header {
        return Err(format!("{name}: truncated IDX header"));
    }
    let dims: Vec<u64> = (0..nd)
        .map(|i| u32::from_be_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as u64)
        .collect();
    let (rows, cols) = shape_2d(&dims, name)?;
    let size = match b[2] {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        _ => 8,
    };
    let need = rows
        .checked_mul(cols)
        .and_then(|c| c.checked_mul(size))
        .ok_or_else(|| format!("{name}: IDX dimensions overflow"))?;
    let body = &b[header..];
    if body.len() < need {
        return Err(format!(
            "{name}: truncated IDX data: header promises {rows} × {cols} values ({need} bytes), file has {} bytes",
            body.len()
        ));
    }
    if body.len() > need {
        return Err(format!(
            "{name}: IDX file has {} bytes after the {need} bytes its header describes",
            body.len() - need
        ));
    }
    let values: Vec<f32> = match b[2] {
        0x08 => values_from(body, |[b]| f32::from(b)),
        0x09 => body.iter().map(|&v| v as i8 as f32).collect(),
        0x0B => body
            .chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]) as f32)
            .collect(),
        0x0C => body
            .chunks_exact(4)
            .map(|c| i32::from_be_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        0x0D => body
            .chunks_exact(4)
            .map(|c| f32::from_be_bytes(c.try_into().unwrap()))
            .collect(),
        _ => body
            .chunks_exact(8)
            .map(|c| f64::from_be_bytes(c.try_into().unwrap()) as f32)
            .collect(),
    };
    Ok(Matrix { values, rows, cols })
}

pub fn parse_text(b: &[u8], name: &str, delim: Option<u8>) -> Res<Matrix> {
    let text = std::str::from_utf8(b)
        .map_err(|e| format!("{name}: not a .npy, IDX or UTF-8 text (CSV/TSV) file: {e}"))?;
    let delim = delim.unwrap_or_else(|| {
        let first = text.lines().next().unwrap_or("");
        if first.contains('\t') { b'\t' } else { b',' }
    });
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delim)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut values = Vec::new();
    let mut cols = 0;
    let mut rows = 0;
    for (r, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| format!("{name}: {e}"))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(r as u64 + 1);
        if rec.iter().all(|c| c.is_empty()) {
            continue;
        }
        // A first row with no numbers at all is a header.
        if rows == 0
            && cols == 0
            && rec.iter().all(|c| c.parse::<f64>().is_err())
            && values.is_empty()
        {
            cols = rec.len();
            continue;
        }
        if cols == 0 {
            cols = rec.len();
        } else if rec.len() != cols {
            return Err(format!(
                "{name}: line {line}: expected {cols} columns, found {}",
                rec.len()
            ));
        }
        for (c, cell) in rec.iter().enumerate() {
            let v: f32 = cell.parse().map_err(|_| {
                format!(
                    "{name}: line {line}, column {}: '{cell}' is not a number",
                    c + 1
                )
            })?;
            values.push(v);
        }
        rows += 1;
    }
    Ok(Matrix { values, rows, cols })
}

pub fn read_labels(path: &Path) -> Res<Labels> {
    let bytes = read_file(path)?;
    parse_labels(&bytes, &path.display().to_string())
}

/// Labels from IDX, .npy (one column) or text with one label per line (any tokens).
pub fn parse_labels(bytes: &[u8], name: &str) -> Res<Labels> {
    let bytes = maybe_gunzip(bytes.to_vec(), name)?;
    let raw: Vec<String> = if bytes.starts_with(b"\x93NUMPY") || is_idx(&bytes) {
        let m = parse_matrix_named(bytes, name, None)?;
        if m.cols != 1 {
            return Err(format!(
                "{name}: labels must be one column, found {}",
                m.cols
            ));
        }
        m.values.iter().map(|v| v.to_string()).collect()
    } else {
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| format!("{name}: labels are not UTF-8 text: {e}"))?;
        text.lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    // Numeric labels sort numerically, others lexically.
    let mut distinct: Vec<&String> = raw.iter().collect();
    let numeric = raw.iter().all(|s| s.parse::<f64>().is_ok());
    if numeric {
        distinct.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap()
                .total_cmp(&b.parse::<f64>().unwrap())
        });
    } else {
        distinct.sort();
    }
    distinct.dedup();
    let ids = raw
        .iter()
        .map(|s| {
            distinct
                .binary_search_by(|d| {
                    if numeric {
                        d.parse::<f64>()
                            .unwrap()
                            .total_cmp(&s.parse::<f64>().unwrap())
                    } else {
                        d.as_str().cmp(s.as_str())
                    }
                })
                .unwrap() as u32
        })
        .collect();
    Ok(Labels { ids })
}

#[derive(Clone, Copy)]
pub enum OutputKind {
    Npy,
    Csv,
}

impl OutputKind {
    pub fn from_path(p: &Path) -> Res<Self> {
        match p
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("npy") => Ok(OutputKind::Npy),
            Some("csv") => Ok(OutputKind::Csv),
            _ => Err(format!("{}: output must end in .npy or .csv", p.display())),
        }
    }
}

pub fn check_png_path(p: &Path) -> Res<()> {
    match p
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("png") => Ok(()),
        _ => Err(format!("{}: plot must end in .png", p.display())),
    }
}

/// Writes through a temporary file in the same directory, renamed into place on success,
/// so a failure never leaves a partial file.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Res<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The OS error alone: the temporary file's random name would only confuse.
    let err = |e: std::io::Error| {
        let e = e
            .raw_os_error()
            .map_or(e, std::io::Error::from_raw_os_error);
        format!("{}: cannot write: {e}", path.display())
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut w).map_err(err)?;
        w.flush().map_err(err)?;
    }
    // Temporary files are created private (0600); an output is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

pub fn write_embedding(
    path: &Path,
    kind: OutputKind,
    y: &[f32],
    rows: usize,
    cols: usize,
) -> Res<()> {
    write_atomically(path, |w| match kind {
        OutputKind::Csv => {
            for r in 0..rows {
                let line: Vec<String> = y[r * cols..(r + 1) * cols]
                    .iter()
                    .map(|v| v.to_string())
                    .collect();
                writeln!(w, "{}", line.join(","))?;
            }
            Ok(())
        }
        OutputKind::Npy => {
            use npyz::WriterBuilder;
            let mut npy = npyz::WriteOptions::<f32>::new()
                .default_dtype()
                .shape(&[rows as u64, cols as u64])
                .writer(w)
                .begin_nd()?;
            npy.extend(y.iter().copied())?;
            npy.finish()
        }
    })
}

/// Fails early, before a long run, when `path` could not be written: its directory must
/// exist, and `path` must not be a directory.
pub fn check_writable(path: &Path, what: &str) -> Res<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        let problem = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(format!(
            "{}: cannot write {what}: {} {problem}",
            path.display(),
            dir.display()
        ));
    }
    if path.is_dir() {
        return Err(format!(
            "{}: cannot write {what}: it is a directory",
            path.display()
        ));
    }
    Ok(())
}

/// Writes a fitted model file (atomically).
pub fn write_model(path: &Path, model: &ember_core::fitted::FittedModel) -> Res<()> {
    let bytes = model
        .to_bytes()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    write_atomically(path, |w| w.write_all(&bytes))
}

/// Reads and checks a fitted model file.
pub fn read_model(path: &Path) -> Res<ember_core::fitted::FittedModel> {
    let bytes = read_file(path)?;
    ember_core::fitted::FittedModel::from_bytes(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (fuzz target idx): a header of 2^32 - 1 × 2^32 - 1 eight-byte values
    /// overflowed the byte count.
    #[test]
    fn idx_dimensions_that_overflow_are_an_error() {
        let mut b = vec![0u8, 0, 0x0E, 2];
        b.extend(u32::MAX.to_be_bytes());
        b.extend(u32::MAX.to_be_bytes());
        let e = parse_idx(&b, "x").err().unwrap();
        assert!(e.contains("overflow") || e.contains("truncated"), "{e}");
    }

    /// A `.npy` file: version 1 header padded to 64 bytes, then `data`.
    fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        b.extend(data);
        b
    }

    /// The direct paths (u8, little-endian f32) and the value-by-value reader (big-endian
    /// f32, f64, u16, Fortran order) give the same matrix.
    #[test]
    fn every_layout_reads_to_the_same_values() {
        let v: Vec<u8> = (0..12).map(|i| (i * 21) as u8).collect();
        let want: Vec<f32> = v.iter().map(|&b| f32::from(b)).collect();
        let in_fortran_order: Vec<u8> = (0..4)
            .flat_map(|c| (0..3).map(move |r| r * 4 + c))
            .map(|i| v[i])
            .collect();
        let bytes = |f: &dyn Fn(f32) -> Vec<u8>| want.iter().flat_map(|&x| f(x)).collect();
        let cases: [(&str, bool, Vec<u8>); 6] = [
            ("|u1", false, v.clone()),
            ("|u1", true, in_fortran_order),
            ("<f4", false, bytes(&|x| x.to_le_bytes().to_vec())),
            (">f4", false, bytes(&|x| x.to_be_bytes().to_vec())),
            (
                "<f8",
                false,
                bytes(&|x| f64::from(x).to_le_bytes().to_vec()),
            ),
            ("<u2", false, bytes(&|x| (x as u16).to_le_bytes().to_vec())),
        ];
        for (descr, fortran, data) in &cases {
            let m = parse_npy(&npy_bytes(descr, *fortran, "(3, 4)", data), "x").unwrap();
            assert_eq!((m.rows, m.cols), (3, 4), "{descr} {fortran}");
            assert_eq!(m.values, want, "{descr} {fortran}");
        }
        // One byte short is refused on the direct path too.
        let short = npy_bytes("<f4", false, "(3, 4)", &[0u8; 47]);
        assert!(parse_npy(&short, "x").err().unwrap().contains("truncated"));
    }

    /// A Fortran-order header of shape (0, 2^62) needs no bytes, so it passes the size check;
    /// it must not cost a pass over 2^62 columns (suspected, not shown, in the npy fuzzing
    /// stall that ROBUSTNESS.md reports).
    #[test]
    fn an_empty_fortran_array_with_huge_columns_returns_at_once() {
        let b = npy_bytes("<f4", true, "(0, 4611686018427387904)", &[]);
        let t = std::time::Instant::now();
        let m = parse_npy(&b, "x");
        assert!(t.elapsed().as_secs() < 1);
        assert!(m.map(|m| m.values.is_empty()).unwrap_or(true));
    }

    /// Regression (fuzz target npy, slow units): deeply nested brackets in a tiny header made
    /// the header's literal parser backtrack for seconds (13 levels, 21 bytes) or far longer.
    /// They are refused at once; a normal header still parses.
    #[test]
    fn deeply_nested_npy_headers_are_refused_quickly() {
        let npy = |header: &str| {
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend((header.len() as u16).to_le_bytes());
            b.extend(header.as_bytes());
            b
        };
        let t = std::time::Instant::now();
        let e = parse_npy(&npy(&format!("{}(yFm\"", "[{".repeat(20))), "x")
            .err()
            .unwrap();
        assert!(t.elapsed().as_millis() < 100, "{:?}", t.elapsed());
        assert!(e.contains("nested deeper than 4"), "{e}");
        let mut ok = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }\n");
        ok.extend(1.0f32.to_le_bytes());
        ok.extend(2.0f32.to_le_bytes());
        assert_eq!(parse_npy(&ok, "x").unwrap().values, vec![1.0, 2.0]);
    }

    /// Regression (fuzz target idx): trailing dimensions whose product overflows.
    #[test]
    fn shapes_whose_product_overflows_are_an_error() {
        let e = shape_2d(&[2, u64::MAX, 3], "x").err().unwrap();
        assert!(e.contains("overflows"), "{e}");
    }

    /// Regression (fuzz target idx): fewer than four bytes read the type byte out of bounds.
    #[test]
    fn short_idx_input_is_an_error() {
        for len in 0..4 {
            let e = parse_idx(&[0u8, 0, 8, 1][..len], "x").err().unwrap();
            assert!(e.contains("truncated IDX header"), "{e}");
        }
    }
}
