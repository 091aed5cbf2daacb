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
//! - A JSON body with duplicate object keys (compared case-insensitively) is invalid
//!   JSON: parsers disagree on which duplicate wins, so the gateway and the upstream
//!   could read different amounts.
//! - An empty body has no fields; a body declared as a form (`Content-Type`
//!   `application/x-www-form-urlencoded` or `multipart/form-data`) is not read as JSON,
//!   so its JSON fields are missing. Form fields are read only from an urlencoded body,
//!   by name compared case-insensitively (some frameworks bind `Amount` to `amount`).
//! - An absent header reads as the empty string: `in` does not match it, `not_in`
//!   fires, a regex is matched against `""`. A header sent more than once is unknown.
//! - Client IPs written as IPv4-mapped IPv6 (`::ffff:10.1.2.3`) are treated as IPv4,
//!   in the request and in the configured networks alike.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

#[cfg(test)]
mod tests;

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
    pub client_ip: IpAddr,
    pub headers: &'a HeaderMap,
    /// The buffered body; only needed when a condition [`needs_body`](Condition::needs_body).
    pub body: Option<&'a [u8]>,
    pub content_type: Option<&'a str>,
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A `json` condition needs the body and it is not valid JSON (or has duplicate
    /// keys). The caller answers 400 `bad_request`.
    #[error("request body is not valid JSON")]
    InvalidJson,
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// Decides whether a request steps up. No conditions means the route always steps up.
pub fn evaluate(
    conds: &[Condition],
    req: &RequestFacts<'_>,
    session: &SessionFacts,
    now: SystemTime,
) -> Result<Verdict, EvalError> {
    if conds.is_empty() {
        return Ok(Verdict::StepUp { reasons: Vec::new() });
    }
    let mut ctx = Ctx {
        req,
        session,
        now,
        json: None,
        form: None,
    };
    let outcome = any_of(conds, &mut ctx)?;
    Ok(match outcome.truth {
        Truth::False => Verdict::Pass,
        Truth::True | Truth::Unknown => {
            let mut reasons: Vec<String> = Vec::with_capacity(outcome.reasons.len());
            for r in outcome.reasons {
                if !reasons.contains(&r.text) {
                    reasons.push(r.text);
                }
            }
            Verdict::StepUp { reasons }
        }
    })
}

/// Whether any of `conds` reads the body, i.e. whether the route must buffer it.
pub fn needs_body(conds: &[Condition]) -> bool {
    conds.iter().any(Condition::needs_body)
}

impl Condition {
    /// Only routes with body predicates buffer the body before deciding.
    pub fn needs_body(&self) -> bool {
        match self {
            Condition::Json { .. } | Condition::Form { .. } => true,
            Condition::AllOf(children) | Condition::AnyOf(children) => needs_body(children),
            Condition::Not(inner) => inner.needs_body(),
            _ => false,
        }
    }

    /// The reason reported when this condition fires (`json:/amount>10000`), and the
    /// text `not(...)` wraps.
    pub fn label(&self) -> String {
        match self {
            Condition::ClientIpIn(_) => "client_ip_in".to_owned(),
            Condition::ClientIpNotIn(_) => "client_ip_not_in".to_owned(),
            Condition::OutsideHours { .. } => "outside_hours".to_owned(),
            Condition::Header { name, .. } => format!("header:{name}"),
            Condition::Json { pointer, pred } => format!("json:{pointer}{pred}"),
            Condition::Form { field, pred } => format!("form:{field}{pred}"),
            Condition::SessionAgeOver(d) => format!("session_age_over:{}", format_duration(*d)),
            Condition::NewDevice => "new_device".to_owned(),
            Condition::AllOf(children) => format!("all_of({})", labels(children)),
            Condition::AnyOf(children) => format!("any_of({})", labels(children)),
            Condition::Not(inner) => format!("not({})", inner.label()),
        }
    }
}

fn labels(children: &[Condition]) -> String {
    children.iter().map(Condition::label).collect::<Vec<_>>().join(",")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    /// Could not be decided from the request; steps up at the top.
    Unknown,
}

/// A three-valued result and the reasons to report if it ends up stepping up.
struct Outcome {
    truth: Truth,
    reasons: Vec<Reason>,
}

struct Reason {
    text: String,
    /// Comes from a leaf that could not be decided. `not` keeps only these: the other
    /// reasons of an undecided child are not why the negation steps up.
    undecided: bool,
}

impl Reason {
    fn fired(text: String) -> Reason {
        Reason { text, undecided: false }
    }
}

impl Outcome {
    fn pass() -> Outcome {
        Outcome {
            truth: Truth::False,
            reasons: Vec::new(),
        }
    }
}

/// A leaf's answer before it is turned into an [`Outcome`]; `Unknown` says why.
enum Leaf {
    Yes,
    No,
    Unknown(&'static str),
}

impl From<bool> for Leaf {
    fn from(b: bool) -> Leaf {
        if b {
            Leaf::Yes
        } else {
            Leaf::No
        }
    }
}

/// Per-request state: the body is parsed at most once, and only if a condition asks.
struct Ctx<'r, 'a> {
    req: &'r RequestFacts<'a>,
    session: &'r SessionFacts,
    now: SystemTime,
    /// `None`: not parsed yet; `Some(None)`: the body has no JSON fields.
    json: Option<Option<Json>>,
    /// Lower-cased name, value.
    form: Option<Vec<(String, String)>>,
}

fn eval(cond: &Condition, ctx: &mut Ctx<'_, '_>) -> Result<Outcome, EvalError> {
    let leaf = match cond {
        Condition::AllOf(children) => return all_of(children, ctx),
        Condition::AnyOf(children) => return any_of(children, ctx),
        Condition::Not(inner) => {
            let inner_outcome = eval(inner, ctx)?;
            return Ok(match inner_outcome.truth {
                Truth::True => Outcome::pass(),
                Truth::False => Outcome {
                    truth: Truth::True,
                    reasons: vec![Reason::fired(cond.label())],
                },
                // Unknown stays unknown (and so steps up): negating "we could not read
                // the amount" must not turn it into a pass.
                Truth::Unknown => Outcome {
                    truth: Truth::Unknown,
                    reasons: inner_outcome.reasons.into_iter().filter(|r| r.undecided).collect(),
                },
            });
        }
        Condition::ClientIpIn(nets) => Leaf::from(ip_in(nets, ctx.req.client_ip)),
        Condition::ClientIpNotIn(nets) => Leaf::from(!ip_in(nets, ctx.req.client_ip)),
        Condition::OutsideHours { days, from, to, tz } => outside_hours(*days, *from, *to, tz, ctx.now),
        Condition::Header { name, pred } => header(ctx.req.headers, name, pred),
        Condition::Json { pointer, pred } => match json_doc(ctx)? {
            None => Leaf::Unknown("missing"),
            Some(doc) => match doc.pointer(pointer) {
                None => Leaf::Unknown("missing"),
                Some(value) => test_value(pred, Field::Json(value)),
            },
        },
        Condition::Form { field, pred } => {
            let wanted = field.to_lowercase();
            let mut found = form_pairs(ctx).iter().filter(|(k, _)| *k == wanted).map(|(_, v)| v);
            match (found.next(), found.next()) {
                (None, _) => Leaf::Unknown("missing"),
                (Some(value), None) => test_value(pred, Field::Text(value)),
                // Frameworks differ on which duplicate wins, so we cannot know which
                // one the upstream will act on.
                (Some(_), Some(_)) => Leaf::Unknown("ambiguous"),
            }
        }
        Condition::SessionAgeOver(max) => {
            // A first_seen in the future (clock skew between instances) is a new session.
            let age = ctx.now.duration_since(ctx.session.first_seen).unwrap_or(Duration::ZERO);
            Leaf::from(age > *max)
        }
        Condition::NewDevice => Leaf::from(ctx.session.device_changed),
    };
    Ok(match leaf {
        Leaf::Yes => Outcome {
            truth: Truth::True,
            reasons: vec![Reason::fired(cond.label())],
        },
        Leaf::No => Outcome::pass(),
        Leaf::Unknown(why) => Outcome {
            truth: Truth::Unknown,
            reasons: vec![Reason {
                text: unknown_label(cond, why),
                undecided: true,
            }],
        },
    })
}

/// `json:/amount missing`: names the condition's subject, not its predicate, since the
/// predicate was never applied.
fn unknown_label(cond: &Condition, why: &str) -> String {
    match cond {
        Condition::Header { name, .. } => format!("header:{name} {why}"),
        Condition::Json { pointer, .. } => format!("json:{pointer} {why}"),
        Condition::Form { field, .. } => format!("form:{field} {why}"),
        other => format!("{} {why}", other.label()),
    }
}

/// Every child is evaluated (no short-circuit) so that an invalid body is reported
/// the same way whatever the order of the conditions.
fn all_of(children: &[Condition], ctx: &mut Ctx<'_, '_>) -> Result<Outcome, EvalError> {
    let outcomes = children.iter().map(|c| eval(c, ctx)).collect::<Result<Vec<_>, _>>()?;
    if outcomes.iter().any(|o| o.truth == Truth::False) {
        return Ok(Outcome::pass());
    }
    let truth = if outcomes.iter().any(|o| o.truth == Truth::Unknown) {
        Truth::Unknown
    } else {
        Truth::True
    };
    Ok(Outcome {
        truth,
        reasons: outcomes.into_iter().flat_map(|o| o.reasons).collect(),
    })
}

/// Reports every child that fired or could not be decided: both are reasons to step up.
fn any_of(children: &[Condition], ctx: &mut Ctx<'_, '_>) -> Result<Outcome, EvalError> {
    let outcomes = children.iter().map(|c| eval(c, ctx)).collect::<Result<Vec<_>, _>>()?;
    let truth = if outcomes.iter().any(|o| o.truth == Truth::True) {
        Truth::True
    } else if outcomes.iter().any(|o| o.truth == Truth::Unknown) {
        Truth::Unknown
    } else {
        Truth::False
    };
    Ok(Outcome {
        truth,
        reasons: outcomes.into_iter().flat_map(|o| o.reasons).collect(),
    })
}

fn ip_in(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical_ip(ip);
    nets.iter().any(|net| net.contains(&ip))
}

/// `::ffff:a.b.c.d` is how dual-stack sockets report IPv4 peers; match it as IPv4.
/// Only the mapped form: the deprecated compatible form (`::a.b.c.d`) would turn `::1`
/// into `0.0.0.1`.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn outside_hours(days: DaySet, from: (u8, u8), to: (u8, u8), tz: &TimeZone, now: SystemTime) -> Leaf {
    // Only instant -> local conversion happens here, which is total: DST gaps and folds
    // only make civil -> instant ambiguous, so no transition can fail or panic.
    let Ok(ts) = Timestamp::try_from(now) else {
        return Leaf::Unknown("unknown_time");
    };
    let local = tz.to_datetime(ts);
    let minute = i32::from(local.hour()) * 60 + i32::from(local.minute());
    let (from, to) = (minutes(from), minutes(to));
    let day = local.weekday();
    let inside = if from < to {
        days.contains(day) && from <= minute && minute < to
    } else {
        // Overnight: the part after midnight belongs to the window that started the
        // evening before, so a Mon-Fri 22:00-06:00 shift covers Saturday 02:00.
        (minute >= from && days.contains(day)) || (minute < to && days.contains(day.previous()))
    };
    Leaf::from(!inside)
}

fn minutes((h, m): (u8, u8)) -> i32 {
    i32::from(h) * 60 + i32::from(m)
}

fn header(headers: &HeaderMap, name: &HeaderName, pred: &StrPred) -> Leaf {
    let mut values = headers.get_all(name).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => "",
        (Some(v), None) => match std::str::from_utf8(v.as_bytes()) {
            Ok(s) => s,
            Err(_) => return Leaf::Unknown("unreadable"),
        },
        // Proxies and frameworks variously take the first, the last or the joined list.
        (Some(_), Some(_)) => return Leaf::Unknown("ambiguous"),
    };
    Leaf::from(match pred {
        StrPred::Regex(re) => re.is_match(value),
        StrPred::In(list) => list.iter().any(|s| s == value),
        StrPred::NotIn(list) => !list.iter().any(|s| s == value),
    })
}

