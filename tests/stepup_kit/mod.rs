//! Helpers for the TOTP, approval and webhook end-to-end tests: enrollment
//! through the real `stepgate` binary, TOTP codes from Python `pyotp` (an
//! implementation independent of the gateway's), approver keys, gateway
//! endpoint calls, and a webhook receiver that records what it is sent.
#![allow(dead_code)]

use crate::common::{raw, request, Gateway, RawResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

pub use crate::common::now_secs;

// -------------------------------------------------------------------- TOTP

/// The code pyotp computes for `secret` at Unix time `t`.
pub fn pyotp_at(secret: &str, t: u64) -> String {
    // scripts/test-env installs pyotp into the checkout's .venv.
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let python = if venv.exists() { venv } else { "python3".into() };
    let out = Command::new(python)
        .args([
            "-c",
            "import pyotp,sys;print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))",
            secret,
            &t.to_string(),
        ])
        .output()
        .expect("python runs (pyotp: run scripts/test-env)");
    assert!(
        out.status.success(),
        "pyotp failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8(out.stdout).expect("utf-8").trim().to_owned();
    assert_eq!(code.len(), 6, "pyotp printed {code:?}");
    code
}

/// The current code, as an authenticator app would show it.
pub fn pyotp_now(secret: &str) -> String {
    pyotp_at(secret, now_secs())
}

/// A six-digit code that matches none of the steps the gateway could
/// accept around now (±1 step, plus one more in case the step rolls over
/// while the request is in flight).
pub fn wrong_code(secret: &str) -> String {
    let t = now_secs();
    let valid: Vec<String> = [t - 30, t, t + 30, t + 60]
        .iter()
        .map(|&t| pyotp_at(secret, t))
        .collect();
    (0..10u32)
        .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
        .find(|c| !valid.contains(c))
        .expect("ten distinct codes cannot all be valid")
}

/// Waits (if needed) until the current 30 s step has at least `left`
/// seconds to run, so a test that depends on which step "now" is cannot be
/// torn by a step boundary between computing a code and presenting it.
pub async fn fresh_step(left: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let into = now.as_secs() % 30;
    if 30 - into < left {
        let until_next = Duration::from_secs(30 - into) - Duration::from_nanos(u64::from(now.subsec_nanos()));
        tokio::time::sleep(until_next + Duration::from_millis(200)).await;
    }
}

// -------------------------------------------------------------- enrollment

pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real binary against the gateway's own config file.
pub fn stepgate(dir: &Path, args: &[&str]) -> CliRun {
    let config = dir.join("routes.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run stepgate");
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What an `otpauth://totp/ISSUER:USER?secret=..&issuer=..` URI says.
#[derive(Debug)]
pub struct OtpAuth {
    pub label: String,
    pub secret: String,
    pub issuer: Option<String>,
    pub params: Vec<(String, String)>,
}

pub fn parse_otpauth(uri: &str) -> OtpAuth {
    let rest = uri
        .strip_prefix("otpauth://totp/")
        .unwrap_or_else(|| panic!("not an otpauth TOTP URI: {uri}"));
    let (label, query) = rest.split_once('?').unwrap_or_else(|| panic!("no parameters: {uri}"));
    let label = percent_decode(label);
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    OtpAuth {
        label,
        secret: get("secret").unwrap_or_else(|| panic!("no secret in {uri}")),
        issuer: get("issuer"),
        params,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 label")
}

/// `stepgate enroll totp USER`: the pending secret from the printed URI.
pub fn enroll_pending(dir: &Path, user: &str) -> OtpAuth {
    let run = stepgate(dir, &["enroll", "totp", user]);
    assert_eq!(run.code, 0, "enroll failed: {}", run.stderr);
    let uri = run
        .stdout
        .lines()
        .find(|l| l.starts_with("otpauth://"))
        .unwrap_or_else(|| panic!("no otpauth URI printed: {}", run.stdout));
    parse_otpauth(uri)
}

/// Enrolls `user` through the CLI and activates the credential the way an
/// administrator provisioning users would, by editing the store. (Confirming
/// with `--confirm` spends a code: that code, and any older one, can no
/// longer step up, which would make the tests wait for the next time step.
/// The confirm path itself is tested in totp.rs.)
pub fn enroll(dir: &Path, user: &str) -> String {
    let otp = enroll_pending(dir, user);
    let path = users_file(dir);
    let text = std::fs::read_to_string(&path).expect("users file");
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("users yaml");
    doc["users"][user]["totp"]["confirmed"] = serde_yaml::Value::Bool(true);
    std::fs::write(&path, serde_yaml::to_string(&doc).expect("yaml")).expect("write users");
    otp.secret
}

pub fn users_file(dir: &Path) -> PathBuf {
    dir.join("state/users.yaml")
}

/// Puts `user` into `groups` by editing the user store the way an
/// administrator would (the gateway picks the change up on its own).
pub fn set_groups(dir: &Path, user: &str, groups: &[&str]) {
    let path = users_file(dir);
    let text = std::fs::read_to_string(&path).expect("users file");
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("users yaml");
    let record = doc["users"]
        .as_mapping_mut()
        .expect("users mapping")
        .entry(serde_yaml::Value::from(user))
        .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    record.as_mapping_mut().expect("user mapping").insert(
        "groups".into(),
        groups.iter().map(|g| serde_yaml::Value::from(*g)).collect(),
    );
    let tmp = path.with_extension("edit");
    std::fs::write(&tmp, serde_yaml::to_string(&doc).expect("yaml")).expect("write users");
    std::fs::rename(&tmp, &path).expect("replace users");
}

// --------------------------------------------------------------- approvers

/// An approver's API key and the `key_sha256` the config holds for it.
pub struct ApproverKey {
    pub name: String,
    pub key: String,
    pub sha256: String,
}

impl ApproverKey {
    pub fn new(name: &str) -> ApproverKey {
        let key = format!("ak-{name}-{}", stepgate::ids::random_token());
        let sha256 = Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ApproverKey {
            name: name.to_owned(),
            key,
            sha256,
        }
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.key)
    }

    /// One `stepup.approvers` entry.
    pub fn yaml(&self, groups: &[&str], totp: bool) -> String {
        format!(
            "{{ name: {}, groups: [{}], key_sha256: \"{}\", totp: {totp} }}",
            self.name,
            groups.join(", "),
            self.sha256
        )
    }
}

/// The `extra` YAML for `Gateway::start`. The harness writes the `stepup:`
/// mapping itself and inserts `extra` right after its last entry, so lines
/// indented by two spaces continue `stepup:`; the rest are top-level keys.
/// (If the harness layout changes, the config fails to load, loudly.)
pub fn extra(stepup: &[String], top: &str) -> String {
    let mut out = String::new();
    for line in stepup {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(top);
    out
}

pub fn approvers_line(entries: &[String]) -> String {
    format!("approvers: [ {} ]", entries.join(", "))
}

// ----------------------------------------------------------------- calls

pub async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    raw(gw.addr, &gw.pki, &request("GET", path, headers, b"")).await
}

pub async fn post_json(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> RawResponse {
    let mut h = headers.to_vec();
    h.push(("content-type", "application/json"));
    raw(
        gw.addr,
        &gw.pki,
        &request("POST", path, &h, body.to_string().as_bytes()),
    )
    .await
}

pub async fn approve(gw: &Gateway, who: &ApproverKey, hold: &str, txn: &str) -> RawResponse {
    decide(
        gw,
        who,
        hold,
        "approve",
        serde_json::json!({"txn": txn, "comment": "looks right"}),
    )
    .await
}

pub async fn decide(gw: &Gateway, who: &ApproverKey, hold: &str, verb: &str, body: serde_json::Value) -> RawResponse {
    let auth = who.bearer();
    post_json(
        gw,
        &format!("/.stepup/holds/{hold}/{verb}"),
        &[("authorization", auth.as_str())],
        &body,
    )
    .await
}

pub async fn complete(gw: &Gateway, cookie: &str, hold: &str, body: serde_json::Value) -> RawResponse {
    post_json(
        gw,
        &format!("/.stepup/holds/{hold}/complete"),
        &[("cookie", cookie)],
        &body,
    )
    .await
}

/// Completes `hold` with a TOTP proof: `user`'s `code`.
pub async fn complete_totp(gw: &Gateway, cookie: &str, hold: &str, user: &str, code: &str) -> RawResponse {
    complete(
        gw,
        cookie,
        hold,
        serde_json::json!({"method": "totp", "user": user, "code": code}),
    )
    .await
}

pub async fn queue(gw: &Gateway, who: &ApproverKey) -> RawResponse {
    let auth = who.bearer();
    get(gw, "/.stepup/holds", &[("authorization", auth.as_str())]).await
}

/// Polls the approver queue until a hold shows up (a `hold`-mode client
/// is still waiting on its own connection meanwhile).
pub async fn first_queued(gw: &Gateway, who: &ApproverKey) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let q = queue(gw, who).await;
        assert_eq!(q.status, 200, "{}", String::from_utf8_lossy(&q.body));
        if let Some(h) = q.json()["holds"].as_array().and_then(|a| a.first()).cloned() {
            return h;
        }
        assert!(Instant::now() < deadline, "no hold reached the approver queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn body_text(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

// ----------------------------------------------------------------- webhook

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookMode {
    Ok,
    Fail500,
    /// Accepts the connection and never answers.
    Hang,
}

/// A webhook receiver on 127.0.0.1:0 that records every POSTed body.
pub struct Hook {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<serde_json::Value>>>,
    pub raw: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hook {
    pub async fn start(mode: HookMode) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind hook");
        let addr = listener.local_addr().expect("addr");
        let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let raw: Arc<Mutex<Vec<String>>> = Arc::default();
        let (rec, rawrec) = (received.clone(), raw.clone());
        let task = tokio::spawn(async move {
            let mut parked = Vec::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                if mode == HookMode::Hang {
                    parked.push(tcp);
                    continue;
                }
                let (rec, rawrec) = (rec.clone(), rawrec.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (rec, rawrec) = (rec.clone(), rawrec.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let text = String::from_utf8_lossy(&body).into_owned();
                            rawrec.lock().expect("lock").push(format!("{path} {text}"));
                            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                                rec.lock().expect("lock").push(v);
                            }
                            let status = if mode == HookMode::Fail500 { 500 } else { 200 };
                            let resp = Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .expect("response");
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Hook {
            addr,
            received,
            raw,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        self.received.lock().expect("lock").clone()
    }

    pub fn raw_bodies(&self) -> Vec<String> {
        self.raw.lock().expect("lock").clone()
    }

    /// Waits until an event named `event` for `hold` has arrived.
    pub async fn wait_for(&self, event: &str, hold: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| e["event"] == event && e["hold_id"] == hold)
            {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} for {hold}; got {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The top-level `notify:` line for a receiver URL.
pub fn notify_yaml(url: &str) -> String {
    format!("notify: {{ webhook: '{url}' }}\n")
}

/// Registers `key` for `user` through the link `stepgate enroll webauthn`
/// prints, as a person following it in a browser would.
pub async fn enroll_passkey(gw: &Gateway, user: &str, key: &crate::common::authenticator::SoftKey) {
    let run = stepgate(&gw.dir, &["enroll", "webauthn", user]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let token = run
        .stdout
        .split("token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no enrollment link in {:?}", run.stdout))
        .to_owned();
    let opts = post_json(
        gw,
        "/.stepup/enroll/options",
        &[],
        &serde_json::json!({ "token": token }),
    )
    .await;
    assert_eq!(opts.status, 200, "{}", body_text(&opts));
    let done = post_json(
        gw,
        "/.stepup/enroll/finish",
        &[],
        &serde_json::json!({"token": token, "credential": key.register(&opts.json())}),
    )
    .await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
}
