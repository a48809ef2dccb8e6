//! The HTTPS client for Odoo: rustls with the ring provider (it cross-builds
//! to ARM with only a C cross compiler), certificates verified, an optional
//! plant CA, plaintext only when the config says so.

use crate::config::OdooConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("cannot read CA file {path}: {detail}")]
    CaFile { path: PathBuf, detail: String },
    #[error("CA file {0} holds no PEM certificate")]
    CaEmpty(PathBuf),
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
}

/// Install rustls's ring provider once per process; later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client(cfg: &OdooConfig) -> Result<reqwest::Client, HttpSetupError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("plantgate/", env!("CARGO_PKG_VERSION")))
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .https_only(!cfg.allow_plaintext);
    if let Some(path) = &cfg.ca_file {
        // A plant CA replaces the system roots: trust exactly what was given.
        builder = builder.tls_certs_only(pem_roots(path)?);
    }
    builder
        .build()
        .map_err(|e| HttpSetupError::Client(e.to_string()))
}

/// The certificates of a PEM file, as roots a client trusts.
pub fn pem_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, HttpSetupError> {
    let ca_err = |detail: String| HttpSetupError::CaFile {
        path: path.to_path_buf(),
        detail,
    };
    let mut roots = Vec::new();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_err(e.to_string()))? {
        let der = cert.map_err(|e| ca_err(e.to_string()))?;
        roots.push(reqwest::Certificate::from_der(&der).map_err(|e| ca_err(e.to_string()))?);
    }
    if roots.is_empty() {
        return Err(HttpSetupError::CaEmpty(path.to_path_buf()));
    }
    Ok(roots)
}
