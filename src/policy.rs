//! What a sensitive route demands, and how its hold behaves. These are the
//! typed forms of a route's `require:` and `hold:` blocks; the hold state
//! machine and the proof verifiers read them, nothing here does I/O.

pub mod body;
pub mod conditions;

use std::fmt;
use std::time::Duration;

/// A way to prove presence again. Closed set: adding one means a verifier in
/// `stepup` and a variant here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProofMethod {
    Totp,
    Webauthn,
    Token,
    Oidc,
}

impl ProofMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ProofMethod::Totp => "totp",
            ProofMethod::Webauthn => "webauthn",
            ProofMethod::Token => "token",
            ProofMethod::Oidc => "oidc",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "totp" => ProofMethod::Totp,
            "webauthn" => ProofMethod::Webauthn,
            "token" => ProofMethod::Token,
            "oidc" => ProofMethod::Oidc,
            _ => return None,
        })
    }
}

impl fmt::Display for ProofMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `require:` of a route. Any one of `methods` satisfies the proof part;
/// `approvals` distinct approvers are needed on top of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    /// Any one of these proves presence. Empty: approvals alone suffice.
    pub methods: Vec<ProofMethod>,
    pub max_age: Duration,
    pub approvals: u32,
    /// Approver groups whose members may approve; empty means any approver.
    pub approvers: Vec<String>,
    /// Who may step up (by user name, or by group in the user store);
    /// both empty means anyone who can prove presence.
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// Sudo mode: the same session may repeat the same action without a
    /// new proof for this long after one (zero: never).
    pub reuse: Duration,
    /// `break_glass:` on the route: the requester may release their own
    /// hold by stating a reason; always audited and announced.
    pub break_glass: Option<BreakGlass>,
    /// The OP `acr` values that satisfy the route, in the IdP's own words
    /// and in preference order (sent as `acr_values`). Empty: any `acr`.
    pub acr: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakGlass {
    pub reason_required: bool,
    /// Whether break-glass may stand in for the route's approvals. Off
    /// unless the route says so: an approval is someone else's judgement,
    /// and the requester's own say-so replaces it only by explicit choice.
    pub replaces_approvals: bool,
}

impl Default for Requirements {
    fn default() -> Self {
        Requirements {
            methods: vec![ProofMethod::Webauthn, ProofMethod::Totp],
            max_age: Duration::from_secs(300),
            approvals: 0,
            approvers: Vec::new(),
            users: Vec::new(),
            groups: Vec::new(),
            reuse: Duration::ZERO,
            break_glass: None,
            acr: Vec::new(),
        }
    }
}

impl Requirements {
    /// Whether a route can be satisfied by `method`.
    pub fn accepts(&self, method: ProofMethod) -> bool {
        self.methods.contains(&method)
    }

    /// Whether a proof by `method` at assurance `acr` meets the route's
    /// `acr` list, which binds OIDC proofs only (other methods carry no
    /// IdP `acr`).
    pub fn accepts_acr(&self, method: ProofMethod, acr: &str) -> bool {
        method != ProofMethod::Oidc || self.acr.is_empty() || self.acr.iter().any(|a| a == acr)
    }

    /// Whether `user` (a member of `groups`) may perform the step-up.
    pub fn allows_user(&self, user: &str, groups: &[String]) -> bool {
        if self.users.is_empty() && self.groups.is_empty() {
            return true;
        }
        self.users.iter().any(|u| u == user) || self.groups.iter().any(|g| groups.contains(g))
    }

    /// Whether an approver in `groups` may approve for this route.
    pub fn allows_approver(&self, groups: &[String]) -> bool {
        self.approvers.is_empty() || self.approvers.iter().any(|g| groups.contains(g))
    }

    /// Whether an approver in `groups` has a say in a hold with these
    /// requirements: it needs approvals, and from a group of theirs.
    pub fn wants_approval_from(&self, groups: &[String]) -> bool {
        self.approvals > 0 && self.allows_approver(groups)
    }

    /// Space-separated method list for the `WWW-Authenticate` challenge.
    pub fn methods_joined(&self) -> String {
        let names: Vec<&str> = self.methods.iter().map(|m| m.as_str()).collect();
        names.join(" ")
    }
}

/// Who waits for the upstream response of a held request (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldMode {
    Challenge,
    Hold,
    Auto,
    Shadow,
}

impl HoldMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "challenge" => HoldMode::Challenge,
            "hold" => HoldMode::Hold,
            "auto" => HoldMode::Auto,
            "shadow" => HoldMode::Shadow,
            _ => return None,
        })
    }

    /// The mode as routes.yaml spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldMode::Challenge => "challenge",
            HoldMode::Hold => "hold",
            HoldMode::Auto => "auto",
            HoldMode::Shadow => "shadow",
        }
    }

    /// What the mode does, for people reading `stepgate explain`.
    pub fn describe(self) -> &'static str {
        match self {
            HoldMode::Challenge => "answer 401 step_up_required at once; the completing call gets the response",
            HoldMode::Hold => "the connection waits until the hold is released or ends",
            HoldMode::Auto => "browsers get the step-up page, other clients the 401 challenge",
            HoldMode::Shadow => "forward at once and only audit what would have been held",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSpec {
    pub mode: HoldMode,
    pub timeout: Duration,
}

impl Default for HoldSpec {
    fn default() -> Self {
        HoldSpec {
            mode: HoldMode::Auto,
            timeout: Duration::from_secs(120),
        }
    }
}

/// A value shown to whoever proves or approves, so they see what they are
/// authorising. It comes from the request itself and is covered by `txn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayField {
    pub label: String,
    pub source: DisplaySource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplaySource {
    /// A capture group of the route's path regex.
    Capture(usize),
    /// A JSON pointer into the request body.
    Json(String),
    /// A field of an urlencoded form body.
    Form(String),
}

/// Who is calling: a person (browser, CLI with a session cookie) or a
/// workload (a service or agent authenticated by its client certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Person,
    Workload,
}

/// What a route reads from its body: display fields and `when:`
/// conditions. `Ok(None)` when it reads nothing; an error when it reads
/// both types (a body has one).
pub fn route_reader(
    display: &[DisplayField],
    when: &[conditions::Condition],
) -> Result<Option<body::Reader>, &'static str> {
    let mut json = false;
    let mut form: Vec<&str> = Vec::new();
    for d in display {
        match &d.source {
            DisplaySource::Json(_) => json = true,
            DisplaySource::Form(f) => form.push(f),
            DisplaySource::Capture(_) => {}
        }
    }
    conditions::body_reads(when, &mut json, &mut form);
    match (json, form.is_empty()) {
        (false, true) => Ok(None),
        (true, true) => Ok(Some(body::Reader::new(body::BodyKind::Json, []))),
        (false, false) => Ok(Some(body::Reader::new(body::BodyKind::Form, form))),
        (true, false) => Err("a route reads its body as one type: `json` and `form` fields cannot be mixed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_binds_oidc_proofs_only() {
        let any = Requirements::default();
        assert!(any.accepts_acr(ProofMethod::Oidc, "urn:low"), "no list: any acr");
        let strict = Requirements {
            acr: vec!["phr".into(), "phrh".into()],
            ..Requirements::default()
        };
        assert!(strict.accepts_acr(ProofMethod::Oidc, "phrh"));
        assert!(!strict.accepts_acr(ProofMethod::Oidc, "urn:low"));
        assert!(!strict.accepts_acr(ProofMethod::Oidc, ""), "no acr is not a listed one");
        assert!(
            strict.accepts_acr(ProofMethod::Totp, ""),
            "a TOTP proof carries no IdP acr"
        );
    }
}
