//! The C API with arbitrary parameter structs and small arbitrary data: every call returns a
//! status, never EMBER_ERR_INTERNAL (a caught panic is a bug); EMBER_OK means a finite
//! embedding. Iteration and epoch counts are capped so that one input runs in milliseconds.
#![no_main]
use ember::*;
use libfuzzer_sys::fuzz_target;

fn read<T: Copy>(bytes: &[u8], default: T) -> T {
    let mut v = default;
    let n = size_of::<T>().min(bytes.len());
    // SAFETY: T is a plain repr(C) struct of integers and floats; every bit pattern is valid.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut v).cast::<u8>(), n) };
    v
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let which = data[0] % 3;
    let n = 1 + data[1] as usize % 40;
    let d = data[2] as usize % 5;
    let split = 3 + 80.min(data.len() - 3);
    let (pbytes, xbytes) = data[3..].split_at(split - 3);
    let x: Vec<f32> = (0..n * d.max(1))
        .map(|i| match xbytes.get(i) {
            Some(&b) if b == 255 => f32::NAN,
            Some(&b) => (b as f32 - 100.0) / 10.0,
            None => (i % 7) as f32,
        })
        .collect();
    let mut y = vec![0.0f32; n * 16];
    let status = unsafe {
        match which {
            0 => {
                let mut p = read(pbytes, ember_tsne_params_default());
                if data[0] & 8 == 0 {
                    p.struct_size = size_of::<ember_tsne_params>() as u32;
                }
                p.iters %= 30;
                p.early_iters %= 30;
                p.threads %= 3;
                if p.dims > 16 { return; }
                ember_tsne(x.as_ptr(), n, d, d.max(1), 1, &p, y.as_mut_ptr(), None, std::ptr::null_mut())
            }
            1 => {
                let mut p = read(pbytes, ember_umap_params_default());
                if data[0] & 8 == 0 {
                    p.struct_size = size_of::<ember_umap_params>() as u32;
                }
                p.epochs %= 20;
                p.threads %= 3;
                if p.dims > 16 { return; }
                ember_umap(x.as_ptr(), n, d, d.max(1), 1, &p, y.as_mut_ptr(), None, std::ptr::null_mut())
            }
            _ => {
                let mut p = read(pbytes, ember_ne_params_default());
                if data[0] & 8 == 0 {
                    p.struct_size = size_of::<ember_ne_params>() as u32;
                }
                p.epochs %= 20;
                p.early_epochs %= 10;
                p.threads %= 3;
                if p.dims > 16 { return; }
                ember_ne(x.as_ptr(), n, d, d.max(1), 1, &p, y.as_mut_ptr(), None, std::ptr::null_mut())
            }
        }
    };
    assert_ne!(status, ember_status::EMBER_ERR_INTERNAL, "a caught panic: {:?}", unsafe {
        std::ffi::CStr::from_ptr(ember_last_error_message())
    });
    if status == ember_status::EMBER_OK {
        assert!(y.iter().all(|v| v.is_finite()), "EMBER_OK with a non-finite embedding");
    }
});
