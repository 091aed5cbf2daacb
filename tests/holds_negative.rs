//! What must never release a hold (SPEC §4.3, §5). Each forged proof
//! differs from a good one in a single way, and after each refusal a good
//! proof releases the same hold: that control shows the refusal was about
//! the flaw and not about a broken hold.

mod common;
mod holdkit;

use common::*;
use holdkit::*;
use p256::ecdsa::signature::Signer;
use serde_json::{json, Value};

/// Opens a hold for a session of its own, presents `forge(challenge)`,
/// and expects `invalid_proof` with nothing forwarded; then releases the
/// hold with a good token.
async fn refused_then_control(label: &str, forge: impl Fn(&Gateway, &Value) -> String) {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = format!("sess-{}", label.replace(' ', "-"));
    let (_, ch) = challenge(&gw, &session, DELETE_TARGET, b"{\"confirm\":true}").await;
    let id = hold_id(&ch);

    let resp = complete_with_token(&gw, &id, &session, &forge(&gw, &ch)).await;
    assert_eq!(resp.status, 401, "{label}: {}", String::from_utf8_lossy(&resp.body));
    let err = resp.json();
    assert_eq!(err["error"], "invalid_proof", "{label}");
    assert_eq!(err["attempts_left"], json!(4), "{label}");
    assert_eq!(up.requests().len(), 0, "{label}: nothing forwarded");
    assert_eq!(status_state(&gw, &id, &session).await, "pending", "{label}");

    let resp = complete_with_token(&gw, &id, &session, &bound_token(&gw, &ch)).await;
    assert_eq!(
        resp.status,
        200,
        "{label}: control proof: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(up.requests().len(), 1, "{label}: control released once");
}

#[tokio::test]
async fn token_bound_to_another_session_is_refused() {
    refused_then_control("other session", |gw, ch| {
        gw.token(json!({"sid": gw.sid("somebody-else"), "txn": ch["txn"]}))
    })
    .await;
}

#[tokio::test]
async fn token_for_another_request_is_refused() {
    refused_then_control("other txn", |gw, ch| {
        let txn = txn_for(
            "POST",
            "localhost",
            "/admin/users/mallory/delete",
            b"{\"confirm\":true}",
        );
        gw.token(json!({"sid": ch["sid"], "txn": txn}))
    })
    .await;
}

#[tokio::test]
async fn token_without_txn_or_hold_is_refused() {
    refused_then_control("unbound", |gw, ch| gw.token(json!({"sid": ch["sid"]}))).await;
}

#[tokio::test]
async fn token_naming_another_hold_is_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-two-holds";
    let (_, mine) = challenge(&gw, session, DELETE_TARGET, b"a").await;
    let (_, other) = challenge(&gw, session, DELETE_TARGET, b"b").await;
    let id = hold_id(&mine);
    let token = gw.token(json!({"sid": mine["sid"], "hold": hold_id(&other)}));
    let resp = complete_with_token(&gw, &id, session, &token).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.requests().len(), 0);
    // The token is good for the hold it names.
    let resp = complete_with_token(&gw, &hold_id(&other), session, &token).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.requests().len(), 1);
    assert_eq!(&up.requests()[0].body[..], b"b");
}

#[tokio::test]
async fn replayed_jti_is_refused_on_a_new_hold() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-replay";
    let body = b"{\"confirm\":true}";
    let (_, first) = challenge(&gw, session, DELETE_TARGET, body).await;
    let token = bound_token(&gw, &first);
    let resp = complete_with_token(&gw, &hold_id(&first), session, &token).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.requests().len(), 1);

    // The identical request again has the same txn, so only the jti can
    // tell the second use apart.
    let (_, second) = challenge(&gw, session, DELETE_TARGET, body).await;
    assert_eq!(second["txn"], first["txn"]);
    let id = hold_id(&second);
    let resp = complete_with_token(&gw, &id, session, &token).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "invalid_proof");

    // A freshly signed token that reuses the jti is the same proof again.
    let jti = stepgate::jose::jws::decode(&token).expect("decodes").claims["jti"].clone();
    let copy = gw.token(json!({"sid": second["sid"], "hold": id, "jti": jti}));
    let resp = complete_with_token(&gw, &id, session, &copy).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.requests().len(), 1, "the replay forwarded nothing");
}

