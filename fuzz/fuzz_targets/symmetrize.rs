//! Symmetrisation over arbitrary neighbour lists: never panics; rejects out-of-range
//! indices; otherwise produces a symmetric CSR with sorted, unique columns.
#![no_main]
use ember_core::Serial;
use ember_core::affinity::symmetrize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let k = 1 + data[0] as usize % 8;
    let idx: Vec<u32> = data[1..].iter().map(|&b| (b % 40) as u32).collect();
    let n = idx.len() / k;
    let idx = &idx[..n * k];
    let p = vec![1.0 / k as f32; n * k];
    let (mut ip, mut ind, mut val, mut cur) = (vec![0; n + 1], vec![0; 2 * n * k], vec![0.0; 2 * n * k], vec![0; n]);
    match symmetrize(idx, &p, k, &Serial, &mut ip, &mut ind, &mut val, &mut cur) {
        Ok(nnz) => {
            assert!(idx.iter().all(|&j| (j as usize) < n));
            assert_eq!(ip[n], nnz);
            for i in 0..n {
                let cols = &ind[ip[i]..ip[i + 1]];
                assert!(cols.windows(2).all(|w| w[0] < w[1]));
            }
        }
        Err(_) => assert!(idx.iter().any(|&j| (j as usize) >= n)),
    }
});
