//! The identity tests' own harness: a CA for client certificates (as a
//! workload platform would run one), a TLS client that presents them, and
//! a gateway from the common launcher with `tls.client_ca`, approvers and
//! an `identity:` block, which the common `Gateway::start` cannot express.
#![allow(dead_code)]

use crate::common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use stepgate::clock::SystemClock;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub const SPIFFE: &str = "spiffe://example.org/agent/payments";
pub const CAROL_KEY: &str = "carol-treasury-api-key-0123456789";
pub const DAVE_KEY: &str = "dave-treasury-api-key-9876543210";

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-identity-{tag}-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ------------------------------------------------------------ client PKI

/// A CA for client certificates, separate from the server's CA, as a
/// workload platform (SPIRE, a service mesh) would run it.
pub struct ClientCa {
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

/// A client certificate chain and its key, ready for rustls.
pub struct Workload {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

impl ClientCa {
    pub fn new(name: &str) -> ClientCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("ca cert");
        ClientCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    pub fn issue(&self, uri: Option<&str>, cn: Option<&str>) -> Workload {
        use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example Workloads");
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        if let Some(uri) = uri {
            params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("ia5 uri"))];
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        Workload {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A certificate with subject `CN=cn` and one DNS SAN.
    pub fn issue_dns(&self, cn: &str, dns: &str) -> Workload {
        use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = vec![SanType::DnsName(dns.try_into().expect("ia5 dns"))];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        Workload {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }
}

pub fn client_config(server: &Pki, cert: Option<&Workload>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.ca_der.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some(w) => builder
            .with_client_auth_cert(
                w.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(w.key_der.clone())),
            )
            .expect("client auth cert"),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

pub async fn connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// One HTTP/1.1 exchange over a fresh TLS connection presenting `cert`.
pub async fn send(addr: SocketAddr, server: &Pki, cert: Option<&Workload>, request: &[u8]) -> RawResponse {
    let mut tls = connect(addr, client_config(server, cert)).await.expect("handshake");
    tls.write_all(request).await.expect("write");
    read_response(&mut tls).await
}

// ------------------------------------------------------- mTLS gateway

/// A gateway like the harness's, but with `tls.client_ca` set, which the
/// harness's fixed `tls:` line cannot express.
pub struct MtlsGateway {
    pub addr: SocketAddr,
    pub server: Pki,
    pub gw: Arc<stepgate::proxy::Gateway>,
    pub _stop: oneshot::Sender<()>,
}

pub async fn start_mtls(upstream: SocketAddr, client_ca: &ClientCa, session: &str, routes: &str) -> MtlsGateway {
    start_gateway(upstream, client_ca, session, "{ mtls: true }", routes).await
}

/// `identity` is the YAML value of the top-level `identity:` key.
pub async fn start_gateway(
    upstream: SocketAddr,
    client_ca: &ClientCa,
    session: &str,
    identity: &str,
    routes: &str,
) -> MtlsGateway {
    let dir = temp_dir("mtls");
    let server = Pki::new();
    std::fs::write(dir.join("cert.pem"), &server.cert_pem).expect("write");
    std::fs::write(dir.join("key.pem"), &server.key_pem).expect("write");
    std::fs::write(dir.join("client-ca.pem"), &client_ca.pem).expect("write");
    let (_, pem) = stepgate::assertion::generate_signing_key();
    std::fs::write(dir.join("assertion.pem"), pem).expect("write");
    let text = format!(
        "listen: 127.0.0.1:0
tls: {{ cert: cert.pem, key: key.pem, client_ca: client-ca.pem }}
upstream: http://{upstream}
session: {session}
identity: {identity}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: legacy-admin, ttl: 60s }}
stepup:
  approvers:
    - {{ name: carol, groups: [treasury], key_sha256: '{carol}' }}
    - {{ name: dave, groups: [treasury], key_sha256: '{dave}' }}
routes:
{routes}",
        carol = sha256_hex(CAROL_KEY),
        dave = sha256_hex(DAVE_KEY),
    );
    std::fs::write(dir.join("routes.yaml"), &text).expect("write");
    let Launched { addr, gw, stop, .. } = launch(&dir.join("routes.yaml"), Arc::new(SystemClock)).await;
    MtlsGateway {
        addr,
        server,
        gw,
        _stop: stop,
    }
}

pub const WORKLOAD_ROUTE: &str = "
  - name: agent-transfer
    action: money.transfer
    match: { caller: workload, methods: [POST], path: /api/transfers }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: hold, timeout: 10s }
";

/// Verifies an assertion against the gateway's own JWKS (the harness's
/// `verify_assertion` wants the harness's gateway type).
pub fn assertion_claims(gw: &stepgate::proxy::Gateway, token: &str) -> serde_json::Map<String, Value> {
    let decoded = stepgate::jose::jws::decode(token).expect("decodes");
    assert_eq!(decoded.header.alg, "ES256");
    assert_eq!(decoded.header.typ.as_deref(), Some("stepup+jwt"));
    let jwks = stepgate::jose::Jwks::parse(&gw.signer.jwks().to_string()).expect("jwks");
    let key = jwks.get(decoded.header.kid.as_deref()).expect("kid in JWKS");
    stepgate::jose::jws::verify_es256(&decoded, key).expect("signature verifies");
    decoded.claims
}

impl MtlsGateway {
    pub async fn approver(&self, method: &str, target: &str, body: &[u8]) -> RawResponse {
        self.approver_as(CAROL_KEY, method, target, body).await
    }

    pub async fn approver_as(&self, key: &str, method: &str, target: &str, body: &[u8]) -> RawResponse {
        let auth = format!("Bearer {key}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        send(self.addr, &self.server, None, &request(method, target, &headers, body)).await
    }

    /// Approves hold `id` as carol, with `decision` as the body.
    pub async fn approve(&self, id: &str, decision: &Value) -> RawResponse {
        let body = decision.to_string();
        self.approver("POST", &format!("/.stepup/holds/{id}/approve"), body.as_bytes())
            .await
    }

    /// Polls the approver queue until exactly one hold shows up (the
    /// held request arrives on another task).
    pub async fn wait_for_one_hold(&self) -> Value {
        for _ in 0..200 {
            let resp = self.approver("GET", "/.stepup/holds", b"").await;
            assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
            let holds = resp.json()["holds"].as_array().cloned().unwrap_or_default();
            match holds.as_slice() {
                [] => tokio::time::sleep(Duration::from_millis(25)).await,
                [one] => return one.clone(),
                more => panic!("expected one hold, got {more:?}"),
            }
        }
        panic!("the held request never reached the approver queue");
    }

    /// Sends `request` with `cert` on its own task, as an agent that waits
    /// on its open connection for the decision.
    pub fn spawn_waiting(&self, cert: Workload, request: Vec<u8>) -> tokio::task::JoinHandle<RawResponse> {
        let (addr, cfg) = (self.addr, client_config(&self.server, Some(&cert)));
        tokio::spawn(async move {
            let mut tls = connect(addr, cfg).await.expect("handshake");
            tls.write_all(&request).await.expect("write");
            read_response(&mut tls).await
        })
    }
}

pub fn transfer(body: &[u8]) -> Vec<u8> {
    request("POST", "/api/transfers", &[("content-type", "application/json")], body)
}
