//! The key and certificate files a config names must exist, and secrets
//! must be private to their owner, before `serve` starts or `check` says
//! ok. Nothing is generated here: a missing key in production is an error,
//! never a reason to invent a new one (only `stepgate demo` generates).

use super::locate::Locations;
use super::{Config, ConfigError};
use std::path::{Path, PathBuf};

struct Named {
    /// The config path, located in the file for the message.
    at: String,
    file: PathBuf,
    /// A secret: refused when group or others may read it.
    secret: bool,
    /// Must exist (state files the gateway creates itself need not).
    required: bool,
    hint: &'static str,
}

fn named(config: &Config) -> Vec<Named> {
    let req = |at: String, file: &Path, secret: bool, hint: &'static str| Named {
        at,
        file: file.to_owned(),
        secret,
        required: true,
        hint,
    };
    let tls = "use your certificate and key (for a development setup, `stepgate demo` generates them)";
    let mut out = vec![
        req("tls.cert".into(), &config.tls.cert, false, tls),
        req("tls.key".into(), &config.tls.key, true, tls),
        req(
            "assertion.key".into(),
            &config.assertion.key,
            true,
            "create one with `stepgate keygen --out FILE` and publish its JWKS (`stepgate jwks`) to the upstream",
        ),
    ];
    if let Some(ca) = &config.tls.client_ca {
        out.push(req(
            "tls.client_ca".into(),
            ca,
            false,
            "name the CA that issues your client certificates",
        ));
    }
    if let Some(t) = &config.upstream.tls {
        out.push(req(
            "upstream_tls.ca".into(),
            &t.ca,
            false,
            "save the CA certificate that issued the upstream's certificate there",
        ));
        if let Some((cert, key)) = &t.client {
            let hint = "save the client certificate the upstream trusts, and its key, there";
            out.push(req("upstream_tls.cert".into(), cert, false, hint));
            out.push(req("upstream_tls.key".into(), key, true, hint));
        }
    }
    for (i, p) in config.assertion.retired_keys.iter().enumerate() {
        out.push(req(
            format!("assertion.retired_keys[{i}]"),
            p,
            false,
            "keep the retired public key file, or remove it from the list",
        ));
    }
    for (i, t) in config.stepup.token_issuers.iter().enumerate() {
        out.push(req(
            format!("stepup.token_issuers[{i}].jwks"),
            &t.jwks,
            false,
            "save the issuer's JWKS there",
        ));
    }
    if let Some(o) = &config.stepup.oidc {
        let (at, file) = match &o.client_auth {
            crate::config::OidcClientAuth::SecretFile(f) => ("stepup.oidc.client_secret_file", f),
            crate::config::OidcClientAuth::PrivateKeyJwt(f) => ("stepup.oidc.private_key_jwt.key", f),
        };
        out.push(req(
            at.into(),
            file,
            true,
            "save the client credential the OpenID Provider issued for this gateway there",
        ));
        if let Some(ca) = &o.ca {
            out.push(req(
                "stepup.oidc.ca".into(),
                ca,
                false,
                "save the IdP's CA certificate there",
            ));
        }
    }
    if let Some(j) = &config.identity.jwt {
        out.push(req(
            "identity.jwt.jwks".into(),
            &j.jwks,
            false,
            "save the issuer's JWKS there",
        ));
    }
    // Created by the gateway on first start, private; refused if widened.
    for (at, p) in [
        ("session.key_file", &config.session.key_file),
        ("stepup.users", &config.stepup.users),
    ] {
        out.push(Named {
            at: at.into(),
            file: p.clone(),
            secret: true,
            required: false,
            hint: "",
        });
    }
    out
}

/// Checks every file `config` (loaded from `path`) names; the first
/// problem is located at its key in the file.
pub fn check_files(path: &Path, config: &Config) -> Result<(), ConfigError> {
    for n in named(config) {
        let problem = match std::fs::metadata(&n.file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !n.required {
                    continue;
                }
                format!("{}: {} does not exist; {}", n.at, n.file.display(), n.hint)
            }
            Err(e) => format!("{}: {}: {e}", n.at, n.file.display()),
            Ok(m) if !m.is_file() => format!("{}: {} is not a regular file", n.at, n.file.display()),
            Ok(m) => match widened(&m) {
                Some(mode) if n.secret => format!(
                    "{}: {} is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
                    n.at,
                    n.file.display(),
                    n.file.display()
                ),
                _ => continue,
            },
        };
        return Err(located(path, &n.at, problem));
    }
    Ok(())
}

/// `message` about the key `at` (for example `tls.cert`) of the config file
/// at `path`, located at that key.
pub fn located(path: &Path, at: &str, message: String) -> ConfigError {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (line, col) = Locations::index(&text).find(at);
    ConfigError {
        file: path.display().to_string(),
        line,
        col,
        message,
    }
}

/// Which key of `config` names `file`, among the TLS files.
pub fn tls_key_naming(config: &Config, file: &str) -> Option<&'static str> {
    let same = |p: &Path| p.display().to_string() == file;
    let t = &config.tls;
    if same(&t.cert) {
        return Some("tls.cert");
    }
    if same(&t.key) {
        return Some("tls.key");
    }
    if t.client_ca.as_deref().is_some_and(same) {
        return Some("tls.client_ca");
    }
    let u = config.upstream.tls.as_ref()?;
    if same(&u.ca) {
        return Some("upstream_tls.ca");
    }
    match &u.client {
        Some((cert, _)) if same(cert) => Some("upstream_tls.cert"),
        Some((_, key)) if same(key) => Some("upstream_tls.key"),
        _ => None,
    }
}

#[cfg(unix)]
fn widened(m: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = m.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn widened(_: &std::fs::Metadata) -> Option<u32> {
    None
}
