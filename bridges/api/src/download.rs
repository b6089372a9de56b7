//! A bounded download, for bridges whose network must be given the bytes of a file that an
//! XMPP user sent as a URL (XEP-0066, XEP-0447): Matrix and email re-upload them.
//!
//! Bounded three ways: the URL's host goes through the outbound address policy
//! ([`OutboundPolicy::resolve`]) and the request goes to the addresses it allowed and no
//! other (no second lookup, no proxy, no redirects); the whole transfer has a time limit; and
//! the body may not exceed a size cap (refused at once when the server announces more,
//! failed with an error mid-stream when it sends more than announced or announces nothing).
//!
//! The bytes arrive as a [`Content`] stream through a small bounded queue: the whole file is
//! never held in memory.

use crate::{Content, OutboundError, OutboundPolicy};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// Chunks in flight between the HTTP connection and the reader.
const QUEUE_CHUNKS: usize = 4;

/// The limits of one download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadLimits {
    /// The largest body accepted, in bytes.
    pub max_bytes: u64,
    /// The time the whole transfer may take, headers and body.
    pub timeout: Duration,
}

/// A file being downloaded.
#[derive(Clone, Debug)]
pub struct Downloaded {
    /// The bytes, as they arrive; a read fails if the transfer fails or exceeds the cap.
    pub content: Content,
    /// The `Content-Type` the server gave, where it gave one.
    pub media_type: Option<String>,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Not an `http`/`https` URL with a host.
    #[error("{url:?} is not a URL the gateway can download: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The outbound policy refuses the URL's address.
    #[error(transparent)]
    NotAllowed(#[from] OutboundError),
    /// The server announced a larger body than the cap.
    #[error("the file is {size} bytes; the gateway downloads at most {max} bytes")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The server answered with something other than 200.
    #[error("the file's server answered HTTP {0}")]
    Status(u16),
    /// The connection failed or timed out.
    #[error("cannot download the file: {0}")]
    Failed(String),
}

impl From<DownloadError> for crate::BridgeError {
    fn from(e: DownloadError) -> Self {
        use crate::ErrorKind;
        let kind = match &e {
            DownloadError::BadUrl { .. } => ErrorKind::BadRequest,
            DownloadError::NotAllowed(OutboundError::NotAllowed { .. }) => ErrorKind::Forbidden,
            DownloadError::TooLarge { .. } => ErrorKind::NotAcceptable,
            DownloadError::NotAllowed(OutboundError::Unresolved { .. })
            | DownloadError::Status(_)
            | DownloadError::Failed(_) => ErrorKind::RemoteUnreachable,
        };
        crate::BridgeError::new(kind, e.to_string())
    }
}

/// Starts downloading `url` within `limits`, connecting only where `policy` allows.
/// Returns once the server has answered with headers; the body streams into
/// [`Downloaded::content`].
#[tracing::instrument(skip_all, err, fields(max_bytes = limits.max_bytes))]
pub async fn download(
    policy: &OutboundPolicy,
    url: &str,
    limits: DownloadLimits,
) -> Result<Downloaded, DownloadError> {
    let bad = |why: &str| DownloadError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http and https are downloaded"));
    }
    let host = parsed
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("it has no host"))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| bad("it has no port"))?;
    let addrs = policy.resolve(&host, port).await?;
    let client =
        client(&host, &addrs, limits.timeout).map_err(|e| DownloadError::Failed(e.to_string()))?;
    let mut response = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| DownloadError::Failed(e.to_string()))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(DownloadError::Status(response.status().as_u16()));
    }
    let length = response.content_length();
    if let Some(size) = length
        && size > limits.max_bytes
    {
        return Err(DownloadError::TooLarge {
            size,
            max: limits.max_bytes,
        });
    }
    let media_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
    let max = limits.max_bytes;
    tokio::spawn(async move {
        let mut seen: u64 = 0;
        loop {
            let next = match response.chunk().await {
                Ok(Some(chunk)) => {
                    seen += chunk.len() as u64;
                    if seen > max {
                        Err(io::Error::other(format!(
                            "the file is larger than {max} bytes, the most the gateway downloads"
                        )))
                    } else {
                        Ok(chunk.to_vec())
                    }
                }
                Ok(None) => return,
                Err(e) => Err(io::Error::other(format!("the download failed: {e}"))),
            };
            let failed = next.is_err();
            if tx.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    Ok(Downloaded {
        content: Content::new(ChunkReader { rx, pending: None }, length),
        media_type,
    })
}

/// An HTTP client (rustls, no redirects, no proxy) that reaches `host` at `addrs` only.
fn client(host: &str, addrs: &[SocketAddr], timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("estuary/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .no_proxy()
        .dns_resolver(Arc::new(NoLookup))
        .resolve_to_addrs(host, addrs)
        .build()
}

/// A resolver that resolves nothing: every host was resolved through the policy already.
struct NoLookup;

impl reqwest::dns::Resolve for NoLookup {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_string();
        Box::pin(async move {
            Err(format!("{name} was not resolved through the outbound policy").into())
        })
    }
}

/// Reads the chunks the download task queues.
struct ChunkReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    pending: Option<(Vec<u8>, usize)>,
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some((chunk, at)) = &mut self.pending {
                let n = (chunk.len() - *at).min(buf.remaining());
                buf.put_slice(&chunk[*at..*at + n]);
                *at += n;
                if *at == chunk.len() {
                    self.pending = None;
                }
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if !chunk.is_empty() {
                        self.pending = Some((chunk, 0));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot HTTP server on loopback that answers every request with `head` and then
    /// `body_chunks`, pausing `pause` between chunks.
    async fn serve(head: String, body_chunks: Vec<Vec<u8>>, pause: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let head = head.clone();
                let chunks = body_chunks.clone();
                tokio::spawn(async move {
                    let mut req = [0u8; 2048];
                    let _ = sock.read(&mut req).await;
                    let _ = sock.write_all(head.as_bytes()).await;
                    for c in chunks {
                        tokio::time::sleep(pause).await;
                        if sock.write_all(&c).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}/files/cat.jpg")
    }

    fn limits(max_bytes: u64) -> DownloadLimits {
        DownloadLimits {
            max_bytes,
            timeout: Duration::from_secs(5),
        }
    }

    fn loopback() -> OutboundPolicy {
        OutboundPolicy::new(&["127.0.0.1"]).unwrap()
    }

    async fn read_all(d: &Downloaded) -> io::Result<Vec<u8>> {
        let mut r = d.content.take().expect("the stream");
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.map(|_| out)
    }

    #[tokio::test]
    async fn the_bytes_arrive_as_sent() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let chunks = body.chunks(65_536).map(<[u8]>::to_vec).collect();
        let url = serve(head, chunks, Duration::ZERO).await;
        let d = download(&loopback(), &url, limits(1 << 20)).await.unwrap();
        assert_eq!(d.media_type.as_deref(), Some("image/jpeg"));
        assert_eq!(d.content.length(), Some(200_000));
        assert_eq!(read_all(&d).await.unwrap(), body);
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        let url = serve("HTTP/1.1 200 OK\r\n\r\n".into(), vec![], Duration::ZERO).await;
        let e = download(&OutboundPolicy::default(), &url, limits(10))
            .await
            .unwrap_err();
        assert!(matches!(e, DownloadError::NotAllowed(_)), "{e}");
        assert!(e.to_string().contains("not allowed"), "{e}");
    }

    #[tokio::test]
    async fn an_announced_size_over_the_cap_is_refused_before_reading() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n".to_string();
        let url = serve(head, vec![vec![b'x'; 5000]], Duration::ZERO).await;
        let e = download(&loopback(), &url, limits(1000)).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the file is 5000 bytes; the gateway downloads at most 1000 bytes"
        );
    }

    #[tokio::test]
    async fn an_unannounced_body_over_the_cap_fails_the_read() {
        // No Content-Length: the body runs until the connection closes.
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string();
        let url = serve(head, vec![vec![b'x'; 800]; 4], Duration::ZERO).await;
        let d = download(&loopback(), &url, limits(1000)).await.unwrap();
        let e = read_all(&d).await.unwrap_err();
        assert!(e.to_string().contains("larger than 1000 bytes"), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_stalls_is_cut_off_at_the_time_limit() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".to_string();
        let url = serve(
            head,
            vec![b"12345".to_vec(), b"67890".to_vec()],
            Duration::from_secs(3),
        )
        .await;
        let started = std::time::Instant::now();
        let d = DownloadLimits {
            max_bytes: 100,
            timeout: Duration::from_millis(500),
        };
        let result = match download(&loopback(), &url, d).await {
            Ok(d) => read_all(&d).await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        assert!(result.is_err(), "a stalled transfer must fail");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "cut off at the limit"
        );
    }

    #[tokio::test]
    async fn errors_and_other_schemes_are_refused() {
        let url = serve(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(),
            vec![],
            Duration::ZERO,
        )
        .await;
        let e = download(&loopback(), &url, limits(10)).await.unwrap_err();
        assert!(matches!(e, DownloadError::Status(404)), "{e}");
        let e = download(&loopback(), "file:///etc/passwd", limits(10))
            .await
            .unwrap_err();
        assert!(matches!(e, DownloadError::BadUrl { .. }), "{e}");
        let redirect = serve(
            "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n"
                .into(),
            vec![],
            Duration::ZERO,
        )
        .await;
        let e = download(&loopback(), &redirect, limits(10))
            .await
            .unwrap_err();
        assert!(
            matches!(e, DownloadError::Status(302)),
            "redirects are not followed: {e}"
        );
    }
}
