//! Who may read the status listener, and over what: a bearer token (when
//! configured, required for everything but `/healthz`) and optional TLS.

use crate::config::{ListenerTls, Secret, SecretError, StatusConfig};
use crate::pem::{self, PemError};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("status token: {0}")]
    Token(#[from] SecretError),
    #[error("status listener TLS: cannot read {0}")]
    Pem(PemError),
    #[error("status listener TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// What the listener enforces, read once at start.
pub struct Access {
    token: Option<Secret>,
    pub tls: Option<TlsAcceptor>,
}

impl Access {
    pub fn from_config(cfg: &StatusConfig) -> Result<Access, AccessError> {
        let token = cfg.token.as_ref().map(|s| s.read()).transpose()?;
        let tls = cfg.tls.as_ref().map(acceptor).transpose()?;
        Ok(Access { token, tls })
    }

    /// No token, no TLS: what a loopback listener needs.
    pub fn open() -> Access {
        Access {
            token: None,
            tls: None,
        }
    }

    pub fn needs_token(&self) -> bool {
        self.token.is_some()
    }

    /// Does an `Authorization` header value let the request in?
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(given) = authorization.and_then(|h| bearer(h)) else {
            return false;
        };
        same(given, token.expose().as_bytes())
    }
}

/// The credentials of `Bearer <token>` (the scheme is case-insensitive).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Compare without stopping at the first difference, so the time taken
/// does not tell an attacker how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn acceptor(tls: &ListenerTls) -> Result<TlsAcceptor, AccessError> {
    let certs = pem::certs(&tls.cert_file).map_err(AccessError::Pem)?;
    if certs.is_empty() {
        return Err(AccessError::Pem(PemError::new(
            &tls.cert_file,
            "no certificate in it",
        )));
    }
    let key = pem::key(&tls.key_file).map_err(AccessError::Pem)?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(t: &str) -> Access {
        Access {
            token: Some(Secret::new(t)),
            tls: None,
        }
    }

    #[test]
    fn only_the_right_bearer_token_is_admitted() {
        let a = with_token("s3cret");
        assert!(a.admits(Some(b"Bearer s3cret")));
        assert!(a.admits(Some(b"bearer s3cret ")));
        assert!(!a.admits(Some(b"Bearer s3cre")));
        assert!(!a.admits(Some(b"Bearer s3cret2")));
        assert!(!a.admits(Some(b"Basic czNjcmV0")));
        assert!(!a.admits(None));
        assert!(Access::open().admits(None));
    }
}
