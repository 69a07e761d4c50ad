//! The WebSocket throttle end to end: a real axum server on loopback echoing through
//! `Throttled`, real tokio-tungstenite clients, and a manual clock for exact waits.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use traffik::http::ws::{
    Action, CloseReason, Cost, MessageThrottle, Notice, OnLimiterError, Throttled,
};
use traffik::http::HttpKey;
use traffik::{
    AnyAlgorithm, AsyncLimiter, CheckError, Decision, KeyedLimiter, ManualClock, OverflowPolicy,
};

type Table = KeyedLimiter<[u8], AnyAlgorithm, Arc<ManualClock>>;
type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn table(rate: &str) -> (Arc<Table>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let limiter = traffik::builder()
        .rate(rate)
        .capacity(1024)
        .build_with_clock(Arc::clone(&clock))
        .unwrap();
    (Arc::new(limiter), clock)
}

fn notice(secs: u64) -> String {
    Notice::rate_limit(Duration::from_secs(secs)).to_string()
}

/// Echoes every admitted text and binary message; answers an admitted ping with the text
/// "pinged" (so the test sees that the ping reached the application).
async fn echo<L: AsyncLimiter<[u8]> + 'static>(mut socket: Throttled<WebSocket, L>) {
    while let Some(Ok(msg)) = socket.recv().await {
        let reply = match msg {
            AxumMessage::Text(_) | AxumMessage::Binary(_) => msg,
            AxumMessage::Ping(_) => AxumMessage::text("pinged"),
            AxumMessage::Pong(_) => continue,
            AxumMessage::Close(_) => break,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

async fn per_connection<L: AsyncLimiter<[u8]> + 'static>(
    ws: WebSocketUpgrade,
    State(throttle): State<MessageThrottle<L>>,
) -> Response {
    ws.on_upgrade(move |socket| echo(Throttled::new(socket, throttle.per_connection())))
}

async fn per_user<L: AsyncLimiter<[u8]> + 'static>(
    ws: WebSocketUpgrade,
    Path(user): Path<String>,
    State(throttle): State<MessageThrottle<L>>,
) -> Response {
    let key = HttpKey::from_bytes(user.as_bytes());
    ws.on_upgrade(move |socket| echo(Throttled::new(socket, throttle.connection(key))))
}

/// Serves `/ws` (a budget per connection) and `/ws/{user}` (a budget per user) on loopback.
async fn serve<L: AsyncLimiter<[u8]> + 'static>(throttle: MessageThrottle<L>) -> SocketAddr {
    let app = Router::new()
        .route("/ws", get(per_connection::<L>))
        .route("/ws/{user}", get(per_user::<L>))
        .with_state(throttle);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn connect(addr: SocketAddr, path: &str) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .unwrap();
    ws
}

/// The next message that is not a pong (tungstenite answers pings itself).
async fn next(ws: &mut Client) -> Option<Message> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the server answers within 5 s");
        match msg {
            Some(Ok(Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            Some(Err(_)) | None => return None,
        }
    }
}

async fn expect_text(ws: &mut Client, want: &str) {
    match next(ws).await {
        Some(Message::Text(t)) => assert_eq!(t.as_str(), want),
        other => panic!("expected text {want:?}, got {other:?}"),
    }
}

async fn expect_close(ws: &mut Client, code: CloseCode, reason: &str) {
    match next(ws).await {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, code);
            assert_eq!(frame.reason.as_str(), reason);
        }
        other => panic!("expected close {code}, got {other:?}"),
    }
    // Nothing follows the Close frame.
    assert_eq!(next(ws).await, None);
}

