//! Incremental archives: which earlier archive one builds on, and which files
//! it must carry.
//!
//! An incremental archive holds the files whose content differs from its
//! base's (by sha256), every folder, symlink and special file (they are
//! cheap, and make `tar -x` of it alone give the tree's shape), and no hard
//! links; its index is the snapshot's whole index, so a restore knows what was
//! deleted and every file's final metadata. A restore replays the chain from
//! its full archive.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use snap_shared::archive::{self, ArchiveFiles};
use snap_shared::error::Result;
use snap_shared::id::cmp_ids;
use snap_shared::index::{Blocks, Entry, EntryType, IndexReader, cmp_paths};
use snap_shared::record::{ArchiveRecord, SnapshotRecord};
use snap_shared::store::Store;

use crate::checked::{Checked, Stamp};

/// The archive an incremental one builds on, with an index to compare against.
pub struct Base {
    pub record: ArchiveRecord,
    /// How many archives the chain holds up to and including the base.
    pub chain: u64,
    pub index: PathBuf,
}

/// The length of the chain an archive record ends (1 for a full archive).
pub fn chain_of(rec: &ArchiveRecord) -> u64 {
    rec.extra
        .get("chain")
        .and_then(|v| v.as_u64())
        .unwrap_or(if rec.base.is_none() { 1 } else { 2 })
}

/// Chooses the base of an incremental archive of `snap` in `dir`: the newest
/// earlier archive, unless the chain has reached `full_every` archives
/// (0: no bound). `Err(reason)` says why the archive will be full instead.
pub fn choose(
    dir: &Path,
    snap: &SnapshotRecord,
    full_every: u64,
) -> Result<std::result::Result<Base, String>> {
    let earlier = archive::archive_ids(dir)?
        .into_iter()
        .rfind(|id| cmp_ids(id, &snap.id) == Ordering::Less);
    let Some(id) = earlier else {
        return Ok(Err("no earlier archive of the set to build on".into()));
    };
    let files = ArchiveFiles::new(dir, &id);
    let record = match archive::read_record(&files.record()) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Err(format!(
                "the newest earlier archive {id} is unreadable: {e}"
            )));
        }
    };
    if let Err(why) = sound_chain(dir, &record) {
        return Ok(Err(why));
    }
    let chain = chain_of(&record);
    if full_every > 0 && chain >= full_every {
        return Ok(Err(format!(
            "the chain from {id} has {chain} archives (--full-every {full_every})"
        )));
    }
    // The archive's own index has the block digests of big files; an
    // encrypted one cannot be read here, and the base snapshot's index in
    // the store lists the same files (without those digests).
    let in_store = Store::new(&snap.store).index_path(&snap.set, &record.source);
    let own = archive::beside(&files.record(), &record.index);
    let index = if record.encryption.is_none() && own.exists() {
        own
    } else if in_store.exists() {
        in_store
    } else {
        return Ok(Err(format!(
            "the index of {id} is encrypted and its snapshot is no longer in the store"
        )));
    };
    Ok(Ok(Base {
        record,
        chain,
        index,
    }))
}

/// Checks every archive of the chain `tip` ends, back to its full archive,
/// as a restore will need it: the record, the data and the index, each the
/// size and sha256 its record says (one read of each; data read right
/// before and unchanged since is trusted, see the `checked` module); of an
/// archive whose data the store dropped ([`archive::Away`]), the record and
/// the index.
/// `Err` says what is wrong, naming the archive.
fn sound_chain(dir: &Path, tip: &ArchiveRecord) -> std::result::Result<(), String> {
    let mut checked = Checked::open(dir);
    let sound = walk_chain(dir, tip, &mut checked);
    if sound.is_ok() {
        checked.save();
    }
    sound
}

