//! Micro-benchmarks of the per-request and per-proof hot paths.
//!
//! Run: `cargo bench --bench core` (about two minutes on two cores). The
//! short warm-up and measurement windows are set in code so a plain run
//! stays cheap; pass criterion's own flags to override them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderValue, Method};

use stepgate::assertion::{AssertionFacts, AssertionSigner};
use stepgate::hold::{Event, HoldEngine, HoldMeta, HoldState, Parked, Proof, Transition};
use stepgate::ids::{HoldId, Sid, Txn};
use stepgate::jose::jws;
use stepgate::policy::body::Reading;
use stepgate::policy::conditions::{self, RequestFacts, SessionFacts, Verdict};
use stepgate::policy::route_reader;
use stepgate::policy::{HoldMode, ProofMethod, Requirements};
use stepgate::route::canonical::canonicalize;
use stepgate::route::MatchRequest;
use stepgate::stepup::totp;

#[path = "support/jose.rs"]
mod jose_fixture;
use jose_fixture::{key, NOW};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn canonical(c: &mut Criterion) {
    let mut g = c.benchmark_group("canonical");
    // Typical: what a browser or API client actually sends. Hostile: the
    // inputs the canonicaliser exists for, accepted and rejected, plus a
    // long path that stresses the per-byte bookkeeping.
    let long_dots = format!("/{}admin/panel", "a/./b/../".repeat(200));
    let long_escapes = format!("/files/{}", "%7E%41%62c%3B".repeat(200));
    let cases: [(&str, &str); 9] = [
        ("typical/root", "/"),
        ("typical/api", "/api/v2/users/12345/orders?"),
        ("typical/static", "/static/js/app.3f9a1c.min.js"),
        ("hostile/dot_segments", "/public/./a/../../admin/users/42/delete"),
        ("hostile/encoded_mix", "/%61dmin/%7Euser/x%3Bjsessionid=1/;p=2/y"),
        ("hostile/encoded_slash_rejected", "/public/..%2fadmin"),
        ("hostile/double_encoding_rejected", "/admin/%252e%252e/x"),
        ("hostile/long_dots_4k", long_dots.as_str()),
        ("hostile/long_escapes_2k", long_escapes.as_str()),
    ];
    for (name, path) in cases {
        // The query marker is split off by the caller; mirror that.
        let path = path.trim_end_matches('?');
        g.throughput(Throughput::Bytes(path.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), path, |b, p| {
            b.iter(|| canonicalize(black_box(p)))
        });
    }
    g.finish();
}

/// A config with `n` regex routes shaped like a real admin surface: each
/// route has its own prefix, a capture group and a method list.
fn config_with_routes(n: usize) -> stepgate::config::Config {
    let mut text = String::from(
        "listen: 127.0.0.1:8443
tls: { cert: c.pem, key: k.pem }
upstream: http://127.0.0.1:8080
session: { cookie: SESSIONID }
assertion: { key: a.pem, issuer: stepgate, audience: legacy }
routes:
",
    );
    for i in 0..n {
        text.push_str(&format!(
            "  - name: r{i}\n    match: {{ methods: [POST, DELETE], path: '/svc{i}/(users|groups)/([^/]+)(/delete)?' }}\n"
        ));
    }
    stepgate::config::from_str(&text, "bench.yaml").expect("bench config is valid")
}

fn route_match(c: &mut Criterion) {
    let mut g = c.benchmark_group("match");
    let headers = HeaderMap::new();
    let post = [Method::POST];
    let get = [Method::GET];
    for n in [10usize, 100, 1000] {
        let config = config_with_routes(n);
        // Most traffic is pass-through: a miss is the common case.
        let miss = canonicalize("/static/js/app.js").unwrap();
        let last = canonicalize(&format!("/svc{}/users/42/delete", n - 1)).unwrap();
        let params = canonicalize(&format!("/svc{}/users/42;jsessionid=abc/delete", n / 2)).unwrap();
        let cases = [
            ("miss", &miss, &get[..]),
            ("hit_last", &last, &post[..]),
            ("hit_params", &params, &post[..]),
        ];
        for (what, path, methods) in cases {
            let req = MatchRequest {
                host: "app.example",
                methods,
                path,
                query: None,
                headers: &headers,
                workload: false,
            };
            let expect_hit = what != "miss";
            assert_eq!(config.routes.find(&req).route.is_some(), expect_hit, "{what}@{n}");
            g.bench_function(BenchmarkId::new(what, n), |b| {
                b.iter(|| config.routes.find(black_box(&req)))
            });
        }
    }
    g.finish();
}

