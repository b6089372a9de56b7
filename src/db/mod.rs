//! TEMPORARY signature stub, replaced by the db branch. Not committed.
#![allow(missing_docs, unused)]
use estuary_bridge_api::FormValues;
#[derive(Debug, thiserror::Error)]
#[error("db")]
pub struct DbError;
#[derive(Clone)]
pub struct Database;
pub struct SealKey;
impl SealKey {
    pub fn from_base64(s: &str) -> Result<SealKey, DbError> {
        todo!()
    }
    pub fn load_or_create(p: &std::path::Path) -> Result<SealKey, DbError> {
        todo!()
    }
}
pub struct LoginRow {
    pub bridge: String,
    pub user: String,
    pub login_id: String,
    pub fields: FormValues,
    pub metadata: serde_json::Value,
    pub created_at_ms: i64,
}
pub struct ContactRow {
    pub remote_id: String,
    pub name: Option<String>,
}
pub struct RoomRow {
    pub room_id: String,
    pub nick: String,
}
pub struct ArchivedMessage {
    pub stanza_id: String,
    pub from_nick: String,
    pub body: String,
    pub at_ms: i64,
    pub remote_id: Option<String>,
}
#[derive(Default)]
pub struct ArchiveQuery {
    pub after_id: Option<String>,
    pub before_id: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub with_nick: Option<String>,
    pub limit: i64,
    pub last_page: bool,
}
pub struct ArchivePage {
    pub messages: Vec<ArchivedMessage>,
    pub complete: bool,
}
impl Database {
    pub async fn connect(url: &str, key: SealKey) -> Result<Database, DbError> {
        todo!()
    }
    pub async fn upsert_user(&self, user: &str) -> Result<(), DbError> {
        todo!()
    }
    pub async fn list_users(&self) -> Result<Vec<String>, DbError> {
        todo!()
    }
    pub async fn save_login(
        &self,
        bridge: &str,
        user: &str,
        login_id: &str,
        fields: &FormValues,
        secret_vars: &[String],
        metadata: &serde_json::Value,
    ) -> Result<(), DbError> {
        todo!()
    }
    pub async fn get_login(&self, bridge: &str, user: &str) -> Result<Option<LoginRow>, DbError> {
        todo!()
    }
    pub async fn list_logins(&self, bridge: &str) -> Result<Vec<LoginRow>, DbError> {
        todo!()
    }
    pub async fn set_login_metadata(
        &self,
        bridge: &str,
        user: &str,
        metadata: &serde_json::Value,
    ) -> Result<(), DbError> {
        todo!()
    }
    pub async fn delete_login(&self, bridge: &str, user: &str) -> Result<bool, DbError> {
        todo!()
    }
    pub async fn upsert_contact(
        &self,
        bridge: &str,
        user: &str,
        remote_id: &str,
        name: Option<&str>,
    ) -> Result<bool, DbError> {
        todo!()
    }
    pub async fn list_contacts(
        &self,
        bridge: &str,
        user: &str,
    ) -> Result<Vec<ContactRow>, DbError> {
        todo!()
    }
    pub async fn save_room(
        &self,
        bridge: &str,
        user: &str,
        room_id: &str,
        nick: &str,
    ) -> Result<(), DbError> {
        todo!()
    }
    pub async fn delete_room(
        &self,
        bridge: &str,
        user: &str,
        room_id: &str,
    ) -> Result<(), DbError> {
        todo!()
    }
    pub async fn list_rooms(&self, bridge: &str, user: &str) -> Result<Vec<RoomRow>, DbError> {
        todo!()
    }
    pub async fn map_message(
        &self,
        bridge: &str,
        user: &str,
        chat: &str,
        xmpp_id: &str,
        remote_id: &str,
    ) -> Result<(), DbError> {
        todo!()
    }
    pub async fn remote_id_for(
        &self,
        bridge: &str,
        user: &str,
        chat: &str,
        xmpp_id: &str,
    ) -> Result<Option<String>, DbError> {
        todo!()
    }
    pub async fn xmpp_id_for(
        &self,
        bridge: &str,
        user: &str,
        chat: &str,
        remote_id: &str,
    ) -> Result<Option<String>, DbError> {
        todo!()
    }
    pub async fn archive_append(
        &self,
        bridge: &str,
        user: &str,
        room: &str,
        msg: &ArchivedMessage,
    ) -> Result<(), DbError> {
        todo!()
    }
    pub async fn archive_query(
        &self,
        bridge: &str,
        user: &str,
        room: &str,
        q: &ArchiveQuery,
    ) -> Result<ArchivePage, DbError> {
        todo!()
    }
    pub async fn push_outbound(&self, bridge: &str, stanza: &str) -> Result<(), DbError> {
        todo!()
    }
    pub async fn peek_outbound(
        &self,
        bridge: &str,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, DbError> {
        todo!()
    }
    pub async fn delete_outbound(&self, bridge: &str, up_to_seq: i64) -> Result<(), DbError> {
        todo!()
    }
    pub async fn count_outbound(&self, bridge: &str) -> Result<i64, DbError> {
        todo!()
    }
}
