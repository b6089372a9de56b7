//! The HTTP side: `POST {path_prefix}/<hook>`, mounted on the core's HTTP server.
//!
//! A hook request goes through these steps, each with its own answer on failure:
//!
//! | step | failure | status |
//! | --- | --- | --- |
//! | find the hook | no such hook | 404 |
//! | failed authentications of the client's address ([`AuthFailures`]) | over `auth_failures_per_minute` | 429 + `Retry-After`, credentials not checked |
//! | authenticate by header token ([`authenticate_headers`]) | no credentials, or a wrong token and no signature header | 401, body not read |
//! | read the body | longer than `max_body_bytes` / slower than `body_timeout_secs` | 413 / 408 |
//! | authenticate by signature ([`authenticate`]), when one is sent | wrong signature | 401 |
//! | rate limit ([`crate::ratelimit`]) | over `rate_limit_per_minute` | 429 + `Retry-After` |
//! | decode and format ([`crate::format`](mod@crate::format)) | malformed or unrecognised payload | 400 |
//! | hand to the core ([`crate::deliver`]) | the core's queue is closed or stuck | 503 |
//!
//! Success is `202 Accepted` with `{"accepted": N}`, N the number of events handed over.
//! Errors are `{"error": "…"}`. Every rejection is logged with the hook, the reason and the
//! remote address, never with a credential.
//!
//! The listener-level limits (connections at once, header timeout, the largest body and
//! the longest pause in one, TLS) are the core's HTTP server's (`[http]`); `/healthz` and
//! `/metrics` are the core's too (this bridge's counters reach `/metrics` through
//! [`Connector::register_metrics`](estuary_bridge_api::Connector::register_metrics)).

use crate::auth::{HeaderCheck, authenticate, authenticate_headers};
use crate::config::ListenerLimits;
use crate::deliver::deliver;
use crate::format::{Payload, RequestMeta, rejection_text, render};
use crate::hooks::HookSet;
use crate::metrics::{Metrics, UNKNOWN_HOOK};
use crate::ratelimit::{AUTH_FAILURE_ADDRESSES, AuthFailures};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use estuary_bridge_api::EventRouter;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long a request may wait for the core's queue before the answer is 503.
pub const DELIVER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct ServerState {
    /// The hooks.
    pub hooks: Arc<HookSet>,
    /// The core's event queue.
    pub events: EventRouter,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// `max_body_bytes`.
    pub max_body_bytes: usize,
    /// `body_timeout_secs`.
    pub body_timeout: Duration,
    /// Failed authentications per client address.
    pub auth_failures: Arc<AuthFailures>,
}

impl ServerState {
    /// The state for these hooks, events and counters with the config's limits.
    pub fn new(
        hooks: Arc<HookSet>,
        events: EventRouter,
        metrics: Arc<Metrics>,
        max_body_bytes: usize,
        limits: &ListenerLimits,
    ) -> Self {
        Self {
            hooks,
            events,
            metrics,
            max_body_bytes,
            body_timeout: limits.body_timeout,
            auth_failures: Arc::new(AuthFailures::new(
                limits.auth_failures_per_minute,
                AUTH_FAILURE_ADDRESSES,
            )),
        }
    }
}

/// The axum router: hooks under `prefix` (normalised: empty or `/x` without a trailing
/// slash). No fallback: the core's server answers unknown paths.
pub fn router(prefix: &str, state: ServerState) -> Router {
    Router::new()
        .route(&format!("{prefix}/{{name}}"), post(post_hook))
        .with_state(state)
}

async fn post_hook(
    State(st): State<ServerState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let remote_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let remote = remote_addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    let ip = remote_addr.map(|a| a.ip());
    let (status, resp) = handle(&st, &name, &remote, ip, request).await;
    let label = if status == StatusCode::NOT_FOUND {
        UNKNOWN_HOOK
    } else {
        name.as_str()
    };
    st.metrics.request(label, status.as_u16());
    resp
}

/// A refused request: the status, the reason for the log and the client, and extra headers.
struct Rejection {
    status: StatusCode,
    reason: String,
    retry_after: Option<u64>,
}

impl Rejection {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }
}

