//! The browser pages over real TLS: the step-up page, the approvers' pages
//! and sign-in, the enrollment page. Headers and escaping are attacked on
//! every page; the no-JavaScript paths (code form, "Continue" after an
//! approval) are driven as a browser without JavaScript would drive them,
//! with plain form posts. TOTP codes come from Python pyotp.
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use stepgate::clock::ManualClock;
use stepup_kit::*;

const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [totp], max_age: 5m }
    display: [ { label: User, capture: 1 } ]
    hold: { mode: auto, timeout: 2m }
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { approvals: 1, approvers: [treasury] }
    display: [ { label: Amount, form: amount }, { label: Payee, form: payee } ]
    hold: { mode: auto, timeout: 5m }
  - name: vendor-add
    action: vendor.add
    match: { methods: [POST], path: /admin/vendors }
    require: { methods: [totp], approvals: 1, approvers: [treasury] }
    hold: { mode: auto, timeout: 5m }
";

const ORIGIN: (&str, &str) = ("origin", "https://localhost");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml");

struct Setup {
    up: Upstream,
    gw: Gateway,
    /// Bob's API key (the approval API next to the page).
    bob: ApproverKey,
    bob_totp: String,
    clock: Arc<ManualClock>,
}

/// A gateway on a manual clock (so TOTP codes and cookie expiry are exact)
/// with approver `bob` (treasury) enrolled for TOTP, and `alice` too.
async fn setup(top: &str) -> Setup {
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let t0 = now_secs() / 30 * 30 + 7;
    let clock = Arc::new(ManualClock::at_unix(t0));
    let stepup = vec![approvers_line(&[bob.yaml(&["treasury"], false)])];
    let gw = Gateway::start_with_clock(up.addr, ROUTES, &extra(&stepup, top), clock.clone()).await;
    let bob_totp = enroll(&gw.dir, "bob");
    Setup {
        up,
        gw,
        bob,
        bob_totp,
        clock,
    }
}

impl Setup {
    fn now(&self) -> u64 {
        stepgate::clock::unix_secs(stepgate::clock::Clock::now(self.clock.as_ref()))
    }

    /// Bob's code `steps` time steps from the gateway's now.
    fn bob_code(&self, steps: u64) -> String {
        pyotp_at(&self.bob_totp, self.now() + 30 * steps)
    }

    async fn form(&self, path: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
        let mut h = vec![FORM];
        h.extend_from_slice(headers);
        raw(self.gw.addr, &self.gw.pki, &request("POST", path, &h, body.as_bytes())).await
    }

    /// Signs bob in on the approval page; returns the cookie pair.
    async fn sign_in_bob(&self) -> String {
        let code = self.bob_code(0);
        let r = self
            .form(
                "/.stepup/approver/login",
                &[HTML, ORIGIN],
                &format!("name=bob&code={code}"),
            )
            .await;
        assert_eq!(r.status, 303, "{}", body_text(&r));
        assert_eq!(r.header("location"), Some("/.stepup/holds"));
        let set = r.header("set-cookie").expect("a cookie").to_owned();
        for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attr), "{attr} missing: {set}");
        }
        assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");
        set.split(';').next().unwrap().to_owned()
    }
}

fn page_text(r: &RawResponse) -> String {
    String::from_utf8(r.body.clone()).expect("UTF-8 page")
}

