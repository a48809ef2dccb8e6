//! What `plantgate check` adds to parsing: the files and directories a
//! config names must be usable by the user running the check, as `run`
//! will need them. Kept apart from [`super::parse`] so a config can be
//! validated on a machine that is not the gateway (the shipped examples
//! name /etc paths).

use super::Diagnostic;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Something a config names, with where it is named.
#[derive(Clone, Debug)]
pub(crate) struct Need {
    pub span: Range<usize>,
    pub key: &'static str,
    pub what: What,
}

#[derive(Clone, Debug)]
pub(crate) enum What {
    /// A file `run` reads.
    File(PathBuf),
    /// A PEM file of certificates (a CA, a client certificate).
    PemCerts(PathBuf),
    /// A PEM private key.
    PemKey(PathBuf),
    /// A directory `run` lists (an OPC UA trust directory).
    #[cfg_attr(not(feature = "opcua"), allow(dead_code))]
    Dir(PathBuf),
    /// A directory `run` creates or writes.
    WritableDir(PathBuf),
    /// A systemd credential, known only under systemd.
    Credential(String),
    /// The address the status listener binds.
    Listen(std::net::SocketAddr),
}

/// One diagnostic per need that is not met.
pub(super) fn check(text: &str, needs: &[Need]) -> Vec<Diagnostic> {
    needs
        .iter()
        .filter_map(|n| {
            problem(n).map(|why| Diagnostic::at(text, n.span.clone(), format!("{}: {why}", n.key)))
        })
        .collect()
}

fn problem(n: &Need) -> Option<String> {
    match &n.what {
        What::File(p) => readable_file(p),
        What::PemCerts(p) => readable_file(p).or_else(|| pem_certs(p)),
        What::PemKey(p) => readable_file(p).or_else(|| pem_key(p)),
        What::Dir(p) => match std::fs::read_dir(p) {
            Ok(_) => None,
            Err(e) => Some(format!(
                "cannot read directory {}: {e} (create it, or fix its permissions for this user)",
                p.display()
            )),
        },
        What::WritableDir(p) => writable_dir(p),
        What::Credential(name) => {
            // Outside systemd there is nothing to look at: run resolves it
            // from $CREDENTIALS_DIRECTORY, which LoadCredential= sets.
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
            readable_file(&Path::new(&dir).join(name))
                .map(|why| format!("{why} (add LoadCredential={name}:/path/to/key to the unit)"))
        }
        What::Listen(addr) => {
            // Port 0: proves the IP is this host's without clashing with a
            // gateway that already listens on the port.
            match std::net::TcpListener::bind((addr.ip(), 0)) {
                Ok(_) => None,
                Err(e) => Some(format!(
                    "cannot listen on {}: {e} (use an address of this host, like \"127.0.0.1:9811\")",
                    addr.ip()
                )),
            }
        }
    }
}

fn readable_file(p: &Path) -> Option<String> {
    match std::fs::metadata(p) {
        Err(e) => {
            return Some(format!(
                "cannot use {}: {e} (create the file, or fix the path)",
                p.display()
            ))
        }
        Ok(m) if !m.is_file() => {
            return Some(format!("{} is not a file", p.display()));
        }
        Ok(_) => {}
    }
    match std::fs::File::open(p) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "cannot read {}: {e} (let this user read it, e.g. chmod or chgrp)",
            p.display()
        )),
    }
}

/// Holds at least one PEM certificate and nothing unreadable.
fn pem_certs(p: &Path) -> Option<String> {
    match crate::pem::certs(p) {
        Ok(certs) if !certs.is_empty() => None,
        Ok(_) => Some(format!(
            "{} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
            p.display()
        )),
        Err(e) => Some(format!(
            "{} is not a PEM certificate file: {}",
            p.display(),
            e.detail
        )),
    }
}

/// Holds a PEM private key (PKCS#8, PKCS#1 or SEC1).
fn pem_key(p: &Path) -> Option<String> {
    match crate::pem::key(p) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "{} holds no PEM private key ({}; expected -----BEGIN PRIVATE KEY-----)",
            p.display(),
            e.detail
        )),
    }
}

/// Exists and takes a new file, or can be created under its nearest
/// existing ancestor. Probes with a temporary file that is removed again.
fn writable_dir(p: &Path) -> Option<String> {
    let mut dir = p;
    loop {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Some(format!("{} is not a directory", dir.display())),
            Err(_) => match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => dir = parent,
                _ => {
                    dir = Path::new(".");
                    break;
                }
            },
        }
    }
    match tempfile::tempfile_in(dir) {
        Ok(_) => None,
        Err(e) if dir == p => Some(format!(
            "cannot write in {}: {e} (let this user write there)",
            p.display()
        )),
        Err(e) => Some(format!(
            "cannot create {}: {} is not writable: {e} (create it for this user)",
            p.display(),
            dir.display()
        )),
    }
}