/// [`sound_chain`]'s walk; data hashed right before (and unchanged since,
/// by `checked`) is not read again.
fn walk_chain(
    dir: &Path,
    tip: &ArchiveRecord,
    checked: &mut Checked,
) -> std::result::Result<(), String> {
    let mut current = tip.clone();
    for _ in 0..10_000 {
        let json = ArchiveFiles::new(dir, &current.id).record();
        let data = archive::beside(&json, &current.path);
        let fail = |what: &str| format!("{} {}/{}: {what}", "archive", current.set, current.id);
        // Data the store handed to its destinations (keep_archives) is not
        // read here: the next archive needs only the base's index.
        let away = archive::is_away(&ArchiveFiles::new(dir, &current.id));
        let stamp = Stamp::of(&data, &current.sha256);
        let seen = stamp
            .as_ref()
            .is_some_and(|s| checked.holds(&current.id, s));
        let hashed = (!away && !seen).then(|| hash_path(&data));
        match hashed {
            None => {}
            Some(Ok((n, _))) if n != current.bytes => {
                return Err(fail(&format!(
                    "{n} bytes, its record says {}",
                    current.bytes
                )));
            }
            Some(Ok((_, d))) if d.to_hex() != current.sha256 => {
                return Err(fail(&format!(
                    "sha256 {d}, its record says {}",
                    current.sha256
                )));
            }
            Some(Ok(_)) => {
                if let Some(s) = stamp {
                    checked.note(&current.id, s);
                }
            }
            Some(Err(e)) => return Err(fail(&format!("{}: {e}", data.display()))),
        }
        if let Some(want) = current.extra.get("index_sha256").and_then(|v| v.as_str()) {
            let index = archive::beside(&json, &current.index);
            match hash_path(&index) {
                Ok((_, d)) if d.to_hex() != want => {
                    return Err(fail(&format!("index sha256 {d}, its record says {want}")));
                }
                Ok(_) => {}
                Err(e) => return Err(fail(&format!("{}: {e}", index.display()))),
            }
        }
        let Some(base) = current.base.clone() else {
            return Ok(());
        };
        let base_json = ArchiveFiles::new(dir, &base).record();
        current = archive::read_record(&base_json)
            .map_err(|e| fail(&format!("its base {base} is missing or unreadable: {e}")))?;
    }
    Err(format!("the chain of {} loops", tip.id))
}

/// The size and sha256 of a file, in one read.
fn hash_path(path: &Path) -> std::io::Result<(u64, snap_shared::hash::Sha256Digest)> {
    snap_shared::hash::hash_read(std::fs::File::open(path)?, &mut vec![0u8; 1 << 20])
}

/// Walks a base index alongside the new one and says which files changed.
pub struct Changes {
    base: IndexReader,
    current: Option<Entry>,
}

impl Changes {
    pub fn open(index: &Path) -> Result<Changes> {
        let mut base = IndexReader::open(index)?;
        let current = base.next_entry()?;
        Ok(Changes { base, current })
    }

    /// The block digests the base records for the file last found unchanged
    /// by [`Changes::is_changed`]: an archive that does not carry a big file
    /// still records its blocks, for the next incremental to compare with.
    pub fn unchanged_blocks(&mut self) -> Option<Blocks> {
        self.current.as_mut().and_then(|b| b.blocks.take())
    }

    /// The block digests the base records for `path`, found changed by
    /// [`Changes::is_changed`]: what a delta of it compares with. None when
    /// the base has no file there, or no digests for it (made before them).
    pub fn changed_blocks(&mut self, path: &[u8]) -> Option<Blocks> {
        self.current
            .as_mut()
            .filter(|b| b.path == path && b.kind == EntryType::File)
            .and_then(|b| b.blocks.take())
    }

    /// Whether the file `entry` (of the new index, visited in order) has content
    /// the base does not have at the same path.
    pub fn is_changed(&mut self, entry: &Entry) -> Result<bool> {
        while let Some(b) = &self.current {
            match cmp_paths(&b.path, &entry.path) {
                Ordering::Less => self.current = self.base.next_entry()?,
                Ordering::Equal => {
                    // A hard link in the base has no content of its own in the
                    // base's tar, so a file at its path must be carried again.
                    let same = b.kind == EntryType::File
                        && b.size == entry.size
                        && b.sha256.is_some()
                        && b.sha256 == entry.sha256;
                    return Ok(!same);
                }
                Ordering::Greater => return Ok(true),
            }
        }
        Ok(true)
    }
}
