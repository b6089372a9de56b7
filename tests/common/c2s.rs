//! A c2s transport for tokio-xmpp's `Client` that works in a build where xmpp-parsers has its
//! `component` feature on.
//!
//! Estuary depends on tokio-xmpp with `features = ["component"]`, which turns on
//! xmpp-parsers' `component` feature for the whole build (cargo unifies features). That feature
//! makes `Message`, `Presence` and `Iq` live in `jabber:component:accept` instead of
//! `jabber:client`: a `Client` then sends `<iq xmlns='jabber:component:accept'>` for resource
//! binding, which Prosody rejects ("Unhandled c2s_unbound stream element"), and could not parse
//! the server's `jabber:client` stanzas either.
//!
//! [`C2sConnector`] fixes the namespace on the wire: it connects plain TCP (with `TCP_NODELAY`)
//! and rewrites `jabber:component:accept` to `jabber:client` on the way out and
//! `jabber:client` to `jabber:component:accept` on the way in. Typed stanzas inside the test
//! process are therefore in the component namespace; `TestClient` converts the elements it
//! hands to tests back to `jabber:client`, so tests see what a real client sees.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::xmlstream::{PendingFeaturesRecv, StreamHeader, Timeouts, initiate_stream};

/// The stanza namespace of c2s streams.
pub const CLIENT_NS: &str = "jabber:client";
/// The stanza namespace xmpp-parsers uses when its `component` feature is on.
pub const COMPONENT_NS: &str = "jabber:component:accept";

/// Connects a tokio-xmpp `Client` to a fixed loopback address over plaintext TCP, fixing the
/// stanza namespace on the wire (see the module docs).
#[derive(Debug, Clone)]
pub struct C2sConnector(pub SocketAddr);

impl ServerConnector for C2sConnector {
    type Stream = BufStream<NsRewrite<TcpStream>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<
        (
            PendingFeaturesRecv<Self::Stream>,
            sasl::common::ChannelBinding,
        ),
        tokio_xmpp::Error,
    > {
        let tcp = TcpStream::connect(self.0).await?;
        tcp.set_nodelay(true)?;
        let stream = BufStream::new(NsRewrite::new(tcp));
        let header = StreamHeader {
            to: Some(Cow::Owned(jid.domain().to_string())),
            from: None,
            id: None,
        };
        let pending = initiate_stream(stream, ns, header, timeouts).await?;
        Ok((pending, sasl::common::ChannelBinding::None))
    }
}

/// A byte stream that replaces one namespace string with another in each direction.
#[derive(Debug)]
pub struct NsRewrite<S> {
    inner: S,
    /// Rewritten inbound bytes not yet handed to the reader, from `read_pos`.
    read_ready: Vec<u8>,
    read_pos: usize,
    /// Raw inbound bytes held back: they might be the start of the pattern.
    read_carry: Vec<u8>,
    /// Rewritten outbound bytes not yet written to `inner`.
    write_ready: Vec<u8>,
    /// Raw outbound bytes held back until more data or a flush.
    write_carry: Vec<u8>,
}

impl<S> NsRewrite<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        NsRewrite {
            inner,
            read_ready: Vec::new(),
            read_pos: 0,
            read_carry: Vec::new(),
            write_ready: Vec::new(),
            write_carry: Vec::new(),
        }
    }
}

/// Appends `carry ++ input` to `out` with every `from` replaced by `to`. Unless `last`, a tail
/// that is a proper prefix of `from` is kept in `carry` for the next call.
pub fn rewrite(
    carry: &mut Vec<u8>,
    input: &[u8],
    from: &[u8],
    to: &[u8],
    out: &mut Vec<u8>,
    last: bool,
) {
    let mut data = std::mem::take(carry);
    data.extend_from_slice(input);
    let mut i = 0;
    while i < data.len() {
        let rest = &data[i..];
        if rest.starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else if !last && from.starts_with(rest) {
            carry.extend_from_slice(rest);
            break;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NsRewrite<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.read_pos < this.read_ready.len() {
                let n = buf.remaining().min(this.read_ready.len() - this.read_pos);
                buf.put_slice(&this.read_ready[this.read_pos..this.read_pos + n]);
                this.read_pos += n;
                if this.read_pos == this.read_ready.len() {
                    this.read_ready.clear();
                    this.read_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; 8192];
            let mut raw_buf = ReadBuf::new(&mut raw);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut raw_buf))?;
            let filled = raw_buf.filled();
            let eof = filled.is_empty();
            rewrite(
                &mut this.read_carry,
                filled,
                CLIENT_NS.as_bytes(),
                COMPONENT_NS.as_bytes(),
                &mut this.read_ready,
                eof,
            );
            if eof && this.read_ready.is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> NsRewrite<S> {
    /// Writes out `write_ready`; `Ready(Ok)` once it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.write_ready.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.write_ready))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.write_ready.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NsRewrite<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Bound the buffer: with a lot pending, wait for the socket first.
        if this.write_ready.len() >= 64 * 1024 {
            ready!(this.poll_drain(cx))?;
        }
        rewrite(
            &mut this.write_carry,
            buf,
            COMPONENT_NS.as_bytes(),
            CLIENT_NS.as_bytes(),
            &mut this.write_ready,
            false,
        );
        // Opportunistic; a pending socket is dealt with by the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.write_carry.is_empty() {
            rewrite(
                &mut this.write_carry,
                &[],
                COMPONENT_NS.as_bytes(),
                CLIENT_NS.as_bytes(),
                &mut this.write_ready,
                true,
            );
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_across_chunks() {
        let mut carry = Vec::new();
        let mut out = Vec::new();
        let text = b"<iq xmlns='jabber:component:accept'/><x>jabber:c</x>";
        for chunk in text.chunks(5) {
            rewrite(
                &mut carry,
                chunk,
                COMPONENT_NS.as_bytes(),
                CLIENT_NS.as_bytes(),
                &mut out,
                false,
            );
        }
        rewrite(
            &mut carry,
            &[],
            COMPONENT_NS.as_bytes(),
            CLIENT_NS.as_bytes(),
            &mut out,
            true,
        );
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "<iq xmlns='jabber:client'/><x>jabber:c</x>"
        );
    }
}
