//! Protocol upgrades (SPEC §2). Only WebSocket is ever tunnelled: any other
//! upgrade, `h2c` above all, would open a connection whose requests the
//! gateway never matches. A tunnel opens only once the request went through
//! its route like any other, and only when the upstream's 101 really
//! answers the client's WebSocket handshake.

use super::respond::Reject;
use crate::body::Body;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;

/// RFC 6455 §1.3: the server proves it read the key by hashing it with
/// this fixed GUID.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The client side of a WebSocket handshake: the key the upstream's 101
/// must answer, and the client connection to tunnel once it does.
pub struct Client {
    key: HeaderValue,
    on: Option<OnUpgrade>,
}

impl Client {
    /// Takes the client's upgrade out of a request that is a WebSocket
    /// handshake. Every other request, whatever upgrade it asks for, gets
    /// `None`, and its `Upgrade` header goes with the hop-by-hop ones.
    pub fn take<B>(req: &mut Request<B>) -> Option<Client> {
        let key = websocket_key(req.method(), req.version(), req.headers())?;
        Some(Client {
            key,
            on: req.extensions_mut().remove::<OnUpgrade>(),
        })
    }
}

/// The `Sec-WebSocket-Key` of an HTTP/1.1 `GET` that asks, through
/// `Connection: upgrade`, for `Upgrade: websocket` and nothing else.
pub(super) fn websocket_key(method: &Method, version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if method != Method::GET || version != Version::HTTP_11 {
        return None;
    }
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let mut upgrades = headers.get_all(header::UPGRADE).iter();
    let only = upgrades.next()?;
    if !asks || upgrades.next().is_some() || !is_websocket(only) {
        return None;
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = keys.next()?;
    // RFC 6455 §4.1: the key is 16 random bytes in base64.
    let decoded = STANDARD.decode(key.as_bytes()).ok()?;
    (keys.next().is_none() && decoded.len() == 16).then(|| key.clone())
}

fn is_websocket(v: &HeaderValue) -> bool {
    v.to_str().is_ok_and(|s| s.trim().eq_ignore_ascii_case("websocket"))
}

/// Puts back the two headers that hygiene removed as hop-by-hop, so the
/// upstream sees the WebSocket handshake the client sent.
pub fn restore(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// The `Sec-WebSocket-Accept` that answers `key`.
fn accept_for(key: &HeaderValue) -> String {
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(WEBSOCKET_GUID);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    STANDARD.encode(digest.as_ref())
}

/// Whether a 101 answers the client's handshake: `Upgrade: websocket` and
/// the accept value for the client's own key, each exactly once.
fn answers(key: &HeaderValue, headers: &HeaderMap) -> bool {
    let one = |name: header::HeaderName| {
        let mut all = headers.get_all(name).iter();
        all.next().filter(|_| all.next().is_none())
    };
    let upgrade = one(header::UPGRADE).is_some_and(is_websocket);
    let accept = one(header::SEC_WEBSOCKET_ACCEPT).is_some_and(|a| a.as_bytes() == accept_for(key).as_bytes());
    upgrade && accept
}

/// The last step of every response: a 101 goes to the client, and the
/// tunnel opens, only when it answers this client's WebSocket handshake.
/// Any other 101 (to a request that asked for no WebSocket, for another
/// protocol, with a wrong accept value, or released to someone else's
/// request) is a 502, and the client connection is closed so nothing the
/// client sends next could travel as if a tunnel were open.
pub fn deliver(mut resp: Response<Body>, client: Option<Client>) -> Response<Body> {
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return resp;
    }
    match client {
        Some(Client { key, on: Some(on) }) if answers(&key, resp.headers()) => {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(on, upstream));
            resp
        }
        _ => {
            tracing::warn!("upstream answered 101 to no WebSocket handshake of this client; refused");
            refused()
        }
    }
}

/// 502 and close.
pub fn refused() -> Response<Body> {
    let mut resp = Reject::UpstreamUnavailable.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
        tracing::debug!("upgrade did not complete");
        return;
    };
    let mut c = hyper_util::rt::TokioIo::new(c);
    let mut u = hyper_util::rt::TokioIo::new(u);
    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/chat").version(Version::HTTP_11);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    #[test]
    fn the_rfc_example_accept_value() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_for(&HeaderValue::from_static(KEY)),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn only_a_websocket_handshake_is_an_upgrade() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            ("sec-websocket-key", KEY),
        ];
        assert!(Client::take(&mut req("GET", &ws)).is_some());
        assert!(Client::take(&mut req("POST", &ws)).is_none());
        for bad in [
            vec![
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
                ("sec-websocket-key", KEY),
            ],
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket, h2c"),
                ("sec-websocket-key", KEY),
            ],
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("upgrade", "h2c"),
                ("sec-websocket-key", KEY),
            ],
            vec![
                ("connection", "close"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", KEY),
            ],
            vec![("connection", "upgrade"), ("upgrade", "websocket")],
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "c2hvcnQ="),
            ],
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", KEY),
                ("sec-websocket-key", KEY),
            ],
        ] {
            assert!(Client::take(&mut req("GET", &bad)).is_none(), "{bad:?}");
        }
    }

    fn switching(headers: &[(&str, &str)]) -> Response<Body> {
        let mut r = Response::new(crate::body::full(""));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (k, v) in headers {
            r.headers_mut().append(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        r
    }

    #[test]
    fn a_101_must_answer_the_clients_key() {
        let client = || Client {
            key: HeaderValue::from_static(KEY),
            on: None,
        };
        let good = [
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ];
        let key = HeaderValue::from_static(KEY);
        assert!(answers(&key, switching(&good).headers()));
        for bad in [
            vec![
                ("upgrade", "h2c"),
                ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ],
            vec![("upgrade", "websocket")],
            vec![
                ("upgrade", "websocket"),
                ("sec-websocket-accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ],
            vec![
                ("upgrade", "websocket"),
                ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ],
        ] {
            assert!(!answers(&key, switching(&bad).headers()), "{bad:?}");
        }
        // Without a client upgrade to join, even a correct 101 is refused.
        let resp = deliver(switching(&good), Some(client()));
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(resp.headers()[header::CONNECTION], "close");
        assert_eq!(deliver(switching(&good), None).status(), StatusCode::BAD_GATEWAY);
    }
}
