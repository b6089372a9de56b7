//! Where bridges may connect: the outbound address policy.
//!
//! Users choose where the gateway connects (an IRC server in `#chan%10.0.0.1@irc.gw`, a port
//! in "Configure", a hook URL). Without a policy any user could make the gateway scan ports
//! or reach into the admin's private network. So a bridge resolves every host it is asked to
//! reach through [`OutboundPolicy::resolve`] and connects only to the addresses it returns:
//! resolution happens once, and what was checked is what is connected to (no second lookup
//! that a rebinding DNS server could answer differently).
//!
//! Refused by default ([`reserved`]): loopback, private (RFC 1918, `fc00::/7`, the old
//! site-local `fec0::/10`), link-local, multicast, unspecified and "this network"
//! (`0.0.0.0/8`), shared address space (CGNAT, `100.64.0.0/10`), broadcast, and the
//! IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) forms of those.
//!
//! The admin allows exceptions in `[outbound] allow`, each entry one of:
//!
//! | entry                 | allows                                                    |
//! |-----------------------|-----------------------------------------------------------|
//! | `127.0.0.1`           | that address, any port                                    |
//! | `10.0.0.0/8`          | every address in that network, any port                   |
//! | `irc.internal`        | whatever that name resolves to, any port                  |
//! | `irc.internal:6667`   | the same, on port 6667 only                               |
//! | `10.1.2.3:6697`       | that address on port 6697 only                            |
//! | `[fd00::/8]:443`      | an IPv6 network (brackets when a port follows)            |
//!
//! A refusal says the same whatever the reason (a refused port, a filtered one, a private
//! address): the user learns nothing about the admin's network, only to ask the admin.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Why an address is refused unless the admin allows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), unique local `fc00::/7`, site-local
    /// `fec0::/10`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `0.0.0.0/8` ("this network", which Linux sends to the host itself), `::`.
    Unspecified,
    /// Shared address space for carrier-grade NAT, `100.64.0.0/10`.
    SharedAddressSpace,
    /// `255.255.255.255`.
    Broadcast,
}

impl fmt::Display for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reserved::Loopback => "loopback",
            Reserved::Private => "private",
            Reserved::LinkLocal => "link-local",
            Reserved::Multicast => "multicast",
            Reserved::Unspecified => "unspecified",
            Reserved::SharedAddressSpace => "shared (CGNAT)",
            Reserved::Broadcast => "broadcast",
        })
    }
}

/// The class of `ip` that the policy refuses by default, or `None` for an address on the
/// public internet. IPv4 addresses embedded in IPv6 (mapped, NAT64) are judged as IPv4.
pub fn reserved(ip: IpAddr) -> Option<Reserved> {
    match ip {
        IpAddr::V4(v4) => reserved_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => reserved_v4(v4),
            None => reserved_v6(v6),
        },
    }
}

fn reserved_v4(ip: Ipv4Addr) -> Option<Reserved> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some(Reserved::Loopback)
    } else if ip.is_private() {
        Some(Reserved::Private)
    } else if ip.is_link_local() {
        Some(Reserved::LinkLocal)
    } else if ip.is_multicast() {
        Some(Reserved::Multicast)
    } else if a == 0 {
        Some(Reserved::Unspecified)
    } else if a == 100 && (64..128).contains(&b) {
        Some(Reserved::SharedAddressSpace)
    } else if ip.is_broadcast() {
        Some(Reserved::Broadcast)
    } else {
        None
    }
}

fn reserved_v6(ip: Ipv6Addr) -> Option<Reserved> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some(Reserved::Loopback)
    } else if ip.is_unspecified() {
        Some(Reserved::Unspecified)
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        Some(Reserved::Private)
    } else if first & 0xffc0 == 0xfe80 {
        Some(Reserved::LinkLocal)
    } else if ip.is_multicast() {
        Some(Reserved::Multicast)
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 well-known-prefix
/// (`64:ff9b::a.b.c.d`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = ip.octets();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

/// The address as compared with allow entries: an IPv4-mapped address is its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// An IP network, `address/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What an allow entry names: a host name or a network (a single address is a network of
/// one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A host name, lower case, without a trailing dot: whatever it resolves to.
    Host(String),
    /// Addresses.
    Network(Network),
}

/// One entry of `[outbound] allow`: a target, on one port or on any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowEntry {
    /// What is allowed.
    pub target: Target,
    /// The only port allowed, or any.
    pub port: Option<u16>,
}

