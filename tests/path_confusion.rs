//! Path and header confusion (SPEC §2, GUIDE §4): requests shaped after
//! published auth-proxy bypasses, sent byte for byte through the real
//! gateway. Each one must either be refused as ambiguous (400) or land on
//! the sensitive route it names; none may reach the upstream. Benign
//! controls prove the table is not passing by refusing everything.

mod common;
mod confusion;

use bytes::Bytes;
use common::*;
use confusion::*;
use http_body_util::{BodyExt, Full};

async fn start() -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let routes = format!("{DEFAULT_ROUTES}{EXTRA_ROUTES}");
    let gw = Gateway::start(up.addr, &routes, "").await;
    (up, gw)
}

/// Checks one response, and what the upstream saw meanwhile, against the
/// case's expectation; `Err` says how they differ.
fn judge(c: &Case, resp: &RawResponse, upstream_saw: &[Recorded]) -> Result<(), String> {
    let body = String::from_utf8_lossy(&resp.body);
    let saw = || -> Vec<String> {
        upstream_saw
            .iter()
            .map(|r| format!("{} {} ({} bytes)", r.method, r.target, r.body.len()))
            .collect()
    };
    if let Expect::Forwarded(want) = c.expect {
        return match upstream_saw {
            [r] if resp.status == 200 && r.target == want && r.method == c.method && r.body == c.body => Ok(()),
            _ => Err(format!(
                "want one forward to {want}, got {} and upstream saw {:?}",
                resp.status,
                saw()
            )),
        };
    }
    if !upstream_saw.is_empty() {
        return Err(format!("got {} and the upstream saw {:?}", resp.status, saw()));
    }
    let json = || -> Result<serde_json::Value, String> {
        serde_json::from_slice(&resp.body).map_err(|_| format!("body is not JSON: {body:?}"))
    };
    let want_error = |status: u16, code: &str| -> Result<(), String> {
        if resp.status != status {
            return Err(format!("want {status} {code}, got {} {body}", resp.status));
        }
        let v = json()?;
        if v["error"] != code {
            return Err(format!("want {code}, got {v}"));
        }
        Ok(())
    };
    match c.expect {
        Expect::Bad => want_error(400, "bad_request"),
        Expect::Denied => want_error(403, "forbidden"),
        Expect::Ours => Ok(()),
        Expect::Unparsed if resp.status == 400 => Ok(()),
        Expect::Unparsed => Err(format!("want a parser 400, got {} {body}", resp.status)),
        Expect::Held(route) => {
            if resp.status != 401 {
                return Err(format!("want 401 on {route}, got {} {body}", resp.status));
            }
            // A HEAD response has no body, so the route is identified by
            // the action in the challenge header, which every method gets.
            let www = resp.header("www-authenticate").unwrap_or("");
            let action = format!("action=\"{}\"", action_of(route));
            if !www.starts_with("StepUp ") || !www.contains(&action) {
                return Err(format!("want a StepUp challenge with {action}, got {www:?}"));
            }
            if c.method != "HEAD" {
                let v = json()?;
                if v["error"] != "step_up_required" || v["route"] != route {
                    return Err(format!("want step_up_required on {route}, got {v}"));
                }
            }
            Ok(())
        }
        Expect::Forwarded(_) => unreachable!("handled above"),
    }
}

/// Sends every case on its own connection and session, and returns one
/// line per case that did not behave.
async fn run(up: &Upstream, gw: &Gateway, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        // A fresh session per case keeps the per-session hold limit out of play.
        let before = up.requests().len();
        let resp = raw(gw.addr, &gw.pki, &bytes_of(c, &format!("case-{i}"))).await;
        let seen = up.requests();
        if let Err(e) = judge(c, &resp, seen.get(before..).unwrap_or(&[])) {
            failures.push(format!(
                "#{i} {} ({} {:?}): {e}",
                c.why,
                c.method,
                String::from_utf8_lossy(c.target)
            ));
        }
    }
    failures
}

