//! Test harness: throwaway `memcached` processes on free loopback ports, raw protocol helpers,
//! and fake servers that misbehave on purpose.
//!
//! A missing `memcached` binary is a loud failure, never a skip.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free loopback port (never memcached's 11211).
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p != 11211 {
            return p;
        }
    }
}

/// One `memcached` child process, killed on drop.
pub struct Memcached {
    pub port: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Memcached {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line options (e.g. `-C` to disable CAS).
    pub fn start_with(extra: &[&str]) -> Self {
        let mut m = Memcached {
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let child = Command::new("memcached")
            .args(["-l", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "0", "-m", "64"])
            // Needed when the tests run as root; ignored otherwise.
            .args(["-u", "nobody"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start memcached ({e}): install it with \
                     `apt-get install -y memcached`; these tests never skip"
                )
            });
        self.child = Some(child);
        wait_ready(self.port);
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the process; the port stays ours for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills and starts an empty server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends raw request bytes and reads until `done` says the reply is whole (or 2 s pass).
    pub fn raw(&self, request: &[u8], done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        raw(self.port, request, done)
    }

    /// `mg <key> v c f t`: the key's value, CAS token, flags and remaining TTL, if it exists.
    pub fn meta_get(&self, key: &[u8]) -> Option<MetaItem> {
        let mut req = b"mg ".to_vec();
        req.extend_from_slice(key);
        req.extend_from_slice(b" v c f t\r\n");
        let reply = self.raw(&req, |r| {
            if r == b"EN\r\n" {
                return true;
            }
            // The header line, then as many bytes as it announces, then CRLF.
            let Some(end) = r.windows(2).position(|w| w == b"\r\n") else {
                return false;
            };
            let header = String::from_utf8_lossy(&r[..end]);
            let len: usize = header
                .split(' ')
                .nth(1)
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            r.len() >= end + 2 + len + 2
        });
        if reply == b"EN\r\n" {
            return None;
        }
        // VA <len> c<cas> f<flags> t<ttl>\r\n<data>\r\n
        let header_end = reply.windows(2).position(|w| w == b"\r\n").unwrap();
        let header = std::str::from_utf8(&reply[..header_end]).unwrap();
        let mut fields = header.split(' ');
        assert_eq!(fields.next(), Some("VA"), "{header}");
        let len: usize = fields.next().unwrap().parse().unwrap();
        let mut item = MetaItem {
            value: reply[header_end + 2..header_end + 2 + len].to_vec(),
            cas: 0,
            flags: 0,
            ttl: 0,
        };
        for f in fields {
            let (tag, n) = f.split_at(1);
            match tag {
                "c" => item.cas = n.parse().unwrap(),
                "f" => item.flags = n.parse().unwrap(),
                "t" => item.ttl = n.parse().unwrap(),
                _ => {}
            }
        }
        Some(item)
    }

    /// `set <key> <flags> 0 <len>` with these bytes.
    pub fn set(&self, key: &[u8], flags: u32, value: &[u8]) {
        let mut req =
            format!("set {} {flags} 0 {}\r\n", key.escape_ascii(), value.len()).into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        assert_eq!(self.raw(&req, |r| r.ends_with(b"\r\n")), b"STORED\r\n");
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What `mg` reports about an item.
#[derive(Debug, Clone)]
pub struct MetaItem {
    pub value: Vec<u8>,
    pub cas: u64,
    pub flags: u32,
    /// Remaining seconds; -1 for "never expires".
    pub ttl: i64,
}

impl MetaItem {
    /// The stored limiter state.
    pub fn state(&self) -> u64 {
        u64::from_le_bytes(self.value.as_slice().try_into().unwrap())
    }
}

fn raw(port: u16, request: &[u8], done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&out) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            if s.write_all(b"version\r\n").is_ok() {
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf) {
                    if buf[..n].starts_with(b"VERSION ") {
                        return;
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "memcached on port {port} never became ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How a fake server answers.
#[derive(Clone, Copy, Debug)]
pub enum Fake {
    /// Answers `gets` with a miss, then reads the `add`/`cas` and closes without replying.
    HangupAfterWrite,
    /// Answers `gets` with a miss, then reads the `add`/`cas` and never replies.
    SilentAfterWrite,
    /// Answers `gets` with a miss and every write with these bytes.
    WriteReply(&'static [u8]),
    /// Answers every command with these bytes.
    Reply(&'static [u8]),
    /// Accepts connections and never reads or replies.
    Mute,
}

/// A fake server's record of what it received.
#[derive(Default)]
pub struct Received {
    /// `gets` commands.
    pub reads: AtomicU32,
    /// `add` and `cas` commands.
    pub writes: AtomicU32,
    /// Connections accepted.
    pub connections: AtomicU32,
    /// Every command line, in order.
    pub lines: Mutex<Vec<String>>,
}

/// Starts a fake server on a free port; it runs until the test process ends.
pub fn fake_server(behaviour: Fake) -> (String, Arc<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let received = Arc::new(Received::default());
    let seen = received.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            seen.connections.fetch_add(1, Ordering::SeqCst);
            if let Fake::Mute = behaviour {
                held.push(conn);
                continue;
            }
            let seen = seen.clone();
            std::thread::spawn(move || serve(conn, behaviour, &seen));
        }
    });
    (addr, received)
}

fn serve(mut conn: TcpStream, behaviour: Fake, seen: &Received) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        seen.lines.lock().unwrap().push(text.clone());
        let words: Vec<&str> = text.split(' ').collect();
        let reply: &[u8] = match (words[0], behaviour) {
            (_, Fake::Reply(r)) => r,
            ("gets", _) => {
                seen.reads.fetch_add(1, Ordering::SeqCst);
                b"END\r\n"
            }
            ("add" | "cas", _) => {
                seen.writes.fetch_add(1, Ordering::SeqCst);
                let len: usize = words.get(4).and_then(|w| w.parse().ok()).unwrap_or(0);
                let mut data = vec![0u8; len + 2];
                if reader.read_exact(&mut data).is_err() {
                    return;
                }
                match behaviour {
                    Fake::HangupAfterWrite => return,
                    // The connection stays open: the next read waits for the client to close it.
                    Fake::SilentAfterWrite => continue,
                    Fake::WriteReply(r) => r,
                    _ => b"STORED\r\n",
                }
            }
            ("version", _) => b"VERSION 1.6.18\r\n",
            _ => b"ERROR\r\n",
        };
        if conn.write_all(reply).is_err() {
            return;
        }
    }
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Every algorithm the core has.
pub const ALL_KINDS: [traffik_core::AlgorithmKind; 7] = [
    traffik_core::AlgorithmKind::Gcra,
    traffik_core::AlgorithmKind::TokenBucket,
    traffik_core::AlgorithmKind::LeakyBucket,
    traffik_core::AlgorithmKind::FixedWindow,
    traffik_core::AlgorithmKind::SlidingWindowCounter,
    traffik_core::AlgorithmKind::DebtBucket { max_debt: 7 },
    traffik_core::AlgorithmKind::QuotaRollover(traffik_core::Rollover::new(1, 2, 50)),
];
