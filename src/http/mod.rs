//! The gateway's one HTTP server (`[http]`): the core's `/healthz` and `/metrics`
//! ([`status`]) and the routes each bridge mounts through
//! [`Connector::http_routes`](estuary_bridge_api::Connector::http_routes) (the webhook
//! bridge's hooks under its `path_prefix`).
//!
//! The listener-level limits are the core's and hold for every route: at most
//! `max_connections` connections at once, request headers within `header_timeout_secs`, and
//! clients that read an answer with no pause longer than `send_timeout_secs` ([`listener`]), request bodies of at most `max_body_bytes` with no
//! pause longer than `body_timeout_secs` (tower-http), and TLS when a certificate is given
//! ([`tls`]). Per-request checks (authentication, rate limits, a route's own body limit)
//! stay in the bridge that owns the route.

pub mod listener;
pub mod status;
pub mod tls;

use crate::config::HttpSettings;
use crate::gateway::Gateway;
use crate::metrics::Registry;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum_server::Handle;
use listener::{ConnectionLimit, configure_http};
use status::StatusState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tracing::{error, info, info_span};

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A `listen` address is not `IP:port`.
    #[error("[http] listen: {0:?} is not an IP address and port")]
    Address(String),
    /// An address could not be bound.
    #[error("[http] cannot listen on {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key could not be used.
    #[error("[http] {0}")]
    Tls(String),
    /// Two bridges (or a bridge and the core) serve the same path.
    #[error(
        "[http] bridge {bridge} serves a path that is already taken (by the core's /healthz, /metrics or /media, or another bridge)"
    )]
    RouteConflict {
        /// The bridge whose routes could not be added.
        bridge: String,
    },
}

/// How long a stop waits for requests in progress.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running HTTP server.
pub struct HttpServer {
    addrs: Vec<SocketAddr>,
    handles: Vec<Handle<SocketAddr>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The whole router: the core's endpoints, then each bridge's routes, an answer for unknown
/// paths, and the body limits.
fn app(
    settings: &HttpSettings,
    status: StatusState,
    mounts: Vec<(String, Router)>,
) -> Result<Router, HttpError> {
    let mut app = Router::new()
        .route("/healthz", get(status::healthz))
        .route("/metrics", get(status::metrics))
        .with_state(status);
    for (bridge, routes) in mounts {
        // axum refuses overlapping routes by panicking; here that is a start-up error.
        let merged =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.clone().merge(routes)));
        app = merged.map_err(|_| HttpError::RouteConflict { bridge })?;
    }
    Ok(app
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({ "error": "no such endpoint" })),
            )
                .into_response()
        })
        .layer(RequestBodyLimitLayer::new(settings.max_body_bytes))
        .layer(RequestBodyTimeoutLayer::new(Duration::from_secs(
            settings.body_timeout_secs,
        ))))
}

/// Binds every `listen` address and serves the core's endpoints for `gateways` and the
/// bridges' `mounts` (bridge name, routes). Nothing is left listening on an error.
pub async fn start(
    settings: &HttpSettings,
    gateways: &[Arc<Gateway>],
    registry: Arc<Registry>,
    mounts: Vec<(String, Router)>,
) -> Result<HttpServer, HttpError> {
    let span = info_span!("http.start");
    let _enter = span.enter();
    let addrs: Vec<SocketAddr> = settings
        .listen
        .iter()
        .map(|a| a.parse().map_err(|_| HttpError::Address(a.clone())))
        .collect::<Result<_, _>>()?;
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(tls::load(cert, key)?),
        _ => None,
    };
    let status = StatusState {
        gateways: Arc::new(
            gateways
                .iter()
                .map(|g| (g.bridge.clone(), Arc::downgrade(g)))
                .collect(),
        ),
        registry,
    };
    let routes: Vec<String> = mounts.iter().map(|(b, _)| b.clone()).collect();
    let app = app(settings, status, mounts)?;
    // Bind them all before serving any: a taken port leaves nothing half-started.
    let mut listeners = Vec::new();
    for addr in addrs {
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| HttpError::Bind { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        listeners.push((local, listener));
    }
    // One limit for all the addresses: `max_connections` is the server's. Under TLS a
    // refused connection is closed (a plain-text 503 would be noise to a TLS client).
    let limit = ConnectionLimit::new(
        settings.max_connections,
        tls.is_none(),
        Duration::from_secs(settings.send_timeout_secs),
    );
    let header_timeout = Duration::from_secs(settings.header_timeout_secs);
    let mut server = HttpServer {
        addrs: Vec::new(),
        handles: Vec::new(),
        tasks: Vec::new(),
    };
    for (local, listener) in listeners {
        let service = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let handle = Handle::new();
        let bind_err = |source| HttpError::Bind {
            addr: local,
            source,
        };
        let task = match &tls {
            None => {
                let s = axum_server::from_tcp(listener)
                    .map_err(bind_err)?
                    .handle(handle.clone())
                    .acceptor(limit.clone());
                let s = configure_http(s, header_timeout);
                tokio::spawn(async move {
                    if let Err(e) = s.serve(service).await {
                        error!(addr = %local, error = %e, "HTTP server stopped");
                    }
                })
            }
            Some(tls) => {
                let limit = limit.clone();
                let s = axum_server::from_tcp_rustls(listener, tls.clone())
                    .map_err(bind_err)?
                    .handle(handle.clone())
                    .map(|acceptor| acceptor.acceptor(limit));
                let s = configure_http(s, header_timeout);
                tokio::spawn(async move {
                    if let Err(e) = s.serve(service).await {
                        error!(addr = %local, error = %e, "HTTP server stopped");
                    }
                })
            }
        };
        info!(addr = %local, tls = tls.is_some(), bridges = ?routes, "HTTP server listening");
        server.addrs.push(local);
        server.handles.push(handle);
        server.tasks.push(task);
    }
    Ok(server)
}

impl HttpServer {
    /// The bound addresses, in the order of `listen` (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops taking connections and waits (up to 5 s) for requests in progress.
    pub async fn stop(self) {
        for h in &self.handles {
            h.graceful_shutdown(Some(STOP_GRACE));
        }
        for t in self.tasks {
            let _ = t.await;
        }
        info!(addrs = ?self.addrs, "HTTP server stopped");
    }
}
