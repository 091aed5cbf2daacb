//! WebAuthn proofs (passkeys and security keys) on webauthn-rs's passkey
//! ceremony: user verification required, the RP id and the origins pinned
//! from the config, the signature counter checked. Pure: no I/O and no
//! clock; single-use bookkeeping and the user store belong to the caller.
//!
//! **Binding.** An assertion challenge is `SHA-256(nonce ‖ binding)`: a
//! fresh 32-byte nonce the gateway keeps, and a binding string chosen by
//! the caller (the hold's `txn` for a step-up). An assertion therefore
//! signs, through its clientDataJSON, a value that exists only for that
//! request.
//!
//! **Why the challenge is substituted.** webauthn-rs draws a random
//! challenge inside `start_passkey_authentication` and keeps it in a state
//! whose fields are private. webauthn-rs-core's `WebauthnCore` has the same
//! closed state and would in addition hand us every policy knob (user
//! verification, attestation, backup eligibility) that the passkey wrapper
//! fixes to safe values, so dropping to it buys nothing. Instead the
//! wrapper builds the state and only its challenge is replaced, through
//! the state's serialised form (feature `danger-allow-state-serialisation`;
//! the state never leaves the process, which is the danger that feature
//! names). The state is not even kept between the two steps: [`RelyingParty::verify`]
//! rebuilds it from the user's current passkeys and recomputes the
//! challenge from the stored nonce and the caller's own binding, so a
//! stored challenge cannot be steered to another request. The crate is
//! pinned (`=0.6.2`) and the tests below fail if the serialised layout
//! changes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::Duration;
use webauthn_rs::prelude::{AuthenticationResult, Url, Webauthn, WebauthnBuilder};

pub use webauthn_rs::prelude::{
    CredentialID, Passkey, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Uuid,
    WebauthnError as CeremonyError,
};

use crate::config::WebauthnConfig;

pub mod decoy;

/// The server-side secret half of a challenge.
pub type Nonce = [u8; 32];

/// How long the browser may take, as told to it in the options. A pending
/// challenge is kept no longer than this.
pub const CEREMONY_TIMEOUT: Duration = Duration::from_secs(300);

/// `acr` of a WebAuthn step-up: phishing-resistant (the origin is signed).
pub const ACR: &str = "phr";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasskeyError {
    #[error("invalid relying party: {0}")]
    Config(String),
    #[error("no passkey is registered for this user")]
    NoCredential,
    #[error("the ceremony state could not be bound to the challenge: {0}")]
    State(String),
    #[error("{0}")]
    Refused(#[from] CeremonyError),
}

/// Who a proof names and how it was made, once an assertion verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub user_verified: bool,
    /// A synced (or syncable) passkey: the key is not bound to one device.
    pub backup_eligible: bool,
    pub counter: u32,
    result: AuthenticationResult,
}

impl Verified {
    /// RFC 8176 method references: `swk` for a key that may be copied off
    /// the device (backup-eligible), `hwk` otherwise; `user` because the
    /// authenticator verified the user; `mfa` as possession plus that.
    pub fn amr(&self) -> Vec<String> {
        let key = if self.backup_eligible { "swk" } else { "hwk" };
        vec![key.into(), "user".into(), "mfa".into()]
    }

    /// Records the new counter and backup state on the stored passkey it
    /// came from; `None` if `passkey` is another credential.
    pub fn update(&self, passkey: &mut Passkey) -> Option<bool> {
        passkey.update_credential(&self.result)
    }

    pub fn credential_id(&self) -> &CredentialID {
        self.result.cred_id()
    }
}

/// The challenge a binding gets with `nonce`. The nonce has a fixed length,
/// so the concatenation cannot be read two ways.
pub fn challenge(nonce: &Nonce, binding: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(nonce);
    h.update(binding.as_bytes());
    h.finalize().into()
}

/// The challenge the client says it signed (clientDataJSON `challenge`),
/// to find the pending ceremony it answers. Only a lookup key: the
/// verification compares it again with the recomputed one.
pub fn signed_challenge(client_data_json: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(client_data_json).ok()?;
    URL_SAFE_NO_PAD.decode(v.get("challenge")?.as_str()?).ok()
}

/// The relying party of `stepup.webauthn`.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    webauthn: Webauthn,
}

