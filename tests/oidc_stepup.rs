//! OIDC step-up against a real OpenID Provider: the `oidc-provider` npm
//! package, run by tests/oidc/op.mjs over HTTPS on a free port. The test
//! plays the browser over HTTP: it follows the gateway's redirect to the
//! OP, logs in through the OP's interaction endpoint (the harness replaces
//! the OP's login form with a POST the test drives: user, acr, and
//! optionally the authentication time), follows the OP back, and hands the
//! redirect to the gateway's callback. The redirect URI is registered under
//! the gateway's public name `gw.test`; the test, like a browser whose DNS
//! says so, sends that request to the gateway's address.
//!
//! Simulated pieces, each said where it is used: the crafted `alg: none`
//! and HS256 ID tokens are handed out by the OP's token endpoint through
//! the harness's override (the code exchange itself is real).

mod common;

use common::{read_response, Gateway, Pki, RawResponse, Upstream};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const CLIENT_ID: &str = "stepgate-test";
const CLIENT_SECRET: &str = "a-long-test-client-secret-0123456789abcdef";
const REDIRECT: &str = "https://gw.test/.stepup/oidc/callback";
const COOKIE: &str = "SESSIONID=oidc-browser";

/// The OP process and what the test needs to talk to it.
struct Op {
    issuer: String,
    addr: SocketAddr,
    pki: Pki,
    dir: PathBuf,
    ca_file: PathBuf,
    /// The gateway's `client_secret_file: ...` or `private_key_jwt: ...`.
    credential: String,
    child: Child,
    jar: BTreeMap<String, String>,
    /// The authorization request's parameters as the OP read them (after
    /// resolving a pushed request), from the last `login`.
    seen: serde_json::Value,
}

/// `private_key_jwt`: the OP registers `registered` (a public JWK) for the
/// client; the gateway signs its client assertions with `used` (a PEM).
struct ClientKey {
    registered: serde_json::Value,
    used: String,
}

impl ClientKey {
    /// A fresh key, registered at the OP and used by the gateway.
    fn matching() -> ClientKey {
        let (key, pem) = stepgate::assertion::generate_signing_key();
        ClientKey {
            registered: stepgate::jose::jwk::public_jwk(key.verifying_key()),
            used: pem,
        }
    }
}

/// How the OP is set up.
#[derive(Default)]
struct OpSetup {
    /// Advertise and accept pushed authorization requests (RFC 9126).
    par: bool,
    /// Register the client for `private_key_jwt` (instead of
    /// `client_secret_basic`).
    client_key: Option<ClientKey>,
    /// Serve HTML login and consent pages for a browser, with this password.
    pages_password: Option<&'static str>,
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The OP's one line on stdout once it listens. An OP that never gets
/// there (it once deadlocked inside Node while generating its key) fails
/// the test with its log instead of hanging it: the read has a deadline,
/// and the process is killed when it passes.
fn ready_line(child: &mut Child, log: &Path) -> String {
    const START_WITHIN: Duration = Duration::from_secs(60);
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    match rx.recv_timeout(START_WITHIN) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => panic!("reading the OP's stdout: {e}"),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the OP did not announce itself within {START_WITHIN:?}; its log: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        }
    }
}

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oidc-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

impl Op {
    fn start(par: bool) -> Op {
        Op::start_with(OpSetup {
            par,
            ..OpSetup::default()
        })
    }

