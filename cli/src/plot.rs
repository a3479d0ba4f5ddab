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
    let img = render(y, n, dims, labels, SIZE);
    write_png(path, SIZE, SIZE, &img)
}

/// One panel per embedding, side by side, each captioned (digits, '.', '-', 's', '=').
pub fn write_panels(
    path: &Path,
    panels: &[(String, &[f32])],
    n: usize,
    dims: usize,
    labels: Option<&[u32]>,
) -> Result<(), String> {
    let w = PANEL * panels.len();
    let mut img = vec![255.0f32; w * PANEL * 3];
    for (p, (caption, y)) in panels.iter().enumerate() {
        let mut panel = render(y, n, dims, labels, PANEL);
        caption_into(&mut panel, PANEL, caption);
        for row in 0..PANEL {
            let dst = (row * w + p * PANEL) * 3;
            img[dst..dst + PANEL * 3]
                .copy_from_slice(&panel[row * PANEL * 3..(row + 1) * PANEL * 3]);
        }
    }
    write_png(path, w, PANEL, &img)
}

const PANEL: usize = 600;

/// 3 × 5 glyphs, one row per u8 (low three bits, leftmost pixel first).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '=' => [0, 7, 0, 7, 0],
        's' => [0, 7, 4, 1, 7],
        ' ' => [0; 5],
        _ => return None,
    })
}

fn caption_into(img: &mut [f32], size: usize, text: &str) {
    const SCALE: usize = 4;
    let (x0, y0) = (12, 10);
    for (ci, c) in text.chars().enumerate() {
        let Some(g) = glyph(c) else { continue };
        for (gy, bits) in g.iter().enumerate() {
            for gx in 0..3 {
                if bits & (4 >> gx) == 0 {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let (px, py) = (x0 + (ci * 4 + gx) * SCALE + dx, y0 + gy * SCALE + dy);
                        if px < size && py < size {
                            let o = (py * size + px) * 3;
                            img[o..o + 3].fill(0.0);
                        }
                    }
                }
            }
        }
    }
}

fn write_png(path: &Path, w: usize, h: usize, img: &[f32]) -> Result<(), String> {
    let bytes: Vec<u8> = img
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    crate::io::write_atomically(path, |out| {
        let mut enc = png::Encoder::new(out, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(std::io::Error::other)?;
        wr.write_image_data(&bytes).map_err(std::io::Error::other)?;
        wr.finish().map_err(std::io::Error::other)
    })
}

/// A `size × size` RGB image (floats 0–255) of the embedding.
fn render(y: &[f32], n: usize, dims: usize, labels: Option<&[u32]>, size: usize) -> Vec<f32> {
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
    let sz = size as f32;
    let span = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(f32::MIN_POSITIVE);
    let scale = (sz - 2.0 * MARGIN) / span;
    let off = [
        MARGIN + 0.5 * ((sz - 2.0 * MARGIN) - (hi[0] - lo[0]) * scale),
        MARGIN + 0.5 * ((sz - 2.0 * MARGIN) - (hi[1] - lo[1]) * scale),
    ];
    let mut img = vec![255.0f32; size * size * 3];
    let r = RADIUS.ceil() as i64;
    for i in 0..n {
        let (a, b) = point(i);
        let cx = off[0] + (a - lo[0]) * scale;
        let cy = sz - (off[1] + (b - lo[1]) * scale);
        let col = PALETTE[labels.map(|l| l[i] as usize % PALETTE.len()).unwrap_or(0)];
        for dy in -r..=r {
            for dx in -r..=r {
                let (px, py) = (cx as i64 + dx, cy as i64 + dy);
                if px < 0 || py < 0 || px >= size as i64 || py >= size as i64 {
                    continue;
                }
                let d = ((px as f32 + 0.5 - cx).powi(2) + (py as f32 + 0.5 - cy).powi(2)).sqrt();
                let cover = (RADIUS + 0.5 - d).clamp(0.0, 1.0) * ALPHA;
                if cover > 0.0 {
                    let o = (py as usize * size + px as usize) * 3;
                    for c in 0..3 {
                        img[o + c] += (col[c] as f32 - img[o + c]) * cover;
                    }
                }
            }
        }
    }
    img
}
