//! The approvers' pages: sign-in, the list of holds waiting for them, one
//! hold as they review it, and the outcome of their decision.

use super::{alert, check_code_fact, code_field, fact, hold_facts, respond, short_code, shown};
use crate::body::Body;
use crate::hold::{HoldMeta, HoldState};
use http::{Response, StatusCode};
use maud::{html, Markup};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `GET holds` for someone not signed in (or a refused sign-in).
pub fn signin(prefix: &str, webauthn: bool, name: &str, refused: Option<&str>, status: StatusCode) -> Response<Body> {
    let main = html! {
        h1 { "Approver sign-in" }
        p.lead { "Sign in to review the requests that are waiting for your approval." }
        (alert(refused))
        form id="signin" class="stack" method="post" action=(format!("{prefix}approver/login"))
            data-options=(format!("{prefix}approver/login/options")) {
            input type="hidden" name="method" value="totp";
            input type="hidden" name="credential" value="";
            div.field {
                label for="name" { "Name" }
                input id="name" name="name" value=(name) autocomplete="username webauthn" autocapitalize="none" spellcheck="false" required;
            }
            @if webauthn {
                button type="button" id="signin-passkey" class="primary" hidden { "Sign in with a passkey" }
                p.or { span { "or use a code from your authenticator app" } }
            }
            (code_field())
            button type="submit" class=(if webauthn { "secondary" } else { "primary" }) { "Sign in with code" }
        }
    };
    respond(status, "Approver sign-in", main)
}

fn signed_in_bar(prefix: &str, name: &str) -> Markup {
    html! {
        div.bar {
            span { "Signed in as " b { (name) } }
            form method="post" action=(format!("{prefix}approver/logout")) {
                button type="submit" class="link" { "Sign out" }
            }
        }
    }
}

fn age(meta: &HoldMeta, now: SystemTime) -> String {
    let s = now.duration_since(meta.created).unwrap_or(Duration::ZERO).as_secs();
    match s {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// A hold waiting for an approver, with who asked for it where the
/// gateway knows.
pub struct Queued {
    pub meta: Arc<HoldMeta>,
    pub state: HoldState,
    pub requester: Option<String>,
}

/// `GET holds`: the holds this approver may decide.
pub fn list(prefix: &str, name: &str, holds: &[Queued], now: SystemTime) -> Response<Body> {
    let ids: Vec<&str> = holds.iter().map(|q| q.meta.id.as_str()).collect();
    let main = html! {
        (signed_in_bar(prefix, name))
        h1 { "Pending approvals" }
        div id="queue" data-queue=(format!("{prefix}holds")) data-ids=(ids.join(" ")) {
            @if holds.is_empty() {
                p.empty { "Nothing is waiting for you. This page updates by itself." }
            } @else {
                ul.holds {
                    @for q in holds {
                        (list_item(prefix, q, now))
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, "Pending approvals", main)
}

fn list_item(prefix: &str, q: &Queued, now: SystemTime) -> Markup {
    let (meta, state) = (&q.meta, &q.state);
    let who = super::requester(meta, q.requester.as_deref());
    html! {
        li {
            a href=(format!("{prefix}holds/{}", meta.id)) {
                span.action { (meta.label) }
                " "
                code.check { (short_code(meta.txn.as_str())) }
            }
            span.meta {
                (meta.method.as_str()) " " code { (meta.path_and_query) }
                " · requested by " b { (who) }
                " · " (age(meta, now))
                " · " (state.approvals.len()) " of " (state.requirements.approvals) " approvals"
            }
            @if !meta.display.is_empty() {
                dl.shown-inline {
                    @for (label, value) in &meta.display {
                        div { dt { (label) } dd { (value) } }
                    }
                }
            }
        }
    }
}

/// How the approver can prove it is them for this one decision.
pub struct Proofs {
    pub code: bool,
    pub passkey: bool,
}

/// One hold, as the approver reviews it before deciding. `requester` is
/// who asked, where the gateway knows.
#[allow(clippy::too_many_arguments)] // one page, one call site: a struct would only rename them
pub fn detail(
    prefix: &str,
    name: &str,
    meta: &HoldMeta,
    state: &HoldState,
    requester: Option<&str>,
    proofs: &Proofs,
    refused: Option<&str>,
    status: StatusCode,
) -> Response<Body> {
    let base = format!("{prefix}holds/{}", meta.id);
    let who = super::requester(meta, requester);
    let main = html! {
        (signed_in_bar(prefix, name))
        h1 { "Review this request" }
        p.lead { "Check that this is what the requester told you about. Compare the check code with theirs." }
        (alert(refused))
        dl.facts {
            (hold_facts(meta, Some(&who)))
            (fact("Approvals", html! { (state.approvals.len()) " of " (state.requirements.approvals) }))
        }
        (shown(meta))
        section.prove aria-labelledby="decide-heading" {
            h2 id="decide-heading" { "Your decision" }
            form id="decide" class="stack" method="post" action=(format!("{base}/approve"))
                data-deny=(format!("{base}/deny")) data-options=(format!("{base}/webauthn?as=approver")) {
                input type="hidden" name="txn" value=(meta.txn.as_str());
                input type="hidden" name="webauthn" value="";
                @if proofs.code {
                    (code_field())
                }
                div.field {
                    label for="comment" { "Comment" }
                    textarea id="comment" name="comment" maxlength="500" rows="2" {}
                }
                div.actions {
                    @if proofs.code {
                        button type="submit" class="primary" { "Approve with code" }
                    }
                    @if proofs.passkey {
                        button type="button" id="approve-passkey" class="primary" hidden { "Approve with a passkey" }
                    }
                    button type="submit" class="danger" id="deny" formaction=(format!("{base}/deny")) { "Deny" }
                }
                @if !proofs.code && !proofs.passkey {
                    p.hint { "You have no authenticator code or passkey enrolled, so you cannot decide here." }
                }
            }
        }
        p { a href=(format!("{prefix}holds")) { "Back to pending approvals" } }
    };
    respond(status, &format!("Review: {}", meta.label), main)
}

/// After a decision taken on the page.
pub fn decided(prefix: &str, name: &str, approved: bool, meta: &HoldMeta, state: Option<&HoldState>) -> Response<Body> {
    let heading = if approved { "Approved" } else { "Denied" };
    let text = match (approved, state) {
        (false, _) => "Denied. The request will not be carried out.".to_owned(),
        (true, Some(s)) if (s.approvals.len() as u32) < s.requirements.approvals => format!(
            "Approved. {} of {} approvals given; the request waits for the rest.",
            s.approvals.len(),
            s.requirements.approvals
        ),
        (true, _) => "Approved. The requester's page continues by itself.".to_owned(),
    };
    let main = html! {
        (signed_in_bar(prefix, name))
        h1 { (heading) }
        p.status.ok role="status" { (text) }
        dl.facts {
            (fact("Action", html! { (meta.label) }))
            (check_code_fact(meta))
        }
        p { a.button.secondary href=(format!("{prefix}holds")) { "Back to pending approvals" } }
    };
    respond(StatusCode::OK, heading, main)
}
