//! Approvers on the approval page over real TLS: the signed sign-in
//! cookie attacked (forged, tampered, expired, doubled), the fresh proof and
//! the gateway's Origin every cookie decision needs, the requester's page
//! continuing afterwards, and passkeys whose challenges serve one purpose.
#![allow(clippy::unwrap_used)]

mod common;
mod pagekit;
mod stepup_kit;

use common::*;
use pagekit::*;
use std::time::Duration;
use stepup_kit::*;

#[tokio::test]
async fn approver_cookies_that_are_forged_tampered_or_expired_are_refused() {
    let s = setup("").await;
    let bob = s.sign_in_bob().await;
    let json = [("accept", "application/json")];
    let queue = |cookie: String| {
        let gw = &s.gw;
        async move { get(gw, "/.stepup/holds", &[json[0], ("cookie", cookie.as_str())]).await }
    };
    assert_eq!(queue(bob.clone()).await.status, 200, "the real cookie works");

    let value = bob.split_once('=').unwrap().1.to_owned();
    let name = stepgate::session::approver::COOKIE;
    // Another approver's name under bob's signature.
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let tampered = value.replacen(&b64("bob"), &b64("carol"), 1);
    assert_ne!(tampered, value);
    // A later expiry under the same signature.
    let parts: Vec<&str> = value.split('.').collect();
    let later = format!(
        "v1.{}.{}.{}",
        parts[1],
        parts[2].parse::<u64>().unwrap() + 86_400,
        parts[3]
    );
    // Properly signed, but with another deployment's key.
    let other_key = stepgate::session::SessionKey::new(vec![7; 32]).unwrap();
    let foreign = stepgate::session::approver::issue(&other_key, "bob", s.now());
    for forged in [
        tampered,
        later,
        foreign,
        "v1.Ym9i.99999999999.AAAA".into(),
        String::new(),
    ] {
        let r = queue(format!("{name}={forged}")).await;
        assert_eq!(r.status, 403, "{forged}: {}", body_text(&r));
        assert_eq!(r.error_code(), "forbidden");
    }
    let doubled = queue(format!("{bob}; {name}=v1.Ym9i.1.AAAA")).await;
    assert_eq!(doubled.status, 403, "two different copies are refused");

    s.clock.advance(Duration::from_secs(30 * 60));
    let expired = queue(bob.clone()).await;
    assert_eq!(expired.status, 403, "a sign-in lasts 30 minutes");
    let page = get(&s.gw, "/.stepup/holds", &[HTML, ("cookie", &bob)]).await;
    assert!(page_text(&page).contains("<h1>Approver sign-in</h1>"));

    // Signing out clears the cookie (and needs the gateway's Origin).
    let no_origin = s.form("/.stepup/approver/logout", &[("cookie", &bob)], "").await;
    assert_eq!(no_origin.status, 403);
    let out = s
        .form("/.stepup/approver/logout", &[ORIGIN, ("cookie", &bob)], "")
        .await;
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn a_signed_in_approver_adds_a_fresh_proof_from_the_gateways_origin_and_the_requester_continues() {
    let s = setup("").await;
    let c = "SESSIONID=pages-requester";
    s.step_up_on(c, "dana").await;
    let held = s
        .form("/api/transfers", &[HTML, ("cookie", c)], "amount=25000&payee=ACME")
        .await;
    assert_eq!(held.status, 401);
    let html = page_text(&held);
    assert!(html.contains("role=\"status\" id=\"approval-status\""), "{html}");
    assert!(html.contains(">Waiting for approval by 1 person</p>"), "{html}");
    let complete = form_action(&html, "/complete");
    let hold = complete.split('/').nth(3).unwrap().to_owned();

    // "Continue" before anyone approved: back to the page, nothing sent.
    let early = s.form(&complete, &[HTML, ("cookie", c)], "").await;
    assert_eq!(early.status, 303, "{}", body_text(&early));
    assert_eq!(
        early.header("location"),
        Some(format!("/.stepup/holds/{hold}").as_str())
    );
    assert_eq!(s.up.count("/api/transfers"), 0);

    let bob = s.sign_in_bob().await;
    let review = page_text(&get(&s.gw, &format!("/.stepup/holds/{hold}"), &[HTML, ("cookie", &bob)]).await);
    for shown in [
        "<code>POST /api/transfers</code>",
        "Amount</dt><dd>25000",
        "Payee</dt><dd>ACME",
        "Approve with code",
        "Requested by</dt><dd>dana</dd>",
    ] {
        assert!(review.contains(shown), "{shown}:\n{review}");
    }
    let txn = hidden(&review, "txn");
    let approve = format!("/.stepup/holds/{hold}/approve");
    let next = s.bob_code(1);
    let with = |code: &str| format!("txn={txn}&comment=ok&code={code}");

    // Without the gateway's Origin (cross-site form, or none): refused.
    for origin in [None, Some("https://evil.example"), Some("null")] {
        let mut h = vec![("cookie", bob.as_str())];
        h.extend(origin.map(|o| ("origin", o)));
        let r = s.form(&approve, &h, &with(&next)).await;
        assert_eq!(r.status, 403, "origin {origin:?}");
    }
    // A sign-in posted from another site's page is refused, as a page.
    let foreign = s
        .form(
            "/.stepup/approver/login",
            &[HTML, ("origin", "https://evil.example")],
            &format!("name=bob&code={next}"),
        )
        .await;
    assert_eq!(foreign.status, 403);
    assert!(assert_page(&foreign).contains("role=\"alert\""));
    // The cookie alone is not enough: no code, or the code bob signed in with.
    let r = post_json(
        &s.gw,
        &approve,
        &[ORIGIN, ("cookie", &bob)],
        &serde_json::json!({"txn": txn}),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "invalid_proof");
    let reused = s
        .form(&approve, &[HTML, ORIGIN, ("cookie", &bob)], &with(&s.bob_code(0)))
        .await;
    assert_eq!(reused.status, 401);
    assert!(assert_page(&reused).contains("role=\"alert\""));
    // A decision for a different txn is refused too.
    let r = post_json(
        &s.gw,
        &approve,
        &[ORIGIN, ("cookie", &bob)],
        &serde_json::json!({"txn": "other", "code": next}),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "txn_mismatch");
    assert_eq!(s.up.count("/api/transfers"), 0);

    // The API key keeps working as before (no code needed), but bob has
    // not decided yet: the queue still lists the hold for him.
    let q = queue(&s.gw, &s.bob).await;
    assert_eq!(q.json()["holds"].as_array().unwrap().len(), 1);
    let ok = s.form(&approve, &[HTML, ORIGIN, ("cookie", &bob)], &with(&next)).await;
    assert_eq!(ok.status, 200, "{}", body_text(&ok));
    assert!(page_text(&ok).contains("role=\"status\">Approved."));

    // The requester's page (no JavaScript) collects with "Continue": the
    // answer is the upstream's own response.
    let done = s.form(&complete, &[HTML, ("cookie", c)], "").await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    assert_eq!(done.header("x-upstream"), Some("recorder"));
    let seen: Vec<_> =
        s.up.requests()
            .into_iter()
            .filter(|r| r.target == "/api/transfers")
            .collect();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&s.gw, &seen[0].header("x-stepup-assertion").unwrap());
    assert_eq!(claims["approvers"][0]["sub"], "bob");
    // The requester named on the session is accountable, never the approver.
    assert_eq!(claims["sub"], "dana", "{claims:?}");
    assert!(
        !seen[0]
            .header("cookie")
            .unwrap_or_default()
            .contains("stepgate-approver"),
        "never forwarded"
    );
    // Going back to the page afterwards says it is done, and posting again
    // sends nothing more.
    let after = get(&s.gw, &format!("/.stepup/holds/{hold}"), &[HTML, ("cookie", c)]).await;
    assert!(assert_page(&after).contains("<h1>Already done</h1>"));
    let again = s.form(&complete, &[HTML, ("cookie", c)], "").await;
    assert_eq!(again.status, 409);
    assert_eq!(s.up.count("/api/transfers"), 1);
}

