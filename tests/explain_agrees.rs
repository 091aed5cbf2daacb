//! `stepgate explain` and the gateway make one decision (SPEC §8): every
//! request of the path-confusion corpus, as the same bytes, goes to a real
//! gateway over TLS and to `stepgate explain --raw`, on the config that
//! gateway runs. Each pair must land in the same outcome: forwarded, held
//! (on the same action), denied, refused (with the same status), left to
//! the HTTP/1.1 parser, or answered by the gateway's own endpoints. Run on
//! the test routes the corpus was written for and on the shipped
//! routes.yaml.

mod common;
mod confusion;

use common::*;
use confusion::{benign, bytes_of, table, Case, EXTRA_ROUTES};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use stepgate::clock::ManualClock;

/// Tuesday 2026-11-24 11:00 in Berlin, for both sides: the shipped
/// config's working-hours condition reads the clock.
const AT: u64 = 1_795_514_400;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Reached the upstream (a shadow route's too).
    Forwarded,
    /// A step-up challenge for this action.
    Held(String),
    NoSession,
    Denied,
    /// The gateway's own error answer, with this status.
    Refused(u16),
    /// Refused by the HTTP/1.1 parser with a bare status, before the
    /// gateway saw it.
    Unparsed(u16),
    /// Under the gateway's prefix: answered by its own endpoints.
    Own,
}

/// What the gateway did, from its answer and what the upstream saw.
fn gateway_outcome(resp: &RawResponse, forwarded: bool) -> Outcome {
    if forwarded {
        return Outcome::Forwarded;
    }
    let json = resp.header("content-type").is_some_and(|t| t.contains("json"));
    let challenge = resp.header("www-authenticate").filter(|w| w.starts_with("StepUp "));
    match (resp.status, challenge) {
        (401, Some(www)) => Outcome::Held(quoted(www, "action=").unwrap_or_default()),
        (401, None) => Outcome::NoSession,
        (403, _) => Outcome::Denied,
        (status, _) if !json => Outcome::Unparsed(status),
        (status, _) => Outcome::Refused(status),
    }
}

