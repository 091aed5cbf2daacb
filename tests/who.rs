//! Who a request is, and who acts on a session (SPEC §3): one cookie reader
//! for the session and the identity, identities that cannot be left out,
//! doubled or swapped, sightings on every request, and the first person to
//! step up on an anonymous session as its only actor.
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use stepgate::clock::ManualClock;
use stepup_kit::{enroll, now_secs, pyotp_now};

const DELETE: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST, DELETE], path: '/admin/users/([^/]+)' }
    require: { methods: [totp, token], max_age: 5m }
    hold: { mode: challenge, timeout: 1m }
";

fn text(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

async fn delete(gw: &Gateway, headers: &[(&str, &str)]) -> RawResponse {
    raw(gw.addr, &gw.pki, &request("DELETE", "/admin/users/carol", headers, b"")).await
}

async fn complete(gw: &Gateway, headers: &[(&str, &str)], hold: &Value, proof: Value) -> RawResponse {
    let id = hold["hold_id"].as_str().expect("hold id");
    let mut headers = headers.to_vec();
    headers.push(("content-type", "application/json"));
    let body = proof.to_string();
    let target = format!("/.stepup/holds/{id}/complete");
    raw(gw.addr, &gw.pki, &request("POST", &target, &headers, body.as_bytes())).await
}

// ------------------------------------------------------------ cookie reader

#[tokio::test]
async fn a_session_cookie_named_twice_under_any_spelling_is_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DELETE, "").await;
    for cookie in [
        "SESSIONID =bob-session; SESSIONID=junk",
        "SESSIONID=bob-session; SESSIONID=junk",
        "SESSIONID=bob-session; sessionid=junk",
        "SESSIONID=bob-session; SESSIONID",
    ] {
        let resp = delete(&gw, &[("cookie", cookie)]).await;
        assert_eq!(resp.status, 400, "{cookie}: {}", text(&resp));
        assert_eq!(resp.error_code(), "bad_request");
    }
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn a_re_spelled_session_cookie_is_the_same_session() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DELETE, "").await;
    let bob = gw.sid("bob-session");
    for cookie in [
        "SESSIONID=bob-session",
        "SESSIONID =bob-session",
        "SESSIONID=\"bob-session\"",
        "SESSIONID=%62ob-session",
        "x=1;  SESSIONID\t= \"%62ob-session\" ",
    ] {
        let resp = delete(&gw, &[("cookie", cookie)]).await;
        assert_eq!(resp.status, 401, "{cookie}: {}", text(&resp));
        assert_eq!(resp.json()["sid"], bob, "{cookie}");
    }
}

// ------------------------------------------------------- sightings

#[tokio::test]
async fn a_stolen_sessions_first_sighting_is_its_owners_even_off_the_sensitive_routes() {
    let clock = Arc::new(ManualClock::at_unix(now_secs()));
    let routes = "
  - name: export
    action: data.export
    match: { methods: [POST], path: /data/export }
    when:
      - session_age_over: 8h
      - new_device: true
    require: { methods: [token] }
    hold: { mode: challenge }
";
    let up = Upstream::start().await;
    let gw = Gateway::start_with_clock(up.addr, routes, "", clock.clone()).await;
    // The owner browses pages no route covers.
    let owner = [("cookie", "SESSIONID=victim"), ("user-agent", "OwnerBrowser/1")];
    let resp = raw(gw.addr, &gw.pki, &request("GET", "/home", &owner, b"")).await;
    assert_eq!(resp.status, 200);
    clock.advance(Duration::from_secs(9 * 3600));
    // The thief's first sensitive request, re-spelled and from his own agent.
    let thief = [("cookie", "SESSIONID=\"%76ictim\""), ("user-agent", "ThiefTool/2")];
    let resp = raw(gw.addr, &gw.pki, &request("POST", "/data/export", &thief, b"")).await;
    assert_eq!(resp.status, 401, "{}", text(&resp));
    assert_eq!(resp.json()["risk"], json!(["session_age_over:8h", "new_device"]));
    assert_eq!(up.count("/data/export"), 0);
}

