//! The 128-bit atomic behind every table slot.
//!
//! `portable_atomic::AtomicU128` is correct everywhere, but on `x86_64` it picks its
//! instructions at run time through a function pointer, so every slot load and every slot CAS
//! is an indirect call the compiler cannot inline or schedule around. The table's hot path does
//! one load per probed slot and one CAS per check, so on `x86_64` this wrapper issues the two
//! instructions itself once it has checked, once per process, that the CPU makes them atomic:
//!
//! * `lock cmpxchg16b` for compare-exchange (needs CPUID `CX16`);
//! * an aligned 16-byte `movdqa` for loads, which the Intel and AMD manuals guarantee to be a
//!   single atomic access on every CPU of theirs that reports AVX (the same guarantee
//!   `portable_atomic` relies on for its own loads).
//!
//! The asm is compiled only for 64-bit-pointer `x86_64` targets with SSE2 enabled (so not for
//! x32, nor for soft-float kernel targets such as `x86_64-unknown-none`, which may not touch
//! vector registers), outside SGX enclaves and Miri, and not when built with
//! `--cfg traffik_no_wide_asm` (how `scripts/test` runs the table's tests on the fallback).
//! Anywhere else (other vendors, CPUs without those features, other architectures, Miri)
//! every operation goes to `portable_atomic`. Both paths use the same instructions on the same
//! memory, so mixing them is sound. Every `x86_64` operation is sequentially consistent, which
//! covers any ordering a caller asks for.
//!
//! The answer to "may we?" is a [`Wide`] token the table takes once when it is built and keeps
//! in a plain field, so the compiler tests it once per check rather than once per slot.

use core::sync::atomic::Ordering;

/// Which instructions 128-bit operations may use on this CPU; only [`Wide::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wide {
    #[cfg_attr(
        not(all(
            target_arch = "x86_64",
            target_pointer_width = "64",
            target_feature = "sse2",
            not(target_env = "sgx"),
            not(miri),
            not(traffik_no_wide_asm)
        )),
        allow(dead_code)
    )]
    fast: bool,
}

impl Wide {
    /// Asks the CPU (once per process; later calls read the cached answer).
    pub(crate) fn detect() -> Self {
        #[cfg(all(
            target_arch = "x86_64",
            target_pointer_width = "64",
            target_feature = "sse2",
            not(target_env = "sgx"),
            not(miri),
            not(traffik_no_wide_asm)
        ))]
        let fast = x86::usable();
        #[cfg(not(all(
            target_arch = "x86_64",
            target_pointer_width = "64",
            target_feature = "sse2",
            not(target_env = "sgx"),
            not(miri),
            not(traffik_no_wide_asm)
        )))]
        let fast = false;
        Wide { fast }
    }
}

/// A 16-byte-aligned atomic `u128`.
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct AtomicU128(portable_atomic::AtomicU128);

impl AtomicU128 {
    #[inline]
    pub(crate) const fn new(v: u128) -> Self {
        AtomicU128(portable_atomic::AtomicU128::new(v))
    }

    #[inline]
    pub(crate) fn load(&self, wide: Wide, order: Ordering) -> u128 {
        #[cfg(all(
            target_arch = "x86_64",
            target_pointer_width = "64",
            target_feature = "sse2",
            not(target_env = "sgx"),
            not(miri),
            not(traffik_no_wide_asm)
        ))]
        if wide.fast {
            // SAFETY: the pointer is valid and 16-byte aligned for the life of `self`, and
            // `wide.fast` is set only when the CPU performs this load atomically.
            return unsafe { x86::load(self.0.as_ptr()) };
        }
        let _ = wide;
        self.0.load(order)
    }

    #[inline]
    pub(crate) fn compare_exchange(
        &self,
        wide: Wide,
        current: u128,
        new: u128,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u128, u128> {
        #[cfg(all(
            target_arch = "x86_64",
            target_pointer_width = "64",
            target_feature = "sse2",
            not(target_env = "sgx"),
            not(miri),
            not(traffik_no_wide_asm)
        ))]
        if wide.fast {
            // SAFETY: as in `load`; `wide.fast` also means the CPU has `cmpxchg16b`, and
            // `as_ptr` of a shared atomic may be written through by atomic instructions.
            return unsafe { x86::compare_exchange(self.0.as_ptr(), current, new) };
        }
        let _ = wide;
        self.0.compare_exchange(current, new, success, failure)
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_pointer_width = "64",
    target_feature = "sse2",
    not(target_env = "sgx"),
    not(miri),
    not(traffik_no_wide_asm)
))]
mod x86 {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const NO: u8 = 1;
    const YES: u8 = 2;

