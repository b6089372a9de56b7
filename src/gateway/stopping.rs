//! What the gateway does with stanzas that arrive while it stops.
//!
//! A stop takes the stanzas still coming from the XMPP server first, so nothing reaches a
//! network connection about to close (a message arriving during SIGTERM used to open a new
//! IRC connection that died with the process, and its sender never heard of it). From the
//! moment the stop begins, each stanza is either kept for the next start or answered:
//!
//! - a message with a body is written to the table of sends in progress, and the next start
//!   sends it, as it does for a send a restart cut short;
//! - a request (IQ get/set) gets `service-unavailable` of type `wait`, saying why;
//! - a room join gets the same as a presence error; other presences are left alone (the
//!   rooms are being left anyway, with status 332).

use super::Gateway;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tracing::{info, warn};

/// The text of every refusal during a stop.
pub(super) const RESTARTING: &str =
    "The gateway is restarting; try again in a minute (nothing you sent before was lost).";

/// What to do with a stanza that arrives during a stop.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DuringStop {
    /// Keep the message for the next start.
    Keep,
    /// Answer it with an error.
    Refuse,
    /// Nothing to do (an error or result, an unavailable presence…).
    Ignore,
}

/// Decides from the stanza alone (pure, tested below).
pub(super) fn during_stop(el: &Element) -> DuringStop {
    let type_ = el.attr("type").unwrap_or("");
    match el.name() {
        "message" if type_ != "error" => {
            if el.children().any(|c| c.name() == "body") {
                DuringStop::Keep
            } else {
                DuringStop::Ignore
            }
        }
        "iq" if matches!(type_, "get" | "set") => DuringStop::Refuse,
        // A join or a nick change: available presence to an occupant JID.
        "presence" if type_.is_empty() && el.attr("to").is_some_and(|t| t.contains('/')) => {
            DuringStop::Refuse
        }
        _ => DuringStop::Ignore,
    }
}

/// `service-unavailable` (wait) with [`RESTARTING`].
fn restarting() -> StanzaError {
    StanzaError::new(
        ErrorType::Wait,
        DefinedCondition::ServiceUnavailable,
        "en",
        RESTARTING,
    )
}

impl Gateway {
    /// Handles a stanza that arrived after the stop began (see the module's doc).
    pub(super) async fn handle_during_stop(&self, el: Element) {
        let from = el.attr("from").and_then(|f| Jid::new(f).ok());
        let to = el.attr("to").and_then(|t| Jid::new(t).ok());
        let (Some(from), Some(to)) = (from, to) else {
            return;
        };
        let id = el.attr("id").map(str::to_string);
        match during_stop(&el) {
            DuringStop::Keep => {
                let user = from.to_bare().to_string();
                let pending_id = uuid::Uuid::new_v4().to_string();
                let xml = String::from(&el);
                match self
                    .db
                    .push_send(&self.bridge, &user, &pending_id, &xml)
                    .await
                {
                    Ok(()) => {
                        info!(bridge = %self.bridge, %user, "a message that arrived during the stop is kept for the next start")
                    }
                    Err(e) => {
                        warn!(bridge = %self.bridge, %user, "cannot keep a message that arrived during the stop: {e}");
                        self.bounce(to, from, id, restarting()).await;
                    }
                }
            }
            DuringStop::Refuse if el.name() == "iq" => {
                self.send(Iq::Error {
                    from: Some(to),
                    to: Some(from),
                    id: id.unwrap_or_default(),
                    payload: None,
                    error: restarting(),
                })
                .await;
            }
            DuringStop::Refuse => {
                let mut p = crate::xmpp::muc::error_presence(to, from, restarting());
                p.id = id;
                self.send(p).await;
            }
            DuringStop::Ignore => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().expect("valid XML")
    }

    #[test]
    fn messages_are_kept_requests_and_joins_refused_the_rest_ignored() {
        let c = "xmlns='jabber:component:accept' from='u@example.org/r'";
        let cases = [
            (
                format!("<message {c} to='bob@gw' type='chat'><body>hi</body></message>"),
                DuringStop::Keep,
            ),
            (
                format!("<message {c} to='#a@gw' type='groupchat'><body>hi</body></message>"),
                DuringStop::Keep,
            ),
            (
                format!(
                    "<message {c} to='bob@gw'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
                ),
                DuringStop::Ignore,
            ),
            (
                format!("<message {c} to='bob@gw' type='error'><body>x</body></message>"),
                DuringStop::Ignore,
            ),
            (
                format!(
                    "<iq {c} to='gw' type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
                ),
                DuringStop::Refuse,
            ),
            (
                format!("<iq {c} to='gw' type='result' id='1'/>"),
                DuringStop::Ignore,
            ),
            (
                format!(
                    "<presence {c} to='#a@gw/nick'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
                ),
                DuringStop::Refuse,
            ),
            (
                format!("<presence {c} to='#a@gw/nick' type='unavailable'/>"),
                DuringStop::Ignore,
            ),
            (format!("<presence {c} to='gw'/>"), DuringStop::Ignore),
        ];
        for (xml, want) in cases {
            assert_eq!(during_stop(&el(&xml)), want, "{xml}");
        }
    }
}
