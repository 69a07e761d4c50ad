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
    pub(crate) fn for_algorithm(alg: RedisAlgorithm) -> Self {
        let main = match alg {
            RedisAlgorithm::Gcra | RedisAlgorithm::LeakyBucket => include_str!("lua/gcra.lua"),
            RedisAlgorithm::TokenBucket => include_str!("lua/token_bucket.lua"),
            RedisAlgorithm::FixedWindow => include_str!("lua/fixed_window.lua"),
            RedisAlgorithm::SlidingWindowCounter => include_str!("lua/sliding_window.lua"),
            RedisAlgorithm::SlidingWindowLog => include_str!("lua/sliding_log.lua"),
        };
        let body = format!("{PRELUDE}\n{main}");
        let sha = redis::Script::new(&body).get_hash().to_owned();
        LoadedScript { body, sha }
    }
}
