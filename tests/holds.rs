//! Holds end to end, per mode, over real TLS in front of the recording
//! upstream (SPEC §4-§6): what the client is told, what the upstream gets,
//! and what the assertion proves about it.

mod common;
mod holdkit;

use common::*;
use holdkit::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("a JSON object").keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn challenge_body_and_headers_follow_the_spec_to_the_field() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let target = "/admin/users/bob/delete?reason=cleanup";
    let body = all_bytes();
    let (resp, ch) = challenge(&gw, "sess-challenge", target, &body).await;

    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(
        keys(&ch),
        set(&[
            "error",
            "hold_id",
            "route",
            "action",
            "methods",
            "approvals",
            "max_age",
            "sid",
            "txn",
            "expires_in",
            "complete",
            "status"
        ]),
        "exactly the members of SPEC §4.1"
    );
    let id = hold_id(&ch);
    // ≥ 128 bits, as SPEC §4 requires of hold ids.
    let raw_id = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &id).expect("base64url id");
    assert!(raw_id.len() >= 16, "hold id carries {} bytes", raw_id.len());
    assert_eq!(ch["route"], "delete-user");
    assert_eq!(ch["action"], "user.delete");
    assert_eq!(ch["methods"], json!(["token"]));
    assert_eq!(ch["approvals"], json!(0));
    assert_eq!(ch["max_age"], json!(300));
    assert_eq!(ch["sid"], gw.sid("sess-challenge"));
    assert_eq!(ch["txn"], txn_for("POST", "localhost", target, &body));
    let expires_in = ch["expires_in"].as_u64().expect("expires_in is an integer");
    assert!(
        (1..=120).contains(&expires_in),
        "expires_in {expires_in} within the 2m timeout"
    );
    assert_eq!(ch["complete"], format!("/.stepup/holds/{id}/complete"));
    assert_eq!(ch["status"], format!("/.stepup/holds/{id}"));

    let www = resp.headers_named("www-authenticate");
    assert_eq!(
        www,
        vec![format!(
            "StepUp hold=\"{id}\", action=\"user.delete\", methods=\"token\", max_age=\"300\", txn=\"{}\"",
            ch["txn"].as_str().expect("txn")
        )],
        "one StepUp challenge and no Bearer one for a cookie session"
    );

    let (_, other) = challenge(&gw, "sess-challenge", target, &body).await;
    assert_ne!(hold_id(&other), id, "every held request gets its own hold");
    assert_eq!(up.requests().len(), 0, "nothing reaches the upstream before a proof");
}

