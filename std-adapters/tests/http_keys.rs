//! The key extractors inside a real axum server on loopback, asked by a real hyper client:
//! `ConnectInfo` gives the peer, `MatchedPath` the route template, and forwarded headers count
//! only from trusted peers.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use traffik::http::{
    ClientIp, ClientIpResolver, Extracted, Extraction, ForwardedHeader, KeyExtractor, MatchedRoute,
    PeerIp, TrustedProxies,
};

/// The handler's answer: the key's bytes in hex, `exempt`, or `missing: <reason>`.
fn describe(e: Extraction) -> String {
    match e {
        Extraction::Ready(Extracted::Key(k)) => {
            k.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
        }
        Extraction::Ready(Extracted::Exempt) => "exempt".to_owned(),
        Extraction::Ready(Extracted::Missing(why)) => format!("missing: {}", why.reason()),
        Extraction::Pending(_) => "pending".to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn route<E: KeyExtractor>(extractor: E) -> axum::routing::MethodRouter {
    let extractor = Arc::new(extractor);
    get(move |req: Request| {
        let extractor = Arc::clone(&extractor);
        async move { describe(extractor.extract(&req.into_parts().0)) }
    })
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn fetch(addr: SocketAddr, path: &str, xff: Option<&str>) -> String {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn route_template_and_peer_over_loopback() {
    let trusting_loopback =
        ClientIpResolver::new(TrustedProxies::loopback(), ForwardedHeader::XForwardedFor);
    let trusting_none =
        ClientIpResolver::new(TrustedProxies::none(), ForwardedHeader::XForwardedFor);
    let app = Router::new()
        .route("/users/{id}", route((MatchedRoute, PeerIp::new())))
        .route("/peer", route(PeerIp::new()))
        .route("/client", route(ClientIp::new(trusting_loopback)))
        .route("/direct", route(ClientIp::new(trusting_none)))
        .route(
            "/exempt",
            route(PeerIp::new().exempt(["127.0.0.0/8".parse().unwrap()])),
        )
        .fallback(get(|req: Request| async move {
            describe(MatchedRoute.extract(&req.into_parts().0))
        }));
    let addr = serve(app).await;

    let peer = [0x01, b'4', 32, 127, 0, 0, 1];
    assert_eq!(fetch(addr, "/peer", None).await, hex(&peer));

    // Composite: tag 0x08, then each part length-prefixed. Both users share the route key.
    let mut want = vec![0x08, 0, 0, 0, 12, 0x06];
    want.extend_from_slice(b"/users/{id}");
    want.extend_from_slice(&[0, 0, 0, 7]);
    want.extend_from_slice(&peer);
    assert_eq!(fetch(addr, "/users/1", None).await, hex(&want));
    assert_eq!(fetch(addr, "/users/2", None).await, hex(&want));

    // From a trusted (loopback) peer the forwarded client counts; with no one trusted, not.
    let forwarded = [0x02, b'4', 32, 203, 0, 113, 9];
    assert_eq!(
        fetch(addr, "/client", Some("6.6.6.6, 203.0.113.9")).await,
        hex(&forwarded)
    );
    let direct = [0x02, b'4', 32, 127, 0, 0, 1];
    assert_eq!(
        fetch(addr, "/direct", Some("203.0.113.9")).await,
        hex(&direct)
    );
    assert_eq!(fetch(addr, "/exempt", None).await, "exempt");
    assert_eq!(
        fetch(addr, "/nowhere", None).await,
        "missing: no matched axum route (the request matched no route, or the layer runs \
         outside the Router)"
    );
}
