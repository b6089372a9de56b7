//! XEP-0077 in-band registration (register, change, unregister) and XEP-0100 `jabber:iq:gateway`.

use super::Gateway;
use super::iq::Request;
use crate::db::LoginRow;
use crate::xmpp::forms::{self, FormError};
use crate::xmpp::{errors, ns};
use estuary_bridge_api::{ChatKey, FieldKind, FormValues, LoginId, User};
use std::sync::Arc;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tracing::{info, warn};

/// Field names that old clients know as plain XEP-0077 elements.
const LEGACY: [&str; 8] = [
    "username", "nick", "password", "name", "first", "last", "email", "text",
];

impl Gateway {
    pub(super) async fn handle_register(
        self: &Arc<Self>,
        req: &Request,
    ) -> Result<Option<Element>, StanzaError> {
        let user = req.user();
        if !self.allowed(&user) {
            return Err(self.not_allowed_error());
        }
        let fields = self.connector.registration_fields();
        let existing = self
            .db
            .get_login(&self.bridge, user.as_str())
            .await
            .map_err(|e| errors::internal(format!("the database failed: {e}")))?;
        if !req.set {
            let mut q = registration_query(&self.instructions(), existing.is_some());
            let current = existing.as_ref().map(|l| &l.fields);
            for f in fields.iter().filter(|f| LEGACY.contains(&f.var.as_str())) {
                let value = if f.is_secret() {
                    None
                } else {
                    current.and_then(|c| c.get(&f.var))
                };
                let mut el = Element::builder(f.var.as_str(), ns::REGISTER).build();
                if let Some(v) = value {
                    el.append_text_node(v);
                }
                q.append_child(el);
            }
            q.append_child(forms::form(
                &format!("Register with {}", self.info.name),
                &self.instructions(),
                &fields,
                current,
            ));
            return Ok(Some(q));
        }
        if req.payload.get_child("remove", ns::REGISTER).is_some() {
            return self.unregister(req).await;
        }
        let values = forms::read_register_query(&req.payload, &fields);
        let values = values.map_err(|e: FormError| {
            errors::bad_request(format!("{e}; fill in the registration form again"))
        })?;
        self.apply_login(&user, values, existing.as_ref()).await?;
        if existing.is_none() {
            // XEP-0100 §6.2: the gateway asks to be in the user's roster.
            self.send(
                Presence::subscribe()
                    .with_from(self.jid())
                    .with_to(Jid::from(user.clone())),
            )
            .await;
        }
        Ok(None)
    }

    /// Registers or changes a user's login from checked values: a secret left empty keeps
    /// the stored one; the bridge checks the values and mints the login id; the login is
    /// stored (secrets sealed) and its client started again. Returns the login id.
    pub(super) async fn apply_login(
        self: &Arc<Self>,
        user: &BareJid,
        mut values: FormValues,
        existing: Option<&LoginRow>,
    ) -> Result<LoginId, StanzaError> {
        let fields = self.connector.registration_fields();
        if let Some(old) = existing {
            for f in fields.iter().filter(|f| f.is_secret()) {
                if values.get(&f.var).is_none()
                    && let Some(v) = old.fields.get(&f.var)
                {
                    values.set(f.var.clone(), v);
                }
            }
        }
        let registered = self
            .connector
            .register(
                &User {
                    jid: user.to_string(),
                },
                &values,
            )
            .await
            .map_err(|e| errors::from_bridge(&e))?;
        let secrets: Vec<String> = fields
            .iter()
            .filter(|f| f.kind == FieldKind::Secret)
            .map(|f| f.var.clone())
            .collect();
        let db_failed =
            |e: crate::db::DbError| errors::internal(format!("the database failed: {e}"));
        self.db
            .upsert_user(user.as_str())
            .await
            .map_err(db_failed)?;
        self.db
            .save_login(
                &self.bridge,
                user.as_str(),
                registered.id.as_str(),
                &values,
                &secrets,
                &registered.metadata,
            )
            .await
            .map_err(db_failed)?;
        info!(bridge = %self.bridge, user = %user, login = %registered.id, changed = existing.is_some(), "registered");
        self.open_session(
            user.as_str(),
            registered.id.clone(),
            values,
            registered.metadata,
            existing.map(|l| l.services.clone()).unwrap_or_default(),
            super::Existing::Replace,
        )
        .await
        .map_err(|e| errors::from_bridge(&e))?;
        Ok(registered.id)
    }

