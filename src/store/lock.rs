//! One writer per data directory: an exclusive lock on `<store>.lock`,
//! holding the owner's pid so the second gateway can say who has it.
//! The lock is the kernel's (flock), so a killed gateway never leaves it
//! held.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the event store {store} is in use by another plantgate (pid {pid}); stop it first, or give this one another data_dir")]
    Held { store: String, pid: String },
    #[error("cannot lock the event store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Held for as long as the store is open.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    pub path: PathBuf,
}

pub fn lock_path(store_dir: &Path) -> PathBuf {
    let mut p = store_dir.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

pub fn acquire(store_dir: &Path) -> Result<StoreLock, LockError> {
    let path = lock_path(store_dir);
    let io = |source| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Held {
                store: store_dir.display().to_string(),
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid.to_string()
                },
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(StoreLock { _file: file, path })
}

/// Whether another process holds the store (for commands that then go
/// through the running gateway instead).
pub fn is_held(store_dir: &Path) -> bool {
    matches!(acquire(store_dir), Err(LockError::Held { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_owners_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        let first = acquire(&store).expect("first");
        let second = acquire(&store).expect_err("second must fail");
        let msg = second.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        acquire(&store).expect("free again after the first closed");
    }
}