/// A token past its `exp` but inside the verifier's clock-skew leeway is
/// still accepted, so its jti must stay claimed for as long as that
/// leeway lasts, not only until `exp`: the sweeper purges the replay
/// record at `exp`, and the same token would then release a second hold.
#[tokio::test]
async fn token_accepted_within_the_expiry_leeway_cannot_be_replayed_after_a_purge() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-leeway";
    let body = b"{\"confirm\":true}";
    let (_, first) = challenge(&gw, session, DELETE_TARGET, body).await;
    let now = now_secs();
    let token = gw.token(json!({"sid": first["sid"], "txn": first["txn"], "iat": now - 60, "exp": now - 5}));
    let resp = complete_with_token(&gw, &hold_id(&first), session, &token).await;
    assert_eq!(
        resp.status,
        200,
        "within the leeway: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(up.requests().len(), 1);

    // What the gateway's once-a-second sweeper does.
    gw.gw.state.purge(now_secs());

    let (_, second) = challenge(&gw, session, DELETE_TARGET, body).await;
    let resp = complete_with_token(&gw, &hold_id(&second), session, &token).await;
    assert_eq!(resp.status, 401, "replayed: {}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.requests().len(), 1, "a replayed token released a second hold");
}

#[tokio::test]
async fn expired_token_is_refused() {
    refused_then_control("expired", |gw, ch| {
        let now = now_secs();
        gw.token(json!({"sid": ch["sid"], "txn": ch["txn"], "iat": now - 400, "exp": now - 200}))
    })
    .await;
}

#[tokio::test]
async fn token_living_longer_than_five_minutes_is_refused() {
    refused_then_control("too long", |gw, ch| {
        let now = now_secs();
        gw.token(json!({"sid": ch["sid"], "txn": ch["txn"], "iat": now, "exp": now + 301}))
    })
    .await;
}

#[tokio::test]
async fn token_for_another_audience_is_refused() {
    refused_then_control("wrong aud", |gw, ch| {
        gw.token(json!({"sid": ch["sid"], "txn": ch["txn"], "aud": "some-other-gateway"}))
    })
    .await;
}

#[tokio::test]
async fn token_without_audience_is_refused() {
    refused_then_control("no aud", |gw, ch| {
        gw.token(json!({"sid": ch["sid"], "txn": ch["txn"], "aud": null}))
    })
    .await;
}

#[tokio::test]
async fn unsigned_alg_none_token_is_refused() {
    refused_then_control("alg none", |gw, ch| {
        compact(&json!({"alg": "none", "typ": "JWT"}), &base_claims(gw, ch), b"")
    })
    .await;
}

#[tokio::test]
async fn hs256_token_keyed_with_the_issuers_public_key_is_refused() {
    use hmac::{KeyInit, Mac};
    use p256::pkcs8::EncodePublicKey;
    let hs256 = |key: &[u8], header: &Value, claims: &Value| {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(mac.finalize().into_bytes()))
    };
    // The usual confusions: the PEM a verifier would load, the JWK, and
    // the raw SEC1 point.
    type KeyBytes = fn(&Gateway) -> Vec<u8>;
    let forms: [(&str, KeyBytes); 3] = [
        ("pem", |gw| {
            gw.issuer
                .key
                .verifying_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .expect("pem")
                .into_bytes()
        }),
        ("jwk", |gw| {
            stepgate::jose::jwk::public_jwk(gw.issuer.key.verifying_key())
                .to_string()
                .into_bytes()
        }),
        ("sec1", |gw| {
            gw.issuer.key.verifying_key().to_sec1_point(false).as_bytes().to_vec()
        }),
    ];
    for (name, key_of) in forms {
        refused_then_control(&format!("hs256 {name}"), |gw, ch| {
            let header = json!({"alg": "HS256", "typ": "JWT", "kid": gw.issuer.kid});
            hs256(&key_of(gw), &header, &base_claims(gw, ch))
        })
        .await;
    }
}