    /// What the CPU supports, found on first use. Racing first uses all compute and store the
    /// same answer, so a plain relaxed store is enough.
    static SUPPORT: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// Whether `load` and `compare_exchange` below may be used on this CPU.
    pub(super) fn usable() -> bool {
        // Relaxed: the flag guards no other memory; it only caches a CPUID answer.
        match SUPPORT.load(Ordering::Relaxed) {
            YES => true,
            NO => false,
            _ => detect(),
        }
    }

    #[cold]
    fn detect() -> bool {
        let ok = supported();
        // Relaxed: see `SUPPORT`.
        SUPPORT.store(if ok { YES } else { NO }, Ordering::Relaxed);
        ok
    }

    /// CX16 for `cmpxchg16b`; AVX on an Intel or AMD CPU for the atomic 16-byte `movdqa`.
    fn supported() -> bool {
        use core::arch::x86_64::__cpuid;
        // CPUID is available on every x86_64 CPU (SGX enclaves, where it faults, are excluded
        // above); leaf 0 gives the vendor and the highest standard leaf.
        #[allow(unused_unsafe)]
        let (vendor, leaf1) = unsafe {
            let v = __cpuid(0);
            if v.eax < 1 {
                return false;
            }
            (v, __cpuid(1))
        };
        let id = [vendor.ebx, vendor.edx, vendor.ecx];
        // "GenuineIntel" and "AuthenticAMD" as CPUID returns them, four bytes per register.
        let intel = id == [0x756e_6547, 0x4965_6e69, 0x6c65_746e];
        let amd = id == [0x6874_7541, 0x6974_6e65, 0x444d_4163];
        let cx16 = leaf1.ecx & (1 << 13) != 0;
        let avx = leaf1.ecx & (1 << 28) != 0;
        (intel || amd) && cx16 && avx
    }

    /// Atomic 16-byte load.
    ///
    /// # Safety
    /// `src` must be valid for reads, 16-byte aligned, and `usable()` must have returned true.
    #[inline]
    pub(super) unsafe fn load(src: *mut u128) -> u128 {
        let lo: u64;
        let hi: u64;
        // SAFETY: the caller guarantees a valid, aligned pointer on a CPU where an aligned
        // `movdqa` is a single atomic access; SSE2 is enabled for this target (see the cfg).
        // Not `readonly`: without it the block is a compiler barrier for other memory
        // accesses, as an atomic load of any ordering the caller asks for must be.
        unsafe {
            asm!(
                "movdqa {v}, xmmword ptr [{src}]",
                "movq {lo}, {v}",
                "punpckhqdq {v}, {v}",
                "movq {hi}, {v}",
                src = in(reg) src,
                v = out(xmm_reg) _,
                lo = out(reg) lo,
                hi = out(reg) hi,
                options(nostack, preserves_flags),
            );
        }
        (u128::from(hi) << 64) | u128::from(lo)
    }