#[tokio::test]
async fn bearer_session_also_gets_the_rfc9470_challenge() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let resp = send(
        &gw,
        "DELETE",
        "/admin/users/carol",
        &[("authorization", "Bearer x")],
        b"",
    )
    .await;
    assert_eq!(resp.status, 401);
    let ch = resp.json();
    assert_eq!(ch["error"], "step_up_required");
    assert_eq!(ch["sid"], gw.sid("Bearer x"), "the whole header value is the session");
    let www = resp.headers_named("www-authenticate");
    assert_eq!(www.len(), 2, "{www:?}");
    assert!(
        www[0].starts_with(&format!("StepUp hold=\"{}\"", hold_id(&ch))),
        "{www:?}"
    );
    let bearer = www
        .iter()
        .find(|v| v.starts_with("Bearer "))
        .expect("a Bearer challenge");
    assert!(
        bearer.starts_with("Bearer error=\"insufficient_user_authentication\""),
        "{bearer}"
    );
    // The route names no acr, so the challenge asks for none (a route with
    // `require.acr` lists them: tests/oidc_stepup.rs).
    assert!(!bearer.contains("acr_values"), "{bearer}");
    assert!(bearer.contains("max_age=\"300\""), "{bearer}");
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn token_proof_forwards_the_exact_request_once_with_a_verifiable_assertion() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-release";
    let target = "/admin/users/bob/delete?reason=cleanup&n=1";
    let body = all_bytes();
    let (_, ch) = challenge(&gw, session, target, &body).await;
    let id = hold_id(&ch);
    assert_eq!(up.requests().len(), 0);

    let auth_time = now_secs() - 20;
    let token = gw.token(json!({
        "sid": ch["sid"], "txn": ch["txn"], "sub": "alice@example",
        "amr": ["hwk", "user"], "acr": "urn:test:aal3", "auth_time": auth_time,
    }));
    let before = now_secs();
    let resp = complete_with_token(&gw, &id, session, &token).await;
    let after = now_secs();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        resp.header("x-upstream"),
        Some("recorder"),
        "the completer gets the upstream's answer"
    );
    assert_eq!(resp.json()["target"], target);

    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, target);
    assert_eq!(&r.body[..], &body[..], "body byte-identical");
    assert!(r.header("x-stepup-token").is_none());
    assert_eq!(r.headers.get_all("x-stepup-assertion").iter().count(), 1);

    let assertion = r.header("x-stepup-assertion").expect("assertion header");
    let claims = verify_assertion(&gw, &assertion);
    assert_eq!(verify_with_served_jwks(&gw, &assertion).await, claims);
    let claims = Value::Object(claims);
    assert_eq!(
        keys(&claims),
        set(&[
            "iss",
            "aud",
            "iat",
            "exp",
            "jti",
            "sub",
            "sid",
            "act",
            "route",
            "txn",
            "htm",
            "htu",
            "amr",
            "acr",
            "auth_time",
            "hold"
        ])
    );
    assert_eq!(claims["iss"], "stepgate");
    assert_eq!(claims["aud"], "legacy-admin");
    let iat = claims["iat"].as_u64().expect("iat");
    assert!((before..=after).contains(&iat), "iat {iat} is the release time");
    assert_eq!(claims["exp"].as_u64(), Some(iat + 60), "exp = iat + assertion.ttl");
    assert!(!claims["jti"].as_str().expect("jti").is_empty());
    assert_eq!(claims["sub"], "alice@example");
    assert_eq!(claims["sid"], gw.sid(session));
    assert_eq!(claims["act"], "user.delete");
    assert_eq!(claims["route"], "delete-user");
    assert_eq!(
        claims["txn"],
        txn_of(r, "localhost"),
        "txn recomputed from what the upstream got"
    );
    assert_eq!(claims["txn"], ch["txn"]);
    assert_eq!(claims["htm"], "POST");
    assert_eq!(
        claims["htu"], "https://localhost/admin/users/bob/delete",
        "no query in htu"
    );
    assert_eq!(claims["amr"], json!(["hwk", "user"]));
    assert_eq!(claims["acr"], "urn:test:aal3");
    assert_eq!(claims["auth_time"], json!(auth_time));
    assert_eq!(claims["hold"], id);

    let st = status(&gw, &id, &[("cookie", &cookie(session))]).await.json();
    assert_eq!(st["state"], "released");
    assert_eq!(st["met"], json!(["token"]));
    assert_eq!(st["missing"], json!([]));

    let again = complete_with_token(&gw, &id, session, &bound_token(&gw, &ch)).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "already_released");

    // The same request again is a new hold, and its release a new assertion
    // (by alice@example again: she is now the session's only actor).
    let (_, ch2) = challenge(&gw, session, target, &body).await;
    let token = gw.token(json!({"sid": ch2["sid"], "txn": ch2["txn"], "sub": "alice@example"}));
    let resp = complete_with_token(&gw, &hold_id(&ch2), session, &token).await;
    assert_eq!(resp.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    let second = verify_assertion(&gw, &seen[1].header("x-stepup-assertion").expect("assertion"));
    assert_ne!(second["jti"], claims["jti"], "assertions are never reused");
    assert_eq!(second["hold"], hold_id(&ch2));
}

#[tokio::test]
async fn token_naming_the_hold_instead_of_the_txn_releases_it() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let (_, ch) = challenge(&gw, "sess-by-hold", DELETE_TARGET, b"{}").await;
    let id = hold_id(&ch);
    let token = gw.token(json!({"sid": ch["sid"], "hold": id}));
    let resp = complete_with_token(&gw, &id, "sess-by-hold", &token).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["hold"], id);
    assert_eq!(claims["txn"], txn_of(&seen[0], "localhost"));
}

