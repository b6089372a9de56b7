//! A user's settings for one IRC server, as given through the server's "Configure" command
//! or registration on the server's JID (`irc.example.net@irc.gw`): the form, and the check
//! that turns what was submitted into values the connection can use.
//!
//! | field | meaning | stored as |
//! | --- | --- | --- |
//! | `nick`, `username`, `realname` | how to register on the server | text |
//! | `sasl_password`, `nickserv_password` | SASL PLAIN (account = nick) and `IDENTIFY` | sealed |
//! | `tls` | `auto` (TLS, then plain), `true`, `false` | absent for `auto` |
//! | `port` | 1–65535 | text |
//! | `verify_certificate` | `default`, `true`, `false` | absent for `default` |
//! | `autojoin` | channels, one per line (spaces and commas also separate) | one per line |
//! | `throttle_lines_per_second`, `throttle_burst` | flood control | text |
//! | `ports`, `tls_ports` (Biboumi's) | ports to try, TLS ones first | one per line |
//! | `verify_cert` (Biboumi's) | check the certificate | `true`/`false` |
//! | `pass` (Biboumi's) | the server password, sent as `PASS` | sealed |
//! | `after_connect_commands` (Biboumi's) | raw lines sent after 001 | one per line |
//! | `throttle_limit` (Biboumi's) | lines per second | text |
//! | `max_history_length` (Biboumi's) | join history of this server's channels | text |
//! | `encoding_in`, `encoding_out` (Biboumi's) | UTF-8 (in: or Latin-1) only | text |
//!
//! Stored settings of earlier versions (`port`, `tls`, `verify_certificate`,
//! `throttle_lines_per_second`) are still read.

use crate::address;
use crate::config::Throttle;
use estuary_bridge_api::{BridgeError, FieldKind, FormField, FormValues, RoomPolicy};

/// Why submitted settings were refused; each says what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// The nick cannot be used on IRC.
    #[error("The nick “{nick}” cannot be used: {why}")]
    BadNick {
        /// What was given.
        nick: String,
        /// What is wrong with it.
        why: String,
    },
    /// The username (ident) has characters IRC does not take.
    #[error("The username “{0}” must be one word of printable characters, without @.")]
    BadUsername(String),
    /// The port is not a port number.
    #[error(
        "The port “{0}” is not a port number: enter a number from 1 to 65535, or leave it empty."
    )]
    BadPort(String),
    /// An autojoin entry is not a channel.
    #[error("“{channel}” cannot be joined automatically: {why}")]
    BadChannel {
        /// What was given.
        channel: String,
        /// What is wrong with it.
        why: String,
    },
    /// The throttle values are out of range.
    #[error(
        "The flood control “{0}” is not usable: lines per second must be a number above 0 (e.g. 2) and the burst a whole number of at least 1 (e.g. 5)."
    )]
    BadThrottle(String),
    /// A value has a line break or control character where one line is expected.
    #[error("The {0} must be one line of text.")]
    NotOneLine(&'static str),
    /// An encoding Estuary does not speak.
    #[error("'{value}' is not a valid value for '{var}': Estuary sends UTF-8 and reads UTF-8 (Latin-1 for lines that are not UTF-8); leave it empty or give UTF-8{}.", if *var == "encoding_in" { " or Latin-1" } else { "" })]
    BadEncoding {
        /// The field.
        var: &'static str,
        /// What was given.
        value: String,
    },
    /// A whole number was expected.
    #[error("'{value}' is not a valid value for '{var}': enter a whole number.")]
    NotANumber {
        /// The field.
        var: &'static str,
        /// What was given.
        value: String,
    },
}

impl From<SettingsError> for BridgeError {
    fn from(e: SettingsError) -> Self {
        BridgeError::not_acceptable(e.to_string())
    }
}

