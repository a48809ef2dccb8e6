//! The release channel: a TOML manifest fetched over HTTPS (verified with
//! the same TLS options `[odoo]` takes: a plant CA, a client certificate,
//! pins), listing releases per target with their bundle's URL and SHA-256.
//!
//! ```toml
//! [[releases]]
//! version = "0.2.0"
//! target = "x86_64-unknown-linux-gnu"
//! bundle = "plantgate-0.2.0-x86_64-unknown-linux-gnu.tar"  # relative to the channel URL
//! sha256 = "…"
//! ```
//!
//! A downloaded bundle whose SHA-256 is not the listed one (a truncated or
//! altered download) is refused before its signature is even
//! looked at; the signature (`<bundle URL>.minisig`) is what makes it
//! trusted, as for a bundle copied by hand.

use crate::config::update::UpdateConfig;
use crate::sinks::odoo::http::{self, TlsOptions};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Unknown keys are ignored: a channel may serve gateways of several releases.
#[derive(Debug, Deserialize)]
pub struct ChannelManifest {
    #[serde(default)]
    pub releases: Vec<ChannelRelease>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ChannelRelease {
    pub version: String,
    pub target: String,
    pub bundle: String,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("no [update] channel is set in the config: set channel = \"https://…/channel.toml\"")]
    NoChannel,
    #[error("cannot set up HTTPS for the channel: {0}")]
    Setup(#[from] http::HttpSetupError),
    #[error("cannot fetch {url}: {why}")]
    Fetch { url: String, why: String },
    #[error("{url} is not a channel manifest: {why}")]
    Manifest { url: String, why: String },
    #[error("the download of {url} is incomplete or altered: its SHA-256 is {found}, the channel lists {expected}; it was not kept and nothing was installed (try again later)")]
    Digest {
        url: String,
        expected: String,
        found: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An HTTPS-only client for the channel (and plain HTTP nowhere).
pub fn client(cfg: &UpdateConfig) -> Result<reqwest::Client, ChannelError> {
    http::install_crypto_provider();
    let tls = http::tls_config_with(TlsOptions {
        ca_file: cfg.ca_file.as_deref(),
        client_cert_file: cfg.client_cert_file.as_deref(),
        client_key_file: cfg.client_key_file.as_deref(),
        pin_sha256: &cfg.pin_sha256,
    })?;
    reqwest::Client::builder()
        .user_agent(concat!("plantgate/", env!("CARGO_PKG_VERSION")))
        .timeout(cfg.timeout)
        .https_only(true)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| ChannelError::Setup(http::HttpSetupError::Client(e.to_string())))
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, ChannelError> {
    let fetch = |why: String| ChannelError::Fetch {
        url: url.to_string(),
        why,
    };
    let describe = |e: reqwest::Error| {
        http::explain_tls(&e)
            .map(|t| t.replace("Odoo's", "the channel's"))
            .unwrap_or_else(|| http::error_chain(&e))
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fetch(describe(e)))?;
    if !resp.status().is_success() {
        return Err(fetch(format!("the server answered {}", resp.status())));
    }
    let body = resp.bytes().await.map_err(|e| fetch(describe(e)))?;
    Ok(body.to_vec())
}

/// Fetch the channel manifest.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<ChannelManifest, ChannelError> {
    let body = get(client, url).await?;
    let text = String::from_utf8(body).map_err(|_| ChannelError::Manifest {
        url: url.to_string(),
        why: "not UTF-8".into(),
    })?;
    toml::from_str(&text).map_err(|e| ChannelError::Manifest {
        url: url.to_string(),
        why: e.message().trim().to_string(),
    })
}

/// The newest release for `target` (versions that do not parse are skipped).
pub fn latest<'m>(m: &'m ChannelManifest, target: &str) -> Option<&'m ChannelRelease> {
    m.releases
        .iter()
        .filter(|r| r.target == target)
        .filter_map(|r| semver::Version::parse(&r.version).ok().map(|v| (v, r)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, r)| r)
}

/// Download a release's bundle and its signature into `dir`; the bundle's
/// SHA-256 must be the channel's. Returns the bundle's path.
pub async fn download(
    client: &reqwest::Client,
    channel_url: &str,
    release: &ChannelRelease,
    dir: &Path,
) -> Result<PathBuf, ChannelError> {
    let url = reqwest::Url::parse(channel_url)
        .and_then(|base| base.join(&release.bundle))
        .map_err(|e| ChannelError::Manifest {
            url: channel_url.to_string(),
            why: format!("bundle {:?}: {e}", release.bundle),
        })?
        .to_string();
    let body = get(client, &url).await?;
    let found = super::bundle::sha256_hex(&body);
    if !found.eq_ignore_ascii_case(&release.sha256) {
        return Err(ChannelError::Digest {
            url,
            expected: release.sha256.clone(),
            found,
        });
    }
    let sig = get(client, &format!("{url}.minisig")).await?;
    let write = |path: PathBuf, data: &[u8]| {
        std::fs::write(&path, data).map_err(|source| ChannelError::Write {
            path: path.clone(),
            source,
        })?;
        Ok::<PathBuf, ChannelError>(path)
    };
    std::fs::create_dir_all(dir).map_err(|source| ChannelError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let name = format!("plantgate-{}-{}.tar", release.version, release.target);
    let path = write(dir.join(&name), &body)?;
    write(super::bundle::signature_path(&path), &sig)?;
    Ok(path)
}
