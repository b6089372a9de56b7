//! Biboumi's rows turned into Estuary's settings and archive lines: pure functions, no
//! database. What a row holds is read as raw bytes (SQLite stores whatever it was given),
//! so a NULL, a number where text was expected or bytes that are not UTF-8 become a
//! [`Skip`] with the reason, never a panic.
//!
//! | Biboumi | Estuary |
//! | --- | --- |
//! | `globaloptions_` | the user's `@gateway` settings: `max_history_length`, `record_history`, `persistent` |
//! | `ircserveroptions_` (+ `after_connection_commands_`) | the settings of the server's key (`irc.example.net`): `pass`, `ports`, `tls_ports`, `username`, `realname`, `verify_cert`, `encoding_out`, `encoding_in`, `max_history_length`, `nick`, `sasl_password`, `throttle_limit`, `after_connect_commands` |
//! | `ircchanneloptions_` | the settings of `@room/#chan%server`: `encoding_out`, `encoding_in`, `max_history_length`, `persistent`, `record_history` (`unset`/`true`/`false`) |
//! | `muclogline_` | the archive of room `#chan%server`, at the same date, under Biboumi's stanza-id |
//!
//! Biboumi's `trustedfingerprint_` and `address_` have no Estuary equivalent: they are
//! reported, not imported.

use estuary_bridge_api::{CommandTarget, RemoteChatId};
use estuary_bridge_irc::address;
use tokio_xmpp::jid::BareJid;

/// A cell as read from Biboumi's database: its bytes (`CAST(… AS BLOB)`), or `None` for NULL.
pub type Cell = Option<Vec<u8>>;

/// Why a row, or one value of a row, is not imported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// A column that must hold something is NULL or empty.
    #[error("{0} is empty")]
    Missing(&'static str),
    /// A text column holds bytes that are not UTF-8.
    #[error("{0} is not UTF-8 text")]
    NotUtf8(&'static str),
    /// A number column holds something else.
    #[error("{column} is not a number ({value:?})")]
    NotANumber {
        /// The column.
        column: &'static str,
        /// What it holds.
        value: String,
    },
    /// The owner is not a bare JID.
    #[error("the owner {0:?} is not a bare JID")]
    BadOwner(String),
    /// The server name is not one Estuary can address.
    #[error("the server {server:?} cannot be used: {why}")]
    BadServer {
        /// The name.
        server: String,
        /// Why not.
        why: String,
    },
    /// The channel name is not a channel.
    #[error("the channel {channel:?} cannot be used: {why}")]
    BadChannel {
        /// The name.
        channel: String,
        /// Why not.
        why: String,
    },
    /// A Biboumi setting Estuary does not have.
    #[error("{0} has no Estuary equivalent")]
    NoEquivalent(&'static str),
    /// A value the setting's form or the IRC bridge refuses.
    #[error("{var}: {why}")]
    Refused {
        /// The setting.
        var: String,
        /// What the check said.
        why: String,
    },
    /// An after-connection command whose server row is not in the database.
    #[error("the server row {0} it belongs to does not exist")]
    Orphan(i64),
}

/// The text of a column; `None` for NULL or an empty text.
pub fn text(cell: &Cell, column: &'static str) -> Result<Option<String>, Skip> {
    match cell {
        None => Ok(None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok("") => Ok(None),
            Ok(s) => Ok(Some(s.to_owned())),
            Err(_) => Err(Skip::NotUtf8(column)),
        },
    }
}

/// The text of a column that must have one.
pub fn required_text(cell: &Cell, column: &'static str) -> Result<String, Skip> {
    text(cell, column)?.ok_or(Skip::Missing(column))
}

/// The number in a column; `None` for NULL or an empty text.
pub fn int(cell: &Cell, column: &'static str) -> Result<Option<i64>, Skip> {
    match text(cell, column)? {
        None => Ok(None),
        Some(t) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Skip::NotANumber { column, value: t }),
    }
}

/// The owner (`owner_`): a bare JID, as Biboumi kept it.
pub fn owner(cell: &Cell) -> Result<String, Skip> {
    let owner = required_text(cell, "owner_")?;
    match owner.parse::<BareJid>() {
        Ok(jid) if jid.node().is_some() => Ok(jid.to_string()),
        _ => Err(Skip::BadOwner(owner)),
    }
}

/// An IRC server's name as Estuary keys it (lower case, as XMPP hands it over).
pub fn server(cell: &Cell, column: &'static str) -> Result<String, Skip> {
    let server = required_text(cell, column)?.to_ascii_lowercase();
    match address::check_server(&server) {
        Some(why) => Err(Skip::BadServer { server, why }),
        None => Ok(server),
    }
}

/// The Estuary room of a Biboumi channel on a server: `#chan%server`, folded as the IRC
/// bridge folds ids.
pub fn room(channel_cell: &Cell, column: &'static str, server: &str) -> Result<RemoteChatId, Skip> {
    let channel = required_text(channel_cell, column)?;
    if let Some(why) = address::check_channel(&channel) {
        return Err(Skip::BadChannel { channel, why });
    }
    Ok(address::room_id(&channel, server, address::ID_FOLDING))
}

/// Settings read from one Biboumi row, not yet checked against the bridge's form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSettings {
    /// The user, a bare JID.
    pub owner: String,
    /// Which entity they are for.
    pub target: CommandTarget,
    /// The values, in Estuary's field names, in the order of the row.
    pub values: Vec<(String, String)>,
    /// Values of the row that are not imported, and why.
    pub dropped: Vec<Skip>,
}

