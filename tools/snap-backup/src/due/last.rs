//! When each job was last done, from the records: the store's snapshots,
//! archives and disk snapshots, and each destination's own listing. Nothing
//! here is a state file of snap-backup's, so what is due can never drift
//! from what exists (a snapshot removed by hand is due again).

use chrono::{DateTime, Local, NaiveDateTime, Utc};
use serde_json::Value;

use snap_shared::archive::{self, ArchiveFiles};
use snap_shared::disks::DiskDir;
use snap_shared::id::parse_id;
use snap_shared::record::ArchiveRecord;
use snap_shared::store::Store;

use crate::tools::Tools;

/// A UTC time as the schedule reads it: the machine's local time.
pub fn local(t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&Local).naive_local()
}

/// The newest snapshot of a set in the store (its id's time).
pub fn collected(store: &Store, set: &str) -> Option<NaiveDateTime> {
    let ids = store.snapshot_ids(set).ok()?;
    ids.iter()
        .filter_map(|id| parse_id(id).map(|(t, _)| t))
        .max()
        .map(local)
}

/// The store's disk whose snapshots were read through libvirt domain
/// `domain` (at `target`, when given): its newest record names them.
pub fn domain_disk(store: &Store, domain: &str, target: Option<&str>) -> Option<String> {
    let names = snap_shared::disks::disk_names(store).ok()?;
    names.into_iter().find(|name| {
        let snaps = DiskDir::new(store, name).snapshots().unwrap_or_default();
        snaps.iter().rev().any(|r| {
            let get = |k: &str| r.extra.get(k).and_then(Value::as_str);
            get("domain") == Some(domain) && target.is_none_or(|t| get("target") == Some(t))
        })
    })
}

/// The newest snapshot of a disk in the store.
pub fn disk_snapshot(store: &Store, disk: &str) -> Option<NaiveDateTime> {
    let snaps = DiskDir::new(store, disk).snapshots().ok()?;
    snaps.iter().map(|s| s.created).max().map(local)
}

/// The store's archives of a set, oldest first (an unreadable record is left out).
pub fn archives(store: &Store, set: &str) -> Vec<ArchiveRecord> {
    let dir = store.archive_dir(set);
    let Ok(ids) = archive::archive_ids(&dir) else {
        return Vec::new();
    };
    ids.iter()
        .filter_map(|id| archive::read_record(&ArchiveFiles::new(&dir, id).record()).ok())
        .collect()
}

/// When an archive was made (`packed`), else the snapshot it holds.
pub fn packed(a: &ArchiveRecord) -> Option<NaiveDateTime> {
    a.extra
        .get("packed")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| parse_id(&a.id).map(|(t, _)| t))
        .map(local)
}

/// The newest full archive (no base) of a set in the store.
pub fn full(archives: &[ArchiveRecord]) -> Option<NaiveDateTime> {
    archives
        .iter()
        .filter(|a| a.base.is_none())
        .filter_map(packed)
        .max()
}

/// What a destination holds, as `snap-restore list DEST --json` reads it.
pub enum Held {
    /// Its archives (every set).
    Archives(Vec<ArchiveRecord>),
    /// It could not be read: exit 75 (absent) or another code.
    Unreached(i32),
}

impl Held {
    /// The newest archive it holds, by when it was made.
    pub fn newest(&self) -> Option<NaiveDateTime> {
        match self {
            Held::Archives(list) => list.iter().filter_map(packed).max(),
            Held::Unreached(_) => None,
        }
    }
}

/// Lists a destination by name through snap-restore (a reader never blocks
/// on the destination's locks).
pub fn held(tools: &Tools, dest: &str) -> Held {
    let args = ["list".into(), dest.into(), "--json".into()];
    let ran = tools.run_as("snap-restore", &args, true);
    match ran {
        Ok(r) if r.exit == 0 || r.exit == 1 => Held::Archives(
            r.records
                .into_iter()
                .filter(|v| v["kind"] == "archive")
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect(),
        ),
        Ok(r) => Held::Unreached(r.exit),
        Err(e) => Held::Unreached(e.exit.code()),
    }
}
