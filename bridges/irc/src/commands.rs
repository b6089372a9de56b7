//! Biboumi's ad-hoc commands, under Biboumi's nodes, as the IRC bridge runs them (the core
//! writes the XEP-0050 and XEP-0004 around them):
//!
//! | node | on | what it does |
//! | --- | --- | --- |
//! | `get-irc-connection-info` | a server (the domain with a fixed server) | the port, TLS, since when, and the rooms joined there with their resources |
//! | `disconnect-from-irc-server` | the domain | a form of the servers the user is connected to and a quit message; quits those |
//!
//! The settings forms (`configure` on the domain, a server and a channel) are in
//! [`settings`](crate::settings); `ping`, `hello` and `disconnect-user` are the core's.

use crate::address;
use crate::client::IrcClient;
use crate::config::Endpoint;
use estuary_bridge_api::{
    BridgeError, CommandAccess, CommandContext, CommandForm, CommandOutput, CommandScope,
    CommandSpec, CommandTarget, FieldKind, FormField, FormValues, Result,
};
use std::time::SystemTime;

/// Biboumi's node for the connection's details.
pub const CONNECTION_INFO: &str = "get-irc-connection-info";
/// Biboumi's node for quitting servers.
pub const DISCONNECT_FROM_SERVER: &str = "disconnect-from-irc-server";
/// The quit message offered by default.
const QUIT_MESSAGE: &str = "Disconnected by the user";

/// The commands the IRC bridge declares.
pub fn specs() -> Vec<CommandSpec> {
    vec![
        CommandSpec {
            node: CONNECTION_INFO.into(),
            name: "Returns various information about your connection to this IRC server.".into(),
            access: CommandAccess::User,
            scope: CommandScope::Service,
            instructions: String::new(),
            fields: Vec::new(),
        },
        CommandSpec {
            node: DISCONNECT_FROM_SERVER.into(),
            name: "Disconnect from the selected IRC servers".into(),
            access: CommandAccess::User,
            scope: CommandScope::Gateway,
            instructions: String::new(),
            fields: Vec::new(),
        },
    ]
}

/// Runs a command on the user's live client.
pub fn run_on_client(
    client: &IrcClient,
    ctx: &CommandContext,
    node: &str,
    form: &FormValues,
) -> Result<CommandOutput> {
    match node {
        CONNECTION_INFO => {
            let CommandTarget::Service(server) = &ctx.target else {
                return Err(BridgeError::bad_request("ask a server's JID"));
            };
            Ok(CommandOutput::note(connection_info(client, ctx, server)))
        }
        DISCONNECT_FROM_SERVER => Ok(disconnect_from_servers(client, ctx, form)),
        other => Err(BridgeError::not_found(format!("no command {other}"))),
    }
}

/// Without a live client: what the commands say to a user with no connection at all.
pub fn run_without_client(ctx: &CommandContext, node: &str) -> Result<CommandOutput> {
    match node {
        CONNECTION_INFO => {
            let CommandTarget::Service(server) = &ctx.target else {
                return Err(BridgeError::bad_request("ask a server's JID"));
            };
            Ok(CommandOutput::note(not_connected(server)))
        }
        DISCONNECT_FROM_SERVER => Ok(CommandOutput::note(format!(
            "User {} is not connected to any IRC server.",
            ctx.user.jid
        ))),
        other => Err(BridgeError::not_found(format!("no command {other}"))),
    }
}

fn not_connected(server: &str) -> String {
    format!("You are not connected to the IRC server {server}")
}

fn connection_info(client: &IrcClient, ctx: &CommandContext, server: &str) -> String {
    let Some((since, endpoint)) = client.connected_since(server) else {
        return not_connected(server);
    };
    let mut text = connection_line(server, endpoint, since, SystemTime::now());
    for (room, resources) in &ctx.rooms {
        let Ok((channel, room_server)) = address::parse_room_id(room) else {
            continue;
        };
        if room_server != server || resources.is_empty() {
            continue;
        }
        let names: Vec<&str> = resources
            .iter()
            .map(|r| r.split_once('/').map_or(r.as_str(), |(_, res)| res))
            .collect();
        let plural = if names.len() > 1 { "s" } else { "" };
        text.push_str(&format!(
            "\n{channel} from {} resource{plural}: {}",
            names.len(),
            names.join(" ")
        ));
    }
    text
}

/// `Connected to IRC server S on port P (using TLS) since YYYY-MM-DD HH:MM:SS (N seconds
/// ago).`, as Biboumi says it (the time in UTC).
pub fn connection_line(
    server: &str,
    endpoint: Endpoint,
    since: SystemTime,
    now: SystemTime,
) -> String {
    let secs = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ago = now.duration_since(since).map(|d| d.as_secs()).unwrap_or(0);
    let tls = if endpoint.tls { " (using TLS)" } else { "" };
    format!(
        "Connected to IRC server {server} on port {}{tls} since {} ({ago} seconds ago).",
        endpoint.port,
        utc_stamp(secs)
    )
}

/// `YYYY-MM-DD HH:MM:SS` in UTC for seconds since 1970.
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `disconnect-from-irc-server`: first a form of the servers the user is connected to;
/// its submission quits those, with the quit message.
fn disconnect_from_servers(
    client: &IrcClient,
    ctx: &CommandContext,
    form: &FormValues,
) -> CommandOutput {
    let servers = client.connected_servers();
    if form.get("irc-servers").is_none() {
        if servers.is_empty() {
            return CommandOutput::note(format!(
                "User {} is not connected to any IRC server.",
                ctx.user.jid
            ));
        }
        return CommandOutput::form(CommandForm {
            title: "Disconnect a user from selected IRC servers".into(),
            instructions: "Choose one or more servers to disconnect this JID from".into(),
            fields: vec![
                FormField {
                    kind: FieldKind::MultiChoice(
                        servers.iter().map(|s| (s.clone(), s.clone())).collect(),
                    ),
                    ..FormField::text("irc-servers", "The servers to disconnect from").required()
                },
                FormField::text("quit-message", "Quit message").default_value(QUIT_MESSAGE),
            ],
            values: FormValues::default(),
        });
    }
    let reason = form.get("quit-message").unwrap_or(QUIT_MESSAGE);
    let mut done = 0;
    for server in form.get("irc-servers").unwrap_or_default().split('\n') {
        if client.quit_server(server, reason) {
            done += 1;
        }
    }
    let plural = if done == 1 { "" } else { "s" };
    CommandOutput::note(format!(
        "{} was disconnected from {done} IRC server{plural}.",
        ctx.user.jid
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_connection_line_is_biboumis() {
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 3_723);
        let now = since + Duration::from_secs(42);
        assert_eq!(
            connection_line(
                "irc.test",
                Endpoint {
                    port: 6697,
                    tls: true
                },
                since,
                now
            ),
            "Connected to IRC server irc.test on port 6697 (using TLS) since 2026-01-01 01:02:03 (42 seconds ago)."
        );
        assert_eq!(utc_stamp(0), "1970-01-01 00:00:00");
        assert_eq!(utc_stamp(951_782_400), "2000-02-29 00:00:00");
    }
}
