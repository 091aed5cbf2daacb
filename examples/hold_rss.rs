//! Measures what pending holds cost in resident memory.
//!
//!     cargo run --release --example hold_rss [-- HOLDS [BODY_BYTES]]
//!
//! Creates HOLDS (default 10,000) pending holds, each parked with a
//! realistic header set and a BODY_BYTES (default 200) body, and reports the
//! VmRSS delta read from /proc/self/status. The inputs are built the way the
//! gateway builds them (one request at a time) so the delta is what the
//! engine keeps alive, allocator overhead included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method};
use stepgate::hold::{HoldEngine, HoldMeta, HoldState, Parked};
use stepgate::ids::{random_token, HoldId, Sid, Txn};
use stepgate::policy::{HoldMode, Requirements};

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux only)");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn headers(i: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = |s: String| HeaderValue::from_str(&s).unwrap();
    h.insert("host", HeaderValue::from_static("app.example:8443"));
    h.insert(
        "user-agent",
        HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    );
    h.insert("accept", HeaderValue::from_static("application/json"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("cookie", v(format!("SESSIONID={}; theme=dark", random_token())));
    h.insert("x-forwarded-for", v(format!("10.0.{}.{}", i / 256 % 256, i % 256)));
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    h.insert("x-forwarded-host", HeaderValue::from_static("app.example:8443"));
    h
}

fn body(len: usize) -> Bytes {
    // Buffered the way the gateway's body reader does it.
    let mut b = BytesMut::new();
    b.extend_from_slice(&vec![b'{'; len]);
    b.freeze()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let holds: usize = args.next().map(|a| a.parse().expect("HOLDS")).unwrap_or(10_000);
    let body_len: usize = args.next().map(|a| a.parse().expect("BODY_BYTES")).unwrap_or(200);
    let now = SystemTime::now();
    let state = HoldState::new(Requirements::default(), now + Duration::from_secs(120), 5, false);

    // One hold per session, as many distinct users would produce; this also
    // counts the per-session limit map.
    let engine = HoldEngine::new(holds, 8);
    let before = status_kib("VmRSS");
    for i in 0..holds {
        let path = format!("/admin/users/{i}/delete");
        let meta = HoldMeta {
            id: HoldId::random(),
            route: "delete-user".into(),
            action: "user.delete".into(),
            label: "Delete a user".into(),
            // sid and txn are base64url SHA-256 digests: 43 characters.
            sid: Sid(format!("{}{}", random_token(), &random_token()[..21])),
            txn: Txn(format!("{}{}", random_token(), &random_token()[..21])),
            method: Method::POST,
            host: "app.example:8443".into(),
            path_and_query: format!("{path}?confirm=1"),
            mode: HoldMode::Auto,
            created: now,
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, (i / 256 % 256) as u8, (i % 256) as u8)),
            risk: Vec::new(),
            identity: None,
            display: vec![("User".into(), i.to_string())],
            needs_approval: false,
            request_id: String::new(),
        };
        let parked = Parked {
            headers: headers(i),
            body: body(body_len),
        };
        engine.create(meta, state.clone(), parked, None).expect("within limits");
    }
    let after = status_kib("VmRSS");
    assert_eq!(engine.open_count(), holds);

    let delta = after.saturating_sub(before);
    println!("holds: {holds}, body: {body_len} B");
    println!("VmRSS before: {before} KiB, after: {after} KiB");
    println!(
        "delta: {delta} KiB ({:.2} MiB), per hold: {:.0} B",
        delta as f64 / 1024.0,
        delta as f64 * 1024.0 / holds as f64
    );
    std::hint::black_box(&engine);
}
