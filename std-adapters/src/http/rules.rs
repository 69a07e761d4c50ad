//! Which requests a policy applies to (and which bypass the layer): [`Rule`]s on the path, the
//! method, axum's matched route, or any predicate, combined with [`Rule::any`], [`Rule::all`]
//! and [`Rule::not`].
//!
//! Rules look at the request head only and never allocate when matching.
//!
//! ```
//! use http::Method;
//! use traffik::http::Rule;
//!
//! // POSTs under /api/, except the health check.
//! let rule = Rule::all([
//!     Rule::method(Method::POST),
//!     Rule::prefix("/api"),
//!     Rule::not(Rule::path("/api/health")),
//! ]);
//! let head = |m: Method, p: &str| http::Request::builder().method(m).uri(p).body(()).unwrap().into_parts().0;
//! assert!(rule.matches(&head(Method::POST, "/api/items")));
//! assert!(!rule.matches(&head(Method::GET, "/api/items")));
//! assert!(!rule.matches(&head(Method::POST, "/api/health")));
//! assert!(!rule.matches(&head(Method::POST, "/apiary")));
//! ```

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::Method;
use smallvec::SmallVec;

/// Why a rule could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The glob pattern does not parse.
    #[error("invalid glob pattern `{pattern}`: {source}")]
    Glob {
        /// The pattern as given.
        pattern: String,
        /// What globset reported.
        #[source]
        source: globset::Error,
    },
    /// The regular expression does not parse (or is too large).
    #[error("invalid regular expression `{pattern}`: {source}")]
    Regex {
        /// The pattern as given.
        pattern: String,
        /// What the regex crate reported.
        #[source]
        source: regex::Error,
    },
}

/// A predicate on the request head.
type Predicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync + 'static>;

#[derive(Clone)]
enum Kind {
    Always,
    Path(Arc<str>),
    Prefix(Arc<str>),
    Glob(Arc<globset::GlobMatcher>),
    Regex(regex::Regex),
    #[cfg(feature = "axum")]
    Route(Arc<str>),
    Methods(SmallVec<[Method; 2]>),
    Predicate(Predicate),
    Any(Arc<[Rule]>),
    All(Arc<[Rule]>),
    Not(Arc<Rule>),
}

/// Which requests something applies to. Cheap to clone (patterns are shared).
#[derive(Clone)]
pub struct Rule(Kind);

impl Rule {
    /// Every request.
    pub fn always() -> Rule {
        Rule(Kind::Always)
    }

    /// Requests whose path is exactly `path` (the query is not part of the path).
    pub fn path(path: &str) -> Rule {
        Rule(Kind::Path(path.into()))
    }

    /// Requests whose path is `prefix` or lies under it, segment by segment: `"/api"` matches
    /// `/api` and `/api/items` but not `/apiary`. A prefix ending in `/` matches only paths
    /// under it (`"/api/"` does not match `/api`).
    pub fn prefix(prefix: &str) -> Rule {
        Rule(Kind::Prefix(prefix.into()))
    }

    /// Requests whose path matches a glob: `*` and `?` stay within one segment, `**` spans
    /// any number of segments, `{a,b}` and `[...]` work as usual (`"/users/*/posts"`,
    /// `"/static/**"`).
    ///
    /// # Errors
    ///
    /// [`RuleError::Glob`] if the pattern does not parse.
    pub fn glob(pattern: &str) -> Result<Rule, RuleError> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|source| RuleError::Glob {
                pattern: pattern.to_owned(),
                source,
            })?;
        Ok(Rule(Kind::Glob(Arc::new(glob.compile_matcher()))))
    }

    /// Requests whose path the regular expression matches (anywhere, unless anchored with
    /// `^` and `$`).
    ///
    /// # Errors
    ///
    /// [`RuleError::Regex`] if the expression does not parse.
    pub fn regex(pattern: &str) -> Result<Rule, RuleError> {
        regex::Regex::new(pattern)
            .map(|re| Rule(Kind::Regex(re)))
            .map_err(|source| RuleError::Regex {
                pattern: pattern.to_owned(),
                source,
            })
    }

    /// Requests that axum routed to this route template, as written in the router
    /// (`"/users/{id}"`), read from axum's `MatchedPath` extension. A request with no matched
    /// path (a layer outside the router, or a fallback) does not match.
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn route(template: &str) -> Rule {
        Rule(Kind::Route(template.into()))
    }

    /// Requests with this method.
    pub fn method(method: Method) -> Rule {
        Rule(Kind::Methods(smallvec::smallvec![method]))
    }

    /// Requests with any of these methods.
    pub fn methods(methods: impl IntoIterator<Item = Method>) -> Rule {
        Rule(Kind::Methods(methods.into_iter().collect()))
    }

    /// Requests for which `f` returns true.
    pub fn predicate<F>(f: F) -> Rule
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        Rule(Kind::Predicate(Arc::new(f)))
    }

    /// Requests any of `rules` matches (none, for an empty list).
    pub fn any(rules: impl IntoIterator<Item = Rule>) -> Rule {
        Rule(Kind::Any(rules.into_iter().collect()))
    }

    /// Requests all of `rules` match (every request, for an empty list).
    pub fn all(rules: impl IntoIterator<Item = Rule>) -> Rule {
        Rule(Kind::All(rules.into_iter().collect()))
    }

    /// Requests `rule` does not match.
    #[allow(clippy::should_implement_trait)]
    pub fn not(rule: Rule) -> Rule {
        Rule(Kind::Not(Arc::new(rule)))
    }

    /// This rule and `other`.
    pub fn and(self, other: Rule) -> Rule {
        Rule::all([self, other])
    }

    /// This rule or `other`.
    pub fn or(self, other: Rule) -> Rule {
        Rule::any([self, other])
    }

    /// Whether the request head matches.
    pub fn matches(&self, parts: &Parts) -> bool {
        match &self.0 {
            Kind::Always => true,
            Kind::Path(p) => parts.uri.path() == &**p,
            Kind::Prefix(p) => prefix_matches(parts.uri.path(), p),
            Kind::Glob(g) => g.is_match(parts.uri.path()),
            Kind::Regex(re) => re.is_match(parts.uri.path()),
            #[cfg(feature = "axum")]
            Kind::Route(t) => parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .is_some_and(|m| m.as_str() == &**t),
            Kind::Methods(ms) => ms.contains(&parts.method),
            Kind::Predicate(f) => f(parts),
            Kind::Any(rs) => rs.iter().any(|r| r.matches(parts)),
            Kind::All(rs) => rs.iter().all(|r| r.matches(parts)),
            Kind::Not(r) => !r.matches(parts),
        }
    }
}

