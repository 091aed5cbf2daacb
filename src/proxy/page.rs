//! The step-up page a browser sees while its request is held. Every value
//! shown is escaped, and the headers forbid framing, caching and any
//! script or style that the gateway did not put there itself.

use super::Body;
use crate::body::full;
use crate::hold::{HoldMeta, HoldState};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use std::fmt::Write;
use std::time::{Duration, SystemTime};

pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A short code derived from `txn`, so a person can compare what the page
/// shows with what an approver or the audit trail shows.
pub fn short_code(txn: &str) -> String {
    let head: String = txn.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect();
    let (a, b) = head.split_at(head.len().min(4));
    format!("{}-{}", a.to_ascii_uppercase(), b.to_ascii_uppercase())
}

pub fn html(status: StatusCode, nonce: &str, page: String) -> Response<Body> {
    let mut resp = Response::new(full(page));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// The step-up page for a held browser request. `challenge` is an extra
/// `WWW-Authenticate` value (the bearer one) when it applies.
pub fn step_up(
    prefix: &str,
    meta: &HoldMeta,
    state: &HoldState,
    now: SystemTime,
    challenge: Option<String>,
) -> Response<Body> {
    let nonce = crate::ids::random_token();
    let left = state.deadline.duration_since(now).unwrap_or(Duration::ZERO).as_secs();
    let mut p = String::with_capacity(4096);
    let _ = write!(
        p,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Confirm: {action}</title><style nonce="{nonce}">{css}</style></head><body><main>
<h1>Confirm this action</h1>
<p class="lead">The action below needs you to prove it is you again before it goes ahead.</p>
<dl><dt>Action</dt><dd>{action}</dd><dt>Request</dt><dd><code>{method} {target}</code></dd><dt>Check code</dt><dd><code>{code}</code></dd><dt>Time left</dt><dd>{min}:{sec:02}</dd></dl>
"#,
        action = escape(&meta.action),
        nonce = nonce,
        css = CSS,
        method = escape(meta.method.as_str()),
        target = escape(&meta.path_and_query),
        code = short_code(meta.txn.as_str()),
        min = left / 60,
        sec = left % 60,
    );
    let complete = format!("{prefix}holds/{}/complete", meta.id);
    if state.requirements.accepts(crate::policy::ProofMethod::Totp) {
        let _ = write!(
            p,
            r#"<form method="post" action="{complete}"><input type="hidden" name="method" value="totp">
<label>User <input name="user" autocomplete="username" required></label>
<label>Authenticator code <input name="code" inputmode="numeric" pattern="[0-9]{{6}}" autocomplete="one-time-code" required></label>
<button type="submit">Confirm</button></form>
"#,
            complete = escape(&complete)
        );
    }
    if state.requirements.approvals > 0 {
        let _ = write!(
            p,
            "<p>Waiting for approval by {} people.</p>",
            state.requirements.approvals
        );
    }
    p.push_str("</main></body></html>");
    let mut resp = html(StatusCode::UNAUTHORIZED, &nonce, p);
    let stepup = super::gate::stepup_challenge(meta, &state.requirements);
    for v in std::iter::once(stepup).chain(challenge) {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().append(header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}

const CSS: &str = "body{font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1d2433;margin:0}main{max-width:34rem;margin:3rem auto;background:#fff;border-radius:12px;padding:2rem;box-shadow:0 2px 12px #0001}h1{margin-top:0;font-size:1.4rem}dl{display:grid;grid-template-columns:8rem 1fr;gap:.4rem}dt{color:#5b6475}dd{margin:0}code{background:#eef0f4;padding:0 .3rem;border-radius:4px}form{display:grid;gap:.8rem;margin-top:1.5rem}input{font:inherit;padding:.5rem;border:1px solid #c6cbd4;border-radius:6px;width:100%;box-sizing:border-box}button{font:inherit;padding:.6rem;border:0;border-radius:6px;background:#2456d3;color:#fff;cursor:pointer}.lead{color:#5b6475}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<script>\"x\"&'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;");
        assert_eq!(short_code("ab-cdEFGHIJ"), "ABCD-EFGH");
    }
}
