//! Verdicts on a manual clock, and the stream's backpressure over an in-memory socket.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::{ready, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;
use traffik_core::{AnyAlgorithm, AsyncLimiter, CheckError, Decision, KeyedLimiter, ManualClock};

use super::*;
use crate::http::HttpKey;

type Table = KeyedLimiter<[u8], AnyAlgorithm, Arc<ManualClock>>;

fn table(rate: &str) -> (Table, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let limiter = crate::builder()
        .rate(rate)
        .capacity(64)
        .build_with_clock(Arc::clone(&clock))
        .expect("valid rate");
    (limiter, clock)
}

/// A message type of our own: (is data, payload length), or what the throttle built.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Msg {
    Data(usize),
    Ping,
    Text(String),
    Close(u16, String),
}

impl WsMessage for Msg {
    fn payload_len(&self) -> usize {
        match self {
            Msg::Data(n) => *n,
            _ => 0,
        }
    }
    fn is_data(&self) -> bool {
        matches!(self, Msg::Data(_))
    }
    fn text_message(text: Cow<'static, str>) -> Self {
        Msg::Text(text.into_owned())
    }
    fn close_message(code: u16, reason: Cow<'static, str>) -> Self {
        Msg::Close(code, reason.into_owned())
    }
}

fn notice(secs: u64) -> Option<Notice> {
    Some(Notice::rate_limit(Duration::from_secs(secs)))
}

#[test]
fn three_per_minute_admits_three_then_rejects_with_the_wait() {
    let (limiter, clock) = table("3/minute");
    let throttle = MessageThrottle::builder(limiter)
        .max_violations(3)
        .build()
        .expect("valid");
    let mut conn = throttle.per_connection();
    for _ in 0..3 {
        assert_eq!(conn.check(&Msg::Data(5)), Verdict::Pass);
    }
    let reject = conn.check(&Msg::Data(5));
    assert_eq!(
        reject,
        Verdict::Reject {
            notice: notice(20),
            close: None
        }
    );
    assert!(!reject.is_pass() && !reject.closes());
    // 100 ms later the wait is 19.9 s: rounded up to 20.
    clock.advance(Duration::from_millis(100));
    assert_eq!(
        conn.check(&Msg::Data(5)),
        Verdict::Reject {
            notice: notice(20),
            close: None
        }
    );
    assert_eq!(conn.consecutive_violations(), 2);
    // Control frames pass and do not touch the run.
    assert_eq!(conn.check(&Msg::Ping), Verdict::Pass);
    let third = conn.check(&Msg::Data(5));
    assert_eq!(
        third,
        Verdict::Reject {
            notice: notice(20),
            close: Some(CloseReason::POLICY_VIOLATION)
        }
    );
    assert!(third.closes());
}

#[test]
fn an_admitted_message_ends_the_run_of_violations() {
    let (limiter, clock) = table("1/s");
    let throttle = MessageThrottle::builder(limiter)
        .max_violations(2)
        .build()
        .expect("valid");
    let mut conn = throttle.connection(HttpKey::from_bytes(b"u1"));
    assert!(conn.check(&Msg::Data(1)).is_pass());
    clock.advance(Duration::from_millis(500));
    assert_eq!(
        conn.check(&Msg::Data(1)),
        Verdict::Reject {
            notice: notice(1),
            close: None
        }
    );
    clock.advance(Duration::from_millis(500));
    assert!(conn.check(&Msg::Data(1)).is_pass());
    assert_eq!(conn.consecutive_violations(), 0);
    assert!(!conn.check(&Msg::Data(1)).closes());
    assert!(conn.check(&Msg::Data(1)).closes());
}

#[test]
fn never_close_and_no_notice_only_drop() {
    let (limiter, _clock) = table("1/minute");
    let throttle = MessageThrottle::builder(limiter)
        .never_close()
        .notice(false)
        .build()
        .expect("valid");
    let mut conn = throttle.per_connection();
    assert!(conn.check(&Msg::Data(1)).is_pass());
    for _ in 0..100 {
        assert_eq!(
            conn.check(&Msg::Data(1)),
            Verdict::Reject {
                notice: None,
                close: None
            }
        );
    }
    assert_eq!(conn.consecutive_violations(), 100);
}

