-- Per-login state (issue 15): a key-value store each bridge keeps per login (sync tokens,
-- IMAP UIDs, session tokens), every value sealed with the seal key ("v1:..." text, bound to
-- bridge, user and key), and the opaque id that names each login's data directory
-- (<data_dir>/logins/<bridge>/<dir_id>). Both are deleted with the login at unregistration.
CREATE TABLE login_state (
    bridge        TEXT   NOT NULL,
    user_jid      TEXT   NOT NULL,
    state_key     TEXT   NOT NULL,
    value         TEXT   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (bridge, user_jid, state_key)
);

CREATE TABLE login_dirs (
    bridge        TEXT   NOT NULL,
    user_jid      TEXT   NOT NULL,
    dir_id        TEXT   NOT NULL UNIQUE,
    PRIMARY KEY (bridge, user_jid)
);