/// A route's `when:` list, evaluated for one request. The five conditions of
/// the SPEC's example route; the passing request is the worst case, since
/// `any_of` must evaluate every leaf (JSON body parse included) to say no.
fn condition_eval(c: &mut Criterion) {
    let five = "
- client_ip_not_in: [10.0.0.0/8]
- outside_hours: { days: Mon-Fri, from: '08:00', to: '18:00', tz: Europe/Berlin }
- json: { pointer: /amount, gt: 10000 }
- session_age_over: 8h
- new_device: true
";
    let five = conditions::parse_when(&serde_yaml::from_str(five).unwrap()).unwrap();
    let ip_only = conditions::parse_when(&serde_yaml::from_str("- client_ip_not_in: [10.0.0.0/8]").unwrap()).unwrap();
    // Wednesday 2027-01-13 10:00 UTC: inside Berlin office hours.
    let now = at(1_799_834_400);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let small = br#"{"payee":"ACME GmbH","amount":1200,"currency":"EUR","memo":"invoice 2026-118"}"#;
    let large = br#"{"payee":"ACME GmbH","amount":25000,"currency":"EUR","memo":"invoice 2026-118"}"#;
    let young = SessionFacts {
        first_seen: at(1_799_834_400 - 600),
        device_changed: false,
    };
    // As the gateway does it: read the body by its declared type, then decide.
    let reader = route_reader(&[], &five).unwrap().unwrap();
    let decide = |conds: &[conditions::Condition], ip: [u8; 4], body: &[u8]| {
        let reading = Reading::read(&reader, &headers, body).unwrap();
        let facts = RequestFacts {
            client_ip: Some(IpAddr::V4(Ipv4Addr::from(ip))),
            headers: &headers,
            body: Some(&reading),
        };
        conditions::evaluate(conds, &facts, &young, now)
    };
    assert_eq!(decide(&five, [10, 1, 2, 3], small), Verdict::Pass);
    assert_eq!(decide(&ip_only, [10, 1, 2, 3], small), Verdict::Pass);
    assert!(matches!(decide(&five, [10, 1, 2, 3], large), Verdict::StepUp { .. }));
    let mut g = c.benchmark_group("conditions");
    g.bench_function("ip_only/pass", |b| {
        b.iter(|| decide(black_box(&ip_only), [10, 1, 2, 3], black_box(small)))
    });
    g.bench_function("ip_only/fire", |b| {
        b.iter(|| decide(black_box(&ip_only), [192, 0, 2, 7], black_box(small)))
    });
    g.bench_function("five/pass", |b| {
        b.iter(|| decide(black_box(&five), [10, 1, 2, 3], black_box(small)))
    });
    g.bench_function("five/fire_json", |b| {
        b.iter(|| decide(black_box(&five), [10, 1, 2, 3], black_box(large)))
    });
    g.finish();
}

fn facts() -> AssertionFacts {
    AssertionFacts {
        hold: Some(HoldId::random().as_str().to_owned()),
        ..jose_fixture::assertion_facts()
    }
}

fn assertion(c: &mut Criterion) {
    let k = key(7);
    let public = *k.verifying_key();
    let raw = k.clone();
    let signer = AssertionSigner::new(
        k,
        vec![],
        "stepgate".into(),
        "legacy-admin".into(),
        Duration::from_secs(60),
    )
    .unwrap();
    let facts = facts();
    let mut g = c.benchmark_group("assertion");
    g.bench_function("sign", |b| b.iter(|| signer.sign(black_box(&facts), at(NOW)).unwrap()));
    let token = signer.sign(&facts, at(NOW)).unwrap().token;
    g.bench_function("verify", |b| {
        b.iter(|| {
            let decoded = jws::decode(black_box(&token)).unwrap();
            jws::verify_es256(&decoded, &public).unwrap();
        })
    });
    g.bench_function("decode_only", |b| b.iter(|| jws::decode(black_box(&token)).unwrap()));

    // The same two ECDSA operations in the pure Rust p256 crate, which did
    // them before aws-lc (linked for TLS anyway) took over: the comparison
    // behind that choice.
    use base64::Engine as _;
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    public.verify(input.as_bytes(), &sig).unwrap();
    g.bench_function("sign_p256_crate", |b| {
        b.iter(|| -> p256::ecdsa::Signature { raw.sign(black_box(input.as_bytes())) })
    });
    g.bench_function("verify_p256_crate", |b| {
        b.iter(|| public.verify(black_box(input.as_bytes()), black_box(&sig)).unwrap())
    });
    g.finish();
}

fn token_verify(c: &mut Criterion) {
    let jose_fixture::TokenCheck {
        verifier,
        token,
        binding,
    } = jose_fixture::token_check(&key(3));
    verifier.verify(&token, &binding, at(NOW)).unwrap();
    c.bench_function("token/verify", |b| {
        b.iter(|| verifier.verify(black_box(&token), &binding, at(NOW)).unwrap())
    });
}

