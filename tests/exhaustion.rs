//! Exhaustion: slow and idle clients are cut off by the configured limits
//! and never starve anyone else. The attacker connects from 127.0.0.2, the
//! well-behaved client from 127.0.0.3, both to a real Flask upstream behind
//! the gateway. Nothing here measures time: the limits are set short, the
//! attacks would otherwise last minutes, and the tests assert on outcomes
//! (what each client got, what the upstream ran). Each wait has a generous
//! guard that only stops a hang.

mod common;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const BYSTANDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Only a guard against a hang, never a measurement.
const HANG_GUARD: Duration = Duration::from_secs(60);

const ROUTES: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [token] }
    hold: { mode: challenge }
";

const LIMITS: &str = "limits: { body_read_timeout: 1s, header_read_timeout: 1s }";

async fn tcp_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind the client address");
    socket.connect(to).await.expect("connect")
}

async fn tls_from(source: Ipv4Addr, gw: &Gateway) -> TlsStream<TcpStream> {
    let tcp = tcp_from(source, gw.addr).await;
    let connector = tokio_rustls::TlsConnector::from(gw.pki.client_config(&[b"http/1.1"]));
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake")
}

/// A request head announcing `len` body bytes that will come slowly.
fn slow_head(target: &str, len: usize) -> Vec<u8> {
    format!(
        "POST {target} HTTP/1.1\r\nhost: localhost\r\ncookie: SESSIONID=slow\r\n\
         content-type: application/octet-stream\r\ncontent-length: {len}\r\n\r\n"
    )
    .into_bytes()
}

/// Sends `head` at once, then trickles `len` body bytes one at a time
/// (a byte every 100 ms, so the whole body would take minutes), and
/// returns what the gateway answered, or `None` if it closed without one.
async fn trickle_body(gw: &Gateway, target: &str, len: usize) -> Option<RawResponse> {
    let tls = tls_from(ATTACKER, gw).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    wr.write_all(&slow_head(target, len)).await.expect("write head");
    let writer = tokio::spawn(async move {
        for _ in 0..len {
            if wr.write_all(b"x").await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(HANG_GUARD, rd.read_to_end(&mut buf))
        .await
        .expect("the gateway must cut off a trickled body");
    writer.abort();
    // A reset after the answer is fine: the answer is what counts.
    let _ = read;
    parse(&buf)
}

fn parse(buf: &[u8]) -> Option<RawResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(RawResponse {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    })
}

/// The well-behaved client: a pass-through request and a sensitive one,
/// each on its own connection from its own address.
async fn bystander_is_served(gw: &Gateway, up: &RealUpstream) {
    let mut tls = tls_from(BYSTANDER, gw).await;
    tls.write_all(&request(
        "POST",
        "/api/items/7",
        &[("content-type", "application/json")],
        b"{}",
    ))
    .await
    .expect("write");
    let resp = read_response(&mut tls).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(
        !up.ran_handler("item.update").is_empty(),
        "the pass-through request ran"
    );

    let mut tls = tls_from(BYSTANDER, gw).await;
    let headers = [("cookie", "SESSIONID=bystander"), ("content-type", "application/json")];
    tls.write_all(&request("POST", "/api/transfers", &headers, b"{\"amount\":1}"))
        .await
        .expect("write");
    let resp = read_response(&mut tls).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "step_up_required");
}

#[tokio::test]
async fn a_body_trickled_to_a_sensitive_route_is_cut_off_with_bad_request_and_others_are_served() {
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, LIMITS).await;

    let attacks: Vec<_> = (0..16)
        .map(|_| {
            let gw = gw.at(gw.addr);
            tokio::spawn(async move { trickle_body(&gw, "/api/transfers", 4000).await })
        })
        .collect();
    bystander_is_served(&gw, &up).await;
    for attack in attacks {
        let resp = attack
            .await
            .expect("attack task")
            .expect("an answer, not a silent close");
        assert_eq!(resp.status, 400);
        let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON error body");
        assert_eq!(json["error"], "bad_request", "{json}");
    }
    assert!(
        up.ran_handler("transfer").is_empty(),
        "no trickled request was forwarded"
    );
    let holds = gw.gw.holds.open_holds();
    assert_eq!(
        holds.len(),
        1,
        "only the bystander's hold; none for a body that never came"
    );
    // And the gateway still serves once the attack is over.
    bystander_is_served(&gw, &up).await;
}

#[tokio::test]
async fn a_trickled_request_head_is_cut_off_and_others_are_served() {
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, LIMITS).await;

    let attacks: Vec<_> = (0..16)
        .map(|_| {
            let gw = gw.at(gw.addr);
            tokio::spawn(async move {
                let tls = tls_from(ATTACKER, &gw).await;
                let (mut rd, mut wr) = tokio::io::split(tls);
                let head = request("POST", "/api/transfers", &[("cookie", "SESSIONID=slow")], b"{}");
                let writer = tokio::spawn(async move {
                    for b in head {
                        if wr.write_all(&[b]).await.is_err() || wr.flush().await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
                let mut buf = Vec::new();
                let _ = tokio::time::timeout(HANG_GUARD, rd.read_to_end(&mut buf))
                    .await
                    .expect("the gateway must cut off a trickled head");
                let finished = writer.is_finished();
                writer.abort();
                (buf, finished)
            })
        })
        .collect();
    bystander_is_served(&gw, &up).await;
    for attack in attacks {
        let (buf, finished) = attack.await.expect("attack task");
        assert!(!finished, "the head was cut off before the client could finish it");
        if let Some(resp) = parse(&buf) {
            assert_eq!(resp.status, 408, "a cut-off head gets no other answer");
        }
    }
    assert!(up.ran_handler("transfer").is_empty());
}

#[tokio::test]
async fn idle_connections_are_closed_and_do_not_starve_others() {
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, &LIMITS.replace(" }", ", max_connections: 40 }")).await;

    // Half never send a byte after the handshake, half send one request on
    // a keep-alive connection and then go quiet.
    let mut idle = Vec::new();
    for i in 0..30 {
        let mut tls = tls_from(ATTACKER, &gw).await;
        if i % 2 == 1 {
            let req = b"GET /public HTTP/1.1\r\nhost: localhost\r\n\r\n";
            tls.write_all(req).await.expect("write");
        }
        idle.push(tls);
    }
    bystander_is_served(&gw, &up).await;
    for (i, mut tls) in idle.into_iter().enumerate() {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(HANG_GUARD, tls.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "idle connection {i} was never closed");
        if i % 2 == 1 {
            assert!(buf.starts_with(b"HTTP/1.1 200"), "the one request was answered first");
        }
    }
    // Their slots came back: the full limit is usable again.
    let mut again = Vec::new();
    for _ in 0..30 {
        again.push(tls_from(BYSTANDER, &gw).await);
    }
    bystander_is_served(&gw, &up).await;
}
