//! Raw file structs to typed config. Each check names the config path of
//! the value it rejects; `locate` turns that path into a line and column.

use super::locate::Locations;
use super::raw::{RawConfig, RawRoute, Scalar};
use super::units::{parse_duration, parse_size};
use super::*;
use crate::policy::conditions;
use crate::policy::{BreakGlass, Caller, DisplayField, DisplaySource, HoldMode, HoldSpec, ProofMethod, Requirements};
use crate::route::matcher::PathPattern;
use crate::route::Route;
use regex::Regex;
use std::collections::HashSet;

/// An error found while building: the config path and the message.
struct Problem(String, String);

type Res<T> = Result<T, Problem>;

fn problem<T>(path: impl Into<String>, msg: impl Into<String>) -> Res<T> {
    Err(Problem(path.into(), msg.into()))
}

pub(super) fn build(text: &str, file: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| yaml_error(&e, file))?;
    let locate = |Problem(path, message): Problem| {
        let (line, col) = Locations::index(text).find(&path);
        ConfigError {
            file: file.to_owned(),
            line,
            col,
            message: format!("{path}: {message}"),
        }
    };
    let (mut config, notes) = typed(raw).map_err(locate)?;
    let shadows = config.routes.shadowed();
    // Indexed once, and only when there is something to locate.
    let locations = if shadows.is_empty() && notes.is_empty() {
        Locations::default()
    } else {
        Locations::index(text)
    };
    for Problem(path, message) in notes {
        let (line, col) = locations.find(&path);
        config
            .warnings
            .push(format!("{file}:{line}:{col}: warning: {path}: {message}"));
    }
    for (later, earlier) in shadows {
        let routes = config.routes.routes();
        let (Some(l), Some(e)) = (routes.get(later), routes.get(earlier)) else {
            continue;
        };
        let (line, col) = locations.find(&format!("routes[{later}]"));
        config.warnings.push(format!(
            "{file}:{line}:{col}: warning: routes[{later}] `{}` is shadowed by routes[{earlier}] `{}` and can never match",
            l.name, e.name
        ));
    }
    Ok(config)
}

/// A route where anyone enrolled could step up on any session: no identity
/// source names the caller, and the route names nobody. The gateway then
/// makes the first person to step up on a session its only actor (SPEC
/// §3); `check` says so, since that first person may be a thief.
fn anyone_may_act(route: &Route, identity: &IdentityConfig, at: &str) -> Option<Problem> {
    let r = &route.require;
    let known = names_caller(route, identity);
    if route.deny || route.hold.mode == HoldMode::Shadow || known || r.methods.is_empty() {
        return None;
    }
    if !r.users.is_empty() || !r.groups.is_empty() {
        return None;
    }
    Some(Problem(
        format!("{at}.require"),
        "anyone enrolled can step up here: with no `identity:` source and no `require.users`/`groups`, \
         the first person who steps up on a session becomes its actor, and others are refused"
            .into(),
    ))
}

/// Whether an identity source names every caller of `route`.
fn names_caller(route: &Route, identity: &IdentityConfig) -> bool {
    identity.jwt.is_some() || identity.header.is_some() || (identity.mtls && route.caller == Some(Caller::Workload))
}

/// A route that approvals alone decide, where nothing may name the
/// requester. The gateway refuses such a hold (401 `no_identity`) unless
/// an earlier step-up bound someone to the session, since an approver
/// could otherwise approve their own request as a stranger's; `check`
/// says so before users meet it.
fn requester_may_be_unknown(route: &Route, identity: &IdentityConfig, at: &str) -> Option<Problem> {
    let r = &route.require;
    if route.deny || route.hold.mode == HoldMode::Shadow || r.approvals == 0 || !r.methods.is_empty() {
        return None;
    }
    if names_caller(route, identity) {
        return None;
    }
    Some(Problem(
        format!("{at}.require"),
        "approvals alone decide here, but no `identity:` source names the requester, so an approver could approve \
         their own request: the gateway refuses these requests (401 no_identity) unless an earlier step-up bound \
         someone to the session; configure `identity:` or add `require.methods`"
            .into(),
    ))
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": the known
/// key closest to the misspelt one, when it is close enough to be a typo.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected ")?.1;
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (strsim::damerau_levenshtein(unknown, k), k))
        .min()?;
    // Two edits, or a third of the key's length for long keys: beyond
    // that the suggestion is a guess, not a typo fixed.
    let limit = 2.max(unknown.chars().count() / 3);
    (best.0 <= limit).then(|| format!("; did you mean `{}`?", best.1))
}

