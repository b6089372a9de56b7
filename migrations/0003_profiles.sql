-- Names and avatars of contacts and rooms (issue 14).
--
-- Portable like 0001: the picture is stored as base64 TEXT (BLOB and BYTEA differ between
-- SQLite and PostgreSQL; vcard-temp and XEP-0084 carry base64 anyway).

-- Each picture once, by the SHA-1 of its bytes (lowercase hex, as XEP-0153/0084 show it),
-- whoever uses it. A row no profile names any more is deleted when the last one lets go.
CREATE TABLE avatars (
    hash          TEXT   NOT NULL PRIMARY KEY,
    media_type    TEXT   NOT NULL,
    size          BIGINT NOT NULL,
    data          TEXT   NOT NULL,
    stored_at_ms  BIGINT NOT NULL
);

-- What a user's login says of a contact ('contact') or a room ('room'): its display name
-- and its avatar (a hash into `avatars`), with the network's fingerprint of that avatar
-- (`avatar_key`) so that an unchanged picture is not fetched again.
CREATE TABLE profiles (
    bridge        TEXT   NOT NULL,
    user_jid      TEXT   NOT NULL,
    kind          TEXT   NOT NULL,
    remote_id     TEXT   NOT NULL,
    name          TEXT,
    avatar_hash   TEXT,
    avatar_key    TEXT,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (bridge, user_jid, kind, remote_id)
);
CREATE INDEX profiles_by_avatar ON profiles (avatar_hash);
