//! The budget for buffered request bodies (issue 20 #8): every body the
//! gateway reads into memory counts against a global budget and its
//! client's share from its first byte, whether it is still arriving, is
//! parked in a hold, or is on its way upstream. Clients are told apart by
//! their own source addresses (Linux answers all of 127/8 on `lo`), in
//! front of a real Flask upstream.

mod common;
mod holdkit;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use holdkit::*;
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const ROUTES: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [token] }
    hold: { mode: challenge, timeout: 2m }
";

/// 200 KiB bodies against 512 KiB shares: two fit, a third does not.
const BODY: usize = 200 << 10;
const SHARE: u64 = 512 << 10;
const A: &str = "127.0.0.2";
const B: &str = "127.0.0.3";

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to the gateway from the source address `from`.
async fn connect_from(gw: &Gateway, from: &str) -> Tls {
    tls_from(from, gw.addr, &gw.pki).await
}

/// A form body of `len` bytes whose one field shows, at the upstream,
/// whether it arrived whole.
fn form(len: usize) -> Vec<u8> {
    let mut body = b"v=".to_vec();
    body.resize(len, b'a');
    body
}

fn head(session: &str, framing: &str) -> String {
    format!(
        "POST /api/transfers HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         cookie: SESSIONID={session}\r\ncontent-type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n"
    )
}

/// A whole request from `from`; returns the response.
async fn post_from(gw: &Gateway, from: &str, session: &str, body: &[u8]) -> RawResponse {
    let mut tls = connect_from(gw, from).await;
    let mut req = head(session, &format!("content-length: {}", body.len())).into_bytes();
    req.extend_from_slice(body);
    tls.write_all(&req).await.expect("write");
    read_response(&mut tls).await
}

/// A request that declares `len` bytes and sends one KiB of them: it stays
/// open, mid-body, until the connection is dropped.
async fn stall_from(gw: &Gateway, from: &str, session: &str, len: usize) -> Tls {
    let mut tls = connect_from(gw, from).await;
    let req = head(session, &format!("content-length: {len}"));
    tls.write_all(req.as_bytes()).await.expect("write head");
    tls.write_all(&form(1024)).await.expect("write part of the body");
    tls.flush().await.expect("flush");
    tls
}