fn yaml_error(e: &serde_yaml::Error, file: &str) -> ConfigError {
    let (line, col) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
    let mut message = e.to_string();
    // serde_yaml appends the location in prose; it is already in the prefix.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    if let Some(hint) = did_you_mean(&message) {
        message.push_str(&hint);
    }
    ConfigError {
        file: file.to_owned(),
        line,
        col,
        message,
    }
}

/// The typed config, and warnings (unlocated) found on the way.
fn typed(raw: RawConfig) -> Res<(Config, Vec<Problem>)> {
    let mut notes = Vec::new();
    let listen = raw.listen.parse().or_else(|_| {
        problem(
            "listen",
            format!("`{}` is not an address like 0.0.0.0:8443", raw.listen),
        )
    })?;
    let admin_listen = match raw.admin_listen {
        Some(a) => Some(
            a.parse()
                .or_else(|_| problem("admin_listen", format!("`{a}` is not an address like 127.0.0.1:9443")))?,
        ),
        None => None,
    };
    let upstream = upstream(&raw.upstream, raw.upstream_tls)?;
    let session = session(raw.session)?;
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, s)| {
            cidr(s).ok_or_else(|| {
                Problem(
                    format!("trusted_proxies[{i}]"),
                    format!("`{s}` is not a CIDR or IP address"),
                )
            })
        })
        .collect::<Res<Vec<_>>>()?;
    let ttl = opt_duration(raw.assertion.ttl.as_ref(), "assertion.ttl", Duration::from_secs(60))?;
    if ttl.is_zero() || ttl > Duration::from_secs(300) {
        return problem("assertion.ttl", "must be between 1s and 300s");
    }
    let assertion = AssertionConfig {
        key: raw.assertion.key,
        retired_keys: raw.assertion.retired_keys,
        issuer: non_empty(raw.assertion.issuer, "assertion.issuer")?,
        audience: non_empty(raw.assertion.audience, "assertion.audience")?,
        ttl,
    };
    let limits = limits(raw.limits)?;
    let prefix = prefix(raw.stepup.prefix.as_deref())?;
    let token_issuers = raw
        .stepup
        .token_issuers
        .into_iter()
        .map(|i| IssuerConfig {
            issuer: i.issuer,
            audience: i.audience,
            jwks: i.jwks,
        })
        .collect::<Vec<_>>();
    let approvers = raw
        .stepup
        .approvers
        .into_iter()
        .enumerate()
        .map(|(i, a)| approver(a, &format!("stepup.approvers[{i}]")))
        .collect::<Res<Vec<_>>>()?;
    let webauthn = match raw.stepup.webauthn {
        Some(w) => Some(webauthn::relying_party(w)?),
        None => None,
    };
    let oidc = match raw.stepup.oidc {
        Some(o) => Some(oidc::provider(o)?),
        None => None,
    };
    let stepup = StepupConfig {
        oidc,
        prefix,
        token_issuers,
        users: raw.stepup.users.unwrap_or_else(|| PathBuf::from("state/users.yaml")),
        approvers,
        webauthn,
    };
    let identity = match raw.identity {
        None => IdentityConfig::default(),
        Some(i) => IdentityConfig {
            header: match i.header {
                Some(h) => Some(
                    HeaderName::from_bytes(h.as_bytes())
                        .or_else(|_| problem("identity.header", format!("`{h}` is not a valid header name")))?,
                ),
                None => None,
            },
            jwt: i.jwt.map(|j| JwtIdentityConfig {
                issuer: j.issuer,
                audience: j.audience,
                jwks: j.jwks,
                cookie: j.cookie,
            }),
            mtls: i.mtls,
            cert_cn: match i.cert.as_deref() {
                None | Some("san") => false,
                Some("cn") => true,
                Some(other) => return problem("identity.cert", format!("`{other}` is not `san` or `cn`")),
            },
        },
    };
    let audit = {
        let a = raw.audit;
        let path = a
            .as_ref()
            .and_then(|a| a.path.clone())
            .unwrap_or_else(|| PathBuf::from("state/audit.jsonl"));
        let rotate_bytes = match a.as_ref().and_then(|a| a.rotate.as_ref()) {
            Some(v) => parse_size(&v.text()).or_else(|m| problem("audit.rotate", m))?,
            None => 64 << 20,
        };
        if rotate_bytes < 4096 {
            return problem("audit.rotate", "must be at least 4KiB");
        }
        let checkpoint_every = a.as_ref().and_then(|a| a.checkpoint_every).unwrap_or(1000);
        if checkpoint_every == 0 {
            return problem("audit.checkpoint_every", "must be at least 1");
        }
        super::AuditConfig {
            path,
            rotate_bytes,
            checkpoint_every,
        }
    };
    let state = state(raw.state)?;
    if identity.mtls && raw.tls.client_ca.is_none() {
        return problem(
            "identity.mtls",
            "needs tls.client_ca: client certificates must chain to a CA you name",
        );
    }
    if session.mtls && raw.tls.client_ca.is_none() {
        return problem(
            "session.mtls",
            "needs tls.client_ca: client certificates must chain to a CA you name",
        );
    }
    let notify = match raw.notify {
        None => None,
        Some(n) => {
            let uri: http::Uri = n.webhook.parse().or_else(|_| problem("notify.webhook", "not a URL"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
                return problem("notify.webhook", "must be an http:// or https:// URL");
            }
            let queue = match n.queue {
                None => 1024,
                Some(q @ 1..=1_048_576) => q as usize,
                Some(_) => return problem("notify.queue", "must be between 1 and 1048576"),
            };
            Some(NotifyConfig { webhook: uri, queue })
        }
    };
    let mut names = HashSet::new();
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let at = format!("routes[{i}]");
        if !names.insert(r.name.clone()) {
            return problem(format!("{at}.name"), format!("duplicate route name `{}`", r.name));
        }
        let lists_webauthn = r
            .require
            .as_ref()
            .and_then(|q| q.methods.as_ref())
            .is_some_and(|m| m.iter().any(|s| s == "webauthn"));
        notes.extend(case_sensitive_note(&r.matcher, &at));
        let mut route = route(r, &at)?;
        notes.extend(break_glass_note(&route.require, &at));
        if stepup.webauthn.is_none() {
            if let Some(note) = webauthn::withdraw(&mut route.require, &at, lists_webauthn)? {
                notes.push(note);
            }
        }
        if !route.deny {
            oidc::route_fits(&route.require, stepup.oidc.as_ref(), &at)?;
        }
        if route.require.accepts(ProofMethod::Token) && stepup.token_issuers.is_empty() && !route.deny {
            return problem(
                format!("{at}.require.methods"),
                "requires `token` but stepup.token_issuers is empty",
            );
        }
        if let Some(note) = anyone_may_act(&route, &identity, &at) {
            notes.push(note);
        }
        notes.extend(requester_may_be_unknown(&route, &identity, &at));
        routes.push(route);
    }
    let routes = RouteTable::new(routes).or_else(|e| problem("routes", format!("cannot compile route set: {e}")))?;
    let config = Config {
        listen,
        tls: TlsConfig {
            cert: raw.tls.cert,
            key: raw.tls.key,
            client_ca: raw.tls.client_ca,
        },
        upstream,
        admin_listen,
        session,
        trusted_proxies,
        identity,
        notify,
        audit,
        state,
        assertion,
        limits,
        stepup,
        routes,
        warnings: Vec::new(),
    };
    Ok((config, notes))
}

