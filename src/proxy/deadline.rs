//! Deadlines for request bodies (`limits.body_read_timeout`).
//!
//! Without them a client trickling a body a byte at a time holds its
//! connection, the buffer of a sensitive request and, on a pass-through
//! route, an upstream connection for as long as it likes: the header
//! timeout ends once the head is in.
//!
//! A body the gateway buffers (a sensitive request, a step-up call) gets one
//! deadline for the whole body, running from the moment the head was read,
//! so a slow body cannot reset it by sending a byte now and then. A body
//! streamed through to the upstream may be large and legitimately take
//! longer than that, so it gets the same span as an idle limit instead: it
//! ends only when no byte arrives for that long.

use crate::body::{Body, BoxError};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The error a body gives once its deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within limits.body_read_timeout")]
pub(super) struct TimedOut;

/// `body`, ending with `TimedOut` once `limit` has passed since `start`.
pub(super) fn limit(body: Body, start: Instant, limit: Duration) -> Body {
    wrap(body, start.checked_add(limit), None)
}

/// `body`, ending with `TimedOut` once no byte has arrived for `limit`.
pub(super) fn idle(body: Body, limit: Duration) -> Body {
    wrap(body, Instant::now().checked_add(limit), Some(limit))
}

fn wrap(body: Body, until: Option<Instant>, idle: Option<Duration>) -> Body {
    use http_body_util::BodyExt;
    // An empty body (most GETs) never waits: no timer is armed for it.
    if http_body::Body::is_end_stream(&body) {
        return body;
    }
    Deadline {
        inner: body,
        until,
        idle,
        sleep: None,
        expired: false,
    }
    .boxed()
}

struct Deadline {
    inner: Body,
    /// `None` when the limit is too far away to name: no deadline then.
    until: Option<Instant>,
    /// Set for an idle limit: each frame moves the deadline this far on.
    idle: Option<Duration>,
    /// Armed at the first read that has to wait, so a body that is already
    /// in costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(idle) = this.idle {
                this.until = Instant::now().checked_add(idle);
                this.sleep = None;
            }
            return Poll::Ready(frame);
        }
        let Some(until) = this.until else {
            return Poll::Pending;
        };
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired = true;
                Poll::Ready(Some(Err(Box::new(TimedOut))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    /// A body that stays open and never sends a byte.
    fn stalled() -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = futures_util::stream::unfold((rx, Some(tx)), |(mut rx, tx)| async move {
            rx.recv().await.map(|f| (f, (rx, tx)))
        });
        StreamBody::new(stream).boxed()
    }

    #[tokio::test]
    async fn a_stalled_body_ends_with_timed_out() {
        let mut body = limit(stalled(), Instant::now(), Duration::from_millis(50));
        let err = body.frame().await.expect("a frame").expect_err("the deadline passed");
        assert!(err.is::<TimedOut>(), "{err}");
        assert!(body.frame().await.is_none(), "nothing after the deadline");
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        let body = limit(crate::body::full("abc"), Instant::now(), Duration::from_secs(5));
        let bytes = body.collect().await.expect("read").to_bytes();
        assert_eq!(&bytes[..], b"abc");
    }

    #[tokio::test]
    async fn a_limit_too_far_to_name_means_no_deadline_and_no_panic() {
        let mut body = limit(stalled(), Instant::now(), Duration::MAX);
        let waited = tokio::time::timeout(Duration::from_millis(100), body.frame()).await;
        assert!(waited.is_err(), "no deadline: still waiting for the body");
    }

    /// A streamed body that keeps sending outlives the span; a stalled one
    /// does not.
    #[tokio::test]
    async fn an_idle_limit_moves_on_with_every_frame() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
        let mut body = idle(StreamBody::new(stream).boxed(), Duration::from_millis(150));
        for _ in 0..4 {
            tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.expect("send");
            body.frame().await.expect("a frame").expect("data in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let err = body.frame().await.expect("a frame").expect_err("then it stalls");
        assert!(err.is::<TimedOut>(), "{err}");
    }
}
