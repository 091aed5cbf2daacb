//! Two real `stepgate serve` processes on one real `redis-server`
//! (SPEC §10): an approval on B releases a `hold`-mode request waiting on
//! A, and when A is killed with SIGKILL its challenge holds are completed
//! on B while its `hold`-mode holds, whose clients' connections died with
//! it, are never forwarded and end in B's trail as `hold.abandoned`
//! (`instance_gone`).

mod common;
mod holdkit;
mod stepup_kit;

use common::redis::RedisServer;
use common::{free_port, private_keys, raw, request, Gateway, RawResponse, Upstream};
use holdkit::{bound_token, complete_as, cookie, hold_id, send};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use stepup_kit::{approve, approvers_line, body_text, extra, get, queue, ApproverKey};

const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [token], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
  - name: agent-transfer
    action: agent.transfer
    match: { methods: [POST], path: /api/agent/transfers }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: hold, timeout: 2m }
";

/// The agent is named by the SSO proxy in front (the test client's address).
const SSO: &str = "trusted_proxies: [127.0.0.1/32]\nidentity: { header: X-Remote-User }\n";

struct Serve {
    child: Child,
    addr: SocketAddr,
    trail: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// SIGKILL: no drain, no closing records, no goodbye to Redis.
    fn kill(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

/// `stepgate serve` with the harness gateway's files (certificates, keys,
/// routes) on a port of its own, on `redis`, with its own trail and log.
async fn serve(files: &Gateway, redis: &RedisServer, name: &str) -> Serve {
    let port = free_port();
    let text: String = std::fs::read_to_string(files.dir.join("routes.yaml"))
        .expect("config")
        .lines()
        .filter(|l| !l.starts_with("state:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = text.replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    let config = files.dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!("{text}\n{}audit: {{ path: {name}-audit.jsonl }}\n", redis.state_yaml()),
    )
    .expect("write");
    private_keys(&files.dir);
    let log = std::fs::File::create(files.dir.join(format!("{name}.log"))).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("stepgate serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "stepgate serve {name} did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Serve {
        child,
        addr: format!("127.0.0.1:{port}").parse().expect("addr"),
        trail: files.dir.join(format!("{name}-audit.jsonl")),
    }
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The events `trail` has about `hold`, in order.
fn events(trail: &Path, hold: &str) -> Vec<String> {
    records(trail)
        .iter()
        .filter(|r| r["hold"] == hold)
        .filter_map(|r| r["event"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (records reach the file a moment after they are written) until
/// `trail` has `event` for `hold`; returns that record.
async fn wait_record(trail: &Path, hold: &str, event: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = records(trail)
            .into_iter()
            .find(|r| r["hold"] == hold && r["event"] == event)
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no {event} for {hold}: {:?}",
            events(trail, hold)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An agent's `hold`-mode transfer on `gw`, in a task (it waits for the
/// approval on its open connection).
fn transfer(gw: &Gateway, amount: u32) -> tokio::task::JoinHandle<RawResponse> {
    let req = request(
        "POST",
        "/api/agent/transfers",
        &[
            ("cookie", "SESSIONID=agent"),
            ("x-remote-user", "agent-7"),
            ("content-type", "application/json"),
        ],
        format!("{{\"amount\":{amount}}}").as_bytes(),
    );
    let (addr, pki) = (gw.addr, gw.pki.clone());
    tokio::spawn(async move { raw(addr, &pki, &req).await })
}

/// Waits until `gw`'s approver queue lists a hold not in `known`.
async fn next_queued(gw: &Gateway, who: &ApproverKey, known: &[String]) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = queue(gw, who).await;
        assert_eq!(q.status, 200, "{}", body_text(&q));
        let holds = q.json()["holds"].as_array().cloned().unwrap_or_default();
        if let Some(h) = holds.iter().find(|h| !known.iter().any(|k| h["hold_id"] == k.as_str())) {
            let text = |k: &str| h[k].as_str().expect(k).to_owned();
            return (text("hold_id"), text("txn"));
        }
        assert!(Instant::now() < deadline, "no new hold reached the approver queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A hold's state, as an approver asks any instance for it.
async fn state_of(gw: &Gateway, who: &ApproverKey, hold: &str) -> String {
    let auth = who.bearer();
    let r = get(
        gw,
        &format!("/.stepup/holds/{hold}"),
        &[("authorization", auth.as_str())],
    )
    .await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    r.json()["state"].as_str().expect("state").to_owned()
}

/// A challenge-mode request from alice (named by the SSO proxy); returns
/// the challenge.
async fn challenge(gw: &Gateway, session: &str, target: &str, body: &[u8]) -> Value {
    let c = cookie(session);
    let headers = [
        ("cookie", c.as_str()),
        ("x-remote-user", "alice"),
        ("content-type", "application/json"),
    ];
    let resp = send(gw, "POST", target, &headers, body).await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    let ch = resp.json();
    assert_eq!(ch["error"], "step_up_required", "{ch}");
    ch
}

/// Alice completes challenge `ch` on `gw` with a token bound to it.
async fn complete(gw: &Gateway, session: &str, ch: &Value) -> RawResponse {
    let c = cookie(session);
    let headers = [("cookie", c.as_str()), ("x-remote-user", "alice")];
    let body = json!({"method": "token", "token": bound_token(gw, ch)});
    complete_as(gw, &hold_id(ch), &headers, &body).await
}

async fn setup(up: &Upstream, bob: &ApproverKey) -> Gateway {
    let top = extra(&[approvers_line(&[bob.yaml(&["treasury"], false)])], SSO);
    Gateway::start(up.addr, ROUTES, &top).await
}

#[tokio::test]
async fn a_hold_waiting_on_process_a_and_approved_on_process_b_is_forwarded_once_by_a() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let files = setup(&up, &bob).await;
    let a = serve(&files, &redis, "a").await;
    let b = serve(&files, &redis, "b").await;
    let (on_a, on_b) = (files.at(a.addr), files.at(b.addr));

    let client = transfer(&on_a, 5);
    let (hold, txn) = next_queued(&on_b, &bob, &[]).await;
    let r = approve(&on_b, &bob, &hold, &txn).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));

    let resp = client.await.expect("the agent's connection on A got an answer");
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(resp.json()["target"], "/api/agent/transfers");
    assert_eq!(up.count("/api/agent/transfers"), 1, "forwarded exactly once");
    wait_record(&a.trail, &hold, "request.forwarded").await;
    assert!(!events(&b.trail, &hold).contains(&"request.forwarded".to_owned()));
    assert_eq!(state_of(&on_b, &bob, &hold).await, "released");
}

#[tokio::test]
async fn when_a_is_killed_b_completes_its_challenge_holds_and_ends_its_waiting_holds_unforwarded() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let files = setup(&up, &bob).await;
    let mut a = serve(&files, &redis, "a").await;
    let b = serve(&files, &redis, "b").await;
    let (on_a, on_b) = (files.at(a.addr), files.at(b.addr));
    let session = "sess-crash";

    // On A: two challenge holds, and two agents waiting for an approval.
    let first = challenge(&on_a, session, "/admin/users/u1/delete", b"{\"n\":1}").await;
    let second = challenge(&on_a, session, "/admin/users/u2/delete", b"{\"n\":2}").await;
    let agent_early = transfer(&on_a, 1);
    let (early, early_txn) = next_queued(&on_b, &bob, &[]).await;
    let agent_late = transfer(&on_a, 2);
    let (late, late_txn) = next_queued(&on_b, &bob, std::slice::from_ref(&early)).await;
    assert_eq!(
        redis.keys("stepgate:instance:*").len(),
        2,
        "both instances hold a lease"
    );

    a.kill();
    // The agents' connections died with A: nobody can answer them.
    assert!(agent_early.await.is_err(), "the connection to A is gone");
    assert!(agent_late.await.is_err(), "the connection to A is gone");

    // An approval straight after the crash, while A's lease still runs: B
    // cannot tell yet that A is gone, so it may count the approval and
    // leave the release for A to take. Nobody takes it, and once the lease
    // lapses B ends it unforwarded.
    let r = approve(&on_b, &bob, &early, &early_txn).await;
    assert!([200, 410].contains(&r.status), "{}", body_text(&r));

    // B completes A's challenge holds and forwards the requests A parked.
    for (ch, path, body) in [
        (&first, "/admin/users/u1/", &b"{\"n\":1}"[..]),
        (&second, "/admin/users/u2/", &b"{\"n\":2}"[..]),
    ] {
        let hold = hold_id(ch);
        let resp = complete(&on_b, session, ch).await;
        assert_eq!(resp.status, 200, "{}", body_text(&resp));
        assert_eq!(up.count(path), 1, "{path} forwarded once");
        let seen = up
            .requests()
            .into_iter()
            .find(|r| r.target.starts_with(path))
            .expect("seen");
        assert_eq!(&seen.body[..], body, "the body parked on A");
        wait_record(&b.trail, &hold, "request.forwarded").await;
        // A second completion finds it released.
        let again = complete(&on_b, session, ch).await;
        assert_eq!(again.status, 409, "{}", body_text(&again));
    }

    // A's lease lapses; only B's is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis.keys("stepgate:instance:*").len() != 1 {
        assert!(Instant::now() < deadline, "A's lease never lapsed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An approval for the other waiting hold is refused now: whoever
    // noticed first (this approval or B's sweeper) ended it.
    let r = approve(&on_b, &bob, &late, &late_txn).await;
    assert_eq!(r.status, 410, "{}", body_text(&r));
    assert_eq!(r.error_code(), "hold_expired");

    // Both waiting holds end once, in B's trail, saying why; nothing of
    // theirs reached the upstream, on either instance.
    for hold in [&early, &late] {
        let ended = wait_record(&b.trail, hold, "hold.abandoned").await;
        assert_eq!(ended["reason"], "instance_gone", "{ended}");
        let on_b_events = events(&b.trail, hold);
        let closings = on_b_events
            .iter()
            .filter(|e| ["hold.released", "hold.expired", "hold.abandoned", "hold.denied"].contains(&e.as_str()))
            .count();
        assert_eq!(closings, 1, "{hold}: {on_b_events:?}");
        assert!(
            !events(&a.trail, hold).iter().any(|e| e != "hold.created"),
            "A wrote only the opening"
        );
        assert_eq!(state_of(&on_b, &bob, hold).await, "expired");
    }
    assert_eq!(up.count("/api/agent/transfers"), 0, "no waiting hold was forwarded");
    assert_eq!(up.requests().len(), 2, "the two challenge holds, once each");
    // Nothing is left listed as open.
    assert_eq!(
        redis.command(&["ZCARD", "stepgate:holds:{index}"]).as_deref(),
        Some(":0")
    );
}
