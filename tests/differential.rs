//! Differential path test (SPEC §2, "one reading of every request"): a
//! seeded generator of request targets and headers sends every case twice,
//! straight to a real upstream framework and through the gateway to the same
//! upstream, and compares what the upstream's own router executed with what
//! the gateway decided. A case that makes the upstream run a sensitive
//! handler through the gateway (no hold, no deny, no 400) fails, printed as
//! a line that reproduces it.
//!
//! Not a libtest harness, so that a longer run is one flag away:
//!   cargo test --test differential -- --cases 5000 --seed 7
//! (or STEPGATE_DIFF_CASES / STEPGATE_DIFF_SEED). `--frameworks all` adds
//! hypercorn, gunicorn and Rack to nginx, Flask and Express. `--only N`
//! replays one case of the seed. Every case found failing is added to
//! [`regressions`], which always runs first.

mod common;

use bytes::Bytes;
use common::upstreams::{Framework, Ran, RealUpstream};
use common::*;
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Cases per framework in the suite; a benchmark run passes `--cases`.
const DEFAULT_CASES: usize = 300;
const DEFAULT_SEED: u64 = 0x5eed_0014;

/// The handlers of tests/upstreams/* that must never run without step-up.
const SENSITIVE: [&str; 7] = [
    "user.delete",
    "sql.run",
    "transfer",
    "item.delete",
    "item.update",
    "legacy.delete",
    "admin.vhost",
];

/// The routes an admin would write to protect those handlers. Challenge
/// mode, so a held case answers at once.
const ROUTES: &str = "
  - name: admin-vhost
    match: { host: [admin.example], prefix: / }
    deny: true
  - name: delete-user
    action: user.delete
    match: { methods: [POST, DELETE], path: '/admin/users/[^/]+(/delete)?' }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: no-raw-sql
    match: { prefix: /admin/sql }
    deny: true
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    when: [ { json: { pointer: /amount, gt: 10000 } } ]
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: item-write
    action: item.write
    match: { methods: [POST, DELETE], path: '/api/items/[^/]+' }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: legacy-delete
    action: legacy.delete
    match: { methods: [GET], path: /legacy, query: { action: delete } }
    require: { methods: [token] }
    hold: { mode: challenge }
";

/// Every case comes from one address: the per-client hold budget would
/// otherwise answer 429 after a hundred holds and hide the decisions.
const LIMITS: &str = "limits: { max_holds: 1000000, max_holds_per_client: 1000000 }";

// ------------------------------------------------------------- generator

/// splitmix64: a fixed, dependency-free sequence, so a seed printed today
/// replays the same cases after any crate upgrade.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

