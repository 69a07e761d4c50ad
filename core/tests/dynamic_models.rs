//! The adaptive limit and the priority budget against an independent bucket-level model.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../fuzz/harness/level.rs"]
mod level;

// The fuzz target's decoder; it reaches the model as `super::level`.
#[path = "../../fuzz/harness/dynamic.rs"]
mod dynamic;

#[path = "../../fuzz/harness/replay.rs"]
mod replay;

use level::{Aimd, Level};
use proptest::prelude::*;
use traffik_core::{Adaptive, Algorithm, Decision, PriorityBudget, Rate};

const SEC: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Check(u64, usize),
    Report(u64),
}

fn ops(period: u64, cap: u64, levels: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0..=period).prop_map(Op::Advance),
        3 => (0..=period / 50 + 1).prop_map(Op::Advance),
        6 => (0..=cap + 1, 0..levels).prop_map(|(c, p)| Op::Check(c, p)),
        2 => (0u64..200).prop_map(Op::Report),
    ];
    proptest::collection::vec(op, 1..150)
}

fn same(packed: Decision, model: Decision) -> Result<(), TestCaseError> {
    prop_assert_eq!(packed.is_allowed(), model.is_allowed());
    prop_assert_eq!(packed.remaining(), model.remaining());
    prop_assert_eq!(packed.retry_after_nanos(), model.retry_after_nanos());
    prop_assert_eq!(packed.reset_after_nanos(), model.reset_after_nanos());
    prop_assert_eq!(packed.limit(), model.limit());
    Ok(())
}

