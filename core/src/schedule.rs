//! A rate that follows the calendar: [`Schedule`].
//!
//! Each hour of the week (day of week x hour of day, in local time at a fixed UTC offset; no
//! time-zone database, so no daylight-saving changes) has one rate; hours no rule names use the
//! default rate. Every rate is checked as [`Gcra`] with a burst of its own limit, on the key's
//! stored theoretical arrival time (TAT), which is kept across hour boundaries (the rule of
//! [`Live`](crate::Live)): entering a slower hour neither hands out a fresh burst nor takes back
//! what was already waited for.
//!
//! # Wall time
//!
//! A [`Clock`](crate::Clock) reads monotonic nanoseconds from an epoch of its own. The schedule
//! turns a reading into wall time as `unix_nanos = now + epoch_unix_nanos`, where
//! `epoch_unix_nanos` (default 0) is the Unix time of the clock's epoch, given at construction:
//! with a clock that reads Unix time (a [`ManualClock`](crate::ManualClock) set to Unix
//! nanoseconds, or a system-time clock) leave it at 0; with a monotonic clock started at a known
//! Unix time, give that time (it then drifts with the monotonic clock, which is usually what a
//! rate limiter wants: no jumps when the system clock is stepped). Local time is
//! `unix seconds + utc_offset_minutes * 60`; 1970-01-01 was a Thursday.
//!
//! **Admission bound.** Within one hour of the week, as [`Gcra`] at that hour's rate. Across a
//! boundary, in any window of `W` nanoseconds at most
//! `ceil((W + max_tolerance) / T_min) - 1` units, `T_min` being the smallest interval among the
//! rates and `max_tolerance` the largest `limit * T`.

use crate::algorithm::{finite_rate, Algorithm, ConfigError, Transition};
use crate::decision::CheckError;
use crate::gcra::Gcra;
use crate::rate::{Rate, RateParseError};
use crate::tat;
use core::fmt;
use core::ops::Range;

/// The most distinct rates one schedule holds (the default included).
pub const MAX_SCHEDULE_RATES: usize = 8;

const HOURS_PER_WEEK: usize = 7 * 24;
const NANOS_PER_SEC: u64 = 1_000_000_000;
const WEEK_SECS: u64 = 7 * 86_400;
const NANOS_PER_HOUR: u64 = 3_600 * NANOS_PER_SEC;

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Weekday {
    /// Monday (the first day of the schedule's week).
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday (1970-01-01, the Unix epoch, was one).
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Weekday {
    /// Monday to Friday.
    pub const WEEKDAYS: [Weekday; 5] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
    ];
    /// Saturday and Sunday.
    pub const WEEKEND: [Weekday; 2] = [Weekday::Saturday, Weekday::Sunday];

    const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a [`Schedule`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A rate string did not parse.
    Parse(RateParseError),
    /// A rate is not a valid finite GCRA rate.
    Config(ConfigError),
    /// An hour range must be non-empty and within `0..24` (split a range crossing midnight in
    /// two rules).
    Hours {
        /// The range's start.
        start: u8,
        /// The range's end (exclusive).
        end: u8,
    },
    /// More distinct rates than [`MAX_SCHEDULE_RATES`].
    TooManyRates,
    /// A UTC offset must be within ±24 hours (exclusive).
    Offset {
        /// The offset given, in minutes.
        minutes: i32,
    },
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::Parse(e) => write!(f, "invalid schedule rate: {e}"),
            ScheduleError::Config(e) => write!(f, "invalid schedule rate: {e}"),
            ScheduleError::Hours { start, end } => write!(
                f,
                "hour range {start}..{end} must be non-empty and within 0..24 (split ranges \
                 that cross midnight)"
            ),
            ScheduleError::TooManyRates => write!(
                f,
                "a schedule holds at most {MAX_SCHEDULE_RATES} distinct rates"
            ),
            ScheduleError::Offset { minutes } => {
                write!(f, "UTC offset {minutes} min is not within ±24 h")
            }
        }
    }
}

impl core::error::Error for ScheduleError {}

/// A rate for a schedule rule: a [`Rate`] or a string such as `"100/s"`.
pub trait ScheduleRate {
    /// The rate, or why it is not one.
    fn into_rate(self) -> Result<Rate, ScheduleError>;
}

impl ScheduleRate for Rate {
    fn into_rate(self) -> Result<Rate, ScheduleError> {
        Ok(self)
    }
}

