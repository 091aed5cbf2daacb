//! One reading of every request (SPEC §2), attacked through the gateway
//! with real upstreams behind it: the upstream must never execute what the
//! gateway matched differently. Each test first shows the upstream's own
//! reading (asked directly, no gateway), so the attack is known to be real,
//! then sends it through the gateway.

mod common;

use bytes::Bytes;
use common::upstreams::{Framework, RealUpstream};
use common::*;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One plain-HTTP request straight to the upstream; returns the status.
async fn direct(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: upstream.test\r\n");
    }
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

/// A request through the gateway over HTTP/1.1, on a session of its own.
fn through(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut h: Vec<(&str, &str)> = vec![("cookie", "SESSIONID=one-reading")];
    h.extend_from_slice(headers);
    request(method, target, &h, body)
}

/// Request bytes with a Host of the test's choosing (`common::request`
/// always sends `Host: localhost`).
fn with_host(method: &str, target: &str, host: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nhost: {host}\r\ncookie: SESSIONID=host\r\nconnection: close\r\n\r\n")
        .into_bytes()
}

/// The `routes:` list of the shipped `routes.yaml`, as a user runs it.
fn shipped_routes() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml")).expect("routes.yaml");
    let (_, routes) = text.split_once("\nroutes:\n").expect("a routes: list");
    routes.to_owned()
}

