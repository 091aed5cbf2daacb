//! Bodies read once, by their one declared type (SPEC §2), attacked with
//! real upstreams behind the gateway. Each test first shows what the
//! upstream itself makes of the body (asked directly), then sends the same
//! bytes through the gateway: refused with 400, never held, never run.

mod common;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One plain-HTTP request straight to the upstream; returns the status.
async fn direct(addr: SocketAddr, target: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut req = format!("POST {target} HTTP/1.1\r\nHost: upstream.test\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect upstream");
    s.write_all(&bytes).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("upstream answers")
        .expect("read");
    std::str::from_utf8(buf.get(9..12).unwrap_or(b"000"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn through(gw: &Gateway, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    let mut h: Vec<(&str, &str)> = vec![("cookie", "SESSIONID=bodies")];
    h.extend_from_slice(headers);
    raw(gw.addr, &gw.pki, &request("POST", "/api/transfers", &h, body)).await
}

fn refused(resp: &RawResponse, what: &str) {
    assert_eq!(
        (resp.status, resp.error_code()),
        (400, "bad_request".to_owned()),
        "{what}: {}",
        String::from_utf8_lossy(&resp.body)
    );
}

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// Issue 13 #3: `payee=ACME&amount=5&payee=Mallory`. The approver was
/// shown one payee, the upstream paid another.
#[tokio::test]
async fn a_repeated_display_field_is_refused_and_never_held_or_run() {
    let routes = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [token] }
    display: [ { label: Payee, form: payee }, { label: Amount, form: amount } ]
    hold: { mode: challenge }
";
    let body = b"payee=ACME&amount=5&payee=Mallory";
    for framework in [Framework::Flask, Framework::Express] {
        let up = RealUpstream::start(framework).await;
        assert_eq!(
            direct(up.addr, "/api/transfers", &[("Content-Type", FORM)], body).await,
            200
        );
        assert_eq!(
            up.ran_handler("transfer").len(),
            1,
            "{framework:?} runs it: {:?}",
            up.ran()
        );

        let gw = Gateway::start(up.addr, routes, "").await;
        for body in [
            &body[..],
            b"payee=ACME&amount=5&Payee=Mallory",
            b"payee=ACME&amount=5;payee=Mallory",
            b"payee=ACME&amount=5&payee[]=Mallory",
            b"amount=5&_method=POST&_method=DELETE&payee=ACME",
        ] {
            let resp = through(&gw, &[("content-type", FORM)], body).await;
            refused(&resp, &format!("{framework:?} {}", String::from_utf8_lossy(body)));
        }
        assert!(gw.gw.holds.open_holds().is_empty(), "nothing held");
        assert_eq!(up.ran_handler("transfer").len(), 1, "{framework:?} ran nothing more");

        // One copy of each is held as usual, showing what the upstream reads.
        let resp = through(&gw, &[("content-type", FORM)], b"payee=ACME&amount=5").await;
        assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
        let holds = gw.gw.holds.open_holds();
        assert_eq!(holds.len(), 1);
        assert_eq!(
            holds[0].0.display,
            vec![
                ("Payee".to_owned(), "ACME".to_owned()),
                ("Amount".to_owned(), "5".to_owned())
            ]
        );
    }
}

/// Issue 20 #1: a JSON display read out of a body declared as a form; the
/// approver saw "Amount 5", Flask moved 1000000 to mallory.
#[tokio::test]
async fn a_json_display_never_reads_a_form_body() {
    let routes = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [token] }
    display: [ { label: Amount, json: /amount }, { label: Payee, json: /payee } ]
    hold: { mode: challenge }
";
    let body = br#"{"amount":5,"payee":"x","z":"&amount=1000000&payee=mallory&y="}"#;
    let up = RealUpstream::start(Framework::Flask).await;
    assert_eq!(
        direct(up.addr, "/api/transfers", &[("Content-Type", FORM)], body).await,
        200
    );
    let ran = up.ran_handler("transfer");
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].body["amount"], "1000000", "Flask's reading: {:?}", ran[0].body);
    assert_eq!(ran[0].body["payee"], "mallory");

    let gw = Gateway::start(up.addr, routes, "").await;
    refused(&through(&gw, &[("content-type", FORM)], body).await, "form declared");
    assert!(
        gw.gw.holds.open_holds().is_empty(),
        "nothing held, nothing shown to an approver"
    );
    // Declared as JSON, it is JSON to both.
    let resp = through(&gw, &[("content-type", JSON)], body).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        up.ran_handler("transfer").len(),
        1,
        "Flask ran nothing through the gateway"
    );
}

const RISKY: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    when: [ { json: { pointer: /amount, gt: 10000 } } ]
    require: { methods: [token] }
    hold: { mode: challenge }
";

const SMUGGLED: &[u8] = br#"{"amount":5,"payee":"x","z":"&amount=1000000&payee=mallory&y="}"#;

/// Issue 20 #2: no `Content-Type`. The gateway read JSON (amount 5, below
/// the threshold) and forwarded at once; Rack reads a body without a type
/// as a form and moved 1000000.
#[tokio::test]
async fn a_body_without_a_type_is_refused_before_rack_reads_it_as_a_form() {
    let up = RealUpstream::start(Framework::Rack).await;
    assert_eq!(direct(up.addr, "/api/transfers", &[], SMUGGLED).await, 200);
    let ran = up.ran_handler("transfer");
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].body["amount"], "1000000", "Rack's reading: {:?}", ran[0].body);

    let gw = Gateway::start(up.addr, RISKY, "").await;
    refused(&through(&gw, &[], SMUGGLED).await, "no content type");
    assert_eq!(
        up.ran_handler("transfer").len(),
        1,
        "Rack ran nothing through the gateway"
    );
    // The same bytes, declared as JSON, are JSON to Rack's app too and pass.
    let resp = through(&gw, &[("content-type", JSON)], SMUGGLED).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

/// Issue 20 #2: two `Content-Type` headers. The gateway read the first
/// (JSON, amount 5); the Werkzeug server keeps the last (a form, 1000000).
#[tokio::test]
async fn two_content_types_are_refused_before_werkzeug_keeps_the_last() {
    let up = RealUpstream::start(Framework::Flask).await;
    let two = [("Content-Type", JSON), ("Content-Type", FORM)];
    assert_eq!(direct(up.addr, "/api/transfers", &two, SMUGGLED).await, 200);
    let ran = up.ran_handler("transfer");
    assert_eq!(ran.len(), 1);
    assert_eq!(
        ran[0].body["amount"], "1000000",
        "Werkzeug's reading: {:?}",
        ran[0].body
    );

    let gw = Gateway::start(up.addr, RISKY, "").await;
    for types in [&two[..], &[("Content-Type", FORM), ("Content-Type", JSON)]] {
        refused(&through(&gw, types, SMUGGLED).await, &format!("{types:?}"));
    }
    refused(
        &through(
            &gw,
            &[("Content-Type", "application/json, application/x-www-form-urlencoded")],
            SMUGGLED,
        )
        .await,
        "a list of types",
    );
    assert_eq!(
        up.ran_handler("transfer").len(),
        1,
        "Flask ran nothing through the gateway"
    );
}