impl RowSettings {
    fn new(owner: String, target: CommandTarget) -> Self {
        RowSettings {
            owner,
            target,
            values: Vec::new(),
            dropped: Vec::new(),
        }
    }

    fn push(&mut self, var: &str, value: Result<Option<String>, Skip>) {
        match value {
            Ok(Some(v)) => self.values.push((var.to_owned(), v)),
            Ok(None) => {}
            Err(skip) => self.dropped.push(skip),
        }
    }
}

/// A Biboumi boolean (an integer, 0 false) as a form boolean.
fn boolean(cell: &Cell, column: &'static str) -> Result<Option<String>, Skip> {
    Ok(int(cell, column)?.map(|n| if n != 0 { "true" } else { "false" }.to_owned()))
}

/// A number kept only when it is not negative (Biboumi's -1 is "not set").
fn count(cell: &Cell, column: &'static str) -> Result<Option<String>, Skip> {
    Ok(int(cell, column)?
        .filter(|n| *n >= 0)
        .map(|n| n.to_string()))
}

/// Biboumi's `;`-separated port list as Estuary's one port per line.
fn ports(cell: &Cell, column: &'static str) -> Result<Option<String>, Skip> {
    Ok(text(cell, column)?.and_then(|t| {
        let list: Vec<&str> = t
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        (!list.is_empty()).then(|| list.join("\n"))
    }))
}

/// A `globaloptions_` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalRow {
    /// `owner_`.
    pub owner: Cell,
    /// `maxhistorylength_`.
    pub max_history_length: Cell,
    /// `recordhistory_`.
    pub record_history: Cell,
    /// `persistent_`.
    pub persistent: Cell,
}

/// The `@gateway` settings of a `globaloptions_` row.
pub fn global(row: &GlobalRow) -> Result<RowSettings, Skip> {
    let mut out = RowSettings::new(owner(&row.owner)?, CommandTarget::Gateway);
    out.push(
        "max_history_length",
        count(&row.max_history_length, "maxhistorylength_"),
    );
    out.push(
        "record_history",
        boolean(&row.record_history, "recordhistory_"),
    );
    out.push("persistent", boolean(&row.persistent, "persistent_"));
    Ok(out)
}

/// An `ircserveroptions_` row, with its `after_connection_commands_` in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerRow {
    /// `id_`.
    pub id: i64,
    /// `owner_`.
    pub owner: Cell,
    /// `server_`.
    pub server: Cell,
    /// `pass_`.
    pub pass: Cell,
    /// `tlsports_`.
    pub tls_ports: Cell,
    /// `ports_`.
    pub ports: Cell,
    /// `username_`.
    pub username: Cell,
    /// `realname_`.
    pub realname: Cell,
    /// `verifycert_`.
    pub verify_cert: Cell,
    /// `trustedfingerprint_`.
    pub trusted_fingerprint: Cell,
    /// `encodingout_`.
    pub encoding_out: Cell,
    /// `encodingin_`.
    pub encoding_in: Cell,
    /// `maxhistorylength_`.
    pub max_history_length: Cell,
    /// `address_`.
    pub address: Cell,
    /// `nick_`.
    pub nick: Cell,
    /// `saslpassword_`.
    pub sasl_password: Cell,
    /// `throttlelimit_`.
    pub throttle_limit: Cell,
    /// `afterconnectioncommand_` of the rows whose `fk_` is this row's id.
    pub after_connection_commands: Vec<Cell>,
}

