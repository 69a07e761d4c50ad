//! The least a keyed check of traffik's design can do, written inline with no abstraction, as
//! a yardstick for what the hardware allows (`x86_64` only): scramble the key, one 16-byte
//! load of its slot (linear probing), one quanta clock read, a GCRA-style update and one
//! `lock cmpxchg16b`. It keeps no shards, never places or reclaims keys after construction,
//! and answers nothing but "admitted": a lower bound, not a limiter.

use std::arch::x86_64::{__m128i, _mm_load_si128, _mm_storeu_si128};
use std::cell::UnsafeCell;

use traffik::{Clock, QuantaClock};

/// 16-byte slots, aligned for `movdqa` and `cmpxchg16b`: state low (top bit: occupied), key
/// high.
#[derive(Clone, Copy, Default)]
#[repr(C, align(16))]
struct Slot([u64; 2]);

const OCCUPIED: u64 = 1 << 63;

/// A fixed table of keys, each with a GCRA-like timestamp; see the module docs.
pub struct FloorTable {
    slots: Box<[UnsafeCell<Slot>]>,
    clock: QuantaClock,
}

// SAFETY: after construction slots are only read by `movdqa` (atomic for aligned 16-byte
// loads on the CPUs `new` accepts) and written by `lock cmpxchg16b`.
unsafe impl Sync for FloorTable {}

const SEED: u64 = 0x0123_4567_89ab_cdef;
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15 | 1;

impl FloorTable {
    /// `1.5 * capacity` slots (as traffik's table) holding `keys`; `None` on a CPU without
    /// `cmpxchg16b` or AVX (whose aligned 16-byte loads are atomic).
    pub fn new(keys: impl IntoIterator<Item = u64>, capacity: usize) -> Option<Self> {
        if !std::arch::is_x86_feature_detected!("cmpxchg16b")
            || !std::arch::is_x86_feature_detected!("avx")
        {
            return None;
        }
        let n = capacity * 3 / 2;
        let mut slots = vec![Slot::default(); n];
        for k in keys {
            let mut i = place(k, n);
            while slots[i].0[0] & OCCUPIED != 0 && slots[i].0[1] != k {
                i = (i + 1) % n;
            }
            slots[i] = Slot([OCCUPIED, k]);
        }
        Some(FloorTable {
            slots: slots.into_iter().map(UnsafeCell::new).collect(),
            clock: QuantaClock::new(),
        })
    }

    /// Charges one unit to `key`'s timestamp; whether the key was found and its CAS landed.
    #[inline(always)]
    pub fn check(&self, key: u64) -> bool {
        let n = self.slots.len();
        let mut i = place(key, n);
        loop {
            let p = self.slots[i].get();
            let [state, k] = load(p);
            if state & OCCUPIED == 0 {
                return false;
            }
            if k == key {
                let now = self.clock.now();
                let next = (state & !OCCUPIED).max(now) + 1;
                let old = (u128::from(k) << 64) | u128::from(state);
                let new = (u128::from(k) << 64) | u128::from(next | OCCUPIED);
                // SAFETY: `p` is a valid, aligned slot, and `new` checked for cmpxchg16b.
                return unsafe { cas(p.cast::<u128>(), old, new) };
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }
}

/// The key's home slot: a seeded multiply, folded, scaled onto `0..n` without a division.
#[inline(always)]
fn place(key: u64, n: usize) -> usize {
    let w = u128::from(key ^ SEED) * u128::from(MULTIPLIER);
    let h = (w as u64) ^ ((w >> 64) as u64);
    ((u128::from(h) * n as u128) >> 64) as usize
}

/// One aligned 16-byte load.
#[inline(always)]
fn load(p: *const Slot) -> [u64; 2] {
    let mut out = [0u64; 2];
    // SAFETY: `p` points to a live slot, 16-byte aligned (`Slot`'s alignment); the CPU has AVX
    // (checked in `new`), which makes the load atomic.
    unsafe {
        let v = _mm_load_si128(p.cast::<__m128i>());
        _mm_storeu_si128(out.as_mut_ptr().cast::<__m128i>(), v);
    }
    out
}

/// `lock cmpxchg16b` on `p`; whether it stored.
///
/// # Safety
///
/// `p` is valid and 16-byte aligned, and the CPU has `cmpxchg16b`.
#[inline(always)]
unsafe fn cas(p: *mut u128, old: u128, new: u128) -> bool {
    let ok: u8;
    // SAFETY: the caller's contract. The pointer is pinned to rsi so it cannot land in rbx,
    // which the instruction needs for the new value's low half (swapped in and out around it).
    unsafe {
        std::arch::asm!(
            "xchg {lo}, rbx",
            "lock cmpxchg16b xmmword ptr [rsi]",
            "sete {ok}",
            "mov rbx, {lo}",
            in("rsi") p,
            lo = inout(reg) new as u64 => _,
            ok = out(reg_byte) ok,
            in("rcx") (new >> 64) as u64,
            inout("rax") old as u64 => _,
            inout("rdx") (old >> 64) as u64 => _,
            options(nostack),
        );
    }
    ok != 0
}