#[tokio::test]
async fn hold_mode_connection_waits_until_another_connection_completes() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-agent";
    let c = cookie(session);
    let body = br#"{"amount":250000,"payee":"acme"}"#;
    let txn = txn_for("POST", "localhost", "/api/transfers", body);
    let sid = gw.sid(session);

    let headers = [("cookie", c.as_str()), ("content-type", "application/json")];
    let waiter = send(&gw, "POST", "/api/transfers", &headers, body);
    let completer = async {
        let id = find_open_hold(&gw, &sid, &txn).await;
        assert_eq!(up.requests().len(), 0, "held, not forwarded");
        assert_eq!(status_state(&gw, &id, session).await, "pending");
        let token = gw.token(json!({"sid": sid, "txn": txn}));
        let resp = complete_with_token(&gw, &id, session, &token).await;
        (id, resp)
    };
    let (waited, (id, completed)) = tokio::join!(waiter, completer);

    assert_eq!(completed.status, 200, "{}", String::from_utf8_lossy(&completed.body));
    assert_eq!(completed.json()["status"], "released");
    assert_eq!(waited.status, 200, "{}", String::from_utf8_lossy(&waited.body));
    assert_eq!(
        waited.header("x-upstream"),
        Some("recorder"),
        "the waiting client gets the upstream's answer"
    );
    assert_eq!(waited.json()["target"], "/api/transfers");

    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], body);
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["hold"], id);
    assert_eq!(claims["route"], "transfer");
    assert_eq!(claims["txn"], txn_of(&seen[0], "localhost"));
    assert_eq!(status_state(&gw, &id, session).await, "released");
}

#[tokio::test]
async fn hold_mode_without_proof_ends_with_step_up_expired_and_is_never_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-idle-agent";
    let c = cookie(session);
    let body = br#"{"amount":1}"#;
    let resp = send(&gw, "POST", "/api/transfers", &[("cookie", &c)], body).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "step_up_expired");
    assert_eq!(up.requests().len(), 0);
    assert!(
        gw.gw.holds.open_holds().is_empty(),
        "the expired hold no longer counts as open"
    );
}

#[tokio::test]
async fn auto_mode_shows_browsers_a_page_that_echoes_nothing_unescaped() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let c = cookie("sess-browser");
    let target = "/admin/settings/%3Cscript%3Ealert(1)%3C/script%3E/x'y?q=%22%3E%3Cscript%3Ealert(2)%3C/script%3E";
    let resp = send(
        &gw,
        "GET",
        target,
        &[("cookie", &c), ("accept", "text/html,application/xhtml+xml")],
        b"",
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert!(resp
        .header("content-type")
        .expect("content-type")
        .starts_with("text/html"));
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let csp = resp.header("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    let page = String::from_utf8(resp.body.clone()).expect("UTF-8 page");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("a nonce in the CSP");
    let lower = page.to_ascii_lowercase();
    assert_eq!(
        lower.matches("<script").count(),
        lower
            .matches(&format!("<script nonce=\"{}\">", nonce.to_ascii_lowercase()))
            .count(),
        "every script element is the gateway's own, with this response's nonce:\n{page}"
    );
    assert!(!page.contains("<script>alert"), "{page}");
    // The pages quote every attribute with `"` (escaped in values), so a `'`
    // from the path cannot end an attribute; it is shown as it was sent.
    assert!(!page.contains("='"), "an attribute quoted with ' :\n{page}");
    assert!(page.contains("x'y"), "the target is shown:\n{page}");
    assert!(
        !page.contains("\"><script>alert(2)"),
        "the query is never decoded into markup:\n{page}"
    );
    assert!(page.contains("%3Cscript%3E"), "encoded markup stays encoded:\n{page}");
    assert!(resp
        .header("www-authenticate")
        .expect("challenge header too")
        .starts_with("StepUp hold=\""));
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn auto_mode_gives_api_clients_the_json_challenge() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let c = cookie("sess-api");
    for accept in [Some("application/json"), None] {
        let mut headers = vec![("cookie", c.as_str())];
        headers.extend(accept.map(|a| ("accept", a)));
        let resp = send(&gw, "POST", "/admin/settings/smtp", &headers, b"relay=x").await;
        assert_eq!(resp.status, 401, "accept {accept:?}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        let ch = resp.json();
        assert_eq!(ch["error"], "step_up_required");
        assert_eq!(ch["route"], "console");
        assert_eq!(ch["action"], "console.settings");
    }
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn shadow_mode_forwards_at_once_and_carries_no_assertion() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let c = cookie("sess-shadow");
    let forged = gw.token(json!({}));
    let resp = send(
        &gw,
        "POST",
        "/reports/export",
        &[
            ("cookie", &c),
            ("x-stepup-assertion", &forged),
            ("x-stepup-token", &forged),
        ],
        b"fmt=csv",
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.header("x-upstream"), Some("recorder"));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], b"fmt=csv");
    assert!(
        seen[0].header("x-stepup-assertion").is_none(),
        "shadow forwards carry no assertion"
    );
    assert!(seen[0].header("x-stepup-token").is_none());
    assert!(gw.gw.holds.open_holds().is_empty(), "nothing was held");
}

