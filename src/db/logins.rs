//! `logins`: one puppet account per (bridge, user), its login fields and the bridge's
//! metadata.
//!
//! The fields are stored as one JSON text, `{"clear": {var: value}, "sealed": {var:
//! sealed}}`: the fields the bridge flags as secret are sealed, each bound to its bridge,
//! user and field name, so a sealed value moved to another row does not open.
//!
//! The same text holds the user's settings per service (an IRC server, say), under
//! `"services": {service: {"clear": …, "sealed": …}}`, sealed the same way and bound to the
//! service's name as well. Saving the login keeps them; only
//! [`Database::save_service_settings`] changes them.
//!
//! The bridge's metadata is stored as JSON text, except the values under its top-level
//! [`SEALED_METADATA_KEY`] object: each is sealed (its JSON text), bound to the bridge, the
//! user and its key, and opened again when the login is read. That is the bridge's sealed
//! per-login key-value store (the webhook bridge keeps the tokens of hooks added by command
//! there).

use super::seal::SealError;
use super::{Database, DbError, now_ms};
use estuary_bridge_api::{FormValues, LoginId, SEALED_METADATA_KEY, StoredLogin, User};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

/// A stored login, with its secret fields unsealed.
#[derive(Clone, Debug, PartialEq)]
pub struct LoginRow {
    /// The bridge, e.g. `"irc"`.
    pub bridge: String,
    /// The user, a bare JID.
    pub user: String,
    /// The login's id, as the bridge minted it at registration.
    pub login_id: String,
    /// The login fields given at registration, secrets unsealed. Its `Debug` shows only
    /// the field names.
    pub fields: FormValues,
    /// The bridge's own metadata for this login.
    pub metadata: serde_json::Value,
    /// The user's settings per service, by service name, secrets unsealed.
    pub services: BTreeMap<String, FormValues>,
    /// When the login was first saved, in unix milliseconds.
    pub created_at_ms: i64,
}

impl LoginRow {
    /// The login as handed back to its bridge to bring the client up, with its state store.
    pub fn into_stored(self, store: estuary_bridge_api::LoginStore) -> StoredLogin {
        StoredLogin {
            id: LoginId::new(self.login_id),
            user: User { jid: self.user },
            fields: self.fields,
            metadata: self.metadata,
            services: self.services,
            store,
        }
    }
}

/// Values split into the clear and the sealed ones.
#[derive(Default, Serialize, Deserialize)]
struct SealedValues {
    #[serde(default)]
    clear: BTreeMap<String, String>,
    #[serde(default)]
    sealed: BTreeMap<String, String>,
}

/// The `logins.fields` column.
#[derive(Default, Serialize, Deserialize)]
struct StoredFields {
    #[serde(flatten)]
    login: SealedValues,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    services: BTreeMap<String, SealedValues>,
}

/// The `logins.fields` text of a login without fields (what [`StoredFields::default`]
/// serializes to), for automatic logins written behind.
pub(super) const EMPTY_FIELDS: &str = r#"{"clear":{},"sealed":{}}"#;

/// The associated data a sealed field is bound to.
fn seal_context(bridge: &str, user: &str, var: &str) -> Vec<u8> {
    format!("estuary login field\0{bridge}\0{user}\0{var}").into_bytes()
}

/// The associated data a sealed service setting is bound to.
fn service_seal_context(bridge: &str, user: &str, service: &str, var: &str) -> Vec<u8> {
    format!("estuary service setting\0{bridge}\0{user}\0{service}\0{var}").into_bytes()
}

/// The associated data a sealed metadata value is bound to.
fn metadata_seal_context(bridge: &str, user: &str, key: &str) -> Vec<u8> {
    format!("estuary login metadata\0{bridge}\0{user}\0{key}").into_bytes()
}

/// `SELECT` of the columns [`Database::login_from_row`] reads, followed by the rest.
macro_rules! select_logins {
    ($rest:literal) => {
        concat!(
            "SELECT bridge, user_jid, login_id, fields, metadata, created_at_ms FROM logins ",
            $rest
        )
    };
}

