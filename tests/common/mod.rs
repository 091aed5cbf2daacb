//! Test harness: a real TLS gateway on 127.0.0.1:0 in front of a real
//! upstream HTTP server (a recorder task on its own socket), test PKI made
//! with rcgen, a raw HTTP/1.1-over-TLS client for byte-exact requests, and
//! a hyper client for HTTP/2.
#![allow(dead_code)]

pub mod authenticator;
pub mod panics;
pub mod redis;
pub mod story;
pub mod upstreams;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use p256::ecdsa::SigningKey;
use rustls::pki_types::{CertificateDer, ServerName};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stepgate::clock::SystemClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// The Python the tests run: the checkout's `.venv` (scripts/test-env)
/// when present, else `python3` from PATH.
pub fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

// ---------------------------------------------------------------- upstream

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// A real HTTP/1.1 upstream on its own socket that records every request.
/// Paths: `/ws` upgrades to a WebSocket echo; `/download/N` streams N
/// bytes; `/slow` answers after 1.5 s; `/close` answers and closes the
/// connection; anything else answers 200 with a JSON summary of what arrived.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    /// TCP connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let rec = seen.clone();
        let connections: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let accepted = connections.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| upstream_handle(rec.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            connections,
            stop: Some(stop),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn count(&self, path_prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.target.starts_with(path_prefix))
            .count()
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn upstream_handle(
    rec: Arc<Mutex<Vec<Recorded>>>,
    mut req: Request<Incoming>,
) -> Result<Response<UpBody>, Infallible> {
    let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    if target == "/ws" {
        let key = req.headers().get("sec-websocket-key").cloned();
        let on = hyper::upgrade::on(&mut req);
        rec.lock().expect("lock").push(Recorded {
            method: req.method().to_string(),
            target: target.clone(),
            headers: req.headers().clone(),
            body: Bytes::new(),
        });
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                use futures_util::{SinkExt, StreamExt};
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(up),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            }
        });
        let accept = key
            .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()))
            .unwrap_or_default();
        let resp = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(Full::new(Bytes::new()).boxed())
            .expect("response");
        return Ok(resp);
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let len = body.len();
    rec.lock().expect("lock").push(Recorded {
        method: parts.method.to_string(),
        target: target.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if let Some(n) = target.strip_prefix("/download/") {
        let n: usize = n.parse().unwrap_or(0);
        let chunks = (0..n.div_ceil(65536)).map(move |i| {
            let size = (n - i * 65536).min(65536);
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![(i % 251) as u8; size])))
        });
        let stream = futures_util::stream::iter(chunks);
        return Ok(Response::new(StreamBody::new(stream).boxed()));
    }
    if target == "/slow" {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    if target == "/close" {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"bye")).boxed());
        resp.headers_mut().insert("connection", "close".parse().expect("hv"));
        return Ok(resp);
    }
    let summary = serde_json::json!({"method": parts.method.as_str(), "target": target, "len": len});
    let mut resp = Response::new(Full::new(Bytes::from(summary.to_string())).boxed());
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("hv"));
    resp.headers_mut().insert("x-upstream", "recorder".parse().expect("hv"));
    Ok(resp)
}

// --------------------------------------------------------------------- PKI

#[derive(Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "stepgate test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(cfg)
    }
}

// ----------------------------------------------------------------- gateway

/// An external step-up token issuer the gateway trusts.
#[derive(Clone)]
pub struct Issuer {
    pub key: SigningKey,
    pub kid: String,
    pub iss: String,
    pub aud: String,
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub pki: Pki,
    pub issuer: Issuer,
    pub gw: Arc<stepgate::proxy::Gateway>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The Redis this gateway keeps its state in, when the test started
    /// one for it (`STEPGATE_TEST_STATE=redis`).
    pub redis: Option<Arc<redis::RedisServer>>,
}

/// `STEPGATE_TEST_STATE=redis` runs every gateway the launcher starts on
/// a Redis of its own (unless the test configures `state:` itself).
fn state_from_env(extra: &str) -> Option<Arc<redis::RedisServer>> {
    let wanted = std::env::var("STEPGATE_TEST_STATE").ok()?;
    if wanted != "redis" || extra.lines().any(|l| l.starts_with("state:")) {
        return None;
    }
    Some(Arc::new(redis::RedisServer::start()))
}

