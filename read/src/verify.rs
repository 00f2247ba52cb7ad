//! Reading every byte back: tree snapshots against their index (bit rot in
//! the store), archives against their sha256 and every file in them against
//! the index, foreign tars against a `.sha256` beside them if there is one.
//! Nothing is written. Each bad file is named; any mismatch is exit 65.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags, readlinkat};

use snap_cli::Reporter;
use snap_shared::archive;
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::hash::Sha256Digest;
use snap_shared::index::blocks_member_of;
use snap_shared::index::{Entry, EntryType};

use crate::damage::corrupt;
use crate::indexes::{Cursor, IndexLoc, open_index};
use crate::loc::Loc;
use crate::members::member_error;
use crate::members::{What, archive, finish, members};
use crate::outcome::Tally;
use crate::source::Item;
use crate::stream;
use crate::target::{copy_hashed, hash_file};
use crate::trust::{Signed, Trust};

/// What reading one snapshot or archive found (its own bytes, not its chain's).
#[derive(Debug, Clone, Copy)]
pub struct Read {
    pub tally: Tally,
    pub digest: Option<Sha256Digest>,
}

pub struct Verifier<'a> {
    pub dec: &'a Decrypt,
    pub trust: &'a Trust,
    pub report: &'a Reporter,
    pub tally: Tally,
    /// What was read already in this run, by kind and name (a snapshot and
    /// its archive share a name): a verify of everything
    /// reads each archive once, however many incremental archives stand on
    /// it (a chain is up to --full-every archives long).
    done: HashMap<String, Read>,
    buf: Vec<u8>,
    /// What the progress line names, and the bytes it expects.
    label: String,
    total: Option<u64>,
    /// Who signed each archive read, by name.
    signed: HashMap<String, Signed>,
}

