//! What snap-prune prunes: the store's snapshot trees, archives in any
//! folder or bucket (a destination, or the store's own `archives/`), and
//! disk snapshots (the `disks` module).
//!
//! A target lists its snapshots by set from names alone (an id is the UTC
//! time it was taken), reads records only for what the plan needs (tags, the
//! base of a kept incremental archive), and removes in an order that leaves a
//! rerun able to finish:
//!
//! - a tree: its record goes first (it is unlisted at once: every listing
//!   goes by records), then the tree is renamed to `.<id>.pruning`, its index
//!   goes, then the tree, counting the bytes really freed. What a crash
//!   leaves, a tree or an index without a record, or a `.pruning` folder, the
//!   next run removes: a listed snapshot is always whole. (A tree without a
//!   record but with a `.<id>.json.pending` is a publication snap-collect
//!   finishes; it is left alone.)
//! - an archive: an intent naming its objects is written first, then its
//!   `.json` record goes (it is unlisted at once), then its data, index and
//!   `.sha256`, then the intent (the `intent` module), in bulk for all
//!   archives of a set. A listed archive is always whole; what a crash leaves
//!   is finished by the next run. Removing non-kept archives in any order is
//!   safe: the policy keeps the same ones when run again on what is left, and
//!   a base a kept archive needs is never among them.

use std::path::{Path, PathBuf};

use snap_dest::Dest;
use snap_shared::catalog::Catalog;
use snap_shared::error::{Error, Result};
use snap_shared::id::parse_id;
use snap_shared::lock::StoreLock;
use snap_shared::record::ArchiveRecord;
use snap_shared::store::Store;

use crate::free;
use snap_shared::retention::listing::archive_info;
use snap_shared::retention::listing::{Entry, Group, Info, group_archives};
use snap_shared::store::PIN;

pub enum Target {
    /// Snapshot trees in a store.
    Trees(Store),
    /// Archives laid out `<set>/<id>.*` in a folder or bucket; `store` when
    /// they are the store's own (`archives/`), whose catalog rows follow.
    Archives { dest: Dest, store: Option<Store> },
    /// Disk snapshots (`blocks`) under `disks/` of a store or destination
    /// root; `store` when they are the store's, whose catalog rows follow.
    Disks { dest: Dest, store: Option<Store> },
    /// Snapshots inside the store's disk images (internal and overlay).
    Images(Box<crate::images::Images>, Store),
}

