//! The approvers' pages: sign-in, the list of holds waiting for them, one
//! hold as they review it, and the outcome of their decision.

use super::{check_code_fact, escape, fact, hold_facts, short_code, Page, CODE_FIELD};
use crate::body::Body;
use crate::hold::{HoldMeta, HoldState};
use http::{Response, StatusCode};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `GET holds` for someone not signed in (or a refused sign-in).
pub fn signin(prefix: &str, webauthn: bool, name: &str, alert: Option<&str>, status: StatusCode) -> Response<Body> {
    let mut p = Page::new("Approver sign-in");
    let b = &mut p.body;
    b.push_str("<h1>Approver sign-in</h1>\n<p class=\"lead\">Sign in to review the requests that are waiting for your approval.</p>\n");
    super::alert(b, alert);
    let _ = writeln!(
        b,
        "<form id=\"signin\" class=\"stack\" method=\"post\" action=\"{action}\" data-options=\"{options}\">\n\
         <input type=\"hidden\" name=\"method\" value=\"totp\"><input type=\"hidden\" name=\"credential\" value=\"\">\n\
         <div class=\"field\"><label for=\"name\">Name</label>\
         <input id=\"name\" name=\"name\" value=\"{name}\" autocomplete=\"username webauthn\" autocapitalize=\"none\" spellcheck=\"false\" required></div>",
        action = escape(&format!("{prefix}approver/login")),
        options = escape(&format!("{prefix}approver/login/options")),
        name = escape(name),
    );
    if webauthn {
        b.push_str(
            "<button type=\"button\" id=\"signin-passkey\" class=\"primary\" hidden>Sign in with a passkey</button>\n\
             <p class=\"or\"><span>or use a code from your authenticator app</span></p>\n",
        );
    }
    let class = if webauthn { "secondary" } else { "primary" };
    b.push_str(CODE_FIELD);
    let _ = writeln!(
        b,
        "<button type=\"submit\" class=\"{class}\">Sign in with code</button>\n</form>"
    );
    p.respond(status)
}

fn signed_in_bar(b: &mut String, prefix: &str, name: &str) {
    let _ = writeln!(
        b,
        "<div class=\"bar\"><span>Signed in as <b>{}</b></span>\
         <form method=\"post\" action=\"{}\"><button type=\"submit\" class=\"link\">Sign out</button></form></div>",
        escape(name),
        escape(&format!("{prefix}approver/logout"))
    );
}