/// A request value as found: JSON keeps its type, form values are always text.
#[derive(Clone, Copy)]
enum Field<'v> {
    Json(&'v Json),
    Text(&'v str),
}

impl<'v> Field<'v> {
    fn as_str(self) -> Option<&'v str> {
        match self {
            Field::Json(Json::String(s)) => Some(s),
            Field::Text(s) => Some(s),
            Field::Json(_) => None,
        }
    }

    fn as_number(self) -> Option<f64> {
        match self {
            Field::Json(Json::Number(n)) => n.as_f64(),
            other => other.as_str().and_then(numeric_str),
        }
    }

    fn as_bool(self) -> Option<bool> {
        match self {
            Field::Json(Json::Bool(b)) => Some(*b),
            other => match other.as_str() {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            },
        }
    }

    /// `None` when the types cannot be compared.
    fn equals(self, want: &Scalar) -> Option<bool> {
        match want {
            Scalar::Number(n) => self.as_number().map(|x| x == *n),
            Scalar::String(s) => self.as_str().map(|x| x == s),
            Scalar::Bool(b) => self.as_bool().map(|x| x == *b),
        }
    }
}

fn test_value(pred: &ValuePred, value: Field<'_>) -> Leaf {
    let compare = |op: &dyn Fn(f64) -> bool| match value.as_number() {
        Some(x) => Leaf::from(op(x)),
        None => Leaf::Unknown("wrong_type"),
    };
    match pred {
        ValuePred::Gt(n) => compare(&|x| x > *n),
        ValuePred::Gte(n) => compare(&|x| x >= *n),
        ValuePred::Lt(n) => compare(&|x| x < *n),
        ValuePred::Lte(n) => compare(&|x| x <= *n),
        ValuePred::Eq(want) => value.equals(want).map_or(Leaf::Unknown("wrong_type"), Leaf::from),
        ValuePred::In(list) => {
            let answers: Vec<Option<bool>> = list.iter().map(|want| value.equals(want)).collect();
            if answers.contains(&Some(true)) {
                Leaf::Yes
            } else if answers.iter().all(Option::is_none) {
                Leaf::Unknown("wrong_type")
            } else {
                Leaf::No
            }
        }
        ValuePred::Regex(re) => value
            .as_str()
            .map_or(Leaf::Unknown("wrong_type"), |s| Leaf::from(re.is_match(s))),
    }
}

