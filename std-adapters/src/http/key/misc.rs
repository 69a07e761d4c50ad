//! Keys from the rest of a request: an identity put in its extensions ([`FromExtension`]),
//! its route ([`MatchedRoute`]) or path ([`RequestPath`]), an async lookup ([`from_async_fn`]), or
//! one key for all ([`Shared`]).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use http::request::Parts;

use super::{tag, Extracted, Extraction, HttpKey, KeyExtractor, MissingKey};

/// A key made of one tag byte and `bytes`.
fn tagged(tag: u8, bytes: &[u8]) -> HttpKey {
    let mut key = HttpKey::new();
    key.extend_from_slice(&[tag]);
    key.extend_from_slice(bytes);
    key
}

/// Keys a request by a value an earlier layer put in its extensions, typically the identity
/// an authentication middleware established (a user id, a tenant, an API client).
///
/// No such extension gives [`Extracted::Missing`]: the authentication layer must run before
/// the rate limiter. The key is a tag byte then the closure's bytes; if two `FromExtension`
/// extractors of different types share one limiter, make their closures' keys distinct (a
/// prefix) so that user `7` and tenant `7` are not one bucket.
///
/// ```
/// use traffik::http::{Extracted, Extraction, FromExtension, HttpKey, KeyExtractor};
///
/// #[derive(Clone)]
/// struct UserId(u64);
///
/// let by_user = FromExtension::<UserId>::new(|u| HttpKey::from_bytes(&u.0.to_be_bytes()));
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(UserId(42));
/// let (parts, ()) = req.into_parts();
/// assert!(matches!(by_user.extract(&parts), Extraction::Ready(Extracted::Key(_))));
/// ```
pub struct FromExtension<T> {
    key: Arc<dyn Fn(&T) -> HttpKey + Send + Sync>,
    // `fn() -> T`: the extractor holds no `T`, so it is Send and Sync whatever `T` is.
    _t: PhantomData<fn() -> T>,
}

impl<T: Send + Sync + 'static> FromExtension<T> {
    /// Keys by `key(extension)` where the request has an extension of type `T`.
    pub fn new(key: impl Fn(&T) -> HttpKey + Send + Sync + 'static) -> Self {
        FromExtension {
            key: Arc::new(key),
            _t: PhantomData,
        }
    }
}

impl<T> Clone for FromExtension<T> {
    fn clone(&self) -> Self {
        FromExtension {
            key: Arc::clone(&self.key),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for FromExtension<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FromExtension<{}>", std::any::type_name::<T>())
    }
}

impl<T: Send + Sync + 'static> KeyExtractor for FromExtension<T> {
    fn extract(&self, parts: &Parts) -> Extraction {
        Extraction::Ready(match parts.extensions.get::<T>() {
            Some(value) => Extracted::Key(tagged(tag::EXTENSION, (self.key)(value).as_bytes())),
            None => Extracted::Missing(MissingKey::new(format!(
                "no `{}` in the request extensions (does the layer that inserts it run before \
                 the rate limiter?)",
                std::any::type_name::<T>()
            ))),
        })
    }
}

/// Keys a request by the template of the axum route it matched (`/users/{id}`, not
/// `/users/7`): one bucket per endpoint, usually combined with a client key in a tuple
/// (see [`KeyExtractor`]'s implementations for tuples).
///
/// axum records the matched route when it routes, so the layer must run inside the `Router`
/// (`Router::layer` or `Router::route_layer`); outside it, or for a request no route matched,
/// the key is [`Extracted::Missing`].
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatchedRoute;

#[cfg(feature = "axum")]
impl KeyExtractor for MatchedRoute {
    fn extract(&self, parts: &Parts) -> Extraction {
        Extraction::Ready(match parts.extensions.get::<axum::extract::MatchedPath>() {
            Some(route) => Extracted::Key(tagged(tag::ROUTE, route.as_str().as_bytes())),
            None => Extracted::Missing(MissingKey::new(
                "no matched axum route (the request matched no route, or the layer runs \
                     outside the Router)",
            )),
        })
    }
}

