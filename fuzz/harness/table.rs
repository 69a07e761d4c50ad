// Decodes fuzz bytes into a keyed table and a sequence of operations over many keys.
//
// With room for every key, the table must decide exactly as one reference model per key (a
// HashMap of the models in reference/model.rs). With a tiny table, overflow and reclaim are in
// play: then it must never panic, never exceed its slots, refuse only as its policy says, and
// record every admitted charge on the right key.
//
// Included with `#[path]` by the cargo-fuzz target and by the stable corpus replay test; it
// expects `reference/mod.rs` to be included beside it as `reference`.

use super::reference::{Model, Spec};
use std::collections::HashMap;
use traffik_core::{
    Algorithm, AnyAlgorithm, CheckError, KeyedLimiter, ManualClock, OverflowPolicy, Rate,
    TableConfig,
};

const PERIODS: [u64; 4] = [1_000, 999_983, 1_000_000_000, 60_000_000_000];
const KEYS: u64 = 64;

pub fn table_ops(data: &[u8]) {
    let [kind, l, p, size, shards, policy, rest @ ..] = data else {
        return;
    };
    let limit = 1 + u64::from(*l) % 20;
    let period = PERIODS[usize::from(*p) % PERIODS.len()];
    let Ok(rate) = Rate::from_nanos(limit, period) else {
        return;
    };
    let spec = Spec::from_parts(*kind, rate, limit);
    let Ok(algorithm) = AnyAlgorithm::new(spec.kind(), rate, None) else {
        return;
    };
    let roomy = size % 2 == 0;
    let mut config = TableConfig::new(
        if roomy {
            4 * KEYS as usize
        } else {
            1 + usize::from(size / 2) % 8
        },
        [1, 2, 3, 4],
    );
    config.shards = 1 << (shards % 4);
    config.overflow = match policy % 3 {
        0 => OverflowPolicy::EvictStalest,
        1 => OverflowPolicy::Deny,
        _ => OverflowPolicy::Allow,
    };
    let clock = ManualClock::new();
    let Ok(table) = KeyedLimiter::<u64, _, _>::new(algorithm, &clock, config) else {
        return;
    };
    let slots = table.stats().slots;
    let capacity = algorithm.capacity();
    let mut models: HashMap<u64, Model> = HashMap::new();
    let mut now = 0u64;
    for pair in rest.chunks_exact(2) {
        let (tag, val) = (pair[0], u64::from(pair[1]));
        let key = val % KEYS;
        match tag % 8 {
            0 | 1 => {
                now += period / 32 * val + val;
                clock.set(now);
            }
            6 => {
                let got = table.peek(&key);
                if roomy {
                    let mut copy = models
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| spec.reference());
                    assert_eq!(Ok(got), copy.decide(now, 0), "peek {key} at {now}");
                }
                assert!(got.remaining() <= got.limit());
            }
            7 => {
                table.reset(&key);
                if let Some(m) = models.get_mut(&key) {
                    m.reset();
                }
            }
            _ => {
                let cost = u64::from(tag >> 3) % (capacity + 2);
                let got = table.check(&key, cost);
                if roomy {
                    let model = models.entry(key).or_insert_with(|| spec.reference());
                    assert_eq!(
                        got,
                        model.decide(now, cost),
                        "check {key} cost {cost} at {now}"
                    );
                }
                match got {
                    Ok(d) => {
                        assert!(d.remaining() <= d.limit());
                        // The charge landed on this key (unless the policy admits untracked).
                        if d.is_allowed() && config.overflow != OverflowPolicy::Allow {
                            assert_eq!(table.peek(&key).remaining(), d.remaining());
                        }
                    }
                    Err(CheckError::InsufficientCapacity { max }) => {
                        assert!(cost > max && max == capacity)
                    }
                    Err(CheckError::TableFull) => {
                        assert_eq!(config.overflow, OverflowPolicy::Deny)
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }
        assert!(table.len() <= slots);
    }
}
