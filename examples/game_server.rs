//! A game server's tick loop: every player action is checked against the player's budget with
//! the synchronous hot path, `limiter.check(&player, cost)`, which never locks, allocates or
//! awaits.
//!
//! 64 players act at 60 ticks per second for two seconds. Each player may spend 30 action
//! points per second with a reserve of 30 (token bucket); a move costs 1, an attack 3 and a
//! spell 8. Most players press a button a few times per second; the "bot" players act on every
//! tick and are held to exactly their budget. Totals at the end show what the rate promises:
//! no player spends more than 30 (reserve) + 30 per second.
//!
//! Run with `cargo run --example game_server`.

use std::error::Error;
use std::thread;
use std::time::{Duration, Instant};
use traffik::{AlgorithmKind, RateLimiter};

const TICK: Duration = Duration::from_micros(16_667);
const PLAYERS: u32 = 64;
const BOTS: u32 = 4;
const RUN: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
enum Action {
    Move,
    Attack,
    Spell,
}

impl Action {
    fn cost(self) -> u64 {
        match self {
            Action::Move => 1,
            Action::Attack => 3,
            Action::Spell => 8,
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Tally {
    spent: u64,
    allowed: u32,
    refused: u32,
}

fn main() -> Result<(), Box<dyn Error>> {
    // Keyed by player id: integer keys are stored exactly in the table, no hashing collisions.
    let budget: RateLimiter<u32> = traffik::builder()
        .rate("30/s")
        .algorithm(AlgorithmKind::TokenBucket)
        .capacity(1_024)
        .build()?;

    let mut tally = vec![Tally::default(); PLAYERS as usize];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let start = Instant::now();
    let mut ticks = 0u64;
    while start.elapsed() < RUN {
        ticks += 1;
        for player in 0..PLAYERS {
            // Bots act every tick; humans about three times a second.
            let acts = player < BOTS || next(&mut rng) % 20 == 0;
            if !acts {
                continue;
            }
            let action = match next(&mut rng) % 10 {
                0 => Action::Spell,
                1..=3 => Action::Attack,
                _ => Action::Move,
            };
            let t = &mut tally[player as usize];
            // The whole rate-limiting cost of the action: one synchronous check.
            let decision = budget.check(&player, action.cost())?;
            if decision.is_allowed() {
                t.spent += action.cost();
                t.allowed += 1;
            } else {
                t.refused += 1;
                if player < BOTS && t.refused == 1 {
                    println!(
                        "tick {ticks:>3}: bot {player} out of action points ({} left), next in {:?}",
                        decision.remaining(),
                        decision.retry_after()
                    );
                }
            }
        }
        // Sleep to the next tick boundary (a real server would run the world here).
        let next_tick = TICK * u32::try_from(ticks).unwrap_or(u32::MAX);
        if let Some(wait) = next_tick.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
    }

    let elapsed = start.elapsed().as_secs_f64();
    let ceiling = 30.0 + 30.0 * elapsed;
    println!("\n{ticks} ticks in {elapsed:.2} s; budget 30 reserve + 30/s = at most {ceiling:.0} points each");
    for (player, t) in tally.iter().enumerate().take(BOTS as usize + 4) {
        let kind = if player < BOTS as usize {
            "bot  "
        } else {
            "human"
        };
        println!(
            "{kind} {player:>2}: spent {:>3} points, {:>3} actions allowed, {:>3} refused",
            t.spent, t.allowed, t.refused
        );
    }
    let worst = tally.iter().map(|t| t.spent).max().unwrap_or(0);
    println!("most spent by any player: {worst} (never above {ceiling:.0})");
    // The guarantee the example exists to show; a token bucket cannot be overspent.
    if worst as f64 > ceiling {
        return Err(format!("a player spent {worst}, over the ceiling {ceiling:.0}").into());
    }
    Ok(())
}

/// xorshift64: a tiny deterministic source of player behaviour.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
