//! `stepgate demo` from an empty directory: it creates what it needs,
//! prints the URLs, both TOTP enrollments and what to try, and serves the
//! console through the gateway over TLS with its own dev certificate.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Ends the child (and with it the demo) however the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_demo_starts_in_a_fresh_directory_and_prints_what_to_try() {
    let dir = std::env::temp_dir().join(format!("stepgate-demo-test-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_stepgate"))
            .args(["demo", "--port", &port.to_string()])
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line.contains("audit verify") {
                break;
            }
        }
        let _ = tx.send(text);
    });
    let banner = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the demo prints its banner");
    for expected in [
        format!("https://localhost:{port}/ "),
        format!("https://localhost:{port}/.stepup/holds"),
        "otpauth://totp/stepgate:admin?secret=".into(),
        "otpauth://totp/stepgate:bob?secret=".into(),
        "stepgate enroll webauthn admin --config stepgate-demo/routes.yaml".into(),
        "stepgate-demo/state/console.jsonl".into(),
    ] {
        assert!(banner.contains(&expected), "{expected:?} missing from:\n{banner}");
    }
    let demo = dir.join("stepgate-demo");
    for file in [
        "routes.yaml",
        "certs/gateway.pem",
        "certs/assertion-key.pem",
        "state/users.yaml",
    ] {
        assert!(demo.join(file).exists(), "{file}");
    }
    let routes = std::fs::read_to_string(demo.join("routes.yaml")).unwrap();
    assert!(
        routes.contains(&format!("origins: [ \"https://localhost:{port}\" ]")),
        "{routes}"
    );
    assert!(routes.contains("methods: [webauthn, totp]"));

    // The gateway answers over TLS with the certificate it wrote.
    let pem = std::fs::read_to_string(demo.join("certs/gateway.pem")).unwrap();
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let pki = Pki {
        ca_pem: pem.clone(),
        ca_der: der.into(),
        cert_pem: String::new(),
        key_pem: String::new(),
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the demo listens");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login = raw(addr, &pki, &request("GET", "/", &[], b"")).await;
    assert_eq!(login.status, 200);
    assert!(String::from_utf8_lossy(&login.body).contains("Acme Admin"));
    let signin = raw(
        addr,
        &pki,
        &request("GET", "/.stepup/holds", &[("accept", "text/html")], b""),
    )
    .await;
    assert!(String::from_utf8_lossy(&signin.body).contains("Sign in with a passkey"));
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}
