//! Accepting and serving client connections.
//!
//! Two serving models share one accept loop. `run` serves one listener on
//! the caller's runtime. `run_per_core` gives each listener (all bound to
//! the same address with `SO_REUSEPORT`) a thread with a single-threaded
//! runtime of its own: the kernel spreads connections over the listeners,
//! and a connection, its requests and the upstream connections they use
//! stay on one thread, with no work-stealing or cross-thread wake-ups.
//! Everything shared between connections (holds, caches, the audit writer)
//! is thread-safe and wakes waiters through channels that work across
//! runtimes.

use super::{effects, first_byte, forward, handler, limit, tls, ConnInfo, Gateway, StartError};
use crate::audit;
use crate::audit::Record;
use crate::config::Config;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore, TryAcquireError};
use tokio_rustls::TlsAcceptor;

/// What every accept loop shares.
#[derive(Clone)]
struct Serving {
    gw: Arc<Gateway>,
    acceptor: TlsAcceptor,
    builder: auto::Builder<TokioExecutor>,
    slots: Arc<Semaphore>,
    refused: Arc<limit::Refusals>,
    handshake_timeout: Duration,
    first_byte_timeout: Duration,
}

impl Serving {
    fn new(gw: Arc<Gateway>) -> Result<Self, StartError> {
        let c = gw.config();
        let tls = tls::server_config(&c.tls.cert, &c.tls.key, c.tls.client_ca.as_deref())?;
        Ok(Serving {
            acceptor: TlsAcceptor::from(tls),
            builder: http_builder(&c),
            slots: Arc::new(Semaphore::new(c.limits.max_connections)),
            refused: Arc::new(limit::Refusals::new(c.limits.max_connections)),
            handshake_timeout: c.limits.tls_handshake_timeout,
            first_byte_timeout: c.limits.header_read_timeout,
            gw: gw.clone(),
        })
    }
}

fn spawn_sweeper(gw: &Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    let gw = gw.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            effects::sweep(&gw);
            gw.purge();
            super::fleet::sweep(&gw).await;
            // Also how a lost store is noticed while idle, and its return:
            // `/readyz` and sensitive routes follow `is_available`.
            let _ = gw.state.probe().await;
        }
    })
}

/// Before the first request: the state store answers, every instance on
/// it runs with this instance's keys, and the holds a killed previous run
/// left open are closed in the trail.
async fn join_state(gw: &Gateway) -> Result<(), StartError> {
    gw.state.join(&gw.fingerprints).await?;
    tracing::info!(backend = gw.state.backend(), "state store joined");
    super::recover::close_lost_holds(gw).await?;
    Ok(())
}

/// Lets open connections finish, at most `drain` long. A connection whose
/// response is a release in flight is not cut at `drain`: it may wait up
/// to `upstream_timeout`, as the release itself does (SPEC §4), so the
/// client that proved gets the upstream's answer.
async fn drain_connections(gw: &Gateway, graceful: GracefulShutdown, drain: Duration) {
    let all = graceful.shutdown();
    tokio::pin!(all);
    if tokio::time::timeout(drain, &mut all).await.is_ok() {
        return;
    }
    let more = gw.config().limits.upstream_timeout.saturating_sub(drain);
    if !gw.releases.is_empty() && tokio::time::timeout(more, &mut all).await.is_ok() {
        return;
    }
    tracing::warn!("drain timed out; closing remaining connections");
}

/// Waits for the releases still in flight, up to `upstream_timeout`: each
/// is forwarding a request the trail already calls released, and its
/// `request.forwarded` must make it into the trail before the seal.
async fn await_releases(gw: &Gateway) {
    let limit = gw.config().limits.upstream_timeout;
    if !gw.releases.wait_idle(limit).await {
        tracing::warn!(
            in_flight = gw.releases.len(),
            "releases still in flight after upstream_timeout; they are recorded as cut off"
        );
    }
}

/// The end of a serve: close the holds that cannot outlive this process
/// (the memory backend keeps nothing), then seal the audit trail, so the
/// records of drained requests are covered by the checkpoint that ends it.
async fn seal(gw: &Arc<Gateway>) {
    let now = gw.clock.now();
    for (meta, _) in gw.holds.open_holds() {
        // A shared hold outlives this instance, unless its client was
        // waiting on this instance's connection.
        if gw.shared_holds.is_some() && meta.mode != crate::policy::HoldMode::Hold {
            continue;
        }
        let _ = super::fleet::expire(gw, &meta, effects::SHUTDOWN, now).await;
    }
    if let Err(e) = gw
        .audit
        .seal(Record::new(audit::Event::GatewayShutdown).reason("signal"))
        .await
    {
        tracing::error!(error = %e, "could not seal the audit trail at shutdown");
    }
}

