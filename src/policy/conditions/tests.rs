//! Tables of (condition, facts, expected verdict). Every row pins an exact verdict and
//! exact reasons, so a wrong truth value, a lost reason or a leaked value fails it.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use super::eval::numeric_str;
use super::parse::{format_duration, parse_duration, MAX_DEPTH};
use super::*;
use crate::policy::body::{ReadError, Reading};
use crate::policy::route_reader;
use http::HeaderValue;

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

/// Everything a condition can look at, with a quiet default: an internal IP, a
/// Wednesday 11:00 in Berlin, a one-hour-old session on a known device.
#[derive(Clone)]
struct Facts {
    ip: &'static str,
    headers: Vec<(&'static str, &'static [u8])>,
    body: Option<&'static str>,
    content_type: Option<&'static str>,
    now: &'static str,
    first_seen: &'static str,
    device_changed: bool,
}

fn base() -> Facts {
    Facts {
        ip: "10.1.2.3",
        headers: Vec::new(),
        body: None,
        content_type: None,
        now: "2026-03-04T10:00:00Z",
        first_seen: "2026-03-04T09:00:00Z",
        device_changed: false,
    }
}

fn json(body: &'static str) -> Facts {
    Facts {
        body: Some(body),
        content_type: JSON,
        ..base()
    }
}

fn form(body: &'static str) -> Facts {
    Facts {
        body: Some(body),
        content_type: FORM,
        ..base()
    }
}

fn at(now: &'static str) -> Facts {
    Facts { now, ..base() }
}

fn ip(ip: &'static str) -> Facts {
    Facts { ip, ..base() }
}

fn header(value: &'static str) -> Facts {
    Facts {
        headers: vec![("cf-ipcountry", value.as_bytes())],
        ..base()
    }
}

fn time(rfc3339: &str) -> SystemTime {
    let ts: Timestamp = rfc3339.parse().expect("test timestamp");
    SystemTime::try_from(ts).expect("representable")
}

fn parse(yaml: &str) -> Vec<Condition> {
    let value: Yaml = serde_yaml::from_str(yaml).expect("test yaml");
    match parse_when(&value) {
        Ok(conds) => conds,
        Err(e) => panic!("{yaml}: {e}"),
    }
}

/// Reads the body as the gateway does for a route with these conditions, then
/// evaluates them.
fn run(conds: &[Condition], f: &Facts) -> Result<Verdict, ReadError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &f.headers {
        headers.append(*name, HeaderValue::from_bytes(value).expect("test header"));
    }
    if let Some(ct) = f.content_type {
        headers.append(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    let reading = match route_reader(&[], conds).expect("one body type") {
        Some(reader) => Some(Reading::read(&reader, &headers, f.body.unwrap_or_default().as_bytes())?),
        None => None,
    };
    let req = RequestFacts {
        client_ip: Some(f.ip.parse().expect("test ip")),
        headers: &headers,
        body: reading.as_ref(),
    };
    let session = SessionFacts {
        first_seen: time(f.first_seen),
        device_changed: f.device_changed,
    };
    Ok(evaluate(conds, &req, &session, time(f.now)))
}

/// Expected outcome of one row.
#[derive(Debug)]
enum Want {
    Pass,
    StepUp(&'static [&'static str]),
    /// The body is refused before any condition is evaluated (400).
    Refused(ReadError),
}
use ReadError::{Ambiguous, DuplicateKey, InvalidJson, NoType, WrongType};
use Want::{Pass, Refused, StepUp};

