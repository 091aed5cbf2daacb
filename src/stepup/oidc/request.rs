//! The authorization request of one step-up flow (OIDC Core §3.1.2.1 with
//! PKCE, RFC 7636). Everything random is drawn by the caller and passed in,
//! so the parameters are a pure function of the hold and the flow.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The secrets of one flow, kept server-side until the callback.
#[derive(Clone, PartialEq, Eq)]
pub struct Flow {
    /// Sent as `state`; the key the callback finds the flow by.
    pub state: String,
    /// PKCE `code_verifier` (43 base64url characters from 32 random bytes).
    pub verifier: String,
    /// Bound to the hold id and `txn` (see [`nonce_for`]).
    pub nonce: String,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow").finish_non_exhaustive()
    }
}

impl Flow {
    /// A flow for `hold` and `txn` from 64 random bytes (32 for `state`,
    /// 32 for the PKCE verifier).
    pub fn new(hold: &str, txn: &str, random: &[u8; 64]) -> Flow {
        let state = URL_SAFE_NO_PAD.encode(&random[..32]);
        let verifier = URL_SAFE_NO_PAD.encode(&random[32..]);
        let nonce = nonce_for(hold, txn, &state);
        Flow { state, verifier, nonce }
    }

    /// PKCE `code_challenge` for method S256.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }
}

/// The `nonce`: a hash over the hold id, its `txn` and the flow's `state`.
/// An ID token minted for another hold, another request or another flow
/// carries another nonce, and the state is secret, so nobody can
/// precompute it.
pub fn nonce_for(hold: &str, txn: &str, state: &str) -> String {
    let mut h = Sha256::new();
    for part in ["stepgate-oidc-nonce", hold, txn, state] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// What the route asks of the OP.
#[derive(Debug, Clone)]
pub struct AuthRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    /// The route's `require.acr`, in preference order.
    pub acr: &'a [String],
    pub max_age_secs: u64,
}

impl AuthRequest<'_> {
    /// The parameters of the authorization request (or of the PAR body):
    /// a fresh login (`prompt=login`, `max_age`) at one of the route's
    /// `acr` values, asked for both as `acr_values` and as an essential
    /// `acr` claim so an OP that honours either enforces it.
    pub fn params(&self, flow: &Flow) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("response_type", "code".to_owned()),
            ("client_id", self.client_id.to_owned()),
            ("redirect_uri", self.redirect_uri.to_owned()),
            ("scope", self.scopes.join(" ")),
            ("state", flow.state.clone()),
            ("nonce", flow.nonce.clone()),
            ("code_challenge", flow.challenge()),
            ("code_challenge_method", "S256".to_owned()),
            ("prompt", "login".to_owned()),
            ("max_age", self.max_age_secs.to_string()),
        ];
        if !self.acr.is_empty() {
            p.push(("acr_values", self.acr.join(" ")));
            let claims = serde_json::json!({
                "id_token": {
                    "acr": { "essential": true, "values": self.acr },
                    "auth_time": { "essential": true },
                }
            });
            p.push(("claims", claims.to_string()));
        }
        p
    }
}

/// `application/x-www-form-urlencoded` (also the query of a redirect).
pub fn encode(params: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        let flow = Flow {
            state: "s".into(),
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
            nonce: "n".into(),
        };
        assert_eq!(flow.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn nonce_binds_hold_txn_and_state() {
        let a = nonce_for("h1", "t1", "s1");
        assert_eq!(a, nonce_for("h1", "t1", "s1"));
        for other in [
            nonce_for("h2", "t1", "s1"),
            nonce_for("h1", "t2", "s1"),
            nonce_for("h1", "t1", "s2"),
        ] {
            assert_ne!(a, other);
        }
        // Length-prefixed parts: moving a character across a boundary changes it.
        assert_ne!(nonce_for("h1", "t1", "s1"), nonce_for("h1t", "1", "s1"));
    }

    #[test]
    fn params_ask_for_a_fresh_login_at_the_route_acr() {
        let flow = Flow::new("h", "t", &[7u8; 64]);
        let scopes = vec!["openid".to_owned()];
        let acr = vec!["phr".to_owned(), "urn:x:mfa".to_owned()];
        let req = AuthRequest {
            client_id: "gw",
            redirect_uri: "https://gw/.stepup/oidc/callback",
            scopes: &scopes,
            acr: &acr,
            max_age_secs: 300,
        };
        let p = req.params(&flow);
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("prompt").as_deref(), Some("login"));
        assert_eq!(get("max_age").as_deref(), Some("300"));
        assert_eq!(get("acr_values").as_deref(), Some("phr urn:x:mfa"));
        assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
        assert_eq!(get("nonce"), Some(nonce_for("h", "t", &flow.state)));
        let claims: serde_json::Value = serde_json::from_str(&get("claims").expect("claims")).expect("json");
        assert_eq!(claims["id_token"]["acr"]["essential"], true);
        assert_eq!(claims["id_token"]["acr"]["values"][1], "urn:x:mfa");
        assert!(!encode(&p).contains(' '));
    }
}
