//! A scatter plot of a 2-D embedding as PNG, coloured by label.

use std::path::Path;

/// Ten distinct colours (the familiar "category10" set), repeated for more labels.
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

const SIZE: usize = 900;
const MARGIN: f32 = 20.0;
const RADIUS: f32 = 1.6;
const ALPHA: f32 = 0.55;

/// Plots the first two coordinates (a 1-D embedding is plotted against its index).
pub fn write_scatter(
    path: &Path,
    y: &[f32],
    n: usize,
    dims: usize,
    labels: Option<&[u32]>,
) -> Result<(), String> {
    let point = |i: usize| -> (f32, f32) {
        if dims >= 2 {
            (y[i * dims], y[i * dims + 1])
        } else {
            (i as f32, y[i])
        }
    };
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for i in 0..n {
        let (a, b) = point(i);
        lo = [lo[0].min(a), lo[1].min(b)];
        hi = [hi[0].max(a), hi[1].max(b)];
    }
    let span = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(f32::MIN_POSITIVE);
    let scale = (SIZE as f32 - 2.0 * MARGIN) / span;
    let off = [
        MARGIN + 0.5 * ((SIZE as f32 - 2.0 * MARGIN) - (hi[0] - lo[0]) * scale),
        MARGIN + 0.5 * ((SIZE as f32 - 2.0 * MARGIN) - (hi[1] - lo[1]) * scale),
    ];
    let mut img = vec![255.0f32; SIZE * SIZE * 3];
    let r = RADIUS.ceil() as i64;
    for i in 0..n {
        let (a, b) = point(i);
        let cx = off[0] + (a - lo[0]) * scale;
        let cy = SIZE as f32 - (off[1] + (b - lo[1]) * scale);
        let col = PALETTE[labels.map(|l| l[i] as usize % PALETTE.len()).unwrap_or(0)];
        for dy in -r..=r {
            for dx in -r..=r {
                let (px, py) = (cx as i64 + dx, cy as i64 + dy);
                if px < 0 || py < 0 || px >= SIZE as i64 || py >= SIZE as i64 {
                    continue;
                }
                let d = ((px as f32 + 0.5 - cx).powi(2) + (py as f32 + 0.5 - cy).powi(2)).sqrt();
                let cover = (RADIUS + 0.5 - d).clamp(0.0, 1.0) * ALPHA;
                if cover > 0.0 {
                    let o = (py as usize * SIZE + px as usize) * 3;
                    for c in 0..3 {
                        img[o + c] += (col[c] as f32 - img[o + c]) * cover;
                    }
                }
            }
        }
    }
    let bytes: Vec<u8> = img
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    crate::io::write_atomically(path, |w| {
        let mut enc = png::Encoder::new(w, SIZE as u32, SIZE as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(std::io::Error::other)?;
        wr.write_image_data(&bytes).map_err(std::io::Error::other)?;
        wr.finish().map_err(std::io::Error::other)
    })
}