    /// Atomic 16-byte compare-exchange: `Ok(current)` if `*dst` was `current` and is now
    /// `new`, else `Err(actual)` with `*dst` unchanged.
    ///
    /// # Safety
    /// `dst` must be valid for writes, 16-byte aligned, and `usable()` must have returned true.
    #[inline]
    pub(super) unsafe fn compare_exchange(
        dst: *mut u128,
        current: u128,
        new: u128,
    ) -> Result<u128, u128> {
        let prev_lo: u64;
        let prev_hi: u64;
        let flag: u64;
        // SAFETY: the caller guarantees a valid, aligned pointer on a CPU with `cmpxchg16b`.
        // `cmpxchg16b` takes the new low half in `rbx`, which inline asm may not name as an
        // operand (LLVM may use it internally), so the value travels in a scratch register,
        // is exchanged into `rbx` for the one instruction, and the scratch register (now
        // holding the caller's `rbx`) is moved back. Every other register the instruction uses
        // is named explicitly, the pointer included (`rdi`), so no operand can alias the
        // scratch register or the implicit ones. The result flag goes to `cl` (free once the
        // instruction has read `rcx`); `mov` and register `xchg` leave the flags alone.
        unsafe {
            asm!(
                "xchg {rbx_save}, rbx",
                "lock cmpxchg16b xmmword ptr [rdi]",
                "sete cl",
                "mov rbx, {rbx_save}",
                rbx_save = inout(reg) new as u64 => _,
                in("rdi") dst,
                inout("rcx") (new >> 64) as u64 => flag,
                inout("rax") current as u64 => prev_lo,
                inout("rdx") (current >> 64) as u64 => prev_hi,
                options(nostack),
            );
        }
        let swapped = flag as u8;
        let prev = (u128::from(prev_hi) << 64) | u128::from(prev_lo);
        if swapped != 0 {
            Ok(prev)
        } else {
            Err(prev)
        }
    }

    #[cfg(test)]
    mod tests {
        extern crate std;
        use super::super::{AtomicU128, Wide};
        use core::sync::atomic::Ordering::Relaxed;

        #[test]
        fn the_fast_path_is_taken_exactly_where_the_cpu_allows_it() {
            // Asked independently of `supported()`: std's detection for the features, CPUID
            // leaf 0 for the vendor. A VM that hides AVX must get the portable path, and a
            // capable Intel or AMD CPU the fast one (which the benchmarks assume).
            #[allow(unused_unsafe)]
            // SAFETY: CPUID exists on every x86_64 CPU outside SGX (excluded by the cfg).
            let v = unsafe { core::arch::x86_64::__cpuid(0) };
            let mut vendor = [0u8; 12];
            vendor[..4].copy_from_slice(&v.ebx.to_le_bytes());
            vendor[4..8].copy_from_slice(&v.edx.to_le_bytes());
            vendor[8..].copy_from_slice(&v.ecx.to_le_bytes());
            let known = &vendor == b"GenuineIntel" || &vendor == b"AuthenticAMD";
            let capable = known
                && std::is_x86_feature_detected!("cmpxchg16b")
                && std::is_x86_feature_detected!("avx");
            assert_eq!(super::usable(), capable);
            assert_eq!(Wide::detect().fast, capable);
        }

        #[test]
        fn load_and_compare_exchange_agree_with_portable_atomic() {
            let w = Wide::detect();
            let values = [
                0u128,
                1,
                u128::MAX,
                1 << 64,
                (1 << 64) - 1,
                0x0123_4567_89ab_cdef << 32,
            ];
            for &a in &values {
                for &b in &values {
                    let ours = AtomicU128::new(a);
                    let theirs = portable_atomic::AtomicU128::new(a);
                    assert_eq!(ours.load(w, Relaxed), a);
                    let expect = theirs.compare_exchange(b, a ^ b ^ 7, Relaxed, Relaxed);
                    let got = ours.compare_exchange(w, b, a ^ b ^ 7, Relaxed, Relaxed);
                    assert_eq!(got, expect, "cas({a:#x} expecting {b:#x})");
                    assert_eq!(ours.load(w, Relaxed), theirs.load(Relaxed));
                }
            }
        }

        #[test]
        fn concurrent_increments_of_both_halves_are_never_lost_or_torn() {
            // Each CAS adds 1 to both halves; a torn load or a lost update would leave the
            // halves unequal or the total short.
            const PER_THREAD: u64 = 200_000;
            let w = Wide::detect();
            let cell = AtomicU128::new(0);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..PER_THREAD {
                            let mut cur = cell.load(w, Relaxed);
                            loop {
                                assert_eq!((cur >> 64) as u64, cur as u64, "torn read");
                                match cell.compare_exchange(
                                    w,
                                    cur,
                                    cur + (1 << 64) + 1,
                                    Relaxed,
                                    Relaxed,
                                ) {
                                    Ok(_) => break,
                                    Err(actual) => cur = actual,
                                }
                            }
                        }
                    });
                }
            });
            let v = cell.load(w, Relaxed);
            assert_eq!(v as u64, 2 * PER_THREAD);
            assert_eq!((v >> 64) as u64, 2 * PER_THREAD);
        }
    }
}