impl Default for Rule {
    fn default() -> Self {
        Rule::always()
    }
}

fn prefix_matches(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Always => f.write_str("Always"),
            Kind::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Kind::Prefix(p) => f.debug_tuple("Prefix").field(p).finish(),
            Kind::Glob(g) => f.debug_tuple("Glob").field(&g.glob().glob()).finish(),
            Kind::Regex(re) => f.debug_tuple("Regex").field(&re.as_str()).finish(),
            #[cfg(feature = "axum")]
            Kind::Route(t) => f.debug_tuple("Route").field(t).finish(),
            Kind::Methods(ms) => f.debug_tuple("Methods").field(ms).finish(),
            Kind::Predicate(_) => f.write_str("Predicate(..)"),
            Kind::Any(rs) => f.debug_tuple("Any").field(rs).finish(),
            Kind::All(rs) => f.debug_tuple("All").field(rs).finish(),
            Kind::Not(r) => f.debug_tuple("Not").field(r).finish(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn head(method: Method, uri: &str) -> Parts {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn get(uri: &str) -> Parts {
        head(Method::GET, uri)
    }

    #[test]
    fn exact_paths_ignore_the_query() {
        let r = Rule::path("/login");
        assert!(r.matches(&get("/login?next=/")));
        assert!(!r.matches(&get("/login/")));
        assert!(!r.matches(&get("/log")));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let r = Rule::prefix("/api");
        assert!(r.matches(&get("/api")));
        assert!(r.matches(&get("/api/v1")));
        assert!(!r.matches(&get("/apiary")));
        assert!(!r.matches(&get("/")));
        let slash = Rule::prefix("/api/");
        assert!(slash.matches(&get("/api/v1")));
        assert!(!slash.matches(&get("/api")));
        assert!(Rule::prefix("/").matches(&get("/anything")));
    }

    #[test]
    fn globs_keep_single_stars_within_a_segment() {
        let r = Rule::glob("/users/*/posts").unwrap();
        assert!(r.matches(&get("/users/42/posts")));
        assert!(!r.matches(&get("/users/42/x/posts")));
        let deep = Rule::glob("/static/**").unwrap();
        assert!(deep.matches(&get("/static/css/site.css")));
        assert!(!deep.matches(&get("/api/static/x")));
        let alt = Rule::glob("/{a,b}/?").unwrap();
        assert!(alt.matches(&get("/b/x")));
        assert!(!alt.matches(&get("/c/x")));
    }

    #[test]
    fn bad_patterns_are_typed_errors() {
        let e = Rule::glob("/a/[b").unwrap_err();
        assert!(matches!(e, RuleError::Glob { ref pattern, .. } if pattern == "/a/[b"));
        assert!(e.to_string().starts_with("invalid glob pattern `/a/[b`"));
        let e = Rule::regex("^/v(").unwrap_err();
        assert!(matches!(e, RuleError::Regex { ref pattern, .. } if pattern == "^/v("));
    }

    #[test]
    fn regexes_search_unless_anchored() {
        let r = Rule::regex(r"^/v\d+/").unwrap();
        assert!(r.matches(&get("/v2/items")));
        assert!(!r.matches(&get("/x/v2/items")));
        assert!(Rule::regex("admin").unwrap().matches(&get("/x/admin/y")));
    }

    #[test]
    fn methods_and_combinators() {
        let writes = Rule::methods([Method::POST, Method::PUT]);
        assert!(writes.matches(&head(Method::PUT, "/")));
        assert!(!writes.matches(&head(Method::GET, "/")));
        let r = Rule::method(Method::GET).or(Rule::path("/x"));
        assert!(r.matches(&head(Method::DELETE, "/x")));
        assert!(!r.matches(&head(Method::DELETE, "/y")));
        let r = Rule::prefix("/a").and(Rule::not(Rule::path("/a/free")));
        assert!(r.matches(&get("/a/b")));
        assert!(!r.matches(&get("/a/free")));
        assert!(!Rule::any([]).matches(&get("/")));
        assert!(Rule::all([]).matches(&get("/")));
        let has_header = Rule::predicate(|p| p.headers.contains_key("x-internal"));
        let mut p = get("/");
        assert!(!has_header.matches(&p));
        p.headers
            .insert("x-internal", http::HeaderValue::from_static("1"));
        assert!(has_header.matches(&p));
    }

    #[cfg(feature = "axum")]
    #[test]
    fn routes_read_axums_matched_path() {
        let r = Rule::route("/users/{id}");
        // Outside a router there is no matched path.
        assert!(!r.matches(&get("/users/7")));
        assert_eq!(format!("{r:?}"), "Route(\"/users/{id}\")");
    }
}
