//! IQ routing: disco, version, ping, and hand-off to registration, gateway, commands and MAM.

use super::session::Session;
use super::{Gateway, Target};
use crate::db::ProfileKind;
use crate::xmpp::avatar as xavatar;
use crate::xmpp::el::a;
use crate::xmpp::{disco, errors, ns};
use estuary_bridge_api::{ChatKey, CommandTarget, RemoteChatId};
use std::sync::Arc;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, StanzaError};
use tracing::{Instrument, debug, warn};

/// An IQ request, split for handlers.
pub(super) struct Request {
    /// Who asked (full JID).
    pub from: Jid,
    /// Who was asked (on our domain).
    pub to: Jid,
    /// The IQ id.
    pub id: String,
    /// `true` for set, `false` for get.
    pub set: bool,
    /// The payload.
    pub payload: Element,
}

impl Request {
    /// The asker's bare JID.
    pub fn user(&self) -> BareJid {
        self.from.to_bare()
    }
}

/// How a request is answered.
enum Routed {
    /// At once, by the user's worker.
    Now(Option<Element>),
    /// From a task of its own: the answer waits on the network.
    Later(Pending),
}

/// A request whose answer waits on the network (a server's LIST, a kick's verdict), with
/// what the worker prepared for it in order.
enum Pending {
    /// The rooms of every server the user is connected to (disco#items on the domain).
    Rooms(Arc<Session>),
    /// The rooms of one service (disco#items on its JID).
    ServiceRooms(Arc<Session>, String),
    /// A muc#admin change in a room (a kick).
    Admin(RemoteChatId),
    /// XEP-0092 on an occupant: the member's software, asked on the network.
    Version(Arc<Session>, RemoteChatId, String),
}

impl Gateway {
    pub(super) async fn handle_iq(self: &Arc<Self>, el: Element) {
        let raw_type = el.attr("type").unwrap_or("").to_string();
        let raw_id = el.attr("id").map(str::to_string);
        let raw_from = el.attr("from").and_then(|f| Jid::new(f).ok());
        let raw_to = el.attr("to").and_then(|t| Jid::new(t).ok());
        let iq = match Iq::try_from(el) {
            Ok(iq) => iq,
            Err(e) => {
                if matches!(raw_type.as_str(), "get" | "set")
                    && let (Some(id), Some(from)) = (raw_id, raw_from)
                {
                    let to = raw_to.unwrap_or_else(|| self.jid());
                    self.send(Iq::Error {
                        from: Some(to),
                        to: Some(from),
                        id,
                        payload: None,
                        error: errors::bad_request(format!("malformed IQ: {e}")),
                    })
                    .await;
                }
                return;
            }
        };
        let (from, to, id, set, payload) = match iq {
            Iq::Get {
                from,
                to,
                id,
                payload,
            } => (from, to, id, false, payload),
            Iq::Set {
                from,
                to,
                id,
                payload,
            } => (from, to, id, true, payload),
            // Answers to our own requests.
            Iq::Result { id, payload, .. } => {
                self.iq_answered(&id, Ok(payload));
                return;
            }
            Iq::Error { id, error, .. } => {
                self.iq_answered(&id, Err(error.defined_condition));
                return;
            }
        };
        let (Some(from), Some(to)) = (from, to) else {
            debug!("IQ without from/to ignored");
            return;
        };
        let req = Request {
            from,
            to,
            id,
            set,
            payload,
        };
        match self.route_iq(&req).await {
            Ok(Routed::Now(payload)) => self.answer(&req, Ok(payload)).await,
            Ok(Routed::Later(pending)) => self.answer_later(req, pending).await,
            Err(error) => self.answer(&req, Err(error)).await,
        }
    }

    /// Answers `req` from a task of its own, so that neither the user's next stanzas nor
    /// anyone else's wait for the network; at most [`DETACHED`](super::workers::DETACHED)
    /// at once per user, one more is answered with `resource-constraint`.
    async fn answer_later(self: &Arc<Self>, req: Request, pending: Pending) {
        let user = req.user().to_string();
        let Some(slot) = self.detached.try_take(&user) else {
            super::bump(&self.stats.refused);
            warn!(bridge = %self.bridge, user, id = %req.id, "refused a request: its user has too many waiting on the network");
            self.answer(&req, Err(super::busy_error())).await;
            return;
        };
        let gateway = Arc::clone(self);
        let answering = async move {
            let answer = gateway.finish(&req, pending).await;
            gateway.answer(&req, answer).await;
            drop(slot);
        };
        tokio::spawn(answering.instrument(tracing::Span::current()));
    }