/// A string counts as a number only when spelled as a JSON number: upstreams disagree
/// about `"0x10"`, `" 12"`, `"1_000"` or `"NaN"`, so those are the wrong type (and fire).
fn numeric_str(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let int_len = digits(&mut i);
    if int_len == 0 || (int_len > 1 && b.get(int_start) == Some(&b'0')) {
        return None;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// The lower-cased media type, without parameters.
fn media_type(content_type: Option<&str>) -> Option<String> {
    content_type.map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

const URLENCODED: &str = "application/x-www-form-urlencoded";

fn json_doc<'c>(ctx: &'c mut Ctx<'_, '_>) -> Result<Option<&'c Json>, EvalError> {
    if ctx.json.is_none() {
        let declared_form = matches!(
            media_type(ctx.req.content_type).as_deref(),
            Some(URLENCODED | "multipart/form-data")
        );
        let body = ctx.req.body.unwrap_or_default();
        let parsed = if declared_form || body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(parse_strict_json(body)?)
        };
        ctx.json = Some(parsed);
    }
    Ok(ctx.json.as_ref().and_then(Option::as_ref))
}

fn form_pairs<'c>(ctx: &'c mut Ctx<'_, '_>) -> &'c [(String, String)] {
    ctx.form.get_or_insert_with(|| {
        // Reading a JSON body as urlencoded would find fields in its string values
        // (`{"note":"&amount=1&"}`), so only a declared form body has form fields.
        if media_type(ctx.req.content_type).as_deref() != Some(URLENCODED) {
            return Vec::new();
        }
        form_urlencoded::parse(ctx.req.body.unwrap_or_default())
            .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
            .collect()
    })
}

