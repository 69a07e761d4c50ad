//! The throttle's configuration ([`MessageThrottle`]) and the per-connection state that
//! judges each message ([`ConnectionThrottle`]).

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use traffik_core::{AsyncLimiter, Decision, ErrorKind, LimiterError};

use super::message::WsMessage;
use super::notice::{CloseReason, Notice};
use crate::http::HttpKey;

/// What one message costs.
///
/// ```
/// use traffik::http::ws::Cost;
///
/// assert_eq!(Cost::fixed(2).of(10_000), 2);
/// // One unit per started KiB; an empty message still costs 1.
/// let kib = Cost::per_started_bytes(1024);
/// assert_eq!((kib.of(0), kib.of(1), kib.of(1024), kib.of(1025)), (1, 1, 1, 2));
/// let custom = Cost::by_size(|len| 1 + len as u64 / 100);
/// assert_eq!(custom.of(250), 3);
/// ```
#[derive(Clone)]
pub struct Cost(CostKind);

#[derive(Clone)]
enum CostKind {
    Fixed(u64),
    PerStarted(usize),
    BySize(Arc<dyn Fn(usize) -> u64 + Send + Sync>),
}

impl Cost {
    /// Every data message costs `cost` (the default is 1). Zero is refused when the throttle is
    /// built: a message that costs nothing is never throttled.
    #[inline]
    pub const fn fixed(cost: u64) -> Self {
        Cost(CostKind::Fixed(cost))
    }

    /// One unit per started `bytes` of payload, and at least 1 (so `1024` charges 1 for
    /// 1–1024 bytes, 2 for 1025–2048). Zero is refused when the throttle is built.
    #[inline]
    pub const fn per_started_bytes(bytes: usize) -> Self {
        Cost(CostKind::PerStarted(bytes))
    }

    /// The cost is `f(payload_len)`. A cost of 0 is checked as a peek (nothing is charged);
    /// a cost above what the limit can ever admit closes the connection with 1009.
    pub fn by_size(f: impl Fn(usize) -> u64 + Send + Sync + 'static) -> Self {
        Cost(CostKind::BySize(Arc::new(f)))
    }

    /// The cost of a data message of `payload_len` bytes.
    #[inline]
    pub fn of(&self, payload_len: usize) -> u64 {
        match &self.0 {
            CostKind::Fixed(c) => *c,
            // `max(1)` on the divisor only guards a cost the builder would have refused.
            CostKind::PerStarted(b) => {
                u64::try_from(payload_len.div_ceil((*b).max(1)).max(1)).unwrap_or(u64::MAX)
            }
            CostKind::BySize(f) => f(payload_len),
        }
    }
}

impl Default for Cost {
    fn default() -> Self {
        Cost::fixed(1)
    }
}

impl fmt::Debug for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            CostKind::Fixed(c) => f.debug_tuple("Cost::fixed").field(c).finish(),
            CostKind::PerStarted(b) => f.debug_tuple("Cost::per_started_bytes").field(b).finish(),
            CostKind::BySize(_) => f.write_str("Cost::by_size(..)"),
        }
    }
}

/// What to do with a data message when the limiter fails (a store that is down, a table that
/// refuses new keys). A cost the limit can never admit is not a failure: it closes with 1009.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnLimiterError {
    /// Let the message through (the default: a broken limiter does not cut conversations).
    #[default]
    Allow,
    /// Drop the message silently; the connection stays open.
    Drop,
    /// Close the connection with 1011 "internal error".
    Close,
}

/// What a custom handler wants done with a rejected message (which is never delivered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Drop it silently.
    Drop,
    /// Drop it and send this notice.
    Notify(Notice),
    /// Drop it and close the connection.
    Close(CloseReason),
}

/// The answer for one message.
#[must_use = "a rejected message must not be delivered"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver the message.
    Pass,
    /// Do not deliver it; send `notice` (if any), then close with `close` (if any).
    Reject {
        /// The text to send the client.
        notice: Option<Notice>,
        /// The Close frame to end the connection with.
        close: Option<CloseReason>,
    },
}

impl Verdict {
    /// Whether the message is delivered.
    #[inline]
    pub const fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    /// Whether the connection is to be closed.
    #[inline]
    pub const fn closes(&self) -> bool {
        matches!(self, Verdict::Reject { close: Some(_), .. })
    }
}

