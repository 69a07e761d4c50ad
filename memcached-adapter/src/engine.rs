//! The compare-and-swap loop over memcached: read states with `gets`, decide with the core's
//! own [`Algorithm::decide`], write the next states with `cas` (or `add` for a new key), and go
//! round again for keys another client changed in between.
//!
//! One run serves any number of keys on one server over one connection: each round sends every
//! pending key's `gets` in one write and every resulting `cas`/`add` in a second, so a batch
//! costs two round trips per round however many keys it has. A single check is a batch of one.
//!
//! Checks of the same key within a batch are decided one after the other on the state the
//! previous one left, and written once, as if they had run back to back.

use std::sync::Arc;

use traffik_core::{Algorithm, AnyAlgorithm, CheckError, Decision};

use crate::connection::{Conn, Pool, RecvError};
use crate::error::MemcachedLimiterError as E;
use crate::expiry;
use crate::protocol::{self, Item, ReplyError, ServerErrorKind, Store, Value};

/// What each check of a group was told (an error only if its cost exceeded the capacity).
pub(crate) type Decisions = Vec<Result<Decision, CheckError>>;

/// The checks of one batch that fall on one key.
#[derive(Debug)]
pub(crate) struct Group {
    /// The memcached key.
    pub(crate) key: Vec<u8>,
    /// Each check's position in the caller's batch, and its cost.
    pub(crate) checks: Vec<(usize, u64)>,
    /// The answer, once there is one.
    pub(crate) outcome: Option<Result<Decisions, E>>,
    /// Whether a write for this key has been sent and its reply not yet read: a failure now
    /// leaves the key possibly charged.
    pub(crate) in_flight: bool,
    /// What the write that answered this group replaced and wrote, for a multi-check's refund.
    pub(crate) written: Option<Written>,
}

/// One landed write: the state it replaced (`prev`; the fresh state 0 for a key that was
/// absent) and the state it wrote (`next`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) prev: u64,
    pub(crate) next: u64,
}

impl Group {
    pub(crate) fn new(key: Vec<u8>, checks: Vec<(usize, u64)>) -> Self {
        Group {
            key,
            checks,
            outcome: None,
            in_flight: false,
            written: None,
        }
    }
}

/// Gives every unanswered group an error: `in_flight` for those whose write is out, `rest` for
/// the others.
pub(crate) fn fail_unresolved(groups: &mut [Group], in_flight: &E, rest: &E) {
    for g in groups.iter_mut().filter(|g| g.outcome.is_none()) {
        g.outcome = Some(Err(if g.in_flight { in_flight } else { rest }.clone()));
        g.in_flight = false;
    }
}

/// One server's share of a batch, at one instant, decided by `A`: the limiter's own
/// [`AnyAlgorithm`], or an algorithm a caller passes per check (see [`dynamic`](crate::dynamic)).
/// Generic rather than `dyn` so that each algorithm's loop is compiled for it.
pub(crate) struct Engine<'a, A: ?Sized = AnyAlgorithm> {
    pub(crate) algorithm: &'a A,
    pub(crate) pool: &'a Pool,
    pub(crate) now: u64,
    pub(crate) attempts: u32,
}

