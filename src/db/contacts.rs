//! `contacts`: the foreign people known to a user on a bridge.

use super::{Database, DbError, now_ms};
use sqlx::Row as _;

/// A foreign person known to a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactRow {
    /// The person's id on the foreign network, as the bridge minted it.
    pub remote_id: String,
    /// Their display name, if known.
    pub name: Option<String>,
}

impl Database {
    /// Records that `user` knows `remote_id` on `bridge`. A name given replaces the stored
    /// one; `None` keeps it. Returns `true` if the contact was not known before (the core
    /// then adds it to the user's roster).
    #[tracing::instrument(name = "db.contacts.upsert", skip_all, err)]
    pub async fn upsert_contact(
        &self,
        bridge: &str,
        user: &str,
        remote_id: &str,
        name: Option<&str>,
    ) -> Result<bool, DbError> {
        let inserted = sqlx::query(
            "INSERT INTO contacts (bridge, user_jid, remote_id, name, added_at_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (bridge, user_jid, remote_id) DO NOTHING",
        )
        .bind(bridge)
        .bind(user)
        .bind(remote_id)
        .bind(name)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0;
        if !inserted && let Some(name) = name {
            sqlx::query(
                "UPDATE contacts SET name = $4 \
                 WHERE bridge = $1 AND user_jid = $2 AND remote_id = $3",
            )
            .bind(bridge)
            .bind(user)
            .bind(remote_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        }
        Ok(inserted)
    }

    /// The contacts of `user` on `bridge`, in id order.
    #[tracing::instrument(name = "db.contacts.list", skip_all, err)]
    pub async fn list_contacts(
        &self,
        bridge: &str,
        user: &str,
    ) -> Result<Vec<ContactRow>, DbError> {
        let rows = sqlx::query(
            "SELECT remote_id, name FROM contacts \
             WHERE bridge = $1 AND user_jid = $2 ORDER BY remote_id",
        )
        .bind(bridge)
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ContactRow {
                    remote_id: row.try_get("remote_id")?,
                    name: row.try_get("name")?,
                })
            })
            .collect()
    }

    /// Whether `user` knows `remote_id` on `bridge`.
    #[tracing::instrument(name = "db.contacts.has", skip_all, err)]
    pub async fn has_contact(
        &self,
        bridge: &str,
        user: &str,
        remote_id: &str,
    ) -> Result<bool, DbError> {
        let row = sqlx::query(
            "SELECT 1 FROM contacts WHERE bridge = $1 AND user_jid = $2 AND remote_id = $3",
        )
        .bind(bridge)
        .bind(user)
        .bind(remote_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Forgets one contact of `user` on `bridge`. Returns whether it was known.
    #[tracing::instrument(name = "db.contacts.delete", skip_all, err)]
    pub async fn delete_contact(
        &self,
        bridge: &str,
        user: &str,
        remote_id: &str,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "DELETE FROM contacts WHERE bridge = $1 AND user_jid = $2 AND remote_id = $3",
        )
        .bind(bridge)
        .bind(user)
        .bind(remote_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