    /// The answer to a request that waits on the network.
    async fn finish(
        self: &Arc<Self>,
        req: &Request,
        pending: Pending,
    ) -> Result<Option<Element>, StanzaError> {
        let q = Element::builder("query", ns::DISCO_ITEMS).build();
        match pending {
            Pending::Rooms(session) => {
                let rooms = session
                    .client
                    .list_rooms()
                    .await
                    .map_err(|e| errors::from_bridge(&e))?;
                self.room_items(q, req, rooms)
            }
            Pending::ServiceRooms(session, service) => {
                let rooms = session
                    .client
                    .list_service_rooms(&service)
                    .await
                    .map_err(|e| errors::from_bridge(&e))?;
                self.room_items(q, req, rooms)
            }
            Pending::Admin(room) => self.handle_muc_admin(req, &room).await,
            Pending::Version(session, room, nick) => {
                let v = session
                    .client
                    .member_version(room, nick)
                    .await
                    .map_err(|e| errors::from_bridge(&e))?;
                Ok(Some(version_query(&v.name, &v.version, v.os.as_deref())))
            }
        }
    }

    /// Hands the answer to an IQ the gateway sent to whoever waits for it.
    fn iq_answered(&self, id: &str, answer: Result<Option<Element>, DefinedCondition>) {
        let waiter = super::session::lock(&self.iq_waiters).remove(id);
        if let Some(tx) = waiter {
            let _ = tx.send(answer);
        }
    }

    /// Whether the full JID `resource` is still online: a XEP-0199 ping, answered by the
    /// client (a result, or an error other than the server's "no such resource"), means yes;
    /// the server's `service-unavailable`/`item-not-found`/`recipient-unavailable`, or no
    /// answer within `wait`, means it went offline. Must not be awaited on the user's own
    /// stanza worker (the answer arrives there).
    pub(super) async fn resource_online(&self, resource: &Jid, wait: std::time::Duration) -> bool {
        let id = format!("estuary-ping-{}", uuid::Uuid::new_v4());
        let (tx, rx) = tokio::sync::oneshot::channel();
        super::session::lock(&self.iq_waiters).insert(id.clone(), tx);
        self.send(Iq::Get {
            from: Some(self.jid()),
            to: Some(resource.clone()),
            id: id.clone(),
            payload: Element::builder("ping", ns::PING).build(),
        })
        .await;
        let answer = tokio::time::timeout(wait, rx).await;
        super::session::lock(&self.iq_waiters).remove(&id);
        match answer {
            Ok(Ok(Ok(_))) => true,
            Ok(Ok(Err(condition))) => !matches!(
                condition,
                DefinedCondition::ServiceUnavailable
                    | DefinedCondition::ItemNotFound
                    | DefinedCondition::RecipientUnavailable
            ),
            Ok(Err(_)) | Err(_) => false,
        }
    }

    /// Sends the result or error for a request.
    pub(super) async fn answer(&self, req: &Request, answer: Result<Option<Element>, StanzaError>) {
        let iq = match answer {
            Ok(payload) => Iq::Result {
                from: Some(req.to.clone()),
                to: Some(req.from.clone()),
                id: req.id.clone(),
                payload,
            },
            Err(error) => {
                let mut el: Element = Iq::Error {
                    from: Some(req.to.clone()),
                    to: Some(req.from.clone()),
                    id: req.id.clone(),
                    payload: None,
                    error,
                }
                .into();
                // XEP-0050: a command's error names the command (and its session).
                if let Some(command) = super::adhoc::command_echo(&req.payload) {
                    el.append_child(command);
                }
                self.send(el).await;
                return;
            }
        };
        self.send(iq).await;
    }

