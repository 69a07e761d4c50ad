//! `Failover` in front of real stores that die: a `redis-server` (and once a `memcached`) is
//! `kill -9`ed under concurrent load, left down for about a second, and started again on the
//! same port, while eight tasks keep checking. Plus a TCP proxy that lets Redis run a script and
//! loses its reply, to show the failover never retries a call that may have been charged.
//!
//! Each scenario takes a few seconds of wall time; run with `--nocapture` to see its figures.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::servers::{redis_script_calls, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use traffik::failover::{
    node_share, Backoff, BreakerConfig, BreakerState, Failover, FailoverError, FailoverStats,
    OnError, RetryPolicy,
};
use traffik::memcached::MemcachedLimiter;
use traffik::redis::RedisLimiter;
use traffik::{
    AnyAlgorithm, AsyncLimiter, Clock, Decision, ErrorKind, KeyedLimiter, LimiterError, Rate,
};

/// The failover's per-attempt timeout, and how far past it a call may end (scheduling, the
/// fallback's answer).
const TIMEOUT: Duration = Duration::from_millis(200);
const MARGIN: Duration = Duration::from_millis(100);
/// Concurrent checking tasks, and the keys they cycle through.
const TASKS: usize = 8;
const KEYS: [&str; 3] = ["hot-0", "hot-1", "hot-2"];
/// The global limit, enforced by the store for all nodes together, and the node count the
/// in-process fallback is sized for with `node_share`: each node falls back to 50 a second
/// (one every 20 ms exactly), burst 50.
const GLOBAL: &str = "100/s";
const GLOBAL_PER_SECOND: u64 = 100;
const NODES: u64 = 2;
const SHARE_INTERVAL_NS: u64 = 1_000_000_000 * NODES / GLOBAL_PER_SECOND;
const SHARE_BURST: u64 = GLOBAL_PER_SECOND / NODES;

/// The fallbacks' clock: nanoseconds since a fixed `Instant`. The instants a [`Recorded`]
/// fallback takes around each check then bracket the fallback's own reading exactly, on one
/// clock, so the budget arithmetic below needs no allowance for two clocks' rates.
#[derive(Clone, Copy, Debug)]
struct InstantClock(Instant);

impl Clock for InstantClock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap()
    }
}

type Local = KeyedLimiter<str, AnyAlgorithm, InstantClock>;

/// One fallback admission, between two instants that bracket the fallback's own clock reading.
#[derive(Clone, Debug)]
struct Admission {
    key: String,
    before: Instant,
    after: Instant,
}

/// The in-process fallback, recording every admission it makes.
struct Recorded<L> {
    inner: L,
    admitted: Mutex<Vec<Admission>>,
}

impl<L> Recorded<L> {
    fn new(inner: L) -> Self {
        Recorded {
            inner,
            admitted: Mutex::new(Vec::new()),
        }
    }

    fn admissions(&self) -> Vec<Admission> {
        self.admitted.lock().unwrap().clone()
    }
}

impl<L: AsyncLimiter<str>> AsyncLimiter<str> for Recorded<L> {
    type Error = L::Error;

    async fn check(&self, key: &str, cost: u64) -> Result<Decision, L::Error> {
        let before = Instant::now();
        let decision = self.inner.check(key, cost).await?;
        if decision.is_allowed() && cost > 0 {
            self.admitted.lock().unwrap().push(Admission {
                key: key.to_owned(),
                before,
                after: Instant::now(),
            });
        }
        Ok(decision)
    }

    async fn peek(&self, key: &str) -> Result<Decision, L::Error> {
        self.inner.peek(key).await
    }

    async fn reset(&self, key: &str) -> Result<(), L::Error> {
        self.inner.reset(key).await
    }
}

/// This node's share of [`GLOBAL`], recorded.
fn share() -> Recorded<Local> {
    Recorded::new(
        node_share(GLOBAL, NODES)
            .unwrap()
            .capacity(1_000)
            .build_with_clock(InstantClock(Instant::now()))
            .unwrap(),
    )
}

