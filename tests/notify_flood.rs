//! Issue 21 #3: a flood of holds that need approval cannot drown a
//! break-glass notification, and what the webhook queue must drop is
//! audited (`notify.dropped`) and counted (`notifications_dropped`). The
//! sink is a real HTTP server on a local port that takes its time over
//! every notification.

mod common;
mod holdkit;
mod stepup_kit;

use common::*;
use holdkit::{bound_token, challenge, complete_as, complete_with_token, hold_id};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stepup_kit::{approvers_line, extra, ApproverKey};

const ROUTES: &str = "
  - name: glass
    action: vault.open
    match: { methods: [POST], path: '/api/vault/([0-9]+)' }
    require: { methods: [token], approvals: 1, approvers: [ops] }
    hold: { mode: challenge, timeout: 2m }
    break_glass: { reason_required: true, replaces_approvals: true }
";

const FLOOD: usize = 40;

/// A webhook receiver that answers each POST after `delay`, recording the
/// events it received.
async fn slow_sink(delay: Duration) -> (std::net::SocketAddr, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let rec = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let rec = rec.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        tokio::time::sleep(delay).await;
                        if let Ok(v) = serde_json::from_slice(&body) {
                            rec.lock().expect("sink").push(v);
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::new(),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_cannot_drown_break_glass_and_every_drop_is_audited() {
    let up = Upstream::start().await;
    let (sink, seen) = slow_sink(Duration::from_millis(400)).await;
    let olivia = ApproverKey::new("olivia");
    let approvers = approvers_line(&[olivia.yaml(&["ops"], false)]);
    let top = format!("notify: {{ webhook: 'http://{sink}/hook', queue: 4 }}\n");
    let gw = Gateway::start(up.addr, ROUTES, &extra(&[approvers], &top)).await;

    // The requester who will break the glass holds first ...
    let (_, ch) = challenge(&gw, "glass", "/api/vault/0", b"open").await;
    let id = hold_id(&ch);
    let proved = complete_with_token(&gw, &id, "glass", &bound_token(&gw, &ch)).await;
    assert_eq!(proved.status, 202, "{}", String::from_utf8_lossy(&proved.body));
    // ... then a flood of holds waiting for approvers fills the queue ...
    for i in 1..=FLOOD {
        let (resp, _) = challenge(&gw, &format!("flood-{i}"), &format!("/api/vault/{i}"), b"x").await;
        assert_eq!(resp.status, 401);
    }
    // ... and break-glass comes in behind it.
    let glass = json!({"method": "break_glass", "reason": "incident 42"});
    let c = holdkit::cookie("glass");
    let broke = complete_as(&gw, &id, &[("cookie", &c)], &glass).await;
    assert_eq!(broke.status, 200, "{}", String::from_utf8_lossy(&broke.body));

    let mut arrived = false;
    for _ in 0..200 {
        arrived = seen
            .lock()
            .expect("sink")
            .iter()
            .any(|e| e["event"] == "hold.break_glass" && e["hold_id"] == id.as_str());
        if arrived {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(arrived, "the break-glass notification reached the sink");

    // What could not wait was dropped on the record, never silently, and
    // every pending notification was either delivered or so dropped.
    let path = gw.gw.config().audit.path.clone();
    let pending_delivered = || {
        seen.lock()
            .expect("sink")
            .iter()
            .filter(|e| e["event"] == "hold.pending")
            .count()
    };
    let pending_dropped = || -> Vec<serde_json::Value> {
        story::records(&path)
            .expect("trail")
            .into_iter()
            .filter(|r| r["event"] == "notify.dropped" && r["notification"] == "hold.pending")
            .collect()
    };
    for _ in 0..200 {
        if pending_delivered() + pending_dropped().len() > FLOOD {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped = pending_dropped();
    assert!(!dropped.is_empty(), "a queue of 4 with {FLOOD} holds must drop some");
    assert!(dropped
        .iter()
        .all(|r| r["reason"] == "queue_full" && r["hold"].is_string()));
    assert_eq!(
        pending_delivered() + dropped.len(),
        FLOOD + 1,
        "each pending notification was delivered or its drop audited"
    );
    let metrics = gw.gw.metrics.encode();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("stepgate_notifications_dropped_total{result=\"queue_full\"}"))
        .unwrap_or_else(|| panic!("no drop counter in:\n{metrics}"));
    let counted: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("value");
    assert!(counted as usize >= dropped.len(), "every audited drop is counted");
}
