//! The calendar schedule: exact decisions across hour, day and offset boundaries.
#![allow(clippy::unwrap_used, missing_docs)]

use core::ops::Range;
use core::time::Duration;
use traffik_core::{
    Algorithm, CheckError, Clock, Limiter, ManualClock, Rate, RateParseError, Schedule,
    ScheduleError, Weekday,
};

const SEC: u64 = 1_000_000_000;
/// Friday 2024-01-05 15:59:59 UTC (16:59:59 at UTC+1).
const FRI_1559_59_UTC: u64 = 1_704_470_399;
/// Sunday 2024-01-07 22:59:59 UTC (23:59:59 at UTC+1).
const SUN_2259_59_UTC: u64 = 1_704_668_399;
/// Monday 2024-01-08 03:00:00 UTC.
const MON_0300_UTC: u64 = 1_704_682_800;

fn office(offset_minutes: i32) -> Schedule {
    Schedule::builder("10/s")
        .weekdays(9..17, "100/s")
        .weekend("20/s")
        .utc_offset_minutes(offset_minutes)
        .build()
        .unwrap()
}

fn drain<F: Fn() -> bool>(check: F) -> u64 {
    let mut n = 0;
    while check() {
        n += 1;
        assert!(n <= 1_000_000, "never denied");
    }
    n
}

#[test]
fn friday_office_hours_end_at_17() {
    let clock = ManualClock::starting_at(FRI_1559_59_UTC * SEC);
    let limiter = Limiter::new(office(60), &clock);
    assert_eq!(
        limiter.algorithm().local_time(clock.now()),
        (Weekday::Friday, 16)
    );
    // 16:59:59: 100/s, a fresh key takes its burst of 100; the TAT is then 1 s ahead.
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 100);
    // 16:59:59.999999999 is still office hours: the TAT is 1 s - 1 ns behind the horizon,
    // so 99 more at 10 ms each; the TAT is then 16:59:59 + 1.99 s.
    clock.set((FRI_1559_59_UTC + 1) * SEC - 1);
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 99);
    // 17:00:00: 10/s (T = 100 ms, tolerance 1 s). The kept TAT is 990 ms ahead, so one more
    // unit would end 90 ms past the horizon.
    clock.set((FRI_1559_59_UTC + 1) * SEC);
    assert_eq!(
        limiter.algorithm().local_time(clock.now()),
        (Weekday::Friday, 17)
    );
    let denied = limiter.check(1).unwrap();
    assert!(denied.is_denied());
    assert_eq!(
        (denied.limit(), denied.retry_after()),
        (10, Duration::from_millis(90))
    );
    clock.set((FRI_1559_59_UTC + 1) * SEC + 90_000_000 - 1);
    assert!(limiter.check(1).unwrap().is_denied());
    clock.set((FRI_1559_59_UTC + 1) * SEC + 90_000_000);
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 1);
    // One second past 17:00 the TAT (17:00:01.09) is 90 ms ahead: nine more fit.
    clock.set((FRI_1559_59_UTC + 2) * SEC);
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 9);
}

#[test]
fn the_tat_is_kept_across_a_boundary() {
    let clock = ManualClock::starting_at(FRI_1559_59_UTC * SEC);
    let limiter = Limiter::new(office(60), &clock);
    // 100/s for 100 units: the TAT is 17:00:00 local.
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 100);
    // Half a second into 17:00 at 10/s the key may run 1 s ahead: 17:00:01.5, from the TAT of
    // 17:00:00.5 (now) that is 10 units; the slower hour hands out no extra burst.
    clock.set((FRI_1559_59_UTC + 1) * SEC + SEC / 2);
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 10);
    // The typed details: a TAT 1 s ahead leaves nothing at 10/s (tolerance 1 s).
    let details = limiter.algorithm().details(clock.now() + SEC, clock.now());
    assert_eq!((details.rate, details.available), (Rate::per_second(10), 0));
}

#[test]
fn sunday_to_monday_and_an_offset_across_midnight() {
    // At UTC+1, Sunday 22:59:59 UTC is Sunday 23:59:59 local: weekend.
    let s = office(60);
    assert_eq!(s.local_time(SUN_2259_59_UTC * SEC), (Weekday::Sunday, 23));
    assert_eq!(s.rate_at(SUN_2259_59_UTC * SEC), Rate::per_second(20));
    // One second later it is Monday 00:00 local, outside office hours: the default.
    assert_eq!(
        s.local_time((SUN_2259_59_UTC + 1) * SEC),
        (Weekday::Monday, 0)
    );
    assert_eq!(s.rate_at((SUN_2259_59_UTC + 1) * SEC), Rate::per_second(10));
    // In UTC the same instants are both still Sunday.
    assert_eq!(
        office(0).rate_at((SUN_2259_59_UTC + 1) * SEC),
        Rate::per_second(20)
    );
    // At UTC-5, Monday 03:00 UTC is Sunday 22:00 local.
    let west = office(-300);
    assert_eq!(west.local_time(MON_0300_UTC * SEC), (Weekday::Sunday, 22));
    assert_eq!(west.rate_at(MON_0300_UTC * SEC), Rate::per_second(20));
    // And Monday 14:00 UTC is 09:00 local: office hours start.
    assert_eq!(
        west.rate_at((MON_0300_UTC + 11 * 3600) * SEC - 1),
        Rate::per_second(10)
    );
    assert_eq!(
        west.rate_at((MON_0300_UTC + 11 * 3600) * SEC),
        Rate::per_second(100)
    );
    // Exact decisions at the Sunday -> Monday boundary: 20 at once on Sunday, then 10/s.
    let clock = ManualClock::starting_at(SUN_2259_59_UTC * SEC);
    let limiter = Limiter::new(s, &clock);
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 20);
    clock.set((SUN_2259_59_UTC + 1) * SEC);
    // The TAT (Sunday 23:59:59 + 20 x 50 ms) is now: ten at 10/s.
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 10);
}

