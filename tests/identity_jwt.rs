//! Who stepped up, for people (SPEC §3 Identity): session identity from a
//! verified JWT (ES256 bearer, RS256 cookie) that a step-up by anyone else
//! cannot satisfy, while an unverifiable JWT leaves the identity unknown;
//! and a JWT identity that cannot approve its own request.
#![allow(clippy::unwrap_used)]

mod common;
mod identity_kit;
mod stepup_kit;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use identity_kit::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use stepup_kit::{enroll, now_secs, pyotp_now};
// ------------------------------------------------------------- JWT identity

/// The identity provider that signs the legacy app's session JWTs.
struct Idp {
    key: p256::ecdsa::SigningKey,
    kid: String,
    jwks_path: PathBuf,
}

impl Idp {
    fn new() -> Idp {
        let (key, _) = stepgate::assertion::generate_signing_key();
        let jwk = stepgate::jose::jwk::public_jwk(key.verifying_key());
        let kid = jwk["kid"].as_str().expect("kid").to_owned();
        let jwks_path = temp_dir("idp").join("idp.json");
        std::fs::write(&jwks_path, json!({"keys": [jwk]}).to_string()).expect("write");
        Idp { key, kid, jwks_path }
    }

    fn claims(sub: &str) -> Value {
        let now = now_secs();
        json!({"iss": "https://login.test", "aud": "legacy", "sub": sub, "iat": now, "exp": now + 600})
    }

    fn jwt(&self, claims: Value) -> String {
        stepgate::jose::jws::mint_es256(&self.key, &self.kid, claims)
    }
}

/// The `identity:` value for session JWTs from the test IdP.
fn jwt_identity(jwks: &Path, cookie: Option<&str>) -> String {
    let cookie = cookie.map(|c| format!(", cookie: {c}")).unwrap_or_default();
    format!(
        "{{ jwt: {{ issuer: 'https://login.test', audience: legacy, jwks: '{}'{cookie} }} }}",
        jwks.display()
    )
}

fn identity_config(jwks: &Path, cookie: Option<&str>) -> String {
    format!("identity: {}", jwt_identity(jwks, cookie))
}

const PERSON_ROUTE: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)' }
    require: { methods: [totp, token], max_age: 5m }
    hold: { mode: challenge, timeout: 1m }
";

/// Holds `POST /admin/users/carol` for the session in `headers`.
async fn challenge(gw: &Gateway, headers: &[(&str, &str)]) -> Value {
    let resp = raw(gw.addr, &gw.pki, &request("POST", "/admin/users/carol", headers, b"")).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    let ch = resp.json();
    assert_eq!(ch["error"], "step_up_required");
    ch
}

async fn complete(gw: &Gateway, headers: &[(&str, &str)], ch: &Value, proof: Value) -> RawResponse {
    let hold = ch["hold_id"].as_str().expect("hold id");
    let mut headers = headers.to_vec();
    headers.push(("content-type", "application/json"));
    let body = proof.to_string();
    raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            &format!("/.stepup/holds/{hold}/complete"),
            &headers,
            body.as_bytes(),
        ),
    )
    .await
}

fn token_proof(gw: &Gateway, ch: &Value, sub: &str) -> Value {
    let token = gw.token(json!({"sid": ch["sid"], "txn": ch["txn"], "sub": sub}));
    json!({"method": "token", "token": token})
}

/// On a hold whose session names `owner`, a token proof for `other` is
/// refused and releases nothing; the owner's own proof then releases the
/// request once, asserted as `owner`.
async fn only_the_owner_completes(
    up: &Upstream,
    gw: &Gateway,
    session: &[(&str, &str)],
    ch: &Value,
    owner: &str,
    other: &str,
) {
    let resp = complete(gw, session, ch, token_proof(gw, ch, other)).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.requests().len(), 0);

    let resp = complete(gw, session, ch, token_proof(gw, ch, owner)).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], owner);
}

