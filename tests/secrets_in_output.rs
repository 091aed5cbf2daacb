//! Secrets never leave through an output (issue 14): the session HMAC key,
//! the assertion and TLS private keys and a user's TOTP seed must not appear
//! in the logs (captured at trace level), in any response, in the audit
//! trail, or in what `check` and `explain` print, after a run that uses
//! each of them: a TOTP step-up with a wrong and a right code, a token
//! proof, and refusals.
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use stepup_kit::*;

const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [totp], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [token] }
    hold: { mode: challenge, timeout: 2m }
";

/// Everything the process logs, at every level of our own modules.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The spellings under which a secret could leak: as stored, and its raw
/// bytes in hex and both base64 alphabets.
fn spellings(name: &str, stored: &str, raw: &[u8]) -> Vec<(String, String)> {
    let mut out = vec![(name.to_owned(), stored.trim().to_owned())];
    if !raw.is_empty() {
        out.push((format!("{name} (hex)"), hex(raw)));
        out.push((format!("{name} (base64)"), STANDARD.encode(raw)));
        out.push((format!("{name} (base64url)"), URL_SAFE_NO_PAD.encode(raw)));
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A PEM private key leaks if any full line of its body does.
fn pem_lines(name: &str, pem: &str) -> Vec<(String, String)> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .map(|l| (format!("{name} (PEM line)"), l.to_owned()))
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "jsonl") {
            let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
            out.push((path.display().to_string(), text));
        }
    }
}

#[tokio::test]
async fn no_secret_appears_in_logs_responses_trail_or_cli_output() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_env_filter("stepgate=trace,info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .expect("this binary's only subscriber");

    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, ROUTES, "").await;
    let seed = enroll(&gw.dir, "alice");
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut keep = |what: &str, r: &RawResponse| {
        let mut text = format!("{}\n", r.status);
        for (k, v) in &r.headers {
            text.push_str(&format!("{k}: {v}\n"));
        }
        text.push_str(&String::from_utf8_lossy(&r.body));
        outputs.push((what.to_owned(), text));
    };

    // A TOTP hold: a wrong code, then the right one, which forwards.
    let cookie = "SESSIONID=secrets-1";
    let held = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            "/admin/users/carol/delete",
            &[("cookie", cookie), ("content-type", "application/json")],
            b"{}",
        ),
    )
    .await;
    assert_eq!(held.status, 401, "{}", body_text(&held));
    let hold = held.json()["hold_id"].as_str().expect("hold id").to_owned();
    keep("challenge", &held);
    let wrong = complete_totp(&gw, cookie, &hold, "alice", &wrong_code(&seed)).await;
    assert!(wrong.status >= 400, "a wrong code is refused: {}", body_text(&wrong));
    keep("wrong code", &wrong);
    fresh_step(5).await;
    let right = complete_totp(&gw, cookie, &hold, "alice", &pyotp_now(&seed)).await;
    assert_eq!(right.status, 200, "{}", body_text(&right));
    keep("right code", &right);
    assert_eq!(up.count("/admin/users/carol/delete"), 1, "the proof really ran");

    // A token proof on a hold, after a token for another audience.
    let cookie2 = "SESSIONID=secrets-2";
    let held = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            "/api/transfers",
            &[("cookie", cookie2), ("content-type", "application/json")],
            b"{\"amount\":1}",
        ),
    )
    .await;
    assert_eq!(held.status, 401, "{}", body_text(&held));
    keep("token challenge", &held);
    let ch = held.json();
    let token_hold = ch["hold_id"].as_str().expect("hold id").to_owned();
    let bad = gw.token(json!({"sid": ch["sid"], "txn": ch["txn"], "aud": "other"}));
    let r = complete(&gw, cookie2, &token_hold, json!({"method": "token", "token": bad})).await;
    assert!(r.status >= 400, "another audience is refused: {}", body_text(&r));
    keep("token refused", &r);
    let good = gw.token(json!({"sid": ch["sid"], "txn": ch["txn"]}));
    let r = complete(&gw, cookie2, &token_hold, json!({"method": "token", "token": good})).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    keep("token accepted", &r);
    assert_eq!(up.count("/api/transfers"), 1, "the good token was accepted");
    // Status, unknown holds and a malformed complete, which answer errors.
    keep(
        "status",
        &get(&gw, &format!("/.stepup/holds/{hold}"), &[("cookie", cookie)]).await,
    );
    keep(
        "unknown",
        &get(&gw, "/.stepup/holds/AAAAAAAAAAAAAAAAAAAAAA", &[("cookie", cookie)]).await,
    );
    keep(
        "malformed",
        &post_json(
            &gw,
            &format!("/.stepup/holds/{hold}/complete"),
            &[("cookie", cookie)],
            &json!({"method": 7}),
        )
        .await,
    );

    for args in [
        vec!["check"],
        vec!["explain", "POST", "https://gw.test/admin/users/carol/delete"],
    ] {
        let run = stepgate(&gw.dir, &args);
        outputs.push((args.join(" "), format!("{}{}", run.stdout, run.stderr)));
    }
    let before = outputs.len();
    files_under(&gw.dir, &mut outputs);
    assert!(outputs.len() > before, "the audit trail is among what is searched");
    let logs = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("stepgate"),
        "the capture sees the gateway's own log lines:\n{logs}"
    );
    outputs.push(("log".to_owned(), logs));

    // The secrets, read from the files the gateway itself used.
    let session_key_text = std::fs::read_to_string(gw.dir.join("state/session.key")).expect("session key file");
    let session_key = STANDARD.decode(session_key_text.trim()).expect("base64 key");
    let mut secrets = spellings("session key", &session_key_text, &session_key);
    let seed_bytes = data_encoding_base32(&seed);
    secrets.extend(spellings("TOTP seed", &seed, &seed_bytes));
    secrets.push(("TOTP seed (lower case)".into(), seed.to_ascii_lowercase()));
    let assertion_pem = std::fs::read_to_string(gw.dir.join("assertion.pem")).expect("assertion key");
    secrets.extend(pem_lines("assertion key", &assertion_pem));
    let secret = p256::SecretKey::from_sec1_pem(&assertion_pem)
        .or_else(|_| <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&assertion_pem))
        .expect("an ES256 key");
    secrets.extend(
        spellings("assertion scalar", "", &secret.to_bytes())
            .into_iter()
            .skip(1),
    );
    secrets.extend(pem_lines("TLS key", &gw.pki.key_pem));

    assert!(secrets.len() >= 10, "every secret has its spellings: {}", secrets.len());
    for (where_, text) in &outputs {
        for (name, value) in &secrets {
            assert!(
                value.len() >= 16 && !text.contains(value.as_str()),
                "the {name} appears in {where_}"
            );
        }
    }
}

/// RFC 4648 base32 without padding, as the enrollment prints the seed.
fn data_encoding_base32(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base32") as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
