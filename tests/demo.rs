//! `stepgate demo` from an empty directory: it creates what it needs,
//! prints the URLs, both TOTP enrollments and what to try, and serves the
//! console through the gateway over TLS with its own dev certificate. Its
//! routes file is the user's: SIGHUP and saving it reload it, and a
//! restart keeps the edits.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
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

#[tokio::test]
async fn the_demo_starts_in_a_fresh_directory_and_prints_what_to_try() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("stepgate-demo-test-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let (child, banner) = start_demo(&dir, port).await;
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
    let pki = demo_pki(&demo);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
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

/// Starts `stepgate demo` in `dir` and returns it once it has printed its
/// banner (up to the line naming the audit trail) and listens.
async fn start_demo(dir: &Path, port: u16) -> (Child, String) {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_stepgate"))
            .args(["demo", "--port", &port.to_string()])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        for line in lines.by_ref() {
            text.push_str(&line);
            text.push('\n');
            if line.contains("audit verify") {
                break;
            }
        }
        let _ = tx.send(text);
        // Keep reading so the demo never blocks on a full pipe.
        for _ in lines {}
    });
    let banner = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the demo prints its banner");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the demo listens");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, banner)
}

/// Trusts the demo's own development certificate.
fn demo_pki(demo: &Path) -> Pki {
    let pem = std::fs::read_to_string(demo.join("certs/gateway.pem")).unwrap();
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    Pki {
        ca_pem: pem,
        ca_der: der.into(),
        cert_pem: String::new(),
        key_pem: String::new(),
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.0.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig}");
}

fn events(trail: &Path, event: &str) -> usize {
    let needle = format!("\"event\":\"{event}\"");
    std::fs::read_to_string(trail)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn api_key(banner: &str) -> String {
    banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("API key for bob: "))
        .unwrap_or_else(|| panic!("no API key in:\n{banner}"))
        .to_owned()
}

#[tokio::test]
async fn sighup_reloads_the_demo_keeps_its_holds_and_a_restart_keeps_the_edits() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("demo-reload-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let demo = dir.join("stepgate-demo");
    let trail = demo.join("state/audit.jsonl");
    let port = free_port();
    let (mut child, banner) = start_demo(&dir, port).await;
    let pki = demo_pki(&demo);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Ten held deletes, each from its own session: enough records for a
    // signed checkpoint (the demo writes one every 10 records).
    let mut holds = Vec::new();
    for i in 0..10 {
        let cookie = format!("SESSIONID=demo-{i}");
        let held = raw(
            addr,
            &pki,
            &request(
                "POST",
                "/admin/users/carol/delete",
                &[("cookie", &cookie), ("accept", "application/json")],
                b"",
            ),
        )
        .await;
        assert_eq!(held.status, 401, "{held:?}");
        assert_eq!(held.error_code(), "step_up_required");
        holds.push((cookie, held.json()["hold_id"].as_str().unwrap().to_owned()));
    }
    eventually("a checkpoint while the demo runs", async || {
        events(&trail, "checkpoint") >= 1
    })
    .await;

    // SIGHUP reloads; the demo keeps running, and with it every hold.
    let settings = async || {
        raw(
            addr,
            &pki,
            &request("GET", "/admin/settings", &[("cookie", "SESSIONID=demo-0")], b""),
        )
        .await
        .status
    };
    assert_eq!(settings().await, 303, "the console sends a stranger to its sign-in");
    let reloads = events(&trail, "config.reloaded");
    signal(&child, "-HUP");
    eventually("SIGHUP reloads", async || events(&trail, "config.reloaded") > reloads).await;
    assert!(child.0.try_wait().unwrap().is_none(), "SIGHUP ended the demo");
    for (cookie, hold) in &holds {
        let status = raw(
            addr,
            &pki,
            &request(
                "GET",
                &format!("/.stepup/holds/{hold}"),
                &[("cookie", cookie), ("accept", "application/json")],
                b"",
            ),
        )
        .await;
        assert_eq!(status.status, 200, "{status:?}");
        assert_eq!(status.json()["state"], "pending");
    }

    // An edit to the routes file takes effect.
    let routes = demo.join("routes.yaml");
    let mut text = std::fs::read_to_string(&routes).unwrap();
    text.push_str(
        "  - name: no-settings-page\n    match: { methods: [GET], prefix: /admin/settings }\n    deny: true\n",
    );
    std::fs::write(&routes, &text).unwrap();
    signal(&child, "-HUP");
    eventually("the edited routes apply", async || settings().await == 403).await;

    // A restart keeps the edit and the approver's key.
    signal(&child, "-TERM");
    assert!(child.0.wait().unwrap().success(), "the demo stops cleanly on SIGTERM");
    let (child2, banner2) = start_demo(&dir, port).await;
    assert!(std::fs::read_to_string(&routes).unwrap().contains("no-settings-page"));
    assert_eq!(settings().await, 403, "the edited route survives a restart");
    assert_eq!(
        api_key(&banner),
        api_key(&banner2),
        "bob's key stays valid across restarts"
    );
    signal(&child2, "-TERM");
    let mut child2 = child2;
    assert!(child2.0.wait().unwrap().success());

    // The whole trail, both runs, verifies with its checkpoints.
    let out = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["audit", "verify", "state/audit.jsonl", "--config", "routes.yaml"])
        .current_dir(&demo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(events(&trail, "checkpoint") >= 2, "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}
