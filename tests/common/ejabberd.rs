//! A real ejabberd for one test: its own temp dir, Erlang node name, cookie and loopback ports.

use super::ports::{free_port, loopback, wait_until_accepting};
use super::process::ServerProcess;
use super::{XmppServer, tail_of_files};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long ejabberd may take to report `started` and accept connections.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long one `ejabberdctl` command may take.
const CTL_LIMIT: Duration = Duration::from_secs(30);

/// An ejabberd server started for one test (`ejabberdctl … foreground`), stopped when dropped.
///
/// It serves the host `localhost`, MUC on `conference.localhost`, and one external component
/// (XEP-0114) per `(domain, secret)` given to [`Ejabberd::start`]. The Erlang node has a
/// unique name, a random cookie and a fixed distribution port (no epmd), so instances run in
/// parallel; everything listens on 127.0.0.1 only.
#[derive(Debug)]
pub struct Ejabberd {
    dir: TempDir,
    c2s: SocketAddr,
    component: SocketAddr,
    has_components: bool,
    /// The HTTP listener of `mod_http_upload`, when started with it.
    http: Option<SocketAddr>,
    process: Option<ServerProcess>,
}

impl Ejabberd {
    /// Writes the configs into a fresh temp dir owned by the `ejabberd` user, starts the node
    /// and waits (at most 30 s) until `ejabberdctl status` says it is started and both ports
    /// accept connections.
    pub async fn start(components: &[(&str, &str)]) -> Ejabberd {
        Self::start_with(components, None).await
    }

    /// [`Ejabberd::start`], plus the XEP-0363 upload service `upload.localhost`
    /// (`mod_http_upload`, files up to 1 MiB, granted to every JID: the gateway asks as its
    /// component domain) behind an `ejabberd_http` listener on a free loopback port (see
    /// [`Ejabberd::upload_http`]).
    pub async fn start_with_upload(components: &[(&str, &str)]) -> Ejabberd {
        Self::start_with(components, Some(loopback(free_port()))).await
    }

    async fn start_with(components: &[(&str, &str)], http: Option<SocketAddr>) -> Ejabberd {
        static INSTANCE: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::Builder::new()
            .prefix("estuary-ejabberd-")
            .tempdir()
            .expect("creating a temp dir for ejabberd failed");
        let c2s = loopback(free_port());
        let component = loopback(free_port());
        let dist_port = free_port();
        let node = format!(
            "estuary{}x{}@localhost",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        );
        let cookie = format!("estuary{}", uuid::Uuid::new_v4().simple());
        let path = dir.path();
        for sub in ["log", "db", "upload"] {
            std::fs::create_dir_all(path.join(sub)).expect("creating ejabberd's dirs failed");
        }
        std::fs::write(
            path.join("ejabberd.yml"),
            yaml(c2s, component, components, http, &path.join("upload")),
        )
        .expect("writing ejabberd.yml failed");
        std::fs::write(
            path.join("ejabberdctl.cfg"),
            format!(
                "ERLANG_NODE={node}\nINET_DIST_INTERFACE=127.0.0.1\nERL_DIST_PORT={dist_port}\n\
                 EJABBERD_PID_PATH={pid}\nEJABBERD_BYPASS_WARNINGS=true\n\
                 ERL_OPTIONS=\"-setcookie {cookie}\"\n",
                pid = path.join("ejabberd.pid").display()
            ),
        )
        .expect("writing ejabberdctl.cfg failed");
        std::fs::copy("/etc/ejabberd/inetrc", path.join("inetrc"))
            .expect("copying /etc/ejabberd/inetrc failed (is ejabberd installed?)");
        // The output file must exist before the chown so the server can write its own logs.
        std::fs::File::create(path.join("ejabberd.out")).expect("creating ejabberd.out failed");
        chown_to_ejabberd(path);
        let mut ejabberd = Ejabberd {
            dir,
            c2s,
            component,
            has_components: !components.is_empty(),
            http,
            process: None,
        };
        ejabberd.launch().await;
        ejabberd
    }

    /// `ejabberdctl` with this instance's paths, run as the `ejabberd` user. As root,
    /// ejabberdctl would switch user with `su`, whose child lands in a process group of its
    /// own that outlives ours; started as `ejabberd` it runs the VM directly, in our group.
    fn ctl(&self) -> Command {
        let path = self.dir.path();
        let (uid, gid) = ejabberd_user();
        let mut command = Command::new("ejabberdctl");
        command
            .uid(uid)
            .gid(gid)
            .current_dir(path)
            .env("HOME", path)
            .arg("--config-dir")
            .arg(path)
            .arg("--ctl-config")
            .arg(path.join("ejabberdctl.cfg"))
            .arg("--config")
            .arg(path.join("ejabberd.yml"))
            .arg("--logs")
            .arg(path.join("log"))
            .arg("--spool")
            .arg(path.join("db"));
        command
    }