#[derive(Debug, Clone)]
struct Case {
    proto: Proto,
    method: String,
    target: String,
    /// `None`: no Host header at all (h2: `:authority` localhost).
    host: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Case {
    fn h1(method: &str, target: &str, host: &str) -> Case {
        Case {
            proto: Proto::H1,
            method: method.into(),
            target: target.into(),
            host: Some(host.into()),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A line that pastes into [`regressions`].
    fn repro(&self) -> String {
        format!(
            "Case {{ proto: Proto::{:?}, method: {:?}.into(), target: {:?}.into(), host: {:?}, headers: vec!{:?}, body: {:?}.to_vec() }}",
            self.proto,
            self.method,
            self.target,
            self.host,
            self.headers,
            String::from_utf8_lossy(&self.body)
        )
        .replace("Some(\"", "Some(String::from(\"")
        .replace("\"),", "\")),")
    }

    /// The HTTP/1.1 bytes, with `session` as the cookie (so a hold answers
    /// `step_up_required`, never `no_session`).
    fn h1_bytes(&self, session: Option<&str>) -> Vec<u8> {
        let mut r = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if let Some(h) = &self.host {
            r.push_str(&format!("Host: {h}\r\n"));
        }
        for (k, v) in &self.headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(s) = session {
            r.push_str(&format!("Cookie: SESSIONID={s}\r\n"));
        }
        r.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut b = r.into_bytes();
        b.extend_from_slice(&self.body);
        b
    }
}

struct Base {
    method: &'static str,
    path: &'static str,
    query: &'static str,
    host: &'static str,
    body: &'static [u8],
}

const TRANSFER: &[u8] = br#"{"amount": 50000, "payee": "mallory"}"#;

const SMALL_TRANSFER: &[u8] = br#"{"amount": 5, "payee": "bob"}"#;

const BASES: [Base; 12] = [
    Base {
        method: "DELETE",
        path: "/admin/users/alice",
        query: "",
        host: "localhost",
        body: b"",
    },
    Base {
        method: "POST",
        path: "/admin/users/alice/delete",
        query: "",
        host: "localhost",
        body: b"",
    },
    Base {
        method: "GET",
        path: "/admin/sql/run",
        query: "",
        host: "localhost",
        body: b"",
    },
    Base {
        method: "POST",
        path: "/api/transfers",
        query: "",
        host: "localhost",
        body: TRANSFER,
    },
    Base {
        method: "DELETE",
        path: "/api/items/42",
        query: "",
        host: "localhost",
        body: b"",
    },
    Base {
        method: "POST",
        path: "/api/items/42",
        query: "",
        host: "localhost",
        body: TRANSFER,
    },
    Base {
        method: "GET",
        path: "/legacy",
        query: "action=delete",
        host: "localhost",
        body: b"",
    },
    Base {
        method: "GET",
        path: "/dashboard",
        query: "",
        host: "admin.example",
        body: b"",
    },
    // Benign controls: the gateway must pass these (and their variants
    // that stay benign) to the upstream.
    Base {
        method: "GET",
        path: "/dashboard",
        query: "",
        host: "localhost",
        body: b"",
    },
    Base {
        method: "GET",
        path: "/api/items/42",
        query: "",
        host: "localhost",
        body: b"",
    },
    Base {
        method: "GET",
        path: "/legacy",
        query: "action=view",
        host: "localhost",
        body: b"",
    },
    // Below the transfer route's condition: forwarded, and the upstream
    // moves 5.
    Base {
        method: "POST",
        path: "/api/transfers",
        query: "",
        host: "localhost",
        body: SMALL_TRANSFER,
    },
];

fn hex(b: u8, rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("%{b:02X}"),
        1 => format!("%{b:02x}"),
        // Mixed case, where the digits allow it.
        _ => {
            let s = format!("{b:02x}");
            let mut out = String::from("%");
            for (i, c) in s.chars().enumerate() {
                out.push(if i == 0 { c.to_ascii_uppercase() } else { c });
            }
            out
        }
    }
}

fn encode_all(s: &str, rng: &mut Rng) -> String {
    s.bytes().map(|b| hex(b, rng)).collect()
}

/// One segment of the path, changed one way.
fn mutate_segment(seg: &str, rng: &mut Rng) -> String {
    if seg.is_empty() {
        return seg.to_owned();
    }
    let chars: Vec<char> = seg.chars().collect();
    let i = rng.below(chars.len());
    let c = chars[i];
    let splice = |mid: String| -> String {
        let mut s: String = chars[..i].iter().collect();
        s.push_str(&mid);
        s.extend(chars[i + 1..].iter());
        s
    };
    match rng.below(12) {
        0 => seg.to_ascii_uppercase(),
        1 => splice(c.to_ascii_uppercase().to_string()),
        2 if c.is_ascii() => splice(hex(c as u8, rng)),
        // Overlong two-byte UTF-8 of an ASCII character.
        3 if c.is_ascii() => {
            let b = c as u8;
            let first = 0xC0 | (b >> 6);
            let second = 0x80 | (b & 0x3F);
            splice(format!("{}{}", hex(first, rng), hex(second, rng)))
        }
        // Double encoding.
        4 if c.is_ascii() => splice(format!("%25{}", &hex(c as u8, rng)[1..])),
        5 => format!("{seg};{}", rng.pick(&["jsessionid=1", "", "a=b,c", "x", "..", "%2e"])),
        // Look-alikes that some case folding maps onto ASCII.
        6 if c == 's' => splice("%C5%BF".into()),
        6 if c.is_ascii_lowercase() => {
            let full = char::from_u32(0xFF41 + (c as u32 - 'a' as u32)).unwrap_or(c);
            let mut buf = [0u8; 4];
            splice(encode_all(full.encode_utf8(&mut buf), rng))
        }
        7 => format!(
            "{seg}{}",
            rng.pick(&[".", "%20", "%00", "%09", "%0a", "%2e", "~", "%7e", "+"])
        ),
        8 => encode_all(seg, rng),
        9 => format!("{seg}{}", rng.pick(&["%2F", "%2f", "%5C", "\\", "%252F"])),
        10 => splice(c.to_ascii_lowercase().to_string()),
        _ => seg.to_ascii_lowercase(),
    }
}

fn mutate_path(path: &str, rng: &mut Rng) -> String {
    let mut segs: Vec<String> = path.split('/').skip(1).map(str::to_owned).collect();
    let mut seps: Vec<String> = vec!["/".into(); segs.len()];
    for _ in 0..rng.below(4) + 1 {
        match rng.below(6) {
            0..=2 => {
                let i = rng.below(segs.len());
                segs[i] = mutate_segment(&segs[i], rng);
            }
            3 => {
                let i = rng.below(seps.len());
                seps[i] = rng
                    .pick(&[
                        "//", "\\", "%2F", "%2f", "%5C", "%5c", "/./", "/%2e/", "/%2E/", "///", "/;/",
                    ])
                    .to_string();
            }
            4 => {
                let i = rng.below(segs.len() + 1);
                let extra = rng.pick(&[
                    ".",
                    "..",
                    "%2e",
                    "%2E%2e",
                    "x/..",
                    "x/%2e%2e",
                    "x%2F..",
                    "..;",
                    ".%00",
                    "%c0%ae%c0%ae",
                ]);
                segs.insert(i, extra.to_string());
                seps.insert(i, "/".into());
            }
            _ => {
                let tail = rng.pick(&[
                    "/", "/.", "/..", "//", "%20", ".", "#frag", "?", "%3F", "%23", ";", "/;x",
                ]);
                if let Some(last) = segs.last_mut() {
                    last.push_str(tail);
                }
            }
        }
    }
    let mut out = String::new();
    for (sep, seg) in seps.iter().zip(&segs) {
        out.push_str(sep);
        out.push_str(seg);
    }
    out
}

fn mutate_query(query: &str, rng: &mut Rng) -> String {
    let q = if query.is_empty() {
        String::new()
    } else {
        match rng.below(11) {
            0 => query.to_ascii_uppercase(),
            1 => query.replace("action", "ACTION"),
            2 => query.replace("delete", "del%65te"),
            3 => format!("action=view&{query}"),
            4 => format!("action=view;{query}"),
            5 => format!("{query}&action=view"),
            6 => query.replace('=', "%3D"),
            7 => format!("{query}%00"),
            8 => query.replace("action", "%61ction"),
            9 => rng
                .pick(&[
                    format!("x=1;{query}"),
                    query.replace("delete", "DELETE"),
                    format!("{query};x=1"),
                    format!("x=1&amp;{query}"),
                ])
                .clone(),
            _ => query.to_owned(),
        }
    };
    if rng.chance(10) {
        let m = rng.pick(&["_method=DELETE", "_method=delete", "_METHOD=DELETE", "_method=POST"]);
        return if q.is_empty() {
            m.to_string()
        } else {
            format!("{q}&{m}")
        };
    }
    q
}

fn generate(rng: &mut Rng) -> Case {
    let base = rng.pick(&BASES);
    let mut path = if rng.chance(85) {
        mutate_path(base.path, rng)
    } else {
        base.path.to_owned()
    };
    if !path.starts_with('/') && !path.starts_with('\\') {
        path.insert(0, '/');
    }
    let query = mutate_query(base.query, rng);
    let mut target = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };

    let mut host = Some(base.host.to_owned());
    if rng.chance(20) {
        host = rng
            .pick(&[
                Some("LOCALHOST"),
                Some("localhost:443"),
                Some("localhost."),
                Some("admin.example"),
                Some("ADMIN.Example"),
                Some("admin.example."),
                Some("admin.example:443"),
                Some("admin.example:8443"),
                Some("admin.example:abc"),
                Some("admin.example:0443"),
                Some("localhost:"),
                None,
            ])
            .map(str::to_owned);
    }
    if rng.chance(10) {
        let authority = rng.pick(&["localhost", "admin.example", "ADMIN.EXAMPLE:443", "admin.example."]);
        let scheme = rng.pick(&["https", "http", "HTTPS"]);
        target = format!("{scheme}://{authority}{target}");
    }

    let mut method = base.method.to_owned();
    let mut headers: Vec<(String, String)> = Vec::new();
    match rng.below(10) {
        0 => method = method.to_ascii_lowercase(),
        1 | 2 => {
            // An override carried by a harmless-looking method.
            let name = rng.pick(&[
                "X-HTTP-Method-Override",
                "X-HTTP-Method",
                "X-Method-Override",
                "x-http-method-override",
            ]);
            let value = rng.pick(&[base.method, "DELETE", "delete", "POST"]).to_string();
            headers.push((name.to_string(), value));
            method = rng.pick(&["POST", "GET"]).to_string();
        }
        3 => {
            method = rng
                .pick(&["PUT", "PATCH", "HEAD", "OPTIONS", "GET", "POST", "DELETE"])
                .to_string()
        }
        _ => {}
    }
    let mut body = base.body.to_vec();
    if !body.is_empty() || method == "POST" {
        let ctype = rng.pick(&[
            "application/json",
            "application/json",
            "APPLICATION/JSON",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
        ]);
        if ctype.ends_with("urlencoded") {
            body = rng
                .pick(&[
                    &b"amount=50000&payee=mallory"[..],
                    b"_method=DELETE",
                    b"amount=1&_method=delete",
                ])
                .to_vec();
        }
        // No type at all (Rack reads a form), two (Werkzeug keeps the
        // last), or one that `Connection` asks to strip after it was read.
        if !rng.chance(8) {
            headers.push(("Content-Type".into(), ctype.to_string()));
        }
        if rng.chance(5) {
            headers.push(("Content-Type".into(), "text/plain".into()));
        }
        if rng.chance(5) {
            headers.push((
                "Connection".into(),
                rng.pick(&["Content-Type", "close, content-type"]).to_string(),
            ));
        }
    }
    if rng.chance(8) {
        let name = rng.pick(&[
            "X-Original-URL",
            "X-Rewrite-URL",
            "X-Forwarded-Prefix",
            "X_HTTP_Method_Override",
        ]);
        headers.push((name.to_string(), "/admin/sql/run".into()));
    }
    if rng.chance(5) {
        headers.push(("Host".into(), rng.pick(&["admin.example", "localhost"]).to_string()));
    }
    let proto = if rng.chance(25) && target.starts_with('/') {
        Proto::H2
    } else {
        Proto::H1
    };
    Case {
        proto,
        method,
        target,
        host,
        headers,
        body,
    }
}

/// Cases that once failed (or that published bypasses used), replayed
/// before the generated ones on every framework.
fn regressions() -> Vec<Case> {
    vec![
        Case::h1("GET", "/ADMIN/SQL/run", "localhost"),
        Case::h1("GET", "/admin/sql/run", "admin.example:abc"),
        Case::h1("DELETE", "/admin/users/alice;x=1", "localhost"),
        Case::h1("DELETE", "/api/items/42/", "localhost"),
        Case::h1("GET", "/legacy?ACTION=delete", "localhost"),
        Case::h1("GET", "/legacy?action=view;action=delete", "localhost"),
        Case {
            headers: vec![("X-HTTP-Method-Override".into(), "DELETE".into())],
            ..Case::h1("POST", "/admin/users/alice", "localhost")
        },
        Case::h1("GET", "https://admin.example/dashboard", "localhost"),
        Case::h1("GET", "/legacy?x=1;action=delete", "localhost"),
        Case::h1("GET", "/legacy?action=DELETE", "localhost"),
        Case::h1("GET", "/admin/sql/run", "admin.example:0443"),
        Case {
            headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
            body: b"amount=50000&payee=mallory".to_vec(),
            ..Case::h1("POST", "/api/transfers", "localhost")
        },
        Case {
            body: b"amount=50000&payee=mallory".to_vec(),
            ..Case::h1("POST", "/api/transfers", "localhost")
        },
        Case {
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Content-Type".into(), "application/x-www-form-urlencoded".into()),
            ],
            body: b"amount=50000&payee=mallory".to_vec(),
            ..Case::h1("POST", "/api/transfers", "localhost")
        },
        Case {
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Connection".into(), "Content-Type".into()),
            ],
            body: br#"{"amount":50000,"payee":"mallory"}"#.to_vec(),
            ..Case::h1("POST", "/api/transfers", "localhost")
        },
    ]
}

