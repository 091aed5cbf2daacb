//! The wait for a connection's first request byte, bounded.
//!
//! The connection builder reads the first bytes to tell HTTP/1.1 from an
//! HTTP/2 preface, and that read has no timeout of its own: a client that
//! completes the TLS handshake and then sends nothing would keep its
//! connection slot for good (`limits.header_read_timeout` only starts once
//! HTTP/1.1 has been chosen). One byte is read here within the limit and
//! handed back in front of the stream; the rest of the TLS record stays in
//! the TLS layer's buffer, so nothing else is copied.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// `io` with its first byte already read, or `None` when the client sent
/// nothing within `limit` (or closed, or failed).
pub(super) async fn wait<IO: AsyncRead + Unpin>(mut io: IO, limit: Duration) -> Option<Primed<IO>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(limit, io.read(&mut first)).await {
        Ok(Ok(1)) => Some(Primed {
            first: Some(first[0]),
            io,
        }),
        _ => None,
    }
}

pub(super) struct Primed<IO> {
    first: Option<u8>,
    io: IO,
}

impl<IO> Primed<IO> {
    pub(super) fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Primed<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() > 0 {
            if let Some(b) = this.first.take() {
                buf.put_slice(&[b]);
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Primed<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_first_byte_is_handed_back_in_front_of_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        drop(client);
        let mut primed = wait(server, Duration::from_secs(5)).await.expect("a first byte");
        let mut all = Vec::new();
        primed.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn a_client_that_sends_nothing_is_given_up() {
        let (_client, server) = tokio::io::duplex(64);
        assert!(wait(server, Duration::from_millis(50)).await.is_none());
    }

    #[tokio::test]
    async fn a_client_that_closes_at_once_is_given_up() {
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        assert!(wait(server, Duration::from_secs(5)).await.is_none());
    }
}
