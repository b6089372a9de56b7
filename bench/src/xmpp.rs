//! A raw c2s XMPP client for load: plain TCP with `TCP_NODELAY`, in-band registration, SASL
//! PLAIN, resource binding, and a byte-level splitter that cuts the stream into top-level
//! stanzas without building a tree. Stanzas are inspected with string helpers
//! ([`attr`], [`child_text`]); that is enough for the few shapes a benchmark looks at, and it
//! keeps the client cheap next to the servers being measured.

use base64::Engine;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, mpsc};

/// Cuts an XMPP byte stream into top-level items: the stream header (`<stream:stream …>`) and
/// each complete stanza (`<message …>…</message>`), as strings.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    pos: usize,
    depth: u32,
    start: Option<usize>,
}

/// The index of the `>` that ends the tag starting at `from`, skipping quoted values.
fn tag_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut quote = 0u8;
    for (j, &c) in buf.iter().enumerate().skip(from) {
        if quote != 0 {
            if c == quote {
                quote = 0;
            }
        } else if c == b'"' || c == b'\'' {
            quote = c;
        } else if c == b'>' {
            return Some(j);
        }
    }
    None
}

fn find(buf: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    buf.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|i| i + from)
}

impl Splitter {
    /// Appends bytes read from the socket.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn take(&mut self, from: usize, to: usize) -> String {
        let s = String::from_utf8_lossy(&self.buf[from..to]).into_owned();
        self.buf.drain(..to);
        self.pos = 0;
        self.start = None;
        s
    }

    /// The next complete item, if the bytes pushed so far hold one.
    pub fn next_item(&mut self) -> Option<String> {
        loop {
            let Some(i) = self.buf[self.pos..]
                .iter()
                .position(|&c| c == b'<')
                .map(|i| i + self.pos)
            else {
                if self.start.is_none() {
                    self.buf.clear();
                    self.pos = 0;
                } else {
                    self.pos = self.buf.len();
                }
                return None;
            };
            self.pos = i;
            let next = *self.buf.get(i + 1)?;
            match next {
                b'?' => self.pos = find(&self.buf, i, b"?>")? + 2,
                b'!' => {
                    let end = if self.buf[i..].starts_with(b"<![CDATA[") {
                        find(&self.buf, i, b"]]>")? + 3
                    } else if self.buf.len() < i + 9 {
                        return None;
                    } else {
                        find(&self.buf, i, b"-->")? + 3
                    };
                    self.pos = end;
                }
                b'/' => {
                    let end = tag_end(&self.buf, i)?;
                    self.depth = self.depth.saturating_sub(1);
                    self.pos = end + 1;
                    if self.depth == 1
                        && let Some(start) = self.start
                    {
                        return Some(self.take(start, end + 1));
                    }
                    if self.depth == 0 {
                        return Some(self.take(i, end + 1));
                    }
                }
                _ => {
                    let end = tag_end(&self.buf, i)?;
                    let self_closing = self.buf[end - 1] == b'/';
                    if self.buf[i + 1..].starts_with(b"stream:stream") {
                        self.depth = 1;
                        return Some(self.take(i, end + 1));
                    }
                    if self.depth == 1 {
                        self.start = Some(i);
                    }
                    self.pos = end + 1;
                    if self_closing {
                        if self.depth == 1 {
                            return Some(self.take(i, end + 1));
                        }
                    } else {
                        self.depth += 1;
                    }
                }
            }
        }
    }
}

/// The element name of a stanza (`message`, `presence`, `iq`, `stream:features`, …).
pub fn name(stanza: &str) -> &str {
    let s = stanza.trim_start().trim_start_matches('<');
    let end = s
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(s.len());
    &s[..end]
}

/// The value of attribute `key` on the stanza's top element, unescaped.
pub fn attr(stanza: &str, key: &str) -> Option<String> {
    let bytes = stanza.as_bytes();
    let open = stanza.find('<')?;
    let end = tag_end(bytes, open)?;
    let tag = &stanza[open..end];
    let mut rest = tag;
    while let Some(eq) = rest.find('=') {
        let k = rest[..eq].trim_end();
        let k = k.rsplit(|c: char| c.is_whitespace()).next().unwrap_or("");
        let after = rest[eq + 1..].trim_start();
        let q = after.chars().next()?;
        if q != '\'' && q != '"' {
            return None;
        }
        let close = after[1..].find(q)? + 1;
        if k == key {
            return Some(unescape(&after[1..close]));
        }
        rest = &after[close + 1..];
    }
    None
}

