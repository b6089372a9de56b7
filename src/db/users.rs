//! `users`: the XMPP accounts (bare JIDs) that use the gateway.

use super::{Database, DbError, now_ms};
use sqlx::Row as _;

impl Database {
    /// Records `user` (a bare JID) if it is not known yet.
    #[tracing::instrument(name = "db.users.upsert", skip_all, err)]
    pub async fn upsert_user(&self, user: &str) -> Result<(), DbError> {
        insert_user(&self.pool, user, now_ms()).await
    }

    /// Every known user, in JID order.
    #[tracing::instrument(name = "db.users.list", skip_all, err)]
    pub async fn list_users(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT jid FROM users ORDER BY jid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }
}

/// Records `user` (a bare JID, first seen at `now_ms`) if it is not known yet, on `db`: the
/// pool, or the transaction that saves the user's login.
pub(super) async fn insert_user<'c, E>(db: E, user: &str, now_ms: i64) -> Result<(), DbError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO users (jid, created_at_ms) VALUES ($1, $2) \
         ON CONFLICT (jid) DO NOTHING",
    )
    .bind(user)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(())
}
