//! Header and target hygiene (SPEC §2). Everything a client could use to
//! make the gateway and the upstream disagree is either rejected here or
//! replaced by the gateway's own value.

use super::respond::Reject;
use crate::config::Config;
use crate::route::authority;
use crate::route::canonical::{canonicalize, CanonicalPath};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use ipnet::IpNet;
use std::net::IpAddr;

/// What was asked, in the one form both the matcher and the upstream see.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: CanonicalPath,
    pub query: Option<String>,
    /// `Host`/`:authority` as received (port kept), for `txn` and upstream.
    pub host: String,
    /// Lower-case, port and trailing dots removed: what `match.host`
    /// compares with.
    pub host_name: String,
}

impl Target {
    /// The request target forwarded upstream: canonical path plus the
    /// original query, never a fragment.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path.as_str()),
            None => self.path.as_str().to_owned(),
        }
    }
}

// Header names are built once, not parsed from text on every request.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

// The lists below are tested by name, once per header present, rather than
// removed one by one: a removal hashes the name even when it is absent, and
// a request carries far fewer headers than these lists name.

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy ones).
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            // Only ever meaningful with an h2c upgrade, which never passes.
            | "http2-settings"
    )
}

/// What only the gateway may send upstream, and URL overrides some
/// frameworks route by.
fn is_stripped(name: &str) -> bool {
    matches!(
        name,
        "x-stepup-assertion" | "x-stepup-token" | "x-original-url" | "x-rewrite-url"
    )
}

/// The forwarding family: what only a trusted proxy may tell the upstream
/// about the client and the original URL. Frameworks build links, redirects,
/// client addresses and even routes from any of them (`X-Forwarded-Prefix`,
/// `-Uri`, `-Port`, ...), so from anyone else the whole family goes, not
/// only the three the gateway sets.
fn is_forwarding(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || matches!(
            name,
            "forwarded" | "x-real-ip" | "true-client-ip" | "x-client-ip" | "x-original-forwarded-for"
        )
}

pub fn target(parts: &Parts) -> Result<Target, Reject> {
    let path = canonicalize(parts.uri.path()).map_err(|_| Reject::BadRequest("ambiguous request path"))?;
    let query = parts.uri.query().map(str::to_owned);
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err(Reject::BadRequest("more than one Host header"));
    }
    let header_host = match header_host {
        Some(v) => Some(v.to_str().map_err(|_| Reject::BadRequest("invalid Host header"))?),
        None => None,
    };
    let authority = parts.uri.authority().map(|a| a.as_str());
    let host = match (authority, header_host) {
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => {
            return Err(Reject::BadRequest("Host disagrees with the request authority"))
        }
        (Some(a), _) => a,
        (None, Some(h)) => h,
        (None, None) => return Err(Reject::BadRequest("missing Host")),
    };
    let host_name = authority::host_name(host).map_err(|e| {
        tracing::debug!(error = %e, "refused Host");
        Reject::BadRequest("invalid Host header")
    })?;
    Ok(Target {
        path,
        query,
        host: host.to_owned(),
        host_name,
    })
}

/// Headers the gateway reads or relies on whatever the configuration:
/// framing, the host, the body's type, the session and identity carriers,
/// the up-front token, method overrides and the WebSocket key.
fn is_read_by_gateway(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-type"
            | "content-length"
            | "content-encoding"
            | "transfer-encoding"
            | "cookie"
            | "authorization"
            | "x-stepup-token"
            | "x-http-method-override"
            | "x-http-method"
            | "x-method-override"
            | "sec-websocket-key"
    )
}

/// `Connection` makes the headers it names hop-by-hop, so they are removed
/// before the request goes upstream. Naming one the gateway reads would let
/// the gateway decide on a header the upstream never sees (a JSON body
/// checked, then forwarded without its type): refused.
pub fn check_connection(headers: &HeaderMap, cfg: &Config) -> Result<(), Reject> {
    let configured = |name: &HeaderName| {
        cfg.session.header.as_ref() == Some(name)
            || cfg.identity.header.as_ref() == Some(name)
            || cfg
                .routes
                .routes()
                .iter()
                .any(|r| r.headers.iter().any(|(n, _)| n == name))
    };
    for token in headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let token = token.trim();
        if token.is_empty()
            || token.eq_ignore_ascii_case("close")
            || token.eq_ignore_ascii_case("keep-alive")
            || token.eq_ignore_ascii_case("upgrade")
        {
            continue;
        }
        // A token that is no header name cannot remove a header.
        let Ok(name) = HeaderName::from_bytes(token.as_bytes()) else {
            continue;
        };
        if is_read_by_gateway(name.as_str()) || configured(&name) {
            return Err(Reject::BadRequest("Connection names a header the gateway reads"));
        }
    }
    Ok(())
}

