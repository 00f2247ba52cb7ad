//! Collecting one set into a new snapshot.
//!
//! The walk and the previous snapshot's index are merged in one pass: a file
//! whose size, mtime, mode and owner match the previous entry is hard-linked
//! from the previous tree (its digest taken from the index); any other file is
//! copied and hashed in the same read. Everything is built in
//! `.<id>.partial/` and published in an order that a crash at any instant
//! leaves either no snapshot or a whole one (see [`publish`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};

use snap_shared::error::{Error, Exit, Result, io_cause, is_disk_full};
use snap_shared::fsutil::{self, publish_new, remove_tree, temp_name};
use snap_shared::hash::Sha256Digest;
use snap_shared::index::{Entry, EntryType, IndexReader, IndexWriter, cmp_paths};
use snap_shared::record::{Extra, SCHEMA, SnapshotRecord};
use snap_shared::size::{Floor, human_bytes};
use snap_shared::store::Store;

use crate::copy::{copy_hashed, hash_file};
use crate::meta::{apply_to_file, apply_to_path, mtime_ns, perm_bits};
use crate::report::Reporter;
use crate::sources::SetPlan;
use crate::space::SpaceGuard;
use crate::walk::{Event, Found, Walker};

/// How to collect, beyond what the set says.
#[derive(Debug, Clone)]
pub struct Options {
    pub checksum: bool,
    pub description: Option<String>,
    pub floor: Floor,
}

/// Counters that end up in the record and the summary.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    files: u64,
    dirs: u64,
    bytes: u64,
    new_files: u64,
    new_bytes: u64,
    linked: u64,
    errors: u64,
}

/// The previous snapshot's index, read in step with the walk.
struct Previous {
    dir: PathBuf,
    reader: IndexReader,
    current: Option<Entry>,
}

