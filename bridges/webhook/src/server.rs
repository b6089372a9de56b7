//! The HTTP side: `POST {path_prefix}/<hook>`, `GET /healthz`, `GET /metrics`.
//!
//! A hook request goes through these steps, each with its own answer on failure:
//!
//! | step | failure | status |
//! | --- | --- | --- |
//! | find the hook | no such hook | 404 |
//! | read the body | longer than `max_body_bytes` | 413 |
//! | authenticate ([`crate::auth`]) | no or wrong credentials | 401 |
//! | rate limit ([`crate::ratelimit`]) | over `rate_limit_per_minute` | 429 + `Retry-After` |
//! | decode and format ([`crate::format`](mod@crate::format)) | malformed or unrecognised payload | 400 |
//! | hand to the core ([`crate::deliver`]) | the core's queue is closed or stuck | 503 |
//!
//! Success is `202 Accepted` with `{"accepted": N}`, N the number of events handed over.
//! Errors are `{"error": "…"}`. Every rejection is logged with the hook, the reason and the
//! remote address, never with a credential.

use crate::auth::authenticate;
use crate::deliver::deliver;
use crate::format::{Payload, RequestMeta, rejection_text, render};
use crate::hooks::HookSet;
use crate::metrics::{Metrics, UNKNOWN_HOOK};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use estuary_bridge_api::EventRouter;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::net::SocketAddr;
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
}

/// The axum router: hooks under `prefix` (normalised: empty or `/x` without a trailing
/// slash), plus `/healthz` and `/metrics`.
pub fn router(prefix: &str, state: ServerState) -> Router {
    Router::new()
        .route(&format!("{prefix}/{{name}}"), post(post_hook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .fallback(|| async { reject(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

/// The bridge's own counters, then every gateway's metrics from the core.
async fn metrics(State(st): State<ServerState>) -> Response {
    let mut text = st.metrics.render();
    text.push_str(&st.events.core_metrics());
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn post_hook(
    State(st): State<ServerState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string());
    let (status, resp) = handle(&st, &name, &remote, request).await;
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
    request: Request,
) -> (StatusCode, Response) {
    match accept(st, name, request).await {
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

async fn accept(st: &ServerState, name: &str, request: Request) -> Result<usize, Rejection> {
    let hook = st
        .hooks
        .get(name)
        .ok_or_else(|| Rejection::new(StatusCode::NOT_FOUND, format!("no hook named `{name}`")))?;
    let (parts, body) = request.into_parts();
    let body = read_body(
        body,
        parts.headers.get(header::CONTENT_LENGTH),
        st.max_body_bytes,
    )
    .await?;

    authenticate(&parts.headers, &body, &hook.config.token)
        .map_err(|e| Rejection::new(StatusCode::UNAUTHORIZED, e.to_string()))?;

    if let Err(wait) = hook.admit() {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(Rejection {
            retry_after: Some(secs.max(1)),
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
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("could not read the body: {e}"),
        )),
    }
}

fn reject(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": reason }))).into_response()
}
