//! A route's `when:` list: whether a request on a sensitive route steps up, and why.
//!
//! Step-up should answer rising risk at the moment of the action rather than fire on
//! every request. A route steps up when **at least one** of its conditions holds; a
//! route without `when:` always steps up. The conditions that fired come back as short,
//! stable reason strings (`outside_hours`, `json:/amount>10000`) for the challenge, the
//! audit trail and the assertion's `risk` claim. Reasons are built from configuration
//! only, never from request data, so they are safe to show and to sign.
//!
//! Evaluation is a pure function of (request facts, session facts, `now`): no I/O, no
//! clock reads.
//!
//! # Fail closed
//!
//! Every leaf evaluates to true, false or *unknown* (a JSON/form field that is missing
//! or has the wrong type, a header or form field sent more than once). Combinators use
//! three-valued (Kleene) logic, so a result is unknown only when it really depends on
//! what could not be read: `not(unknown)` is unknown, `all_of` with one false child is
//! false, `any_of` with one true child is true. At the top, unknown steps up. This keeps
//! `not: { json: { pointer: /approved, eq: true } }` from passing a body that simply
//! omits `approved`.
//!
//! # Reading values
//!
//! - Numbers compare as `f64`. A JSON string spelled as a JSON number (`"12000"`)
//!   counts as that number, and so does a form value; anything else (`"12,000"`,
//!   `" 12000"`, `"0x10"`, `"NaN"`) is the wrong type, so it steps up.
//! - `eq`/`in` compare against the configured scalar's type: a number against a number
//!   (or numeric string), a string against a string, a bool against a bool (or the
//!   strings `true`/`false`). Any other pairing is the wrong type.
//! - `regex` must match the whole string value (it is anchored).
//! - The body comes read already, by its declared type ([`super::body`]): a body the
//!   upstream could read differently (another type, a repeated key or field) never
//!   gets here, it is refused with 400. An empty body has no fields.
//! - An absent header reads as the empty string: `in` does not match it, `not_in`
//!   fires, a regex is matched against `""`. A header sent more than once is unknown.
//! - Client IPs written as IPv4-mapped IPv6 (`::ffff:10.1.2.3`) are treated as IPv4,
//!   in the request and in the configured networks alike.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName};
use ipnet::{IpNet, Ipv4Net};
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use regex::Regex;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use sha2::{Digest, Sha256};

mod eval;
mod parse;
#[cfg(test)]
mod tests;

use eval::canonical_ip;
pub use eval::{body_reads, evaluate, needs_body};
pub use parse::parse_when;

/// One parsed entry of a `when:` list (or of a combinator inside it).
#[derive(Debug, Clone)]
pub enum Condition {
    ClientIpIn(Vec<IpNet>),
    ClientIpNotIn(Vec<IpNet>),
    /// Fires outside the window [`from`, `to`) on `days`, in local time of `tz`.
    /// `from > to` is an overnight window that belongs to the day it starts on.
    /// `to` may be `(24, 0)` for the end of the day.
    OutsideHours {
        days: DaySet,
        from: (u8, u8),
        to: (u8, u8),
        tz: TimeZone,
    },
    Header {
        name: HeaderName,
        pred: StrPred,
    },
    /// `pointer` is an RFC 6901 JSON pointer into the request body.
    Json {
        pointer: String,
        pred: ValuePred,
    },
    /// `field` of an `application/x-www-form-urlencoded` body.
    Form {
        field: String,
        pred: ValuePred,
    },
    SessionAgeOver(Duration),
    NewDevice,
    AllOf(Vec<Condition>),
    AnyOf(Vec<Condition>),
    Not(Box<Condition>),
}

/// A set of weekdays, bit `i` for the Monday-based offset `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySet(u8);

impl DaySet {
    pub const ALL: DaySet = DaySet(0x7f);

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.to_monday_zero_offset()) != 0
    }

    /// `Mon-Fri`, `Mon,Wed,Sat`, `Fri-Mon` (ranges wrap over the weekend), full names,
    /// any case.
    pub fn parse(text: &str) -> Result<DaySet, String> {
        let mut bits = 0u8;
        for item in text.split(',') {
            let item = item.trim();
            let (first, last) = match item.split_once('-') {
                Some((a, b)) => (weekday(a.trim())?, weekday(b.trim())?),
                None => {
                    let d = weekday(item)?;
                    (d, d)
                }
            };
            let mut day = first;
            loop {
                bits |= 1 << day.to_monday_zero_offset();
                if day == last {
                    break;
                }
                day = day.next();
            }
        }
        Ok(DaySet(bits))
    }
}

