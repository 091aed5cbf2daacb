//! A gateway killed with SIGKILL (the real `stepgate serve` binary) cannot
//! close its holds; the next start finds them open in the audit trail and
//! closes them there, and spent proofs stay spent.

mod common;
mod holdkit;

use common::*;
use holdkit::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [token], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
";

struct Serve {
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(config: &std::path::Path, port: u16) -> Serve {
    let child = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("stepgate serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "stepgate serve did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Serve { child }
}

fn records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn holds_lost_to_a_crash_are_closed_in_the_trail_at_the_next_start() {
    let up = Upstream::start().await;
    // The harness gateway provides the files (certificates, keys, config);
    // the binary serves a copy of its config on a port of its own.
    // Restart safety is the memory backend's (holds on Redis outlive an
    // instance: tests/scale_out_crash.rs), so this test names it and runs
    // on it under STEPGATE_TEST_STATE=redis too.
    let files = Gateway::start(up.addr, ROUTES, "state: { backend: memory }").await;
    let port = free_port();
    let text = std::fs::read_to_string(files.dir.join("routes.yaml")).expect("config");
    let text = text.replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    let config = files.dir.join("serve.yaml");
    std::fs::write(&config, format!("{text}\naudit: {{ path: serve-audit.jsonl }}\n")).expect("write");
    private_keys(&files.dir);
    let trail = files.dir.join("serve-audit.jsonl");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");

    let mut first = serve(&config, port).await;
    let view = files.at(addr);
    let session = "sess-crash";
    let (_, used) = challenge(&view, session, DELETE_TARGET, b"1").await;
    let token = bound_token(&view, &used);
    let resp = complete_with_token(&view, &hold_id(&used), session, &token).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let (_, lost) = challenge(&view, session, "/admin/users/carol/delete", b"2").await;
    let lost_id = hold_id(&lost);

    // SIGKILL: no shutdown, no closing records.
    first.child.kill().expect("kill");
    first.child.wait().expect("wait");
    let closing = |id: &str| {
        records(&trail)
            .into_iter()
            .filter(|r| r["hold"] == id && r["event"] == "hold.expired")
            .collect::<Vec<_>>()
    };
    assert!(closing(&lost_id).is_empty(), "the crash wrote nothing");

    let second = serve(&config, port).await;
    // Its port is bound before it serves: the first answer comes only
    // after the start-up work, the closing of lost holds included.
    let (_, again) = challenge(&view, session, DELETE_TARGET, b"1").await;
    let ends = closing(&lost_id);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["reason"], "lost in a restart");
    assert_eq!(ends[0]["route"], "delete-user");
    assert!(
        closing(&hold_id(&used)).is_empty(),
        "a released hold is not closed twice"
    );

    // The token spent before the crash stays spent.
    assert_eq!(again["txn"], used["txn"]);
    let resp = complete_with_token(&view, &hold_id(&again), session, &token).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.count("/admin/users/"), 1, "one release in all");
    drop(second);
}
