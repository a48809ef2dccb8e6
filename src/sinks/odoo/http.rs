//! The HTTPS client for Odoo: rustls with the ring provider (it cross-builds
//! to ARM with only a C cross compiler), certificates verified against the
//! system's roots or a plant CA (`ca_file`), an optional client certificate
//! (mutual TLS), optional public-key pins, plaintext only when the config
//! says so.
//!
//! A pin is the base64 SHA-256 of the server certificate's
//! SubjectPublicKeyInfo, as HPKP and curl's `--pinnedpubkey sha256//…`
//! compute it. It is checked after, not instead of, the chain: a pin
//! narrows what is trusted, it never widens it.

use crate::cert_check::{CertCheck, Checked};
use crate::config::OdooConfig;
use crate::pem::{self, PemError};
use base64::Engine;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, OtherError, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("cannot read CA file {0}")]
    CaFile(PemError),
    #[error("CA file {0} holds no PEM certificate")]
    CaEmpty(PathBuf),
    #[error("cannot read client certificate {0}")]
    ClientCert(PemError),
    #[error("cannot read client key {0}")]
    ClientKey(PemError),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
}

/// Install rustls's ring provider once per process; later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client(cfg: &OdooConfig) -> Result<reqwest::Client, HttpSetupError> {
    install_crypto_provider();
    let builder = reqwest::Client::builder()
        .user_agent(concat!("plantgate/", env!("CARGO_PKG_VERSION")))
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .https_only(!cfg.allow_plaintext)
        .tls_backend_preconfigured(tls_config(cfg)?);
    builder
        .build()
        .map_err(|e| HttpSetupError::Client(e.to_string()))
}

/// What a TLS client trusts and presents: `[odoo]`'s keys, which
/// `[update]` (the release channel) takes too.
#[derive(Clone, Copy, Debug)]
pub struct TlsOptions<'a> {
    /// A plant CA that replaces the system roots.
    pub ca_file: Option<&'a Path>,
    pub client_cert_file: Option<&'a Path>,
    pub client_key_file: Option<&'a Path>,
    /// Base64 SHA-256 of the server's SubjectPublicKeyInfo; empty: no pinning.
    pub pin_sha256: &'a [String],
}

impl<'a> From<&'a OdooConfig> for TlsOptions<'a> {
    fn from(cfg: &'a OdooConfig) -> Self {
        TlsOptions {
            ca_file: cfg.ca_file.as_deref(),
            client_cert_file: cfg.client_cert_file.as_deref(),
            client_key_file: cfg.client_key_file.as_deref(),
            pin_sha256: &cfg.pin_sha256,
        }
    }
}

/// The rustls client config for `[odoo]`.
pub fn tls_config(cfg: &OdooConfig) -> Result<rustls::ClientConfig, HttpSetupError> {
    tls_config_with(TlsOptions::from(cfg))
}

/// The rustls client config for these options.
pub fn tls_config_with(cfg: TlsOptions<'_>) -> Result<rustls::ClientConfig, HttpSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Arc<dyn ServerCertVerifier> = match cfg.ca_file {
        // A plant CA replaces the system roots: trust exactly what was given.
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in pem_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| HttpSetupError::CaFile(PemError::new(path, e)))?;
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| HttpSetupError::Client(e.to_string()))?
        }
        None => Arc::new(rustls_platform_verifier::Verifier::new(provider.clone())?),
    };
    let verifier: Arc<dyn ServerCertVerifier> = if cfg.pin_sha256.is_empty() {
        chain
    } else {
        Arc::new(Checked {
            chain,
            check: Pinned(cfg.pin_sha256.to_vec()),
        })
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    Ok(match (cfg.client_cert_file, cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let certs = pem::certs(cert).map_err(HttpSetupError::ClientCert)?;
            let key = pem::key(key).map_err(HttpSetupError::ClientKey)?;
            builder.with_client_auth_cert(certs, key)?
        }
        // The config refuses one without the other.
        _ => builder.with_no_client_auth(),
    })
}

/// The certificates of a PEM file (a CA file).
fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpSetupError> {
    let certs = pem::certs(path).map_err(HttpSetupError::CaFile)?;
    if certs.is_empty() {
        return Err(HttpSetupError::CaEmpty(path.to_path_buf()));
    }
    Ok(certs)
}

/// The certificates of a PEM file, as roots a reqwest client trusts.
pub fn pem_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, HttpSetupError> {
    pem_certs(path)?
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der)
                .map_err(|e| HttpSetupError::CaFile(PemError::new(path, e)))
        })
        .collect()
}

/// The pin of a certificate: base64 SHA-256 of its SubjectPublicKeyInfo.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<String, webpki::Error> {
    let ee = webpki::EndEntityCert::try_from(cert)?;
    let spki = ee.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

/// The server's key is not one of the pins (or could not be read).
#[derive(Debug, thiserror::Error)]
#[error("Odoo's certificate public key is sha256//{seen}, which is not pinned (pin_sha256 = {pins:?}): if the server's key was changed on purpose, add its pin")]
pub struct PinMismatch {
    pub seen: String,
    pub pins: Vec<String>,
}

/// The chain verifier, then the pins.
#[derive(Debug)]
struct Pinned(Vec<String>);

impl CertCheck for Pinned {
    fn verify(
        &self,
        chain: &dyn ServerCertVerifier,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok =
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let seen = spki_sha256(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.0.contains(&seen) {
            return Ok(ok);
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(PinMismatch {
                seen,
                pins: self.0.clone(),
            })),
        )))
    }
}

/// Error text with its causes: reqwest's top-level message alone ("error
/// sending request") does not say what went wrong.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// A TLS failure in an error's causes, said so a person knows what to fix;
/// None when the error is not about TLS.
pub fn explain_tls(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = rustls_error(err, 0) {
            return Some(tls_words(tls));
        }
        cur = err.source();
    }
    None
}

/// `err` as a rustls error, looking inside io::Errors (their `source()`
/// skips the error they wrap; hyper-util wraps rustls's twice).
fn rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
    depth: u8,
) -> Option<&'a rustls::Error> {
    if depth > 8 {
        return None;
    }
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return rustls_error(inner, depth + 1);
    }
    None
}

fn tls_words(e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(o)) => {
            match o.0.downcast_ref::<PinMismatch>() {
                Some(p) => p.to_string(),
                None => format!("Odoo's TLS certificate was refused: {e}"),
            }
        }
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "Odoo's TLS certificate is not signed by a CA this gateway trusts ({e}): set ca_file to the CA that signed it (the plant CA), or give the server a certificate from a public CA"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "Odoo's TLS certificate is not for this host name ({e}): use the host name the certificate names in `url`"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("Odoo's TLS certificate has expired ({e}): renew it on the server"),
        rustls::Error::InvalidCertificate(_) => {
            format!("Odoo's TLS certificate was refused: {e}")
        }
        rustls::Error::AlertReceived(
            A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::HandshakeFailure,
        ) => format!(
            "the server refused the TLS connection ({e}): it requires a client certificate it trusts; set client_cert_file and client_key_file"
        ),
        other => format!("TLS failed: {other}"),
    }
}
