//! The store lock: one writer per store at a time, readers never block.
//!
//! `flock(LOCK_EX|LOCK_NB)` on `<store>/lock`. The kernel drops the lock when
//! the holder dies (kill -9 included), so a stale lock can't exist. The holder
//! writes who it is into the file so a second writer can say who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use crate::error::{Error, Exit, Result};

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock at `path` for `tool`, or fails with exit 75 naming the holder.
    pub fn acquire(path: &Path, tool: &str) -> Result<StoreLock> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if let Err(err) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if err != rustix::io::Errno::WOULDBLOCK {
                return Err(Error::io(path, err.into()));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                holder.to_string()
            };
            return Err(Error::new(
                Exit::TempFail,
                format!("store lock {}", path.display()),
                format!("held by {who}"),
            )
            .with_hint("another snap tool is writing to this store; try again when it is done"));
        }
        let who = format!(
            "{tool} (pid {} on {}, since {})",
            std::process::id(),
            crate::hostname(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        // Best effort: the lock itself is the flock, the text only names the holder.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(who.as_bytes()));
        Ok(StoreLock { _file: file })
    }
}

impl Drop for StoreLock {
    /// Unlocks at once rather than at close: a child forked by another
    /// thread holds a copy of the descriptor until it execs, and with it
    /// the lock, so the next writer in this process would be refused.
    fn drop(&mut self) {
        let _ = flock(&self._file, FlockOperation::Unlock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second writer gets exit 75 and a message naming the holder.
    #[test]
    fn second_writer_is_refused_with_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = StoreLock::acquire(&path, "snap-collect").unwrap();
        let err = StoreLock::acquire(&path, "snap-prune").unwrap_err();
        assert_eq!(err.exit, Exit::TempFail);
        assert!(err.cause.starts_with("held by snap-collect (pid "), "{err}");
        drop(held);
        StoreLock::acquire(&path, "snap-prune").unwrap();
    }

    /// Dropping the lock frees it even while a copy of its descriptor
    /// (a child forked but not yet exec'd) is still open.
    #[test]
    fn drop_unlocks_despite_a_copied_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = StoreLock::acquire(&path, "snap-disk").unwrap();
        let copy = held._file.try_clone().unwrap();
        drop(held);
        StoreLock::acquire(&path, "snap-collect").unwrap();
        drop(copy);
    }
}