// --------------------------------------------------------------- senders

/// Sends HTTP/1.1 bytes over `stream` and returns the status (0 when the
/// peer closed without answering).
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> u16 {
    if stream.write_all(bytes).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    // Connection: close: the peer ends the response by closing. A TLS
    // peer that closes without close_notify reads as an error: same end.
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
            _ => break,
        }
        if buf.len() > 1 << 20 {
            break;
        }
    }
    std::str::from_utf8(buf.get(9..12).unwrap_or(b"000"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn direct(addr: SocketAddr, c: &Case) -> u16 {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let mut plain = c.clone();
    plain.proto = Proto::H1;
    exchange(&mut s, &plain.h1_bytes(Some("direct"))).await
}

struct Through {
    gw: Gateway,
    h2: Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
}

impl Through {
    async fn send(&mut self, c: &Case, session: &str) -> u16 {
        if c.proto == Proto::H2 {
            if let Some(req) = h2_request(c, session) {
                return self.send_h2(req).await;
            }
        }
        let mut tls = tls_connect(self.gw.addr, &self.gw.pki, &[b"http/1.1"]).await;
        exchange(&mut tls, &c.h1_bytes(Some(session))).await
    }

    async fn send_h2(&mut self, req: http::Request<Full<Bytes>>) -> u16 {
        if self.h2.as_ref().is_none_or(|h| h.is_closed()) {
            self.h2 = Some(h2_client(self.gw.addr, &self.gw.pki).await);
        }
        let Some(h2) = self.h2.as_mut() else { return 0 };
        if h2.ready().await.is_err() {
            self.h2 = None;
            return 0;
        }
        match tokio::time::timeout(Duration::from_secs(20), h2.send_request(req)).await {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                status
            }
            // A stream reset or GOAWAY: nothing was answered; a fresh
            // connection serves the next case.
            _ => {
                self.h2 = None;
                0
            }
        }
    }
}

/// The case as HTTP/2: `:authority` from its Host; a second Host header
/// (added by the generator) is sent as `host`. None when the target is not
/// a URI hyper can send.
fn h2_request(c: &Case, session: &str) -> Option<http::Request<Full<Bytes>>> {
    let authority = c.host.clone().unwrap_or_else(|| "localhost".into());
    let uri: http::Uri = format!("https://{authority}{}", c.target).parse().ok()?;
    let method = http::Method::from_bytes(c.method.as_bytes()).ok()?;
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in &c.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b = b.header("cookie", format!("SESSIONID={session}"));
    b.body(Full::new(Bytes::from(c.body.clone()))).ok()
}

// ------------------------------------------------------------------ runs

#[derive(Default)]
struct Tally {
    cases: usize,
    direct_sensitive: usize,
    forwarded: usize,
    forwarded_sensitive_direct: usize,
    by_status: BTreeMap<u16, usize>,
    failures: Vec<String>,
}

/// What the upstream ran for the request just sent: the handlers of the
/// records added since `before`.
fn ran_since(up: &RealUpstream, before: usize) -> (usize, Vec<Ran>) {
    let ran = up.ran();
    let new = ran.get(before..).map(<[Ran]>::to_vec).unwrap_or_default();
    (ran.len(), new)
}

fn handlers(ran: &[Ran]) -> Vec<&str> {
    ran.iter().map(|r| r.handler.as_str()).collect()
}

/// A sensitive handler ran; for a transfer, only one above the route's
/// 10000 threshold as the upstream read the amount counts.
fn is_sensitive(ran: &[Ran], sent: &[u8]) -> bool {
    ran.iter()
        .any(|r| SENSITIVE.contains(&r.handler.as_str()) && (r.handler != "transfer" || moves_much(r, sent)))
}

/// What amount the upstream moved. An amount it read but cannot be taken
/// for a number counts as large; nginx reads no body, so there the bytes
/// sent stand in for what an application behind it would read.
fn moves_much(r: &Ran, sent: &[u8]) -> bool {
    match r.body.get("amount") {
        Some(serde_json::Value::Number(n)) => !matches!(n.as_f64(), Some(a) if a <= 10000.0),
        Some(serde_json::Value::String(s)) => !matches!(s.trim().parse::<f64>(), Ok(a) if a <= 10000.0),
        Some(_) => true,
        None if r.body.is_null() => sent.windows(5).any(|w| w == b"50000"),
        None => false,
    }
}

async fn run_case(up: &RealUpstream, through: &mut Through, c: &Case, label: &str, session: &str, t: &mut Tally) {
    let started = std::time::Instant::now();
    let (before, _) = ran_since(up, usize::MAX);
    let direct_status = direct(up.addr, c).await;
    let (mid, direct_ran) = ran_since(up, before);
    let status = through.send(c, session).await;
    let (_, via_ran) = ran_since(up, mid);
    if std::env::var_os("STEPGATE_DIFF_VERBOSE").is_some() {
        eprintln!(
            "{label}: direct {direct_status} {:?}, gateway {status} {:?} ({:?})\n    {}",
            handlers(&direct_ran),
            handlers(&via_ran),
            started.elapsed(),
            c.repro()
        );
    }

    t.cases += 1;
    *t.by_status.entry(status).or_default() += 1;
    let direct_hot = is_sensitive(&direct_ran, &c.body);
    t.direct_sensitive += usize::from(direct_hot);
    if !via_ran.is_empty() {
        t.forwarded += 1;
        t.forwarded_sensitive_direct += usize::from(direct_hot);
    }
    if is_sensitive(&via_ran, &c.body) {
        t.failures.push(format!(
            "{label}: {:?} ran {:?} (bodies {:?}) through the gateway (status {status}; direct: {direct_status} {:?})\n    {}",
            up.framework,
            handlers(&via_ran),
            via_ran.iter().map(|r| &r.body).collect::<Vec<_>>(),
            handlers(&direct_ran),
            c.repro()
        ));
    }
}

struct Options {
    cases: usize,
    seed: u64,
    only: Option<usize>,
    frameworks: Vec<Framework>,
}

fn options() -> Options {
    let env_num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut o = Options {
        cases: env_num("STEPGATE_DIFF_CASES").map_or(DEFAULT_CASES, |n| n as usize),
        seed: env_num("STEPGATE_DIFF_SEED").unwrap_or(DEFAULT_SEED),
        only: None,
        frameworks: vec![Framework::Nginx, Framework::Flask, Framework::Express],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    // libtest flags that scripts/test passes to every binary (such as
    // --test-threads=2) are ignored.
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--cases" => o.cases = value().parse().expect("--cases N"),
            "--seed" => o.seed = value().parse().expect("--seed N"),
            "--only" => o.only = Some(value().parse().expect("--only N")),
            "--frameworks" if value() == "all" => {
                o.frameworks
                    .extend([Framework::Hypercorn, Framework::FlaskGunicorn, Framework::Rack]);
            }
            _ => {}
        }
    }
    o
}

