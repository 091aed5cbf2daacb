//! The gateway's own HTML pages: the step-up page a held browser request
//! sees, the approvers' pages and the passkey enrollment page. This file is
//! the part they share: one layout, one stylesheet, one script, escaping
//! and the response headers.
//!
//! Every response carries a fresh CSP nonce and only the gateway's own
//! `<style>` and `<script>` elements carry it, so nothing a request
//! smuggles into a page can run or restyle it; every value from a request
//! goes through [`escape`], and values the script needs travel in escaped
//! `data-*` attributes, never inside script text.

pub mod approvals;
pub mod enroll;
pub mod stepup;

use super::Body;
use crate::body::full;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

const CSS: &str = include_str!("page/style.css");
const JS: &str = include_str!("page/pages.js");

pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// Whether a request came from one of the gateway's pages (a browser
/// navigation or a plain HTML form), so refusals are shown as a page and
/// not as JSON.
pub fn from_page(headers: &HeaderMap) -> bool {
    super::display::is_form(headers) || wants_html(headers)
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

/// Who asked, in words: the session's identity when the gateway knows it,
/// otherwise the session it came from.
pub fn requester(meta: &crate::hold::HoldMeta) -> String {
    let who = meta.requester();
    match who.strip_prefix("session:") {
        Some(sid) if meta.identity.is_none() => format!("unknown user, session {sid}"),
        _ => who,
    }
}

/// "1 person", "2 people".
pub fn people(n: u32) -> String {
    if n == 1 {
        "1 person".into()
    } else {
        format!("{n} people")
    }
}

/// A page under construction: its nonce and its `<main>` content.
pub struct Page {
    nonce: String,
    title: String,
    pub body: String,
}

impl Page {
    pub fn new(title: &str) -> Self {
        Page {
            nonce: crate::ids::random_token(),
            title: escape(title),
            body: String::with_capacity(4096),
        }
    }

    /// The whole document with the shared header, style and script, sent
    /// with the headers every gateway page carries.
    pub fn respond(self, status: StatusCode) -> Response<Body> {
        let Page { nonce, title, body } = self;
        let doc = format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>{title}</title><style nonce="{nonce}">{CSS}</style></head>
<body><header class="brand"><span class="logo" aria-hidden="true"></span><span>Security check</span></header>
<main class="card">
{body}
</main>
<footer class="foot">Protected by stepgate</footer>
<script nonce="{nonce}">{JS}</script>
</body></html>"#
        );
        html(status, &nonce, doc)
    }
}

/// The headers of every gateway page.
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
    // Not `no-referrer`: with it, browsers send `Origin: null` on the
    // pages' own form posts, and the approver's posts are checked against
    // the gateway's origin. Other origins still learn nothing.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// A page that only says something: a heading, a message and maybe a link.
pub fn message(status: StatusCode, heading: &str, text: &str, link: Option<(&str, &str)>) -> Response<Body> {
    let mut p = Page::new(heading);
    p.body.push_str(&format!(
        "<h1>{}</h1>\n<p class=\"lead\">{}</p>\n",
        escape(heading),
        escape(text)
    ));
    if let Some((href, label)) = link {
        p.body.push_str(&format!(
            "<p><a class=\"button secondary\" href=\"{}\">{}</a></p>\n",
            escape(href),
            escape(label)
        ));
    }
    p.respond(status)
}

/// One row of a details list.
pub fn fact(label: &str, value_html: &str) -> String {
    format!("<div><dt>{}</dt><dd>{value_html}</dd></div>\n", escape(label))
}

/// The check code row, which the requester and the approver compare.
pub fn check_code_fact(meta: &crate::hold::HoldMeta) -> String {
    fact(
        "Check code",
        &format!("<code class=\"check\">{}</code>", short_code(meta.txn.as_str())),
    )
}

/// The rows that say what a hold is, for the requester's and the
/// approver's page alike; `requester` only where someone else reads it.
pub fn hold_facts(b: &mut String, meta: &crate::hold::HoldMeta, requester: Option<&str>) {
    b.push_str(&fact("Action", &escape(&meta.action)));
    b.push_str(&fact(
        "Request",
        &format!(
            "<code>{} {}</code>",
            escape(meta.method.as_str()),
            escape(&meta.path_and_query)
        ),
    ));
    if let Some(r) = requester {
        b.push_str(&fact("Requester", &escape(r)));
    }
    for (label, value) in &meta.display {
        b.push_str(&fact(label, &escape(value)));
    }
    b.push_str(&check_code_fact(meta));
}

/// A refusal shown above a form.
pub fn alert(b: &mut String, text: Option<&str>) {
    if let Some(t) = text {
        b.push_str(&format!("<div class=\"alert\" role=\"alert\">{}</div>\n", escape(t)));
    }
}

/// The six-digit authenticator code field of every form that takes one.
pub const CODE_FIELD: &str = "<div class=\"field\"><label for=\"code\">Authenticator code</label>\
     <input id=\"code\" name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{6}\" maxlength=\"6\" autocomplete=\"one-time-code\" required></div>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<script>\"x\"&'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;");
        assert_eq!(short_code("ab-cdEFGHIJ"), "ABCD-EFGH");
        assert_eq!(people(1), "1 person");
        assert_eq!(people(3), "3 people");
    }
}