fn state(raw: Option<super::raw::RawState>) -> Res<StateConfig> {
    let Some(raw) = raw else { return Ok(StateConfig::Memory) };
    match raw.backend.as_str() {
        "memory" => {
            if raw.url.is_some() || raw.prefix.is_some() {
                return problem("state.url", "only the redis backend takes a url or prefix");
            }
            Ok(StateConfig::Memory)
        }
        "redis" => {
            let Some(url) = raw.url else {
                return problem("state.backend", "the redis backend needs `url: redis://host:port`");
            };
            if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://")) {
                return problem("state.url", "must be a redis://, rediss:// or redis+unix:// URL");
            }
            if let Err(e) = redis::Client::open(url.as_str()) {
                return problem("state.url", format!("not a usable Redis URL: {}", e.category()));
            }
            let prefix = raw.prefix.unwrap_or_else(|| "stepgate".to_owned());
            if prefix.is_empty()
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            {
                return problem("state.prefix", "letters, digits and - _ . : only");
            }
            Ok(StateConfig::Redis { url, prefix })
        }
        other => problem("state.backend", format!("`{other}` is not `memory` or `redis`")),
    }
}

fn non_empty(s: String, path: &str) -> Res<String> {
    if s.trim().is_empty() {
        problem(path, "must not be empty")
    } else {
        Ok(s)
    }
}

