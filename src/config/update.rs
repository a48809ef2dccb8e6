//! The `[update]` section: where releases and configs are installed, which
//! keys sign bundles, the release channel (with the same TLS options as
//! `[odoo]`), and how a switch is activated and judged healthy.

use super::raw::S;
use super::{files, Validator};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// How long a new release (or config) has to answer `/healthz` with 200.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// A channel download (manifest or bundle) must finish within this.
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdate {
    pub root: Option<S<String>>,
    pub keys_dir: Option<S<String>>,
    pub channel: Option<S<String>>,
    pub ca_file: Option<S<String>>,
    pub client_cert_file: Option<S<String>>,
    pub client_key_file: Option<S<String>>,
    pub pin_sha256: Option<S<Vec<String>>>,
    pub timeout: Option<S<String>>,
    pub health_url: Option<S<String>>,
    pub health_timeout: Option<S<String>>,
    pub restart_command: Option<S<Vec<String>>>,
    pub reload_command: Option<S<Vec<String>>>,
}

/// The validated `[update]` section (defaults when there is none).
#[derive(Clone, Debug)]
pub struct UpdateConfig {
    /// Every install path is under this (`/` on a real gateway): releases
    /// in `ROOT/opt/plantgate`, configs in `ROOT/etc/plantgate`.
    pub root: PathBuf,
    /// minisign public keys (`*.pub`) trusted for bundles; default
    /// `ROOT/etc/plantgate/keys`.
    pub keys_dir: Option<PathBuf>,
    /// The channel manifest's HTTPS URL, for `update check` and
    /// `update apply --from-channel`.
    pub channel: Option<String>,
    /// TLS for the channel, as `[odoo]` has it.
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub pin_sha256: Vec<String>,
    pub timeout: Duration,
    /// Polled after a switch; default the status listener's `/healthz`.
    pub health_url: Option<String>,
    pub health_timeout: Duration,
    /// Run after a release switch; the service manager starts the new binary.
    pub restart_command: Vec<String>,
    /// Run after a config switch; the gateway re-reads its config (SIGHUP).
    pub reload_command: Vec<String>,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            root: PathBuf::from("/"),
            keys_dir: None,
            channel: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            pin_sha256: Vec::new(),
            timeout: DEFAULT_DOWNLOAD_TIMEOUT,
            health_url: None,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            restart_command: ["systemctl", "restart", "plantgate"]
                .map(String::from)
                .to_vec(),
            reload_command: ["systemctl", "reload", "plantgate"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl Validator<'_> {
    pub(super) fn update(&mut self, raw: Option<&S<RawUpdate>>) -> UpdateConfig {
        let mut out = UpdateConfig::default();
        let Some(r) = raw.map(S::get_ref) else {
            return out;
        };
        if let Some(root) = &r.root {
            out.root = self.base.join(root.get_ref());
        }
        if let Some(k) = &r.keys_dir {
            let dir = self.base.join(k.get_ref());
            self.need(k, "keys_dir", files::What::Dir(dir.clone()));
            out.keys_dir = Some(dir);
        }
        if let Some(c) = &r.channel {
            if c.get_ref().starts_with("https://") {
                out.channel = Some(c.get_ref().clone());
            } else {
                self.err(
                    c,
                    format!(
                        "channel {:?} is not an https:// URL: releases are fetched over verified TLS only",
                        c.get_ref()
                    ),
                );
            }
        }
        if let Some(c) = &r.ca_file {
            let p = self.base.join(c.get_ref());
            self.need(c, "ca_file", files::What::PemCerts(p.clone()));
            out.ca_file = Some(p);
        }
        match (&r.client_cert_file, &r.client_key_file) {
            (Some(c), Some(k)) => {
                let (cp, kp) = (self.base.join(c.get_ref()), self.base.join(k.get_ref()));
                self.need(c, "client_cert_file", files::What::PemCerts(cp.clone()));
                self.need(k, "client_key_file", files::What::PemKey(kp.clone()));
                out.client_cert_file = Some(cp);
                out.client_key_file = Some(kp);
            }
            (Some(c), None) => self.err(c, "client_cert_file needs client_key_file"),
            (None, Some(k)) => self.err(k, "client_key_file needs client_cert_file"),
            (None, None) => {}
        }
        if let Some(p) = &r.pin_sha256 {
            out.pin_sha256 = p.get_ref().clone();
        }
        out.timeout = self.duration(&r.timeout, DEFAULT_DOWNLOAD_TIMEOUT);
        if let Some(h) = &r.health_url {
            let u = h.get_ref();
            if u.starts_with("http://") || u.starts_with("https://") {
                out.health_url = Some(u.clone());
            } else {
                self.err(
                    h,
                    format!("health_url {u:?} is not a URL: write e.g. \"http://127.0.0.1:9811/healthz\""),
                );
            }
        }
        out.health_timeout = self.duration(&r.health_timeout, DEFAULT_HEALTH_TIMEOUT);
        for (value, key, slot) in [
            (
                &r.restart_command,
                "restart_command",
                &mut out.restart_command,
            ),
            (&r.reload_command, "reload_command", &mut out.reload_command),
        ] {
            if let Some(c) = value {
                if c.get_ref().is_empty() || c.get_ref()[0].is_empty() {
                    self.err(
                        c,
                        format!("{key} is empty: give the program and its arguments, like [\"systemctl\", \"restart\", \"plantgate\"]"),
                    );
                } else {
                    *slot = c.get_ref().clone();
                }
            }
        }
        out
    }
}