#[tokio::test]
async fn es256_bearer_identity_refuses_a_totp_step_up_by_anyone_else() {
    let up = Upstream::start().await;
    let idp = Idp::new();
    let gw = Gateway::start(up.addr, PERSON_ROUTE, &identity_config(&idp.jwks_path, None)).await;
    let bob = enroll(&gw.dir, "bob");
    let alice = enroll(&gw.dir, "alice");

    let bob_code = pyotp_now(&bob);
    let bearer = format!("Bearer {}", idp.jwt(Idp::claims("alice")));
    let session = [("authorization", bearer.as_str())];
    let ch = challenge(&gw, &session).await;

    let by_bob = json!({"method": "totp", "user": "bob", "code": bob_code});
    let resp = complete(&gw, &session, &ch, by_bob.clone()).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert!(resp.json()["attempts_left"].is_number());
    assert_eq!(up.requests().len(), 0, "bob's code does not release alice's request");

    let by_alice = json!({"method": "totp", "user": "alice", "code": pyotp_now(&alice)});
    let resp = complete(&gw, &session, &ch, by_alice).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["amr"], json!(["otp"]));
    assert_eq!(claims["txn"], ch["txn"]);

    // With an identity source configured, a session that carries no
    // identity is refused outright (SPEC §3), whoever would step up.
    let anonymous = [("cookie", "SESSIONID=shared-admin-account")];
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/admin/users/carol", &anonymous, b""),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "no_identity");
    drop(by_bob);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn es256_bearer_identity_also_binds_token_proofs() {
    let up = Upstream::start().await;
    let idp = Idp::new();
    let gw = Gateway::start(up.addr, PERSON_ROUTE, &identity_config(&idp.jwks_path, None)).await;
    let bearer = format!("Bearer {}", idp.jwt(Idp::claims("alice")));
    let session = [("authorization", bearer.as_str())];
    let ch = challenge(&gw, &session).await;

    only_the_owner_completes(&up, &gw, &session, &ch, "alice", "bob").await;
}

#[tokio::test]
async fn an_unverifiable_identity_jwt_is_no_identity() {
    let up = Upstream::start().await;
    let idp = Idp::new();
    let gw = Gateway::start(up.addr, PERSON_ROUTE, &identity_config(&idp.jwks_path, None)).await;
    let impostor = Idp::new();
    let now = now_secs();

    let mut expired = Idp::claims("alice");
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut wrong_issuer = Idp::claims("alice");
    wrong_issuer["iss"] = json!("https://elsewhere.test");
    let mut wrong_audience = Idp::claims("alice");
    wrong_audience["aud"] = json!("another-app");
    let cases = [
        ("expired", idp.jwt(expired)),
        // The configured kid, another key's signature.
        (
            "wrongly signed",
            stepgate::jose::jws::mint_es256(&impostor.key, &idp.kid, Idp::claims("alice")),
        ),
        ("wrong issuer", idp.jwt(wrong_issuer)),
        ("wrong audience", idp.jwt(wrong_audience)),
    ];
    for (case, jwt) in &cases {
        let bearer = format!("Bearer {jwt}");
        let session = [("authorization", bearer.as_str())];
        // An identity source that yields nothing is refused, never read as
        // "unknown" (which would let anyone step up on the session).
        let resp = raw(gw.addr, &gw.pki, &request("POST", "/admin/users/carol", &session, b"")).await;
        assert_eq!(resp.status, 401, "{case}: {}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.error_code(), "no_identity", "{case}");
    }
    assert!(up.requests().is_empty());

    // Control: the same gateway does refuse bob for a verified alice.
    let bearer = format!("Bearer {}", idp.jwt(Idp::claims("alice")));
    let session = [("authorization", bearer.as_str())];
    let ch = challenge(&gw, &session).await;
    let resp = complete(&gw, &session, &ch, token_proof(&gw, &ch, "bob")).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error_code(), "invalid_proof");
    assert!(up.requests().is_empty());
}

// ------------------------------------------------------------ RS256 cookie

/// An RSA identity provider generated in-test with aws-lc-rs.
struct RsaIdp {
    key: aws_lc_rs::rsa::KeyPair,
    jwks_path: PathBuf,
}

/// Splits one DER TLV off the front of `der`: (tag, contents, rest).
fn der_tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (der[0], der[1]);
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        let len = der[2..2 + n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    (tag, &der[header..header + len], &der[header + len..])
}

