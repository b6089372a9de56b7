//! One user's side of the bridge: messages the user sends to hook contacts go out to the
//! hooks' URLs ([`crate::outgoing`]).
//!
//! There is nothing to log in to: [`WebhookClient::connect`] only reports `Connected`.

use crate::hooks::HookSet;
use crate::outgoing::{OutgoingPayload, OutgoingSender, rfc3339};
use async_trait::async_trait;
use estuary_bridge_api::{
    BridgeError, ChatKey, Client, ErrorKind, EventSink, LoginState, MessageKind, Outgoing,
    RemoteEvent, RemoteUserId, Result, Sent,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The live client of one user.
#[derive(Debug)]
pub struct WebhookClient {
    user: String,
    domain: Option<String>,
    hooks: Arc<HookSet>,
    sender: Arc<OutgoingSender>,
    events: EventSink,
    seq: AtomicU64,
}

impl WebhookClient {
    /// A client for `user` (a bare JID); `domain` is the component domain, if known.
    pub fn new(
        user: impl Into<String>,
        domain: Option<String>,
        hooks: Arc<HookSet>,
        sender: Arc<OutgoingSender>,
        events: EventSink,
    ) -> Self {
        Self {
            user: user.into(),
            domain,
            hooks,
            sender,
            events,
            seq: AtomicU64::new(0),
        }
    }

    fn next_id(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "estuary-{nanos:x}-{}",
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The hook a typed identifier names (`ci`, `CI`, `ci@hooks.example.org`), if it exists.
pub(crate) fn hook_name(hooks: &HookSet, typed: &str) -> Result<String> {
    let name = typed.trim();
    let name = name
        .split_once('@')
        .map_or(name, |(local, _)| local)
        .to_lowercase();
    if hooks.get(&name).is_some() {
        Ok(name)
    } else {
        Err(BridgeError::not_found(format!(
            "there is no hook named `{name}`; hooks: {}",
            list(hooks)
        )))
    }
}

/// The hook names for error texts.
pub(crate) fn list(hooks: &HookSet) -> String {
    let names = hooks.names();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

#[async_trait]
impl Client for WebhookClient {
    async fn connect(&self) {
        // Nothing to connect to; a closed sink means the core is shutting down.
        let _ = self
            .events
            .send(RemoteEvent::LoginState(LoginState::Connected))
            .await;
    }

    async fn disconnect(&self) {}

    async fn resolve_identifier(&self, typed: &str) -> Result<RemoteUserId> {
        hook_name(&self.hooks, typed).map(RemoteUserId::new)
    }

    async fn send_message(&self, msg: Outgoing) -> Result<Sent> {
        let ChatKey::Direct(to) = &msg.chat else {
            return Err(BridgeError::not_acceptable(
                "webhooks have no rooms or services: write to a hook's contact",
            ));
        };
        let hook = self.hooks.get(to.as_str()).ok_or_else(|| {
            BridgeError::not_found(format!(
                "there is no hook named `{to}`; hooks: {}",
                list(&self.hooks)
            ))
        })?;
        let config = &hook.config;
        let Some(url) = &config.url else {
            return Err(BridgeError::not_acceptable(
                "this hook only posts to you; it has no outgoing URL",
            ));
        };
        if !config.allows_sender(&self.user) {
            return Err(BridgeError::new(
                ErrorKind::Forbidden,
                "you may not send messages to this hook",
            ));
        }
        let body = match msg.kind {
            MessageKind::Action => format!("/me {}", msg.body),
            MessageKind::Normal | MessageKind::Notice => msg.body.clone(),
        };
        let payload = OutgoingPayload {
            from: self.user.clone(),
            to: match &self.domain {
                Some(d) => format!("{}@{d}", config.name),
                None => config.name.clone(),
            },
            hook: config.name.clone(),
            body,
            id: msg.origin_id.clone().unwrap_or_else(|| self.next_id()),
            timestamp: rfc3339(SystemTime::now()),
        };
        self.sender.deliver(config, url, &payload).await?;
        Ok(Sent {
            id: None,
            will_echo: false,
            ran_as_command: false,
        })
    }
}
