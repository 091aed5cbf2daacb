//! Protocol upgrades (SPEC §2): only WebSocket is tunnelled, only after the
//! request satisfied its route, and only when the upstream's 101 answers
//! the client's handshake. Everything here performs the attack: it tries to
//! run a request inside a tunnel the gateway would never look into.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as a raw upstream parsed it off its socket.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    head: String,
}

/// An upstream that answers 101 to anything that asks for an upgrade (with
/// the headers `reply` gives it) and then goes on parsing HTTP/1.1 on the
/// same connection, as a careless server behind a tunnel would: whatever
/// arrives "inside the tunnel" runs as a request.
struct Careless {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Careless {
    async fn start(reply: &'static str) -> Careless {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let rec = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    continue;
                };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 8192];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match tcp.read(&mut tmp).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let mut len = 0usize;
                        for line in head.lines().skip(1) {
                            if let Some((k, v)) = line.split_once(':') {
                                if k.trim().eq_ignore_ascii_case("content-length") {
                                    len = v.trim().parse().unwrap_or(0);
                                }
                            }
                        }
                        while buf.len() < end + 4 + len {
                            match tcp.read(&mut tmp).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                            }
                        }
                        buf.drain(..end + 4 + len);
                        let mut first = head.lines().next().unwrap_or("").split(' ');
                        let method = first.next().unwrap_or("").to_owned();
                        let target = first.next().unwrap_or("").to_owned();
                        let upgrade = head.lines().any(|l| l.to_ascii_lowercase().starts_with("upgrade:"));
                        rec.lock().expect("lock").push(Seen { method, target, head });
                        let out = if upgrade {
                            format!("HTTP/1.1 101 Switching Protocols\r\n{reply}\r\n")
                        } else {
                            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_owned()
                        };
                        if tcp.write_all(out.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Careless { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn ran(&self, method: &str, target: &str) -> bool {
        self.seen().iter().any(|s| s.method == method && s.target == target)
    }
}

/// Sends `first`, reads its response, then writes `inside` on the same
/// connection (as a client would once it believed a tunnel was open) and
/// gives the gateway time to pass it on.
async fn tunnel_attempt(gw: &Gateway, first: &[u8], inside: &[u8]) -> RawResponse {
    let mut tls = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
    tls.write_all(first).await.expect("write");
    let resp = read_response(&mut tls).await;
    let _ = tls.write_all(inside).await;
    let _ = tls.flush().await;
    let mut rest = [0u8; 4096];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tls.read(&mut rest)).await;
    resp
}

const SMUGGLED: &[&[u8]] = &[
    b"POST /admin/sql/run HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n",
    b"DELETE /admin/users/carol HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n",
];

fn smuggled() -> Vec<u8> {
    SMUGGLED.concat()
}

