//! `profiles` and `avatars`: the names and pictures of contacts and rooms.
//!
//! A picture is stored once, by the SHA-1 of its bytes, whoever shows it; a profile row
//! (per bridge, user, kind and foreign id) names it. The bytes are kept as base64 text,
//! which both backends store alike and which vcard-temp and XEP-0084 send as is.

use super::{Database, DbError, now_ms};
use base64::Engine as _;
use sqlx::Row as _;

/// What a profile row describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileKind {
    /// A contact (a foreign person), also as a room occupant.
    Contact,
    /// A room.
    Room,
}

impl ProfileKind {
    /// The value of the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Contact => "contact",
            ProfileKind::Room => "room",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "contact" => Some(ProfileKind::Contact),
            "room" => Some(ProfileKind::Room),
            _ => None,
        }
    }
}

/// What is known of an avatar without its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvatarMeta {
    /// The SHA-1 of the bytes, lowercase hex.
    pub hash: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A stored avatar with its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAvatar {
    /// Hash, type and size.
    pub meta: AvatarMeta,
    /// The image.
    pub data: Vec<u8>,
}

/// One profile row, with its avatar's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileRow {
    /// The user (bare JID) whose login said it.
    pub user: String,
    /// Contact or room.
    pub kind: ProfileKind,
    /// The contact's or room's foreign id.
    pub remote_id: String,
    /// The display name.
    pub name: Option<String>,
    /// The avatar, if any.
    pub avatar: Option<AvatarMeta>,
    /// The network's fingerprint of the avatar (see `estuary_bridge_api::Avatar::hash`).
    pub avatar_key: Option<String>,
}

impl Database {
    /// Stores a picture under its hash, unless it is already there (its bytes then are the
    /// same: the hash is theirs).
    #[tracing::instrument(name = "db.avatars.store", skip_all, err)]
    pub async fn store_avatar(&self, meta: &AvatarMeta, data: &[u8]) -> Result<(), DbError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(data);
        sqlx::query(
            "INSERT INTO avatars (hash, media_type, size, data, stored_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&meta.hash)
        .bind(&meta.media_type)
        .bind(i64::try_from(meta.size).unwrap_or(i64::MAX))
        .bind(encoded)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The picture stored under `hash`, if any.
    #[tracing::instrument(name = "db.avatars.get", skip_all, err)]
    pub async fn get_avatar(&self, hash: &str) -> Result<Option<StoredAvatar>, DbError> {
        let row = sqlx::query("SELECT media_type, size, data FROM avatars WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let encoded: String = row.try_get("data")?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|source| DbError::CorruptAvatar {
                hash: hash.to_owned(),
                source,
            })?;
        let size: i64 = row.try_get("size")?;
        Ok(Some(StoredAvatar {
            meta: AvatarMeta {
                hash: hash.to_owned(),
                media_type: row.try_get("media_type")?,
                size: u64::try_from(size).unwrap_or(0),
            },
            data,
        }))
    }

    /// Writes a profile row (created or replaced whole), then deletes the picture `released`
    /// (the one the row named before) if no profile names it any more.
    #[tracing::instrument(name = "db.profiles.save", skip_all, err)]
    pub async fn save_profile(
        &self,
        bridge: &str,
        row: &ProfileRow,
        released: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO profiles \
             (bridge, user_jid, kind, remote_id, name, avatar_hash, avatar_key, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (bridge, user_jid, kind, remote_id) DO UPDATE SET \
             name = excluded.name, avatar_hash = excluded.avatar_hash, \
             avatar_key = excluded.avatar_key, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(bridge)
        .bind(&row.user)
        .bind(row.kind.as_str())
        .bind(&row.remote_id)
        .bind(row.name.as_deref())
        .bind(row.avatar.as_ref().map(|a| a.hash.as_str()))
        .bind(row.avatar_key.as_deref())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if let Some(old) = released
            && row.avatar.as_ref().is_none_or(|a| a.hash != old)
        {
            sqlx::query(
                "DELETE FROM avatars WHERE hash = $1 \
                 AND NOT EXISTS (SELECT 1 FROM profiles WHERE avatar_hash = $1)",
            )
            .bind(old)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Every profile of `bridge`, with its avatar's metadata (the gateway keeps them in
    /// memory: one query at start).
    #[tracing::instrument(name = "db.profiles.list", skip_all, err)]
    pub async fn list_profiles(&self, bridge: &str) -> Result<Vec<ProfileRow>, DbError> {
        let rows = sqlx::query(
            "SELECT p.user_jid, p.kind, p.remote_id, p.name, p.avatar_hash, p.avatar_key, \
             a.media_type, a.size FROM profiles p LEFT JOIN avatars a ON a.hash = p.avatar_hash \
             WHERE p.bridge = $1 ORDER BY p.user_jid, p.kind, p.remote_id",
        )
        .bind(bridge)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let Some(kind) = ProfileKind::parse(&kind) else {
                continue;
            };
            let hash: Option<String> = row.try_get("avatar_hash")?;
            let media_type: Option<String> = row.try_get("media_type")?;
            let size: Option<i64> = row.try_get("size")?;
            let avatar = match (hash, media_type, size) {
                (Some(hash), Some(media_type), Some(size)) => Some(AvatarMeta {
                    hash,
                    media_type,
                    size: u64::try_from(size).unwrap_or(0),
                }),
                _ => None,
            };
            out.push(ProfileRow {
                user: row.try_get("user_jid")?,
                kind,
                remote_id: row.try_get("remote_id")?,
                name: row.try_get("name")?,
                avatar,
                avatar_key: row.try_get("avatar_key")?,
            });
        }
        Ok(out)
    }
}
