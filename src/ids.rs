//! Identifier newtypes. Keeping them distinct types stops a session id from
//! being passed where a transaction digest is expected.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::fmt;

/// An unguessable hold id: 128 random bits, base64url.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HoldId(String);

impl HoldId {
    pub fn random() -> Self {
        let bytes: [u8; 16] = rand::random();
        HoldId(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts only the shape `random` produces, so attacker-chosen strings
    /// never reach the store as keys.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 22 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| HoldId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HoldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `sid`: base64url(HMAC-SHA-256(session key, raw session value)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sid(pub String);

/// `txn`: the transaction digest of SPEC §3.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Txn(pub String);

macro_rules! str_newtype {
    ($t:ty) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
str_newtype!(Sid);
str_newtype!(Txn);

/// A random 128-bit token in base64url, for `jti`s and nonces.
pub fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Scratch space for the unit tests, inside the checkout (`target/tmp`),
/// because the tests never write outside it.
#[cfg(test)]
pub(crate) fn test_tmp() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    std::fs::create_dir_all(&dir).expect("target/tmp is writable");
    dir
}

/// A fresh request id: unique within the process and, by a random prefix
/// drawn at start-up, across restarts and instances; not a secret (it is
/// logged and sent upstream), so a counter does instead of the CSPRNG.
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Hex by hand: the general base64 engine costs more than the rest of
    // the request's header handling.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for word in [prefix, n] {
        for shift in (0..16).rev() {
            out.push(char::from(HEX[((word >> (shift * 4)) & 0xf) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_do_not_repeat() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a[..16], b[..16], "one process, one prefix");
    }

    #[test]
    fn hold_ids_are_distinct_and_parse_back() {
        let a = HoldId::random();
        let b = HoldId::random();
        assert_ne!(a, b);
        assert_eq!(HoldId::parse(a.as_str()), Some(a));
        assert_eq!(HoldId::parse("../../etc/passwd"), None);
        assert_eq!(HoldId::parse(""), None);
    }
}
