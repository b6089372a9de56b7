//! A raw IRC client for the other side of the relay: registers without CAP, answers PINGs, and
//! hands every line (time-stamped) to a queue read by the benchmark.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Mutex, mpsc};

/// A registered IRC connection whose lines are read by a background task.
pub struct Irc {
    /// Its nick.
    pub nick: String,
    /// Where to write lines.
    pub writer: Arc<Mutex<OwnedWriteHalf>>,
    /// Every line but PING, CR LF stripped, with the instant it was read.
    pub rx: mpsc::UnboundedReceiver<(Instant, String)>,
}

impl Irc {
    /// Connects to 127.0.0.1:`port` as `nick` and waits for 001 (at most `limit`).
    pub async fn connect(port: u16, nick: &str, limit: Duration) -> Result<Irc, String> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("IRC connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (rd, wr) = tcp.into_split();
        let writer = Arc::new(Mutex::new(wr));
        let (tx, rx) = mpsc::unbounded_channel();
        let w = writer.clone();
        tokio::spawn(async move {
            let mut rd = BufReader::with_capacity(65536, rd);
            let mut line = String::new();
            loop {
                line.clear();
                match rd.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let at = Instant::now();
                let l = line.trim_end_matches(['\r', '\n']);
                if let Some(rest) = l.strip_prefix("PING ") {
                    let _ = w
                        .lock()
                        .await
                        .write_all(format!("PONG {rest}\r\n").as_bytes())
                        .await;
                    continue;
                }
                if tx.send((at, l.to_string())).is_err() {
                    return;
                }
            }
        });
        let mut irc = Irc {
            nick: nick.to_string(),
            writer,
            rx,
        };
        irc.send(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n"))
            .await?;
        irc.expect(Instant::now() + limit, |l| l.contains(" 001 "))
            .await
            .ok_or_else(|| format!("{nick}: no 001 from the IRC server"))?;
        Ok(irc)
    }

    /// Writes raw bytes (lines must end in CR LF).
    pub async fn send(&self, raw: &str) -> Result<(), String> {
        self.writer
            .lock()
            .await
            .write_all(raw.as_bytes())
            .await
            .map_err(|e| format!("{}: IRC write: {e}", self.nick))
    }

    /// Waits for a line matching `pred`, dropping the others, at most until `deadline`.
    pub async fn expect(
        &mut self,
        deadline: Instant,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(Instant, String)> {
        loop {
            match tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
                Ok(Some((at, l))) if pred(&l) => return Some((at, l)),
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }

    /// Joins `channel` and waits for the end of NAMES.
    pub async fn join(&mut self, channel: &str, limit: Duration) -> Result<(), String> {
        self.send(&format!("JOIN {channel}\r\n")).await?;
        self.expect(Instant::now() + limit, |l| l.contains(" 366 "))
            .await
            .map(|_| ())
            .ok_or_else(|| format!("{}: could not join {channel}", self.nick))
    }
}