/// Every window of `width` ns starting at an admission holds at most `bound` admitted units.
fn within_bound(admitted: &[(u64, u64)], width: u64, bound: u64) -> Result<(), TestCaseError> {
    for (i, &(start, _)) in admitted.iter().enumerate() {
        let total: u64 = admitted[i..]
            .iter()
            .take_while(|(t, _)| *t < start + width)
            .map(|(_, c)| c)
            .sum();
        prop_assert!(total <= bound, "{total} > {bound} from {start}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn adaptive_matches_the_level_model(
        floor in 1u64..20,
        span in 0u64..40,
        burst in 1u64..30,
        inc in 1u64..7,
        (num, den) in (1u64..5).prop_flat_map(|n| (Just(n), n + 1..n + 6)),
        period in prop_oneof![Just(SEC), Just(999_983u64), Just(60 * SEC)],
        script in ops(SEC, 30, 1),
    ) {
        let ceiling = floor + span;
        let a = Adaptive::builder(
            Rate::from_nanos(floor, period).unwrap(),
            Rate::from_nanos(ceiling, period).unwrap(),
            100,
        )
        .increase(inc)
        .decrease(num, den)
        .burst(burst)
        .build()
        .unwrap();
        let rule = Aimd {
            target: 100,
            floor,
            ceiling,
            increase: inc,
            numerator: num,
            denominator: den,
        };
        let (mut state, mut now, mut limit) = (0u64, 0u64, ceiling);
        let mut admitted = Vec::new();
        let mut model = Level::default();
        for op in script {
            match op {
                Op::Advance(dt) => now += dt * (period / SEC).max(1),
                Op::Report(signal) => {
                    limit = rule.next(limit, signal);
                    prop_assert_eq!(a.report(signal), limit);
                }
                Op::Check(cost, _) => {
                    let packed = a.decide(state, now, cost);
                    if cost > burst {
                        prop_assert!(packed.is_err());
                        continue;
                    }
                    let t = packed.unwrap();
                    state = t.next.unwrap_or(state);
                    let interval = period.div_ceil(limit);
                    same(t.decision, model.decide(now, cost, interval, burst))?;
                    if t.decision.is_allowed() {
                        admitted.push((now, cost));
                    }
                }
            }
        }
        // The documented bound across changes, for windows of one period.
        let (t_floor, t_ceiling) = (period.div_ceil(floor), period.div_ceil(ceiling));
        let bound = (period + burst * t_floor).div_ceil(t_ceiling) - 1;
        within_bound(&admitted, period, bound)?;
    }

    #[test]
    fn priority_matches_the_level_model(
        budget in 1u64..25,
        cuts in proptest::collection::vec(0u64..25, 1..5),
        limit in 1u64..50,
        script in ops(SEC, 26, 4),
    ) {
        // Reserves: non-increasing, each below the budget.
        let mut reserves: Vec<u64> = cuts.iter().map(|c| c % budget).collect();
        reserves.sort_unstable_by(|a, b| b.cmp(a));
        let b = PriorityBudget::new(Rate::per_second(limit), budget, &reserves).unwrap();
        let interval = SEC.div_ceil(limit);
        let (mut state, mut now) = (0u64, 0u64);
        let mut model = Level::default();
        let mut admitted = Vec::new();
        let mut admitted_low = Vec::new();
        for op in script {
            match op {
                Op::Advance(dt) => now += dt,
                Op::Report(_) => {
                    let remaining = (0..=budget)
                        .rev()
                        .find(|k| model.admits(now as u128, *k as u128, interval as u128, budget as u128))
                        .unwrap();
                    prop_assert_eq!(b.remaining(state, now), remaining);
                }
                Op::Check(cost, p) => {
                    let p = p % reserves.len();
                    let level = b.level(p).unwrap();
                    let share = budget - reserves[p];
                    let packed = level.decide(state, now, cost);
                    if cost > share {
                        prop_assert!(packed.is_err());
                        continue;
                    }
                    let t = packed.unwrap();
                    state = t.next.unwrap_or(state);
                    same(t.decision, model.decide(now, cost, interval, share))?;
                    if t.decision.is_allowed() {
                        admitted.push((now, cost));
                        if p == 0 {
                            admitted_low.push((now, cost));
                        }
                    }
                }
            }
        }
        // The documented bounds per period: the budget's over all priorities, and the lowest
        // priority's share alone.
        within_bound(&admitted, SEC, budget + limit - 1)?;
        within_bound(&admitted_low, SEC, budget - reserves[0] + limit - 1)?;
    }
}

/// Monday 2024-01-01 00:00:00 UTC: a second anchor, independent of the Unix epoch's Thursday.
const MONDAY: u64 = 1_704_067_200;

/// A rule: days as a bit set (bit 0 = Monday), an hour range, a limit per second.
type Rule = (u8, u8, u8, u64);

fn schedule_model_rate(rules: &[Rule], default: u64, unix_secs: u64, offset_min: i32) -> u64 {
    let local = unix_secs as i64 + i64::from(offset_min) * 60 - MONDAY as i64;
    let days = local.div_euclid(86_400);
    let weekday = days.rem_euclid(7) as u8;
    let hour = (local.rem_euclid(86_400) / 3_600) as u8;
    rules
        .iter()
        .rev()
        .find(|(set, start, end, _)| set & (1 << weekday) != 0 && (*start..*end).contains(&hour))
        .map_or(default, |r| r.3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn schedule_matches_the_level_model(
        default in 1u64..30,
        raw_rules in proptest::collection::vec((1u8..128, 0u8..24, 1u8..=24, 1u64..30), 0..4),
        offset in -1_439i32..1_440,
        start in 0u64..(14 * 86_400),
        script in proptest::collection::vec(
            prop_oneof![
                3 => (0u64..7_200).prop_map(|s| Op::Advance(s * SEC)),
                3 => (0u64..SEC).prop_map(Op::Advance),
                6 => (0u64..31).prop_map(|c| Op::Check(c, 0)),
            ],
            1..150,
        ),
    ) {
        let rules: Vec<Rule> = raw_rules
            .into_iter()
            .map(|(set, a, b, l)| (set, a.min(b - 1), b.max(a + 1).min(24), l))
            .collect();
        let mut builder = traffik_core::Schedule::builder(Rate::per_second(default))
            .utc_offset_minutes(offset);
        for &(set, a, b, l) in &rules {
            let days: Vec<traffik_core::Weekday> = [
                traffik_core::Weekday::Monday,
                traffik_core::Weekday::Tuesday,
                traffik_core::Weekday::Wednesday,
                traffik_core::Weekday::Thursday,
                traffik_core::Weekday::Friday,
                traffik_core::Weekday::Saturday,
                traffik_core::Weekday::Sunday,
            ]
            .into_iter()
            .enumerate()
            .filter(|(i, _)| set & (1 << i) != 0)
            .map(|(_, d)| d)
            .collect();
            builder = builder.days(&days, a..b, Rate::per_second(l));
        }
        let schedule = builder.build().unwrap();
        let (mut state, mut now) = (0u64, (MONDAY + start) * SEC);
        let mut admitted = Vec::new();
        let mut model = Level::default();
        for op in script {
            match op {
                Op::Advance(dt) => now += dt,
                Op::Check(cost, _) => {
                    let limit = schedule_model_rate(&rules, default, now / SEC, offset);
                    prop_assert_eq!(schedule.rate_at(now), Rate::per_second(limit));
                    let packed = schedule.decide(state, now, cost);
                    if cost > limit {
                        prop_assert!(packed.is_err());
                        continue;
                    }
                    let t = packed.unwrap();
                    state = t.next.unwrap_or(state);
                    same(t.decision, model.decide(now, cost, SEC.div_ceil(limit), limit))?;
                    if t.decision.is_allowed() {
                        admitted.push((now, cost));
                    }
                }
                Op::Report(_) => {}
            }
        }
        // The documented bound across hour boundaries, for windows of one second.
        let limits: Vec<u64> = rules.iter().map(|r| r.3).chain([default]).collect();
        let t_min = SEC.div_ceil(*limits.iter().max().unwrap());
        let max_tolerance = limits.iter().map(|l| l * SEC.div_ceil(*l)).max().unwrap();
        within_bound(&admitted, SEC, (SEC + max_tolerance).div_ceil(t_min) - 1)?;
    }
}

/// The fuzz corpus of `dynamic_ops`, replayed through the same harness on stable.
#[test]
fn dynamic_ops_corpus() {
    replay::replay("dynamic_ops", dynamic::dynamic_ops);
}
