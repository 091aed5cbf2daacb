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
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

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
    /// Registered passkeys / security keys, as webauthn-rs serialises them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webauthn: Vec<serde_json::Value>,
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
}

struct Cached {
    mtime: Option<SystemTime>,
    file: Arc<UserFile>,
}

pub struct UserStore {
    path: PathBuf,
    cache: RwLock<Cached>,
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
        let mut file = self.read()?;
        let out = f(&mut file);
        let text = serde_yaml::to_string(&file).map_err(|e| UserError::Parse {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        let body = format!("# stepgate user store: written by `stepgate enroll`. Keep it private (mode 0600).\n{text}");
        crate::keys::write_private(&self.path, body.as_bytes())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_then_snapshot_round_trips_and_hides_secrets_in_debug() {
        let dir = std::env::temp_dir().join(format!("stepgate-users-{}", crate::ids::random_token()));
        let store = UserStore::open(&dir.join("users.yaml"));
        assert!(store.snapshot().expect("empty").users.is_empty());
        store
            .update(|f| {
                f.users.insert(
                    "alice".into(),
                    UserRecord {
                        groups: vec!["admins".into()],
                        totp: Some(TotpRecord {
                            secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into(),
                            confirmed: false,
                            created: 1,
                            confirmed_step: 0,
                        }),
                        webauthn: vec![],
                    },
                );
            })
            .expect("write");
        let snap = store.snapshot().expect("read");
        assert_eq!(snap.groups("alice"), ["admins".to_owned()]);
        assert_eq!(snap.totp_secret("alice"), None, "unconfirmed secrets are unusable");
        let dbg = format!("{:?}", snap.users["alice"]);
        assert!(!dbg.contains("JBSWY3DP"), "{dbg}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
