//! What strangers can learn and flood on the ceremony endpoints (issue 13
//! #10, issue 21 #10):
//! - passkey options for a hold and for the approver sign-in answer alike
//!   for a name with a passkey, a name with only TOTP, a name that is not
//!   allowed on the route, and a name nobody has: same status, same JSON
//!   shape, a credential list that is never empty and stays the same on
//!   every request for the same name;
//! - the approver sign-in refuses a wrong code for an approver and for an
//!   unknown name with the same bytes, and a stranger asking for bob's
//!   sign-in options does not push bob's own challenge out;
//! - a flood of options and sign-ins from one client address, or one
//!   session, gets 429 while another address (127.0.0.3 against the
//!   flooder's 127.0.0.2: Linux routes all of 127/8 to the loopback) and
//!   the real people keep working;
//! - a `hold`-mode agent that goes away leaves a trace: the audit record,
//!   the webhook, the metric and what approvers see, over HTTP/1.1 and
//!   over an HTTP/2 stream the agent resets.
//!
//! The authenticator is `common::authenticator::SoftKey`, a software
//! stand-in that signs what a browser and an authenticator would.
#![allow(clippy::unwrap_used)]

mod common;
mod holdkit;
mod stepup_kit;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::authenticator::SoftKey;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use stepgate::clock::ManualClock;
use stepup_kit::*;
use tokio::io::AsyncWriteExt;

const RP_ID: &str = "localhost";
const ORIGIN: &str = "https://localhost";
const ORIGIN_HEADER: (&str, &str) = ("origin", ORIGIN);

/// Step-up by passkey or TOTP; only the `admins` group may do it.
const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [webauthn, totp], max_age: 5m }
    hold: { mode: challenge, timeout: 5m }
  - name: rotate-keys
    action: keys.rotate
    match: { methods: [POST], path: /admin/keys/rotate }
    require: { methods: [webauthn, totp], groups: [admins] }
    hold: { mode: challenge, timeout: 5m }
";

struct Setup {
    up: Upstream,
    gw: Gateway,
    clock: Arc<ManualClock>,
    alice: SoftKey,
    bob: SoftKey,
    bob_totp: String,
}

async fn setup() -> Setup {
    setup_with("").await
}

/// `top` is added to the config's top level (for example `limits:`).
async fn setup_with(top: &str) -> Setup {
    let up = Upstream::start().await;
    let olivia = ApproverKey::new("olivia");
    let stepup = vec![
        format!("webauthn: {{ rp_id: {RP_ID}, origins: ['{ORIGIN}'], rp_name: Acme }}"),
        approvers_line(&[
            olivia.yaml(&["ops"], false),
            ApproverKey::new("bob").yaml(&["ops"], false),
        ]),
    ];
    let clock = Arc::new(ManualClock::at_unix(now_secs() / 30 * 30 + 7));
    let gw = Gateway::start_with_clock(up.addr, ROUTES, &extra(&stepup, top), clock.clone()).await;
    let alice = SoftKey::new(RP_ID, ORIGIN);
    enroll_passkey(&gw, "alice", &alice).await;
    let bob = SoftKey::new(RP_ID, ORIGIN);
    enroll_passkey(&gw, "bob", &bob).await;
    let bob_totp = enroll(&gw.dir, "bob");
    // carol has TOTP and no passkey.
    enroll(&gw.dir, "carol");
    Setup {
        up,
        gw,
        clock,
        alice,
        bob,
        bob_totp,
    }
}

// ------------------------------------------------------------ client sockets

/// One request over TLS from a socket bound to `source` (an address of
/// 127/8), so the gateway sees that peer address.
async fn from(source: &str, gw: &Gateway, req: &[u8]) -> RawResponse {
    raw_from(source, gw.addr, &gw.pki, req).await
}

fn json_request(path: &str, headers: &[(&str, &str)], body: &Value) -> Vec<u8> {
    let mut h = headers.to_vec();
    h.push(("content-type", "application/json"));
    request("POST", path, &h, body.to_string().as_bytes())
}

const A: &str = "127.0.0.2";
const B: &str = "127.0.0.3";

