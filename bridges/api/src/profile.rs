//! Names and pictures of contacts and rooms: what a bridge says about them.
//!
//! A bridge reports a contact's display name and avatar with
//! [`RemoteEvent::UserInfoChanged`](crate::RemoteEvent::UserInfoChanged), a room's with
//! [`RemoteEvent::RoomInfoChanged`](crate::RemoteEvent::RoomInfoChanged). The core keeps each
//! picture once (by the SHA-1 of its bytes), shows it to XMPP clients (vcard-temp, XEP-0153,
//! XEP-0084, XEP-0486) and tells them when it changes.

/// What became of an avatar.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AvatarUpdate {
    /// Nothing to say: the avatar stays as it was (the event is about the name only).
    #[default]
    Unchanged,
    /// The contact or room has no picture any more.
    Removed,
    /// The picture is now this one.
    Set(Avatar),
}

/// A picture, with the network's fingerprint of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Avatar {
    /// The network's fingerprint of the picture: a hash, or any id that changes whenever the
    /// picture does (a Matrix `mxc://` URI, a file id). When it is the one the core saw
    /// last for this contact or room, the core neither downloads nor stores anything again.
    /// `None`: the core compares the bytes' SHA-1 (or, for a URL, the URL).
    pub hash: Option<String>,
    /// Where the bytes are.
    pub source: AvatarSource,
}

/// Where an avatar's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AvatarSource {
    /// The bridge has the bytes.
    Bytes {
        /// The image, as the network gave it.
        data: Vec<u8>,
        /// Its media type (`image/png`).
        media_type: String,
    },
    /// The core downloads the picture from here (bounded in size and time, within the
    /// gateway's outbound address policy).
    Url {
        /// An `http`/`https` URL the gateway may fetch without credentials.
        url: String,
        /// The media type, where the network says; else the server's `Content-Type`.
        media_type: Option<String>,
    },
}

impl Avatar {
    /// A picture the bridge holds, without a network fingerprint.
    pub fn from_bytes(data: impl Into<Vec<u8>>, media_type: impl Into<String>) -> Self {
        Self {
            hash: None,
            source: AvatarSource::Bytes {
                data: data.into(),
                media_type: media_type.into(),
            },
        }
    }

    /// A picture to download from `url`, without a network fingerprint.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            hash: None,
            source: AvatarSource::Url {
                url: url.into(),
                media_type: None,
            },
        }
    }

    /// The same picture with the network's fingerprint `hash`.
    pub fn with_hash(mut self, hash: impl Into<String>) -> Self {
        self.hash = Some(hash.into());
        self
    }

    /// The key the core compares to tell whether the picture changed: the network's
    /// fingerprint when given, else the URL, else `None` (the core hashes the bytes).
    pub fn change_key(&self) -> Option<&str> {
        match (&self.hash, &self.source) {
            (Some(h), _) => Some(h),
            (None, AvatarSource::Url { url, .. }) => Some(url),
            (None, AvatarSource::Bytes { .. }) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_key_prefers_the_networks_fingerprint() {
        assert_eq!(Avatar::from_bytes(vec![1], "image/png").change_key(), None);
        assert_eq!(
            Avatar::from_bytes(vec![1], "image/png")
                .with_hash("h1")
                .change_key(),
            Some("h1")
        );
        assert_eq!(
            Avatar::from_url("https://a.example/p.png").change_key(),
            Some("https://a.example/p.png")
        );
        assert_eq!(AvatarUpdate::default(), AvatarUpdate::Unchanged);
    }
}