/// Runs every row and reports all mismatches at once, named by their row.
fn check(when: &str, rows: &[(&str, Facts, Want)]) {
    let conds = parse(when);
    let mut failures = Vec::new();
    for (name, facts, want) in rows {
        let got = run(&conds, facts);
        let ok = match (want, &got) {
            (Pass, Ok(Verdict::Pass)) => true,
            (StepUp(expected), Ok(Verdict::StepUp { reasons })) => reasons == expected,
            (Refused(expected), Err(e)) => e == expected,
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "when:\n{when}\n{}", failures.join("\n"));
}

#[test]
fn client_ip_not_in() {
    check(
        "- client_ip_not_in: [10.0.0.0/8, 192.168.1.7]",
        &[
            ("inside the network", ip("10.1.2.3"), Pass),
            ("the single address", ip("192.168.1.7"), Pass),
            (
                "next to the single address",
                ip("192.168.1.8"),
                StepUp(&["client_ip_not_in"]),
            ),
            ("IPv4-mapped inside", ip("::ffff:10.1.2.3"), Pass),
            (
                "IPv4-mapped outside",
                ip("::ffff:8.8.8.8"),
                StepUp(&["client_ip_not_in"]),
            ),
            ("IPv6 outside", ip("2001:db8::1"), StepUp(&["client_ip_not_in"])),
        ],
    );
}

#[test]
fn client_ip_in() {
    check(
        "- client_ip_in: [203.0.113.0/24, '2001:db8::/32']",
        &[
            ("inside", ip("203.0.113.9"), StepUp(&["client_ip_in"])),
            (
                "IPv4-mapped inside",
                ip("::ffff:203.0.113.9"),
                StepUp(&["client_ip_in"]),
            ),
            ("outside", ip("198.51.100.1"), Pass),
            ("IPv6 inside", ip("2001:db8::1"), StepUp(&["client_ip_in"])),
            ("IPv6 outside", ip("2001:db9::1"), Pass),
        ],
    );
    // Networks written in mapped form match plain IPv4 requests; `::1` is not 0.0.0.1.
    check(
        "- client_ip_in: ['::ffff:203.0.113.0/120', 0.0.0.0/8, 10.9.9.9/8]",
        &[
            (
                "mapped network, plain request",
                ip("203.0.113.5"),
                StepUp(&["client_ip_in"]),
            ),
            ("loopback v6 is not 0.0.0.1", ip("::1"), Pass),
            (
                "host bits in config are ignored",
                ip("10.200.0.1"),
                StepUp(&["client_ip_in"]),
            ),
        ],
    );
}

#[test]
fn outside_hours_day_window() {
    check(
        "- outside_hours: { days: Mon-Fri, from: '08:00', to: '18:00', tz: Europe/Berlin }",
        &[
            ("Wed 11:00 local", at("2026-03-04T10:00:00Z"), Pass),
            (
                "Wed 07:59 local",
                at("2026-03-04T06:59:00Z"),
                StepUp(&["outside_hours"]),
            ),
            ("Wed 08:00 local, from is inclusive", at("2026-03-04T07:00:00Z"), Pass),
            ("Wed 17:59 local", at("2026-03-04T16:59:59Z"), Pass),
            (
                "Wed 18:00 local, to is exclusive",
                at("2026-03-04T17:00:00Z"),
                StepUp(&["outside_hours"]),
            ),
            (
                "Sat 11:00 local",
                at("2026-03-07T10:00:00Z"),
                StepUp(&["outside_hours"]),
            ),
            // 23:30 UTC on Sunday is already Monday 00:30 in Berlin: the zone, not UTC, decides the day.
            (
                "Mon 00:30 local is not Sunday",
                at("2026-03-08T23:30:00Z"),
                StepUp(&["outside_hours"]),
            ),
        ],
    );
    check(
        "- outside_hours: { days: [Mon, sat], from: '20:00', to: '24:00', tz: UTC }",
        &[
            ("Mon 23:59", at("2026-03-09T23:59:00Z"), Pass),
            ("Tue 00:00", at("2026-03-10T00:00:00Z"), StepUp(&["outside_hours"])),
            ("Sat 20:00", at("2026-03-07T20:00:00Z"), Pass),
            ("Wed 21:00", at("2026-03-04T21:00:00Z"), StepUp(&["outside_hours"])),
        ],
    );
}

#[test]
fn outside_hours_overnight_window() {
    check(
        "- outside_hours: { days: Mon-Fri, from: '22:00', to: '06:00', tz: UTC }",
        &[
            ("Wed 23:00", at("2026-03-04T23:00:00Z"), Pass),
            ("Wed 05:59, Tuesday's shift", at("2026-03-04T05:59:00Z"), Pass),
            ("Wed 06:00", at("2026-03-04T06:00:00Z"), StepUp(&["outside_hours"])),
            ("Wed 12:00", at("2026-03-04T12:00:00Z"), StepUp(&["outside_hours"])),
            ("Wed 21:59", at("2026-03-04T21:59:00Z"), StepUp(&["outside_hours"])),
            ("Sat 02:00, Friday's shift", at("2026-03-07T02:00:00Z"), Pass),
            ("Sat 23:00", at("2026-03-07T23:00:00Z"), StepUp(&["outside_hours"])),
            (
                "Mon 02:00, Sunday's shift",
                at("2026-03-09T02:00:00Z"),
                StepUp(&["outside_hours"]),
            ),
        ],
    );
}

#[test]
fn outside_hours_across_dst_in_berlin() {
    // 2026-03-29 02:00 CET jumps to 03:00 CEST; 2026-10-25 03:00 CEST falls back to 02:00 CET.
    check(
        "- outside_hours: { from: '08:00', to: '18:00', tz: Europe/Berlin }",
        &[
            (
                "Sat before: 06:30Z is 07:30 CET",
                at("2026-03-28T06:30:00Z"),
                StepUp(&["outside_hours"]),
            ),
            ("DST day: 06:30Z is 08:30 CEST", at("2026-03-29T06:30:00Z"), Pass),
            (
                "DST day: 16:00Z is 18:00 CEST",
                at("2026-03-29T16:00:00Z"),
                StepUp(&["outside_hours"]),
            ),
        ],
    );
    // A window made of the hour that does not exist on the spring day, and of the hour
    // that happens twice in autumn: evaluating inside them must neither panic nor guess.
    check(
        "- outside_hours: { from: '02:00', to: '03:00', tz: Europe/Berlin }",
        &[
            (
                "spring 00:59Z is 01:59 CET",
                at("2026-03-29T00:59:00Z"),
                StepUp(&["outside_hours"]),
            ),
            (
                "spring 01:00Z is 03:00 CEST",
                at("2026-03-29T01:00:00Z"),
                StepUp(&["outside_hours"]),
            ),
            ("day before 01:30Z is 02:30 CET", at("2026-03-28T01:30:00Z"), Pass),
            ("autumn 00:30Z is 02:30 CEST", at("2026-10-25T00:30:00Z"), Pass),
            ("autumn 01:30Z is 02:30 CET", at("2026-10-25T01:30:00Z"), Pass),
            (
                "autumn 02:00Z is 03:00 CET",
                at("2026-10-25T02:00:00Z"),
                StepUp(&["outside_hours"]),
            ),
        ],
    );
}

#[test]
fn header_not_in() {
    let twice = Facts {
        headers: vec![("cf-ipcountry", b"DE"), ("cf-ipcountry", b"DE")],
        ..base()
    };
    let non_utf8 = Facts {
        headers: vec![("cf-ipcountry", b"D\xff")],
        ..base()
    };
    check(
        "- header: { name: CF-IPCountry, not_in: [DE, AT] }",
        &[
            ("listed", header("AT"), Pass),
            ("not listed", header("FR"), StepUp(&["header:cf-ipcountry"])),
            ("case matters", header("de"), StepUp(&["header:cf-ipcountry"])),
            (
                "absent is empty, so not in the list",
                base(),
                StepUp(&["header:cf-ipcountry"]),
            ),
            ("sent twice", twice, StepUp(&["header:cf-ipcountry ambiguous"])),
            ("not UTF-8", non_utf8, StepUp(&["header:cf-ipcountry unreadable"])),
        ],
    );
}

#[test]
fn header_in_and_regex() {
    check(
        "- header: { name: CF-IPCountry, in: [RU, KP] }",
        &[
            ("listed", header("KP"), StepUp(&["header:cf-ipcountry"])),
            ("not listed", header("DE"), Pass),
            ("absent matches nothing", base(), Pass),
        ],
    );
    check(
        "- header: { name: CF-IPCountry, regex: '[A-Z]{2}' }",
        &[
            ("whole value matches", header("DE"), StepUp(&["header:cf-ipcountry"])),
            ("anchored: longer value", header("DEU"), Pass),
            ("anchored: prefix", header("xDE"), Pass),
            ("absent is the empty string", base(), Pass),
        ],
    );
    check(
        "- header: { name: CF-IPCountry, regex: '.*' }",
        &[(
            "regex matches the empty string of an absent header",
            base(),
            StepUp(&["header:cf-ipcountry"]),
        )],
    );
}

#[test]
fn json_numbers_fail_closed() {
    check(
        "- json: { pointer: /amount, gt: 10000 }",
        &[
            ("above", json(r#"{"amount": 12000}"#), StepUp(&["json:/amount>10000"])),
            ("equal", json(r#"{"amount": 10000}"#), Pass),
            ("below", json(r#"{"amount": 9000.5}"#), Pass),
            (
                "numeric string above",
                json(r#"{"amount": "12000"}"#),
                StepUp(&["json:/amount>10000"]),
            ),
            ("numeric string below", json(r#"{"amount": "9000"}"#), Pass),
            (
                "exponent string",
                json(r#"{"amount": "1.2e4"}"#),
                StepUp(&["json:/amount>10000"]),
            ),
            ("missing", json(r#"{"other": 1}"#), StepUp(&["json:/amount missing"])),
            (
                "null",
                json(r#"{"amount": null}"#),
                StepUp(&["json:/amount wrong_type"]),
            ),
            (
                "bool",
                json(r#"{"amount": true}"#),
                StepUp(&["json:/amount wrong_type"]),
            ),
            (
                "object",
                json(r#"{"amount": {"value": 1}}"#),
                StepUp(&["json:/amount wrong_type"]),
            ),
            (
                "grouped digits",
                json(r#"{"amount": "12,000"}"#),
                StepUp(&["json:/amount wrong_type"]),
            ),
            (
                "hex string",
                json(r#"{"amount": "0x10"}"#),
                StepUp(&["json:/amount wrong_type"]),
            ),
            (
                "padded string",
                json(r#"{"amount": " 1"}"#),
                StepUp(&["json:/amount wrong_type"]),
            ),
            (
                "NaN string",
                json(r#"{"amount": "NaN"}"#),
                StepUp(&["json:/amount wrong_type"]),
            ),
            ("top level is an array", json("[1]"), StepUp(&["json:/amount missing"])),
            (
                "no body",
                Facts {
                    content_type: JSON,
                    ..base()
                },
                StepUp(&["json:/amount missing"]),
            ),
            ("blank body", json(" \n"), StepUp(&["json:/amount missing"])),
            // Read by its declared type only: a form is not JSON to this route.
            (
                "declared form",
                Facts {
                    content_type: FORM,
                    ..json(r#"{"amount": 1}"#)
                },
                Refused(WrongType),
            ),
            // Rack reads a body without a type as a form.
            (
                "no content type",
                Facts {
                    content_type: None,
                    ..json(r#"{"amount": 1}"#)
                },
                Refused(NoType),
            ),
            (
                "vendor +json type",
                Facts {
                    content_type: Some("application/vnd.api+json; charset=UTF-8"),
                    ..json(r#"{"amount": 1}"#)
                },
                Pass,
            ),
            ("truncated", json(r#"{"amount": "#), Refused(InvalidJson)),
            ("trailing garbage", json(r#"{"amount": 1} x"#), Refused(InvalidJson)),
            (
                "duplicate key, last small",
                json(r#"{"amount": 99999, "amount": 1}"#),
                Refused(DuplicateKey),
            ),
            (
                "duplicate key by case",
                json(r#"{"amount": 1, "Amount": 99999}"#),
                Refused(DuplicateKey),
            ),
            (
                "duplicate nested key",
                json(r#"{"amount": 1, "x": {"a": 1, "a": 2}}"#),
                Refused(DuplicateKey),
            ),
            (
                "raw control character",
                json("{\"amount\": \"\u{1}\"}"),
                Refused(InvalidJson),
            ),
        ],
    );
}

#[test]
fn json_comparisons() {
    check(
        "- json: { pointer: /n, gte: 500 }",
        &[
            ("equal", json(r#"{"n": 500}"#), StepUp(&["json:/n>=500"])),
            ("below", json(r#"{"n": 499.99}"#), Pass),
        ],
    );
    check(
        "- json: { pointer: /n, lt: 0.5 }",
        &[
            ("below", json(r#"{"n": 0.25}"#), StepUp(&["json:/n<0.5"])),
            ("equal", json(r#"{"n": 0.5}"#), Pass),
        ],
    );
    check(
        "- json: { pointer: /n, lte: -1 }",
        &[
            ("equal", json(r#"{"n": -1}"#), StepUp(&["json:/n<=-1"])),
            ("above", json(r#"{"n": "-0.5"}"#), Pass),
        ],
    );
    check(
        "- json: { pointer: /items/1/amount, gt: 5 }",
        &[
            (
                "array index",
                json(r#"{"items": [{"amount": 1}, {"amount": 6}]}"#),
                StepUp(&["json:/items/1/amount>5"]),
            ),
            (
                "index out of range",
                json(r#"{"items": [{"amount": 1}]}"#),
                StepUp(&["json:/items/1/amount missing"]),
            ),
        ],
    );
    check(
        "- json: { pointer: /a~1b, gt: 1 }",
        &[
            ("escaped slash", json(r#"{"a/b": 2}"#), StepUp(&["json:/a~1b>1"])),
            (
                "not a path",
                json(r#"{"a": {"b": 2}}"#),
                StepUp(&["json:/a~1b missing"]),
            ),
        ],
    );
}

#[test]
fn json_nested_pointer_regex() {
    check(
        "- json: { pointer: /payee/iban, regex: 'DE[0-9]{20}' }",
        &[
            (
                "matches",
                json(r#"{"payee": {"iban": "DE89370400440532013000"}}"#),
                StepUp(&["json:/payee/iban:regex"]),
            ),
            (
                "other country",
                json(r#"{"payee": {"iban": "GB29NWBK60161331926819"}}"#),
                Pass,
            ),
            (
                "anchored",
                json(r#"{"payee": {"iban": "xDE89370400440532013000"}}"#),
                Pass,
            ),
            (
                "parent is a string",
                json(r#"{"payee": "DE89370400440532013000"}"#),
                StepUp(&["json:/payee/iban missing"]),
            ),
            ("parent missing", json(r#"{}"#), StepUp(&["json:/payee/iban missing"])),
            (
                "number",
                json(r#"{"payee": {"iban": 5}}"#),
                StepUp(&["json:/payee/iban wrong_type"]),
            ),
        ],
    );
}

#[test]
fn json_eq_and_in() {
    check(
        "- json: { pointer: /approved, eq: false }",
        &[
            (
                "equal",
                json(r#"{"approved": false}"#),
                StepUp(&["json:/approved=false"]),
            ),
            ("different", json(r#"{"approved": true}"#), Pass),
            (
                "bool spelled as string",
                json(r#"{"approved": "false"}"#),
                StepUp(&["json:/approved=false"]),
            ),
            (
                "number",
                json(r#"{"approved": 0}"#),
                StepUp(&["json:/approved wrong_type"]),
            ),
        ],
    );
    check(
        "- json: { pointer: /currency, eq: EUR }",
        &[
            ("equal", json(r#"{"currency": "EUR"}"#), StepUp(&["json:/currency=EUR"])),
            ("case matters", json(r#"{"currency": "eur"}"#), Pass),
            (
                "number",
                json(r#"{"currency": 978}"#),
                StepUp(&["json:/currency wrong_type"]),
            ),
        ],
    );
    check(
        "- json: { pointer: /x, in: [USD, 2, true] }",
        &[
            ("string member", json(r#"{"x": "USD"}"#), StepUp(&["json:/x:in"])),
            ("number member", json(r#"{"x": 2.0}"#), StepUp(&["json:/x:in"])),
            ("numeric string member", json(r#"{"x": "2"}"#), StepUp(&["json:/x:in"])),
            ("bool member", json(r#"{"x": true}"#), StepUp(&["json:/x:in"])),
            ("not a member", json(r#"{"x": "EUR"}"#), Pass),
            (
                "comparable with none",
                json(r#"{"x": null}"#),
                StepUp(&["json:/x wrong_type"]),
            ),
        ],
    );
}

#[test]
fn form_fields() {
    let utf8_form = Facts {
        content_type: Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
        ..form("amount=700")
    };
    check(
        "- form: { field: amount, gte: 500 }",
        &[
            ("equal", form("note=x&amount=500"), StepUp(&["form:amount>=500"])),
            ("below", form("amount=499"), Pass),
            (
                "percent-encoded",
                form("amount=%35%30%30"),
                StepUp(&["form:amount>=500"]),
            ),
            (
                "media type parameters and case",
                utf8_form,
                StepUp(&["form:amount>=500"]),
            ),
            ("missing", form("note=x"), StepUp(&["form:amount missing"])),
            ("not a number", form("amount=lots"), StepUp(&["form:amount wrong_type"])),
            ("repeated", form("amount=1&amount=900"), Refused(Ambiguous)),
            ("repeated by case", form("amount=1&AMOUNT=900"), Refused(Ambiguous)),
            ("repeated after ;", form("amount=1;amount=900"), Refused(Ambiguous)),
            ("as an array", form("amount[]=900"), Refused(Ambiguous)),
            ("other case", form("Amount=900"), StepUp(&["form:amount>=500"])),
            (
                "no body",
                Facts {
                    content_type: FORM,
                    ..base()
                },
                StepUp(&["form:amount missing"]),
            ),
            // A JSON body whose string smuggles `&amount=1&` is not read as a form.
            (
                "JSON body",
                json(r#"{"amount": 900, "n": "&amount=1&"}"#),
                Refused(WrongType),
            ),
            (
                "no content type",
                Facts {
                    content_type: None,
                    ..form("amount=1")
                },
                Refused(NoType),
            ),
        ],
    );
    check(
        "- form: { field: confirm, eq: true }",
        &[
            ("bool from text", form("confirm=true"), StepUp(&["form:confirm=true"])),
            ("other text", form("confirm=yes"), StepUp(&["form:confirm wrong_type"])),
        ],
    );
    check(
        "- form: { field: to, regex: 'ext-.*' }",
        &[
            ("matches", form("to=ext-bob"), StepUp(&["form:to:regex"])),
            ("anchored", form("to=int-ext-bob"), Pass),
        ],
    );
}

#[test]
fn session_age_and_device() {
    check(
        "- session_age_over: 8h",
        &[
            (
                "older",
                Facts {
                    first_seen: "2026-03-04T01:59:59Z",
                    ..base()
                },
                StepUp(&["session_age_over:8h"]),
            ),
            (
                "exactly 8h",
                Facts {
                    first_seen: "2026-03-04T02:00:00Z",
                    ..base()
                },
                Pass,
            ),
            (
                "younger",
                Facts {
                    first_seen: "2026-03-04T03:00:00Z",
                    ..base()
                },
                Pass,
            ),
            (
                "first seen in the future",
                Facts {
                    first_seen: "2026-03-05T00:00:00Z",
                    ..base()
                },
                Pass,
            ),
        ],
    );
    check(
        "- session_age_over: 90m",
        &[(
            "label keeps the unit",
            Facts {
                first_seen: "2026-03-04T08:29:00Z",
                ..base()
            },
            StepUp(&["session_age_over:90m"]),
        )],
    );
    check(
        "- new_device: true",
        &[
            (
                "changed",
                Facts {
                    device_changed: true,
                    ..base()
                },
                StepUp(&["new_device"]),
            ),
            ("same", base(), Pass),
        ],
    );
}

#[test]
fn combinators() {
    let outside_changed = Facts {
        device_changed: true,
        ..ip("8.8.8.8")
    };
    check(
        "- all_of: [ { client_ip_not_in: [10.0.0.0/8] }, { new_device: true } ]",
        &[
            (
                "both",
                outside_changed.clone(),
                StepUp(&["client_ip_not_in", "new_device"]),
            ),
            ("one", ip("8.8.8.8"), Pass),
            ("none", base(), Pass),
        ],
    );
    check(
        "- any_of: [ { client_ip_not_in: [10.0.0.0/8] }, { new_device: true } ]",
        &[
            ("both", outside_changed, StepUp(&["client_ip_not_in", "new_device"])),
            (
                "one reports only the firing child",
                Facts {
                    device_changed: true,
                    ..base()
                },
                StepUp(&["new_device"]),
            ),
            ("none", base(), Pass),
        ],
    );
    check(
        "- not: { client_ip_in: [10.0.0.0/8] }",
        &[
            ("inner false", ip("8.8.8.8"), StepUp(&["not(client_ip_in)"])),
            ("inner true", base(), Pass),
        ],
    );
    check(
        "- not: { any_of: [ { new_device: true }, { session_age_over: 1d } ] }",
        &[(
            "label of a nested combinator",
            base(),
            StepUp(&["not(any_of(new_device,session_age_over:1d))"]),
        )],
    );
}

#[test]
fn not_keeps_unknowns_failing_closed() {
    check(
        "- not: { json: { pointer: /approved, eq: true } }",
        &[
            ("approved", json(r#"{"approved": true}"#), Pass),
            (
                "not approved",
                json(r#"{"approved": false}"#),
                StepUp(&["not(json:/approved=true)"]),
            ),
            ("missing is not a pass", json("{}"), StepUp(&["json:/approved missing"])),
            (
                "wrong type is not a pass",
                json(r#"{"approved": 1}"#),
                StepUp(&["json:/approved wrong_type"]),
            ),
        ],
    );
    check(
        "- not: { not: { json: { pointer: /approved, eq: true } } }",
        &[
            (
                "double negation of unknown",
                json("{}"),
                StepUp(&["json:/approved missing"]),
            ),
            (
                "double negation of true",
                json(r#"{"approved": true}"#),
                StepUp(&["not(not(json:/approved=true))"]),
            ),
        ],
    );
    // all_of with one false child is false whatever the unknown one says (and so is
    // its negation true); with only true and unknown children it stays unknown.
    let when = "- all_of: [ { new_device: true }, { json: { pointer: /amount, gt: 5 } } ]";
    check(
        when,
        &[
            ("false and unknown", json("{}"), Pass),
            (
                "true and unknown",
                Facts {
                    device_changed: true,
                    ..json("{}")
                },
                StepUp(&["new_device", "json:/amount missing"]),
            ),
        ],
    );
    check(
        &format!("- not:\n    {}", &when[2..]),
        &[
            (
                "not(false and unknown)",
                json("{}"),
                StepUp(&["not(all_of(new_device,json:/amount>5))"]),
            ),
            // Only the undecided part explains why the negation steps up.
            (
                "not(true and unknown)",
                Facts {
                    device_changed: true,
                    ..json("{}")
                },
                StepUp(&["json:/amount missing"]),
            ),
        ],
    );
    check(
        "- not: { any_of: [ { new_device: true }, { json: { pointer: /amount, gt: 5 } } ] }",
        &[
            (
                "not(true or unknown)",
                Facts {
                    device_changed: true,
                    ..json("{}")
                },
                Pass,
            ),
            ("not(false or unknown)", json("{}"), StepUp(&["json:/amount missing"])),
        ],
    );
}

#[test]
fn top_level_list_and_body_handling() {
    let when = "
- client_ip_not_in: [10.0.0.0/8]
- new_device: true
- any_of: [ { new_device: true } ]
- json: { pointer: /amount, gt: 10000 }
";
    check(
        when,
        &[
            ("nothing fires", json(r#"{"amount": 1}"#), Pass),
            (
                "reasons in order, deduplicated",
                Facts {
                    device_changed: true,
                    ..Facts {
                        ip: "8.8.8.8",
                        ..json(r#"{"amount": 20000}"#)
                    }
                },
                StepUp(&["client_ip_not_in", "new_device", "json:/amount>10000"]),
            ),
            (
                "invalid JSON wins over other reasons",
                Facts {
                    device_changed: true,
                    ..json("nope")
                },
                Refused(InvalidJson),
            ),
        ],
    );
    // Conditions that do not read the body never parse it.
    check("- new_device: true", &[("garbage body ignored", json("nope"), Pass)]);
    // No `when:` at all: always step up, with no reasons.
    let verdict = run(&[], &base());
    assert_eq!(verdict, Ok(Verdict::StepUp { reasons: Vec::new() }));
}

#[test]
fn needs_body_and_labels() {
    let conds = parse(
        "
- header: { name: X-Foo, in: [a] }
- not: { any_of: [ { form: { field: amount, gt: 1 } } ] }
- all_of: [ { json: { pointer: /a, lt: 1 } }, { new_device: true } ]
",
    );
    let needs: Vec<bool> = conds.iter().map(Condition::needs_body).collect();
    assert_eq!(needs, [false, true, true]);
    assert!(needs_body(&conds));
    assert!(!needs_body(&parse("- new_device: true\n- session_age_over: 1h")));
    let labels: Vec<String> = conds.iter().map(Condition::label).collect();
    assert_eq!(
        labels,
        [
            "header:x-foo",
            "not(any_of(form:amount>1))",
            "all_of(json:/a<1,new_device)"
        ]
    );
}

#[test]
fn parse_errors_carry_their_sub_path() {
    let cases: &[(&str, &str, &str)] = &[
        ("- bogus: 1", "[0].bogus", "unknown condition `bogus`"),
        (
            "- { new_device: true, session_age_over: 1h }",
            "[0]",
            "exactly one key, found 2 (new_device, session_age_over)",
        ),
        ("- {}", "[0]", "empty condition"),
        ("- new_device", "[0]", "expected a mapping"),
        (
            "- client_ip_in: [10.0.0.0/8, 10.0.0.0/33]",
            "[0].client_ip_in[1]",
            "not an IP address or CIDR",
        ),
        ("- client_ip_not_in: [banana]", "[0].client_ip_not_in[0]", "`banana`"),
        ("- client_ip_in: []", "[0].client_ip_in", "non-empty list"),
        (
            "- outside_hours: { from: '25:00', to: '18:00', tz: UTC }",
            "[0].outside_hours.from",
            "not a time of day",
        ),
        (
            "- outside_hours: { from: '24:00', to: '18:00', tz: UTC }",
            "[0].outside_hours.from",
            "not a time of day",
        ),
        (
            "- outside_hours: { from: '08:60', to: '18:00', tz: UTC }",
            "[0].outside_hours.from",
            "not a time of day",
        ),
        (
            "- outside_hours: { from: '0800', to: '18:00', tz: UTC }",
            "[0].outside_hours.from",
            "like \"08:00\"",
        ),
        (
            "- outside_hours: { from: '08:00', to: '8:00', tz: UTC }",
            "[0].outside_hours",
            "window is empty",
        ),
        (
            "- outside_hours: { from: '08:00', to: '18:00', tz: Mars/Olympus }",
            "[0].outside_hours.tz",
            "unknown time zone",
        ),
        (
            "- outside_hours: { from: '08:00', to: '18:00' }",
            "[0].outside_hours",
            "missing `tz`",
        ),
        (
            "- outside_hours: { days: Mon-Fry, from: '08:00', to: '18:00', tz: UTC }",
            "[0].outside_hours.days",
            "unknown day `Fry`",
        ),
        (
            "- outside_hours: { days: [Mon, 3], from: '08:00', to: '18:00', tz: UTC }",
            "[0].outside_hours.days[1]",
            "expected a string",
        ),
        (
            "- outside_hours: { from: '08:00', to: '18:00', tz: UTC, zone: x }",
            "[0].outside_hours.zone",
            "unknown key",
        ),
        (
            "- new_device: true\n- header: { name: X-Foo, regex: '(' }",
            "[1].header.regex",
            "invalid regex",
        ),
        (
            "- header: { name: X-Foo, regex: 'a)|(b' }",
            "[0].header.regex",
            "invalid regex",
        ),
        ("- header: { name: X_Foo, in: [a] }", "[0].header.name", "`_`"),
        (
            "- header: { name: 'X Foo', in: [a] }",
            "[0].header.name",
            "not a valid header name",
        ),
        ("- header: { name: X-Foo, in: [1] }", "[0].header.in[0]", "quote it"),
        (
            "- header: { name: X-Foo }",
            "[0].header",
            "expected one of regex, in, not_in",
        ),
        ("- json: { pointer: /a, gt: 1, lt: 5 }", "[0].json", "found gt and lt"),
        (
            "- json: { pointer: amount, gt: 1 }",
            "[0].json.pointer",
            "starts with `/`",
        ),
        (
            "- json: { pointer: /a~2, gt: 1 }",
            "[0].json.pointer",
            "followed by 0 or 1",
        ),
        ("- json: { pointer: /a, gt: big }", "[0].json.gt", "expected a number"),
        (
            "- json: { pointer: /a, in: [[1]] }",
            "[0].json.in[0]",
            "number, string or boolean",
        ),
        ("- json: { pointer: /a, foo: 1 }", "[0].json.foo", "unknown key"),
        ("- json: { gt: 1 }", "[0].json", "missing `pointer`"),
        ("- form: { field: '', gt: 1 }", "[0].form.field", "must not be empty"),
        (
            "- all_of: [ { new_device: true }, { json: { pointer: /a, gt: x } } ]",
            "[0].all_of[1].json.gt",
            "expected a number",
        ),
        ("- any_of: []", "[0].any_of", "at least one"),
        ("- not: { bogus: 1 }", "[0].not.bogus", "unknown condition"),
        ("- session_age_over: 8", "[0].session_age_over", "expected a string"),
        ("- session_age_over: 8y", "[0].session_age_over", "units ms, s, m, h, d"),
        ("- session_age_over: h", "[0].session_age_over", "like `8h`"),
        (
            "- session_age_over: 99999999999999999d",
            "[0].session_age_over",
            "too long",
        ),
        ("- new_device: false", "[0].new_device", "expected `true`"),
        ("[]", "", "omit `when`"),
        ("{ new_device: true }", "", "expected a list"),
    ];
    let mut failures = Vec::new();
    for (yaml, path, message) in cases {
        let value: Yaml = serde_yaml::from_str(yaml).expect("test yaml");
        match parse_when(&value) {
            Ok(conds) => failures.push(format!("{yaml}: parsed as {conds:?}")),
            Err(e) if e.path != *path || !e.message.contains(message) || e.message.contains('\n') => {
                failures.push(format!("{yaml}: want {path}: ...{message}..., got {e}"));
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deep_nesting_is_refused() {
    let mut yaml = "{ new_device: true }".to_owned();
    for _ in 0..MAX_DEPTH {
        yaml = format!("{{ not: {yaml} }}");
    }
    let err = parse_when(&serde_yaml::from_str(&format!("[{yaml}]")).expect("yaml")).expect_err("too deep");
    assert!(err.message.contains("nest deeper"), "{err}");
    assert!(err.path.starts_with("[0].not.not"), "{err}");
    // One level less is fine.
    let ok = (1..MAX_DEPTH).fold("{ new_device: true }".to_owned(), |inner, _| {
        format!("{{ not: {inner} }}")
    });
    assert!(parse_when(&serde_yaml::from_str(&format!("[{ok}]")).expect("yaml")).is_ok());
}

#[test]
fn error_display_prefixes_the_path() {
    assert_eq!(
        CondError::new("[2].json.gt", "expected a number").to_string(),
        "[2].json.gt: expected a number"
    );
    assert_eq!(CondError::new("", "expected a list").to_string(), "expected a list");
}

#[test]
fn days_parse_ranges_lists_and_wraps() {
    use Weekday::*;
    let all = [Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday];
    let cases: &[(&str, &[Weekday])] = &[
        ("Mon-Fri", &[Monday, Tuesday, Wednesday, Thursday, Friday]),
        ("mon,WED, saturday", &[Monday, Wednesday, Saturday]),
        ("Fri-Mon", &[Monday, Friday, Saturday, Sunday]),
        ("Sun", &[Sunday]),
        ("Mon-Sun", &all),
    ];
    for (text, want) in cases {
        let set = DaySet::parse(text).expect("days");
        let got: Vec<Weekday> = all.iter().copied().filter(|d| set.contains(*d)).collect();
        assert_eq!(&got, want, "{text}");
    }
    assert!(DaySet::parse("Mon-").is_err());
    assert!(DaySet::parse("").is_err());
}

#[test]
fn numeric_strings_follow_json_number_grammar() {
    let cases: &[(&str, Option<f64>)] = &[
        ("12000", Some(12000.0)),
        ("-1.5e3", Some(-1500.0)),
        ("0", Some(0.0)),
        ("0.25", Some(0.25)),
        ("2E+2", Some(200.0)),
        ("01", None),
        ("1.", None),
        (".5", None),
        ("+1", None),
        ("1e", None),
        ("-", None),
        ("", None),
        ("NaN", None),
        ("inf", None),
        (" 1", None),
        ("1 ", None),
        ("1e400", None),
        ("1_000", None),
    ];
    for (text, want) in cases {
        assert_eq!(numeric_str(text), *want, "{text:?}");
    }
}

#[test]
fn durations_format_in_their_largest_exact_unit() {
    let cases = [
        ("8h", "8h"),
        ("90m", "90m"),
        ("24h", "1d"),
        ("1500ms", "1500ms"),
        ("60s", "1m"),
        ("0s", "0ms"),
    ];
    for (text, want) in cases {
        assert_eq!(format_duration(parse_duration(text).expect("duration")), want, "{text}");
    }
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
}

#[test]
fn device_fingerprint_groups_by_network_and_agent() {
    let ua = "Mozilla/5.0 (X11; Linux x86_64)";
    let fp = |ua: &str, ip: &str| device_fingerprint(ua, ip.parse().expect("ip"));
    let a = fp(ua, "198.51.100.7");
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(a, fp(ua, "198.51.100.200"), "same /24");
    assert_eq!(a, fp(ua, "::ffff:198.51.100.9"), "IPv4-mapped is the same /24");
    assert_ne!(a, fp(ua, "198.51.101.7"), "other /24");
    assert_ne!(a, fp("curl/8.0", "198.51.100.7"), "other agent");
    assert_eq!(fp(ua, "2001:db8:1:2::1"), fp(ua, "2001:db8:1:ffff::9"), "same /48");
    assert_ne!(fp(ua, "2001:db8:1::1"), fp(ua, "2001:db8:2::1"), "other /48");
    // Stored per session, so its value must not drift between releases.
    assert_eq!(a, PINNED_FINGERPRINT);
}

/// sha256("stepgate-device-v1\0" "31:" UA "\0" "198.51.100.0/24"), first 16 bytes; checked with Python hashlib.
const PINNED_FINGERPRINT: &str = "e34d1f26fa9cd265b27d142c38002bf0";
