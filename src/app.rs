//! The whole gateway process: database, then one gateway per enabled bridge.

use crate::config::Settings;
use crate::db::{Database, SealKey};
use crate::gateway::{self, Gateway, StartError};
use crate::http::HttpServer;
use crate::metrics::Registry;
use estuary_bridge_api::Connector;
use std::collections::HashMap;
use std::sync::Arc;

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The seal key could not be read or created.
    #[error("the seal key: {0} (set [database] seal_key, or make seal_key_file writable)")]
    SealKey(String),
    /// The database could not be opened.
    #[error("the database: {0}")]
    Database(String),
    /// A bridge could not be built from its configuration.
    #[error("bridge {bridge}: {message}")]
    Bridge {
        /// Which.
        bridge: String,
        /// Why.
        message: String,
    },
    /// An `[outbound] allow` entry cannot be read.
    #[error("[outbound] allow: {0}")]
    Outbound(#[from] estuary_bridge_api::outbound::AllowEntryError),
    /// A gateway could not start.
    #[error(transparent)]
    Gateway(#[from] StartError),
    /// The HTTP server could not start.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

/// A running process.
pub struct App {
    /// The gateways, one per enabled bridge.
    pub gateways: Vec<Arc<Gateway>>,
    /// The database.
    pub db: Database,
    /// The HTTP server, when one runs (`[http]`, or an older webhook table's listener).
    http: std::sync::Mutex<Option<HttpServer>>,
    /// The files the gateway keeps (`[media]`); its sweeper stops when this is dropped.
    _media: Arc<crate::media::MediaStore>,
    /// The archive pruner (`[archive]`), when a limit is set.
    pruner: tokio::sync::Mutex<Option<crate::retention::Pruner>>,
}

/// Opens the database named in the settings, with its seal key.
pub async fn open_database(settings: &Settings) -> Result<Database, AppError> {
    let key = match &settings.database.seal_key {
        Some(k) => {
            SealKey::from_base64(k.expose()).map_err(|e| AppError::SealKey(e.to_string()))?
        }
        None => SealKey::load_or_create(&settings.database.seal_key_file)
            .map_err(|e| AppError::SealKey(e.to_string()))?,
    };
    Database::connect(&settings.database.url, key)
        .await
        .map_err(|e| AppError::Database(e.to_string()))
}

/// Starts every enabled bridge, building connectors from the configuration.
pub async fn start(settings: &Settings) -> Result<App, AppError> {
    let db = open_database(settings).await?;
    let mut connectors = HashMap::new();
    let outbound = settings.outbound.policy()?;
    for (name, _) in settings.enabled_bridges() {
        let table = settings
            .bridge_tables
            .get(name)
            .cloned()
            .unwrap_or_default();
        let c =
            crate::bridges::build(name, &table, &outbound).map_err(|message| AppError::Bridge {
                bridge: name.clone(),
                message,
            })?;
        connectors.insert(name.clone(), c);
    }
    start_with(settings, db, connectors).await
}

/// Starts the enabled bridges with the given connectors (tests pass their own).
pub async fn start_with(
    settings: &Settings,
    db: Database,
    mut connectors: HashMap<String, Arc<dyn Connector>>,
) -> Result<App, AppError> {
    let mut gateways = Vec::new();
    let registry = Registry::new();
    let http_settings = settings.http_server();
    let media = crate::media::MediaStore::new(
        &settings.media,
        http_settings.as_ref().and_then(|h| h.public_url.as_deref()),
    );
    for (name, _) in settings.enabled_bridges() {
        let connector = connectors.remove(name).ok_or_else(|| AppError::Bridge {
            bridge: name.clone(),
            message: "no connector for this bridge".into(),
        })?;
        match gateway::start(
            name,
            settings,
            connector,
            db.clone(),
            &registry,
            Arc::clone(&media),
        )
        .await
        {
            Ok(g) => gateways.push(g),
            Err(e) => {
                for g in &gateways {
                    g.shutdown().await;
                }
                return Err(e.into());
            }
        }
    }
    let retention = registry.retention();
    let http = match http_settings {
        None => None,
        Some(http) => {
            let mut mounts: Vec<(String, axum::Router)> = gateways
                .iter()
                .filter_map(|g| g.http_routes().map(|r| (g.bridge.clone(), r)))
                .collect();
            if media.serves() {
                mounts.push((
                    "media".into(),
                    crate::media::serve::routes(Arc::clone(&media)),
                ));
            }
            match crate::http::start(&http, &gateways, registry, mounts).await {
                Ok(server) => Some(server),
                Err(e) => {
                    for g in &gateways {
                        g.shutdown().await;
                    }
                    return Err(e.into());
                }
            }
        }
    };
    media.run_sweeper();
    let pruner = crate::retention::Pruner::start(db.clone(), settings.archive.pruner(), retention);
    for notice in settings.notices() {
        tracing::warn!("{notice}");
    }
    Ok(App {
        gateways,
        db,
        http: std::sync::Mutex::new(http),
        _media: media,
        pruner: tokio::sync::Mutex::new(pruner),
    })
}

impl App {
    /// The HTTP server's bound addresses (empty when it does not run).
    pub fn http_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.http
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|h| h.local_addrs().to_vec())
            .unwrap_or_default()
    }

    /// Stops every gateway; queued stanzas are kept in the database, and archive rows
    /// still queued are written.
    pub async fn shutdown(&self) {
        // No new requests first: a hook accepted now could not be delivered.
        let http = self.http.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(http) = http {
            http.stop().await;
        }
        if let Some(pruner) = self.pruner.lock().await.take() {
            pruner.stop().await;
        }
        for g in &self.gateways {
            g.shutdown().await;
        }
        self.db.settle().await;
    }
}
