//! The main thread of a collect: walks the sources in index order, merges the
//! walk with the previous snapshot's index, makes folders, symlinks and fifos
//! itself, and hands files to the workers in chunks.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Sender;
use rustix::fs::{FileType, Mode, OFlags, Stat, mkdirat, mknodat, openat, readlinkat, symlinkat};

use snap_shared::error::{Error, Result};
use snap_shared::index::{Entry, EntryType};
use snap_shared::xattrs;

use crate::items::{Chunk, Counts, FileJob, GroupJob, Item};
use crate::meta::{apply_at, ctime_ns, mtime_ns, perm_bits};
use crate::prev::Previous;
use crate::walk::{Event, Found, Walker};
use crate::work::Ctx;

/// A chunk is handed out at this many items, or this many bytes to copy.
const CHUNK_ITEMS: usize = 128;
const CHUNK_BYTES: u64 = 32 << 20;

/// A folder of the new snapshot still being filled, with its twin in the
/// previous snapshot (if it has one): unchanged files are linked from twin to folder.
struct OpenDir {
    rel: Vec<u8>,
    stat: Stat,
    new: Arc<OwnedFd>,
    prev: Option<Arc<OwnedFd>>,
}

pub struct Decider<'a> {
    ctx: &'a Ctx<'a>,
    /// Previous entries with an mtime at or after this (ns) are not trusted.
    racy_from: i64,
    root_new: Arc<OwnedFd>,
    root_prev: Option<Arc<OwnedFd>>,
    prev: Option<Previous>,
    open_dirs: Vec<OpenDir>,
    /// In-source hard-link groups seen: names still to come.
    groups: HashMap<(u64, u64), u64>,
    chunk: Chunk,
    chunk_bytes: u64,
    out: Sender<Chunk>,
    /// Owner and group names, looked up once per id.
    names: snap_shared::owners::Names,
}

/// Opens a folder of the new snapshot, never through a symlink.
pub fn open_dir(
    parent: impl std::os::fd::AsFd,
    name: impl rustix::path::Arg,
) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    openat(parent, name, flags, Mode::empty()).map_err(io::Error::from)
}

/// Opens a folder of the previous snapshot only to link from it: `O_PATH`
/// needs no read permission, so a folder kept with mode 0311 still works.
pub fn open_dir_path(
    parent: impl std::os::fd::AsFd,
    name: impl rustix::path::Arg,
) -> io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    openat(parent, name, flags, Mode::empty()).map_err(io::Error::from)
}

fn base_entry(f: &Found, kind: EntryType) -> Entry {
    let st = &f.stat;
    Entry {
        size: if kind == EntryType::Dir {
            0
        } else {
            st.st_size as u64
        },
        mode: perm_bits(st),
        mtime: mtime_ns(st),
        uid: st.st_uid,
        gid: st.st_gid,
        ctime: Some(ctime_ns(st)),
        ..Entry::new(f.rel.clone(), kind)
    }
}

/// From when on a previous snapshot's mtimes prove nothing (ns since the epoch).
///
/// File times come from the kernel's coarse clock: a write in the same tick as
/// the one before it, landing after the previous run read the file, leaves
/// size and mtime as recorded (git's "racy clean" problem). An entry whose
/// mtime is not clearly older than the start of the run that recorded it is
/// therefore copied again; one second of margin covers the tick and coarse
/// filesystem clocks. It costs a re-copy of files changed just before a run.
pub fn racy_from(prev_created: chrono::DateTime<chrono::Utc>) -> i64 {
    prev_created
        .timestamp_nanos_opt()
        .unwrap_or(i64::MAX)
        .saturating_sub(1_000_000_000)
}

/// True when the previous entry describes the same file by its metadata.
fn same_metadata(prev: &Entry, e: &Entry) -> bool {
    matches!(prev.kind, EntryType::File | EntryType::Hardlink)
        && prev.size == e.size
        && prev.mtime == e.mtime
        && prev.mode == e.mode
        && prev.uid == e.uid
        && prev.gid == e.gid
        && prev.xattrs == e.xattrs
        && prev.sha256.is_some()
}

impl<'a> Decider<'a> {
    /// `racy_from`: see [`racy_from`].
    pub fn new(
        ctx: &'a Ctx<'a>,
        racy_from: i64,
        root_new: Arc<OwnedFd>,
        root_prev: Option<Arc<OwnedFd>>,
        prev: Option<Previous>,
        out: Sender<Chunk>,
    ) -> Self {
        Decider {
            ctx,
            racy_from,
            root_new,
            root_prev,
            prev,
            open_dirs: Vec::new(),
            groups: HashMap::new(),
            chunk: Chunk {
                seq: 0,
                items: Vec::new(),
                counts: Counts::default(),
            },
            chunk_bytes: 0,
            out,
            names: Default::default(),
        }
    }

