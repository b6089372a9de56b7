-- Messages from XMPP users handed to a bridge but not yet confirmed by the network, so that
-- a restart in the middle of a send (a webhook being retried, say) sends them again.
CREATE TABLE pending_sends (
    id            TEXT   NOT NULL PRIMARY KEY,
    bridge        TEXT   NOT NULL,
    user_jid      TEXT   NOT NULL,
    queued_at_ms  BIGINT NOT NULL,
    payload       TEXT   NOT NULL
);
CREATE INDEX pending_sends_by_bridge ON pending_sends (bridge, queued_at_ms);