#[tokio::test]
async fn der_encoded_es256_signature_is_refused() {
    refused_then_control("der signature", |gw, ch| {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": gw.issuer.kid});
        let claims = base_claims(gw, ch);
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig: p256::ecdsa::Signature = gw.issuer.key.sign(input.as_bytes());
        let der = sig.to_der();
        format!("{input}.{}", b64(der.as_bytes()))
    })
    .await;
}

#[tokio::test]
async fn token_with_an_unknown_kid_is_refused() {
    refused_then_control("unknown kid", |gw, ch| {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "not-a-configured-key"});
        stepgate::jose::jws::encode_es256(&gw.issuer.key, &header, &base_claims(gw, ch)).expect("sign")
    })
    .await;
}

#[tokio::test]
async fn token_signed_by_a_stranger_under_the_issuers_kid_is_refused() {
    refused_then_control("stranger key", |gw, ch| {
        let (stranger, _) = stepgate::assertion::generate_signing_key();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": gw.issuer.kid});
        stepgate::jose::jws::encode_es256(&stranger, &header, &base_claims(gw, ch)).expect("sign")
    })
    .await;
}

#[tokio::test]
async fn token_whose_auth_time_is_older_than_max_age_is_refused() {
    refused_then_control("stale auth_time", |gw, ch| {
        gw.token(json!({"sid": ch["sid"], "txn": ch["txn"], "auth_time": now_secs() - 600}))
    })
    .await;
}

#[tokio::test]
async fn complete_from_another_session_changes_nothing() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let (_, ch) = challenge(&gw, "sess-rightful", DELETE_TARGET, b"{}").await;
    let id = hold_id(&ch);
    let token = bound_token(&gw, &ch);

    // Even carrying the rightful owner's valid token.
    for headers in [
        vec![("cookie", "SESSIONID=sess-intruder")],
        vec![("authorization", "Bearer sess-rightful")],
        vec![],
    ] {
        let resp = complete_as(&gw, &id, &headers, &json!({"method": "token", "token": token})).await;
        assert_eq!(resp.status, 403, "{headers:?}: {}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.error_code(), "session_mismatch");
    }
    assert_eq!(up.requests().len(), 0);
    let st = status(&gw, &id, &[("cookie", &cookie("sess-rightful"))]).await.json();
    assert_eq!(st["state"], "pending");

    // The refused calls burnt neither an attempt nor the token's jti.
    let resp = complete_with_token(&gw, &id, "sess-rightful", &token).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn complete_after_release_is_already_released() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let (_, ch) = challenge(&gw, "sess-twice", DELETE_TARGET, b"{}").await;
    let id = hold_id(&ch);
    let resp = complete_with_token(&gw, &id, "sess-twice", &bound_token(&gw, &ch)).await;
    assert_eq!(resp.status, 200);
    for body in [json!({"method": "token", "token": bound_token(&gw, &ch)}), json!({})] {
        let resp = complete_as(&gw, &id, &[("cookie", &cookie("sess-twice"))], &body).await;
        assert_eq!(resp.status, 409, "{body}");
        assert_eq!(resp.error_code(), "already_released");
    }
    assert_eq!(up.requests().len(), 1);
}

const QUICK_ROUTE: &str = "
  - name: quick
    action: quick.thing
    match: { methods: [POST], path: /quick }
    require: { methods: [token] }
    hold: { mode: challenge, timeout: 1s }
";

