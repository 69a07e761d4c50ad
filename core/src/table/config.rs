//! How a table is configured, and what it reports.

use core::fmt;

/// What to do when a new key finds no empty or reclaimable slot in its probe window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Refuse the check with [`CheckError::TableFull`](crate::CheckError::TableFull).
    Deny,
    /// Admit the check as if the key were fresh, without tracking it.
    Allow,
    /// Evict the slot in the probe window closest to fresh (smallest `reset_after`) and give it
    /// to the new key. The default: the table keeps limiting the keys that are active while a
    /// flood of one-off keys churns through, and the evicted key loses only what it had
    /// charged most long ago. `Deny` would let a flood lock out every new legitimate client;
    /// `Allow` would let the flood itself through.
    #[default]
    EvictStalest,
}

/// How to build a [`KeyedLimiter`](super::KeyedLimiter): start from [`TableConfig::new`] and set fields.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct TableConfig {
    /// Keys the table must hold (before load-factor slack). At least 1.
    pub capacity: usize,
    /// Number of shards; rounded up to a power of two. More shards spread reuse locks and
    /// cache lines; a few per core is plenty.
    pub shards: usize,
    /// What to do when a probe window is full.
    pub overflow: OverflowPolicy,
    /// Secret seeds for fingerprinting non-integer keys.
    pub seeds: [u64; 4],
}

impl TableConfig {
    /// `capacity` keys, [`default_shards`](Self::default_shards) for up to 16 cores, the
    /// default overflow policy, and the given seeds.
    pub fn new(capacity: usize, seeds: [u64; 4]) -> Self {
        TableConfig {
            capacity,
            shards: Self::default_shards(capacity, 16),
            overflow: OverflowPolicy::default(),
            seeds,
        }
    }
}

impl TableConfig {
    /// Four shards per core, but no shard smaller than 4,096 slots (about 2,700 keys): small
    /// shards make probe clusters, and so overflow, likelier.
    pub fn default_shards(capacity: usize, cores: usize) -> usize {
        let by_size = (capacity.saturating_mul(3) / 2 / 4096).max(1);
        cores
            .saturating_mul(4)
            .min(by_size)
            .clamp(1, 1 << 16)
            .next_power_of_two()
    }
}

/// Why a table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TableError {
    /// A capacity of zero.
    ZeroCapacity,
    /// A shard count of zero, or above 65,536.
    BadShardCount,
    /// The slots would not fit in memory addressable here.
    TooLarge,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableError::ZeroCapacity => "table capacity must be at least 1 key",
            TableError::BadShardCount => "shard count must be between 1 and 65536",
            TableError::TooLarge => "table capacity is too large for this address space",
        })
    }
}

impl core::error::Error for TableError {}

/// Readable counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableStats {
    /// Slots holding a key (including keys whose state has become fresh but whose slot was
    /// not yet reused).
    pub occupied: usize,
    /// Total slots.
    pub slots: usize,
    /// New keys that found no empty or reclaimable slot (whatever the policy did then).
    pub overflows: u64,
    /// Keys evicted while not yet fresh (policy [`OverflowPolicy::EvictStalest`]).
    pub evictions: u64,
    /// Slots of fresh-equivalent keys handed to new keys.
    pub reclaims: u64,
}
