//! The Lua scripts and the integer parameters each one takes.

use crate::RedisAlgorithm;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// One script: its full text (prelude included) and SHA1.
#[derive(Debug, Clone)]
pub(crate) struct LoadedScript {
    pub(crate) body: String,
    pub(crate) sha: String,
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
        let body = format!("{PRELUDE}\n{}", main.replace("{{PARAMS}}", &literals));
        let sha = redis::Script::new(&body).get_hash().to_owned();
        LoadedScript { body, sha }
    }
}
