//! `MemcachedShaper` against a real memcached: spacing, FIFO across shapers, refusals that
//! queue nothing, cancellation, purged leases, GCRA's bound under concurrency, bad configs and
//! a server dying mid-wait.
//!
//! Sockets need real time (tokio's paused clock would jump past the call timeouts while a
//! reply is in flight), so the shapers read a [`TestClock`] and every departure's decision time
//! is asserted from [`Departure::left_at_nanos`]: exact lower bounds (the schedule) and 75 ms
//! of lateness at most.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Memcached;
use traffik_core::{Algorithm, Clock, Gcra, Rate};
use traffik_memcached::shape::MAX_QUEUE;
use traffik_memcached::{
    Departure, MemcachedLimiterError as E, MemcachedShapeError as SE, MemcachedShaper, ShapeError,
};

const MS: u64 = 1_000_000;
/// How late a departure may be: round trips, a poll interval, scheduling.
const LATE: u64 = 75 * MS;

/// Nanoseconds since the test began (plus a second, so no reading is near zero).
#[derive(Debug)]
struct TestClock(Instant);

impl Clock for TestClock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap() + 1_000 * MS
    }
}

fn clock() -> Arc<TestClock> {
    Arc::new(TestClock(Instant::now()))
}

fn shaper(
    m: &Memcached,
    clock: &Arc<TestClock>,
    rate: &str,
) -> traffik_memcached::MemcachedShaperBuilder {
    MemcachedShaper::builder(m.addr())
        .rate(rate)
        .clock(clock.clone())
        .poll_interval(Duration::from_millis(10))
}

/// The queue item's ticket count and TAT, if the item exists.
fn item(m: &Memcached, s: &MemcachedShaper, key: &str) -> Option<(u32, u64, i64)> {
    let it = m.meta_get(&s.memcached_key(key))?;
    assert_eq!(it.flags, 0x7473);
    let tat = u64::from_le_bytes(it.value[1..9].try_into().unwrap());
    let n = u32::from_le_bytes(it.value[17..21].try_into().unwrap());
    assert_eq!(it.value.len(), 21 + 24 * n as usize);
    Some((n, tat, it.ttl))
}

/// Starts `acquire`s one after another (each once the previous has had time to land), on the
/// given shapers in turn, and returns their results in call order.
async fn in_order(shapers: &[MemcachedShaper], key: &str, n: usize) -> Vec<Departure> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = shapers[i % shapers.len()].clone();
        let key = key.to_owned();
        tasks.push(tokio::spawn(async move { s.acquire(key, 1).await }));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap().unwrap());
    }
    out
}

