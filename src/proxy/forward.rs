//! The upstream side: HTTP/1.1 connections kept in a small pool of our own,
//! driven by the request that uses them, bodies streamed through.
//!
//! A pooled client that runs each upstream connection as its own task costs
//! several task wake-ups per request (request handed over, response handed
//! back, body chunks relayed, connection returned). Here the task serving the
//! request polls the upstream connection itself, first while waiting for the
//! response head and then from the response body, so bytes move between the
//! two sockets without another task in between. A connection goes back to
//! the pool only once its response body has been read to the end.
//!
//! An `https://` upstream is the same pool over TLS sockets (see `dial`).

mod dial;

use crate::body::{Body, BoxError};
use bytes::Bytes;
use dial::{Dialer, UpIo};
use http::uri::Authority;
use http::{header, HeaderValue, Request, Response, Version};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    #[error("upstream connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The handshake failed: most often the upstream's certificate is not
    /// from the configured CA or does not name the upstream.
    #[error("upstream TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    #[error("upstream request failed: {0}")]
    Failed(#[source] hyper::Error),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream switched protocols on a request that asked for no upgrade")]
    UnaskedUpgrade,
}

/// Idle connections older than this are closed rather than reused: the
/// upstream may have timed them out already.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_IDLE: usize = 256;

type Conn = http1::Connection<TokioIo<UpIo>, Body>;

/// One upstream HTTP/1.1 connection: the sending half and the connection
/// future that does its I/O, polled by whoever holds it.
struct UpConn {
    tx: http1::SendRequest<Body>,
    conn: Conn,
    /// The pool shard of the thread that opened it, whose runtime's reactor
    /// its socket is registered with; it goes back there even when another
    /// thread (a `hold`-mode waiter's) read the response.
    shard: usize,
}

struct Idle {
    up: Box<UpConn>,
    since: Instant,
}

struct Pool {
    authority: Authority,
    dialer: Dialer,
    /// One idle list per serving thread (see `set_shard`), so a thread
    /// takes only connections registered with its own runtime's reactor.
    /// Oldest at the front; taken from the back (the warmest connection).
    idle: Box<[Mutex<VecDeque<Idle>>]>,
}

const SHARDS: usize = 16;

thread_local! {
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn current_shard() -> usize {
    SHARD.with(|s| s.get())
}

/// Marks the calling thread as a serving thread with a runtime of its own:
/// upstream connections it opens are pooled for it alone.
pub(super) fn set_shard(i: usize) {
    SHARD.with(|s| s.set(i % SHARDS));
}

impl Pool {
    fn idle(&self) -> &Mutex<VecDeque<Idle>> {
        &self.idle[current_shard()]
    }
}

#[derive(Clone)]
pub struct Upstream {
    pool: Arc<Pool>,
    timeout: Duration,
    latency: Histogram,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("authority", &self.pool.authority)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// `tls` is the client side for an `https://` upstream (see
    /// `tls::upstream_client_config`), `None` for plain HTTP.
    pub fn new(
        authority: Authority,
        tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
        timeout: Duration,
        latency: Histogram,
    ) -> Self {
        Upstream {
            pool: Arc::new(Pool {
                dialer: Dialer::new(&authority, tls),
                authority,
                idle: (0..SHARDS).map(|_| Mutex::new(VecDeque::new())).collect(),
            }),
            timeout,
            latency,
        }
    }

    /// Sends `req` (whose URI carries only the path and query) upstream.
    /// `host` is the client's Host, preserved for virtual-hosted upstreams.
    /// An upgrade request (WebSocket) gets a connection of its own that is
    /// never pooled.
    pub async fn send(&self, mut req: Request<Body>, host: &str) -> Result<Response<Body>, ForwardError> {
        *req.version_mut() = Version::HTTP_11;
        if let Ok(v) = HeaderValue::from_str(host) {
            req.headers_mut().insert(header::HOST, v);
        }
        let started = Instant::now();
        let upgrade = req.headers().contains_key(header::UPGRADE);
        let sent = if upgrade {
            tokio::time::timeout(self.timeout, self.send_upgrade(req)).await
        } else {
            tokio::time::timeout(self.timeout, self.send_pooled(req)).await
        };
        let resp = sent.map_err(|_| ForwardError::Timeout(self.timeout))??;
        self.latency.observe(started.elapsed().as_secs_f64());
        let (mut parts, body) = resp.into_parts();
        if parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
            super::hygiene::strip_outbound(&mut parts.headers);
        } else {
            super::hygiene::strip_gateway_reflections(&mut parts.headers);
        }
        Ok(Response::from_parts(parts, body))
    }

    async fn send_pooled(&self, mut req: Request<Body>) -> Result<Response<Body>, ForwardError> {
        loop {
            let (mut up, reused) = match self.pool.take() {
                Some(up) => (up, true),
                None => (self.pool.connect().await?, false),
            };
            let mut conn_done = false;
            let result = {
                let mut resp = pin!(up.tx.try_send_request(req));
                std::future::poll_fn(|cx| {
                    if !conn_done {
                        if let Poll::Ready(r) = Pin::new(&mut up.conn).poll(cx) {
                            conn_done = true;
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "upstream connection ended");
                            }
                        }
                    }
                    resp.as_mut().poll(cx)
                })
                .await
            };
            match result {
                // Whatever follows on that connection is no longer HTTP we
                // could pool or relay; it is dropped with `up`.
                Ok(resp) if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                    return Err(ForwardError::UnaskedUpgrade)
                }
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let conn = (!conn_done).then_some(up);
                    let body = UpstreamBody {
                        body,
                        conn,
                        pool: self.pool.clone(),
                        ended: false,
                    };
                    return Ok(Response::from_parts(parts, body.boxed()));
                }
                Err(mut e) => match e.take_message() {
                    // Not written: an idle connection the upstream had
                    // closed. Any other connection will do.
                    Some(r) if reused => req = r,
                    _ => return Err(ForwardError::Failed(e.into_error())),
                },
            }
        }
    }

    async fn send_upgrade(&self, req: Request<Body>) -> Result<Response<Body>, ForwardError> {
        let io = self.pool.dial().await?;
        let (mut tx, conn) = http1::handshake(io).await.map_err(ForwardError::Failed)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended");
            }
        });
        let resp = tx.send_request(req).await.map_err(ForwardError::Failed)?;
        Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()))
    }
}

