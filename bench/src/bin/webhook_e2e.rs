//! Estuary's webhook bridge end to end: HTTP POSTs to `/hooks/bench` on loopback, delivered by
//! the gateway through Prosody to a logged-in XMPP client. Measures the requests per second the
//! endpoint accepts (202), the messages per second that reach the client, and the latency from
//! writing the POST to the client reading the message. See `docs/performance.md`.
//!
//! ```sh
//! cargo build --release -p estuary -p estuary-bench
//! target/release/webhook_e2e [--requests 20000] [--connections 8] [--paced 2000] [--rate 200]
//!     [--time-limit 120] [--keep]
//! ```

use estuary_bench::ns_at;
use estuary_bench::procs::{CpuSample, free_port, raise_nofile, rss_kib, wait_port};
use estuary_bench::servers::{self, ESTUARY_HOOKS, Prosody};
use estuary_bench::stats::{ms, percentile, table};
use estuary_bench::xmpp::{self, Conn};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "bench-token";

#[derive(Debug, Clone)]
struct Args {
    requests: usize,
    connections: usize,
    paced: usize,
    rate: f64,
    limit: Duration,
    keep: bool,
}

fn args() -> Args {
    let mut a = Args {
        requests: 20_000,
        connections: 8,
        paced: 2_000,
        rate: 200.0,
        limit: Duration::from_secs(120),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--requests" => a.requests = v().parse().expect("--requests N"),
            "--connections" => a.connections = v().parse().expect("--connections N"),
            "--paced" => a.paced = v().parse().expect("--paced N"),
            "--rate" => a.rate = v().parse().expect("--rate N"),
            "--time-limit" => a.limit = Duration::from_secs(v().parse().expect("--time-limit S")),
            "--keep" => a.keep = true,
            other => panic!("unknown argument {other}; see the file's header"),
        }
    }
    a
}

