//! The `estuary` binary: run the gateway, or check a configuration.

use anyhow::Context;
use clap::{Parser, Subcommand};
use estuary::config::Settings;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::{error, info, warn};

/// Rust's allocations go to jemalloc: one arena (thousands of small, long-lived per-user
/// objects pack densely instead of spreading over per-thread arenas) and pages freed after
/// a burst handed back within a second or so by a background thread. With glibc's malloc a
/// joined user cost ~27 KiB of resident memory, ~16 KiB with this (docs/performance.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start (`_RJEM_MALLOC_CONF` in the environment can
/// still override them). One-page slabs for every small size class: after a burst of joins
/// the long-lived objects are scattered among freed ones, and a page is returned only when
/// nothing on it lives; small slabs leave fewer pages held by one object (about 1 KiB less
/// resident memory per joined IRC user in the benchmark). No thread caches: a tokio worker
/// that goes idle after a burst keeps its cache (hundreds of freed objects per size class,
/// about 1 MB in all after a burst of joins) until it allocates again, and the arena's lock
/// is not contended on two threads (the benchmark's throughput did not change).
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"background_thread:true,narenas:1,tcache:false,dirty_decay_ms:1000,muzzy_decay_ms:0,slab_sizes:1-4096:1\0";

/// Estuary, an XMPP gateway to other networks.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, default_value = "estuary.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Check the configuration and say what is wrong, with the line of each key.
    CheckConfig,
    /// Bring a Biboumi user base over, once, when Estuary replaces Biboumi: the settings
    /// (global, per server, per channel) and the room archive, from Biboumi's SQLite
    /// database into the database of this configuration, for its IRC gateway. Prints what
    /// would be imported; writes only with --apply. Stop the gateway first.
    #[cfg(feature = "irc")]
    ImportBiboumi {
        /// Biboumi's database (its `db_name` file).
        biboumi_db: PathBuf,
        /// Write into Estuary's database (without it, a dry run).
        #[arg(long)]
        apply: bool,
        /// The bridge table of the IRC gateway in the configuration.
        #[arg(long, default_value = "irc")]
        bridge: String,
    },
}

