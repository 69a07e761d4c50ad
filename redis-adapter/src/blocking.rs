//! A small synchronous wrapper: the async limiter driven by its own single-threaded runtime.
//!
//! For programs without tokio. Do not call it from inside an async runtime.

use traffik_core::GcraParams;

use crate::{Decision, RedisLimiterBuilder, RedisLimiterError};

/// A blocking [`RedisLimiter`](crate::RedisLimiter).
#[derive(Debug)]
pub struct RedisLimiter {
    runtime: tokio::runtime::Runtime,
    inner: crate::RedisLimiter,
}

impl RedisLimiter {
    /// Connects with a configured builder (see [`crate::RedisLimiter::builder`]).
    pub fn connect(builder: RedisLimiterBuilder) -> Result<Self, RedisLimiterError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RedisLimiterError::config_from("cannot start a runtime", e))?;
        let inner = runtime.block_on(builder.build())?;
        Ok(RedisLimiter { runtime, inner })
    }

    /// See [`crate::RedisLimiter::check`].
    pub fn check(&self, key: impl AsRef<[u8]>, cost: u64) -> Result<Decision, RedisLimiterError> {
        self.runtime.block_on(self.inner.check(key, cost))
    }

    /// See [`crate::RedisLimiter::check_at`].
    pub fn check_at(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        now_nanos: u64,
    ) -> Result<Decision, RedisLimiterError> {
        self.runtime
            .block_on(self.inner.check_at(key, cost, now_nanos))
    }

    /// See [`crate::RedisLimiter::peek`].
    pub fn peek(&self, key: impl AsRef<[u8]>) -> Result<Decision, RedisLimiterError> {
        self.runtime.block_on(self.inner.peek(key))
    }

    /// See [`crate::RedisLimiter::reset`].
    pub fn reset(&self, key: impl AsRef<[u8]>) -> Result<(), RedisLimiterError> {
        self.runtime.block_on(self.inner.reset(key))
    }

    /// See [`crate::RedisLimiter::check_many`].
    pub fn check_many<K: AsRef<[u8]>>(
        &self,
        checks: &[(K, u64)],
    ) -> Vec<Result<Decision, RedisLimiterError>> {
        self.runtime.block_on(self.inner.check_many(checks))
    }

    /// See [`crate::RedisLimiter::check_gcra`].
    pub fn check_gcra(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        params: GcraParams,
    ) -> Result<Decision, RedisLimiterError> {
        self.runtime
            .block_on(self.inner.check_gcra(key, cost, params))
    }

    /// See [`crate::RedisLimiter::check_gcra_at`].
    pub fn check_gcra_at(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        params: GcraParams,
        now_nanos: u64,
    ) -> Result<Decision, RedisLimiterError> {
        self.runtime
            .block_on(self.inner.check_gcra_at(key, cost, params, now_nanos))
    }

    /// See [`crate::RedisLimiter::reset_gcra`].
    pub fn reset_gcra(&self, key: impl AsRef<[u8]>) -> Result<(), RedisLimiterError> {
        self.runtime.block_on(self.inner.reset_gcra(key))
    }

    /// The async limiter inside.
    pub fn as_async(&self) -> &crate::RedisLimiter {
        &self.inner
    }
}
