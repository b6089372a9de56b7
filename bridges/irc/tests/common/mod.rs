//! Test harness: a real IRC server on a free 127.0.0.1 port in a temp dir (stopped on drop)
//! — InspIRCd with the IRCv3 modules, optionally linked to Atheme services for SASL, or
//! ngircd as a plain RFC 1459 server — a raw-socket IRC client for "the other side", and an
//! mpsc receiver standing in for the gateway core.
#![allow(dead_code)]

use estuary_bridge_api::{
    Client, Connector, EventSink, FormValues, LoginId, OutboundPolicy, RemoteEvent, StoredLogin,
    User,
};
use estuary_bridge_irc::IrcConnector;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// How long any expectation waits.
pub const WAIT: Duration = Duration::from_secs(20);

/// Which IRC server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// InspIRCd with the IRCv3 modules.
    Inspircd,
    /// InspIRCd linked to Atheme services (NickServ, SaslServ): SASL PLAIN works.
    InspircdWithServices,
    /// ngircd: a plain RFC 1459/2812 server (CAP LS offers multi-prefix only).
    Ngircd,
    /// InspIRCd with the IRCv3 modules, also speaking TLS (a self-signed certificate) on
    /// [`Ircd::tls_port`].
    InspircdTls,
}

/// A running IRC server (and its services, if any).
pub struct Ircd {
    dir: tempfile::TempDir,
    /// The client port on 127.0.0.1.
    pub port: u16,
    flavor: Flavor,
    /// The server-link port Atheme connects to (services flavour only).
    link_port: u16,
    /// The TLS client port on 127.0.0.1 (TLS flavour only; else a port nobody listens on).
    pub tls_port: u16,
    child: Option<Child>,
    services: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Ircd {
    /// Starts InspIRCd and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_flavor(Flavor::Inspircd)
    }

    /// Starts InspIRCd linked to Atheme and waits until the services have synced.
    pub fn start_with_services() -> Self {
        Self::start_flavor(Flavor::InspircdWithServices)
    }

    /// Starts InspIRCd with a plain port and a TLS port (self-signed certificate made
    /// with `openssl`) and waits until both accept connections.
    pub fn start_tls() -> Self {
        Self::start_flavor(Flavor::InspircdTls)
    }

    /// Starts ngircd and waits until it accepts connections.
    pub fn start_ngircd() -> Self {
        Self::start_flavor(Flavor::Ngircd)
    }