fn parse_strict_json(body: &[u8]) -> Result<Json, EvalError> {
    use serde::Deserialize as _;
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = StrictJson::deserialize(&mut de).map_err(|_| EvalError::InvalidJson)?;
    de.end().map_err(|_| EvalError::InvalidJson)?;
    Ok(value.0)
}

/// A JSON value that rejects objects with duplicate keys (compared case-insensitively),
/// which `serde_json::Value` would silently resolve to the last one.
struct StrictJson(Json);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = serde_json::Map::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.to_lowercase()) {
                // The key itself stays out of the error: it is request data.
                return Err(serde::de::Error::custom("duplicate key"));
            }
            let StrictJson(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Json::Object(object))
    }
}

// ---------------------------------------------------------------------------------------
// Session facts
// ---------------------------------------------------------------------------------------

/// A short, stable id for "the same browser on the same network": the user agent plus
/// the client's /24 (IPv4) or /48 (IPv6), hashed so neither is stored. Compare it with
/// the one recorded when the session was first seen to fill [`SessionFacts::device_changed`].
pub fn device_fingerprint(user_agent: &str, ip: IpAddr) -> String {
    use fmt::Write as _;
    let prefix = match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{}/24", Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let [a, b, c, ..] = v6.segments();
            format!("{}/48", Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
        }
    };
    let mut hasher = Sha256::new();
    // Length-prefixed so that no user agent can imitate another (agent, prefix) pair.
    hasher.update(b"stepgate-device-v1\0");
    hasher.update(user_agent.len().to_string().as_bytes());
    hasher.update(b":");
    hasher.update(user_agent.as_bytes());
    hasher.update(b"\0");
    hasher.update(prefix.as_bytes());
    let digest = hasher.finalize();
    let mut out = String::with_capacity(32);
    // 128 bits: plenty to tell devices apart, half the length in logs and state.
    for byte in digest.iter().take(16) {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

const CONDITION_KEYS: &str = "client_ip_in, client_ip_not_in, outside_hours, header, json, form, \
                              session_age_over, new_device, all_of, any_of, not";
const VALUE_PREDS: [&str; 7] = ["gt", "gte", "lt", "lte", "eq", "in", "regex"];
const STR_PREDS: [&str; 3] = ["regex", "in", "not_in"];
/// Deep enough for any policy a person writes; shallow enough that evaluation's
/// recursion cannot exhaust the stack.
const MAX_DEPTH: usize = 16;

/// Parses the YAML under `when:`. An empty list is an error: it would never step up,
/// which is what omitting the route does, not what omitting `when:` does.
pub fn parse_when(value: &Yaml) -> Result<Vec<Condition>, CondError> {
    let items = match value {
        Yaml::Sequence(items) => items,
        other => {
            return Err(CondError::new(
                "",
                format!("expected a list of conditions, found {}", kind(other)),
            ))
        }
    };
    if items.is_empty() {
        return Err(CondError::new(
            "",
            "an empty `when` list never steps up; omit `when` to always step up",
        ));
    }
    parse_list(items, "", 1)
}

fn parse_list(items: &[Yaml], path: &str, depth: usize) -> Result<Vec<Condition>, CondError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_condition(item, &format!("{path}[{i}]"), depth))
        .collect()
}

