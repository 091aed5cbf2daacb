//! A release that wins its hold but cannot be put on record forwards
//! nothing, and the gateway tells it as it happened: the webhook and the
//! metrics say `hold.abandoned`, never `hold.released`.
//!
//! The fault is real and unprivileged: the served binary runs under
//! RLIMIT_FSIZE (SIGXFSZ ignored), set just above the trail's size once
//! the hold is pending, so the approval's records cannot be appended (a
//! full disk fails the same way).
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use stepup_kit::{ApproverKey, Hook, HookMode};

fn counter(metrics: &str, state: &str) -> u64 {
    let key = format!("hold_transitions_total{{state=\"{state}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.split_once(&key).map(|(_, v)| v.trim().parse().expect("number")))
        .unwrap_or(0)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_release_that_cannot_be_recorded_is_told_as_abandoned_and_forwards_nothing() {
    let up = Upstream::start().await;
    let hook = Hook::start(HookMode::Ok).await;
    let bob = ApproverKey::new("bob");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-release-failed-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pki = serve_files(&dir);
    let (port, admin_port) = (free_port(), free_port());
    let config = dir.join("routes.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin_port}
tls: {{ cert: cert.pem, key: key.pem }}
upstream: http://{}
trusted_proxies: [127.0.0.1/32]
identity: {{ header: X-Remote-User }}
session: {{ cookie: SESSIONID }}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: legacy }}
notify: {{ webhook: '{}' }}
stepup:
  approvers: [ {} ]
routes:
  - name: transfer
    action: money.transfer
    match: {{ methods: [POST], path: /api/transfers }}
    require: {{ approvals: 1, approvers: [treasury] }}
    hold: {{ mode: hold, timeout: 2m }}
",
            up.addr,
            hook.url(),
            bob.yaml(&["treasury"], false)
        ),
    )
    .expect("config");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let started = Instant::now();
    let child = serve_fault_ready(&config, addr).await;

    // alice's request waits on its connection for bob's approval.
    let transfer = request(
        "POST",
        "/api/transfers",
        &[
            ("cookie", "SESSIONID=alice-session"),
            ("x-remote-user", "alice"),
            ("content-type", "application/json"),
        ],
        br#"{"amount": 2500}"#,
    );
    let waiter = {
        let pki_ca = pki.clone();
        tokio::spawn(async move { raw(addr, &pki_ca, &transfer).await })
    };
    let bearer = bob.bearer();
    let auth = [("authorization", bearer.as_str())];
    let item = loop {
        let q = raw(addr, &pki, &request("GET", "/.stepup/holds", &auth, b"")).await;
        assert_eq!(q.status, 200, "{}", String::from_utf8_lossy(&q.body));
        if let Some(h) = q.json()["holds"].as_array().and_then(|a| a.first()).cloned() {
            break h;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no hold reached bob");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let hold = item["hold_id"].as_str().expect("hold id").to_owned();
    hook.wait_for("hold.pending", &hold).await;

    let trail = dir.join("state/audit.jsonl");
    let before = std::fs::read(&trail).expect("trail");
    let size = before.len() as u64;
    set_fsize(child.0.id(), Some(size + 40));
    let body = serde_json::json!({"txn": item["txn"], "comment": "fine"}).to_string();
    let mut headers = auth.to_vec();
    headers.push(("content-type", "application/json"));
    let approve = request(
        "POST",
        &format!("/.stepup/holds/{hold}/approve"),
        &headers,
        body.as_bytes(),
    );
    let answer = raw(addr, &pki, &approve).await;
    assert_eq!(answer.status, 503, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.error_code(), "audit_unavailable");
    let waited = waiter.await.expect("waiter");
    assert_eq!(
        waited.status,
        503,
        "the requester is told the release failed: {}",
        String::from_utf8_lossy(&waited.body)
    );
    // Whatever part of a line the fault let through is cut again before
    // the next append; no whole line was added.
    let during = std::fs::read(&trail).expect("read");
    let whole = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count();
    assert_eq!(whole(&during), whole(&before), "no record landed during the fault");

    hook.wait_for("hold.abandoned", &hold).await;
    let told: Vec<String> = hook
        .events()
        .iter()
        .filter(|e| e["hold_id"] == hold.as_str())
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(told, ["hold.pending", "hold.abandoned"], "never announced as released");
    assert_eq!(up.count("/api/transfers"), 0, "nothing reached the upstream");

    set_fsize(child.0.id(), None);
    let (_, metrics) = admin_get(admin, "/metrics").await;
    assert_eq!(counter(&metrics, "abandoned"), 1, "{metrics}");
    assert_eq!(counter(&metrics, "released"), 0, "{metrics}");
    // The hold stays closed: a second approval releases nothing.
    let again = raw(addr, &pki, &approve).await;
    assert_ne!(again.status, 200, "{}", String::from_utf8_lossy(&again.body));
    assert_eq!(up.count("/api/transfers"), 0, "still nothing upstream");
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}