async fn hold_from(s: &Setup, ip: &str, cookie: &str, target: &str) -> String {
    let r = from(ip, &s.gw, &request("POST", target, &[("cookie", cookie)], b"")).await;
    assert_eq!(r.status, 401, "{}", body_text(&r));
    r.json()["hold_id"].as_str().unwrap().to_owned()
}

async fn options_from(s: &Setup, ip: &str, cookie: &str, hold: &str, user: &str) -> RawResponse {
    let path = format!("/.stepup/holds/{hold}/webauthn?user={user}");
    from(ip, &s.gw, &request("GET", &path, &[("cookie", cookie)], b"")).await
}

async fn login_options_from(s: &Setup, ip: &str, name: &str) -> RawResponse {
    let req = json_request(
        "/.stepup/approver/login/options",
        &[ORIGIN_HEADER],
        &json!({ "name": name }),
    );
    from(ip, &s.gw, &req).await
}

async fn prove_from(s: &Setup, ip: &str, cookie: &str, hold: &str, body: Value) -> RawResponse {
    let path = format!("/.stepup/holds/{hold}/complete");
    from(ip, &s.gw, &json_request(&path, &[("cookie", cookie)], &body)).await
}

// -------------------------------------------------------------- comparison

/// The shape of a JSON answer: every key at every level, each string
/// replaced by its length, and credential ids by their decoded length.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::String(s) => json!(format!("string of {}", s.len())),
        other => other.clone(),
    }
}

/// `shape` without the credential list, which [`credentials`] compares.
fn frame(v: &Value) -> Value {
    let mut v = v.clone();
    v["publicKey"]["allowCredentials"] = json!([]);
    shape(&v)
}

fn credentials(v: &Value) -> Vec<Vec<u8>> {
    v["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap_or_else(|| panic!("no allowCredentials in {v}"))
        .iter()
        .map(|c| {
            let keys: BTreeSet<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
            assert!(keys.contains("id") && keys.contains("type"), "{c}");
            assert_eq!(c["type"], "public-key");
            URL_SAFE_NO_PAD.decode(c["id"].as_str().unwrap()).expect("base64url id")
        })
        .collect()
}

/// `text` with every CSP nonce (fresh for each page) blanked.
fn without_nonces(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("nonce") {
        let (before, after) = rest.split_at(i + 5);
        out.push_str(before);
        let skip = after.len() - after.trim_start_matches(['-', '=', '"']).len();
        out.push_str(&after[..skip]);
        let tail = &after[skip..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '_' || c == '-'))
            .unwrap_or(tail.len());
        out.push('N');
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Header names and values that could tell answers apart (the date moves).
fn head(r: &RawResponse) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("date") && !k.eq_ignore_ascii_case("content-length"))
        .map(|(k, v)| (k.to_ascii_lowercase(), without_nonces(v)))
        .collect();
    h.sort();
    h
}

/// Lengths real authenticators use for credential ids (16 to 128 bytes).
fn plausible(ids: &[Vec<u8>]) -> bool {
    !ids.is_empty() && ids.len() <= 4 && ids.iter().all(|id| (16..=128).contains(&id.len()))
}