/// Every test's trail is checked for the hold story invariants when its
/// gateway goes (unless the test already failed).
impl Drop for Gateway {
    fn drop(&mut self) {
        if self.task.is_some() && !std::thread::panicking() {
            story::running_invariants(&self.gw);
        }
    }
}

pub const DEFAULT_ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST, DELETE], path: '/admin/users/([^/]+)(/delete)?' }
    require: { methods: [token], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [token] }
    hold: { mode: hold, timeout: 3s }
  - name: console
    action: console.settings
    match: { prefix: /admin/settings, case_insensitive: true }
    require: { methods: [token] }
    hold: { mode: auto }
  - name: audit-only
    action: report.export
    match: { path: /reports/export }
    require: { methods: [token] }
    hold: { mode: shadow }
  - name: no-raw-sql
    match: { prefix: /admin/sql }
    deny: true
";

impl Gateway {
    /// Starts a gateway with `routes` (the YAML list under `routes:`) and
    /// `extra` top-level YAML, in front of `upstream`.
    pub async fn start(upstream: SocketAddr, routes: &str, extra: &str) -> Gateway {
        Self::start_with_clock(upstream, routes, extra, Arc::new(SystemClock)).await
    }

    /// Like [`Gateway::start`], on `clock`: a `ManualClock` lets a test
    /// move the gateway's time (windows, ages, expiry) without sleeping.
    pub async fn start_with_clock(
        upstream: SocketAddr,
        routes: &str,
        extra: &str,
        clock: Arc<dyn stepgate::clock::Clock>,
    ) -> Gateway {
        Self::start_inner(&format!("http://{upstream}"), routes, extra, clock, false)
            .await
            .0
    }

    /// Like [`Gateway::start`], in front of the upstream at `url` (an
    /// `https://` one, with its `upstream_tls:` in `extra`).
    pub async fn start_url(url: &str, routes: &str, extra: &str) -> Gateway {
        Self::start_inner(url, routes, extra, Arc::new(SystemClock), false)
            .await
            .0
    }

    /// Like [`Gateway::start`], served as `stepgate serve` does, by
    /// `run_per_core`, here with two listeners on different ports so a test
    /// chooses which serving thread a connection lands on: `addr` is the
    /// first, the returned address the second.
    pub async fn start_per_core(upstream: SocketAddr, routes: &str, extra: &str) -> (Gateway, SocketAddr) {
        let url = format!("http://{upstream}");
        let (gw, second) = Self::start_inner(&url, routes, extra, Arc::new(SystemClock), true).await;
        (gw, second.expect("second listener"))
    }