/// The value of `key"…"` in a challenge header.
fn quoted(text: &str, key: &str) -> Option<String> {
    let rest = &text[text.find(key)? + key.len()..];
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// What `explain` said, from its printed plan.
fn explain_outcome(stdout: &str) -> Result<Outcome, String> {
    let field = |label: &str| stdout.lines().find_map(|l| l.strip_prefix(label)).map(str::trim);
    let status = |line: &str| line.split_whitespace().next().and_then(|s| s.parse::<u16>().ok());
    let first = stdout.lines().next().unwrap_or("");
    if first.contains("the HTTP/1.1 parser refuses it") {
        return status(first).map(Outcome::Unparsed).ok_or_else(|| first.to_owned());
    }
    if first.contains("(refused before matching)") {
        return status(first).map(Outcome::Refused).ok_or_else(|| first.to_owned());
    }
    let route = field("route:").unwrap_or("");
    if route.starts_with("the gateway's own endpoint") {
        return Ok(Outcome::Own);
    }
    if route.starts_with("none:") {
        return Ok(Outcome::Forwarded);
    }
    if field("session:").is_some() {
        return Ok(Outcome::NoSession);
    }
    if let Some(hold) = field("hold:") {
        if hold.starts_with("mode shadow") {
            return Ok(Outcome::Forwarded);
        }
        let action = route
            .split_once("(action ")
            .and_then(|(_, a)| a.split(')').next())
            .ok_or_else(|| format!("no action in the route line: {stdout}"))?;
        return Ok(Outcome::Held(action.to_owned()));
    }
    match field("decision:") {
        Some(d) if d.contains("forwarded unheld") => Ok(Outcome::Forwarded),
        Some(d) if d.starts_with("403") => Ok(Outcome::Denied),
        Some(d) if d.starts_with("401 no_session") => Ok(Outcome::NoSession),
        Some(d) => status(d).map(Outcome::Refused).ok_or_else(|| d.to_owned()),
        None => Err(format!("no decision in: {stdout}")),
    }
}

/// The gateway's own endpoints answer many ways (a key set, 404, 400 for a
/// malformed hold id); what explain promises is that none of it is the
/// upstream's, a step-up or a route's refusal.
fn agree(explained: &Outcome, gateway: &Outcome) -> bool {
    match explained {
        Outcome::Own => !matches!(
            gateway,
            Outcome::Forwarded | Outcome::Held(_) | Outcome::Denied | Outcome::NoSession
        ),
        e => e == gateway,
    }
}

fn explain(config: &Path, request: &[u8]) -> Result<Outcome, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepgate"))
        .args(["explain", "--raw", "-", "--at", &AT.to_string(), "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stepgate explain");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request)
        .expect("write the request");
    let out = child.wait_with_output().expect("explain output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "explain exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    explain_outcome(&stdout).map_err(|e| format!("{e}\n{stdout}"))
}

/// Every case to both; returns the disagreements and the outcomes seen.
async fn compare(
    addr: std::net::SocketAddr,
    pki: &Pki,
    up: &Upstream,
    config: &Path,
) -> (Vec<String>, BTreeSet<Outcome>) {
    let cases: Vec<Case> = table().into_iter().chain(benign()).collect();
    assert!(cases.len() > 150, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, c) in cases.iter().enumerate() {
        // A fresh session per case: the gateway has never seen it, which
        // is what explain assumes without --session-age.
        let bytes = bytes_of(c, &format!("agree-{i}"));
        let before = up.requests().len();
        let resp = raw(addr, pki, &bytes).await;
        let gateway = gateway_outcome(&resp, up.requests().len() > before);
        let explained = explain(config, &bytes);
        let ok = matches!(&explained, Ok(e) if agree(e, &gateway));
        if !ok {
            failures.push(format!(
                "#{i} {} ({} {:?}): gateway {gateway:?} ({}), explain {explained:?}",
                c.why,
                c.method,
                String::from_utf8_lossy(c.target),
                resp.status
            ));
        }
        seen.insert(gateway);
    }
    (failures, seen)
}

/// The outcomes a corpus run must have met, so agreement is not on one
/// class only (everything refused, or everything forwarded).
fn assert_varied(seen: &BTreeSet<Outcome>, want: &[fn(&Outcome) -> bool]) {
    for (i, w) in want.iter().enumerate() {
        assert!(seen.iter().any(w), "no outcome of kind #{i} among {seen:?}");
    }
}

#[tokio::test]
async fn explain_and_the_gateway_agree_on_the_corpus_under_its_routes() {
    let up = Upstream::start().await;
    let routes = format!("{DEFAULT_ROUTES}{EXTRA_ROUTES}");
    let gw = Gateway::start_with_clock(up.addr, &routes, "", Arc::new(ManualClock::at_unix(AT))).await;
    let (failures, seen) = compare(gw.addr, &gw.pki, &up, &gw.dir.join("routes.yaml")).await;
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_varied(
        &seen,
        &[
            |o| *o == Outcome::Forwarded,
            |o| matches!(o, Outcome::Held(_)),
            |o| *o == Outcome::Denied,
            |o| *o == Outcome::Refused(400),
            |o| matches!(o, Outcome::Unparsed(_)),
        ],
    );
}

#[tokio::test]
async fn explain_and_the_gateway_agree_on_the_corpus_under_the_shipped_routes_yaml() {
    let up = Upstream::start().await;
    // The shipped file as it is, with the test's upstream and key files
    // beside it (the repository ships no keys).
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-agree-{}", stepgate::ids::random_token()));
    std::fs::create_dir_all(dir.join("certs")).expect("dir");
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml")).expect("routes.yaml");
    let upstream_line = "\nupstream: http://127.0.0.1:8080\n";
    assert!(shipped.contains(upstream_line), "the shipped upstream line moved");
    let text = shipped.replace(upstream_line, &format!("\nupstream: http://{}\n", up.addr));
    let config = dir.join("routes.yaml");
    std::fs::write(&config, text).expect("write config");
    let pki = Pki::new();
    std::fs::write(dir.join("certs/gateway.pem"), &pki.cert_pem).expect("cert");
    stepgate::keys::write_private(&dir.join("certs/gateway-key.pem"), pki.key_pem.as_bytes()).expect("key");
    let (_, pem) = stepgate::assertion::generate_signing_key();
    stepgate::keys::write_private(&dir.join("certs/assertion-key.pem"), pem.as_bytes()).expect("key");

    let launched = launch(&config, Arc::new(ManualClock::at_unix(AT))).await;
    let (failures, seen) = compare(launched.addr, &pki, &up, &config).await;
    let _ = launched.stop.send(());
    let _ = launched.task.await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_varied(
        &seen,
        &[
            |o| *o == Outcome::Forwarded,
            |o| matches!(o, Outcome::Held(_)),
            |o| *o == Outcome::Denied,
            |o| *o == Outcome::Refused(400),
        ],
    );
}
