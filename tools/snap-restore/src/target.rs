//! Writing into the restore target, and never outside it.
//!
//! Every path is walked one component at a time from an open handle on the
//! target folder, with `O_NOFOLLOW|O_DIRECTORY`: a symlink where a folder is
//! expected (a hostile archive's `link -> /etc` followed by `link/passwd`, or
//! one left in the target) stops the walk instead of being followed. Paths
//! must already be relative and free of `..` ([`check_relative_path`]).
//!
//! A file is written to `.NAME.snap-part`, hashed as it is written, given its
//! metadata, and renamed to NAME: an interrupted restore never leaves a half
//! file under a real name. Without `--overwrite` the rename refuses to replace
//! anything (`RENAME_NOREPLACE`); a file that is already there with the right
//! content counts as restored, so a rerun continues where a killed run stopped.
//! Whole blocks of zeros are left as holes ([`crate::holes`]).
//!
//! The rename waits until the bytes are on the disk. A rename reaches the
//! disk with the folder, which may be before the file's data: after a power
//! cut the name would hold an empty or half file, which a rerun cannot tell
//! from a user's own file and so refuses. An fsync per file costs a disk
//! flush each, so files are *staged* instead: written under their temporary
//! names, then, every [`BATCH_FILES`] files or [`BATCH_BYTES`] bytes, one
//! `syncfs` makes the whole batch durable and only then are the names given
//! ([`Target::flush`]). A file's outcome is known at that point: callers
//! collect them with [`Target::settled`].

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, RenameFlags, Timespec, Timestamps, Uid, fchmod, fchown,
    futimens, linkat, mkdirat, mknodat, openat, readlinkat, renameat_with, statat, symlinkat,
    unlinkat, utimensat,
};
use sha2::{Digest, Sha256};

use snap_shared::hash::Sha256Digest;

use crate::attrs::{Attrs, Policy};
use crate::holes::Holes;
use snap_shared::index::check_relative_path;

/// Metadata to give a restored entry.
#[derive(Debug, Clone)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since 1970; wider than an index's i64, for tars of years past 2262.
    pub mtime_ns: i128,
    /// Extended attributes and ACLs.
    pub attrs: Attrs,
}

/// What happened to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// It was already there with the right content (a rerun).
    AlreadyThere,
    /// It was there with the right content and other attributes (mode,
    /// owner, mtime): they were set again, the bytes left alone.
    Repaired,
}

/// Why an entry was not restored; the caller names the path.
#[derive(Debug)]
pub enum Refused {
    /// Something else is there and `--overwrite` was not given.
    Exists,
    /// The content does not match the index; it was kept as `NAME.snap-damaged`.
    Mismatch {
        got: Sha256Digest,
    },
    /// A path component is a symlink or not a folder: writing there would leave the target.
    Escape(String),
    /// The archive holds something that cannot be made (the reason says what).
    Cannot(String),
    /// Reading the content failed: the archive is damaged or cut short.
    Source(io::Error),
    /// The entry is there, but an attribute of it could not be set (the
    /// line says which and why).
    Attribute(String),
    Io(io::Error),
}

impl From<io::Error> for Refused {
    fn from(e: io::Error) -> Self {
        Refused::Io(e)
    }
}

impl From<rustix::io::Errno> for Refused {
    fn from(e: rustix::io::Errno) -> Self {
        Refused::Io(e.into())
    }
}

pub type Put = std::result::Result<Outcome, Refused>;

/// Folders made on the way to an entry, by path.
pub type Implicit = std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<Vec<u8>>>>;

/// The umask the process had before a restore set 0 (for exact modes).
static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Files staged before a flush names them: one `syncfs` per batch.
pub const BATCH_FILES: usize = 4096;
/// Bytes staged before a flush (a batch also ends at [`BATCH_FILES`]).
pub const BATCH_BYTES: u64 = 256 << 20;

/// A file written under its temporary name, waiting for the flush that names it.
struct Staged {
    rel: Vec<u8>,
    size: u64,
    digest: Sha256Digest,
    meta: Meta,
}

/// A staged file's outcome, known once a flush has named it (or failed to).
pub struct Settled {
    pub path: Vec<u8>,
    pub bytes: u64,
    pub result: Put,
}

