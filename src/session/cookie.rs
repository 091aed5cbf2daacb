//! The one cookie reader (SPEC §3): the session and the identity cookie are
//! read the way the upstream frameworks read them, so the `sid` a proof is
//! bound to is the session the upstream acts on.
//!
//! Express (`cookie`) and Flask (Werkzeug) trim the pair's name, take the
//! first pair of a name, remove one pair of surrounding quotes, and Express
//! percent-decodes the value (keeping it raw when that fails). Where they
//! would pick between copies, the gateway does not pick: a name that occurs
//! more than once, under any spelling another framework could fold into it,
//! is refused.

use super::SessionError;
use http::{header, HeaderMap};
use std::borrow::Cow;

/// The value of cookie `name`, or `None` when the request does not carry
/// it. Borrowed from the headers unless unquoting or decoding changed it.
///
/// # Errors
///
/// [`SessionError::Ambiguous`] when the name occurs more than once under
/// any spelling (`SID`, ` SID `, `sid`, `"SID"`, `S%49D`, a value-less
/// `SID`), or the value is quoted with backslash escapes (Werkzeug
/// unescapes them, Express does not).
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<Cow<'a, [u8]>>, SessionError> {
    // An empty name would match nameless "=value" pairs; no real cookie is
    // called that.
    if name.is_empty() {
        return Ok(None);
    }
    let mut seen = 0usize;
    let mut found: Option<&'a [u8]> = None;
    // HTTP/2 may split cookies over several `cookie` fields (RFC 9113
    // §8.2.3); all of them count.
    for h in headers.get_all(header::COOKIE) {
        for pair in h.as_bytes().split(|&b| b == b';') {
            let (raw_name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], Some(&pair[eq + 1..])),
                None => (pair, None),
            };
            let exact = trim(raw_name) == name.as_bytes();
            if !exact && !same_spelling(raw_name, name) {
                continue;
            }
            seen += 1;
            if seen > 1 {
                return Err(SessionError::Ambiguous);
            }
            if exact {
                found = value;
            }
        }
    }
    let Some(value) = found else {
        return Ok(None);
    };
    let value = trim(value);
    let value = match value {
        [b'"', inner @ .., b'"'] => {
            if inner.contains(&b'\\') {
                return Err(SessionError::Ambiguous);
            }
            inner
        }
        v => v,
    };
    if value.is_empty() {
        // A cleared cookie: no session.
        return Ok(None);
    }
    Ok(Some(percent_decode(value)))
}

/// Whitespace that some framework trims from a cookie name or value:
/// Express and Werkzeug trim space and tab; JavaScript's `trim()` and
/// Python's `strip()` also take vertical tab, form feed, and (on headers
/// decoded as Latin-1) NEL and NBSP.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0b | 0x0c | 0x85 | 0xa0)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_space(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_space(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Whether a pair name is `name` as some framework could read it: trimmed,
/// unquoted, percent-decoded, or in another case (ASP.NET compares cookie
/// names without regard to case).
fn same_spelling(raw: &[u8], name: &str) -> bool {
    let t = trim(raw);
    let t = match t {
        [b'"', inner @ .., b'"'] => trim(inner),
        t => t,
    };
    percent_decode(t).eq_ignore_ascii_case(name.as_bytes())
}

/// `decodeURIComponent` as Express's cookie parser applies it: every `%`
/// must start a two-digit escape and the result must be UTF-8, or the value
/// stays as it was.
fn percent_decode(v: &[u8]) -> Cow<'_, [u8]> {
    if !v.contains(&b'%') {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        if b == b'%' {
            let hex = |j: usize| v.get(j).and_then(|c| (*c as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Cow::Borrowed(v);
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if std::str::from_utf8(&out).is_err() {
        return Cow::Borrowed(v);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(values: &[&[u8]]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(header::COOKIE, HeaderValue::from_bytes(v).expect("hv"));
        }
        m
    }

    fn get(values: &[&[u8]]) -> Result<Option<Vec<u8>>, SessionError> {
        read(&h(values), "SESSIONID").map(|o| o.map(Cow::into_owned))
    }

    #[test]
    fn reads_as_express_and_werkzeug_do() {
        assert_eq!(get(&[b"a=1; SESSIONID=abc; b=2"]), Ok(Some(b"abc".to_vec())));
        assert_eq!(get(&[b"SESSIONID =abc"]), Ok(Some(b"abc".to_vec())), "name trimmed");
        assert_eq!(get(&[b" SESSIONID= abc "]), Ok(Some(b"abc".to_vec())));
        assert_eq!(get(&[b"SESSIONID=\"abc\""]), Ok(Some(b"abc".to_vec())), "quotes");
        assert_eq!(get(&[b"SESSIONID=%61bc"]), Ok(Some(b"abc".to_vec())), "decoded");
        assert_eq!(get(&[b"SESSIONID=\"%61bc\""]), Ok(Some(b"abc".to_vec())));
        assert_eq!(get(&[b"SESSIONID=a%zzc"]), Ok(Some(b"a%zzc".to_vec())), "kept raw");
        assert_eq!(get(&[b"SESSIONID=a%ffc"]), Ok(Some(b"a%ffc".to_vec())), "not UTF-8");
        assert_eq!(get(&[b"SESSIONID=a+b"]), Ok(Some(b"a+b".to_vec())));
        assert_eq!(get(&[b"SESSIONID="]), Ok(None));
        assert_eq!(get(&[b"SESSIONID=\"\""]), Ok(None));
        assert_eq!(get(&[b"XSESSIONID=1; SESSIONIDX=2"]), Ok(None));
        assert_eq!(get(&[]), Ok(None));
        assert_eq!(get(&[b"x=1", b"SESSIONID=abc"]), Ok(Some(b"abc".to_vec())), "crumbs");
    }

    #[test]
    fn any_second_spelling_is_refused() {
        for cookie in [
            &b"SESSIONID =bob; SESSIONID=junk"[..],
            b"SESSIONID=a; SESSIONID=a",
            b"SESSIONID=a; sessionid=b",
            b"SESSIONID=a; \"SESSIONID\"=b",
            b"SESSIONID=a; SESSION%49D=b",
            b"SESSIONID; SESSIONID=b",
            b"SESSIONID=; SESSIONID=b",
            b"SESSIONID=a;\xa0SESSIONID\xa0=b",
        ] {
            assert_eq!(
                get(&[cookie]),
                Err(SessionError::Ambiguous),
                "{}",
                String::from_utf8_lossy(cookie)
            );
        }
        assert_eq!(get(&[b"SESSIONID=a", b"SESSIONID=b"]), Err(SessionError::Ambiguous));
        assert_eq!(get(&[b"SESSIONID=\"a\\073b\""]), Err(SessionError::Ambiguous));
    }

    #[test]
    fn an_odd_spelling_alone_is_no_session() {
        // The gateway sees no session and refuses a sensitive request; it
        // never binds a proof to a value the common frameworks ignore.
        assert_eq!(get(&[b"sessionid=abc"]), Ok(None));
        assert_eq!(get(&[b"SESSION%49D=abc"]), Ok(None));
    }

    #[test]
    fn the_same_session_in_any_spelling_has_one_value() {
        let plain = get(&[b"SESSIONID=s3cr3t-v"]);
        for cookie in [
            &b"SESSIONID=\"s3cr3t-v\""[..],
            b"SESSIONID=%733cr3t-v",
            b"  SESSIONID\t=\ts3cr3t-v ",
        ] {
            assert_eq!(get(&[cookie]), plain);
        }
    }
}
