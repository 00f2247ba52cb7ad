//! Packs one snapshot into an archive and its sidecars, published atomically.
//!
//! Everything is written under `.NAME.part` temporary names in the archive's
//! folder, fsynced, then renamed to its final name with the `.json` record
//! last: an archive exists when its record does. A folder lock (`.lock`,
//! flock) keeps two packs out of one folder, so the holder may delete any
//! `.part` file it finds (a kill -9 leftover) and any final names without a
//! record (a publication cut short); a rerun then redoes the archive.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use rustix::fs::OFlags;
use serde_json::json;

use snap_cli::{Reporter, Tally};
use snap_shared::archive::{self, ArchiveFiles};
use snap_shared::error::{Error, Exit, Result, is_disk_full};
use snap_shared::fsutil::{create_private_dir, free_space};
use snap_shared::hash::Sha256Digest;
use snap_shared::index::{
    BIG_FILE, BLOCK, BlockHasher, Blocks, Entry, EntryType, IndexReader, IndexWriter,
};
use snap_shared::lock::StoreLock;

use crate::checked::{Checked, Stamp};
use snap_shared::record::{ArchiveRecord, Extra, Record, SCHEMA, SnapshotRecord};
use snap_shared::size::{Floor, human_bytes};

use crate::base::{self, Changes};
use crate::check::Checker;
use crate::cli::TOOL;
use crate::delta;
use crate::sink::{Encoding, IndexSink, Sink, Written};
use snap_shared::tarw::TarWriter;

/// How to pack.
pub struct Options<'a> {
    /// Root of the archive folders (`<root>/<set>/`); `None`: the snapshot's store's `archives/`.
    pub out_root: Option<PathBuf>,
    pub encoding: Encoding<'a>,
    pub incremental: bool,
    /// Longest chain of archives an incremental one may end (0: no bound).
    pub full_every: u64,
    pub floor: Floor,
    /// Signs each record into `ID.json.sig` (the config's `signing.key`).
    pub signer: Option<&'a snap_shared::sign::Signer>,
}

/// A packed (or already packed) archive.
pub struct Packed {
    pub record: ArchiveRecord,
    /// True when the archive was there already and nothing was written.
    pub existed: bool,
}

/// The folder the archives of a snapshot's set go to.
pub fn archive_dir(snap: &SnapshotRecord, out_root: Option<&Path>) -> PathBuf {
    match out_root {
        Some(root) => root.join(&snap.set),
        None => snap_shared::store::Store::new(&snap.store).archive_dir(&snap.set),
    }
}

/// Packs `snap`, or returns its archive when one is already in the folder.
pub fn pack(snap: &SnapshotRecord, opts: &Options, report: &Reporter) -> Result<Packed> {
    let dir = archive_dir(snap, opts.out_root.as_deref());
    create_private_dir(&dir).map_err(|e| Error::io(&dir, e).with_exit(Exit::CantCreate))?;
    let _lock = StoreLock::acquire(&dir.join(".lock"), TOOL)?;
    let files = ArchiveFiles::new(&dir, &snap.id);
    if files.record().exists() {
        let record = archive::read_record(&files.record())?;
        return Ok(Packed {
            record,
            existed: true,
        });
    }
    clean_unfinished(&dir, &files)?;
    let base = match opts.incremental {
        false => None,
        true => match base::choose(&dir, snap, opts.full_every)? {
            Ok(b) => Some(b),
            Err(why) => {
                report.note(&format!("{}/{}: full archive: {why}", snap.set, snap.id));
                None
            }
        },
    };
    check_space(&dir, snap, opts.floor, base.is_some(), report)?;
    let mut job = Job {
        snap,
        opts,
        files,
        temps: Vec::new(),
        report,
    };
    let result = job.run(base.as_ref());
    if result.is_err() {
        for t in &job.temps {
            let _ = fs::remove_file(t);
        }
    }
    result.map(|record| Packed {
        record,
        existed: false,
    })
}

