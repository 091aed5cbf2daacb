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

/// A form carries JSON as text; JSON may too. Read once: text that is
/// itself a JSON string (`"\"{...}\""`) is not unwrapped again, since a
/// second reader might stop at either layer; a credential is an object.
fn json_text(v: Option<serde_json::Value>) -> Option<serde_json::Value> {
    match v {
        Some(serde_json::Value::String(text)) => serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .filter(serde_json::Value::is_object),
        other => other,
    }
}

pub(in crate::proxy) fn parse_body(parts: &Parts, bytes: &[u8]) -> Result<ProofBody, Reject> {
    let form = crate::proxy::display::is_form(&parts.headers);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ProofBody::default());
    }
    if form {
        return parse_form(bytes);
    }
    let mut b: ProofBody = serde_json::from_slice(bytes).map_err(|_| Reject::BadRequest("malformed proof"))?;
    b.credential = json_text(b.credential);
    b.webauthn = json_text(b.webauthn);
    Ok(b)
}

/// A field given twice is refused, as JSON's duplicate keys are: which copy
/// counts (`method=totp&method=break_glass`) must never depend on the
/// reader.
fn parse_form(bytes: &[u8]) -> Result<ProofBody, Reject> {
    let mut b = ProofBody::default();
    for (k, v) in form_urlencoded::parse(bytes) {
        let text = Some(v.into_owned());
        let slot_was_empty = match k.as_ref() {
            "method" => b.method.replace_if_empty(text),
            "token" => b.token.replace_if_empty(text),
            "user" => b.user.replace_if_empty(text),
            "code" => b.code.replace_if_empty(text),
            "txn" => b.txn.replace_if_empty(text),
            "comment" => b.comment.replace_if_empty(text),
            "reason" => b.reason.replace_if_empty(text),
            "credential" => b.credential.replace_if_empty(text.map(Into::into)),
            "webauthn" => b.webauthn.replace_if_empty(text.map(Into::into)),
            _ => true,
        };
        if !slot_was_empty {
            return Err(Reject::BadRequest("repeated proof field"));
        }
    }
    b.credential = json_text(b.credential);
    b.webauthn = json_text(b.webauthn);
    Ok(b)
}

trait FillOnce<T> {
    /// Fills an empty slot and says so; a full one is left as it was.
    fn replace_if_empty(&mut self, value: Option<T>) -> bool;
}

impl<T> FillOnce<T> for Option<T> {
    fn replace_if_empty(&mut self, value: Option<T>) -> bool {
        if self.is_some() {
            return false;
        }
        *self = value;
        true
    }
}

/// The fuzz target's check of the parser: whatever the bytes, no panic; an
/// accepted form names each field once; an accepted body leaves no
/// WebAuthn value as unparsed text.
pub(crate) fn fuzz_check(form: bool, bytes: &[u8]) {
    let mut headers = http::HeaderMap::new();
    let ctype = if form {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
    let mut parts = http::Request::new(()).into_parts().0;
    parts.headers = headers;
    let Ok(body) = parse_body(&parts, bytes) else {
        return;
    };
    if form {
        let mut seen = std::collections::HashSet::new();
        for (k, _) in form_urlencoded::parse(bytes) {
            let known = matches!(
                k.as_ref(),
                "method" | "token" | "user" | "code" | "txn" | "comment" | "reason" | "credential" | "webauthn"
            );
            assert!(!known || seen.insert(k.into_owned()), "a repeated field was accepted");
        }
    }
    for v in [&body.credential, &body.webauthn].into_iter().flatten() {
        assert!(!v.is_string(), "a WebAuthn value stayed text");
    }
    let step = body.step();
    assert_eq!(
        step.label().is_some(),
        matches!(step, Step::BreakGlass | Step::Prove(_))
    );
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

    fn parts(ctype: &'static str) -> Parts {
        let mut parts = http::Request::new(()).into_parts().0;
        parts
            .headers
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
        parts
    }

    #[test]
    fn a_field_given_twice_is_refused_in_a_form_and_in_json() {
        let form = parts("application/x-www-form-urlencoded");
        for body in [
            &b"method=totp&method=break_glass&code=1"[..],
            b"txn=a&code=1&txn=b",
            b"code=1&code=",
            b"credential=%7B%7D&credential=%7B%7D",
        ] {
            assert!(parse_body(&form, body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let ok = parse_body(&form, b"method=totp&code=123456&extra=1&extra=2").expect("one of each");
        assert_eq!(
            (ok.method.as_deref(), ok.code.as_deref()),
            (Some("totp"), Some("123456"))
        );
        let json = parts("application/json");
        assert!(parse_body(&json, br#"{"method":"totp","method":"break_glass"}"#).is_err());
    }

    #[test]
    fn a_credential_sent_as_form_text_is_read_as_json() {
        let form = parts("application/x-www-form-urlencoded");
        let b = parse_body(&form, b"method=webauthn&credential=%7B%22id%22%3A%22x%22%7D").expect("parses");
        assert_eq!(b.credential, Some(serde_json::json!({"id": "x"})));
    }

    /// Found by the `proof_body` fuzz target: a form credential whose text
    /// is a JSON string stayed a string after one reading.
    #[test]
    fn credential_text_that_is_a_json_string_is_no_credential() {
        let form = parts("application/x-www-form-urlencoded");
        let crash = b"n&credential=%225%Bp\x9c\xda2c2c%Bi\x9c\xda2cc2c%Bi\x9c\xda2cc3cccccccA%22\n ";
        let b = parse_body(&form, crash).expect("parses");
        assert_eq!(b.credential, None);
        fuzz_check(true, crash);
        let b = parse_body(&form, b"credential=%22%7B%7D%22").expect("parses");
        assert_eq!(b.credential, None, "a string holding an object is not unwrapped twice");
        let json = parts("application/json");
        let b = parse_body(&json, br#"{"credential":"\"{}\""}"#).expect("parses");
        assert_eq!(b.credential, None);
    }
}