async fn run_framework(f: Framework, o: &Options) -> Tally {
    let up = RealUpstream::start(f).await;
    let gw = Gateway::start(up.addr, ROUTES, LIMITS).await;
    let mut through = Through { gw, h2: None };
    let mut t = Tally::default();

    // Controls first: each sensitive base, unmutated, runs its handler when
    // sent straight to the upstream (so the upstream's router is the one the
    // cases attack) and is refused through the gateway; each benign base is
    // forwarded and runs there (so the gateway is not refusing everything).
    for (i, b) in BASES.iter().enumerate() {
        let target = if b.query.is_empty() {
            b.path.to_owned()
        } else {
            format!("{}?{}", b.path, b.query)
        };
        let mut c = Case::h1(b.method, &target, b.host);
        c.body = b.body.to_vec();
        if !c.body.is_empty() {
            c.headers.push(("Content-Type".into(), "application/json".into()));
        }
        let (before, _) = ran_since(&up, usize::MAX);
        direct(up.addr, &c).await;
        let (mid, direct_ran) = ran_since(&up, before);
        let status = through.send(&c, &format!("control-{i}")).await;
        let (_, via_ran) = ran_since(&up, mid);
        if i < 8 {
            assert!(
                is_sensitive(&direct_ran, &c.body),
                "{f:?} control {target}: direct ran {:?}",
                handlers(&direct_ran)
            );
            assert!(
                via_ran.is_empty(),
                "{f:?} control {target}: through the gateway ran {:?}",
                handlers(&via_ran)
            );
            assert!(
                [401, 403].contains(&status),
                "{f:?} control {target}: gateway said {status}"
            );
        } else {
            assert_eq!(status, 200, "{f:?} benign control {target}");
            assert!(
                !via_ran.is_empty() && !is_sensitive(&via_ran, &c.body),
                "{f:?} benign {target}: {:?}",
                handlers(&via_ran)
            );
        }
    }

    for (i, c) in regressions().iter().enumerate() {
        run_case(
            &up,
            &mut through,
            c,
            &format!("regression {i}"),
            &format!("reg-{i}"),
            &mut t,
        )
        .await;
    }
    let mut rng = Rng(o.seed);
    for i in 0..o.cases {
        let c = generate(&mut rng);
        if o.only.is_some_and(|n| n != i) {
            continue;
        }
        let label = format!("seed {} case {i}", o.seed);
        run_case(&up, &mut through, &c, &label, &format!("diff-{i}"), &mut t).await;
    }
    through.h2 = None;
    through.gw.shutdown().await;
    t
}