fn upstream(s: &str, tls: Option<super::raw::RawUpstreamTls>) -> Res<Upstream> {
    let uri: http::Uri = s
        .parse()
        .or_else(|_| problem("upstream", format!("`{s}` is not a URL")))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return problem("upstream", "must be an http:// or https:// URL"),
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return problem("upstream", "must be an origin (http://host:port) without a path");
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| Problem("upstream".into(), "missing host".into()))?;
    let tls = match (https, tls) {
        (false, None) => None,
        (false, Some(_)) => {
            return problem(
                "upstream_tls",
                "is set but the upstream is http://; use an https:// upstream or remove upstream_tls",
            )
        }
        (true, None) => {
            return problem(
                "upstream",
                "an https:// upstream needs upstream_tls.ca, the CA that issued its certificate",
            )
        }
        (true, Some(t)) => Some(upstream_tls(t, authority.host())?),
    };
    Ok(Upstream { authority, tls })
}

fn upstream_tls(t: super::raw::RawUpstreamTls, host: &str) -> Res<UpstreamTls> {
    let client = match (t.cert, t.key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return problem("upstream_tls.cert", "needs upstream_tls.key too"),
        (None, Some(_)) => return problem("upstream_tls.key", "needs upstream_tls.cert too"),
    };
    let (server_name, at) = match t.server_name {
        Some(n) => (n, "upstream_tls.server_name"),
        None => (
            host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            "upstream",
        ),
    };
    if rustls_pki_types::ServerName::try_from(server_name.as_str()).is_err() {
        return problem(at, format!("`{server_name}` is not a DNS name or IP address to verify"));
    }
    Ok(UpstreamTls {
        ca: t.ca,
        client,
        server_name,
    })
}

fn session(raw: super::raw::RawSession) -> Res<SessionConfig> {
    if raw.cookie.is_none() && raw.header.is_none() && !raw.mtls {
        return problem("session", "set at least one of cookie, header or mtls");
    }
    if let Some(c) = &raw.cookie {
        if c.is_empty()
            || !c
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            return problem("session.cookie", format!("`{c}` is not a valid cookie name"));
        }
    }
    let header = match raw.header {
        Some(h) => Some(
            HeaderName::from_bytes(h.as_bytes())
                .or_else(|_| problem("session.header", format!("`{h}` is not a valid header name")))?,
        ),
        None => None,
    };
    Ok(SessionConfig {
        cookie: raw.cookie,
        header,
        mtls: raw.mtls,
        key_file: raw.key_file.unwrap_or_else(|| PathBuf::from("state/session.key")),
    })
}