fn assert_spaced(d: &[Departure], interval: u64) {
    let t0 = d[0].left_at_nanos();
    for (i, w) in d.windows(2).enumerate() {
        let gap = w[1].left_at_nanos().saturating_sub(w[0].left_at_nanos());
        assert!(
            w[1].left_at_nanos() > w[0].left_at_nanos(),
            "out of order at {i}: {d:?}"
        );
        assert!(gap >= interval, "gap {gap} < {interval} at {i}");
    }
    for (i, dep) in d.iter().enumerate() {
        let ideal = t0 + i as u64 * interval;
        assert!(
            dep.left_at_nanos() <= ideal + LATE,
            "departure {i} at +{} ms, ideal +{} ms",
            (dep.left_at_nanos() - t0) / MS,
            (ideal - t0) / MS
        );
        assert_eq!(dep.was_queued(), i > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn departures_are_spaced_by_the_rate_in_call_order() {
    let m = Memcached::start();
    let c = clock();
    let s = shaper(&m, &c, "20/s").build().unwrap();
    let d = in_order(std::slice::from_ref(&s), "spacing", 5).await;
    assert_spaced(&d, 50 * MS);
    // Everyone left: the queue is empty, the TAT is the last departure's plus one interval.
    let (n, tat, ttl) = item(&m, &s, "spacing").unwrap();
    assert_eq!((n, tat), (0, d[4].left_at_nanos() + 50 * MS));
    assert!((1..=2).contains(&ttl), "ttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shapers_share_one_fifo_queue() {
    let m = Memcached::start();
    let c = clock();
    let a = shaper(&m, &c, "20/s").build().unwrap();
    let b = shaper(&m, &c, "20/s").build().unwrap();
    let d = in_order(&[a, b], "fifo", 6).await;
    assert_spaced(&d, 50 * MS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_queue_and_charge_nothing() {
    let m = Memcached::start();
    let c = clock();
    let s = shaper(&m, &c, "20/s")
        .max_queue(2)
        .max_wait(Duration::from_millis(120))
        .build()
        .unwrap();

    // A cost above the burst: refused without touching memcached.
    match s.acquire("cap", 2).await {
        Err(SE::Refused(ShapeError::InsufficientCapacity { cost: 2, max: 1 })) => {}
        other => panic!("{other:?}"),
    }
    assert!(item(&m, &s, "cap").is_none());

    // One leaves, two wait (50 and 100 ms): the queue is full.
    let first = s.acquire("full", 1).await.unwrap();
    assert!(!first.was_queued());
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.acquire("full", 1).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let before = item(&m, &s, "full").unwrap();
    assert_eq!((before.0, before.1), (2, first.left_at_nanos() + 50 * MS));
    match s.acquire("full", 1).await {
        Err(SE::Refused(ShapeError::QueueFull { max: 2 })) => {}
        other => panic!("{other:?}"),
    }
    let after = item(&m, &s, "full").unwrap();
    assert_eq!((after.0, after.1), (before.0, before.1));
    for w in waiters {
        w.await.unwrap().unwrap();
    }

    // Wait too long: with 2 queued the next would wait 150 ms > 120 ms (a bigger queue).
    let s = shaper(&m, &c, "20/s")
        .max_wait(Duration::from_millis(120))
        .build()
        .unwrap();
    let first = s.acquire("long", 1).await.unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.acquire("long", 1).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let before = item(&m, &s, "long").unwrap();
    match s.acquire("long", 1).await {
        Err(SE::Refused(ShapeError::WaitTooLong { wait, max })) => {
            assert_eq!(max, Duration::from_millis(120));
            // 50 ms after the first departure plus two intervals, minus the time since.
            let expected = first.left_at_nanos() + 150 * MS;
            let now = c.now();
            assert!(wait.as_nanos() as u64 <= expected - now + MS, "{wait:?}");
            assert!(wait > Duration::from_millis(120), "{wait:?}");
        }
        other => panic!("{other:?}"),
    }
    let after = item(&m, &s, "long").unwrap();
    assert_eq!((after.0, after.1), (before.0, before.1));
    for w in waiters {
        w.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_waiter_gives_its_slot_to_the_next() {
    let m = Memcached::start();
    let c = clock();
    let s = shaper(&m, &c, "10/s").build().unwrap();
    let first = s.acquire("cancel", 1).await.unwrap();
    let second = {
        let s = s.clone();
        tokio::spawn(async move { s.acquire("cancel", 1).await })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let third = {
        let s = s.clone();
        tokio::spawn(async move { s.acquire("cancel", 1).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(item(&m, &s, "cancel").unwrap().0, 2);
    second.abort();
    assert!(second.await.unwrap_err().is_cancelled());
    let third = third.await.unwrap().unwrap();
    // The third leaves in the second's slot (100 ms after the first), not 200 ms after.
    let gap = third.left_at_nanos() - first.left_at_nanos();
    assert!(
        (100 * MS..100 * MS + LATE).contains(&gap),
        "gap {} ms",
        gap / MS
    );
    assert_eq!(item(&m, &s, "cancel").unwrap().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_holder_is_purged_after_its_lease() {
    let m = Memcached::start();
    let c = clock();
    // Leases run 2 polls + grace = 140 ms from the enqueue; the rate alone would let the
    // second request leave 50 ms after the first.
    let s = shaper(&m, &c, "20/s")
        .poll_interval(Duration::from_millis(20))
        .lease_grace(Duration::from_millis(100))
        .build()
        .unwrap();
    let first = s.acquire("stall", 1).await.unwrap();
    let before = c.now();
    let mut stalled = Box::pin(s.acquire("stall", 1));
    tokio::select! {
        r = &mut stalled => panic!("left early: {r:?}"),
        () = tokio::time::sleep(Duration::from_millis(10)) => {}
    }
    assert_eq!(item(&m, &s, "stall").unwrap().0, 1);
    // Bounded: without the purge it would wait behind the stalled ticket for ever.
    let third = tokio::time::timeout(Duration::from_secs(2), s.acquire("stall", 1))
        .await
        .expect("the stalled ticket was never purged")
        .unwrap();
    let left = third.left_at_nanos();
    // Not before the stalled ticket's lease ran out (it was enqueued after `before`).
    let after_first = (left - first.left_at_nanos()) / MS;
    assert!(
        left > before + 140 * MS,
        "left {after_first} ms after the first"
    );
    assert!(
        left < before + 150 * MS + LATE,
        "left {after_first} ms after the first"
    );
    // The stalled holder finds its place gone.
    match stalled.await {
        Err(SE::LeaseExpired) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_shapers_never_exceed_gcra() {
    let m = Memcached::start();
    let c = clock();
    let rate: Rate = "50/s".parse().unwrap();
    let shapers: Vec<_> = (0..2)
        .map(|_| shaper(&m, &c, "50/s").burst(3).build().unwrap())
        .collect();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = shapers[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(s.acquire("bound", 1).await.unwrap().left_at_nanos());
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 48);
    all.sort_unstable();
    let gcra = Gcra::with_burst(rate, 3).unwrap();
    let mut state = 0;
    for (i, &at) in all.iter().enumerate() {
        let t = gcra.decide(state, at, 1).unwrap();
        assert!(t.decision.is_allowed(), "departure {i} at {at} breaks GCRA");
        state = t.next.unwrap();
    }
    // And it kept up with the rate: 48 units at 20 ms, 3 of them at once.
    let span = all[47] - all[0];
    assert!(
        (45 * 20 * MS..45 * 20 * MS + 300 * MS).contains(&span),
        "{span}"
    );
}

#[test]
fn bad_configs_are_typed_errors() {
    let base = || MemcachedShaper::builder("127.0.0.1:1").rate("10/s");
    let config = |r: Result<MemcachedShaper, E>| match r {
        Err(E::Config(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(config(MemcachedShaper::builder("127.0.0.1:1").build()).contains("rate"));
    assert!(config(base().max_queue(MAX_QUEUE + 1).build()).contains("1 MB"));
    assert!(base().max_queue(MAX_QUEUE).build().is_ok());
    assert!(config(base().poll_interval(Duration::ZERO).build()).contains("poll"));
    assert!(config(base().lease_grace(Duration::ZERO).build()).contains("grace"));
    assert!(config(base().max_wait(Duration::from_secs(1 << 30)).build()).contains("wait"));
    assert!(config(base().prefix("has space").build()).contains("prefix"));
    assert!(config(base().timeout(Duration::ZERO).build()).contains("timeout"));
    assert!(matches!(
        MemcachedShaper::builder("127.0.0.1:1").rate("ten").build(),
        Err(E::Rate(_))
    ));
    assert!(matches!(base().burst(0).build(), Err(E::Algorithm(_))));
    let unlimited = MemcachedShaper::builder("127.0.0.1:1").rate(Rate::unlimited());
    assert!(config(unlimited.build()).contains("finite"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_dying_mid_wait_is_a_typed_error() {
    let mut m = Memcached::start();
    let c = clock();
    let s = shaper(&m, &c, "2/s").build().unwrap();
    s.acquire("dies", 1).await.unwrap();
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.acquire("dies", 1).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let killed = Instant::now();
    m.kill();
    let e = waiter.await.unwrap().unwrap_err();
    assert!(
        matches!(e, SE::Store(E::Connect { .. } | E::Io { .. })),
        "{e:?}"
    );
    assert!(
        killed.elapsed() < Duration::from_millis(300),
        "{:?}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_items_and_cas_less_servers_are_typed_errors() {
    let m = Memcached::start();
    let c = clock();
    let s = shaper(&m, &c, "10/s").build().unwrap();
    // A limiter's state (flags "tr") or anything else under the queue's key is never a queue.
    m.set(&s.memcached_key("foreign"), 0x7472, &7u64.to_le_bytes());
    match s.acquire("foreign", 1).await {
        Err(SE::Store(E::CorruptState { detail, .. })) => assert!(detail.contains("flags")),
        other => panic!("{other:?}"),
    }
    m.set(&s.memcached_key("short"), 0x7473, b"\x01abc");
    match s.acquire("short", 1).await {
        Err(SE::Store(E::CorruptState { detail, .. })) => assert!(detail.contains("4-byte")),
        other => panic!("{other:?}"),
    }
    // The first enqueue is an `add`; the second reads a CAS token of 0 and stops.
    let no_cas = Memcached::start_with(&["-C"]);
    let s = shaper(&no_cas, &c, "10/s").build().unwrap();
    s.acquire("k", 1).await.unwrap();
    match s.acquire("k", 1).await {
        Err(SE::Store(E::Config(m))) => assert!(m.contains("-C"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// The largest queue `max_queue` allows fits in a default memcached item, and is read back;
/// a little more than 1 MB does not fit at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_queue_fits_in_a_default_item() {
    let m = Memcached::start();
    let c = clock();
    let s = shaper(&m, &c, "10/s").max_queue(MAX_QUEUE).build().unwrap();
    let value = |tickets: usize| {
        let mut v = vec![1u8];
        v.extend_from_slice(&u64::MAX.to_le_bytes()); // TAT: nobody may leave
        v.extend_from_slice(&(tickets as u64).to_le_bytes());
        v.extend_from_slice(&(tickets as u32).to_le_bytes());
        for seq in 1..=tickets as u64 {
            v.extend_from_slice(&seq.to_le_bytes());
            v.extend_from_slice(&1u64.to_le_bytes());
            v.extend_from_slice(&(u64::MAX / 2).to_le_bytes()); // lease: never purged
        }
        v
    };
    let key = s.memcached_key("big");
    m.set(&key, 0x7473, &value(MAX_QUEUE));
    match s.acquire("big", 1).await {
        Err(SE::Refused(ShapeError::QueueFull { max })) => assert_eq!(max, MAX_QUEUE),
        other => panic!("{other:?}"),
    }
    assert_eq!(item(&m, &s, "big").unwrap().0 as usize, MAX_QUEUE);
    // Past 1 MB of value, memcached refuses the item outright.
    let big = value(MAX_QUEUE + 100);
    let mut req = format!("set {} 29811 0 {}\r\n", key.escape_ascii(), big.len()).into_bytes();
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\n");
    let reply = m.raw(&req, |r| r.ends_with(b"\r\n"));
    assert!(
        reply.starts_with(b"SERVER_ERROR"),
        "{}",
        reply.escape_ascii()
    );
}