/// Keys a request by its raw URI path (no query). Every distinct path is its own bucket,
/// so clients choose how many there are: prefer `MatchedRoute` with axum, or pair
/// the path with a client key.
///
/// ```
/// use traffik::http::{Extracted, Extraction, KeyExtractor, RequestPath};
///
/// let (parts, ()) = http::Request::get("/a/b?c=d").body(())?.into_parts();
/// let Extraction::Ready(Extracted::Key(key)) = RequestPath.extract(&parts) else { panic!() };
/// assert!(key.as_bytes().ends_with(b"/a/b"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestPath;

impl KeyExtractor for RequestPath {
    fn extract(&self, parts: &Parts) -> Extraction {
        Extraction::Ready(Extracted::Key(tagged(
            tag::PATH,
            parts.uri.path().as_bytes(),
        )))
    }
}

/// One key for every request: a single bucket shared by all clients (a global ceiling in
/// front of a fragile backend).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shared;

impl KeyExtractor for Shared {
    fn extract(&self, _parts: &Parts) -> Extraction {
        Extraction::Ready(Extracted::Key(HttpKey::from_bytes(&[tag::SHARED])))
    }
}

/// An extractor from an async function; see [`from_async_fn`].
#[derive(Clone)]
pub struct AsyncFn<F>(F);

impl<F> fmt::Debug for AsyncFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AsyncFn(..)")
    }
}

/// An extractor that looks its key up asynchronously (a session store, an API-key database).
///
/// The function gets the request head by reference and returns a `'static` future: copy what
/// the lookup needs out of `parts` before the `async move` block. Its key is used as it is
/// (no tag byte), like a closure's.
///
/// ```
/// use traffik::http::{from_async_fn, Extracted, HttpKey, MissingKey};
///
/// let by_account = from_async_fn(|parts| {
///     let api_key = parts.headers.get("x-api-key").cloned();
///     async move {
///         match api_key {
///             // A real lookup would await a database here.
///             Some(k) => Extracted::Key(HttpKey::from_bytes(k.as_bytes())),
///             None => Extracted::Missing(MissingKey::new("no x-api-key")),
///         }
///     }
/// });
/// # let _ = by_account;
/// ```
pub fn from_async_fn<F, Fut>(f: F) -> AsyncFn<F>
where
    F: Fn(&Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Extracted> + Send + 'static,
{
    AsyncFn(f)
}

impl<F, Fut> KeyExtractor for AsyncFn<F>
where
    F: Fn(&Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Extracted> + Send + 'static,
{
    fn extract(&self, parts: &Parts) -> Extraction {
        Extraction::Pending(Box::pin((self.0)(parts)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ready(e: Extraction) -> Extracted {
        match e {
            Extraction::Ready(x) => x,
            Extraction::Pending(_) => panic!("expected an answer at once"),
        }
    }

    #[derive(Clone)]
    struct Tenant(&'static str);

    #[test]
    fn from_extension_path_and_shared() {
        let by_tenant = FromExtension::<Tenant>::new(|t| HttpKey::from_bytes(t.0.as_bytes()));
        let mut req = http::Request::get("/x/y?q=1").body(()).unwrap();
        let bare = ready(by_tenant.extract(&http::Request::new(()).into_parts().0));
        let Extracted::Missing(why) = bare else {
            panic!("no extension must be missing")
        };
        assert!(why.reason().contains("Tenant"), "{}", why.reason());
        req.extensions_mut().insert(Tenant("acme"));
        let (parts, ()) = req.into_parts();
        assert_eq!(
            ready(by_tenant.clone().extract(&parts)),
            Extracted::Key(HttpKey::from_bytes(b"\x05acme"))
        );
        assert_eq!(
            ready(RequestPath.extract(&parts)),
            Extracted::Key(HttpKey::from_bytes(b"\x07/x/y"))
        );
        assert_eq!(
            ready(Shared.extract(&parts)),
            Extracted::Key(HttpKey::from_bytes(b"\x09"))
        );
        assert!(format!("{by_tenant:?}").contains("Tenant"));
    }

    #[tokio::test]
    async fn async_fn_answers_later() {
        let e = from_async_fn(|parts| {
            let path = parts.uri.path().to_owned();
            async move { Extracted::Key(HttpKey::from_bytes(path.as_bytes())) }
        });
        let (parts, ()) = http::Request::get("/p").body(()).unwrap().into_parts();
        let Extraction::Pending(fut) = e.extract(&parts) else {
            panic!("async extractors are pending")
        };
        assert_eq!(fut.await, Extracted::Key(HttpKey::from_bytes(b"/p")));
    }
}
