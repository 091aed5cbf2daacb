//! Which methods a request may be read as. Frameworks honour method
//! overrides (headers, `_method` in the query or body) and lower-case
//! methods, so a route listing DELETE must also catch every spelling an
//! upstream would route as DELETE. The set only ever widens.

pub use crate::policy::body::parse_method;
use crate::policy::body::{self, ReadError};
use http::{header, HeaderMap, HeaderName, Method};

// Built once: looking a header up by `&str` parses the name on every call.
static METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// The method as sent and every override a framework might
/// honour: a route listing DELETE must also catch `POST` + `X-HTTP-Method-Override: DELETE`.
pub fn effective_methods(method: &Method, headers: &HeaderMap, query: Option<&str>) -> Vec<Method> {
    let mut out = vec![method.clone()];
    // Django, Flask and Symfony upper-case the method before routing, so
    // `delete` is a DELETE to them.
    out.extend(parse_method(method.as_str().as_bytes()).filter(|m| m != method));
    for name in &METHOD_OVERRIDES {
        // Express reads the first item of a comma list (Node joins repeated
        // headers with commas); every item is taken here.
        for v in headers.get_all(name) {
            out.extend(v.as_bytes().split(|&b| b == b',').filter_map(parse_method));
        }
    }
    if let Some(q) = query {
        // Under every reading of the query, as `query:` predicates see it:
        // a `;`-splitting framework finds `_method` in `?x=1;_method=DELETE`.
        out.extend(
            super::query::pairs(q)
                .filter(|(k, _)| super::query::name_is(k, "_method", true))
                .filter_map(|(_, v)| parse_method(v.as_bytes())),
        );
    }
    out
}

/// A body a framework may read a `_method` override from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    UrlEncoded,
    Multipart,
    Json,
}

pub fn form_kind(headers: &HeaderMap) -> Option<Form> {
    let mut types = headers.get_all(header::CONTENT_TYPE).iter().peekable();
    if types.peek().is_none() {
        // Rack parses a POST without Content-Type as a urlencoded form.
        return Some(Form::UrlEncoded);
    }
    // Every value, not the first: which duplicate wins is up to the upstream.
    types.find_map(|v| {
        let t = String::from_utf8_lossy(v.as_bytes()).trim_start().to_ascii_lowercase();
        if t.starts_with("application/x-www-form-urlencoded") {
            Some(Form::UrlEncoded)
        } else if t.starts_with("multipart/form-data") {
            Some(Form::Multipart)
        } else if t.contains("/json") || t.contains("+json") {
            // Laravel's test for a JSON request.
            Some(Form::Json)
        } else {
            None
        }
    })
}

/// `_method` in a body, read by the same rules as a route's body reading
/// (`policy::body`), so matching and the route can never disagree. A
/// repeated `_method` is refused: frameworks differ on which copy wins.
pub fn form_methods(form: Form, body: &[u8]) -> Result<Vec<Method>, ReadError> {
    match form {
        // `_method[]=X` and `_method[0]=X` are arrays to Express's qs
        // parser, and method-override takes their first item.
        Form::UrlEncoded => body::form_method(body),
        Form::Multipart => Ok(multipart_methods(body)),
        Form::Json => body::json_method(body),
    }
}

/// `_method` in a multipart body, found without a multipart parser (so
/// without one to disagree with): the first line after the headers of
/// every part whose headers mention `_method`. Reading parts a framework
/// would not can only widen the method set.
fn multipart_methods(body: &[u8]) -> Vec<Method> {
    let mut out = Vec::new();
    let mut lines = body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    while let Some(line) = lines.next() {
        if line.windows(7).any(|w| w == b"_method") && lines.by_ref().any(<[u8]>::is_empty) {
            out.extend(lines.next().and_then(parse_method));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_widen_the_method_set() {
        let mut h = HeaderMap::new();
        h.insert("x-http-method-override", "delete".parse().expect("hv"));
        let m = effective_methods(&Method::POST, &h, Some("a=1&_method=put"));
        assert_eq!(m, vec![Method::POST, Method::DELETE, Method::PUT]);
        let lower = Method::from_bytes(b"head").expect("method");
        let m = effective_methods(&lower, &HeaderMap::new(), None);
        assert_eq!(m, vec![lower, Method::HEAD]);
        let mut h = HeaderMap::new();
        h.insert("x-method-override", "delete, GET,".parse().expect("hv"));
        let m = effective_methods(&Method::POST, &h, None);
        assert_eq!(m, vec![Method::POST, Method::DELETE, Method::GET]);
        assert_eq!(
            form_methods(Form::UrlEncoded, b"x=1&_method%5B%5D=put"),
            Ok(vec![Method::PUT])
        );
        assert_eq!(
            form_methods(Form::UrlEncoded, b"x=1&_method=DELETE&_method%5B%5D=put"),
            Err(ReadError::Ambiguous)
        );
        assert_eq!(
            form_methods(Form::UrlEncoded, b"x=1;_method=DELETE&_method=put"),
            Err(ReadError::Ambiguous)
        );
        let multipart = b"--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\
            Content-Type: text/plain\r\n\r\npatch\r\n--b\r\n\
            Content-Disposition: form-data; name=\"x\"\r\n\r\nGET\r\n--b--\r\n";
        assert_eq!(form_methods(Form::Multipart, multipart), Ok(vec![Method::PATCH]));
        assert_eq!(
            form_methods(Form::Json, br#"{"_method":["delete",1,"put"]}"#),
            Ok(vec![Method::DELETE, Method::PUT])
        );
        assert_eq!(form_methods(Form::Json, br#"[{"_method":"delete"}]"#), Ok(vec![]));
        assert_eq!(
            form_methods(Form::Json, br#"{"_method":"get","_method":"delete"}"#),
            Err(ReadError::DuplicateKey)
        );
    }
}
