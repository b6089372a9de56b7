//! Estuary's IRC bridge and Biboumi side by side, in one run, behind one Prosody and one
//! InspIRCd on loopback: relay throughput and latency both ways through one channel, and
//! resident memory per joined user. See `docs/performance.md`.
//!
//! ```sh
//! cargo build --release -p estuary -p estuary-bench
//! target/release/irc_vs_biboumi [--messages 20000] [--window 100] [--paced 1000] [--rate 200]
//!     [--users 100,1000] [--time-limit 120] [--keep] [--skip-throughput] [--only-estuary]
//!     [--warm 20] [--repeat 1] [--paced-repeat 1]
//! ```
//!
//! `--paced-repeat K` runs the paced (latency) flows K times per direction and reports the
//! round with the median p99, and every round's p99: on a two-core machine one stall of a
//! tenth of a second in one round moves that round's p99 tenfold.
//! `--only-estuary` runs Estuary's side alone (no table, one line per part).
//! `--warm N`: in the scale part, N users join (each to a channel of their own) and the
//! gateway settles before its memory is read as the "before" of the M measured users, so
//! that one-time costs (caches, pools, allocator metadata) are not counted per user. The
//! cold figure, from the idle gateway, is reported beside it.
//! `--repeat R` runs each scale size R times per gateway (alternating the gateways, each
//! time a fresh process) and reports the run with the median memory per user, the range
//! of all R, and the median join time: one run's memory figure moves by up to a kilobyte
//! per user at small sizes.
//! `BENCH_KILL_AT_STEADY_STATE=1` kills each scale phase's gateway with SIGKILL right after
//! its memory is read, so that a heap profiler preloaded into it (`ESTUARY_BIN` pointing at
//! a wrapper) records what the joined users still hold. `BENCH_SMAPS_DIR=DIR` copies each
//! scale phase's gateway's `/proc/PID/smaps` there at the same moment.

use estuary_bench::irc::Irc;
use estuary_bench::procs::{CpuSample, Proc, cpu_secs, raise_nofile, rss_kib, status_kib};
use estuary_bench::servers::{self, BIBOUMI, ESTUARY_IRC, Ircd, Prosody};
use estuary_bench::stats::{median_by_p99, ms, ms_list, percentile, ratio, table};
use estuary_bench::xmpp::{self, Conn, User, Writer};
use estuary_bench::{now_ns, ns_at};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, Semaphore, mpsc};

/// Command-line settings.
#[derive(Debug, Clone)]
struct Args {
    messages: usize,
    window: usize,
    paced: usize,
    rate: f64,
    users: Vec<usize>,
    limit: Duration,
    keep: bool,
    skip_throughput: bool,
    only_estuary: bool,
    warm: usize,
    repeat: usize,
    paced_repeat: usize,
}

fn args() -> Args {
    let mut a = Args {
        messages: 20_000,
        window: 100,
        paced: 1_000,
        rate: 200.0,
        users: vec![100, 1_000],
        limit: Duration::from_secs(120),
        keep: false,
        skip_throughput: false,
        only_estuary: false,
        warm: 20,
        repeat: 1,
        paced_repeat: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--messages" => a.messages = v().parse().expect("--messages N"),
            "--window" => a.window = v().parse().expect("--window N"),
            "--paced" => a.paced = v().parse().expect("--paced N"),
            "--rate" => a.rate = v().parse().expect("--rate MSGS_PER_SEC"),
            "--users" => {
                a.users = v()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().expect("--users N,M,…"))
                    .collect()
            }
            "--time-limit" => a.limit = Duration::from_secs(v().parse().expect("--time-limit S")),
            "--keep" => a.keep = true,
            "--skip-throughput" => a.skip_throughput = true,
            "--only-estuary" => a.only_estuary = true,
            "--warm" => a.warm = v().parse().expect("--warm N"),
            "--repeat" => a.repeat = v().parse::<usize>().expect("--repeat N").max(1),
            "--paced-repeat" => {
                a.paced_repeat = v().parse::<usize>().expect("--paced-repeat K").max(1)
            }
            other => panic!("unknown argument {other}; see the file's header"),
        }
    }
    a
}

/// The least time between the last join and reading the gateway's memory: long enough
/// for a gateway that returns memory freed after a burst periodically (Estuary: every
/// 10 s) to have done so once.
const SETTLE: Duration = Duration::from_secs(12);

/// The two gateways measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gw {
    Estuary,
    Biboumi,
}

impl Gw {
    fn label(self) -> &'static str {
        match self {
            Gw::Estuary => "Estuary",
            Gw::Biboumi => "Biboumi",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Gw::Estuary => "e",
            Gw::Biboumi => "b",
        }
    }
    fn domain(self) -> &'static str {
        match self {
            Gw::Estuary => ESTUARY_IRC.0,
            Gw::Biboumi => BIBOUMI.0,
        }
    }
}

