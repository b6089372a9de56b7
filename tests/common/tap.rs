//! A tap on the component link: a loopback TCP relay between the gateway and the XMPP
//! server's component port that keeps what the gateway writes, so a test can assert on
//! stanzas the server consumes without passing them on to clients (a `subscribed` becomes a
//! roster push, for instance).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// What the gateway wrote is kept up to this many bytes (older bytes are dropped).
const KEPT_BYTES: usize = 4 << 20;

/// A relay in front of a component port; see the module docs.
pub struct ComponentTap {
    addr: SocketAddr,
    written: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl ComponentTap {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> ComponentTap {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the tap");
        let addr = listener.local_addr().expect("the tap's address");
        let written = Arc::new(Mutex::new(String::new()));
        let kept = Arc::clone(&written);
        let task = tokio::spawn(async move {
            while let Ok((gateway, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(relay(gateway, server, Arc::clone(&kept)));
            }
        });
        ComponentTap {
            addr,
            written,
            task,
        }
    }

    /// Where the gateway should connect instead of the server's component port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits (at most `limit`) for a start tag the gateway wrote, named `name`, with every
    /// attribute of `attrs`; returns the tag. Panics with the tags of that name seen.
    pub async fn expect_tag(&self, name: &str, attrs: &[(&str, &str)], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let tags = self.tags(name);
            if let Some(tag) = tags.iter().find(|t| {
                attrs
                    .iter()
                    .all(|(k, v)| t.contains(&format!(" {k}='{v}'")))
            }) {
                return tag.clone();
            }
            if Instant::now() >= deadline {
                panic!("the gateway wrote no <{name}> with {attrs:?}; it wrote: {tags:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The start tags named `name` written so far, with `"` turned into `'`.
    pub fn tags(&self, name: &str) -> Vec<String> {
        let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let open = format!("<{name}");
        written
            .match_indices(&open)
            .filter_map(|(at, _)| {
                let rest = &written[at..];
                let after = rest[open.len()..].chars().next()?;
                if !(after == ' ' || after == '>' || after == '/') {
                    return None;
                }
                let end = rest.find('>')?;
                Some(rest[..=end].replace('"', "'"))
            })
            .collect()
    }
}

impl Drop for ComponentTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until either side closes, keeping what `gateway` writes.
async fn relay(gateway: TcpStream, server: TcpStream, kept: Arc<Mutex<String>>) {
    let _ = gateway.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut from_gateway, mut to_gateway) = gateway.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_gateway).await;
        let _ = to_gateway.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from_gateway.read(&mut buf).await {
        if n == 0 || to_server.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
        k.push_str(&String::from_utf8_lossy(&buf[..n]));
        if k.len() > KEPT_BYTES {
            let cut = k.len() - KEPT_BYTES / 2;
            let cut = (cut..k.len()).find(|&i| k.is_char_boundary(i)).unwrap_or(0);
            k.drain(..cut);
        }
    }
    let _ = to_server.shutdown().await;
    down.abort();
}
