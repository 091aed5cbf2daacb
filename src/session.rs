//! Binding to the caller's session and to the exact request (SPEC §3).
//!
//! The gateway never keeps the raw session value: `sid` is an HMAC of it
//! under a key shared by every instance, so proofs can be bound to a session
//! without the gateway becoming a store of session cookies.

use crate::config::SessionConfig;
use crate::ids::{Sid, Txn};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{KeyInit, Mac};
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

pub mod approver;
pub mod cookie;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("the request carries the session more than once with different values")]
    Ambiguous,
    #[error("the session key must be at least 32 bytes")]
    ShortKey,
}

/// The HMAC key behind `sid`. Every instance of one deployment must load
/// the same key, or a proof completed on one instance would not match the
/// session seen by another.
#[derive(Clone)]
pub struct SessionKey(Vec<u8>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub fn new(bytes: Vec<u8>) -> Result<Self, SessionError> {
        if bytes.len() < 32 {
            return Err(SessionError::ShortKey);
        }
        Ok(SessionKey(bytes))
    }

    pub fn sid(&self, value: &[u8]) -> Sid {
        Sid(URL_SAFE_NO_PAD.encode(self.sid_bytes(value)))
    }

    /// The raw 32 bytes behind [`sid`](Self::sid): a fixed-size key for
    /// maps consulted on every request, with no allocation.
    pub fn sid_bytes(&self, value: &[u8]) -> [u8; 32] {
        let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(&self.0) else {
            // HMAC accepts keys of any length; this arm is unreachable.
            return [0; 32];
        };
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// An HMAC for another `purpose` than `sid`, so a value signed for one
    /// use can never be presented as another.
    pub fn mac(&self, purpose: &str, msg: &[u8]) -> [u8; 32] {
        let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(&self.0) else {
            return [0; 32];
        };
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }
}

/// The 32 bytes behind a `sid` (the key of the session tracker), or `None`
/// for a string that is not one.
pub fn sid_key(sid: &Sid) -> Option<[u8; 32]> {
    URL_SAFE_NO_PAD.decode(sid.as_str()).ok()?.try_into().ok()
}

/// Finds the raw session value the configured way: cookie first, then the
/// header, then the client certificate. The cookie is read as the upstream
/// frameworks read it ([`cookie::read`]), so a re-spelled cookie is the
/// same session; a cookie named twice, or a header that appears twice with
/// different values, is refused: the upstream might read the other copy,
/// so the proof would be bound to a session the action does not run under.
pub fn session_value(
    cfg: &SessionConfig,
    headers: &HeaderMap,
    client_cert: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, SessionError> {
    session_value_ref(cfg, headers, client_cert).map(|v| v.map(Cow::into_owned))
}

/// [`session_value`], borrowed from the headers where it can be.
pub fn session_value_ref<'a>(
    cfg: &SessionConfig,
    headers: &'a HeaderMap,
    client_cert: Option<&[u8]>,
) -> Result<Option<Cow<'a, [u8]>>, SessionError> {
    if let Some(name) = &cfg.cookie {
        if let Some(v) = cookie::read(headers, name)? {
            return Ok(Some(v));
        }
    }
    if let Some(name) = &cfg.header {
        let mut found: Option<&[u8]> = None;
        for v in headers
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty())
        {
            match found {
                Some(f) if f != v => return Err(SessionError::Ambiguous),
                Some(_) => {}
                None => found = Some(v),
            }
        }
        if let Some(v) = found {
            return Ok(Some(Cow::Borrowed(v)));
        }
    }
    if cfg.mtls {
        if let Some(der) = client_cert {
            return Ok(Some(Cow::Owned(Sha256::digest(der).to_vec())));
        }
    }
    Ok(None)
}

/// The transaction digest, exactly as SPEC §3 fixes it so an upstream can
/// recompute it from what it received.
pub fn txn(method: &Method, host: &str, path_and_query: &str, body: &[u8]) -> Txn {
    let body_hash = URL_SAFE_NO_PAD.encode(Sha256::digest(body));
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b"\n");
    h.update(host.to_ascii_lowercase().as_bytes());
    h.update(b"\n");
    h.update(path_and_query.as_bytes());
    h.update(b"\n");
    h.update(body_hash.as_bytes());
    Txn(URL_SAFE_NO_PAD.encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;
    use std::path::PathBuf;

    fn cfg(cookie: Option<&str>, header: Option<&str>) -> SessionConfig {
        SessionConfig {
            cookie: cookie.map(str::to_owned),
            header: header.map(|h| h.parse().expect("header name")),
            mtls: false,
            key_file: PathBuf::new(),
        }
    }

    #[test]
    fn cookie_is_preferred_and_named_once() {
        let c = cfg(Some("SID"), Some("authorization"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; SID=abc; b=2".parse().expect("hv"));
        h.append(header::AUTHORIZATION, "Bearer x".parse().expect("hv"));
        assert_eq!(session_value(&c, &h, None), Ok(Some(b"abc".to_vec())));
        h.append(header::COOKIE, "SID=abc".parse().expect("hv"));
        assert_eq!(session_value(&c, &h, None), Err(SessionError::Ambiguous));
    }

    #[test]
    fn header_copies_must_agree() {
        let c = cfg(None, Some("authorization"));
        let mut h = HeaderMap::new();
        h.append(header::AUTHORIZATION, "Bearer x".parse().expect("hv"));
        h.append(header::AUTHORIZATION, "Bearer x".parse().expect("hv"));
        assert_eq!(session_value(&c, &h, None), Ok(Some(b"Bearer x".to_vec())));
        h.append(header::AUTHORIZATION, "Bearer y".parse().expect("hv"));
        assert_eq!(session_value(&c, &h, None), Err(SessionError::Ambiguous));
    }

    #[test]
    fn header_is_the_fallback_and_names_are_exact() {
        let c = cfg(Some("SID"), Some("authorization"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "XSID=1; SIDX=2".parse().expect("hv"));
        assert_eq!(session_value(&c, &h, None), Ok(None));
        h.append(header::AUTHORIZATION, "Bearer t".parse().expect("hv"));
        assert_eq!(session_value(&c, &h, None), Ok(Some(b"Bearer t".to_vec())));
    }

    #[test]
    fn sid_depends_on_key_and_value() {
        let k1 = SessionKey::new(vec![1; 32]).expect("key");
        let k2 = SessionKey::new(vec![2; 32]).expect("key");
        assert_eq!(k1.sid(b"v"), k1.sid(b"v"));
        assert_ne!(k1.sid(b"v"), k1.sid(b"w"));
        assert_ne!(k1.sid(b"v"), k2.sid(b"v"));
        assert!(SessionKey::new(vec![0; 16]).is_err());
    }

    #[test]
    fn txn_matches_an_independent_computation() {
        // Expected value computed with Python:
        // b=base64url(sha256(b'{"a":1}')); base64url(sha256(b"POST\nexample.com:8443\n/x?y=1\n"+b))
        let t = txn(&Method::POST, "Example.COM:8443", "/x?y=1", br#"{"a":1}"#);
        assert_eq!(t.as_str(), EXPECTED_TXN);
    }

    const EXPECTED_TXN: &str = "mQ6C428KJodDcGn9sNDWwpIUMM3yfeDPe705BCjsAws";
}
