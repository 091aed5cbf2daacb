//! Where an identity JWT travels: a cookie or `Authorization: Bearer`.

use super::*;

/// Finds the identity token in a request: the cookie `cookie` if configured
/// and present, otherwise the token of an `Authorization: Bearer` header.
///
/// Returns `None` when nothing is there, and also when the request is
/// ambiguous: the same cookie (across all `Cookie` headers) or several
/// `Authorization` headers with different values, or a header that is not
/// visible ASCII. An ambiguous identity is treated as unknown rather than
/// guessed, since the gateway and the upstream might pick different ones.
pub fn token_from_request(headers: &HeaderMap, cookie: Option<&str>) -> Option<String> {
    if let Some(name) = cookie {
        match cookie_value(headers, name) {
            Lookup::Found(value) => return Some(value),
            Lookup::Ambiguous => return None,
            Lookup::Absent => {}
        }
    }
    match bearer_token(headers) {
        Lookup::Found(token) => Some(token),
        Lookup::Ambiguous | Lookup::Absent => None,
    }
}

enum Lookup {
    Absent,
    Found(String),
    Ambiguous,
}

impl Lookup {
    /// Adds one more sighting of the value; a different one makes it ambiguous.
    fn add(self, value: &str) -> Lookup {
        match self {
            Lookup::Absent => Lookup::Found(value.to_owned()),
            Lookup::Found(seen) if seen == value => Lookup::Found(seen),
            Lookup::Found(_) | Lookup::Ambiguous => Lookup::Ambiguous,
        }
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Lookup {
    // An empty name would match nameless "=value" pairs; no real cookie is
    // called that.
    if name.is_empty() {
        return Lookup::Absent;
    }
    let mut found = Lookup::Absent;
    // HTTP/2 may split cookies over several `cookie` fields (RFC 9113
    // §8.2.3); all of them count.
    for header in headers.get_all(COOKIE) {
        let Ok(header) = header.to_str() else {
            return Lookup::Ambiguous;
        };
        for pair in header.split(';') {
            let Some((pair_name, value)) = pair.split_once('=') else {
                continue;
            };
            // Cookie names are case-sensitive (RFC 6265 §5.4).
            if pair_name.trim_matches([' ', '\t']) != name {
                continue;
            }
            let value = value.trim_matches([' ', '\t']);
            // RFC 6265 allows the value in double quotes.
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            // An empty value is a cleared cookie, not a competing token.
            if !value.is_empty() {
                found = found.add(value);
            }
        }
    }
    found
}

fn bearer_token(headers: &HeaderMap) -> Lookup {
    let mut raw = Lookup::Absent;
    for header in headers.get_all(AUTHORIZATION) {
        let Ok(header) = header.to_str() else {
            return Lookup::Ambiguous;
        };
        raw = raw.add(header);
    }
    let Lookup::Found(header) = raw else {
        return raw;
    };
    // RFC 6750 §2.1: "Bearer" 1*SP b64token; the scheme is case-insensitive.
    let Some((scheme, token)) = header.split_once(' ') else {
        return Lookup::Absent;
    };
    let token = token.trim_start_matches(' ').trim_end_matches([' ', '\t']);
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains([' ', '\t']) {
        return Lookup::Absent;
    }
    Lookup::Found(token.to_owned())
}
