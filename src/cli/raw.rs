//! `explain --raw`: a request given as the bytes a client sends, read the
//! way the gateway's HTTP/1.1 server (hyper, on httparse) reads them. Only
//! bytes can carry what the gateway must refuse or see through: a broken
//! escape, a backslash, an absolute-form target, a second or odd `Host`.
//! A URL on the command line is parsed, and so cleaned, before explain
//! could look at it.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Uri, Version};

/// hyper's limit on a request target.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

pub enum Read {
    /// A head the server accepts, and the body its `Content-Length` frames.
    Request { parts: Box<Parts>, body: Vec<u8> },
    /// The server refuses it with a bare status before the gateway sees it.
    Refused { status: u16, reason: String },
}

fn refused(status: u16, reason: impl Into<String>) -> Result<Read, String> {
    Ok(Read::Refused {
        status,
        reason: reason.into(),
    })
}

/// `Err` is input explain cannot answer for: a head that has not ended, a
/// body shorter than it says, a chunked body.
pub fn read(bytes: &[u8], max_headers: usize) -> Result<Read, String> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err("the request head does not end (an empty line, CRLF CRLF, ends it)".into())
        }
        Err(httparse::Error::TooManyHeaders) => return refused(431, "more header lines than limits.max_headers"),
        Err(e) => return refused(400, e.to_string()),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return refused(400, "an incomplete request line");
    };
    if target.len() > MAX_URI_LEN {
        return refused(414, "the request target is too long");
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return refused(400, "an invalid method");
    };
    let Ok(uri) = Uri::try_from(target.as_bytes()) else {
        return refused(400, "an invalid request target");
    };
    let http11 = version == 1;
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = if http11 { Version::HTTP_11 } else { Version::HTTP_10 };
    let (mut parts, ()) = request.into_parts();

    // Body framing as hyper decides it (RFC 9112 §6.3).
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return refused(400, format!("an invalid header line `{}`", h.name));
        };
        if name == TRANSFER_ENCODING {
            if !http11 {
                return refused(400, "Transfer-Encoding in an HTTP/1.0 request");
            }
            let last = value.to_str().ok().and_then(|v| v.rsplit(',').next());
            chunked = Some(last.is_some_and(|l| l.trim().eq_ignore_ascii_case("chunked")));
        } else if name == CONTENT_LENGTH && chunked.is_none() {
            let text = value.as_bytes();
            let parsed = (!text.is_empty() && text.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(text).ok()?.parse::<u64>().ok())
                .flatten();
            match (parsed, length) {
                (None, _) => return refused(400, "an invalid Content-Length"),
                (Some(n), Some(prev)) if n != prev => return refused(400, "Content-Length values that differ"),
                (Some(_), Some(_)) => continue,
                (Some(n), None) => length = Some(n),
            }
        }
        parts.headers.append(name, value);
    }
    match chunked {
        Some(false) => return refused(400, "a Transfer-Encoding that does not end in chunked"),
        Some(true) => {
            return Err("explain reads a body framed by Content-Length; give the decoded body that way".into())
        }
        None => {}
    }
    let rest = &bytes[head_len..];
    let len = usize::try_from(length.unwrap_or(0)).unwrap_or(usize::MAX);
    // Bytes after the body would be the connection's next request.
    let Some(body) = rest.get(..len) else {
        return Err(format!(
            "the body has {} bytes; its Content-Length says {len}",
            rest.len()
        ));
    };
    Ok(Read::Request {
        parts: Box::new(parts),
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(bytes: &[u8]) -> (Parts, Vec<u8>) {
        match read(bytes, 100) {
            Ok(Read::Request { parts, body }) => (*parts, body),
            Ok(Read::Refused { status, reason }) => panic!("refused {status}: {reason}"),
            Err(e) => panic!("{e}"),
        }
    }

    fn status(bytes: &[u8]) -> u16 {
        match read(bytes, 100) {
            Ok(Read::Refused { status, .. }) => status,
            Ok(Read::Request { .. }) => 0,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_head_and_its_body_are_read_as_sent() {
        let (p, body) =
            parts(b"post https://A.example/x%2f?q HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 3\r\n\r\nabcNEXT");
        assert_eq!(
            p.method.as_str(),
            "post",
            "the method keeps its case, as hyper keeps it"
        );
        assert_eq!(p.uri.authority().map(|a| a.as_str()), Some("A.example"));
        assert_eq!(p.uri.path(), "/x%2f");
        assert_eq!(p.headers.get_all("host").iter().count(), 2);
        assert_eq!(body, b"abc");
    }

    #[test]
    fn what_the_server_refuses_is_refused_with_its_status() {
        assert_eq!(status(b"GET /a\xffb HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://a:1:2/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\ncontent-length: +1\r\n\r\na"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\n\r\n"), 0);
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\n\r\n", 1),
            Ok(Read::Refused { status: 431, .. })
        ));
    }

    #[test]
    fn input_explain_cannot_answer_for_is_an_error() {
        assert!(read(b"GET / HTTP/1.1\r\nhost: a\r\n", 100).is_err());
        assert!(read(b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nab", 100).is_err());
        assert!(read(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 100).is_err());
    }
}