#[tokio::test]
async fn upfront_token_forwards_at_once_with_an_assertion_and_no_hold() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-upfront";
    let c = cookie(session);
    let body = all_bytes();
    let target = "/admin/users/dave/delete?why=offboarding";
    let txn = txn_for("POST", "localhost", target, &body);
    let token = gw.token(json!({"sid": gw.sid(session), "txn": txn}));
    let headers = [("cookie", c.as_str()), ("x-stepup-token", token.as_str())];

    let resp = send(&gw, "POST", target, &headers, &body).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.header("x-upstream"), Some("recorder"));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.target, target);
    assert_eq!(&r.body[..], &body[..]);
    assert!(r.header("x-stepup-token").is_none(), "the token is never forwarded");
    let claims = verify_assertion(&gw, &r.header("x-stepup-assertion").expect("assertion"));
    assert!(!claims.contains_key("hold"), "no hold was involved: {claims:?}");
    assert_eq!(claims["txn"], txn_of(r, "localhost"));
    assert_eq!(claims["sid"], gw.sid(session));
    assert_eq!(claims["route"], "delete-user");
    assert!(gw.gw.holds.open_holds().is_empty());

    // Single use: the same token on the same request again is held.
    let resp = send(&gw, "POST", target, &headers, &body).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error_code(), "step_up_required");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn upfront_token_on_a_hold_mode_route_skips_the_wait() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-upfront-agent";
    let body = br#"{"amount":5}"#;
    let txn = txn_for("POST", "localhost", "/api/transfers", body);
    let token = gw.token(json!({"sid": gw.sid(session), "txn": txn}));
    let c = cookie(session);
    let resp = send(
        &gw,
        "POST",
        "/api/transfers",
        &[("cookie", &c), ("x-stepup-token", &token)],
        body,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert!(!claims.contains_key("hold"));
}

#[tokio::test]
async fn invalid_upfront_tokens_lead_to_a_challenge_never_a_forward() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-bad-upfront";
    let c = cookie(session);
    let body = b"{\"really\":true}";
    let sid = gw.sid(session);
    let txn = txn_for("POST", "localhost", DELETE_TARGET, body);
    let other_txn = txn_for("POST", "localhost", "/admin/users/eve/delete", body);
    let cases = [
        ("garbage", "not-a-jws".to_owned()),
        ("other txn", gw.token(json!({"sid": sid, "txn": other_txn}))),
        (
            "other session",
            gw.token(json!({"sid": gw.sid("someone-else"), "txn": txn})),
        ),
        (
            "names a hold",
            gw.token(json!({"sid": sid, "hold": "AAAAAAAAAAAAAAAAAAAAAA"})),
        ),
        (
            "expired",
            gw.token(json!({"sid": sid, "txn": txn, "iat": now_secs() - 400, "exp": now_secs() - 300})),
        ),
    ];
    for (what, token) in &cases {
        let resp = send(
            &gw,
            "POST",
            DELETE_TARGET,
            &[("cookie", &c), ("x-stepup-token", token)],
            body,
        )
        .await;
        assert_eq!(resp.status, 401, "{what}");
        let ch = resp.json();
        assert_eq!(ch["error"], "step_up_required", "{what}");
        assert_eq!(ch["txn"], txn, "{what}");
    }
    assert_eq!(up.requests().len(), 0, "no invalid token ever forwards");
}

