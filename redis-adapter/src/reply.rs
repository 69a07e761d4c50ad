//! Script replies: how a reply (or a pipeline's replies) is read back into a [`Decision`].

use std::sync::Arc;
use std::time::Duration;

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
    /// No connection within the deadline: nothing was sent.
    NoConnection,
    Redis(Arc<redis::RedisError>),
    /// A cluster transaction's first error: it may concern any one entry, and the others may
    /// have run.
    Transaction(Arc<redis::RedisError>),
    /// A cluster transaction answered `MOVED` or `ASK`: it was discarded, no entry ran.
    Redirected(Arc<redis::RedisError>),
    /// `(received, sent)`.
    Count(usize, usize),
    Reply(String),
}

impl Failure {
    /// The error reported for the check on `key` of a pipeline that failed as a whole.
    pub(crate) fn error_for(&self, key: &[u8], timeout: Duration) -> RedisLimiterError {
        let key = String::from_utf8_lossy(key);
        match self {
            Failure::Timeout => RedisLimiterError::Timeout { after: timeout },
            Failure::NoConnection => RedisLimiterError::Connection {
                detail: format!("no connection within {timeout:?}; nothing was sent"),
                source: None,
            },
            Failure::Redis(e) => RedisLimiterError::from_redis(Arc::clone(e), &key),
            Failure::Transaction(e) => match RedisLimiterError::from_redis(Arc::clone(e), &key) {
                lost @ (RedisLimiterError::Connection { .. }
                | RedisLimiterError::ReplyLost { .. }) => lost,
                // The first error of some entry, for every entry: the others may have run.
                _ => RedisLimiterError::ReplyLost {
                    detail: format!(
                        "a check on the same cluster slot failed, and the replies of its whole \
                         transaction, this check's ({key}) included, were lost with it"
                    ),
                    source: Some(Arc::clone(e)),
                },
            },
            // Handled by resending each check on its own; were it reported, it would be as this.
            Failure::Redirected(e) => RedisLimiterError::from_redis(Arc::clone(e), &key),
            Failure::Count(got, sent) => {
                bad_reply(format!("{got} replies to a pipeline of {sent}"))
            }
            Failure::Reply(detail) => bad_reply(detail.clone()),
        }
    }
}

pub(crate) fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

pub(crate) fn bad_reply(detail: String) -> RedisLimiterError {
    RedisLimiterError::bad_reply(detail)
}

/// The script's reply: `allowed, limit, remaining, retry_after, reset_after` as five
/// little-endian doubles (integers below 2^53, so exact), or `-1, max` for a cost the limit can
/// never admit. A window script sends durations of 2^53 ns or more as seven doubles, each
/// duration split as whole units and a rest (`units * unit + rest`).
pub(crate) fn parse_reply(
    reply: Value,
    key: &[u8],
    capacity: u64,
    unit: u64,
) -> Result<Decision, RedisLimiterError> {
    let bytes = match reply {
        Value::BulkString(bytes) => bytes,
        Value::ServerError(e) => {
            return Err(RedisLimiterError::from_redis(
                redis::RedisError::from(e),
                &String::from_utf8_lossy(key),
            ))
        }
        other => {
            return Err(bad_reply(format!(
                "expected the script's packed reply, got {other:?}"
            )))
        }
    };
    let mut nums = [0i64; 7];
    let n = bytes.len() / 8;
    if bytes.len() % 8 != 0 || !matches!(n, 2 | 5 | 7) {
        return Err(bad_reply(format!(
            "expected 2, 5 or 7 packed numbers in the script reply, got {} bytes",
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
    let field = |v: i64, name: &str| {
        u64::try_from(v).map_err(|_| bad_reply(format!("negative {name} {v} in reply")))
    };
    // `units * unit + rest`, which must fit in u64 nanoseconds.
    let split = |units: i64, rest: i64, name: &str| {
        let (units, rest) = (field(units, name)?, field(rest, name)?);
        u64::try_from(u128::from(units) * u128::from(unit) + u128::from(rest))
            .map_err(|_| bad_reply(format!("{name} of {units} x {unit} + {rest} ns overflows")))
    };
    let (allowed, limit, remaining, retry, reset) = match &nums[..n] {
        [-1, max] => {
            return Err(RedisLimiterError::InsufficientCapacity {
                max: u64::try_from(*max).unwrap_or(capacity),
            })
        }
        &[allowed, limit, remaining, retry, reset] => (
            allowed,
            limit,
            remaining,
            field(retry, "retry_after")?,
            field(reset, "reset_after")?,
        ),
        &[allowed, limit, remaining, retry_units, retry_rest, reset_units, reset_rest] => (
            allowed,
            limit,
            remaining,
            split(retry_units, retry_rest, "retry_after")?,
            split(reset_units, reset_rest, "reset_after")?,
        ),
        _ => {
            return Err(bad_reply(format!(
                "expected a 2-number reply to start with -1, got {:?}",
                &nums[..n]
            )))
        }
    };
    let (limit, remaining) = (field(limit, "limit")?, field(remaining, "remaining")?);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn packed(nums: &[f64]) -> Value {
        Value::BulkString(nums.iter().flat_map(|n| n.to_le_bytes()).collect())
    }

    #[test]
    fn split_durations_are_put_together_exactly() {
        // retry = 3 x 10 + 5, reset = 4 x 10 + 7.
        let d = parse_reply(packed(&[0.0, 2.0, 0.0, 3.0, 5.0, 4.0, 7.0]), b"k", 2, 10);
        assert_eq!(d.unwrap(), Decision::deny(2, 0, 35, 47));
        // Past 2^53: 2^40 units of 2^20 ns and a rest of 2^20 - 1.
        let units = (1u64 << 40) as f64;
        let rest = ((1u64 << 20) - 1) as f64;
        let d = parse_reply(
            packed(&[0.0, 1.0, 0.0, units, rest, units, rest]),
            b"k",
            1,
            1 << 20,
        );
        let want = (1u64 << 60) + (1 << 20) - 1;
        assert_eq!(d.unwrap(), Decision::deny(1, 0, want, want));
        let d = parse_reply(packed(&[1.0, 5.0, 4.0, 0.0, 0.0, 2.0, 1.0]), b"k", 5, 1_000);
        assert_eq!(d.unwrap(), Decision::allow(5, 4, 2_001));
    }

    #[test]
    fn malformed_split_replies_are_bad_replies() {
        for (nums, unit) in [
            // Admitted with a retry_after.
            (&[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0][..], 10),
            // Negative parts.
            (&[0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0][..], 10),
            (&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0][..], 10),
            // 2^40 x 2^30 overflows u64 nanoseconds.
            (
                &[0.0, 1.0, 0.0, 1_099_511_627_776.0, 0.0, 0.0, 0.0][..],
                1 << 30,
            ),
        ] {
            let got = parse_reply(packed(nums), b"k", 1, unit);
            assert!(
                matches!(got, Err(RedisLimiterError::BadReply { .. })),
                "{nums:?}: {got:?}"
            );
        }
    }
}
