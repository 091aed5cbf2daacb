//! Evaluation: three-valued, fail-closed, pure.

use super::parse::format_duration;
use super::*;

/// Decides whether a request steps up. No conditions means the route always steps up.
pub fn evaluate(conds: &[Condition], req: &RequestFacts<'_>, session: &SessionFacts, now: SystemTime) -> Verdict {
    if conds.is_empty() {
        return Verdict::StepUp { reasons: Vec::new() };
    }
    let ctx = Ctx { req, session, now };
    let outcome = any_of(conds, &ctx);
    match outcome.truth {
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
    }
}

/// Whether any of `conds` reads the body, i.e. whether the route must buffer it.
pub fn needs_body(conds: &[Condition]) -> bool {
    conds.iter().any(Condition::needs_body)
}

/// Records what `conds` read from the body: whether any JSON pointer, and
/// which form fields.
pub fn body_reads<'c>(conds: &'c [Condition], json: &mut bool, form: &mut Vec<&'c str>) {
    for c in conds {
        match c {
            Condition::Json { .. } => *json = true,
            Condition::Form { field, .. } => form.push(field),
            Condition::AllOf(children) | Condition::AnyOf(children) => body_reads(children, json, form),
            Condition::Not(inner) => body_reads(std::slice::from_ref(&**inner), json, form),
            _ => {}
        }
    }
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

struct Ctx<'r, 'a> {
    req: &'r RequestFacts<'a>,
    session: &'r SessionFacts,
    now: SystemTime,
}

fn eval(cond: &Condition, ctx: &Ctx<'_, '_>) -> Outcome {
    let leaf = match cond {
        Condition::AllOf(children) => return all_of(children, ctx),
        Condition::AnyOf(children) => return any_of(children, ctx),
        Condition::Not(inner) => {
            let inner_outcome = eval(inner, ctx);
            return match inner_outcome.truth {
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
            };
        }
        Condition::ClientIpIn(nets) => Leaf::from(ctx.req.client_ip.is_some_and(|ip| ip_in(nets, ip))),
        Condition::ClientIpNotIn(nets) => Leaf::from(!ctx.req.client_ip.is_some_and(|ip| ip_in(nets, ip))),
        Condition::OutsideHours { days, from, to, tz } => outside_hours(*days, *from, *to, tz, ctx.now),
        Condition::Header { name, pred } => header(ctx.req.headers, name, pred),
        Condition::Json { pointer, pred } => match ctx.req.body.and_then(|b| b.pointer(pointer)) {
            None => Leaf::Unknown("missing"),
            Some(value) => test_value(pred, Field::Json(value)),
        },
        // A repeated field never gets here: the reading refused the body.
        Condition::Form { field, pred } => match ctx.req.body.and_then(|b| b.field(field)) {
            None => Leaf::Unknown("missing"),
            Some(value) => test_value(pred, Field::Text(value)),
        },
        Condition::SessionAgeOver(max) => {
            // A first_seen in the future (clock skew between instances) is a new session.
            let age = ctx.now.duration_since(ctx.session.first_seen).unwrap_or(Duration::ZERO);
            Leaf::from(age > *max)
        }
        Condition::NewDevice => Leaf::from(ctx.session.device_changed),
    };
    match leaf {
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
    }
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

/// Every child is evaluated (no short-circuit) so that every reason is reported
/// whatever the order of the conditions.
fn all_of(children: &[Condition], ctx: &Ctx<'_, '_>) -> Outcome {
    let outcomes: Vec<Outcome> = children.iter().map(|c| eval(c, ctx)).collect();
    if outcomes.iter().any(|o| o.truth == Truth::False) {
        return Outcome::pass();
    }
    let truth = if outcomes.iter().any(|o| o.truth == Truth::Unknown) {
        Truth::Unknown
    } else {
        Truth::True
    };
    Outcome {
        truth,
        reasons: outcomes.into_iter().flat_map(|o| o.reasons).collect(),
    }
}

/// Reports every child that fired or could not be decided: both are reasons to step up.
fn any_of(children: &[Condition], ctx: &Ctx<'_, '_>) -> Outcome {
    let outcomes: Vec<Outcome> = children.iter().map(|c| eval(c, ctx)).collect();
    let truth = if outcomes.iter().any(|o| o.truth == Truth::True) {
        Truth::True
    } else if outcomes.iter().any(|o| o.truth == Truth::Unknown) {
        Truth::Unknown
    } else {
        Truth::False
    };
    Outcome {
        truth,
        reasons: outcomes.into_iter().flat_map(|o| o.reasons).collect(),
    }
}

fn ip_in(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical_ip(ip);
    nets.iter().any(|net| net.contains(&ip))
}

/// `::ffff:a.b.c.d` is how dual-stack sockets report IPv4 peers; match it as IPv4.
/// Only the mapped form: the deprecated compatible form (`::a.b.c.d`) would turn `::1`
/// into `0.0.0.1`.
pub(super) fn canonical_ip(ip: IpAddr) -> IpAddr {
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
pub(super) fn numeric_str(s: &str) -> Option<f64> {
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
