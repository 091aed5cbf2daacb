//! Workload identity from a verified client certificate.

use super::*;

/// The workload identity of a client certificate that rustls has already
/// verified against the configured CA: its URI SAN (e.g. the SPIFFE ID
/// `spiffe://example.org/agent/payments`). The subject CN counts only where
/// `allow_cn` says so (`identity.cert: cn`), and never on a certificate
/// that has any SAN: a CA that issues DNS names lets requesters choose
/// their CN, so `CN=spiffe://corp/agent-a` with a DNS SAN is nobody.
///
/// An unusable or repeated name (an empty or control-character URI, two
/// URIs, several CNs) is an error, not a reason to fall back to another
/// field: the fallback would let a certificate choose which field speaks
/// for it.
///
/// # Errors
///
/// `CertificateParse`, `CertificateTrailingData`, `CertificateField` or
/// `NoCertificateIdentity`.
pub fn cert_identity(der: &[u8], allow_cn: bool) -> Result<String, IdentityError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| IdentityError::CertificateParse)?;
    if !rest.is_empty() {
        return Err(IdentityError::CertificateTrailingData);
    }

    // Errors when the extension is malformed or present twice.
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::CertificateField("subjectAltName"))?;
    if let Some(san) = san {
        let mut uris = san.value.general_names.iter().filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
        return match (uris.next(), uris.next()) {
            (Some(uri), None) => usable_cert_name(uri, "SAN URI"),
            // Which URI is "the" identity differs between verifiers.
            (Some(_), Some(_)) => Err(IdentityError::CertificateField("SAN URI")),
            // A SAN without a URI names no workload, whatever the CN says.
            (None, _) => Err(IdentityError::NoCertificateIdentity),
        };
    }
    if !allow_cn {
        return Err(IdentityError::NoCertificateIdentity);
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