/// Removes `.part` leftovers and the final names of an archive without a record.
fn clean_unfinished(dir: &Path, files: &ArchiveFiles) -> Result<()> {
    for name in snap_shared::store::read_names(dir)? {
        if name.starts_with('.') && name.ends_with(".part") {
            remove_if_there(&dir.join(name))?;
        }
    }
    for path in files.every_name() {
        remove_if_there(&path)?;
    }
    Ok(())
}

fn remove_if_there(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Refuses to start below the free-space floor; warns when the archive may not fit.
fn check_space(
    dir: &Path,
    snap: &SnapshotRecord,
    floor: Floor,
    incremental: bool,
    report: &Reporter,
) -> Result<()> {
    let (free, total) = free_space(dir).map_err(|e| Error::io(dir, e))?;
    let floor_bytes = floor.bytes(total);
    if free < floor_bytes {
        return Err(Error::new(
            Exit::CantCreate,
            format!("archive folder {}", dir.display()),
            format!(
                "{} free, below the floor of {}",
                human_bytes(free),
                human_bytes(floor_bytes)
            ),
        )
        .with_hint("free space, prune old archives (snap-prune), or set --min-free"));
    }
    // Uncompressed size is the worst case; what changed is the incremental's.
    let worst = if incremental {
        snap.new_bytes
    } else {
        snap.bytes
    };
    if free.saturating_sub(worst) < floor_bytes {
        report.warn(&format!(
            "archive folder {}: {} free and {} to pack uncompressed; it may not fit above the floor of {}",
            dir.display(),
            human_bytes(free),
            human_bytes(worst),
            human_bytes(floor_bytes)
        ));
    }
    Ok(())
}

/// Counts kept while the tar stream is written.
#[derive(Default)]
struct Counts {
    packed_files: u64,
    packed_bytes: u64,
}

/// Where `write_tar` writes: the archive and the archive's index, with their temporary names.
struct Outputs<'a> {
    sink: Sink,
    tmp: &'a Path,
    index: IndexWriter<IndexSink>,
    index_tmp: &'a Path,
}

struct Job<'a> {
    snap: &'a SnapshotRecord,
    opts: &'a Options<'a>,
    files: ArchiveFiles,
    /// Temporary files made so far, removed if the job fails.
    temps: Vec<PathBuf>,
    report: &'a Reporter,
}

/// An I/O error while writing `path`: a full disk is exit 74 with its own hint.
fn write_error(path: &Path, e: io::Error) -> Error {
    let full = is_disk_full(&e);
    let err = Error::io(path, e).with_exit(Exit::Io);
    match full {
        true => err.with_hint("the disk filled up; the unfinished archive was removed and earlier archives are intact"),
        false => err,
    }
}

