//! The cost of the shared-state port: spending a single-use value (a token
//! `jti`) in memory, in memory with its journal, and on a real local
//! `redis-server` (sequential latency, concurrent throughput, and the
//! Redis memory each spent value takes).
//!
//! Run: `cargo bench --bench state` (needs `redis-server` on the PATH;
//! under a minute). Prints a Markdown table and writes
//! `target/state-bench.json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepgate::store::{Fingerprints, MemoryState, RedisState, StateStore};

const FAR: u64 = 4_000_000_000;

struct Row {
    name: &'static str,
    ops: usize,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// `n` claims one after another: latency of one spent value.
async fn sequential(name: &'static str, store: &dyn StateStore, n: usize, tag: &str) -> Row {
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let key = format!("jti:https://idp.example:{tag}-{i}");
        let t = Instant::now();
        assert!(store.claim_once(&key, FAR, 0).await.expect("store answers"));
        lat.push(t.elapsed());
    }
    let total = started.elapsed();
    lat.sort();
    Row {
        name,
        ops: n,
        per_sec: n as f64 / total.as_secs_f64(),
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
    }
}

/// `tasks` clients claiming `each` values at once: throughput.
async fn concurrent(name: &'static str, store: Arc<dyn StateStore>, tasks: usize, each: usize, tag: &str) -> Row {
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        let tag = tag.to_owned();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(each);
            for i in 0..each {
                let key = format!("jti:https://idp.example:{tag}-{t}-{i}");
                let s = Instant::now();
                assert!(store.claim_once(&key, FAR, 0).await.expect("store answers"));
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.expect("task"));
    }
    let total = started.elapsed();
    lat.sort();
    Row {
        name,
        ops: tasks * each,
        per_sec: (tasks * each) as f64 / total.as_secs_f64(),
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn used_memory(port: u16) -> u64 {
    redis_cli(port, &["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

fn main() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stepgate-state-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut redis = Command::new("redis-server")
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
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis_cli(port, &["PING"]).contains("PONG") {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (rows, per_key) = rt.block_on(async {
        let mut rows = Vec::new();
        let memory = MemoryState::default();
        rows.push(sequential("memory", &memory, 200_000, "m").await);
        let journalled = MemoryState::open(&dir.join("journal.jsonl"), 0).expect("journal");
        rows.push(sequential("memory + journal (fsync)", &journalled, 2_000, "j").await);
        let url = format!("redis://127.0.0.1:{port}");
        let redis: Arc<dyn StateStore> = Arc::new(RedisState::new(&url, "bench").expect("redis"));
        redis.join(&Fingerprints::new(b"bench", "kid")).await.expect("join");
        rows.push(sequential("redis, 1 client", redis.as_ref(), 20_000, "r").await);
        rows.push(concurrent("redis, 64 concurrent", redis.clone(), 64, 1_000, "c").await);
        // Memory per spent value: a fresh prefix, many values, the
        // difference in Redis' own accounting.
        redis_cli(port, &["FLUSHALL"]);
        let before = used_memory(port);
        let n = 100_000;
        concurrent("fill", redis.clone(), 50, n / 50, "fill").await;
        let after = used_memory(port);
        (rows, (after.saturating_sub(before)) as f64 / n as f64)
    });
    let _ = redis.kill();
    let _ = redis.wait();
    let _ = std::fs::remove_dir_all(&dir);

    println!("| store | values spent | per second | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.1} µs | {:.1} µs |",
            r.name, r.ops, r.per_sec, r.p50_us, r.p99_us
        );
    }
    println!("\nRedis memory per spent value: {per_key:.0} bytes");
    let json = serde_json::json!({
        "rows": rows.iter().map(|r| serde_json::json!({
            "store": r.name, "ops": r.ops, "per_sec": r.per_sec, "p50_us": r.p50_us, "p99_us": r.p99_us,
        })).collect::<Vec<_>>(),
        "redis_bytes_per_value": per_key,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/state-bench.json");
    let _ = std::fs::write(out, serde_json::to_string_pretty(&json).expect("json"));
}