/// The headers every gateway page carries, and every inline `<script>` and
/// `<style>` carries this response's CSP nonce (nothing else could run).
fn assert_page(r: &RawResponse) -> String {
    let html = page_text(r);
    assert!(
        r.header("content-type").unwrap_or("").starts_with("text/html"),
        "not a page ({}): {html}",
        r.status
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let csp = r.header("content-security-policy").expect("CSP");
    for d in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(d), "{d} missing: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    let nonce = csp
        .split("script-src 'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("script nonce");
    assert!(nonce.len() >= 16, "{nonce}");
    assert!(csp.contains(&format!("style-src 'nonce-{nonce}'")), "{csp}");
    let lower = html.to_ascii_lowercase();
    for tag in ["<script", "<style"] {
        let all = lower.matches(tag).count();
        let ours = html.matches(&format!("{tag} nonce=\"{nonce}\">")).count();
        assert!(all >= 1, "the page has its {tag}");
        assert_eq!(all, ours, "a {tag} without this response's nonce:\n{html}");
    }
    assert!(
        !lower.contains(" style=\""),
        "inline style attributes would be blocked by the CSP"
    );
    assert!(
        !lower.contains(" onclick=") && !lower.contains(" onload="),
        "inline handlers"
    );
    html
}

/// The first `action="..."` of a form whose action ends with `suffix`.
fn form_action(html: &str, suffix: &str) -> String {
    html.split("action=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|a| a.ends_with(suffix))
        .unwrap_or_else(|| panic!("no form posting to *{suffix}:\n{html}"))
        .to_owned()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    html.split(&marker)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no hidden {name}:\n{html}"))
        .to_owned()
}

#[tokio::test]
async fn every_page_sends_the_strict_headers_and_only_nonced_inline_code() {
    let s = setup("").await;
    let c = "SESSIONID=pages-headers";
    enroll(&s.gw.dir, "alice");
    let held = s.form("/admin/users/carol/delete", &[HTML, ("cookie", c)], "").await;
    assert_eq!(held.status, 401);
    let html = assert_page(&held);
    assert!(held.header("www-authenticate").unwrap().starts_with("StepUp hold=\""));
    let complete = form_action(&html, "/complete");
    let hold = complete.split('/').nth(3).unwrap().to_owned();

    let again = get(&s.gw, &format!("/.stepup/holds/{hold}"), &[HTML, ("cookie", c)]).await;
    assert_eq!(again.status, 200);
    assert_page(&again);
    let wrong = s
        .form(&complete, &[HTML, ("cookie", c)], "method=totp&user=alice&code=000000")
        .await;
    assert_eq!(wrong.status, 401);
    assert_page(&wrong);

    let signin = get(&s.gw, "/.stepup/holds", &[HTML]).await;
    assert_eq!(signin.status, 200);
    assert!(assert_page(&signin).contains("<h1>Approver sign-in</h1>"));
    let bad = s
        .form("/.stepup/approver/login", &[HTML, ORIGIN], "name=bob&code=000000")
        .await;
    assert_eq!(bad.status, 401);
    assert!(assert_page(&bad).contains("role=\"alert\""));

    let bob = s.sign_in_bob().await;
    let t = s
        .form(
            "/api/transfers",
            &[HTML, ("cookie", "SESSIONID=pages-payer")],
            "amount=9&payee=x",
        )
        .await;
    let t_hold = form_action(&page_text(&t), "/complete")
        .split('/')
        .nth(3)
        .unwrap()
        .to_owned();
    let list = get(&s.gw, "/.stepup/holds", &[HTML, ("cookie", &bob)]).await;
    assert_eq!(list.status, 200);
    assert!(assert_page(&list).contains("<h1>Pending approvals</h1>"));
    let review = get(&s.gw, &format!("/.stepup/holds/{t_hold}"), &[HTML, ("cookie", &bob)]).await;
    assert_eq!(review.status, 200);
    let review_html = assert_page(&review);
    let txn = hidden(&review_html, "txn");
    let decided = s
        .form(
            &format!("/.stepup/holds/{t_hold}/deny"),
            &[HTML, ORIGIN, ("cookie", &bob)],
            &format!("txn={txn}&code={}", s.bob_code(1)),
        )
        .await;
    assert_eq!(decided.status, 200, "{}", body_text(&decided));
    assert!(assert_page(&decided).contains("role=\"status\">Denied."));

    let enroll_bad = get(&s.gw, "/.stepup/enroll?token=nope", &[HTML]).await;
    assert!(assert_page(&enroll_bad).contains("This enrollment link is not valid"));
    let gone = s
        .form(
            "/.stepup/holds/AAAAAAAAAAAAAAAAAAAAAA/complete",
            &[HTML, ("cookie", c)],
            "",
        )
        .await;
    assert_eq!(gone.status, 404);
    assert_page(&gone);
}

#[tokio::test]
async fn nothing_from_the_request_reaches_a_page_unescaped() {
    let evil = "<script>alert(1)</script>\"'><img src=x>";
    let s = setup("trusted_proxies: [127.0.0.1/32]\nidentity: { header: X-Remote-User }").await;
    let c = "SESSIONID=pages-escape";
    let who = "eve<script>alert(\"who\")</script>'";
    let body = format!(
        "amount={}&payee={}",
        form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
    );
    let held = s
        .form(
            "/api/transfers?q=%22%3E%3Cscript%3E'",
            &[HTML, ("cookie", c), ("x-remote-user", who)],
            &body,
        )
        .await;
    assert_eq!(held.status, 401, "{}", body_text(&held));
    let held_delete = s
        .form(
            "/admin/users/x'%22%3Cb%3E/delete",
            &[HTML, ("cookie", "SESSIONID=pages-escape-2"), ("x-remote-user", who)],
            "",
        )
        .await;
    let bob = s.sign_in_bob().await;
    let hold = form_action(&page_text(&held), "/complete")
        .split('/')
        .nth(3)
        .unwrap()
        .to_owned();
    let review = get(&s.gw, &format!("/.stepup/holds/{hold}"), &[HTML, ("cookie", &bob)]).await;
    let list = get(&s.gw, "/.stepup/holds", &[HTML, ("cookie", &bob)]).await;
    let signin = s
        .form(
            "/.stepup/approver/login",
            &[HTML, ORIGIN],
            &format!(
                "name={}&code=1",
                form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
            ),
        )
        .await;
    for (what, r) in [
        ("step-up page", &held),
        ("step-up page (delete)", &held_delete),
        ("review", &review),
        ("list", &list),
        ("sign-in", &signin),
    ] {
        let html = assert_page(r);
        for raw_markup in ["<script>alert", "<img src=x>", "\"'>", "'\"<b>"] {
            assert!(!html.contains(raw_markup), "{what} echoes {raw_markup:?}:\n{html}");
        }
    }
    let held_html = page_text(&held);
    assert!(held_html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;&lt;img src=x&gt;"));
    let delete_html = page_text(&held_delete);
    assert!(
        delete_html.contains("Signed in as <b>eve&lt;script&gt;"),
        "{delete_html}"
    );
    assert!(delete_html.contains("value=\"eve&lt;script&gt;alert(&quot;who&quot;)&lt;/script&gt;&#39;\""));
    assert!(page_text(&review).contains("eve&lt;script&gt;alert(&quot;who&quot;)"));
    assert!(delete_html.contains("x&#39;"), "{delete_html}");
}

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
    assert_eq!(s.up.requests().len(), 0);

    let bob = s.sign_in_bob().await;
    let review = page_text(&get(&s.gw, &format!("/.stepup/holds/{hold}"), &[HTML, ("cookie", &bob)]).await);
    for shown in [
        "<code>POST /api/transfers</code>",
        "Amount</dt><dd>25000",
        "Payee</dt><dd>ACME",
        "Approve with code",
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
    assert_eq!(s.up.requests().len(), 0);

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
    let seen = s.up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&s.gw, &seen[0].header("x-stepup-assertion").unwrap());
    assert_eq!(claims["approvers"][0]["sub"], "bob");
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
    assert_eq!(s.up.requests().len(), 1);
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

#[tokio::test]
async fn a_code_accepted_while_approvals_are_missing_returns_the_browser_to_its_page() {
    let s = setup("").await;
    let alice = enroll(&s.gw.dir, "alice");
    let c = "SESSIONID=pages-vendor";
    let held = s.form("/admin/vendors", &[HTML, ("cookie", c)], "name=x").await;
    let html = page_text(&held);
    assert!(html.contains("Authenticator code") && html.contains("Waiting for approval by 1 person"));
    let complete = form_action(&html, "/complete");
    let code = pyotp_at(&alice, s.now());
    let r = s
        .form(
            &complete,
            &[HTML, ("cookie", c)],
            &format!("method=totp&user=alice&code={code}"),
        )
        .await;
    assert_eq!(r.status, 303, "{}", body_text(&r));
    let back = get(&s.gw, r.header("location").unwrap(), &[HTML, ("cookie", c)]).await;
    let html = assert_page(&back);
    assert!(html.contains("Confirmed by <b>alice</b>"), "{html}");
    assert!(!html.contains("Confirm with code"), "the proof is not asked for twice");
    assert_eq!(s.up.requests().len(), 0);
}

/// The built-in demo console as the upstream: a real legacy app that
/// answers a delete with a redirect and logs what it executed.
#[tokio::test]
async fn the_no_javascript_code_form_lands_on_the_consoles_redirect() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console = listener.local_addr().unwrap();
    let log = std::env::temp_dir().join(format!("console-{}.jsonl", stepgate::ids::random_token()));
    tokio::spawn(stepgate::demo::run(listener, Some(log.clone())));
    let gw = Gateway::start(console, ROUTES, "").await;
    let alice = enroll(&gw.dir, "alice");
    let post = |path: &str, headers: Vec<(&str, &str)>, body: &str| {
        let mut h = vec![FORM];
        h.extend(headers);
        request("POST", path, &h, body.as_bytes())
    };

    let login = raw(gw.addr, &gw.pki, &post("/login", vec![], "user=admin&password=x")).await;
    assert_eq!(login.status, 303);
    let session = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let c = session.as_str();
    let held = raw(
        gw.addr,
        &gw.pki,
        &post("/admin/users/carol/delete", vec![HTML, ("cookie", c)], ""),
    )
    .await;
    assert_eq!(held.status, 401);
    let html = assert_page(&held);
    for shown in [
        "<h1>Confirm this action</h1>",
        "User</dt><dd>carol",
        "role=\"timer\"",
        "Confirm with code",
    ] {
        assert!(html.contains(shown), "{shown}:\n{html}");
    }
    let complete = form_action(&html, "/complete");

    let wrong = wrong_code(&alice);
    let r = raw(
        gw.addr,
        &gw.pki,
        &post(
            &complete,
            vec![HTML, ("cookie", c)],
            &format!("method=totp&user=alice&code={wrong}"),
        ),
    )
    .await;
    assert_eq!(r.status, 401);
    let html = assert_page(&r);
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("4 attempts left"), "{html}");
    assert!(!html.trim_start().starts_with('{'), "a page, not JSON");

    fresh_step(5).await;
    let r = raw(
        gw.addr,
        &gw.pki,
        &post(
            &complete,
            vec![HTML, ("cookie", c)],
            &format!("method=totp&user=alice&code={}", pyotp_now(&alice)),
        ),
    )
    .await;
    assert_eq!(r.status, 303, "the console's own redirect: {}", body_text(&r));
    assert_eq!(r.header("location"), Some("/admin/users"));
    let list = get(&gw, "/admin/users", &[("cookie", c)]).await;
    let text = body_text(&list);
    assert!(text.contains("User <b>carol</b> was deleted"), "{text}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["path"], "/admin/users/carol/delete");
    let claims = verify_assertion(&gw, lines[0]["assertion"].as_str().unwrap());
    assert_eq!(claims["amr"], serde_json::json!(["otp"]));
    assert_eq!(claims["sub"], "alice");
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn the_enrollment_page_names_the_user_of_a_valid_link_only() {
    let s = setup("").await;
    let no_webauthn = get(&s.gw, "/.stepup/enroll?token=whatever", &[HTML]).await;
    assert!(assert_page(&no_webauthn).contains("This enrollment link is not valid"));

    let up = Upstream::start().await;
    let webauthn = vec!["webauthn: { rp_id: localhost, origins: [ \"https://localhost\" ] }".to_owned()];
    let gw = Gateway::start(up.addr, ROUTES, &extra(&webauthn, "")).await;
    let token = "tok\"><script>alert(1)</script>";
    let store = stepgate::users::UserStore::open(&gw.dir.join("state/users.yaml"));
    store
        .update(|f| {
            f.users.entry("al<i>ce".into()).or_default().webauthn_enroll =
                Some(stepgate::users::EnrollToken::new(token, now_secs() + 600));
        })
        .unwrap();
    let query: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let ok = get(&gw, &format!("/.stepup/enroll?token={query}"), &[HTML]).await;
    assert_eq!(ok.status, 200, "{}", body_text(&ok));
    let html = assert_page(&ok);
    for shown in [
        "<h1>Register a passkey</h1>",
        "<b>al&lt;i&gt;ce</b>",
        "Register passkey</button>",
    ] {
        assert!(html.contains(shown), "{shown}:\n{html}");
    }
    assert!(html.contains("data-token=\"tok&quot;&gt;&lt;script&gt;"), "{html}");
    assert!(!html.contains("<script>alert"), "{html}");
    for bad in ["tok", "", &format!("{query}x")] {
        let r = get(&gw, &format!("/.stepup/enroll?token={bad}"), &[HTML]).await;
        assert_eq!(r.status, 403);
        assert!(assert_page(&r).contains("This enrollment link is not valid"));
    }
}