// ---------------------------------------------------------------- identity

/// The harness's token issuer doubles as the identity provider.
fn identity_jwt(cookie: Option<&str>) -> String {
    let cookie = cookie.map(|c| format!(", cookie: {c}")).unwrap_or_default();
    format!(
        "identity: {{ jwt: {{ issuer: 'https://idp.test', audience: stepgate-test, jwks: idp-jwks.json{cookie} }} }}"
    )
}

fn id_token(gw: &Gateway, sub: &str) -> String {
    gw.token(json!({"sub": sub, "jti": null}))
}

#[tokio::test]
async fn a_thief_with_the_legacy_cookie_cannot_omit_double_or_swap_the_identity() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DELETE, &identity_jwt(Some("id_token"))).await;
    let bob = format!("SESSIONID=bob-legacy; id_token={}", id_token(&gw, "bob"));
    let resp = delete(&gw, &[("cookie", &bob)]).await;
    assert_eq!(resp.status, 401, "{}", text(&resp));
    assert_eq!(resp.error_code(), "step_up_required", "bob's own request");

    // Omitted: the legacy cookie alone.
    let resp = delete(&gw, &[("cookie", "SESSIONID=bob-legacy")]).await;
    assert_eq!(
        (resp.status, resp.error_code()),
        (401, "no_identity".into()),
        "{}",
        text(&resp)
    );
    // Doubled: bob's and mallory's, in two spellings of one cookie.
    let doubled = format!(
        "SESSIONID=bob-legacy; id_token ={}; id_token={}",
        id_token(&gw, "bob"),
        id_token(&gw, "mallory")
    );
    let resp = delete(&gw, &[("cookie", &doubled)]).await;
    assert_eq!(resp.status, 400, "{}", text(&resp));
    // Swapped: mallory's own identity on bob's session.
    let swapped = format!("SESSIONID=bob-legacy; id_token={}", id_token(&gw, "mallory"));
    let resp = delete(&gw, &[("cookie", &swapped)]).await;
    assert_eq!(
        (resp.status, resp.error_code()),
        (403, "identity_mismatch".into()),
        "{}",
        text(&resp)
    );
    let mismatches = gw.audit_events("identity.mismatch");
    assert_eq!(mismatches.len(), 1, "{mismatches:?}");
    assert_eq!(mismatches[0]["sub"], "mallory");
    assert_eq!(mismatches[0]["sid"], gw.sid("bob-legacy"));
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn two_authorization_headers_are_two_identities() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DELETE, &identity_jwt(None)).await;
    let (bob, mallory) = (
        format!("Bearer {}", id_token(&gw, "bob")),
        format!("Bearer {}", id_token(&gw, "mallory")),
    );
    let cookie = ("cookie", "SESSIONID=bob-legacy");
    let resp = delete(&gw, &[cookie, ("authorization", &bob), ("authorization", &mallory)]).await;
    assert_eq!(resp.status, 400, "{}", text(&resp));
    let resp = delete(&gw, &[cookie]).await;
    assert_eq!(resp.error_code(), "no_identity", "{}", text(&resp));
    assert!(up.requests().is_empty());
}

// ---------------------------------------------------- anonymous sessions