/// The form of a server's "Configure" command and of registration on its JID: Biboumi's
/// fields under Biboumi's names, then Estuary's own. `verify_default` is what the gateway
/// does for this server unless the user says otherwise.
pub fn fields_for(verify_default: bool) -> Vec<FormField> {
    vec![
        FormField::multiline("ports", "Ports")
            .describe("Ports to try without TLS, one per line. Empty: 6667 after the TLS ports."),
        FormField::multiline("tls_ports", "TLS ports")
            .describe("Ports to try with TLS, one per line, before the plain ones. Empty: 6697."),
        FormField::boolean("verify_cert", "Verify certificate")
            .describe("Whether to abort the connection if the server's TLS certificate is invalid.")
            .default_value(if verify_default { "true" } else { "false" }),
        FormField::secret("sasl_password", "SASL Password")
            .describe("Use it to authenticate with your nick."),
        FormField::text("nick", "Nickname")
            .describe("If set, overrides the nickname given when joining the first channel."),
        FormField::secret("pass", "Server password")
            .describe("Used in a PASS command when connecting."),
        FormField::multiline("after_connect_commands", "After-connection IRC commands")
            .describe("Raw IRC commands sent after the connection is established, one per line."),
        FormField::text("username", "Username"),
        FormField::text("realname", "Realname"),
        // Up to THROTTLE_LIMIT_MAX: Biboumi's users write 9999 for "no flood control", and
        // the gateway's cap (`limits.user_lines_per_second`) applies whatever is stored.
        FormField::integer("throttle_limit", "Throttle limit", 1, THROTTLE_LIMIT_MAX).describe(
            "Lines sent per second at most (flood control); the gateway's limit applies above it. Empty: the gateway's setting.",
        ),
        FormField::integer("max_history_length", "Max history length", 0, 100)
            .describe("Messages of history sent when joining one of this server's channels."),
        FormField::text("encoding_out", "Out encoding")
            .describe("Estuary sends UTF-8: empty or UTF-8."),
        FormField::text("encoding_in", "In encoding").describe(
            "Estuary reads UTF-8, and Latin-1 lines as Latin-1: empty, UTF-8 or Latin-1.",
        ),
        FormField::secret("nickserv_password", "NickServ password")
            .describe("Sent as IDENTIFY to NickServ after connecting."),
        FormField::multiline("autojoin", "Channels to join on connect")
            .describe("One channel per line, e.g. #rust"),
        FormField::integer(
            "throttle_burst",
            "Lines sent at once after a pause",
            1,
            1000,
        )
        .describe("Empty: the gateway's setting (5 by default)."),
    ]
}

/// The largest `throttle_limit` a form takes (a rate far above any cap an admin sets).
pub const THROTTLE_LIMIT_MAX: i64 = 100_000;

/// [`fields_for`] a server whose certificate is checked.
pub fn fields() -> Vec<FormField> {
    fields_for(true)
}

/// The form of a channel's "Configure" command and `muc#owner` configuration (Biboumi's).
pub fn channel_fields() -> Vec<FormField> {
    vec![
        FormField {
            kind: FieldKind::Choice(vec![
                ("unset".into(), "unset".into()),
                ("true".into(), "true".into()),
                ("false".into(), "false".into()),
            ]),
            ..FormField::text("record_history", "Record history for this channel")
        }
        .describe("If unset, the value is the one configured globally")
        .default_value("unset"),
        FormField::text("encoding_out", "Out encoding")
            .describe("Estuary sends UTF-8: empty or UTF-8."),
        FormField::text("encoding_in", "In encoding")
            .describe("Estuary reads UTF-8, and Latin-1 lines as Latin-1: empty, UTF-8 or Latin-1."),
        FormField::boolean("persistent", "Persistent")
            .describe("If true, when all your XMPP clients have left this channel, the gateway stays in it, without sending a PART command.")
            .default_value("false"),
        FormField::integer("max_history_length", "Max history length", 0, 100)
            .describe("Messages of history sent when joining. Empty: the server's or the global setting."),
    ]
}

/// The form of the gateway's own "Configure" command: the user's defaults (Biboumi's).
pub fn global_fields(persistent_default: bool) -> Vec<FormField> {
    vec![
        FormField::integer("max_history_length", "Max history length", 0, 100)
            .describe("The most messages of history sent when joining a channel.")
            .default_value("20"),
        FormField::boolean("record_history", "Record history")
            .describe("Whether to save the messages into the database, or not")
            .default_value("true"),
        FormField::boolean("persistent", "Make all channels persistent")
            .describe("If true, all channels will be persistent")
            .default_value(if persistent_default { "true" } else { "false" }),
    ]
}

