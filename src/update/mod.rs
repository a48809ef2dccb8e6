//! Updates: signed release and config bundles, the install layout with
//! its atomic `current`/`previous` switch, the release channel, and
//! health-gated activation with automatic rollback.
//!
//! - [`bundle`]: the bundle format and its verification (signature first).
//! - [`layout`]: `/opt/plantgate/releases`, `/etc/plantgate/configs` and
//!   their links.
//! - [`channel`]: the HTTPS channel manifest and downloads.
//! - [`activate`]: restart or reload, then the health gate.
//!
//! An update never touches the data directory: it only reads the store's
//! format number, to refuse a release that could not read the store.

pub mod activate;
pub mod bundle;
pub mod channel;
pub mod layout;

use crate::config::{self, Config};
use activate::Expect;
use bundle::{Bundle, BundleError, BundleKind};
use layout::{Layout, LayoutError, ACTIVE_CONFIG, CURRENT, PREVIOUS, PREVIOUS_CONFIG};
use std::path::{Path, PathBuf};

/// The target triple this binary was built for (from the build script).
pub const TARGET: &str = env!("PLANTGATE_TARGET");

/// Why an update command did not do what was asked. Exit codes: see
/// [`UpdateError::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The bundle is not trusted or not well formed: nothing was installed.
    #[error("refused: {0}")]
    Bundle(#[from] BundleError),
    /// The bundle is genuine but not for this gateway (target, version,
    /// store, kind) or its config is invalid: nothing was installed.
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Channel(#[from] channel::ChannelError),
    #[error("cannot change the install layout: {0}")]
    Layout(#[from] LayoutError),
    /// The switch was made, the gate failed, and the previous one runs again.
    #[error(
        "{what} failed its health check and was rolled back; {restored} runs again. Why: {why}"
    )]
    RolledBack {
        what: String,
        restored: String,
        why: String,
    },
    /// The gate failed and so did going back: a person must look now.
    #[error("{what} failed its health check ({why}), and restoring {restored} failed too ({again}): the gateway may be down; check `systemctl status plantgate` and `journalctl -u plantgate`")]
    RollbackFailed {
        what: String,
        restored: String,
        why: String,
        again: String,
    },
    /// The gate failed on a first install: there is nothing to go back to.
    #[error("{what} failed its health check ({why}), and there is none before it to go back to: the gateway is not running; see `journalctl -u plantgate`, fix the cause and apply again")]
    NothingToRestore { what: String, why: String },
    #[error("{0}")]
    Other(String),
}

impl UpdateError {
    /// 1: refused (fix the bundle or the command), 2: could not act (I/O,
    /// network), 3: rolled back after a failed health check, 4: the
    /// rollback failed too.
    pub fn exit_code(&self) -> u8 {
        match self {
            UpdateError::Bundle(_) | UpdateError::Refused(_) => 1,
            UpdateError::Channel(_) | UpdateError::Layout(_) | UpdateError::Other(_) => 2,
            UpdateError::RolledBack { .. } => 3,
            UpdateError::RollbackFailed { .. } | UpdateError::NothingToRestore { .. } => 4,
        }
    }
}

/// What a successful command did, in words for the operator.
pub type Done = String;

/// The update commands, on one gateway's config.
pub struct Updater {
    pub config: Config,
    pub layout: Layout,
    pub keys_dir: PathBuf,
    /// Polled after a switch.
    pub health_url: String,
}

/// The store's format on disk: `None` when there is no store yet; 0 for a
/// store from before formats were recorded.
pub fn store_format_on_disk(data_dir: &Path) -> Result<Option<u32>, UpdateError> {
    crate::store::format_on_disk(&data_dir.join("store"))
        .map_err(|e| UpdateError::Other(format!("cannot read the store's format: {e}")))
}

impl Updater {
    /// `root`: the `--root` given on the command line, over `[update] root`.
    pub fn new(config: Config, root: Option<&Path>) -> Updater {
        let root = root
            .map(Path::to_path_buf)
            .unwrap_or(config.update.root.clone());
        let layout = Layout::new(&root);
        let keys_dir = config
            .update
            .keys_dir
            .clone()
            .unwrap_or_else(|| layout.etc.join("keys"));
        let health_url = health_url_of(&config);
        Updater {
            config,
            layout,
            keys_dir,
            health_url,
        }
    }