#[tokio::test]
async fn hold_options_answer_alike_for_every_name_and_the_real_one_still_works() {
    let mut s = setup().await;
    let c = "SESSIONID=enum-1";
    let hold = hold_from(&s, B, c, "/admin/users/dave/delete").await;
    let rotate = hold_from(&s, B, c, "/admin/keys/rotate").await;

    let alice = options_from(&s, B, c, &hold, "alice").await;
    assert_eq!(alice.status, 200, "{}", body_text(&alice));
    let real = alice.json();
    assert_eq!(credentials(&real), vec![s.alice.id.clone()], "alice's own credential");

    // Nobody of that name; TOTP only; a passkey holder the route does not
    // allow (alice is in no group). Each must look like alice's answer.
    let cases = [
        ("mallory", hold.as_str()),
        ("carol", hold.as_str()),
        ("alice", rotate.as_str()),
    ];
    for (user, h) in cases {
        let r = options_from(&s, B, c, h, user).await;
        assert_eq!(r.status, alice.status, "{user}: {}", body_text(&r));
        assert_eq!(head(&r), head(&alice), "{user}: headers differ");
        let v = r.json();
        assert_eq!(frame(&v), frame(&real), "{user}: {v} against {real}");
        let ids = credentials(&v);
        assert!(plausible(&ids), "{user}: {ids:?}");
        let again = options_from(&s, B, c, h, user).await.json();
        assert_eq!(credentials(&again), ids, "{user}: the list changes between requests");
        assert_ne!(
            again["publicKey"]["challenge"], v["publicKey"]["challenge"],
            "a fresh challenge each time"
        );
    }
    // A not-allowed user gets his own real list, as on any other route.
    let on_rotate = options_from(&s, B, c, &rotate, "alice").await.json();
    assert_eq!(credentials(&on_rotate), vec![s.alice.id.clone()]);
    // Different unknown names get different lists; none is a real one.
    let m1 = credentials(&options_from(&s, B, c, &hold, "mallory").await.json());
    let m2 = credentials(&options_from(&s, B, c, &hold, "mallory2").await.json());
    assert_ne!(m1, m2);
    assert!(!m1.contains(&s.alice.id) && !m1.contains(&s.bob.id));

    // Ten option sets is this session's burst; a minute refills it.
    s.clock.advance(Duration::from_secs(60));
    // An assertion for the stand-in challenge proves nothing.
    let decoy = options_from(&s, B, c, &hold, "mallory").await.json();
    let forged = s.alice.assert(&decoy);
    let r = prove_from(
        &s,
        B,
        c,
        &hold,
        json!({"method": "webauthn", "user": "mallory", "credential": forged}),
    )
    .await;
    assert_eq!(r.error_code(), "invalid_proof", "{}", body_text(&r));
    // Nor does alice's real passkey on a route she may not use.
    let forged = s.alice.assert(&on_rotate);
    let r = prove_from(&s, B, c, &rotate, json!({"method": "webauthn", "credential": forged})).await;
    assert_eq!(r.error_code(), "invalid_proof", "{}", body_text(&r));

    // The real ceremony still works.
    let options = options_from(&s, B, c, &hold, "alice").await.json();
    let credential = s.alice.assert(&options);
    let done = prove_from(&s, B, c, &hold, json!({"method": "webauthn", "credential": credential})).await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    assert_eq!(s.up.count("/admin/users/dave/delete"), 1);
    assert_eq!(s.up.count("/admin/keys/rotate"), 0);
}

