//! Child processes (each in its own process group, stopped on drop), free ports, and what the
//! kernel says about a process: resident memory and CPU time.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process started by the benchmark; SIGTERM then SIGKILL to its group on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    /// Spawns `command` in a new process group, stdin closed, stdout and stderr appended to
    /// `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc, String> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{name}: cannot open {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name} ({command:?}): {e}; is it installed?"))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
        })
    }

    /// The process id (and group id).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Err` with the exit status if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(format!("{} exited: {status}", self.name));
        }
        Ok(())
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.pid();
        if pid != 0 {
            // SAFETY: kill(2) on our own child's process group; no memory is shared.
            unsafe {
                libc::kill(-(pid as libc::pid_t), signal);
            }
        }
    }

    /// SIGTERM to the group, up to `grace` to exit, then SIGKILL; reaps the child.
    pub fn stop(&mut self, grace: Duration) {
        // The signal goes out before the child is taken: `signal` finds the pid through it.
        self.signal(libc::SIGTERM);
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = child.id();
        // SAFETY: as above, our own child's group (stragglers included).
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
        let _ = child.wait();
    }
}

impl Proc {
    /// SIGKILL to the group at once (no chance to clean up), then reaps the child.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // SAFETY: kill(2) on our own child's process group; no memory is shared.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
        let _ = child.wait();
    }

    /// SIGTERM to the group and up to `grace` for the process to exit on its own; `true` if
    /// it did, `false` if it had to be killed (SIGKILL) at the end of `grace`.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        if self.child.is_none() {
            return true;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut exited = false;
        while let Some(child) = self.child.as_mut()
            && Instant::now() < deadline
        {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        exited
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 works")
}

/// Waits until 127.0.0.1:`port` accepts a connection, at most `limit`.
pub async fn wait_port(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Raises this process's open-file limit (inherited by the servers it starts) to `want` or the
/// hard limit, whichever is lower; returns the new soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let target = want.min(lim.rlim_max);
        if lim.rlim_cur < target {
            lim.rlim_cur = target;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`, …).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Resident memory of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// CPU time (user + system) used so far by `pid` (0 = this process), in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let Some(rest) = text.rfind(')').map(|i| &text[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// CPU seconds of several processes, sampled together to report per-phase usage.
#[derive(Debug, Clone)]
pub struct CpuSample {
    at: Instant,
    secs: Vec<(String, u32, f64)>,
}

impl CpuSample {
    /// Samples each `(label, pid)` (pid 0 = the benchmark itself).
    pub fn take(procs: &[(&str, u32)]) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            secs: procs
                .iter()
                .map(|(l, p)| (l.to_string(), *p, cpu_secs(*p)))
                .collect(),
        }
    }

    /// The CPU seconds (user + system) the process labelled `label` used since `self`.
    pub fn secs_since(&self, label: &str) -> Option<f64> {
        self.secs
            .iter()
            .find(|(l, _, _)| l == label)
            .map(|(_, p, s)| (cpu_secs(*p) - s).max(0.0))
    }

    /// "label 93%, label 41%": the share of one core each process used since `self`.
    pub fn usage_since(&self) -> String {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        self.secs
            .iter()
            .map(|(l, p, s)| format!("{l} {:.0}%", (cpu_secs(*p) - s) / wall * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
