//! Memory after many short holds, in a real `stepgate serve` process.
//!
//!     cargo build --release --bin stepgate --example hold_churn
//!     target/release/examples/hold_churn [--holds 100000] [--rounds 2] [--keep 10] [--json out.json]
//!
//! Each round sends N `challenge` requests over keep-alive connections
//! (401 at once, the request parked with its 200-byte body), each from its
//! own session (the same sessions every round), and lets every hold expire
//! (`hold.timeout`) and then be forgotten (`limits.keep_ended_holds`). The
//! gateway's VmRSS is read once it settles: at start, at the peak, and after
//! the keep window, when `stepgate_holds_kept` (holds in memory) is 0.
//!
//! Whether memory that did not come back is a leak or the allocator
//! keeping freed pages is answered two ways:
//! - a second round of the same size: a leak grows again by as much, while
//!   freed memory is reused and RSS stays put;
//! - glibc's own account (`malloc_stats()`, via gdb attached to the
//!   gateway: bytes the heap holds from the system vs bytes in use), then
//!   `malloc_trim(0)`, which returns free heap pages, and VmRSS again.
//!   Skipped, and said so, when gdb cannot attach.

#[path = "../hold_capacity/gateway.rs"]
#[allow(dead_code)]
mod gateway;
#[path = "../hold_capacity/net.rs"]
#[allow(dead_code)]
mod net;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use serde_json::{json, Value};

use gateway::Gateway;

#[derive(Parser)]
struct Args {
    /// Holds per round.
    #[arg(long, default_value_t = 100_000)]
    holds: usize,
    /// Rounds of N holds, each waited out to the end of the keep window.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// `limits.keep_ended_holds` in seconds (the product default is 300).
    #[arg(long, default_value_t = 10)]
    keep: u64,
    /// `hold.timeout` in seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// Bytes of each parked request body.
    #[arg(long, default_value_t = 200)]
    body: usize,
    /// Keep-alive connections the requests are spread over.
    #[arg(long, default_value_t = 32)]
    conns: usize,
    /// The gateway binary (default: `stepgate` next to this example's directory).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn config(port: u16, admin: u16, upstream: std::net::SocketAddr, args: &Args) -> String {
    // Every request comes from 127.0.0.1: the per-client quotas must let one
    // client hold a whole round.
    let holds = args.holds + 1000;
    format!(
        "listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
tls: {{ cert: cert.pem, key: key.pem }}
upstream: http://{upstream}
session: {{ cookie: SESSIONID }}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: bench }}
audit: {{ path: state/audit.jsonl }}
limits: {{ max_holds: {holds}, max_holds_per_client: {holds}, max_held_bytes_per_client: 1GiB,
          max_buffered_bytes_per_client: 1GiB, max_buffered_bytes: 1GiB, keep_ended_holds: {keep}s }}
stepup:
  users: state/users.yaml
routes:
  - name: delete-user
    action: user.delete
    match: {{ methods: [POST], path: '/admin/users/([^/]+)/delete' }}
    require: {{ methods: [totp], max_age: 5m }}
    display: [ {{ label: User, capture: 1 }} ]
    hold: {{ mode: challenge, timeout: {timeout}s }}
",
        keep = args.keep,
        timeout = args.timeout,
    )
}

fn body(i: usize, len: usize) -> Bytes {
    let head = format!("{{\"user\":{i},\"memo\":\"");
    let pad = len.saturating_sub(head.len() + 2);
    Bytes::from(format!("{head}{}\"}}", "x".repeat(pad)))
}