#[test]
fn a_monotonic_clock_with_a_unix_epoch() {
    // The clock starts at 0 at Friday 16:59:59 local (UTC+1).
    let schedule = Schedule::builder(Rate::per_second(10))
        .weekdays(9..17, Rate::per_second(100))
        .utc_offset_minutes(60)
        .clock_epoch_unix_nanos(FRI_1559_59_UTC * SEC)
        .build()
        .unwrap();
    assert_eq!(schedule.rate_at(0), Rate::per_second(100));
    assert_eq!(schedule.rate_at(SEC - 1), Rate::per_second(100));
    assert_eq!(schedule.rate_at(SEC), Rate::per_second(10));
    assert_eq!(schedule.capacity(), 100);
    // A check bigger than the hour's burst names that burst.
    assert_eq!(
        schedule.decide(0, SEC, 11),
        Err(CheckError::InsufficientCapacity { max: 10 })
    );
    assert_eq!(schedule.reset_after(5 * SEC, SEC), 4 * SEC);
}

#[test]
fn later_rules_override_earlier_ones() {
    let s = Schedule::builder("1/s")
        .daily(0..24, "2/s")
        .days(&[Weekday::Wednesday], 12..13, "3/s")
        .build()
        .unwrap();
    // Wednesday 2024-01-03 12:00 UTC = 1_704_283_200.
    let wed_noon = 1_704_283_200 * SEC;
    assert_eq!(s.rate_at(wed_noon - 1), Rate::per_second(2));
    assert_eq!(s.rate_at(wed_noon), Rate::per_second(3));
    assert_eq!(s.rate_at(wed_noon + 3600 * SEC), Rate::per_second(2));
}

#[test]
fn typed_errors() {
    let parse = Schedule::builder("10/s")
        .weekend("ten per second")
        .build()
        .unwrap_err();
    assert!(matches!(parse, ScheduleError::Parse(RateParseError { .. })));
    assert_eq!(
        Schedule::builder("10/s")
            .daily(Range { start: 17, end: 9 }, "1/s")
            .build()
            .unwrap_err(),
        ScheduleError::Hours { start: 17, end: 9 }
    );
    assert_eq!(
        Schedule::builder("10/s")
            .daily(0..25, "1/s")
            .build()
            .unwrap_err(),
        ScheduleError::Hours { start: 0, end: 25 }
    );
    assert_eq!(
        Schedule::builder("10/s")
            .utc_offset_minutes(-1440)
            .build()
            .unwrap_err(),
        ScheduleError::Offset { minutes: -1440 }
    );
    assert!(matches!(
        Schedule::builder(Rate::per_second(0)).build().unwrap_err(),
        ScheduleError::Config(traffik_core::ConfigError::ZeroLimit)
    ));
    assert!(matches!(
        Schedule::builder(Rate::unlimited()).build().unwrap_err(),
        ScheduleError::Config(_)
    ));
    let mut b = Schedule::builder("1/s");
    for h in 0..7u8 {
        b = b.daily(h..h + 1, Rate::per_second(u64::from(h) + 2));
    }
    let full = b.clone().build().unwrap();
    assert_eq!(full.rate_at(3 * 3600 * SEC), Rate::per_second(5));
    assert_eq!(
        b.daily(7..8, "99/s").build().unwrap_err(),
        ScheduleError::TooManyRates
    );
}

#[cfg(feature = "alloc")]
#[test]
fn a_table_of_keys_follows_the_schedule() {
    use traffik_core::{KeyedLimiter, TableConfig};
    let clock = ManualClock::starting_at(FRI_1559_59_UTC * SEC);
    let table: KeyedLimiter<str, _, _> =
        KeyedLimiter::new(office(60), &clock, TableConfig::new(64, [1, 2, 3, 4])).unwrap();
    assert_eq!(table.check("a", 100).unwrap().remaining(), 0);
    clock.set((FRI_1559_59_UTC + 1) * SEC);
    // 17:00: key "a" kept its TAT (now), key "b" is fresh; both have 10 at once at 10/s.
    assert_eq!(table.check("a", 10).unwrap().remaining(), 0);
    assert_eq!(table.check("b", 4).unwrap().remaining(), 6);
    assert_eq!(table.peek("b").limit(), 10);
}
