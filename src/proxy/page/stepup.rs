//! The step-up page a browser sees while its request is held: what is
//! being confirmed, the check code, the time left, and every way the
//! route accepts to complete it. The code form is a plain HTML form, so it
//! works without JavaScript; the passkey and the live approval status need
//! the shared script.

use super::{escape, fact, hold_facts, people, Page, CODE_FIELD};
use crate::body::Body;
use crate::hold::{HoldMeta, HoldState};
use crate::policy::ProofMethod;
use http::{header, HeaderValue, Response, StatusCode};
use std::fmt::Write;
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
    let stepup = crate::proxy::gate::stepup_challenge(view.meta, &view.state.requirements);
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
    let complete = escape(&format!("{}holds/{}/complete", v.prefix, meta.id));
    let mut p = Page::new(&format!("Confirm: {}", meta.action));
    let b = &mut p.body;
    b.push_str("<h1>Confirm this action</h1>\n");
    b.push_str("<p class=\"lead\">This action needs you to confirm it is really you before it goes ahead.</p>\n");
    super::alert(b, v.alert.as_deref());
    b.push_str("<dl class=\"facts\">\n");
    hold_facts(b, meta, None);
    b.push_str(&fact(
        "Time left",
        &format!(
            "<span role=\"timer\" id=\"time-left\" data-seconds=\"{left}\">{}:{:02}</span>",
            left / 60,
            left % 60
        ),
    ));
    b.push_str("</dl>\n");

    let passkey = v.webauthn && req.accepts(ProofMethod::Webauthn);
    let code = req.accepts(ProofMethod::Totp);
    match &state.proof {
        Some(proof) => {
            let _ = writeln!(b, "<p class=\"done\">Confirmed by <b>{}</b>.</p>", escape(&proof.sub));
        }
        None => {
            let idp = v.idp.as_deref().filter(|_| req.accepts(ProofMethod::Oidc));
            if let Some(idp) = idp {
                oidc_link(b, v, idp, !(passkey || code));
            }
            if passkey || code {
                if idp.is_some() {
                    b.push_str("<p class=\"or\"><span>or</span></p>\n");
                }
                proof_form(b, v, &complete, passkey, code);
            }
        }
    }
    if req.approvals > 0 {
        approvals(b, v, &complete);
    }
    p.respond(status)
}

fn proof_form(b: &mut String, v: &View, complete: &str, passkey: bool, code: bool) {
    let options = escape(&format!("{}holds/{}/webauthn", v.prefix, v.meta.id));
    let _ = writeln!(
        b,
        "<form id=\"proof\" class=\"stack\" method=\"post\" action=\"{complete}\" data-options=\"{options}\">\n\
         <input type=\"hidden\" name=\"method\" value=\"totp\"><input type=\"hidden\" name=\"credential\" value=\"\">"
    );
    match &v.meta.identity {
        Some(user) => {
            let _ = writeln!(
                b,
                "<p class=\"who\">Signed in as <b>{u}</b></p><input type=\"hidden\" name=\"user\" value=\"{u}\">",
                u = escape(user)
            );
        }
        None => {
            let _ = writeln!(
                b,
                "<div class=\"field\"><label for=\"user\">User</label>\
                 <input id=\"user\" name=\"user\" value=\"{}\" autocomplete=\"username webauthn\" autocapitalize=\"none\" spellcheck=\"false\" required></div>",
                escape(v.user.as_deref().unwrap_or(""))
            );
        }
    }
    if passkey {
        b.push_str(
            "<button type=\"button\" id=\"use-passkey\" class=\"primary\" hidden>Use a passkey</button>\n\
             <noscript><p class=\"hint\">Passkeys need JavaScript.</p></noscript>\n",
        );
        if code {
            b.push_str("<p class=\"or\"><span>or enter a code from your authenticator app</span></p>\n");
        }
    }
    if code {
        let class = if passkey { "secondary" } else { "primary" };
        b.push_str(CODE_FIELD);
        let _ = writeln!(
            b,
            "<button type=\"submit\" class=\"{class}\">Confirm with code</button>"
        );
    }
    let _ = writeln!(
        b,
        "<p class=\"hint\">{} attempts left.</p></form>",
        v.state.attempts_left
    );
}

/// Re-authentication at the IdP is a plain link: the gateway redirects
/// the browser to the OP and takes it back on the callback.
fn oidc_link(b: &mut String, v: &View, idp: &str, primary: bool) {
    let href = escape(&format!("{}holds/{}/oidc", v.prefix, v.meta.id));
    let class = if primary { "primary" } else { "secondary" };
    let _ = writeln!(
        b,
        "<p><a id=\"oidc\" class=\"button {class}\" href=\"{href}\">Sign in again with {}</a></p>",
        escape(idp)
    );
}

fn approvals(b: &mut String, v: &View, complete: &str) {
    let need = v.state.requirements.approvals;
    let have = v.state.approvals.len() as u32;
    let text = if have == 0 {
        format!("Waiting for approval by {}", people(need))
    } else {
        format!("Approved by {have} of {need}")
    };
    let status_url = escape(&format!("{}holds/{}", v.prefix, v.meta.id));
    let _ = writeln!(
        b,
        "<section class=\"approvals\" aria-labelledby=\"approvals-heading\">\n\
         <h2 id=\"approvals-heading\">Approval</h2>\n\
         <p class=\"hint\">Someone else must approve this request. This page continues by itself once they have.</p>\n\
         <p class=\"status\" role=\"status\" id=\"approval-status\" data-required=\"{need}\" data-status=\"{status_url}\">{text}</p>\n\
         <form id=\"collect\" method=\"post\" action=\"{complete}\"><button type=\"submit\" class=\"secondary\">Continue</button></form>\n\
         </section>"
    );
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