/// An allow entry that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{entry:?} is not an allow entry: {why} (write an address like \"127.0.0.1\", a network like \"10.0.0.0/8\" or a host name like \"irc.internal\", each optionally followed by \":port\"; IPv6 with a port in brackets, \"[fd00::/8]:6667\")"
)]
pub struct AllowEntryError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub why: String,
}

impl FromStr for AllowEntry {
    type Err = AllowEntryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| AllowEntryError {
            entry: text.to_owned(),
            why: why.to_owned(),
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        // `[v6]`, `[v6]:port`, `[v6/n]:port`; else one colon separates a port, more than
        // one is a bare IPv6 address or network.
        let (target, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("a “[” without its “]”"))?;
            match after {
                "" => (inside, None),
                _ => {
                    let port = after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("only “:port” may follow “]”"))?;
                    (inside, Some(port))
                }
            }
        } else if s.matches(':').count() == 1 {
            let (host, port) = s.split_once(':').ok_or_else(|| bad("no port"))?;
            (host, Some(port))
        } else {
            (s, None)
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => return Err(bad(&format!("“{p}” is not a port (1–65535)"))),
            },
        };
        Ok(AllowEntry {
            target: parse_target(target).map_err(|why| bad(&why))?,
            port,
        })
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    if let Some((addr, prefix)) = s.split_once('/') {
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("“{addr}” is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("“{prefix}” is not a prefix length (0–{max})"))?;
        return Ok(Target::Network(Network {
            addr: canonical(addr),
            prefix,
        }));
    }
    if let Ok(addr) = s.parse::<IpAddr>() {
        let addr = canonical(addr);
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        return Ok(Target::Network(Network { addr, prefix }));
    }
    let host = s.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!("“{s}” is neither an address nor a host name"));
    }
    Ok(Target::Host(host))
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Host(h) => h.clone(),
            Target::Network(n) if n.prefix == 32 || n.prefix == 128 => n.addr.to_string(),
            Target::Network(n) => n.to_string(),
        };
        match self.port {
            Some(port) if target.contains(':') => write!(f, "[{target}]:{port}"),
            Some(port) => write!(f, "{target}:{port}"),
            None => f.write_str(&target),
        }
    }
}

/// Why the gateway will not connect somewhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The address is not allowed (whatever the reason: the text is the same for every
    /// refused address, so that it tells nothing about the admin's network).
    #[error(
        "the gateway does not connect to {host} port {port}: that address is not allowed here. If you need it, ask the gateway's admin to allow it (\"[outbound] allow\")"
    )]
    NotAllowed {
        /// The host as the user gave it.
        host: String,
        /// The port.
        port: u16,
    },
    /// The name has no address.
    #[error("cannot find the address of {host}: {why}. Check the name")]
    Unresolved {
        /// The host as the user gave it.
        host: String,
        /// What the resolver said.
        why: String,
    },
}

impl From<OutboundError> for crate::BridgeError {
    /// A refused address is `Forbidden`, a name without an address `RemoteUnreachable`.
    fn from(e: OutboundError) -> Self {
        let kind = match e {
            OutboundError::NotAllowed { .. } => crate::ErrorKind::Forbidden,
            OutboundError::Unresolved { .. } => crate::ErrorKind::RemoteUnreachable,
        };
        crate::BridgeError::new(kind, e.to_string())
    }
}

/// Where the gateway may connect: public addresses, plus what the admin allows.
///
/// The default allows public addresses only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow: Vec<AllowEntry>,
}

