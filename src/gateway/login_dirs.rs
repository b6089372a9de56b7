//! Each login's state for its bridge: the sealed key-value store in the database and the
//! private data directory (`<data_dir>/logins/<bridge>/<opaque id>`), handed to the bridge
//! in [`StoredLogin::store`](estuary_bridge_api::StoredLogin::store), both removed at
//! unregistration.

use super::Gateway;
use crate::db::DbStore;
use estuary_bridge_api::{BridgeError, LoginStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{info, warn};

/// The parent of bridge `bridge`'s login directories under the gateway's `data_dir`.
pub(super) fn root(data_dir: &Path, bridge: &str) -> PathBuf {
    data_dir.join("logins").join(bridge)
}

impl Gateway {
    /// The store of `user`'s login: its directory id is minted on the first start.
    pub(super) async fn login_store(&self, user: &str) -> Result<LoginStore, BridgeError> {
        let id = self
            .db
            .login_dir_id(&self.bridge, user)
            .await
            .map_err(|e| {
                warn!(bridge = %self.bridge, user, "cannot read the login's directory id: {e}");
                BridgeError::internal("the gateway's database failed; try again later")
            })?;
        let backend = Arc::new(DbStore::new(self.db.clone(), &self.bridge, user));
        Ok(LoginStore::new(backend, self.login_dirs.join(id)))
    }

    /// Removes `user`'s login directory, if one was ever named (`dir_id`, read before the
    /// login's rows were deleted), with everything in it.
    pub(super) async fn remove_login_dir(&self, user: &str, dir_id: Option<String>) {
        let Some(id) = dir_id else { return };
        let dir = self.login_dirs.join(id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {
                info!(bridge = %self.bridge, user, dir = %dir.display(), "removed the login's data directory")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(
                bridge = %self.bridge, user, dir = %dir.display(),
                "cannot remove the login's data directory: {e}"
            ),
        }
    }
}
