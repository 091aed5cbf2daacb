//! The audit trail end to end: a hold's whole story in one hash chain,
//! verified by the real `stepgate audit verify`, and every kind of
//! tampering caught at its line.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn stepgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(args)
        .output()
        .expect("run stepgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("audit file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Runs one held request to release and returns (gateway, hold id, txn).
async fn lifecycle(up: &Upstream, extra: &str) -> (Gateway, String, String, String) {
    let gw = Gateway::start(up.addr, DEFAULT_ROUTES, extra).await;
    let cookie = ("cookie", "SESSIONID=audit-session");
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/admin/users/carol/delete", &[cookie], b"x=1"),
    )
    .await;
    assert_eq!(resp.status, 401);
    let ch = resp.json();
    let hold = ch["hold_id"].as_str().expect("hold").to_owned();
    let txn = ch["txn"].as_str().expect("txn").to_owned();
    // One wrong proof first, so the trail has a rejection too.
    let bad = serde_json::json!({"method": "token", "token": gw.token(serde_json::json!({"sid": ch["sid"], "txn": "wrong"}))});
    let path = format!("/.stepup/holds/{hold}/complete");
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", &path, &[cookie], bad.to_string().as_bytes()),
    )
    .await;
    assert_eq!(resp.status, 401);
    let token = gw.token(serde_json::json!({"sid": ch["sid"], "txn": txn}));
    let good = serde_json::json!({"method": "token", "token": token});
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", &path, &[cookie], good.to_string().as_bytes()),
    )
    .await;
    assert_eq!(resp.status, 200);
    (gw, hold, txn, token)
}

