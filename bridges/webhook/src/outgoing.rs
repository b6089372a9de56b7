//! Outgoing delivery: a message a user sends to a hook, POSTed as signed JSON to its `url`.
//!
//! The body is [`OutgoingPayload`] as JSON; the header `X-Estuary-Signature` holds
//! `sha256=<hex HMAC-SHA256 of the body keyed by the hook's token>`, so the receiver can
//! check it the way GitHub receivers check `X-Hub-Signature-256`.
//!
//! Results: a 2xx answer is success. 408, 429, 5xx, timeouts and connection failures are
//! retried (`outgoing_attempts` in all, waiting `outgoing_backoff_ms`, then twice as long
//! each time) and then fail as [`OutgoingError::Unavailable`]. Any other answer (3xx, 4xx)
//! fails at once as [`OutgoingError::Rejected`]. Redirects are not followed.
//!
//! Where: the URL's host is resolved once per delivery through the core's outbound policy
//! ([`OutboundPolicy`]), and the request goes to the addresses it allows and nowhere else
//! (no second lookup, no proxy from the environment). An address the policy refuses fails
//! at once as [`OutgoingError::NotAllowed`], with the same text whatever the reason.

use crate::auth::sign;
use crate::config::{HookConfig, OutgoingConfig};
use crate::metrics::Metrics;
use estuary_bridge_api::{BridgeError, ErrorKind, OutboundError, OutboundPolicy};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The signature header sent with every outgoing request.
pub const SIGNATURE_HEADER: &str = "X-Estuary-Signature";
/// Characters of the receiver's answer quoted in an error.
const EXCERPT_CHARS: usize = 200;

/// The JSON body of an outgoing request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutgoingPayload {
    /// The sender's bare JID.
    pub from: String,
    /// The hook's contact JID (`ci@hooks.example.org`), or its name if the domain is unknown.
    pub to: String,
    /// The hook's name.
    pub hook: String,
    /// The message text (an action is sent as `/me …`).
    pub body: String,
    /// The message id: the XMPP origin id where the client gave one, else a generated one.
    pub id: String,
    /// When the gateway sent it, RFC 3339 in UTC (`2025-01-31T12:00:00Z`).
    pub timestamp: String,
}

/// Why an outgoing delivery failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutgoingError {
    /// The receiver refused the message (3xx, or 4xx other than 408/429).
    #[error("the hook's URL refused the message: HTTP {status}{}", excerpt_suffix(.excerpt))]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        excerpt: String,
    },
    /// Every attempt failed with a server error, a timeout or a connection failure.
    #[error("the hook's URL did not take the message after {attempts} attempt(s); last: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure (`HTTP 503`, `timed out after 10 s`, …).
        last: String,
    },
    /// The request could not be built (a bad URL).
    #[error("cannot send to the hook's URL: {0}")]
    Request(String),
    /// The outbound policy does not allow the URL's address; nothing was sent.
    #[error("cannot send to the hook's URL: {0}")]
    NotAllowed(String),
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    }
}

impl From<OutgoingError> for BridgeError {
    /// 401 and 403 become `Forbidden`, other refusals `NotAcceptable`, failures
    /// `ServiceUnavailable`.
    fn from(e: OutgoingError) -> Self {
        let kind = match &e {
            OutgoingError::Rejected {
                status: 401 | 403, ..
            } => ErrorKind::Forbidden,
            OutgoingError::Rejected { .. } => ErrorKind::NotAcceptable,
            OutgoingError::Unavailable { .. } => ErrorKind::ServiceUnavailable,
            OutgoingError::Request(_) => ErrorKind::Internal,
            OutgoingError::NotAllowed(_) => ErrorKind::Forbidden,
        };
        BridgeError::new(kind, e.to_string())
    }
}

/// Sends outgoing requests with retries, where the outbound policy allows.
#[derive(Debug)]
pub struct OutgoingSender {
    config: OutgoingConfig,
    metrics: Arc<Metrics>,
    outbound: OutboundPolicy,
}

/// The resolver of every outgoing HTTP client: it resolves nothing. Each client is built
/// for one delivery with the addresses the policy allowed for its host
/// (`resolve_to_addrs`); any other name is refused rather than looked up.
#[derive(Debug)]
struct NoLookup;

impl reqwest::dns::Resolve for NoLookup {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let why = format!("{} was not checked by the outbound policy", name.as_str());
        Box::pin(async move { Err(why.into()) })
    }
}