fn parse_condition(value: &Yaml, path: &str, depth: usize) -> Result<Condition, CondError> {
    if depth > MAX_DEPTH {
        return Err(CondError::new(
            path,
            format!("conditions nest deeper than {MAX_DEPTH} levels"),
        ));
    }
    let map = mapping(value, path)?;
    let mut entries = map.iter();
    let (key, value) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        (None, _) => {
            return Err(CondError::new(
                path,
                format!("empty condition; expected one of {CONDITION_KEYS}"),
            ))
        }
        (Some(_), Some(_)) => {
            let keys: Vec<String> = map.keys().map(key_text).collect();
            return Err(CondError::new(
                path,
                format!(
                    "a condition has exactly one key, found {} ({}); combine them with all_of or any_of",
                    keys.len(),
                    keys.join(", ")
                ),
            ));
        }
    };
    let key = key_str(key, path)?;
    let path = format!("{path}.{key}");
    let path = path.as_str();
    Ok(match key {
        "client_ip_in" => Condition::ClientIpIn(parse_nets(value, path)?),
        "client_ip_not_in" => Condition::ClientIpNotIn(parse_nets(value, path)?),
        "outside_hours" => parse_outside_hours(value, path)?,
        "header" => parse_header(value, path)?,
        "json" => {
            let fields = fields(value, path, &["pointer"], &VALUE_PREDS)?;
            let pointer = string(required(&fields, "pointer", path)?, &format!("{path}.pointer"))?;
            check_pointer(pointer, &format!("{path}.pointer"))?;
            Condition::Json {
                pointer: pointer.to_owned(),
                pred: parse_value_pred(&fields, path)?,
            }
        }
        "form" => {
            let fields = fields(value, path, &["field"], &VALUE_PREDS)?;
            let field = string(required(&fields, "field", path)?, &format!("{path}.field"))?;
            if field.is_empty() {
                return Err(CondError::new(&format!("{path}.field"), "must not be empty"));
            }
            Condition::Form {
                field: field.to_owned(),
                pred: parse_value_pred(&fields, path)?,
            }
        }
        "session_age_over" => {
            Condition::SessionAgeOver(parse_duration(string(value, path)?).map_err(|m| CondError::new(path, m))?)
        }
        "new_device" => match value {
            Yaml::Bool(true) => Condition::NewDevice,
            // `false` would be a condition that never fires: almost certainly a mistake.
            _ => {
                return Err(CondError::new(
                    path,
                    "expected `true` (omit the condition to ignore devices)",
                ))
            }
        },
        "all_of" => Condition::AllOf(parse_children(value, path, depth)?),
        "any_of" => Condition::AnyOf(parse_children(value, path, depth)?),
        "not" => Condition::Not(Box::new(parse_condition(value, path, depth + 1)?)),
        other => {
            return Err(CondError::new(
                path,
                format!("unknown condition `{other}`; expected one of {CONDITION_KEYS}"),
            ))
        }
    })
}

