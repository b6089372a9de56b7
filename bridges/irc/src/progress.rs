//! The connection progress lines the user reads from the server's JID while a connection
//! opens, worded as Biboumi words them ("Connecting to host:port (encrypted)", then
//! "Connected to IRC server." or "Connection failed: …" per port tried), so that users
//! and scripts that know Biboumi find them. The failure's reason is this gateway's own
//! text for the error (e.g. "Connection refused (os error 111)"), not Biboumi's.

use crate::config::Endpoint;

/// Said before each port is tried.
pub fn attempt(server: &str, endpoint: Endpoint) -> String {
    let how = if endpoint.tls {
        "encrypted"
    } else {
        "not encrypted"
    };
    format!("Connecting to {server}:{} ({how})", endpoint.port)
}

/// Said when a port answered (before registration).
pub fn connected(endpoint: Endpoint) -> String {
    if endpoint.tls {
        "Connected to IRC server (encrypted).".to_owned()
    } else {
        "Connected to IRC server.".to_owned()
    }
}

/// Said when a port could not be reached; `why` is the error's text.
pub fn failed(why: &str) -> String {
    format!("Connection failed: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_worded_as_biboumi_words_them() {
        let tls = Endpoint {
            port: 6697,
            tls: true,
        };
        let plain = Endpoint {
            port: 6667,
            tls: false,
        };
        assert_eq!(
            attempt("irc.localhost", tls),
            "Connecting to irc.localhost:6697 (encrypted)"
        );
        assert_eq!(
            attempt("irc.localhost", plain),
            "Connecting to irc.localhost:6667 (not encrypted)"
        );
        assert_eq!(connected(plain), "Connected to IRC server.");
        assert_eq!(connected(tls), "Connected to IRC server (encrypted).");
        assert_eq!(
            failed("Connection refused"),
            "Connection failed: Connection refused"
        );
    }
}