/// Checks the encodings a form names: Estuary writes UTF-8 and reads UTF-8, falling back
/// to Latin-1 for a line that is not UTF-8, so only those are taken.
pub fn check_encodings(values: &FormValues, out: &mut FormValues) -> Result<(), SettingsError> {
    let norm = |v: &str| v.trim().to_ascii_lowercase().replace(['-', '_'], "");
    if let Some(v) = values
        .get("encoding_out")
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        if norm(v) != "utf8" {
            return Err(SettingsError::BadEncoding {
                var: "encoding_out",
                value: v.into(),
            });
        }
        out.set("encoding_out", v);
    }
    if let Some(v) = values
        .get("encoding_in")
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        if !matches!(norm(v).as_str(), "utf8" | "latin1" | "iso88591") {
            return Err(SettingsError::BadEncoding {
                var: "encoding_in",
                value: v.into(),
            });
        }
        out.set("encoding_in", v);
    }
    Ok(())
}

/// How a channel behaves for a user, from their global, server and channel settings (the
/// most specific set wins): persistent if the channel or the global setting says so,
/// recorded unless the channel (or, unset there, the global setting) says not, and the
/// join history of the channel's, the server's or the global length.
pub fn room_policy(
    global: Option<&FormValues>,
    server: Option<&FormValues>,
    channel: Option<&FormValues>,
) -> RoomPolicy {
    let flag = |v: Option<&FormValues>, var: &str| v.and_then(|v| v.get(var)).map(is_true);
    let number = |v: Option<&FormValues>| {
        v.and_then(|v| v.get("max_history_length"))
            .and_then(|n| n.parse::<usize>().ok())
    };
    let default = RoomPolicy::default();
    let record_here = channel
        .and_then(|c| c.get("record_history"))
        .filter(|v| *v != "unset")
        .map(is_true);
    RoomPolicy {
        persistent: flag(channel, "persistent").unwrap_or(false)
            || flag(global, "persistent").unwrap_or(false),
        record_history: record_here
            .or(flag(global, "record_history"))
            .unwrap_or(default.record_history),
        history_length: number(channel)
            .or(number(server))
            .or(number(global))
            .unwrap_or(default.history_length),
    }
}

/// Checks a channel's settings: the encodings; the rest the core checked.
pub fn check_channel(values: &FormValues) -> Result<FormValues, SettingsError> {
    let mut out = FormValues::default();
    for var in ["record_history", "persistent", "max_history_length"] {
        if let Some(v) = values.get(var) {
            out.set(var, v.trim());
        }
    }
    check_encodings(values, &mut out)?;
    Ok(out)
}

fn one_line(value: &str, what: &'static str) -> Result<(), SettingsError> {
    if value.chars().any(char::is_control) {
        Err(SettingsError::NotOneLine(what))
    } else {
        Ok(())
    }
}

