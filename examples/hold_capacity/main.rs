//! Hold capacity of a real `stepgate serve` process.
//!
//!     cargo build --release --bin stepgate --example hold_capacity
//!     target/release/examples/hold_capacity --holds 10000 [--samples 1000] [--json out.json]
//!
//! (`bash benches/holds/run.sh` does both for N = 1,000 and 10,000.)
//!
//! Against a release gateway started as a child process, with a recording
//! upstream inside this process:
//! 1. idle RSS of the gateway (VmRSS after start-up, no traffic);
//! 2. N `challenge` holds (401 at once, the request parked with its body),
//!    sent over a few keep-alive connections, each from its own session;
//!    the VmRSS growth divided by N is the cost of one pending hold;
//! 3. N `hold`-mode requests, each on its own TLS connection that stays
//!    open waiting; the further VmRSS growth divided by N is the cost of one
//!    waiting connection with its hold;
//! 4. with all of them still pending, one approver (API key) approves
//!    `samples` of the waiting holds one after the other; for each, the time
//!    from just before the approval call is written to the moment the
//!    upstream has parsed the released request. Both are `Instant`s of this
//!    process: one clock.
//!
//! RSS is the gateway's own (/proc/PID/status), read once it stops moving.

mod gateway;
mod net;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use gateway::{AuditWrites, Gateway};

#[derive(Parser)]
struct Args {
    /// Holds of each kind (challenge, then hold-mode connections).
    #[arg(long, default_value_t = 10_000)]
    holds: usize,
    /// Approvals timed (at most --holds).
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    /// Bytes of each parked request body.
    #[arg(long, default_value_t = 200)]
    body: usize,
    /// Keep-alive connections the challenge requests are spread over.
    #[arg(long, default_value_t = 32)]
    challenge_conns: usize,
    /// TLS handshakes in flight while opening the hold-mode connections.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// The gateway binary (default: `stepgate` next to this example's directory).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Warm-up holds made before the baselines, so one-time allocations (maps,
/// buffers, the upstream pool) are not charged to the measured holds.
const WARMUP: usize = 64;

fn body(i: usize, len: usize) -> Bytes {
    let head = format!("{{\"amount\":{},\"payee\":\"ACME GmbH\",\"memo\":\"", 1000 + i);
    let pad = len.saturating_sub(head.len() + 2);
    Bytes::from(format!("{head}{}\"}}", "x".repeat(pad)))
}

/// The source address of waiting connection `i`: 20,000 to an address,
/// 127.0.0.2 upwards (so N = 100,000 fits the ephemeral port range).
fn source(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, 0, 2 + (i / 20_000) as u8)
}

fn session(kind: &str, i: usize) -> String {
    format!("SESSIONID={kind}{i}-{}", stepgate::ids::random_token())
}

fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sends `n` challenge requests (targets `first..first + n`) over `conns`
/// keep-alive connections; every answer must be the 401 challenge.
async fn challenges(
    gw: &Gateway,
    tls: &tokio_rustls::TlsConnector,
    first: usize,
    n: usize,
    conns: usize,
    len: usize,
) -> Result<()> {
    let host = format!("localhost:{}", gw.addr.port());
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns.min(n).max(1) {
        let mut client = net::connect_tls(gw.addr, tls).await?;
        let host = host.clone();
        tasks.spawn(async move {
            for i in (first + c..first + n).step_by(conns) {
                let cookie = session("c", i);
                let user = format!("user-{i}");
                let headers = [
                    ("cookie", cookie.as_str()),
                    ("accept", "application/json"),
                    ("x-remote-user", user.as_str()),
                ];
                let req = net::request(
                    "POST",
                    &host,
                    &format!("/admin/users/{i}/delete"),
                    &headers,
                    body(i, len),
                );
                let (status, answer) = net::call(&mut client, req)
                    .await
                    .with_context(|| format!("challenge request {i}"))?;
                let challenged =
                    serde_json::from_slice::<Value>(&answer).is_ok_and(|v| v["error"] == "step_up_required");
                if status != 401 || !challenged {
                    bail!("challenge request {i}: {status} {}", String::from_utf8_lossy(&answer));
                }
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Opens `n` hold-mode connections (targets `first..first + n`), each sending
/// one request that waits. Every waiter reports its final status on `done`.
async fn waiters(
    gw: &Gateway,
    tls: &tokio_rustls::TlsConnector,
    first: usize,
    n: usize,
    parallel: usize,
    len: usize,
    done: mpsc::UnboundedSender<(usize, u16)>,
) -> Result<()> {
    let host = format!("localhost:{}", gw.addr.port());
    let gate = Arc::new(Semaphore::new(parallel));
    let mut opened = tokio::task::JoinSet::new();
    for i in first..first + n {
        let permit = gate.clone().acquire_owned().await?;
        let (addr, tls, host, done) = (gw.addr, tls.clone(), host.clone(), done.clone());
        opened.spawn(async move {
            let mut client = net::connect_tls_from(addr, Some(source(i)), &tls).await?;
            drop(permit);
            client.ready().await?;
            let cookie = session("h", i);
            // An approval-only hold needs to know who asks (SPEC 4.3): the
            // agent is named by the identity header a trusted proxy sets.
            let agent = format!("agent-{i}");
            let req = net::request(
                "POST",
                &host,
                &format!("/api/agent/{i}"),
                &[("cookie", &cookie), ("x-remote-user", &agent)],
                body(i, len),
            );
            let answer = client.send_request(req);
            tokio::spawn(async move {
                let status = answer.await.map(|r| r.status().as_u16()).unwrap_or(0);
                let _ = done.send((i, status));
            });
            anyhow::Ok(())
        });
        while let Some(r) = opened.try_join_next() {
            r??;
        }
    }
    while let Some(r) = opened.join_next().await {
        r??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let n = args.holds;
    let samples = args.samples.min(n);
    if let Some(limit) = open_files_limit() {
        if n + args.challenge_conns + 256 > limit {
            bail!("{n} waiting connections need more open files than the limit of {limit}: raise `ulimit -n`");
        }
    }
    let binary = match args.gateway {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .context("no target directory")?
            .join("stepgate"),
    };
    let pki = net::Pki::new()?;
    let tls = pki.connector()?;
    let (upstream, mut arrivals) = net::upstream().await?;
    let gw = Gateway::start(&binary, upstream, n, &pki).await?;
    let host = format!("localhost:{}", gw.addr.port());
    let idle = gw.settled_rss_kib().await?;

    // Warm-up: both routes once, the upstream pool, then the baseline.
    challenges(&gw, &tls, 0, WARMUP, args.challenge_conns, args.body).await?;
    let mut client = net::connect_tls(gw.addr, &tls).await?;
    let (status, _) = net::call(&mut client, net::request("GET", &host, "/warm", &[], Bytes::new())).await?;
    if status != 200 {
        bail!("pass-through warm-up answered {status}");
    }
    let before = gw.settled_rss_kib().await?;

    let started = Instant::now();
    challenges(&gw, &tls, WARMUP, n, args.challenge_conns, args.body).await?;
    gw.wait_holds(WARMUP + n, Duration::from_secs(60)).await?;
    let challenge_secs = started.elapsed().as_secs_f64();
    let after_challenge = gw.settled_rss_kib().await?;

    let (done_tx, mut done) = mpsc::unbounded_channel();
    let started = Instant::now();
    waiters(&gw, &tls, 0, n, args.parallel, args.body, done_tx).await?;
    gw.wait_holds(WARMUP + 2 * n, Duration::from_secs(120)).await?;
    let waiter_secs = started.elapsed().as_secs_f64();
    let after_waiters = gw.settled_rss_kib().await?;

    // The approver's queue names each waiting hold's id and txn. A fresh
    // connection: the gateway closes keep-alive connections idle for longer
    // than its header read timeout.
    let mut client = net::connect_tls(gw.addr, &tls).await?;
    let key = format!("Bearer {}", gw.approver_key);
    let (status, queue) = net::call(
        &mut client,
        net::request("GET", &host, "/.stepup/holds", &[("authorization", &key)], Bytes::new()),
    )
    .await?;
    if status != 200 {
        bail!("approver queue answered {status}");
    }
    let queue: Value = serde_json::from_slice(&queue)?;
    let mut by_target = std::collections::HashMap::new();
    for h in queue["holds"].as_array().context("holds")? {
        let target = h["target"].as_str().unwrap_or_default().to_owned();
        by_target.insert(
            target,
            (h["hold_id"].as_str().unwrap_or_default().to_owned(), h["txn"].clone()),
        );
    }
    if by_target.len() != n {
        bail!("the approver sees {} waiting holds, not {n}", by_target.len());
    }
    while arrivals.try_recv().is_ok() {}

    let audit_before = AuditWrites::read(&gw.metrics().await?)?;
    let pending_first = gw.holds_open().await?;
    let mut to_upstream = Vec::with_capacity(samples);
    let mut to_answer = Vec::with_capacity(samples);
    for k in 0..samples {
        let i = k * n / samples;
        let target = format!("/api/agent/{i}");
        let (id, txn) = by_target.get(&target).context("sampled hold not in the queue")?;
        let approve = json!({ "txn": txn, "comment": "bench" }).to_string();
        let req = net::request(
            "POST",
            &host,
            &format!("/.stepup/holds/{id}/approve"),
            &[("authorization", &key)],
            Bytes::from(approve),
        );
        let t0 = Instant::now();
        let (status, answer) = net::call(&mut client, req).await?;
        let answered = t0.elapsed();
        if status != 200 {
            bail!("approve {id}: {status} {}", String::from_utf8_lossy(&answer));
        }
        let arrived = net::arrival_of(&mut arrivals, &target).await?;
        to_upstream.push(arrived.duration_since(t0).as_secs_f64() * 1e3);
        to_answer.push(answered.as_secs_f64() * 1e3);
    }
    let pending_last = gw.holds_open().await?;
    let (writes, audit_mean, audit_p99) = AuditWrites::read(&gw.metrics().await?)?.since(&audit_before);

    // Every sampled waiter must have had its upstream answer.
    let mut released = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while released < samples && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), done.recv()).await {
            Ok(Some((_, 200))) => released += 1,
            Ok(Some((i, s))) => bail!("waiter {i} ended with {s}"),
            _ => {}
        }
    }
    gw.stop().await;

    to_upstream.sort_by(f64::total_cmp);
    to_answer.sort_by(f64::total_cmp);
    let per = |delta: u64| delta as f64 * 1024.0 / n as f64;
    let challenge_bytes = per(after_challenge.saturating_sub(before));
    let waiter_bytes = per(after_waiters.saturating_sub(after_challenge));
    let result = json!({
        "holds": n,
        "body_bytes": args.body,
        "idle_rss_kib": idle,
        "rss_kib": { "warm": before, "after_challenge": after_challenge, "after_waiters": after_waiters },
        "challenge_hold_bytes": challenge_bytes.round(),
        "challenge_hold_bytes_less_body": (challenge_bytes - args.body as f64).round(),
        "waiting_connection_bytes": waiter_bytes.round(),
        "seconds": { "challenges": challenge_secs, "waiters": waiter_secs },
        "approval": {
            "samples": samples,
            "released_to_waiter": released,
            "pending_first": pending_first,
            "pending_last": pending_last,
            "to_upstream_ms": {
                "p50": percentile(&to_upstream, 0.50), "p99": percentile(&to_upstream, 0.99),
                "max": to_upstream.last().copied().unwrap_or(f64::NAN),
            },
            "approve_answer_ms": { "p50": percentile(&to_answer, 0.50), "p99": percentile(&to_answer, 0.99) },
            "audit_writes": writes,
            "audit_write_mean_ms": audit_mean * 1e3,
            "audit_write_p99_bucket_ms": audit_p99 * 1e3,
        },
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(path) = args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")?;
    }
    if released != samples {
        bail!("only {released} of {samples} approved waiters got the upstream's answer");
    }
    Ok(())
}