#[tokio::test]
async fn approver_sign_in_answers_alike_for_an_approver_and_for_anyone_else() {
    let mut s = setup().await;
    let bob = login_options_from(&s, B, "bob").await;
    assert_eq!(bob.status, 200, "{}", body_text(&bob));
    let real = bob.json();
    assert_eq!(credentials(&real), vec![s.bob.id.clone()]);
    // Not an approver at all; a user who is no approver; an approver with
    // no passkey (olivia has an API key only).
    for name in ["nobody", "alice", "olivia"] {
        let r = login_options_from(&s, B, name).await;
        assert_eq!(r.status, 200, "{name}: {}", body_text(&r));
        assert_eq!(head(&r), head(&bob), "{name}: headers differ");
        let v = r.json();
        assert_eq!(frame(&v), frame(&real), "{name}: {v}");
        let ids = credentials(&v);
        assert!(plausible(&ids), "{name}: {ids:?}");
        assert_eq!(
            credentials(&login_options_from(&s, B, name).await.json()),
            ids,
            "{name}: not stable"
        );
    }

    // A wrong code for bob and any code for a name nobody has: the same
    // answer, byte for byte (API and page).
    let wrong = wrong_code(&s.bob_totp);
    let login = |name: &str, html: bool| {
        let body = format!("name={name}&code={wrong}");
        let mut h = vec![("content-type", "application/x-www-form-urlencoded"), ORIGIN_HEADER];
        if html {
            h.push(("accept", "text/html"));
        } else {
            h[0] = ("content-type", "application/json");
        }
        let bytes = if html {
            body.into_bytes()
        } else {
            json!({"name": name, "code": wrong}).to_string().into_bytes()
        };
        request("POST", "/.stepup/approver/login", &h, &bytes)
    };
    let known = from(B, &s.gw, &login("bob", false)).await;
    let unknown = from(B, &s.gw, &login("nobody", false)).await;
    assert_eq!(known.status, 401, "{}", body_text(&known));
    assert_eq!(
        (known.status, head(&known), &known.body),
        (unknown.status, head(&unknown), &unknown.body)
    );
    let known = from(B, &s.gw, &login("bob", true)).await;
    let unknown = from(B, &s.gw, &login("nobody", true)).await;
    assert_eq!(known.status, unknown.status);
    assert_eq!(head(&known), head(&unknown));
    // The page echoes the name typed; apart from it, the same page.
    assert_eq!(
        without_nonces(&body_text(&known)).replace("bob", "NAME"),
        without_nonces(&body_text(&unknown)).replace("nobody", "NAME")
    );

    // Bob asks for his sign-in options; a stranger at another address
    // then asks for bob's, again and again. Bob's challenge stays: each
    // address's requests push out only that address's own.
    let o = login_options_from(&s, B, "bob").await.json();
    for _ in 0..10 {
        assert_eq!(login_options_from(&s, A, "bob").await.status, 200);
    }
    let credential = s.bob.assert(&o);
    let r = from(
        B,
        &s.gw,
        &json_request(
            "/.stepup/approver/login",
            &[ORIGIN_HEADER],
            &json!({"name": "bob", "method": "webauthn", "credential": credential}),
        ),
    )
    .await;
    assert_eq!(r.status, 303, "{}", body_text(&r));
    assert_eq!(s.up.requests().len(), 0);
}

#[tokio::test]
async fn a_flood_from_one_address_or_session_is_refused_and_nobody_else_notices() {
    let mut s = setup().await;
    // Before the flood, the real user at B asks for her options.
    let alice_cookie = "SESSIONID=alice-own";
    let alice_hold = hold_from(&s, B, alice_cookie, "/admin/users/erin/delete").await;
    let alice_options = options_from(&s, B, alice_cookie, &alice_hold, "alice").await.json();

    // One session at A: its own limit comes first.
    let c1 = "SESSIONID=flood-1";
    let h1 = hold_from(&s, A, c1, "/admin/users/x/delete").await;
    let mut sent = 0;
    let refused = loop {
        let r = options_from(&s, A, c1, &h1, "alice").await;
        sent += 1;
        if r.status != 200 {
            break r;
        }
        assert!(sent <= 50, "a session asked for {sent} option sets without a limit");
    };
    assert_eq!(refused.status, 429, "{}", body_text(&refused));
    assert_eq!(refused.error_code(), "too_many_holds");
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1, "Retry-After {wait}");
    // Another session at the same address still has its own allowance.
    let c2 = "SESSIONID=flood-2";
    let h2 = hold_from(&s, A, c2, "/admin/users/y/delete").await;
    assert_eq!(options_from(&s, A, c2, &h2, "alice").await.status, 200);

    // Now the address: sign-in options for made-up names, then sign-ins.
    let mut names = 0;
    loop {
        names += 1;
        let r = login_options_from(&s, A, &format!("guess-{names}")).await;
        if r.status == 429 {
            assert_eq!(r.error_code(), "too_many_holds");
            break;
        }
        assert_eq!(r.status, 200, "{}", body_text(&r));
        assert!(names <= 100, "an address asked {names} times without a limit");
    }
    let code = pyotp_at(
        &s.bob_totp,
        stepgate::clock::unix_secs(stepgate::clock::Clock::now(s.clock.as_ref())),
    );
    let sign_in = json_request(
        "/.stepup/approver/login",
        &[ORIGIN_HEADER],
        &json!({"name": "bob", "code": code}),
    );
    let r = from(A, &s.gw, &sign_in).await;
    assert_eq!(
        r.status,
        429,
        "the flooding address may not try sign-ins either: {}",
        body_text(&r)
    );
    let c3 = "SESSIONID=flood-3";
    let h3 = hold_from(&s, A, c3, "/admin/users/z/delete").await;
    assert_eq!(
        options_from(&s, A, c3, &h3, "alice").await.status,
        429,
        "any session at A"
    );

    // B is untouched: bob signs in with the code A could not try (so it
    // was not spent), and alice completes with the options she was given
    // before the flood, and with fresh ones.
    let r = from(B, &s.gw, &sign_in).await;
    assert_eq!(r.status, 303, "bob at another address: {}", body_text(&r));
    let credential = s.alice.assert(&alice_options);
    let done = prove_from(
        &s,
        B,
        alice_cookie,
        &alice_hold,
        json!({"method": "webauthn", "credential": credential}),
    )
    .await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    assert_eq!(s.up.count("/admin/users/erin/delete"), 1);
    assert_eq!(login_options_from(&s, B, "bob").await.status, 200);

    // A rate, not a lockout: a minute later A may ask again.
    s.clock.advance(Duration::from_secs(60));
    assert_eq!(login_options_from(&s, A, "bob").await.status, 200);
    let metrics = s.gw.gw.metrics.encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("stepgate_throttled_total{by=\"client\"}")),
        "{metrics}"
    );
    assert_eq!(
        s.up.count("/admin/users/x/delete") + s.up.count("/admin/users/z/delete"),
        0
    );
}