    /// Answers a request, or says what its answer waits for.
    async fn route_iq(self: &Arc<Self>, req: &Request) -> Result<Routed, StanzaError> {
        let p = &req.payload;
        let payload_ns = p.ns();
        let target = self.target(&req.to).map_err(|e| errors::from_bridge(&e))?;
        let now = match (&target, payload_ns.as_str(), p.name(), req.set) {
            (_, ns::PING, "ping", false) => self.ping(req, &target),
            (Target::Domain, ns::DISCO_INFO, "query", false) => self.disco_info_domain(req),
            (Target::Domain, ns::DISCO_ITEMS, "query", false) => {
                return self.disco_items_domain(req).await;
            }
            (Target::Domain | Target::Chat(ChatKey::Room(_)), ns::VERSION, "query", false) => {
                Ok(Some(version()))
            }
            (Target::Domain, ns::REGISTER, "query", _) => self.handle_register(req).await,
            (Target::Domain, ns::GATEWAY, "query", _) => self.handle_gateway_iq(req).await,
            (Target::Domain, ns::COMMANDS, "command", true) => {
                self.handle_command(req, &CommandTarget::Gateway).await
            }
            (Target::Chat(ChatKey::Service(s)), ns::REGISTER, "query", _) => {
                self.handle_service_register(req, s).await
            }
            (Target::Chat(ChatKey::Service(s)), ns::COMMANDS, "command", true) => {
                self.handle_command(req, &CommandTarget::Service(s.clone()))
                    .await
            }
            (Target::Chat(ChatKey::Room(r)), ns::COMMANDS, "command", true) => {
                self.handle_command(req, &CommandTarget::Room(r.clone()))
                    .await
            }
            (Target::Chat(ChatKey::Room(r)), ns::MUC_OWNER, "query", _) => {
                self.handle_room_owner(req, &CommandTarget::Room(r.clone()))
                    .await
            }
            (Target::Chat(chat), ns::DISCO_INFO, "query", false) => {
                self.disco_info_chat(chat, p.attr("node"), &req.user())
            }
            (Target::Chat(ChatKey::Service(s)), ns::DISCO_ITEMS, "query", false) => {
                let mut q = Element::builder("query", ns::DISCO_ITEMS).build();
                match p.attr("node") {
                    Some(ns::COMMANDS) => {
                        crate::xmpp::el::set(&mut q, "node", ns::COMMANDS);
                        let on = CommandTarget::Service(s.clone());
                        let jid = req.to.to_bare().to_string();
                        for item in self.command_items(&on, &jid, &req.user()) {
                            q.append_child(item);
                        }
                    }
                    Some(node) => {
                        return Err(errors::item_not_found(format!("no node {node} here")));
                    }
                    // No node: the service's rooms.
                    None => return self.disco_items_service(req, s).await,
                }
                Ok(Some(q))
            }
            (Target::Chat(ChatKey::Room(r)), ns::DISCO_ITEMS, "query", false)
                if p.attr("node") == Some(ns::COMMANDS) =>
            {
                let mut q = Element::builder("query", ns::DISCO_ITEMS)
                    .attr(a("node"), ns::COMMANDS)
                    .build();
                let on = CommandTarget::Room(r.clone());
                let jid = req.to.to_bare().to_string();
                for item in self.command_items(&on, &jid, &req.user()) {
                    q.append_child(item);
                }
                Ok(Some(q))
            }
            (Target::Chat(_), ns::DISCO_ITEMS, "query", false) => {
                Ok(Some(Element::builder("query", ns::DISCO_ITEMS).build()))
            }
            (Target::Chat(ChatKey::Room(room)), ns::MAM, "query", true) => {
                self.handle_mam(req, room).await
            }
            (Target::Chat(ChatKey::Room(_)), ns::MAM, "query", false) => Ok(Some(mam_form())),
            (Target::Chat(ChatKey::Room(room)), ns::MUC_ADMIN, "query", true) => {
                return Ok(Routed::Later(Pending::Admin(room.clone())));
            }
            (Target::Occupant(room, nick), ns::VERSION, "query", false) => {
                let session = self.session(req.user().as_str()).ok_or_else(|| {
                    errors::not_acceptable("you are not in this room: join it first")
                })?;
                // One's own occupant is the gateway on the network (what others there get
                // when they ask it): the gateway answers for itself, with no round trip.
                let own = session
                    .rooms()
                    .get(room)
                    .is_some_and(|r| r.joined && r.nick == *nick);
                if own {
                    return Ok(Routed::Now(Some(version())));
                }
                return Ok(Routed::Later(Pending::Version(
                    session,
                    room.clone(),
                    nick.clone(),
                )));
            }
            (Target::Chat(ChatKey::Direct(u)), xavatar::VCARD, "vCard", false) => {
                self.vcard_answer(req.user().as_str(), ProfileKind::Contact, u.as_str())
                    .await
            }
            (Target::Chat(ChatKey::Room(r)), xavatar::VCARD, "vCard", false) => {
                self.vcard_answer(req.user().as_str(), ProfileKind::Room, r.as_str())
                    .await
            }
            (Target::Occupant(room, nick), xavatar::VCARD, "vCard", false) => {
                self.occupant_vcard(req.user().as_str(), room, nick).await
            }
            (Target::Chat(ChatKey::Direct(u)), xavatar::PUBSUB, "pubsub", false) => {
                self.pep_answer(req.user().as_str(), u, p).await
            }
            (Target::Occupant(_, _), ns::DISCO_INFO, "query", false) => Err(
                errors::service_unavailable("occupants do not answer service discovery"),
            ),
            _ => Err(errors::service_unavailable(format!(
                "{} does not answer <{}/> in {} here",
                req.to,
                p.name(),
                payload_ns
            ))),
        };
        now.map(Routed::Now)
    }