/// The head alone: a refusal must come without the body being sent.
async fn refused_unread(gw: &Gateway, from: &str, session: &str, len: usize) -> RawResponse {
    let mut tls = connect_from(gw, from).await;
    let req = head(session, &format!("content-length: {len}"));
    tls.write_all(req.as_bytes()).await.expect("write head");
    tokio::time::timeout(Duration::from_secs(10), read_response(&mut tls))
        .await
        .expect("answered before the body was sent")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Waits until `what` holds (a charge is given back when the connection
/// task notices its end), failing after ten seconds.
async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "never came true: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn held(resp: &RawResponse, what: &str) -> serde_json::Value {
    assert_eq!(
        (resp.status, resp.error_code()),
        (401, "step_up_required".to_owned()),
        "{what}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    resp.json()
}

fn too_many(resp: &RawResponse, what: &str) {
    assert_eq!(
        (resp.status, resp.error_code()),
        (429, "too_many_holds".to_owned()),
        "{what}: {}",
        String::from_utf8_lossy(&resp.body)
    );
}

/// Completes a hold with a bound token; the upstream must get the body
/// whole.
async fn release(gw: &Gateway, up: &RealUpstream, session: &str, ch: &serde_json::Value) {
    let before = up.ran_handler("transfer").len();
    let resp = complete_with_token(gw, &hold_id(ch), session, &bound_token(gw, ch)).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let ran = up.ran_handler("transfer");
    assert_eq!(ran.len(), before + 1);
    let v = ran[before].body["v"].as_str().expect("the form field arrived");
    assert_eq!(v.len(), BODY - 2, "the parked body went upstream whole");
}

#[tokio::test]
async fn a_client_over_its_share_is_refused_and_others_still_get_holds() {
    let up = RealUpstream::start(Framework::Flask).await;
    let extra = "limits: { max_body: 256KiB, max_buffered_bytes_per_client: 512KiB, max_buffered_bytes: 4MiB }";
    let gw = Gateway::start(up.addr, ROUTES, extra).await;

    // A parks one body and leaves a second one half-sent: both count.
    let first = held(&post_from(&gw, A, "a1", &form(BODY)).await, "A's first hold");
    let stalled = stall_from(&gw, A, "a2", BODY).await;
    until("A's stalled body is charged", || {
        gw.gw.bodies.client_used(ip(A)) == 2 * BODY as u64
    })
    .await;

    // A third body would pass A's share: refused before a byte of it is read.
    too_many(&refused_unread(&gw, A, "a3", BODY).await, "A over its share");
    // A body without a declared length is refused once it outgrows the
    // share, at the very byte, not cut short and parked.
    let rest = (SHARE - 2 * BODY as u64) as usize;
    let mut tls = connect_from(&gw, A).await;
    let mut req = head("a4", "transfer-encoding: chunked").into_bytes();
    req.extend_from_slice(format!("{:x}\r\n", rest + 1).as_bytes());
    req.extend_from_slice(&form(rest + 1));
    tls.write_all(&req).await.expect("write chunked");
    too_many(&read_response(&mut tls).await, "A's chunked body over its share");
    assert_eq!(gw.gw.bodies.client_used(ip(A)), 2 * BODY as u64);

    // B is not locked out by A.
    let b = held(&post_from(&gw, B, "b1", &form(BODY)).await, "B's hold");
    assert_eq!(gw.gw.holds.open_count(), 2, "only A's first and B's hold exist");

    // Releasing A's hold gives its bytes back once the forward is done.
    release(&gw, &up, "a1", &first).await;
    until("A's released body is given back", || {
        gw.gw.bodies.client_used(ip(A)) == BODY as u64
    })
    .await;
    let again = held(&post_from(&gw, A, "a5", &form(BODY)).await, "A after the release");

    // A client that goes away mid-body gives its share back too.
    drop(stalled);
    until("the stalled body is given back", || {
        gw.gw.bodies.client_used(ip(A)) == BODY as u64
    })
    .await;
    held(
        &post_from(&gw, A, "a6", &form(BODY)).await,
        "A after its stalled request went",
    );

    release(&gw, &up, "b1", &b).await;
    release(&gw, &up, "a5", &again).await;
    assert_eq!(
        up.ran_handler("transfer").len(),
        3,
        "each released hold ran once, nothing else"
    );
}

#[tokio::test]
async fn a_full_global_budget_refuses_and_comes_back_after_a_release() {
    let up = RealUpstream::start(Framework::Flask).await;
    // Room for three bodies in all, two per client.
    let extra = "limits: { max_body: 256KiB, max_buffered_bytes_per_client: 512KiB, max_buffered_bytes: 640KiB }";
    let gw = Gateway::start(up.addr, ROUTES, extra).await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    tokio::spawn(stepgate::proxy::admin::run(
        gw.gw.clone(),
        admin,
        std::future::pending(),
    ));

    let a = held(&post_from(&gw, A, "a1", &form(BODY)).await, "A's first hold");
    held(&post_from(&gw, A, "a2", &form(BODY)).await, "A's second hold");
    held(&post_from(&gw, B, "b1", &form(BODY)).await, "B's hold");
    assert_eq!(
        gauge(admin_addr).await,
        3 * BODY as u64,
        "the gauge shows the parked bodies"
    );

    // C has its whole share, but the budget is full.
    too_many(
        &refused_unread(&gw, "127.0.0.4", "c1", BODY).await,
        "C with the budget full",
    );
    too_many(&refused_unread(&gw, B, "b2", BODY).await, "B with the budget full");
    assert_eq!(gw.gw.holds.open_count(), 3);

    release(&gw, &up, "a1", &a).await;
    until("the released body is given back", || {
        gw.gw.bodies.used() == 2 * BODY as u64
    })
    .await;
    held(
        &post_from(&gw, "127.0.0.4", "c2", &form(BODY)).await,
        "C after a release",
    );
    assert_eq!(gauge(admin_addr).await, 3 * BODY as u64);
}

/// `stepgate_body_bytes_buffered` as the admin listener reports it.
async fn gauge(admin: std::net::SocketAddr) -> u64 {
    use tokio::io::AsyncReadExt;
    let mut tcp = tokio::net::TcpStream::connect(admin).await.expect("connect admin");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    out.lines()
        .find_map(|l| l.strip_prefix("stepgate_body_bytes_buffered "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no body_bytes_buffered gauge in:\n{out}"))
}

/// A request to the gateway's own endpoints from `from`, declaring `len`
/// body bytes and sending ten of them: it stays open, mid-body, until the
/// connection is dropped.
async fn stall_own_from(gw: &Gateway, from: &str, target: &str, len: usize) -> Tls {
    let mut tls = connect_from(gw, from).await;
    let head = format!(
        "POST {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {len}\r\n\r\n{{\"name\":\"x"
    );
    tls.write_all(head.as_bytes()).await.expect("write head");
    tls.flush().await.expect("flush");
    tls
}

/// A token proof for hold `ch` of `session`, sent from `from`.
async fn complete_from(gw: &Gateway, from: &str, session: &str, ch: &serde_json::Value) -> RawResponse {
    let c = holdkit::cookie(session);
    let body = serde_json::json!({"method": "token", "token": bound_token(gw, ch)}).to_string();
    let target = format!("/.stepup/holds/{}/complete", hold_id(ch));
    let headers = [("cookie", c.as_str()), ("content-type", "application/json")];
    raw_from(
        from,
        gw.addr,
        &gw.pki,
        &request("POST", &target, &headers, body.as_bytes()),
    )
    .await
}

/// The bodies the gateway reads for itself (sign-ins, proofs, approvals,
/// enrollments) are small and have a deadline, but a client with many
/// connections could still hold any number of them half-sent: they count
/// against its share like a sensitive route's body.
#[tokio::test]
async fn sign_in_and_proof_bodies_are_charged_to_their_client() {
    const PROOF_MAX: usize = 16 << 10;
    const PARKED: usize = 100;
    let up = RealUpstream::start(Framework::Flask).await;
    // A's share is exactly its parked body and two half-sent sign-ins.
    let share = 32 << 10;
    let extra =
        format!("limits: {{ max_body: 16KiB, max_buffered_bytes_per_client: {share}, max_buffered_bytes: 1MiB }}");
    let gw = Gateway::start(up.addr, ROUTES, &extra).await;

    let a = held(&post_from(&gw, A, "a1", &form(PARKED)).await, "A's hold");
    let b = held(&post_from(&gw, B, "b1", &form(PARKED)).await, "B's hold");
    let login = "/.stepup/approver/login";
    let first = stall_own_from(&gw, A, login, PROOF_MAX).await;
    let second = stall_own_from(&gw, A, "/.stepup/approver/login/options", share - PROOF_MAX - PARKED).await;
    until("A's half-sent sign-ins are charged to A", || {
        gw.gw.bodies.client_used(ip(A)) == share as u64
    })
    .await;
    assert_eq!(
        gw.gw.bodies.client_used(ip(B)),
        PARKED as u64,
        "B pays only for its own"
    );

    // A's share is used up: its proof and another sign-in are refused,
    // the sign-in before its body is sent.
    too_many(&complete_from(&gw, A, "a1", &a).await, "A's proof with its share used");
    let mut tls = connect_from(&gw, A).await;
    let head = format!("POST {login} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 64\r\n\r\n");
    tls.write_all(head.as_bytes()).await.expect("write head");
    too_many(
        &tokio::time::timeout(Duration::from_secs(10), read_response(&mut tls))
            .await
            .expect("answered before the body was sent"),
        "A's third sign-in",
    );
    assert_eq!(
        status_state(&gw, &hold_id(&a), "a1").await,
        "pending",
        "the refused proof touched nothing"
    );

    // B is not held back by A: its proof is read, checked and released.
    let resp = complete_from(&gw, B, "b1", &b).await;
    assert_eq!(resp.status, 200, "B's proof: {}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.ran_handler("transfer").len(), 1, "B's hold ran");

    // Once A's half-sent sign-ins are gone, A's proof goes through.
    drop((first, second));
    until("A's half-sent sign-ins are given back", || {
        gw.gw.bodies.client_used(ip(A)) == PARKED as u64
    })
    .await;
    let resp = complete_from(&gw, A, "a1", &a).await;
    assert_eq!(
        resp.status,
        200,
        "A's proof after: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(up.ran_handler("transfer").len(), 2, "each hold ran once");
    until("every body is given back", || gw.gw.bodies.used() == 0).await;
}
