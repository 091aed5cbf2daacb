//! Audit throughput with fsync group commit: many concurrent writers each
//! awaiting durability, as sensitive requests do. Prints events per second
//! and the batch effect (fsyncs are shared by everything queued at once).
//!
//!     cargo run --release --example audit_throughput -- [writers] [events-per-writer]

use std::sync::Arc;
use std::time::{Duration, Instant};
use stepgate::assertion::{generate_signing_key, AssertionSigner};
use stepgate::audit::{Audit, AuditConfig, Event, Record};

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let writers = args.first().copied().unwrap_or(64);
    let per_writer = args.get(1).copied().unwrap_or(500);
    let dir = std::env::temp_dir().join(format!("stepgate-audit-bench-{}", std::process::id()));
    let (key, _) = generate_signing_key();
    let signer = Arc::new(
        AssertionSigner::new(key, vec![], "bench".into(), "bench".into(), Duration::from_secs(60)).expect("signer"),
    );
    let cfg = AuditConfig {
        path: dir.join("audit.jsonl"),
        rotate_bytes: 1 << 30,
        checkpoint_every: 1000,
    };
    let audit = Audit::open(cfg, signer).expect("open audit");

    // One writer alone: every record pays a whole fsync.
    let started = Instant::now();
    for i in 0..200u64 {
        audit.record(record(i)).await.expect("append");
    }
    let single = 200.0 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let audit = audit.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    audit.record(record((w * per_writer + i) as u64)).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    let total = writers * per_writer;
    let secs = started.elapsed().as_secs_f64();
    println!("sequential (1 writer): {single:>9.0} durable events/s");
    println!(
        "group commit ({writers} writers x {per_writer}): {:>9.0} durable events/s ({total} events in {secs:.2}s)",
        total as f64 / secs
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn record(i: u64) -> Record {
    Record {
        hold: Some(format!("hold-{i}")),
        route: Some("delete-user".into()),
        action: Some("user.delete".into()),
        sid: Some("c2Vzc2lvbi1pZC1mb3ItdGhlLWJlbmNobWFyaw".into()),
        txn: Some("dHhuLWRpZ2VzdC1mb3ItdGhlLWJlbmNobWFyay0xMjM0NTY".into()),
        ..Record::new(Event::HoldCreated)
    }
}
