//! `RedisShaper` against a real `redis-server`: departures spaced by the schedule on Redis's
//! clock, FIFO across shapers, refusals that queue and charge nothing, cancellation, a crashed
//! holder purged after its lease, and GCRA's bound under concurrency.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{RedisCluster, RedisServer};
use traffik_core::ShapeError;
use traffik_redis::{Departure, Rate, RedisLimiterError, RedisShapeError, RedisShaper, Target};

const MS: Duration = Duration::from_millis(1);
/// Network and scheduling latency allowed past an exact departure time (loopback). Lower
/// bounds are exact; this only bounds lateness, generously, because this binary's tests run
/// side by side (several redis-servers and a cluster) on machines as small as two cores.
const SLACK: Duration = Duration::from_millis(75);

async fn shaper(
    server: &RedisServer,
    rate: Rate,
    configure: impl Fn(traffik_redis::RedisShaperBuilder) -> traffik_redis::RedisShaperBuilder,
) -> RedisShaper {
    configure(RedisShaper::builder(server.url()).rate(rate).prefix("t"))
        .build()
        .await
        .unwrap()
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn since(later: &Departure, earlier: &Departure) -> Duration {
    later.left_at().duration_since(earlier.left_at()).unwrap()
}

async fn conn(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn queued(server: &RedisServer, key: &str) -> (u64, Option<u64>) {
    let mut c = conn(server).await;
    let len: u64 = redis::cmd("ZCARD")
        .arg(format!("t:{{{key}}}:shape:q"))
        .query_async(&mut c)
        .await
        .unwrap();
    let units: Option<u64> = redis::cmd("HGET")
        .arg(format!("t:{{{key}}}:shape:m"))
        .arg("units")
        .query_async(&mut c)
        .await
        .unwrap();
    (len, units)
}

/// Waits (up to 5 s) until `n` calls on `key` have reached Redis: those queued plus those of
/// `tasks` that finished (left, or were refused).
async fn until_arrived<T>(
    server: &RedisServer,
    key: &str,
    n: u64,
    tasks: &[tokio::task::JoinHandle<T>],
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let done = tasks.iter().filter(|t| t.is_finished()).count() as u64;
        if queued(server, key).await.0 + done >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} calls never arrived"
        );
        tokio::time::sleep(MS).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_called_at_once_leave_one_interval_apart() {
    let server = RedisServer::start();
    let s = shaper(&server, Rate::per_second(10), |b| b).await;
    // Started together, they reach Redis in some order (FIFO order across calls is the
    // next test's): sorted by departure, one left on arrival and the others in turn.
    let all = futures_util::future::join_all((0..5).map(|_| s.acquire("k", 1))).await;
    let mut all: Vec<Departure> = all.into_iter().map(Result::unwrap).collect();
    all.sort_by_key(Departure::left_at);
    assert!(!all[0].was_queued());
    assert!(all[1..].iter().all(Departure::was_queued));
    for (k, d) in all.iter().enumerate() {
        let after = since(d, &all[0]);
        // Exact on Redis's clock: the k-th leaves no earlier than k intervals after the first.
        assert!(after >= 100 * MS * k as u32, "{k}: {after:?}");
        if k > 0 {
            // Each leaves one interval after the one before, plus a round trip (a late
            // departure moves the schedule with it when the burst is 1).
            let gap = since(d, &all[k - 1]);
            assert!(gap >= 100 * MS && gap <= 100 * MS + SLACK, "{k}: {gap:?}");
        }
    }
    assert_eq!(
        queued(&server, "k").await,
        (0, None),
        "the queue's keys are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shapers_share_one_fifo_queue() {
    let server = RedisServer::start();
    let a = shaper(&server, Rate::per_second(10), |b| b).await;
    let b = shaper(&server, Rate::per_second(10), |b| b).await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { s.acquire("shared", 1).await }));
        // Each enqueue reaches Redis before the next call starts.
        until_arrived(&server, "shared", i + 1, &tasks).await;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap().unwrap());
    }
    for k in 1..out.len() {
        let gap = since(&out[k], &out[k - 1]);
        assert!(gap >= 100 * MS && gap <= 100 * MS + SLACK, "{k}: {gap:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_queue_and_charge_nothing() {
    let server = RedisServer::start();
    let s = shaper(&server, Rate::per_second(10), |b| b.max_queue(2)).await;
    assert!(matches!(
        s.acquire("cap", 2).await,
        Err(RedisShapeError::Refused(ShapeError::InsufficientCapacity {
            cost: 2,
            max: 1
        }))
    ));
    assert_eq!(queued(&server, "cap").await, (0, None));

    let first = s.acquire("full", 1).await.unwrap();
    let (s1, s2) = (s.clone(), s.clone());
    let w1 = tokio::spawn(async move { s1.acquire("full", 1).await });
    until_arrived::<()>(&server, "full", 1, &[]).await;
    let w2 = tokio::spawn(async move { s2.acquire("full", 1).await });
    until_arrived::<()>(&server, "full", 2, &[]).await;
    assert!(matches!(
        s.acquire("full", 1).await,
        Err(RedisShapeError::Refused(ShapeError::QueueFull { max: 2 }))
    ));
    assert_eq!(queued(&server, "full").await, (2, Some(2)));
    // The queue's keys live until the last lease: a poll interval and the grace (1 s) at most.
    let mut c = conn(&server).await;
    for suffix in ["q", "l", "m"] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("t:{{full}}:shape:{suffix}"))
            .query_async(&mut c)
            .await
            .unwrap();
        assert!((1..=1_052).contains(&ttl), "{suffix}: {ttl}");
    }
    let (d1, d2) = (w1.await.unwrap().unwrap(), w2.await.unwrap().unwrap());
    // The refused request took no slot: the two queued leave at +100 and +200 ms.
    assert!(since(&d1, &first) >= 100 * MS && since(&d1, &first) <= 100 * MS + SLACK);
    assert!(since(&d2, &first) >= 200 * MS);
    assert!(since(&d2, &d1) >= 100 * MS && since(&d2, &d1) <= 100 * MS + SLACK);

    let s = shaper(&server, Rate::per_second(10), |b| b.max_wait(150 * MS)).await;
    let first = s.acquire("wait", 1).await.unwrap();
    let s1 = s.clone();
    let w1 = tokio::spawn(async move { s1.acquire("wait", 1).await });
    until_arrived::<()>(&server, "wait", 1, &[]).await;
    match s.acquire("wait", 1).await {
        Err(RedisShapeError::Refused(ShapeError::WaitTooLong { wait, max })) => {
            assert_eq!(max, 150 * MS);
            // Two intervals after the first left, less the time since.
            assert!(wait > 150 * MS && wait <= 200 * MS, "{wait:?}");
        }
        other => panic!("{other:?}"),
    }
    let d1 = w1.await.unwrap().unwrap();
    assert!(since(&d1, &first) >= 100 * MS && since(&d1, &first) <= 100 * MS + SLACK);
    // Nothing was charged for the refusal: the next one leaves at +200 ms.
    let next = s.acquire("wait", 1).await.unwrap();
    assert!(since(&next, &first) >= 200 * MS);
    assert!(since(&next, &d1) >= 100 * MS && since(&next, &d1) <= 100 * MS + SLACK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_waiter_gives_its_slot_to_the_one_behind() {
    let server = RedisServer::start();
    let poll = 20 * MS;
    let s = shaper(&server, Rate::per_second(10), |b| b.poll_interval(poll)).await;
    let first = s.acquire("c", 1).await.unwrap();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let s = s.clone();
        waiters.push(tokio::spawn(async move { s.acquire("c", 1).await }));
        until_arrived(&server, "c", i + 1, &waiters).await;
    }
    let w3 = waiters.pop().unwrap();
    let w2 = waiters.pop().unwrap();
    w2.abort();
    assert!(w2.await.unwrap_err().is_cancelled());
    let d1 = waiters.pop().unwrap().await.unwrap().unwrap();
    let d3 = w3.await.unwrap().unwrap();
    assert!(since(&d1, &first) >= 100 * MS && since(&d1, &first) <= 100 * MS + SLACK);
    // The third takes the second's slot (+200 ms), noticed within one poll interval.
    assert!(since(&d3, &first) >= 200 * MS);
    let gap = since(&d3, &d1);
    assert!(gap >= 100 * MS && gap <= 100 * MS + poll + SLACK, "{gap:?}");
    assert_eq!(queued(&server, "c").await, (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holder_is_purged_after_its_lease() {
    let server = RedisServer::start();
    let (poll, grace) = (20 * MS, 100 * MS);
    let s = shaper(&server, Rate::per_second(10), |b| {
        b.poll_interval(poll).lease_grace(grace)
    })
    .await;
    let first = s.acquire("x", 1).await.unwrap();
    let after_first = std::time::Instant::now();
    // A holder that enqueues and then stops polling (its process hangs).
    let mut stalled = Box::pin(s.acquire("x", 1));
    while queued(&server, "x").await.0 == 0 {
        tokio::select! {
            r = &mut stalled => panic!("left early: {r:?}"),
            _ = tokio::time::sleep(MS) => {}
        }
    }
    let enqueued_by = after_first.elapsed() + SLACK;
    assert_eq!(queued(&server, "x").await, (1, Some(1)));
    let behind = s.acquire("x", 1).await.unwrap();
    // Its lease ends a poll interval and the grace after it was queued; the one behind leaves
    // at its next poll (the stalled one never leaves).
    let at = since(&behind, &first);
    assert!(
        at >= 100 * MS && at <= enqueued_by + poll + grace + poll + SLACK,
        "{at:?}"
    );
    assert_eq!(queued(&server, "x").await, (0, None));
    // Polled again, the stalled holder learns that its place is gone.
    assert!(matches!(stalled.await, Err(RedisShapeError::LeaseExpired)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn departures_obey_gcras_bound_under_concurrency() {
    let server = RedisServer::start();
    let t = 50 * MS;
    let burst = 2u64;
    let shapers = [
        shaper(&server, Rate::per_second(20), |b| b.burst(burst)).await,
        shaper(&server, Rate::per_second(20), |b| b.burst(burst)).await,
    ];
    let mut tasks = Vec::new();
    for s in &shapers {
        for _ in 0..4 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..3 {
                    out.push(s.acquire("g", 1).await.unwrap().left_at());
                }
                out
            }));
        }
    }
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.unwrap().into_iter().map(ns));
    }
    times.sort_unstable();
    assert_eq!(times.len(), 24);
    // Replay GCRA over the departures: every one must have been admissible when it left.
    let (t, tol) = (t.as_nanos() as u64, burst * t.as_nanos() as u64);
    let mut tat = 0u64;
    for (i, &at) in times.iter().enumerate() {
        tat = tat.max(at) + t;
        assert!(tat - at <= tol, "departure {i} breaks the bound");
    }
    // And the queue kept up with the rate: 24 units with a burst of 2 take 22 intervals.
    let span = Duration::from_nanos(times[23] - times[0]);
    assert!(
        span >= 22 * 50 * MS && span <= 22 * 50 * MS + 8 * SLACK,
        "{span:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimates_count_the_costs_ahead_and_the_burst() {
    let server = RedisServer::start();
    let s = shaper(&server, Rate::per_second(10), |b| {
        b.burst(3).max_wait(250 * MS)
    })
    .await;
    // A full burst leaves at once: the TAT is now 300 ms ahead.
    let first = s.acquire("e", 3).await.unwrap();
    assert!(!first.was_queued());
    let s1 = s.clone();
    let two = tokio::spawn(async move { s1.acquire("e", 2).await });
    until_arrived::<()>(&server, "e", 1, &[]).await;
    // Behind 2 units: max(TAT, now) + 2 T - (3 - 1) T = first + 300 ms.
    match s.acquire("e", 1).await {
        Err(RedisShapeError::Refused(ShapeError::WaitTooLong { wait, max })) => {
            assert_eq!(max, 250 * MS);
            assert!(wait > 250 * MS && wait <= 300 * MS, "{wait:?}");
        }
        other => panic!("{other:?}"),
    }
    // Cost 2 of a burst of 3 leaves when TAT - now <= T: first + 200 ms, exactly.
    let two = two.await.unwrap().unwrap();
    let at = since(&two, &first);
    assert!(at >= 200 * MS && at <= 200 * MS + SLACK, "{at:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_the_queue_in_one_slot() {
    let cluster = RedisCluster::start();
    let s = RedisShaper::builder(Target::cluster(cluster.urls()))
        .rate(Rate::per_second(10))
        .build()
        .await
        .unwrap();
    for key in ["a", "b", "user:42"] {
        let all = futures_util::future::join_all((0..3).map(|_| s.acquire(key, 1))).await;
        let mut all: Vec<Departure> = all.into_iter().map(Result::unwrap).collect();
        all.sort_by_key(Departure::left_at);
        for k in 1..3 {
            let gap = since(&all[k], &all[k - 1]);
            assert!(
                gap >= 100 * MS && gap <= 100 * MS + SLACK,
                "{key} {k}: {gap:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_failing_while_waiting_is_a_typed_error() {
    let mut server = RedisServer::start();
    let s = shaper(&server, Rate::per_second(10), |b| {
        b.timeout(200 * MS).poll_interval(20 * MS)
    })
    .await;
    s.acquire("f", 1).await.unwrap();
    let s1 = s.clone();
    let waiter = tokio::spawn(async move { s1.acquire("f", 1).await });
    until_arrived::<()>(&server, "f", 1, &[]).await;
    server.kill();
    match waiter.await.unwrap() {
        Err(RedisShapeError::Redis(e)) => assert!(
            matches!(
                e,
                RedisLimiterError::Connection { .. }
                    | RedisLimiterError::ReplyLost { .. }
                    | RedisLimiterError::Timeout { .. }
            ),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_configurations_are_typed_errors() {
    let url = "redis://127.0.0.1:1/";
    let cases = [
        RedisShaper::builder(url),
        RedisShaper::builder(url)
            .rate(Rate::per_second(10))
            .burst(0),
        RedisShaper::builder(url)
            .rate(Rate::per_second(10))
            .poll_interval(Duration::ZERO),
        RedisShaper::builder(url)
            .rate(Rate::per_second(10))
            .lease_grace(Duration::ZERO),
        RedisShaper::builder(url)
            .rate(Rate::per_second(10))
            .max_wait(Duration::from_secs(100 * 86_400)),
        RedisShaper::builder(url)
            .rate(Rate::per_second(10))
            .prefix("a{b"),
        RedisShaper::builder(url).rate(Rate::unlimited()),
    ];
    for (i, b) in cases.into_iter().enumerate() {
        assert!(
            matches!(b.build().await, Err(RedisLimiterError::Config { .. })),
            "case {i}"
        );
    }
}
