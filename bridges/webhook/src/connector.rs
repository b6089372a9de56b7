//! The process-wide side of the bridge: config, the HTTP listener and the address codec.
//!
//! Addresses: a hook named `ci` is the contact `ci@<domain>`; its [`RemoteUserId`] and local
//! part are both its name (hook names are already valid, lower-case local parts). There are
//! no rooms on the webhook domain: hooks post into rooms on other XMPP services through
//! [`RemoteEvent::PostToXmppRoom`](estuary_bridge_api::RemoteEvent::PostToXmppRoom).

use crate::client::{WebhookClient, hook_name, list};
use crate::commands::{self, HookCommands};
use crate::config::{ConfigError, WebhookConfig};
use crate::hooks::HookSet;
use crate::metrics::Metrics;
use crate::outgoing::OutgoingSender;
use crate::server::{ConnectionLimit, ServerState, configure_http, router};
use async_trait::async_trait;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use estuary_bridge_api::{
    BridgeError, BridgeInfo, Capabilities, ChatKey, Client, CommandContext, CommandOutput,
    CommandSpec, Connector, ErrorKind, EventRouter, EventSink, FormField, FormValues,
    OutboundPolicy, Registered, RemoteChatId, RemoteUserId, Result, StoredLogin, User,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The webhook bridge.
#[derive(Debug)]
pub struct WebhookConnector {
    config: WebhookConfig,
    hooks: Arc<HookSet>,
    commands: HookCommands,
    metrics: Arc<Metrics>,
    sender: Arc<OutgoingSender>,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: JoinHandle<()>,
}

impl WebhookConnector {
    /// Reads the `[bridges.webhook]` table (as JSON) and builds the connector; outgoing
    /// requests go only where `outbound` allows.
    pub fn from_config(
        table: &serde_json::Value,
        outbound: OutboundPolicy,
    ) -> Result<Self, ConfigError> {
        Self::new(WebhookConfig::from_json(table)?, outbound)
    }

    /// Builds the connector from a checked config.
    pub fn new(config: WebhookConfig, outbound: OutboundPolicy) -> Result<Self, ConfigError> {
        let metrics = Arc::new(Metrics::default());
        let sender =
            OutgoingSender::new(config.outgoing.clone(), metrics.clone(), outbound.clone())
                .map_err(|e| ConfigError {
                    key: "bridges.webhook".into(),
                    reason: format!("cannot set up the outgoing HTTP client: {e}"),
                })?;
        let hooks = Arc::new(HookSet::new(config.hooks.iter().cloned()));
        Ok(Self {
            commands: HookCommands::new(hooks.clone(), config.clone(), outbound),
            hooks,
            config,
            metrics,
            sender: Arc::new(sender),
            running: Mutex::new(None),
        })
    }

    /// The config it was built from (hooks as at start; see [`Self::hooks`] for the live set).
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// The live hooks: the config's and those added by command ([`crate::commands`]).
    pub fn hooks(&self) -> Arc<HookSet> {
        self.hooks.clone()
    }

    /// The counters served on `/metrics`.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The address the listener is bound to, once started (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.lock().as_ref().map(|r| r.addr)
    }

    /// The axum router, for embedding the endpoints in another server.
    pub fn router(&self, events: EventRouter) -> axum::Router {
        router(
            &self.config.path_prefix,
            ServerState::new(
                self.hooks.clone(),
                events,
                self.metrics.clone(),
                self.config.max_body_bytes,
                &self.config.limits,
            ),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn tls_config(&self) -> Result<Option<RustlsConfig>> {
        let Some(tls) = &self.config.tls else {
            return Ok(None);
        };
        let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
            BridgeError::internal(format!(
                "cannot read the TLS {what} {}: {e}",
                path.display()
            ))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
            .and_then(|it| it.collect())
            .map_err(|e| bad("certificate", &tls.cert, &e))?;
        if certs.is_empty() {
            return Err(bad("certificate", &tls.cert, &"no certificate in it"));
        }
        let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| bad("key", &tls.key, &e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| {
                BridgeError::internal(format!(
                    "the TLS certificate {} and key {} do not work together: {e}",
                    tls.cert.display(),
                    tls.key.display()
                ))
            })?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(RustlsConfig::from_config(Arc::new(server))))
    }
}

#[async_trait]
impl Connector for WebhookConnector {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: "webhook".into(),
            name: "Webhooks".into(),
            disco_type: "http".into(),
            prompt: "Enter the hook's name".into(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn registration_fields(&self) -> Vec<FormField> {
        Vec::new()
    }

    async fn register(&self, user: &User, _form: &FormValues) -> Result<Registered> {
        // The metadata keeps the user's hooks: registering again must not drop them.
        Ok(Registered {
            id: commands::user_login(&user.jid),
            metadata: self.commands.metadata(&user.jid),
        })
    }

    async fn load_login(&self, login: &StoredLogin, events: EventSink) -> Result<Box<dyn Client>> {
        self.commands.load(login, &events).await;
        Ok(Box::new(WebhookClient::new(
            login.user.jid.clone(),
            self.config.domain.clone(),
            self.hooks.clone(),
            self.sender.clone(),
            events,
        )))
    }

    fn contact_local_part(&self, id: &RemoteUserId) -> String {
        id.as_str().to_owned()
    }

    fn room_local_part(&self, id: &RemoteChatId) -> String {
        id.as_str().to_owned()
    }

    fn parse_local_part(&self, local: &str) -> Result<ChatKey> {
        hook_name(&self.hooks, local)
            .map(|name| ChatKey::Direct(RemoteUserId::new(name)))
            .map_err(|_| {
                BridgeError::not_acceptable(format!(
                    "`{local}` is not a hook on this gateway; hooks: {}",
                    list(&self.hooks)
                ))
            })
    }

    fn commands(&self) -> Vec<CommandSpec> {
        commands::specs(&self.config)
    }

    async fn run_command(
        &self,
        ctx: &CommandContext,
        node: &str,
        form: &FormValues,
        _client: Option<&dyn Client>,
    ) -> Result<CommandOutput> {
        self.commands.run(ctx, node, form).await
    }

    async fn start(&self, events: EventRouter) -> Result<()> {
        if self.lock().is_some() {
            return Err(BridgeError::new(
                ErrorKind::Conflict,
                "the webhook listener is already running",
            ));
        }
        // Read the certificate first: a bad one must not leave a half-started listener.
        let tls = self.tls_config().await?;
        let addr = self.config.listen;
        let listener = std::net::TcpListener::bind(addr).map_err(|e| {
            BridgeError::new(
                ErrorKind::ServiceUnavailable,
                format!("cannot listen on {addr}: {e}"),
            )
        })?;
        let local = listener.local_addr().unwrap_or(addr);
        listener.set_nonblocking(true).map_err(|e| {
            BridgeError::internal(format!("cannot set up the listener on {local}: {e}"))
        })?;
        self.commands.set_router(events.clone());
        let app = self
            .router(events)
            .into_make_service_with_connect_info::<SocketAddr>();
        let handle = Handle::new();
        let listen_err =
            |e: std::io::Error| BridgeError::internal(format!("cannot listen on {local}: {e}"));
        let limits = &self.config.limits;
        let task = match tls {
            None => {
                let server = axum_server::from_tcp(listener)
                    .map_err(listen_err)?
                    .handle(handle.clone())
                    .acceptor(ConnectionLimit::new(limits.max_connections, true));
                let server = configure_http(server, limits);
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app).await {
                        tracing::error!(addr = %local, error = %e, "webhook listener stopped");
                    }
                })
            }
            Some(tls) => {
                let server = axum_server::from_tcp_rustls(listener, tls)
                    .map_err(listen_err)?
                    .handle(handle.clone())
                    .map(|acceptor| {
                        acceptor.acceptor(ConnectionLimit::new(limits.max_connections, false))
                    });
                let server = configure_http(server, limits);
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app).await {
                        tracing::error!(addr = %local, error = %e, "webhook listener stopped");
                    }
                })
            }
        };
        tracing::info!(addr = %local, tls = self.config.tls.is_some(),
            prefix = %self.config.path_prefix, hooks = self.hooks.names().len(),
            "webhook listener started");
        *self.lock() = Some(Running {
            addr: local,
            handle,
            task,
        });
        Ok(())
    }

    async fn stop(&self) {
        let running = self.lock().take();
        if let Some(r) = running {
            r.handle.graceful_shutdown(Some(Duration::from_secs(5)));
            let _ = r.task.await;
            tracing::info!(addr = %r.addr, "webhook listener stopped");
        }
    }
}