/// Why a [`MessageThrottle`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsConfigError {
    /// `Cost::fixed(0)`: messages would never be charged.
    #[error("a fixed message cost of 0 never charges anything: use at least 1")]
    ZeroCost,
    /// `Cost::per_started_bytes(0)`.
    #[error("cost per started bytes needs a chunk of at least 1 byte")]
    ZeroChunk,
    /// `max_violations(0)`.
    #[error("max_violations must be at least 1 (use never_close() to keep connections open)")]
    ZeroViolations,
}

/// A rejection handler: the denial in, the action out.
type Handler = Arc<dyn Fn(&Decision) -> Action + Send + Sync>;

/// The default number of consecutive violations after which a connection is closed.
pub const DEFAULT_MAX_VIOLATIONS: u32 = 10;

struct Config<L> {
    limiter: L,
    cost: Cost,
    max_violations: Option<NonZeroU32>,
    notice: bool,
    handler: Option<Handler>,
    on_error: OnLimiterError,
}

/// How messages are throttled: the limiter, what a message costs, and what a rejection does.
/// Cheap to clone (one `Arc`); make one per route and a [`ConnectionThrottle`] per socket.
///
/// Defaults: cost 1 per data message, the JSON notice on, close with 1008 after
/// [`DEFAULT_MAX_VIOLATIONS`] consecutive violations, [`OnLimiterError::Allow`].
///
/// ```
/// use std::sync::Arc;
/// use traffik::http::ws::{Cost, MessageThrottle, OnLimiterError};
/// use traffik::RateLimiter;
///
/// let limiter: RateLimiter<[u8]> = traffik::builder().rate("20/s").build()?;
/// let throttle = MessageThrottle::builder(Arc::new(limiter))
///     .cost(Cost::per_started_bytes(1024))
///     .max_violations(5)
///     .on_error(OnLimiterError::Close)
///     .build()?;
/// let conn = throttle.per_connection();
/// assert_eq!(conn.consecutive_violations(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MessageThrottle<L> {
    config: Arc<Config<L>>,
}

impl<L> Clone for MessageThrottle<L> {
    fn clone(&self) -> Self {
        MessageThrottle {
            config: Arc::clone(&self.config),
        }
    }
}

impl<L> fmt::Debug for MessageThrottle<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("MessageThrottle")
            .field("cost", &c.cost)
            .field("max_violations", &c.max_violations)
            .field("notice", &c.notice)
            .field("handler", &c.handler.as_ref().map(|_| ".."))
            .field("on_error", &c.on_error)
            .finish_non_exhaustive()
    }
}

impl<L: AsyncLimiter<[u8]>> MessageThrottle<L> {
    /// A throttle with the defaults.
    pub fn new(limiter: L) -> Self {
        MessageThrottleBuilder::new(limiter).into_throttle()
    }

    /// A builder to set cost, violations, notice, handler and error policy.
    pub fn builder(limiter: L) -> MessageThrottleBuilder<L> {
        MessageThrottleBuilder::new(limiter)
    }

    /// The limiter messages are checked against.
    pub fn limiter(&self) -> &L {
        &self.config.limiter
    }

    /// A connection charged to `key`: an identity (a user id, an API key) shares one budget
    /// across every connection opened with it.
    pub fn connection(&self, key: HttpKey) -> ConnectionThrottle<L> {
        ConnectionThrottle {
            throttle: self.clone(),
            key,
            consecutive: 0,
        }
    }

    /// A connection with a budget of its own, under a key no other connection gets (in this
    /// process or any other sharing the store: the key holds a random per-process salt).
    pub fn per_connection(&self) -> ConnectionThrottle<L> {
        self.connection(connection_key())
    }
}

/// The first byte of [`MessageThrottle::per_connection`] keys, so they cannot collide with the
/// HTTP extractors' keys in a shared limiter.
pub const CONNECTION_KEY_TAG: u8 = 0xC7;

/// A fresh per-connection key: tag, per-process random salt, sequence number (17 bytes,
/// inline in the key).
fn connection_key() -> HttpKey {
    static SALT: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let salt = *SALT.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x7773);
        h.finish()
    });
    // Relaxed: only uniqueness matters, not ordering with other memory.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut key = HttpKey::new();
    key.extend_from_slice(&[CONNECTION_KEY_TAG]);
    key.extend_from_slice(&salt.to_be_bytes());
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// Builds a [`MessageThrottle`]; see there for the defaults.
pub struct MessageThrottleBuilder<L> {
    limiter: L,
    cost: Cost,
    max_violations: Option<u32>,
    notice: bool,
    handler: Option<Handler>,
    on_error: OnLimiterError,
}

