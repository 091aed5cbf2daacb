//! Entry points for the fuzz targets in `fuzz/` (a separate workspace run
//! with `cargo fuzz`), and for the stable-toolchain replay of their corpora
//! in `tests/fuzz_corpus.rs`. Each takes arbitrary bytes and must never
//! panic; where a property is cheap to check it is asserted here too, so a
//! fuzzer finds wrong answers as well as crashes.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::policy::body::{BodyKind, Reader, Reading};
use crate::route::canonical::{canonicalize, CanonicalPath};

/// A fuzz entry point: arbitrary bytes in, a panic on a broken property.
pub type Target = fn(&[u8]);

/// Every target, by the name its `fuzz/fuzz_targets/<name>.rs` and its
/// `fuzz/corpus/<name>/` directory use.
pub const TARGETS: [(&str, Target); 12] = [
    ("canonical_path", canonical_path),
    ("request_head", request_head),
    ("route_match", route_match),
    ("route_variants", route_variants),
    ("jws_decode", jws_decode),
    ("token_verify", token_verify),
    ("config_parse", config_parse),
    ("body_read", body_read),
    ("proof_body", proof_body),
    ("conditions", conditions),
    ("audit_verify", audit_verify),
    ("webauthn_client_data", webauthn_client_data),
];

/// The canonical path is idempotent on whatever it accepts, and what it
/// accepts holds nothing an upstream could read another way.
pub fn canonical_path(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(c) = canonicalize(s) {
        check_canonical(s, &c);
    }
}

fn check_canonical(input: &str, c: &CanonicalPath) {
    let again = canonicalize(c.as_str());
    assert_eq!(
        again.as_ref().ok(),
        Some(c),
        "canonicalize is not idempotent on {input:?}"
    );
    let p = c.as_str();
    assert!(p.starts_with('/'), "{input:?} -> {p:?}");
    assert!(!p.contains("//"), "{input:?} -> {p:?}");
    assert!(!p.contains('\\'), "{input:?} -> {p:?}");
    let lower = p.to_ascii_lowercase();
    for bad in ["%2f", "%5c", "%00"] {
        assert!(!lower.contains(bad), "{input:?} -> {p:?} keeps {bad}");
    }
    // An escaped '%' may stay (`/100%25`), but never as the start of a
    // second escape that another decoder would take once more.
    for (i, _) in lower.match_indices("%25") {
        let next = lower.as_bytes().get(i + 3..i + 5);
        assert!(
            !next.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
            "{input:?} -> {p:?} keeps a double encoding"
        );
    }
    for seg in c.match_form().split('/') {
        assert!(seg != "." && seg != "..", "{input:?} -> {p:?} keeps a dot segment");
    }
}

/// A request head's two attacker-chosen names: the path (first line) and
/// the `Host`/`:authority` (second line).
pub fn request_head(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (path, authority) = s.split_once('\n').unwrap_or((s, ""));
    if let Ok(c) = canonicalize(path) {
        check_canonical(path, &c);
    }
    if let Ok(host) = crate::route::authority::host_name(authority) {
        assert_eq!(host, host.to_ascii_lowercase(), "{authority:?}");
        assert!(!host.ends_with('.') && !host.contains(','), "{authority:?} -> {host:?}");
        if host.contains(':') {
            assert!(host.parse::<std::net::Ipv6Addr>().is_ok(), "{authority:?} -> {host:?}");
        } else {
            // The host form is a fixed point: matching it again changes nothing.
            assert_eq!(
                crate::route::authority::host_name(&host).as_deref(),
                Ok(host.as_str()),
                "{authority:?}"
            );
        }
    }
}

/// The fixed table `route_match` and `route_variants` use.
fn table() -> Option<&'static crate::config::Config> {
    static TABLE: OnceLock<Option<crate::config::Config>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            crate::config::from_str(
                "listen: 127.0.0.1:1\ntls: { cert: c, key: k }\nupstream: http://127.0.0.1:2\nsession: { cookie: S }\n\
                 assertion: { key: a, issuer: i, audience: a }\nroutes:\n\
                 - { name: a, match: { path: '/admin/users/([^/]+)(/delete)?', methods: [POST] } }\n\
                 - { name: b, match: { prefix: /ops, case_insensitive: true } }\n",
                "fuzz.yaml",
            )
            .ok()
        })
        .as_ref()
}

fn finds(path: &CanonicalPath, method: http::Method) -> Option<String> {
    let cfg = table()?;
    let headers = http::HeaderMap::new();
    cfg.routes
        .find(&crate::route::MatchRequest {
            host: "h",
            methods: &[method],
            path,
            query: None,
            headers: &headers,
            workload: false,
        })
        .governing()
        .map(|r| r.name.clone())
}

