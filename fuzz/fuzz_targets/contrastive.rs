//! The InfoNCE family (InfoNCE, SupCon, CLIP) with every similarity on arbitrary batches:
//! never panics; a loss and gradients that are finite for finite input; a zero row under
//! cosine similarity is refused as such.
#![no_main]
use ember_core::contrastive::{Similarity, clip_loss, contrastive_scratch, info_nce, supcon};
use ember_core::{Error, MatRef, Serial};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let rows = 2 * (1 + data[0] as usize % 12);
    let d = 1 + data[1] as usize % 9;
    let sim = match data[2] % 3 {
        0 => Similarity::Cosine { tau: [0.01f32, 0.1, 1.0][data[3] as usize % 3] },
        1 => Similarity::StudentT { dof: [0.5f32, 1.0, 5.0][data[3] as usize % 3] },
        _ => Similarity::Gaussian { gamma: [0.01f32, 1.0, 10.0][data[3] as usize % 3] },
    };
    let raw = data[4] & 1 == 1;
    let body = &data[6..];
    let z: Vec<f32> = (0..rows * d)
        .map(|i| {
            if raw && body.len() >= 4 * (i + 1) {
                f32::from_le_bytes(body[4 * i..4 * i + 4].try_into().unwrap())
            } else {
                (*body.get(i).unwrap_or(&0) as f32 - 128.0) / 32.0
            }
        })
        .collect();
    let finite = z.iter().all(|v| v.is_finite() && v.abs() < 1e15);
    // Rows too short to have a direction (cosine refuses them as zero vectors).
    let zero_row = (0..rows).any(|r| {
        z[r * d..(r + 1) * d].iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() < 1e-30
    });
    let cosine = matches!(sim, Similarity::Cosine { .. });
    let zm = MatRef::dense(&z, rows, d).unwrap();
    let mut scratch = vec![0u8; contrastive_scratch(rows, rows, d).bytes()];
    let mut g = vec![0.0f32; rows * d];
    let check = |r: Result<f64, Error>, g: &[f32], what: &str| match r {
        Ok(loss) => {
            if finite {
                assert!(loss.is_finite(), "{what}: loss {loss}");
                assert!(g.iter().all(|v| v.is_finite()), "{what}: gradient not finite");
            }
        }
        Err(Error::ZeroVector { row }) => assert!(cosine && zero_row, "{what}: zero vector at {row}?"),
        // Values whose squared distances underflow or overflow f32 are refused by name.
        Err(Error::Scale { .. }) => {}
        // SupCon has nothing to contrast when every label occurs once.
        Err(Error::InvalidParameter { name: "targets", .. }) if what == "SupCon" => {}
        Err(e) => assert!(!finite, "{what}: finite input refused: {e}"),
    };
    check(info_nce(zm, sim, &Serial, &mut scratch, &mut g), &g, "InfoNCE");
    let labels: Vec<u32> = (0..rows).map(|r| body.get(r).map_or(0, |b| (b % 3) as u32)).collect();
    check(supcon(zm, &labels, sim, &Serial, &mut scratch, &mut g), &g, "SupCon");
    let half = rows / 2;
    let a = MatRef::dense(&z[..half * d], half, d).unwrap();
    let b = MatRef::dense(&z[half * d..], half, d).unwrap();
    let mut s2 = vec![0u8; contrastive_scratch(half, half, d).bytes()];
    let (mut ga, mut gb) = (vec![0.0f32; half * d], vec![0.0f32; half * d]);
    let r = clip_loss(a, b, sim, &Serial, &mut s2, &mut ga, &mut gb);
    ga.extend_from_slice(&gb);
    check(r, &ga, "CLIP");
});