fn cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn opt_duration(v: Option<&Scalar>, path: &str, default: Duration) -> Res<Duration> {
    match v {
        None => Ok(default),
        Some(v) => parse_duration(&v.text()).or_else(|m| problem(path, m)),
    }
}

fn limits(raw: super::raw::RawLimits) -> Res<Limits> {
    let d = Limits::default();
    let size = |v: Option<&Scalar>, path: &str, default: u64| -> Res<u64> {
        match v {
            None => Ok(default),
            Some(v) => parse_size(&v.text()).or_else(|m| problem(path, m)),
        }
    };
    let count = |v: Option<u64>, path: &str, default: usize| -> Res<usize> {
        match v {
            None => Ok(default),
            Some(0) => problem(path, "must be at least 1"),
            Some(n) => usize::try_from(n).or_else(|_| problem(path, "too large")),
        }
    };
    let mut limits = Limits {
        max_holds: count(raw.max_holds, "limits.max_holds", d.max_holds)?,
        max_holds_per_session: count(
            raw.max_holds_per_session,
            "limits.max_holds_per_session",
            d.max_holds_per_session,
        )?,
        max_body: size(raw.max_body.as_ref(), "limits.max_body", d.max_body)?,
        max_held_bytes: size(raw.max_held_bytes.as_ref(), "limits.max_held_bytes", d.max_held_bytes)?,
        max_holds_per_client: count(
            raw.max_holds_per_client,
            "limits.max_holds_per_client",
            d.max_holds_per_client,
        )?,
        max_held_bytes_per_client: size(
            raw.max_held_bytes_per_client.as_ref(),
            "limits.max_held_bytes_per_client",
            d.max_held_bytes_per_client,
        )?,
        max_header_bytes: size(
            raw.max_header_bytes.as_ref(),
            "limits.max_header_bytes",
            d.max_header_bytes as u64,
        )? as usize,
        max_headers: count(raw.max_headers, "limits.max_headers", d.max_headers)?,
        max_connections: count(raw.max_connections, "limits.max_connections", d.max_connections)?,
        h2_max_concurrent_streams: count(
            raw.h2_max_concurrent_streams,
            "limits.h2_max_concurrent_streams",
            d.h2_max_concurrent_streams as usize,
        )?
        .min(u32::MAX as usize) as u32,
        header_read_timeout: opt_duration(
            raw.header_read_timeout.as_ref(),
            "limits.header_read_timeout",
            d.header_read_timeout,
        )?,
        body_read_timeout: match opt_duration(
            raw.body_read_timeout.as_ref(),
            "limits.body_read_timeout",
            d.body_read_timeout,
        )? {
            // Zero would refuse every body, never what anyone means.
            t if t.is_zero() => return problem("limits.body_read_timeout", "must be more than 0"),
            t => t,
        },
        tls_handshake_timeout: opt_duration(
            raw.tls_handshake_timeout.as_ref(),
            "limits.tls_handshake_timeout",
            d.tls_handshake_timeout,
        )?,
        upstream_timeout: opt_duration(
            raw.upstream_timeout.as_ref(),
            "limits.upstream_timeout",
            d.upstream_timeout,
        )?,
        drain: opt_duration(raw.drain.as_ref(), "limits.drain", d.drain)?,
        max_attempts: count(raw.max_attempts, "limits.max_attempts", d.max_attempts as usize)?.min(1000) as u32,
        ceremony_rate_per_client: count(
            raw.ceremony_rate_per_client,
            "limits.ceremony_rate_per_client",
            d.ceremony_rate_per_client as usize,
        )?
        .min(u32::MAX as usize) as u32,
        ceremony_rate_per_session: count(
            raw.ceremony_rate_per_session,
            "limits.ceremony_rate_per_session",
            d.ceremony_rate_per_session as usize,
        )?
        .min(u32::MAX as usize) as u32,
        ..d
    };
    memory::limits(&raw, &mut limits)?;
    Ok(limits)
}