async fn handle(
    st: &ServerState,
    name: &str,
    remote: &str,
    ip: Option<IpAddr>,
    request: Request,
) -> (StatusCode, Response) {
    match accept(st, name, ip, request).await {
        Ok(accepted) => {
            tracing::info!(hook = %name, remote, accepted, "webhook request accepted");
            let body = axum::Json(serde_json::json!({ "accepted": accepted }));
            (
                StatusCode::ACCEPTED,
                (StatusCode::ACCEPTED, body).into_response(),
            )
        }
        Err(r) => {
            // `name` is whatever the client put in the path: log it escaped.
            tracing::warn!(hook = ?name, remote, status = r.status.as_u16(), reason = %r.reason,
                "webhook request rejected");
            let mut resp = reject(r.status, &r.reason);
            if let Some(secs) = r.retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            if r.status == StatusCode::UNAUTHORIZED {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            (r.status, resp)
        }
    }
}

/// Whole seconds to wait, rounded up, at least 1 (for `Retry-After`).
fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

async fn accept(
    st: &ServerState,
    name: &str,
    ip: Option<IpAddr>,
    request: Request,
) -> Result<usize, Rejection> {
    let hook = st
        .hooks
        .get(name)
        .ok_or_else(|| Rejection::new(StatusCode::NOT_FOUND, format!("no hook named `{name}`")))?;
    if let Some(Err(wait)) = ip.map(|ip| st.auth_failures.check(ip)) {
        let secs = retry_secs(wait);
        return Err(Rejection {
            retry_after: Some(secs),
            ..Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed authentications from your address; try again in {secs} s \
                     with the hook's token"
                ),
            )
        });
    }
    let unauthorized = |e: crate::auth::AuthError| {
        if let Some(ip) = ip {
            st.auth_failures.record_failure(ip);
        }
        Rejection::new(StatusCode::UNAUTHORIZED, e.to_string())
    };
    let (parts, body) = request.into_parts();
    // A wrong token is refused before the body is read; only signatures need it.
    let check = authenticate_headers(&parts.headers, &hook.config.token);
    if let HeaderCheck::Refused(e) = check {
        return Err(unauthorized(e));
    }
    let body = read_body(
        body,
        parts.headers.get(header::CONTENT_LENGTH),
        st.max_body_bytes,
        st.body_timeout,
    )
    .await?;
    if check == HeaderCheck::NeedsBody {
        authenticate(&parts.headers, &body, &hook.config.token).map_err(unauthorized)?;
    }

    if let Err(wait) = hook.admit() {
        return Err(Rejection {
            retry_after: Some(retry_secs(wait)),
            ..Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "rate limit of {} requests per minute exceeded",
                    hook.config.rate_limit_per_minute
                ),
            )
        });
    }

    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let bad = |e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            rejection_text(&e, content_type, &body),
        )
    };
    let payload = Payload::decode(content_type, &body).map_err(bad)?;
    let meta = RequestMeta::from_headers(&parts.headers);
    let text = render(&hook.config, &meta, &payload).map_err(bad)?;

    let delivered = tokio::time::timeout(
        DELIVER_TIMEOUT,
        deliver(&st.events, &hook.config, &text, meta.delivery.as_deref()),
    )
    .await;
    match delivered {
        Ok(Ok(n)) => {
            st.metrics.delivered(&hook.config.name, n as u64);
            Ok(n)
        }
        Ok(Err(closed)) => Err(Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            closed.to_string(),
        )),
        Err(_) => Err(Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway core is not taking messages right now; try again later",
        )),
    }
}

async fn read_body(
    body: Body,
    content_length: Option<&HeaderValue>,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, Rejection> {
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = content_length
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            Rejection::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s; send it at once",
                    timeout.as_secs_f64()
                ),
            )
        })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        // This limit, or the server's own (`[http] max_body_bytes`), wrapped in the body's
        // error by the layers between.
        Err(e) if caused_by::<LengthLimitError>(e.as_ref()) => Err(too_large()),
        Err(e) => Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("could not read the body: {e}"),
        )),
    }
}

/// Whether `e` or any error in its source chain is an `E`.
fn caused_by<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<E>() {
            return true;
        }
        current = err.source();
    }
    false
}

fn reject(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": reason }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_secs(Duration::from_secs(6)), 6);
        assert_eq!(retry_secs(Duration::ZERO), 1);
    }
}
