//! Errors of the database layer, worded for the admin who has to act on them.
//!
//! No variant ever holds a secret: URLs are shown with their password masked, sealed values
//! and login field values are never included.

use super::seal::SealError;

/// What went wrong in the puppet-account database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be opened.
    #[error("cannot open database at {url}: {source} (check [database] url)")]
    Connect {
        /// The URL, password masked.
        url: String,
        /// What the driver said.
        source: sqlx::Error,
    },
    /// The SQLite file could not be created readable by its owner only.
    #[error(
        "cannot make the database file {path} private (mode 0600): {source} \
         (check that the gateway's user owns it and its directory)"
    )]
    Permissions {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The URL names a kind of database Estuary does not support.
    #[error(
        "unsupported database URL {url}: use sqlite://PATH or postgres://USER@HOST/DB \
         (check [database] url)"
    )]
    UnsupportedUrl {
        /// The URL, password masked.
        url: String,
    },
    /// The schema could not be brought up to date.
    #[error(
        "cannot bring the database schema up to date: {0} \
         (was this database used by a newer Estuary, or its migrations edited?)"
    )]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A sealed login field could not be opened.
    #[error(
        "cannot unseal login field {var:?} of {user} on bridge {bridge}: {source} \
         (was the seal key changed? restore it, or have the user register again)"
    )]
    Seal {
        /// The bridge of the login.
        bridge: String,
        /// The user of the login.
        user: String,
        /// The field's name.
        var: String,
        /// Why it could not be opened.
        source: SealError,
    },
    /// A JSON column does not hold what it should.
    #[error("corrupt JSON in {table}.{column} for {key}: {source} (was the row edited by hand?)")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// Which row, e.g. `irc/alice@example.org`.
        key: String,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// A value could not be turned into JSON for storage.
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        /// What was being stored.
        what: &'static str,
        /// What the encoder said.
        source: serde_json::Error,
    },
    /// A stored avatar's base64 text does not decode.
    #[error("corrupt avatar {hash} in avatars.data: {source} (was the row edited by hand?)")]
    CorruptAvatar {
        /// The avatar's hash.
        hash: String,
        /// What the decoder said.
        source: base64::DecodeError,
    },
    /// A row that was referred to does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The database was closed (the gateway is stopping).
    #[error("the database is closed (the gateway is stopping)")]
    Closed,
}

impl DbError {
    /// Whether this is [`DbError::NotFound`] (e.g. an unknown RSM id, which XMPP reports
    /// as `item-not-found`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::NotFound(_))
    }
}

/// A database URL fit for messages and logs: the password, if any, is masked.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("postgres://estuary:s3cr3t@db.example.org:5432/estuary"),
            "postgres://estuary:***@db.example.org:5432/estuary"
        );
        assert_eq!(
            redact_url("postgres://estuary@db/estuary"),
            "postgres://estuary@db/estuary"
        );
        assert_eq!(
            redact_url("sqlite://estuary.db?mode=rwc"),
            "sqlite://estuary.db?mode=rwc"
        );
        assert_eq!(redact_url("estuary.db"), "estuary.db");
        assert_eq!(
            redact_url("postgres://u:p@w:rd@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
