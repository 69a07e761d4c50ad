//! A slot's 128-bit word (key over occupied flag and state), and placement hashing.

use crate::algorithm::Algorithm;

/// What the table needs from its own algorithm besides checks: when another key's state may
/// be reclaimed. Every `Algorithm` answers for itself; a `QuotaLimiter`'s table answers
/// for every algorithm its quotas can select. (Public in a private module: nameable by no one
/// outside the crate, but allowed in the bounds of public methods.)
pub trait Reclaim {
    /// Nanoseconds until another key's `state` decides like a fresh state, during a check
    /// running with `checking` (the table's own algorithm, already dispatched to its concrete
    /// type or copied out of a `Live`).
    fn reclaim_after<G: Algorithm>(&self, checking: &G, state: u64, now: u64) -> u64;
}

impl<A: Algorithm> Reclaim for A {
    /// Every key of a table is governed by the same algorithm: the one checking.
    #[inline]
    fn reclaim_after<G: Algorithm>(&self, checking: &G, state: u64, now: u64) -> u64 {
        checking.reset_after(state, now)
    }
}

pub(super) const OCCUPIED: u64 = 1 << 63;

#[inline]
pub(super) fn pack(key: u64, state: u64) -> u128 {
    (u128::from(key) << 64) | u128::from(state | OCCUPIED)
}

#[inline]
pub(super) fn key_of(slot: u128) -> u64 {
    (slot >> 64) as u64
}

#[inline]
pub(super) fn state_of(slot: u128) -> u64 {
    (slot as u64) & !OCCUPIED
}

#[inline]
pub(super) fn occupied(slot: u128) -> bool {
    (slot as u64) & OCCUPIED != 0
}

/// The seeded key scrambled for placement: one full 64x64 multiply, folded (high half XOR low
/// half), so every input bit reaches the top bits that pick the shard and the group. The seeds
/// are secret and random per table, so an outsider cannot aim keys at one group.
#[inline]
pub(super) fn scramble(code: u64, seed: u64, multiplier: u64) -> u64 {
    let wide = u128::from(code ^ seed) * u128::from(multiplier);
    (wide as u64) ^ ((wide >> 64) as u64)
}

/// `x * n / 2^64`: maps a uniform 64-bit value onto `0..n` without a division.
#[inline]
pub(super) fn scale(x: u64, n: usize) -> usize {
    ((u128::from(x) * n as u128) >> 64) as usize
}