impl<'a> Verifier<'a> {
    pub fn new(dec: &'a Decrypt, trust: &'a Trust, report: &'a Reporter) -> Verifier<'a> {
        Verifier {
            dec,
            trust,
            report,
            signed: HashMap::new(),
            tally: Tally::default(),
            done: HashMap::new(),
            buf: vec![0; 1 << 20],
            label: String::new(),
            total: None,
        }
    }

    fn bad(&mut self, what: &str, why: &str) {
        self.tally.errors += 1;
        self.tally.bad_data += 1;
        self.report.error(&format!("{what}: {why}"));
    }

    fn ok(&mut self, bytes: u64) {
        self.tally.files += 1;
        self.tally.bytes += bytes;
        let (n, b, total) = (self.tally.files, self.tally.bytes, self.total);
        let label = &self.label;
        self.report
            .tally(|| snap_cli::Tally::files(label, (n, None), (b, total)));
    }

    /// An item and everything a restore of it needs: an incremental
    /// archive's whole chain, full archive first, each archive with its
    /// record, index and every byte. Damage anywhere in the chain is bad
    /// data (65) naming the archive; so is a base that is gone. Returns the
    /// digest of the item itself.
    pub fn verify_with_chain(&mut self, item: &Item) -> Result<Option<Sha256Digest>> {
        if item.archive().is_some_and(|a| a.base.is_some()) {
            match crate::chain::chain_of(item) {
                Ok(chain) => {
                    for base in &chain[..chain.len() - 1] {
                        // A base the store handed on is verified at its destinations.
                        if base.away().is_some() {
                            continue;
                        }
                        let read = self
                            .read_once(base)
                            .map_err(|e| e.within(format!("base of {}", item.name())))?;
                        if read.tally.errors > 0 {
                            let why = format!("its base {} is damaged", base.name());
                            self.bad(&item.name(), &why);
                        }
                    }
                }
                Err(e) if e.exit == snap_shared::error::Exit::NoInput => {
                    self.bad(&e.context, &format!("{}; it cannot be restored", e.cause));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.read_once(item)?.digest)
    }

    /// Reads ITEM unless this run read it already; either way its count
    /// and errors are added to the tally (its damage was named when read).
    /// Damage that ends the read early is named and counted, not returned.
    fn read_once(&mut self, item: &Item) -> Result<Read> {
        let key = format!("{} {}", item.kind(), item.name());
        if let Some(read) = self.done.get(&key).copied() {
            let t = &mut self.tally;
            t.files += read.tally.files;
            t.bytes += read.tally.bytes;
            t.errors += read.tally.errors;
            t.bad_data += read.tally.bad_data;
            return Ok(read);
        }
        let before = self.tally;
        let digest = match self.verify(item) {
            Ok(digest) => digest,
            // Damage that stops the read (a frame that does not decode, a
            // cut archive) is this item's error; a run of several goes on.
            Err(e) if e.exit == Exit::Data => {
                self.report.failed(&e);
                self.tally.errors += 1;
                self.tally.bad_data += 1;
                None
            }
            Err(e) => return Err(e),
        };
        let t = self.tally;
        let tally = Tally {
            files: t.files - before.files,
            bytes: t.bytes - before.bytes,
            errors: t.errors - before.errors,
            bad_data: t.bad_data - before.bad_data,
            ..Tally::default()
        };
        let read = Read { tally, digest };
        self.done.insert(key, read);
        Ok(read)
    }

    pub fn verify(&mut self, item: &Item) -> Result<Option<Sha256Digest>> {
        self.label = item.name();
        self.total = item.content_bytes(true);
        match item {
            Item::Snapshot { .. } => self.tree(item).map(|()| None),
            Item::Archive { .. } => {
                // Its record is believed before anything it names is read.
                let signed = self.trust.check(item)?;
                signed.warn(&item.name(), self.report);
                self.signed.insert(item.name(), signed);
                self.archive(item).map(Some)
            }
            Item::Foreign { path } => self.foreign(path).map(Some),
        }
    }

    /// Who signed the archive NAME, when this run read it.
    pub fn signed(&self, name: &str) -> Option<&Signed> {
        self.signed.get(name)
    }

    /// Every file of a tree snapshot against its index (content, mode,
    /// mtime, symlink targets), and nothing in the tree that the index lacks:
    /// a tree edited by hand after the fact is named where it was edited.
    fn tree(&mut self, item: &Item) -> Result<()> {
        let data = item.data();
        let tree = data.path().expect("trees are local");
        let root = snap_shared::fsutil::open_root(tree).map_err(|e| Error::io(tree, e))?;
        let mut index = open_index(&item.index().expect("snapshots have an index"), self.dec)?;
        let mut listed = HashSet::new();
        while let Some(e) = index.next_entry()? {
            listed.insert(path_key(&e.path));
            let rel = OsStr::from_bytes(&e.path);
            let shown = tree.join(rel).display().to_string();
            match e.kind {
                EntryType::File => {
                    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
                    let hashed =
                        snap_shared::fsutil::open_beneath(&root, &e.path, flags).and_then(|fd| {
                            let file = File::from(fd);
                            let meta = file.metadata()?;
                            Ok((hash_file(file, &mut self.buf)?, meta))
                        });
                    match hashed {
                        Ok(((size, _), m)) if size != e.size => {
                            let why = format!("{size} bytes, the index says {}", e.size);
                            self.bad(&shown, &(why + &shared_by(item, &e.path, &m)))
                        }
                        Ok(((_, d), m)) if Some(d) != e.sha256 => {
                            let why =
                                format!("content changed: sha256 {d}, the index says {}", hex(&e));
                            self.bad(&shown, &(why + &shared_by(item, &e.path, &m)))
                        }
                        Ok((_, m)) => match meta_change(&m, &e) {
                            Some(why) => self.bad(&shown, &why),
                            None => self.ok(e.size),
                        },
                        Err(err) => self.bad(&shown, &snap_shared::error::io_cause(&err)),
                    }
                }
                EntryType::Symlink => match readlinkat(&root, rel, Vec::new()) {
                    Ok(t) if Some(t.as_bytes()) == e.target.as_deref() => self.ok(0),
                    Ok(_) => self.bad(&shown, "symlink target changed"),
                    Err(err) => self.bad(&shown, &snap_shared::error::io_cause(&err.into())),
                },
                _ => {}
            }
        }
        self.unlisted(tree, &listed)
    }

    /// Names every entry of the tree that its index does not hold. The
    /// walk goes folder by folder through descriptors, so a tree deeper
    /// than PATH_MAX is read whole.
    fn unlisted(&mut self, tree: &Path, listed: &HashSet<u64>) -> Result<()> {
        use std::rc::Rc;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let root =
            rustix::fs::open(tree, flags, Mode::empty()).map_err(|e| Error::io(tree, e.into()))?;
        // Folders still to read: their parent's descriptor and their path.
        // A folder is opened only when its turn comes, so the descriptors
        // open at once are those of the folders on the way down.
        let mut stack: Vec<(Option<Rc<std::os::fd::OwnedFd>>, Vec<u8>)> = vec![(None, Vec::new())];
        let mut root = Some(root);
        while let Some((parent, rel)) = stack.pop() {
            let shown_dir = tree.join(OsStr::from_bytes(&rel));
            let io = |e: rustix::io::Errno| Error::io(&shown_dir, e.into());
            let dir = match parent {
                None => root.take().expect("the root is read once"),
                Some(p) => {
                    let name = rel.rsplit(|&c| c == b'/').next().unwrap_or(&rel);
                    match rustix::fs::openat(&*p, OsStr::from_bytes(name), flags, Mode::empty()) {
                        Ok(fd) => fd,
                        // Not a folder after all (a file system without d_type).
                        Err(rustix::io::Errno::NOTDIR) => continue,
                        Err(e) => return Err(io(e)),
                    }
                }
            };
            let dir = Rc::new(dir);
            for entry in rustix::fs::Dir::read_from(&*dir).map_err(io)? {
                let entry = entry.map_err(io)?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let child = match rel.is_empty() {
                    true => name.to_vec(),
                    false => [rel.as_slice(), b"/", name].concat(),
                };
                if !listed.contains(&path_key(&child)) {
                    let shown = tree.join(OsStr::from_bytes(&child)).display().to_string();
                    self.bad(&shown, "not in the snapshot (added after it was taken)");
                    continue;
                }
                use rustix::fs::FileType;
                if matches!(entry.file_type(), FileType::Directory | FileType::Unknown) {
                    stack.push((Some(dir.clone()), child));
                }
            }
        }
        Ok(())
    }

    /// An archive: its sha256, its index sidecar, and each file against the index.
    fn archive(&mut self, item: &Item) -> Result<Sha256Digest> {
        let rec = item.archive().expect("an archive").clone();
        // Checked here, so that a mismatch is named and the rest still verified.
        let index = item.index().expect("archives have an index");
        if let Some(want) = &index.sha256 {
            let (_, got) =
                hash_file(index.loc.open()?, &mut self.buf).map_err(|e| corrupt(&index.loc, e))?;
            if got.to_hex() != *want {
                self.bad(
                    &index.show(),
                    &format!("sha256 {got}, the record says {want}"),
                );
            }
        }
        for (what, why) in crate::sidecars::sums_problems(item)? {
            self.bad(&what, &why);
        }
        let index = index.unchecked();
        let full = rec.base.is_none();
        let data = item.data();
        if item.is_imported() {
            return self.imported(&rec, &data, &index);
        }
        let mut cursor = Cursor::new(open_index(&index, self.dec)?)?;
        let layout = crate::seeking::of_item(item, self.dec)?.map(|s| s.layout);
        let opened = stream::open_framed(&data, self.dec, layout)?;
        let tap = opened.tap.clone();
        let mut archive = archive(opened.tar);
        let mut seen = Seen {
            full,
            missing: Vec::new(),
            last_delta: None,
        };
        for entry in members(&mut archive).map_err(|e| corrupt(&data, e))? {
            let mut entry = entry.map_err(|e| corrupt(&data, e))?;
            if entry.what != What::Entry(EntryType::File) {
                continue;
            }
            let path = std::mem::take(&mut entry.path);
            let shown = String::from_utf8_lossy(&path).into_owned();
            let expected = cursor.seek(&path, &mut |e: &Entry| seen.saw(e))?;
            let size = entry.size;
            if expected.is_none()
                && let Some(of) = blocks_member_of(&path)
            {
                let owner = seen.last_delta.take().filter(|d| d.path == of);
                let mut bytes = Vec::new();
                io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| corrupt(&data, e))?;
                match owner {
                    Some(d) => {
                        match run_problem(&d, &path[of.len()..], &bytes) {
                            Some(why) => self.bad(&shown, &why),
                            None => self.ok(size),
                        }
                        seen.last_delta = Some(d);
                    }
                    None => self.bad(&shown, "is in the archive but not in its index"),
                }
                continue;
            }
            let got = copy_hashed(&mut entry, &mut io::sink(), size, &mut self.buf)
                .map_err(|e| corrupt(&data, e))?;
            match expected {
                None => self.bad(&shown, "is in the archive but not in its index"),
                Some(e) if e.sha256 != Some(got) => {
                    self.bad(&shown, &format!("sha256 {got}, the index says {}", hex(&e)))
                }
                Some(_) => self.ok(size),
            }
        }
        cursor.drain(&mut |e: &Entry| seen.saw(e))?;
        for m in seen.missing {
            self.bad(&m, "is in the index but missing from the archive");
        }
        self.check_checksum(archive.into_inner(), &tap, &rec, &data)
    }

    /// Reads what is left of an archive (so every byte went through the tap)
    /// and checks its sha256 against the record.
    fn check_checksum(
        &mut self,
        mut rest: impl io::Read,
        tap: &std::sync::Arc<std::sync::Mutex<stream::Tap>>,
        rec: &snap_shared::record::ArchiveRecord,
        data: &Loc,
    ) -> Result<Sha256Digest> {
        io::copy(&mut rest, &mut io::sink()).map_err(|e| corrupt(data, e))?;
        let digest = tap.lock().expect("the tap is never poisoned").digest();
        if digest.to_hex() != rec.sha256 {
            self.bad(
                &data.show(),
                &format!("archive sha256 {digest}, the record says {}", rec.sha256),
            );
        }
        Ok(digest)
    }

    /// An imported archive: its tar is in its own order, so each member is looked up.
    fn imported(
        &mut self,
        rec: &snap_shared::record::ArchiveRecord,
        data: &Loc,
        index: &IndexLoc,
    ) -> Result<Sha256Digest> {
        let mut expected = std::collections::HashMap::new();
        let mut reader = open_index(index, self.dec)?;
        while let Some(e) = reader.next_entry()? {
            if e.kind == EntryType::File {
                expected.insert(e.path.clone(), e);
            }
        }
        let opened = stream::open(data, self.dec)?;
        let tap = opened.tap.clone();
        let mut archive = archive(opened.tar);
        let mut stripped = false;
        for member in members(&mut archive).map_err(|e| corrupt(data, e))? {
            let mut m = member.map_err(|e| corrupt(data, e))?;
            if m.what != What::Entry(EntryType::File) {
                continue;
            }
            let Ok(Some(rel)) = crate::members::sanitize(&m.path, &mut stripped) else {
                continue;
            };
            let size = m.size;
            let got = copy_hashed(&mut m, &mut io::sink(), size, &mut self.buf)
                .map_err(|e| corrupt(data, member_error(&rel, e)))?;
            let shown = String::from_utf8_lossy(&rel).into_owned();
            match expected.get(&rel) {
                Some(e) if e.sha256 == Some(got) => self.ok(size),
                // Maybe an earlier member of a name a later one replaces; if none
                // matches, the entry is reported below.
                Some(_) => continue,
                None => self.bad(&shown, "is in the archive but not in its index"),
            }
            expected.remove(&rel);
        }
        let mut missing: Vec<String> = expected
            .values()
            .map(|e| e.display_path().into_owned())
            .collect();
        missing.sort();
        for m in missing {
            self.bad(
                &m,
                "is in the index but missing from the archive, or its content changed",
            );
        }
        finish(archive).map_err(|e| corrupt(data, e))?;
        self.check_checksum(io::empty(), &tap, rec, data)
    }

    /// Any tar: readable to the end, and equal to a `.sha256` beside it if there is one.
    fn foreign(&mut self, path: &Path) -> Result<Sha256Digest> {
        let opened = stream::open(&Loc::Path(path.to_path_buf()), self.dec)?;
        let tap = opened.tap.clone();
        let mut archive = archive(opened.tar);
        for member in members(&mut archive).map_err(|e| corrupt(path, e))? {
            let mut m = member.map_err(|e| corrupt(path, e))?;
            let shown = String::from_utf8_lossy(&m.path).into_owned();
            match &m.what {
                What::Entry(EntryType::File) => {
                    let size = m.size;
                    copy_hashed(&mut m, &mut io::sink(), size, &mut self.buf)
                        .map_err(|e| corrupt(path, member_error(&m.path, e)))?;
                    self.ok(size);
                }
                What::Cannot(why) => self.bad(&shown, &format!("cannot be restored: it {why}")),
                What::Entry(_) | What::Label => {}
            }
        }
        finish(archive).map_err(|e| corrupt(path, e))?;
        let digest = tap.lock().expect("the tap is never poisoned").digest();
        match sums_beside(path) {
            Some(want) if want != digest => self.bad(
                &path.display().to_string(),
                &format!("sha256 {digest}, its .sha256 file says {want}"),
            ),
            Some(_) => {}
            None => self.report.note(&format!(
                "{}: no .sha256 beside it; checked that it reads to the end",
                path.display()
            )),
        }
        Ok(digest)
    }
}

/// The other snapshots of the set whose tree holds the same inode at the
/// same path (a hard link made by an unchanged-file collect), as
/// `"; the same copy is in SET/ID, …"`; empty when none does. They are
/// damaged alike.
/// What a verify of an archive's members remembers of the index entries it
/// passes: files a full archive lacks, and the big file whose runs follow.
struct Seen {
    full: bool,
    missing: Vec<String>,
    last_delta: Option<Entry>,
}

impl Seen {
    fn saw(&mut self, e: &Entry) {
        if e.delta.is_some() {
            self.last_delta = Some(e.clone());
        } else if self.full && e.kind == EntryType::File {
            self.missing.push(e.display_path().into_owned());
        }
    }
}

/// What is wrong with a run (or size) member of big file `d`, named by the
/// rest of its name (`.snap-blocks/OFFSET` or `.snap-blocks/size`): each
/// block checked against the digests the index records for it.
fn run_problem(d: &Entry, name: &[u8], bytes: &[u8]) -> Option<String> {
    let name = &name[b".snap-blocks/".len()..];
    if name == b"size" {
        let said = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        return (said != Some(d.size))
            .then(|| format!("says a size of {said:?}, the index says {}", d.size));
    }
    let offset: u64 = std::str::from_utf8(name).ok()?.parse().ok()?;
    let listed = d.delta.as_ref().is_some_and(|runs| {
        runs.iter()
            .any(|r| r.offset == offset && r.len == bytes.len() as u64)
    });
    if !listed {
        return Some(format!(
            "is not a run the index lists ({} bytes at {offset})",
            bytes.len()
        ));
    }
    let Some(blocks) = &d.blocks else {
        return Some("its file has no block digests in the index".into());
    };
    for (k, block) in bytes.chunks(blocks.size as usize).enumerate() {
        let i = (offset / blocks.size) as usize + k;
        let got = Sha256Digest::of(block);
        if blocks.digests.get(i) != Some(&got) {
            return Some(format!("block {i}: sha256 {got}, not the index's"));
        }
    }
    None
}

fn shared_by(item: &Item, rel: &[u8], damaged: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let Item::Snapshot { rec, json } = item else {
        return String::new();
    };
    let Some(set_dir) = json.parent() else {
        return String::new();
    };
    let mut ids: Vec<String> = snap_shared::store::read_names(set_dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .filter(|id| *id != rec.id && !id.starts_with('.'))
        .filter(|id| {
            std::fs::symlink_metadata(set_dir.join(id).join(OsStr::from_bytes(rel)))
                .is_ok_and(|m| m.dev() == damaged.dev() && m.ino() == damaged.ino())
        })
        .collect();
    if ids.is_empty() {
        return String::new();
    }
    ids.sort();
    let names: Vec<String> = ids.iter().map(|id| format!("{}/{id}", rec.set)).collect();
    format!(
        "; the same stored copy is in {} (damaged alike)",
        names.join(", ")
    )
}

/// A path of the index, kept as a hash: a tree of a million files costs about 16 MB.
fn path_key(path: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// How a file's mode or mtime differs from what the index recorded, if it does.
fn meta_change(m: &std::fs::Metadata, e: &Entry) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = m.mode() & 0o7777;
    let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
    if mode != e.mode {
        Some(format!(
            "mode changed: {mode:o}, the index says {:o}",
            e.mode
        ))
    } else if mtime != e.mtime as i128 {
        Some(format!(
            "mtime changed: {mtime} ns, the index says {}",
            e.mtime
        ))
    } else {
        None
    }
}

fn hex(e: &Entry) -> String {
    e.sha256.map_or("nothing".into(), |d| d.to_hex())
}

/// The digest a `NAME.sha256` (or `STEM.sha256`) file beside `path` gives it.
fn sums_beside(path: &Path) -> Option<Sha256Digest> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let mut candidates = vec![path.with_file_name(format!("{name}.sha256"))];
    if let Some((stem, _)) = name.split_once('.') {
        candidates.push(path.with_file_name(format!("{stem}.sha256")));
    }
    candidates.iter().find_map(|c| {
        let text = std::fs::read_to_string(c).ok()?;
        archive::parse_sums(&text)
            .ok()?
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(d, _)| d)
    })
}