/// Route matching on arbitrary paths against a fixed table.
pub fn route_match(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(path) = canonicalize(s) else { return };
    let _ = finds(&path, http::Method::POST);
}

/// A variant of a sensitive path is never passed through: the bytes steer
/// rewrites that some upstream reads as the same resource (case, escapes of
/// unreserved characters, dot segments, repeated slashes, `;params`, a
/// trailing slash). Each variant must be refused as ambiguous or land on
/// the sensitive route.
pub fn route_variants(data: &[u8]) {
    const BASE: &str = "/admin/users/alice/delete";
    let mut path = BASE.to_owned();
    for pair in data.chunks(2) {
        let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0) as usize);
        path = rewrite(&path, op, arg);
        if path.len() > 512 {
            break;
        }
    }
    let Ok(c) = canonicalize(&path) else { return };
    let route = finds(&c, http::Method::POST);
    assert_eq!(
        route.as_deref(),
        Some("a"),
        "{path:?} (canonical {:?}) escaped the route",
        c.as_str()
    );
}

/// One meaning-preserving rewrite of `path` at a position picked by `arg`.
fn rewrite(path: &str, op: u8, arg: usize) -> String {
    let chars: Vec<char> = path.chars().collect();
    let i = arg % chars.len().max(1);
    let at = |s: &str| -> String {
        let mut out: String = chars[..i].iter().collect();
        out.push_str(s);
        out.extend(&chars[i..]);
        out
    };
    // Positions just after a '/', where a new segment may start.
    let slashes: Vec<usize> = chars
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == '/')
        .map(|(j, _)| j + 1)
        .collect();
    let seg_start = slashes.get(arg % slashes.len().max(1)).copied().unwrap_or(1);
    let at_segment = |s: &str| -> String {
        let mut out: String = chars[..seg_start].iter().collect();
        out.push_str(s);
        out.extend(&chars[seg_start..]);
        out
    };
    match op % 8 {
        0 => chars
            .iter()
            .enumerate()
            .map(|(j, c)| if j == i { c.to_ascii_uppercase() } else { *c })
            .collect(),
        1 => match chars.get(i) {
            Some(c) if c.is_ascii_alphanumeric() || "-._~".contains(*c) => {
                let mut out: String = chars[..i].iter().collect();
                if arg & 0x80 == 0 {
                    out.push_str(&format!("%{:02X}", *c as u32));
                } else {
                    out.push_str(&format!("%{:02x}", *c as u32));
                }
                out.extend(&chars[i + 1..]);
                out
            }
            _ => path.to_owned(),
        },
        2 => at_segment("./"),
        3 => at_segment("zz/../"),
        4 => at_segment("/"),
        5 => match chars.iter().skip(i).position(|c| *c == '/') {
            Some(off) => {
                let j = i + off;
                let mut out: String = chars[..j].iter().collect();
                out.push_str(";p=1");
                out.extend(&chars[j..]);
                out
            }
            None => format!("{path};p=1"),
        },
        6 if !path.ends_with('/') => format!("{path}/"),
        7 => at_segment("%2e/"),
        _ => at(""),
    }
}

/// A fixed ES256 key for the token targets; its JWKS is the issuer's.
fn fuzz_key() -> Option<p256::ecdsa::SigningKey> {
    p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).ok()
}

/// Compact JWS decoding and ES256 verification against a fixed key.
pub fn jws_decode(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(d) = crate::jose::jws::decode(s) {
        if let Some(k) = fuzz_key() {
            let _ = crate::jose::jws::verify_es256(&d, k.verifying_key());
        }
    }
}

/// The external step-up token validator with one trusted issuer. Without
/// the issuer's private key no input may verify.
pub fn token_verify(data: &[u8]) {
    use crate::stepup::token::{Binding, TokenIssuer, TokenVerifier};
    static VERIFIER: OnceLock<Option<TokenVerifier>> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| {
        // Another key than the one `jws_decode` knows: the fuzzer can
        // neither sign with it nor learn it from the inputs.
        let key = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).ok()?;
        let jwk = crate::jose::jwk::public_jwk(key.verifying_key());
        let keys = crate::jose::Jwks::parse(&serde_json::json!({ "keys": [jwk] }).to_string()).ok()?;
        Some(TokenVerifier::new(vec![TokenIssuer {
            issuer: "https://idp.fuzz".into(),
            audience: "stepgate".into(),
            keys,
        }]))
    });
    let (Some(v), Ok(s)) = (verifier, std::str::from_utf8(data)) else {
        return;
    };
    let binding = Binding {
        sid: "sid",
        txn: "txn",
        hold: Some("hold"),
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert!(
        v.verify(s, &binding, now).is_err(),
        "a token verified without the issuer's key: {s:?}"
    );
}

/// Config parsing with arbitrary text, routes included.
pub fn config_parse(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = crate::config::from_str(s, "fuzz.yaml");
}

