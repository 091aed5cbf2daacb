//! `stepgate explain`: what the gateway would do with one request, without
//! sending it anywhere. It prints the plan of the gateway's own
//! [`plan`](stepgate::proxy::plan::plan) function, from facts gathered by
//! the gateway's own checks, so the two cannot disagree.

use super::{raw, BadInput};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};
use stepgate::clock::unix_secs;
use stepgate::config::Config;
use stepgate::policy::conditions;
use stepgate::policy::HoldMode;
use stepgate::proxy::hygiene;
use stepgate::proxy::plan::{self, Plan};
use stepgate::route::Route;
use stepgate::store::Sighting;

/// The request to explain.
pub enum Input<'a> {
    /// Assembled from the command line, as curl would send it.
    Url {
        method: &'a str,
        url: &'a str,
        headers: &'a [String],
        body: Option<&'a Path>,
    },
    /// A file with the request's bytes, head and body (`-`: stdin), read as
    /// the gateway's HTTP/1.1 server reads them.
    Raw(&'a Path),
}

pub struct Request<'a> {
    pub input: Input<'a>,
    /// With a URL, the client after trusted proxies; with raw bytes, the
    /// peer, whose forwarding headers count as the gateway counts them.
    pub ip: IpAddr,
    pub at: Option<&'a str>,
    pub session_age: Option<Duration>,
    pub new_device: bool,
    pub workload: bool,
}

fn bad(msg: impl Into<String>) -> anyhow::Error {
    BadInput(msg.into()).into()
}

/// The request as a URL and options describe it.
fn from_url(method: &str, url: &str, header_args: &[String], body: Option<&Path>) -> anyhow::Result<(Parts, Vec<u8>)> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad(format!("`{method}` is not an HTTP method")))?;
    let uri: http::Uri = url.parse().map_err(|_| bad(format!("`{url}` is not a URL")))?;
    let mut headers = HeaderMap::new();
    for h in header_args {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| bad(format!("`{h}` is not `Name: value`")))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| bad(format!("bad header name `{k}`")))?;
        let value = HeaderValue::from_str(v.trim()).map_err(|_| bad(format!("bad header value in `{h}`")))?;
        headers.append(name, value);
    }
    // Like curl: a path without a host is asked of localhost.
    if uri.authority().is_none() && !headers.contains_key(http::header::HOST) {
        headers.insert(http::header::HOST, HeaderValue::from_static("localhost"));
    }
    let body = match body {
        Some(p) => std::fs::read(p).map_err(|e| bad(format!("{}: {e}", p.display())))?,
        None => Vec::new(),
    };
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok((request.into_parts().0, body))
}

/// The request from its bytes; `None` when the server's parser refuses it
/// (said here, since the gateway never sees it).
fn from_raw(config: &Config, file: &Path) -> anyhow::Result<Option<(Parts, Vec<u8>)>> {
    let bytes = if file == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).map_err(|e| bad(format!("stdin: {e}")))?;
        b
    } else {
        std::fs::read(file).map_err(|e| bad(format!("{}: {e}", file.display())))?
    };
    match raw::read(&bytes, config.limits.max_headers).map_err(bad)? {
        raw::Read::Request { parts, body } => Ok(Some((*parts, body))),
        raw::Read::Refused { status, reason } => {
            say!("{status} (the HTTP/1.1 parser refuses it: {reason}; the gateway never sees it)");
            Ok(None)
        }
    }
}

pub fn explain(config: &Config, r: &Request<'_>) -> anyhow::Result<()> {
    let now = match r.at {
        Some(t) => parse_time(t)?,
        None => SystemTime::now(),
    };
    let (mut parts, body) = match r.input {
        Input::Url {
            method,
            url,
            headers,
            body,
        } => from_url(method, url, headers, body)?,
        Input::Raw(file) => match from_raw(config, file)? {
            Some(read) => read,
            None => return Ok(()),
        },
    };

    // The gateway's own checks, in its order, before any route.
    let target = match plan::front(&mut parts, config) {
        Ok(t) => t,
        Err(reject) => {
            say!(
                "{} {}: {} (refused before matching)",
                reject.status().as_u16(),
                reject.code(),
                reject.message()
            );
            return Ok(());
        }
    };
    say!("request:   {} {}", parts.method, target.path_and_query());
    if target.path.as_str() != parts.uri.path() {
        say!("           (canonical form of {})", parts.uri.path());
    }
    let websocket = plan::websocket_handshake(&parts);
    // Raw bytes come from a peer, whose forwarding headers the gateway
    // believes only if it is a trusted proxy.
    let (client_addr, trusted_peer) = match r.input {
        Input::Raw(_) => (
            hygiene::client_addr(r.ip, &parts.headers, &config.trusted_proxies),
            hygiene::is_trusted(r.ip, &config.trusted_proxies),
        ),
        Input::Url { .. } => (Some(r.ip), false),
    };
    let client_ip = client_addr.unwrap_or(r.ip);
    let facts = plan::Request {
        method: &parts.method,
        target: &target,
        headers: &parts.headers,
        body: Some(&body),
        client_addr,
        client_ip,
        trusted_peer,
        workload: r.workload,
        websocket,
    };
    // The session as the gateway would have recorded it.
    let age = r.session_age.unwrap_or_default().as_secs();
    let mut device = conditions::device_key(plan::user_agent(&parts.headers), client_ip);
    if r.new_device {
        device[0] ^= 1;
    }
    let mut session = plan::Session {
        carried: plan::Carried::of(&config.session, &parts.headers, None),
        seen: Some(Sighting {
            first: unix_secs(now).saturating_sub(age),
            device,
        }),
    };
    let mut decided = plan::plan(config, &facts, &session, now);
    if let (Plan::NeedSession(_), plan::Carried::None) = (&decided, session.carried) {
        say!("session:   none carried: the gateway answers 401 no_session; below, as with one");
        session.carried = plan::Carried::One;
        decided = plan::plan(config, &facts, &session, now);
    }
    print(config, &decided);
    Ok(())
}

