//! The Lua scripts and the integer parameters each one takes.

use redis::Cmd;

use crate::keys::meta_key;
use crate::RedisAlgorithm;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// One script: its full text (prelude included) and SHA1.
#[derive(Debug, Clone)]
pub(crate) struct LoadedScript {
    pub(crate) body: String,
    pub(crate) sha: String,
    /// Whether it takes the meta key too (the sliding window log).
    two_keys: bool,
}

impl LoadedScript {
    /// The script of `alg` with this limiter's constants (`params`, in the order the script's
    /// first line names them) written in as Lua integer literals: one script per configuration,
    /// so a check sends only its cost (and the caller's time, if any).
    pub(crate) fn new(alg: RedisAlgorithm, params: &[u64]) -> Self {
        let main = match alg {
            RedisAlgorithm::Gcra | RedisAlgorithm::LeakyBucket => include_str!("lua/gcra.lua"),
            RedisAlgorithm::TokenBucket => include_str!("lua/token_bucket.lua"),
            RedisAlgorithm::FixedWindow => include_str!("lua/fixed_window.lua"),
            RedisAlgorithm::SlidingWindowCounter => include_str!("lua/sliding_window.lua"),
            RedisAlgorithm::SlidingWindowLog => include_str!("lua/sliding_log.lua"),
            RedisAlgorithm::DebtBucket { .. } => include_str!("lua/debt_bucket.lua"),
            RedisAlgorithm::QuotaRollover(_) => include_str!("lua/rollover.lua"),
        };
        let literals = if params.is_empty() {
            // An unlimited limiter never runs a script; keep the text valid Lua anyway.
            "nil".to_owned()
        } else {
            params
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let main = main.replace("{{PARAMS}}", &literals);
        let body = format!("{}\n{main}", prelude_for(&main));
        let sha = redis::Script::new(&body).get_hash().to_owned();
        LoadedScript {
            body,
            sha,
            two_keys: alg == RedisAlgorithm::SlidingWindowLog,
        }
    }
}

impl LoadedScript {
    /// The GCRA script whose interval and burst come with each call (ARGV: cost, T, burst
    /// [, Q, R]), on a fixed unit of one second.
    pub(crate) fn gcra_dynamic() -> Self {
        let main = include_str!("lua/gcra_dyn.lua");
        let body = format!("{}\n{main}", prelude_for(main));
        let sha = redis::Script::new(&body).get_hash().to_owned();
        LoadedScript {
            body,
            sha,
            two_keys: false,
        }
    }

    /// One check: `EVALSHA` (or `EVAL` with the body) on `key` (and, for the sliding window
    /// log, its meta key), with the cost and the caller's time split as `(Q, R)` if any.
    pub(crate) fn command(
        &self,
        by_sha: bool,
        key: &[u8],
        cost: u64,
        now: Option<(u64, u64)>,
    ) -> Cmd {
        self.command_args(by_sha, key, &[cost], now)
    }