impl Previous {
    /// The previous entry at `path`, if there was one.
    fn find(&mut self, path: &[u8]) -> Result<Option<&Entry>> {
        while let Some(cur) = &self.current {
            match cmp_paths(&cur.path, path) {
                std::cmp::Ordering::Less => self.current = self.reader.next_entry()?,
                std::cmp::Ordering::Equal => return Ok(self.current.as_ref()),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// What became of a file the previous snapshot may already hold.
enum Reuse {
    Linked,
    Copy,
    Unreadable,
}

/// A group of hard links inside the source, by its first path.
struct LinkGroup {
    first: Vec<u8>,
    size: u64,
    sha256: Option<Sha256Digest>,
    /// Names not seen yet; the group is forgotten at zero.
    remaining: u64,
}

struct Run<'a> {
    plan: &'a SetPlan,
    opts: &'a Options,
    report: &'a Reporter,
    partial: PathBuf,
    prev: Option<Previous>,
    index: IndexWriter<BufWriter<File>>,
    open_dirs: Vec<(Vec<u8>, Metadata)>,
    links: HashMap<(u64, u64), LinkGroup>,
    stats: Stats,
    as_root: bool,
    space: SpaceGuard,
    entries_seen: u64,
}

fn os(rel: &[u8]) -> &OsStr {
    OsStr::from_bytes(rel)
}

fn store_err(path: &Path, e: io::Error) -> Error {
    if is_disk_full(&e) {
        Error::io(path, e)
            .with_exit(Exit::Io)
            .with_hint("the store's disk is full; no snapshot was made and earlier ones are intact")
    } else {
        Error::io(path, e).with_exit(Exit::Io)
    }
}

fn base_entry(f: &Found, kind: EntryType) -> Entry {
    let m = &f.meta;
    Entry {
        path: f.rel.clone(),
        kind,
        size: if kind == EntryType::Dir { 0 } else { m.size() },
        mode: perm_bits(m),
        mtime: mtime_ns(m),
        uid: m.uid(),
        gid: m.gid(),
        sha256: None,
        target: None,
        link: None,
        rdev: None,
    }
}

/// True when the previous entry describes the same file by its metadata.
fn same_metadata(prev: &Entry, e: &Entry) -> bool {
    matches!(prev.kind, EntryType::File | EntryType::Hardlink)
        && prev.size == e.size
        && prev.mtime == e.mtime
        && prev.mode == e.mode
        && prev.uid == e.uid
        && prev.gid == e.gid
        && prev.sha256.is_some()
}

impl Run<'_> {
    fn dst(&self, rel: &[u8]) -> PathBuf {
        self.partial.join(os(rel))
    }

    /// Gives finished directories their metadata, deepest first, once the walk has
    /// left them (their entries are all made, so their mtime stays put).
    fn close_dirs_not_above(&mut self, rel: Option<&[u8]>) -> Result<()> {
        while let Some((dir, _)) = self.open_dirs.last() {
            let inside = rel
                .is_some_and(|r| r.len() > dir.len() && r.starts_with(dir) && r[dir.len()] == b'/');
            if inside {
                break;
            }
            let (dir, meta) = self.open_dirs.pop().expect("checked non-empty");
            let path = self.dst(&dir);
            apply_to_path(&path, &meta, self.as_root).map_err(|e| store_err(&path, e))?;
        }
        Ok(())
    }

    fn handle(&mut self, found: Found) -> Result<()> {
        self.close_dirs_not_above(Some(&found.rel))?;
        let ft = found.meta.file_type();
        let entry = if ft.is_dir() {
            Some(self.make_dir(found)?)
        } else if ft.is_file() {
            self.make_file(&found)?
        } else if ft.is_symlink() {
            self.make_symlink(&found)?
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            self.make_special(&found)?
        } else {
            self.report.warn(&format!(
                "{}: sockets are not backed up",
                found.abs.display()
            ));
            None
        };
        if let Some(e) = entry {
            if e.kind != EntryType::Dir {
                self.stats.files += 1;
            }
            self.index.push(&e)?;
        }
        self.entries_seen += 1;
        if self.entries_seen % 512 == 0 {
            self.report
                .progress(&self.plan.name, self.entries_seen, self.stats.new_bytes);
        }
        Ok(())
    }

    fn make_dir(&mut self, f: Found) -> Result<Entry> {
        let path = self.dst(&f.rel);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| store_err(&path, e))?;
        self.stats.dirs += 1;
        let entry = base_entry(&f, EntryType::Dir);
        self.open_dirs.push((f.rel, f.meta));
        Ok(entry)
    }

    fn make_symlink(&mut self, f: &Found) -> Result<Option<Entry>> {
        let target = match fs::read_link(&f.abs) {
            Ok(t) => t,
            Err(e) => {
                self.unreadable(&f.abs, e);
                return Ok(None);
            }
        };
        let path = self.dst(&f.rel);
        std::os::unix::fs::symlink(&target, &path).map_err(|e| store_err(&path, e))?;
        apply_to_path(&path, &f.meta, self.as_root).map_err(|e| store_err(&path, e))?;
        let mut entry = base_entry(f, EntryType::Symlink);
        entry.target = Some(target.as_os_str().as_bytes().to_vec());
        Ok(Some(entry))
    }

    fn make_special(&mut self, f: &Found) -> Result<Option<Entry>> {
        use rustix::fs::{CWD, FileType, Mode, mknodat};
        let ft = f.meta.file_type();
        let (kind, file_type, dev) = if ft.is_fifo() {
            (EntryType::Fifo, FileType::Fifo, 0)
        } else if ft.is_char_device() {
            (EntryType::Char, FileType::CharacterDevice, f.meta.rdev())
        } else {
            (EntryType::Block, FileType::BlockDevice, f.meta.rdev())
        };
        if kind != EntryType::Fifo && !self.as_root {
            self.stats.errors += 1;
            self.report.error(&format!(
                "{}: device files can only be collected as root",
                f.abs.display()
            ));
            return Ok(None);
        }
        let path = self.dst(&f.rel);
        mknodat(CWD, &path, file_type, Mode::from_raw_mode(0o600), dev)
            .map_err(|e| store_err(&path, e.into()))?;
        apply_to_path(&path, &f.meta, self.as_root).map_err(|e| store_err(&path, e))?;
        let mut entry = base_entry(f, kind);
        if kind != EntryType::Fifo {
            entry.rdev = Some(dev);
        }
        entry.size = 0;
        Ok(Some(entry))
    }

    /// Reports a source entry that can't be read; vanished ones are only a warning.
    fn unreadable(&mut self, path: &Path, e: io::Error) {
        if e.kind() == io::ErrorKind::NotFound {
            self.report
                .warn(&format!("{}: vanished during the walk", path.display()));
        } else {
            self.stats.errors += 1;
            self.report
                .error(&format!("{}: {}", path.display(), io_cause(&e)));
        }
    }

    fn make_file(&mut self, f: &Found) -> Result<Option<Entry>> {
        let key = (f.meta.dev(), f.meta.ino());
        let multi = f.meta.nlink() > 1;
        if multi && let Some(entry) = self.link_in_group(f, key)? {
            return Ok(Some(entry));
        }
        let mut entry = base_entry(f, EntryType::File);
        let copied = match self.link_unchanged(f, &mut entry)? {
            Reuse::Linked => true,
            Reuse::Copy => self.copy_new(f, &mut entry)?,
            Reuse::Unreadable => false,
        };
        if !copied {
            return Ok(None);
        }
        self.stats.bytes += entry.size;
        if multi {
            self.links.insert(
                key,
                LinkGroup {
                    first: f.rel.clone(),
                    size: entry.size,
                    sha256: entry.sha256,
                    remaining: f.meta.nlink() - 1,
                },
            );
        }
        Ok(Some(entry))
    }

    /// A further name of a hard-link group seen earlier: linked to the first one.
    fn link_in_group(&mut self, f: &Found, key: (u64, u64)) -> Result<Option<Entry>> {
        let Some(group) = self.links.get_mut(&key) else {
            return Ok(None);
        };
        let first = self.partial.join(os(&group.first));
        let path = self.partial.join(os(&f.rel));
        match fs::hard_link(&first, &path) {
            Ok(()) => {}
            // Too many links: the second name becomes a copy (below).
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error()) => {
                return Ok(None);
            }
            Err(e) => return Err(store_err(&path, e)),
        }
        let mut entry = base_entry(f, EntryType::Hardlink);
        entry.link = Some(group.first.clone());
        entry.size = group.size;
        entry.sha256 = group.sha256;
        group.remaining = group.remaining.saturating_sub(1);
        if group.remaining == 0 {
            self.links.remove(&key);
        }
        Ok(Some(entry))
    }

