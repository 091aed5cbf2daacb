//! TLS termination: rustls with HTTP/2 and HTTP/1.1 offered by ALPN, and
//! optional client certificates for workloads; and the client side towards
//! an `https://` upstream.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientCa(String),
}

fn file_err(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate found"));
    }
    Ok(certs)
}

pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c)?;
            }
            // Certificates are optional at the TLS layer: people use
            // cookies, workloads present a certificate. A certificate that
            // is presented must chain to the configured CA.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side towards an `https://` upstream: only the configured CA
/// is trusted, the certificate must name `server_name` (rustls checks the
/// name; nothing here turns that off), HTTP/1.1 by ALPN, and the client
/// certificate when one is configured. Every file is read now, so a
/// missing or unreadable one stops `check`, start and reload alike.
pub fn upstream_client_config(
    t: &crate::config::UpstreamTls,
) -> Result<(Arc<ClientConfig>, ServerName<'static>), TlsError> {
    let mut roots = RootCertStore::empty();
    // A bundle such as the system store may hold a certificate webpki
    // cannot use; the others still count, but at least one must.
    let (added, _) = roots.add_parsable_certificates(load_certs(&t.ca)?);
    if added == 0 {
        return Err(file_err(&t.ca, "no usable CA certificate"));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match &t.client {
        Some((cert, key)) => {
            let certs = load_certs(cert)?;
            let der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
            builder
                .with_client_auth_cert(certs, der)
                .map_err(|e| file_err(key, e))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(t.server_name.clone()).map_err(|e| TlsError::File {
        path: "upstream_tls.server_name".into(),
        message: e.to_string(),
    })?;
    Ok((Arc::new(config), name))
}
