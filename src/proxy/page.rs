//! The gateway's own HTML pages: the step-up page a held browser request
//! sees, the approvers' pages and the passkey enrollment page. This file is
//! the part they share: one layout, one stylesheet, one script, escaping
//! and the response headers.
//!
//! Every response carries a fresh CSP nonce and only the gateway's own
//! `<style>` and `<script>` elements carry it, so nothing a request
//! smuggles into a page can run or restyle it. Pages are maud templates,
//! checked at compile time, which escape every value they insert; values
//! the script needs travel in escaped `data-*` attributes, never inside
//! script text.

pub mod approvals;
pub mod enroll;
pub mod stepup;

use super::Body;
use crate::body::full;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use maud::{html, Markup, PreEscaped, DOCTYPE};

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

/// `s` made safe as HTML text or a quoted attribute value, for the
/// demo console, which is not built from templates.
pub fn escape(s: &str) -> String {
    html! { (s) }.into_string()
}

/// A short code derived from `txn`, so a person can compare what the page
/// shows with what an approver or the audit trail shows.
pub fn short_code(txn: &str) -> String {
    let head: String = txn.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect();
    let (a, b) = head.split_at(head.len().min(4));
    format!("{}-{}", a.to_ascii_uppercase(), b.to_ascii_uppercase())
}

/// Who asked, in words: `known` (the session's identity, whoever proved
/// on the hold, or the person bound to the session) when the gateway knows
/// it, otherwise the session it came from.
pub fn requester(meta: &crate::hold::HoldMeta, known: Option<&str>) -> String {
    if let Some(name) = known {
        return name.to_owned();
    }
    let who = meta.requester();
    match who.strip_prefix("session:") {
        Some(sid) => format!("not known (session {sid})"),
        None => who,
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

/// The whole document around `main`: the shared header, style and
/// script (each with this response's fresh nonce), sent with the headers
/// every gateway page carries. maud escapes every value it is given; only
/// the gateway's own stylesheet and script go in unescaped.
pub fn respond(status: StatusCode, title: &str, main: Markup) -> Response<Body> {
    let nonce = crate::ids::random_token();
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) }
                style nonce=(nonce) { (PreEscaped(CSS)) }
            }
            body {
                header.brand { span.logo aria-hidden="true" {} span { "Security check" } }
                main.card { (main) }
                footer.foot { "Protected by stepgate" }
                script nonce=(nonce) { (PreEscaped(JS)) }
            }
        }
    };
    html(status, &nonce, doc.into_string())
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
    let main = html! {
        h1 { (heading) }
        p.lead { (text) }
        @if let Some((href, label)) = link {
            p { a.button.secondary href=(href) { (label) } }
        }
    };
    respond(status, heading, main)
}

/// One row of a details list.
pub fn fact(label: &str, value: Markup) -> Markup {
    html! { div { dt { (label) } dd { (value) } } }
}

/// The check code row, which the requester and the approver compare.
pub fn check_code_fact(meta: &crate::hold::HoldMeta) -> Markup {
    fact("Check code", html! { code.check { (short_code(meta.txn.as_str())) } })
}

/// The rows that say what a hold is, for the requester's and the
/// approver's page alike; `requester` only where someone else reads it.
/// The route's display fields are not among them: see [`shown`].
pub fn hold_facts(meta: &crate::hold::HoldMeta, requester: Option<&str>) -> Markup {
    html! {
        (fact("Action", html! { (meta.label) }))
        (fact("Request", html! { code { (meta.method.as_str()) " " (meta.path_and_query) } }))
        @if let Some(r) = requester {
            (fact("Requested by", html! { (r) }))
        }
        (check_code_fact(meta))
    }
}

/// The values the route takes from the request (`display:`), in a section
/// of their own, so that a value such as "User: mallory" is never read as
/// part of the form below it.
pub fn shown(meta: &crate::hold::HoldMeta) -> Markup {
    html! {
        @if !meta.display.is_empty() {
            section.shown aria-labelledby="shown-heading" {
                h2 id="shown-heading" { "What the request says" }
                dl.facts {
                    @for (label, value) in &meta.display {
                        (fact(label, html! { (value) }))
                    }
                }
            }
        }
    }
}

/// A refusal shown above a form.
pub fn alert(text: Option<&str>) -> Markup {
    html! {
        @if let Some(t) = text {
            div.alert role="alert" { (t) }
        }
    }
}

/// The six-digit authenticator code field of every form that takes one.
pub fn code_field() -> Markup {
    html! {
        div.field {
            label for="code" { "Authenticator code" }
            input id="code" name="code" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" autocomplete="one-time-code" required;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<script>\"x\"&'"), "&lt;script&gt;&quot;x&quot;&amp;'");
        assert_eq!(short_code("ab-cdEFGHIJ"), "ABCD-EFGH");
        assert_eq!(people(1), "1 person");
        assert_eq!(people(3), "3 people");
    }
}
