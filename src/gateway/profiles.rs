//! Names and avatars of contacts and rooms ("profiles"): what the network says of them
//! ([`RemoteEvent::UserInfoChanged`](estuary_bridge_api::RemoteEvent::UserInfoChanged),
//! [`RemoteEvent::RoomInfoChanged`](estuary_bridge_api::RemoteEvent::RoomInfoChanged)),
//! and the answers XMPP clients ask for: vcard-temp on a contact, a room or an occupant,
//! XEP-0084 PEP items on a contact, the hash in presences and in a room's disco#info.
//!
//! Every profile is kept in memory (loaded in one query at start) for the stanzas that
//! carry a hash; the pictures stay in the database, once per SHA-1, and are read only to
//! answer a vCard or a PEP data request.

use super::Gateway;
use super::session::lock;
use crate::db::{AvatarMeta, DbError, ProfileKind, ProfileRow};
use crate::xmpp::avatar::{self as xavatar, PepRequest};
use crate::xmpp::errors;
use crate::xmpp::muc::{self, Occupant};
use estuary_bridge_api::{
    Avatar, AvatarSource, AvatarUpdate, ChatKey, DownloadError, DownloadLimits, RemoteChatId,
    RemoteUserId, Show,
};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Id, Message, MessageType};
use tokio_xmpp::parsers::muc::user::{MucUser, Status};
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tracing::{debug, info, warn};

/// The largest avatar the gateway keeps, in bytes: 128 KiB, about 171 KiB once in base64
/// in a vCard, under the XMPP servers' usual stanza limits (Prosody's c2s default is 256 KiB).
pub const MAX_AVATAR_BYTES: u64 = 128 * 1024;

