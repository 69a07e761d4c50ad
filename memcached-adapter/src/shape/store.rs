//! The read-modify-CAS loop over one queue item: `gets` it, apply an operation, write the
//! result with `cas` (or `add` when the item was absent) only if the operation changed it, and
//! start again from a fresh read when another client wrote in between.

use std::sync::Arc;

use crate::connection::{Conn, RecvError};
use crate::engine::error_for;
use crate::error::MemcachedLimiterError as E;
use crate::expiry;
use crate::limiter::MemcachedLimiter;
use crate::protocol::{self, Store};

use super::state::{Answer, QueueState};

/// The flags stored with every queue item ("ts"): a limiter state (`"tr"`) or a foreign value
/// is never read as a queue.
pub(super) const QUEUE_FLAGS: u32 = 0x7473;

/// One operation on `mkey`'s queue at the limiter's clock (read afresh for every attempt),
/// under the call timeout. An error says whether a write may have landed (`ReplyLost`,
/// `ReplyTimeout`) or not.
pub(super) async fn update(
    limiter: &MemcachedLimiter,
    mkey: &[u8],
    mut op: impl FnMut(&mut QueueState, u64) -> (Answer, bool),
) -> Result<Answer, E> {
    let mut sent = false;
    let run = attempts(limiter, mkey, &mut op, &mut sent);
    match tokio::time::timeout(limiter.timeout(), run).await {
        Ok(result) => result,
        Err(_) if sent => Err(E::ReplyTimeout {
            after: limiter.timeout(),
        }),
        Err(_) => Err(E::Timeout {
            after: limiter.timeout(),
        }),
    }
}

async fn attempts(
    limiter: &MemcachedLimiter,
    mkey: &[u8],
    op: &mut impl FnMut(&mut QueueState, u64) -> (Answer, bool),
    sent: &mut bool,
) -> Result<Answer, E> {
    let pool = limiter.pool_for(mkey);
    let connect = || async {
        Conn::connect(pool.addr()).await.map_err(|e| E::Connect {
            server: pool.addr().to_owned(),
            source: Arc::new(e),
        })
    };
    let mut lease = pool.lease().await;
    let (mut conn, mut reused) = match lease.take() {
        Some(c) => (c, true),
        None => (connect().await?, false),
    };
    let mut out = Vec::with_capacity(256);
    for _ in 0..limiter.attempts() {
        out.clear();
        protocol::push_gets(&mut out, mkey);
        let read = match conn.send(&out).await {
            Err(e) => Err(RecvError::Io(e.source)),
            Ok(()) => conn.recv(|b| protocol::parse_get_raw(b, mkey)).await,
        };
        let item = match read {
            Ok(item) => item,
            // A pooled connection the server closed meanwhile; a `gets` changes nothing.
            Err(RecvError::Io(_)) if reused => {
                reused = false;
                conn = connect().await?;
                continue;
            }
            Err(e) => return Err(error_for(pool.addr(), e, false)),
        };
        reused = false;
        let now = limiter.now();
        let (mut state, cas) = match item {
            None => (QueueState::default(), None),
            Some((flags, cas, value)) => {
                let corrupt = |detail: String| E::CorruptState {
                    key: String::from_utf8_lossy(mkey).into_owned(),
                    detail,
                };
                if flags != QUEUE_FLAGS {
                    return Err(corrupt(format!(
                        "flags {flags}, where a traffik shaping queue has {QUEUE_FLAGS}"
                    )));
                }
                if cas == 0 {
                    return Err(E::Config(format!(
                        "memcached at {} reports CAS token 0: compare-and-swap is disabled \
                         there (-C), and the shaper needs it",
                        pool.addr()
                    )));
                }
                (QueueState::decode(&value).map_err(corrupt)?, Some(cas))
            }
        };
        let (answer, changed) = op(&mut state, now);
        if !changed {
            lease.put(conn);
            return Ok(answer);
        }
        let exptime = expiry::exptime(state.useful_for(now), expiry::wall_unix_secs());
        out.clear();
        let (command, token): (&[u8], _) = match cas {
            Some(token) => (b"cas ", Some(token)),
            None => (b"add ", None),
        };
        let value = state.encode();
        protocol::push_value(&mut out, command, mkey, QUEUE_FLAGS, exptime, &value, token);
        if let Err(e) = conn.send(&out).await {
            *sent |= e.wrote_any;
            return Err(error_for(pool.addr(), RecvError::Io(e.source), e.wrote_any));
        }
        *sent = true;
        match conn.recv(protocol::parse_store).await {
            Ok(Store::Stored) => {
                *sent = false;
                lease.put(conn);
                return Ok(answer);
            }
            // Another client wrote, or the item vanished or was created meanwhile: nothing
            // was written; decide again on what is there now.
            Ok(Store::Exists | Store::NotFound | Store::NotStored) => *sent = false,
            Err(e) => return Err(error_for(pool.addr(), e, true)),
        }
    }
    Err(E::Contention {
        attempts: limiter.attempts(),
    })
}