fn age(meta: &HoldMeta, now: SystemTime) -> String {
    let s = now.duration_since(meta.created).unwrap_or(Duration::ZERO).as_secs();
    match s {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// `GET holds`: the holds this approver may decide.
pub fn list(prefix: &str, name: &str, holds: &[(Arc<HoldMeta>, HoldState)], now: SystemTime) -> Response<Body> {
    let mut p = Page::new("Pending approvals");
    let b = &mut p.body;
    signed_in_bar(b, prefix, name);
    b.push_str("<h1>Pending approvals</h1>\n");
    let ids: Vec<&str> = holds.iter().map(|(m, _)| m.id.as_str()).collect();
    let _ = writeln!(
        b,
        "<div id=\"queue\" data-queue=\"{}\" data-ids=\"{}\">",
        escape(&format!("{prefix}holds")),
        escape(&ids.join(" "))
    );
    if holds.is_empty() {
        b.push_str("<p class=\"empty\">Nothing is waiting for you. This page updates by itself.</p>\n");
    } else {
        b.push_str("<ul class=\"holds\">\n");
        for (meta, state) in holds {
            let summary: Vec<String> = meta
                .display
                .iter()
                .map(|(l, v)| format!("{}: {}", escape(l), escape(v)))
                .collect();
            let _ = writeln!(
                b,
                "<li><a href=\"{href}\"><span class=\"action\">{action}</span> <code class=\"check\">{code}</code></a>\
                 <span class=\"meta\">{method} <code>{target}</code> · requested by {who} · {age} · {have} of {need} approvals</span>{summary}</li>",
                href = escape(&format!("{prefix}holds/{}", meta.id)),
                action = escape(&meta.action),
                code = short_code(meta.txn.as_str()),
                method = escape(meta.method.as_str()),
                target = escape(&meta.path_and_query),
                who = escape(&super::requester(meta)),
                age = age(meta, now),
                have = state.approvals.len(),
                need = state.requirements.approvals,
                summary = if summary.is_empty() {
                    String::new()
                } else {
                    format!("<span class=\"meta\">{}</span>", summary.join(" · "))
                },
            );
        }
        b.push_str("</ul>\n");
    }
    b.push_str("</div>\n");
    p.respond(StatusCode::OK)
}

/// How the approver can prove it is them for this one decision.
pub struct Proofs {
    pub code: bool,
    pub passkey: bool,
}

/// One hold, as the approver reviews it before deciding.
pub fn detail(
    prefix: &str,
    name: &str,
    meta: &HoldMeta,
    state: &HoldState,
    proofs: &Proofs,
    alert: Option<&str>,
    status: StatusCode,
) -> Response<Body> {
    let mut p = Page::new(&format!("Review: {}", meta.action));
    let b = &mut p.body;
    signed_in_bar(b, prefix, name);
    b.push_str("<h1>Review this request</h1>\n<p class=\"lead\">Check that this is what the requester told you about. Compare the check code with theirs.</p>\n");
    super::alert(b, alert);
    b.push_str("<dl class=\"facts\">\n");
    hold_facts(b, meta, Some(&super::requester(meta)));
    b.push_str(&fact(
        "Approvals",
        &format!("{} of {}", state.approvals.len(), state.requirements.approvals),
    ));
    b.push_str("</dl>\n");
    let base = format!("{prefix}holds/{}", meta.id);
    let _ = writeln!(
        b,
        "<form id=\"decide\" class=\"stack\" method=\"post\" action=\"{approve}\" data-deny=\"{deny}\" data-options=\"{options}\">\n\
         <input type=\"hidden\" name=\"txn\" value=\"{txn}\"><input type=\"hidden\" name=\"webauthn\" value=\"\">",
        approve = escape(&format!("{base}/approve")),
        deny = escape(&format!("{base}/deny")),
        options = escape(&format!("{base}/webauthn?as=approver")),
        txn = escape(meta.txn.as_str()),
    );
    if proofs.code {
        b.push_str(CODE_FIELD);
    }
    b.push_str(
        "<div class=\"field\"><label for=\"comment\">Comment</label>\
         <textarea id=\"comment\" name=\"comment\" maxlength=\"500\" rows=\"2\"></textarea></div>\n<div class=\"actions\">\n",
    );
    if proofs.code {
        b.push_str("<button type=\"submit\" class=\"primary\">Approve with code</button>\n");
    }
    if proofs.passkey {
        b.push_str(
            "<button type=\"button\" id=\"approve-passkey\" class=\"primary\" hidden>Approve with a passkey</button>\n",
        );
    }
    let _ = writeln!(
        b,
        "<button type=\"submit\" class=\"danger\" id=\"deny\" formaction=\"{}\">Deny</button>\n</div>",
        escape(&format!("{base}/deny"))
    );
    if !proofs.code && !proofs.passkey {
        b.push_str(
            "<p class=\"hint\">You have no authenticator code or passkey enrolled, so you cannot decide here.</p>\n",
        );
    }
    let _ = writeln!(
        b,
        "</form>\n<p><a href=\"{}\">Back to pending approvals</a></p>",
        escape(&format!("{prefix}holds"))
    );
    p.respond(status)
}

/// After a decision taken on the page.
pub fn decided(prefix: &str, name: &str, approved: bool, meta: &HoldMeta, state: Option<&HoldState>) -> Response<Body> {
    let heading = if approved { "Approved" } else { "Denied" };
    let mut p = Page::new(heading);
    let b = &mut p.body;
    signed_in_bar(b, prefix, name);
    let _ = writeln!(b, "<h1>{heading}</h1>");
    let text = match (approved, state) {
        (false, _) => "Denied. The request will not be carried out.".to_owned(),
        (true, Some(s)) if (s.approvals.len() as u32) < s.requirements.approvals => format!(
            "Approved. {} of {} approvals given; the request waits for the rest.",
            s.approvals.len(),
            s.requirements.approvals
        ),
        (true, _) => "Approved. The requester's page continues by itself.".to_owned(),
    };
    let _ = writeln!(
        b,
        "<p class=\"status ok\" role=\"status\">{}</p>\n<dl class=\"facts\">{}{}</dl>\n<p><a class=\"button secondary\" href=\"{}\">Back to pending approvals</a></p>",
        escape(&text),
        fact("Action", &escape(&meta.action)),
        check_code_fact(meta),
        escape(&format!("{prefix}holds")),
    );
    p.respond(StatusCode::OK)
}
