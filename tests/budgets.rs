//! Hold budgets per client address (issue 13 #9): a flood of holds from
//! throwaway sessions meets its own client's quota, and other clients
//! still get theirs. Real Flask upstream behind the gateway.

mod common;

use common::upstreams::{Framework, RealUpstream};
use common::*;

const ROUTES: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [token] }
    hold: { mode: challenge }
";

/// The test client is 127.0.0.1; trusting it as a proxy lets each request
/// name its client address in `X-Forwarded-For`.
async fn hold_from(gw: &Gateway, client: &str, session: &str, body: &[u8]) -> RawResponse {
    let cookie = format!("SESSIONID={session}");
    let headers = [
        ("cookie", cookie.as_str()),
        ("x-forwarded-for", client),
        ("content-type", "application/octet-stream"),
    ];
    raw(gw.addr, &gw.pki, &request("POST", "/api/transfers", &headers, body)).await
}

#[tokio::test]
async fn one_clients_flood_meets_its_own_quota_and_others_still_get_holds() {
    let up = RealUpstream::start(Framework::Flask).await;
    let extra = "trusted_proxies: [127.0.0.1/32]
limits: { max_holds: 12, max_holds_per_session: 2, max_holds_per_client: 5 }";
    let gw = Gateway::start(up.addr, ROUTES, extra).await;
    let mut codes = Vec::new();
    for i in 0..20 {
        let resp = hold_from(&gw, "203.0.113.7", &format!("throwaway-{i}"), b"x").await;
        codes.push((resp.status, resp.error_code()));
    }
    let held = codes.iter().filter(|c| c.0 == 401).count();
    assert_eq!(held, 5, "{codes:?}");
    assert!(
        codes[5..].iter().all(|c| *c == (429, "too_many_holds".to_owned())),
        "{codes:?}"
    );
    // Another client, and another IPv6 /64, are served as before.
    for client in ["198.51.100.9", "2001:db8:1:2::1", "2001:db8:1:3::1"] {
        let resp = hold_from(&gw, client, &format!("own-{client}"), b"x").await;
        assert_eq!(resp.status, 401, "{client}: {}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.error_code(), "step_up_required");
    }
    // The /64 is one client: a flood spread over its addresses meets one quota.
    let mut v6 = Vec::new();
    for i in 0..8 {
        let resp = hold_from(&gw, &format!("2001:db8:1:2::{:x}", 100 + i), &format!("v6-{i}"), b"x").await;
        v6.push(resp.status);
    }
    assert_eq!(v6.iter().filter(|s| **s == 401).count(), 4, "{v6:?}");
    assert!(up.ran_handler("transfer").is_empty(), "nothing held was run");
}

#[tokio::test]
async fn held_bytes_are_budgeted_per_client() {
    let up = RealUpstream::start(Framework::Flask).await;
    let extra = "trusted_proxies: [127.0.0.1/32]
limits: { max_held_bytes: 160KiB, max_held_bytes_per_client: 64KiB }";
    let gw = Gateway::start(up.addr, ROUTES, extra).await;
    let body = vec![b'a'; 20 << 10];
    let mut codes = Vec::new();
    for i in 0..10 {
        let resp = hold_from(&gw, "203.0.113.7", &format!("big-{i}"), &body).await;
        codes.push(resp.status);
    }
    assert_eq!(codes.iter().filter(|s| **s == 401).count(), 3, "{codes:?}");
    assert!(codes[3..].iter().all(|s| *s == 429), "{codes:?}");
    for client in ["198.51.100.9", "198.51.100.10"] {
        let resp = hold_from(&gw, client, &format!("own-{client}"), &body).await;
        assert_eq!(resp.status, 401, "{client}: {}", String::from_utf8_lossy(&resp.body));
    }
}

/// Issue 20 #8: a route whose `when:` reads the body used to buffer up to
/// `max_body` before looking at the session. Now a request without a
/// session is refused before its body is read: the client gets its 401
/// while it has sent only the head, and the body is never awaited.
#[tokio::test]
async fn a_request_without_a_session_is_refused_before_its_body_is_read() {
    use tokio::io::AsyncWriteExt;
    let up = RealUpstream::start(Framework::Flask).await;
    let routes = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    when: [ { json: { pointer: /amount, gt: 10000 } } ]
    require: { methods: [token] }
    hold: { mode: challenge }
";
    let gw = Gateway::start(up.addr, routes, "").await;
    // Many such requests at once, each promising a large body it never sends.
    let mut waiting = Vec::new();
    for _ in 0..40 {
        let (addr, pki) = (gw.addr, &gw.pki);
        let mut tls = tls_connect(addr, pki, &[b"http/1.1"]).await;
        let head = "POST /api/transfers HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                    content-length: 900000\r\n\r\n{\"amount\":";
        tls.write_all(head.as_bytes()).await.expect("write head");
        waiting.push(tls);
    }
    for mut tls in waiting {
        let resp = tokio::time::timeout(std::time::Duration::from_secs(5), read_response(&mut tls))
            .await
            .expect("answered without the body");
        assert_eq!((resp.status, resp.error_code()), (401, "no_session".to_owned()));
    }
    // Another client with a session is served meanwhile.
    let headers = [("cookie", "SESSIONID=s"), ("content-type", "application/json")];
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/api/transfers", &headers, br#"{"amount":5}"#),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.ran_handler("transfer").len(), 1);
}