impl Target {
    /// `snapshot` or `archive`, for records and messages.
    pub fn what(&self) -> &'static str {
        match self {
            Target::Trees(_) => "snapshot",
            Target::Archives { .. } => "archive",
            Target::Disks { .. } | Target::Images(..) => "disk-snapshot",
        }
    }

    /// Where it is: the store's folder, or the destination's URL.
    pub fn location(&self) -> String {
        match self {
            Target::Trees(s) => s.root.display().to_string(),
            Target::Archives { dest, .. } | Target::Disks { dest, .. } => dest.url.clone(),
            Target::Images(_, store) => {
                format!("{} (inside the disks' images)", store.root.display())
            }
        }
    }

    /// The sets with their entries (only `only`, when given), sets sorted.
    pub fn scan(&self, only: Option<&str>) -> Result<Vec<Group>> {
        let mut groups = match self {
            Target::Trees(store) => scan_trees(store)?,
            Target::Archives { dest, .. } => {
                let mut groups = group_archives(&dest.list("")?);
                prove_incomplete(dest, &mut groups)?;
                groups
            }
            Target::Disks { dest, .. } => crate::disks::scan(dest)?,
            Target::Images(images, _) => images.scan()?,
        };
        groups.retain(|g| only.is_none_or(|s| s == g.set));
        Ok(groups)
    }

    /// The records' tags and bases of some entries of a set, in order.
    pub fn infos(&self, set: &str, ids: &[&str]) -> Result<Vec<Info>> {
        match self {
            Target::Trees(store) => ids
                .iter()
                .map(|id| {
                    let rec = store.read_record(set, id)?;
                    Ok(Info {
                        base: None,
                        tags: rec.tags,
                        chain: None,
                    })
                })
                .collect(),
            Target::Archives { dest, .. } => {
                let keys: Vec<String> = ids.iter().map(|id| format!("{set}/{id}.json")).collect();
                dest.get_many(&keys)
                    .into_iter()
                    .zip(&keys)
                    .map(|(bytes, key)| archive_info(&bytes?, &dest.show(key)))
                    .collect()
            }
            // Their listing reads every record, so each entry has its info.
            Target::Disks { .. } | Target::Images(..) => Err(Error::internal(
                format!("disk {set}"),
                "a disk snapshot's record was not read by the listing",
            )),
        }
    }

    /// Takes what keeps other snap tools from changing a set while it is pruned.
    pub fn lock_set(&self, set: &str, tool: &str) -> Result<Option<StoreLock>> {
        match self {
            // snap-pack locks an archive folder while it writes into it.
            Target::Archives {
                dest,
                store: Some(_),
            } => match dest.folder() {
                Some(root) if root.join(set).is_dir() => {
                    StoreLock::acquire(&root.join(set).join(".lock"), tool).map(Some)
                }
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// What removing these entries of a set, in this order, would free
    /// each (a file shared by several is freed with the last of them).
    pub fn estimate_each(&self, set: &str, entries: &[&Entry]) -> Result<Vec<u64>> {
        let store = match self {
            Target::Trees(store) => store,
            Target::Disks { dest, store } => {
                return crate::disks::estimate(dest, set, entries, disk_grace(store));
            }
            Target::Archives { .. } | Target::Images(..) => {
                return Ok(entries.iter().map(|e| e.bytes.unwrap_or(0)).collect());
            }
        };
        let mut est = free::Estimate::default();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let before = est.freed();
            for path in tree_paths(store, set, &e.id) {
                est.add_tree(&path).map_err(|err| Error::io(&path, err))?;
            }
            out.push(est.freed() - before);
        }
        Ok(out)
    }

    /// Removes these entries of a set, and says what each removal freed (as
    /// [`Target::estimate_each`] predicts it). Trees go one by one; a set's
    /// archives go together (data first, then records).
    pub fn remove(
        &self,
        set: &str,
        entries: &[&Entry],
        catalog: Option<&Catalog>,
    ) -> Result<Vec<u64>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Target::Trees(store) => {
                let mut freed = Vec::with_capacity(entries.len());
                for e in entries {
                    freed.push(remove_tree_snapshot(store, set, &e.id)?);
                    forget(catalog, Some(store), "snapshot", set, &e.id);
                }
                let link = store.latest_link(set);
                store.update_latest(set).map_err(|e| Error::io(&link, e))?;
                // The block-digest pages no index of the set names any more
                // go with the last of them.
                let dir = store.set_dir(set);
                let pages = snap_shared::blockpages::collect_garbage(&dir)
                    .map_err(|e| Error::io(&snap_shared::blockpages::dir_of(&dir), e))?;
                if let Some(last) = freed.last_mut() {
                    *last += pages;
                }
                Ok(freed)
            }
            Target::Archives { dest, store } => {
                crate::intent::remove_archives(dest, entries)?;
                for e in entries {
                    forget(catalog, store.as_ref(), "archive", set, &e.id);
                }
                Ok(entries.iter().map(|e| e.bytes.unwrap_or(0)).collect())
            }
            Target::Disks { dest, store } => {
                let freed = crate::disks::remove(dest, set, entries, disk_grace(store))?;
                for e in entries {
                    forget(catalog, store.as_ref(), "disk-snapshot", set, &e.id);
                }
                Ok(freed)
            }
            Target::Images(images, _) => images.remove(set, entries, catalog),
        }
    }

    /// Finishes removals a crash interrupted (`.<id>.pruning` trees, archive
    /// removals their intent records); returns bytes freed.
    pub fn finish_interrupted(&self) -> Result<u64> {
        let store = match self {
            Target::Trees(store) => store,
            Target::Archives { dest, .. } => return crate::intent::finish(dest),
            Target::Disks { .. } => return Ok(0),
            Target::Images(images, _) => return images.finish_interrupted(),
        };
        let mut freed = 0;
        for set in store.sets()? {
            let dir = store.set_dir(&set);
            for name in leftovers(store, &set)? {
                let path = dir.join(&name);
                freed += free::remove_tree(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(freed)
    }
}

/// Blocks in the store are collected at once (the store lock keeps every
/// writer out); at a destination, recent ones are spared.
fn disk_grace(store: &Option<Store>) -> Option<std::time::Duration> {
    store.is_none().then_some(crate::disks::DEST_GRACE)
}

/// The suffix of a tree being removed.
const PRUNING: &str = ".pruning";

/// Removes a catalog row. The catalog is never the only copy of anything:
/// if the row cannot be removed, the catalog is invalidated and rebuilt from
/// the records on its next open.
pub(crate) fn forget(
    catalog: Option<&Catalog>,
    store: Option<&Store>,
    kind: &str,
    set: &str,
    id: &str,
) {
    if let (Some(c), Some(s)) = (catalog, store)
        && c.remove(kind, set, id).is_err()
    {
        Catalog::invalidate(s);
    }
}

/// A tree snapshot's files: the tree (under its name, or being removed), index, record.
fn tree_paths(store: &Store, set: &str, id: &str) -> [PathBuf; 4] {
    [
        store.snapshot_dir(set, id),
        store.set_dir(set).join(format!(".{id}{PRUNING}")),
        store.index_path(set, id),
        store.record_path(set, id),
    ]
}

/// The I/O error of a path, as a closure for `map_err`.
fn io(p: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(p, e)
}

/// Removes one tree snapshot in the order the module doc gives.
fn remove_tree_snapshot(store: &Store, set: &str, id: &str) -> Result<u64> {
    let dir = store.set_dir(set);
    let [tree, doomed, index, record] = tree_paths(store, set, id);
    let mut freed = 0;
    if let Ok(meta) = std::fs::symlink_metadata(&record) {
        freed += free::remove_file(&record, &meta).map_err(io(&record))?;
        snap_shared::fsutil::fsync_dir(&dir).map_err(io(&dir))?;
    }
    // Only a broken snapshot is removed while pinned; its pin goes with it.
    let pin = dir.join(format!("{id}{PIN}"));
    match std::fs::remove_file(&pin) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&pin, e)),
        _ => {}
    }
    if tree.exists() {
        std::fs::rename(&tree, &doomed).map_err(io(&tree))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(&index) {
        freed += free::remove_file(&index, &meta).map_err(io(&index))?;
    }
    snap_shared::fsutil::fsync_dir(&dir).map_err(io(&dir))?;
    Ok(freed + free::remove_tree(&doomed).map_err(io(&doomed))?)
}

