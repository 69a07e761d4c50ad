//! The least a keyed check of traffik's design can do, written inline with no abstraction, as
//! a yardstick for what the hardware allows (`x86_64` only): scramble the key, one 16-byte
//! load of its slot (linear probing), one quanta clock read, a GCRA-style update and one
//! `lock cmpxchg16b` (reloading and retrying if another thread changed the slot). It keeps no
//! shards, never places or reclaims keys after construction, and answers nothing but
//! "admitted": a lower bound, not a limiter. Used by the grid's `floor` rows and the HTTP
//! bench's floor layer.

use std::cell::UnsafeCell;

use traffik::{Clock, QuantaClock};

/// 16-byte slots, aligned for `movdqa` and `cmpxchg16b`: `[state, key]`, the state's top bit
/// marking an occupied slot.
#[derive(Clone, Copy, Default)]
#[repr(C, align(16))]
struct Slot([u64; 2]);

const OCCUPIED: u64 = 1 << 63;
const SEED: u64 = 0x0123_4567_89ab_cdef;
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15 | 1;

/// A fixed table of keys, each with a GCRA-like timestamp; see the module docs.
pub struct FloorTable {
    slots: Box<[UnsafeCell<Slot>]>,
    clock: QuantaClock,
}

// SAFETY: after construction slots are only read by `load` (an aligned `movdqa`, atomic on the
// CPUs `new` accepts) and written by `cas` (`lock cmpxchg16b`), so threads may share the table.
unsafe impl Sync for FloorTable {}

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

    /// Charges one nanosecond to `key`'s timestamp: `max(state, now) + 1`. Whether the key
    /// was found.
    #[inline(always)]
    pub fn check(&self, key: u64) -> bool {
        self.check_with(key, |state, now| Some(state.max(now) + 1))
    }

    /// Finds `key`, reads the clock, and stores `next(state, now)` by CAS (again on a lost
    /// race); `None` from `next` stores nothing. Whether the key was found and stored.
    #[inline(always)]
    pub fn check_with(&self, key: u64, next: impl Fn(u64, u64) -> Option<u64>) -> bool {
        let n = self.slots.len();
        let mut i = place(key, n);
        loop {
            let p = self.slots[i].get();
            // SAFETY: `p` is a live, aligned slot of this table.
            let mut slot = unsafe { load(p) };
            if slot[0] & OCCUPIED == 0 {
                return false;
            }
            if slot[1] == key {
                let now = self.clock.now();
                loop {
                    let Some(state) = next(slot[0] & !OCCUPIED, now) else {
                        return false;
                    };
                    // SAFETY: as above; `new` checked for cmpxchg16b.
                    match unsafe { cas(p, slot, [state | OCCUPIED, key]) } {
                        Ok(()) => return true,
                        Err(actual) => slot = actual,
                    }
                }
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

/// One atomic 16-byte load (`movdqa`, atomic on the AVX CPUs `FloorTable::new` accepts, as in
/// traffik's table), written in asm so that racing a `cas` is outside Rust's memory model.
///
/// # Safety
///
/// `p` is valid and 16-byte aligned.
#[inline(always)]
unsafe fn load(p: *const Slot) -> [u64; 2] {
    let (lo, hi): (u64, u64);
    // SAFETY: the caller's contract; SSE2 is part of x86_64.
    unsafe {
        std::arch::asm!(
            "movdqa {v}, xmmword ptr [{p}]",
            "movq {lo}, {v}",
            "punpckhqdq {v}, {v}",
            "movq {hi}, {v}",
            p = in(reg) p,
            v = out(xmm_reg) _,
            lo = out(reg) lo,
            hi = out(reg) hi,
            options(nostack, preserves_flags),
        );
    }
    [lo, hi]
}

/// `lock cmpxchg16b` on `p`: `Ok` if it stored, else `Err` with the slot's current value.
///
/// # Safety
///
/// `p` is valid and 16-byte aligned, and the CPU has `cmpxchg16b`.
#[inline(always)]
unsafe fn cas(p: *mut Slot, old: [u64; 2], new: [u64; 2]) -> Result<(), [u64; 2]> {
    let ok: u8;
    let (lo, hi): (u64, u64);
    // SAFETY: the caller's contract. The pointer is pinned to rsi so it cannot land in rbx,
    // which the instruction needs for the new value's low half (swapped in and out around it).
    unsafe {
        std::arch::asm!(
            "xchg {nlo}, rbx",
            "lock cmpxchg16b xmmword ptr [rsi]",
            "sete {ok}",
            "mov rbx, {nlo}",
            in("rsi") p,
            nlo = inout(reg) new[0] => _,
            ok = out(reg_byte) ok,
            in("rcx") new[1],
            inout("rax") old[0] => lo,
            inout("rdx") old[1] => hi,
            options(nostack),
        );
    }
    if ok != 0 {
        Ok(())
    } else {
        Err([lo, hi])
    }
}