/// One keep-alive HTTP/1.1 connection that POSTs and reads the status of each answer.
struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    async fn connect(port: u16) -> Result<Http, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("HTTP connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Http {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// POSTs `body` as JSON to `path` and returns the status code.
    async fn post(&mut self, path: &str, body: &str) -> Result<u16, String> {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("HTTP write: {e}"))?;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(head_end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad HTTP status line: {head}"))?;
                let lower = head.to_ascii_lowercase();
                if lower.contains("transfer-encoding: chunked") {
                    return Err("chunked answers are not handled by this load client".into());
                }
                let len: usize = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let total = head_end + 4 + len;
                if self.buf.len() >= total {
                    self.buf.drain(..total);
                    return Ok(status);
                }
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("HTTP read: {e}"))?;
            if n == 0 {
                return Err("the HTTP server closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

struct Run {
    accepted: usize,
    rejected: usize,
    first_rejection: Option<u16>,
    accept_time: Duration,
    delivered: usize,
    deliver_time: Duration,
    post_latencies: Vec<Duration>,
    latencies: Vec<Duration>,
    cpu: String,
}

#[allow(clippy::too_many_arguments)]
async fn run_load(
    tag: &str,
    n: usize,
    connections: usize,
    rate: Option<f64>,
    limit: Duration,
    port: u16,
    user: &mut xmpp::User,
    pids: &[(&str, u32)],
) -> Result<Run, String> {
    while user.rx.try_recv().is_ok() {}
    let cpu = CpuSample::take(pids);
    let start = Instant::now();
    let deadline = start + limit;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let next = next.clone();
        let tag = tag.to_string();
        tasks.spawn(async move {
            let mut http = Http::connect(port).await?;
            let mut out: Vec<(u16, Instant, Duration)> = Vec::new();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= n || Instant::now() > deadline {
                    return Ok::<_, String>(out);
                }
                if let Some(r) = rate {
                    let due = start + Duration::from_secs_f64(seq as f64 / r);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let body = format!("{{\"text\":\"{tag} {seq} {}\"}}", ns_at(sent));
                let status = http.post("/hooks/bench", &body).await?;
                let at = Instant::now();
                out.push((status, at, at - sent));
            }
        });
    }
    // Read deliveries while the POSTs run, until every accepted one arrived or time is up.
    let mut seen = vec![false; n];
    let mut latencies = Vec::with_capacity(n);
    let mut last_delivery = start;
    let mut posts: Option<Vec<(u16, Instant, Duration)>> = None;
    loop {
        let accepted_so_far = posts
            .as_ref()
            .map(|p| p.iter().filter(|(s, _, _)| *s == 202).count());
        if accepted_so_far.is_some_and(|a| latencies.len() >= a) || Instant::now() > deadline {
            break;
        }
        tokio::select! {
            item = user.rx.recv() => {
                let Some((at, st)) = item else { return Err("the XMPP client's stream closed".into()) };
                if xmpp::name(&st) != "message" { continue; }
                let Some(body) = xmpp::child_text(&st, "body") else { continue };
                let mut w = body.split(' ');
                if w.next() != Some(tag) { continue; }
                let (Some(seq), Some(ns)) = (w.next().and_then(|v| v.parse::<usize>().ok()), w.next().and_then(|v| v.parse::<u64>().ok())) else { continue };
                if seq < n && !seen[seq] {
                    seen[seq] = true;
                    latencies.push(Duration::from_nanos(ns_at(at).saturating_sub(ns)));
                    last_delivery = at;
                }
            }
            done = tasks.join_next(), if posts.is_none() => {
                match done {
                    Some(r) => {
                        let part = r.map_err(|e| format!("a POST task failed: {e}"))??;
                        // Collect the other tasks' results as they finish.
                        let mut all = part;
                        while let Some(r) = tasks.join_next().await {
                            all.extend(r.map_err(|e| format!("a POST task failed: {e}"))??);
                        }
                        posts = Some(all);
                    }
                    None => posts = Some(Vec::new()),
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
    let posts = match posts {
        Some(p) => p,
        None => {
            let mut all = Vec::new();
            while let Some(r) = tasks.join_next().await {
                all.extend(r.map_err(|e| format!("a POST task failed: {e}"))??);
            }
            all
        }
    };
    let accepted = posts.iter().filter(|(s, _, _)| *s == 202).count();
    let first_rejection = posts.iter().map(|(s, _, _)| *s).find(|s| *s != 202);
    let last_accept = posts
        .iter()
        .filter(|(s, _, _)| *s == 202)
        .map(|(_, at, _)| *at)
        .max()
        .unwrap_or(start);
    let mut post_latencies: Vec<Duration> = posts.iter().map(|(_, _, d)| *d).collect();
    post_latencies.sort();
    latencies.sort();
    Ok(Run {
        accepted,
        rejected: posts.len() - accepted,
        first_rejection,
        accept_time: last_accept - start,
        delivered: latencies.len(),
        deliver_time: last_delivery - start,
        post_latencies,
        latencies,
        cpu: cpu.usage_since(),
    })
}

fn row(what: &str, r: &Run) -> Vec<String> {
    vec![
        what.into(),
        format!(
            "{:.0} ({}{})",
            r.accepted as f64 / r.accept_time.as_secs_f64().max(1e-9),
            r.accepted,
            if r.rejected > 0 {
                format!(", {} rejected: first {:?}", r.rejected, r.first_rejection)
            } else {
                String::new()
            }
        ),
        format!(
            "{:.0} ({})",
            r.delivered as f64 / r.deliver_time.as_secs_f64().max(1e-9),
            r.delivered
        ),
        format!(
            "{} / {}",
            ms(percentile(&r.post_latencies, 50.0)),
            ms(percentile(&r.post_latencies, 99.0))
        ),
        format!(
            "{} / {}",
            ms(percentile(&r.latencies, 50.0)),
            ms(percentile(&r.latencies, 99.0))
        ),
    ]
}

async fn run(a: Args, dir: &Path) -> Result<(), String> {
    raise_nofile(65536);
    let prosody = Prosody::start(&dir.join("prosody"), &[ESTUARY_HOOKS]).await?;
    let http_port = free_port();
    let (domain, secret) = ESTUARY_HOOKS;
    let bridges = format!(
        r#"
[bridges.webhook]
domain = "{domain}"
secret = "{secret}"
listen = "127.0.0.1:{http_port}"

[[bridges.webhook.hooks]]
name = "bench"
token = "{TOKEN}"
to = ["hookuser@localhost"]
rate_limit_per_minute = 0
"#
    );
    let mut gateway = servers::start_estuary(&dir.join("estuary"), prosody.component, &bridges)?;
    let mut user = Conn::login(
        prosody.c2s,
        "hookuser",
        "benchpw",
        "bench",
        true,
        Duration::from_secs(20),
    )
    .await?
    .into_user();
    user.wait_service(domain, Duration::from_secs(20))
        .await
        .map_err(|e| format!("{e} ({:?})", gateway.check_alive()))?;
    if !wait_port(http_port, Duration::from_secs(10)).await {
        return Err("the webhook listener did not come up".into());
    }
    let pids = [
        ("estuary", gateway.pid()),
        ("prosody", prosody.proc.pid()),
        ("load client", 0),
    ];
    println!(
        "# webhook_e2e: {} requests over {} connections, then {} at {}/s; logs in {}",
        a.requests,
        a.connections,
        a.paced,
        a.rate,
        dir.display()
    );
    run_load(
        "warm",
        200,
        a.connections,
        None,
        a.limit,
        http_port,
        &mut user,
        &pids,
    )
    .await?;
    let sat = run_load(
        "sat",
        a.requests,
        a.connections,
        None,
        a.limit,
        http_port,
        &mut user,
        &pids,
    )
    .await?;
    println!("saturated: CPU {}", sat.cpu);
    let paced = run_load(
        "paced",
        a.paced,
        a.connections,
        Some(a.rate),
        a.limit,
        http_port,
        &mut user,
        &pids,
    )
    .await?;
    println!("paced: CPU {}", paced.cpu);
    let rss = rss_kib(gateway.pid()).unwrap_or(0);
    gateway.check_alive()?;
    let mut report = String::from("\n## Webhook: POST /hooks/bench → XMPP client\n\n");
    report.push_str(&table(
        &[
            "load",
            "accepted req/s (202s)",
            "delivered msg/s (count)",
            "POST→202 p50/p99 ms",
            "POST→XMPP client p50/p99 ms",
        ],
        &[
            row(
                &format!(
                    "{} requests, {} connections, no pacing",
                    a.requests, a.connections
                ),
                &sat,
            ),
            row(&format!("{} requests at {}/s", a.paced, a.rate), &paced),
        ],
    ));
    report.push_str(&format!(
        "\nCPU (share of one core): saturated: {}; paced: {}\nEstuary RSS at the end: {rss} KiB\n",
        sat.cpu, paced.cpu
    ));
    println!("{report}");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    estuary_bench::origin();
    let dir = tempfile::Builder::new()
        .prefix("estuary-bench-webhook-")
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
