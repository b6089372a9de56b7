//! The address codec: JID local parts ↔ IRC channels, nicks and servers, as Biboumi spells them.
//!
//! The core hands this module *unescaped* local parts (XEP-0106 escaping is the core's job)
//! and gets unescaped local parts back. Everything here is pure.
//!
//! # Syntax
//!
//! With the gateway on `irc.gw` and no fixed server:
//!
//! | JID | local part | means | [`ChatKey`] |
//! | --- | --- | --- | --- |
//! | `#rust%irc.libera.chat@irc.gw` | `#rust%irc.libera.chat` | channel `#rust` on `irc.libera.chat` | `Room("#rust%irc.libera.chat")` |
//! | `#rust%irc.libera.chat@irc.gw/alice` | (same room) | occupant `alice` of that channel | (the core handles resources) |
//! | `&local%irc.example.org@irc.gw` | `&local%irc.example.org` | server-local channel `&local` | `Room("&local%irc.example.org")` |
//! | `alice%irc.libera.chat@irc.gw` | `alice%irc.libera.chat` | the user `alice` (private chat) | `Direct("alice%irc.libera.chat")` |
//! | `irc.libera.chat@irc.gw` | `irc.libera.chat` | the IRC server itself (MOTD, notices, raw commands) | `Service("irc.libera.chat")` |
//!
//! The separator is the **last** `%`: the server part is what follows it, so a channel name
//! may itself hold a `%` (`#50%off%irc.example.org` is `#50%off` on `irc.example.org`).
//! A local part whose name part starts with `#`, `&`, `+` or `!` is a channel; anything else
//! is a nick.
//!
//! With `fixed_server = "irc.libera.chat"` the `%server` part is dropped, as in Biboumi:
//!
//! | JID | local part | [`ChatKey`] |
//! | --- | --- | --- |
//! | `#rust@irc.gw` | `#rust` | `Room("#rust%irc.libera.chat")` |
//! | `alice@irc.gw` | `alice` | `Direct("alice%irc.libera.chat")` |
//! | `irc.gw` | (empty) | `Service("irc.libera.chat")` |
//!
//! A trailing `%irc.libera.chat` is still accepted there (and dropped); a trailing
//! `%other.server` (with a dot) is refused, while `#50%off` stays the channel `#50%off`.
//!
//! # Identifiers
//!
//! Ids always carry the server, whatever the gateway's mode, so that stored ids survive a
//! change of `fixed_server`:
//!
//! * [`RemoteChatId`]: `#chan%server`, the channel's ASCII letters lower-cased and the
//!   server lower-cased (`#Rust%IRC.Libera.Chat` → `#rust%irc.libera.chat`);
//! * [`RemoteUserId`]: `nick%server`, folded the same way (`Alice[m]` → `alice[m]`).
//!
//! Ids fold with [`ID_FOLDING`], which is what XMPP does to local parts anyway (nodeprep
//! lower-cases them), so the JID a user joined is the JID they see, and a channel is
//! joined as the user spelled it (`JOIN #a[x]`, right on `ascii` and `rfc1459` servers
//! alike). Which names are *one* channel or nick on IRC is the server's `CASEMAPPING`
//! (ISUPPORT, `rfc1459` when unsaid): the IRC session compares with it, so `#A[x]` and
//! `#a{x}` are one channel under `rfc1459`, joined once, and each spelling the user joined
//! it as is a room that gets the channel's events; `Nick` and `nick` are one contact.
//!
//! # Errors
//!
//! Anything that cannot be an IRC channel, nick or server — an empty name, a space, a comma,
//! a control character (CR, LF and NUL above all, which would break the IRC line), a missing
//! server — is refused with [`ErrorKind::NotAcceptable`](estuary_bridge_api::ErrorKind) and a
//! text that shows the syntax expected.

use estuary_bridge_api::{BridgeError, ChatKey, RemoteChatId, RemoteUserId, Result};

/// The characters that start a channel name.
pub const CHANNEL_PREFIXES: [char; 4] = ['#', '&', '+', '!'];

/// The longest channel name accepted, in bytes (servers usually allow 32 to 64).
pub const MAX_CHANNEL_BYTES: usize = 200;
/// The longest nick accepted, in bytes (servers usually allow 9 to 32).
pub const MAX_NICK_BYTES: usize = 64;
/// The longest server name accepted, in bytes (a DNS name).
pub const MAX_SERVER_BYTES: usize = 253;

