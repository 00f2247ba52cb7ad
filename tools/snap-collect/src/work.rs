//! Workers: link an unchanged file from the previous snapshot, or copy and
//! hash a new one. Several run at once, so the link and copy system calls of
//! a collect use every core.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, linkat, openat, unlinkat};

use snap_shared::error::{Error, Exit, Result, is_disk_full};
use snap_shared::index::Entry;

use crate::copy::{Copied, copy_hashed, hash_file, update_clone};
use crate::items::{Chunk, Counts, FileJob, Item};
use crate::meta::apply_to_fd;
use crate::space::SpaceGuard;
use crate::walk::{Event, last_component, problem};
use snap_cli::Reporter;

/// What every worker (and the committer) needs to make files.
pub struct Ctx<'a> {
    pub partial: &'a Path,
    /// The previous snapshot's tree, for messages.
    pub prev_tree: Option<&'a Path>,
    pub checksum: bool,
    pub as_root: bool,
    pub report: &'a Reporter,
    pub space: &'a SpaceGuard,
}

impl Ctx<'_> {
    /// The snapshot path of an entry, for messages.
    pub fn dst(&self, rel: &[u8]) -> PathBuf {
        self.partial.join(OsStr::from_bytes(rel))
    }

    /// An error in the store: the run stops.
    pub fn store_err(&self, rel: &[u8], e: io::Error) -> Error {
        store_err(&self.dst(rel), e)
    }

    /// Reports a source entry that can't be read; vanished ones are only a warning.
    pub fn unreadable(&self, path: &Path, e: io::Error, counts: &mut Counts) {
        self.report_walk(problem(path, &e), counts);
    }

    /// Gives the store's copy of `rel` (in the open folder `dir`) exactly the
    /// attributes its entry keeps (removing any it inherited, such as a
    /// folder's default ACL). One that cannot be set is an error of the run,
    /// named: the index keeps it, the browsable copy lacks it (a capability
    /// or `trusted.*` when not root, a label the policy refuses).
    pub fn keep_xattrs(
        &self,
        dir: &impl std::os::fd::AsRawFd,
        rel: &[u8],
        wanted: &snap_shared::xattrs::Xattrs,
        counts: &mut Counts,
    ) {
        let at = snap_shared::xattrs::at(dir, OsStr::from_bytes(last_component(rel)));
        let failed = match snap_shared::xattrs::set_exactly(&at, wanted) {
            Ok(failed) => failed,
            Err(e) => vec![("(all)".to_string(), e)],
        };
        for (name, e) in failed {
            counts.errors += 1;
            self.report.error(&format!(
                "{}: extended attribute {name} not kept on the store's copy: {e}",
                self.dst(rel).display()
            ));
        }
    }

    /// Shows a walk warning, or shows and counts an error (entries are no problem).
    pub fn report_walk(&self, event: Event, counts: &mut Counts) {
        match event {
            Event::Warning(w) => self.report.warn(&w),
            Event::Error(e) => {
                counts.errors += 1;
                self.report.error(&e);
            }
            Event::Entry(_) => {}
        }
    }

    /// Runs the file jobs of a chunk; other items pass through.
    pub fn run_chunk(&self, mut chunk: Chunk) -> Result<Chunk> {
        let items = std::mem::take(&mut chunk.items);
        let mut counts = chunk.counts;
        chunk.items = items
            .into_iter()
            .map(|item| match item {
                Item::File(job) => {
                    let group = job.group;
                    let entry = self.make_file(*job, &mut counts)?;
                    Ok(Item::Made { entry, group })
                }
                other => Ok(other),
            })
            .collect::<Result<_>>()?;
        chunk.counts = counts;
        Ok(chunk)
    }

    /// Links or copies one file; `None` when its source could not be read.
    pub fn make_file(&self, job: FileJob, counts: &mut Counts) -> Result<Option<Entry>> {
        if let Some(sha) = job.prev_sha {
            match self.link_unchanged(&job, counts)? {
                Reuse::Linked => {
                    let mut entry = job.entry;
                    entry.sha256 = Some(sha);
                    entry.blocks = job.prev_blocks;
                    counts.linked += 1;
                    return Ok(Some(entry));
                }
                Reuse::Copy => {}
                Reuse::Unreadable => return Ok(None),
            }
        }
        self.copy_new(job, counts)
    }

    fn link_unchanged(&self, job: &FileJob, counts: &mut Counts) -> Result<Reuse> {
        let Some(prev_parent) = &job.prev_parent else {
            return Ok(Reuse::Copy);
        };
        let name = name_of(&job.entry);
        if self.checksum {
            match open_source(job).and_then(|mut f| hash_file(&mut f)) {
                Ok((_, sha)) if Some(sha) == job.prev_sha => {}
                Ok(_) => return Ok(Reuse::Copy),
                Err(e) => {
                    self.unreadable(&job.abs, e, counts);
                    return Ok(Reuse::Unreadable);
                }
            }
            // As rsync -c --link-dest: the copy a link would share is
            // compared too, so bit rot in the store is not linked again.
            if let Some(why) = self.stored_copy_damaged(prev_parent, name, job) {
                counts.damaged += 1;
                self.report.error(&format!(
                    "{}: {why}; copied afresh from {} (earlier snapshots that share it \
                     stay damaged: `snap-restore verify` names them)",
                    self.prev_path(job).display(),
                    job.abs.display()
                ));
                return Ok(Reuse::Copy);
            }
        }
        match linkat(
            &**prev_parent,
            name,
            &*job.dst_parent,
            name,
            AtFlags::empty(),
        ) {
            Ok(()) => Ok(Reuse::Linked),
            // The previous inode has the most links the filesystem allows.
            Err(rustix::io::Errno::MLINK) => Ok(Reuse::Copy),
            Err(rustix::io::Errno::NOENT) => {
                self.report.warn(&format!(
                    "{}: missing from the previous snapshot; copied again",
                    job.abs.display()
                ));
                Ok(Reuse::Copy)
            }
            Err(e) => Err(self.store_err(&job.entry.path, e.into())),
        }
    }

    /// Why the previous snapshot's copy of a file is not what its index
    /// says (`None`: it is). A copy that cannot be read is damaged too.
    fn stored_copy_damaged(
        &self,
        prev_parent: &std::os::fd::OwnedFd,
        name: &OsStr,
        job: &FileJob,
    ) -> Option<String> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let hashed = openat(prev_parent, name, flags, Mode::empty())
            .map_err(io::Error::from)
            .and_then(|fd| hash_file(&mut File::from(fd)));
        match (hashed, job.prev_sha) {
            (Ok((_, got)), Some(want)) if got != want => Some(format!(
                "the stored copy is damaged: sha256 {got}, the index says {want}"
            )),
            (Ok(_), _) => None,
            // Gone from the previous snapshot: the link below says so.
            (Err(e), _) if e.kind() == io::ErrorKind::NotFound => None,
            (Err(e), _) => Some(format!(
                "the stored copy cannot be read: {}",
                snap_shared::error::io_cause(&e)
            )),
        }
    }

    /// Where a file is in the previous snapshot, for messages.
    fn prev_path(&self, job: &FileJob) -> PathBuf {
        let rel = Path::new(OsStr::from_bytes(&job.entry.path));
        match self.prev_tree {
            Some(prev) => prev.join(rel),
            None => rel.to_path_buf(),
        }
    }

    /// Copies a file that holds still while it is read: the size, mtime
    /// and ctime of the open file before and after the read, and the bytes
    /// read, must agree (tar's "file changed as we read it"). A file that
    /// changed is read once more; `None` when it changed again. With
    /// `cloned`, `dst` starts as a clone of the previous version and only
    /// what differs is written (a second read copies whole).
    /// Returns the copy and the file's metadata as it was read.
    fn copy_still(
        &self,
        src: &mut File,
        dst: &mut File,
        abs: &Path,
        (cloned, prev_blocks): (bool, Option<&snap_shared::index::Blocks>),
    ) -> io::Result<Option<(Copied, rustix::fs::Stat)>> {
        use std::io::Seek;
        for attempt in 0..2 {
            if attempt == 0 && cloned {
                let stat = rustix::fs::fstat(&*src)?;
                let before = Still::from(&stat);
                let known = self.prev_blocks_trusted(prev_blocks);
                let copied = update_clone(src, dst, before.size, known)?;
                let after = Still::from(&rustix::fs::fstat(&*src)?);
                if before == after && copied.bytes == before.size {
                    return Ok(Some((copied, stat)));
                }
                continue;
            }
            if attempt > 0 {
                src.rewind()?;
                dst.rewind()?;
                dst.set_len(0)?;
                self.report.warn(&format!(
                    "{}: changed while it was read; reading it again",
                    abs.display()
                ));
            }
            let stat = rustix::fs::fstat(&*src)?;
            let before = Still::from(&stat);
            let copied = copy_hashed(src, dst, before.size)?;
            let after = Still::from(&rustix::fs::fstat(&*src)?);
            if before == after && copied.bytes == before.size {
                return Ok(Some((copied, stat)));
            }
        }
        Ok(None)
    }

    /// Copies a new or changed file and hashes it in the same read.
    pub fn copy_new(&self, job: FileJob, counts: &mut Counts) -> Result<Option<Entry>> {
        let mut entry = job.entry;
        let mut src = match open_source_at(&job.src_parent, &entry) {
            Ok(s) => s,
            Err(e) => {
                self.unreadable(&job.abs, e, counts);
                return Ok(None);
            }
        };
        let name = name_of(&entry);
        // Read and write: a clone is compared before it is written.
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let mut dst = match openat(&*job.dst_parent, name, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => File::from(fd),
            Err(e) => return Err(self.store_err(&entry.path, e.into())),
        };
        let cloned =
            entry.size >= CLONE_MIN && clone_previous(job.prev_parent.as_deref(), name, &dst);
        let prev_blocks = job.prev_blocks.as_ref();
        let (copied, read_stat) =
            match self.copy_still(&mut src, &mut dst, &job.abs, (cloned, prev_blocks)) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    drop(dst);
                    let _ = unlinkat(&*job.dst_parent, name, AtFlags::empty());
                    counts.errors += 1;
                    self.report.error(&format!(
                        "{}: changed while it was read, twice: left out of this snapshot \
                     (no copy of bytes that were never on disk together; the previous \
                     snapshot keeps its last whole copy)",
                        job.abs.display()
                    ));
                    return Ok(None);
                }
                Err(e) if is_disk_full(&e) => return Err(self.store_err(&entry.path, e)),
                Err(e) => {
                    drop(dst);
                    let _ = unlinkat(&*job.dst_parent, name, AtFlags::empty());
                    self.unreadable(&job.abs, e, counts);
                    return Ok(None);
                }
            };
        // The version read is the one kept: its metadata, not the walk's.
        apply_to_fd(&dst, &read_stat, self.as_root).map_err(|e| self.store_err(&entry.path, e))?;
        // After the owner: a chown clears a capability.
        self.keep_xattrs(&*job.dst_parent, &entry.path, &entry.xattrs, counts);
        entry.mode = crate::meta::perm_bits(&read_stat);
        entry.mtime = crate::meta::mtime_ns(&read_stat);
        entry.uid = read_stat.st_uid;
        entry.gid = read_stat.st_gid;
        entry.size = copied.bytes;
        entry.sha256 = Some(copied.sha256);
        entry.blocks = copied.blocks;
        counts.new_files += 1;
        counts.new_bytes += copied.bytes;
        self.report.detail(|| match cloned {
            true => format!(
                "copied {} over a clone of the previous copy: {} of {} bytes written",
                job.abs.display(),
                copied.written,
                copied.bytes
            ),
            false => format!("copied {}", job.abs.display()),
        });
        self.space.spent(copied.written)?;
        Ok(Some(entry))
    }
}

