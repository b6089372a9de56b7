//! Attachments in stanzas, pure both ways: XEP-0066 out-of-band data (`jabber:x:oob`, what
//! Conversations, Gajim, Dino, Monal and Cheogram send: body = the URL plus `<x><url/></x>`)
//! and XEP-0447 stateless file sharing (`urn:xmpp:sfs:0` with XEP-0446 file metadata and
//! XEP-0103 `url-data` sources).
//!
//! xmpp-parsers 0.23 has XEP-0066 ([`Oob`]) but neither XEP-0447 nor XEP-0446, so those are
//! read from the element tree here. What is not understood (a source that is not a URL, an
//! encrypted one) is skipped, and the message's body then stays text.

use estuary_bridge_api::{Attachment, Source};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::parsers::oob::Oob;

/// XEP-0066 out-of-band data in messages.
pub const OOB: &str = "jabber:x:oob";
/// XEP-0447 stateless file sharing.
pub const SFS: &str = "urn:xmpp:sfs:0";
/// XEP-0446 file metadata.
pub const FILE_METADATA: &str = "urn:xmpp:file:metadata:0";
/// XEP-0103 URL address information.
pub const URL_DATA: &str = "http://jabber.org/protocol/url-data";

/// The attachments a user's message carries, XEP-0447 ones first, each URL once (clients
/// send the same file as both XEP-0447 and XEP-0066). Only `http`/`https` URLs count.
pub fn read(msg: &Message) -> Vec<Attachment> {
    let mut out: Vec<Attachment> = Vec::new();
    for p in msg.payloads.iter().filter(|p| p.is("file-sharing", SFS)) {
        if let Some(a) = file_sharing(p) {
            push_unique(&mut out, a);
        }
    }
    for p in msg.payloads.iter().filter(|p| p.is("x", OOB)) {
        if let Ok(oob) = Oob::try_from(p.clone())
            && let Some(url) = web_url(&oob.url)
        {
            push_unique(&mut out, Attachment::from_url(url));
        }
    }
    out
}

fn push_unique(out: &mut Vec<Attachment>, a: Attachment) {
    if !out.iter().any(|b| b.source == a.source) {
        out.push(a);
    }
}

/// A trimmed `http`/`https` URL without whitespace inside, or `None`.
fn web_url(url: &str) -> Option<&str> {
    let url = url.trim();
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let web = lower.starts_with("https://") || lower.starts_with("http://");
    (web && !url.contains(char::is_whitespace)).then_some(url)
}

/// One XEP-0447 `<file-sharing/>`: its metadata and its first usable URL source.
fn file_sharing(el: &Element) -> Option<Attachment> {
    let url = el
        .get_child("sources", SFS)?
        .children()
        .filter(|s| s.is("url-data", URL_DATA))
        .find_map(|s| s.attr("target").and_then(web_url))?;
    let mut a = Attachment::from_url(url);
    if let Some(file) = el.get_child("file", FILE_METADATA) {
        let text = |name: &str| {
            file.get_child(name, FILE_METADATA)
                .map(|c| c.text().trim().to_string())
                .filter(|t| !t.is_empty())
        };
        if let Some(name) = text("name") {
            a.name = name;
        }
        a.media_type = text("media-type");
        a.size = text("size").and_then(|s| s.parse().ok());
    }
    Some(a)
}

