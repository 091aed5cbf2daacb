//! Client text in the logs (SPEC §7): the real binary, text and JSON logs,
//! an approver sign-in whose `name` carries a newline, a forged log line and
//! terminal escapes. Every stderr line must be one event.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const EVIL: &str =
    "x\nINFO stepgate::proxy::signin: approver signed in approver=bob method=\"totp\"\x1b]0;owned\x07\x1b[2J\u{202e}";

async fn run(format: &str) -> Vec<String> {
    let up = Upstream::start().await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-logs-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pki = Pki::new();
    std::fs::write(dir.join("cert.pem"), &pki.cert_pem).expect("cert");
    stepgate::keys::write_private(&dir.join("key.pem"), pki.key_pem.as_bytes()).expect("key");
    let (_, pem) = stepgate::assertion::generate_signing_key();
    stepgate::keys::write_private(&dir.join("assertion.pem"), pem.as_bytes()).expect("key");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    std::fs::write(
        dir.join("routes.yaml"),
        format!(
            "listen: 127.0.0.1:{port}
tls: {{ cert: cert.pem, key: key.pem }}
upstream: http://{}
session: {{ cookie: SESSIONID }}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: legacy }}
stepup:
  approvers: [ {{ name: bob, groups: [ops], key_sha256: '{}' }} ]
routes:
  - name: a
    match: {{ path: /a }}
",
            up.addr,
            "0".repeat(64)
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["--log-format", format, "serve", "--config"])
        .arg(dir.join("routes.yaml"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let body = serde_json::json!({"name": EVIL, "method": "totp", "code": "123456"}).to_string();
    let resp = raw(
        addr,
        &pki,
        &request(
            "POST",
            "/.stepup/approver/login",
            &[("content-type", "application/json")],
            body.as_bytes(),
        ),
    )
    .await;
    assert!(resp.status >= 400, "{}", resp.status);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let stderr = child.stderr.take().expect("stderr");
    let lines: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).collect();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
    lines
}

fn assert_clean(lines: &[String]) {
    assert!(
        lines.iter().any(|l| l.contains("sign-in refused")),
        "the refusal is logged: {lines:#?}"
    );
    for l in lines {
        // Every line is one event: it starts with the event's timestamp
        // (text) or is a JSON object; the payload's own "INFO …" never
        // starts a line.
        assert!(l.starts_with("20") || l.starts_with('{'), "forged line: {l:?}");
        for bad in ['\x1b', '\x07', '\u{202e}', '\r'] {
            assert!(!l.contains(bad), "raw {bad:?} in the log: {l:?}");
        }
    }
}

#[tokio::test]
async fn a_newline_in_a_sign_in_name_cannot_forge_a_text_log_line() {
    let lines = run("text").await;
    assert_clean(&lines);
}

#[tokio::test]
async fn a_newline_in_a_sign_in_name_cannot_forge_a_json_log_line() {
    let lines = run("json").await;
    assert_clean(&lines);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("not one JSON event: {l}"));
        if v["fields"]["message"] == "approver sign-in refused" {
            assert_eq!(v["fields"]["approver"], EVIL, "the value survives, escaped");
        }
    }
}
