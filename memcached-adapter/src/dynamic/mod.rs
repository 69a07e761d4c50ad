//! Algorithms chosen per key or moving over time, on memcached: a tier per key
//! ([`Tiers`](traffik_core::Tiers) through [`MemcachedQuotas`]), a rate changed while running
//! ([`Live`](traffik_core::Live)), a rate following a load signal
//! ([`Adaptive`](traffik_core::Adaptive)) or the calendar ([`Schedule`](traffik_core::Schedule)),
//! and priorities sharing one budget ([`PriorityBudget`]).
//!
//! Every check is decided in this process, so any algorithm can decide it:
//! [`MemcachedLimiter::check_with`] runs the limiter's usual `gets`/`cas` loop on the key's
//! state with the algorithm given for that call instead of the limiter's own. The decisions
//! are the core's for the same state, time and cost, and the key's state word is kept across
//! changes of rate exactly as in process.
//!
//! # Which algorithm may decide a key
//!
//! A key's state word is written by whichever algorithm decided its last charge and read by
//! whichever decides its next check, so both must read it the same way: the core's rule of
//! [`SharedState`](traffik_core::SharedState) (see [`traffik_core::quota`]), given here as a
//! [`StateFormat`] per algorithm ([`PerCallAlgorithm`]):
//!
//! * [`StateFormat::Tat`]: GCRA, the leaky bucket, `Adaptive`, `Schedule`, `PriorityBudget`
//!   and its levels, at any rate and burst. A key checked under a new rate is charged from
//!   `max(TAT, now)` and admitted while the new TAT stays within the new burst of now: no fresh
//!   burst on a change of rate, nothing already waited for taken back.
//! * [`StateFormat::Exact`]: every other kind reads its state only under the identical
//!   configuration.
//! * [`StateFormat::Stateless`]: the unlimited rate writes nothing and fits every key.
//!
//! A key's memcached name carries the tag of the limiter's own algorithm
//! ([`memcached_key`](MemcachedLimiter::memcached_key)), so the limiter's algorithm says which
//! format its keys hold, and a per-call algorithm must [`fit`](StateFormat::fits) it: build the
//! limiter with GCRA (or the leaky bucket) for TAT algorithms; its rate then only governs its
//! own [`check`](MemcachedLimiter::check). A per-call algorithm that does not fit, or one that
//! writes states on a limiter built with an unlimited rate (whose keys have no format to
//! share), is refused with [`MemcachedLimiterError::Config`](crate::MemcachedLimiterError::Config) before anything is sent. The format
//! is checked at every call, so a [`Tiers`](traffik_core::Tiers) whose closure picks a
//! mismatched tier, or a `Live` given a mismatched algorithm, fails that call rather than
//! misreading the key.
//!
//! Expiry: a write's expiry is the deciding algorithm's `reset_after` for the state it wrote.
//! A TAT is fresh once it has passed, whatever the rate, so an expiry set under one rate holds
//! under every other; exact formats are only ever read by the algorithm that set it.
//!
//! Time: each check reads the limiter's clock once (or takes the caller's time, `*_at`), and
//! the algorithm decides at that time: a `Schedule` picks the hour's rate from it, a `Live` or
//! `Adaptive` uses the rate it holds when the check decides (each compare-and-swap retry decides
//! again, with the rate held then, as the in-process cell does).

mod quotas;

pub use quotas::MemcachedQuotas;
pub use traffik_core::{PerCallAlgorithm, StateFormat};

use traffik_core::{Decision, PriorityBudget, MAX_NOW};

use crate::error::MemcachedLimiterError as E;
use crate::limiter::MemcachedLimiter;

impl MemcachedLimiter {
    /// Checks `cost` for `key` now (by the limiter's clock), decided by `algorithm` instead of
    /// the limiter's own, on the same memcached key: a [`Live`](traffik_core::Live) rate, an
    /// [`Adaptive`](traffik_core::Adaptive) limit, a [`Schedule`](traffik_core::Schedule), a
    /// [`PriorityLevel`](traffik_core::PriorityLevel), the tier a
    /// [`Tiers`](traffik_core::Tiers) selects. A cost of zero is a peek.
    ///
    /// ```no_run
    /// use traffik_core::{Adaptive, AlgorithmKind, Rate};
    /// use traffik_memcached::MemcachedLimiter;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// // GCRA keys hold TATs, which every rate of an adaptive limit reads alike.
    /// let limiter = MemcachedLimiter::builder("127.0.0.1:11211")
    ///     .rate("10/s")
    ///     .algorithm(AlgorithmKind::Gcra)
    ///     .prefix("api")
    ///     .build()?;
    /// let adaptive = Adaptive::builder(Rate::per_second(10), Rate::per_second(100), 50).build()?;
    /// adaptive.report(20); // load below target: the limit goes up
    /// let decision = limiter.check_with("client-42", 1, &adaptive).await?;
    /// assert_eq!(decision.limit(), adaptive.burst());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`MemcachedLimiterError::Config`](E::Config) when `algorithm`'s states are not read the
    /// way this limiter's keys hold them (see the [module docs](crate::dynamic));
    /// [`InsufficientCapacity`](E::InsufficientCapacity) for a cost above what `algorithm`
    /// can admit (both before anything is sent); otherwise as [`check`](Self::check).
    pub async fn check_with<A: PerCallAlgorithm + ?Sized>(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        algorithm: &A,
    ) -> Result<Decision, E> {
        self.decide_with(key.as_ref(), cost, self.now(), algorithm)
            .await
    }

