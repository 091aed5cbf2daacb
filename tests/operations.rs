//! Operating the gateway: metrics scraped and parsed by the reference
//! Prometheus parser, health and readiness, hot reload by file edit and by
//! SIGHUP on the real binary, and graceful shutdown with held waiters.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Parses exposition text with Python's prometheus_client parser (a real
/// client we did not write) and returns {"name{labels}": value}.
fn parse_metrics(text: &str) -> serde_json::Value {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new(common::python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python with prometheus_client (run scripts/test-env)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "the Prometheus parser rejected our output:\n{text}"
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn metric(m: &serde_json::Value, key: &str) -> f64 {
    m.get(key).and_then(|v| v.as_f64()).unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_with_traffic_and_parse_with_the_reference_parser() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    tokio::spawn(stepgate::proxy::admin::run(
        gw.gw.clone(),
        admin,
        std::future::pending(),
    ));

    let (status, _) = http_get(admin_addr, "/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = http_get(admin_addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let before = parse_metrics(&http_get(admin_addr, "/metrics").await.1);

    for _ in 0..3 {
        raw(gw.addr, &gw.pki, &request("GET", "/public", &[], b"")).await;
    }
    let cookie = ("cookie", "SESSIONID=m");
    let ch = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/admin/users/x/delete", &[cookie], b""),
    )
    .await
    .json();
    let path = format!("/.stepup/holds/{}/complete", ch["hold_id"].as_str().expect("id"));
    let bad = serde_json::json!({"method": "token", "token": "not.a.token"}).to_string();
    raw(gw.addr, &gw.pki, &request("POST", &path, &[cookie], bad.as_bytes())).await;
    let good = serde_json::json!({"method": "token", "token": gw.token(serde_json::json!({"sid": ch["sid"], "txn": ch["txn"]}))});
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", &path, &[cookie], good.to_string().as_bytes()),
    )
    .await;
    assert_eq!(resp.status, 200);

    let after = parse_metrics(&http_get(admin_addr, "/metrics").await.1);
    let delta = |k: &str| metric(&after, k) - metric(&before, k);
    assert_eq!(delta("stepgate_requests_total{code=200,route=none}"), 3.0, "{after}");
    assert_eq!(
        delta("stepgate_requests_total{code=401,route=delete-user}"),
        1.0,
        "{after}"
    );
    assert_eq!(delta("stepgate_proofs_total{method=token,result=rejected}"), 1.0);
    assert_eq!(delta("stepgate_proofs_total{method=token,result=accepted}"), 1.0);
    assert_eq!(delta("stepgate_hold_transitions_total{state=pending}"), 1.0);
    assert_eq!(delta("stepgate_hold_transitions_total{state=released}"), 1.0);
    assert_eq!(delta("stepgate_assertions_signed_total{}"), 1.0);
    assert!(delta("stepgate_upstream_seconds_count{}") >= 4.0);
    assert!(
        delta("stepgate_audit_write_seconds_count{}") >= 4.0,
        "created, rejected, accepted, released"
    );
    assert_eq!(metric(&after, "stepgate_holds_open{}"), 0.0);

    // The build, and the standard process metrics every Prometheus client
    // library exports (this test process is the gateway's process).
    let build: Vec<(&String, &serde_json::Value)> = after
        .as_object()
        .expect("object")
        .iter()
        .filter(|(k, _)| k.starts_with("stepgate_build_info{version="))
        .collect();
    assert_eq!(build.len(), 1, "{after}");
    assert_eq!(build[0].1.as_f64(), Some(1.0));
    assert!(build[0].0.contains(env!("CARGO_PKG_VERSION")), "{}", build[0].0);
    for name in [
        "process_cpu_seconds_total{}",
        "process_resident_memory_bytes{}",
        "process_virtual_memory_bytes{}",
        "process_open_fds{}",
        "process_max_fds{}",
        "process_start_time_seconds{}",
    ] {
        assert!(metric(&after, name) > 0.0, "{name}: {after}");
    }
    let started = metric(&after, "process_start_time_seconds{}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        started <= now + 1.0 && started > now - 3600.0,
        "start {started}, now {now}"
    );
}

struct Served {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
    pki: Pki,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(port: u16, upstream: SocketAddr, routes: &str) -> String {
    format!(
        "listen: 127.0.0.1:{port}
tls: {{ cert: cert.pem, key: key.pem }}
upstream: http://{upstream}
session: {{ cookie: SESSIONID }}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: legacy }}
routes:
{routes}"
    )
}

