//! The keyed check beside governor's keyed limiter (DashMap, quanta clock on both sides) over a
//! grid of realistic workloads: 10,000 live keys visited in a fixed-seed random order, four key
//! types, four table sizes, all-admitted and mostly-denied, one and two threads on shared keys.
//!
//! The machine is shared, so no single timing is trusted: each cell runs traffik and governor
//! in alternating rounds in one process and reports the median of the per-round ratios
//! (traffik time / governor time). Both results are reduced to a bool (`is_allowed()`, governor's
//! `is_ok()`), so neither side pays for materialising its whole result. Run with `cargo bench -p traffik-benches --bench grid`.
#![allow(missing_docs, clippy::unwrap_used)]

use governor::{Quota, RateLimiter as Governor};
use std::hash::Hash;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Instant;
use traffik::{Gcra, Key, KeyedLimiter, QuantaClock, Rate, RateLimiter};

#[cfg(target_arch = "x86_64")]
#[path = "support/floor.rs"]
mod floor;

#[path = "support/mix.rs"]
mod mix;
use mix::Mix;

/// Live keys in every cell.
const KEYS: usize = 10_000;
/// Alternating rounds per cell (odd, so the median is one round's ratio).
const ROUNDS: usize = 41;
/// Checks per thread per round.
const PER_ROUND: usize = 50_000;
/// Length of the precomputed access sequence (a power of two, masked into).
const SEQ: usize = 1 << 16;

/// All-admitted: a permutation of the keys repeated; mostly-denied: 80% of checks on 1% of the
/// keys, the rest uniform, in random order.
fn sequence(denied: bool, rng: &mut Mix) -> Vec<u32> {
    if denied {
        let hot = KEYS / 100;
        (0..SEQ)
            .map(|_| {
                if rng.below(10) < 8 {
                    rng.below(hot) as u32
                } else {
                    rng.below(KEYS) as u32
                }
            })
            .collect()
    } else {
        let mut perm: Vec<u32> = (0..KEYS as u32).collect();
        for i in (1..KEYS).rev() {
            perm.swap(i, rng.below(i + 1));
        }
        perm.iter().copied().cycle().take(SEQ).collect()
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Wall time of `threads` threads each making `PER_ROUND` checks through `f(index)`, walking
/// the shared sequence from offsets half a sequence apart.
fn round(threads: usize, seq: &[u32], f: &(impl Fn(usize) + Sync)) -> f64 {
    let start = Instant::now();
    if threads == 1 {
        for i in 0..PER_ROUND {
            f(seq[i & (SEQ - 1)] as usize);
        }
    } else {
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || {
                    let off = t * SEQ / threads;
                    for i in 0..PER_ROUND {
                        f(seq[(off + i) & (SEQ - 1)] as usize);
                    }
                });
            }
        });
    }
    start.elapsed().as_nanos() as f64
}

/// governor's keyed limiter and traffik's builder table at `per_second`, both holding every
/// key already (so a round checks existing keys only).
fn filled<K: Key + Hash + Eq + Clone>(
    keys: &[K],
    per_second: u32,
    capacity: usize,
) -> (governor::DefaultKeyedRateLimiter<K>, RateLimiter<K>) {
    let gov = Governor::dashmap(Quota::per_second(NonZeroU32::new(per_second).unwrap()));
    let ours: RateLimiter<K> = traffik::builder()
        .rate(Rate::per_second(u64::from(per_second)))
        .capacity(capacity)
        .build()
        .unwrap();
    for k in keys {
        let _ = gov.check_key(k);
        let _ = ours.check(k, 1).unwrap();
    }
    (gov, ours)
}

