//! Small helpers around `jid` parsing for configuration and addressing.

use tokio_xmpp::jid::{BareJid, Jid};

/// Parses a domain-only JID (a component domain); the error says what is wrong.
pub fn domain_jid(domain: &str) -> Result<BareJid, String> {
    let jid = BareJid::new(domain).map_err(|e| e.to_string())?;
    if jid.node().is_some() {
        return Err(format!("{domain} has a local part; a domain is expected"));
    }
    Ok(jid)
}

/// Parses a bare JID (`user@domain`); the error says what is wrong.
pub fn bare_jid(s: &str) -> Result<BareJid, String> {
    let jid = Jid::new(s).map_err(|e| e.to_string())?;
    if jid.resource().is_some() {
        return Err(format!("{s} has a resource; a bare JID is expected"));
    }
    Ok(jid.to_bare())
}

/// The server domain a component domain hangs off (`irc.example.org` → `example.org`).
pub fn parent_domain(domain: &str) -> String {
    match domain.split_once('.') {
        Some((_, rest)) if rest.contains('.') || rest == "localhost" => rest.to_string(),
        _ => domain.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_domains() {
        assert_eq!(parent_domain("irc.example.org"), "example.org");
        assert_eq!(parent_domain("fake.localhost"), "localhost");
        assert_eq!(parent_domain("example.org"), "example.org");
    }

    #[test]
    fn jid_checks() {
        assert!(domain_jid("irc.example.org").is_ok());
        assert!(domain_jid("a@irc.example.org").is_err());
        assert!(bare_jid("admin@example.org").is_ok());
        assert!(bare_jid("admin@example.org/phone").is_err());
    }
}