impl ScheduleRate for &str {
    fn into_rate(self) -> Result<Rate, ScheduleError> {
        self.parse().map_err(ScheduleError::Parse)
    }
}

/// Builds a [`Schedule`]: rules apply in order, a later rule overriding an earlier one for the
/// hours both name. The first error is kept and returned by [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use = "call build() to get the schedule"]
pub struct ScheduleBuilder {
    schedule: Result<Schedule, ScheduleError>,
}

impl ScheduleBuilder {
    fn with(mut self, f: impl FnOnce(&mut Schedule) -> Result<(), ScheduleError>) -> Self {
        if let Ok(schedule) = &mut self.schedule {
            if let Err(e) = f(schedule) {
                self.schedule = Err(e);
            }
        }
        self
    }

    /// `rate` on `days` during `hours` (local hours, end exclusive: `9..17` is 09:00 to 16:59).
    pub fn days(self, days: &[Weekday], hours: Range<u8>, rate: impl ScheduleRate) -> Self {
        let rate = rate.into_rate();
        self.with(|s| {
            if hours.start >= hours.end || hours.end > 24 {
                return Err(ScheduleError::Hours {
                    start: hours.start,
                    end: hours.end,
                });
            }
            let index = s.intern(rate?)?;
            for day in days {
                for hour in hours.clone() {
                    s.hours[day.index() * 24 + usize::from(hour)] = index;
                }
            }
            Ok(())
        })
    }

    /// `rate` Monday to Friday during `hours`.
    pub fn weekdays(self, hours: Range<u8>, rate: impl ScheduleRate) -> Self {
        self.days(&Weekday::WEEKDAYS, hours, rate)
    }

    /// `rate` all of Saturday and Sunday.
    pub fn weekend(self, rate: impl ScheduleRate) -> Self {
        self.days(&Weekday::WEEKEND, 0..24, rate)
    }

    /// `rate` every day during `hours`.
    pub fn daily(self, hours: Range<u8>, rate: impl ScheduleRate) -> Self {
        self.days(&Weekday::ALL, hours, rate)
    }

    /// Local time is UTC plus `minutes` (default 0); within ±24 h, exclusive.
    pub fn utc_offset_minutes(self, minutes: i32) -> Self {
        self.with(|s| {
            if minutes.unsigned_abs() >= 24 * 60 {
                return Err(ScheduleError::Offset { minutes });
            }
            // |minutes| < 1440, so the shifted offset is positive.
            s.shifted_offset_secs = (i64::from(minutes) * 60 + WEEK_SECS as i64) as u64;
            Ok(())
        })
    }

    /// The Unix time, in nanoseconds, of the clock's epoch (default 0: the clock reads Unix
    /// time). See the [module docs](self#wall-time).
    pub fn clock_epoch_unix_nanos(self, nanos: u64) -> Self {
        self.with(|s| {
            s.epoch_unix_nanos = nanos;
            Ok(())
        })
    }

    /// The schedule, or the first error met.
    pub fn build(self) -> Result<Schedule, ScheduleError> {
        self.schedule.map(|mut s| {
            s.base_nanos = s
                .epoch_unix_nanos
                .saturating_add(s.shifted_offset_secs * NANOS_PER_SEC);
            s
        })
    }
}

/// GCRA at a rate chosen by the hour of the week; see the [module docs](self).
///
/// ```
/// use traffik_core::{Limiter, ManualClock, Schedule};
///
/// let schedule = Schedule::builder("10/s")
///     .weekdays(9..17, "100/s")
///     .weekend("20/s")
///     .utc_offset_minutes(60)
///     .build()?;
/// // Monday 2024-01-01 08:30 UTC is 09:30 at UTC+1: office hours.
/// let monday_0830_utc = 1_704_097_800u64 * 1_000_000_000;
/// assert_eq!(schedule.rate_at(monday_0830_utc), "100/s".parse()?);
/// let clock = ManualClock::starting_at(monday_0830_utc);
/// let limiter = Limiter::new(schedule, &clock);
/// assert_eq!(limiter.check(1)?.limit(), 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    rates: [Gcra; MAX_SCHEDULE_RATES],
    limits: [Rate; MAX_SCHEDULE_RATES],
    count: usize,
    /// Index into `rates` per hour of the week, Monday 00:00 first.
    hours: [u8; HOURS_PER_WEEK],
    /// The UTC offset in seconds plus one week, so that local time stays unsigned.
    shifted_offset_secs: u64,
    /// `epoch_unix_nanos + shifted_offset_secs` in nanoseconds (saturating), set by `build`.
    base_nanos: u64,
    epoch_unix_nanos: u64,
    capacity: u64,
}