fn hold_meta(i: usize) -> HoldMeta {
    HoldMeta {
        id: HoldId::random(),
        route: "delete-user".into(),
        action: "user.delete".into(),
        label: "Delete a user".into(),
        sid: Sid(format!("{i:043}")),
        txn: Txn(format!("{:043}", i + 1)),
        method: Method::POST,
        host: "app.example:8443".into(),
        path_and_query: "/admin/users/42/delete?confirm=1".into(),
        mode: HoldMode::Auto,
        created: at(NOW),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        risk: Vec::new(),
        identity: None,
        display: Vec::new(),
        needs_approval: false,
        request_id: String::new(),
    }
}

fn parked() -> Parked {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("cookie", HeaderValue::from_static("SESSIONID=abc123"));
    Parked {
        headers,
        body: Bytes::from_static(&[b'x'; 200]),
    }
}

fn proof() -> Event {
    Event::ProofAccepted(Proof {
        method: ProofMethod::Totp,
        sub: "alice".into(),
        auth_time: NOW,
        amr: vec!["otp".into()],
        acr: "stepup".into(),
    })
}

fn hold(c: &mut Criterion) {
    // Released holds linger in the engine (so late callers learn the
    // outcome); sweep them away outside the timed region every batch, or
    // the map would grow for the whole run and skew later samples.
    const BATCH: u64 = 4096;
    c.bench_function("hold/create_release", |b| {
        b.iter_custom(|iters| {
            let engine = HoldEngine::new(100_000, 8);
            let state = HoldState::new(Requirements::default(), at(NOW + 120), 5, false);
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = BATCH.min(iters - done);
                // Inputs are built untimed: the gateway builds them while
                // reading the request, not inside the engine.
                let inputs: Vec<_> = (0..n).map(|i| (hold_meta(i as usize), parked())).collect();
                let start = Instant::now();
                for (meta, parked) in inputs {
                    let meta = engine.create(meta, state.clone(), parked, None).unwrap();
                    let applied = engine.apply(&meta.id, proof(), at(NOW + 1)).unwrap();
                    assert_eq!(applied.transition, Transition::Release);
                    black_box(applied.release);
                }
                timed += start.elapsed();
                engine.sweep(at(NOW + 10_000));
                done += n;
            }
            timed
        })
    });
}

/// What a browser sends on an ordinary page load.
fn browser_request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "app.example:8443"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("cookie", "SESSIONID=0123456789abcdef; theme=dark"),
        ("referer", "https://app.example:8443/admin/"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("upgrade-insecure-requests", "1"),
    ] {
        h.append(http::HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn upstream_response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("server", "nginx"),
        ("date", "Tue, 24 Nov 2026 05:00:00 GMT"),
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "1024"),
        ("connection", "keep-alive"),
        ("cache-control", "no-store"),
    ] {
        h.append(http::HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

/// The header work every pass-through request does besides matching.
fn hygiene(c: &mut Criterion) {
    use criterion::BatchSize;
    use stepgate::proxy::hygiene;
    let peer: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let mut g = c.benchmark_group("hygiene");
    g.bench_function("request_headers", |b| {
        b.iter_batched_ref(
            browser_request_headers,
            |h| {
                hygiene::check_header_names(h).unwrap();
                hygiene::strip_inbound(h, false, None);
                hygiene::set_forwarded(h, peer, false, "app.example:8443");
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("response_headers", |b| {
        b.iter_batched_ref(
            upstream_response_headers,
            hygiene::strip_outbound,
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn totp_verify(c: &mut Criterion) {
    let secret = totp::generate_secret();
    let now = NOW;
    let code = totp::code_at(&secret, now).unwrap();
    let early = totp::code_at(&secret, now - totp::STEP).unwrap();
    let mut g = c.benchmark_group("totp");
    g.bench_function("verify_current", |b| {
        b.iter(|| totp::verify(black_box(&secret), black_box(&code), now).unwrap())
    });
    // A code from the previous step exercises the skew window.
    g.bench_function("verify_previous_step", |b| {
        b.iter(|| totp::verify(black_box(&secret), black_box(&early), now).unwrap())
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = canonical, route_match, condition_eval, hygiene, assertion, token_verify, hold, totp_verify
}

/// `criterion_main!` plus one thing: the project's test command
/// (`cargo test --all-targets -- --test-threads=2`) hands libtest's flag to
/// this harness-less binary too, and criterion's parser rejects it. Run
/// again without it, which leaves criterion in its run-once test mode.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut kept = Vec::with_capacity(args.len());
    let mut skip_value = false;
    for a in &args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if a == "--test-threads" {
            skip_value = true;
        } else if !a.starts_with("--test-threads=") {
            kept.push(a.clone());
        }
    }
    if kept.len() != args.len() {
        let exe = std::env::current_exe().expect("path of the bench binary");
        let status = std::process::Command::new(exe)
            .args(&kept)
            .status()
            .expect("re-run the bench binary");
        std::process::exit(status.code().unwrap_or(1));
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
