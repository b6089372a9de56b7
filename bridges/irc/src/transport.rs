//! The socket under one IRC connection: TCP, with or without TLS (rustls), split into lines
//! on the way in and written line by line on the way out.
//!
//! Every XMPP user has a connection of their own to each IRC server, so what one idle
//! connection holds is what the gateway costs per user. This transport keeps no buffer while
//! nothing is in flight: a plain connection reads into a stack buffer only once the socket
//! is readable, keeps only the unfinished tail of a line between reads, and writes without
//! an intermediate buffer.

use crate::config::Endpoint;
use estuary_bridge_api::{OutboundError, OutboundPolicy};
use irc_proto::Message;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::debug;

/// The longest line accepted from a server: 8191 bytes of IRCv3 tags plus a 512-byte
/// message. A server that sends more without a line break is broken or hostile.
pub const MAX_LINE: usize = 8191 + 512;
/// How much one read takes from the socket at most.
const READ_CHUNK: usize = 4096;
/// How long a write may wait for the server to take our data before the connection is
/// taken as lost (a server that stopped reading would otherwise hang the connection).
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TCP connection or a read/write failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS: {0}")]
    Tls(io::Error),
    /// The server name cannot be used for TLS.
    #[error("“{0}” is not a valid server name for TLS")]
    BadName(String),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The server did not take our data for [`WRITE_TIMEOUT`].
    #[error("the server did not take our data for {} s", WRITE_TIMEOUT.as_secs())]
    WriteTimeout,
    /// The server sent a line longer than [`MAX_LINE`].
    #[error("the server sent a line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// The address is not allowed by the outbound policy, or the name has none: no
    /// connection was attempted.
    #[error("{0}")]
    Outbound(#[from] OutboundError),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One connected socket to an IRC server.
pub struct Transport {
    stream: Stream,
    /// Bytes read but not yet a whole line (usually empty, then unallocated).
    partial: Vec<u8>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.stream {
            Stream::Plain(_) => "plain",
            Stream::Tls(_) => "tls",
        };
        f.debug_struct("Transport")
            .field("stream", &kind)
            .field("partial", &self.partial.len())
            .finish()
    }
}

