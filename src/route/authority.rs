//! The host a request names, in the one form `match.host` compares with.
//!
//! Upstreams read a malformed `Host` generously: nginx picks the virtual
//! host `admin.example` for `admin.example:abc`, and Express's
//! `req.hostname` says `admin.example` for `admin.example,x`. A gateway that
//! compared those strings as they are would let them past a `host:` route,
//! so anything but a plain host with an optional numeric port is refused.

use std::net::Ipv6Addr;

/// Why a `Host` or `:authority` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    #[error("empty host")]
    Empty,
    #[error("the port is not a number from 1 to 65535")]
    BadPort,
    #[error("the host is not a DNS name or an IP address")]
    BadHost,
}

/// The host name of `authority` (a `Host` header, an HTTP/2 `:authority` or
/// the authority of an absolute-form target): lower case, without its port
/// or a trailing dot (`admin.example.` is the fully qualified
/// `admin.example`, and nginx and Django drop the dot before choosing a
/// virtual host). An IPv6 literal comes back without its brackets.
pub fn host_name(authority: &str) -> Result<String, AuthorityError> {
    if authority.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or(AuthorityError::BadHost)?;
        ip.parse::<Ipv6Addr>().map_err(|_| AuthorityError::BadHost)?;
        if !after.is_empty() {
            port(after.strip_prefix(':').ok_or(AuthorityError::BadHost)?)?;
        }
        return Ok(ip.to_ascii_lowercase());
    }
    let name = match authority.split_once(':') {
        Some((name, p)) => {
            port(p)?;
            name
        }
        None => authority,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(AuthorityError::BadHost);
    }
    Ok(name.to_ascii_lowercase())
}

/// All digits, 1 to 65535. A second `:` lands here too and is refused.
fn port(p: &str) -> Result<u16, AuthorityError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthorityError::BadPort);
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(AuthorityError::BadPort),
        Ok(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_hosts_and_ports_are_read() {
        for (authority, name) in [
            ("admin.example", "admin.example"),
            ("Admin.Example:443", "admin.example"),
            ("admin.example.", "admin.example"),
            ("admin.example.:8443", "admin.example"),
            ("localhost", "localhost"),
            ("127.0.0.1:1", "127.0.0.1"),
            ("[::1]", "::1"),
            ("[2001:DB8::1]:65535", "2001:db8::1"),
            ("under_score.internal", "under_score.internal"),
        ] {
            assert_eq!(host_name(authority).as_deref(), Ok(name), "{authority}");
        }
    }

    #[test]
    fn anything_an_upstream_could_read_another_way_is_refused() {
        for authority in [
            "",
            "admin.example:abc",
            "admin.example:1:2",
            "admin.example:",
            "admin.example:0",
            "admin.example:65536",
            "admin.example:99999999999999999999",
            "admin.example:+443",
            "admin.example: 443",
            "admin.example,x",
            "a.example,b.example",
            "admin.example x",
            " admin.example",
            "admin..example",
            ".admin.example",
            "admin.example..",
            ":443",
            "user@admin.example",
            "admin%2eexample",
            "admin.example/x",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[admin.example]",
            "admin.example\\x",
            "admin.exämple",
        ] {
            assert!(host_name(authority).is_err(), "{authority:?} accepted");
        }
    }
}
