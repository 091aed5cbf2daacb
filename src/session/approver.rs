//! The approver's sign-in cookie: who signed in and until when, signed
//! with the gateway's session key. It carries no secret and grants no
//! decision by itself: every approval or denial taken with it also needs a
//! fresh proof (a code or a passkey), so a stolen cookie only shows the
//! queue.

use super::SessionKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

/// `__Host-`: the browser accepts it only with `Secure`, `Path=/` and no
/// `Domain`, so no sibling host can set or overwrite it.
pub const COOKIE: &str = "__Host-stepgate-approver";

/// How long a sign-in lasts.
pub const TTL_SECS: u64 = 30 * 60;

const PURPOSE: &str = "stepgate approver cookie v1";

/// The cookie value for `name`, valid until `now + TTL_SECS`.
pub fn issue(key: &SessionKey, name: &str, now: u64) -> String {
    // The random id makes every sign-in's cookie unique, so a logout can
    // revoke exactly this one on the server.
    let body = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(name.as_bytes()),
        now.saturating_add(TTL_SECS),
        crate::ids::random_token()
    );
    let mac = key.mac(PURPOSE, body.as_bytes());
    format!("v1.{body}.{}", URL_SAFE_NO_PAD.encode(mac))
}

/// The approver's name if `value` is a cookie this key signed that has not
/// expired at `now`.
pub fn verify(key: &SessionKey, value: &str, now: u64) -> Option<String> {
    let rest = value.strip_prefix("v1.")?;
    let (body, mac) = rest.rsplit_once('.')?;
    let given = URL_SAFE_NO_PAD.decode(mac).ok()?;
    let expected = key.mac(PURPOSE, body.as_bytes());
    if !bool::from(expected.as_slice().ct_eq(given.as_slice())) {
        return None;
    }
    let (name, rest) = body.split_once('.')?;
    let exp: u64 = rest.split('.').next()?.parse().ok()?;
    if now >= exp {
        return None;
    }
    String::from_utf8(URL_SAFE_NO_PAD.decode(name).ok()?).ok()
}

/// When a cookie `verify` accepted stops being valid anyway.
pub fn expiry(value: &str) -> Option<u64> {
    value.split('.').nth(2)?.parse().ok()
}

/// `Set-Cookie` for a fresh sign-in.
pub fn set_cookie(value: &str) -> String {
    format!("{COOKIE}={value}; Path=/; Max-Age={TTL_SECS}; Secure; HttpOnly; SameSite=Strict")
}

/// `Set-Cookie` that ends the sign-in.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SessionKey {
        SessionKey::new(vec![b; 32]).expect("key")
    }

    #[test]
    fn round_trips_until_expiry() {
        let v = issue(&key(1), "bob", 1000);
        assert_eq!(verify(&key(1), &v, 1000).as_deref(), Some("bob"));
        assert_eq!(verify(&key(1), &v, 1000 + TTL_SECS - 1).as_deref(), Some("bob"));
        assert_eq!(verify(&key(1), &v, 1000 + TTL_SECS), None, "expired");
    }

    #[test]
    fn another_key_a_changed_name_or_expiry_is_refused() {
        let v = issue(&key(1), "bob", 1000);
        assert_eq!(verify(&key(2), &v, 1000), None);
        let alice = URL_SAFE_NO_PAD.encode("alice");
        let bob = URL_SAFE_NO_PAD.encode("bob");
        assert_eq!(verify(&key(1), &v.replace(&bob, &alice), 1000), None);
        let later = v.replace(&format!(".{}.", 1000 + TTL_SECS), &format!(".{}.", 9_999_999_999u64));
        assert_ne!(later, v);
        assert_eq!(verify(&key(1), &later, 1000 + TTL_SECS), None);
        for junk in ["", "v1.", "v1..", "v2.Ym9i.99999999999.x", "v1.Ym9i.x.y", "v1.%%%.1.2"] {
            assert_eq!(verify(&key(1), junk, 0), None, "{junk}");
        }
    }

    #[test]
    fn the_sid_mac_is_not_a_cookie_mac() {
        let k = key(1);
        assert_ne!(k.mac(PURPOSE, b"x").to_vec(), k.mac("other", b"x").to_vec());
    }
}
