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

/// A response the gateway makes itself (a refusal, its own endpoints) to a
/// HEAD request carries no body over HTTP/2 either: no DATA frame.
#[tokio::test]
async fn gateway_answers_to_head_over_http2_have_no_body() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let mut client = h2_client(gw.addr, &gw.pki).await;
    for (uri, status) in [
        ("https://localhost/admin/sql/run", 403),
        ("https://localhost/.stepup/jwks.json", 200),
        ("https://localhost/.stepup/nothing-here", 404),
        ("https://localhost/a%2fb", 400),
    ] {
        let req = http::Request::builder()
            .method("HEAD")
            .uri(uri)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = client.send_request(req).await.expect("h2 response");
        assert_eq!(resp.status(), status, "{uri}");
        let mut body = resp.into_body();
        let mut data = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame.expect("frame").into_data() {
                data += d.len();
            }
        }
        assert_eq!(data, 0, "{uri}: a HEAD response with a body");
    }
    assert!(up.requests().is_empty());
}

/// HTTP/2 cookie crumbs reach the HTTP/1.1 upstream as one `Cookie`
/// header, and the gateway binds the session it finds in the joined value.
#[tokio::test]
async fn http2_cookie_crumbs_are_joined_for_the_upstream_and_the_gateway() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let mut client = h2_client(gw.addr, &gw.pki).await;
    let crumbs = |method: &str, uri: &str| {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header("cookie", "theme=dark")
            .header("cookie", "SESSIONID=crumbs")
            .header("cookie", "lang=en; tz=utc")
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let resp = client
        .send_request(crumbs("GET", "https://localhost/public"))
        .await
        .expect("h2");
    assert_eq!(resp.status(), 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let cookies: Vec<_> = seen[0].headers.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["theme=dark; SESSIONID=crumbs; lang=en; tz=utc"]);

    let resp = client
        .send_request(crumbs("POST", "https://localhost/admin/users/bob/delete"))
        .await
        .expect("h2");
    assert_eq!(resp.status(), 401);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        v["sid"],
        gw.sid("crumbs"),
        "the hold is bound to the session in the crumbs"
    );
    assert_eq!(up.requests().len(), 1);
}

/// An upstream that reflects request headers, and one that tries to set the
/// gateway's own approver cookie. The upstream here is a few lines of raw
/// HTTP in this test (a reflecting app is easiest to write that way); the
/// client must see neither the assertion nor the planted cookie.
#[tokio::test]
async fn upstream_responses_never_carry_the_assertion_or_the_gateways_cookie_back() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&got).to_string();
                let assertion = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-stepup-assertion: "))
                    .unwrap_or("eyJhbGciOiJFUzI1NiJ9.e30.forged")
                    .to_owned();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nX-StepUp-Assertion: {assertion}\r\n\
                     Set-Cookie: __Host-stepgate-approver=planted; Path=/; Secure\r\n\
                     Set-Cookie: app=kept; Path=/\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = tcp.write_all(resp.as_bytes()).await;
            });
        }
    });
    let gw = Gateway::start(addr, TRANSFERS, "").await;
    let r = raw(gw.addr, &gw.pki, &request("GET", "/reflect", &[], b"")).await;
    assert_eq!(r.status, 200, "the upstream answered");
    assert!(
        r.header("x-stepup-assertion").is_none(),
        "assertion reflected to the client"
    );
    let cookies = r.headers_named("set-cookie");
    assert!(
        cookies.iter().any(|c| c.starts_with("app=kept")),
        "the app's own cookie stays: {cookies:?}"
    );
    assert!(
        !cookies
            .iter()
            .any(|c| c.to_ascii_lowercase().contains("stepgate-approver")),
        "the gateway's cookie was planted: {cookies:?}"
    );
}