    /// XEP-0199 ping, and XEP-0410 MUC self-ping: an occupant answers only to a resource that
    /// is joined under that nick, so clients rejoin after a gateway restart.
    fn ping(&self, req: &Request, target: &Target) -> Result<Option<Element>, StanzaError> {
        if let Target::Occupant(room, nick) = target {
            let joined = self.session(req.user().as_str()).is_some_and(|s| {
                s.rooms().get(room).is_some_and(|r| {
                    r.joined && r.nick == *nick && r.resources.contains(&req.from.to_string())
                })
            });
            if !joined {
                return Err(errors::not_acceptable(
                    "you are not joined to this room under this nick: join again",
                ));
            }
        }
        Ok(None)
    }

    fn disco_info_domain(&self, req: &Request) -> Result<Option<Element>, StanzaError> {
        match req.payload.attr("node") {
            None => Ok(Some(self.disco.to_element(None))),
            // The node#ver of the gateway's own presences (XEP-0115).
            Some(node) if disco::is_caps_node(node, &self.caps_ver) => {
                Ok(Some(self.disco.to_element(Some(node))))
            }
            Some(node) if node == ns::COMMANDS => Ok(Some(
                disco::DiscoInfo {
                    identity: (
                        "automation".into(),
                        "command-list".into(),
                        "Commands".into(),
                    ),
                    features: vec![ns::COMMANDS.into()],
                }
                .to_element(Some(node)),
            )),
            Some(node) => match self.command(&CommandTarget::Gateway, node, &req.user()) {
                Some(cmd) => Ok(Some(
                    disco::DiscoInfo {
                        identity: ("automation".into(), "command-node".into(), cmd.name),
                        features: vec![ns::COMMANDS.into(), ns::DATA_FORMS.into()],
                    }
                    .to_element(Some(node)),
                )),
                None => Err(errors::item_not_found(format!("no node {node} here"))),
            },
        }
    }

    /// disco#items on the domain: its commands, or the rooms of the servers the user is
    /// connected to (waits on the network).
    async fn disco_items_domain(self: &Arc<Self>, req: &Request) -> Result<Routed, StanzaError> {
        let mut q = Element::builder("query", ns::DISCO_ITEMS).build();
        let node = req.payload.attr("node");
        if node == Some(ns::COMMANDS) {
            crate::xmpp::el::set(&mut q, "node", ns::COMMANDS);
            for item in self.command_items(&CommandTarget::Gateway, &self.domain, &req.user()) {
                q.append_child(item);
            }
            return Ok(Routed::Now(Some(q)));
        }
        if node.is_some() {
            return Err(errors::item_not_found("no such node"));
        }
        if !(self.caps.groups && self.caps.room_list) {
            return Ok(Routed::Now(Some(q)));
        }
        let Some(session) = self.session(req.user().as_str()) else {
            return Ok(Routed::Now(Some(q))); // rooms are listed once the user has a login
        };
        Ok(Routed::Later(Pending::Rooms(session)))
    }