/// One cell: median of per-round traffik/governor ratios, and both medians in ns per check.
fn cell<K: Key + Hash + Eq + Clone + Sync + Send>(
    keys: &[K],
    capacity: usize,
    denied: bool,
    threads: usize,
    seq: &[u32],
) -> (f64, f64, f64) {
    let per_second: u32 = if denied { 100 } else { 1_000_000_000 };
    let (gov, ours) = filled(keys, per_second, capacity);
    let mut t_ns = Vec::with_capacity(ROUNDS);
    let mut g_ns = Vec::with_capacity(ROUNDS);
    let checks = (threads * PER_ROUND) as f64;
    // One warm-up round each, then alternate (swapping who goes first each round).
    let traffik_round = || {
        round(threads, seq, &|i| {
            black_box(ours.check(&keys[i], 1).unwrap().is_allowed());
        })
    };
    let governor_round = || {
        round(threads, seq, &|i| {
            black_box(gov.check_key(&keys[i]).is_ok());
        })
    };
    match option("side").as_deref() {
        // One side only, for `perf stat` / `perf record` of one cell (no ratio then).
        Some("traffik") => {
            let t: Vec<f64> = (0..ROUNDS).map(|_| traffik_round()).collect();
            return (f64::NAN, median(t) / PER_ROUND as f64, f64::NAN);
        }
        Some("governor") => {
            let g: Vec<f64> = (0..ROUNDS).map(|_| governor_round()).collect();
            return (f64::NAN, f64::NAN, median(g) / PER_ROUND as f64);
        }
        _ => {}
    }
    traffik_round();
    governor_round();
    for r in 0..ROUNDS {
        if r % 2 == 0 {
            t_ns.push(traffik_round());
            g_ns.push(governor_round());
        } else {
            g_ns.push(governor_round());
            t_ns.push(traffik_round());
        }
    }
    let ratios: Vec<f64> = t_ns.iter().zip(&g_ns).map(|(t, g)| t / g).collect();
    (
        median(ratios),
        median(t_ns).max(0.0) / checks * threads as f64,
        median(g_ns) / checks * threads as f64,
    )
}

/// `check_many` in batches of 16 keys taken in order from the random sequence, one thread:
/// median per-round ratios against governor's loop and against traffik's own loop of checks.
fn batch_row<K: Key + Hash + Eq + Clone + Sync + Send>(name: &str, keys: &[K], seq: &[u32]) {
    const PER_BATCH: usize = 16;
    let mut vs_gov = format!("| {name}, `check_many` x16 / governor | all admitted | 1 |");
    let mut vs_loop = format!("| {name}, `check_many` x16 / traffik loop | all admitted | 1 |");
    for (_, capacity) in SIZES {
        let (gov, ours) = filled(keys, 1_000_000_000, capacity);
        // The batches, as key values, laid out once.
        let batches: Vec<Vec<K>> = (0..PER_ROUND / PER_BATCH)
            .map(|b| {
                (0..PER_BATCH)
                    .map(|j| keys[seq[(b * PER_BATCH + j) & (SEQ - 1)] as usize].clone())
                    .collect()
            })
            .collect();
        let time = |f: &dyn Fn(&[K])| {
            let start = Instant::now();
            for b in &batches {
                f(b);
            }
            start.elapsed().as_nanos() as f64
        };
        let many = |b: &[K]| {
            ours.check_many(b, 1, |_, d| {
                black_box(d.unwrap().is_allowed());
            })
        };
        let each = |b: &[K]| {
            for k in b {
                black_box(ours.check(k, 1).unwrap().is_allowed());
            }
        };
        let theirs = |b: &[K]| {
            for k in b {
                black_box(gov.check_key(k).is_ok());
            }
        };
        let (mut g, mut l) = (Vec::new(), Vec::new());
        time(&many);
        for _ in 0..ROUNDS {
            let m = time(&many);
            g.push(m / time(&theirs));
            l.push(m / time(&each));
        }
        vs_gov.push_str(&format!(" {:.2} |", median(g)));
        vs_loop.push_str(&format!(" {:.2} |", median(l)));
    }
    println!("{vs_gov}\n{vs_loop}");
}

/// Diagnostic: the builder's table (`AnyAlgorithm`, dispatched per check) against a statically
/// typed `KeyedLimiter<_, Gcra, QuantaClock>` with the same capacity, keys and order, one
/// thread, all admitted: median per-round ratios static / builder, and static / governor.
fn static_row(keys: &[u64], seq: &[u32]) {
    let mut vs_any = "| u64 scattered, static `Gcra` / builder | all admitted | 1 |".to_string();
    let mut vs_gov = "| u64 scattered, static `Gcra` / governor | all admitted | 1 |".to_string();
    let rate = Rate::per_second(1_000_000_000);
    for (_, capacity) in SIZES {
        let gov = Governor::dashmap(Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap()));
        let any: RateLimiter<u64> = traffik::builder()
            .rate(rate)
            .capacity(capacity)
            .build()
            .unwrap();
        let config = traffik::TableConfig::new(capacity, [1, 2, 3, 4]);
        let fixed: KeyedLimiter<u64, Gcra, QuantaClock> =
            KeyedLimiter::new(Gcra::new(rate).unwrap(), QuantaClock::new(), config).unwrap();
        for k in keys {
            let _ = gov.check_key(k);
            let _ = any.check(k, 1).unwrap();
            let _ = fixed.check(k, 1).unwrap();
        }
        let (mut a, mut g) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let s = round(1, seq, &|i| {
                black_box(fixed.check(&keys[i], 1).unwrap().is_allowed());
            });
            a.push(
                s / round(1, seq, &|i| {
                    black_box(any.check(&keys[i], 1).unwrap().is_allowed());
                }),
            );
            g.push(
                s / round(1, seq, &|i| {
                    black_box(gov.check_key(&keys[i]).is_ok());
                }),
            );
        }
        vs_any.push_str(&format!(" {:.2} |", median(a)));
        vs_gov.push_str(&format!(" {:.2} |", median(g)));
    }
    println!("{vs_any}\n{vs_gov}");
}

