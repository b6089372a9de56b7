//! Per-user settings of an entity, Biboumi's "Configure": on the gateway's domain
//! (defaults for everything), on a service's JID (`irc.example.net@irc.gw`, also as
//! XEP-0077 registration there) and on a room's JID (`#chan%irc.example.net@irc.gw`, also
//! as XEP-0045 `muc#owner` configuration). Each shows the user's current settings for that
//! entity and stores them in the user's login (secrets sealed). Which fields an entity
//! takes, and what values are acceptable, is the bridge's call
//! ([`Connector::settings_fields`], [`Connector::check_settings`]); the core checks the
//! form (required fields, booleans, choices, whole numbers) first.
//!
//! [`Connector::settings_fields`]: estuary_bridge_api::Connector::settings_fields
//! [`Connector::check_settings`]: estuary_bridge_api::Connector::check_settings

use super::Gateway;
use super::adhoc::command_el;
use super::iq::Request;
use crate::db::LoginRow;
use crate::xmpp::{errors, forms, ns};
use estuary_bridge_api::{CommandTarget, FieldKind, FormField, FormValues, LoginId, User};
use std::sync::Arc;
use tokio_xmpp::jid::BareJid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tracing::info;

/// The node of the configuration command (Biboumi's).
pub(super) const CONFIGURE_NODE: &str = "configure";
/// Its human name.
pub(super) const CONFIGURE_NAME: &str = "Configure";
/// The note of a completed configuration (Biboumi's words).
const APPLIED: &str = "Configuration successfully applied.";

fn db_failed(e: crate::db::DbError) -> StanzaError {
    errors::internal(format!("the database failed: {e}"))
}

impl Gateway {
    /// The settings `service` takes; empty when the bridge offers none.
    pub(super) fn service_fields(&self, service: &str) -> Vec<FormField> {
        self.settings_fields(&CommandTarget::Service(service.to_owned()))
    }

    /// The settings an entity takes; empty when the bridge offers none.
    pub(super) fn settings_fields(&self, target: &CommandTarget) -> Vec<FormField> {
        self.connector.settings_fields(target)
    }

    /// The user's login and their current settings for an entity.
    async fn stored_settings(
        &self,
        user: &BareJid,
        target: &CommandTarget,
    ) -> Result<(Option<LoginRow>, Option<FormValues>), StanzaError> {
        let login = self
            .db
            .get_login(&self.bridge, user.as_str())
            .await
            .map_err(db_failed)?;
        let current = login
            .as_ref()
            .and_then(|l| l.services.get(&target.settings_key()).cloned());
        Ok((login, current))
    }

    /// What an entity is called in texts.
    fn entity_name(&self, target: &CommandTarget) -> String {
        match target {
            CommandTarget::Gateway => self.domain.clone(),
            CommandTarget::Service(s) => s.clone(),
            CommandTarget::Room(r) => r.to_string(),
        }
    }

    /// The settings form of an entity, filled with `current`.
    fn settings_form(&self, target: &CommandTarget, current: Option<&FormValues>) -> Element {
        let (title, instructions) = match self.connector.settings_text(target) {
            Some(text) => text,
            None => (
                format!("{CONFIGURE_NAME} {}", self.entity_name(target)),
                self.settings_instructions(target, current),
            ),
        };
        forms::form(
            &title,
            &instructions,
            &self.settings_fields(target),
            current,
        )
    }

    fn settings_instructions(
        &self,
        target: &CommandTarget,
        current: Option<&FormValues>,
    ) -> String {
        let secrets: Vec<String> = self
            .settings_fields(target)
            .into_iter()
            .filter(|f| f.is_secret())
            .filter(|f| current.and_then(|c| c.get(&f.var)).is_some())
            .map(|f| f.label)
            .collect();
        let mut text = match target {
            CommandTarget::Service(service) => format!(
                "Your settings for {service}. They apply from the next connection to it (leave its rooms, or run \"Reconnect\" on {}).",
                self.domain
            ),
            other => format!("Your settings for {}.", self.entity_name(other)),
        };
        if !secrets.is_empty() {
            text.push_str(&format!(
                " Stored and not shown: {}; leave empty to keep.",
                secrets.join(", ")
            ));
        }
        text
    }

    /// Checks and stores submitted settings for an entity: secrets left empty keep the
    /// stored ones; the bridge checks the values; nothing is stored if it refuses. The
    /// user's login is created when there is none (unless the bridge requires
    /// registration first). The live client and the session are told.
    async fn store_settings(
        self: &Arc<Self>,
        user: &BareJid,
        target: &CommandTarget,
        mut values: FormValues,
    ) -> Result<(), StanzaError> {
        let fields = self.settings_fields(target);
        let (login, current) = self.stored_settings(user, target).await?;
        if let Some(old) = &current {
            for f in fields.iter().filter(|f| f.is_secret()) {
                if values.get(&f.var).is_none()
                    && let Some(v) = old.get(&f.var)
                {
                    values.set(f.var.clone(), v);
                }
            }
        }
        // Only the declared fields are kept.
        values
            .0
            .retain(|var, _| fields.iter().any(|f| f.var == *var));
        let bridge_user = User {
            jid: user.to_string(),
        };
        let values = self
            .connector
            .check_settings(&bridge_user, target, values)
            .await
            .map_err(|e| errors::from_bridge(&e))?;
        let key = target.settings_key();
        if login.is_none() {
            if self.caps.requires_registration {
                return Err(errors::registration_required(format!(
                    "register with {} first, then configure {}",
                    self.domain,
                    self.entity_name(target)
                )));
            }
            let meta = serde_json::Value::Object(Default::default());
            self.db
                .save_login(
                    &self.bridge,
                    user.as_str(),
                    LoginId::new(user.as_str()).as_str(),
                    &FormValues::default(),
                    &[],
                    &meta,
                )
                .await
                .map_err(db_failed)?;
        }
        let secrets: Vec<String> = fields
            .iter()
            .filter(|f| f.kind == FieldKind::Secret)
            .map(|f| f.var.clone())
            .collect();
        self.db
            .save_service_settings(&self.bridge, user.as_str(), &key, Some(&values), &secrets)
            .await
            .map_err(db_failed)?;
        info!(bridge = %self.bridge, user = %user, settings = %key, "settings saved");
        if let Some(session) = self.session(user.as_str()) {
            session.set_settings(&key, Some(values.clone()));
            session.client.settings_changed(target, Some(values)).await;
        }
        Ok(())
    }