impl Pool {
    /// The most recently used idle connection that is still open.
    fn take(&self) -> Option<Box<UpConn>> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        loop {
            let Idle { mut up, since } = self.idle().lock().ok()?.pop_back()?;
            if since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // One poll lets the connection notice a close from the
            // upstream and become ready for the next request; nothing
            // waits on this waker, the request that takes it polls again.
            if Pin::new(&mut up.conn).poll(&mut cx).is_ready() || !up.tx.is_ready() {
                continue;
            }
            return Some(up);
        }
    }

    /// Parks a connection; connections idle too long are closed here, so
    /// a quiet pool does not hold sockets the upstream has given up on.
    fn put(&self, up: Box<UpConn>) {
        let now = Instant::now();
        if let Ok(mut idle) = self.idle[up.shard].lock() {
            while idle.front().is_some_and(|i| now.duration_since(i.since) > IDLE_TIMEOUT) {
                idle.pop_front();
            }
            if idle.len() < MAX_IDLE {
                idle.push_back(Idle { up, since: now });
            }
        }
    }

    async fn dial(&self) -> Result<TokioIo<UpIo>, ForwardError> {
        Ok(TokioIo::new(self.dialer.dial().await?))
    }

    /// Boxed: the connection state is large, and it moves between the
    /// pool, the request and the response body.
    async fn connect(&self) -> Result<Box<UpConn>, ForwardError> {
        let io = self.dial().await?;
        let (tx, conn) = http1::handshake(io).await.map_err(ForwardError::Failed)?;
        Ok(Box::new(UpConn {
            tx,
            conn,
            shard: current_shard(),
        }))
    }
}

/// The upstream response body. Polling it also drives the upstream
/// connection; once the body has been read to the end the connection is
/// returned to the pool (dropped earlier, it is closed).
struct UpstreamBody {
    body: Incoming,
    conn: Option<Box<UpConn>>,
    pool: Arc<Pool>,
    /// The body reported its end (a chunked body only says so by
    /// returning `None`, not through `is_end_stream`).
    ended: bool,
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(up) = &mut this.conn {
            if let Poll::Ready(r) = Pin::new(&mut up.conn).poll(cx) {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
                this.conn = None;
            }
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.ended = true;
        }
        frame.map_err(|e| Box::new(e) as BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // The server stops polling a body once it reports its end, so the
        // hand-back happens here rather than in `poll_frame`.
        if self.ended || self.body.is_end_stream() {
            if let Some(up) = self.conn.take() {
                self.pool.put(up);
            }
        }
    }
}

/// An upstream that refused, reset or timed out is a 502; what went wrong
/// is for the log only.
pub(super) fn upstream_failed(e: ForwardError) -> super::respond::Reject {
    tracing::warn!(error = %e, "upstream unavailable");
    super::respond::Reject::UpstreamUnavailable
}