/// The caption left of a body once the lines that only repeat an attachment's URL are
/// taken out (the body of an OOB message is the URL itself, for clients without OOB).
pub fn caption(body: &str, attachments: &[Attachment]) -> String {
    let is_url = |line: &str| {
        attachments
            .iter()
            .any(|a| matches!(&a.source, Source::Url(u) if u == line.trim()))
    };
    body.lines()
        .filter(|l| !is_url(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// The XEP-0066 element pointing at `url`.
pub fn oob(url: &str) -> Element {
    Oob {
        url: url.to_string(),
        desc: None,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(xml: &str) -> Message {
        let el: Element = xml.parse().expect("fixture parses");
        Message::try_from(el).expect("a message")
    }

    /// What Conversations sends for an image.
    const CONVERSATIONS: &str = "<message xmlns='jabber:component:accept' to='alice%fake@fake.gw' type='chat' id='m1'>\
        <body>https://upload.example/abc/cat.jpg</body>\
        <x xmlns='jabber:x:oob'><url>https://upload.example/abc/cat.jpg</url></x>\
        </message>";

    #[test]
    fn an_oob_message_is_an_attachment_without_caption() {
        let m = message(CONVERSATIONS);
        let got = read(&m);
        assert_eq!(
            got,
            vec![Attachment::from_url("https://upload.example/abc/cat.jpg")]
        );
        assert_eq!(got[0].name, "cat.jpg");
        assert_eq!(caption("https://upload.example/abc/cat.jpg", &got), "");
    }

    #[test]
    fn a_caption_is_what_is_not_the_url() {
        let got = vec![Attachment::from_url("https://u.example/a.png")];
        assert_eq!(
            caption("look at this\nhttps://u.example/a.png\n", &got),
            "look at this"
        );
        assert_eq!(
            caption("see https://u.example/a.png", &got),
            "see https://u.example/a.png"
        );
    }

    #[test]
    fn stateless_file_sharing_carries_metadata_and_deduplicates_oob() {
        let m = message(
            "<message xmlns='jabber:component:accept' to='c@fake.gw' type='chat'>\
             <body>https://u.example/x/summit.jpg</body>\
             <file-sharing xmlns='urn:xmpp:sfs:0' disposition='inline'>\
               <file xmlns='urn:xmpp:file:metadata:0'>\
                 <media-type>image/jpeg</media-type><name>Summit photo.jpg</name>\
                 <size>3032449</size>\
                 <hash xmlns='urn:xmpp:hashes:2' algo='sha3-256'>abc=</hash>\
               </file>\
               <sources>\
                 <encrypted xmlns='urn:xmpp:esfs:0'/>\
                 <url-data xmlns='http://jabber.org/protocol/url-data' target='https://u.example/x/summit.jpg'/>\
               </sources>\
             </file-sharing>\
             <x xmlns='jabber:x:oob'><url>https://u.example/x/summit.jpg</url></x>\
             </message>",
        );
        let got = read(&m);
        assert_eq!(
            got.len(),
            1,
            "the OOB twin of the XEP-0447 file is the same file"
        );
        assert_eq!(got[0].name, "Summit photo.jpg");
        assert_eq!(got[0].media_type.as_deref(), Some("image/jpeg"));
        assert_eq!(got[0].size, Some(3032449));
        assert_eq!(
            got[0].source,
            Source::Url("https://u.example/x/summit.jpg".into())
        );
    }

    #[test]
    fn hostile_or_unusable_sources_are_not_attachments() {
        // A file-sharing with no URL source, an OOB with a non-web URL, an OOB whose URL
        // hides a line break, and an OOB without a url element.
        let m = message(
            "<message xmlns='jabber:component:accept' to='c@fake.gw' type='chat'>\
             <body>hi</body>\
             <file-sharing xmlns='urn:xmpp:sfs:0'><sources>\
               <jinglepub xmlns='urn:xmpp:jinglepub:1' id='x'/>\
             </sources></file-sharing>\
             <x xmlns='jabber:x:oob'><url>file:///etc/passwd</url></x>\
             <x xmlns='jabber:x:oob'><url>https://a.example/x\nPRIVMSG #x :hi</url></x>\
             <x xmlns='jabber:x:oob'><desc>no url</desc></x>\
             </message>",
        );
        assert_eq!(read(&m), vec![]);
    }

    #[test]
    fn a_size_that_is_not_a_number_is_unknown() {
        let m = message(
            "<message xmlns='jabber:component:accept' to='c@fake.gw'>\
             <file-sharing xmlns='urn:xmpp:sfs:0'>\
               <file xmlns='urn:xmpp:file:metadata:0'><size>-5</size></file>\
               <sources><url-data xmlns='http://jabber.org/protocol/url-data' target='http://u.example/f'/></sources>\
             </file-sharing></message>",
        );
        let got = read(&m);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].size, None);
        assert_eq!(got[0].name, "f");
    }

    #[test]
    fn the_oob_element_round_trips() {
        let el = oob("https://u.example/a b.png");
        let back = Oob::try_from(el).expect("parses back");
        assert_eq!(back.url, "https://u.example/a b.png");
    }
}