pub struct Target {
    root: Rc<OwnedFd>,
    pub path: PathBuf,
    overwrite: bool,
    /// Set owners (only root may).
    owners: bool,
    /// Which attributes are set.
    policy: Policy,
    /// Attributes that could not be set, by path, for the caller to report.
    attr_failures: Vec<(Vec<u8>, String)>,
    /// Folders made on the way to an entry that no entry of their own has
    /// given metadata yet (shared with the writer threads' targets).
    implicit: Implicit,
    /// The folders of the last walk, outermost first, kept open: entries come
    /// in path order, so the next walk mostly starts where this one ended.
    open: Vec<(Vec<u8>, Rc<OwnedFd>)>,
    /// Files written but not yet named, in the order they were written.
    staged: Vec<Staged>,
    /// Their paths, so that a later entry of the same name (or a hard link
    /// to one) waits for the flush.
    staged_paths: HashSet<Vec<u8>>,
    staged_bytes: u64,
    /// Outcomes of flushed files not yet collected.
    settled: Vec<Settled>,
}

const PART: &str = ".snap-part";

fn name_of(rel: &[u8]) -> &[u8] {
    rel.rsplit(|&c| c == b'/').next().unwrap_or(rel)
}

/// The longest file name Linux filesystems take.
const NAME_MAX: usize = 255;