/// How ids fold names: ASCII letters only, as XMPP's nodeprep does to local parts. The
/// server's own [`CaseMapping`] decides what is one channel inside a session.
pub const ID_FOLDING: CaseMapping = CaseMapping::Ascii;

/// How a server compares names (the `CASEMAPPING` ISUPPORT token).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CaseMapping {
    /// `A-Z` ↔ `a-z` only.
    Ascii,
    /// `A-Z[]\~` ↔ `a-z{}|^`: RFC 1459's rule, the default when the server says nothing.
    #[default]
    Rfc1459,
    /// `A-Z[]\` ↔ `a-z{}|` (no `~`/`^`).
    StrictRfc1459,
}

impl CaseMapping {
    /// Reads an ISUPPORT `CASEMAPPING` value; unknown values (e.g. `rfc7613`) fold as
    /// [`CaseMapping::Rfc1459`], which is a superset of ASCII folding for ASCII names.
    pub fn from_isupport(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "ascii" => Self::Ascii,
            "strict-rfc1459" => Self::StrictRfc1459,
            _ => Self::Rfc1459,
        }
    }

    /// Folds one character.
    pub fn fold_char(self, c: char) -> char {
        match (self, c) {
            (_, 'A'..='Z') => c.to_ascii_lowercase(),
            (Self::Rfc1459 | Self::StrictRfc1459, '[') => '{',
            (Self::Rfc1459 | Self::StrictRfc1459, ']') => '}',
            (Self::Rfc1459 | Self::StrictRfc1459, '\\') => '|',
            (Self::Rfc1459, '~') => '^',
            _ => c,
        }
    }

    /// Folds a name (channel or nick) so that names the server considers equal are equal.
    ///
    /// ```
    /// use estuary_bridge_irc::address::CaseMapping;
    /// assert_eq!(CaseMapping::Rfc1459.fold("#Foo[1]~"), "#foo{1}^");
    /// assert_eq!(CaseMapping::StrictRfc1459.fold("#Foo[1]~"), "#foo{1}~");
    /// assert_eq!(CaseMapping::Ascii.fold("#Foo[1]~"), "#foo[1]~");
    /// ```
    pub fn fold(self, name: &str) -> String {
        name.chars().map(|c| self.fold_char(c)).collect()
    }
}

/// What a local part names, with the names as given (not folded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A channel on a server.
    Channel {
        /// The channel, prefix included (`#rust`).
        channel: String,
        /// The server (lower-cased).
        server: String,
    },
    /// A user on a server.
    Nick {
        /// The nick.
        nick: String,
        /// The server (lower-cased).
        server: String,
    },
    /// The server itself.
    Server(String),
}

impl Address {
    /// The server this address lives on.
    pub fn server(&self) -> &str {
        match self {
            Self::Channel { server, .. } | Self::Nick { server, .. } | Self::Server(server) => {
                server
            }
        }
    }

    /// The neutral key for this address, names folded with `casemapping`.
    pub fn chat_key(&self, casemapping: CaseMapping) -> ChatKey {
        match self {
            Self::Channel { channel, server } => {
                ChatKey::Room(room_id(channel, server, casemapping))
            }
            Self::Nick { nick, server } => ChatKey::Direct(user_id(nick, server, casemapping)),
            Self::Server(server) => ChatKey::Service(server.clone()),
        }
    }
}

/// The syntax reminder appended to every error.
fn syntax_hint(fixed_server: Option<&str>) -> String {
    match fixed_server {
        None => "Use #channel%irc.server for a channel, nick%irc.server for a person, \
                 or irc.server for the server itself (e.g. #rust%irc.libera.chat)."
            .to_owned(),
        Some(server) => format!(
            "This gateway serves only {server}: use #channel for a channel and nick for a \
             person (e.g. #rust or alice)."
        ),
    }
}

fn refuse(what: String, fixed_server: Option<&str>) -> BridgeError {
    BridgeError::not_acceptable(format!("{what} {}", syntax_hint(fixed_server)))
}

/// Whether `name` starts like a channel.
pub fn is_channel_name(name: &str) -> bool {
    name.starts_with(CHANNEL_PREFIXES)
}

