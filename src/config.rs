//! routes.yaml, parsed once into typed configuration.
//!
//! [`from_str`] is pure (tests and fuzzers never need a file); [`load`]
//! reads the file and resolves relative paths against its directory.

mod build;
mod error;
mod files;
mod locate;
mod raw;
pub mod units;

pub use error::ConfigError;
pub use files::{check_files, located, tls_key_naming};

use crate::route::RouteTable;
use http::HeaderName;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub tls: TlsConfig,
    pub upstream: Upstream,
    pub admin_listen: Option<SocketAddr>,
    pub session: SessionConfig,
    pub trusted_proxies: Vec<IpNet>,
    pub identity: IdentityConfig,
    pub notify: Option<NotifyConfig>,
    pub audit: AuditConfig,
    pub state: StateConfig,
    pub assertion: AssertionConfig,
    pub limits: Limits,
    pub stepup: StepupConfig,
    pub routes: RouteTable,
    /// Non-fatal findings (`stepgate check` prints them).
    pub warnings: Vec<String>,
}

/// The audit trail's file, rotation size and checkpoint interval (`audit:`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub rotate_bytes: u64,
    pub checkpoint_every: u64,
}

/// Where holds and single-use records live (`state:`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateConfig {
    /// One instance, in process memory.
    #[default]
    Memory,
    /// Shared by every instance that names the same Redis and prefix.
    Redis { url: String, prefix: String },
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The upstream origin: `http://host:port`, or `https://host:port` with
/// the CA that must have issued its certificate.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub authority: http::uri::Authority,
    /// Set for an `https://` upstream, and only then.
    pub tls: Option<UpstreamTls>,
}

/// How the gateway verifies an `https://` upstream and proves itself to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The only roots trusted for the upstream's certificate (never the
    /// system store, unless this names it).
    pub ca: PathBuf,
    /// A client certificate and its key, for an upstream that asks for one.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name sent as SNI and checked against the certificate; the
    /// upstream's host when not set.
    pub server_name: String,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub cookie: Option<String>,
    pub header: Option<HeaderName>,
    pub mtls: bool,
    pub key_file: PathBuf,
}

/// Where the session's own identity comes from, when it is known.
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// Set by an authenticating proxy; believed only from `trusted_proxies`.
    pub header: Option<HeaderName>,
    /// A verified JWT (cookie or bearer) names the session's user.
    pub jwt: Option<JwtIdentityConfig>,
    /// A verified client certificate names the workload: its URI SAN.
    pub mtls: bool,
    /// `identity.cert: cn`: the subject CN names the workload, but only on
    /// a certificate with no SAN at all.
    pub cert_cn: bool,
}

#[derive(Debug, Clone)]
pub struct JwtIdentityConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks: PathBuf,
    pub cookie: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub webhook: http::Uri,
    /// Notifications waiting to be sent (`notify.queue`, default 1024).
    pub queue: usize,
}

