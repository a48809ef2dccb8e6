//! Signed bundles: an uncompressed tar holding `manifest.toml` and the
//! files it lists, with a detached minisign signature beside it
//! (`<bundle>.minisig`, as `minisign -S -m bundle.tar` writes it).
//!
//! Invariants of [`open`], in this order:
//! 1. The signature over the whole file is checked against the trusted keys
//!    before a single byte of the tar is interpreted.
//! 2. Every tar entry is a regular file with a plain relative path (no
//!    `..`, no absolute path, no link, no device), named once.
//! 3. `manifest.toml` lists every other file with its SHA-256; a file
//!    missing, unlisted or with another digest refuses the whole bundle.
//!
//! Nothing is written anywhere by this module; [`super::layout`] installs a
//! bundle only after all of this passed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

/// The manifest's file name inside a bundle.
pub const MANIFEST: &str = "manifest.toml";

/// What a bundle says it is; written as `manifest.toml`, and kept in each
/// release directory (the Debian package writes the same file). Keys this
/// release does not know are ignored, so a later release's bundle can add
/// some and still be read here.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// `"release"` (a binary, the default) or `"config"` (gateway.toml and
    /// tag maps).
    #[serde(default)]
    pub kind: BundleKind,
    /// A release's semantic version; a config bundle's label.
    pub version: String,
    /// A release's target triple, e.g. `x86_64-unknown-linux-gnu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A release: the store format it writes...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_format: Option<u32>,
    /// ...and the oldest one it reads (and converts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_store_format: Option<u32>,
    /// Every file of the bundle but the manifest → SHA-256, hex.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BundleKind {
    #[default]
    Release,
    Config,
}

impl BundleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::Release => "release",
            BundleKind::Config => "config",
        }
    }
}

/// A bundle whose signature, entries and digests were all verified.
#[derive(Debug)]
pub struct Bundle {
    pub manifest: Manifest,
    /// `manifest.toml` as signed, kept with the installed release.
    pub manifest_text: String,
    /// Path in the bundle → contents, in the manifest's order.
    pub files: Vec<(String, Vec<u8>)>,
    /// The trusted key that signed it.
    pub signed_by: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{bundle} is not signed: {sig} is missing (sign it with `minisign -S -m {bundle}`)")]
    Unsigned { bundle: PathBuf, sig: PathBuf },
    #[error("{0}: not a minisign signature file: {1}")]
    BadSignatureFile(PathBuf, String),
    #[error(
        "no trusted keys in {0}: put the release signer's minisign public key there as NAME.pub"
    )]
    NoKeys(PathBuf),
    #[error("{0}: not a minisign public key: {1}")]
    BadKey(PathBuf, String),
    #[error("{bundle} is signed with a key that is not trusted here (none of the *.pub in {keys}): ask for a bundle signed with your fleet's key, or add the signer's public key")]
    UnknownKey { bundle: PathBuf, keys: PathBuf },
    #[error("{bundle}: the signature does not match the file: it was altered or truncated after signing, or the .minisig belongs to another file; nothing was installed")]
    BadSignature { bundle: PathBuf },
    #[error("{bundle}: not a bundle: {why}")]
    Malformed { bundle: PathBuf, why: String },
    #[error("{bundle}: {file} has SHA-256 {found}, but the manifest says {expected}: the bundle was built wrong; nothing was installed")]
    Digest {
        bundle: PathBuf,
        file: String,
        expected: String,
        found: String,
    },
}

/// SHA-256 in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The signature file of a bundle: `<bundle>.minisig`.
pub fn signature_path(bundle: &Path) -> PathBuf {
    let mut s = bundle.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

/// Verify and read a bundle; see the module doc for the order of checks.
pub fn open(path: &Path, keys_dir: &Path) -> Result<Bundle, BundleError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| BundleError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let bytes = read(path)?;
    let sig_path = signature_path(path);
    let sig_text = match std::fs::read_to_string(&sig_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BundleError::Unsigned {
                bundle: path.to_path_buf(),
                sig: sig_path,
            })
        }
        Err(source) => {
            return Err(BundleError::Read {
                path: sig_path,
                source,
            })
        }
    };
    let signed_by = verify_signature(path, &bytes, &sig_path, &sig_text, keys_dir)?;
    let (manifest, manifest_text, files) = unpack(path, &bytes)?;
    Ok(Bundle {
        manifest,
        manifest_text,
        files,
        signed_by,
    })
}