/// An h2c upgrade on a path no route covers: the upgrade headers are
/// removed, the request is forwarded as a plain one, and no 101 comes back.
#[tokio::test]
async fn h2c_upgrade_is_never_tunnelled_with_a_careless_upstream() {
    let up = Careless::start("connection: upgrade\r\nupgrade: h2c\r\n").await;
    let gw = Gateway::default(up.addr).await;
    for (conn, upgrade) in [
        ("Upgrade, HTTP2-Settings", "h2c"),
        ("upgrade", "h2c"),
        ("upgrade", "TLS/1.2"),
        ("upgrade", "websocket, h2c"),
    ] {
        let first = format!(
            "GET /unrouted HTTP/1.1\r\nhost: localhost\r\nconnection: {conn}\r\nupgrade: {upgrade}\r\n\
             http2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        );
        let resp = tunnel_attempt(&gw, first.as_bytes(), &smuggled()).await;
        assert_ne!(resp.status, 101, "{upgrade}: the gateway must never answer 101");
    }
    assert!(!up.ran("POST", "/admin/sql/run"), "{:?}", up.seen());
    assert!(!up.ran("DELETE", "/admin/users/carol"), "{:?}", up.seen());
    for s in up.seen() {
        let head = s.head.to_ascii_lowercase();
        assert!(
            !head.contains("upgrade:") && !head.contains("http2-settings"),
            "upgrade headers reached the upstream: {head}"
        );
    }
}

/// A 101 that does not answer the client's WebSocket handshake opens no
/// tunnel: 502, and the connection is closed.
#[tokio::test]
async fn a_fake_websocket_101_opens_no_tunnel() {
    for reply in [
        // No accept value at all.
        "connection: upgrade\r\nupgrade: websocket\r\n",
        // An accept value for another key.
        "connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
        // The right accept value, another protocol.
        "connection: upgrade\r\nupgrade: h2c\r\nsec-websocket-accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n",
    ] {
        let up = Careless::start(reply).await;
        let gw = Gateway::default(up.addr).await;
        let first = b"GET /chat HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
            sec-websocket-version: 13\r\nsec-websocket-key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n";
        let resp = tunnel_attempt(&gw, first, &smuggled()).await;
        assert_eq!(resp.status, 502, "{reply}");
        assert_eq!(resp.error_code(), "upstream_unavailable");
        assert!(
            resp.header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close")),
            "{:?}",
            resp.headers
        );
        assert!(up.ran("GET", "/chat"), "the handshake itself was forwarded");
        assert!(!up.ran("POST", "/admin/sql/run"), "{:?}", up.seen());
        assert!(!up.ran("DELETE", "/admin/users/carol"), "{:?}", up.seen());
    }
}

/// A correct handshake still works, with the careless upstream answering
/// the right accept value: the tunnel carries bytes both ways.
#[tokio::test]
async fn a_correct_websocket_101_is_tunnelled() {
    let up = Careless::start(
        "connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n",
    )
    .await;
    let gw = Gateway::default(up.addr).await;
    let first = b"GET /chat HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
        sec-websocket-version: 13\r\nsec-websocket-key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n";
    let resp = tunnel_attempt(&gw, first, b"").await;
    assert_eq!(resp.status, 101);
}

/// A WebSocket handshake on a sensitive route is held on its own
/// connection (even on a `challenge` route: only that connection can carry
/// the tunnel). Once the step-up completes it is released as the upgrade it
/// was, with its assertion, and the tunnel carries messages.
#[tokio::test]
async fn a_released_websocket_hold_is_tunnelled() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let up = Upstream::start().await;
    let routes = "
  - name: live-console
    action: console.live
    match: { methods: [GET], path: /ws }
    require: { methods: [token] }
    hold: { mode: challenge, timeout: 30s }
";
    let gw = Gateway::start(up.addr, routes, "").await;
    let sid = gw.sid("ws-session");
    let tls = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
    let mut req = "wss://localhost/ws".into_client_request().expect("request");
    req.headers_mut()
        .insert("cookie", "SESSIONID=ws-session".parse().expect("hv"));
    let client = tokio::spawn(tokio_tungstenite::client_async(req, tls));

    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let id = loop {
        if let Some((m, _)) = gw
            .gw
            .holds
            .open_holds()
            .into_iter()
            .find(|(m, _)| m.sid.as_str() == sid)
        {
            break m.id.as_str().to_owned();
        }
        assert!(tokio::time::Instant::now() < until, "no hold for the handshake");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(up.count("/ws"), 0, "nothing reaches the upstream before the step-up");

    let token = gw.token(serde_json::json!({"sid": sid, "hold": id}));
    let body = serde_json::json!({"method": "token", "token": token}).to_string();
    let done = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            &format!("/.stepup/holds/{id}/complete"),
            &[("cookie", "SESSIONID=ws-session"), ("content-type", "application/json")],
            body.as_bytes(),
        ),
    )
    .await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    assert_eq!(done.json()["status"], "released");

    let (mut ws, resp) = client.await.expect("join").expect("the held handshake completes");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("after step-up")).await.expect("send");
    let echoed = ws.next().await.expect("message").expect("ok");
    assert_eq!(echoed.into_text().expect("text").as_str(), "after step-up");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].header("x-stepup-assertion").is_some(),
        "released with its assertion"
    );
}