impl<L> fmt::Debug for MessageThrottleBuilder<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageThrottleBuilder")
            .field("cost", &self.cost)
            .field("max_violations", &self.max_violations)
            .field("notice", &self.notice)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

impl<L: AsyncLimiter<[u8]>> MessageThrottleBuilder<L> {
    fn new(limiter: L) -> Self {
        MessageThrottleBuilder {
            limiter,
            cost: Cost::default(),
            max_violations: Some(DEFAULT_MAX_VIOLATIONS),
            notice: true,
            handler: None,
            on_error: OnLimiterError::default(),
        }
    }

    /// What a data message costs (default `Cost::fixed(1)`).
    pub fn cost(mut self, cost: Cost) -> Self {
        self.cost = cost;
        self
    }

    /// Close with 1008 "policy violation" after `k` rejections in a row (a delivered message
    /// resets the count). Must be at least 1.
    pub fn max_violations(mut self, k: u32) -> Self {
        self.max_violations = Some(k);
        self
    }

    /// Never close for violations: rejected messages are only dropped (and noticed).
    pub fn never_close(mut self) -> Self {
        self.max_violations = None;
        self
    }

    /// Whether a rejection sends the JSON notice (default on). A handler set with
    /// [`on_violation`](Self::on_violation) decides for itself.
    pub fn notice(mut self, on: bool) -> Self {
        self.notice = on;
        self
    }

    /// Decides what a rejection does, from the denial (its `retry_after`, `remaining`...),
    /// instead of the default notice. The violation still counts toward
    /// [`max_violations`](Self::max_violations).
    pub fn on_violation(mut self, f: impl Fn(&Decision) -> Action + Send + Sync + 'static) -> Self {
        self.handler = Some(Arc::new(f));
        self
    }

    /// What a limiter failure does (default [`OnLimiterError::Allow`]).
    pub fn on_error(mut self, policy: OnLimiterError) -> Self {
        self.on_error = policy;
        self
    }

    /// The throttle, or why the configuration is unusable.
    pub fn build(self) -> Result<MessageThrottle<L>, WsConfigError> {
        match self.cost.0 {
            CostKind::Fixed(0) => return Err(WsConfigError::ZeroCost),
            CostKind::PerStarted(0) => return Err(WsConfigError::ZeroChunk),
            _ => {}
        }
        if self.max_violations == Some(0) {
            return Err(WsConfigError::ZeroViolations);
        }
        Ok(self.into_throttle())
    }

    fn into_throttle(self) -> MessageThrottle<L> {
        MessageThrottle {
            config: Arc::new(Config {
                limiter: self.limiter,
                cost: self.cost,
                max_violations: self.max_violations.and_then(NonZeroU32::new),
                notice: self.notice,
                handler: self.handler,
                on_error: self.on_error,
            }),
        }
    }
}

/// A boxed check, for limiters that answer over a network (the in-process path never boxes).
pub(crate) type CheckFuture<E> = Pin<Box<dyn Future<Output = Result<Decision, E>> + Send>>;

/// One connection's throttle: its key and its run of consecutive violations.
///
/// ```
/// use axum::extract::ws::Message;
/// use traffik::http::ws::{MessageThrottle, Notice, Verdict};
/// use traffik::RateLimiter;
///
/// let limiter: RateLimiter<[u8]> = traffik::builder().rate("2/minute").build()?;
/// let mut conn = MessageThrottle::new(limiter).per_connection();
/// let msg = Message::text("hi");
/// assert_eq!(conn.check(&msg), Verdict::Pass);
/// assert_eq!(conn.check(&msg), Verdict::Pass);
/// match conn.check(&msg) {
///     Verdict::Reject { notice: Some(n), close: None } => assert_eq!(n.retry_after_secs(), Some(30)),
///     other => panic!("{other:?}"),
/// }
/// // Control frames are never charged.
/// assert_eq!(conn.check(&Message::Ping(Default::default())), Verdict::Pass);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ConnectionThrottle<L> {
    throttle: MessageThrottle<L>,
    key: HttpKey,
    consecutive: u32,
}

impl<L> fmt::Debug for ConnectionThrottle<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionThrottle")
            .field("key", &self.key)
            .field("consecutive", &self.consecutive)
            .finish_non_exhaustive()
    }
}

