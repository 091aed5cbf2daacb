//! TOTP step-up end to end: enrollment with the real `stepgate` binary,
//! codes computed by Python pyotp (not by the gateway's own TOTP code),
//! real TLS in front of a recording upstream.
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use stepup_kit::*;

const COOKIE: &str = "SESSIONID=totp-session-1";

const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [totp], max_age: 5m }
    display: [ { label: User, capture: 1 } ]
    hold: { mode: auto, timeout: 2m }
  - name: admins-only
    action: config.change
    match: { methods: [POST], path: /admin/config }
    require: { methods: [totp], groups: [admins] }
    hold: { mode: challenge, timeout: 2m }
  - name: bob-only
    action: payroll.run
    match: { methods: [POST], path: /admin/payroll }
    require: { methods: [totp], users: [bob] }
    hold: { mode: challenge, timeout: 2m }
";

async fn gateway(up: &Upstream, top: &str) -> Gateway {
    Gateway::start(up.addr, ROUTES, top).await
}

/// A held `POST` (JSON client, so the `auto` route answers with a challenge).
async fn hold_on(gw: &Gateway, path: &str, extra: &[(&str, &str)], body: &[u8]) -> serde_json::Value {
    hold_as(gw, COOKIE, path, extra, body).await
}

/// [`hold_on`] for another session: the first person to step up on a
/// session is the only one who may (SPEC §3), so each person gets theirs.
async fn hold_as(gw: &Gateway, cookie: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> serde_json::Value {
    let mut headers = vec![("cookie", cookie), ("content-type", "application/json")];
    headers.extend_from_slice(extra);
    let resp = raw(gw.addr, &gw.pki, &request("POST", path, &headers, body)).await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    let ch = resp.json();
    assert_eq!(ch["error"], "step_up_required");
    assert_eq!(ch["methods"], json!(["totp"]));
    ch
}

fn hold_id(ch: &serde_json::Value) -> String {
    ch["hold_id"].as_str().expect("hold id").to_owned()
}

#[tokio::test]
async fn cli_enrollment_is_inactive_until_confirmed_and_keeps_the_store_private() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "").await;

    let otp = enroll_pending(&gw.dir, "alice");
    assert_eq!(otp.label, "stepgate:alice");
    assert_eq!(otp.issuer.as_deref(), Some("stepgate"));
    assert_eq!(otp.secret.len(), 32, "160-bit secret in base32: {}", otp.secret);
    assert!(
        otp.secret
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "RFC 4648 base32: {}",
        otp.secret
    );
    // Parameters an app would take as non-default must match what the
    // gateway verifies (SHA-1, 6 digits, 30 s), or be left at the default.
    for (k, v) in &otp.params {
        match k.as_str() {
            "algorithm" => assert_eq!(v, "SHA1"),
            "digits" => assert_eq!(v, "6"),
            "period" => assert_eq!(v, "30"),
            _ => {}
        }
    }

    let users = users_file(&gw.dir);
    let mode = std::fs::metadata(&users).expect("users file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "user store must be private");

    // A pending credential is not a credential.
    let ch = hold_on(&gw, "/admin/users/bob/delete", &[], b"{}").await;
    let resp = complete_totp(&gw, COOKIE, &hold_id(&ch), "alice", &pyotp_now(&otp.secret)).await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    assert_eq!(resp.error_code(), "invalid_proof");

    let bad = wrong_code(&otp.secret);
    let run = stepgate(&gw.dir, &["enroll", "totp", "alice", "--confirm", &bad]);
    assert_eq!(
        run.code, 2,
        "wrong confirm code is bad input: {} {}",
        run.stdout, run.stderr
    );
    let text = std::fs::read_to_string(&users).expect("users");
    assert!(text.contains("confirmed: false"), "{text}");
    let resp = complete_totp(&gw, COOKIE, &hold_id(&ch), "alice", &pyotp_now(&otp.secret)).await;
    assert_eq!(
        resp.error_code(),
        "invalid_proof",
        "still inactive after a wrong confirm"
    );
    assert_eq!(up.requests().len(), 0);

    // An authenticator a little behind: the previous step's code confirms
    // (±1 step), which keeps the current step free for the step-up below.
    let code = pyotp_at(&otp.secret, now_secs() - 30);
    let run = stepgate(&gw.dir, &["enroll", "totp", "alice", "--confirm", &code]);
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    let text = std::fs::read_to_string(&users).expect("users");
    let mode = std::fs::metadata(&users).expect("users file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "still private after the confirm rewrote it");
    assert!(text.contains("confirmed: true"), "{text}");
    let tokens: Vec<&str> = text.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    assert!(!tokens.contains(&code.as_str()), "the confirm code was stored: {text}");
    assert!(!text.contains("code"), "{text}");

    // The confirm code has been seen: it cannot also step up.
    let ch = hold_on(&gw, "/admin/users/dave/delete", &[], b"{}").await;
    let resp = complete_totp(&gw, COOKIE, &hold_id(&ch), "alice", &code).await;
    assert_eq!(resp.error_code(), "invalid_proof", "the confirm code is spent");

    // And now the same enrollment works for a step-up.
    let ch = hold_on(&gw, "/admin/users/carol/delete", &[], b"{}").await;
    let resp = complete_totp(&gw, COOKIE, &hold_id(&ch), "alice", &pyotp_now(&otp.secret)).await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(up.count("/admin/users/carol/delete"), 1);
    assert_eq!(up.count("/admin/users/bob/delete"), 0);
}

#[tokio::test]
async fn a_totp_proof_releases_the_hold_once_with_an_otp_assertion() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "").await;
    let secret = enroll(&gw.dir, "alice");

    let body = br#"{"reason":"offboarding"}"#;
    let ch = hold_on(&gw, "/admin/users/mallory/delete", &[], body).await;
    let hold = hold_id(&ch);
    assert_eq!(up.requests().len(), 0, "held, not forwarded");

    let resp = complete_totp(&gw, COOKIE, &hold, "alice", &pyotp_now(&secret)).await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(
        resp.header("x-upstream"),
        Some("recorder"),
        "the complete call gets the upstream response"
    );

    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.target, "/admin/users/mallory/delete");
    assert_eq!(&r.body[..], body);
    let claims = verify_assertion(&gw, &r.header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["amr"], json!(["otp"]));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["txn"], txn_of(r, "localhost"));
    assert_eq!(claims["txn"], ch["txn"]);
    assert_eq!(claims["hold"], hold.as_str());
    assert_eq!(claims["act"], "user.delete");
    assert_eq!(claims["sid"], gw.sid("totp-session-1"));

    let again = complete_totp(&gw, COOKIE, &hold, "alice", &pyotp_now(&secret)).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "already_released");
    assert_eq!(up.requests().len(), 1, "forwarded exactly once");
}

