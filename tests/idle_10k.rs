//! 10,000 idle connections (issue 14, exhaustion) against a real
//! `stepgate serve` process: the attacker opens them from ten 127.x
//! addresses and never sends a byte. A well-behaved client from another
//! address is still served, the connection over `limits.max_connections`
//! is refused at once (closed at accept, never left in its handshake),
//! the gateway's memory stays bounded, and the slots come back when the
//! idle connections go. The gateway runs as its own process so the 10,000
//! server-side sockets are not counted against this process's file limit.
//! Nothing is timed: waits only guard against a hang.

mod common;

use common::*;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const IDLE: usize = 10_000;
/// Room for the idle ones plus a few well-behaved connections.
const MAX_CONNECTIONS: usize = IDLE + 100;

/// Only a guard against a hang, never a measurement.
const HANG_GUARD: Duration = Duration::from_secs(30);

struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (children
/// inherit it) and returns that limit.
fn raise_nofile() -> u64 {
    let script = format!(
        "import resource; s, h = resource.getrlimit(resource.RLIMIT_NOFILE); \
         resource.prlimit({}, resource.RLIMIT_NOFILE, (h, h)); print(h)",
        std::process::id()
    );
    let out = Command::new(python()).args(["-c", &script]).output().expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a limit")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn serve(upstream: SocketAddr, pki: &Pki) -> (Served, SocketAddr) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-idle-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("cert.pem"), &pki.cert_pem).expect("write");
    stepgate::keys::write_private(&dir.join("key.pem"), pki.key_pem.as_bytes()).expect("write");
    let (_, pem) = stepgate::assertion::generate_signing_key();
    stepgate::keys::write_private(&dir.join("assertion.pem"), pem.as_bytes()).expect("write");
    let port = free_port();
    let config = format!(
        "listen: 127.0.0.1:{port}
tls: {{ cert: cert.pem, key: key.pem }}
upstream: http://{upstream}
session: {{ cookie: SESSIONID }}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: legacy }}
limits: {{ max_connections: {MAX_CONNECTIONS}, tls_handshake_timeout: 300s, header_read_timeout: 300s }}
routes:
  - name: transfer
    match: {{ methods: [POST], path: /api/transfers }}
"
    );
    std::fs::write(dir.join("routes.yaml"), config).expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["serve", "--config"])
        .arg(dir.join("routes.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stepgate");
    let served = Served(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..400 {
        if TcpStream::connect(addr).await.is_ok() {
            return (served, addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("stepgate did not start listening");
}

async fn tcp_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind the client address");
    socket.connect(to).await.expect("connect")
}

async fn handshake(addr: SocketAddr, pki: &Pki) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = tcp_from(Ipv4Addr::new(127, 0, 0, 60), addr).await;
    let connector = tokio_rustls::TlsConnector::from(pki.client_config(&[b"http/1.1"]));
    tokio::time::timeout(
        HANG_GUARD,
        connector.connect(ServerName::try_from("localhost").expect("name"), tcp),
    )
    .await
    .expect("a connection must never hang in its handshake")
}

/// A pass-through and a sensitive request from 127.0.0.60, each on its
/// own connection.
async fn bystander_is_served(addr: SocketAddr, pki: &Pki, up: &Upstream) {
    let before = up.count("/public");
    let mut tls = handshake(addr, pki).await.expect("the bystander gets in");
    tls.write_all(&request("GET", "/public", &[], b""))
        .await
        .expect("write");
    assert_eq!(read_response(&mut tls).await.status, 200);
    assert_eq!(up.count("/public"), before + 1);

    let mut tls = handshake(addr, pki).await.expect("the bystander gets in");
    let req = request("POST", "/api/transfers", &[("cookie", "SESSIONID=b")], b"{}");
    tls.write_all(&req).await.expect("write");
    let resp = read_response(&mut tls).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "step_up_required");
}

#[tokio::test]
async fn ten_thousand_idle_connections_leave_others_served_and_the_next_over_the_limit_refused() {
    let hard = raise_nofile();
    // This process holds the idle connections and the upstream's sockets.
    if hard < (MAX_CONNECTIONS + 500) as u64 {
        eprintln!(
            "SKIPPED: RLIMIT_NOFILE hard limit {hard} is below the {} this test needs",
            MAX_CONNECTIONS + 500
        );
        return;
    }
    let up = Upstream::start().await;
    let pki = Pki::new();
    let (served, addr) = serve(up.addr, &pki).await;
    let pid = served.0.id();
    let rss_before = rss_kib(pid);

    let mut idle = Vec::with_capacity(MAX_CONNECTIONS);
    for i in 0..IDLE {
        let source = Ipv4Addr::new(127, 0, 1, 2 + (i % 10) as u8);
        idle.push(tcp_from(source, addr).await);
    }
    bystander_is_served(addr, &pki, &up).await;

    // Fill the limit; the connections above are closed at accept, so
    // the first refused handshake shows the limit is reached.
    let mut refused = false;
    for _ in 0..(MAX_CONNECTIONS - IDLE + 50) {
        match handshake(addr, &pki).await {
            Ok(tls) => idle.push(tls.into_inner().0),
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "a connection over limits.max_connections is refused");
    assert!(
        idle.len() <= MAX_CONNECTIONS,
        "{} connections were let in over a limit of {MAX_CONNECTIONS}",
        idle.len()
    );
    let rss_full = rss_kib(pid);
    eprintln!(
        "{} idle connections: gateway RSS {} -> {} MiB ({} bytes a connection)",
        idle.len(),
        rss_before >> 10,
        rss_full >> 10,
        (rss_full.saturating_sub(rss_before) << 10) / idle.len() as u64
    );
    assert!(
        (rss_full.saturating_sub(rss_before) << 10) / (idle.len() as u64) < 64 << 10,
        "an idle connection costs the gateway under 64 KiB"
    );

    // The idle ones go: their slots come back once the gateway has seen
    // them close; until then a new connection may be refused, never hung.
    drop(idle);
    let mut back = false;
    for _ in 0..500 {
        if handshake(addr, &pki).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "the freed slots admit new connections");
    bystander_is_served(addr, &pki, &up).await;
    let mut served = served;
    assert!(matches!(served.0.try_wait(), Ok(None)), "the gateway is still running");
}
