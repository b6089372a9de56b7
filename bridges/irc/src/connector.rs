//! The process-wide side of the IRC bridge: identity, capabilities, the address codec,
//! registration and turning a login into an [`IrcClient`].

use crate::address;
use crate::client::IrcClient;
use crate::config::{ConfigError, IrcConfig};
use crate::profile::{OPENING_WAIT, Opening, Profiles};
use async_trait::async_trait;
use estuary_bridge_api::{
    BridgeError, BridgeInfo, Capabilities, ChatKey, Client, CommandContext, CommandOutput,
    CommandSpec, CommandTarget, Connector, EventSink, FormField, FormValues, LoginId,
    OutboundPolicy, Registered, RemoteChatId, RemoteUserId, Result, RoomPolicy, StoredLogin, User,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The IRC bridge.
#[derive(Debug)]
pub struct IrcConnector {
    common: Arc<Common>,
}

/// What every client of the bridge shares: the config, where connections may go and the
/// server profiles in use.
#[derive(Debug)]
pub struct Common {
    /// The `[bridges.irc]` table.
    pub config: IrcConfig,
    /// The core's `[outbound]` policy: every connection to a server goes through it.
    pub outbound: Arc<OutboundPolicy>,
    /// The turns to open a connection (`limits.opening_connections`), for all users.
    pub opening: Opening,
    /// The servers' profiles, each once for all connections.
    pub profiles: Profiles,
}

impl Common {
    /// Shared state for `config` and `outbound`, with no profile yet.
    pub fn new(config: IrcConfig, outbound: OutboundPolicy) -> Self {
        Self {
            opening: Opening::new(config.limits.opening_connections, OPENING_WAIT),
            config,
            outbound: Arc::new(outbound),
            profiles: Profiles::new(),
        }
    }
}

impl IrcConnector {
    /// Reads the whole `[bridges.irc]` table (as JSON; `domain`/`secret` are ignored); the
    /// bridge connects only where `outbound` allows.
    pub fn from_config(
        table: &serde_json::Value,
        outbound: OutboundPolicy,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(IrcConfig::from_json(table)?, outbound))
    }

    /// A connector with a config already read.
    pub fn new(config: IrcConfig, outbound: OutboundPolicy) -> Self {
        Self {
            common: Arc::new(Common::new(config, outbound)),
        }
    }

    /// The config in use.
    pub fn config(&self) -> &IrcConfig {
        &self.common.config
    }

    fn fixed(&self) -> Option<&str> {
        self.common.config.fixed_server.as_deref()
    }
}