impl RsaIdp {
    fn new() -> RsaIdp {
        use aws_lc_rs::signature::KeyPair as _;
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa key");
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        let (tag, seq, _) = der_tlv(key.public_key().as_ref());
        assert_eq!(tag, 0x30);
        let (tag_n, n, rest) = der_tlv(seq);
        let (tag_e, e, _) = der_tlv(rest);
        assert_eq!((tag_n, tag_e), (0x02, 0x02));
        // DER keeps a sign byte on a modulus with its top bit set; JWK does not.
        let strip = |b: &[u8]| b.iter().position(|x| *x != 0).map_or(b.to_vec(), |i| b[i..].to_vec());
        let jwk = json!({"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256",
                         "n": URL_SAFE_NO_PAD.encode(strip(n)), "e": URL_SAFE_NO_PAD.encode(strip(e))});
        let jwks_path = temp_dir("idp-rsa").join("idp.json");
        std::fs::write(&jwks_path, json!({"keys": [jwk]}).to_string()).expect("write");
        RsaIdp { key, jwks_path }
    }

    fn jwt(&self, claims: Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa1"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("rsa sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

#[tokio::test]
async fn rs256_cookie_identity_refuses_another_prover_and_names_the_owner() {
    let up = Upstream::start().await;
    let idp = RsaIdp::new();
    let config = identity_config(&idp.jwks_path, Some("id_token"));
    let gw = Gateway::start(up.addr, PERSON_ROUTE, &config).await;
    // The legacy session cookie stays opaque; the identity rides next to it.
    let cookie = format!(
        "SESSIONID=opaque-legacy-session; id_token={}",
        idp.jwt(Idp::claims("alice"))
    );
    let session = [("cookie", cookie.as_str())];
    let ch = challenge(&gw, &session).await;
    assert_eq!(ch["sid"], gw.sid("opaque-legacy-session"));

    only_the_owner_completes(&up, &gw, &session, &ch, "alice", "bob").await;
}

// ------------------------------------------------ JWT identity + approvals

#[tokio::test]
async fn jwt_identity_is_the_requester_cannot_self_approve_and_is_the_assertion_sub() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let idp = Idp::new();
    let routes = "
  - name: payout
    action: money.payout
    match: { methods: [POST], path: /api/payouts }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 30s }
";
    let identity = jwt_identity(&idp.jwks_path, Some("id_token"));
    let gw = start_gateway(up.addr, &ca, "{ cookie: SESSIONID }", &identity, routes).await;
    // Carol is a treasury approver who also uses the app herself.
    let cookie = format!("SESSIONID=carol-session; id_token={}", idp.jwt(Idp::claims("carol")));
    let session = [("cookie", cookie.as_str())];
    let payout = request("POST", "/api/payouts", &session, br#"{"amount":70}"#);
    let resp = send(gw.addr, &gw.server, None, &payout).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    let id = resp.json()["hold_id"].as_str().expect("hold id").to_owned();

    let hold = gw.wait_for_one_hold().await;
    assert_eq!(hold["requester"], "carol");
    let decision = json!({"txn": hold["txn"]}).to_string();
    let approve = format!("/.stepup/holds/{id}/approve");
    // A different session, but the verified identity is the requester's.
    let resp = gw.approver_as(CAROL_KEY, "POST", &approve, decision.as_bytes()).await;
    assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "self_approval");

    let resp = gw.approver_as(DAVE_KEY, "POST", &approve, decision.as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.requests().len(), 0, "in challenge mode the requester collects");

    let collect = request(
        "POST",
        &format!("/.stepup/holds/{id}/complete"),
        &[("cookie", cookie.as_str()), ("content-type", "application/json")],
        b"{}",
    );
    let resp = send(gw.addr, &gw.server, None, &collect).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = assertion_claims(&gw.gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(
        claims["sub"], "carol",
        "the requester is accountable, the approver is listed"
    );
    let approvers: Vec<&str> = claims["approvers"]
        .as_array()
        .expect("approvers")
        .iter()
        .filter_map(|a| a["sub"].as_str())
        .collect();
    assert_eq!(approvers, ["dave"]);
}
