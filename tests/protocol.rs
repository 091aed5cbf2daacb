//! Headers and protocol details where the gateway and the upstream could
//! read one request differently (SPEC §2): `Connection` naming what the
//! gateway reads, the forwarding header family, HTTP/2 cookie crumbs,
//! gateway answers to HEAD, and what an upstream response may carry back.

mod common;

use common::*;

const TRANSFERS: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    when:
      - json: { pointer: /amount, gt: 10000 }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: tagged
    action: tagged.op
    match: { methods: [POST], path: /api/tagged, headers: { x-tenant: '^ops$' } }
    require: { methods: [token] }
    hold: { mode: challenge }
";

/// `Connection: Content-Type` used to strip the header after the risk
/// check had read the body as JSON, so the upstream read the same bytes
/// some other way. Naming any header the gateway reads is refused, and
/// nothing reaches the upstream.
#[tokio::test]
async fn connection_may_not_name_a_header_the_gateway_reads() {
    let up = Upstream::start().await;
    let gw = Gateway::start(
        up.addr,
        TRANSFERS,
        "identity: { header: X-Remote-User }\ntrusted_proxies: [127.0.0.1/32]",
    )
    .await;
    let body = br#"{"amount":5,"z":"&amount=1000000&payee=mallory&y="}"#;
    for named in [
        "Content-Type",
        "content-length",
        "close, Host",
        "keep-alive,Cookie",
        "Authorization",
        "X-StepUp-Token",
        "X-HTTP-Method-Override",
        "X-Remote-User",
        "X-Tenant",
    ] {
        let req = request(
            "POST",
            "/api/transfers",
            &[
                ("content-type", "application/json"),
                ("cookie", "SESSIONID=conn"),
                ("connection", named),
            ],
            body,
        );
        let resp = raw(gw.addr, &gw.pki, &req).await;
        assert_eq!(resp.status, 400, "Connection: {named}");
        assert_eq!(resp.error_code(), "bad_request");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    // Naming a header the gateway does not read still just drops it.
    let req = request(
        "POST",
        "/api/transfers",
        &[
            ("content-type", "application/json"),
            ("cookie", "SESSIONID=conn"),
            ("x-trace", "1"),
            ("connection", "keep-alive, X-Trace"),
        ],
        body,
    );
    let resp = raw(gw.addr, &gw.pki, &req).await;
    assert_eq!(resp.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].header("x-trace").is_none());
    assert_eq!(seen[0].header("content-type").as_deref(), Some("application/json"));
}
