//! TCP connections to one memcached server, and the small fixed pool that holds them.
//!
//! A connection is used by one call at a time and goes back to the pool only after an exchange
//! that ended cleanly (every reply read, none malformed). A call that fails, times out or is
//! dropped by its caller drops the connection with it, so a reply that arrives late can never
//! be read as the answer to the next request; the next call on that slot connects afresh.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard};

use crate::protocol::{Parsed, ReplyError};

/// One open connection and the bytes read from it but not yet parsed.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A write that failed.
#[derive(Debug)]
pub(crate) struct SendError {
    /// Whether any byte reached the socket before the failure. If none did, the server cannot
    /// have received a request; if some did, it may have received whole commands.
    pub(crate) wrote_any: bool,
    /// The failure.
    pub(crate) source: io::Error,
}

/// A read that failed.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// The connection failed or closed (closing is [`io::ErrorKind::UnexpectedEof`]).
    Io(io::Error),
    /// The bytes received are not the reply asked for.
    Reply(ReplyError),
}

impl Conn {
    /// Connects to `addr` (`host:port`), with Nagle's algorithm off: requests are small and
    /// each waits for its reply.
    pub(crate) async fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(512),
        })
    }

    /// Writes all of `bytes`, reporting on failure whether any of them were written.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        let mut written = 0;
        while written < bytes.len() {
            match self.stream.write(&bytes[written..]).await {
                Ok(0) => {
                    return Err(SendError {
                        wrote_any: written > 0,
                        source: io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the connection accepted no more bytes",
                        ),
                    })
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(SendError {
                        wrote_any: written > 0,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Reads one reply with `parse`, reading more bytes until it is complete. Bytes after it
    /// (the next pipelined reply) stay buffered for the next call.
    pub(crate) async fn recv<T>(
        &mut self,
        mut parse: impl FnMut(&[u8]) -> Parsed<T>,
    ) -> Result<T, RecvError> {
        loop {
            if !self.buf.is_empty() {
                if let Some((reply, used)) = parse(&self.buf).map_err(RecvError::Reply)? {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => {
                    return Err(RecvError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection before replying",
                    )))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
    }

    /// Whether bytes the server sent unasked are waiting (a connection out of step).
    pub(crate) fn has_unread(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// A fixed number of connection slots to one server.
#[derive(Debug)]
pub(crate) struct Pool {
    addr: String,
    slots: Box<[Mutex<Option<Conn>>]>,
    next: AtomicUsize,
}

/// One slot, held by one call until it is dropped.
pub(crate) struct Lease<'a> {
    guard: MutexGuard<'a, Option<Conn>>,
}

impl Pool {
    /// A pool of `size` (at least one) slots for `addr`; nothing connects until first use.
    pub(crate) fn new(addr: String, size: usize) -> Pool {
        Pool {
            addr,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The server's `host:port`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// A free slot if there is one, else a wait on the next slot in round-robin order.
    pub(crate) async fn lease(&self) -> Lease<'_> {
        // Relaxed: the counter only spreads calls over slots; any interleaving is correct.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let n = self.slots.len();
        for i in 0..n {
            if let Ok(guard) = self.slots[(start + i) % n].try_lock() {
                return Lease { guard };
            }
        }
        Lease {
            guard: self.slots[start].lock().await,
        }
    }
}

impl Lease<'_> {
    /// Takes the slot's open connection, if it has one. Whoever takes it puts it back with
    /// [`put`](Self::put) only after a clean exchange.
    pub(crate) fn take(&mut self) -> Option<Conn> {
        self.guard.take()
    }

    /// Returns a connection in a known state (no reply outstanding) to the slot.
    pub(crate) fn put(&mut self, conn: Conn) {
        if !conn.has_unread() {
            *self.guard = Some(conn);
        }
    }
}