#[tokio::test]
async fn the_approver_cookie_is_never_forwarded_upstream() {
    let s = setup("").await;
    let bob = s.sign_in_bob().await;
    let cookie = format!("SESSIONID=a; {bob}; theme=dark");
    let r = get(&s.gw, "/plain/page", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200);
    let seen = s.up.requests();
    assert_eq!(seen[0].header("cookie").as_deref(), Some("SESSIONID=a; theme=dark"));
}

/// The authenticator here is `common::authenticator::SoftKey`, a software
/// stand-in for a real one (the Chromium tests drive the browser's own):
/// it signs what a browser and an authenticator would.
#[tokio::test]
async fn an_approver_signs_in_and_decides_with_a_passkey_each_challenge_for_its_own_purpose() {
    use common::authenticator::SoftKey;
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let stepup = vec![
        "webauthn: { rp_id: localhost, origins: ['https://localhost'] }".to_owned(),
        approvers_line(&[bob.yaml(&["treasury"], false)]),
    ];
    let gw = Gateway::start(up.addr, ROUTES, &extra(&stepup, "")).await;
    let mut key = SoftKey::new("localhost", "https://localhost");
    enroll_passkey(&gw, "bob", &key).await;

    let enc = |v: &serde_json::Value| form_urlencoded::byte_serialize(v.to_string().as_bytes()).collect::<String>();
    let c = "SESSIONID=pages-passkey-payer";
    step_up_on(&gw, c, "dana", now_secs()).await;
    let held = post_form(
        &gw,
        "/api/transfers",
        &[HTML, ("cookie", c)],
        "amount=70000&payee=Globex",
    )
    .await;
    let hold = form_action(&page_text(&held), "/complete")
        .split('/')
        .nth(3)
        .unwrap()
        .to_owned();

    let signin = get(&gw, "/.stepup/holds", &[HTML]).await;
    assert!(assert_page(&signin).contains("Sign in with a passkey"));
    let name_bob = serde_json::json!({"name": "bob"});
    let login_options = || post_json(&gw, "/.stepup/approver/login/options", &[ORIGIN], &name_bob);
    let o = login_options().await;
    assert_eq!(o.status, 200, "{}", body_text(&o));
    let signed_in = key.assert(&o.json());
    let login = |credential: &serde_json::Value| {
        form_request(
            "/.stepup/approver/login",
            &[HTML, ORIGIN],
            &format!("name=bob&method=webauthn&credential={}", enc(credential)),
        )
    };
    let r = raw(gw.addr, &gw.pki, &login(&signed_in)).await;
    assert_eq!(r.status, 303, "{}", body_text(&r));
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    // The same sign-in assertion does not work twice.
    let again = raw(gw.addr, &gw.pki, &login(&signed_in)).await;
    assert_eq!(again.status, 401);
    assert!(assert_page(&again).contains("role=\"alert\""));

    let review = page_text(&get(&gw, &format!("/.stepup/holds/{hold}"), &[HTML, ("cookie", &cookie)]).await);
    assert!(review.contains("Approve with a passkey"), "{review}");
    let txn = hidden(&review, "txn");
    let approve = format!("/.stepup/holds/{hold}/approve");
    let decide = |credential: &serde_json::Value| {
        form_request(
            &approve,
            &[HTML, ORIGIN, ("cookie", cookie.as_str())],
            &format!("txn={txn}&webauthn={}", enc(credential)),
        )
    };
    // An assertion made for signing in is no decision.
    let for_login = key.assert(&login_options().await.json());
    let r = raw(gw.addr, &gw.pki, &decide(&for_login)).await;
    assert_eq!(r.status, 401, "{}", body_text(&r));
    assert_eq!(up.count("/api/transfers"), 0);

    let d = get(
        &gw,
        &format!("/.stepup/holds/{hold}/webauthn?as=approver"),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(d.status, 200, "{}", body_text(&d));
    let for_decision = key.assert(&d.json());
    // ... and one made for this decision cannot sign anyone in.
    let r = raw(gw.addr, &gw.pki, &login(&for_decision)).await;
    assert_eq!(r.status, 401);
    let d = get(
        &gw,
        &format!("/.stepup/holds/{hold}/webauthn?as=approver"),
        &[("cookie", &cookie)],
    )
    .await;
    let r = raw(gw.addr, &gw.pki, &decide(&key.assert(&d.json()))).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert!(page_text(&r).contains("role=\"status\">Approved."));

    let done = post_form(
        &gw,
        &format!("/.stepup/holds/{hold}/complete"),
        &[HTML, ("cookie", c)],
        "",
    )
    .await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    let transfer = up
        .requests()
        .into_iter()
        .find(|r| r.target == "/api/transfers")
        .unwrap();
    let claims = verify_assertion(&gw, &transfer.header("x-stepup-assertion").unwrap());
    assert_eq!(claims["approvers"][0]["sub"], "bob");
    assert_eq!(claims["sub"], "dana");
}

/// An approval-only hold names who asked where the gateway knows: alice
/// stepped up on this session before, so bob's list and review page say
/// "alice", and the assertion's `sub` is alice, with bob in `approvers`.
/// Pages show a route's `label:` (a route without one, its action id), and
/// the request's display values sit in a section of their own, apart from
/// the decision form.
#[tokio::test]
async fn approvers_see_who_asked_and_the_assertion_names_the_requester() {
    let s = setup("").await;
    let alice = enroll(&s.gw.dir, "alice");
    let c = "SESSIONID=pages-known-requester";

    let held = s.form("/admin/users/carol/delete", &[HTML, ("cookie", c)], "").await;
    assert_eq!(held.status, 401);
    let html = assert_page(&held);
    for shown in [
        "<title>Confirm: Delete a user</title>",
        "Action</dt><dd>Delete a user</dd>",
    ] {
        assert!(html.contains(shown), "{shown}:\n{html}");
    }
    assert!(!html.contains("user.delete"), "the action id is shown:\n{html}");
    let complete = form_action(&html, "/complete");
    let code = pyotp_at(&alice, s.now());
    let done = s
        .form(
            &complete,
            &[HTML, ("cookie", c)],
            &format!("method=totp&user=alice&code={code}"),
        )
        .await;
    assert_eq!(done.status, 200, "{}", body_text(&done));

    let held = s
        .form("/api/transfers", &[HTML, ("cookie", c)], "amount=25000&payee=ACME")
        .await;
    assert_eq!(held.status, 401);
    let complete = form_action(&page_text(&held), "/complete");
    let hold = complete.split('/').nth(3).unwrap().to_owned();

    let bob = s.sign_in_bob().await;
    let list = assert_page(&get(&s.gw, "/.stepup/holds", &[HTML, ("cookie", &bob)]).await);
    assert!(list.contains("requested by <b>alice</b>"), "{list}");
    assert!(list.contains("<span class=\"action\">money.transfer</span>"), "{list}");
    let review = assert_page(&get(&s.gw, &format!("/.stepup/holds/{hold}"), &[HTML, ("cookie", &bob)]).await);
    assert!(review.contains("Requested by</dt><dd>alice</dd>"), "{review}");
    let section = review
        .find("<section class=\"shown\"")
        .expect("a section for the request's values");
    let amount = review.find("Amount</dt><dd>25000").expect("the amount");
    let form = review.find("<form id=\"decide\"").expect("the decision form");
    assert!(section < amount && amount < form, "{review}");
    assert!(
        !review[section..form].contains("<input"),
        "an input among the request's values"
    );

    let txn = hidden(&review, "txn");
    assert_eq!(approve(&s.gw, &s.bob, &hold, &txn).await.status, 200);
    let done = s.form(&complete, &[HTML, ("cookie", c)], "").await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    let seen = s.up.requests();
    assert_eq!(seen.len(), 2, "the delete and the transfer");
    let claims = verify_assertion(&s.gw, &seen[1].header("x-stepup-assertion").unwrap());
    assert_eq!(claims["sub"], "alice", "the requester is accountable");
    assert_eq!(claims["acr"], "approval");
    assert_eq!(claims["approvers"][0]["sub"], "bob");
}