/// What a run shares: the servers and the directory everything writes into.
struct World {
    dir: PathBuf,
    prosody: Prosody,
    ircd: Ircd,
}

impl World {
    fn start_gateway(&self, gw: Gw, run: &str) -> Result<Proc, String> {
        let dir = self.dir.join(format!("{}-{run}", gw.short()));
        match gw {
            Gw::Estuary => {
                let (domain, secret) = ESTUARY_IRC;
                let bridges = format!(
                    r#"
[bridges.irc]
domain = "{domain}"
secret = "{secret}"

[bridges.irc.servers."127.0.0.1"]
port = {port}
tls = false
throttle = {{ lines_per_second = 1000000.0, burst = 1000000 }}
"#,
                    port = self.ircd.port
                );
                servers::start_estuary(&dir, self.prosody.component, &bridges)
            }
            Gw::Biboumi => servers::start_biboumi(&dir, self.prosody.component),
        }
    }

    fn pids(&self, gateway: &Proc) -> Vec<(&'static str, u32)> {
        vec![
            ("gateway", gateway.pid()),
            ("prosody", self.prosody.proc.pid()),
            ("inspircd", self.ircd.proc.pid()),
            ("load client", 0),
        ]
    }
}

/// Sets Biboumi's per-user options for the IRC server 127.0.0.1: our InspIRCd's port (plain;
/// no TLS ports, since Biboumi tries TLS first) and no throttling.
async fn configure_biboumi(user: &mut User, irc_port: u16) -> Result<(), String> {
    let server = format!("127.0.0.1@{}", BIBOUMI.0);
    let form = user
        .iq(
            "set",
            &server,
            "<command xmlns='http://jabber.org/protocol/commands' node='configure' action='execute'/>",
            Duration::from_secs(20),
        )
        .await?;
    let command = &form[form
        .find("<command")
        .ok_or_else(|| format!("no ad-hoc form from Biboumi: {form}"))?..];
    let session = xmpp::attr(command, "sessionid")
        .ok_or_else(|| format!("no sessionid in Biboumi's form: {form}"))?;
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!("Biboumi's configure form: {form}");
    }
    let answer = user
        .iq(
            "set",
            &server,
            &format!(
                "<command xmlns='http://jabber.org/protocol/commands' node='configure' sessionid='{}' action='complete'>\
                 <x xmlns='jabber:x:data' type='submit'>\
                 <field var='ports'><value>{irc_port}</value></field>\
                 <field var='tls_ports'/>\
                 <field var='throttle_limit'><value>-1</value></field>\
                 </x></command>",
                xmpp::escape(&session)
            ),
            Duration::from_secs(20),
        )
        .await?;
    if xmpp::attr(&answer, "type").as_deref() != Some("result") {
        return Err(format!("Biboumi refused the configuration: {answer}"));
    }
    Ok(())
}

/// Where a flow's messages are written.
enum Tx {
    Xmpp {
        writer: Writer,
        room: String,
    },
    Irc {
        writer: Arc<Mutex<tokio::net::tcp::OwnedWriteHalf>>,
        channel: String,
    },
}

impl Tx {
    fn format(&self, out: &mut String, tag: &str, seq: usize) {
        let ns = now_ns();
        match self {
            Tx::Xmpp { room, .. } => out.push_str(&format!(
                "<message to='{room}' type='groupchat' id='{tag}-{seq}'><body>{tag} {seq} {ns}</body></message>"
            )),
            Tx::Irc { channel, .. } => {
                out.push_str(&format!("PRIVMSG {channel} :{tag} {seq} {ns}\r\n"))
            }
        }
    }
    async fn write(&self, data: &str) -> Result<(), String> {
        let r = match self {
            Tx::Xmpp { writer, .. } => writer.lock().await.write_all(data.as_bytes()).await,
            Tx::Irc { writer, .. } => writer.lock().await.write_all(data.as_bytes()).await,
        };
        r.map_err(|e| format!("load client write: {e}"))
    }
}