#[tokio::test]
async fn complete_after_the_deadline_is_hold_expired() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, &format!("{DEFAULT_ROUTES}{QUICK_ROUTE}"), "").await;
    let session = "sess-late";
    let (_, ch) = challenge(&gw, session, "/quick", b"{}").await;
    let id = hold_id(&ch);
    // Wait for the gateway to say so rather than for a fixed time.
    let mut state = String::new();
    for _ in 0..500 {
        state = status_state(&gw, &id, session).await;
        if state != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(state, "expired");
    let resp = complete_with_token(&gw, &id, session, &bound_token(&gw, &ch)).await;
    assert_eq!(resp.status, 410, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "hold_expired");
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn body_over_max_body_is_refused_before_any_hold() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DEFAULT_ROUTES, "limits: { max_body: 1KiB }").await;
    let c = cookie("sess-big");
    let big = vec![b'x'; 1025];
    let resp = send(&gw, "POST", DELETE_TARGET, &[("cookie", &c)], &big).await;
    assert_eq!(resp.status, 413, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "body_too_large");

    // Without a declared length the limit has to hold while streaming.
    let mut chunked = format!(
        "POST {DELETE_TARGET} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncookie: {c}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..3 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'y'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let resp = raw(gw.addr, &gw.pki, &chunked).await;
    assert_eq!(resp.status, 413, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "body_too_large");
    assert!(gw.gw.holds.open_holds().is_empty(), "nothing was parked");
    assert_eq!(up.requests().len(), 0, "upstream untouched");

    // Exactly at the limit is still a normal hold.
    let (_, ch) = challenge(&gw, "sess-big", DELETE_TARGET, &vec![b'z'; 1024]).await;
    assert_eq!(
        ch["txn"],
        txn_for("POST", "localhost", DELETE_TARGET, &vec![b'z'; 1024])
    );
}

#[tokio::test]
async fn sensitive_request_without_a_session_is_no_session() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    for (method, target) in [
        ("POST", DELETE_TARGET),
        ("POST", "/api/transfers"),
        ("GET", "/admin/settings"),
    ] {
        let resp = send(&gw, method, target, &[("cookie", "OTHER=1")], b"{}").await;
        assert_eq!(resp.status, 401, "{target}");
        assert_eq!(resp.error_code(), "no_session", "{target}");
        // A 401 always names its scheme (RFC 9110 §11.6.1).
        assert_eq!(
            resp.header("www-authenticate"),
            Some("StepUp error=\"no_session\""),
            "{target}"
        );
    }
    assert_eq!(up.requests().len(), 0);
    assert!(gw.gw.holds.open_holds().is_empty());
}

#[tokio::test]
async fn wrong_proofs_count_down_and_the_fifth_denies_for_good() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let session = "sess-guesser";
    let (_, ch) = challenge(&gw, session, DELETE_TARGET, b"{}").await;
    let id = hold_id(&ch);
    let wrong = |gw: &Gateway| gw.token(json!({"sid": gw.sid("not-me"), "txn": ch["txn"]}));
    for left in (1..=4).rev() {
        let resp = complete_with_token(&gw, &id, session, &wrong(&gw)).await;
        assert_eq!(resp.status, 401);
        let err = resp.json();
        assert_eq!(err["error"], "invalid_proof");
        assert_eq!(err["attempts_left"], json!(left));
    }
    let resp = complete_with_token(&gw, &id, session, &wrong(&gw)).await;
    assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "step_up_denied");

    let resp = complete_with_token(&gw, &id, session, &bound_token(&gw, &ch)).await;
    assert_eq!(resp.status, 403, "a denied hold stays denied");
    assert_eq!(resp.error_code(), "step_up_denied");
    assert_eq!(status_state(&gw, &id, session).await, "denied");
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn per_session_hold_limit_is_too_many_holds() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DEFAULT_ROUTES, "limits: { max_holds_per_session: 2 }").await;
    let session = "sess-busy";
    let (_, first) = challenge(&gw, session, DELETE_TARGET, b"1").await;
    challenge(&gw, session, DELETE_TARGET, b"2").await;
    let c = cookie(session);
    let resp = send(&gw, "POST", DELETE_TARGET, &[("cookie", &c)], b"3").await;
    assert_eq!(resp.status, 429, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "too_many_holds");
    assert_eq!(up.requests().len(), 0);

    // The limit is per session, and a released hold frees its slot.
    challenge(&gw, "sess-idle", DELETE_TARGET, b"3").await;
    let resp = complete_with_token(&gw, &hold_id(&first), session, &bound_token(&gw, &first)).await;
    assert_eq!(resp.status, 200);
    challenge(&gw, session, DELETE_TARGET, b"3").await;
    assert_eq!(up.requests().len(), 1);
}
