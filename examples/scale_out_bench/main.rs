//! Holds across instances: one `stepgate serve` on the memory backend
//! against two `stepgate serve` processes sharing one real `redis-server`.
//!
//!     cargo build --release --bin stepgate --example scale_out_bench
//!     target/release/examples/scale_out_bench --holds 2000 --samples 300 [--json out.json]
//!
//! (`bash benches/scale_out/run.sh` does both and writes the tables.)
//!
//! For each setup, with a recording upstream inside this process:
//! 1. holds per second: N `challenge` requests (401 at once, the request
//!    parked with a 200-byte body), each from its own session, over a few
//!    keep-alive TLS connections spread evenly over the instances; wall
//!    time from the first request to the last 401;
//! 2. on Redis, the memory the holds take there: `used_memory` growth over
//!    the N holds divided by N, and the mean `MEMORY USAGE` of their keys;
//! 3. approval to upstream: S `hold`-mode requests wait, each on its own
//!    connection to the first instance; one approver (API key) approves
//!    them one after another on the last instance (on Redis, the other
//!    one, so the release crosses instances: pub/sub, then the waiting
//!    instance takes the parked request and forwards). Timed from just
//!    before the approval is written to the moment the upstream has parsed
//!    the released request: two `Instant`s of this process, one clock.

// The admin-listener helpers of the shared module are not needed here.
#[allow(dead_code)]
#[path = "../hold_capacity/net.rs"]
mod net;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

#[derive(Parser)]
struct Args {
    /// Challenge holds created per setup.
    #[arg(long, default_value_t = 2000)]
    holds: usize,
    /// Approvals timed per setup.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Keep-alive connections the challenge requests are spread over.
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// Bytes of each parked request body.
    #[arg(long, default_value_t = 200)]
    body: usize,
    /// The gateway binary (default: `stepgate` next to this example's directory).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

const APPROVER_KEY: &str = "bench-approver-key-0123456789abcdef";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn body(i: usize, len: usize) -> Bytes {
    let head = format!("{{\"amount\":{},\"payee\":\"ACME GmbH\",\"memo\":\"", 1000 + i);
    let pad = len.saturating_sub(head.len() + 2);
    Bytes::from(format!("{head}{}\"}}", "x".repeat(pad)))
}

/// The files every instance shares (certificate, keys, session key) in
/// one directory; each instance gets its own config, ports and trail.
struct Files {
    dir: PathBuf,
    pki: net::Pki,
}

impl Files {
    fn new() -> Result<Files> {
        let dir = std::env::temp_dir().join(format!("stepgate-scaleout-{}", stepgate::ids::random_token()));
        std::fs::create_dir_all(dir.join("state"))?;
        let pki = net::Pki::new()?;
        std::fs::write(dir.join("cert.pem"), &pki.cert_pem)?;
        std::fs::write(dir.join("key.pem"), &pki.key_pem)?;
        let (_, pem) = stepgate::assertion::generate_signing_key();
        std::fs::write(dir.join("assertion.pem"), pem)?;
        for key in ["key.pem", "assertion.pem"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join(key), std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Files { dir, pki })
    }

