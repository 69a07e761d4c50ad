//! A named limit the layer enforces: [`Policy`] ties a name and a [`Rate`] (for the headers)
//! to a limiter, a key extractor, a [`Rule`], a cost, an optional charge-by-outcome predicate
//! and what to do when a request has no key.
//!
//! ```
//! use traffik::http::{Extracted, HttpKey, MissingKey, MissingKeyOutcome, Policy, Rule};
//!
//! // Ten requests a second per `x-api-key`, for the API only; no key is 401.
//! let policy = Policy::in_process("burst", "10/s")?
//!     .key(|parts: &http::request::Parts| match parts.headers.get("x-api-key") {
//!         Some(v) => Extracted::Key(HttpKey::from_bytes(v.as_bytes())),
//!         None => Extracted::Missing(MissingKey::new("no x-api-key header")),
//!     })
//!     .rule(Rule::prefix("/api"))
//!     .on_missing_key(MissingKeyOutcome::Reject(http::StatusCode::UNAUTHORIZED));
//! assert_eq!(policy.name(), "burst");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, StatusCode};
use traffik_core::{AsyncLimiter, Rate, RateParseError};

use super::key::{Extracted, HttpKey, KeyExtractor};
use super::response::policy_item;
use super::rules::Rule;
use crate::builder::{BuildError, Builder, IntoRate, RateLimiter};

/// Why a policy could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The name cannot go into a structured-field string.
    #[error("invalid policy name {name:?}: {why}")]
    Name {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The rate string does not parse.
    #[error("invalid rate for policy {name:?}: {source}")]
    Rate {
        /// The policy's name.
        name: String,
        /// The parser's error.
        #[source]
        source: RateParseError,
    },
    /// The rate is `0/0` (unlimited): there is nothing to enforce or announce.
    #[error("policy {name:?} has the unlimited rate 0/0; leave the policy out instead")]
    Unlimited {
        /// The policy's name.
        name: String,
    },
    /// The in-process limiter could not be built.
    #[error("cannot build the limiter of policy {name:?}: {source}")]
    Build {
        /// The policy's name.
        name: String,
        /// The builder's error.
        #[source]
        source: BuildError,
    },
}

/// What the layer does with a request whose key the extractor reports
/// [missing](Extracted::Missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingKeyOutcome {
    /// Refuse the request with this status (a 4xx, typically 400 or 401) and a problem+json
    /// body saying why. The default, with 400. The layer's builder rejects a status that is
    /// not a client error.
    Reject(StatusCode),
    /// Charge every keyless request to one bucket shared by all of them.
    Shared,
    /// Let the request through without this policy.
    Skip,
}

impl Default for MissingKeyOutcome {
    fn default() -> Self {
        MissingKeyOutcome::Reject(StatusCode::BAD_REQUEST)
    }
}