    async fn start_inner(
        upstream: &str,
        routes: &str,
        extra: &str,
        clock: Arc<dyn stepgate::clock::Clock>,
        per_core: bool,
    ) -> (Gateway, Option<SocketAddr>) {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("stepgate-test-{}", stepgate::ids::random_token()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let pki = Pki::new();
        std::fs::write(dir.join("cert.pem"), &pki.cert_pem).expect("write");
        std::fs::write(dir.join("key.pem"), &pki.key_pem).expect("write");
        let (_, pem) = stepgate::assertion::generate_signing_key();
        std::fs::write(dir.join("assertion.pem"), pem).expect("write");
        let (ikey, _) = stepgate::assertion::generate_signing_key();
        let jwk = stepgate::jose::jwk::public_jwk(ikey.verifying_key());
        let kid = jwk["kid"].as_str().expect("kid").to_owned();
        std::fs::write(
            dir.join("idp-jwks.json"),
            serde_json::json!({"keys": [jwk]}).to_string(),
        )
        .expect("write");
        let issuer = Issuer {
            key: ikey,
            kid,
            iss: "https://idp.test".into(),
            aud: "stepgate-test".into(),
        };
        let redis = state_from_env(extra);
        let state = redis.as_ref().map(|r| r.state_yaml()).unwrap_or_default();
        let text = format!(
            "listen: 127.0.0.1:0
tls: {{ cert: cert.pem, key: key.pem }}
upstream: {upstream}
session: {{ cookie: SESSIONID, header: Authorization }}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: legacy-admin, ttl: 60s }}
stepup:
  token_issuers: [ {{ issuer: 'https://idp.test', audience: stepgate-test, jwks: idp-jwks.json }} ]
{extra}
{state}routes:
{routes}"
        );
        std::fs::write(dir.join("routes.yaml"), &text).expect("write");
        let (Launched { addr, gw, stop, task }, second) = if per_core {
            let (l, second) = launch_per_core(&dir.join("routes.yaml"), clock).await;
            (l, Some(second))
        } else {
            (launch(&dir.join("routes.yaml"), clock).await, None)
        };
        if redis.is_some() {
            joined(&gw).await;
        }
        let gw = Gateway {
            addr,
            dir,
            pki,
            issuer,
            gw,
            stop: Some(stop),
            task: Some(task),
            redis,
        };
        (gw, second)
    }

    /// This gateway's files and clients, aimed at `addr` (the same config
    /// served by another process): the helpers that take a `Gateway` then
    /// talk to that one. The view checks no invariants when dropped.
    pub fn at(&self, addr: SocketAddr) -> Gateway {
        Gateway {
            addr,
            dir: self.dir.clone(),
            pki: self.pki.clone(),
            issuer: self.issuer.clone(),
            gw: self.gw.clone(),
            stop: None,
            task: None,
            redis: self.redis.clone(),
        }
    }

    /// Stops this gateway gracefully and starts it again from the same
    /// files (config, keys, audit trail): a restart.
    pub async fn restart(&mut self) {
        self.shutdown().await;
        let Launched { addr, gw, stop, task } = launch(&self.dir.join("routes.yaml"), Arc::new(SystemClock)).await;
        self.addr = addr;
        self.gw = gw;
        self.stop = Some(stop);
        self.task = Some(task);
    }

    /// Another instance with this one's config and keys (the same files),
    /// writing its own audit trail: two gateways behind one balancer.
    pub async fn peer(&self, clock: Arc<dyn stepgate::clock::Clock>) -> Gateway {
        let text = std::fs::read_to_string(self.dir.join("routes.yaml")).expect("config");
        assert!(
            !text.contains("\naudit:"),
            "peer() gives each instance its own audit trail"
        );
        let name = format!("peer-{}", stepgate::ids::random_token());
        let config = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&config, format!("{text}\naudit: {{ path: {name}-audit.jsonl }}\n")).expect("write");
        let Launched { addr, gw, stop, task } = launch(&config, clock).await;
        if text.contains("backend: redis") {
            joined(&gw).await;
        }
        Gateway {
            addr,
            dir: self.dir.clone(),
            pki: self.pki.clone(),
            issuer: self.issuer.clone(),
            gw,
            stop: Some(stop),
            task: Some(task),
            redis: self.redis.clone(),
        }
    }

    pub async fn default(upstream: SocketAddr) -> Gateway {
        Self::start(upstream, DEFAULT_ROUTES, "").await
    }

    /// Begins a graceful shutdown and waits until `run` returns; then
    /// every hold's story in the trail must have its ending.
    pub async fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
            if self.gw.shared_holds.is_some() {
                story::stopped_fleet_invariants(&self.gw);
            } else {
                story::audit_invariants(&self.gw.config().audit.path);
            }
        }
    }

    /// The records of `event` in this gateway's trail so far.
    pub fn audit_events(&self, event: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.gw.config().audit.path).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    pub fn sid(&self, session_value: &str) -> String {
        self.gw.session_key.sid(session_value.as_bytes()).as_str().to_owned()
    }

    /// A step-up token from the trusted issuer with `claims` merged over
    /// sane defaults (iss, aud, iat, exp = iat + 120, jti, sub).
    pub fn token(&self, claims: serde_json::Value) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs();
        let mut c = serde_json::json!({
            "iss": self.issuer.iss, "aud": self.issuer.aud, "iat": now, "exp": now + 120,
            "jti": stepgate::ids::random_token(), "sub": "alice",
        });
        if let (Some(base), Some(extra)) = (c.as_object_mut(), claims.as_object()) {
            for (k, v) in extra {
                if v.is_null() {
                    base.remove(k);
                } else {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        stepgate::jose::jws::mint_es256(&self.issuer.key, &self.issuer.kid, c)
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.gw.signer.jwks()
    }
}

/// Makes the private keys in a harness gateway's `dir` private (mode
/// 0600), as `stepgate serve` and `check` demand of real deployments.
pub fn private_keys(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for key in ["key.pem", "assertion.pem", "state/session.key"] {
        std::fs::set_permissions(dir.join(key), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

/// Waits until a gateway on a shared store has joined it (it serves only
/// then; a test that asks `/readyz` at once would race the join).
pub async fn joined(gw: &stepgate::proxy::Gateway) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gw.state.is_available() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway did not join its state store"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A gateway serving `config` on its configured address's port 0.
pub struct Launched {
    pub addr: SocketAddr,
    pub gw: Arc<stepgate::proxy::Gateway>,
    /// Send (or drop) to begin a graceful shutdown.
    pub stop: oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Loads `config` as `stepgate serve` would and runs it on 127.0.0.1:0.
pub async fn launch(config: &std::path::Path, clock: Arc<dyn stepgate::clock::Clock>) -> Launched {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    serve(config, clock, addr, Listeners::One(listener))
}

/// Like [`launch`], by `run_per_core` with two listeners (two serving
/// threads, each with its own runtime); returns the second's address too.
pub async fn launch_per_core(
    config: &std::path::Path,
    clock: Arc<dyn stepgate::clock::Clock>,
) -> (Launched, SocketAddr) {
    let listeners: Vec<_> = (0..2)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            l
        })
        .collect();
    let addr = listeners[0].local_addr().expect("addr");
    let second = listeners[1].local_addr().expect("addr");
    (serve(config, clock, addr, Listeners::PerCore(listeners)), second)
}

enum Listeners {
    One(TcpListener),
    PerCore(Vec<std::net::TcpListener>),
}

/// The part [`launch`] and [`launch_per_core`] share: load, then serve
/// until `stop` is sent or dropped.
fn serve(
    config: &std::path::Path,
    clock: Arc<dyn stepgate::clock::Clock>,
    addr: SocketAddr,
    listeners: Listeners,
) -> Launched {
    let cfg = stepgate::config::load(config).unwrap_or_else(|e| panic!("config: {e}"));
    let gw = stepgate::proxy::Gateway::load(cfg, clock).expect("gateway");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn({
        let gw = gw.clone();
        async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            // The configured drain, kept short for tests that leave connections open.
            let drain = gw.config().limits.drain.min(Duration::from_secs(5));
            match listeners {
                Listeners::One(l) => stepgate::proxy::run(gw, l, shutdown, drain).await,
                Listeners::PerCore(ls) => stepgate::proxy::run_per_core(gw, ls, shutdown, drain).await,
            }
            .expect("run");
        }
    });
    Launched { addr, gw, stop, task }
}

// ----------------------------------------------------------------- clients

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn error_code(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_owned()
    }
}

pub async fn tls_connect(addr: SocketAddr, pki: &Pki, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(pki.client_config(alpn));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake")
}

/// A TLS connection (HTTP/1.1) to `addr` from the loopback address
/// `source` (Linux routes all of 127/8 to lo), so the gateway sees a peer
/// other than 127.0.0.1: per-client budgets and rates are keyed by it.
pub async fn tls_from(source: &str, addr: SocketAddr, pki: &Pki) -> tokio_rustls::client::TlsStream<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let bind: std::net::IpAddr = source.parse().expect("source address");
    socket
        .bind(SocketAddr::new(bind, 0))
        .expect("bind a loopback source address");
    let tcp = socket.connect(addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(pki.client_config(&[b"http/1.1"]))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake")
}

/// [`raw`] from the loopback address `source` (see [`tls_from`]).
pub async fn raw_from(source: &str, addr: SocketAddr, pki: &Pki, request: &[u8]) -> RawResponse {
    let mut tls = tls_from(source, addr, pki).await;
    tls.write_all(request).await.expect("write");
    read_response(&mut tls).await
}

/// Sends `request` byte for byte over a fresh TLS connection (HTTP/1.1)
/// and reads one response (the server closes, or Content-Length ends it).
pub async fn raw(addr: SocketAddr, pki: &Pki, request: &[u8]) -> RawResponse {
    let mut tls = tls_connect(addr, pki, &[b"http/1.1"]).await;
    tls.write_all(request).await.expect("write");
    read_response(&mut tls).await
}

pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> RawResponse {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut tmp))
            .await
            .expect("response timeout")
            .unwrap_or(0);
        if n == 0 {
            panic!(
                "connection closed before response head: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < len {
            let n = s.read(&mut tmp).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..n]);
        }
        body.truncate(len);
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            if let Some(decoded) = dechunk(&body) {
                body = decoded;
                break;
            }
            let n = s.read(&mut tmp).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..n]);
        }
    } else if status != 101 && status != 204 && status != 304 {
        loop {
            let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut tmp))
                .await
                .map(|r| r.unwrap_or(0))
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..n]);
        }
    }
    RawResponse { status, headers, body }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Decodes a complete chunked body, or None if more bytes are needed.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let i = find(b, b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..i]).ok()?.split(';').next()?.trim(), 16).ok()?;
        b = &b[i + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// A convenience for the common request shape.
pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        r.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// An HTTP/2 (ALPN h2) client connection through the gateway.
pub async fn h2_client(addr: SocketAddr, pki: &Pki) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tls = tls_connect(addr, pki, &[b"h2"]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "gateway must offer h2 by ALPN"
    );
    let (send, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// Verifies an `X-StepUp-Assertion` against the gateway's JWKS and returns
/// its claims (header checks included).
pub fn verify_assertion(gw: &Gateway, token: &str) -> serde_json::Map<String, serde_json::Value> {
    let decoded = stepgate::jose::jws::decode(token).expect("decodes");
    assert_eq!(decoded.header.alg, "ES256");
    assert_eq!(decoded.header.typ.as_deref(), Some("stepup+jwt"));
    let jwks = stepgate::jose::Jwks::parse(&gw.jwks().to_string()).expect("jwks");
    let key = jwks.get(decoded.header.kid.as_deref()).expect("kid in JWKS");
    stepgate::jose::jws::verify_es256(&decoded, key).expect("signature verifies");
    decoded.claims
}

/// Seconds since the epoch by the system clock, as a test's own reference.
pub fn now_secs() -> u64 {
    stepgate::clock::unix_secs(std::time::SystemTime::now())
}

/// The transaction digest recomputed independently from what the upstream
/// received (SPEC §3), to compare with the assertion's `txn`.
pub fn txn_of(r: &Recorded, host: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let body_hash = URL_SAFE_NO_PAD.encode(Sha256::digest(&r.body));
    let input = format!(
        "{}\n{}\n{}\n{}",
        r.method,
        host.to_ascii_lowercase(),
        r.target,
        body_hash
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(input.as_bytes()))
}

/// A loopback port nobody listens on at the moment of asking (another
/// process may take it before the caller binds; callers that spawn a
/// server wait for it to accept).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Sets (or lifts, with `None`) RLIMIT_FSIZE on a running process, as a
/// full disk would: its next write past `limit` bytes of any file fails
/// with EFBIG after writing what fits. The process must ignore SIGXFSZ.
pub fn set_fsize(pid: u32, limit: Option<u64>) {
    let limit = limit.map_or("resource.RLIM_INFINITY".to_owned(), |l| l.to_string());
    let script =
        format!("import resource; resource.prlimit({pid}, resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))");
    let ok = std::process::Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3");
    assert!(ok.success(), "prlimit failed");
}

/// A spawned process that is killed and reaped when the test lets go of
/// it, however the test ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain-HTTP `GET path` against an admin listener: its status and body.
pub async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect admin");
    let req = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Writes what `stepgate serve` reads besides its config into `dir`: a TLS
/// certificate and key and an assertion key, readable by the owner only.
/// Returns the PKI a client trusts the certificate with.
pub fn serve_files(dir: &std::path::Path) -> Pki {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    let (_, pem) = stepgate::assertion::generate_signing_key();
    for (name, text) in [
        ("cert.pem", &pki.cert_pem),
        ("key.pem", &pki.key_pem),
        ("assertion.pem", &pem),
    ] {
        std::fs::write(dir.join(name), text).expect("write");
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    pki
}

/// `stepgate serve --config config` with SIGXFSZ ignored, so that a file
/// size limit set on it later ([`set_fsize`]) fails its writes the way a
/// full disk does instead of killing it; returned once it accepts on `addr`.
pub async fn serve_fault_ready(config: &std::path::Path, addr: SocketAddr) -> KillOnDrop {
    let child = KillOnDrop(
        std::process::Command::new("sh")
            .args(["-c", "trap '' XFSZ; exec \"$0\" serve --config \"$1\""])
            .arg(env!("CARGO_BIN_EXE_stepgate"))
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let started = std::time::Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the gateway never listened"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child
}
