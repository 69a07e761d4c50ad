//! Per-message WebSocket throttling (feature `axum` for axum's `WebSocket`, feature
//! `tungstenite` for tokio-tungstenite's `WebSocketStream`).
//!
//! A [`MessageThrottle`] holds the limiter and the rules (what a message costs, what a
//! rejection does); each socket gets a [`ConnectionThrottle`] charged to a key of its own
//! ([`MessageThrottle::per_connection`]) or to an identity shared by all its connections
//! ([`MessageThrottle::connection`]). Wrap the socket in [`Throttled`] and read only admitted
//! messages:
//!
//! * text and binary messages are charged ([`Cost`]); ping, pong and close never are;
//! * a rejected message is dropped and the client gets
//!   `{"type":"rate_limit","error":"Too many messages","retry_after":N}` (whole seconds,
//!   rounded up), and the socket stays open;
//! * after K rejections in a row the connection is closed with 1008 "policy violation";
//! * a limiter failure follows [`OnLimiterError`]; a message that costs more than the limit can
//!   ever admit closes with 1009.
//!
//! Without the wrapper, [`ConnectionThrottle::check`] judges one message on the spot and
//! returns a [`Verdict`] to act on.
//!
//! An axum chat route (the README's example, compiled here):
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # fn app() -> Result<axum::Router, Box<dyn std::error::Error>> {
//! use axum::extract::ws::{WebSocket, WebSocketUpgrade};
//! use axum::extract::State;
//! use axum::{routing::get, Router};
//! use traffik::http::ws::{MessageThrottle, Throttled};
//!
//! // 10 messages a second per connection; after 5 rejections in a row, close with 1008.
//! let throttle = MessageThrottle::builder(traffik::builder().rate("10/s").build::<[u8]>()?)
//!     .max_violations(5)
//!     .build()?;
//!
//! async fn chat(
//!     ws: WebSocketUpgrade,
//!     State(throttle): State<MessageThrottle<traffik::RateLimiter<[u8]>>>,
//! ) -> axum::response::Response {
//!     ws.on_upgrade(move |socket: WebSocket| async move {
//!         // Or `throttle.connection(user_key)` to share one budget across a user's connections.
//!         let mut socket = Throttled::new(socket, throttle.per_connection());
//!         while let Some(Ok(msg)) = socket.recv().await {
//!             if socket.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//! let app = Router::new().route("/chat", get(chat)).with_state(throttle);
//! # Ok(app)
//! # }
//! ```

mod message;
mod notice;
mod stream;
mod throttle;

pub use message::WsMessage;
pub use notice::{retry_after_secs, CloseReason, CloseReasonError, Notice, MAX_CLOSE_REASON};
pub use stream::Throttled;
pub use throttle::{
    Action, ConnectionThrottle, Cost, MessageThrottle, MessageThrottleBuilder, OnLimiterError,
    Verdict, WsConfigError, CONNECTION_KEY_TAG, DEFAULT_MAX_VIOLATIONS,
};

#[cfg(test)]
mod tests;