    fn config(&self, name: &str, port: u16, upstream: SocketAddr, state: &str) -> Result<PathBuf> {
        let digest: String = Sha256::digest(APPROVER_KEY.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let text = format!(
            "listen: 127.0.0.1:{port}
tls: {{ cert: cert.pem, key: key.pem }}
upstream: http://{upstream}
session: {{ cookie: SESSIONID }}
assertion: {{ key: assertion.pem, issuer: stepgate, audience: bench }}
audit: {{ path: state/audit-{name}.jsonl }}
trusted_proxies: [127.0.0.1/32]
identity: {{ header: X-Remote-User }}
limits: {{ max_holds: 1000000, max_holds_per_session: 100, max_holds_per_client: 1000000,
          max_held_bytes: 1GiB, max_held_bytes_per_client: 1GiB, max_buffered_bytes: 1GiB,
          max_buffered_bytes_per_client: 1GiB, max_connections: 20000 }}
{state}
stepup:
  users: state/users.yaml
  approvers: [ {{ name: ops-bot, groups: [ops], key_sha256: '{digest}' }} ]
routes:
  - name: delete-user
    action: user.delete
    match: {{ methods: [POST], path: '/admin/users/([^/]+)/delete' }}
    require: {{ methods: [totp], max_age: 5m }}
    hold: {{ mode: challenge, timeout: 30m }}
  - name: agent-transfer
    action: money.transfer
    match: {{ methods: [POST], path: '/api/agent/([0-9]+)' }}
    require: {{ approvals: 1, approvers: [ops] }}
    hold: {{ mode: hold, timeout: 30m }}
"
        );
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

struct Instance {
    addr: SocketAddr,
    _child: Child,
}

impl Instance {
    async fn start(binary: &Path, files: &Files, name: &str, upstream: SocketAddr, state: &str) -> Result<Instance> {
        let port = net::free_port()?;
        let config = files.config(name, port, upstream, state)?;
        let log = std::fs::File::create(files.dir.join(format!("{name}.log")))?;
        let child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let tls = files.pki.connector()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        // Serving only once it has joined the store: a pass-through answer.
        loop {
            if let Ok(mut c) = net::connect_tls(addr, &tls).await {
                let req = net::request("GET", "localhost", "/warm", &[], Bytes::new());
                if matches!(net::call(&mut c, req).await, Ok((200, _))) {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} did not come up; see {}",
                    files.dir.join(format!("{name}.log")).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Instance { addr, _child: child })
    }
}

struct Redis {
    port: u16,
    child: std::process::Child,
}

impl Redis {
    fn start(dir: &Path) -> Result<Redis> {
        let port = net::free_port()?;
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .context("redis-server (apt-get install redis-server)")?;
        let r = Redis { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !r.cli(&["PING"]).contains("PONG") {
            if Instant::now() > deadline {
                bail!("redis-server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(r)
    }

    fn cli(&self, args: &[&str]) -> String {
        std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn used_memory(&self) -> Result<u64> {
        self.cli(&["INFO", "memory"])
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .context("used_memory")
    }

    /// Mean `MEMORY USAGE` (bytes, `SAMPLES 0`: every field) of the hold keys.
    fn hold_key_bytes(&self) -> (usize, f64) {
        let keys: Vec<String> = self
            .cli(&["--scan", "--pattern", "stepgate:hold:*"])
            .lines()
            .map(str::to_owned)
            .collect();
        let sizes: Vec<f64> = keys
            .iter()
            .filter_map(|k| self.cli(&["MEMORY", "USAGE", k, "SAMPLES", "0"]).trim().parse().ok())
            .collect();
        let mean = sizes.iter().sum::<f64>() / sizes.len().max(1) as f64;
        (sizes.len(), mean)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// N challenge holds over `conns` keep-alive connections, connection `c`
/// on instance `c % instances.len()`. Returns (seconds, per-request ms sorted).
async fn challenges(
    instances: &[SocketAddr],
    files: &Files,
    n: usize,
    conns: usize,
    len: usize,
) -> Result<(f64, Vec<f64>)> {
    let tls = files.pki.connector()?;
    let mut clients = Vec::new();
    for c in 0..conns {
        clients.push(net::connect_tls(instances[c % instances.len()], &tls).await?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, mut client) in clients.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut lat = Vec::new();
            for i in (c..n).step_by(conns) {
                let cookie = format!("SESSIONID=c{i}-{}", stepgate::ids::random_token());
                let headers = [
                    ("cookie", cookie.as_str()),
                    ("accept", "application/json"),
                    ("x-remote-user", "alice"),
                ];
                let req = net::request(
                    "POST",
                    "localhost",
                    &format!("/admin/users/{i}/delete"),
                    &headers,
                    body(i, len),
                );
                let t = Instant::now();
                let (status, answer) = net::call(&mut client, req).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                let challenged =
                    serde_json::from_slice::<Value>(&answer).is_ok_and(|v| v["error"] == "step_up_required");
                if status != 401 || !challenged {
                    bail!("challenge {i}: {status} {}", String::from_utf8_lossy(&answer));
                }
            }
            anyhow::Ok(lat)
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = tasks.join_next().await {
        lat.extend(r??);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok((secs, lat))
}

/// S waiters on `waiter`, approved one by one on `approver`. Returns the
/// approval → upstream milliseconds, sorted.
async fn approvals(
    waiter: SocketAddr,
    approver: SocketAddr,
    files: &Files,
    samples: usize,
    len: usize,
    arrivals: &mut mpsc::UnboundedReceiver<net::Arrival>,
) -> Result<Vec<f64>> {
    let tls = files.pki.connector()?;
    let (done_tx, mut done) = mpsc::unbounded_channel();
    for i in 0..samples {
        let mut client = net::connect_tls(waiter, &tls).await?;
        client.ready().await?;
        let cookie = format!("SESSIONID=h{i}-{}", stepgate::ids::random_token());
        let headers = [("cookie", cookie.as_str()), ("x-remote-user", "agent-7")];
        let req = net::request("POST", "localhost", &format!("/api/agent/{i}"), &headers, body(i, len));
        let answer = client.send_request(req);
        let done = done_tx.clone();
        tokio::spawn(async move {
            let status = answer.await.map(|r| r.status().as_u16()).unwrap_or(0);
            let _ = done.send((i, status, client));
        });
    }
    let key = format!("Bearer {APPROVER_KEY}");
    let mut by_target = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while by_target.len() < samples {
        if Instant::now() > deadline {
            bail!("only {} of {samples} waiting holds reached the queue", by_target.len());
        }
        let mut c = net::connect_tls(approver, &tls).await?;
        let (status, queue) = net::call(
            &mut c,
            net::request(
                "GET",
                "localhost",
                "/.stepup/holds",
                &[("authorization", &key)],
                Bytes::new(),
            ),
        )
        .await?;
        if status != 200 {
            bail!("approver queue answered {status}");
        }
        let queue: Value = serde_json::from_slice(&queue)?;
        for h in queue["holds"].as_array().context("holds")? {
            let target = h["target"].as_str().unwrap_or_default().to_owned();
            by_target.insert(
                target,
                (h["hold_id"].as_str().unwrap_or_default().to_owned(), h["txn"].clone()),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while arrivals.try_recv().is_ok() {}
    let mut client = net::connect_tls(approver, &tls).await?;
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let target = format!("/api/agent/{i}");
        let (id, txn) = by_target.get(&target).context("waiting hold not in the queue")?;
        let approve = json!({ "txn": txn, "comment": "bench" }).to_string();
        let req = net::request(
            "POST",
            "localhost",
            &format!("/.stepup/holds/{id}/approve"),
            &[("authorization", &key)],
            Bytes::from(approve),
        );
        let t0 = Instant::now();
        let (status, answer) = net::call(&mut client, req).await?;
        if status != 200 {
            bail!("approve {id}: {status} {}", String::from_utf8_lossy(&answer));
        }
        let arrived = net::arrival_of(arrivals, &target).await?;
        out.push(arrived.duration_since(t0).as_secs_f64() * 1e3);
    }
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered < samples {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, done.recv()).await {
            Ok(Some((_, 200, _))) => answered += 1,
            Ok(Some((i, s, _))) => bail!("waiter {i} ended with {s}"),
            _ => bail!("only {answered} of {samples} waiters got the upstream's answer"),
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn summary(secs: f64, n: usize, lat: &[f64], approve: &[f64]) -> Value {
    json!({
        "holds": n,
        "seconds": secs,
        "holds_per_sec": n as f64 / secs,
        "challenge_ms": { "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99) },
        "approval_to_upstream_ms": {
            "samples": approve.len(),
            "p50": percentile(approve, 0.5), "p99": percentile(approve, 0.99),
            "max": approve.last().copied().unwrap_or(f64::NAN),
        },
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = match args.gateway {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .context("no target directory")?
            .join("stepgate"),
    };
    let (upstream, mut arrivals) = net::upstream().await?;

    // One instance, memory backend.
    let files = Files::new()?;
    let one = Instance::start(&binary, &files, "memory", upstream, "").await?;
    let (secs, lat) = challenges(&[one.addr], &files, args.holds, args.conns, args.body).await?;
    let approve = approvals(one.addr, one.addr, &files, args.samples, args.body, &mut arrivals).await?;
    let memory = summary(secs, args.holds, &lat, &approve);
    drop(one);

    // Two instances on one Redis, with their own files (a fresh session key).
    let files = Files::new()?;
    let redis = Redis::start(&files.dir)?;
    let state = format!("state: {{ backend: redis, url: 'redis://127.0.0.1:{}' }}", redis.port);
    let a = Instance::start(&binary, &files, "a", upstream, &state).await?;
    let b = Instance::start(&binary, &files, "b", upstream, &state).await?;
    let before = redis.used_memory()?;
    let (secs, lat) = challenges(&[a.addr, b.addr], &files, args.holds, args.conns, args.body).await?;
    let after = redis.used_memory()?;
    let (keys, key_bytes) = redis.hold_key_bytes();
    let approve = approvals(a.addr, b.addr, &files, args.samples, args.body, &mut arrivals).await?;
    let mut shared = summary(secs, args.holds, &lat, &approve);
    shared["redis"] = json!({
        "used_memory_per_hold": after.saturating_sub(before) as f64 / args.holds as f64,
        "hold_keys": keys,
        "memory_usage_per_hold_key": key_bytes,
        "body_bytes": args.body,
    });
    drop((a, b));
    drop(redis);

    let result = json!({ "memory_1_instance": memory, "redis_2_instances": shared });
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(path) = args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")?;
    }
    Ok(())
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