const ROUTE_A: &str = "  - name: guarded-a\n    match: { path: /a }\n";
const ROUTE_B: &str = "  - name: guarded-b\n    match: { path: /b }\n";

async fn serve_binary(upstream: SocketAddr) -> Served {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-ops-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pki = Pki::new();
    std::fs::write(dir.join("cert.pem"), &pki.cert_pem).expect("write");
    // `serve` refuses missing or widely readable keys; it generates none.
    stepgate::keys::write_private(&dir.join("key.pem"), pki.key_pem.as_bytes()).expect("write");
    let (_, pem) = stepgate::assertion::generate_signing_key();
    stepgate::keys::write_private(&dir.join("assertion.pem"), pem.as_bytes()).expect("write");
    let port = free_port();
    std::fs::write(dir.join("routes.yaml"), config_text(port, upstream, ROUTE_A)).expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["serve", "--config"])
        .arg(dir.join("routes.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stepgate");
    // Owned by Served at once, so its Drop reaps the process on every path.
    let served = Served { child, port, dir, pki };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return served;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("stepgate did not start listening");
}

async fn status_of(s: &Served, path: &str) -> u16 {
    let addr: SocketAddr = ([127, 0, 0, 1], s.port).into();
    raw(addr, &s.pki, &request("GET", path, &[("cookie", "SESSIONID=x")], b""))
        .await
        .status
}

