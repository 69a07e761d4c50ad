//! Composite keys: a tuple of extractors is an extractor whose key joins its parts'.

use http::request::Parts;

use super::{tag, Extracted, Extraction, HttpKey, KeyExtractor, MissingKey};

/// Joins the parts' answers in order: a tag byte, then each part's key with
/// [`HttpKey::push_part`] (length-prefixed, so boundaries cannot collide).
struct Joiner {
    key: HttpKey,
    exempt: bool,
    missing: Option<MissingKey>,
}

impl Joiner {
    fn new() -> Self {
        let mut key = HttpKey::new();
        key.extend_from_slice(&[tag::COMPOSITE]);
        Joiner {
            key,
            exempt: false,
            missing: None,
        }
    }

    fn push(&mut self, part: Extracted) {
        match part {
            Extracted::Key(k) => self.key.push_part(k.as_bytes()),
            Extracted::Exempt => self.exempt = true,
            Extracted::Missing(why) => {
                self.missing.get_or_insert(why);
            }
        }
    }

    fn finish(self) -> Extracted {
        if self.exempt {
            Extracted::Exempt
        } else if let Some(why) = self.missing {
            Extracted::Missing(why)
        } else {
            Extracted::Key(self.key)
        }
    }
}

/// Every part's answer combined: at once if all were ready (no allocation beyond the key),
/// else one future awaiting the pending parts in order.
fn combine<const N: usize>(parts: [Extraction; N]) -> Extraction {
    if parts.iter().any(|p| matches!(p, Extraction::Pending(_))) {
        return Extraction::Pending(Box::pin(async move {
            let mut joined = Joiner::new();
            for part in parts {
                joined.push(match part {
                    Extraction::Ready(x) => x,
                    Extraction::Pending(later) => later.await,
                });
            }
            joined.finish()
        }));
    }
    let mut joined = Joiner::new();
    for part in parts {
        if let Extraction::Ready(x) = part {
            joined.push(x);
        }
    }
    Extraction::Ready(joined.finish())
}

macro_rules! tuple_extractor {
    ($($part:ident),+) => {
        /// A composite key: the parts' keys joined in order. If any part is
        /// [`Extracted::Exempt`] the request is exempt (an allowlisted client is never
        /// refused, even for a missing key); otherwise if any part is
        /// [`Extracted::Missing`] the key is missing (the first part's reason).
        impl<$($part: KeyExtractor),+> KeyExtractor for ($($part,)+) {
            #[allow(non_snake_case)]
            fn extract(&self, parts: &Parts) -> Extraction {
                let ($($part,)+) = self;
                combine([$($part.extract(parts)),+])
            }
        }
    };
}

tuple_extractor!(A, B);
tuple_extractor!(A, B, C);
tuple_extractor!(A, B, C, D);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::http::key::{from_async_fn, Header, RequestPath, Shared};

    fn ready(e: Extraction) -> Extracted {
        match e {
            Extraction::Ready(x) => x,
            Extraction::Pending(_) => panic!("expected an answer at once"),
        }
    }

    fn exempt(_: &Parts) -> Extracted {
        Extracted::Exempt
    }

    fn missing(_: &Parts) -> Extracted {
        Extracted::Missing(MissingKey::new("first"))
    }

    #[test]
    fn parts_are_joined_and_exempt_beats_missing() {
        let (parts, ()) = http::Request::get("/r")
            .header("x-t", "7")
            .body(())
            .unwrap()
            .into_parts();
        let both = (RequestPath, Header::try_new("x-t").unwrap());
        let Extracted::Key(key) = ready(both.extract(&parts)) else {
            panic!("both parts have keys")
        };
        let mut want = vec![tag::COMPOSITE, 0, 0, 0, 3, tag::PATH, b'/', b'r'];
        want.extend_from_slice(&[0, 0, 0, 9, tag::HEADER, 0, 0, 0, 3]);
        want.extend_from_slice(b"x-t7");
        assert_eq!(key.as_bytes(), &want[..]);
        // Order matters.
        assert_ne!(
            ready((RequestPath, Shared).extract(&parts)),
            ready((Shared, RequestPath).extract(&parts))
        );
        assert_eq!(
            ready((RequestPath, missing, Shared).extract(&parts)),
            Extracted::Missing(MissingKey::new("first"))
        );
        let second = |_: &Parts| Extracted::Missing(MissingKey::new("second"));
        assert_eq!(
            ready((missing, second).extract(&parts)),
            Extracted::Missing(MissingKey::new("first"))
        );
        assert_eq!(
            ready((missing, RequestPath, Shared, exempt).extract(&parts)),
            Extracted::Exempt
        );
    }

    #[tokio::test]
    async fn a_pending_part_makes_the_whole_pending() {
        let later = from_async_fn(|_| async { Extracted::Key(HttpKey::from_bytes(b"db")) });
        let (parts, ()) = http::Request::get("/r").body(()).unwrap().into_parts();
        let Extraction::Pending(fut) = (Shared, later).extract(&parts) else {
            panic!("one part is async")
        };
        let Extracted::Key(key) = fut.await else {
            panic!("both parts have keys")
        };
        assert_eq!(key.as_bytes(), b"\x08\0\0\0\x01\x09\0\0\0\x02db");
        let later = from_async_fn(|_| async { Extracted::Key(HttpKey::from_bytes(b"db")) });
        let Extraction::Pending(fut) = (later, exempt).extract(&parts) else {
            panic!("one part is async")
        };
        assert_eq!(fut.await, Extracted::Exempt);
    }
}
