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

mod assembly;
mod copy;
mod files;
mod others;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use copy::{copy_hashed, hash_file};
use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, RenameFlags, Timespec, Timestamps, mkdirat, openat,
    renameat_with, statat, unlinkat,
};

use snap_shared::hash::Sha256Digest;
use snap_shared::index::check_relative_path;

use crate::attrs::{Attrs, Policy};
use crate::homemap::{HomeMap, Place};
pub use crate::refused::Refused;
pub use assembly::Assembly;

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
    /// The home folder of the machine that made the item, mapped onto the
    /// target ([`crate::homemap`]): paths stay the item's everywhere but
    /// on the disk.
    home: Option<std::sync::Arc<HomeMap>>,
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
            home: None,
        })
    }

    /// Maps the item's home folder onto the target (`--to ~`).
    pub fn set_home(&mut self, home: Option<std::sync::Arc<HomeMap>>) {
        self.home = home;
    }

    pub fn home(&self) -> Option<std::sync::Arc<HomeMap>> {
        self.home.clone()
    }

    /// Whether `rel` is the mapped home folder or a folder above it: the
    /// target's own folders, left as they are.
    pub fn is_above(&self, rel: &[u8]) -> bool {
        self.home
            .as_ref()
            .is_some_and(|h| h.place(rel) == Place::AtOrAbove)
    }

    /// Where entry `rel` of the item is under the target folder.
    fn on_disk<'a>(&self, rel: &'a [u8]) -> std::result::Result<&'a [u8], Refused> {
        let Some(home) = &self.home else {
            return Ok(rel);
        };
        let from = String::from_utf8_lossy(&home.from);
        match home.place(rel) {
            Place::Under(rest) => Ok(rest),
            Place::AtOrAbove => Err(Refused::Escape(format!(
                "is {from}, the home folder restored onto the target, or above it"
            ))),
            Place::Outside => Err(Refused::Escape(format!(
                "lies outside {from}, the home folder restored onto the target"
            ))),
        }
    }

    /// The path entry `rel` of the item is written to.
    pub fn real(&self, rel: &[u8]) -> PathBuf {
        self.path.join(os(self.on_disk(rel).unwrap_or(rel)))
    }

    /// The open folder that holds `rel`, creating missing folders (0700 until
    /// their metadata is applied) when `create`.
    fn parent(&mut self, rel: &[u8], create: bool) -> std::result::Result<Rc<OwnedFd>, Refused> {
        check_relative_path(rel).map_err(Refused::Escape)?;
        let home = self.home.clone();
        let rel = self.on_disk(rel)?;
        // Folders made are recorded by their path in the item, as entries name them.
        let in_item = |made: Vec<u8>| match &home {
            Some(h) => [h.from.as_slice(), b"/", &made].concat(),
            None => made,
        };
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
                            let made = in_item(comps[..=self.open.len()].join(&b'/'));
                            self.implicit.lock().expect("implicit folders").insert(made);
                        }
                        Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    openat(&*at, os(comp), flags, Mode::empty())?
                }
                Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                    let upto = in_item(comps[..=self.open.len()].join(&b'/'));
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

    /// Whether `--overwrite` was given.
    pub fn overwrites(&self) -> bool {
        self.overwrite
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

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

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