fn parse_children(value: &Yaml, path: &str, depth: usize) -> Result<Vec<Condition>, CondError> {
    match value {
        Yaml::Sequence(items) if !items.is_empty() => parse_list(items, path, depth + 1),
        Yaml::Sequence(_) => Err(CondError::new(path, "expected at least one condition")),
        other => Err(CondError::new(
            path,
            format!("expected a list of conditions, found {}", kind(other)),
        )),
    }
}

fn parse_nets(value: &Yaml, path: &str) -> Result<Vec<IpNet>, CondError> {
    let items = non_empty_list(value, path)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            let text = string(item, &item_path)?.trim();
            let net = match text.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match text.parse::<IpAddr>() {
                    Ok(addr) => IpNet::from(addr),
                    Err(_) => {
                        return Err(CondError::new(
                            &item_path,
                            format!("`{text}` is not an IP address or CIDR network"),
                        ))
                    }
                },
            };
            Ok(canonical_net(net))
        })
        .collect()
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: requests are matched as IPv4, so networks are too.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
            if let Ok(v4net) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4net);
            }
        }
    }
    net
}

fn parse_outside_hours(value: &Yaml, path: &str) -> Result<Condition, CondError> {
    let fields = fields(value, path, &["days", "from", "to", "tz"], &[])?;
    let days = match fields.iter().find(|(k, _)| *k == "days") {
        None => DaySet::ALL,
        Some((_, v)) => parse_days(v, &format!("{path}.days"))?,
    };
    let from_path = format!("{path}.from");
    let from = parse_clock(string(required(&fields, "from", path)?, &from_path)?, false)
        .map_err(|m| CondError::new(&from_path, m))?;
    let to_path = format!("{path}.to");
    let to = parse_clock(string(required(&fields, "to", path)?, &to_path)?, true)
        .map_err(|m| CondError::new(&to_path, m))?;
    if from == to {
        return Err(CondError::new(
            path,
            "`from` and `to` are equal, so the window is empty",
        ));
    }
    let tz_path = format!("{path}.tz");
    let tz_name = string(required(&fields, "tz", path)?, &tz_path)?;
    let tz = TimeZone::get(tz_name).map_err(|_| {
        CondError::new(
            &tz_path,
            format!("unknown time zone `{tz_name}`; use an IANA name such as Europe/Berlin"),
        )
    })?;
    Ok(Condition::OutsideHours { days, from, to, tz })
}

fn parse_days(value: &Yaml, path: &str) -> Result<DaySet, CondError> {
    let parsed = match value {
        Yaml::String(s) => DaySet::parse(s),
        Yaml::Sequence(items) if !items.is_empty() => {
            let mut bits = 0u8;
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                bits |= DaySet::parse(string(item, &item_path)?)
                    .map_err(|m| CondError::new(&item_path, m))?
                    .0;
            }
            Ok(DaySet(bits))
        }
        other => Err(format!("expected days like `Mon-Fri`, found {}", kind(other))),
    };
    parsed.map_err(|m| CondError::new(path, m))
}

