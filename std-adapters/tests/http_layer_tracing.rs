//! The layer's `tracing` warning when a store fails and the layer lets the request through.
//!
//! In a test binary of its own: tracing caches each call site's interest when the site is first
//! hit, so a test on another thread hitting the same site while this test's subscriber is being
//! installed could leave it uninterested, and the event would be lost.
#![cfg(all(feature = "tower", feature = "axum", feature = "tracing"))]
#![allow(clippy::unwrap_used, missing_docs)]

mod http_support;

use std::fmt;
use std::sync::Arc;

use http::StatusCode;
use http_support::{policy, routes, Failing, Http};
use traffik::http::{BackendErrorOutcome, RateLimitLayer};

/// Records each event's level, target and fields.
#[derive(Clone, Default)]
struct Events(Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn fmt::Debug) {
                self.0.push_str(&format!(" {}={v:?}", f.name()));
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let m = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}{}", m.level(), m.target(), fields.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn a_fail_open_layer_still_reports_the_failure() {
    let layer = RateLimitLayer::builder()
        .policy(policy("remote", "10/s", Failing))
        .on_backend_error(BackendErrorOutcome::Allow)
        .build()
        .unwrap();
    let events = Events::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    // The whole server runs on this test's one thread, so the subscriber sees its events.
    let http = Http::new(routes().layer(layer)).await;
    assert_eq!(http.get("/", "c").await.status, StatusCode::OK);
    let seen = events.0.lock().unwrap().clone();
    let ours: Vec<_> = seen
        .iter()
        .filter(|e| e.contains("traffik::http"))
        .collect();
    assert_eq!(
        ours,
        [
            "WARN traffik::http message=rate limiter failed before the handler \
             policy=\"remote\" kind=NotCharged error=store unreachable"
        ]
    );
}
