//! A reader that fails when its source pauses too long ([`StallGuard`]): a network that stops
//! sending a file's bytes half-way holds no transfer (and no user's queue) for longer than
//! `[media] stall_secs`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The error kind a stalled read fails with ([`io::ErrorKind::TimedOut`]).
pub const STALLED: io::ErrorKind = io::ErrorKind::TimedOut;

/// The error inside the [`io::Error`] of a stalled read, so that it can be told from other
/// time-outs where it comes back wrapped (in an HTTP client's error, say).
#[derive(Debug, thiserror::Error)]
#[error("no data for {0} s")]
pub struct Stalled(pub u64);

impl Stalled {
    /// Whether `e`, or an error it wraps, is a stalled read.
    pub fn caused(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(e);
        while let Some(e) = next {
            if e.is::<Stalled>()
                || e.downcast_ref::<io::Error>()
                    .and_then(|io| io.get_ref())
                    .is_some_and(|inner| inner.is::<Stalled>())
            {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// Wraps a reader: a read that gets no byte for `limit` fails with [`STALLED`].
pub struct StallGuard<R> {
    inner: R,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<R> StallGuard<R> {
    /// Guards `inner` with a pause limit of `limit`.
    pub fn new(inner: R, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for StallGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                let deadline = Instant::now() + this.limit;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(result)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Err(io::Error::new(STALLED, Stalled(this.limit.as_secs()))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test(start_paused = true)]
    async fn a_source_that_stops_fails_after_the_limit() {
        let (mut tx, rx) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut tx, b"abc")
            .await
            .unwrap();
        let mut guarded = StallGuard::new(rx, Duration::from_secs(5));
        let mut buf = [0u8; 3];
        guarded.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
        let started = Instant::now();
        let e = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), STALLED);
        assert!(Stalled::caused(&e));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_source_passes() {
        let (mut tx, rx) = tokio::io::duplex(64);
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tokio::io::AsyncWriteExt::write_all(&mut tx, b"x")
                    .await
                    .unwrap();
            }
        });
        let mut guarded = StallGuard::new(rx, Duration::from_secs(5));
        let mut all = Vec::new();
        guarded.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"xxxxx", "20 s in all, never 5 s without a byte");
    }
}