/// Finding: Express routes without regard to case, so with the shipped
/// routes `GET /ADMIN/SQL/run` ran the denied SQL console and
/// `POST /API/Transfers` skipped step-up. Routes now fold case.
#[tokio::test]
async fn case_variants_of_shipped_routes_never_reach_express() {
    let up = RealUpstream::start(Framework::Express).await;
    // Express's own reading: the upper-case path is the SQL console.
    assert_eq!(direct(up.addr, "GET", "/ADMIN/SQL/run", &[], b"").await, 200);
    assert_eq!(up.ran_handler("sql.run").len(), 1, "Express folds case: {:?}", up.ran());
    let before = up.ran().len();

    let gw = Gateway::start(up.addr, &shipped_routes(), "").await;
    for target in ["/ADMIN/SQL/run", "/Admin/Sql/Run", "/admin/SQL", "/%41DMIN/sql/run"] {
        let resp = raw(gw.addr, &gw.pki, &through("GET", target, &[], b"")).await;
        assert_eq!((resp.status, resp.error_code()), (403, "forbidden".into()), "{target}");
    }
    let big = br#"{"amount": 50000, "payee": "mallory"}"#;
    for target in ["/API/Transfers", "/api/TRANSFERS", "/Api/Transfers/"] {
        let resp = raw(
            gw.addr,
            &gw.pki,
            &through("POST", target, &[("content-type", "application/json")], big),
        )
        .await;
        assert_eq!(resp.status, 401, "{target}: {}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.json()["route"], "big-transfer", "{target}");
    }
    let ran = up.ran();
    assert_eq!(ran.len(), before, "nothing ran upstream: {:?}", ran.get(before..));

    // Control: a small transfer passes the risk check and reaches Express,
    // in the case it was sent, and Express runs the transfer for it.
    let small = br#"{"amount": 5, "payee": "acme"}"#;
    let resp = raw(
        gw.addr,
        &gw.pki,
        &through("POST", "/API/Transfers", &[("content-type", "application/json")], small),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let transfers = up.ran_handler("transfer");
    assert_eq!(transfers.len(), 1, "{:?}", up.ran());
    assert_eq!(transfers[0].path, "/API/Transfers", "forwarded in its own case");
    assert!(
        up.ran_handler("sql.run").len() == 1,
        "only the direct request ran the console"
    );
}

/// Routes that make `admin.example` off limits: the host route, and a
/// control route that shows other hosts still reach the upstream.
const ADMIN_HOST_ROUTES: &str = "
  - name: admin-vhost
    match: { host: [admin.example], prefix: / }
    deny: true
";

async fn h2_status(
    client: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    authority: &str,
) -> (u16, serde_json::Value) {
    let req = http::Request::builder()
        .method("GET")
        .uri(format!("https://{authority}/dashboard"))
        .header("cookie", "SESSIONID=h2")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.send_request(req).await.expect("h2 response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

/// Finding: `Host: admin.example:abc` (and `:1:2`, `,x`) missed the
/// `host: admin.example` route; nginx served the admin vhost for it and
/// Express's `req.hostname` said `admin.example`. Such hosts are now 400,
/// as Host, as an absolute-form authority and as `:authority`.
#[tokio::test]
async fn odd_hosts_cannot_dodge_a_host_route_to_nginx_or_express() {
    for framework in [Framework::Nginx, Framework::Express] {
        let up = RealUpstream::start(framework).await;
        // The upstream's own reading: the odd port still names the vhost.
        assert_eq!(
            direct(up.addr, "GET", "/dashboard", &[("Host", "admin.example:abc")], b"").await,
            200
        );
        assert_eq!(
            up.ran_handler("admin.vhost").len(),
            1,
            "{framework:?} reads admin.example:abc as admin.example: {:?}",
            up.ran()
        );

        let gw = Gateway::start(up.addr, ADMIN_HOST_ROUTES, "").await;
        let odd = [
            "admin.example:abc",
            "admin.example:1:2",
            "admin.example,x",
            "admin.example:0",
            "admin.example:65536",
            "admin.example:",
            "admin..example",
        ];
        for host in odd {
            let resp = raw(gw.addr, &gw.pki, &with_host("GET", "/dashboard", host)).await;
            assert_eq!(
                (resp.status, resp.error_code()),
                (400, "bad_request".into()),
                "{framework:?} Host {host}"
            );
        }
        for host in ["admin.example:abc", "admin.example,x", "admin.example:"] {
            let target = format!("http://{host}/dashboard");
            let resp = raw(gw.addr, &gw.pki, &with_host("GET", &target, host)).await;
            assert_eq!(resp.status, 400, "{framework:?} absolute-form {host}");
        }
        let mut h2 = h2_client(gw.addr, &gw.pki).await;
        for authority in ["admin.example:abc", "admin.example,x", "admin.example:0"] {
            let (status, v) = h2_status(&mut h2, authority).await;
            assert_eq!(
                (status, v["error"].as_str()),
                (400, Some("bad_request")),
                "{framework:?} :authority {authority}"
            );
        }
        for host in ["admin.example", "ADMIN.example.:443"] {
            let resp = raw(gw.addr, &gw.pki, &with_host("GET", "/dashboard", host)).await;
            assert_eq!(resp.status, 403, "{framework:?} Host {host}");
        }
        assert_eq!(
            up.ran_handler("admin.vhost").len(),
            1,
            "{framework:?}: the admin vhost ran only for the direct request: {:?}",
            up.ran()
        );
        // Control: another host goes through, so the 400s above were not
        // a gateway refusing everything.
        let resp = raw(gw.addr, &gw.pki, &with_host("GET", "/dashboard", "www.example:8443")).await;
        assert_eq!(resp.status, 200, "{framework:?}");
        let (status, _) = h2_status(&mut h2, "www.example").await;
        assert_eq!(status, 200, "{framework:?} over HTTP/2");
        assert_eq!(up.ran_handler("other").len(), 2, "{framework:?}: {:?}", up.ran());
    }
}

const LEGACY_ROUTES: &str = "
  - name: legacy-delete
    action: legacy.delete
    match: { methods: [GET], path: /legacy, query: { action: delete } }
    require: { methods: [token] }
    hold: { mode: challenge }
";

/// Finding: `GET /legacy?x=1;action=delete` missed a route whose `query`
/// needs `action=delete`; Rack splits on `;` and ran the delete. Query
/// predicates now see every reading (`;` too, names in any case).
#[tokio::test]
async fn query_separators_and_case_cannot_dodge_a_query_route_to_rack() {
    let up = RealUpstream::start(Framework::Rack).await;
    assert_eq!(direct(up.addr, "GET", "/legacy?x=1;action=delete", &[], b"").await, 200);
    assert_eq!(
        up.ran_handler("legacy.delete").len(),
        1,
        "Rack splits on `;`: {:?}",
        up.ran()
    );

    let gw = Gateway::start(up.addr, LEGACY_ROUTES, "").await;
    for target in [
        "/legacy?action=delete",
        "/legacy?x=1;action=delete",
        "/legacy?action=view;action=delete",
        "/legacy?Action=delete",
        "/legacy?ACTION=delete;x=1",
        "/legacy?action=view&action=delete",
        "/LEGACY?x=1;%61ction=delete",
    ] {
        let resp = raw(gw.addr, &gw.pki, &through("GET", target, &[], b"")).await;
        assert_eq!(resp.status, 401, "{target}: {}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.json()["route"], "legacy-delete", "{target}");
    }
    assert_eq!(up.ran_handler("legacy.delete").len(), 1, "{:?}", up.ran());

    // Control: a view, however it is spelt, reaches Rack.
    let resp = raw(gw.addr, &gw.pki, &through("GET", "/legacy?x=1;action=view", &[], b"")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.ran_handler("legacy.view").len(), 1, "{:?}", up.ran());
}

/// An earlier, weaker route for POST (shadow: forwarded at once) and a
/// DELETE route that needs a step-up.
const ITEM_ROUTES: &str = "
  - name: items-shadow
    action: items.write
    match: { methods: [POST], prefix: /api/items }
    require: { methods: [token] }
    hold: { mode: shadow }
  - name: item-delete
    action: item.delete
    match: { methods: [DELETE], path: '/api/items/[0-9]+' }
    require: { methods: [token] }
    hold: { mode: challenge }
";

/// Finding: `POST /api/items/9` with `X-HTTP-Method-Override: DELETE` (or
/// `?_method=DELETE`) matched the earlier shadow route and was forwarded at
/// once; the upstream ran the DELETE. Now the request is matched under
/// both methods and the stricter outcome, the hold, applies.
#[tokio::test]
async fn method_overrides_cannot_slip_past_a_weaker_route_to_express_or_flask() {
    for framework in [Framework::Express, Framework::Flask] {
        let up = RealUpstream::start(framework).await;
        assert_eq!(
            direct(
                up.addr,
                "POST",
                "/api/items/9",
                &[("X-HTTP-Method-Override", "DELETE")],
                b""
            )
            .await,
            200
        );
        assert_eq!(
            up.ran_handler("item.delete").len(),
            1,
            "{framework:?} honours the override: {:?}",
            up.ran()
        );

        let gw = Gateway::start(up.addr, ITEM_ROUTES, "").await;
        let attacks: [(&str, &[(&str, &str)]); 5] = [
            ("/api/items/9", &[("X-HTTP-Method-Override", "DELETE")]),
            ("/api/items/9", &[("X-HTTP-Method-Override", "delete")]),
            ("/api/items/9?_method=DELETE", &[]),
            ("/api/items/9?x=1;_method=DELETE", &[]),
            ("/API/Items/9", &[("X-HTTP-Method-Override", "DELETE")]),
        ];
        for (target, headers) in attacks {
            let resp = raw(gw.addr, &gw.pki, &through("POST", target, headers, b"")).await;
            assert_eq!(
                resp.status,
                401,
                "{framework:?} {target} {headers:?}: {}",
                String::from_utf8_lossy(&resp.body)
            );
            assert_eq!(resp.json()["route"], "item-delete", "{framework:?} {target}");
        }
        assert_eq!(
            up.ran_handler("item.delete").len(),
            1,
            "{framework:?}: DELETE ran only for the direct request: {:?}",
            up.ran()
        );

        // Once stepped up, the override request goes through with an
        // assertion and the upstream runs the DELETE it asked for.
        let resp = raw(
            gw.addr,
            &gw.pki,
            &through("POST", "/api/items/9", &[("X-HTTP-Method-Override", "DELETE")], b""),
        )
        .await;
        let ch = resp.json();
        let token = gw.token(serde_json::json!({"sid": ch["sid"], "txn": ch["txn"]}));
        let resp = raw(
            gw.addr,
            &gw.pki,
            &through(
                "POST",
                "/api/items/9",
                &[("X-HTTP-Method-Override", "DELETE"), ("x-stepup-token", &token)],
                b"",
            ),
        )
        .await;
        assert_eq!(
            resp.status,
            200,
            "{framework:?}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let deletes = up.ran_handler("item.delete");
        assert_eq!(deletes.len(), 2, "{framework:?}: {:?}", up.ran());
        assert!(deletes[1].assertion.is_some(), "{framework:?}: asserted");
        assert!(deletes[0].assertion.is_none());

        // Control: a POST without an override is the shadow route's, and
        // is forwarded at once.
        let resp = raw(gw.addr, &gw.pki, &through("POST", "/api/items/9", &[], b"")).await;
        assert_eq!(resp.status, 200, "{framework:?}");
        assert_eq!(up.ran_handler("item.update").len(), 1, "{framework:?}: {:?}", up.ran());
    }
}

/// Finding: `/.STEPUP/...` was forwarded. The gateway's prefix is its own
/// in any case; Express, which routes without regard to case and has a
/// catch-all, must never see any of these.
#[tokio::test]
async fn no_case_of_the_gateway_prefix_reaches_express() {
    let up = RealUpstream::start(Framework::Express).await;
    let gw = Gateway::default(up.addr).await;
    for (method, target) in [
        ("GET", "/.STEPUP/jwks.json"),
        ("GET", "/.StepUp/holds/abc"),
        ("POST", "/.STEPUP/holds/abc/complete"),
        ("GET", "/.STEPUP"),
        ("GET", "/.Stepup;x/holds"),
        ("GET", "/%2ESTEPUP/jwks.json"),
        ("GET", "/x/../.sTePuP/approvals"),
        ("GET", "/.stepup/nope"),
    ] {
        let resp = raw(gw.addr, &gw.pki, &through(method, target, &[], b"")).await;
        assert!(resp.status != 502, "{target}: {}", resp.status);
    }
    assert!(up.ran().is_empty(), "{:?}", up.ran());
    // Control: the upstream is there, and anything else reaches it.
    let resp = raw(gw.addr, &gw.pki, &through("GET", "/.STEPUPX/a", &[], b"")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.ran().len(), 1, "{:?}", up.ran());
}
