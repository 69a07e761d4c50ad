//! [`MemcachedMultiLimiter`]: several limits on one key, checked all or nothing.
//!
//! The design is the core's [`check_all`](traffik_core::check_all) (read
//! [`traffik_core::multi`] for it and its proof), with memcached keys as the words:
//!
//! 1. The limits are charged one after another, each with its own `gets`/`cas` loop, exactly
//!    as a single [`MemcachedLimiter::check`] runs. A denying limit writes nothing.
//! 2. When a limit denies (or fails), the limits already charged by this check are refunded in
//!    reverse order. A refund `gets` the key and, only if it still holds exactly the state this
//!    check wrote, `cas`es it back to exactly the state that check replaced (the fresh state
//!    `0` for a key that was absent; see below). If anything else changed the key, the refund
//!    is skipped and the charge stays, which is only ever stricter.
//!
//! So, as in the core: **no single limit ever over-admits**, and **a denied multi-check charges
//! nothing unless it raced** (another client changed a charged key before the refund came).
//! Without contention the decisions are exactly [`check_all`](traffik_core::check_all)'s over
//! in-process limiters: the first denying limit answers; admitted, the counts are those of the
//! limit with the least left (the first such), and `reset_after` is the longest.
//!
//! A key absent before the charge is refunded by writing the fresh state `0` with the normal
//! expiry rather than by a `delete`: the classic protocol's `delete` takes no CAS token, so it
//! could erase a charge another client made between the refund's `gets` and the `delete`.
//!
//! Memcached adds one case to the core's proof: the words stay distinct while a charge stands
//! only as long as the key does. Every write's expiry outlasts its state, so a key can vanish
//! before its refund only by eviction or a [`reset`](MemcachedLimiter::reset). The refund then
//! finds no key and is skipped, unless another client has re-created the key in between with
//! the very word this check wrote; undoing that client's charge is then the one way a refund
//! can forgive more than its own, and it takes an eviction (which forgets everything anyway,
//! see the crate docs on memory) or a reset during the check.
//!
//! Time: each limit's charge and each refund is one call bounded by that limit's
//! [`timeout`](crate::MemcachedLimiterBuilder::timeout), so a check of `n` limits takes at most
//! `2n - 1` timeouts. All limits are decided at one time, read once per check.
//!
//! Failures: an error on a later limit refunds the earlier ones and is returned as is. A refund
//! that cannot be made (the network, the timeout, a key that keeps changing) turns the result
//! into [`RefundFailed`](crate::MemcachedLimiterError::RefundFailed), which is *indeterminate*: a
//! charge may remain although the check was not admitted. Dropping a check's future part-way
//! (a caller's own timeout) can likewise leave the charges made so far.

mod refund;

use std::future::Future;
use std::sync::Arc;

use traffik_core::{combine_admissions, AnyAlgorithm, AsyncLimiter, Decision};

use crate::error::MemcachedLimiterError as E;
use crate::limiter::MemcachedLimiter;

/// Several [`MemcachedLimiter`]s enforced together on the same key, all or nothing: `10/s`
/// *and* `1000/h`, say.
///
/// Each limit keeps its own configuration (servers, prefix, algorithm, timeout); a check
/// charges them in order, so put the limit most likely to deny first: a check it denies writes
/// nothing at all. See the [module docs](self) for the guarantees and the refund.
///
/// ```no_run
/// use traffik_core::AlgorithmKind;
/// use traffik_memcached::{MemcachedLimiter, MemcachedMultiLimiter};
///
/// # async fn demo() -> Result<(), traffik_memcached::MemcachedLimiterError> {
/// let per_second = MemcachedLimiter::builder("127.0.0.1:11211")
///     .rate("10/second")
///     .prefix("api-s")
///     .build()?;
/// let per_hour = MemcachedLimiter::builder("127.0.0.1:11211")
///     .rate("1000/hour")
///     .algorithm(AlgorithmKind::SlidingWindowCounter)
///     .prefix("api-h")
///     .build()?;
/// let both = MemcachedMultiLimiter::new([per_second, per_hour])?;
/// let decision = both.check("client-42", 1).await?;
/// if decision.is_denied() {
///     // Neither limit was charged (unless another client raced this check).
///     println!("429, retry in {:?}", decision.retry_after());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MemcachedMultiLimiter {
    limits: Arc<[MemcachedLimiter]>,
}

