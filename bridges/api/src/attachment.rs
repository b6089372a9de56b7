//! Files that travel with a message, both ways: what an attachment is, where its bytes are,
//! and what a network takes ([`AttachmentLimits`]).
//!
//! An attachment's bytes are either at a URL that the XMPP client may fetch as is
//! ([`Source::Url`]: a public link, an XEP-0363 upload), or handed over by the bridge as a
//! stream ([`Source::Content`]: media that needs the login's credentials, an email part).
//! Content is read once, as a stream, never held whole in memory by the core.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncRead;

/// A stream of an attachment's bytes.
pub type ByteReader = Pin<Box<dyn AsyncRead + Send + Sync>>;

/// One file sent with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The file name (`cat.jpg`); the core makes one up from the URL where none is known.
    pub name: String,
    /// The media type (`image/jpeg`), where known.
    pub media_type: Option<String>,
    /// The size in bytes, where known before the bytes are read.
    pub size: Option<u64>,
    /// Where the bytes are.
    pub source: Source,
}

impl Attachment {
    /// An attachment at a URL, named after the URL's last path segment.
    pub fn from_url(url: impl Into<String>) -> Self {
        let url = url.into();
        Attachment {
            name: name_from_url(&url),
            media_type: None,
            size: None,
            source: Source::Url(url),
        }
    }

    /// The size to judge the attachment by: the declared one, else the content's length.
    pub fn known_size(&self) -> Option<u64> {
        self.size.or(match &self.source {
            Source::Content(c) => c.length(),
            Source::Url(_) => None,
        })
    }
}

/// The last non-empty path segment of `url`, without query or fragment; `attachment` when
/// there is none.
pub fn name_from_url(url: &str) -> String {
    let no_frag = url.split(['#', '?']).next().unwrap_or("");
    let path = match no_frag.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => no_frag,
    };
    path.rsplit('/')
        .find(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| "attachment".to_string())
}

/// Where an attachment's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A URL that the receiving side may fetch as is (no credentials needed).
    Url(String),
    /// Bytes the bridge hands over, read once.
    Content(Content),
}

/// Bytes handed over as a stream, with their length where known.
///
/// The stream is read once: [`take`](Self::take) gives it to the first caller and `None` to
/// every later one. Clones share the one stream; two contents are equal only when they are
/// clones of each other.
#[derive(Clone)]
pub struct Content {
    length: Option<u64>,
    reader: Arc<Mutex<Option<ByteReader>>>,
}

impl Content {
    /// Content read from `reader`, `length` bytes long where known.
    pub fn new(reader: impl AsyncRead + Send + Sync + 'static, length: Option<u64>) -> Self {
        Content {
            length,
            reader: Arc::new(Mutex::new(Some(Box::pin(reader)))),
        }
    }

    /// Content from bytes already in memory (small files, tests); the length is known.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        let bytes = bytes.into();
        let len = bytes.len() as u64;
        Content::new(std::io::Cursor::new(bytes), Some(len))
    }

    /// The length in bytes, where known.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// The stream, to the first caller only.
    pub fn take(&self) -> Option<ByteReader> {
        self.reader.lock().ok()?.take()
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Content")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Content {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.reader, &other.reader)
    }
}

impl Eq for Content {}

/// What a network takes in attachments ([`Capabilities::attachments`](crate::Capabilities)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachmentLimits {
    /// How many attachments one message may carry.
    pub max_per_message: usize,
    /// The largest attachment in bytes, where the network has a limit.
    pub max_bytes: Option<u64>,
}

/// Why a set of attachments is refused by [`AttachmentLimits::check`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The network takes no attachments.
    #[error("this network takes no attachments")]
    Unsupported,
    /// Too many in one message.
    #[error(
        "the message carries {count} attachments; this network takes at most {max} per message"
    )]
    TooMany {
        /// How many there were.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// One is too large.
    #[error("{name} is {size} bytes; this network takes attachments of at most {max} bytes")]
    TooLarge {
        /// The attachment's name.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
}

impl AttachmentLimits {
    /// Checks attachments against `limits` (`None`: the network takes none). Sizes not
    /// known in advance pass here; whoever reads the bytes enforces `max_bytes` then.
    pub fn check(limits: Option<&Self>, attachments: &[Attachment]) -> Result<(), LimitError> {
        if attachments.is_empty() {
            return Ok(());
        }
        let Some(limits) = limits else {
            return Err(LimitError::Unsupported);
        };
        if attachments.len() > limits.max_per_message {
            return Err(LimitError::TooMany {
                count: attachments.len(),
                max: limits.max_per_message,
            });
        }
        if let Some(max) = limits.max_bytes {
            for a in attachments {
                if let Some(size) = a.known_size()
                    && size > max
                {
                    return Err(LimitError::TooLarge {
                        name: a.name.clone(),
                        size,
                        max,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn names_come_from_the_last_path_segment() {
        assert_eq!(
            name_from_url("https://up.example/abc/cat%20pic.jpg?x=1#f"),
            "cat%20pic.jpg"
        );
        assert_eq!(name_from_url("https://up.example/abc/"), "abc");
        assert_eq!(name_from_url("https://up.example"), "attachment");
        assert_eq!(name_from_url("https://up.example/?q=/a"), "attachment");
    }

    #[tokio::test]
    async fn content_is_read_once_and_clones_share_it() {
        let c = Content::from_bytes(b"hello".to_vec());
        let twin = c.clone();
        assert_eq!(c, twin);
        assert_ne!(c, Content::from_bytes(b"hello".to_vec()));
        let mut r = twin.take().expect("the first take gets the stream");
        assert!(c.take().is_none(), "a second take gets nothing");
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello");
        assert_eq!(c.length(), Some(5));
    }

    #[test]
    fn limits_name_what_is_wrong() {
        let small = Attachment {
            size: Some(10),
            ..Attachment::from_url("https://a.example/x.png")
        };
        let big = Attachment {
            name: "big.bin".into(),
            media_type: None,
            size: None,
            source: Source::Content(Content::new(tokio::io::empty(), Some(2_000))),
        };
        let limits = AttachmentLimits {
            max_per_message: 1,
            max_bytes: Some(1_000),
        };
        assert_eq!(AttachmentLimits::check(None, &[]), Ok(()));
        assert_eq!(
            AttachmentLimits::check(None, std::slice::from_ref(&small)),
            Err(LimitError::Unsupported)
        );
        assert_eq!(
            AttachmentLimits::check(Some(&limits), std::slice::from_ref(&small)),
            Ok(())
        );
        let e =
            AttachmentLimits::check(Some(&limits), &[small.clone(), small.clone()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the message carries 2 attachments; this network takes at most 1 per message"
        );
        let e = AttachmentLimits::check(Some(&limits), &[big]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "big.bin is 2000 bytes; this network takes attachments of at most 1000 bytes"
        );
        let unknown = Attachment::from_url("https://a.example/y");
        assert_eq!(
            AttachmentLimits::check(Some(&limits), &[unknown]),
            Ok(()),
            "an unknown size is checked when the bytes are read"
        );
    }
}