/// Checks submitted settings and normalizes them: surrounding spaces trimmed, `auto` and
/// `default` dropped, autojoin one channel per line. Empty values are dropped.
pub fn check(values: &FormValues) -> Result<FormValues, SettingsError> {
    let mut out = FormValues::default();
    let get = |var: &str| values.get(var).map(str::trim).filter(|v| !v.is_empty());
    if let Some(nick) = get("nick") {
        if let Some(why) = address::check_nick(nick) {
            return Err(SettingsError::BadNick {
                nick: nick.into(),
                why,
            });
        }
        out.set("nick", nick);
    }
    if let Some(username) = get("username") {
        if username.contains([' ', '@']) || username.chars().any(char::is_control) {
            return Err(SettingsError::BadUsername(username.into()));
        }
        out.set("username", username);
    }
    if let Some(realname) = get("realname") {
        one_line(realname, "real name")?;
        out.set("realname", realname);
    }
    for (var, what) in [
        ("sasl_password", "SASL password"),
        ("nickserv_password", "NickServ password"),
    ] {
        // Passwords are kept as typed: spaces may be part of them.
        if let Some(pw) = values.get(var) {
            one_line(pw, what)?;
            out.set(var, pw);
        }
    }
    match get("tls") {
        None | Some("auto") => {}
        Some(v) => out.set("tls", if is_true(v) { "true" } else { "false" }),
    }
    if let Some(port) = get("port") {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => out.set("port", p.to_string()),
            _ => return Err(SettingsError::BadPort(port.into())),
        }
    }
    match get("verify_certificate") {
        None | Some("default") => {}
        Some(v) => out.set(
            "verify_certificate",
            if is_true(v) { "true" } else { "false" },
        ),
    }
    if let Some(list) = get("autojoin") {
        let mut channels = Vec::new();
        for channel in split_channels(list) {
            if let Some(why) = address::check_channel(channel) {
                return Err(SettingsError::BadChannel {
                    channel: channel.into(),
                    why,
                });
            }
            channels.push(channel);
        }
        if !channels.is_empty() {
            out.set("autojoin", channels.join("\n"));
        }
    }
    let rate = get("throttle_lines_per_second");
    let burst = get("throttle_burst");
    if rate.is_some() || burst.is_some() {
        let shown = format!("{} / {}", rate.unwrap_or("-"), burst.unwrap_or("-"));
        let bad = || SettingsError::BadThrottle(shown.clone());
        if let Some(rate) = rate {
            let r: f64 = rate.parse().map_err(|_| bad())?;
            if !(r.is_finite() && r > 0.0) {
                return Err(bad());
            }
            out.set("throttle_lines_per_second", rate);
        }
        if let Some(burst) = burst {
            let b: u32 = burst.parse().map_err(|_| bad())?;
            if b == 0 {
                return Err(bad());
            }
            out.set("throttle_burst", burst);
        }
    }
    // Biboumi's fields.
    for var in ["ports", "tls_ports"] {
        if let Some(list) = get(var) {
            let mut ports = Vec::new();
            for port in list.split_whitespace() {
                match port.parse::<u16>() {
                    Ok(p) if p > 0 => ports.push(p.to_string()),
                    _ => return Err(SettingsError::BadPort(port.into())),
                }
            }
            if !ports.is_empty() {
                out.set(var, ports.join("\n"));
            }
        }
    }
    if let Some(v) = get("verify_cert") {
        out.set("verify_cert", if is_true(v) { "true" } else { "false" });
    }
    if let Some(pw) = values.get("pass") {
        one_line(pw, "server password")?;
        out.set("pass", pw);
    }
    if let Some(list) = get("after_connect_commands") {
        let lines: Vec<&str> = list
            .split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        for line in &lines {
            one_line(line, "after-connect command")?;
        }
        if !lines.is_empty() {
            out.set("after_connect_commands", lines.join("\n"));
        }
    }
    for var in ["throttle_limit", "max_history_length"] {
        if let Some(v) = get(var) {
            let n: u32 = v.parse().map_err(|_| SettingsError::NotANumber {
                var: if var == "throttle_limit" {
                    "throttle_limit"
                } else {
                    "max_history_length"
                },
                value: v.into(),
            })?;
            if var == "throttle_limit" && n == 0 {
                return Err(SettingsError::BadThrottle(v.into()));
            }
            out.set(var, n.to_string());
        }
    }
    check_encodings(values, &mut out)?;
    Ok(out)
}

/// Whether a stored boolean is true (`true`/`1`).
pub fn is_true(value: &str) -> bool {
    value == "1" || value.eq_ignore_ascii_case("true")
}

/// The channels of an autojoin list (lines, spaces or commas between them).
pub fn split_channels(list: &str) -> impl Iterator<Item = &str> {
    list.split([' ', ',', '\n', '\r', '\t'])
        .filter(|c| !c.is_empty())
}

