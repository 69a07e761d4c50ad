//! Failover for limiters whose state lives elsewhere: a circuit breaker, retries that never
//! count a request twice, a per-call timeout, and a policy for when the store cannot answer.
//!
//! The [`CircuitBreaker`] is usable on its own and needs no async runtime. The `Failover`
//! wrapper, its retries, timeout and policies need the `tokio` feature.
//!
#![cfg_attr(feature = "tokio", doc = include_str!("README.md"))]

pub mod breaker;

pub use breaker::{
    BreakerConfig, BreakerConfigError, BreakerState, CircuitBreaker, Permit, Rejected,
};

#[cfg(feature = "tokio")]
mod check;
#[cfg(feature = "tokio")]
mod error;
#[cfg(feature = "tokio")]
mod limiter;
#[cfg(feature = "tokio")]
mod now;
#[cfg(feature = "tokio")]
mod policy;
#[cfg(feature = "tokio")]
mod replay;
#[cfg(feature = "tokio")]
pub(crate) mod retry;
#[cfg(feature = "tokio")]
mod stats;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use error::{FailoverError, NoFallback};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use limiter::Failover;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use policy::{node_share, FailoverBuildError, FailoverBuilder, OnError, ShareError};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use retry::{Backoff, Jitter, RetryPolicy};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use stats::{ErrorCounts, FailoverStats, ReplayStats};