impl Database {
    /// Saves the login of `user` on `bridge`, replacing any previous one (its creation
    /// time is kept). Fields named in `secret_vars` are sealed, the others stored clear.
    /// The user is recorded too.
    #[tracing::instrument(name = "db.logins.save", skip_all, err)]
    pub async fn save_login(
        &self,
        bridge: &str,
        user: &str,
        login_id: &str,
        fields: &FormValues,
        secret_vars: &[String],
        metadata: &serde_json::Value,
    ) -> Result<(), DbError> {
        let mut stored = StoredFields::default();
        for (var, value) in &fields.0 {
            if secret_vars.iter().any(|s| s == var) {
                let sealed = self.key.seal_with(value, &seal_context(bridge, user, var));
                stored.login.sealed.insert(var.clone(), sealed);
            } else {
                stored.login.clear.insert(var.clone(), value.clone());
            }
        }
        let metadata_json = self.seal_metadata(bridge, user, metadata)?;
        let now = now_ms();

        // An automatic login still queued is written first, so that this replaces it.
        self.settle().await;
        let mut tx = self.pool.begin().await?;
        // The service settings are kept as they are (still sealed).
        let old: Option<String> =
            sqlx::query_scalar("SELECT fields FROM logins WHERE bridge = $1 AND user_jid = $2")
                .bind(bridge)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(old) = old {
            let old: StoredFields =
                serde_json::from_str(&old).map_err(|source| DbError::Corrupt {
                    table: "logins",
                    column: "fields",
                    key: format!("{bridge}/{user}"),
                    source,
                })?;
            stored.services = old.services;
        }
        let fields_json = serde_json::to_string(&stored).map_err(|source| DbError::Encode {
            what: "login fields",
            source,
        })?;
        super::users::insert_user(&mut *tx, user, now).await?;
        sqlx::query(
            "INSERT INTO logins \
               (bridge, user_jid, login_id, fields, metadata, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (bridge, user_jid) DO UPDATE SET \
               login_id = excluded.login_id, fields = excluded.fields, \
               metadata = excluded.metadata, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(bridge)
        .bind(user)
        .bind(login_id)
        .bind(fields_json)
        .bind(metadata_json)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that `user` uses `bridge` without registering (a login with no fields and no
    /// metadata), unless the user has a login there already. Written behind: the join that
    /// asks for it does not wait for the database, and every later read or change of the
    /// user's login sees it.
    pub async fn save_automatic_login(
        &self,
        bridge: &str,
        user: &str,
        login_id: &str,
    ) -> Result<(), DbError> {
        self.write_later(super::Write::AutoLogin {
            bridge: bridge.to_owned(),
            user: user.to_owned(),
            login_id: login_id.to_owned(),
        })
        .await?;
        Ok(())
    }

    /// The login of `user` on `bridge`, if any, with its secrets unsealed.
    #[tracing::instrument(name = "db.logins.get", skip_all, err)]
    pub async fn get_login(&self, bridge: &str, user: &str) -> Result<Option<LoginRow>, DbError> {
        self.settle().await;
        let row = sqlx::query(select_logins!("WHERE bridge = $1 AND user_jid = $2"))
            .bind(bridge)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| self.login_from_row(&row)).transpose()
    }

    /// Every login on `bridge`, in user order, with their secrets unsealed.
    ///
    /// One login that cannot be read fails the whole call: the error names it.
    #[tracing::instrument(name = "db.logins.list", skip_all, err)]
    pub async fn list_logins(&self, bridge: &str) -> Result<Vec<LoginRow>, DbError> {
        self.settle().await;
        let rows = sqlx::query(select_logins!("WHERE bridge = $1 ORDER BY user_jid"))
            .bind(bridge)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| self.login_from_row(row)).collect()
    }

    /// Every login on `bridge`, in user order, each read on its own: a login that cannot
    /// be unsealed or parsed is an `Err` in its place and the others still come back. For
    /// bringing clients up at start, where one bad login must not keep the rest down.
    #[tracing::instrument(name = "db.logins.list_each", skip_all, err)]
    pub async fn list_logins_each(
        &self,
        bridge: &str,
    ) -> Result<Vec<Result<LoginRow, DbError>>, DbError> {
        self.settle().await;
        let rows = sqlx::query(select_logins!("WHERE bridge = $1 ORDER BY user_jid"))
            .bind(bridge)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|row| self.login_from_row(row)).collect())
    }

    /// Replaces (`Some`) or forgets (`None`) the settings of `user` for `service` on
    /// `bridge`; fields named in `secret_vars` are sealed. Returns whether settings for
    /// that service were stored before.
    ///
    /// Fails with [`DbError::NotFound`] if the user has no login on the bridge.
    #[tracing::instrument(name = "db.logins.save_service", skip_all, err)]
    pub async fn save_service_settings(
        &self,
        bridge: &str,
        user: &str,
        service: &str,
        settings: Option<&FormValues>,
        secret_vars: &[String],
    ) -> Result<bool, DbError> {
        self.settle().await;
        let mut tx = self.pool.begin().await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT fields FROM logins WHERE bridge = $1 AND user_jid = $2")
                .bind(bridge)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(old) = old else {
            return Err(DbError::NotFound(format!("login of {user} on {bridge}")));
        };
        let mut stored: StoredFields =
            serde_json::from_str(&old).map_err(|source| DbError::Corrupt {
                table: "logins",
                column: "fields",
                key: format!("{bridge}/{user}"),
                source,
            })?;
        let existed = match settings {
            None => stored.services.remove(service).is_some(),
            Some(values) => {
                let mut sealed = SealedValues::default();
                for (var, value) in values.0.iter().filter(|(_, v)| !v.is_empty()) {
                    if secret_vars.iter().any(|s| s == var) {
                        let context = service_seal_context(bridge, user, service, var);
                        sealed
                            .sealed
                            .insert(var.clone(), self.key.seal_with(value, &context));
                    } else {
                        sealed.clear.insert(var.clone(), value.clone());
                    }
                }
                stored.services.insert(service.to_owned(), sealed).is_some()
            }
        };
        let fields_json = serde_json::to_string(&stored).map_err(|source| DbError::Encode {
            what: "login fields",
            source,
        })?;
        sqlx::query(
            "UPDATE logins SET fields = $3, updated_at_ms = $4 \
             WHERE bridge = $1 AND user_jid = $2",
        )
        .bind(bridge)
        .bind(user)
        .bind(fields_json)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed)
    }

    /// Replaces the bridge metadata of the login of `user` on `bridge`.
    ///
    /// Fails with [`DbError::NotFound`] if there is no such login.
    #[tracing::instrument(name = "db.logins.set_metadata", skip_all, err)]
    pub async fn set_login_metadata(
        &self,
        bridge: &str,
        user: &str,
        metadata: &serde_json::Value,
    ) -> Result<(), DbError> {
        let metadata_json = self.seal_metadata(bridge, user, metadata)?;
        self.settle().await;
        let done = sqlx::query(
            "UPDATE logins SET metadata = $3, updated_at_ms = $4 \
             WHERE bridge = $1 AND user_jid = $2",
        )
        .bind(bridge)
        .bind(user)
        .bind(metadata_json)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound(format!("login of {user} on {bridge}")));
        }
        Ok(())
    }

    /// Deletes the login of `user` on `bridge` together with that user's contacts, rooms,
    /// message map and archive on that bridge, all or nothing. Returns whether a login
    /// existed.
    #[tracing::instrument(name = "db.logins.delete", skip_all, err)]
    pub async fn delete_login(&self, bridge: &str, user: &str) -> Result<bool, DbError> {
        // Rows queued for the archive and the message map must not land after the delete.
        self.settle().await;
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM logins WHERE bridge = $1 AND user_jid = $2")
            .bind(bridge)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for statement in [
            "DELETE FROM contacts WHERE bridge = $1 AND user_jid = $2",
            "DELETE FROM rooms WHERE bridge = $1 AND user_jid = $2",
            "DELETE FROM message_map WHERE bridge = $1 AND user_jid = $2",
            "DELETE FROM archive WHERE bridge = $1 AND user_jid = $2",
            "DELETE FROM profiles WHERE bridge = $1 AND user_jid = $2",
            "DELETE FROM login_state WHERE bridge = $1 AND user_jid = $2",
            "DELETE FROM login_dirs WHERE bridge = $1 AND user_jid = $2",
        ] {
            sqlx::query(statement)
                .bind(bridge)
                .bind(user)
                .execute(&mut *tx)
                .await?;
        }
        // Pictures only this user's contacts and rooms showed (not one stored in the last
        // minute: another user's profile may be about to name it).
        sqlx::query(
            "DELETE FROM avatars WHERE stored_at_ms < $1 AND NOT EXISTS \
             (SELECT 1 FROM profiles WHERE profiles.avatar_hash = avatars.hash)",
        )
        .bind(super::now_ms() - 60_000)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// The metadata's JSON text as stored: every value under [`SEALED_METADATA_KEY`]
    /// sealed.
    fn seal_metadata(
        &self,
        bridge: &str,
        user: &str,
        metadata: &serde_json::Value,
    ) -> Result<String, DbError> {
        let encode = |source| DbError::Encode {
            what: "login metadata",
            source,
        };
        let mut stored = metadata.clone();
        if let Some(serde_json::Value::Object(secrets)) = stored.get_mut(SEALED_METADATA_KEY) {
            for (key, value) in secrets.iter_mut() {
                let text = serde_json::to_string(value).map_err(encode)?;
                let sealed = self
                    .key
                    .seal_with(&text, &metadata_seal_context(bridge, user, key));
                *value = serde_json::Value::String(sealed);
            }
        }
        serde_json::to_string(&stored).map_err(encode)
    }

    /// The metadata as read back: the values under [`SEALED_METADATA_KEY`] opened.
    fn open_metadata(
        &self,
        bridge: &str,
        user: &str,
        mut metadata: serde_json::Value,
    ) -> Result<serde_json::Value, DbError> {
        let Some(serde_json::Value::Object(secrets)) = metadata.get_mut(SEALED_METADATA_KEY) else {
            return Ok(metadata);
        };
        for (key, value) in secrets.iter_mut() {
            let seal_error = |source| DbError::Seal {
                bridge: bridge.to_owned(),
                user: user.to_owned(),
                var: format!("metadata {SEALED_METADATA_KEY}.{key}"),
                source,
            };
            let sealed = value
                .as_str()
                .ok_or_else(|| seal_error(SealError::UnknownFormat))?;
            let text = self
                .key
                .open_with(sealed, &metadata_seal_context(bridge, user, key))
                .map_err(seal_error)?;
            *value = serde_json::from_str(&text).map_err(|source| DbError::Corrupt {
                table: "logins",
                column: "metadata",
                key: format!("{bridge}/{user}"),
                source,
            })?;
        }
        Ok(metadata)
    }

    fn login_from_row(&self, row: &AnyRow) -> Result<LoginRow, DbError> {
        let bridge: String = row.try_get("bridge")?;
        let user: String = row.try_get("user_jid")?;
        let corrupt = |column, source| DbError::Corrupt {
            table: "logins",
            column,
            key: format!("{bridge}/{user}"),
            source,
        };
        let stored: StoredFields = serde_json::from_str(&row.try_get::<String, _>("fields")?)
            .map_err(|e| corrupt("fields", e))?;
        let metadata = serde_json::from_str(&row.try_get::<String, _>("metadata")?)
            .map_err(|e| corrupt("metadata", e))?;
        let metadata = self.open_metadata(&bridge, &user, metadata)?;

        let mut fields = FormValues(stored.login.clear);
        for (var, sealed) in stored.login.sealed {
            let value = self
                .key
                .open_with(&sealed, &seal_context(&bridge, &user, &var))
                .map_err(|source| DbError::Seal {
                    bridge: bridge.clone(),
                    user: user.clone(),
                    var: var.clone(),
                    source,
                })?;
            fields.set(var, value);
        }
        let mut services = BTreeMap::new();
        for (service, values) in stored.services {
            let mut open = FormValues(values.clear);
            for (var, sealed) in values.sealed {
                let context = service_seal_context(&bridge, &user, &service, &var);
                let value =
                    self.key
                        .open_with(&sealed, &context)
                        .map_err(|source| DbError::Seal {
                            bridge: bridge.clone(),
                            user: user.clone(),
                            var: format!("{service}/{var}"),
                            source,
                        })?;
                open.set(var, value);
            }
            services.insert(service, open);
        }
        Ok(LoginRow {
            services,
            login_id: row.try_get("login_id")?,
            created_at_ms: row.try_get("created_at_ms")?,
            fields,
            metadata,
            bridge,
            user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_what_a_login_without_fields_stores() {
        let stored = serde_json::to_string(&StoredFields::default()).unwrap();
        assert_eq!(EMPTY_FIELDS, stored);
    }
}
