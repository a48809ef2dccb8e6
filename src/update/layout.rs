//! The install layout, shared by the Debian package and bundle updates:
//!
//! ```text
//! ROOT/opt/plantgate/releases/<version>/{plantgate,manifest.toml}
//! ROOT/opt/plantgate/current  -> releases/<version>
//! ROOT/opt/plantgate/previous -> releases/<version>   (kept for rollback)
//! ROOT/etc/plantgate/gateway.toml                     the config the unit runs
//! ROOT/etc/plantgate/keys/*.pub                       trusted minisign keys
//! ROOT/etc/plantgate/configs/<hash>/gateway.toml…     each applied config bundle
//! ROOT/etc/plantgate/active-config   -> configs/<hash>
//! ROOT/etc/plantgate/previous-config -> configs/<hash>
//! ```
//!
//! Once a config bundle was applied, `gateway.toml` is a symlink to
//! `active-config/gateway.toml`, so the unit (which reads
//! `/etc/plantgate/gateway.toml`) runs the active config and a switch is one
//! rename. The first `config apply` keeps a package's plain `gateway.toml`
//! as a config of its own (`previous-config`).
//!
//! Invariants: every link is relative and replaced by `rename(2)` of a new
//! link made beside it, so a reader (or a crash) sees the old or the new
//! target, never none; a release or config directory is written under a
//! temporary name and renamed into place complete; the data directory is
//! not under either root and nothing here knows its path.

use super::bundle::{Bundle, Manifest, MANIFEST};
use std::io;
use std::path::{Path, PathBuf};

/// The release links.
pub const CURRENT: &str = "current";
pub const PREVIOUS: &str = "previous";
/// The config links, in the config directory.
pub const ACTIVE_CONFIG: &str = "active-config";
pub const PREVIOUS_CONFIG: &str = "previous-config";
/// A file in a release directory: that release failed its health gate.
pub const HEALTH_FAILED: &str = "health-failed";

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct LayoutError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Clone, Debug)]
pub struct Layout {
    /// `ROOT/opt/plantgate`.
    pub opt: PathBuf,
    /// `ROOT/etc/plantgate`.
    pub etc: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            opt: root.join("opt/plantgate"),
            etc: root.join("etc/plantgate"),
        }
    }

    pub fn releases(&self) -> PathBuf {
        self.opt.join("releases")
    }

    pub fn release_dir(&self, version: &str) -> PathBuf {
        self.releases().join(version)
    }

    /// The config file the unit runs.
    pub fn gateway_toml(&self) -> PathBuf {
        self.etc.join("gateway.toml")
    }

    /// The version a release link points at, if the link exists.
    pub fn release_link(&self, name: &str) -> Result<Option<String>, LayoutError> {
        link_name(&self.opt.join(name))
    }

    /// The manifest of an installed release.
    pub fn manifest(&self, version: &str) -> Result<Option<Manifest>, LayoutError> {
        let path = self.release_dir(version).join(MANIFEST);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map(Some).map_err(|e| LayoutError {
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, e.message().to_string()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(at(&path)(e)),
        }
    }

    /// Write a verified release bundle to `releases/<version>/`, replacing
    /// a leftover directory of that version that no link points at.
    pub fn install_release(&self, bundle: &Bundle) -> Result<PathBuf, LayoutError> {
        let version = &bundle.manifest.version;
        let dest = self.release_dir(version);
        let linked = [CURRENT, PREVIOUS]
            .iter()
            .map(|l| self.release_link(l))
            .collect::<Result<Vec<_>, _>>()?;
        let in_use = linked.iter().flatten().any(|v| v == version);
        if dest.exists() && in_use && self.failed(version).is_none() {
            // The running or the kept release: never rewritten in place.
            return Ok(dest);
        }
        install_dir(&self.releases(), version, bundle, |name| {
            if name == "plantgate" {
                0o755
            } else {
                0o644
            }
        })?;
        Ok(dest)
    }

    /// Point a release link at `releases/<version>`.
    pub fn set_release_link(&self, name: &str, version: &str) -> Result<(), LayoutError> {
        let target = Path::new("releases").join(version);
        relink(&self.opt, name, &target)
    }

    pub fn remove_link(&self, dir: &Path, name: &str) -> Result<(), LayoutError> {
        let p = dir.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(at(&p)(e)),
        }
    }

    /// Mark (or unmark) a release as having failed its health gate.
    pub fn mark_failed(&self, version: &str, why: &str) -> Result<(), LayoutError> {
        let p = self.release_dir(version).join(HEALTH_FAILED);
        std::fs::write(&p, format!("{why}\n")).map_err(at(&p))
    }

    pub fn failed(&self, version: &str) -> Option<String> {
        std::fs::read_to_string(self.release_dir(version).join(HEALTH_FAILED))
            .ok()
            .map(|s| s.trim().to_string())
    }

    pub fn configs(&self) -> PathBuf {
        self.etc.join("configs")
    }

    /// The config a config link points at (its directory name).
    pub fn config_link(&self, name: &str) -> Result<Option<String>, LayoutError> {
        link_name(&self.etc.join(name))
    }

    /// Write a verified config bundle to `configs/<name>/`.
    pub fn install_config(&self, name: &str, bundle: &Bundle) -> Result<PathBuf, LayoutError> {
        let dest = self.configs().join(name);
        if !dest.exists() {
            // Readable by the gateway's DynamicUser; secrets stay out of bundles
            // (api_key_credential, files named by absolute path).
            install_dir(&self.configs(), name, bundle, |_| 0o644)?;
        }
        Ok(dest)
    }

    /// A plain `gateway.toml` (as the package installs it) is kept as
    /// `configs/<name>/gateway.toml` and made the active config; then
    /// `gateway.toml` becomes the link to `active-config/gateway.toml`.
    /// Returns the name of the config that was active before.
    pub fn adopt_plain_config(
        &self,
        name_of: impl Fn(&[u8]) -> String,
    ) -> Result<Option<String>, LayoutError> {
        let toml = self.gateway_toml();
        let meta = match std::fs::symlink_metadata(&toml) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return self.config_link(ACTIVE_CONFIG)
            }
            Err(e) => return Err(at(&toml)(e)),
        };
        let ours = Path::new(ACTIVE_CONFIG).join("gateway.toml");
        if meta.file_type().is_symlink()
            && std::fs::read_link(&toml).ok().as_deref() == Some(ours.as_path())
        {
            return self.config_link(ACTIVE_CONFIG);
        }
        // A plain file, or a link of someone else's: its content is kept.
        let text = std::fs::read(&toml).map_err(at(&toml))?;
        let name = name_of(&text);
        let dir = self.configs().join(&name);
        if !dir.exists() {
            let tmp = self
                .configs()
                .join(format!(".{name}.tmp-{}", std::process::id()));
            std::fs::create_dir_all(&tmp).map_err(at(&tmp))?;
            write_synced(&tmp.join("gateway.toml"), &text, 0o644)?;
            sync_dir(&tmp)?;
            std::fs::rename(&tmp, &dir).map_err(at(&dir))?;
            sync_dir(&self.configs())?;
        }
        relink(&self.etc, ACTIVE_CONFIG, &Path::new("configs").join(&name))?;
        relink(
            &self.etc,
            "gateway.toml",
            &Path::new(ACTIVE_CONFIG).join("gateway.toml"),
        )?;
        Ok(Some(name))
    }

    /// Hold the update lock for as long as the returned file lives: one
    /// update command at a time (the timer's and a person's).
    pub fn lock(&self) -> Result<std::fs::File, LayoutError> {
        std::fs::create_dir_all(&self.opt).map_err(at(&self.opt))?;
        let path = self.opt.join(".update.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(at(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(LayoutError {
                path,
                source: io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another update command is running (the update timer?): wait for it to finish",
                ),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(at(&path)(e)),
        }
    }

    /// Point a config link at `configs/<name>`.
    pub fn set_config_link(&self, link: &str, name: &str) -> Result<(), LayoutError> {
        relink(&self.etc, link, &Path::new("configs").join(name))
    }

    /// Make `gateway.toml` the link to the active config (idempotent).
    pub fn link_gateway_toml(&self) -> Result<(), LayoutError> {
        relink(
            &self.etc,
            "gateway.toml",
            &Path::new(ACTIVE_CONFIG).join("gateway.toml"),
        )
    }
}

