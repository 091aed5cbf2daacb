//! Passkey request options for a name that has no passkey: an unknown
//! user, an unknown approver, or a person who only uses TOTP. Refusing, or
//! answering with an empty credential list, would tell anyone who asks
//! which names have passkeys. Instead such a name gets credential ids that
//! webauthn-rs's fake generator derives from an HMAC of the name under a
//! server secret: the same ids on every request and every instance (the
//! secret is derived from the shared session key), with the counts and
//! lengths of credentials seen in the wild, and never an empty list, since
//! a real answer never has one.

use super::{CredentialID, Passkey, PasskeyError};
use webauthn_rs::fake::{FakeCredentialIDDistribution, FakePasskeyDistribution, WebauthnFakeCredentialGenerator};
use webauthn_rs::prelude::Credential;

/// webauthn-rs's passkey distribution, less its empty lists: a gateway
/// answers options only for names that have a credential.
struct AtLeastOne;

/// Draws of the distribution before giving up on it; each is empty with a
/// probability of about 15%, so this bound is never reached in practice.
const DRAWS: usize = 32;

impl FakeCredentialIDDistribution for AtLeastOne {
    fn generate<R: rand::Rng>(rng: &mut R) -> Vec<CredentialID> {
        for _ in 0..DRAWS {
            let ids = FakePasskeyDistribution::generate(rng);
            if !ids.is_empty() {
                return ids;
            }
        }
        // Still from the seeded generator, so still stable per name.
        let mut id = vec![0; webauthn_rs::fake::APPLE_CRED_LEN];
        rng.fill_bytes(&mut id);
        vec![id]
    }
}

/// The stored form of a synced ES256 passkey (the W3C test vector's public
/// key): only the id and the transports reach the options, the rest makes
/// it a well-formed credential for webauthn-rs to build them from.
const TEMPLATE: &str = r#"{"cred_id":"AA","cred":{"type_":"ES256","key":{"EC_EC2":{"curve":"SECP256R1","x":"r--hb5fKmy0j64bMtkCY0g25CFYGLrJJwzqbZy8m32E","y":"kwpWuHovymYzSwNFir-HlxfBLMaO1zKQry4mZHlrkiA"}}},"counter":0,"transports":null,"user_verified":true,"backup_eligible":true,"backup_state":true,"registration_policy":"required","extensions":{"cred_protect":"NotRequested","hmac_create_secret":"NotRequested","appid":"NotRequested","cred_props":"Ignored"},"attestation":{"data":"None","metadata":"None"},"attestation_format":"none"}"#;

/// Stand-in passkeys for `name`, keyed by `secret`. `like` is a real
/// passkey of this gateway whose other fields (transports above all) the
/// stand-ins copy, so their entries in `allowCredentials` have the same
/// shape as a real user's; without one a synced passkey is assumed.
pub fn passkeys(secret: &[u8], name: &str, like: Option<&Passkey>) -> Result<Vec<Passkey>, PasskeyError> {
    let ids = WebauthnFakeCredentialGenerator::<AtLeastOne>::new(secret)?.generate(name.as_bytes())?;
    let template: Credential = match like {
        Some(p) => p.clone().into(),
        None => serde_json::from_str(TEMPLATE).map_err(|e| PasskeyError::State(e.to_string()))?,
    };
    Ok(ids
        .into_iter()
        .map(|id| {
            let mut c = template.clone();
            c.cred_id = id;
            c.counter = 0;
            Passkey::from(c)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [9; 32];

    fn ids(key: &[u8], name: &str) -> Vec<Vec<u8>> {
        passkeys(key, name, None)
            .expect("decoys")
            .iter()
            .map(|p| p.cred_id().to_vec())
            .collect()
    }

    #[test]
    fn stable_per_name_and_secret_never_empty_and_of_real_lengths() {
        let lengths = [16, 20, 32, 64, 65, 128];
        let mut counts = std::collections::BTreeSet::new();
        for i in 0..200 {
            let name = format!("user-{i}");
            let a = ids(&KEY, &name);
            assert!(!a.is_empty(), "{name} got no credential");
            assert!(a.iter().all(|id| lengths.contains(&id.len())), "{name}: {a:?}");
            assert_eq!(a, ids(&KEY, &name), "{name} changes between requests");
            assert_ne!(a, ids(&[8; 32], &name), "{name}: another secret, other ids");
            counts.insert(a.len());
        }
        assert!(
            counts.len() > 1,
            "every name has the same number of credentials: {counts:?}"
        );
        assert_ne!(ids(&KEY, "bob"), ids(&KEY, "bob "), "names are taken as they are");
    }

    #[test]
    fn the_template_is_a_credential_and_a_real_passkey_lends_its_shape() {
        let from_template = passkeys(&KEY, "mallory", None).expect("decoys");
        let real = from_template[0].clone();
        let mut c: Credential = real.into();
        c.transports = Some(vec![webauthn_rs_core::proto::AuthenticatorTransport::Internal]);
        let like = Passkey::from(c);
        let copied: Credential = passkeys(&KEY, "mallory", Some(&like)).expect("decoys")[0]
            .clone()
            .into();
        assert_eq!(copied.transports, like_transports(&like));
        assert_eq!(copied.cred_id, from_template[0].cred_id().clone());
    }

    fn like_transports(p: &Passkey) -> Option<Vec<webauthn_rs_core::proto::AuthenticatorTransport>> {
        let c: Credential = p.clone().into();
        c.transports
    }
}