    /// disco#items (no node) on a service's JID (an IRC server): its rooms, paged by
    /// XEP-0059 (waits on the network). The session is opened here, in the worker, so that
    /// requests sent together never open two.
    async fn disco_items_service(
        self: &Arc<Self>,
        req: &Request,
        service: &str,
    ) -> Result<Routed, StanzaError> {
        if !(self.caps.groups && self.caps.room_list) {
            return Ok(Routed::Now(Some(
                Element::builder("query", ns::DISCO_ITEMS).build(),
            )));
        }
        let session = self.session_or_open(req.user().as_str()).await?;
        Ok(Routed::Later(Pending::ServiceRooms(
            session,
            service.to_owned(),
        )))
    }

    /// Fills a disco#items answer with the page of `rooms` the request's `<set/>` asks for.
    fn room_items(
        &self,
        mut q: Element,
        req: &Request,
        rooms: Vec<estuary_bridge_api::RoomInfo>,
    ) -> Result<Option<Element>, StanzaError> {
        let items: Vec<(String, String)> = rooms
            .into_iter()
            .filter_map(|r| {
                let jid = self.chat_jid(&ChatKey::Room(r.id.clone()))?;
                Some((jid.to_string(), room_item_name(&r)))
            })
            .collect();
        let page = rsm_page(&items, req.payload.get_child("set", ns::RSM))?;
        for (jid, name) in &items[page.range.clone()] {
            q.append_child(
                Element::builder("item", ns::DISCO_ITEMS)
                    .attr(a("jid"), jid.clone())
                    .attr(a("name"), name.clone())
                    .build(),
            );
        }
        if let Some(set) = page.set {
            q.append_child(set);
        }
        Ok(Some(q))
    }

    fn disco_info_chat(
        &self,
        chat: &ChatKey,
        node: Option<&str>,
        user: &BareJid,
    ) -> Result<Option<Element>, StanzaError> {
        let on = match chat {
            ChatKey::Room(r) => Some(CommandTarget::Room(r.clone())),
            ChatKey::Service(s) => Some(CommandTarget::Service(s.clone())),
            ChatKey::Direct(_) => None,
        };
        // A command's node on a room or a service.
        if let (Some(on), Some(node)) = (&on, node)
            && node != ns::COMMANDS
            && let Some(cmd) = self.command(on, node, user)
        {
            return Ok(Some(
                disco::DiscoInfo {
                    identity: ("automation".into(), "command-node".into(), cmd.name),
                    features: vec![ns::COMMANDS.into(), ns::DATA_FORMS.into()],
                }
                .to_element(Some(node)),
            ));
        }
        Ok(Some(match chat {
            ChatKey::Room(r) => {
                let profile = self
                    .profiles
                    .get(user.as_str(), ProfileKind::Room, r.as_str());
                let name = profile
                    .as_ref()
                    .and_then(|p| p.name.clone())
                    .unwrap_or_else(|| self.connector.room_display_name(r));
                let hash = profile.and_then(|p| p.avatar).map(|a| a.hash);
                let mut info = disco::room(&self.info, &self.caps, &name);
                if hash.is_some() {
                    info.add_feature(xavatar::VCARD);
                }
                let mut q = info.to_element(node);
                // The user's own room: how many are in it (as Biboumi tells it).
                let occupants = self.session(user.as_str()).and_then(|s| {
                    s.rooms()
                        .get(r)
                        .filter(|room| room.joined)
                        .map(|room| room.members.len())
                });
                // One muc#roominfo form: the count and the XEP-0486 avatar hash.
                if let Some(form) = disco::room_info_form(occupants, hash.as_deref()) {
                    q.append_child(form);
                }
                q
            }
            ChatKey::Direct(u) => {
                disco::contact(&self.info, &self.caps, u.as_str()).to_element(node)
            }
            ChatKey::Service(s) => {
                let configurable = !self.service_fields(s).is_empty();
                let mut features = vec![ns::DISCO_INFO.into(), ns::COMMANDS.into()];
                if configurable {
                    features.push(ns::REGISTER.into());
                }
                disco::DiscoInfo {
                    identity: ("gateway".into(), self.info.disco_type.clone(), s.clone()),
                    features,
                }
                .to_element(node)
            }
        }))
    }
}