impl OutboundPolicy {
    /// The policy with these allow entries (as written in `[outbound] allow`).
    pub fn new<S: AsRef<str>>(allow: &[S]) -> Result<Self, AllowEntryError> {
        let allow = allow
            .iter()
            .map(|e| e.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(Self { allow })
    }

    /// The allow entries.
    pub fn allowed(&self) -> &[AllowEntry] {
        &self.allow
    }

    /// Whether the gateway may connect to `addr`, reached as `host` (the name the user gave,
    /// or the address itself). Pure: no lookup.
    pub fn allows(&self, host: &str, addr: SocketAddr) -> bool {
        if reserved(addr.ip()).is_none() {
            return true;
        }
        let host = host.trim_end_matches('.');
        self.allow.iter().any(|entry| {
            entry.port.is_none_or(|p| p == addr.port())
                && match &entry.target {
                    Target::Host(name) => name.eq_ignore_ascii_case(host),
                    Target::Network(net) => net.contains(addr.ip()),
                }
        })
    }

    /// The addresses of `addrs` (what `host` resolved to) that the gateway may connect to,
    /// in their order; [`OutboundError::NotAllowed`] when none is left. Pure: no lookup.
    pub fn check(
        &self,
        host: &str,
        port: u16,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, OutboundError> {
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| self.allows(host, *a))
            .collect();
        if allowed.is_empty() {
            return Err(OutboundError::NotAllowed {
                host: host.to_owned(),
                port,
            });
        }
        Ok(allowed)
    }

    /// Resolves `host` (a name, or an address in any form the system resolver takes) and
    /// returns the addresses the gateway may connect to on `port`. Connect to these and
    /// nothing else: resolving again could give other addresses.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
        // An address in brackets (`[::1]`, as in URLs) is the address.
        let name = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let found = match name.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| OutboundError::Unresolved {
                    host: host.to_owned(),
                    why: e.to_string(),
                })?
                .collect(),
        };
        if found.is_empty() {
            return Err(OutboundError::Unresolved {
                host: host.to_owned(),
                why: "no address".into(),
            });
        }
        self.check(name, port, found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sock(s: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip(s), port)
    }

    #[test]
    fn reserved_classes() {
        let cases = [
            ("127.0.0.1", Some(Reserved::Loopback)),
            ("127.255.255.254", Some(Reserved::Loopback)),
            ("::1", Some(Reserved::Loopback)),
            ("10.0.0.1", Some(Reserved::Private)),
            ("172.16.0.1", Some(Reserved::Private)),
            ("172.31.255.255", Some(Reserved::Private)),
            ("192.168.1.1", Some(Reserved::Private)),
            ("fc00::1", Some(Reserved::Private)),
            ("fd12:3456::1", Some(Reserved::Private)),
            ("fec0::1", Some(Reserved::Private)),
            ("169.254.169.254", Some(Reserved::LinkLocal)),
            ("fe80::1", Some(Reserved::LinkLocal)),
            ("febf::1", Some(Reserved::LinkLocal)),
            ("224.0.0.1", Some(Reserved::Multicast)),
            ("239.255.255.250", Some(Reserved::Multicast)),
            ("ff02::1", Some(Reserved::Multicast)),
            ("0.0.0.0", Some(Reserved::Unspecified)),
            ("0.1.2.3", Some(Reserved::Unspecified)),
            ("::", Some(Reserved::Unspecified)),
            ("100.64.0.1", Some(Reserved::SharedAddressSpace)),
            ("100.127.255.255", Some(Reserved::SharedAddressSpace)),
            ("255.255.255.255", Some(Reserved::Broadcast)),
            // The IPv4 forms inside IPv6.
            ("::ffff:127.0.0.1", Some(Reserved::Loopback)),
            ("::ffff:10.1.2.3", Some(Reserved::Private)),
            ("::ffff:169.254.1.1", Some(Reserved::LinkLocal)),
            ("64:ff9b::10.0.0.1", Some(Reserved::Private)),
            ("64:ff9b::127.0.0.1", Some(Reserved::Loopback)),
            // Public.
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.169.0.1", None),
            ("2001:4860:4860::8888", None),
            ("2a00:1450::1", None),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::8.8.8.8", None),
            ("fbff::1", None),
        ];
        for (addr, want) in cases {
            assert_eq!(reserved(ip(addr)), want, "{addr}");
        }
    }

    #[test]
    fn allow_entries_parse() {
        let entry = |s: &str| s.parse::<AllowEntry>().unwrap();
        let net = |a: &str, prefix| {
            Target::Network(Network {
                addr: ip(a),
                prefix,
            })
        };
        assert_eq!(
            entry("127.0.0.1"),
            AllowEntry {
                target: net("127.0.0.1", 32),
                port: None
            }
        );
        assert_eq!(entry("10.0.0.0/8").target, net("10.0.0.0", 8));
        assert_eq!(
            entry(" IRC.Internal.:6667 "),
            AllowEntry {
                target: Target::Host("irc.internal".into()),
                port: Some(6667)
            }
        );
        assert_eq!(entry("::1").target, net("::1", 128));
        assert_eq!(
            entry("[fd00::/8]:443"),
            AllowEntry {
                target: net("fd00::", 8),
                port: Some(443)
            }
        );
        assert_eq!(entry("[::1]").port, None);
        assert_eq!(entry("::ffff:10.0.0.1").target, net("10.0.0.1", 32));
        for text in [
            "127.0.0.1",
            "10.0.0.0/8",
            "irc.internal:6667",
            "[fd00::/8]:443",
        ] {
            assert_eq!(entry(text).to_string(), text);
        }
    }

    #[test]
    fn bad_allow_entries_say_why() {
        let why = |s: &str| s.parse::<AllowEntry>().unwrap_err().why;
        assert_eq!(why(""), "it is empty");
        assert_eq!(why("host:0"), "“0” is not a port (1–65535)");
        assert_eq!(why("host:http"), "“http” is not a port (1–65535)");
        assert_eq!(why("10.0.0.0/33"), "“33” is not a prefix length (0–32)");
        assert_eq!(why("banana/8"), "“banana” is not an IP address");
        assert_eq!(why("[::1"), "a “[” without its “]”");
        assert_eq!(why("[::1]6667"), "only “:port” may follow “]”");
        assert_eq!(
            why("a b.example"),
            "“a b.example” is neither an address nor a host name"
        );
        let e = OutboundPolicy::new(&["127.0.0.1", "no way"]).unwrap_err();
        assert!(e.to_string().contains("\"no way\""), "{e}");
    }

    #[test]
    fn the_default_allows_public_addresses_only() {
        let p = OutboundPolicy::default();
        assert!(p.allows("irc.libera.chat", sock("8.8.8.8", 6697)));
        assert!(!p.allows("localhost", sock("127.0.0.1", 6667)));
        assert!(!p.allows("10.0.0.1", sock("10.0.0.1", 22)));
        assert!(!p.allows("x", sock("::ffff:192.168.0.1", 80)));
    }

    #[test]
    fn allow_entries_open_addresses_networks_hosts_and_ports() {
        let p = OutboundPolicy::new(&[
            "127.0.0.1",
            "10.0.0.0/8",
            "irc.internal:6667",
            "[fd00::/8]:443",
        ])
        .unwrap();
        assert!(p.allows("127.0.0.1", sock("127.0.0.1", 1)));
        assert!(p.allows("localhost", sock("127.0.0.1", 6667)));
        assert!(p.allows("x", sock("::ffff:127.0.0.1", 6667)), "mapped form");
        assert!(!p.allows("x", sock("127.0.0.2", 6667)));
        assert!(!p.allows("x", sock("::1", 6667)));
        assert!(p.allows("x", sock("10.200.0.1", 80)));
        assert!(!p.allows("x", sock("192.168.0.1", 80)));
        assert!(p.allows("IRC.internal.", sock("192.168.5.5", 6667)));
        assert!(!p.allows("irc.internal", sock("192.168.5.5", 22)), "port");
        assert!(!p.allows("other.internal", sock("192.168.5.5", 6667)));
        assert!(p.allows("x", sock("fd00::5", 443)));
        assert!(!p.allows("x", sock("fd00::5", 80)));
        assert!(!p.allows("x", sock("fe80::1", 443)));
    }

    #[test]
    fn check_keeps_allowed_addresses_and_refuses_when_none_is_left() {
        let p = OutboundPolicy::default();
        let mixed = [sock("10.0.0.1", 80), sock("8.8.8.8", 80)];
        assert_eq!(p.check("h", 80, mixed).unwrap(), [sock("8.8.8.8", 80)]);
        let private = [sock("10.0.0.1", 80), sock("::1", 80)];
        let e = p.check("h", 80, private).unwrap_err();
        assert_eq!(
            e,
            OutboundError::NotAllowed {
                host: "h".into(),
                port: 80
            }
        );
        // The same text for every refused address: nothing tells one from another.
        let text = |addr| p.check("h", 80, [sock(addr, 80)]).unwrap_err().to_string();
        assert_eq!(text("127.0.0.1"), text("10.0.0.1"));
        assert!(text("127.0.0.1").contains("ask the gateway's admin"));
        let b: crate::BridgeError = e.into();
        assert_eq!(b.kind, crate::ErrorKind::Forbidden);
    }

    #[tokio::test]
    async fn resolve_checks_what_it_found() {
        let strict = OutboundPolicy::default();
        let e = strict.resolve("127.0.0.1", 6667).await.unwrap_err();
        assert!(matches!(e, OutboundError::NotAllowed { port: 6667, .. }));
        let e = strict.resolve("localhost", 6667).await.unwrap_err();
        assert!(matches!(e, OutboundError::NotAllowed { .. }), "{e}");
        assert!(strict.resolve("[::1]", 6667).await.is_err());
        let open = OutboundPolicy::new(&["127.0.0.1"]).unwrap();
        assert_eq!(
            open.resolve("127.0.0.1", 6667).await.unwrap(),
            [sock("127.0.0.1", 6667)]
        );
        let e = open.resolve("no-such-host.invalid", 1).await.unwrap_err();
        assert!(matches!(e, OutboundError::Unresolved { .. }), "{e}");
    }
}