    /// Runs `ejabberdctl … args`, bounded, returning (success, combined output).
    async fn run_ctl(&self, args: &[&str]) -> (bool, String) {
        let mut command = tokio::process::Command::from(self.ctl());
        command
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(CTL_LIMIT, command.output()).await {
            Err(_) => (
                false,
                format!("ejabberdctl {args:?} took longer than {CTL_LIMIT:?}"),
            ),
            Ok(Err(e)) => panic!("could not run ejabberdctl: {e}"),
            Ok(Ok(out)) => (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ),
        }
    }

    async fn launch(&mut self) {
        let started = Instant::now();
        let mut command = self.ctl();
        command.arg("foreground");
        let mut process =
            ServerProcess::spawn("ejabberd", command, &self.dir.path().join("ejabberd.out"));
        let deadline = started + START_LIMIT;
        // The listeners open late in start-up, and probing them is cheap; each `status` call
        // boots an Erlang VM (~1 s), so it only confirms what the ports already say.
        let mut ports = vec![self.c2s];
        if self.has_components {
            ports.push(self.component);
        }
        ports.extend(self.http);
        let dir = self.dir.path().to_path_buf();
        let up = wait_until_accepting(&ports, START_LIMIT, || {
            if let Some(status) = process.exited() {
                panic!(
                    "ejabberd exited during start-up ({status}); log tail:\n{}",
                    tail_of_files(&log_files(&dir), 40)
                );
            }
        })
        .await;
        if !up {
            panic!(
                "ejabberd did not accept connections on {} (c2s) and {} (component) within {START_LIMIT:?}; log tail:\n{}",
                self.c2s,
                self.component,
                self.log_tail()
            );
        }
        loop {
            let (ok, out) = self.run_ctl(&["status"]).await;
            if ok {
                break;
            }
            if Instant::now() >= deadline {
                panic!(
                    "ejabberd did not report `started` within {START_LIMIT:?}; last status: {out}\nlog tail:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tracing::info!(c2s = %self.c2s, component = %self.component, elapsed = ?started.elapsed(), "ejabberd is up");
        self.process = Some(process);
    }

    /// The HTTP listener of the upload service, when started with
    /// [`Ejabberd::start_with_upload`].
    pub fn upload_http(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The c2s listener (plaintext allowed).
    pub fn c2s_addr(&self) -> SocketAddr {
        self.c2s
    }

    /// The XEP-0114 component listener.
    pub fn component_addr(&self) -> SocketAddr {
        self.component
    }

    /// The host, `localhost`.
    pub fn domain(&self) -> &str {
        "localhost"
    }

    /// The MUC service, `conference.localhost`.
    pub fn muc_domain(&self) -> &str {
        "conference.localhost"
    }

    /// The temp dir holding configs, the Mnesia spool and logs (kept until drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates the account `user@localhost` with `password` (`ejabberdctl register`).
    pub async fn register(&self, user: &str, password: &str) {
        let (ok, out) = self
            .run_ctl(&["register", user, self.domain(), password])
            .await;
        assert!(ok, "ejabberdctl register {user} failed: {out}");
    }

    /// Stops ejabberd (`ejabberdctl stop`, then the process group is killed if it lingers);
    /// ports, configs and the spool stay for [`start_again`](Self::start_again).
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let (ok, out) = self.run_ctl(&["stop"]).await;
            if !ok {
                tracing::warn!(%out, "ejabberdctl stop failed; killing the node");
            }
            if !process.wait_exit(Duration::from_secs(10)).await {
                tracing::warn!("ejabberd did not exit within 10 s of `stop`; killing it");
            }
            process.stop(Duration::from_secs(2)).await;
        }
    }

    /// Starts the same node again on the same ports with the same spool (after [`stop`](Self::stop)).
    pub async fn start_again(&mut self) {
        assert!(
            self.process.is_none(),
            "start_again() called while ejabberd is still running; call stop() first"
        );
        self.launch().await;
    }

    /// The last lines of ejabberd's log and of its stdout/stderr.
    pub fn log_tail(&self) -> String {
        tail_of_files(&log_files(self.dir.path()), 40)
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        // SIGKILL at once: the Mnesia spool is thrown away with the temp dir, and the VM takes
        // seconds to shut down cleanly on SIGTERM.
        if let Some(mut process) = self.process.take() {
            process.kill_now();
        }
        // Belt and braces: the VM's own pid, in case it ever left our process group.
        if let Some(pid) = std::fs::read_to_string(self.dir.path().join("ejabberd.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<libc::pid_t>().ok())
        {
            // SAFETY: kill(2) only sends a signal; ESRCH (already gone) is fine.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl XmppServer for Ejabberd {
    fn name(&self) -> &'static str {
        "ejabberd"
    }
    fn c2s_addr(&self) -> SocketAddr {
        Ejabberd::c2s_addr(self)
    }
    fn component_addr(&self) -> SocketAddr {
        Ejabberd::component_addr(self)
    }
    fn domain(&self) -> &str {
        Ejabberd::domain(self)
    }
    fn muc_domain(&self) -> &str {
        Ejabberd::muc_domain(self)
    }
    async fn register(&self, user: &str, password: &str) {
        Ejabberd::register(self, user, password).await;
    }
    async fn stop(&mut self) {
        Ejabberd::stop(self).await;
    }
    async fn start_again(&mut self) {
        Ejabberd::start_again(self).await;
    }
    fn log_tail(&self) -> String {
        Ejabberd::log_tail(self)
    }
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    vec![
        dir.join("log/ejabberd.log"),
        dir.join("log/error.log"),
        dir.join("ejabberd.out"),
    ]
}

/// The uid and gid of the `ejabberd` system user (created by the Debian package).
fn ejabberd_user() -> (u32, u32) {
    let name = std::ffi::CString::new("ejabberd").expect("no NUL in a user name");
    // SAFETY: getpwnam returns NULL or a pointer to a static passwd entry, read at once; the
    // harness does not call getpwnam concurrently from other threads with other names.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !entry.is_null(),
        "there is no `ejabberd` user; install ejabberd (apt-get install ejabberd, or .ci/run)"
    );
    // SAFETY: checked non-null above.
    unsafe { ((*entry).pw_uid, (*entry).pw_gid) }
}

/// ejabberd runs as the `ejabberd` user, which must own the whole instance dir.
fn chown_to_ejabberd(path: &Path) {
    let status = Command::new("chown")
        .arg("-R")
        .arg("ejabberd:ejabberd")
        .arg(path)
        .status()
        .expect("could not run chown");
    assert!(
        status.success(),
        "chown -R ejabberd:ejabberd {} failed ({status}); the harness must run as root",
        path.display()
    );
}

/// A YAML double-quoted string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The config. Unlike PEERS.md's recipe it leaves out `mod_stream_mgmt`: after a restart
/// tokio-xmpp 6.0 tries to resume, ejabberd answers `<failed xmlns='urn:xmpp:sm:3'/>` without
/// the (optional) `h` attribute, xmpp-parsers rejects that, and the client reconnects in a
/// tight loop forever.
fn yaml(
    c2s: SocketAddr,
    component: SocketAddr,
    components: &[(&str, &str)],
    upload: Option<SocketAddr>,
    docroot: &Path,
) -> String {
    let mut hosts = String::new();
    for (domain, secret) in components {
        write!(
            hosts,
            "\n      {}:\n        password: {}",
            quoted(domain),
            quoted(secret)
        )
        .expect("writing to a String cannot fail");
    }
    if components.is_empty() {
        hosts.push_str(" {}");
    }
    // mod_http_upload: PUT and GET on the same listener; `access: all` (a predefined rule)
    // lets the component's domain ask for slots.
    let (upload_listener, upload_module) = match upload {
        None => (String::new(), String::new()),
        Some(http) => (
            format!(
                "  - port: {port}\n    ip: \"127.0.0.1\"\n    module: ejabberd_http\n    request_handlers:\n      /upload: mod_http_upload\n",
                port = http.port()
            ),
            format!(
                "  mod_http_upload:\n    put_url: \"http://127.0.0.1:{port}/upload\"\n    docroot: {docroot}\n    max_size: 1048576\n    access: all\n",
                port = http.port(),
                docroot = quoted(&docroot.display().to_string())
            ),
        ),
    };
    format!(
        r#"# Generated by Estuary's test harness.
hosts: [localhost]
loglevel: info
listen:
  - port: {c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    access: c2s
    starttls_required: false
  - port: {component_port}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:{hosts}
{upload_listener}auth_method: internal
acl: {{local: {{user_regexp: ""}}}}
access_rules: {{local: {{allow: local}}, c2s: {{allow: all}}, muc_create: {{allow: local}}}}
api_permissions: {{"console commands": {{from: [ejabberd_ctl], who: all, what: "*"}}}}
modules:
  mod_disco: {{}}
  mod_roster: {{}}
  mod_ping: {{}}
  mod_caps: {{}}
  mod_carboncopy: {{}}
  mod_private: {{}}
  mod_vcard: {{}}
  mod_version: {{}}
  mod_muc: {{host: "conference.localhost"}}
  mod_admin_extra: {{}}
{upload_module}"#,
        c2s_port = c2s.port(),
        component_port = component.port(),
    )
}