#[tokio::test]
async fn confusing_requests_are_refused_or_matched_and_never_forwarded() {
    let (up, gw) = start().await;
    let cases = table();
    assert!(cases.len() >= 45, "the table has {} cases", cases.len());
    assert!(
        !cases.iter().any(|c| matches!(c.expect, Expect::Forwarded(_))),
        "the table is for requests that must not be forwarded"
    );
    let failures = run(&up, &gw, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn benign_lookalikes_pass_through_with_the_canonical_target() {
    let (up, gw) = start().await;
    let failures = run(&up, &gw, &benign()).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `Connection` may name hop-by-hop headers for the gateway to drop, but
/// never the forwarding headers the gateway adds afterwards.
#[tokio::test]
async fn connection_header_cannot_remove_x_forwarded_for() {
    let (up, gw) = start().await;
    let req = request(
        "GET",
        "/public",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("connection", "X-Forwarded-For, x-forwarded-host,X-Forwarded-Proto"),
        ],
        b"",
    );
    let resp = raw(gw.addr, &gw.pki, &req).await;
    assert_eq!(resp.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.header("x-forwarded-host").as_deref(), Some("localhost"));
    assert_eq!(r.header("x-forwarded-proto").as_deref(), Some("https"));
}

/// Routes fold case by default (SPEC §2): Express, ASP.NET and IIS run
/// `/Admin/Users/...` as `/admin/users/...`. The gateway still forwards the
/// path in the case it arrived with, and a route that opts out with
/// `case_sensitive: true` lets other cases through, unchanged.
#[tokio::test]
async fn case_folds_by_default_and_the_forwarded_path_keeps_its_case() {
    let up = Upstream::start().await;
    let routes = format!(
        "{DEFAULT_ROUTES}  - name: exact
    action: exact
    match: {{ path: /Exact/Only, case_sensitive: true }}
    require: {{ methods: [token] }}
    hold: {{ mode: challenge }}
"
    );
    let gw = Gateway::start(up.addr, &routes, "").await;
    let target = "/Admin/USERS/bob/delete";
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", target, &[("cookie", "SESSIONID=case")], b""),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    let ch = resp.json();
    assert_eq!(ch["route"], "delete-user");
    assert!(up.requests().is_empty());
    let token = gw.token(serde_json::json!({"sid": ch["sid"], "txn": ch["txn"]}));
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            target,
            &[("cookie", "SESSIONID=case"), ("x-stepup-token", &token)],
            b"",
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, target, "forwarded in the case it was sent");
    assert!(seen[0].header("x-stepup-assertion").is_some());

    for (target, status) in [("/exact/only", 200), ("/EXACT/ONLY", 200), ("/Exact/Only", 401)] {
        let resp = raw(
            gw.addr,
            &gw.pki,
            &request("GET", target, &[("cookie", "SESSIONID=case")], b""),
        )
        .await;
        assert_eq!(resp.status, status, "{target}");
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].target, "/EXACT/ONLY");
}

async fn h2_send(
    client: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> (u16, serde_json::Value) {
    let resp = client.send_request(req).await.expect("h2 response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

#[tokio::test]
async fn http2_gets_the_same_normalization() {
    let (up, gw) = start().await;
    let mut client = h2_client(gw.addr, &gw.pki).await;
    let post = |uri: &str| {
        http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("cookie", "SESSIONID=h2")
    };

    // hyper sends `host` as an ordinary header next to `:authority`.
    let req = post("https://localhost/public")
        .header("host", "elsewhere.example")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, v) = h2_send(&mut client, req).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_request")));

    // Same host, different case: not a disagreement.
    let req = post("https://localhost/public/%2e%2e/admin/users/bob/delete")
        .header("host", "LOCALHOST")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, v) = h2_send(&mut client, req).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["route"], "delete-user");

    let req = post("https://localhost/admin%2fusers/bob/delete")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, v) = h2_send(&mut client, req).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_request")));

    // `:authority` is held to the rules of `Host`: nginx and Express read
    // each of these as admin.example, so none may miss the host route.
    let routes_host = |authority: &str| {
        http::Request::builder()
            .method("GET")
            .uri(format!("https://{authority}/tenant/1"))
            .header("cookie", "SESSIONID=h2")
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    for authority in [
        "admin.example:abc",
        "admin.example,x",
        "admin.example:0",
        "admin.example:",
    ] {
        let (status, v) = h2_send(&mut client, routes_host(authority)).await;
        assert_eq!((status, v["error"].as_str()), (400, Some("bad_request")), "{authority}");
    }
    let (status, v) = h2_send(&mut client, routes_host("Admin.Example:443")).await;
    assert_eq!((status, v["route"].as_str()), (401, Some("tenant-admin")));

    // HTTP/2 has no rule against `_` in field names, so this reaches the gateway.
    let req = post("https://localhost/public")
        .header("x_stepup_assertion", "forged")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, v) = h2_send(&mut client, req).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_request")));

    // A `:path` without a leading `/` cannot be sent from here: http::Uri
    // refuses to build `https://localhost` + `admin/...`, and h2 would
    // rewrite an empty path to `/`. The canonical-path unit tests cover
    // `NotAbsolute` instead.
    assert!(http::Uri::builder()
        .scheme("https")
        .authority("localhost")
        .path_and_query("admin/users/bob/delete")
        .build()
        .is_err());

    assert!(up.requests().is_empty(), "{:?}", up.requests());
}