fn prefix(p: Option<&str>) -> Res<String> {
    let p = p.unwrap_or("/.stepup");
    let ok = p.starts_with('/')
        && p.len() > 1
        && p.trim_matches('/').split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        });
    if !ok {
        return problem(
            "stepup.prefix",
            format!("`{p}` must be an absolute path of plain segments, e.g. /.stepup"),
        );
    }
    Ok(format!("/{}/", p.trim_matches('/')))
}

fn route(r: RawRoute, at: &str) -> Res<Route> {
    if r.name.trim().is_empty() {
        return problem(format!("{at}.name"), "must not be empty");
    }
    let m = r.matcher;
    let case_insensitive = case_folding(&m, at)?;
    let (source, is_prefix) = match (m.path, m.prefix) {
        (Some(p), None) => (p, false),
        (None, Some(p)) => {
            if !p.starts_with('/') {
                return problem(format!("{at}.match.prefix"), "must start with /");
            }
            (p, true)
        }
        (Some(_), Some(_)) => return problem(format!("{at}.match"), "set either path or prefix, not both"),
        (None, None) => return problem(format!("{at}.match"), "needs a path (regex) or a prefix"),
    };
    let anchored = PathPattern::anchored(&source, is_prefix, case_insensitive);
    let field = if is_prefix { "prefix" } else { "path" };
    let regex = Regex::new(&anchored).or_else(|e| {
        problem(
            format!("{at}.match.{field}"),
            format!("invalid regex: {}", one_line(&e)),
        )
    })?;
    let methods = m
        .methods
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let up = s.to_ascii_uppercase();
            http::Method::from_bytes(up.as_bytes()).or_else(|_| {
                problem(
                    format!("{at}.match.methods[{i}]"),
                    format!("`{s}` is not an HTTP method"),
                )
            })
        })
        .collect::<Res<Vec<_>>>()?;
    let query = m
        .query
        .into_iter()
        .map(|(k, v)| {
            // A folding route folds values too: nginx's `map`, ASP.NET's
            // string compares and many hand-written handlers read
            // `action=DELETE` as `action=delete`.
            let flags = if case_insensitive { "(?i)" } else { "" };
            let re = Regex::new(&format!("{flags}^(?:{v})$")).or_else(|e| {
                problem(
                    format!("{at}.match.query.{k}"),
                    format!("invalid regex: {}", one_line(&e)),
                )
            })?;
            Ok((k, re))
        })
        .collect::<Res<Vec<_>>>()?;
    let headers = m
        .headers
        .into_iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes())
                .or_else(|_| problem(format!("{at}.match.headers.{k}"), "not a valid header name"))?;
            if k.contains('_') {
                return problem(
                    format!("{at}.match.headers.{k}"),
                    "header names with `_` are rejected at the edge and can never match",
                );
            }
            // A folding route folds values too: nginx's `map`, ASP.NET's
            // string compares and many hand-written handlers read
            // `action=DELETE` as `action=delete`.
            let flags = if case_insensitive { "(?i)" } else { "" };
            let re = Regex::new(&format!("{flags}^(?:{v})$")).or_else(|e| {
                problem(
                    format!("{at}.match.headers.{k}"),
                    format!("invalid regex: {}", one_line(&e)),
                )
            })?;
            Ok((name, re))
        })
        .collect::<Res<Vec<_>>>()?;
    let require = match r.require {
        None => Requirements::default(),
        Some(req) => {
            let d = Requirements::default();
            let approvals = req.approvals.unwrap_or(0);
            let methods = match req.methods {
                // Approval-only routes (agents cannot do MFA) need no proof method.
                None if approvals > 0 => Vec::new(),
                None => d.methods,
                Some(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        ProofMethod::parse(s).ok_or_else(|| {
                            Problem(
                                format!("{at}.require.methods[{i}]"),
                                format!("unknown proof method `{s}` (expected totp, webauthn, token or oidc)"),
                            )
                        })
                    })
                    .collect::<Res<Vec<_>>>()?,
            };
            if methods.is_empty() && approvals == 0 {
                return problem(
                    format!("{at}.require.methods"),
                    "lists no proof method and no approvals",
                );
            }
            if approvals > 16 {
                return problem(format!("{at}.require.approvals"), "at most 16");
            }
            if approvals == 0 && !req.approvers.is_empty() {
                return problem(
                    format!("{at}.require.approvers"),
                    "approvers are set but approvals is 0",
                );
            }
            let max_age = opt_duration(req.max_age.as_ref(), &format!("{at}.require.max_age"), d.max_age)?;
            let reuse = opt_duration(req.reuse.as_ref(), &format!("{at}.require.reuse"), Duration::ZERO)?;
            if reuse > Duration::from_secs(3600) {
                return problem(
                    format!("{at}.require.reuse"),
                    "at most 1h: reuse is a short sudo window",
                );
            }
            Requirements {
                methods,
                max_age,
                approvals,
                approvers: req.approvers,
                users: req.users,
                groups: req.groups,
                reuse,
                break_glass: None,
                acr: oidc::acr(req.acr, at)?,
            }
        }
    };
    let hold = match r.hold {
        None => HoldSpec::default(),
        Some(h) => {
            let d = HoldSpec::default();
            let mode = match h.mode {
                None => d.mode,
                Some(s) => HoldMode::parse(&s).ok_or_else(|| {
                    Problem(
                        format!("{at}.hold.mode"),
                        format!("unknown mode `{s}` (expected challenge, hold, auto or shadow)"),
                    )
                })?,
            };
            let timeout = opt_duration(h.timeout.as_ref(), &format!("{at}.hold.timeout"), d.timeout)?;
            if timeout.is_zero() {
                return problem(format!("{at}.hold.timeout"), "must be positive");
            }
            HoldSpec { mode, timeout }
        }
    };
    let display = r
        .display
        .into_iter()
        .enumerate()
        .map(|(i, d)| display_field(d, &format!("{at}.display[{i}]"), regex.captures_len()))
        .collect::<Res<Vec<_>>>()?;
    let when = match &r.when {
        None => Vec::new(),
        Some(v) => conditions::parse_when(v).map_err(|e| Problem(format!("{at}.when{}", e.path), e.message))?,
    };
    let body_reader = crate::policy::route_reader(&display, &when).or_else(|m| problem(at, m))?;
    let caller = match m.caller.as_deref() {
        None => None,
        Some("person") => Some(Caller::Person),
        Some("workload") => Some(Caller::Workload),
        Some(other) => {
            return problem(
                format!("{at}.match.caller"),
                format!("`{other}` is not person or workload"),
            )
        }
    };
    let mut require = require;
    require.break_glass = r.break_glass.map(|b| BreakGlass {
        reason_required: b.reason_required,
        replaces_approvals: b.replaces_approvals,
    });
    let action = r.action.unwrap_or_else(|| r.name.clone());
    let label = match r.label {
        Some(l) if l.trim().is_empty() => return problem(format!("{at}.label"), "must not be empty"),
        Some(l) => l,
        None => action.clone(),
    };
    Ok(Route {
        body_reader,
        when,
        caller,
        display,
        action,
        label,
        name: r.name,
        hosts: m.host.iter().map(|h| h.to_ascii_lowercase()).collect(),
        methods,
        path: PathPattern {
            source,
            is_prefix,
            case_insensitive,
            regex,
        },
        query,
        headers,
        deny: r.deny,
        require,
        hold,
    })
}

