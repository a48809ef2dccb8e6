//! Secrets (the Odoo API key): read from a file or a systemd credential,
//! never from the config text, and never printed.

use std::fmt;
use std::path::PathBuf;

/// Where a secret lives.
#[derive(Clone, Debug)]
pub enum SecretSource {
    /// A file holding only the secret (trailing newline ignored).
    File(PathBuf),
    /// A systemd credential (`LoadCredential=NAME:…`), read from
    /// `$CREDENTIALS_DIRECTORY/NAME`.
    Credential(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file {0} is empty")]
    Empty(PathBuf),
    #[error("credential {0:?} asked for, but CREDENTIALS_DIRECTORY is not set: add LoadCredential={0}:/path/to/key to the unit, or use api_key_file")]
    NoCredentialsDirectory(String),
}

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl SecretSource {
    pub fn read(&self) -> Result<Secret, SecretError> {
        let path = match self {
            SecretSource::File(p) => p.clone(),
            SecretSource::Credential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .ok_or_else(|| SecretError::NoCredentialsDirectory(name.clone()))?;
                PathBuf::from(dir).join(name)
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| SecretError::Read {
            path: path.clone(),
            source,
        })?;
        let value = text.trim();
        if value.is_empty() {
            return Err(SecretError::Empty(path));
        }
        Ok(Secret(value.to_string()))
    }
}
