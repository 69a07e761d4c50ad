//! [`WsMessage`]: what the throttle needs from a WebSocket library's message type, and its
//! implementations for axum (feature `axum`) and tungstenite (feature `tungstenite`).

use std::borrow::Cow;

/// What the throttle needs from a message type: its size, whether it counts, and how to build
/// the two messages the throttle sends (a text notice and a Close frame).
///
/// Only data messages (text and binary) are charged; control frames (ping, pong, close) always
/// pass, so keep-alives and the closing handshake are never throttled.
///
/// Implement it for another WebSocket library's message type to throttle that library's stream.
pub trait WsMessage: Sized {
    /// The payload's length in bytes (what size-based costs are computed from).
    fn payload_len(&self) -> usize;

    /// Whether this is a data message (text or binary), the only kind that is charged.
    fn is_data(&self) -> bool;

    /// A text message of `text` (a notice to the client).
    fn text_message(text: Cow<'static, str>) -> Self;

    /// A Close frame with this code and reason. The throttle only passes codes and reasons that
    /// [`CloseReason::new`](super::CloseReason::new) accepts.
    fn close_message(code: u16, reason: Cow<'static, str>) -> Self;
}

#[cfg(feature = "axum")]
mod axum_message {
    use super::WsMessage;
    use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
    use std::borrow::Cow;

    fn utf8(text: Cow<'static, str>) -> Utf8Bytes {
        match text {
            Cow::Borrowed(s) => Utf8Bytes::from_static(s),
            Cow::Owned(s) => Utf8Bytes::from(s),
        }
    }

    /// axum's message (feature `axum`).
    impl WsMessage for Message {
        #[inline]
        fn payload_len(&self) -> usize {
            match self {
                Message::Text(t) => t.len(),
                Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
                Message::Close(c) => c.as_ref().map_or(0, |c| c.reason.len()),
            }
        }

        #[inline]
        fn is_data(&self) -> bool {
            matches!(self, Message::Text(_) | Message::Binary(_))
        }

        fn text_message(text: Cow<'static, str>) -> Self {
            Message::Text(utf8(text))
        }

        fn close_message(code: u16, reason: Cow<'static, str>) -> Self {
            Message::Close(Some(CloseFrame {
                code,
                reason: utf8(reason),
            }))
        }
    }
}

#[cfg(feature = "tungstenite")]
mod tungstenite_message {
    use super::WsMessage;
    use std::borrow::Cow;
    use tungstenite::protocol::frame::coding::CloseCode;
    use tungstenite::protocol::CloseFrame;
    use tungstenite::{Message, Utf8Bytes};

    fn utf8(text: Cow<'static, str>) -> Utf8Bytes {
        match text {
            Cow::Borrowed(s) => Utf8Bytes::from_static(s),
            Cow::Owned(s) => Utf8Bytes::from(s),
        }
    }

    /// tungstenite's message, as tokio-tungstenite's `WebSocketStream` yields it (feature
    /// `tungstenite`; tungstenite 0.29, the version axum 0.8 uses).
    impl WsMessage for Message {
        #[inline]
        fn payload_len(&self) -> usize {
            self.len()
        }

        #[inline]
        fn is_data(&self) -> bool {
            // `Frame` is never yielded by a read; it is not a data message of its own.
            matches!(self, Message::Text(_) | Message::Binary(_))
        }

        fn text_message(text: Cow<'static, str>) -> Self {
            Message::Text(utf8(text))
        }

        fn close_message(code: u16, reason: Cow<'static, str>) -> Self {
            Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: utf8(reason),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WsMessage;
    use std::borrow::Cow;

    #[cfg(feature = "axum")]
    #[test]
    fn axum_messages_report_size_and_kind() {
        use axum::extract::ws::{CloseFrame, Message};
        assert_eq!(Message::text("héllo").payload_len(), 6);
        assert!(Message::text("a").is_data());
        assert!(Message::binary(vec![0u8; 3]).is_data());
        assert_eq!(Message::binary(vec![0u8; 3]).payload_len(), 3);
        assert!(!Message::Ping(vec![1u8].into()).is_data());
        assert!(!Message::Pong(vec![1u8].into()).is_data());
        assert!(!Message::Close(None).is_data());
        assert_eq!(
            Message::close_message(1008, Cow::Borrowed("policy violation")),
            Message::Close(Some(CloseFrame {
                code: 1008,
                reason: "policy violation".into()
            }))
        );
        assert_eq!(
            Message::text_message(Cow::Owned("n".to_owned())),
            Message::text("n")
        );
    }

    #[cfg(feature = "tungstenite")]
    #[test]
    fn tungstenite_messages_report_size_and_kind() {
        use tungstenite::protocol::frame::coding::CloseCode;
        use tungstenite::Message;
        assert_eq!(Message::text("héllo").payload_len(), 6);
        assert!(Message::binary(vec![0u8; 3]).is_data());
        assert!(!Message::Ping(vec![1u8].into()).is_data());
        assert!(!Message::Close(None).is_data());
        match Message::close_message(1008, Cow::Borrowed("policy violation")) {
            Message::Close(Some(f)) => {
                assert_eq!(f.code, CloseCode::Policy);
                assert_eq!(f.reason.as_str(), "policy violation");
            }
            other => panic!("not a close frame: {other:?}"),
        }
        assert_eq!(
            Message::text_message(Cow::Borrowed("n")),
            Message::text("n")
        );
    }
}
