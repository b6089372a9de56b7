-- The puppet-account database: one schema for every bridge, every row keyed by bridge.
--
-- Portable on purpose: the same file runs on SQLite and PostgreSQL through sqlx's `Any`
-- driver. Text is TEXT, integers and timestamps are BIGINT (unix milliseconds), JSON is
-- TEXT, and no auto-increment: ordered sequences come from the `counters` table.
-- `user` is a reserved word in PostgreSQL, hence `user_jid`.

-- XMPP accounts (bare JIDs) that use the gateway.
CREATE TABLE users (
    jid           TEXT   NOT NULL PRIMARY KEY,
    created_at_ms BIGINT NOT NULL
);

-- One puppet account per (bridge, user): the login fields given at registration as one
-- JSON text ({"clear": {var: value}, "sealed": {var: "v1:..."}}) and the bridge's metadata.
CREATE TABLE logins (
    bridge        TEXT   NOT NULL,
    user_jid      TEXT   NOT NULL REFERENCES users (jid),
    login_id      TEXT   NOT NULL,
    fields        TEXT   NOT NULL,
    metadata      TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (bridge, user_jid)
);

-- Foreign people known to a user.
CREATE TABLE contacts (
    bridge        TEXT   NOT NULL,
    user_jid      TEXT   NOT NULL,
    remote_id     TEXT   NOT NULL,
    name          TEXT,
    added_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (bridge, user_jid, remote_id)
);

-- Rooms a user is in, to rejoin after a restart.
CREATE TABLE rooms (
    bridge        TEXT   NOT NULL,
    user_jid      TEXT   NOT NULL,
    room_id       TEXT   NOT NULL,
    nick          TEXT   NOT NULL,
    joined_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (bridge, user_jid, room_id)
);

-- XMPP message id <-> foreign message id, per (bridge, user, chat).
CREATE TABLE message_map (
    bridge        TEXT   NOT NULL,
    user_jid      TEXT   NOT NULL,
    chat          TEXT   NOT NULL,
    xmpp_id       TEXT   NOT NULL,
    remote_id     TEXT   NOT NULL,
    at_ms         BIGINT NOT NULL,
    PRIMARY KEY (bridge, user_jid, chat, xmpp_id)
);
CREATE INDEX message_map_by_remote ON message_map (bridge, user_jid, chat, remote_id);
CREATE INDEX message_map_by_time ON message_map (at_ms);

-- Room history for XEP-0313 (MAM), per (bridge, user, room), ordered by `seq`.
CREATE TABLE archive (
    bridge        TEXT   NOT NULL,
    user_jid      TEXT   NOT NULL,
    room          TEXT   NOT NULL,
    seq           BIGINT NOT NULL,
    stanza_id     TEXT   NOT NULL,
    from_nick     TEXT   NOT NULL,
    body          TEXT   NOT NULL,
    at_ms         BIGINT NOT NULL,
    remote_id     TEXT,
    PRIMARY KEY (bridge, user_jid, room, seq),
    UNIQUE (bridge, user_jid, room, stanza_id)
);
CREATE INDEX archive_by_time ON archive (at_ms);

-- Stanzas accepted but not yet delivered to the XMPP server, per bridge, in `seq` order.
CREATE TABLE pending_outbound (
    bridge        TEXT   NOT NULL,
    seq           BIGINT NOT NULL,
    stanza        TEXT   NOT NULL,
    queued_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (bridge, seq)
);

-- Named monotonic counters (a portable stand-in for sequences). Incrementing one takes a
-- row lock held to the end of the transaction, so values are committed in order.
CREATE TABLE counters (
    name          TEXT   NOT NULL PRIMARY KEY,
    value         BIGINT NOT NULL
);