#[test]
fn a_handler_chooses_the_action_and_violations_still_count() {
    let (limiter, _clock) = table("1/minute");
    let bye = CloseReason::new(4000, "bye").expect("sendable");
    let bye2 = bye.clone();
    let throttle = MessageThrottle::builder(limiter)
        .max_violations(3)
        .on_violation(move |d: &Decision| match d.retry_after().as_secs() {
            // The first denial waits the full 60 s: custom text; never reached otherwise.
            60.. => Action::Notify(Notice::text(format!("wait {}s", d.retry_after().as_secs()))),
            _ => Action::Close(bye2.clone()),
        })
        .build()
        .expect("valid");
    let mut conn = throttle.per_connection();
    assert!(conn.check(&Msg::Data(1)).is_pass());
    assert_eq!(
        conn.check(&Msg::Data(1)),
        Verdict::Reject {
            notice: Some(Notice::text("wait 60s")),
            close: None
        }
    );
    assert_eq!(
        conn.check(&Msg::Data(1)),
        Verdict::Reject {
            notice: Some(Notice::text("wait 60s")),
            close: None
        }
    );
    // The third in a row hits max_violations: the handler's notice, then 1008.
    assert_eq!(
        conn.check(&Msg::Data(1)),
        Verdict::Reject {
            notice: Some(Notice::text("wait 60s")),
            close: Some(CloseReason::POLICY_VIOLATION)
        }
    );

    let (limiter, clock) = table("1/minute");
    let throttle = MessageThrottle::builder(limiter)
        .on_violation(move |d: &Decision| {
            if d.retry_after() < Duration::from_secs(60) {
                Action::Close(bye.clone())
            } else {
                Action::Drop
            }
        })
        .build()
        .expect("valid");
    let mut conn = throttle.per_connection();
    assert!(conn.check(&Msg::Data(1)).is_pass());
    assert_eq!(
        conn.check(&Msg::Data(1)),
        Verdict::Reject {
            notice: None,
            close: None
        }
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        conn.check(&Msg::Data(1)),
        Verdict::Reject {
            notice: None,
            close: Some(CloseReason::new(4000, "bye").expect("sendable"))
        }
    );
}

#[test]
fn cost_by_size_charges_per_started_kib() {
    let (limiter, _clock) = table("4/minute");
    let throttle = MessageThrottle::builder(limiter)
        .cost(Cost::per_started_bytes(1024))
        .build()
        .expect("valid");
    let mut conn = throttle.connection(HttpKey::from_bytes(b"k"));
    // 2049 bytes: 3 units of 4.
    assert!(conn.check(&Msg::Data(2049)).is_pass());
    // 1025 bytes: 2 units, only 1 left: 15 s until the second is back.
    assert_eq!(
        conn.check(&Msg::Data(1025)),
        Verdict::Reject {
            notice: notice(15),
            close: None
        }
    );
    assert!(conn.check(&Msg::Data(0)).is_pass());
    // A message that costs more than the burst can never pass: 1009.
    assert_eq!(
        conn.check(&Msg::Data(5 * 1024)),
        Verdict::Reject {
            notice: None,
            close: Some(CloseReason::MESSAGE_TOO_BIG)
        }
    );
}

#[test]
fn unusable_configurations_are_typed_errors() {
    let (limiter, _) = table("1/s");
    let b = || MessageThrottle::builder(&limiter);
    assert_eq!(
        b().cost(Cost::fixed(0)).build().map(drop),
        Err(WsConfigError::ZeroCost)
    );
    assert_eq!(
        b().cost(Cost::per_started_bytes(0)).build().map(drop),
        Err(WsConfigError::ZeroChunk)
    );
    assert_eq!(
        b().max_violations(0).build().map(drop),
        Err(WsConfigError::ZeroViolations)
    );
    assert!(b().cost(Cost::by_size(|_| 0)).build().is_ok());
}

#[test]
fn per_connection_keys_are_distinct_and_tagged() {
    let (limiter, _) = table("1/s");
    let throttle = MessageThrottle::new(limiter);
    let a = throttle.per_connection();
    let b = throttle.per_connection();
    assert_ne!(a.key(), b.key());
    assert_eq!(a.key().len(), 17);
    assert_eq!(a.key().as_bytes()[0], CONNECTION_KEY_TAG);
    // Same process: same salt.
    assert_eq!(a.key().as_bytes()[1..9], b.key().as_bytes()[1..9]);
}

/// A limiter that only answers by awaiting, or that always fails.
struct Remote {
    table: Table,
    fail: bool,
}

impl AsyncLimiter<[u8]> for Remote {
    type Error = CheckError;
    fn check(
        &self,
        key: &[u8],
        cost: u64,
    ) -> impl Future<Output = Result<Decision, CheckError>> + Send {
        ready(if self.fail {
            Err(CheckError::TableFull)
        } else {
            self.table.check(key, cost)
        })
    }
    fn peek(&self, key: &[u8]) -> impl Future<Output = Result<Decision, CheckError>> + Send {
        ready(Ok(self.table.peek(key)))
    }
    fn reset(&self, key: &[u8]) -> impl Future<Output = Result<(), CheckError>> + Send {
        self.table.reset(key);
        ready(Ok(()))
    }
}

fn poll_once<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the test limiter answers on the first poll"),
    }
}

#[test]
fn a_limiter_that_must_be_awaited_is_checked_by_check_async() {
    let (table, _) = table("1/minute");
    let throttle = MessageThrottle::builder(Remote { table, fail: false })
        .on_error(OnLimiterError::Drop)
        .build()
        .expect("valid");
    let mut conn = throttle.per_connection();
    assert_eq!(conn.try_check(&Msg::Data(1)), None);
    // `check` cannot wait: the error policy applies and nothing is charged.
    assert_eq!(
        conn.check(&Msg::Data(1)),
        Verdict::Reject {
            notice: None,
            close: None
        }
    );
    assert_eq!(poll_once(conn.check_async(&Msg::Data(1))), Verdict::Pass);
    assert_eq!(
        poll_once(conn.check_async(&Msg::Data(1))),
        Verdict::Reject {
            notice: notice(60),
            close: None
        }
    );
    assert_eq!(poll_once(conn.check_async(&Msg::Ping)), Verdict::Pass);
}

