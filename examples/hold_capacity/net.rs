//! The bench's side of the wire: a TLS client for the gateway, a plain
//! HTTP client for its admin listener, and the recording upstream. Every
//! timestamp is an `Instant` of this process, so the approval call and the
//! upstream's arrival are read off one clock.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub type Client = SendRequest<Full<Bytes>>;

/// A test CA and a server certificate it signed, for the gateway's listener.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new() -> Result<Pki> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let params = CertificateParams::new(vec!["localhost".to_owned()])?;
        let cert = params.signed_by(&key, &rcgen::Issuer::new(ca_params, ca_key))?;
        Ok(Pki {
            ca: ca.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    pub fn connector(&self) -> Result<tokio_rustls::TlsConnector> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
    }
}

/// One HTTP/1.1 connection over TLS to the gateway, driven by its own task.
pub async fn connect_tls(addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> Result<Client> {
    connect_tls_from(addr, None, tls).await
}

/// One TLS connection from the loopback address `from` (any 127.0.0.0/8
/// address reaches the gateway): one source address has only about 28,000
/// ephemeral ports, fewer than the largest runs open.
pub async fn connect_tls_from(
    addr: SocketAddr,
    from: Option<std::net::Ipv4Addr>,
    tls: &tokio_rustls::TlsConnector,
) -> Result<Client> {
    let tcp = match from {
        None => TcpStream::connect(addr).await.context("connect to the gateway")?,
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((ip, 0).into()).context("bind a source address")?;
            socket.connect(addr).await.context("connect to the gateway")?
        }
    };
    tcp.set_nodelay(true)?;
    let stream = tls
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
        .context("TLS handshake with the gateway")?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// One plain HTTP/1.1 connection (the admin listener).
pub async fn connect_plain(addr: SocketAddr) -> Result<Client> {
    let tcp = TcpStream::connect(addr).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// Sends `req` and reads the whole answer.
pub async fn call(client: &mut Client, req: Request<Full<Bytes>>) -> Result<(u16, Bytes)> {
    client.ready().await?;
    let resp = client.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

pub fn request(method: &str, host: &str, target: &str, headers: &[(&str, &str)], body: Bytes) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(target).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if !body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    b.body(Full::new(body))
        .unwrap_or_else(|_| unreachable!("the bench builds valid requests"))
}

/// A request the upstream received: its target and when it arrived.
pub struct Arrival {
    pub target: String,
    pub at: Instant,
}

/// When the request for `target` reached the upstream (arrivals for other
/// targets, such as stragglers of an earlier phase, are skipped).
pub async fn arrival_of(arrivals: &mut mpsc::UnboundedReceiver<Arrival>, target: &str) -> Result<Instant> {
    loop {
        let a = tokio::time::timeout(std::time::Duration::from_secs(10), arrivals.recv())
            .await
            .context("the released request never reached the upstream")?
            .context("upstream stopped")?;
        if a.target == target {
            return Ok(a.at);
        }
    }
}

/// A real HTTP/1.1 upstream on 127.0.0.1 that reports every request's
/// arrival (taken as soon as hyper has parsed the request head) and
/// answers a small JSON body.
pub async fn upstream() -> Result<(SocketAddr, mpsc::UnboundedReceiver<Arrival>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let arrival = Arrival {
                        target: req.uri().path().to_owned(),
                        at: Instant::now(),
                    };
                    let _ = tx.send(arrival);
                    async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok((addr, rx))
}

/// A free port on 127.0.0.1 (bound and released; the gateway binds it next).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `name value` lines of a Prometheus text page, for metrics without labels
/// and for histogram buckets (`name{le="0.001"}`).
pub fn metric(page: &str, name: &str) -> Result<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .ok_or_else(|| anyhow!("metric {name} not on the page"))
}