    /// Hard-links an unchanged file from the previous snapshot, if it is one.
    fn link_unchanged(&mut self, f: &Found, entry: &mut Entry) -> Result<Reuse> {
        let Some(prev) = self.prev.as_mut() else {
            return Ok(Reuse::Copy);
        };
        let Some(old) = prev.find(&f.rel)? else {
            return Ok(Reuse::Copy);
        };
        if !same_metadata(old, entry) {
            return Ok(Reuse::Copy);
        }
        let old_sha = old.sha256;
        let old_path = prev.dir.join(os(&f.rel));
        if self.opts.checksum {
            match File::open(&f.abs).and_then(|mut file| hash_file(&mut file)) {
                Ok((_, sha)) if Some(sha) == old_sha => {}
                Ok(_) => return Ok(Reuse::Copy),
                Err(e) => {
                    self.unreadable(&f.abs, e);
                    return Ok(Reuse::Unreadable);
                }
            }
        }
        let path = self.dst(&f.rel);
        match fs::hard_link(&old_path, &path) {
            Ok(()) => {
                entry.sha256 = old_sha;
                self.stats.linked += 1;
                Ok(Reuse::Linked)
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error()) => {
                Ok(Reuse::Copy)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.report.warn(&format!(
                    "{}: missing from the previous snapshot; copied again",
                    old_path.display()
                ));
                Ok(Reuse::Copy)
            }
            Err(e) => Err(store_err(&path, e)),
        }
    }

    /// Copies a new or changed file and hashes it. False when the source could not be read.
    fn copy_new(&mut self, f: &Found, entry: &mut Entry) -> Result<bool> {
        let mut src = match OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags())
            .open(&f.abs)
        {
            Ok(s) => s,
            Err(e) => {
                self.unreadable(&f.abs, e);
                return Ok(false);
            }
        };
        let path = self.dst(&f.rel);
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| store_err(&path, e))?;
        let copied = match copy_hashed(&mut src, &mut dst, entry.size) {
            Ok(c) => c,
            Err(e) if is_disk_full(&e) => return Err(store_err(&path, e)),
            Err(e) => {
                drop(dst);
                let _ = fs::remove_file(&path);
                self.unreadable(&f.abs, e);
                return Ok(false);
            }
        };
        apply_to_file(&dst, &f.meta, self.as_root).map_err(|e| store_err(&path, e))?;
        if copied.changed {
            self.report.warn(&format!(
                "{}: changed size while being read; the snapshot has what was read",
                f.abs.display()
            ));
        }
        entry.size = copied.bytes;
        entry.sha256 = Some(copied.sha256);
        self.stats.new_files += 1;
        self.stats.new_bytes += copied.bytes;
        self.report.detail(|| format!("copied {}", f.abs.display()));
        self.space.spent(copied.bytes)?;
        Ok(true)
    }
}