/// Reads `tag seq ns` back from what a receiver got.
fn parse(item: &str, tag: &str) -> Option<(usize, u64)> {
    let text = if item.starts_with('<') {
        if xmpp::name(item) != "message" {
            return None;
        }
        xmpp::child_text(item, "body")?
    } else {
        item.split_once(" PRIVMSG ")?
            .1
            .split_once(" :")?
            .1
            .to_string()
    };
    let mut words = text.split(' ');
    if words.next()? != tag {
        return None;
    }
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

/// What one flow measured.
struct Flow {
    sent: usize,
    received: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: String,
    /// CPU seconds the gateway process used during the flow (from /proc).
    gateway_cpu_secs: f64,
}

impl Flow {
    fn rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The gateway's CPU time per message relayed, in microseconds.
    fn cpu_us_per_message(&self) -> f64 {
        self.gateway_cpu_secs * 1e6 / (self.received.max(1) as f64)
    }
}

/// Sends `n` messages tagged `tag` through `tx` and counts them out of `rx`: at most `window`
/// in flight, and at most `rate` per second if given; stops at `limit`.
#[allow(clippy::too_many_arguments)]
async fn flow(
    tag: &str,
    n: usize,
    window: usize,
    rate: Option<f64>,
    limit: Duration,
    tx: &Tx,
    rx: &mut mpsc::UnboundedReceiver<(Instant, String)>,
    pids: &[(&str, u32)],
) -> Result<Flow, String> {
    while rx.try_recv().is_ok() {}
    let cpu = CpuSample::take(pids);
    let start = Instant::now();
    let deadline = start + limit;
    let (mut sent, mut got) = (0usize, 0usize);
    let mut seen = vec![false; n];
    let mut latencies = Vec::with_capacity(n);
    let mut last = start;
    let mut buf = String::new();
    while got < n && Instant::now() < deadline {
        let paced = match rate {
            None => n,
            Some(r) => (start.elapsed().as_secs_f64() * r) as usize + 1,
        };
        let upto = n.min(got + window).min(paced);
        if sent < upto {
            buf.clear();
            for seq in sent..upto {
                tx.format(&mut buf, tag, seq);
            }
            tx.write(&buf).await?;
            sent = upto;
        }
        let wake = match rate {
            Some(r) if sent < n && sent < got + window => {
                start + Duration::from_secs_f64(sent as f64 / r)
            }
            _ => deadline,
        };
        let first = match tokio::time::timeout_at(wake.min(deadline).into(), rx.recv()).await {
            Ok(Some(item)) => Some(item),
            Ok(None) => return Err("the receiver's connection closed".into()),
            Err(_) => None,
        };
        let mut next = first;
        while let Some((at, item)) = next {
            if let Some((seq, ns)) = parse(&item, tag)
                && seq < n
                && !seen[seq]
            {
                seen[seq] = true;
                got += 1;
                latencies.push(Duration::from_nanos(ns_at(at).saturating_sub(ns)));
                last = at;
            }
            next = rx.try_recv().ok();
        }
    }
    latencies.sort();
    Ok(Flow {
        sent,
        received: got,
        elapsed: last.saturating_duration_since(start),
        latencies,
        cpu: cpu.usage_since(),
        gateway_cpu_secs: cpu.secs_since("gateway").unwrap_or(0.0),
    })
}

/// After an XMPP → IRC flow: waits (at most `limit`) until the sender has its own `n` messages
/// back as room reflections, so that the next flow does not queue behind them. Returns how
/// long after `since` the last one came, or `None` if some never did.
async fn await_reflections(
    rx: &mut mpsc::UnboundedReceiver<(Instant, String)>,
    tag: &str,
    n: usize,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let deadline = Instant::now() + limit;
    let mut seen = vec![false; n];
    let mut count = 0;
    while count < n {
        let (at, item) = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .ok()??;
        if let Some((seq, _)) = parse(&item, tag)
            && seq < n
            && !seen[seq]
        {
            seen[seq] = true;
            count += 1;
            if count == n {
                return Some(at.saturating_duration_since(since));
            }
        }
    }
    Some(Duration::ZERO)
}

/// One gateway's throughput and latency, both directions.
struct Throughput {
    i2x: Flow,
    x2i: Flow,
    /// The paced round with the median p99 (of `--paced-repeat`), and every round's p99.
    i2x_paced: Flow,
    i2x_paced_p99s: Vec<Duration>,
    x2i_paced: Flow,
    x2i_paced_p99s: Vec<Duration>,
    /// From the start of the saturated XMPP → IRC flow until the sender had every reflection.
    x2i_reflected: Option<Duration>,
    rss_after_kib: u64,
}

async fn throughput(world: &World, gw: Gw, a: &Args) -> Result<Throughput, String> {
    let s = gw.short();
    let mut gateway = world.start_gateway(gw, "throughput")?;
    let mut user = Conn::login(
        world.prosody.c2s,
        &format!("tp{s}"),
        "benchpw",
        "bench",
        true,
        Duration::from_secs(20),
    )
    .await?
    .into_user();
    user.wait_service(gw.domain(), Duration::from_secs(20))
        .await
        .map_err(|e| format!("{e} ({:?})", gateway.check_alive()))?;
    if gw == Gw::Biboumi {
        configure_biboumi(&mut user, world.ircd.port).await?;
    }
    let channel = format!("#tp{s}");
    let mut peer = Irc::connect(
        world.ircd.port,
        &format!("peer{s}"),
        Duration::from_secs(20),
    )
    .await?;
    peer.join(&channel, Duration::from_secs(20)).await?;
    let room = format!("{channel}%127.0.0.1@{}", gw.domain());
    let nick = format!("x{s}");
    user.send(&xmpp::join_presence(&format!("{room}/{nick}")))
        .await?;
    user.wait_for(Instant::now() + Duration::from_secs(30), |st| {
        xmpp::is_self_presence(st, &room)
    })
    .await
    .ok_or_else(|| format!("{}: the XMPP user could not join {room}", gw.label()))?;
    peer.expect(Instant::now() + Duration::from_secs(20), |l| {
        l.starts_with(&format!(":{nick}!")) && l.contains(" JOIN ")
    })
    .await
    .ok_or_else(|| format!("{}: the IRC side never saw {nick} join", gw.label()))?;

    let to_xmpp = Tx::Irc {
        writer: peer.writer.clone(),
        channel: channel.clone(),
    };
    let to_irc = Tx::Xmpp {
        writer: user.writer.clone(),
        room: xmpp::escape(&room),
    };
    let pids = world.pids(&gateway);
    // Warm-up (not counted): lazily created state, caches, the first database writes.
    flow(
        "warm",
        200,
        a.window,
        None,
        a.limit,
        &to_xmpp,
        &mut user.rx,
        &pids,
    )
    .await?;
    let t = Instant::now();
    flow(
        "warm",
        200,
        a.window,
        None,
        a.limit,
        &to_irc,
        &mut peer.rx,
        &pids,
    )
    .await?;
    await_reflections(&mut user.rx, "warm", 200, t, a.limit).await;
    let i2x = flow(
        &format!("i2x{s}"),
        a.messages,
        a.window,
        None,
        a.limit,
        &to_xmpp,
        &mut user.rx,
        &pids,
    )
    .await?;
    let t = Instant::now();
    let x2i = flow(
        &format!("x2i{s}"),
        a.messages,
        a.window,
        None,
        a.limit,
        &to_irc,
        &mut peer.rx,
        &pids,
    )
    .await?;
    let x2i_reflected =
        await_reflections(&mut user.rx, &format!("x2i{s}"), x2i.sent, t, a.limit).await;
    let (mut i2x_rounds, mut x2i_rounds) = (Vec::new(), Vec::new());
    for round in 0..a.paced_repeat {
        i2x_rounds.push(
            flow(
                &format!("pi2x{s}r{round}"),
                a.paced,
                a.window,
                Some(a.rate),
                a.limit,
                &to_xmpp,
                &mut user.rx,
                &pids,
            )
            .await?,
        );
        let x2i_round = flow(
            &format!("px2i{s}r{round}"),
            a.paced,
            a.window,
            Some(a.rate),
            a.limit,
            &to_irc,
            &mut peer.rx,
            &pids,
        )
        .await?;
        await_reflections(
            &mut user.rx,
            &format!("px2i{s}r{round}"),
            x2i_round.sent,
            Instant::now(),
            a.limit,
        )
        .await;
        x2i_rounds.push(x2i_round);
    }
    // `--paced-repeat` is at least 1: there is a round.
    let (i2x_paced, i2x_paced_p99s) =
        median_by_p99(i2x_rounds, |f| &f.latencies).expect("a paced round");
    let (x2i_paced, x2i_paced_p99s) =
        median_by_p99(x2i_rounds, |f| &f.latencies).expect("a paced round");
    let rss_after_kib = rss_kib(gateway.pid()).unwrap_or(0);
    gateway.check_alive()?;
    gateway.stop(Duration::from_secs(3));
    Ok(Throughput {
        i2x,
        x2i,
        i2x_paced,
        i2x_paced_p99s,
        x2i_paced,
        x2i_paced_p99s,
        x2i_reflected,
        rss_after_kib,
    })
}

/// One gateway's scale run.
struct Scale {
    users: usize,
    joined: usize,
    failed: usize,
    first_error: Option<String>,
    /// RSS of the idle gateway, before the warm-up users joined.
    rss_idle_kib: u64,
    /// Warm-up users joined.
    warm: usize,
    rss_before_kib: u64,
    rss_after_kib: u64,
    hwm_kib: u64,
    join_time: Duration,
    cpu: String,
}

impl Scale {
    /// Memory per measured user: from the warmed-up gateway to the steady state after.
    fn per_user_kib(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.joined.max(1) as f64
    }

    /// One line for the log: who joined, how fast, and the memory readings.
    fn summary(&self, label: &str) -> String {
        format!(
            "{label} with {} users (+{} warm-up): {} joined, {} failed in {:.2?}; RSS {} (idle) → {} → {} KiB (peak {}), {:.1} KiB/user ({:.1} cold); CPU {}",
            self.users,
            self.warm,
            self.joined,
            self.failed,
            self.join_time,
            self.rss_idle_kib,
            self.rss_before_kib,
            self.rss_after_kib,
            self.hwm_kib,
            self.per_user_kib(),
            self.cold_per_user_kib(),
            self.cpu
        )
    }

    /// Memory per user counted from the idle gateway (warm-up users included).
    fn cold_per_user_kib(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_idle_kib as f64)
            / (self.joined + self.warm).max(1) as f64
    }
}