/// A request's cost under a policy.
#[derive(Clone)]
pub(crate) enum Cost {
    Fixed(u64),
    Computed(Arc<dyn Fn(&Parts) -> u64 + Send + Sync + 'static>),
}

impl Cost {
    #[inline]
    pub(crate) fn of(&self, parts: &Parts) -> u64 {
        match self {
            Cost::Fixed(c) => *c,
            Cost::Computed(f) => f(parts),
        }
    }
}

/// Decides from the response head whether a charge-by-outcome policy charges the request.
pub(crate) type ChargeIf = Arc<dyn Fn(&http::response::Parts) -> bool + Send + Sync + 'static>;

/// A named limit: which requests it covers, whom it charges, how much, and with what limiter.
///
/// `L` is any [`AsyncLimiter`] over byte keys (an in-process `RateLimiter<[u8]>`, Redis,
/// Memcached, a `Failover`, or an `Arc` of one to share a limiter between policies). Every
/// policy of one layer has the same `L`.
///
/// Defaults: every request ([`Rule::always`]), cost 1, charged before the handler, a missing
/// key is 400. A key extractor is required ([`key`](Self::key) or [`global`](Self::global)).
#[derive(Clone)]
pub struct Policy<L> {
    pub(crate) name: Arc<str>,
    pub(crate) rate: Rate,
    /// The policy's `RateLimit-Policy` member, built once: every response clones it.
    pub(crate) policy_item: HeaderValue,
    pub(crate) limiter: L,
    pub(crate) key: Option<Arc<dyn KeyExtractor>>,
    pub(crate) rule: Rule,
    pub(crate) cost: Cost,
    pub(crate) charge_if: Option<ChargeIf>,
    pub(crate) missing: MissingKeyOutcome,
}

/// Checks that `name` can be a structured-field string without escapes: printable ASCII, no
/// `"` or `\`, not empty.
fn validate_name(name: &str) -> Result<(), PolicyError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if !name.is_ascii() {
        Some("it is not ASCII")
    } else if name.bytes().any(|b| b == b'"' || b == b'\\') {
        Some("it contains `\"` or `\\`")
    } else if name.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        Some("it contains a control character")
    } else {
        None
    };
    match why {
        Some(why) => Err(PolicyError::Name {
            name: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

impl<L: AsyncLimiter<[u8]>> Policy<L> {
    /// A policy called `name` enforcing `rate` with `limiter`.
    ///
    /// `rate` is what the headers announce (`q` and `w`); it should be the rate `limiter` was
    /// built with. (With a burst above the rate's limit, `r` can exceed `q`: the burst is extra
    /// room on top of the sustained quota.) It is a [`Rate`] or a string in the rate parser's syntax (`"100/minute"`,
    /// `"20 per 2 mins"`: limit first, then the period).
    ///
    /// # Errors
    ///
    /// [`PolicyError::Name`] for a name that is empty, not ASCII, or holds `"`, `\` or a
    /// control character; [`PolicyError::Rate`] for a rate string that does not parse;
    /// [`PolicyError::Unlimited`] for `0/0`.
    pub fn new(name: &str, rate: impl IntoRate, limiter: L) -> Result<Self, PolicyError> {
        validate_name(name)?;
        let rate = rate.into_rate().map_err(|source| PolicyError::Rate {
            name: name.to_owned(),
            source,
        })?;
        if rate.is_unlimited() {
            return Err(PolicyError::Unlimited {
                name: name.to_owned(),
            });
        }
        // A validated name is printable ASCII without `"` or `\`, so the member is always a
        // valid header value.
        let policy_item =
            HeaderValue::try_from(policy_item(name, rate)).map_err(|_| PolicyError::Name {
                name: name.to_owned(),
                why: "it cannot go into a header",
            })?;
        Ok(Policy {
            name: name.into(),
            rate,
            policy_item,
            limiter,
            key: None,
            rule: Rule::always(),
            cost: Cost::Fixed(1),
            charge_if: None,
            missing: MissingKeyOutcome::default(),
        })
    }

    /// The key extractor: which bucket each request is charged to.
    pub fn key(mut self, extractor: impl KeyExtractor) -> Self {
        self.key = Some(Arc::new(extractor));
        self
    }

    /// One bucket for every request this policy covers (a service-wide limit).
    pub fn global(self) -> Self {
        self.key(|_: &Parts| Extracted::Key(HttpKey::new()))
    }

    /// Which requests the policy covers (default: all).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rule = rule;
        self
    }

    /// A fixed cost per request (default 1). A cost of 0 never denies.
    pub fn cost(mut self, cost: u64) -> Self {
        self.cost = Cost::Fixed(cost);
        self
    }

    /// A cost computed from the request head (method, path, headers such as
    /// `Content-Length`). A cost larger than the limit can ever admit is denied with 429 and
    /// no `Retry-After`.
    pub fn cost_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> u64 + Send + Sync + 'static,
    {
        self.cost = Cost::Computed(Arc::new(f));
        self
    }

    /// Charge by outcome: before the handler the policy only looks (a request finding less
    /// left than it costs is denied); after the handler it charges the request only if `f`
    /// says so of the response head (for example, only failed logins:
    /// `|res| res.status == 401`).
    ///
    /// The charge is made when the response head is ready, before it is sent, so its
    /// `RateLimit` header shows it. The limit bounds the outcomes counted, not the attempts in
    /// flight: requests on one key that look at the same time all see the same room and all
    /// go on, and afterwards only the charges that still fit are recorded. Sequential requests
    /// are bounded exactly. (A look that comes up short is confirmed with a real check, which
    /// charges the request up front in the rare case that the key refilled in between.)
    pub fn charge_if<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::response::Parts) -> bool + Send + Sync + 'static,
    {
        self.charge_if = Some(Arc::new(f));
        self
    }

    /// What to do with a request that has no key (default: 400).
    pub fn on_missing_key(mut self, outcome: MissingKeyOutcome) -> Self {
        self.missing = outcome;
        self
    }

    /// The policy's name (as in the headers and the problem body).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The announced rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The limiter.
    pub fn limiter(&self) -> &L {
        &self.limiter
    }
}

impl Policy<RateLimiter<[u8]>> {
    /// A policy with its own in-process limiter (GCRA, burst equal to the limit, room for
    /// 100,000 keys), built from a rate string or a [`Rate`].
    ///
    /// ```
    /// use traffik::http::{Policy, PolicyError};
    ///
    /// let p = Policy::in_process("burst", "20 per 2 mins")?;
    /// assert_eq!(p.rate().limit(), 20);
    /// assert!(matches!(Policy::in_process("burst", "10/week"), Err(PolicyError::Rate { .. })));
    /// assert!(matches!(Policy::in_process("b\"", "10/s"), Err(PolicyError::Name { .. })));
    /// # Ok::<(), PolicyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Policy::new`], and [`PolicyError::Build`] if the limiter cannot be built.
    pub fn in_process(name: &str, rate: impl IntoRate) -> Result<Self, PolicyError> {
        Policy::in_process_with(name, rate, |b| b)
    }

    /// As [`in_process`](Self::in_process), with the limiter's builder adjusted by
    /// `configure` (algorithm, burst, capacity, overflow policy). The rate is set from `rate`
    /// after `configure` runs, so the announced rate is the enforced one.
    ///
    /// ```
    /// use traffik::http::Policy;
    /// use traffik::AlgorithmKind;
    ///
    /// let p = Policy::in_process_with("api", "100/minute", |b| {
    ///     b.algorithm(AlgorithmKind::TokenBucket).capacity(1_000_000)
    /// })?;
    /// assert_eq!(p.rate().limit(), 100);
    /// # Ok::<(), traffik::http::PolicyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`in_process`](Self::in_process).
    pub fn in_process_with(
        name: &str,
        rate: impl IntoRate,
        configure: impl FnOnce(Builder) -> Builder,
    ) -> Result<Self, PolicyError> {
        validate_name(name)?;
        let rate = rate.into_rate().map_err(|source| PolicyError::Rate {
            name: name.to_owned(),
            source,
        })?;
        let limiter = configure(crate::builder::builder())
            .rate(rate)
            .build::<[u8]>()
            .map_err(|source| PolicyError::Build {
                name: name.to_owned(),
                source,
            })?;
        Policy::new(name, rate, limiter)
    }
}

impl<L> fmt::Debug for Policy<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("rule", &self.rule)
            .field("charge_by_outcome", &self.charge_if.is_some())
            .field("missing", &self.missing)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain_ascii_without_quotes_or_backslashes() {
        for (bad, why) in [
            ("", "it is empty"),
            ("bürst", "it is not ASCII"),
            ("a\"b", "it contains `\"` or `\\`"),
            ("a\\b", "it contains `\"` or `\\`"),
            ("a\nb", "it contains a control character"),
        ] {
            match Policy::in_process(bad, "10/s") {
                Err(PolicyError::Name { name, why: w }) => {
                    assert_eq!(name, bad);
                    assert_eq!(w, why);
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert_eq!(
            Policy::in_process("per user;x", "10/s").unwrap().name(),
            "per user;x"
        );
    }

    #[test]
    fn rates_keep_the_parsers_meaning() {
        let p = Policy::in_process("b", "100/minute").unwrap();
        assert_eq!(p.rate(), Rate::per_minute(100));
        assert_eq!(p.policy_item, "\"b\";q=100;w=60");
        let e = Policy::in_process("b", "minute/100").unwrap_err();
        assert!(matches!(e, PolicyError::Rate { .. }), "{e:?}");
        assert!(e.to_string().starts_with("invalid rate for policy \"b\": "));
        assert!(matches!(
            Policy::in_process("b", "0/0"),
            Err(PolicyError::Unlimited { .. })
        ));
        // A builder setting the limiter cannot contradict: a zero capacity is a build error.
        let e = Policy::in_process_with("b", "10/s", |b| b.capacity(0)).unwrap_err();
        assert!(
            matches!(e, PolicyError::Build { ref name, .. } if name == "b"),
            "{e:?}"
        );
    }

    #[test]
    fn costs_are_fixed_or_computed_from_the_head() {
        let (parts, ()) = http::Request::post("/upload")
            .header("content-length", "4096")
            .body(())
            .unwrap()
            .into_parts();
        let p = Policy::in_process("b", "10/s").unwrap().cost(3);
        assert_eq!(p.cost.of(&parts), 3);
        let p = p.cost_fn(|parts| {
            parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map_or(1, |n| n.div_ceil(1024))
        });
        assert_eq!(p.cost.of(&parts), 4);
    }
}
