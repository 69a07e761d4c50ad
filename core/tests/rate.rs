//! Integration tests for `traffik_core::rate`: constructors, the builder, parsing and display.

use core::time::Duration;

use proptest::prelude::*;
use traffik_core::{Rate, RateError, RateParseError, RateParseErrorKind};

const NS: u64 = 1;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

/// Parses `input`, failing the test with the error if it does not parse.
fn parse(input: &str) -> Rate {
    match input.parse::<Rate>() {
        Ok(rate) => rate,
        Err(err) => panic!("{input:?} failed to parse: {err}"),
    }
}

/// Parses `input`, failing the test if it parses.
fn parse_err(input: &str) -> RateParseError {
    match input.parse::<Rate>() {
        Ok(rate) => panic!("{input:?} unexpectedly parsed as {rate:?}"),
        Err(err) => err,
    }
}

fn finite(limit: u64, period_nanos: u64) -> Rate {
    match Rate::from_nanos(limit, period_nanos) {
        Ok(rate) => rate,
        Err(err) => panic!("from_nanos({limit}, {period_nanos}) failed: {err}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Constructors and accessors

#[test]
fn const_constructors() {
    const PER_S: Rate = Rate::per_second(5);
    const PER_M: Rate = Rate::per_minute(100);
    const PER_H: Rate = Rate::per_hour(7);
    const PER_D: Rate = Rate::per_day(1);
    assert_eq!((PER_S.limit(), PER_S.period_nanos()), (5, SEC));
    assert_eq!((PER_M.limit(), PER_M.period_nanos()), (100, MIN));
    assert_eq!((PER_H.limit(), PER_H.period_nanos()), (7, HOUR));
    assert_eq!((PER_D.limit(), PER_D.period_nanos()), (1, DAY));
    assert_eq!(PER_M.period(), Duration::from_secs(60));
    assert_eq!(PER_D.period(), Duration::from_secs(86_400));
    assert!(!PER_S.is_unlimited());

    // Zero limits are representable through the const constructors (the algorithms reject
    // them), but they are not unlimited.
    let zero = Rate::per_second(0);
    assert_eq!((zero.limit(), zero.period_nanos()), (0, SEC));
    assert!(!zero.is_unlimited());
}

#[test]
fn unlimited() {
    const U: Rate = Rate::unlimited();
    assert!(U.is_unlimited());
    assert_eq!(U.limit(), 0);
    assert_eq!(U.period_nanos(), 0);
    assert_eq!(U.period(), Duration::ZERO);
    assert_eq!(Rate::new(0, Duration::ZERO), Ok(U));
    assert_eq!(Rate::from_nanos(0, 0), Ok(U));
    assert_eq!(Rate::builder(0).build(), Ok(U));
}

#[test]
fn new_and_from_nanos() {
    assert_eq!(
        Rate::new(100, Duration::from_secs(60)),
        Ok(Rate::per_minute(100))
    );
    assert_eq!(
        Rate::new(3, Duration::from_nanos(7)),
        Rate::from_nanos(3, 7)
    );
    let r = finite(3, 7);
    assert_eq!((r.limit(), r.period_nanos()), (3, 7));
    assert_eq!(r.period(), Duration::from_nanos(7));

    assert_eq!(Rate::new(5, Duration::ZERO), Err(RateError::ZeroPeriod));
    assert_eq!(Rate::from_nanos(5, 0), Err(RateError::ZeroPeriod));
    assert_eq!(
        Rate::new(0, Duration::from_secs(1)),
        Err(RateError::ZeroLimit)
    );
    assert_eq!(Rate::from_nanos(0, 1), Err(RateError::ZeroLimit));

    // The largest representable period, and one past it.
    assert_eq!(
        Rate::new(1, Duration::from_nanos(u64::MAX)).map(|r| r.period_nanos()),
        Ok(u64::MAX)
    );
    let too_long = Duration::from_nanos(u64::MAX) + Duration::from_nanos(1);
    assert_eq!(Rate::new(1, too_long), Err(RateError::PeriodOverflow));
    assert_eq!(Rate::new(0, too_long), Err(RateError::PeriodOverflow));
    assert_eq!(Rate::new(1, Duration::MAX), Err(RateError::PeriodOverflow));
}

#[test]
fn const_from_nanos() {
    const R: Result<Rate, RateError> = Rate::from_nanos(10, 1_500);
    assert_eq!(R.map(|r| r.period_nanos()), Ok(1_500));
}

// ---------------------------------------------------------------------------------------------
// Builder

#[test]
fn builder_sums_parts() {
    assert_eq!(
        Rate::builder(10).minutes(1).seconds(30).build(),
        Ok(finite(10, 90 * SEC))
    );
    assert_eq!(
        Rate::builder(1)
            .days(1)
            .hours(1)
            .minutes(1)
            .seconds(1)
            .millis(1)
            .micros(1)
            .nanos(1)
            .build()
            .map(|r| r.period_nanos()),
        Ok(DAY + HOUR + MIN + SEC + MS + US + NS)
    );
    // Parts may repeat.
    assert_eq!(
        Rate::builder(2).seconds(1).seconds(2).build(),
        Ok(finite(2, 3 * SEC))
    );
    const BUILT: Result<Rate, RateError> = Rate::builder(4).millis(250).build();
    assert_eq!(BUILT, Ok(finite(4, 250 * MS)));
}

#[test]
fn builder_errors() {
    assert_eq!(Rate::builder(5).build(), Err(RateError::ZeroPeriod));
    assert_eq!(
        Rate::builder(5).seconds(0).build(),
        Err(RateError::ZeroPeriod)
    );
    assert_eq!(
        Rate::builder(0).seconds(1).build(),
        Err(RateError::ZeroLimit)
    );
    // Overflow in a single part's multiplication ...
    assert_eq!(
        Rate::builder(1).days(300_000).build(),
        Err(RateError::PeriodOverflow)
    );
    // ... and in the sum, even when later parts are zero.
    assert_eq!(
        Rate::builder(1).nanos(u64::MAX).nanos(1).nanos(0).build(),
        Err(RateError::PeriodOverflow)
    );
    assert_eq!(
        Rate::builder(0).nanos(u64::MAX).seconds(1).build(),
        Err(RateError::PeriodOverflow)
    );
    assert_eq!(
        Rate::builder(1)
            .nanos(u64::MAX)
            .build()
            .map(|r| r.period_nanos()),
        Ok(u64::MAX)
    );
}

// ---------------------------------------------------------------------------------------------
// Parsing: accepted inputs

#[test]
fn parses_required_examples() {
    let cases: &[(&str, u64, u64)] = &[
        ("100/minute", 100, MIN),
        ("5/m", 5, MIN),
        ("2/5s", 2, 5 * SEC),
        ("10/30 seconds", 10, 30 * SEC),
        ("1000/500ms", 1000, 500 * MS),
        ("20 per 2 mins", 20, 2 * MIN),
        ("2 per second", 2, SEC),
        ("2 persecond", 2, SEC),
        ("5per5s", 5, 5 * SEC),
        ("5/ 2 s", 5, 2 * SEC),
        ("1/3d", 1, 3 * DAY),
        ("  10  /  5s  ", 10, 5 * SEC),
    ];
    for &(input, limit, period) in cases {
        let rate = parse(input);
        assert_eq!(
            (rate.limit(), rate.period_nanos()),
            (limit, period),
            "{input:?}"
        );
    }
}

#[test]
fn parses_unlimited() {
    for input in [
        "0/0", "0/0s", "0/0ms", "0/0 days", " 0 / 0 ", "0 per 0", "0per0", "00/000", "0/0NS",
    ] {
        assert_eq!(parse(input), Rate::unlimited(), "{input:?}");
    }
}

#[test]
fn parses_every_unit_spelling() {
    let units: &[(&[&str], u64)] = &[
        (&["ns", "nanosecond", "nanoseconds"], NS),
        (
            &["us", "\u{b5}s", "\u{3bc}s", "microsecond", "microseconds"],
            US,
        ),
        (&["ms", "millisecond", "milliseconds"], MS),
        (&["s", "sec", "secs", "second", "seconds"], SEC),
        (&["m", "min", "mins", "minute", "minutes"], MIN),
        (&["h", "hr", "hrs", "hour", "hours"], HOUR),
        (&["d", "day", "days"], DAY),
    ];
    for &(spellings, nanos) in units {
        for spelling in spellings {
            for input in [
                format!("3/{spelling}"),
                format!("3/7{spelling}"),
                format!("3 per 7 {}", spelling.to_ascii_uppercase()),
                format!("3PER{}", spelling.to_ascii_uppercase()),
            ] {
                let expected_count = if input.contains('7') { 7 } else { 1 };
                assert_eq!(
                    parse(&input),
                    finite(3, expected_count * nanos),
                    "{input:?}"
                );
            }
        }
    }
}

#[test]
fn parses_case_insensitively_and_with_any_ascii_whitespace() {
    assert_eq!(parse("100/MINUTE"), Rate::per_minute(100));
    assert_eq!(parse("100/Minute"), Rate::per_minute(100));
    assert_eq!(parse("2 PeR SeCoNdS"), Rate::per_second(2));
    assert_eq!(parse("\t2\n/\r\n3\x0cMS "), finite(2, 3 * MS));
    assert_eq!(parse("007/010s"), finite(7, 10 * SEC));
    assert_eq!(
        parse("18446744073709551615/18446744073709551615ns"),
        finite(u64::MAX, u64::MAX)
    );
}

// ---------------------------------------------------------------------------------------------
// Parsing: rejected inputs

#[track_caller]
fn assert_rejects(input: &str, kind: RateParseErrorKind, position: usize) {
    let err = parse_err(input);
    assert_eq!((err.kind(), err.position()), (kind, position), "{input:?}");
}

#[test]
fn rejects_required_examples() {
    use RateParseErrorKind as K;
    assert_rejects("", K::Empty, 0);
    assert_rejects("   ", K::Empty, 0);
    assert_rejects(" \t\r\n", K::Empty, 0);
    assert_rejects("abc/s", K::InvalidNumber, 0);
    assert_rejects("5.5/s", K::InvalidNumber, 1);
    assert_rejects("-5/s", K::Negative, 0);
    assert_rejects("5s", K::MissingSeparator, 1);
    assert_rejects("5/", K::MissingPeriod, 2);
    assert_rejects("/s", K::MissingLimit, 0);
    assert_rejects("5/10/s", K::TrailingInput, 4);
    assert_rejects("5/10", K::MissingUnit, 4);
    assert_rejects("5/week", K::UnknownUnit, 2);
    assert_rejects("5/0s", K::ZeroPeriod, 2);
    assert_rejects("0/s", K::ZeroLimit, 0);
    assert_rejects("18446744073709551616/s", K::Overflow, 0);
    assert_rejects("1/300000d", K::Overflow, 2);
}

#[test]
fn rejects_other_malformed_inputs() {
    use RateParseErrorKind as K;
    assert_rejects("  -5/s", K::Negative, 2);
    assert_rejects("5/-3s", K::Negative, 2);
    assert_rejects("+5/s", K::InvalidNumber, 0);
    assert_rejects("1_000/s", K::InvalidNumber, 1);
    assert_rejects("1,000/s", K::InvalidNumber, 1);
    assert_rejects("5/1.5s", K::InvalidNumber, 3);
    assert_rejects("5/.5s", K::InvalidNumber, 2);
    assert_rejects("s/5", K::InvalidNumber, 0);
    assert_rejects("per s", K::MissingLimit, 0);
    assert_rejects("  / s", K::MissingLimit, 2);
    assert_rejects("5", K::MissingSeparator, 1);
    assert_rejects("5 6/s", K::MissingSeparator, 2);
    assert_rejects("5 pe s", K::MissingSeparator, 2);
    assert_rejects("5 /   ", K::MissingPeriod, 6);
    assert_rejects("5 per", K::MissingPeriod, 5);
    assert_rejects("5//s", K::MissingPeriod, 2);
    assert_rejects("5/10 ", K::MissingUnit, 5);
    assert_rejects("0/5", K::MissingUnit, 3);
    assert_rejects("5/0", K::MissingUnit, 3);
    assert_rejects("0/0/s", K::TrailingInput, 3);
    assert_rejects("5/s s", K::TrailingInput, 4);
    assert_rejects("5/s5", K::TrailingInput, 3);
    assert_rejects("5/s/", K::TrailingInput, 3);
    assert_rejects("5/x", K::UnknownUnit, 2);
    assert_rejects("5/2 fortnights", K::UnknownUnit, 4);
    assert_rejects("5/sé", K::UnknownUnit, 2);
    assert_rejects("5/\u{b5}", K::UnknownUnit, 2);
    assert_rejects("5 per 0 days", K::ZeroPeriod, 6);
    assert_rejects("0 per 3 h", K::ZeroLimit, 0);
    assert_rejects(" 0/0s5", K::TrailingInput, 5);
    assert_rejects("1/99999999999999999999s", K::Overflow, 2);
    assert_rejects("1/18446744073709551615us", K::Overflow, 2);
    assert_rejects("0/300000d", K::Overflow, 2);
}

#[test]
fn parse_error_display_says_what_and_where() {
    assert_eq!(
        parse_err("5/week").to_string(),
        "unknown time unit at byte 2 (expected ns, us, ms, s, m, h or d)"
    );
    assert_eq!(
        parse_err("5/10").to_string(),
        "missing time unit at byte 4 (expected ns, us, ms, s, m, h or d)"
    );
    assert_eq!(
        parse_err("5s").to_string(),
        "missing separator at byte 1 (expected / or per)"
    );
    assert_eq!(
        parse_err("5/10/s").to_string(),
        "unexpected trailing input at byte 4"
    );
    // Every kind mentions the byte offset.
    for input in [
        "",
        "abc/s",
        "-5/s",
        "/s",
        "5s",
        "5/",
        "5/10",
        "5/week",
        "5/10/s",
        "5/0s",
        "0/s",
        "1/300000d",
    ] {
        let err = parse_err(input);
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("at byte {}", err.position())),
            "{input:?}: {shown}"
        );
    }
}

#[test]
fn errors_implement_error() {
    fn assert_error<E: core::error::Error + Send + Sync + 'static>(_: &E) {}
    assert_error(&RateError::ZeroLimit);
    assert_error(&parse_err(""));
    assert_eq!(
        RateError::ZeroPeriod.to_string(),
        "rate has a non-zero limit but a zero period"
    );
    assert!(RateError::ZeroLimit.to_string().contains("0/0"));
    assert!(RateError::PeriodOverflow.to_string().contains("u64::MAX"));
}

// ---------------------------------------------------------------------------------------------
// Display

#[test]
fn display() {
    let cases: &[(Rate, &str)] = &[
        (Rate::per_minute(100), "100/m"),
        (Rate::per_second(2), "2/s"),
        (Rate::per_hour(3), "3/h"),
        (Rate::per_day(4), "4/d"),
        (finite(2, 5 * SEC), "2/5s"),
        (finite(1000, 500 * MS), "1000/500ms"),
        (finite(10, 90 * SEC), "10/90s"),
        (finite(20, 2 * MIN), "20/2m"),
        (finite(1, 3 * DAY), "1/3d"),
        (finite(1, 36 * HOUR), "1/36h"),
        (finite(1, 1_500 * US), "1/1500us"),
        (finite(1, US), "1/us"),
        (finite(1, 7), "1/7ns"),
        (finite(1, NS), "1/ns"),
        (
            finite(u64::MAX, u64::MAX),
            "18446744073709551615/18446744073709551615ns",
        ),
        (Rate::unlimited(), "0/0"),
        // Only reachable through the const constructors; does not parse back.
        (Rate::per_second(0), "0/s"),
    ];
    for &(rate, expected) in cases {
        assert_eq!(rate.to_string(), expected, "{rate:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

const UNIT_SPELLINGS: &[(&str, u64)] = &[
    ("ns", NS),
    ("nanosecond", NS),
    ("nanoseconds", NS),
    ("us", US),
    ("\u{b5}s", US),
    ("microsecond", US),
    ("microseconds", US),
    ("ms", MS),
    ("millisecond", MS),
    ("milliseconds", MS),
    ("s", SEC),
    ("sec", SEC),
    ("secs", SEC),
    ("second", SEC),
    ("seconds", SEC),
    ("m", MIN),
    ("min", MIN),
    ("mins", MIN),
    ("minute", MIN),
    ("minutes", MIN),
    ("h", HOUR),
    ("hr", HOUR),
    ("hrs", HOUR),
    ("hour", HOUR),
    ("hours", HOUR),
    ("d", DAY),
    ("day", DAY),
    ("days", DAY),
];

/// Any rate that the checked constructors can produce.
fn any_rate() -> impl Strategy<Value = Rate> {
    let unit = prop::sample::select(vec![NS, US, MS, SEC, MIN, HOUR, DAY]);
    let period = prop_oneof![
        1..=u64::MAX,
        // Periods that are whole multiples of a unit, so every display suffix is exercised.
        (1..=100_000u64, unit).prop_map(|(count, unit)| count.saturating_mul(unit)),
        Just(u64::MAX),
    ];
    let limit = prop_oneof![1..=u64::MAX, 1..=1_000u64];
    prop_oneof![
        20 => (limit, period).prop_map(|(limit, period)| finite(limit, period)),
        1 => Just(Rate::unlimited()),
    ]
}

/// Randomly upper-cases ASCII letters of `s`, one bit of `mask` per character.
fn mix_case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if (mask >> (i % 64)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn whitespace() -> impl Strategy<Value = String> {
    "[ \t\r\n]{0,3}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn display_round_trips(rate in any_rate()) {
        let shown = rate.to_string();
        prop_assert_eq!(shown.parse::<Rate>(), Ok(rate), "{}", shown);
    }

    #[test]
    fn arbitrary_strings_never_panic(input in any::<String>()) {
        check_no_panic(&input)?;
    }

    #[test]
    fn grammar_like_strings_never_panic(
        input in "[ 0-9a-zA-Z/\\-+._,\u{b5}\u{3bc}\u{e9}\t]{0,24}",
    ) {
        check_no_panic(&input)?;
    }

    #[test]
    fn generated_grammar_parses_to_expected_value(
        limit in prop_oneof![0..=u64::MAX, 0..=1_000u64],
        count in prop::option::of(prop_oneof![0..=u64::MAX, 0..=1_000u64]),
        leading_zeros in 0..3usize,
        (unit, unit_nanos) in prop::sample::select(UNIT_SPELLINGS),
        per in any::<bool>(),
        case_mask in any::<u64>(),
        spaces in prop::collection::vec(whitespace(), 6),
    ) {
        let zeros = "0".repeat(leading_zeros);
        let sep = if per { "per" } else { "/" };
        let count_text = count.map(|c| format!("{zeros}{c}")).unwrap_or_default();
        let input = format!(
            "{}{limit}{}{sep}{}{count_text}{}{unit}{}",
            spaces[0], spaces[1], spaces[2], spaces[3], spaces[4],
        );
        let input = mix_case(&input, case_mask);

        // The value the grammar says this means.
        let expected = match count.unwrap_or(1).checked_mul(unit_nanos) {
            None => Err(RateParseErrorKind::Overflow),
            Some(0) if limit == 0 => Ok(Rate::unlimited()),
            Some(0) => Err(RateParseErrorKind::ZeroPeriod),
            Some(_) if limit == 0 => Err(RateParseErrorKind::ZeroLimit),
            Some(period) => Ok(finite(limit, period)),
        };
        let actual = input.parse::<Rate>().map_err(|e| e.kind());
        prop_assert_eq!(actual, expected, "{:?}", input);
    }

    #[test]
    fn zero_limit_zero_count_without_unit_is_unlimited(
        spaces in prop::collection::vec(whitespace(), 4),
        per in any::<bool>(),
    ) {
        let sep = if per { "PeR" } else { "/" };
        let input = format!("{}0{}{sep}{}0{}", spaces[0], spaces[1], spaces[2], spaces[3]);
        prop_assert_eq!(input.parse::<Rate>(), Ok(Rate::unlimited()), "{:?}", input);
    }
}

/// Parsing never panics; a success displays and parses back, a failure points inside the input.
fn check_no_panic(input: &str) -> Result<(), TestCaseError> {
    match input.parse::<Rate>() {
        Ok(rate) => {
            let shown = rate.to_string();
            prop_assert_eq!(shown.parse::<Rate>(), Ok(rate), "{:?} -> {}", input, shown);
        }
        Err(err) => {
            prop_assert!(err.position() <= input.len(), "{:?}: {:?}", input, err);
            let _ = err.to_string();
        }
    }
    Ok(())
}