/// Diagnostic, `x86_64` only: traffik beside the inline floor of a keyed check
/// (`support/floor.rs`: scramble, one slot load, one clock read, a GCRA-style update, one
/// `lock cmpxchg16b`, retried on a lost race), with the same slot count as traffik's table (1.5
/// per unit of capacity), same keys and order, same quanta clock. Prints floor / governor and
/// traffik / floor, all admitted, one thread and two threads on shared keys (`--threads=N` picks
/// one), with the median ns per check of floor and traffik; `--floor=gcra` also prints the
/// floor with the real `Gcra::decide` in place of its one-line update, over the floor.
#[cfg(target_arch = "x86_64")]
fn floor_row(keys: &[u64], seq: &[u32]) {
    let only_threads = option("threads");
    let gcra = Gcra::new(Rate::per_second(1_000_000_000)).unwrap();
    for threads in [1, 2] {
        if only_threads
            .as_deref()
            .is_some_and(|t| t != threads.to_string())
        {
            continue;
        }
        let mut vs_gov =
            format!("| u64 scattered, inline floor / governor | all admitted | {threads} |");
        let mut vs_floor =
            format!("| u64 scattered, traffik / inline floor | all admitted | {threads} |");
        let mut detail = String::new();
        for (_, capacity) in SIZES {
            let Some(table) = floor::FloorTable::new(keys.iter().copied(), capacity) else {
                return;
            };
            let floor = |k: u64| table.check(k);
            let floor_gcra = |k: u64| {
                table.check_with(k, |state, now| {
                    traffik::Algorithm::decide(&gcra, state, now, 1)
                        .unwrap()
                        .next
                })
            };
            if option("floor").as_deref() == Some("gcra") {
                let mut r = Vec::new();
                for _ in 0..ROUNDS {
                    let a = round(threads, seq, &|i| {
                        black_box(floor_gcra(keys[i]));
                    });
                    r.push(
                        a / round(threads, seq, &|i| {
                            black_box(floor(keys[i]));
                        }),
                    );
                }
                println!(
                    "inline floor with `Gcra::decide` / inline floor, {threads} thread(s): {:.2}",
                    median(r)
                );
            }
            let (gov, ours) = filled(keys, 1_000_000_000, capacity);
            let (mut g, mut t, mut f_ns, mut t_ns) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let f = round(threads, seq, &|i| {
                    black_box(floor(keys[i]));
                });
                g.push(
                    f / round(threads, seq, &|i| {
                        black_box(gov.check_key(&keys[i]).is_ok());
                    }),
                );
                let o = round(threads, seq, &|i| {
                    black_box(ours.check(&keys[i], 1).unwrap().is_allowed());
                });
                t.push(o / f);
                f_ns.push(f / PER_ROUND as f64);
                t_ns.push(o / PER_ROUND as f64);
            }
            vs_gov.push_str(&format!(" {:.2} |", median(g)));
            vs_floor.push_str(&format!(" {:.2} |", median(t)));
            detail.push_str(&format!(" {:.1}/{:.1}", median(f_ns), median(t_ns)));
        }
        println!("{vs_gov}\n{vs_floor}  ns/check floor/traffik:{detail}");
    }
}

fn ip(i: u64) -> IpAddr {
    // IPv4 from 10.0.0.0 upwards; IPv6 one address per /64 under 2001:db8::/32.
    if i % 2 == 0 {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_u128 << 96) | (u128::from(i) << 64) | 1,
        ))
    }
}

/// Capacities for 25%, 50%, 75% and the default (100,000: 10%) with `KEYS` live keys.
const SIZES: [(&str, usize); 4] = [
    ("25%", KEYS * 4),
    ("50%", KEYS * 2),
    ("75%", KEYS * 4 / 3),
    ("default", traffik::builder::DEFAULT_CAPACITY),
];

/// The value of `--name=value` on the command line.
fn option(name: &str) -> Option<String> {
    let prefix = format!("--{name}=");
    std::env::args().find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
}

