//! `stepgate explain`: what the gateway would do with one request, without
//! sending it anywhere. Uses the same canonical path, matcher and
//! conditions as the proxy.

use super::BadInput;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};
use stepgate::config::Config;
use stepgate::policy::body::Reading;
use stepgate::policy::conditions::{self, RequestFacts, SessionFacts, Verdict};
use stepgate::route::authority;
use stepgate::route::canonical::canonicalize;
use stepgate::route::methods::{effective_methods, form_kind, form_methods};
use stepgate::route::MatchRequest;

pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [String],
    pub body: Option<&'a Path>,
    pub ip: IpAddr,
    pub at: Option<&'a str>,
    pub session_age: Option<Duration>,
    pub new_device: bool,
    pub workload: bool,
}

fn bad(msg: impl Into<String>) -> anyhow::Error {
    BadInput(msg.into()).into()
}

pub fn explain(config: &Config, r: &Request<'_>) -> anyhow::Result<()> {
    let method =
        Method::from_bytes(r.method.as_bytes()).map_err(|_| bad(format!("`{}` is not an HTTP method", r.method)))?;
    let uri: http::Uri = r.url.parse().map_err(|_| bad(format!("`{}` is not a URL", r.url)))?;
    let mut headers = HeaderMap::new();
    for h in r.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| bad(format!("`{h}` is not `Name: value`")))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| bad(format!("bad header name `{k}`")))?;
        let value = HeaderValue::from_str(v.trim()).map_err(|_| bad(format!("bad header value in `{h}`")))?;
        headers.append(name, value);
    }
    let body = match r.body {
        Some(p) => std::fs::read(p).map_err(|e| bad(format!("{}: {e}", p.display())))?,
        None => Vec::new(),
    };
    let now = match r.at {
        Some(t) => parse_time(t)?,
        None => SystemTime::now(),
    };
    // The gateway refuses these before it even reads the path.
    if stepgate::proxy::hygiene::check_header_names(&headers).is_err() {
        say!("400 bad_request: a header name contains `_` (refused before matching)");
        return Ok(());
    }
    // The host as the gateway reads it: the URL's authority, else a `Host`
    // header given with -H, else localhost.
    let authority = match uri.authority() {
        Some(a) => a.as_str().to_owned(),
        None => match headers.get(http::header::HOST).map(|v| v.to_str()) {
            Some(Ok(h)) => h.to_owned(),
            Some(Err(_)) => String::new(),
            None => "localhost".to_owned(),
        },
    };
    let host = match authority::host_name(&authority) {
        Ok(h) => h,
        Err(e) => {
            say!("400 bad_request: invalid host `{authority}`: {e}");
            return Ok(());
        }
    };
    let path = match canonicalize(uri.path()) {
        Ok(p) => p,
        Err(e) => {
            say!("400 bad_request: {e} (an ambiguous path is refused before matching)");
            return Ok(());
        }
    };
    say!(
        "request:   {method} {}{}",
        path.as_str(),
        uri.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    if path.as_str() != uri.path() {
        say!("           (canonical form of {})", uri.path());
    }
    if stepgate::route::gateway_owns(&config.stepup.prefix, &path) {
        say!(
            "route:     the gateway's own endpoint (under {}): answered here, never forwarded",
            config.stepup.prefix
        );
        return Ok(());
    }
    let mut methods = effective_methods(&method, &headers, uri.query());
    let req = |methods: &[Method]| {
        config.routes.find(&MatchRequest {
            host: &host,
            methods,
            path: &path,
            query: uri.query(),
            headers: &headers,
            workload: r.workload,
        })
    };
    let mut lookup = req(&methods);
    if lookup.method_miss {
        if let Some(form) = form_kind(&headers) {
            match form_methods(form, &body) {
                Ok(read) => methods.extend(read),
                Err(e) => {
                    say!("400 bad_request: {e} (the body's _method is ambiguous)");
                    return Ok(());
                }
            }
            lookup = req(&methods);
        }
    }
    let read_as = lookup.method.clone().filter(|m| *m != method);
    let Some(route) = lookup.governing() else {
        say!("route:     none: forwarded untouched (streamed, no step-up)");
        return Ok(());
    };
    match read_as {
        // An override chose the stricter route: say so, since the request
        // line alone names another method.
        Some(m) => say!("route:     {} (action {}) as {m}", route.name, route.action),
        None => say!("route:     {} (action {})", route.name, route.action),
    }
    if route.deny {
        say!("decision:  403 forbidden (deny: true)");
        return Ok(());
    }
    let session = SessionFacts {
        first_seen: now
            .checked_sub(r.session_age.unwrap_or_default())
            .unwrap_or(SystemTime::UNIX_EPOCH),
        device_changed: r.new_device,
    };
    let reading = match &route.body_reader {
        None => None,
        Some(reader) => match Reading::read(reader, &headers, &body) {
            Ok(reading) => Some(reading),
            Err(e) => {
                say!("decision:  400 bad_request ({e})");
                return Ok(());
            }
        },
    };
    let facts = RequestFacts {
        client_ip: Some(r.ip),
        headers: &headers,
        body: reading.as_ref(),
    };
    if !route.when.is_empty() {
        let labels: Vec<String> = route.when.iter().map(|c| c.label()).collect();
        say!("when:      {}", labels.join(" | "));
        match conditions::evaluate(&route.when, &facts, &session, now) {
            Verdict::Pass => {
                say!("decision:  no condition fires: forwarded unheld");
                return Ok(());
            }
            Verdict::StepUp { reasons } => say!("fired:     {}", reasons.join(", ")),
        }
    }
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
    say!(
        "hold:      mode {} ({}), timeout {}s",
        route.hold.mode.as_str(),
        route.hold.mode.describe(),
        route.hold.timeout.as_secs()
    );
    Ok(())
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