#[tokio::test]
async fn hold_status_is_visible_only_to_its_own_session() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let (_, ch) = challenge(&gw, "sess-owner", DELETE_TARGET, b"{}").await;
    let id = hold_id(&ch);

    let resp = status(&gw, &id, &[("cookie", &cookie("sess-owner"))]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let st = resp.json();
    assert_eq!(keys(&st), set(&["hold_id", "state", "met", "missing", "expires_in"]));
    assert_eq!(st["hold_id"], id);
    assert_eq!(st["state"], "pending");
    assert_eq!(st["met"], json!([]));
    assert_eq!(st["missing"], json!(["token"]));
    let left = st["expires_in"].as_u64().expect("expires_in is an integer");
    assert!(left <= 120);

    let other = cookie("sess-stranger");
    for (who, headers) in [
        ("another session", vec![("cookie", other.as_str())]),
        ("another bearer session", vec![("authorization", "Bearer sess-owner")]),
        ("no session", vec![]),
    ] {
        let resp = status(&gw, &id, &headers).await;
        assert_eq!(resp.status, 404, "{who}");
        assert_eq!(resp.error_code(), "unknown_hold", "{who}");
    }
    let resp = status(&gw, "AAAAAAAAAAAAAAAAAAAAAA", &[("cookie", &cookie("sess-owner"))]).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.error_code(), "unknown_hold");
    assert_eq!(up.requests().len(), 0);
}

const PATIENT_HOLD_ROUTE: &str = "
  - name: patient
    action: batch.run
    match: { methods: [POST], path: /batch }
    require: { methods: [token] }
    hold: { mode: hold, timeout: 60s }
";

