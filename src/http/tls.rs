//! Serving HTTPS: the `[http]` certificate chain and key, read into a rustls config.

use super::HttpError;
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Reads the PEM certificate chain at `cert` and the PEM private key at `key` into a
/// server config that speaks HTTP/1.1 only. Errors name the file and what is wrong.
pub fn load(cert: &Path, key: &Path) -> Result<RustlsConfig, HttpError> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        HttpError::Tls(format!(
            "cannot read the TLS {what} {}: {e}",
            path.display()
        ))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| bad("certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, &"no certificate in it"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, private))
        .map_err(|e| {
            HttpError::Tls(format!(
                "the TLS certificate {} and key {} do not work together: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(server)))
}