fn breaker() -> BreakerConfig {
    BreakerConfig::new()
        .failure_threshold(3)
        .recovery_timeout(Duration::from_millis(250))
        .success_threshold(1)
}

/// One check as a load task saw it.
#[derive(Debug)]
struct Call {
    start: Instant,
    end: Instant,
    outcome: Result<Decision, String>,
}

/// Eight tasks checking [`KEYS`] round-robin, about one call per task per millisecond, until
/// `stop` is set.
fn load<L>(limiter: &Arc<L>, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<Vec<Call>>>
where
    L: AsyncLimiter<str> + 'static,
{
    (0..TASKS)
        .map(|task| {
            let (limiter, stop) = (Arc::clone(limiter), Arc::clone(stop));
            tokio::spawn(async move {
                let mut calls = Vec::new();
                let mut i = task;
                while !stop.load(Ordering::Relaxed) {
                    let key = KEYS[i % KEYS.len()];
                    i += 1;
                    let start = Instant::now();
                    let outcome = limiter.check(key, 1).await.map_err(|e| e.to_string());
                    calls.push(Call {
                        start,
                        end: Instant::now(),
                        outcome,
                    });
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                calls
            })
        })
        .collect()
}

/// When the store went away and came back.
#[derive(Clone, Copy, Debug)]
struct Outage {
    /// Just before `kill -9`.
    kill_sent: Instant,
    /// The process is gone (reaped).
    dead: Instant,
    /// Just before starting it again.
    restarting: Instant,
    /// It answers again.
    back: Instant,
    /// The breaker was seen closed again (polled every 10 ms).
    recovered: Instant,
}

/// The longest the breaker may take to close once the store answers again. The client's
/// reconnection can make the first probe after the restart time out (the breaker then stays
/// open for another recovery timeout), so this allows a few probe cycles.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(3);

/// Runs the load against `limiter`: `warm` with the store up, `down` with it killed, and with
/// it back until `closed` says the breaker closed, then `after` more. `is_down` is set while the
/// store is certainly dead. Returns every call, in no particular order.
async fn kill_and_restart<L>(
    limiter: &Arc<L>,
    store: &mut Option<Store>,
    is_down: &Arc<AtomicBool>,
    (warm, down, after): (Duration, Duration, Duration),
    closed: impl Fn() -> bool,
) -> (Outage, Vec<Call>)
where
    L: AsyncLimiter<str> + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(limiter, &stop);
    tokio::time::sleep(warm).await;

    // Killing and starting a process block (the start polls until the store answers): off the
    // runtime's workers.
    let mut s = store.take().unwrap();
    let kill_sent = Instant::now();
    let mut s = tokio::task::spawn_blocking(move || {
        s.kill();
        s
    })
    .await
    .unwrap();
    let dead = Instant::now();
    is_down.store(true, Ordering::SeqCst);
    tokio::time::sleep(down).await;
    is_down.store(false, Ordering::SeqCst);
    let restarting = Instant::now();
    let s = tokio::task::spawn_blocking(move || {
        s.start();
        s
    })
    .await
    .unwrap();
    let back = Instant::now();
    *store = Some(s);
    while !closed() {
        assert!(
            back.elapsed() < RECOVERY_DEADLINE,
            "the breaker did not close within {RECOVERY_DEADLINE:?} of the store's return"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let recovered = Instant::now();
    tokio::time::sleep(after).await;

    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for t in tasks {
        // A panicking task fails the test here.
        calls.extend(t.await.unwrap());
    }
    let outage = Outage {
        kill_sent,
        dead,
        restarting,
        back,
        recovered,
    };
    (outage, calls)
}

/// Asserts every call ended within the timeout plus the margin; returns the longest.
fn longest_call(calls: &[Call]) -> Duration {
    let longest = calls.iter().map(|c| c.end - c.start).max().unwrap();
    assert!(
        longest <= TIMEOUT + MARGIN,
        "a call took {longest:?}, more than the {TIMEOUT:?} timeout + {MARGIN:?}"
    );
    longest
}

fn assert_all_answered(calls: &[Call]) {
    let failed: Vec<_> = calls
        .iter()
        .filter_map(|c| c.outcome.as_ref().err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed, e.g. {:?}",
        failed.len(),
        calls.len(),
        failed.first()
    );
}

/// Checks the fallback's admissions against its budget, key by key, and returns
/// `(admitted, budget)` summed over the keys.
///
/// The fallback is a GCRA of one unit every `SHARE_INTERVAL_NS`, burst `SHARE_BURST`: between
/// its first and last admission of a key, `span` apart on its clock, it admits at most
/// `SHARE_BURST + floor(span / SHARE_INTERVAL_NS)`. The span is measured from just before the
/// first admission's check to just after the last one's, on the fallback's own clock
/// ([`InstantClock`]), so it is never shorter than the span between its readings.
fn within_budget(admissions: &[Admission], outage: &Outage) -> (u64, u64) {
    let mut total = (0, 0);
    for key in KEYS {
        let mine: Vec<_> = admissions.iter().filter(|a| a.key == key).collect();
        let admitted = mine.len() as u64;
        assert!(
            admitted >= SHARE_BURST,
            "{key}: the fallback admitted only {admitted}, less than its burst: it was hardly asked"
        );
        let first = mine.iter().map(|a| a.before).min().unwrap();
        let last = mine.iter().map(|a| a.after).max().unwrap();
        assert!(
            first >= outage.kill_sent,
            "{key}: the fallback admitted before the store was killed"
        );
        let span = u64::try_from((last - first).as_nanos()).unwrap();
        let budget = SHARE_BURST + span / SHARE_INTERVAL_NS;
        assert!(
            admitted <= budget,
            "{key}: the fallback admitted {admitted} over {span} ns, budget {budget}"
        );
        total.0 += admitted;
        total.1 += budget;
    }
    total
}

/// The outage as the fallback saw it: from the kill to its last admission; and the budget for
/// all keys over that whole time.
fn outage_budget(admissions: &[Admission], outage: &Outage) -> (Duration, u64) {
    let last = admissions.iter().map(|a| a.after).max().unwrap();
    let seen = last - outage.kill_sent;
    let per_key = SHARE_BURST + u64::try_from(seen.as_nanos()).unwrap() / SHARE_INTERVAL_NS;
    (seen, per_key * KEYS.len() as u64)
}

/// Drains the replay queue and checks every queued charge was accounted for.
async fn drained<P, F>(failover: &Failover<str, P, F>) -> FailoverStats
where
    P: AsyncLimiter<str>,
    F: AsyncLimiter<str>,
{
    failover.flush_replay().await;
    let s = failover.stats();
    let r = s.replay;
    assert_eq!(r.pending, 0, "{s:?}");
    assert_eq!(r.dropped, 0, "{s:?}");
    assert_eq!(r.queued, r.replayed + r.denied + r.failed, "{s:?}");
    s
}

/// Calls `probe` until the failover's breaker reads closed (at most ~2 s).
async fn until_closed<P, F, Fut>(failover: &Failover<str, P, F>, probe: impl Fn() -> Fut)
where
    Fut: std::future::Future,
{
    for _ in 0..40 {
        if failover.breaker().state() == BreakerState::Closed {
            return;
        }
        let _ = probe().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the breaker never closed: {:?}", failover.breaker());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fallback_keeps_its_budget_and_replays_reach_redis() {
    let mut store = Some(Store::redis());
    let url = store.as_ref().unwrap().redis_url();
    let primary = RedisLimiter::builder(url.as_str())
        .rate(Rate::per_second(GLOBAL_PER_SECOND))
        .prefix("outage")
        .build()
        .await
        .unwrap();
    let failover: Arc<Failover<str, _, _>> = Arc::new(
        Failover::builder(primary)
            .fallback(share())
            .timeout(Some(TIMEOUT))
            .breaker(breaker())
            .build()
            .unwrap(),
    );

    // A witness on the same server: a slow limit (one unit every 3.6 s, burst 1000), charged 2
    // at a time only while the store is dead, so every charge Redis holds for it afterwards was
    // replayed, and GCRA's `remaining` shows them exactly (nothing refills within 3.6 s).
    const WITNESS_LIMIT: u64 = 1_000;
    let witness: Arc<Failover<str, _, _>> = Arc::new(
        Failover::builder(
            RedisLimiter::builder(url.as_str())
                .rate(Rate::per_hour(WITNESS_LIMIT))
                .prefix("witness")
                .build()
                .await
                .unwrap(),
        )
        .fallback(Recorded::new(
            node_share(Rate::per_hour(WITNESS_LIMIT), NODES)
                .unwrap()
                .capacity(16)
                .build_with_clock(InstantClock(Instant::now()))
                .unwrap(),
        ))
        .timeout(Some(TIMEOUT))
        .breaker(
            BreakerConfig::new()
                .failure_threshold(1)
                .recovery_timeout(Duration::from_millis(100))
                .success_threshold(1),
        )
        .build()
        .unwrap(),
    );
    let is_down = Arc::new(AtomicBool::new(false));
    let witness_task = {
        let (witness, is_down) = (Arc::clone(&witness), Arc::clone(&is_down));
        let done = Arc::new(AtomicBool::new(false));
        let done2 = Arc::clone(&done);
        let task = tokio::spawn(async move {
            while !done2.load(Ordering::Relaxed) {
                if is_down.load(Ordering::SeqCst) {
                    let d = witness.check("w", 2).await.unwrap();
                    assert!(d.is_allowed(), "the witness stays far below its share");
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        });
        (task, done)
    };

    let phases = (
        Duration::from_millis(300),
        Duration::from_millis(1_200),
        Duration::from_millis(300),
    );
    let (outage, calls) = kill_and_restart(&failover, &mut store, &is_down, phases, || {
        failover.breaker().state() == BreakerState::Closed
    })
    .await;
    witness_task.1.store(true, Ordering::Relaxed);
    witness_task.0.await.unwrap();

    assert_all_answered(&calls);
    let longest = longest_call(&calls);
    let stats = failover.stats();
    assert!(stats.trips >= 1, "{stats:?}");
    assert_eq!(stats.breaker, BreakerState::Closed, "{stats:?}");
    let admissions = failover.fallback().unwrap().admissions();
    let (admitted, key_budget) = within_budget(&admissions, &outage);
    let (seen, budget) = outage_budget(&admissions, &outage);
    assert!(admitted <= budget);
    let stats = drained(&failover).await;

    // The witness: close its breaker (a peek is a probe that charges nothing), replay, and read
    // what Redis holds for it.
    until_closed(&witness, || witness.peek("w")).await;
    let w = drained(&witness).await;
    assert!(w.replay.queued >= 1, "{w:?}");
    assert_eq!(w.replay.replayed, w.replay.queued, "{w:?}");
    let in_redis = witness.primary().peek("w").await.unwrap();
    assert_eq!(
        in_redis.remaining(),
        WITNESS_LIMIT - 2 * w.replay.replayed,
        "Redis holds exactly the replayed charges"
    );

    println!(
        "redis outage: {} calls by {TASKS} tasks; store dead for {:?} (kill {:?}, restart {:?}); \
         longest call {longest:?} (timeout {TIMEOUT:?}); breaker trips {}, closed {:?} after the \
         store was back, ends {}; {} short-circuited, {} timeouts, errors {:?}",
        calls.len(),
        outage.restarting - outage.dead,
        outage.dead - outage.kill_sent,
        outage.back - outage.restarting,
        stats.trips,
        outage.recovered - outage.back,
        stats.breaker,
        stats.short_circuited,
        stats.timeouts,
        stats.errors,
    );
    println!(
        "  fallback admitted {admitted} over {} keys (per-key spans allow {key_budget}; the \
         outage as the fallback saw it, {seen:?}, allows {budget} = {} x ({SHARE_BURST} + \
         floor({} ns / {SHARE_INTERVAL_NS} ns)))",
        KEYS.len(),
        KEYS.len(),
        seen.as_nanos()
    );
    println!(
        "  hot keys' replay: {:?}; witness: fallback admitted {} charges of 2, {} queued, {} \
         replayed, Redis remaining {} of {WITNESS_LIMIT}",
        stats.replay,
        witness.fallback().unwrap().admissions().len(),
        w.replay.queued,
        w.replay.replayed,
        in_redis.remaining()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_with_deny_policy_admits_nothing_while_down() {
    const WAIT: Duration = Duration::from_millis(100);
    let mut store = Some(Store::redis());
    let primary = RedisLimiter::builder(store.as_ref().unwrap().redis_url().as_str())
        .rate(Rate::per_second(GLOBAL_PER_SECOND))
        .prefix("deny")
        .build()
        .await
        .unwrap();
    let failover: Arc<Failover<str, _>> = Arc::new(
        Failover::builder(primary)
            .on_error(OnError::Deny { retry_after: WAIT })
            .timeout(Some(TIMEOUT))
            .breaker(breaker())
            .build()
            .unwrap(),
    );
    let is_down = Arc::new(AtomicBool::new(false));
    let phases = (
        Duration::from_millis(200),
        Duration::from_millis(800),
        Duration::from_millis(300),
    );
    let (outage, calls) = kill_and_restart(&failover, &mut store, &is_down, phases, || {
        failover.breaker().state() == BreakerState::Closed
    })
    .await;

    assert_all_answered(&calls);
    let longest = longest_call(&calls);
    // Calls made entirely while the process was gone: every one denied, with the policy's wait.
    let while_dead: Vec<&Decision> = calls
        .iter()
        .filter(|c| c.start >= outage.dead && c.end <= outage.restarting)
        .map(|c| c.outcome.as_ref().unwrap())
        .collect();
    assert!(while_dead.len() >= 100, "{} calls", while_dead.len());
    for d in &while_dead {
        assert!(d.is_denied(), "admitted while the store was dead: {d:?}");
        assert_eq!(d.retry_after(), WAIT);
    }
    // Admissions before the kill and after the recovery: the primary decided again.
    let admitted_before = calls
        .iter()
        .filter(|c| c.end <= outage.kill_sent && c.outcome.as_ref().unwrap().is_allowed())
        .count();
    let admitted_after = calls
        .iter()
        .filter(|c| c.start >= outage.back && c.outcome.as_ref().unwrap().is_allowed())
        .count();
    let stats = failover.stats();
    assert!(
        admitted_before > 0 && admitted_after > 0,
        "{admitted_before} admitted before, {admitted_after} after: {stats:?}"
    );
    assert!(stats.trips >= 1, "{stats:?}");
    assert_eq!(stats.breaker, BreakerState::Closed, "{stats:?}");
    assert!(
        stats.denied_on_error >= while_dead.len() as u64,
        "{stats:?}"
    );
    assert_eq!(stats.allowed_on_error, 0);
    println!(
        "redis outage, deny policy: {} calls, {} entirely while dead, all denied; longest call \
         {longest:?}; {admitted_before} admitted before, {admitted_after} after recovery; trips {}, \
         closed {:?} after the store was back; {} denied on error",
        calls.len(),
        while_dead.len(),
        stats.trips,
        outage.recovered - outage.back,
        stats.denied_on_error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_killed_under_load_fallback_keeps_its_budget_and_breaker_recovers() {
    let mut store = Some(Store::memcached());
    let primary = MemcachedLimiter::builder(store.as_ref().unwrap().addr())
        .rate(GLOBAL)
        .prefix("outage")
        .build()
        .unwrap();
    let failover: Arc<Failover<str, _, _>> = Arc::new(
        Failover::builder(primary)
            .fallback(share())
            .timeout(Some(TIMEOUT))
            .breaker(breaker())
            .build()
            .unwrap(),
    );
    let is_down = Arc::new(AtomicBool::new(false));
    let phases = (
        Duration::from_millis(200),
        Duration::from_millis(700),
        Duration::from_millis(300),
    );
    let (outage, calls) = kill_and_restart(&failover, &mut store, &is_down, phases, || {
        failover.breaker().state() == BreakerState::Closed
    })
    .await;

    assert_all_answered(&calls);
    let longest = longest_call(&calls);
    let stats = failover.stats();
    assert!(stats.trips >= 1, "{stats:?}");
    assert_eq!(stats.breaker, BreakerState::Closed, "{stats:?}");
    let admissions = failover.fallback().unwrap().admissions();
    let (admitted, key_budget) = within_budget(&admissions, &outage);
    let (seen, budget) = outage_budget(&admissions, &outage);
    let stats = drained(&failover).await;
    println!(
        "memcached outage: {} calls; dead for {:?}; longest call {longest:?}; trips {}, closed \
         {:?} after the store was back, ends {}; \
         fallback admitted {admitted} (per-key spans allow {key_budget}, the {seen:?} outage \
         {budget}); replay {:?}",
        calls.len(),
        outage.restarting - outage.dead,
        stats.trips,
        outage.recovered - outage.back,
        stats.breaker,
        stats.replay
    );
}

/// What the proxy does to the script call it is armed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// Forward it, let the server run it, then close the client's connection: the reply is lost.
    HangUp,
    /// Forward it and drop every byte the server sends back on that connection from then on.
    Swallow,
}

/// A TCP proxy between a limiter and redis-server that, when armed, loses the reply to the next
/// script call (`EVAL`/`EVALSHA`) after forwarding it.
struct Proxy {
    port: u16,
    armed: Arc<Mutex<Option<Cut>>>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(Mutex::new(None));
        let shared = Arc::clone(&armed);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, Arc::clone(&shared)));
            }
        });
        Proxy { port, armed }
    }

    fn arm(&self, cut: Cut) {
        *self.armed.lock().unwrap() = Some(cut);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

fn is_script_call(chunk: &[u8]) -> bool {
    let has = |needle: &[u8]| chunk.windows(needle.len()).any(|w| w == needle);
    has(b"$7\r\nEVALSHA\r\n") || has(b"$4\r\nEVAL\r\n")
}

async fn relay(client: TcpStream, server: TcpStream, armed: Arc<Mutex<Option<Cut>>>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let replies = {
        let cut = Arc::clone(&cut);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16_384];
            loop {
                let n = match from_server.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // Set before the lost call was forwarded, so its reply is never passed on.
                if !cut.load(Ordering::SeqCst) && to_client.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut buf = vec![0u8; 16_384];
    loop {
        let n = match from_client.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let lose = if is_script_call(chunk) {
            armed.lock().unwrap().take()
        } else {
            None
        };
        if lose.is_some() {
            cut.store(true, Ordering::SeqCst);
        }
        if to_server.write_all(chunk).await.is_err() {
            break;
        }
        if lose == Some(Cut::HangUp) {
            // Give the server time to run it, then close the client's side both ways.
            tokio::time::sleep(Duration::from_millis(100)).await;
            break;
        }
    }
    replies.abort();
}

const CUT_LIMIT: u64 = 1_000;
const CUT_COST: u64 = 7;

/// A limiter through the proxy and one straight to the server, same prefix and rate (one unit
/// every 3.6 s: nothing refills during the test, so `remaining` counts charges exactly).
async fn cut_limiters(
    store: &Store,
    proxy: &Proxy,
    timeout: Duration,
) -> (RedisLimiter, RedisLimiter) {
    let build = |url: String| {
        RedisLimiter::builder(url.as_str())
            .rate(Rate::per_hour(CUT_LIMIT))
            .prefix("cut")
            .timeout(timeout)
            .build()
    };
    let through = build(proxy.url()).await.unwrap();
    let direct = build(store.redis_url()).await.unwrap();
    (through, direct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_lost_after_redis_ran_the_script_is_not_retried() {
    let store = Store::redis();
    let proxy = Proxy::start(store.port).await;
    let (through, direct) = cut_limiters(&store, &proxy, Duration::from_secs(1)).await;
    let failover: Failover<str, _> = Failover::builder(through)
        .on_error(OnError::Error)
        .retry(RetryPolicy::attempts(5).backoff(Backoff::Constant(Duration::ZERO)))
        .timeout(Some(Duration::from_secs(2)))
        .build()
        .unwrap();

    proxy.arm(Cut::HangUp);
    let before = redis_script_calls(store.port);
    let err = failover.check("k", CUT_COST).await.unwrap_err();
    // Long enough for any resend (a retry, the client's own reconnect) to reach the server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ran = redis_script_calls(store.port) - before;

    assert_eq!(err.kind(), ErrorKind::Indeterminate, "{err:?}");
    assert!(matches!(err, FailoverError::Primary(_)), "{err:?}");
    assert_eq!(ran, 1, "the server ran the script {ran} times");
    let s = failover.stats();
    assert_eq!(s.retries, 0, "{s:?}");
    assert_eq!(s.errors.indeterminate, 1, "{s:?}");
    assert_eq!(s.errors.not_charged, 0, "{s:?}");
    assert_eq!(
        direct.peek("k").await.unwrap().remaining(),
        CUT_LIMIT - CUT_COST,
        "charged exactly once"
    );
    // The next call goes through (a fresh connection) and is charged once more.
    let d = failover.check("k", CUT_COST).await.unwrap();
    assert_eq!(d.remaining(), CUT_LIMIT - 2 * CUT_COST);
    println!(
        "reply lost: {err}; scripts run {ran}; failover retries {}",
        s.retries
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_swallowed_times_out_is_not_retried_nor_replayed() {
    let store = Store::redis();
    let proxy = Proxy::start(store.port).await;
    // The store's own timeout is longer than the failover's: the failover's runs out first.
    let (through, direct) = cut_limiters(&store, &proxy, Duration::from_secs(2)).await;
    let failover: Failover<str, _, _> = Failover::builder(through)
        .fallback(share())
        .retry(RetryPolicy::attempts(5).backoff(Backoff::Constant(Duration::ZERO)))
        .timeout(Some(TIMEOUT))
        .build()
        .unwrap();

    proxy.arm(Cut::Swallow);
    let before = redis_script_calls(store.port);
    let start = Instant::now();
    let d = failover.check("k", CUT_COST).await.unwrap();
    let took = start.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ran = redis_script_calls(store.port) - before;

    assert!(d.is_allowed(), "the fallback answered");
    assert!(took >= TIMEOUT && took <= TIMEOUT + MARGIN, "{took:?}");
    assert_eq!(ran, 1, "the server ran the script {ran} times");
    let s = failover.stats();
    assert_eq!(s.timeouts, 1, "{s:?}");
    assert_eq!(s.retries, 0, "{s:?}");
    assert_eq!(s.fallback_decisions, 1, "{s:?}");
    // Redis may have counted it (it did): the fallback's admission is not queued for replay.
    assert_eq!(s.replay.queued, 0, "{s:?}");
    assert_eq!(
        direct.peek("k").await.unwrap().remaining(),
        CUT_LIMIT - CUT_COST,
        "charged exactly once"
    );
    println!(
        "reply swallowed: answered by the fallback after {took:?}; scripts run {ran}; retries {}, \
         queued for replay {}",
        s.retries, s.replay.queued
    );
}
