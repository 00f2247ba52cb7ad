//! Folder destinations: a path, or a drive found by UUID or label.
//!
//! Written with plain file calls rather than object_store's
//! `LocalFileSystem`, for three reasons that matter on an external drive:
//! every file is fsynced before its rename and the folder after it (a drive
//! is unplugged any time), files are created 0600 as docs/design.md asks,
//! and a large file resumes from its synced parts after a kill
//! (LocalFileSystem has no resumable upload).

use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;

use snap_shared::error::{Error, Exit, Result};

use super::meta::Meta;
use crate::settings::DestSpec;

/// A destination's folder on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    pub(crate) root: PathBuf,
}

impl Folder {
    /// The folder `dir`, which must exist: a missing one usually means a
    /// drive that is not mounted (exit 75), and is never made here.
    pub(crate) fn existing(spec: &DestSpec, dir: &Path) -> Result<Folder> {
        if dir.is_dir() {
            return Ok(Folder {
                root: dir.to_path_buf(),
            });
        }
        // Never make a plain path: on an unmounted drive it would fill the root disk.
        Err(Error::new(
            Exit::TempFail,
            format!("destination {}", spec.name),
            format!("folder {} is not there", dir.display()),
        )
        .with_hint(format!(
            "mount the drive; to start using a new folder, create it: mkdir -p -- {}",
            crate::quote::sh_quote(&dir.to_string_lossy())
        )))
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub(crate) fn head(&self, rel: &str) -> Result<Option<Meta>> {
        match std::fs::metadata(self.path(rel)) {
            Ok(m) if m.is_file() => Ok(Some(Meta {
                size: m.len(),
                sha256: None,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&self.path(rel), e)),
        }
    }

    pub(crate) fn get(&self, rel: &str) -> Result<Bytes> {
        let path = self.path(rel);
        std::fs::read(&path)
            .map(Bytes::from)
            .map_err(|e| Error::io(&path, e))
    }

    pub(crate) fn reader(&self, rel: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.path(rel);
        Ok(Box::new(
            File::open(&path).map_err(|e| Error::io(&path, e))?,
        ))
    }

    pub(crate) fn read_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        read_file_ranges(&self.path(rel), ranges)
    }

    pub(crate) fn read_tail(&self, rel: &str, n: u64) -> Result<(Bytes, u64)> {
        read_file_tail(&self.path(rel), n)
    }

    /// Writes a whole file atomically: temporary name, fsync, rename, fsync the folder.
    pub(crate) fn put(&self, rel: &str, data: &[u8]) -> Result<()> {
        put_file(&self.path(rel), data)
    }

    pub(crate) fn delete(&self, rel: &str) -> Result<()> {
        match std::fs::remove_file(self.path(rel)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(&self.path(rel), e))
            }
            _ => Ok(()),
        }
    }

    /// Removes files one by one, then fsyncs each folder touched, so the
    /// removals are on the drive before the caller removes anything that
    /// must go after them.
    pub(crate) fn delete_many(&self, rels: &[String]) -> Result<()> {
        let mut dirs = std::collections::BTreeSet::new();
        for rel in rels {
            self.delete(rel)?;
            dirs.insert(snap_shared::fsutil::parent_of(&self.path(rel)).to_path_buf());
        }
        for dir in dirs {
            snap_shared::fsutil::fsync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        Ok(())
    }

    pub(crate) fn list(&self, sub: &str) -> Result<Vec<(String, u64, SystemTime)>> {
        let mut out = Vec::new();
        walk(&self.root, &self.path(sub), &mut out)?;
        Ok(out)
    }

    pub(crate) fn free_space(&self) -> Option<(u64, u64)> {
        snap_shared::fsutil::free_space(&self.root).ok()
    }
}

/// The bytes of `ranges` of a file, by pread, in the order asked.
pub fn read_file_ranges(path: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    ranges
        .iter()
        .map(|r| {
            let mut buf = vec![0; (r.end - r.start) as usize];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, r.start)
                .map(|()| Bytes::from(buf))
                .map_err(|e| Error::io(path, e))
        })
        .collect()
}

/// The last `n` bytes of a file (all of a smaller one) and its size.
pub fn read_file_tail(path: &Path, n: u64) -> Result<(Bytes, u64)> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let start = size.saturating_sub(n);
    let bytes = read_file_ranges(path, std::slice::from_ref(&(start..size)))?.remove(0);
    Ok((bytes, size))
}

/// Makes a folder (and its parents) 0700; failing is exit 73.
pub fn create_folder(dir: &Path) -> Result<()> {
    snap_shared::fsutil::create_private_dir(dir)
        .map_err(|e| Error::io(dir, e).with_exit(Exit::CantCreate))
}

/// Writes `data` to `path` atomically, 0600, fsynced, replacing what was there.
fn put_file(path: &Path, data: &[u8]) -> Result<()> {
    let dir = snap_shared::fsutil::parent_of(path);
    if !dir.is_dir() {
        create_folder(dir)?;
    }
    snap_shared::fsutil::write_atomic(path, 0o600, true, |f| f.write_all(data))
        .map_err(|e| Error::io(path, e))
}

/// Files under `dir`, as paths relative to `root`; hidden work files are left out.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64, SystemTime)>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((rel.to_string_lossy().into_owned(), meta.len(), modified));
        }
    }
    Ok(())
}
