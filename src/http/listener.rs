//! The listener under the HTTP server: at most `max_connections` connections at once
//! ([`ConnectionLimit`]), a client that stops reading an answer is cut off after
//! `send_timeout_secs` ([`Counted`]), HTTP/1 with a time limit on request headers
//! ([`configure_http`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// The answer to a connection over `max_connections` (plain HTTP only; the request is not
/// read).
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n\
content-length: 71\r\n\r\n\
{\"error\":\"too many connections to the gateway server; try again later\"}";

/// How long writing [`BUSY_RESPONSE`] may take.
const BUSY_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// An acceptor that lets at most `max_connections` connections in at once. A connection
/// over the limit is answered 503 (plain HTTP) or closed (under TLS, where plain text
/// would be noise), without being read.
#[derive(Clone, Debug)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    answer_busy: bool,
    send_timeout: Duration,
}

impl ConnectionLimit {
    /// A limit of `max` connections; `answer_busy` writes the 503 to refused connections;
    /// a connection whose client reads nothing of an answer for `send_timeout` is closed.
    pub fn new(max: usize, answer_busy: bool, send_timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            answer_busy,
            send_timeout,
        }
    }
}

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for ConnectionLimit {
    type Stream = Counted;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Counted, S)>> + Send>>;

    fn accept(&self, mut stream: TcpStream, service: S) -> Self::Future {
        let permit = self.permits.clone().try_acquire_owned();
        let answer_busy = self.answer_busy;
        let send_timeout = self.send_timeout;
        Box::pin(async move {
            match permit {
                Ok(permit) => Ok((
                    Counted {
                        stream,
                        _permit: permit,
                        send_timeout,
                        blocked: None,
                    },
                    service,
                )),
                Err(_) => {
                    let peer = stream.peer_addr().ok();
                    tracing::warn!(remote = ?peer, "HTTP server: too many connections; refused");
                    if answer_busy {
                        let _ = tokio::time::timeout(BUSY_WRITE_TIMEOUT, async {
                            stream.write_all(BUSY_RESPONSE).await?;
                            stream.shutdown().await
                        })
                        .await;
                    }
                    Err(io::Error::other("too many connections"))
                }
            }
        })
    }
}

/// A connection counted against [`ConnectionLimit`]: its place is given back when it is
/// dropped. A write that cannot go out for `send_timeout` (the client stopped reading: a
/// large file downloaded by a client that went away, or a slow-read attack) fails with
/// `TimedOut`, which closes the connection.
#[derive(Debug)]
pub struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    send_timeout: Duration,
    /// Running while writes wait for the client to read.
    blocked: Option<Pin<Box<Sleep>>>,
}

impl Counted {
    /// Tracks a write's outcome: a write that went out clears the timer; one that waits
    /// starts it, and fails once it has run out.
    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.blocked = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.send_timeout;
                let timer = self
                    .blocked
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::debug!(
                            "HTTP server: the client read nothing for {limit:?}; closed"
                        );
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client stopped reading",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.track(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Sets up a server's HTTP side: HTTP/1 only (the server then reads no protocol preface,
/// which would wait for a silent client without a time limit), and headers (and idle
/// keep-alive connections) time out after `header_timeout`.
pub fn configure_http<A, Acc>(
    server: axum_server::Server<A, Acc>,
    header_timeout: Duration,
) -> axum_server::Server<A, Acc>
where
    A: axum_server::Address,
{
    let mut server = server.http1_only();
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    server
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        assert!(head.starts_with("HTTP/1.1 503 "));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .contains("too many connections")
        );
    }
}