/// The text of the first child element called `child` (any namespace), unescaped.
pub fn child_text(stanza: &str, child: &str) -> Option<String> {
    let open = format!("<{child}");
    let mut from = 0;
    loop {
        let i = stanza[from..].find(&open)? + from;
        let after = stanza.as_bytes().get(i + open.len()).copied()?;
        if after == b'>' || after == b' ' || after == b'/' {
            let end = tag_end(stanza.as_bytes(), i)?;
            if stanza.as_bytes()[end - 1] == b'/' {
                return Some(String::new());
            }
            let close = stanza[end..].find(&format!("</{child}>"))? + end;
            return Some(unescape(&stanza[end + 1..close]));
        }
        from = i + 1;
    }
}

/// XML-escapes text for an attribute or a text node.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Undoes the five predefined entities and numeric character references.
pub fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let Some(semi) = rest[i..].find(';') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let entity = &rest[i + 1..i + semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[i..=i + semi]),
        }
        rest = &rest[i + semi + 1..];
    }
    out.push_str(rest);
    out
}

/// A connection during login: read and write synchronously, stanza by stanza.
pub struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    split: Splitter,
    /// The bound full JID, once logged in.
    pub jid: String,
}

const NS_CLIENT_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

impl Conn {
    /// Sends raw XML.
    pub async fn send(&mut self, xml: &str) -> Result<(), String> {
        self.wr
            .write_all(xml.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// The next top-level item, waiting at most until `deadline`.
    pub async fn read(&mut self, deadline: Instant) -> Result<String, String> {
        let mut chunk = [0u8; 16384];
        loop {
            if let Some(item) = self.split.next_item() {
                return Ok(item);
            }
            let n = tokio::time::timeout_at(deadline.into(), self.rd.read(&mut chunk))
                .await
                .map_err(|_| "timed out reading from the XMPP server".to_string())?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the XMPP server closed the stream".into());
            }
            self.split.push(&chunk[..n]);
        }
    }

    /// Reads items until one has element name `want`, returning it.
    async fn read_until(&mut self, want: &[&str], deadline: Instant) -> Result<String, String> {
        loop {
            let item = self.read(deadline).await?;
            if want.contains(&name(&item)) {
                return Ok(item);
            }
        }
    }

    /// Logs in as `user@localhost/resource` on 127.0.0.1:`port`; with `register`, first
    /// creates the account in-band (an existing account is fine). Sends initial presence.
    pub async fn login(
        port: u16,
        user: &str,
        password: &str,
        resource: &str,
        register: bool,
        limit: Duration,
    ) -> Result<Conn, String> {
        let deadline = Instant::now() + limit;
        let tcp = tokio::time::timeout(limit, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (rd, wr) = tcp.into_split();
        let mut c = Conn {
            rd,
            wr,
            split: Splitter::default(),
            jid: String::new(),
        };
        c.send(NS_CLIENT_HEADER).await?;
        c.read_until(&["stream:features"], deadline).await?;
        if register {
            c.send(&format!(
                "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{}</username><password>{}</password></query></iq>",
                escape(user),
                escape(password)
            ))
            .await?;
            let answer = c.read_until(&["iq"], deadline).await?;
            if attr(&answer, "type").as_deref() != Some("result") && !answer.contains("conflict") {
                return Err(format!("registration of {user} failed: {answer}"));
            }
        }
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{password}").as_bytes());
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await?;
        let answer = c.read_until(&["success", "failure"], deadline).await?;
        if name(&answer) != "success" {
            return Err(format!("login of {user} failed: {answer}"));
        }
        c.send(NS_CLIENT_HEADER).await?;
        c.read_until(&["stream:features"], deadline).await?;
        c.send(&format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{}</resource></bind></iq>",
            escape(resource)
        ))
        .await?;
        let bound = c.read_until(&["iq"], deadline).await?;
        c.jid = child_text(&bound, "jid").ok_or_else(|| format!("bind failed: {bound}"))?;
        c.send("<presence/>").await?;
        Ok(c)
    }

    /// Hands the connection to a reader task: every stanza arrives, time-stamped, on the
    /// returned [`User`]'s queue, except IQ requests, which the task answers itself (pings with
    /// a result, anything else with `service-unavailable`).
    pub fn into_user(self) -> User {
        let writer: Writer = Arc::new(Mutex::new(self.wr));
        let (tx, rx) = mpsc::unbounded_channel();
        let w = writer.clone();
        let mut rd = self.rd;
        let mut split = self.split;
        tokio::spawn(async move {
            let mut chunk = vec![0u8; 65536];
            loop {
                let n = match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let at = Instant::now();
                split.push(&chunk[..n]);
                while let Some(item) = split.next_item() {
                    if name(&item) == "iq"
                        && matches!(attr(&item, "type").as_deref(), Some("get" | "set"))
                    {
                        let reply = iq_reply(&item);
                        let _ = w.lock().await.write_all(reply.as_bytes()).await;
                        continue;
                    }
                    if tx.send((at, item)).is_err() {
                        return;
                    }
                }
            }
        });
        User {
            jid: self.jid,
            writer,
            rx,
            next_id: 0,
        }
    }
}

fn iq_reply(iq: &str) -> String {
    let id = escape(&attr(iq, "id").unwrap_or_default());
    let to = attr(iq, "from")
        .map(|f| format!(" to='{}'", escape(&f)))
        .unwrap_or_default();
    if iq.contains("urn:xmpp:ping") {
        format!("<iq type='result' id='{id}'{to}/>")
    } else {
        format!(
            "<iq type='error' id='{id}'{to}><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
    }
}

/// The write half of a logged-in connection, shared with its reader task.
pub type Writer = Arc<Mutex<OwnedWriteHalf>>;

/// A logged-in user whose stanzas are read by a background task.
pub struct User {
    /// The bound full JID.
    pub jid: String,
    /// Where to write stanzas.
    pub writer: Writer,
    /// Every stanza received (IQ requests excepted), with the instant its bytes were read.
    pub rx: mpsc::UnboundedReceiver<(Instant, String)>,
    next_id: u64,
}

impl User {
    /// Sends raw XML.
    pub async fn send(&self, xml: &str) -> Result<(), String> {
        self.writer
            .lock()
            .await
            .write_all(xml.as_bytes())
            .await
            .map_err(|e| format!("{}: write: {e}", self.jid))
    }

    /// Waits for a stanza matching `pred`, dropping the others, at most until `deadline`.
    pub async fn wait_for(
        &mut self,
        deadline: Instant,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<(Instant, String)> {
        loop {
            match tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
                Ok(Some((at, s))) if pred(&s) => return Some((at, s)),
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }

    /// Sends `<iq type='{kind}' to='{to}'>{payload}</iq>` and returns the answer (result or
    /// error), waiting at most `limit`.
    pub async fn iq(
        &mut self,
        kind: &str,
        to: &str,
        payload: &str,
        limit: Duration,
    ) -> Result<String, String> {
        self.next_id += 1;
        let id = format!("b{}", self.next_id);
        self.send(&format!(
            "<iq type='{kind}' id='{id}' to='{}'>{payload}</iq>",
            escape(to)
        ))
        .await?;
        self.wait_for(Instant::now() + limit, |s| {
            name(s) == "iq" && attr(s, "id").as_deref() == Some(id.as_str())
        })
        .await
        .map(|(_, s)| s)
        .ok_or_else(|| format!("{}: no answer to iq to {to} within {limit:?}", self.jid))
    }

    /// Waits until `domain` answers a disco#info query with a result (a gateway that has
    /// connected its component), polling for at most `limit`.
    pub async fn wait_service(&mut self, domain: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let answer = self
                .iq(
                    "get",
                    domain,
                    "<query xmlns='http://jabber.org/protocol/disco#info'/>",
                    Duration::from_secs(5),
                )
                .await
                .unwrap_or_default();
            if attr(&answer, "type").as_deref() == Some("result") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{domain} did not answer disco#info within {limit:?}: {answer}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A MUC join presence.
pub fn join_presence(occupant: &str) -> String {
    format!(
        "<presence to='{}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>",
        escape(occupant)
    )
}

/// Whether `stanza` is the self-presence (status 110) of a room whose JID starts with `room`
/// (compared without case).
pub fn is_self_presence(stanza: &str, room: &str) -> bool {
    name(stanza) == "presence"
        && (stanza.contains("code='110'") || stanza.contains("code=\"110\""))
        && attr(stanza, "from").is_some_and(|f| f.to_lowercase().starts_with(&room.to_lowercase()))
}

/// Whether `stanza` is an error presence from a room whose JID starts with `room`.
pub fn is_error_presence(stanza: &str, room: &str) -> bool {
    name(stanza) == "presence"
        && attr(stanza, "type").as_deref() == Some("error")
        && attr(stanza, "from").is_some_and(|f| f.to_lowercase().starts_with(&room.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks() {
        let text = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='x'>\
            <stream:features><mechanisms><mechanism>PLAIN</mechanism></mechanisms></stream:features>\
            <message from='a&amp;b' to='c'><body>x &gt; y</body><x a='1>2'/></message> <presence/>\
            <!-- c --><iq type='result' id='1'/>";
        let mut s = Splitter::default();
        let mut items = Vec::new();
        for chunk in text.as_bytes().chunks(7) {
            s.push(chunk);
            while let Some(i) = s.next_item() {
                items.push(i);
            }
        }
        let names: Vec<&str> = items.iter().map(|i| name(i)).collect();
        assert_eq!(
            names,
            [
                "stream:stream",
                "stream:features",
                "message",
                "presence",
                "iq"
            ]
        );
        assert_eq!(attr(&items[2], "from").as_deref(), Some("a&b"));
        assert_eq!(child_text(&items[2], "body").as_deref(), Some("x > y"));
        assert_eq!(attr(&items[4], "id").as_deref(), Some("1"));
    }
}
