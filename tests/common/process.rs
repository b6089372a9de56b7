//! A server process started by the harness, in its own process group.
//!
//! Some servers run behind wrapper scripts (`ejabberdctl` runs `su`, which runs the Erlang VM),
//! so the harness puts each one in a fresh process group and signals the whole group: nothing a
//! test starts outlives it.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running server process (and everything it started), stopped on drop.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Option<Child>,
}

impl ServerProcess {
    /// Spawns `command` in a new process group with stdin closed and stdout/stderr appended to
    /// `output` (created if missing).
    pub fn spawn(name: &str, mut command: Command, output: &Path) -> Self {
        let out = File::options()
            .create(true)
            .append(true)
            .open(output)
            .unwrap_or_else(|e| {
                panic!(
                    "could not open {} for {name}'s output: {e}",
                    output.display()
                )
            });
        let err = out
            .try_clone()
            .expect("duplicating the output file handle failed");
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "could not start {name} ({command:?}): {e}; is it installed? (.ci/run installs it)"
            )
        });
        tracing::debug!(name, pid = child.id(), "started server process");
        ServerProcess {
            name: name.to_string(),
            child: Some(child),
        }
    }

    /// The process id (also the process group id) while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has already exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child
            .try_wait()
            .unwrap_or_else(|e| panic!("could not poll {}'s process: {e}", self.name))
    }

    fn signal_group(&self, signal: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is shared.
            unsafe {
                libc::kill(-(pid as libc::pid_t), signal);
            }
        }
    }

    /// Sends SIGTERM to the group, waits up to `grace` for the process to exit, then sends
    /// SIGKILL and reaps it. Blocking; meant for `Drop`.
    pub fn stop_blocking(&mut self, grace: Duration) {
        if self.child.is_none() {
            return;
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_and_reap();
    }

    /// Like [`stop_blocking`](Self::stop_blocking) but waits without blocking the runtime.
    pub async fn stop(&mut self, grace: Duration) {
        if self.child.is_none() {
            return;
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while self.exited().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill_and_reap();
    }

    /// Waits up to `limit` for the process to exit on its own (e.g. after a stop command).
    pub async fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.child.is_none() || self.exited().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the whole group at once and reaps the leader (for servers whose state is
    /// thrown away anyway and whose clean shutdown is slow).
    pub fn kill_now(&mut self) {
        self.kill_and_reap();
    }

    /// SIGKILLs the whole group (stragglers included, even when the leader is gone) and reaps
    /// the leader.
    fn kill_and_reap(&mut self) {
        self.signal_group(libc::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let status = child.wait();
            tracing::debug!(name = %self.name, ?status, "server process stopped");
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop_blocking(Duration::from_secs(5));
    }
}
