//! Several instances on one Redis (SPEC §10): a real `redis-server` started
//! by the test on a free port, two real TLS gateways sharing their config
//! and keys, a recording upstream.

mod common;
mod holdkit;
mod stepup_kit;

use common::redis::RedisServer;
use common::*;
use holdkit::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepgate::clock::SystemClock;
use stepup_kit::{complete_totp, enroll, pyotp_now};

const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [token, totp], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
";

const BODY: &[u8] = b"{\"confirm\":true}";

async fn pair(up: &Upstream, redis: &RedisServer) -> (Gateway, Gateway) {
    let a = Gateway::start(up.addr, ROUTES, &redis.state_yaml()).await;
    let b = a.peer(Arc::new(SystemClock)).await;
    (a, b)
}

#[tokio::test]
async fn a_token_used_on_one_instance_is_refused_on_the_other() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let (a, b) = pair(&up, &redis).await;
    let session = "sess-jti";

    let (_, first) = challenge(&a, session, DELETE_TARGET, BODY).await;
    let token = bound_token(&a, &first);
    let resp = complete_with_token(&a, &hold_id(&first), session, &token).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.requests().len(), 1);

    // The same request on B has the same txn, so only the jti, which A
    // spent, tells the second use apart.
    let (_, second) = challenge(&b, session, DELETE_TARGET, BODY).await;
    assert_eq!(second["txn"], first["txn"]);
    let resp = complete_with_token(&b, &hold_id(&second), session, &token).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.requests().len(), 1, "the replay on B forwarded nothing");

    // Control: B itself works, with a token nobody used.
    let resp = complete_with_token(&b, &hold_id(&second), session, &bound_token(&b, &second)).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.requests().len(), 2);

    // What Redis holds: hashed, prefixed, hash-tagged keys, each expiring.
    let keys = redis.keys("stepgate:once:*");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        assert!(k.contains('{') && k.ends_with('}'), "{k}");
        assert!(!k.contains("idp.test"), "client values are hashed: {k}");
        let ttl: i64 = redis
            .command(&["TTL", k])
            .and_then(|l| l.trim_start_matches(':').parse().ok())
            .expect("ttl");
        assert!(ttl > 0, "{k} has no expiry ({ttl})");
    }
}

#[tokio::test]
async fn a_totp_code_used_on_one_instance_is_refused_on_the_other() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let (a, b) = pair(&up, &redis).await;
    // Both instances read the same user store, as they would from a shared
    // volume or the same provisioning.
    let secret = enroll(&a.dir, "alice");
    let cookie = cookie("sess-totp");

    let (_, on_a) = challenge(&a, "sess-totp", "/admin/users/u1/delete", BODY).await;
    let (_, on_b) = challenge(&b, "sess-totp", "/admin/users/u2/delete", BODY).await;
    let code = pyotp_now(&secret);
    let resp = complete_totp(&a, &cookie, &hold_id(&on_a), "alice", &code).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let resp = complete_totp(&b, &cookie, &hold_id(&on_b), "alice", &code).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.count("/admin/users/u1/"), 1);
    assert_eq!(
        up.count("/admin/users/u2/"),
        0,
        "the code spent on A released nothing on B"
    );
    let steps = redis.keys("stepgate:totp:*");
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!(!steps[0].contains("alice"), "user names are hashed: {steps:?}");
}

async fn start_admin(gw: &Gateway) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(stepgate::proxy::admin::run(gw.gw.clone(), l, std::future::pending()));
    addr
}

/// Polls `/readyz` until it answers `want` (the gateway notices a lost or
/// returned store within its probe interval).
async fn readyz_becomes(admin: std::net::SocketAddr, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, text) = admin_get(admin, "/readyz").await;
        if status == want {
            return text;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status}: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn without_redis_sensitive_routes_fail_closed_and_recover_without_a_restart() {
    let mut redis = RedisServer::start();
    let up = Upstream::start().await;
    let a = Gateway::start(up.addr, ROUTES, &redis.state_yaml()).await;
    let admin = start_admin(&a).await;
    readyz_becomes(admin, 200).await;
    let (_, metrics) = admin_get(admin, "/metrics").await;
    assert!(metrics.contains("stepgate_state_available 1"), "{metrics}");
    let session = "sess-outage";
    let (_, pending) = challenge(&a, session, DELETE_TARGET, BODY).await;

    redis.stop();
    let text = readyz_becomes(admin, 503).await;
    assert!(text.contains("state"), "{text}");
    let (_, metrics) = admin_get(admin, "/metrics").await;
    assert!(metrics.contains("stepgate_state_available 0"), "{metrics}");
    let run = check(&a.dir.join("routes.yaml"));
    assert_eq!(run.0, 1, "an unanswered comparison is no pass: {run:?}");

    // A new sensitive request is refused, not parked.
    let c = cookie(session);
    let headers = [("cookie", c.as_str()), ("content-type", "application/json")];
    let resp = send(&a, "POST", "/admin/users/u9/delete", &headers, BODY).await;
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "state_unavailable");
    // A proof for a hold parked before the outage cannot be spent: refused,
    // and the hold stays as it was.
    let token = bound_token(&a, &pending);
    let resp = complete_with_token(&a, &hold_id(&pending), session, &token).await;
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "state_unavailable");
    // Where it stands cannot be told either, and is not denied.
    let c2 = cookie(session);
    let resp = holdkit::status(&a, &hold_id(&pending), &[("cookie", c2.as_str())]).await;
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "state_unavailable");
    // Pass-through does not need the store.
    let resp = send(&a, "GET", "/public/page", &[], b"").await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.requests().len(), 1, "only the pass-through reached the upstream");

    // Redis comes back (empty): the gateway reconnects by itself. The
    // hold parked before the outage went with Redis's data (a Redis
    // without persistence keeps no holds across its restart); it is never
    // forwarded, and new requests are held and released as before.
    redis.restart();
    readyz_becomes(admin, 200).await;
    assert_eq!(status_state_code(&a, &hold_id(&pending), session).await, 404);
    let resp = complete_with_token(&a, &hold_id(&pending), session, &token).await;
    assert_eq!(resp.status, 404, "{}", String::from_utf8_lossy(&resp.body));
    let (_, again) = challenge(&a, session, DELETE_TARGET, BODY).await;
    let resp = complete_with_token(&a, &hold_id(&again), session, &bound_token(&a, &again)).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let resp = send(&a, "POST", "/admin/users/u9/delete", &headers, BODY).await;
    assert_eq!(resp.status, 401, "held again: {}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "step_up_required");
    assert_eq!(up.requests().len(), 2);
    assert!(
        !redis.keys("stepgate:fingerprints:*").is_empty(),
        "the instance published its key fingerprints again"
    );
}

