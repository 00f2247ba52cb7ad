//! What to push: `archive` records on stdin, archives named with `--file`,
//! or every archive of the store with `--all`.
//!
//! Stdin is read whole first, as snap-pack does: a malformed line anywhere is
//! exit 65 with nothing sent. An archive's files are found beside its record
//! (the data file by the name the record gives), so a record read from a
//! pipe and one read from disk lead to the same files (four, five when the
//! record is signed).

use std::path::{Path, PathBuf};

use snap_shared::archive::{self, ArchiveFiles};
use snap_shared::error::{Error, Result};
use snap_shared::jsonl::{Item, read_picking};
use snap_shared::record::{ArchiveRecord, DiskSnapshotRecord, Record};
use snap_shared::store::{Store, read_names};

/// One thing to do, in input order.
pub enum Input {
    Archive(Box<Local>),
    /// A `blocks` disk snapshot: its blocks, map and record travel.
    Disk(Box<DiskSnapshotRecord>),
    /// A record of another kind, passed through unchanged.
    Pass(Item),
}

/// An archive on this machine: its record and the folder holding its files.
#[derive(Debug, Clone)]
pub struct Local {
    pub rec: ArchiveRecord,
    pub dir: PathBuf,
}

impl Local {
    fn files(&self) -> ArchiveFiles {
        ArchiveFiles::new(&self.dir, &self.rec.id)
    }

    pub fn name(&self) -> String {
        format!("{}/{}", self.rec.set, self.rec.id)
    }

    /// The data file, the index, the sums file and the record, in the order they are sent.
    /// Data, index, sums, the record's signature when it is signed, and the
    /// record last (the order they are sent in).
    pub fn files_in_order(&self) -> Vec<PathBuf> {
        let json = self.files().record();
        let mut files = vec![
            archive::beside(&json, &self.rec.path),
            archive::beside(&json, &self.rec.index),
            self.files().sums(),
        ];
        let sig = self.files().sig();
        if sig.exists() {
            files.push(sig);
        }
        files.push(json);
        files
    }
}

/// Reads every record on stdin.
pub fn from_stdin() -> Result<Vec<Input>> {
    let pick = |rec: Box<Record>| match *rec {
        Record::Archive(a) => {
            let dir = snap_shared::fsutil::parent_of(Path::new(&a.path)).to_path_buf();
            Ok(Input::Archive(Box::new(Local { rec: a, dir })))
        }
        Record::DiskSnapshot(d) => Ok(Input::Disk(Box::new(d))),
        _ => Err(rec),
    };
    read_picking(std::io::stdin().lock(), "stdin", pick, Input::Pass)
}

/// What is named by path: an archive (its `.json` record or its data file),
/// or a `blocks` disk snapshot (its record, `disks/<disk>/<name>.json`).
pub fn named(paths: &[PathBuf]) -> Result<Vec<Input>> {
    paths
        .iter()
        .map(|p| match disk_record(p)? {
            Some(rec) => Ok(Input::Disk(Box::new(rec))),
            None => from_path(p).map(|l| Input::Archive(Box::new(l))),
        })
        .collect()
}

/// The disk-snapshot record at `path`, if that is what it is.
fn disk_record(path: &Path) -> Result<Option<DiskSnapshotRecord>> {
    if path.extension().is_none_or(|e| e != "json") {
        return Ok(None);
    }
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    // snap-disk's record files carry no "kind"; its records on a pipe do.
    let kind = value.get("kind").and_then(|k| k.as_str());
    let looks = value.get("disk").is_some() && value.get("method").is_some();
    if !(kind == Some("disk-snapshot") || (kind.is_none() && looks)) {
        return Ok(None);
    }
    serde_json::from_value(value).map(Some).map_err(|e| {
        Error::data(
            path.display().to_string(),
            format!("not a disk-snapshot record: {e}"),
        )
    })
}

fn from_path(path: &Path) -> Result<Local> {
    let abs = std::path::absolute(path).unwrap_or(path.to_path_buf());
    let name = abs
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let json = if name.ends_with(".json") {
        abs.clone()
    } else {
        let stem = [".tar", ".tgz", ".tzst"]
            .iter()
            .find_map(|s| name.find(s).map(|i| &name[..i]))
            .ok_or_else(|| {
                Error::usage(
                    format!("--file {}", path.display()),
                    "is neither an archive (.tar…) nor its .json record",
                )
            })?;
        abs.with_file_name(format!("{stem}.json"))
    };
    if !json.exists() {
        return Err(Error::new(
            snap_shared::error::Exit::NoInput,
            format!("--file {}", path.display()),
            format!("no record {} beside it", json.display()),
        )
        .with_hint(
            "snap-push sends archives made by snap-pack; import others with `snap-restore import`",
        ));
    }
    let rec = archive::read_record(&json)?;
    let dir = snap_shared::fsutil::parent_of(&json).to_path_buf();
    Ok(Local { rec, dir })
}

/// Every finished archive of the store (of one set, with `set`), by set then id.
pub fn all(store: &Store, set: Option<&str>) -> Result<Vec<Input>> {
    let root = store.archives_dir();
    let sets = match set {
        Some(s) => vec![s.to_string()],
        None if root.is_dir() => read_names(&root)?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    if set.is_none() {
        out.extend(disk_snapshots(store)?);
    }
    for set in sets {
        let dir = root.join(&set);
        if set.starts_with('.') || !dir.is_dir() {
            continue;
        }
        for id in archive::archive_ids(&dir)? {
            let rec = archive::read_record(&ArchiveFiles::new(&dir, &id).record())?;
            out.push(Input::Archive(Box::new(Local {
                rec,
                dir: dir.clone(),
            })));
        }
    }
    Ok(out)
}

/// Every `blocks` snapshot of every disk in the store, oldest first.
fn disk_snapshots(store: &Store) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for disk in snap_shared::disks::disk_names(store)? {
        let dir = snap_shared::disks::DiskDir::new(store, &disk);
        for rec in dir.snapshots()? {
            if rec.method == "blocks" {
                out.push(Input::Disk(Box::new(rec)));
            }
        }
    }
    Ok(out)
}
