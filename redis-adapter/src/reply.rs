//! Script replies: how a reply (or a pipeline's replies) is read back into a [`Decision`].

use redis::Value;
use traffik_core::Decision;

use crate::error::RedisLimiterError;

/// One entry's reply in a pipeline.
pub(crate) enum Reply {
    /// `NOSCRIPT`: the script was not cached and did not run.
    NoScript,
    Value(Value),
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        if is_noscript(&v) {
            Reply::NoScript
        } else {
            Reply::Value(v)
        }
    }
}

/// Why a pipeline produced no per-entry replies.
pub(crate) enum Failure {
    /// No reply within the deadline.
    Timeout,
    Redis(redis::RedisError),
    /// A cluster transaction's first error: it may concern any one entry, and the others may
    /// have run.
    Transaction(redis::RedisError),
    /// `(received, sent)`.
    Count(usize, usize),
    Reply(String),
}

pub(crate) fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

pub(crate) fn bad_reply(detail: String) -> RedisLimiterError {
    RedisLimiterError::BadReply { detail }
}

/// The script's reply: `allowed, limit, remaining, retry_after, reset_after` as five
/// little-endian doubles (integers below 2^53, so exact), or `-1, max` for a cost the limit can
/// never admit.
pub(crate) fn parse_reply(
    reply: Value,
    key: &[u8],
    capacity: u64,
) -> Result<Decision, RedisLimiterError> {
    let bytes = match reply {
        Value::BulkString(bytes) => bytes,
        Value::ServerError(e) => {
            return Err(RedisLimiterError::from_redis(
                &e.into(),
                &String::from_utf8_lossy(key),
            ))
        }
        other => {
            return Err(bad_reply(format!(
                "expected the script's packed reply, got {other:?}"
            )))
        }
    };
    let mut nums = [0i64; 5];
    let n = bytes.len() / 8;
    if bytes.len() % 8 != 0 || !(n == 2 || n == 5) {
        return Err(bad_reply(format!(
            "expected 2 or 5 packed numbers in the script reply, got {} bytes",
            bytes.len()
        )));
    }
    for (slot, chunk) in nums.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(chunk);
        let v = f64::from_le_bytes(raw);
        // Every figure is an integer of magnitude below 2^53.
        if v.fract() != 0.0 || v.abs() >= 9_007_199_254_740_992.0 {
            return Err(bad_reply(format!(
                "expected integers in the script reply, got {v}"
            )));
        }
        #[allow(clippy::cast_possible_truncation)]
        {
            *slot = v as i64;
        }
    }
    match &nums[..n] {
        [-1, max] => Err(RedisLimiterError::InsufficientCapacity {
            max: u64::try_from(*max).unwrap_or(capacity),
        }),
        &[allowed, limit, remaining, retry, reset] => {
            let field = |v: i64, name: &str| {
                u64::try_from(v).map_err(|_| bad_reply(format!("negative {name} {v} in reply")))
            };
            let (limit, remaining) = (field(limit, "limit")?, field(remaining, "remaining")?);
            let (retry, reset) = (field(retry, "retry_after")?, field(reset, "reset_after")?);
            if limit != capacity || remaining > limit {
                return Err(bad_reply(format!(
                    "limit {limit} / remaining {remaining} do not match this limiter (capacity {capacity})"
                )));
            }
            match allowed {
                1 if retry == 0 => Ok(Decision::allow(limit, remaining, reset)),
                0 => Ok(Decision::deny(limit, remaining, retry, reset)),
                _ => Err(bad_reply(format!(
                    "bad allowed flag {allowed} (retry_after {retry})"
                ))),
            }
        }
        _ => Err(bad_reply(format!(
            "expected a 2-number reply to start with -1, got {:?}",
            &nums[..n]
        ))),
    }
}
