//! `limits.max_connections`: a connection over the limit is closed at
//! accept (counted in `stepgate_connections_refused`) instead of hanging in
//! its TLS handshake, connections already in are served, and a slot that
//! frees up is used again.

mod common;

use common::*;
use rustls::pki_types::ServerName;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Only a guard against a hang, never a measurement: a refused connection
/// fails within milliseconds, a hanging one (the old behaviour) never.
const HANG_GUARD: Duration = Duration::from_secs(30);

async fn handshake(gw: &Gateway) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let tcp = TcpStream::connect(gw.addr).await?;
    let connector = tokio_rustls::TlsConnector::from(gw.pki.client_config(&[b"http/1.1"]));
    let name = ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(HANG_GUARD, connector.connect(name, tcp))
        .await
        .expect("a connection over the limit must not hang in its handshake")
}

#[tokio::test]
async fn a_connection_over_max_connections_is_refused_at_once_and_the_slot_comes_back() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DEFAULT_ROUTES, "limits: { max_connections: 2 }").await;

    // Two connections take both slots.
    let mut first = handshake(&gw).await.expect("first connection");
    let _second = handshake(&gw).await.expect("second connection");

    let third = handshake(&gw).await;
    assert!(third.is_err(), "the third connection must be refused");
    assert_eq!(gw.gw.metrics.connections_refused.get(), 1);

    // The connections that got in are served.
    first
        .write_all(&request("GET", "/public", &[], b""))
        .await
        .expect("write");
    let resp = read_response(&mut first).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.count("/public"), 1);
    drop(first);

    // Its slot is released once the gateway has seen it close; until then
    // a new connection may still be refused, never left hanging.
    let mut admitted = None;
    for _ in 0..200 {
        if let Ok(tls) = handshake(&gw).await {
            admitted = Some(tls);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = admitted.expect("a freed slot admits a new connection");
    again
        .write_all(&request("GET", "/public", &[], b""))
        .await
        .expect("write");
    assert_eq!(read_response(&mut again).await.status, 200);
    assert_eq!(up.count("/public"), 2);
}