    /// As [`command`](Self::command), with `args` (the cost first) before the caller's time.
    pub(crate) fn command_args(
        &self,
        by_sha: bool,
        key: &[u8],
        args: &[u64],
        now: Option<(u64, u64)>,
    ) -> Cmd {
        let mut cmd = eval(by_sha, &self.sha, &self.body);
        if self.two_keys {
            cmd.arg(2).arg(key).arg(meta_key(key));
        } else {
            cmd.arg(1).arg(key);
        }
        for a in args {
            cmd.arg(*a);
        }
        if let Some((q, r)) = now {
            cmd.arg(q).arg(r);
        }
        cmd
    }
}

/// The head of a script call: `EVALSHA <sha>`, or `EVAL <body>` after a `NOSCRIPT` (safe to
/// resend: a refused `EVALSHA` never ran).
pub(crate) fn eval(by_sha: bool, sha: &str, body: &str) -> Cmd {
    let mut cmd = redis::cmd(if by_sha { "EVALSHA" } else { "EVAL" });
    cmd.arg(if by_sha { sha } else { body });
    cmd
}

/// The multi-limit script (all limits or none) for `limits`, in key order: each a kind (0 GCRA
/// and the leaky bucket, 1 token bucket, 2 fixed window, 3 sliding window counter, 4 sliding
/// window log, 5 debt bucket, 6 quota rollover; see `lua/multi.lua`) and that algorithm's
/// constants, as its own script names them. Returns the body and its SHA1.
pub(crate) fn multi(limits: &[(u64, &[u64])]) -> (String, String) {
    let literals = limits
        .iter()
        .map(|(kind, params)| {
            let params: Vec<String> = params.iter().map(u64::to_string).collect();
            format!("{{{kind}, {}}}", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let main = include_str!("lua/multi.lua").replace("{{PARAMS}}", &literals);
    let body = format!("{}\n{main}", prelude_for(&main));
    let sha = redis::Script::new(&body).get_hash().to_owned();
    (body, sha)
}

/// The prelude with only the helper sections (`--@ name`) that `main` calls, directly or through
/// another included helper; the text before the first section is always kept.
pub(crate) fn prelude_for(main: &str) -> String {
    let mut sections = PRELUDE.split("\n--@ ");
    let head = sections.next().unwrap_or_default();
    let helpers: Vec<(&str, &str)> = sections
        .map(|s| s.split_once('\n').unwrap_or((s, "")))
        .collect();
    let mut used = vec![false; helpers.len()];
    loop {
        let mut changed = false;
        for (i, (name, _)) in helpers.iter().enumerate() {
            if used[i] {
                continue;
            }
            let needed = calls(main, name)
                || helpers
                    .iter()
                    .zip(&used)
                    .any(|((_, text), &u)| u && calls(text, name));
            if needed {
                used[i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut out = head.to_owned();
    for ((_, text), u) in helpers.iter().zip(used) {
        if u {
            out.push('\n');
            out.push_str(text);
        }
    }
    out
}

/// Whether `text` calls the Lua function `name` (not merely one whose name ends in it).
fn calls(text: &str, name: &str) -> bool {
    let pattern = format!("{name}(");
    text.match_indices(&pattern).any(|(at, _)| {
        !text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_carry_only_the_helpers_they_call() {
        let gcra = LoadedScript::new(RedisAlgorithm::Gcra, &[1, 2, 3, 4]).body;
        assert!(gcra.contains("local function divmod("));
        assert!(gcra.contains("local function now_qr("));
        assert!(!gcra.contains("local function muldiv("));
        assert!(!gcra.contains("\n--@ "));
        assert!(gcra.contains("local L, T, tol, burst = 1, 2, 3, 4\n"));
        let tb = LoadedScript::new(RedisAlgorithm::TokenBucket, &[1, 2, 3, 4, 5]).body;
        assert!(
            tb.contains("local function muldiv(") && tb.contains("local function muldiv_ceil(")
        );
        let dynamic = LoadedScript::gcra_dynamic().body;
        assert!(dynamic.contains("local function now_qr(") && dynamic.contains("now_qr(L, 4)"));
        assert!(!dynamic.contains("{{PARAMS}}"));
        let log = LoadedScript::new(RedisAlgorithm::SlidingWindowLog, &[1, 2, 3]).body;
        assert!(!log.contains("local function store("));
        // Every helper a script calls is defined before the script body.
        for alg in [
            RedisAlgorithm::Gcra,
            RedisAlgorithm::TokenBucket,
            RedisAlgorithm::FixedWindow,
            RedisAlgorithm::SlidingWindowCounter,
            RedisAlgorithm::SlidingWindowLog,
            RedisAlgorithm::DebtBucket { max_debt: 1 },
            RedisAlgorithm::QuotaRollover(traffik_core::Rollover::new(1, 2, 3)),
        ] {
            let body = LoadedScript::new(alg, &[1, 2, 3, 4, 5, 6, 7, 8]).body;
            for name in [
                "divmod",
                "now_qr",
                "store",
                "corrupt",
                "muldiv",
                "muldiv_ceil",
                "reply",
                "too_big",
            ] {
                if calls(&body, name) {
                    assert!(
                        body.contains(&format!("local function {name}(")),
                        "{alg:?} {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_multi_script_defines_every_helper_it_calls_before_its_body() {
        let limits: Vec<(u64, &[u64])> = vec![
            (0, &[1, 2, 3, 4]),
            (1, &[1, 2, 3, 4, 5]),
            (2, &[1, 2, 3, 4]),
            (3, &[1, 2, 3, 4]),
            (4, &[1, 2, 3]),
            (5, &[1, 2, 3, 4, 5, 6]),
            (6, &[1, 2, 3, 4, 5, 6, 7, 8]),
        ];
        let (body, _) = multi(&limits);
        let main = body.find("local P = {").unwrap_or_default();
        assert!(main > 0);
        for name in [
            "gcra_decide",
            "bucket_decide",
            "fixed_decide",
            "sliding_decide",
            "rollover_decide",
            "log_decide",
            "log_store",
            "int_text",
            "store",
            "reply",
            "too_big",
        ] {
            let at = body.find(&format!("local function {name}("));
            assert!(at.is_some_and(|at| at < main), "{name}");
        }
    }
}
