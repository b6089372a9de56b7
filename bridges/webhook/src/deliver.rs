//! Handing a formatted hook message to the core, as events.
//!
//! For a hook named `ci`:
//!
//! * every JID in `to` gets a [`RemoteEvent::Message`] in the direct chat
//!   `ChatKey::Direct("ci")`, sent by `ci`; `message_type = "chat"` maps to
//!   [`MessageKind::Normal`] (XMPP `type="chat"`) and `"headline"` to [`MessageKind::Notice`]
//!   (which the core sends as `type="headline"`);
//! * every room in `rooms` gets a [`RemoteEvent::PostToXmppRoom`] from `ci` with the hook's
//!   nick (the core joins the room and posts as groupchat).
//!
//! Each event goes through a sink addressed to the recipient (the room's JID for room
//! posts) under the login `webhook:ci`.

use crate::config::{HookConfig, MessageType};
use estuary_bridge_api::{
    ChatKey, EventRouter, LoginId, MessageKind, RemoteEvent, RemoteMessage, RemoteMessageId,
    RemoteUserId, Sender, SinkClosed,
};
use std::time::SystemTime;

/// The login id events of hook `name` are tagged with: `webhook:<name>`.
pub fn login_for(hook: &str) -> LoginId {
    LoginId::new(format!("webhook:{hook}"))
}

/// The events for one formatted message, each with the bare JID its sink is addressed to.
pub fn events_for(
    hook: &HookConfig,
    body: &str,
    id: Option<&str>,
    at: SystemTime,
) -> Vec<(String, RemoteEvent)> {
    let from = RemoteUserId::new(hook.name.clone());
    let kind = match hook.message_type {
        MessageType::Chat => MessageKind::Normal,
        MessageType::Headline => MessageKind::Notice,
    };
    let direct = hook.to.iter().map(|jid| {
        let msg = RemoteMessage {
            chat: ChatKey::Direct(from.clone()),
            sender: Sender {
                user: from.clone(),
                nick: None,
                is_from_me: false,
            },
            id: id.map(RemoteMessageId::from),
            body: body.to_owned(),
            attachments: Vec::new(),
            kind,
            at: Some(at),
            reply_to: None,
            echo_of: None,
        };
        (jid.clone(), RemoteEvent::Message(msg))
    });
    let rooms = hook.rooms.iter().map(|room| {
        let post = RemoteEvent::PostToXmppRoom {
            from: from.clone(),
            room: room.clone(),
            nick: hook.nick.clone(),
            body: body.to_owned(),
        };
        (room.clone(), post)
    });
    direct.chain(rooms).collect()
}

/// Pushes the events to the core; returns how many were accepted. Stops at the first
/// closed sink (the events before it were accepted).
pub async fn deliver(
    router: &EventRouter,
    hook: &HookConfig,
    body: &str,
    id: Option<&str>,
) -> Result<usize, SinkClosed> {
    let login = login_for(&hook.name);
    let events = events_for(hook, body, id, SystemTime::now());
    let n = events.len();
    for (jid, event) in events {
        router.sink_for(&jid, login.clone()).send(event).await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_recipient() {
        let mut hook = HookConfig::new("ci", "t");
        hook.to = vec!["a@x".into(), "b@y".into()];
        hook.rooms = vec!["dev@conference.x".into()];
        hook.nick = "CI".into();
        hook.message_type = MessageType::Headline;
        let ev = events_for(&hook, "hi", Some("d1"), SystemTime::UNIX_EPOCH);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].0, "a@x");
        match &ev[1].1 {
            RemoteEvent::Message(m) => {
                assert_eq!(m.chat, ChatKey::Direct(RemoteUserId::new("ci")));
                assert_eq!(m.kind, MessageKind::Notice);
                assert_eq!(m.id, Some(RemoteMessageId::new("d1")));
                assert!(!m.sender.is_from_me);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ev[2],
            (
                "dev@conference.x".into(),
                RemoteEvent::PostToXmppRoom {
                    from: RemoteUserId::new("ci"),
                    room: "dev@conference.x".into(),
                    nick: "CI".into(),
                    body: "hi".into()
                }
            )
        );
    }
}