    fn start_with(setup: OpSetup) -> Op {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            root.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc/node_modules is missing: run ./scripts/test-env"
        );
        let dir = scratch();
        let pki = Pki::new();
        std::fs::write(dir.join("cert.pem"), &pki.cert_pem).expect("cert");
        std::fs::write(dir.join("key.pem"), &pki.key_pem).expect("key");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &pki.ca_pem).expect("ca");
        let mut cfg = serde_json::json!({
            "cert": dir.join("cert.pem"), "key": dir.join("key.pem"),
            "client_id": CLIENT_ID, "redirect_uri": REDIRECT, "par": setup.par,
        });
        let credential = match &setup.client_key {
            Some(key) => {
                cfg["client_jwks"] = serde_json::json!({ "keys": [key.registered] });
                let key_file = dir.join("client-key.pem");
                stepgate::keys::write_private(&key_file, key.used.as_bytes()).expect("client key");
                format!("private_key_jwt: {{ key: '{}' }}", key_file.display())
            }
            None => {
                cfg["client_secret"] = CLIENT_SECRET.into();
                let secret_file = dir.join("client-secret");
                stepgate::keys::write_private(&secret_file, format!("{CLIENT_SECRET}\n").as_bytes()).expect("secret");
                format!("client_secret_file: '{}'", secret_file.display())
            }
        };
        if let Some(password) = setup.pages_password {
            cfg["pages"] = serde_json::json!({ "password": password });
        }
        std::fs::write(dir.join("op.json"), cfg.to_string()).expect("op config");
        let mut child = Command::new("node")
            .arg(root.join("op.mjs"))
            .arg(dir.join("op.json"))
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The OP's own log, for a failing test's post-mortem.
            .stderr(std::fs::File::create(dir.join("op.log")).expect("op log"))
            .spawn()
            .expect("node runs");
        let line = ready_line(&mut child, &dir.join("op.log"));
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("OP said {line:?}"));
        let port = ready["port"].as_u64().expect("port") as u16;
        Op {
            issuer: ready["issuer"].as_str().expect("issuer").to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pki,
            dir,
            ca_file,
            credential,
            child,
            jar: BTreeMap::new(),
            seen: serde_json::Value::Null,
        }
    }

    /// The `stepup:` entries for a gateway that uses this OP.
    fn stepup_yaml(&self) -> String {
        format!(
            "  oidc: {{ issuer: '{}', client_id: {CLIENT_ID}, {}, redirect_uri: '{REDIRECT}', ca: '{}' }}\n",
            self.issuer,
            self.credential,
            self.ca_file.display()
        )
    }

    /// One request to the OP with its cookies (a browser's cookie jar,
    /// paths ignored: the OP scopes them, the test only follows along).
    async fn send(&mut self, method: &str, path_and_query: &str, form: Option<&str>) -> RawResponse {
        let mut req = format!(
            "{method} {path_and_query} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
            self.addr
        );
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req.push_str(&format!("cookie: {}\r\n", cookies.join("; ")));
        }
        let body = form.unwrap_or("");
        if form.is_some() {
            req.push_str(&format!(
                "content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        let mut tls = common::tls_connect(self.addr, &self.pki, &[b"http/1.1"]).await;
        tls.write_all(req.as_bytes()).await.expect("write");
        let resp = read_response(&mut tls).await;
        for c in resp.headers_named("set-cookie") {
            if let Some((k, v)) = c.split(';').next().and_then(|kv| kv.split_once('=')) {
                self.jar.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        resp
    }

    /// Follows the browser from the authorization URL to the redirect back
    /// to the gateway, logging in as `sub` at `acr`, authenticated at
    /// `auth_time` (default: now). Returns the redirect's path and query.
    async fn login(&mut self, authorize_url: &str, sub: &str, acr: &str, auth_time: Option<u64>) -> String {
        let path = self.local(authorize_url);
        let resp = self.send("GET", &path, None).await;
        assert_eq!(resp.status, 303, "authorize: {}", body(&resp));
        let interaction = resp.header("location").expect("to the interaction").to_owned();
        let interaction = self.local(&interaction);
        assert!(interaction.starts_with("/interaction/"), "{interaction}");
        let details = self.send("GET", &interaction, None).await;
        assert_eq!(details.status, 200, "{}", body(&details));
        assert_eq!(details.json()["prompt"]["name"], "login");
        self.seen = details.json()["params"].clone();
        let mut form = format!("sub={sub}&acr={}", urlencode(acr));
        if let Some(t) = auth_time {
            form.push_str(&format!("&auth_time={t}"));
        }
        let done = self.send("POST", &format!("{interaction}/login"), Some(&form)).await;
        assert_eq!(done.status, 303, "login: {}", body(&done));
        let mut next = self.local(done.header("location").expect("resume"));
        // The OP resumes the authorization, then redirects to the client.
        for _ in 0..4 {
            let resp = self.send("GET", &next, None).await;
            assert!(
                matches!(resp.status, 302 | 303),
                "resume: {} {}",
                resp.status,
                body(&resp)
            );
            let location = resp.header("location").expect("location").to_owned();
            if let Some(rest) = location.strip_prefix("https://gw.test") {
                return rest.to_owned();
            }
            next = self.local(&location);
        }
        panic!("the OP never redirected back to the gateway");
    }

    fn local(&self, url: &str) -> String {
        match url.strip_prefix(&self.issuer) {
            Some(rest) => rest.to_owned(),
            None => {
                assert!(url.starts_with('/'), "a redirect to somewhere else: {url}");
                url.to_owned()
            }
        }
    }

    async fn control(&mut self, path: &str, body: &str) -> RawResponse {
        self.send("POST", path, Some(body)).await
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn body(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

const ROUTES: &str = "
  - name: wire
    action: money.wire
    match: { methods: [POST], path: /admin/wire }
    require: { methods: [oidc], acr: [phr, phrh], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
";

struct World {
    op: Op,
    gw: Gateway,
    up: Upstream,
}

async fn world(par: bool, extra: &str) -> World {
    world_with(par, ROUTES, extra).await
}

async fn world_with(par: bool, routes: &str, extra: &str) -> World {
    world_on(Op::start(par), routes, extra).await
}

async fn world_on(op: Op, routes: &str, extra: &str) -> World {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, routes, &format!("{}{extra}", op.stepup_yaml())).await;
    World { op, gw, up }
}

impl World {
    async fn gw_get(&self, target: &str, headers: &[(&str, &str)]) -> RawResponse {
        self.gw_get_as(Some(COOKIE), target, headers).await
    }

    /// A GET in the session of `cookie` (none at all with `None`).
    async fn gw_get_as(&self, cookie: Option<&str>, target: &str, headers: &[(&str, &str)]) -> RawResponse {
        let mut h: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        h.extend_from_slice(headers);
        common::raw(self.gw.addr, &self.gw.pki, &common::request("GET", target, &h, b"")).await
    }

    /// The held request; returns the hold id.
    async fn hold(&self, headers: &[(&str, &str)]) -> String {
        let mut h = vec![("cookie", COOKIE), ("content-type", "application/json")];
        h.extend_from_slice(headers);
        let resp = common::raw(
            self.gw.addr,
            &self.gw.pki,
            &common::request("POST", "/admin/wire", &h, br#"{"amount":100}"#),
        )
        .await;
        assert_eq!(resp.status, 401, "{}", body(&resp));
        assert_eq!(resp.error_code(), "step_up_required");
        resp.json()["hold_id"].as_str().expect("hold id").to_owned()
    }

    /// `GET holds/{id}/oidc`: the authorization URL the browser is sent to.
    async fn start(&self, hold: &str, headers: &[(&str, &str)]) -> String {
        let resp = self.gw_get(&format!("/.stepup/holds/{hold}/oidc"), headers).await;
        assert_eq!(resp.status, 303, "{}", body(&resp));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        resp.header("location").expect("location").to_owned()
    }

    async fn callback(&self, path_and_query: &str, headers: &[(&str, &str)]) -> RawResponse {
        assert!(
            path_and_query.starts_with("/.stepup/oidc/callback?"),
            "{path_and_query}"
        );
        self.gw_get(path_and_query, headers).await
    }

    fn forwarded(&self) -> usize {
        self.up.requests().len()
    }

    /// The trail's records of one event (read after a shutdown, which
    /// writes out what was recorded without waiting).
    fn trail(&self, event: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.gw.dir.join("state/audit.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["event"] == event)
            .collect()
    }

    /// The reasons of the trail's `proof.rejected` records for oidc.
    fn rejections(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.gw.dir.join("state/audit.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["event"] == "proof.rejected" && r["method"] == "oidc")
            .map(|r| r["reason"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    async fn hold_state(&self, hold: &str) -> serde_json::Value {
        let resp = self.gw_get(&format!("/.stepup/holds/{hold}"), &[]).await;
        resp.json()
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Rewrites one query parameter (or drops it with `None`), as a user
/// editing the redirect in the address bar would.
fn edit(url: &str, name: &str, value: Option<&str>) -> String {
    let (base, q) = url.split_once('?').expect("query");
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if k == name {
            if let Some(value) = value {
                s.append_pair(&k, value);
            }
        } else {
            s.append_pair(&k, &v);
        }
    }
    format!("{base}?{}", s.finish())
}

async fn full_flow(par: bool) {
    let mut w = world(par, "").await;
    let hold = w.hold(&[]).await;
    let authorize = w.start(&hold, &[]).await;
    assert!(authorize.starts_with(&format!("{}/auth?", w.op.issuer)), "{authorize}");
    if par {
        // The browser carries only a reference: nothing it could edit.
        assert!(query_param(&authorize, "request_uri").is_some(), "{authorize}");
        for p in ["acr_values", "max_age", "nonce", "code_challenge", "prompt"] {
            assert!(query_param(&authorize, p).is_none(), "{p} in {authorize}");
        }
    } else {
        assert_eq!(query_param(&authorize, "acr_values").as_deref(), Some("phr phrh"));
        assert_eq!(query_param(&authorize, "prompt").as_deref(), Some("login"));
        assert_eq!(query_param(&authorize, "max_age").as_deref(), Some("300"));
        assert_eq!(
            query_param(&authorize, "code_challenge_method").as_deref(),
            Some("S256")
        );
        let claims: serde_json::Value =
            serde_json::from_str(&query_param(&authorize, "claims").expect("claims")).expect("json");
        assert_eq!(claims["id_token"]["acr"]["essential"], true);
    }
    let back = w.op.login(&authorize, "alice", "phr", None).await;
    // What the OP acted on (with PAR, the pushed request it resolved): the
    // route's acr in its order, its max_age, a forced login, the essential
    // acr claim and PKCE.
    let seen = &w.op.seen;
    assert_eq!(seen["acr_values"], "phr phrh", "{seen}");
    assert_eq!(seen["max_age"].to_string().trim_matches('"'), "300", "{seen}");
    assert_eq!(seen["prompt"], "login", "{seen}");
    assert_eq!(seen["code_challenge_method"], "S256", "{seen}");
    let claims = match &seen["claims"] {
        serde_json::Value::String(text) => serde_json::from_str(text).expect("claims json"),
        other => other.clone(),
    };
    assert_eq!(claims["id_token"]["acr"]["essential"], true, "{seen}");
    assert_eq!(
        claims["id_token"]["acr"]["values"],
        serde_json::json!(["phr", "phrh"]),
        "{seen}"
    );
    assert_eq!(w.forwarded(), 0, "nothing forwarded before the callback");
    let resp = w.callback(&back, &[]).await;
    assert_eq!(resp.status, 200, "{}", body(&resp));
    assert_eq!(
        resp.header("x-upstream"),
        Some("recorder"),
        "the browser lands on the upstream's response"
    );
    let reqs = w.up.requests();
    assert_eq!(reqs.len(), 1);
    let assertion = reqs[0].header("x-stepup-assertion").expect("assertion");
    let claims = common::verify_assertion(&w.gw, &assertion);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["acr"], "phr", "acr comes from the ID token");
    assert_eq!(
        claims["amr"],
        serde_json::json!(["pwd", "otp"]),
        "amr comes from the ID token"
    );
    assert_eq!(claims["hold"], hold.as_str());
    // The same redirect again: state is single use.
    let again = w.callback(&back, &[]).await;
    assert_eq!(again.status, 400, "{}", body(&again));
    assert!(body(&again).contains("not valid"), "{}", body(&again));
    assert_eq!(w.forwarded(), 1);
    w.gw.shutdown().await;
}

#[tokio::test]
async fn full_flow_with_par() {
    full_flow(true).await;
}

#[tokio::test]
async fn full_flow_without_par() {
    full_flow(false).await;
}

/// Refused proofs: the hold stays pending with one attempt fewer, the
/// person sees the step-up page with the reason, nothing is forwarded.
async fn assert_refused(w: &World, hold: &str, resp: &RawResponse, attempts_left: u64, reason: &str) {
    assert_eq!(resp.status, 401, "{}", body(resp));
    // The trail says why (the record is durable before the response).
    let reasons = w.rejections();
    assert!(
        reasons.last().is_some_and(|r| r.contains(reason)),
        "want a proof.rejected record about {reason:?}, trail has {reasons:?}"
    );
    let page = body(resp);
    assert!(page.contains("was not accepted"), "{page}");
    assert!(page.contains("Sign in again with 127.0.0.1"), "{page}");
    assert_eq!(w.forwarded(), 0);
    let state = w.hold_state(hold).await;
    assert_eq!(state["state"], "pending", "{state}");
    let page = body(resp);
    assert!(page.contains(&format!("({attempts_left} attempts left)")), "{page}");
}

#[tokio::test]
async fn stripped_acr_values_and_a_lower_acr_are_refused() {
    let mut w = world(false, "").await;
    let hold = w.hold(&[]).await;
    let authorize = w.start(&hold, &[]).await;
    // Without PAR the browser can edit the request: drop acr_values and
    // the essential-acr claims request, then log in at a lower level.
    let stripped = edit(&edit(&authorize, "acr_values", None), "claims", None);
    let back = w.op.login(&stripped, "alice", "urn:stepgate:test:pwd", None).await;
    let resp = w.callback(&back, &[]).await;
    assert_refused(&w, &hold, &resp, 4, "acr `urn:stepgate:test:pwd`").await;
    w.gw.shutdown().await;
}

#[tokio::test]
async fn stale_auth_time_is_refused() {
    let mut w = world(true, "").await;
    let hold = w.hold(&[]).await;
    let authorize = w.start(&hold, &[]).await;
    let back = w.op.login(&authorize, "alice", "phr", Some(now() - 3600)).await;
    let resp = w.callback(&back, &[]).await;
    assert_refused(&w, &hold, &resp, 4, "auth_time").await;
    w.gw.shutdown().await;
}

#[tokio::test]
async fn wrong_nonce_is_refused() {
    let mut w = world(false, "").await;
    let hold = w.hold(&[]).await;
    let authorize = w.start(&hold, &[]).await;
    let tampered = edit(&authorize, "nonce", Some("a-nonce-of-my-choosing"));
    let back = w.op.login(&tampered, "alice", "phr", None).await;
    let resp = w.callback(&back, &[]).await;
    assert_refused(&w, &hold, &resp, 4, "nonce").await;
    w.gw.shutdown().await;
}

#[tokio::test]
async fn replayed_code_with_a_fresh_state_is_refused() {
    let mut w = world(false, "").await;
    let hold = w.hold(&[]).await;
    let first = w.start(&hold, &[]).await;
    let back = w.op.login(&first, "alice", "phr", None).await;
    let code = query_param(&back, "code").expect("code");
    // A second flow on the same hold, answered with the first flow's code.
    let second = w.start(&hold, &[]).await;
    let state = query_param(&second, "state").expect("state");
    let forged = format!(
        "/.stepup/oidc/callback?code={}&state={}&iss={}",
        urlencode(&code),
        urlencode(&state),
        urlencode(&w.op.issuer)
    );
    // The first callback goes through (the code is spent there) ...
    let ok = w.callback(&back, &[]).await;
    assert_eq!(ok.status, 200, "{}", body(&ok));
    // ... and the replay finds the hold released.
    let replay = w.callback(&forged, &[]).await;
    assert_ne!(replay.status, 200, "{}", body(&replay));
    assert_eq!(w.forwarded(), 1);
    w.gw.shutdown().await;
}

#[tokio::test]
async fn replayed_code_on_an_open_hold_is_refused() {
    let mut w = world(false, "").await;
    let hold = w.hold(&[]).await;
    let first = w.start(&hold, &[]).await;
    // Log in with a stale time, so the first callback is refused but its
    // code is spent; then present the same code under a new flow's state.
    let back = w.op.login(&first, "alice", "phr", Some(now() - 3600)).await;
    let resp = w.callback(&back, &[]).await;
    assert_refused(&w, &hold, &resp, 4, "auth_time").await;
    let code = query_param(&back, "code").expect("code");
    let second = w.start(&hold, &[]).await;
    let state = query_param(&second, "state").expect("state");
    let replay = w
        .callback(
            &format!(
                "/.stepup/oidc/callback?code={}&state={}",
                urlencode(&code),
                urlencode(&state)
            ),
            &[],
        )
        .await;
    assert_refused(&w, &hold, &replay, 3, "already used").await;
    w.gw.shutdown().await;
}

#[tokio::test]
async fn another_sub_than_the_known_identity_is_refused() {
    let extra = "trusted_proxies: [127.0.0.1/32]\nidentity: { header: X-Remote-User }\n";
    let mut w = world(true, extra).await;
    let who = [("x-remote-user", "alice")];
    let hold = w.hold(&who).await;
    let authorize = w.start(&hold, &who).await;
    let back = w.op.login(&authorize, "bob", "phr", None).await;
    let resp = w.callback(&back, &who).await;
    assert_refused(&w, &hold, &resp, 4, "step-up by bob").await;
    // alice herself is accepted on the same hold (signing in afresh at
    // the OP, as a person switching accounts would).
    w.op.jar.clear();
    let authorize = w.start(&hold, &who).await;
    let back = w.op.login(&authorize, "alice", "phr", None).await;
    let resp = w.callback(&back, &who).await;
    assert_eq!(resp.status, 200, "{}", body(&resp));
    assert_eq!(w.forwarded(), 1);
    w.gw.shutdown().await;
}

/// The OP's redirect back arrives in another browser session than the one
/// that started the sign-in (a sign-in link passed to someone else, or a
/// login forced on a victim's browser): refused, nothing released, no
/// attempt spent, audited. The `state` it carried is spent
/// too, so that code is never exchanged; the hold's own session can start
/// again and finish.
#[tokio::test]
async fn a_callback_in_another_session_is_refused_and_releases_nothing() {
    let mut w = world(true, "").await;
    let hold = w.hold(&[]).await;
    for stranger in [Some("SESSIONID=someone-else"), None] {
        let authorize = w.start(&hold, &[]).await;
        let back = w.op.login(&authorize, "alice", "phr", None).await;
        let resp = w.gw_get_as(stranger, &back, &[]).await;
        assert_eq!(resp.status, 403, "{stranger:?}: {}", body(&resp));
        assert_eq!(resp.error_code(), "session_mismatch", "{stranger:?}");
        assert_eq!(w.forwarded(), 0, "{stranger:?}");
        let state = w.hold_state(&hold).await;
        assert_eq!(state["state"], "pending", "{stranger:?}: {state}");
        // The owner arriving with the same redirect finds it spent.
        let spent = w.callback(&back, &[]).await;
        assert_eq!(spent.status, 400, "{}", body(&spent));
        assert!(body(&spent).contains("not valid"), "{}", body(&spent));
    }
    // The strangers spent none of the hold's attempts: the owner's first
    // refused sign-in (a stale one) still has 4 of 5 left ...
    w.op.jar.clear();
    let authorize = w.start(&hold, &[]).await;
    let back = w.op.login(&authorize, "alice", "phr", Some(now() - 3600)).await;
    let resp = w.callback(&back, &[]).await;
    assert_refused(&w, &hold, &resp, 4, "auth_time").await;
    // ... and the hold is intact: its own session signs in afresh and is
    // released.
    w.op.jar.clear();
    let authorize = w.start(&hold, &[]).await;
    let back = w.op.login(&authorize, "alice", "phr", None).await;
    let resp = w.callback(&back, &[]).await;
    assert_eq!(resp.status, 200, "{}: {:?}", body(&resp), w.rejections());
    assert_eq!(w.forwarded(), 1);
    w.gw.shutdown().await;
    let refused: Vec<_> = w
        .trail("proof.rejected")
        .into_iter()
        .filter(|r| r["hold"] == hold.as_str() && r["method"] == "oidc")
        .collect();
    let strangers: Vec<_> = refused
        .iter()
        .filter(|r| r["reason"] == "oidc callback from another session")
        .collect();
    assert_eq!(strangers.len(), 2, "{refused:?}");
}

/// ID tokens the OP signs with its own key but that are not for this
/// gateway, or no longer valid: another issuer (a mixed-up or misconfigured
/// OP), another client's audience, expired. The harness re-signs the real
/// token's claims with the changes (its /test/id-token-claims); the last
/// round changes a harmless claim and is accepted, so the re-signing
/// itself is not what the gateway refuses.
#[tokio::test]
async fn an_id_token_for_another_issuer_or_audience_or_expired_is_refused() {
    let mut w = world(false, "").await;
    let hold = w.hold(&[]).await;
    let t = now();
    let cases = [
        (
            serde_json::json!({ "iss": "https://other-op.test" }),
            "iss `https://other-op.test`",
        ),
        (
            serde_json::json!({ "aud": "another-client" }),
            "aud does not name this client",
        ),
        (serde_json::json!({ "iat": t - 400, "exp": t - 120 }), "expired"),
    ];
    let mut left = 4;
    for (claims, reason) in cases {
        let authorize = w.start(&hold, &[]).await;
        let set = w.op.control("/test/id-token-claims", &claims.to_string()).await;
        assert_eq!(set.status, 204);
        let back = w.op.login(&authorize, "alice", "phr", None).await;
        let resp = w.callback(&back, &[]).await;
        assert_refused(&w, &hold, &resp, left, reason).await;
        left -= 1;
    }
    let authorize = w.start(&hold, &[]).await;
    let set = w.op.control("/test/id-token-claims", r#"{"amr":["pwd","hwk"]}"#).await;
    assert_eq!(set.status, 204);
    let back = w.op.login(&authorize, "alice", "phr", None).await;
    let resp = w.callback(&back, &[]).await;
    assert_eq!(resp.status, 200, "{}: {:?}", body(&resp), w.rejections());
    let reqs = w.up.requests();
    assert_eq!(reqs.len(), 1);
    let claims = common::verify_assertion(&w.gw, &reqs[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "hwk"]));
    w.gw.shutdown().await;
}

/// Simulated: the OP's token endpoint is made to return a crafted ID
/// token (through the harness's override) in place of its own; the code
/// exchange that carries it is real.
#[tokio::test]
async fn alg_none_and_hs256_with_the_client_secret_are_refused() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let mut w = world(false, "").await;
    let hold = w.hold(&[]).await;
    for attempt in 0..2 {
        let authorize = w.start(&hold, &[]).await;
        let t = now();
        let claims = serde_json::json!({
            "iss": w.op.issuer, "aud": CLIENT_ID, "sub": "alice", "iat": t, "exp": t + 300,
            "auth_time": t, "acr": "phr", "amr": ["pwd"],
            "nonce": "unknown-to-the-attacker-but-irrelevant-here",
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let token = if attempt == 0 {
            format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#))
        } else {
            let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#));
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(CLIENT_SECRET.as_bytes()).expect("hmac");
            mac.update(input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
        };
        let set = w.op.control("/test/id-token-override", &token).await;
        assert_eq!(set.status, 204);
        let back = w.op.login(&authorize, "alice", "phr", None).await;
        let resp = w.callback(&back, &[]).await;
        assert_refused(&w, &hold, &resp, 4 - attempt, "is not allowed").await;
    }
    w.gw.shutdown().await;
}

/// The OP rotates its signing key between the start of a flow and its
/// callback: the ID token names a kid the gateway has not seen, and the
/// gateway fetches the JWKS again instead of refusing.
async fn key_rotation(par: bool) {
    let mut w = world(par, "").await;
    let hold = w.hold(&[]).await;
    // The start fetches the OP's JWKS (one key) ...
    let authorize = w.start(&hold, &[]).await;
    assert_eq!(query_param(&authorize, "request_uri").is_some(), par, "{authorize}");
    // ... then the OP rotates: a new key signs from now on. (With PAR the
    // pushed request made before the rotation is still the one used.)
    let rotated = w.op.control("/test/rotate", "").await;
    assert_eq!(rotated.status, 200);
    let new_kid = rotated.json()["kid"].as_str().expect("kid").to_owned();
    let back = w.op.login(&authorize, "alice", "phr", None).await;
    let resp = w.callback(&back, &[]).await;
    assert_eq!(resp.status, 200, "{}: {:?}", body(&resp), w.rejections());
    assert_eq!(w.forwarded(), 1);
    // The OP's JWKS now starts with the new key, the one it signs with.
    let jwks = w.op.send("GET", "/jwks", None).await;
    assert_eq!(jwks.json()["keys"][0]["kid"], new_kid.as_str());
    assert_eq!(jwks.json()["keys"].as_array().map(Vec::len), Some(2));
    w.gw.shutdown().await;
}

#[tokio::test]
async fn a_key_rotation_between_start_and_callback_is_accepted() {
    key_rotation(false).await;
}

#[tokio::test]
async fn a_key_rotation_between_start_and_callback_is_accepted_with_par() {
    key_rotation(true).await;
}

/// `private_key_jwt` (RFC 7523): the OP knows no secret for this client,
/// only its public key, so the pushed request and the code exchange are
/// both accepted on the strength of the gateway's signed assertion.
#[tokio::test]
async fn private_key_jwt_authenticates_the_gateway_at_the_par_and_token_endpoints() {
    let op = Op::start_with(OpSetup {
        par: true,
        client_key: Some(ClientKey::matching()),
        ..OpSetup::default()
    });
    assert!(op.credential.starts_with("private_key_jwt:"), "{}", op.credential);
    let mut w = world_on(op, ROUTES, "").await;
    let hold = w.hold(&[]).await;
    let authorize = w.start(&hold, &[]).await;
    assert!(query_param(&authorize, "request_uri").is_some(), "{authorize}");
    let back = w.op.login(&authorize, "alice", "phr", None).await;
    let resp = w.callback(&back, &[]).await;
    assert_eq!(resp.status, 200, "{}: {:?}", body(&resp), w.rejections());
    let reqs = w.up.requests();
    assert_eq!(reqs.len(), 1);
    let claims = common::verify_assertion(&w.gw, &reqs[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["acr"], "phr");
    w.gw.shutdown().await;
}

/// The OP has one key registered for the client; the gateway signs with
/// another. With PAR the push is refused, so the person is told the
/// identity provider cannot be used; without PAR the person signs in, and
/// the code exchange is refused: no proof either way, nothing forwarded.
#[tokio::test]
async fn a_client_assertion_signed_by_another_key_is_refused() {
    let wrong = || ClientKey {
        registered: ClientKey::matching().registered,
        used: ClientKey::matching().used,
    };
    let mut w = world_on(
        Op::start_with(OpSetup {
            par: true,
            client_key: Some(wrong()),
            ..OpSetup::default()
        }),
        ROUTES,
        "",
    )
    .await;
    let hold = w.hold(&[]).await;
    let resp = w.gw_get(&format!("/.stepup/holds/{hold}/oidc"), &[]).await;
    assert_eq!(resp.status, 502, "{}", body(&resp));
    assert!(body(&resp).contains("could not be reached"), "{}", body(&resp));
    assert!(resp.header("location").is_none());
    assert_eq!(w.hold_state(&hold).await["state"], "pending");
    assert_eq!(w.forwarded(), 0);
    w.gw.shutdown().await;
    let unavailable = w.trail("oidc.unavailable");
    assert!(
        unavailable
            .iter()
            .any(|r| r["reason"] == "pushed authorization request: the provider answered 401 Unauthorized"),
        "{unavailable:?}"
    );

    let mut w = world_on(
        Op::start_with(OpSetup {
            par: false,
            client_key: Some(wrong()),
            ..OpSetup::default()
        }),
        ROUTES,
        "",
    )
    .await;
    let hold = w.hold(&[]).await;
    let authorize = w.start(&hold, &[]).await;
    let back = w.op.login(&authorize, "alice", "phr", None).await;
    let resp = w.callback(&back, &[]).await;
    assert_refused(&w, &hold, &resp, 4, "token: the provider answered 401").await;
    w.gw.shutdown().await;
}

#[tokio::test]
async fn bearer_sessions_get_the_rfc9470_challenge_from_the_route() {
    let w = world(false, "").await;
    let resp = common::raw(
        w.gw.addr,
        &w.gw.pki,
        &common::request(
            "POST",
            "/admin/wire",
            &[("authorization", "Bearer opaque-access-token")],
            b"{}",
        ),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", body(&resp));
    let bearer = resp
        .headers_named("www-authenticate")
        .into_iter()
        .find(|v| v.starts_with("Bearer "))
        .expect("a Bearer challenge")
        .to_owned();
    assert_eq!(
        bearer,
        "Bearer error=\"insufficient_user_authentication\", acr_values=\"phr phrh\", max_age=\"300\""
    );
}

async fn mint(op: &mut Op, auth_time: u64, acr: &str) -> String {
    let t = now();
    let claims = serde_json::json!({
        "iss": op.issuer, "aud": CLIENT_ID, "sub": "alice", "client_id": CLIENT_ID,
        "iat": t, "exp": t + 300, "jti": stepgate::ids::random_token(),
        "auth_time": auth_time, "acr": acr, "amr": ["pwd", "otp"],
    });
    let r = op.control("/test/mint-access-token", &claims.to_string()).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    body(&r)
}

/// Simulated: the access tokens are signed by the OP's harness with the
/// OP's own current key (oidc-provider issues JWT access tokens only for
/// resource servers, which this test does not set up); the gateway fetches
/// the key from the OP's real JWKS.
#[tokio::test]
async fn an_rfc9068_access_token_with_fresh_auth_time_is_itself_a_proof() {
    let mut w = world(false, "").await;
    let fresh = mint(&mut w.op, now() - 10, "phr").await;
    let stale = mint(&mut w.op, now() - 3600, "phr").await;
    let low = mint(&mut w.op, now() - 10, "urn:stepgate:test:pwd").await;
    let send = |token: String| {
        let gw = &w.gw;
        async move {
            let auth = format!("Bearer {token}");
            common::raw(
                gw.addr,
                &gw.pki,
                &common::request("POST", "/admin/wire", &[("authorization", &auth)], b"{}"),
            )
            .await
        }
    };
    for (token, what) in [(stale, "stale auth_time"), (low, "lower acr")] {
        let resp = send(token).await;
        assert_eq!(resp.status, 401, "{what}: {}", body(&resp));
        assert_eq!(resp.error_code(), "step_up_required", "{what}");
        assert!(
            resp.headers_named("www-authenticate")
                .iter()
                .any(|v| v.contains("insufficient_user_authentication") && v.contains("acr_values=\"phr phrh\"")),
            "{what}"
        );
    }
    assert_eq!(w.forwarded(), 0);
    let resp = send(fresh).await;
    assert_eq!(resp.status, 200, "{}", body(&resp));
    let reqs = w.up.requests();
    assert_eq!(reqs.len(), 1, "forwarded at once, no hold");
    let claims = common::verify_assertion(&w.gw, &reqs[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["acr"], "phr");
    assert!(claims.get("hold").is_none_or(|h| h.is_null()), "{claims:?}");
}

/// Two routes share an action and a sudo window; only one asks for a
/// strong `acr`. A low-`acr` login on the lax route must not be reused
/// for the strict one (issue 20 #6: a reuse applies only where the earlier
/// step-up would itself satisfy the later route).
const REUSE_ROUTES: &str = "
  - name: wire-lite
    action: money.wire
    match: { methods: [POST], path: /admin/wire-lite }
    require: { methods: [oidc], max_age: 5m, reuse: 5m }
    hold: { mode: challenge, timeout: 2m }
  - name: wire
    action: money.wire
    match: { methods: [POST], path: /admin/wire }
    require: { methods: [oidc], acr: [phr, phrh], max_age: 5m, reuse: 5m }
    hold: { mode: challenge, timeout: 2m }
";

#[tokio::test]
async fn a_reused_step_up_must_meet_the_later_routes_acr() {
    let mut w = world_with(false, REUSE_ROUTES, "").await;
    let post = |path: &'static str| {
        common::request(
            "POST",
            path,
            &[("cookie", COOKIE), ("content-type", "application/json")],
            br#"{"amount":100}"#,
        )
    };
    // A low-assurance login on the lax route forwards it.
    let lax = common::raw(w.gw.addr, &w.gw.pki, &post("/admin/wire-lite")).await;
    assert_eq!(lax.status, 401, "{}", body(&lax));
    let lax_hold = lax.json()["hold_id"].as_str().expect("hold id").to_owned();
    let authorize = w.start(&lax_hold, &[]).await;
    let back = w.op.login(&authorize, "alice", "urn:stepgate:test:pwd", None).await;
    let resp = w.callback(&back, &[]).await;
    assert_eq!(resp.status, 200, "{}", body(&resp));
    assert_eq!(w.forwarded(), 1);

    // Same session, same action, inside the window: the strict route still
    // holds, because that login's acr is not one it accepts.
    let strict_hold = w.hold(&[]).await;
    assert_eq!(w.forwarded(), 1, "the low-acr step-up was not reused");

    // Control: a phr login on the strict route is reused by the next one.
    let authorize = w.start(&strict_hold, &[]).await;
    let back = w.op.login(&authorize, "alice", "phr", None).await;
    let resp = w.callback(&back, &[]).await;
    assert_eq!(resp.status, 200, "{}", body(&resp));
    assert_eq!(w.forwarded(), 2);
    let again = common::raw(w.gw.addr, &w.gw.pki, &post("/admin/wire")).await;
    assert_eq!(again.status, 200, "the phr step-up is reused: {}", body(&again));
    let reqs = w.up.requests();
    assert_eq!(reqs.len(), 3);
    let claims = common::verify_assertion(&w.gw, &reqs[2].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["reuse"], true);
    assert_eq!(claims["acr"], "phr");
    w.gw.shutdown().await;
}

const BROWSER_ROUTES: &str = "
  - name: wire
    action: money.wire
    match: { methods: [POST], path: /admin/wire }
    require: { methods: [oidc], acr: [phr, phrh], max_age: 5m }
    hold: { mode: auto, timeout: 2m }
";

/// The whole flow in headless Chromium (tests/browser/oidc_flow.mjs): a
/// form POST to a sensitive route, the step-up page, "Sign in again", the
/// OP's own login and consent pages filled in by the browser (a cancel
/// first, which is refused, then allow), back through the callback to the
/// upstream's answer. Screenshots of each page state go to
/// target/tmp/oidc-screenshots. PAR is on, as an OP that offers it is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_in_headless_chromium() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("STEPGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium not found at {chromium}: install Debian's `chromium` package (.ci/run does)"
    );
    assert!(
        browser_dir.join("node_modules/playwright-core/package.json").exists(),
        "the browser test driver is not installed: run ./scripts/test-env"
    );
    const PASSWORD: &str = "correct horse battery staple";
    let op = Op::start_with(OpSetup {
        par: true,
        pages_password: Some(PASSWORD),
        ..OpSetup::default()
    });
    let mut w = world_on(op, BROWSER_ROUTES, "").await;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-screenshots");
    for name in SCREENSHOTS {
        let _ = std::fs::remove_file(shots.join(format!("{name}.png")));
    }
    let (cookie, value) = COOKIE.split_once('=').expect("cookie");
    let cfg = serde_json::json!({
        "gateway_port": w.gw.addr.port(),
        "gateway_cert": w.gw.dir.join("cert.pem"),
        "op_issuer": w.op.issuer,
        "op_cert": w.op.dir.join("cert.pem"),
        "password": PASSWORD,
        "cookie": { "name": cookie, "value": value },
        "screenshots": shots,
    });
    let cfg_file = w.op.dir.join("browser.json");
    std::fs::write(&cfg_file, cfg.to_string()).expect("browser config");
    let scenario = tokio::process::Command::new("node")
        .arg("oidc_flow.mjs")
        .arg(&cfg_file)
        .current_dir(&browser_dir)
        .kill_on_drop(true)
        .output();
    // Each browser step has its own timeout in the scenario; this bounds
    // the rest (launch, close), so a stuck browser fails the test.
    let out = tokio::time::timeout(Duration::from_secs(300), scenario)
        .await
        .expect("the browser scenario did not end within 5 minutes (node was killed)")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "ok oidc_flow"),
        "the browser flow failed ({}):\n{stdout}\n{stderr}\nOP log: {}",
        out.status,
        w.op.dir.join("op.log").display()
    );
    let hold = stdout
        .lines()
        .find_map(|l| l.strip_prefix("hold "))
        .expect("the scenario names the hold")
        .to_owned();
    for name in SCREENSHOTS {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "no screenshot {name} in {}",
            shots.display()
        );
    }

    // The upstream got the held form POST once, after the allowed sign-in,
    // with an assertion from the ID token.
    let reqs = w.up.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].target, "/admin/wire");
    assert_eq!(&reqs[0].body[..], b"amount=100&to=DE89370400440532013000");
    let claims = common::verify_assertion(&w.gw, &reqs[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["acr"], "phr");
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "hwk"]));
    assert_eq!(claims["hold"], hold.as_str());
    // The cancel is in the trail as a refused proof.
    let reasons = w.rejections();
    assert!(reasons.iter().any(|r| r.contains("access_denied")), "{reasons:?}");
    w.gw.shutdown().await;
}

/// The page states the browser flow saves, in order.
const SCREENSHOTS: [&str; 5] = [
    "oidc-1-step-up-page",
    "oidc-2-op-login",
    "oidc-3-op-consent",
    "oidc-4-refused",
    "oidc-5-upstream-answer",
];
