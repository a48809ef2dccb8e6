//! The TLS client config for a broker: the plant's CA (or the system's
//! roots), an optional client certificate, and an optional name the
//! broker's certificate must carry when it is not the address's host.

use crate::cert_check::{CertCheck, Checked};
use crate::config::mqtt::MqttTls;
use crate::pem::{self, PemError};
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {what} {pem}")]
    File { what: &'static str, pem: PemError },
    #[error("{0} holds no certificate")]
    NoCertificate(String),
    #[error("no trusted root certificates: give ca_file")]
    NoRoots,
    #[error("TLS setup: {0}")]
    Rustls(String),
}

pub fn client_config(tls: &MqttTls) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        // A plant CA replaces the system roots: trust exactly what was given.
        Some(path) => {
            let certs = pem::certs(path).map_err(|pem| TlsSetupError::File {
                what: "ca_file",
                pem,
            })?;
            roots.add_parsable_certificates(certs);
            if roots.is_empty() {
                return Err(TlsSetupError::NoCertificate(path.display().to_string()));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return Err(TlsSetupError::NoRoots);
            }
        }
    }
    let rustls_err = |e: rustls::Error| TlsSetupError::Rustls(e.to_string());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?;
    let builder = match &tls.server_name {
        Some(name) => {
            let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
            let name = ServerName::try_from(name.clone())
                .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Checked {
                    chain,
                    check: Renamed(name),
                }))
        }
        None => builder.with_root_certificates(roots),
    };
    let config = match &tls.client_auth {
        Some((cert, key)) => {
            let chain = pem::certs(cert).map_err(|pem| TlsSetupError::File {
                what: "client_certificate",
                pem,
            })?;
            if chain.is_empty() {
                return Err(TlsSetupError::NoCertificate(cert.display().to_string()));
            }
            let key = pem::key(key).map_err(|pem| TlsSetupError::File {
                what: "client_key",
                pem,
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(rustls_err)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Checks the broker's certificate against a configured name instead of
/// the host connected to (a broker reached by IP, or through a tunnel).
#[derive(Debug)]
struct Renamed(ServerName<'static>);

impl CertCheck for Renamed {
    fn verify(
        &self,
        chain: &dyn ServerCertVerifier,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        chain.verify_server_cert(end_entity, intermediates, &self.0, ocsp_response, now)
    }
}