    fn client(&self) -> Result<reqwest::Client, UpdateError> {
        // The status listener is usually plain HTTP on loopback; with TLS it
        // is verified like the channel.
        crate::sinks::odoo::http::install_crypto_provider();
        let u = &self.config.update;
        let tls = crate::sinks::odoo::http::tls_config_with(crate::sinks::odoo::http::TlsOptions {
            ca_file: u.ca_file.as_deref(),
            client_cert_file: None,
            client_key_file: None,
            pin_sha256: &[],
        })
        .map_err(|e| UpdateError::Other(e.to_string()))?;
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| UpdateError::Other(format!("cannot build an HTTP client: {e}")))
    }

    /// `update status`: the running layout, in lines.
    pub fn status(&self) -> Result<String, UpdateError> {
        let l = &self.layout;
        let mut out = String::new();
        let describe = |v: &Option<String>| -> String {
            match v {
                None => "none".into(),
                Some(v) => match l.failed(v) {
                    Some(why) => format!("{v} (failed its health check: {why})"),
                    None => v.clone(),
                },
            }
        };
        let current = l.release_link(CURRENT)?;
        let previous = l.release_link(PREVIOUS)?;
        out.push_str(&format!("target:   {TARGET}\n"));
        out.push_str(&format!("current:  {}\n", describe(&current)));
        out.push_str(&format!("previous: {}\n", describe(&previous)));
        let mut installed: Vec<String> = std::fs::read_dir(l.releases())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        installed.sort_by(|a, b| compare_versions(a, b));
        let installed: Vec<String> = installed.into_iter().map(|v| describe(&Some(v))).collect();
        out.push_str(&format!("releases: {}\n", installed.join(", ")));
        out.push_str(&format!(
            "config:   {} (previous: {})\n",
            l.config_link(ACTIVE_CONFIG)?
                .unwrap_or_else(|| "as installed".into()),
            l.config_link(PREVIOUS_CONFIG)?
                .unwrap_or_else(|| "none".into()),
        ));
        out.push_str(&format!(
            "channel:  {}\n",
            self.config.update.channel.as_deref().unwrap_or("none")
        ));
        Ok(out)
    }

    fn current_version(&self) -> Result<Option<semver::Version>, UpdateError> {
        Ok(self
            .layout
            .release_link(CURRENT)?
            .and_then(|v| semver::Version::parse(&v).ok()))
    }

    /// The configured channel's manifest, with the client and the URL it
    /// was fetched with (a release is downloaded from beside it).
    async fn channel_manifest(
        &self,
    ) -> Result<(reqwest::Client, String, channel::ChannelManifest), UpdateError> {
        let url = self
            .config
            .update
            .channel
            .clone()
            .ok_or(channel::ChannelError::NoChannel)?;
        let client = channel::client(&self.config.update)?;
        let manifest = channel::fetch(&client, &url).await?;
        Ok((client, url, manifest))
    }

    /// `update check`: is there a newer release for this target?
    pub async fn check(&self) -> Result<Done, UpdateError> {
        let (_, _, manifest) = self.channel_manifest().await?;
        let current = self.current_version()?;
        Ok(match channel::latest(&manifest, TARGET) {
            None => format!("the channel lists no release for {TARGET}"),
            Some(r) => {
                let newer = match (&current, semver::Version::parse(&r.version)) {
                    (Some(c), Ok(v)) => v > *c,
                    _ => true,
                };
                let installed = current.map_or("none".to_string(), |c| c.to_string());
                if newer {
                    format!("update available: {} (installed: {installed}); apply it with `plantgate update apply --from-channel`", r.version)
                } else {
                    format!(
                        "up to date: {installed} (the channel's newest for {TARGET} is {})",
                        r.version
                    )
                }
            }
        })
    }

    /// `update apply --from-channel`: download the newest release and apply
    /// it, unless it is installed already or failed its health check before.
    pub async fn apply_from_channel(&self) -> Result<Done, UpdateError> {
        let (client, url, manifest) = self.channel_manifest().await?;
        let Some(release) = channel::latest(&manifest, TARGET) else {
            return Ok(format!(
                "the channel lists no release for {TARGET}; nothing to do"
            ));
        };
        if let (Some(c), Ok(v)) = (
            self.current_version()?,
            semver::Version::parse(&release.version),
        ) {
            if v <= c {
                return Ok(format!("up to date: {c}"));
            }
        }
        if let Some(why) = self.layout.failed(&release.version) {
            return Ok(format!(
                "{} failed its health check before ({why}); not retried from the channel: apply its bundle by hand to try again",
                release.version
            ));
        }
        let path =
            channel::download(&client, &url, release, &self.layout.opt.join("downloads")).await?;
        let result = self.apply_release(&path, false).await;
        // A verified bundle lives on as the release directory.
        let _ = std::fs::remove_file(bundle::signature_path(&path));
        let _ = std::fs::remove_file(&path);
        result
    }

    /// `update apply BUNDLE`.
    pub async fn apply_release(
        &self,
        path: &Path,
        allow_downgrade: bool,
    ) -> Result<Done, UpdateError> {
        let b = bundle::open(path, &self.keys_dir)?;
        self.check_release(&b, allow_downgrade)?;
        let _lock = self.layout.lock()?;
        let m = &b.manifest;
        let old_current = self.layout.release_link(CURRENT)?;
        let old_previous = self.layout.release_link(PREVIOUS)?;
        if old_current.as_deref() == Some(m.version.as_str()) {
            if self.layout.failed(&m.version).is_none() {
                return Ok(format!(
                    "{} is installed and current already; nothing to do",
                    m.version
                ));
            }
            // A first install that failed its gate, tried again.
            self.layout.install_release(&b)?;
            return self.switch_release(&m.version, old_previous, None).await;
        }
        self.layout.install_release(&b)?;
        let done = self
            .switch_release(&m.version, old_current, old_previous)
            .await?;
        Ok(format!("{done}; signed with {}", b.signed_by.display()))
    }

    /// A verified release bundle is for this gateway: kind, target,
    /// version and store format.
    fn check_release(&self, b: &Bundle, allow_downgrade: bool) -> Result<(), UpdateError> {
        let m = &b.manifest;
        if m.kind != BundleKind::Release {
            return Err(UpdateError::Refused(format!(
                "this is a {} bundle, not a release: apply it with `plantgate config apply`",
                m.kind.as_str()
            )));
        }
        if !m.files.contains_key("plantgate") {
            return Err(UpdateError::Refused(
                "the release bundle holds no `plantgate` binary".into(),
            ));
        }
        let target = m.target.as_deref().unwrap_or("none");
        if target != TARGET {
            return Err(UpdateError::Refused(format!(
                "release {} is built for {target}, this gateway runs {TARGET}: use the bundle for {TARGET}",
                m.version
            )));
        }
        let version = semver::Version::parse(&m.version).map_err(|e| {
            UpdateError::Refused(format!(
                "release version {:?} is not a version: {e}",
                m.version
            ))
        })?;
        if let Some(current) = self.current_version()? {
            if version < current && !allow_downgrade {
                return Err(UpdateError::Refused(format!(
                    "release {version} is older than the installed {current}: to go back on purpose, use `plantgate update rollback` or add --allow-downgrade"
                )));
            }
        }
        self.check_store(&m.version, m.min_store_format, m.store_format)
    }

    /// The store on disk must be one this release reads.
    fn check_store(
        &self,
        version: &str,
        min: Option<u32>,
        max: Option<u32>,
    ) -> Result<(), UpdateError> {
        let Some(found) = store_format_on_disk(&self.config.gateway.data_dir)? else {
            return Ok(());
        };
        let (min, max) = (min.unwrap_or(0), max.unwrap_or(u32::MAX));
        if found > max {
            return Err(UpdateError::Refused(format!(
                "release {version} reads event stores up to format {max}, but the store in {} has format {found} (written by a newer release): it would not start; use a release that reads format {found}",
                self.config.gateway.data_dir.display()
            )));
        }
        if found < min {
            return Err(UpdateError::Refused(format!(
                "release {version} reads event stores from format {min} on, but the store in {} has format {found}: install an intermediate release first, which converts the store",
                self.config.gateway.data_dir.display()
            )));
        }
        Ok(())
    }

    /// `update rollback`: back to the previous release (which becomes
    /// current; the current one becomes previous), health-gated.
    pub async fn rollback(&self) -> Result<Done, UpdateError> {
        let _lock = self.layout.lock()?;
        let current = self.layout.release_link(CURRENT)?;
        let Some(previous) = self.layout.release_link(PREVIOUS)? else {
            return Err(UpdateError::Refused(
                "there is no previous release to go back to".into(),
            ));
        };
        if let Some(m) = self.layout.manifest(&previous)? {
            self.check_store(&previous, m.min_store_format, m.store_format)?;
        }
        let done = self
            .switch_release(&previous, current.clone(), Some(previous.clone()))
            .await?;
        Ok(format!("rolled back: {done}"))
    }

    /// Point `current` at `version` (and `previous` at the old current),
    /// restart, gate; on failure restore both links and restart again.
    async fn switch_release(
        &self,
        version: &str,
        old_current: Option<String>,
        old_previous: Option<String>,
    ) -> Result<Done, UpdateError> {
        let l = &self.layout;
        if let Some(c) = &old_current {
            l.set_release_link(PREVIOUS, c)?;
        }
        l.set_release_link(CURRENT, version)?;
        let expect = Expect {
            version: Some(version.to_string()),
            config_hash: None,
        };
        let gate = self
            .activate(
                &self.config.update.restart_command,
                &self.health_url,
                &expect,
            )
            .await;
        let Err(why) = gate else {
            // Healthy now (a retry by hand): no longer marked failed.
            let _ = std::fs::remove_file(l.release_dir(version).join(layout::HEALTH_FAILED));
            return Ok(format!(
                "{version} is running and healthy (previous: {})",
                old_current.as_deref().unwrap_or("none")
            ));
        };
        let what = format!("release {version}");
        let _ = l.mark_failed(version, &why);
        let Some(old) = old_current else {
            // `current` stays: /usr/bin/plantgate points through it, and
            // without it there would be no command left to fix things with.
            return Err(UpdateError::NothingToRestore { what, why });
        };
        l.set_release_link(CURRENT, &old)?;
        match &old_previous {
            Some(p) => l.set_release_link(PREVIOUS, p)?,
            None => l.remove_link(&l.opt, PREVIOUS)?,
        }
        let expect = Expect {
            version: Some(old.clone()),
            config_hash: None,
        };
        let restart = &self.config.update.restart_command;
        Err(self
            .roll_back(restart, &expect, what, format!("release {old}"), why)
            .await)
    }

    /// Activate what the links point at again after `what` failed the
    /// gate (`why`): the error says whether `restored` passed it.
    async fn roll_back(
        &self,
        command: &[String],
        expect: &Expect,
        what: String,
        restored: String,
        why: String,
    ) -> UpdateError {
        match self.activate(command, &self.health_url, expect).await {
            Ok(()) => UpdateError::RolledBack {
                what,
                restored,
                why,
            },
            Err(again) => UpdateError::RollbackFailed {
                what,
                restored,
                why,
                again,
            },
        }
    }

    /// Run `command`, then wait for the gateway at `url` to pass the gate.
    async fn activate(&self, command: &[String], url: &str, expect: &Expect) -> Result<(), String> {
        activate::run_command(command)?;
        let client = self.client().map_err(|e| e.to_string())?;
        activate::wait_healthy(&client, url, expect, self.config.update.health_timeout).await
    }

    /// `config apply BUNDLE`: verify, validate as `plantgate check` does,
    /// switch, reload, gate; on any failure the old config stays (or is
    /// switched back to).
    pub async fn apply_config(&self, path: &Path) -> Result<Done, UpdateError> {
        let b = bundle::open(path, &self.keys_dir)?;
        if b.manifest.kind != BundleKind::Config {
            return Err(UpdateError::Refused(format!(
                "this is a {} bundle, not a config: apply it with `plantgate update apply`",
                b.manifest.kind.as_str()
            )));
        }
        let Some((_, toml)) = b.files.iter().find(|(n, _)| n == "gateway.toml") else {
            return Err(UpdateError::Refused(
                "the config bundle holds no gateway.toml".into(),
            ));
        };
        let text = String::from_utf8(toml.clone())
            .map_err(|_| UpdateError::Refused("gateway.toml is not UTF-8".into()))?;
        // Checked at the path the service reads it from, so relative
        // paths in it resolve as they will when it runs.
        let new = match config::check(&text, &self.layout.gateway_toml()) {
            Ok(c) => c,
            Err(config::ConfigError::Invalid { diagnostics, .. }) => {
                let lines: Vec<String> = diagnostics
                    .iter()
                    .map(|d| {
                        format!(
                            "{}:gateway.toml:{}:{}: {}",
                            path.display(),
                            d.line,
                            d.col,
                            d.message
                        )
                    })
                    .collect();
                return Err(UpdateError::Refused(format!(
                    "the config in {} is invalid; the running config stays:\n{}",
                    path.display(),
                    lines.join("\n")
                )));
            }
            Err(e) => return Err(UpdateError::Refused(e.to_string())),
        };
        let name = config_name(new.hash.as_bytes());
        let l = &self.layout;
        let _lock = l.lock()?;
        let before = l.adopt_plain_config(|text| config_name(config_hash(text).as_bytes()))?;
        if before.as_deref() == Some(name.as_str()) {
            return Ok(format!(
                "config {} is active already; nothing to do",
                &new.hash[..12]
            ));
        }
        let before_previous = l.config_link(PREVIOUS_CONFIG)?;
        l.install_config(&name, &b)?;
        if let Some(b) = &before {
            l.set_config_link(PREVIOUS_CONFIG, b)?;
        }
        l.set_config_link(ACTIVE_CONFIG, &name)?;
        l.link_gateway_toml()?;
        let expect = Expect {
            version: None,
            config_hash: Some(new.hash.clone()),
        };
        let label = format!("config {} ({})", &new.hash[..12], b.manifest.version);
        let Err(why) = self
            .activate(
                &self.config.update.reload_command,
                &health_url_of(&new),
                &expect,
            )
            .await
        else {
            return Ok(format!(
                "{label} is active and the gateway runs it; signed with {}",
                b.signed_by.display()
            ));
        };
        let Some(old) = before else {
            return Err(UpdateError::NothingToRestore { what: label, why });
        };
        l.set_config_link(ACTIVE_CONFIG, &old)?;
        match &before_previous {
            Some(p) => l.set_config_link(PREVIOUS_CONFIG, p)?,
            None => l.remove_link(&l.etc, PREVIOUS_CONFIG)?,
        }
        let old_hash = std::fs::read(l.gateway_toml())
            .map(|t| config_hash(&t))
            .ok();
        let expect = Expect {
            version: None,
            config_hash: old_hash,
        };
        let reload = &self.config.update.reload_command;
        Err(self
            .roll_back(reload, &expect, label, format!("config {old}"), why)
            .await)
    }
}

/// Where a gateway running `config` answers `/healthz`.
fn health_url_of(config: &Config) -> String {
    config
        .update
        .health_url
        .clone()
        .unwrap_or_else(|| format!("{}/healthz", config.status.local_url()))
}

/// The config's hash as `/status` reports it (SHA-256 of the text).
fn config_hash(text: &[u8]) -> String {
    bundle::sha256_hex(text)
}

/// A config's directory name: the first 16 hex digits of its hash.
fn config_name(hash: &[u8]) -> String {
    String::from_utf8_lossy(&hash[..hash.len().min(16)]).into_owned()
}

/// Versions in semver order; names that are not versions last, by name.
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}
