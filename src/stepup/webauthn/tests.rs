//! The W3C vectors, and the binding of challenges to what they were made for.

use super::*;
use webauthn_rs::prelude::Credential;
use webauthn_rs_core::proto::UserVerificationPolicy;
use webauthn_rs_core::WebauthnCore;

/// Web Authentication Level 3 (W3C Candidate Recommendation Snapshot,
/// 26 May 2026), §16 "Test Vectors", §16.2 "ES256 Credential with No
/// Attestation" (`#sctn-test-vectors-none-es256`). §16.1 fixes the RP id
/// `example.org` and the origin `https://example.org` for every vector.
/// Transcribed from the hex the specification prints. Both ceremonies have
/// user verification unset (flags 0x59 at registration: UP, BE, BS, AT;
/// 0x19 in the assertion: UP, BE, BS) and a zero counter.
mod w3c {
    pub const RP_ID: &str = "example.org";
    pub const ORIGIN: &str = "https://example.org";
    pub const REG_CHALLENGE: &str = "00c30fb78531c464d2b6771dab8d7b603c01162f2fa486bea70f283ae556e130";
    pub const CREDENTIAL_ID: &str = "f91f391db4c9b2fde0ea70189cba3fb63f579ba6122b33ad94ff3ec330084be4";
    pub const REG_CLIENT_DATA: &str = concat!(
        "7b2274797065223a22776562617574686e2e637265617465222c226368616c6c656e6765",
        "223a22414d4d507434557878475453746e63647134313759447742466938767049612d70",
        "77386f4f755657345441222c226f726967696e223a2268747470733a2f2f6578616d706c",
        "652e6f7267222c2263726f73734f726967696e223a66616c73652c226578747261446174",
        "61223a22636c69656e74446174614a534f4e206d617920626520657874656e6465642077",
        "697468206164646974696f6e616c206669656c647320696e20746865206675747572652c",
        "207375636820617320746869733a20426b5165446a646354427258426941774a544c4535",
        "51227d",
    );
    pub const ATTESTATION_OBJECT: &str = concat!(
        "a363666d74646e6f6e656761747453746d74a068617574684461746158a4bfabc3743295",
        "8b063360d3ad6461c9c4735ae7f8edd46592a5e0f01452b2e4b559000000008446ccb9ab",
        "1db374750b2367ff6f3a1f0020f91f391db4c9b2fde0ea70189cba3fb63f579ba6122b33",
        "ad94ff3ec330084be4a5010203262001215820afefa16f97ca9b2d23eb86ccb64098d20d",
        "b90856062eb249c33a9b672f26df61225820930a56b87a2fca66334b03458abf879717c1",
        "2cc68ed73290af2e2664796b9220",
    );
    pub const AUTH_CHALLENGE: &str = "39c0e7521417ba54d43e8dc95174f423dee9bf3cd804ff6d65c857c9abf4d408";
    pub const AUTH_DATA: &str = "bfabc37432958b063360d3ad6461c9c4735ae7f8edd46592a5e0f01452b2e4b51900000000";
    pub const AUTH_CLIENT_DATA: &str = concat!(
        "7b2274797065223a22776562617574686e2e676574222c226368616c6c656e6765223a22",
        "4f63446e55685158756c5455506f334a5558543049393770767a7a59425039745a636858",
        "79617630314167222c226f726967696e223a2268747470733a2f2f6578616d706c652e6f",
        "7267222c2263726f73734f726967696e223a66616c73657d",
    );
    pub const SIGNATURE: &str = concat!(
        "3046022100f50a4e2e4409249c4a853ba361282f09841df4dd4547a13a87780218deffcd",
        "380221008480ac0f0b93538174f575bf11a1dd5d78c6e486013f937295ea13653e331e87",
    );
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn vector_core() -> WebauthnCore {
    let origin = Url::parse(w3c::ORIGIN).expect("origin");
    WebauthnCore::new_unsafe_experts_only("test", w3c::RP_ID, vec![origin], CEREMONY_TIMEOUT, None, None)
}

/// The vector's registration, verified as published. User verification is
/// only "preferred" here because the vector was made without it.
fn vector_credential() -> Credential {
    let core = vector_core();
    let builder = core
        .new_challenge_register_builder(b"vector-user", "vector", "vector")
        .expect("builder")
        .user_verification_policy(UserVerificationPolicy::Preferred);
    let (_, state) = core.generate_challenge_register(builder).expect("register options");
    let state = rebind(&state, "/challenge", &hex(w3c::REG_CHALLENGE)).expect("rebind");
    let id = hex(w3c::CREDENTIAL_ID);
    let reg: RegisterPublicKeyCredential = serde_json::from_value(serde_json::json!({
        "id": b64(&id), "rawId": b64(&id), "type": "public-key",
        "response": {
            "attestationObject": b64(&hex(w3c::ATTESTATION_OBJECT)),
            "clientDataJSON": b64(&hex(w3c::REG_CLIENT_DATA)),
        },
    }))
    .expect("registration JSON");
    core.register_credential(&reg, &state, None)
        .expect("the vector registers")
}

fn vector_assertion() -> PublicKeyCredential {
    let id = hex(w3c::CREDENTIAL_ID);
    serde_json::from_value(serde_json::json!({
        "id": b64(&id), "rawId": b64(&id), "type": "public-key",
        "response": {
            "authenticatorData": b64(&hex(w3c::AUTH_DATA)),
            "clientDataJSON": b64(&hex(w3c::AUTH_CLIENT_DATA)),
            "signature": b64(&hex(w3c::SIGNATURE)),
        },
    }))
    .expect("assertion JSON")
}

fn relying_party(origins: &[&str]) -> RelyingParty {
    RelyingParty::new(&WebauthnConfig {
        rp_id: w3c::RP_ID.into(),
        origins: origins.iter().map(|o| o.to_string()).collect(),
        rp_name: "test".into(),
    })
    .expect("relying party")
}

#[test]
fn w3c_vector_authentication_verifies() {
    let cred = vector_credential();
    assert_eq!(cred.cred_id.as_slice(), hex(w3c::CREDENTIAL_ID).as_slice());
    let core = vector_core();
    let builder = core
        .new_challenge_authenticate_builder(vec![cred], Some(UserVerificationPolicy::Preferred))
        .expect("builder");
    let (_, state) = core.generate_challenge_authenticate(builder).expect("options");
    // The state's own random challenge is refused: the rebinding is what
    // makes the vector verify.
    assert!(matches!(
        core.authenticate_credential(&vector_assertion(), &state),
        Err(CeremonyError::MismatchedChallenge)
    ));
    let state = rebind(&state, "/challenge", &hex(w3c::AUTH_CHALLENGE)).expect("rebind");
    let mut forged = vector_assertion();
    if let Some(b) = forged.response.signature.get_mut(20) {
        *b ^= 1;
    }
    assert!(
        core.authenticate_credential(&forged, &state).is_err(),
        "a changed signature"
    );
    let result = core
        .authenticate_credential(&vector_assertion(), &state)
        .expect("the vector's assertion verifies");
    assert_eq!(result.counter(), 0);
    assert!(result.backup_eligible());
    assert!(!result.user_verified());
}

#[test]
fn w3c_vector_without_user_verification_is_refused_by_the_passkey_policy() {
    let passkey = Passkey::from(vector_credential());
    let rp = relying_party(&[w3c::ORIGIN]);
    let refused = rp.verify_challenge(&[passkey], &hex(w3c::AUTH_CHALLENGE), &vector_assertion());
    assert!(
        matches!(refused, Err(PasskeyError::Refused(CeremonyError::UserNotVerified))),
        "{refused:?}"
    );
}

#[test]
fn w3c_vector_from_an_origin_not_configured_is_refused() {
    let passkey = Passkey::from(vector_credential());
    let rp = relying_party(&["https://admin.example.org"]);
    let refused = rp.verify_challenge(&[passkey], &hex(w3c::AUTH_CHALLENGE), &vector_assertion());
    assert!(
        matches!(refused, Err(PasskeyError::Refused(CeremonyError::InvalidRPOrigin))),
        "{refused:?}"
    );
}

#[test]
fn challenges_are_bound_to_nonce_and_binding() {
    let n1: Nonce = [1; 32];
    let n2: Nonce = [2; 32];
    assert_eq!(challenge(&n1, "txn-a"), challenge(&n1, "txn-a"));
    assert_ne!(challenge(&n1, "txn-a"), challenge(&n1, "txn-b"));
    assert_ne!(challenge(&n1, "txn-a"), challenge(&n2, "txn-a"));
    // The same assertion verified against another binding fails on the
    // challenge, before anything else is looked at.
    let passkey = Passkey::from(vector_credential());
    let rp = relying_party(&[w3c::ORIGIN]);
    let refused = rp.verify(&[passkey], &n1, "txn-a", &vector_assertion());
    assert!(
        matches!(refused, Err(PasskeyError::Refused(CeremonyError::MismatchedChallenge))),
        "{refused:?}"
    );
}

#[test]
fn request_options_carry_the_derived_challenge_and_require_verification() {
    let passkey = Passkey::from(vector_credential());
    let rp = relying_party(&[w3c::ORIGIN]);
    let nonce: Nonce = [7; 32];
    let v = rp.request(&[passkey], &nonce, "txn-a").expect("options");
    let pk = &v["publicKey"];
    assert_eq!(pk["challenge"], b64(&challenge(&nonce, "txn-a")));
    assert_eq!(pk["userVerification"], "required");
    assert_eq!(pk["rpId"], w3c::RP_ID);
    assert_eq!(pk["allowCredentials"][0]["id"], b64(&hex(w3c::CREDENTIAL_ID)));
    assert!(matches!(
        rp.request(&[], &nonce, "txn-a"),
        Err(PasskeyError::NoCredential)
    ));
}

#[test]
fn signed_challenge_reads_client_data_and_rebind_fails_closed() {
    assert_eq!(
        signed_challenge(&hex(w3c::AUTH_CLIENT_DATA)),
        Some(hex(w3c::AUTH_CHALLENGE))
    );
    assert_eq!(signed_challenge(b"not json"), None);
    assert_eq!(signed_challenge(br#"{"challenge": 5}"#), None);
    let state = serde_json::json!({"ast": {"challenge": 1}});
    assert!(rebind(&state, "/ast/challenge", b"x").is_err(), "not a string");
    assert!(rebind(&state, "/challenge", b"x").is_err(), "absent");
}