impl Job<'_> {
    fn create_temp(&mut self, final_path: &Path) -> Result<(PathBuf, File)> {
        let tmp = archive::part_name(final_path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e).with_exit(Exit::CantCreate))?;
        self.temps.push(tmp.clone());
        Ok((tmp, file))
    }

    fn run(&mut self, base: Option<&base::Base>) -> Result<ArchiveRecord> {
        let started = Instant::now();
        let enc = &self.opts.encoding;
        let encrypted = enc.encrypt.is_some();
        let data_path = self.files.data(enc.compression, encrypted);
        let (data_tmp, file) = self.create_temp(&data_path)?;
        let sink = Sink::new(file, enc).map_err(|e| write_error(&data_tmp, e))?;
        let index_path = self.files.index(encrypted);
        let (index_tmp, index_file) = self.create_temp(&index_path)?;
        let index = IndexSink::new(index_file, enc.encrypt)
            .and_then(IndexWriter::new)
            .map_err(|e| write_error(&index_tmp, e))?;
        let mut changes = base.map(|b| Changes::open(&b.index)).transpose()?;
        let out = Outputs {
            sink,
            tmp: &data_tmp,
            index,
            index_tmp: &index_tmp,
        };
        let (written, counts, tar_bytes, index_sha) = self.write_tar(out, changes.as_mut())?;
        written
            .file
            .sync_all()
            .map_err(|e| write_error(&data_tmp, e))?;
        let sums = archive::sums_text(&[(written.sha256, &data_path), (index_sha, &index_path)]);
        let sums_path = self.files.sums();
        let sums_tmp = self.write_small(&sums_path, sums.as_bytes())?;

        let mut extra = Extra::new();
        extra.insert("host".into(), json!(self.snap.host));
        // What a restore needs to carry a home folder to another machine.
        extra.insert("sources".into(), json!(self.snap.sources));
        if let Some(home) = self.snap.extra.get("home") {
            extra.insert("home".into(), home.clone());
        }
        extra.insert(
            "created_by".into(),
            snap_shared::created_by("snap-pack", env!("CARGO_PKG_VERSION")),
        );
        extra.insert("created".into(), json!(self.snap.created));
        extra.insert("packed".into(), json!(Utc::now()));
        extra.insert("files".into(), json!(self.snap.files));
        extra.insert("snapshot_bytes".into(), json!(self.snap.bytes));
        extra.insert("packed_files".into(), json!(counts.packed_files));
        extra.insert("packed_bytes".into(), json!(counts.packed_bytes));
        extra.insert("tar_bytes".into(), json!(tar_bytes));
        extra.insert("level".into(), json!(enc.level));
        extra.insert("chain".into(), json!(base.map_or(1, |b| b.chain + 1)));
        extra.insert("index_sha256".into(), json!(index_sha.to_hex()));
        if !written.frames.is_empty() {
            // Seekable: independent zstd frames and a seek table at the end.
            extra.insert("frames".into(), json!(written.frames.len()));
        }
        // Tags travel with the archive so `snap-prune --keep-tag` works at a destination.
        if !self.snap.tags.is_empty() {
            extra.insert("tags".into(), json!(self.snap.tags));
        }
        extra.insert(
            "duration_s".into(),
            json!((started.elapsed().as_secs_f64() * 100.0).round() / 100.0),
        );
        let record = ArchiveRecord {
            schema: SCHEMA.into(),
            set: self.snap.set.clone(),
            id: self.snap.id.clone(),
            source: self.snap.id.clone(),
            path: data_path.display().to_string(),
            bytes: written.bytes,
            sha256: written.sha256.to_hex(),
            compression: enc.compression.name().into(),
            encryption: encrypted.then(|| "age".to_string()),
            base: base.map(|b| b.record.id.clone()),
            index: index_path.display().to_string(),
            extra,
        };
        let mut json = serde_json::to_string(&Record::Archive(record.clone()))
            .map_err(|e| Error::internal("record", e))?;
        json.push('\n');
        let record_path = self.files.record();
        let record_tmp = self.write_small(&record_path, json.as_bytes())?;
        // The signature goes before the record: a record is never there unsigned.
        let sig_path = self.files.sig();
        let sig_tmp = match self.opts.signer {
            Some(signer) => {
                Some(self.write_small(&sig_path, signer.sign(json.as_bytes())?.as_bytes())?)
            }
            None => None,
        };
        let mut files = vec![
            (data_tmp.as_path(), data_path.as_path()),
            (index_tmp.as_path(), index_path.as_path()),
            (sums_tmp.as_path(), sums_path.as_path()),
        ];
        if let Some(tmp) = &sig_tmp {
            files.push((tmp.as_path(), sig_path.as_path()));
        }
        files.push((record_tmp.as_path(), record_path.as_path()));
        archive::publish(&self.files.dir, &files)?;
        self.temps.clear();
        // Its data was hashed as it was written: the next incremental on it
        // need not read it again (see the checked module).
        if let Some(stamp) = Stamp::of(&data_path, &record.sha256) {
            let mut checked = Checked::open(&self.files.dir);
            checked.note(&record.id, stamp);
            checked.save();
        }
        Ok(record)
    }

    /// Writes the tar stream of the snapshot, and the archive's index: the
    /// snapshot's entries, each carried one with where its header starts in
    /// the tar stream. Returns the archive written, the counts, the tar size
    /// and the index's digest.
    fn write_tar(
        &mut self,
        out: Outputs,
        mut changes: Option<&mut Changes>,
    ) -> Result<(Written, Counts, u64, Sha256Digest)> {
        let Outputs {
            sink,
            tmp,
            mut index,
            index_tmp,
        } = out;
        let tree = PathBuf::from(&self.snap.path);
        let root: OwnedFd = snap_shared::fsutil::open_root(&tree)
            .map_err(|e| Error::io(&tree, e).with_exit(Exit::NoInput))?;
        let mut entries = IndexReader::open(Path::new(&self.snap.index))?;
        let mut tar = TarWriter::new(sink);
        let mut counts = Counts::default();
        let mut check = Checker::start();
        let incremental = changes.is_some();
        // The record's `files` counts every entry but folders. Of an
        // incremental archive only the changed files are known as the walk
        // meets them: its share done is of the snapshot's entries seen.
        let mut seen = 0u64;
        while let Some(mut entry) = entries.next_entry()? {
            seen += u64::from(entry.kind != EntryType::Dir);
            let carry = match entry.kind {
                EntryType::File => match changes.as_deref_mut() {
                    Some(c) => c.is_changed(&entry)?,
                    None => true,
                },
                // Hard links need their first name in the same tar; a restore of a
                // chain makes them from the index.
                EntryType::Hardlink => !incremental,
                _ => true,
            };
            entry.tar_offset = carry.then(|| tar.written());
            if !carry {
                if entry.kind == EntryType::File && entry.size >= BIG_FILE && entry.blocks.is_none()
                {
                    entry.blocks = changes.as_deref_mut().and_then(Changes::unchanged_blocks);
                }
                index
                    .push(&entry)
                    .map_err(|e| e.within(index_tmp.display().to_string()))?;
                continue;
            }
            // A big file whose base recorded its blocks: only the changed ones.
            let base_blocks = match entry.kind == EntryType::File && entry.size >= BIG_FILE {
                true => changes
                    .as_deref_mut()
                    .and_then(|c| c.changed_blocks(&entry.path)),
                false => None,
            };
            if let Some(base) = base_blocks.filter(|b| b.size == BLOCK) {
                entry.tar_offset = None;
                let d = self.pack_delta(&root, &tree, &entry, &base, &mut tar, tmp)?;
                entry.blocks = Some(d.blocks);
                entry.delta = Some(d.runs);
                counts.packed_files += 1;
                counts.packed_bytes += d.carried;
                self.report.detail(|| {
                    format!(
                        "packed {} ({} changed bytes)",
                        entry.display_path(),
                        d.carried
                    )
                });
                index
                    .push(&entry)
                    .map_err(|e| e.within(index_tmp.display().to_string()))?;
                continue;
            }
            tar.header(&entry).map_err(|e| write_error(tmp, e))?;
            if entry.kind == EntryType::File {
                entry.blocks = self.copy_file(&root, &tree, &entry, &mut tar, &mut check, tmp)?;
                if check.failed() {
                    break;
                }
                counts.packed_files += 1;
                counts.packed_bytes += entry.size;
                let (snap, b) = (self.snap, counts.packed_bytes);
                self.report.tally(|| match incremental {
                    false => {
                        Tally::files(&snap.set, (seen, Some(snap.files)), (b, Some(snap.bytes)))
                    }
                    true => Tally {
                        items: Some((seen, Some(snap.files), "files seen")),
                        ..Tally::bytes(&snap.set, b, None)
                    },
                });
                self.report
                    .detail(|| format!("packed {}", entry.display_path()));
            }
            // After the copy: a big file's entry holds its block digests.
            index
                .push(&entry)
                .map_err(|e| e.within(index_tmp.display().to_string()))?;
        }
        // Bit rot in the store stops here: an archive never carries bytes
        // that differ from what the snapshot recorded.
        if let Some(m) = check.finish() {
            return Err(changed_in_store(
                &tree.join(OsStr::from_bytes(&m.path)),
                format!("sha256 {}, the index says {}", m.got, m.want),
            ));
        }
        let tar_bytes = tar.written();
        let sink = tar.finish().map_err(|e| write_error(tmp, e))?;
        let written = sink.finish().map_err(|e| write_error(tmp, e))?;
        let index_fail = |e| write_error(index_tmp, e);
        let (file, index_sha) = index
            .finish()
            .and_then(IndexSink::finish)
            .map_err(index_fail)?;
        file.sync_all().map_err(index_fail)?;
        Ok((written, counts, tar_bytes + 1024, index_sha))
    }

    /// Writes the changed blocks of a big file of the snapshot tree (delta.rs).
    fn pack_delta(
        &self,
        root: &OwnedFd,
        tree: &Path,
        entry: &Entry,
        base: &Blocks,
        tar: &mut TarWriter<Sink>,
        tmp: &Path,
    ) -> Result<delta::Delta> {
        let shown = || tree.join(OsStr::from_bytes(&entry.path));
        let mut file = open_snapshot_file(root, tree, entry)?;
        delta::write(&mut file, entry, base, tar).map_err(|f| match f {
            delta::Fail::Read(e) => Error::io(&shown(), e),
            delta::Fail::Write(e) => write_error(tmp, e),
            delta::Fail::Changed(why) => changed_in_store(&shown(), why),
        })
    }

    /// Copies a file of the snapshot tree into the tar, exactly the size the
    /// index says; its bytes go on to the check (check.rs). A file of
    /// [`BIG_FILE`] or more gets its block digests, hashed as it is read.
    fn copy_file(
        &self,
        root: &OwnedFd,
        tree: &Path,
        entry: &Entry,
        tar: &mut TarWriter<Sink>,
        check: &mut Checker,
        tmp: &Path,
    ) -> Result<Option<Blocks>> {
        let shown = || tree.join(OsStr::from_bytes(&entry.path));
        let mut file = open_snapshot_file(root, tree, entry)?;
        let size = entry.size;
        // Digests the snapshot's index has already (snap-collect's) are not made again.
        let mut blocks = (size >= BIG_FILE && entry.blocks.is_none()).then(BlockHasher::default);
        let mut left = size;
        while left > 0 {
            let n = match file.read(check.space(left)) {
                Ok(0) => return Err(changed_in_store(&shown(), "it ended early".into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&shown(), e)),
            };
            let bytes = check.filled(n);
            if let Some(b) = blocks.as_mut() {
                b.update(bytes);
            }
            tar.data(bytes).map_err(|e| write_error(tmp, e))?;
            left -= n as u64;
        }
        check.end_file(entry.sha256, &entry.path);
        tar.end_data(size).map_err(|e| write_error(tmp, e))?;
        Ok(blocks
            .map(BlockHasher::finish)
            .or_else(|| entry.blocks.clone()))
    }

    fn write_small(&mut self, dest: &Path, bytes: &[u8]) -> Result<PathBuf> {
        let (tmp, mut file) = self.create_temp(dest)?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| write_error(&tmp, e))?;
        Ok(tmp)
    }
}

