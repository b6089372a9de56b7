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

use crate::address;
use crate::config::Throttle;
use estuary_bridge_api::{BridgeError, FieldKind, FormField, FormValues};

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
}

impl From<SettingsError> for BridgeError {
    fn from(e: SettingsError) -> Self {
        BridgeError::not_acceptable(e.to_string())
    }
}

/// The form of a server's "Configure" command and of registration on its JID.
pub fn fields() -> Vec<FormField> {
    vec![
        FormField::text("nick", "Nick").describe("Empty: the nick you join rooms with."),
        FormField::text("username", "Username (ident)"),
        FormField::text("realname", "Real name"),
        FormField::secret("sasl_password", "SASL password (account = nick)"),
        FormField::secret("nickserv_password", "NickServ password")
            .describe("Sent as IDENTIFY to NickServ after connecting."),
        FormField {
            kind: FieldKind::Choice(vec![
                (
                    "auto".into(),
                    "Automatic: TLS on 6697, then plain on 6667".into(),
                ),
                ("true".into(), "TLS".into()),
                ("false".into(), "Plain (no TLS)".into()),
            ]),
            ..FormField::text("tls", "TLS")
        }
        .default_value("auto"),
        FormField::text("port", "Port").describe("Empty: 6697 with TLS, 6667 without."),
        FormField {
            kind: FieldKind::Choice(vec![
                ("default".into(), "As the gateway is configured".into()),
                ("true".into(), "Check the certificate".into()),
                ("false".into(), "Accept any certificate (unsafe)".into()),
            ]),
            ..FormField::text("verify_certificate", "TLS certificate")
        }
        .default_value("default"),
        FormField {
            kind: FieldKind::Multiline,
            ..FormField::text("autojoin", "Channels to join on connect")
        }
        .describe("One channel per line, e.g. #rust"),
        FormField::text("throttle_lines_per_second", "Lines per second sent at most")
            .describe("Flood control; empty: the gateway's setting (2 by default)."),
        FormField::text("throttle_burst", "Lines sent at once after a pause")
            .describe("Empty: the gateway's setting (5 by default)."),
    ]
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
        for v in [
            "nick",
            "username",
            "realname",
            "sasl_password",
            "nickserv_password",
            "tls",
            "port",
            "verify_certificate",
            "autojoin",
            "throttle_lines_per_second",
            "throttle_burst",
        ] {
            assert!(vars.iter().any(|x| x == v), "{v}");
        }
        assert!(
            fields()
                .iter()
                .filter(|f| f.var.ends_with("password"))
                .all(FormField::is_secret)
        );
    }
}