/// Whether a route folds case. Folding is the default (SPEC §2): Express,
/// ASP.NET, IIS and many Spring setups route `/ADMIN/x` to `/admin/x`, so
/// a case-sensitive default would fail open in front of them.
fn case_folding(m: &super::raw::RawMatch, at: &str) -> Res<bool> {
    match (m.case_sensitive, m.case_insensitive) {
        (Some(a), Some(b)) if a == b => problem(
            format!("{at}.match.case_sensitive"),
            "contradicts case_insensitive; set only case_sensitive",
        ),
        (Some(sensitive), _) => Ok(!sensitive),
        (None, Some(insensitive)) => Ok(insensitive),
        (None, None) => Ok(true),
    }
}

/// The warning `check` gives a route that opts out of case folding, located
/// at the key that opted out.
fn case_sensitive_note(m: &super::raw::RawMatch, at: &str) -> Option<Problem> {
    let key = match (m.case_sensitive, m.case_insensitive) {
        (Some(true), _) => "case_sensitive",
        (None, Some(false)) => "case_insensitive",
        _ => return None,
    };
    Some(Problem(
        format!("{at}.match.{key}"),
        "this route matches case-sensitively: an upstream that routes without regard to case \
         (Express, ASP.NET, IIS, Spring) runs `/ADMIN/...` while the route does not match it; \
         opt out only for an upstream known to be case-sensitive"
            .into(),
    ))
}