// ------------------------------------------------------- the agent that left

const AGENT_ROUTES: &str = "
  - name: agent
    action: agent.transfer
    match: { methods: [POST], path: /api/agent/transfers }
    require: { approvals: 1, approvers: [ops] }
    display: [ { label: Amount, json: /amount } ]
    hold: { mode: hold, timeout: 5m }
";

fn counter(metrics: &str, line: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The one hold in olivia's queue whose amount is `amount`.
async fn queued(gw: &Gateway, olivia: &ApproverKey, amount: &str) -> (String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let q = get(gw, "/.stepup/holds", &[("authorization", &olivia.bearer())]).await;
        assert_eq!(q.status, 200, "{}", body_text(&q));
        let found = q.json()["holds"].as_array().unwrap().iter().find_map(|h| {
            let shows = h["display"].to_string().contains(amount);
            shows.then(|| {
                (
                    h["hold_id"].as_str().unwrap().to_owned(),
                    h["txn"].as_str().unwrap().to_owned(),
                )
            })
        });
        if let Some(f) = found {
            return f;
        }
        assert!(tokio::time::Instant::now() < deadline, "no queued hold for {amount}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the hold has left the approvers' queue.
async fn gone_from_queue(gw: &Gateway, olivia: &ApproverKey, hold: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let q = get(gw, "/.stepup/holds", &[("authorization", &olivia.bearer())]).await;
        if !q.json()["holds"].to_string().contains(hold) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{hold} stays in the queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What an approver, the trail, the webhook and the metrics say about a
/// hold whose agent went away.
async fn left_a_trace(gw: &Gateway, hook: &Hook, olivia: &ApproverKey, hold: &str, txn: &str) {
    gone_from_queue(gw, olivia, hold).await;
    let status = get(
        gw,
        &format!("/.stepup/holds/{hold}"),
        &[("authorization", &olivia.bearer())],
    )
    .await;
    assert_eq!(status.status, 200, "{}", body_text(&status));
    assert_eq!(status.json()["state"], "expired", "{}", body_text(&status));
    let late = approve(gw, olivia, hold, txn).await;
    assert_ne!(
        late.status,
        200,
        "an abandoned hold cannot be approved: {}",
        body_text(&late)
    );
    let note = hook.wait_for("hold.abandoned", hold).await;
    assert_eq!(note["route"], "agent", "{note}");
    // The record is written behind the notification; give it a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let run = stepgate(&gw.dir, &["audit", "show", "--hold", hold]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        if run.stdout.contains("hold.abandoned") && run.stdout.contains("client_gone") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", run.stdout);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_agent_that_goes_away_leaves_a_record_a_notification_a_metric_and_a_closed_hold() {
    let up = Upstream::start().await;
    let hook = Hook::start(HookMode::Ok).await;
    let olivia = ApproverKey::new("olivia");
    let stepup = vec![approvers_line(&[olivia.yaml(&["ops"], false)])];
    // The proxy in front names each agent: approvals alone decide the
    // route, and the gateway holds nothing for a requester nobody named.
    let top = format!(
        "{}trusted_proxies: [127.0.0.1/32]\nidentity: {{ header: X-Remote-User }}\n",
        notify_yaml(&hook.url())
    );
    let gw = Gateway::start(up.addr, AGENT_ROUTES, &extra(&stepup, &top)).await;
    let abandoned = "stepgate_hold_transitions_total{state=\"abandoned\"}";
    assert_eq!(counter(&gw.gw.metrics.encode(), abandoned), 0.0);

    // HTTP/1.1: the agent's connection closes while it waits.
    let body = br#"{"amount":"4711"}"#;
    let held = request(
        "POST",
        "/api/agent/transfers",
        &[
            ("cookie", "SESSIONID=agent-1"),
            ("x-remote-user", "agent-1"),
            ("content-type", "application/json"),
        ],
        body,
    );
    let mut tls = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
    tls.write_all(&held).await.expect("write");
    tls.flush().await.expect("flush");
    let (hold, txn) = queued(&gw, &olivia, "4711").await;
    hook.wait_for("hold.pending", &hold).await;
    drop(tls);
    left_a_trace(&gw, &hook, &olivia, &hold, &txn).await;
    assert_eq!(counter(&gw.gw.metrics.encode(), abandoned), 1.0);

    // HTTP/2: the agent resets its stream and keeps the connection.
    let mut h2 = h2_client(gw.addr, &gw.pki).await;
    let req = hyper::Request::builder()
        .method("POST")
        .uri("https://localhost/api/agent/transfers")
        .header("cookie", "SESSIONID=agent-2")
        .header("x-remote-user", "agent-2")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"amount":"815"}"#,
        )))
        .unwrap();
    let waiting = tokio::spawn(h2.send_request(req));
    let (hold2, txn2) = queued(&gw, &olivia, "815").await;
    waiting.abort();
    left_a_trace(&gw, &hook, &olivia, &hold2, &txn2).await;
    assert_eq!(counter(&gw.gw.metrics.encode(), abandoned), 2.0);
    assert!(h2.ready().await.is_ok(), "the connection itself stays usable");

    assert_eq!(up.requests().len(), 0, "nothing reached the upstream");
}