/// The settings of a server from an `ircserveroptions_` row.
pub fn server_settings(row: &ServerRow) -> Result<RowSettings, Skip> {
    let owner = owner(&row.owner)?;
    let server = server(&row.server, "server_")?;
    let mut out = RowSettings::new(owner, CommandTarget::Service(server));
    out.push("ports", ports(&row.ports, "ports_"));
    out.push("tls_ports", ports(&row.tls_ports, "tlsports_"));
    out.push("verify_cert", boolean(&row.verify_cert, "verifycert_"));
    out.push("sasl_password", text(&row.sasl_password, "saslpassword_"));
    out.push("nick", text(&row.nick, "nick_"));
    out.push("pass", text(&row.pass, "pass_"));
    let mut commands = Vec::new();
    for cell in &row.after_connection_commands {
        match text(cell, "afterconnectioncommand_") {
            Ok(Some(c)) => commands.push(c),
            Ok(None) => {}
            Err(skip) => out.dropped.push(skip),
        }
    }
    if !commands.is_empty() {
        out.values
            .push(("after_connect_commands".into(), commands.join("\n")));
    }
    out.push("username", text(&row.username, "username_"));
    out.push("realname", text(&row.realname, "realname_"));
    out.push(
        "throttle_limit",
        int(&row.throttle_limit, "throttlelimit_").map(|n| n.map(|n| n.to_string())),
    );
    out.push(
        "max_history_length",
        count(&row.max_history_length, "maxhistorylength_"),
    );
    out.push("encoding_out", text(&row.encoding_out, "encodingout_"));
    out.push("encoding_in", text(&row.encoding_in, "encodingin_"));
    for (cell, column) in [
        (&row.trusted_fingerprint, "trustedfingerprint_"),
        (&row.address, "address_"),
    ] {
        if matches!(cell, Some(b) if !b.is_empty()) {
            out.dropped.push(Skip::NoEquivalent(column));
        }
    }
    Ok(out)
}

/// An `ircchanneloptions_` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelRow {
    /// `owner_`.
    pub owner: Cell,
    /// `server_`.
    pub server: Cell,
    /// `channel_`.
    pub channel: Cell,
    /// `encodingout_`.
    pub encoding_out: Cell,
    /// `encodingin_`.
    pub encoding_in: Cell,
    /// `maxhistorylength_`.
    pub max_history_length: Cell,
    /// `persistent_`.
    pub persistent: Cell,
    /// `recordhistory_`: 0 unset, above 0 true, below 0 false.
    pub record_history: Cell,
}

/// The settings of a room from an `ircchanneloptions_` row.
pub fn channel_settings(row: &ChannelRow) -> Result<RowSettings, Skip> {
    let owner = owner(&row.owner)?;
    let server = server(&row.server, "server_")?;
    let room = room(&row.channel, "channel_", &server)?;
    let mut out = RowSettings::new(owner, CommandTarget::Room(room));
    out.push(
        "record_history",
        int(&row.record_history, "recordhistory_").map(|n| {
            n.map(|n| match n.signum() {
                1 => "true",
                -1 => "false",
                _ => "unset",
            })
            .map(str::to_owned)
        }),
    );
    out.push("encoding_out", text(&row.encoding_out, "encodingout_"));
    out.push("encoding_in", text(&row.encoding_in, "encodingin_"));
    out.push("persistent", boolean(&row.persistent, "persistent_"));
    out.push(
        "max_history_length",
        count(&row.max_history_length, "maxhistorylength_"),
    );
    Ok(out)
}

/// A `muclogline_` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRow {
    /// `id_`.
    pub id: i64,
    /// `uuid_`.
    pub uuid: Cell,
    /// `owner_`.
    pub owner: Cell,
    /// `ircchanname_`.
    pub channel: Cell,
    /// `ircservername_`.
    pub server: Cell,
    /// `date_`: seconds since the epoch.
    pub date: Cell,
    /// `body_`.
    pub body: Cell,
    /// `nick_`.
    pub nick: Cell,
}

/// An archive line ready for Estuary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The user whose archive it is.
    pub owner: String,
    /// The room.
    pub room: RemoteChatId,
    /// The message.
    pub msg: crate::db::ArchivedMessage,
}

