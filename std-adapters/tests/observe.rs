//! What the failover layer tells the outside world: `tracing` events on breaker state changes
//! only (none on the hot path), and `metrics` counters matching the stats snapshot.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder};
use metrics::{SharedString, Unit};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use support::{Scripted, Step};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use traffik::failover::{BreakerConfig, CircuitBreaker, Failover, OnError};
use traffik::{AsyncLimiter, ErrorKind, ManualClock, RateLimiter};

/// Polls a future that must be ready at once (scripted and in-process limiters are).
fn now<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("expected a ready future"),
    }
}

/// Records every event's level and `to` field.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(Level, String)>>>);

impl Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        struct To(String);
        impl tracing::field::Visit for To {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "to" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut to = To(String::new());
        event.record(&mut to);
        assert_eq!(event.metadata().target(), "traffik::failover");
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), to.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn tracing_events_on_state_changes_only() {
    let events = Events::default();
    let clock = ManualClock::new();
    let config = BreakerConfig::new()
        .failure_threshold(2)
        .success_threshold(1)
        .recovery_timeout(Duration::from_millis(10));
    tracing::subscriber::with_default(events.clone(), || {
        let b = CircuitBreaker::new(config, &clock).unwrap();
        for _ in 0..100 {
            b.acquire().unwrap().succeed(); // the hot path: silent
        }
        b.acquire().unwrap().fail(); // counted, no change of state: silent
        b.acquire().unwrap().fail(); // opens
        for _ in 0..10 {
            assert!(b.acquire().is_err()); // turned away: silent
        }
        clock.advance(Duration::from_millis(10));
        b.acquire().unwrap().succeed(); // half-open, then closed
    });
    let seen = events.0.lock().unwrap().clone();
    let expect = [
        (Level::WARN, "open".to_owned()),
        (Level::INFO, "half-open".to_owned()),
        (Level::INFO, "closed".to_owned()),
    ];
    assert_eq!(seen, expect);
}

#[test]
fn a_failover_on_a_healthy_primary_logs_nothing() {
    let events = Events::default();
    let primary: RateLimiter<str> = traffik::builder().rate("1000/s").build().unwrap();
    let f: Failover<str, _> = Failover::builder(primary).build().unwrap();
    tracing::subscriber::with_default(events.clone(), || {
        for _ in 0..100 {
            assert!(now(f.check("k", 1)).unwrap().is_allowed());
        }
    });
    assert!(events.0.lock().unwrap().is_empty());
}

/// A recorder that keeps each counter's total by name and labels.
#[derive(Default)]
struct Totals(Mutex<BTreeMap<String, Arc<Total>>>);

#[derive(Default)]
struct Total(AtomicU64);

impl CounterFn for Total {
    fn increment(&self, n: u64) {
        self.0.fetch_add(n, Ordering::SeqCst);
    }
    fn absolute(&self, n: u64) {
        self.0.store(n, Ordering::SeqCst);
    }
}

impl Totals {
    fn get(&self, name: &str) -> u64 {
        let map = self.0.lock().unwrap();
        map.get(name).map_or(0, |t| t.0.load(Ordering::SeqCst))
    }
}

impl Recorder for Totals {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut name = key.name().to_owned();
        for label in key.labels() {
            name.push_str(&format!(" {}={}", label.key(), label.value()));
        }
        let total = Arc::clone(self.0.lock().unwrap().entry(name).or_default());
        Counter::from_arc(total)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn metrics_counters_match_the_stats() {
    let totals = Totals::default();
    let clock = ManualClock::new();
    let primary = Scripted::always(Step::Fail(ErrorKind::NotCharged));
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .on_error(OnError::Allow)
        .breaker(BreakerConfig::new().failure_threshold(2))
        .clock(&clock)
        .build()
        .unwrap();
    metrics::with_local_recorder(&totals, || {
        for _ in 0..5 {
            assert!(now(f.check("k", 1)).unwrap().is_allowed());
        }
    });
    let s = f.stats();
    assert_eq!(
        (s.errors.not_charged, s.allowed_on_error, s.short_circuited),
        (2, 5, 3)
    );
    assert_eq!(
        totals.get("traffik_failover_primary_errors_total kind=not_charged"),
        2
    );
    assert_eq!(totals.get("traffik_failover_allowed_on_error_total"), 5);
    assert_eq!(totals.get("traffik_failover_short_circuited_total"), 3);
    assert_eq!(
        totals.get("traffik_breaker_transitions_total from=closed to=open"),
        1
    );
}
