//! Real stores for the outage tests: a `redis-server` or `memcached` child process on a free
//! loopback port, which a test can `kill -9` and start again on the same port.
//!
//! A missing binary is a loud failure, never a skip: `scripts/test` installs both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on now, never a store's well-known one (6379, 11211).
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port != 6379 && port != 11211 {
            return port;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Redis,
    Memcached,
}

/// One store process. Dropping it kills the process.
pub struct Store {
    kind: Kind,
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Store {
    /// A `redis-server` with persistence off: killed, it comes back empty.
    pub fn redis() -> Store {
        Self::launch(Kind::Redis)
    }

    /// A `memcached` (64 MB, TCP only).
    pub fn memcached() -> Store {
        Self::launch(Kind::Memcached)
    }

    fn launch(kind: Kind) -> Store {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "traffik-outage-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store {
            kind,
            port: free_port(),
            dir,
            child: None,
        };
        store.start();
        store
    }

    /// Starts the process (again) on its port and waits until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            Kind::Redis => {
                let mut c = Command::new("redis-server");
                c.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                    .args(["--appendonly", "no", "--protected-mode", "no"])
                    .arg("--dir")
                    .arg(&self.dir);
                c
            }
            Kind::Memcached => {
                let mut c = Command::new("memcached");
                c.args(["-l", "127.0.0.1", "-p", &port, "-U", "0", "-m", "64"])
                    // Needed when the tests run as root; ignored otherwise.
                    .args(["-u", "nobody"]);
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {:?} ({e}); these tests never skip", self.kind)
            });
        self.child = Some(child);
        self.wait_ready();
    }

    /// `kill -9`: no shutdown, no goodbye to clients; returns once the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn redis_url(&self) -> String {
        assert_eq!(self.kind, Kind::Redis);
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        let (probe, answer): (&[u8], &[u8]) = match self.kind {
            Kind::Redis => (b"*1\r\n$4\r\nPING\r\n", b"+PONG"),
            Kind::Memcached => (b"version\r\n", b"VERSION "),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 64];
                if s.write_all(probe).is_ok() {
                    if let Ok(n) = s.read(&mut buf) {
                        if buf[..n].starts_with(answer) {
                            return;
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "{:?} on port {} never became ready",
                self.kind,
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one Redis command (RESP array of bulk strings) and returns the raw reply, read until
/// the server goes quiet for a moment (enough for `INFO`).
pub fn redis_command(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16_384];
    let n = s.read(&mut buf).unwrap();
    out.extend_from_slice(&buf[..n]);
    // A bulk reply can span reads: keep reading while more arrives promptly.
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How many times the server ran a script (`EVAL` plus `EVALSHA`), from `INFO commandstats`.
pub fn redis_script_calls(port: u16) -> u64 {
    let info = redis_command(port, &["INFO", "commandstats"]);
    ["cmdstat_eval:calls=", "cmdstat_evalsha:calls="]
        .iter()
        .map(|needle| {
            info.lines()
                .find_map(|l| l.strip_prefix(needle))
                .map_or(0, |rest| {
                    rest.split(',').next().unwrap().parse::<u64>().unwrap()
                })
        })
        .sum()
}