    async fn unregister(self: &Arc<Self>, req: &Request) -> Result<Option<Element>, StanzaError> {
        let user = req.user();
        let session = super::session::lock(&self.sessions).remove(user.as_str());
        if let Some(s) = session {
            s.client.disconnect().await;
        }
        let dir_id = self
            .db
            .existing_login_dir_id(&self.bridge, user.as_str())
            .await
            .map_err(|e| errors::internal(format!("the database failed: {e}")))?;
        let removed = self
            .db
            .delete_login(&self.bridge, user.as_str())
            .await
            .map_err(|e| errors::internal(format!("the database failed: {e}")))?;
        // The login's state rows went with it; its directory goes now.
        self.remove_login_dir(user.as_str(), dir_id).await;
        if !removed {
            return Err(errors::item_not_found(format!(
                "you have no login on {}",
                self.domain
            )));
        }
        self.profiles.forget_user(user.as_str());
        info!(bridge = %self.bridge, user = %user, "unregistered");
        let to = Jid::from(user);
        // XEP-0100 §6.3: leave the user's roster.
        for type_ in [
            PresenceType::Unsubscribe,
            PresenceType::Unsubscribed,
            PresenceType::Unavailable,
        ] {
            self.send(
                Presence::new(type_)
                    .with_from(self.jid())
                    .with_to(to.clone()),
            )
            .await;
        }
        Ok(None)
    }

    fn instructions(&self) -> String {
        if self.connector.registration_fields().is_empty() {
            format!(
                "{} needs no login details: just register to add the gateway.",
                self.info.name
            )
        } else {
            format!(
                "Enter your {} login. Secrets are stored sealed; register again to change them, or unregister to delete everything.",
                self.info.name
            )
        }
    }

    /// XEP-0100: prompt, and translate what the user typed into a JID.
    pub(super) async fn handle_gateway_iq(
        self: &Arc<Self>,
        req: &Request,
    ) -> Result<Option<Element>, StanzaError> {
        let user = req.user();
        if !self.allowed(&user) {
            return Err(self.not_allowed_error());
        }
        if !req.set {
            return Ok(Some(
                Element::builder("query", ns::GATEWAY)
                    .append(
                        Element::builder("desc", ns::GATEWAY)
                            .append(self.info.prompt.as_str())
                            .build(),
                    )
                    .append(
                        Element::builder("prompt", ns::GATEWAY)
                            .append("Contact ID")
                            .build(),
                    )
                    .build(),
            ));
        }
        let typed = req
            .payload
            .get_child("prompt", ns::GATEWAY)
            .map(|p| p.text())
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| errors::bad_request("send <prompt> with the contact's address"))?;
        let session = self.session_or_open(user.as_str()).await?;
        let id = session
            .client
            .resolve_identifier(&typed)
            .await
            .map_err(|e| errors::from_bridge(&e))?;
        let jid = self
            .chat_jid(&ChatKey::Direct(id.clone()))
            .ok_or_else(|| errors::internal("that address has no JID form"))?;
        if let Err(e) = self
            .db
            .upsert_contact(&self.bridge, user.as_str(), id.as_str(), None)
            .await
        {
            warn!(bridge = %self.bridge, "cannot remember the contact: {e}");
        }
        Ok(Some(
            Element::builder("query", ns::GATEWAY)
                .append(
                    Element::builder("jid", ns::GATEWAY)
                        .append(jid.to_string())
                        .build(),
                )
                .build(),
        ))
    }
}

/// The start of a XEP-0077 registration form: instructions, and `<registered/>` when the
/// user already is.
pub(super) fn registration_query(instructions: &str, registered: bool) -> Element {
    let mut q = Element::builder("query", ns::REGISTER).build();
    q.append_child(
        Element::builder("instructions", ns::REGISTER)
            .append(instructions)
            .build(),
    );
    if registered {
        q.append_child(Element::builder("registered", ns::REGISTER).build());
    }
    q
}