/// `HH:MM`, 24-hour. `24:00` is allowed as an end, meaning midnight at the end of the day.
fn parse_clock(text: &str, is_end: bool) -> Result<(u8, u8), String> {
    let bad = || format!("expected a time like \"08:00\", found `{text}`");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u8 = h.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    let valid = (h < 24 && m < 60) || (is_end && h == 24 && m == 0);
    if !valid {
        return Err(format!(
            "`{text}` is not a time of day (00:00 to 23:59{})",
            if is_end { ", or 24:00" } else { "" }
        ));
    }
    Ok((h, m))
}

/// `500ms`, `30s`, `15m`, `8h`, `7d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like `8h` (units ms, s, m, h, d), found `{text}`");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let millis = n
        .checked_mul(millis_per_unit)
        .ok_or_else(|| format!("`{text}` is too long"))?;
    Ok(Duration::from_millis(millis))
}

/// The largest unit that divides the duration exactly, so a reason reads `8h`, not `28800s`.
fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

fn parse_header(value: &Yaml, path: &str) -> Result<Condition, CondError> {
    let fields = fields(value, path, &["name"], &STR_PREDS)?;
    let name_path = format!("{path}.name");
    let text = string(required(&fields, "name", path)?, &name_path)?;
    let name = HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| CondError::new(&name_path, format!("`{text}` is not a valid header name")))?;
    if text.contains('_') {
        // The gateway answers 400 to any request header with `_`, so this could never match.
        return Err(CondError::new(&name_path, "header names with `_` never reach a route"));
    }
    let (pred_key, pred_value) = one_pred(&fields, &STR_PREDS, path)?;
    let pred_path = format!("{path}.{pred_key}");
    let pred = match pred_key {
        "regex" => StrPred::Regex(anchored_regex(string(pred_value, &pred_path)?, &pred_path)?),
        "in" => StrPred::In(string_list(pred_value, &pred_path)?),
        _ => StrPred::NotIn(string_list(pred_value, &pred_path)?),
    };
    Ok(Condition::Header { name, pred })
}

fn parse_value_pred(fields: &[(&str, &Yaml)], path: &str) -> Result<ValuePred, CondError> {
    let (key, value) = one_pred(fields, &VALUE_PREDS, path)?;
    let path = format!("{path}.{key}");
    let path = path.as_str();
    Ok(match key {
        "gt" => ValuePred::Gt(number(value, path)?),
        "gte" => ValuePred::Gte(number(value, path)?),
        "lt" => ValuePred::Lt(number(value, path)?),
        "lte" => ValuePred::Lte(number(value, path)?),
        "eq" => ValuePred::Eq(scalar(value, path)?),
        "in" => ValuePred::In(
            non_empty_list(value, path)?
                .iter()
                .enumerate()
                .map(|(i, v)| scalar(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        _ => ValuePred::Regex(anchored_regex(string(value, path)?, path)?),
    })
}

/// Exactly one predicate key: two (`gt` and `lt`) would leave it unclear whether both
/// or either must hold; `all_of`/`any_of` say it explicitly.
fn one_pred<'y>(fields: &[(&'y str, &'y Yaml)], preds: &[&str], path: &str) -> Result<(&'y str, &'y Yaml), CondError> {
    let found: Vec<&(&str, &Yaml)> = fields.iter().filter(|(k, _)| preds.contains(k)).collect();
    match found.as_slice() {
        [(key, value)] => Ok((key, value)),
        [] => Err(CondError::new(path, format!("expected one of {}", preds.join(", ")))),
        many => Err(CondError::new(
            path,
            format!(
                "expected exactly one of {}, found {}; combine them with all_of or any_of",
                preds.join(", "),
                many.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(" and ")
            ),
        )),
    }
}

fn check_pointer(pointer: &str, path: &str) -> Result<(), CondError> {
    if !pointer.starts_with('/') {
        return Err(CondError::new(
            path,
            "a JSON pointer starts with `/`, like /amount or /payee/iban",
        ));
    }
    // RFC 6901: `~` only as `~0` (`~`) or `~1` (`/`); serde_json would read others literally.
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(CondError::new(path, "in a JSON pointer `~` must be followed by 0 or 1"));
        }
    }
    Ok(())
}

