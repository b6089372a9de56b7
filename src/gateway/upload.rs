//! Files a network hands over as bytes ([`Source::Content`]) are put where the user's client
//! can fetch them, so that they reach the user as a URL (body = URL + XEP-0066), in the
//! `[media] mode` the admin chose ([`MediaPlan`]):
//!
//! - the XMPP server's upload service (XEP-0363): found once by disco#items on the server's
//!   domain and disco#info on each item (and the domain itself), for the feature
//!   `urn:xmpp:http:upload:0`, or named in `[media] upload_service`. The gateway asks for
//!   slots as its own domain (Prosody's `http_file_share` and ejabberd's `mod_http_upload`
//!   grant them: tests/e2e_upload.rs, tests/e2e_media.rs). The bytes are PUT as a stream with
//!   the slot's headers.
//! - the gateway's own HTTP server ([`crate::media`]): the file is spooled to disk and served
//!   under `[http] public_url` until it expires.
//!
//! A slot needs the size in advance: content of unknown length is first spooled to a file
//! (within `[media] max_bytes`), then sent from there. No file is ever whole in memory, and
//! a network that pauses longer than `[media] stall_secs` fails the file, not the gateway.

use super::Gateway;
use super::session::lock;
use crate::config::{MediaMode, MediaSettings};
use crate::media::stall::{StallGuard, Stalled};
use crate::media::{MediaError, MediaStore, Spooled};
use crate::xmpp::ns;
use estuary_bridge_api::attachment::ByteReader;
use estuary_bridge_api::{Attachment, RemoteMessage, Source};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::stanza_error::DefinedCondition;
use tracing::{info, warn};

/// XEP-0363 HTTP File Upload.
const UPLOAD: &str = "urn:xmpp:http:upload:0";
/// How long an answer to a disco or slot request may take.
const IQ_WAIT: Duration = Duration::from_secs(10);
/// How long connecting to the upload service's HTTP server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lookup that found no upload service is believed: files in that time are said
/// as text at once, without asking the server again (a burst of files would otherwise ask
/// once per file, each waiting up to [`IQ_WAIT`] per address on a server that is slow).
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(300);

/// What the gateway knows of the XMPP server's upload service.
#[derive(Debug, Default)]
pub(super) enum UploadService {
    /// Not looked for yet.
    #[default]
    Unknown,
    /// Found at this address, or named in the config (kept for the gateway's life).
    Found(Jid),
    /// Looked for at this instant and not found.
    Missing(Instant),
}

impl UploadService {
    /// The service named in `[media] upload_service`, else one to look for.
    pub(super) fn configured(jid: Option<&str>) -> Self {
        match jid.and_then(|j| Jid::new(j).ok()) {
            Some(jid) => UploadService::Found(jid),
            None => UploadService::Unknown,
        }
    }

    /// What to do at `now`: use the service, look for it, or give up without asking.
    fn lookup(&self, now: Instant) -> Lookup {
        match self {
            UploadService::Found(jid) => Lookup::Use(jid.clone()),
            UploadService::Missing(at) if now.duration_since(*at) < LOOK_AGAIN_AFTER => {
                Lookup::Missing
            }
            UploadService::Unknown | UploadService::Missing(_) => Lookup::Ask,
        }
    }
}

/// The answer of [`UploadService::lookup`].
#[derive(Debug, PartialEq)]
enum Lookup {
    Use(Jid),
    Ask,
    Missing,
}

/// Where files from the network go: `[media]` and the gateway's own store.
#[derive(Debug)]
pub(super) struct MediaPlan {
    mode: MediaMode,
    store: Arc<MediaStore>,
    transfer_timeout: Duration,
}

impl MediaPlan {
    /// The plan of `settings`, keeping files in `store`.
    pub(super) fn new(settings: &MediaSettings, store: Arc<MediaStore>) -> Self {
        MediaPlan {
            mode: settings.mode,
            store,
            transfer_timeout: Duration::from_secs(settings.transfer_timeout_secs.max(1)),
        }
    }

    /// Whether the upload service is to be used.
    fn uses_service(&self) -> bool {
        self.mode != MediaMode::Gateway
    }

    /// Whether the gateway's own server is to be used (and can be: it runs with a public
    /// URL).
    fn uses_own_server(&self) -> bool {
        self.mode != MediaMode::Upload && self.store.serves()
    }
}