/// A room's name in a room list: `#rust (42): the topic`, parts that are unknown left out.
fn room_item_name(room: &estuary_bridge_api::RoomInfo) -> String {
    let mut name = room.name.clone();
    if let Some(n) = room.members {
        name.push_str(&format!(" ({n})"));
    }
    if let Some(topic) = room
        .topic
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        name.push_str(": ");
        name.push_str(topic);
    }
    name
}

/// XEP-0092 answer.
fn version() -> Element {
    version_query("Estuary", env!("CARGO_PKG_VERSION"), None)
}

/// A XEP-0092 answer.
fn version_query(name: &str, version: &str, os: Option<&str>) -> Element {
    tokio_xmpp::parsers::version::VersionResult {
        name: name.to_owned(),
        version: version.to_owned(),
        os: os.map(str::to_owned),
    }
    .into()
}

/// The XEP-0313 query form (fields a room archive can filter on).
fn mam_form() -> Element {
    let field = |var: &'static str, type_: &'static str| {
        Element::builder("field", ns::DATA_FORMS)
            .attr(a("var"), var)
            .attr(a("type"), type_)
            .build()
    };
    let mut x = Element::builder("x", ns::DATA_FORMS)
        .attr(a("type"), "form")
        .build();
    let mut form_type = field("FORM_TYPE", "hidden");
    form_type.append_child(
        Element::builder("value", ns::DATA_FORMS)
            .append(ns::MAM)
            .build(),
    );
    x.append_child(form_type);
    x.append_child(field("with", "jid-single"));
    x.append_child(field("start", "text-single"));
    x.append_child(field("end", "text-single"));
    Element::builder("query", ns::MAM).append(x).build()
}

/// One XEP-0059 page of a list keyed by its first column.
#[derive(Debug)]
struct Page {
    /// The items on the page.
    range: std::ops::Range<usize>,
    /// The `<set/>` to answer with, when the request asked for paging.
    set: Option<Element>,
}

/// The most items a list gives when the request has no `<set/>` (Biboumi's default
/// channel-list limit).
const DEFAULT_PAGE: usize = 100;