/// Open flags for sources: never follow a symlink swapped in since the walk,
/// never block on a fifo swapped in.
fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

/// Finishes work a crash interrupted: removes unfinished snapshots and completes
/// a publication that stopped between its last two renames. Returns the ids it
/// completed. Runs under the store lock, so nothing here is another run's work.
pub fn recover(store: &Store, set: &str, report: &Reporter) -> Result<Vec<String>> {
    let dir = store.set_dir(set);
    let names = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut completed = Vec::new();
    for name in &names {
        let path = dir.join(name);
        if let Some(id) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".partial"))
        {
            report.note(&format!("set {set}: removing unfinished snapshot {id}"));
            remove_tree(&path).map_err(|e| Error::io(&path, e))?;
        } else if let Some(id) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".json.pending"))
        {
            let record = store.record_path(set, id);
            if store.snapshot_dir(set, id).is_dir() && !record.exists() {
                publish_new(&path, &record).map_err(|e| Error::io(&record, e))?;
                report.note(&format!("set {set}: finished publishing snapshot {id}"));
                completed.push(id.to_string());
            } else {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        } else if name.starts_with('.') && name.contains(".tmp.") {
            let _ = fs::remove_file(&path);
        }
    }
    // Indexes whose snapshot never got its record.
    for name in &names {
        if let Some(id) = name.strip_suffix(".index.zst")
            && snap_shared::id::is_id(id)
            && !store.record_path(set, id).exists()
            && !store.snapshot_dir(set, id).exists()
        {
            let _ = fs::remove_file(dir.join(name));
        }
    }
    Ok(completed)
}

