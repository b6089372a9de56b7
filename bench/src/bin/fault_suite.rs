//! The fault suite: numbered messages both ways through one IRC channel, bridged by Estuary
//! (run as its own process) between a real Prosody and a real InspIRCd on loopback, while a
//! fault is injected at message K: a server restart, the gateway stopped (SIGTERM) or killed
//! (SIGKILL) and started again, a PostgreSQL restart, or poison input. Counts per direction
//! what was sent, delivered live, brought by the rejoin's history, found in the archive
//! (MAM), missing without a trace, duplicated, out of order, and the errors the sender was
//! told about. See `docs/reliability.md`.
//!
//! ```sh
//! cargo build -p estuary -p estuary-bench
//! target/debug/fault_suite [--scenarios baseline,prosody-restart,ircd-restart,gateway-sigterm,
//!     gateway-sigkill,postgres-restart,poison] [--messages 1000] [--rate 200] [--at 300]
//!     [--time-limit 120] [--down 2] [--backend sqlite|postgres] [--keep]
//! ```
//!
//! The gateway is `$ESTUARY_BIN`, else `target/debug/estuary` (the figures are counts, not
//! timings). It logs at `info` (`RUST_LOG` overrides) to `<dir>/<scenario>/estuary/estuary.log`;
//! `--keep` keeps the directory. `--backend postgres` gives the gateway a fresh database on
//! the PostgreSQL server at 127.0.0.1:5432 (user `postgres`, trust); the `postgres-restart`
//! scenario always runs its own throwaway cluster (initdb/pg_ctl as the `postgres` user on a
//! free loopback port), which it restarts.

use estuary_bench::irc::Irc;
use estuary_bench::pg_cluster::{PgCluster, run_cmd};
use estuary_bench::procs::{Proc, free_port, raise_nofile};
use estuary_bench::servers::{self, ESTUARY_HOOKS, ESTUARY_IRC, Ircd, Prosody};
use estuary_bench::stats::table;
use estuary_bench::tally::{Summary, Tally, parse_seq, ranges};
use estuary_bench::xmpp::{self, Conn, User};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};

/// The channel both sides talk in.
const CHANNEL: &str = "#fault";
/// The XMPP account (on Prosody's `localhost`), its password and resource.
const USER: (&str, &str, &str) = ("fs", "faultpw", "fault");
/// The XMPP user's nick in the room (and so its IRC nick).
const NICK: &str = "xf";
/// The raw IRC client's nick.
const PEER: &str = "peerf";
/// The nick of the IRC client that sends the poison input.
const POISONER: &str = "pz";
/// The webhook's bearer token.
const HOOK_TOKEN: &str = "fault-token";
/// Tags of the two directions' message texts (`"<tag> <seq>"`).
const I2X: &str = "i2x";
const X2I: &str = "x2i";
/// How long a flow may stay quiet, once everything is sent, before the run is over.
const QUIET: Duration = Duration::from_secs(8);
/// Between two rejoin attempts, and between two reconnection attempts.
const RETRY: Duration = Duration::from_millis(500);

/// A fault injected at message K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Baseline,
    ProsodyRestart,
    IrcdRestart,
    GatewaySigterm,
    GatewaySigkill,
    PostgresRestart,
    Poison,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::Baseline,
        Scenario::ProsodyRestart,
        Scenario::IrcdRestart,
        Scenario::GatewaySigterm,
        Scenario::GatewaySigkill,
        Scenario::PostgresRestart,
        Scenario::Poison,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::ProsodyRestart => "prosody-restart",
            Scenario::IrcdRestart => "ircd-restart",
            Scenario::GatewaySigterm => "gateway-sigterm",
            Scenario::GatewaySigkill => "gateway-sigkill",
            Scenario::PostgresRestart => "postgres-restart",
            Scenario::Poison => "poison",
        }
    }

    fn parse(s: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scenario {s:?}; choose among {}",
                    Scenario::ALL.map(Scenario::name).join(", ")
                )
            })
    }

    /// Whether the gateway is restarted, so that the XMPP user has to join the room again.
    fn restarts_gateway(self) -> bool {
        matches!(self, Scenario::GatewaySigterm | Scenario::GatewaySigkill)
    }
}

