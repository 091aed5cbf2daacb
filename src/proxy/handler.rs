//! The request path as one story:
//! normalize → strip → match → decide → (forward | hold → release → forward).

use super::respond::Reject;
use super::{api, gate, hygiene, ConnInfo, Gateway};
use crate::body::{full, Body, BoxError};
use crate::route::MatchRequest;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The future is boxed: its concrete type borrows across awaits, which the
/// connection's `Send` bound cannot name.
pub fn handle(
    gw: Arc<Gateway>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>> {
    Box::pin(async move {
        let mut route = String::from("none");
        let resp = match serve(&gw, &conn, req, &mut route).await {
            Ok(resp) => resp,
            Err(reject) => reject.into_response(),
        };
        gw.metrics.request(&route, resp.status().as_str());
        Ok(resp)
    })
}

/// `route` is set to the matched route's name (for metrics).
async fn serve(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    req: Request<Incoming>,
    route: &mut String,
) -> Result<Response<Body>, Reject> {
    let cfg = gw.config();
    let (mut parts, body) = req.into_parts();
    let mut body: Body = body.map_err(|e| Box::new(e) as BoxError).boxed();

    // 1. normalize: one canonical target, or 400.
    hygiene::check_header_names(&parts.headers)?;
    let target = hygiene::target(&parts)?;
    if api::owns(&cfg.stepup.prefix, &target.path) {
        *route = "stepup-api".into();
        return api::handle(gw, conn, parts, body, &target).await;
    }

    // 2. read what the gateway consumes, then strip it.
    let trusted = hygiene::is_trusted(conn.peer.ip(), &cfg.trusted_proxies);
    let client_ip = hygiene::client_ip(conn.peer.ip(), &parts.headers, &cfg.trusted_proxies);
    let token = parts.headers.get("x-stepup-token").cloned();
    let request_id = request_id(&parts.headers);
    let upgrade = hygiene::upgrade_protocol(&parts.headers);

    // 3. match, on the method as sent and on every override it carries.
    let mut methods = effective_methods(&parts.method, &parts.headers, target.query.as_deref());
    let find = |methods: &[Method]| {
        cfg.routes.find(&MatchRequest {
            host: &target.host_name,
            methods,
            path: &target.path,
            query: target.query.as_deref(),
            headers: &parts.headers,
            workload: conn.client_cert.is_some(),
        })
    };
    let mut lookup = find(&methods);
    let form = form_kind(&parts.headers);
    if let (None, true, Some(form)) = (&lookup.route, lookup.method_miss, form) {
        // Only a body that may carry `_method` is read up front.
        let bytes = buffer(body, cfg.limits.max_body).await?;
        methods.extend(form_methods(form, &bytes));
        lookup = find(&methods);
        body = full(bytes);
    }

    hygiene::strip_inbound(&mut parts.headers, trusted, cfg.identity.header.as_ref());
    hygiene::set_forwarded(&mut parts.headers, conn.peer.ip(), trusted, &target.host);
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        parts.headers.insert("x-request-id", v);
    }

    // 4. decide.
    if let Some(r) = &lookup.route {
        route.clone_from(&r.name);
    }
    match lookup.route {
        None => gate::pass_through(gw, parts, body, &target, upgrade).await,
        Some(route) if route.deny => {
            tracing::info!(route = %route.name, path = %target.path.as_str(), "denied by route");
            Err(Reject::Forbidden)
        }
        Some(route) => {
            let ctx = gate::Sensitive {
                route,
                target,
                token,
                client_ip,
                client_cert: conn.client_cert.clone(),
                request_id,
                identity: None,
            };
            gate::sensitive(gw, ctx, parts, body).await
        }
    }
}

/// The client's `X-Request-Id` when it is a sane token, else a fresh one:
/// it ties the gateway's logs and audit records to the upstream's.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(crate::ids::random_token)
}

/// The method as sent and every override a framework might
/// honour: a route listing DELETE must also catch `POST` + `X-HTTP-Method-Override: DELETE`.
fn effective_methods(method: &Method, headers: &HeaderMap, query: Option<&str>) -> Vec<Method> {
    let mut out = vec![method.clone()];
    // Django, Flask and Symfony upper-case the method before routing, so
    // `delete` is a DELETE to them.
    out.extend(parse_method(method.as_str().as_bytes()).filter(|m| m != method));
    for name in ["x-http-method-override", "x-http-method", "x-method-override"] {
        // Express reads the first item of a comma list (Node joins repeated
        // headers with commas); every item is taken here.
        for v in headers.get_all(name) {
            out.extend(v.as_bytes().split(|&b| b == b',').filter_map(parse_method));
        }
    }
    if let Some(q) = query {
        out.extend(
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == "_method")
                .filter_map(|(_, v)| parse_method(v.as_bytes())),
        );
    }
    out
}

fn parse_method(v: &[u8]) -> Option<Method> {
    let up = v.trim_ascii().to_ascii_uppercase();
    Method::from_bytes(&up).ok()
}

/// A body a framework may read a `_method` override from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    UrlEncoded,
    Multipart,
    Json,
}

fn form_kind(headers: &HeaderMap) -> Option<Form> {
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

fn form_methods(form: Form, body: &[u8]) -> Vec<Method> {
    match form {
        // `_method[]=X` and `_method[0]=X` are arrays to Express's qs
        // parser, and method-override takes their first item.
        Form::UrlEncoded => form_urlencoded::parse(body)
            .filter(|(k, _)| k == "_method" || k.starts_with("_method["))
            .filter_map(|(_, v)| parse_method(v.as_bytes()))
            .collect(),
        Form::Multipart => multipart_methods(body),
        Form::Json => json_methods(body),
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

/// A top-level `_method` string, or any string in a `_method` array
/// (Express's method-override takes the first).
fn json_methods(body: &[u8]) -> Vec<Method> {
    use serde_json::Value;
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let items = match doc.get("_method") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(Value::as_str)
        .filter_map(|s| parse_method(s.as_bytes()))
        .collect()
}

/// Reads a whole body, refusing more than `max` bytes (checked against the
/// declared length first, so an oversized upload is refused unread).
pub(super) async fn buffer(mut body: Body, max: u64) -> Result<Bytes, Reject> {
    use http_body::Body as _;
    if body.size_hint().lower() > max {
        return Err(Reject::BodyTooLarge);
    }
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            tracing::debug!(error = %e, "client body read failed");
            Reject::BadRequest("the request body could not be read")
        })?;
        if let Ok(data) = frame.into_data() {
            if (out.len() + data.len()) as u64 > max {
                return Err(Reject::BodyTooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
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
            form_methods(Form::UrlEncoded, b"x=1&_method=DELETE&_method%5B%5D=put"),
            vec![Method::DELETE, Method::PUT]
        );
        let multipart = b"--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\
            Content-Type: text/plain\r\n\r\npatch\r\n--b\r\n\
            Content-Disposition: form-data; name=\"x\"\r\n\r\nGET\r\n--b--\r\n";
        assert_eq!(form_methods(Form::Multipart, multipart), vec![Method::PATCH]);
        assert_eq!(
            form_methods(Form::Json, br#"{"_method":["delete",1,"put"]}"#),
            vec![Method::DELETE, Method::PUT]
        );
        assert!(form_methods(Form::Json, br#"[{"_method":"delete"}]"#).is_empty());
    }
}
