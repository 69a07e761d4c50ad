//! The shaping scripts (enqueue, depart, cancel), the commands that run them, and their
//! replies read back with typed errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{Cmd, Value};

use crate::error::RedisLimiterError;
use crate::scripts::prelude_for;

const COMMON: &str = include_str!("../lua/shape_common.lua");

/// The constants every shaping script is generated with.
#[derive(Clone, Copy, Debug)]
pub(super) struct Constants {
    pub(super) interval: u64,
    pub(super) burst: u64,
    pub(super) max_queue: Option<usize>,
    /// Already capped at [`super::MAX_WAIT_NANOS`].
    pub(super) max_wait: u64,
    pub(super) poll: u64,
    pub(super) grace: u64,
}

/// One script: its text (prelude helpers, the common part, then its own) and SHA1.
#[derive(Debug, Clone)]
pub(super) struct ShapeScript {
    body: String,
    sha: String,
}

impl ShapeScript {
    fn new(main: &str, c: &Constants) -> Self {
        let max_queue = c
            .max_queue
            .map_or_else(|| "-1".to_owned(), |m| m.to_string());
        let params = format!(
            "{}, {}, {}, {max_queue}, {}, {}, {}",
            c.interval,
            c.interval * c.burst,
            c.burst,
            c.max_wait,
            c.poll,
            c.grace
        );
        let text = format!("{}\n{main}", COMMON.replace("{{PARAMS}}", &params));
        let body = format!("{}\n{text}", prelude_for(&text));
        let sha = redis::Script::new(&body).get_hash().to_owned();
        ShapeScript { body, sha }
    }

    pub(super) fn enqueue(c: &Constants) -> Self {
        Self::new(include_str!("../lua/shape_enqueue.lua"), c)
    }

    pub(super) fn depart(c: &Constants) -> Self {
        Self::new(include_str!("../lua/shape_depart.lua"), c)
    }

    pub(super) fn cancel(c: &Constants) -> Self {
        Self::new(include_str!("../lua/shape_cancel.lua"), c)
    }

    /// `EVALSHA` (or `EVAL` with the body) over the queue's four keys with one argument.
    pub(super) fn command(&self, by_sha: bool, keys: &QueueKeys, arg: &[u8]) -> Cmd {
        let mut cmd = crate::scripts::eval(by_sha, &self.sha, &self.body);
        cmd.arg(4)
            .arg(&keys.tat)
            .arg(&keys.queue)
            .arg(&keys.leases)
            .arg(&keys.meta)
            .arg(arg);
        cmd
    }
}

/// The Redis keys of one user key's queue, all with the same hash tag.
#[derive(Debug, Clone)]
pub(super) struct QueueKeys {
    pub(super) tat: Vec<u8>,
    pub(super) queue: Vec<u8>,
    pub(super) leases: Vec<u8>,
    pub(super) meta: Vec<u8>,
}

impl QueueKeys {
    pub(super) fn new(prefix: &str, key: &[u8]) -> Self {
        let k = |suffix| crate::keys::redis_key(prefix, key, suffix);
        QueueKeys {
            tat: k("shape:tat"),
            queue: k("shape:q"),
            leases: k("shape:l"),
            meta: k("shape:m"),
        }
    }

    /// The name errors use.
    pub(super) fn label(&self) -> String {
        String::from_utf8_lossy(&self.queue).into_owned()
    }
}

/// What a script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// The request left, at this Redis time.
    Left(SystemTime),
    /// Queued (enqueue) as ticket `seq`, leaving in about this long.
    Queued {
        seq: u64,
        wait: Duration,
    },
    /// Still waiting (depart), about this long.
    Waiting(Duration),
    QueueFull,
    WaitTooLong(Duration),
    /// The ticket is no longer queued.
    Gone,
    /// Cancel: whether the ticket was still queued.
    Cancelled(bool),
}

/// Reads a script reply: an array of integers whose first says which answer it is.
pub(super) fn parse(reply: Value, label: &str) -> Result<Answer, RedisLimiterError> {
    let items = match reply {
        Value::Array(items) => items,
        Value::ServerError(e) => {
            return Err(RedisLimiterError::from_redis(
                redis::RedisError::from(e),
                label,
            ))
        }
        other => {
            return Err(RedisLimiterError::bad_reply(format!(
                "shaping script for {label} answered {other:?}"
            )))
        }
    };
    let mut ints = Vec::with_capacity(items.len());
    for v in &items {
        match v {
            Value::Int(i) => match u64::try_from(*i) {
                Ok(u) => ints.push(u),
                Err(_) => {
                    return Err(RedisLimiterError::bad_reply(format!(
                        "shaping script for {label} answered a negative number in {items:?}"
                    )))
                }
            },
            other => {
                return Err(RedisLimiterError::bad_reply(format!(
                    "shaping script for {label} answered {other:?} where a number belongs"
                )))
            }
        }
    }
    let bad = || {
        RedisLimiterError::bad_reply(format!(
            "shaping script for {label} answered {ints:?}, which is no shaping reply"
        ))
    };
    Ok(match ints.as_slice() {
        [0, secs, nanos] if *nanos < 1_000_000_000 => {
            let at = UNIX_EPOCH
                .checked_add(Duration::new(*secs, *nanos as u32))
                .ok_or_else(bad)?;
            Answer::Left(at)
        }
        [1, seq, wait] => Answer::Queued {
            seq: *seq,
            wait: Duration::from_nanos(*wait),
        },
        [1, wait] => Answer::Waiting(Duration::from_nanos(*wait)),
        [2] => Answer::QueueFull,
        [3, wait] => Answer::WaitTooLong(Duration::from_nanos(*wait)),
        [4] => Answer::Gone,
        [0] => Answer::Cancelled(false),
        [1] => Answer::Cancelled(true),
        _ => return Err(bad()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_or_fail_typed() {
        let arr = |v: &[i64]| Value::Array(v.iter().map(|&i| Value::Int(i)).collect());
        assert_eq!(
            parse(arr(&[0, 10, 5]), "k").unwrap(),
            Answer::Left(UNIX_EPOCH + Duration::new(10, 5))
        );
        assert_eq!(
            parse(arr(&[1, 7, 100]), "k").unwrap(),
            Answer::Queued {
                seq: 7,
                wait: Duration::from_nanos(100)
            }
        );
        assert_eq!(
            parse(arr(&[3, 9]), "k").unwrap(),
            Answer::WaitTooLong(Duration::from_nanos(9))
        );
        for bad in [
            arr(&[0, 1, 1_000_000_000]),
            arr(&[9]),
            arr(&[1, -1]),
            Value::Nil,
        ] {
            assert!(matches!(
                parse(bad, "k"),
                Err(RedisLimiterError::BadReply { .. })
            ));
        }
    }

    #[test]
    fn scripts_carry_their_constants_and_helpers() {
        let c = Constants {
            interval: 100,
            burst: 2,
            max_queue: None,
            max_wait: 5,
            poll: 7,
            grace: 9,
        };
        let body = ShapeScript::enqueue(&c).body;
        assert!(body.contains("= 100, 200, 2, -1, 5, 7, 9\n"));
        for helper in ["now_qr", "divmod", "store", "packed_ahead", "corrupt"] {
            assert!(
                body.contains(&format!("local function {helper}(")),
                "{helper}"
            );
        }
    }
}
