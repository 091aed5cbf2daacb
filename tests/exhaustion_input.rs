//! Exhaustion by input size (issue 14): a 1 MiB request-target, JSON
//! nested 100,000 deep on a route with a body condition, a huge body
//! (declared and chunked) on a sensitive route, and a hold flood from 49
//! client addresses against the global hold limit. Real Flask upstream;
//! attackers and bystanders connect from their own 127.x addresses.
//! Nothing is timed: each wait has a generous guard that only stops a hang.

mod common;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Only a guard against a hang, never a measurement.
const HANG_GUARD: Duration = Duration::from_secs(60);

const ROUTES: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    when: [ { json: { pointer: /amount, gt: 10000 } } ]
    require: { methods: [token] }
    hold: { mode: challenge }
";

const BYSTANDER: &str = "127.0.0.60";

/// Parses whatever answer came before the gateway closed, if any.
fn parse(buf: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, buf[end + 4..].to_vec()))
}

/// Sends `head`, then `body_bytes` of body in 64 KiB writes while reading
/// the answer. Returns the answer and whether the whole body was taken.
async fn push(
    from: &str,
    gw: &Gateway,
    head: Vec<u8>,
    body: impl Fn(usize) -> Vec<u8> + Send + 'static,
    rounds: usize,
) -> (Option<(u16, Vec<u8>)>, bool) {
    let tls = tls_from(from, gw.addr, &gw.pki).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        if wr.write_all(&head).await.is_err() {
            return false;
        }
        for i in 0..rounds {
            if wr.write_all(&body(i)).await.is_err() || wr.flush().await.is_err() {
                return false;
            }
        }
        true
    });
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(HANG_GUARD, rd.read_to_end(&mut buf))
        .await
        .expect("the gateway must answer and close");
    let all_taken = tokio::time::timeout(HANG_GUARD, writer)
        .await
        .expect("the writer must end once the gateway closes")
        .expect("writer task");
    (parse(&buf), all_taken)
}

fn error_code(body: &[u8]) -> String {
    let json: serde_json::Value =
        serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    json["error"].as_str().unwrap_or("").to_owned()
}

async fn bystander_is_served(gw: &Gateway, up: &RealUpstream) {
    let before = up.ran_handler("item.update").len();
    let req = request("POST", "/api/items/7", &[("content-type", "application/json")], b"{}");
    let resp = raw_from(BYSTANDER, gw.addr, &gw.pki, &req).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.ran_handler("item.update").len(), before + 1);
}

#[tokio::test]
async fn a_one_mebibyte_request_target_is_refused_without_being_buffered() {
    panics::watch();
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, "").await;
    let query = "a".repeat(1 << 20);
    let head = format!("GET /legacy?q={query} HTTP/1.1\r\nhost: localhost\r\n\r\n").into_bytes();
    let (answer, _) = push("127.0.0.2", &gw, head, |_| Vec::new(), 0).await;
    let (status, _) = answer.expect("an answer, not a silent close");
    eprintln!("1 MiB request-target: {status}");
    // hyper refuses a head over limits.max_header_bytes before routing.
    assert!([400, 414, 431].contains(&status), "a 1 MiB request-target got {status}");
    assert!(up.ran_handler("legacy.view").is_empty(), "nothing was forwarded");

    // The same size over HTTP/2 (as a header: the `http` crate caps a URI
    // at 64 KiB on the client side): the header list is over its limit.
    let mut h2 = h2_client(gw.addr, &gw.pki).await;
    let req = hyper::Request::builder()
        .uri(format!("https://localhost:{}/legacy?q=1", gw.addr.port()))
        .header("x-pad", query.as_str())
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))
        .expect("request");
    let sent = tokio::time::timeout(HANG_GUARD, h2.send_request(req))
        .await
        .expect("the h2 request hangs");
    if let Ok(resp) = sent {
        assert!([400, 414, 431].contains(&resp.status().as_u16()), "{}", resp.status());
    }
    assert!(up.ran_handler("legacy.view").is_empty(), "nothing was forwarded");
    bystander_is_served(&gw, &up).await;
    assert_eq!(panics::outside_tests(), 0, "nothing panicked");
}