#[tokio::test]
async fn the_first_person_to_step_up_on_an_anonymous_session_is_its_only_actor() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DELETE, "").await;
    let bob = enroll(&gw.dir, "bob");
    let mallory = enroll(&gw.dir, "mallory");
    let session = [("cookie", "SESSIONID=shared-admin")];

    let hold = delete(&gw, &session).await.json();
    let resp = complete(
        &gw,
        &session,
        &hold,
        json!({"method": "totp", "user": "bob", "code": pyotp_now(&bob)}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(up.requests().len(), 1);

    // Mallory, with the same session, proves who she is: refused all the same.
    let hold = delete(&gw, &session).await.json();
    let by_mallory = json!({"method": "totp", "user": "mallory", "code": pyotp_now(&mallory)});
    let resp = complete(&gw, &session, &hold, by_mallory).await;
    assert_eq!(
        (resp.status, resp.error_code()),
        (403, "identity_mismatch".into()),
        "{}",
        text(&resp)
    );
    let token = gw.token(json!({"sid": hold["sid"], "txn": hold["txn"], "sub": "mallory"}));
    let resp = complete(&gw, &session, &hold, json!({"method": "token", "token": token})).await;
    assert_eq!(resp.error_code(), "identity_mismatch");
    assert_eq!(up.requests().len(), 1, "nothing more was forwarded");
    let mismatches = gw.audit_events("identity.mismatch");
    assert_eq!(mismatches.len(), 2, "{mismatches:?}");
    assert!(mismatches.iter().all(|m| m["sub"] == "mallory" && m["bound"] == "bob"));

    // Bob himself goes on stepping up on it.
    let token = gw.token(json!({"sid": hold["sid"], "txn": hold["txn"], "sub": "bob"}));
    let resp = complete(&gw, &session, &hold, json!({"method": "token", "token": token})).await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn check_warns_about_routes_anyone_enrolled_could_step_up_on() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DELETE, "").await;
    let warnings = gw.gw.config().warnings.clone();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("routes[0]") && w.contains("first person")),
        "{warnings:?}"
    );
    let restricted = DELETE.replace("max_age: 5m", "max_age: 5m, users: [bob]");
    let gw = Gateway::start(up.addr, &restricted, "").await;
    assert!(gw.gw.config().warnings.iter().all(|w| !w.contains("first person")));
}

// ------------------------------------------------------- real upstreams

/// The attack of issue 20 #11 against Express (cookie-parser) and Flask:
/// both trim the name and take the first `SESSIONID`, so the gateway must
/// not bind the hold to another copy, and refuses the ambiguity instead.
#[tokio::test]
async fn express_and_flask_act_on_the_session_the_hold_is_bound_to() {
    for framework in [Framework::Express, Framework::Flask] {
        let up = RealUpstream::start(framework).await;
        let gw = Gateway::start(up.addr, DELETE, "").await;
        let resp = delete(&gw, &[("cookie", "SESSIONID =bob-session; SESSIONID=junk")]).await;
        assert_eq!(resp.status, 400, "{framework:?}: {}", text(&resp));

        let bobs = [("cookie", "SESSIONID =\"bob-session\"")];
        let hold = delete(&gw, &bobs).await.json();
        assert_eq!(hold["sid"], gw.sid("bob-session"), "{framework:?}");
        let token = gw.token(json!({"sid": hold["sid"], "txn": hold["txn"], "sub": "bob"}));
        let resp = complete(&gw, &bobs, &hold, json!({"method": "token", "token": token})).await;
        assert_eq!(resp.status, 200, "{framework:?}: {}", text(&resp));
        let ran = up.ran_handler("user.delete");
        assert_eq!(ran.len(), 1, "{framework:?}: {:?}", up.ran());
        let session = ran[0].session.clone().unwrap_or_default();
        assert_eq!(session, "bob-session", "{framework:?}");
        let claims = verify_assertion(&gw, ran[0].assertion.as_deref().expect("assertion"));
        assert_eq!(
            claims["sid"],
            gw.sid(&session),
            "{framework:?}: the sid is the session the app used"
        );
    }
}

/// The attack of issue 20 #12 against Express and Flask: a thief holding
/// bob's legacy cookie tries to step up as mallory by omitting, doubling
/// or swapping the identity; the app never runs the delete.
#[tokio::test]
async fn express_and_flask_never_run_a_thiefs_delete_on_bobs_session() {
    for framework in [Framework::Express, Framework::Flask] {
        let up = RealUpstream::start(framework).await;
        let gw = Gateway::start(up.addr, DELETE, &identity_jwt(Some("id_token"))).await;
        let bob = format!("SESSIONID=bob-legacy; id_token={}", id_token(&gw, "bob"));
        assert_eq!(delete(&gw, &[("cookie", &bob)]).await.error_code(), "step_up_required");
        let (b, m) = (id_token(&gw, "bob"), id_token(&gw, "mallory"));
        let attempts = [
            ("SESSIONID=bob-legacy".to_owned(), "no_identity"),
            (
                format!("SESSIONID=bob-legacy; id_token ={m}; id_token={b}"),
                "bad_request",
            ),
            (format!("SESSIONID=bob-legacy; id_token={m}"), "identity_mismatch"),
        ];
        for (cookie, code) in &attempts {
            let session = [("cookie", cookie.as_str())];
            let resp = delete(&gw, &session).await;
            assert_eq!(resp.error_code(), *code, "{framework:?}: {}", text(&resp));
        }
        assert!(
            up.ran_handler("user.delete").is_empty(),
            "{framework:?}: {:?}",
            up.ran()
        );
    }
}

