//! Shared by the page tests: a gateway on a manual clock with approver
//! `bob`, form posts as a browser sends them, and the checks every gateway
//! page must pass (headers, nonces on all inline code).
#![allow(dead_code)]

use crate::common::*;
use crate::stepup_kit::*;
use std::sync::Arc;
use stepgate::clock::ManualClock;

pub const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    label: Delete a user
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

pub const ORIGIN: (&str, &str) = ("origin", "https://localhost");
pub const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
pub const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml");

pub struct Setup {
    pub up: Upstream,
    pub gw: Gateway,
    /// Bob's API key (the approval API next to the page).
    pub bob: ApproverKey,
    pub bob_totp: String,
    pub clock: Arc<ManualClock>,
}

/// A gateway on a manual clock (so TOTP codes and cookie expiry are exact)
/// with approver `bob` (treasury) enrolled for TOTP, and `alice` too.
pub async fn setup(top: &str) -> Setup {
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

/// Names who is behind `cookie`: `user` (enrolled here) confirms a user
/// deletion on that session with a TOTP code for time `now`. The gateway
/// refuses an approval-only request (the transfer) from a session nobody
/// was named on, since its requester could be the approver.
pub async fn step_up_on(gw: &Gateway, cookie: &str, user: &str, now: u64) {
    let secret = enroll(&gw.dir, user);
    let held = post_form(gw, "/admin/users/nobody/delete", &[("cookie", cookie)], "").await;
    assert_eq!(held.status, 401, "{}", body_text(&held));
    let hold = held.json()["hold_id"].as_str().expect("hold id").to_owned();
    let done = complete_totp(gw, cookie, &hold, user, &pyotp_at(&secret, now)).await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
}

impl Setup {
    pub fn now(&self) -> u64 {
        stepgate::clock::unix_secs(stepgate::clock::Clock::now(self.clock.as_ref()))
    }

    /// [`step_up_on`] at the gateway's time.
    pub async fn step_up_on(&self, cookie: &str, user: &str) {
        step_up_on(&self.gw, cookie, user, self.now()).await;
    }

    /// Bob's code `steps` time steps from the gateway's now.
    pub fn bob_code(&self, steps: u64) -> String {
        pyotp_at(&self.bob_totp, self.now() + 30 * steps)
    }

    pub async fn form(&self, path: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
        post_form(&self.gw, path, headers, body).await
    }

    /// Signs bob in on the approval page; returns the cookie pair.
    pub async fn sign_in_bob(&self) -> String {
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

/// A form `POST` as a browser sends it (`headers` besides the content type).
pub fn form_request(path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut h = vec![FORM];
    h.extend_from_slice(headers);
    request("POST", path, &h, body.as_bytes())
}

pub async fn post_form(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
    raw(gw.addr, &gw.pki, &form_request(path, headers, body)).await
}

pub fn page_text(r: &RawResponse) -> String {
    String::from_utf8(r.body.clone()).expect("UTF-8 page")
}

/// The headers every gateway page carries, and every inline `<script>` and
/// `<style>` carries this response's CSP nonce (nothing else could run).
pub fn assert_page(r: &RawResponse) -> String {
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
pub fn form_action(html: &str, suffix: &str) -> String {
    html.split("action=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|a| a.ends_with(suffix))
        .unwrap_or_else(|| panic!("no form posting to *{suffix}:\n{html}"))
        .to_owned()
}

pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    html.split(&marker)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no hidden {name}:\n{html}"))
        .to_owned()
}