/// A file's temporary name in its own folder: `.NAME.snap-part`, or, when
/// that would be over [`NAME_MAX`] bytes, `.HASH.snap-part` (32 hex digits
/// of the name's sha256). Both are the same on every run, so a rerun
/// replaces a killed run's leftover; the target lock keeps two runs apart.
fn temp_of(name: &[u8]) -> Vec<u8> {
    if name.len() + 1 + PART.len() <= NAME_MAX {
        return [b".", name, PART.as_bytes()].concat();
    }
    let hex = Sha256Digest::of(name).to_hex();
    [b".", &hex.as_bytes()[..32], PART.as_bytes()].concat()
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn timestamps(mtime_ns: i128) -> Timestamps {
    let t = Timespec {
        // Past what a time_t holds (no filesystem does), the last second it holds.
        tv_sec: mtime_ns
            .div_euclid(1_000_000_000)
            .clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl Target {
    /// Opens (creating it if needed) the folder to restore into. Sets the
    /// process umask to 0: restored files get exactly their recorded modes.
    pub fn open(dir: &Path, overwrite: bool) -> io::Result<Target> {
        std::fs::create_dir_all(dir)?;
        let before = rustix::process::umask(Mode::empty());
        UMASK.get_or_init(|| before.bits());
        let root = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Target {
            root: Rc::new(root),
            path: std::path::absolute(dir).unwrap_or(dir.to_path_buf()),
            overwrite,
            owners: rustix::process::geteuid().is_root(),
            policy: Policy::default(),
            attr_failures: Vec::new(),
            implicit: Default::default(),
            open: Vec::new(),
            staged: Vec::new(),
            staged_paths: HashSet::new(),
            staged_bytes: 0,
            settled: Vec::new(),
        })
    }

    /// The open folder that holds `rel`, creating missing folders (0700 until
    /// their metadata is applied) when `create`.
    fn parent(&mut self, rel: &[u8], create: bool) -> std::result::Result<Rc<OwnedFd>, Refused> {
        check_relative_path(rel).map_err(Refused::Escape)?;
        let comps: Vec<&[u8]> = rel.split(|&c| c == b'/').collect();
        let dirs = &comps[..comps.len() - 1];
        let keep = self
            .open
            .iter()
            .zip(dirs)
            .take_while(|((n, _), c)| n == *c)
            .count();
        self.open.truncate(keep);
        for comp in &dirs[keep..] {
            let at = self
                .open
                .last()
                .map_or(self.root.clone(), |(_, fd)| fd.clone());
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = match openat(&*at, os(comp), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) if create => {
                    match mkdirat(&*at, os(comp), Mode::from_raw_mode(0o700)) {
                        Ok(()) => {
                            let made = comps[..=self.open.len()].join(&b'/');
                            self.implicit.lock().expect("implicit folders").insert(made);
                        }
                        Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    openat(&*at, os(comp), flags, Mode::empty())?
                }
                Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                    let upto = comps[..=self.open.len()].join(&b'/');
                    return Err(Refused::Escape(format!(
                        "{} is a symlink or not a folder; nothing is written through it",
                        String::from_utf8_lossy(&upto)
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            self.open.push((comp.to_vec(), Rc::new(fd)));
        }
        Ok(self
            .open
            .last()
            .map_or(self.root.clone(), |(_, fd)| fd.clone()))
    }

    /// Owner, attributes, mode and times of an open entry (`name` in `dir`):
    /// the mode after the ACLs, which a removed inherited ACL leaves wrong.
    fn apply(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        fd: impl AsFd,
        meta: &Meta,
    ) -> io::Result<()> {
        if self.owners {
            fchown(
                &fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )?;
        }
        let mode = Mode::from_raw_mode(meta.mode & 0o7777);
        fchmod(&fd, mode)?;
        self.attributes(dir, name, rel, meta, &|| Ok(fchmod(&fd, mode)?))?;
        futimens(&fd, &timestamps(meta.mtime_ns))?;
        Ok(())
    }

    /// Moves a finished temp to its name: replacing only with `--overwrite`.
    fn publish(&self, dir: &OwnedFd, tmp: &[u8], name: &[u8]) -> std::result::Result<(), Refused> {
        let flags = if self.overwrite {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        match renameat_with(dir, os(tmp), dir, os(name), flags) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = unlinkat(dir, os(tmp), AtFlags::empty());
                Err(match e {
                    rustix::io::Errno::EXIST => Refused::Exists,
                    e => e.into(),
                })
            }
        }
    }

    /// Makes sure folder `rel` exists (its metadata comes later, [`Target::dir_meta`]).
    pub fn dir(&mut self, rel: &[u8]) -> Put {
        self.flush_if_staged(rel);
        let dir = self.parent(rel, true)?;
        let name = name_of(rel);
        match mkdirat(&*dir, os(name), Mode::from_raw_mode(0o700)) {
            Ok(()) => Ok(Outcome::Written),
            Err(rustix::io::Errno::EXIST) => {
                match statat(&*dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        Ok(Outcome::AlreadyThere)
                    }
                    // A file (or symlink, or node) where the folder belongs:
                    // --overwrite replaces it, as tar --overwrite does.
                    Ok(_) if self.overwrite => {
                        unlinkat(&*dir, os(name), AtFlags::empty())?;
                        mkdirat(&*dir, os(name), Mode::from_raw_mode(0o700))?;
                        Ok(Outcome::Written)
                    }
                    Ok(_) => Err(Refused::Exists),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives folder `rel` its metadata (after everything inside it is written).
    pub fn dir_meta(&mut self, rel: &[u8], meta: &Meta) -> std::result::Result<(), Refused> {
        // Naming a file inside would change the folder's mtime again.
        self.flush();
        self.implicit.lock().expect("implicit folders").remove(rel);
        let dir = self.parent(rel, false)?;
        let name = name_of(rel);
        let fd = openat(
            &*dir,
            os(name),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(self.apply(&dir, name, rel, fd, meta)?)
    }

    /// The folders made on the way to an entry, to share with a writer
    /// thread's target ([`Target::set_implicit`]).
    pub fn implicit(&self) -> Implicit {
        self.implicit.clone()
    }

    pub fn set_implicit(&mut self, implicit: Implicit) {
        self.implicit = implicit;
    }

    /// Gives the folders made on the way to an entry, which no entry of the
    /// archive describes, the mode GNU tar gives them: 0777 less the umask
    /// the run started with (0755 with the usual 022), instead of the 0700
    /// they are made with. Returns those that could not be set.
    pub fn settle_implicit(&mut self) -> Vec<(Vec<u8>, Refused)> {
        let made = std::mem::take(&mut *self.implicit.lock().expect("implicit folders"));
        let mode = Mode::from_raw_mode(0o777 & !UMASK.get().copied().unwrap_or(0o022));
        let mut failed = Vec::new();
        for rel in made {
            let set = self.parent(&rel, false).and_then(|dir| {
                Ok(rustix::fs::chmodat(
                    &*dir,
                    os(name_of(&rel)),
                    mode,
                    AtFlags::empty(),
                )?)
            });
            if let Err(r) = set {
                failed.push((rel, r));
            }
        }
        failed
    }

    /// Which attributes this run sets (`--no-xattrs`, `--no-acls`).
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Gives `name` in `dir` (the entry `rel`) its attributes, after its
    /// mode. An access ACL sets the permission bits itself, the group's
    /// from its mask: no chmod may follow it (bsdtar's headers hold the
    /// owning group's bits, not the mask's, and a chmod would set the mask
    /// from them). Without one, a removed inherited ACL leaves the group
    /// bits at its mask, so the mode is set again with `chmod`. What could
    /// not be set is kept for the caller.
    fn attributes(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
        chmod: &dyn Fn() -> io::Result<()>,
    ) -> io::Result<()> {
        let (changed, failed) = crate::attrs::set_at(dir, name, &meta.attrs, self.policy)?;
        self.attr_failures
            .extend(failed.into_iter().map(|f| (rel.to_vec(), f)));
        if changed && !crate::attrs::wants_access_acl(&meta.attrs, self.policy) {
            chmod()?;
        }
        Ok(())
    }

    /// Whether `--overwrite` was given.
    pub fn overwrites(&self) -> bool {
        self.overwrite
    }

    /// Whether a regular file with this content is at `name` (hashing it only when the size matches).
    fn same_file(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        size: u64,
        sha: &Sha256Digest,
    ) -> io::Result<bool> {
        let st = match statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_size as u64 != size
        {
            return Ok(false);
        }
        let fd = openat(
            dir,
            os(name),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let (_, digest) = hash_file(File::from(fd), &mut vec![0; 1 << 16])?;
        Ok(digest == *sha)
    }

    /// Writes file `rel` from `content` (exactly `size` bytes), checking `sha`
    /// when given, and stages it: its outcome comes from [`Target::settled`]
    /// once a flush has named it. An error here means it was not staged.
    pub fn file(
        &mut self,
        rel: &[u8],
        meta: &Meta,
        size: u64,
        sha: Option<&Sha256Digest>,
        content: &mut dyn Read,
        buf: &mut [u8],
    ) -> std::result::Result<(), Refused> {
        self.flush_if_staged(rel);
        let dir = self.parent(rel, true)?;
        let name = name_of(rel);
        let tmp = temp_of(name);
        let file = File::from(self.create_temp(&dir, &tmp, meta.mode)?);
        let mut source = Source {
            inner: content,
            failed: false,
        };
        let mut holes = Holes::new(&file);
        let written = copy_hashed(&mut source, &mut holes, size, buf)
            .and_then(|d| holes.finish().map(|()| d));
        let digest = match written {
            Ok(d) => d,
            Err(e) => {
                let _ = unlinkat(&*dir, os(&tmp), AtFlags::empty());
                return Err(match source.failed {
                    true => Refused::Source(e),
                    false => Refused::Io(e),
                });
            }
        };
        if let Some(want) = sha
            && *want != digest
        {
            // Keep the bytes: a damaged copy may still be worth something to its owner.
            let damaged = match name.len() + b".snap-damaged".len() <= NAME_MAX {
                true => [name, b".snap-damaged"].concat(),
                false => [&tmp[..tmp.len() - PART.len()], b".snap-damaged"].concat(),
            };
            let _ = renameat_with(&*dir, os(&tmp), &*dir, os(&damaged), RenameFlags::empty());
            return Err(Refused::Mismatch { got: digest });
        }
        self.apply_new(&file, &dir, &tmp, rel, meta)?;
        drop(file);
        self.staged.push(Staged {
            rel: rel.to_vec(),
            size,
            digest,
            meta: meta.clone(),
        });
        self.staged_paths.insert(rel.to_vec());
        self.staged_bytes += size;
        if self.staged.len() >= BATCH_FILES || self.staged_bytes >= BATCH_BYTES {
            self.flush();
        }
        Ok(())
    }

    /// Makes every staged file durable with one `syncfs`, then gives each its
    /// name; their outcomes wait in [`Target::settled`]. A failed `syncfs`
    /// (a disk gone bad) fails the whole batch and names nothing.
    pub fn flush(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.staged);
        self.staged_paths.clear();
        self.staged_bytes = 0;
        let synced = snap_shared::fsutil::syncfs(&self.path);
        for s in staged {
            let result = match &synced {
                Ok(()) => self.name_staged(&s),
                Err(e) => Err(Refused::Io(copy_of(e))),
            };
            self.settled.push(Settled {
                path: s.rel,
                bytes: s.size,
                result,
            });
        }
    }

    /// Outcomes of the files flushed since the last call, and the
    /// attributes of any entry that could not be set.
    pub fn settled(&mut self) -> Vec<Settled> {
        let mut out = std::mem::take(&mut self.settled);
        out.extend(self.attr_failures.drain(..).map(|(path, why)| Settled {
            path,
            bytes: 0,
            result: Err(Refused::Attribute(why)),
        }));
        out
    }

    /// Flushes first when `rel` is staged: what comes next at that name
    /// (another member of the same name, a hard link to it) needs it named.
    fn flush_if_staged(&mut self, rel: &[u8]) {
        if self.staged_paths.contains(rel) {
            self.flush();
        }
    }

    /// Gives a staged (and flushed) file its name.
    fn name_staged(&mut self, s: &Staged) -> Put {
        let dir = self.parent(&s.rel, false)?;
        let name = name_of(&s.rel);
        match self.publish(&dir, &temp_of(name), name) {
            // Something is there already: the same content is a rerun's work, done.
            Err(Refused::Exists) if self.same_file(&dir, name, s.size, &s.digest)? => {
                Ok(self.repair(&dir, name, &s.rel, &s.meta, Some(s.meta.mode))?)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(Outcome::Written),
        }
    }

    /// Creates a file's temporary name afresh, with its final mode (the umask is 0
    /// while restoring), replacing a leftover of an interrupted run.
    fn create_temp(&self, dir: &OwnedFd, tmp: &[u8], mode: u32) -> io::Result<OwnedFd> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(mode & 0o7777);
        match openat(dir, os(tmp), flags, mode) {
            Err(rustix::io::Errno::EXIST) => {
                unlinkat(dir, os(tmp), AtFlags::empty())?;
                Ok(openat(dir, os(tmp), flags, mode)?)
            }
            other => Ok(other?),
        }
    }

    /// Metadata for a file this run created with its final mode (`tmp` in
    /// `dir`): owner only when it differs from ours, then its attributes,
    /// then the mode again when either changed it (chown clears set-id
    /// bits; removing an inherited ACL leaves the group bits at its mask),
    /// and times.
    fn apply_new(
        &mut self,
        fd: impl AsFd,
        dir: &OwnedFd,
        tmp: &[u8],
        rel: &[u8],
        meta: &Meta,
    ) -> io::Result<()> {
        let (uid, gid) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        let mut chmod = false;
        if self.owners && (meta.uid, meta.gid) != (uid, gid) {
            fchown(
                &fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )?;
            chmod = meta.mode & 0o6000 != 0;
        }
        let mode = Mode::from_raw_mode(meta.mode & 0o7777);
        if chmod {
            fchmod(&fd, mode)?;
        }
        self.attributes(dir, tmp, rel, meta, &|| Ok(fchmod(&fd, mode)?))?;
        futimens(&fd, &timestamps(meta.mtime_ns))?;
        Ok(())
    }

    /// Makes symlink `rel` pointing at `target` (never followed by us).
    pub fn symlink(&mut self, rel: &[u8], target: &[u8], meta: &Meta) -> Put {
        self.flush_if_staged(rel);
        let dir = self.parent(rel, true)?;
        let name = name_of(rel);
        if let Ok(existing) = readlinkat(&*dir, os(name), Vec::new())
            && existing.as_bytes() == target
        {
            return Ok(self.repair(&dir, name, rel, meta, None)?);
        }
        let tmp = temp_of(name);
        let _ = unlinkat(&*dir, os(&tmp), AtFlags::empty());
        symlinkat(os(target), &*dir, os(&tmp))?;
        self.owner_and_times_at(&dir, &tmp, rel, meta, None)?;
        self.publish(&dir, &tmp, name)?;
        Ok(Outcome::Written)
    }

    /// An entry already there with the right content: its owner (as root),
    /// mode (when given) and mtime set again where they differ from `meta`,
    /// as rsync -a and restic do; the bytes are not touched.
    fn repair(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
        mode: Option<u32>,
    ) -> io::Result<Outcome> {
        let st = statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
        let want = timestamps(meta.mtime_ns).last_modification;
        let same = (st.st_mtime as i64, st.st_mtime_nsec as i64) == (want.tv_sec, want.tv_nsec)
            && mode.is_none_or(|m| st.st_mode & 0o7777 == m & 0o7777)
            && (!self.owners || (st.st_uid, st.st_gid) == (meta.uid, meta.gid))
            && crate::attrs::same_at(dir, name, &meta.attrs, self.policy)?;
        if same {
            return Ok(Outcome::AlreadyThere);
        }
        self.owner_and_times_at(dir, name, rel, meta, mode)?;
        Ok(Outcome::Repaired)
    }

    /// Owner (as root), attributes, mode (when given: symlinks have none)
    /// and times of a name in an open folder, not following a symlink.
    fn owner_and_times_at(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
        mode: Option<u32>,
    ) -> io::Result<()> {
        if self.owners {
            let (u, g) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
            rustix::fs::chownat(dir, os(name), Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        let chmod = || -> io::Result<()> {
            if let Some(mode) = mode {
                let mode = Mode::from_raw_mode(mode & 0o7777);
                rustix::fs::chmodat(dir, os(name), mode, AtFlags::empty())?;
            }
            Ok(())
        };
        chmod()?;
        self.attributes(dir, name, rel, meta, &chmod)?;
        utimensat(
            dir,
            os(name),
            &timestamps(meta.mtime_ns),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    /// Makes `rel` a further name of the already restored `first`.
    pub fn hardlink(&mut self, rel: &[u8], first: &[u8]) -> Put {
        self.flush_if_staged(first);
        self.flush_if_staged(rel);
        let from_dir = self.parent(first, false)?;
        let from = name_of(first).to_vec();
        let dir = self.parent(rel, true)?;
        let name = name_of(rel);
        if let (Ok(a), Ok(b)) = (
            statat(&*from_dir, os(&from), AtFlags::SYMLINK_NOFOLLOW),
            statat(&*dir, os(name), AtFlags::SYMLINK_NOFOLLOW),
        ) && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        {
            return Ok(Outcome::AlreadyThere);
        }
        let tmp = temp_of(name);
        let _ = unlinkat(&*dir, os(&tmp), AtFlags::empty());
        linkat(&*from_dir, os(&from), &*dir, os(&tmp), AtFlags::empty())?;
        self.publish(&dir, &tmp, name)?;
        Ok(Outcome::Written)
    }

    /// Makes a fifo or a device node.
    pub fn special(&mut self, rel: &[u8], kind: FileType, rdev: u64, meta: &Meta) -> Put {
        self.flush_if_staged(rel);
        let dir = self.parent(rel, true)?;
        let name = name_of(rel);
        if let Ok(st) = statat(&*dir, os(name), AtFlags::SYMLINK_NOFOLLOW)
            && FileType::from_raw_mode(st.st_mode) == kind
            && (kind == FileType::Fifo || st.st_rdev == rdev)
        {
            return Ok(self.repair(&dir, name, rel, meta, Some(meta.mode))?);
        }
        let tmp = temp_of(name);
        let _ = unlinkat(&*dir, os(&tmp), AtFlags::empty());
        mknodat(&*dir, os(&tmp), kind, Mode::from_raw_mode(0o600), rdev)?;
        self.owner_and_times_at(&dir, &tmp, rel, meta, Some(meta.mode))?;
        self.publish(&dir, &tmp, name)?;
        Ok(Outcome::Written)
    }

    /// Whether a regular file is at `rel` (for the check that every file was restored).
    pub fn has_file(&mut self, rel: &[u8]) -> bool {
        self.flush_if_staged(rel);
        let Ok(dir) = self.parent(rel, false) else {
            return false;
        };
        matches!(statat(&*dir, os(name_of(rel)), AtFlags::SYMLINK_NOFOLLOW),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
    }
}

/// The content being restored, remembering whether a read failed (the
/// archive's fault) rather than a write (the target's).
struct Source<'r> {
    inner: &'r mut dyn Read,
    failed: bool,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = self.inner.read(buf);
        // Asked only for bytes still due, so an end is an early end.
        self.failed = !matches!(got, Ok(n) if n > 0);
        got
    }
}

/// The same error again, with its errno (one failed flush fails each file of the batch).
fn copy_of(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// Size and sha256 of a whole file.
pub fn hash_file(f: impl io::Read, buf: &mut [u8]) -> io::Result<(u64, Sha256Digest)> {
    snap_shared::hash::hash_read(f, buf)
}

/// Copies exactly `size` bytes, hashing them; a short source is an error.
pub fn copy_hashed(
    src: &mut dyn Read,
    dst: &mut dyn Write,
    size: u64,
    buf: &mut [u8],
) -> io::Result<Sha256Digest> {
    let mut hasher = Sha256::new();
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the data ended early",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(Sha256Digest::from_hasher(hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Temporary names fit in 255 bytes however long the name is, and stay
    /// the same from run to run.
    #[test]
    fn temporary_names_fit() {
        assert_eq!(temp_of(b"a.txt"), b".a.txt.snap-part");
        let long = [b'n'; 255];
        let tmp = temp_of(&long);
        assert_eq!(tmp.len(), 1 + 32 + PART.len());
        assert_eq!(tmp, temp_of(&long));
        assert_ne!(tmp, temp_of(&long[..254]));
        assert_eq!(temp_of(&long[..244]).len(), 255);
    }

    fn meta() -> Meta {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            attrs: Default::default(),
        }
    }

    fn put(t: &mut Target, rel: &str, body: &[u8]) -> std::result::Result<(), Refused> {
        let sha = Sha256Digest::from_hasher(Sha256::new_with_prefix(body));
        let mut buf = vec![0; 4096];
        t.file(
            rel.as_bytes(),
            &meta(),
            body.len() as u64,
            Some(&sha),
            &mut &body[..],
            &mut buf,
        )
    }

    fn outcomes(t: &mut Target) -> Vec<(String, bool)> {
        t.settled()
            .into_iter()
            .map(|s| {
                let path = String::from_utf8(s.path).unwrap();
                (path, matches!(s.result, Ok(Outcome::Written)))
            })
            .collect()
    }

    /// A written file stays under its temporary name until a flush has made it durable.
    #[test]
    fn a_file_gets_its_name_only_at_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Target::open(dir.path(), false).unwrap();
        put(&mut t, "a/b.txt", b"hello").unwrap();
        assert!(!dir.path().join("a/b.txt").exists());
        assert!(dir.path().join("a/.b.txt.snap-part").exists());
        assert!(t.settled().is_empty());
        t.flush();
        assert_eq!(outcomes(&mut t), [("a/b.txt".to_string(), true)]);
        assert_eq!(std::fs::read(dir.path().join("a/b.txt")).unwrap(), b"hello");
        assert!(!dir.path().join("a/.b.txt.snap-part").exists());
    }

    /// A batch is flushed by itself once it holds BATCH_FILES files.
    #[test]
    fn a_full_batch_flushes_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Target::open(dir.path(), false).unwrap();
        for i in 0..BATCH_FILES {
            put(&mut t, &format!("f{i}"), b"x").unwrap();
        }
        assert_eq!(t.settled().len(), BATCH_FILES);
        assert!(dir.path().join("f0").exists());
    }

    /// A second file of the same name in one batch (a tar holding a member twice) meets the first one named.
    #[test]
    fn the_same_name_twice_meets_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Target::open(dir.path(), false).unwrap();
        put(&mut t, "x", b"first").unwrap();
        put(&mut t, "x", b"second").unwrap();
        t.flush();
        let s = t.settled();
        assert!(matches!(s[0].result, Ok(Outcome::Written)));
        assert!(matches!(s[1].result, Err(Refused::Exists)));
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"first");
    }

    /// A hard link to a file still staged is made once the file is named.
    #[test]
    fn a_hard_link_to_a_staged_file_names_it_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Target::open(dir.path(), false).unwrap();
        put(&mut t, "x", b"body").unwrap();
        assert!(matches!(t.hardlink(b"y", b"x"), Ok(Outcome::Written)));
        assert_eq!(outcomes(&mut t), [("x".to_string(), true)]);
        assert_eq!(std::fs::read(dir.path().join("y")).unwrap(), b"body");
    }
}