fn anchored_regex(pattern: &str, path: &str) -> Result<Regex, CondError> {
    let invalid = |e: regex::Error| {
        // The regex crate's message spans several lines; config errors are one line each.
        let detail = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        CondError::new(path, format!("invalid regex: {detail}"))
    };
    // Compiling the pattern alone first proves its groups balance, so wrapping it cannot
    // be escaped by a `)|(` inside it.
    Regex::new(pattern).map_err(invalid)?;
    Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(invalid)
}

// --- small YAML readers, each naming the path it failed at ---------------------------

fn kind(value: &Yaml) -> &'static str {
    match value {
        Yaml::Null => "nothing",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

fn mapping<'y>(value: &'y Yaml, path: &str) -> Result<&'y serde_yaml::Mapping, CondError> {
    match value {
        Yaml::Mapping(map) => Ok(map),
        other => Err(CondError::new(
            path,
            format!("expected a mapping, found {}", kind(other)),
        )),
    }
}

fn key_text(key: &Yaml) -> String {
    match key {
        Yaml::String(s) => s.clone(),
        other => kind(other).to_owned(),
    }
}

fn key_str<'y>(key: &'y Yaml, path: &str) -> Result<&'y str, CondError> {
    match key {
        Yaml::String(s) => Ok(s),
        other => Err(CondError::new(
            path,
            format!("expected a string key, found {}", kind(other)),
        )),
    }
}

/// The entries of a mapping whose keys must all be in `names` or `preds`.
fn fields<'y>(
    value: &'y Yaml,
    path: &str,
    names: &[&str],
    preds: &[&str],
) -> Result<Vec<(&'y str, &'y Yaml)>, CondError> {
    mapping(value, path)?
        .iter()
        .map(|(k, v)| {
            let key = key_str(k, path)?;
            if names.contains(&key) || preds.contains(&key) {
                Ok((key, v))
            } else {
                let expected: Vec<&str> = names.iter().chain(preds).copied().collect();
                Err(CondError::new(
                    &format!("{path}.{key}"),
                    format!("unknown key; expected {}", expected.join(", ")),
                ))
            }
        })
        .collect()
}

fn required<'y>(fields: &[(&str, &'y Yaml)], name: &str, path: &str) -> Result<&'y Yaml, CondError> {
    fields
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| CondError::new(path, format!("missing `{name}`")))
}

fn string<'y>(value: &'y Yaml, path: &str) -> Result<&'y str, CondError> {
    match value {
        Yaml::String(s) => Ok(s),
        other => Err(CondError::new(
            path,
            format!("expected a string, found {} (quote it)", kind(other)),
        )),
    }
}

fn number(value: &Yaml, path: &str) -> Result<f64, CondError> {
    match value.as_f64() {
        Some(n) if n.is_finite() => Ok(n),
        _ => Err(CondError::new(
            path,
            format!("expected a number, found {}", kind(value)),
        )),
    }
}

fn scalar(value: &Yaml, path: &str) -> Result<Scalar, CondError> {
    match value {
        Yaml::Bool(b) => Ok(Scalar::Bool(*b)),
        Yaml::String(s) => Ok(Scalar::String(s.clone())),
        Yaml::Number(_) => number(value, path).map(Scalar::Number),
        other => Err(CondError::new(
            path,
            format!("expected a number, string or boolean, found {}", kind(other)),
        )),
    }
}

fn non_empty_list<'y>(value: &'y Yaml, path: &str) -> Result<&'y [Yaml], CondError> {
    match value {
        Yaml::Sequence(items) if !items.is_empty() => Ok(items),
        Yaml::Sequence(_) => Err(CondError::new(path, "expected a non-empty list")),
        other => Err(CondError::new(path, format!("expected a list, found {}", kind(other)))),
    }
}

fn string_list(value: &Yaml, path: &str) -> Result<Vec<String>, CondError> {
    non_empty_list(value, path)?
        .iter()
        .enumerate()
        .map(|(i, v)| string(v, &format!("{path}[{i}]")).map(str::to_owned))
        .collect()
}
