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

const FAMILY: &[(&str, &str)] = &[
    ("forwarded", "for=10.0.0.1;host=admin.example;proto=https"),
    ("x-forwarded-for", "10.0.0.1"),
    ("x-forwarded-host", "admin.example"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-prefix", "/admin"),
    ("x-forwarded-uri", "/admin/users/bob/delete"),
    ("x-forwarded-port", "8080"),
    ("x-forwarded-server", "admin.example"),
    ("x-forwarded-client-cert", "Hash=abc;Subject=\"CN=admin\""),
    ("x-real-ip", "10.0.0.1"),
    ("true-client-ip", "10.0.0.1"),
    ("x-client-ip", "10.0.0.1"),
    ("x-original-forwarded-for", "10.0.0.1"),
];

/// From an untrusted peer the whole forwarding family is removed; only the
/// gateway's own three `X-Forwarded-*` values reach the upstream.
#[tokio::test]
async fn the_forwarding_family_from_an_untrusted_client_never_reaches_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let resp = raw(gw.addr, &gw.pki, &request("GET", "/public", FAMILY, b"")).await;
    assert_eq!(resp.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    let forwarding: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| FAMILY.iter().any(|(n, _)| *n == k.as_str()))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let want = [
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "localhost"),
    ];
    assert_eq!(forwarding.len(), want.len(), "{forwarding:?}");
    for (k, v) in want {
        assert_eq!(r.header(k).as_deref(), Some(v), "{forwarding:?}");
    }
}