/// Where a URL points: its host as written (without brackets) and its port.
fn host_and_port(url: &str) -> Result<(reqwest::Url, String, u16), OutgoingError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| OutgoingError::Request(format!("“{url}” is not a URL: {e}")))?;
    let host = parsed
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| OutgoingError::Request(format!("“{url}” has no host")))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| OutgoingError::Request(format!("“{url}” has no port")))?;
    Ok((parsed, host, port))
}

/// The refusal for a URL whose host is an address (not a name) that `outbound` refuses,
/// for checking a hook's URL when it is added, so that the user hears at once. Names are
/// checked only when a message goes out: resolving one here would check addresses the
/// delivery might not get.
pub fn refused_address(url: &str, outbound: &OutboundPolicy) -> Option<OutgoingError> {
    let (_, host, port) = host_and_port(url).ok()?;
    let ip: std::net::IpAddr = host.parse().ok()?;
    if outbound.allows(&host, std::net::SocketAddr::new(ip, port)) {
        return None;
    }
    let refusal = OutboundError::NotAllowed { host, port };
    Some(OutgoingError::NotAllowed(refusal.to_string()))
}

impl OutgoingSender {
    /// A sender that connects only where `outbound` allows.
    pub fn new(
        config: OutgoingConfig,
        metrics: Arc<Metrics>,
        outbound: OutboundPolicy,
    ) -> Result<Self, reqwest::Error> {
        // Fails here, at start, if the HTTP client cannot be built at all.
        Self::client(&config, "localhost", &[])?;
        Ok(Self {
            config,
            metrics,
            outbound,
        })
    }

    /// An HTTP client (rustls, no redirects, no proxy) that reaches `host` at `addrs` only.
    fn client(
        config: &OutgoingConfig,
        host: &str,
        addrs: &[std::net::SocketAddr],
    ) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("estuary-webhook/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .no_proxy()
            .dns_resolver(Arc::new(NoLookup))
            .resolve_to_addrs(host, addrs)
            .build()
    }

    /// POSTs `payload` to `url`, signed with the hook's token; returns the 2xx status.
    pub async fn deliver(
        &self,
        hook: &HookConfig,
        url: &str,
        payload: &OutgoingPayload,
    ) -> Result<u16, OutgoingError> {
        let result = self.try_deliver(hook, url, payload).await;
        let label = match &result {
            Ok(_) => "ok",
            Err(OutgoingError::Rejected { .. }) => "rejected",
            Err(_) => "failed",
        };
        self.metrics.outgoing(&hook.name, label);
        match &result {
            Ok(status) => tracing::debug!(hook = %hook.name, status, "outgoing delivered"),
            Err(e) => tracing::warn!(hook = %hook.name, error = %e, "outgoing delivery failed"),
        }
        result
    }

    async fn try_deliver(
        &self,
        hook: &HookConfig,
        url: &str,
        payload: &OutgoingPayload,
    ) -> Result<u16, OutgoingError> {
        let (url, host, port) = host_and_port(url)?;
        let addrs = match self.outbound.resolve(&host, port).await {
            Ok(addrs) => addrs,
            Err(e @ OutboundError::NotAllowed { .. }) => {
                return Err(OutgoingError::NotAllowed(e.to_string()));
            }
            Err(e @ OutboundError::Unresolved { .. }) => {
                return Err(OutgoingError::Unavailable {
                    attempts: 1,
                    last: e.to_string(),
                });
            }
        };
        let http = Self::client(&self.config, &host, &addrs)
            .map_err(|e| OutgoingError::Request(error_chain(&e)))?;
        let body =
            serde_json::to_vec(payload).map_err(|e| OutgoingError::Request(e.to_string()))?;
        let signature = format!("sha256={}", sign(hook.token.expose(), &body));
        let attempts = self.config.attempts.max(1);
        let mut wait = self.config.backoff;
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                self.metrics.retry(&hook.name);
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
            let sent = http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .header("X-Estuary-Hook", &hook.name)
                .header("X-Estuary-Delivery", &payload.id)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return Ok(status.as_u16());
                    }
                    let code = status.as_u16();
                    let excerpt = excerpt(resp.text().await.unwrap_or_default());
                    if status.is_server_error() || code == 408 || code == 429 {
                        last = format!("HTTP {code}{}", excerpt_suffix(&excerpt));
                        tracing::debug!(hook = %hook.name, attempt, status = code, "outgoing attempt failed");
                        continue;
                    }
                    return Err(OutgoingError::Rejected {
                        status: code,
                        excerpt,
                    });
                }
                Err(e) if e.is_builder() => {
                    return Err(OutgoingError::Request(e.without_url().to_string()));
                }
                Err(e) => {
                    last = if e.is_timeout() {
                        format!("timed out after {} s", self.config.timeout.as_secs_f32())
                    } else if e.is_connect() {
                        format!("could not connect: {}", error_chain(&e.without_url()))
                    } else {
                        error_chain(&e.without_url())
                    };
                    tracing::debug!(hook = %hook.name, attempt, error = %last, "outgoing attempt failed");
                }
            }
        }
        Err(OutgoingError::Unavailable { attempts, last })
    }
}