/// Serves TLS connections from `listener` until `shutdown` resolves, then
/// stops accepting, tells `hold`-mode waiters to come back later, and
/// drains in-flight requests (at most `drain` long).
pub async fn run(
    gw: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Result<(), StartError> {
    join_state(&gw).await?;
    let serving = Serving::new(gw.clone())?;
    let graceful = GracefulShutdown::new();
    let sweeper = spawn_sweeper(&gw);
    super::fleet::spawn_listener(&gw);
    accept_loop(&serving, listener, &graceful, shutdown).await;
    // `send` would store nothing while no waiter is subscribed, and a
    // waiter that subscribes later would then never hear of it.
    gw.shutdown.send_replace(true);
    tracing::info!("shutting down: draining in-flight requests");
    drain_connections(&gw, graceful, drain).await;
    await_releases(&gw).await;
    sweeper.abort();
    seal(&gw).await;
    Ok(())
}

/// Like `run`, with one thread and single-threaded runtime per listener.
/// The listeners share the connection limit; each thread drains its own
/// connections at shutdown.
pub async fn run_per_core(
    gw: Arc<Gateway>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Result<(), StartError> {
    join_state(&gw).await?;
    let serving = Serving::new(gw.clone())?;
    let sweeper = spawn_sweeper(&gw);
    super::fleet::spawn_listener(&gw);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut done = Vec::new();
    for (i, std_listener) in listeners.into_iter().enumerate() {
        let serving = serving.clone();
        let mut stop = stop_rx.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        done.push(done_rx);
        let spawned = std::thread::Builder::new()
            .name(format!("stepgate-serve-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a serving runtime");
                        return;
                    }
                };
                forward::set_shard(i + 1);
                rt.block_on(async move {
                    let listener = match TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot register a listener");
                            return;
                        }
                    };
                    let graceful = GracefulShutdown::new();
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    accept_loop(&serving, listener, &graceful, stopped).await;
                    drain_connections(&serving.gw, graceful, drain).await;
                    // Releases run on this thread's runtime: let them finish
                    // before it goes.
                    await_releases(&serving.gw).await;
                });
                // Dropped before `done`: a release the wait gave up on is
                // cancelled here, and its record must precede the seal.
                drop(rt);
                drop(done_tx);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a serving thread");
        }
    }
    shutdown.await;
    stop_tx.send_replace(true);
    gw.shutdown.send_replace(true);
    tracing::info!("shutting down: draining in-flight requests");
    for d in done {
        let _ = d.await;
    }
    sweeper.abort();
    seal(&gw).await;
    Ok(())
}

async fn accept_loop(
    s: &Serving,
    listener: TcpListener,
    graceful: &GracefulShutdown,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // At the limit a connection is closed at once rather than left in
        // the kernel's accept queue, where its TLS handshake would hang
        // until the client gives up.
        let permit = match s.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => {
                s.refused.refuse(&s.gw, peer);
                drop(tcp);
                continue;
            }
            Err(TryAcquireError::Closed) => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = s.acceptor.clone();
        let builder = s.builder.clone();
        let gw = s.gw.clone();
        let handshake_timeout = s.handshake_timeout;
        let first_byte_timeout = s.first_byte_timeout;
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let Some(tls) = first_byte::wait(tls, first_byte_timeout).await else {
                tracing::debug!(%peer, "no request within limits.header_read_timeout");
                return;
            };
            let client_cert = tls
                .get_ref()
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.as_ref().to_vec()));
            let conn = ConnInfo { peer, client_cert };
            let service = service_fn(move |req| handler::handle(gw.clone(), conn.clone(), req));
            let io = TokioIo::new(tls);
            let served = builder.serve_connection_with_upgrades(io, service);
            if let Err(e) = watcher.watch(served).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
}

fn http_builder(c: &Config) -> auto::Builder<TokioExecutor> {
    let l = &c.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(l.header_read_timeout)
        .max_buf_size(l.max_header_bytes.max(8192))
        .max_headers(l.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(l.h2_max_concurrent_streams)
        .max_header_list_size(l.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_pending_accept_reset_streams(Some(50))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}