/// Cuts `items` by the request's `<set/>` (`max`, `after`, `before`, `index`); without one,
/// everything up to [`DEFAULT_PAGE`], else that first page with a `<set/>`. An `after`/`before` key that is not in the list is `item-not-found`.
fn rsm_page(items: &[(String, String)], set: Option<&Element>) -> Result<Page, StanzaError> {
    let Some(set) = set else {
        if items.len() > DEFAULT_PAGE {
            // A long list without a <set/> is cut to its first page, with a <set/> that
            // says how many there are and where to go on (as Biboumi does).
            let first = Element::builder("set", ns::RSM)
                .append(
                    Element::builder("max", ns::RSM)
                        .append(DEFAULT_PAGE.to_string())
                        .build(),
                )
                .build();
            return rsm_page(items, Some(&first));
        }
        return Ok(Page {
            range: 0..items.len(),
            set: None,
        });
    };
    let child = |name: &str| set.get_child(name, ns::RSM).map(|c| c.text());
    let max = match child("max") {
        Some(m) => m
            .trim()
            .parse::<usize>()
            .map_err(|_| errors::bad_request("<max/> must be a number"))?,
        None => items.len(),
    };
    let position = |key: &str| {
        items.iter().position(|(k, _)| k == key).ok_or_else(|| {
            errors::item_not_found(format!(
                "{key} is not in the list (it may have changed): start again"
            ))
        })
    };
    let range = if let Some(after) = child("after") {
        let start = position(&after)? + 1;
        start..(start + max).min(items.len())
    } else if let Some(before) = child("before") {
        let end = if before.is_empty() {
            items.len()
        } else {
            position(&before)?
        };
        end.saturating_sub(max)..end
    } else {
        let start = child("index")
            .and_then(|i| i.trim().parse::<usize>().ok())
            .unwrap_or(0)
            .min(items.len());
        start..(start + max).min(items.len())
    };
    let mut out = Element::builder("set", ns::RSM).build();
    if let (Some(first), Some(last)) = (
        items.get(range.start),
        range.end.checked_sub(1).and_then(|l| items.get(l)),
    ) && !range.is_empty()
    {
        out.append_child(
            Element::builder("first", ns::RSM)
                .attr(a("index"), range.start.to_string())
                .append(first.0.as_str())
                .build(),
        );
        out.append_child(
            Element::builder("last", ns::RSM)
                .append(last.0.as_str())
                .build(),
        );
    }
    out.append_child(
        Element::builder("count", ns::RSM)
            .append(items.len().to_string())
            .build(),
    );
    Ok(Page {
        range,
        set: Some(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("#r{i}@gw"), format!("r{i}")))
            .collect()
    }

    fn set(xml: &str) -> Element {
        format!("<set xmlns='http://jabber.org/protocol/rsm'>{xml}</set>")
            .parse()
            .unwrap()
    }

    #[test]
    fn room_names_show_members_and_topic() {
        let room = |members, topic: Option<&str>| estuary_bridge_api::RoomInfo {
            id: estuary_bridge_api::RemoteChatId::new("#rust%irc.test"),
            name: "#rust".into(),
            members,
            topic: topic.map(str::to_owned),
        };
        assert_eq!(
            room_item_name(&room(Some(42), Some("Rust!"))),
            "#rust (42): Rust!"
        );
        assert_eq!(room_item_name(&room(Some(3), Some("  "))), "#rust (3)");
        assert_eq!(room_item_name(&room(None, None)), "#rust");
    }

    #[test]
    fn without_a_set_everything_is_listed() {
        let p = rsm_page(&items(5), None).unwrap();
        assert_eq!(p.range, 0..5);
        assert!(p.set.is_none());
        let p = rsm_page(&items(DEFAULT_PAGE), None).unwrap();
        assert_eq!(p.range, 0..DEFAULT_PAGE);
        assert!(p.set.is_none());
    }

    #[test]
    fn without_a_set_a_long_list_gives_its_first_page() {
        let all = items(150);
        let p = rsm_page(&all, None).unwrap();
        assert_eq!(p.range, 0..100);
        let set = String::from(&p.set.expect("a <set/> saying there is more"));
        assert!(set.contains(">150</count>"), "{set}");
        assert!(set.contains(&format!(">{}</last>", all[99].0)), "{set}");
    }

    #[test]
    fn pages_forward_and_backward() {
        let all = items(5);
        let first = rsm_page(&all, Some(&set("<max>2</max>"))).unwrap();
        assert_eq!(first.range, 0..2);
        let xml = String::from(&first.set.unwrap());
        assert!(
            xml.contains("<count>5</count>") && xml.contains("<last>#r1@gw</last>"),
            "{xml}"
        );
        assert_eq!(
            rsm_page(&all, Some(&set("<max>2</max><after>#r1@gw</after>")))
                .unwrap()
                .range,
            2..4
        );
        assert_eq!(
            rsm_page(&all, Some(&set("<max>2</max><after>#r3@gw</after>")))
                .unwrap()
                .range,
            4..5
        );
        assert_eq!(
            rsm_page(&all, Some(&set("<max>2</max><before/>")))
                .unwrap()
                .range,
            3..5
        );
        assert_eq!(
            rsm_page(&all, Some(&set("<max>2</max><before>#r1@gw</before>")))
                .unwrap()
                .range,
            0..1
        );
        assert_eq!(
            rsm_page(&all, Some(&set("<max>2</max><index>4</index>")))
                .unwrap()
                .range,
            4..5
        );
        assert_eq!(
            rsm_page(&all, Some(&set("<max>0</max>"))).unwrap().range,
            0..0
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let all = items(3);
        assert!(rsm_page(&all, Some(&set("<max>many</max>"))).is_err());
        assert!(rsm_page(&all, Some(&set("<after>#gone@gw</after>"))).is_err());
        assert!(
            rsm_page(&all, Some(&set("<index>99</index>")))
                .unwrap()
                .range
                .is_empty()
        );
    }
}
