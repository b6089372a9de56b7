//! The process-wide side of the bridge: config, the hook routes it mounts on the core's HTTP
//! server, and the address codec.
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
use crate::server::{ServerState, router};
use async_trait::async_trait;
use estuary_bridge_api::{
    BridgeError, BridgeInfo, Capabilities, ChatKey, Client, CommandContext, CommandOutput,
    CommandSpec, Connector, EventRouter, EventSink, FormField, FormValues, OutboundPolicy,
    Registered, RemoteChatId, RemoteUserId, Result, StoredLogin, User,
};
use std::sync::Arc;

/// The webhook bridge.
#[derive(Debug)]
pub struct WebhookConnector {
    config: WebhookConfig,
    hooks: Arc<HookSet>,
    commands: HookCommands,
    metrics: Arc<Metrics>,
    sender: Arc<OutgoingSender>,
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

    /// The hook routes (`POST {path_prefix}/<hook>`), delivering into `events`; the core
    /// mounts them on its HTTP server ([`Connector::http_routes`]).
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
        // Commands that add hooks deliver their confirmations through the core's queue.
        self.commands.set_router(events);
        Ok(())
    }

    fn http_routes(&self, events: EventRouter) -> Option<axum::Router> {
        tracing::info!(prefix = %self.config.path_prefix, hooks = self.hooks.names().len(),
            "webhook routes mounted on the gateway's HTTP server");
        Some(self.router(events))
    }

    fn register_metrics(
        &self,
        registry: &mut estuary_bridge_api::prometheus_client::registry::Registry,
    ) {
        registry.register_collector(Box::new(self.metrics.clone()));
    }
}
