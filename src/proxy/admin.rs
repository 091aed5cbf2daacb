//! The operator listener (`admin_listen`, plain HTTP on a private address):
//! `/metrics` (Prometheus text), `/healthz` (the process answers),
//! `/readyz` (config loaded, audit writable, state reachable, not draining)
//! and `/audit/head` (the newest signed audit checkpoint, for an outside
//! collector: a trail later cut back behind a head it kept fails
//! `stepgate audit verify --head`).

use super::Gateway;
use crate::body::{full, Body};
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn run(gw: Arc<Gateway>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            () = &mut shutdown => return,
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(answer(&gw, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn answer(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" => {
            gw.metrics.holds_open.set(gw.holds.open_count() as i64);
            gw.metrics.body_bytes_buffered.set(gw.bodies.used() as i64);
            gw.metrics.holds_kept.set(gw.holds.kept_count() as i64);
            gw.metrics.state_available.set(i64::from(gw.state.is_available()));
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                gw.metrics.encode(),
            )
        }
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/audit/head" => match gw.audit.head() {
            Some(line) => (StatusCode::OK, "application/json", format!("{line}\n")),
            None => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "no audit checkpoint yet\n".to_owned(),
            ),
        },
        "/readyz" => {
            let checks = [
                ("audit", gw.audit.is_healthy()),
                ("state", gw.state.is_available()),
                ("draining", !*gw.shutting_down().borrow()),
            ];
            let failed: Vec<&str> = checks.iter().filter(|(_, ok)| !ok).map(|(n, _)| *n).collect();
            if failed.is_empty() {
                (StatusCode::OK, "text/plain", "ready\n".to_owned())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {}\n", failed.join(", ")),
                )
            }
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}