/// Write `bundle`'s files and manifest into `parent/<name>/` via a
/// temporary directory renamed into place.
fn install_dir(
    parent: &Path,
    name: &str,
    bundle: &Bundle,
    mode_of: impl Fn(&str) -> u32,
) -> Result<(), LayoutError> {
    std::fs::create_dir_all(parent).map_err(at(parent))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(at(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(at(&tmp))?;
    for (file, data) in &bundle.files {
        let p = tmp.join(file);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(at(dir))?;
        }
        write_synced(&p, data, mode_of(file))?;
    }
    write_synced(&tmp.join(MANIFEST), bundle.manifest_text.as_bytes(), 0o644)?;
    sync_dir(&tmp)?;
    let dest = parent.join(name);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(at(&dest))?;
    }
    std::fs::rename(&tmp, &dest).map_err(at(&dest))?;
    sync_dir(parent)
}

fn write_synced(path: &Path, data: &[u8], mode: u32) -> Result<(), LayoutError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(at(path))?;
    f.write_all(data).map_err(at(path))?;
    f.sync_all().map_err(at(path))
}

fn sync_dir(dir: &Path) -> Result<(), LayoutError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))
}

/// Replace `dir/name` by a symlink to `target` atomically: a new link
/// beside it, renamed over it.
fn relink(dir: &Path, name: &str, target: &Path) -> Result<(), LayoutError> {
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let tmp = dir.join(format!(".{name}.new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(at(&tmp))?;
    let link = dir.join(name);
    std::fs::rename(&tmp, &link).map_err(at(&link))?;
    sync_dir(dir)
}

/// The last component of a symlink's target: a version or config name.
fn link_name(link: &Path) -> Result<Option<String>, LayoutError> {
    match std::fs::read_link(link) {
        Ok(t) => Ok(t.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(at(link)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relink_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        std::fs::create_dir_all(l.release_dir("1.0.0")).unwrap();
        std::fs::create_dir_all(l.release_dir("1.1.0")).unwrap();
        l.set_release_link(CURRENT, "1.0.0").unwrap();
        l.set_release_link(CURRENT, "1.1.0").unwrap();
        assert_eq!(l.release_link(CURRENT).unwrap().as_deref(), Some("1.1.0"));
        assert_eq!(
            std::fs::read_link(l.opt.join(CURRENT)).unwrap(),
            Path::new("releases/1.1.0"),
            "relative link"
        );
        // No temporary link left behind.
        assert_eq!(std::fs::read_dir(&l.opt).unwrap().count(), 2);
    }
}