impl<L: AsyncLimiter<[u8]>> ConnectionThrottle<L> {
    /// The key this connection is charged to.
    pub fn key(&self) -> &HttpKey {
        &self.key
    }

    /// Rejections since the last delivered message.
    pub fn consecutive_violations(&self) -> u32 {
        self.consecutive
    }

    /// The configuration this connection follows.
    pub fn throttle(&self) -> &MessageThrottle<L> {
        &self.throttle
    }

    /// Judges `msg` on the spot, with no allocation and no future: for limiters that answer at
    /// once (the in-process `RateLimiter`). A limiter that can only answer by awaiting (Redis,
    /// Memcached) is treated as failing here, under the error policy: use
    /// [`check_async`](Self::check_async) for those.
    #[inline]
    pub fn check<M: WsMessage>(&mut self, msg: &M) -> Verdict {
        match self.try_check(msg) {
            Some(v) => v,
            None => self.on_failure(),
        }
    }

    /// Judges `msg` on the spot, or `None` (nothing charged) when only awaiting the limiter can
    /// answer.
    #[inline]
    pub fn try_check<M: WsMessage>(&mut self, msg: &M) -> Option<Verdict> {
        let Some(cost) = self.cost_of(msg) else {
            return Some(Verdict::Pass);
        };
        let result = self.check_now(cost)?;
        Some(self.judge(result))
    }

    /// Judges `msg`, on the spot where the limiter allows and by awaiting it otherwise.
    pub async fn check_async<M: WsMessage>(&mut self, msg: &M) -> Verdict {
        let Some(cost) = self.cost_of(msg) else {
            return Verdict::Pass;
        };
        let result = match self.check_now(cost) {
            Some(r) => r,
            None => {
                self.throttle
                    .config
                    .limiter
                    .check(self.key.as_bytes(), cost)
                    .await
            }
        };
        self.judge(result)
    }

    /// The cost of `msg`, or `None` for a control frame (never charged).
    #[inline]
    pub(crate) fn cost_of<M: WsMessage>(&self, msg: &M) -> Option<u64> {
        msg.is_data()
            .then(|| self.throttle.config.cost.of(msg.payload_len()))
    }

    #[inline]
    pub(crate) fn check_now(&self, cost: u64) -> Option<Result<Decision, L::Error>> {
        self.throttle
            .config
            .limiter
            .check_now(self.key.as_bytes(), cost)
    }

    /// The check as an owned future, for a stream that must hold it between polls.
    pub(crate) fn check_boxed(&self, cost: u64) -> CheckFuture<L::Error>
    where
        L: 'static,
    {
        let config = Arc::clone(&self.throttle.config);
        let key = self.key.clone();
        Box::pin(async move { config.limiter.check(key.as_bytes(), cost).await })
    }

    /// Turns the limiter's answer into a verdict, counting violations.
    pub(crate) fn judge(&mut self, result: Result<Decision, L::Error>) -> Verdict {
        match result {
            Ok(d) if d.is_allowed() => {
                self.consecutive = 0;
                Verdict::Pass
            }
            Ok(d) => self.violation(&d),
            Err(e) => match e.kind() {
                ErrorKind::InsufficientCapacity { .. } => Verdict::Reject {
                    notice: None,
                    close: Some(CloseReason::MESSAGE_TOO_BIG),
                },
                _ => self.on_failure(),
            },
        }
    }

    fn on_failure(&self) -> Verdict {
        match self.throttle.config.on_error {
            OnLimiterError::Allow => Verdict::Pass,
            OnLimiterError::Drop => Verdict::Reject {
                notice: None,
                close: None,
            },
            OnLimiterError::Close => Verdict::Reject {
                notice: None,
                close: Some(CloseReason::INTERNAL_ERROR),
            },
        }
    }

    fn violation(&mut self, denial: &Decision) -> Verdict {
        let config = &self.throttle.config;
        self.consecutive = self.consecutive.saturating_add(1);
        let action = match &config.handler {
            Some(handler) => handler(denial),
            None if config.notice => Action::Notify(Notice::rate_limit(denial.retry_after())),
            None => Action::Drop,
        };
        let (notice, close) = match action {
            Action::Drop => (None, None),
            Action::Notify(n) => (Some(n), None),
            Action::Close(c) => (None, Some(c)),
        };
        let close = close.or_else(|| {
            config
                .max_violations
                .filter(|k| self.consecutive >= k.get())
                .map(|_| CloseReason::POLICY_VIOLATION)
        });
        Verdict::Reject { notice, close }
    }
}