/// Why a file could not be put where the client can fetch it.
#[derive(Debug, thiserror::Error)]
pub(super) enum UploadError {
    /// No upload service was found, and the gateway's own server is not used.
    #[error("the XMPP server has no upload service (XEP-0363)")]
    NoService,
    /// The stream was taken already.
    #[error("its content was already read")]
    AlreadyRead,
    /// The service (or the server) answered with an error.
    #[error("the upload service refused: {0:?}")]
    Refused(DefinedCondition),
    /// No answer in time.
    #[error("the upload service did not answer")]
    NoAnswer,
    /// The answer is not a usable slot.
    #[error("the upload service's answer is not a slot: {0}")]
    BadSlot(&'static str),
    /// The PUT failed.
    #[error("the upload failed: {0}")]
    Put(String),
    /// The PUT took longer than `transfer_timeout_secs`.
    #[error("the upload took longer than {0} s")]
    PutTimeout(u64),
    /// Reading, spooling or keeping the file failed.
    #[error(transparent)]
    Media(#[from] MediaError),
}

impl UploadError {
    /// What the user is told, after "[file NAME not shown: ".
    pub(super) fn told(&self) -> String {
        match self {
            UploadError::NoService | UploadError::AlreadyRead => {
                "the gateway could not upload it".into()
            }
            UploadError::Refused(DefinedCondition::NotAcceptable) => {
                "the server's upload service refused it (too large for the server?)".into()
            }
            UploadError::Refused(_) => "the server's upload service refused it".into(),
            UploadError::NoAnswer => "the server's upload service did not answer".into(),
            UploadError::BadSlot(_) => "the server's upload service gave no usable slot".into(),
            UploadError::Put(_) => "the upload to the server failed".into(),
            UploadError::PutTimeout(_) => "the upload to the server took too long".into(),
            UploadError::Media(e) => e.to_string(),
        }
    }
}

/// A granted slot.
struct Slot {
    put: String,
    headers: Vec<(String, String)>,
    get: String,
}

/// A file's bytes on their way: still the network's stream (of known length), or spooled.
enum Bytes {
    Stream(ByteReader, u64),
    Spooled(Spooled),
}

impl Gateway {
    /// Puts every attachment of `m` given as content where the client can fetch it and
    /// makes it a URL. One that cannot be placed stays content (and is then shown as a line
    /// naming it); the returned list says why, for each attachment (`None`: placed or
    /// not content).
    pub(super) async fn upload_contents(
        &self,
        mut m: RemoteMessage,
    ) -> (RemoteMessage, Vec<Option<String>>) {
        let mut why = Vec::new();
        for a in &mut m.attachments {
            if !matches!(a.source, Source::Content(_)) {
                why.push(None);
                continue;
            }
            match self.place(a).await {
                Ok(url) => {
                    info!(bridge = %self.bridge, name = %a.name, "a file from the network is at its URL");
                    a.source = Source::Url(url);
                    why.push(None);
                }
                Err(e) => {
                    warn!(bridge = %self.bridge, name = %a.name, "cannot place a file from the network: {e}");
                    why.push(Some(e.told()));
                }
            }
        }
        (m, why)
    }

    /// Puts one content attachment on the upload service or the gateway's own server, as
    /// `[media] mode` says; returns its URL.
    async fn place(&self, a: &Attachment) -> Result<String, UploadError> {
        let Source::Content(content) = &a.source else {
            return Err(UploadError::AlreadyRead);
        };
        let store = &self.media.store;
        let max = store.max_bytes();
        if let Some(size) = a.known_size()
            && size > max
        {
            return Err(MediaError::TooLarge { max }.into());
        }
        let service = if self.media.uses_service() {
            self.upload_service().await.ok()
        } else {
            None
        };
        let own = self.media.uses_own_server();
        if service.is_none() && !own {
            return Err(UploadError::NoService);
        }
        let reader = content.take().ok_or(UploadError::AlreadyRead)?;
        let bytes = match a.known_size() {
            Some(size) if service.is_some() => Bytes::Stream(reader, size),
            _ => Bytes::Spooled(store.spool(reader).await?),
        };
        let bytes = match service {
            None => bytes,
            Some(service) => {
                let size = match &bytes {
                    Bytes::Stream(_, size) => *size,
                    Bytes::Spooled(s) => s.len(),
                };
                match self.request_slot(service, a, size).await {
                    Ok(slot) => return self.put(slot, a, bytes).await,
                    Err(e) if !own => return Err(e),
                    Err(e) => {
                        warn!(bridge = %self.bridge, name = %a.name, "no slot from the upload service ({e}): the gateway serves the file itself");
                        bytes
                    }
                }
            }
        };
        let spooled = match bytes {
            Bytes::Spooled(s) => s,
            Bytes::Stream(reader, _) => store.spool(reader).await?,
        };
        store
            .keep(spooled, &a.name, a.media_type.as_deref())
            .await?
            .ok_or(UploadError::NoService)
    }

    /// Asks `service` for a slot for `a`, `size` bytes long.
    async fn request_slot(
        &self,
        service: Jid,
        a: &Attachment,
        size: u64,
    ) -> Result<Slot, UploadError> {
        let request = Element::builder("request", UPLOAD)
            .attr(
                tokio_xmpp::minidom::rxml::xml_ncname!("filename").to_owned(),
                slot_file_name(&a.name),
            )
            .attr(
                tokio_xmpp::minidom::rxml::xml_ncname!("size").to_owned(),
                size.to_string(),
            )
            .attr(
                tokio_xmpp::minidom::rxml::xml_ncname!("content-type").to_owned(),
                media_type_of(a),
            )
            .build();
        let answer = self
            .ask(service, request)
            .await?
            .ok_or(UploadError::BadSlot("empty"))?;
        read_slot(&answer)
    }

    /// PUTs the bytes to the slot, as a stream; returns the slot's GET URL.
    async fn put(&self, slot: Slot, a: &Attachment, bytes: Bytes) -> Result<String, UploadError> {
        let stall = self.media.store.stall();
        let (reader, size): (ByteReader, u64) = match bytes {
            Bytes::Stream(reader, size) => {
                (Box::pin(StallGuard::new(reader.take(size), stall)), size)
            }
            // The open file outlives the spooled one's deletion.
            Bytes::Spooled(s) => (Box::pin(s.open().await.map_err(MediaError::Disk)?), s.len()),
        };
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(reader));
        let timeout = self.media.transfer_timeout;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| UploadError::Put(e.to_string()))?;
        let mut put = client
            .put(&slot.put)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, media_type_of(a))
            .body(body);
        for (name, value) in &slot.headers {
            put = put.header(name.as_str(), value.as_str());
        }
        let answer = put.send().await.map_err(|e| {
            if Stalled::caused(&e) {
                UploadError::Media(MediaError::Stalled)
            } else if e.is_timeout() {
                UploadError::PutTimeout(timeout.as_secs())
            } else {
                UploadError::Put(e.to_string())
            }
        })?;
        if !answer.status().is_success() {
            return Err(UploadError::Put(format!("HTTP {}", answer.status())));
        }
        Ok(slot.get)
    }

    /// The upload service: found once, then remembered; its absence is remembered for
    /// [`LOOK_AGAIN_AFTER`].
    async fn upload_service(&self) -> Result<Jid, UploadError> {
        let mut known = self.upload_service.lock().await;
        match known.lookup(Instant::now()) {
            Lookup::Use(jid) => return Ok(jid),
            Lookup::Missing => return Err(UploadError::NoService),
            Lookup::Ask => {}
        }
        let server = Jid::new(&self.server_domain).map_err(|_| UploadError::NoService)?;
        let items = self
            .ask(
                server.clone(),
                Element::builder("query", ns::DISCO_ITEMS).build(),
            )
            .await
            .ok()
            .flatten();
        let mut candidates: Vec<Jid> = items
            .iter()
            .flat_map(|q| q.children())
            .filter(|c| c.is("item", ns::DISCO_ITEMS))
            .filter_map(|c| c.attr("jid"))
            .filter_map(|j| Jid::new(j).ok())
            .collect();
        candidates.push(server);
        for jid in candidates {
            let info = self
                .ask(
                    jid.clone(),
                    Element::builder("query", ns::DISCO_INFO).build(),
                )
                .await;
            if let Ok(Some(q)) = info
                && q.children()
                    .any(|f| f.is("feature", ns::DISCO_INFO) && f.attr("var") == Some(UPLOAD))
            {
                info!(bridge = %self.bridge, service = %jid, "found the upload service");
                *known = UploadService::Found(jid.clone());
                return Ok(jid);
            }
        }
        warn!(
            bridge = %self.bridge,
            server = %self.server_domain,
            "the XMPP server offers no upload service (XEP-0363): files from the network are \
             said as text; asking again in {} s",
            LOOK_AGAIN_AFTER.as_secs()
        );
        *known = UploadService::Missing(Instant::now());
        Err(UploadError::NoService)
    }

    /// Sends an IQ get from the gateway's domain and waits for its answer's payload.
    async fn ask(&self, to: Jid, payload: Element) -> Result<Option<Element>, UploadError> {
        let id = format!("estuary-iq-{}", uuid::Uuid::new_v4());
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.iq_waiters).insert(id.clone(), tx);
        self.send(Iq::Get {
            from: Some(self.jid()),
            to: Some(to),
            id: id.clone(),
            payload,
        })
        .await;
        let answer = tokio::time::timeout(IQ_WAIT, rx).await;
        lock(&self.iq_waiters).remove(&id);
        match answer {
            Ok(Ok(Ok(payload))) => Ok(payload),
            Ok(Ok(Err(condition))) => Err(UploadError::Refused(condition)),
            Ok(Err(_)) | Err(_) => Err(UploadError::NoAnswer),
        }
    }
}