/// Opens a file of the snapshot tree, never through a symlink, and checks
/// it is the size its index entry says.
fn open_snapshot_file(root: &OwnedFd, tree: &Path, entry: &Entry) -> Result<File> {
    let shown = || tree.join(OsStr::from_bytes(&entry.path));
    let fd = snap_shared::fsutil::open_beneath(root, &entry.path, OFlags::RDONLY | OFlags::CLOEXEC)
        .map_err(|e| Error::io(&shown(), e))?;
    let file = File::from(fd);
    let size = file.metadata().map_err(|e| Error::io(&shown(), e))?.len();
    if size != entry.size {
        return Err(changed_in_store(
            &shown(),
            format!("it has {size} bytes, the index says {}", entry.size),
        ));
    }
    Ok(file)
}

/// A snapshot file that no longer matches its index: bit rot or a hand edit
/// in the store. Nothing is published; `collect --checksum` copies the file
/// afresh from the source (a plain collect would link the damaged copy again).
fn changed_in_store(path: &Path, cause: String) -> Error {
    Error::data(
        format!("snapshot file {}", path.display()),
        format!("changed since the snapshot: {cause}"),
    )
    .with_hint(
        "the store copy is damaged and no archive was made; `snap-restore verify` names every \
         snapshot that shares it, and `snap-collect --checksum` copies it afresh from the source",
    )
}
