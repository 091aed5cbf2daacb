//! PEM loading and generation of the P-256 assertion key.
//!
//! Errors are fixed strings: a message built from a parser error could echo
//! part of a private key file into a log.

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::zeroize::Zeroize as _;
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, LineEnding};

use super::AssertionError;

const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";
const SPKI_LABEL: &str = "PUBLIC KEY";

/// Reads a P-256 private key from a PKCS#8 `PRIVATE KEY` or SEC1
/// `EC PRIVATE KEY` PEM block. Other blocks in the text (OpenSSL's
/// `EC PARAMETERS`, certificates) are ignored.
pub fn load_signing_key_pem(pem: &str) -> Result<SigningKey, AssertionError> {
    if let Some(block) = pem_block(pem, PKCS8_LABEL) {
        return SigningKey::from_pkcs8_pem(block)
            .map_err(|_| AssertionError::Key("PRIVATE KEY block is not a P-256 PKCS#8 key"));
    }
    if let Some(block) = pem_block(pem, SEC1_LABEL) {
        return p256::SecretKey::from_sec1_pem(block)
            .map(SigningKey::from)
            .map_err(|_| AssertionError::Key("EC PRIVATE KEY block is not a P-256 SEC1 key"));
    }
    if pem_block(pem, "ENCRYPTED PRIVATE KEY").is_some() {
        return Err(AssertionError::Key("encrypted private keys are not supported"));
    }
    Err(AssertionError::Key("no PRIVATE KEY or EC PRIVATE KEY PEM block"))
}

/// Reads a P-256 public key from an SPKI `PUBLIC KEY` block, or takes the
/// public half of a private key PEM (handy for `assertion.retired_keys`,
/// where operators tend to keep the old key file itself).
pub fn load_public_key_pem(pem: &str) -> Result<VerifyingKey, AssertionError> {
    if let Some(block) = pem_block(pem, SPKI_LABEL) {
        return VerifyingKey::from_public_key_pem(block)
            .map_err(|_| AssertionError::Key("PUBLIC KEY block is not a P-256 SPKI key"));
    }
    load_signing_key_pem(pem)
        .map(|key| *key.verifying_key())
        .map_err(|_| AssertionError::Key("no P-256 PUBLIC KEY or private key PEM block"))
}

/// A fresh key and its PKCS#8 PEM (what `stepgate keygen` writes).
pub fn generate_signing_key() -> (SigningKey, String) {
    let key = loop {
        let mut scalar = rand::random::<[u8; 32]>();
        let key = SigningKey::from_slice(&scalar);
        scalar.zeroize();
        // Only zero or a value >= the group order fails: odds about 2^-128.
        if let Ok(key) = key {
            break key;
        }
    };
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 encoding of an in-memory P-256 key cannot fail")
        .to_string();
    (key, pem)
}

/// The first `-----BEGIN label-----` … `-----END label-----` block, markers
/// included.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = start + text[start..].find(&end)? + end.len();
    text.get(start..stop)
}