/// `n` challenge requests over `conns` keep-alive connections, session `i`
/// for request `i`; every answer must be the 401 challenge.
async fn round(gw: &Gateway, tls: &tokio_rustls::TlsConnector, n: usize, conns: usize, len: usize) -> Result<()> {
    let host = format!("localhost:{}", gw.addr.port());
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns.min(n).max(1) {
        let mut client = net::connect_tls(gw.addr, tls).await?;
        let host = host.clone();
        tasks.spawn(async move {
            for i in (c..n).step_by(conns) {
                let cookie = format!("SESSIONID=churn-{i}");
                let headers = [("cookie", cookie.as_str()), ("accept", "application/json")];
                let req = net::request(
                    "POST",
                    &host,
                    &format!("/admin/users/{i}/delete"),
                    &headers,
                    body(i, len),
                );
                let (status, answer) = net::call(&mut client, req)
                    .await
                    .with_context(|| format!("request {i}"))?;
                if status != 401 {
                    bail!("request {i}: {status} {}", String::from_utf8_lossy(&answer));
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

async fn gauge(gw: &Gateway, name: &str) -> Result<u64> {
    Ok(net::metric(&gw.metrics().await?, name)? as u64)
}

/// Waits until no hold is open or kept.
async fn forgotten(gw: &Gateway, limit: Duration) -> Result<f64> {
    let started = Instant::now();
    loop {
        let kept = gauge(gw, "stepgate_holds_kept").await?;
        if kept == 0 && gauge(gw, "stepgate_holds_open").await? == 0 {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > limit {
            bail!("{kept} holds still kept after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// glibc's heap as `malloc_stats()` reports it in the gateway, before and
/// after `malloc_trim(0)`, and the VmRSS after the trim. `None` when gdb is
/// not there or may not attach.
async fn allocator(gw: &Gateway) -> Result<Option<Value>> {
    let mark = gw.log().len();
    let out = tokio::process::Command::new("gdb")
        .args(["-p", &gw.pid().to_string(), "-batch", "-nx"])
        .args(["-ex", "call (void)malloc_stats()"])
        .args(["-ex", "call (int)malloc_trim(0)"])
        .args(["-ex", "call (void)malloc_stats()"])
        .output()
        .await;
    let Ok(out) = out else { return Ok(None) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = gw.log();
    let totals = totals(log.get(mark..).unwrap_or_default());
    if !out.status.success() || totals.len() != 2 {
        eprintln!(
            "gdb could not call into the gateway: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Ok(None);
    }
    let rss = gw.settled_rss_kib().await?;
    let kib = |b: u64| b / 1024;
    Ok(Some(json!({
        "heap_system_kib": kib(totals[0].0),
        "heap_in_use_kib": kib(totals[0].1),
        "after_trim_heap_system_kib": kib(totals[1].0),
        "after_trim_heap_in_use_kib": kib(totals[1].1),
        "after_trim_rss_kib": rss,
    })))
}

/// The `Total (incl. mmap)` system and in-use bytes of each malloc_stats() report.
fn totals(log: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut lines = log.lines();
    while let Some(l) = lines.next() {
        if !l.starts_with("Total (incl. mmap)") {
            continue;
        }
        let mut value = || {
            lines
                .next()
                .and_then(|l| l.split('=').nth(1))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(system), Some(used)) = (value(), value()) {
            out.push((system, used));
        }
    }
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = match &args.gateway {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .context("no target directory")?
            .join("stepgate"),
    };
    let pki = net::Pki::new()?;
    let tls = pki.connector()?;
    let (upstream, _arrivals) = net::upstream().await?;
    // Logging 100,000 holds at `info` would measure the log, not the holds.
    let env = [("RUST_LOG", "warn")];
    let gw = Gateway::start_with(&binary, &pki, &env, |port, admin, _| {
        config(port, admin, upstream, &args)
    })
    .await?;
    let idle = gw.settled_rss_kib().await?;
    let wait = Duration::from_secs(args.timeout + args.keep + 120);

    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        let started = Instant::now();
        round(&gw, &tls, args.holds, args.conns, args.body).await?;
        let secs = started.elapsed().as_secs_f64();
        let peak_kept = gauge(&gw, "stepgate_holds_kept").await?;
        let peak = gw.settled_rss_kib().await?;
        let until_forgotten = forgotten(&gw, wait).await?;
        let after = gw.settled_rss_kib().await?;
        eprintln!(
            "round {}: {secs:.1} s, peak {peak} KiB, after the keep window {after} KiB",
            r + 1
        );
        rounds.push(json!({
            "seconds": secs,
            "holds_kept_at_peak": peak_kept,
            "peak_rss_kib": peak,
            "seconds_until_forgotten": until_forgotten,
            "after_keep_rss_kib": after,
            "holds_kept_after": gauge(&gw, "stepgate_holds_kept").await?,
            "body_bytes_buffered_after": gauge(&gw, "stepgate_body_bytes_buffered").await?,
        }));
    }
    let heap = allocator(&gw).await?;
    gw.stop().await;

    let result = json!({
        "holds_per_round": args.holds,
        "body_bytes": args.body,
        "keep_ended_holds_s": args.keep,
        "hold_timeout_s": args.timeout,
        "idle_rss_kib": idle,
        "rounds": rounds,
        "allocator": heap,
        "load": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(path) = args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")?;
    }
    Ok(())
}