/// How long downloading an avatar given as a URL may take.
const AVATAR_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an avatar from the network was not taken (the previous one, if any, stays).
#[derive(Debug, thiserror::Error)]
pub enum AvatarError {
    /// Larger than [`MAX_AVATAR_BYTES`].
    #[error("the avatar is {size} bytes or more; the gateway keeps avatars of at most {max} bytes")]
    TooLarge {
        /// Its size (or how much was read before giving up).
        size: u64,
        /// The cap.
        max: u64,
    },
    /// An empty picture.
    #[error("the avatar is empty")]
    Empty,
    /// The URL could not be fetched.
    #[error("the avatar could not be downloaded: {0}")]
    Download(#[from] DownloadError),
    /// The download broke off.
    #[error("reading the avatar failed: {0}")]
    Read(#[from] std::io::Error),
    /// The database refused it.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What the gateway knows of one contact or room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// The display name.
    pub name: Option<String>,
    /// The avatar.
    pub avatar: Option<AvatarMeta>,
    /// The network's fingerprint of the avatar, to skip unchanged ones.
    pub key: Option<String>,
}

/// One user's profiles, and the last presence of each contact (to send again, with the
/// new hash, when an avatar changes).
#[derive(Debug, Default)]
struct UserProfiles {
    entries: HashMap<(ProfileKind, String), Profile>,
    presence: HashMap<String, (Show, Option<String>)>,
}

/// Every user's profiles on one gateway, in memory.
#[derive(Debug, Default)]
pub struct Profiles {
    by_user: Mutex<HashMap<String, UserProfiles>>,
}

impl Profiles {
    /// What is known of a contact or room for `user`.
    pub fn get(&self, user: &str, kind: ProfileKind, id: &str) -> Option<Profile> {
        lock(&self.by_user)
            .get(user)?
            .entries
            .get(&(kind, id.to_owned()))
            .cloned()
    }

    fn set(&self, user: &str, kind: ProfileKind, id: &str, profile: Profile) {
        lock(&self.by_user)
            .entry(user.to_owned())
            .or_default()
            .entries
            .insert((kind, id.to_owned()), profile);
    }

    /// Forgets everything of `user` (unregistered).
    pub fn forget_user(&self, user: &str) {
        lock(&self.by_user).remove(user);
    }

    /// Remembers a contact's last presence (offline forgets it).
    pub fn set_presence(&self, user: &str, contact: &str, show: Show, status: Option<String>) {
        let mut all = lock(&self.by_user);
        if show == Show::Offline {
            if let Some(u) = all.get_mut(user) {
                u.presence.remove(contact);
            }
            return;
        }
        all.entry(user.to_owned())
            .or_default()
            .presence
            .insert(contact.to_owned(), (show, status));
    }

    fn presence(&self, user: &str, contact: &str) -> Option<(Show, Option<String>)> {
        lock(&self.by_user)
            .get(user)?
            .presence
            .get(contact)
            .cloned()
    }

    /// The XEP-0153 element for a contact's presences: its hash, or an empty `<photo/>`
    /// when the network said something of the contact but gave no picture (or removed
    /// it); nothing when the network never said anything of the contact.
    pub fn presence_update(&self, user: &str, contact: &str) -> Option<Element> {
        let p = self.get(user, ProfileKind::Contact, contact)?;
        Some(xavatar::vcard_update(
            p.avatar.as_ref().map(|a| a.hash.as_str()),
        ))
    }
}

impl Gateway {
    /// Loads every stored profile of this bridge into memory.
    pub(super) async fn load_profiles(&self) {
        match self.db.list_profiles(&self.bridge).await {
            Ok(rows) => {
                let n = rows.len();
                for row in rows {
                    self.profiles.set(
                        &row.user,
                        row.kind,
                        &row.remote_id,
                        Profile {
                            name: row.name,
                            avatar: row.avatar,
                            key: row.avatar_key,
                        },
                    );
                }
                debug!(bridge = %self.bridge, profiles = n, "profiles loaded");
            }
            Err(e) => warn!(bridge = %self.bridge, "cannot load names and avatars: {e}"),
        }
    }

    /// The avatar hash of a contact, for an occupant presence or a contact presence.
    pub(super) fn contact_avatar(&self, user: &str, contact: &RemoteUserId) -> Option<String> {
        self.profiles
            .get(user, ProfileKind::Contact, contact.as_str())?
            .avatar
            .map(|a| a.hash)
    }

    /// A contact's or room's name or avatar changed: stores it and tells the user's clients.
    pub(super) async fn profile_changed(
        &self,
        user: &str,
        user_jid: &Jid,
        target: ChatKey,
        name: Option<String>,
        avatar: AvatarUpdate,
    ) {
        let (kind, id) = match &target {
            ChatKey::Direct(u) => (ProfileKind::Contact, u.as_str()),
            ChatKey::Room(r) => (ProfileKind::Room, r.as_str()),
            ChatKey::Service(_) => return,
        };
        let old = self.profiles.get(user, kind, id).unwrap_or_default();
        let mut new = old.clone();
        if let Some(n) = name {
            new.name = Some(n);
        }
        match avatar {
            AvatarUpdate::Unchanged => {}
            AvatarUpdate::Removed => {
                new.avatar = None;
                new.key = None;
            }
            AvatarUpdate::Set(a) => {
                let key = a.change_key().map(str::to_owned);
                if key.is_none() || key != old.key {
                    match self.take_avatar(&a).await {
                        Ok(meta) => {
                            new.key = Some(key.unwrap_or_else(|| meta.hash.clone()));
                            new.avatar = Some(meta);
                        }
                        Err(e) => {
                            warn!(bridge = %self.bridge, user, kind = kind.as_str(), id, "avatar refused, the previous one stays: {e}");
                        }
                    }
                }
            }
        }
        if new == old && self.profiles.get(user, kind, id).is_some() {
            return;
        }
        let row = ProfileRow {
            user: user.to_owned(),
            kind,
            remote_id: id.to_owned(),
            name: new.name.clone(),
            avatar: new.avatar.clone(),
            avatar_key: new.key.clone(),
        };
        let released = old.avatar.as_ref().map(|a| a.hash.as_str());
        if let Err(e) = self.db.save_profile(&self.bridge, &row, released).await {
            warn!(bridge = %self.bridge, user, "cannot store a name or avatar: {e}");
            return;
        }
        self.profiles.set(user, kind, id, new.clone());
        let avatar_changed =
            old.avatar.as_ref().map(|a| &a.hash) != new.avatar.as_ref().map(|a| &a.hash);
        info!(bridge = %self.bridge, user, kind = kind.as_str(), id, avatar_changed, "profile updated");
        if !avatar_changed {
            return;
        }
        match target {
            ChatKey::Direct(contact) => {
                self.tell_contact_avatar(user, user_jid, &contact, new.avatar.as_ref())
                    .await
            }
            ChatKey::Room(room) => self.tell_room_changed(user, &room).await,
            ChatKey::Service(_) => {}
        }
    }

    /// Reads, checks and stores a picture from the network; its metadata.
    async fn take_avatar(&self, avatar: &Avatar) -> Result<AvatarMeta, AvatarError> {
        let (data, media_type) = match &avatar.source {
            AvatarSource::Bytes { data, media_type } => {
                if data.len() as u64 > MAX_AVATAR_BYTES {
                    return Err(AvatarError::TooLarge {
                        size: data.len() as u64,
                        max: MAX_AVATAR_BYTES,
                    });
                }
                (data.clone(), media_type.clone())
            }
            AvatarSource::Url { url, media_type } => {
                let got = estuary_bridge_api::download(
                    &self.outbound,
                    url,
                    DownloadLimits {
                        max_bytes: MAX_AVATAR_BYTES,
                        timeout: AVATAR_DOWNLOAD_TIMEOUT,
                    },
                )
                .await
                .map_err(|e| match e {
                    DownloadError::TooLarge { size, max } => AvatarError::TooLarge { size, max },
                    e => AvatarError::Download(e),
                })?;
                let mut data = Vec::new();
                if let Some(reader) = got.content.take() {
                    reader
                        .take(MAX_AVATAR_BYTES + 1)
                        .read_to_end(&mut data)
                        .await?;
                }
                if data.len() as u64 > MAX_AVATAR_BYTES {
                    return Err(AvatarError::TooLarge {
                        size: data.len() as u64,
                        max: MAX_AVATAR_BYTES,
                    });
                }
                let media_type = media_type
                    .clone()
                    .or(got.media_type)
                    .unwrap_or_else(|| "application/octet-stream".into());
                (data, media_type)
            }
        };
        if data.is_empty() {
            return Err(AvatarError::Empty);
        }
        let meta = AvatarMeta {
            hash: xavatar::sha1_hex(&data),
            media_type,
            size: data.len() as u64,
        };
        self.db.store_avatar(&meta, &data).await?;
        Ok(meta)
    }

    /// A contact's avatar changed: its last presence again with the new hash (XEP-0153),
    /// a XEP-0084 metadata notification, and its presence as an occupant of the rooms the
    /// user is in.
    async fn tell_contact_avatar(
        &self,
        user: &str,
        user_jid: &Jid,
        contact: &RemoteUserId,
        meta: Option<&AvatarMeta>,
    ) {
        let Some(from) = self.chat_jid(&ChatKey::Direct(contact.clone())) else {
            return;
        };
        let bare_user = Jid::from(user_jid.to_bare());
        if let Some((show, status)) = self.profiles.presence(user, contact.as_str())
            && let Some(p) = self.presence_of_contact(user, user_jid, contact, show, status)
        {
            self.send(p).await;
        }
        let mut m = Message::new_with_type(MessageType::Headline, Some(bare_user));
        m.from = Some(Jid::from(from));
        m.id = Some(Id(uuid::Uuid::new_v4().to_string()));
        m.payloads.push(xavatar::metadata_event(meta));
        self.send(m).await;
        self.tell_occupant_avatar(user, contact, meta).await;
    }

    /// The contact's presence in each room the user is in where it is a member, with its
    /// new avatar hash.
    async fn tell_occupant_avatar(
        &self,
        user: &str,
        contact: &RemoteUserId,
        meta: Option<&AvatarMeta>,
    ) {
        let Some(session) = self.session(user) else {
            return;
        };
        let seen: Vec<_> = session
            .rooms()
            .iter()
            .filter(|(_, r)| r.joined)
            .flat_map(|(room, r)| {
                r.members
                    .iter()
                    .filter(|m| m.user.as_ref() == Some(contact) && m.nick != r.nick)
                    .map(|m| (room.clone(), m.clone(), r.resources.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let hash = meta.map(|m| m.hash.as_str());
        for (room, member, resources) in seen {
            let Some(from) = self.occupant_jid(&room, &member.nick) else {
                continue;
            };
            let real = self.member_jid(&member);
            for res in resources.iter() {
                let Ok(to) = Jid::new(res) else { continue };
                let mut p = muc::occupant_presence(&Occupant {
                    from: Some(from.clone()),
                    to: Some(to),
                    role: Some(member.role),
                    affiliation: Some(member.affiliation),
                    jid: real.as_deref(),
                    avatar: hash,
                    ..Default::default()
                });
                if hash.is_none() {
                    p.payloads.push(xavatar::vcard_update(None));
                }
                self.send(p).await;
            }
        }
    }

    /// A room's avatar changed: each joined resource gets status 104 (XEP-0045 §10.2.1:
    /// "the room's configuration changed"), on which clients read disco#info again.
    async fn tell_room_changed(&self, user: &str, room: &RemoteChatId) {
        let Some(session) = self.session(user) else {
            return;
        };
        let resources = match session.rooms().get(room) {
            Some(r) if r.joined => r.resources.clone(),
            _ => return,
        };
        let Some(from) = self.chat_jid(&ChatKey::Room(room.clone())) else {
            return;
        };
        for res in resources.iter() {
            let Ok(to) = Jid::new(res) else { continue };
            let mut m = Message::new_with_type(MessageType::Groupchat, Some(to));
            m.from = Some(Jid::from(from.clone()));
            m.id = Some(Id(uuid::Uuid::new_v4().to_string()));
            m.payloads.push(
                MucUser {
                    status: vec![Status::ConfigNonPrivacyRelated],
                    ..Default::default()
                }
                .into(),
            );
            self.send(m).await;
        }
    }

    /// The vcard-temp of a contact, a room or a room occupant, for `user`.
    pub(super) async fn vcard_answer(
        &self,
        user: &str,
        kind: ProfileKind,
        id: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let Some(profile) = self.profiles.get(user, kind, id) else {
            return Err(errors::item_not_found(format!(
                "the gateway knows no name or picture for {id}"
            )));
        };
        let avatar = match &profile.avatar {
            Some(meta) => self.stored_avatar(&meta.hash).await?,
            None => None,
        };
        Ok(Some(xavatar::vcard(
            profile.name.as_deref(),
            avatar.as_ref(),
        )))
    }

    /// The vcard-temp of `nick` in `room`: that of the member's contact.
    pub(super) async fn occupant_vcard(
        &self,
        user: &str,
        room: &RemoteChatId,
        nick: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let member_user = self.session(user).and_then(|s| {
            s.rooms()
                .get(room)
                .and_then(|r| r.members.get(nick).and_then(|m| m.user.clone()))
        });
        match member_user {
            Some(u) => {
                self.vcard_answer(user, ProfileKind::Contact, u.as_str())
                    .await
            }
            None => Err(errors::item_not_found(format!(
                "{nick} is not in this room, or the network does not say who they are"
            ))),
        }
    }

    /// A XEP-0084 `items` request on a contact's PEP nodes.
    pub(super) async fn pep_answer(
        &self,
        user: &str,
        contact: &RemoteUserId,
        payload: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let request = xavatar::pep_request(payload)
            .map_err(|e| errors::bad_request(format!("malformed pubsub request: {e}")))?;
        let meta = self
            .profiles
            .get(user, ProfileKind::Contact, contact.as_str())
            .and_then(|p| p.avatar);
        let none = || errors::item_not_found(format!("{contact} has no avatar"));
        match request {
            PepRequest::Metadata => Ok(Some(xavatar::metadata_items(&meta.ok_or_else(none)?))),
            PepRequest::Data(id) => {
                let meta = meta.ok_or_else(none)?;
                if id.as_ref().is_some_and(|i| *i != meta.hash) {
                    return Err(errors::item_not_found(format!(
                        "{contact}'s avatar is now {}",
                        meta.hash
                    )));
                }
                let stored = self.stored_avatar(&meta.hash).await?.ok_or_else(none)?;
                Ok(Some(xavatar::data_items(&stored)))
            }
            PepRequest::OtherNode(node) => Err(errors::item_not_found(format!(
                "{contact} publishes no node {node}"
            ))),
            PepRequest::NotItems => Err(errors::service_unavailable(
                "a contact's PEP service only answers items requests for its avatar",
            )),
        }
    }

    async fn stored_avatar(
        &self,
        hash: &str,
    ) -> Result<Option<crate::db::StoredAvatar>, StanzaError> {
        self.db.get_avatar(hash).await.map_err(|e| {
            warn!(bridge = %self.bridge, "cannot read an avatar: {e}");
            errors::internal("the gateway cannot read the picture now")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(hash: &str) -> AvatarMeta {
        AvatarMeta {
            hash: hash.into(),
            media_type: "image/png".into(),
            size: 3,
        }
    }

    #[test]
    fn presence_update_says_nothing_for_unknown_contacts_and_none_after_removal() {
        let p = Profiles::default();
        let (u, c) = ("u@example.org", "alice");
        assert_eq!(p.presence_update(u, c), None, "never heard of: no <x/>");
        let hash = "a9993e364706816aba3e25717850c26c9cd0d89d";
        p.set(
            u,
            ProfileKind::Contact,
            c,
            Profile {
                avatar: Some(meta(hash)),
                ..Profile::default()
            },
        );
        let x = String::from(&p.presence_update(u, c).expect("an <x/>"));
        assert!(x.contains(hash), "{x}");
        p.set(u, ProfileKind::Contact, c, Profile::default());
        let x = String::from(&p.presence_update(u, c).expect("an <x/>"));
        assert!(x.contains("<photo/>"), "removed: an empty photo, {x}");
        // A room's profile is not a contact's.
        assert_eq!(p.presence_update(u, "#room"), None);
        p.set(u, ProfileKind::Room, "#room", Profile::default());
        assert_eq!(p.presence_update(u, "#room"), None);
    }

    #[test]
    fn presences_are_remembered_until_offline_and_users_are_forgotten() {
        let p = Profiles::default();
        let u = "u@example.org";
        p.set_presence(u, "bob", Show::Away, Some("lunch".into()));
        assert_eq!(
            p.presence(u, "bob"),
            Some((Show::Away, Some("lunch".into())))
        );
        p.set_presence(u, "bob", Show::Offline, None);
        assert_eq!(p.presence(u, "bob"), None);
        p.set_presence(u, "bob", Show::Available, None);
        p.set(u, ProfileKind::Contact, "bob", Profile::default());
        p.forget_user(u);
        assert_eq!(p.presence(u, "bob"), None);
        assert_eq!(p.get(u, ProfileKind::Contact, "bob"), None);
    }

    #[test]
    fn the_oversize_error_names_the_cap() {
        let e = AvatarError::TooLarge {
            size: MAX_AVATAR_BYTES + 1,
            max: MAX_AVATAR_BYTES,
        };
        assert_eq!(
            e.to_string(),
            "the avatar is 131073 bytes or more; the gateway keeps avatars of at most 131072 bytes"
        );
    }
}