fn excerpt(text: String) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > EXCERPT_CHARS {
        let cut: String = collapsed.chars().take(EXCERPT_CHARS).collect();
        format!("{cut}…")
    } else {
        collapsed
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// RFC 3339 in UTC, seconds precision: `2025-01-31T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so that leap days end each 400-year era's years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_738_324_799);
        assert_eq!(rfc3339(t), "2025-01-31T11:59:59Z");
    }

    #[test]
    fn errors_map_to_kinds() {
        let e: BridgeError = OutgoingError::Rejected {
            status: 404,
            excerpt: "no".into(),
        }
        .into();
        assert_eq!(e.kind, ErrorKind::NotAcceptable);
        assert_eq!(e.text, "the hook's URL refused the message: HTTP 404: no");
        let e: BridgeError = OutgoingError::Rejected {
            status: 403,
            excerpt: String::new(),
        }
        .into();
        assert_eq!(e.kind, ErrorKind::Forbidden);
        let e: BridgeError = OutgoingError::Unavailable {
            attempts: 3,
            last: "HTTP 500".into(),
        }
        .into();
        assert_eq!(e.kind, ErrorKind::ServiceUnavailable);
        assert!(e.text.contains("HTTP 500"));
    }

    #[test]
    fn urls_give_host_and_port() {
        let hp = |u: &str| host_and_port(u).map(|(_, h, p)| (h, p));
        assert_eq!(
            hp("https://Example.org/in").unwrap(),
            ("example.org".into(), 443)
        );
        assert_eq!(hp("http://10.0.0.1/").unwrap(), ("10.0.0.1".into(), 80));
        assert_eq!(hp("http://[::1]:8080/x").unwrap(), ("::1".into(), 8080));
        assert!(matches!(hp("not a url"), Err(OutgoingError::Request(_))));
    }

    #[test]
    fn refused_addresses_are_caught_when_a_hook_is_added() {
        let strict = OutboundPolicy::default();
        for url in [
            "http://127.0.0.1:8080/in",
            "http://10.0.0.1/",
            "https://[::1]/x",
            "http://169.254.169.254/latest/meta-data",
        ] {
            let e = refused_address(url, &strict).expect(url);
            assert_eq!(BridgeError::from(e).kind, ErrorKind::Forbidden, "{url}");
        }
        assert!(refused_address("https://8.8.8.8/in", &strict).is_none());
        assert!(
            refused_address("http://internal.example/in", &strict).is_none(),
            "names wait for the delivery"
        );
        let open = OutboundPolicy::new(&["127.0.0.1:8080"]).unwrap();
        assert!(refused_address("http://127.0.0.1:8080/in", &open).is_none());
        assert!(refused_address("http://127.0.0.1:22/in", &open).is_some());
    }

    #[tokio::test]
    async fn refused_addresses_get_no_request() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = crate::config::WebhookConfig::from_json(&serde_json::json!({}))
            .unwrap()
            .outgoing;
        let sender = OutgoingSender::new(
            config,
            Arc::new(Metrics::default()),
            OutboundPolicy::default(),
        )
        .unwrap();
        let hook = HookConfig::new("ci", "t");
        let payload = OutgoingPayload {
            from: "a@x".into(),
            to: "ci".into(),
            hook: "ci".into(),
            body: "hi".into(),
            id: "1".into(),
            timestamp: rfc3339(UNIX_EPOCH),
        };
        for url in [
            format!("http://127.0.0.1:{port}/in"),
            format!("http://localhost:{port}/in"),
            format!("http://[::ffff:127.0.0.1]:{port}/in"),
        ] {
            let e = sender.deliver(&hook, &url, &payload).await.unwrap_err();
            assert!(matches!(e, OutgoingError::NotAllowed(_)), "{url}: {e}");
            assert!(e.to_string().contains("ask the gateway's admin"), "{e}");
            assert_eq!(BridgeError::from(e).kind, ErrorKind::Forbidden);
        }
        assert!(listener.accept().is_err(), "nothing connected");
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("a\n  b ".into()), "a b");
        assert_eq!(excerpt("x".repeat(500)).chars().count(), EXCERPT_CHARS + 1);
    }
}