/// The rates are settings: with `ceremony_rate_per_client: 3` an address
/// gets exactly three sign-in option sets, and with
/// `ceremony_rate_per_session: 2` a session exactly two passkey option sets,
/// while another address keeps its own allowance.
#[tokio::test]
async fn the_ceremony_rates_follow_the_configured_limits() {
    let s = setup_with("limits: { ceremony_rate_per_client: 3, ceremony_rate_per_session: 2 }").await;
    for n in 1..=3 {
        let r = login_options_from(&s, A, &format!("name-{n}")).await;
        assert_eq!(r.status, 200, "request {n} is within the rate: {}", body_text(&r));
    }
    let r = login_options_from(&s, A, "name-4").await;
    assert_eq!(r.status, 429, "the fourth is over a rate of 3: {}", body_text(&r));
    assert_eq!(r.error_code(), "too_many_holds");
    assert_eq!(
        login_options_from(&s, B, "name-1").await.status,
        200,
        "B has its own allowance"
    );

    // A fresh address, so its three are not what runs out first.
    let c = "127.0.0.4";
    let cookie = "SESSIONID=rated";
    let hold = hold_from(&s, c, cookie, "/admin/users/x/delete").await;
    assert_eq!(options_from(&s, c, cookie, &hold, "alice").await.status, 200);
    assert_eq!(options_from(&s, c, cookie, &hold, "alice").await.status, 200);
    let r = options_from(&s, c, cookie, &hold, "alice").await;
    assert_eq!(
        r.status,
        429,
        "the session's third is over a rate of 2: {}",
        body_text(&r)
    );
}