#[async_trait]
impl Connector for IrcConnector {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: "irc".into(),
            name: "IRC".into(),
            disco_type: "irc".into(),
            prompt: match self.fixed() {
                Some(_) => "Enter the IRC nick".into(),
                None => "Enter the IRC nick and server as nick%irc.server".into(),
            },
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            groups: true,
            requires_registration: false,
            nick_changes: true,
            set_topic: true,
            kicks: true,
            room_list: true,
            max_body_bytes: None,
            offline: self.common.config.offline_policy(),
            domain_service: self.common.config.fixed_server.clone(),
            ..Capabilities::default()
        }
    }

    fn registration_fields(&self) -> Vec<FormField> {
        vec![
            FormField::text("server", "IRC server these settings are for")
                .describe("Leave empty to use them on every server."),
            FormField::text("nick", "Nick"),
            FormField::text("username", "Username (ident)"),
            FormField::text("realname", "Real name"),
            FormField::secret("sasl_password", "SASL password (account = nick)"),
            FormField::secret("nickserv_password", "NickServ password"),
            FormField::boolean("tls", "Use TLS"),
            FormField::text("port", "Port").describe("Empty: 6697 with TLS, then 6667."),
            FormField {
                kind: estuary_bridge_api::FieldKind::Multiline,
                ..FormField::text("autojoin", "Channels to join on connect")
            },
        ]
    }

    async fn register(&self, user: &User, form: &FormValues) -> Result<Registered> {
        if let Some(server) = form.get("server")
            && let Some(why) = address::check_server(server)
        {
            return Err(BridgeError::not_acceptable(why));
        }
        if let Some(nick) = form.get("nick")
            && let Some(why) = address::check_nick(nick)
        {
            return Err(BridgeError::not_acceptable(why));
        }
        if let Some(port) = form.get("port")
            && port.parse::<u16>().map_or(true, |p| p == 0)
        {
            return Err(BridgeError::not_acceptable(format!(
                "“{port}” is not a port number (1–65535)."
            )));
        }
        Ok(Registered {
            id: LoginId::new(user.jid.clone()),
            metadata: serde_json::Value::Null,
        })
    }

    async fn load_login(&self, login: &StoredLogin, events: EventSink) -> Result<Box<dyn Client>> {
        Ok(Box::new(IrcClient::new(
            Arc::clone(&self.common),
            login.user.clone(),
            login.fields.clone(),
            login.metadata.clone(),
            login.services.clone(),
            events,
        )))
    }

    fn service_fields(&self, service: &str) -> Vec<FormField> {
        // Every server JID takes them; the gateway's domain does too with a fixed server.
        let verify = self
            .common
            .config
            .server(&service.to_ascii_lowercase())
            .verify_certificate
            .unwrap_or(true);
        crate::settings::fields_for(verify)
    }

    fn settings_fields(&self, target: &CommandTarget) -> Vec<FormField> {
        match target {
            CommandTarget::Gateway => crate::settings::global_fields(
                self.common.config.offline == crate::config::Offline::Persistent,
            ),
            CommandTarget::Service(s) => self.service_fields(s),
            CommandTarget::Room(_) => crate::settings::channel_fields(),
        }
    }

    fn settings_text(&self, target: &CommandTarget) -> Option<(String, String)> {
        // Biboumi's words.
        Some(match target {
            CommandTarget::Gateway => (
                "Configure some global default settings.".into(),
                "Edit the form, to configure your global settings for the component.".into(),
            ),
            CommandTarget::Service(s) => (
                format!("Configure the IRC server {s}"),
                format!("Edit the form, to configure the settings of the IRC server {s}"),
            ),
            CommandTarget::Room(r) => {
                let (channel, server) = address::parse_room_id(r).ok()?;
                (
                    format!("Configure the IRC channel {channel} on server {server}"),
                    format!(
                        "Edit the form, to configure the settings of the IRC channel {channel}"
                    ),
                )
            }
        })
    }

    async fn check_settings(
        &self,
        user: &User,
        target: &CommandTarget,
        values: FormValues,
    ) -> Result<FormValues> {
        match target {
            CommandTarget::Service(s) => self.check_service_settings(user, s, values).await,
            CommandTarget::Room(_) => Ok(crate::settings::check_channel(&values)?),
            CommandTarget::Gateway => Ok(values),
        }
    }

    fn room_policy(
        &self,
        room: &RemoteChatId,
        settings: &BTreeMap<String, FormValues>,
    ) -> RoomPolicy {
        let server = address::parse_room_id(room).map(|(_, s)| s.to_owned()).ok();
        crate::settings::room_policy(
            settings.get(&CommandTarget::Gateway.settings_key()),
            server.and_then(|s| settings.get(&s)),
            settings.get(&CommandTarget::Room(room.clone()).settings_key()),
        )
    }

    fn commands(&self) -> Vec<CommandSpec> {
        crate::commands::specs()
    }

    async fn run_command(
        &self,
        ctx: &CommandContext,
        node: &str,
        form: &FormValues,
        client: Option<&dyn Client>,
    ) -> Result<CommandOutput> {
        match client {
            Some(client) => client.run_command(ctx, node, form).await,
            None => crate::commands::run_without_client(ctx, node),
        }
    }

    fn domain_service(&self) -> Option<String> {
        self.fixed().map(str::to_owned)
    }

    async fn check_service_settings(
        &self,
        _user: &User,
        service: &str,
        values: FormValues,
    ) -> Result<FormValues> {
        if let Some(why) = address::check_server(service) {
            return Err(BridgeError::not_acceptable(why));
        }
        Ok(crate::settings::check(&values)?)
    }

    fn contact_local_part(&self, id: &RemoteUserId) -> String {
        address::local_part_for_id(id.as_str(), self.fixed())
    }

    fn room_local_part(&self, id: &RemoteChatId) -> String {
        address::local_part_for_id(id.as_str(), self.fixed())
    }

    fn parse_local_part(&self, local: &str) -> Result<ChatKey> {
        Ok(address::parse_local_part(local, self.fixed())?.chat_key(address::ID_FOLDING))
    }

    fn room_display_name(&self, id: &RemoteChatId) -> String {
        address::room_display_name(id.as_str())
    }
}