#[derive(Debug, Clone)]
pub struct AssertionConfig {
    pub key: PathBuf,
    pub retired_keys: Vec<PathBuf>,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_holds: usize,
    pub max_holds_per_session: usize,
    pub max_body: u64,
    /// All parked bodies together: a client can mint session values, so
    /// the per-session limit alone does not bound memory.
    pub max_held_bytes: u64,
    /// Holds and held bytes of one client address (IPv6 by /64), so one
    /// client's flood cannot use up the global budget for everyone.
    pub max_holds_per_client: usize,
    pub max_held_bytes_per_client: u64,
    /// Every request body the gateway reads into memory, from its first
    /// byte until it is forwarded or its hold ends, including bodies still
    /// arriving (before any hold exists): all together, and per client
    /// address (IPv6 by /64).
    pub max_buffered_bytes: u64,
    pub max_buffered_bytes_per_client: u64,
    /// How long an ended hold is remembered, so late callers learn that it
    /// was released or expired rather than that it never existed.
    pub keep_ended_holds: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub h2_max_concurrent_streams: u32,
    pub header_read_timeout: Duration,
    /// A body the gateway reads must be whole this long after its head; a
    /// body streamed through may not go this long without a byte. A client
    /// trickling a body cannot hold a connection, a buffer or an upstream
    /// connection for longer.
    pub body_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub upstream_timeout: Duration,
    /// How long a shutdown waits for open connections to finish their
    /// requests. A connection still waiting for a release's response gets
    /// up to `upstream_timeout` however short this is.
    pub drain: Duration,
    pub max_attempts: u32,
    /// Requests a minute (and at once) one client address, or one session,
    /// may make to the endpoints anyone can call before proving anything:
    /// passkey options and approver sign-in.
    pub ceremony_rate_per_client: u32,
    pub ceremony_rate_per_session: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_holds: 10_000,
            max_holds_per_session: 8,
            max_body: 1 << 20,
            max_held_bytes: 256 << 20,
            max_holds_per_client: 100,
            max_held_bytes_per_client: 16 << 20,
            max_buffered_bytes: 256 << 20,
            max_buffered_bytes_per_client: 16 << 20,
            keep_ended_holds: Duration::from_secs(300),
            max_header_bytes: 64 << 10,
            max_headers: 100,
            max_connections: 10_000,
            h2_max_concurrent_streams: 100,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(30),
            max_attempts: 5,
            ceremony_rate_per_client: 30,
            ceremony_rate_per_session: 10,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StepupConfig {
    /// Always starts and ends with `/`, e.g. `/.stepup/`.
    pub prefix: String,
    pub token_issuers: Vec<IssuerConfig>,
    /// The user store (TOTP secrets, groups, WebAuthn credentials).
    pub users: PathBuf,
    pub approvers: Vec<Approver>,
    /// Passkeys; `None` means the `webauthn` method is not offered.
    pub webauthn: Option<WebauthnConfig>,
    /// Re-authentication at an OpenID Provider; `None`: no `oidc` method.
    pub oidc: Option<OidcConfig>,
}

/// `stepup.oidc` (SPEC §5): the OpenID Provider and this gateway's client
/// registration there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// Exactly as the OP spells it (no trailing-slash normalisation): the
    /// ID token's `iss` must equal it byte for byte.
    pub issuer: String,
    pub client_id: String,
    pub client_auth: OidcClientAuth,
    pub redirect_uri: http::Uri,
    /// Always starts with `openid`, without duplicates.
    pub scopes: Vec<String>,
    /// Extra trust anchor for a private IdP's TLS certificate.
    pub ca: Option<PathBuf>,
}

/// How the gateway authenticates at the OP's token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcClientAuth {
    /// `client_secret_basic` with the secret read from this file.
    SecretFile(PathBuf),
    /// `private_key_jwt` signed ES256 with the P-256 key in this PEM file.
    PrivateKeyJwt(PathBuf),
}

/// `stepup.webauthn`: the relying party passkeys belong to. The RP id and
/// the origins are pinned: an assertion made for any other site is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnConfig {
    /// A registrable domain suffix of every origin's host, e.g. `example.com`.
    pub rp_id: String,
    /// Exact origins (`https://host[:port]`, serialised as browsers put them
    /// in clientDataJSON) whose assertions are accepted.
    pub origins: Vec<String>,
    /// Shown by the authenticator when a passkey is created.
    pub rp_name: String,
}

/// A person who may approve holds, known by the SHA-256 of their API key.
#[derive(Clone)]
pub struct Approver {
    pub name: String,
    pub groups: Vec<String>,
    pub key_sha256: [u8; 32],
    pub totp: bool,
}

impl std::fmt::Debug for Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approver")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .field("totp", &self.totp)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks: PathBuf,
}

impl Config {
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        if let Some(ca) = self.tls.client_ca.as_mut() {
            fix(ca);
        }
        if let Some(t) = self.upstream.tls.as_mut() {
            fix(&mut t.ca);
            if let Some((cert, key)) = t.client.as_mut() {
                fix(cert);
                fix(key);
            }
        }
        fix(&mut self.session.key_file);
        fix(&mut self.stepup.users);
        fix(&mut self.audit.path);
        if let Some(j) = self.identity.jwt.as_mut() {
            fix(&mut j.jwks);
        }
        fix(&mut self.assertion.key);
        self.assertion.retired_keys.iter_mut().for_each(fix);
        for issuer in &mut self.stepup.token_issuers {
            fix(&mut issuer.jwks);
        }
        if let Some(o) = self.stepup.oidc.as_mut() {
            match &mut o.client_auth {
                OidcClientAuth::SecretFile(p) | OidcClientAuth::PrivateKeyJwt(p) => fix(p),
            }
            if let Some(ca) = o.ca.as_mut() {
                fix(ca);
            }
        }
    }
}

/// Parses and validates config text. `file` only labels error messages.
pub fn from_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    build::build(text, file)
}

/// Reads `path`, validates it, and makes relative paths relative to the
/// file's own directory (so the gateway can be started from anywhere).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(&label, &e))?;
    let mut config = from_str(&text, &label)?;
    let base = path.parent().unwrap_or(Path::new("."));
    config.resolve_paths(base);
    Ok(config)
}