/// The flood control from stored settings over `base`: each value the user set replaces
/// the base's, up to `cap` (see [`Limits::user_throttle_cap`](crate::config::Limits)).
pub fn throttle(
    rate: Option<&str>,
    burst: Option<&str>,
    base: Throttle,
    cap: Throttle,
) -> Throttle {
    Throttle {
        lines_per_second: rate
            .and_then(|r| r.parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r > 0.0)
            .map_or(base.lines_per_second, |r| r.min(cap.lines_per_second)),
        burst: burst
            .and_then(|b| b.parse::<u32>().ok())
            .filter(|b| *b > 0)
            .map_or(base.burst, |b| b.min(cap.burst)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> FormValues {
        let mut v = FormValues::default();
        for (k, val) in pairs {
            v.set(*k, *val);
        }
        v
    }

    #[test]
    fn good_settings_are_normalized() {
        let out = check(&form(&[
            ("nick", " alice "),
            ("tls", "auto"),
            ("verify_certificate", "0"),
            ("port", "6697"),
            ("autojoin", "#rust, #irc\n&local"),
            ("nickserv_password", "pass word"),
            ("throttle_lines_per_second", "10.5"),
            ("unknown", "kept out"),
        ]))
        .unwrap();
        assert_eq!(out.get("nick"), Some("alice"));
        assert_eq!(out.get("tls"), None);
        assert_eq!(out.get("verify_certificate"), Some("false"));
        assert_eq!(out.get("port"), Some("6697"));
        assert_eq!(out.get("autojoin"), Some("#rust\n#irc\n&local"));
        assert_eq!(out.get("nickserv_password"), Some("pass word"));
        assert_eq!(out.get("throttle_lines_per_second"), Some("10.5"));
        assert_eq!(out.get("unknown"), None);
        assert_eq!(
            check(&form(&[("tls", "1")])).unwrap().get("tls"),
            Some("true")
        );
    }

    #[test]
    fn bad_settings_say_what_to_fix() {
        let e = check(&form(&[("port", "66970")])).unwrap_err();
        assert_eq!(e, SettingsError::BadPort("66970".into()));
        assert!(e.to_string().contains("1 to 65535"), "{e}");
        assert!(matches!(
            check(&form(&[("port", "0")])),
            Err(SettingsError::BadPort(_))
        ));
        assert!(matches!(
            check(&form(&[("nick", "no spaces")])),
            Err(SettingsError::BadNick { .. })
        ));
        assert!(matches!(
            check(&form(&[("nick", "#abc")])),
            Err(SettingsError::BadNick { .. })
        ));
        let e = check(&form(&[("autojoin", "#ok rust")])).unwrap_err();
        assert!(
            matches!(&e, SettingsError::BadChannel { channel, .. } if channel == "rust"),
            "{e}"
        );
        assert!(matches!(
            check(&form(&[("throttle_burst", "0")])),
            Err(SettingsError::BadThrottle(_))
        ));
        assert!(matches!(
            check(&form(&[("throttle_lines_per_second", "NaN")])),
            Err(SettingsError::BadThrottle(_))
        ));
        assert!(matches!(
            check(&form(&[("username", "a b")])),
            Err(SettingsError::BadUsername(_))
        ));
        assert!(matches!(
            check(&form(&[("nickserv_password", "pw\r\nQUIT")])),
            Err(SettingsError::NotOneLine(_))
        ));
        let b: BridgeError = SettingsError::BadPort("x".into()).into();
        assert_eq!(b.kind, estuary_bridge_api::ErrorKind::NotAcceptable);
    }

    #[test]
    fn throttle_takes_what_the_user_set() {
        let base = Throttle::default();
        let cap = Throttle {
            lines_per_second: 100.0,
            burst: 100,
        };
        assert_eq!(throttle(None, None, base, cap), base);
        let t = throttle(Some("50"), Some("x"), base, cap);
        assert_eq!(t.lines_per_second, 50.0);
        assert_eq!(t.burst, base.burst);
        assert_eq!(throttle(Some("-1"), Some("9"), base, cap).burst, 9);
        assert_eq!(throttle(Some("-1"), None, base, cap).lines_per_second, 2.0);
    }

    #[test]
    fn throttle_is_capped() {
        let base = Throttle::default();
        let cap = crate::config::Limits::default().user_throttle_cap(base);
        let t = throttle(Some("1000"), Some("500"), base, cap);
        assert_eq!((t.lines_per_second, t.burst), (5.0, 10));
        let t = throttle(Some("1"), Some("3"), base, cap);
        assert_eq!(
            (t.lines_per_second, t.burst),
            (1.0, 3),
            "slower is always allowed"
        );
    }

    #[test]
    fn the_form_has_every_setting() {
        let vars: Vec<String> = fields().into_iter().map(|f| f.var).collect();
        // Biboumi's, then Estuary's own.
        for v in [
            "ports",
            "tls_ports",
            "verify_cert",
            "sasl_password",
            "nick",
            "pass",
            "after_connect_commands",
            "username",
            "realname",
            "throttle_limit",
            "max_history_length",
            "encoding_out",
            "encoding_in",
            "nickserv_password",
            "autojoin",
            "throttle_burst",
        ] {
            assert!(vars.iter().any(|x| x == v), "{v}");
        }
        assert!(
            fields()
                .iter()
                .filter(|f| f.var.ends_with("password") || f.var == "pass")
                .all(FormField::is_secret)
        );
    }

    #[test]
    fn biboumis_fields_are_checked_and_kept() {
        let out = check(&form(&[
            ("ports", "6667\n 7000 "),
            ("tls_ports", "6697\n6698"),
            ("verify_cert", "1"),
            ("pass", "se cret"),
            (
                "after_connect_commands",
                "MODE alice +x\n\n PRIVMSG bob :hi ",
            ),
            ("throttle_limit", "42"),
            ("max_history_length", "69"),
            ("encoding_in", "latin-1"),
            ("encoding_out", "UTF-8"),
        ]))
        .unwrap();
        assert_eq!(out.get("ports"), Some("6667\n7000"));
        assert_eq!(out.get("tls_ports"), Some("6697\n6698"));
        assert_eq!(out.get("verify_cert"), Some("true"));
        assert_eq!(out.get("pass"), Some("se cret"));
        assert_eq!(
            out.get("after_connect_commands"),
            Some("MODE alice +x\nPRIVMSG bob :hi")
        );
        assert_eq!(out.get("throttle_limit"), Some("42"));
        assert_eq!(out.get("max_history_length"), Some("69"));
        assert_eq!(out.get("encoding_in"), Some("latin-1"));
        assert_eq!(out.get("encoding_out"), Some("UTF-8"));
    }

    #[test]
    fn bad_biboumi_values_name_the_field() {
        let e = check(&form(&[("throttle_limit", "bleh")])).unwrap_err();
        assert!(e.to_string().contains("throttle_limit"), "{e}");
        let e = check(&form(&[("max_history_length", "-1")])).unwrap_err();
        assert!(e.to_string().contains("max_history_length"), "{e}");
        assert!(matches!(
            check(&form(&[("tls_ports", "6697 x")])),
            Err(SettingsError::BadPort(p)) if p == "x"
        ));
        let e = check(&form(&[("encoding_out", "latin-1")])).unwrap_err();
        assert!(e.to_string().contains("encoding_out"), "{e}");
        let e = check(&form(&[("encoding_in", "koi8-r")])).unwrap_err();
        assert!(e.to_string().contains("encoding_in"), "{e}");
        assert!(matches!(
            check(&form(&[("after_connect_commands", "ok\nbad\u{0}line")])),
            Err(SettingsError::NotOneLine(_))
        ));
        assert!(matches!(
            check(&form(&[("pass", "a\rQUIT")])),
            Err(SettingsError::NotOneLine(_))
        ));
    }

    #[test]
    fn the_room_policy_takes_the_most_specific_setting() {
        let d = RoomPolicy::default();
        assert_eq!(room_policy(None, None, None), d);
        let global = form(&[("record_history", "0"), ("max_history_length", "5")]);
        let server = form(&[("max_history_length", "7")]);
        let chan = form(&[("record_history", "unset"), ("persistent", "1")]);
        let p = room_policy(Some(&global), Some(&server), Some(&chan));
        assert!(p.persistent);
        assert!(!p.record_history, "unset falls back to the global setting");
        assert_eq!(
            p.history_length, 7,
            "the server's length over the global one"
        );
        let chan = form(&[("record_history", "true"), ("max_history_length", "0")]);
        let p = room_policy(Some(&global), Some(&server), Some(&chan));
        assert!(p.record_history && !p.persistent);
        assert_eq!(p.history_length, 0);
        let all = form(&[("persistent", "true")]);
        assert!(room_policy(Some(&all), None, None).persistent);
    }
}
