//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, ±1 step). Pure: the time
//! is an argument. Which step matched is returned so the caller can accept
//! each code once per user (the step must be newer than the last one used).

use totp_rs::{Algorithm, Builder, Secret};

pub const DIGITS: u8 = 6;
pub const STEP: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TotpError {
    #[error("the code is not {DIGITS} digits")]
    Malformed,
    #[error("the stored secret is unusable")]
    BadSecret,
    #[error("the code does not match")]
    Mismatch,
}

fn totp(secret_b32: &str, digits: u8, account: Option<&str>) -> Result<totp_rs::Totp, TotpError> {
    let secret = Secret::try_from_base32(secret_b32).map_err(|_| TotpError::BadSecret)?;
    let mut b = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(digits)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret);
    if let Some(a) = account {
        b = b.with_account_name(a).with_issuer(Some("stepgate"));
    }
    b.build().map_err(|_| TotpError::BadSecret)
}

/// Checks `code` at Unix time `now` and returns the step it belongs to.
pub fn verify(secret_b32: &str, code: &str, now: u64) -> Result<u64, TotpError> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::Malformed);
    }
    totp(secret_b32, DIGITS, None)?
        .check(code, now)
        .ok_or(TotpError::Mismatch)
}

/// The code for Unix time `t` (tests, and the demo's printed enrollment).
pub fn code_at(secret_b32: &str, t: u64) -> Result<String, TotpError> {
    Ok(totp(secret_b32, DIGITS, None)?.generate(t).to_string())
}

/// A fresh 160-bit secret (RFC 4226 §4 recommends 160 bits), base32.
pub fn generate_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    Secret::from(bytes.to_vec()).to_base32()
}

/// The `otpauth://` URI authenticator apps scan.
pub fn otpauth_uri(secret_b32: &str, user: &str) -> Result<String, TotpError> {
    totp(secret_b32, DIGITS, Some(user))?
        .to_url()
        .map_err(|_| TotpError::BadSecret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows: the reference secret is the ASCII
    /// string "12345678901234567890"; the RFC's codes are 8 digits.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        let rows = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (t, expected) in rows {
            let code = totp(&secret, 8, None).expect("totp").generate(t).to_string();
            assert_eq!(code, expected, "T={t}");
        }
    }

    #[test]
    fn accepts_one_step_of_skew_and_names_the_step() {
        let s = generate_secret();
        let now = 1_764_000_015;
        let step = now / STEP;
        let current = code_at(&s, now).expect("code");
        assert_eq!(verify(&s, &current, now), Ok(step));
        let previous = code_at(&s, now - STEP).expect("code");
        assert_eq!(verify(&s, &previous, now), Ok(step - 1));
        let two_ago = code_at(&s, now - 2 * STEP).expect("code");
        if two_ago != current && two_ago != previous {
            assert_eq!(verify(&s, &two_ago, now), Err(TotpError::Mismatch));
        }
        assert_eq!(verify(&s, "12345", now), Err(TotpError::Malformed));
        assert_eq!(verify(&s, "12a456", now), Err(TotpError::Malformed));
        assert_eq!(verify("not base32!", "123456", now), Err(TotpError::BadSecret));
    }

    #[test]
    fn secrets_are_160_bits_and_uris_parse() {
        let s = generate_secret();
        assert_eq!(Secret::try_from_base32(&s).expect("b32").as_ref().len(), 20);
        let uri = otpauth_uri(&s, "alice").expect("uri");
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains(&format!("secret={s}")), "{uri}");
    }
}
