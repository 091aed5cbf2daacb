//! The step-up page a browser sees while its request is held: what is
//! being confirmed, the check code, the time left, and every way the
//! route accepts to complete it. The code form is a plain HTML form, so it
//! works without JavaScript; the passkey and the live approval status need
//! the shared script.

use super::{alert, code_field, fact, hold_facts, people, respond, shown};
use crate::body::Body;
use crate::hold::{HoldMeta, HoldState};
use crate::policy::ProofMethod;
use http::{header, HeaderValue, Response, StatusCode};
use maud::{html, Markup};
use std::time::{Duration, SystemTime};

/// What the page shows about one hold.
pub struct View<'a> {
    pub prefix: &'a str,
    pub meta: &'a HoldMeta,
    pub state: &'a HoldState,
    pub now: SystemTime,
    /// The gateway offers WebAuthn (`stepup.webauthn` is configured).
    pub webauthn: bool,
    /// A refusal to show above the form (wrong code, ...).
    pub alert: Option<String>,
    /// The user name the person typed last time, kept after a refusal.
    pub user: Option<String>,
    /// The OpenID Provider's name, when `stepup.oidc` is configured.
    pub idp: Option<String>,
}

/// The page for a held browser request (401, with the `StepUp` challenge
/// and `challenge`, the bearer one, when it applies).
pub fn held(view: &View, challenge: Option<String>) -> Response<Body> {
    let mut resp = render(view, StatusCode::UNAUTHORIZED);
    let stepup = crate::proxy::challenge::stepup_challenge(view.meta, &view.state.requirements);
    for v in std::iter::once(stepup).chain(challenge) {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().append(header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}

pub fn render(v: &View, status: StatusCode) -> Response<Body> {
    let (meta, state) = (v.meta, v.state);
    let req = &state.requirements;
    let left = state.deadline.duration_since(v.now).unwrap_or(Duration::ZERO).as_secs();
    let complete = format!("{}holds/{}/complete", v.prefix, meta.id);
    let passkey = v.webauthn && req.accepts(ProofMethod::Webauthn);
    let code = req.accepts(ProofMethod::Totp);
    let idp = v.idp.as_deref().filter(|_| req.accepts(ProofMethod::Oidc));
    let main = html! {
        h1 { "Confirm this action" }
        p.lead { "This action needs you to confirm it is really you before it goes ahead." }
        (alert(v.alert.as_deref()))
        dl.facts {
            (hold_facts(meta, None))
            (fact("Time left", html! {
                span id="time-left" role="timer" data-seconds=(left) { (left / 60) ":" (format!("{:02}", left % 60)) }
            }))
        }
        (shown(meta))
        @if let Some(proof) = &state.proof {
            p.done { "Confirmed by " b { (proof.sub) } "." }
        } @else {
            @if let Some(idp) = idp {
                p { a id="oidc" class=(if passkey || code { "button secondary" } else { "button primary" })
                    href=(format!("{}holds/{}/oidc", v.prefix, meta.id)) { "Sign in again with " (idp) } }
                @if passkey || code {
                    p.or { span { "or" } }
                }
            }
            @if passkey || code {
                (proof_form(v, &complete, passkey, code))
            }
        }
        @if req.approvals > 0 {
            (approvals(v, &complete))
        }
    };
    respond(status, &format!("Confirm: {}", meta.label), main)
}

fn proof_form(v: &View, complete: &str, passkey: bool, code: bool) -> Markup {
    let options = format!("{}holds/{}/webauthn", v.prefix, v.meta.id);
    html! {
        section.prove aria-labelledby="prove-heading" {
            h2 id="prove-heading" { "Confirm it is you" }
            form id="proof" class="stack" method="post" action=(complete) data-options=(options) {
                input type="hidden" name="method" value="totp";
                input type="hidden" name="credential" value="";
                @if let Some(user) = &v.meta.identity {
                    p.who { "Signed in as " b { (user) } }
                    input type="hidden" name="user" value=(user);
                } @else {
                    div.field {
                        label for="user" { "Your user name" }
                        input id="user" name="user" value=(v.user.as_deref().unwrap_or("")) autocomplete="username webauthn" autocapitalize="none" spellcheck="false" required;
                    }
                }
                @if passkey {
                    button type="button" id="use-passkey" class="primary" hidden { "Use a passkey" }
                    noscript { p.hint { "Passkeys need JavaScript." } }
                    @if code {
                        p.or { span { "or enter a code from your authenticator app" } }
                    }
                }
                @if code {
                    (code_field())
                    button type="submit" class=(if passkey { "secondary" } else { "primary" }) { "Confirm with code" }
                }
                p.hint { (v.state.attempts_left) " attempts left." }
            }
        }
    }
}

fn approvals(v: &View, complete: &str) -> Markup {
    let need = v.state.requirements.approvals;
    let have = v.state.approvals.len() as u32;
    let text = if have == 0 {
        format!("Waiting for approval by {}", people(need))
    } else {
        format!("Approved by {have} of {need}")
    };
    let status_url = format!("{}holds/{}", v.prefix, v.meta.id);
    html! {
        section.approvals aria-labelledby="approvals-heading" {
            h2 id="approvals-heading" { "Approval" }
            p.hint { "Someone else must approve this request. This page continues by itself once they have." }
            p.status role="status" id="approval-status" data-required=(need) data-status=(status_url) { (text) }
            form id="collect" method="post" action=(complete) {
                button type="submit" class="secondary" { "Continue" }
            }
        }
    }
}

/// Why a completion from the page was refused, in words for the person.
pub fn alert_text(reject: &crate::proxy::respond::Reject) -> String {
    use crate::proxy::respond::Reject;
    match reject {
        Reject::InvalidProof { attempts_left } => {
            format!("That was not accepted. Check the user and the code and try again ({attempts_left} attempts left).")
        }
        Reject::BadRequest(m) => {
            let mut s = m.to_string();
            if let Some(f) = s.get_mut(0..1) {
                f.make_ascii_uppercase();
            }
            s
        }
        other => other.message().to_owned(),
    }
}

/// The page for a hold that can no longer be completed.
pub fn closed(reject: &crate::proxy::respond::Reject) -> Response<Body> {
    use crate::proxy::respond::Reject;
    let (heading, text) = match reject {
        Reject::StepUpDenied => (
            "This request was stopped",
            "It was denied, or too many attempts failed. Nothing was changed.",
        ),
        Reject::HoldExpired | Reject::StepUpExpired => (
            "This request has expired",
            "It was not confirmed in time. Nothing was changed; go back and try again.",
        ),
        Reject::AlreadyReleased => ("Already done", "This request was already confirmed and carried out."),
        _ => (
            "This request is not pending",
            "There is nothing to confirm here. Go back and try again.",
        ),
    };
    super::message(reject.status(), heading, text, Some(("/", "Back to the application")))
}
