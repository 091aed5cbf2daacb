//! The file as written. Every struct rejects unknown keys; values stay
//! strings until `build` turns them into typed config, so that semantic
//! errors can be reported at their own line and column.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: String,
    pub tls: RawTls,
    pub upstream: String,
    #[serde(default)]
    pub upstream_tls: Option<RawUpstreamTls>,
    #[serde(default)]
    pub admin_listen: Option<String>,
    pub session: RawSession,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub identity: Option<RawIdentity>,
    #[serde(default)]
    pub notify: Option<RawNotify>,
    #[serde(default)]
    pub audit: Option<RawAudit>,
    #[serde(default)]
    pub state: Option<RawState>,
    pub assertion: RawAssertion,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub stepup: RawStepup,
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// `upstream_tls:`, for an `https://` upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub ca: PathBuf,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub mtls: bool,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssertion {
    pub key: PathBuf,
    #[serde(default)]
    pub retired_keys: Vec<PathBuf>,
    pub issuer: String,
    pub audience: String,
    #[serde(default)]
    pub ttl: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_holds: Option<u64>,
    pub max_holds_per_session: Option<u64>,
    pub max_body: Option<Scalar>,
    pub max_held_bytes: Option<Scalar>,
    pub max_holds_per_client: Option<u64>,
    pub max_held_bytes_per_client: Option<Scalar>,
    pub max_buffered_bytes: Option<Scalar>,
    pub max_buffered_bytes_per_client: Option<Scalar>,
    pub keep_ended_holds: Option<Scalar>,
    pub max_header_bytes: Option<Scalar>,
    pub max_headers: Option<u64>,
    pub max_connections: Option<u64>,
    pub h2_max_concurrent_streams: Option<u64>,
    pub header_read_timeout: Option<Scalar>,
    pub body_read_timeout: Option<Scalar>,
    pub tls_handshake_timeout: Option<Scalar>,
    pub upstream_timeout: Option<Scalar>,
    pub drain: Option<Scalar>,
    pub max_attempts: Option<u64>,
    pub ceremony_rate_per_client: Option<u64>,
    pub ceremony_rate_per_session: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStepup {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub users: Option<PathBuf>,
    #[serde(default)]
    pub approvers: Vec<RawApprover>,
    #[serde(default)]
    pub token_issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub webauthn: Option<RawWebauthn>,
    #[serde(default)]
    pub oidc: Option<RawOidc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebauthn {
    pub rp_id: String,
    pub origins: Vec<String>,
    #[serde(default)]
    pub rp_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub private_key_jwt: Option<RawPrivateKeyJwt>,
    pub redirect_uri: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivateKeyJwt {
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprover {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub key_sha256: String,
    /// The approver must add a code from their own TOTP to each decision.
    #[serde(default)]
    pub totp: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub jwt: Option<RawIdentityJwt>,
    #[serde(default)]
    pub mtls: bool,
    /// Which certificate name is the identity: `san` (the URI SAN, the
    /// default) or `cn` (the subject CN, only on certificates with no SAN).
    #[serde(default)]
    pub cert: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityJwt {
    pub issuer: String,
    pub audience: String,
    pub jwks: PathBuf,
    /// Read the JWT from this cookie; otherwise from `Authorization: Bearer`.
    #[serde(default)]
    pub cookie: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub rotate: Option<Scalar>,
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
}

/// `state:`: where holds and single-use records live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub backend: String,
    #[serde(default)]
    pub url: Option<String>,
    /// Prefix of every key, so several gateways can share one Redis.
    #[serde(default)]
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub webhook: String,
    #[serde(default)]
    pub queue: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisplay {
    pub label: String,
    #[serde(default)]
    pub capture: Option<usize>,
    #[serde(default)]
    pub json: Option<String>,
    #[serde(default)]
    pub form: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub issuer: String,
    pub audience: String,
    pub jwks: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(default)]
    pub action: Option<String>,
    /// What people are shown for the action (`Delete a user`); the
    /// action id when absent.
    #[serde(default)]
    pub label: Option<String>,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    #[serde(default)]
    pub deny: bool,
    #[serde(default)]
    pub require: Option<RawRequire>,
    #[serde(default)]
    pub hold: Option<RawHold>,
    #[serde(default)]
    pub display: Vec<RawDisplay>,
    /// Parsed by `policy::conditions`, which reports its own sub-paths.
    #[serde(default)]
    pub when: Option<serde_yaml::Value>,
    #[serde(default)]
    pub break_glass: Option<RawBreakGlass>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreakGlass {
    #[serde(default)]
    pub reason_required: bool,
    #[serde(default)]
    pub replaces_approvals: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub host: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    /// Opt out of case folding; `case_insensitive` is the older spelling
    /// of the default and stays accepted.
    #[serde(default)]
    pub case_sensitive: Option<bool>,
    #[serde(default)]
    pub case_insensitive: Option<bool>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub caller: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequire {
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub max_age: Option<Scalar>,
    #[serde(default)]
    pub approvals: Option<u32>,
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub reuse: Option<Scalar>,
    #[serde(default)]
    pub acr: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHold {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub timeout: Option<Scalar>,
}

/// A value that may be written as a number or a string (`ttl: 60` or `60s`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(u64),
    Str(String),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}
