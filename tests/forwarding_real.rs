//! The forwarding headers against a real framework (issue 13, finding 11):
//! Flask behind Werkzeug's `ProxyFix`, deployed as Werkzeug documents for an
//! app behind one reverse proxy (it believes one hop of `X-Forwarded-For`,
//! `-Proto`, `-Host`, `-Port` and `-Prefix`). What the app believes about
//! the client and about itself must be exactly what the gateway sent, never
//! what the client wrote: straight to the app, a client's own
//! `X-Forwarded-Host: admin.example` runs the app's admin virtual host and
//! `X-Forwarded-Prefix` moves its URL root; through the gateway, none of the
//! forwarding family a client sends reaches the app.
#![allow(clippy::unwrap_used)]

mod common;
mod holdkit;

use common::upstreams::{Framework, Ran, RealUpstream};
use common::*;
use holdkit::{bound_token, complete_with_token, hold_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything a client might write to steer what the app believes: the
/// three the gateway sets, the rest of the family it removes, and the
/// standard `Forwarded`.
const SPOOFED: &[(&str, &str)] = &[
    ("x-forwarded-for", "10.9.8.7"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-host", "admin.example"),
    ("x-forwarded-port", "8080"),
    ("x-forwarded-prefix", "/admin"),
    ("x-forwarded-uri", "/admin/sql/run"),
    ("x-forwarded-server", "admin.example"),
    ("x-forwarded-client-cert", "Hash=abc;Subject=\"CN=admin\""),
    ("forwarded", "for=10.9.8.7;host=admin.example;proto=http"),
    ("x-real-ip", "10.9.8.7"),
    ("true-client-ip", "10.9.8.7"),
    ("x-client-ip", "10.9.8.7"),
    ("x-original-forwarded-for", "10.9.8.7"),
];

/// The client's own address: not the address the gateway connects to the
/// app from (127.0.0.1), so the app's idea of the client can only come from
/// the `X-Forwarded-For` the gateway wrote.
const CLIENT_IP: &str = "127.0.0.2";

/// One HTTP/1.1 request over TLS from [`CLIENT_IP`].
async fn from_client(gw: &Gateway, request: &[u8]) -> RawResponse {
    raw_from(CLIENT_IP, gw.addr, &gw.pki, request).await
}

/// The same request straight to the app over plain HTTP, as an attacker
/// who could reach it directly would send it.
async fn straight(up: &RealUpstream, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(up.addr).await.expect("connect app");
    s.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

fn field(r: &Ran, key: &str) -> String {
    r.raw[key].as_str().unwrap_or_default().to_owned()
}

/// What the app believed, for one recorded request.
fn believed(r: &Ran) -> (String, String, String, String) {
    (
        field(r, "remote_addr"),
        field(r, "scheme"),
        field(r, "host_port"),
        field(r, "url_root"),
    )
}

/// The forwarding family as the app received it, by lower-case name.
fn family_seen(r: &Ran) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = r
        .headers
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or_default().to_owned()))
        .filter(|(k, _)| SPOOFED.iter().any(|(n, _)| n == k))
        .collect();
    seen.sort();
    seen
}

/// What the gateway sends, and all the app may see of the family.
fn gateway_family() -> Vec<(String, String)> {
    vec![
        ("x-forwarded-for".into(), "127.0.0.2".into()),
        ("x-forwarded-host".into(), "localhost".into()),
        ("x-forwarded-proto".into(), "https".into()),
    ]
}

#[tokio::test]
async fn the_app_behind_proxyfix_believes_the_gateway_and_never_the_client() {
    let up = RealUpstream::start(Framework::FlaskProxyFix).await;
    let gw = Gateway::start(up.addr, DEFAULT_ROUTES, "").await;

    // Straight to the app the spoof works: this is what ProxyFix does with
    // whatever reaches it, so the gateway is all that stands in between.
    let answer = straight(&up, &request("GET", "/legacy", SPOOFED, b"")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let direct = up.ran();
    assert_eq!(direct.len(), 1, "{direct:?}");
    assert_eq!(
        direct[0].handler, "admin.vhost",
        "the spoofed host reached the admin vhost"
    );
    assert_eq!(
        believed(&direct[0]),
        (
            "10.9.8.7".into(),
            "http".into(),
            "admin.example:8080".into(),
            "http://admin.example:8080/admin/".into()
        )
    );

    // Through the gateway, a page no route covers.
    let resp = from_client(&gw, &request("GET", "/legacy", SPOOFED, b"")).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let ran = up.ran();
    assert_eq!(ran.len(), 2, "{ran:?}");
    let r = &ran[1];
    assert_eq!(r.handler, "legacy.view", "the spoofed host changed what the app ran");
    assert_eq!(
        believed(r),
        (
            "127.0.0.2".into(),
            "https".into(),
            "localhost".into(),
            "https://localhost/".into()
        ),
        "the client address, scheme, host and root the app believes"
    );
    assert_eq!(field(r, "peer"), "127.0.0.1", "the app's TCP peer is the gateway");
    assert_eq!(family_seen(r), gateway_family());

    // A held request, released after its step-up, arrives the same way.
    let mut headers = vec![("cookie", "SESSIONID=forwarding")];
    headers.extend_from_slice(SPOOFED);
    let resp = from_client(&gw, &request("POST", "/admin/users/bob/delete", &headers, b"")).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    let ch = resp.json();
    let done = complete_with_token(&gw, &hold_id(&ch), "forwarding", &bound_token(&gw, &ch)).await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    let deleted = up.ran_handler("user.delete");
    assert_eq!(deleted.len(), 1, "{:?}", up.ran());
    let r = &deleted[0];
    assert!(r.assertion.is_some(), "released with its assertion");
    assert_eq!(
        believed(r),
        (
            "127.0.0.2".into(),
            "https".into(),
            "localhost".into(),
            "https://localhost/".into()
        )
    );
    assert_eq!(family_seen(r), gateway_family());
    assert!(
        up.ran_handler("admin.vhost").len() == 1,
        "only the direct request ran the admin vhost"
    );
}

/// Over HTTP/2 the host is `:authority`; a client's `x-forwarded-host`
/// still cannot make the app believe another host.
#[tokio::test]
async fn a_spoofed_forwarded_host_over_http2_cannot_change_the_apps_host() {
    use bytes::Bytes;
    use http_body_util::Full;
    let up = RealUpstream::start(Framework::FlaskProxyFix).await;
    let gw = Gateway::start(up.addr, DEFAULT_ROUTES, "").await;
    let mut client = h2_client(gw.addr, &gw.pki).await;
    let mut req = http::Request::builder().method("GET").uri("https://localhost/legacy");
    for (k, v) in SPOOFED {
        req = req.header(*k, *v);
    }
    let resp = client
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("h2");
    assert_eq!(resp.status(), 200);
    let ran = up.ran();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0].handler, "legacy.view");
    assert_eq!(field(&ran[0], "host_port"), "localhost");
    assert_eq!(field(&ran[0], "url_root"), "https://localhost/");
    assert_eq!(field(&ran[0], "remote_addr"), "127.0.0.1");
    let mut want = gateway_family();
    want[0].1 = "127.0.0.1".into();
    assert_eq!(family_seen(&ran[0]), want);
}
