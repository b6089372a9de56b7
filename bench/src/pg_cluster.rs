//! A throwaway PostgreSQL cluster of our own: `initdb` and `pg_ctl` from the newest
//! `/usr/lib/postgresql/*/bin`, run as the `postgres` user, in a directory of the caller's
//! on a loopback port of the caller's, with trust authentication and a database `estuary`.
//! It can be restarted (a fast shutdown, a pause, a start) and is stopped (immediately) on
//! drop. Never the machine's own server on 5432, which other tests and engineers use.
//!
//! Used by the fault suite's `postgres-restart` scenario and, through `#[path]`, by the
//! core's end-to-end test of the commit gate during a PostgreSQL restart
//! (`tests/e2e_postgres_restart.rs`): this file depends on nothing but std and tokio.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs a command to completion, its output appended to `log`; `Err` with what to read when it
/// fails.
pub async fn run_cmd(
    what: &str,
    cmd: &mut tokio::process::Command,
    log: &Path,
) -> Result<(), String> {
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{what}: cannot open {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .await
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status}); see {}", log.display()))
    }
}

/// A throwaway PostgreSQL cluster of our own on a free loopback port, run as the `postgres`
/// user, that a scenario may restart. Stopped (immediately) on drop.
pub struct PgCluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl PgCluster {
    /// The newest `/usr/lib/postgresql/*/bin`.
    fn bin_dir() -> Result<PathBuf, String> {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no PostgreSQL in /usr/lib/postgresql ({e}); install it"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versions.sort();
        versions
            .pop()
            .map(|(_, p)| p)
            .ok_or_else(|| "no version in /usr/lib/postgresql".into())
    }

    fn as_postgres(&self, tool: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
        cmd
    }

    /// initdb in `dir/data` (trust, user `postgres`), start on `port` of 127.0.0.1, and
    /// create database `estuary`.
    pub async fn start(dir: &Path, port: u16) -> Result<PgCluster, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let pg = PgCluster {
            bin: Self::bin_dir()?,
            data: dir.join("data"),
            log: dir.join("postgres.log"),
            port,
        };
        std::fs::create_dir_all(&pg.data).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&pg.data, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        run_cmd(
            "chown of the PostgreSQL directory",
            tokio::process::Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir),
            &pg.log,
        )
        .await?;
        run_cmd(
            "initdb",
            pg.as_postgres("initdb")
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&pg.data),
            &pg.log,
        )
        .await?;
        pg.pg_start().await?;
        run_cmd(
            "createdb",
            tokio::process::Command::new("psql").args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE estuary",
            ]),
            &pg.log,
        )
        .await?;
        Ok(pg)
    }

    /// The URL of its database `estuary`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/estuary", self.port)
    }

    async fn pg_start(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.data.display()
        );
        run_cmd(
            "pg_ctl start",
            self.as_postgres("pg_ctl")
                .args(["-w", "-t", "30", "-o", &opts, "-l"])
                .arg(self.data.join("server.log"))
                .arg("-D")
                .arg(&self.data)
                .arg("start"),
            &self.log,
        )
        .await
    }

    /// A fast shutdown (connections closed, clean checkpoint), `down` of nothing, a start.
    pub async fn restart(&self, down: Duration) -> Result<(), String> {
        run_cmd(
            "pg_ctl stop",
            self.as_postgres("pg_ctl")
                .args(["-w", "-t", "30", "-m", "fast", "-D"])
                .arg(&self.data)
                .arg("stop"),
            &self.log,
        )
        .await?;
        tokio::time::sleep(down).await;
        self.pg_start().await
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
