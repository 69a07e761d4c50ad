//! Test harness: throwaway `redis-server` processes on free loopback ports.
//!
//! Servers run with persistence off, in a private temporary directory, and are killed on drop.
//! A missing `redis-server` is a loud failure, never a skip.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A free loopback port (never 6379).
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p != 6379 && p < 55_000 {
            // Cluster bus ports are port + 10000: keep them in range.
            return p;
        }
    }
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "traffik-redis-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One `redis-server` child process.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let mut s = RedisServer {
            port: free_port(),
            dir: scratch_dir(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(["--protected-mode", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it with \
                     `apt-get install -y redis-server`; these tests never skip"
                )
            });
        self.child = Some(child);
        wait_ready(self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the process (the port stays reserved for `restart`).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills and starts a fresh, empty server on the same port (scripts and keys are gone).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends one command over a raw connection and returns the raw RESP reply.
    pub fn raw(&self, args: &[&str]) -> String {
        raw_command(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one command in RESP and reads one reply (enough for simple replies).
pub fn raw_command(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok() {
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf) {
                    if buf[..n].starts_with(b"+PONG") {
                        return;
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "redis-server on port {port} never became ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A 3-master Redis Cluster on loopback.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): install redis-tools"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            loop {
                let info = n.raw(&["CLUSTER", "INFO"]);
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster never reached state ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}

/// A fake server speaking just enough RESP: answers `HELLO`/`CLIENT`/`PING`/`SCRIPT` politely and
/// every other command by `behaviour`.
#[derive(Clone, Copy, Debug)]
pub enum Fake {
    /// Replies with these raw bytes.
    Reply(&'static [u8]),
    /// Never replies.
    Silent,
    /// Closes the connection after reading the request.
    Hangup,
}

/// Starts a fake server on a free port; it runs until the test process ends. The counter
/// counts the script calls (`EVAL`/`EVALSHA`) it received.
pub fn fake_server(behaviour: Fake) -> (u16, std::sync::Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let evals = std::sync::Arc::new(AtomicU32::new(0));
    let counter = evals.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut held = Vec::new();
                while let Some(args) = read_command(&mut reader) {
                    let name = args.first().map(|a| a.to_uppercase()).unwrap_or_default();
                    let reply: &[u8] = match name.as_str() {
                        "PING" => b"+PONG\r\n",
                        "SCRIPT" => b"$4\r\nabcd\r\n",
                        "EVAL" | "EVALSHA" => {
                            counter.fetch_add(1, Ordering::SeqCst);
                            match behaviour {
                                Fake::Reply(r) => r,
                                Fake::Silent => {
                                    held.push(conn.try_clone().unwrap());
                                    continue;
                                }
                                Fake::Hangup => return,
                            }
                        }
                        _ => b"+OK\r\n",
                    };
                    if conn.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, evals)
}

/// Reads one RESP array of bulk strings; `None` at end of stream.
fn read_command(r: &mut impl std::io::BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0u8; len + 2];
        r.read_exact(&mut buf).ok()?;
        args.push(String::from_utf8_lossy(&buf[..len]).into_owned());
    }
    Some(args)
}

/// A `MONITOR` connection: sees every command the server runs, scripts' calls included.
pub struct Monitor(TcpStream);

impl Monitor {
    pub fn start(port: u16) -> Self {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"*1\r\n$7\r\nMONITOR\r\n").unwrap();
        let mut ok = [0u8; 5];
        s.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"+OK\r\n");
        Monitor(s)
    }

    /// Everything seen so far (waits briefly for stragglers).
    pub fn drain(&mut self) -> String {
        self.0
            .set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = self.0.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
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

/// Every algorithm the Redis adapter runs.
#[allow(dead_code)] // not every test crate that includes this module uses it
pub const ALL_ALGORITHMS: [traffik_redis::RedisAlgorithm; 6] = [
    traffik_redis::RedisAlgorithm::Gcra,
    traffik_redis::RedisAlgorithm::TokenBucket,
    traffik_redis::RedisAlgorithm::LeakyBucket,
    traffik_redis::RedisAlgorithm::FixedWindow,
    traffik_redis::RedisAlgorithm::SlidingWindowCounter,
    traffik_redis::RedisAlgorithm::SlidingWindowLog,
];

/// The cluster slot of a hash tag's content: CRC16 (XMODEM) modulo 16384, as the cluster
/// specification defines it. Tests use it to pick caller keys that share a slot (a caller key
/// without `%` or `}` is its Redis key's tag as it is), and check it against `CLUSTER KEYSLOT`.
pub fn tag_slot(tag: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in tag {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}

/// `n` caller keys `<stem>-<i>` whose Redis keys share the slot of `stem`'s.
pub fn same_slot_keys(stem: &str, n: usize) -> Vec<String> {
    let target = tag_slot(stem.as_bytes());
    (0u64..)
        .map(|i| format!("{stem}-{i}"))
        .filter(|k| tag_slot(k.as_bytes()) == target)
        .take(n)
        .collect()
}

/// Reads one RESP array of bulk strings, returning its arguments and its exact bytes; `None`
/// at end of stream.
fn read_command_raw(r: &mut impl std::io::BufRead) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).ok()?;
    let n: usize = std::str::from_utf8(&line)
        .ok()?
        .trim()
        .strip_prefix('*')?
        .parse()
        .ok()?;
    raw.extend_from_slice(&line);
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_until(b'\n', &mut line).ok()?;
        let len: usize = std::str::from_utf8(&line)
            .ok()?
            .trim()
            .strip_prefix('$')?
            .parse()
            .ok()?;
        raw.extend_from_slice(&line);
        let mut buf = vec![0u8; len + 2];
        r.read_exact(&mut buf).ok()?;
        raw.extend_from_slice(&buf);
        buf.truncate(len);
        args.push(buf);
    }
    Some((args, raw))
}

/// A TCP proxy in front of a Redis server that can lose one reply on purpose: armed with a
/// marker, it forwards the next `EVAL`/`EVALSHA` having the marker among its arguments, lets
/// the server run it, and then closes that client connection without passing the reply on.
/// Everything else is passed through. It counts the script calls it forwarded.
pub struct ReplyCutter {
    pub port: u16,
    armed: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    evals: std::sync::Arc<AtomicU32>,
}

impl ReplyCutter {
    /// Listens on a free loopback port; runs until the test process ends.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = std::sync::Arc::new(std::sync::Mutex::new(None::<Vec<u8>>));
        let evals = std::sync::Arc::new(AtomicU32::new(0));
        let (armed2, evals2) = (armed.clone(), evals.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (armed, evals) = (armed2.clone(), evals2.clone());
                let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                // Server to client: bytes as they come, none once the connection is being cut.
                {
                    let (mut from, mut to) =
                        (server.try_clone().unwrap(), client.try_clone().unwrap());
                    let cut = cut.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16_384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0
                                || cut.load(Ordering::SeqCst)
                                || to.write_all(&buf[..n]).is_err()
                            {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                // Client to server, one command at a time.
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(client.try_clone().unwrap());
                    let mut to = server;
                    while let Some((args, raw)) = read_command_raw(&mut reader) {
                        let name = args
                            .first()
                            .map(|a| a.to_ascii_uppercase())
                            .unwrap_or_default();
                        let is_eval = name == b"EVAL" || name == b"EVALSHA";
                        let hit = is_eval && {
                            let mut armed = armed.lock().unwrap();
                            let hit = armed.as_ref().is_some_and(|m| args.iter().any(|a| a == m));
                            if hit {
                                *armed = None;
                            }
                            hit
                        };
                        if hit {
                            cut.store(true, Ordering::SeqCst);
                        }
                        if is_eval {
                            evals.fetch_add(1, Ordering::SeqCst);
                        }
                        if to.write_all(&raw).is_err() {
                            break;
                        }
                        if hit {
                            // Let the script run, then drop both sides: its reply is lost.
                            std::thread::sleep(Duration::from_millis(200));
                            let _ = client.shutdown(std::net::Shutdown::Both);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        ReplyCutter { port, armed, evals }
    }

    /// Loses the reply to the next script call with `marker` (a whole argument, e.g. the
    /// limiter key) among its arguments.
    pub fn cut_next(&self, marker: &[u8]) {
        *self.armed.lock().unwrap() = Some(marker.to_vec());
    }

    /// Script calls forwarded so far.
    pub fn evals(&self) -> u32 {
        self.evals.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// `calls` of `command` in a server's `INFO commandstats` (0 if never called).
pub fn command_calls(port: u16, command: &str) -> u64 {
    let needle = format!("cmdstat_{command}:calls=");
    raw_command(port, &["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap().trim().parse().unwrap()
        })
}
