//! Per-service settings (Biboumi's per-IRC-server "Configure"): on a service's JID
//! (`irc.example.net@irc.gw`), a "Configure" ad-hoc command (XEP-0050) and XEP-0077
//! registration, both showing the user's current settings for that service and storing
//! them in the user's login (secrets sealed). Which fields a service takes, and what values
//! are acceptable, is the bridge's call ([`Connector::service_fields`],
//! [`Connector::check_service_settings`]).
//!
//! [`Connector::service_fields`]: estuary_bridge_api::Connector::service_fields
//! [`Connector::check_service_settings`]: estuary_bridge_api::Connector::check_service_settings

use super::Gateway;
use super::adhoc::command_el;
use super::iq::Request;
use crate::db::LoginRow;
use crate::xmpp::el::a;
use crate::xmpp::{errors, forms, ns};
use estuary_bridge_api::{FieldKind, FormField, FormValues, LoginId, User};
use std::sync::Arc;
use tokio_xmpp::jid::BareJid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tracing::info;

/// The node of the per-service configuration command (Biboumi's).
pub(super) const CONFIGURE_NODE: &str = "configure";
/// Its human name.
const CONFIGURE_NAME: &str = "Configure";

fn db_failed(e: crate::db::DbError) -> StanzaError {
    errors::internal(format!("the database failed: {e}"))
}

impl Gateway {
    /// The settings `service` takes; empty when the bridge offers none.
    pub(super) fn service_fields(&self, service: &str) -> Vec<FormField> {
        self.connector.service_fields(service)
    }

    /// The `<item/>`s of the service's command list.
    pub(super) fn service_command_items(&self, service_jid: &str, service: &str) -> Vec<Element> {
        if self.service_fields(service).is_empty() {
            return Vec::new();
        }
        vec![
            Element::builder("item", ns::DISCO_ITEMS)
                .attr(a("jid"), service_jid)
                .attr(a("node"), CONFIGURE_NODE)
                .attr(a("name"), CONFIGURE_NAME)
                .build(),
        ]
    }

    /// The user's login and their current settings for `service`.
    async fn service_settings(
        &self,
        user: &BareJid,
        service: &str,
    ) -> Result<(Option<LoginRow>, Option<FormValues>), StanzaError> {
        let login = self
            .db
            .get_login(&self.bridge, user.as_str())
            .await
            .map_err(db_failed)?;
        let current = login
            .as_ref()
            .and_then(|l| l.services.get(service).cloned());
        Ok((login, current))
    }

    fn service_instructions(&self, service: &str, current: Option<&FormValues>) -> String {
        let secrets: Vec<String> = self
            .service_fields(service)
            .into_iter()
            .filter(|f| f.is_secret())
            .filter(|f| current.and_then(|c| c.get(&f.var)).is_some())
            .map(|f| f.label)
            .collect();
        let mut text = format!(
            "Your settings for {service}. They apply from the next connection to it (leave its rooms, or run \"Reconnect\" on {}).",
            self.domain
        );
        if !secrets.is_empty() {
            text.push_str(&format!(
                " Stored and not shown: {}; leave empty to keep.",
                secrets.join(", ")
            ));
        }
        text
    }

    /// Checks and stores submitted settings for `service`: secrets left empty keep the
    /// stored ones; the bridge checks the values; nothing is stored if it refuses. The
    /// user's login is created when there is none (unless the bridge requires
    /// registration first). The live client is told.
    async fn store_service_settings(
        self: &Arc<Self>,
        user: &BareJid,
        service: &str,
        mut values: FormValues,
    ) -> Result<(), StanzaError> {
        let fields = self.service_fields(service);
        let (login, current) = self.service_settings(user, service).await?;
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
            .check_service_settings(&bridge_user, service, values)
            .await
            .map_err(|e| errors::from_bridge(&e))?;
        if login.is_none() {
            if self.caps.requires_registration {
                return Err(errors::registration_required(format!(
                    "register with {} first, then configure {service}",
                    self.domain
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
            .save_service_settings(
                &self.bridge,
                user.as_str(),
                service,
                Some(&values),
                &secrets,
            )
            .await
            .map_err(db_failed)?;
        info!(bridge = %self.bridge, user = %user, service, "service settings saved");
        if let Some(session) = self.session(user.as_str()) {
            session
                .client
                .service_settings_changed(service, Some(values))
                .await;
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
        if !req.set {
            let (_, current) = self.service_settings(&user, service).await?;
            let instructions = self.service_instructions(service, current.as_ref());
            let mut q = super::register::registration_query(&instructions, current.is_some());
            q.append_child(forms::form(
                &format!("{CONFIGURE_NAME} {service}"),
                &instructions,
                &fields,
                current.as_ref(),
            ));
            return Ok(Some(q));
        }
        if req.payload.get_child("remove", ns::REGISTER).is_some() {
            self.forget_service_settings(&user, service).await?;
            return Ok(None);
        }
        let values = match req.payload.get_child("x", ns::DATA_FORMS) {
            Some(x) => forms::read_submitted(x, &fields),
            None => {
                let mut v = FormValues::default();
                for child in req.payload.children().filter(|c| c.ns() == ns::REGISTER) {
                    v.set(child.name(), child.text());
                }
                forms::check(v, &fields)
            }
        }
        .map_err(|e| errors::bad_request(format!("{e}; fill in the form again")))?;
        self.store_service_settings(&user, service, values).await?;
        Ok(None)
    }

    /// The "Configure" ad-hoc command on a service's JID: executing returns the form with
    /// the current settings, submitting it stores them.
    pub(super) async fn handle_service_command(
        self: &Arc<Self>,
        req: &Request,
        service: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let user = req.user();
        let node = req
            .payload
            .attr("node")
            .ok_or_else(|| errors::bad_request("the command has no node"))?;
        let fields = self.service_fields(service);
        if node != CONFIGURE_NODE || fields.is_empty() {
            return Err(errors::item_not_found(format!(
                "there is no command {node} on {service}; ask it for its command list"
            )));
        }
        let (session_id, action) = super::adhoc::session_and_action(&req.payload);
        if action == "cancel" {
            return Ok(Some(command_el(node, &session_id, "canceled", None, None)));
        }
        if !matches!(action, "execute" | "complete" | "next") {
            return Err(errors::bad_request(format!(
                "the action {action} is not offered here"
            )));
        }
        if !self.allowed(&user) {
            return Err(self.not_allowed_error());
        }
        let Some(x) = req.payload.get_child("x", ns::DATA_FORMS) else {
            let (_, current) = self.service_settings(&user, service).await?;
            let instructions = self.service_instructions(service, current.as_ref());
            let form = forms::form(
                &format!("{CONFIGURE_NAME} {service}"),
                &instructions,
                &fields,
                current.as_ref(),
            );
            return Ok(Some(command_el(
                node,
                &session_id,
                "executing",
                Some(form),
                None,
            )));
        };
        let values = forms::read_submitted(x, &fields)
            .map_err(|e| errors::bad_request(format!("{e}; fill in the form again")))?;
        self.store_service_settings(&user, service, values).await?;
        Ok(Some(command_el(
            node,
            &session_id,
            "completed",
            None,
            Some(&format!(
                "Saved your settings for {service}. They apply from the next connection to it."
            )),
        )))
    }
}
