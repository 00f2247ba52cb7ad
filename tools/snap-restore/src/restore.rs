//! Getting files back: from a tree snapshot, from an archive or a chain of
//! incremental archives, or from any tar.
//!
//! Snapshots and snap archives restore from their index: it says what each
//! entry is, its metadata to the nanosecond, and each file's sha256, which
//! every restored file is checked against as it is written. A chain is replayed
//! from its full archive: from each archive the files whose content is the
//! final one are taken; then folders, symlinks, hard links and special files
//! are made from the final index, and folders get their metadata last
//! (children change a folder's mtime). Foreign tars restore from their headers.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

use serde_json::json;
use snap_cli::Reporter;
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::index::{Entry, EntryType};
use snap_shared::record::{Extra, OutcomeRecord, SCHEMA};
use snap_shared::size::human_bytes;

use crate::damage::{corrupt, is_damage};
use crate::indexes::{Cursor, IndexLoc, Select, open_index};
use crate::loc::Loc;
use crate::members::{Member, What, archive, finish, members};
use crate::source::Item;
use crate::stream;
use crate::target::{Meta, Outcome, Put, Refused, Target};
use crate::writers::{CHUNKS, Data, Job, SMALL, Writers};

/// Writer threads: two keep both cores busy while this thread decompresses.
const WRITERS: usize = 2;

/// What a restore (or a verify) did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
    /// Entries already there with the right content (a rerun).
    pub already: u64,
    /// Of those, the ones whose attributes (mode, owner, mtime) were set again.
    pub repaired: u64,
    /// Entries not restored: refused, unreadable, or already taken by other content.
    pub errors: u64,
    /// Of those, the ones that mean damaged or hostile data (exit 65).
    pub bad_data: u64,
}

impl Tally {
    pub fn exit(&self) -> Exit {
        if self.bad_data > 0 {
            Exit::Data
        } else if self.errors > 0 {
            Exit::Partial
        } else {
            Exit::Ok
        }
    }
}

pub struct Restorer<'a> {
    pub target: Target,
    pub select: &'a Select,
    pub dec: &'a Decrypt,
    pub report: &'a Reporter,
    pub tally: Tally,
    buf: Vec<u8>,
    /// Writer threads for small files, while an archive is being read.
    writers: Option<Writers>,
    /// Which `--path` prefixes matched something.
    matched: Vec<bool>,
    /// An error of the target that ends the run (a full or gone disk):
    /// every further file would fail the same way.
    fatal: Option<Error>,
    /// Files written so far, named or still staged: what progress shows.
    written: Written,
    /// The same counts for someone watching from another thread (`serve`).
    pub watch: Option<std::sync::Arc<Watch>>,
    /// What the progress line names, and the bytes it expects (known for a
    /// whole snapshot or archive, not for some --path of one).
    pub label: String,
    pub total: Option<u64>,
    /// Files named as not restored, so none is named twice.
    failed: std::collections::HashSet<Vec<u8>>,
    /// Owners by name, or by number (`--numeric-owner`).
    pub owners: crate::owners::Owners,
}

/// Files and bytes written so far, readable from another thread while a restore runs.
#[derive(Debug, Default)]
pub struct Watch {
    pub files: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
}

/// Files and bytes written so far, for the progress line.
#[derive(Default)]
struct Written {
    files: u64,
    bytes: u64,
}

