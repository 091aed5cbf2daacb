//! The upstream side: one pooled HTTP/1.1 client, bodies streamed through.

use super::hygiene;
use crate::body::{Body, BoxError};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderValue, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::histogram::Histogram;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    #[error("upstream request failed: {0}")]
    Failed(#[source] hyper_util::client::legacy::Error),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("invalid upstream target: {0}")]
    Target(#[source] http::Error),
}

#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    authority: Authority,
    timeout: Duration,
    latency: Histogram,
}

impl Upstream {
    pub fn new(authority: Authority, timeout: Duration, latency: Histogram) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Upstream {
            client,
            authority,
            timeout,
            latency,
        }
    }

    /// Sends `req` (whose URI carries only the path and query) upstream.
    /// `host` is the client's Host, preserved for virtual-hosted upstreams.
    pub async fn send(&self, mut req: Request<Body>, host: &str) -> Result<Response<Body>, ForwardError> {
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(ForwardError::Target)?;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        if let Ok(v) = HeaderValue::from_str(host) {
            req.headers_mut().insert(header::HOST, v);
        }
        let started = std::time::Instant::now();
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| ForwardError::Timeout(self.timeout))?
            .map_err(ForwardError::Failed)?;
        self.latency.observe(started.elapsed().as_secs_f64());
        let (mut parts, body) = resp.into_parts();
        if parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
            hygiene::strip_outbound(&mut parts.headers);
        }
        Ok(Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as BoxError).boxed(),
        ))
    }
}
