//! Workload identity from a verified client certificate.

use super::*;

/// The workload identity of a client certificate that rustls has already
/// verified against the configured CA: the first SAN URI (e.g. the SPIFFE ID
/// `spiffe://example.org/agent/payments`), else the subject CN.
///
/// An unusable name where one is present (an empty or control-character
/// URI, several CNs) is an error, not a reason to fall back to the next
/// source: the fallback would let a certificate choose which field speaks
/// for it.
///
/// # Errors
///
/// `CertificateParse`, `CertificateTrailingData`, `CertificateField` or
/// `NoCertificateIdentity`.
pub fn cert_identity(der: &[u8]) -> Result<String, IdentityError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| IdentityError::CertificateParse)?;
    if !rest.is_empty() {
        return Err(IdentityError::CertificateTrailingData);
    }

    // Errors when the extension is malformed or present twice.
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::CertificateField("subjectAltName"))?;
    let first_uri = san.and_then(|san| {
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
    });
    if let Some(uri) = first_uri {
        return usable_cert_name(uri, "SAN URI");
    }

    let mut common_names = cert.subject().iter_common_name();
    match (common_names.next(), common_names.next()) {
        (None, _) => Err(IdentityError::NoCertificateIdentity),
        (Some(cn), None) => {
            let cn = cn.as_str().map_err(|_| IdentityError::CertificateField("subject CN"))?;
            usable_cert_name(cn, "subject CN")
        }
        // Which CN is "the" CN differs between libraries: refuse.
        (Some(_), Some(_)) => Err(IdentityError::CertificateField("subject CN")),
    }
}

fn usable_cert_name(name: &str, field: &'static str) -> Result<String, IdentityError> {
    if is_usable_name(name) {
        Ok(name.to_owned())
    } else {
        Err(IdentityError::CertificateField(field))
    }
}

/// base64url (unpadded) SHA-256 of the certificate DER: the value a session
/// is bound to, so that a different certificate with the same name is a
/// different session. Same form as the `x5t#S256` JWK/JWT member.
pub fn cert_thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}