#[test]
fn limiter_failures_follow_the_policy() {
    let cases = [
        (OnLimiterError::Allow, Verdict::Pass),
        (
            OnLimiterError::Drop,
            Verdict::Reject {
                notice: None,
                close: None,
            },
        ),
        (
            OnLimiterError::Close,
            Verdict::Reject {
                notice: None,
                close: Some(CloseReason::INTERNAL_ERROR),
            },
        ),
    ];
    for (policy, verdict) in cases {
        let (table, _) = table("1/s");
        let throttle = MessageThrottle::builder(Remote { table, fail: true })
            .on_error(policy)
            .build()
            .expect("valid");
        let mut conn = throttle.per_connection();
        assert_eq!(poll_once(conn.check_async(&Msg::Data(1))), verdict);
        assert_eq!(conn.consecutive_violations(), 0, "{policy:?}");
    }
}

/// An in-memory socket: reads come from `incoming`; the sink accepts only while `room > 0`
/// and records what it was sent and flushed.
struct Socket {
    incoming: VecDeque<Msg>,
    sent: Vec<Msg>,
    room: usize,
    flushes: usize,
}

impl Stream for Socket {
    type Item = Result<Msg, ()>;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.incoming.pop_front().map(Ok))
    }
}

impl Sink<Msg> for Socket {
    type Error = ();
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        if self.room > 0 {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
    fn start_send(mut self: Pin<&mut Self>, item: Msg) -> Result<(), ()> {
        assert!(self.room > 0, "start_send without poll_ready");
        self.room -= 1;
        self.sent.push(item);
        Ok(())
    }
    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        self.flushes += 1;
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
}

fn next<S: Stream + Unpin>(s: &mut S) -> Poll<Option<S::Item>> {
    Pin::new(s).poll_next(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_pending_notice_holds_back_further_reads_until_the_sink_has_room() {
    let (limiter, _) = table("1/minute");
    let throttle = MessageThrottle::builder(limiter)
        .max_violations(2)
        .build()
        .expect("valid");
    let socket = Socket {
        incoming: [
            Msg::Data(1),
            Msg::Data(2),
            Msg::Ping,
            Msg::Data(3),
            Msg::Data(4),
        ]
        .into(),
        sent: Vec::new(),
        room: 0,
        flushes: 0,
    };
    let mut t = Throttled::new(socket, throttle.per_connection());
    assert_eq!(next(&mut t), Poll::Ready(Some(Ok(Msg::Data(1)))));
    // Data(2) is rejected; its notice cannot be sent, so nothing more is read.
    assert_eq!(next(&mut t), Poll::Pending);
    assert_eq!(next(&mut t), Poll::Pending);
    assert_eq!(t.get_ref().incoming.len(), 3);
    t.get_mut().room = 10;
    // The notice goes out and is flushed before the ping is read.
    assert_eq!(next(&mut t), Poll::Ready(Some(Ok(Msg::Ping))));
    let json = Notice::rate_limit(Duration::from_secs(60)).to_string();
    assert_eq!(t.get_ref().sent, [Msg::Text(json.clone())]);
    assert_eq!(t.get_ref().flushes, 1);
    // Data(3) is the second violation in a row: notice, Close 1008, end of stream; Data(4) is
    // never read.
    assert_eq!(next(&mut t), Poll::Ready(None));
    assert_eq!(
        t.get_ref().sent,
        [
            Msg::Text(json.clone()),
            Msg::Text(json),
            Msg::Close(1008, "policy violation".into())
        ]
    );
    assert_eq!(t.get_ref().incoming, [Msg::Data(4)]);
    assert_eq!(next(&mut t), Poll::Ready(None));
    assert!(futures_core::FusedStream::is_terminated(&t));
}

#[test]
fn writes_pass_through_after_pending_notices() {
    let (limiter, _) = table("1/minute");
    let throttle = MessageThrottle::new(limiter);
    let socket = Socket {
        incoming: [Msg::Data(1), Msg::Data(2)].into(),
        sent: Vec::new(),
        room: 0,
        flushes: 0,
    };
    let mut t = Throttled::new(socket, throttle.per_connection());
    assert_eq!(next(&mut t), Poll::Ready(Some(Ok(Msg::Data(1)))));
    assert_eq!(next(&mut t), Poll::Pending);
    t.get_mut().room = 2;
    let cx = &mut Context::from_waker(Waker::noop());
    assert_eq!(Pin::new(&mut t).poll_ready(cx), Poll::Ready(Ok(())));
    assert_eq!(Pin::new(&mut t).start_send(Msg::Data(9)), Ok(()));
    let json = Notice::rate_limit(Duration::from_secs(60)).to_string();
    assert_eq!(t.get_ref().sent, [Msg::Text(json), Msg::Data(9)]);
    // The stream ends with the socket, having read everything.
    assert_eq!(next(&mut t), Poll::Ready(None));
}