/// What a [`Schedule`] key looks like now; see [`Schedule::details`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleDetails {
    /// The rate in force now.
    pub rate: Rate,
    /// The local day of the week now.
    pub weekday: Weekday,
    /// The local hour of the day now.
    pub hour: u8,
    /// Units the key could take at once now.
    pub available: u64,
    /// How far the key's TAT runs ahead of now, in nanoseconds.
    pub ahead_nanos: u64,
}

impl Schedule {
    /// Starts a schedule whose every hour uses `default` until a rule says otherwise.
    pub fn builder(default: impl ScheduleRate) -> ScheduleBuilder {
        let schedule = default.into_rate().and_then(|rate| {
            let gcra = Gcra::new(rate).map_err(ScheduleError::Config)?;
            Ok(Schedule {
                rates: [gcra; MAX_SCHEDULE_RATES],
                limits: [rate; MAX_SCHEDULE_RATES],
                count: 1,
                hours: [0; HOURS_PER_WEEK],
                shifted_offset_secs: WEEK_SECS,
                base_nanos: 0,
                epoch_unix_nanos: 0,
                capacity: gcra.burst(),
            })
        });
        ScheduleBuilder { schedule }
    }

    /// The index of `rate`, adding it if new.
    fn intern(&mut self, rate: Rate) -> Result<u8, ScheduleError> {
        finite_rate(rate).map_err(ScheduleError::Config)?;
        if let Some(i) = self.limits[..self.count].iter().position(|r| *r == rate) {
            return Ok(i as u8);
        }
        if self.count == MAX_SCHEDULE_RATES {
            return Err(ScheduleError::TooManyRates);
        }
        let gcra = Gcra::new(rate).map_err(ScheduleError::Config)?;
        self.rates[self.count] = gcra;
        self.limits[self.count] = rate;
        self.capacity = self.capacity.max(gcra.burst());
        self.count += 1;
        Ok((self.count - 1) as u8)
    }

    /// The hour of the week (0 = Monday 00:00 local) at clock reading `now`.
    #[inline]
    fn hour_of_week(&self, now: u64) -> usize {
        // Unsigned all the way, two divisions by constants (multiplications): `base_nanos`
        // adds the clock epoch's Unix time and the offset biased by one week (which keeps it
        // non-negative without changing the hour of the week); the Unix epoch, a Thursday
        // 00:00, is hour 72 of its week.
        let hours = now.saturating_add(self.base_nanos) / NANOS_PER_HOUR;
        ((hours + 72) % HOURS_PER_WEEK as u64) as usize
    }

    /// The local day and hour at clock reading `now`.
    pub fn local_time(&self, now: u64) -> (Weekday, u8) {
        let hour = self.hour_of_week(now);
        (Weekday::ALL[hour / 24], (hour % 24) as u8)
    }

    #[inline]
    fn index_at(&self, now: u64) -> usize {
        usize::from(self.hours[self.hour_of_week(now)])
    }

    /// The rate in force at clock reading `now`.
    pub fn rate_at(&self, now: u64) -> Rate {
        self.limits[self.index_at(now)]
    }

    /// The GCRA parameters of the rate in force at clock reading `now`: a check at `now` with
    /// them decides exactly as this schedule does.
    pub fn params_at(&self, now: u64) -> crate::gcra::GcraParams {
        self.rates[self.index_at(now)].params()
    }

    /// What `state` means at `now` under the rate in force then.
    pub fn details(&self, state: u64, now: u64) -> ScheduleDetails {
        let (weekday, hour) = self.local_time(now);
        let i = self.index_at(now);
        let gcra = &self.rates[i];
        let interval = gcra.interval_nanos();
        ScheduleDetails {
            rate: self.limits[i],
            weekday,
            hour,
            available: tat::free_units(interval, gcra.burst() * interval, state, now),
            ahead_nanos: state.saturating_sub(now),
        }
    }
}

impl Algorithm for Schedule {
    /// The largest burst among the schedule's rates; a check larger than the burst of the
    /// hour's rate is refused with [`CheckError::InsufficientCapacity`] naming that burst.
    #[inline]
    fn capacity(&self) -> u64 {
        self.capacity
    }

    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        self.rates[self.index_at(now)].decide(state, now, cost)
    }

    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        state.saturating_sub(now)
    }
}
