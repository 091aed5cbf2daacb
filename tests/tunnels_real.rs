//! The upgrade rules of SPEC §2 against real upstream processes: hypercorn,
//! which really speaks HTTP/2 after an `Upgrade: h2c`, and the hostile
//! fake-101 server, which answers 101 to anything and then goes on running
//! HTTP/1.1 requests. Each test first shows that the attack works on the
//! upstream directly, then performs it through the gateway.

mod common;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const SETTINGS: &str = "AAMAAABkAAQCAAAAAAIAAAAA";

/// An HTTP/2 frame header and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A HEADERS frame (END_STREAM | END_HEADERS) whose block is HPACK literals
/// without indexing, so no encoder state is needed.
fn h2_request(stream: u32, method: &str, path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (k, v) in [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
    ] {
        block.push(0x00);
        block.push(k.len() as u8);
        block.extend_from_slice(k.as_bytes());
        block.push(v.len() as u8);
        block.extend_from_slice(v.as_bytes());
    }
    frame(0x1, 0x5, stream, &block)
}

/// What a client sends once it believes the h2c upgrade happened: the
/// connection preface, empty SETTINGS, and two sensitive requests on new
/// streams (stream 1 belongs to the upgraded request itself).
fn h2_inside() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out.extend(h2_request(3, "POST", "/admin/sql/run"));
    out.extend(h2_request(5, "DELETE", "/admin/users/carol"));
    out
}

fn h2c_upgrade(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\n\
         http2-settings: {SETTINGS}\r\n\r\n"
    )
}

/// Writes `first`, then `inside` on the same connection as soon as the
/// response head has come (a client that believes a tunnel is open), and
/// reads what comes back for a while. Returns everything read.
async fn attempt<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, first: &[u8], inside: &[u8]) -> Vec<u8> {
    s.write_all(first).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head = tokio::time::timeout(Duration::from_secs(10), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(head.is_ok(), "no response head: {}", String::from_utf8_lossy(&buf));
    let _ = s.write_all(inside).await;
    let _ = s.flush().await;
    // Whatever the tunnel carries back (hypercorn answers the streams).
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    buf
}

/// Waits (bounded) until the upstream recorded `handler`; false if never.
async fn eventually_ran(up: &RealUpstream, handler: &str) -> bool {
    for _ in 0..50 {
        if !up.ran_handler(handler).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Issue 13 #1 against a real h2c server: an h2c upgrade on a path no route
/// covers, then HTTP/2 streams for the denied SQL console and a user
/// deletion. Directly, hypercorn switches and runs both. Through the
/// gateway, nothing is switched and neither runs.
#[tokio::test]
async fn h2c_tunnel_to_hypercorn_on_an_unrouted_path_runs_nothing() {
    let up = RealUpstream::start(Framework::Hypercorn).await;

    // The attack is real: hypercorn upgrades and executes the streams.
    let mut direct = tokio::net::TcpStream::connect(up.addr).await.expect("connect");
    let got = attempt(&mut direct, h2c_upgrade("/unrouted").as_bytes(), &h2_inside()).await;
    assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
    assert!(eventually_ran(&up, "sql.run").await, "{}", up.output());
    assert!(eventually_ran(&up, "user.delete").await, "{}", up.output());
    let before = up.ran().len();

    let gw = Gateway::default(up.addr).await;
    for path in ["/unrouted", "/UNROUTED?x=1", "/public/../unrouted"] {
        let mut tls = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
        let got = attempt(&mut tls, h2c_upgrade(path).as_bytes(), &h2_inside()).await;
        assert!(
            !got.starts_with(b"HTTP/1.1 101"),
            "{path}: the gateway switched protocols: {}",
            String::from_utf8_lossy(&got)
        );
    }
    // Give anything relayed time to be recorded before looking.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<_> = up.ran().into_iter().skip(before).collect();
    assert!(
        after
            .iter()
            .all(|r| r.handler != "sql.run" && r.handler != "user.delete"),
        "a sensitive action ran through the tunnel: {after:?}"
    );
    for r in &after {
        assert_eq!(r.raw["http_version"], "1.1", "{r:?}");
        let h = &r.headers;
        assert!(
            h.get("upgrade").is_none() && h.get("http2-settings").is_none(),
            "upgrade headers reached hypercorn: {h}"
        );
    }
}

/// Sends `first` to the fake-101 upstream through the gateway and then a
/// request "inside the tunnel"; returns the gateway's answer.
async fn through_gateway_to_fake101(gw: &Gateway, first: &str) -> Vec<u8> {
    let mut tls = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
    let inside = b"DELETE /admin/users/bob HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n";
    attempt(&mut tls, first.as_bytes(), inside).await
}

/// Issue 20 #5 against the real harness: the fake-101 server answers 101
/// (with a wrong or missing `Sec-WebSocket-Accept`) to a request that asked
/// for no upgrade, to an upgrade the gateway does not pass on, and to a
/// WebSocket handshake. None of them opens a tunnel: the request sent
/// afterwards on the client's connection never reaches the fake server's
/// "tunnel", where it would run unasserted.
#[tokio::test]
async fn fake101_upstream_never_gets_a_tunnel() {
    let up = RealUpstream::start(Framework::Fake101).await;

    // The attack is real: directly, the fake server runs what follows.
    let mut direct = tokio::net::TcpStream::connect(up.addr).await.expect("connect");
    let got = attempt(
        &mut direct,
        b"GET /ws HTTP/1.1\r\nhost: localhost\r\n\r\n",
        b"DELETE /admin/users/bob HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
    assert!(eventually_ran(&up, "user.delete").await, "{}", up.output());
    let before = up.ran().len();

    let gw = Gateway::default(up.addr).await;
    let attacks = [
        // No upgrade asked for at all.
        "GET /ws HTTP/1.1\r\nhost: localhost\r\n\r\n".to_owned(),
        // An upgrade the gateway removes.
        "GET /ws HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n".to_owned(),
        "GET /ws HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: TLS/1.2\r\n\r\n".to_owned(),
        // A WebSocket handshake answered with the wrong accept value.
        "GET /ws HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_owned(),
    ];
    for first in &attacks {
        let got = through_gateway_to_fake101(&gw, first).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.starts_with("HTTP/1.1 101"),
            "a 101 reached the client for {first:?}: {text}"
        );
        assert!(
            text.starts_with("HTTP/1.1 502"),
            "the upstream's 101 is answered with 502 for {first:?}: {text}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after: Vec<_> = up.ran().into_iter().skip(before).collect();
    assert_eq!(
        after.len(),
        attacks.len(),
        "only the first requests reached it: {after:?}"
    );
    for r in &after {
        assert_eq!(r.raw["tunnelled"], false, "{r:?}");
        assert_ne!(r.handler, "user.delete", "{r:?}");
        assert!(r.assertion.is_none(), "{r:?}");
    }
}