/// The archive line of a `muclogline_` row. Its stanza-id is Biboumi's (a UUID), so that a
/// client that remembers the last one it saw can go on paging after it, and so that a
/// second import finds it already there; a row without one gets `biboumi-<id_>`.
pub fn log_line(row: &LogRow) -> Result<LogLine, Skip> {
    let owner = owner(&row.owner)?;
    let server = server(&row.server, "ircservername_")?;
    let room = room(&row.channel, "ircchanname_", &server)?;
    let seconds = int(&row.date, "date_")?.ok_or(Skip::Missing("date_"))?;
    let at_ms = seconds.checked_mul(1000).ok_or(Skip::NotANumber {
        column: "date_",
        value: seconds.to_string(),
    })?;
    let body = required_text(&row.body, "body_")?;
    let nick = required_text(&row.nick, "nick_")?;
    let stanza_id = match text(&row.uuid, "uuid_") {
        Ok(Some(u)) if uuid::Uuid::parse_str(&u).is_ok() => u,
        _ => format!("biboumi-{}", row.id),
    };
    Ok(LogLine {
        owner,
        room,
        msg: crate::db::ArchivedMessage {
            stanza_id,
            from_nick: nick,
            body,
            at_ms,
            remote_id: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cell {
        Some(s.as_bytes().to_vec())
    }

    fn values(r: &RowSettings) -> Vec<(&str, &str)> {
        r.values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn global_options_become_gateway_settings() {
        let r = global(&GlobalRow {
            owner: c("Alice@Example.org"),
            max_history_length: c("42"),
            record_history: c("0"),
            persistent: c("1"),
        })
        .unwrap();
        assert_eq!(r.owner, "alice@example.org");
        assert_eq!(r.target, CommandTarget::Gateway);
        assert_eq!(
            values(&r),
            [
                ("max_history_length", "42"),
                ("record_history", "false"),
                ("persistent", "true")
            ]
        );
        assert!(r.dropped.is_empty());
    }

    #[test]
    fn odd_global_rows_are_skipped_or_trimmed() {
        assert_eq!(
            global(&GlobalRow::default()).unwrap_err(),
            Skip::Missing("owner_")
        );
        assert!(matches!(
            global(&GlobalRow {
                owner: c("example.org"),
                ..Default::default()
            }),
            Err(Skip::BadOwner(_))
        ));
        assert_eq!(
            global(&GlobalRow {
                owner: Some(vec![b'a', 0xff, b'@', b'b']),
                ..Default::default()
            })
            .unwrap_err(),
            Skip::NotUtf8("owner_")
        );
        let r = global(&GlobalRow {
            owner: c("a@b"),
            max_history_length: c("lots"),
            record_history: None,
            persistent: c("0"),
        })
        .unwrap();
        assert_eq!(values(&r), [("persistent", "false")]);
        assert!(
            matches!(&r.dropped[..], [Skip::NotANumber { column: "maxhistorylength_", value }] if value == "lots")
        );
    }

    #[test]
    fn server_options_become_server_settings() {
        let r = server_settings(&ServerRow {
            id: 3,
            owner: c("alice@example.org"),
            server: c("IRC.Example.NET"),
            pass: c("server pw"),
            tls_ports: c("6697;6670"),
            ports: c("6667"),
            username: c("ali"),
            realname: c("Alice A."),
            verify_cert: c("0"),
            trusted_fingerprint: c("AB:CD"),
            encoding_out: c("UTF-8"),
            encoding_in: c("ISO-8859-1"),
            max_history_length: c("20"),
            address: None,
            nick: c("alice"),
            sasl_password: c("sasl pw"),
            throttle_limit: c("10"),
            after_connection_commands: vec![c("MODE alice +x"), None, c("PRIVMSG bob :hi")],
        })
        .unwrap();
        assert_eq!(r.target, CommandTarget::Service("irc.example.net".into()));
        assert_eq!(
            values(&r),
            [
                ("ports", "6667"),
                ("tls_ports", "6697\n6670"),
                ("verify_cert", "false"),
                ("sasl_password", "sasl pw"),
                ("nick", "alice"),
                ("pass", "server pw"),
                ("after_connect_commands", "MODE alice +x\nPRIVMSG bob :hi"),
                ("username", "ali"),
                ("realname", "Alice A."),
                ("throttle_limit", "10"),
                ("max_history_length", "20"),
                ("encoding_out", "UTF-8"),
                ("encoding_in", "ISO-8859-1"),
            ]
        );
        assert_eq!(r.dropped, [Skip::NoEquivalent("trustedfingerprint_")]);
    }

    #[test]
    fn a_server_row_needs_a_usable_server() {
        let row = |server: Cell| ServerRow {
            owner: c("a@b"),
            server,
            ..Default::default()
        };
        assert_eq!(
            server_settings(&row(None)).unwrap_err(),
            Skip::Missing("server_")
        );
        assert!(matches!(
            server_settings(&row(c("bad server"))),
            Err(Skip::BadServer { .. })
        ));
        let r = server_settings(&ServerRow {
            pass: Some(vec![0xc3, 0x28]),
            ..row(c("irc.example.net"))
        })
        .unwrap();
        assert!(r.values.is_empty());
        assert_eq!(r.dropped, [Skip::NotUtf8("pass_")]);
    }

    #[test]
    fn channel_options_become_room_settings() {
        let row = |record: &str| ChannelRow {
            owner: c("alice@example.org"),
            server: c("irc.example.net"),
            channel: c("#Rust"),
            encoding_out: None,
            encoding_in: c("latin-1"),
            max_history_length: c("-1"),
            persistent: c("1"),
            record_history: c(record),
        };
        let r = channel_settings(&row("0")).unwrap();
        assert_eq!(
            r.target,
            CommandTarget::Room(RemoteChatId::new("#rust%irc.example.net"))
        );
        assert_eq!(r.target.settings_key(), "@room/#rust%irc.example.net");
        assert_eq!(
            values(&r),
            [
                ("record_history", "unset"),
                ("encoding_in", "latin-1"),
                ("persistent", "true")
            ]
        );
        let get = |record: &str| {
            channel_settings(&row(record))
                .unwrap()
                .values
                .into_iter()
                .find(|(k, _)| k == "record_history")
                .map(|(_, v)| v)
        };
        assert_eq!(get("1").as_deref(), Some("true"));
        assert_eq!(get("-1").as_deref(), Some("false"));
        assert!(matches!(
            channel_settings(&ChannelRow {
                channel: c("rust"),
                ..row("0")
            }),
            Err(Skip::BadChannel { .. })
        ));
    }

    fn log(id: i64) -> LogRow {
        LogRow {
            id,
            uuid: c("0b6f4a52-8d1e-4a1f-9c55-2b1c7d5e9f10"),
            owner: c("alice@example.org"),
            channel: c("#rust"),
            server: c("irc.example.net"),
            date: c("1700000000"),
            body: c("hello"),
            nick: c("bob"),
        }
    }

    #[test]
    fn log_lines_keep_date_sender_and_id() {
        let line = log_line(&log(7)).unwrap();
        assert_eq!(line.owner, "alice@example.org");
        assert_eq!(line.room.as_str(), "#rust%irc.example.net");
        assert_eq!(line.msg.at_ms, 1_700_000_000_000);
        assert_eq!(line.msg.from_nick, "bob");
        assert_eq!(line.msg.body, "hello");
        assert_eq!(line.msg.stanza_id, "0b6f4a52-8d1e-4a1f-9c55-2b1c7d5e9f10");
        let line = log_line(&LogRow {
            uuid: c("not a uuid"),
            ..log(7)
        })
        .unwrap();
        assert_eq!(line.msg.stanza_id, "biboumi-7");
    }

    #[test]
    fn odd_log_lines_are_skipped_with_the_reason() {
        let bad = |row: LogRow| log_line(&row).unwrap_err();
        assert_eq!(
            bad(LogRow {
                body: Some(vec![b'h', 0xff]),
                ..log(1)
            }),
            Skip::NotUtf8("body_")
        );
        assert_eq!(
            bad(LogRow {
                date: None,
                ..log(1)
            }),
            Skip::Missing("date_")
        );
        assert!(matches!(
            bad(LogRow {
                date: c("yesterday"),
                ..log(1)
            }),
            Skip::NotANumber {
                column: "date_",
                ..
            }
        ));
        assert!(matches!(
            bad(LogRow {
                date: c(&i64::MAX.to_string()),
                ..log(1)
            }),
            Skip::NotANumber {
                column: "date_",
                ..
            }
        ));
        assert_eq!(
            bad(LogRow {
                nick: c(""),
                ..log(1)
            }),
            Skip::Missing("nick_")
        );
        assert!(matches!(
            bad(LogRow {
                channel: c("bob"),
                ..log(1)
            }),
            Skip::BadChannel { .. }
        ));
    }
}
