//! Fuzzes the address codec: never panics, and whatever it accepts round-trips through
//! ids and local parts and holds no character that could break an IRC line.
#![no_main]

use estuary_bridge_irc::address::{local_part_for_id, parse_local_part, Address, CaseMapping};
use estuary_bridge_api::ChatKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(local) = std::str::from_utf8(data) else { return };
    for fixed in [None, Some("irc.example.org")] {
        let Ok(address) = parse_local_part(local, fixed) else { continue };
        let name = match &address {
            Address::Channel { channel, .. } => channel.as_str(),
            Address::Nick { nick, .. } => nick.as_str(),
            Address::Server(s) => s.as_str(),
        };
        assert!(!name.contains([' ', ',', '\r', '\n', '\0']));
        let key = address.chat_key(CaseMapping::Rfc1459);
        let id = match &key {
            ChatKey::Room(r) => r.as_str().to_owned(),
            ChatKey::Direct(u) => u.as_str().to_owned(),
            ChatKey::Service(s) => s.clone(),
        };
        if matches!(address, Address::Server(_)) {
            continue;
        }
        let again = parse_local_part(&local_part_for_id(&id, fixed), fixed)
            .expect("a minted local part parses")
            .chat_key(CaseMapping::Rfc1459);
        assert_eq!(again, key);
    }
});
