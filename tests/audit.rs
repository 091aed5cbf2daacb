//! The audit trail end to end: a hold's whole story in one hash chain,
//! verified by the real `stepgate audit verify`, and every kind of
//! tampering caught at its line.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

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
    // /dev/full accepts the open and fails every write with ENOSPC. It is
    // reached through a link in a directory of the test's own, so what is
    // kept beside the trail (the single-use journal) is written there and
    // never into /dev, whoever runs the test.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("full-trail-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let trail = dir.join("trail.jsonl");
    std::os::unix::fs::symlink("/dev/full", &trail).expect("link to /dev/full");
    let extra = format!("audit: {{ path: '{}' }}", trail.display());
    let gw = Gateway::start(up.addr, DEFAULT_ROUTES, &extra).await;
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

// ------------------------------------------------------------ cut trails
//
// An attacker with write access to the trail but without the assertion key
// deletes lines and re-links `prev` (and renumbers `seq`): the chain is
// consistent again. What he cannot forge is a checkpoint signature.

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Drops the lines `drop` says to, then renumbers `seq` from 1 and re-links
/// every `prev` from the genesis hash: what a careful forger writes.
fn relinked(lines: &[String], drop: impl Fn(&serde_json::Value) -> bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lines {
        let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
        if drop(&v) {
            continue;
        }
        v["seq"] = (out.len() as u64 + 1).into();
        v["prev"] = match out.last() {
            Some(p) => sha256_hex(p).into(),
            None => stepgate::audit::GENESIS.into(),
        };
        out.push(v.to_string());
    }
    out
}

fn write_lines(path: &Path, lines: &[String]) -> PathBuf {
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
    path.to_owned()
}

fn verify_with(file: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["audit", "verify", file.to_str().expect("path")];
    args.extend_from_slice(extra);
    stepgate(&args)
}

/// A trail written by the real writer: `holds` holds of four records each,
/// the third of them a break-glass release, with a checkpoint every 4.
async fn written_trail(dir: &Path, holds: usize) -> (PathBuf, PathBuf) {
    use stepgate::assertion::{generate_signing_key, load_signing_key_pem, AssertionSigner};
    use stepgate::audit::{Audit, AuditConfig, Event, Record};
    std::fs::create_dir_all(dir).expect("dir");
    let (_, pem) = generate_signing_key();
    let signer = AssertionSigner::new(
        load_signing_key_pem(&pem).expect("key"),
        vec![],
        "stepgate".into(),
        "legacy".into(),
        std::time::Duration::from_secs(60),
    )
    .expect("signer");
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, signer.jwks().to_string()).expect("jwks");
    let path = dir.join("audit.jsonl");
    let audit = Audit::open(
        AuditConfig {
            path: path.clone(),
            rotate_bytes: 1 << 30,
            checkpoint_every: 4,
        },
        std::sync::Arc::new(signer),
    )
    .expect("audit");
    for h in 0..holds {
        let hold = format!("hold-{h}");
        let glass = h == 2;
        let events: [&'static str; 4] = if glass {
            ["hold.created", "break_glass.used", "hold.released", "request.forwarded"]
        } else {
            ["hold.created", "proof.accepted", "hold.released", "request.forwarded"]
        };
        for e in events {
            let mut r = Record::new(Event::parse(e).expect("an event the gateway writes"));
            r.hold = Some(hold.clone());
            r.route = Some("agent-transfer".into());
            if glass && e == "break_glass.used" {
                r.reason = Some("INC-1: approvers unreachable".into());
            }
            audit.record(r).await.expect("written");
        }
    }
    drop(audit);
    sealed_on_drop(&path);
    (path, jwks)
}