/// The trusted key (a `*.pub` of `keys_dir`) that signed `bytes`.
fn verify_signature(
    bundle: &Path,
    bytes: &[u8],
    sig_path: &Path,
    sig_text: &str,
    keys_dir: &Path,
) -> Result<PathBuf, BundleError> {
    let sig = minisign_verify::Signature::decode(sig_text)
        .map_err(|e| BundleError::BadSignatureFile(sig_path.to_path_buf(), e.to_string()))?;
    let mut keys: Vec<PathBuf> = std::fs::read_dir(keys_dir)
        .map_err(|source| BundleError::Read {
            path: keys_dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    keys.sort();
    if keys.is_empty() {
        return Err(BundleError::NoKeys(keys_dir.to_path_buf()));
    }
    let mut key_matched = false;
    for key_path in keys {
        let text = std::fs::read_to_string(&key_path).map_err(|source| BundleError::Read {
            path: key_path.clone(),
            source,
        })?;
        let key = minisign_verify::PublicKey::decode(&text)
            .map_err(|e| BundleError::BadKey(key_path.clone(), e.to_string()))?;
        // Legacy (not prehashed) signatures are refused: minisign has
        // prehashed by default since 0.8.
        match key.verify(bytes, &sig, false) {
            Ok(()) => return Ok(key_path),
            Err(minisign_verify::Error::UnexpectedKeyId) => {}
            Err(_) => key_matched = true,
        }
    }
    Err(if key_matched {
        BundleError::BadSignature {
            bundle: bundle.to_path_buf(),
        }
    } else {
        BundleError::UnknownKey {
            bundle: bundle.to_path_buf(),
            keys: keys_dir.to_path_buf(),
        }
    })
}

/// A path inside a bundle that stays inside the directory it is unpacked
/// to: only plain names, at least one.
pub fn plain_relative(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty()
        && !name.contains('\\')
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

type Unpacked = (Manifest, String, Vec<(String, Vec<u8>)>);

fn unpack(bundle: &Path, bytes: &[u8]) -> Result<Unpacked, BundleError> {
    let bad = |why: String| BundleError::Malformed {
        bundle: bundle.to_path_buf(),
        why,
    };
    let mut archive = tar::Archive::new(bytes);
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for entry in archive
        .entries()
        .map_err(|e| bad(format!("cannot read the tar: {e}")))?
    {
        let mut entry = entry.map_err(|e| bad(format!("cannot read the tar: {e}")))?;
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| bad("an entry's name is not UTF-8".into()))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!(
                "entry {name:?} is not a regular file (links and devices are refused)"
            )));
        }
        if !plain_relative(&name) {
            return Err(bad(format!(
                "entry {name:?} is not a plain relative path (refused: it could write outside the release directory)"
            )));
        }
        let mut data = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("cannot read entry {name:?}: {e}")))?;
        if entries.insert(name.clone(), data).is_some() {
            return Err(bad(format!("entry {name:?} appears twice")));
        }
    }
    let manifest_bytes = entries
        .remove(MANIFEST)
        .ok_or_else(|| bad(format!("it holds no {MANIFEST}")))?;
    let manifest_text =
        String::from_utf8(manifest_bytes).map_err(|_| bad(format!("{MANIFEST} is not UTF-8")))?;
    let manifest: Manifest = toml::from_str(&manifest_text)
        .map_err(|e| bad(format!("{MANIFEST}: {}", e.message().trim())))?;
    let mut files = Vec::new();
    for (name, expected) in &manifest.files {
        if !plain_relative(name) || name == MANIFEST {
            return Err(bad(format!(
                "{MANIFEST} lists {name:?}, not a plain file name"
            )));
        }
        let data = entries.remove(name).ok_or_else(|| {
            bad(format!(
                "{MANIFEST} lists {name:?}, which is not in the bundle"
            ))
        })?;
        let found = sha256_hex(&data);
        if !found.eq_ignore_ascii_case(expected) {
            return Err(BundleError::Digest {
                bundle: bundle.to_path_buf(),
                file: name.clone(),
                expected: expected.clone(),
                found,
            });
        }
        files.push((name.clone(), data));
    }
    if let Some(extra) = entries.keys().next() {
        return Err(bad(format!(
            "{extra:?} is in the bundle but not in {MANIFEST}"
        )));
    }
    Ok((manifest, manifest_text, files))
}

/// Build a bundle (unsigned): the manifest gets each file's SHA-256. Sign
/// the result with `minisign -S -m FILE`.
pub fn build(
    mut manifest: Manifest,
    files: &[(String, Vec<u8>, u32)],
) -> Result<Vec<u8>, std::io::Error> {
    manifest.files = files
        .iter()
        .map(|(name, data, _)| (name.clone(), sha256_hex(data)))
        .collect();
    let text = toml::to_string(&manifest).map_err(std::io::Error::other)?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut append = |name: &str, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, data)
    };
    append(MANIFEST, text.as_bytes(), 0o644)?;
    for (name, data, mode) in files {
        append(name, data, *mode)?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_only() {
        assert!(plain_relative("plantgate"));
        assert!(plain_relative("tags/press.csv"));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./x", "a\\b"] {
            assert!(!plain_relative(bad), "{bad:?}");
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            kind: BundleKind::Release,
            version: "1.2.3".into(),
            target: Some("x86_64-unknown-linux-gnu".into()),
            store_format: Some(1),
            min_store_format: Some(0),
            files: BTreeMap::new(),
        }
    }

    #[test]
    fn reads_what_build_writes() {
        let tar = build(manifest(), &[("plantgate".into(), b"bin".to_vec(), 0o755)]).unwrap();
        let (m, _, files) = unpack(Path::new("b.tar"), &tar).unwrap();
        assert_eq!(m.version, "1.2.3");
        assert_eq!(files, vec![("plantgate".to_string(), b"bin".to_vec())]);
    }

    /// A tar entry named `../escape`, written by hand: tar::Builder itself
    /// refuses such names.
    #[test]
    fn refuses_path_traversal() {
        let mut tar = build(manifest(), &[]).unwrap();
        // Drop the two zero end blocks and append a raw entry.
        tar.truncate(tar.len() - 1024);
        let mut header = tar::Header::new_old();
        let name = b"../escape";
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_size(1);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(&[b'x'; 512]);
        tar.extend_from_slice(&[0; 1024]);
        let err = unpack(Path::new("b.tar"), &tar).unwrap_err().to_string();
        assert!(err.contains("not a plain relative path"), "{err}");
    }

    #[test]
    fn refuses_unlisted_and_wrong_digest() {
        let mut m = manifest();
        m.files.insert("plantgate".into(), sha256_hex(b"other"));
        let text = toml::to_string(&m).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in [
            (MANIFEST, text.as_bytes()),
            ("plantgate", b"bin".as_slice()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            builder.append_data(&mut h, name, data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let err = unpack(Path::new("b.tar"), &tar).unwrap_err();
        assert!(matches!(err, BundleError::Digest { .. }), "{err}");
    }
}