#[tokio::test]
async fn wrong_codes_count_down_and_then_deny_for_good() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "").await;
    let secret = enroll(&gw.dir, "alice");
    let ch = hold_on(&gw, "/admin/users/bob/delete", &[], b"{}").await;
    let hold = hold_id(&ch);

    for left in [4, 3, 2, 1] {
        let resp = complete_totp(&gw, COOKIE, &hold, "alice", &wrong_code(&secret)).await;
        assert_eq!(resp.status, 401, "{}", body_text(&resp));
        assert_eq!(resp.error_code(), "invalid_proof");
        assert_eq!(resp.json()["attempts_left"], left);
    }
    let resp = complete_totp(&gw, COOKIE, &hold, "alice", &wrong_code(&secret)).await;
    assert_eq!(resp.status, 403, "{}", body_text(&resp));
    assert_eq!(resp.error_code(), "step_up_denied");

    let resp = complete_totp(&gw, COOKIE, &hold, "alice", &pyotp_now(&secret)).await;
    assert_eq!(resp.status, 403, "a denied hold stays denied: {}", body_text(&resp));
    assert_eq!(resp.error_code(), "step_up_denied");
    let status = get(&gw, &format!("/.stepup/holds/{hold}"), &[("cookie", COOKIE)]).await;
    assert_eq!(status.json()["state"], "denied");
    assert_eq!(up.requests().len(), 0, "nothing forwarded");
}