/// The gateway's database for the scenarios that do not restart PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Command-line settings.
#[derive(Debug, Clone)]
struct Args {
    scenarios: Vec<Scenario>,
    messages: usize,
    rate: f64,
    at: usize,
    limit: Duration,
    down: Duration,
    backend: Backend,
    keep: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        scenarios: Scenario::ALL.to_vec(),
        messages: 1000,
        rate: 200.0,
        at: 300,
        limit: Duration::from_secs(120),
        down: Duration::from_secs(2),
        backend: Backend::Sqlite,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        let num = |s: String| -> Result<u64, String> {
            s.parse()
                .map_err(|_| format!("{k} takes a whole number, not {s:?}"))
        };
        match k.as_str() {
            "--scenarios" => {
                a.scenarios = v()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(Scenario::parse)
                    .collect::<Result<_, _>>()?
            }
            "--messages" => a.messages = num(v()?)? as usize,
            "--rate" => {
                a.rate = v()?
                    .parse()
                    .ok()
                    .filter(|r: &f64| *r > 0.0)
                    .ok_or("--rate takes messages per second, above 0")?
            }
            "--at" => a.at = num(v()?)? as usize,
            "--time-limit" => a.limit = Duration::from_secs(num(v()?)?),
            "--down" => a.down = Duration::from_secs(num(v()?)?),
            "--backend" => {
                a.backend = match v()?.as_str() {
                    "sqlite" => Backend::Sqlite,
                    "postgres" => Backend::Postgres,
                    other => return Err(format!("--backend is sqlite or postgres, not {other}")),
                }
            }
            "--keep" => a.keep = true,
            other => return Err(format!("unknown argument {other}; see the file's header")),
        }
    }
    if a.scenarios.is_empty() || a.messages == 0 {
        return Err("nothing to run: give at least one scenario and one message".into());
    }
    Ok(a)
}

/// The gateway's database.
enum Db {
    Sqlite(PathBuf),
    /// A database of ours on the machine's server at 127.0.0.1:5432, dropped on drop.
    System(String),
    Cluster(PgCluster),
}

