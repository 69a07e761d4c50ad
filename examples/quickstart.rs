//! Quick start: per-client rate limiting in process, on the real clock.
//!
//! Three clients hit a pretend API for about two seconds. Each may make 5 requests per second
//! with a burst of 5 (GCRA, the default). A fourth "batch" client spends a token bucket by the
//! size of each job. Every decision is printed; the totals at the end are what the rates
//! promise.
//!
//! Run with `cargo run --example quickstart`.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::IpAddr;
use std::thread;
use std::time::{Duration, Instant};
use traffik::{AlgorithmKind, RateLimiter};

fn main() -> Result<(), Box<dyn Error>> {
    // One line for the common case: a rate string, everything else defaulted.
    let per_ip: RateLimiter<IpAddr> = traffik::builder().rate("5/s").capacity(1_000).build()?;
    // Cost-based limiting: 20 units of work per second, at most 20 at once.
    let per_job: RateLimiter<str> = traffik::builder()
        .rate("20 per second")
        .algorithm(AlgorithmKind::TokenBucket)
        .build()?;

    let clients: [(&str, IpAddr, Duration); 3] = [
        (
            "steady",
            "198.51.100.1".parse()?,
            Duration::from_millis(250),
        ),
        ("eager", "198.51.100.2".parse()?, Duration::from_millis(50)),
        ("flood", "198.51.100.3".parse()?, Duration::from_millis(10)),
    ];
    let mut totals: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let start = Instant::now();
    let mut next_due = [Duration::ZERO; 3];
    let mut job = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        let t = start.elapsed();
        for (i, (name, ip, every)) in clients.iter().enumerate() {
            if t < next_due[i] {
                continue;
            }
            next_due[i] += *every;
            let d = per_ip.check(ip, 1)?;
            let entry = totals.entry(name).or_default();
            if d.is_allowed() {
                entry.0 += 1;
                if *name != "flood" || entry.0 <= 12 {
                    println!(
                        "{:>6.3}s {name:<6} allowed  remaining={}",
                        t.as_secs_f64(),
                        d.remaining()
                    );
                }
            } else {
                entry.1 += 1;
                if entry.1 <= 3 {
                    println!(
                        "{:>6.3}s {name:<6} DENIED   retry in {:.1} ms",
                        t.as_secs_f64(),
                        d.retry_after().as_secs_f64() * 1e3
                    );
                }
            }
        }
        // Every 100 ms the batch client submits a job costing 1..=8 units.
        if t >= Duration::from_millis(100 * job) {
            job += 1;
            let cost = 1 + (job * 5) % 8;
            let d = per_job.check("batch", cost)?;
            println!(
                "{:>6.3}s batch  job of {cost} units {}",
                t.as_secs_f64(),
                if d.is_allowed() {
                    format!("accepted, {} units left", d.remaining())
                } else {
                    format!("deferred {:.0} ms", d.retry_after().as_secs_f64() * 1e3)
                }
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
    println!("\nover ~2 s at 5/s with a burst of 5, each client gets at most 5 + 2 x 5 - 1 = 14:");
    for (name, (ok, denied)) in &totals {
        println!("  {name:<6} allowed {ok:>3}  denied {denied:>3}");
    }
    let max = totals.values().map(|(ok, _)| *ok).max().unwrap_or(0);
    if max > 14 {
        return Err(format!("a client was admitted {max} times, above the bound of 14").into());
    }
    Ok(())
}