    /// [`check_with`](Self::check_with) at `now_nanos` instead of the clock's reading, as
    /// [`check_at`](Self::check_at).
    pub async fn check_with_at<A: PerCallAlgorithm + ?Sized>(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        now_nanos: u64,
        algorithm: &A,
    ) -> Result<Decision, E> {
        self.decide_with(key.as_ref(), cost, now_nanos, algorithm)
            .await
    }

    /// What `key` has left now under `algorithm`, without charging or writing anything.
    pub async fn peek_with<A: PerCallAlgorithm + ?Sized>(
        &self,
        key: impl AsRef<[u8]>,
        algorithm: &A,
    ) -> Result<Decision, E> {
        self.decide_with(key.as_ref(), 0, self.now(), algorithm)
            .await
    }

    /// Checks `cost` for `key` now at priority `priority` of `budget` (0 is the lowest), all
    /// priorities of a key drawing on its one budget: [`check_with`](Self::check_with) with
    /// [`budget.level(priority)`](traffik_core::PriorityBudget::level).
    ///
    /// ```no_run
    /// use traffik_core::{PriorityBudget, Rate};
    /// use traffik_memcached::MemcachedLimiter;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = MemcachedLimiter::builder("127.0.0.1:11211").rate("10/s").build()?;
    /// // 100 units a second; 50 kept back from priority 0, 20 from priority 1.
    /// let budget = PriorityBudget::new(Rate::per_second(100), 100, &[50, 20, 0])?;
    /// let batch_job = limiter.check_priority("tenant", &budget, 0, 1).await?;
    /// let user_click = limiter.check_priority("tenant", &budget, 2, 1).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`MemcachedLimiterError::Config`](E::Config) for a priority the budget does not have;
    /// otherwise as [`check_with`](Self::check_with).
    pub async fn check_priority(
        &self,
        key: impl AsRef<[u8]>,
        budget: &PriorityBudget,
        priority: usize,
        cost: u64,
    ) -> Result<Decision, E> {
        self.check_priority_at(key, budget, priority, cost, self.now())
            .await
    }

    /// [`check_priority`](Self::check_priority) at `now_nanos` instead of the clock's reading.
    pub async fn check_priority_at(
        &self,
        key: impl AsRef<[u8]>,
        budget: &PriorityBudget,
        priority: usize,
        cost: u64,
        now_nanos: u64,
    ) -> Result<Decision, E> {
        let level = budget
            .level(priority)
            .map_err(|e| E::Config(e.to_string()))?;
        self.decide_with(key.as_ref(), cost, now_nanos, &level)
            .await
    }

    pub(crate) async fn decide_with<A: PerCallAlgorithm + ?Sized>(
        &self,
        key: &[u8],
        cost: u64,
        now: u64,
        algorithm: &A,
    ) -> Result<Decision, E> {
        let now = now.min(MAX_NOW);
        let format = algorithm.state_format();
        self.fits(&format)?;
        let capacity = algorithm.capacity();
        if cost > capacity {
            return Err(E::InsufficientCapacity { max: capacity });
        }
        if format == StateFormat::Stateless {
            // Nothing is read or written for an algorithm that keeps no state, unless it has
            // changed since (a `Live` set meanwhile) and asks for a write.
            let t = algorithm.decide(0, now, cost)?;
            if t.next.is_none() {
                return Ok(t.decision);
            }
        }
        self.run_one(key, cost, now, algorithm)
            .await
            .map(|(d, _)| d)
    }

    /// Whether states in `format` may be read and written on this limiter's keys.
    pub(crate) fn fits(&self, format: &StateFormat) -> Result<(), E> {
        let own = self.algorithm().state_format();
        if own == StateFormat::Stateless && *format != StateFormat::Stateless {
            return Err(E::Config(format!(
                "this limiter was built with an unlimited rate, so its keys hold no state \
                 format to share with a per-call algorithm that keeps {}; build it with the \
                 algorithm whose states that one writes",
                describe(format)
            )));
        }
        if own.fits(format) {
            return Ok(());
        }
        Err(E::Config(format!(
            "the per-call algorithm keeps {}, but this limiter's keys hold {}; a key's state may \
             only be decided by an algorithm that reads it the same way",
            describe(format),
            describe(&own)
        )))
    }
}

fn describe(format: &StateFormat) -> String {
    match format {
        StateFormat::Stateless => "no state".to_owned(),
        StateFormat::Tat => "GCRA arrival times (TATs)".to_owned(),
        StateFormat::Exact(a) => format!("states only {a:?} reads"),
        // A format added to the core later.
        other => format!("{other:?}"),
    }
}
