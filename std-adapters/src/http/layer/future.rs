//! [`ResponseFuture`]: the future of a [`RateLimit`](super::RateLimit) call.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body_util::Either;
use pin_project_lite::pin_project;
use traffik_core::AsyncLimiter;

use super::service::Post;
use crate::http::response::{Existing, PreparedHeaders, RateLimitBody};

type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<RateLimitBody<B>>, E>> + Send>>;

pin_project! {
    /// The response of a rate-limited call: the inner service's future (admitted on the spot),
    /// a finished response (denied, or a missing key rejected), or, when a key or a limiter
    /// had to be awaited, one boxed future.
    ///
    /// `F` is the inner future, `L` the limiter, `B` the inner response body and `E` the inner
    /// error.
    pub struct ResponseFuture<F, L, B, E> {
        #[pin]
        state: State<F, L, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, L, B, E> {
        // No policy applied: the inner response, untouched but for its body type.
        Passthrough { #[pin] fut: F },
        // Admitted on the spot with every decision final: the inner response and the headers
        // made at admission.
        Decorated { #[pin] fut: F, headers: Option<PreparedHeaders> },
        // Admitted on the spot with policies charged by outcome: the inner response, then
        // those charges and the headers.
        Inner { #[pin] fut: F, post: Option<Post<L>> },
        // Anything that had to wait on a key or a limiter.
        Boxed { fut: Boxed<B, E> },
        // Answered by the layer itself.
        Ready { res: Option<Response<RateLimitBody<B>>> },
    }
}

impl<F, L, B, E> ResponseFuture<F, L, B, E> {
    pub(crate) fn passthrough(fut: F) -> Self {
        ResponseFuture {
            state: State::Passthrough { fut },
        }
    }

    /// The inner future, then `headers` (if any) added to its response.
    pub(crate) fn decorated(fut: F, headers: Option<PreparedHeaders>) -> Self {
        match headers {
            None => Self::passthrough(fut),
            headers => ResponseFuture {
                state: State::Decorated { fut, headers },
            },
        }
    }

    pub(crate) fn inner(fut: F, post: Post<L>) -> Self {
        ResponseFuture {
            state: State::Inner {
                fut,
                post: Some(post),
            },
        }
    }

    pub(crate) fn boxed(fut: Boxed<B, E>) -> Self {
        ResponseFuture {
            state: State::Boxed { fut },
        }
    }

    pub(crate) fn ready(res: Response<RateLimitBody<B>>) -> Self {
        ResponseFuture {
            state: State::Ready { res: Some(res) },
        }
    }
}

impl<F, L, B, E> Future for ResponseFuture<F, L, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    L: AsyncLimiter<[u8]> + 'static,
    B: Send + 'static,
    E: 'static,
{
    type Output = Result<Response<RateLimitBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Passthrough { fut } => {
                    return Poll::Ready(ready!(fut.poll(cx)).map(|res| res.map(Either::Left)));
                }
                StateProj::Decorated { fut, headers } => {
                    let mut res = ready!(fut.poll(cx))?;
                    if let Some(headers) = headers.take() {
                        headers.write(res.headers_mut(), Existing::Append);
                    }
                    return Poll::Ready(Ok(res.map(Either::Left)));
                }
                StateProj::Inner { fut, post } => {
                    let res = ready!(fut.poll(cx))?;
                    let Some(mut post) = post.take() else {
                        // Polled again after completion: the contract allows anything but
                        // a panic is the least useful; answer with the response as is.
                        return Poll::Ready(Ok(res.map(Either::Left)));
                    };
                    let (mut head, body) = res.into_parts();
                    if post.has_deferred() {
                        post.owe(&head);
                        if !post.charge_now() {
                            // A charge must be awaited: finish in one boxed future.
                            let fut: Boxed<B, E> = Box::pin(async move {
                                post.charge().await;
                                post.decorate(&mut head.headers);
                                Ok(Response::from_parts(head, Either::Left(body)))
                            });
                            state.set(State::Boxed { fut });
                            continue;
                        }
                    }
                    post.decorate(&mut head.headers);
                    return Poll::Ready(Ok(Response::from_parts(head, Either::Left(body))));
                }
                StateProj::Boxed { fut } => return fut.as_mut().poll(cx),
                StateProj::Ready { res } => {
                    return match res.take() {
                        Some(res) => Poll::Ready(Ok(res)),
                        // Polled after completion.
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}
