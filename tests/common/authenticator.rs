//! A software stand-in for a WebAuthn authenticator and the browser around
//! it: a P-256 key that answers the gateway's options with the JSON a
//! browser posts (`none` attestation at registration, ES256 assertions).
//! The real browser authenticator is exercised by the Chromium tests; this
//! one exists so the gateway's checks can be attacked byte by byte (wrong
//! origin, no user verification, a counter going backwards).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const AT: u8 = 0x40;

pub struct SoftKey {
    key: SigningKey,
    pub id: Vec<u8>,
    pub rp_id: String,
    /// What the "browser" writes into clientDataJSON.
    pub origin: String,
    /// Signature counter; incremented before each assertion.
    pub counter: u32,
    /// Whether the user-verified flag is set.
    pub user_verified: bool,
    /// Whether the key says it may be synced (a passkey) or not (a security key).
    pub backup_eligible: bool,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// CBOR head for major type `major` and length `len` (< 65536).
fn cbor_head(out: &mut Vec<u8>, major: u8, len: usize) {
    match len {
        0..=23 => out.push(major << 5 | len as u8),
        24..=255 => out.extend([major << 5 | 24, len as u8]),
        _ => {
            out.push(major << 5 | 25);
            out.extend((len as u16).to_be_bytes());
        }
    }
}

fn cbor_bytes(out: &mut Vec<u8>, b: &[u8]) {
    cbor_head(out, 2, b.len());
    out.extend_from_slice(b);
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    cbor_head(out, 3, s.len());
    out.extend_from_slice(s.as_bytes());
}

impl SoftKey {
    pub fn new(rp_id: &str, origin: &str) -> SoftKey {
        let (key, _) = stepgate::assertion::generate_signing_key();
        SoftKey {
            key,
            id: rand_bytes(),
            rp_id: rp_id.to_owned(),
            origin: origin.to_owned(),
            counter: 0,
            user_verified: true,
            backup_eligible: false,
        }
    }

    fn flags(&self) -> u8 {
        let mut f = UP;
        if self.user_verified {
            f |= UV;
        }
        if self.backup_eligible {
            f |= BE;
        }
        f
    }

    fn client_data(&self, kind: &str, options: &Value) -> Vec<u8> {
        let challenge = options["publicKey"]["challenge"]
            .as_str()
            .expect("options carry a challenge");
        json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    /// COSE_Key of the public key: {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}.
    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_sec1_point(false);
        let mut out = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cbor_bytes(&mut out, point.x().expect("x"));
        out.push(0x22);
        cbor_bytes(&mut out, point.y().expect("y"));
        out
    }

    /// The `RegisterPublicKeyCredential` JSON for creation `options`.
    pub fn register(&self, options: &Value) -> Value {
        let client_data = self.client_data("webauthn.create", options);
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(self.flags() | AT);
        auth_data.extend(self.counter.to_be_bytes());
        auth_data.extend([0u8; 16]); // AAGUID: none
        auth_data.extend((self.id.len() as u16).to_be_bytes());
        auth_data.extend(&self.id);
        auth_data.extend(self.cose_key());
        let mut att = vec![0xa3];
        cbor_text(&mut att, "fmt");
        cbor_text(&mut att, "none");
        cbor_text(&mut att, "attStmt");
        att.push(0xa0);
        cbor_text(&mut att, "authData");
        cbor_bytes(&mut att, &auth_data);
        json!({
            "id": b64(&self.id), "rawId": b64(&self.id), "type": "public-key",
            "response": {"attestationObject": b64(&att), "clientDataJSON": b64(&client_data)},
            "extensions": {},
        })
    }

    /// The `PublicKeyCredential` JSON answering request `options`.
    pub fn assert(&mut self, options: &Value) -> Value {
        self.counter += 1;
        let client_data = self.client_data("webauthn.get", options);
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(self.flags());
        auth_data.extend(self.counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data));
        let signature: Signature = self.key.sign(&signed);
        json!({
            "id": b64(&self.id), "rawId": b64(&self.id), "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.to_der().as_bytes()),
                "userHandle": null,
            },
            "extensions": {},
        })
    }
}

fn rand_bytes() -> Vec<u8> {
    let t = stepgate::ids::random_token();
    Sha256::digest(t.as_bytes()).to_vec()
}