impl RelyingParty {
    pub fn new(config: &WebauthnConfig) -> Result<Self, PasskeyError> {
        let bad = |e: &dyn std::fmt::Display| PasskeyError::Config(e.to_string());
        let origins = config
            .origins
            .iter()
            .map(|o| Url::parse(o).map_err(|e| bad(&e)))
            .collect::<Result<Vec<_>, _>>()?;
        let first = origins.first().ok_or_else(|| bad(&"no origin"))?;
        let mut builder = WebauthnBuilder::new(&config.rp_id, first)
            .map_err(|e| bad(&e))?
            .rp_name(&config.rp_name)
            .timeout(CEREMONY_TIMEOUT);
        for o in &origins[1..] {
            builder = builder.append_allowed_origin(o);
        }
        Ok(RelyingParty {
            webauthn: builder.build().map_err(|e| bad(&e))?,
        })
    }

    /// Request options (`{"publicKey": {...}}`, the JSON
    /// `navigator.credentials.get` takes once its base64url strings are
    /// decoded) for `passkeys`, with the challenge `challenge(nonce, binding)`.
    pub fn request(
        &self,
        passkeys: &[Passkey],
        nonce: &Nonce,
        binding: &str,
    ) -> Result<serde_json::Value, PasskeyError> {
        if passkeys.is_empty() {
            return Err(PasskeyError::NoCredential);
        }
        let (mut options, _) = self.webauthn.start_passkey_authentication(passkeys)?;
        options.public_key.challenge = challenge(nonce, binding).to_vec();
        serde_json::to_value(&options).map_err(|e| PasskeyError::State(e.to_string()))
    }

    /// Verifies an assertion made for `challenge(nonce, binding)` by one of
    /// `passkeys`. The caller must then store the counter ([`Verified::update`]).
    pub fn verify(
        &self,
        passkeys: &[Passkey],
        nonce: &Nonce,
        binding: &str,
        assertion: &PublicKeyCredential,
    ) -> Result<Verified, PasskeyError> {
        self.verify_challenge(passkeys, &challenge(nonce, binding), assertion)
    }

    fn verify_challenge(
        &self,
        passkeys: &[Passkey],
        challenge: &[u8],
        assertion: &PublicKeyCredential,
    ) -> Result<Verified, PasskeyError> {
        if passkeys.is_empty() {
            return Err(PasskeyError::NoCredential);
        }
        let (_, state) = self.webauthn.start_passkey_authentication(passkeys)?;
        let state = rebind(&state, "/ast/challenge", challenge)?;
        let result = self.webauthn.finish_passkey_authentication(assertion, &state)?;
        Ok(Verified {
            user_verified: result.user_verified(),
            backup_eligible: result.backup_eligible(),
            counter: result.counter(),
            result,
        })
    }

    /// Creation options (`{"publicKey": {...}}`) for a new passkey of
    /// `user`, and the state to finish with. `existing` are excluded, so an
    /// authenticator does not register twice.
    pub fn start_registration(
        &self,
        user_id: Uuid,
        user: &str,
        existing: Vec<CredentialID>,
    ) -> Result<(serde_json::Value, Vec<u8>, PasskeyRegistration), PasskeyError> {
        let exclude = (!existing.is_empty()).then_some(existing);
        let (options, state) = self.webauthn.start_passkey_registration(user_id, user, user, exclude)?;
        let challenge = options.public_key.challenge.to_vec();
        let json = serde_json::to_value(&options).map_err(|e| PasskeyError::State(e.to_string()))?;
        Ok((json, challenge, state))
    }

    /// Verifies a registration (user verification required, `none`
    /// attestation accepted: a passkey's maker is not what is checked).
    pub fn finish_registration(
        &self,
        credential: &RegisterPublicKeyCredential,
        state: &PasskeyRegistration,
    ) -> Result<Passkey, PasskeyError> {
        Ok(self.webauthn.finish_passkey_registration(credential, state)?)
    }
}

/// Replaces the challenge inside a ceremony state (see the module doc).
/// Fails closed if the member is not where this version keeps it.
fn rebind<T: Serialize + DeserializeOwned>(state: &T, pointer: &str, challenge: &[u8]) -> Result<T, PasskeyError> {
    let bad = |m: String| PasskeyError::State(m);
    let mut v = serde_json::to_value(state).map_err(|e| bad(e.to_string()))?;
    match v.pointer_mut(pointer) {
        Some(slot @ serde_json::Value::String(_)) => *slot = URL_SAFE_NO_PAD.encode(challenge).into(),
        _ => return Err(bad(format!("no challenge at {pointer}"))),
    }
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests;