/// Collects one set into a new snapshot and returns its record.
pub fn collect_set(
    store: &Store,
    plan: &SetPlan,
    opts: &Options,
    report: &Reporter,
) -> Result<SnapshotRecord> {
    let started = Instant::now();
    let set = &plan.name;
    let set_dir = store.set_dir(set);
    fsutil::create_private_dir(&set_dir).map_err(|e| Error::io(&set_dir, e))?;
    let parent = store.latest_id(set)?;
    let created = Utc::now();
    let id = snap_shared::id::free_id(created, |id| {
        store.record_path(set, id).exists()
            || store.snapshot_dir(set, id).exists()
            || store.index_path(set, id).exists()
    });
    let space = SpaceGuard::check(
        store,
        opts.floor,
        parent.as_deref().map(|p| (set.as_str(), p)),
        report,
    )?;
    let partial = store.partial_dir(set, &id);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&partial)
        .map_err(|e| store_err(&partial, e))?;
    let index_final = store.index_path(set, &id);
    let index_tmp = temp_name(&index_final, "tmp");
    let result = build(
        store,
        plan,
        opts,
        report,
        &id,
        parent.as_deref(),
        &partial,
        &index_tmp,
        space,
    )
    .and_then(|(stats, index_file)| {
        finish_index(index_file, &index_tmp)?;
        let record = make_record(store, plan, opts, &id, created, parent, stats, started);
        publish(store, set, &id, &partial, &index_tmp, &record)?;
        Ok(record)
    });
    if result.is_err() {
        let _ = remove_tree(&partial);
        let _ = fs::remove_file(&index_tmp);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn build(
    store: &Store,
    plan: &SetPlan,
    opts: &Options,
    report: &Reporter,
    id: &str,
    parent: Option<&str>,
    partial: &Path,
    index_tmp: &Path,
    space: SpaceGuard,
) -> Result<(Stats, BufWriter<File>)> {
    let prev = match parent {
        Some(p) => {
            let mut reader = IndexReader::open(&store.index_path(&plan.name, p))?;
            let current = reader.next_entry()?;
            Some(Previous {
                dir: store.snapshot_dir(&plan.name, p),
                reader,
                current,
            })
        }
        None => None,
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(index_tmp)
        .map_err(|e| store_err(index_tmp, e))?;
    let index = IndexWriter::new(BufWriter::with_capacity(256 * 1024, file))
        .map_err(|e| store_err(index_tmp, e))?;
    let mut run = Run {
        plan,
        opts,
        report,
        partial: partial.to_path_buf(),
        prev,
        index,
        open_dirs: Vec::new(),
        links: HashMap::new(),
        stats: Stats::default(),
        as_root: rustix::process::geteuid().is_root(),
        space,
        entries_seen: 0,
    };
    let _ = id;
    let store_root = fs::canonicalize(&store.root).ok();
    for event in Walker::new(plan, store_root)? {
        match event {
            Event::Entry(found) => run.handle(found)?,
            Event::Warning(w) => report.warn(&w),
            Event::Error(e) => {
                run.stats.errors += 1;
                report.error(&e);
            }
        }
    }
    run.close_dirs_not_above(None)?;
    let stats = run.stats;
    let file = run.index.finish().map_err(|e| store_err(index_tmp, e))?;
    Ok((stats, file))
}

fn finish_index(mut file: BufWriter<File>, path: &Path) -> Result<()> {
    file.flush().map_err(|e| store_err(path, e))?;
    let file = file
        .into_inner()
        .map_err(|e| store_err(path, e.into_error()))?;
    file.sync_all().map_err(|e| store_err(path, e))
}

#[allow(clippy::too_many_arguments)]
fn make_record(
    store: &Store,
    plan: &SetPlan,
    opts: &Options,
    id: &str,
    created: DateTime<Utc>,
    parent: Option<String>,
    stats: Stats,
    started: Instant,
) -> SnapshotRecord {
    let mut extra = Extra::new();
    extra.insert("dirs".into(), stats.dirs.into());
    extra.insert("linked_files".into(), stats.linked.into());
    extra.insert(
        "duration_s".into(),
        serde_json::json!((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
    );
    SnapshotRecord {
        schema: SCHEMA.into(),
        set: plan.name.clone(),
        id: id.to_string(),
        host: snap_shared::hostname(),
        created,
        store: store.root.display().to_string(),
        path: store.snapshot_dir(&plan.name, id).display().to_string(),
        index: store.index_path(&plan.name, id).display().to_string(),
        parent,
        sources: plan
            .sources
            .iter()
            .map(|s| s.abs.display().to_string())
            .collect(),
        files: stats.files,
        bytes: stats.bytes,
        new_files: stats.new_files,
        new_bytes: stats.new_bytes,
        errors: stats.errors,
        tags: plan.tags.clone(),
        description: opts.description.clone(),
        extra,
    }
}

/// Publishes a built snapshot. The order makes every crash point safe:
/// 1. all data is flushed (`syncfs`), 2. the index gets its name,
/// 3. the record is written as `.<id>.json.pending`, 4. the tree gets its name,
/// 5. the record gets its name: from here the snapshot exists. A crash before
///    4 leaves a partial (removed by the next run); between 4 and 5 the next
///    run finishes step 5 ([`recover`]). Then `latest` is swapped.
fn publish(
    store: &Store,
    set: &str,
    id: &str,
    partial: &Path,
    index_tmp: &Path,
    record: &SnapshotRecord,
) -> Result<()> {
    fsutil::syncfs(partial).map_err(|e| store_err(partial, e))?;
    let index = store.index_path(set, id);
    publish_new(index_tmp, &index).map_err(|e| store_err(&index, e))?;
    let record_path = store.record_path(set, id);
    let pending = store.set_dir(set).join(format!(".{id}.json.pending"));
    let json = serde_json::to_string_pretty(record).map_err(|e| Error::internal("record", e))?;
    fsutil::write_atomic(&pending, 0o600, false, |f| f.write_all(json.as_bytes()))
        .map_err(|e| store_err(&pending, e))?;
    let tree = store.snapshot_dir(set, id);
    publish_new(partial, &tree).map_err(|e| store_err(&tree, e))?;
    publish_new(&pending, &record_path).map_err(|e| store_err(&record_path, e))?;
    update_latest(store, set)
}

/// Points `latest` at the newest snapshot of the set.
pub fn update_latest(store: &Store, set: &str) -> Result<()> {
    if let Some(newest) = store.latest_id(set)? {
        let link = store.latest_link(set);
        fsutil::replace_symlink(Path::new(&newest), &link).map_err(|e| store_err(&link, e))?;
    }
    Ok(())
}

/// The one-line summary of a finished snapshot.
pub fn summary(rec: &SnapshotRecord) -> String {
    let linked = rec
        .extra
        .get("linked_files")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let secs = rec
        .extra
        .get("duration_s")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let mut s = format!(
        "set {}: snapshot {}: {} files, {}; {} copied ({}), {} hard-linked",
        rec.set,
        rec.id,
        rec.files,
        human_bytes(rec.bytes),
        rec.new_files,
        human_bytes(rec.new_bytes),
        linked,
    );
    if rec.errors > 0 {
        s.push_str(&format!(", {} unreadable", rec.errors));
    }
    s.push_str(&format!(" in {secs:.1} s"));
    s
}