/// What an interrupted removal left in a set's folder: `.pruning` trees,
/// and trees or indexes of an id that has no record (nor a record being
/// published).
fn leftovers(store: &Store, set: &str) -> Result<Vec<String>> {
    let dir = store.set_dir(set);
    let names = snap_shared::store::read_names(&dir)?;
    let present: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let has = |n: &str| present.contains(n);
    let orphan = |id: &str| {
        snap_shared::id::is_id(id)
            && !has(&format!("{id}.json"))
            && !has(&format!(".{id}.json.pending"))
    };
    Ok(names
        .iter()
        .filter(|n| {
            (n.starts_with('.') && n.ends_with(PRUNING))
                || orphan(n)
                || n.strip_suffix(".index.zst").is_some_and(orphan)
        })
        .cloned()
        .collect())
}

/// The store's tree snapshots by set; a record whose tree is gone is incomplete.
fn scan_trees(store: &Store) -> Result<Vec<Group>> {
    let mut groups = Vec::new();
    for set in store.sets()? {
        let mut entries = Vec::new();
        for id in store.snapshot_ids(&set)? {
            let Some((time, _)) = parse_id(&id) else {
                continue;
            };
            let broken = (!store.snapshot_dir(&set, &id).is_dir())
                .then(|| "incomplete: its tree is gone (an interrupted prune?)".to_string());
            let pinned = store.set_dir(&set).join(format!("{id}{PIN}")).exists();
            entries.push(Entry {
                id,
                time,
                bytes: None,
                objects: Vec::new(),
                broken,
                unreadable: None,
                info: None,
                pinned,
            });
        }
        if !entries.is_empty() {
            groups.push(Group { set, entries });
        }
    }
    Ok(groups)
}

/// A record whose data file is gone is what an interrupted prune leaves
/// (a push writes its record last), but only if the record is one: each is
/// read, and one that cannot be parsed, or is another archive's (copied or
/// renamed), is kept and named instead of removed.
fn prove_incomplete(dest: &Dest, groups: &mut [Group]) -> Result<()> {
    let mut keys = Vec::new();
    for g in groups.iter() {
        for e in g.entries.iter().filter(|e| e.broken.is_some()) {
            keys.push(format!("{}/{}.json", g.set, e.id));
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    let mut read = dest.get_many(&keys).into_iter().zip(&keys);
    for g in groups.iter_mut() {
        for e in g.entries.iter_mut().filter(|e| e.broken.is_some()) {
            let (bytes, key) = read.next().expect("one read a key");
            let at = dest.show(key);
            let rec: std::result::Result<ArchiveRecord, String> = match bytes {
                Ok(b) => {
                    serde_json::from_slice(&b).map_err(|e| format!("not an archive record: {e}"))
                }
                // Gone since the listing: nothing left to prove.
                Err(err) if err.exit == snap_shared::error::Exit::NoInput => continue,
                Err(err) => return Err(err),
            };
            let why = match rec {
                Err(why) => why,
                Ok(r) if r.id != e.id => format!(
                    "the record inside is {}/{}'s: copied or renamed, not this name's",
                    r.set, r.id
                ),
                Ok(_) => continue,
            };
            e.broken = None;
            e.unreadable = Some(format!("{at}: {why}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a killed removal leaves is found (a tree or an index without a
    /// record, a `.pruning` tree); a whole snapshot and a publication that
    /// snap-collect finishes are not.
    #[test]
    fn leftovers_of_a_killed_removal() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let dir = store.set_dir("s");
        let (a, b, c, d) = (
            "2026-01-01T000000Z",
            "2026-01-02T000000Z",
            "2026-01-03T000000Z",
            "2026-01-04T000000Z",
        );
        for tree in [a, b, c] {
            std::fs::create_dir_all(dir.join(tree)).unwrap();
        }
        std::fs::create_dir_all(dir.join(format!(".{a}-2{PRUNING}"))).unwrap();
        for file in [
            format!("{a}.json"),
            format!("{a}.index.zst"),
            format!(".{c}.json.pending"),
            format!("{c}.index.zst"),
            format!("{d}.index.zst"),
        ] {
            std::fs::write(dir.join(file), "").unwrap();
        }
        let mut found = leftovers(&store, "s").unwrap();
        found.sort();
        assert_eq!(
            found,
            [
                format!(".{a}-2{PRUNING}"),
                b.to_string(),
                format!("{d}.index.zst")
            ]
        );
    }
}