/// HTTP/2 clients may split `Cookie` into crumbs, one header each (RFC 9113
/// §8.2.3). They are joined with `; ` into the one header an HTTP/1.1
/// upstream expects, before the gateway reads its own session from them, so
/// the gateway and the upstream read the same cookie string (an HTTP/1.1
/// framework may take only the first `Cookie` line).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut all = headers.get_all(header::COOKIE).iter();
    if all.next().is_none() || all.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    // Every part was a valid value and "; " is too, so this cannot fail.
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// CGI/WSGI upstreams fold `_` into `-`, so `X_StepUp_Assertion` would
/// arrive as the header the gateway signs. Refuse them all.
pub fn check_header_names(headers: &HeaderMap) -> Result<(), Reject> {
    if headers.keys().any(|k| k.as_str().contains('_')) {
        return Err(Reject::BadRequest("header names must not contain `_`"));
    }
    Ok(())
}

pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&peer))
}

/// The client's address: the peer, or when the peer is a trusted proxy the
/// right-most untrusted hop it reported.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    client_addr(peer, headers, trusted).unwrap_or(peer)
}

/// The client's address for IP conditions (SPEC §3): walking
/// `X-Forwarded-For` from the right past trusted proxies, with ports and
/// IPv6 brackets stripped. `None` (unknown) when an entry on the way does
/// not parse (`unknown`, a quoted address, garbage): taking an earlier,
/// attacker-written entry instead would hand the address to the attacker.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let text = value.to_str().ok()?;
        for entry in text.rsplit(',') {
            let ip = forwarded_entry(entry)?;
            if !is_trusted(ip, trusted) {
                return Some(ip);
            }
        }
    }
    Some(peer)
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port`, `[v6]` or `[v6]:port`.
fn forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim_matches([' ', '\t']);
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = entry.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// Removes every header `doomed` names, and every header a `Connection`
/// header lists (hop-by-hop by declaration).
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    // Usually one or two names go (`Connection` itself): kept on the stack.
    let mut few: [Option<HeaderName>; 4] = Default::default();
    let mut more: Vec<HeaderName> = Vec::new();
    let mut n = 0;
    let mut doom = |name: HeaderName| {
        match few.get_mut(n) {
            Some(slot) => *slot = Some(name),
            None => more.push(name),
        }
        n += 1;
    };
    for token in headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let token = token.trim();
        // The usual tokens name headers that are hop-by-hop anyway.
        if token.eq_ignore_ascii_case("keep-alive") || token.eq_ignore_ascii_case("upgrade") {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            doom(name);
        }
    }
    for name in headers.keys() {
        if doomed(name.as_str()) {
            doom(name.clone());
        }
    }
    for name in few.into_iter().flatten().chain(more) {
        headers.remove(name);
    }
}

/// Removes what must never reach the upstream. `extra_untrusted` names
/// headers only a trusted proxy may set (the identity header).
pub fn strip_inbound(headers: &mut HeaderMap, trusted_peer: bool, extra_untrusted: Option<&HeaderName>) {
    let extra = extra_untrusted.map(HeaderName::as_str);
    remove_where(headers, |n| {
        // hyper frames the forwarded body itself; a copied length could
        // disagree with the bytes actually sent.
        is_hop_by_hop(n)
            || is_stripped(n)
            || n == "content-length"
            || (!trusted_peer && (is_forwarding(n) || Some(n) == extra))
    });
}

/// Takes the gateway's own cookies (the approver sign-in) out of the
/// `Cookie` headers: they are for the gateway, and the upstream, which
/// shares the host, must never see them.
pub fn strip_gateway_cookies(headers: &mut HeaderMap) {
    let name = crate::session::approver::COOKIE;
    let ours = |pair: &str| {
        pair.trim()
            .strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    if !headers
        .get_all(header::COOKIE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(';').any(ours)))
    {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| match v.to_str() {
            Ok(text) => {
                let rest: Vec<&str> = text.split(';').filter(|p| !ours(p)).map(str::trim).collect();
                (!rest.is_empty())
                    .then(|| HeaderValue::from_str(&rest.join("; ")).ok())
                    .flatten()
            }
            // Not text: cannot hold our cookie in a readable form; keep as is.
            Err(_) => Some(v.clone()),
        })
        .collect();
    headers.remove(header::COOKIE);
    for v in kept {
        headers.append(header::COOKIE, v);
    }
}

/// Sets `X-Forwarded-*`. Runs after `strip_inbound`, so a `Connection`
/// header can never remove what the gateway adds.
pub fn set_forwarded(headers: &mut HeaderMap, peer: IpAddr, trusted_peer: bool, host: &str) {
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if trusted_peer => HeaderValue::from_str(&format!("{prev}, {peer}")).ok(),
        _ => Some(ip_value(peer)),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !(trusted_peer && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    }
    if !(trusted_peer && headers.contains_key(&X_FORWARDED_HOST)) {
        if let Ok(v) = HeaderValue::from_str(host) {
            headers.insert(X_FORWARDED_HOST.clone(), v);
        }
    }
}

/// An address as a header value; IPv4 without the formatting machinery,
/// which costs more than the rest of `set_forwarded`.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    };
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Hop-by-hop headers in an upstream response are about the upstream
/// connection, not the client's (and are illegal over HTTP/2).
pub fn strip_outbound(headers: &mut HeaderMap) {
    remove_where(headers, is_hop_by_hop);
    strip_gateway_reflections(headers);
}

/// An upstream that echoes request headers (debug pages, reflective
/// frameworks) would hand the client a live assertion it could replay
/// elsewhere, and one that sets a cookie under the gateway's own name would
/// plant an approver cookie in the browser. Neither may come back; this runs
/// on 101 responses too, whose other headers must stay as they are.
pub fn strip_gateway_reflections(headers: &mut HeaderMap) {
    headers.remove("x-stepup-assertion");
    if !headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !sets_gateway_cookie(v.as_bytes()))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for v in kept {
        headers.append(header::SET_COOKIE, v);
    }
}

fn sets_gateway_cookie(value: &[u8]) -> bool {
    let name_end = value.iter().position(|&b| b == b'=').unwrap_or(value.len());
    let name = value[..name_end].trim_ascii();
    // Browsers compare cookie names exactly, but a case variant is no
    // business of the upstream's either.
    name.eq_ignore_ascii_case(crate::session::approver::COOKIE.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cannot_remove_gateway_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "x-forwarded-for, keep-alive, x-custom".parse().expect("hv"),
        );
        h.insert("x-custom", "1".parse().expect("hv"));
        h.insert("x-forwarded-for", "6.6.6.6".parse().expect("hv"));
        h.insert("x-stepup-assertion", "forged".parse().expect("hv"));
        h.insert("x-original-url", "/admin".parse().expect("hv"));
        strip_inbound(&mut h, false, None);
        set_forwarded(&mut h, "192.0.2.7".parse().expect("ip"), false, "example");
        assert!(h.get("x-custom").is_none());
        assert!(h.get("x-stepup-assertion").is_none());
        assert!(h.get("x-original-url").is_none());
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "example");
    }

    #[test]
    fn trusted_proxies_extend_the_chain() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.1.1.1".parse().expect("hv"));
        h.insert("x-forwarded-proto", "http".parse().expect("hv"));
        let peer: IpAddr = "10.2.2.2".parse().expect("ip");
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        let outsider: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(client_ip(outsider, &h, &trusted), outsider);
        strip_inbound(&mut h, true, None);
        set_forwarded(&mut h, peer, true, "example");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.1.1.1, 10.2.2.2");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn the_approver_cookie_never_reaches_the_upstream() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; __Host-stepgate-approver=v1.x.y.z; b=2".parse().expect("hv"),
        );
        h.append(header::COOKIE, "__Host-stepgate-approver=v1.q".parse().expect("hv"));
        h.append(header::COOKIE, "SESSIONID=s".parse().expect("hv"));
        strip_gateway_cookies(&mut h);
        let left: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(left, ["a=1; b=2", "SESSIONID=s"]);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_value(ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn every_listed_header_is_removed_in_any_case() {
        let mut h = HeaderMap::new();
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "proxy-authenticate",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "http2-settings",
            "x-stepup-assertion",
            "x-stepup-token",
            "x-original-url",
            "x-rewrite-url",
            "content-length",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
            "x-real-ip",
            "x-forwarded-prefix",
            "x-forwarded-uri",
            "x-forwarded-port",
            "x-forwarded-server",
            "x-forwarded-client-cert",
            "true-client-ip",
            "x-client-ip",
            "x-original-forwarded-for",
            "x-identity",
            "x-listed",
            "x-kept",
        ] {
            h.append(HeaderName::from_static(name), "1".parse().expect("hv"));
        }
        h.append(header::CONNECTION, "close, X-Listed".parse().expect("hv"));
        let identity = HeaderName::from_static("x-identity");
        let mut untrusted = h.clone();
        strip_inbound(&mut untrusted, false, Some(&identity));
        let left: Vec<&str> = untrusted.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
        let mut trusted = h.clone();
        strip_inbound(&mut trusted, true, Some(&identity));
        let mut left: Vec<&str> = trusted.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "forwarded",
                "true-client-ip",
                "x-client-ip",
                "x-forwarded-client-cert",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-port",
                "x-forwarded-prefix",
                "x-forwarded-proto",
                "x-forwarded-server",
                "x-forwarded-uri",
                "x-identity",
                "x-kept",
                "x-original-forwarded-for",
                "x-real-ip"
            ]
        );
        strip_outbound(&mut h);
        assert!(h.get("x-listed").is_none() && h.get("keep-alive").is_none() && h.get("te").is_none());
        assert!(
            h.get("x-stepup-token").is_some(),
            "responses keep non-hop-by-hop headers"
        );
    }

    #[test]
    fn responses_never_carry_the_assertion_or_the_gateways_cookies() {
        let mut h = HeaderMap::new();
        h.insert("x-stepup-assertion", "eyJ.reflected.sig".parse().expect("hv"));
        h.append(header::SET_COOKIE, "app=1; Path=/".parse().expect("hv"));
        h.append(
            header::SET_COOKIE,
            " __Host-stepgate-approver=forged; Path=/; Secure".parse().expect("hv"),
        );
        h.append(header::SET_COOKIE, "__HOST-STEPGATE-APPROVER=x".parse().expect("hv"));
        h.append(header::SET_COOKIE, "other=2".parse().expect("hv"));
        strip_outbound(&mut h);
        assert!(h.get("x-stepup-assertion").is_none());
        let cookies: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["app=1; Path=/", "other=2"]);
    }

    #[test]
    fn cookie_crumbs_become_one_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1".parse().expect("hv"));
        join_cookies(&mut h);
        assert_eq!(h[header::COOKIE], "a=1");
        h.append(header::COOKIE, "SESSIONID=s".parse().expect("hv"));
        h.append(header::COOKIE, "b=2; c=3".parse().expect("hv"));
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; SESSIONID=s; b=2; c=3"]);
    }

    #[test]
    fn underscore_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.insert("x_stepup_assertion", "x".parse().expect("hv"));
        assert!(check_header_names(&h).is_err());
    }

    #[test]
    fn host_must_agree_with_authority() {
        let req = http::Request::builder()
            .uri("https://a.example/x")
            .header("host", "b.example")
            .body(())
            .expect("request");
        let (parts, _) = req.into_parts();
        assert!(target(&parts).is_err());
        let req = http::Request::builder()
            .uri("https://a.example:8443/x/../y?q=1")
            .header("host", "A.example:8443")
            .body(())
            .expect("request");
        let (parts, _) = req.into_parts();
        let t = target(&parts).expect("target");
        assert_eq!(t.host_name, "a.example");
        assert_eq!(t.path_and_query(), "/y?q=1");
        let req = http::Request::builder()
            .uri("/x")
            .header("host", "A.Example.:8443")
            .body(())
            .expect("request");
        let (parts, _) = req.into_parts();
        let t = target(&parts).expect("target");
        assert_eq!(t.host_name, "a.example");
        assert_eq!(t.host, "A.Example.:8443", "forwarded as received");
    }

    #[test]
    fn forwarded_hops_strip_ports_and_brackets_and_an_unparsable_one_is_unknown() {
        let trusted: Vec<IpNet> = vec!["10.9.0.0/16".parse().expect("net")];
        let peer: IpAddr = "10.9.0.1".parse().expect("ip");
        let addr = |xff: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", xff.parse().expect("hv"));
            client_addr(peer, &h, &trusted)
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        assert_eq!(addr("203.0.113.9"), ip("203.0.113.9"));
        assert_eq!(addr("10.1.2.3, 203.0.113.9:4711"), ip("203.0.113.9"));
        assert_eq!(addr("10.1.2.3, [2001:db8::7]:443"), ip("2001:db8::7"));
        assert_eq!(addr("10.1.2.3, [2001:db8::7]"), ip("2001:db8::7"));
        assert_eq!(addr("203.0.113.9, 10.9.0.5"), ip("203.0.113.9"), "trusted hops skipped");
        for bad in [
            "10.1.2.3, unknown",
            "10.1.2.3, \"203.0.113.9\"",
            "10.1.2.3, _hidden",
            "10.1.2.3, ",
            "10.1.2.3, 1.2.3.4:x",
        ] {
            assert_eq!(addr(bad), None, "{bad}");
        }
        let outsider: IpAddr = "198.51.100.1".parse().expect("ip");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "unknown".parse().expect("hv"));
        assert_eq!(
            client_addr(outsider, &h, &trusted),
            Some(outsider),
            "untrusted peers are the client"
        );
    }
}