fn weekday(name: &str) -> Result<Weekday, String> {
    const NAMES: [(&str, &str, Weekday); 7] = [
        ("mon", "monday", Weekday::Monday),
        ("tue", "tuesday", Weekday::Tuesday),
        ("wed", "wednesday", Weekday::Wednesday),
        ("thu", "thursday", Weekday::Thursday),
        ("fri", "friday", Weekday::Friday),
        ("sat", "saturday", Weekday::Saturday),
        ("sun", "sunday", Weekday::Sunday),
    ];
    let lower = name.to_ascii_lowercase();
    NAMES
        .iter()
        .find(|(short, long, _)| lower == *short || lower == *long)
        .map(|(_, _, day)| *day)
        .ok_or_else(|| format!("unknown day `{name}`; expected Mon, Tue, Wed, Thu, Fri, Sat or Sun"))
}

/// A predicate on a header value (a string).
#[derive(Debug, Clone)]
pub enum StrPred {
    /// Anchored: must match the whole value.
    Regex(Regex),
    In(Vec<String>),
    NotIn(Vec<String>),
}

/// A predicate on a JSON or form value.
#[derive(Debug, Clone)]
pub enum ValuePred {
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Eq(Scalar),
    In(Vec<Scalar>),
    /// Anchored: must match the whole string value.
    Regex(Regex),
}

/// A configured value for `eq` and `in`.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Number(f64),
    String(String),
    Bool(bool),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Number(n) => write!(f, "{n}"),
            Scalar::String(s) => f.write_str(s),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for ValuePred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValuePred::Gt(n) => write!(f, ">{n}"),
            ValuePred::Gte(n) => write!(f, ">={n}"),
            ValuePred::Lt(n) => write!(f, "<{n}"),
            ValuePred::Lte(n) => write!(f, "<={n}"),
            ValuePred::Eq(s) => write!(f, "={s}"),
            // Lists and patterns can be long; the route's config says which ones.
            ValuePred::In(_) => f.write_str(":in"),
            ValuePred::Regex(_) => f.write_str(":regex"),
        }
    }
}

/// What the request says about itself. `client_ip` is the peer address, or the
/// `X-Forwarded-For` address when the peer is a trusted proxy.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// `None`: unknown (an unparsable forwarding hop); every IP condition
    /// then treats it as outside every list.
    pub client_ip: Option<IpAddr>,
    pub headers: &'a HeaderMap,
    /// The body as the route reads it; only needed when a condition
    /// [`needs_body`](Condition::needs_body). `None` reads as no fields.
    pub body: Option<&'a super::body::Reading>,
}

/// What the gateway remembers about the session.
#[derive(Debug, Clone, Copy)]
pub struct SessionFacts {
    pub first_seen: SystemTime,
    /// The [`device_fingerprint`] differs from the one the session was first seen with.
    pub device_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Reasons are deduplicated, in `when:` order; empty when the route has no `when:`.
    StepUp {
        reasons: Vec<String>,
    },
    Pass,
}

/// A config error, located by a sub-path of the `when:` value (`[2].json.gt`), to be
/// prefixed with the route's own path by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondError {
    pub path: String,
    pub message: String,
}

impl CondError {
    fn new(path: &str, message: impl Into<String>) -> CondError {
        CondError {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CondError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for CondError {}

// ---------------------------------------------------------------------------------------
// Session facts
// ---------------------------------------------------------------------------------------

/// A short, stable id for "the same browser on the same network": the user agent plus
/// the client's /24 (IPv4) or /48 (IPv6), hashed so neither is stored. Compare it with
/// the one recorded when the session was first seen to fill [`SessionFacts::device_changed`].
pub fn device_fingerprint(user_agent: &str, ip: IpAddr) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(32);
    for byte in device_key(user_agent, ip) {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// [`device_fingerprint`] as 16 raw bytes, computed without allocating: it
/// runs for every new session the gateway sees.
pub fn device_key(user_agent: &str, ip: IpAddr) -> [u8; 16] {
    use fmt::Write as _;
    let mut hasher = Sha256::new();
    let mut buf = StackText::default();
    // Length-prefixed so that no user agent can imitate another (agent, prefix) pair.
    hasher.update(b"stepgate-device-v1\0");
    let _ = write!(buf, "{}:", user_agent.len());
    hasher.update(buf.take());
    hasher.update(user_agent.as_bytes());
    hasher.update(b"\0");
    let _ = match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            write!(buf, "{}/24", std::net::Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let [a, b, c, ..] = v6.segments();
            write!(buf, "{}/48", std::net::Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
        }
    };
    hasher.update(buf.take());
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    // 128 bits: plenty to tell devices apart, half the length in state.
    out.copy_from_slice(&digest[..16]);
    out
}

/// A few formatted bytes on the stack (a /48 prefix is at most 45 bytes).
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText { buf: [0; 64], len: 0 }
    }
}

impl StackText {
    fn take(&mut self) -> &[u8] {
        let n = std::mem::take(&mut self.len);
        &self.buf[..n]
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