/// Waits until the gateway no longer reports the hold as pending.
async fn settled_state(gw: &Gateway, id: &str, session: &str) -> String {
    let mut state = String::new();
    for _ in 0..500 {
        state = status_state(gw, id, session).await;
        if state != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    state
}

#[tokio::test]
async fn hold_mode_client_that_goes_away_abandons_its_hold() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, &format!("{DEFAULT_ROUTES}{PATIENT_HOLD_ROUTE}"), "").await;
    // Clients leave at different points: some while the hold is still
    // being set up (its audit record being written), some once it waits.
    let mut abandoned = Vec::new();
    for i in 0..20 {
        let session = format!("sess-gone-{i}");
        let c = cookie(&session);
        let body = format!("{{\"job\":{i}}}").into_bytes();
        let mut tls = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
        tls.write_all(&request("POST", "/batch", &[("cookie", &c)], &body))
            .await
            .expect("write");
        let id = find_open_hold(&gw, &gw.sid(&session), &txn_for("POST", "localhost", "/batch", &body)).await;
        if i % 2 == 0 {
            tls.shutdown().await.expect("close");
        }
        drop(tls);
        abandoned.push((id, session));
    }

    // Nobody would receive the upstream's answer now, so the action must
    // not happen; the 60 s deadline is far off, so only the abandonment
    // can end these holds.
    for (id, session) in &abandoned {
        assert_eq!(
            settled_state(&gw, id, session).await,
            "expired",
            "abandoned hold {id} is closed"
        );
        let token = gw.token(json!({"sid": gw.sid(session), "hold": id}));
        let resp = complete_with_token(&gw, id, session, &token).await;
        assert_eq!(resp.status, 410, "{}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.error_code(), "hold_expired");
    }
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn hold_mode_waiter_is_told_to_retry_when_the_gateway_stops() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start(up.addr, &format!("{DEFAULT_ROUTES}{PATIENT_HOLD_ROUTE}"), "").await;
    let session = "sess-shutdown";
    let c = cookie(session);
    let body = b"{\"job\":7}";
    let sid = gw.sid(session);
    let txn = txn_for("POST", "localhost", "/batch", body);
    let mut tls = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
    tokio::io::AsyncWriteExt::write_all(&mut tls, &request("POST", "/batch", &[("cookie", &c)], body))
        .await
        .expect("write");
    let id = find_open_hold(&gw, &sid, &txn).await;
    let (resp, ()) = tokio::join!(read_response(&mut tls), gw.shutdown());
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "shutting_down");
    assert!(resp.header("retry-after").is_some());
    let id = stepgate::ids::HoldId::parse(&id).expect("id");
    assert_eq!(
        gw.gw.holds.phase(&id),
        Some(stepgate::hold::Phase::Expired),
        "the hold can never be released later"
    );
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn complete_accepts_the_token_form_encoded_as_the_step_up_page_posts_it() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-form";
    let (_, ch) = challenge(&gw, session, DELETE_TARGET, b"{}").await;
    let id = hold_id(&ch);
    let token = bound_token(&gw, &ch);
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("method", "token")
        .append_pair("token", &token)
        .finish();
    let c = cookie(session);
    let resp = send(
        &gw,
        "POST",
        &format!("/.stepup/holds/{id}/complete"),
        &[("cookie", &c), ("content-type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.requests().len(), 1);
}

/// The shutdown signal must reach a hold-mode request that starts waiting
/// only after the gateway began to stop (its body was still arriving), not
/// just the waiters already parked at that moment.
#[tokio::test]
async fn hold_mode_request_that_starts_waiting_during_shutdown_is_told_to_retry() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start().await;
    let mut gw = Gateway::start(up.addr, &format!("{DEFAULT_ROUTES}{PATIENT_HOLD_ROUTE}"), "").await;
    let c = cookie("sess-late-waiter");
    let body = b"{\"job\":9}";
    let addr = gw.addr;
    let mut tls = tls_connect(addr, &gw.pki, &[b"http/1.1"]).await;
    let head = format!(
        "POST /batch HTTP/1.1\r\nhost: localhost\r\ncookie: {c}\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write head");
    // hyper sends 100 Continue once the handler reads the body: from here
    // the request is inside the gateway, before any hold exists.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.expect("100 Continue");
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );

    let client = async {
        // The listener closes right before the stop signal goes out, in
        // the same step of the accept loop.
        let mut probes = 0;
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            probes += 1;
            assert!(probes < 2000, "the gateway never closed its listener");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tls.write_all(body).await.expect("write body");
        read_response(&mut tls).await
    };
    let ((), resp) = tokio::join!(gw.shutdown(), client);
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "shutting_down");
    assert!(resp.header("retry-after").is_some());
    assert_eq!(up.requests().len(), 0);
}

/// Each serving thread has its own runtime: the waiter's connection and
/// the completing connection land on different threads here (two
/// listeners, one per thread), so the release must wake a waiter on
/// another runtime and the upstream answer must reach it.
#[tokio::test]
async fn hold_mode_waiter_on_one_serving_thread_is_released_from_another() {
    let up = Upstream::start().await;
    let (gw, second) = Gateway::start_per_core(up.addr, DEFAULT_ROUTES, "").await;
    let session = "sess-cross-thread";
    let c = cookie(session);
    let body = br#"{"amount":7,"payee":"acme"}"#;
    let txn = txn_for("POST", "localhost", "/api/transfers", body);
    let sid = gw.sid(session);
    let headers = [("cookie", c.as_str()), ("content-type", "application/json")];
    let waiter = send(&gw, "POST", "/api/transfers", &headers, body);
    let completer = async {
        let id = find_open_hold(&gw, &sid, &txn).await;
        let token = gw.token(json!({"sid": sid, "txn": txn}));
        let complete = json!({"method": "token", "token": token}).to_string();
        let target = format!("/.stepup/holds/{id}/complete");
        let h = [("cookie", c.as_str()), ("content-type", "application/json")];
        raw(second, &gw.pki, &request("POST", &target, &h, complete.as_bytes())).await
    };
    let (waited, completed) = tokio::join!(waiter, completer);
    assert_eq!(completed.status, 200, "{}", String::from_utf8_lossy(&completed.body));
    assert_eq!(completed.json()["status"], "released");
    assert_eq!(waited.status, 200, "{}", String::from_utf8_lossy(&waited.body));
    assert_eq!(waited.header("x-upstream"), Some("recorder"));
    assert_eq!(up.requests().len(), 1, "forwarded exactly once");
}
