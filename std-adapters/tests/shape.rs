//! Traffic shaping on tokio's paused clock: exact departure times, FIFO order, bounds that
//! refuse at once, and cancelled waiters giving their place back.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};
use traffik::shape::{KeyedShaper, ShapeConfig, ShapeError, Shaped, Shaper};
use traffik::{ConfigError, Rate};

const MS: Duration = Duration::from_millis(1);

/// Runs a request's future; yields the time it left, in ms since `start`.
fn spawn(start: Instant, fut: Shaped) -> JoinHandle<Result<u64, ShapeError>> {
    tokio::spawn(async move {
        fut.await?;
        Ok((Instant::now() - start).as_millis() as u64)
    })
}

/// The departure time of a spawned request; a waiter nobody wakes fails the test (after a
/// minute of paused time) instead of hanging it.
async fn left(h: JoinHandle<Result<u64, ShapeError>>) -> u64 {
    tokio::time::timeout(Duration::from_secs(60), h)
        .await
        .expect("a waiter was never woken")
        .unwrap()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn fifo_departures_are_exactly_one_interval_apart() {
    let start = Instant::now();
    let s = Shaper::new(ShapeConfig::new(Rate::per_second(10))).unwrap();
    let hs: Vec<_> = (0..5).map(|_| spawn(start, s.acquire(1))).collect();
    assert_eq!(s.queue_len(), 4, "the first left at once");
    let mut times = Vec::new();
    for h in hs {
        times.push(left(h).await);
    }
    assert_eq!(times, [0, 100, 200, 300, 400]);
    assert_eq!(s.queue_len(), 0);
    // Idle for a while: the next one leaves at once; the one after, 100 ms later.
    sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    assert_eq!(s.acquire(1).await.unwrap(), Duration::ZERO);
    assert_eq!(s.acquire(1).await.unwrap(), 100 * MS);
    assert_eq!(t.elapsed(), 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_middle_waiter_moves_later_ones_up() {
    let start = Instant::now();
    let s = Shaper::new(ShapeConfig::new(Rate::per_second(10))).unwrap();
    let a = spawn(start, s.acquire(1)); // leaves at 0
    let b = spawn(start, s.acquire(1)); // 100
    let c = spawn(start, s.acquire(1)); // 200, cancelled at 50
    let d = spawn(start, s.acquire(1)); // was 300, moves up to 200
    let e = spawn(start, s.acquire(1)); // was 400, moves up to 300
    sleep(50 * MS).await;
    assert_eq!(s.queue_len(), 4);
    c.abort();
    assert!(c.await.unwrap_err().is_cancelled());
    assert_eq!(s.queue_len(), 3);
    assert_eq!(left(a).await, 0);
    assert_eq!(left(b).await, 100);
    assert_eq!(left(d).await, 200);
    assert_eq!(left(e).await, 300);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_head_hands_its_slot_to_the_next() {
    let start = Instant::now();
    let s = Shaper::new(ShapeConfig::new(Rate::per_second(10))).unwrap();
    let a = spawn(start, s.acquire(1)); // 0
    let b = spawn(start, s.acquire(1)); // 100, cancelled at 30 (while sleeping on its timer)
    let c = spawn(start, s.acquire(1)); // takes 100
    sleep(30 * MS).await;
    b.abort();
    let _ = b.await;
    assert_eq!(left(a).await, 0);
    assert_eq!(left(c).await, 100);
    // Cancelling the last waiter: a newcomer gets its slot.
    let d = spawn(start, s.acquire(1)); // 200
    sleep(10 * MS).await; // at 110
    d.abort();
    let _ = d.await;
    let e = spawn(start, s.acquire(1));
    assert_eq!(left(e).await, 200);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_future_that_was_never_polled_leaves_the_queue() {
    let start = Instant::now();
    let s = Shaper::new(ShapeConfig::new(Rate::per_second(4))).unwrap();
    s.acquire(1).await.unwrap();
    let never = s.acquire(1); // would leave at 250
    let next = spawn(start, s.acquire(1)); // would leave at 500
    assert_eq!(s.queue_len(), 2);
    drop(never);
    assert_eq!(s.queue_len(), 1);
    assert_eq!(left(next).await, 250);
}

#[tokio::test(start_paused = true)]
async fn queue_bound_refuses_at_once_and_charges_nothing() {
    let start = Instant::now();
    let s = Shaper::new(ShapeConfig::new(Rate::per_second(10)).max_queue(2)).unwrap();
    let a = spawn(start, s.acquire(1)); // 0 (not queued)
    let b = spawn(start, s.acquire(1)); // 100
    let c = spawn(start, s.acquire(1)); // 200
    assert_eq!(s.acquire(1).await, Err(ShapeError::QueueFull { max: 2 }));
    assert_eq!(Instant::now(), start, "refused without waiting");
    assert_eq!(left(a).await, 0);
    assert_eq!(left(b).await, 100);
    // One place is free again; the refusal charged nothing, so d leaves right after c.
    let d = spawn(start, s.acquire(1));
    assert_eq!(left(c).await, 200);
    assert_eq!(left(d).await, 300);
}

#[tokio::test(start_paused = true)]
async fn wait_bound_refuses_at_once_and_charges_nothing() {
    let start = Instant::now();
    let s = Shaper::new(ShapeConfig::new(Rate::per_second(10)).max_wait(250 * MS)).unwrap();
    let a = spawn(start, s.acquire(1)); // 0
    let b = spawn(start, s.acquire(1)); // 100
    let c = spawn(start, s.acquire(1)); // 200: a wait of 200 ms is allowed
    assert_eq!(
        s.acquire(1).await,
        Err(ShapeError::WaitTooLong {
            wait: 300 * MS,
            max: 250 * MS
        })
    );
    assert_eq!(Instant::now(), start);
    assert_eq!(left(a).await, 0);
    assert_eq!(left(b).await, 100);
    assert_eq!(left(c).await, 200);
    // Had the refused request been charged, this one would leave at 400.
    let e = spawn(start, s.acquire(1));
    assert_eq!(left(e).await, 300);
}

#[tokio::test(start_paused = true)]
async fn burst_and_costs() {
    let start = Instant::now();
    let s = Shaper::new(ShapeConfig::new(Rate::per_second(10)).burst(3)).unwrap();
    assert_eq!(
        s.acquire(4).await,
        Err(ShapeError::InsufficientCapacity { cost: 4, max: 3 })
    );
    // Three units at once, then one per 100 ms; a cost of 2 takes two intervals.
    let hs: Vec<_> = [1, 2, 1, 2, 1]
        .into_iter()
        .map(|c| spawn(start, s.acquire(c)))
        .collect();
    let mut times = Vec::new();
    for h in hs {
        times.push(left(h).await);
    }
    // TAT after 1+2 at 0 ms: 300 ms; the third (cost 1) needs TAT - 200 = 100 ms; then
    // TAT 400: a cost of 2 needs TAT - 100 = 300 ms; then TAT 600: cost 1 at 400 ms.
    assert_eq!(times, [0, 0, 100, 300, 400]);
    assert!(matches!(
        Shaper::new(ShapeConfig::new(Rate::per_second(10)).burst(0)),
        Err(ConfigError::ZeroBurst)
    ));
}

#[tokio::test(start_paused = true)]
async fn keyed_queues_are_independent() {
    let start = Instant::now();
    let s: KeyedShaper<String> = KeyedShaper::new(ShapeConfig::new(Rate::per_second(5))).unwrap();
    let a1 = spawn(start, s.acquire("a", 1));
    let a2 = spawn(start, s.acquire("a", 1));
    let a3 = spawn(start, s.acquire("a", 1));
    let b1 = spawn(start, s.acquire("b", 1));
    let b2 = spawn(start, s.acquire("b", 1));
    assert_eq!((s.queue_len("a"), s.queue_len("b"), s.len()), (2, 1, 2));
    sleep(10 * MS).await;
    a2.abort();
    let _ = a2.await;
    assert_eq!(left(a1).await, 0);
    assert_eq!(left(a3).await, 200);
    assert_eq!(left(b1).await, 0);
    assert_eq!(left(b2).await, 200);
    // At 200 ms both schedules run to 400 ms: not idle yet.
    assert_eq!(s.remove_idle(), 0);
    sleep(200 * MS).await;
    assert_eq!(s.remove_idle(), 2);
    assert!(s.is_empty());
}

/// Many waiters, a pseudo-random third of them cancelled at pseudo-random times (some before
/// they leave, some after): every departure, of all requests, is in arrival order and exactly
/// one interval after the one before (the queue never runs dry, so every slot a cancelled
/// waiter gave back was taken at once by the next, and none was taken early).
#[tokio::test(start_paused = true)]
async fn random_cancellations_never_speed_up_the_schedule() {
    use std::sync::{Arc, Mutex};
    let start = Instant::now();
    let s = Shaper::new(ShapeConfig::new(Rate::per_second(20))).unwrap();
    let departures = Arc::new(Mutex::new(Vec::new()));
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut cancels = Vec::new();
    let mut handles = Vec::new();
    for i in 0..60u64 {
        let fut = s.acquire(1);
        let log = Arc::clone(&departures);
        let h = tokio::spawn(async move {
            fut.await.unwrap();
            let t = (Instant::now() - start).as_millis() as u64;
            log.lock().unwrap().push((t, i));
        });
        if next(3) == 0 {
            cancels.push((next(2_000), h));
        } else {
            handles.push(h);
        }
    }
    cancels.sort_by_key(|(at, _)| *at);
    for (at, h) in cancels {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        h.abort();
    }
    for h in handles {
        h.await.unwrap();
    }
    let mut departures = departures.lock().unwrap().clone();
    departures.sort_unstable();
    let n = departures.len();
    assert!(
        (40..60).contains(&n),
        "{n} left: too few or too few cancelled in time"
    );
    let mut last_index = None;
    for (k, (t, i)) in departures.iter().enumerate() {
        assert_eq!(*t, 50 * k as u64, "{departures:?}");
        assert!(last_index < Some(*i), "out of order: {departures:?}");
        last_index = Some(*i);
    }
}