    /// Forgets the user's settings for `service`; `item-not-found` if there were none.
    async fn forget_service_settings(
        self: &Arc<Self>,
        user: &BareJid,
        service: &str,
    ) -> Result<(), StanzaError> {
        let existed = match self
            .db
            .save_service_settings(&self.bridge, user.as_str(), service, None, &[])
            .await
        {
            Ok(existed) => existed,
            Err(crate::db::DbError::NotFound(_)) => false,
            Err(e) => return Err(db_failed(e)),
        };
        if !existed {
            return Err(errors::item_not_found(format!(
                "you have no settings for {service}"
            )));
        }
        info!(bridge = %self.bridge, user = %user, service, "service settings removed");
        if let Some(session) = self.session(user.as_str()) {
            session.set_settings(service, None);
            session.client.service_settings_changed(service, None).await;
        }
        Ok(())
    }

    /// XEP-0077 on a service's JID: get shows the form with the current settings, set
    /// stores them, `<remove/>` forgets them.
    pub(super) async fn handle_service_register(
        self: &Arc<Self>,
        req: &Request,
        service: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let user = req.user();
        if !self.allowed(&user) {
            return Err(self.not_allowed_error());
        }
        let fields = self.service_fields(service);
        if fields.is_empty() {
            return Err(errors::service_unavailable(format!(
                "{service} has nothing to configure"
            )));
        }
        let target = CommandTarget::Service(service.to_owned());
        if !req.set {
            let (_, current) = self.stored_settings(&user, &target).await?;
            let instructions = self.settings_instructions(&target, current.as_ref());
            let mut q = super::register::registration_query(&instructions, current.is_some());
            q.append_child(self.settings_form(&target, current.as_ref()));
            return Ok(Some(q));
        }
        if req.payload.get_child("remove", ns::REGISTER).is_some() {
            self.forget_service_settings(&user, service).await?;
            return Ok(None);
        }
        let values = forms::read_register_query(&req.payload, &fields)
            .map_err(|e| e.to_stanza_error("fill in the form again"))?;
        self.store_settings(&user, &target, values).await?;
        Ok(None)
    }

    /// The "Configure" ad-hoc command of an entity: executing returns the form with the
    /// current settings, submitting it stores them.
    pub(super) async fn settings_command(
        self: &Arc<Self>,
        user: &BareJid,
        target: &CommandTarget,
        node: &str,
        session_id: &str,
        submitted: Option<&Element>,
    ) -> Result<Element, StanzaError> {
        let Some(x) = submitted else {
            let (_, current) = self.stored_settings(user, target).await?;
            let form = self.settings_form(target, current.as_ref());
            return Ok(command_el(node, session_id, "executing", Some(form), None));
        };
        let values = self.read_settings_form(target, x)?;
        self.store_settings(user, target, values).await?;
        Ok(command_el(
            node,
            session_id,
            "completed",
            None,
            Some(APPLIED),
        ))
    }

    /// A submitted settings form read against the entity's fields; a bad value is refused
    /// with `not-acceptable` and a text naming the field.
    fn read_settings_form(
        &self,
        target: &CommandTarget,
        x: &Element,
    ) -> Result<FormValues, StanzaError> {
        forms::read_submitted(x, &self.settings_fields(target))
            .map_err(|e| e.to_stanza_error("nothing was changed"))
    }

    /// XEP-0045 §10 owner configuration of a room: get is the room's settings form, a
    /// submitted form stores them, a cancelled one changes nothing.
    pub(super) async fn handle_room_owner(
        self: &Arc<Self>,
        req: &Request,
        target: &CommandTarget,
    ) -> Result<Option<Element>, StanzaError> {
        let user = req.user();
        if !self.allowed(&user) {
            return Err(self.not_allowed_error());
        }
        if self.settings_fields(target).is_empty() {
            return Err(errors::service_unavailable(
                "this room has nothing to configure",
            ));
        }
        if !req.set {
            let (_, current) = self.stored_settings(&user, target).await?;
            let mut q = Element::builder("query", ns::MUC_OWNER).build();
            q.append_child(self.settings_form(target, current.as_ref()));
            return Ok(Some(q));
        }
        let Some(x) = req.payload.get_child("x", ns::DATA_FORMS) else {
            return Err(errors::bad_request(
                "send a data form (XEP-0004) of type submit or cancel",
            ));
        };
        if x.attr("type") == Some("cancel") {
            return Ok(None);
        }
        let values = self.read_settings_form(target, x)?;
        self.store_settings(&user, target, values).await?;
        Ok(None)
    }
}
