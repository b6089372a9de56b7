//! The process-wide side of a bridge: identity, address codec, registration, logins.

use crate::{
    BridgeError, BridgeInfo, Capabilities, ChatKey, Client, CommandContext, CommandOutput,
    CommandSpec, CommandTarget, EventRouter, EventSink, FormField, FormValues, LoginId, LoginStore,
    RemoteChatId, RemoteUserId, Result, RoomPolicy,
};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// An XMPP user of the gateway, by bare JID (`alice@example.org`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    /// The bare JID, as a string.
    pub jid: String,
}

/// A login as the core stored it, handed back to the bridge to bring the client up.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredLogin {
    /// The login's id, as minted at registration.
    pub id: LoginId,
    /// Whose login it is.
    pub user: User,
    /// The login fields as given at registration (secrets unsealed).
    pub fields: FormValues,
    /// The bridge's own metadata for this login.
    pub metadata: serde_json::Value,
    /// The user's settings per service (e.g. per IRC server), by service name, as stored
    /// through the service's configuration form (secrets unsealed).
    pub services: BTreeMap<String, FormValues>,
    /// The login's own state: a sealed key-value store and a private data directory, both
    /// removed when the user unregisters. The only place a bridge keeps state across
    /// restarts besides [`metadata`](Self::metadata) ([`crate::store`]).
    pub store: LoginStore,
}

/// What registration produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    /// The new login's id.
    pub id: LoginId,
    /// Metadata to keep with it.
    pub metadata: serde_json::Value,
}

