//! What `base::sound_chain` read already: an archive's data file, hashed
//! whole and found to be what its record says, is not read again while the
//! file keeps its inode, size and times (`.chain-checked` in the set's
//! archive folder, written under the folder's lock). A daily incremental
//! thus hashes only the newest archive of its chain, not the whole chain.
//!
//! Any write to the file changes its ctime, so a flipped or cut base is read
//! again and refused. Rot that changes no metadata (a failing disk) is not
//! seen here; the scheduled `verify` reads every archive for that.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const FILE: &str = ".chain-checked";

/// A data file as last hashed: its record's sha256 and its metadata then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    sha256: String,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of `data` now, for an archive whose record says `sha256`.
    pub fn of(data: &Path, sha256: &str) -> Option<Stamp> {
        let m = std::fs::metadata(data).ok()?;
        Some(Stamp {
            sha256: sha256.to_string(),
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// The stamps of one archive folder, by archive id.
pub struct Checked {
    path: PathBuf,
    stamps: BTreeMap<String, Stamp>,
    changed: bool,
}

impl Checked {
    /// Reads the folder's stamps (none when the file is missing or unreadable).
    pub fn open(dir: &Path) -> Checked {
        let path = dir.join(FILE);
        let stamps = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Checked {
            path,
            stamps,
            changed: false,
        }
    }

    /// Whether archive `id`'s data was hashed right with this stamp.
    pub fn holds(&self, id: &str, stamp: &Stamp) -> bool {
        self.stamps.get(id) == Some(stamp)
    }

    /// Notes that archive `id`'s data hashed right with this stamp.
    pub fn note(&mut self, id: &str, stamp: Stamp) {
        if self.stamps.get(id) != Some(&stamp) {
            self.stamps.insert(id.to_string(), stamp);
            self.changed = true;
        }
    }

    /// Writes the stamps of the archives still in the folder (atomically).
    /// A failure only means the next pack reads the chain again.
    pub fn save(mut self) {
        let dir = snap_shared::fsutil::parent_of(&self.path).to_path_buf();
        let before = self.stamps.len();
        self.stamps
            .retain(|id, _| dir.join(format!("{id}.json")).exists());
        if !self.changed && self.stamps.len() == before {
            return;
        }
        if let Ok(text) = serde_json::to_vec(&self.stamps) {
            let _ = snap_shared::fsutil::write_atomic(&self.path, 0o600, true, |f| {
                std::io::Write::write_all(f, &text)
            });
        }
    }
}
