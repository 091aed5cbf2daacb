//! Where an identity JWT travels: a cookie or `Authorization: Bearer`.

use super::*;
use http::header::AUTHORIZATION;

/// Finds the identity token in a request: the cookie `cookie` if configured
/// and present (read by the session's own cookie reader,
/// [`crate::session::cookie::read`]), otherwise the token of an
/// `Authorization: Bearer` header.
///
/// # Errors
///
/// [`IdentityError::AmbiguousToken`] when the request carries the cookie
/// more than once under any spelling, several `Authorization` headers with
/// different values, or a header that is not visible ASCII: the gateway and
/// the upstream might pick different copies, so nothing is picked.
pub fn token_from_request(headers: &HeaderMap, cookie: Option<&str>) -> Result<Option<String>, IdentityError> {
    if let Some(name) = cookie {
        match crate::session::cookie::read(headers, name) {
            Ok(Some(value)) => {
                let value = std::str::from_utf8(&value).map_err(|_| IdentityError::AmbiguousToken)?;
                return Ok(Some(value.to_owned()));
            }
            Ok(None) => {}
            Err(_) => return Err(IdentityError::AmbiguousToken),
        }
    }
    match bearer_token(headers) {
        Lookup::Found(token) => Ok(Some(token)),
        Lookup::Absent => Ok(None),
        Lookup::Ambiguous => Err(IdentityError::AmbiguousToken),
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