    /// The entry of what the walk found, with its extended attributes (a
    /// change of them alone is a change, like a chmod) and its owner's and
    /// group's names. Attributes that cannot be read are an error of the
    /// run, named, as an unreadable file is.
    fn entry_of(&mut self, f: &Found, kind: EntryType) -> Entry {
        let mut e = base_entry(f, kind);
        e.user = self.names.user(e.uid);
        e.group = self.names.group(e.gid);
        // Setting or removing an attribute moves the inode's change time: a
        // previous entry with the same one (recorded clearly before its run
        // started, as for mtimes) has this entry's attributes, and a
        // no-change run reads none.
        let racy_from = self.racy_from;
        let known = self
            .prev
            .as_mut()
            .and_then(|p| p.find(&f.rel))
            .filter(|p| p.kind == kind && p.ctime == e.ctime)
            .filter(|p| p.ctime.is_some_and(|c| c < racy_from))
            .map(|p| p.xattrs.clone());
        if let Some(known) = known {
            e.xattrs = known;
            return e;
        }
        match xattrs::read(&xattrs::at(&*f.parent, f.name())) {
            Ok((found, odd)) => {
                e.xattrs = found;
                for name in odd {
                    self.chunk.counts.errors += 1;
                    self.ctx.report.error(&format!(
                        "{}: extended attribute {:?} not kept: its name is not UTF-8",
                        f.abs.display(),
                        String::from_utf8_lossy(&name)
                    ));
                }
            }
            Err(err) => {
                self.chunk.counts.errors += 1;
                self.ctx.report.error(&format!(
                    "{}: its extended attributes cannot be read: {err}",
                    f.abs.display()
                ));
            }
        }
        e
    }

    /// Walks everything and hands it on; returns how many chunks were sent.
    pub fn run(mut self, walker: Walker) -> Result<u64> {
        for event in walker {
            match event {
                Event::Entry(found) => self.handle(found)?,
                problem => self.ctx.report_walk(problem, &mut self.chunk.counts),
            }
        }
        self.close_dirs_not_above(None);
        self.flush(true)?;
        Ok(self.chunk.seq)
    }

    fn push(&mut self, item: Item, bytes: u64) -> Result<()> {
        self.chunk.items.push(item);
        self.chunk_bytes += bytes;
        self.flush(false)
    }

    /// Hands the current chunk to the workers when it is full, or when `force`d
    /// (the last one, sent even when empty: its counts may hold walk errors).
    fn flush(&mut self, force: bool) -> Result<()> {
        let full = self.chunk.items.len() >= CHUNK_ITEMS || self.chunk_bytes >= CHUNK_BYTES;
        if !(full || force) {
            return Ok(());
        }
        let next = Chunk {
            seq: self.chunk.seq + 1,
            items: Vec::with_capacity(CHUNK_ITEMS),
            counts: Counts::default(),
        };
        let chunk = std::mem::replace(&mut self.chunk, next);
        self.chunk_bytes = 0;
        self.out
            .send(chunk)
            .map_err(|_| Error::internal("collect", "the workers stopped"))
    }

    /// The new folder an entry goes in, and its previous twin.
    fn parents(&self) -> (&Arc<OwnedFd>, Option<&Arc<OwnedFd>>) {
        match self.open_dirs.last() {
            Some(d) => (&d.new, d.prev.as_ref()),
            None => (&self.root_new, self.root_prev.as_ref()),
        }
    }

    /// Queues metadata for the folders the walk has left, deepest first.
    fn close_dirs_not_above(&mut self, rel: Option<&[u8]>) {
        while let Some(dir) = self.open_dirs.last() {
            let inside = rel.is_some_and(|r| {
                r.len() > dir.rel.len() && r.starts_with(&dir.rel) && r[dir.rel.len()] == b'/'
            });
            if inside {
                break;
            }
            let dir = self.open_dirs.pop().expect("checked non-empty");
            self.chunk.items.push(Item::CloseDir {
                rel: dir.rel,
                stat: dir.stat,
                fd: dir.new,
            });
        }
    }