fn display_field(d: super::raw::RawDisplay, at: &str, captures: usize) -> Res<DisplayField> {
    let source = match (d.capture, d.json, d.form) {
        (Some(n), None, None) => {
            if n == 0 || n >= captures {
                return problem(
                    format!("{at}.capture"),
                    format!("the path regex has no capture group {n}"),
                );
            }
            DisplaySource::Capture(n)
        }
        (None, Some(p), None) => {
            if !(p.is_empty() || p.starts_with('/')) {
                return problem(format!("{at}.json"), "a JSON pointer starts with /");
            }
            DisplaySource::Json(p)
        }
        (None, None, Some(f)) => DisplaySource::Form(f),
        _ => return problem(at, "set exactly one of capture, json or form"),
    };
    Ok(DisplayField { label: d.label, source })
}

fn approver(a: super::raw::RawApprover, at: &str) -> Res<Approver> {
    let hex = a.key_sha256.trim();
    let mut key = [0u8; 32];
    let ok = hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && key.iter_mut().enumerate().all(|(i, out)| {
            match hex.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    *out = v;
                    true
                }
                None => false,
            }
        });
    if !ok {
        return problem(
            format!("{at}.key_sha256"),
            "must be the 64-digit hex SHA-256 of the approver's API key",
        );
    }
    if a.name.trim().is_empty() {
        return problem(format!("{at}.name"), "must not be empty");
    }
    Ok(Approver {
        name: a.name,
        groups: a.groups,
        key_sha256: key,
        totp: a.totp,
    })
}

/// regex errors span several lines with a caret diagram; a config error
/// must stay on one line.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .last()
        .unwrap_or("")
        .trim()
        .trim_start_matches("error: ")
        .to_owned()
}

mod memory;
mod oidc;
#[cfg(test)]
mod tests;
mod webauthn;

/// Break-glass that can never release anything is configured by mistake:
/// it needs the requester's own step-up, and with approvals on the route it
/// does something only where it may replace them.
fn break_glass_note(require: &crate::policy::Requirements, at: &str) -> Option<Problem> {
    let bg = require.break_glass?;
    if require.methods.is_empty() {
        return Some(Problem(
            format!("{at}.break_glass"),
            "break-glass needs the requester's own step-up, and this route lists no `require.methods`, so it can never be used".into(),
        ));
    }
    if require.approvals == 0 {
        return Some(Problem(
            format!("{at}.break_glass"),
            "this route needs no approvals, so break-glass has nothing to stand in for".into(),
        ));
    }
    if !bg.replaces_approvals {
        return Some(Problem(
            format!("{at}.break_glass"),
            "without `replaces_approvals: true` break-glass cannot stand in for this route's approvals, so it never releases anything".into(),
        ));
    }
    None
}