#[tokio::test]
async fn json_nested_100000_deep_on_a_route_with_a_body_condition_is_bad_request() {
    panics::watch();
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, "").await;
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let body = format!("{}1{}", open.repeat(100_000), close.repeat(100_000));
        let headers = [("cookie", "SESSIONID=deep"), ("content-type", "application/json")];
        let req = request("POST", "/api/transfers", &headers, body.as_bytes());
        let resp = raw_from("127.0.0.2", gw.addr, &gw.pki, &req).await;
        assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.error_code(), "bad_request");
    }
    assert!(up.ran_handler("transfer").is_empty(), "nothing was forwarded");
    // A shallow body still reaches the condition.
    let headers = [("cookie", "SESSIONID=shallow"), ("content-type", "application/json")];
    let req = request("POST", "/api/transfers", &headers, b"{\"amount\":20000}");
    let resp = raw_from(BYSTANDER, gw.addr, &gw.pki, &req).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "step_up_required");
    bystander_is_served(&gw, &up).await;
    assert_eq!(panics::outside_tests(), 0, "nothing panicked");
}

#[tokio::test]
async fn a_huge_body_on_a_sensitive_route_is_refused_without_being_read() {
    panics::watch();
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, "limits: { max_body: 64KiB }").await;
    let head = |framing: &str| {
        format!(
            "POST /api/transfers HTTP/1.1\r\nhost: localhost\r\ncookie: SESSIONID=huge\r\n\
             content-type: application/json\r\n{framing}\r\n\r\n"
        )
        .into_bytes()
    };
    // 10 GiB declared; the client offers 256 MiB of it.
    let (answer, all_taken) = push(
        "127.0.0.2",
        &gw,
        head("content-length: 10737418240"),
        |_| vec![b' '; 64 << 10],
        4096,
    )
    .await;
    let (status, body) = answer.expect("an answer to a declared huge body");
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error_code(&body), "body_too_large");
    assert!(!all_taken, "the gateway read 256 MiB of a body it refused");

    // Chunked, without end: the limit holds while streaming.
    let (answer, all_taken) = push(
        "127.0.0.2",
        &gw,
        head("transfer-encoding: chunked"),
        |_| {
            let mut c = b"10000\r\n".to_vec();
            c.extend(vec![b' '; 0x10000]);
            c.extend_from_slice(b"\r\n");
            c
        },
        4096,
    )
    .await;
    let (status, body) = answer.expect("an answer to a chunked huge body");
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error_code(&body), "body_too_large");
    assert!(!all_taken, "the gateway read 256 MiB of a body it refused");
    assert!(up.ran_handler("transfer").is_empty(), "nothing was forwarded");
    assert!(gw.gw.holds.open_holds().is_empty(), "no hold for a refused body");
    bystander_is_served(&gw, &up).await;
    assert_eq!(panics::outside_tests(), 0, "nothing panicked");
}

#[tokio::test]
async fn a_hold_flood_from_49_clients_meets_the_global_limit_and_a_fresh_client_gets_429() {
    panics::watch();
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, "limits: { max_holds: 40 }").await;
    let flood: Vec<_> = (2..=50)
        .flat_map(|host| (0..2).map(move |i| (host, i)))
        .map(|(host, i)| {
            let gw = gw.at(gw.addr);
            tokio::spawn(async move {
                let cookie = format!("SESSIONID=flood-{host}-{i}");
                let headers = [("cookie", cookie.as_str()), ("content-type", "application/json")];
                let req = request("POST", "/api/transfers", &headers, b"{\"amount\":20000}");
                let resp = raw_from(&format!("127.0.0.{host}"), gw.addr, &gw.pki, &req).await;
                (resp.status, resp.error_code())
            })
        })
        .collect();
    let mut codes = Vec::new();
    for f in flood {
        codes.push(f.await.expect("flood task"));
    }
    let held = codes.iter().filter(|c| c.0 == 401).count();
    assert_eq!(held, 40, "exactly the global limit was held: {codes:?}");
    assert!(
        codes
            .iter()
            .all(|c| *c == (401, "step_up_required".to_owned()) || *c == (429, "too_many_holds".to_owned())),
        "{codes:?}"
    );
    assert_eq!(gw.gw.holds.open_holds().len(), 40);

    // A fresh client is told so (SPEC §4.3), and its pass-through request
    // and a request that needs no hold go through.
    let headers = [("cookie", "SESSIONID=fresh"), ("content-type", "application/json")];
    let req = request("POST", "/api/transfers", &headers, b"{\"amount\":20000}");
    let resp = raw_from(BYSTANDER, gw.addr, &gw.pki, &req).await;
    assert_eq!(resp.status, 429, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "too_many_holds");
    let req = request("POST", "/api/transfers", &headers, b"{\"amount\":5}");
    let resp = raw_from(BYSTANDER, gw.addr, &gw.pki, &req).await;
    assert_eq!(resp.status, 200, "under the condition's threshold it is not held");
    bystander_is_served(&gw, &up).await;
    assert_eq!(up.ran_handler("transfer").len(), 1, "only the small transfer ran");
    assert_eq!(panics::outside_tests(), 0, "nothing panicked");
}
