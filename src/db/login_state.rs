//! Per-login state (`login_state`, `login_dirs`): the bridge's key-value store, sealed at
//! rest, and the opaque ids that name the logins' data directories.
//!
//! A value is bytes: stored as the sealed text ([`SealKey::seal_with`]) of its base64,
//! bound to the bridge, the user and the key, so a value copied into another row does not
//! open. Writes are committed before they return (no write-behind): a bridge that saved a
//! sync token may act on it.

use super::{Database, DbError, now_ms};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use estuary_bridge_api::{StoreBackend, StoreError};
use sqlx::Row as _;

/// What a value is bound to: the same value under another bridge, user or key does not open.
fn context(bridge: &str, user: &str, key: &str) -> Vec<u8> {
    format!("login_state\0{bridge}\0{user}\0{key}").into_bytes()
}

impl Database {
    /// The value `key` of the login of `user` on `bridge`, unsealed.
    pub async fn login_state_get(
        &self,
        bridge: &str,
        user: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, DbError> {
        let row = sqlx::query(
            "SELECT value FROM login_state WHERE bridge = $1 AND user_jid = $2 AND state_key = $3",
        )
        .bind(bridge)
        .bind(user)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealed: String = row.try_get(0)?;
        let seal_error = |source| DbError::Seal {
            bridge: bridge.to_owned(),
            user: user.to_owned(),
            var: format!("login state {key}"),
            source,
        };
        let text = self
            .key
            .open_with(&sealed, &context(bridge, user, key))
            .map_err(seal_error)?;
        BASE64
            .decode(text)
            .map(Some)
            .map_err(|_| seal_error(super::SealError::Malformed("login state is not base64")))
    }

    /// Stores `value` sealed under `key`, replacing any; committed when this returns.
    pub async fn login_state_put(
        &self,
        bridge: &str,
        user: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), DbError> {
        let sealed = self
            .key
            .seal_with(&BASE64.encode(value), &context(bridge, user, key));
        sqlx::query(
            "INSERT INTO login_state (bridge, user_jid, state_key, value, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (bridge, user_jid, state_key) \
             DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(bridge)
        .bind(user)
        .bind(key)
        .bind(sealed)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes `key`; committed when this returns.
    pub async fn login_state_delete(
        &self,
        bridge: &str,
        user: &str,
        key: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "DELETE FROM login_state WHERE bridge = $1 AND user_jid = $2 AND state_key = $3",
        )
        .bind(bridge)
        .bind(user)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How many state values the login of `user` on `bridge` holds.
    pub async fn count_login_state(&self, bridge: &str, user: &str) -> Result<i64, DbError> {
        let row =
            sqlx::query("SELECT COUNT(*) FROM login_state WHERE bridge = $1 AND user_jid = $2")
                .bind(bridge)
                .bind(user)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// The opaque id naming the data directory of the login of `user` on `bridge`, minted
    /// (random) on first call.
    pub async fn login_dir_id(&self, bridge: &str, user: &str) -> Result<String, DbError> {
        if let Some(id) = self.existing_login_dir_id(bridge, user).await? {
            return Ok(id);
        }
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(
            "INSERT INTO login_dirs (bridge, user_jid, dir_id) VALUES ($1, $2, $3) \
             ON CONFLICT (bridge, user_jid) DO NOTHING",
        )
        .bind(bridge)
        .bind(user)
        .bind(&fresh)
        .execute(&self.pool)
        .await?;
        // Another task may have minted one first: theirs stands.
        self.existing_login_dir_id(bridge, user)
            .await?
            .ok_or_else(|| DbError::NotFound(format!("login directory of {user} on {bridge}")))
    }

    /// The data directory id of the login, if one was minted.
    pub async fn existing_login_dir_id(
        &self,
        bridge: &str,
        user: &str,
    ) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT dir_id FROM login_dirs WHERE bridge = $1 AND user_jid = $2")
            .bind(bridge)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }
}

/// The [`StoreBackend`] of one login: the database, values sealed.
pub struct DbStore {
    db: Database,
    bridge: String,
    user: String,
}

impl DbStore {
    /// The store of the login of `user` on `bridge`.
    pub fn new(db: Database, bridge: &str, user: &str) -> Self {
        Self {
            db,
            bridge: bridge.to_owned(),
            user: user.to_owned(),
        }
    }
}

fn unavailable(e: DbError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl StoreBackend for DbStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .login_state_get(&self.bridge, &self.user, key)
            .await
            .map_err(unavailable)
    }
    async fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db
            .login_state_put(&self.bridge, &self.user, key, value)
            .await
            .map_err(unavailable)
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.db
            .login_state_delete(&self.bridge, &self.user, key)
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::SealKey;

    async fn db() -> Database {
        Database::connect("sqlite::memory:", SealKey::generate())
            .await
            .expect("opens")
    }

    #[tokio::test]
    async fn values_are_sealed_and_bound_to_their_row() {
        let db = db().await;
        db.login_state_put("fake", "a@x", "token", b"clear-secret-123")
            .await
            .unwrap();
        let stored: String = sqlx::query("SELECT value FROM login_state")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get(0);
        assert!(stored.starts_with("v1:"), "{stored}");
        assert!(!stored.contains("clear-secret"));
        assert!(!stored.contains(&BASE64.encode(b"clear-secret-123")));
        // Copied to another key, it does not open.
        sqlx::query(
            "INSERT INTO login_state (bridge, user_jid, state_key, value, updated_at_ms) \
             VALUES ('fake', 'a@x', 'other', $1, 0)",
        )
        .bind(&stored)
        .execute(db.pool())
        .await
        .unwrap();
        assert!(matches!(
            db.login_state_get("fake", "a@x", "other").await,
            Err(DbError::Seal { .. })
        ));
        assert_eq!(
            db.login_state_get("fake", "a@x", "token").await.unwrap(),
            Some(b"clear-secret-123".to_vec())
        );
    }

    #[tokio::test]
    async fn dir_ids_are_opaque_stable_and_distinct() {
        let db = db().await;
        let a = db.login_dir_id("fake", "alice@x").await.unwrap();
        assert_eq!(db.login_dir_id("fake", "alice@x").await.unwrap(), a);
        assert!(!a.contains("alice"));
        assert_eq!(a.len(), 32);
        assert_ne!(db.login_dir_id("irc", "alice@x").await.unwrap(), a);
    }
}
