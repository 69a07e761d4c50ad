//! The README's "Rates that move, priorities, deferred charges" example, compiled and run.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{SystemTime, UNIX_EPOCH};
use traffik::{
    Adaptive, Clock, Limiter, ManualClock, PriorityBudget, PriorityLimiter, QuantaClock,
    QuotaContext, Rate, Schedule,
};

#[test]
fn readme_dynamic_strategies() -> Result<(), Box<dyn std::error::Error>> {
    // Adaptive: 10..=100 per second; each report above the target (200, say ms of p99 latency)
    // halves the limit, each at or below it adds 10.
    let adaptive = Adaptive::builder(Rate::per_second(10), Rate::per_second(100), 200)
        .increase(10)
        .build()?;
    let api = Limiter::new(adaptive, QuantaClock::new());
    api.algorithm().report(350); // 100 -> 50
    assert_eq!(api.algorithm().limit(), 50);

    // Calendar: 100/s in office hours Monday to Friday, 20/s at weekends, 10/s otherwise, at UTC+1.
    // QuantaClock counts from its creation, so give the schedule that instant's Unix time.
    let clock = QuantaClock::new();
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let schedule = Schedule::builder("10/s")
        .weekdays(9..17, "100/s")
        .weekend("20/s")
        .utc_offset_minutes(60)
        .clock_epoch_unix_nanos(unix_now - clock.now())
        .build()?;
    let _office = Limiter::new(schedule, clock);

    // Priorities share one budget: low stops with 50 left, normal with 20, high uses it all.
    let budget = PriorityBudget::new(Rate::per_second(100), 100, &[50, 20, 0])?;
    let tenant = PriorityLimiter::new(budget, ManualClock::new());
    let admitted = |p| {
        (0..200)
            .filter(|_| tenant.check(p, 1).unwrap().is_allowed())
            .count()
    };
    assert_eq!((admitted(0), admitted(1), admitted(2)), (50, 30, 20));

    // A quota context: charges merged per key, applied together at the end (or dropped).
    let table = traffik::builder().rate("10/s").build::<str>()?;
    let mut ctx = QuotaContext::new(&table);
    assert!(ctx.charge_now("alice", 6)?.accepted);
    assert!(!ctx.charge_now("alice", 5)?.accepted); // sees its own 6 pending
    assert!(ctx.apply_now().all_applied());
    assert_eq!(table.peek("alice").remaining(), 4);
    Ok(())
}