/// The plan, step by step, with the reason for each.
fn print(config: &Config, decided: &Plan) {
    if let Plan::Gateway = decided {
        say!(
            "route:     the gateway's own endpoint (under {}): answered here, never forwarded",
            config.stepup.prefix
        );
        return;
    }
    match decided.routed() {
        None if matches!(decided, Plan::Forward(None)) => {
            say!("route:     none: forwarded untouched (streamed, no step-up)");
            return;
        }
        None => {}
        // An override chose the stricter route: say so, since the request
        // line alone names another method.
        Some(r) => match &r.read_as {
            Some(m) => say!("route:     {} (action {}) as {m}", r.route.name, r.route.action),
            None => say!("route:     {} (action {})", r.route.name, r.route.action),
        },
    }
    if let Some(route) = decided.route().filter(|r| !r.when.is_empty() && !r.deny) {
        let labels: Vec<String> = route.when.iter().map(|c| c.label()).collect();
        say!("when:      {}", labels.join(" | "));
    }
    match decided {
        Plan::Refuse(reject) => say!(
            "decision:  {} {} ({})",
            reject.status().as_u16(),
            reject.code(),
            reject.message()
        ),
        Plan::Deny(_) => say!("decision:  403 forbidden (deny: true)"),
        Plan::Forward(_) => say!("decision:  no condition fires: forwarded unheld"),
        Plan::NeedSession(_) => say!("decision:  401 no_session (a step-up needs a session)"),
        Plan::Shadow { routed, reasons } | Plan::Hold { routed, reasons, .. } => {
            if !routed.route.when.is_empty() {
                say!("fired:     {}", reasons.join(", "));
            }
            requirements(&routed.route);
            let mode = match decided {
                Plan::Hold { mode, .. } => *mode,
                _ => HoldMode::Shadow,
            };
            say!(
                "hold:      mode {} ({}), timeout {}s",
                mode.as_str(),
                mode.describe(),
                routed.route.hold.timeout.as_secs()
            );
        }
        Plan::Gateway | Plan::ReadBody => {}
    }
}

fn requirements(route: &Route) {
    let q = &route.require;
    let methods: Vec<&str> = q.methods.iter().map(|m| m.as_str()).collect();
    say!(
        "requires:  {}{}, max_age {}s{}",
        if methods.is_empty() {
            "no proof".to_owned()
        } else {
            format!("one of [{}]", methods.join(", "))
        },
        if q.approvals > 0 {
            format!(" + {} approval(s) from {:?}", q.approvals, q.approvers)
        } else {
            String::new()
        },
        q.max_age.as_secs(),
        if q.reuse.is_zero() {
            String::new()
        } else {
            format!(", reusable for {}s", q.reuse.as_secs())
        }
    );
    if !q.users.is_empty() || !q.groups.is_empty() {
        say!("who:       users {:?}, groups {:?}", q.users, q.groups);
    }
    if let Some(bg) = q.break_glass {
        say!(
            "break-glass: allowed{}{}",
            if bg.reason_required { " with a reason" } else { "" },
            if bg.replaces_approvals {
                ", in place of approvals"
            } else {
                ""
            }
        );
    }
}

/// `--at`: Unix seconds or an RFC 3339 instant.
fn parse_time(t: &str) -> anyhow::Result<SystemTime> {
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    }
    let ts: jiff::Timestamp = t
        .parse()
        .map_err(|_| bad(format!("`{t}` is not Unix seconds or an RFC 3339 time")))?;
    let secs = u64::try_from(ts.as_second()).map_err(|_| bad(format!("`{t}` is before 1970")))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}
