//! The body of a proof or an approver's decision, JSON or form-encoded.

use crate::policy::ProofMethod;
use crate::proxy::respond::Reject;
use http::request::Parts;
use serde::Deserialize;

/// Proofs and decisions are small; anything larger is refused unread.
pub(in crate::proxy) const MAX_PROOF_BODY: u64 = 16 * 1024;

/// The fields a proof or decision may carry: JSON, or the same fields
/// form-encoded by the pages. `{}` collects a hold approvals satisfied.
#[derive(Debug, Default, Deserialize)]
pub(in crate::proxy) struct ProofBody {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub txn: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// A WebAuthn assertion (`PublicKeyCredential` JSON) for `complete`.
    #[serde(default)]
    pub credential: Option<serde_json::Value>,
    /// An approver's WebAuthn assertion next to a decision.
    #[serde(default)]
    pub webauthn: Option<serde_json::Value>,
}

/// A form carries JSON as text; JSON may too.
fn json_text(v: Option<serde_json::Value>) -> Option<serde_json::Value> {
    match v {
        Some(serde_json::Value::String(text)) => serde_json::from_str(&text).ok(),
        other => other,
    }
}

pub(in crate::proxy) fn parse_body(parts: &Parts, bytes: &[u8]) -> Result<ProofBody, Reject> {
    let form = crate::proxy::display::is_form(&parts.headers);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ProofBody::default());
    }
    if form {
        let mut b = ProofBody::default();
        for (k, v) in form_urlencoded::parse(bytes) {
            let v = Some(v.into_owned());
            match k.as_ref() {
                "method" => b.method = v,
                "token" => b.token = v,
                "user" => b.user = v,
                "code" => b.code = v,
                "txn" => b.txn = v,
                "comment" => b.comment = v,
                "reason" => b.reason = v,
                "credential" => b.credential = json_text(v.map(Into::into)),
                "webauthn" => b.webauthn = json_text(v.map(Into::into)),
                _ => {}
            }
        }
        return Ok(b);
    }
    let mut b: ProofBody = serde_json::from_slice(bytes).map_err(|_| Reject::BadRequest("malformed proof"))?;
    b.credential = json_text(b.credential);
    b.webauthn = json_text(b.webauthn);
    Ok(b)
}

/// What a `complete` asks for, read once from its `method` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum Step {
    /// No method: collect a hold that approvals (or an earlier proof) met.
    Collect,
    BreakGlass,
    Prove(ProofMethod),
    /// A method this gateway has never heard of.
    Unknown,
}

impl Step {
    /// The `method` an audit record and the proof metrics name, for the
    /// steps that are a proof at all.
    pub(in crate::proxy) fn label(self) -> Option<&'static str> {
        match self {
            Step::BreakGlass => Some("break_glass"),
            Step::Prove(m) => Some(m.as_str()),
            Step::Collect | Step::Unknown => None,
        }
    }
}

impl ProofBody {
    pub(in crate::proxy) fn step(&self) -> Step {
        match self.method.as_deref() {
            None | Some("") => Step::Collect,
            Some("break_glass") => Step::BreakGlass,
            Some(name) => ProofMethod::parse(name).map_or(Step::Unknown, Step::Prove),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_field_names_one_step() {
        let step = |m: Option<&str>| {
            ProofBody {
                method: m.map(str::to_owned),
                ..ProofBody::default()
            }
            .step()
        };
        assert_eq!(step(None), Step::Collect);
        assert_eq!(step(Some("")), Step::Collect);
        assert_eq!(step(Some("break_glass")), Step::BreakGlass);
        assert_eq!(step(Some("totp")), Step::Prove(ProofMethod::Totp));
        assert_eq!(step(Some("TOTP")), Step::Unknown);
        assert_eq!(step(Some("break_glass")).label(), Some("break_glass"));
        assert_eq!(step(Some("nope")).label(), None);
    }
}