fn main() {
    let o = options();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut failures = Vec::new();
    let mut total = 0;
    for &f in &o.frameworks {
        let t = rt.block_on(run_framework(f, &o));
        println!(
            "differential {}: {} cases (seed {}), {} ran a sensitive handler sent directly; through stepgate {} were forwarded ({} of those sensitive directly, rewritten to benign), 0 sensitive runs expected, {} found; statuses {:?}",
            f.name(),
            t.cases,
            o.seed,
            t.direct_sensitive,
            t.forwarded,
            t.forwarded_sensitive_direct,
            t.failures.len(),
            t.by_status
        );
        total += t.cases;
        // A generator that never reaches a sensitive handler, or a gateway
        // that refuses every case, would pass vacuously.
        if o.only.is_none() {
            assert!(
                t.direct_sensitive * 5 >= t.cases,
                "{f:?}: too few cases hit a sensitive handler directly"
            );
            assert!(
                t.forwarded * 10 >= t.cases,
                "{f:?}: the gateway forwarded almost nothing"
            );
        }
        failures.extend(t.failures);
    }
    println!("differential: {total} cases in all");
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("{f}");
        }
        panic!("{} case(s) ran a sensitive handler through the gateway", failures.len());
    }
    println!("test result: ok. 1 passed; 0 failed");
}
