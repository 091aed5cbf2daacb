//! Who stepped up (SPEC §3 Identity): workload identity from client
//! certificates made by a test CA (SAN URI / SPIFFE ID, else CN) through a
//! hold-mode approval, `match.caller` routing, and session identity from a
//! verified JWT (ES256 bearer, RS256 cookie) that a step-up by anyone else
//! cannot satisfy — while an unverifiable JWT leaves the identity unknown.
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use stepgate::clock::SystemClock;
use stepup_kit::{enroll, now_secs, pyotp_now};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const SPIFFE: &str = "spiffe://example.org/agent/payments";
const CAROL_KEY: &str = "carol-treasury-api-key-0123456789";
const DAVE_KEY: &str = "dave-treasury-api-key-9876543210";

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-identity-{tag}-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ------------------------------------------------------------ client PKI

/// A CA for client certificates, separate from the server's CA, as a
/// workload platform (SPIRE, a service mesh) would run it.
struct ClientCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

/// A client certificate chain and its key, ready for rustls.
struct Workload {
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl ClientCa {
    fn new(name: &str) -> ClientCa {
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

    fn issue(&self, uri: Option<&str>, cn: Option<&str>) -> Workload {
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
    fn issue_dns(&self, cn: &str, dns: &str) -> Workload {
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

fn client_config(server: &Pki, cert: Option<&Workload>) -> Arc<rustls::ClientConfig> {
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

async fn connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// One HTTP/1.1 exchange over a fresh TLS connection presenting `cert`.
async fn send(addr: SocketAddr, server: &Pki, cert: Option<&Workload>, request: &[u8]) -> RawResponse {
    let mut tls = connect(addr, client_config(server, cert)).await.expect("handshake");
    tls.write_all(request).await.expect("write");
    read_response(&mut tls).await
}

// ------------------------------------------------------- mTLS gateway

/// A gateway like the harness's, but with `tls.client_ca` set, which the
/// harness's fixed `tls:` line cannot express.
struct MtlsGateway {
    addr: SocketAddr,
    server: Pki,
    gw: Arc<stepgate::proxy::Gateway>,
    _stop: oneshot::Sender<()>,
}

async fn start_mtls(upstream: SocketAddr, client_ca: &ClientCa, session: &str, routes: &str) -> MtlsGateway {
    start_gateway(upstream, client_ca, session, "{ mtls: true }", routes).await
}

/// `identity` is the YAML value of the top-level `identity:` key.
async fn start_gateway(
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

const WORKLOAD_ROUTE: &str = "
  - name: agent-transfer
    action: money.transfer
    match: { caller: workload, methods: [POST], path: /api/transfers }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: hold, timeout: 10s }
";

/// Verifies an assertion against the gateway's own JWKS (the harness's
/// `verify_assertion` wants the harness's gateway type).
fn assertion_claims(gw: &stepgate::proxy::Gateway, token: &str) -> serde_json::Map<String, Value> {
    let decoded = stepgate::jose::jws::decode(token).expect("decodes");
    assert_eq!(decoded.header.alg, "ES256");
    assert_eq!(decoded.header.typ.as_deref(), Some("stepup+jwt"));
    let jwks = stepgate::jose::Jwks::parse(&gw.signer.jwks().to_string()).expect("jwks");
    let key = jwks.get(decoded.header.kid.as_deref()).expect("kid in JWKS");
    stepgate::jose::jws::verify_es256(&decoded, key).expect("signature verifies");
    decoded.claims
}

impl MtlsGateway {
    async fn approver(&self, method: &str, target: &str, body: &[u8]) -> RawResponse {
        self.approver_as(CAROL_KEY, method, target, body).await
    }

    async fn approver_as(&self, key: &str, method: &str, target: &str, body: &[u8]) -> RawResponse {
        let auth = format!("Bearer {key}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        send(self.addr, &self.server, None, &request(method, target, &headers, body)).await
    }

    /// Polls the approver queue until exactly one hold shows up (the
    /// held request arrives on another task).
    async fn wait_for_one_hold(&self) -> Value {
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
    fn spawn_waiting(&self, cert: Workload, request: Vec<u8>) -> tokio::task::JoinHandle<RawResponse> {
        let (addr, cfg) = (self.addr, client_config(&self.server, Some(&cert)));
        tokio::spawn(async move {
            let mut tls = connect(addr, cfg).await.expect("handshake");
            tls.write_all(&request).await.expect("write");
            read_response(&mut tls).await
        })
    }
}

fn transfer(body: &[u8]) -> Vec<u8> {
    request("POST", "/api/transfers", &[("content-type", "application/json")], body)
}

// ------------------------------------------------------------ mTLS tests

#[tokio::test]
async fn spiffe_workload_is_held_until_a_human_approves_then_forwarded_once() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_mtls(up.addr, &ca, "{ mtls: true }", WORKLOAD_ROUTE).await;
    let body = br#"{"amount":250000,"payee":"ACME"}"#;
    let waiting = gw.spawn_waiting(ca.issue(Some(SPIFFE), Some("payments-agent")), transfer(body));

    let hold = gw.wait_for_one_hold().await;
    assert_eq!(hold["requester"], SPIFFE, "the SAN URI wins over the CN: {hold}");
    assert_eq!(hold["route"], "agent-transfer");
    assert_eq!(hold["method"], "POST");
    assert_eq!(hold["target"], "/api/transfers");
    let id = hold["hold_id"].as_str().expect("hold id").to_owned();
    let txn = hold["txn"].as_str().expect("txn").to_owned();
    assert_eq!(up.requests().len(), 0, "nothing goes upstream before the approval");
    assert!(!waiting.is_finished(), "a hold-mode caller keeps waiting");

    // The session is the certificate itself: the same SPIFFE ID under a
    // different key is someone else and cannot even see the hold.
    let twin = ca.issue(Some(SPIFFE), None);
    let peek = request("GET", &format!("/.stepup/holds/{id}"), &[], b"");
    let resp = send(gw.addr, &gw.server, Some(&twin), &peek).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.error_code(), "unknown_hold");

    // An approval for a different request than the one reviewed is refused.
    let wrong = json!({"txn": "x".repeat(43)}).to_string();
    let resp = gw
        .approver("POST", &format!("/.stepup/holds/{id}/approve"), wrong.as_bytes())
        .await;
    assert_eq!(resp.status, 409);
    assert_eq!(resp.error_code(), "txn_mismatch");
    assert_eq!(up.requests().len(), 0);

    let decision = json!({"txn": txn, "comment": "reviewed with the payee"}).to_string();
    let resp = gw
        .approver("POST", &format!("/.stepup/holds/{id}/approve"), decision.as_bytes())
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));

    let answered = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the waiting call is answered")
        .expect("task");
    assert_eq!(answered.status, 200, "{}", String::from_utf8_lossy(&answered.body));
    assert_eq!(answered.header("x-upstream"), Some("recorder"));

    let seen = up.requests();
    assert_eq!(seen.len(), 1, "released exactly once");
    let r = &seen[0];
    assert_eq!(&r.body[..], body);
    let claims = assertion_claims(&gw.gw, &r.header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], SPIFFE);
    assert_eq!(claims["txn"], txn);
    assert_eq!(claims["txn"], txn_of(r, "localhost"));
    assert_eq!(claims["hold"], id);
    let approvers = claims["approvers"].as_array().expect("approvers");
    assert_eq!(approvers.len(), 1, "{approvers:?}");
    assert_eq!(approvers[0]["sub"], "carol");

    // Approving again cannot forward it a second time.
    let again = gw
        .approver("POST", &format!("/.stepup/holds/{id}/approve"), decision.as_bytes())
        .await;
    assert_ne!(again.status, 200, "{}", String::from_utf8_lossy(&again.body));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn common_name_is_the_identity_only_where_configured_and_there_is_no_san() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_gateway(
        up.addr,
        &ca,
        "{ mtls: true }",
        "{ mtls: true, cert: cn }",
        WORKLOAD_ROUTE,
    )
    .await;
    let waiting = gw.spawn_waiting(ca.issue(None, Some("batch-payments")), transfer(br#"{"amount":5}"#));

    let hold = gw.wait_for_one_hold().await;
    assert_eq!(hold["requester"], "batch-payments");
    let decision = json!({"txn": hold["txn"]}).to_string();
    let id = hold["hold_id"].as_str().expect("hold id");
    let resp = gw
        .approver("POST", &format!("/.stepup/holds/{id}/approve"), decision.as_bytes())
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let answered = waiting.await.expect("task");
    assert_eq!(answered.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = assertion_claims(&gw.gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "batch-payments");

    // Without `cert: cn`, the same kind of certificate names nobody.
    let strict = start_mtls(up.addr, &ca, "{ mtls: true }", WORKLOAD_ROUTE).await;
    let cn_only = ca.issue(None, Some("batch-payments"));
    let resp = send(
        strict.addr,
        &strict.server,
        Some(&cn_only),
        &transfer(br#"{"amount":5}"#),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "no_identity");
    assert_eq!(up.requests().len(), 1);
}

/// The attack of issue 21 #4: the trusted CA also issues DNS-named
/// certificates whose CN the requester chooses. `CN=spiffe://corp/agent-a`
/// with a DNS SAN must not be agent-a, not even with `cert: cn`.
#[tokio::test]
async fn a_common_name_spelling_a_spiffe_id_is_nobody_when_the_certificate_has_a_san() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_gateway(
        up.addr,
        &ca,
        "{ mtls: true }",
        "{ mtls: true, cert: cn }",
        WORKLOAD_ROUTE,
    )
    .await;
    let forged = ca.issue_dns("spiffe://corp/agent-a", "laptop.corp.example");
    let resp = send(gw.addr, &gw.server, Some(&forged), &transfer(br#"{"amount":5}"#)).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "no_identity");
    let queue = gw.approver("GET", "/.stepup/holds", b"").await.json();
    assert_eq!(queue["holds"], json!([]), "no hold names agent-a");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused_at_the_handshake() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_mtls(up.addr, &ca, "{ mtls: true }", WORKLOAD_ROUTE).await;
    // One CA nobody configured, and one that also copies the real CA's name
    // (the verifier then finds an issuer by name whose signature fails).
    for rogue_ca in [ClientCa::new("someone else's CA"), ClientCa::new("workload CA")] {
        let rogue = rogue_ca.issue(Some(SPIFFE), Some("payments-agent"));
        // Under TLS 1.3 the client finishes its side before the server has
        // judged the certificate, so the refusal arrives as an alert on the
        // first read. Nothing is written first: data the server never read
        // would turn its close into a reset that can swallow the alert.
        let error = match connect(gw.addr, client_config(&gw.server, Some(&rogue))).await {
            Err(e) => e.to_string(),
            Ok(mut tls) => {
                let mut got = Vec::new();
                match tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await {
                    Err(_) => panic!("the server accepted a rogue certificate and awaits a request"),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => panic!("closed without an alert: {:?}", String::from_utf8_lossy(&got)),
                }
            }
        };
        assert!(error.contains("alert"), "expected a TLS alert, got: {error}");
    }

    // The same name from the configured CA is accepted by the handshake.
    let genuine = ca.issue(Some(SPIFFE), Some("payments-agent"));
    let ok = send(
        gw.addr,
        &gw.server,
        Some(&genuine),
        &request("GET", "/status", &[], b""),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(up.requests().len(), 1, "only the genuine workload got through");
}

#[tokio::test]
async fn denied_workload_request_is_refused_on_its_open_connection_and_never_forwarded() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_mtls(up.addr, &ca, "{ mtls: true }", WORKLOAD_ROUTE).await;
    let waiting = gw.spawn_waiting(ca.issue(Some(SPIFFE), None), transfer(br#"{"amount":9}"#));
    let hold = gw.wait_for_one_hold().await;
    let id = hold["hold_id"].as_str().expect("hold id");
    let decision = json!({"txn": hold["txn"], "comment": "unknown payee"}).to_string();
    let resp = gw
        .approver("POST", &format!("/.stepup/holds/{id}/deny"), decision.as_bytes())
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let answered = waiting.await.expect("task");
    assert_eq!(answered.status, 403);
    assert_eq!(answered.error_code(), "step_up_denied");
    assert_eq!(up.requests().len(), 0);
}

/// Challenge mode everywhere, so each answer names the route at once. The
/// two paths list their routes in opposite orders, so reaching the second
/// route proves the first one did not match.
const CALLER_ROUTES: &str = "
  - name: agent-transfer
    action: money.transfer.agent
    match: { caller: workload, methods: [POST], path: /api/transfers }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
  - name: person-transfer
    action: money.transfer.person
    match: { caller: person, methods: [POST], path: /api/transfers }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
  - name: person-payout
    action: money.payout.person
    match: { caller: person, methods: [POST], path: /api/payouts }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
  - name: agent-payout
    action: money.payout.agent
    match: { caller: workload, methods: [POST], path: /api/payouts }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
";

/// Workloads are named by their certificate, people by the SSO proxy in
/// front (approvals alone decide these routes, so the gateway refuses a
/// requester nobody named). The value continues the `identity:` line.
const PEOPLE_AND_WORKLOADS: &str = "{ mtls: true, header: X-Remote-User }\ntrusted_proxies: [127.0.0.1/32]";

#[tokio::test]
async fn caller_kind_selects_the_route_for_people_and_for_workloads() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let session = "{ cookie: SESSIONID, mtls: true }";
    let gw = start_gateway(up.addr, &ca, session, PEOPLE_AND_WORKLOADS, CALLER_ROUTES).await;
    let agent = ca.issue(Some(SPIFFE), None);
    let cookie = [("cookie", "SESSIONID=alice-session"), ("x-remote-user", "alice")];
    let route_of = |resp: &RawResponse| {
        assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
        resp.json()["route"].as_str().unwrap_or("").to_owned()
    };

    let person = request("POST", "/api/transfers", &cookie, b"{}");
    let resp = send(gw.addr, &gw.server, None, &person).await;
    assert_eq!(route_of(&resp), "person-transfer", "the workload route skips a person");
    let resp = send(gw.addr, &gw.server, Some(&agent), &transfer(b"{}")).await;
    assert_eq!(route_of(&resp), "agent-transfer");

    let payout = request("POST", "/api/payouts", &[], b"{}");
    let resp = send(gw.addr, &gw.server, Some(&agent), &payout).await;
    assert_eq!(route_of(&resp), "agent-payout", "the person route skips a workload");
    let payout = request("POST", "/api/payouts", &cookie, b"{}");
    let resp = send(gw.addr, &gw.server, None, &payout).await;
    assert_eq!(route_of(&resp), "person-payout");

    // Without a certificate the caller is a person even with no cookie: the
    // person route takes it, and it has no session there.
    let resp = send(gw.addr, &gw.server, None, &transfer(b"{}")).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error_code(), "no_session");
    assert_eq!(up.requests().len(), 0, "every request here was held or refused");
}

/// The caller kind is the client's choice (certificates are optional at
/// the handshake), so it may pick between routes but never turn a covered
/// path into an open one: an agent that drops its certificate must not
/// skip the approval its route demands.
#[tokio::test]
async fn dropping_the_certificate_does_not_skip_a_workload_route() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_mtls(up.addr, &ca, "{ mtls: true }", WORKLOAD_ROUTE).await;
    let resp = send(gw.addr, &gw.server, None, &transfer(br#"{"amount":250000}"#)).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "no_session");
    assert_eq!(
        up.requests().len(),
        0,
        "a certificate-less transfer was forwarded unapproved"
    );
}

#[tokio::test]
async fn a_route_for_the_other_caller_kind_applies_when_none_is_for_yours() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let routes = "
  - name: console
    action: console.write
    match: { caller: person, methods: [POST], prefix: /console }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
  - name: agent-jobs
    action: jobs.run
    match: { caller: workload, methods: [POST], prefix: /jobs }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
";
    let session = "{ cookie: SESSIONID, mtls: true }";
    let gw = start_gateway(up.addr, &ca, session, PEOPLE_AND_WORKLOADS, routes).await;
    let agent = ca.issue(Some(SPIFFE), None);
    let cookie = [("cookie", "SESSIONID=alice-session"), ("x-remote-user", "alice")];

    let resp = send(
        gw.addr,
        &gw.server,
        Some(&agent),
        &request("POST", "/console/x", &[], b""),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["route"], "console");
    let resp = send(gw.addr, &gw.server, None, &request("POST", "/jobs/run", &cookie, b"")).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["route"], "agent-jobs");
    assert_eq!(up.requests().len(), 0);

    // Paths no route covers still pass for both kinds.
    let resp = send(gw.addr, &gw.server, Some(&agent), &request("POST", "/other", &[], b"")).await;
    assert_eq!(resp.status, 200);
    let resp = send(gw.addr, &gw.server, None, &request("POST", "/other", &cookie, b"")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.count("/other"), 2);
}

// ------------------------------------------------------------- JWT identity

/// The identity provider that signs the legacy app's session JWTs.
struct Idp {
    key: p256::ecdsa::SigningKey,
    kid: String,
    jwks_path: PathBuf,
}

impl Idp {
    fn new() -> Idp {
        let (key, _) = stepgate::assertion::generate_signing_key();
        let jwk = stepgate::jose::jwk::public_jwk(key.verifying_key());
        let kid = jwk["kid"].as_str().expect("kid").to_owned();
        let jwks_path = temp_dir("idp").join("idp.json");
        std::fs::write(&jwks_path, json!({"keys": [jwk]}).to_string()).expect("write");
        Idp { key, kid, jwks_path }
    }

    fn claims(sub: &str) -> Value {
        let now = now_secs();
        json!({"iss": "https://login.test", "aud": "legacy", "sub": sub, "iat": now, "exp": now + 600})
    }

    fn jwt(&self, claims: Value) -> String {
        stepgate::jose::jws::mint_es256(&self.key, &self.kid, claims)
    }
}

/// The `identity:` value for session JWTs from the test IdP.
fn jwt_identity(jwks: &Path, cookie: Option<&str>) -> String {
    let cookie = cookie.map(|c| format!(", cookie: {c}")).unwrap_or_default();
    format!(
        "{{ jwt: {{ issuer: 'https://login.test', audience: legacy, jwks: '{}'{cookie} }} }}",
        jwks.display()
    )
}

fn identity_config(jwks: &Path, cookie: Option<&str>) -> String {
    format!("identity: {}", jwt_identity(jwks, cookie))
}

const PERSON_ROUTE: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)' }
    require: { methods: [totp, token], max_age: 5m }
    hold: { mode: challenge, timeout: 1m }
";

/// Holds `POST /admin/users/carol` for the session in `headers`.
async fn challenge(gw: &Gateway, headers: &[(&str, &str)]) -> Value {
    let resp = raw(gw.addr, &gw.pki, &request("POST", "/admin/users/carol", headers, b"")).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    let ch = resp.json();
    assert_eq!(ch["error"], "step_up_required");
    ch
}

async fn complete(gw: &Gateway, headers: &[(&str, &str)], ch: &Value, proof: Value) -> RawResponse {
    let hold = ch["hold_id"].as_str().expect("hold id");
    let mut headers = headers.to_vec();
    headers.push(("content-type", "application/json"));
    let body = proof.to_string();
    raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            &format!("/.stepup/holds/{hold}/complete"),
            &headers,
            body.as_bytes(),
        ),
    )
    .await
}

fn token_proof(gw: &Gateway, ch: &Value, sub: &str) -> Value {
    let token = gw.token(json!({"sid": ch["sid"], "txn": ch["txn"], "sub": sub}));
    json!({"method": "token", "token": token})
}

/// On a hold whose session names `owner`, a token proof for `other` is
/// refused and releases nothing; the owner's own proof then releases the
/// request once, asserted as `owner`.
async fn only_the_owner_completes(
    up: &Upstream,
    gw: &Gateway,
    session: &[(&str, &str)],
    ch: &Value,
    owner: &str,
    other: &str,
) {
    let resp = complete(gw, session, ch, token_proof(gw, ch, other)).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.requests().len(), 0);

    let resp = complete(gw, session, ch, token_proof(gw, ch, owner)).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], owner);
}

#[tokio::test]
async fn es256_bearer_identity_refuses_a_totp_step_up_by_anyone_else() {
    let up = Upstream::start().await;
    let idp = Idp::new();
    let gw = Gateway::start(up.addr, PERSON_ROUTE, &identity_config(&idp.jwks_path, None)).await;
    let bob = enroll(&gw.dir, "bob");
    let alice = enroll(&gw.dir, "alice");

    let bob_code = pyotp_now(&bob);
    let bearer = format!("Bearer {}", idp.jwt(Idp::claims("alice")));
    let session = [("authorization", bearer.as_str())];
    let ch = challenge(&gw, &session).await;

    let by_bob = json!({"method": "totp", "user": "bob", "code": bob_code});
    let resp = complete(&gw, &session, &ch, by_bob.clone()).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert!(resp.json()["attempts_left"].is_number());
    assert_eq!(up.requests().len(), 0, "bob's code does not release alice's request");

    let by_alice = json!({"method": "totp", "user": "alice", "code": pyotp_now(&alice)});
    let resp = complete(&gw, &session, &ch, by_alice).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["amr"], json!(["otp"]));
    assert_eq!(claims["txn"], ch["txn"]);

    // With an identity source configured, a session that carries no
    // identity is refused outright (SPEC §3), whoever would step up.
    let anonymous = [("cookie", "SESSIONID=shared-admin-account")];
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/admin/users/carol", &anonymous, b""),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "no_identity");
    drop(by_bob);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn es256_bearer_identity_also_binds_token_proofs() {
    let up = Upstream::start().await;
    let idp = Idp::new();
    let gw = Gateway::start(up.addr, PERSON_ROUTE, &identity_config(&idp.jwks_path, None)).await;
    let bearer = format!("Bearer {}", idp.jwt(Idp::claims("alice")));
    let session = [("authorization", bearer.as_str())];
    let ch = challenge(&gw, &session).await;

    only_the_owner_completes(&up, &gw, &session, &ch, "alice", "bob").await;
}

#[tokio::test]
async fn an_unverifiable_identity_jwt_is_no_identity() {
    let up = Upstream::start().await;
    let idp = Idp::new();
    let gw = Gateway::start(up.addr, PERSON_ROUTE, &identity_config(&idp.jwks_path, None)).await;
    let impostor = Idp::new();
    let now = now_secs();

    let mut expired = Idp::claims("alice");
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut wrong_issuer = Idp::claims("alice");
    wrong_issuer["iss"] = json!("https://elsewhere.test");
    let mut wrong_audience = Idp::claims("alice");
    wrong_audience["aud"] = json!("another-app");
    let cases = [
        ("expired", idp.jwt(expired)),
        // The configured kid, another key's signature.
        (
            "wrongly signed",
            stepgate::jose::jws::mint_es256(&impostor.key, &idp.kid, Idp::claims("alice")),
        ),
        ("wrong issuer", idp.jwt(wrong_issuer)),
        ("wrong audience", idp.jwt(wrong_audience)),
    ];
    for (case, jwt) in &cases {
        let bearer = format!("Bearer {jwt}");
        let session = [("authorization", bearer.as_str())];
        // An identity source that yields nothing is refused, never read as
        // "unknown" (which would let anyone step up on the session).
        let resp = raw(gw.addr, &gw.pki, &request("POST", "/admin/users/carol", &session, b"")).await;
        assert_eq!(resp.status, 401, "{case}: {}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.error_code(), "no_identity", "{case}");
    }
    assert!(up.requests().is_empty());

    // Control: the same gateway does refuse bob for a verified alice.
    let bearer = format!("Bearer {}", idp.jwt(Idp::claims("alice")));
    let session = [("authorization", bearer.as_str())];
    let ch = challenge(&gw, &session).await;
    let resp = complete(&gw, &session, &ch, token_proof(&gw, &ch, "bob")).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error_code(), "invalid_proof");
    assert!(up.requests().is_empty());
}

// ------------------------------------------------------------ RS256 cookie

/// An RSA identity provider generated in-test with aws-lc-rs.
struct RsaIdp {
    key: aws_lc_rs::rsa::KeyPair,
    jwks_path: PathBuf,
}

/// Splits one DER TLV off the front of `der`: (tag, contents, rest).
fn der_tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (der[0], der[1]);
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        let len = der[2..2 + n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    (tag, &der[header..header + len], &der[header + len..])
}

impl RsaIdp {
    fn new() -> RsaIdp {
        use aws_lc_rs::signature::KeyPair as _;
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa key");
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        let (tag, seq, _) = der_tlv(key.public_key().as_ref());
        assert_eq!(tag, 0x30);
        let (tag_n, n, rest) = der_tlv(seq);
        let (tag_e, e, _) = der_tlv(rest);
        assert_eq!((tag_n, tag_e), (0x02, 0x02));
        // DER keeps a sign byte on a modulus with its top bit set; JWK does not.
        let strip = |b: &[u8]| b.iter().position(|x| *x != 0).map_or(b.to_vec(), |i| b[i..].to_vec());
        let jwk = json!({"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256",
                         "n": URL_SAFE_NO_PAD.encode(strip(n)), "e": URL_SAFE_NO_PAD.encode(strip(e))});
        let jwks_path = temp_dir("idp-rsa").join("idp.json");
        std::fs::write(&jwks_path, json!({"keys": [jwk]}).to_string()).expect("write");
        RsaIdp { key, jwks_path }
    }

    fn jwt(&self, claims: Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa1"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("rsa sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

#[tokio::test]
async fn rs256_cookie_identity_refuses_another_prover_and_names_the_owner() {
    let up = Upstream::start().await;
    let idp = RsaIdp::new();
    let config = identity_config(&idp.jwks_path, Some("id_token"));
    let gw = Gateway::start(up.addr, PERSON_ROUTE, &config).await;
    // The legacy session cookie stays opaque; the identity rides next to it.
    let cookie = format!(
        "SESSIONID=opaque-legacy-session; id_token={}",
        idp.jwt(Idp::claims("alice"))
    );
    let session = [("cookie", cookie.as_str())];
    let ch = challenge(&gw, &session).await;
    assert_eq!(ch["sid"], gw.sid("opaque-legacy-session"));

    only_the_owner_completes(&up, &gw, &session, &ch, "alice", "bob").await;
}

// ------------------------------------------------ JWT identity + approvals

#[tokio::test]
async fn jwt_identity_is_the_requester_cannot_self_approve_and_is_the_assertion_sub() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let idp = Idp::new();
    let routes = "
  - name: payout
    action: money.payout
    match: { methods: [POST], path: /api/payouts }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 30s }
";
    let identity = jwt_identity(&idp.jwks_path, Some("id_token"));
    let gw = start_gateway(up.addr, &ca, "{ cookie: SESSIONID }", &identity, routes).await;
    // Carol is a treasury approver who also uses the app herself.
    let cookie = format!("SESSIONID=carol-session; id_token={}", idp.jwt(Idp::claims("carol")));
    let session = [("cookie", cookie.as_str())];
    let payout = request("POST", "/api/payouts", &session, br#"{"amount":70}"#);
    let resp = send(gw.addr, &gw.server, None, &payout).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    let id = resp.json()["hold_id"].as_str().expect("hold id").to_owned();

    let hold = gw.wait_for_one_hold().await;
    assert_eq!(hold["requester"], "carol");
    let decision = json!({"txn": hold["txn"]}).to_string();
    let approve = format!("/.stepup/holds/{id}/approve");
    // A different session, but the verified identity is the requester's.
    let resp = gw.approver_as(CAROL_KEY, "POST", &approve, decision.as_bytes()).await;
    assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "self_approval");

    let resp = gw.approver_as(DAVE_KEY, "POST", &approve, decision.as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.requests().len(), 0, "in challenge mode the requester collects");

    let collect = request(
        "POST",
        &format!("/.stepup/holds/{id}/complete"),
        &[("cookie", cookie.as_str()), ("content-type", "application/json")],
        b"{}",
    );
    let resp = send(gw.addr, &gw.server, None, &collect).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = assertion_claims(&gw.gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(
        claims["sub"], "carol",
        "the requester is accountable, the approver is listed"
    );
    let approvers: Vec<&str> = claims["approvers"]
        .as_array()
        .expect("approvers")
        .iter()
        .filter_map(|a| a["sub"].as_str())
        .collect();
    assert_eq!(approvers, ["dave"]);
}
