//! The passkey enrollment page behind a one-time link from
//! `stepgate enroll webauthn USER`. The ceremony itself needs the browser's
//! WebAuthn API, so this page is the one that does nothing without
//! JavaScript beyond saying who the link is for.

use super::{fact, respond};
use crate::body::Body;
use http::{Response, StatusCode};
use maud::html;

/// `user` is who the link enrolls, or `None` for an unknown, used or
/// expired link (which is all the page will say about it).
pub fn page(prefix: &str, token: &str, user: Option<&str>) -> Response<Body> {
    let Some(user) = user else {
        return super::message(
            StatusCode::FORBIDDEN,
            "This enrollment link is not valid",
            "It may have expired or been used already. Ask your administrator for a new link.",
            None,
        );
    };
    let main = html! {
        h1 { "Register a passkey" }
        p.lead { "A passkey lets you confirm sensitive actions with your device's screen lock or a security key." }
        dl.facts { (fact("User", html! { b { (user) } })) }
        form id="enroll" class="stack" data-token=(token) data-options=(format!("{prefix}enroll/options"))
            data-finish=(format!("{prefix}enroll/finish")) {
            div.field {
                label for="label" { "Name for this passkey " span.optional { "(optional)" } }
                input id="label" name="label" maxlength="64" placeholder="e.g. work laptop";
            }
            button type="submit" class="primary" { "Register passkey" }
            noscript { p.hint { "Registering a passkey needs JavaScript." } }
        }
        p.status role="status" id="enroll-status" {}
    };
    respond(StatusCode::OK, "Register a passkey", main)
}
