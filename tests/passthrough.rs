//! Pass-through over real TLS: HTTP/1.1 and HTTP/2, streamed bodies both
//! ways, WebSocket upgrade, upstream failure, header hygiene.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};

#[tokio::test]
async fn http1_request_reaches_upstream_with_canonical_path_and_forwarding_headers() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let req = request(
        "GET",
        "/public/./a//b/%7Euser/../page?x=1",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil.example"),
            ("x-stepup-assertion", "forged"),
            ("x-stepup-token", "forged"),
            ("x-original-url", "/admin/users/bob/delete"),
            ("x-rewrite-url", "/admin/users/bob/delete"),
            ("connection", "close, x-forwarded-proto"),
        ],
        b"",
    );
    let resp = raw(gw.addr, &gw.pki, &req).await;
    assert_eq!(resp.status, 200, "{:?}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.header("x-upstream"), Some("recorder"));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.target, "/public/a/b/page?x=1");
    assert_eq!(r.header("host").as_deref(), Some("localhost"));
    assert_eq!(r.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.header("x-forwarded-host").as_deref(), Some("localhost"));
    assert_eq!(r.header("x-forwarded-proto").as_deref(), Some("https"));
    for h in [
        "x-stepup-assertion",
        "x-stepup-token",
        "x-original-url",
        "x-rewrite-url",
    ] {
        assert!(r.header(h).is_none(), "{h} must never reach the upstream");
    }
}

#[tokio::test]
async fn http2_by_alpn_is_forwarded_as_http1() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let mut client = h2_client(gw.addr, &gw.pki).await;
    for i in 0..3 {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("https://localhost/h2/{i}"))
            .body(Full::new(Bytes::from_static(b"hello h2")))
            .expect("request");
        let resp = client.send_request(req).await.expect("h2 response");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["len"], 8);
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].target, "/h2/2");
    assert_eq!(seen[2].header("host").as_deref(), Some("localhost"));
    assert_eq!(&seen[2].body[..], b"hello h2");
}

/// The gateway keeps its upstream connections: requests one after another
/// (whatever their body: none, HEAD, streamed, uploaded) share one upstream
/// connection; one the upstream closes is replaced, not reused.
#[tokio::test]
async fn upstream_connections_are_reused_and_closed_ones_replaced() {
    use std::sync::atomic::Ordering;
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let tls = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
    let (mut client, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let requests: [(&str, &str, &'static [u8], usize); 5] = [
        ("GET", "/a", b"", 0),
        ("HEAD", "/b", b"", 0),
        ("GET", "/download/200000", b"", 200_000),
        ("POST", "/c", b"uploaded", 0),
        ("GET", "/d", b"", 0),
    ];
    for (method, target, body, want_len) in requests {
        let req = http::Request::builder()
            .method(method)
            .uri(target)
            .header("host", "localhost")
            .body(Full::new(Bytes::from_static(body)))
            .expect("request");
        let resp = client.send_request(req).await.expect("response");
        assert_eq!(resp.status(), 200, "{method} {target}");
        let got = resp.into_body().collect().await.expect("body").to_bytes();
        if want_len > 0 {
            assert_eq!(got.len(), want_len);
        }
    }
    assert_eq!(up.count("/"), 5);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "one upstream connection for all five"
    );

    // A second client connection takes the idle upstream connection too.
    let again = raw(gw.addr, &gw.pki, &request("GET", "/e", &[], b"")).await;
    assert_eq!(again.status, 200);
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);

    // The upstream closes after `/close`; the next request opens a new one.
    let closed = raw(gw.addr, &gw.pki, &request("GET", "/close", &[], b"")).await;
    assert_eq!((closed.status, &closed.body[..]), (200, &b"bye"[..]));
    let after = raw(gw.addr, &gw.pki, &request("GET", "/f", &[], b"")).await;
    assert_eq!(after.status, 200);
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn ten_mib_bodies_stream_both_ways() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let upload: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let resp = raw(gw.addr, &gw.pki, &request("PUT", "/upload", &[], &upload)).await;
    assert_eq!(resp.status, 200);
    let seen = up.requests();
    assert_eq!(seen[0].body.len(), upload.len());
    assert!(seen[0].body[..] == upload[..], "upload must arrive byte-identical");

    let n = 10 * 1024 * 1024;
    let resp = raw(gw.addr, &gw.pki, &request("GET", &format!("/download/{n}"), &[], b"")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), n);
    assert!(resp
        .body
        .chunks(65536)
        .enumerate()
        .all(|(i, c)| c.iter().all(|&b| b == (i % 251) as u8)));
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let tls = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
    let (mut ws, resp) = tokio_tungstenite::client_async("wss://localhost/ws", tls)
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("ping through stepgate")).await.expect("send");
    let echoed = ws.next().await.expect("message").expect("ok");
    assert_eq!(echoed.into_text().expect("text").as_str(), "ping through stepgate");
    assert_eq!(up.count("/ws"), 1);
}

#[tokio::test]
async fn upstream_down_is_a_clean_502() {
    let mut up = Upstream::start().await;
    let addr = up.addr;
    up.stop();
    // Give the listener task a moment to drop its socket.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let gw = Gateway::default(addr).await;
    let resp = raw(gw.addr, &gw.pki, &request("GET", "/anything", &[], b"")).await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.error_code(), "upstream_unavailable");
    let body = String::from_utf8_lossy(&resp.body);
    assert!(
        !body.contains("refused") && !body.contains("127.0.0.1"),
        "no internals in the response: {body}"
    );
}

#[tokio::test]
async fn deny_routes_and_gateway_prefix_never_reach_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let resp = raw(gw.addr, &gw.pki, &request("GET", "/admin/sql/run", &[], b"")).await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.error_code(), "forbidden");
    for path in [
        "/.stepup/nope",
        "/.stepup;x/holds",
        "/%2estepup/jwks.json",
        "/x/../.stepup/holds/abc",
    ] {
        let resp = raw(gw.addr, &gw.pki, &request("GET", path, &[], b"")).await;
        assert!(resp.status == 404 || resp.status == 200, "{path}: {}", resp.status);
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let up = Upstream::start().await;
    let mut gw = Gateway::default(up.addr).await;
    let addr = gw.addr;
    let pki_req = request("GET", "/slow", &[], b"");
    let mut tls = tls_connect(addr, &gw.pki, &[b"http/1.1"]).await;
    tokio::io::AsyncWriteExt::write_all(&mut tls, &pki_req)
        .await
        .expect("write");
    // Let the request reach the upstream, then stop the gateway.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stopping = tokio::spawn(async move {
        gw.shutdown().await;
    });
    let resp = read_response(&mut tls).await;
    assert_eq!(resp.status, 200, "the in-flight request completes during the drain");
    stopping.await.expect("shutdown");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