impl Ctx<'_> {
    /// The previous copy's digests, when they may stand for its bytes: not
    /// with `--checksum`, which compares the bytes themselves (as it hashes
    /// a linked file's stored copy), so a copy that rotted is not kept.
    fn prev_blocks_trusted<'b>(
        &self,
        blocks: Option<&'b snap_shared::index::Blocks>,
    ) -> Option<&'b snap_shared::index::Blocks> {
        blocks.filter(|b| !self.checksum && b.size == snap_shared::index::BLOCK)
    }
}

/// Files from this size up start as a clone of their previous copy where the
/// store can share extents: below it a plain copy costs about the same as
/// comparing.
const CLONE_MIN: u64 = 8 << 20;

/// Set once a clone was refused for lack of support (ext4, tmpfs, another
/// filesystem than the previous snapshot's): later files do not try.
static NO_CLONES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes `dst` (new and empty) a clone of the previous snapshot's copy of
/// the file (FICLONE: btrfs, XFS with reflink, bcachefs); false when there
/// is none or the store cannot share extents, and `dst` is still empty.
fn clone_previous(prev_parent: Option<&std::os::fd::OwnedFd>, name: &OsStr, dst: &File) -> bool {
    use std::sync::atomic::Ordering;
    let Some(prev_parent) = prev_parent else {
        return false;
    };
    if NO_CLONES.load(Ordering::Relaxed) {
        return false;
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(prev) = openat(prev_parent, name, flags, Mode::empty()) else {
        return false;
    };
    match rustix::fs::ioctl_ficlone(dst, &prev) {
        Ok(()) => true,
        Err(e) => {
            if matches!(
                e,
                rustix::io::Errno::OPNOTSUPP
                    | rustix::io::Errno::XDEV
                    | rustix::io::Errno::NOTTY
                    | rustix::io::Errno::NOSYS
            ) {
                NO_CLONES.store(true, Ordering::Relaxed);
            }
            // A failed clone leaves the file empty (an EINVAL: not a
            // regular file, an odd size; EISDIR): it is copied whole.
            let _ = dst.set_len(0);
            false
        }
    }
}

/// What shows that an open file changed: its size, mtime and ctime (ns).
#[derive(PartialEq, Eq)]
struct Still {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl From<&rustix::fs::Stat> for Still {
    fn from(st: &rustix::fs::Stat) -> Still {
        Still {
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime, st.st_ctime_nsec as i64),
        }
    }
}

enum Reuse {
    Linked,
    Copy,
    Unreadable,
}

/// The entry's own name, as the folders hold it.
pub fn name_of(entry: &Entry) -> &OsStr {
    OsStr::from_bytes(last_component(&entry.path))
}

/// An error in the store: exit 74, with a hint when the disk is full.
pub fn store_err(path: &Path, e: io::Error) -> Error {
    let full = is_disk_full(&e);
    let no_links = cannot_link(&e);
    let err = Error::io(path, e).with_exit(Exit::Io);
    if full {
        err.with_hint("the store's disk is full; no snapshot was made and earlier ones are intact")
    } else if no_links {
        err.with_hint(
            "the store's filesystem cannot hold symlinks or hard links (FAT, exFAT, some network shares): \
             keep the store on ext4, xfs or btrfs, and push archives to this drive with snap-push",
        )
    } else {
        err
    }
}

/// Whether an error says the filesystem has no symlinks or hard links
/// (vfat: `EPERM` for links, `ENOSYS`/`EOPNOTSUPP` through FUSE).
fn cannot_link(e: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::PERM, Errno::NOSYS, Errno::OPNOTSUPP, Errno::MLINK]
        .iter()
        .any(|c| e.raw_os_error() == Some(c.raw_os_error()))
}

fn open_source(job: &FileJob) -> io::Result<File> {
    open_source_at(&job.src_parent, &job.entry)
}

/// Opens a source file: never following a symlink swapped in since the walk,
/// never blocking on a fifo swapped in.
fn open_source_at(parent: &std::os::fd::OwnedFd, entry: &Entry) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    Ok(File::from(openat(
        parent,
        name_of(entry),
        flags,
        Mode::empty(),
    )?))
}