/// `RUST_LOG` (default `info`), with tokio-xmpp held at `debug` whatever it says: at
/// `trace` it logs every byte of the component stream, registration forms and their
/// passwords included, and secrets never go to the log.
/// Whether log lines carry ANSI colours: only on a terminal, and not when `NO_COLOR` is set
/// to anything but the empty string (<https://no-color.org>).
fn log_colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn log_filter() -> tracing_subscriber::EnvFilter {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match "tokio_xmpp=debug".parse() {
        Ok(cap) => filter.add_directive(cap),
        Err(_) => filter,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr, coloured only for a person at a terminal (not for journald, a
    // file or a pipe, and not when NO_COLOR is set).
    let stderr_is_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(log_colours(
            stderr_is_terminal,
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .init();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => match Settings::load(&cli.config) {
            Ok(s) => {
                let bridges: Vec<String> = s
                    .enabled_bridges()
                    .map(|(n, b)| format!("{n} on {}", b.domain))
                    .collect();
                let http = match s.http_server() {
                    Some(h) => format!("; HTTP on {}", h.listen.join(", ")),
                    None => "; no HTTP server".to_string(),
                };
                println!(
                    "{}: OK ({}{http})",
                    cli.config.display(),
                    bridges.join(", ")
                );
                for notice in s.notices() {
                    println!("note: {notice}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "{}: the configuration has problems:\n{e}",
                    cli.config.display()
                );
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "irc")]
        Command::ImportBiboumi {
            biboumi_db,
            apply,
            bridge,
        } => {
            let settings = match Settings::load(&cli.config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!(
                        "{}: the configuration has problems:\n{e}",
                        cli.config.display()
                    );
                    return ExitCode::from(2);
                }
            };
            match import_biboumi(&settings, &biboumi_db, &bridge, apply) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("import-biboumi: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => {
            let settings = match Settings::load(&cli.config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!(
                        "{}: the configuration has problems:\n{e}\n(run `estuary check-config --config {}` after fixing it)",
                        cli.config.display(),
                        cli.config.display()
                    );
                    return ExitCode::from(2);
                }
            };
            match run(settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `import-biboumi`: opens the configured database and the IRC bridge named `bridge`, and
/// imports.
#[cfg(feature = "irc")]
#[tokio::main]
async fn import_biboumi(
    settings: &Settings,
    source: &std::path::Path,
    bridge: &str,
    apply: bool,
) -> anyhow::Result<estuary::import::Report> {
    let Some(table) = settings.bridge_tables.get(bridge) else {
        anyhow::bail!(
            "the configuration has no [bridges.{bridge}] table: add the IRC gateway's table (domain, secret) first"
        );
    };
    let outbound = settings.outbound.policy()?;
    let connector = estuary::bridges::build(bridge, table, &outbound)
        .map_err(|e| anyhow::anyhow!("bridge {bridge}: {e}"))?;
    if connector.info().id != "irc" {
        anyhow::bail!("[bridges.{bridge}] is not an IRC bridge");
    }
    // Biboumi's file first: a wrong path must not create an empty Estuary database.
    let bib = estuary::import::biboumi::BiboumiDb::open(source).await?;
    estuary::import::in_use::refuse_if_in_use(&settings.database.url)?;
    let db = estuary::app::open_database(settings).await?;
    let report =
        estuary::import::import_biboumi(&bib, &db, connector.as_ref(), bridge, apply).await;
    bib.close().await;
    db.close().await;
    Ok(report?)
}

#[tokio::main]
async fn run(settings: Settings) -> anyhow::Result<()> {
    // Listening for SIGINT/SIGTERM from the first moment: a stop asked during start-up (a
    // slow handshake, many logins to restore) is honoured once the start is done, instead
    // of killing the process half-way or being ignored until the start ends.
    let mut stop = StopSignals::install();
    estuary::memory::start_trimming();
    info!("starting {} gateway(s)", settings.enabled_bridges().count());
    let starting = estuary::app::start(&settings);
    tokio::pin!(starting);
    let app = tokio::select! {
        app = &mut starting => app.context("cannot start")?,
        () = stop.next() => {
            info!("stop asked during start-up; finishing the start first (at most {START_GRACE:?})");
            match tokio::time::timeout(START_GRACE, starting).await {
                Ok(app) => {
                    let app = app.context("cannot start")?;
                    info!("stopping: keeping undelivered stanzas for the next start");
                    app.shutdown().await;
                }
                Err(_) => warn!("the start did not finish within {START_GRACE:?}; stopping without it"),
            }
            return Ok(());
        }
    };
    info!(
        "Estuary {} running {} gateway(s); Ctrl-C to stop",
        env!("CARGO_PKG_VERSION"),
        app.gateways.len()
    );
    stop.next().await;
    info!("stopping: keeping undelivered stanzas for the next start");
    app.shutdown().await;
    Ok(())
}

/// How long a stop asked during start-up waits for the start to finish.
const START_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the moment this is made.
struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Registers the handlers now (a signal that comes before [`StopSignals::next`] is
    /// awaited is not lost).
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let interrupt = signal(SignalKind::interrupt())
                .inspect_err(|e| warn!("cannot listen for SIGINT: {e}"))
                .ok();
            let terminate = signal(SignalKind::terminate())
                .inspect_err(|e| warn!("cannot listen for SIGTERM: {e}"))
                .ok();
            Self {
                interrupt,
                terminate,
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for the next stop signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = one(&mut self.interrupt) => {}
                () = one(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_colours;
    use std::ffi::OsStr;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(log_colours(true, None));
        assert!(!log_colours(false, None), "a pipe, a file, journald");
        assert!(!log_colours(true, Some(OsStr::new("1"))));
        assert!(
            log_colours(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
    }
}
