//! The real-upstream harness itself: each framework, asked directly (plain
//! HTTP, no gateway), runs the handler the route table says and records
//! what its own parsers read; and each works behind the gateway.

mod common;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request on a fresh connection; returns the status and the body
/// (empty for a 101, whose connection stays open).
async fn direct(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect upstream");
    s.write_all(&plain_request(method, target, headers, body))
        .await
        .expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = async {
        loop {
            let n = s.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.starts_with(b"HTTP/1.1 101") && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("upstream answers");
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("response head") + 4;
    let status = std::str::from_utf8(&buf[9..12])
        .expect("status")
        .parse()
        .expect("status");
    (status, buf[head_end..].to_vec())
}

fn plain_request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        out.push_str("Host: upstream.test\r\n");
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || ["POST", "PUT", "PATCH"].contains(&method) {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Sends one request and returns the one record it produced.
async fn one(
    up: &RealUpstream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> common::upstreams::Ran {
    let before = up.ran().len();
    let (status, _) = direct(up.addr, method, target, headers, body).await;
    let expected = if up.framework == Framework::Fake101 { 101 } else { 200 };
    assert_eq!(
        status,
        expected,
        "{:?} {method} {target}\n{}",
        up.framework,
        up.output()
    );
    let ran = up.ran();
    assert_eq!(
        ran.len(),
        before + 1,
        "{:?} {method} {target}: one record\n{}",
        up.framework,
        up.output()
    );
    ran.into_iter().last().expect("record")
}

/// The route table every app shares, asked the plain way.
async fn shared_routes(f: Framework) {
    let up = RealUpstream::start(f).await;
    let h = |r: &common::upstreams::Ran| r.handler.clone();

    let r = one(&up, "DELETE", "/admin/users/bob", &[], b"").await;
    assert_eq!(
        (h(&r), r.method.as_str(), r.path.as_str()),
        ("user.delete".into(), "DELETE", "/admin/users/bob")
    );
    assert_eq!(r.raw["server"], f.name());
    assert_eq!(
        h(&one(&up, "POST", "/admin/users/bob/delete", &[FORM], b"confirm=yes").await),
        "user.delete"
    );
    assert_eq!(h(&one(&up, "PUT", "/admin/sql/run", &[], b"").await), "sql.run");
    assert_eq!(h(&one(&up, "DELETE", "/api/items/7", &[], b"").await), "item.delete");
    assert_eq!(
        h(&one(&up, "POST", "/api/items/7", &[FORM], b"name=x").await),
        "item.update"
    );
    assert_eq!(
        h(&one(&up, "GET", "/legacy?action=delete", &[], b"").await),
        "legacy.delete"
    );
    let r = one(&up, "GET", "/legacy?action=view", &[], b"").await;
    assert_eq!(h(&r), "legacy.view");
    assert_eq!(r.query["action"], "view");
    assert_eq!(h(&one(&up, "GET", "/nothing/here", &[], b"").await), "other");
    assert_eq!(
        h(&one(&up, "DELETE", "/admin/users/bob/extra", &[], b"").await),
        "other"
    );

    let r = one(&up, "GET", "/whatever", &[("Host", "admin.example:8443")], b"").await;
    assert_eq!((h(&r), r.host.as_str()), ("admin.vhost".into(), "admin.example"));
    assert_eq!(
        one(&up, "GET", "/x", &[("Host", "app.test:8443")], b"").await.host,
        "app.test"
    );

    let r = one(
        &up,
        "POST",
        "/api/transfers",
        &[
            FORM,
            ("Cookie", "theme=dark; SESSIONID=s3cr3t"),
            ("X-StepUp-Assertion", "a.b.c"),
        ],
        b"amount=10&payee=eve",
    )
    .await;
    assert_eq!(h(&r), "transfer");
    assert_eq!(r.session.as_deref(), Some("s3cr3t"));
    assert_eq!(r.assertion.as_deref(), Some("a.b.c"));
    let header = |r: &common::upstreams::Ran, name: &str| {
        r.headers
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    };
    assert_eq!(header(&r, "cookie").as_deref(), Some("theme=dark; SESSIONID=s3cr3t"));
    let r2 = one(&up, "GET", "/nothing", &[], b"").await;
    assert_eq!((r2.session, r2.assertion), (None, None));

    if f == Framework::Nginx {
        // nginx never reads a body for `return`.
        assert!(r.body.is_null());
    } else {
        assert_eq!(
            (r.body["amount"].as_str(), r.body["payee"].as_str()),
            (Some("10"), Some("eve"))
        );
        let r = one(
            &up,
            "POST",
            "/api/transfers",
            &[JSON],
            br#"{"amount":10,"payee":"eve"}"#,
        )
        .await;
        assert_eq!((h(&r), r.body["amount"].as_i64()), ("transfer".into(), Some(10)));
        // The framework's usual method override.
        let r = one(
            &up,
            "POST",
            "/api/items/7",
            &[FORM, ("X-HTTP-Method-Override", "DELETE")],
            b"",
        )
        .await;
        assert_eq!((h(&r), r.method.as_str()), ("item.delete".into(), "DELETE"));
    }
}

#[tokio::test]
async fn express_routes() {
    shared_routes(Framework::Express).await;
    let up = RealUpstream::start(Framework::Express).await;
    // method-override reads `_method` from the query; Express routes case-insensitively.
    let r = one(&up, "POST", "/api/items/7?_method=DELETE", &[FORM], b"").await;
    assert_eq!((r.handler.as_str(), r.method.as_str()), ("item.delete", "DELETE"));
    assert_eq!(
        one(&up, "DELETE", "/ADMIN/Users/bob", &[], b"").await.handler,
        "user.delete"
    );
}

#[tokio::test]
async fn flask_routes() {
    shared_routes(Framework::Flask).await;
}

#[tokio::test]
async fn flask_gunicorn_routes() {
    shared_routes(Framework::FlaskGunicorn).await;
}

#[tokio::test]
async fn hypercorn_routes_and_accepts_h2c_upgrade() {
    shared_routes(Framework::Hypercorn).await;
    let up = RealUpstream::start(Framework::Hypercorn).await;
    let (status, _) = direct(
        up.addr,
        "GET",
        "/legacy?action=view",
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 101, "hypercorn switches to h2c over cleartext");
}

#[tokio::test]
async fn rack_routes() {
    shared_routes(Framework::Rack).await;
    let up = RealUpstream::start(Framework::Rack).await;
    // Rack::MethodOverride reads `_method` from the form body.
    let r = one(&up, "POST", "/api/items/7", &[FORM], b"_method=DELETE").await;
    assert_eq!((r.handler.as_str(), r.method.as_str()), ("item.delete", "DELETE"));
    // Rack 2.2 splits the query on `;` as well as `&`.
    let r = one(&up, "GET", "/legacy?action=view;action=delete", &[], b"").await;
    assert_eq!(
        (r.handler.as_str(), &r.query["action"]),
        ("legacy.delete", &serde_json::json!("delete"))
    );
}

#[tokio::test]
async fn nginx_routes() {
    shared_routes(Framework::Nginx).await;
    let up = RealUpstream::start(Framework::Nginx).await;
    // `~*` locations, and nginx matches the decoded, normalised URI.
    let r = one(&up, "DELETE", "/ADMIN/users/%62ob", &[], b"").await;
    assert_eq!(
        (r.handler.as_str(), r.path.as_str()),
        ("user.delete", "/ADMIN/users/bob")
    );
    let r = one(&up, "GET", "/x", &[("Host", "Admin.Example")], b"").await;
    assert_eq!(r.handler, "admin.vhost");
}

#[tokio::test]
async fn fake101_executes_requests_inside_its_tunnel() {
    shared_routes(Framework::Fake101).await;
    let up = RealUpstream::start(Framework::Fake101).await;
    let mut s = tokio::net::TcpStream::connect(up.addr).await.expect("connect");
    let mut bytes = plain_request(
        "GET",
        "/ws",
        &[
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    );
    // plain_request asks to close; a tunnel needs the connection open.
    let text = String::from_utf8(bytes)
        .expect("ascii")
        .replace("Connection: close", "Connection: Upgrade");
    bytes = text.into_bytes();
    bytes.extend_from_slice(b"DELETE /admin/users/bob HTTP/1.1\r\nHost: upstream.test\r\nConnection: close\r\n\r\n");
    s.write_all(&bytes).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("answers")
        .expect("read");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        !text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "the accept key is wrong on purpose"
    );
    let ran = up.ran();
    assert_eq!(ran.len(), 2);
    assert_eq!(
        (ran[1].handler.as_str(), &ran[1].raw["tunnelled"]),
        ("user.delete", &serde_json::json!(true))
    );
}

// ------------------------------------------------------------ behind the gateway

/// The gateway's hold flow in front of a real app: nothing runs before the
/// proof; after it, the app runs `user.delete` once, with the session
/// cookie and a verifiable assertion.
async fn behind_gateway(f: Framework) {
    let up = RealUpstream::start(f).await;
    let gw = Gateway::default(up.addr).await;
    let cookie = ("cookie", "SESSIONID=s3cr3t-session");
    let form = ("content-type", "application/x-www-form-urlencoded");
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/admin/users/bob/delete", &[cookie, form], b"confirm=yes"),
    )
    .await;
    assert_eq!(resp.status, 401);
    assert!(up.ran().is_empty(), "{:?} ran before the proof", f);
    let ch = resp.json();
    let hold = ch["hold_id"].as_str().expect("hold id");
    let token = gw.token(serde_json::json!({"sid": ch["sid"], "txn": ch["txn"]}));
    let complete = serde_json::json!({"method": "token", "token": token}).to_string();
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            &format!("/.stepup/holds/{hold}/complete"),
            &[cookie, ("content-type", "application/json")],
            complete.as_bytes(),
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{:?}: {}", f, String::from_utf8_lossy(&resp.body));
    let ran = up.ran_handler("user.delete");
    assert_eq!(ran.len(), 1, "{:?}: {:?}\n{}", f, up.ran(), up.output());
    assert_eq!(ran[0].session.as_deref(), Some("s3cr3t-session"));
    let claims = verify_assertion(&gw, ran[0].assertion.as_deref().expect("assertion"));
    assert_eq!(claims["route"], "delete-user");
    if f != Framework::Nginx {
        assert_eq!(ran[0].body["confirm"], "yes");
    }
}

#[tokio::test]
async fn express_behind_gateway() {
    behind_gateway(Framework::Express).await;
}

#[tokio::test]
async fn flask_behind_gateway() {
    behind_gateway(Framework::Flask).await;
}

#[tokio::test]
async fn flask_gunicorn_behind_gateway() {
    behind_gateway(Framework::FlaskGunicorn).await;
}

#[tokio::test]
async fn hypercorn_behind_gateway() {
    behind_gateway(Framework::Hypercorn).await;
}

#[tokio::test]
async fn rack_behind_gateway() {
    behind_gateway(Framework::Rack).await;
}

#[tokio::test]
async fn nginx_behind_gateway() {
    behind_gateway(Framework::Nginx).await;
}

#[tokio::test]
async fn fake101_behind_gateway_records_what_reached_it() {
    let up = RealUpstream::start(Framework::Fake101).await;
    let gw = Gateway::default(up.addr).await;
    let _ = raw(
        gw.addr,
        &gw.pki,
        &request(
            "GET",
            "/ws",
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            b"",
        ),
    )
    .await;
    let ran = up.ran();
    assert_eq!(ran.len(), 1, "{:?}", ran);
    assert_eq!((ran[0].path.as_str(), ran[0].method.as_str()), ("/ws", "GET"));
}
