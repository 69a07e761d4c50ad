//! [`Throttled`]: a WebSocket whose reads yield only admitted messages.

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::{FusedStream, Stream, TryStream};
use futures_sink::Sink;
use pin_project_lite::pin_project;
use traffik_core::AsyncLimiter;

use super::message::WsMessage;
use super::notice::{CloseReason, Notice};
use super::throttle::{CheckFuture, ConnectionThrottle, Verdict};

pin_project! {
    /// A WebSocket (any `Stream<Item = Result<M, E>> + Sink<M, Error = E>`, such as axum's
    /// `WebSocket` or tokio-tungstenite's `WebSocketStream`) whose reads yield only the
    /// messages its [`ConnectionThrottle`] admits.
    ///
    /// A rejected message is swallowed; its notice is sent through the socket, which stays
    /// open. When the throttle closes (K violations in a row, a handler's choice, a limiter
    /// failure under `OnLimiterError::Close`), the Close frame is sent and the stream ends.
    /// Pending notices are sent and flushed before anything more is read, so a client that
    /// does not read its notices stops being read too. Writes pass through unthrottled.
    ///
    /// With an in-process limiter every message is judged on the spot (no future, no
    /// allocation); a network limiter's check is boxed, once per data message.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use axum::extract::ws::{WebSocket, WebSocketUpgrade};
    /// use axum::extract::State;
    /// use axum::response::Response;
    /// use traffik::http::ws::{MessageThrottle, Throttled};
    /// use traffik::RateLimiter;
    ///
    /// type Throttle = MessageThrottle<Arc<RateLimiter<[u8]>>>;
    ///
    /// async fn chat(ws: WebSocketUpgrade, State(throttle): State<Throttle>) -> Response {
    ///     ws.on_upgrade(move |socket: WebSocket| async move {
    ///         let mut socket = Throttled::new(socket, throttle.per_connection());
    ///         // Only admitted messages arrive; ping, pong and close always do.
    ///         while let Some(Ok(msg)) = socket.recv().await {
    ///             if socket.send(msg).await.is_err() {
    ///                 break;
    ///             }
    ///         }
    ///     })
    /// }
    ///
    /// let limiter: RateLimiter<[u8]> = traffik::builder().rate("10/s").build().unwrap();
    /// let throttle: Throttle = MessageThrottle::new(Arc::new(limiter));
    /// let app: axum::Router = axum::Router::new()
    ///     .route("/chat", axum::routing::get(chat))
    ///     .with_state(throttle);
    /// ```
    pub struct Throttled<S, L>
    where
        S: TryStream,
        L: AsyncLimiter<[u8]>,
    {
        #[pin]
        inner: S,
        conn: ConnectionThrottle<L>,
        // A data message waiting for a network limiter's answer, and that answer.
        held: Option<S::Ok>,
        checking: Option<CheckFuture<L::Error>>,
        // What is to be sent before reading on.
        notice: Option<Notice>,
        close: Option<CloseReason>,
        unflushed: bool,
        // A Close frame was handed to the sink: once it is flushed the stream ends.
        closing: bool,
        done: bool,
    }
}