/// Waits until `path` answers `want` (a reload is asynchronous).
async fn until(s: &Served, path: &str, want: u16) -> bool {
    for _ in 0..100 {
        if status_of(s, path).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn rewrite(dir: &Path, text: &str) {
    // Write-then-rename, the way editors save.
    let tmp = dir.join(".routes.yaml.swp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, dir.join("routes.yaml")).expect("rename");
}

#[tokio::test]
async fn reload_by_file_edit_applies_valid_changes_and_keeps_old_routes_on_errors() {
    let up = Upstream::start().await;
    let s = serve_binary(up.addr).await;
    assert_eq!(status_of(&s, "/a").await, 401);
    assert_eq!(status_of(&s, "/b").await, 200);
    // Keep a connection open across the reload: it must not be dropped.
    let addr: SocketAddr = ([127, 0, 0, 1], s.port).into();
    let mut kept = tls_connect(addr, &s.pki, &[b"http/1.1"]).await;

    rewrite(&s.dir, &config_text(s.port, up.addr, ROUTE_B));
    assert!(until(&s, "/b", 401).await, "the edited file was applied");
    assert_eq!(status_of(&s, "/a").await, 200);

    rewrite(
        &s.dir,
        &config_text(s.port, up.addr, "  - name: broken\n    match: { path: '/(' }\n"),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        status_of(&s, "/b").await,
        401,
        "an invalid file keeps the running routes"
    );

    use tokio::io::AsyncWriteExt;
    kept.write_all(&request("GET", "/c", &[], b""))
        .await
        .expect("write on the kept connection");
    assert_eq!(read_response(&mut kept).await.status, 200);
}

#[cfg(unix)]
#[tokio::test]
async fn reload_by_sighup() {
    let up = Upstream::start().await;
    let s = serve_binary(up.addr).await;
    assert_eq!(status_of(&s, "/a").await, 401);
    // Edit in place without a rename, then signal (a watcher may also see
    // it; either way the SIGHUP path runs and must succeed).
    std::fs::write(s.dir.join("routes.yaml"), config_text(s.port, up.addr, ROUTE_B)).expect("write");
    let pid = s.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    assert!(until(&s, "/b", 401).await);
    // A broken file followed by SIGHUP keeps the routes.
    std::fs::write(s.dir.join("routes.yaml"), "routes: [").expect("write");
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_of(&s, "/b").await, 401);
    let audit = std::fs::read_to_string(s.dir.join("state/audit.jsonl")).expect("audit");
    assert!(audit.contains("config.reloaded"));
    assert!(audit.contains("refused"), "the refused reload is audited too");
}

#[tokio::test]
async fn shutdown_completes_in_flight_requests_and_answers_waiters_503() {
    let up = Upstream::start().await;
    let mut gw = Gateway::default(up.addr).await;
    // A hold-mode waiter (transfer route, 3 s deadline) ...
    let mut waiter = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
    use tokio::io::AsyncWriteExt;
    waiter
        .write_all(&request("POST", "/api/transfers", &[("cookie", "SESSIONID=w")], b"{}"))
        .await
        .expect("write");
    // ... and an in-flight pass-through request.
    let mut slow = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
    slow.write_all(&request("GET", "/slow", &[], b"")).await.expect("write");
    for _ in 0..100 {
        if gw.gw.holds.open_count() == 1 && up.count("/slow") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stop = tokio::spawn(async move {
        gw.shutdown().await;
        gw
    });
    let held = read_response(&mut waiter).await;
    assert_eq!(held.status, 503);
    assert_eq!(held.error_code(), "shutting_down");
    assert!(held.header("retry-after").is_some());
    assert_eq!(
        read_response(&mut slow).await.status,
        200,
        "in-flight request completes"
    );
    let gw = stop.await.expect("stopped");
    assert_eq!(up.count("/api/transfers"), 0, "the held request was never forwarded");
    let audit = std::fs::read_to_string(gw.dir.join("state/audit.jsonl")).expect("audit");
    let events: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let n = events.len();
    assert!(n >= 2, "{audit}");
    assert_eq!(events[n - 2]["event"], "gateway.shutdown");
    assert_eq!(
        events[n - 1]["event"],
        "checkpoint",
        "the trail ends with a signed checkpoint"
    );
    assert_eq!(events[n - 1]["reason_code"], "shutdown");
}

/// Issue 22 #4: a reload reaches pending holds. The route now demands
/// TOTP; the hold made before the reload no longer takes the token it was
/// created with, and nothing reaches the upstream.
#[tokio::test]
async fn a_pending_hold_is_held_to_the_requirements_a_reload_changed() {
    let up = Upstream::start().await;
    let gw = Gateway::default(up.addr).await;
    let cookie = ("cookie", "SESSIONID=reload-hold");
    let ch = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/admin/users/zed/delete", &[cookie], b""),
    )
    .await
    .json();
    assert_eq!(ch["methods"], serde_json::json!(["token"]));

    let path = gw.dir.join("routes.yaml");
    let text = std::fs::read_to_string(&path).expect("config");
    let changed = text.replacen(
        "require: { methods: [token], max_age: 5m }",
        "require: { methods: [totp], max_age: 5m }",
        1,
    );
    assert_ne!(text, changed, "the test edits the delete-user route");
    std::fs::write(&path, changed).expect("write");
    gw.gw.reload(&path).await.expect("valid reload");
    let fresh = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/admin/users/amy/delete", &[cookie], b""),
    )
    .await
    .json();
    assert_eq!(
        fresh["methods"],
        serde_json::json!(["totp"]),
        "new holds follow the new file"
    );

    let hold = ch["hold_id"].as_str().expect("id");
    let status = raw(
        gw.addr,
        &gw.pki,
        &request("GET", &format!("/.stepup/holds/{hold}"), &[cookie], b""),
    )
    .await
    .json();
    assert_eq!(status["missing"], serde_json::json!(["totp"]), "{status}");

    let token = gw.token(serde_json::json!({"sid": ch["sid"], "txn": ch["txn"]}));
    let complete = serde_json::json!({"method": "token", "token": token}).to_string();
    let path = format!("/.stepup/holds/{hold}/complete");
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", &path, &[cookie], complete.as_bytes()),
    )
    .await;
    assert_ne!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        up.count("/admin/users/zed/delete"),
        0,
        "the old requirement no longer releases it"
    );
}

