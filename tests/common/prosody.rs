//! A real Prosody for one test: its own temp dir, config, data and loopback ports.

use super::ports::{free_port, loopback, wait_until_accepting};
use super::process::ServerProcess;
use super::{XmppServer, tail_of_files};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long Prosody may take to accept connections on both ports.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long `prosodyctl` may take.
const CTL_LIMIT: Duration = Duration::from_secs(30);

/// A Prosody server started for one test (`prosody -F`), stopped when dropped.
///
/// It serves the virtual host `localhost`, a MUC service on `conference.localhost`, and one
/// external component (XEP-0114) per `(domain, secret)` given to [`Prosody::start`]. c2s allows
/// plaintext and PLAIN/SCRAM without TLS; everything listens on 127.0.0.1 only.
#[derive(Debug)]
pub struct Prosody {
    dir: TempDir,
    c2s: SocketAddr,
    component: SocketAddr,
    has_components: bool,
    http: Option<SocketAddr>,
    process: Option<ServerProcess>,
}

impl Prosody {
    /// Writes a config into a fresh temp dir, starts Prosody on two free loopback ports and
    /// waits (at most 10 s) until both accept connections.
    pub async fn start(components: &[(&str, &str)]) -> Prosody {
        Self::start_with(components, None).await
    }

    /// [`Prosody::start`], plus an XEP-0363 upload service `upload.localhost`
    /// (`http_file_share`) whose HTTP listener is on a free loopback port (see
    /// [`Prosody::upload_http`]), taking files up to 1 MiB.
    pub async fn start_with_upload(components: &[(&str, &str)]) -> Prosody {
        Self::start_with(components, Some(loopback(free_port()))).await
    }

    async fn start_with(components: &[(&str, &str)], http: Option<SocketAddr>) -> Prosody {
        let dir = tempfile::Builder::new()
            .prefix("estuary-prosody-")
            .tempdir()
            .expect("creating a temp dir for Prosody failed");
        let c2s = loopback(free_port());
        let component = loopback(free_port());
        std::fs::create_dir_all(dir.path().join("data"))
            .expect("creating Prosody's data dir failed");
        let config = config(
            dir.path().to_str().expect("temp dir path is UTF-8"),
            c2s,
            component,
            components,
            http,
        );
        std::fs::write(dir.path().join("prosody.cfg.lua"), config)
            .expect("writing prosody.cfg.lua failed");
        let mut prosody = Prosody {
            dir,
            c2s,
            component,
            has_components: !components.is_empty(),
            http,
            process: None,
        };
        prosody.launch().await;
        prosody
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("prosody.cfg.lua")
    }

    async fn launch(&mut self) {
        let started = Instant::now();
        let mut command = Command::new("prosody");
        command.arg("-F").arg("--config").arg(self.config_path());
        let mut process =
            ServerProcess::spawn("prosody", command, &self.dir.path().join("prosody.out"));
        let dir = self.dir.path().to_path_buf();
        // Prosody opens the component port only when at least one component is declared.
        let mut ports = vec![self.c2s];
        if self.has_components {
            ports.push(self.component);
        }
        let up = wait_until_accepting(&ports, START_LIMIT, || {
            if let Some(status) = process.exited() {
                panic!(
                    "Prosody exited during start-up ({status}); log tail:\n{}",
                    tail_of_files(&[dir.join("prosody.log"), dir.join("prosody.out")], 40)
                );
            }
        })
        .await;
        if !up {
            panic!(
                "Prosody did not accept connections on {} (c2s) and {} (component) within {START_LIMIT:?}; log tail:\n{}",
                self.c2s,
                self.component,
                self.log_tail()
            );
        }
        tracing::info!(c2s = %self.c2s, component = %self.component, elapsed = ?started.elapsed(), "Prosody is up");
        self.process = Some(process);
    }