#[tokio::test]
async fn a_code_is_accepted_once_per_user_even_across_holds_and_races() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "").await;
    let secret = enroll(&gw.dir, "alice");

    let first = hold_id(&hold_on(&gw, "/admin/users/u1/delete", &[], b"{}").await);
    let second = hold_id(&hold_on(&gw, "/admin/users/u2/delete", &[], b"{}").await);
    let code = pyotp_now(&secret);
    let resp = complete_totp(&gw, COOKIE, &first, "alice", &code).await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    let resp = complete_totp(&gw, COOKIE, &second, "alice", &code).await;
    assert_eq!(resp.status, 401, "a replayed code: {}", body_text(&resp));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.count("/admin/users/u1/"), 1);
    assert_eq!(up.count("/admin/users/u2/"), 0);

    // Two holds completed at the same moment with one fresh code (bob has
    // not used any): the claim is atomic, so exactly one wins.
    let bob = enroll(&gw.dir, "bob");
    let bobs = "SESSIONID=bob-session";
    let a = hold_id(&hold_as(&gw, bobs, "/admin/users/r1/delete", &[], b"{}").await);
    let b = hold_id(&hold_as(&gw, bobs, "/admin/users/r2/delete", &[], b"{}").await);
    let code = pyotp_now(&bob);
    let (ra, rb) = tokio::join!(
        complete_totp(&gw, bobs, &a, "bob", &code),
        complete_totp(&gw, bobs, &b, "bob", &code)
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401], "{} / {}", body_text(&ra), body_text(&rb));
    assert_eq!(up.count("/admin/users/r"), 1);
}

#[tokio::test]
async fn a_code_one_step_old_is_accepted_but_not_two_steps() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "").await;
    let secret = enroll(&gw.dir, "alice");
    let ch = hold_on(&gw, "/admin/users/bob/delete", &[], b"{}").await;
    let hold = hold_id(&ch);

    // The steps below are relative to "now"; keep "now" inside one step.
    fresh_step(12).await;
    let t = now_secs();
    let two_ago = pyotp_at(&secret, t - 60);
    let one_ago = pyotp_at(&secret, t - 30);
    let two_ahead = pyotp_at(&secret, t + 60);
    let near = [one_ago.clone(), pyotp_at(&secret, t), pyotp_at(&secret, t + 30)];
    assert!(
        !near.contains(&two_ago) && !near.contains(&two_ahead),
        "codes collide across steps (one in ~10^5 runs); rerun"
    );

    let resp = complete_totp(&gw, COOKIE, &hold, "alice", &two_ago).await;
    assert_eq!(resp.status, 401, "two steps old: {}", body_text(&resp));
    assert_eq!(resp.json()["attempts_left"], 4);
    let resp = complete_totp(&gw, COOKIE, &hold, "alice", &two_ahead).await;
    assert_eq!(resp.status, 401, "two steps ahead: {}", body_text(&resp));
    assert_eq!(up.requests().len(), 0);

    let resp = complete_totp(&gw, COOKIE, &hold, "alice", &one_ago).await;
    assert_eq!(
        resp.status,
        200,
        "one step old is within the skew: {}",
        body_text(&resp)
    );
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn a_known_session_identity_must_be_the_one_who_steps_up() {
    let up = Upstream::start().await;
    let gw = gateway(
        &up,
        "trusted_proxies: [127.0.0.1/32]\nidentity: { header: X-Remote-User }\n",
    )
    .await;
    let alice = enroll(&gw.dir, "alice");
    let bob = enroll(&gw.dir, "bob");

    let ch = hold_on(&gw, "/admin/users/eve/delete", &[("x-remote-user", "bob")], b"{}").await;
    let hold = hold_id(&ch);
    let resp = complete_totp(&gw, COOKIE, &hold, "alice", &pyotp_now(&alice)).await;
    assert_eq!(
        resp.status,
        401,
        "alice cannot step up for bob's session: {}",
        body_text(&resp)
    );
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.requests().len(), 0);

    let resp = complete_totp(&gw, COOKIE, &hold, "bob", &pyotp_now(&bob)).await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("x-remote-user").as_deref(),
        Some("bob"),
        "a trusted proxy's header is kept"
    );
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "bob");
}

