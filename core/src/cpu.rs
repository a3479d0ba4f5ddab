//! What the CPU offers beyond the portable build, found at run time.
//!
//! `wide` fixes its vector width when the crate is compiled, and the portable x86-64 build is
//! SSE2. Kernels that gain from 256-bit vectors are written on plain lane arrays (or AVX
//! intrinsics) and run through [`on_avx2`], which compiles them a second time for AVX2 + FMA
//! and picks that copy only on CPUs that have it: the binary never executes an instruction the
//! CPU lacks.

/// AVX2 and FMA in the CPU and enabled by the OS (XSAVE of the YMM state). Always false off
/// x86-64 (and under Miri).
pub fn has_avx2_fma() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        x86::available()
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        false
    }
}

/// Runs `f` compiled for AVX2 + FMA when `avx2` is true and the CPU has both
/// ([`has_avx2_fma`]), else as built. Rust never fuses a multiply and an add by itself, so both
/// copies of plain `f32` arithmetic give the same bits; only explicit fused operations differ.
#[inline(always)]
pub(crate) fn on_avx2<R>(avx2: bool, f: impl FnOnce() -> R) -> R {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if avx2 && x86::available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { x86::with_avx2(f) };
    }
    let _ = avx2;
    f()
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86 {
    use core::arch::x86_64::{__cpuid, __cpuid_count, __get_cpuid_max, _xgetbv};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// 0 = not yet checked, 1 = no, 2 = yes.
    static STATE: AtomicU8 = AtomicU8::new(0);

    #[inline]
    pub fn available() -> bool {
        match STATE.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => {
                let yes = detect();
                STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
                yes
            }
        }
    }

    #[cold]
    fn detect() -> bool {
        // SAFETY: cpuid exists on every x86-64 CPU; xgetbv only runs when OSXSAVE says so.
        unsafe {
            let l1 = __cpuid(1);
            let (fma, osxsave, avx) = (
                l1.ecx & (1 << 12) != 0,
                l1.ecx & (1 << 27) != 0,
                l1.ecx & (1 << 28) != 0,
            );
            if !(fma && osxsave && avx) || __get_cpuid_max(0).0 < 7 {
                return false;
            }
            let ymm_enabled = _xgetbv(0) & 0b110 == 0b110;
            let avx2 = __cpuid_count(7, 0).ebx & (1 << 5) != 0;
            ymm_enabled && avx2
        }
    }

    /// `f` inlined here, so it is compiled with these features.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}
