//! The local store's layout (docs/design.md "The local store").
//!
//! ```text
//! catalog.sqlite, lock
//! sets/<set>/<id>/  <id>.json  <id>.index.zst  latest -> <id>  .<id>.partial/
//! archives/<set>/…  disks/<disk>/…
//! ```
//! A snapshot exists when its `<id>.json` record exists: the record is
//! published last, so a tree or index without a record is unfinished work.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::expand_tilde;
use crate::error::{Error, Exit, Result};
use crate::id::{cmp_ids, is_id};
use crate::record::SnapshotRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub root: PathBuf,
}

/// Where the store is: `--store`, `$SNAP_STORE`, `$DBACKUP`, the config's `store`,
/// or `~/.local/share/snap`. Relative paths are made absolute.
pub fn locate(flag: Option<&Path>, from_config: Option<&str>) -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let chosen = match flag {
        Some(p) => p.to_path_buf(),
        None => env("SNAP_STORE")
            .or_else(|| env("DBACKUP"))
            .map(|v| expand_tilde(&v.to_string_lossy()))
            .or_else(|| from_config.map(expand_tilde))
            .unwrap_or_else(|| expand_tilde("~/.local/share/snap")),
    };
    std::path::absolute(&chosen).unwrap_or(chosen)
}

/// The suffix of a pin, a small file beside a record (`<id>.pin`, in the
/// store or at a destination): `snap-restore pin` writes it, snap-prune keeps
/// what it pins.
pub const PIN: &str = ".pin";

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog.sqlite")
    }

    /// The path index (crate::pathindex): search and history by path.
    pub fn paths_index_path(&self) -> PathBuf {
        self.root.join("paths.sqlite")
    }

    pub fn sets_dir(&self) -> PathBuf {
        self.root.join("sets")
    }

    pub fn set_dir(&self, set: &str) -> PathBuf {
        self.sets_dir().join(set)
    }

    pub fn snapshot_dir(&self, set: &str, id: &str) -> PathBuf {
        self.set_dir(set).join(id)
    }

    pub fn record_path(&self, set: &str, id: &str) -> PathBuf {
        self.set_dir(set).join(format!("{id}.json"))
    }

    pub fn index_path(&self, set: &str, id: &str) -> PathBuf {
        self.set_dir(set).join(format!("{id}.index.zst"))
    }

    pub fn partial_dir(&self, set: &str, id: &str) -> PathBuf {
        self.set_dir(set).join(format!(".{id}.partial"))
    }

    pub fn archives_dir(&self) -> PathBuf {
        self.root.join("archives")
    }

    /// Where snap-pack puts a set's archives by default.
    pub fn archive_dir(&self, set: &str) -> PathBuf {
        self.archives_dir().join(set)
    }

    pub fn latest_link(&self, set: &str) -> PathBuf {
        self.set_dir(set).join("latest")
    }

    /// Creates the store root (0700) and `sets/` if they are missing.
    pub fn create(&self) -> Result<()> {
        crate::fsutil::create_private_dir(&self.sets_dir()).map_err(|e| Error::io(&self.root, e))
    }

    /// The names of the sets that have a folder in the store, sorted.
    pub fn sets(&self) -> Result<Vec<String>> {
        let mut names = read_names(&self.sets_dir())?;
        names.retain(|n| crate::id::check_name(n).is_ok());
        names.sort();
        Ok(names)
    }

    /// The ids of a set's finished snapshots (those with a record), oldest first.
    pub fn snapshot_ids(&self, set: &str) -> Result<Vec<String>> {
        record_ids(&self.set_dir(set))
    }

    /// The newest finished snapshot of a set.
    pub fn latest_id(&self, set: &str) -> Result<Option<String>> {
        Ok(self.snapshot_ids(set)?.pop())
    }

    /// Points `latest` at the newest snapshot of a set, or removes it when
    /// the set has none left (after a prune).
    pub fn update_latest(&self, set: &str) -> std::io::Result<()> {
        let link = self.latest_link(set);
        let newest = self
            .snapshot_ids(set)
            .map_err(|e| std::io::Error::other(e.cause))?
            .pop();
        match newest {
            Some(id) => crate::fsutil::replace_symlink(Path::new(&id), &link),
            None => match fs::remove_file(&link) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// The newest snapshot of a set whose record reads, and the errors of
    /// newer records that do not (cut short, garbled: exit 65), newest
    /// first. One damaged record is named by the caller and stepped over;
    /// it never stops the set's next collect or pack.
    pub fn newest_readable(&self, set: &str) -> Result<(Option<SnapshotRecord>, Vec<Error>)> {
        let mut damaged = Vec::new();
        for id in self.snapshot_ids(set)?.into_iter().rev() {
            match self.read_record(set, &id) {
                Ok(rec) => return Ok((Some(rec), damaged)),
                Err(e) if e.exit == Exit::Data => damaged.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok((None, damaged))
    }

    /// Reads a snapshot's record from its `.json` file.
    pub fn read_record(&self, set: &str, id: &str) -> Result<SnapshotRecord> {
        let path = self.record_path(set, id);
        read_snapshot_file(&path)
    }

    /// A record as this store holds it: its `store`, `path` and `index`
    /// point into this store, wherever the store was when the record was
    /// written. A store copied or moved elsewhere (records keep the
    /// absolute paths of the day) reads and writes only itself.
    pub fn relocate(&self, mut rec: SnapshotRecord) -> SnapshotRecord {
        rec.store = self.root.display().to_string();
        rec.path = self.snapshot_dir(&rec.set, &rec.id).display().to_string();
        rec.index = self.index_path(&rec.set, &rec.id).display().to_string();
        rec
    }
}

impl Store {
    /// Finds a snapshot by name: `SET/ID`, `SET/latest`, a bare `ID` (unique
    /// across sets), or the path of a snapshot tree or its `.json` record.
    pub fn resolve_snapshot(&self, name: &str) -> Result<SnapshotRecord> {
        let path = Path::new(name);
        if path.exists() && (name.contains('/') || name.ends_with(".json")) {
            return read_snapshot_file(path);
        }
        let not_found = |what: String| {
            Error::new(Exit::NoInput, format!("snapshot {name}"), what)
                .with_hint("list them with `snap-restore list`")
        };
        if let Some((set, id)) = name.split_once('/') {
            let id = match id {
                "latest" => self.latest_id(set)?.ok_or_else(|| {
                    not_found(format!(
                        "set {set} has no snapshots in {}",
                        self.root.display()
                    ))
                })?,
                id => id.to_string(),
            };
            if !self.record_path(set, &id).exists() {
                return Err(not_found(format!("not in store {}", self.root.display())));
            }
            return self.read_record(set, &id);
        }
        let mut found = Vec::new();
        for set in self.sets()? {
            if self.record_path(&set, name).exists() {
                found.push(set);
            }
        }
        match found.as_slice() {
            [set] => self.read_record(set, name),
            [] => Err(not_found(format!("not in store {}", self.root.display()))),
            sets => Err(Error::usage(
                format!("snapshot {name}"),
                format!("is in several sets ({})", sets.join(", ")),
            )
            .with_hint(format!("name it SET/{name}"))),
        }
    }
}

/// Reads a snapshot record from its `.json`, or from beside its tree, with
/// its paths in the store it was found in (`STORE/sets/SET/ID.json`).
fn read_snapshot_file(path: &Path) -> Result<SnapshotRecord> {
    let json = if path.is_dir() {
        let mut s = path.as_os_str().to_owned();
        s.push(".json");
        PathBuf::from(s)
    } else {
        path.to_path_buf()
    };
    let rec: SnapshotRecord = crate::record::read_file(&json, "a snapshot record")?;
    let json = std::path::absolute(&json).unwrap_or(json);
    let set_dir = crate::fsutil::parent_of(&json);
    let sets = set_dir
        .parent()
        .filter(|d| d.file_name() == Some("sets".as_ref()));
    let in_layout = set_dir.file_name() == Some(rec.set.as_ref())
        && json.file_name() == Some(format!("{}.json", rec.id).as_ref());
    Ok(match (sets.and_then(Path::parent), in_layout) {
        (Some(root), true) => Store::new(root).relocate(rec),
        _ => rec,
    })
}

/// The ids of the records (`ID.json`) in a folder, oldest first: what is
/// finished there, snapshots in a set's folder, archives in an archive folder.
pub fn record_ids(dir: &Path) -> Result<Vec<String>> {
    let mut ids: Vec<String> = read_names(dir)?
        .into_iter()
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .filter(|id| is_id(id))
        .collect();
    ids.sort_by(|a, b| cmp_ids(a, b));
    Ok(ids)
}

/// The UTF-8 names in a directory; a missing directory has none.
pub fn read_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only ids with a record are snapshots; partials, trees and strays are not.
    #[test]
    fn snapshot_ids_need_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.create().unwrap();
        let set = store.set_dir("d");
        fs::create_dir_all(set.join("2026-01-02T000000Z")).unwrap();
        fs::create_dir_all(set.join(".2026-01-03T000000Z.partial")).unwrap();
        for f in [
            "2026-01-02T000000Z.json",
            "2026-01-01T000000Z.json",
            "2026-01-01T000000Z-2.json",
            "notes.json",
        ] {
            fs::write(set.join(f), "{}").unwrap();
        }
        assert_eq!(
            store.snapshot_ids("d").unwrap(),
            [
                "2026-01-01T000000Z",
                "2026-01-01T000000Z-2",
                "2026-01-02T000000Z"
            ]
        );
        assert_eq!(
            store.latest_id("d").unwrap().as_deref(),
            Some("2026-01-02T000000Z")
        );
        assert!(store.snapshot_ids("none").unwrap().is_empty());
    }

    /// The store flag wins; relative paths become absolute.
    #[test]
    fn locate_prefers_flag() {
        let p = locate(Some(Path::new("rel/store")), Some("/cfg"));
        assert!(p.is_absolute());
        assert!(p.ends_with("rel/store"));
    }
}
