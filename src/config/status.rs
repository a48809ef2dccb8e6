//! The `[status]` section: where the status listener binds, who may read
//! it (a bearer token, required off loopback) and whether it speaks TLS.

use super::raw::S;
use super::secret::SecretSource;
use super::{files, Validator};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_STATUS_LISTEN: &str = "127.0.0.1:9811";
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    pub listen: Option<S<String>>,
    pub stall_after: Option<S<String>>,
    pub token_file: Option<S<String>>,
    pub token_credential: Option<S<String>>,
    pub tls_cert_file: Option<S<String>>,
    pub tls_key_file: Option<S<String>>,
}

#[derive(Clone, Debug)]
pub struct StatusConfig {
    pub listen: SocketAddr,
    /// `/healthz` says 503 (and the watchdog stops) when the edge holds
    /// samples this long without committing them.
    pub stall_after: Duration,
    /// When set, everything but `/healthz` needs `Authorization: Bearer`.
    pub token: Option<SecretSource>,
    pub tls: Option<ListenerTls>,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            listen: ([127, 0, 0, 1], 9811).into(),
            stall_after: DEFAULT_STALL_AFTER,
            token: None,
            tls: None,
        }
    }
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl StatusConfig {
    /// The URL a local client (the CLI) reaches the listener at.
    pub fn local_url(&self) -> String {
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }
}

impl Validator<'_> {
    pub(super) fn status(&mut self, raw: Option<&S<RawStatus>>) -> StatusConfig {
        let mut out = StatusConfig::default();
        let Some(r) = raw.map(S::get_ref) else {
            return out;
        };
        if let Some(l) = &r.listen {
            match l.get_ref().parse::<SocketAddr>() {
                Ok(a) => {
                    self.need(l, "listen", files::What::Listen(a));
                    out.listen = a;
                }
                Err(_) => self.err(
                    l,
                    format!(
                        "bad listen address {:?}: write IP:PORT, like \"{DEFAULT_STATUS_LISTEN}\"",
                        l.get_ref()
                    ),
                ),
            }
        }
        out.stall_after = self.duration(&r.stall_after, DEFAULT_STALL_AFTER);
        out.token = match (&r.token_file, &r.token_credential) {
            (Some(f), Some(_)) => {
                self.err(f, "give either token_file or token_credential, not both");
                None
            }
            (Some(f), None) => {
                let p = self.base.join(f.get_ref());
                self.need(f, "token_file", files::What::File(p.clone()));
                Some(SecretSource::File(p))
            }
            (None, Some(c)) => {
                let name = c.get_ref().clone();
                self.need(c, "token_credential", files::What::Credential(name.clone()));
                Some(SecretSource::Credential(name))
            }
            (None, None) => None,
        };
        if let (Some(l), None) = (&r.listen, &out.token) {
            if !out.listen.ip().is_loopback() {
                self.err(
                    l,
                    format!(
                        "the status listener on {} is reachable from the network: set token_file (a file holding a bearer token) or listen on 127.0.0.1",
                        out.listen
                    ),
                );
            }
        }
        out.tls = match (&r.tls_cert_file, &r.tls_key_file) {
            (Some(c), Some(k)) => {
                let cert_file = self.base.join(c.get_ref());
                let key_file = self.base.join(k.get_ref());
                self.need(c, "tls_cert_file", files::What::File(cert_file.clone()));
                self.need(k, "tls_key_file", files::What::File(key_file.clone()));
                Some(ListenerTls {
                    cert_file,
                    key_file,
                })
            }
            (Some(c), None) => {
                self.err(
                    c,
                    "tls_cert_file needs tls_key_file (the certificate's private key, PEM)",
                );
                None
            }
            (None, Some(k)) => {
                self.err(
                    k,
                    "tls_key_file needs tls_cert_file (the certificate chain, PEM)",
                );
                None
            }
            (None, None) => None,
        };
        out
    }
}