impl MemcachedMultiLimiter {
    /// Combines `limits`, checked in this order.
    ///
    /// Refused with [`Config`](crate::MemcachedLimiterError::Config): no limit; two limits with the
    /// same prefix and algorithm (their keys would be the same memcached keys, so one check
    /// would charge one state twice); an unlimited rate (it stores nothing, so it has no place
    /// in a multi-check). Limits may use different servers: each is charged on its own.
    pub fn new(limits: impl IntoIterator<Item = MemcachedLimiter>) -> Result<Self, E> {
        let limits: Vec<MemcachedLimiter> = limits.into_iter().collect();
        if limits.is_empty() {
            return Err(E::Config(
                "a multi-limiter needs at least one limit".to_owned(),
            ));
        }
        for (i, limit) in limits.iter().enumerate() {
            if let AnyAlgorithm::Unlimited(_) = limit.algorithm() {
                return Err(E::Config(format!(
                    "limit {i} of the multi-limiter is unlimited: it stores nothing and cannot \
                     be part of a multi-limit check; leave it out"
                )));
            }
            // Same prefix and algorithm tag: the same memcached key for every user key.
            let probe = limit.memcached_key(b"k");
            if let Some(j) = limits[..i]
                .iter()
                .position(|other| other.memcached_key(b"k") == probe)
            {
                return Err(E::Config(format!(
                    "limits {j} and {i} of the multi-limiter share the prefix {:?} and the \
                     algorithm, so their states would be the same memcached keys; give each \
                     limit its own prefix",
                    limit.prefix()
                )));
            }
        }
        Ok(MemcachedMultiLimiter {
            limits: limits.into(),
        })
    }

    /// The limits, in the order they are charged.
    pub fn limits(&self) -> &[MemcachedLimiter] {
        &self.limits
    }

    /// Checks `cost` for `key` against every limit now, all or nothing, charging each if the
    /// check is admitted by all. "Now" is one reading of the first limit's clock, used for
    /// every limit. A cost of zero is a [`peek`](Self::peek).
    pub async fn check(&self, key: impl AsRef<[u8]>, cost: u64) -> Result<Decision, E> {
        self.check_bytes(key.as_ref(), cost, self.limits[0].now())
            .await
    }

    /// [`check`](Self::check) at `now_nanos` instead of the clock's reading, for every limit.
    pub async fn check_at(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        now_nanos: u64,
    ) -> Result<Decision, E> {
        self.check_bytes(key.as_ref(), cost, now_nanos).await
    }

    /// What `key` has left under all the limits now, writing nothing: the first limit that
    /// would deny even a zero cost, or else the one with the least left (as a check of cost 0).
    pub async fn peek(&self, key: impl AsRef<[u8]>) -> Result<Decision, E> {
        self.check_bytes(key.as_ref(), 0, self.limits[0].now())
            .await
    }

    /// Forgets everything charged to `key` on every limit (one `delete` per limit). Every
    /// limit is reset even if one fails; the first failure is returned.
    pub async fn reset(&self, key: impl AsRef<[u8]>) -> Result<(), E> {
        self.reset_bytes(key.as_ref()).await
    }

    async fn reset_bytes(&self, key: &[u8]) -> Result<(), E> {
        let mut first = Ok(());
        for limit in self.limits.iter() {
            let result = limit.reset(key).await;
            if first.is_ok() {
                first = result;
            }
        }
        first
    }

    async fn check_bytes(&self, key: &[u8], cost: u64, now: u64) -> Result<Decision, E> {
        let mut admitted = Vec::with_capacity(self.limits.len());
        let mut charged = Vec::with_capacity(self.limits.len());
        let mut refusal = None;
        for (i, limit) in self.limits.iter().enumerate() {
            match limit.charge(key, cost, now).await {
                Ok((decision, written)) if decision.is_allowed() => {
                    admitted.push(decision);
                    if let Some(written) = written {
                        charged.push((i, written));
                    }
                }
                other => {
                    refusal = Some(other.map(|(decision, _)| decision));
                    break;
                }
            }
        }
        let Some(refusal) = refusal else {
            // Folded from the last limit back, as `check_all` combines: ties go to the first.
            return Ok(admitted
                .into_iter()
                .rev()
                .fold(Decision::allow(u64::MAX, u64::MAX, 0), |rest, d| {
                    combine_admissions(d, rest)
                }));
        };
        // Latest first: a later charge on the same state is undone before an earlier one.
        let mut failed = None;
        for (i, written) in charged.into_iter().rev() {
            let limit = &self.limits[i];
            if let Err(cause) = limit.refund(key, written, now).await {
                failed.get_or_insert(E::RefundFailed {
                    limit: i,
                    key: String::from_utf8_lossy(&limit.memcached_key(key)).into_owned(),
                    cause: Box::new(cause),
                });
            }
        }
        match failed {
            Some(e) => Err(e),
            None => refusal,
        }
    }
}

/// The contract every traffik store answers, so failover and HTTP layers can hold a
/// multi-limiter like a single one.
impl<K: AsRef<[u8]> + ?Sized + Sync> AsyncLimiter<K> for MemcachedMultiLimiter {
    type Error = E;

    fn check(&self, key: &K, cost: u64) -> impl Future<Output = Result<Decision, E>> + Send {
        self.check_bytes(key.as_ref(), cost, self.limits[0].now())
    }

    fn peek(&self, key: &K) -> impl Future<Output = Result<Decision, E>> + Send {
        self.check_bytes(key.as_ref(), 0, self.limits[0].now())
    }

    fn reset(&self, key: &K) -> impl Future<Output = Result<(), E>> + Send {
        self.reset_bytes(key.as_ref())
    }
}
