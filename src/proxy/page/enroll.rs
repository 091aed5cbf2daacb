//! The passkey enrollment page behind a one-time link from
//! `stepgate enroll webauthn USER`. The ceremony itself needs the browser's
//! WebAuthn API, so this page is the one that does nothing without
//! JavaScript beyond saying who the link is for.

use super::{escape, Page};
use crate::body::Body;
use http::{Response, StatusCode};
use std::fmt::Write;

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
    let mut p = Page::new("Register a passkey");
    let b = &mut p.body;
    let _ = writeln!(
        b,
        "<h1>Register a passkey</h1>\n\
         <p class=\"lead\">A passkey lets you confirm sensitive actions with your device's screen lock or a security key.</p>\n\
         <dl class=\"facts\">{}</dl>\n\
         <form id=\"enroll\" class=\"stack\" data-token=\"{token}\" data-options=\"{options}\" data-finish=\"{finish}\">\n\
         <div class=\"field\"><label for=\"label\">Name for this passkey <span class=\"optional\">(optional)</span></label>\
         <input id=\"label\" name=\"label\" maxlength=\"64\" placeholder=\"e.g. work laptop\"></div>\n\
         <button type=\"submit\" class=\"primary\">Register passkey</button>\n\
         <noscript><p class=\"hint\">Registering a passkey needs JavaScript.</p></noscript>\n\
         </form>\n<p class=\"status\" role=\"status\" id=\"enroll-status\"></p>",
        super::fact("User", &format!("<b>{}</b>", escape(user))),
        token = escape(token),
        options = escape(&format!("{prefix}enroll/options")),
        finish = escape(&format!("{prefix}enroll/finish")),
    );
    p.respond(StatusCode::OK)
}
