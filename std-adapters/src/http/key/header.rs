//! Keys from a request header: its value ([`Header::new`]) or a bearer token
//! ([`Header::bearer`]).

use http::header::{HeaderName, InvalidHeaderName, AUTHORIZATION};
use http::request::Parts;

use super::{tag, Extracted, Extraction, HttpKey, KeyExtractor, MissingKey};

/// Keys a request by a header's value (an API key, a tenant id), or by the token of an
/// `Authorization: Bearer` credential.
///
/// With several lines of the header, the first counts (as with `HeaderMap::get`, which is
/// what handlers usually read). An absent or empty header gives [`Extracted::Missing`].
///
/// The value is the key as it is: with a shared store (Redis, Memcached) secrets such as
/// tokens end up as key names there. Where an authentication layer already maps the token to
/// an identity, key by that instead ([`FromExtension`](super::FromExtension)).
///
/// ```
/// use traffik::http::{Extracted, Extraction, Header, KeyExtractor};
///
/// let by_token = Header::bearer();
/// let (parts, ()) = http::Request::get("/")
///     .header("authorization", "bearer abc123")
///     .body(())?
///     .into_parts();
/// let Extraction::Ready(Extracted::Key(key)) = by_token.extract(&parts) else { panic!() };
/// assert!(key.as_bytes().ends_with(b"abc123"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    name: HeaderName,
    bearer: bool,
}

impl Header {
    /// Keys by the value of header `name`.
    pub fn new(name: HeaderName) -> Self {
        Header {
            name,
            bearer: false,
        }
    }

    /// Keys by the value of the header named `name`; errors if it is not a valid header
    /// name.
    pub fn try_new(name: &str) -> Result<Self, InvalidHeaderName> {
        Ok(Header::new(name.parse()?))
    }

    /// Keys by the token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC
    /// 6750). Another scheme, or no token, gives [`Extracted::Missing`].
    pub fn bearer() -> Self {
        Header {
            name: AUTHORIZATION,
            bearer: true,
        }
    }

    /// The header read.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }
}

impl KeyExtractor for Header {
    fn extract(&self, parts: &Parts) -> Extraction {
        let Some(value) = parts.headers.get(&self.name) else {
            return missing(format!("header `{}` is absent", self.name));
        };
        let value = value.as_bytes();
        if self.bearer {
            return match bearer_token(value) {
                Some(token) => {
                    let mut key = HttpKey::new();
                    key.extend_from_slice(&[tag::BEARER]);
                    key.extend_from_slice(token);
                    Extraction::Ready(Extracted::Key(key))
                }
                None => missing("`authorization` is not a Bearer credential with a token"),
            };
        }
        if value.is_empty() {
            return missing(format!("header `{}` is empty", self.name));
        }
        let mut key = HttpKey::new();
        key.extend_from_slice(&[tag::HEADER]);
        // The name is part of the key: `x-api-key: 7` and `x-tenant: 7` are different buckets.
        key.push_part(self.name.as_str().as_bytes());
        key.extend_from_slice(value);
        Extraction::Ready(Extracted::Key(key))
    }
}

fn missing(why: impl Into<std::borrow::Cow<'static, str>>) -> Extraction {
    Extraction::Ready(Extracted::Missing(MissingKey::new(why)))
}

/// The token of a `Bearer` credential: the scheme (any case), one or more spaces, then a
/// non-empty token (trailing whitespace dropped).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    let start = rest.iter().position(|&b| b != b' ')?;
    if start == 0 {
        // `Bearerx...`: another scheme that starts with the same letters.
        return None;
    }
    let token = &rest[start..];
    let end = token.iter().rposition(|&b| b != b' ' && b != b'\t')? + 1;
    Some(&token[..end])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn extract(e: &Header, name: &str, value: Option<&[u8]>) -> Extracted {
        let mut b = http::Request::get("/");
        if let Some(v) = value {
            b = b.header(name, http::HeaderValue::from_bytes(v).unwrap());
        }
        match e.extract(&b.body(()).unwrap().into_parts().0) {
            Extraction::Ready(x) => x,
            Extraction::Pending(_) => panic!("header extractors answer at once"),
        }
    }

    #[test]
    fn header_value_keys_include_the_name() {
        let api = Header::try_new("X-Api-Key").unwrap();
        assert_eq!(api.name(), "x-api-key");
        assert_eq!(
            extract(&api, "x-api-key", Some(b"k1\xff")),
            Extracted::Key(HttpKey::from_bytes(b"\x03\0\0\0\x09x-api-keyk1\xff"))
        );
        let tenant = Header::new(HeaderName::from_static("x-tenant"));
        assert_ne!(
            extract(&api, "x-api-key", Some(b"7")),
            extract(&tenant, "x-tenant", Some(b"7"))
        );
        assert_eq!(
            extract(&api, "x-other", Some(b"7")),
            Extracted::Missing(MissingKey::new("header `x-api-key` is absent"))
        );
        assert_eq!(
            extract(&api, "x-api-key", Some(b"")),
            Extracted::Missing(MissingKey::new("header `x-api-key` is empty"))
        );
        assert!(Header::try_new("bad name").is_err());
    }

    #[test]
    fn bearer_tokens() {
        let b = Header::bearer();
        for (value, token) in [
            (&b"Bearer abc.def-ghi"[..], &b"abc.def-ghi"[..]),
            (b"bearer   tok ", b"tok"),
            (b"BEARER x", b"x"),
        ] {
            let mut want = vec![tag::BEARER];
            want.extend_from_slice(token);
            assert_eq!(
                extract(&b, "authorization", Some(value)),
                Extracted::Key(HttpKey::from_bytes(&want)),
                "{}",
                value.escape_ascii()
            );
        }
        for value in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer   \t",
            b"Bearerabc",
            b"",
        ] {
            assert!(
                matches!(
                    extract(&b, "authorization", Some(value)),
                    Extracted::Missing(_)
                ),
                "{}",
                value.escape_ascii()
            );
        }
        assert!(matches!(
            extract(&b, "x-other", Some(b"Bearer t")),
            Extracted::Missing(_)
        ));
        // A raw Authorization header key differs from the bearer key of the same token.
        let raw = Header::new(AUTHORIZATION);
        assert_ne!(
            extract(&raw, "authorization", Some(b"Bearer t")),
            extract(&b, "authorization", Some(b"Bearer t"))
        );
    }
}
