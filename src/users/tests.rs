//! The store's file format and its one-writer updates.

use super::*;

#[test]
fn update_then_snapshot_round_trips_and_hides_secrets_in_debug() {
    let dir = crate::ids::test_tmp().join(format!("stepgate-users-{}", crate::ids::random_token()));
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
                    ..UserRecord::default()
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

fn passkey(id: u8) -> Passkey {
    use webauthn_rs_core::proto::*;
    Passkey::from(Credential {
        cred_id: vec![id; 16],
        cred: COSEKey {
            type_: COSEAlgorithm::ES256,
            key: COSEKeyType::EC_EC2(COSEEC2Key {
                curve: ECDSACurve::SECP256R1,
                x: vec![1; 32],
                y: vec![2; 32],
            }),
        },
        counter: 7,
        transports: None,
        user_verified: true,
        backup_eligible: true,
        backup_state: false,
        registration_policy: UserVerificationPolicy::Required,
        extensions: RegisteredExtensions::none(),
        attestation: ParsedAttestation {
            data: ParsedAttestationData::None,
            metadata: AttestationMetadata::None,
        },
        attestation_format: AttestationFormat::None,
    })
}

#[test]
fn passkeys_and_enrollment_links_round_trip_through_yaml() {
    let dir = crate::ids::test_tmp().join(format!("stepgate-users-{}", crate::ids::random_token()));
    let store = UserStore::open(&dir.join("users.yaml"));
    store
        .update(|f| {
            let u = f.users.entry("alice".into()).or_default();
            u.webauthn.push(PasskeyRecord {
                label: "laptop".into(),
                created: 5,
                last_used: 0,
                passkey: passkey(9),
            });
            u.webauthn_enroll = Some(EnrollToken {
                token_sha256: "ab".repeat(32),
                expires: 100,
            });
        })
        .expect("write");
    // Read back from the file, not the cache.
    let snap = UserStore::open(&dir.join("users.yaml")).snapshot().expect("read");
    let keys = snap.passkeys("alice");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].cred_id(), &vec![9u8; 16]);
    assert_eq!(snap.passkey_owner(&vec![9u8; 16]), Some("alice"));
    assert_eq!(snap.passkey_owner(&vec![8u8; 16]), None);
    assert_eq!(snap.enrolling(&"ab".repeat(32), 99), Some(("alice", 100)));
    assert_eq!(snap.enrolling(&"ab".repeat(32), 100), None, "expired");
    assert_eq!(snap.enrolling(&"ac".repeat(32), 99), None, "another token");
    // A refused update writes nothing.
    let refused = store
        .try_update(|f| {
            f.users.clear();
            Err::<(), _>("no")
        })
        .expect("io");
    assert_eq!(refused, Err("no"));
    assert_eq!(store.snapshot().expect("read").passkeys("alice").len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}