/// One bridge, process-wide.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The bridge's identity.
    fn info(&self) -> BridgeInfo;
    /// What the network can do.
    fn capabilities(&self) -> Capabilities;
    /// The XEP-0077 registration form (empty: no fields).
    fn registration_fields(&self) -> Vec<FormField>;
    /// Checks registration values (and the credentials, where the network allows) and
    /// mints a login id. Errors reach the user as the registration's stanza error.
    async fn register(&self, user: &User, form: &FormValues) -> Result<Registered>;
    /// Brings a stored login up as a live client. Called at start-up for every stored
    /// login, after registration, and on first use when registration is not required
    /// (then with empty fields). Must not block on the network: `connect` does that.
    async fn load_login(&self, login: &StoredLogin, events: EventSink) -> Result<Box<dyn Client>>;

    /// The local part that names a contact on the component domain, before XEP-0106
    /// escaping (the core escapes).
    fn contact_local_part(&self, id: &RemoteUserId) -> String;
    /// The local part that names a room, before XEP-0106 escaping.
    fn room_local_part(&self, id: &RemoteChatId) -> String;
    /// Reads an unescaped local part back into what it names; `NotAcceptable` for an
    /// address this bridge cannot parse, with a text that shows the right syntax.
    fn parse_local_part(&self, local: &str) -> Result<ChatKey>;
    /// A room's name for people (the name in its disco#info identity), where the network
    /// knows no better one. The default is the room's id.
    fn room_display_name(&self, id: &RemoteChatId) -> String {
        id.as_str().to_owned()
    }

    /// Starts process-wide work (an HTTP listener, a poller) once the gateway is up.
    /// `events` reaches any user. The default does nothing.
    async fn start(&self, events: EventRouter) -> Result<()> {
        let _ = events;
        Ok(())
    }
    /// Stops process-wide work at shutdown. The default does nothing.
    async fn stop(&self) {}

    /// The HTTP routes this bridge serves (webhook receivers, provider callbacks), with
    /// their full paths, called once after [`start`](Self::start) with the same kind of
    /// `events`. The core mounts them on its one HTTP server (the `[http]` section), next to
    /// its own `/healthz` and `/metrics`, which a bridge must not use; the server applies
    /// the listener-level limits (connections, header and body timeouts, largest body,
    /// TLS), the bridge its per-request checks. A router must not set a fallback (the core
    /// answers unknown paths). The default serves nothing.
    fn http_routes(&self, events: EventRouter) -> Option<axum::Router> {
        let _ = events;
        None
    }

    /// Puts the bridge's own metrics in `registry` (names starting `estuary_<bridge>_`),
    /// served on the core's `/metrics` after the core's families ([`crate::prometheus`]).
    /// Called at every scrape with a fresh registry: register clones of the bridge's
    /// [`prometheus_client`] metrics (they are shared handles, e.g. a `Family` of
    /// `Counter`s) or a `Collector` that reads the bridge's state then. A counter is
    /// registered without its `_total`, which the crate adds (a name ending in `_total`
    /// panics in debug builds); `Registry::register` adds a full stop to the help text; a
    /// `Family` with no sample yet is left out by the registry, unless a `Collector`
    /// describes it. The default registers nothing.
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let _ = registry;
    }

    /// The per-user settings a service (a [`ChatKey::Service`], e.g. an IRC server) takes.
    /// Non-empty: the core offers them on the service's JID as a "Configure" ad-hoc
    /// command and as XEP-0077 registration, stores them per user and per service (secret
    /// fields sealed) in [`StoredLogin::services`], and tells the live client with
    /// [`Client::service_settings_changed`]. The default offers none.
    fn service_fields(&self, service: &str) -> Vec<FormField> {
        let _ = service;
        Vec::new()
    }
    /// The service the gateway's domain itself stands for, if any (IRC with a fixed server,
    /// whose server JID is the domain). Its settings are then configured with the
    /// "Configure" command on the domain. The default is none.
    fn domain_service(&self) -> Option<String> {
        None
    }
    /// Checks and normalizes settings submitted for `service` (already checked against
    /// [`service_fields`](Self::service_fields) for required fields and choices, stored
    /// secrets filled in for secrets left empty). An error reaches the user as the stanza
    /// error and nothing is stored. The default takes them as they are.
    async fn check_service_settings(
        &self,
        user: &User,
        service: &str,
        values: FormValues,
    ) -> Result<FormValues> {
        let _ = (user, service);
        Ok(values)
    }

    /// The per-user settings an entity takes: the gateway (defaults for everything), a
    /// service ([`service_fields`](Self::service_fields)) or a room. Non-empty: the core
    /// offers them as the entity's "Configure" command (node `configure`; on a room also
    /// as XEP-0045 `muc#owner` configuration), stores them per user under
    /// [`CommandTarget::settings_key`] in [`StoredLogin::services`] (secret fields sealed),
    /// and tells the live client with [`Client::settings_changed`].
    fn settings_fields(&self, target: &CommandTarget) -> Vec<FormField> {
        match target {
            CommandTarget::Service(s) => self.service_fields(s),
            _ => Vec::new(),
        }
    }
    /// The title and instructions of an entity's settings form; `None`: the core's own.
    fn settings_text(&self, target: &CommandTarget) -> Option<(String, String)> {
        let _ = target;
        None
    }
    /// Checks and normalizes settings submitted for an entity (see
    /// [`check_service_settings`](Self::check_service_settings)). The default sends a
    /// service's to `check_service_settings` and takes others as they are.
    async fn check_settings(
        &self,
        user: &User,
        target: &CommandTarget,
        values: FormValues,
    ) -> Result<FormValues> {
        match target {
            CommandTarget::Service(s) => self.check_service_settings(user, s, values).await,
            _ => Ok(values),
        }
    }
    /// How `room` behaves for a user whose stored settings (all entities, by
    /// [`CommandTarget::settings_key`]) are `settings`: whether it stays joined when they
    /// leave, whether it is archived, how much history a join replays. The default is
    /// [`RoomPolicy::default`].
    fn room_policy(
        &self,
        room: &RemoteChatId,
        settings: &BTreeMap<String, FormValues>,
    ) -> RoomPolicy {
        let _ = (room, settings);
        RoomPolicy::default()
    }

    /// Ad-hoc commands this bridge offers, besides the core's, each on the entities of its
    /// [`scope`](CommandSpec::scope).
    fn commands(&self) -> Vec<CommandSpec> {
        Vec::new()
    }
    /// Runs one of [`commands`](Self::commands) with the submitted form (checked against
    /// its fields, or those of the step's [`CommandForm`](crate::CommandForm), by the
    /// core). The core has checked the access. `client` is the user's live client, if
    /// there is one. Answering with [`CommandOutput::next`] asks for another step.
    async fn run_command(
        &self,
        ctx: &CommandContext,
        node: &str,
        form: &FormValues,
        client: Option<&dyn Client>,
    ) -> Result<CommandOutput> {
        let _ = (ctx, form, client);
        Err(BridgeError::not_found(format!("no command {node}")))
    }
}