    fn handle(&mut self, found: Found) -> Result<()> {
        self.close_dirs_not_above(Some(&found.rel));
        match found.file_type() {
            FileType::Directory => self.make_dir(found),
            FileType::RegularFile => self.file(found),
            FileType::Symlink => self.make_symlink(&found),
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                self.make_special(&found)
            }
            _ => {
                self.ctx.report.warn(&format!(
                    "{}: sockets are not backed up",
                    found.abs.display()
                ));
                Ok(())
            }
        }
    }

    fn make_dir(&mut self, f: Found) -> Result<()> {
        let name = f.name();
        let (parent, prev_parent) = self.parents();
        let parent = parent.clone();
        mkdirat(&*parent, name, Mode::from_raw_mode(0o700))
            .map_err(|e| self.ctx.store_err(&f.rel, e.into()))?;
        let new = open_dir(&*parent, name).map_err(|e| self.ctx.store_err(&f.rel, e))?;
        let prev = prev_parent.and_then(|p| open_dir_path(&**p, name).ok());
        self.chunk.counts.dirs += 1;
        let entry = self.entry_of(&f, EntryType::Dir);
        // At once: a default ACL is inherited by what is made inside.
        self.ctx
            .keep_xattrs(&*parent, &f.rel, &entry.xattrs, &mut self.chunk.counts);
        self.open_dirs.push(OpenDir {
            rel: f.rel,
            stat: f.stat,
            new: Arc::new(new),
            prev: prev.map(Arc::new),
        });
        self.push(Item::Done(entry), 0)
    }

    fn make_symlink(&mut self, f: &Found) -> Result<()> {
        let target = match readlinkat(&*f.parent, f.name(), Vec::new()) {
            Ok(t) => t.into_bytes(),
            Err(e) => {
                self.ctx
                    .unreadable(&f.abs, e.into(), &mut self.chunk.counts);
                return Ok(());
            }
        };
        let (parent, _) = self.parents();
        symlinkat(OsStr::from_bytes(&target), &**parent, f.name())
            .map_err(io::Error::from)
            .and_then(|()| apply_at(&**parent, f.name(), &f.stat, self.ctx.as_root, true))
            .map_err(|e| self.ctx.store_err(&f.rel, e))?;
        let mut entry = self.entry_of(f, EntryType::Symlink);
        entry.target = Some(target);
        let (parent, _) = self.parents();
        let parent = parent.clone();
        self.ctx
            .keep_xattrs(&*parent, &f.rel, &entry.xattrs, &mut self.chunk.counts);
        self.push(Item::Done(entry), 0)
    }

    fn make_special(&mut self, f: &Found) -> Result<()> {
        let ft = f.file_type();
        let (kind, dev) = match ft {
            FileType::Fifo => (EntryType::Fifo, 0),
            FileType::CharacterDevice => (EntryType::Char, f.stat.st_rdev),
            _ => (EntryType::Block, f.stat.st_rdev),
        };
        if kind != EntryType::Fifo && !self.ctx.as_root {
            self.chunk.counts.errors += 1;
            self.ctx.report.error(&format!(
                "{}: device files can only be collected as root",
                f.abs.display()
            ));
            return Ok(());
        }
        let (parent, _) = self.parents();
        let parent = parent.clone();
        mknodat(&*parent, f.name(), ft, Mode::from_raw_mode(0o600), dev)
            .map_err(io::Error::from)
            .and_then(|()| apply_at(&*parent, f.name(), &f.stat, self.ctx.as_root, false))
            .map_err(|e| self.ctx.store_err(&f.rel, e))?;
        let mut entry = self.entry_of(f, kind);
        entry.rdev = (kind != EntryType::Fifo).then_some(dev);
        self.ctx
            .keep_xattrs(&*parent, &f.rel, &entry.xattrs, &mut self.chunk.counts);
        entry.size = 0;
        self.push(Item::Done(entry), 0)
    }

    /// A regular file: a job for the workers, or for the committer when it is a
    /// further name of a hard-link group inside the source.
    fn file(&mut self, f: Found) -> Result<()> {
        let entry = self.entry_of(&f, EntryType::File);
        let key = (f.stat.st_dev, f.stat.st_ino);
        let mut first_of_group = false;
        if f.stat.st_nlink > 1 {
            match self.groups.get_mut(&key) {
                Some(remaining) => {
                    *remaining -= 1;
                    if *remaining == 0 {
                        self.groups.remove(&key);
                    }
                    let job = self.job(f, entry, None, None);
                    return self.push(Item::GroupLink(Box::new(GroupJob { job, key })), 0);
                }
                None => {
                    self.groups.insert(key, f.stat.st_nlink - 1);
                    first_of_group = true;
                }
            }
        }
        let (prev_sha, prev_blocks) = match self.prev.as_mut() {
            Some(prev) => {
                let racy_from = self.racy_from;
                // A changed big file's old digests serve its clone (work.rs).
                let found = prev.find(&f.rel).map(|old| {
                    let same = same_metadata(old, &entry) && old.mtime < racy_from;
                    (same.then_some(old.sha256).flatten(), old.blocks.clone())
                });
                if let Some(e) = prev.take_failure() {
                    self.ctx
                        .report
                        .warn(&format!("{e}; files from here on are copied, not linked"));
                }
                found.unwrap_or((None, None))
            }
            None => (None, None),
        };
        let bytes = if prev_sha.is_some() { 0 } else { entry.size };
        let mut job = self.job(f, entry, prev_sha, first_of_group.then_some(key));
        job.prev_blocks = prev_blocks;
        self.push(Item::File(Box::new(job)), bytes)
    }

    fn job(
        &self,
        f: Found,
        entry: Entry,
        prev_sha: Option<snap_shared::hash::Sha256Digest>,
        group: Option<(u64, u64)>,
    ) -> FileJob {
        let (parent, prev_parent) = self.parents();
        FileJob {
            entry,
            abs: PathBuf::from(&f.abs),
            stat: f.stat,
            src_parent: f.parent,
            dst_parent: parent.clone(),
            prev_parent: prev_parent.cloned(),
            prev_sha,
            prev_blocks: None,
            group,
        }
    }
}