impl Db {
    async fn create(sc: Scenario, a: &Args, dir: &Path) -> Result<Db, String> {
        if sc == Scenario::PostgresRestart {
            return Ok(Db::Cluster(
                PgCluster::start(&dir.join("pg"), free_port()).await?,
            ));
        }
        match a.backend {
            Backend::Sqlite => Ok(Db::Sqlite(dir.join("estuary").join("estuary.db"))),
            Backend::Postgres => {
                let name = format!(
                    "estuary_fault_{}_{}",
                    std::process::id(),
                    sc.name().replace('-', "_")
                );
                run_cmd(
                    "createdb on 127.0.0.1:5432",
                    tokio::process::Command::new("psql").args([
                        "-h",
                        "127.0.0.1",
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                        "-c",
                        &format!("CREATE DATABASE {name}"),
                    ]),
                    &dir.join("psql.log"),
                )
                .await?;
                Ok(Db::System(name))
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Db::Sqlite(p) => format!("sqlite://{}", p.display()),
            Db::System(name) => format!("postgres://postgres@127.0.0.1:5432/{name}"),
            Db::Cluster(c) => c.url(),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "SQLite",
            Db::System(_) => "PostgreSQL",
            Db::Cluster(_) => "PostgreSQL (own cluster)",
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::System(name) = self {
            let _ = std::process::Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// What one scenario runs: the servers, the gateway, the database.
struct World {
    dir: PathBuf,
    prosody: Prosody,
    ircd: Ircd,
    gateway: Proc,
    db: Db,
    hooks_port: u16,
}

impl World {
    async fn start(sc: Scenario, a: &Args, dir: &Path) -> Result<World, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        // The postgres user must reach its cluster's directory below this one.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let prosody = Prosody::start(&dir.join("prosody"), &[ESTUARY_IRC, ESTUARY_HOOKS]).await?;
        let ircd = Ircd::start(&dir.join("ircd")).await?;
        let db = Db::create(sc, a, dir).await?;
        let hooks_port = free_port();
        let (irc_domain, irc_secret) = ESTUARY_IRC;
        let (hooks_domain, hooks_secret) = ESTUARY_HOOKS;
        let bridges = format!(
            r#"
[bridges.irc]
domain = "{irc_domain}"
secret = "{irc_secret}"

[bridges.irc.servers."127.0.0.1"]
port = {irc_port}
tls = false
throttle = {{ lines_per_second = 1000000.0, burst = 1000000 }}

[bridges.webhook]
domain = "{hooks_domain}"
secret = "{hooks_secret}"
listen = "127.0.0.1:{hooks_port}"

[[bridges.webhook.hooks]]
name = "fault"
token = "{HOOK_TOKEN}"
to = ["{user}@localhost"]
rate_limit_per_minute = 0
"#,
            irc_port = ircd.port,
            user = USER.0,
        );
        let gw_dir = dir.join("estuary");
        servers::write_estuary_config(&gw_dir, prosody.component, &db.url(), &bridges)?;
        let gateway = Self::spawn_gateway(&gw_dir)?;
        Ok(World {
            dir: dir.to_path_buf(),
            prosody,
            ircd,
            gateway,
            db,
            hooks_port,
        })
    }

    fn spawn_gateway(gw_dir: &Path) -> Result<Proc, String> {
        servers::spawn_estuary(gw_dir, &servers::estuary_bin_in("debug"), "info")
    }

    fn gateway_log(&self) -> PathBuf {
        self.dir.join("estuary").join("estuary.log")
    }
}

/// The XMPP user: its connection (none while Prosody is down), and whether it is in the room.
struct XmppSide {
    port: u16,
    room: String,
    user: Option<User>,
    joined: bool,
    want_join: bool,
    next_try: Instant,
    /// Between a self-presence and the room's subject: what comes is join history.
    replaying: bool,
    reconnects: usize,
    joins: usize,
    /// Self-presences of type unavailable (status 332 at a gateway stop, or a kick).
    removed: usize,
}

impl XmppSide {
    async fn login(port: u16, register: bool) -> Result<User, String> {
        let (user, pw, res) = USER;
        Ok(
            Conn::login(port, user, pw, res, register, Duration::from_secs(10))
                .await?
                .into_user(),
        )
    }

    /// Sends a join presence asking for the history of the last `seconds` (none: no history).
    async fn send_join(&mut self, seconds: Option<u64>) {
        let history = match seconds {
            Some(s) => format!("<history seconds='{s}'/>"),
            None => "<history maxstanzas='0'/>".into(),
        };
        let presence = format!(
            "<presence to='{}/{NICK}'><x xmlns='http://jabber.org/protocol/muc'>{history}</x></presence>",
            xmpp::escape(&self.room)
        );
        self.joins += 1;
        self.next_try = Instant::now() + RETRY;
        if let Some(u) = &self.user
            && u.send(&presence).await.is_err()
        {
            self.user = None;
        }
    }
}

/// The raw IRC client in the channel: its connection (none while InspIRCd is down).
struct IrcSide {
    port: u16,
    irc: Option<Irc>,
    next_try: Instant,
    reconnects: usize,
}

impl IrcSide {
    async fn connect(port: u16) -> Result<Irc, String> {
        let mut irc = Irc::connect(port, PEER, Duration::from_secs(10)).await?;
        irc.join(CHANNEL, Duration::from_secs(10)).await?;
        Ok(irc)
    }
}

/// What the poison scenario saw arrive at the XMPP user.
#[derive(Debug, Default)]
struct PoisonSeen {
    control: bool,
    nonchars: bool,
    part: bool,
    quit: bool,
    hook: bool,
}

/// One scenario's outcome.
struct Outcome {
    sc: Scenario,
    i2x: Summary,
    x2i: Summary,
    notes: Vec<String>,
}

/// The MUC status codes of a presence, as `110, 332`.
fn status_codes(presence: &str) -> String {
    let mut codes = Vec::new();
    let mut rest = presence;
    while let Some(i) = rest.find("<status code=") {
        if let Some(code) = xmpp::attr(&rest[i..], "code") {
            codes.push(code);
        }
        rest = &rest[i + 1..];
    }
    codes.join(", ")
}

/// The value of attribute `key` on the first `<child …>` element in `stanza`.
fn child_attr(stanza: &str, child: &str, key: &str) -> Option<String> {
    let at = stanza.find(&format!("<{child} "))?;
    xmpp::attr(&stanza[at..], key)
}

/// POSTs `body` (JSON) to the webhook and returns the status code.
async fn post_hook(port: u16, body: &str) -> Result<u16, String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("webhook connect: {e}"))?;
    let req = format!(
        "POST /hooks/fault HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {HOOK_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("webhook write: {e}"))?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .map_err(|_| "the webhook did not answer within 10 s".to_string())?
        .map_err(|e| format!("webhook read: {e}"))?;
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad HTTP answer: {head:.80}"))
}

/// Injects the fault; returns a line saying what was done and how long it took.
async fn inject(sc: Scenario, world: Arc<Mutex<World>>, down: Duration) -> Result<String, String> {
    let t = Instant::now();
    let mut w = world.lock().await;
    let note = match sc {
        Scenario::Baseline => "no fault".to_string(),
        Scenario::ProsodyRestart => {
            w.prosody.restart(Duration::from_secs(10), down).await?;
            "Prosody stopped (SIGTERM), started again".into()
        }
        Scenario::IrcdRestart => {
            w.ircd.restart(Duration::from_secs(10), down).await?;
            "InspIRCd stopped (SIGTERM), started again".into()
        }
        Scenario::GatewaySigterm => {
            let clean =
                tokio::task::block_in_place(|| w.gateway.terminate(Duration::from_secs(30)));
            let stopped = t.elapsed();
            let dir = w.dir.join("estuary");
            w.gateway = World::spawn_gateway(&dir)?;
            format!(
                "gateway {} {stopped:.1?} after SIGTERM, started again",
                if clean {
                    "exited"
                } else {
                    "had not exited (SIGKILL)"
                }
            )
        }
        Scenario::GatewaySigkill => {
            tokio::task::block_in_place(|| w.gateway.kill());
            let dir = w.dir.join("estuary");
            w.gateway = World::spawn_gateway(&dir)?;
            "gateway killed (SIGKILL), started again".into()
        }
        Scenario::PostgresRestart => {
            let Db::Cluster(pg) = &w.db else {
                return Err("postgres-restart runs without its own cluster".into());
            };
            pg.restart(down).await?;
            "PostgreSQL stopped (fast), started again".into()
        }
        Scenario::Poison => {
            let mut pz = Irc::connect(w.ircd.port, POISONER, Duration::from_secs(10)).await?;
            pz.join(CHANNEL, Duration::from_secs(10)).await?;
            let lines = [
                format!("PRIVMSG {CHANNEL} :poison-control a\x01b\x01c\r\n"),
                format!("PRIVMSG {CHANNEL} :poison-nonchars \u{FFFE} \u{FFFF} end\r\n"),
                format!("PART {CHANNEL} :\x0304,01red\x03 \x02bold\x02 \x1funder\x1f part\r\n"),
                format!("JOIN {CHANNEL}\r\n"),
            ];
            for l in &lines {
                pz.send(l).await?;
            }
            pz.expect(Instant::now() + Duration::from_secs(5), |l| {
                l.contains(" JOIN ")
            })
            .await;
            pz.send("QUIT :\x0312blue\x03 \x16rev\x16 \x01quit\x01\r\n")
                .await?;
            let status = post_hook(w.hooks_port, r#"{"text":"poison-hook a\u0001b"}"#).await?;
            format!(
                "poison sent (IRC: \\x01, U+FFFE/U+FFFF, colours in PART/QUIT; webhook: HTTP {status})"
            )
        }
    };
    Ok(format!("{note} in {:.1?}", t.elapsed()))
}

/// Receives from an optional queue; pending forever without one.
async fn recv_opt(
    rx: Option<&mut mpsc::UnboundedReceiver<(Instant, String)>>,
) -> Option<(Instant, String)> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The counters of a run.
struct Counts {
    i2x: Tally,
    x2i: Tally,
    reflected: usize,
    poison: PoisonSeen,
    last_event: Instant,
    /// When the traffic started, and what happened to the clients since, in order.
    start: Instant,
    events: Vec<String>,
}

impl Counts {
    /// Notes `what` with the time since the traffic started.
    fn event(&mut self, what: &str) {
        let t = self.start.elapsed().as_secs_f64();
        // The UTC time of day too, to find the moment in the servers' logs.
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let day_ms = wall.as_millis() % 86_400_000;
        let (h, m, sec, ms) = (
            day_ms / 3_600_000,
            day_ms / 60_000 % 60,
            day_ms / 1000 % 60,
            day_ms % 1000,
        );
        self.events
            .push(format!("{t:.2}s ({h:02}:{m:02}:{sec:02}.{ms:03}) {what}"));
    }

    fn xmpp_item(&mut self, x: &mut XmppSide, at: Instant, item: &str) {
        let room = x.room.to_lowercase();
        let from = xmpp::attr(item, "from").unwrap_or_default().to_lowercase();
        let from_room = from.starts_with(&room);
        match xmpp::name(item) {
            "message" => {
                let kind = xmpp::attr(item, "type").unwrap_or_default();
                if kind == "error" {
                    let id = xmpp::attr(item, "id").unwrap_or_default();
                    if let Some(seq) = id
                        .strip_prefix("x2i-")
                        .and_then(|s| s.parse::<usize>().ok())
                    {
                        self.x2i.error(seq);
                        self.last_event = Instant::now();
                    }
                    return;
                }
                if from_room && item.contains("<subject") {
                    x.replaying = false;
                }
                let Some(body) = xmpp::child_text(item, "body") else {
                    return;
                };
                if let Some(seq) = parse_seq(&body, I2X) {
                    let sid = child_attr(item, "stanza-id", "id");
                    if x.replaying {
                        self.i2x.history(seq, sid.as_deref());
                    } else {
                        self.i2x.live(seq, sid.as_deref(), at);
                    }
                    self.last_event = Instant::now();
                } else if parse_seq(&body, X2I).is_some() {
                    self.reflected += 1;
                } else if body.starts_with("poison-control") {
                    self.poison.control = true;
                } else if body.starts_with("poison-nonchars") {
                    self.poison.nonchars = true;
                } else if body.starts_with("poison-hook") {
                    self.poison.hook = true;
                }
            }
            "presence" if from_room => {
                let unavailable = xmpp::attr(item, "type").as_deref() == Some("unavailable");
                if xmpp::is_self_presence(item, &x.room) {
                    if unavailable {
                        x.joined = false;
                        x.want_join = true;
                        x.removed += 1;
                        let codes = status_codes(item);
                        self.event(&format!("XMPP user removed from the room ({codes})"));
                    } else {
                        if !x.joined {
                            self.event("XMPP user in the room (self-presence)");
                        }
                        x.joined = true;
                        x.want_join = false;
                        x.replaying = true;
                    }
                } else if xmpp::is_error_presence(item, &x.room) {
                    x.joined = false;
                    x.want_join = true;
                    self.event(&format!(
                        "join refused: {}",
                        xmpp::child_text(item, "text")
                            .unwrap_or_else(|| item.chars().take(200).collect())
                    ));
                } else if unavailable && from.ends_with(&format!("/{POISONER}")) {
                    let status = xmpp::child_text(item, "status").unwrap_or_default();
                    if status.contains("part") {
                        self.poison.part = true;
                    } else if status.contains("quit") {
                        self.poison.quit = true;
                    }
                }
            }
            _ => {}
        }
    }

    fn irc_line(&mut self, at: Instant, line: &str) {
        let Some((prefix, rest)) = line.split_once(" PRIVMSG ") else {
            return;
        };
        if !prefix.starts_with(&format!(":{NICK}!")) {
            return;
        }
        let Some((_, text)) = rest.split_once(" :") else {
            return;
        };
        if let Some(seq) = parse_seq(text, X2I) {
            self.x2i.live(seq, None, at);
            self.last_event = Instant::now();
        }
    }
}

/// Runs one scenario end to end.
async fn scenario(sc: Scenario, a: &Args, base: &Path) -> Result<Outcome, String> {
    let dir = base.join(sc.name());
    let world = World::start(sc, a, &dir).await?;
    let db_label = world.db.label();
    let (c2s, irc_port) = (world.prosody.c2s, world.ircd.port);
    let gateway_log = world.gateway_log();
    let world = Arc::new(Mutex::new(world));
    let room = format!("{CHANNEL}%127.0.0.1@{}", ESTUARY_IRC.0);

    // Set-up: the user logs in, the gateway answers, both sides are in the channel.
    let mut user = XmppSide::login(c2s, true).await?;
    user.wait_service(ESTUARY_IRC.0, Duration::from_secs(30))
        .await
        .map_err(|e| format!("{e}; see {}", gateway_log.display()))?;
    let mut peer = IrcSide::connect(irc_port).await?;
    let mut x = XmppSide {
        port: c2s,
        room: room.clone(),
        user: Some(user),
        joined: false,
        want_join: false,
        next_try: Instant::now(),
        replaying: false,
        reconnects: 0,
        joins: 0,
        removed: 0,
    };
    x.send_join(None).await;
    let joined = match x.user.as_mut() {
        Some(u) => {
            u.wait_for(Instant::now() + Duration::from_secs(30), |s| {
                xmpp::is_self_presence(s, &room) || xmpp::is_error_presence(s, &room)
            })
            .await
        }
        None => None,
    };
    match joined {
        Some((_, s)) if xmpp::is_self_presence(&s, &room) => x.joined = true,
        other => return Err(format!("the XMPP user could not join {room}: {other:?}")),
    }
    peer.expect(Instant::now() + Duration::from_secs(20), |l| {
        l.starts_with(&format!(":{NICK}!")) && l.contains(" JOIN ")
    })
    .await
    .ok_or("the IRC side never saw the XMPP user join")?;
    // Let the room's subject and the like pass before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut i = IrcSide {
        port: irc_port,
        irc: Some(peer),
        next_try: Instant::now(),
        reconnects: 0,
    };

    let n = a.messages;
    let mut c = Counts {
        i2x: Tally::new(n),
        x2i: Tally::new(n),
        reflected: 0,
        poison: PoisonSeen::default(),
        last_event: Instant::now(),
        start: Instant::now(),
        events: Vec::new(),
    };
    let (mut sent_x, mut sent_i) = (0usize, 0usize);
    let mut fault: Option<tokio::task::JoinHandle<Result<String, String>>> = None;
    let mut fault_note: Option<Result<String, String>> = None;
    let start = Instant::now();
    let deadline = start + a.limit;
    let mut all_sent_at: Option<Instant> = None;
    let mut last_i2x_live = Instant::now();
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        // Send what is due, each direction while its connection is up.
        let due = n.min((start.elapsed().as_secs_f64() * a.rate) as usize + 1);
        // A client sends to a room it believes it is in (after a SIGKILL it cannot know).
        while sent_x < due && x.joined {
            let Some(u) = &x.user else { break };
            let msg = format!(
                "<message to='{}' type='groupchat' id='x2i-{sent_x}'><body>{X2I} {sent_x}</body></message>",
                xmpp::escape(&room)
            );
            if u.send(&msg).await.is_err() {
                c.event("XMPP write failed");
                x.user = None;
                break;
            }
            sent_x += 1;
        }
        while sent_i < due {
            let Some(irc) = &i.irc else { break };
            if irc
                .send(&format!("PRIVMSG {CHANNEL} :{I2X} {sent_i}\r\n"))
                .await
                .is_err()
            {
                c.event("IRC write failed");
                i.irc = None;
                break;
            }
            sent_i += 1;
        }
        if sent_x == n && sent_i == n && all_sent_at.is_none() {
            all_sent_at = Some(now);
        }
        // The fault, once both directions reached message K.
        if fault.is_none() && fault_note.is_none() && sent_x.min(sent_i) >= a.at.min(n) {
            c.event(&format!("fault starts ({} sent each way)", a.at.min(n)));
            fault = Some(tokio::spawn(inject(sc, world.clone(), a.down)));
        }
        if fault.as_ref().is_some_and(|f| f.is_finished()) {
            let done = fault.take().expect("checked above").await;
            fault_note = Some(done.map_err(|e| format!("the fault task failed: {e}"))?);
            c.event("fault done");
            if sc.restarts_gateway() {
                // A real client learns it from the 332 or its messages' errors.
                x.want_join = true;
                x.next_try = Instant::now();
            }
        }
        // Reconnect and rejoin what went away.
        if x.user.is_none() && now >= x.next_try {
            x.next_try = now + RETRY;
            if let Ok(u) = XmppSide::login(x.port, false).await {
                c.event("XMPP user logged in again");
                x.user = Some(u);
                x.reconnects += 1;
                x.joined = false;
                x.want_join = true;
                x.next_try = Instant::now();
            }
        }
        if x.user.is_some() && x.want_join && Instant::now() >= x.next_try {
            let seconds = last_i2x_live.elapsed().as_secs() + 2;
            c.event(&format!(
                "XMPP user joins (history of the last {seconds} s)"
            ));
            x.send_join(Some(seconds)).await;
        }
        if i.irc.is_none() && now >= i.next_try {
            i.next_try = now + RETRY;
            if let Ok(irc) = IrcSide::connect(i.port).await {
                c.event("IRC client connected and in the channel again");
                i.irc = Some(irc);
                i.reconnects += 1;
            }
        }
        // Over when everything is sent, the fault is done, and the flows are settled or quiet.
        if let Some(at) = all_sent_at
            && fault.is_none()
            && fault_note.is_some()
            && !x.want_join
            && now.saturating_duration_since(at) > Duration::from_secs(2)
        {
            let settled = c.i2x.settled(n) && c.x2i.settled(n);
            if settled || c.last_event.elapsed() > QUIET {
                break;
            }
        }
        // Wait for the next message due, or something to read.
        let wake = tokio::time::Instant::now() + Duration::from_millis(5);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            got = recv_opt(x.user.as_mut().map(|u| &mut u.rx)) => match got {
                Some((at, item)) => {
                    c.xmpp_item(&mut x, at, &item);
                    if let Some(t) = c.i2x.last_live_at() { last_i2x_live = t; }
                }
                None => {
                    c.event("XMPP connection lost");
                    x.user = None;
                    x.joined = false;
                }
            },
            got = recv_opt(i.irc.as_mut().map(|i| &mut i.rx)) => match got {
                Some((at, line)) => c.irc_line(at, &line),
                None => {
                    c.event("IRC connection lost");
                    i.irc = None;
                }
            },
        }
    }
    if let Some(f) = fault.take() {
        f.abort();
    }

    // The archive of the room, for both directions.
    let mut notes = Vec::new();
    match x.user.as_mut() {
        Some(u) => match mam(u, &room, n, &mut c).await {
            Ok(total) => notes.push(format!("archive: {total} messages")),
            Err(e) => notes.push(format!("archive query failed: {e}")),
        },
        None => notes.push("archive not queried: the XMPP user is not connected".into()),
    }
    let mut w = world.lock().await;
    let alive = w.gateway.check_alive();
    let i2x = c.i2x.summary(sent_i);
    let x2i = c.x2i.summary(sent_x);
    notes.push(format!("database: {db_label}"));
    match fault_note {
        Some(Ok(note)) => notes.push(note),
        Some(Err(e)) => notes.push(format!("FAULT INJECTION FAILED: {e}")),
        None => notes.push("the fault was never injected".into()),
    }
    if timed_out {
        notes.push(format!("time limit ({:?}) reached", a.limit));
    }
    if let Err(e) = alive {
        notes.push(format!("GATEWAY DIED: {e}"));
    }
    notes.push(format!(
        "XMPP user: {} reconnects, {} join presences, {} times removed from the room; IRC client: {} reconnects; {} x2i reflections",
        x.reconnects, x.joins, x.removed, i.reconnects, c.reflected
    ));
    for (dir, s) in [("i2x", &i2x), ("x2i", &x2i)] {
        if s.dup_archive > 0 || s.errors_delivered > 0 || s.foreign > 0 {
            notes.push(format!(
                "{dir}: {} duplicates in the archive, {} errors for delivered messages, {} foreign numbers",
                s.dup_archive, s.errors_delivered, s.foreign
            ));
        }
    }
    for (dir, t, sent) in [("i2x", &c.i2x, sent_i), ("x2i", &c.x2i, sent_x)] {
        for (what, seqs) in [
            ("missing", t.missing(sent)),
            ("errors told", t.errored()),
            ("archive only", t.archive_only()),
            ("delivered, not in the archive", t.delivered_not_archived()),
            ("duplicated after stanza-id", t.duplicated()),
        ] {
            if !seqs.is_empty() {
                notes.push(format!("{dir} {what}: {}", ranges(&seqs)));
            }
        }
    }
    if sc == Scenario::Poison {
        notes.push(format!("poison arrived: {:?}", c.poison));
    }
    c.event("traffic over");
    notes.push(format!("timeline: {}", c.events.join("; ")));
    tokio::task::block_in_place(|| w.gateway.stop(Duration::from_secs(10)));
    Ok(Outcome {
        sc,
        i2x,
        x2i,
        notes,
    })
}

/// Pages through the room's archive (XEP-0313) and counts each numbered message in it;
/// returns how many messages the archive gave.
async fn mam(user: &mut User, room: &str, n: usize, c: &mut Counts) -> Result<usize, String> {
    let mut after: Option<String> = None;
    let mut total = 0;
    // Two directions of n messages, 250 a page, and some slack.
    for page in 0..(2 * n / 250 + 20) {
        let id = format!("mam{page}");
        let rsm_after = after
            .as_ref()
            .map(|a| format!("<after>{}</after>", xmpp::escape(a)))
            .unwrap_or_default();
        user.send(&format!(
            "<iq type='set' id='{id}' to='{}'><query xmlns='urn:xmpp:mam:2' queryid='{id}'>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>250</max>{rsm_after}</set></query></iq>",
            xmpp::escape(room)
        ))
        .await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let fin = loop {
            let Some((_, item)) = user.wait_for(deadline, |_| true).await else {
                return Err(format!("no answer to archive page {page} within 20 s"));
            };
            if xmpp::name(&item) == "iq" && xmpp::attr(&item, "id").as_deref() == Some(&id) {
                break item;
            }
            if xmpp::name(&item) == "message"
                && child_attr(&item, "result", "queryid").as_deref() == Some(id.as_str())
            {
                total += 1;
                let body = xmpp::child_text(&item, "body").unwrap_or_default();
                if let Some(seq) = parse_seq(&body, I2X) {
                    c.i2x.archived(seq);
                } else if let Some(seq) = parse_seq(&body, X2I) {
                    c.x2i.archived(seq);
                }
            }
        };
        if xmpp::attr(&fin, "type").as_deref() != Some("result") {
            return Err(format!("the archive query failed: {fin:.300}"));
        }
        if child_attr(&fin, "fin", "complete").as_deref() == Some("true") {
            return Ok(total);
        }
        match xmpp::child_text(&fin, "last") {
            Some(last) if !last.is_empty() => after = Some(last),
            _ => return Ok(total),
        }
    }
    Err(format!(
        "the archive had more than {} pages",
        2 * n / 250 + 20
    ))
}

fn rows(o: &Outcome) -> Vec<Vec<String>> {
    [("IRC → XMPP", &o.i2x), ("XMPP → IRC", &o.x2i)]
        .into_iter()
        .map(|(dir, s)| {
            vec![
                o.sc.name().to_string(),
                dir.to_string(),
                s.sent.to_string(),
                s.live.to_string(),
                s.history.to_string(),
                s.archive.to_string(),
                s.archive_only.to_string(),
                s.missing.to_string(),
                format!("{} / {}", s.dup_raw, s.dup_dedup),
                s.out_of_order.to_string(),
                s.errors.to_string(),
                format!("{:.1}", s.max_gap.as_secs_f64()),
            ]
        })
        .collect()
}

async fn run(a: &Args, base: &Path) -> Vec<Result<Outcome, String>> {
    let mut out = Vec::new();
    for &sc in &a.scenarios {
        eprintln!("## {} …", sc.name());
        let t = Instant::now();
        let r = scenario(sc, a, base).await;
        match &r {
            Ok(o) => {
                eprintln!("{}", table(&HEADER, &rows(o)));
                for note in &o.notes {
                    eprintln!("- {note}");
                }
            }
            Err(e) => eprintln!("{} failed: {e}", sc.name()),
        }
        eprintln!("({} took {:.1?})\n", sc.name(), t.elapsed());
        out.push(r);
    }
    out
}

const HEADER: [&str; 12] = [
    "scenario",
    "direction",
    "sent",
    "live",
    "rejoin history",
    "in archive",
    "archive only",
    "missing",
    "dup raw / after stanza-id",
    "out of order",
    "errors told",
    "longest gap s",
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fault_suite: {e}");
            std::process::exit(2);
        }
    };
    estuary_bench::origin();
    raise_nofile(65536);
    let dir = match tempfile::Builder::new().prefix("estuary-fault-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fault_suite: cannot create a temporary directory: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)) {
        eprintln!("fault_suite: cannot open up {}: {e}", dir.path().display());
    }
    println!(
        "# fault_suite: {} messages each way at {}/s, fault at message {}, {} down, backend {:?}; gateway {}; logs in {}\n",
        a.messages,
        a.rate,
        a.at,
        format_args!("{:?}", a.down),
        a.backend,
        servers::estuary_bin_in("debug").display(),
        dir.path().display()
    );
    let results = run(&a, dir.path()).await;
    let mut all_rows = Vec::new();
    let mut notes = String::new();
    let mut failed = false;
    for r in &results {
        match r {
            Ok(o) => {
                all_rows.extend(rows(o));
                notes.push_str(&format!("\n{}:\n", o.sc.name()));
                for note in &o.notes {
                    notes.push_str(&format!("- {note}\n"));
                }
            }
            Err(e) => {
                failed = true;
                notes.push_str(&format!("\nA scenario failed: {e}\n"));
            }
        }
    }
    println!("{}{notes}", table(&HEADER, &all_rows));
    if a.keep {
        let kept = dir.keep();
        println!("\nkept {}", kept.display());
    }
    if failed {
        std::process::exit(1);
    }
}