/// The attachment's media type, `application/octet-stream` where unknown.
fn media_type_of(a: &Attachment) -> String {
    a.media_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// A file name the service takes: no `/` or `\`, no control characters, not empty.
fn slot_file_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if clean.trim().is_empty() {
        "file".into()
    } else {
        clean
    }
}

/// Reads a XEP-0363 `<slot/>`: the PUT URL with its allowed headers, and the GET URL.
fn read_slot(el: &Element) -> Result<Slot, UploadError> {
    if !el.is("slot", UPLOAD) {
        return Err(UploadError::BadSlot("not a slot element"));
    }
    let put_el = el
        .get_child("put", UPLOAD)
        .ok_or(UploadError::BadSlot("no put"))?;
    let put = put_el
        .attr("url")
        .ok_or(UploadError::BadSlot("no put URL"))?;
    let get = el
        .get_child("get", UPLOAD)
        .and_then(|g| g.attr("url"))
        .ok_or(UploadError::BadSlot("no get URL"))?;
    // XEP-0363 allows only these three headers; others are ignored, and line breaks
    // (header injection) make the slot unusable.
    let mut headers = Vec::new();
    for h in put_el.children().filter(|c| c.is("header", UPLOAD)) {
        let (Some(name), value) = (h.attr("name"), h.text()) else {
            continue;
        };
        if !["Authorization", "Cookie", "Expires"].contains(&name) {
            continue;
        }
        if value.contains(['\r', '\n']) {
            return Err(UploadError::BadSlot("a header with a line break"));
        }
        headers.push((name.to_string(), value));
    }
    if !(put.starts_with("https://") || put.starts_with("http://"))
        || !(get.starts_with("https://") || get.starts_with("http://"))
    {
        return Err(UploadError::BadSlot("not an HTTP URL"));
    }
    Ok(Slot {
        put: put.to_string(),
        headers,
        get: get.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().expect("the fixture parses")
    }

    #[test]
    fn a_prosody_slot_is_read_with_its_headers() {
        let slot = read_slot(&el("<slot xmlns='urn:xmpp:http:upload:0'>\
            <put url='http://127.0.0.1:5280/file_share/abc/cat.jpg'>\
              <header name='Authorization'>Bearer xyz</header>\
              <header name='X-Evil'>1</header>\
            </put>\
            <get url='http://127.0.0.1:5280/file_share/abc/cat.jpg'/></slot>"))
        .expect("a slot");
        assert_eq!(slot.put, "http://127.0.0.1:5280/file_share/abc/cat.jpg");
        assert_eq!(slot.get, slot.put);
        assert_eq!(
            slot.headers,
            vec![("Authorization".to_string(), "Bearer xyz".to_string())],
            "headers XEP-0363 does not allow are dropped"
        );
    }

    #[test]
    fn a_missing_service_is_not_asked_for_again_for_a_while() {
        let t0 = Instant::now();
        assert_eq!(UploadService::Unknown.lookup(t0), Lookup::Ask);
        let missing = UploadService::Missing(t0);
        assert_eq!(missing.lookup(t0 + Duration::from_secs(1)), Lookup::Missing);
        assert_eq!(missing.lookup(t0 + LOOK_AGAIN_AFTER), Lookup::Ask);
        let jid = Jid::new("upload.localhost").expect("a JID");
        assert_eq!(
            UploadService::Found(jid.clone()).lookup(t0 + LOOK_AGAIN_AFTER * 10),
            Lookup::Use(jid)
        );
    }

    #[test]
    fn bad_slots_are_refused() {
        let cases = [
            "<slot xmlns='urn:xmpp:http:upload:0'><get url='https://a/x'/></slot>",
            "<slot xmlns='urn:xmpp:http:upload:0'><put url='https://a/x'/></slot>",
            "<slot xmlns='urn:xmpp:http:upload:0'><put url='file:///x'/><get url='https://a/x'/></slot>",
            "<slot xmlns='urn:xmpp:http:upload:0'><put url='https://a/x'><header name='Cookie'>a&#10;Host: evil</header></put><get url='https://a/x'/></slot>",
            "<other xmlns='urn:xmpp:http:upload:0'/>",
        ];
        for xml in cases {
            assert!(read_slot(&el(xml)).is_err(), "{xml}");
        }
    }

    #[test]
    fn file_names_are_made_safe_for_the_service() {
        assert_eq!(slot_file_name("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(slot_file_name("a\nb.txt"), "a_b.txt");
        assert_eq!(slot_file_name("  "), "file");
        assert_eq!(slot_file_name("Résumé.pdf"), "Résumé.pdf");
    }
}
