//! Trust and identity for OPC UA: the security policy and mode as the stack
//! knows them, the server certificates the gateway trusts (a directory of
//! DER files, each trusted by a person), and the user identity token.
//!
//! The trust check is plantgate's own, made on the certificate the server
//! hands out with its endpoints, before any secure channel is opened: a
//! certificate is trusted when a file in the trust directory holds exactly
//! it (same SHA-1 thumbprint). The stack is then told to accept that one
//! certificate; its own name-based store and its hostname check are not
//! used, because a gateway behind NAT connects by an address the server's
//! certificate does not name.

use crate::config::opcua::Identity;
use crate::config::SecretSource;
use opcua::client::IdentityToken;
use opcua::crypto::{CertificateStore, X509};
use opcua::types::{ByteString, MessageSecurityMode};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityPolicy {
    None,
    Basic256Sha256,
    Aes128Sha256RsaOaep,
    Aes256Sha256RsaPss,
}

impl SecurityPolicy {
    pub const NAMES: &'static str =
        "\"None\", \"Basic256Sha256\", \"Aes128_Sha256_RsaOaep\" or \"Aes256_Sha256_RsaPss\"";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "None" | "none" => SecurityPolicy::None,
            "Basic256Sha256" => SecurityPolicy::Basic256Sha256,
            "Aes128_Sha256_RsaOaep" => SecurityPolicy::Aes128Sha256RsaOaep,
            "Aes256_Sha256_RsaPss" => SecurityPolicy::Aes256Sha256RsaPss,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityPolicy::None => "None",
            SecurityPolicy::Basic256Sha256 => "Basic256Sha256",
            SecurityPolicy::Aes128Sha256RsaOaep => "Aes128_Sha256_RsaOaep",
            SecurityPolicy::Aes256Sha256RsaPss => "Aes256_Sha256_RsaPss",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    None,
    Sign,
    SignAndEncrypt,
}

impl SecurityMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "None" | "none" => SecurityMode::None,
            "Sign" => SecurityMode::Sign,
            "SignAndEncrypt" => SecurityMode::SignAndEncrypt,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityMode::None => "None",
            SecurityMode::Sign => "Sign",
            SecurityMode::SignAndEncrypt => "SignAndEncrypt",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("the server sent no certificate with its {policy} endpoint")]
    NoCertificate { policy: &'static str },
    #[error("the server's certificate cannot be read: {0}")]
    BadCertificate(String),
    #[error(
        "server certificate of {endpoint} is not trusted (subject {subject}, SHA-1 thumbprint {thumbprint}): \
         check the thumbprint with the machine's supplier or its HMI, then run \
         `plantgate opcua trust {endpoint} --trust-dir {trust_dir}` (or copy the server's DER certificate into {trust_dir})"
    )]
    Untrusted {
        endpoint: String,
        subject: String,
        thumbprint: String,
        trust_dir: String,
    },
    #[error("cannot read {path}: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn policy(p: SecurityPolicy) -> opcua::crypto::SecurityPolicy {
    match p {
        SecurityPolicy::None => opcua::crypto::SecurityPolicy::None,
        SecurityPolicy::Basic256Sha256 => opcua::crypto::SecurityPolicy::Basic256Sha256,
        SecurityPolicy::Aes128Sha256RsaOaep => opcua::crypto::SecurityPolicy::Aes128Sha256RsaOaep,
        SecurityPolicy::Aes256Sha256RsaPss => opcua::crypto::SecurityPolicy::Aes256Sha256RsaPss,
    }
}

pub fn mode(m: SecurityMode) -> MessageSecurityMode {
    match m {
        SecurityMode::None => MessageSecurityMode::None,
        SecurityMode::Sign => MessageSecurityMode::Sign,
        SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    }
}

/// What a person checks before trusting a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub thumbprint: String,
    pub not_after: String,
}

pub fn parse_cert(der: &ByteString) -> Result<X509, SecurityError> {
    X509::from_byte_string(der).map_err(|e| SecurityError::BadCertificate(e.to_string()))
}

pub fn describe(cert: &X509) -> CertInfo {
    CertInfo {
        subject: cert.subject_name(),
        thumbprint: cert.thumbprint().as_hex_string(),
        not_after: cert
            .not_after()
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|_| "unknown".to_string()),
    }
}

/// Whether a file in `trust_dir` holds exactly this certificate.
pub fn is_trusted(trust_dir: &Path, cert: &X509) -> bool {
    let wanted = cert.thumbprint().as_hex_string();
    let Ok(entries) = std::fs::read_dir(trust_dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        CertificateStore::read_cert(&e.path())
            .is_ok_and(|c| c.thumbprint().as_hex_string() == wanted)
    })
}

/// Refuse a server whose certificate is not in the trust directory.
pub fn check_trusted(endpoint: &str, trust_dir: &Path, cert: &X509) -> Result<(), SecurityError> {
    if is_trusted(trust_dir, cert) {
        return Ok(());
    }
    let info = describe(cert);
    Err(SecurityError::Untrusted {
        endpoint: endpoint.to_string(),
        subject: info.subject,
        thumbprint: info.thumbprint,
        trust_dir: trust_dir.display().to_string(),
    })
}

/// Store a certificate in the trust directory (DER, named after its CN and
/// thumbprint); returns the file written.
pub fn trust(trust_dir: &Path, cert: &X509) -> Result<PathBuf, SecurityError> {
    let write_err = |path: &Path, source| SecurityError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(trust_dir).map_err(|e| write_err(trust_dir, e))?;
    let path = trust_dir.join(CertificateStore::cert_file_name(cert));
    let der = cert
        .to_der()
        .map_err(|e| SecurityError::BadCertificate(e.to_string()))?;
    std::fs::write(&path, der).map_err(|e| write_err(&path, e))?;
    Ok(path)
}

/// The identity token for a session; secrets are read at each connect so a
/// changed password file is picked up without a restart.
pub fn identity_token(identity: &Identity) -> Result<IdentityToken, SecurityError> {
    match identity {
        Identity::Anonymous => Ok(IdentityToken::Anonymous),
        Identity::UserName { user, password } => {
            let secret = SecretSource::File(password.clone()).read().map_err(|e| {
                SecurityError::Identity {
                    path: password.clone(),
                    reason: e.to_string(),
                }
            })?;
            Ok(IdentityToken::new_user_name(
                user.clone(),
                secret.expose().to_string(),
            ))
        }
        Identity::X509 {
            certificate,
            private_key,
        } => {
            let cert =
                CertificateStore::read_cert(certificate).map_err(|e| SecurityError::Identity {
                    path: certificate.clone(),
                    reason: e,
                })?;
            let key =
                CertificateStore::read_pkey(private_key).map_err(|e| SecurityError::Identity {
                    path: private_key.clone(),
                    reason: e,
                })?;
            Ok(IdentityToken::new_x509(cert, key))
        }
    }
}