/// A config without its `state:` line (one that `STEPGATE_TEST_STATE`
/// may have added), for tests that set their own.
fn without_state(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("state:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `stepgate check --config FILE`: exit code, stdout and stderr together.
fn check(config: &std::path::Path) -> (i32, String) {
    private_keys(config.parent().expect("config dir"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("stepgate check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn an_instance_with_other_keys_refuses_to_join() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let (a, b) = pair(&up, &redis).await;
    // Both serve (each joined the store before its first answer).
    challenge(&a, "sess-join", DELETE_TARGET, BODY).await;
    challenge(&b, "sess-join", DELETE_TARGET, BODY).await;
    // A gateway set up on its own: its own session key and assertion key.
    let stranger = Gateway::start(up.addr, ROUTES, "").await;
    let text = without_state(&std::fs::read_to_string(stranger.dir.join("routes.yaml")).expect("config"));
    let config = stranger.dir.join("joining.yaml");
    std::fs::write(
        &config,
        format!("{text}\n{}audit: {{ path: joining-audit.jsonl }}\n", redis.state_yaml()),
    )
    .expect("write");
    // `check` says so before anything starts, naming the keys; for the
    // first instance's own file it passes.
    let run = check(&config);
    assert_eq!(run.0, 2, "{run:?}");
    assert!(
        run.1.contains("session key") && run.1.contains("assertion key"),
        "{run:?}"
    );
    let run = check(&a.dir.join("routes.yaml"));
    assert_eq!(run.0, 0, "{run:?}");
    assert!(run.1.contains("keys match"), "{run:?}");
    let cfg = stepgate::config::load(&config).expect("config");
    let gw = stepgate::proxy::Gateway::load(cfg, Arc::new(SystemClock)).expect("loads");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let result = stepgate::proxy::run(gw, listener, std::future::ready(()), Duration::from_secs(1)).await;
    let err = result
        .expect_err("an instance with other keys must not serve")
        .to_string();
    assert!(err.contains("session key") && err.contains("assertion key"), "{err}");
}

#[tokio::test]
async fn the_state_key_is_checked() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, ROUTES, "").await;
    let text = without_state(&std::fs::read_to_string(gw.dir.join("routes.yaml")).expect("config"));
    for (state, wanted) in [
        ("state: { backend: redis }", "needs `url"),
        ("state: { backend: redis, url: 'http://x' }", "redis://"),
        ("state: { backend: etcd }", "not `memory` or `redis`"),
        ("state: { backend: memory, url: 'redis://x' }", "only the redis backend"),
    ] {
        let err = stepgate::config::from_str(&format!("{text}\n{state}\n"), "routes.yaml")
            .expect_err(state)
            .to_string();
        assert!(err.contains(wanted), "{state}: {err}");
        assert!(err.contains("routes.yaml:"), "names the file and line: {err}");
    }
}

/// The memory backend keeps a journal of spent values: a restart must not
/// reopen a replay.
#[tokio::test]
async fn a_token_used_before_a_restart_is_refused_after_it() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start(up.addr, ROUTES, "state: { backend: memory }").await;
    let session = "sess-restart";
    let (_, first) = challenge(&gw, session, DELETE_TARGET, BODY).await;
    let token = bound_token(&gw, &first);
    let resp = complete_with_token(&gw, &hold_id(&first), session, &token).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));

    gw.restart().await;
    let (_, second) = challenge(&gw, session, DELETE_TARGET, BODY).await;
    assert_eq!(
        second["txn"], first["txn"],
        "the same request, so only the jti tells them apart"
    );
    let resp = complete_with_token(&gw, &hold_id(&second), session, &token).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "invalid_proof");
    assert_eq!(up.requests().len(), 1, "the replay after the restart forwarded nothing");
    // Control: the restarted gateway accepts a token nobody used.
    let resp = complete_with_token(&gw, &hold_id(&second), session, &bound_token(&gw, &second)).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(up.requests().len(), 2);
}

/// The status code of a hold's status read by its own session.
async fn status_state_code(gw: &Gateway, hold: &str, session: &str) -> u16 {
    let c = cookie(session);
    holdkit::status(gw, hold, &[("cookie", c.as_str())]).await.status
}