/// Dropping the last handle returns only once the writer has sealed the
/// tail: a process that exits right after must not race the final
/// checkpoint (signing it during process teardown aborted the process).
fn sealed_on_drop(path: &Path) {
    let text = std::fs::read_to_string(path).expect("read");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.contains("\"event\":\"checkpoint\""),
        "the tail was not sealed when the last handle went: {last}"
    );
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_erased_break_glass_hold_with_its_checkpoints_removed_fails_verification() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-cut-{}", stepgate::ids::random_token()));
    let (path, jwks) = written_trail(&dir, 5).await;
    let jwks_arg = jwks.to_str().expect("p");
    let (code, out, err) = verify_with(&path, &["--jwks", jwks_arg]);
    assert_eq!(code, 0, "the honest trail verifies: {out}{err}");
    assert!(out.contains("records after the last checkpoint"), "{out}");

    let lines = read_lines(&path);
    assert!(lines.iter().any(|l| l.contains("break_glass.used")));
    // Erase the break-glass hold. Its checkpoints now sign another chain,
    // so the forger deletes every checkpoint too and re-links the rest.
    let erased = relinked(&lines, |v| v["hold"] == "hold-2" || v["event"] == "checkpoint");
    assert!(erased.iter().all(|l| !l.contains("hold-2")));
    let erased = write_lines(&dir.join("erased.jsonl"), &erased);
    let (code, out, _) = verify_with(&erased, &[]);
    assert_eq!(code, 0, "the chain alone cannot tell: {out}");
    let (code, out, err) = verify_with(&erased, &["--jwks", jwks_arg, "--checkpoint-every", "4"]);
    assert_eq!(code, 1, "erasing a hold must not verify: {out}{err}");
    assert!(err.contains("without a signed checkpoint"), "{err}");

    // Deleting only the checkpoints (nothing else) is caught the same way.
    let stripped = relinked(&lines, |v| v["event"] == "checkpoint");
    let stripped = write_lines(&dir.join("stripped.jsonl"), &stripped);
    let (code, out, err) = verify_with(&stripped, &["--jwks", jwks_arg, "--checkpoint-every", "4"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("without a signed checkpoint"), "{err}");

    // Erasing the hold but keeping the checkpoints: they sign the old chain.
    let kept = relinked(&lines, |v| v["hold"] == "hold-2");
    let kept = write_lines(&dir.join("kept.jsonl"), &kept);
    let (code, _, err) = verify_with(&kept, &["--jwks", jwks_arg]);
    assert_eq!(code, 1);
    assert!(err.contains("forged checkpoint"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_trail_whose_first_records_were_deleted_fails_verification() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-head-{}", stepgate::ids::random_token()));
    let (path, jwks) = written_trail(&dir, 4).await;
    let lines = read_lines(&path);
    // Cut the first hold away, keeping every later line byte for byte: the
    // chain from there on is intact, and so are the later checkpoints.
    let cut = write_lines(&dir.join("cut.jsonl"), &lines[4..]);
    for extra in [vec![], vec!["--jwks", jwks.to_str().expect("p")]] {
        let (code, out, err) = verify_with(&cut, &extra);
        assert_eq!(code, 1, "{extra:?}: {out}{err}");
        assert!(err.starts_with(&format!("{}:1:", cut.display())), "{err}");
        assert!(err.contains("genesis"), "{err}");
    }
    // Renumbered and re-linked from the genesis hash, the chain is whole,
    // but the first checkpoint signs another chain.
    let renumbered = write_lines(&dir.join("renumbered.jsonl"), &relinked(&lines[4..], |_| false));
    let (code, _, err) = verify_with(&renumbered, &["--jwks", jwks.to_str().expect("p")]);
    assert_eq!(code, 1);
    assert!(err.contains("forged checkpoint"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_admin_listener_serves_a_signed_head_that_catches_a_cut_tail() {
    let up = Upstream::start().await;
    let (gw, ..) = lifecycle(&up, "audit: { checkpoint_every: 3 }").await;
    let file = gw.dir.join("state/audit.jsonl");
    settle(&file, "request.forwarded").await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    tokio::spawn(stepgate::proxy::admin::run(
        gw.gw.clone(),
        admin,
        std::future::pending(),
    ));
    let (status, body) = admin_get(admin_addr, "/audit/head").await;
    assert_eq!(status, 200, "{body}");
    let head: serde_json::Value = serde_json::from_str(&body).expect("head is JSON");
    assert_eq!(head["event"], "checkpoint");
    let jwks = stepgate::jose::Jwks::parse(&gw.jwks().to_string()).expect("jwks");
    let verified = stepgate::audit::verify::check_head(head["jws"].as_str().expect("jws"), &jwks)
        .expect("the head verifies with the JWKS");
    assert_eq!(Some(verified.seq), head["seq"].as_u64());
    // It is the newest checkpoint of the trail.
    let lines = read_lines(&file);
    let newest = lines
        .iter()
        .rev()
        .find(|l| l.contains("\"checkpoint\""))
        .expect("a checkpoint");
    assert_eq!(body.trim(), newest.as_str());

    let jwks_file = gw.dir.join("jwks.json");
    std::fs::write(&jwks_file, gw.jwks().to_string()).expect("jwks");
    let head_file = gw.dir.join("head.json");
    std::fs::write(&head_file, &body).expect("head");
    let (j, h) = (jwks_file.to_str().expect("p"), head_file.to_str().expect("p"));
    let (code, out, err) = verify_with(&file, &["--jwks", j, "--head", h]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("agrees with the collected head"), "{out}");

    // Cut the end back to just before that checkpoint: few enough records
    // follow the previous checkpoint that the trail alone looks fine ...
    let at = lines.iter().position(|l| l == newest).expect("pos");
    let cut = write_lines(&gw.dir.join("cut.jsonl"), &lines[..at]);
    let (code, out, err) = verify_with(&cut, &["--jwks", j]);
    assert_eq!(code, 0, "without a kept head a cut tail is invisible: {out}{err}");
    // ... but not next to the head the collector kept.
    let (code, out, err) = verify_with(&cut, &["--jwks", j, "--head", h]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cut from the end"), "{err}");
}

#[tokio::test]
async fn a_restart_after_a_crash_and_a_new_spacing_still_verifies() {
    use stepgate::assertion::{generate_signing_key, load_signing_key_pem, AssertionSigner};
    use stepgate::audit::{Audit, AuditConfig, Event, Record};
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-restart-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (_, pem) = generate_signing_key();
    let signer = std::sync::Arc::new(
        AssertionSigner::new(
            load_signing_key_pem(&pem).expect("key"),
            vec![],
            "stepgate".into(),
            "legacy".into(),
            std::time::Duration::from_secs(60),
        )
        .expect("signer"),
    );
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, signer.jwks().to_string()).expect("jwks");
    let path = dir.join("audit.jsonl");
    let open = |every| {
        Audit::open(
            AuditConfig {
                path: path.clone(),
                rotate_bytes: 1 << 30,
                checkpoint_every: every,
            },
            signer.clone(),
        )
        .expect("audit")
    };
    let audit = open(1000);
    for _ in 0..3 {
        audit.record(Record::new(Event::HoldCreated)).await.expect("written");
    }
    audit.seal(Record::new(Event::GatewayShutdown)).await.expect("sealed");
    for _ in 0..3 {
        audit.record(Record::new(Event::HoldCreated)).await.expect("written");
    }
    drop(audit);
    sealed_on_drop(&path);
    // A crash leaves the tail unsealed: take the closing checkpoint away.
    let mut lines = read_lines(&path);
    lines.pop();
    write_lines(&path, &lines);
    // The restart runs with a tighter spacing.
    let audit = open(2);
    for _ in 0..3 {
        audit.record(Record::new(Event::HoldCreated)).await.expect("written");
    }
    drop(audit);
    sealed_on_drop(&path);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("\"start\""), "the restart sealed what it found: {text}");
    let (code, out, err) = verify_with(&path, &["--jwks", jwks.to_str().expect("p"), "--checkpoint-every", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    let _ = std::fs::remove_dir_all(dir);
}

// ------------------------------------------------------- a failed write
//
// A real fault, unprivileged: the served binary runs under RLIMIT_FSIZE
// (SIGXFSZ ignored), set just above the trail's size. The next append
// writes part of its line, then fails with EFBIG, as a full disk would.

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_failed_write_leaves_no_partial_line_and_the_trail_verifies_after() {
    let up = Upstream::start().await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-fsize-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pki = serve_files(&dir);
    let port = free_port();
    let config = dir.join("routes.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}
tls: {{ cert: cert.pem, key: key.pem }}
upstream: http://{}
session: {{ cookie: SESSIONID }}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: legacy }}
audit: {{ checkpoint_every: 1000 }}
routes:
  - name: delete-user
    match: {{ methods: [POST], path: '/admin/users/([^/]+)/delete' }}
    hold: {{ mode: challenge }}
",
            up.addr
        ),
    )
    .expect("config");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let child = serve_fault_ready(&config, addr).await;
    let sensitive = || request("POST", "/admin/users/carol/delete", &[("cookie", "SESSIONID=s")], b"");
    assert_eq!(raw(addr, &pki, &sensitive()).await.status, 401);
    let trail = dir.join("state/audit.jsonl");
    let size = std::fs::metadata(&trail).expect("trail").len();

    set_fsize(child.0.id(), Some(size + 40));
    let resp = raw(addr, &pki, &sensitive()).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.error_code(), "audit_unavailable");
    let during = std::fs::read(&trail).expect("read");
    assert!(
        during.len() as u64 > size && !during.ends_with(b"\n"),
        "the fault was real: part of a line was written"
    );

    set_fsize(child.0.id(), None);
    assert_eq!(
        raw(addr, &pki, &sensitive()).await.status,
        401,
        "works again after the fault"
    );
    let (code, out, err) = stepgate(&[
        "audit",
        "verify",
        trail.to_str().expect("p"),
        "--config",
        config.to_str().expect("p"),
    ]);
    assert_eq!(code, 0, "the honest trail verifies after the disk recovers: {out}{err}");
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn audit_show_prints_client_text_with_its_escapes_visible() {
    use stepgate::assertion::{generate_signing_key, load_signing_key_pem, AssertionSigner};
    use stepgate::audit::{Audit, AuditConfig, Event, Record};
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-esc-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (_, pem) = generate_signing_key();
    let signer = AssertionSigner::new(
        load_signing_key_pem(&pem).expect("key"),
        vec![],
        "stepgate".into(),
        "legacy".into(),
        std::time::Duration::from_secs(60),
    )
    .expect("signer");
    let path = dir.join("audit.jsonl");
    let audit = Audit::open(
        AuditConfig {
            path: path.clone(),
            rotate_bytes: 1 << 30,
            checkpoint_every: 100,
        },
        std::sync::Arc::new(signer),
    )
    .expect("audit");
    // What a requester can put in `user` (and a reason): a window title, a
    // screen clear, and a line that pretends the trail verified.
    let evil = "mallory\x1b]0;title\x07\x1b[2J\nok: all records verified\u{202e}\x1b[32m";
    let mut r = Record::new(Event::HoldCreated).actor(evil);
    r.hold = Some("h-esc".into());
    audit.record(r).await.expect("written");
    drop(audit);
    let (code, out, err) = stepgate(&["audit", "show", "--hold", "h-esc", path.to_str().expect("p")]);
    assert_eq!(code, 0, "{out}{err}");
    for bad in ['\x1b', '\x07', '\u{202e}'] {
        assert!(!out.contains(bad), "a raw {bad:?} reached the terminal: {out:?}");
    }
    assert_eq!(out.lines().count(), 1, "no forged line: {out:?}");
    assert!(!out.lines().any(|l| l.starts_with("ok:")), "{out:?}");
    assert!(
        out.contains("mallory\\u{1b}]0;title\\u{7}\\u{1b}[2J\\nok: all records verified\\u{202e}"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ------------------------------------------------------- write-ahead order

/// An upstream that, the moment a forwarded request arrives, reads the
/// trail and notes whether that request's `token.accepted` record (found
/// by its txn) is already in the file.
type Arrivals = Arc<Mutex<Vec<(String, bool)>>>;

async fn trail_checking_upstream(trail: Arc<std::sync::OnceLock<PathBuf>>) -> (std::net::SocketAddr, Arrivals) {
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arrivals = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (trail, log) = (trail.clone(), log.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (trail, log) = (trail.clone(), log.clone());
                    async move {
                        // Read before the body is: the forward has begun.
                        let text = trail
                            .get()
                            .and_then(|p| std::fs::read_to_string(p).ok())
                            .unwrap_or_default();
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let recorded = Recorded {
                            method: parts.method.to_string(),
                            target: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        };
                        let txn = txn_of(&recorded, "localhost");
                        let on_file = text.lines().any(|l| {
                            serde_json::from_str::<serde_json::Value>(l)
                                .is_ok_and(|v| v["event"] == "token.accepted" && v["txn"] == txn.as_str())
                        });
                        log.lock().expect("lock").push((recorded.target, on_file));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(bytes::Bytes::from_static(
                            b"ok",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Group commit keeps the write-ahead promise: many up-front tokens at
/// once share fsyncs, yet no request reaches the upstream before its own
/// `token.accepted` record is in the trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_token_forwards_each_follow_their_own_durable_record() {
    // The gateway's directory is only known once it starts; the upstream
    // learns the trail's path before any request is sent.
    let slot: Arc<std::sync::OnceLock<PathBuf>> = Arc::default();
    let (addr, seen) = trail_checking_upstream(slot.clone()).await;
    let gw = Gateway::start(addr, DEFAULT_ROUTES, "").await;
    let trail = gw.dir.join("state/audit.jsonl");
    slot.set(trail.clone()).expect("set once");

    let session = "sess-group-commit";
    let cookie = format!("SESSIONID={session}");
    let n = 24;
    let mut tasks = Vec::new();
    for i in 0..n {
        let target = format!("/admin/users/u{i}/delete");
        let body = format!("{{\"n\":{i}}}").into_bytes();
        let txn = txn_of(
            &Recorded {
                method: "POST".into(),
                target: target.clone(),
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::from(body.clone()),
            },
            "localhost",
        );
        let token = gw.token(serde_json::json!({"sid": gw.sid(session), "txn": txn}));
        let req = request(
            "POST",
            &target,
            &[("cookie", cookie.as_str()), ("x-stepup-token", token.as_str())],
            &body,
        );
        let (gaddr, pki) = (gw.addr, gw.pki.client_config(&[b"http/1.1"]));
        tasks.push(tokio::spawn(async move { raw_with(gaddr, pki, &req).await }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), n, "every request forwarded once");
    let early: Vec<_> = seen.iter().filter(|(_, on_file)| !on_file).collect();
    assert!(early.is_empty(), "forwarded before their record was written: {early:?}");
    let accepted: std::collections::BTreeSet<u64> = lines(&trail)
        .iter()
        .filter(|v| v["event"] == "token.accepted")
        .map(|v| v["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(accepted.len(), n, "one record per request, each with its own seq");
}

/// `raw` for a spawned task, which cannot borrow the gateway's PKI.
async fn raw_with(addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>, request: &[u8]) -> u16 {
    use tokio::io::AsyncWriteExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.write_all(request).await.expect("write");
    read_response(&mut tls).await.status
}