async fn settle(path: &Path, event: &str) {
    for _ in 0..200 {
        if std::fs::read_to_string(path).unwrap_or_default().contains(event) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{event} never reached {}", path.display());
}

#[tokio::test]
async fn a_hold_lifecycle_is_one_verifiable_chain() {
    let up = Upstream::start().await;
    let (gw, hold, txn, token) = lifecycle(&up, "audit: { checkpoint_every: 3 }").await;
    let file = gw.dir.join("state/audit.jsonl");
    settle(&file, "request.forwarded").await;
    let recs = lines(&file);
    let story: Vec<&str> = recs
        .iter()
        .filter(|r| r["hold"] == hold.as_str())
        .map(|r| r["event"].as_str().expect("event"))
        .collect();
    assert_eq!(
        story,
        [
            "hold.created",
            "proof.rejected",
            "proof.accepted",
            "hold.released",
            "request.forwarded"
        ]
    );
    for r in recs.iter().filter(|r| r["hold"] == hold.as_str()) {
        assert_eq!(r["txn"], txn.as_str(), "every record names the txn");
        for key in [
            "seq", "ts", "event", "hold", "route", "action", "sid", "sub", "txn", "reason", "prev",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }
    let released = recs.iter().find(|r| r["event"] == "hold.released").expect("released");
    let forwarded = recs
        .iter()
        .find(|r| r["event"] == "request.forwarded")
        .expect("forwarded");
    assert!(
        released["seq"].as_u64() < forwarded["seq"].as_u64(),
        "write-ahead: released before forwarded"
    );
    assert_eq!(released["jti"], forwarded["jti"]);
    assert_eq!(forwarded["status"], 200);
    let jti = released["jti"].as_str().expect("jti");
    let assertion = up.requests()[0].header("x-stepup-assertion").expect("assertion");
    assert_eq!(
        verify_assertion(&gw, &assertion)["jti"],
        jti,
        "the record names the forwarded assertion"
    );
    // No secrets: neither the raw session value nor the token appear.
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(!text.contains("audit-session"));
    assert!(!text.contains(&token), "the step-up token is a secret");
    let sig = token.rsplit('.').next().expect("signature");
    assert!(!text.contains(sig));
    assert!(
        recs.iter().any(|r| r["event"] == "checkpoint"),
        "checkpoint_every: 3 produced a checkpoint"
    );

    let cfg = gw.dir.join("routes.yaml");
    let (code, out, err) = stepgate(&[
        "audit",
        "verify",
        file.to_str().expect("path"),
        "--config",
        cfg.to_str().expect("p"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("signatures verified"), "{out}");
    let (code, out, err) = stepgate(&["audit", "show", "--hold", &hold, "--config", cfg.to_str().expect("p")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("hold.released") && out.contains("request.forwarded"),
        "{out}"
    );
}

fn tampered(dir: &Path, name: &str, f: impl FnOnce(&mut Vec<String>)) -> PathBuf {
    let src = dir.join("state/audit.jsonl");
    let mut ls: Vec<String> = std::fs::read_to_string(src)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect();
    f(&mut ls);
    let out = dir.join(name);
    std::fs::write(&out, ls.join("\n") + "\n").expect("write");
    out
}

fn verify_fails_at(file: &Path, jwks: Option<&Path>, line: usize) -> String {
    let mut args = vec!["audit".to_owned(), "verify".to_owned(), file.display().to_string()];
    if let Some(j) = jwks {
        args.push("--jwks".into());
        args.push(j.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = stepgate(&args);
    assert_eq!(code, 1, "tampering must be detected: {out}{err}");
    let expected = format!("{}:{line}:", file.display());
    assert!(err.starts_with(&expected), "expected {expected}, got {err}");
    err
}

#[tokio::test]
async fn tampering_is_detected_at_the_right_line() {
    let up = Upstream::start().await;
    let (gw, ..) = lifecycle(&up, "audit: { checkpoint_every: 4 }").await;
    settle(&gw.dir.join("state/audit.jsonl"), "request.forwarded").await;
    let n = lines(&gw.dir.join("state/audit.jsonl")).len();
    assert!(n >= 6, "{n} lines");

    let flipped = tampered(&gw.dir, "flip.jsonl", |ls| {
        ls[2] = ls[2].replacen("\"sub\":", "\"sUb\":", 1)
    });
    verify_fails_at(&flipped, None, 3);
    let deleted = tampered(&gw.dir, "delete.jsonl", |ls| {
        ls.remove(3);
    });
    verify_fails_at(&deleted, None, 4);
    let reordered = tampered(&gw.dir, "reorder.jsonl", |ls| ls.swap(1, 2));
    verify_fails_at(&reordered, None, 2);
    let src = std::fs::read(gw.dir.join("state/audit.jsonl")).expect("read");
    let truncated = gw.dir.join("truncated.jsonl");
    std::fs::write(&truncated, &src[..src.len() - 20]).expect("write");
    verify_fails_at(&truncated, None, n);
}

#[tokio::test]
async fn a_forged_checkpoint_is_rejected() {
    use sha2::{Digest, Sha256};
    let up = Upstream::start().await;
    let (gw, ..) = lifecycle(&up, "audit: { checkpoint_every: 4 }").await;
    settle(&gw.dir.join("state/audit.jsonl"), "request.forwarded").await;
    let jwks = gw.dir.join("jwks.json");
    std::fs::write(&jwks, gw.jwks().to_string()).expect("jwks");
    // Rewrite line 2 and re-link every later line, as an attacker without
    // the key would: the chain is consistent again, but the checkpoint's
    // signature still names the old chain head.
    let rewritten = tampered(&gw.dir, "rewritten.jsonl", |ls| {
        ls[1] = ls[1].replacen("\"sub\":", "\"sUb\":", 1);
        for i in 2..ls.len() {
            let prev: String = Sha256::digest(ls[i - 1].as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let mut v: serde_json::Value = serde_json::from_str(&ls[i]).expect("json");
            v["prev"] = prev.into();
            ls[i] = v.to_string();
        }
    });
    let cp = lines(&rewritten)
        .iter()
        .position(|r| r["event"] == "checkpoint")
        .expect("a checkpoint")
        + 1;
    let err = verify_fails_at(&rewritten, Some(&jwks), cp);
    assert!(err.contains("forged checkpoint"), "{err}");
    // The chain alone (no keys) cannot tell: that is what checkpoints are for.
    let (code, _, _) = stepgate(&["audit", "verify", rewritten.to_str().expect("p")]);
    assert_eq!(code, 0);
}

#[tokio::test]
async fn rotation_keeps_one_chain_across_files() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DEFAULT_ROUTES, "audit: { rotate: 4KiB, checkpoint_every: 5 }").await;
    for i in 0..30 {
        let resp = raw(
            gw.addr,
            &gw.pki,
            &request(
                "POST",
                &format!("/admin/users/u{i}/delete"),
                &[("cookie", "SESSIONID=rot")],
                b"",
            ),
        )
        .await;
        assert!(resp.status == 401 || resp.status == 429, "{}", resp.status);
    }
    let state = gw.dir.join("state");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&state)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit.") && n != "audit.jsonl")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "4KiB rotation produced rotated files");
    if state.join("audit.jsonl").exists() {
        files.push(state.join("audit.jsonl"));
    }
    let jwks = gw.dir.join("jwks.json");
    std::fs::write(&jwks, gw.jwks().to_string()).expect("jwks");
    let mut args = vec!["audit".to_owned(), "verify".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(["--jwks".to_owned(), jwks.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = stepgate(&args);
    assert_eq!(code, 0, "{out}{err}");
    // Dropping a middle file breaks the sequence.
    if files.len() >= 3 {
        let mut args = vec!["audit".to_owned(), "verify".to_owned(), files[0].display().to_string()];
        args.extend(files[2..].iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = stepgate(&args);
        assert_eq!(code, 1);
        assert!(err.contains("sequence break"), "{err}");
    }
}

#[tokio::test]
async fn an_unwritable_trail_fails_sensitive_routes_closed() {
    let up = Upstream::start().await;
    // /dev/full accepts the open and fails every write with ENOSPC.
    let gw = Gateway::start(up.addr, DEFAULT_ROUTES, "audit: { path: /dev/full }").await;
    let cookie = ("cookie", "SESSIONID=s");
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/admin/users/bob/delete", &[cookie], b""),
    )
    .await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.error_code(), "audit_unavailable");
    // An up-front token would release at once: it must not be forwarded either.
    let probe = raw(gw.addr, &gw.pki, &request("GET", "/public", &[], b"")).await;
    assert_eq!(probe.status, 200, "pass-through keeps working");
    let resp = raw(gw.addr, &gw.pki, &request("GET", "/reports/export", &[cookie], b"")).await;
    assert_eq!(resp.status, 503, "shadow routes audit too");
    assert!(up
        .requests()
        .iter()
        .all(|r| !r.target.starts_with("/admin") && !r.target.starts_with("/reports")));
    assert_eq!(up.count("/public"), 1);
}