    fn start_flavor(flavor: Flavor) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ircd = Self {
            dir,
            port: free_port(),
            flavor,
            link_port: free_port(),
            tls_port: free_port(),
            child: None,
            services: None,
        };
        match flavor {
            Flavor::Ngircd => ircd.write_ngircd_config(),
            _ => ircd.write_config(),
        }
        ircd.spawn();
        ircd
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        let port = self.port;
        let config = format!(
            r#"<config format="xml">
<server name="irc.localhost" description="test" network="TestNet">
<admin name="t" nick="t" email="t@localhost">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="main" allow="*" resolvehostnames="no" useident="no" fakelag="no" timeout="60"
  pingfreq="120" threshold="1000000" commandrate="100000000" hardsendq="1048576" softsendq="1048576"
  recvq="65536" localmax="10000" globalmax="10000" limit="10000" maxchans="100">
<pid file="{d}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{d}/ircd.log">
<dns server="127.0.0.1" timeout="1">
<class name="All" commands="*" privs="*" usermodes="*" chanmodes="*">
<type name="NetAdmin" classes="All">
<oper name="oper" password="operpw" host="*@*" type="NetAdmin">
<module name="cap"> <module name="ircv3"> <module name="ircv3_servertime"> <module name="ircv3_ctctags">
<module name="ircv3_echomessage"> <module name="ircv3_msgid"> <module name="ircv3_batch">
<module name="ircv3_capnotify"> <module name="ircv3_accounttag"> <module name="namesx"> <module name="uhnames">
"#
        );
        let services = if self.flavor == Flavor::InspircdWithServices {
            let link = self.link_port;
            self.write_atheme_config();
            format!(
                r#"<bind address="127.0.0.1" port="{link}" type="servers">
<module name="spanningtree"> <module name="services_account"> <module name="sasl">
<sasl target="services.localhost">
<link name="services.localhost" ipaddr="127.0.0.1" port="{link}" allowmask="127.0.0.1/32" sendpass="linkpw" recvpass="linkpw">
<uline server="services.localhost" silent="yes">
"#
            )
        } else {
            String::new()
        };
        let tls = if self.flavor == Flavor::InspircdTls {
            self.make_certificate();
            let (tls_port, d) = (self.tls_port, self.dir.path().display());
            format!(
                r#"<module name="ssl_gnutls"> <module name="sslinfo">
<sslprofile name="Clients" provider="gnutls" certfile="{d}/cert.pem" keyfile="{d}/key.pem" requestclientcert="no">
<bind address="127.0.0.1" port="{tls_port}" type="clients" sslprofile="Clients">
"#
            )
        } else {
            String::new()
        };
        std::fs::write(self.path("inspircd.conf"), config + &services + &tls)
            .expect("write config");
    }

    /// A self-signed certificate for 127.0.0.1 in `cert.pem`/`key.pem`.
    fn make_certificate(&self) {
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(self.path("key.pem"))
            .arg("-out")
            .arg(self.path("cert.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl is installed");
        assert!(status.success(), "openssl made the test certificate");
    }

    fn write_atheme_config(&self) {
        let link = self.link_port;
        let config = format!(
            r##"loadmodule "modules/protocol/inspircd";
loadmodule "modules/backend/opensex";
loadmodule "modules/crypto/pbkdf2v2";
loadmodule "modules/nickserv/main";
loadmodule "modules/nickserv/register";
loadmodule "modules/nickserv/identify";
loadmodule "modules/saslserv/main";
loadmodule "modules/saslserv/plain";
serverinfo {{
  name = "services.localhost"; desc = "services"; numeric = "00A"; recontime = 1;
  netname = "TestNet"; hidehostsuffix = "users.test"; adminname = "t";
  adminemail = "t@example.com"; registeremail = "noreply@example.com"; auth = none;
  maxusers = 100; maxchanacs = 100; mdlimit = 30; emaillimit = 100; emailtime = 300;
}};
uplink "irc.localhost" {{
  host = "127.0.0.1"; port = {link}; send_password = "linkpw"; receive_password = "linkpw";
}};
general {{ chan = "#services"; commit_interval = 5; maxlogins = 5; flood_msgs = 1000; flood_time = 1; }};
nickserv {{ nick = "NickServ"; user = "NickServ"; host = "services.localhost"; real = "Nickname Services"; }};
saslserv {{ nick = "SaslServ"; user = "SaslServ"; host = "services.localhost"; real = "SASL Authentication Agent"; }};
"##
        );
        std::fs::create_dir_all(self.path("atheme-data")).expect("atheme data dir");
        std::fs::write(self.path("atheme.conf"), config).expect("write atheme config");
    }

    fn write_ngircd_config(&self) {
        let (d, port) = (self.dir.path().display(), self.port);
        let config = format!(
            "[Global]\nName = irc.localhost\nInfo = test\nListen = 127.0.0.1\nPorts = {port}\n\
             ServerUID = root\nServerGID = root\nMotdPhrase = Welcome to the test server\n\
             PidFile = {d}/ngircd.pid\n\
             [Limits]\nMaxConnectionsIP = 0\nMaxJoins = 0\nMaxPenaltyTime = 0\n\
             [Options]\nDNS = no\nIdent = no\nPAM = no\n"
        );
        std::fs::write(self.path("ngircd.conf"), config).expect("write ngircd config");
    }

    fn spawn(&mut self) {
        let mut command = match self.flavor {
            Flavor::Ngircd => {
                let mut c = Command::new("ngircd");
                c.arg("--nodaemon").arg("-f").arg(self.path("ngircd.conf"));
                c
            }
            _ => {
                let mut c = Command::new("inspircd");
                c.arg(format!("--config={}", self.path("inspircd.conf").display()))
                    .args(["--nofork", "--runasroot"]);
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the IRC server is installed (apt-get install inspircd ngircd)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{:?} did not come up",
                self.flavor
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        while self.flavor == Flavor::InspircdTls
            && std::net::TcpStream::connect(("127.0.0.1", self.tls_port)).is_err()
        {
            assert!(Instant::now() < deadline, "the TLS port did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.flavor == Flavor::InspircdWithServices && self.services.is_none() {
            self.spawn_services();
        }
    }

    /// Starts Atheme and waits (bounded) until it has synced with InspIRCd.
    fn spawn_services(&mut self) {
        let log = self.path("atheme.log");
        let child = Command::new("atheme-services")
            .arg("-n")
            .arg("-c")
            .arg(self.path("atheme.conf"))
            .arg("-D")
            .arg(self.path("atheme-data"))
            .arg("-l")
            .arg(&log)
            .arg("-p")
            .arg(self.path("atheme.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("atheme is installed (apt-get install atheme-services)");
        self.services = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("finished synching with uplink") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Atheme did not sync with InspIRCd; its log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server and its services (by their pids) and waits for them to exit.
    pub fn stop(&mut self) {
        for mut child in [self.services.take(), self.child.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its sockets open and reads nothing, so that
    /// what is written to it stays unread until it is stopped (SIGKILL works on a frozen
    /// process): a line "in flight" when the server goes away.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg("-STOP")
                .arg(child.id().to_string())
                .status()
                .expect("kill runs");
            assert!(status.success(), "SIGSTOP to the IRC server");
        }
    }

    /// Starts the server again after [`Ircd::stop`], on the same port.
    pub fn start_again(&mut self) {
        let _ = std::fs::remove_file(self.path("inspircd.pid"));
        let _ = std::fs::remove_file(self.path("ngircd.pid"));
        self.spawn();
    }

    /// Stops and starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.path("inspircd.pid"));
        let _ = std::fs::remove_file(self.path("ngircd.pid"));
        self.spawn();
    }

    /// The outbound policy the tests run with: the servers listen on 127.0.0.1, which the
    /// default policy refuses.
    pub fn outbound() -> OutboundPolicy {
        OutboundPolicy::new(&["127.0.0.1"]).expect("a valid allow entry")
    }

    /// The bridge's config table for this server: plain TCP, flood control raised.
    pub fn bridge_table(&self) -> serde_json::Value {
        serde_json::json!({
            "domain": "irc.gw", "secret": "ignored",
            "servers": { "127.0.0.1": { "port": self.port, "tls": false,
                "throttle": { "lines_per_second": 50.0, "burst": 50 } } }
        })
    }
}

impl Drop for Ircd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A raw IRC client: the other side.
pub struct Raw {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Its nick.
    pub nick: String,
}

impl Raw {
    /// Connects and registers (without CAP), waiting for 001.
    pub async fn connect(port: u16, nick: &str) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (r, w) = stream.into_split();
        let mut raw = Self {
            reader: BufReader::new(r),
            writer: w,
            nick: nick.into(),
        };
        raw.send(&format!("NICK {nick}")).await;
        raw.send(&format!("USER {nick} 0 * :{nick}")).await;
        raw.expect(|l| l.contains(" 001 ")).await;
        raw
    }

    /// Sends one line (CRLF added).
    pub async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("send");
    }

    /// Reads lines until one matches (answering PINGs); panics after [`WAIT`].
    pub async fn expect(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout_at(deadline, self.reader.read_line(&mut line))
                .await
                .expect("timed out waiting for an IRC line")
                .expect("read");
            assert!(n > 0, "the IRC server closed the raw client's connection");
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            if let Some(rest) = line.strip_prefix("PING ") {
                self.send(&format!("PONG {rest}")).await;
                continue;
            }
            if pred(&line) {
                return line;
            }
        }
    }

    /// Reads lines for `dur`, returning them all.
    pub async fn collect_for(&mut self, dur: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + dur;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match tokio::time::timeout_at(deadline, self.reader.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 => lines.push(line.trim_end().to_owned()),
                _ => return lines,
            }
        }
    }
}

/// The trailing parameter of a line (after " :").
pub fn trailing(line: &str) -> &str {
    line.split_once(" :").map(|(_, t)| t).unwrap_or("")
}

/// The bridge for one user, with the core's end of the event queue.
pub struct Bridge {
    /// The client under test.
    pub client: Box<dyn Client>,
    /// What the client reported.
    pub events: mpsc::Receiver<(String, LoginId, RemoteEvent)>,
}

impl Bridge {
    /// Loads a login for `jid` against `ircd`.
    pub async fn new(ircd: &Ircd, jid: &str) -> Self {
        let connector =
            IrcConnector::from_config(&ircd.bridge_table(), Ircd::outbound()).expect("config");
        let (tx, events) = mpsc::channel(1000);
        let login = StoredLogin {
            id: LoginId::new(jid),
            user: User { jid: jid.into() },
            fields: FormValues::default(),
            metadata: serde_json::Value::Null,
            services: Default::default(),
            store: estuary_bridge_api::LoginStore::in_memory(),
        };
        let sink = EventSink::new(jid, login.id.clone(), tx);
        let client = connector.load_login(&login, sink).await.expect("load");
        client.connect().await;
        Self { client, events }
    }

    /// Waits for an event matching `pred`, skipping others; panics after [`WAIT`].
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&RemoteEvent) -> bool) -> RemoteEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some((_, _, event))) => {
                    if pred(&event) {
                        return event;
                    }
                }
                Ok(None) => panic!("event queue closed while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }
}