/// One gateway's runs of one scale size, summed up.
struct Repeated {
    /// The run with the median memory per user (the higher middle one for an even count).
    median: Scale,
    kib_min: f64,
    kib_max: f64,
    /// The median of the runs' join times.
    join_median: Duration,
}

impl Repeated {
    fn of(mut runs: Vec<Scale>) -> Self {
        assert!(!runs.is_empty(), "at least one run");
        let mut joins: Vec<Duration> = runs.iter().map(|r| r.join_time).collect();
        joins.sort();
        runs.sort_by(|x, y| x.per_user_kib().total_cmp(&y.per_user_kib()));
        let kib_min = runs[0].per_user_kib();
        let kib_max = runs[runs.len() - 1].per_user_kib();
        let mid = runs.len() / 2;
        Self {
            median: runs.swap_remove(mid),
            kib_min,
            kib_max,
            join_median: joins[mid],
        }
    }
}

/// A user given back with what was done with it.
type UserResult<T> = (User, Result<T, String>);

/// Runs `f` on every user concurrently (at most `parallel` at a time) and gives the users
/// back in order with the results.
async fn each_user<T, F, Fut>(
    users: Vec<User>,
    parallel: usize,
    f: F,
) -> Vec<(User, Result<T, String>)>
where
    T: Send + 'static,
    F: Fn(usize, User) -> Fut,
    Fut: std::future::Future<Output = (User, Result<T, String>)> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, user) in users.into_iter().enumerate() {
        let gate = gate.clone();
        let fut = f(i, user);
        tasks.spawn(async move {
            let _permit = gate
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            (i, fut.await)
        });
    }
    let mut out: Vec<(usize, UserResult<T>)> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        out.push(done.expect("a per-user task panicked"));
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

