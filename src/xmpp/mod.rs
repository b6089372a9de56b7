//! Everything XMPP: the component link and the pure translations between stanzas and the
//! neutral bridge vocabulary.

pub mod attachment;
pub mod avatar;
pub mod commit_gate;
pub mod disco;
pub mod el;
pub mod errors;
pub mod escape;
pub mod forms;
pub mod jid;
pub mod link;
pub mod message;
pub mod muc;
pub mod ns;
pub mod unconfirmed;
pub mod xml_safe;