fn row<K: Key + Hash + Eq + Clone + Sync + Send>(name: &str, keys: &[K], seqs: &[Vec<u32>; 2]) {
    // `--workload=admitted|denied`, `--threads=N` and `--size=25%|50%|75%|default` pick cells.
    let workload = option("workload");
    let only_threads = option("threads");
    let size = option("size");
    for (denied, label) in [(false, "all admitted"), (true, "mostly denied")] {
        if workload.as_deref().is_some_and(|w| !label.contains(w)) {
            continue;
        }
        for threads in [1, 2] {
            if only_threads
                .as_deref()
                .is_some_and(|t| t != threads.to_string())
            {
                continue;
            }
            let mut line = format!("| {name} | {label} | {threads} |");
            let mut detail = String::new();
            for (name, capacity) in SIZES {
                if size.as_deref().is_some_and(|s| s != name) {
                    continue;
                }
                let (ratio, t, g) = cell(keys, capacity, denied, threads, &seqs[denied as usize]);
                line.push_str(&format!(" {ratio:.2} |"));
                detail.push_str(&format!(" {t:.0}/{g:.0}"));
            }
            println!("{line}  ns/check traffik/governor:{detail}");
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks key types by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f));
    let mut rng = Mix(0x7472_6166_6669_6b21);
    let seqs = [sequence(false, &mut rng), sequence(true, &mut rng)];
    let started = Instant::now();
    println!(
        "median of {ROUNDS} per-round ratios traffik/governor, {PER_ROUND} checks per thread \
         per round, {KEYS} live keys in random order; two threads walk shared keys"
    );
    println!("| keys | workload | threads | 25% | 50% | 75% | default (10%) |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    if wanted("u64-seq") {
        let keys: Vec<u64> = (0..KEYS as u64).collect();
        row("u64 sequential", &keys, &seqs);
    }
    if wanted("u64-scattered") {
        let mut r = Mix(42);
        let keys: Vec<u64> = (0..KEYS).map(|_| r.next()).collect();
        row("u64 scattered", &keys, &seqs);
    }
    if wanted("ip") {
        let keys: Vec<IpAddr> = (0..KEYS as u64).map(ip).collect();
        row("IpAddr v4/v6", &keys, &seqs);
    }
    // Diagnostic rows, only when named: each address family alone (the mix above pays a
    // mispredicted family branch on top of both).
    let named = |name: &str| filter.iter().any(|f| f == name);
    if named("ipv4-only") {
        let keys: Vec<IpAddr> = (0..KEYS as u64).map(|i| ip(2 * i)).collect();
        row("IPv4 only", &keys, &seqs);
    }
    if named("ipv6-only") {
        let keys: Vec<IpAddr> = (0..KEYS as u64).map(|i| ip(2 * i + 1)).collect();
        row("IPv6 only", &keys, &seqs);
    }
    if wanted("string") {
        let keys: Vec<String> = (0..KEYS).map(|i| format!("user-{i:08}")).collect();
        row("String", &keys, &seqs);
    }
    if wanted("batch") {
        let mut r = Mix(42);
        let scattered: Vec<u64> = (0..KEYS).map(|_| r.next()).collect();
        batch_row("u64 scattered", &scattered, &seqs[0]);
        let ips: Vec<IpAddr> = (0..KEYS as u64).map(ip).collect();
        batch_row("IpAddr v4/v6", &ips, &seqs[0]);
    }
    if wanted("static") {
        let mut r = Mix(42);
        let scattered: Vec<u64> = (0..KEYS).map(|_| r.next()).collect();
        static_row(&scattered, &seqs[0]);
    }
    #[cfg(target_arch = "x86_64")]
    if wanted("floor") {
        let mut r = Mix(42);
        let scattered: Vec<u64> = (0..KEYS).map(|_| r.next()).collect();
        floor_row(&scattered, &seqs[0]);
    }
    if wanted("strided") {
        // The old headline: u64 keys walked in a fixed stride of 7919.
        let strided: Vec<u32> = (0..SEQ).map(|i| (i * 7919 % KEYS) as u32).collect();
        let seqs = [strided.clone(), strided];
        let keys: Vec<u64> = (0..KEYS as u64).collect();
        let mut line = "| u64 sequential, strided walk | all admitted | 1 |".to_string();
        for (_, capacity) in SIZES {
            let (ratio, _, _) = cell(&keys, capacity, false, 1, &seqs[0]);
            line.push_str(&format!(" {ratio:.2} |"));
        }
        println!("{line}");
    }
    eprintln!("grid took {:.0} s", started.elapsed().as_secs_f64());
}
