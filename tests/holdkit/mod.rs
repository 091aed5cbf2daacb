//! Shared steps of the hold tests: start a held request, prove it, read a
//! hold's status, and forge tokens that a correct verifier must refuse.
#![allow(dead_code)]

use crate::common::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::time::Duration;

pub const DELETE_TARGET: &str = "/admin/users/bob/delete";

pub use crate::common::now_secs;

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Every byte value once, so any re-encoding or truncation on the way to
/// the upstream shows up as a mismatch.
pub fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

pub fn cookie(session: &str) -> String {
    format!("SESSIONID={session}")
}

/// The SPEC §3 digest computed here from first principles, not via the
/// gateway or the harness.
pub fn txn_for(method: &str, host: &str, path_and_query: &str, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let body_hash = b64(Sha256::digest(body));
    let input = format!("{method}\n{}\n{path_and_query}\n{body_hash}", host.to_ascii_lowercase());
    b64(Sha256::digest(input.as_bytes()))
}

pub async fn send(gw: &Gateway, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    raw(gw.addr, &gw.pki, &request(method, target, headers, body)).await
}

/// A sensitive POST from `session` on a challenge-mode route; returns the
/// 401 and its JSON body, failing if the gateway did anything else.
pub async fn challenge(gw: &Gateway, session: &str, target: &str, body: &[u8]) -> (RawResponse, Value) {
    let c = cookie(session);
    let resp = send(
        gw,
        "POST",
        target,
        &[("cookie", &c), ("content-type", "application/octet-stream")],
        body,
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    let ch = resp.json();
    assert_eq!(ch["error"], "step_up_required");
    (resp, ch)
}

/// Steps up on `session` with a token proof on `target` (a challenge-mode
/// route that takes tokens), returning the `complete` answer. The token's
/// subject becomes the session's actor (SPEC §3), so the gateway knows who
/// asks on the routes that approvals alone decide.
pub async fn step_up_first(gw: &Gateway, session: &str, target: &str, body: &[u8]) -> RawResponse {
    let (_, ch) = challenge(gw, session, target, body).await;
    complete_with_token(gw, &hold_id(&ch), session, &bound_token(gw, &ch)).await
}

pub fn hold_id(ch: &Value) -> String {
    ch["hold_id"].as_str().expect("hold_id is a string").to_owned()
}

/// `POST /.stepup/holds/{id}/complete` with `body` as JSON, from whatever
/// session `headers` carry.
pub async fn complete_as(gw: &Gateway, hold: &str, headers: &[(&str, &str)], body: &Value) -> RawResponse {
    let mut h: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    let target = format!("/.stepup/holds/{hold}/complete");
    send(gw, "POST", &target, &h, body.to_string().as_bytes()).await
}

pub async fn complete_with_token(gw: &Gateway, hold: &str, session: &str, token: &str) -> RawResponse {
    let c = cookie(session);
    complete_as(gw, hold, &[("cookie", &c)], &json!({"method": "token", "token": token})).await
}

pub async fn status(gw: &Gateway, hold: &str, headers: &[(&str, &str)]) -> RawResponse {
    send(gw, "GET", &format!("/.stepup/holds/{hold}"), headers, b"").await
}

pub async fn status_state(gw: &Gateway, hold: &str, session: &str) -> String {
    let c = cookie(session);
    let resp = status(gw, hold, &[("cookie", &c)]).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    resp.json()["state"].as_str().expect("state").to_owned()
}

/// A token bound the way SPEC §5 asks: this session and this request.
pub fn bound_token(gw: &Gateway, ch: &Value) -> String {
    gw.token(json!({"sid": ch["sid"], "txn": ch["txn"]}))
}

/// A `hold`-mode client never sees its hold id; what a push notification
/// would tell the person who steps up, the test reads from the engine.
pub async fn find_open_hold(gw: &Gateway, sid: &str, txn: &str) -> String {
    try_find_open_hold(gw, sid, txn, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no open hold appeared for sid {sid} and txn {txn}"))
}

/// Like [`find_open_hold`], for holds that may legitimately have ended
/// before the test looked.
pub async fn try_find_open_hold(gw: &Gateway, sid: &str, txn: &str, patience: Duration) -> Option<String> {
    let until = tokio::time::Instant::now() + patience;
    loop {
        let found = gw
            .gw
            .holds
            .open_holds()
            .into_iter()
            .find(|(m, _)| m.sid.as_str() == sid && m.txn.as_str() == txn);
        if let Some((meta, _)) = found {
            return Some(meta.id.as_str().to_owned());
        }
        if tokio::time::Instant::now() > until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Assembles a compact JWS from parts chosen by the test, so the forged
/// ones differ from a good token in exactly one way.
pub fn compact(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string()),
        b64(claims.to_string()),
        b64(signature)
    )
}

/// The claims `Gateway::token` would use, for tokens assembled by hand.
pub fn base_claims(gw: &Gateway, ch: &Value) -> Value {
    let now = now_secs();
    json!({
        "iss": gw.issuer.iss, "aud": gw.issuer.aud, "iat": now, "exp": now + 120,
        "jti": stepgate::ids::random_token(), "sub": "alice", "sid": ch["sid"], "txn": ch["txn"],
    })
}

/// The claims of a forwarded assertion, verified against the JWKS the
/// gateway serves over TLS (not the in-process signer).
pub async fn verify_with_served_jwks(gw: &Gateway, token: &str) -> Map<String, Value> {
    let resp = send(gw, "GET", "/.stepup/jwks.json", &[], b"").await;
    assert_eq!(resp.status, 200);
    let jwks = stepgate::jose::Jwks::parse(&String::from_utf8_lossy(&resp.body)).expect("served JWKS parses");
    let decoded = stepgate::jose::jws::decode(token).expect("assertion decodes");
    assert_eq!(decoded.header.alg, "ES256");
    assert_eq!(decoded.header.typ.as_deref(), Some("stepup+jwt"));
    let key = jwks
        .get(decoded.header.kid.as_deref())
        .expect("assertion kid is in the served JWKS");
    stepgate::jose::jws::verify_es256(&decoded, key).expect("assertion verifies with the served JWKS");
    decoded.claims
}