impl<S, L> Throttled<S, L>
where
    S: TryStream,
    L: AsyncLimiter<[u8]>,
{
    /// Throttles `socket`'s reads with `conn`.
    pub fn new(socket: S, conn: ConnectionThrottle<L>) -> Self {
        Throttled {
            inner: socket,
            conn,
            held: None,
            checking: None,
            notice: None,
            close: None,
            unflushed: false,
            closing: false,
            done: false,
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The socket, mutably (reading from it directly bypasses the throttle).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// This connection's throttle (its key and violation count).
    pub fn connection(&self) -> &ConnectionThrottle<L> {
        &self.conn
    }

    /// The socket back; notices not yet sent are dropped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, M, E, L> Throttled<S, L>
where
    S: Stream<Item = Result<M, E>> + Sink<M, Error = E> + Unpin,
    M: WsMessage,
    L: AsyncLimiter<[u8]> + 'static,
{
    /// The next admitted message; `None` once the socket or the throttle has closed.
    pub async fn recv(&mut self) -> Option<Result<M, E>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Sends a message (unthrottled) and flushes it.
    pub async fn send(&mut self, msg: M) -> Result<(), E> {
        poll_fn(|cx| Pin::new(&mut *self).poll_ready(cx)).await?;
        Pin::new(&mut *self).start_send(msg)?;
        poll_fn(|cx| Pin::new(&mut *self).poll_flush(cx)).await
    }
}

/// Sends the pending notice, then the pending close, each after `poll_ready`, then flushes.
fn poll_outgoing<S, M, E>(
    mut inner: Pin<&mut S>,
    notice: &mut Option<Notice>,
    close: &mut Option<CloseReason>,
    unflushed: &mut bool,
    closing: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Result<(), E>>
where
    S: Sink<M, Error = E>,
    M: WsMessage,
{
    while notice.is_some() || close.is_some() {
        ready!(inner.as_mut().poll_ready(cx))?;
        let msg = match (notice.take(), close.take()) {
            (Some(n), c) => {
                // The close (if any) goes out after the notice, on the next turn.
                *close = c;
                M::text_message(n.into_text())
            }
            (None, Some(c)) => {
                *closing = true;
                let (code, reason) = c.into_parts();
                M::close_message(code, reason)
            }
            (None, None) => break,
        };
        inner.as_mut().start_send(msg)?;
        *unflushed = true;
    }
    if *unflushed {
        ready!(inner.as_mut().poll_flush(cx))?;
        *unflushed = false;
    }
    Poll::Ready(Ok(()))
}

impl<S, M, E, L> Stream for Throttled<S, L>
where
    S: Stream<Item = Result<M, E>> + Sink<M, Error = E>,
    M: WsMessage,
    L: AsyncLimiter<[u8]> + 'static,
{
    type Item = Result<M, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            if let Err(e) = ready!(poll_outgoing(
                this.inner.as_mut(),
                this.notice,
                this.close,
                this.unflushed,
                this.closing,
                cx
            )) {
                return Poll::Ready(Some(Err(e)));
            }
            if *this.closing {
                *this.done = true;
                return Poll::Ready(None);
            }
            // A network limiter's answer for the held message.
            if let Some(check) = this.checking.as_mut() {
                let result = ready!(check.as_mut().poll(cx));
                *this.checking = None;
                let msg = this.held.take();
                match this.conn.judge(result) {
                    Verdict::Pass => {
                        if let Some(msg) = msg {
                            return Poll::Ready(Some(Ok(msg)));
                        }
                    }
                    Verdict::Reject { notice, close } => {
                        *this.notice = notice;
                        *this.close = close;
                    }
                }
                continue;
            }
            let msg = match ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
            };
            let Some(cost) = this.conn.cost_of(&msg) else {
                return Poll::Ready(Some(Ok(msg)));
            };
            match this.conn.check_now(cost) {
                Some(result) => match this.conn.judge(result) {
                    Verdict::Pass => return Poll::Ready(Some(Ok(msg))),
                    // The rejected message is dropped here.
                    Verdict::Reject { notice, close } => {
                        *this.notice = notice;
                        *this.close = close;
                    }
                },
                None => {
                    *this.checking = Some(this.conn.check_boxed(cost));
                    *this.held = Some(msg);
                }
            }
        }
    }
}

impl<S, M, E, L> FusedStream for Throttled<S, L>
where
    S: Stream<Item = Result<M, E>> + Sink<M, Error = E>,
    M: WsMessage,
    L: AsyncLimiter<[u8]> + 'static,
{
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<S, M, E, L> Sink<M> for Throttled<S, L>
where
    S: Stream<Item = Result<M, E>> + Sink<M, Error = E>,
    M: WsMessage,
    L: AsyncLimiter<[u8]>,
{
    type Error = E;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        // Notices owed to the client go out first, so they keep their place in the stream.
        let mut this = self.project();
        ready!(poll_outgoing(
            this.inner.as_mut(),
            this.notice,
            this.close,
            this.unflushed,
            this.closing,
            cx
        ))?;
        this.inner.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<(), E> {
        self.project().inner.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let mut this = self.project();
        ready!(poll_outgoing(
            this.inner.as_mut(),
            this.notice,
            this.close,
            this.unflushed,
            this.closing,
            cx
        ))?;
        this.inner.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let mut this = self.project();
        ready!(poll_outgoing(
            this.inner.as_mut(),
            this.notice,
            this.close,
            this.unflushed,
            this.closing,
            cx
        ))?;
        this.inner.poll_close(cx)
    }
}

impl<S, L> fmt::Debug for Throttled<S, L>
where
    S: TryStream + fmt::Debug,
    L: AsyncLimiter<[u8]>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttled")
            .field("inner", &self.inner)
            .field("conn", &self.conn)
            .field("pending_notice", &self.notice)
            .field("pending_close", &self.close)
            .field("checking", &self.checking.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
