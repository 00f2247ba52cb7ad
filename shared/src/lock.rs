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

/// An exclusive `flock` on a folder itself: one restore into a target at a
/// time. Nothing is written into the folder or beside it; the kernel drops
/// the lock when its holder dies, and `/proc/locks` names the holder.
#[derive(Debug)]
pub struct FolderLock {
    fd: std::os::fd::OwnedFd,
}

impl FolderLock {
    /// Takes the lock on `dir`, or fails with exit 75 naming the holder;
    /// `doing` says what was refused ("restoring into").
    pub fn acquire(dir: &Path, doing: &str) -> Result<FolderLock> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd =
            rustix::fs::open(dir, flags, Mode::empty()).map_err(|e| Error::io(dir, e.into()))?;
        match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(FolderLock { fd }),
            // A filesystem without locks (some network and FUSE ones): the
            // restore goes on unguarded, as every restore did before.
            Err(
                rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOLCK,
            ) => Ok(FolderLock { fd }),
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let who = flock_holder(&fd).unwrap_or_else(|| "another process".into());
                Err(Error::new(
                    Exit::TempFail,
                    format!("{doing} {}", dir.display()),
                    format!("another restore into it is running: {who}"),
                )
                .with_hint(
                    "try again when it is done; two restores into one folder would mix their files",
                ))
            }
            Err(e) => Err(Error::io(dir, e.into())),
        }
    }
}

impl Drop for FolderLock {
    /// Unlocks at once, as [`StoreLock`] does.
    fn drop(&mut self) {
        let _ = flock(&self.fd, FlockOperation::Unlock);
    }
}

/// Who holds a `flock` on the file `fd` is open on, from `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`): `snap-restore (pid 1234)`.
fn flock_holder(fd: &std::os::fd::OwnedFd) -> Option<String> {
    let st = rustix::fs::fstat(fd).ok()?;
    let (major, minor) = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    let want = format!("{major:02x}:{minor:02x}:{}", st.st_ino);
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Waiters have a `->` after the number; holders do not.
        if f.len() < 6 || f[1] != "FLOCK" || f[5] != want {
            return None;
        }
        let pid: u32 = f[4].parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        Some(format!("{} (pid {pid})", comm.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second lock on a folder, even from another descriptor of this
    /// process, is exit 75 naming the holder by pid; dropping frees it.
    #[test]
    fn folder_lock_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = FolderLock::acquire(dir.path(), "restoring into").unwrap();
        let err = FolderLock::acquire(dir.path(), "restoring into").unwrap_err();
        assert_eq!(err.exit, Exit::TempFail);
        assert!(
            err.cause
                .starts_with("another restore into it is running: ")
                && err
                    .cause
                    .ends_with(&format!(" (pid {})", std::process::id())),
            "{}",
            err.cause
        );
        drop(held);
        FolderLock::acquire(dir.path(), "restoring into").unwrap();
    }

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