/// The first byte picks the declared type and reader; the rest is the body.
fn read_body(data: &[u8]) -> Option<(Reader, Result<Reading, crate::policy::body::ReadError>)> {
    let (&sel, body) = data.split_first()?;
    let ctype = [
        "application/json",
        "application/x-www-form-urlencoded",
        "application/problem+json",
        "text/plain",
    ][usize::from(sel & 3)];
    let kind = if sel & 4 == 0 { BodyKind::Json } else { BodyKind::Form };
    let reader = Reader::new(kind, ["amount", "payee"]);
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
    let reading = Reading::read(&reader, &headers, body);
    Some((reader, reading))
}

/// The body readers (JSON and form) the routes' conditions and display
/// fields use.
pub fn body_read(data: &[u8]) {
    let Some((_, Ok(reading))) = read_body(data) else {
        return;
    };
    let _ = reading.pointer("/amount");
    let _ = reading.field("amount");
    let _ = reading.method_override();
}

/// The body of `complete` and of an approver's decision: the first byte
/// picks form or JSON, the rest is the body.
pub fn proof_body(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    crate::proxy::fuzz_proof_body(kind & 1 == 1, body);
}

/// The condition evaluator, failing closed: a transfer passes without
/// step-up only when its amount was read and is at most 10000.
pub fn conditions(data: &[u8]) {
    use crate::policy::conditions::{evaluate, parse_when, Condition, RequestFacts, SessionFacts, Verdict};
    type When = Option<Vec<Condition>>;
    static WHEN: OnceLock<(When, When)> = OnceLock::new();
    let parse = |text: &str| -> When {
        let yaml: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
        parse_when(&yaml).ok()
    };
    let (json_when, form_when) = WHEN.get_or_init(|| {
        (
            parse("- json: { pointer: /amount, gt: 10000 }"),
            parse("- form: { field: amount, gt: 10000 }"),
        )
    });
    let Some((reader, Ok(reading))) = read_body(data) else {
        return;
    };
    let when = match reader.kind {
        BodyKind::Json => json_when,
        BodyKind::Form => form_when,
    };
    let Some(when) = when else { return };
    let headers = http::HeaderMap::new();
    let req = RequestFacts {
        client_ip: None,
        headers: &headers,
        body: Some(&reading),
    };
    let session = SessionFacts {
        first_seen: SystemTime::UNIX_EPOCH,
        device_changed: false,
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if evaluate(when, &req, &session, now) == Verdict::Pass {
        let amount = reading
            .pointer("/amount")
            .and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .or_else(|| reading.field("amount").and_then(|s| s.parse().ok()));
        assert!(
            amount.is_some_and(|a: f64| a <= 10000.0),
            "passed without step-up: amount {amount:?} from {:?}",
            String::from_utf8_lossy(data)
        );
    }
}

/// The audit-line parser and hash-chain check of `audit verify`.
pub fn audit_verify(data: &[u8]) {
    let _ = crate::audit::verify::verify(&[("audit.jsonl".to_owned(), data.to_vec())], None);
}

/// The clientDataJSON lookup a WebAuthn `complete` starts with.
pub fn webauthn_client_data(data: &[u8]) {
    let _ = crate::stepup::webauthn::signed_challenge(data);
}

#[cfg(test)]
mod tests {
    /// A smoke run of every entry point over a few hostile inputs, so the
    /// targets stay compiling and panic-free even where cargo-fuzz is not
    /// installed.
    #[test]
    fn entry_points_survive_hostile_inputs() {
        let inputs: [&[u8]; 9] = [
            b"",
            b"/a/../../b",
            b"/%2e%2e/%252f/;x/..;/",
            b"e30.e30.",
            b"eyJhbGciOiJub25lIn0.e30.",
            b"routes: [ { name: x, match: { path: '(' } } ]",
            &[0xff, 0xfe, 0x00],
            b"listen: [\n",
            b"\x00{\"amount\": 1e400}",
        ];
        for i in inputs {
            for (_, target) in super::TARGETS {
                target(i);
            }
        }
    }

    /// The variant rewrites do reach the route (and not only the 400s):
    /// the plain, upper-cased, escaped, dotted and parameterised forms all
    /// canonicalize and match.
    #[test]
    fn route_variants_match_the_sensitive_route() {
        for ops in [
            &b""[..],
            b"\x00\x03",
            b"\x01\x02",
            b"\x02\x01\x05\x00",
            b"\x03\x02\x04\x01\x06\x00",
        ] {
            super::route_variants(ops);
        }
        let path = (0..6u8).fold("/admin/users/alice/delete".to_owned(), |p, op| {
            super::rewrite(&p, op, 3)
        });
        assert!(super::canonicalize(&path).is_ok(), "{path}");
    }
}
