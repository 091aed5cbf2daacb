//! The user store (`stepup.users`): each user's groups, TOTP secret and
//! WebAuthn credentials, in one YAML file that only the gateway's user can
//! read. Writes go to a temporary file that is renamed over the old one, so
//! a reader never sees half a file. Readers pick up changes made by
//! `stepgate enroll` while the gateway runs (the file's mtime is checked).
//!
//! ```yaml
//! users:
//!   alice:
//!     groups: [admins]
//!     totp: { secret: JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP, confirmed: true, created: 1764000000 }
//!     webauthn_user_id: 7b0c6a52-3f8e-4a51-9d1f-0c1e2f3a4b5c   # the user handle of all her passkeys
//!     webauthn:                                  # registered passkeys / security keys
//!       - label: laptop
//!         created: 1764000000
//!         last_used: 1764003600
//!         passkey: { cred: { cred_id: ..., cred: ..., counter: 12, ... } }  # webauthn-rs's form
//!     webauthn_enroll:                           # a pending `stepgate enroll webauthn` link
//!       token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//!       expires: 1764000900
//! ```
//!
//! The passkey's counter and backup state change with each use, so a
//! successful WebAuthn step-up writes the file. An enrollment link is kept
//! only as the SHA-256 of its token.

use crate::stepup::webauthn::{CredentialID, Passkey, Uuid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid user store: {message}")]
    Parse { path: String, message: String },
    #[error(transparent)]
    Write(#[from] crate::keys::KeyError),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserFile {
    #[serde(default)]
    pub users: BTreeMap<String, UserRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserRecord {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpRecord>,
    /// Registered passkeys and security keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webauthn: Vec<PasskeyRecord>,
    /// The WebAuthn user handle, made at the first enrollment and kept, so
    /// an authenticator sees every passkey of this user as one account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webauthn_user_id: Option<Uuid>,
    /// A pending enrollment link (one at a time: a new one replaces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webauthn_enroll: Option<EnrollToken>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyRecord {
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_used: u64,
    /// webauthn-rs's credential: public key, id, counter, backup flags.
    pub passkey: Passkey,
}

/// What is kept of an enrollment link: the hash of its token and when it
/// stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollToken {
    /// Lower-case hex SHA-256 of the token's UTF-8 bytes.
    pub token_sha256: String,
    pub expires: u64,
}

impl EnrollToken {
    /// The stored form of a new link whose token is `token`.
    pub fn new(token: &str, expires: u64) -> Self {
        EnrollToken {
            token_sha256: Self::digest(token),
            expires,
        }
    }

    /// Lower-case hex SHA-256 of a token, the only form that is kept.
    pub fn digest(token: &str) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `token_sha256` (hex) is this link's and it is still valid.
    pub fn admits(&self, token_sha256: &str, now: u64) -> bool {
        let same: bool = self.token_sha256.as_bytes().ct_eq(token_sha256.as_bytes()).into();
        same && now < self.expires
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct TotpRecord {
    /// Base32 (RFC 4648, no padding), as authenticator apps expect it.
    pub secret: String,
    /// Only a credential confirmed with a first valid code is usable.
    #[serde(default)]
    pub confirmed: bool,
    #[serde(default)]
    pub created: u64,
    /// The time step of the code that confirmed enrollment: that code has
    /// been seen, so it must not also work as a step-up.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub confirmed_step: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord")
            .field("confirmed", &self.confirmed)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl UserFile {
    /// The step of the code that confirmed the user's TOTP (0 if none).
    pub fn totp_confirmed_step(&self, user: &str) -> u64 {
        self.users
            .get(user)
            .and_then(|u| u.totp.as_ref())
            .map(|t| t.confirmed_step)
            .unwrap_or(0)
    }

    /// The user's confirmed TOTP secret, if any.
    pub fn totp_secret(&self, user: &str) -> Option<&str> {
        let t = self.users.get(user)?.totp.as_ref()?;
        t.confirmed.then_some(t.secret.as_str())
    }

    pub fn groups(&self, user: &str) -> &[String] {
        self.users.get(user).map(|u| u.groups.as_slice()).unwrap_or(&[])
    }

    /// The user's registered passkeys.
    pub fn passkeys(&self, user: &str) -> Vec<Passkey> {
        self.users
            .get(user)
            .map(|u| u.webauthn.iter().map(|r| r.passkey.clone()).collect())
            .unwrap_or_default()
    }

    /// Who registered the credential `id`, if anyone: one credential must
    /// never belong to two users.
    pub fn passkey_owner(&self, id: &CredentialID) -> Option<&str> {
        self.users
            .iter()
            .find(|(_, u)| u.webauthn.iter().any(|r| r.passkey.cred_id() == id))
            .map(|(name, _)| name.as_str())
    }

    /// The user a still-valid enrollment link belongs to. Every user is
    /// compared, in constant time, so timing reveals nothing about tokens.
    pub fn enrolling(&self, token_sha256: &str, now: u64) -> Option<(&str, u64)> {
        let mut found = None;
        for (name, u) in &self.users {
            if let Some(t) = &u.webauthn_enroll {
                if t.admits(token_sha256, now) {
                    found = Some((name.as_str(), t.expires));
                }
            }
        }
        found
    }
}

struct Cached {
    mtime: Option<SystemTime>,
    file: Arc<UserFile>,
}

pub struct UserStore {
    path: PathBuf,
    cache: RwLock<Cached>,
    /// One read-modify-write at a time within this process.
    writer: Mutex<()>,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl UserStore {
    pub fn open(path: &Path) -> Self {
        UserStore {
            path: path.to_owned(),
            cache: RwLock::new(Cached {
                mtime: None,
                file: Arc::new(UserFile::default()),
            }),
            writer: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current contents; re-read only when the file changed. A missing
    /// file is an empty store.
    pub fn snapshot(&self) -> Result<Arc<UserFile>, UserError> {
        let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if let Ok(c) = self.cache.read() {
            if c.mtime == mtime && mtime.is_some() {
                return Ok(c.file.clone());
            }
        }
        let file = Arc::new(self.read()?);
        if let Ok(mut c) = self.cache.write() {
            *c = Cached {
                mtime,
                file: file.clone(),
            };
        }
        Ok(file)
    }

    fn read(&self) -> Result<UserFile, UserError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_yaml::from_str(&text).map_err(|e| UserError::Parse {
                path: self.path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UserFile::default()),
            Err(source) => Err(UserError::Io {
                path: self.path.display().to_string(),
                source,
            }),
        }
    }

    /// Read-modify-write of the whole file (enrollment is rare; the file
    /// is small).
    pub fn update<T>(&self, f: impl FnOnce(&mut UserFile) -> T) -> Result<T, UserError> {
        self.try_update(|file| Ok::<T, std::convert::Infallible>(f(file)))
            .map(|r| match r {
                Ok(v) => v,
                Err(never) => match never {},
            })
    }

    /// Like [`update`](Self::update), but nothing is written when `f`
    /// refuses. Updates in this process are serialised, so a check made in
    /// `f` (a sign count, a one-time token) holds when the file is written.
    pub fn try_update<T, E>(&self, f: impl FnOnce(&mut UserFile) -> Result<T, E>) -> Result<Result<T, E>, UserError> {
        let _one = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut file = self.read()?;
        let out = match f(&mut file) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let text = serde_yaml::to_string(&file).map_err(|e| UserError::Parse {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        let body = format!("# stepgate user store: written by `stepgate enroll`. Keep it private (mode 0600).\n{text}");
        crate::keys::write_private(&self.path, body.as_bytes())?;
        // Two writes within the file system's timestamp granularity share
        // an mtime; the cache takes what was written rather than trusting
        // the next mtime check to notice.
        let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if let Ok(mut c) = self.cache.write() {
            *c = Cached {
                mtime,
                file: Arc::new(file),
            };
        }
        Ok(Ok(out))
    }
}

#[cfg(test)]
mod tests;