/// Issue 20 #6 against Express: mallory steps up on `acct-profile`, which
/// shares its action with `acct-close` (`users: [alice]`); the reuse
/// window must not carry her over to `acct-close`.
#[tokio::test]
async fn a_reused_step_up_never_widens_who_may_act() {
    let routes = "
  - name: acct-close
    action: acct.write
    match: { methods: [DELETE], path: '/api/items/([^/]+)' }
    require: { methods: [token], users: [alice], reuse: 5m }
    hold: { mode: challenge, timeout: 1m }
  - name: acct-profile
    action: acct.write
    match: { methods: [POST], path: '/api/items/([^/]+)' }
    require: { methods: [token], reuse: 5m }
    hold: { mode: challenge, timeout: 1m }
";
    let up = RealUpstream::start(Framework::Express).await;
    let gw = Gateway::start(up.addr, routes, "").await;
    let session = [("cookie", "SESSIONID=mallory-session")];
    let item = |method| request(method, "/api/items/7", &session, b"");
    let hold = raw(gw.addr, &gw.pki, &item("POST")).await.json();
    assert_eq!(hold["route"], "acct-profile");
    let token = gw.token(json!({"sid": hold["sid"], "txn": hold["txn"], "sub": "mallory"}));
    let resp = complete(&gw, &session, &hold, json!({"method": "token", "token": token})).await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(up.ran_handler("item.update").len(), 1);

    let resp = raw(gw.addr, &gw.pki, &item("DELETE")).await;
    assert_eq!(resp.status, 401, "{}", text(&resp));
    assert_eq!(
        resp.json()["route"],
        "acct-close",
        "held, not forwarded on mallory's reuse"
    );
    assert!(up.ran_handler("item.delete").is_empty(), "{:?}", up.ran());
}

/// Issue 20 #14 against Express: behind a trusted proxy that appends an
/// entry the gateway cannot parse, the attacker-written `10.1.2.3` before
/// it must not become the client address; unknown fails closed.
#[tokio::test]
async fn an_unparsable_forwarding_hop_makes_the_address_unknown_and_fails_closed() {
    let routes = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    when: [ { client_ip_not_in: [10.0.0.0/8] } ]
    require: { methods: [token] }
    hold: { mode: challenge }
";
    let up = RealUpstream::start(Framework::Express).await;
    let gw = Gateway::start(up.addr, routes, "trusted_proxies: [127.0.0.1/32]").await;
    let post = |xff: &str| {
        let headers = [("cookie", "SESSIONID=s1"), ("x-forwarded-for", xff)];
        request("POST", "/api/transfers", &headers, b"")
    };
    let resp = raw(gw.addr, &gw.pki, &post("10.1.2.3")).await;
    assert_eq!(resp.status, 200, "the office passes: {}", text(&resp));
    for xff in [
        "10.1.2.3, unknown",
        "10.1.2.3, \"203.0.113.9\"",
        "10.1.2.3, 203.0.113.9:4711",
        "10.1.2.3, [2001:db8::7]:443",
    ] {
        let resp = raw(gw.addr, &gw.pki, &post(xff)).await;
        assert_eq!(resp.status, 401, "{xff}: {}", text(&resp));
        assert_eq!(resp.json()["risk"], json!(["client_ip_not_in"]), "{xff}");
    }
    assert_eq!(up.ran_handler("transfer").len(), 1, "{:?}", up.ran());
}