async fn scale(
    world: &World,
    gw: Gw,
    users: &mut Vec<User>,
    m: usize,
    a: &Args,
) -> Result<Scale, String> {
    let s = gw.short();
    let mut gateway = world.start_gateway(gw, &format!("scale{m}"))?;
    users[0]
        .wait_service(gw.domain(), Duration::from_secs(20))
        .await
        .map_err(|e| format!("{e} ({:?})", gateway.check_alive()))?;
    let warm_n = a.warm.min(users.len().saturating_sub(m));
    let mut batch: Vec<User> = users.drain(..m + warm_n).collect();
    if gw == Gw::Biboumi {
        let port = world.ircd.port;
        let done = each_user(batch, 50, |_, mut u| async move {
            let r = configure_biboumi(&mut u, port).await;
            (u, r)
        })
        .await;
        batch = Vec::with_capacity(m + warm_n);
        for (u, r) in done {
            r?;
            batch.push(u);
        }
    }
    for u in batch.iter_mut() {
        while u.rx.try_recv().is_ok() {}
    }
    let mut warm: Vec<User> = batch.split_off(m);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = gateway.pid();
    let rss_idle_kib = rss_kib(pid).unwrap_or(0);
    let domain = gw.domain();
    if !warm.is_empty() {
        // Warm-up: a few users join and the gateway settles, so that what is measured next
        // is what one more user costs.
        let deadline = Instant::now() + a.limit.max(Duration::from_secs(60));
        let done = join_each(warm, &format!("{s}{m}w"), domain, deadline).await;
        warm = Vec::with_capacity(done.len());
        for (u, r) in done {
            r.map_err(|e| format!("a warm-up user could not join: {e}"))?;
            warm.push(u);
        }
        settle(&[pid, world.prosody.proc.pid()]).await;
    }
    let rss_before_kib = rss_kib(pid).unwrap_or(0);
    if let Some(dir) = std::env::var_os("BENCH_SMAPS_DIR") {
        let to = Path::new(&dir).join(format!("{}-{m}-before.smaps", gw.short()));
        let _ = std::fs::copy(format!("/proc/{pid}/smaps"), to);
    }
    let cpu = CpuSample::take(&world.pids(&gateway));
    let t0 = Instant::now();
    let deadline = t0 + a.limit.max(Duration::from_secs(60));
    let done = join_each(batch, &format!("{s}{m}c"), domain, deadline).await;
    let mut joined = 0;
    let mut failed = 0;
    let mut last = t0;
    let mut first_error = None;
    for (u, r) in done {
        match r {
            Ok(at) => {
                joined += 1;
                last = last.max(at);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        // Back at the end, in order; the caller rotates them to the front again.
        users.push(u);
    }
    users.extend(warm);
    let cpu = cpu.usage_since();
    settle(&[pid, world.prosody.proc.pid()]).await;
    let rss_after_kib = rss_kib(pid).unwrap_or(0);
    let hwm_kib = status_kib(pid, "VmHWM").unwrap_or(0);
    gateway.check_alive()?;
    if let Some(dir) = std::env::var_os("BENCH_SMAPS_DIR") {
        // Where the resident memory is, mapping by mapping, for a look by hand.
        let to = Path::new(&dir).join(format!("{}-{m}.smaps", gw.short()));
        let _ = std::fs::copy(format!("/proc/{pid}/smaps"), to);
    }
    if std::env::var_os("BENCH_KILL_AT_STEADY_STATE").is_some() {
        // For heap profilers (heaptrack's preload library): what is still allocated at
        // the kill is what the joined users hold.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    gateway.stop(Duration::from_secs(3));
    Ok(Scale {
        users: m,
        joined,
        failed,
        first_error,
        rss_idle_kib,
        warm: warm_n,
        rss_before_kib,
        rss_after_kib,
        hwm_kib,
        join_time: last - t0,
        cpu,
    })
}

/// Each user joins `#<prefix><i>%127.0.0.1@<domain>` (a channel of their own, so one IRC
/// connection each) at once; gives each user back with the time its self-presence came.
async fn join_each(
    users: Vec<User>,
    prefix: &str,
    domain: &'static str,
    deadline: Instant,
) -> Vec<(User, Result<Instant, String>)> {
    let n = users.len().max(1);
    each_user(users, n, |i, mut u| {
        let room = format!("#{prefix}{i}%127.0.0.1@{domain}");
        let nick = format!("{prefix}n{i}");
        async move {
            if let Err(e) = u
                .send(&xmpp::join_presence(&format!("{room}/{nick}")))
                .await
            {
                return (u, Err(e));
            }
            let r = match u
                .wait_for(deadline, |st| {
                    xmpp::is_self_presence(st, &room) || xmpp::is_error_presence(st, &room)
                })
                .await
            {
                Some((at, st)) if xmpp::is_self_presence(&st, &room) => Ok(at),
                Some((_, st)) => Err(st),
                None => Err("timed out".into()),
            };
            (u, r)
        }
    })
    .await
}

/// Steady state, the same for both gateways: at least [`SETTLE`], then until the gateway
/// and Prosody each used under 1 % of a core for a whole second (at most 60 s more), so that
/// the burst is over end to end: a gateway waiting for Prosody to work through what it was
/// sent is idle but still holds what Prosody has not confirmed.
async fn settle(pids: &[u32]) {
    tokio::time::sleep(SETTLE).await;
    let settle_until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < settle_until {
        let before: Vec<f64> = pids.iter().map(|&p| cpu_secs(p)).collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = pids
            .iter()
            .zip(&before)
            .any(|(&p, b)| cpu_secs(p) - b >= 0.01);
        if !busy {
            break;
        }
    }
}

async fn login_users(port: u16, n: usize) -> Result<(Vec<User>, Duration), String> {
    let t0 = Instant::now();
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let gate = gate.clone();
        tasks.spawn(async move {
            let _p = gate.acquire_owned().await.expect("never closed");
            let r = Conn::login(
                port,
                &format!("u{i}"),
                "benchpw",
                "load",
                true,
                Duration::from_secs(60),
            )
            .await;
            (i, r)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (i, c) = r.expect("login task panicked");
        out.push((i, c?.into_user()));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok((out.into_iter().map(|(_, u)| u).collect(), t0.elapsed()))
}

fn flow_row(dir: &str, b: &Flow, e: &Flow) -> Vec<String> {
    vec![
        dir.into(),
        format!("{:.0} ({}/{})", b.rate(), b.received, b.sent),
        format!("{:.0} ({}/{})", e.rate(), e.received, e.sent),
        ratio(e.rate(), b.rate()),
        format!(
            "{} / {}",
            ms(percentile(&b.latencies, 50.0)),
            ms(percentile(&b.latencies, 99.0))
        ),
        format!(
            "{} / {}",
            ms(percentile(&e.latencies, 50.0)),
            ms(percentile(&e.latencies, 99.0))
        ),
    ]
}

fn lat_row(dir: &str, b: &Flow, e: &Flow) -> Vec<String> {
    let (b50, b99) = (
        percentile(&b.latencies, 50.0),
        percentile(&b.latencies, 99.0),
    );
    let (e50, e99) = (
        percentile(&e.latencies, 50.0),
        percentile(&e.latencies, 99.0),
    );
    vec![
        dir.into(),
        format!("{} / {} ({}/{})", ms(b50), ms(b99), b.received, b.sent),
        format!("{} / {} ({}/{})", ms(e50), ms(e99), e.received, e.sent),
        ratio(e50.as_secs_f64(), b50.as_secs_f64()),
        ratio(e99.as_secs_f64(), b99.as_secs_f64()),
    ]
}

async fn run(a: Args, dir: &Path) -> Result<(), String> {
    let nofile = raise_nofile(65536);
    let prosody = Prosody::start(&dir.join("prosody"), &[ESTUARY_IRC, BIBOUMI]).await?;
    let ircd = Ircd::start(&dir.join("ircd")).await?;
    let world = World {
        dir: dir.to_path_buf(),
        prosody,
        ircd,
    };
    println!(
        "# irc_vs_biboumi: {} messages (window {}), {} paced at {}/s, users {:?}; open files {nofile}; logs in {}",
        a.messages,
        a.window,
        a.paced,
        a.rate,
        a.users,
        dir.display()
    );
    let mut report = String::new();
    if a.only_estuary && !a.skip_throughput {
        let e = throughput(&world, Gw::Estuary, &a).await?;
        println!("x2i reflections all back after {:?}", e.x2i_reflected);
        for (what, f) in [
            ("i2x", &e.i2x),
            ("x2i", &e.x2i),
            ("paced i2x", &e.i2x_paced),
            ("paced x2i", &e.x2i_paced),
        ] {
            println!(
                "Estuary {what}: {:.0}/s ({}/{}), p50 {} p99 {} ms [{}], gateway CPU {:.0} µs/msg",
                f.rate(),
                f.received,
                f.sent,
                ms(percentile(&f.latencies, 50.0)),
                ms(percentile(&f.latencies, 99.0)),
                f.cpu,
                f.cpu_us_per_message()
            );
        }
        if a.paced_repeat > 1 {
            println!(
                "Estuary paced rounds' p99 (median shown above): i2x {}, x2i {}",
                ms_list(&e.i2x_paced_p99s),
                ms_list(&e.x2i_paced_p99s)
            );
        }
    }
    if !a.skip_throughput && !a.only_estuary {
        let b = throughput(&world, Gw::Biboumi, &a).await?;
        println!(
            "Biboumi throughput done: i2x {:.0}/s [{}], x2i {:.0}/s [{}]",
            b.i2x.rate(),
            b.i2x.cpu,
            b.x2i.rate(),
            b.x2i.cpu
        );
        let e = throughput(&world, Gw::Estuary, &a).await?;
        println!(
            "Estuary throughput done: i2x {:.0}/s [{}], x2i {:.0}/s [{}]",
            e.i2x.rate(),
            e.i2x.cpu,
            e.x2i.rate(),
            e.x2i.cpu
        );
        report.push_str(&format!(
            "\n## Throughput: {} messages through one channel, at most {} in flight\n\n",
            a.messages, a.window
        ));
        report.push_str(&table(
            &[
                "direction",
                "Biboumi msg/s (recv/sent)",
                "Estuary msg/s (recv/sent)",
                "Estuary/Biboumi",
                "Biboumi p50/p99 ms",
                "Estuary p50/p99 ms",
            ],
            &[
                flow_row("IRC → XMPP", &b.i2x, &e.i2x),
                flow_row("XMPP → IRC", &b.x2i, &e.x2i),
            ],
        ));
        report.push_str(&format!(
            "\nCPU (share of one core) during the saturated runs:\n- Biboumi IRC→XMPP: {}\n- Biboumi XMPP→IRC: {}\n- Estuary IRC→XMPP: {}\n- Estuary XMPP→IRC: {}\n",
            b.i2x.cpu, b.x2i.cpu, e.i2x.cpu, e.x2i.cpu
        ));
        report.push_str(
            "\n## Gateway CPU time per relayed message (user + system, from /proc, saturated runs)\n\n",
        );
        let cpu_row = |dir: &str, b: &Flow, e: &Flow| {
            vec![
                dir.to_string(),
                format!("{:.0} µs", b.cpu_us_per_message()),
                format!("{:.0} µs", e.cpu_us_per_message()),
                ratio(e.cpu_us_per_message(), b.cpu_us_per_message()),
            ]
        };
        report.push_str(&table(
            &["direction", "Biboumi", "Estuary", "Estuary/Biboumi"],
            &[
                cpu_row("IRC → XMPP", &b.i2x, &e.i2x),
                cpu_row("XMPP → IRC", &b.x2i, &e.x2i),
            ],
        ));
        report.push_str(&format!(
            "\n## Latency at a steady {}/s ({} messages per direction), p50 / p99 in ms\n\n",
            a.rate, a.paced
        ));
        report.push_str(&table(
            &[
                "direction",
                "Biboumi",
                "Estuary",
                "p50 Estuary/Biboumi",
                "p99 Estuary/Biboumi",
            ],
            &[
                lat_row("IRC → XMPP", &b.i2x_paced, &e.i2x_paced),
                lat_row("XMPP → IRC", &b.x2i_paced, &e.x2i_paced),
            ],
        ));
        if a.paced_repeat > 1 {
            report.push_str(&format!(
                "\nThe round with the median p99 of {} per direction; every round's p99: IRC → XMPP Biboumi {}, Estuary {}; XMPP → IRC Biboumi {}, Estuary {}\n",
                a.paced_repeat,
                ms_list(&b.i2x_paced_p99s),
                ms_list(&e.i2x_paced_p99s),
                ms_list(&b.x2i_paced_p99s),
                ms_list(&e.x2i_paced_p99s),
            ));
        }
        report.push_str(&format!(
            "\nXMPP → IRC, until the sender had all {} reflections back: Biboumi {:?}, Estuary {:?} (IRC side done after {:.2?} and {:.2?})\n",
            a.messages, b.x2i_reflected, e.x2i_reflected, b.x2i.elapsed, e.x2i.elapsed
        ));
        report.push_str(&format!(
            "\nGateway RSS after the throughput runs: Biboumi {} KiB, Estuary {} KiB\n",
            b.rss_after_kib, e.rss_after_kib
        ));
        println!("{report}");
    }
    if let Some(&max) = a.users.iter().max() {
        let (mut users, took) = login_users(world.prosody.c2s, max + a.warm).await?;
        println!("{max} XMPP users registered and logged in in {took:.1?}");
        let mut rows = Vec::new();
        let mut notes = String::new();
        for &m in &a.users {
            // Estuary alone: its line is the result, there is no table.
            let gateways: &[Gw] = if a.only_estuary {
                &[Gw::Estuary]
            } else {
                &[Gw::Biboumi, Gw::Estuary]
            };
            let mut runs: Vec<Vec<Scale>> = gateways.iter().map(|_| Vec::new()).collect();
            for round in 0..a.repeat {
                for (k, &gw) in gateways.iter().enumerate() {
                    let r = scale(&world, gw, &mut users, m, &a).await?;
                    // scale() moved the users it used to the back: rotate them back.
                    users.rotate_right(m + r.warm);
                    println!("{}", r.summary(gw.label()));
                    if let Some(e) = &r.first_error {
                        notes.push_str(&format!(
                            "- {} with {m} users (run {}), first failure: {e}\n",
                            gw.label(),
                            round + 1
                        ));
                    }
                    if round == 0 {
                        notes.push_str(&format!(
                            "- {} with {m} users, CPU while joining: {}\n",
                            gw.label(),
                            r.cpu
                        ));
                    }
                    runs[k].push(r);
                }
            }
            let results: Vec<Repeated> = runs.into_iter().map(Repeated::of).collect();
            if a.repeat > 1 {
                for (gw, r) in gateways.iter().zip(&results) {
                    println!(
                        "{} with {m} users, {} runs: median {:.1} KiB/user (range {:.1}–{:.1}), median join {:.2?}",
                        gw.label(),
                        a.repeat,
                        r.median.per_user_kib(),
                        r.kib_min,
                        r.kib_max,
                        r.join_median
                    );
                }
            }
            if a.only_estuary {
                continue;
            }
            let (br, er) = (&results[0], &results[1]);
            let (b, e) = (&br.median, &er.median);
            let spread = |r: &Repeated| {
                if a.repeat > 1 {
                    format!(", {:.1}–{:.1}", r.kib_min, r.kib_max)
                } else {
                    String::new()
                }
            };
            rows.push(vec![
                m.to_string(),
                format!(
                    "{}/{} in {:.2} s",
                    b.joined,
                    b.users,
                    br.join_median.as_secs_f64()
                ),
                format!(
                    "{}/{} in {:.2} s",
                    e.joined,
                    e.users,
                    er.join_median.as_secs_f64()
                ),
                ratio(er.join_median.as_secs_f64(), br.join_median.as_secs_f64()),
                format!(
                    "{:.1} ({} → {}{})",
                    b.per_user_kib(),
                    b.rss_before_kib,
                    b.rss_after_kib,
                    spread(br)
                ),
                format!(
                    "{:.1} ({} → {}{})",
                    e.per_user_kib(),
                    e.rss_before_kib,
                    e.rss_after_kib,
                    spread(er)
                ),
                ratio(e.per_user_kib(), b.per_user_kib()),
                format!(
                    "{:.1} / {:.1} ({})",
                    b.cold_per_user_kib(),
                    e.cold_per_user_kib(),
                    ratio(e.cold_per_user_kib(), b.cold_per_user_kib())
                ),
            ]);
        }
        if a.only_estuary {
            return Ok(());
        }
        let mut s = format!(
            "\n## Scale: users joined at once, each to its own channel over its own IRC connection (after {} warm-up users; {})\n\n",
            a.warm,
            if a.repeat > 1 {
                format!(
                    "{} runs per size and gateway: the run with the median KiB/user, the range of all runs, the median join time",
                    a.repeat
                )
            } else {
                "one run per size and gateway".to_owned()
            }
        );
        s.push_str(&table(
            &[
                "users",
                "Biboumi joined",
                "Estuary joined",
                "time Estuary/Biboumi",
                "Biboumi KiB/user (RSS before → after)",
                "Estuary KiB/user (RSS before → after)",
                "memory Estuary/Biboumi",
                "cold KiB/user Biboumi / Estuary (ratio)",
            ],
            &rows,
        ));
        s.push('\n');
        s.push_str(&notes);
        println!("{s}");
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    estuary_bench::origin();
    let dir = tempfile::Builder::new()
        .prefix("estuary-bench-irc-")
        .tempdir()
        .expect("a temp dir");
    let result = run(a.clone(), dir.path()).await;
    if a.keep {
        let kept = dir.keep();
        eprintln!("kept {}", kept.display());
    }
    if let Err(e) = result {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}
