//! HTTP/2 floods (issue 14, exhaustion): rapid reset, CONTINUATION flood
//! and SETTINGS flood, written as raw frames over TLS with ALPN h2, since
//! a well-behaved client library cannot send these sequences. The attacker
//! connects from 127.0.0.2; the well-behaved clients (HTTP/1.1 from
//! 127.0.0.3, HTTP/2 from 127.0.0.1) must keep being served by the real
//! Flask upstream behind the gateway. Nothing here is timed: each wait has
//! a generous guard that only stops a hang.

mod common;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Only a guard against a hang, never a measurement.
const HANG_GUARD: Duration = Duration::from_secs(60);

const ROUTES: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [token] }
    hold: { mode: challenge }
";

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame: 24-bit length, type, flags, 31-bit stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame length");
    assert!(len < 1 << 24, "frame too long");
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 §5.1), H bit clear.
fn hpack_int(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A literal header field without indexing and with a literal name
/// (RFC 7541 §6.2.2): no state in either side's dynamic table.
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    hpack_int(out, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, value.len());
    out.extend_from_slice(value);
}

fn request_block(method: &str, path: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    hpack_literal(&mut b, ":method", method.as_bytes());
    hpack_literal(&mut b, ":scheme", b"https");
    hpack_literal(&mut b, ":authority", b"localhost");
    hpack_literal(&mut b, ":path", path);
    for (k, v) in extra {
        hpack_literal(&mut b, k, v.as_bytes());
    }
    b
}

type Tls = TlsStream<TcpStream>;

async fn h2_from(source: Ipv4Addr, gw: &Gateway) -> Tls {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind the client address");
    let tcp = socket.connect(gw.addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(gw.pki.client_config(&[b"h2"]))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

/// What the attacker saw of the connection by the time it ended.
#[derive(Debug, Default)]
struct Seen {
    /// The error code of the gateway's GOAWAY, if it sent one.
    goaway: Option<u32>,
    /// Response HEADERS frames the gateway sent.
    responses: usize,
    /// SETTINGS frames with the ACK flag.
    acks: usize,
}

/// Reads frames until the gateway closes the connection (or resets it).
async fn read_frames(mut rd: ReadHalf<Tls>) -> Seen {
    let mut seen = Seen::default();
    let mut head = [0u8; 9];
    loop {
        if rd.read_exact(&mut head).await.is_err() {
            return seen;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        if rd.read_exact(&mut payload).await.is_err() {
            return seen;
        }
        match head[3] {
            GOAWAY if payload.len() >= 8 => {
                seen.goaway = Some(u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]));
            }
            HEADERS => seen.responses += 1,
            SETTINGS if head[4] & 0x1 == 0x1 => seen.acks += 1,
            _ => {}
        }
    }
}

/// Connects, sends the preface and an empty SETTINGS, and starts reading.
async fn attacker(gw: &Gateway) -> (WriteHalf<Tls>, tokio::task::JoinHandle<Seen>) {
    let tls = h2_from(ATTACKER, gw).await;
    let (rd, mut wr) = tokio::io::split(tls);
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    wr.write_all(&hello).await.expect("preface");
    (wr, tokio::spawn(read_frames(rd)))
}

/// Writes `batch` over and over until the gateway stops taking it (the
/// connection is closed) or `rounds` are sent. Returns the rounds sent.
async fn flood(wr: &mut WriteHalf<Tls>, mut batch: impl FnMut(usize) -> Vec<u8>, rounds: usize) -> usize {
    for round in 0..rounds {
        let bytes = batch(round);
        if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
            return round;
        }
    }
    rounds
}

/// The well-behaved clients, during and after each attack: an HTTP/1.1
/// pass-through request and a sensitive one from 127.0.0.3, and an HTTP/2
/// request on a connection of its own.
async fn bystanders_are_served(gw: &Gateway, up: &RealUpstream) {
    let before = up.ran_handler("item.update").len();
    let resp = raw_from(
        "127.0.0.3",
        gw.addr,
        &gw.pki,
        &request("POST", "/api/items/7", &[("content-type", "application/json")], b"{}"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.ran_handler("item.update").len(), before + 1);

    let headers = [("cookie", "SESSIONID=bystander"), ("content-type", "application/json")];
    let resp = raw_from(
        "127.0.0.3",
        gw.addr,
        &gw.pki,
        &request("POST", "/api/transfers", &headers, b"{\"amount\":1}"),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "step_up_required");

    let mut h2 = h2_client(gw.addr, &gw.pki).await;
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}/api/items/8", gw.addr.port()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    let resp = tokio::time::timeout(HANG_GUARD, h2.send_request(req))
        .await
        .expect("the h2 bystander hangs")
        .expect("h2 response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("item.update"));
}

async fn ended(reader: tokio::task::JoinHandle<Seen>) -> Seen {
    tokio::time::timeout(HANG_GUARD, reader)
        .await
        .expect("the gateway must close the attacking connection")
        .expect("reader task")
}

#[tokio::test]
async fn rapid_reset_gets_goaway_and_others_are_served() {
    panics::watch();
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, "").await;

    let (mut wr, reader) = attacker(&gw).await;
    // Each round opens 100 streams and cancels each at once: a request
    // the gateway might start and must not keep, then a reset.
    let mut next = 1u32;
    let attack = tokio::spawn(async move {
        let sent = flood(
            &mut wr,
            |_| {
                let mut b = Vec::new();
                for _ in 0..100 {
                    let block = request_block("GET", b"/legacy", &[]);
                    b.extend(frame(HEADERS, END_STREAM | END_HEADERS, next, &block));
                    b.extend(frame(RST_STREAM, 0, next, &CANCEL.to_be_bytes()));
                    next += 2;
                }
                b
            },
            1000,
        )
        .await;
        (sent, wr)
    });
    bystanders_are_served(&gw, &up).await;
    let seen = ended(reader).await;
    let (sent, _wr) = attack.await.expect("attack task");
    eprintln!("rapid reset: {sent} rounds of 100 sent, {seen:?}");
    assert_eq!(
        seen.goaway,
        Some(ENHANCE_YOUR_CALM),
        "the flood ends with GOAWAY ENHANCE_YOUR_CALM ({seen:?})"
    );
    assert!(sent < 1000, "the gateway stopped the flood before it ended on its own");
    let ran = up.ran_handler("legacy.view").len();
    eprintln!("rapid reset: the upstream ran {ran} of {} requests", sent * 100);
    bystanders_are_served(&gw, &up).await;
    assert_eq!(panics::outside_tests(), 0, "nothing panicked");
}