impl Transport {
    /// Connects to `host` on `endpoint`, with TLS if the endpoint says so; the certificate
    /// is checked against the system's roots unless `verify` is false. `host` is resolved
    /// once, through `outbound`, and only the addresses it allows are tried.
    pub async fn connect(
        host: &str,
        endpoint: Endpoint,
        verify: bool,
        outbound: &OutboundPolicy,
    ) -> Result<Self, TransportError> {
        let addrs = outbound.resolve(host, endpoint.port).await?;
        let tcp = TcpStream::connect(&addrs[..]).await?;
        tcp.set_nodelay(true)?;
        let stream = if endpoint.tls {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| TransportError::BadName(host.to_owned()))?;
            let connector = TlsConnector::from(tls_config(verify)?);
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(TransportError::Tls)?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Plain(tcp)
        };
        Ok(Self {
            stream,
            partial: Vec::new(),
        })
    }

    /// Waits until the server sent something and takes it in; [`Transport::next_line`]
    /// then yields the complete lines. Cancel-safe: nothing read is lost if the future is
    /// dropped.
    pub async fn read(&mut self) -> Result<(), TransportError> {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }

    /// [`Transport::read`] as a poll function: a connection waiting on it through
    /// `poll_fn` keeps no future state of its own (one connection per user and server, so
    /// every byte a waiting connection holds counts).
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        // The buffer lives only between readiness and the copy below.
        let mut chunk = [0u8; READ_CHUNK];
        let n = match &mut self.stream {
            Stream::Plain(tcp) => loop {
                if let Err(e) = ready!(tcp.poll_read_ready(cx)) {
                    return Poll::Ready(Err(e.into()));
                }
                match tcp.try_read(&mut chunk) {
                    Ok(n) => break n,
                    // Readiness was stale: try_read cleared it, so polling again registers.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e.into())),
                }
            },
            Stream::Tls(tls) => {
                let mut buf = ReadBuf::new(&mut chunk);
                if let Err(e) = ready!(Pin::new(&mut **tls).poll_read(cx, &mut buf)) {
                    return Poll::Ready(Err(e.into()));
                }
                buf.filled().len()
            }
        };
        if n == 0 {
            return Poll::Ready(Err(TransportError::Closed));
        }
        self.partial.extend_from_slice(&chunk[..n]);
        if self.partial.len() > MAX_LINE && !self.partial.contains(&b'\n') {
            return Poll::Ready(Err(TransportError::LineTooLong));
        }
        Poll::Ready(Ok(()))
    }

    /// The next complete line read, parsed; lines that do not parse are skipped (and
    /// logged). Frees the read buffer once it is empty.
    pub fn next_line(&mut self) -> Option<Message> {
        loop {
            let Some(end) = self.partial.iter().position(|&b| b == b'\n') else {
                if self.partial.is_empty() {
                    self.partial = Vec::new();
                }
                return None;
            };
            let line = decode(&self.partial[..end]);
            self.partial.drain(..=end);
            if line.is_empty() {
                continue;
            }
            match line.parse::<Message>() {
                Ok(msg) => return Some(msg),
                Err(e) => debug!(%line, "unparsable line from the server skipped: {e}"),
            }
        }
    }

    /// Writes `bytes` (whole lines, each ending in CRLF) and flushes them.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        let write = async {
            match &mut self.stream {
                Stream::Plain(tcp) => tcp.write_all(bytes).await,
                Stream::Tls(tls) => {
                    tls.write_all(bytes).await?;
                    tls.flush().await
                }
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(written) => Ok(written?),
            Err(_) => Err(TransportError::WriteTimeout),
        }
    }

    /// Writes `bytes[*written..]` as far as the socket takes it now, advancing `written`;
    /// ready once everything is written (and, over TLS, flushed). For a connection that
    /// keeps reading while the server is slow to take its lines.
    pub fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        written: &mut usize,
    ) -> Poll<Result<(), TransportError>> {
        while *written < bytes.len() {
            let rest = &bytes[*written..];
            let n = match &mut self.stream {
                Stream::Plain(tcp) => ready!(Pin::new(tcp).poll_write(cx, rest))?,
                Stream::Tls(tls) => ready!(Pin::new(&mut **tls).poll_write(cx, rest))?,
            };
            if n == 0 {
                return Poll::Ready(Err(TransportError::Closed));
            }
            *written += n;
        }
        if let Stream::Tls(tls) = &mut self.stream {
            ready!(Pin::new(&mut **tls).poll_flush(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Closes the write side (after a QUIT), ignoring errors; gives up after a few seconds.
    pub async fn shutdown(&mut self) {
        let close = async {
            match &mut self.stream {
                Stream::Plain(tcp) => tcp.shutdown().await,
                Stream::Tls(tls) => tls.shutdown().await,
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), close).await;
    }
}

/// A line's text without its CR: UTF-8 when it is, else Latin-1 (what most non-UTF-8 IRC
/// text is), so that nothing is dropped.
pub fn decode(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) => raw.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The TLS client settings, built once per process for each way of checking.
fn tls_config(verify: bool) -> Result<Arc<ClientConfig>, TransportError> {
    static VERIFIED: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    static UNVERIFIED: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let cell = if verify { &VERIFIED } else { &UNVERIFIED };
    cell.get_or_init(|| build_tls_config(verify).map(Arc::new))
        .clone()
        .map_err(|e| TransportError::Tls(io::Error::other(e)))
}

fn build_tls_config(verify: bool) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if !verify {
        let verifier = Arc::new(AcceptAnyCertificate(provider));
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        debug!("a system certificate could not be loaded: {e}");
    }
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(
            "no system root certificates found (install ca-certificates, \
             or set verify_certificate = false for this server)"
                .into(),
        );
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `verify_certificate = false`: any certificate is accepted (signatures are still
/// checked, so the session is encrypted, just not authenticated). For servers with
/// self-signed certificates, as the admin chose.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn loopback() -> OutboundPolicy {
        OutboundPolicy::new(&["127.0.0.1"]).unwrap()
    }

    #[tokio::test]
    async fn connects_nowhere_the_policy_refuses() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = Endpoint { port, tls: false };
        let strict = OutboundPolicy::default();
        let err = Transport::connect("127.0.0.1", endpoint, true, &strict)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::Outbound(OutboundError::NotAllowed { .. })
            ),
            "{err}"
        );
        // Nothing reached the listener.
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "a connection was made");
    }

    #[test]
    fn decodes_utf8_and_falls_back_to_latin1() {
        assert_eq!(decode(b"PRIVMSG #a :caf\xc3\xa9\r"), "PRIVMSG #a :café");
        assert_eq!(decode(b"PRIVMSG #a :caf\xe9"), "PRIVMSG #a :café");
        assert_eq!(decode(b""), "");
    }

    #[tokio::test]
    async fn splits_lines_across_reads_and_skips_junk() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b":srv 001 me :Welcome\r\nPING :to")
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            s.write_all(b"ken\r\n\r\n\n:a!b@c PRIVMSG #x :hi\n")
                .await
                .unwrap();
            let mut back = vec![0u8; 64];
            let n = s.read(&mut back).await.unwrap();
            back.truncate(n);
            back
        });
        let endpoint = Endpoint { port, tls: false };
        let mut t = Transport::connect("127.0.0.1", endpoint, true, &loopback())
            .await
            .unwrap();
        let mut lines = Vec::new();
        while lines.len() < 3 {
            t.read().await.unwrap();
            while let Some(m) = t.next_line() {
                lines.push(m.to_string());
            }
        }
        assert_eq!(
            lines,
            [
                ":srv 001 me Welcome\r\n",
                "PING token\r\n",
                ":a!b@c PRIVMSG #x hi\r\n"
            ]
        );
        assert_eq!(t.partial.capacity(), 0, "no buffer kept while idle");
        t.write(b"PONG :token\r\n").await.unwrap();
        assert_eq!(server.await.unwrap(), b"PONG :token\r\n");
        assert!(matches!(t.read().await, Err(TransportError::Closed)));
    }

    #[tokio::test]
    async fn refuses_endless_lines() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let junk = vec![b'a'; MAX_LINE + 10];
            let _ = s.write_all(&junk).await;
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        });
        let endpoint = Endpoint { port, tls: false };
        let mut t = Transport::connect("127.0.0.1", endpoint, true, &loopback())
            .await
            .unwrap();
        let err = loop {
            if let Err(e) = t.read().await {
                break e;
            }
        };
        assert!(matches!(err, TransportError::LineTooLong), "{err}");
    }
}