async fn send(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

#[tokio::test]
async fn three_a_minute_echoes_three_then_notices_then_closes_with_1008() {
    let (limiter, clock) = table("3/minute");
    let throttle = MessageThrottle::builder(limiter)
        .max_violations(3)
        .build()
        .unwrap();
    let addr = serve(throttle).await;
    let mut ws = connect(addr, "/ws").await;

    for m in ["m1", "m2", "m3", "m4", "m5"] {
        send(&mut ws, m).await;
    }
    for m in ["m1", "m2", "m3"] {
        expect_text(&mut ws, m).await;
    }
    // 3 per minute: one comes back every 20 s.
    expect_text(&mut ws, &notice(20)).await;
    expect_text(
        &mut ws,
        r#"{"type":"rate_limit","error":"Too many messages","retry_after":20}"#,
    )
    .await;

    // Still open: 20 s later a message goes through (and ends the run of two violations).
    clock.advance(Duration::from_secs(20));
    send(&mut ws, "m6").await;
    expect_text(&mut ws, "m6").await;

    // 100 ms on, the wait is 19.9 s: rounded up.
    clock.advance(Duration::from_millis(100));
    for m in ["x1", "x2", "x3", "x4"] {
        send(&mut ws, m).await;
    }
    for _ in 0..3 {
        expect_text(&mut ws, &notice(20)).await;
    }
    expect_close(&mut ws, CloseCode::Policy, "policy violation").await;
}

#[tokio::test]
async fn pings_are_never_throttled_nor_counted() {
    let (limiter, _clock) = table("1/minute");
    let throttle = MessageThrottle::builder(limiter)
        .max_violations(2)
        .build()
        .unwrap();
    let addr = serve(throttle).await;
    let mut ws = connect(addr, "/ws").await;

    send(&mut ws, "a").await;
    expect_text(&mut ws, "a").await;
    send(&mut ws, "b").await;
    expect_text(&mut ws, &notice(60)).await;
    // Many pings with the budget spent: each reaches the application, none is a violation.
    for _ in 0..5 {
        ws.send(Message::Ping(vec![1, 2].into())).await.unwrap();
        expect_text(&mut ws, "pinged").await;
    }
    // This is only the second violation in a row: notice and close.
    send(&mut ws, "c").await;
    expect_text(&mut ws, &notice(60)).await;
    expect_close(&mut ws, CloseCode::Policy, "policy violation").await;
}

#[tokio::test]
async fn cost_by_size_charges_per_started_kib() {
    let (limiter, _clock) = table("4/minute");
    let throttle = MessageThrottle::builder(limiter)
        .cost(Cost::per_started_bytes(1024))
        .build()
        .unwrap();
    let addr = serve(throttle).await;
    let mut ws = connect(addr, "/ws").await;

    // 2049 bytes cost 3 of 4.
    let big = vec![7u8; 2049];
    ws.send(Message::binary(big.clone())).await.unwrap();
    match next(&mut ws).await {
        Some(Message::Binary(b)) => assert_eq!(b.as_ref(), &big[..]),
        other => panic!("expected the echo, got {other:?}"),
    }
    // 1025 bytes cost 2 with 1 left: the second unit is back in 15 s.
    ws.send(Message::binary(vec![1u8; 1025])).await.unwrap();
    expect_text(&mut ws, &notice(15)).await;
    // 10 bytes cost 1: admitted.
    send(&mut ws, "0123456789").await;
    expect_text(&mut ws, "0123456789").await;
}

#[tokio::test]
async fn a_per_user_key_is_shared_by_that_users_connections() {
    let (limiter, clock) = table("3/minute");
    let addr = serve(MessageThrottle::new(limiter)).await;
    let mut a = connect(addr, "/ws/alice").await;
    let mut b = connect(addr, "/ws/alice").await;
    let mut other = connect(addr, "/ws/bob").await;

    for m in ["a1", "a2"] {
        send(&mut a, m).await;
        expect_text(&mut a, m).await;
    }
    send(&mut b, "b1").await;
    expect_text(&mut b, "b1").await;
    // Alice's third message of the minute came through b: her fourth is refused on both.
    send(&mut b, "b2").await;
    expect_text(&mut b, &notice(20)).await;
    send(&mut a, "a3").await;
    expect_text(&mut a, &notice(20)).await;
    // Bob has his own budget.
    for m in ["o1", "o2", "o3"] {
        send(&mut other, m).await;
        expect_text(&mut other, m).await;
    }
    clock.advance(Duration::from_secs(20));
    send(&mut a, "a4").await;
    expect_text(&mut a, "a4").await;
}

/// A table that refuses every new key: full, with `OverflowPolicy::Deny`.
fn full_table() -> Arc<Table> {
    let clock = Arc::new(ManualClock::new());
    let limiter: Table = traffik::builder()
        .rate("1/minute")
        .capacity(1)
        .shards(1)
        .overflow(OverflowPolicy::Deny)
        .build_with_clock(clock)
        .unwrap();
    let full = (0u32..100_000).any(|i| {
        matches!(
            limiter.check(&i.to_be_bytes()[..], 1),
            Err(CheckError::TableFull)
        )
    });
    assert!(full, "the table fills up");
    Arc::new(limiter)
}

#[tokio::test]
async fn limiter_failures_follow_the_error_policy() {
    let allow = serve(
        MessageThrottle::builder(full_table())
            .on_error(OnLimiterError::Allow)
            .build()
            .unwrap(),
    )
    .await;
    let mut ws = connect(allow, "/ws").await;
    send(&mut ws, "through").await;
    expect_text(&mut ws, "through").await;

    let drop = serve(
        MessageThrottle::builder(full_table())
            .on_error(OnLimiterError::Drop)
            .build()
            .unwrap(),
    )
    .await;
    let mut ws = connect(drop, "/ws").await;
    send(&mut ws, "lost").await;
    // The ping is answered; the message before it was dropped without a word.
    ws.send(Message::Ping(vec![].into())).await.unwrap();
    expect_text(&mut ws, "pinged").await;

    let close = serve(
        MessageThrottle::builder(full_table())
            .on_error(OnLimiterError::Close)
            .build()
            .unwrap(),
    )
    .await;
    let mut ws = connect(close, "/ws").await;
    send(&mut ws, "fatal").await;
    expect_close(&mut ws, CloseCode::Error, "internal error").await;
}

/// A limiter that, like a network store, only answers by awaiting.
struct Remote(Arc<Table>);

impl AsyncLimiter<[u8]> for Remote {
    type Error = CheckError;
    async fn check(&self, key: &[u8], cost: u64) -> Result<Decision, CheckError> {
        tokio::task::yield_now().await;
        KeyedLimiter::check(&*self.0, key, cost)
    }
    async fn peek(&self, key: &[u8]) -> Result<Decision, CheckError> {
        Ok(KeyedLimiter::peek(&*self.0, key))
    }
    async fn reset(&self, key: &[u8]) -> Result<(), CheckError> {
        KeyedLimiter::reset(&*self.0, key);
        Ok(())
    }
}

#[tokio::test]
async fn a_limiter_that_must_be_awaited_throttles_the_same() {
    let (limiter, _clock) = table("2/minute");
    let throttle = MessageThrottle::builder(Remote(limiter))
        .max_violations(2)
        .build()
        .unwrap();
    let addr = serve(throttle).await;
    let mut ws = connect(addr, "/ws").await;
    for m in ["r1", "r2", "r3", "r4", "r5"] {
        send(&mut ws, m).await;
    }
    expect_text(&mut ws, "r1").await;
    expect_text(&mut ws, "r2").await;
    expect_text(&mut ws, &notice(30)).await;
    expect_text(&mut ws, &notice(30)).await;
    expect_close(&mut ws, CloseCode::Policy, "policy violation").await;
}

#[tokio::test]
async fn a_tokio_tungstenite_server_stream_is_throttled_too() {
    let (limiter, _clock) = table("1/minute");
    let throttle = MessageThrottle::new(limiter);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut ws = Throttled::new(ws, throttle.per_connection());
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut ws = connect(addr, "/").await;
    send(&mut ws, "t1").await;
    send(&mut ws, "t2").await;
    expect_text(&mut ws, "t1").await;
    expect_text(&mut ws, &notice(60)).await;
}

#[tokio::test]
async fn per_connection_budgets_are_separate() {
    let (limiter, _clock) = table("1/minute");
    let addr = serve(MessageThrottle::new(limiter)).await;
    let mut a = connect(addr, "/ws").await;
    let mut b = connect(addr, "/ws").await;
    send(&mut a, "a1").await;
    expect_text(&mut a, "a1").await;
    send(&mut b, "b1").await;
    expect_text(&mut b, "b1").await;
    send(&mut a, "a2").await;
    expect_text(&mut a, &notice(60)).await;
}

#[tokio::test]
async fn a_custom_handler_sends_its_own_notice_and_close() {
    let (limiter, clock) = table("1/minute");
    let throttle = MessageThrottle::builder(limiter)
        .never_close()
        .on_violation(|d: &Decision| {
            if d.retry_after() > Duration::from_secs(30) {
                Action::Notify(Notice::text(format!(
                    "slow down: {} ms",
                    d.retry_after().as_millis()
                )))
            } else {
                Action::Close(CloseReason::new(4008, "too chatty").unwrap())
            }
        })
        .build()
        .unwrap();
    let addr = serve(throttle).await;
    let mut ws = connect(addr, "/ws").await;
    send(&mut ws, "1").await;
    expect_text(&mut ws, "1").await;
    clock.advance(Duration::from_millis(250));
    send(&mut ws, "2").await;
    expect_text(&mut ws, "slow down: 59750 ms").await;
    clock.advance(Duration::from_secs(30));
    send(&mut ws, "3").await;
    expect_close(&mut ws, CloseCode::from(4008), "too chatty").await;
}