    /// The HTTP listener of the upload service, when started with
    /// [`Prosody::start_with_upload`].
    pub fn upload_http(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The c2s listener (plaintext allowed).
    pub fn c2s_addr(&self) -> SocketAddr {
        self.c2s
    }

    /// The XEP-0114 component listener (Prosody opens it only when `start` was given at least
    /// one component).
    pub fn component_addr(&self) -> SocketAddr {
        self.component
    }

    /// The virtual host, `localhost`.
    pub fn domain(&self) -> &str {
        "localhost"
    }

    /// The MUC service, `conference.localhost`.
    pub fn muc_domain(&self) -> &str {
        "conference.localhost"
    }

    /// The temp dir holding config, data and logs (kept until drop).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Creates the account `user@localhost` with `password` (`prosodyctl register`; works while
    /// the server runs).
    pub async fn register(&self, user: &str, password: &str) {
        let mut command = tokio::process::Command::new("prosodyctl");
        command
            .arg("--config")
            .arg(self.config_path())
            .args(["register", user, self.domain(), password])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(CTL_LIMIT, command.output())
            .await
            .unwrap_or_else(|_| panic!("prosodyctl register {user} took longer than {CTL_LIMIT:?}"))
            .expect("could not run prosodyctl");
        assert!(
            output.status.success(),
            "prosodyctl register {user} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops Prosody (SIGTERM, SIGKILL after 5 s) and waits until it is gone; ports, config
    /// and data stay for [`start_again`](Self::start_again).
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::from_secs(5)).await;
        }
    }

    /// Starts Prosody again on the same ports with the same data (after [`stop`](Self::stop)).
    pub async fn start_again(&mut self) {
        assert!(
            self.process.is_none(),
            "start_again() called while Prosody is still running; call stop() first"
        );
        self.launch().await;
    }

    /// The last lines of Prosody's log and of its stdout/stderr.
    pub fn log_tail(&self) -> String {
        tail_of_files(
            &[
                self.dir.path().join("prosody.log"),
                self.dir.path().join("prosody.out"),
            ],
            40,
        )
    }
}

impl XmppServer for Prosody {
    fn name(&self) -> &'static str {
        "Prosody"
    }
    fn c2s_addr(&self) -> SocketAddr {
        Prosody::c2s_addr(self)
    }
    fn component_addr(&self) -> SocketAddr {
        Prosody::component_addr(self)
    }
    fn domain(&self) -> &str {
        Prosody::domain(self)
    }
    fn muc_domain(&self) -> &str {
        Prosody::muc_domain(self)
    }
    async fn register(&self, user: &str, password: &str) {
        Prosody::register(self, user, password).await;
    }
    async fn stop(&mut self) {
        Prosody::stop(self).await;
    }
    async fn start_again(&mut self) {
        Prosody::start_again(self).await;
    }
    fn log_tail(&self) -> String {
        Prosody::log_tail(self)
    }
}

/// A Lua string literal.
fn lua(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn config(
    dir: &str,
    c2s: SocketAddr,
    component: SocketAddr,
    components: &[(&str, &str)],
    http: Option<SocketAddr>,
) -> String {
    let mut cfg = format!(
        r#"-- Generated by Estuary's test harness.
run_as_root = true
pidfile = {pidfile}
data_path = {data}
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = {log} }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_direct_tls_ports = {{}}
s2s_ports = {{}}
{http_global}
https_ports = {{}}
component_ports = {{ {component} }}
component_interfaces = {{ "127.0.0.1" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "posix"; "ping"; "presence"; "message"; "iq";
  "version"; "private"; "vcard"; "carbons"; "pep"; "blocklist"; "offline"; "admin_shell" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"

VirtualHost "localhost"

Component "conference.localhost" "muc"
"#,
        pidfile = lua(&format!("{dir}/prosody.pid")),
        data = lua(&format!("{dir}/data")),
        log = lua(&format!("{dir}/prosody.log")),
        c2s = c2s.port(),
        component = component.port(),
        http_global = match http {
            Some(h) => format!(
                "http_ports = {{ {} }}\nhttp_interfaces = {{ \"127.0.0.1\" }}\nhttp_external_url = {}\nhttp_default_host = \"upload.localhost\"",
                h.port(),
                lua(&format!("http://{h}/"))
            ),
            None => "http_ports = {}".to_string(),
        },
    );
    if http.is_some() {
        cfg.push_str(
            "\nComponent \"upload.localhost\" \"http_file_share\"\n    \
             http_file_share_size_limit = 1048576\n",
        );
    }
    for (domain, secret) in components {
        write!(
            cfg,
            "\nComponent {}\n    component_secret = {}\n",
            lua(domain),
            lua(secret)
        )
        .expect("writing to a String cannot fail");
    }
    cfg
}