/// An identity the gateway cannot read unambiguously must not turn into
/// "identity unknown" (anyone may step up) while the upstream reads one.
#[tokio::test]
async fn an_ambiguous_identity_header_is_refused_not_ignored() {
    let up = Upstream::start().await;
    let gw = gateway(
        &up,
        "trusted_proxies: [127.0.0.1/32]\nidentity: { header: X-Remote-User }\n",
    )
    .await;
    let alice = enroll(&gw.dir, "alice");

    // Twice (a proxy that appends instead of replacing): which one the
    // upstream believes is up to the upstream.
    let twice = [("x-remote-user", "alice"), ("x-remote-user", "mallory")];
    // Not ASCII: the gateway cannot compare it with a user name.
    let unreadable = [("x-remote-user", "jürgen")];
    for headers in [&twice[..], &unreadable[..]] {
        let mut h = vec![("cookie", COOKIE), ("content-type", "application/json")];
        h.extend_from_slice(headers);
        let resp = raw(gw.addr, &gw.pki, &request("POST", "/admin/users/x/delete", &h, b"{}")).await;
        if resp.status == 401 && resp.error_code() == "step_up_required" {
            let hold = hold_id(&resp.json());
            let r = complete_totp(&gw, COOKIE, &hold, "alice", &pyotp_now(&alice)).await;
            assert_ne!(r.status, 200, "alice stepped up for {headers:?}");
        }
        assert_eq!(resp.status, 400, "{headers:?}: {}", body_text(&resp));
        assert_eq!(resp.error_code(), "bad_request");
    }
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn an_identity_header_from_an_untrusted_peer_is_stripped_and_ignored() {
    let up = Upstream::start().await;
    // No trusted_proxies: the test client is an ordinary client.
    let gw = gateway(&up, "identity: { header: X-Remote-User }\n").await;
    let alice = enroll(&gw.dir, "alice");

    // The forged header is not believed, and with an identity source
    // configured a request without a believed identity is refused.
    let headers = [
        ("cookie", COOKIE),
        ("content-type", "application/json"),
        ("x-remote-user", "bob"),
    ];
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/admin/users/eve/delete", &headers, b"{}"),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    assert_eq!(resp.error_code(), "no_identity");
    drop(alice);

    let plain = raw(
        gw.addr,
        &gw.pki,
        &request("GET", "/public/page", &[("x-remote-user", "bob")], b""),
    )
    .await;
    assert_eq!(plain.status, 200);

    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("x-remote-user"),
        None,
        "forged identity reached the upstream"
    );
}

#[tokio::test]
async fn route_users_and_groups_restrict_who_may_step_up() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "").await;
    let alice = enroll(&gw.dir, "alice");
    let bob = enroll(&gw.dir, "bob");

    // users: [bob]: alice may not (her code is fresh, so only the rule
    // can refuse it), bob may.
    // (bob's own session: alice is the only one who steps up on COOKIE.)
    let bobs = "SESSIONID=bob-session";
    let ch = hold_as(&gw, bobs, "/admin/payroll", &[], b"{}").await;
    let hold = hold_id(&ch);
    let resp = complete_totp(&gw, bobs, &hold, "alice", &pyotp_now(&alice)).await;
    assert_eq!(resp.status, 401, "alice is not listed: {}", body_text(&resp));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.count("/admin/payroll"), 0);
    let resp = complete_totp(&gw, bobs, &hold, "bob", &pyotp_now(&bob)).await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(up.count("/admin/payroll"), 1);

    // groups: [admins], and alice is in no group yet.
    let ch = hold_on(&gw, "/admin/config", &[], br#"{"mode":"strict"}"#).await;
    let hold = hold_id(&ch);
    let resp = complete_totp(&gw, COOKIE, &hold, "alice", &pyotp_now(&alice)).await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.count("/admin/config"), 0);

    set_groups(&gw.dir, "alice", &["admins"]);
    let resp = complete_totp(&gw, COOKIE, &hold, "alice", &pyotp_now(&alice)).await;
    assert_eq!(resp.status, 200, "alice is an admin now: {}", body_text(&resp));
    assert_eq!(up.count("/admin/config"), 1);
    let r = up
        .requests()
        .into_iter()
        .find(|r| r.target == "/admin/payroll")
        .expect("payroll");
    let claims = verify_assertion(&gw, &r.header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "bob");
}

#[tokio::test]
async fn the_no_javascript_form_on_the_step_up_page_completes_the_hold() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "").await;
    let secret = enroll(&gw.dir, "alice");

    let page = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            "/admin/users/bob/delete",
            &[
                ("cookie", COOKIE),
                ("accept", "text/html"),
                ("content-type", "application/json"),
            ],
            b"{}",
        ),
    )
    .await;
    assert_eq!(page.status, 401);
    let html = body_text(&page);
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page has a form");
    assert!(action.ends_with("/complete"), "{action}");
    assert!(
        html.contains("name=\"user\"") && html.contains("name=\"code\""),
        "{html}"
    );

    let form = format!("method=totp&user=alice&code={}", pyotp_now(&secret));
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            action,
            &[
                ("cookie", COOKIE),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            form.as_bytes(),
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(resp.header("x-upstream"), Some("recorder"));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/admin/users/bob/delete");
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["amr"], json!(["otp"]));
}
