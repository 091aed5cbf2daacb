//! What a sensitive route demands, and how its hold behaves. These are the
//! typed forms of a route's `require:` and `hold:` blocks; the hold state
//! machine and the proof verifiers read them, nothing here does I/O.

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
    pub methods: Vec<ProofMethod>,
    pub max_age: Duration,
    pub approvals: u32,
}

impl Default for Requirements {
    fn default() -> Self {
        Requirements {
            methods: vec![ProofMethod::Webauthn, ProofMethod::Totp],
            max_age: Duration::from_secs(300),
            approvals: 0,
        }
    }
}

impl Requirements {
    /// Whether a route can be satisfied by `method`.
    pub fn accepts(&self, method: ProofMethod) -> bool {
        self.methods.contains(&method)
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
