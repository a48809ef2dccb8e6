//! Reading PEM files: the certificates and private keys that the TLS
//! clients (Odoo and the release channel, MQTT brokers) and the status
//! listener are set up with, and that `plantgate check` proves usable.
//! The error names the file and what is wrong with it; each caller says
//! which of its keys named the file.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// A PEM file that cannot be read, or does not hold what it should.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct PemError {
    pub path: PathBuf,
    pub detail: String,
}

impl PemError {
    pub fn new(path: &Path, detail: impl ToString) -> PemError {
        PemError {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        }
    }
}

/// Every certificate in the file, in order; empty when it holds none
/// (whether that is an error is the caller's to say).
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PemError::new(path, e))
}

/// The file's private key (PKCS#8, PKCS#1 or SEC1).
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| PemError::new(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let path = Path::new("/nonexistent/plantgate/ca.pem");
        let e = certs(path).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/plantgate/ca.pem: "),
            "{e}"
        );
        let e = key(path).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/plantgate/ca.pem: "),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_certificates_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        assert!(certs(&path).unwrap().is_empty());
    }
}