#[tokio::test]
async fn a_config_written_with_a_pause_is_not_loaded_until_the_writer_closes_it() {
    let up = Upstream::start().await;
    let s = serve_binary(up.addr).await;
    let both = format!("{ROUTE_A}{ROUTE_B}");
    rewrite(&s.dir, &config_text(s.port, up.addr, &both));
    let mut both_on = false;
    for _ in 0..100 {
        if fresh_status(&s, "/b").await == 401 {
            both_on = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(both_on, "both routes protected");

    // A deploy tool writes in place: a valid prefix with only the first
    // route, a pause with the file still open, then the rest.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(s.dir.join("routes.yaml"))
        .expect("open");
    f.write_all(config_text(s.port, up.addr, ROUTE_A).as_bytes())
        .expect("prefix");
    f.flush().expect("flush");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            fresh_status(&s, "/b").await,
            401,
            "a half-written file must never be loaded: the later route stays protected"
        );
    }
    f.write_all(format!("{ROUTE_B}  - name: guarded-c\n    match: {{ path: /c }}\n").as_bytes())
        .expect("rest");
    drop(f);
    let mut loaded = false;
    for _ in 0..100 {
        if fresh_status(&s, "/c").await == 401 {
            loaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(loaded, "the complete file is loaded once closed");
    assert_eq!(fresh_status(&s, "/b").await, 401);
}

/// Like `status_of`, on a new session each time (a session may hold only
/// a few requests at once).
async fn fresh_status(s: &Served, path: &str) -> u16 {
    let addr: SocketAddr = ([127, 0, 0, 1], s.port).into();
    let cookie = format!("SESSIONID={}", stepgate::ids::random_token());
    raw(addr, &s.pki, &request("GET", path, &[("cookie", &cookie)], b""))
        .await
        .status
}

/// A gauge's value in exposition text, or `None` when it is not there.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `stepgate_holds_kept` counts the holds in memory: open ones, and ended
/// ones kept for `limits.keep_ended_holds` so late callers learn how they
/// ended. It falls only when those are forgotten, which is what the
/// memory figures in docs/benchmarks.md are read against.
#[tokio::test]
async fn the_holds_kept_gauge_counts_ended_holds_until_they_are_forgotten() {
    use std::sync::Arc;
    let up = Upstream::start().await;
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let clock = Arc::new(stepgate::clock::ManualClock::at_unix(start));
    let extra = "limits: { keep_ended_holds: 1m }";
    let gw = Gateway::start_with_clock(up.addr, DEFAULT_ROUTES, extra, clock.clone()).await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    tokio::spawn(stepgate::proxy::admin::run(
        gw.gw.clone(),
        admin,
        std::future::pending(),
    ));
    let read = || async move {
        let text = http_get(admin_addr, "/metrics").await.1;
        let kept = gauge(&text, "stepgate_holds_kept").unwrap_or_else(|| panic!("no stepgate_holds_kept in:\n{text}"));
        let open = gauge(&text, "stepgate_holds_open").expect("stepgate_holds_open");
        (kept, open)
    };
    // The sweeper runs once a second on real time; the clock it reads is
    // the test's.
    let until = |want: (f64, f64), what: &'static str| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let now = read().await;
            if now == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: (kept, open) = {now:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(read().await, (0.0, 0.0));

    let mut holds = Vec::new();
    for i in 0..3 {
        let cookie = format!("SESSIONID=kept-{i}");
        let target = format!("/admin/users/u{i}/delete");
        let resp = raw(gw.addr, &gw.pki, &request("POST", &target, &[("cookie", &cookie)], b"")).await;
        assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
        holds.push((cookie, resp.json()));
    }
    assert_eq!(read().await, (3.0, 3.0), "three holds, all open");

    let (cookie, ch) = &holds[0];
    let path = format!("/.stepup/holds/{}/complete", ch["hold_id"].as_str().expect("id"));
    let token = gw.token(serde_json::json!({"sid": ch["sid"], "txn": ch["txn"]}));
    let proof = serde_json::json!({"method": "token", "token": token}).to_string();
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", &path, &[("cookie", cookie)], proof.as_bytes()),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(read().await, (3.0, 2.0), "the released hold is kept");

    // Past the two-minute deadline: the other two expire and are kept,
    // while the released one, ended 150 s ago, is past its minute.
    clock.advance(Duration::from_secs(150));
    until((2.0, 0.0), "expired holds are kept, the released one forgotten").await;

    // Past the keep window of the expired ones: forgotten.
    clock.advance(Duration::from_secs(61));
    until((0.0, 0.0), "ended holds are forgotten after the keep window").await;
    assert_eq!(up.count("/admin/users/"), 1, "only the released hold ran");
}