impl Written {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// Whether a write error at the target means no further file can be
/// written: a full disk or quota, a read-only or failing one.
fn ends_the_run(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    let code = e.raw_os_error();
    snap_shared::error::is_disk_full(e)
        || code == Some(Errno::ROFS.raw_os_error())
        || code == Some(Errno::IO.raw_os_error())
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

impl<'a> Restorer<'a> {
    pub fn new(
        target: Target,
        select: &'a Select,
        dec: &'a Decrypt,
        report: &'a Reporter,
    ) -> Restorer<'a> {
        Restorer {
            target,
            select,
            dec,
            report,
            tally: Tally::default(),
            buf: vec![0; 1 << 20],
            writers: None,
            matched: vec![false; select.count()],
            fatal: None,
            written: Written::default(),
            watch: None,
            label: String::new(),
            total: None,
            failed: Default::default(),
            owners: crate::owners::Owners::new(false),
        }
    }

    /// The metadata an index entry gives: ids by the owner's names here,
    /// exactly its attributes.
    fn meta_of(&mut self, e: &Entry) -> Meta {
        let attrs = crate::attrs::Attrs::Exactly(std::sync::Arc::new(e.xattrs.clone()));
        self.meta_with(e, attrs)
    }

    /// An entry's metadata with the attributes given.
    fn meta_with(&mut self, e: &Entry, attrs: crate::attrs::Attrs) -> Meta {
        let (uid, gid) = self
            .owners
            .ids(e.uid, e.gid, e.user.as_deref(), e.group.as_deref());
        Meta {
            mode: e.mode,
            uid,
            gid,
            mtime_ns: e.mtime as i128,
            attrs,
        }
    }

    /// Ends the run when the target can take no more (once, for the first such error).
    fn stop_if_fatal(&mut self) -> Result<()> {
        match self.fatal.take() {
            Some(e) => {
                if let Some(w) = self.writers.take() {
                    w.finish();
                }
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Counts a file the target refused to stage, then whatever its last flush settled.
    fn count_staging(&mut self, path: &[u8], staged: std::result::Result<(), Refused>, bytes: u64) {
        match staged {
            Ok(()) => self.written.add(bytes),
            Err(refused) => self.refused(path, refused),
        }
        self.count_settled();
    }

    /// Counts the files the target has named (or failed to) since the last call.
    fn count_settled(&mut self) {
        for s in self.target.settled() {
            self.count(&s.path, s.result, s.bytes);
        }
    }

    /// Names every staged file now (each made durable first), and counts them.
    pub fn settle(&mut self) {
        self.target.flush();
        self.count_settled();
    }

    /// Counts an entry's outcome, naming refused ones on stderr.
    fn count(&mut self, path: &[u8], result: std::result::Result<Outcome, Refused>, bytes: u64) {
        match result {
            Ok(Outcome::Written) => {
                self.tally.files += 1;
                self.tally.bytes += bytes;
                self.report.detail(|| format!("restored {}", show(path)));
            }
            Ok(Outcome::AlreadyThere) => {
                self.tally.files += 1;
                self.tally.already += 1;
            }
            Ok(Outcome::Repaired) => {
                self.tally.files += 1;
                self.tally.already += 1;
                self.tally.repaired += 1;
                self.report.note(&format!(
                    "{}: the content was right; mode, owner and mtime set again",
                    show(path)
                ));
            }
            Err(refused) => self.refused(path, refused),
        }
    }

    fn refused(&mut self, path: &[u8], refused: Refused) {
        self.tally.errors += 1;
        self.failed.insert(path.to_vec());
        if let Refused::Io(e) = &refused
            && ends_the_run(e)
        {
            if self.fatal.is_none() {
                let at = self.target.path.join(OsStr::from_bytes(path));
                let cause = snap_shared::error::io_cause(e);
                self.fatal = Some(Error::new(Exit::Io, at.display().to_string(), cause).with_hint(
                    "make room at the target (or mount it again), then run the same restore: files already restored are kept",
                ));
            }
            return;
        }
        let why = match refused {
            Refused::Exists if self.target.overwrites() => {
                "something is there that --overwrite does not replace (a folder where a file belongs?)".to_string()
            }
            Refused::Exists => {
                "already exists with other content (give --overwrite to replace it)".to_string()
            }
            Refused::Mismatch { got } => {
                self.tally.bad_data += 1;
                format!(
                    "content does not match its sha256 (got {got}); kept as {}.snap-damaged",
                    show(path)
                )
            }
            Refused::Escape(why) => {
                self.tally.bad_data += 1;
                format!("refused: {why}")
            }
            Refused::Cannot(why) => {
                self.tally.bad_data += 1;
                format!("not restored: it {why}")
            }
            Refused::Source(e) if is_damage(&e) => {
                self.tally.bad_data += 1;
                snap_shared::error::io_cause(&e)
            }
            Refused::Source(e) | Refused::Io(e) => snap_shared::error::io_cause(&e),
            Refused::Attribute(why) => why,
        };
        self.report.error(&format!("{}: {why}", show(path)));
    }

    /// Restores a snapshot or a snap archive (with its chain) from its index.
    pub fn from_index(&mut self, item: &Item, chain: &[Item]) -> Result<()> {
        let index = item.index().expect("snapshots and archives have an index");
        if let Item::Archive { .. } = item {
            for link in chain {
                self.contents_of(link, &index)?;
            }
        }
        let tree = match item {
            Item::Snapshot { .. } => Some(open_tree(item.data().path().expect("trees are local"))?),
            _ => None,
        };
        // Files the content passes wrote, found there, or reported.
        let handled = self.tally.files + self.tally.errors;
        let mut expected = 0u64;
        let mut dirs = Vec::new();
        let mut reader = open_index(&index, self.dec)?;
        while let Some(e) = reader.next_entry()? {
            self.stop_if_fatal()?;
            let wanted = self.select.wants(&e.path);
            if e.kind == EntryType::Dir && (wanted || self.select.leads_to(&e.path)) {
                let result = self.target.dir(&e.path);
                self.count_settled();
                if let Err(r) = result {
                    self.refused(&e.path, r);
                    continue;
                }
                let meta = self.meta_of(&e);
                dirs.push((e.path.clone(), meta));
            }
            if !wanted {
                // The first name of a chosen hard link's group: its content.
                if let (Some(dest), EntryType::File, Some((fd, path))) =
                    (self.select.content_dest(&e.path), e.kind, &tree)
                {
                    let dest = dest.to_vec();
                    self.file_from_tree(fd, path, &e, &dest);
                }
                continue;
            }
            self.select.mark(&e.path, &mut self.matched);
            match (e.kind, &tree) {
                (EntryType::Dir, _) => {}
                (EntryType::Hardlink, _)
                    if e.link
                        .as_deref()
                        .is_some_and(|l| self.select.link_target(&e.path, l).is_none()) => {}
                (EntryType::File, Some((fd, path))) => self.file_from_tree(fd, path, &e, &e.path),
                (EntryType::File, None) => expected += 1,
                _ => {
                    let meta = self.meta_of(&e);
                    if let Some(r) = self.make_other(&e, &meta) {
                        self.count_settled();
                        self.count(&e.path, r, 0);
                    }
                }
            }
        }
        self.settle();
        self.stop_if_fatal()?;
        // One archive writes each file once, so equal counts mean none is
        // missing; a chain may write one twice, so it is always checked.
        if tree.is_none() && (chain.len() > 1 || expected > handled) {
            self.name_missing(&index)?;
        }
        self.dir_metadata(dirs);
        self.stop_if_fatal()?;
        self.check_selection()
    }

    /// A tar member the archive's index does not list: damage (65), named.
    fn not_in_index(&mut self, data: &Loc, path: &[u8]) {
        self.tally.errors += 1;
        self.tally.bad_data += 1;
        self.report.error(&format!(
            "{}: is in the archive but not in its index ({})",
            String::from_utf8_lossy(path),
            data.show()
        ));
    }

    /// Names each chosen file of the index that is not in the target.
    fn name_missing(&mut self, index: &IndexLoc) -> Result<()> {
        let mut reader = open_index(index, self.dec)?;
        while let Some(e) = reader.next_entry()? {
            if e.kind == EntryType::File
                && self.select.wants(&e.path)
                && !self.failed.contains(&e.path)
                && !self.target.has_file(&e.path)
            {
                self.tally.errors += 1;
                self.tally.bad_data += 1;
                self.report
                    .error(&format!("{}: missing from the archive", e.display_path()));
            }
        }
        Ok(())
    }

    /// Writes, from one archive of a chain, the files whose content there is the final one.
    fn contents_of(&mut self, link: &Item, final_index: &IndexLoc) -> Result<()> {
        let data = link.data();
        let partial = !self.select.is_all();
        // A restore already keeps two cores busy (decoding, and the writers
        // hashing and writing): on two, decoding frames apart only adds a
        // copy (measured 10% slower), so a whole restore takes frames (and
        // opens the seek table, a request or a decryption) with more cores.
        let seekable = match partial || cores() > WRITERS {
            true => crate::seeking::of_item(link, self.dec)?,
            false => None,
        };
        let layout = match seekable {
            Some(s) if partial => return self.members_by_frames(link, s, final_index),
            Some(s) => Some(s.layout),
            None => None,
        };
        let own_index = link.index().expect("archives have an index");
        let mut fin = Cursor::new(open_index(final_index, self.dec)?)?;
        let mut own = match own_index == *final_index {
            true => None,
            false => Some(Cursor::new(open_index(&own_index, self.dec)?)?),
        };
        let opened = stream::open_framed(&data, self.dec, layout)?;
        let mut archive = archive(opened.tar);
        let entries = members(&mut archive).map_err(|e| corrupt(&data, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| corrupt(&data, e))?;
            if entry.what != What::Entry(EntryType::File) {
                continue;
            }
            let path = std::mem::take(&mut entry.path);
            let in_fin = fin.seek(&path, |_| {})?;
            // A member the archive's own index does not list is damage, as
            // in verify: the index is not this archive's, or the tar is not.
            // Its content is the final one when the final index agrees.
            let final_here = match own.as_mut() {
                Some(own) => own
                    .seek(&path, |_| {})?
                    .map(|o| in_fin.as_ref().is_some_and(|f| f.sha256 == o.sha256)),
                None => in_fin.as_ref().map(|_| true),
            };
            let Some(final_here) = final_here else {
                self.not_in_index(&data, &path);
                continue;
            };
            let Some(f) = in_fin.filter(|_| final_here) else {
                continue;
            };
            let Some(dest) = self
                .select
                .content_dest(&path)
                .filter(|_| f.kind == EntryType::File)
            else {
                continue;
            };
            let dest = dest.to_vec();
            self.put_file(&dest, &f, &mut entry, &data, true)?;
            self.stop_if_fatal()?;
        }
        self.drain_writers(true);
        self.stop_if_fatal()
    }

    /// Writes, from a seekable archive of a chain, the chosen files whose
    /// content there is the final one, reading only the frames that hold
    /// them. Two walks of the index (the frames to fetch, then the files)
    /// keep memory to a frame list, whatever `--path` chooses. A damaged
    /// frame fails the files in it, each named; the rest are restored.
    fn members_by_frames(
        &mut self,
        link: &Item,
        archive: crate::seeking::Seekable,
        final_index: &IndexLoc,
    ) -> Result<()> {
        let data = link.data();
        let (select, dec) = (self.select, self.dec);
        let layout = archive.layout.clone();
        let mut frames: Vec<usize> = Vec::new();
        chosen_members(
            select,
            dec,
            link,
            final_index,
            layout.tar_len(),
            |span, _| {
                for i in layout.covering(span) {
                    if frames.last().is_none_or(|&last| i > last) {
                        frames.push(i);
                    }
                }
                Ok(())
            },
        )?;
        let mut stream = archive.frames(frames);
        chosen_members(
            select,
            dec,
            link,
            final_index,
            layout.tar_len(),
            |span, f| {
                stream.skip_to(span.start).map_err(|e| corrupt(&data, e))?;
                let dest = select.content_dest(&f.path).unwrap_or(&f.path).to_vec();
                let put = crate::seeking::with_member(&mut stream, &f.path, |member| {
                    self.put_file(&dest, &f, member, &data, false)
                });
                match put {
                    Ok(done) => done?,
                    Err(e) => self.refused(&f.path, Refused::Source(e)),
                }
                self.stop_if_fatal()
            },
        )?;
        self.drain_writers(true);
        self.stop_if_fatal()
    }

    /// Writes one file of an archive through the writer threads: small ones
    /// whole, large ones as chunks while this thread reads on. A read error
    /// ends the run when `reads_end_run` (a stream cannot go on past it);
    /// otherwise it fails this file only, named.
    fn put_file(
        &mut self,
        path: &[u8],
        f: &Entry,
        entry: &mut dyn Read,
        data: &Loc,
        reads_end_run: bool,
    ) -> Result<()> {
        if self.writers.is_none() {
            let w = Writers::start(&self.target, WRITERS)
                .map_err(|e| Error::io(&self.target.path, e))?;
            self.writers = Some(w);
        }
        let meta = self.meta_of(f);
        let writers = self.writers.as_ref().expect("started above");
        let job = |data| Job {
            path: path.to_vec(),
            meta: meta.clone(),
            sha: f.sha256,
            size: f.size,
            data,
        };
        let read = if f.size <= SMALL {
            let mut bytes = Vec::with_capacity(f.size as usize);
            let read = entry.take(f.size).read_to_end(&mut bytes);
            if read.is_ok() {
                writers.send(job(Data::Bytes(bytes)));
            }
            read.map(|_| ())
        } else {
            let (tx, rx) = crossbeam_channel::bounded(CHUNKS);
            writers.send(job(Data::Chunks(rx)));
            let read = send_chunks(entry, f.size, &tx);
            if let Err(e) = &read {
                // The writer names the file, and keeps none of it.
                let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
            }
            read
        };
        match read {
            Ok(()) => self.written.add(f.size),
            Err(e) if reads_end_run => return Err(corrupt(data, e)),
            Err(e) if f.size <= SMALL => self.refused(path, Refused::Source(e)),
            Err(_) => {}
        }
        self.drain_writers(false);
        self.progress();
        Ok(())
    }

    /// Counts what the writer threads finished; with `all`, waits for every one.
    fn drain_writers(&mut self, all: bool) {
        let done = match (all, &self.writers) {
            (true, Some(_)) => self.writers.take().expect("checked").finish(),
            (false, Some(w)) => w.finished(),
            (_, None) => return,
        };
        for d in done {
            self.count(&d.path, d.result, d.bytes);
        }
    }

    fn progress(&self) {
        let (n, b) = (self.written.files, self.written.bytes);
        if let Some(w) = &self.watch {
            use std::sync::atomic::Ordering::Relaxed;
            w.files.store(n, Relaxed);
            w.bytes.store(b, Relaxed);
        }
        let label = &self.label;
        self.report
            .tally(|| snap_cli::Tally::files(label, (n, None), (b, self.total)));
    }

    /// Writes file `e` of a tree snapshot at `dest` (its own path, or the
    /// chosen hard link that takes its content).
    fn file_from_tree(&mut self, tree: &OwnedFd, tree_path: &Path, e: &Entry, dest: &[u8]) {
        let rel = OsStr::from_bytes(&e.path);
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let src = match snap_shared::fsutil::open_beneath(tree, &e.path, flags) {
            Ok(fd) => fd,
            Err(err) => {
                self.tally.errors += 1;
                self.report.error(&format!(
                    "{}: {}",
                    tree_path.join(rel).display(),
                    snap_shared::error::io_cause(&err)
                ));
                return;
            }
        };
        let mut src = File::from(src);
        let meta = self.meta_of(e);
        let result = self.target.file(
            dest,
            &meta,
            e.size,
            e.sha256.as_ref(),
            &mut src,
            &mut self.buf,
        );
        self.count_staging(dest, result, e.size);
        self.progress();
    }

    /// Makes a symlink, hard link, fifo or device from its entry (`None` for
    /// files and folders, which are made elsewhere).
    fn make_other(&mut self, e: &Entry, meta: &Meta) -> Option<Put> {
        let result = match e.kind {
            EntryType::Symlink => {
                self.target
                    .symlink(&e.path, e.target.as_deref().unwrap_or_default(), meta)
            }
            EntryType::Hardlink => {
                let first = e.link.as_deref().unwrap_or_default();
                let to = self.select.link_target(&e.path, first).unwrap_or(first);
                self.target.hardlink(&e.path, to)
            }
            EntryType::Fifo => self.target.special(&e.path, FileType::Fifo, 0, meta),
            EntryType::Char => self.target.special(
                &e.path,
                FileType::CharacterDevice,
                e.rdev.unwrap_or(0),
                meta,
            ),
            EntryType::Block => {
                self.target
                    .special(&e.path, FileType::BlockDevice, e.rdev.unwrap_or(0), meta)
            }
            EntryType::File | EntryType::Dir => return None,
        };
        Some(result)
    }

    /// Folders get their metadata deepest first, after their content (every
    /// file in them named).
    fn dir_metadata(&mut self, mut dirs: Vec<(Vec<u8>, Meta)>) {
        self.settle();
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, meta) in dirs {
            if let Err(r) = self.target.dir_meta(&path, &meta) {
                self.refused(&path, r);
            }
        }
        // Attributes of folders that could not be set.
        self.count_settled();
        for (path, r) in self.target.settle_implicit() {
            self.refused(&path, r);
        }
    }

    fn check_selection(&mut self) -> Result<()> {
        let missing: Vec<String> = self.select.unmatched(&self.matched).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::new(Exit::NoInput, format!("--path {}", missing.join(", ")), "matches nothing in the snapshot")
            .with_hint("paths are inside the snapshot, e.g. home/me/docs for /home/me/docs; see `snap-restore show`"))
    }

    /// Restores any tar from its headers, with the same path safety. A member
    /// that cannot be restored is named and makes the run end 65; a damaged
    /// or cut archive ends it at once.
    pub fn from_tar(&mut self, path: &Loc) -> Result<()> {
        let opened = stream::open(path, self.dec)?;
        let mut archive = archive(opened.tar);
        let mut dirs = Vec::new();
        let mut stripped = false;
        let mut empty = true;
        for member in members(&mut archive).map_err(|e| corrupt(path, e))? {
            self.stop_if_fatal()?;
            let mut m = member.map_err(|e| corrupt(path, e))?;
            empty = false;
            let rel = match sanitize(&m.path, &mut stripped) {
                Ok(Some(rel)) => rel,
                Ok(None) => continue,
                Err(why) => {
                    self.refused(&m.path.clone(), Refused::Escape(why));
                    continue;
                }
            };
            if !self.select.wants(&rel) && !self.select.leads_to(&rel) {
                continue;
            }
            self.select.mark(&rel, &mut self.matched);
            let e = match entry_of(&m, rel.clone(), &mut stripped) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(refused) => {
                    if self.select.wants(&rel) {
                        self.refused(&rel, refused);
                    }
                    continue;
                }
            };
            let policy = self.target.policy();
            let (xattrs, problems) = crate::attrs::of_member(&m, &mut self.owners, policy);
            let attrs = crate::attrs::Attrs::Tar(std::sync::Arc::new(xattrs));
            let meta = Meta {
                mtime_ns: m.mtime_ns,
                ..self.meta_with(&e, attrs)
            };
            if self.select.wants(&rel) {
                for p in problems {
                    self.refused(&rel, Refused::Attribute(p));
                }
                if let Some(t) = m.unknown_type {
                    self.report.warn(&format!(
                        "{}: unknown tar type {:?}, restored as a regular file (as GNU tar does)",
                        show(&rel),
                        t as char
                    ));
                }
                for w in &m.warnings {
                    self.report.warn(&format!("{}: {w}", show(&rel)));
                }
            }
            match e.kind {
                EntryType::Dir => match self.target.dir(&rel) {
                    Ok(_) => {
                        self.count_settled();
                        dirs.push((rel, meta));
                    }
                    Err(r) => {
                        self.count_settled();
                        self.refused(&rel, r);
                    }
                },
                EntryType::File if self.select.wants(&rel) => {
                    let r = self
                        .target
                        .file(&rel, &meta, e.size, None, &mut m, &mut self.buf);
                    if let Err(Refused::Source(err)) = r {
                        return Err(corrupt(path, member_error(&rel, err)));
                    }
                    self.count_staging(&rel, r, e.size);
                    self.progress();
                }
                EntryType::File => {}
                _ => {
                    let made = self.make_other(&e, &meta);
                    self.count_settled();
                    if let (Some(r), true) = (made, self.select.wants(&rel)) {
                        self.count(&rel, r, 0);
                    }
                }
            }
        }
        let end = finish(archive);
        if empty && end.is_ok() {
            self.report.note(&format!(
                "{}: an empty archive (it begins with its end-of-archive blocks, as GNU tar reads it); nothing to restore",
                path.show()
            ));
        }
        if stripped {
            self.report
                .note("removed leading `/` from member names (like GNU tar)");
        }
        self.dir_metadata(dirs);
        self.stop_if_fatal()?;
        end.map_err(|e| corrupt(path, e))?;
        self.check_selection()
    }
}

/// Calls `each` with the tar span and the final entry of every chosen file
/// whose content `link`'s archive holds (its index gives it a `tar_offset`,
/// with the final sha256), in tar order. A member ends where the next one
/// the archive carries begins (the index is in tar order), the last at the
/// end of the tar.
fn chosen_members(
    select: &Select,
    dec: &Decrypt,
    link: &Item,
    final_index: &IndexLoc,
    tar_len: u64,
    mut each: impl FnMut(std::ops::Range<u64>, Entry) -> Result<()>,
) -> Result<()> {
    let own_index = link.index().expect("archives have an index");
    let mut fin = match own_index == *final_index {
        true => None,
        false => Some(Cursor::new(open_index(final_index, dec)?)?),
    };
    let mut reader = open_index(&own_index, dec)?;
    let mut pending: Option<(u64, Entry)> = None;
    while let Some(e) = reader.next_entry()? {
        let Some(at) = e.tar_offset else { continue };
        if let Some((start, f)) = pending.take() {
            each(start..at, f)?;
        }
        if e.kind != EntryType::File || select.content_dest(&e.path).is_none() {
            continue;
        }
        let f = match fin.as_mut() {
            None => Some(e),
            Some(fin) => fin
                .seek(&e.path, |_| {})?
                .filter(|f| f.kind == EntryType::File && f.sha256 == e.sha256),
        };
        pending = f.map(|f| (at, f));
    }
    match pending {
        Some((start, f)) => each(start..tar_len, f),
        None => Ok(()),
    }
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sends `size` bytes of `entry` as chunks to a writer (which may stop
/// taking them: it refused the file).
fn send_chunks(
    entry: &mut dyn Read,
    size: u64,
    tx: &crossbeam_channel::Sender<std::io::Result<Vec<u8>>>,
) -> std::io::Result<()> {
    let mut left = size;
    while left > 0 {
        let mut chunk = Vec::with_capacity(SMALL as usize);
        let n = entry.take(left.min(SMALL)).read_to_end(&mut chunk)?;
        if n == 0 {
            break;
        }
        left -= n as u64;
        if tx.send(Ok(chunk)).is_err() {
            break;
        }
    }
    Ok(())
}

/// A read error inside a member, naming it.
pub fn member_error(rel: &[u8], e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", show(rel)))
}

/// A tar member as an index entry (no sha256 yet) at `rel`, its name already
/// made safe: type, metadata, size, and symlink target, hard link (made safe
/// too) or device. `Ok(None)`: nothing to restore (a volume label); `Err`: a
/// member that cannot be restored, or a hard link whose first name leaves
/// the target.
pub fn entry_of<R: Read>(
    m: &Member<'_, R>,
    rel: Vec<u8>,
    stripped: &mut bool,
) -> std::result::Result<Option<Entry>, Refused> {
    let kind = match &m.what {
        What::Entry(kind) => *kind,
        What::Label => return Ok(None),
        What::Cannot(why) => return Err(Refused::Cannot(why.clone())),
    };
    let mut e = Entry {
        path: rel,
        kind,
        size: if kind == EntryType::File { m.size } else { 0 },
        mode: m.mode,
        // An index holds i64 nanoseconds: years past 2262 stop there.
        mtime: m.mtime_ns.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        uid: m.uid,
        gid: m.gid,
        sha256: None,
        target: None,
        link: None,
        rdev: None,
        tar_offset: None,
        // Set by the caller (crate::attrs::of_member), which reports what
        // cannot be kept.
        xattrs: Default::default(),
        user: (!m.user.is_empty())
            .then(|| String::from_utf8(m.user.clone()).ok())
            .flatten(),
        group: (!m.group.is_empty())
            .then(|| String::from_utf8(m.group.clone()).ok())
            .flatten(),
        ctime: None,
    };
    match kind {
        EntryType::Symlink => e.target = Some(m.link.clone()),
        EntryType::Hardlink => match sanitize(&m.link, stripped) {
            Ok(Some(first)) => e.link = Some(first),
            Ok(None) | Err(_) => {
                return Err(Refused::Escape(format!(
                    "hard link to {} leaves the target",
                    show(&m.link)
                )));
            }
        },
        EntryType::Char | EntryType::Block => e.rdev = Some(m.rdev),
        EntryType::File | EntryType::Dir | EntryType::Fifo => {}
    }
    Ok(Some(e))
}

/// A tar member name as a path inside the target: leading `/` and `.`
/// components dropped (as GNU tar does), `..` refused. `None`: the root itself.
pub fn sanitize(raw: &[u8], stripped: &mut bool) -> std::result::Result<Option<Vec<u8>>, String> {
    if raw.first() == Some(&b'/') {
        *stripped = true;
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for comp in raw.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(format!("{} has a `..` component", show(raw))),
            c => out.push(c),
        }
    }
    Ok((!out.is_empty()).then(|| out.join(&b'/')))
}

/// Opens a snapshot's tree for reading files by relative path.
fn open_tree(tree: &Path) -> Result<(OwnedFd, PathBuf)> {
    let fd = rustix::fs::open(
        tree,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(tree, e.into()))?;
    Ok((fd, tree.to_path_buf()))
}

/// What `restore` is asked for (the command line's, or the page's form).
pub struct Request<'a> {
    pub name: &'a str,
    pub to: &'a Path,
    pub paths: &'a [String],
    pub overwrite: bool,
    pub archive: bool,
    /// Whose archives are read.
    pub trust: &'a crate::trust::Trust,
    /// Which attributes are set (`--no-xattrs`, `--no-acls`).
    pub policy: crate::attrs::Policy,
    /// `--numeric-owner`: ids as recorded, not by name.
    pub numeric_owner: bool,
}

/// Restores a snapshot or archive by name: the `restore` command, and the
/// page's restore. `watch` is kept up to date with what is written.
pub fn run(
    source: &crate::source::Source,
    req: &Request,
    dec: &Decrypt,
    report: &Reporter,
    watch: Option<std::sync::Arc<Watch>>,
) -> Result<(Exit, OutcomeRecord)> {
    if let crate::source::Source::Store(store) = source {
        refuse_inside_store(req.to, &store.root)?;
    }
    let item = source.resolve(req.name, req.archive)?;
    if let Some(real) = crate::preview::leads_elsewhere(req.to) {
        report.warn(&format!(
            "{}: a symlink on the way: the files go into {}",
            req.to.display(),
            real.display()
        ));
    }
    let chain = match &item {
        Item::Archive { .. } => chain_of(&item)?,
        _ => Vec::new(),
    };
    // Every record of the chain is believed before anything it names is read.
    let signed = req.trust.check_chain(&chain, report)?;
    let mut select = Select::new(req.paths)?;
    if let Some(index) = item.index().filter(|_| !item.is_imported()) {
        select.adopt_orphan_links(&index, dec)?;
    }
    let mut target = Target::open(req.to, req.overwrite)
        .map_err(|e| Error::io(req.to, e).with_exit(Exit::CantCreate))?;
    target.set_policy(req.policy);
    // Two restores into one folder would rename each other's files into
    // place; the second one waits for nothing and says who is there.
    let _lock = snap_shared::lock::FolderLock::acquire(&target.path, "restoring into")?;
    let mut r = Restorer::new(target, &select, dec, report);
    r.owners = crate::owners::Owners::new(req.numeric_owner);
    r.watch = watch;
    r.label = item.name();
    if req.paths.is_empty() {
        r.total = item.content_bytes(false);
    }
    let restored = match &item {
        Item::Foreign { path } => r.from_tar(&Loc::Path(path.clone())),
        // An imported tar is in its own order, not its index's.
        _ if item.is_imported() => r.from_tar(&item.data()),
        _ => r.from_index(&item, &chain),
    };
    // Files written and checked before a failure (a damaged archive
    // further on) are named too: they are whole.
    r.settle();
    restored?;
    // The batches' flushes made the bytes durable; this one makes the
    // names and folder metadata given since durable too.
    snap_shared::fsutil::syncfs(&r.target.path).map_err(|e| Error::io(&r.target.path, e))?;
    let t = r.tally;
    report.note(&format!(
        "{} -> {}: {} files, {} written{}{}",
        item.name(),
        r.target.path.display(),
        t.files,
        human_bytes(t.bytes),
        match (t.already, t.repaired) {
            (0, _) => String::new(),
            (a, 0) => format!(", {a} already there"),
            (a, r) => format!(", {a} already there ({r} with their attributes set again)"),
        },
        if t.errors > 0 {
            format!(", {} errors", t.errors)
        } else {
            String::new()
        },
    ));
    let mut extra = Extra::new();
    extra.insert("source_kind".into(), json!(item.kind()));
    extra.insert("already".into(), json!(t.already));
    extra.insert("repaired".into(), json!(t.repaired));
    if item.archive().is_some() {
        extra.insert("signed_by".into(), signed.json());
    }
    if chain.len() > 1 {
        extra.insert(
            "chain".into(),
            json!(
                chain
                    .iter()
                    .filter_map(|i| i.set_and_id().map(|(_, id)| id.to_string()))
                    .collect::<Vec<_>>()
            ),
        );
    }
    let to = r.target.path.display().to_string();
    Ok((t.exit(), outcome(&item, Some(to), &t, extra)))
}

/// The `restored` or `verified` record of a run.
pub fn outcome(item: &Item, to: Option<String>, t: &Tally, extra: Extra) -> OutcomeRecord {
    OutcomeRecord {
        schema: SCHEMA.into(),
        what: item.name(),
        to,
        files: t.files,
        bytes: t.bytes,
        errors: t.errors,
        extra,
    }
}

/// Refuses a restore target inside the store (its snapshots, archives or
/// records would be overwritten or mixed with restored files), after
/// following symlinks as far as the path exists: exit 64.
pub fn refuse_inside_store(to: &Path, store: &Path) -> Result<()> {
    let store = std::fs::canonicalize(store).unwrap_or(store.to_path_buf());
    let to = std::path::absolute(to).unwrap_or(to.to_path_buf());
    if resolve_existing(&to).starts_with(&store) || to.starts_with(&store) {
        return Err(Error::usage(
            format!("restore to {}", to.display()),
            "is inside the store; restore somewhere else",
        ));
    }
    Ok(())
}

/// `p` with its longest existing prefix resolved (symlinks followed).
fn resolve_existing(p: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        if let Ok(real) = std::fs::canonicalize(&cur) {
            return rest
                .iter()
                .rev()
                .fold(real, |acc, c: &std::ffi::OsString| acc.join(c));
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n);
                cur = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// The chain an archive ends, full archive first, found beside its record.
pub fn chain_of(item: &Item) -> Result<Vec<Item>> {
    let mut chain = vec![item.clone()];
    let mut current = item.clone();
    while let Some(base) = current.archive().and_then(|a| a.base.clone()) {
        let Item::Archive { json, .. } = &current else {
            break;
        };
        // One read (a request, at a bucket); a base that is not there reads as NoInput.
        current = match crate::source::read_item_at(json.sibling(&format!("{base}.json"))) {
            Err(e) if e.exit == Exit::NoInput => {
                return Err(Error::new(
                    Exit::NoInput,
                    format!("archive {}", item.name()),
                    format!("its chain needs {base}, which is not in {}", json.folder()),
                )
                .with_hint(
                    "an incremental archive restores only with every archive it builds on",
                ));
            }
            other => other?,
        };
        chain.push(current.clone());
        if chain.len() > 10_000 {
            return Err(Error::data(
                format!("archive {}", item.name()),
                "its chain of bases loops",
            ));
        }
    }
    chain.reverse();
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leading slashes and `.` go, `..` is refused, the root alone is nothing.
    #[test]
    fn sanitize_keeps_paths_inside() {
        let mut s = false;
        assert_eq!(
            sanitize(b"/etc/passwd", &mut s).unwrap().unwrap(),
            b"etc/passwd"
        );
        assert!(s);
        assert_eq!(sanitize(b"./a//b/.", &mut s).unwrap().unwrap(), b"a/b");
        assert!(sanitize(b"a/../../x", &mut s).is_err());
        assert_eq!(sanitize(b"./", &mut s).unwrap(), None);
    }
}