#[tokio::test]
async fn a_continuation_flood_gets_goaway_and_others_are_served() {
    panics::watch();
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, "").await;

    let (mut wr, reader) = attacker(&gw).await;
    let attack = tokio::spawn(async move {
        // A HEADERS frame that never ends its header block, then
        // CONTINUATION frames that each add one more small header, and
        // never END_HEADERS.
        let block = request_block("GET", b"/legacy", &[]);
        let first = frame(HEADERS, END_STREAM, 1, &block);
        let mut started = false;
        flood(
            &mut wr,
            |i| {
                let mut b = if started { Vec::new() } else { first.clone() };
                started = true;
                let mut more = Vec::new();
                hpack_literal(&mut more, &format!("x-pad-{i}"), b"a");
                b.extend(frame(CONTINUATION, 0, 1, &more));
                b
            },
            1_000_000,
        )
        .await
    });
    bystanders_are_served(&gw, &up).await;
    let seen = ended(reader).await;
    let sent = tokio::time::timeout(HANG_GUARD, attack)
        .await
        .expect("the flood must stop being read")
        .expect("attack task");
    eprintln!("CONTINUATION flood: {sent} frames sent, {seen:?}");
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    assert_eq!(seen.responses, 0, "the never-ending request was not answered");
    assert!(up.ran_handler("legacy.view").is_empty(), "nothing was forwarded");
    bystanders_are_served(&gw, &up).await;
    assert_eq!(panics::outside_tests(), 0, "nothing panicked");
}

#[tokio::test]
async fn a_continuation_flood_of_empty_frames_gets_goaway() {
    panics::watch();
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, "").await;

    let (mut wr, reader) = attacker(&gw).await;
    let block = request_block("GET", b"/legacy", &[]);
    let mut bytes = frame(HEADERS, 0, 1, &block);
    let attack = tokio::spawn(async move {
        flood(
            &mut wr,
            |_| {
                let mut b = std::mem::take(&mut bytes);
                for _ in 0..1000 {
                    b.extend(frame(CONTINUATION, 0, 1, &[]));
                }
                b
            },
            10_000,
        )
        .await
    });
    let seen = ended(reader).await;
    let sent = attack.await.expect("attack task");
    eprintln!("empty CONTINUATION flood: {sent} rounds of 1000 sent, {seen:?}");
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    assert!(sent < 10_000);
    bystanders_are_served(&gw, &up).await;
    assert_eq!(panics::outside_tests(), 0, "nothing panicked");
}

#[tokio::test]
async fn a_settings_flood_is_not_buffered_and_others_are_served() {
    panics::watch();
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, "").await;

    // The attacker writes SETTINGS frames and never reads the ACKs. The
    // gateway acknowledges each before it reads the next, so once its
    // ACKs fill the socket buffers it stops reading: what the attacker
    // can push is bounded by those buffers, not by the gateway's memory.
    let tls = h2_from(ATTACKER, &gw).await;
    let (rd, mut wr) = tokio::io::split(tls);
    wr.write_all(PREFACE).await.expect("preface");
    // SETTINGS_MAX_CONCURRENT_STREAMS = 100 (id 3): 15 bytes a frame.
    let one = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    const PER_BATCH: usize = 4096;
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * PER_BATCH).collect();
    // 64 MiB of SETTINGS: far more than any socket buffer.
    let rounds = (64 << 20) / batch.len();
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let attack = tokio::spawn(async move {
        let sent = flood(
            &mut wr,
            |i| {
                let _ = progress_tx.send(i);
                batch.clone()
            },
            rounds,
        )
        .await;
        (sent, wr)
    });
    // Wait until the writer stops making progress: then the gateway has
    // stopped reading. (A writer that finished would mean it never did.)
    loop {
        match tokio::time::timeout(Duration::from_secs(3), progress.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => break,
            Err(_) => break,
        }
    }
    assert!(
        !attack.is_finished(),
        "the gateway read all {} MiB of SETTINGS without the ACKs being read",
        64
    );
    let stalled_at = *progress.borrow() * PER_BATCH * one.len();
    eprintln!(
        "SETTINGS flood: the gateway stopped reading after {} KiB",
        stalled_at >> 10
    );
    assert!(
        stalled_at < 32 << 20,
        "the gateway took {stalled_at} bytes of SETTINGS without its ACKs being read"
    );
    bystanders_are_served(&gw, &up).await;

    // Closing the attack frees its connection; the gateway goes on.
    attack.abort();
    drop(rd);
    bystanders_are_served(&gw, &up).await;
    assert_eq!(panics::outside_tests(), 0, "nothing panicked");
}
