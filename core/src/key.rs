//! How keys become the 64-bit words the table stores.
//!
//! Keys that fit in 64 bits (integers, `char`, IPv4 addresses and IPv4 socket addresses) are
//! stored **exactly**: two distinct keys never share state. Other keys (strings, byte strings,
//! IPv6 addresses, anything wrapped in [`Hashed`]) are reduced to a 64-bit fingerprint by a
//! `foldhash` hasher keyed with the limiter's secret seeds. Two distinct fingerprinted keys share
//! state only if their fingerprints collide: among `n` such keys that happens with probability
//! at most `n² / 2^65` (about 1 in 37 million for a million keys), and an outsider cannot aim
//! for a collision without the seed.

use core::hash::{Hash, Hasher};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The seeded hasher that fingerprints keys too large to store exactly.
#[derive(Clone, Debug)]
pub struct KeyHasher {
    per_hasher: u64,
    shared: foldhash::SharedSeed,
}

impl KeyHasher {
    /// A hasher keyed by four secret 64-bit seeds. In `std` programs the `traffik` crate draws
    /// them from the OS; `no_std` callers supply their own entropy.
    pub fn with_seeds(seeds: [u64; 4]) -> Self {
        // foldhash keys with 128 bits (a per-hasher word and a word it expands into its
        // shared seeds); every seed word counts towards them.
        let shared = seeds[1] ^ seeds[2].rotate_left(21) ^ seeds[3].rotate_left(42);
        KeyHasher {
            per_hasher: seeds[0],
            shared: foldhash::SharedSeed::from_u64(shared),
        }
    }

    /// The fingerprint of any hashable value.
    #[inline]
    pub fn fingerprint<T: Hash + ?Sized>(&self, value: &T) -> u64 {
        let mut h = self.hasher();
        value.hash(&mut h);
        h.finish()
    }

    /// The fingerprint of a byte string as one `write` (no length prefix or terminator: a
    /// table holds one key type, and the hasher folds the length in itself).
    #[inline]
    fn bytes(&self, bytes: &[u8]) -> u64 {
        let mut h = self.hasher();
        h.write(bytes);
        h.finish()
    }

    /// The fingerprint of a 128-bit value: one folded multiply.
    #[inline]
    fn wide(&self, x: u128) -> u64 {
        let mut h = self.hasher();
        h.write_u128(x);
        h.finish()
    }

    #[inline]
    fn hasher(&self) -> foldhash::fast::FoldHasher<'_> {
        foldhash::fast::FoldHasher::with_seed(self.per_hasher, &self.shared)
    }
}

/// A key the table can store: an exact 64-bit encoding, or a fingerprint.
///
/// Implemented for the common key types; wrap anything else that is `Hash + Eq` in [`Hashed`].
/// An implementation must be injective on the values it stores exactly, and must not mix exact
/// encodings with fingerprints unless they are kept apart (as `IpAddr` does with the top bit).
pub trait Key {
    /// The word that identifies this key in the table.
    fn encode(&self, hasher: &KeyHasher) -> u64;
}

/// Any `Hash + Eq` value as a key, by fingerprint.
///
/// ```
/// use traffik_core::{Hashed, Key, KeyHasher};
///
/// #[derive(Hash, PartialEq, Eq)]
/// struct Tenant { org: u32, user: u64 }
///
/// let hasher = KeyHasher::with_seeds([1, 2, 3, 4]);
/// let a = Hashed(Tenant { org: 1, user: 2 }).encode(&hasher);
/// let b = Hashed(Tenant { org: 1, user: 3 }).encode(&hasher);
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hashed<T: ?Sized>(pub T);

impl<T: Hash + ?Sized> Key for Hashed<T> {
    #[inline]
    fn encode(&self, hasher: &KeyHasher) -> u64 {
        hasher.fingerprint(&self.0)
    }
}

macro_rules! exact_unsigned {
    ($($t:ty),*) => {$(
        impl Key for $t {
            #[inline]
            fn encode(&self, _: &KeyHasher) -> u64 {
                *self as u64
            }
        }
    )*};
}
exact_unsigned!(u8, u16, u32, u64, usize, bool);

macro_rules! exact_signed {
    ($($t:ty => $u:ty),*) => {$(
        impl Key for $t {
            #[inline]
            fn encode(&self, _: &KeyHasher) -> u64 {
                // Reinterpret as the unsigned type of the same width: injective.
                *self as $u as u64
            }
        }
    )*};
}
exact_signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, isize => usize);

impl Key for char {
    #[inline]
    fn encode(&self, _: &KeyHasher) -> u64 {
        u64::from(*self)
    }
}

impl Key for SocketAddrV6 {
    #[inline]
    fn encode(&self, hasher: &KeyHasher) -> u64 {
        hasher.fingerprint(self)
    }
}

macro_rules! fingerprinted_bytes {
    ($($t:ty),*) => {$(
        impl Key for $t {
            #[inline]
            fn encode(&self, hasher: &KeyHasher) -> u64 {
                hasher.bytes(self.as_ref())
            }
        }
    )*};
}
fingerprinted_bytes!(str, [u8]);

#[cfg(feature = "alloc")]
fingerprinted_bytes!(alloc::string::String, alloc::vec::Vec<u8>);

macro_rules! fingerprinted_wide {
    ($($t:ty => $bits:expr),*) => {$(
        impl Key for $t {
            #[inline]
            fn encode(&self, hasher: &KeyHasher) -> u64 {
                let bits: fn(&$t) -> u128 = $bits;
                hasher.wide(bits(self))
            }
        }
    )*};
}
fingerprinted_wide!(u128 => |x| *x, i128 => |x| *x as u128, Ipv6Addr => |a| a.to_bits());

impl Key for Ipv4Addr {
    #[inline]
    fn encode(&self, _: &KeyHasher) -> u64 {
        u64::from(self.to_bits())
    }
}

impl Key for SocketAddrV4 {
    #[inline]
    fn encode(&self, _: &KeyHasher) -> u64 {
        (u64::from(self.ip().to_bits()) << 16) | u64::from(self.port())
    }
}

/// Fingerprints with the top bit set, so they never meet an exact encoding below 2^63.
#[inline]
fn tagged(fingerprint: u64) -> u64 {
    fingerprint | (1 << 63)
}

impl Key for IpAddr {
    #[inline]
    fn encode(&self, hasher: &KeyHasher) -> u64 {
        match self {
            IpAddr::V4(v4) => v4.encode(hasher),
            IpAddr::V6(v6) => tagged(v6.encode(hasher)),
        }
    }
}

impl Key for SocketAddr {
    #[inline]
    fn encode(&self, hasher: &KeyHasher) -> u64 {
        match self {
            SocketAddr::V4(v4) => v4.encode(hasher),
            SocketAddr::V6(v6) => tagged(v6.encode(hasher)),
        }
    }
}

impl<K: Key + ?Sized> Key for &K {
    #[inline]
    fn encode(&self, hasher: &KeyHasher) -> u64 {
        (**self).encode(hasher)
    }
}

#[cfg(feature = "alloc")]
impl<K: Key + ?Sized> Key for alloc::boxed::Box<K> {
    #[inline]
    fn encode(&self, hasher: &KeyHasher) -> u64 {
        (**self).encode(hasher)
    }
}

#[cfg(feature = "alloc")]
impl<K: Key + ?Sized> Key for alloc::sync::Arc<K> {
    #[inline]
    fn encode(&self, hasher: &KeyHasher) -> u64 {
        (**self).encode(hasher)
    }
}