impl<A: Algorithm + ?Sized> Engine<'_, A> {
    /// Answers every group, one way or another (unless the caller's timeout drops this first).
    pub(crate) async fn run(&self, groups: &mut [Group]) {
        let mut lease = self.pool.lease().await;
        let (mut conn, mut reused) = match lease.take() {
            Some(conn) => (conn, true),
            None => match self.connect().await {
                Ok(conn) => (conn, false),
                Err(e) => return fail_unresolved(groups, &e, &e),
            },
        };
        let mut out = Vec::with_capacity(64 * groups.len());
        for _ in 0..self.attempts {
            let pending: Vec<usize> = (0..groups.len())
                .filter(|&g| groups[g].outcome.is_none())
                .collect();
            if pending.is_empty() {
                break;
            }
            let items = loop {
                match self.read(&mut conn, groups, &pending, &mut out).await {
                    Ok(items) => break items,
                    // A pooled connection the server has closed meanwhile (restart, idle
                    // timeout) fails on its first use; a `gets` changes nothing, so it is
                    // retried once on a fresh connection.
                    Err(RecvError::Io(_)) if reused => {
                        reused = false;
                        conn = match self.connect().await {
                            Ok(c) => c,
                            Err(e) => return fail_unresolved(groups, &e, &e),
                        };
                    }
                    Err(e) => {
                        let e = self.error(e, false);
                        return fail_unresolved(groups, &e, &e);
                    }
                }
            };
            // This connection has just answered: a later failure on it is no stale socket.
            reused = false;
            out.clear();
            let wall = expiry::wall_unix_secs();
            let mut writes = Vec::new();
            for (&g, item) in pending.iter().zip(items) {
                let (state, cas) = match self.state_of(&groups[g].key, item) {
                    Ok(s) => s,
                    Err(e) => {
                        groups[g].outcome = Some(Err(e));
                        continue;
                    }
                };
                let (decisions, next) = self.decide(state, &groups[g].checks);
                let Some(next) = next else {
                    // Denials and peeks write nothing.
                    groups[g].outcome = Some(Ok(decisions));
                    continue;
                };
                let exptime = expiry::exptime(self.algorithm.reset_after(next, self.now), wall);
                match cas {
                    Some(cas) => protocol::push_cas(&mut out, &groups[g].key, exptime, next, cas),
                    None => protocol::push_add(&mut out, &groups[g].key, exptime, next),
                }
                groups[g].in_flight = true;
                let written = Written { prev: state, next };
                writes.push((g, decisions, written));
            }
            if writes.is_empty() {
                continue;
            }
            if let Err(e) = conn.send(&out).await {
                let source = Arc::new(e.source);
                let rest = E::Io {
                    server: self.server(),
                    source: source.clone(),
                };
                if !e.wrote_any {
                    return fail_unresolved(groups, &rest, &rest);
                }
                let lost = E::ReplyLost {
                    server: self.server(),
                    source,
                };
                return fail_unresolved(groups, &lost, &rest);
            }
            let mut clean = true;
            for (g, decisions, written) in writes {
                match conn.recv(protocol::parse_store).await {
                    Ok(Store::Stored) => {
                        groups[g].outcome = Some(Ok(decisions));
                        groups[g].written = Some(written);
                    }
                    // Another client wrote (`EXISTS`), the key expired or was reset
                    // (`NOT_FOUND`), or another client created it first (`NOT_STORED`):
                    // nothing was written; decide again from what is there now.
                    Ok(Store::Exists | Store::NotFound | Store::NotStored) => {}
                    Err(RecvError::Reply(reply @ ReplyError::Server { .. })) => {
                        // The server refused this write and goes on with the next reply; the
                        // connection is replaced after the round all the same.
                        clean = false;
                        groups[g].outcome = Some(Err(self.error(RecvError::Reply(reply), false)));
                    }
                    Err(e) => {
                        let lost = self.error(e, true);
                        let rest = match &lost {
                            E::ReplyLost { server, source } => E::Io {
                                server: server.clone(),
                                source: source.clone(),
                            },
                            E::BadReply { server, detail, .. } => E::BadReply {
                                server: server.clone(),
                                detail: detail.clone(),
                                after_write: false,
                            },
                            other => other.clone(),
                        };
                        return fail_unresolved(groups, &lost, &rest);
                    }
                }
                groups[g].in_flight = false;
            }
            if !clean {
                conn = match self.connect().await {
                    Ok(c) => c,
                    Err(e) => return fail_unresolved(groups, &e, &e),
                };
                reused = false;
            }
        }
        let contention = E::Contention {
            attempts: self.attempts,
        };
        fail_unresolved(groups, &contention, &contention);
        lease.put(conn);
    }

    /// Sends every pending key's `gets` in one write and reads the replies in order.
    async fn read(
        &self,
        conn: &mut Conn,
        groups: &[Group],
        pending: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<Vec<Item>, RecvError> {
        out.clear();
        for &g in pending {
            protocol::push_gets(out, &groups[g].key);
        }
        conn.send(out).await.map_err(|e| RecvError::Io(e.source))?;
        let mut items = Vec::with_capacity(pending.len());
        for &g in pending {
            let key = &groups[g].key;
            items.push(conn.recv(|b| protocol::parse_get(b, key)).await?);
        }
        Ok(items)
    }

    /// The state (fresh for a missing key) and CAS token a `gets` found.
    pub(crate) fn state_of(&self, key: &[u8], item: Item) -> Result<(u64, Option<u64>), E> {
        let corrupt = |detail: String| E::CorruptState {
            key: String::from_utf8_lossy(key).into_owned(),
            detail,
        };
        match item {
            // A key that expired held a state that was fresh by then (see `expiry`), and one
            // that was evicted or reset is fresh by definition.
            Item::Miss => Ok((0, None)),
            Item::Hit { flags, .. } if flags != protocol::FLAGS => Err(corrupt(format!(
                "flags {flags}, where traffik writes {}",
                protocol::FLAGS
            ))),
            Item::Hit {
                value: Value::Other { len },
                ..
            } => Err(corrupt(format!(
                "a {len}-byte value, where a state is {} bytes",
                protocol::STATE_LEN
            ))),
            // memcached started with `-C` reports every CAS token as 0 and refuses `cas`.
            Item::Hit { cas: 0, .. } => Err(E::Config(format!(
                "memcached at {} reports CAS token 0: compare-and-swap is disabled there (-C), \
                 and this limiter needs it",
                self.pool.addr()
            ))),
            Item::Hit {
                value: Value::State(state),
                cas,
                ..
            } => Ok((state, Some(cas))),
        }
    }

    /// Decides a group's checks in order from `state`; the state to write, if any changed it.
    fn decide(&self, state: u64, checks: &[(usize, u64)]) -> (Decisions, Option<u64>) {
        let mut current = state;
        let mut changed = false;
        let decisions = checks
            .iter()
            .map(|&(_, cost)| {
                let t = self.algorithm.decide(current, self.now, cost)?;
                if let Some(next) = t.next {
                    current = next;
                    changed = true;
                }
                Ok(t.decision)
            })
            .collect();
        (decisions, changed.then_some(current))
    }

    pub(crate) async fn connect(&self) -> Result<Conn, E> {
        Conn::connect(self.pool.addr())
            .await
            .map_err(|source| E::Connect {
                server: self.server(),
                source: Arc::new(source),
            })
    }

    fn server(&self) -> String {
        self.pool.addr().to_owned()
    }

    /// The error for a failed read of a reply; `after_write` if the reply was to a write.
    pub(crate) fn error(&self, e: RecvError, after_write: bool) -> E {
        error_for(self.pool.addr(), e, after_write)
    }
}

/// Maps a failed read of a reply from `server`; `after_write` if the reply was to a write.
pub(crate) fn error_for(server: &str, e: RecvError, after_write: bool) -> E {
    let server = server.to_owned();
    match e {
        RecvError::Io(source) if after_write => E::ReplyLost {
            server,
            source: Arc::new(source),
        },
        RecvError::Io(source) => E::Io {
            server,
            source: Arc::new(source),
        },
        RecvError::Reply(ReplyError::Server { kind, message }) => {
            let detail = ReplyError::Server { kind, message }.to_string();
            match kind {
                ServerErrorKind::Error | ServerErrorKind::Client => E::Refused { server, detail },
                ServerErrorKind::Server => E::Server { server, detail },
            }
        }
        RecvError::Reply(ReplyError::Malformed(detail)) => E::BadReply {
            server,
            detail,
            after_write,
        },
    }
}
