//! Where a file of a snapshot or an archive is: on this machine, or an
//! object at a destination (a bucket). Restore, verify and diff read both
//! the same way, as a stream, so a new machine restores from a bucket with
//! nothing downloaded first.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use snap_dest::Dest;
use snap_shared::error::{Error, Result};

#[derive(Clone)]
pub enum Loc {
    Path(PathBuf),
    /// A key relative to the destination's root (`set/id.tar.zst`).
    Object(Arc<Dest>, String),
}

impl fmt::Debug for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.show())
    }
}

impl PartialEq for Loc {
    fn eq(&self, other: &Loc) -> bool {
        self.show() == other.show()
    }
}

impl Loc {
    /// The path, or `URL/key`.
    pub fn show(&self) -> String {
        match self {
            Loc::Path(p) => p.display().to_string(),
            Loc::Object(d, key) => d.show(key),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            Loc::Path(p) => Some(p),
            Loc::Object(..) => None,
        }
    }

    /// The file name (last component).
    pub fn name(&self) -> String {
        match self {
            Loc::Path(p) => p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            Loc::Object(_, key) => key.rsplit('/').next().unwrap_or("").to_string(),
        }
    }

    /// The file called `name` in the same folder.
    pub fn sibling(&self, name: &str) -> Loc {
        match self {
            Loc::Path(p) => Loc::Path(snap_shared::fsutil::parent_of(p).join(name)),
            Loc::Object(d, key) => {
                let key = match key.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{name}"),
                    None => name.to_string(),
                };
                Loc::Object(d.clone(), key)
            }
        }
    }

    /// The folder it is in, for messages.
    pub fn folder(&self) -> String {
        match self {
            Loc::Path(p) => snap_shared::fsutil::parent_of(p).display().to_string(),
            Loc::Object(d, key) => d.show(key.rsplit_once('/').map_or("", |(dir, _)| dir)),
        }
    }

    /// Opens it for reading; a bucket object streams as it is read.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            Loc::Path(p) => Ok(Box::new(
                std::fs::File::open(p).map_err(|e| here(p, Error::io(p, e)))?,
            )),
            Loc::Object(d, key) => d.reader(key),
        }
    }

    /// The bytes of `ranges`, in the order asked: pread here, ranged GETs at a bucket.
    pub fn read_ranges(&self, ranges: &[std::ops::Range<u64>]) -> Result<Vec<bytes::Bytes>> {
        match self {
            Loc::Path(p) => snap_dest::read_file_ranges(p, ranges).map_err(|e| here(p, e)),
            Loc::Object(d, key) => d.read_ranges(key, ranges),
        }
    }

    /// Its last `n` bytes (all of a smaller file) and its size, in one read.
    pub fn read_tail(&self, n: u64) -> Result<(bytes::Bytes, u64)> {
        match self {
            Loc::Path(p) => snap_dest::read_file_tail(p, n).map_err(|e| here(p, e)),
            Loc::Object(d, key) => d.read_tail(key, n),
        }
    }

    /// Its size in bytes.
    pub fn size(&self) -> Result<u64> {
        match self {
            Loc::Path(p) => Ok(std::fs::metadata(p)
                .map_err(|e| here(p, Error::io(p, e)))?
                .len()),
            Loc::Object(d, key) => match d.head(key)? {
                Some(m) => Ok(m.size),
                None => Err(Error::new(
                    snap_shared::error::Exit::NoInput,
                    self.show(),
                    "not found",
                )),
            },
        }
    }

    /// Writes a small file whole (a record, a pin): atomically on a folder
    /// (temporary name, fsync, rename), in one PUT at a bucket.
    pub fn write_small(&self, data: &[u8]) -> Result<()> {
        match self {
            Loc::Path(p) => snap_shared::fsutil::write_atomic(p, 0o600, true, |f| {
                std::io::Write::write_all(f, data)
            })
            .map_err(|e| Error::io(p, e)),
            Loc::Object(d, key) => {
                let sha = snap_shared::hash::Sha256Digest::of(data).to_hex();
                d.put_small(key, bytes::Bytes::copy_from_slice(data), &sha)
            }
        }
    }

    /// Removes it; false when it was not there.
    pub fn remove(&self) -> Result<bool> {
        match self {
            Loc::Path(p) => match std::fs::remove_file(p) {
                Ok(()) => {
                    let dir = snap_shared::fsutil::parent_of(p);
                    snap_shared::fsutil::fsync_dir(dir).map_err(|e| Error::io(p, e))?;
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(Error::io(p, e)),
            },
            Loc::Object(d, key) => {
                let there = d.head(key)?.is_some();
                d.delete(key)?;
                Ok(there)
            }
        }
    }

    /// Whether it exists.
    pub fn exists(&self) -> Result<bool> {
        match self {
            Loc::Path(p) => Ok(p.exists()),
            Loc::Object(d, key) => Ok(d.head(key)?.is_some()),
        }
    }

    /// The whole file (records and other small files).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        match self {
            Loc::Path(p) => std::fs::read(p).map_err(|e| Error::io(p, e)),
            Loc::Object(d, key) => Ok(d.get_bytes(key)?.to_vec()),
        }
    }
}

/// An error reading a file of the store: when the file is an archive's
/// data that the store dropped (`retention.keep_archives`), the error says
/// where it went instead.
fn here(path: &Path, e: Error) -> Error {
    match path.exists() {
        true => e,
        false => snap_shared::archive::away_error(path).unwrap_or(e),
    }
}

/// What errors call a file: a path or a location.
pub trait Named {
    fn named(&self) -> String;
}

impl Named for Path {
    fn named(&self) -> String {
        self.display().to_string()
    }
}

impl Named for PathBuf {
    fn named(&self) -> String {
        self.display().to_string()
    }
}

impl Named for Loc {
    fn named(&self) -> String {
        self.show()
    }
}