/// Why `name` cannot be an IRC channel name, if it cannot.
pub fn check_channel(name: &str) -> Option<String> {
    if !is_channel_name(name) {
        return Some(format!(
            "“{name}” is not a channel: a channel starts with #, &, + or !."
        ));
    }
    if name.chars().count() < 2 {
        return Some("A channel name needs at least one character after its prefix.".into());
    }
    if name.len() > MAX_CHANNEL_BYTES {
        return Some(format!(
            "The channel name is longer than {MAX_CHANNEL_BYTES} bytes."
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == ' ' || c == ',' || c.is_control())
    {
        return Some(format!(
            "A channel name may not contain {}.",
            describe_char(c)
        ));
    }
    None
}

/// Why `nick` cannot be an IRC nick, if it cannot.
pub fn check_nick(nick: &str) -> Option<String> {
    if nick.is_empty() {
        return Some("The nick is empty.".into());
    }
    if nick.len() > MAX_NICK_BYTES {
        return Some(format!("The nick is longer than {MAX_NICK_BYTES} bytes."));
    }
    if is_channel_name(nick) || nick.starts_with([':', '$']) {
        let first = nick.chars().next().unwrap_or(' ');
        return Some(format!("A nick may not start with “{first}”."));
    }
    if let Some(c) = nick.chars().find(|&c| {
        matches!(c, ' ' | ',' | '!' | '@' | '%' | '*' | '?') || c.is_control() || c == '.'
    }) {
        return Some(format!("A nick may not contain {}.", describe_char(c)));
    }
    None
}

/// Why `server` cannot be an IRC server name, if it cannot.
pub fn check_server(server: &str) -> Option<String> {
    if server.is_empty() {
        return Some("The IRC server is missing.".into());
    }
    if server.len() > MAX_SERVER_BYTES {
        return Some(format!(
            "The server name is longer than {MAX_SERVER_BYTES} bytes."
        ));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']');
    if let Some(c) = server.chars().find(|&c| !ok(c)) {
        return Some(format!(
            "“{}” is not a server name: it contains {}.",
            server.escape_debug(),
            describe_char(c)
        ));
    }
    if server.starts_with(['.', '-']) || server.ends_with('-') || server.contains("..") {
        return Some(format!("“{server}” is not a valid server name."));
    }
    None
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        ',' => "a comma".into(),
        '\r' => "a carriage return (CR)".into(),
        '\n' => "a line feed (LF)".into(),
        '\0' => "a NUL character".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("“{c}”"),
    }
}

/// Parses an unescaped local part on the component domain.
///
/// `fixed_server` is the gateway's `fixed_server` setting. See the module header for the
/// syntax and examples.
pub fn parse_local_part(local: &str, fixed_server: Option<&str>) -> Result<Address> {
    let (name, server) = match fixed_server {
        Some(fixed) => {
            let fixed = fixed.to_ascii_lowercase();
            if local.is_empty() {
                return Ok(Address::Server(fixed));
            }
            match local.rsplit_once('%') {
                Some((name, srv)) if srv.eq_ignore_ascii_case(&fixed) => (name, fixed),
                Some((_, srv))
                    if !is_channel_name(local)
                        || (srv.contains('.') && check_server(srv).is_none()) =>
                {
                    return Err(refuse(
                        format!("“{}” names another IRC server.", local.escape_debug()),
                        fixed_server,
                    ));
                }
                _ => (local, fixed),
            }
        }
        None => match local.rsplit_once('%') {
            Some((name, srv)) => {
                if let Some(why) = check_server(srv) {
                    return Err(refuse(why, fixed_server));
                }
                (name, srv.to_ascii_lowercase())
            }
            None => {
                if local.is_empty() {
                    return Err(refuse(
                        "The address has no IRC server.".into(),
                        fixed_server,
                    ));
                }
                if is_channel_name(local) {
                    return Err(refuse(
                        format!("“{}” has no IRC server.", local.escape_debug()),
                        fixed_server,
                    ));
                }
                if let Some(why) = check_server(local) {
                    return Err(refuse(why, fixed_server));
                }
                return Ok(Address::Server(local.to_ascii_lowercase()));
            }
        },
    };
    if is_channel_name(name) {
        if let Some(why) = check_channel(name) {
            return Err(refuse(why, fixed_server));
        }
        Ok(Address::Channel {
            channel: name.to_owned(),
            server,
        })
    } else {
        if let Some(why) = check_nick(name) {
            return Err(refuse(why, fixed_server));
        }
        Ok(Address::Nick {
            nick: name.to_owned(),
            server,
        })
    }
}

/// The id of a channel: `#chan%server`, folded.
pub fn room_id(channel: &str, server: &str, casemapping: CaseMapping) -> RemoteChatId {
    RemoteChatId::new(format!(
        "{}%{}",
        casemapping.fold(channel),
        server.to_ascii_lowercase()
    ))
}

/// The id of a user: `nick%server`, folded.
pub fn user_id(nick: &str, server: &str, casemapping: CaseMapping) -> RemoteUserId {
    RemoteUserId::new(format!(
        "{}%{}",
        casemapping.fold(nick),
        server.to_ascii_lowercase()
    ))
}

/// Splits an id minted by [`room_id`] or [`user_id`] into `(name, server)`.
pub fn split_id(id: &str) -> Result<(&str, &str)> {
    id.rsplit_once('%')
        .filter(|(name, server)| !name.is_empty() && !server.is_empty())
        .ok_or_else(|| BridgeError::bad_request(format!("“{id}” is not an IRC id")))
}

/// Splits a room id into `(channel, server)`, checking that it is a valid channel.
pub fn parse_room_id(id: &RemoteChatId) -> Result<(&str, &str)> {
    let (channel, server) = split_id(id.as_str())?;
    if let Some(why) = check_channel(channel).or_else(|| check_server(server)) {
        return Err(BridgeError::bad_request(why));
    }
    Ok((channel, server))
}

/// Splits a user id into `(nick, server)`, checking that it is a valid nick.
pub fn parse_user_id(id: &RemoteUserId) -> Result<(&str, &str)> {
    let (nick, server) = split_id(id.as_str())?;
    if let Some(why) = check_nick(nick).or_else(|| check_server(server)) {
        return Err(BridgeError::bad_request(why));
    }
    Ok((nick, server))
}

/// The local part for an id (room or user): the id itself, or without `%server` when the
/// server is the gateway's fixed server.
pub fn local_part_for_id(id: &str, fixed_server: Option<&str>) -> String {
    match (fixed_server, id.rsplit_once('%')) {
        (Some(fixed), Some((name, server))) if server.eq_ignore_ascii_case(fixed) => {
            name.to_owned()
        }
        _ => id.to_owned(),
    }
}

/// A channel's name for people, as Biboumi gives it in the room's disco#info:
/// `#rust on irc.libera.chat` for the id `#rust%irc.libera.chat`; an id without a server
/// as it is.
pub fn room_display_name(id: &str) -> String {
    match id.rsplit_once('%') {
        Some((channel, server)) if !channel.is_empty() && !server.is_empty() => {
            format!("{channel} on {server}")
        }
        _ => id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_bridge_api::ErrorKind;

    #[test]
    fn a_room_is_named_channel_on_server() {
        assert_eq!(
            room_display_name("#rust%irc.libera.chat"),
            "#rust on irc.libera.chat"
        );
        // A channel name may itself hold a `%`; the server is after the last one.
        assert_eq!(
            room_display_name("#50%off%irc.example"),
            "#50%off on irc.example"
        );
        assert_eq!(room_display_name("#lonely"), "#lonely");
        assert_eq!(room_display_name("%irc.example"), "%irc.example");
    }

    fn parse(local: &str) -> Result<Address> {
        parse_local_part(local, None)
    }
    fn parse_fixed(local: &str) -> Result<Address> {
        parse_local_part(local, Some("irc.libera.chat"))
    }
    fn chan(c: &str, s: &str) -> Address {
        Address::Channel {
            channel: c.into(),
            server: s.into(),
        }
    }
    fn nick(n: &str, s: &str) -> Address {
        Address::Nick {
            nick: n.into(),
            server: s.into(),
        }
    }

    #[test]
    fn rooms_users_and_servers() {
        assert_eq!(
            parse("#rust%irc.libera.chat"),
            Ok(chan("#rust", "irc.libera.chat"))
        );
        assert_eq!(
            parse("alice%irc.libera.chat"),
            Ok(nick("alice", "irc.libera.chat"))
        );
        assert_eq!(
            parse("irc.libera.chat"),
            Ok(Address::Server("irc.libera.chat".into()))
        );
        assert_eq!(parse("localhost"), Ok(Address::Server("localhost".into())));
    }

    #[test]
    fn every_channel_prefix() {
        for p in ['#', '&', '+', '!'] {
            assert_eq!(
                parse(&format!("{p}chan%irc.example.org")),
                Ok(chan(&format!("{p}chan"), "irc.example.org"))
            );
        }
        assert_eq!(parse("##double%s.org"), Ok(chan("##double", "s.org")));
    }

    #[test]
    fn last_percent_separates() {
        assert_eq!(
            parse("#50%off%irc.example.org"),
            Ok(chan("#50%off", "irc.example.org"))
        );
    }

    #[test]
    fn server_is_lower_cased_names_are_kept() {
        assert_eq!(
            parse("#Rust%IRC.Libera.Chat"),
            Ok(chan("#Rust", "irc.libera.chat"))
        );
        assert_eq!(
            parse("IRC.Libera.Chat"),
            Ok(Address::Server("irc.libera.chat".into()))
        );
    }

    #[test]
    fn special_nick_characters() {
        for n in ["[m]bot", "a_b", "x|y", "Foo^", "{a}", "a-b", "\\o/"] {
            assert_eq!(parse(&format!("{n}%s.org")), Ok(nick(n, "s.org")), "{n}");
        }
    }

    #[test]
    fn ipv6_and_port_like_servers() {
        assert_eq!(parse("#a%[::1]"), Ok(chan("#a", "[::1]")));
        assert_eq!(parse("#a%127.0.0.1"), Ok(chan("#a", "127.0.0.1")));
    }

    fn refused(r: Result<Address>) -> String {
        match r {
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::NotAcceptable, "{e}");
                assert!(e.text.contains("#channel"), "no syntax hint in {}", e.text);
                e.text
            }
            Ok(a) => panic!("accepted: {a:?}"),
        }
    }

    #[test]
    fn bad_input_is_not_acceptable_with_syntax() {
        assert!(refused(parse("#rust")).contains("has no IRC server"));
        assert!(refused(parse("")).contains("no IRC server"));
        assert!(refused(parse("#rust%")).contains("server is missing"));
        assert!(refused(parse("%irc.libera.chat")).contains("nick is empty"));
        assert!(refused(parse("#%irc.libera.chat")).contains("at least one character"));
        assert!(refused(parse("#a b%s.org")).contains("a space"));
        assert!(refused(parse("#a,b%s.org")).contains("a comma"));
        assert!(refused(parse("#a\r\nQUIT%s.org")).contains("carriage return"));
        assert!(refused(parse("a\nb%s.org")).contains("line feed"));
        assert!(refused(parse("a\0%s.org")).contains("NUL"));
        assert!(refused(parse("#a\x07%s.org")).contains("U+0007"));
        assert!(refused(parse("a!b%s.org")).contains("“!”"));
        assert!(refused(parse("a@b%s.org")).contains("“@”"));
        assert!(refused(parse(":a%s.org")).contains("start with"));
        assert!(refused(parse("#a%bad server")).contains("a space"));
        assert!(refused(parse("#a%s..org")).contains("not a valid server"));
        assert!(refused(parse("#a%-s.org")).contains("not a valid server"));
        assert!(refused(parse("with space")).contains("a space"));
        refused(parse(&format!("#{}%s.org", "a".repeat(MAX_CHANNEL_BYTES))));
        refused(parse(&format!("{}%s.org", "a".repeat(MAX_NICK_BYTES + 1))));
        refused(parse(&format!("#a%{}", "a".repeat(MAX_SERVER_BYTES + 1))));
    }

    #[test]
    fn fixed_server_drops_the_server_part() {
        assert_eq!(parse_fixed("#rust"), Ok(chan("#rust", "irc.libera.chat")));
        assert_eq!(parse_fixed("alice"), Ok(nick("alice", "irc.libera.chat")));
        assert_eq!(
            parse_fixed(""),
            Ok(Address::Server("irc.libera.chat".into()))
        );
        assert_eq!(
            parse_fixed("#rust%IRC.libera.chat"),
            Ok(chan("#rust", "irc.libera.chat"))
        );
        // A '%' inside a channel name that is not a server stays in the name.
        assert_eq!(
            parse_fixed("#50%off"),
            Ok(chan("#50%off", "irc.libera.chat"))
        );
        let text = refused(parse_fixed("#rust%irc.oftc.net"));
        assert!(text.contains("serves only irc.libera.chat"), "{text}");
        refused(parse_fixed("alice%irc.oftc.net"));
        refused(parse_fixed("a b"));
    }

    #[test]
    fn casemapping_folds() {
        use CaseMapping::*;
        assert_eq!(Rfc1459.fold("ABC[]\\~xyz"), "abc{}|^xyz");
        assert_eq!(StrictRfc1459.fold("ABC[]\\~"), "abc{}|~");
        assert_eq!(Ascii.fold("ABC[]\\~"), "abc[]\\~");
        // Non-ASCII is left alone: servers compare it byte for byte.
        assert_eq!(Rfc1459.fold("#ÉTÉ"), "#ÉtÉ");
        assert_eq!(CaseMapping::from_isupport("ascii"), Ascii);
        assert_eq!(CaseMapping::from_isupport("RFC1459"), Rfc1459);
        assert_eq!(CaseMapping::from_isupport("strict-rfc1459"), StrictRfc1459);
        assert_eq!(CaseMapping::from_isupport("rfc7613"), Rfc1459);
        assert_eq!(CaseMapping::default(), Rfc1459);
    }

    #[test]
    fn ids_are_folded_and_round_trip() {
        let a = parse("#Rust[x]%IRC.Libera.Chat").unwrap();
        let key = a.chat_key(CaseMapping::Rfc1459);
        assert_eq!(
            key,
            ChatKey::Room(RemoteChatId::new("#rust{x}%irc.libera.chat"))
        );
        let ChatKey::Room(id) = key else {
            unreachable!()
        };
        assert_eq!(parse_room_id(&id), Ok(("#rust{x}", "irc.libera.chat")));
        assert_eq!(
            local_part_for_id(id.as_str(), None),
            "#rust{x}%irc.libera.chat"
        );
        assert_eq!(
            parse(&local_part_for_id(id.as_str(), None)).map(|a| a.chat_key(CaseMapping::Rfc1459)),
            Ok(ChatKey::Room(id.clone()))
        );

        let u = parse("Alice%irc.libera.chat").unwrap();
        let ChatKey::Direct(uid) = u.chat_key(CaseMapping::Ascii) else {
            panic!("not direct")
        };
        assert_eq!(uid.as_str(), "alice%irc.libera.chat");
        assert_eq!(parse_user_id(&uid), Ok(("alice", "irc.libera.chat")));
        assert_eq!(
            parse("irc.libera.chat").map(|a| a.chat_key(CaseMapping::Ascii)),
            Ok(ChatKey::Service("irc.libera.chat".into()))
        );
    }

    #[test]
    fn fixed_server_local_parts() {
        let fixed = Some("irc.libera.chat");
        assert_eq!(local_part_for_id("#rust%irc.libera.chat", fixed), "#rust");
        assert_eq!(local_part_for_id("alice%irc.libera.chat", fixed), "alice");
        // Ids from another server (stored before the setting changed) keep their server.
        assert_eq!(
            local_part_for_id("#rust%irc.oftc.net", fixed),
            "#rust%irc.oftc.net"
        );
        // Round trip in fixed mode.
        let key = parse_fixed(&local_part_for_id("#rust%irc.libera.chat", fixed))
            .unwrap()
            .chat_key(CaseMapping::Rfc1459);
        assert_eq!(key, ChatKey::Room("#rust%irc.libera.chat".into()));
    }

    #[test]
    fn bad_ids_are_bad_requests() {
        assert_eq!(
            parse_room_id(&RemoteChatId::new("nopercent"))
                .unwrap_err()
                .kind,
            ErrorKind::BadRequest
        );
        assert!(parse_room_id(&RemoteChatId::new("alice%s.org")).is_err());
        assert!(parse_user_id(&RemoteUserId::new("#chan%s.org")).is_err());
        assert!(parse_user_id(&RemoteUserId::new("a\r\nb%s.org")).is_err());
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "%",
            "%%",
            "#%%",
            "é%é",
            "\u{0}",
            "#\u{85}%s",
            "a%b%c",
            "!",
            "&",
            "+%s",
            ".%s",
        ] {
            let _ = parse(s);
            let _ = parse_fixed(s);
        }
    }
}
