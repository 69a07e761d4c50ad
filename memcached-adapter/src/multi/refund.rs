//! Undoing one leg's charge on memcached: `gets` the key, and `cas` it from exactly the state
//! the charge wrote back to exactly the state it replaced, or leave it if anything else
//! changed it.

use traffik_core::Algorithm;

use crate::connection::RecvError;
use crate::engine::{Engine, Written};
use crate::error::MemcachedLimiterError as E;
use crate::expiry;
use crate::protocol::{self, Store};

impl<A: Algorithm + ?Sized> Engine<'_, A> {
    /// Restores the state `written` replaced if `key` still holds the state it wrote; returns
    /// whether it did. Sets `sent` once a `cas` may have reached the server.
    ///
    /// A key that was absent before the charge is given the fresh state `0` (which every
    /// algorithm decodes as "nothing charged") with the normal expiry, rather than deleted:
    /// the classic protocol's `delete` takes no CAS token, so a `delete` after the `gets`
    /// could erase a charge another client made in between. A `cas` lands only if nobody
    /// wrote since the `gets`.
    pub(crate) async fn refund(
        &self,
        key: &[u8],
        written: Written,
        sent: &mut bool,
    ) -> Result<bool, E> {
        let mut lease = self.pool.lease().await;
        let (mut conn, mut reused) = match lease.take() {
            Some(conn) => (conn, true),
            None => (self.connect().await?, false),
        };
        let mut out = Vec::with_capacity(64 + key.len());
        for _ in 0..self.attempts {
            out.clear();
            protocol::push_gets(&mut out, key);
            let item = match conn.send(&out).await {
                Ok(()) => conn.recv(|b| protocol::parse_get(b, key)).await,
                Err(e) => Err(RecvError::Io(e.source)),
            };
            let item = match item {
                Ok(item) => item,
                // A pooled connection the server closed meanwhile: a `gets` changes nothing,
                // so it is retried once on a fresh connection.
                Err(RecvError::Io(_)) if reused => {
                    reused = false;
                    conn = self.connect().await?;
                    continue;
                }
                Err(e) => return Err(self.error(e, false)),
            };
            reused = false;
            let (state, cas) = self.state_of(key, item)?;
            let Some(cas) = cas.filter(|_| state == written.next) else {
                // Gone, or changed by someone else: the charge stays (only ever stricter).
                lease.put(conn);
                return Ok(false);
            };
            let wall = expiry::wall_unix_secs();
            let exptime = expiry::exptime(self.algorithm.reset_after(written.prev, self.now), wall);
            out.clear();
            protocol::push_cas(&mut out, key, exptime, written.prev, cas);
            if let Err(e) = conn.send(&out).await {
                return Err(self.error(RecvError::Io(e.source), e.wrote_any));
            }
            *sent = true;
            match conn.recv(protocol::parse_store).await {
                Ok(Store::Stored) => {
                    lease.put(conn);
                    return Ok(true);
                }
                // Written in between (perhaps back to the same state, say by a charge and its
                // refund): read again, as the core's strong compare-and-swap would succeed
                // while the word is still the one this check wrote.
                Ok(Store::Exists | Store::NotFound | Store::NotStored) => *sent = false,
                Err(e) => return Err(self.error(e, true)),
            }
        }
        Err(E::Contention {
            attempts: self.attempts,
        })
    }
}
